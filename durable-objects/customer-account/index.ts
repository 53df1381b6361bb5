import { DurableObject } from "cloudflare:workers";
import type Stripe from "stripe";
import { log } from "../../src/log";
import type { AuthorizeResult, CustomerProfile, CycleResult, ProfilePatch } from "../../src/types";
import { applyCredit, type CreditInput, type CreditResult } from "./credits";
import type { EmailRow } from "./emails";
import { decide } from "./governance";
import type { KeyInfo } from "./keys";
import { bucketOf } from "./ledger";
import { upsertProfile } from "./profile";
import { DIRECTORY_TIMER } from "./directory-sync";
import { LIVE_TAG } from "./live";
import { Room } from "./room";
import { ROLLUP_TIMER } from "./rollup";
import { hasSchema, migrate } from "./schema";
import { applyStripeEvent, type EventStatus } from "./stripe-events";
import { reconcile } from "./stripe-reconcile";
import { summary } from "./summary";
import { usageSeries } from "./usage-series";

const TIMER_RETRY_MS = 5_000;

/**
 * One customer's account, as a Durable Object: the RPC surface over the modules in this folder.
 * Every balance change is synchronous SQL with no await in between, so concurrent requests can
 * never overdraw it. Work that awaits Stripe or MailChannels runs under a lock the request path
 * never takes.
 */
export class CustomerAccount extends DurableObject<Env> {
  private readonly room: Room;
  private lockTail: Promise<unknown> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.room = new Room(ctx, env);
    // Keep-alive pings from live pages are answered without waking the object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
    ctx.blockConcurrencyWhile(async () => {
      // The schema is written with the account, so a request with a made-up customer id leaves
      // no storage behind; an existing account is migrated to the current schema version.
      if (hasSchema(ctx.storage.sql)) {
        migrate(ctx.storage);
        this.room.load();
      }
    });
  }

  /** Serializes work that awaits Stripe or MailChannels; the request path never takes it. */
  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lockTail.then(fn, fn);
    this.lockTail = run.catch(() => undefined);
    return run;
  }

  // ---------------------------------------------------------------- profile and keys

  upsertProfile(customerId: string, patch: ProfilePatch): { created: boolean; customer: CustomerProfile } {
    return upsertProfile(this.room, customerId, patch);
  }

  async createKey(name: string | null): Promise<{ id: string; key: string; prefix: string; created_at: number } | null> {
    if (!this.room.account.exists) return null;
    return this.room.keys.create(this.room.account.row.customer_id, name);
  }

  revokeKey(keyId: string): boolean {
    return this.room.account.exists && this.room.keys.revoke(keyId);
  }

  listKeys(): KeyInfo[] {
    return this.room.account.exists ? this.room.keys.list() : [];
  }

  /** A one-time portal link token for this customer, or null if there is no such (live) customer. */
  async createPortalLink(expiresAt: number): Promise<string | null> {
    const { account, portalLinks } = this.room;
    if (!account.exists || account.row.deleted_at !== null) return null;
    return portalLinks.create(account.row.customer_id, expiresAt, Date.now());
  }

  /** Consumes a portal link (true once); a deleted customer's links no longer open. */
  consumePortalLink(hash: string): boolean {
    const { account, portalLinks } = this.room;
    return account.exists && account.row.deleted_at === null && portalLinks.consume(hash, Date.now());
  }

  identify(keyHash: string): CustomerProfile | null {
    const { account, keys } = this.room;
    if (!account.exists || !keys.isValid(keyHash) || account.row.deleted_at !== null) return null;
    return account.profile();
  }

  // ---------------------------------------------------------------- the request path

  /** Checks the key, applies the governance rule and debits, in one synchronous step. */
  authorize(input: { keyHash: string; meter: string; priceMicros: number; now?: number }): AuthorizeResult {
    const room = this.room;
    if (!room.account.exists || !room.keys.isValid(input.keyHash)) return { outcome: "invalid_key" };
    const a = room.account.row;
    if (a.deleted_at !== null) return { outcome: "customer_deleted" };
    const minimumMicros = room.minimumMicros();
    const verdict = decide({
      plan: a.plan,
      balanceMicros: a.balance,
      minimumMicros,
      priceMicros: input.priceMicros,
      overdue: a.plan === "postpaid" && room.config.GOVERNANCE.block_postpaid_when_unpaid && room.invoices.unpaid(),
    });
    if (verdict !== "ok") {
      return { outcome: verdict, customer: room.account.profile(), balanceMicros: a.balance, minimumMicros, priceMicros: input.priceMicros };
    }
    const now = input.now ?? Date.now();
    const bucket = bucketOf(now, room.config.PRICING.usage_bucket_seconds);
    this.recordUsage(input.meter, bucket, -input.priceMicros, 1, now);
    return { outcome: "ok", customerId: a.customer_id, chargedMicros: input.priceMicros, balanceMicros: room.account.row.balance, bucket };
  }

  /** Gives back a charge whose request the origin failed (configurable), into the same bucket. */
  refund(input: { meter: string; priceMicros: number; bucket: number }): { balanceMicros: number } {
    if (!this.room.account.exists) throw new Error("unknown customer");
    this.recordUsage(input.meter, input.bucket, input.priceMicros, -1, Date.now());
    return { balanceMicros: this.room.account.row.balance };
  }

  private recordUsage(meter: string, bucket: number, amount: number, count: number, now: number): void {
    const room = this.room;
    room.atomically(() => {
      room.ledger.usage({ meter, bucket, amount, count, now }, room.reports.accrue(room.account.row.plan, meter, amount, count));
      room.changed();
    });
  }

  // ---------------------------------------------------------------- credits

  /** Grants (amount > 0) or deducts (amount < 0) whole cents; pushed to Stripe when it is on. */
  grant(input: CreditInput): Promise<CreditResult> {
    return this.withLock(async () => {
      const result = applyCredit(this.room, input);
      if (result.applied && this.room.config.stripeEnabled) {
        const flushed = await this.room.reports.flush(Date.now()).catch((error) => {
          log.error("stripe push failed", error);
          return { pending: 1 };
        });
        // Not pushed yet: make sure the cron comes back for it.
        if (flushed.pending > 0) this.room.directory.schedule();
      }
      return result;
    });
  }

  // ---------------------------------------------------------------- Stripe and the cron

  /** Applies one verified Stripe event; duplicates are acknowledged and ignored. */
  applyStripeEvent(customerId: string, event: Stripe.Event): Promise<{ status: EventStatus }> {
    return this.withLock(async () => ({ status: await applyStripeEvent(this.room, customerId, event) }));
  }

  /** Reports usage to Stripe and sends due emails. Safe to run twice or concurrently. */
  runCycle(now: number): Promise<CycleResult> {
    return this.withLock(async () => {
      const room = this.room;
      const result: CycleResult = { reported: 0, reportErrors: 0, emailed: 0 };
      if (!room.account.exists) return result;
      if (room.config.stripeEnabled) {
        room.atomically(() => room.reports.cut());
        const flushed = await room.reports.flush(now);
        result.reported = flushed.sent;
        result.reportErrors = flushed.errors;
        if (room.account.row.reconcile_needed && flushed.pending === 0) await reconcile(room).catch((e) => log.error("reconcile failed", e));
      }
      result.emailed = await room.emails.sendDue(room.cohorts.current, now);
      room.rollup.changed();
      await room.directory.push();
      return result;
    });
  }

  /** The one alarm, shared by named timers: each due timer's handler runs; a failed one retries. */
  override async alarm(): Promise<void> {
    const room = this.room;
    if (!room.account.exists) return;
    const handlers: Record<string, () => Promise<void>> = {
      [DIRECTORY_TIMER]: () => room.directory.push(),
      [ROLLUP_TIMER]: () => room.rollup.push(),
    };
    for (const name of room.timers.takeDue(Date.now())) {
      try {
        await handlers[name]?.();
      } catch (error) {
        log.warn(`timer ${name} failed; retrying in ${TIMER_RETRY_MS / 1000} s`, error);
        room.timers.at(name, Date.now() + TIMER_RETRY_MS);
      }
    }
    room.timers.rearm();
  }

  // ---------------------------------------------------------------- live balance (WebSocket hibernation)

  /** Only the WebSocket upgrade for the live balance; the worker has authorized the viewer. */
  override async fetch(request: Request): Promise<Response> {
    return this.room.live.accept(request);
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    this.room.live.message(ws, message);
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string): void {
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, reason);
    } catch {
      // Already closed.
    }
  }

  override webSocketError(ws: WebSocket, error: unknown): void {
    log.debug(`live socket error (${this.ctx.getWebSockets(LIVE_TAG).length} open)`, error);
  }

  // ---------------------------------------------------------------- reads

  summary(): Record<string, unknown> | null {
    return this.room.account.exists ? summary(this.room) : null;
  }

  ledgerPage(input: { before?: number; limit: number }) {
    return this.room.account.exists ? this.room.ledger.page(input.before, input.limit) : { entries: [], next_cursor: null };
  }

  /** Requests and charges per meter per usage bucket since `since` (ms), oldest first. */
  usageSeries(since: number) {
    return this.room.account.exists ? usageSeries(this.room.sql, since) : [];
  }

  emails(limit = 50): EmailRow[] {
    return this.room.account.exists ? this.room.emails.list(limit) : [];
  }

  /** Exact micro-cent numbers, for tests and reconciliation checks. */
  balanceCheck(): { balanceMicros: number; ledgerSumMicros: number; pendingUsageMicros: number; rows: number } | null {
    const { account, ledger } = this.room;
    if (!account.exists) return null;
    return { balanceMicros: account.row.balance, ledgerSumMicros: ledger.sum(), pendingUsageMicros: account.row.pending_usage, rows: ledger.rows() };
  }
}
