import { ConditionalCheckFailedException, DynamoDBClient, UpdateItemCommand, UpdateItemCommandInput } from '@aws-sdk/client-dynamodb';
import {
  DeleteMessageBatchCommand,
  DeleteMessageBatchCommandInput,
  Message,
  ReceiveMessageCommand,
  ReceiveMessageCommandInput,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { Clock, slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';
import {
  DRAIN_LEASE_KEY,
  DrainConfig,
  DrainDeps,
  DrainLease,
  drainQueue,
  dynamoDbDrainLease,
  isScheduledTick,
  loadDrainConfig,
  slotsBefore,
  toSqsRecord,
} from '../../src/rate-controlled-queue-consumer/scheduled-drain';
import { SCHEDULED_TICK_KIND, ScheduledTickEvent } from '../../src/shared/scheduled-tick';

const sqs = mockClient(SQSClient);
const ddb = mockClient(DynamoDBClient);

const T0 = 1_700_000_000_000;
const QUEUE_ARN = 'arn:aws:sqs:eu-west-1:123456789012:requests';
const QUEUE_URL = 'https://sqs.eu-west-1.amazonaws.com/123456789012/requests';
const TICK: ScheduledTickEvent = { kind: SCHEDULED_TICK_KIND, scheduledTime: '2024-01-01T00:00:00Z', executionId: 'e-1' };
/** 0.1 rps: I = 10.5 s, a 1-minute tick may take floor(0.1 x 60) = 6. */
const I = slotIntervalMs(0.1, 50);

const CONFIG: DrainConfig = {
  queueUrl: QUEUE_URL,
  queueArn: QUEUE_ARN,
  maxMessagesPerTick: 6,
  slotIntervalMs: I,
  safetyMarginMs: 5_000,
};

interface FakeClock extends Clock {
  t: number;
}

function fakeClock(): FakeClock {
  const clock: FakeClock = {
    t: T0,
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.t += Math.max(0, ms);
    },
  };
  return clock;
}

/** A queue of `n` messages on fake SQS: receive hands out up to MaxNumberOfMessages, delete removes. */
function fakeQueue(n: number) {
  const visible: Message[] = Array.from({ length: n }, (_, i) => ({
    MessageId: `m-${i + 1}`,
    ReceiptHandle: `rh-${i + 1}`,
    Body: JSON.stringify({ requestId: `r-${i + 1}` }),
    Attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(T0) },
    MessageAttributes: { trace: { DataType: 'String', StringValue: 'abc' } },
  }));
  const inFlight = new Map<string, Message>();
  const deleted: string[] = [];
  sqs.on(ReceiveMessageCommand).callsFake((input: ReceiveMessageCommandInput) => {
    const taken = visible.splice(0, input.MaxNumberOfMessages ?? 1);
    for (const m of taken) inFlight.set(m.ReceiptHandle!, m);
    return { Messages: taken };
  });
  sqs.on(DeleteMessageBatchCommand).callsFake((input: DeleteMessageBatchCommandInput) => {
    for (const entry of input.Entries ?? []) {
      const m = inFlight.get(entry.ReceiptHandle!);
      if (m) {
        inFlight.delete(entry.ReceiptHandle!);
        deleted.push(m.MessageId!);
      }
    }
    return { Successful: (input.Entries ?? []).map((e) => ({ Id: e.Id! })), Failed: [] };
  });
  return { visible, inFlight, deleted };
}

/**
 * A dispatch stand-in that paces like dispatchBatch does (one start per slot interval, on the
 * fake clock) and records what it was given. `failIds` are reported as batch item failures.
 */
function pacedDispatch(clock: FakeClock, failIds: Set<string> = new Set(), interval = I) {
  const batches: SQSEvent[] = [];
  const startTimes: number[] = [];
  let nextSlot = 0;
  const dispatch = jest.fn(async (event: SQSEvent): Promise<SQSBatchResponse> => {
    batches.push(event);
    for (const _ of event.Records) {
      const slot = Math.max(clock.now(), nextSlot);
      await clock.sleep(slot - clock.now());
      startTimes.push(clock.now());
      nextSlot = slot + interval;
    }
    return { batchItemFailures: event.Records.filter((r) => failIds.has(r.messageId)).map((r) => ({ itemIdentifier: r.messageId })) };
  });
  return { dispatch, batches, startTimes };
}

function logger() {
  return { info: jest.fn(), warn: jest.fn(), error: jest.fn() };
}

/** A lease that is free (or held by another tick when `free` is false); records what was asked. */
function fakeLease(free = true) {
  const acquired: number[] = [];
  let released = 0;
  const lease: DrainLease = {
    acquire: async (untilMs) => {
      acquired.push(untilMs);
      return free;
    },
    release: async () => {
      released++;
    },
  };
  return { lease, acquired, released: () => released };
}

function deps(clock: FakeClock, dispatch: DrainDeps['dispatch'], remainingMs = 55_000, config: DrainConfig = CONFIG, lease: DrainLease = fakeLease().lease): DrainDeps {
  const end = clock.now() + remainingMs;
  return { sqs: sqs as unknown as SQSClient, config, dispatch, remainingTimeMs: () => end - clock.now(), logger: logger(), clock, lease };
}

beforeEach(() => {
  sqs.reset();
});

describe('isScheduledTick', () => {
  test('recognizes the schedule input, not an SQS event', () => {
    expect(isScheduledTick(TICK)).toBe(true);
    expect(isScheduledTick({ Records: [] })).toBe(false);
    expect(isScheduledTick(null)).toBe(false);
    expect(isScheduledTick({ kind: 'other' })).toBe(false);
  });
});

describe('slotsBefore', () => {
  test('counts the slots that fit when the next free slot may be one interval ahead', () => {
    expect(slotsBefore(0, 50_000, 10_000)).toBe(5); // slots at <= 10, 20, 30, 40, 50 s
    expect(slotsBefore(0, 9_999, 10_000)).toBe(0);
    expect(slotsBefore(0, 10_000, 10_000)).toBe(1);
  });
});

describe('loadDrainConfig', () => {
  test('is undefined without the schedule environment (event source mode)', () => {
    expect(loadDrainConfig({ REQUESTS_PER_SECOND: '0.1' })).toBeUndefined();
  });

  test('reads queue, budget and the pacer interval', () => {
    const config = loadDrainConfig({
      REQUEST_QUEUE_URL: QUEUE_URL,
      REQUEST_QUEUE_ARN: QUEUE_ARN,
      MAX_MESSAGES_PER_TICK: '6',
      REQUESTS_PER_SECOND: '0.1',
      LATENESS_TOLERANCE_MS: '50',
    });
    expect(config).toEqual({ queueUrl: QUEUE_URL, queueArn: QUEUE_ARN, maxMessagesPerTick: 6, slotIntervalMs: I });
  });

  test('fails loudly on a bad budget or a missing queue ARN', () => {
    expect(() => loadDrainConfig({ REQUEST_QUEUE_URL: QUEUE_URL, REQUEST_QUEUE_ARN: QUEUE_ARN, MAX_MESSAGES_PER_TICK: '0', REQUESTS_PER_SECOND: '1' }))
      .toThrow(/MAX_MESSAGES_PER_TICK must be a whole number >= 1, got "0"/);
    expect(() => loadDrainConfig({ REQUEST_QUEUE_URL: QUEUE_URL, MAX_MESSAGES_PER_TICK: '1', REQUESTS_PER_SECOND: '1' }))
      .toThrow(/REQUEST_QUEUE_ARN is required/);
  });
});

describe('drainQueue', () => {
  test('takes at most floor(R x period) messages per tick, paced, and deletes them', async () => {
    const clock = fakeClock();
    const queue = fakeQueue(20);
    const { dispatch, startTimes, batches } = pacedDispatch(clock);
    // A long function timeout: the budget, not time, is what stops the tick.
    const result = await drainQueue(TICK, deps(clock, dispatch, 120_000));
    expect(result).toMatchObject({ received: 6, deleted: 6, failed: 0, stoppedBecause: 'budget' });
    expect(queue.deleted).toEqual(['m-1', 'm-2', 'm-3', 'm-4', 'm-5', 'm-6']);
    expect(queue.visible).toHaveLength(14);
    expect(batches.flatMap((b) => b.Records.map((r) => r.messageId))).toHaveLength(6);
    // Paced starts: never two closer than the slot interval.
    for (let k = 1; k < startTimes.length; k++) {
      expect(startTimes[k] - startTimes[k - 1]).toBeGreaterThanOrEqual(I);
    }
  });

  test('receives only what has a slot before the deadline (function timeout minus the margin)', async () => {
    const clock = fakeClock();
    const queue = fakeQueue(20);
    const { dispatch, startTimes } = pacedDispatch(clock);
    // 55 s left, 5 s margin: deadline at +50 s; slots every 10.5 s -> at most 4 conservatively.
    const result = await drainQueue(TICK, deps(clock, dispatch, 55_000));
    expect(result.stoppedBecause).toBe('time');
    expect(result.received).toBeLessThanOrEqual(6);
    expect(result.received).toBeGreaterThanOrEqual(4);
    expect(Math.max(...startTimes)).toBeLessThanOrEqual(T0 + 50_000);
    expect(queue.inFlight.size).toBe(0); // everything received was dispatched and deleted
    const receives = sqs.commandCalls(ReceiveMessageCommand).map((c) => c.args[0].input);
    for (const input of receives) {
      expect(input.MaxNumberOfMessages).toBeLessThanOrEqual(10);
      expect(input.WaitTimeSeconds).toBeLessThanOrEqual(1);
      expect(input.QueueUrl).toBe(QUEUE_URL);
    }
  });

  test('stops on an empty queue without dispatching', async () => {
    const clock = fakeClock();
    fakeQueue(0);
    const { dispatch } = pacedDispatch(clock);
    const result = await drainQueue(TICK, deps(clock, dispatch));
    expect(result).toEqual({ received: 0, deleted: 0, failed: 0, deleteFailed: 0, rounds: 0, stoppedBecause: 'empty' });
    expect(dispatch).not.toHaveBeenCalled();
    expect(sqs).not.toHaveReceivedCommand(DeleteMessageBatchCommand);
  });

  test('drains in rounds of at most 10 until the queue is empty', async () => {
    const clock = fakeClock();
    const queue = fakeQueue(23);
    const fast = { ...CONFIG, maxMessagesPerTick: 300, slotIntervalMs: slotIntervalMs(5, 50) };
    const { dispatch, batches } = pacedDispatch(clock, new Set(), fast.slotIntervalMs);
    const result = await drainQueue(TICK, deps(clock, dispatch, 55_000, fast));
    expect(result).toMatchObject({ received: 23, deleted: 23, rounds: 3, stoppedBecause: 'empty' });
    expect(batches.map((b) => b.Records.length)).toEqual([10, 10, 3]);
    expect(queue.deleted).toHaveLength(23);
  });

  test('leaves batch item failures on the queue and deletes the rest', async () => {
    const clock = fakeClock();
    const queue = fakeQueue(3);
    const { dispatch } = pacedDispatch(clock, new Set(['m-2']));
    const result = await drainQueue(TICK, deps(clock, dispatch, 120_000));
    expect(result).toMatchObject({ received: 3, deleted: 2, failed: 1, stoppedBecause: 'empty' });
    expect(queue.deleted).toEqual(['m-1', 'm-3']);
    expect([...queue.inFlight.values()].map((m) => m.MessageId)).toEqual(['m-2']);
    const entries = sqs.commandCalls(DeleteMessageBatchCommand).flatMap((c) => c.args[0].input.Entries ?? []);
    expect(entries.map((e) => e.ReceiptHandle)).toEqual(['rh-1', 'rh-3']);
  });

  test('hands dispatch real SQS records of the request queue (its ARN lets dispatch postpone)', async () => {
    const clock = fakeClock();
    fakeQueue(1);
    const { dispatch, batches } = pacedDispatch(clock);
    await drainQueue(TICK, deps(clock, dispatch));
    expect(batches[0].Records[0]).toMatchObject({
      messageId: 'm-1',
      receiptHandle: 'rh-1',
      body: JSON.stringify({ requestId: 'r-1' }),
      eventSource: 'aws:sqs',
      eventSourceARN: QUEUE_ARN,
      awsRegion: 'eu-west-1',
      attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(T0) },
      messageAttributes: { trace: { stringValue: 'abc', dataType: 'String', stringListValues: [], binaryListValues: [] } },
    });
  });

  test('crash safety: when dispatch throws (the invocation dies), nothing of the round is deleted', async () => {
    const clock = fakeClock();
    const queue = fakeQueue(3);
    const dispatch = jest.fn(async () => {
      throw new Error('Sandbox.Timedout');
    });
    await expect(drainQueue(TICK, deps(clock, dispatch))).rejects.toThrow(/Sandbox.Timedout/);
    expect(sqs).not.toHaveReceivedCommand(DeleteMessageBatchCommand);
    // Still on the queue (in flight): they reappear after the visibility timeout and are
    // dispatched again; ClaimRequest makes a second start of a started request harmless.
    expect(queue.inFlight.size).toBe(3);
  });

  test('crash safety: a failed delete is counted and logged, never retried as a second dispatch in the tick', async () => {
    const clock = fakeClock();
    fakeQueue(2);
    sqs.on(DeleteMessageBatchCommand).rejects(new Error('network down'));
    const { dispatch } = pacedDispatch(clock);
    const d = deps(clock, dispatch, 120_000);
    const result = await drainQueue(TICK, d);
    expect(result).toMatchObject({ received: 2, deleted: 0, deleteFailed: 2, stoppedBecause: 'empty' });
    expect(dispatch).toHaveBeenCalledTimes(1);
    expect(d.logger.warn).toHaveBeenCalledWith(expect.stringMatching(/could not delete/), expect.objectContaining({ messageIds: ['m-1', 'm-2'] }));
  });

  test('partial delete failures are counted', async () => {
    const clock = fakeClock();
    fakeQueue(2);
    sqs.on(DeleteMessageBatchCommand).resolves({ Successful: [{ Id: '0' }], Failed: [{ Id: '1', Code: 'ReceiptHandleIsInvalid', SenderFault: true }] });
    const { dispatch } = pacedDispatch(clock);
    const result = await drainQueue(TICK, deps(clock, dispatch, 120_000));
    expect(result).toMatchObject({ deleted: 1, deleteFailed: 1 });
  });

  test('a tick with no time left receives nothing', async () => {
    const clock = fakeClock();
    fakeQueue(5);
    const { dispatch } = pacedDispatch(clock);
    // 4 s left, 5 s margin: the deadline has passed.
    const result = await drainQueue(TICK, deps(clock, dispatch, 4_000));
    expect(result.stoppedBecause).toBe('time');
    expect(sqs).not.toHaveReceivedCommand(ReceiveMessageCommand);
  });

  test('a contract slower than the tick still drains one message per tick (first round needs no headroom)', async () => {
    const clock = fakeClock();
    const queue = fakeQueue(3);
    // 0.02 rps: I = 52.5 s, longer than the 50 s a 1-minute tick can use; the budget is floor(1.2) = 1.
    const slow = { ...CONFIG, maxMessagesPerTick: 1, slotIntervalMs: slotIntervalMs(0.02, 50), maxPacingWaitMs: 40_000 };
    const { dispatch } = pacedDispatch(clock, new Set(), slow.slotIntervalMs);
    const result = await drainQueue(TICK, deps(clock, dispatch, 55_000, slow));
    expect(result).toMatchObject({ received: 1, deleted: 1, stoppedBecause: 'budget' });
    expect(queue.visible).toHaveLength(2);
  });

  test("a round takes no more than fit in dispatch's own pacing window (MAX_PACING_WAIT_MS)", async () => {
    const clock = fakeClock();
    fakeQueue(20);
    const { dispatch, batches } = pacedDispatch(clock);
    // 0.1 rps, window 40 s: slots at 0, 10.5, 21, 31.5 s -> 4 in the first round, then 1 more before 50 s.
    const result = await drainQueue(TICK, deps(clock, dispatch, 55_000, { ...CONFIG, maxPacingWaitMs: 40_000 }));
    expect(batches.map((b) => b.Records.length)).toEqual([4, 1]);
    expect(result).toMatchObject({ received: 5, deleted: 5, stoppedBecause: 'time' });
  });

  test('never dispatches more than asked for, even if SQS returns more', async () => {
    const clock = fakeClock();
    sqs.on(ReceiveMessageCommand).resolves({
      Messages: Array.from({ length: 10 }, (_, i) => ({ MessageId: `x-${i}`, ReceiptHandle: `h-${i}`, Body: '{}' })),
    });
    sqs.on(DeleteMessageBatchCommand).resolves({ Failed: [] });
    const { dispatch, batches } = pacedDispatch(clock);
    const result = await drainQueue(TICK, deps(clock, dispatch, 120_000, { ...CONFIG, maxMessagesPerTick: 2 }));
    expect(result.received).toBe(2);
    expect(batches.flatMap((b) => b.Records)).toHaveLength(2);
  });
});

describe('drain lease (ticks one at a time without reserved concurrency)', () => {
  beforeEach(() => {
    sqs.reset();
    ddb.reset();
  });

  test('a tick that finds another tick draining does nothing: no receive, no dispatch, no release', async () => {
    // Regression (issue 11, finding 2): with the reservation gone, overlapping ticks both drained.
    const clock = fakeClock();
    fakeQueue(6);
    const { dispatch } = pacedDispatch(clock);
    const held = fakeLease(false);

    const result = await drainQueue(TICK, deps(clock, dispatch, 55_000, CONFIG, held.lease));

    expect(result).toEqual({ received: 0, deleted: 0, failed: 0, deleteFailed: 0, rounds: 0, stoppedBecause: 'leaseHeld' });
    expect(sqs).not.toHaveReceivedCommand(ReceiveMessageCommand);
    expect(dispatch).not.toHaveBeenCalled();
    expect(held.released()).toBe(0);
  });

  test('the lease is asked for until the invocation times out, and released when the tick ends, also when it dies', async () => {
    const clock = fakeClock();
    fakeQueue(2);
    const free = fakeLease();
    const result = await drainQueue(TICK, deps(clock, pacedDispatch(clock).dispatch, 55_000, CONFIG, free.lease));
    expect(result.received).toBe(2);
    expect(free.acquired).toEqual([T0 + 55_000]);
    expect(free.released()).toBe(1);

    const crashing = fakeLease();
    fakeQueue(2);
    const dispatch = jest.fn(async () => {
      throw new Error('Sandbox.Timedout');
    });
    await expect(drainQueue(TICK, deps(clock, dispatch, 55_000, CONFIG, crashing.lease))).rejects.toThrow(/Sandbox.Timedout/);
    expect(crashing.released()).toBe(1);
  });

  /** DynamoDB's conditional UpdateItem on one item, for the expressions the lease writes. */
  function inMemoryLeaseItem() {
    let item: { until?: number; holder?: string } = {};
    ddb.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      expect(input.Key).toEqual({ pk: { S: DRAIN_LEASE_KEY } });
      const values = input.ExpressionAttributeValues!;
      const holds = input.ConditionExpression === 'attribute_not_exists(#until) OR #until < :now'
        ? item.until === undefined || item.until < Number(values[':now'].N)
        : input.ConditionExpression === '#holder = :holder' && item.holder === values[':holder'].S;
      if (!holds) {
        throw new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} });
      }
      item = input.UpdateExpression === 'SET #until = :zero'
        ? { ...item, until: 0 }
        : { until: Number(values[':until'].N), holder: values[':holder'].S };
      return {};
    });
    return { item: () => item };
  }

  test('in the pacer table: one holder at a time; a lease that ran out (crashed tick) can be taken; only the holder releases', async () => {
    const clock = fakeClock();
    const stored = inMemoryLeaseItem();
    const client = new DynamoDBClient({});
    const a = dynamoDbDrainLease(client, 'pacer', 'tick-a', clock);
    const b = dynamoDbDrainLease(client, 'pacer', 'tick-b', clock);

    expect(await a.acquire(T0 + 55_000)).toBe(true);
    expect(await b.acquire(T0 + 60_000)).toBe(false);
    // tick-a dies without releasing; its lease ends with its timeout.
    clock.t = T0 + 55_001;
    expect(await b.acquire(clock.t + 55_000)).toBe(true);
    // tick-a's late release changes nothing: tick-b holds it.
    await a.release();
    expect(stored.item()).toEqual({ until: T0 + 55_001 + 55_000, holder: 'tick-b' });
    await b.release();
    expect(await a.acquire(clock.t + 55_000)).toBe(true);
  });
});

test('toSqsRecord fills the attributes Lambda always sets', () => {
  const r = toSqsRecord({ MessageId: 'a', ReceiptHandle: 'b', Body: 'c' }, QUEUE_ARN, 42);
  expect(r.attributes).toMatchObject({ ApproximateReceiveCount: '1', SentTimestamp: '42', ApproximateFirstReceiveTimestamp: '42' });
});
