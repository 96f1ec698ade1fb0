import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  GetItemCommand,
  UpdateItemCommand,
  UpdateItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import {
  ExecutionLimitExceeded,
  SendTaskFailureCommand,
  SFNClient,
  SFNServiceException,
  StartExecutionCommand,
  StartExecutionCommandInput,
} from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { evaluateInsightRule } from '../../local/aws/contributor-insights';
import { keyTopRuleDefinition } from '../../src/orchestrator/key-insights';
import * as dispatchModule from '../../src/rate-controlled-queue-consumer/dispatch';
import {
  buildDispatchInput,
  dispatchBatch,
  DispatchConfig,
  DispatchDeps,
  DispatchLogger,
  DispatchMetrics,
  executionName,
  MAX_DELAY_SECONDS,
  loadConfig,
  parseRequestMessage,
  queueUrlFromArn,
} from '../../src/rate-controlled-queue-consumer/dispatch';
import { Clock } from '../../src/rate-controlled-queue-consumer/pacer';
import { DispatchInput, RequestMessage } from '../../src/shared/messages';
import { METRICS_NAMESPACE } from '../../src/shared/metrics';
import { captureEmf } from '../emf';
import { inMemoryPacerTable } from './pacer-table-fake';

const ddb = mockClient(DynamoDBClient);
const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_700_000_000_000;
// (1000 + L + 1 ms at the window's edge) / 10 = 105 ms: round slot times.
const L = 49;
const QUEUE_ARN = 'arn:aws:sqs:eu-west-1:123456789012:requests';
const QUEUE_URL = 'https://sqs.eu-west-1.amazonaws.com/123456789012/requests';
const DLQ_URL = 'https://sqs.eu-west-1.amazonaws.com/123456789012/requests-dlq';
const STATE_MACHINE_ARN = 'arn:aws:states:eu-west-1:123456789012:stateMachine:dispatch';

const CONFIG: DispatchConfig = {
  stateMachineArn: STATE_MACHINE_ARN,
  requestsPerSecond: 10, // I = 105 ms
  pacerTableName: 'pacer',
  maxPacingWaitMs: 2_000,
  latenessToleranceMs: L,
  correlationTtlSeconds: 86_400,
  deadLetterQueueUrl: DLQ_URL,
};

interface FakeClock extends Clock {
  t: number;
  /** Every wait the dispatcher asked for. */
  readonly sleeps: number[];
  /** Extra time a sleep takes, by call index (an oversleeping Lambda). */
  readonly oversleep: Map<number, number>;
}

function fakeClock(start: number = T0): FakeClock {
  const clock: FakeClock = {
    t: start,
    sleeps: [],
    oversleep: new Map(),
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.t += ms + (clock.oversleep.get(clock.sleeps.length) ?? 0);
      clock.sleeps.push(ms);
    },
  };
  return clock;
}

function silentLogger(): jest.Mocked<DispatchLogger> {
  return { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() } as unknown as jest.Mocked<DispatchLogger>;
}

interface FakeMetrics extends DispatchMetrics {
  readonly calls: Array<{ name: string; unit: string; value: number }>;
  /** The values added under `name`, in order. */
  values(name: string): number[];
  /** Their sum (what CloudWatch's Sum statistic shows). */
  sum(name: string): number;
}

/** Records every addMetric call. */
function fakeMetrics(): FakeMetrics {
  const calls: Array<{ name: string; unit: string; value: number }> = [];
  const values = (name: string) => calls.filter((call) => call.name === name).map((call) => call.value);
  return {
    calls,
    addMetric: (name, unit, value) => {
      calls.push({ name, unit, value });
    },
    values,
    sum: (name) => values(name).reduce((a, b) => a + b, 0),
  };
}

/** The metric names counted, with their sums, for whole-picture assertions. */
function sums(metrics: FakeMetrics): Record<string, number> {
  const out: Record<string, number> = {};
  for (const call of metrics.calls) {
    out[call.name] = (out[call.name] ?? 0) + call.value;
  }
  return out;
}

function message(requestId: string, extra: Partial<RequestMessage> = {}): RequestMessage {
  return { taskToken: `token-${requestId}`, requestId, payload: { document: requestId }, ...extra };
}

function record(body: string | RequestMessage, messageId: string): SQSRecord {
  return {
    messageId,
    receiptHandle: `receipt-${messageId}`,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: String(T0),
      SenderId: 'sender',
      ApproximateFirstReceiveTimestamp: String(T0),
    },
    messageAttributes: {},
    md5OfBody: 'md5',
    eventSource: 'aws:sqs',
    eventSourceARN: QUEUE_ARN,
    awsRegion: 'eu-west-1',
  };
}

function sqsEvent(...records: SQSRecord[]): SQSEvent {
  return { Records: records };
}

/** An in-memory pacer item behind the mocked client, with DynamoDB's conditional semantics. */
function inMemoryPacer(initial?: number): { value: () => number | undefined } {
  let stored = initial === undefined ? undefined : String(initial);
  ddb.on(GetItemCommand).callsFake(async () => ({
    Item: stored === undefined ? undefined : { pk: { S: 'pacer' }, nextSlotAtMs: { N: stored } },
  }));
  ddb.on(UpdateItemCommand).callsFake(async (input: UpdateItemCommandInput) => {
    const values = input.ExpressionAttributeValues!;
    const holds = input.ConditionExpression!.startsWith('attribute_not_exists(#next)')
      ? stored === undefined
      : stored !== undefined && Number(stored) === Number(values[':old'].N);
    if (!holds) {
      throw new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} });
    }
    stored = values[':new'].N;
    return {};
  });
  return { value: () => (stored === undefined ? undefined : Number(stored)) };
}

/** Records the fake time of every StartExecution call. */
function recordStartTimes(clock: FakeClock): number[] {
  const times: number[] = [];
  sfn.on(StartExecutionCommand).callsFake(async (input: StartExecutionCommandInput) => {
    times.push(clock.now());
    return { executionArn: `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:${input.name}`, startDate: new Date() };
  });
  return times;
}

function startInputs(): StartExecutionCommandInput[] {
  return sfn.commandCalls(StartExecutionCommand).map((call) => call.args[0].input);
}

let metrics: FakeMetrics;

function deps(clock: FakeClock, logger: DispatchLogger = silentLogger(), config: DispatchConfig = CONFIG): DispatchDeps {
  return {
    clients: { dynamodb: new DynamoDBClient({}), sfn: new SFNClient({}), sqs: new SQSClient({}) },
    config,
    logger,
    metrics,
    clock,
    random: () => 0.5,
  };
}

beforeEach(() => {
  metrics = fakeMetrics();
  ddb.reset();
  sfn.reset();
  sqs.reset();
  sqs.on(SendMessageCommand).resolves({ MessageId: 'dlq-id' });
  sqs.on(ChangeMessageVisibilityCommand).resolves({});
  sfn.on(SendTaskFailureCommand).resolves({});
});

describe('dispatchBatch', () => {
  test('GIVEN three valid messages and an idle pacer WHEN dispatching THEN one execution each starts in its own slot', async () => {
    const clock = fakeClock();
    const pacer = inMemoryPacer();
    const startTimes = recordStartTimes(clock);
    const messages = [message('req-a'), message('req-b', { attempt: 3 }), message('req-c')];

    const response = await dispatchBatch(sqsEvent(...messages.map((m, i) => record(m, `m${i}`))), deps(clock));

    expect(response).toEqual({ batchItemFailures: [] });
    // First slot is now; the next two are I = 105 ms apart.
    expect(clock.sleeps).toEqual([105, 105]);
    expect(startTimes).toEqual([T0, T0 + 105, T0 + 210]);
    expect(pacer.value()).toBe(T0 + 315);

    const inputs = startInputs();
    expect(inputs).toHaveLength(3);
    inputs.forEach((input, i) => {
      expect(input.stateMachineArn).toBe(STATE_MACHINE_ARN);
      const attempt = messages[i].attempt ?? 1;
      expect(input.name).toMatch(new RegExp(`^${messages[i].requestId}-${attempt}-[0-9a-f]{8}$`));
      expect(JSON.parse(input.input!)).toEqual<DispatchInput>({
        requestId: messages[i].requestId,
        taskToken: messages[i].taskToken,
        payload: messages[i].payload,
        attempt,
        expiresAt: Math.floor(startTimes[i] / 1000) + CONFIG.correlationTtlSeconds,
        deferrals: 0,
        claimSeq: attempt * 1000,
        // The request's start, the first delivery's SentTimestamp, stamped into the message too.
        message: { ...messages[i], requestStartedAtMs: T0 },
        callbackToken: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), // webhookauth
        slotAtMs: startTimes[i],
        requestStartedAtMs: T0,
        keyLimits: null, // issue 15: no per-key limits
      });
    });
    expect(sqs).not.toHaveReceivedCommand(SendMessageCommand);
    expect(sqs).not.toHaveReceivedCommand(ChangeMessageVisibilityCommand);
    // One DispatchedRequests per start; PacingWait from when pacing began to each start.
    expect(sums(metrics)).toEqual({ DispatchedRequests: 3, PacingWait: 315 });
    expect(metrics.values('PacingWait')).toEqual([0, 105, 210]);
    expect(metrics.calls.filter((call) => call.name === 'DispatchedRequests').every((call) => call.unit === 'Count' && call.value === 1)).toBe(true);
    expect(metrics.calls.filter((call) => call.name === 'PacingWait').every((call) => call.unit === 'Milliseconds')).toBe(true);
  });

  test('GIVEN a lead (PacingPoint.VENDOR_CALL) WHEN dispatching THEN each execution starts lead before its slot and carries the slot', async () => {
    // GIVEN slots 1.5 s ahead (a backlog) and a lead of 1 s
    const clock = fakeClock();
    const pacer = inMemoryPacer(T0 + 1500);
    const startTimes = recordStartTimes(clock);
    const messages = [message('req-a'), message('req-b')];

    // WHEN
    const response = await dispatchBatch(sqsEvent(...messages.map((m, i) => record(m, `m${i}`))), deps(clock, silentLogger(), { ...CONFIG, leadMs: 1000 }));

    // THEN the starts are at slot - lead, and the inputs name the slots
    expect(response).toEqual({ batchItemFailures: [] });
    expect(startTimes).toEqual([T0 + 500, T0 + 605]);
    expect(startInputs().map((input) => JSON.parse(input.input!).slotAtMs)).toEqual([T0 + 1500, T0 + 1605]);
    expect(pacer.value()).toBe(T0 + 1710);
  });

  test('GIVEN a dynamic delay WHEN dispatching THEN it is added to the slot interval', async () => {
    const clock = fakeClock();
    inMemoryPacer();
    const startTimes = recordStartTimes(clock);
    const dynamicDelay = { extraIntervalMs: jest.fn(async () => 45) };

    await dispatchBatch(sqsEvent(record(message('req-a'), 'm0'), record(message('req-b'), 'm1')), { ...deps(clock), dynamicDelay });

    expect(startTimes).toEqual([T0, T0 + 150]);
    expect(dynamicDelay.extraIntervalMs).toHaveBeenCalled();
  });

  test('GIVEN a backlog in the pacer WHEN dispatching THEN the first start waits for the next free slot', async () => {
    const clock = fakeClock();
    inMemoryPacer(T0 + 700);
    const startTimes = recordStartTimes(clock);
    const logger = silentLogger();

    await dispatchBatch(sqsEvent(record(message('req-a'), 'm0'), record(message('req-b'), 'm1')), deps(clock, logger));

    expect(clock.sleeps).toEqual([700, 105]);
    expect(startTimes).toEqual([T0 + 700, T0 + 805]);
    // The wait is logged per message at debug level, with the request id.
    expect(logger.debug).toHaveBeenCalledWith('waiting for pacing slot', expect.objectContaining({ requestId: 'req-a', waitMs: 700 }));
    expect(logger.debug).toHaveBeenCalledWith('waiting for pacing slot', expect.objectContaining({ requestId: 'req-b', waitMs: 105 }));
    expect(metrics.values('PacingWait')).toEqual([700, 805]);
    expect(metrics.sum('DispatchedRequests')).toBe(2);
  });

  test('GIVEN malformed messages among valid ones WHEN dispatching THEN they are parked, their tasks failed, and the valid one starts', async () => {
    const clock = fakeClock();
    inMemoryPacer();
    recordStartTimes(clock);
    const notJson = '{"taskToken": "tok-1", ';
    const noToken = JSON.stringify({ requestId: 'req-x', payload: {} });
    const emptyRequestId = JSON.stringify({ taskToken: 'tok-3', requestId: '', payload: {} });
    const wrongTypes = JSON.stringify({ taskToken: 'tok-4', requestId: 42, payload: {}, attempt: 'two' });
    const array = '[1, 2]';

    const response = await dispatchBatch(sqsEvent(
      record(notJson, 'bad-json'),
      record(noToken, 'no-token'),
      record(message('req-ok'), 'ok'),
      record(emptyRequestId, 'empty-id'),
      record(wrongTypes, 'wrong-types'),
      record(array, 'array'),
    ), deps(clock));

    // Parked messages are handled, not failures.
    expect(response).toEqual({ batchItemFailures: [] });
    expect(sqs).toHaveReceivedCommandTimes(SendMessageCommand, 5);
    for (const body of [notJson, noToken, emptyRequestId, wrongTypes, array]) {
      expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, {
        QueueUrl: DLQ_URL,
        MessageBody: body,
        MessageAttributes: expect.objectContaining({
          reason: { DataType: 'String', StringValue: 'MalformedRequestMessage' },
          detail: { DataType: 'String', StringValue: expect.any(String) },
        }),
      });
    }
    const detailOf = (body: string) => sqs.commandCalls(SendMessageCommand)
      .find((call) => call.args[0].input.MessageBody === body)!.args[0].input.MessageAttributes!.detail.StringValue;
    expect(detailOf(notJson)).toMatch(/not valid JSON/);
    expect(detailOf(noToken)).toBe('taskToken must be a non-empty string');
    expect(detailOf(wrongTypes)).toBe('requestId must be a non-empty string; attempt must be a positive integer when present');

    // Only messages with a readable task token fail their task.
    const failures = sfn.commandCalls(SendTaskFailureCommand).map((call) => call.args[0].input);
    expect(failures.map((f) => f.taskToken).sort()).toEqual(['tok-3', 'tok-4']);
    for (const failure of failures) {
      expect(failure.error).toBe('VendorRequestFailed');
      expect(failure.cause).toMatch(/^malformed request message: requestId must be a non-empty string/);
    }

    expect(startInputs().map((input) => JSON.parse(input.input!).requestId)).toEqual(['req-ok']);
    // Only the valid message was paced.
    expect(ddb.commandCalls(UpdateItemCommand)[0].args[0].input.ExpressionAttributeValues![':new']).toEqual({ N: String(T0 + 105) });
    expect(sums(metrics)).toEqual({ ParkedRequests: 5, DispatchedRequests: 1, PacingWait: 0 });
    expect(metrics.calls.filter((call) => call.name === 'ParkedRequests').every((call) => call.unit === 'Count')).toBe(true);
  });

  test('GIVEN the task of a malformed message cannot be failed WHEN dispatching THEN the message is still handled', async () => {
    sfn.on(SendTaskFailureCommand).rejects(new SFNServiceException({ name: 'TaskTimedOut', $fault: 'client', $metadata: {} }));

    const response = await dispatchBatch(sqsEvent(record(JSON.stringify({ taskToken: 'tok', requestId: '' }), 'bad')), deps(fakeClock()));

    expect(response).toEqual({ batchItemFailures: [] });
    expect(sqs).toHaveReceivedCommandTimes(SendMessageCommand, 1);
    expect(sfn).toHaveReceivedCommandTimes(SendTaskFailureCommand, 1);
    expect(sums(metrics)).toEqual({ ParkedRequests: 1 });
  });

  test('GIVEN the dead-letter queue is unavailable WHEN parking THEN the message is a batch item failure and its task is left alone', async () => {
    sqs.on(SendMessageCommand).rejects(new Error('SQS down'));

    const response = await dispatchBatch(sqsEvent(record(JSON.stringify({ taskToken: 'tok', requestId: '' }), 'bad')), deps(fakeClock()));

    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'bad' }] });
    expect(sfn).not.toHaveReceivedCommand(SendTaskFailureCommand);
    // Not parked: it stays on the queue, so it is not counted.
    expect(metrics.calls).toEqual([]);
  });

  test('GIVEN a message whose execution input would exceed 256 KiB WHEN dispatching THEN it is parked instead of retried forever', async () => {
    const clock = fakeClock();
    inMemoryPacer();
    recordStartTimes(clock);
    const huge = message('req-huge', { payload: 'x'.repeat(140 * 1024) });

    const response = await dispatchBatch(sqsEvent(record(huge, 'huge')), deps(clock));

    expect(response).toEqual({ batchItemFailures: [] });
    expect(sfn).not.toHaveReceivedCommand(StartExecutionCommand);
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: DLQ_URL, MessageBody: JSON.stringify(huge) });
    expect(sfn).toHaveReceivedCommandWith(SendTaskFailureCommand, { taskToken: 'token-req-huge', error: 'VendorRequestFailed' });
    expect(sums(metrics)).toEqual({ ParkedRequests: 1 });
  });

  test('GIVEN StartExecution is throttled for one message WHEN dispatching THEN only that one is a batch item failure and it is not retried late', async () => {
    const clock = fakeClock();
    inMemoryPacer();
    sfn.on(StartExecutionCommand)
      .rejectsOnce(new ExecutionLimitExceeded({ message: 'Rate exceeded', $metadata: {} }))
      .resolves({ executionArn: 'arn:exec', startDate: new Date() });

    const response = await dispatchBatch(sqsEvent(record(message('req-a'), 'm0'), record(message('req-b'), 'm1')), deps(clock));

    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'm0' }] });
    expect(startInputs().map((input) => JSON.parse(input.input!).requestId)).toEqual(['req-a', 'req-b']);
    // The throttled message's visibility is left alone: it simply returns after its timeout.
    expect(sqs).not.toHaveReceivedCommand(ChangeMessageVisibilityCommand);
    // Both calls were issued in their slots: both count, whatever their outcome.
    expect(sums(metrics)).toEqual({ DispatchedRequests: 2, PacingWait: 105 });
  });

  test('GIVEN no slot fits before the deadline WHEN dispatching THEN nothing starts and each message comes back as a delayed copy, the original done', async () => {
    // Regression (issue 11, finding 7): postponing hid the same message (ChangeMessageVisibility),
    // which is one more receive each time: a long pause moved a never-sent request to the DLQ.
    const clock = fakeClock();
    inMemoryPacer(T0 + 9_500);
    const records = [record(message('req-a', { attempt: 2, deferrals: 3 }), 'm0'), record(message('req-b'), 'm1')];

    const response = await dispatchBatch(sqsEvent(...records), deps(clock));

    // The originals are done (deleted): their copies carry the request on.
    expect(response).toEqual({ batchItemFailures: [] });
    expect(sfn).not.toHaveReceivedCommand(StartExecutionCommand);
    expect(ddb).not.toHaveReceivedCommand(UpdateItemCommand);
    expect(sqs).not.toHaveReceivedCommand(ChangeMessageVisibilityCommand);
    expect(sqs).toHaveReceivedCommandTimes(SendMessageCommand, 2);
    for (const r of records) {
      // The body with the request's start stamped in (request-start.ts), else as it was: same
      // attempt and deferrals, so the same claim sequence, so a crash between this send and the
      // original's delete leaves two copies of which one claims.
      const body = JSON.stringify({ ...JSON.parse(r.body), requestStartedAtMs: T0 });
      expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: QUEUE_URL, MessageBody: body, DelaySeconds: 10 }); // ceil(9.5 s)
    }
    // Postponed messages were not started: no start, no pacing wait, no slot given up.
    expect(metrics.calls).toEqual([]);
  });

  test('GIVEN the schedule has no room for longer than SQS can delay WHEN dispatching THEN the copy is delayed 15 minutes (it is postponed again then)', async () => {
    const clock = fakeClock();
    const pausedUntil = T0 + 3_600_000; // a vendor pause of an hour
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'pacer' }, nextSlotAtMs: { N: String(T0) }, pausedUntilMs: { N: String(pausedUntil) } } });

    const response = await dispatchBatch(sqsEvent(record(message('req-a'), 'm0')), deps(clock));

    expect(response).toEqual({ batchItemFailures: [] });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: QUEUE_URL, DelaySeconds: MAX_DELAY_SECONDS });
    expect(MAX_DELAY_SECONDS).toBe(900);
  });

  test('GIVEN the postponing copy cannot be sent WHEN dispatching THEN the message itself is hidden until the next free slot and stays on the queue', async () => {
    const clock = fakeClock();
    inMemoryPacer(T0 + 9_500);
    sqs.on(SendMessageCommand, { QueueUrl: QUEUE_URL }).rejects(new Error('SQS unavailable'));
    const logger = silentLogger();

    const response = await dispatchBatch(sqsEvent(record(message('req-a'), 'm0')), deps(clock, logger));

    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'm0' }] });
    expect(sqs).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { QueueUrl: QUEUE_URL, ReceiptHandle: 'receipt-m0', VisibilityTimeout: 10 });
    expect(logger.warn).toHaveBeenCalledWith('could not send the postponing copy; the message itself is hidden instead', expect.objectContaining({ messageId: 'm0' }));
  });

  test('GIVEN a postponed message with message attributes and a message group WHEN dispatching THEN the copy carries them', async () => {
    const clock = fakeClock();
    inMemoryPacer(T0 + 9_500);
    const base = record(message('req-a'), 'm0');
    const r: SQSRecord = {
      ...base,
      attributes: { ...base.attributes, MessageGroupId: 'tenant-acme' },
      messageAttributes: {
        tenant: { stringValue: 'acme', dataType: 'String', stringListValues: [], binaryListValues: [] },
        blob: { binaryValue: Buffer.from([1, 2, 3]).toString('base64'), dataType: 'Binary', stringListValues: [], binaryListValues: [] },
      },
    };

    await dispatchBatch(sqsEvent(r), deps(clock));

    const sent = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input).find((input) => input.QueueUrl === QUEUE_URL)!;
    expect(sent.MessageAttributes).toEqual({
      tenant: { DataType: 'String', StringValue: 'acme' },
      blob: { DataType: 'Binary', BinaryValue: Buffer.from([1, 2, 3]) },
    });
    expect(sent.MessageGroupId).toBe('tenant-acme');
    // Without one, none is sent (a standard queue without fair queueing).
    sqs.resetHistory();
    await dispatchBatch(sqsEvent(record(message('req-b'), 'm1')), deps(clock));
    expect(sqs.commandCalls(SendMessageCommand)[0].args[0].input).not.toHaveProperty('MessageGroupId');
  });

  test('GIVEN more messages than slots before the deadline WHEN dispatching THEN the rest are re-sent, delayed until the next free slot', async () => {
    const clock = fakeClock();
    inMemoryPacer();
    const startTimes = recordStartTimes(clock);
    // R = 1: I = 1050 ms; slots at +0 and +1050 fit before +2000, +2100 does not.
    const config = { ...CONFIG, requestsPerSecond: 1 };
    const records = ['a', 'b', 'c', 'd'].map((id) => record(message(`req-${id}`), id));

    const response = await dispatchBatch(sqsEvent(...records), deps(clock, silentLogger(), config));

    expect(startTimes).toEqual([T0, T0 + 1050]);
    expect(response.batchItemFailures).toEqual([]);
    // Next free slot is T0 + 2100; it is T0 + 1050 now.
    expect(sqs).toHaveReceivedCommandTimes(SendMessageCommand, 2);
    const stamped = (r: SQSRecord) => JSON.stringify({ ...JSON.parse(r.body), requestStartedAtMs: T0 });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { MessageBody: stamped(records[2]), DelaySeconds: 2 });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { MessageBody: stamped(records[3]), DelaySeconds: 2 });
    expect(metrics.sum('DispatchedRequests')).toBe(2);
    expect(metrics.values('PacingWait')).toEqual([0, 1050]);
  });

  test('GIVEN the Lambda wakes up later than the tolerance WHEN dispatching THEN the slot is given up and new slots are reserved', async () => {
    const clock = fakeClock();
    const pacer = inMemoryPacer();
    const startTimes = recordStartTimes(clock);
    clock.oversleep.set(0, 80); // the first sleep (for req-b's slot at +105) ends at +185: 80 ms late > L
    const logger = silentLogger();

    const response = await dispatchBatch(
      sqsEvent(record(message('req-a'), 'm0'), record(message('req-b'), 'm1'), record(message('req-c'), 'm2')),
      deps(clock, logger),
    );

    expect(response).toEqual({ batchItemFailures: [] });
    // First reservation: +0, +105, +210 (next +315). req-b misses +105; the re-reservation for
    // req-b and req-c gets +315 and +420.
    expect(ddb).toHaveReceivedCommandTimes(UpdateItemCommand, 2);
    expect(clock.sleeps).toEqual([105, 130, 105]);
    expect(startTimes).toEqual([T0, T0 + 315, T0 + 420]);
    expect(pacer.value()).toBe(T0 + 525);
    expect(startInputs().map((input) => JSON.parse(input.input!).requestId)).toEqual(['req-a', 'req-b', 'req-c']);
    expect(logger.warn).toHaveBeenCalledWith('missed pacing slot; reserving new slots', expect.objectContaining({ requestId: 'req-b', lateByMs: 80 }));
    // The missed slot (+105) and the rest of that reservation (+210) are given up.
    expect(metrics.calls.filter((call) => call.name === 'SlotsGivenUp')).toEqual([{ name: 'SlotsGivenUp', unit: 'Count', value: 2 }]);
    expect(metrics.sum('DispatchedRequests')).toBe(3);
    // Measured from when pacing began, so req-b's wait includes the slot it lost.
    expect(metrics.values('PacingWait')).toEqual([0, 315, 420]);
  });

  test('GIVEN the pacer table is unavailable WHEN dispatching THEN nothing starts and every valid message is a batch item failure', async () => {
    ddb.on(GetItemCommand).rejects(new Error('DynamoDB down'));

    const response = await dispatchBatch(sqsEvent(record(message('req-a'), 'm0'), record(message('req-b'), 'm1')), deps(fakeClock()));

    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'm0' }, { itemIdentifier: 'm1' }] });
    expect(sfn).not.toHaveReceivedCommand(StartExecutionCommand);
    // When the schedule has room is unknown: the messages come back in 1-5 s (jittered), not after
    // the queue's long visibility timeout.
    const delays = sqs.commandCalls(ChangeMessageVisibilityCommand).map((c) => c.args[0].input.VisibilityTimeout!);
    expect(delays).toHaveLength(2);
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(1);
      expect(d).toBeLessThanOrEqual(5);
    }
    expect(metrics.calls).toEqual([]);
  });

  test('GIVEN per-key limits WHEN dispatching THEN a keyed request\'s input carries its key\'s limits in force, an unkeyed one null; one read per batch (issue 15)', async () => {
    const clock = fakeClock();
    // The pacer table with the keys' pacing items too (the per-key rate reads and writes them).
    inMemoryPacerTable(ddb);
    recordStartTimes(clock);
    const asked: string[][] = [];
    const acme = { requestsPerSecond: 20, quotas: {}, priorityAgingMs: 30_000, paused: false };
    const keyLimits = { limitsFor: async (keys: readonly string[]) => { asked.push([...keys]); return new Map([['acme', acme]]); } };
    const messages = [message('req-a', { key: 'acme' }), message('req-b'), message('req-c', { key: 'acme' })];

    await dispatchBatch(sqsEvent(...messages.map((m, i) => record(m, `m${i}`))), { ...deps(clock), keyLimits });

    expect(asked).toEqual([['acme']]);
    expect(startInputs().map((input) => [JSON.parse(input.input!).requestId, JSON.parse(input.input!).keyLimits])).toEqual([
      ['req-a', acme], ['req-b', null], ['req-c', acme],
    ]);
  });

  test('GIVEN an empty batch WHEN dispatching THEN nothing is called', async () => {
    const response = await dispatchBatch(sqsEvent(), deps(fakeClock()));

    expect(response).toEqual({ batchItemFailures: [] });
    expect(ddb.calls()).toHaveLength(0);
    expect(metrics.calls).toEqual([]);
  });
});

describe('message parsing and naming', () => {
  test('GIVEN a valid message with extra fields WHEN parsing THEN it is accepted as received', () => {
    const body = { taskToken: 't', requestId: 'r', payload: null, attempt: 2, extra: true };
    expect(parseRequestMessage(JSON.stringify(body))).toEqual({ ok: true, message: body });
  });

  test('GIVEN a message without payload or with a bad attempt WHEN parsing THEN it is rejected with the token kept', () => {
    expect(parseRequestMessage(JSON.stringify({ taskToken: 't', requestId: 'r' }))).toEqual({ ok: false, detail: 'payload is missing', taskToken: 't' });
    expect(parseRequestMessage(JSON.stringify({ taskToken: 't', requestId: 'r', payload: 1, attempt: 0 })))
      .toEqual({ ok: false, detail: 'attempt must be a positive integer when present', taskToken: 't' });
    expect(parseRequestMessage('null')).toEqual({ ok: false, detail: 'body is not a JSON object' });
  });

  test('GIVEN a message WHEN building the dispatch input THEN attempt defaults to 1 and expiresAt is now + TTL in seconds', () => {
    const m = message('r');
    expect(buildDispatchInput(m, T0 + 999, 60)).toEqual({
      requestId: 'r',
      taskToken: 'token-r',
      payload: { document: 'r' },
      attempt: 1,
      expiresAt: Math.floor(T0 / 1000) + 60,
      message: m,
      callbackToken: expect.any(String),
      deferrals: 0,
      claimSeq: 1000,
      // Never stamped (not delivered through dispatchBatch): its start is now.
      requestStartedAtMs: T0 + 999,
      keyLimits: null,
    });
  });

  test('GIVEN a retried and deferred message WHEN building the dispatch input THEN the claim sequence is attempt x 1000 + deferrals (capped at 999)', () => {
    expect(buildDispatchInput({ ...message('r'), attempt: 3, deferrals: 2 }, T0, 60).claimSeq).toBe(3002);
    expect(buildDispatchInput({ ...message('r'), attempt: 2, deferrals: 5000 }, T0, 60).claimSeq).toBe(2999);
    expect(buildDispatchInput({ ...message('r'), deferrals: -1 } as any, T0, 60).claimSeq).toBe(1000);
    expect(buildDispatchInput({ ...message('r'), deferrals: 'x' } as any, T0, 60).deferrals).toBe(0);
  });

  // ---- webhookauth: capability callback URL ----
  test('GIVEN messages WHEN building dispatch inputs THEN each first dispatch mints a new 256-bit token and a retry keeps its own', () => {
    const first = buildDispatchInput(message('r'), T0, 60).callbackToken;
    expect(first).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(first, 'base64url')).toHaveLength(32);
    expect(buildDispatchInput(message('r'), T0, 60).callbackToken).not.toBe(first);
    expect(buildDispatchInput({ ...message('r'), attempt: 2, callbackToken: first }, T0, 60).callbackToken).toBe(first);
    // Something that is not a token of ours is replaced, not trusted.
    expect(buildDispatchInput({ ...message('r'), callbackToken: 'short' }, T0, 60).callbackToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
  // ---- end webhookauth ----

  test('GIVEN a request id with unsafe characters WHEN naming the execution THEN they are replaced', () => {
    expect(executionName('order/42 é:x', 1, 'deadbeef')).toBe('order_42___x-1-deadbeef');
  });

  test('GIVEN a long request id WHEN naming the execution THEN it is cut to 60 characters and the name stays within 80', () => {
    const name = executionName('a'.repeat(200), 12, 'deadbeef');
    expect(name).toBe(`${'a'.repeat(60)}-12-deadbeef`);
    expect(executionName('a'.repeat(200), Number.MAX_SAFE_INTEGER).length).toBeLessThanOrEqual(80);
    expect(executionName('req', 1)).toMatch(/^req-1-[0-9a-f]{8}$/);
  });

  test('GIVEN an SQS queue ARN WHEN deriving its URL THEN the regional endpoint or the override is used', () => {
    expect(queueUrlFromArn(QUEUE_ARN)).toBe(QUEUE_URL);
    expect(queueUrlFromArn('arn:aws-cn:sqs:cn-north-1:123456789012:q')).toBe('https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q');
    expect(queueUrlFromArn(QUEUE_ARN, 'http://localhost:4566/')).toBe('http://localhost:4566/123456789012/requests');
    expect(() => queueUrlFromArn('arn:aws:sns:eu-west-1:123456789012:topic')).toThrow(/not an SQS queue ARN/);
  });
});

describe('loadConfig', () => {
  const env = {
    STATE_MACHINE_ARN: STATE_MACHINE_ARN,
    REQUESTS_PER_SECOND: '2.5',
    PACER_TABLE_NAME: 'pacer',
    MAX_PACING_WAIT_MS: '20000',
    CORRELATION_TTL_SECONDS: '90000',
    DEAD_LETTER_QUEUE_URL: DLQ_URL,
  };

  test('GIVEN the required variables WHEN loading THEN they are read and the lateness tolerance defaults to 50 ms', () => {
    expect(loadConfig(env)).toEqual<DispatchConfig>({
      stateMachineArn: STATE_MACHINE_ARN,
      requestsPerSecond: 2.5,
      pacerTableName: 'pacer',
      maxPacingWaitMs: 20_000,
      latenessToleranceMs: 50,
      leadMs: 0,
      correlationTtlSeconds: 90_000,
      deadLetterQueueUrl: DLQ_URL,
    });
  });

  test('GIVEN endpoint overrides WHEN loading THEN the SQS-specific one wins', () => {
    expect(loadConfig({ ...env, AWS_ENDPOINT_URL: 'http://a' }).sqsEndpointUrl).toBe('http://a');
    expect(loadConfig({ ...env, AWS_ENDPOINT_URL: 'http://a', AWS_ENDPOINT_URL_SQS: 'http://b' }).sqsEndpointUrl).toBe('http://b');
    expect(loadConfig({ ...env, LATENESS_TOLERANCE_MS: '80' }).latenessToleranceMs).toBe(80);
  });

  test.each(Object.keys(env))('GIVEN %s is missing WHEN loading THEN the error names it', (name) => {
    expect(() => loadConfig({ ...env, [name]: undefined })).toThrow(new RegExp(`${name} is required`));
    expect(() => loadConfig({ ...env, [name]: '  ' })).toThrow(new RegExp(`${name} is required`));
  });

  test.each([
    ['REQUESTS_PER_SECOND', '0'],
    ['REQUESTS_PER_SECOND', 'ten'],
    ['MAX_PACING_WAIT_MS', '-1'],
    ['LATENESS_TOLERANCE_MS', 'abc'],
    ['CORRELATION_TTL_SECONDS', '1.5'],
    ['CORRELATION_TTL_SECONDS', '0'],
  ])('GIVEN %s=%p WHEN loading THEN the error names the variable and the value', (name, value) => {
    expect(() => loadConfig({ ...env, [name]: value })).toThrow(new RegExp(`${name} must be .*got "${value}"`));
  });
});

/** Loads the Lambda module at call time (a static import would read the environment too early). */
function loadHandlerModule(): typeof import('../../src/rate-controlled-queue-consumer/dispatcher.lambda') {
  // Dynamic import() needs --experimental-vm-modules under Jest; require() does not.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('../../src/rate-controlled-queue-consumer/dispatcher.lambda');
}


describe('handler', () => {
  const ENV = {
    STATE_MACHINE_ARN: STATE_MACHINE_ARN,
    REQUESTS_PER_SECOND: '100',
    PACER_TABLE_NAME: 'pacer-table',
    MAX_PACING_WAIT_MS: '5000',
    // This test is about the wiring (real clients, one EMF document), not timing: with a 50 ms
    // tolerance a loaded machine made the dispatcher late for a slot, which added SlotsGivenUp.
    // The pacing itself is tested on an injected clock above.
    LATENESS_TOLERANCE_MS: '1000',
    CORRELATION_TTL_SECONDS: '86400',
    DEAD_LETTER_QUEUE_URL: DLQ_URL,
    AWS_REGION: 'eu-west-1',
    POWERTOOLS_LOG_LEVEL: 'SILENT',
    // As the construct sets them (POWERTOOLS_METRICS_NAMESPACE unset: the default namespace).
    METRICS_SCOPE: 'orders-scope',
    POWERTOOLS_SERVICE_NAME: 'dispatcher',
  };
  const saved = { ...process.env };

  afterEach(() => {
    process.env = { ...saved };
  });

  test('GIVEN the environment is set WHEN the handler receives a batch THEN it parks, paces and starts through the real clients', async () => {
    Object.assign(process.env, ENV);
    inMemoryPacer();
    sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:exec', startDate: new Date() });
    // Loaded only now, after the environment is set (nothing imports it earlier), and in this
    // file's module registry so that the SDK clients it creates at load are the mocked classes.
    const { handler } = loadHandlerModule();

    let response: unknown;
    const emf = await captureEmf(async () => {
      response = await handler(sqsEvent(record(message('req-a'), 'm0'), record('oops', 'm1'), record(message('req-b'), 'm2')));
    });

    expect(response).toEqual({ batchItemFailures: [] });
    // One EMF document for the invocation: namespace, exactly the Scope dimension, the counts.
    expect(emf).toHaveLength(1);
    const [doc] = emf;
    expect(doc._aws.CloudWatchMetrics).toHaveLength(1);
    expect(doc._aws.CloudWatchMetrics[0].Namespace).toBe(METRICS_NAMESPACE);
    expect(doc._aws.CloudWatchMetrics[0].Dimensions).toEqual([['Scope']]);
    expect(doc._aws.CloudWatchMetrics[0].Metrics).toEqual(expect.arrayContaining([
      { Name: 'DispatchedRequests', Unit: 'Count' },
      { Name: 'PacingWait', Unit: 'Milliseconds' },
      { Name: 'ParkedRequests', Unit: 'Count' },
    ]));
    expect(doc._aws.CloudWatchMetrics[0].Metrics).toHaveLength(3);
    expect(doc.Scope).toBe('orders-scope');
    expect(doc).not.toHaveProperty('service');
    expect(doc.DispatchedRequests).toEqual([1, 1]);
    expect(doc.ParkedRequests).toBe(1);
    expect(doc.PacingWait).toEqual([expect.any(Number), expect.any(Number)]);
    expect((doc.PacingWait as number[]).every((ms) => ms >= 0)).toBe(true);
    expect(ddb).toHaveReceivedCommandWith(GetItemCommand, { TableName: 'pacer-table' });
    expect(sfn).toHaveReceivedCommandTimes(StartExecutionCommand, 2);
    expect(sfn).toHaveReceivedCommandWith(StartExecutionCommand, { stateMachineArn: STATE_MACHINE_ARN, name: expect.stringMatching(/^req-a-1-/) });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: DLQ_URL, MessageBody: 'oops' });
  });

  test('GIVEN per-key limits (KEY_LIMITS, the key settings table) WHEN the handler runs THEN it reads the batch\'s keys\' overrides and each keyed input carries its key\'s limits (issue 15)', async () => {
    Object.assign(process.env, ENV, {
      KEY_LIMITS: JSON.stringify({ requestsPerSecond: 5, quotas: {}, priorityAgingMs: 30_000, paused: false }),
      KEY_SETTINGS_TABLE_NAME: 'key-settings',
    });
    // A fresh copy of the module (its key settings are read at load), with the SDK classes of that
    // copy mocked: the pacer's reads and writes answered, one override stored for 'acme'.
    let run!: () => Promise<unknown>;
    let batchGets!: () => unknown[];
    let inputs!: () => Array<Record<string, unknown>>;
    const restore: Array<() => void> = [];
    jest.isolateModules(() => {
      /* eslint-disable @typescript-eslint/no-require-imports */
      const dynamo: typeof import('@aws-sdk/client-dynamodb') = require('@aws-sdk/client-dynamodb');
      const stepFunctions: typeof import('@aws-sdk/client-sfn') = require('@aws-sdk/client-sfn');
      /* eslint-enable @typescript-eslint/no-require-imports */
      const isolatedDdb = mockClient(dynamo.DynamoDBClient);
      isolatedDdb.on(dynamo.GetItemCommand).resolves({});
      isolatedDdb.on(dynamo.UpdateItemCommand).resolves({});
      isolatedDdb.on(dynamo.BatchGetItemCommand).resolves({
        Responses: { 'key-settings': [{ pk: { S: 'acme' }, requestsPerSecond: { N: '20' } }] },
      });
      const isolatedSfn = mockClient(stepFunctions.SFNClient);
      isolatedSfn.on(stepFunctions.StartExecutionCommand).resolves({ executionArn: 'arn:exec', startDate: new Date() });
      restore.push(() => isolatedDdb.restore(), () => isolatedSfn.restore());
      const { handler } = loadHandlerModule();
      run = () => handler(sqsEvent(record(message('req-a', { key: 'acme' }), 'm0'), record(message('req-b', { key: 'globex' }), 'm1')));
      // The settings reads only (the per-key rate also reads the keys' pacing items in the pacer table).
      batchGets = () => isolatedDdb.commandCalls(dynamo.BatchGetItemCommand).map((call) => call.args[0].input)
        .filter((input) => input.RequestItems?.['key-settings'] !== undefined);
      inputs = () => isolatedSfn.commandCalls(stepFunctions.StartExecutionCommand).map((call) => JSON.parse(call.args[0].input.input!));
    });
    try {
      await run();
      expect(batchGets()).toEqual([{ RequestItems: { 'key-settings': { Keys: [{ pk: { S: 'acme' } }, { pk: { S: 'globex' } }] } } }]);
      expect(Object.fromEntries(inputs().map((input) => [input.key, input.keyLimits]))).toEqual({
        acme: { requestsPerSecond: 20, quotas: {}, priorityAgingMs: 30_000, paused: false },
        globex: { requestsPerSecond: 5, quotas: {}, priorityAgingMs: 30_000, paused: false },
      });
    } finally {
      restore.forEach((undo) => undo());
    }
  });

  test('GIVEN a batch of keyed requests WHEN the handler runs THEN one EMF document per key (requestKey, keyTotals) and the key rule ranks the busiest key first', async () => {
    Object.assign(process.env, ENV);
    inMemoryPacer();
    sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:exec', startDate: new Date() });
    const { handler } = loadHandlerModule();
    const keyed = (id: string, key?: string) => message(id, key ? { key } : {});

    const emf = await captureEmf(() => handler(sqsEvent(
      record(keyed('req-a', 'acme'), 'm0'), record(keyed('req-b', 'globex'), 'm1'), record(keyed('req-c', 'acme'), 'm2'), record(keyed('req-d'), 'm3'),
    )));

    // The request without a key, then one document per key; the metric is unchanged (Scope only).
    expect(emf.map((d) => [d.requestKey, d.keyTotals && (d.keyTotals as Record<string, number>).DispatchedRequests])).toEqual([
      [undefined, undefined], ['acme', 2], ['globex', 1],
    ]);
    expect(emf.every((d) => JSON.stringify(d._aws.CloudWatchMetrics[0].Dimensions) === '[["Scope"]]')).toBe(true);
    const lines = emf.map((d) => ({ timestamp: d._aws.Timestamp, message: JSON.stringify(d) }));
    const [minute] = evaluateInsightRule(keyTopRuleDefinition('dispatcher-logs', 'DispatchedRequests'), lines);
    expect(minute).toMatchObject({ maxContributor: ['acme'], maxContributorValue: 2, uniqueContributors: 2, sum: 3 });
  });

  test('GIVEN the batch crashes half-way WHEN the handler runs THEN what was counted is still published', async () => {
    Object.assign(process.env, ENV);
    const { handler } = loadHandlerModule();
    const crash = jest.spyOn(dispatchModule, 'dispatchBatch').mockImplementation(async (_event, d) => {
      d.metrics.addMetric('DispatchedRequests', 'Count', 1);
      throw new Error('crashed mid-batch');
    });

    let error: unknown;
    const emf = await captureEmf(() => handler(sqsEvent(record(message('req-a'), 'm0'))).catch((e: unknown) => {
      error = e;
    }));
    crash.mockRestore();

    expect(error).toEqual(new Error('crashed mid-batch'));
    expect(emf).toHaveLength(1);
    expect(emf[0].DispatchedRequests).toBe(1);
    expect(emf[0].Scope).toBe('orders-scope');
  });

  test('GIVEN nothing was counted WHEN the handler runs THEN no EMF document is written', async () => {
    Object.assign(process.env, ENV);
    const { handler } = loadHandlerModule();

    const emf = await captureEmf(() => handler(sqsEvent()));

    expect(emf).toEqual([]);
  });

  test('GIVEN a required variable is missing WHEN the module loads THEN it fails naming the variable', async () => {
    Object.assign(process.env, ENV);
    delete process.env.DEAD_LETTER_QUEUE_URL;

    // A fresh copy of the module, so that its load-time configuration reading runs again.
    expect(() => jest.isolateModules(() => loadHandlerModule())).toThrow(/DEAD_LETTER_QUEUE_URL is required/);
  });
});
