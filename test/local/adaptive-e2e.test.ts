/**
 * Adaptive pacing on the local runtime (issue 14, item 5): the example app synthesized with a
 * 10 RPS contract and adaptive pacing, against the strict vendor simulator whose real limit is 3
 * requests per second. The vendor's 429s lower the effective rate (the real handlers' conditional
 * write in the pacer item); the refused calls retry through the queue; everything completes, no
 * window exceeds the contract, and once lowered the rate keeps inside the real limit.
 *
 * The vendor refuses only calls that come faster than 3 in a second, so the first calls must reach
 * it at the contract's pace (slots 103 ms apart). With the library's 1 s lead and 12 vendor callers
 * cold-started at once on 2 loaded cores, the callers missed their slots and reserved fresh ones one
 * by one: the calls spread out (at most 4-5 in any second at load 15, once at most 2, and then the
 * vendor refused none). So the callers are warm and the executions start with the local lead, as in
 * the demo (local-pacing.ts): the first calls come at the contract's pace, whatever the machine.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DynamoDBClient, GetItemCommand, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { Duration } from 'aws-cdk-lib';
import { buildExampleApp, ExampleStack } from '../../examples/app';
import { LOCAL_PACING } from '../../local/local-pacing';
import { LocalRuntime } from '../../local/runtime';
import { maxInAnyWindow, VendorSimulator } from '../../local/vendor-simulator';
import { AdaptivePacing, VendorContract } from '../../src';

jest.setTimeout(120_000);

const ORDERS = 12;

let runtime: LocalRuntime;
let stack: ExampleStack;
let vendor: VendorSimulator;

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'adaptive-'));
  const built = buildExampleApp({
    // A probe interval longer than the test: the rate only drops here (the climb is unit-tested and modeled).
    contract: VendorContract.of({
      requestsPerSecond: 10,
      adaptivePacing: AdaptivePacing.of({
        decreaseFactor: 0.5, cooldown: Duration.millis(500), probeInterval: Duration.minutes(10), minimumRequestsPerSecond: 1,
      }),
    }),
    callbackTimeout: Duration.seconds(90),
    fetchResult: false,
    lead: Duration.millis(LOCAL_PACING.leadMs),
    fireTolerance: Duration.millis(LOCAL_PACING.fireToleranceMs),
  }, outdir);
  built.app.synth();
  stack = built.stack;
  runtime = await LocalRuntime.start({ assemblyDir: outdir, stackName: stack.stackName, logFile: process.env.E2E_LOG });
  vendor = new VendorSimulator({
    requestsPerSecond: 10, realLimitRps: 3, latencyMs: 20, callbackDelayMs: 100, rewriteUrl: (url) => runtime.rewriteUrl(url), seed: 7,
  });
  runtime.mapHost('vendor.example.com', await vendor.start());
  // One call per order (no result fetch), all within about a second: one warm caller each.
  await runtime.prewarm(stack.orchestrator.dispatch.vendorCaller!, ORDERS);
});

afterAll(async () => {
  await vendor?.stop();
  await runtime?.stop();
});

test('GIVEN a vendor whose real limit is 3 under a 10 RPS contract WHEN 12 orders flow THEN its 429s lower the adaptive rate in the pacer item, all complete, none lost or duplicated, no window over the contract', async () => {
  const arns: string[] = [];
  for (let i = 0; i < ORDERS; i++) {
    const orderId = `adaptive-${i}`;
    const input = JSON.stringify({ orderId, order: { orderId } });
    arns.push((await runtime.sfn.startExecution(runtime.stateMachineArn(stack.mainWorkflow), input)).executionArn);
  }
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline && arns.some((arn) => runtime.sfn.describeExecution(arn).status === 'RUNNING')) {
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(arns.map((arn) => runtime.sfn.describeExecution(arn).status)).toEqual(Array(ORDERS).fill('SUCCEEDED'));

  const stats = vendor.stats();
  const arrivals = vendor.arrivals().sort((a, b) => a - b);
  console.log(`adaptive e2e: ${arrivals.length} calls, ${stats.realLimitRefusals} refused for the real limit, most in any second ${stats.maxInAnyWindow}`);
  expect(stats.violations).toBe(0);
  expect(stats.duplicateVendorCalls).toBe(0);
  expect(stats.accepted).toBe(ORDERS);
  // The vendor refused some (that is what lowers the rate), then no more once the rate was lowered:
  // fewer refusals than orders.
  expect(stats.realLimitRefusals).toBeGreaterThan(0);
  expect(stats.realLimitRefusals).toBeLessThan(ORDERS);
  expect(maxInAnyWindow(arrivals, true)).toBeLessThanOrEqual(10);

  // The vendor caller's 429 handler wrote the decrease (10 x 0.5, once per cooldown) into the pacer item.
  const dynamodb = new DynamoDBClient({ endpoint: runtime.endpoints.dynamodb, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  const tables = (await dynamodb.send(new ListTablesCommand({}))).TableNames ?? [];
  const pacerTable = tables.find((name) => /Pacer/i.test(name))!;
  const item = (await dynamodb.send(new GetItemCommand({ TableName: pacerTable, Key: { pk: { S: 'pacer' } }, ConsistentRead: true }))).Item!;
  console.log(`adaptive e2e: pacer item adaptiveRps ${item.adaptiveRps?.N}, adaptiveSinceMs ${item.adaptiveSinceMs?.N}`);
  expect(Number(item.adaptiveRps.N)).toBeLessThanOrEqual(5);
  dynamodb.destroy();
});
