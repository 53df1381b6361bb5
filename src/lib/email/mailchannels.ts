import type { Config } from "../config";
import { log } from "../log";

export interface OutgoingEmail {
  to: string;
  toName?: string;
  subject: string;
  text: string;
  html?: string;
  /** Custom headers (List-Unsubscribe, …), set on the personalization so DKIM signs them. */
  headers?: Record<string, string>;
}

/**
 * sent: MailChannels accepted it (202, its result `sent`). retry: it said it did not (5xx, 429).
 * failed: permanent rejection (4xx, or a 202 whose result is `failed`), never retried. unknown: no
 * answer (timeout, lost connection): it may have been accepted, and MailChannels has no
 * idempotency key, so it is not sent again; a duplicate email is worse than a missed reminder
 * that the next window repeats. `requestId` is MailChannels' `request_id`, when it answered one.
 */
export type SendOutcome = { outcome: "sent"; requestId: string | null } | { outcome: "retry" | "failed" | "unknown"; error: string; requestId?: string | null };

/** The 202 body: `{ request_id, results: [{ index, message_id, status: "sent" | "failed", reason }] }`. */
interface SendResponse {
  request_id?: unknown;
  results?: { status?: unknown; reason?: unknown }[];
}

export async function sendViaMailChannels(config: Config, email: OutgoingEmail): Promise<SendOutcome> {
  const from = config.EMAILS!;
  const personalization: Record<string, unknown> = { to: [{ email: email.to, ...(email.toName ? { name: email.toName } : {}) }] };
  if (config.MAILCHANNELS_DKIM_DOMAIN && config.MAILCHANNELS_DKIM_SELECTOR && config.MAILCHANNELS_DKIM_PRIVATE_KEY) {
    personalization.dkim_domain = config.MAILCHANNELS_DKIM_DOMAIN;
    personalization.dkim_selector = config.MAILCHANNELS_DKIM_SELECTOR;
    personalization.dkim_private_key = config.MAILCHANNELS_DKIM_PRIVATE_KEY;
  }
  if (email.headers && Object.keys(email.headers).length) personalization.headers = email.headers;
  const body = {
    personalizations: [personalization],
    from: { email: from.from_email, ...(from.from_name ? { name: from.from_name } : {}) },
    subject: email.subject,
    content: [{ type: "text/plain", value: email.text }, ...(email.html ? [{ type: "text/html", value: email.html }] : [])],
  };
  let response: Response;
  try {
    response = await fetch(new URL("/tx/v1/send", config.MAILCHANNELS_API_BASE), {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": config.MAILCHANNELS_API_KEY ?? "" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(config.MAILCHANNELS_TIMEOUT_MS),
    });
  } catch (error) {
    return { outcome: "unknown", error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
  }
  const text = await response.text().catch(() => "");
  if (response.status === 202) return accepted(text);
  const error = `MailChannels ${response.status}: ${text.slice(0, 500)}`;
  if (response.status === 403) {
    // Every send fails the same way until someone fixes the key or the domain: say so loudly.
    log.error(`MailChannels refused the request (403): check MAILCHANNELS_API_KEY and the sending domain's Domain Lockdown record`);
    return { outcome: "failed", error: `${error} (invalid API key or sending domain not authorized)` };
  }
  if (response.status >= 500 || response.status === 429) return { outcome: "retry", error };
  return { outcome: "failed", error };
}

/** A 202 is accepted as a request; each message still carries its own `sent` or `failed`. */
function accepted(text: string): SendOutcome {
  let parsed: SendResponse = {};
  try {
    parsed = JSON.parse(text) as SendResponse;
  } catch {
    // Accepted, with a body we cannot read: it was accepted all the same.
  }
  const requestId = typeof parsed.request_id === "string" ? parsed.request_id : null;
  const failed = (parsed.results ?? []).find((r) => r?.status === "failed");
  if (failed) {
    const reason = typeof failed.reason === "string" && failed.reason ? failed.reason : "no reason given";
    return { outcome: "failed", error: `MailChannels 202, message failed: ${reason}`, requestId };
  }
  return { outcome: "sent", requestId };
}
