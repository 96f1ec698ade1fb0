/**
 * The dispatcher with a high-priority request queue (issue 15, high-priority-queue.ts): a batch from
 * the request queue reserves its slots in rounds, each at most `lead + horizon` ahead, so a high
 * batch finds a slot soon; a batch from the high queue, or any batch without a high queue, reserves
 * up to its deadline at once, as before.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { answerDispatchByDefault, TEST_DISPATCH_CONFIG, testDispatchDeps } from './dispatch-fixtures';
import { inMemoryPacerTable, PacerTableFake } from './pacer-table-fake';
import { requestRecord } from './sqs-record';
import { dispatchBatch, DispatchConfig, loadConfig } from '../../src/rate-controlled-queue-consumer/dispatch';
import {
  DEFAULT_NORMAL_RESERVATION_HORIZON_MS, highPriorityQueueFromEnv, horizonRetryInMs, reservationHorizonMs, reservationMaxWaitMs,
} from '../../src/rate-controlled-queue-consumer/high-priority-queue';
import { NEXT_SLOT_ATTRIBUTE, PACER_ITEM_KEY } from '../../src/rate-controlled-queue-consumer/pacer';
import { ConsumerEnv } from '../../src/shared/env';

const ddb = mockClient(DynamoDBClient);
const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_800_000_002_000;
const HIGH_QUEUE_ARN = 'arn:aws:sqs:eu-west-1:123456789012:requests-high';
const HORIZON_MS = 500;
const LEAD_MS = TEST_DISPATCH_CONFIG.leadMs!;
const WITH_HIGH_QUEUE: DispatchConfig = {
  ...TEST_DISPATCH_CONFIG,
  maxPacingWaitMs: 5_000,
  highPriorityQueue: { queueArn: HIGH_QUEUE_ARN, normalHorizonMs: HORIZON_MS },
};

/** `n` submissions from the request queue (or the queue `queueArn`). */
function batch(n: number, queueArn?: string): SQSRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const record = requestRecord({ taskToken: `token-${i}`, requestId: `r${i}`, payload: {} }, `m${i}`, T0);
    return queueArn ? { ...record, eventSourceARN: queueArn } : record;
  });
}

/** The deps on a virtual clock (moved on by every sleep), the pacer table in memory. */
function setUp(config: DispatchConfig) {
  return { deps: testDispatchDeps(config, T0), table: inMemoryPacerTable(ddb) as PacerTableFake };
}

function startedSlots(): number[] {
  return sfn.commandCalls(StartExecutionCommand).map((c) => JSON.parse(c.args[0].input.input!).slotAtMs);
}

beforeEach(() => answerDispatchByDefault(ddb, sfn, sqs));

describe('dispatchBatch with a high-priority queue', () => {
  test('GIVEN a high-priority queue WHEN a batch of 30 from the request queue is dispatched THEN it reserves in rounds, none past now + lead + horizon, and all 30 start in order', async () => {
    const { deps, table } = setUp(WITH_HIGH_QUEUE);
    const reservationTimes: number[] = [];
    table.beforeWrite = (pk) => {
      if (pk === PACER_ITEM_KEY) reservationTimes.push(deps.clock!.now());
    };

    const response = await dispatchBatch({ Records: batch(30) }, deps);

    expect(response).toEqual({ batchItemFailures: [] });
    const slots = startedSlots();
    expect(slots).toHaveLength(30);
    expect(slots).toEqual([...slots].sort((a, b) => a - b));
    // Several reservations (rounds), each holding the schedule at most lead + horizon ahead of its time.
    expect(reservationTimes.length).toBeGreaterThan(3);
    for (const slot of slots) {
      const madeAt = Math.max(...reservationTimes.filter((t) => t <= slot));
      expect(slot - madeAt).toBeLessThanOrEqual(LEAD_MS + HORIZON_MS);
    }
    expect(sqs.commandCalls(SendMessageCommand)).toHaveLength(0);
  });

  test('GIVEN a high-priority queue WHEN a batch of 30 from the high queue is dispatched THEN it reserves up to its deadline at once (one reservation)', async () => {
    const { deps, table } = setUp(WITH_HIGH_QUEUE);

    await dispatchBatch({ Records: batch(30, HIGH_QUEUE_ARN) }, deps);

    expect(startedSlots()).toHaveLength(30);
    expect(table.writes.filter((w) => w.pk === PACER_ITEM_KEY)).toHaveLength(1);
  });

  test('GIVEN no high-priority queue WHEN a batch of 30 is dispatched THEN one reservation up to the deadline, as before', async () => {
    const { deps, table } = setUp({ ...WITH_HIGH_QUEUE, highPriorityQueue: undefined });

    await dispatchBatch({ Records: batch(30) }, deps);

    expect(startedSlots()).toHaveLength(30);
    expect(table.writes.filter((w) => w.pk === PACER_ITEM_KEY)).toHaveLength(1);
  });

  test('GIVEN the schedule taken 2 s ahead WHEN a request-queue batch is dispatched THEN it waits until the free slot enters its horizon, then takes it', async () => {
    const { deps, table } = setUp(WITH_HIGH_QUEUE);
    const takenUntil = T0 + 2_000;
    table.items.set(PACER_ITEM_KEY, { [NEXT_SLOT_ATTRIBUTE]: String(takenUntil) });
    const reservationTimes: number[] = [];
    table.beforeWrite = (pk) => {
      if (pk === PACER_ITEM_KEY) reservationTimes.push(deps.clock!.now());
    };

    const response = await dispatchBatch({ Records: batch(2) }, deps);

    expect(response).toEqual({ batchItemFailures: [] });
    const slots = startedSlots();
    expect(slots).toHaveLength(2);
    expect(slots[0]).toBeGreaterThanOrEqual(takenUntil);
    // The first reservation was made only once that slot was within lead + horizon.
    expect(reservationTimes[0]).toBeGreaterThanOrEqual(takenUntil - LEAD_MS - HORIZON_MS);
  });

  test('GIVEN the schedule taken past the batch\'s deadline WHEN a request-queue batch is dispatched THEN nothing starts and it comes back as delayed copies, as without a high queue', async () => {
    const { deps, table } = setUp(WITH_HIGH_QUEUE);
    table.items.set(PACER_ITEM_KEY, { [NEXT_SLOT_ATTRIBUTE]: String(T0 + 60_000) });

    const response = await dispatchBatch({ Records: batch(2) }, deps);

    expect(response).toEqual({ batchItemFailures: [] });
    expect(startedSlots()).toHaveLength(0);
    const copies = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
    expect(copies).toHaveLength(2);
    expect(copies.every((c) => c.DelaySeconds! > 0 && c.QueueUrl!.endsWith('/requests'))).toBe(true);
  });
});

describe('high-priority-queue settings', () => {
  test('GIVEN HIGH_PRIORITY_QUEUE_ARN WHEN the configuration is read THEN the queue with the default horizon; a given horizon is used; none without the ARN', () => {
    const env = {
      [ConsumerEnv.STATE_MACHINE_ARN]: 'arn:sm',
      [ConsumerEnv.REQUESTS_PER_SECOND]: '10',
      [ConsumerEnv.PACER_TABLE_NAME]: 'pacer',
      [ConsumerEnv.MAX_PACING_WAIT_MS]: '15000',
      [ConsumerEnv.CORRELATION_TTL_SECONDS]: '60',
      DEAD_LETTER_QUEUE_URL: 'https://dlq',
    };
    expect(loadConfig(env).highPriorityQueue).toBeUndefined();
    expect(loadConfig({ ...env, [ConsumerEnv.HIGH_PRIORITY_QUEUE_ARN]: HIGH_QUEUE_ARN }).highPriorityQueue)
      .toEqual({ queueArn: HIGH_QUEUE_ARN, normalHorizonMs: DEFAULT_NORMAL_RESERVATION_HORIZON_MS });
    expect(highPriorityQueueFromEnv({ [ConsumerEnv.HIGH_PRIORITY_QUEUE_ARN]: HIGH_QUEUE_ARN, [ConsumerEnv.NORMAL_RESERVATION_HORIZON_MS]: '250' }))
      .toEqual({ queueArn: HIGH_QUEUE_ARN, normalHorizonMs: 250 });
  });

  test.each(['0', '-5', 'soon'])('GIVEN NORMAL_RESERVATION_HORIZON_MS=%s WHEN read THEN an error naming the variable and the value', (value) => {
    const env = { [ConsumerEnv.HIGH_PRIORITY_QUEUE_ARN]: HIGH_QUEUE_ARN, [ConsumerEnv.NORMAL_RESERVATION_HORIZON_MS]: value };
    expect(() => highPriorityQueueFromEnv(env))
      .toThrow(`NORMAL_RESERVATION_HORIZON_MS must be a number of milliseconds > 0 (given "${value}")`);
  });

  test('the horizon applies to other queues\' batches only; maxWait and the retry follow it', () => {
    const config = { queueArn: HIGH_QUEUE_ARN, normalHorizonMs: 500 };
    expect(reservationHorizonMs([{ eventSourceARN: 'arn:other' }], config)).toBe(500);
    expect(reservationHorizonMs([{ eventSourceARN: HIGH_QUEUE_ARN }], config)).toBeUndefined();
    expect(reservationHorizonMs([{ eventSourceARN: 'arn:other' }], undefined)).toBeUndefined();
    expect(reservationHorizonMs([], config)).toBeUndefined();
    expect(reservationMaxWaitMs(0, 10_000, 1000, 500)).toBe(1500);
    expect(reservationMaxWaitMs(0, 1_200, 1000, 500)).toBe(1200);
    expect(reservationMaxWaitMs(0, 10_000, 1000, undefined)).toBe(10_000);
    expect(horizonRetryInMs(0, 3_000, 10_000, 1000, 500)).toBe(1500);
    expect(horizonRetryInMs(0, 1_400, 10_000, 1000, 500)).toBe(1);
    expect(horizonRetryInMs(0, 11_000, 10_000, 1000, 500)).toBeUndefined();
    expect(horizonRetryInMs(0, 3_000, 10_000, 1000, undefined)).toBeUndefined();
  });
});
