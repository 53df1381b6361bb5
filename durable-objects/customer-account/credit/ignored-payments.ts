import { log } from "../../../src/lib/log";

export const IGNORED_PAYMENT_TABLES = {
  v14: `
CREATE TABLE IF NOT EXISTS ignored_payments (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL,
  object_id TEXT NOT NULL,
  amount INTEGER,
  currency TEXT,
  reason TEXT NOT NULL,
  created_at INTEGER NOT NULL
);`,
};

/** Ignored payments kept for the admin API; older rows go (the log has them all). */
const KEPT = 100;

export interface IgnoredPayment {
  event_id: string;
  object_id: string;
  /** Minor units, as Stripe reported them. */
  amount: number | null;
  currency: string | null;
  reason: string;
}

/**
 * A payment this customer made that credited nothing (a Checkout session in another currency,
 * without or with bad top-up metadata, past the balance limit, …): logged and kept, so that
 * money taken is never dropped silently. `GET /admin/customers/{id}` lists the latest.
 */
export function recordIgnoredPayment(sql: SqlStorage, payment: IgnoredPayment, now: number): void {
  log.warn(`stripe event ${payment.event_id}: payment ${payment.object_id} (${payment.amount ?? "?"} ${payment.currency ?? "?"}) credited nothing: ${payment.reason}`);
  sql.exec(
    "INSERT INTO ignored_payments (event_id, object_id, amount, currency, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    payment.event_id,
    payment.object_id,
    payment.amount,
    payment.currency,
    payment.reason,
    now,
  );
  sql.exec("DELETE FROM ignored_payments WHERE id <= (SELECT MAX(id) FROM ignored_payments) - ?", KEPT);
}

export function ignoredPayments(sql: SqlStorage, limit = 20) {
  return sql.exec("SELECT event_id, object_id, amount, currency, reason, created_at FROM ignored_payments ORDER BY id DESC LIMIT ?", limit).toArray();
}
