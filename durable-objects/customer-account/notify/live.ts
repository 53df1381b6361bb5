import type { Config } from "../../../src/lib/config";
import { formatCents, formatMoney, microsToWholeCents } from "../../../src/lib/money";
import type { CohortStore } from "../cohorts/cohorts";
import { LIVE_KEY_HEADER, LIVE_SESSION_HEADER, LIVE_UNTIL_HEADER } from "../contract";
import type { AccountStore } from "../core/account";

/** Sockets watching this customer's balance carry this tag (WebSocket hibernation API). */
export const LIVE_TAG = "live";
const UNTIL_TAG = "until:";
const SESSION_TAG = "session:";
/** The close code a page gets when its session ends (4000–4999: for applications). */
const SESSION_ENDED = 4001;
const KEY_TAG = "key:";
/** At most four pushes a second; a burst of requests ends with a push of the latest balance. */
const MIN_INTERVAL_MS = 250;

/** What a dashboard or portal page receives whenever the balance moves. */
export interface LiveBalance {
  type: "balance";
  available: string;
  available_cents: number;
  available_exact_cents: string;
  minimum_cents: number;
  cohorts: string[];
  at: number;
}

/**
 * The live balance: browsers subscribe through a WebSocket the object accepts with the
 * hibernation API (an idle socket costs nothing), and every balance change pushes the latest
 * value, throttled. The worker authorizes the viewer before it forwards the upgrade here.
 */
export class Live {
  private lastSentAt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly state: DurableObjectState,
    private readonly deps: { account: AccountStore; cohorts: CohortStore; config: () => Config; minimumMicros: () => number },
  ) {}

  snapshot(): LiveBalance | null {
    const { account, cohorts, config } = this.deps;
    if (!account.exists) return null;
    const balance = account.row.balance;
    return {
      type: "balance",
      available: formatMoney(balance, config().PRICING.currency),
      available_cents: microsToWholeCents(balance),
      available_exact_cents: formatCents(balance),
      minimum_cents: microsToWholeCents(this.deps.minimumMicros()),
      cohorts: [...cohorts.current.keys()],
      at: Date.now(),
    };
  }

  /** The upgrade: the only thing the object's fetch() does. */
  accept(request: Request): Response {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("Expected a WebSocket upgrade.", { status: 426 });
    }
    const current = this.snapshot();
    if (!current) return new Response("No such customer.", { status: 404 });
    const until = Number(request.headers.get(LIVE_UNTIL_HEADER));
    if (!Number.isSafeInteger(until) || until <= Date.now()) return new Response("The viewer's session has ended.", { status: 403 });
    const keyHash = request.headers.get(LIVE_KEY_HEADER);
    const sid = request.headers.get(LIVE_SESSION_HEADER);
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    // The socket ends with its session: its expiry, the key it signed in with and the session are its tags.
    this.state.acceptWebSocket(server, [LIVE_TAG, UNTIL_TAG + until, ...(keyHash ? [KEY_TAG + keyHash] : []), ...(sid ? [SESSION_TAG + sid] : [])]);
    server.send(JSON.stringify(current));
    return new Response(null, { status: 101, webSocket: client });
  }

  /** A message from a page: "refresh" asks for the current value (pings are answered by the runtime). */
  message(ws: WebSocket, message: string | ArrayBuffer): void {
    if (this.expired(ws, Date.now())) return;
    const current = message === "refresh" ? this.snapshot() : null;
    if (current) ws.send(JSON.stringify(current));
  }

  /** A revoked API key ends the live balance of every portal session it signed in. */
  keyRevoked(keyHash: string): void {
    for (const ws of this.state.getWebSockets(KEY_TAG + keyHash)) this.close(ws, SESSION_ENDED, "The API key this session signed in with was revoked.");
  }

  /** A portal session signed out: its live balance ends in every tab that had it open. */
  sessionEnded(sid: string): void {
    for (const ws of this.state.getWebSockets(SESSION_TAG + sid)) this.close(ws, SESSION_ENDED, "Signed out.");
  }

  /** Closes a socket whose session has expired; true when it did. */
  private expired(ws: WebSocket, now: number): boolean {
    const tag = this.state.getTags(ws).find((t) => t.startsWith(UNTIL_TAG));
    if (tag && Number(tag.slice(UNTIL_TAG.length)) > now) return false;
    this.close(ws, SESSION_ENDED, "The session has ended.");
    return true;
  }

  /** A page closed its socket: close our end too (1005 and 1006 may not be sent, so 1000). */
  close(ws: WebSocket, code: number, reason: string): void {
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, reason);
    } catch {
      // Already closed.
    }
  }

  /** Called after every balance change; never sends inside the caller's transaction. */
  changed(): void {
    if (this.timer !== null || this.state.getWebSockets(LIVE_TAG).length === 0) return;
    this.timer = setTimeout(() => this.flush(), Math.max(0, this.lastSentAt + MIN_INTERVAL_MS - Date.now()));
  }

  private flush(): void {
    this.timer = null;
    this.lastSentAt = Date.now();
    const current = this.snapshot();
    if (!current) return;
    const message = JSON.stringify(current);
    const now = Date.now();
    for (const ws of this.state.getWebSockets(LIVE_TAG)) {
      if (this.expired(ws, now)) continue;
      try {
        ws.send(message);
      } catch {
        // The socket is closing; its close handler cleans up.
      }
    }
  }
}
