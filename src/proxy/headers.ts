import { signOriginRequest } from "../lib/signing";

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, never the next one. Which
 * other headers a client's Connection named is unknown here: the runtime's HTTP server consumes
 * Connection (with Keep-Alive, TE, Trailer, Upgrade) before the worker sees the request, and on
 * Cloudflare the edge overwrites it with Keep-Alive (docs/concepts/security.md: what the origin receives).
 */
const HOP_BY_HOP = ["connection", "te", "trailer", "upgrade", "proxy-authorization", "proxy-connection", "keep-alive", "transfer-encoding"];
/** The API key and a Payment credential (the origin never sees them) and Host (set by the fetch). */
const GATEWAY_ONLY = ["authorization", "x-api-key", "host", "payment-authorization", "forwarded", "x-real-ip", "x-request-id", "x-client-request-id"];
/** Claims only Cloudflare or this gateway may make: a client-sent one is dropped, never passed on. */
const CLAIM = /^(?:x-forwarded-|cf-|x-payg-)/;
const DROPPED = new Set([...HOP_BY_HOP, ...GATEWAY_ONLY]);

export interface ForwardedBy {
  /** The customer whose key was accepted. */
  customerId: string;
  /** The gateway's own request id. */
  requestId: string;
  /** The address Cloudflare saw (CF-Connecting-IP), if any. */
  clientIp: string | null;
}

/**
 * The headers the origin receives: the client's, minus hop-by-hop headers, the key and every
 * forwarding claim; plus what the gateway vouches for:
 * `X-Payg-Customer-Id`, `X-Request-Id`, `X-Payg-Client-Ip`, a client's own X-Request-Id as
 * `X-Client-Request-Id`, and with ORIGIN_SIGNING_SECRET, `X-Payg-Signature` over them.
 */
export async function originHeaders(incoming: Headers, by: ForwardedBy, signing: { secret: string | undefined; method: string; pathAndQuery: string }): Promise<Headers> {
  // One pass that copies only what may pass (cheaper than copying everything and deleting).
  const headers = new Headers();
  for (const [name, value] of incoming) {
    if (DROPPED.has(name) || CLAIM.test(name)) continue;
    headers.append(name, value);
  }
  const clientRequestId = incoming.get("x-request-id");
  if (clientRequestId) headers.set("x-client-request-id", clientRequestId);
  headers.set("x-payg-customer-id", by.customerId);
  headers.set("x-request-id", by.requestId);
  if (by.clientIp) headers.set("x-payg-client-ip", by.clientIp);
  if (signing.secret) {
    headers.set("x-payg-signature", await signOriginRequest(signing.secret, { method: signing.method, pathAndQuery: signing.pathAndQuery, ...by }));
  }
  return headers;
}
