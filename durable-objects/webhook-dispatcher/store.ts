import { newId } from "../../src/lib/api-key-format";
import { type OutboundEvent, WEBHOOK_EVENT_TYPES, type WebhookEventType } from "../../src/lib/provider-webhook-events";

/** The dispatcher's schema, versioned (shared/migrations.ts): append only. Version 1 is what it created at every start before. */
export const DISPATCHER_MIGRATIONS: readonly string[] = [
  `
CREATE TABLE IF NOT EXISTS endpoints (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  events TEXT,
  description TEXT,
  secret TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
  id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  customer_id TEXT NOT NULL,
  body TEXT NOT NULL,
  received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
CREATE TABLE IF NOT EXISTS deliveries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  event_id TEXT NOT NULL,
  endpoint_id TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  round_attempts INTEGER NOT NULL DEFAULT 0,
  round_started_at INTEGER,
  next_attempt_at INTEGER,
  last_attempt_at INTEGER,
  last_status_code INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  delivered_at INTEGER,
  UNIQUE (event_id, endpoint_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_endpoint ON deliveries(endpoint_id, seq);
CREATE INDEX IF NOT EXISTS deliveries_created ON deliveries(created_at);
CREATE TABLE IF NOT EXISTS clock (id INTEGER PRIMARY KEY CHECK (id = 1), alarm_at INTEGER);
`,
  // v2: secret rotation: the secrets an endpoint had before, each signing deliveries until it expires.
  `ALTER TABLE endpoints ADD COLUMN previous_secrets TEXT NOT NULL DEFAULT '[]';`,
];

/** A secret replaced by a rotation, still signing deliveries until `expires_at` (ms). */
export interface PreviousSecret {
  secret: string;
  expires_at: number;
}

/** At most this many earlier secrets sign at once (rotations within one overlap); the oldest go first. */
export const MAX_PREVIOUS_SECRETS = 4;

export type DeliveryStatus = "pending" | "succeeded" | "failed";
export const DELIVERY_STATUSES: readonly DeliveryStatus[] = ["pending", "succeeded", "failed"];

export interface EndpointRow {
  id: string;
  url: string;
  /** JSON array of event types; null subscribes to every type. */
  events: string | null;
  description: string | null;
  secret: string;
  created_at: number;
  /** JSON array of PreviousSecret, oldest first. */
  previous_secrets: string;
}

export interface DeliveryRow {
  seq: number;
  id: string;
  event_id: string;
  endpoint_id: string;
  status: DeliveryStatus;
  attempts: number;
  round_attempts: number;
  round_started_at: number | null;
  next_attempt_at: number | null;
  last_attempt_at: number | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: number;
  delivered_at: number | null;
}

/** A delivery due now, with what sending it needs. */
export type DueDelivery = DeliveryRow & { url: string; secret: string; previous_secrets: string; body: string };

/** The earlier secrets still live at `now`. */
export function livePrevious(row: Pick<EndpointRow, "previous_secrets">, now: number): PreviousSecret[] {
  return (JSON.parse(row.previous_secrets) as PreviousSecret[]).filter((p) => p.expires_at > now);
}

/** What signs a delivery at `now`: the current secret first, then the earlier ones still live. */
export function signingSecrets(row: Pick<EndpointRow, "secret" | "previous_secrets">, now: number): string[] {
  return [row.secret, ...livePrevious(row, now).map((p) => p.secret)];
}

export function endpointView(row: EndpointRow, counts: Partial<Record<DeliveryStatus, number>>, now = Date.now()) {
  const previous = livePrevious(row, now);
  return {
    id: row.id,
    url: row.url,
    events: row.events === null ? [...WEBHOOK_EVENT_TYPES] : (JSON.parse(row.events) as WebhookEventType[]),
    description: row.description,
    created_at: row.created_at,
    /** While a rotation's overlap runs: when the last earlier secret stops signing (ms); else null. */
    previous_secret_expires_at: previous.length ? Math.max(...previous.map((p) => p.expires_at)) : null,
    deliveries: { pending: counts.pending ?? 0, succeeded: counts.succeeded ?? 0, failed: counts.failed ?? 0 },
  };
}

export type EndpointView = ReturnType<typeof endpointView>;

export function deliveryView(row: DeliveryRow & { type: string; customer_id: string; body: string }) {
  return {
    id: row.id,
    endpoint_id: row.endpoint_id,
    event_id: row.event_id,
    event_type: row.type,
    customer_id: row.customer_id,
    status: row.status,
    attempts: row.attempts,
    next_attempt_at: row.status === "pending" ? row.next_attempt_at : null,
    last_attempt_at: row.last_attempt_at,
    last_status_code: row.last_status_code,
    last_error: row.last_error,
    created_at: row.created_at,
    delivered_at: row.delivered_at,
    event: JSON.parse(row.body) as { id: string; type: string; created: number; data: Record<string, unknown> },
  };
}

export type DeliveryView = ReturnType<typeof deliveryView>;

/** Exported so a test can show their query plans (index searches, not scans). */
export const PRUNE = {
  deliveries: "DELETE FROM deliveries WHERE status != 'pending' AND created_at < ?",
  events: "DELETE FROM events WHERE received_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
};

const DELIVERY_WITH_EVENT = "SELECT d.*, e.type, e.customer_id, e.body FROM deliveries d JOIN events e ON e.id = d.event_id";

/** The dispatcher's SQLite: endpoints, the events received, one delivery row per (event, endpoint). */
export class DispatcherStore {
  constructor(private readonly sql: SqlStorage) {}

  // ---------------------------------------------------------------- endpoints

  createEndpoint(input: { url: string; events: WebhookEventType[] | null; description: string | null; secret: string; now: number }): EndpointRow {
    const row: EndpointRow = {
      id: newId("we"),
      url: input.url,
      events: input.events === null ? null : JSON.stringify(input.events),
      description: input.description,
      secret: input.secret,
      created_at: input.now,
      previous_secrets: "[]",
    };
    this.sql.exec(
      "INSERT INTO endpoints (id, url, events, description, secret, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      row.id,
      row.url,
      row.events,
      row.description,
      row.secret,
      row.created_at,
    );
    return row;
  }

  endpointCount(): number {
    return this.sql.exec("SELECT COUNT(*) AS n FROM endpoints").one().n as number;
  }

  endpoints(): EndpointRow[] {
    return this.sql.exec("SELECT * FROM endpoints ORDER BY created_at, id").toArray() as unknown as EndpointRow[];
  }

  endpoint(id: string): EndpointRow | undefined {
    return this.sql.exec("SELECT * FROM endpoints WHERE id = ?", id).toArray()[0] as unknown as EndpointRow | undefined;
  }

  deliveryCounts(endpointId: string): Partial<Record<DeliveryStatus, number>> {
    const rows = this.sql.exec("SELECT status, COUNT(*) AS n FROM deliveries WHERE endpoint_id = ? GROUP BY status", endpointId).toArray();
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  /**
   * A new current secret; the one it replaces keeps signing for `overlapMs` (0: not at all). Earlier
   * secrets already expired are dropped, and past MAX_PREVIOUS_SECRETS the oldest.
   */
  rotateSecret(id: string, secret: string, overlapMs: number, now: number): EndpointRow | undefined {
    const row = this.endpoint(id);
    if (!row) return undefined;
    const previous = [...livePrevious(row, now), ...(overlapMs > 0 ? [{ secret: row.secret, expires_at: now + overlapMs }] : [])].slice(-MAX_PREVIOUS_SECRETS);
    this.sql.exec("UPDATE endpoints SET secret = ?, previous_secrets = ? WHERE id = ?", secret, JSON.stringify(previous), id);
    return this.endpoint(id);
  }

  /** Removes the endpoint and its deliveries, so nothing more is sent to it. */
  deleteEndpoint(id: string): boolean {
    const deleted = this.sql.exec("DELETE FROM endpoints WHERE id = ? RETURNING id", id).toArray().length > 0;
    if (deleted) this.sql.exec("DELETE FROM deliveries WHERE endpoint_id = ?", id);
    return deleted;
  }

  // ---------------------------------------------------------------- events and deliveries

  /** Records an event once (by id) with a delivery per subscribed endpoint; false for a repeat. */
  addEvent(event: OutboundEvent, endpoints: EndpointRow[], now: number): boolean {
    const inserted = this.sql
      .exec(
        "INSERT INTO events (id, type, customer_id, body, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING id",
        event.id,
        event.type,
        event.customerId,
        event.body,
        now,
      )
      .toArray().length;
    if (!inserted) return false;
    for (const endpoint of endpoints) {
      if (endpoint.events !== null && !(JSON.parse(endpoint.events) as string[]).includes(event.type)) continue;
      this.sql.exec(
        `INSERT INTO deliveries (id, event_id, endpoint_id, status, round_started_at, next_attempt_at, created_at)
         VALUES (?, ?, ?, 'pending', NULL, ?, ?)`,
        newId("whd"),
        event.id,
        endpoint.id,
        now,
        now,
      );
    }
    return true;
  }

  /** Pending deliveries due at `now`, oldest due first. */
  due(now: number, limit: number): DueDelivery[] {
    return this.sql
      .exec(
        `SELECT d.*, p.url, p.secret, p.previous_secrets, e.body FROM deliveries d
         JOIN endpoints p ON p.id = d.endpoint_id JOIN events e ON e.id = d.event_id
         WHERE d.status = 'pending' AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at, d.seq LIMIT ?`,
        now,
        limit,
      )
      .toArray() as unknown as DueDelivery[];
  }

  /** Counts an attempt as started; `retryAt` holds the row back should this run die mid-send. */
  startAttempt(delivery: DeliveryRow, now: number, retryAt: number): void {
    this.sql.exec(
      `UPDATE deliveries SET attempts = attempts + 1, round_attempts = round_attempts + 1,
         round_started_at = COALESCE(round_started_at, ?), last_attempt_at = ?, next_attempt_at = ? WHERE id = ?`,
      now,
      now,
      retryAt,
      delivery.id,
    );
  }

  delivery(id: string): DeliveryRow | undefined {
    return this.sql.exec("SELECT * FROM deliveries WHERE id = ?", id).toArray()[0] as unknown as DeliveryRow | undefined;
  }

  /** The outcome of an attempt; a row deleted meanwhile (endpoint removed) stays deleted. */
  finishAttempt(id: string, outcome: { status: DeliveryStatus; code: number | null; error: string | null; nextAt: number | null; now: number }): void {
    this.sql.exec(
      `UPDATE deliveries SET status = ?, last_status_code = ?, last_error = ?, next_attempt_at = ?,
         delivered_at = CASE WHEN ? = 'succeeded' THEN ? ELSE delivered_at END WHERE id = ?`,
      outcome.status,
      outcome.code,
      outcome.error,
      outcome.nextAt,
      outcome.status,
      outcome.now,
      id,
    );
  }

  /** Queues a delivery again now, with a fresh retry round; the event (and its id) is unchanged. */
  redeliver(endpointId: string, deliveryId: string, now: number): boolean {
    return (
      this.sql
        .exec(
          `UPDATE deliveries SET status = 'pending', next_attempt_at = ?, round_attempts = 0, round_started_at = NULL
           WHERE id = ? AND endpoint_id = ? RETURNING id`,
          now,
          deliveryId,
          endpointId,
        )
        .toArray().length > 0
    );
  }

  deliveryPage(endpointId: string, input: { status?: DeliveryStatus; before?: number; limit: number }) {
    const rows = this.sql
      .exec(
        `${DELIVERY_WITH_EVENT} WHERE d.endpoint_id = ? AND (? IS NULL OR d.status = ?) AND d.seq < ? ORDER BY d.seq DESC LIMIT ?`,
        endpointId,
        input.status ?? null,
        input.status ?? null,
        input.before ?? Number.MAX_SAFE_INTEGER,
        input.limit + 1,
      )
      .toArray() as unknown as (DeliveryRow & { type: string; customer_id: string; body: string })[];
    const page = rows.slice(0, input.limit);
    return { deliveries: page.map(deliveryView), next_cursor: rows.length > input.limit ? page.at(-1)!.seq : null };
  }

  deliveryWithEvent(deliveryId: string): DeliveryView | null {
    const row = this.sql.exec(`${DELIVERY_WITH_EVENT} WHERE d.id = ?`, deliveryId).toArray()[0];
    return row ? deliveryView(row as unknown as DeliveryRow & { type: string; customer_id: string; body: string }) : null;
  }

  /** The earliest pending attempt, or null. */
  nextDue(): number | null {
    return this.sql.exec("SELECT MIN(next_attempt_at) AS t FROM deliveries WHERE status = 'pending'").one().t as number | null;
  }

  /** Finished deliveries and their events are kept for `keepMs`, then dropped (by index: see PRUNE). */
  prune(now: number, keepMs: number): void {
    this.sql.exec(PRUNE.deliveries, now - keepMs);
    this.sql.exec(PRUNE.events, now - keepMs);
  }

  // ---------------------------------------------------------------- the alarm's clock

  alarmAt(): number | null {
    return (this.sql.exec("SELECT alarm_at FROM clock WHERE id = 1").toArray()[0]?.alarm_at as number | null | undefined) ?? null;
  }

  setAlarmAt(at: number | null): void {
    this.sql.exec("INSERT INTO clock (id, alarm_at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET alarm_at = excluded.alarm_at", at);
  }
}
