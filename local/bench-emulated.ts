/**
 * Emulated scenarios: the synthesized example app runs on the local runtime (LocalRuntime, the
 * real bundled handlers, the state machines' own definitions, the REST API proxy with its stage
 * throttle) against the strict VendorSimulator, as `npm run demo` does. Whatever pacing design the
 * library synthesizes is what is measured.
 *
 * A small recorder sits between the proxy and the vendor to note when each request id arrived, so
 * added latency is per request: main workflow start (its first state sends to the request queue)
 * -> first arrival at the vendor.
 */
import * as fs from 'fs';
import * as http from 'http';
import { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { addedLatency, maxInAnyWindow, utilization, violations, windowLimit } from './bench-metrics';
import { round } from './bench-model';
import { LOCAL_PACING, vendorCallerWarmPool } from './local-pacing';
import { LocalRuntime } from './runtime';
import { VendorSimulator } from './vendor-simulator';
import { buildExampleApp } from '../examples/app';

const VENDOR_HOST = 'vendor.example.com';

export interface EmulatedOptions {
  readonly rps: number;
  /** `requests` queued up front, or `fraction` of R offered for `durationMs`. */
  readonly load: { kind: 'backlog'; requests: number } | { kind: 'fraction'; fraction: number; durationMs: number };
  readonly log: (line: string) => void;
  /** @default 1000 */
  readonly warmupMs?: number;
}

export interface EmulatedRun {
  readonly arrivals: number[];
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
}

/** Forwards every request to `target` and notes when each request id first arrived. */
async function startRecorder(target: string): Promise<{ base: string; firstArrival: Map<string, number>; stop(): Promise<void> }> {
  const firstArrival = new Map<string, number>();
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const now = Date.now();
    const id = req.headers['idempotency-key'] ?? req.headers['x-request-id'];
    if (req.method === 'POST' && typeof id === 'string' && !firstArrival.has(id)) firstArrival.set(id, now);
    const upstream = http.request(`${target}${req.url ?? '/'}`, { method: req.method, headers: req.headers, agent }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    firstArrival,
    stop: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
      agent.destroy();
    }),
  };
}

export async function runEmulated(options: EmulatedOptions): Promise<EmulatedRun> {
  const started = Date.now();
  const { rps, log } = options;
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-async-external-api-bench-'));
  const { app, stack } = buildExampleApp({
    vendorUrl: `https://${VENDOR_HOST}/v1/jobs`,
    requestsPerSecond: rps,
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
  const vendor = new VendorSimulator({
    requestsPerSecond: rps,
    latencyMs: 100,
    callbackDelayMs: 200,
    rewriteUrl: (url) => (runtime ? runtime.rewriteUrl(url) : url),
    seed: 42,
  });
  const vendorBase = await vendor.start();
  const recorder = await startRecorder(vendorBase);
  try {
    runtime = await LocalRuntime.start({ assemblyDir: outdir, stackName: stack.stackName, hostMap: { [VENDOR_HOST]: recorder.base } });
    // Steady state: warm vendor callers (see local/local-pacing.ts).
    const caller = stack.orchestrator.dispatch.vendorCaller;
    if (caller) await runtime.prewarm(caller, vendorCallerWarmPool(rps, LOCAL_PACING.leadMs));
    const mainArn = runtime.stateMachineArn(stack.mainWorkflow);
    const executions: Array<{ arn: string; requestId: string }> = [];
    const submit = async (i: number) => {
      const requestId = `order-${i}`;
      const { executionArn } = await runtime!.sfn.startExecution(mainArn, JSON.stringify({
        orderId: requestId,
        order: { orderId: requestId, sku: `sku-${i % 7}`, quantity: 1 },
      }));
      executions.push({ arn: executionArn, requestId });
    };

    let total: number;
    if (options.load.kind === 'backlog') {
      total = options.load.requests;
      for (let i = 0; i < total; i++) await submit(i);
      log(`  queued ${total} requests`);
    } else {
      const spacing = 1000 / (options.load.fraction * rps);
      total = Math.max(1, Math.floor(options.load.durationMs / spacing));
      const t0 = Date.now();
      for (let i = 0; i < total; i++) {
        const wait = t0 + i * spacing - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        await submit(i);
      }
      log(`  offered ${total} requests at ${options.load.fraction * rps} rps`);
    }

    const deadline = Date.now() + (total / rps) * 3000 + 60_000;
    let lastLog = 0;
    while (recorder.firstArrival.size < total && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      if (Date.now() - lastLog > 5000) {
        lastLog = Date.now();
        log(`  ${recorder.firstArrival.size}/${total} reached the vendor`);
      }
    }

    const arrivals = vendor.arrivals();
    const pairs: Array<{ enqueuedAt: number; arrivedAt: number }> = [];
    for (const e of executions) {
      const arrivedAt = recorder.firstArrival.get(e.requestId);
      if (arrivedAt !== undefined) pairs.push({ enqueuedAt: runtime.sfn.describeExecution(e.arn).startDate.getTime(), arrivedAt });
    }
    const lat = addedLatency(pairs);
    const warmup = options.warmupMs ?? 1000;
    return {
      arrivals,
      requests: total,
      delivered: recorder.firstArrival.size,
      utilization: round(Math.min(1, utilization(arrivals, rps, warmup, warmup)), 4),
      vendorMaxRequestsInAnySecond: maxInAnyWindow(arrivals),
      vendorViolations: violations(arrivals, windowLimit(rps)),
      proxy429: runtime.proxy429s(),
      vendor429: vendor.stats().rejected429ByContract,
      p50AddedLatencyMs: lat.p50,
      p99AddedLatencyMs: lat.p99,
      elapsedMs: Date.now() - started,
    };
  } finally {
    await vendor.stop();
    await recorder.stop();
    await runtime?.stop();
  }
}
