/**
 * What `payg_leases: auto` decides from (docs/scaling.md, "When to turn it on"): the customer's
 * request rate and how many of its requests come from far isolates, over the last 10 seconds, as
 * this object sees them (direct requests, and the requests leases report). In memory: after a
 * restart leases wait for the evidence again.
 */
const SLOTS = 10;
const SLOT_MS = 1_000;
/** Sustained above this, one object's write path starts to queue. */
export const HOT_PER_SECOND = 300;
/** An isolate this far (round trip) from the object gains a round trip per request from a lease. */
export const FAR_RTT_MS = 50;
export const FAR_SHARE = 0.2;

export class Demand {
  private readonly requests = new Array<number>(SLOTS).fill(0);
  private readonly far = new Array<number>(SLOTS).fill(0);
  private slot = 0;

  record(now: number, requests: number, rttMs: number): void {
    if (requests <= 0) return;
    this.advance(now);
    const i = this.slot % SLOTS;
    this.requests[i]! += requests;
    if (rttMs > FAR_RTT_MS) this.far[i]! += requests;
  }

  /** Hot or far enough that a lease saves a round trip or the object's load. */
  pays(now: number): boolean {
    this.advance(now);
    const total = this.requests.reduce((a, b) => a + b, 0);
    const far = this.far.reduce((a, b) => a + b, 0);
    return total / SLOTS >= HOT_PER_SECOND || (total >= 20 && far / total > FAR_SHARE);
  }

  private advance(now: number): void {
    const slot = Math.floor(now / SLOT_MS);
    if (slot - this.slot >= SLOTS) {
      this.requests.fill(0);
      this.far.fill(0);
    } else for (let s = this.slot + 1; s <= slot; s++) [this.requests[s % SLOTS], this.far[s % SLOTS]] = [0, 0];
    if (slot > this.slot) this.slot = slot;
  }
}
