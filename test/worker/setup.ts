import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll } from "vitest";

/** Outbound HTTP from the worker and its Durable Objects; anything unexpected fails the test. */
export const server = setupServer();

beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());
