/**
 * `npm run demo`: synthesizes the example app, runs it on the local runtime against the vendor
 * simulator, pushes N requests through the main workflow and reports what happened.
 *
 * Outcome of each request, from its main workflow execution:
 *   SUCCEEDED                                           -> succeeded
 *   FAILED with States.Timeout (or the example's VendorTimedOut, which catches it), or TIMED_OUT -> timedOut
 *   FAILED with any other error (VendorRequestFailed, VendorJobFailed, ...)                     -> failed
 *   still RUNNING when the run ends                                                              -> lost
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { LOCAL_PACING, vendorCallerWarmPool, yieldToDataPlane } from './local-pacing';
import { deliveredRps, maxInAnyWindow, percentile, perSecond, violations, writeChart } from './report';
import { LocalRuntime } from './runtime';
import { VendorSimulatorHost } from './vendor-host';
import { buildExampleApp } from '../examples/app';

export interface DemoOptions {
  readonly requests: number;
  readonly rps: number;
  readonly vendorLatencyMs: number;
  readonly callbackDelayMs: number;
  readonly callbackTimeoutMs: number;
  readonly vendorErrorRate: number;
  readonly vendor429Rate: number;
  readonly noCallbackRate: number;
  readonly duplicateCallbackRate: number;
  readonly earlyCallbackRate: number;
  readonly malformedCallbackRate: number;
  readonly forgedCallbackRate: number;
  readonly seed: number;
  /** Pacing lead (dispatch execution start -> slot), ms; the local runtime is slower than AWS. */
  readonly leadMs: number;
  /** How late a vendor caller may fire against its slot, ms. */
  readonly fireToleranceMs: number;
  /** The pacing tolerance L, ms (fire lateness + spread to the vendor). */
  readonly latenessToleranceMs: number;
  readonly json: boolean;
  readonly chartPath: string;
  /** Progress lines (to stderr); off in tests. */
  readonly progress: boolean;
}

export const DEFAULT_DEMO_OPTIONS: DemoOptions = {
  requests: 100,
  rps: 10,
  vendorLatencyMs: 200,
  callbackDelayMs: 1000,
  // Two paced vendor requests per order (submit + result fetch) on an emulator sharing 2 cores.
  callbackTimeoutMs: 30000,
  vendorErrorRate: 0,
  vendor429Rate: 0,
  noCallbackRate: 0,
  duplicateCallbackRate: 0,
  earlyCallbackRate: 0,
  malformedCallbackRate: 0,
  forgedCallbackRate: 0,
  seed: 42,
  // The emulated Express workflow + Lambda start take 1-3 s on 2 cores (AWS: well under 1 s), and
  // worker-thread timers wake later than Lambda's: local values, stated in the demo's output.
  leadMs: LOCAL_PACING.leadMs,
  fireToleranceMs: LOCAL_PACING.fireToleranceMs,
  latenessToleranceMs: LOCAL_PACING.latenessToleranceMs,
  json: false,
  chartPath: path.join('.demo', 'vendor-rps.svg'),
  progress: true,
};

export interface DemoResult {
  readonly requests: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly timedOut: number;
  readonly lost: number;
  readonly duplicateVendorCalls: number;
  readonly forgedAccepted: number;
  readonly contractRps: number;
  readonly deliveredRps: number;
  readonly vendorRequests: number;
  /** Of the vendor requests, the example workflow's paced result fetches (callVendorTask). */
  readonly resultFetches: number;
  readonly vendorMaxRequestsInAnySecond: number;
  readonly vendorViolations: number;
  readonly vendor429s: number;
  readonly proxy429s: number;
  readonly p50LatencyMs: number | null;
  readonly p99LatencyMs: number | null;
  readonly failuresByError: Record<string, number>;
  readonly requestDeadLetters: number;
  readonly callbackDeadLetters: number;
  readonly notModeled: string[];
  readonly chart: string;
  readonly elapsedMs: number;
}

/** The vendor's host in the example app; the runtime sends it to the simulator. */
const VENDOR_URL = 'https://vendor.example.com/v1/jobs';

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const started = Date.now();
  const log = (line: string) => {
    if (options.progress) process.stderr.write(`${line}\n`);
  };

  // 1. Synthesize the example app with the demo's contract and timeout.
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-async-external-api-demo-'));
  const { app, stack } = buildExampleApp({
    vendorUrl: VENDOR_URL,
    requestsPerSecond: options.rps,
    callbackTimeout: Duration.millis(options.callbackTimeoutMs),
    lead: Duration.millis(options.leadMs),
    fireTolerance: Duration.millis(options.fireToleranceMs),
    latenessTolerance: Duration.millis(options.latenessToleranceMs),
  }, outdir);
  app.synth();
  log(`synthesized ${stack.stackName} into ${outdir}`);

  // 2. The vendor (in its own thread, see local/vendor-host.ts), then the runtime that executes the template.
  let runtime: LocalRuntime | undefined;
  const vendor = await VendorSimulatorHost.start({
    requestsPerSecond: options.rps,
    latencyMs: options.vendorLatencyMs,
    callbackDelayMs: options.callbackDelayMs,
    seed: options.seed,
    errorRate: options.vendorErrorRate,
    throttleRate: options.vendor429Rate,
    noCallbackRate: options.noCallbackRate,
    duplicateCallbackRate: options.duplicateCallbackRate,
    earlyCallbackRate: options.earlyCallbackRate,
    malformedCallbackRate: options.malformedCallbackRate,
    forgedCallbackRate: options.forgedCallbackRate,
  });
  const vendorBase = vendor.base;
  try {
    runtime = await LocalRuntime.start({
      assemblyDir: outdir,
      stackName: stack.stackName,
      hostMap: { 'vendor.example.com': vendorBase },
      // The handlers' logs, when asked for (they are not printed).
      logFile: process.env.DEMO_LOG,
      // e.g. DEMO_LOG_LEVEL=INFO for the handlers' info lines (default WARN).
      ...(process.env.DEMO_LOG_LEVEL ? { functionEnv: { POWERTOOLS_LOG_LEVEL: process.env.DEMO_LOG_LEVEL } } : {}),
    });
    log(`local runtime up: ${runtime.describe()}`);
    // Callbacks go to the webhook's execute-api URL: the vendor needs the local REST API ports.
    vendor.mapApis(runtime.apiGateway.ports);
    // Steady state: the vendor callers that wait for their slots are warm (as under a steady load
    // on AWS, or with provisioned concurrency), not dozens of cold starts at once on 2 cores.
    const caller = stack.orchestrator.dispatch.vendorCaller;
    if (caller) {
      const warm = vendorCallerWarmPool(options.rps, options.leadMs);
      await runtime.prewarm(caller, warm);
      log(`${warm} vendor caller environments warm`);
    }
    // The vendor, the gateway and the callers run; the emulated control plane yields to them.
    yieldToDataPlane();

    // 3. Submit every request up front, so the request queue holds a backlog.
    const mainArn = runtime.stateMachineArn(stack.mainWorkflow);
    const executions: string[] = [];
    for (let i = 0; i < options.requests; i++) {
      const { executionArn } = await runtime.sfn.startExecution(mainArn, JSON.stringify({
        orderId: `order-${i}`,
        order: { orderId: `order-${i}`, sku: `sku-${i % 7}`, quantity: 1 + (i % 3) },
      }));
      executions.push(executionArn);
    }
    log(`submitted ${options.requests} requests to the main workflow`);

    // 4. Wait until every request ends, or until it cannot end any more.
    const dispatchSeconds = options.requests / Math.max(0.01, options.rps);
    const deadline = Date.now() + (dispatchSeconds * 1.5 + 30) * 1000 + options.callbackTimeoutMs + options.callbackDelayMs;
    const terminal = () => executions.filter((arn) => runtime!.sfn.describeExecution(arn).status !== 'RUNNING').length;
    let lastLine = 0;
    while (terminal() < executions.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      if (Date.now() - lastLine >= 1000) {
        lastLine = Date.now();
        const s = await vendor.stats();
        log(`t=${Math.round((Date.now() - started) / 1000)}s  vendor received ${s.submissions}, accepted ${s.accepted}  |  requests ended ${terminal()}/${executions.length}`);
      }
    }
    // Callbacks still in flight (duplicates, forged) settle before counting.
    await new Promise((r) => setTimeout(r, 500));

    // 5. Classify every request.
    let succeeded = 0;
    let failed = 0;
    let timedOut = 0;
    let lost = 0;
    let forgedAccepted = 0;
    const failuresByError: Record<string, number> = {};
    const latencies: number[] = [];
    for (const arn of executions) {
      const e = runtime.sfn.describeExecution(arn);
      if (e.status === 'SUCCEEDED') {
        succeeded++;
        if (e.stopDate) latencies.push(e.stopDate.getTime() - e.startDate.getTime());
        // ---- faults helper: `output` is JSON text already; stringifying it again escaped the quotes and never matched ----
        if (e.output && (typeof e.output === 'string' ? e.output : JSON.stringify(e.output)).includes('"forged":true')) forgedAccepted++;
      } else if (e.status === 'TIMED_OUT' || (e.status === 'FAILED' && (e.error === 'States.Timeout' || e.error === 'VendorTimedOut'))) {
        timedOut++;
      } else if (e.status === 'FAILED' || e.status === 'ABORTED') {
        failed++;
        const key = e.error ?? 'unknown';
        failuresByError[key] = (failuresByError[key] ?? 0) + 1;
      } else {
        lost++;
      }
    }

    const arrivals = await vendor.arrivals();
    const vendorStats = await vendor.stats();
    const first = arrivals.length ? Math.min(...arrivals) : started;
    const last = arrivals.length ? Math.max(...arrivals) : started;
    fs.mkdirSync(path.dirname(options.chartPath), { recursive: true });
    writeChart(options.chartPath, perSecond(arrivals, first, last + 1), options.rps,
      `Vendor requests per second, contract ${options.rps} rps (${options.requests} requests)`);

    return {
      requests: options.requests,
      succeeded,
      failed,
      timedOut,
      lost,
      duplicateVendorCalls: vendorStats.duplicateVendorCalls,
      forgedAccepted,
      contractRps: options.rps,
      deliveredRps: round(deliveredRps(arrivals), 2),
      vendorRequests: arrivals.length,
      resultFetches: vendorStats.resultFetches,
      vendorMaxRequestsInAnySecond: maxInAnyWindow(arrivals),
      vendorViolations: violations(arrivals, Math.max(1, Math.floor(options.rps))),
      vendor429s: vendorStats.rejected429ByContract,
      proxy429s: await runtime.proxy429s(),
      p50LatencyMs: percentile(latencies, 50) ?? null,
      p99LatencyMs: percentile(latencies, 99) ?? null,
      failuresByError,
      requestDeadLetters: await runtime.deadLetterCount('request'),
      callbackDeadLetters: await runtime.deadLetterCount('callback'),
      notModeled: runtime.template.notModeled(),
      chart: options.chartPath,
      elapsedMs: Date.now() - started,
    };
  } finally {
    await vendor.stop();
    await runtime?.stop();
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function formatSummary(r: DemoResult): string {
  const rows: Array<[string, string]> = [
    ['requests', String(r.requests)],
    ['succeeded', String(r.succeeded)],
    ['failed', `${r.failed}${Object.keys(r.failuresByError).length ? ` (${Object.entries(r.failuresByError).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''}`],
    ['timed out', String(r.timedOut)],
    ['lost', String(r.lost)],
    ['duplicate vendor calls', String(r.duplicateVendorCalls)],
    ['forged callbacks accepted', String(r.forgedAccepted)],
    ['contract rps', String(r.contractRps)],
    ['delivered rps (first to last vendor request)', String(r.deliveredRps)],
    ['vendor requests (of which paced result fetches)', `${r.vendorRequests} (${r.resultFetches})`],
    ['most vendor requests in any 1 s window', String(r.vendorMaxRequestsInAnySecond)],
    ['windows over the contract (violations)', String(r.vendorViolations)],
    ['429s from the vendor / from the proxy', `${r.vendor429s} / ${r.proxy429s}`],
    ['end-to-end latency p50 / p99 (succeeded)', `${r.p50LatencyMs ?? '-'} ms / ${r.p99LatencyMs ?? '-'} ms`],
    ['request DLQ / callback DLQ messages', `${r.requestDeadLetters} / ${r.callbackDeadLetters}`],
    ['chart', r.chart],
    ['run time', `${(r.elapsedMs / 1000).toFixed(1)} s`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`);
  const accounted = r.succeeded + r.failed + r.timedOut + r.lost === r.requests;
  lines.push('');
  lines.push(`  every request accounted for: ${accounted ? 'yes' : 'NO'} (succeeded + failed + timed out + lost = ${r.succeeded + r.failed + r.timedOut + r.lost})`);
  if (r.forgedAccepted > 0) {
    // webhookauth: forged callbacks carry a wrong capability token and no signature; none may resume a workflow.
    lines.push(`  ${r.forgedAccepted} forged callback(s) resumed a workflow: callback authentication failed, check the webhook's authentication.`);
  }
  const byType = new Map<string, number>();
  for (const entry of r.notModeled) {
    const type = entry.split(' ')[0];
    byType.set(type, (byType.get(type) ?? 0) + 1);
  }
  const notModeled = [...byType.entries()].map(([type, n]) => `${type} x${n}`).join(', ');
  lines.push(`  in the template but not executed locally: ${notModeled || 'nothing'} (IAM is not enforced, except the proxy's resource policy)`);
  return lines.join('\n');
}

const FLAGS: Record<string, keyof DemoOptions> = {
  '--requests': 'requests',
  '--rps': 'rps',
  '--vendor-latency-ms': 'vendorLatencyMs',
  '--callback-delay-ms': 'callbackDelayMs',
  '--callback-timeout-ms': 'callbackTimeoutMs',
  '--vendor-error-rate': 'vendorErrorRate',
  '--vendor-429-rate': 'vendor429Rate',
  '--no-callback-rate': 'noCallbackRate',
  '--duplicate-callback-rate': 'duplicateCallbackRate',
  '--early-callback-rate': 'earlyCallbackRate',
  '--malformed-callback-rate': 'malformedCallbackRate',
  '--forged-callback-rate': 'forgedCallbackRate',
  '--seed': 'seed',
  '--lead-ms': 'leadMs',
  '--fire-tolerance-ms': 'fireToleranceMs',
  '--lateness-tolerance-ms': 'latenessToleranceMs',
};

export function parseDemoArgs(argv: string[]): DemoOptions {
  const options: Record<string, unknown> = { ...DEFAULT_DEMO_OPTIONS };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--json') {
      options.json = true;
      continue;
    }
    if (arg === '--chart') {
      options.chartPath = argv[++i];
      continue;
    }
    const [flag, inline] = arg.split('=', 2);
    const key = FLAGS[flag];
    if (!key) {
      throw new Error(`unknown flag '${arg}'; flags: ${[...Object.keys(FLAGS), '--json', '--chart'].join(' ')}`);
    }
    const raw = inline ?? argv[++i];
    const value = Number(raw);
    if (raw === undefined || !Number.isFinite(value) || value < 0) {
      throw new Error(`${flag} needs a number of 0 or more (given '${raw}')`);
    }
    if (key.endsWith('Rate') && value > 1) {
      throw new Error(`${flag} is a fraction of requests between 0 and 1 (given ${value})`);
    }
    if ((key === 'requests' || key === 'rps') && value === 0) {
      throw new Error(`${flag} must be above 0`);
    }
    options[key] = value;
  }
  return options as unknown as DemoOptions;
}

if (require.main === module) {
  const options = parseDemoArgs(process.argv.slice(2));
  runDemo(options).then((result) => {
    console.log(`\nSummary (contract ${result.contractRps} rps, ${result.requests} requests)\n`);
    console.log(formatSummary(result));
    if (options.json) {
      const { notModeled: _notModeled, ...summary } = result;
      console.log(JSON.stringify(summary));
    }
    process.exit(0);
  }).catch((error) => {
    console.error(error instanceof Error ? error.stack ?? error.message : error);
    process.exit(1);
  });
}
