import { ApiError } from "../lib/errors";

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/** What a `;` in a path segment is to the gateway (`PRICING.path_parameters`). */
export type PathParameters = "reject" | "keep";

export interface NormalizedPath {
  /** Priced and checked against the reserved prefixes: each segment without its `;` parameters. */
  route: string;
  /** Forwarded: the same segments, each with the parameters it was sent with. */
  forwarded: string;
}

/**
 * The one spelling of a request path (RFC 3986 normalization): percent-encoded unreserved
 * characters decoded and other escapes upper-cased, repeated slashes collapsed, dot segments
 * resolved (never above the root). An encoded slash or backslash, a NUL or a broken escape has no
 * single meaning across origins, so it is refused with 400.
 *
 * Tomcat, Jetty and Spring drop the `;` parameters of each segment before they route, so there
 * `/v1/x;v=1` is `/v1/x` and `/..;/admin` is `/admin`. With "reject" a `;` is refused with 400;
 * with "keep" a segment is priced, matched and dot-resolved by its name before the `;`, and
 * forwarded with its parameters. An encoded `%3B` is no delimiter to those servers: it stays in
 * the segment's name.
 */
export function normalizePath(path: string, parameters: PathParameters): NormalizedPath {
  if (path.includes("\\") || path.includes("\0")) throw invalid("a backslash or NUL");
  if (parameters === "reject" && path.includes(";")) {
    throw invalid("a ';' (a path parameter: many origins drop it before routing, so the path would be priced as another one)");
  }
  const decoded = path.replace(/%(.{0,2})/g, (_escape, hex: string) => {
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw invalid("a broken percent-escape");
    const char = String.fromCharCode(parseInt(hex, 16));
    if (char === "/" || char === "\\" || char === "\0") throw invalid("an encoded slash, backslash or NUL (%2F, %5C, %00)");
    return UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`;
  });
  const segments = decoded.split("/");
  const route: string[] = [];
  const forward: string[] = [];
  let name = "";
  for (const segment of segments) {
    const end = segment.indexOf(";");
    name = end === -1 ? segment : segment.slice(0, end);
    // A segment of parameters only ("/a/;x/b") is an empty one, collapsed like "//".
    if (name === "" || name === ".") continue;
    if (name === "..") {
      route.pop();
      forward.pop();
    } else {
      route.push(name);
      forward.push(segment);
    }
  }
  // "/a/", "/a/." and "/a/b/.." all name a directory: keep the trailing slash.
  const trailing = route.length > 0 && segments.length > 1 && (name === "" || name === "." || name === "..") ? "/" : "";
  return { route: `/${route.join("/")}${trailing}`, forwarded: `/${forward.join("/")}${trailing}` };
}

function invalid(what: string): ApiError {
  return new ApiError("invalid_request", `The request path contains ${what}; the gateway does not forward it.`);
}
