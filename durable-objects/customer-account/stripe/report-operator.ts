import type { Room } from "../core/context";
import { STRIPE_TIMER } from "./events";

/** An operator's retry of a failed Stripe report (looked up first, from the stripe timer); a ledger note records it. */
export function retryReport(room: Room, reportId: string) {
  const now = Date.now();
  const row = room.atomically(() => {
    const row = room.reports.retry(reportId, now);
    if (typeof row !== "string") room.ledger.entry({ kind: "note", amount: 0, reason: `Stripe report ${reportId} retried by an operator`, now });
    return row;
  });
  if (typeof row !== "string") room.timers.at(STRIPE_TIMER, now);
  return row;
}

/** An operator settled a failed Stripe report by hand: it counts as reported; a ledger note records it. */
export function resolveReport(room: Room, reportId: string, note: string) {
  const now = Date.now();
  return room.atomically(() => {
    const row = room.reports.resolve(reportId, now);
    if (typeof row !== "string") room.ledger.entry({ kind: "note", amount: 0, reason: `Stripe report ${reportId} resolved by an operator: ${note}`, now });
    return row;
  });
}
