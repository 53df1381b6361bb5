import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { customerStub, uniqueId } from "../helpers";

type Op = { kind: "grant"; cents: number } | { kind: "request"; priceMicros: number } | { kind: "refund" };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("grant" as const), cents: fc.integer({ min: -300, max: 300 }).filter((n) => n !== 0) }),
  fc.record({ kind: fc.constant("request" as const), priceMicros: fc.constantFrom(0, 50_000, 1_000_000, 2_500_000, 7) }),
  fc.record({ kind: fc.constant("refund" as const) }),
);

describe("the ledger (property)", () => {
  it("balance always equals the ledger's sum, and no request passes below the minimum", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), async (ops) => {
        const id = uniqueId("cus_prop");
        const stub = customerStub(id);
        await stub.upsertProfile(id, { name: "Prop" });
        const key = (await stub.createKey(null))!.key;
        const keyHash = await sha256Hex(key);
        let model = 0;
        const charged: { priceMicros: number; requestId: string }[] = [];
        let requests = 0;
        for (const step of ops) {
          if (step.kind === "grant") {
            await stub.credit({ customerId: id, amountCents: step.cents, reason: "property" });
            model += step.cents * 1_000_000;
          } else if (step.kind === "request") {
            const requestId = `req_${requests++}`;
            const result = await stub.authorize({ keyHash, meter: "api_requests", priceMicros: step.priceMicros, requestId });
            const allowed = step.priceMicros === 0 || model - step.priceMicros >= 0;
            expect(result.outcome).toBe(allowed ? "ok" : "insufficient_credit");
            if (result.outcome === "ok") {
              model -= step.priceMicros;
              if (step.priceMicros > 0) charged.push({ priceMicros: step.priceMicros, requestId });
              expect(result.balanceMicros).toBe(model);
            }
          } else if (charged.length) {
            const last = charged.pop()!;
            await stub.refund({ requestId: last.requestId });
            model += last.priceMicros;
          }
          const check = (await stub.balanceCheck())!;
          expect(check.balanceMicros).toBe(model);
          expect(check.ledgerSumMicros).toBe(model);
        }
      }),
      { numRuns: 40 },
    );
  });
});
