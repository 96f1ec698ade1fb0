/**
 * `npm run demo`: synthesizes the example app, runs it on the local runtime against the vendor
 * simulator, pushes N requests through the main workflow and reports what happened.
 *
 * Where each request ended (local/report.ts, classifyRequest), from its main workflow execution:
 *   SUCCEEDED                                                                   -> succeeded
 *   a wait that ended in States.Timeout (VendorTimedOut, or ResultFetchFailed caused by the fetch's
 *   timeout), or TIMED_OUT                                                      -> timedOut, with its cause
 *   FAILED with any other error (VendorRequestFailed, VendorJobFailed, ...)    -> failed
 *   still RUNNING when the demo stops waiting, with a message, dead letter, execution or
 *   correlation item left that can end it                                      -> stillRunning
 *   still RUNNING with nothing left that can end it                             -> lost
 * The wait is sized from the work (vendor calls per request, retries, pauses, callback delay), so
 * a slow request on a loaded machine shows up as stillRunning, never as lost.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { Duration } from 'aws-cdk-lib';
import { auditProxyAccessLog, forwardedArrivals, proxyAccessLog, sortedPairSpreadMs } from './access-log-audit';
import { DemoRateChange, ScheduledRateChange } from './demo-rate-change';
import {
  assignTenants, DemoTenantsSummary, demoTenantsOf, tenantAccounts, tenantSecrets, tenantsSummary, validateTenantFlags,
} from './demo-tenants';
import { LOCAL_PACING, vendorCallerWarmPool, yieldToDataPlane } from './local-pacing';
import { violationsAgainstRateInForce } from './rate-schedule';
import {
  classifyRequest, deliveredRps, EndingEvidence, maxInAnyWindow, percentile, perSecond, RequestFacts, TimeoutCause, violations, writeChart,
} from './report';
import { LocalRuntime } from './runtime';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from './types';
import { VendorSimulatorHost } from './vendor-host';
import { VendorCallbackRecord, VendorStats } from './vendor-simulator';
import { buildExampleApp, ExampleStack } from '../examples/app';
import { KeyLimits, VendorContract, VendorLimit, VendorQuota } from '../src';
import { parseNamedLimitFlag } from '../src/contract/named-limit';
import { AccessLogAuditReport } from '../src/throttled-proxy/access-log-audit-report';

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
  /** How long to wait for the requests to end, ms; 0: sized from the work (demoWaitMs). */
  readonly waitMs: number;
  /** When the operator changes the rate, seconds after the submissions (with rateChangeRps); 0: no change. */
  readonly rateChangeAtS: number;
  /** The rate the operator sets at rateChangeAtS (at most rps, the contract deployed); 0: no change. */
  readonly rateChangeRps: number;
  readonly json: boolean;
  /**
   * `--quota LIMIT/SECONDS`: the contract's quota, `LIMIT` calls per fixed period of `SECONDS`
   * (`VendorQuota.every`), enforced by the simulated vendor too. A short period shows requests
   * waiting for the next period and resuming there. Default: none.
   */
  readonly quota?: { readonly limit: number; readonly periodSeconds: number };
  /**
   * `--limit NAME:RPS[:METHODS[:PATH_PREFIX]]` (repeatable): named limits inside the contract
   * (`VendorLimit`, issue 14 item 3), enforced by the simulated vendor too, e.g. `results:2:GET`
   * paces the example's result fetches at 2 RPS. Default: none.
   */
  readonly limits?: readonly DemoLimit[];
  readonly chartPath: string;
  /** Progress lines (to stderr); off in tests. */
  readonly progress: boolean;
  /** The contract's jobs in flight (and the simulator's limit); 0: no limit. */
  readonly maxJobsInFlight: number;
  /**
   * `--tenants N`: N keys (`tenant-001` ...), each with its own vendor account (secret
   * `vendor/<key>`, credentials per key) that the vendor limits on its own (local/demo-tenants.ts).
   * 0: no keys (one account).
   */
  readonly tenants: number;
  /** `--hot-tenant-share F`: the share of requests on `tenant-001`; default: every key the same share. */
  readonly hotTenantShare?: number;
  /** `--tenant-rps R`: each key's limit at the vendor, calls per sliding second; 0: none. */
  readonly tenantRps: number;
}

/** A named limit of the demo's contract (`--limit`). */
export interface DemoLimit {
  readonly name: string;
  readonly requestsPerSecond: number;
  readonly methods?: string[];
  readonly pathPrefix?: string;
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
  waitMs: 0,
  rateChangeAtS: 0,
  rateChangeRps: 0,
  json: false,
  chartPath: path.join('.demo', 'vendor-rps.svg'),
  progress: true,
  maxJobsInFlight: 0,
  tenants: 0,
  tenantRps: 0,
};

export interface DemoResult {
  readonly requests: number;
  readonly succeeded: number;
  readonly failed: number;
  /** Timed out, whatever the cause (see timeoutsByCause). */
  readonly timedOut: number;
  /** Each timeout by its cause (local/report.ts, TimeoutCause); they add up to timedOut. */
  readonly timeoutsByCause: Record<TimeoutCause, number>;
  /** Timeouts with none of the expected causes: a defect. CI fails above 0. */
  readonly unexplainedTimeouts: number;
  /** Still open when the demo stopped waiting, with something left that can end them. */
  readonly stillRunning: number;
  /** What was left for the still-running requests (a request can have several). */
  readonly stillRunningBy: Record<EndingEvidence, number>;
  /** Still open with nothing left that can end them. CI fails above 0. */
  readonly lost: number;
  /** How long the demo waited for the requests to end, ms (sized from the work). */
  readonly waitedMs: number;
  readonly duplicateVendorCalls: number;
  readonly forgedAccepted: number;
  readonly contractRps: number;
  readonly deliveredRps: number;
  readonly vendorRequests: number;
  /** Of the vendor requests, the example workflow's paced result fetches (callVendorTask). */
  readonly resultFetches: number;
  readonly vendorMaxRequestsInAnySecond: number;
  readonly vendorViolations: number;
  /** With --quota: the most calls the vendor saw in any one quota period. Else null. */
  readonly quotaMaxInAnyPeriod: number | null;
  /**
   * Windows over each limit, measured by the simulator: `rate`, against the rate in force
   * (local/rate-schedule.ts; the contract when no change is asked for); `quota`, calls beyond a
   * quota period's limit (0 without --quota); `inFlight`, submissions refused because the vendor
   * already ran maxJobsInFlight jobs (0 without --max-jobs-in-flight).
   */
  readonly violationsByLimit: { readonly rate: number; readonly quota: number; readonly inFlight: number; readonly [limit: string]: number };
  /** With --limit: per named limit, the most of its calls the vendor saw in any 1 s window. Else {}. */
  readonly limitMaxInAnyWindow: Record<string, number>;
  /** The operator's rate change, when asked for (local/demo-rate-change.ts). */
  readonly rateChange?: DemoRateChange;
  /**
   * With --tenants: the keys, the calls the vendor refused for a key's own limit, and the p99 added
   * latency of the quiet keys' and of the hot key's requests (local/demo-tenants.ts).
   */
  readonly tenants?: DemoTenantsSummary;
  /**
   * The audit from AWS's own records (README, "Audit"): the busiest closed 1-second window (1/R s
   * when R < 1) of requests the proxy forwarded, read from its access log on API Gateway's clock,
   * independent of the pacer and of the simulator.
   */
  readonly auditBusiestWindow: number;
  /** Forwarded requests whose window in the proxy's access log held more than the contract. */
  readonly auditViolations: number;
  /**
   * The proxy -> vendor hop's spread, ms, between the access log and the simulator's arrivals
   * (`sortedPairSpreadMs`): the vendor's busiest window lies between the audit's with the window
   * shortened and lengthened by it. Null when the two records differ in count.
   */
  readonly auditHopSpreadMs: number | null;
  /** The most jobs the vendor saw in progress at once (plus one at a refused submission). */
  readonly maxJobsInFlightObserved: number;
  /**
   * Time-weighted mean of the jobs in progress at the vendor while jobs were still being started
   * (the backlog), by the simulator's clock; divided by the limit, the occupancy.
   */
  readonly meanJobsInFlightWhileBacklog: number;
  /**
   * With --max-jobs-in-flight: how long a place freed at the limit stayed idle until the next job
   * took it, by the simulator's clock (local/vendor-jobs-in-flight.ts): hand-overs, mean and max ms.
   */
  readonly handOvers: { readonly count: number; readonly meanIdleMs: number; readonly maxIdleMs: number };
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
  const limits = (options.limits ?? []).map((limit) => VendorLimit.of(limit));
  const tenants = demoTenantsOf(options);
  // With tenants, each key is paced by its own limit inside the contract (issue 15): the simulator
  // refuses a key's calls over the same limit and counts them as that key's violations.
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-async-external-api-demo-'));
  const { app, stack } = buildExampleApp({
    vendorUrl: VENDOR_URL,
    ...(options.quota || options.maxJobsInFlight > 0 || limits.length > 0 || tenants?.requestsPerSecond !== undefined
      ? {
        contract: VendorContract.of({
          requestsPerSecond: options.rps,
          ...(options.quota ? { quotas: [VendorQuota.every(Duration.seconds(options.quota.periodSeconds), options.quota.limit)] } : {}),
          ...(options.maxJobsInFlight > 0 ? { maxJobsInFlight: options.maxJobsInFlight } : {}),
          ...(limits.length > 0 ? { limits } : {}),
          ...(tenants?.requestsPerSecond !== undefined ? { perKey: KeyLimits.of({ requestsPerSecond: tenants.requestsPerSecond }) } : {}),
        }),
      }
      : { requestsPerSecond: options.rps }),
    callbackTimeout: Duration.millis(options.callbackTimeoutMs),
    lead: Duration.millis(options.leadMs),
    fireTolerance: Duration.millis(options.fireToleranceMs),
    latenessTolerance: Duration.millis(options.latenessToleranceMs),
    ...(tenants ? { credentialsPerKey: true } : {}),
    // The rate at run time is the dynamic-delay configuration's (AppConfig's shortest poll: 15 s).
    ...(options.rateChangeRps > 0 ? { dynamicDelay: { pollInterval: Duration.seconds(15) } } : {}),
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
    ...(options.maxJobsInFlight > 0 ? { maxJobsInFlight: options.maxJobsInFlight } : {}),
    ...(options.quota ? { quota: { limit: options.quota.limit, periodMs: options.quota.periodSeconds * 1000 } } : {}),
    ...(limits.length > 0 ? { limits: limits.map((limit) => limit._spec()), limitBasePath: new URL(VENDOR_URL).pathname } : {}),
    // Each tenant's own account, told apart by its credential and limited on its own.
    ...(tenants ? { accounts: tenantAccounts(tenants) } : {}),
  });
  const vendorBase = vendor.base;
  try {
    runtime = await LocalRuntime.start({
      assemblyDir: outdir,
      removeAssemblyDirOnStop: true,
      stackName: stack.stackName,
      hostMap: { 'vendor.example.com': vendorBase },
      // Each tenant's credential in its own secret, by name, as an operator creates them.
      ...(tenants ? { secrets: tenantSecrets(tenants) } : {}),
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
      // No more than twice the requests: a request's paced calls (the submission, the result
      // fetch) come one after the other, so a run of a few requests (the tests' 6) never has more
      // callers busy, and each warm one is a worker thread's cold start of CPU before the run.
      const warm = Math.min(vendorCallerWarmPool(options.rps, options.leadMs), 2 * options.requests);
      await runtime.prewarm(caller, warm);
      log(`${warm} vendor caller environments warm`);
    }
    // The vendor, the gateway and the callers run; the emulated control plane yields to them.
    yieldToDataPlane();

    // 3. Submit every request up front, so the request queue holds a backlog.
    const submittedAtMs = Date.now();
    const rateChange = options.rateChangeRps > 0
      ? ScheduledRateChange.start(runtime, vendor, outdir, stack.stackName, submittedAtMs, options.rps, options.rateChangeRps, options.rateChangeAtS)
      : undefined;
    const mainArn = runtime.stateMachineArn(stack.mainWorkflow);
    const executions: string[] = [];
    const keys = tenants ? assignTenants(options.requests, tenants) : [];
    for (let i = 0; i < options.requests; i++) {
      const { executionArn } = await runtime.sfn.startExecution(mainArn, JSON.stringify({
        orderId: `order-${i}`,
        ...(tenants ? { customerId: keys[i] } : {}),
        order: { orderId: `order-${i}`, sku: `sku-${i % 7}`, quantity: 1 + (i % 3) },
      }));
      executions.push(executionArn);
    }
    log(`submitted ${options.requests} requests to the main workflow`);

    // 4. Wait until every request ends, or until the work should long be done.
    const waitStarted = Date.now();
    const deadline = waitStarted + (options.waitMs || demoWaitMs(options));
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
    const waitedMs = Date.now() - waitStarted;
    // Callbacks still in flight (late, duplicate, forged) are delivered and processed before
    // anything is counted: a callback the processor took is then COMPLETED or LATE, never in between.
    await settleCallbacks(runtime, vendor);

    // 5. Classify every request (local/report.ts): what is left of the open ones, why the timed-out ones timed out.
    const vendorStats = await vendor.stats();
    const facts = await gatherFacts(runtime, stack, executions, options, vendorStats, await vendor.callbacks());
    let succeeded = 0;
    let failed = 0;
    let timedOut = 0;
    let stillRunning = 0;
    let lost = 0;
    let forgedAccepted = 0;
    const timeoutsByCause: Record<TimeoutCause, number> = { planned: 0, waitingForSlot: 0, callbackRejected: 0, callbackLate: 0, unexplained: 0 };
    const stillRunningBy: Record<EndingEvidence, number> = { message: 0, deadLetter: 0, execution: 0, correlation: 0 };
    const failuresByError: Record<string, number> = {};
    const latencies: number[] = [];
    executions.forEach((arn, i) => {
      const e = runtime!.sfn.describeExecution(arn);
      const { outcome, timeoutCause } = classifyRequest(facts[i]);
      if (outcome === 'succeeded') {
        succeeded++;
        if (e.stopDate) latencies.push(e.stopDate.getTime() - e.startDate.getTime());
        // ---- faults helper: `output` is JSON text already; stringifying it again escaped the quotes and never matched ----
        if (e.output && (typeof e.output === 'string' ? e.output : JSON.stringify(e.output)).includes('"forged":true')) forgedAccepted++;
      } else if (outcome === 'timedOut') {
        timedOut++;
        timeoutsByCause[timeoutCause!]++;
        if (timeoutCause === 'unexplained') log(`unexplained timeout: order-${i} (${e.error ?? e.status}): ${facts[i].note ?? ''}; DEMO_LOG=<file> for the handlers' logs`);
      } else if (outcome === 'failed') {
        failed++;
        const key = e.error ?? 'unknown';
        failuresByError[key] = (failuresByError[key] ?? 0) + 1;
      } else if (outcome === 'stillRunning') {
        stillRunning++;
        for (const evidence of new Set(facts[i].evidence)) stillRunningBy[evidence]++;
      } else {
        lost++;
        log(`lost: order-${i} is still running with no message, dead letter, execution or correlation item left that can end it`);
      }
    });

    const arrivals = await vendor.arrivals();
    const change = await rateChange?.result(arrivals);
    // For a closer look at the vendor's arrivals (e.g. which windows exceeded the rate in force).
    if (process.env.DEMO_ARRIVALS) {
      fs.writeFileSync(process.env.DEMO_ARRIVALS, JSON.stringify({ submittedAtMs, arrivals, schedule: rateChange?.schedule ?? [] }));
    }
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
      timeoutsByCause,
      unexplainedTimeouts: timeoutsByCause.unexplained,
      stillRunning,
      stillRunningBy,
      lost,
      waitedMs,
      duplicateVendorCalls: vendorStats.duplicateVendorCalls,
      forgedAccepted,
      contractRps: options.rps,
      deliveredRps: round(deliveredRps(arrivals), 2),
      vendorRequests: arrivals.length,
      resultFetches: vendorStats.resultFetches,
      vendorMaxRequestsInAnySecond: maxInAnyWindow(arrivals),
      vendorViolations: violations(arrivals, Math.max(1, Math.floor(options.rps))),
      quotaMaxInAnyPeriod: options.quota ? vendorStats.quotaMaxInAnyPeriod : null,
      violationsByLimit: {
        rate: violationsAgainstRateInForce(arrivals, options.rps, rateChange?.schedule ?? []),
        quota: vendorStats.quotaViolations,
        inFlight: vendorStats.jobsInFlight.violations,
        // Per named limit: calls the vendor refused as beyond it (simulator).
        ...vendorStats.limitViolations,
      },
      limitMaxInAnyWindow: vendorStats.limitMaxInAnyWindow,
      ...(change ? { rateChange: change } : {}),
      ...(tenants ? {
        tenants: tenantsSummary(tenants, executions.map((arn, i) => ({
          key: keys[i],
          startedAtMs: runtime!.sfn.describeExecution(arn).startDate.getTime(),
          acceptedAtMs: vendorStats.requests[`order-${i}`]?.firstAcceptedAtMs,
        })), vendorStats.keys),
      } : {}),
      ...auditFigures(await auditProxyAccessLog(runtime, options.rps),
        sortedPairSpreadMs(forwardedArrivals(await proxyAccessLog(runtime)), arrivals)),
      maxJobsInFlightObserved: vendorStats.jobsInFlight.maxObserved,
      meanJobsInFlightWhileBacklog: round(vendorStats.jobsInFlight.meanInFlightWhileStarting, 2),
      handOvers: {
        count: vendorStats.jobsInFlight.handOvers,
        meanIdleMs: Math.round(vendorStats.jobsInFlight.meanHandOverIdleMs),
        maxIdleMs: Math.round(vendorStats.jobsInFlight.maxHandOverIdleMs),
      },
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

/** The audit's figures for the summary. */
function auditFigures(
  report: AccessLogAuditReport, hopSpreadMs: number | undefined,
): { auditBusiestWindow: number; auditViolations: number; auditHopSpreadMs: number | null } {
  return { auditBusiestWindow: report.busiest.count, auditViolations: report.violations, auditHopSpreadMs: hopSpreadMs ?? null };
}

/** Each order is two paced vendor calls: the submission and the result fetch (examples/app.ts). */
const CALLS_PER_REQUEST = 2;
/** The first retry's backoff cap (the library's retryBaseDelay) and the vendor's Retry-After. */
const RETRY_DELAY_MS = 2000;
const VENDOR_PAUSE_MS = 1000;
/** Room for the local runtime on a loaded machine: slots given up and re-reserved, cold starts. */
const LOCAL_SLOWDOWN = 1.5;
const WAIT_SLACK_MS = 30_000;
/** The longest callback timeout the wait covers; a longer one: pass --wait-ms. */
const MAX_TIMEOUT_WAIT_MS = 5 * 60_000;
/** Callback -> webhook -> queue -> processor -> SendTaskSuccess on the local runtime. */
const LOCAL_DELIVERY_MS = 1000;
/** The dispatcher's default recheck of a request waiting for a place (RateControlledQueueConsumer.limitJobsInFlight). */
const JOB_PLACE_RECHECK_MS = 2000;

/**
 * How long the demo waits for the requests to end, from the work they make: every vendor call
 * (two per order, one more per injected 5xx or 429) takes a pacing slot of (1000 + L) / R ms, every
 * 429 pauses dispatch, and the last call is answered after the vendor's latency and callback delay.
 * It also covers the callback timeout (up to MAX_TIMEOUT_WAIT_MS): a request that a defect leaves
 * waiting then ends in a timeout the demo classifies (unexplained) instead of staying open. The
 * wait ends as soon as every request has ended, so covering it costs nothing when none is stuck.
 */
export function demoWaitMs(o: DemoOptions): number {
  const paced = o.rps >= 1 ? Math.floor(o.rps) : o.rps;
  const slotMs = (1000 + o.latenessToleranceMs) / paced;
  const retriesPerRequest = o.vendorErrorRate + o.vendor429Rate;
  const calls = o.requests * (CALLS_PER_REQUEST + retriesPerRequest);
  const pausesMs = o.requests * o.vendor429Rate * VENDOR_PAUSE_MS;
  // With a quota, the calls take at least one period per `limit` of them (and one more for the boundaries).
  const quotaMs = o.quota ? (Math.ceil(calls / o.quota.limit) + 1) * o.quota.periodSeconds * 1000 : 0;
  // With named limits, the calls a limit binds (at most all of them) take a slot of its own rate each.
  const limitMs = Math.max(0, ...(o.limits ?? []).map((l) =>
    calls * (1000 + o.latenessToleranceMs) / (l.requestsPerSecond >= 1 ? Math.floor(l.requestsPerSecond) : l.requestsPerSecond)));
  // With --tenant-rps, the busiest key's calls (the hot key's share, else an even share) take a slot of its rate each.
  const busiestShare = o.tenants > 0 ? o.hotTenantShare ?? 1 / o.tenants : 0;
  const tenantMs = o.tenantRps > 0 ? calls * busiestShare * (1000 + o.latenessToleranceMs) / Math.max(1, Math.floor(o.tenantRps)) : 0;
  const workMs = o.leadMs + Math.max(calls * slotMs + pausesMs, quotaMs, limitMs, tenantMs) * LOCAL_SLOWDOWN
    + (retriesPerRequest > 0 ? RETRY_DELAY_MS : 0) + CALLS_PER_REQUEST * o.vendorLatencyMs + o.callbackDelayMs;
  // With a jobs-in-flight limit, at most N jobs run at once: each holds its place from its
  // submission until its callback is processed, and a waiting request asks again every 2 s.
  const inFlightMs = o.maxJobsInFlight > 0
    ? Math.ceil(o.requests / o.maxJobsInFlight) * (o.vendorLatencyMs + o.callbackDelayMs + LOCAL_DELIVERY_MS + JOB_PLACE_RECHECK_MS) * LOCAL_SLOWDOWN
    : 0;
  return Math.max(workMs, inFlightMs, Math.min(o.callbackTimeoutMs, MAX_TIMEOUT_WAIT_MS)) + WAIT_SLACK_MS;
}

/** Longest wait for the callbacks to settle. */
const SETTLE_MS = 20_000;

/** Waits until the vendor has no callback pending and the callback queue is empty (at most SETTLE_MS). */
async function settleCallbacks(runtime: LocalRuntime, vendor: VendorSimulatorHost): Promise<void> {
  const queue = runtime.template.ofType('AWS::SQS::Queue').find((q) => /CallbackQueue/.test(q.logicalId) && !/DeadLetter/.test(q.logicalId))!;
  const sqs = new SQSClient({ endpoint: runtime.endpoints.sqs, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  try {
    const until = Date.now() + SETTLE_MS;
    await new Promise((r) => setTimeout(r, 500));
    while (Date.now() < until) {
      const pending = (await vendor.callbacks()).some((c) => c.outcome === 'pending');
      const { Attributes: a } = await sqs.send(new GetQueueAttributesCommand({
        QueueUrl: runtime.template.queueUrlOf(queue.logicalId),
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
      }));
      const depth = Number(a?.ApproximateNumberOfMessages ?? 0) + Number(a?.ApproximateNumberOfMessagesNotVisible ?? 0)
        + Number(a?.ApproximateNumberOfMessagesDelayed ?? 0);
      if (!pending && depth === 0) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    sqs.destroy();
  }
}

/** The request id of a dispatch or vendor-call execution, from its input. */
function requestIdOf(input: string): string | undefined {
  return /"requestId":"([^"]+)"/.exec(input)?.[1];
}

/**
 * What the demo knows about each request (by index) once it stops waiting: for the open ones, what
 * is left that can end them; for the timed-out ones, why. Consumption is stopped first, so that
 * nothing moves between two looks; a request that ended meanwhile is described as it ended.
 */
async function gatherFacts(
  runtime: LocalRuntime, stack: ExampleStack, executions: string[], options: DemoOptions,
  vendorStats: VendorStats, callbacks: VendorCallbackRecord[],
): Promise<RequestFacts[]> {
  const sfn = runtime.sfn;
  const mainArn = runtime.stateMachineArn(stack.mainWorkflow);
  const open = executions.map((arn) => sfn.describeExecution(arn).status === 'RUNNING');
  if (open.some(Boolean)) {
    for (const fn of [stack.orchestrator.consumer.function, stack.orchestrator.webhook.processor]) {
      await runtime.setEventSourceEnabled(fn, false);
    }
  }

  // Dispatch and vendor-call executions by request id, oldest first.
  const byRequest = new Map<string, Array<{ arn: string; status: string }>>();
  for (const arn of sfn.stateMachineArns().filter((a) => a !== mainArn)) {
    for (const e of sfn.listExecutions(arn).reverse()) {
      const id = requestIdOf(e.input);
      if (id) (byRequest.get(id) ?? byRequest.set(id, []).get(id)!).push({ arn: e.executionArn, status: e.status });
    }
  }
  const requeued = (arn: string) => sfn.executionEvents(arn).some((ev) => ev.type === 'StateExited' && (ev as any).state?.name === 'RequeueWithDelay');

  // Messages: what can be read now, and the request queue's depth (in flight and delayed included).
  const sqs = new SQSClient({ endpoint: runtime.endpoints.sqs, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  const queueId = (pattern: RegExp) => runtime.template.ofType('AWS::SQS::Queue').find((q) => pattern.test(q.logicalId))!.logicalId;
  const read = async (pattern: RegExp) => {
    const url = runtime.template.queueUrlOf(queueId(pattern));
    const bodies: string[] = [];
    for (;;) {
      const { Messages } = await sqs.send(new ReceiveMessageCommand({
        QueueUrl: url, MaxNumberOfMessages: 10, VisibilityTimeout: 60, WaitTimeSeconds: 0,
      }));
      if (!Messages?.length) return bodies;
      bodies.push(...Messages.map((m) => m.Body ?? ''));
    }
  };
  let requestQueueDepth = 0;
  let requestQueue: string[] = [];
  let requestDlq: string[] = [];
  let callbackQueue: string[] = [];
  let callbackDlq: string[] = [];
  try {
    const { Attributes: a } = await sqs.send(new GetQueueAttributesCommand({
      QueueUrl: runtime.template.queueUrlOf(queueId(/RequestQueue/)),
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
    }));
    requestQueueDepth = Number(a?.ApproximateNumberOfMessages ?? 0) + Number(a?.ApproximateNumberOfMessagesNotVisible ?? 0)
      + Number(a?.ApproximateNumberOfMessagesDelayed ?? 0);
    requestQueue = open.some(Boolean) ? await read(/RequestQueue/) : [];
    requestDlq = await read(/RequestDeadLetterQueue/);
    callbackQueue = await read(/CallbackQueue/);
    callbackDlq = await read(/CallbackDeadLetterQueue/);
  } finally {
    sqs.destroy();
  }
  const messageFor = (bodies: string[], id: string) => bodies.some((b) => requestIdOf(b) === id);

  const ddb = new DynamoDBClient({ endpoint: runtime.endpoints.dynamodb, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  const table = runtime.template.nameOf(runtime.template.ofType('AWS::DynamoDB::Table').find((t) => /CorrelationTable/.test(t.logicalId))!.logicalId);
  const correlationStatus = async (id: string) => (await ddb.send(new GetItemCommand({
    TableName: table, Key: { requestId: { S: id } }, ConsistentRead: true,
  }))).Item?.status?.S;

  const facts: RequestFacts[] = [];
  // Requests whose message is inferred (never dispatched, or requeued) rather than read: at most
  // as many as the request queue holds, the rest are lost.
  const inferred: number[] = [];
  try {
    for (let i = 0; i < executions.length; i++) {
      const orderId = `order-${i}`;
      const fetchId = `${orderId}-result`;
      const vendorRecord = vendorStats.requests[orderId];
      const jobIds = vendorRecord?.jobIds ?? [];
      const evidence: EndingEvidence[] = [];
      let inferredMessage = false;
      if (open[i]) {
        const status = await correlationStatus(orderId);
        // The result fetch is dispatched once the submission's callback resumed the workflow.
        const ids = status === 'COMPLETED' ? [orderId, fetchId] : [orderId];
        for (const id of ids) {
          const runs = byRequest.get(id) ?? [];
          const last = runs[runs.length - 1];
          if (runs.some((r) => r.status === 'RUNNING')) evidence.push('execution');
          if (messageFor(requestQueue, id)) {
            evidence.push('message');
          } else if (!last || (last.status === 'SUCCEEDED' && requeued(last.arn))) {
            // Its message was sent and not turned into an execution yet: in flight or delayed.
            inferredMessage = true;
          }
          if (messageFor(requestDlq, id)) evidence.push('deadLetter');
        }
        if (status === 'SUBMITTED') evidence.push('correlation');
        if (jobIds.some((job) => callbackQueue.some((b) => b.includes(job)))) evidence.push('message');
        if (jobIds.some((job) => callbackDlq.some((b) => b.includes(job)))) evidence.push('deadLetter');
        if (inferredMessage) {
          if (evidence.length === 0) inferred.push(i);
          evidence.push('message');
        }
      }
      const now = sfn.describeExecution(executions[i]);
      const correlation = now.status === 'RUNNING' ? undefined : await correlationStatus(orderId);
      const failedWait = sfn.executionEvents(executions[i]).find((ev) => ev.type === 'StateFailed' && (ev as any).Error === 'States.Timeout');
      const timedOutWait = failedWait ? (/Fetch/.test((failedWait as any).state?.name ?? '') ? 'fetch' : 'submission') : undefined;
      const faults = vendorRecord?.faults ?? [];
      const myCallbacks = callbacks.filter((c) => c.requestId === orderId && c.kind !== 'forged');
      facts.push({
        status: now.status,
        error: now.error,
        timedOutWait,
        endedAtMs: now.stopDate?.getTime(),
        evidence: now.status === 'RUNNING' ? evidence : undefined,
        plannedTimeout: timedOutWait !== 'fetch' && (faults.includes('noCallback') || faults.includes('malformedCallback')
          || options.vendorLatencyMs + options.callbackDelayMs >= options.callbackTimeoutMs),
        callbackRejected: timedOutWait !== 'fetch' && (myCallbacks.some((c) => c.outcome === 'failed' || c.results.some((r) => typeof r === 'number' && r >= 400))
          || jobIds.some((job) => callbackDlq.some((b) => b.includes(job)))),
        callbackLate: timedOutWait !== 'fetch' && (correlation === 'LATE' || jobIds.some((job) => callbackQueue.some((b) => b.includes(job)))),
        // The submission the vendor accepted (an earlier one answered 5xx or 429 leads to no callback).
        reachedVendorAtMs: timedOutWait === 'fetch' ? (vendorRecord?.resultFetches ? 0 : undefined) : vendorRecord?.firstAcceptedAtMs,
        answerTakesMs: options.vendorLatencyMs + (timedOutWait === 'fetch' ? 0 : options.callbackDelayMs) + LOCAL_DELIVERY_MS,
        note: now.stopDate ? [
          `${timedOutWait ?? 'wait'} timed out`,
          vendorRecord?.firstAcceptedAtMs ? `accepted by the vendor ${now.stopDate.getTime() - vendorRecord.firstAcceptedAtMs} ms before` : 'never accepted by the vendor',
          `vendor faults [${faults.join(', ')}]`,
          `callbacks ${JSON.stringify(myCallbacks.map((c) => ({ kind: c.kind, outcome: c.outcome, results: c.results })))}`,
          `correlation ${correlation ?? 'none'}`,
        ].join('; ') : undefined,
      });
    }
  } finally {
    ddb.destroy();
  }
  // More requests said to have a message in the request queue than it holds: the excess are lost.
  const held = requestQueueDepth - requestQueue.length;
  for (const i of inferred.slice(Math.max(0, held))) {
    facts[i] = { ...facts[i], evidence: [] };
  }
  return facts;
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
    ['timed out (by cause)', `${r.timedOut}${r.timedOut ? ` (${Object.entries(r.timeoutsByCause).filter(([, n]) => n > 0).map(([k, n]) => `${k}: ${n}`).join(', ')})` : ''}`],
    ['unexplained timeouts', String(r.unexplainedTimeouts)],
    ['still running (what can end them)', `${r.stillRunning}${r.stillRunning ? ` (${Object.entries(r.stillRunningBy).filter(([, n]) => n > 0).map(([k, n]) => `${k}: ${n}`).join(', ')})` : ''}`],
    ['lost', String(r.lost)],
    ['duplicate vendor calls', String(r.duplicateVendorCalls)],
    ['forged callbacks accepted', String(r.forgedAccepted)],
    ['contract rps', String(r.contractRps)],
    ['delivered rps (first to last vendor request)', String(r.deliveredRps)],
    ['vendor requests (of which paced result fetches)', `${r.vendorRequests} (${r.resultFetches})`],
    ['most vendor requests in any 1 s window', String(r.vendorMaxRequestsInAnySecond)],
    ['windows over the contract (violations)', String(r.vendorViolations)],
    ['windows over the rate in force (violationsByLimit.rate)', String(r.violationsByLimit.rate)],
    ...(r.rateChange ? [['rate change (operator, AppConfig)', `${r.rateChange.fromRps} -> ${r.rateChange.toRps} rps deployed at ${round(r.rateChange.deployedAtMs / 1000, 1)} s, `
      + `binds at ${round(r.rateChange.bindsAtMs / 1000, 1)} s; in use after ${r.rateChange.observedInUseAfterMs === null ? 'not observed' : `${round(r.rateChange.observedInUseAfterMs / 1000, 1)} s`}`
      + ` (stated: within ${round(r.rateChange.statedInUseWithinMs / 1000, 1)} s)`] as [string, string]] : []),
    ...(r.quotaMaxInAnyPeriod === null ? [] : [
      ['most vendor calls in any quota period / calls beyond it', `${r.quotaMaxInAnyPeriod} / ${r.violationsByLimit.quota}`] as [string, string],
    ]),
    ...Object.entries(r.limitMaxInAnyWindow).map(([name, max]) =>
      [`limit '${name}': most of its calls in any 1 s window / calls beyond it`, `${max} / ${r.violationsByLimit[name]}`] as [string, string]),
    ['audit: busiest window / violations in the proxy\'s access log', `${r.auditBusiestWindow} / ${r.auditViolations} (proxy -> vendor spread ${r.auditHopSpreadMs ?? '-'} ms)`],
    ...(r.tenants ? [['tenants: keys / calls over a key\'s own limit (hot key\'s) / p99 added latency quiet, hot',
      `${r.tenants.count} / ${r.tenants.violations} (${r.tenants.hotViolations}) / ${r.tenants.quietP99AddedLatencyMs ?? '-'} ms, `
      + `${r.tenants.hotKey === null ? 'no hot key' : `${r.tenants.hotP99AddedLatencyMs ?? '-'} ms`}`] as [string, string]] : []),
    ['jobs refused for the in-flight limit (violationsByLimit.inFlight)', String(r.violationsByLimit.inFlight)],
    ['most jobs in flight at the vendor (mean while a backlog lasted)', `${r.maxJobsInFlightObserved} (${r.meanJobsInFlightWhileBacklog})`],
    ['idle time of a freed place until the next job took it (hand-overs: mean / max)', `${r.handOvers.count}: ${r.handOvers.meanIdleMs} / ${r.handOvers.maxIdleMs} ms`],
    ['429s from the vendor / from the proxy', `${r.vendor429s} / ${r.proxy429s}`],
    ['end-to-end latency p50 / p99 (succeeded)', `${r.p50LatencyMs ?? '-'} ms / ${r.p99LatencyMs ?? '-'} ms`],
    ['request DLQ / callback DLQ messages', `${r.requestDeadLetters} / ${r.callbackDeadLetters}`],
    ['chart', r.chart],
    ['run time (of which waiting for the requests)', `${(r.elapsedMs / 1000).toFixed(1)} s (${(r.waitedMs / 1000).toFixed(1)} s)`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`);
  const sum = r.succeeded + r.failed + r.timedOut + r.stillRunning + r.lost;
  lines.push('');
  lines.push(`  every request accounted for: ${sum === r.requests ? 'yes' : 'NO'} (succeeded + failed + timed out + still running + lost = ${sum})`);
  if (r.lost > 0 || r.unexplainedTimeouts > 0) {
    lines.push(`  NOT SAFE: ${r.lost} lost, ${r.unexplainedTimeouts} unexplained timeout(s): requests the library dropped or left to time out (DEMO_LOG=<file> for the handlers' logs)`);
  }
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
  '--wait-ms': 'waitMs',
  '--max-jobs-in-flight': 'maxJobsInFlight',
  '--rate-change-at-s': 'rateChangeAtS',
  '--rate-change-rps': 'rateChangeRps',
  '--tenants': 'tenants',
  '--hot-tenant-share': 'hotTenantShare',
  '--tenant-rps': 'tenantRps',
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
    if (flag === '--quota') {
      options.quota = parseQuotaFlag(inline ?? argv[++i]);
      continue;
    }
    if (flag === '--limit') {
      options.limits = [...(options.limits as DemoOptions['limits'] ?? []), parseLimitFlag(inline ?? argv[++i])];
      continue;
    }
    const key = FLAGS[flag];
    if (!key) {
      throw new Error(`unknown flag '${arg}'; flags: ${[...Object.keys(FLAGS), '--quota', '--limit', '--json', '--chart'].join(' ')}`);
    }
    const raw = inline ?? argv[++i];
    const value = Number(raw);
    if (raw === undefined || !Number.isFinite(value) || value < 0) {
      throw new Error(`${flag} needs a number of 0 or more (given '${raw}')`);
    }
    if (key.endsWith('Rate') && value > 1) {
      throw new Error(`${flag} is a fraction of requests between 0 and 1 (given ${value})`);
    }
    if (key === 'maxJobsInFlight' && !Number.isInteger(value)) {
      throw new Error(`${flag} is a whole number of jobs (given ${value})`);
    }
    if ((key === 'requests' || key === 'rps') && value === 0) {
      throw new Error(`${flag} must be above 0`);
    }
    options[key] = value;
  }
  if ((options.rateChangeAtS as number) > 0 && !((options.rateChangeRps as number) > 0)) {
    throw new Error('--rate-change-at-s needs --rate-change-rps (the rate the operator sets)');
  }
  validateTenantFlags(options.tenants as number, options.hotTenantShare as number | undefined, options.tenantRps as number, options.rps as number);
  if ((options.rateChangeRps as number) > (options.rps as number)) {
    throw new Error(`--rate-change-rps ${options.rateChangeRps} is above the contract of ${options.rps} (--rps): the contract deployed is the ceiling`);
  }
  return options as unknown as DemoOptions;
}

/** `--quota LIMIT/SECONDS`, e.g. `5/3`: LIMIT calls per fixed period of SECONDS (whole seconds). */
function parseQuotaFlag(raw: string | undefined): { limit: number; periodSeconds: number } {
  const match = /^(\d+)\/(\d+)$/.exec(raw ?? '');
  if (!match || Number(match[1]) < 1 || Number(match[2]) < 1) {
    throw new Error(`--quota needs LIMIT/SECONDS, whole numbers of 1 or more, e.g. 5/3 (given '${raw}')`);
  }
  return { limit: Number(match[1]), periodSeconds: Number(match[2]) };
}

/** `--limit NAME:RPS[:METHODS[:PATH_PREFIX]]`, e.g. `results:2:GET` or `status:5:GET,HEAD:/status`. */
export function parseLimitFlag(raw: string | undefined): DemoLimit {
  // The library's parser: the audit CLI reads the same syntax.
  return parseNamedLimitFlag(raw, '--limit');
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
