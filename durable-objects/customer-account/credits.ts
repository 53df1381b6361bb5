import { newId } from "../../src/keys";
import { centsToMicros } from "../../src/money";
import type { Room } from "./room";

export interface CreditInput {
  customerId: string;
  /** Whole cents: > 0 grants, < 0 deducts. */
  amountCents: number;
  reason: string;
  /** Makes it idempotent: the same reference twice changes nothing the second time. */
  reference?: string;
  kind?: "grant" | "topup";
}

export interface CreditResult {
  applied: boolean;
  /** The reference was used before with another amount. */
  conflict: boolean;
  balanceMicros: number;
  entryId: number | null;
}

/**
 * Grants or deducts whole cents, synchronously (so it is also safe inside the lock). With Stripe
 * on, a prepaid change is also queued as a report, so Stripe stays the book of record.
 */
export function applyCredit(room: Room, input: CreditInput): CreditResult {
  room.ensure(input.customerId);
  const kind = input.kind ?? "grant";
  const amount = centsToMicros(input.amountCents);
  if (input.reference) {
    const existing = room.ledger.byReference(input.reference);
    if (existing) return { applied: false, conflict: existing.amount !== amount, balanceMicros: room.account.row.balance, entryId: existing.id };
  }
  const entryId = room.atomically(() => {
    const id = room.ledger.entry(
      { kind, amount, reference: input.reference ?? null, reason: input.reason, now: Date.now() },
      kind === "topup" && input.amountCents > 0 ? { last_topup_cents: input.amountCents } : {},
    );
    const a = room.account.row;
    if (room.config.stripeEnabled && a.plan === "prepaid") {
      // Stripe scopes idempotency keys to the account, so the customer id is part of the key.
      const reportId = input.reference ? `payg_${kind}_${a.customer_id}_${input.reference}` : newId(`payg_${kind}_${a.customer_id}`);
      room.reports.insert(kind, reportId, -input.amountCents);
    }
    return id;
  });
  room.changed();
  return { applied: true, conflict: false, balanceMicros: room.account.row.balance, entryId };
}
