/**
 * In-memory test double for the MailChannels Email API (`POST /tx/v1/send`), working at
 * the HTTP boundary with nothing but web-standard Request / Response / URL.
 *
 * - Inside workerd tests, wire it through MSW:
 *     http.all("https://mailchannels.test/*", ({ request }) => double.handle(request))
 * - For end-to-end tests, wrap `handle` in a plain Node http server.
 *
 * Confirmed by MailChannels' Email API docs (https://docs.mailchannels.net/email-api/, docs.mailchannels.com) and their
 * official SDK (github.com/mailchannels/mailchannels-email-api-sdk-js, src/types/emails/internal.ts):
 * - Endpoint `POST https://api.mailchannels.net/tx/v1/send`, key in the `X-Api-Key` header.
 * - Body shape (the SDK's EmailsSendPayload): `personalizations[]` of `{ to[], cc?, bcc?, from?,
 *   reply_to?, subject?, headers?, dynamic_template_data?, envelope_from?, dkim_domain?,
 *   dkim_selector?, dkim_private_key? }`; `from`; `subject`; `content[]` of `{ type, value,
 *   template_type? }`; optional top-level `headers`, `reply_to`, `attachments`, `campaign_id`,
 *   `tracking_settings`, `transactional`, `unsubscribe_settings`, `envelope_from`, `dkim_*`.
 * - Success is `202` with `{ request_id, results: [{ index, message_id, status: "sent" | "failed",
 *   reason? }] }` (the SDK's EmailsSendApiResponse): a 202 can still carry a per-message `failed`
 *   with a `reason` (fault kind `202_failed`). `200` only for `?dry-run=true` (nothing sent).
 * - Custom headers at top level `headers` or per personalization; "If the same header appears in
 *   both the top-level and personalization objects, the value from the header in the
 *   personalization is used" (docs.mailchannels.net/email-api/advanced/custom-headers).
 *   "MailChannels may reject certain headers to prevent abuse" (the same page), without a list:
 *   the double refuses, with 400 and matched case-insensitively, the headers that the payload's
 *   own fields or the mail system set (From, To, CC, BCC, Subject, Reply-To, Message-ID,
 *   Content-Type, Content-Transfer-Encoding, DKIM-Signature, Received, Authentication-Results). Each SentMessage records the effective headers (List-Unsubscribe, …).
 * - Content ordering: the docs say "text/plain must come first if you use it".
 * - Errors: 400 for a malformed body, missing field or invalid address; 403 for a missing or
 *   invalid key (or an unauthorised sending domain); 413 past 30 MB; 500/502 transient.
 *
 * Choices of this double (not confirmed by the docs found):
 * - Error body is `{ "errors": ["..."] }` (one string per problem; the SDK reads `errors[]` or
 *   `message`).
 * - Limits (at most 1000 personalizations, at most 1000 addresses in each of to/cc/bcc) are
 *   from memory of the API reference, not re-checked.
 * - Unknown fields are rejected (catches typos such as `dkim_domian`); every field the SDK's
 *   payload type lists is accepted, the ones this project does not use only loosely checked.
 * - Each content type may appear once; only text/plain and text/html are accepted.
 * - 429 (with `Retry-After: 1`) exists only as an injected fault; `202_failed` messages are not
 *   recorded in `sent` (they are in `failed`), their default `reason` is the double's wording.
 * - `message_id` is `<uuid@mailchannels.test>`, the Message-ID form MailChannels' own SDK simulator
 *   answers with (src/simulator/email-api.mjs); no `X-Request-Id` response header is sent (the
 *   request id is in the body).
 */
import { z } from "zod";

export const MAILCHANNELS_SEND_PATH = "/tx/v1/send";

export type MailChannelsFaultKind = "500" | "429" | "400" | "202_failed" | "timeout" | "drop_after_commit";

export interface MailChannelsFault {
  kind: MailChannelsFaultKind;
  /** How many consecutive send calls this fault applies to. Default 1. */
  times?: number;
  /** Only sends whose first recipient is this address (case-insensitive); default: any send. */
  to?: string;
  /** `reason` of the per-message failure of a `202_failed` fault. */
  reason?: string;
}

/** Headers the double refuses in `headers`, top level or per personalization (see above). */
export const RESERVED_HEADERS = [
  "from",
  "to",
  "cc",
  "bcc",
  "subject",
  "reply-to",
  "message-id",
  "content-type",
  "content-transfer-encoding",
  "dkim-signature",
  "received",
  "authentication-results",
];

/** One personalization of a sent message, with its effective headers (personalization wins). */
export interface SentPersonalization {
  to: string[];
  cc?: string[];
  bcc?: string[];
  headers: Record<string, string>;
}

export interface SentMessage {
  /** Every `to` address across all personalizations, in order. */
  to: string[];
  cc?: string[];
  bcc?: string[];
  from: string;
  subject: string;
  text?: string;
  html?: string;
  /** DKIM domain/selector of the first personalization that carries DKIM fields (or the top level's). */
  dkim?: { domain: string; selector: string };
  /** Effective custom headers of the first personalization (top level merged, personalization wins). */
  headers: Record<string, string>;
  /** Every personalization with its own effective headers. */
  personalizations: SentPersonalization[];
  receivedAt: number;
  requestId: string;
  /** The parsed request body, as sent. */
  body: MailChannelsSendBody;
}

export interface RequestLogEntry {
  method: string;
  path: string;
  /**
   * Status returned. `null` when the double never answered (timeout fault); `0` when the
   * response was a network error (`Response.error()`, drop_after_commit fault).
   */
  status: number | null;
  fault?: MailChannelsFaultKind;
  /** Parsed JSON body (or raw text if not JSON), when the body was read. */
  body?: unknown;
  /** The first `to` address of a send, when the body had one. */
  recipient?: string;
  receivedAt: number;
  /** Set for requests that produced a `request_id` (accepted messages). */
  requestId?: string;
}

export interface MailChannelsDoubleOptions {
  /** Value required in `X-Api-Key` (anything else, or none, is 403). Default "mc_test_key". */
  apiKey?: string;
  /** Clock, for `receivedAt`. Default `Date.now`. */
  now?: () => number;
}

/** A message MailChannels answered 202 for but reported `failed` (fault `202_failed`). */
export interface FailedMessage {
  to: string[];
  subject: string;
  reason: string;
  requestId: string;
  receivedAt: number;
}

// ---------------------------------------------------------------------------------------
// Request body schema
// ---------------------------------------------------------------------------------------

const MAX_PERSONALIZATIONS = 1000;
const MAX_ADDRESSES = 1000;

const emailAddress = z.strictObject({
  email: z.email({ error: "must be a valid email address" }),
  name: z.string().optional(),
});

const addressList = (min: number) =>
  z
    .array(emailAddress)
    .min(min, { error: "must contain at least one recipient" })
    .max(MAX_ADDRESSES, { error: `must contain at most ${MAX_ADDRESSES} recipients` });

const nonEmptyString = () => z.string({ error: "must be a string" }).min(1, { error: "must not be empty" });

const personalization = z
  .strictObject({
    to: addressList(1),
    cc: addressList(0).optional(),
    bcc: addressList(0).optional(),
    dkim_domain: nonEmptyString().optional(),
    dkim_selector: nonEmptyString().optional(),
    dkim_private_key: nonEmptyString().optional(),
    // Accepted by the real API, not used by this project: loosely checked.
    from: emailAddress.optional(),
    reply_to: emailAddress.optional(),
    subject: z.string().optional(),
    headers: z.record(z.string(), z.string()).optional(),
    dynamic_template_data: z.record(z.string(), z.unknown()).optional(),
    envelope_from: emailAddress.optional(),
  })
  .superRefine((p, ctx) => {
    const present = [p.dkim_domain, p.dkim_selector, p.dkim_private_key].filter((v) => v !== undefined).length;
    if (present !== 0 && present !== 3) {
      ctx.addIssue({
        code: "custom",
        message: "dkim_domain, dkim_selector and dkim_private_key must be given together",
      });
    }
  });

const contentPart = z.strictObject({
  type: z.enum(["text/plain", "text/html"], {
    error: 'must be "text/plain" or "text/html"',
  }),
  value: z.string({ error: "must be a string" }),
  template_type: z.literal("mustache").optional(),
});

const sendBody = z.strictObject({
  personalizations: z
    .array(personalization, { error: "must be an array" })
    .min(1, { error: "must contain at least one entry" })
    .max(MAX_PERSONALIZATIONS, {
      error: `must contain at most ${MAX_PERSONALIZATIONS} entries`,
    }),
  from: emailAddress,
  subject: nonEmptyString(),
  content: z
    .array(contentPart, { error: "must be an array" })
    .min(1, { error: "must contain at least one entry" })
    .superRefine((parts, ctx) => {
      const types = parts.map((p) => p.type);
      if (new Set(types).size !== types.length) {
        ctx.addIssue({ code: "custom", message: "each content type may appear only once" });
      }
      const plain = types.indexOf("text/plain");
      const html = types.indexOf("text/html");
      if (plain !== -1 && html !== -1 && plain > html) {
        ctx.addIssue({ code: "custom", message: "text/plain content must come before text/html" });
      }
    }),
  // Accepted by the real API, not used by this project: loosely checked.
  reply_to: emailAddress.optional(),
  headers: z.record(z.string(), z.string()).optional(),
  attachments: z.array(z.unknown()).optional(),
  tracking_settings: z.record(z.string(), z.unknown()).optional(),
  mailchannels: z.record(z.string(), z.unknown()).optional(),
  transactional: z.boolean().optional(),
  campaign_id: z.string().optional(),
  unsubscribe_settings: z.record(z.string(), z.unknown()).optional(),
  envelope_from: emailAddress.optional(),
  dkim_domain: nonEmptyString().optional(),
  dkim_selector: nonEmptyString().optional(),
  dkim_private_key: nonEmptyString().optional(),
});

export type MailChannelsSendBody = z.infer<typeof sendBody>;

/** Reserved headers named in `headers` (top level or per personalization), as error strings. */
function reservedHeaderProblems(body: MailChannelsSendBody): string[] {
  const problems: string[] = [];
  const check = (headers: Record<string, string> | undefined, where: string) => {
    for (const name of Object.keys(headers ?? {})) {
      if (RESERVED_HEADERS.includes(name.toLowerCase())) problems.push(`${where}: header ${name} is reserved and cannot be set`);
    }
  };
  check(body.headers, "headers");
  for (const [i, p] of body.personalizations.entries()) check(p.headers, `personalizations.${i}.headers`);
  return problems;
}

/** Top-level headers overridden by the personalization's, names compared case-insensitively. */
function effectiveHeaders(top: Record<string, string> | undefined, own: Record<string, string> | undefined): Record<string, string> {
  const byLower = new Map<string, [string, string]>();
  for (const [k, v] of Object.entries(top ?? {})) byLower.set(k.toLowerCase(), [k, v]);
  for (const [k, v] of Object.entries(own ?? {})) byLower.set(k.toLowerCase(), [k, v]);
  return Object.fromEntries(byLower.values());
}

function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join(".");
    return path ? `${path}: ${issue.message}` : issue.message;
  });
}

// ---------------------------------------------------------------------------------------
// The double
// ---------------------------------------------------------------------------------------

const JSON_HEADERS = { "content-type": "application/json" } as const;

function errorResponse(status: number, errors: string[], headers?: Record<string, string>) {
  return new Response(JSON.stringify({ errors }), {
    status,
    headers: { ...JSON_HEADERS, ...headers },
  });
}

/** MailChannels message ids look like RFC 5322 Message-IDs. */
function messageId(): string {
  return `<${crypto.randomUUID()}@mailchannels.test>`;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted.", "AbortError");
}

export class MailChannelsDouble {
  /** Accepted messages, in order. */
  readonly sent: SentMessage[] = [];
  /** Messages answered 202 with a per-message `failed` (fault `202_failed`), in order. */
  readonly failed: FailedMessage[] = [];
  /** Every call, in order. */
  readonly requests: RequestLogEntry[] = [];

  readonly apiKey: string;
  private readonly now: () => number;
  /** Pending faults, each with its remaining count. */
  private faults: Array<{ kind: MailChannelsFaultKind; remaining: number; to?: string; reason?: string }> = [];
  /** Rejecters of requests currently hung by a timeout fault. */
  private readonly hung = new Set<(reason: unknown) => void>();

  constructor(options: MailChannelsDoubleOptions = {}) {
    this.apiKey = options.apiKey ?? "mc_test_key";
    this.now = options.now ?? (() => Date.now());
  }

  /** Queue a fault; faults are consumed in order, one per authenticated send call. */
  inject(fault: MailChannelsFault): this {
    const times = fault.times ?? 1;
    if (!Number.isInteger(times) || times < 1) {
      throw new RangeError(`inject: times must be a positive integer, got ${String(times)}`);
    }
    this.faults.push({
      kind: fault.kind,
      remaining: times,
      ...(fault.to ? { to: fault.to.toLowerCase() } : {}),
      ...(fault.reason ? { reason: fault.reason } : {}),
    });
    return this;
  }

  /** Drop all queued faults. */
  clearFaults(): void {
    this.faults = [];
  }

  /** Number of fault applications still queued. */
  get pendingFaults(): number {
    return this.faults.reduce((n, f) => n + f.remaining, 0);
  }

  /** Requests currently hung by a timeout fault. */
  get hungRequests(): number {
    return this.hung.size;
  }

  /** Reject every request hung by a timeout fault (e.g. before closing a server). */
  releaseHung(reason: unknown = new Error("MailChannelsDouble: hung request released")): void {
    for (const reject of [...this.hung]) reject(reason);
    this.hung.clear();
  }

  /** Forget sent messages, the request log and faults; release hung requests. */
  reset(): void {
    this.sent.length = 0;
    this.failed.length = 0;
    this.requests.length = 0;
    this.clearFaults();
    this.releaseHung();
  }

  /** Accepted messages addressed (to, cc or bcc) to `email`, case-insensitively. */
  sentTo(email: string): SentMessage[] {
    const wanted = email.trim().toLowerCase();
    return this.sent.filter((m) => [...m.to, ...(m.cc ?? []), ...(m.bcc ?? [])].some((a) => a.toLowerCase() === wanted));
  }

  async handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const entry: RequestLogEntry = {
      method: request.method,
      path: url.pathname,
      status: null,
      receivedAt: this.now(),
    };
    this.requests.push(entry);
    const answer = (response: Response): Response => {
      entry.status = response.status;
      return response;
    };

    if (url.pathname !== MAILCHANNELS_SEND_PATH) {
      return answer(errorResponse(404, ["not found"]));
    }
    if (request.method !== "POST") {
      return answer(errorResponse(405, ["method not allowed"], { allow: "POST" }));
    }
    if (request.headers.get("x-api-key") !== this.apiKey) {
      return answer(errorResponse(403, [request.headers.has("x-api-key") ? "invalid API key" : "missing X-Api-Key header"]));
    }

    const raw = await request.text();
    let recipient: string | undefined;
    try {
      recipient = String(JSON.parse(raw)?.personalizations?.[0]?.to?.[0]?.email ?? "").toLowerCase();
    } catch {
      recipient = undefined;
    }
    if (recipient) entry.recipient = recipient;
    const taken = this.takeFault(recipient);
    const fault = taken?.kind;
    if (fault) entry.fault = fault;

    if (fault === "timeout") {
      return this.hang(request.signal);
    }

    let parsed: unknown;
    let isJson = true;
    try {
      parsed = JSON.parse(raw);
    } catch {
      isJson = false;
      parsed = raw;
    }
    entry.body = parsed;

    switch (fault) {
      case "500":
        return answer(errorResponse(500, ["internal server error (injected fault)"]));
      case "429":
        return answer(errorResponse(429, ["too many requests (injected fault)"], { "retry-after": "1" }));
      case "400":
        return answer(errorResponse(400, ["message rejected (injected fault)"]));
      default:
        break;
    }

    if (!isJson) {
      return answer(errorResponse(400, ["request body must be valid JSON"]));
    }
    const result = sendBody.safeParse(parsed);
    if (!result.success) {
      return answer(errorResponse(400, formatIssues(result.error)));
    }
    const reserved = reservedHeaderProblems(result.data);
    if (reserved.length > 0) return answer(errorResponse(400, reserved));

    // Not sent: the real API renders and returns the message on `?dry-run=true`.
    if (url.searchParams.get("dry-run") === "true") {
      return answer(new Response(JSON.stringify({ data: [] }), { status: 200, headers: JSON_HEADERS }));
    }

    const requestId = crypto.randomUUID();
    entry.requestId = requestId;

    if (fault === "202_failed") {
      // Accepted as a request, but MailChannels reports every message of it as failed.
      const reason = taken?.reason ?? "message rejected (injected fault)";
      const body = result.data;
      this.failed.push({
        to: body.personalizations.flatMap((p) => p.to.map((a) => a.email)),
        subject: body.subject,
        reason,
        requestId,
        receivedAt: entry.receivedAt,
      });
      const results = body.personalizations.map((_, index) => ({ index, message_id: messageId(), status: "failed", reason }));
      return answer(new Response(JSON.stringify({ request_id: requestId, results }), { status: 202, headers: JSON_HEADERS }));
    }

    this.sent.push(this.record(result.data, requestId, entry.receivedAt));

    if (fault === "drop_after_commit") {
      // MailChannels accepted the message; the answer is lost on the way back.
      return answer(Response.error());
    }

    const results = result.data.personalizations.map((_, index) => ({
      index,
      message_id: messageId(),
      status: "sent",
    }));
    return answer(
      new Response(JSON.stringify({ request_id: requestId, results }), {
        status: 202,
        headers: JSON_HEADERS,
      }),
    );
  }

  private takeFault(recipient: string | undefined): { kind: MailChannelsFaultKind; reason?: string } | undefined {
    const index = this.faults.findIndex((f) => f.to === undefined || f.to === recipient);
    const fault = this.faults[index];
    if (!fault) return undefined;
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.faults.splice(index, 1);
    return fault;
  }

  /** Never answer: settle only when the caller aborts (or `releaseHung`/`reset`), by rejecting. */
  private hang(signal: AbortSignal): Promise<Response> {
    return new Promise<Response>((_resolve, reject) => {
      if (signal.aborted) {
        reject(abortReason(signal));
        return;
      }
      const release = (reason: unknown) => {
        signal.removeEventListener("abort", onAbort);
        this.hung.delete(release);
        reject(reason);
      };
      const onAbort = () => release(abortReason(signal));
      signal.addEventListener("abort", onAbort, { once: true });
      this.hung.add(release);
    });
  }

  private record(body: MailChannelsSendBody, requestId: string, receivedAt: number): SentMessage {
    const ps = body.personalizations;
    const to = ps.flatMap((p) => p.to.map((a) => a.email));
    const cc = ps.flatMap((p) => (p.cc ?? []).map((a) => a.email));
    const bcc = ps.flatMap((p) => (p.bcc ?? []).map((a) => a.email));
    const dkimSource = ps.find((p) => p.dkim_domain !== undefined) ?? (body.dkim_domain !== undefined ? body : undefined);
    const text = body.content.find((c) => c.type === "text/plain")?.value;
    const html = body.content.find((c) => c.type === "text/html")?.value;

    const personalizations = ps.map((p) => {
      const out: SentPersonalization = { to: p.to.map((a) => a.email), headers: effectiveHeaders(body.headers, p.headers) };
      if (p.cc?.length) out.cc = p.cc.map((a) => a.email);
      if (p.bcc?.length) out.bcc = p.bcc.map((a) => a.email);
      return out;
    });
    const message: SentMessage = {
      to,
      from: body.from.email,
      subject: body.subject,
      headers: personalizations[0]?.headers ?? {},
      personalizations,
      receivedAt,
      requestId,
      body,
    };
    if (cc.length > 0) message.cc = cc;
    if (bcc.length > 0) message.bcc = bcc;
    if (text !== undefined) message.text = text;
    if (html !== undefined) message.html = html;
    if (dkimSource?.dkim_domain !== undefined && dkimSource.dkim_selector !== undefined) {
      message.dkim = { domain: dkimSource.dkim_domain, selector: dkimSource.dkim_selector };
    }
    return message;
  }
}
