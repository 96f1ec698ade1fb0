import { ConditionalCheckFailedException, DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { AdaptiveSpec } from '../../src/contract/adaptive-spec';
import { decreaseAdaptiveRate } from '../../src/rate-controlled-queue-consumer/adaptive-rate';
import { Clock, reserveSlots, slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';

const ddb = mockClient(DynamoDBClient);
const T0 = 1_700_000_000_000;
const L = 49;
const SPEC: AdaptiveSpec = { decreaseFactor: 0.5, probeIntervalMs: 10_000, increaseStep: 1, minimumRequestsPerSecond: 1, cooldownMs: 2000 };

const fixedClock = (now: number): Clock => ({ now: () => now, sleep: async () => undefined });

describe('decreaseAdaptiveRate (the 429 handler\'s conditional write)', () => {
  beforeEach(() => ddb.reset());

  test('GIVEN no adaptive state WHEN a 429 comes THEN it writes factor x the rate in force, on the condition that no state exists', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'pacer' }, nextSlotAtMs: { N: String(T0) } } });
    ddb.on(UpdateItemCommand).resolves({});

    const outcome = await decreaseAdaptiveRate(new DynamoDBClient({}), 'pacer-table', T0, 10, SPEC);

    expect(outcome).toEqual({ decreased: true, rps: 5 });
    expect(ddb).toHaveReceivedCommandWith(GetItemCommand, { ConsistentRead: true });
    const input = ddb.commandCalls(UpdateItemCommand)[0].args[0].input;
    expect(input.ConditionExpression).toBe('attribute_not_exists(#since)');
    // A decrease clears any probe under way: it was planned at the refused rate.
    expect(input.UpdateExpression).toBe('SET #rps = :rps, #since = :since REMOVE #probe, #probeSlots, #probeFrom, #probeTo');
    expect(input.ExpressionAttributeValues).toEqual({ ':rps': { N: '5' }, ':since': { N: String(T0) } });
  });

  test('GIVEN a state older than the cooldown WHEN a 429 comes THEN it decreases from the climbed rate, on the condition that the stored time is the one read', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { adaptiveRps: { N: '4' }, adaptiveSinceMs: { N: String(T0 - 20_000) } } });
    ddb.on(UpdateItemCommand).resolves({});

    const outcome = await decreaseAdaptiveRate(new DynamoDBClient({}), 'pacer-table', T0, 10, SPEC);

    // 4 + 1 step (2 probe intervals without a probe: one step after the first) = 5, halved.
    expect(outcome).toEqual({ decreased: true, rps: 2.5 });
    const input = ddb.commandCalls(UpdateItemCommand)[0].args[0].input;
    expect(input.ConditionExpression).toBe('#since = :old');
    expect(input.ExpressionAttributeValues![':old']).toEqual({ N: String(T0 - 20_000) });
  });

  test('GIVEN slots reserved ahead at the old rate WHEN a 429 decreases the rate THEN the pause is extended to the end of the schedule, so none of them fires at the refused rate', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { nextSlotAtMs: { N: String(T0 + 2500) } } });
    ddb.on(UpdateItemCommand).resolves({});

    const outcome = await decreaseAdaptiveRate(new DynamoDBClient({}), 'pacer-table', T0, 10, SPEC);

    expect(outcome).toEqual({ decreased: true, rps: 5, pausedUntilMs: T0 + 2500 });
    const pause = ddb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input).find((i) => i.UpdateExpression === 'SET #paused = :until')!;
    expect(pause.ExpressionAttributeValues![':until']).toEqual({ N: String(T0 + 2500) });
    expect(pause.ConditionExpression).toBe('attribute_not_exists(#paused) OR #paused < :until');
  });

  test('GIVEN a 429 within the cooldown WHEN it does not decrease THEN it does not extend the pause either', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { nextSlotAtMs: { N: String(T0 + 2500) }, adaptiveRps: { N: '5' }, adaptiveSinceMs: { N: String(T0 - 100) } } });

    await decreaseAdaptiveRate(new DynamoDBClient({}), 'pacer-table', T0, 10, SPEC);

    expect(ddb).toHaveReceivedCommandTimes(UpdateItemCommand, 0);
  });

  test('GIVEN a decrease less than a cooldown ago WHEN another 429 of the burst comes THEN nothing is written', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { adaptiveRps: { N: '5' }, adaptiveSinceMs: { N: String(T0 - 500) } } });

    const outcome = await decreaseAdaptiveRate(new DynamoDBClient({}), 'pacer-table', T0, 10, SPEC);

    expect(outcome).toEqual({ decreased: false });
    expect(ddb).toHaveReceivedCommandTimes(UpdateItemCommand, 0);
  });

  test('GIVEN two concurrent 429s that read the same state WHEN both write THEN the second fails its condition and does not decrease again', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { adaptiveRps: { N: '8' }, adaptiveSinceMs: { N: String(T0 - 60_000) } } });
    ddb.on(UpdateItemCommand)
      .resolvesOnce({})
      .rejects(new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} }));

    const [a, b] = await Promise.all([
      decreaseAdaptiveRate(new DynamoDBClient({}), 'pacer-table', T0, 10, SPEC),
      decreaseAdaptiveRate(new DynamoDBClient({}), 'pacer-table', T0 + 3, 10, SPEC),
    ]);

    expect([a.decreased, b.decreased].sort()).toEqual([false, true]);
  });

  test('GIVEN another DynamoDB error WHEN writing THEN it is thrown (the caller logs it; the 429 still backs off)', async () => {
    ddb.on(GetItemCommand).resolves({});
    ddb.on(UpdateItemCommand).rejects(Object.assign(new Error('throttled'), { name: 'ProvisionedThroughputExceededException' }));

    await expect(decreaseAdaptiveRate(new DynamoDBClient({}), 'pacer-table', T0, 10, SPEC)).rejects.toThrow('throttled');
  });
});

describe('reserveSlots with adaptive pacing (the dispatcher and the caller read the effective rate)', () => {
  beforeEach(() => ddb.reset());

  const reserve = (now: number, rateInForce?: number) => reserveSlots({
    dynamodb: new DynamoDBClient({}),
    tableName: 'pacer-table',
    requested: 3,
    requestsPerSecond: 10,
    latenessToleranceMs: L,
    maxWaitMs: 60_000,
    clock: fixedClock(now),
    adaptivePacing: SPEC,
    rateInForce,
  });

  test('GIVEN an adaptive rate of 5 WHEN reserving THEN the slots are spaced at 5 requests per second, and the effective rate is returned', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { adaptiveRps: { N: '5' }, adaptiveSinceMs: { N: String(T0 - 1000) } } });
    ddb.on(UpdateItemCommand).resolves({});

    const reservation = await reserve(T0);

    expect(reservation.effectiveRequestsPerSecond).toBe(5);
    expect(reservation.slots[1] - reservation.slots[0]).toBe(slotIntervalMs(5, L));
    const get = ddb.commandCalls(GetItemCommand)[0].args[0].input;
    expect(get.ProjectionExpression).toContain('adaptiveRps, adaptiveSinceMs');
    expect(ddb.commandCalls(UpdateItemCommand)[0].args[0].input.ExpressionAttributeValues![':interval']).toEqual({ N: String(slotIntervalMs(5, L)) });
  });

  test('GIVEN an adaptive rate climbed past the rate in force WHEN reserving THEN the rate in force paces (never above it)', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { adaptiveRps: { N: '5' }, adaptiveSinceMs: { N: String(T0 - 600_000) } } });
    ddb.on(UpdateItemCommand).resolves({});

    const reservation = await reserve(T0, 8);

    expect(reservation.effectiveRequestsPerSecond).toBe(8);
    expect(reservation.slots[1] - reservation.slots[0]).toBe(slotIntervalMs(8, L));
  });

  test('GIVEN no adaptive state WHEN reserving THEN the contract paces', async () => {
    ddb.on(GetItemCommand).resolves({});
    ddb.on(UpdateItemCommand).resolves({});

    const reservation = await reserve(T0);

    expect(reservation.effectiveRequestsPerSecond).toBe(10);
    expect(reservation.slots[1] - reservation.slots[0]).toBe(slotIntervalMs(10, L));
  });

  test('GIVEN a schedule last spaced at the contract WHEN the adaptive rate has dropped THEN the first new slot is the new interval after the last old one', async () => {
    const last = T0 + 5000;
    ddb.on(GetItemCommand).resolves({
      Item: {
        nextSlotAtMs: { N: String(last + slotIntervalMs(10, L)) },
        intervalMs: { N: String(slotIntervalMs(10, L)) },
        adaptiveRps: { N: '5' },
        adaptiveSinceMs: { N: String(T0) },
      },
    });
    ddb.on(UpdateItemCommand).resolves({});

    const reservation = await reserve(T0);

    expect(reservation.slots[0]).toBe(last + slotIntervalMs(5, L));
  });
});
