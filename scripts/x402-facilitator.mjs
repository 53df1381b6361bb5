// The x402 facilitator double (test/doubles/x402-facilitator.ts) over HTTP on loopback, for
// `npm start -- --x402` and the end-to-end tests: it verifies EIP-712 signatures with viem and
// settles on an in-memory chain (no real money), whose JSON-RPC endpoint is `${url}/rpc`.
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The double's TypeScript, bundled once (Node 20 runs no TypeScript), viem left to node_modules. */
async function loadDouble() {
  const outfile = join(root, ".wrangler", "tmp", "x402-facilitator.mjs");
  await build({ entryPoints: [join(root, "test/doubles/x402-facilitator.ts")], outfile, bundle: true, platform: "node", format: "esm", packages: "external", logLevel: "warning" });
  return (await import(`${pathToFileURL(outfile).href}?${Date.now()}`)).FacilitatorDouble;
}

export async function startFacilitator({ port = 0, network = "eip155:84532", asset = "0x036CbD53842c5426634e7929541eC2318f3dCF7e", faucet = 0n } = {}) {
  const FacilitatorDouble = await loadDouble();
  let url = "";
  let double;
  const server = createServer(async (req, res) => {
    const controller = new AbortController();
    res.on("close", () => controller.abort());
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
    try {
      const response = await double.handle(
        new Request(`${url}${req.url}`, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : null, signal: controller.signal }),
      );
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
    } catch {
      res.destroy();
    }
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${server.address().port}`;
  double = new FacilitatorDouble({ network, asset, rpcUrl: `${url}/rpc`, faucet });
  return {
    url,
    rpcUrl: `${url}/rpc`,
    double,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
