import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { serializeSigned } from "hono/utils/cookie";
import { describe, expect, it } from "vitest";
import { parsePortalLinkToken, portalLinkMacMatches, sha256Hex } from "../../../src/lib/api-key-format";
import { getConfig } from "../../../src/lib/config";
import { derivedKey, type KeyPurpose, purposeMac } from "../../../src/lib/derived-keys";
import { unsubscribeToken, verifyUnsubscribeToken } from "../../../src/lib/email/unsubscribe";
import { authenticateKey } from "../../../src/middleware/api-key";
import { hmacHex } from "../../../src/verify/payg-signature";
import { sessionSecret } from "../../../src/web/session";
import { ADMIN_TOKEN, admin, customerStub, customerWithCredit, echoOrigin, gateway, uniqueId, withKey } from "../helpers";

const KEY_SIGNING_SECRET = "test-key-signing-secret-0123456789abcdef";
const PURPOSES: KeyPurpose[] = ["api-key", "portal-link", "dashboard-session", "portal-session", "unsubscribe"];

async function linkToken(customerId: string): Promise<string> {
  const { url } = (await admin("POST", `/customers/${customerId}/portal-sessions`, {})).body;
  return new URL(url).searchParams.get("token")!;
}

/** A random 43-character secret, as keys and links carry. */
const secretPart = () =>
  btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");

describe("one key per purpose", () => {
  it("derives a distinct, stable key for each purpose, none of them the secret or its plain HMAC", async () => {
    const keys = await Promise.all(PURPOSES.map((p) => derivedKey(KEY_SIGNING_SECRET, p)));
    expect(new Set(keys).size).toBe(PURPOSES.length);
    expect(await derivedKey(KEY_SIGNING_SECRET, "api-key")).toBe(keys[0]);
    expect(keys.every((k) => /^[0-9a-f]{64}$/.test(k))).toBe(true);
    // HKDF, not HMAC(secret, label): a MAC published under the raw secret is never a derived key.
    for (const [i, purpose] of PURPOSES.entries()) expect(keys[i]).not.toBe(await hmacHex(KEY_SIGNING_SECRET, `payg-edge-gateway ${purpose} v1`));
    expect(await purposeMac(KEY_SIGNING_SECRET, "api-key", "m")).not.toBe(await purposeMac(KEY_SIGNING_SECRET, "portal-link", "m"));
  });

  it("a portal link is no API key: with the prefix added it is refused at the worker, and a key is no portal link", async () => {
    echoOrigin();
    const { id, key } = await customerWithCredit(10);
    const token = await linkToken(id);
    const config = getConfig(env);
    await expect(authenticateKey(`payg_${token}`, config)).rejects.toMatchObject({ code: "invalid_api_key" });
    const proxied = await gateway("/v1/x", withKey(`payg_${token}`));
    expect(proxied.status).toBe(401);
    expect(await portalLinkMacMatches(parsePortalLinkToken(key.slice("payg_".length))!, KEY_SIGNING_SECRET)).toBe(false);
    expect(await portalLinkMacMatches(parsePortalLinkToken(token)!, KEY_SIGNING_SECRET)).toBe(true);
    expect((await gateway(`/portal/enter?token=${key.slice("payg_".length)}`)).status).toBe(410);
  });

  it("API keys signed before keys had their own derivation keep working; links signed that way no longer open", async () => {
    echoOrigin();
    const { id } = await customerWithCredit(10);
    const body = `payg_${id}.${secretPart()}`;
    const old = `${body}.${(await hmacHex(KEY_SIGNING_SECRET, body)).slice(0, 32)}`;
    const linkBody = `${id}.${secretPart()}`;
    const oldLink = `${linkBody}.${(await hmacHex(KEY_SIGNING_SECRET, `payg_${linkBody}`)).slice(0, 32)}`;
    const stub = customerStub(id);
    await runInDurableObject(stub, async (_instance, state) => {
      const sql = state.storage.sql;
      sql.exec(
        "INSERT INTO api_keys (id, hash, prefix, name, created_at, signed) VALUES (?, ?, ?, ?, ?, 1)",
        "key_old",
        await sha256Hex(old),
        old.slice(0, old.indexOf(".") + 5),
        "old",
        Date.now(),
      );
      sql.exec("INSERT INTO portal_links (hash, expires_at, created_at) VALUES (?, ?, ?)", await sha256Hex(oldLink), Date.now() + 600_000, Date.now());
    });
    await evictDurableObject(stub);
    expect((await gateway("/v1/x", withKey(old))).status).toBe(200);
    // The link's row is there and unused: the worker refuses its mac before the object is asked.
    expect((await gateway(`/portal/enter?token=${oldLink}`)).status).toBe(410);
    const newKey = (await admin("POST", `/customers/${id}/keys`, {})).body.key as string;
    const newBody = newKey.slice(0, newKey.lastIndexOf("."));
    expect(newKey.slice(newKey.lastIndexOf(".") + 1)).toBe((await purposeMac(KEY_SIGNING_SECRET, "api-key", newBody)).slice(0, 32));
  });

  it("each kind of session has its own key: a portal session signed with the dashboard's key opens nothing", async () => {
    const { id } = await customerWithCredit(10, { name: "Session Kinds" });
    const config = getConfig(env);
    const payload = { kind: "portal", customerId: id, exp: Date.now() + 3600_000, sid: "s".repeat(48), csrf: "c".repeat(48) };
    const value = btoa(JSON.stringify(payload)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    const cookie = async (key: string) => (await serializeSigned("payg_portal", value, key)).split(";")[0]!;
    const withDashboardKey = await gateway("/portal", { headers: { cookie: await cookie((await sessionSecret(config, "admin"))!) } });
    expect(await withDashboardKey.text()).not.toContain("Session Kinds");
    expect(await (await gateway("/portal", { headers: { cookie: await cookie((await sessionSecret(config, "portal"))!) } })).text()).toContain("Session Kinds");
    // Nor is either the key of before (an HMAC of a label under the admin token).
    const before = await hmacHex(ADMIN_TOKEN, "payg-edge-gateway session key v1");
    expect(await (await gateway("/portal", { headers: { cookie: await cookie(before) } })).text()).not.toContain("Session Kinds");
  });

  it("unsubscribe links: new ones use their own key, ones already sent in emails keep verifying", async () => {
    const config = getConfig(env);
    const id = uniqueId();
    const token = await unsubscribeToken(config, id);
    expect(token).toBe(`${id}.${await purposeMac(ADMIN_TOKEN, "unsubscribe", id)}`);
    const sent = `${id}.${await hmacHex(ADMIN_TOKEN, `payg-edge-gateway.unsubscribe.v1.${id}`)}`;
    expect(sent).not.toBe(token);
    expect(await verifyUnsubscribeToken(config, token)).toBe(id);
    expect(await verifyUnsubscribeToken(config, sent)).toBe(id);
    // A MAC of the same id for another purpose is not an unsubscribe token.
    expect(await verifyUnsubscribeToken(config, `${id}.${await purposeMac(ADMIN_TOKEN, "portal-session", id)}`)).toBeNull();
  });
});
