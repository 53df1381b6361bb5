export const AGENT_PAYMENT_TABLES = {
  v18: `CREATE TABLE IF NOT EXISTS agent_payments (
  id TEXT PRIMARY KEY,
  rail TEXT NOT NULL,
  grant_id TEXT,
  amount_cents INTEGER NOT NULL,
  payer TEXT,
  transaction_id TEXT,
  receipt TEXT NOT NULL,
  created_at INTEGER NOT NULL
);`,
};

export type PaymentRow = {
  id: string;
  rail: string;
  grant_id: string | null;
  amount_cents: number;
  payer: string | null;
  transaction_id: string | null;
  receipt: string;
  created_at: number;
};

/** The payments agents made on a 402 (one row each, kept like grants), with the receipt replays get. */
export class PaymentLog {
  constructor(private readonly sql: SqlStorage) {}

  get(id: string): PaymentRow | undefined {
    return this.sql.exec<PaymentRow>("SELECT * FROM agent_payments WHERE id = ?", id).toArray()[0];
  }

  /** The first row for an id stays: a second insert of the same payment changes nothing. */
  insert(row: PaymentRow): void {
    this.sql.exec(
      "INSERT INTO agent_payments (id, rail, grant_id, amount_cents, payer, transaction_id, receipt, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
      row.id,
      row.rail,
      row.grant_id,
      row.amount_cents,
      row.payer,
      row.transaction_id,
      row.receipt,
      row.created_at,
    );
  }
}
