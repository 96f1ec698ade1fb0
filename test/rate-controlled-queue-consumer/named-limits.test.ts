import { DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { inMemoryPacerItem } from './pacer-item-fake';
import type { NamedLimitSpec } from '../../src/contract/named-limit';
import { assignLimitedSlots, limitIntervalMs } from '../../src/rate-controlled-queue-consumer/named-limit-schedule';
import { Clock, effectiveRate, maxInAnyWindow, reserveSlots, slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';

// (1000 + 49 + 1) / R: 105 ms at 10 RPS, 525 ms at 2 RPS, 262.5 ms at 4 RPS.
const L = 49;
const T0 = 1_700_000_000_000;
const RESULTS: NamedLimitSpec = { name: 'results', requestsPerSecond: 2, pathPrefix: '/results' };
const READS: NamedLimitSpec = { name: 'reads', requestsPerSecond: 4, methods: ['GET'] };
const LIMITS = [RESULTS, READS];

function prng(seed: number): () => number {
  let a = seed >>> 0; // eslint-disable-line no-bitwise
  return () => {
    /* eslint-disable no-bitwise */
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    /* eslint-enable no-bitwise */
  };
}

describe('assignLimitedSlots', () => {
  const candidates = [T0, T0 + 105, T0 + 210, T0 + 315];

  test('GIVEN two limited and two unlimited calls WHEN assigned THEN unlimited calls fill the contract slots a limit cannot use, and it stops before a gap', () => {
    const result = assignLimitedSlots(candidates, { limits: LIMITS, callLimits: [['results'], ['results'], [], []] }, {}, L);

    expect(result.slots).toEqual([T0, T0 + 105, T0 + 210]);
    expect(result.callIndexes).toEqual([0, 2, 3]);
    expect(result.movedLastSlots).toEqual({ results: T0 });
    // The second result fetch waits for its limit, not for the contract.
    expect(result.limitedUntilMs).toBe(T0 + 525);
  });

  test('GIVEN a limit whose last slot is recent WHEN assigned THEN its call waits and no contract slot is taken', () => {
    const result = assignLimitedSlots(candidates, { limits: LIMITS, callLimits: [['results', 'reads']] }, { results: T0 - 100, reads: T0 - 300 }, L);

    expect(result.slots).toEqual([]);
    expect(result.limitedUntilMs).toBe(T0 - 100 + 525);
  });

  test('GIVEN a call subject to two limits WHEN assigned THEN it moves both cursors', () => {
    const result = assignLimitedSlots(candidates, { limits: LIMITS, callLimits: [['reads'], ['results', 'reads'], ['reads']] }, {}, L);

    // reads: 262.5 ms apart -> T0, then T0 + 315 (the first candidate at or after T0 + 262.5).
    expect(result.slots).toEqual([T0]);
    expect(result.limitedUntilMs).toBe(T0 + 262.5);
    expect(result.movedLastSlots).toEqual({ reads: T0 });
  });

  test('GIVEN every call got a slot or the candidates ran out WHEN assigned THEN no limit is blamed', () => {
    expect(assignLimitedSlots(candidates, { limits: LIMITS, callLimits: [[], []] }, {}, L).limitedUntilMs).toBeUndefined();
    expect(assignLimitedSlots([T0], { limits: LIMITS, callLimits: [[], []] }, {}, L).limitedUntilMs).toBeUndefined();
  });

  test('GIVEN calls held back by their limits WHEN assigned THEN limitWaits counts, per limit, the calls it had no room for (the NamedLimitWaits metric)', () => {
    // The second result fetch waits for results (no room until T0 + 525 > T0 + 315).
    expect(assignLimitedSlots(candidates, { limits: LIMITS, callLimits: [['results'], ['results'], [], []] }, {}, L).limitWaits).toEqual({ results: 1 });
    // Two calls wait for reads (room at T0 + 262.5 > T0 + 105); results had room for the one bound by both: not blamed.
    expect(assignLimitedSlots(candidates, { limits: LIMITS, callLimits: [['reads'], ['results', 'reads'], ['reads']] }, {}, L).limitWaits)
      .toEqual({ reads: 2 });
    // A call bound by two limits, only one of them full at the first candidate: only that one is blamed.
    expect(assignLimitedSlots(candidates, { limits: LIMITS, callLimits: [['results', 'reads']] }, { results: T0 - 100, reads: T0 - 300 }, L).limitWaits)
      .toEqual({ results: 1 });
    // Nothing held back by a limit: no waits.
    expect(assignLimitedSlots(candidates, { limits: LIMITS, callLimits: [[], []] }, {}, L).limitWaits).toBeUndefined();
    expect(assignLimitedSlots([T0], { limits: LIMITS, callLimits: [['results'], ['results']] }, {}, L).limitWaits).toBeUndefined();
  });

  test('GIVEN a call naming a limit the contract does not have WHEN assigned THEN it throws naming it', () => {
    expect(() => assignLimitedSlots(candidates, { limits: LIMITS, callLimits: [['status']] }, {}, L))
      .toThrow("a call names the limit 'status', which the contract does not have (limits: results, reads)");
  });
});

// --- The one-write reservation, against an in-memory pacer item with DynamoDB's semantics -------

const ddb = mockClient(DynamoDBClient);
const TABLE = 'pacer-table';

function inMemoryPacer(): ReturnType<typeof inMemoryPacerItem> {
  return inMemoryPacerItem(ddb);
}

function fakeClock(start: number = T0): Clock & { t: number } {
  const clock = { t: start, now: () => clock.t, sleep: async (ms: number) => { clock.t += ms; } };
  return clock;
}

describe('reserveSlots with named limits', () => {
  beforeEach(() => {
    ddb.reset();
  });

  test('GIVEN limited calls WHEN reserving THEN one UpdateItem moves the contract and every limit, conditioned on every cursor read', async () => {
    const pacer = inMemoryPacer();
    pacer.item = { 'nextSlotAtMs': String(T0 + 100), 'intervalMs': '105', 'limitLastSlotAtMs#results': String(T0 - 500) };

    const result = await reserveSlots({
      dynamodb: new DynamoDBClient({}),
      tableName: TABLE,
      requested: 3,
      requestsPerSecond: 10,
      latenessToleranceMs: L,
      maxWaitMs: 5_000,
      clock: fakeClock(),
      limitedCalls: { limits: LIMITS, callLimits: [['results', 'reads'], ['results'], ['reads']] },
    });

    // results' next room is T0 + 25: the first call fits at T0 + 100; the second result fetch waits
    // until T0 + 625; the read's limit (262.5 ms) has room at T0 + 362.5 > T0 + 205: the reservation stops.
    expect(result.slots).toEqual([T0 + 100]);
    expect(result.callIndexes).toEqual([0]);
    expect(result.limitedUntilMs).toBe(T0 + 362.5);
    expect(result.limitWaits).toEqual({ results: 1, reads: 1 });
    expect(result.nextFreeAtMs).toBe(T0 + 205);
    expect(ddb.commandCalls(UpdateItemCommand)).toHaveLength(1);
    const update = ddb.commandCalls(UpdateItemCommand)[0].args[0].input;
    expect(update.UpdateExpression).toBe('SET #next = :new, #interval = :interval, #l0 = :l0, #l1 = :l1');
    expect(update.ConditionExpression).toBe('#next = :old AND #interval = :oldInterval AND #l0 = :lold0 AND attribute_not_exists(#l1)');
    expect(update.ExpressionAttributeNames).toEqual({
      '#next': 'nextSlotAtMs', '#interval': 'intervalMs', '#l0': 'limitLastSlotAtMs#results', '#l1': 'limitLastSlotAtMs#reads',
    });
    expect(pacer.item).toEqual({
      'nextSlotAtMs': String(T0 + 205),
      'intervalMs': '105',
      'limitLastSlotAtMs#results': String(T0 + 100),
      'limitLastSlotAtMs#reads': String(T0 + 100),
    });
  });

  test('GIVEN calls without limits WHEN reserving with limitedCalls THEN the requests are the plain ones (no limit attribute read or written)', async () => {
    const pacer = inMemoryPacer();
    const result = await reserveSlots({
      dynamodb: new DynamoDBClient({}),
      tableName: TABLE,
      requested: 2,
      requestsPerSecond: 10,
      latenessToleranceMs: L,
      maxWaitMs: 5_000,
      clock: fakeClock(),
      limitedCalls: { limits: LIMITS, callLimits: [[], []] },
    });
    expect(result).toEqual({ slots: [T0, T0 + 105], nextFreeAtMs: T0 + 210, callIndexes: [0, 1] });
    expect(ddb.commandCalls(GetItemCommand)[0].args[0].input.ExpressionAttributeNames).toBeUndefined();
    expect(pacer.item).toEqual({ nextSlotAtMs: String(T0 + 210), intervalMs: '105' });
  });

  test('GIVEN a crash right after the one write (fault) WHEN another invocation reserves THEN every limit and the contract moved together: no window over any limit', async () => {
    const pacer = inMemoryPacer();
    const reserve = (callLimits: string[][], clock: Clock) => reserveSlots({
      dynamodb: new DynamoDBClient({}),
      tableName: TABLE,
      requested: callLimits.length,
      requestsPerSecond: 10,
      latenessToleranceMs: L,
      maxWaitMs: 5_000,
      clock,
      limitedCalls: { limits: LIMITS, callLimits },
    });
    const clock = fakeClock();
    pacer.crashAfterWrite = true;
    await expect(reserve([['results', 'reads']], clock)).rejects.toThrow('the invocation died after its write');
    // Both limits and the contract were reserved by the one write, or none would have been.
    expect(pacer.item).toEqual({
      'nextSlotAtMs': String(T0 + 105), 'intervalMs': '105', 'limitLastSlotAtMs#results': String(T0), 'limitLastSlotAtMs#reads': String(T0),
    });

    const next = await reserve([['results'], ['reads']], clock);
    // The crashed call's slot (T0) may still have fired: the next result fetch is 525 ms after it,
    // the next read 262.5 ms after it, whatever the crash.
    expect(next.slots).toEqual([]);
    expect(next.limitedUntilMs).toBe(T0 + 262.5);
    clock.t = T0 + 262.5 - 0;
    const later = await reserve([['results'], ['reads']], clock);
    expect(later.slots).toEqual([T0 + 262.5]);
    expect(later.callIndexes).toEqual([1]);
  });

  test.each([1, 2, 3, 4, 5, 6])('GIVEN concurrent invocations with random batches (seed %i) WHEN they reserve THEN the contract and every limit keep their spacing, and no closed 1-second window with lateness up to L holds more than r of any', async (seed) => {
    inMemoryPacer();
    const random = prng(seed);
    const clock = fakeClock();
    const shapes = [[], ['results'], ['reads'], ['results', 'reads'], []];
    const granted: { slot: number; limits: string[] }[] = [];
    for (let round = 0; round < 40; round++) {
      const batches = Array.from({ length: 1 + Math.floor(random() * 4) }, () =>
        Array.from({ length: 1 + Math.floor(random() * 6) }, () => shapes[Math.floor(random() * shapes.length)]));
      const results = await Promise.all(batches.map((callLimits) => reserveSlots({
        dynamodb: new DynamoDBClient({}),
        tableName: TABLE,
        requested: callLimits.length,
        requestsPerSecond: 10.7,
        latenessToleranceMs: L,
        maxWaitMs: 1_500,
        clock,
        random,
        maxAttempts: 100,
        limitedCalls: { limits: LIMITS, callLimits },
      })));
      results.forEach((result, b) => result.slots.forEach((slot, k) => granted.push({ slot, limits: [...batches[b][result.callIndexes![k]]] })));
      clock.t += Math.floor(random() * 400);
    }
    const check = (slots: number[], rps: number) => {
      const interval = slotIntervalMs(rps, L);
      const sorted = [...slots].sort((a, b) => a - b);
      for (let i = 1; i < sorted.length; i++) {
        expect(sorted[i] - sorted[i - 1]).toBeGreaterThanOrEqual(interval);
      }
      // Arrivals: each slot late by anything in [0, L], the worst the assumption allows.
      const arrivals = sorted.map((slot) => slot + random() * L);
      expect(maxInAnyWindow(arrivals, 1000, true)).toBeLessThanOrEqual(effectiveRate(rps));
      return sorted.length;
    };
    expect(check(granted.map((g) => g.slot), 10.7)).toBeGreaterThan(60);
    expect(check(granted.filter((g) => g.limits.includes('results')).map((g) => g.slot), 2)).toBeGreaterThan(5);
    expect(check(granted.filter((g) => g.limits.includes('reads')).map((g) => g.slot), 4)).toBeGreaterThan(10);
    expect(limitIntervalMs(RESULTS, L)).toBe(525);
  });
});
