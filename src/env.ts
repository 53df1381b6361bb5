import type { Config } from "./lib/config";

/** Secrets: `wrangler secret put NAME` in production, `.dev.vars` locally. Never in the repo. */
export interface Secrets {
  ADMIN_TOKEN?: string;
  /** Signs API keys, so the worker refuses a forged customer id before any object. */
  KEY_SIGNING_SECRET?: string;
  /** Signs every request forwarded to the origin (X-Payg-Signature). */
  ORIGIN_SIGNING_SECRET?: string;
  SESSION_SECRET?: string;
  STRIPE_SECRET_KEY?: string;
  STRIPE_WEBHOOK_SECRET?: string;
  STRIPE_EVENT_DESTINATION_SECRET?: string;
  MAILCHANNELS_API_KEY?: string;
  MAILCHANNELS_DKIM_DOMAIN?: string;
  MAILCHANNELS_DKIM_SELECTOR?: string;
  MAILCHANNELS_DKIM_PRIVATE_KEY?: string;
  UNSUBSCRIBE_SIGNING_SECRET?: string;
}

export type Bindings = Env & Secrets;

export type AppEnv = {
  Bindings: Bindings;
  Variables: { config: Config; requestId: string };
};

export { customerStub } from "../durable-objects/customer-account/contract";
export { allShards, directoryFor, directoryShard, directoryStub, mergeCohortMembers, mergeCustomerPages, sumOverviews } from "../durable-objects/directory/contract";
export { webhookDispatcherStub } from "../durable-objects/webhook-dispatcher/contract";
