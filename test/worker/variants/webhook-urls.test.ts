import { describe, expect, it } from "vitest";
import { admin } from "../helpers";

describe("webhook endpoint URLs without ALLOW_INSECURE_WEBHOOKS (as in production)", () => {
  it("refuses http, even to this machine, and accepts https", async () => {
    for (const url of ["http://127.0.0.1:8789/hook", "http://localhost/hook", "http://hooks.example.com/hook"]) {
      const refused = await admin("POST", "/webhook-endpoints", { url });
      expect(refused.status, url).toBe(400);
      expect(refused.body.error).toMatchObject({ code: "invalid_request", message: expect.stringMatching(/https.*ALLOW_INSECURE_WEBHOOKS/) });
    }
    expect((await admin("GET", "/webhook-endpoints")).body.endpoints).toEqual([]);

    const created = await admin("POST", "/webhook-endpoints", { url: "https://hooks.example.com/payg", events: ["report.failed"] });
    expect(created.status).toBe(201);
    expect((await admin("DELETE", `/webhook-endpoints/${created.body.id}`)).status).toBe(204);
  });
});
