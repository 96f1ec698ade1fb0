/**
 * The benchmark's jobs-in-flight rows (issue 14, item 1): a backlog against `maxJobsInFlight` with
 * slow callbacks, on the local runtime, run as `npm run demo` runs it (the synthesized example app,
 * the real handlers, the strict vendor simulator, which refuses job N + 1 and counts it). Each row
 * runs the demo in a child process (as the other emulated rows do) and reports the vendor's own
 * figures (local/vendor-jobs-in-flight.ts):
 *
 * - maxJobsInFlightObserved: the most jobs the vendor saw in progress at once (never above N);
 * - violations: submissions the vendor refused for its limit (0);
 * - occupancy: the time-weighted mean of the jobs in progress while jobs were still being started
 *   (the backlog), divided by N (target >= 0.95);
 * - hand-overs: a place freed at the limit and taken by the next job; their mean and max idle time.
 */
import { spawn } from 'child_process';
import * as path from 'path';
import { bounds, Distribution, LATENCY_MODEL, LatencyModel, round, sample, seededRandom } from './bench-model';
import type { DemoResult } from './demo';
import { DEFAULT_LEAD_MS } from '../src/rate-controlled-queue-consumer/rate-settings';

/** One jobs-in-flight row: the limit, the job duration at the vendor, the backlog. */
export interface JobsInFlightSpec {
  readonly name: string;
  readonly rps: number;
  readonly maxJobsInFlight: number;
  /** How long the vendor runs each job before calling back, ms (the place is held that long and more). */
  readonly jobDurationMs: number;
  readonly requests: number;
}

export function jobsInFlightSpecs(quick: boolean): JobsInFlightSpec[] {
  // The quick run (CI smoke, under 90 s) boots two runtimes already: these rows last minutes.
  return quick ? [] : [
    { name: 'inflight-4-jobs-15s', rps: 10, maxJobsInFlight: 4, jobDurationMs: 15_000, requests: 24 },
    { name: 'inflight-10-jobs-30s', rps: 10, maxJobsInFlight: 10, jobDurationMs: 30_000, requests: 40 },
    // Long enough for 0.95 on the local runtime, whose hand-over idles about 2.7 s (its lead alone is 1.5 s).
    { name: 'inflight-4-jobs-60s', rps: 10, maxJobsInFlight: 4, jobDurationMs: 60_000, requests: 12 },
    // Slow callbacks (issue 14's scenario): the local hand-over's ~2.8 s is then under 3 % of a job.
    { name: 'inflight-4-jobs-120s', rps: 10, maxJobsInFlight: 4, jobDurationMs: 120_000, requests: 12 },
  ];
}

/** What a row reports (the bench's `details`). */
export interface JobsInFlightFigures {
  readonly requests: number;
  readonly succeeded: number;
  readonly lost: number;
  readonly vendorRequests: number;
  readonly maxJobsInFlightObserved: number;
  readonly inFlightViolations: number;
  readonly occupancy: number;
  readonly handOvers: number;
  readonly meanHandOverIdleMs: number;
  readonly maxHandOverIdleMs: number;
  readonly deliveredRps: number;
  readonly elapsedMs: number;
}

/** The figures of a demo run against `maxJobsInFlight`. */
export function jobsInFlightFigures(r: DemoResult, maxJobsInFlight: number): JobsInFlightFigures {
  return {
    requests: r.requests,
    succeeded: r.succeeded,
    lost: r.lost,
    vendorRequests: r.vendorRequests,
    maxJobsInFlightObserved: r.maxJobsInFlightObserved,
    inFlightViolations: r.violationsByLimit.inFlight,
    occupancy: round(r.meanJobsInFlightWhileBacklog / maxJobsInFlight, 3),
    handOvers: r.handOvers.count,
    meanHandOverIdleMs: r.handOvers.meanIdleMs,
    maxHandOverIdleMs: r.handOvers.maxIdleMs,
    deliveredRps: r.deliveredRps,
    elapsedMs: r.elapsedMs,
  };
}

/** Where a row's chart (the demo's vendor requests per second) is written. */
export function chartOf(spec: JobsInFlightSpec, outDir: string): string {
  return path.join(outDir, `${spec.name}-demo.svg`);
}

/** Runs one row: the demo in a child process (its own runtime and memory), JSON on its last line. */
export function runJobsInFlightInChild(spec: JobsInFlightSpec, log: (line: string) => void, outDir = '.bench'): Promise<JobsInFlightFigures> {
  const args = [
    '--requests', String(spec.requests),
    '--rps', String(spec.rps),
    '--max-jobs-in-flight', String(spec.maxJobsInFlight),
    '--callback-delay-ms', String(spec.jobDurationMs),
    // Long enough that no request times out while it waits for a place.
    '--callback-timeout-ms', String(Math.ceil(spec.requests / spec.maxJobsInFlight + 2) * (spec.jobDurationMs + 10_000)),
    '--chart', chartOf(spec, outDir),
    '--json',
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(__dirname, 'demo.ts'), ...args], {
      env: { ...process.env, TS_NODE_PROJECT: path.join(__dirname, 'tsconfig.json') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
      const lines = stderr.split('\n');
      stderr = lines.pop() ?? '';
      for (const line of lines) if (line.startsWith('t=')) log(`  ${line}`);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      if (!last.startsWith('{')) {
        reject(new Error(`the jobs-in-flight scenario ${spec.name} exited with code ${code}: ${stderr || stdout.slice(-2000)}`));
        return;
      }
      resolve(jobsInFlightFigures(JSON.parse(last) as DemoResult, spec.maxJobsInFlight));
    });
  });
}

/**
 * SQS API calls in the Region (SendMessage, ReceiveMessage with no wait, DeleteMessage): assumed,
 * like the model's other control-plane calls (AWS publishes no latency figure for SQS).
 */
const SQS_CALL: Distribution = { kind: 'uniform', minMs: 5, maxMs: 25 };
const MEAN_DRAWS = 4000;

/**
 * The idle time of one hand-over on AWS, from the benchmark's latency model (local/bench-model.ts)
 * and the default lead (RateSettings: 1 s): the hops between the vendor's job end and the next
 * submission it receives, summed as [min, mean, max]. Not measured on AWS: a model, as the
 * benchmark's other modeled rows. The callback's own hop to the webhook (the vendor -> API Gateway
 * -> SQS) is taken as callerToProxy + proxyToVendor (the same kind of hops, reversed).
 */
export interface ModeledIdle {
  readonly minMs: number;
  readonly meanMs: number;
  readonly maxMs: number;
  /** The hops summed, named. */
  readonly hops: string[];
}

export function modeledHandOverIdleMs(model: LatencyModel = LATENCY_MODEL, leadMs: number = DEFAULT_LEAD_MS): ModeledIdle {
  const hops: Array<[string, Distribution]> = [
    ['vendor callback -> webhook (API Gateway) -> callback queue', model.proxyToVendor.distribution],
    ['', model.callerToProxy.distribution],
    ['callback queue -> callback processor', model.queueToConsumer.distribution],
    ['', model.lambdaInvoke.distribution],
    ['processor: correlation Query, token read, place freed (3 DynamoDB calls)', model.dynamodbCall.distribution],
    ['', model.dynamodbCall.distribution],
    ['', model.dynamodbCall.distribution],
    ['the wake: ReceiveMessage, SendMessage, DeleteMessage (assumed 5-25 ms each)', SQS_CALL],
    ['', SQS_CALL],
    ['', SQS_CALL],
    ['request queue -> dispatcher', model.queueToConsumer.distribution],
    ['', model.lambdaInvoke.distribution],
    ['admission: take, correlation read (DynamoDB), SendTaskHeartbeat', model.dynamodbCall.distribution],
    ['', model.dynamodbCall.distribution],
    ['', model.startExecutionCall.distribution],
    ['slot reservation (read and conditional write of the pacer item)', model.dynamodbCall.distribution],
    ['', model.dynamodbCall.distribution],
    [`lead ${leadMs} ms (the vendor caller fires at the slot)`, { kind: 'fixed', ms: leadMs }],
    ['vendor caller -> proxy -> vendor', model.callerToProxy.distribution],
    ['', model.proxyToVendor.distribution],
  ];
  // Means by drawing (every kind of distribution the model has, quantiles included), reproducibly.
  const mean = (d: Distribution) => {
    const random = seededRandom(14);
    let sum = 0;
    for (let i = 0; i < MEAN_DRAWS; i++) sum += sample(d, random);
    return sum / MEAN_DRAWS;
  };
  return {
    minMs: Math.round(hops.reduce((sum, [, d]) => sum + bounds(d)[0], 0)),
    meanMs: Math.round(hops.reduce((sum, [, d]) => sum + mean(d), 0)),
    maxMs: Math.round(hops.reduce((sum, [, d]) => sum + bounds(d)[1], 0)),
    hops: hops.map(([name]) => name).filter((name) => name !== ''),
  };
}

/** Occupancy of a limit whose places each idle `idleMs` per hand-over between jobs of `jobMs`. */
export function occupancyOf(jobMs: number, idleMs: number): number {
  return round(jobMs / (jobMs + idleMs), 3);
}
