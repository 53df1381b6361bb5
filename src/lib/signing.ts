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

/** `X-Payg-Signature` for a webhook delivery of `rawBody`. */
export async function signWebhook(secret: string, rawBody: string, now = Date.now()): Promise<string> {
  const t = Math.floor(now / 1000);
  return `t=${t},v1=${await hmacHex(secret, webhookPayload(t, rawBody))}`;
}
