import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { batchItemFailures, SqsEventSourcePoller } from '../../local/aws/event-source-mapping';
import { LocalLambda } from '../../local/aws/lambda';
import type { LambdaInvoker, ResolvedResource } from '../../local/types';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/types';

/**
 * fauxqs is ESM-only (its package exports have only an `import` condition), which Jest's CommonJS
 * runtime cannot resolve; a Worker thread imports it natively and keeps its timers off this realm.
 */
async function startFauxqsThread(): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads');
    import('fauxqs').then(async ({ startFauxqs }) => {
      const server = await startFauxqs({ port: 0, logger: false });
      parentPort.once('message', async () => {
        await server.stop();
        parentPort.close();
      });
      parentPort.postMessage({ port: server.port });
    }, (err) => { throw err; });
  `, { eval: true });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', (msg: { port: number }) => resolve(msg.port));
    worker.once('error', reject);
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: async () => {
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.postMessage('stop');
      await exited;
    },
  };
}

jest.setTimeout(15_000);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let fauxqs: { endpoint: string; stop: () => Promise<void> };
let sqs: SQSClient;
const pollers: SqsEventSourcePoller[] = [];
let queueCounter = 0;

beforeAll(async () => {
  fauxqs = await startFauxqsThread();
  sqs = new SQSClient({ endpoint: fauxqs.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
});

// Each test's pollers stop with it (idle pollers would keep long-polling fauxqs during later
// tests), in the background: a stop waits for the current one-second receive.
const stopping: Promise<void>[] = [];
afterEach(() => {
  stopping.push(...pollers.splice(0).map((p) => p.stop(1000)));
});

afterAll(async () => {
  await Promise.all(stopping);
  sqs?.destroy();
  await fauxqs?.stop();
});

interface TestQueue {
  readonly url: string;
  readonly arn: string;
  readonly dlqUrl: string;
}

/**
 * A queue with a DLQ (maxReceiveCount 2) and, by default, a one-second visibility timeout so that
 * failed records come back quickly. A batching window needs a longer one: records gathered in a
 * window that outlasts their visibility timeout are received again by another poller (on AWS too).
 */
async function createQueue(visibilityTimeoutSeconds = 1): Promise<TestQueue> {
  const name = `requests-${++queueCounter}`;
  const dlq = await sqs.send(new CreateQueueCommand({ QueueName: `${name}-dlq` }));
  const dlqArn = `arn:aws:sqs:us-east-1:000000000000:${name}-dlq`;
  const queue = await sqs.send(new CreateQueueCommand({
    QueueName: name,
    Attributes: {
      VisibilityTimeout: String(visibilityTimeoutSeconds),
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 2 }),
    },
  }));
  return { url: queue.QueueUrl!, arn: `arn:aws:sqs:us-east-1:000000000000:${name}`, dlqUrl: dlq.QueueUrl! };
}

function mapping(queue: TestQueue, properties: Record<string, any>, logicalId = 'Mapping'): { resource: ResolvedResource; queueUrl: string; queueArn: string } {
  return {
    resource: {
      logicalId,
      type: 'AWS::Lambda::EventSourceMapping',
      properties: { FunctionName: 'consumer', EventSourceArn: queue.arn, ...properties },
      metadata: {},
    },
    queueUrl: queue.url,
    queueArn: queue.arn,
  };
}

function startPoller(mappings: ReturnType<typeof mapping>[], invoke: LambdaInvoker): SqsEventSourcePoller {
  const poller = new SqsEventSourcePoller({ mappings, sqsEndpoint: fauxqs.endpoint, invoke });
  pollers.push(poller);
  poller.start();
  return poller;
}

async function sendMessages(queue: TestQueue, bodies: string[]): Promise<void> {
  for (let i = 0; i < bodies.length; i += 10) {
    await sqs.send(new SendMessageBatchCommand({
      QueueUrl: queue.url,
      Entries: bodies.slice(i, i + 10).map((body, index) => ({ Id: String(index), MessageBody: body })),
    }));
  }
}

/** Visible + in-flight + delayed messages (fauxqs reports them like SQS). */
async function queueDepth(url: string): Promise<number> {
  const out = await sqs.send(new GetQueueAttributesCommand({
    QueueUrl: url,
    AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
  }));
  const a = out.Attributes ?? {};
  return Number(a.ApproximateNumberOfMessages ?? 0)
    + Number(a.ApproximateNumberOfMessagesNotVisible ?? 0)
    + Number(a.ApproximateNumberOfMessagesDelayed ?? 0);
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) {
      throw new Error('condition not met in time');
    }
    await sleep(50);
  }
}

describe('batchItemFailures', () => {
  const ids = new Set(['a', 'b']);
  test.each([
    [undefined, []],
    [null, []],
    [{}, []],
    [{ batchItemFailures: null }, []],
    [{ batchItemFailures: [] }, []],
    [{ batchItemFailures: [{ itemIdentifier: 'b' }] }, ['b']],
  ])('%j reports %j as failed', (response, failed) => {
    expect([...batchItemFailures(response, ids)!]).toEqual(failed);
  });
  test.each([
    ['a string', 'ok'],
    ['an array', []],
    ['batchItemFailures not a list', { batchItemFailures: 'b' }],
    ['an unknown id', { batchItemFailures: [{ itemIdentifier: 'zzz' }] }],
    ['an empty id', { batchItemFailures: [{ itemIdentifier: '' }] }],
    ['a wrong key', { batchItemFailures: [{ id: 'a' }] }],
  ])('%s is malformed', (_, response) => {
    expect(batchItemFailures(response, ids)).toBeUndefined();
  });
});

test('builds SQS event records and uses the queue URL CreateQueue returned', async () => {
  const queue = await createQueue();
  // fauxqs 1.9 names queues http://sqs.<region>.localhost:<port>/<account>/<name> and looks them up
  // by that exact URL: `${endpoint}/000000000000/<name>` is QueueDoesNotExist.
  expect(queue.url).toBe(`http://sqs.us-east-1.localhost:${new URL(fauxqs.endpoint).port}/000000000000/requests-${queueCounter}`);
  const events: SQSEvent[] = [];
  const poller = startPoller([mapping(queue, { BatchSize: 10 })], async (name, event) => {
    expect(name).toBe('consumer');
    events.push(event as SQSEvent);
    return undefined;
  });
  await sqs.send(new SendMessageCommand({
    QueueUrl: queue.url,
    MessageBody: '{"hello":"world"}',
    MessageAttributes: {
      kind: { DataType: 'String', StringValue: 'request' },
      raw: { DataType: 'Binary', BinaryValue: Buffer.from('bytes') },
    },
  }));
  await waitFor(() => poller.stats().Mapping.deleted === 1, 5000);
  const record: SQSRecord = events[0].Records[0];
  expect(record).toMatchObject({
    body: '{"hello":"world"}',
    md5OfBody: 'fbc24bcc7a1794758fc1327fcfebdaf6',
    eventSource: 'aws:sqs',
    eventSourceARN: queue.arn,
    awsRegion: 'us-east-1',
    messageAttributes: {
      kind: { stringValue: 'request', stringListValues: [], binaryListValues: [], dataType: 'String' },
      raw: { binaryValue: Buffer.from('bytes').toString('base64'), stringListValues: [], binaryListValues: [], dataType: 'Binary' },
    },
  });
  expect(record.messageId).toMatch(/\S/);
  expect(record.receiptHandle).toMatch(/\S/);
  expect(record.attributes.ApproximateReceiveCount).toBe('1');
  expect(record.attributes.SenderId).toMatch(/\S/);
  expect(Number(record.attributes.SentTimestamp)).toBeGreaterThan(Date.now() - 10_000);
  expect(Number(record.attributes.ApproximateFirstReceiveTimestamp)).toBeGreaterThanOrEqual(Number(record.attributes.SentTimestamp));
  expect(await queueDepth(queue.url)).toBe(0);
});

test('gathers up to BatchSize within the batching window', async () => {
  const queue = await createQueue(10);
  const batches: Array<{ size: number; at: number }> = [];
  // MaximumConcurrency 1 (AWS's minimum is 2) means a single poller: with two, the second poller
  // would receive 'c' into a batch of its own, as AWS's pollers do.
  const windowed = mapping(queue, { BatchSize: 4, MaximumBatchingWindowInSeconds: 1, ScalingConfig: { MaximumConcurrency: 1 } });
  const poller = startPoller([windowed], async (_, event) => {
    batches.push({ size: (event as SQSEvent).Records.length, at: Date.now() });
    return undefined;
  });
  // Two messages, then one more inside the window: a single batch of three when the window closes.
  const sentAt = Date.now();
  await sendMessages(queue, ['a', 'b']);
  await sleep(400);
  await sendMessages(queue, ['c']);
  await waitFor(() => poller.stats().Mapping.deleted === 3, 5000);
  expect(batches.map((b) => b.size)).toEqual([3]);
  expect(batches[0].at - sentAt).toBeGreaterThanOrEqual(900);

  // A full batch does not wait for the window: 9 messages -> 4 + 4 + 1.
  batches.length = 0;
  await sendMessages(queue, ['1', '2', '3', '4', '5', '6', '7', '8', '9']);
  await waitFor(() => poller.stats().Mapping.deleted === 12, 5000);
  expect(batches.every((b) => b.size <= 4)).toBe(true);
  expect(batches.reduce((n, b) => n + b.size, 0)).toBe(9);
  expect(batches.filter((b) => b.size === 4).length).toBeGreaterThanOrEqual(1);
});

test('without a window, invokes with what one receive returned', async () => {
  const queue = await createQueue();
  const sizes: number[] = [];
  const poller = startPoller([mapping(queue, { BatchSize: 10, ScalingConfig: { MaximumConcurrency: 2 } })], async (_, event) => {
    sizes.push((event as SQSEvent).Records.length);
    return undefined;
  });
  await sendMessages(queue, ['first']);
  await waitFor(() => poller.stats().Mapping.deleted === 1, 5000);
  await sendMessages(queue, ['second']);
  await waitFor(() => poller.stats().Mapping.deleted === 2, 5000);
  expect(sizes).toEqual([1, 1]);
});

test('never exceeds MaximumConcurrency', async () => {
  const queue = await createQueue();
  let running = 0;
  let peak = 0;
  const poller = startPoller([mapping(queue, { BatchSize: 1, ScalingConfig: { MaximumConcurrency: 2 } })], async () => {
    running++;
    peak = Math.max(peak, running);
    await sleep(150);
    running--;
    return undefined;
  });
  await sendMessages(queue, Array.from({ length: 12 }, (_, i) => `m${i}`));
  await waitFor(() => poller.stats().Mapping.deleted === 12, 10_000);
  expect(peak).toBe(2);
  expect(poller.stats().Mapping).toMatchObject({ maxConcurrent: 2, batches: 12, messages: 12, invocationErrors: 0 });
});

test('ReportBatchItemFailures: deletes all but the failed records, which come back', async () => {
  const queue = await createQueue();
  const seen: Array<{ body: string; receiveCount: string }> = [];
  const poller = startPoller([mapping(queue, { BatchSize: 10, FunctionResponseTypes: ['ReportBatchItemFailures'] })], async (_, event) => {
    const records = (event as SQSEvent).Records;
    seen.push(...records.map((r) => ({ body: r.body, receiveCount: r.attributes.ApproximateReceiveCount })));
    // 'flaky' fails on its first delivery only.
    const failed = records.filter((r) => r.body === 'flaky' && r.attributes.ApproximateReceiveCount === '1');
    const response: SQSBatchResponse = { batchItemFailures: failed.map((r) => ({ itemIdentifier: r.messageId })) };
    return response;
  });
  await sendMessages(queue, ['ok-1', 'flaky', 'ok-2']);
  await waitFor(() => poller.stats().Mapping.failedItems === 1, 5000);
  // The others are deleted at once; the failed one waits out its visibility timeout (1 s).
  await waitFor(() => poller.stats().Mapping.deleted === 2, 2000);
  await waitFor(() => poller.stats().Mapping.deleted === 3, 5000);
  expect(seen.filter((s) => s.body === 'ok-1')).toEqual([{ body: 'ok-1', receiveCount: '1' }]);
  expect(seen.filter((s) => s.body === 'flaky')).toEqual([{ body: 'flaky', receiveCount: '1' }, { body: 'flaky', receiveCount: '2' }]);
  expect(await queueDepth(queue.url)).toBe(0);
  expect(await queueDepth(queue.dlqUrl)).toBe(0);
});

test('a record that keeps failing ends in the DLQ after maxReceiveCount receives', async () => {
  const queue = await createQueue();
  let poisonDeliveries = 0;
  const poller = startPoller([mapping(queue, { BatchSize: 10, FunctionResponseTypes: ['ReportBatchItemFailures'] })], async (_, event) => {
    const records = (event as SQSEvent).Records;
    const poison = records.filter((r) => r.body === 'poison');
    poisonDeliveries += poison.length;
    return { batchItemFailures: poison.map((r) => ({ itemIdentifier: r.messageId })) };
  });
  await sendMessages(queue, ['poison', 'fine']);
  await waitFor(async () => (await queueDepth(queue.dlqUrl)) === 1, 8000);
  const dlq = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.dlqUrl, MaxNumberOfMessages: 10 }));
  expect(dlq.Messages?.map((m) => m.Body)).toEqual(['poison']);
  expect(poisonDeliveries).toBe(2);
  expect(poller.stats().Mapping).toMatchObject({ deleted: 1, failedItems: 2 });
  expect(await queueDepth(queue.url)).toBe(0);
});

test('a throwing invocation or a malformed response deletes nothing; disabled mappings never poll', async () => {
  const throwing = await createQueue();
  const malformed = await createQueue();
  const disabled = await createQueue();
  let disabledCalls = 0;
  const poller = startPoller([
    mapping(throwing, { FunctionName: 'thrower' }, 'Throwing'),
    mapping(malformed, { FunctionName: 'liar', FunctionResponseTypes: ['ReportBatchItemFailures'] }, 'Malformed'),
    mapping(disabled, { FunctionName: 'off', Enabled: false }, 'Disabled'),
  ], async (name) => {
    if (name === 'thrower') {
      throw Object.assign(new Error('Task timed out after 3.00 seconds'), { name: 'Sandbox.Timedout' });
    }
    if (name === 'liar') {
      return { batchItemFailures: [{ itemIdentifier: 'not-a-message-id' }] };
    }
    disabledCalls++;
    return undefined;
  });
  await sendMessages(throwing, ['t1', 't2']);
  await sendMessages(malformed, ['m1']);
  await sendMessages(disabled, ['d1']);
  // Each batch is delivered twice (maxReceiveCount 2), then redriven to the DLQ: nothing was deleted.
  await waitFor(async () => (await queueDepth(throwing.dlqUrl)) === 2 && (await queueDepth(malformed.dlqUrl)) === 1, 8000);
  const stats = poller.stats();
  expect(stats.Throwing).toMatchObject({ deleted: 0, invocationErrors: 2, messages: 4, lastError: 'Sandbox.Timedout: Task timed out after 3.00 seconds' });
  expect(stats.Malformed).toMatchObject({ deleted: 0, malformedResponses: 2, failedItems: 2, invocationErrors: 0 });
  expect(stats.Disabled).toBeUndefined();
  expect(disabledCalls).toBe(0);
  expect(await queueDepth(disabled.url)).toBe(1);
});

test('stop() ends polling promptly and waits for in-flight invocations', async () => {
  const queue = await createQueue();
  let finished = 0;
  const poller = new SqsEventSourcePoller({
    mappings: [mapping(queue, { BatchSize: 1, ScalingConfig: { MaximumConcurrency: 2 } })],
    sqsEndpoint: fauxqs.endpoint,
    invoke: async () => {
      await sleep(500);
      finished++;
      return undefined;
    },
  });
  poller.start();
  await sendMessages(queue, ['x']);
  await waitFor(() => poller.stats().Mapping.inFlight === 1, 5000);
  const started = Date.now();
  await poller.stop();
  expect(finished).toBe(1);
  expect(poller.stats().Mapping.deleted).toBe(1);
  // Receives long-poll for one second at most.
  expect(Date.now() - started).toBeLessThan(2000);
});

test('stop() aborts an idle mapping\'s long poll: it returns at once, not when the one-second receive ends, and counts no receive error', async () => {
  const queue = await createQueue();
  const poller = new SqsEventSourcePoller({
    mappings: [mapping(queue, { BatchSize: 1, ScalingConfig: { MaximumConcurrency: 2 } })],
    sqsEndpoint: fauxqs.endpoint,
    invoke: async () => undefined,
  });
  poller.start();
  // The empty queue: each poller is in a one-second long poll that began about 200 ms ago.
  await sleep(200);
  const started = Date.now();
  await poller.stop();
  // Before, the stop waited for the receives in flight (about 800 ms here): every runtime's stop
  // paid up to a second for its idle mappings.
  expect(Date.now() - started).toBeLessThan(300);
  expect(poller.stats().Mapping).toMatchObject({ receiveErrors: 0, batches: 0 });
});

/** Relays each record to an output queue with the real SDK, configured only by environment variables. */
const RELAY_HANDLER = `
const { SQSClient, SendMessageCommand } = require(process.env.SDK_SQS_PATH);
const sqs = new SQSClient({});
exports.handler = async (event) => {
  const batchItemFailures = [];
  for (const record of event.Records) {
    if (record.body === 'fail') {
      batchItemFailures.push({ itemIdentifier: record.messageId });
    } else {
      await sqs.send(new SendMessageCommand({ QueueUrl: process.env.OUTPUT_QUEUE_URL, MessageBody: record.body.toUpperCase() }));
    }
  }
  return { batchItemFailures };
};
`;

test('end to end: the poller feeds a LocalLambda whose handler reaches fauxqs by its queue URLs', async () => {
  const input = await createQueue(30);
  const output = await createQueue();
  const codeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'local-esm-'));
  fs.writeFileSync(path.join(codeDir, 'index.js'), RELAY_HANDLER);
  const lambda = new LocalLambda({
    functions: [{
      resource: {
        logicalId: 'Relay',
        type: 'AWS::Lambda::Function',
        properties: {
          FunctionName: 'relay',
          Handler: 'index.handler',
          Timeout: 10,
          Environment: { Variables: { SDK_SQS_PATH: require.resolve('@aws-sdk/client-sqs'), OUTPUT_QUEUE_URL: output.url } },
        },
        metadata: {},
      },
      codeDir,
    }],
    endpoints: { sqs: fauxqs.endpoint, dynamodb: 'http://127.0.0.1:1', sfn: 'http://127.0.0.1:1', secretsManager: 'http://127.0.0.1:1' },
  });
  const poller = new SqsEventSourcePoller({
    mappings: [mapping(input, {
      FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:relay',
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 2 },
    })],
    sqsEndpoint: fauxqs.endpoint,
    invoke: (name, event) => lambda.invoke(name, event),
  });
  try {
    poller.start();
    await sendMessages(input, ['hello', 'fail']);
    await waitFor(() => poller.stats().Mapping.batches >= 1 && poller.stats().Mapping.inFlight === 0, 10_000);
    const relayed = await sqs.send(new ReceiveMessageCommand({ QueueUrl: output.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    expect(relayed.Messages?.map((m) => m.Body)).toEqual(['HELLO']);
    expect(poller.stats().Mapping).toMatchObject({ deleted: 1, failedItems: 1, invocationErrors: 0 });
    expect(lambda.stats('relay')).toMatchObject({ invocations: 1, errors: 0 });
  } finally {
    await poller.stop(1000);
    await lambda.stop();
    fs.rmSync(codeDir, { recursive: true, force: true });
  }
});

test('a disabled mapping receives nothing until it is enabled again (UpdateEventSourceMapping Enabled)', async () => {
  // GIVEN a mapping, disabled
  const queue = await createQueue();
  let invoked = 0;
  const poller = startPoller([mapping(queue, { BatchSize: 10 })], async () => {
    invoked++;
    return undefined;
  });
  await poller.setEnabled('consumer', false);

  // WHEN messages arrive
  await sendMessages(queue, ['a', 'b', 'c']);
  await sleep(500);

  // THEN they wait in the queue
  expect(invoked).toBe(0);
  expect(await queueDepth(queue.url)).toBe(3);

  // WHEN enabled again THEN they are consumed
  await poller.setEnabled('consumer', true);
  await waitFor(() => poller.stats().Mapping.deleted === 3, 5000);
  await expect(poller.setEnabled('someone-else', false)).rejects.toThrow(/no enabled event source mapping invokes someone-else/);
});
