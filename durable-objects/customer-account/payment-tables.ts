/** What Stripe reported about top-up payments (refunds, disputes), kept until their grant can take it. */
export const DISPUTE_TABLES = {
  v3: `
CREATE TABLE IF NOT EXISTS disputes (
  id TEXT PRIMARY KEY,
  grant_id TEXT,
  payment_intent TEXT,
  amount INTEGER NOT NULL,
  status TEXT NOT NULL,
  frozen INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  closed_at INTEGER
);
CREATE INDEX IF NOT EXISTS disputes_payment_intent ON disputes(payment_intent);
CREATE TABLE IF NOT EXISTS payment_refunds (payment_intent TEXT PRIMARY KEY, refunded_cents INTEGER NOT NULL, updated_at INTEGER NOT NULL);`,
};
