import type { AutoTopUpState } from "../../durable-objects/customer-account/contract";
import { liftedByNewCard, pausedBecause } from "../../durable-objects/customer-account/contract";
import { centsToMicros, formatMoney } from "../lib/money";
import { CsrfField, Notice } from "../web/components";

/** What `GET /admin/customers/{id}/auto-top-up` answers (the parts the portal shows). */
export interface AutoTopUpData {
  stripe: boolean;
  auto_topup: {
    enabled: boolean;
    threshold_cents: number;
    amount_cents: number;
    monthly_cap_cents: number;
    max_per_day: number;
    state: AutoTopUpState;
    why: string | null;
    paused_reason: string | null;
    month_total_cents: number;
    next_topup_at: number | null;
  } | null;
}

const STATE_TEXT: Record<Exclude<AutoTopUpState, "paused" | "waiting">, string> = {
  active: "On: when your credit falls below the threshold, your saved card is charged the top-up amount.",
  pending: "On: a top-up is being paid right now.",
  capped: "On, but this month's limit is reached: no more automatic top-ups until next month (or raise the limit).",
  no_card: "On, waiting for a card: top up above with “Save my card for automatic top-ups” ticked. Only a card saved that way is ever charged automatically.",
  inactive: "Not available for this account right now.",
  off: "Off.",
};

/** Why it is paused and what lifts it: a new card only after a failed payment; anything else only saving these settings again. */
export function pausedText(reason: string | null): string {
  const why = pausedBecause(reason ?? "");
  return liftedByNewCard(reason)
    ? `Paused because ${why}. Top up above with “Save my card for automatic top-ups” ticked, or save these settings again, to resume.`
    : `Paused because ${why}. Your card will not be charged automatically until you save these settings again.`;
}

/** Whether saving a card would get auto top-up going (the top-up form then ticks "save my card"). */
export function wantsCard(s: AutoTopUpData["auto_topup"]): boolean {
  return s?.state === "no_card" || (s?.state === "paused" && liftedByNewCard(s.paused_reason));
}

function stateText(s: NonNullable<AutoTopUpData["auto_topup"]>): string {
  if (s.state === "paused") return pausedText(s.paused_reason);
  if (s.state === "waiting") {
    const at = s.next_topup_at ? new Date(s.next_topup_at).toISOString().slice(0, 16).replace("T", " ") : "later";
    return `On: the next top-up waits until ${at} UTC (at most ${s.max_per_day} a day, and not too close to the last one).`;
  }
  return STATE_TEXT[s.state];
}

/** A form amount in the currency's major unit ("20", "20.5", "20.05") as whole cents, or null. */
export function parseMajorAmount(value: string | undefined): number | null {
  const match = /^(\d{1,7})(?:\.(\d{1,2}))?$/.exec((value ?? "").trim());
  return match ? Number(match[1]) * 100 + Number((match[2] ?? "").padEnd(2, "0")) : null;
}

const major = (cents: number) => `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, "0")}`;

/** The portal's automatic top-up section: its state, and a form to change or turn it off. */
export function AutoTopUpSection(props: { data: AutoTopUpData; currency: string; csrf: string; action: string }) {
  const s = props.data.auto_topup;
  const money = (cents: number) => formatMoney(centsToMicros(cents), props.currency);
  const field = (name: string, label: string, cents: number) => (
    <label>
      {label}
      <input name={name} inputmode="decimal" required pattern="\d{1,7}(\.\d{1,2})?" value={major(cents)} />
    </label>
  );
  return (
    <section aria-labelledby="auto-h">
      <h2 id="auto-h">Automatic top-up</h2>
      {s?.state === "paused" ? <Notice tone="error">{stateText(s)}</Notice> : <p>{s ? stateText(s) : STATE_TEXT.off}</p>}
      {s?.enabled ? (
        <p class="muted">
          Below {money(s.threshold_cents)}, add {money(s.amount_cents)}; at most {money(s.monthly_cap_cents)} a month ({money(s.month_total_cents)} so far this month).
        </p>
      ) : null}
      <form method="post" action={props.action} class="stack panel">
        <CsrfField token={props.csrf} />
        {field("threshold", "When my credit falls below", s?.threshold_cents ?? 500)}
        {field("amount", "Add this much", s?.amount_cents ?? 2000)}
        {field("cap", "At most this much a month", s?.monthly_cap_cents ?? 10_000)}
        <button type="submit">{s?.enabled ? "Save automatic top-up" : "Turn on automatic top-up"}</button>
      </form>
      {s?.enabled ? (
        <form method="post" action={props.action} class="inline">
          <CsrfField token={props.csrf} />
          <input type="hidden" name="off" value="1" />
          <button type="submit">Turn off automatic top-up</button>
        </form>
      ) : null}
    </section>
  );
}
