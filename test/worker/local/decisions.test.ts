import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { cohortsFor } from "../../../durable-objects/customer-account/cohorts/cohorts";
import { type EmailRow, planEmail } from "../../../durable-objects/customer-account/cohorts/emails";
import { decide } from "../../../durable-objects/customer-account/request/governance";
import { impliedEdgeBalance } from "../../../durable-objects/customer-account/stripe/reconcile";
import { dueToStripe } from "../../../durable-objects/customer-account/stripe/reports";

// The account's decisions that need no I/O, tested directly over plain state.
const micros = fc.integer({ min: -1_000_000_000_000, max: 1_000_000_000_000 });

describe("may this request pass (governance)", () => {
  it("prepaid: passes exactly when it is free or leaves at least the minimum", () => {
    fc.assert(
      fc.property(micros, micros, fc.nat({ max: 10_000_000_000 }), (balance, minimum, price) => {
        const verdict = decide({ plan: "prepaid", balanceMicros: balance, minimumMicros: minimum, priceMicros: price, overdue: false });
        expect(verdict).toBe(price === 0 || balance - price >= minimum ? "ok" : "insufficient_credit");
      }),
    );
  });

  it("post-paid: never blocked for balance, only while overdue", () => {
    fc.assert(
      fc.property(micros, fc.nat(), fc.boolean(), (balance, price, overdue) => {
        const verdict = decide({ plan: "postpaid", balanceMicros: balance, minimumMicros: 0, priceMicros: price, overdue });
        expect(verdict).toBe(overdue ? "payment_overdue" : "ok");
      }),
    );
  });
});

describe("which cohorts is the customer in", () => {
  it("out of credit when no non-free meter is affordable, else low balance below the threshold; expiring credit warned; none once deleted", () => {
    fc.assert(
      fc.property(
        fc.record({
          deleted: fc.boolean(),
          plan: fc.constantFrom("prepaid" as const, "postpaid" as const),
          meters: fc.array(fc.record({ priceMicros: fc.integer({ min: 1, max: 10_000_000 }), headroomMicros: micros }), { maxLength: 4 }),
          headroomMicros: micros,
          lowThresholdMicros: fc.nat({ max: 1_000_000_000 }),
          unpaid: fc.boolean(),
          expiringSoonMicros: fc.constantFrom(0, 1, 5_000_000),
        }),
        (s) => {
          const cohorts = [...cohortsFor(s)];
          const outOfCredit = s.meters.length > 0 && s.meters.every((m) => m.headroomMicros < m.priceMicros);
          const expected = s.deleted
            ? []
            : [
                ...(s.plan === "postpaid"
                  ? s.unpaid
                    ? ["payment_failed"]
                    : []
                  : outOfCredit
                    ? ["out_of_credits"]
                    : s.headroomMicros < s.lowThresholdMicros
                      ? ["low_balance"]
                      : []),
                ...(s.expiringSoonMicros > 0 ? ["credit_expiring"] : []),
              ];
          expect(cohorts).toEqual(expected);
          expect(cohorts.includes("out_of_credits") && cohorts.includes("low_balance")).toBe(false);
        },
      ),
    );
  });

  it("a customer who can still afford a cheaper meter is not out of credit", () => {
    const s = { deleted: false, plan: "prepaid" as const, headroomMicros: 50_000, lowThresholdMicros: 0, unpaid: false, expiringSoonMicros: 0 };
    expect(
      cohortsFor({
        ...s,
        meters: [
          { priceMicros: 1_000_000, headroomMicros: 50_000 },
          { priceMicros: 50_000, headroomMicros: 50_000 },
        ],
      }).has("out_of_credits"),
    ).toBe(false);
    expect(
      cohortsFor({
        ...s,
        meters: [
          { priceMicros: 1_000_000, headroomMicros: 49_999 },
          { priceMicros: 50_000, headroomMicros: 49_999 },
        ],
      }).has("out_of_credits"),
    ).toBe(true);
  });
});

describe("when is the next email due", () => {
  const row = (fields: Partial<EmailRow>): EmailRow => ({
    id: 1,
    cohort: "out_of_credits",
    enrollment: 1,
    seq: 0,
    to_email: "a@example.com",
    subject: "s",
    text: "t",
    html: null,
    status: "sent",
    attempts: 1,
    next_attempt_at: null,
    last_error: null,
    created_at: 1_000,
    sent_at: 1_000,
    request_id: null,
    ...fields,
  });
  /** No cap and allowed: the rules that held before the cap and the audience existed. */
  const open = { maxPerEnrollment: 100, allowed: true };

  it("the first email of an enrollment is due on entry, unless the window of an earlier enrollment is still running", () => {
    fc.assert(
      fc.property(fc.nat({ max: 10_000_000 }), fc.option(fc.nat({ max: 10_000_000 })), fc.integer({ min: 1, max: 86_400_000 }), (entered, previousSent, window) => {
        const previous = previousSent === null ? undefined : row({ enrollment: 0, sent_at: previousSent });
        const plan = planEmail({
          membership: { enrollment: 1, entered_at: entered },
          last: undefined,
          previous: () => previous,
          reenrollMs: window,
          defaultReenrollMs: window,
          ...open,
        });
        expect(plan).toMatchObject({ retry: null, seq: 0 });
        expect(plan!.at).toBe(previousSent === null ? entered : Math.max(entered, previousSent + window));
        expect(plan!.at).toBeGreaterThanOrEqual(entered);
      }),
    );
  });

  it("a retry keeps its sequence; a sent email repeats after the window; a zero window or a send in flight means none", () => {
    const m = { enrollment: 1, entered_at: 0 };
    const retry = row({ status: "retry", next_attempt_at: 5_000, seq: 2 });
    expect(planEmail({ membership: m, last: retry, previous: () => undefined, reenrollMs: 3_600_000, defaultReenrollMs: 3_600_000, ...open })).toEqual({
      at: 5_000,
      retry,
      seq: 2,
    });
    expect(planEmail({ membership: m, last: row({ seq: 2, sent_at: 7_000 }), previous: () => undefined, reenrollMs: 60_000, defaultReenrollMs: 1, ...open })).toEqual({
      at: 67_000,
      retry: null,
      seq: 3,
    });
    expect(planEmail({ membership: m, last: row({}), previous: () => undefined, reenrollMs: 0, defaultReenrollMs: 3_600_000, ...open })).toBeNull();
    expect(planEmail({ membership: m, last: row({ status: "sending" }), previous: () => undefined, reenrollMs: 60_000, defaultReenrollMs: 60_000, ...open })).toBeNull();
  });

  const lastRow = fc.record({
    seq: fc.nat({ max: 20 }),
    status: fc.constantFrom("sent" as const, "outbox" as const, "failed" as const, "unknown" as const, "retry" as const, "sending" as const),
    sent_at: fc.nat({ max: 10_000_000 }),
    next_attempt_at: fc.nat({ max: 10_000_000 }),
  });

  it("plans nothing at all for a customer that may not be emailed (no key, no activity, unsubscribed), not even a retry", () => {
    fc.assert(
      fc.property(fc.option(lastRow), fc.option(lastRow), fc.nat({ max: 86_400_000 }), fc.integer({ min: 1, max: 10 }), (last, previous, window, max) => {
        const plan = planEmail({
          membership: { enrollment: 1, entered_at: 0 },
          last: last === null ? undefined : row(last),
          previous: () => (previous === null ? undefined : row({ ...previous, enrollment: 0 })),
          reenrollMs: window,
          defaultReenrollMs: window || 1,
          maxPerEnrollment: max,
          allowed: false,
        });
        expect(plan).toBeNull();
      }),
    );
  });

  it("caps an enrollment at max_per_enrollment emails, counting the first and failed ones; a retry of one of them still goes", () => {
    fc.assert(
      fc.property(lastRow, fc.integer({ min: 1, max: 86_400_000 }), fc.integer({ min: 1, max: 10 }), (last, window, max) => {
        fc.pre(last.seq < max); // a row exists only for a sequence the cap allowed
        const plan = planEmail({
          membership: { enrollment: 1, entered_at: 0 },
          last: row(last),
          previous: () => undefined,
          reenrollMs: window,
          defaultReenrollMs: window,
          maxPerEnrollment: max,
          allowed: true,
        });
        if (last.status === "retry") expect(plan).toMatchObject({ seq: last.seq, retry: { seq: last.seq } });
        else if (last.status === "sending" || last.seq + 1 >= max) expect(plan).toBeNull();
        else expect(plan).toEqual({ at: last.sent_at + window, retry: null, seq: last.seq + 1 });
        if (plan) expect(plan.seq).toBeLessThan(max);
      }),
    );
  });

  it("over any run of cron visits, cohort exits and re-entries: at most max per enrollment, never two within the window, none after unsubscribing", () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant("cron" as const), dt: fc.nat({ max: 3 * 3_600_000 }) }),
      fc.record({ kind: fc.constant("toggle" as const), dt: fc.nat({ max: 3_600_000 }) }),
      fc.record({ kind: fc.constant("unsubscribe" as const), dt: fc.constant(0) }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), fc.integer({ min: 1, max: 2 * 3_600_000 }), fc.integer({ min: 1, max: 5 }), (steps, window, max) => {
        const sent: EmailRow[] = [];
        let now = 0;
        let enrollment = 1;
        let member: { enrollment: number; entered_at: number } | null = { enrollment, entered_at: 0 };
        let allowed = true;
        let unsubscribedAt: number | null = null;
        for (const s of steps) {
          now += s.dt;
          if (s.kind === "unsubscribe") {
            allowed = false;
            unsubscribedAt ??= now;
          } else if (s.kind === "toggle") {
            member = member ? null : { enrollment: ++enrollment, entered_at: now };
          } else if (member) {
            const m = member;
            const ofEnrollment = sent.filter((r) => r.enrollment === m.enrollment);
            const plan = planEmail({
              membership: m,
              last: ofEnrollment.at(-1),
              previous: () => sent.at(-1),
              reenrollMs: window,
              defaultReenrollMs: window,
              maxPerEnrollment: max,
              allowed,
            });
            if (plan && plan.at <= now) {
              expect(plan.retry).toBeNull();
              sent.push(row({ id: sent.length + 1, enrollment: m.enrollment, seq: plan.seq, created_at: now, sent_at: now }));
            }
          }
        }
        for (const e of new Set(sent.map((r) => r.enrollment))) expect(sent.filter((r) => r.enrollment === e).length).toBeLessThanOrEqual(max);
        for (let i = 1; i < sent.length; i++) expect(sent[i]!.sent_at! - sent[i - 1]!.sent_at!).toBeGreaterThanOrEqual(window);
        if (unsubscribedAt !== null) expect(sent.every((r) => r.sent_at! <= unsubscribedAt!)).toBe(true);
      }),
    );
  });
});

describe("how much is due to Stripe", () => {
  it("whole cents toward zero; the sub-cent remainder waits and nothing is lost", () => {
    fc.assert(
      fc.property(micros, (pending) => {
        const due = dueToStripe(pending);
        expect(Number.isInteger(due.cents)).toBe(true);
        expect(due.cents * 1_000_000 + due.remainderMicros).toBe(pending);
        expect(Math.abs(due.remainderMicros)).toBeLessThan(1_000_000);
        expect(Math.sign(due.remainderMicros) * Math.sign(pending)).not.toBe(-1);
      }),
    );
  });

  it("the edge balance Stripe implies: its credit, less what is not reported yet, less refused or unsent credit", () => {
    expect(impliedEdgeBalance({ stripeBalanceCents: -500, pendingUsageMicros: 1_500_000, failedCents: 0, unsentCents: 0 })).toBe(498_500_000);
    expect(impliedEdgeBalance({ stripeBalanceCents: 2, pendingUsageMicros: 0, failedCents: 10, unsentCents: 0 })).toBe(-12_000_000);
    // A top-up report not yet received: Stripe's balance lacks its 500 cents of credit.
    expect(impliedEdgeBalance({ stripeBalanceCents: 0, pendingUsageMicros: 0, failedCents: 0, unsentCents: -500 })).toBe(500_000_000);
  });
});
