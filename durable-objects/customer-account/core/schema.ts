import { ENDED_SESSION_TABLES } from "../../shared/ended-sessions";
import { migrate as runMigrations } from "../../shared/migrations";
import { KEY_TABLES } from "../access/key-store";
import { PORTAL_TABLES } from "../access/portal-links";
import { AGENT_PAYMENT_TABLES } from "../agent-payments/payment-log";
import { AUTO_TOPUP_TABLES } from "../auto-topup/auto-topup";
import { COHORT_TABLES } from "../cohorts/cohorts";
import { EMAIL_AUDIENCE_TABLES } from "../cohorts/email-audience";
import { EMAIL_TABLES } from "../cohorts/emails";
import { NOTICE_TABLES } from "../cohorts/notices";
import { CHECKOUT_LIMIT_TABLES } from "../credit/checkout-limit";
import { DISPUTE_TABLES } from "../credit/dispute-store";
import { GRANT_TABLES } from "../credit/grants";
import { IGNORED_PAYMENT_TABLES } from "../credit/ignored-payments";
import { INVOICE_TABLES } from "../credit/invoices";
import { LEDGER_TABLES } from "../credit/ledger";
import { REFUND_TABLES } from "../credit/refund-store";
import { LEASE_TABLES } from "../leases/lease-store";
import { OUTBOX_TABLES } from "../notify/provider-webhooks";
import { ROLLUP_TABLES } from "../notify/rollup";
import { CHARGE_TABLES } from "../request/charges";
import { HOLD_TABLES } from "../request/holds";
import { IDEMPOTENCY_TABLES } from "../request/idempotency";
import { MCP_SESSION_TABLES } from "../request/mcp-sessions";
import { MODEL_USAGE_TABLES } from "../request/model-usage";
import { EMAIL_RETENTION_TABLES } from "../retention/emails";
import { REPORT_RETENTION_TABLES } from "../retention/reports";
import { USAGE_RETENTION_TABLES } from "../retention/usage";
import { STRIPE_EVENT_TABLES } from "../stripe/event-log";
import { RECEIPT_TABLES } from "../stripe/receipts";
import { REPORT_TABLES } from "../stripe/reports";
import { ACCOUNT_TABLES } from "./account";
import { JOURNAL_TABLES } from "./journal";
import { TIMER_TABLES } from "./timers";

/**
 * The object's schema, versioned. Migration N takes a database at version N-1 to version N; each
 * runs once, in its own transaction, under blockConcurrencyWhile. Append only: never edit a
 * migration that has been deployed, add the next one. Each module owns the DDL of its tables.
 *
 * Version 1 is the schema objects had before versioning existed. It is all
 * `CREATE … IF NOT EXISTS`, so it runs harmlessly over such an object and records its version.
 */
export const MIGRATIONS: readonly string[] = [
  [ACCOUNT_TABLES.v1, KEY_TABLES.v1, LEDGER_TABLES.v1, REPORT_TABLES.v1, STRIPE_EVENT_TABLES.v1, INVOICE_TABLES.v1, COHORT_TABLES.v1, EMAIL_TABLES.v1].join("\n"),
  // v2: named timers sharing the one alarm (an upgraded object pushes its directory snapshot once).
  TIMER_TABLES.v2,
  // v3: credit grants (the balance held before becomes one `migration` grant, a negative one debt),
  // charges by request id, key caps, disputes, and the account fields they need.
  [ACCOUNT_TABLES.v3, GRANT_TABLES.v3, LEDGER_TABLES.v3, KEY_TABLES.v3, CHARGE_TABLES.v3, DISPUTE_TABLES.v3, REFUND_TABLES.v3].join("\n"),
  // v4: the webhook outbox (events written with the change that caused them, handed on by the alarm).
  OUTBOX_TABLES.v4,
  // v5: emails: MailChannels request ids, unsubscribe preference, retention (index, archived counts, timer).
  [EMAIL_TABLES.v5, EMAIL_AUDIENCE_TABLES.v5, EMAIL_RETENTION_TABLES.v5].join("\n"),
  // v6: checkout sessions in the last hour, for GOVERNANCE.checkout_limit_per_hour.
  CHECKOUT_LIMIT_TABLES.v6,
  // v7: the overview's rollup state (an upgraded object pushes its rollup once) and
  // one-time portal links.
  [ROLLUP_TABLES.v7, PORTAL_TABLES.v7].join("\n"),
  // v8: holds for requests billed from their response, and client Idempotency-Keys.
  [HOLD_TABLES.v8, IDEMPOTENCY_TABLES.v8].join("\n"),
  // v9: auto top-up settings and top-ups.
  AUTO_TOPUP_TABLES.v9,
  // v10: bounded state: old settled Stripe reports deleted (their sums kept), old usage buckets
  // folded into a carried-forward row, Stripe event ids pruned by an index (timers and indexes).
  [REPORT_RETENTION_TABLES.v10, USAGE_RETENTION_TABLES.v10, STRIPE_EVENT_TABLES.v10].join("\n"),
  // v11: when a key's cap began counting (refunds of charges made before give no room back).
  KEY_TABLES.v11,
  // v12: the charge journal: a plain charge writes its charge row only; the rest is folded in later.
  JOURNAL_TABLES.v12,
  // v13: portal sessions signed out before they expired.
  ENDED_SESSION_TABLES.v1,
  // v14: refunds one by one, disputes by Stripe's status (freeze, take back, give back), and per
  // grant the micro-cents under open disputes (frozen = min(remaining, disputed)).
  // Payments that credited nothing, for the admin API.
  [REFUND_TABLES.v14, DISPUTE_TABLES.v14, GRANT_TABLES.v14, IGNORED_PAYMENT_TABLES.v14].join("\n"),
  // v15: auto top-up's rate limits and the card's own PaymentIntent; transactional notices. Auto
  // top-up that charged the default card or has threshold >= amount is paused, the customer told once.
  [NOTICE_TABLES.v14, AUTO_TOPUP_TABLES.v14].join("\n"),
  // v16: MCP sessions that negotiated a protocol version without batches; token usage per model
  // and kind (with each hold's own); post-paid cost per meter and model, reported in whole cents.
  [MCP_SESSION_TABLES.v16, MODEL_USAGE_TABLES.v16, HOLD_TABLES.v16, REPORT_TABLES.v16].join("\n"),
  // v17: paid top-ups with their tax, invoice and receipt links (the top-up list), and the email
  // an auto top-up's Stripe receipt goes to.
  [RECEIPT_TABLES.v17, AUTO_TOPUP_TABLES.v17].join("\n"),
  // v18: payments agents made on a 402 (x402, MPP), one row each, replayed with their first receipt.
  AGENT_PAYMENT_TABLES.v18,
  // v19: report batching while customers due outnumber the Stripe budget (STRIPE_BUDGET).
  ACCOUNT_TABLES.v19,
  // v20: x402 payments recorded as
  // Stripe PaymentIntents (record_in_stripe), retried until Stripe answers.
  AGENT_PAYMENT_TABLES.v20,
  // v21: credit leases (docs/scaling.md): live leases, expired ones kept for a late report, the epoch.
  LEASE_TABLES.v21,
  // v22: charge rows clustered on the request id, one row written per charge (docs/design/one-row-per-charge.md).
  CHARGE_TABLES.v22,
  // v23: a charge's Idempotency-Key in flight held by its charge row, finished keys clustered on the key (docs/design/idempotency-in-two-rows.md).
  IDEMPOTENCY_TABLES.v23,
  // v24: a group-commit batch's journaled charges in one row (docs/design/one-row-per-batch.md).
  CHARGE_TABLES.v24,
  // v25: hold rows clustered on the request id, a hold and its settlement one row each (docs/design/journaled-holds.md).
  HOLD_TABLES.v25,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Whether this object holds an account at all (a made-up customer id leaves no storage behind). */
export function hasSchema(sql: SqlStorage): boolean {
  return sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'account'").toArray().length > 0;
}

/** Brings the customer's database to SCHEMA_VERSION; returns the version it started from. */
export function migrate(storage: DurableObjectStorage): number {
  return runMigrations(storage, MIGRATIONS);
}
