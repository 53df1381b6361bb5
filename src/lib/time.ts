/**
 * Time units, in milliseconds (what Date.now() and the objects' clocks count), and the two kinds
 * of instants stored: most columns hold ms since the epoch; a few, following Stripe, hold Unix
 * seconds (grants.expires_at, Stripe's `created`). The types say which a field holds.
 */
export const SECOND_MS = 1_000;
export const MINUTE_MS = 60 * SECOND_MS;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

/** Milliseconds since the Unix epoch. */
export type EpochMs = number;
/** Seconds since the Unix epoch (Stripe's timestamps). */
export type UnixSeconds = number;
