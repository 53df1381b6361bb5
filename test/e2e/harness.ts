import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type Stripe from "stripe";
import { expect } from "vitest";
import type { StripeDouble } from "../doubles/stripe-double";

const root = join(import.meta.dirname, "..", "..");
export const ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef";

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface Gateway {
  url: string;
  logs: string[];
  fetch(path: string, init?: RequestInit): Promise<Response>;
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** Runs the cron trigger once, as Cloudflare would at `time` (ms since the epoch). */
  scheduled(time?: number): Promise<void>;
  /** Waits until the directory lists the customer as due by `by` (its object tells it from an alarm, within milliseconds). */
  untilDue(customerId: string, by?: number): Promise<void>;
  /**
   * Runs the cron until the customer has no report left unsent, as Cloudflare's next runs would:
   * with a sandbox key the Stripe budget allows 10 calls a second, so a visit may find none left.
   */
  untilReported(customerId: string): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the real `wrangler dev` (workerd, local Durable Object storage in a fresh folder). */
export async function startGateway(options: { vars?: Record<string, string>; secrets?: Record<string, string> } = {}): Promise<Gateway> {
  const port = await freePort();
  const inspector = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "payg-e2e-"));
  const envFile = join(dir, ".env");
  const secrets = { ADMIN_TOKEN, ...options.secrets };
  writeFileSync(
    envFile,
    `${Object.entries(secrets)
      .map(([k, v]) => `${k}=${v}`)
      .join("\n")}\n`,
  );
  const args = [
    join(root, "node_modules/wrangler/bin/wrangler.js"),
    "dev",
    "--port",
    String(port),
    "--ip",
    "127.0.0.1",
    "--inspector-port",
    String(inspector),
    "--persist-to",
    join(dir, "state"),
    "--env-file",
    envFile,
    "--test-scheduled",
    "--show-interactive-dev-session=false",
    // The Stripe budget out of the way unless a test sets one: these tests count reports, not pacing
    // (the budget's own tests are the "budget" project and the sweep_2000 bench row).
    ...Object.entries({ STRIPE_BUDGET: JSON.stringify({ max_calls_per_second: 10_000, max_calls_per_endpoint_per_second: 10_000 }), ...options.vars }).flatMap(([k, v]) => [
      "--var",
      `${k}:${v}`,
    ]),
  ];
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", CI: "true" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: string[] = [];
  child.stdout!.on("data", (d) => logs.push(String(d)));
  child.stderr!.on("data", (d) => logs.push(String(d)));
  const url = `http://127.0.0.1:${port}`;

  const gateway: Gateway = {
    url,
    logs,
    fetch: (path, init) => fetch(url + path, init),
    async admin(method, path, body) {
      const response = await fetch(`${url}/admin${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },
    async scheduled(time = Date.now()) {
      const response = await fetch(`${url}/cdn-cgi/local/scheduled?cron=${encodeURIComponent("* * * * *")}&time=${time}`);
      if (!response.ok) throw new Error(`scheduled: ${response.status} ${await response.text()}`);
    },
    async untilDue(customerId, by) {
      for (let i = 0; i < 100; i++) {
        const listed = await gateway.admin("GET", "/customers?limit=500");
        const row = listed.body.customers.find((c: { id: string }) => c.id === customerId);
        if (row?.due_at !== null && row?.due_at !== undefined && row.due_at <= (by ?? Date.now())) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`customer ${customerId} never became due`);
    },
    async untilReported(customerId) {
      await gateway.untilDue(customerId);
      for (let i = 0; i < 40; i++) {
        await gateway.scheduled();
        const totals = (await gateway.admin("GET", `/customers/${customerId}`)).body.stripe.report_totals as { status: string }[];
        if (totals.every((r) => r.status === "sent")) return;
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new Error(`customer ${customerId} still has reports unsent after 40 cron runs`);
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };

  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited ${child.exitCode}:\n${logs.join("")}`);
    try {
      const status = await gateway.admin("GET", "/status");
      if (status.status === 200) return gateway;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  await gateway.stop();
  throw new Error(`wrangler dev did not become ready:\n${logs.join("")}`);
}

/** Serves a web-standard handler (a test double) over real HTTP on loopback. */
export async function serveHandler(handle: (request: Request) => Promise<Response>) {
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const controller = new AbortController();
    res.on("close", () => controller.abort());
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
    const body = chunks.length ? Buffer.concat(chunks) : undefined;
    let response: Response;
    try {
      response = await handle(new Request(`http://${req.headers.host}${req.url}`, { method: req.method!, headers, body: body ?? null, signal: controller.signal }));
    } catch {
      res.destroy();
      return;
    }
    if (response.type === "error") {
      res.destroy();
      return;
    }
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Reads until `done` holds, every 50 ms, failing after `ms` with what it last read. */
export async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Creates a customer with one API key and `cents` of credit (none for 0). */
export async function customerWithKey(gateway: Gateway, id: string, cents: number) {
  expect((await gateway.admin("PUT", `/customers/${id}`, { email: `${id}@example.com`, name: "Grace Hopper" })).status).toBe(201);
  const key = await gateway.admin("POST", `/customers/${id}/keys`, { name: "e2e" });
  expect(key.status).toBe(201);
  if (cents) expect((await gateway.admin("POST", `/customers/${id}/credits`, { amount: cents, reason: "e2e" })).status).toBe(201);
  return { key: key.body.key as string, keyId: key.body.id as string };
}

/** Delivering the Stripe double's events to the gateway's webhook, as Stripe would. */
export function stripeWebhooks(gateway: Gateway, stripe: StripeDouble) {
  async function deliver(event: Stripe.Event) {
    const { body, signature } = await stripe.sign(event);
    const response = await gateway.fetch("/webhooks/stripe", { method: "POST", headers: { "stripe-signature": signature }, body });
    return { status: response.status, body: await response.json() };
  }
  /**
   * Delivers every pending event, then waits for the customers' objects to finish what the events
   * asked of Stripe (a webhook is answered once recorded; the object reconciles from its alarm,
   * within milliseconds).
   */
  async function deliverAll() {
    const customers = new Set<string>();
    for (const event of stripe.takeEvents()) {
      expect((await deliver(event)).status).toBe(200);
      const object = event.data.object as { object?: string; id?: string; customer?: unknown };
      const id = object.object === "customer" ? object.id : typeof object.customer === "string" ? object.customer : undefined;
      if (id) customers.add(id);
    }
    for (const id of customers) {
      for (let i = 0; i < 100; i++) {
        const summary = await gateway.admin("GET", `/customers/${id}`);
        if (summary.status === 200 && !summary.body.stripe.reconcile_needed && summary.body.stripe.report_totals.every((r: { status: string }) => r.status !== "pending")) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
  return { deliver, deliverAll };
}
