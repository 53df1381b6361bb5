/**
 * The one RPC of credit leases, `leaseSync` (docs/scaling.md, "Protocol"): grant, renew, report,
 * return and the direct debit are fields of one call, so an isolate never needs two round trips.
 * Types only: the worker imports them through contract.ts (which holds the reply, since it names
 * AuthorizeResult).
 */

/** One meter and usage bucket of a lease's spending, cumulative since the lease began. */
export interface BucketCounter {
  meter: string;
  bucket: number;
  /** Requests charged, and their micro-cents. */
  count: number;
  micros: number;
  /** Of those, given back because the origin failed (counted apart so every counter only grows). */
  refunds: number;
  refundMicros: number;
}

export interface LeaseReport {
  /** Chosen by the isolate (a new lease starts at seq 0), so a retried grant can never grant twice. */
  id: string;
  /** +1 per sync of this lease; a retry reuses it and changes nothing. */
  seq: number;
  counters: BucketCounter[];
  /** Return: the isolate will never spend from it again. */
  close: boolean;
}

export interface LeaseSyncRequest {
  /** The API key of the request at hand (the direct debit's key). */
  keyHash: string;
  /** The isolate's random id, for the lease row and the dashboard. */
  isolate: string;
  lease: LeaseReport | null;
  /** Lease size asked for, in micro-cents; 0 = report or return only. */
  wantMicros: number;
  /** The highest request price the isolate spends leases on: a grant is at least two of them. */
  priceMicros: number;
  /** Debit this request now: exactly today's authorize. */
  direct: null | { meter: string; priceMicros: number; requestId: string; retry?: boolean };
  /** The isolate's measured round trip to the object (leases "auto": far isolates). */
  rttMs: number;
  /** For tests: the object's clock. */
  now?: number;
}

export interface LeaseState {
  id: string;
  /** The seq this reply answers (the isolate applies only replies newer than the last it applied). */
  seq: number;
  /** gᵢ, cumulative. */
  grantedMicros: number;
  /** The isolate expires the lease at its own send time + ttlMs (always before the object does). */
  ttlMs: number;
  heartbeatMs: number;
  /** Bumped when the keys, the account's state or a dispute changes. */
  epoch: number;
  /** Hashes of the keys a lease may pay for: active keys without a spend cap. */
  keyHashes: string[];
  /** What the customer may still spend now (B − m − R, as X-Payg-Balance-Cents shows it). */
  balanceHintMicros: number;
  /** Stop spending and return the lease now. */
  recall: boolean;
}
