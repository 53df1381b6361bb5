import type { AccountRow, AccountStore } from "../core/account";
import { availableFor, type Grant, type GrantBook, type GrantCategory, type GrantSource, planDrain, type Receipt, spendable } from "./grants";
import type { EntryKind, Ledger, UsageEntry } from "./ledger";

/** The largest balance an account may hold, in micro-cents: $10M, far inside exact integer range. */
export const MAX_BALANCE_MICROS = 1_000_000_000 * 1_000_000;
/** How far paid top-ups may take it (sessions opened while they fitted): still exact, 8e15 < 2^53. */
export const MAX_PAID_BALANCE_MICROS = 8 * MAX_BALANCE_MICROS;

/**
 * The account fields a give-back writes with its entries: `usage` with the usage entry (the whole
 * amount no longer counted as usage), `closed` with the void or expiry entry of a closed grant's part.
 */
export interface GiveBackFields {
  usage?: (micros: number) => Partial<AccountRow>;
  closed?: (kind: "void" | "expiry", grant: Grant, micros: number) => Partial<AccountRow>;
}

export interface NewGrant {
  amount: number;
  category?: GrantCategory;
  priority?: number;
  expiresAt?: number | null;
  meters?: string[] | null;
  source: GrantSource;
  reason: string;
  reference?: string | null;
  paymentIntent?: string | null;
}

/**
 * The customer's credit: grants, debt, and the ledger entries that move them. Every movement is a
 * ledger entry, so the balance (what remains of the grants, less debt) always equals the
 * ledger's sum. Callers run these inside one transaction with the rest of their step.
 */
export class Wallet {
  constructor(
    readonly grants: GrantBook,
    private readonly ledger: Ledger,
    private readonly account: AccountStore,
  ) {}

  get debt(): number {
    return this.account.row.debt;
  }

  /** Credit `meter` may use now: eligible, unexpired, unfrozen grants less debt. */
  available(meter: string, nowMs: number): number {
    return availableFor(this.grants.all, this.debt, meter, nowMs);
  }

  /** Credit any meter may use now (grants limited to some meters count too). */
  spendableTotal(nowMs: number): number {
    let sum = 0;
    for (const g of this.grants.all) if (g.expires_at === null || g.expires_at * 1000 > nowMs) sum += spendable(g);
    return sum - this.debt;
  }

  /**
   * Charges a request: drains eligible grants in the fixed order (the rest becomes debt) and
   * records the usage, in one step. Returns where the money came from.
   */
  charge(
    usage: Omit<UsageEntry, "amount" | "count">,
    price: number,
    alsoSet: Partial<AccountRow> = {},
    count = 1,
    receipt: Receipt = planDrain(this.grants.all, usage.meter, price, usage.now),
  ): Receipt {
    for (const [id, micros] of receipt.parts) this.grants.adjust(this.grants.get(id)!, -micros);
    this.ledger.usage({ ...usage, amount: -price, count }, receipt.debt > 0 ? { ...alsoSet, debt: this.debt + receipt.debt } : alsoSet);
    return receipt;
  }

  /**
   * Gives back `micros` of a hold's receipt (the unused part of a hold), last drained first, in
   * the hold's bucket; the request itself stays counted. Returns the micro-cents given back to the
   * balance; the part that belonged to a grant closed meanwhile is booked as that grant's void or
   * expiry (`closed`), never as usage.
   */
  release(usage: Omit<UsageEntry, "amount" | "count">, receipt: Receipt, micros: number, alsoSet: GiveBackFields = {}): number {
    let left = micros;
    const back: [string, number][] = [];
    let owed = 0;
    if (receipt.debt > 0) {
      owed = Math.min(left, receipt.debt);
      left -= owed;
    }
    for (let i = receipt.parts.length - 1; i >= 0 && left > 0; i--) {
      const [id, drained] = receipt.parts[i]!;
      const amount = Math.min(left, drained);
      left -= amount;
      back.push([id, amount]);
    }
    return this.giveBack(usage, back, owed, 0, alsoSet);
  }

  /**
   * Gives a charge back, into each grant it came from and off the debt; the part of a grant that
   * closed meanwhile is booked as its void or expiry (`closed`), as if it had still been in the
   * grant when it closed. Returns the micro-cents given back to the balance.
   */
  refund(usage: Omit<UsageEntry, "amount" | "count">, receipt: Receipt, alsoSet: GiveBackFields = {}): number {
    return this.giveBack(usage, receipt.parts, receipt.debt, -1, alsoSet);
  }

  /**
   * What release and refund share: `parts` back into their grants, `owed` back off the debt (or, if
   * a later grant paid it off, as a refund grant), in one usage entry of the whole amount
   * (`count`: -1 for a refunded request, 0 for a hold's unused part); then one void or expiry entry
   * per closed grant for its part, so the balance moves only by what it can hold again.
   */
  private giveBack(usage: Omit<UsageEntry, "amount" | "count">, parts: readonly [string, number][], owed: number, count: number, alsoSet: GiveBackFields): number {
    let restored = 0;
    const closed: [Grant, number][] = [];
    for (const [id, micros] of parts) {
      if (micros === 0) continue;
      const open = this.grants.all.find((g) => g.id === id);
      if (open) {
        this.grants.adjust(open, micros);
        restored += micros;
      } else {
        const grant = this.grants.get(id);
        if (grant) closed.push([grant, micros]);
      }
    }
    const debtBack = Math.min(owed, this.debt);
    restored += debtBack + this.repay(owed - debtBack, usage.now);
    const closedTotal = closed.reduce((sum, [, micros]) => sum + micros, 0);
    if (restored + closedTotal === 0 && count === 0) return 0;
    const fields = alsoSet.usage?.(restored + closedTotal) ?? {};
    this.ledger.usage({ ...usage, amount: restored + closedTotal, count }, debtBack > 0 ? { ...fields, debt: this.debt - debtBack } : fields);
    for (const [grant, micros] of closed) {
      const kind = grant.closed_reason === "voided" ? "void" : "expiry";
      this.ledger.entry(
        {
          kind,
          amount: -micros,
          reason: `${kind === "void" ? "voided" : "expired"} ${grant.id}: the part of a request's charge given back after it closed`,
          now: usage.now,
          grant: grant.id,
        },
        alsoSet.closed?.(kind, grant, micros) ?? {},
      );
    }
    return restored;
  }

  /**
   * Gives back the part of a charge's overdraft that a later grant has already paid off (a grant
   * pays debt first, so that money left the customer's grants): as a paid, never-expiring grant
   * with source `refund`. Its amount is in the refund's own ledger row, not in an entry of its own.
   * Returns what was given back.
   */
  private repay(micros: number, now: number): number {
    if (micros <= 0) return 0;
    this.grants.create({
      amount: micros,
      remaining: micros,
      category: "paid",
      priority: 50,
      expiresAt: null,
      meters: null,
      source: "refund",
      reason: "a refunded request's overdraft, paid off since by a grant",
      reference: null,
      paymentIntent: null,
      now,
    });
    return micros;
  }

  /** A new grant; it pays any debt first. Returns the grant and the ledger entry. */
  grant(input: NewGrant, now: number, alsoSet: Parameters<Ledger["entry"]>[1] = {}): { grant: Grant; entryId: number } {
    const paysDebt = Math.min(this.debt, input.amount);
    const grant = this.grants.create({
      amount: input.amount,
      remaining: input.amount - paysDebt,
      category: input.category ?? "paid",
      priority: input.priority ?? 50,
      expiresAt: input.expiresAt ?? null,
      meters: input.meters ?? null,
      source: input.source,
      reason: input.reason,
      reference: input.reference ?? null,
      paymentIntent: input.paymentIntent ?? null,
      now,
    });
    const reason = paysDebt > 0 ? `${input.reason} (paid ${paysDebt} micro-cents of debt)` : input.reason;
    const entryId = this.ledger.entry(
      { kind: "grant", amount: input.amount, reference: input.reference ?? null, reason, now, grant: grant.id },
      { ...alsoSet, ...(paysDebt > 0 ? { debt: this.debt - paysDebt } : {}) },
    );
    return { grant, entryId };
  }

  /** Takes `micros` out of one grant; what it no longer holds becomes debt. Returns the shortfall. */
  takeFrom(grant: Grant | undefined, micros: number, kind: EntryKind, reason: string, now: number, reference?: string, alsoSet: Partial<AccountRow> = {}): number {
    const fromGrant = grant && grant.closed_at === null ? Math.min(micros, grant.remaining) : 0;
    if (grant && fromGrant > 0) this.grants.adjust(grant, -fromGrant);
    const shortfall = micros - fromGrant;
    this.ledger.entry(
      { kind, amount: -micros, reference: reference ?? null, reason, now, grant: grant?.id ?? null },
      shortfall > 0 ? { ...alsoSet, debt: this.debt + shortfall } : alsoSet,
    );
    return shortfall;
  }

  /**
   * Gives back what a clawback took (a refund that failed, a lost dispute's funds reinstated):
   * off the debt first (what the clawback could not take from the grant became debt), then into
   * the grant, up to its amount. A grant closed meanwhile keeps nothing: the void or expiry would
   * have removed that credit too. Returns the micro-cents given back.
   */
  reverseClawback(grant: Grant | undefined, micros: number, reason: string, now: number, reference: string, alsoSet: (given: number) => Partial<AccountRow>): number {
    const debtBack = Math.min(this.debt, micros);
    const open = grant && grant.closed_at === null ? grant : undefined;
    const intoGrant = open ? Math.min(micros - debtBack, open.amount - open.remaining) : 0;
    const given = debtBack + intoGrant;
    if (intoGrant > 0) this.grants.adjust(open!, intoGrant);
    const fields = given > 0 ? alsoSet(given) : {};
    const debtFields = debtBack > 0 ? { ...fields, debt: this.debt - debtBack } : fields;
    const closedWith = grant && !open ? micros - debtBack : 0;
    if (closedWith > 0) {
      // The grant closed after the clawback: the credit comes back and closes with it, so the books
      // say it was voided (or expired), not taken back for a refund or dispute that took nothing.
      this.ledger.entry({ kind: "clawback_reversal", amount: micros, reference, reason, now, grant: grant!.id }, debtFields);
      const kind = grant!.closed_reason === "expired" ? "expiry" : "void";
      this.ledger.entry({ kind, amount: -closedWith, reason: `${reason}; ${closedWith} micro-cents of it closed with the grant (${grant!.closed_reason})`, now, grant: grant!.id });
      return given;
    }
    this.ledger.entry(
      {
        kind: "clawback_reversal",
        amount: given,
        reference,
        reason: given < micros ? `${reason}; ${micros - given} micro-cents of it had closed with the grant` : reason,
        now,
        grant: grant?.id ?? null,
      },
      debtFields,
    );
    return given;
  }

  /** Takes `micros` across all grants in drain order (any meter); the rest becomes debt. */
  deduct(micros: number, kind: EntryKind, reason: string, now: number, reference?: string, alsoSet: Partial<AccountRow> = {}): void {
    let left = micros;
    for (const g of this.grants.all) {
      if (left === 0) break;
      const take = Math.min(left, g.remaining);
      if (take > 0) {
        this.grants.adjust(g, -take);
        left -= take;
      }
    }
    this.ledger.entry({ kind, amount: -micros, reference: reference ?? null, reason, now }, left > 0 ? { ...alsoSet, debt: this.debt + left } : alsoSet);
  }

  /** Closes a grant (expiry or void), writing what it still held out of the balance. Returns that amount. */
  close(grant: Grant, reason: "expired" | "voided", now: number, note: string, alsoSet: Partial<AccountRow> = {}): number {
    const removed = grant.remaining;
    this.grants.close(grant, reason, now);
    this.ledger.entry({ kind: reason === "expired" ? "expiry" : "void", amount: -removed, reason: note, now, grant: grant.id }, alsoSet);
    return removed;
  }
}
