/**
 * The rate at run time on the local runtime: the example app synthesized with a 10 RPS contract and
 * a dynamic delay; the operator sets the rate in force to 2 RPS through the local AppConfig (the
 * synthesized validator refuses more than the contract) before the dispatchers start, and the
 * strict vendor, told the rate in force, sees the calls paced at 2 RPS.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { buildExampleApp, ExampleStack } from '../../examples/app';
import { LocalRuntime } from '../../local/runtime';
import { VendorSimulator } from '../../local/vendor-simulator';
import { slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';

jest.setTimeout(90_000);

let runtime: LocalRuntime;
let stack: ExampleStack;
let vendor: VendorSimulator;

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'runtime-rate-'));
  const built = buildExampleApp({
    requestsPerSecond: 10,
    callbackTimeout: Duration.seconds(60),
    dynamicDelay: { pollInterval: Duration.seconds(15) },
  }, outdir);
  built.app.synth();
  stack = built.stack;
  runtime = await LocalRuntime.start({ assemblyDir: outdir, stackName: stack.stackName, logFile: process.env.E2E_LOG });
  vendor = new VendorSimulator({ requestsPerSecond: 10, latencyMs: 20, callbackDelayMs: 100, rewriteUrl: (url) => runtime.rewriteUrl(url), seed: 5 });
  runtime.mapHost('vendor.example.com', await vendor.start());
});

afterAll(async () => {
  await vendor?.stop();
  await runtime?.stop();
});

test('GIVEN the operator sets requestsPerSecond 2 under a 10 RPS contract WHEN requests flow THEN the vendor sees them paced at 2 RPS, none over the rate in force; 11 is refused', async () => {
  // The synthesized JSON schema validator has the contract as its maximum: AppConfig refuses 11.
  expect(() => runtime.setDynamicDelay({ extraDelayMs: 0, requestsPerSecond: 11 })).toThrow(/JSON_SCHEMA.*must be <= 10/);
  runtime.setDynamicDelay({ extraDelayMs: 0, requestsPerSecond: 2 });
  vendor.setRateSchedule([{ atMs: 0, requestsPerSecond: 2 }]);

  const arns: string[] = [];
  for (let i = 0; i < 5; i++) {
    const orderId = `rate-${i}`;
    const input = JSON.stringify({ orderId, order: { orderId } });
    arns.push((await runtime.sfn.startExecution(runtime.stateMachineArn(stack.mainWorkflow), input)).executionArn);
  }
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && arns.some((arn) => runtime.sfn.describeExecution(arn).status === 'RUNNING')) {
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(arns.map((arn) => runtime.sfn.describeExecution(arn).status)).toEqual(Array(5).fill('SUCCEEDED'));

  const arrivals = vendor.arrivals().sort((a, b) => a - b);
  const gaps = arrivals.slice(1).map((t, i) => t - arrivals[i]);
  console.log(`vendor gaps at 2 RPS in force (contract 10): [${gaps.join(', ')}] ms`);
  // 10 calls (submission + result fetch per order) reached the vendor, none refused.
  expect(arrivals).toHaveLength(10);
  expect(vendor.stats().rateInForceViolations).toBe(0);
  expect(vendor.stats().rejected429ByContract).toBe(0);
  // Spaced for 2 RPS (slot interval (1000 + L + 1) / 2, about 515 ms with the example's L), less the spread of the hops after the pacer.
  expect(Math.min(...gaps)).toBeGreaterThanOrEqual(slotIntervalMs(2, 40) - 100);
});
