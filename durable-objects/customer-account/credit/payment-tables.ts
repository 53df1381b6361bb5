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
  // Refunds one by one (a refund can fail after charge.refunded); disputes keep Stripe's own
  // status, the `created` of the event that set it, whether the funds were reinstated, and the
  // effect applied to the grant (none, frozen, taken) with what it took. The statuses of v3 map
  // onto Stripe's: open was needs_response; a lost dispute already applied took what its ledger
  // entry says. payment_refunds stays for refunds recorded before; the first refund list of a
  // payment replaces its row (clawbacks.ts).
  v14: `
CREATE TABLE IF NOT EXISTS refunds (
  id TEXT PRIMARY KEY,
  payment_intent TEXT NOT NULL,
  amount INTEGER NOT NULL,
  status TEXT NOT NULL,
  created INTEGER NOT NULL,
  applied TEXT NOT NULL DEFAULT 'no',
  taken INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_payment_intent ON refunds(payment_intent);
ALTER TABLE disputes ADD COLUMN event_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE disputes ADD COLUMN reinstated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE disputes ADD COLUMN effect TEXT NOT NULL DEFAULT 'none';
ALTER TABLE disputes ADD COLUMN taken INTEGER NOT NULL DEFAULT 0;
ALTER TABLE disputes ADD COLUMN moves INTEGER NOT NULL DEFAULT 0;
UPDATE disputes SET effect = 'frozen' WHERE status = 'open' AND grant_id IS NOT NULL;
UPDATE disputes SET effect = 'taken', moves = 1,
  taken = COALESCE((SELECT -l.amount FROM ledger l WHERE l.reference = 'dispute_' || disputes.id AND l.kind = 'clawback'), 0)
  WHERE status = 'lost' AND closed_at IS NOT NULL;
UPDATE disputes SET status = 'needs_response' WHERE status = 'open';
ALTER TABLE disputes DROP COLUMN grant_id;
ALTER TABLE disputes DROP COLUMN frozen;
ALTER TABLE disputes DROP COLUMN closed_at;`,
};
