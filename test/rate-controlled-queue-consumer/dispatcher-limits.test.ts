/**
 * The dispatcher with named limits (issue 14, item 3): every start respects the contract and the
 * limits of its call, a message whose limit is full waits for it (in the invocation, or as a
 * delayed copy) without taking a contract slot, and other messages fill the contract meanwhile.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient, StartExecutionCommand, StartExecutionCommandInput } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { inMemoryPacerItem } from './pacer-item-fake';
import { requestRecord } from './sqs-record';
import { dispatchBatch, DispatchConfig, DispatchDeps, loadConfig } from '../../src/rate-controlled-queue-consumer/dispatch';
import { limitNamesOf } from '../../src/rate-controlled-queue-consumer/dispatch-limits';
import { Clock } from '../../src/rate-controlled-queue-consumer/pacer';

const ddb = mockClient(DynamoDBClient);
const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_700_000_000_000;
const LIMITS = [{ name: 'results', requestsPerSecond: 2, pathPrefix: '/results' }];
// L = 49: the contract's slots are 105 ms apart, the results limit's 525 ms.
const CONFIG: DispatchConfig = {
  stateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:dispatch',
  callStateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:vendor-call',
  requestsPerSecond: 10,
  pacerTableName: 'pacer',
  maxPacingWaitMs: 2_000,
  latenessToleranceMs: 49,
  correlationTtlSeconds: 86_400,
  deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/requests-dlq',
  limits: LIMITS,
};

function fakeClock(): Clock & { t: number } {
  const clock = { t: T0, now: () => clock.t, sleep: async (ms: number) => { clock.t += ms; } };
  return clock;
}

function record(body: unknown, messageId: string): SQSRecord {
  return requestRecord(body, messageId, T0);
}

function deps(clock: Clock, config: DispatchConfig = CONFIG): DispatchDeps {
  return {
    clients: { dynamodb: new DynamoDBClient({}), sfn: new SFNClient({}), sqs: new SQSClient({}) },
    config,
    logger: { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() } as any,
    metrics: { addMetric: jest.fn() },
    clock,
    random: () => 0.5,
  };
}

const fetch = (requestId: string) => ({ kind: 'call', taskToken: `token-${requestId}`, requestId, call: { method: 'GET', path: `/results/${requestId}` }, attempt: 1 });
const submission = (requestId: string) => ({ taskToken: `token-${requestId}`, requestId, payload: { n: 1 } });

/** The slot of every started execution, by request id, in start order. */
function startedSlots(): { requestId: string; slotAtMs: number }[] {
  return sfn.commandCalls(StartExecutionCommand).map((call) => {
    const input = JSON.parse((call.args[0].input as StartExecutionCommandInput).input!);
    return { requestId: input.requestId, slotAtMs: input.slotAtMs };
  });
}

beforeEach(() => {
  ddb.reset();
  sfn.reset();
  sqs.reset();
  sfn.on(StartExecutionCommand).callsFake(async (input: StartExecutionCommandInput) => ({ executionArn: `arn:x:${input.name}`, startDate: new Date() }));
  sqs.on(SendMessageCommand).resolves({ MessageId: 'copy' });
});

test('GIVEN VENDOR_LIMITS WHEN the config is loaded THEN the limits are read', () => {
  const config = loadConfig({
    STATE_MACHINE_ARN: 'arn',
    REQUESTS_PER_SECOND: '10',
    PACER_TABLE_NAME: 'pacer',
    MAX_PACING_WAIT_MS: '1000',
    CORRELATION_TTL_SECONDS: '60',
    DEAD_LETTER_QUEUE_URL: 'https://dlq',
    VENDOR_LIMITS: JSON.stringify(LIMITS),
  });
  expect(config.limits).toEqual(LIMITS);
});

test('GIVEN a submission and calls WHEN matched THEN only result fetches are subject to the results limit (a submission is POST /)', () => {
  expect(limitNamesOf(fetch('a') as any, LIMITS)).toEqual(['results']);
  expect(limitNamesOf(submission('b') as any, LIMITS)).toEqual([]);
});

test('GIVEN result fetches and submissions mixed WHEN dispatched THEN submissions fill the contract between fetches, fetches are 525 ms apart, and every message starts', async () => {
  const pacer = inMemoryPacerItem(ddb);
  const clock = fakeClock();
  const records = [fetch('f1'), fetch('f2'), fetch('f3'), submission('s1'), submission('s2'), submission('s3')].map((body, i) => record(body, `m${i}`));

  const result = await dispatchBatch({ Records: records }, deps(clock));

  expect(result.batchItemFailures).toEqual([]);
  const started = startedSlots();
  expect(started.map((s) => s.requestId)).toEqual(['f1', 's1', 's2', 's3', 'f2', 'f3']);
  const at = (id: string) => started.find((s) => s.requestId === id)!.slotAtMs;
  // The contract's slots stay dense: s1..s3 take the 3 slots after f1.
  expect([at('s1'), at('s2'), at('s3')]).toEqual([T0 + 105, T0 + 210, T0 + 315]);
  // f2 waits for its limit (f1 + 525), f3 for f2 + 525: never a contract slot ahead of its limit.
  expect(at('f2')).toBe(T0 + 525);
  expect(at('f3')).toBe(T0 + 1050);
  expect(pacer.item['limitLastSlotAtMs#results']).toBe(String(T0 + 1050));
  expect(sqs).not.toHaveReceivedCommand(SendMessageCommand);
});

test('GIVEN more result fetches than the limit allows before the deadline WHEN dispatched THEN the rest are postponed to when the limit has room, as delayed copies', async () => {
  inMemoryPacerItem(ddb);
  const clock = fakeClock();
  const records = ['f1', 'f2', 'f3', 'f4', 'f5', 'f6'].map((id, i) => record(fetch(id), `m${i}`));

  const result = await dispatchBatch({ Records: records }, deps(clock));

  // 2 s of pacing wait: fetches at T0, +525, +1050, +1575; f5 would be at +2100, after the deadline.
  expect(startedSlots().map((s) => s.slotAtMs)).toEqual([T0, T0 + 525, T0 + 1050, T0 + 1575]);
  expect(result.batchItemFailures).toEqual([]);
  expect(sqs).toHaveReceivedCommandTimes(SendMessageCommand, 2);
  // Delayed to when the limit has room, not counted as a receive.
  expect(sqs.commandCalls(SendMessageCommand).map((c) => JSON.parse(c.args[0].input.MessageBody!).requestId)).toEqual(['f5', 'f6']);
});

test('GIVEN DynamoDB round trips of 15 ms WHEN a message waits for its limit THEN the dispatcher wakes early enough that its slot is the limit\'s next one, not later', async () => {
  const clock = fakeClock();
  inMemoryPacerItem(ddb, () => {
    clock.t += 15;
  });
  const records = ['f1', 'f2', 'f3'].map((id, i) => record(fetch(id), `m${i}`));

  await dispatchBatch({ Records: records }, deps(clock, { ...CONFIG, leadMs: 200 }));

  // Each fetch exactly 525 ms after the previous one: the round trips (30 ms a reservation) cost no slot time.
  const slots = startedSlots().map((s) => s.slotAtMs);
  expect(slots).toHaveLength(3);
  expect([slots[1] - slots[0], slots[2] - slots[1]]).toEqual([525, 525]);
});

test('GIVEN result fetches held back by their limit, some at several reservations WHEN dispatched THEN NamedLimitWaits.results counts each held-back call once; submissions count nothing', async () => {
  inMemoryPacerItem(ddb);
  const clock = fakeClock();
  const d = deps(clock);
  const records = [fetch('f1'), fetch('f2'), fetch('f3'), submission('s1'), submission('s2'), submission('s3')].map((body, i) => record(body, `m${i}`));

  await dispatchBatch({ Records: records }, d);

  // 1: f1, s1..s3 get slots, f2 and f3 wait for results (2). 2: after s3, no room yet for either:
  // the dispatcher sleeps until the limit has room. 3: f2 gets its slot, f3 waits. 4: f3 waits
  // again. 5: f3 gets its slot. Two calls were held back: 2, not 2 + 2 + 1 + 1 (each reservation).
  const waits = (d.metrics.addMetric as jest.Mock).mock.calls.filter(([name]) => String(name).startsWith('NamedLimitWaits'));
  expect(waits.map(([, , n]) => n)).toEqual([2]);
  expect(new Set(waits.map(([name, unit]) => `${name} ${unit}`))).toEqual(new Set(['NamedLimitWaits.results Count']));
});

test('GIVEN no named limit held anything back WHEN dispatched THEN no NamedLimitWaits is published', async () => {
  inMemoryPacerItem(ddb);
  const d = deps(fakeClock());
  await dispatchBatch({ Records: [record(fetch('f1'), 'm1'), record(submission('s1'), 'm2')] }, d);
  expect((d.metrics.addMetric as jest.Mock).mock.calls.filter(([name]) => String(name).startsWith('NamedLimitWaits'))).toEqual([]);
});

test('GIVEN no named limit WHEN dispatched THEN the pacer reads no limit attribute (the plain reservation)', async () => {
  const pacer = inMemoryPacerItem(ddb);
  const clock = fakeClock();
  const { limits, ...plain } = CONFIG;
  expect(limits).toBeDefined();
  await dispatchBatch({ Records: [record(fetch('f1'), 'm1'), record(fetch('f2'), 'm2')] }, deps(clock, plain));
  expect(startedSlots().map((s) => s.slotAtMs)).toEqual([T0, T0 + 105]);
  expect(Object.keys(pacer.item).sort()).toEqual(['intervalMs', 'nextSlotAtMs']);
});

test.each([1, 2, 3])('GIVEN concurrent dispatchers with random mixes of calls (seed %i) WHEN they dispatch THEN the contract and every limit keep their spacing, and every message is started or postponed', async (seed) => {
  inMemoryPacerItem(ddb);
  const clock = fakeClock();
  let state = seed;
  const random = () => {
    state = (state * 48271) % 2147483647;
    return state / 2147483647;
  };
  const limits = [...LIMITS, { name: 'reads', requestsPerSecond: 4, methods: ['GET'] }];
  const status = (requestId: string) => ({ kind: 'call', taskToken: `token-${requestId}`, requestId, call: { method: 'GET', path: `/status/${requestId}` }, attempt: 1 });
  const kinds = [fetch, submission, status];
  let n = 0;
  let total = 0;
  for (let round = 0; round < 6; round++) {
    const batches = Array.from({ length: 3 }, () => Array.from({ length: 1 + Math.floor(random() * 8) }, () => {
      const id = `r${n++}`;
      return record(kinds[Math.floor(random() * kinds.length)](id), `m-${id}`);
    }));
    total += batches.flat().length;
    const config = { ...CONFIG, limits, maxPacingWaitMs: 1500 };
    const results = await Promise.all(batches.map((Records) => dispatchBatch({ Records }, deps(clock, config))));
    expect(results.flatMap((r) => r.batchItemFailures)).toEqual([]);
  }
  const started = startedSlots();
  const postponed = sqs.commandCalls(SendMessageCommand).map((c) => JSON.parse(c.args[0].input.MessageBody!).requestId);
  // Nothing lost, nothing started twice.
  expect(new Set(started.map((s) => s.requestId)).size).toBe(started.length);
  expect(started.length + postponed.length).toBe(total);
  const spacing = (ids: (id: string) => boolean, interval: number) => {
    const slots = started.filter((s) => ids(s.requestId)).map((s) => s.slotAtMs).sort((a, b) => a - b);
    for (let i = 1; i < slots.length; i++) {
      expect(slots[i] - slots[i - 1]).toBeGreaterThanOrEqual(interval);
    }
    return slots.length;
  };
  const kindOf = new Map(sfn.commandCalls(StartExecutionCommand).map((c) => {
    const input = JSON.parse((c.args[0].input as StartExecutionCommandInput).input!);
    return [input.requestId, input.call?.path ?? '/'];
  }));
  expect(spacing(() => true, 105)).toBeGreaterThan(10);
  // results: GET /results/... at 2 RPS (525 ms); reads: every GET at 4 RPS (262.5 ms).
  expect(spacing((id) => String(kindOf.get(id)).startsWith('/results/'), 525)).toBeGreaterThan(2);
  expect(spacing((id) => kindOf.get(id) !== '/', 262.5)).toBeGreaterThan(4);
});
