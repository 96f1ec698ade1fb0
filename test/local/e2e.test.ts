/**
 * End-to-end: the example app, synthesized, executed on the local runtime against the vendor
 * simulator. Everything between "start the main workflow" and "the main workflow ends" is the
 * synthesized template and the bundled handlers.
 *
 * The no-callback test's requests spend the 12 s callback timeout waiting: they start right after
 * the warm-up, with a vendor that never calls back, and wait while the other tests run (they hold
 * nothing: no message, no place, no callback; the other tests' vendors and assertions are their
 * own). The vendor host is handed to the next test once that vendor has both submissions.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { buildExampleApp, ExampleStack } from '../../examples/app';
import { LocalRuntime } from '../../local/runtime';
import { VendorSimulator, VendorSimulatorOptions } from '../../local/vendor-simulator';

jest.setTimeout(90_000);

// The callback timeout bounds a whole request, not only the vendor's callback: a 5xx-then-success
// request goes through the queue, the dispatch workflow and the vendor caller's slot twice. Measured
// on a loaded 2-core machine: 4.4-5.2 s for a request that succeeds at once, 7.4 s for one retried
// once. With 8 s, CI under load missed it (VendorTimedOut); 12 s leaves room without hiding a lost
// request (a lost one never ends before its timeout, whatever its length).
const CALLBACK_TIMEOUT_MS = 12_000;
let runtime: LocalRuntime;
let stack: ExampleStack;
let vendor: VendorSimulator | undefined;
/** The no-callback test's vendor and requests, started in beforeAll (see the header). */
let noCallbackVendor: VendorSimulator | undefined;
let noCallbackResults: ReturnType<typeof waitForRequests> | undefined;

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-'));
  const built = buildExampleApp({ requestsPerSecond: 10, callbackTimeout: Duration.millis(CALLBACK_TIMEOUT_MS) }, outdir);
  built.app.synth();
  stack = built.stack;
  runtime = await LocalRuntime.start({ assemblyDir: outdir, stackName: stack.stackName, logFile: process.env.E2E_LOG });
  // Warm-up, as the fault suite does (local/fault-suite.ts): two requests end to end, so that the
  // first test's requests do not pay every function's cold start (seconds each on a busy 2-core
  // machine, e.g. beside the other local-runtime file of npm test's runtime lane) out of their
  // 12 s callback timeout. What each test asserts is unchanged.
  await useVendor({});
  await runRequests(2);
  await vendor?.stop();
  vendor = undefined;

  noCallbackVendor = await useVendor({ noCallbackRate: 1 });
  vendor = undefined; // its own: stopped after its test, not after the next one
  const arns = await startRequests(2);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && noCallbackVendor.stats().accepted < arns.length) {
    await new Promise((r) => setTimeout(r, 100));
  }
  noCallbackResults = waitForRequests(arns, CALLBACK_TIMEOUT_MS + 15_000);
});

afterAll(async () => {
  await noCallbackResults?.catch(() => undefined);
  await noCallbackVendor?.stop();
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
    callbackDelayMs: 200,
    rewriteUrl: (url) => runtime.rewriteUrl(url),
    seed: 7,
    ...options,
  });
  runtime.mapHost('vendor.example.com', await vendor.start());
  return vendor;
}

let counter = 0;
/** Starts `n` main workflow executions and waits for all of them to end (or `withinMs`). */
async function runRequests(n: number, withinMs = 30_000) {
  return waitForRequests(await startRequests(n), withinMs);
}

/** Starts `n` main workflow executions. */
async function startRequests(n: number): Promise<string[]> {
  const arns: string[] = [];
  for (let i = 0; i < n; i++) {
    const orderId = `order-${++counter}`;
    const input = JSON.stringify({ orderId, order: { orderId, quantity: i } });
    const { executionArn } = await runtime.sfn.startExecution(runtime.stateMachineArn(stack.mainWorkflow), input);
    arns.push(executionArn);
  }
  return arns;
}

/** Waits for the executions to end (or `withinMs`) and describes them. */
async function waitForRequests(arns: string[], withinMs: number) {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline && arns.some((arn) => runtime.sfn.describeExecution(arn).status === 'RUNNING')) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const results = arns.map((arn) => runtime.sfn.describeExecution(arn));
  for (const r of results.filter((x) => x.status === 'FAILED')) {
    // Shown when an assertion on the outcome fails: what the main workflow ended with.
    console.log(`${r.executionArn}: ${r.error}: ${r.cause}`);
  }
  return results;
}

async function drainDeadLetters(queuePattern: RegExp) {
  const queue = runtime.template.ofType('AWS::SQS::Queue').find((q) => queuePattern.test(q.logicalId));
  if (!queue) throw new Error(`no queue matches ${queuePattern}`);
  return runtime.peek(queue.logicalId);
}

test('happy path: every request is submitted once and resumed with the job id and the vendor result', async () => {
  const v = await useVendor({});
  const results = await runRequests(5);
  expect(results.map((r) => r.status)).toEqual(Array(5).fill('SUCCEEDED'));
  for (const r of results) {
    const output = typeof r.output === 'string' ? JSON.parse(r.output) : r.output;
    expect(output.jobId).toMatch(/^job-/);
    expect(output.result.result.echo.orderId).toBe(output.orderId);
  }
  expect(v.stats().accepted).toBe(5);
  expect(v.stats().duplicateVendorCalls).toBe(0);
});

test('vendor 5xx then success: the retry goes back through the queue and succeeds, without a duplicate job', async () => {
  const v = await useVendor({ errorRate: 1, errorAttempts: 1 });
  const results = await runRequests(3);
  expect(results.map((r) => r.status)).toEqual(Array(3).fill('SUCCEEDED'));
  expect(v.stats().submissions).toBe(6);
  expect(v.stats().accepted).toBe(3);
  expect(v.stats().duplicateVendorCalls).toBe(0);
});

test('vendor permanent failure: the request is parked in the request DLQ and the main workflow fails promptly', async () => {
  await useVendor({ rejectRate: 1 });
  const started = Date.now();
  const results = await runRequests(2);
  expect(results.map((r) => [r.status, r.error])).toEqual(Array(2).fill(['FAILED', 'VendorRequestFailed']));
  expect(Date.now() - started).toBeLessThan(CALLBACK_TIMEOUT_MS);
  const parked = await drainDeadLetters(/RequestDeadLetterQueue/);
  expect(parked.length).toBeGreaterThanOrEqual(1);
  expect(parked[0].attributes.reason).toBe('ApiGateway.400');
});

test('duplicate callback: the workflow is resumed once, the duplicate is acknowledged', async () => {
  const v = await useVendor({ duplicateCallbackRate: 1 });
  const results = await runRequests(3);
  expect(results.map((r) => r.status)).toEqual(Array(3).fill('SUCCEEDED'));
  await new Promise((r) => setTimeout(r, 1500));
  const own = Object.values(v.stats().requests).filter((r) => r.faults.includes('duplicateCallback'));
  expect(own).toHaveLength(3);
  expect(v.callbacks().filter((c) => c.kind === 'duplicate')).toHaveLength(3);
  expect(await drainDeadLetters(/CallbackDeadLetterQueue/)).toHaveLength(0);
});

test('early callback (before the job id is stored): retried until it matches, then resumed', async () => {
  await useVendor({ earlyCallbackRate: 1 });
  const results = await runRequests(2, 40_000);
  expect(results.map((r) => r.status)).toEqual(Array(2).fill('SUCCEEDED'));
});

test('malformed callback: parked in the callback DLQ with a reason; the workflow is not resumed by it', async () => {
  await useVendor({ malformedCallbackRate: 1 });
  const results = await runRequests(1, CALLBACK_TIMEOUT_MS + 15_000);
  expect(results[0].status).toBe('FAILED');
  expect(results[0].error).toBe('VendorTimedOut');
  const parked = await drainDeadLetters(/CallbackDeadLetterQueue/);
  expect(parked.map((m) => m.attributes.reason)).toContain('MALFORMED_BODY');
});

// Its requests started in beforeAll; the tests above ran during their wait.
test('no callback: the main workflow times out (States.Timeout)', async () => {
  const results = await noCallbackResults!;
  // The example app catches States.Timeout and fails with VendorTimedOut.
  expect(results.map((r) => [r.status, r.error])).toEqual(Array(2).fill(['FAILED', 'VendorTimedOut']));
});
