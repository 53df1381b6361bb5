import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { customerStub, uniqueId } from "../helpers";

// Local pricing: api_requests 1 cent, search 0.05 cents, chat 0.01 cents a unit; the shipped
// EMAILS warn below 100 cents and 7 days before a grant expires.
const METERS = [
  { meter: "api_requests", priceMicros: 1_000_000 },
  { meter: "search", priceMicros: 50_000 },
  { meter: "chat", priceMicros: 10_000 },
] as const;

type Op = { kind: "charge"; meter: number; times: number } | { kind: "grant"; cents: number; expiresInDays: number | null; searchOnly: boolean };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("charge" as const), meter: fc.integer({ min: 0, max: 2 }), times: fc.integer({ min: 1, max: 40 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("grant" as const),
      cents: fc.integer({ min: 1, max: 150 }),
      expiresInDays: fc.option(fc.integer({ min: 1, max: 20 })),
      searchOnly: fc.boolean(),
    }),
  },
);

const cohortsOf = async (stub: ReturnType<typeof customerStub>) =>
  ((await stub.summary()) as unknown as { cohorts: { current: { cohort: string }[] } }).cohorts.current.map((c) => c.cohort).sort();

describe("cohort work is skipped only when a charge cannot move a cohort (property)", () => {
  it("after every charge the cohorts are what a full placement from scratch says", { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 300 }), fc.array(op, { minLength: 1, maxLength: 25 }), async (startCents, ops) => {
        const id = uniqueId("cus_slack");
        const stub = customerStub(id);
        await stub.upsertProfile(id, { name: "Slack" });
        const keyHash = await sha256Hex((await stub.createKey(null))!.key);
        if (startCents) await stub.credit({ customerId: id, amountCents: startCents, reason: "start" });
        let n = 0;
        for (const step of ops) {
          if (step.kind === "grant") {
            await stub.grant({
              customerId: id,
              amountCents: step.cents,
              reason: "grant",
              expiresAt: step.expiresInDays === null ? null : Math.floor(Date.now() / 1000) + step.expiresInDays * 86_400,
              meters: step.searchOnly ? ["search"] : null,
            });
          } else {
            const { meter, priceMicros } = METERS[step.meter]!;
            await Promise.all(Array.from({ length: step.times }, () => stub.authorize({ keyHash, meter, priceMicros, requestId: `req_${n++}` })));
          }
          const placed = await cohortsOf(stub);
          // upsertProfile with nothing to change places the customer from scratch (context.changed()).
          await stub.upsertProfile(id, {});
          expect(await cohortsOf(stub)).toEqual(placed);
        }
      }),
      { numRuns: 30 },
    );
  });
});
