import type { Config } from "../config";

export interface OutgoingEmail {
  to: string;
  toName?: string;
  subject: string;
  text: string;
  html?: string;
}

/**
 * sent: MailChannels accepted it (202). retry: it said it did not (5xx, 429).
 * failed: permanent rejection (4xx), never retried. unknown: no answer (timeout, lost
 * connection): it may have been accepted, and MailChannels has no idempotency key, so it is
 * not sent again; a duplicate email is worse than a missed reminder that the next window repeats.
 */
export type SendOutcome =
  | { outcome: "sent"; requestId: string | null }
  | { outcome: "retry" | "failed" | "unknown"; error: string };

export async function sendViaMailChannels(config: Config, email: OutgoingEmail): Promise<SendOutcome> {
  const from = config.EMAILS!;
  const personalization: Record<string, unknown> = { to: [{ email: email.to, ...(email.toName ? { name: email.toName } : {}) }] };
  if (config.MAILCHANNELS_DKIM_DOMAIN && config.MAILCHANNELS_DKIM_SELECTOR && config.MAILCHANNELS_DKIM_PRIVATE_KEY) {
    personalization.dkim_domain = config.MAILCHANNELS_DKIM_DOMAIN;
    personalization.dkim_selector = config.MAILCHANNELS_DKIM_SELECTOR;
    personalization.dkim_private_key = config.MAILCHANNELS_DKIM_PRIVATE_KEY;
  }
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
  if (response.status === 202 || response.status === 200) {
    return { outcome: "sent", requestId: response.headers.get("x-request-id") };
  }
  const error = `MailChannels ${response.status}: ${text.slice(0, 500)}`;
  return response.status >= 500 || response.status === 429 ? { outcome: "retry", error } : { outcome: "failed", error };
}
