import { DurableObject } from "cloudflare:workers";
import type Stripe from "stripe";
import { log } from "../../src/lib/log";
import { centsToMicros } from "../../src/lib/money";
import type { CustomerProfile, ProfilePatch } from "../../src/lib/customer";
import type { AuthorizeResult, CycleResult } from "./contract";
import { runDueTimers } from "./core/alarm";
import type { AutoTopUpSettings } from "./auto-topup/auto-topup";
import { autoTopUpView, topUpView } from "./auto-topup/view";
import type { CheckoutSlot } from "./credit/checkout-limit";
import { createGrant, creditOutcome, deduct, fitsBalance, voidGrant, type DeductionInput, type GrantInput, type GrantResult } from "./credit/credits";
import { runCycle } from "./core/cycle";
import type { EmailRow } from "./cohorts/emails";
import type { Grant } from "./credit/grants";
import { GroupCommit } from "./core/group-commit";
import type { SettleReason } from "./request/holds";
import type { StoredResponse } from "./request/idempotency";
import type { CapPeriod } from "./access/key-store";
import { LIVE_TAG } from "./notify/live";
import { activeProfile, upsertProfileAndAutoTopUp } from "./access/profile";
import { resolveReport, retryReport } from "./stripe/report-operator";
import { extendHold, keepHold, settleHold, type ExtendResult, type SettleResult } from "./request/settlement";
import { authorize, finishIdempotent, refund, requestCharge, type AuthorizeInput, type RefundResult } from "./request/authorize";
import { AccountContext } from "./core/context";
import { hasSchema, migrate } from "./core/schema";
import { storageStats } from "./views/storage-stats";
import type { ChargeRefunds } from "./contract";
import { applyStripeEvent, type EventStatus } from "./stripe/events";
import { pushToStripe } from "./stripe/sync";
import { balanceCheck, grantView, summary } from "./views/summary";

/**
 * One customer's account, as a Durable Object: the RPC surface over the modules in this folder.
 * Every balance change is synchronous SQL with no await in between, so concurrent requests can
 * never overdraw it. Work that awaits Stripe or MailChannels runs under a lock the request path
 * never takes.
 */
export class CustomerAccount extends DurableObject<Env> {
  /** The request path's view: charges may be journaled and not yet folded in (journal.ts). */
  private readonly hot: AccountContext;
  private readonly commits: GroupCommit;
  private lockTail: Promise<unknown> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.hot = new AccountContext(ctx, env);
    this.commits = new GroupCommit(ctx.storage);
    // Keep-alive pings from live pages are answered without waking the object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
    ctx.blockConcurrencyWhile(async () => {
      // The schema is written with the account, so a request with a made-up customer id leaves
      // no storage behind; an existing account is migrated to the current schema version.
      if (hasSchema(ctx.storage.sql)) {
        migrate(ctx.storage);
        this.hot.load();
        // A migration may have written timers (an upgrade's notices, its retention passes): they run now.
        this.hot.timers.rearm();
      }
    });
  }

  /** Every method but authorize, the alarm included: the journal folded in first, so SQLite holds every charge. */
  private get context(): AccountContext {
    this.hot.journal.fold();
    return this.hot;
  }

  /** Serializes work that awaits Stripe or MailChannels; the request path never takes it. */
  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lockTail.then(fn, fn);
    this.lockTail = run.catch(() => undefined);
    return run;
  }

  // ---------------------------------------------------------------- profile and keys

  /** Creates or updates the profile and, when given, the auto top-up settings (null: off), in one step. */
  upsertProfile(customerId: string, patch: ProfilePatch, autoTopUp?: AutoTopUpSettings | null) {
    return upsertProfileAndAutoTopUp(this.context, customerId, patch, autoTopUp);
  }

  /** Auto top-up settings, state and recent top-ups; null for an unknown customer. */
  autoTopUp(limit = 20) {
    const context = this.context;
    if (!context.account.exists) return null;
    return { auto_topup: autoTopUpView(context.autoTopUp, Date.now()), topups: context.autoTopUp.recent(limit).map(topUpView) };
  }

  async createKey(
    name: string | null,
    cap: { spendCapCents: number | null; capPeriod: CapPeriod | null } = { spendCapCents: null, capPeriod: null },
  ): Promise<{ id: string; key: string; prefix: string; created_at: number; signed: boolean } | null> {
    if (!this.context.account.exists) return null;
    const key = await this.context.keys.create(this.context.account.row.customer_id, { name, ...cap });
    // A first key can make the customer eligible for emails: the directory learns when it is due.
    this.context.directory.schedule();
    return key;
  }

  revokeKey(keyId: string): boolean {
    const context = this.context;
    const key = context.account.exists ? context.keys.byKeyId(keyId) : undefined;
    if (!key || !context.keys.revoke(keyId)) return false;
    context.live.keyRevoked(key.hash);
    return true;
  }

  setKeyCap(keyId: string, spendCapCents: number | null, capPeriod: CapPeriod | null): boolean {
    return this.context.account.exists && this.context.keys.setCap(keyId, spendCapCents, capPeriod);
  }

  listKeys() {
    return this.context.account.exists ? this.context.keys.list(Date.now()) : [];
  }

  /** A one-time portal link token for this customer, or null if there is no such (live) customer. */
  async createPortalLink(expiresAt: number): Promise<string | null> {
    const { account, portalLinks } = this.context;
    if (!account.exists || account.row.deleted_at !== null) return null;
    return portalLinks.create(account.row.customer_id, expiresAt, Date.now());
  }

  /** Who an unused, unexpired portal link would sign in as, without consuming it (the confirmation page names the account). */
  peekPortalLink(hash: string): CustomerProfile | null {
    const { account, portalLinks } = this.context;
    return account.exists && account.row.deleted_at === null && portalLinks.isOpen(hash, Date.now()) ? account.profile() : null;
  }

  /** Consumes a portal link (true once); a deleted customer's links no longer open. */
  consumePortalLink(hash: string): boolean {
    const { account, portalLinks } = this.context;
    return account.exists && account.row.deleted_at === null && portalLinks.consume(hash, Date.now());
  }

  /**
   * Who a portal session is, checked on every portal request: null once it was signed out, the
   * key it signed in with (if any) was revoked, or the customer was deleted.
   */
  portalSession(input: { sid: string; keyHash?: string }): CustomerProfile | null {
    const context = this.context;
    return context.account.exists && !context.endedSessions.has(input.sid) ? activeProfile(context, input.keyHash) : null;
  }

  /** A portal session signed out: its cookie no longer opens the portal, even if a copy was kept, and its live sockets close. */
  endPortalSession(input: { sid: string; expiresAt: number }): void {
    const { account, endedSessions, live } = this.context;
    if (!account.exists) return;
    endedSessions.end(input.sid, input.expiresAt, Date.now());
    live.sessionEnded(input.sid);
  }

  identify(keyHash: string): CustomerProfile | null {
    return activeProfile(this.context, keyHash);
  }

  /** The customer and the id of the key a portal sign-in used (a key session shows only that key), or null. */
  identifyKey(keyHash: string): { customer: CustomerProfile; keyId: string } | null {
    const customer = activeProfile(this.context, keyHash);
    const key = this.context.keys.active(keyHash);
    return customer && key ? { customer, keyId: key.id } : null;
  }

  /**
   * One Checkout session of the customer's hourly allowance (GOVERNANCE.checkout_limit_per_hour),
   * and only while a top-up of `amountCents` fits under the largest balance: once paid, a top-up
   * is credited whatever the balance is by then (createGrant).
   */
  takeCheckoutSlot(input: { limit: number; amountCents: number; now?: number }): CheckoutSlot | { ok: false; balanceLimit: true } {
    const { account, checkouts } = this.context;
    if (!account.exists) throw new Error("unknown customer");
    if (!fitsBalance(this.context, centsToMicros(input.amountCents))) return { ok: false, balanceLimit: true };
    return checkouts.take(input.limit, input.now ?? Date.now());
  }

  // ---------------------------------------------------------------- the request path

  /**
   * Checks the key, applies the governance rule and the key's cap, and debits, in one synchronous
   * step; with GROUP_COMMIT, steps that arrive during a commit share the next one (group-commit.ts).
   */
  authorize(input: AuthorizeInput): AuthorizeResult | Promise<AuthorizeResult> {
    if (!this.hot.config.GROUP_COMMIT) return authorize(this.hot, input);
    return this.commits.run(() => authorize(this.hot, input));
  }

  /** How the last authorizations were grouped into commits (the tests read it). */
  groupCommitStats() {
    return { ...this.commits.stats };
  }

  /** Gives back the charge of a request the origin failed, at most once. */
  refund(input: { requestId: string; now?: number }): RefundResult {
    if (!this.context.account.exists) throw new Error("unknown customer");
    return refund(this.context, input);
  }

  /** Takes up to `units` more units into a streaming request's hold (0: the next event cannot be paid for). */
  extendHold(input: { requestId: string; units: number; now?: number }): ExtendResult {
    if (!this.context.account.exists) return { grantedUnits: 0, heldUnits: 0 };
    return extendHold(this.context, input);
  }

  /** A response still arriving keeps its hold from the alarm (see keepHold in hold-settlement.ts). */
  keepHold(input: { requestId: string }): boolean {
    return this.context.account.exists && keepHold(this.context, input);
  }

  /** Settles a response-metered request's hold with the units read (null: unreadable). */
  settleHold(input: { requestId: string; units: number | null; reason: SettleReason }): SettleResult {
    if (!this.context.account.exists) throw new Error("unknown customer");
    return settleHold(this.context, input);
  }

  /** The first request with an Idempotency-Key finished: its response is kept for replays, or not. */
  finishIdempotent(input: { key: string; keyHash: string; requestId: string; outcome: StoredResponse | "not_replayable" | "forget" }): void {
    if (this.context.account.exists) finishIdempotent(this.context, input);
  }

  /** What a request was held and charged (for the admin API). */
  requestCharge(requestId: string) {
    return this.context.account.exists ? requestCharge(this.context, requestId) : null;
  }

  // ---------------------------------------------------------------- credit

  /** A credit grant (idempotent with a reference), pushed to Stripe when it is on. */
  grant(input: GrantInput): Promise<GrantResult> {
    return this.withLock(async () => {
      const result = createGrant(this.context, input);
      if (result.status === "created") await pushToStripe(this.context);
      return result;
    });
  }

  /**
   * The credits endpoint: a positive amount is a paid, never-expiring grant, a negative one a
   * deduction; idempotent with a reference.
   */
  async credit(input: { customerId: string; amountCents: number; reason: string; reference?: string }) {
    if (input.amountCents > 0) return creditOutcome(await this.grant(input));
    return { ...(await this.deduct({ ...input, amountCents: -input.amountCents })), limit: false };
  }

  /** Takes credit away (idempotent with a reference), pushed to Stripe when it is on. */
  deduct(input: DeductionInput) {
    return this.withLock(async () => {
      const result = deduct(this.context, input);
      if (result.applied) await pushToStripe(this.context);
      return result;
    });
  }

  voidGrant(grantId: string): Promise<ReturnType<typeof grantView> | null> {
    return this.withLock(async () => {
      const grant = voidGrant(this.context, grantId);
      if (grant) await pushToStripe(this.context);
      return grant && grantView(grant, Date.now());
    });
  }

  grantView(grantId: string): ReturnType<typeof grantView> | null {
    const grant = this.context.account.exists ? this.context.grants.get(grantId) : undefined;
    return grant ? grantView(grant, Date.now()) : null;
  }

  listGrants(limit = 100) {
    return this.context.account.exists ? this.context.grants.list(limit).map((g: Grant) => grantView(g, Date.now())) : [];
  }

  // ---------------------------------------------------------------- Stripe and the cron

  /**
   * Records and applies one verified Stripe event, with no Stripe call: the webhook is answered
   * once it is durable here. What needs Stripe runs from the stripe timer, under the lock.
   */
  applyStripeEvent(customerId: string, event: Stripe.Event, refunds?: ChargeRefunds): { status: EventStatus } {
    return { status: applyStripeEvent(this.context, customerId, event, refunds) };
  }

  /** Reports usage to Stripe and sends due emails. Safe to run twice or concurrently. */
  runCycle(now: number): Promise<CycleResult> {
    return this.withLock(() => runCycle(this.context, now));
  }

  /** An operator's retry of a failed Stripe report (looked up first); a ledger note records it. */
  retryReport(reportId: string) {
    return this.context.account.exists ? retryReport(this.context, reportId) : null;
  }

  /** An operator settled a failed Stripe report by hand; a ledger note records it. */
  resolveReport(reportId: string, note: string) {
    return this.context.account.exists ? resolveReport(this.context, reportId, note) : null;
  }

  /** Stripe reported these meter events as refused (meter error events): failed and visible. */
  meterEventsFailed(identifiers: string[], reason: string): number {
    return this.context.account.exists ? this.context.atomically(() => this.context.reports.meterEventsFailed(identifiers, reason)) : 0;
  }

  /** The one alarm, shared by named timers (alarm.ts). */
  override async alarm(): Promise<void> {
    if (this.context.account.exists) await runDueTimers(this.context, (fn) => this.withLock(fn));
  }

  // ---------------------------------------------------------------- live balance (WebSocket hibernation)

  /** Only the WebSocket upgrade for the live balance; the worker has authorized the viewer. */
  override async fetch(request: Request): Promise<Response> {
    return this.context.live.accept(request);
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    this.context.live.message(ws, message);
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string): void {
    this.context.live.close(ws, code, reason);
  }

  override webSocketError(ws: WebSocket, error: unknown): void {
    log.debug(`live socket error (${this.ctx.getWebSockets(LIVE_TAG).length} open)`, error);
  }

  // ---------------------------------------------------------------- reads

  summary(): Record<string, unknown> | null {
    return this.context.account.exists ? summary(this.context) : null;
  }

  /** Whether the customer exists, without building a summary. */
  exists(): boolean {
    return this.context.account.exists;
  }

  /** Rows per table and the database size; null for an unknown customer. */
  storageStats() {
    return this.context.account.exists ? storageStats(this.ctx.storage) : null;
  }

  ledgerPage(input: { before?: number; limit: number }) {
    return this.context.account.exists ? this.context.ledger.page(input.before, input.limit) : { entries: [], next_cursor: null };
  }

  /** Requests and charges per meter per usage bucket since `since` (ms), oldest first. */
  usageSeries(since: number) {
    return this.context.account.exists ? this.context.ledger.usageSeries(since) : [];
  }

  emails(limit = 50): EmailRow[] {
    return this.context.account.exists ? this.context.emails.list(limit) : [];
  }

  /** Behavioral emails off (unsubscribe link) or back on (admin reset); null for an unknown customer. */
  setEmailUnsubscribed(unsubscribed: boolean): { unsubscribed_at: number | null } | null {
    const context = this.context;
    if (!context.account.exists) return null;
    const unsubscribed_at = context.emails.audience.setUnsubscribed(unsubscribed, Date.now());
    // The directory's due time for this customer's emails changes with it.
    context.directory.schedule();
    return { unsubscribed_at };
  }

  /** Exact micro-cent numbers, for tests and reconciliation checks. */
  balanceCheck() {
    return this.context.account.exists ? balanceCheck(this.context) : null;
  }
}
