/**
 * Top-ups as the customer paid them, with their invoice and receipt links: the owner of
 * `topup_payments` (one row per paid top-up, written with its credit) and `payment_documents`
 * (the links Stripe's events carry: `invoice.paid` for a Checkout top-up's invoice,
 * `charge.succeeded` for every charge's receipt). Stripe does not order deliveries, so a link
 * may arrive before or after its top-up; the list joins them when it is read.
 */
export const RECEIPT_TABLES = {
  v17: `
CREATE TABLE IF NOT EXISTS topup_payments (
  payment_intent TEXT PRIMARY KEY,
  source TEXT NOT NULL,
  reference TEXT NOT NULL,
  credit_cents INTEGER NOT NULL,
  tax_cents INTEGER NOT NULL DEFAULT 0,
  total_cents INTEGER NOT NULL,
  currency TEXT NOT NULL,
  invoice TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS topup_payments_created ON topup_payments(created_at);
CREATE TABLE IF NOT EXISTS payment_documents (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  payment_intent TEXT,
  url TEXT,
  pdf_url TEXT,
  number TEXT,
  received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS payment_documents_payment_intent ON payment_documents(payment_intent) WHERE payment_intent IS NOT NULL;`,
};

export interface TopUpPayment {
  paymentIntent: string;
  source: "checkout" | "auto_topup";
  /** The Checkout session (cs_…) or the auto top-up (tu_…). */
  reference: string;
  /** What was credited: the amount before tax. */
  creditCents: number;
  /** Tax paid on top (Stripe Tax), never credited. */
  taxCents: number;
  /** What the customer paid: credit plus tax. */
  totalCents: number;
  currency: string;
  /** The Checkout top-up's invoice (GOVERNANCE.checkout_invoice), once Stripe made one. */
  invoice: string | null;
  createdAt: number;
}

/** A paid top-up, recorded in the step that credits it; the same payment again changes nothing. */
export function recordTopUpPayment(sql: SqlStorage, p: TopUpPayment): void {
  sql.exec(
    `INSERT INTO topup_payments (payment_intent, source, reference, credit_cents, tax_cents, total_cents, currency, invoice, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (payment_intent) DO UPDATE SET invoice = COALESCE(invoice, excluded.invoice)`,
    p.paymentIntent,
    p.source,
    p.reference,
    p.creditCents,
    p.taxCents,
    p.totalCents,
    p.currency,
    p.invoice,
    p.createdAt,
  );
}

/** A top-up recorded before its credit, whose credit then did not land (ignored_payments says why). */
export function forgetTopUpPayment(sql: SqlStorage, paymentIntent: string): void {
  sql.exec("DELETE FROM topup_payments WHERE payment_intent = ?", paymentIntent);
}

/**
 * The credit (micro-cents) that `cents` of a top-up's payment bought: a refund or dispute of a
 * taxed payment takes back its pre-tax share only (the tax was never credited), rounded down;
 * without tax, all of it.
 */
export function creditShare(sql: SqlStorage, paymentIntent: string, cents: number): number {
  const row = sql.exec("SELECT credit_cents, total_cents FROM topup_payments WHERE payment_intent = ?", paymentIntent).toArray()[0];
  const micros = BigInt(cents) * 1_000_000n;
  if (!row || row.total_cents === row.credit_cents || !(Number(row.total_cents) > 0)) return Number(micros);
  return Number((micros * BigInt(row.credit_cents as number)) / BigInt(row.total_cents as number));
}

/** An invoice's or a charge's links, as its latest event has them. */
export function recordDocument(
  sql: SqlStorage,
  doc: { id: string; kind: "invoice" | "receipt"; paymentIntent: string | null; url: string | null; pdfUrl: string | null; number: string | null },
  now: number,
): void {
  sql.exec(
    `INSERT INTO payment_documents (id, kind, payment_intent, url, pdf_url, number, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (id) DO UPDATE SET url = COALESCE(excluded.url, url), pdf_url = COALESCE(excluded.pdf_url, pdf_url), number = COALESCE(excluded.number, number)`,
    doc.id,
    doc.kind,
    doc.paymentIntent,
    doc.url,
    doc.pdfUrl,
    doc.number,
    now,
  );
}

/** The customer's top-ups, newest first, each with its invoice and receipt links when Stripe has sent them. */
export function topUpList(sql: SqlStorage, limit: number) {
  const rows = sql
    .exec(
      `SELECT t.*, i.url AS invoice_url, i.pdf_url AS invoice_pdf, i.number AS invoice_number,
         (SELECT r.url FROM payment_documents r WHERE r.kind = 'receipt' AND r.payment_intent = t.payment_intent ORDER BY r.received_at DESC LIMIT 1) AS receipt_url
       FROM topup_payments t LEFT JOIN payment_documents i ON i.id = t.invoice AND i.kind = 'invoice'
       ORDER BY t.created_at DESC, t.payment_intent LIMIT ?`,
      limit,
    )
    .toArray();
  return rows.map((r) => ({
    payment_intent: r.payment_intent as string,
    source: r.source as TopUpPayment["source"],
    reference: r.reference as string,
    credit_cents: r.credit_cents as number,
    tax_cents: r.tax_cents as number,
    total_cents: r.total_cents as number,
    currency: r.currency as string,
    created_at: r.created_at as number,
    invoice:
      r.invoice === null
        ? null
        : { id: r.invoice as string, number: r.invoice_number as string | null, url: r.invoice_url as string | null, pdf_url: r.invoice_pdf as string | null },
    receipt_url: r.receipt_url as string | null,
  }));
}

export type TopUpListItem = ReturnType<typeof topUpList>[number];
