import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MIGRATIONS, SCHEMA_VERSION } from "../../../durable-objects/customer-account/core/schema";
import { HOLD_TABLES } from "../../../durable-objects/customer-account/request/holds";
import { DIRECTORY_MIGRATIONS, type Directory } from "../../../durable-objects/directory";
import { DISPATCHER_MIGRATIONS } from "../../../durable-objects/webhook-dispatcher/store";
import { sha256Hex } from "../../../src/lib/api-key-format";
import { admin, customerStub, echoOrigin, gateway, settle, uniqueId, withKey } from "../helpers";

/** A database as version `version` left it: its migrations and its schema_version row. */
function atVersion(sql: SqlStorage, version: number, at: number) {
  for (const migration of MIGRATIONS.slice(0, version)) sql.exec(migration);
  sql.exec("CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, migrated_at INTEGER NOT NULL)");
  sql.exec("INSERT INTO schema_version (id, version, migrated_at) VALUES (1, ?, ?)", version, at);
}

/**
 * Writes a customer as version `version` of the object stored it: that version's migrations, its
 * `schema_version` row and an account holding `balance` micros, then whatever `rows` adds.
 */
async function seedAt(id: string, version: number, rows: (sql: SqlStorage, t: number) => void, balance = 0) {
  const t = 1_760_000_000_000;
  await runInDurableObject(customerStub(id), (_instance, state) => {
    const sql = state.storage.sql;
    atVersion(sql, version, t);
    sql.exec("INSERT INTO account (id, customer_id, email, plan, balance, created_at, updated_at) VALUES (1, ?, 'ada@example.com', 'prepaid', ?, ?, ?)", id, balance, t, t);
    rows(sql, t);
  });
}

/** Writes a customer as the first deployed version of the object stored it. */
async function seedV1(id: string, keys: { live: string; revoked: string }) {
  const [liveHash, revokedHash] = [await sha256Hex(keys.live), await sha256Hex(keys.revoked)];
  await runInDurableObject(customerStub(id), (_instance, state) => {
    const sql = state.storage.sql;
    // Version 1 is exactly the schema the first deployed code created (pinned below).
    sql.exec(MIGRATIONS[0]!);
    const t = 1_760_000_000_000;
    sql.exec(
      `INSERT INTO account (id, customer_id, email, name, plan, balance, pending_usage, last_topup_cents, directory_seq, created_at, updated_at)
       VALUES (1, ?, 'old@example.com', 'Old Timer', 'prepaid', 5050000, 0, 1000, 3, ?, ?)`,
      id,
      t,
      t,
    );
    sql.exec("INSERT INTO api_keys (id, hash, prefix, name, created_at) VALUES ('key_live', ?, 'payg_x', 'live', ?)", liveHash, t);
    sql.exec("INSERT INTO api_keys (id, hash, prefix, name, created_at, revoked_at) VALUES ('key_old', ?, 'payg_y', 'old', ?, ?)", revokedHash, t, t + 1);
    sql.exec(
      "INSERT INTO ledger (kind, amount, count, reference, reason, created_at, updated_at) VALUES ('topup', 10000000, 1, 'checkout_cs_1', 'Stripe Checkout cs_1', ?, ?)",
      t,
      t,
    );
    sql.exec("INSERT INTO ledger (kind, meter, bucket, amount, count, created_at, updated_at) VALUES ('usage', 'api_requests', ?, -4950000, 99, ?, ?)", t, t, t);
    sql.exec(
      "INSERT INTO reports (report_id, kind, idempotency_key, amount, status, attempts, created_at, sent_at) VALUES ('payg_usage_old', 'usage_debit', 'payg_usage_old', 4, 'sent', 1, ?, ?)",
      t,
      t,
    );
    sql.exec(
      "INSERT INTO emails (cohort, enrollment, seq, to_email, subject, text, status, attempts, created_at, sent_at) VALUES ('low_balance', 1, 0, 'old@example.com', 'Low', 'Hi', 'outbox', 1, ?, ?)",
      t,
      t,
    );
    sql.exec("INSERT INTO cohorts (cohort, enrollment, entered_at) VALUES ('low_balance', 1, ?)", t);
    sql.exec("INSERT INTO stripe_events (id, type, received_at) VALUES ('evt_old', 'customer.updated', ?)", t);
  });
}

/**
 * SHA-256 of every migration. A migration that has shipped is never edited, only followed by a new
 * one: a new migration adds its hash here; changing an old hash means rewriting history.
 */
const DEPLOYED = [
  "c4687d16eec8201b9c29d7675ef84ae138a2d229c44926f6f34ed574fdf1902c",
  "a3da3896b313cf9dc4fba9984b9de649e574491bf642cd76ec0ba18fdeb3be32",
  "8dec3a5a5da89feb90a2a4e0d6576e1ec4b1471964393252cdbbd9678477155d",
  "053c4fd6f1c5ee6a6a5cb17fb4b5d1b379078616be819fa7c1bec4d03799002d",
  "3341029a864d3115f0146129930643edc0541325be15fdf465264363a53b58ac",
  "4717de22ab2ab8ec3bacb80a04cbc546374c8d9a3810eaae1bbed386e79772da",
  "db4f762e6611f936d3a752ae74240554b98006b3c790b0292571eb6717d5314d",
  "0a1620d6df8f589ad7603c2cac298c5c8e6bb9c60bf716939ef11730df40df5e",
  "155f34665a54a835268a63b1348d3b5b0e4745fb0082ce607d986f6bd94c6e80",
  "a02f406ffd95f6a7c16ebedf7be61c60b6b0e79ef4ce2418805e894fa0ea4560",
  "2d5a0b2e4dbb14745380fd4d4b261915b45584bf471e02fbfc0cb85a28b92c86",
  "9bd3e953e1e4150912cd9c5c3276615aa9dd9ae503119748c2d531ad2eef0c82",
  "325bb54b9ff695de88e383a8258a0bc236736b885151ee7f571f366f3aa0a7fb",
  "10f0a4e50e70dc90afe182e26ff178db88ba3ad1a1bebec64762d3d9913c2c5a",
  "75a8ab11c6e745ca7d3ea9c631be06ba486eeb41838007af0b2b8912799279ef",
  "37c8dba820c3286f3e1ee6f8e3dfc3ab37f0322cce48fe0a6b32ed5747484bc9",
  "65a93de2e9b3cc84620d887e6451b60fc1e3b08961d911f5a5fa779a08bdf372",
  // v18: agent_payments (x402 and MPP top-ups).
  "82c5df6cf016488d6c2f19734c8b651a8b56295eb4ef3e86641f09d3f7dafdbb",
  // v19: report batching (STRIPE_BUDGET).
  "6173372e78081761ffd9aff6b06e2eed30c734eac5a9616cc5b3f1808c72ae17",
  // v20: x402 payments recorded as Stripe PaymentIntents.
  "676f41177b1e79d6f2ca874443e02c22da09f686134b9d22ea71694cbab38af1",
  // v21: credit leases.
  "1714940a929ae0296bd78f663bfe9496aaf5c687a44889d74d7262357e8dc1c2",
  // v22: charge rows clustered on the request id (one row written per charge).
  "935e6cc92ba9a3bd1b338abaaf6620d325ce7111aa90e3795a64ae72776ff8c8",
  // v23: a charge's Idempotency-Key in flight in its charge row, finished keys clustered on the key.
  "fc67136a1b99c858260cb30a735bfc9090270ebe1130ab6e606e76ab559623f8",
  // v24: a group-commit batch's charges in one row (docs/design/one-row-per-batch.md).
  "8349b12074bfbdc7b42309499013c618888c7cda890caf4a66f0f4fee778ad57",
  // v25: hold rows clustered on the request id (a hold and its settlement one row written each).
  "2d0db73b8d2e617b9b8ef88e637fc07c364b417ab15a085e447228def2704558",
];

describe("schema migrations", () => {
  it("never edits a deployed migration", async () => {
    const hashes = await Promise.all(MIGRATIONS.map((m) => sha256Hex(m)));
    expect(hashes).toEqual(DEPLOYED);
  });

  it("upgrades an object created by the first deployed version in place, keeping every cent and key", async () => {
    echoOrigin();
    const id = uniqueId("cus_v1");
    const keys = { live: `payg_${id}.${"L".repeat(43)}`, revoked: `payg_${id}.${"R".repeat(43)}` };
    await seedV1(id, keys);
    // A new instance of the current code opens the old database.
    await evictDurableObject(customerStub(id));

    const before = await admin("GET", `/customers/${id}`);
    expect(before.status).toBe(200);
    expect(before.body.customer).toMatchObject({ id, email: "old@example.com", name: "Old Timer", plan: "prepaid" });
    expect(before.body.balance).toMatchObject({ available_exact_cents: "5.05", ledger_sum_exact_cents: "5.05" });
    expect(before.body.cohorts.current).toEqual([{ cohort: "low_balance", enrollment: 1, entered_at: 1_760_000_000_000 }]);
    expect(before.body.stripe.recent_reports).toEqual([expect.objectContaining({ id: "payg_usage_old", status: "sent", amount: 4 })]);
    const listed = (await admin("GET", `/customers/${id}/keys`)).body.keys;
    expect(listed.map((k: { id: string; signed: boolean }) => [k.id, k.signed])).toEqual([
      ["key_live", false],
      ["key_old", false],
    ]);
    expect((await admin("GET", `/customers/${id}/emails`)).body.emails).toHaveLength(1);
    // The balance held before grants existed is one paid, never-expiring `migration` grant.
    const grants = (await admin("GET", `/customers/${id}/grants`)).body.grants;
    expect(grants).toEqual([expect.objectContaining({ source: "migration", category: "paid", amount_cents: 5, remaining_exact_cents: "5.05", expires_at: null, meters: null })]);

    const charged = await gateway("/v1/x", withKey(keys.live));
    expect(charged.status).toBe(200);
    expect(charged.headers.get("x-payg-balance-cents")).toBe("4.05");
    expect((await gateway("/v1/x", withKey(keys.revoked))).status).toBe(401);
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 4_050_000, ledgerSumMicros: 4_050_000, grantsRemainingMicros: 4_050_000, debtMicros: 0 });

    const version = await runInDurableObject(customerStub(id), (_instance, state) => state.storage.sql.exec("SELECT version FROM schema_version").one().version);
    expect(version).toBe(SCHEMA_VERSION);

    // The upgrade's retention timers clear the old backlog once: the year-old report and usage
    // bucket leave their rows, not their sums.
    const sums = (summary: { ledger_summary: { kind: string; count: number; total_cents: string }[] }) => summary.ledger_summary.map((r) => [r.kind, r.count, r.total_cents]);
    const unpruned = (await admin("GET", `/customers/${id}`)).body;
    await settle(id);
    const pruned = (await admin("GET", `/customers/${id}`)).body;
    expect(pruned.stripe).toMatchObject({ report_rows_kept: 0, report_rows_archived: 1, report_totals: [{ kind: "usage_debit", status: "sent", n: 1, amount: 4 }] });
    expect(sums(pruned)).toEqual(sums(unpruned));
    expect((await customerStub(id).ledgerPage({ limit: 10 })).entries.find((e) => e.bucket === 0)).toMatchObject({ kind: "usage", amount: -4_950_000, count: 99 });
    expect(await customerStub(id).balanceCheck()).toMatchObject({ balanceMicros: 4_050_000, ledgerSumMicros: 4_050_000 });
  });

  it("upgrades disputes and refunds of version 13: an open dispute freezes what it disputes, a lost one keeps what it took, a legacy refund is adopted", async () => {
    const id = uniqueId("cus_v13");
    const t = 1_760_000_000_000;
    const M = 1_000_000;
    await seedAt(
      id,
      13,
      (sql, t) => {
        // Grant 1: 500 paid, 100 spent, under an open 500-cent dispute that froze a snapshot of 300.
        sql.exec(
          "INSERT INTO grants (id, amount, remaining, frozen, category, priority, source, reason, reference, payment_intent, created_at) VALUES ('g1', ?, ?, ?, 'paid', 50, 'checkout', 'c1', 'checkout_cs_1', 'pi_1', ?)",
          500 * M,
          400 * M,
          300 * M,
          t,
        );
        sql.exec("INSERT INTO disputes (id, grant_id, payment_intent, amount, status, frozen, created_at) VALUES ('dp_1', 'g1', 'pi_1', 500, 'open', ?, ?)", 300 * M, t);
        // Grant 2: 500 paid, lost to a dispute (all taken back).
        sql.exec(
          "INSERT INTO grants (id, amount, remaining, category, priority, source, reason, reference, payment_intent, created_at) VALUES ('g2', ?, 0, 'paid', 50, 'checkout', 'c2', 'checkout_cs_2', 'pi_2', ?)",
          500 * M,
          t,
        );
        sql.exec("INSERT INTO disputes (id, grant_id, payment_intent, amount, status, frozen, created_at, closed_at) VALUES ('dp_2', 'g2', 'pi_2', 500, 'lost', 0, ?, ?)", t, t);
        // Grant 3: 500 paid, 200 refunded under the cumulative figure.
        sql.exec(
          "INSERT INTO grants (id, amount, remaining, refunded, category, priority, source, reason, reference, payment_intent, created_at) VALUES ('g3', ?, ?, ?, 'paid', 50, 'checkout', 'c3', 'checkout_cs_3', 'pi_3', ?)",
          500 * M,
          300 * M,
          200 * M,
          t,
        );
        sql.exec("INSERT INTO payment_refunds (payment_intent, refunded_cents, updated_at) VALUES ('pi_3', 200, ?)", t);
        for (const [kind, amount, reference, grant] of [
          ["grant", 500, "checkout_cs_1", "g1"],
          ["grant", 500, "checkout_cs_2", "g2"],
          ["clawback", -500, "dispute_dp_2", "g2"],
          ["grant", 500, "checkout_cs_3", "g3"],
          ["clawback", -200, "refund_pi_3_200", "g3"],
        ] as const) {
          sql.exec(
            "INSERT INTO ledger (kind, amount, count, reference, reason, grant_id, created_at, updated_at) VALUES (?, ?, 1, ?, 'seed', ?, ?, ?)",
            kind,
            amount * M,
            reference,
            grant,
            t,
            t,
          );
        }
        sql.exec("INSERT INTO ledger (kind, meter, bucket, amount, count, created_at, updated_at) VALUES ('usage', 'api_requests', ?, ?, 100, ?, ?)", t, -100 * M, t, t);
      },
      700 * M,
    );
    await evictDurableObject(customerStub(id));
    const stub = customerStub(id);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 700 * M, ledgerSumMicros: 700 * M });
    const grants = (await admin("GET", `/customers/${id}/grants`)).body.grants as { id: string; frozen_cents: number }[];
    // The open dispute now freezes all it disputes of what remains (400), not the 300 snapshot.
    expect(grants.find((g) => g.id === "g1")).toMatchObject({ frozen_cents: 400 });
    const event = (type: string, object: object) => ({ id: `evt_${uniqueId()}`, object: "event", type, created: Math.floor(Date.now() / 1000), data: { object } }) as never;
    const dispute = (disputeId: string, pi: string, status: string, balance_transactions: { amount: number }[] = []) => ({
      id: disputeId,
      object: "dispute",
      payment_intent: pi,
      charge: "ch_x",
      amount: 500,
      currency: "usd",
      status,
      balance_transactions,
    });
    // The lost dispute won on appeal: what it took comes back, once.
    await stub.applyStripeEvent(id, event("charge.dispute.funds_reinstated", dispute("dp_2", "pi_2", "won", [{ amount: -500 }, { amount: 500 }])));
    // The legacy refund, now listed by id, fails: its 200 come back.
    const refunds = { charge: "ch_3", payment_intent: "pi_3", payment_method: null, currency: "usd", refunds: [{ id: "re_3", amount: 200, status: "failed", created: t / 1000 }] };
    await stub.applyStripeEvent(id, event("refund.failed", { id: "re_3", object: "refund" }), refunds);
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 1400 * M, ledgerSumMicros: 1400 * M });
  });

  it("upgrades version 16: a top-up started before keeps no receipt email (its retries send what its first attempt sent); the top-up list starts empty", async () => {
    const id = uniqueId("cus_v16");
    await seedAt(id, 16, (sql, t) => {
      sql.exec(
        "INSERT INTO topups (id, amount_cents, currency, month, status, idempotency_key, payment_method, attempts, created_at) VALUES ('topup_old', 500, 'usd', '2025-10', 'pending', 'k', 'pm_1', 1, ?)",
        t,
      );
    });
    await evictDurableObject(customerStub(id));
    expect(await customerStub(id).topUps()).toEqual([]);
    const row = await runInDurableObject(customerStub(id), (_instance, state) => state.storage.sql.exec("SELECT receipt_email FROM topups WHERE id = 'topup_old'").one());
    expect(row).toEqual({ receipt_email: null });
  });

  it("upgrades version 19: an x402 payment credited before is not recorded in Stripe (nothing queued), and its replay keeps its receipt", async () => {
    const id = uniqueId("cus_v19");
    await seedAt(id, 19, (sql, t) => {
      sql.exec(
        "INSERT INTO agent_payments (id, rail, grant_id, amount_cents, payer, transaction_id, receipt, created_at) VALUES ('eip155:84532:0xa:0xb:0xc', 'x402', NULL, 500, '0xb', '0x01', '{\"success\":true}', ?)",
        t,
      );
    });
    await evictDurableObject(customerStub(id));
    expect(await customerStub(id).paymentReceipt("eip155:84532:0xa:0xb:0xc")).toBe('{"success":true}');
    const row = await runInDurableObject(customerStub(id), (_instance, state) =>
      state.storage.sql.exec("SELECT stripe_status, stripe_key, stripe_attempts, stripe_payment_intent FROM agent_payments").one(),
    );
    expect(row).toEqual({ stripe_status: null, stripe_key: null, stripe_attempts: 0, stripe_payment_intent: null });
  });

  it("upgrades version 21: the charge rows move to the table keyed by request id, each kept, found by its id and replayed once", async () => {
    const id = uniqueId("cus_v21");
    const now = Date.now();
    const M = 1_000_000;
    const receipt = JSON.stringify({ parts: [], debt: 0 });
    await runInDurableObject(customerStub(id), (_instance, state) => {
      const sql = state.storage.sql;
      atVersion(sql, 21, now);
      sql.exec("INSERT INTO account (id, customer_id, email, plan, balance, created_at, updated_at) VALUES (1, ?, 'ada@example.com', 'prepaid', 0, ?, ?)", id, now, now);
      const insert =
        "INSERT INTO charges (request_id, meter, bucket, plan, amount, receipt, key_id, status, created_at, refunded_at, seq, pending_usage) VALUES (?, 'api_requests', 0, 'prepaid', ?, ?, NULL, ?, ?, ?, ?, ?)";
      // A charge folded long ago, a refunded one, and one the journal has not folded yet (seq 1 > folded_seq 0):
      // prepaid, as every journaled row before v22 was, its usage owed to Stripe in pending_usage.
      sql.exec(insert, "req_old", 2 * M, receipt, "charged", now - 3_600_000, null, null, 0);
      sql.exec(insert, "req_refunded", 3 * M, receipt, "refunded", now - 60_000, now - 30_000, null, 0);
      sql.exec(insert, "req_unfolded", 5 * M, receipt, "charged", now, null, 1, 5 * M);
    });
    await evictDurableObject(customerStub(id));
    // Each row is found by its request id in the new table.
    expect(await customerStub(id).requestCharge("req_unfolded")).toMatchObject({ status: "charged", charged_exact_cents: "5" });
    expect(await customerStub(id).requestCharge("req_refunded")).toMatchObject({ status: "refunded", charged_exact_cents: "0" });
    const after = await runInDurableObject(customerStub(id), (_instance, state) => {
      const sql = state.storage.sql;
      return {
        version: sql.exec("SELECT version FROM schema_version").one().version,
        ddl: sql.exec("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'charges'").one().sql as string,
        indexes: sql
          .exec("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'charges'")
          .toArray()
          .map((r) => r.name),
        rows: sql.exec("SELECT request_id, amount, status, seq, pending_usage FROM charges ORDER BY request_id").toArray(),
        folded: sql.exec("SELECT folded_seq, pending_usage FROM account").one(),
      };
    });
    expect(after.version).toBe(SCHEMA_VERSION);
    // One b-tree, and no index a plain charge writes to: the partial one holds refunded rows only.
    expect(after.ddl).toMatch(/WITHOUT ROWID\s*$/);
    expect(after.indexes).toEqual(["charges_refunded"]);
    // Every row kept, column for column.
    expect(after.rows).toEqual([
      { request_id: "req_old", amount: 2 * M, status: "charged", seq: null, pending_usage: 0 },
      { request_id: "req_refunded", amount: 3 * M, status: "refunded", seq: null, pending_usage: 0 },
      { request_id: "req_unfolded", amount: 5 * M, status: "charged", seq: 1, pending_usage: 5 * M },
    ]);
    // The unfolded charge was replayed onto the account once, and folded by the reads above.
    expect(after.folded).toEqual({ folded_seq: 1, pending_usage: 5 * M });
  });

  it("upgrades version 22: idempotency rows move to the table keyed by key, each kept, and still replay (scoped, unscoped, in flight)", async () => {
    const id = uniqueId("cus_v22");
    const now = Date.now();
    const keyHash = await sha256Hex(`payg_${id}.${"K".repeat(43)}`);
    const fingerprint = "f".repeat(64);
    const body = new TextEncoder().encode('{"kept":true}');
    await seedAt(id, 22, (sql, t) => {
      sql.exec("INSERT INTO api_keys (id, hash, prefix, name, created_at) VALUES ('key_live', ?, 'payg_x', 'live', ?)", keyHash, t);
      const insert =
        "INSERT INTO idempotency (key, fingerprint, request_id, status, response_status, response_headers, body, size, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
      const headers = JSON.stringify([["content-type", "application/json"]]);
      // A scoped key's stored answer, one stored before keys were scoped (the client's key alone), and one in flight.
      sql.exec(insert, "key_live scoped", fingerprint, "req_scoped", "complete", 201, headers, body, body.byteLength, now, now + 86_400_000);
      sql.exec(insert, "legacy", fingerprint, "req_legacy", "complete", 200, headers, body, body.byteLength, now, now + 86_400_000);
      sql.exec(insert, "key_live flying", fingerprint, "req_flying", "in_flight", null, null, null, 0, now, now + 86_400_000);
    });
    await evictDurableObject(customerStub(id));
    const stub = customerStub(id);
    const retry = (key: string, requestId: string) => stub.authorize({ keyHash, meter: "api_requests", priceMicros: 1_000_000, requestId, idempotency: { key, fingerprint } });
    const scoped = await retry("scoped", "req_a");
    expect(scoped).toMatchObject({ outcome: "replay", response: { status: 201 } });
    expect(new Uint8Array((scoped as { response: { body: ArrayBuffer } }).response.body)).toEqual(body);
    expect(await retry("legacy", "req_b")).toMatchObject({ outcome: "replay", response: { status: 200 } });
    expect((await retry("flying", "req_c")).outcome).toBe("idempotency_in_progress");
    // The request in flight before the upgrade finishes into its own row, and replays.
    await stub.finishIdempotent({ key: "flying", keyHash, requestId: "req_flying", outcome: { status: 202, headers: [], body: body.buffer as ArrayBuffer } });
    expect(await retry("flying", "req_d")).toMatchObject({ outcome: "replay", response: { status: 202 } });
    const after = await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      return {
        ddl: sql.exec("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'idempotency'").one().sql as string,
        indexes: sql.exec("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'idempotency'").toArray(),
        rows: sql.exec("SELECT key, request_id, status, size FROM idempotency ORDER BY key").toArray(),
        chargeColumns: sql
          .exec("SELECT name FROM pragma_table_info('charges') WHERE name LIKE 'idem%'")
          .toArray()
          .map((r) => r.name),
      };
    });
    // One b-tree and no index: a finished key writes one row.
    expect(after.ddl).toMatch(/WITHOUT ROWID\s*$/);
    expect(after.indexes).toEqual([]);
    expect(after.rows).toEqual([
      { key: "key_live flying", request_id: "req_flying", status: "complete", size: body.byteLength },
      { key: "key_live scoped", request_id: "req_scoped", status: "complete", size: body.byteLength },
      { key: "legacy", request_id: "req_legacy", status: "complete", size: body.byteLength },
    ]);
    expect(after.chargeColumns).toEqual(["idem_key", "idem_fingerprint"]);
  });

  it("upgrades version 22 through v24: the charge rows gain an empty batch column, each still found by its id, the unfolded one replayed once", async () => {
    const id = uniqueId("cus_v22");
    const now = Date.now();
    const M = 1_000_000;
    const receipt = JSON.stringify({ parts: [], debt: 0 });
    await runInDurableObject(customerStub(id), (_instance, state) => {
      const sql = state.storage.sql;
      atVersion(sql, 22, now);
      sql.exec("INSERT INTO account (id, customer_id, email, plan, balance, created_at, updated_at) VALUES (1, ?, 'ada@example.com', 'prepaid', 0, ?, ?)", id, now, now);
      const insert =
        "INSERT INTO charges (request_id, meter, bucket, plan, amount, receipt, key_id, status, created_at, refunded_at, seq, pending_usage) VALUES (?, 'api_requests', 0, 'prepaid', ?, ?, NULL, ?, ?, ?, ?, ?)";
      sql.exec(insert, "req_refunded", 3 * M, receipt, "refunded", now - 60_000, now - 30_000, null, 0);
      sql.exec(insert, "req_unfolded", 5 * M, receipt, "charged", now, null, 1, 5 * M);
      sql.exec(insert, "req_unfolded_2", 2 * M, receipt, "charged", now, null, 2, 2 * M);
    });
    await evictDurableObject(customerStub(id));
    expect(await customerStub(id).requestCharge("req_unfolded")).toMatchObject({ status: "charged", charged_exact_cents: "5" });
    expect(await customerStub(id).requestCharge("req_refunded")).toMatchObject({ status: "refunded", charged_exact_cents: "0" });
    // A row from before v24 is refunded as before, once.
    expect(await customerStub(id).refund({ requestId: "req_unfolded_2" })).toMatchObject({ refunded: true });
    expect(await customerStub(id).refund({ requestId: "req_unfolded_2" })).toMatchObject({ refunded: false, reason: "already_refunded" });
    const after = await runInDurableObject(customerStub(id), (_instance, state) => {
      const sql = state.storage.sql;
      return {
        version: sql.exec("SELECT version FROM schema_version").one().version,
        rows: sql.exec("SELECT request_id, status, seq, batch FROM charges ORDER BY request_id").toArray(),
        folded: sql.exec("SELECT folded_seq, pending_usage FROM account").one(),
      };
    });
    expect(after.version).toBe(SCHEMA_VERSION);
    expect(after.rows).toEqual([
      { request_id: "req_refunded", status: "refunded", seq: null, batch: null },
      { request_id: "req_unfolded", status: "charged", seq: 1, batch: null },
      { request_id: "req_unfolded_2", status: "refunded", seq: 2, batch: null },
    ]);
    // Both unfolded charges replayed onto the account once (with Stripe off, a refund owes Stripe nothing back).
    expect(after.folded).toEqual({ folded_seq: 2, pending_usage: 7 * M });
  });

  it("upgrades version 24 (holds as v8–v22 left them): open and settled holds move to the table keyed by request id, and settle and read as before", async () => {
    const id = uniqueId("cus_v22");
    const stub = customerStub(id);
    await stub.upsertProfile(id, { name: "Held" });
    const keyHash = await sha256Hex((await stub.createKey(null))!.key);
    await stub.credit({ customerId: id, amountCents: 100, reason: "v22" });
    const hold = (requestId: string, units: number) => stub.authorize({ keyHash, meter: "json_tokens", priceMicros: 100_000, requestId, hold: { units, onMissing: "hold" } });
    for (const [requestId, units] of [
      ["open", 30],
      ["settled", 20],
      ["refunded", 10],
    ] as const)
      expect((await hold(requestId, units)).outcome).toBe("ok");
    await stub.settleHold({ requestId: "settled", units: 5, reason: "completed" });
    await stub.settleHold({ requestId: "refunded", units: null, reason: "origin_failed" });
    await stub.balanceCheck();
    // The holds table back as v22 left it (v23 and v24 do not touch it) (a rowid table with its two partial indexes), the rows copied over.
    const columns =
      "request_id, meter, bucket, plan, key_id, unit_price, held_units, receipt, on_missing, status, units, charged, over_hold, reason, created_at, expires_at, settled_at, usage";
    const rowsBefore = await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      sql.exec("ALTER TABLE holds RENAME TO holds_new");
      sql.exec("DROP INDEX holds_refunded");
      sql.exec(HOLD_TABLES.v8);
      sql.exec(HOLD_TABLES.v16);
      sql.exec(`INSERT INTO holds (${columns}) SELECT ${columns} FROM holds_new`);
      sql.exec("DROP TABLE holds_new");
      sql.exec("UPDATE schema_version SET version = 24");
      return sql.exec(`SELECT ${columns} FROM holds ORDER BY request_id`).toArray();
    });
    await evictDurableObject(stub);
    const after = await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      return {
        version: sql.exec("SELECT version FROM schema_version").one().version,
        ddl: sql.exec("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'holds'").one().sql as string,
        indexes: sql
          .exec("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'holds'")
          .toArray()
          .map((r) => r.name),
        rows: sql.exec(`SELECT ${columns} FROM holds ORDER BY request_id`).toArray(),
        seqs: sql.exec("SELECT COUNT(*) AS n FROM holds WHERE taken_seq IS NOT NULL OR settled_seq IS NOT NULL").one().n,
      };
    });
    expect(after.version).toBe(SCHEMA_VERSION);
    expect(after.ddl).toMatch(/WITHOUT ROWID\s*$/);
    expect(after.indexes).toEqual(["holds_refunded"]);
    expect(after.rows).toEqual(rowsBefore);
    expect(after.seqs).toBe(0);
    // Each reads as before; the open one settles (its 25 unused units back), the settled one answers what it was charged.
    expect(await stub.requestCharge("settled")).toMatchObject({ status: "settled", units: 5, charged_exact_cents: "0.5" });
    expect(await stub.requestCharge("refunded")).toMatchObject({ status: "settled", reason: "refunded", charged_exact_cents: "0" });
    expect(await stub.settleHold({ requestId: "settled", units: 9, reason: "completed" })).toMatchObject({ settled: false, chargedMicros: 500_000 });
    expect(await stub.settleHold({ requestId: "open", units: 5, reason: "completed" })).toMatchObject({ settled: true, chargedMicros: 500_000 });
    expect(await stub.balanceCheck()).toMatchObject({ balanceMicros: 99 * 1_000_000, ledgerSumMicros: 99 * 1_000_000 });
  });

  it("creates no storage for a customer id that was never set up", async () => {
    const id = uniqueId("cus_none");
    expect((await admin("GET", `/customers/${id}`)).status).toBe(404);
    const tables = await runInDurableObject(customerStub(id), (_instance, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table'").toArray());
    expect(tables).toEqual([]);
  });
});

describe("the directory's and the dispatcher's schemas run through the same migration runner", () => {
  it("are pinned like the customer's, and an object created before versions existed is upgraded in place", async () => {
    expect(await Promise.all(DIRECTORY_MIGRATIONS.map((m) => sha256Hex(m)))).toEqual(DIRECTORY_DEPLOYED);
    expect(await Promise.all(DISPATCHER_MIGRATIONS.map((m) => sha256Hex(m)))).toEqual(DISPATCHER_DEPLOYED);
    const ns = env.DIRECTORY as DurableObjectNamespace<Directory>;
    const stub = ns.get(ns.idFromName(uniqueId("dir")));
    // As the code before versions left it: version 1's tables (no shard state), rows, no schema_version.
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      sql.exec("DROP TABLE schema_version");
      sql.exec("DROP TABLE shard_state");
      sql.exec("DROP INDEX customers_held");
      sql.exec("ALTER TABLE customers DROP COLUMN held_since");
      sql.exec("DROP INDEX customers_work");
      sql.exec("ALTER TABLE customers DROP COLUMN work_at");
      sql.exec("INSERT INTO sweep (id, now) VALUES (1, 42)");
      sql.exec("INSERT INTO customers (id, email, name, deleted, due_at, lease_until, seq, updated_at) VALUES ('cus_old', 'o@example.com', 'Old', 0, 1000, 0, 3, 1000)");
    });
    await evictDurableObject(stub);
    const after = await runInDurableObject(stub, (_instance, state) => ({
      version: state.storage.sql.exec("SELECT version FROM schema_version").one().version,
      sweep: state.storage.sql.exec("SELECT now FROM sweep").one().now,
      shard: state.storage.sql.exec("SELECT shard, shards, placed_for, share_ppm FROM shard_state").one(),
    }));
    expect(after).toEqual({ version: DIRECTORY_MIGRATIONS.length, sweep: 42, shard: { shard: 0, shards: 1, placed_for: 1, share_ppm: 1_000_000 } });
    // Its customer is still listed and still due, with nothing held back.
    expect(await stub.claimDue(2000, 10)).toMatchObject({ customerIds: ["cus_old"], batching: false });
    expect((await stub.customers(null, 10)).customers).toEqual([expect.objectContaining({ id: "cus_old", email: "o@example.com", due_at: 1000 })]);
  });
});

/** The directory's and the dispatcher's migrations as deployed: append a hash, never change one. */
const DIRECTORY_DEPLOYED = ["e390d294873d24850e6c20dcf60f4b830af208052b9498f08092d7ef1eb11a74", "7e3b836357f0a7bfec769e1819e12e773d9a5748592f334b14feb2f5075e1202"];
const DISPATCHER_DEPLOYED = ["8ad858c0eb483139abc99f387e816574f1d2cf839a2f596256c1be1cfc77d161", "2ecf13c459dcb4349b4cb47c2ee860839d8a43e5b69f0dfcec9cacb6665da0e7"];
