/**
 * End-to-end on the local runtime: a named limit inside the contract (issue 14, item 3).
 *
 * The example app (submit -> callback -> paced result fetch) under a 10 RPS contract with a
 * `results` limit of 2 RPS on GETs; the simulated vendor enforces both as a strict vendor (429
 * beyond either) and counts what it sees. The submissions fill the contract; the result fetches
 * keep to their limit. V = 0 on both, measured by the simulator.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { buildExampleApp, ExampleStack } from '../../examples/app';
import { LocalRuntime } from '../../local/runtime';
import { maxInAnyWindow, VendorSimulator } from '../../local/vendor-simulator';
import { VendorContract, VendorLimit } from '../../src';

jest.setTimeout(120_000);

const ORDERS = 8;
const RESULTS = VendorLimit.of({ name: 'results', requestsPerSecond: 2, methods: ['GET'] });
let runtime: LocalRuntime;
let stack: ExampleStack;
let vendor: VendorSimulator;

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'named-limits-e2e-'));
  const built = buildExampleApp({
    contract: VendorContract.of({ requestsPerSecond: 10, limits: [RESULTS] }),
    callbackTimeout: Duration.seconds(40),
  }, outdir);
  built.app.synth();
  stack = built.stack;
  runtime = await LocalRuntime.start({ assemblyDir: outdir, stackName: stack.stackName, logFile: process.env.E2E_LOG });
  vendor = new VendorSimulator({
    requestsPerSecond: 10,
    limits: [RESULTS._spec()],
    limitBasePath: '/v1/jobs',
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

test('result fetches at 2 RPS inside a 10 RPS contract: every order ends with its result, no window over the contract or the limit (simulator)', async () => {
  // WHEN orders arrive at once
  const arns: string[] = [];
  for (let i = 0; i < ORDERS; i++) {
    const orderId = `limit-order-${i}`;
    const input = JSON.stringify({ orderId, order: { orderId, quantity: i } });
    const { executionArn } = await runtime.sfn.startExecution(runtime.stateMachineArn(stack.mainWorkflow), input);
    arns.push(executionArn);
  }
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && arns.some((arn) => runtime.sfn.describeExecution(arn).status === 'RUNNING')) {
    await new Promise((r) => setTimeout(r, 100));
  }

  // THEN every order succeeded, each vendor call once, and the vendor saw no call beyond either limit
  const results = arns.map((arn) => runtime.sfn.describeExecution(arn));
  expect(results.map((r) => r.status)).toEqual(Array(ORDERS).fill('SUCCEEDED'));
  const stats = vendor.stats();
  expect(stats.accepted).toBe(ORDERS);
  expect(stats.resultFetches).toBe(ORDERS);
  expect(stats.duplicateVendorCalls).toBe(0);
  expect(stats.violations).toBe(0);
  expect(maxInAnyWindow(vendor.arrivals())).toBeLessThanOrEqual(10);
  expect(stats.limitViolations).toEqual({ results: 0 });
  expect(stats.limitMaxInAnyWindow.results).toBeLessThanOrEqual(2);
  // The limit was in use: the fetches were paced at it, not only spread by chance.
  expect(stats.limitMaxInAnyWindow.results).toBe(2);
});
