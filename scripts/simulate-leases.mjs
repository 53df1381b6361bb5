// `npm run simulate:leases`: a discrete-event simulation of credit leases (docs/scaling.md) next
// to today's design (one RPC to the customer's Durable Object per request). Deterministic: a
// seeded PRNG drives arrivals, network jitter and isolate crashes. Plain Node.js, no dependencies.
//
// What it models (all times in milliseconds):
// - One customer whose object lives in us-east. Requests arrive at worker isolates in several
//   regions as Poisson processes; each region has a few isolates, picked at random per request.
// - Network: a request from region r to the object takes rtt/2 each way, plus exponential jitter.
// - The object is one serial server: every operation costs SERVICE_MS (1 ms, about 1,000
//   operations a second). An operation that would wait more than SHED_AFTER_MS in its queue is
//   shed ("Durable Object is overloaded"): the request fails, nothing is charged.
// - Today's design: each request is one operation (check + debit) and waits for its answer.
// - Lease design: an isolate spends a local slice of credit with no round trip and syncs with
//   the object (report spent, top the lease up to L, extend its TTL) when the lease falls under a
//   low-water mark or is older than the heartbeat. With no usable lease it makes today's direct
//   RPC (the debit and a lease in one operation). Requests that find the lease empty while a sync
//   is in flight wait for it. Grants are carved from unleased credit (half of it at most per
//   grant), so leases never overspend; an optional allowance A lets grants exceed the balance.
// - Isolates crash (exponential lifetime, no goodbye). Their lease expires at the object after
//   TTL + grace and its unreported reserve is settled as spent (the design's choice, see the doc):
//   the unspent part of it is reported as "lost to crashes".
//
// Latency is what billing adds to a request (from its arrival at the isolate to the decision):
// the client's hop to the edge and the origin are the same in both designs and left out.
import { pathToFileURL } from "node:url";

export const REGIONS = [
  // Round trips from each region's edge to an object in us-east (Ashburn): typical public
  // inter-region figures (e.g. AWS us-east-1 to us-west-2 / eu-west-1 / sa-east-1 / ap-southeast-1).
  { name: "us-east", rttMs: 2, share: 0.25 },
  { name: "us-west", rttMs: 62, share: 0.2 },
  { name: "eu-west", rttMs: 76, share: 0.25 },
  { name: "sa-east", rttMs: 118, share: 0.1 },
  { name: "ap-southeast", rttMs: 215, share: 0.2 },
];

export const DEFAULTS = {
  seed: 14,
  seconds: 120,
  ratePerSecond: 600,
  creditCents: Number.POSITIVE_INFINITY,
  priceCents: 1,
  regions: REGIONS,
  isolatesPerRegion: 4,
  crashMeanSeconds: 120,
  serviceMs: 1,
  shedAfterMs: 1000,
  localMs: 0.02,
  jitterFraction: 0.03,
};

export const LEASE_DEFAULTS = {
  /**
   * Cents per lease, or "auto": with n = the isolate's requests per round trip (its rate × its
   * measured RTT), L = 2 × (n + 3√n) × price, so the half left at the low-water mark covers one
   * round trip of a Poisson burst (about its 99.9th percentile); at most maxLeaseCents.
   */
  leaseCents: 50,
  maxLeaseCents: 200,
  ttlMs: 10_000,
  graceMs: 1_000,
  lowWater: 0.5,
  heartbeatMs: 1_000,
  grantFraction: 0.5,
  minGrantCents: 2,
  allowanceCents: 0,
  recallFactor: 1,
  idleReturnMs: 3_000,
};

/** mulberry32: small, fast, deterministic. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const exponential = (random, mean) => -Math.log(1 - random()) * mean;

class EventQueue {
  heap = [];
  seq = 0;
  push(time, fn) {
    const item = { time, seq: this.seq++, fn };
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }
  pop() {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l], h[m])) m = l;
        if (r < h.length && this.less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
  less(a, b) {
    return a.time < b.time || (a.time === b.time && a.seq < b.seq);
  }
  get size() {
    return this.heap.length;
  }
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * One run. `design` is `{ kind: "rpc" }` (today) or `{ kind: "lease", ...LEASE_DEFAULTS }`.
 * Returns latency percentiles per region and the accounting of every cent.
 */
export function simulate(options = {}, design = { kind: "rpc" }) {
  const o = { ...DEFAULTS, ...options };
  const lease = design.kind === "lease" ? { ...LEASE_DEFAULTS, ...design } : null;
  const horizon = o.seconds * 1000;
  const price = o.priceCents;
  const events = new EventQueue();
  const arrivalsRandom = prng(o.seed);
  const crashRandom = prng(o.seed * 7919 + 1);
  const jitterRandom = prng(o.seed * 104729 + 2);
  const pickRandom = prng(o.seed * 1299709 + 3);

  // ---- the object
  const object = {
    balance: o.creditCents, // credit minus everything settled
    leases: new Map(), // id -> { id, granted, reported, expiresAt }
    expired: new Map(), // id -> granted, for leases settled at expiry (a late final report refunds)
    reserved: 0, // sum over live leases of granted - reported
    busyUntil: 0,
    ops: 0,
    shed: 0,
  };
  const ledger = { direct: 0, settled: 0, expired: 0, lostToCrashes: 0, lateRefund: 0 };
  let nextLeaseId = 1;

  // ---- statistics
  const latencies = new Map(o.regions.map((r) => [r.name, []]));
  const stats = { requests: 0, served: 0, servedLocal: 0, refused: 0, falseRefusals: 0, shed: 0, crashes: 0, lostInCrash: 0, recalls: 0, maxReserved: 0, firstRefusalAt: null };
  const decide = (req, now, outcome) => {
    latencies.get(req.region.name).push(now - req.arrival);
    if (outcome === "ok") stats.served++;
    else if (outcome === "refused") {
      stats.refused++;
      stats.firstRefusalAt ??= now;
    } else stats.shed++;
  };

  const oneWay = (region) => region.rttMs / 2 + exponential(jitterRandom, o.jitterFraction * region.rttMs + 0.1);

  // ---- isolates
  const isolates = new Map(o.regions.map((r) => [r.name, []]));
  let nextIsolateId = 1;
  const newIsolate = (region, slot) => {
    const isolate = { id: nextIsolateId++, region, alive: true, lease: null, closed: new Set(), inflight: false, want: 0, seen: 0, estAt: isolateClock, rate: null, rtt: null };
    isolates.get(region.name)[slot] = isolate;
    if (o.crashMeanSeconds > 0) {
      const at = exponential(crashRandom, o.crashMeanSeconds * 1000);
      events.push(isolateClock + at, () => crash(isolate, slot));
    }
    return isolate;
  };
  let isolateClock = 0;
  const crash = (isolate, slot) => {
    if (!isolate.alive || isolateClock >= horizon) return;
    isolate.alive = false;
    stats.crashes++;
    newIsolate(isolate.region, slot);
  };

  // ---- the object's serial queue
  /** An operation arriving at the object at `at`; `apply(now)` runs when it completes. */
  const toObject = (at, apply, onShed) => {
    events.push(at, () => {
      const start = Math.max(at, object.busyUntil);
      if (start - at > o.shedAfterMs) {
        object.shed++;
        onShed(at);
        return;
      }
      const done = start + o.serviceMs;
      object.busyUntil = done;
      object.ops++;
      events.push(done, () => apply(done));
    });
  };
  const available = () => object.balance + (lease?.allowanceCents ?? 0) - object.reserved;

  // ---- today's design: one RPC per request
  const directRpc = (req, now) => {
    const there = now + oneWay(req.region);
    toObject(
      there,
      (done) => {
        const ok = object.balance - price >= 0;
        if (ok) {
          object.balance -= price;
          ledger.direct += price;
        }
        const back = done + oneWay(req.region);
        events.push(back, () => decide(req, back, ok ? "ok" : "refused"));
      },
      (at) => {
        const back = at + oneWay(req.region);
        events.push(back, () => decide(req, back, "shed"));
      },
    );
  };

  // ---- lease design
  /** The isolate's side of each lease, by id: what it really spent (the object only sees reports). */
  const truth = new Map();
  const unspentInLeases = () => {
    let sum = 0;
    for (const l of object.leases.values()) sum += l.granted - Math.max(l.reported, truth.get(l.id)?.spent ?? 0);
    return sum;
  };
  const expireCheck = (id) => (now) => {
    const l = object.leases.get(id);
    if (!l || l.expiresAt > now) return;
    // The isolate stopped spending at its own expiry (earlier): settle the reserve as spent.
    const reserve = l.granted - l.reported;
    object.leases.delete(id);
    object.expired.set(id, l.granted);
    object.reserved -= reserve;
    object.balance -= reserve;
    ledger.expired += reserve;
    ledger.lostToCrashes += l.granted - Math.max(l.reported, truth.get(id)?.spent ?? 0);
  };

  /** Settles one report `{ id, spent, close }` at the object. */
  const settle = (report) => {
    const row = object.leases.get(report.id);
    if (!row) {
      // A late report for a lease already expired and settled as fully spent: give back the unspent part.
      const granted = object.expired.get(report.id);
      if (granted !== undefined && report.close) {
        object.expired.delete(report.id);
        const refund = granted - report.spent;
        object.balance += refund;
        ledger.lateRefund += refund;
        ledger.lostToCrashes -= refund;
      }
      return undefined;
    }
    // Counters are cumulative: a reordered, older report changes nothing.
    const delta = Math.max(0, report.spent - row.reported);
    row.reported += delta;
    object.balance -= delta;
    object.reserved -= delta;
    ledger.settled += delta;
    if (report.close) {
      // Returned: the isolate will not spend from it again; the rest of the reserve is free.
      object.reserved -= row.granted - row.reported;
      object.leases.delete(row.id);
      return undefined;
    }
    return row;
  };

  /**
   * One operation at the object for an isolate: settle `reports`, debit `directReq` if there is
   * one, and when `refill` top the lease up to L and extend it (at most one refill in flight).
   */
  const sync = (isolate, now, { directReq = null, reports = [], refill = true }) => {
    const sentAt = now;
    const want = refill ? wantCents(isolate, now) : 0;
    if (refill) isolate.inflight = true;
    const there = now + oneWay(isolate.region);
    toObject(
      there,
      (done) => {
        let row;
        for (const report of reports) {
          const settled = settle(report);
          if (!report.close) row = settled;
        }
        let outcome = null;
        if (directReq) {
          if (available() >= price) {
            object.balance -= price;
            ledger.direct += price;
            outcome = "ok";
          } else {
            outcome = "refused";
            if (unspentInLeases() >= price) stats.falseRefusals++;
          }
        }
        let reply;
        if (refill) {
          const reserve = row ? row.granted - row.reported : 0;
          // Low-credit mode: once unleased credit is under L per live lease, grant nothing more
          // and recall the leases, so the last cents are spent through exact direct debits.
          let leased = 0;
          for (const l of object.leases.values()) leased += l.want;
          const recall = available() < lease.recallFactor * Math.max(leased, want);
          const topUp = recall ? 0 : Math.min(want - reserve, Math.floor(available() * lease.grantFraction));
          if (recall && row) stats.recalls++;
          if (topUp >= lease.minGrantCents) {
            if (!row) {
              row = { id: nextLeaseId++, granted: 0, reported: 0, expiresAt: 0, want };
              object.leases.set(row.id, row);
            }
            row.granted += topUp;
            object.reserved += topUp;
            stats.maxReserved = Math.max(stats.maxReserved, object.reserved);
          }
          if (row) {
            row.want = want;
            row.expiresAt = done + lease.ttlMs + lease.graceMs;
            events.push(row.expiresAt, expireCheck(row.id));
          }
          reply = row ? { id: row.id, granted: row.granted, recall } : null;
        }
        const back = done + oneWay(isolate.region);
        events.push(back, () => onReply(isolate, back, sentAt, reply, directReq, outcome, refill));
      },
      (at) => {
        const back = at + oneWay(isolate.region);
        events.push(back, () => onReply(isolate, back, sentAt, undefined, directReq, "shed", refill));
      },
    );
  };

  const onReply = (isolate, now, sentAt, reply, directReq, outcome, refill) => {
    if (!isolate.alive) {
      // Nobody hears it: the client's request failed with its isolate; a lease granted here expires.
      if (directReq) stats.lostInCrash++;
      return;
    }
    if (refill) {
      isolate.inflight = false;
      isolate.rtt = isolate.rtt === null ? now - sentAt : 0.7 * isolate.rtt + 0.3 * (now - sentAt);
      if (reply && isolate.closed.has(reply.id)) {
        // A reply for a lease this isolate already returned or let expire: never reopen it.
      } else if (reply) {
        if (isolate.lease && isolate.lease.id !== reply.id) isolate.closed.add(isolate.lease.id);
        if (!isolate.lease || isolate.lease.id !== reply.id) {
          isolate.lease = { id: reply.id, granted: 0, spent: 0, syncedAt: sentAt, expiresAt: 0 };
          truth.set(reply.id, isolate.lease);
        }
        isolate.lease.granted = reply.granted;
        isolate.lease.syncedAt = sentAt;
        // Measured from when the sync was sent, so always before the object's own expiry.
        isolate.lease.expiresAt = sentAt + lease.ttlMs;
        if (reply.recall) {
          // Stop spending from it and return it now, with the final count.
          const l = isolate.lease;
          isolate.lease = null;
          isolate.closed.add(l.id);
          sync(isolate, now, { reports: [{ id: l.id, spent: l.spent, close: true }], refill: false });
        }
      } else if (reply === null) {
        // No lease at the object (none granted, or it already expired there).
        if (isolate.lease) isolate.closed.add(isolate.lease.id);
        isolate.lease = null;
      }
    }
    if (directReq) decide(directReq, now, outcome);
  };

  /** The lease size this isolate asks for: fixed, or sized from its own request rate and round trip. */
  const wantCents = (isolate, now) => {
    if (lease.leaseCents !== "auto") return (isolate.want = lease.leaseCents);
    if (now > isolate.estAt) {
      const sample = isolate.seen / (now - isolate.estAt);
      isolate.rate = isolate.rate === null ? sample : 0.5 * isolate.rate + 0.5 * sample;
      isolate.seen = 0;
      isolate.estAt = now;
    }
    const n = (isolate.rate ?? 0) * ((isolate.rtt ?? 100) + 10);
    const cents = Math.ceil(2 * (n + 3 * Math.sqrt(n)) * price);
    return (isolate.want = Math.min(lease.maxLeaseCents, Math.max(lease.minGrantCents, cents)));
  };

  const handle = (isolate, req, now) => {
    if (!lease) return directRpc(req, now);
    isolate.seen++;
    const l = isolate.lease;
    const usable = l && now < l.expiresAt;
    if (usable && l.granted - l.spent >= price) {
      l.spent += price;
      stats.servedLocal++;
      decide(req, now + o.localMs, "ok");
      const lowWater = l.granted - l.spent < isolate.want * lease.lowWater;
      if (!isolate.inflight && (lowWater || now - l.syncedAt > lease.heartbeatMs)) {
        sync(isolate, now, { reports: [{ id: l.id, spent: l.spent, close: false }] });
      }
      return;
    }
    // No usable lease: today's path, one RPC that debits this request. The first such request
    // also carries the refill; the others do not wait for it.
    const reports = [];
    if (l && !usable) {
      // Expired locally: never spend from it again; return it with its final count.
      reports.push({ id: l.id, spent: l.spent, close: true });
      isolate.lease = null;
      isolate.closed.add(l.id);
    } else if (l && !isolate.inflight) reports.push({ id: l.id, spent: l.spent, close: false });
    sync(isolate, now, { directReq: req, reports, refill: !isolate.inflight });
  };

  // ---- arrivals
  for (const region of o.regions) {
    const list = isolates.get(region.name);
    for (let slot = 0; slot < o.isolatesPerRegion; slot++) newIsolate(region, slot);
    const rate = (o.ratePerSecond * region.share) / 1000;
    let t = exponential(arrivalsRandom, 1 / rate);
    while (t < horizon) {
      const at = t;
      events.push(at, () => {
        stats.requests++;
        const slot = Math.floor(pickRandom() * o.isolatesPerRegion);
        handle(list[slot], { region, arrival: at }, at);
      });
      t += exponential(arrivalsRandom, 1 / rate);
    }
  }

  // Traffic stops at the horizon: idle isolates return their leases (from waitUntil, after the
  // last request), as they would in production; only crashed isolates leave leases to expire.
  if (lease) {
    events.push(horizon + lease.idleReturnMs, () => {
      for (const list of isolates.values()) {
        for (const isolate of list) {
          const l = isolate.lease;
          if (!isolate.alive || !l) continue;
          isolate.lease = null;
          isolate.closed.add(l.id);
          sync(isolate, horizon + lease.idleReturnMs, { reports: [{ id: l.id, spent: l.spent, close: true }], refill: false });
        }
      }
    });
  }

  while (events.size) {
    const { time, fn } = events.pop();
    isolateClock = time;
    fn(time);
  }

  // ---- results
  const spentByRequests = stats.served * price;
  const perRegion = Object.fromEntries(
    [...latencies].map(([name, list]) => {
      list.sort((a, b) => a - b);
      return [name, { requests: list.length, p50: percentile(list, 50), p95: percentile(list, 95), p99: percentile(list, 99) }];
    }),
  );
  const liveReserve = [...object.leases.values()].reduce((s, l) => s + l.granted - l.reported, 0);
  // Every cent of credit is somewhere: left, settled by a lease, debited directly, or expired.
  const accounted = Number.isFinite(o.creditCents) ? object.balance + ledger.direct + ledger.settled + ledger.expired - ledger.lateRefund === o.creditCents : true;
  return {
    design: lease
      ? `lease L=${lease.leaseCents === "auto" ? `auto (≤ ${lease.maxLeaseCents})` : lease.leaseCents}${lease.allowanceCents ? `, allowance A=${lease.allowanceCents}` : ""}`
      : "today: one RPC",
    lease,
    perRegion,
    requests: stats.requests,
    served: stats.served,
    servedPerSecond: stats.served / o.seconds,
    servedLocally: stats.servedLocal,
    refused: stats.refused,
    falseRefusals: stats.falseRefusals,
    shed: stats.shed,
    crashes: stats.crashes,
    lostInCrash: stats.lostInCrash,
    recalls: stats.recalls,
    creditCents: o.creditCents,
    spentCents: spentByRequests,
    objectOpsPerSecond: object.ops / o.seconds,
    overspendCents: Number.isFinite(o.creditCents) ? Math.max(0, spentByRequests - o.creditCents) : 0,
    overspendBoundCents: lease ? lease.allowanceCents : 0,
    lostToCrashesCents: ledger.lostToCrashes,
    maxReservedCents: stats.maxReserved,
    liveReserveCents: liveReserve,
    firstRefusalAtMs: stats.firstRefusalAt,
    balanceCents: object.balance,
    ledger,
    accounted,
  };
}

export const SCENARIOS = [
  { id: "far", title: "600 req/s from 5 regions (under one object's ~1,000 op/s), credit never runs out", options: { ratePerSecond: 600 } },
  { id: "hot", title: "2,400 req/s from 5 regions (over one object's ~1,000 op/s), credit never runs out", options: { ratePerSecond: 2400 } },
  {
    id: "runs_out",
    title: "600 req/s, credit for 60 s of traffic (36,000 cents at 1 cent), 120 s",
    options: { ratePerSecond: 600, creditCents: 36_000 },
    extra: [{ kind: "lease", leaseCents: "auto", allowanceCents: 100 }],
  },
];
export const LEASE_SIZES = [10, 50, 200, "auto"];

export function runAll({ scale = 1, seed = DEFAULTS.seed } = {}) {
  return SCENARIOS.map((scenario) => {
    const options = { seed, ...scenario.options, seconds: Math.max(2, Math.round(DEFAULTS.seconds * scale)) };
    if (Number.isFinite(options.creditCents)) options.creditCents = Math.max(1, Math.round(options.creditCents * scale));
    const designs = [{ kind: "rpc" }, ...LEASE_SIZES.map((leaseCents) => ({ kind: "lease", leaseCents })), ...(scenario.extra ?? [])];
    return { scenario, options, results: designs.map((d) => simulate(options, d)) };
  });
}

const ms = (x) => (Number.isFinite(x) ? (x < 10 ? x.toFixed(1) : x.toFixed(0)) : "-");

export function formatTables(all) {
  const out = [];
  for (const { scenario, options, results } of all) {
    const regions = DEFAULTS.regions;
    out.push(`\n#### \`${scenario.id}\`: ${scenario.title}${options.seconds !== DEFAULTS.seconds ? ` (scaled to ${options.seconds} s)` : ""}\n`);
    if (!Number.isFinite(options.creditCents)) {
      out.push(`| design | ${regions.map((r) => `${r.name} (RTT ${r.rttMs} ms)`).join(" | ")} | served/s | shed | object op/s | crashes: lost ¢ |`);
      out.push(`|---|${regions.map(() => "---|").join("")}---|---|---|---|`);
      for (const r of results) {
        const cells = regions.map((region) => {
          const p = r.perRegion[region.name];
          return `${ms(p.p50)} / ${ms(p.p95)} / ${ms(p.p99)}`;
        });
        out.push(
          `| ${r.design} | ${cells.join(" | ")} | ${r.servedPerSecond.toFixed(0)} | ${r.shed} | ${r.objectOpsPerSecond.toFixed(0)} | ${r.crashes}: ${r.lostToCrashesCents} |`,
        );
      }
      out.push("\nRegion cells: added latency p50 / p95 / p99 in ms. Shed: refused by the overloaded object.");
    } else {
      out.push("| design | spent ¢ of credit | 402s | 402s while credit sat in another lease | first 402 at | object op/s | overspend ¢ (bound) | crashes: lost ¢ |");
      out.push("|---|---|---|---|---|---|---|---|");
      for (const r of results) {
        out.push(
          `| ${r.design} | ${r.spentCents} of ${r.creditCents} | ${r.refused} | ${r.falseRefusals} | ${r.firstRefusalAtMs === null ? "-" : `${(r.firstRefusalAtMs / 1000).toFixed(2)} s`} | ${r.objectOpsPerSecond.toFixed(0)} | ${r.overspendCents} (${r.overspendBoundCents}) | ${r.crashes}: ${r.lostToCrashesCents} |`,
        );
      }
    }
  }
  return out.join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const scale = Number(process.env.SIM_SCALE ?? 1);
  const seed = Number(process.env.SIM_SEED ?? DEFAULTS.seed);
  const started = Date.now();
  const all = runAll({ scale, seed });
  const { ttlMs, graceMs, lowWater, heartbeatMs, grantFraction } = LEASE_DEFAULTS;
  console.log(
    `Credit leases vs one RPC per request: object in us-east, ${DEFAULTS.isolatesPerRegion} isolates per region, object op ${DEFAULTS.serviceMs} ms, shed after ${DEFAULTS.shedAfterMs} ms queued; ` +
      `lease TTL ${ttlMs / 1000} s (+${graceMs / 1000} s grace at the object), sync below ${lowWater * 100}% of L or every ${heartbeatMs / 1000} s, a grant takes at most ${grantFraction * 100}% of unleased credit; ` +
      `isolates crash with mean lifetime ${DEFAULTS.crashMeanSeconds} s (pessimistic); seed ${seed}, SIM_SCALE=${scale}. Latency = what billing adds (ms).`,
  );
  console.log(formatTables(all));
  const bad = all.flatMap(({ results }) => results.filter((r) => !r.accounted || r.overspendCents > r.overspendBoundCents));
  console.log(`\nEvery cent accounted for and overspend within its bound in every run: ${bad.length ? "NO" : "yes"} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  if (bad.length) process.exitCode = 1;
}
