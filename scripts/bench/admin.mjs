// The gateway's admin API as the bench uses it: customers, keys, credits and balances.
import http from "node:http";
import { ADMIN_TOKEN } from "./workers.mjs";

export function adminClient(base, host = "gateway.bench") {
  const url = new URL(base);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  return (method, path, body, extraHeaders = {}) =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
      const req = http.request(
        {
          agent,
          hostname: url.hostname,
          port: url.port,
          path,
          method,
          headers: { host, authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json", ...extraHeaders },
        },
        (res) => {
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString();
            resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null });
          });
        },
      );
      req.on("error", reject);
      req.end(payload);
    });
}

export async function inBatches(items, size, fn) {
  const out = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

/** Creates the customers (with `cents` of credit, if any) and one key each; returns the keys. */
export async function createCustomers(adminCall, ids, cents) {
  return inBatches(ids, 32, async (id) => {
    await adminCall("PUT", `/admin/customers/${id}`, { name: "Bench Customer", email: `${id}@example.com` });
    const key = (await adminCall("POST", `/admin/customers/${id}/keys`, {})).body.key;
    if (cents) await adminCall("POST", `/admin/customers/${id}/credits`, { amount: cents, reason: "bench" });
    return key;
  });
}

/** "12.345678" cents as integer micro-cents (the gateway's exact strings have at most 6 decimals). */
export function exactMicros(cents) {
  const [whole, fraction = ""] = cents.replace("-", "").split(".");
  const micros = Number(whole) * 1_000_000 + Number(fraction.padEnd(6, "0"));
  return cents.startsWith("-") ? -micros : micros;
}
