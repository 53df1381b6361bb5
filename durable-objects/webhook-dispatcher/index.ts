import { DurableObject } from "cloudflare:workers";
import { getConfig } from "../../src/lib/config";
import { log } from "../../src/lib/log";
import type { OutboundEvent, WebhookEventType } from "../../src/lib/provider-webhook-events";
import { newStandardSecret } from "../../src/lib/signing";
import { DAY_MS, HOUR_MS } from "../../src/lib/time";
import { migrate } from "../shared/migrations";
import { nextAttemptAt } from "./schedule";
import { sendOnce } from "./send";
import { type DeliveryStatus, type DeliveryView, DISPATCHER_MIGRATIONS, DispatcherStore, type DueDelivery, type EndpointView, endpointView, signingSecrets } from "./store";

/** At most this many endpoints (as Stripe): every event fans out to each of them. */
export const MAX_ENDPOINTS = 16;
/** Deliveries per alarm run: within the Workers Free plan's 50 subrequests per invocation. */
const BATCH = 48;
/** Sends in flight at once (Workers allow 6 open connections per invocation). */
const CONCURRENCY = 6;
/** Finished deliveries and their events are kept this long for the admin API. */
const RETENTION_MS = 30 * DAY_MS;

/**
 * The one object that delivers webhooks to the provider's endpoints. Customer objects hand it
 * events (deduped by event id); it keeps one delivery row per (event, endpoint), sends due ones
 * from its alarm, retries on the schedule in schedule.ts, and answers the admin API.
 */
export class WebhookDispatcher extends DurableObject<Env> {
  private store!: DispatcherStore;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      migrate(ctx.storage, DISPATCHER_MIGRATIONS);
      this.store = new DispatcherStore(ctx.storage.sql);
    });
  }

  // ---------------------------------------------------------------- endpoints (admin API)

  /** The secret is returned here only; it is kept to sign deliveries. */
  createEndpoint(input: { url: string; events: WebhookEventType[] | null; description: string | null }): (EndpointView & { secret: string }) | { error: "limit" } {
    if (this.store.endpointCount() >= MAX_ENDPOINTS) return { error: "limit" };
    const secret = newStandardSecret();
    const row = this.store.createEndpoint({ ...input, secret, now: Date.now() });
    return { ...endpointView(row, {}), secret };
  }

  listEndpoints(): EndpointView[] {
    return this.store.endpoints().map((row) => endpointView(row, this.store.deliveryCounts(row.id)));
  }

  getEndpoint(id: string): EndpointView | null {
    const row = this.store.endpoint(id);
    return row ? endpointView(row, this.store.deliveryCounts(id)) : null;
  }

  /**
   * A new secret, returned here only. Deliveries are signed with the old one too for `overlapSeconds`
   * (Standard Webhooks' several signatures), so receivers can switch without missing one; null if unknown.
   */
  rotateSecret(id: string, overlapSeconds: number): (EndpointView & { secret: string }) | null {
    const secret = newStandardSecret();
    const row = this.store.rotateSecret(id, secret, overlapSeconds * 1000, Date.now());
    return row ? { ...endpointView(row, this.store.deliveryCounts(id)), secret } : null;
  }

  /** Deletes the endpoint and its pending deliveries: nothing more is sent to it. */
  deleteEndpoint(id: string): boolean {
    const deleted = this.store.deleteEndpoint(id);
    this.arm();
    return deleted;
  }

  deliveries(endpointId: string, input: { status?: DeliveryStatus; before?: number; limit: number }) {
    return this.store.endpoint(endpointId) ? this.store.deliveryPage(endpointId, input) : null;
  }

  /** Sends a delivery again (same event, same id) with a fresh retry schedule; null if unknown. */
  redeliver(endpointId: string, deliveryId: string): DeliveryView | null {
    if (!this.store.redeliver(endpointId, deliveryId, Date.now())) return null;
    this.arm();
    return this.store.deliveryWithEvent(deliveryId);
  }

  // ---------------------------------------------------------------- events from customer objects

  /** Records events once each (a repeat hand-off changes nothing) and schedules their deliveries. */
  accept(events: OutboundEvent[]): { accepted: number } {
    const now = Date.now();
    const endpoints = this.store.endpoints();
    let accepted = 0;
    for (const event of events) if (this.store.addEvent(event, endpoints, now)) accepted++;
    // Also here, not only in the alarm: with no endpoint subscribed no alarm runs, and events would pile up.
    this.store.prune(now, RETENTION_MS);
    this.arm();
    return { accepted };
  }

  // ---------------------------------------------------------------- delivery

  override async alarm(): Promise<void> {
    // The work due is what was due at the time this alarm was set for. An alarm never fires early
    // in production; a test that runs it early (runDurableObjectAlarm) steps through the schedule.
    const now = Math.max(Date.now(), this.store.alarmAt() ?? 0);
    this.store.setAlarmAt(null);
    const due = this.store.due(now, BATCH);
    // Claimed before any await, so an overlapping run cannot send the same delivery too.
    for (const d of due) this.store.startAttempt(d, now, nextAttemptAt(d.round_attempts + 1, d.round_started_at ?? now, now) ?? now + HOUR_MS);
    const timeoutMs = getConfig(this.env).WEBHOOK_TIMEOUT_MS;
    let next = 0;
    const worker = async () => {
      while (next < due.length) await this.attempt(due[next++]!, now, timeoutMs);
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, due.length) }, worker));
    this.store.prune(now, RETENTION_MS);
    this.arm();
  }

  private async attempt(d: DueDelivery, startedAt: number, timeoutMs: number): Promise<void> {
    const sentAt = Date.now();
    const result = await sendOnce({ url: d.url, secrets: signingSecrets(d, sentAt), eventId: d.event_id, body: d.body, timeoutMs, now: sentAt });
    const now = Math.max(Date.now(), startedAt);
    const current = this.store.delivery(d.id);
    // Deleted with its endpoint, or redelivered while this attempt was in flight: leave it be.
    if (current?.status !== "pending" || current.round_started_at === null || current.attempts !== d.attempts + 1) return;
    if (result.ok) {
      this.store.finishAttempt(d.id, { status: "succeeded", code: result.status, error: null, nextAt: null, now });
      return;
    }
    const nextAt = nextAttemptAt(current.round_attempts, current.round_started_at, now);
    this.store.finishAttempt(d.id, { status: nextAt === null ? "failed" : "pending", code: result.status, error: result.error, nextAt, now });
    if (nextAt === null) log.warn(`webhook delivery ${d.id} of event ${d.event_id} failed after ${current.attempts} attempts: ${result.error}`);
  }

  /** Points the alarm at the earliest pending attempt (or clears it). */
  private arm(): void {
    const next = this.store.nextDue();
    if (next === this.store.alarmAt()) return;
    this.store.setAlarmAt(next);
    if (next === null) void this.ctx.storage.deleteAlarm();
    else void this.ctx.storage.setAlarm(Math.max(next, 1));
  }
}
