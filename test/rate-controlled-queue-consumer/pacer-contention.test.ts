import { DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { inMemoryPacerItem } from './pacer-item-fake';
import { AdaptivePacing } from '../../src/contract/adaptive-pacing';
import { ADAPTIVE_RATE_ATTRIBUTE, ADAPTIVE_SINCE_ATTRIBUTE } from '../../src/contract/adaptive-spec';
import {
  Clock,
  INTERVAL_ATTRIBUTE,
  maxInAnyWindow,
  NEXT_SLOT_ATTRIBUTE,
  PAUSED_UNTIL_ATTRIBUTE,
  reserveSlots,
  ReserveSlotsOptions,
  slotIntervalMs,
} from '../../src/rate-controlled-queue-consumer/pacer';

// Contention on the pacer item (pacer.ts, "Contention"): hundreds of invocations reserving at once
// (at 1000 RPS, every caller whose slot a vendor pause covers reserves again) must all get a slot,
// without any losing 25 races in a row, and without two slots closer than the interval.

const L = 30;
const T0 = 1_700_000_000_000;
const R = 1000;
const I = slotIntervalMs(R, L); // 1.03125 ms (1031 / 1000 rounded up to the 1/1024 ms grid)

const ddb = mockClient(DynamoDBClient);

/** Fake time that never moves: every invocation computes from the same `now`, the worst case for races. */
function frozenClock(): Clock & { sleeps: number[] } {
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => T0,
    // Backoffs only let the other invocations interleave (no real wait).
    sleep: async (ms) => {
      sleeps.push(ms);
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

function reserve(clock: Clock, overrides: Partial<ReserveSlotsOptions> = {}) {
  return reserveSlots({
    dynamodb: new DynamoDBClient({}),
    tableName: 'pacer-table',
    requested: 1,
    requestsPerSecond: R,
    latenessToleranceMs: L,
    maxWaitMs: 60_000,
    clock,
    random: () => 0.5,
    ...overrides,
  });
}

describe('reserveSlots under contention', () => {
  beforeEach(() => ddb.reset());

  test('GIVEN 300 invocations reserving one slot each at once WHEN they race THEN every one gets a slot, I apart, with at most two writes each', async () => {
    const pacer = inMemoryPacerItem(ddb);
    // A schedule in use (dispatchers reserved ahead), as when a pause makes callers reserve again.
    pacer.item[NEXT_SLOT_ATTRIBUTE] = String(T0 + 5_000);
    pacer.item[INTERVAL_ATTRIBUTE] = String(I);
    const clock = frozenClock();

    const outcomes = await Promise.allSettled(Array.from({ length: 300 }, () => reserve(clock)));

    // Before the lost reservations were moved behind the winners, all but about 25 of them lost
    // 25 races in a row and threw (each round of reads and writes has one winner).
    expect(outcomes.filter((o) => o.status === 'rejected')).toEqual([]);
    const slots = outcomes.map((o) => (o as PromiseFulfilledResult<{ slots: number[] }>).value.slots).flat();
    expect(slots).toHaveLength(300);
    const sorted = [...slots].sort((a, b) => a - b);
    expect(sorted[0]).toBe(T0 + 5_000);
    sorted.slice(1).forEach((slot, k) => expect(slot - sorted[k]).toBe(I));
    expect(Number(pacer.item[NEXT_SLOT_ATTRIBUTE])).toBe(T0 + 5_000 + 300 * I);
    expect(maxInAnyWindow(sorted, 1000, true)).toBeLessThanOrEqual(R);
    // One read each, one lost write at most and one moved write: no retry storm on the item.
    expect(ddb.commandCalls(GetItemCommand)).toHaveLength(300);
    expect(ddb.commandCalls(UpdateItemCommand).length).toBeLessThanOrEqual(2 * 300);
    expect(clock.sleeps).toEqual([]);
  });

  test('GIVEN a lost race WHEN the reservation is moved THEN one conditional write adds its span to the next slot in force', async () => {
    const pacer = inMemoryPacerItem(ddb, () => {
      // Another invocation reserves 10 slots between this one's read and its write.
      if (ddb.commandCalls(UpdateItemCommand).length === 1 && pacer.item[NEXT_SLOT_ATTRIBUTE] === String(T0 + 100)) {
        pacer.item[NEXT_SLOT_ATTRIBUTE] = String(T0 + 100 + 10 * I);
      }
    });
    pacer.item[NEXT_SLOT_ATTRIBUTE] = String(T0 + 100);
    pacer.item[INTERVAL_ATTRIBUTE] = String(I);

    const result = await reserve(frozenClock(), { requested: 3, minLeadMs: 50 });

    expect(result.slots).toEqual([T0 + 100 + 10 * I, T0 + 100 + 11 * I, T0 + 100 + 12 * I]);
    expect(result.nextFreeAtMs).toBe(T0 + 100 + 13 * I);
    const moved = ddb.commandCalls(UpdateItemCommand)[1].args[0].input;
    expect(moved.UpdateExpression).toBe('SET #next = #next + :span');
    expect(moved.ConditionExpression).toBe('#next >= :floor AND #next <= :latest AND #interval = :interval'
      + ' AND (attribute_not_exists(#paused) OR #paused <= #next)');
    expect(moved.ExpressionAttributeValues).toEqual({
      ':span': { N: String(3 * I) },
      ':floor': { N: String(T0 + 50) },
      ':latest': { N: String(T0 + 60_000 - 2 * I) },
      ':interval': { N: String(I) },
    });
    expect(moved.ReturnValues).toBe('UPDATED_OLD');
    expect(ddb.commandCalls(GetItemCommand)).toHaveLength(1);
  });

  test('GIVEN a pause written past the next slot after the read WHEN the lost reservation is moved THEN it reads again and reserves after the pause', async () => {
    const pacer = inMemoryPacerItem(ddb, () => {
      if (ddb.commandCalls(UpdateItemCommand).length === 1 && pacer.item[PAUSED_UNTIL_ATTRIBUTE] === undefined) {
        // A 429: another invocation reserved a slot and the vendor caller paused dispatch for 1 s.
        pacer.item[NEXT_SLOT_ATTRIBUTE] = String(T0 + 100 + I);
        pacer.item[PAUSED_UNTIL_ATTRIBUTE] = String(T0 + 1_000);
      }
    });
    pacer.item[NEXT_SLOT_ATTRIBUTE] = String(T0 + 100);
    pacer.item[INTERVAL_ATTRIBUTE] = String(I);

    const result = await reserve(frozenClock());

    expect(result.slots).toEqual([T0 + 1_000]);
    expect(result.pausedUntilMs).toBe(T0 + 1_000);
    // Read, lost write, refused move, read, write.
    expect(ddb.commandCalls(GetItemCommand)).toHaveLength(2);
    expect(ddb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input.UpdateExpression)).toEqual([
      'SET #next = :new, #interval = :interval', 'SET #next = #next + :span', 'SET #next = :new, #interval = :interval',
    ]);
  });

  test('GIVEN the interval changed after the read (a new rate in force) WHEN the lost reservation is moved THEN it reads again and spaces from the last slot at its interval', async () => {
    const slower = slotIntervalMs(500, L);
    const pacer = inMemoryPacerItem(ddb, () => {
      if (ddb.commandCalls(UpdateItemCommand).length === 1 && pacer.item[INTERVAL_ATTRIBUTE] === String(I)) {
        pacer.item[NEXT_SLOT_ATTRIBUTE] = String(T0 + 100 + slower);
        pacer.item[INTERVAL_ATTRIBUTE] = String(slower);
      }
    });
    pacer.item[NEXT_SLOT_ATTRIBUTE] = String(T0 + 100);
    pacer.item[INTERVAL_ATTRIBUTE] = String(I);

    const result = await reserve(frozenClock());

    // The slot of the other reservation is T0 + 100; this one is I after it (spaced at its own rate).
    expect(result.slots).toEqual([T0 + 100 + I]);
    expect(ddb.commandCalls(GetItemCommand)).toHaveLength(2);
  });

  test('GIVEN the slots no longer fit before the deadline WHEN the lost reservation would be moved THEN it reads again and gets the slots that fit', async () => {
    const pacer = inMemoryPacerItem(ddb, () => {
      if (ddb.commandCalls(UpdateItemCommand).length === 1 && pacer.item[NEXT_SLOT_ATTRIBUTE] === String(T0 + 100)) {
        pacer.item[NEXT_SLOT_ATTRIBUTE] = String(T0 + 1_000 - I);
      }
    });
    pacer.item[NEXT_SLOT_ATTRIBUTE] = String(T0 + 100);
    pacer.item[INTERVAL_ATTRIBUTE] = String(I);

    const result = await reserve(frozenClock(), { requested: 4, maxWaitMs: 1_000 });

    // Moved, the 4 slots would end after the deadline: the refused move reads again and gets the 2 that fit.
    expect(result.slots).toEqual([T0 + 1_000 - I, T0 + 1_000]);
    expect(ddb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input.UpdateExpression)[1]).toBe('SET #next = #next + :span');
  });

  test('GIVEN adaptive pacing and a decrease after the read WHEN the lost reservation is moved THEN it reads again and paces at the decreased rate', async () => {
    const spec = AdaptivePacing.of()._spec(R);
    const pacer = inMemoryPacerItem(ddb, () => {
      if (ddb.commandCalls(UpdateItemCommand).length === 1 && pacer.item[ADAPTIVE_RATE_ATTRIBUTE] === '1000') {
        // Another reservation, then a decrease to 500 rps (adaptive-rate.ts).
        pacer.item[NEXT_SLOT_ATTRIBUTE] = String(T0 + 100 + I);
        pacer.item[ADAPTIVE_RATE_ATTRIBUTE] = '500';
        pacer.item[ADAPTIVE_SINCE_ATTRIBUTE] = String(T0 - 1);
      }
    });
    pacer.item[NEXT_SLOT_ATTRIBUTE] = String(T0 + 100);
    pacer.item[INTERVAL_ATTRIBUTE] = String(I);
    pacer.item[ADAPTIVE_RATE_ATTRIBUTE] = '1000';
    pacer.item[ADAPTIVE_SINCE_ATTRIBUTE] = String(T0 - 60_000);

    const result = await reserve(frozenClock(), { adaptivePacing: spec });

    const moved = ddb.commandCalls(UpdateItemCommand)[1].args[0].input;
    expect(moved.UpdateExpression).toBe('SET #next = #next + :span');
    expect(moved.ConditionExpression).toContain(' AND #r0 = :r0');
    expect(result.effectiveRequestsPerSecond).toBe(500);
    expect(result.slots).toEqual([T0 + 100 + slotIntervalMs(500, L)]);
  });

  test('GIVEN a moved write that returns no next slot WHEN reserving THEN it throws rather than guess a slot', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'pacer' }, [NEXT_SLOT_ATTRIBUTE]: { N: String(T0 + 100) }, [INTERVAL_ATTRIBUTE]: { N: String(I) } } });
    ddb.on(UpdateItemCommand)
      .rejectsOnce(Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' }))
      .resolves({});

    await expect(reserve(frozenClock())).rejects.toThrow(/the moved reservation returned no nextSlotAtMs/);
  });
});
