import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/lib/config";
import { connect } from "../connected/doubles";
import { admin, envProblems } from "../helpers";

/** This project's DKIM key: generated for the run by vitest.config.ts, base64 of the PKCS#1 DER. */
const configuredKey = (env as unknown as { MAILCHANNELS_DKIM_PRIVATE_KEY: string }).MAILCHANNELS_DKIM_PRIVATE_KEY;

const base64 = (bytes: ArrayBuffer) => btoa(String.fromCharCode(...new Uint8Array(bytes)));

async function rsaKeys() {
  const pair = (await crypto.subtle.generateKey({ name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  return {
    pkcs8: base64((await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer),
    spki: base64((await crypto.subtle.exportKey("spki", pair.publicKey)) as ArrayBuffer),
  };
}

const problems = envProblems;

describe("DKIM", () => {
  it("signs with the configured domain, selector and private key", async () => {
    const { mail } = connect();
    expect((await admin("POST", "/emails/test", { template: "out_of_credits", to: "dkim@example.com" })).status).toBe(202);
    const [message] = mail.sentTo("dkim@example.com");
    expect(message!.dkim).toMatchObject({ domain: "example.com", selector: "mcdkim" });
    const body = mail.requests.find((r) => r.recipient === "dkim@example.com")!.body as any;
    expect(body.personalizations[0].dkim_private_key).toBe(configuredKey);
    // Test emails look like the real ones: the List-Unsubscribe headers sit beside the DKIM fields.
    expect(body.personalizations[0].headers).toMatchObject({ "List-Unsubscribe-Post": "List-Unsubscribe=One-Click" });
  });

  it("checks the private key at start-up: base64 of a DER private key (PKCS#1 or PKCS#8), no PEM lines", async () => {
    const { pkcs8, spki } = await rsaKeys();
    expect(problems({})).toEqual([]);
    expect(problems({ MAILCHANNELS_DKIM_PRIVATE_KEY: pkcs8 })).toEqual([]);
    // Wrapped over lines as `base64` prints it: the same key, sent as one line.
    const wrapped = `${pkcs8.replace(/(.{76})/g, "$1\n")}\n`;
    expect(parseConfig({ ...(env as unknown as Record<string, unknown>), MAILCHANNELS_DKIM_PRIVATE_KEY: wrapped }).MAILCHANNELS_DKIM_PRIVATE_KEY).toBe(pkcs8);

    const pem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.replace(/(.{64})/g, "$1\n")}\n-----END PRIVATE KEY-----\n`;
    expect(problems({ MAILCHANNELS_DKIM_PRIVATE_KEY: pem })).toEqual([expect.stringMatching(/^MAILCHANNELS_DKIM_PRIVATE_KEY: is PEM .*no PEM header lines/)]);
    expect(problems({ MAILCHANNELS_DKIM_PRIVATE_KEY: "not a key!" })).toEqual([expect.stringMatching(/^MAILCHANNELS_DKIM_PRIVATE_KEY: is not base64/)]);
    expect(problems({ MAILCHANNELS_DKIM_PRIVATE_KEY: "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-test-key" })).toEqual([
      expect.stringMatching(/^MAILCHANNELS_DKIM_PRIVATE_KEY: is not base64/),
    ]);
    expect(problems({ MAILCHANNELS_DKIM_PRIVATE_KEY: btoa("just some text, base64 encoded") })).toEqual([expect.stringMatching(/^MAILCHANNELS_DKIM_PRIVATE_KEY: is not DER/)]);
    expect(problems({ MAILCHANNELS_DKIM_PRIVATE_KEY: spki })).toEqual([expect.stringMatching(/^MAILCHANNELS_DKIM_PRIVATE_KEY: is DER but not a private key/)]);
    // A truncated key is not DER any more.
    expect(problems({ MAILCHANNELS_DKIM_PRIVATE_KEY: configuredKey.slice(0, 400) })).toEqual([expect.stringMatching(/^MAILCHANNELS_DKIM_PRIVATE_KEY: is not DER/)]);
    expect(problems({ MAILCHANNELS_DKIM_SELECTOR: "" })).toEqual([expect.stringMatching(/set all three secrets or none/)]);
  });
});
