/**
 * The benchmark's per-key jobs-in-flight rows (issue 15; design docs/design/per-key-limits.md 3.3),
 * on the real dispatcher in virtual time (local/bench-dispatch-model.ts): requests of a key at its
 * `maxJobsInFlight` are set aside; each job ends a drawn time after its call reached the vendor and
 * its places are freed through the real freers' functions. Two rows, the same load:
 *
 * - `inflight-keys-recheck`: the plain recheck (`KEY_PLACE_TICKETS=off`): every set-aside request
 *   comes back after `recheckMs` (2 s);
 * - `inflight-keys-ticket`: the ticket estimate (the default): a request comes back after
 *   `max(recheck, ahead * meanJobMs / maxJobsInFlight_k)`.
 *
 * The load: 10 keys with `maxJobsInFlight` 2, 3, 4, 5, 2, 3, 4, 5, 2, 3 (rate 10 RPS each, a 20 RPS
 * contract with 100 places: neither binds), jobs of 2-6 s (uniform, mean 4 s). The hot key
 * (`key-00`, 2 places, 0.5 jobs/s) is offered 3 times what its places carry (1.5/s), each other key
 * 1.2 times (Poisson), for 60 s; the run lasts until every request reached the vendor.
 *
 * Figures per key, while the key has requests waiting (offered, no place yet): place idle time (the
 * place-milliseconds its places stay free), utilization of its places (1 - idle / (places x time)),
 * the hand-over idle time (from a place's release to the key's next take); and SQS requests per
 * call. The ticket row states the design's claim as its target: a place idle at most one recheck
 * interval longer per hand-over than with the plain recheck (design 3.3), with fewer SQS requests.
 */
import {
  DispatchModelRun, KeyPlacesChange, latencyFigures, ModeledRequest, poissonArrivals, runDispatchModel, sqsRequestsPerCall,
} from './bench-dispatch-model';
import { perKeyEnv, runDetails } from './bench-keys';
import { LatencyModel, PacingKnobs, round } from './bench-model';
import { ConsumerEnv } from '../src/shared/env';
import type { KeyLimitsSpec } from '../src/shared/key-limits';
import { DEFAULT_PRIORITY_AGING_MS } from '../src/shared/request-priority';

export const INFLIGHT_KEY_SCENARIOS = ['inflight-keys-recheck', 'inflight-keys-ticket'] as const;
export type InflightKeyScenarioName = typeof INFLIGHT_KEY_SCENARIOS[number];

export interface InflightKeysLoad {
  readonly contractRps: number;
  readonly contractMaxJobsInFlight: number;
  readonly keyRps: number;
  /** `maxJobsInFlight` of each key, in key order (`key-00`, `key-01`, ...). */
  readonly keyPlaces: readonly number[];
  readonly minJobMs: number;
  readonly maxJobMs: number;
  /** What the hot key (`key-00`) and each other key are offered, as a multiple of what their places carry (places / mean job time). */
  readonly hotOverload: number;
  readonly otherOverload: number;
  readonly durationMs: number;
  readonly recheckMs: number;
  readonly seed: number;
}

export const INFLIGHT_KEYS: InflightKeysLoad = {
  contractRps: 20,
  contractMaxJobsInFlight: 100,
  keyRps: 10,
  keyPlaces: [2, 3, 4, 5, 2, 3, 4, 5, 2, 3],
  minJobMs: 2000,
  maxJobMs: 6000,
  hotOverload: 3,
  otherOverload: 1.2,
  durationMs: 60_000,
  recheckMs: 2000,
  seed: 33,
};

export const INFLIGHT_HOT_KEY = 'key-00';

const keyName = (i: number) => `key-${String(i).padStart(2, '0')}`;

/** Each key's limits: its places, a rate that does not bind. */
export function inflightKeyLimits(load: InflightKeysLoad): Map<string, KeyLimitsSpec> {
  return new Map(load.keyPlaces.map((places, i) => [keyName(i), {
    requestsPerSecond: load.keyRps, maxJobsInFlight: places, quotas: {}, priorityAgingMs: DEFAULT_PRIORITY_AGING_MS, paused: false,
  }]));
}

/** Poisson arrivals per key at its overload times what its places carry, merged in time order. */
export function inflightRequests(load: InflightKeysLoad): ModeledRequest[] {
  const meanJobMs = (load.minJobMs + load.maxJobMs) / 2;
  return load.keyPlaces.flatMap((places, i) => {
    const rps = (i === 0 ? load.hotOverload : load.otherOverload) * places * 1000 / meanJobMs;
    return poissonArrivals(rps, load.durationMs, load.seed + i, () => keyName(i)).map(({ atMs, value }) => ({ atMs, key: value }));
  }).sort((a, b) => a.atMs - b.atMs);
}

/** Runs the load with the ticket estimate on or off. */
export async function runInflightKeys(load: InflightKeysLoad, tickets: boolean, model: LatencyModel, knobs: PacingKnobs): Promise<DispatchModelRun> {
  const limits = inflightKeyLimits(load);
  return runDispatchModel({
    rps: load.contractRps,
    requests: inflightRequests(load),
    keyLimits: limits,
    dispatcherEnv: {
      ...perKeyEnv(load),
      [ConsumerEnv.MAX_JOBS_IN_FLIGHT]: String(load.contractMaxJobsInFlight),
      [ConsumerEnv.MAX_JOB_DURATION_MS]: String(10 * 60_000),
      [ConsumerEnv.JOB_PLACE_RECHECK_MS]: String(load.recheckMs),
      ...(tickets ? {} : { [ConsumerEnv.KEY_PLACE_TICKETS]: 'off' }),
    },
    jobs: { durationMs: (random) => load.minJobMs + random() * (load.maxJobMs - load.minJobMs) },
    model,
    knobs,
    seed: load.seed,
  });
}

/** One key's place figures while it had requests waiting. */
export interface KeyPlaceFigures {
  readonly places: number;
  /** Time with at least one request of the key offered and without a place, ms. */
  readonly waitingMs: number;
  /** Place-milliseconds free during that time. */
  readonly idlePlaceMs: number;
  /** 1 - idle / (places x waitingMs). */
  readonly utilization: number;
  /** Releases while requests waited, and the mean / max time to the key's next take after each. */
  readonly handOvers: number;
  readonly meanHandOverIdleMs: number;
  readonly maxHandOverIdleMs: number;
}

/**
 * A key's place figures from its enqueue times and its places-held changes: waiting(t) = offered by t
 * minus places taken by t (each rise of the places held is one take).
 */
export function keyPlaceFigures(places: number, enqueuedAt: readonly number[], changes: readonly KeyPlacesChange[]): KeyPlaceFigures {
  type Event = { at: number; kind: 'offer' } | { at: number; kind: 'held'; held: number };
  const events: Event[] = [
    ...enqueuedAt.map((at): Event => ({ at, kind: 'offer' })),
    ...changes.map((c): Event => ({ at: c.at, kind: 'held', held: c.held })),
  ].sort((a, b) => a.at - b.at || (a.kind === 'offer' ? -1 : 1));
  let offered = 0;
  let taken = 0;
  let held = 0;
  let last = events[0]?.at ?? 0;
  let waitingMs = 0;
  let idlePlaceMs = 0;
  const openReleases: number[] = [];
  const handOverIdle: number[] = [];
  for (const event of events) {
    if (offered - taken > 0) {
      waitingMs += event.at - last;
      idlePlaceMs += Math.max(0, places - held) * (event.at - last);
    }
    last = event.at;
    if (event.kind === 'offer') {
      offered++;
      continue;
    }
    if (event.held > held) {
      taken += event.held - held;
      for (let n = 0; n < event.held - held && openReleases.length > 0; n++) handOverIdle.push(event.at - openReleases.shift()!);
    } else if (event.held < held && offered - taken > 0) {
      for (let n = 0; n < held - event.held; n++) openReleases.push(event.at);
    }
    held = event.held;
  }
  const mean = handOverIdle.length > 0 ? handOverIdle.reduce((a, b) => a + b, 0) / handOverIdle.length : 0;
  return {
    places,
    waitingMs: Math.round(waitingMs),
    idlePlaceMs: Math.round(idlePlaceMs),
    utilization: waitingMs > 0 ? round(1 - idlePlaceMs / (places * waitingMs), 4) : 1,
    handOvers: handOverIdle.length,
    meanHandOverIdleMs: Math.round(mean),
    maxHandOverIdleMs: Math.round(Math.max(0, ...handOverIdle)),
  };
}

/** Every key's figures of a run. */
export function inflightFigures(run: DispatchModelRun, load: InflightKeysLoad): Map<string, KeyPlaceFigures> {
  const requests = inflightRequests(load);
  const out = new Map<string, KeyPlaceFigures>();
  load.keyPlaces.forEach((places, i) => {
    const key = keyName(i);
    const enqueued = requests.filter((r) => r.key === key).map((r) => run.runStartMs + r.atMs);
    out.set(key, keyPlaceFigures(places, enqueued, run.keyPlaces.filter((c) => c.key === key)));
  });
  return out;
}

/** The row's details: the hot key's and all keys' place figures, latency, SQS requests per call. */
export function inflightDetails(
  run: DispatchModelRun, load: InflightKeysLoad, baseline?: { run: DispatchModelRun },
): Record<string, number | string> {
  const figures = inflightFigures(run, load);
  const hot = figures.get(INFLIGHT_HOT_KEY)!;
  const all = [...figures.values()];
  const sum = (f: (k: KeyPlaceFigures) => number) => all.reduce((a, k) => a + f(k), 0);
  const handOvers = sum((k) => k.handOvers);
  const others = [...figures].filter(([key]) => key !== INFLIGHT_HOT_KEY).map(([, k]) => k);
  const hotCalls = run.calls.filter((c) => c.key === INFLIGHT_HOT_KEY);
  const othersIdle = others.reduce((a, k) => a + k.idlePlaceMs, 0);
  const othersPlaceTime = others.reduce((a, k) => a + k.places * k.waitingMs, 0);
  const meanHandOverIdleMs = handOvers > 0 ? Math.round(sum((k) => k.meanHandOverIdleMs * k.handOvers) / handOvers) : 0;
  const details: Record<string, number | string> = {
    keys: load.keyPlaces.length,
    keyPlaces: load.keyPlaces.join(','),
    jobMs: `${load.minJobMs}-${load.maxJobMs}`,
    recheckMs: load.recheckMs,
    hotKeyPlaceUtilization: hot.utilization,
    hotKeyIdlePlaceMs: hot.idlePlaceMs,
    hotKeyWaitingMs: hot.waitingMs,
    hotKeyMeanHandOverIdleMs: hot.meanHandOverIdleMs,
    hotKeyMaxHandOverIdleMs: hot.maxHandOverIdleMs,
    otherKeysPlaceUtilization: round(1 - othersIdle / Math.max(1, othersPlaceTime), 4),
    idlePlaceMsAllKeys: sum((k) => k.idlePlaceMs),
    idlePlaceMsPerKey: all.map((k) => k.idlePlaceMs).join(','),
    handOvers,
    meanHandOverIdleMs,
    maxHandOverIdleMs: Math.max(...all.map((k) => k.maxHandOverIdleMs)),
    hotP50AddedLatencyMs: latencyFigures(hotCalls).p50 ?? 'n/a',
    hotP99AddedLatencyMs: latencyFigures(hotCalls).p99 ?? 'n/a',
    keyPlaceSetAsides: run.sqsRequests.SendMessage - run.requests,
    // How often one request came back at most (the line's turns passing unserved showed here: 74).
    maxSetAsidesPerRequest: run.maxCopiesPerRequest,
    ...runDetails(run),
  };
  if (baseline) {
    const base = inflightDetails(baseline.run, load);
    details.recheckMeanHandOverIdleMs = base.meanHandOverIdleMs;
    details.recheckHotKeyPlaceUtilization = base.hotKeyPlaceUtilization;
    details.recheckSqsRequestsPerCall = base.sqsRequestsPerCall;
    details['target.handOverIdleWithinOneRecheckOfRecheck'] = meanHandOverIdleMs <= Number(base.meanHandOverIdleMs) + load.recheckMs ? 'pass' : 'fail';
    details['target.fewerSqsRequestsPerCall'] = sqsRequestsPerCall(run) < Number(base.sqsRequestsPerCall) ? 'pass' : 'fail';
  }
  return details;
}
