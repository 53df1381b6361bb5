/** Requests and charges (micro-cents) per meter per usage bucket since `since` (ms), oldest first. */
export function usageSeries(sql: SqlStorage, since: number): { meter: string; bucket: number; requests: number; micros: number }[] {
  return sql
    .exec(
      `SELECT meter, bucket, SUM(CASE WHEN kind = 'usage' THEN count ELSE -count END) AS requests, -SUM(amount) AS micros
       FROM ledger WHERE kind IN ('usage', 'refund') AND bucket >= ? GROUP BY meter, bucket ORDER BY bucket, meter`,
      since,
    )
    .toArray()
    .map((r) => ({ meter: r.meter as string, bucket: r.bucket as number, requests: r.requests as number, micros: r.micros as number }));
}
