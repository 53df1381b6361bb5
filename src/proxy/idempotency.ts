import type { customerStub } from "../env";
import { sha256Hex } from "../lib/api-key-format";
import { ApiError } from "../lib/errors";

/**
 * The client's `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): a string of 1-255
 * printable characters, optionally sent quoted as a structured-field string.
 */
export function idempotencyKeyOf(headers: Headers): string | null {
  const raw = headers.get("idempotency-key");
  if (raw === null) return null;
  const key = /^"(.*)"$/.exec(raw.trim())?.[1] ?? raw.trim();
  if (!/^[\x21-\x7e]{1,255}$/.test(key)) {
    throw new ApiError("invalid_request", "Idempotency-Key must be 1-255 printable characters.");
  }
  return key;
}

/** Same key, same request: method, path with query, and body (hashed). */
export async function requestFingerprint(method: string, pathAndQuery: string, body: ArrayBuffer | null): Promise<string> {
  const bodyHash = body ? [...new Uint8Array(await crypto.subtle.digest("SHA-256", body))].map((b) => b.toString(16).padStart(2, "0")).join("") : "";
  return sha256Hex(`${method}\n${pathAndQuery}\n${bodyHash}`);
}

/** Reads a request body whole (for a fingerprint or a hold taken from it), refusing one past `limit` bytes. */
export async function readBodyWithin(request: Request, limit: number): Promise<ArrayBuffer | null> {
  if (request.method === "GET" || request.method === "HEAD" || request.body === null) return null;
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (declared > limit) throw new ApiError("payload_too_large", `This request's body must be at most ${limit} bytes here.`);
  const body = await request.arrayBuffer();
  if (body.byteLength > limit) throw new ApiError("payload_too_large", `This request's body must be at most ${limit} bytes here.`);
  return body;
}

/** Reads a body up to `limit` bytes: the bytes, or null when it is longer (the rest is discarded). */
export async function readUpTo(body: ReadableStream<Uint8Array> | null, limit: number): Promise<ArrayBuffer | null> {
  if (!body) return new ArrayBuffer(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out.buffer;
}

type Stub = ReturnType<typeof customerStub>;
/** What becomes of a request's Idempotency-Key once it is answered (the object's finishIdempotent). */
export type IdempotentOutcome = Parameters<Stub["finishIdempotent"]>[0]["outcome"];

/** The answer kept for a retry under the same key, as first sent, marked as replayed. */
export function replayedResponse(stored: { status: number; headers: string[][]; body: ArrayBuffer }): Response {
  const replayed = new Response(stored.body, { status: stored.status, headers: stored.headers as [string, string][] });
  replayed.headers.set("idempotent-replayed", "true");
  return replayed;
}

/** Under an Idempotency-Key: the response is stored as sent (status, headers, body up to `maxBytes`). */
export function keepForReplay(
  response: Response,
  streamed: boolean,
  maxBytes: number,
  finish: (outcome: IdempotentOutcome) => void,
  waitUntil: (promise: Promise<unknown>) => void,
): Response {
  if (streamed || !response.body) {
    finish(streamed ? "not_replayable" : { status: response.status, headers: [...response.headers], body: new ArrayBuffer(0) });
    return response;
  }
  const [toClient, toStore] = response.body.tee();
  const stored = new Response(toClient, response);
  const headers = [...stored.headers];
  // Kept alive past the response: once the client has its last byte, the invocation would end.
  waitUntil(
    readUpTo(toStore, maxBytes).then(
      (bytes) => finish(bytes === null ? "not_replayable" : { status: response.status, headers, body: bytes }),
      () => finish("not_replayable"),
    ),
  );
  return stored;
}
