import { signWebhook, standardWebhookHeaders } from "../../src/lib/signing";

export type AttemptResult = { ok: true; status: number } | { ok: false; status: number | null; error: string };

/**
 * One delivery attempt: POST of the event's exact JSON, signed with each of the endpoint's live
 * secrets (the current one first; during a rotation the previous ones too): Standard Webhooks'
 * `webhook-id` (the event's id, the same on every attempt), `webhook-timestamp` and
 * `webhook-signature`, and the deprecated `X-Payg-Signature`. Only a 2xx counts; any other status
 * (redirects included), a timeout or a dropped connection is a failure to retry. The response
 * body is never read.
 */
export async function sendOnce(input: { url: string; secrets: readonly string[]; eventId: string; body: string; timeoutMs: number; now?: number }): Promise<AttemptResult> {
  const now = input.now ?? Date.now();
  const headers = {
    "content-type": "application/json",
    "user-agent": "payg-edge-gateway-webhooks/1",
    ...(await standardWebhookHeaders(input.secrets, input.eventId, input.body, now)),
    "x-payg-event-id": input.eventId,
    "x-payg-signature": await signWebhook(input.secrets, input.body, now),
  };
  try {
    const response = await fetch(input.url, {
      method: "POST",
      headers,
      body: input.body,
      redirect: "manual",
      signal: AbortSignal.timeout(input.timeoutMs),
    });
    await response.body?.cancel().catch(() => undefined);
    if (response.status >= 200 && response.status < 300) return { ok: true, status: response.status };
    return { ok: false, status: response.status, error: `HTTP ${response.status}` };
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name === "TimeoutError" || name === "AbortError") return { ok: false, status: null, error: `no response within ${input.timeoutMs} ms` };
    return { ok: false, status: null, error: `connection failed: ${(error as Error).message ?? String(error)}`.slice(0, 500) };
  }
}
