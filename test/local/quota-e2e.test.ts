/**
 * End-to-end on the local runtime: a quota per period (issue 14, item 2).
 *
 * The contract allows 5 requests per second and 5 calls per fixed 3 s period
 * (`VendorQuota.every(Duration.seconds(3), 5)`); the simulated vendor enforces the same quota
 * (epoch-aligned 3 s periods, 429 beyond) and counts what it sees. 12 requests arrive at once:
 * the first period's 5 go out, the others find the quota spent, go back to the queue until the
 * next period (without spending an attempt) and resume there.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { FaultInjector } from '../../local/faults';
import { LocalRuntime } from '../../local/runtime';
import { VendorSimulator } from '../../local/vendor-simulator';
import { AsyncExternalApiOrchestrator, VendorContract, VendorQuota } from '../../src';

jest.setTimeout(120_000);

const REQUESTS = 12;
const QUOTA = { limit: 5, periodMs: 3000 };
let runtime: LocalRuntime;
let orchestrator: AsyncExternalApiOrchestrator;
let mainWorkflow: sfn.StateMachine;
let vendor: VendorSimulator;
let stack: Stack;
const faults = new FaultInjector();

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'quota-e2e-'));
  const app = new App({ outdir });
  stack = new Stack(app, 'QuotaExample');
  orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    contract: VendorContract.of({ requestsPerSecond: 5, quotas: [VendorQuota.every(Duration.seconds(3), QUOTA.limit)] }),
    callbackTimeout: Duration.seconds(90),
  });
  const submit = orchestrator.submitJobTask(stack, 'SubmitJob', {
    payload: sfn.TaskInput.fromJsonPathAt('$.order'),
    requestId: sfn.JsonPath.stringAt('$.orderId'),
    resultPath: '$.vendor',
  });
  mainWorkflow = new sfn.StateMachine(stack, 'MainWorkflow', { definitionBody: sfn.DefinitionBody.fromChainable(submit) });
  orchestrator.registerWorkflow(mainWorkflow);
  app.synth();

  runtime = await LocalRuntime.start({
    assemblyDir: outdir,
    stackName: stack.stackName,
    logFile: process.env.E2E_LOG,
    accountConcurrency: 10,
    faults,
  });
  vendor = new VendorSimulator({
    requestsPerSecond: 5,
    quota: QUOTA,
    latencyMs: 20,
    callbackDelayMs: 100,
    rewriteUrl: (url) => runtime.rewriteUrl(url),
    seed: 14,
  });
  runtime.mapHost('vendor.example.com', await vendor.start());
});

afterAll(async () => {
  await vendor?.stop();
  await runtime?.stop();
});

/** Starts `n` requests, waits until they end (or 60 s); their final descriptions. */
async function runRequests(prefix: string, n: number) {
  const arns: string[] = [];
  for (let i = 0; i < n; i++) {
    const { executionArn } = await runtime.sfn.startExecution(runtime.stateMachineArn(mainWorkflow), JSON.stringify({ orderId: `${prefix}-${i}`, order: { orderId: `${prefix}-${i}` } }));
    arns.push(executionArn);
  }
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && arns.some((arn) => runtime.sfn.describeExecution(arn).status === 'RUNNING')) {
    await new Promise((r) => setTimeout(r, 200));
  }
  const results = arns.map((arn) => runtime.sfn.describeExecution(arn));
  for (const r of results.filter((x) => x.status !== 'SUCCEEDED')) console.log(`${r.status} ${r.error}: ${r.cause}`);
  return results;
}

test('12 requests against a quota of 5 per 3 s: the vendor never sees a 6th call in a period, all succeed in later periods, nothing lost or sent twice', async () => {
  const arns: string[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const { executionArn } = await runtime.sfn.startExecution(runtime.stateMachineArn(mainWorkflow), JSON.stringify({ orderId: `q-${i}`, order: { orderId: `q-${i}` } }));
    arns.push(executionArn);
  }
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && arns.some((arn) => runtime.sfn.describeExecution(arn).status === 'RUNNING')) {
    await new Promise((r) => setTimeout(r, 200));
  }
  const results = arns.map((arn) => runtime.sfn.describeExecution(arn));
  for (const r of results.filter((x) => x.status !== 'SUCCEEDED')) console.log(`${r.status} ${r.error}: ${r.cause}`);

  const stats = vendor.stats();
  // Measured by the vendor: never more than the quota in any period, no call refused for it.
  expect(stats.quotaMaxInAnyPeriod).toBeLessThanOrEqual(QUOTA.limit);
  expect(stats.quotaViolations).toBe(0);
  expect(stats.violations).toBe(0);
  // All succeed, once each; some had to wait for a later period (12 > 5 per period).
  expect(results.map((r) => r.status)).toEqual(Array(REQUESTS).fill('SUCCEEDED'));
  expect(stats.accepted).toBe(REQUESTS);
  expect(stats.duplicateVendorCalls).toBe(0);
  const arrivals = vendor.arrivals();
  const periods = new Set(arrivals.map((t) => Math.floor(t / QUOTA.periodMs)));
  expect(periods.size).toBeGreaterThanOrEqual(3);
  expect(await runtime.deadLetterCount('request')).toBe(0);
  expect(await runtime.queueDepth(orchestrator.consumer.queue)).toBe(0);
});

test('period boundaries under load with vendor callers crashing while they wait for their slots (units spent, calls not fired): the quota still holds at the vendor, nothing lost or sent twice', async () => {
  // GIVEN the vendor callers' busy execution environments killed right after the 2nd, 4th and 6th
  // UpdateItem the pacer table answers (quota units and reservations: the callers then wait for
  // their slots with their units spent, calls not fired), under a backlog spanning several periods
  const callerId = stack.getLogicalId(orchestrator.dispatch.vendorCaller!.node.defaultChild as any);
  faults.configure({ crash: [{ functionName: callerId, service: 'dynamodb', action: 'UpdateItem', afterCalls: 2, times: 3 }] });
  const before = vendor.stats();

  // WHEN 10 requests run
  const results = await runRequests('crash', 10);
  const crashes = faults.stats().crashes[callerId] ?? 0;
  faults.reset();

  // THEN the crashes happened, the vendor never saw more than the quota in a period, and every
  // request succeeded once (a crashed call spent a unit without a call: safe, never refunded)
  const stats = vendor.stats();
  expect(crashes).toBeGreaterThanOrEqual(1);
  expect(stats.quotaMaxInAnyPeriod).toBeLessThanOrEqual(QUOTA.limit);
  expect(stats.quotaViolations).toBe(0);
  expect(stats.violations).toBe(0);
  expect(results.map((r) => r.status)).toEqual(Array(10).fill('SUCCEEDED'));
  expect(stats.accepted - before.accepted).toBe(10);
  expect(stats.duplicateVendorCalls).toBe(0);
  expect(await runtime.deadLetterCount('request')).toBe(0);
});
