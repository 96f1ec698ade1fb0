/**
 * End-to-end on the local runtime: waiting for room never counts against the request queue's
 * redrive (issue 11, finding 7).
 *
 * The orchestrator runs with `maxReceiveCount: 2` while the vendor pause in the pacer table is kept
 * ahead of the dispatcher's pacing window for a while: every delivery of a request finds no slot
 * and is postponed. fauxqs counts receives as SQS does (every receive raises
 * ApproximateReceiveCount, ChangeMessageVisibility never lowers it, a receive past maxReceiveCount
 * moves the message to the dead-letter queue), so postponing by hiding the same message would park
 * the request after two deliveries; postponing by a delayed copy does not.
 *
 * The dispatcher's pacing window is shortened (MAX_PACING_WAIT_MS 1.5 s, above the 1 s lead) so
 * that postponements come every few seconds instead of every 15.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { LocalRuntime } from '../../local/runtime';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/types';
import { VendorSimulator } from '../../local/vendor-simulator';
import { AsyncExternalApiOrchestrator } from '../../src';
import { pauseUntil } from '../../src/rate-controlled-queue-consumer/pacer';
import { ConsumerEnv } from '../../src/shared/env';

jest.setTimeout(120_000);

const MAX_RECEIVE_COUNT = 2;
let runtime: LocalRuntime;
let stack: Stack;
let orchestrator: AsyncExternalApiOrchestrator;
let mainWorkflow: sfn.StateMachine;
let vendor: VendorSimulator;
let dynamodb: DynamoDBClient;
let pacerTable: string;
let requestQueueId: string;

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'postpone-e2e-'));
  const app = new App({ outdir });
  stack = new Stack(app, 'PostponeExample');
  orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 2,
    callbackTimeout: Duration.seconds(90),
    consumer: { maxReceiveCount: MAX_RECEIVE_COUNT },
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
    functionEnv: { [ConsumerEnv.MAX_PACING_WAIT_MS]: '1500' },
    // A new account's concurrency quota: the default stack reserves nothing, so it deploys there.
    accountConcurrency: 10,
  });
  vendor = new VendorSimulator({
    requestsPerSecond: 2,
    latencyMs: 20,
    callbackDelayMs: 200,
    rewriteUrl: (url) => runtime.rewriteUrl(url),
    seed: 5,
  });
  runtime.mapHost('vendor.example.com', await vendor.start());
  dynamodb = new DynamoDBClient({ endpoint: runtime.endpoints.dynamodb, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  pacerTable = runtime.template.nameOf(stack.getLogicalId(orchestrator.consumer.pacerTable.node.defaultChild as any));
  requestQueueId = stack.getLogicalId(orchestrator.consumer.queue.node.defaultChild as any);
});

afterAll(async () => {
  dynamodb?.destroy();
  await vendor?.stop();
  await runtime?.stop();
});

/** Records handed to the dispatcher by the request queue's mapping so far (each delivery counts). */
function deliveries(): number {
  const queueName = runtime.template.nameOf(requestQueueId);
  return Object.values(runtime.poller.stats()).filter((m) => m.queueArn.endsWith(`:${queueName}`)).reduce((n, m) => n + m.messages, 0);
}

/**
 * Keeps the vendor pause 2.5 s ahead (beyond the dispatcher's 1.5 s window) for `forMs`, as a vendor
 * that keeps answering 429 with Retry-After would: every delivery in that time is postponed.
 */
async function holdPause(forMs: number): Promise<void> {
  const end = Date.now() + forMs;
  while (Date.now() < end) {
    await pauseUntil(dynamodb, pacerTable, Date.now() + 2500);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function waitForEnd(arn: string, withinMs: number) {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline && runtime.sfn.describeExecution(arn).status === 'RUNNING') {
    await new Promise((r) => setTimeout(r, 100));
  }
  return runtime.sfn.describeExecution(arn);
}

/**
 * Waits (at most `withinMs`) until nothing of a request can still reach the vendor: the request
 * queue is empty, its mapping has no invocation in flight, and only the main workflow has
 * executions running (none of the orchestrator's).
 */
async function quiet(withinMs: number): Promise<void> {
  const queueName = runtime.template.nameOf(requestQueueId);
  const mainArn = runtime.stateMachineArn(mainWorkflow);
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    const inFlight = Object.values(runtime.poller.stats()).filter((m) => m.queueArn.endsWith(`:${queueName}`)).reduce((n, m) => n + m.inFlight, 0);
    const running = runtime.sfn.stateMachineArns().filter((arn) => arn !== mainArn).reduce((n, arn) => n + runtime.sfn.listExecutions(arn, 'RUNNING').length, 0);
    if (inFlight === 0 && running === 0 && await runtime.queueDepth(orchestrator.consumer.queue) === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('a request postponed many more times than maxReceiveCount still reaches the vendor, once, and not the dead-letter queue', async () => {
  const before = deliveries();
  const accepted = vendor.stats().accepted;
  const pause = holdPause(12_000);
  await new Promise((r) => setTimeout(r, 300)); // the pause is in force before the request arrives
  const { executionArn } = await runtime.sfn.startExecution(runtime.stateMachineArn(mainWorkflow), JSON.stringify({ orderId: 'paused-1', order: { orderId: 'paused-1' } }));
  await pause;

  const result = await waitForEnd(executionArn, 30_000);

  // Nothing parked (hiding the same message parked it at its third delivery, its waiting workflow
  // left RUNNING until its timeout) ...
  expect(await runtime.deadLetterCount('request')).toBe(0);
  if (result.status !== 'SUCCEEDED') console.log(`${result.status} ${result.error}: ${result.cause}`);
  expect(result.status).toBe('SUCCEEDED');
  // ... though postponed more than twice maxReceiveCount times (a delivery every ~3 s over 12 s) ...
  expect(deliveries() - before).toBeGreaterThanOrEqual(2 * MAX_RECEIVE_COUNT + 1);
  // ... and sent once.
  expect(vendor.stats().accepted - accepted).toBe(1);
  expect(vendor.stats().duplicateVendorCalls).toBe(0);
  expect(await runtime.queueDepth(orchestrator.consumer.queue)).toBe(0);
});

test('a crash between the postponing copy\'s send and the original\'s delete leaves two copies: one claims, the vendor is called once', async () => {
  // GIVEN the state such a crash leaves: the request message and its byte-identical copy (the
  // dispatcher re-sends the body unchanged, so both carry the same claim sequence) on the queue
  await runtime.setEventSourceEnabled(orchestrator.consumer.function, false);
  const accepted = vendor.stats().accepted;
  const { executionArn } = await runtime.sfn.startExecution(runtime.stateMachineArn(mainWorkflow), JSON.stringify({ orderId: 'crashed-1', order: { orderId: 'crashed-1' } }));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && await runtime.queueDepth(orchestrator.consumer.queue) === 0) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const [original] = await runtime.peek(requestQueueId, 1); // one receive of the original (of 2 allowed)
  expect(JSON.parse(original.body).requestId).toBe('crashed-1');
  const sqs = new SQSClient({ endpoint: runtime.endpoints.sqs, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  await sqs.send(new SendMessageCommand({ QueueUrl: runtime.template.queueUrlOf(requestQueueId), MessageBody: original.body }));
  sqs.destroy();
  expect(await runtime.queueDepth(orchestrator.consumer.queue)).toBe(2);

  // WHEN both are delivered and postponed a few times while the schedule has no room, then dispatched
  const pause = holdPause(7_000);
  await runtime.setEventSourceEnabled(orchestrator.consumer.function, true);
  await pause;
  const result = await waitForEnd(executionArn, 30_000);
  // The second copy's dispatch stops at ClaimRequest. Wait until it can no longer reach the vendor
  // (a fixed 3 s before): both copies left the queue, no dispatcher invocation holds one, and no
  // dispatch or vendor-call execution runs.
  await quiet(15_000);

  // THEN the request was claimed and sent once; nothing parked, nothing left
  if (result.status !== 'SUCCEEDED') console.log(`${result.status} ${result.error}: ${result.cause}`);
  expect(result.status).toBe('SUCCEEDED');
  expect(vendor.stats().accepted - accepted).toBe(1);
  expect(vendor.stats().duplicateVendorCalls).toBe(0);
  expect(await runtime.deadLetterCount('request')).toBe(0);
  expect(await runtime.queueDepth(orchestrator.consumer.queue)).toBe(0);
});
