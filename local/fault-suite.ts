/**
 * The fault-injection suite: the example app, synthesized and executed on the local runtime with
 * the real handlers, put through one misbehaviour at a time (vendor faults from the vendor
 * simulator, AWS faults from local/faults.ts), counting where every request ended.
 *
 * `npm run faults` runs every scenario and prints the results table (`--json` for JSON,
 * `--only <id,id>` for some); test/local/faults.test.ts runs the same scenarios with assertions.
 *
 * Outcome of each request, from its main workflow execution (as in local/demo.ts):
 *   SUCCEEDED -> succeeded; FAILED with VendorTimedOut / States.Timeout, or TIMED_OUT -> timedOut;
 *   any other FAILED / ABORTED -> failed; still RUNNING at the scenario's deadline -> lost.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import {
  DeleteMessageCommand, GetQueueAttributesCommand, PurgeQueueCommand, ReceiveMessageCommand, SetQueueAttributesCommand, SQSClient,
} from '@aws-sdk/client-sqs';
import { Duration } from 'aws-cdk-lib';
import { KeyLimits, VendorContract, VendorQuota } from '../src';
// A cycle (that module imports this one): its exports are used only inside runFaultSuite, at call time.
import { JOBS_SUITE_MAX_JOB_DURATION, JOBS_SUITE_MAX_JOBS_IN_FLIGHT, JOBS_SUITE_QUOTA, JOBS_SUITE_SCHEDULE_SPEEDUP, jobsInFlightScenarios } from './fault-suite-jobs-in-flight';
import { keyScenarios, keySuiteAccounts, keySuiteSecrets, SUITE_KEY, SUITE_KEY_SETTINGS_CACHE_TTL_MS } from './fault-suite-keys';
import { FaultCounters, FaultInjector, FaultPlan } from './faults';
import { LocalRuntime } from './runtime';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from './types';
import { VendorAccountsStats } from './vendor-accounts';
import { VendorJobsInFlightStats } from './vendor-jobs-in-flight';
import { VendorSimulator, VendorSimulatorOptions } from './vendor-simulator';
import { buildExampleApp, ExampleStack } from '../examples/app';

/** The example app's contract, and the vendor's. */
export const SUITE_RPS = 10;
/**
 * Short, so that the scenario waiting for timeouts ends quickly; long enough for the retries, crash
 * redeliveries and cold starts of the other scenarios on a loaded 2-core CI machine.
 */
export const SUITE_CALLBACK_TIMEOUT_MS = 30_000;

/** A running example app with fault hooks. */
export interface FaultSuiteContext {
  readonly runtime: LocalRuntime;
  readonly stack: ExampleStack;
  readonly faults: FaultInjector;
  /** Prefix of every request id of this run (ids stay unique in the correlation table). */
  readonly runId: string;
  /**
   * Whether the example app has credentials per key (local/fault-suite-keys.ts): every request
   * then has a key (`customerId`), and the vendor tells the keys apart by their credentials.
   */
  readonly credentialsPerKey: boolean;
  /**
   * Scenarios started with `startFaultScenarioInBackground` and not finished yet: the messages
   * their requests park while other scenarios run are kept for them.
   */
  readonly background: BackgroundScenario[];
}

/** What a scenario running in the background keeps: its request ids, the messages they parked. */
interface BackgroundScenario {
  readonly requestIds: ReadonlySet<string>;
  readonly parked: { readonly request: ParkedMessage[]; readonly callback: ParkedMessage[] };
  /** Nothing of it runs any more: its requests left are waiting for callbacks that never come. */
  quiet: boolean;
}

interface ParkedMessage {
  readonly body: string;
  readonly reason?: string;
}

/** What a scenario does. */
export interface FaultScenario {
  /** Short id, also the request id prefix. */
  readonly id: string;
  /** One line: the fault. */
  readonly title: string;
  /** The expected outcome, in words (the table's last column). */
  readonly expected: string;
  readonly requests: number;
  /** Vendor simulator options over the suite's defaults. */
  readonly vendor?: Partial<VendorSimulatorOptions>;
  /** Vendor simulator options that depend on when the scenario starts (epoch ms), over `vendor`. @default - none */
  readonly vendorAt?: (ctx: FaultSuiteContext, startedAtMs: number) => Partial<VendorSimulatorOptions>;
  /** Runs before the scenario's workflows start, e.g. to write a key's settings. @default - nothing */
  readonly beforeStart?: (ctx: FaultSuiteContext) => Promise<void>;
  /**
   * Runs beside the scenario's requests from their start (epoch ms), e.g. to change a key's
   * settings mid-run; awaited before anything is counted. @default - nothing
   */
  readonly duringRun?: (ctx: FaultSuiteContext, startedAtMs: number) => Promise<void>;
  /** AWS faults (local/faults.ts) during the scenario. */
  readonly faults?: FaultPlan;
  /**
   * Visibility timeout (seconds) of the request and callback queues during the scenario. The
   * template's 180 s would make every crash or throttled start wait three minutes for its redelivery.
   * Keep it above the longest invocation (a few requests: about a second).
   */
  readonly visibilityTimeoutSeconds?: number;
  /** Runs once every request has ended (before the settle wait), e.g. to replay callbacks. */
  readonly afterEnd?: (ctx: FaultSuiteContext, vendor: VendorSimulator, requestIds: string[]) => Promise<void>;
  /** Longest wait for the requests to end. @default callback timeout + 20 s */
  readonly withinMs?: number;
  /** With credentials per key: the key of request i (its `customerId`). @default SUITE_KEY */
  readonly keyOf?: (i: number) => string;
}

/** Where each request ended, and what the faults did. */
export interface FaultScenarioResult {
  readonly id: string;
  readonly title: string;
  readonly expected: string;
  readonly requests: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly timedOut: number;
  readonly lost: number;
  readonly failuresByError: Record<string, number>;
  /** Request ids with more than one job accepted by the vendor. */
  readonly duplicateVendorCalls: number;
  /** Requests resumed with a forged callback's result. */
  readonly forgedAccepted: number;
  readonly forgedSent: number;
  /** Waiting tasks resumed (accepted SendTaskSuccess / SendTaskFailure on main workflow tokens). */
  readonly resumes: number;
  readonly requestDeadLetters: number;
  readonly callbackDeadLetters: number;
  /** `reason` attributes of the parked callbacks. */
  readonly callbackParkReasons: Record<string, number>;
  /** `reason` attributes of the parked requests. */
  readonly requestParkReasons: Record<string, number>;
  /** Correlation-table status of each request (e.g. COMPLETED, LATE), counted. */
  readonly correlationStatuses: Record<string, number>;
  readonly vendorSubmissions: number;
  /** Answers the vendor gave from its injected faults (503s, 400s, 429s). */
  readonly vendorFaultAnswers: { readonly error: number; readonly reject: number; readonly throttle: number };
  readonly vendorCallbacks: number;
  /** Jobs in flight as the vendor counted them (violations: submissions refused for its limit). */
  readonly vendorJobsInFlight: VendorJobsInFlightStats;
  /**
   * With a vendor quota (`vendor.quota`): the most calls the vendor saw in one quota period, and the
   * calls beyond a period's limit (each refused 429). Else 0 and 0.
   */
  readonly vendorQuota: { readonly maxInAnyPeriod: number; readonly violations: number };
  /**
   * With credentials per key: the vendor's view per key (arrivals, calls over a key's own limit) and
   * calls with a credential it does not know (local/vendor-accounts.ts). Else empty.
   */
  readonly vendorKeys: VendorAccountsStats;
  /** Calls the vendor refused for the contract (its sliding second was full). */
  readonly vendorContractViolations: number;
  readonly injected: FaultCounters;
  /** Per request: its outcome (`SUCCEEDED`, `FAILED:<error>`, `RUNNING`), the vendor faults it got, its first job id. */
  readonly perRequest: Record<string, { outcome: string; vendorFaults: string[]; jobId?: string }>;
  readonly elapsedMs: number;
}

const VENDOR_HOST = 'vendor.example.com';

/** Synthesizes the example app and starts it on the local runtime with a fault injector. */
export async function startFaultSuite(options: {
  logFile?: string;
  warmUp?: boolean;
  /** The contract's jobs in flight (local/fault-suite-jobs-in-flight.ts). @default - no limit */
  maxJobsInFlight?: number;
  maxJobDuration?: Duration;
  /** The contract's quotas (with `maxJobsInFlight` only). @default - none */
  quotas?: VendorQuota[];
  /** Environment variables of every function (e.g. JOB_PLACE_SUBMISSION_WINDOW_MS). @default - none */
  functionEnv?: Record<string, string>;
  /** Divides every schedule's period (e.g. the jobs-in-flight sweep's minute). @default 1 */
  scheduleSpeedup?: number;
  /** The example app with credentials per key, and the keys' secrets (local/fault-suite-keys.ts). @default false */
  credentialsPerKey?: boolean;
} = {}): Promise<FaultSuiteContext> {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'faults-'));
  const { app, stack } = buildExampleApp({
    requestsPerSecond: SUITE_RPS,
    callbackTimeout: Duration.millis(SUITE_CALLBACK_TIMEOUT_MS),
    credentialsPerKey: options.credentialsPerKey,
    ...(options.maxJobsInFlight !== undefined ? {
      contract: VendorContract.of({
        requestsPerSecond: SUITE_RPS, maxJobsInFlight: options.maxJobsInFlight, maxJobDuration: options.maxJobDuration, quotas: options.quotas,
      }),
    } : options.credentialsPerKey ? {
      // Per-key limits at the contract's own rate: no key is held below it unless its settings
      // item says so (key-limit-change writes one for its key; the other scenarios keep their pace).
      contract: VendorContract.of({ requestsPerSecond: SUITE_RPS, perKey: KeyLimits.of({ requestsPerSecond: SUITE_RPS }) }),
    } : {}),
  }, outdir);
  app.synth();
  const faults = new FaultInjector();
  const runtime = await LocalRuntime.start({
    assemblyDir: outdir,
    removeAssemblyDirOnStop: true,
    stackName: stack.stackName,
    faults,
    logFile: options.logFile,
    ...(options.credentialsPerKey ? { secrets: keySuiteSecrets() } : {}),
    ...(options.functionEnv || options.credentialsPerKey ? {
      functionEnv: {
        // A key's changed settings are read within a second, not 30 s (key-limit-change).
        ...(options.credentialsPerKey ? { KEY_SETTINGS_CACHE_TTL_MS: String(SUITE_KEY_SETTINGS_CACHE_TTL_MS) } : {}),
        ...options.functionEnv,
      },
    } : {}),
    ...(options.scheduleSpeedup ? { scheduleSpeedup: options.scheduleSpeedup } : {}),
  });
  // A fixed run id: the vendor decides faults from the request id, so a run is reproducible (the
  // correlation table lives as long as this runtime, so ids need only be unique within it).
  const ctx: FaultSuiteContext = { runtime, stack, faults, runId: 'run', credentialsPerKey: options.credentialsPerKey ?? false, background: [] };
  if (options.warmUp ?? true) {
    // Cold starts (seconds on a busy CI machine) would eat into the first scenario's timeout budget.
    await runFaultScenario(ctx, { id: 'warm-up', title: 'warm-up', expected: '', requests: 2 });
  }
  return ctx;
}

/** Logical id of the one queue / function / table of the orchestrator matching `pattern`. */
function logicalId(ctx: FaultSuiteContext, type: string, pattern: RegExp): string {
  const found = ctx.runtime.template.ofType(type).filter((r) => pattern.test(r.logicalId));
  if (found.length !== 1) {
    throw new Error(`expected one ${type} matching ${pattern}, found ${found.map((r) => r.logicalId).join(', ') || 'none'}`);
  }
  return found[0].logicalId;
}

export const dispatcherFunction = (ctx: FaultSuiteContext) => logicalId(ctx, 'AWS::Lambda::Function', /ConsumerFunction/);
export const callbackProcessorFunction = (ctx: FaultSuiteContext) => logicalId(ctx, 'AWS::Lambda::Function', /WebhookProcessor/);

function sqs(ctx: FaultSuiteContext): SQSClient {
  return new SQSClient({ endpoint: ctx.runtime.endpoints.sqs, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
}

function queueUrl(ctx: FaultSuiteContext, pattern: RegExp): string {
  return ctx.runtime.template.queueUrlOf(logicalId(ctx, 'AWS::SQS::Queue', pattern));
}

const REQUEST_QUEUE = /RequestQueue/;
const CALLBACK_QUEUE = /CallbackQueue/;
const REQUEST_DLQ = /RequestDeadLetterQueue/;
const CALLBACK_DLQ = /CallbackDeadLetterQueue/;

async function setVisibility(ctx: FaultSuiteContext, seconds: number | undefined): Promise<void> {
  const client = sqs(ctx);
  try {
    for (const pattern of [REQUEST_QUEUE, CALLBACK_QUEUE]) {
      const id = logicalId(ctx, 'AWS::SQS::Queue', pattern);
      const templateValue = ctx.runtime.template.ofType('AWS::SQS::Queue').find((q) => q.logicalId === id)!.properties.VisibilityTimeout;
      await client.send(new SetQueueAttributesCommand({
        QueueUrl: ctx.runtime.template.queueUrlOf(id),
        Attributes: { VisibilityTimeout: String(seconds ?? templateValue ?? 30) },
      }));
    }
  } finally {
    client.destroy();
  }
}

async function queueDepth(client: SQSClient, url: string): Promise<number> {
  const { Attributes } = await client.send(new GetQueueAttributesCommand({
    QueueUrl: url,
    AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
  }));
  return Number(Attributes?.ApproximateNumberOfMessages ?? 0) + Number(Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
    + Number(Attributes?.ApproximateNumberOfMessagesDelayed ?? 0);
}

/**
 * Reads (and deletes) every message of a dead-letter queue: the scenario's parked messages. A
 * message of a request of a scenario running in the background goes to that scenario instead.
 */
async function drain(ctx: FaultSuiteContext, client: SQSClient, url: string, side: 'request' | 'callback'): Promise<ParkedMessage[]> {
  const out: ParkedMessage[] = [];
  for (;;) {
    const { Messages } = await client.send(new ReceiveMessageCommand({
      QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0, VisibilityTimeout: 30, MessageAttributeNames: ['All'],
    }));
    if (!Messages?.length) return out;
    for (const m of Messages) {
      const parked = { body: m.Body ?? '', reason: m.MessageAttributes?.reason?.StringValue };
      const owner = ctx.background.find((b) => requestIdsIn(parked.body).some((id) => b.requestIds.has(id)));
      (owner ? owner.parked[side] : out).push(parked);
      await client.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.ReceiptHandle! }));
    }
  }
}

/**
 * The request ids a parked message names: a request message holds its request id in its JSON
 * body; a callback message is the webhook's envelope, whose callback body (the vendor's, with
 * the request id) is base64 (src/callback-webhook/mapping-template.ts).
 */
function requestIdsIn(body: string): string[] {
  let text = body;
  try {
    const envelope = JSON.parse(body);
    if (typeof envelope?.bodyBase64 === 'string') text += Buffer.from(envelope.bodyBase64, 'base64').toString('utf8');
  } catch {
    // Not JSON: the text as it is.
  }
  return [...text.matchAll(/"requestId"\s*:\s*"([^"]+)"/g)].map((match) => match[1]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let scenarioRuns = 0;

/** A scenario whose requests are started: what counting it needs. */
interface StartedScenario {
  readonly scenario: FaultScenario;
  readonly started: number;
  readonly client: SQSClient;
  readonly vendor: VendorSimulator;
  readonly requestIds: string[];
  readonly arns: string[];
  /** The scenario's `duringRun`, running. */
  readonly during: Promise<void>;
}

/** Runs one scenario on a started suite; the vendor is the scenario's own, stopped at the end. */
export async function runFaultScenario(ctx: FaultSuiteContext, scenario: FaultScenario): Promise<FaultScenarioResult> {
  return finishScenario(ctx, await startScenario(ctx, scenario));
}

/**
 * Starts a scenario that spends its time waiting (the vendor slower than the callback timeout)
 * and returns once the vendor has accepted every request, so that other scenarios run during the
 * wait; `finish()` then waits for the requests to end, settles and counts, as `runFaultScenario`.
 *
 * What keeps the scenarios apart: the vendor host is handed to the next scenario only after the
 * background one's requests have all reached its vendor (its callbacks go to the webhook by URL,
 * not through the host); a message one of its requests parks is kept for it (see `drain`); its
 * resumes are those of its own executions; its correlation statuses are its requests' own. What
 * would not be kept apart is refused: AWS faults or another visibility timeout, on the background
 * scenario or on a scenario started while it runs (finish it first).
 *
 * With `quietWhen`, it returns later: once every request has ended but those whose job the vendor
 * will never call back (fault `noCallback`, waiting for the callback timeout), and `quietWhen`
 * holds (e.g. no place in flight held any more). Nothing of it runs after that, so the scenarios
 * started beside it may inject AWS faults and set visibility timeouts.
 */
export async function startFaultScenarioInBackground(
  ctx: FaultSuiteContext, scenario: FaultScenario,
  options: { readonly quietWhen?: (ctx: FaultSuiteContext) => Promise<boolean> } = {},
): Promise<{ finish(): Promise<FaultScenarioResult> }> {
  refuseBesideBackground(ctx, scenario, true);
  const started = await startScenario(ctx, scenario);
  const background: BackgroundScenario = { requestIds: new Set(started.requestIds), parked: { request: [], callback: [] }, quiet: false };
  ctx.background.push(background);
  try {
    const deadline = Date.now() + (scenario.withinMs ?? SUITE_CALLBACK_TIMEOUT_MS + 20_000);
    const reachedVendor = (id: string) => (started.vendor.stats().requests[id]?.accepted ?? 0) > 0;
    const running = (i: number) => ctx.runtime.sfn.describeExecution(started.arns[i]).status === 'RUNNING';
    while (started.requestIds.some((id, i) => !reachedVendor(id) && running(i))) {
      // A later submission would reach the next scenario's vendor.
      if (Date.now() > deadline) throw new Error(`background scenario ${scenario.id}: not every request reached its vendor in time`);
      await sleep(100);
    }
    if (options.quietWhen) {
      const neverCalledBack = (id: string) => reachedVendor(id) && started.vendor.faultsOf(id).includes('noCallback');
      while (started.requestIds.some((id, i) => running(i) && !neverCalledBack(id)) || !await options.quietWhen(ctx)) {
        // Faults beside a scenario still running would reach its requests.
        if (Date.now() > deadline) throw new Error(`background scenario ${scenario.id}: not quiet in time`);
        await sleep(200);
      }
      background.quiet = true;
    }
  } catch (error) {
    ctx.background.splice(ctx.background.indexOf(background), 1);
    await finishScenario(ctx, started).catch(() => undefined);
    throw error;
  }
  let finished: Promise<FaultScenarioResult> | undefined;
  return {
    finish: () => finished ??= finishScenario(ctx, started, background),
  };
}

/**
 * AWS faults and visibility timeouts reach every request of the runtime: a scenario with either
 * neither runs in the background nor starts while one does.
 */
function refuseBesideBackground(ctx: FaultSuiteContext, scenario: FaultScenario, inBackground: boolean): void {
  const shared = scenario.faults ? 'AWS faults' : scenario.visibilityTimeoutSeconds !== undefined ? 'a visibility timeout' : undefined;
  if (shared && inBackground) {
    throw new Error(`scenario ${scenario.id} sets ${shared}, which would reach other scenarios' requests: it cannot run in the background`);
  }
  if (shared && ctx.background.some((b) => !b.quiet)) {
    throw new Error(`scenario ${scenario.id} sets ${shared}, which would reach the requests of the scenario running in the background: finish that one first`);
  }
}

/** Starts the scenario's vendor and its main workflows. */
async function startScenario(ctx: FaultSuiteContext, scenario: FaultScenario): Promise<StartedScenario> {
  refuseBesideBackground(ctx, scenario, false);
  const { runtime } = ctx;
  const started = Date.now();
  const client = sqs(ctx);
  const vendor = new VendorSimulator({
    requestsPerSecond: SUITE_RPS,
    latencyMs: 20,
    callbackDelayMs: 200,
    rewriteUrl: (url) => runtime.rewriteUrl(url),
    seed: 7,
    // Each key is an account of its own at the vendor, told apart by its credential.
    ...(ctx.credentialsPerKey ? { accounts: keySuiteAccounts() } : {}),
    ...scenario.vendor,
    ...scenario.vendorAt?.(ctx, started),
  });
  try {
    runtime.mapHost(VENDOR_HOST, await vendor.start());
    // A clean slate: no parked messages of an earlier scenario (those of a scenario running in the
    // background are kept for it), the scenario's faults and timeouts.
    for (const [dlq, side] of [[REQUEST_DLQ, 'request'], [CALLBACK_DLQ, 'callback']] as const) {
      if (ctx.background.length > 0) {
        await drain(ctx, client, queueUrl(ctx, dlq), side);
      } else {
        await client.send(new PurgeQueueCommand({ QueueUrl: queueUrl(ctx, dlq) }));
      }
    }
    await setVisibility(ctx, scenario.visibilityTimeoutSeconds);
    ctx.faults.configure(scenario.faults ?? {});
    await scenario.beforeStart?.(ctx);

    // 1. Start the main workflows.
    const mainArn = runtime.stateMachineArn(ctx.stack.mainWorkflow);
    const requestIds: string[] = [];
    const arns: string[] = [];
    const runNumber = ++scenarioRuns;
    for (let i = 0; i < scenario.requests; i++) {
      // Unique in the correlation table, also when a scenario runs twice on one runtime.
      const orderId = `${ctx.runId}-${runNumber}-${scenario.id}-${i}`;
      requestIds.push(orderId);
      const key = ctx.credentialsPerKey ? { customerId: scenario.keyOf?.(i) ?? SUITE_KEY } : {};
      const { executionArn } = runtime.sfn.startExecution(mainArn, JSON.stringify({ orderId, ...key, order: { orderId, quantity: i } }));
      arns.push(executionArn);
    }
    const during = scenario.duringRun?.(ctx, started) ?? Promise.resolve();
    // Awaited in finishScenario; a failure before then must not be an unhandled rejection.
    during.catch(() => undefined);
    return { scenario, started, client, vendor, requestIds, arns, during };
  } catch (error) {
    ctx.faults.reset();
    await vendor.stop();
    client.destroy();
    throw error;
  }
}

/** Waits for the scenario's requests to end, settles, counts; stops its vendor. */
async function finishScenario(ctx: FaultSuiteContext, s: StartedScenario, background?: BackgroundScenario): Promise<FaultScenarioResult> {
  const { runtime } = ctx;
  const { scenario, started, client, vendor, requestIds, arns, during } = s;
  try {
    // 2. Wait for every request to end.
    const deadline = started + (scenario.withinMs ?? SUITE_CALLBACK_TIMEOUT_MS + 20_000);
    while (Date.now() < deadline && arns.some((arn) => runtime.sfn.describeExecution(arn).status === 'RUNNING')) {
      await sleep(100);
    }
    await during;
    await scenario.afterEnd?.(ctx, vendor, requestIds);

    // 3. Settle: callbacks still coming (late, duplicate, replayed) are delivered and processed,
    // and the queues are empty, before anything is counted.
    const settleBy = Date.now() + 20_000;
    const callbackQueue = queueUrl(ctx, CALLBACK_QUEUE);
    const requestQueue = queueUrl(ctx, REQUEST_QUEUE);
    await sleep(300);
    while (Date.now() < settleBy) {
      // Every job that will be called back has been (its callback delay may outlast the workflows).
      const callbacks = vendor.callbacks();
      const owed = Object.values(vendor.stats().requests).filter((r) => r.accepted > 0 && !r.faults.includes('noCallback'));
      const pending = callbacks.some((c) => c.outcome === 'pending')
        || owed.some((r) => !callbacks.some((c) => c.requestId === r.requestId && c.kind === 'genuine'));
      const depth = await queueDepth(client, callbackQueue) + await queueDepth(client, requestQueue);
      if (!pending && depth === 0) break;
      await sleep(200);
    }
    await sleep(300);
    const injected = ctx.faults.stats();
    ctx.faults.reset();

    // 4. Count.
    let succeeded = 0;
    let failed = 0;
    let timedOut = 0;
    let lost = 0;
    let forgedAccepted = 0;
    let resumes = 0;
    const failuresByError: Record<string, number> = {};
    const perRequest: FaultScenarioResult['perRequest'] = {};
    arns.forEach((arn, i) => {
      const e = runtime.sfn.describeExecution(arn);
      resumes += runtime.sfn.resumesOf(arn);
      let outcome: string = e.status;
      if (e.status === 'SUCCEEDED') {
        succeeded++;
        if (e.output && e.output.includes('"forged":true')) forgedAccepted++;
      } else if (e.status === 'TIMED_OUT' || (e.status === 'FAILED' && (e.error === 'States.Timeout' || e.error === 'VendorTimedOut'))) {
        timedOut++;
        outcome = `FAILED:${e.error ?? 'TIMED_OUT'}`;
      } else if (e.status === 'FAILED' || e.status === 'ABORTED') {
        failed++;
        const key = e.error ?? 'unknown';
        failuresByError[key] = (failuresByError[key] ?? 0) + 1;
        outcome = `FAILED:${key}`;
      } else {
        lost++;
      }
      perRequest[requestIds[i]] = { outcome, vendorFaults: vendor.faultsOf(requestIds[i]), jobId: vendor.stats().requests[requestIds[i]]?.jobId };
    });
    // A background scenario takes what was kept for it, and the rest is its own from here on.
    if (background) ctx.background.splice(ctx.background.indexOf(background), 1);
    const parkedRequests = [...(background?.parked.request ?? []), ...await drain(ctx, client, queueUrl(ctx, REQUEST_DLQ), 'request')];
    const parkedCallbacks = [...(background?.parked.callback ?? []), ...await drain(ctx, client, queueUrl(ctx, CALLBACK_DLQ), 'callback')];
    const reasons = (parked: Array<{ reason?: string }>) => {
      const out: Record<string, number> = {};
      for (const p of parked) out[p.reason ?? 'none'] = (out[p.reason ?? 'none'] ?? 0) + 1;
      return out;
    };
    const stats = vendor.stats();
    return {
      id: scenario.id,
      title: scenario.title,
      expected: scenario.expected,
      requests: scenario.requests,
      succeeded,
      failed,
      timedOut,
      lost,
      failuresByError,
      duplicateVendorCalls: stats.duplicateVendorCalls,
      forgedAccepted,
      forgedSent: stats.forgedSent,
      resumes,
      requestDeadLetters: parkedRequests.length,
      callbackDeadLetters: parkedCallbacks.length,
      callbackParkReasons: reasons(parkedCallbacks),
      requestParkReasons: reasons(parkedRequests),
      correlationStatuses: await correlationStatuses(ctx, requestIds),
      vendorSubmissions: stats.submissions,
      vendorFaultAnswers: stats.faultAnswers,
      vendorCallbacks: stats.callbacksSent + stats.forgedSent,
      vendorJobsInFlight: stats.jobsInFlight,
      vendorQuota: { maxInAnyPeriod: stats.quotaMaxInAnyPeriod, violations: stats.quotaViolations },
      vendorKeys: stats.keys,
      vendorContractViolations: stats.violations,
      injected,
      perRequest,
      elapsedMs: Date.now() - started,
    };
  } finally {
    if (background && ctx.background.includes(background)) ctx.background.splice(ctx.background.indexOf(background), 1);
    ctx.faults.reset();
    await vendor.stop();
    client.destroy();
  }
}

/** The `status` of each request's correlation item, counted (`none` when there is no item). */
async function correlationStatuses(ctx: FaultSuiteContext, requestIds: string[]): Promise<Record<string, number>> {
  const table = ctx.runtime.template.nameOf(logicalId(ctx, 'AWS::DynamoDB::Table', /CorrelationTable/));
  const ddb = new DynamoDBClient({ endpoint: ctx.runtime.endpoints.dynamodb, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  const out: Record<string, number> = {};
  try {
    for (const requestId of requestIds) {
      const { Item } = await ddb.send(new GetItemCommand({ TableName: table, Key: { requestId: { S: requestId } }, ConsistentRead: true }));
      const status = Item?.status?.S ?? 'none';
      out[status] = (out[status] ?? 0) + 1;
    }
  } finally {
    ddb.destroy();
  }
  return out;
}

/** POSTs each request's genuine callback body again, later, to the URL the vendor called back. */
export async function replayCallbacks(_ctx: FaultSuiteContext, vendor: VendorSimulator, requestIds: string[]): Promise<void> {
  const stats = vendor.stats();
  const delivered = vendor.callbacks().filter((c) => c.kind === 'genuine' && c.outcome === 'delivered');
  for (const requestId of requestIds) {
    const record = stats.requests[requestId];
    const callback = delivered.find((c) => c.requestId === requestId);
    if (!record?.jobId || !callback) continue;
    // The same job id and status, a different result: a replay must change nothing.
    const body = JSON.stringify({ jobId: record.jobId, requestId, status: 'SUCCEEDED', result: { replayed: true } });
    for (let i = 0; i < 2; i++) {
      await fetch(callback.url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    }
  }
}

/**
 * The scenarios, in the order they run (the one waiting for timeouts last); with credentials per
 * key, the key scenarios (local/fault-suite-keys.ts) before it.
 */
export function faultScenarios(ctx: FaultSuiteContext): FaultScenario[] {
  const scenarios = baseScenarios(ctx);
  return ctx.credentialsPerKey ? [...scenarios.slice(0, -1), ...keyScenarios(), ...scenarios.slice(-1)] : scenarios;
}

function baseScenarios(ctx: FaultSuiteContext): FaultScenario[] {
  const dispatcher = dispatcherFunction(ctx);
  const processor = callbackProcessorFunction(ctx);
  return [
    {
      id: 'vendor-5xx',
      title: 'Vendor 5xx burst: 60% of first submissions answered 503; 25% of requests rejected 400 (permanent)',
      expected: 'retried through the paced queue and succeeded; rejected ones fail VendorRequestFailed and are parked in the request DLQ',
      requests: 8,
      vendor: { errorRate: 0.6, errorAttempts: 1, rejectRate: 0.25 },
    },
    {
      id: 'vendor-429',
      title: '429 storm: every first submission answered 429 Retry-After 1',
      expected: 'retried through the paced queue and succeeded',
      requests: 8,
      vendor: { throttleRate: 1 },
    },
    {
      id: 'duplicate-cb',
      title: 'Duplicate callbacks: every job called back twice',
      expected: 'succeeded, resumed once; the duplicate acknowledged (DuplicateCallbacks)',
      requests: 6,
      vendor: { duplicateCallbackRate: 1 },
    },
    {
      id: 'early-cb',
      title: 'Early callbacks: the callback arrives before the submission is answered',
      expected: 'retried with backoff until the job id is stored, then resumed',
      requests: 4,
      vendor: { earlyCallbackRate: 1 },
    },
    {
      id: 'replayed-cb',
      title: 'Replayed callbacks: each callback posted twice more after the workflow resumed, with another result',
      expected: 'succeeded with the first result; replays acknowledged, nothing resumed twice',
      requests: 4,
      afterEnd: replayCallbacks,
    },
    {
      id: 'forged-cb',
      title: 'Forged callbacks: an unauthenticated callback with the right job id arrives before the genuine one',
      expected: 'forged ones resume nothing; the genuine callback resumes the workflow',
      requests: 4,
      vendor: { forgedCallbackRate: 1 },
    },
    {
      id: 'dispatcher-crash',
      title: 'Dispatcher crash mid-batch: its execution environment dies after the 3rd StartExecution',
      expected: 'the batch is redelivered; started requests stop at AlreadySubmitted; all succeed once',
      requests: 8,
      faults: { crash: [{ functionName: dispatcher, service: 'sfn', action: 'StartExecution', afterCalls: 3 }] },
      visibilityTimeoutSeconds: 3,
    },
    {
      id: 'processor-crash',
      title: 'Callback processor crash after SendTaskSuccess, before its messages are deleted (twice)',
      expected: 'callbacks redelivered and acknowledged as duplicates or late; resumed once',
      requests: 6,
      faults: { crash: [{ functionName: processor, service: 'sfn', action: 'SendTaskSuccess', afterCalls: 2, times: 2 }] },
      visibilityTimeoutSeconds: 3,
    },
    {
      id: 'ddb-throttle',
      title: 'DynamoDB throttling: 25% of all calls answered ProvisionedThroughputExceeded / Throttling',
      expected: 'SDK and state machine retries absorb it; all succeed',
      requests: 8,
      faults: { throttle: [{ service: 'dynamodb', rate: 0.25 }], seed: 11 },
      visibilityTimeoutSeconds: 3,
    },
    {
      id: 'sfn-throttle',
      title: 'Step Functions throttling: 30% of the handlers\' StartExecution / SendTask* calls answered ThrottlingException',
      expected: 'throttled starts tried again in their slot (else back through the queue), SendTask* retried; all succeed',
      requests: 8,
      faults: { throttle: [{ service: 'sfn', rate: 0.3 }], seed: 13 },
      visibilityTimeoutSeconds: 3,
    },
    {
      id: 'silent-slow-malformed',
      title: 'A vendor slower than the timeout: every callback 1.5 s after callbackTimeout; a third never called back, half of the rest malformed',
      expected: 'all time out (VendorTimedOut); late callbacks acknowledged and recorded LATE; malformed ones parked (MALFORMED_BODY); nothing retried',
      requests: 9,
      vendor: { callbackDelayMs: SUITE_CALLBACK_TIMEOUT_MS + 1500, noCallbackRate: 0.34, malformedCallbackRate: 0.5 },
    },
  ];
}

/** The results as a markdown table. */
export function formatFaultTable(results: FaultScenarioResult[]): string {
  const header = ['Scenario', 'Requests', 'Succeeded', 'Failed', 'Timed out', 'Lost', 'Duplicate vendor calls',
    'Forged accepted', 'Resumes', 'Request DLQ', 'Callback DLQ', 'Injected', 'Time (s)'];
  const rows = results.map((r) => {
    const injected = [
      r.injected.throttledTotal ? `${r.injected.throttledTotal} throttled` : '',
      Object.values(r.injected.crashes).reduce((a, b) => a + b, 0) ? `${Object.values(r.injected.crashes).reduce((a, b) => a + b, 0)} crash(es)` : '',
      r.forgedSent ? `${r.forgedSent} forged` : '',
    ].filter(Boolean).join(', ') || '-';
    const failed = r.failed ? `${r.failed} (${Object.entries(r.failuresByError).map(([k, v]) => `${k} ${v}`).join(', ')})` : '0';
    return [`\`${r.id}\`: ${r.title}`, r.requests, r.succeeded, failed, r.timedOut, r.lost, r.duplicateVendorCalls,
      r.forgedAccepted, r.resumes, r.requestDeadLetters, r.callbackDeadLetters, injected, (r.elapsedMs / 1000).toFixed(1)];
  });
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

/**
 * Runs the scenarios (all, or the ids given): the main ones on one runtime, then the jobs-in-flight
 * ones (local/fault-suite-jobs-in-flight.ts) on a second runtime whose contract has the limit.
 */
export async function runFaultSuite(
  only?: string[], progress: (line: string) => void = () => undefined, logFile?: string,
): Promise<FaultScenarioResult[]> {
  const main = await runScenarios(() => startFaultSuite({ logFile, credentialsPerKey: true }), faultScenarios, only, progress);
  const inFlight = await runScenarios(
    () => startFaultSuite({
      logFile,
      maxJobsInFlight: JOBS_SUITE_MAX_JOBS_IN_FLIGHT,
      maxJobDuration: JOBS_SUITE_MAX_JOB_DURATION,
      quotas: [VendorQuota.every(Duration.millis(JOBS_SUITE_QUOTA.periodMs), JOBS_SUITE_QUOTA.limit)],
      // As test/local/jobs-in-flight-faults.test.ts: 1 s instead of the dispatch workflow's 5 minutes
      // from admission to submission, so that lost callbacks' places expire within the scenario.
      functionEnv: { JOB_PLACE_SUBMISSION_WINDOW_MS: '1000' },
      scheduleSpeedup: JOBS_SUITE_SCHEDULE_SPEEDUP,
    }),
    (ctx) => jobsInFlightScenarios(ctx).map((scenario) => ({
      ...scenario, vendor: { maxJobsInFlight: JOBS_SUITE_MAX_JOBS_IN_FLIGHT, quota: JOBS_SUITE_QUOTA, ...scenario.vendor },
    })),
    only, progress);
  return [...main, ...inFlight];
}

/** Starts one runtime and runs its scenarios (those of `only`, when given) one after another. */
async function runScenarios(
  start: () => Promise<FaultSuiteContext>,
  scenariosOf: (ctx: FaultSuiteContext) => FaultScenario[],
  only: string[] | undefined,
  progress: (line: string) => void,
): Promise<FaultScenarioResult[]> {
  const ctx = await start();
  try {
    const results: FaultScenarioResult[] = [];
    for (const scenario of scenariosOf(ctx).filter((s) => !only || only.includes(s.id))) {
      progress(`running ${scenario.id} ...`);
      const result = await runFaultScenario(ctx, scenario);
      progress(`  ${scenario.id}: ${result.succeeded} succeeded, ${result.failed} failed, ${result.timedOut} timed out, ${result.lost} lost, `
        + `${result.vendorSubmissions} vendor submissions (${(result.elapsedMs / 1000).toFixed(1)} s)`);
      results.push(result);
    }
    return results;
  } finally {
    await ctx.runtime.stop();
  }
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const onlyIndex = args.indexOf('--only');
  const only = onlyIndex >= 0 ? args[onlyIndex + 1]?.split(',') : undefined;
  const unknown = args.filter((a, i) => a !== '--json' && a !== '--only' && !(onlyIndex >= 0 && i === onlyIndex + 1));
  if (unknown.length > 0) {
    console.error(`unknown argument(s) ${unknown.join(' ')}; flags: --json, --only <id,id>`);
    process.exit(2);
  }
  const started = Date.now();
  runFaultSuite(only, (line) => process.stderr.write(`${line}\n`), process.env.FAULTS_LOG).then((results) => {
    console.log(formatFaultTable(results));
    const bad = results.filter((r) => r.lost > 0 || r.duplicateVendorCalls > 0 || r.forgedAccepted > 0
      || r.vendorJobsInFlight.violations > 0 || r.vendorQuota.violations > 0 || r.vendorKeys.violations > 0 || r.vendorKeys.unknownCredential > 0
      || r.succeeded + r.failed + r.timedOut + r.lost !== r.requests);
    console.log(`\n${results.length} scenarios in ${((Date.now() - started) / 1000).toFixed(1)} s; `
      + `${bad.length ? `NOT SAFE: ${bad.map((r) => r.id).join(', ')}` : 'lost 0, duplicate vendor calls 0, forged accepted 0, jobs over the in-flight limit 0, calls over the quota 0, '
      + 'calls over a key\'s limit or with an unknown credential 0 in every scenario'}`);
    if (json) {
      console.log(JSON.stringify(results.map(({ perRequest: _perRequest, ...r }) => r)));
    }
    process.exit(0);
  }).catch((error) => {
    console.error(error instanceof Error ? error.stack ?? error.message : error);
    process.exit(1);
  });
}
