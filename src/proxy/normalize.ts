import { ApiError } from "../errors";

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * The one spelling of a request path that is both priced and forwarded (RFC 3986 normalization):
 * percent-encoded unreserved characters decoded and other escapes upper-cased, repeated slashes
 * collapsed, dot segments resolved (never above the root). An encoded slash or backslash, a NUL
 * or a broken escape has no single meaning across origins, so it is refused with 400.
 */
export function normalizePath(path: string): string {
  if (path.includes("\\") || path.includes("\0")) throw invalid("a backslash or NUL");
  const decoded = path.replace(/%(.{0,2})/g, (_escape, hex: string) => {
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw invalid("a broken percent-escape");
    const char = String.fromCharCode(parseInt(hex, 16));
    if (char === "/" || char === "\\" || char === "\0") throw invalid("an encoded slash, backslash or NUL (%2F, %5C, %00)");
    return UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`;
  });
  const segments = decoded.split("/");
  const out: string[] = [];
  for (const segment of segments) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") out.pop();
    else out.push(segment);
  }
  // "/a/", "/a/." and "/a/b/.." all name a directory: keep the trailing slash.
  const last = segments[segments.length - 1];
  const trailing = out.length > 0 && segments.length > 1 && (last === "" || last === "." || last === "..");
  return "/" + out.join("/") + (trailing ? "/" : "");
}

function invalid(what: string): ApiError {
  return new ApiError("invalid_request", `The request path contains ${what}; the gateway does not forward it.`);
}
