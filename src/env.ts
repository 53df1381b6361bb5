import type { Config } from "./config";
import type { CustomerAccount } from "../durable-objects/customer-account";
import type { Directory } from "../durable-objects/directory";

/** Secrets: `wrangler secret put NAME` in production, `.dev.vars` locally. Never in the repo. */
export interface Secrets {
  ADMIN_TOKEN?: string;
  STRIPE_SECRET_KEY?: string;
  STRIPE_WEBHOOK_SECRET?: string;
  MAILCHANNELS_API_KEY?: string;
  MAILCHANNELS_DKIM_DOMAIN?: string;
  MAILCHANNELS_DKIM_SELECTOR?: string;
  MAILCHANNELS_DKIM_PRIVATE_KEY?: string;
}

export type Bindings = Env & Secrets;

export type AppEnv = {
  Bindings: Bindings;
  Variables: { config: Config; requestId: string };
};

export function customerStub(env: Env, customerId: string): DurableObjectStub<CustomerAccount> {
  const ns = env.CUSTOMERS as DurableObjectNamespace<CustomerAccount>;
  return ns.get(ns.idFromName(customerId));
}

export function directoryStub(env: Env): DurableObjectStub<Directory> {
  const ns = env.DIRECTORY as DurableObjectNamespace<Directory>;
  return ns.get(ns.idFromName("global"));
}
