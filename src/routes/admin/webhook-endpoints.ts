import { Hono } from "hono";
import { z } from "zod";
import { type AppEnv, webhookDispatcherStub } from "../../env";
import { jsonBody, queryInt } from "../../http";
import type { Config } from "../../lib/config";
import { ApiError } from "../../lib/errors";
import { WEBHOOK_EVENT_TYPES } from "../../lib/provider-webhook-events";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost"]);

const EndpointBody = z.strictObject({
  url: z.url({ protocol: /^https?$/ }).max(2048),
  events: z
    .array(z.enum(WEBHOOK_EVENT_TYPES))
    .min(1, "list at least one event type, or leave events out for all of them")
    .refine((events) => new Set(events).size === events.length, "event types must not repeat")
    .optional(),
  description: z.string().max(500).optional(),
});

/** How long the replaced secret keeps signing after a rotation, by default (a day). */
export const DEFAULT_ROTATION_OVERLAP_SECONDS = 86_400;

const RotateBody = z.strictObject({
  rotation_overlap_seconds: z
    .int()
    .min(0)
    .max(7 * 86_400)
    .default(DEFAULT_ROTATION_OVERLAP_SECONDS),
});

const DeliveryStatus = z.enum(["pending", "succeeded", "failed"]);

/** https always; plain http only to this machine, and only with ALLOW_INSECURE_WEBHOOKS. */
function checkEndpointUrl(raw: string, config: Config): string {
  const url = new URL(raw);
  if (url.protocol === "https:") return url.href;
  if (config.ALLOW_INSECURE_WEBHOOKS && LOOPBACK_HOSTS.has(url.hostname)) return url.href;
  throw new ApiError(
    "invalid_request",
    config.ALLOW_INSECURE_WEBHOOKS
      ? "url: webhook endpoints must use https (http is allowed only for 127.0.0.1 and localhost)."
      : "url: webhook endpoints must use https (http://127.0.0.1 and http://localhost need ALLOW_INSECURE_WEBHOOKS).",
  );
}

function endpointNotFound(id: string): never {
  throw new ApiError("not_found", `No webhook endpoint ${id}.`);
}

/** `/admin/webhook-endpoints…`: where the gateway sends its signed webhooks, and how each delivery went. */
export const webhookEndpoints = new Hono<AppEnv>();

webhookEndpoints.post("/webhook-endpoints", async (c) => {
  const body = await jsonBody(c, EndpointBody);
  const url = checkEndpointUrl(body.url, c.var.config);
  const created = await webhookDispatcherStub(c.env).createEndpoint({ url, events: body.events ?? null, description: body.description ?? null });
  if ("error" in created) throw new ApiError("conflict", "This gateway already has the most webhook endpoints it allows (16); delete one first.");
  return c.json(created, 201);
});

webhookEndpoints.get("/webhook-endpoints", async (c) => {
  return c.json({ endpoints: await webhookDispatcherStub(c.env).listEndpoints() });
});

webhookEndpoints.get("/webhook-endpoints/:id", async (c) => {
  const id = c.req.param("id");
  return c.json((await webhookDispatcherStub(c.env).getEndpoint(id)) ?? endpointNotFound(id));
});

webhookEndpoints.delete("/webhook-endpoints/:id", async (c) => {
  const id = c.req.param("id");
  if (!(await webhookDispatcherStub(c.env).deleteEndpoint(id))) endpointNotFound(id);
  return c.body(null, 204);
});

/**
 * Starts a secret rotation: the new secret is answered once; every delivery is signed with the new
 * and the old secret for `rotation_overlap_seconds` (default 86,400), then with the new one only.
 */
webhookEndpoints.post("/webhook-endpoints/:id/rotate-secret", async (c) => {
  const id = c.req.param("id");
  const body = await jsonBody(c, RotateBody);
  return c.json((await webhookDispatcherStub(c.env).rotateSecret(id, body.rotation_overlap_seconds)) ?? endpointNotFound(id));
});

webhookEndpoints.get("/webhook-endpoints/:id/deliveries", async (c) => {
  const id = c.req.param("id");
  const limit = queryInt(c, "limit", 50, 1, 500);
  const cursor = c.req.query("cursor") === undefined ? undefined : queryInt(c, "cursor", 1, 1, Number.MAX_SAFE_INTEGER);
  const status = c.req.query("status");
  const parsed = status === undefined ? undefined : DeliveryStatus.safeParse(status);
  if (parsed && !parsed.success) throw new ApiError("invalid_request", "status must be pending, succeeded or failed.");
  const page = await webhookDispatcherStub(c.env).deliveries(id, {
    limit,
    ...(cursor ? { before: cursor } : {}),
    ...(parsed?.data ? { status: parsed.data } : {}),
  });
  return c.json(page ?? endpointNotFound(id));
});

webhookEndpoints.post("/webhook-endpoints/:id/deliveries/:deliveryId/redeliver", async (c) => {
  const id = c.req.param("id");
  const dispatcher = webhookDispatcherStub(c.env);
  if (!(await dispatcher.getEndpoint(id))) endpointNotFound(id);
  const delivery = await dispatcher.redeliver(id, c.req.param("deliveryId"));
  if (!delivery) throw new ApiError("not_found", `No delivery ${c.req.param("deliveryId")} for webhook endpoint ${id}.`);
  return c.json(delivery, 202);
});
