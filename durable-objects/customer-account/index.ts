import { DurableObject } from "cloudflare:workers";
import type Stripe from "stripe";
import type { CustomerProfile, ProfilePatch } from "../../src/lib/customer";
import { log } from "../../src/lib/log";
import { consumePortalLink, createPortalLink, endPortalSession, identifyKey, issueKey, peekPortalLink, portalSession, revokeKey } from "./access/authority";
import type { CapPeriod } from "./access/key-store";
import { activeProfile, setUnsubscribed, upsertProfileAndAutoTopUp } from "./access/profile";
import { payAndAuthorize, paymentReceipt } from "./agent-payments/paid-grants";
import type { AutoTopUpSettings } from "./auto-topup/auto-topup";
import type { EmailRow } from "./cohorts/emails";
import type { AuthorizeResult, ChargeRefunds, CycleResult, LeaseSyncReply, PaidAuthorizeResult, PaidGrantInput } from "./contract";
import { runDueTimers } from "./core/alarm";
import { AccountContext } from "./core/context";
import { runCycle } from "./core/cycle";
import { GroupCommit } from "./core/group-commit";
import { hasSchema, migrate } from "./core/schema";
import type { CheckoutSlot } from "./credit/checkout-limit";
import { createGrant, creditOutcome, type DeductionInput, deduct, type GrantInput, type GrantResult, takeCheckoutSlot, voidGrant } from "./credit/credits";
import type { LeaseSyncRequest } from "./leases/protocol";
import { leaseSync, leaseView } from "./leases/sync";
import { LIVE_TAG } from "./notify/live";
import { type AuthorizeInput, authorize, finishIdempotent, type RefundResult, refund, requestCharge } from "./request/authorize";
import type { StoredResponse } from "./request/idempotency";
import { type ExtendResult, extendHold, keepHold, replayHold, type SettleInput, type SettleResult, settleHold } from "./request/settlement";
import { applyStripeEvent, type EventStatus } from "./stripe/events";
import { type TopUpListItem, topUpList } from "./stripe/receipts";
import { resolveReport, retryReport } from "./stripe/report-operator";
import { pushToStripe } from "./stripe/sync";
import { storageStats } from "./views/storage-stats";
import { autoTopUpState, balanceCheck, grantById, grantList, grantView, summary } from "./views/summary";

/**
 * One customer's account, as a Durable Object: the RPC surface over the modules in this folder
 * (README.md). Every balance change is synchronous SQL with no await in between, so concurrent
 * requests never overdraw it; work that awaits Stripe or MailChannels runs under a lock.
 */
const created = (result: GrantResult) => result.status === "created";
const applied = (result: { applied: boolean }) => result.applied;
const found = (grant: unknown) => grant !== null;

export class CustomerAccount extends DurableObject<Env> {
  /** The request path's view: charges may be journaled and not yet folded in (journal.ts). */
  private readonly hot: AccountContext;
  private readonly commits: GroupCommit;
  private lockTail: Promise<unknown> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.hot = new AccountContext(ctx, env, replayHold);
    this.commits = new GroupCommit(ctx.storage, this.hot.journal);
    // Keep-alive pings from live pages are answered without waking the object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
    ctx.blockConcurrencyWhile(async () => {
      // The schema is written with the account (a made-up customer id leaves no storage behind).
      if (hasSchema(ctx.storage.sql)) {
        migrate(ctx.storage);
        this.hot.load();
        // A migration may have written timers (an upgrade's notices, its retention passes): they run now.
        this.hot.timers.rearm();
      }
    });
  }

  /** Every method but authorize, extendHold and settleHold, the alarm included: the journal folded in first, so SQLite holds every charge. */
  private get context(): AccountContext {
    this.hot.journal.fold();
    return this.hot;
  }

  /** A credit step under the lock, sent on to Stripe's balance when it moved anything. */
  private credited<T>(step: (context: AccountContext) => T, moved: (result: T) => boolean): Promise<T> {
    return this.withLock(async () => {
      const result = step(this.context);
      if (moved(result)) await pushToStripe(this.context);
      return result;
    });
  }

  /** Serializes work that awaits Stripe or MailChannels; the request path never takes it. */
  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lockTail.then(fn, fn);
    this.lockTail = run.catch(() => undefined);
    return run;
  }

  upsertProfile(customerId: string, patch: ProfilePatch, autoTopUp?: AutoTopUpSettings | null) {
    return upsertProfileAndAutoTopUp(this.context, customerId, patch, autoTopUp);
  }

  autoTopUp(limit = 20) {
    return autoTopUpState(this.context, limit);
  }
  createKey(name: string | null, cap: { spendCapCents: number | null; capPeriod: CapPeriod | null } = { spendCapCents: null, capPeriod: null }) {
    return issueKey(this.context, name, cap);
  }
  revokeKey(keyId: string): boolean {
    return revokeKey(this.context, keyId);
  }
  setKeyCap(keyId: string, spendCapCents: number | null, capPeriod: CapPeriod | null): boolean {
    return this.context.account.exists && this.context.keys.setCap(keyId, spendCapCents, capPeriod);
  }
  listKeys() {
    return this.context.account.exists ? this.context.keys.list(Date.now()) : [];
  }
  createPortalLink(expiresAt: number): Promise<string | null> {
    return createPortalLink(this.context, expiresAt);
  }
  peekPortalLink(hash: string): CustomerProfile | null {
    return peekPortalLink(this.context, hash);
  }
  consumePortalLink(hash: string): boolean {
    return consumePortalLink(this.context, hash);
  }
  portalSession(input: { sid: string; keyHash?: string }): CustomerProfile | null {
    return portalSession(this.context, input);
  }
  endPortalSession(input: { sid: string; expiresAt: number }): void {
    endPortalSession(this.context, input);
  }
  identify(keyHash: string): CustomerProfile | null {
    return activeProfile(this.context, keyHash);
  }
  identifyKey(keyHash: string): ReturnType<typeof identifyKey> {
    return identifyKey(this.context, keyHash);
  }
  takeCheckoutSlot(input: { limit: number; amountCents: number; now?: number }): CheckoutSlot | { ok: false; balanceLimit: true } {
    return takeCheckoutSlot(this.context, input);
  }
  /** Key, rule, cap and debit in one synchronous step; with GROUP_COMMIT, steps arriving during a commit share the next. */
  authorize(input: AuthorizeInput): AuthorizeResult | Promise<AuthorizeResult> {
    if (!this.hot.config.GROUP_COMMIT) return authorize(this.hot, input);
    return this.commits.run(() => authorize(this.hot, input));
  }
  /** An agent's settled payment: credited once by its id, then the request authorized from it, in one step. */
  payAndAuthorize(input: { payment: PaidGrantInput; authorize: AuthorizeInput }): PaidAuthorizeResult {
    const result = payAndAuthorize(this.context, input);
    if (!result.replayed) void this.withLock(() => pushToStripe(this.context));
    return result;
  }
  paymentReceipt(paymentId: string): string | null {
    return paymentReceipt(this.context, paymentId);
  }
  /** Credit leases' one RPC (leases/sync.ts): the direct debit, and a lease's report, return, grant or top-up. */
  leaseSync(input: LeaseSyncRequest): LeaseSyncReply {
    return leaseSync(this.context, input);
  }
  /** Live credit leases and their reserves (the dashboard); null for an unknown customer. */
  leases() {
    return this.context.account.exists ? leaseView(this.context) : null;
  }
  /** How the last authorizations were grouped into commits (the tests read it). */
  groupCommitStats() {
    return { ...this.commits.stats };
  }
  refund(input: { requestId: string; now?: number }): RefundResult {
    if (!this.context.account.exists) throw new Error("unknown customer");
    return refund(this.context, input);
  }
  /** Takes up to `units` more units into a streaming request's hold (0: the next event cannot be paid for). */
  extendHold(input: { requestId: string; units: number; now?: number }): ExtendResult {
    if (!this.hot.account.exists) return { grantedUnits: 0, heldUnits: 0 };
    return extendHold(this.hot, input);
  }
  /** A response still arriving keeps its hold from the alarm (keepHold in request/settlement.ts). */
  keepHold(input: { requestId: string }): boolean {
    return this.context.account.exists && keepHold(this.context, input);
  }

  /** Settles a response-metered request's hold with the units read (null: unreadable). */
  settleHold(input: SettleInput): SettleResult {
    if (!this.hot.account.exists) throw new Error("unknown customer");
    return settleHold(this.hot, input);
  }

  /** The first request with an Idempotency-Key finished: its response is kept for replays, or not. Reads no charge's effects: no fold. */
  finishIdempotent(input: { key: string; keyHash: string; requestId: string; outcome: StoredResponse | "not_replayable" | "forget" }): void {
    if (this.hot.account.exists) finishIdempotent(this.hot, input);
  }

  /** An MCP session's negotiated protocol version when it has no batches (request/mcp-sessions.ts); null otherwise. */
  mcpSessionVersion(sessionId: string): string | null {
    return this.context.account.exists ? this.context.mcpSessions.version(sessionId, Date.now()) : null;
  }

  mcpSession(input: { sessionId: string; protocolVersion: string | null }): void {
    if (this.context.account.exists) this.context.mcpSessions.record(input.sessionId, input.protocolVersion, Date.now());
  }

  requestCharge(requestId: string) {
    return this.context.account.exists ? requestCharge(this.context, requestId) : null;
  }

  grant(input: GrantInput): Promise<GrantResult> {
    return this.credited((context) => createGrant(context, input), created);
  }

  /** The credits endpoint: a positive amount is a paid, never-expiring grant, a negative one a deduction. */
  async credit(input: { customerId: string; amountCents: number; reason: string; reference?: string }) {
    if (input.amountCents > 0) return creditOutcome(await this.grant(input));
    return { ...(await this.deduct({ ...input, amountCents: -input.amountCents })), limit: false };
  }

  deduct(input: DeductionInput) {
    return this.credited((context) => deduct(context, input), applied);
  }

  async voidGrant(grantId: string): Promise<ReturnType<typeof grantView> | null> {
    const grant = await this.credited((context) => voidGrant(context, grantId), found);
    return grant && grantView(grant, Date.now());
  }

  grantView(grantId: string): ReturnType<typeof grantView> | null {
    return grantById(this.context, grantId);
  }

  listGrants(limit = 100) {
    return grantList(this.context, limit);
  }

  topUps(limit = 50): TopUpListItem[] {
    return this.context.account.exists ? topUpList(this.context.sql, limit) : [];
  }

  /** Records and applies one verified Stripe event, with no Stripe call (what needs Stripe runs from the stripe timer). */
  applyStripeEvent(customerId: string, event: Stripe.Event, refunds?: ChargeRefunds): { status: EventStatus } {
    return { status: applyStripeEvent(this.context, customerId, event, refunds) };
  }

  /** Reports usage to Stripe and sends due emails. Safe to run twice or concurrently. */
  runCycle(now: number): Promise<CycleResult> {
    return this.withLock(() => runCycle(this.context, now));
  }

  retryReport(reportId: string) {
    return this.context.account.exists ? retryReport(this.context, reportId) : null;
  }

  resolveReport(reportId: string, note: string) {
    return this.context.account.exists ? resolveReport(this.context, reportId, note) : null;
  }

  meterEventsFailed(identifiers: string[], reason: string): number {
    return this.context.account.exists ? this.context.atomically(() => this.context.reports.meterEventsFailed(identifiers, reason)) : 0;
  }

  /** The one alarm, shared by named timers (alarm.ts). */
  override async alarm(): Promise<void> {
    if (this.context.account.exists) await runDueTimers(this.context, (fn) => this.withLock(fn));
  }

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

  override webSocketError(_ws: WebSocket, error: unknown): void {
    log.debug(`live socket error (${this.ctx.getWebSockets(LIVE_TAG).length} open)`, error);
  }

  summary(): Record<string, unknown> | null {
    return this.context.account.exists ? summary(this.context) : null;
  }

  exists(): boolean {
    return this.context.account.exists;
  }

  storageStats() {
    return this.context.account.exists ? storageStats(this.ctx.storage) : null;
  }

  ledgerPage(input: { before?: number; limit: number }) {
    return this.context.account.exists ? this.context.ledger.page(input.before, input.limit) : { entries: [], next_cursor: null };
  }

  usageSeries(since: number) {
    const exists = this.context.account.exists;
    return { meters: exists ? this.context.ledger.usageSeries(since) : [], models: exists ? this.context.modelUsage.since(since) : [] };
  }

  emails(limit = 50): EmailRow[] {
    return this.context.account.exists ? this.context.emails.list(limit) : [];
  }

  setEmailUnsubscribed(unsubscribed: boolean): { unsubscribed_at: number | null } | null {
    return setUnsubscribed(this.context, unsubscribed);
  }

  balanceCheck() {
    return this.context.account.exists ? balanceCheck(this.context) : null;
  }
}
