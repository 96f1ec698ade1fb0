import { DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { inMemoryPacerItem } from './pacer-item-fake';
import {
  computeSchedule,
  effectiveRate,
  INTERVAL_ATTRIBUTE,
  NEXT_SLOT_ATTRIBUTE,
  rateIncreaseHoldMs,
  reserveSlots,
  scheduleInterval,
  slotIntervalMs,
} from '../../src/rate-controlled-queue-consumer/pacer';

// The rate at run time (pacer.ts, "The rate at run time"): the contract is the ceiling, operators
// set the rate in force below it, and no window exceeds the rate in force while it changes.

const L = 30;
const T0 = 1_700_000_000_000;
const CONTRACT = 10;

describe('computeSchedule with a rate in force', () => {
  const iContract = slotIntervalMs(CONTRACT, L); // 103.1 ms (on the 1/1024 grid)
  const iFour = slotIntervalMs(4, L); // 257.75 ms

  test('GIVEN a rate in force below the contract WHEN scheduling THEN slots are spaced for the rate in force', () => {
    const s = computeSchedule(T0, undefined, 3, CONTRACT, L, 10_000, { rateInForce: 4 });
    expect(s.slots).toEqual([T0, T0 + iFour, T0 + 2 * iFour]);
  });

  test('GIVEN a rate in force above the contract WHEN scheduling THEN the contract is the ceiling', () => {
    expect(scheduleInterval(T0, CONTRACT, L, { rateInForce: 50 })).toBe(iContract);
  });

  test('GIVEN a decrease WHEN scheduling after slots reserved at the old rate THEN the first new slot is the NEW interval after the last old slot', () => {
    const last = T0 + 5_000;
    const s = computeSchedule(T0, last + iContract, 2, CONTRACT, L, 10_000, { rateInForce: 4, previousIntervalMs: iContract });
    expect(s.slots).toEqual([last + iFour, last + 2 * iFour]);
  });

  test('GIVEN an item without a stored interval WHEN a decrease is scheduled THEN the previous interval counts as the contract\'s (the shortest possible)', () => {
    const last = T0 + 5_000;
    const s = computeSchedule(T0, last + iContract, 1, CONTRACT, L, 10_000, { rateInForce: 4 });
    expect(s.slots).toEqual([last + iFour]);
  });

  test('GIVEN unchanged settings WHEN scheduling THEN slots continue exactly at the stored next slot', () => {
    const next = T0 + 5_000 + iFour;
    const s = computeSchedule(T0, next, 1, CONTRACT, L, 10_000, { rateInForce: 4, previousIntervalMs: iFour });
    expect(s.slots).toEqual([next]);
  });

  test('GIVEN an increase seen less than one window ago WHEN scheduling THEN the stored, longer interval is kept', () => {
    const hold = rateIncreaseHoldMs(L);
    expect(hold).toBe(1031);
    const last = T0 + 2_000;
    const held = computeSchedule(T0, last + iFour, 2, CONTRACT, L, 10_000, { previousIntervalMs: iFour, settingsSinceMs: T0 - hold + 1 });
    expect(held.slots).toEqual([last + iFour, last + 2 * iFour]);
    const after = computeSchedule(T0, last + iFour, 2, CONTRACT, L, 10_000, { previousIntervalMs: iFour, settingsSinceMs: T0 - hold });
    expect(after.slots).toEqual([last + iContract, last + 2 * iContract]);
  });

  test('GIVEN settings never read (settingsSinceMs infinite) WHEN scheduling THEN the schedule never speeds up past its stored interval', () => {
    expect(scheduleInterval(T0, CONTRACT, L, { previousIntervalMs: iFour, settingsSinceMs: Number.POSITIVE_INFINITY })).toBe(iFour);
    // ... but a slower setting still applies at once.
    expect(scheduleInterval(T0, CONTRACT, L, { rateInForce: 2, previousIntervalMs: iFour, settingsSinceMs: Number.POSITIVE_INFINITY }))
      .toBe(slotIntervalMs(2, L));
  });
});

/** The pacer item in memory, with DynamoDB's conditional semantics, storing every attribute written. */
class InMemoryPacerItem {
  public item: Record<string, { N: string }> | undefined;
  public async send(command: unknown): Promise<unknown> {
    if (command instanceof GetItemCommand) {
      return { Item: this.item ? { ...this.item } : undefined };
    }
    if (command instanceof UpdateItemCommand) {
      const values = command.input.ExpressionAttributeValues!;
      const stored = this.item?.[NEXT_SLOT_ATTRIBUTE]?.N;
      const holds = values[':old'] === undefined ? stored === undefined : stored === values[':old'].N;
      if (!holds) {
        throw Object.assign(new Error('conditional'), { name: 'ConditionalCheckFailedException' });
      }
      this.item = { ...this.item, [NEXT_SLOT_ATTRIBUTE]: values[':new'] as { N: string }, [INTERVAL_ATTRIBUTE]: values[':interval'] as { N: string } };
      return {};
    }
    throw new Error('unexpected command');
  }
}

/** Small seeded PRNG (mulberry32). */
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

interface RateChange { readonly atMs: number; readonly rps: number }

/**
 * The windows' limit at the vendor while the rate changes, as the guarantee states it: a decrease
 * deployed at C binds every window starting at or after C + P + H + L; an increase deployed at C
 * binds the windows starting at or after C. Returns the rate in force for a window starting at `s`.
 */
function rateOfWindowStartingAt(s: number, initial: number, changes: RateChange[], pollMs: number, horizonMs: number): number {
  let rate = initial;
  for (const change of changes) {
    const effective = change.rps < rate ? change.atMs + pollMs + horizonMs + L : change.atMs;
    if (s >= effective) {
      rate = change.rps;
    }
  }
  return rate;
}

describe('reserveSlots while operators change the rate (property, injected clock)', () => {
  const POLL_MS = 5_000;
  const HORIZON_MS = 3_000;
  const ENVIRONMENTS = 4;

  /**
   * Several execution environments reserve under a backlog (each wants up to 5 slots every step,
   * at most HORIZON_MS ahead); each reads an operator's change at a random time within POLL_MS of
   * its deployment. Requests reach the vendor at slot + a random lateness in [0, L].
   */
  async function run(seed: number, changes: RateChange[]) {
    const random = prng(seed);
    const table = new InMemoryPacerItem();
    let now = T0;
    const clock = { now: () => now, sleep: async (ms: number) => { now += ms; } };
    const seenAt = Array.from({ length: ENVIRONMENTS }, () => changes.map((c) => c.atMs + Math.floor(random() * POLL_MS)));
    const slots: number[] = [];
    const endMs = T0 + 130_000;
    while (now < endMs) {
      now += Math.floor(random() * 120);
      const env = Math.floor(random() * ENVIRONMENTS);
      // The settings this environment has read, and since when.
      let rateInForce = CONTRACT;
      let since = T0 - 60_000;
      changes.forEach((change, k) => {
        if (seenAt[env][k] <= now) {
          rateInForce = change.rps;
          since = seenAt[env][k];
        }
      });
      const reservation = await reserveSlots({
        dynamodb: table as unknown as DynamoDBClient,
        tableName: 'pacer',
        requested: 1 + Math.floor(random() * 5),
        requestsPerSecond: CONTRACT,
        latenessToleranceMs: L,
        maxWaitMs: HORIZON_MS,
        clock,
        rateInForce,
        settingsSinceMs: since,
      });
      slots.push(...reservation.slots);
    }
    const arrivals = slots.map((t) => t + random() * L).sort((a, b) => a - b);
    return { slots: [...slots].sort((a, b) => a - b), arrivals };
  }

  function violations(arrivals: number[], changes: RateChange[]): string[] {
    const found: string[] = [];
    const starts = [...arrivals];
    for (const change of changes) {
      for (const t of [change.atMs, change.atMs + POLL_MS + HORIZON_MS + L]) {
        starts.push(t - 0.001, t);
      }
    }
    for (const s of starts) {
      // Below 1 RPS the guarantee is one request in any closed window of 1 / R seconds.
      const rate = effectiveRate(rateOfWindowStartingAt(s, CONTRACT, changes, POLL_MS, HORIZON_MS));
      const [windowMs, limit] = rate < 1 ? [1000 / rate, 1] : [1000, rate];
      const count = arrivals.filter((a) => a >= s && a <= s + windowMs).length;
      if (count > limit) {
        found.push(`window starting ${s - T0} ms holds ${count} > ${limit}`);
      }
    }
    return found;
  }

  const changes: RateChange[] = [
    { atMs: T0 + 20_000, rps: 4 }, // decrease
    { atMs: T0 + 45_000, rps: 9 }, // increase
    { atMs: T0 + 70_000, rps: 0.5 }, // decrease below 1
    { atMs: T0 + 95_000, rps: 10 }, // increase back to the contract
  ];

  test('GIVEN decreases and increases under backlog WHEN many environments reserve THEN no window exceeds the rate in force (20 seeds)', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const { arrivals } = await run(seed, changes);
      expect({ seed, violations: violations(arrivals, changes).slice(0, 3) }).toEqual({ seed, violations: [] });
    }
  });

  test('GIVEN each change WHEN the stated time has passed THEN the new rate is in use (slots exactly the new interval apart under backlog)', async () => {
    const { slots } = await run(7, changes);
    changes.forEach((change, k) => {
      // Stated: P + H (+ one window for an increase, the hold).
      const previous = k === 0 ? CONTRACT : changes[k - 1].rps;
      const inUseBy = change.atMs + POLL_MS + HORIZON_MS + (change.rps > previous ? rateIncreaseHoldMs(L) : 0);
      const until = k + 1 < changes.length ? changes[k + 1].atMs : T0 + 125_000;
      const after = slots.filter((t) => t >= inUseBy && t < until);
      const gaps = after.slice(1).map((t, i) => t - after[i]);
      expect(gaps.length).toBeGreaterThan(5);
      expect(Math.min(...gaps)).toBe(slotIntervalMs(change.rps, L));
      expect(Math.max(...gaps)).toBe(slotIntervalMs(change.rps, L));
    });
  });

  test('GIVEN a decrease whose first slot is spaced from nextSlotAtMs (the old interval) WHEN checked THEN the checker finds the window over the new rate', () => {
    // The checker's own test: the spacing the stored interval prevents is a violation for it.
    const arrivals: number[] = [];
    const old = slotIntervalMs(CONTRACT, L);
    const slow = slotIntervalMs(4, L);
    for (let k = 0; k < 4; k++) arrivals.push(T0 + old + k * slow);
    arrivals.push(T0);
    const decrease: RateChange[] = [{ atMs: T0 - POLL_MS - HORIZON_MS - L, rps: 4 }];
    expect(violations(arrivals.sort((a, b) => a - b), decrease)).not.toEqual([]);
  });
});

describe('reserveSlots when a reservation writes back the next slot it read (ABA)', () => {
  test('GIVEN a stored interval exactly twice the new one WHEN two environments reserve one slot each at once THEN they never get the same slot', async () => {
    // One slot at the new interval after the last old slot puts nextSlotAtMs back where it was
    // (last + 2I - 2I + I + I): without the interval in the condition, the second writer's
    // `nextSlotAtMs = :old` still holds and it takes the same slot.
    const ddb = mockClient(DynamoDBClient);
    const fake = inMemoryPacerItem(ddb);
    const interval = slotIntervalMs(CONTRACT, L);
    const next = T0 + 10_000;
    fake.item[NEXT_SLOT_ATTRIBUTE] = String(next);
    fake.item[INTERVAL_ATTRIBUTE] = String(2 * interval);
    const clock = { now: () => T0, sleep: async () => undefined };
    const reserve = () => reserveSlots({
      dynamodb: new DynamoDBClient({}),
      tableName: 'pacer',
      requested: 1,
      requestsPerSecond: CONTRACT,
      latenessToleranceMs: L,
      maxWaitMs: 20_000,
      clock,
      random: () => 0,
      rateInForce: CONTRACT,
      settingsSinceMs: T0 - 60_000,
    });
    const [a, b] = await Promise.all([reserve(), reserve()]);
    expect(a.slots).toEqual([next - interval]);
    expect(b.slots).toHaveLength(1);
    expect(b.slots[0]).toBeGreaterThanOrEqual(a.slots[0] + interval);
    ddb.restore();
  });
});
