// `npm start`: the gateway on its embedded defaults, with a demo origin and a demo customer.
// Local Durable Object storage (.wrangler/state), no Stripe or MailChannels account needed.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildAssets } from "./build-assets.mjs";
import { startDemoOrigin } from "./demo-origin.mjs";
import { startFacilitator } from "./x402-facilitator.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const PORT = Number(process.env.PORT ?? 8787);
// `npm start -- --x402`: agents can pay the 402 over x402, through a facilitator double on 8789.
const x402 = process.argv.includes("--x402");
const devVars = join(root, ".dev.vars");

const random = () => randomBytes(32).toString("hex");
if (!existsSync(devVars)) {
  writeFileSync(
    devVars,
    [
      "# Local secrets for wrangler dev (git-ignored). In production: wrangler secret put NAME",
      `ADMIN_TOKEN=${randomBytes(24).toString("hex")}`,
      "# STRIPE_SECRET_KEY=sk_test_...",
      "# STRIPE_WEBHOOK_SECRET=whsec_...",
      "# MAILCHANNELS_API_KEY=...",
      "# Lets webhook endpoints be http://127.0.0.1 or http://localhost (never set it in production).",
      "ALLOW_INSECURE_WEBHOOKS=true",
      "",
    ].join("\n"),
  );
  console.log("created .dev.vars with a random ADMIN_TOKEN");
}
// Signed API keys and signed origin requests, as in production. Added to an older .dev.vars too.
for (const name of ["KEY_SIGNING_SECRET", "ORIGIN_SIGNING_SECRET"]) {
  const current = readFileSync(devVars, "utf8");
  // A line "NAME=" (empty) keeps it off.
  if (!new RegExp(`^${name}=`, "m").test(current)) {
    appendFileSync(devVars, `${current === "" || current.endsWith("\n") ? "" : "\n"}${name}=${random()}\n`);
    console.log(`added a random ${name} to .dev.vars`);
  }
}
const secrets = readFileSync(devVars, "utf8");
const adminToken = /^ADMIN_TOKEN=(.+)$/m.exec(secrets)?.[1]?.trim();
if (!adminToken) throw new Error(".dev.vars has no ADMIN_TOKEN line");

await buildAssets();
// The demo origin checks X-Payg-Signature with the same secret as the gateway.
const origin = await startDemoOrigin({ port: 8788, signingSecret: /^ORIGIN_SIGNING_SECRET=(.+)$/m.exec(secrets)?.[1]?.trim() });
console.log(`demo origin on ${origin.url}`);
// A faucet: every wallet starts with 1,000 test USDC on the double's chain.
const facilitator = x402 ? await startFacilitator({ port: 8789, faucet: 1_000_000_000n }) : null;
const payments = facilitator && {
  topup_cents: 500,
  x402: {
    facilitator_url: facilitator.url,
    network: "eip155:84532",
    asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    pay_to: "0x000000000000000000000000000000000000dEaD",
    rpc_url: facilitator.rpcUrl,
  },
};
if (facilitator) console.log(`x402 facilitator double on ${facilitator.url} (Base Sepolia USDC, in memory: no real money)`);

const wrangler = spawn(
  process.execPath,
  [
    join(root, "node_modules/wrangler/bin/wrangler.js"),
    "dev",
    "--port",
    String(PORT),
    "--ip",
    "127.0.0.1",
    "--test-scheduled",
    "--show-interactive-dev-session=false",
    "--var",
    "ALLOW_INSECURE_WEBHOOKS:true",
    "--var",
    'PORTAL:{"api_key_sign_in":true}',
    ...(payments ? ["--var", `PAYMENTS:${JSON.stringify(payments)}`] : []),
  ],
  { cwd: root, stdio: ["ignore", "inherit", "inherit"] },
);
const stop = () => {
  wrangler.kill("SIGINT");
  void origin.close();
  void facilitator?.close();
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
wrangler.on("exit", (code) => {
  void origin.close();
  process.exit(code ?? 0);
});

const base = `http://127.0.0.1:${PORT}`;
const admin = async (method, path, body) => {
  const response = await fetch(`${base}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
  return json;
};

for (let i = 0; ; i++) {
  try {
    const status = await admin("GET", "/status");
    console.log(`\ngateway up on ${base}: Stripe ${status.stripe}, emails: ${status.email_delivery}`);
    break;
  } catch (error) {
    if (i > 240) throw error;
    await new Promise((r) => setTimeout(r, 500));
  }
}

await admin("PUT", "/customers/cus_demo", { email: "ada@example.com", name: "Ada Lovelace" });
const { key } = await admin("POST", "/customers/cus_demo/keys", { name: "quick start" });
const summary = await admin("GET", "/customers/cus_demo");
if (summary.balance.available_cents < 3) {
  await admin("POST", "/customers/cus_demo/credits", { amount: 3 - summary.balance.available_cents, reason: "quick start credit" });
}
// A day-long link for the quick start (your app would ask for one when the customer clicks "Billing").
const portalLink = await admin("POST", "/customers/cus_demo/portal-sessions", { expires_in_seconds: 86400 });
console.log(`
Demo customer cus_demo (Ada Lovelace) has 3 cents of credit; each request costs 1 cent.
API key (shown once): ${key}

Dashboard:   ${base}/dashboard   (sign in with the ADMIN_TOKEN in .dev.vars: ${adminToken})
Portal link: ${portalLink.url}
             (opens once you confirm, within 24 hours; or sign in at ${base}/portal with the API key
             above, which shows the balance, usage and that key and can top up: key sign-in is on
             for the quick start, off by default, PORTAL.api_key_sign_in)

  curl -i ${base}/hello -H "Authorization: Bearer ${key}"     # 200 three times, then 402
  curl -s ${base}/admin/customers/cus_demo -H "Authorization: Bearer ${adminToken}"
  curl -s -X POST ${base}/admin/customers/cus_demo/credits -H "Authorization: Bearer ${adminToken}" \\
       -H "content-type: application/json" -d '{"amount": 5, "reason": "top-up"}'
  curl -s "${base}/__scheduled?cron=*+*+*+*+*"                 # run the cron (emails go to the local outbox)

Billed from the response (after a top-up): chat tokens priced per model and kind (gpt-4o-mini: 15 cents
per million input tokens, 7.5 cached, 60 output). The output limit is held before the request is
forwarded; the usage the answer reports is charged, to the micro-cent:
  curl -i ${base}/v1/chat/completions -H "Authorization: Bearer ${key}" -H "content-type: application/json" \\
       -d '{"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]}'
  curl -N ${base}/v1/chat/completions -H "Authorization: Bearer ${key}" -H "content-type: application/json" \\
       -d '{"model": "gpt-4o-mini", "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": "Hello"}]}'
  (the stream's last line is its charge: ": x-payg-charge-cents: …, x-payg-balance-cents: …")

MCP tools priced by name (search_docs 0.5 cents, render_chart 3; initialize and tools/list are free).
Start a session, then call a tool with the Mcp-Session-Id it printed:
  curl -si ${base}/mcp -H "Authorization: Bearer ${key}" -H "content-type: application/json" \\
       -H "accept: application/json, text/event-stream" \\
       -d '{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}}}'
  curl -s ${base}/mcp -H "Authorization: Bearer ${key}" -H "content-type: application/json" \\
       -H "accept: application/json, text/event-stream" -H "mcp-protocol-version: 2025-06-18" -H "mcp-session-id: <id>" \\
       -d '{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "search_docs", "arguments": {"query": "tokens"}}}'
  (the result's _meta["payg/charge"] carries charged_cents and balance_cents; at $0 it is a tool error)
  curl -s ${base}/admin/customers/cus_demo/emails -H "Authorization: Bearer ${adminToken}"

${
  facilitator
    ? `Agent payments (x402): out of credit, the 402 carries PAYMENT-REQUIRED for a $5.00 pack; an agent with the
official client (@x402/fetch) pays it on its own, is served, and is charged once:
  node scripts/demo-x402-agent.mjs ${key} ${base}/hello 5
`
    : `Agents paying the 402 on their own (x402, with a facilitator double): npm start -- --x402
`
}
Press Ctrl+C to stop.
`);
