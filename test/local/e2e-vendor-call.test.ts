/**
 * End-to-end, paced vendor calls (callVendorTask, blog step 11): the example app's main workflow
 * submits a job, waits for the callback, then fetches the job's result from the vendor through the
 * same queue, pacing and proxy. Synthesized template and bundled handlers on the local runtime,
 * against the vendor simulator.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { buildExampleApp, ExampleStack } from '../../examples/app';
import { forwardedArrivals, sortedPairSpreadMs } from '../../local/access-log-audit';
import { evaluateInsightRule } from '../../local/aws/contributor-insights';
import { LocalRuntime } from '../../local/runtime';
import { maxInAnyWindow, VendorSimulator, VendorSimulatorOptions } from '../../local/vendor-simulator';
import { auditAccessLog, parseAccessLogExport } from '../../src/throttled-proxy/access-log-audit-report';
import { flattenCfnString } from '../util';

jest.setTimeout(120_000);

let runtime: LocalRuntime;
let stack: ExampleStack;
let vendor: VendorSimulator | undefined;
/** The handlers' output (their EMF documents among it). */
let logFile: string;

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-call-'));
  const built = buildExampleApp({ requestsPerSecond: 10, callbackTimeout: Duration.seconds(20) }, outdir);
  built.app.synth();
  stack = built.stack;
  logFile = process.env.E2E_LOG ?? path.join(outdir, 'handlers.log');
  runtime = await LocalRuntime.start({ assemblyDir: outdir, stackName: stack.stackName, logFile });
});

afterAll(async () => {
  await vendor?.stop();
  await runtime?.stop();
});

afterEach(async () => {
  await vendor?.stop();
  vendor = undefined;
});

async function useVendor(options: Partial<VendorSimulatorOptions>): Promise<VendorSimulator> {
  vendor = new VendorSimulator({
    requestsPerSecond: 10,
    latencyMs: 20,
    callbackDelayMs: 100,
    rewriteUrl: (url) => runtime.rewriteUrl(url),
    seed: 11,
    ...options,
  });
  runtime.mapHost('vendor.example.com', await vendor.start());
  return vendor;
}

let counter = 0;
async function runOrders(n: number, withinMs = 60_000) {
  const arns: string[] = [];
  for (let i = 0; i < n; i++) {
    const orderId = `call-order-${++counter}`;
    const { executionArn } = await runtime.sfn.startExecution(runtime.stateMachineArn(stack.mainWorkflow),
      JSON.stringify({ orderId, order: { orderId, quantity: i } }));
    arns.push(executionArn);
  }
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline && arns.some((arn) => runtime.sfn.describeExecution(arn).status === 'RUNNING')) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const results = arns.map((arn) => runtime.sfn.describeExecution(arn));
  for (const r of results.filter((x) => x.status === 'FAILED')) {
    console.log(`${r.executionArn}: ${r.error}: ${r.cause}`);
  }
  return results;
}

const outputOf = (r: { output?: unknown }) => (typeof r.output === 'string' ? JSON.parse(r.output) : r.output);

test('submit -> callback -> paced fetch returns the vendor\'s result; every call is within the contract', async () => {
  // GIVEN
  const v = await useVendor({});
  const proxyId = Object.keys(runtime.apiGateway.ports).find((id) => id.includes('proxy'))!;
  const logLinesBefore = (await runtime.apiGateway.accessLog(proxyId)).length;

  // WHEN
  const results = await runOrders(6);

  // THEN: each workflow ends with the result the vendor's result endpoint returned
  expect(results.map((r) => r.status)).toEqual(Array(6).fill('SUCCEEDED'));
  for (const r of results) {
    const output = outputOf(r);
    expect(output.result).toEqual({ jobId: output.jobId, status: 'SUCCEEDED', result: { echo: { orderId: output.orderId, quantity: expect.any(Number) } } });
  }
  const stats = v.stats();
  expect(stats.accepted).toBe(6);
  expect(stats.resultFetches).toBe(6);
  // Submissions and fetches share the contract: one arrival log, never above 10 in any second.
  expect(v.arrivals()).toHaveLength(12);
  expect(maxInAnyWindow(v.arrivals())).toBeLessThanOrEqual(10);
  expect(stats.violations).toBe(0);
  // The vendor caller signs each call for the proxy (SigV4): nothing of that signature reaches the vendor (issue 11, finding 9).
  expect(stats.callsWithAwsSignature).toBe(0);
  // The proxy's access log has each call's slot (the caller's User-Agent) beside API Gateway's
  // receive time: lateness + path + clock offset on one clock (README, "check it once deployed").
  const paced = (await runtime.apiGateway.accessLog(proxyId)).slice(logLinesBefore).map((l) => JSON.parse(l))
    .filter((l) => String(l.userAgent).startsWith('cdk-async-external-api-vendor-caller/'));
  expect(paced).toHaveLength(12);
  for (const line of paced) {
    const afterSlotMs = Number(line.requestTimeEpoch) - Number(/ slot\/(\S+)$/.exec(line.userAgent)![1]);
    // One machine, one clock: at most the caller's fire tolerance plus the local path, never (a
    // whole millisecond) early.
    expect(afterSlotMs).toBeGreaterThan(-1);
    expect(afterSlotMs).toBeLessThan(1000);
  }
  // The audit from the proxy's access log (README, "Audit") finds every call the vendor counted, and
  // its busiest closed window is the simulator's within the proxy -> vendor hop: the hop's spread D
  // (measured from the two records) can move an arrival across a window's edge, never more.
  const lines = (await runtime.apiGateway.accessLog(proxyId)).slice(logLinesBefore);
  const records = parseAccessLogExport(lines.join('\n'));
  const audit = auditAccessLog(records, 1000, 10);
  expect(audit).toMatchObject({ forwarded: 12, violations: 0, vendorThrottles: 0 });
  const spread = sortedPairSpreadMs(forwardedArrivals(lines), v.arrivals())!;
  expect(spread).toBeGreaterThanOrEqual(0);
  expect(auditAccessLog(records, 1000 - spread).busiest.count).toBeLessThanOrEqual(maxInAnyWindow(v.arrivals()));
  expect(auditAccessLog(records, 1000 + spread).busiest.count).toBeGreaterThanOrEqual(maxInAnyWindow(v.arrivals()));
  // AND the synthesized Contributor Insights rule, run on these lines, sees the audit's busiest
  // calendar second (events timed by requestTimeEpoch here: the minute a line lands in is AWS's).
  const [insightRule] = runtime.template.ofType('AWS::CloudWatch::InsightRule');
  const periods = evaluateInsightRule(JSON.parse(flattenCfnString(insightRule.properties.RuleBody)),
    lines.map((message) => ({ timestamp: Number(JSON.parse(message).requestTimeEpoch), message })));
  expect(Math.max(...periods.map((p) => p.maxContributorValue))).toBe(audit.busiestCalendarSecond.count);
  expect(periods.reduce((n, p) => n + p.sampleCount, 0)).toBe(12);
});

test('the proxy\'s arrival audit publishes VendorArrivalAfterSlot for each paced call, equal to the access log\'s requestTimeEpoch - slot (issue 13, item 2)', async () => {
  // GIVEN: what was delivered and written so far
  await useVendor({});
  const proxyId = Object.keys(runtime.apiGateway.ports).find((id) => id.includes('proxy'))!;
  await runtime.logSubscriptions.flush();
  const logLinesBefore = (await runtime.apiGateway.accessLog(proxyId)).length;
  const deliveriesBefore = runtime.logSubscriptions.history().length;
  // The function's stdout reaches the log file asynchronously: the EMF of the deliveries so far
  // (earlier tests' calls) must have landed before the baseline, or they would count as this test's.
  const measuredBefore = runtime.logSubscriptions.history().reduce((n, d) => n + ((d.result as { measured?: number } | undefined)?.measured ?? 0), 0);
  for (let i = 0; i < 50 && publishedArrivals(0).length < measuredBefore; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const logBytesBefore = fs.existsSync(logFile) ? fs.statSync(logFile).size : 0;

  // WHEN: two orders (a submission and a result fetch each), then the subscription delivers the rest
  const results = await runOrders(2);
  await runtime.logSubscriptions.flush();
  // (its timer may have delivered part of them already)
  const deliveries = runtime.logSubscriptions.history().slice(deliveriesBefore);

  // THEN: the audit measured every paced call, on the access log's numbers
  expect(results.map((r) => r.status)).toEqual(['SUCCEEDED', 'SUCCEEDED']);
  const expected = (await runtime.apiGateway.accessLog(proxyId)).slice(logLinesBefore).map((l) => JSON.parse(l))
    .filter((l) => String(l.userAgent).startsWith('cdk-async-external-api-vendor-caller/'))
    .map((l) => Math.round((Number(l.requestTimeEpoch) - Number(/ slot\/(\S+)$/.exec(l.userAgent)![1])) * 1000) / 1000)
    .sort((a, b) => a - b);
  expect(expected).toHaveLength(4);
  expect(deliveries.every((d) => d.error === undefined)).toBe(true);
  expect(deliveries.reduce((n, d) => n + (d.result as { measured: number }).measured, 0)).toBe(4);
  // The EMF documents reach the log file through the function's stdout: wait for them.
  let published: number[] = [];
  for (let i = 0; i < 50 && published.length < expected.length; i++) {
    await new Promise((r) => setTimeout(r, 50));
    published = publishedArrivals(logBytesBefore);
  }
  expect(published.sort((a, b) => a - b)).toEqual(expected);
});

/** The VendorArrivalAfterSlot values the arrival audit's EMF documents carry, from `fromByte` of the log file on. */
function publishedArrivals(fromByte: number): number[] {
  if (!fs.existsSync(logFile)) {
    return [];
  }
  return fs.readFileSync(logFile).subarray(fromByte).toString('utf8').split('\n')
    .filter((l) => l.includes('"VendorArrivalAfterSlot"'))
    .flatMap((l) => {
      const doc = JSON.parse(l);
      expect(doc._aws.CloudWatchMetrics[0]).toMatchObject({ Namespace: 'CdkAsyncExternalApi', Dimensions: [['Scope']] });
      expect(typeof doc.container).toBe('string');
      return ([] as number[]).concat(doc.VendorArrivalAfterSlot);
    });
}

test('vendor 5xx on the fetch, then success: the retry goes back through the paced queue', async () => {
  const v = await useVendor({ resultErrorRate: 1, resultErrorAttempts: 1 });
  const results = await runOrders(2);
  expect(results.map((r) => r.status)).toEqual(['SUCCEEDED', 'SUCCEEDED']);
  for (const r of results) {
    expect(outputOf(r).result.status).toBe('SUCCEEDED');
  }
  // Each result was fetched twice (503, then 200); each job was submitted once.
  expect(v.stats().resultFetches).toBe(4);
  expect(v.stats().accepted).toBe(2);
  expect(Object.values(v.stats().requests).map((r) => r.resultFetches)).toEqual([2, 2]);
});

test('vendor 404 on the fetch: VendorRequestFailed reaches the main workflow at once, the call is parked', async () => {
  const v = await useVendor({ resultNotFoundRate: 1 });
  const results = await runOrders(1);
  // The example catches VendorRequestFailed (and States.Timeout) of the fetch as ResultFetchFailed.
  expect(results.map((r) => [r.status, r.error])).toEqual([['FAILED', 'ResultFetchFailed']]);
  // At once, not by a timeout: the fetch's own failure was VendorRequestFailed (recorded in the
  // execution's history; a wall-clock bound says the same but flakes on a loaded machine).
  const fetchFailure = runtime.sfn.executionEvents(results[0].executionArn)
    .find((e) => e.type === 'StateFailed' && (e as any).state?.name === 'FetchResult') as any;
  expect(fetchFailure?.Error).toBe('VendorRequestFailed');
  expect(v.stats().resultFetches).toBe(1);
  const dlq = runtime.template.ofType('AWS::SQS::Queue').find((q) => /RequestDeadLetterQueue/.test(q.logicalId))!;
  const parked = await runtime.peek(dlq.logicalId);
  const call = parked.find((m) => m.attributes.reason === 'ApiGateway.404');
  expect(call).toBeDefined();
  expect(JSON.parse(call!.body)).toMatchObject({ kind: 'call', call: { method: 'GET', path: expect.stringMatching(/^\/job-.+\/result$/) } });
});

test('a result too large for Step Functions (300 KiB) on the fetch: VendorRequestFailed at once, the call parked as VendorResponseTooLarge (issue 11)', async () => {
  // Before: the vendor caller returned the answer, the vendor-call execution failed with
  // States.DataLimitExceeded (no Catch handles it), nothing was parked, and the main workflow
  // waited for the fetch's timeout.
  const v = await useVendor({ resultPaddingBytes: 300 * 1024 });
  const results = await runOrders(1);
  expect(results.map((r) => [r.status, r.error])).toEqual([['FAILED', 'ResultFetchFailed']]);
  const fetchFailure = runtime.sfn.executionEvents(results[0].executionArn)
    .find((e) => e.type === 'StateFailed' && (e as any).state?.name === 'FetchResult') as any;
  expect(fetchFailure?.Error).toBe('VendorRequestFailed');
  // Not retried: the same call would fetch the same answer.
  expect(v.stats().resultFetches).toBe(1);
  const dlq = runtime.template.ofType('AWS::SQS::Queue').find((q) => /RequestDeadLetterQueue/.test(q.logicalId))!;
  const parked = (await runtime.peek(dlq.logicalId)).find((m) => m.attributes.reason === 'VendorResponseTooLarge');
  expect(parked).toBeDefined();
  expect(JSON.parse(parked!.body)).toMatchObject({ kind: 'call', call: { method: 'GET' } });
});
