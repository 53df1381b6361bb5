/**
 * Start-up checks of the email settings that zod cannot express field by field: the DKIM key is
 * in the format MailChannels expects, and every email can carry a working, signed unsubscribe link.
 */
export interface EmailVars {
  PUBLIC_URL?: string | undefined;
  ADMIN_TOKEN?: string | undefined;
  UNSUBSCRIBE_SIGNING_SECRET?: string | undefined;
  MAILCHANNELS_DKIM_DOMAIN?: string | undefined;
  MAILCHANNELS_DKIM_SELECTOR?: string | undefined;
  MAILCHANNELS_DKIM_PRIVATE_KEY?: string | undefined;
  EMAILS?: { templates: Record<string, unknown> } | undefined;
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

export function isLoopback(url: string): boolean {
  return LOOPBACK.has(new URL(url).hostname);
}

export function emailConfigProblems(vars: EmailVars): string[] {
  const problems: string[] = [];
  const dkim = [vars.MAILCHANNELS_DKIM_DOMAIN, vars.MAILCHANNELS_DKIM_SELECTOR, vars.MAILCHANNELS_DKIM_PRIVATE_KEY];
  if (dkim.some((v) => v !== undefined) && !dkim.every((v) => v !== undefined)) {
    problems.push("MAILCHANNELS_DKIM_DOMAIN, MAILCHANNELS_DKIM_SELECTOR and MAILCHANNELS_DKIM_PRIVATE_KEY: set all three secrets or none");
  }
  if (vars.MAILCHANNELS_DKIM_PRIVATE_KEY !== undefined) {
    const problem = dkimKeyProblem(vars.MAILCHANNELS_DKIM_PRIVATE_KEY);
    if (problem) problems.push(`MAILCHANNELS_DKIM_PRIVATE_KEY: ${problem}`);
  }
  if (vars.EMAILS && Object.keys(vars.EMAILS.templates).length > 0) {
    if (!vars.PUBLIC_URL) {
      problems.push("PUBLIC_URL: required when EMAILS has templates (every email links to <PUBLIC_URL>/email/unsubscribe)");
    } else if (!vars.PUBLIC_URL.startsWith("https:") && !isLoopback(vars.PUBLIC_URL)) {
      problems.push("PUBLIC_URL: must be https (List-Unsubscribe needs an https link), except on loopback for local development");
    }
    if (!vars.UNSUBSCRIBE_SIGNING_SECRET && !vars.ADMIN_TOKEN) {
      problems.push("UNSUBSCRIBE_SIGNING_SECRET: set it (or ADMIN_TOKEN, which signs unsubscribe links when it is unset) so emails can carry an unsubscribe link");
    }
  }
  return problems;
}

const DKIM_FORMAT = "must be the base64 of the DER private key on one line, with no PEM header lines (openssl rsa -outform der | openssl base64 -A)";

/**
 * MailChannels takes `dkim_private_key` as the base64 of the DER private key. This reads just
 * enough of the DER to tell a private key (PKCS#1 RSAPrivateKey or PKCS#8 PrivateKeyInfo, both a
 * SEQUENCE starting with INTEGER 0) from a PEM file, a public key, a certificate or noise.
 */
export function dkimKeyProblem(key: string): string | null {
  if (key.includes("-----")) return `is PEM (has -----BEGIN/END lines); ${DKIM_FORMAT}`;
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(key)) return `is not base64; ${DKIM_FORMAT}`;
  const der = Uint8Array.from(atob(key), (c) => c.charCodeAt(0));
  const outer = readTlv(der, 0);
  if (outer?.tag !== 0x30 || outer.end !== der.length) return `is not DER; ${DKIM_FORMAT}`;
  const version = readTlv(der, outer.start);
  const next = version && readTlv(der, version.end);
  const isVersionZero = version?.tag === 0x02 && version.end - version.start === 1 && der[version.start] === 0;
  // PKCS#1: INTEGER 0, INTEGER modulus, …  PKCS#8: INTEGER 0, SEQUENCE algorithm, OCTET STRING key.
  const pkcs1 = next?.tag === 0x02 && next.end - next.start >= 64;
  const pkcs8 = next?.tag === 0x30 && readTlv(der, next.end)?.tag === 0x04;
  if (!isVersionZero || !(pkcs1 || pkcs8)) return `is DER but not a private key (a public key or certificate?); ${DKIM_FORMAT}`;
  return null;
}

/** One DER tag-length-value at `offset`: the content runs from `start` to `end`. */
function readTlv(der: Uint8Array, offset: number): { tag: number; start: number; end: number } | null {
  if (offset + 2 > der.length) return null;
  const tag = der[offset]!;
  let length = der[offset + 1]!;
  let start = offset + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 3 || start + bytes > der.length) return null;
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + der[start + i]!;
    start += bytes;
  }
  return start + length <= der.length ? { tag, start, end: start + length } : null;
}
