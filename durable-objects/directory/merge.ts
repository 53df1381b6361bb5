import type { Overview } from "./rollup";

/**
 * The shards' answers made into one: the overview summed, pages of customers or members merged
 * by id. Each shard answers the first `limit` ids after the cursor, so the first `limit` of their
 * union are the first `limit` overall; an id listed twice (a customer caught mid-move between
 * shards) is listed once.
 */
export function sumOverviews(parts: Overview[]): Overview {
  const usage = new Map<string, Overview["usage"][number]>();
  for (const part of parts) {
    for (const u of part.usage) {
      const key = `${u.hour} ${u.meter}`;
      const sum = usage.get(key);
      if (sum) {
        sum.requests += u.requests;
        sum.micros += u.micros;
      } else usage.set(key, { ...u });
    }
  }
  const cohorts: Record<string, number> = {};
  for (const part of parts) for (const [name, n] of Object.entries(part.cohorts)) cohorts[name] = (cohorts[name] ?? 0) + n;
  const add = (pick: (o: Overview) => number) => parts.reduce((sum, o) => sum + pick(o), 0);
  const at = parts.map((o) => o.rolledUpAt).filter((t): t is number => t !== null);
  return {
    customers: add((o) => o.customers),
    cohorts,
    outstandingMicros: add((o) => o.outstandingMicros),
    customersWithCredit: add((o) => o.customersWithCredit),
    overdrawnMicros: add((o) => o.overdrawnMicros),
    reports: { pending: add((o) => o.reports.pending), failed: add((o) => o.reports.failed), customersWithFailed: add((o) => o.reports.customersWithFailed) },
    emails: {
      sent: add((o) => o.emails.sent),
      failed: add((o) => o.emails.failed),
      unknown: add((o) => o.emails.unknown),
      retrying: add((o) => o.emails.retrying),
    },
    usage: [...usage.values()].sort((a, b) => a.hour - b.hour || (a.meter < b.meter ? -1 : a.meter > b.meter ? 1 : 0)),
    rolledUpAt: at.length ? Math.max(...at) : null,
  };
}

function mergeById<T>(pages: { rows: T[]; more: boolean }[], id: (row: T) => string, limit: number): { rows: T[]; next_cursor: string | null } {
  const seen = new Map<string, T>();
  for (const page of pages) for (const row of page.rows) if (!seen.has(id(row))) seen.set(id(row), row);
  const all = [...seen.values()].sort((a, b) => (id(a) < id(b) ? -1 : id(a) > id(b) ? 1 : 0));
  const rows = all.slice(0, limit);
  const more = all.length > limit || pages.some((p) => p.more);
  return { rows, next_cursor: more && rows.length ? id(rows.at(-1)!) : null };
}

export function mergeCustomerPages<T extends { id: string }>(pages: { customers: T[]; next_cursor: string | null }[], limit: number) {
  const { rows, next_cursor } = mergeById(
    pages.map((p) => ({ rows: p.customers, more: p.next_cursor !== null })),
    (c) => c.id,
    limit,
  );
  return { customers: rows, next_cursor };
}

export function mergeCohortMembers<T extends Record<string, unknown>>(pages: { members: T[]; next_cursor: string | null }[], limit: number) {
  const { rows, next_cursor } = mergeById(
    pages.map((p) => ({ rows: p.members, more: p.next_cursor !== null })),
    (m) => m.customer_id as string,
    limit,
  );
  return { members: rows, next_cursor };
}
