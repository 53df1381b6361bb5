/**
 * One retry of an RPC whose reply may have been lost: the object keys the charge by the
 * gateway's request id, so a retry replays the first result instead of charging twice.
 */
export async function once<T>(call: (retry: boolean) => Promise<T>): Promise<T> {
  try {
    return await call(false);
  } catch (error) {
    if ((error as { retryable?: boolean }).retryable) return call(true);
    throw error;
  }
}
