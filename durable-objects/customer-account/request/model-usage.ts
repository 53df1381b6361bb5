import type { TokenCounts } from "../../../src/lib/meters";

/*
 * Token usage of tokens meters per meter, model (the models table's row, so a glob row is one
 * line) and usage bucket: requests, tokens of each kind, and what they were charged. Written with
 * the settlement of each request's hold; old buckets fold into the carried-forward bucket with the
 * ledger's (retention/usage.ts).
 */
export const MODEL_USAGE_TABLES = {
  v16: `
CREATE TABLE IF NOT EXISTS model_usage (
  meter TEXT NOT NULL,
  model TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  requests INTEGER NOT NULL,
  input INTEGER NOT NULL,
  cached_input INTEGER NOT NULL,
  cache_write INTEGER NOT NULL,
  output INTEGER NOT NULL,
  reasoning INTEGER NOT NULL,
  micros INTEGER NOT NULL,
  PRIMARY KEY (meter, model, bucket)
);`,
};

export interface ModelUsageRow extends TokenCounts {
  meter: string;
  model: string;
  bucket: number;
  requests: number;
  micros: number;
}

const KINDS = ["input", "cached_input", "cache_write", "output", "reasoning"] as const;

export class ModelUsage {
  constructor(private readonly sql: SqlStorage) {}

  record(meter: string, model: string, bucket: number, tokens: TokenCounts, micros: number): void {
    this.sql.exec(
      `INSERT INTO model_usage (meter, model, bucket, requests, ${KINDS.join(", ")}, micros) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (meter, model, bucket) DO UPDATE SET requests = requests + 1, ${KINDS.map((k) => `${k} = ${k} + excluded.${k}`).join(", ")}, micros = micros + excluded.micros`,
      meter,
      model,
      bucket,
      ...KINDS.map((k) => tokens[k]),
      micros,
    );
  }

  /** Rows of buckets at or after `since` (the carried-forward bucket 0 only when since is 0). */
  since(since: number): ModelUsageRow[] {
    return this.sql.exec("SELECT * FROM model_usage WHERE bucket >= ? ORDER BY bucket, meter, model", since).toArray() as unknown as ModelUsageRow[];
  }

  /** Buckets before `before` (never the carried one) fold into bucket `carried`, sums unchanged. */
  fold(carried: number, before: number): void {
    const sums = KINDS.map((k) => `SUM(${k})`).join(", ");
    this.sql.exec(
      `INSERT INTO model_usage (meter, model, bucket, requests, ${KINDS.join(", ")}, micros)
       SELECT meter, model, ?, SUM(requests), ${sums}, SUM(micros) FROM model_usage WHERE bucket > ? AND bucket < ? GROUP BY meter, model
       ON CONFLICT (meter, model, bucket) DO UPDATE SET requests = requests + excluded.requests, ${KINDS.map((k) => `${k} = ${k} + excluded.${k}`).join(", ")}, micros = micros + excluded.micros`,
      carried,
      carried,
      before,
    );
    this.sql.exec("DELETE FROM model_usage WHERE bucket > ? AND bucket < ?", carried, before);
  }
}
