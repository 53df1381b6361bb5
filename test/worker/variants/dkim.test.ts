import { describe, expect, it } from "vitest";
import { connect } from "../connected/doubles";
import { admin } from "../helpers";

describe("DKIM", () => {
  it("signs with the configured domain, selector and private key", async () => {
    const { mail } = connect();
    expect((await admin("POST", "/emails/test", { template: "out_of_credits", to: "dkim@example.com" })).status).toBe(202);
    const [message] = mail.sentTo("dkim@example.com");
    expect(message!.dkim).toMatchObject({ domain: "example.com", selector: "mcdkim" });
    const body = mail.requests.find((r) => r.recipient === "dkim@example.com")!.body as any;
    expect(body.personalizations[0].dkim_private_key).toBe("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-test-key");
  });
});
