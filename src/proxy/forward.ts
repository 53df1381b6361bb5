import type { Config } from "../lib/config";

export type OriginResult = { response: Response } | { failure: "connection_error" | "timeout" };

/** One request to the origin, bounded by GOVERNANCE.origin_timeout_ms (until its response headers). */
export async function forward(config: Config, target: URL, method: string, headers: Headers, body: BodyInit | null): Promise<OriginResult> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error("origin timeout")), config.GOVERNANCE.origin_timeout_ms);
  try {
    const response = await fetch(target, { method, headers, body, redirect: "manual", signal: controller.signal });
    return { response };
  } catch {
    return { failure: controller.signal.aborted ? "timeout" : "connection_error" };
  } finally {
    clearTimeout(timer);
  }
}

/** Whether a failed origin call gives the charge back (GOVERNANCE.refund_on). */
export function refundable(config: Config, result: OriginResult): boolean {
  if (!config.GOVERNANCE.refund_on_origin_error) return false;
  const on = config.GOVERNANCE.refund_on as (string | number)[];
  return "failure" in result ? on.includes(result.failure) : on.includes(result.response.status);
}
