import { newId } from "../../../src/lib/api-key-format";
import type { Cohort } from "../../../src/lib/config";
import { microsToWholeCents } from "../../../src/lib/money";
import type { OutboundEvent, WebhookEventData, WebhookEventFields, WebhookEventType } from "../../../src/lib/provider-webhook-events";
import { webhookDispatcherStub } from "../../webhook-dispatcher/contract";
import type { AccountStore } from "../core/account";
import type { Timers } from "../core/timers";

export const OUTBOX_TABLES = {
  v4: `CREATE TABLE IF NOT EXISTS webhook_outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL
);`,
};

export const WEBHOOK_TIMER = "webhooks";
/** Events handed to the dispatcher per RPC. */
const HANDOFF_BATCH = 100;

/**
 * Webhook events leave the customer's object through this outbox. `emit` writes the event in the
 * caller's synchronous step (the debit or credit that caused it), so it exists exactly when the
 * change does; the object's alarm then hands it to the WebhookDispatcher, which dedupes by id.
 */
export class ProviderWebhookOutbox {
  constructor(
    private readonly sql: SqlStorage,
    private readonly deps: { env: Env; timers: Timers; account: AccountStore; availableMicros: () => number },
  ) {}

  /** Records one event (no await: call it inside the step that changed the balance). Returns its id. */
  emit<T extends WebhookEventType>(type: T, fields: WebhookEventFields[T]): string {
    const a = this.deps.account.row;
    const now = Date.now();
    const id = newId("evt");
    const data: WebhookEventData<T> = { customer_id: a.customer_id, balance_cents: microsToWholeCents(this.deps.availableMicros()), ...fields };
    // The body is fixed here: every delivery and redelivery sends these exact bytes.
    const body = JSON.stringify({ id, type, created: Math.floor(now / 1000), data });
    this.sql.exec("INSERT INTO webhook_outbox (id, type, body, created_at) VALUES (?, ?, ?, ?)", id, type, body, now);
    this.deps.timers.at(WEBHOOK_TIMER, now);
    return id;
  }

  /** The events a cohort change means (none for a deleted customer: leaving is not a recovery). */
  crossed(moved: { entered: Cohort[]; left: Cohort[] }, context: { minimumMicros: number; lowThresholdMicros: number; unpaidInvoices: () => string[] }): void {
    const minimum_balance_cents = microsToWholeCents(context.minimumMicros);
    if (moved.left.includes("out_of_credits")) this.emit("customer.balance.restored", { minimum_balance_cents });
    if (moved.entered.includes("low_balance")) {
      this.emit("customer.balance.low", { minimum_balance_cents, threshold_cents: microsToWholeCents(context.lowThresholdMicros) });
    }
    if (moved.entered.includes("out_of_credits")) this.emit("customer.balance.depleted", { minimum_balance_cents });
    if (moved.entered.includes("payment_failed")) this.emit("customer.payment_failed", { unpaid_invoices: context.unpaidInvoices() });
  }

  pending(): number {
    return this.sql.exec("SELECT COUNT(*) AS n FROM webhook_outbox").one().n as number;
  }

  /** From the alarm: hands pending events to the dispatcher; a failure throws and the timer retries. */
  async handOff(): Promise<void> {
    const rows = this.sql.exec("SELECT seq, id, type, body FROM webhook_outbox ORDER BY seq LIMIT ?", HANDOFF_BATCH).toArray();
    if (!rows.length) return;
    const customerId = this.deps.account.row.customer_id;
    const events: OutboundEvent[] = rows.map((r) => ({ id: r.id as string, type: r.type as WebhookEventType, customerId, body: r.body as string }));
    await webhookDispatcherStub(this.deps.env).accept(events);
    // Only what was handed over: events emitted during the call wait for the next run.
    this.sql.exec(`DELETE FROM webhook_outbox WHERE seq IN (${rows.map(() => "?").join(", ")})`, ...rows.map((r) => r.seq));
    if (this.pending() > 0) this.deps.timers.at(WEBHOOK_TIMER, Date.now());
  }
}
