export const INVOICE_TABLES = {
  v1: `CREATE TABLE IF NOT EXISTS invoices (id TEXT PRIMARY KEY, status TEXT NOT NULL, updated_at INTEGER NOT NULL);`,
};

export type InvoiceEvent = "invoice.paid" | "invoice.payment_failed" | "invoice.voided" | "invoice.marked_uncollectible";

/** Post-paid invoices the customer has not paid: they block its requests and put it in payment_failed. */
export class Invoices {
  constructor(private readonly sql: SqlStorage) {}

  unpaid(): boolean {
    return this.sql.exec("SELECT 1 FROM invoices WHERE status = 'failed' LIMIT 1").toArray().length > 0;
  }

  unpaidIds(): string[] {
    return this.sql
      .exec("SELECT id FROM invoices WHERE status = 'failed'")
      .toArray()
      .map((r) => r.id as string);
  }

  /** Paid, void and uncollectible are final: a late payment_failed must not block the customer again. */
  record(invoiceId: string, event: InvoiceEvent, now: number): void {
    const existing = this.sql.exec("SELECT status FROM invoices WHERE id = ?", invoiceId).toArray()[0];
    const next = event === "invoice.payment_failed" ? "failed" : event === "invoice.paid" ? "paid" : "closed";
    if (next === "failed" && existing !== undefined && existing.status !== "failed") return;
    this.sql.exec(
      "INSERT INTO invoices (id, status, updated_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
      invoiceId,
      next,
      now,
    );
  }
}
