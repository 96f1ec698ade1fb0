/**
 * Adaptive pacing on the local runtime (issue 14, item 5): the example app synthesized with a
 * 10 RPS contract and adaptive pacing, against the strict vendor simulator whose real limit is 3
 * requests per second. The vendor's 429s lower the effective rate (the real handlers' conditional
 * write in the pacer item); the refused calls retry through the queue; everything completes, no
 * window exceeds the contract, and once lowered the rate keeps inside the real limit.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DynamoDBClient, GetItemCommand, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { Duration } from 'aws-cdk-lib';
import { buildExampleApp, ExampleStack } from '../../examples/app';
import { LocalRuntime } from '../../local/runtime';
import { maxInAnyWindow, VendorSimulator } from '../../local/vendor-simulator';
import { AdaptivePacing, VendorContract } from '../../src';

jest.setTimeout(120_000);

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
  }, outdir);
  built.app.synth();
  stack = built.stack;
  runtime = await LocalRuntime.start({ assemblyDir: outdir, stackName: stack.stackName, logFile: process.env.E2E_LOG });
  vendor = new VendorSimulator({
    requestsPerSecond: 10, realLimitRps: 3, latencyMs: 20, callbackDelayMs: 100, rewriteUrl: (url) => runtime.rewriteUrl(url), seed: 7,
  });
  runtime.mapHost('vendor.example.com', await vendor.start());
});

afterAll(async () => {
  await vendor?.stop();
  await runtime?.stop();
});

test('GIVEN a vendor whose real limit is 3 under a 10 RPS contract WHEN 12 orders flow THEN its 429s lower the adaptive rate in the pacer item, all complete, none lost or duplicated, no window over the contract', async () => {
  const arns: string[] = [];
  for (let i = 0; i < 12; i++) {
    const orderId = `adaptive-${i}`;
    const input = JSON.stringify({ orderId, order: { orderId } });
    arns.push((await runtime.sfn.startExecution(runtime.stateMachineArn(stack.mainWorkflow), input)).executionArn);
  }
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline && arns.some((arn) => runtime.sfn.describeExecution(arn).status === 'RUNNING')) {
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(arns.map((arn) => runtime.sfn.describeExecution(arn).status)).toEqual(Array(12).fill('SUCCEEDED'));

  const stats = vendor.stats();
  const arrivals = vendor.arrivals().sort((a, b) => a - b);
  console.log(`adaptive e2e: ${arrivals.length} calls, ${stats.realLimitRefusals} refused for the real limit, most in any second ${stats.maxInAnyWindow}`);
  expect(stats.violations).toBe(0);
  expect(stats.duplicateVendorCalls).toBe(0);
  expect(stats.accepted).toBe(12);
  // The vendor refused some (that is what lowers the rate), then no more once the rate was lowered:
  // fewer refusals than orders.
  expect(stats.realLimitRefusals).toBeGreaterThan(0);
  expect(stats.realLimitRefusals).toBeLessThan(12);
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
