import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { customerStub, uniqueId } from "../helpers";

describe("GROUP_COMMIT=false", () => {
  it("every request commits on its own, and 200 concurrent requests against 150 cents still pass exactly 150", async () => {
    const id = uniqueId("cus_ngc");
    const stub = customerStub(id);
    await stub.upsertProfile(id, { name: "No Group Commit" });
    const keyHash = await sha256Hex((await stub.createKey(null))!.key);
    await stub.credit({ customerId: id, amountCents: 150, reason: "start" });
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => stub.authorize({ keyHash, meter: "api_requests", priceMicros: 1_000_000, requestId: `req_${i}` })));
    expect(results.filter((r) => r.outcome === "ok")).toHaveLength(150);
    expect(await stub.groupCommitStats()).toEqual({ commits: 0, steps: 0, largest: 0 });
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 0, ledgerSumMicros: 0 });
  });
});
