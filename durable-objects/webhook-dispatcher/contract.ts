/** What the worker and the customer objects may know of the WebhookDispatcher object: its stub. */

/** The one object that keeps provider webhook endpoints and delivers events to them. */
export function webhookDispatcherStub(env: Env) {
  return env.WEBHOOK_DISPATCHER.get(env.WEBHOOK_DISPATCHER.idFromName("global"));
}
