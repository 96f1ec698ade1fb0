/**
 * The latency model of the benchmark: every hop a request crosses between the queue and the
 * vendor, each with its distribution and where the figure comes from. Declared once, here; the
 * modeled scenarios (local/bench-sim.ts) draw from it and `npm run bench -- --json` prints it.
 *
 * Distributions are bounded on purpose. The pacing guarantee is stated under the assumption that
 * the time from "fire" to "arrival at the vendor" spreads by less than what the slot interval
 * leaves for it; a model with an unbounded tail would only restate that assumption as a
 * probability. `npm run bench -- --post-fire-spread-ms N` shows what happens when a deployment's
 * real spread is larger than the declared one.
 */
import * as pacer from '../src/rate-controlled-queue-consumer/pacer';

/** A bounded distribution of milliseconds. */
export type Distribution =
  | { readonly kind: 'fixed'; readonly ms: number }
  /** Measured: `points` are [cumulative fraction, ms] pairs from (0, min) to (1, max), linear in between. */
  | { readonly kind: 'quantiles'; readonly points: ReadonlyArray<readonly [number, number]> }
  | { readonly kind: 'uniform'; readonly minMs: number; readonly maxMs: number }
  | { readonly kind: 'triangular'; readonly minMs: number; readonly modeMs: number; readonly maxMs: number };

export interface Hop {
  readonly distribution: Distribution;
  /** Where the figure comes from: a document, a public measurement, or "assumed". */
  readonly source: string;
}

/** Every hop of the model, by name. */
export interface LatencyModel {
  /** SQS event source mapping: a message becomes visible -> the consumer Lambda runs with it. */
  readonly queueToConsumer: Hop;
  /** One DynamoDB call of the pacer (GetItem or conditional UpdateItem), round trip. */
  readonly dynamodbCall: Hop;
  /** StartExecution API call, round trip (the dispatcher's own call). */
  readonly startExecutionCall: Hop;
  /** Express workflow: StartExecution accepted -> first Task state runs. */
  readonly expressStart: Hop;
  /** Step Functions Task -> Lambda handler running (warm). */
  readonly lambdaInvoke: Hop;
  /** Extra time of a cold start (init of a bundled Node.js handler). */
  readonly lambdaColdStart: Hop;
  /** Fraction of vendor-caller invocations that meet a cold start. */
  readonly coldStartFraction: number;
  /** How late a timer (setTimeout in a Lambda) fires after the time it was set for. */
  readonly timerLateness: Hop;
  /** Caller fires the SigV4 request -> API Gateway proxy has it (network in the Region + auth + throttle check). */
  readonly callerToProxy: Hop;
  /** API Gateway HTTP_PROXY integration -> request arrives at the vendor (internet). */
  readonly proxyToVendor: Hop;
  /** The vendor answers a submission (used by the synchronous baseline only). */
  readonly vendorResponse: Hop;
}

export const LATENCY_MODEL: LatencyModel = {
  queueToConsumer: {
    distribution: { kind: 'uniform', minMs: 10, maxMs: 60 },
    source: 'assumed (Lambda event source mappings long-poll SQS; AWS publishes no latency figure for a non-empty queue)',
  },
  dynamodbCall: {
    distribution: { kind: 'triangular', minMs: 3, modeMs: 5, maxMs: 15 },
    source: 'DynamoDB "single-digit millisecond performance at any scale" (https://aws.amazon.com/dynamodb/); tail assumed',
  },
  startExecutionCall: {
    distribution: { kind: 'triangular', minMs: 10, modeMs: 20, maxMs: 50 },
    source: 'assumed (control-plane style API call in the Region; no published figure)',
  },
  expressStart: {
    distribution: { kind: 'triangular', minMs: 10, modeMs: 30, maxMs: 150 },
    source: 'assumed: AWS publishes no start latency for Express workflows, only start rates '
      + '(https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html); the spread of this hop is why pacing '
      + 'sits after it, in the vendor caller',
  },
  lambdaInvoke: {
    distribution: { kind: 'triangular', minMs: 5, modeMs: 12, maxMs: 40 },
    source: 'assumed (warm synchronous Invoke from a Task state, in the Region)',
  },
  lambdaColdStart: {
    distribution: { kind: 'uniform', minMs: 150, maxMs: 600 },
    source: 'public measurements of Node.js Init Duration, 100-500 ms for small bundles '
      + '(https://dev.to/kylehigginson/analysing-cold-starts-on-node-lambda-3i05, '
      + 'https://cloudkiln.com/blog/lambda-cold-start-optimization); AWS Lambda execution environment lifecycle '
      + '(https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html)',
  },
  coldStartFraction: 0.01,
  timerLateness: {
    distribution: { kind: 'uniform', minMs: 0, maxMs: 2 },
    source: 'assumed (Node.js setTimeout fires no earlier than asked, ~1 ms late on an idle event loop; '
      + 'https://nodejs.org/api/timers.html#settimeoutcallback-delay-args)',
  },
  callerToProxy: {
    distribution: { kind: 'uniform', minMs: 4, maxMs: 10 },
    source: 'assumed; API Gateway reports its own overhead as Latency - IntegrationLatency '
      + '(https://docs.aws.amazon.com/apigateway/latest/developerguide/monitoring-cloudwatch.html)',
  },
  proxyToVendor: {
    distribution: { kind: 'uniform', minMs: 5, maxMs: 12 },
    source: 'assumed (vendor in or near the same Region, kept-alive connection); measure yours: IntegrationLatency '
      + 'minus the vendor\'s own processing time',
  },
  vendorResponse: {
    distribution: { kind: 'uniform', minMs: 200, maxMs: 3000 },
    source: 'assumed, as in issue 4 (vendor latency 0.2-3 s)',
  },
};

/** Lower and upper bound of a distribution. */
export function bounds(d: Distribution): [number, number] {
  switch (d.kind) {
    case 'fixed': return [d.ms, d.ms];
    case 'uniform': return [d.minMs, d.maxMs];
    case 'triangular': return [d.minMs, d.maxMs];
    case 'quantiles': return [d.points[0][1], d.points[d.points.length - 1][1]];
  }
}

/** Spread (max - min) of a distribution. */
export function spread(d: Distribution): number {
  const [lo, hi] = bounds(d);
  return hi - lo;
}

/** Draws one value with `random` (uniform in [0, 1)). */
export function sample(d: Distribution, random: () => number): number {
  switch (d.kind) {
    case 'fixed': return d.ms;
    case 'uniform': return d.minMs + random() * (d.maxMs - d.minMs);
    case 'quantiles': {
      const u = random();
      const k = d.points.findIndex(([p]) => p >= u);
      if (k <= 0) return d.points[0][1];
      const [p0, v0] = d.points[k - 1];
      const [p1, v1] = d.points[k];
      return v0 + ((u - p0) / (p1 - p0)) * (v1 - v0);
    }
    case 'triangular': {
      const { minMs: a, modeMs: c, maxMs: b } = d;
      if (b === a) return a;
      const u = random();
      const f = (c - a) / (b - a);
      return u < f ? a + Math.sqrt(u * (b - a) * (c - a)) : b - Math.sqrt((1 - u) * (b - a) * (b - c));
    }
  }
}

/** A seeded random source (Park-Miller minimal standard generator), so a run is reproducible. */
export function seededRandom(seed: number): () => number {
  const m = 2147483647;
  let x = Math.abs(Math.floor(seed)) % m || 1;
  // 48271 * (2^31 - 1) < 2^53: the product is exact in a double.
  return () => {
    x = (x * 48271) % m;
    return (x - 1) / (m - 1);
  };
}

/**
 * The modules that may export the design's knobs: the rate settings (when the vendor-caller design
 * is merged) and the pacer. Loaded by name so that the bench runs with or without them.
 */
function knobModules(): Array<{ name: string; exports: Record<string, unknown> }> {
  const modules: Array<{ name: string; exports: Record<string, unknown> }> = [];
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    modules.push({ name: 'rate-settings.ts', exports: require('../src/rate-controlled-queue-consumer/rate-settings') });
  } catch {
    // Not there (yet): the pacer's exports and the bench's defaults apply.
  }
  modules.push({ name: 'pacer.ts', exports: pacer as unknown as Record<string, unknown> });
  return modules;
}

/** Reads the first number exported under one of `names` (modules in order), else `fallback`. */
function fromPacer(names: string[], fallback: number): { value: number; from: string } {
  for (const module of knobModules()) {
    for (const name of names) {
      if (typeof module.exports[name] === 'number') return { value: module.exports[name] as number, from: `${module.name} ${name}` };
    }
  }
  return { value: fallback, from: 'bench default (not exported by rate-settings.ts or pacer.ts)' };
}

/**
 * The pacing design's knobs. Read from pacer.ts when it exports them, so the bench follows the
 * design as it changes; the fallbacks are the design's stated values.
 */
export interface PacingKnobs {
  /** `L`: slot interval `I = (1000 + L + 1 ms) / floor(R)` (the 1 ms: the margin at the window's edge). */
  readonly latenessToleranceMs: number;
  /** The dispatcher starts the Express execution this long before its slot. */
  readonly leadMs: number;
  /**
   * A vendor caller that wakes up later than slot + this gives the slot up and reserves again.
   * Default: what `L` leaves after the declared spread of the hops after the fire.
   */
  readonly fireToleranceMs: number;
  readonly sources: Record<string, string>;
}

export function pacingKnobs(model: LatencyModel = LATENCY_MODEL, overrides: Partial<Omit<PacingKnobs, 'sources'>> = {}): PacingKnobs {
  const l = fromPacer(['DEFAULT_VENDOR_CALL_LATENESS_MS', 'DEFAULT_LATENESS_TOLERANCE_MS'], 30);
  const lead = fromPacer(['DEFAULT_LEAD_MS', 'DEFAULT_START_LEAD_MS', 'DEFAULT_SLOT_LEAD_MS'], 1000);
  const latenessToleranceMs = overrides.latenessToleranceMs ?? l.value;
  const postFire = postFireSpreadMs(model);
  const tol = fromPacer(['DEFAULT_FIRE_TOLERANCE_MS'], Math.max(0, latenessToleranceMs - postFire));
  return {
    latenessToleranceMs,
    leadMs: overrides.leadMs ?? lead.value,
    fireToleranceMs: overrides.fireToleranceMs ?? tol.value,
    sources: {
      latenessToleranceMs: overrides.latenessToleranceMs !== undefined ? 'command line' : l.from,
      leadMs: overrides.leadMs !== undefined ? 'command line' : lead.from,
      fireToleranceMs: overrides.fireToleranceMs !== undefined ? 'command line'
        : tol.from.startsWith('bench') ? `L - spread after the fire (${postFire} ms), not exported` : tol.from,
    },
  };
}

/** Spread of everything between "the caller decides to fire" and "the vendor has it". */
export function postFireSpreadMs(model: LatencyModel): number {
  return spread(model.timerLateness.distribution) + spread(model.callerToProxy.distribution) + spread(model.proxyToVendor.distribution);
}

/** Best possible utilization when arrivals spread by `spreadMs` after the pacer: 1000 / (1000 + spread). */
export function uMax(spreadMs: number): number {
  return 1000 / (1000 + spreadMs);
}

/** A copy of the model whose post-fire hops are widened to a total spread of `spreadMs` (sensitivity runs). */
export function withPostFireSpread(model: LatencyModel, spreadMs: number): LatencyModel {
  const [lo] = bounds(model.proxyToVendor.distribution);
  const others = spread(model.timerLateness.distribution) + spread(model.callerToProxy.distribution);
  return {
    ...model,
    proxyToVendor: {
      distribution: { kind: 'uniform', minMs: lo, maxMs: lo + Math.max(0, spreadMs - others) },
      source: `widened on the command line to a post-fire spread of ${spreadMs} ms`,
    },
  };
}

/** The model as JSON for the output's `latencyModel`. */
export function describeModel(model: LatencyModel, knobs: PacingKnobs): Record<string, unknown> {
  const hops: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(model)) {
    if (typeof value === 'object' && value !== null && 'distribution' in value) {
      hops[name] = { ...(value as Hop).distribution, source: (value as Hop).source };
    }
  }
  const postFire = postFireSpreadMs(model);
  return {
    hops,
    coldStartFraction: model.coldStartFraction,
    pacing: {
      design: 'vendor caller fires at a slot reserved by the dispatcher; I = (1000 + L + 1) / floor(R)',
      latenessToleranceMs: knobs.latenessToleranceMs,
      leadMs: knobs.leadMs,
      fireToleranceMs: knobs.fireToleranceMs,
      sources: knobs.sources,
    },
    postFireSpreadMs: postFire,
    arrivalSpreadMs: knobs.fireToleranceMs + postFire,
    uMaxForModeledSpread: round(uMax(knobs.fireToleranceMs + postFire), 4),
    uMaxForL: round(uMax(knobs.latenessToleranceMs), 4),
  };
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
