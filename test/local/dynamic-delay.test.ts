/**
 * Dynamic delay on the local runtime: the example app with `dynamicDelay` on, synthesized and
 * executed; an operator raises `extraDelayMs` while it runs and the vendor sees the requests
 * spread out within the stated effect time (poll interval + the slots already reserved).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { buildExampleApp, ExampleStack } from '../../examples/app';
import { LocalRuntime } from '../../local/runtime';
import { VendorSimulator } from '../../local/vendor-simulator';

jest.setTimeout(120_000);

const POLL_INTERVAL_S = 15; // AppConfig's minimum
const EXTRA_DELAY_MS = 895; // slot interval 105 ms (10 RPS, L = 50 ms) + 895 ms = 1 s
let runtime: LocalRuntime;
let stack: ExampleStack;
let vendor: VendorSimulator;

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamic-delay-'));
  const built = buildExampleApp({
    requestsPerSecond: 10,
    callbackTimeout: Duration.seconds(60),
    dynamicDelay: { pollInterval: Duration.seconds(POLL_INTERVAL_S) },
  }, outdir);
  built.app.synth();
  stack = built.stack;
  runtime = await LocalRuntime.start({ assemblyDir: outdir, stackName: stack.stackName, logFile: process.env.E2E_LOG });
  vendor = new VendorSimulator({
    requestsPerSecond: 10, latencyMs: 20, callbackDelayMs: 100, rewriteUrl: (url) => runtime.rewriteUrl(url), seed: 3,
  });
  runtime.mapHost('vendor.example.com', await vendor.start());
});

afterAll(async () => {
  await vendor?.stop();
  await runtime?.stop();
});

let counter = 0;
async function startRequests(n: number): Promise<string[]> {
  const arns: string[] = [];
  for (let i = 0; i < n; i++) {
    const orderId = `slow-${++counter}`;
    const { executionArn } = await runtime.sfn.startExecution(runtime.stateMachineArn(stack.mainWorkflow),
      JSON.stringify({ orderId, order: { orderId } }));
    arns.push(executionArn);
  }
  return arns;
}

async function waitFor(arns: string[], withinMs: number): Promise<string[]> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline && arns.some((arn) => runtime.sfn.describeExecution(arn).status === 'RUNNING')) {
    await new Promise((r) => setTimeout(r, 100));
  }
  return arns.map((arn) => runtime.sfn.describeExecution(arn).status);
}

const gaps = (times: number[]) => times.slice(1).map((t, i) => t - times[i]);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

test('raising extraDelayMs at run time slows the vendor calls within poll interval + reserved slots; invalid values are refused', async () => {
  // Phase 1: the contract rate (the dispatcher reads extraDelayMs 0 and caches it for 15 s).
  const first = await startRequests(10);
  expect(await waitFor(first, 30_000)).toEqual(Array(10).fill('SUCCEEDED'));
  const before = vendor.arrivals();

  // The operator's change (create a version + deploy). Refused values never reach the dispatcher.
  expect(() => runtime.setDynamicDelay({ extraDelayMs: -5 })).toThrow(/JSON_SCHEMA/);
  const deployedAt = Date.now();
  runtime.setDynamicDelay({ extraDelayMs: EXTRA_DELAY_MS });

  // Stated effect time: one poll interval, plus the slots already reserved (none are left here:
  // phase 1 is over). Every dispatcher environment has re-read the configuration by then.
  await new Promise((r) => setTimeout(r, POLL_INTERVAL_S * 1000 - (Date.now() - deployedAt) + 500));
  // Three orders: 6 vendor calls (submission and result fetch each), so 5 gaps at the slowed
  // pace, each about a second (6 orders spent 12 s on 11 of them; one gap shows the route, the
  // median of 5 is its figure).
  const second = await startRequests(3);
  expect(await waitFor(second, 40_000)).toEqual(Array(3).fill('SUCCEEDED'));
  const after = vendor.arrivals().slice(before.length);

  const fast = gaps(before);
  const slow = gaps(after);
  console.log(`vendor gaps before: median ${median(fast)} ms [${fast.join(', ')}]; after: median ${median(slow)} ms [${slow.join(', ')}]`);
  // Before: requests paced at the contract (105 ms) when they queue up; cold starts spread the first ones.
  expect(fast.filter((gap) => gap < 300).length).toBeGreaterThanOrEqual(3);
  expect(median(slow)).toBeGreaterThanOrEqual(900); // about 1000 ms: 105 + 895
  // Starts are issued in [slot, slot + L]; the hops after the pacer add their own spread.
  expect(Math.min(...slow)).toBeGreaterThanOrEqual(1000 - 50 - 250);
  expect(vendor.stats().maxInAnyWindow).toBeLessThanOrEqual(10);
  // Cached per execution environment (dispatchers and vendor callers read it): at most a read at
  // cold start and one after the poll interval per environment, far fewer than one per request.
  const reads = runtime.appConfig.stats().configurationReads;
  const environments = Object.values(runtime.lambda.allStats()).reduce((n, stats) => n + stats.coldStarts, 0);
  expect(reads).toBeLessThanOrEqual(2 * environments);
  expect(reads).toBeLessThan(vendor.arrivals().length);
});
