import { hmacHex, originPayload, webhookPayload } from "../verify/payg-signature";

/** `X-Payg-Signature` for a request forwarded to the origin (v2 also covers the client IP). */
export async function signOriginRequest(
  secret: string,
  input: { method: string; pathAndQuery: string; customerId: string; requestId: string; clientIp?: string | null; now?: number },
): Promise<string> {
  const t = Math.floor((input.now ?? Date.now()) / 1000);
  const payload = originPayload(t, input.method, input.pathAndQuery, input.customerId, input.requestId);
  const v1 = await hmacHex(secret, payload);
  if (input.clientIp == null) return `t=${t},v1=${v1}`;
  return `t=${t},v1=${v1},v2=${await hmacHex(secret, `${payload}.${input.clientIp}`)}`;
}

/**
 * `X-Payg-Signature` for a webhook delivery of `rawBody` (deprecated on deliveries: Standard
 * Webhooks' headers are the ones to verify): one v1 per secret, so a rotation works here too.
 */
export async function signWebhook(secrets: string | readonly string[], rawBody: string, now = Date.now()): Promise<string> {
  const t = Math.floor(now / 1000);
  const v1s = await Promise.all((typeof secrets === "string" ? [secrets] : secrets).map((secret) => hmacHex(secret, webhookPayload(t, rawBody))));
  return [`t=${t}`, ...v1s.map((v1) => `v1=${v1}`)].join(",");
}

const STANDARD_PREFIX = "whsec_";

/**
 * A new endpoint secret as the Standard Webhooks specification shows them: `whsec_` and the
 * base64 of 32 random bytes (the spec allows 24 to 64).
 */
export function newStandardSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return STANDARD_PREFIX + btoa(String.fromCharCode(...bytes));
}

/**
 * The HMAC key a `whsec_…` secret stands for: the base64 after the prefix, decoded, as the spec's
 * libraries read it. Secrets made before (`whsec_` and 64 hex digits) are valid base64 too.
 */
function standardKey(secret: string): Uint8Array {
  const encoded = secret.startsWith(STANDARD_PREFIX) ? secret.slice(STANDARD_PREFIX.length) : secret;
  return Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
}

/**
 * Standard Webhooks' headers for one delivery: `webhook-signature` is `v1,<base64 HMAC-SHA256 of
 * "{id}.{timestamp}.{body}">`, one per secret, space-separated (a rotation signs with both).
 * https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
 */
export async function standardWebhookHeaders(secrets: readonly string[], id: string, rawBody: string, now = Date.now()) {
  const timestamp = Math.floor(now / 1000);
  const content = new TextEncoder().encode(`${id}.${timestamp}.${rawBody}`);
  const signatures = await Promise.all(
    secrets.map(async (secret) => {
      const key = await crypto.subtle.importKey("raw", standardKey(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
      const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, content));
      return `v1,${btoa(String.fromCharCode(...mac))}`;
    }),
  );
  return { "webhook-id": id, "webhook-timestamp": String(timestamp), "webhook-signature": signatures.join(" ") };
}
