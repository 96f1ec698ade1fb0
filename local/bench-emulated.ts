/**
 * Emulated scenarios: the synthesized example app runs on the local runtime (LocalRuntime, the
 * real bundled handlers, the state machines' own definitions, the REST API proxy with its stage
 * throttle) against the strict VendorSimulator, as `npm run demo` does. Whatever pacing design the
 * library synthesizes is what is measured.
 *
 * The vendor runs in its own worker thread (local/vendor-host.ts) and notes when each request id
 * first arrived, so added latency is per request: main workflow start (its first state sends to
 * the request queue) -> first arrival at the vendor.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { addedLatency, maxInAnyWindow, utilization, violations, windowLimit } from './bench-metrics';
import { round } from './bench-model';
import { LOCAL_PACING, vendorCallerWarmPool, yieldToDataPlane } from './local-pacing';
import { LocalRuntime } from './runtime';
import { VendorSimulatorHost } from './vendor-host';
import { buildExampleApp } from '../examples/app';
import { VendorContract, VendorLimit, VendorQuota } from '../src';
import type { NamedLimitSpec } from '../src/contract/named-limit';

const VENDOR_HOST = 'vendor.example.com';

export interface EmulatedOptions {
  readonly rps: number;
  /** `requests` queued up front, or `fraction` of R offered for `durationMs`. */
  readonly load: { kind: 'backlog'; requests: number } | { kind: 'fraction'; fraction: number; durationMs: number };
  readonly log: (line: string) => void;
  /** @default 1000 */
  readonly warmupMs?: number;
  /** Where the handlers' logs go (default: discarded), for diagnosis. */
  readonly logFile?: string;
  /** Log level of the handlers when `logFile` is set. @default 'INFO' */
  readonly logLevel?: string;
  /**
   * A fixed-period quota (issue 14) in the contract (`VendorQuota.every`) and at the vendor
   * simulator, which counts every arrival against it. @default - none
   */
  readonly quota?: { readonly limit: number; readonly periodMs: number };
  /**
   * Named limits (issue 14, item 3) in the contract (`VendorLimit`) and at the vendor simulator,
   * which refuses a call beyond any of them and counts it. @default - none
   */
  readonly limits?: readonly NamedLimitSpec[];
}

/** Requests of the warm-up: about 3 seconds of the contract, at least 3. */
export function warmupRequests(rps: number): number {
  return Math.max(3, Math.ceil(3 * rps));
}

export interface EmulatedRun {
  readonly arrivals: number[];
  /** First arrival at the vendor of each request id (ms since the epoch). */
  readonly firstArrivals: Record<string, number>;
  readonly requests: number;
  readonly delivered: number;
  readonly utilization: number;
  readonly vendorMaxRequestsInAnySecond: number;
  readonly vendorViolations: number;
  readonly proxy429: number;
  readonly vendor429: number;
  readonly p50AddedLatencyMs: number | null;
  readonly p99AddedLatencyMs: number | null;
  readonly elapsedMs: number;
  /** The warm-up before the measured run (not in the figures above). */
  readonly warmup: { readonly requests: number; readonly proxy429: number; readonly vendor429: number };
  /**
   * With a quota, as the vendor counted it (warm-up included: it spends units too): the most
   * arrivals in one period, the arrivals beyond a period's limit, and the measured calls per second
   * against the quota's own rate (limit / period).
   */
  readonly quota?: { readonly maxInAnyPeriod: number; readonly violations: number; readonly quotaUtilization: number };
  /**
   * With named limits, as the vendor counted them (warm-up included): per limit, the most of its
   * calls in any 1 s window and the calls it refused as beyond the limit.
   */
  readonly limits?: { readonly maxInAnyWindow: Record<string, number>; readonly violations: Record<string, number> };
}

export async function runEmulated(options: EmulatedOptions): Promise<EmulatedRun> {
  const started = Date.now();
  const { rps, log } = options;
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-async-external-api-bench-'));
  const { app, stack } = buildExampleApp({
    vendorUrl: `https://${VENDOR_HOST}/v1/jobs`,
    ...(options.quota || options.limits
      ? {
        contract: VendorContract.of({
          requestsPerSecond: rps,
          ...(options.quota ? { quotas: [VendorQuota.every(Duration.millis(options.quota.periodMs), options.quota.limit)] } : {}),
          ...(options.limits ? { limits: options.limits.map((limit) => VendorLimit.of(limit)) } : {}),
        }),
      }
      : { requestsPerSecond: rps }),
    callbackTimeout: Duration.minutes(10),
    // The local runtime's pacing knobs (see local/local-pacing.ts), not the AWS defaults.
    lead: Duration.millis(LOCAL_PACING.leadMs),
    fireTolerance: Duration.millis(LOCAL_PACING.fireToleranceMs),
    latenessTolerance: Duration.millis(LOCAL_PACING.latenessToleranceMs),
    // Submissions only: the example's result fetch would double the emulators' load per order.
    fetchResult: false,
  }, outdir);
  app.synth();

  let runtime: LocalRuntime | undefined;
  const vendor = await VendorSimulatorHost.start({
    requestsPerSecond: rps,
    latencyMs: 100,
    callbackDelayMs: 200,
    seed: 42,
    ...(options.quota ? { quota: options.quota } : {}),
    ...(options.limits ? { limits: options.limits, limitBasePath: '/v1/jobs' } : {}),
  });
  try {
    runtime = await LocalRuntime.start({
      assemblyDir: outdir,
      removeAssemblyDirOnStop: true,
      stackName: stack.stackName,
      hostMap: { [VENDOR_HOST]: vendor.base },
      ...(options.logFile ? { logFile: options.logFile, functionEnv: { POWERTOOLS_LOG_LEVEL: options.logLevel ?? 'INFO' } } : {}),
    });
    vendor.mapApis(runtime.apiGateway.ports);
    // Steady state: warm vendor callers (see local/local-pacing.ts).
    const caller = stack.orchestrator.dispatch.vendorCaller;
    if (caller) await runtime.prewarm(caller, vendorCallerWarmPool(rps, LOCAL_PACING.leadMs));
    yieldToDataPlane();
    const mainArn = runtime.stateMachineArn(stack.mainWorkflow);
    const executions: Array<{ arn: string; requestId: string }> = [];
    const submit = async (requestId: string, i: number) => {
      const { executionArn } = await runtime!.sfn.startExecution(mainArn, JSON.stringify({
        orderId: requestId,
        order: { orderId: requestId, sku: `sku-${i % 7}`, quantity: 1 },
      }));
      return { arn: executionArn, requestId };
    };
    const reachedVendor = async (ids: string[]) => {
      const seen = (await vendor.stats()).requests;
      return ids.filter((id) => seen[id]?.firstSubmissionAtMs !== undefined).length;
    };

    // Warm-up (not measured): a few seconds of requests through every hop, so that the run
    // measures the steady state the definitions speak of, not the emulators' start (JIT compiling
    // the Step Functions interpreter and the SDK clients, the callback processors' cold starts).
    const warmupIds = Array.from({ length: warmupRequests(rps) }, (_, i) => `warmup-${i}`);
    const warmups = await Promise.all(warmupIds.map((id, i) => submit(id, i)));
    const warmedBy = Date.now() + 60_000;
    while (Date.now() < warmedBy && (await reachedVendor(warmupIds) < warmupIds.length
      || warmups.some((w) => runtime!.sfn.describeExecution(w.arn).status === 'RUNNING'))) {
      await new Promise((r) => setTimeout(r, 200));
    }
    // The warm-up's 429s are reported apart: the measured rows count the steady state only.
    const warmup429 = { proxy: await runtime.proxy429s(), vendor: (await vendor.stats()).rejected429ByContract };
    log(`  warm-up: ${warmupIds.length} requests done (429s: proxy ${warmup429.proxy}, vendor ${warmup429.vendor})`);

    let total: number;
    let measuredFrom: number;
    if (options.load.kind === 'backlog') {
      total = options.load.requests;
      // A steady backlog: every request is in the queue before the consumer polls again (behind a
      // disabled event source mapping, as UpdateEventSourceMapping does on AWS).
      const consumer = stack.orchestrator.consumer;
      await runtime.setEventSourceEnabled(consumer.function, false);
      for (let i = 0; i < total; i++) executions.push(await submit(`order-${i}`, i));
      const filledBy = Date.now() + 60_000;
      while (await runtime.queueDepth(consumer.queue) < total && Date.now() < filledBy) await new Promise((r) => setTimeout(r, 200));
      log(`  queued ${total} requests`);
      measuredFrom = Date.now();
      await runtime.setEventSourceEnabled(consumer.function, true);
    } else {
      const spacing = 1000 / (options.load.fraction * rps);
      total = Math.max(1, Math.floor(options.load.durationMs / spacing));
      const t0 = Date.now();
      measuredFrom = t0;
      for (let i = 0; i < total; i++) {
        const wait = t0 + i * spacing - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        executions.push(await submit(`order-${i}`, i));
      }
      log(`  offered ${total} requests at ${options.load.fraction * rps} rps`);
    }

    // With a quota the calls take at least a period per `limit` of them.
    const quotaMs = options.quota ? Math.ceil(total / options.quota.limit + 1) * options.quota.periodMs : 0;
    const deadline = Date.now() + Math.max((total / rps) * 3000, 2 * quotaMs) + 60_000;
    const measuredIds = executions.map((e) => e.requestId);
    let lastLog = Date.now();
    for (let n = 0; n < total && Date.now() < deadline;) {
      await new Promise((r) => setTimeout(r, 500));
      n = await reachedVendor(measuredIds);
      if (Date.now() - lastLog >= 5000) {
        lastLog = Date.now();
        log(`  ${n}/${total} reached the vendor`);
      }
    }

    // Every call the vendor saw after the warm-up counts, whatever request it belongs to.
    const arrivals = (await vendor.arrivals()).filter((t) => t >= measuredFrom);
    const stats = await vendor.stats();
    const firstArrival = (requestId: string) => stats.requests[requestId]?.firstSubmissionAtMs;
    const pairs: Array<{ enqueuedAt: number; arrivedAt: number }> = [];
    for (const e of executions) {
      const arrivedAt = firstArrival(e.requestId);
      if (arrivedAt !== undefined) pairs.push({ enqueuedAt: runtime.sfn.describeExecution(e.arn).startDate.getTime(), arrivedAt });
    }
    const lat = addedLatency(pairs);
    const warmup = options.warmupMs ?? 1000;
    return {
      arrivals,
      firstArrivals: Object.fromEntries(measuredIds.filter((id) => firstArrival(id) !== undefined).map((id) => [id, firstArrival(id)!])),
      requests: total,
      delivered: pairs.length,
      utilization: round(Math.min(1, utilization(arrivals, rps, warmup, warmup)), 4),
      vendorMaxRequestsInAnySecond: maxInAnyWindow(arrivals),
      vendorViolations: violations(arrivals, windowLimit(rps)),
      proxy429: (await runtime.proxy429s()) - warmup429.proxy,
      vendor429: stats.rejected429ByContract - warmup429.vendor,
      warmup: { requests: warmupIds.length, proxy429: warmup429.proxy, vendor429: warmup429.vendor },
      p50AddedLatencyMs: lat.p50,
      p99AddedLatencyMs: lat.p99,
      elapsedMs: Date.now() - started,
      ...(options.quota ? { quota: quotaFigures(arrivals, stats, options.quota) } : {}),
      ...(options.limits ? { limits: { maxInAnyWindow: stats.limitMaxInAnyWindow, violations: stats.limitViolations } } : {}),
    };
  } finally {
    await runtime?.stop();
    await vendor.stop();
  }
}

/** The quota's figures (see EmulatedRun.quota): the vendor's counts, and measured calls/s over limit/period. */
function quotaFigures(
  arrivals: number[], stats: { quotaMaxInAnyPeriod: number; quotaViolations: number }, quota: { limit: number; periodMs: number },
) {
  const sorted = [...arrivals].sort((a, b) => a - b);
  const spanMs = sorted.length > 1 ? sorted[sorted.length - 1] - sorted[0] : 0;
  // Calls per period over whole periods spanned (first to last arrival), against the limit.
  const periods = Math.max(1, Math.ceil(spanMs / quota.periodMs));
  return {
    maxInAnyPeriod: stats.quotaMaxInAnyPeriod,
    violations: stats.quotaViolations,
    quotaUtilization: round(Math.min(1, sorted.length / (periods * quota.limit)), 4),
  };
}

/**
 * Runs one emulated scenario in a fresh Node.js process, as `npm run demo` runs: each scenario gets
 * its own OS priorities (yieldToDataPlane lowers this process's main thread for good, and the
 * threads a later scenario would start inherit that), its own JIT warm-up and its own emulators.
 */
export function runEmulatedInChild(options: Omit<EmulatedOptions, 'log'>, log: (line: string) => void): Promise<EmulatedRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', __filename, JSON.stringify(options)], {
      env: { ...process.env, TS_NODE_PROJECT: path.join(__dirname, 'tsconfig.json') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    // Progress lines are the child's stderr; the SDK's Node.js version notices are left out.
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
      const lines = stderr.split('\n');
      stderr = lines.pop() ?? '';
      for (const line of lines) if (line.startsWith('  ')) log(line);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      if (code !== 0 || !last.startsWith('{')) {
        reject(new Error(`the emulated scenario (rps ${options.rps}) exited with code ${code}: ${stderr || stdout.slice(-2000)}`));
        return;
      }
      resolve(JSON.parse(last) as EmulatedRun);
    });
  });
}

if (require.main === module) {
  const options = JSON.parse(process.argv[2] ?? '{}') as Omit<EmulatedOptions, 'log'>;
  runEmulated({ ...options, log: (line) => process.stderr.write(`${line}\n`) }).then((run) => {
    process.stdout.write(`${JSON.stringify(run)}\n`);
    process.exit(0);
  }, (error) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
