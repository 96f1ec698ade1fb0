import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  GetItemCommand,
  ProvisionedThroughputExceededException,
  UpdateItemCommand,
  UpdateItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import {
  Clock,
  computeSchedule,
  effectiveRate,
  maxInAnyWindow,
  ReserveSlotsOptions,
  reserveSlots,
  Schedule,
  SlotReservation,
  pauseUntil,
  slotIntervalMs,
  WINDOW_EDGE_MARGIN_MS,
} from '../../src/rate-controlled-queue-consumer/pacer';

// With the 1 ms margin at the window's edge, (1000 + L + 1) / R gives round numbers (105 ms at 10 RPS).
const L = 49;
const T0 = 1_700_000_000_000;

/** Largest gap-violation: asserts every consecutive pair is at least `interval` apart. */
function expectSpacing(times: number[], interval: number): void {
  const sorted = [...times].sort((a, b) => a - b);
  for (let i = 1; i < sorted.length; i++) {
    expect(sorted[i] - sorted[i - 1]).toBeGreaterThanOrEqual(interval);
  }
}

/** Small seeded PRNG (mulberry32) so that the simulations are reproducible. */
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

describe('slotIntervalMs', () => {
  test('GIVEN an integer rate WHEN computing the interval THEN it is (1000 + L + 1) / R', () => {
    expect(slotIntervalMs(10, L)).toBe(105);
    expect(slotIntervalMs(1, L)).toBe(1050);
    expect(slotIntervalMs(100, L)).toBe(10.5);
    expect(slotIntervalMs(1, 0)).toBe(1001);
    expect(WINDOW_EDGE_MARGIN_MS).toBe(1);
  });

  test('GIVEN a fractional rate above 1 WHEN computing the interval THEN the rate is floored first', () => {
    expect(effectiveRate(2.5)).toBe(2);
    expect(slotIntervalMs(2.5, L)).toBe(525);
    expect(slotIntervalMs(10.99, L)).toBe(105);
  });

  test('GIVEN a rate below 1 WHEN computing the interval THEN the rate is used as is', () => {
    expect(effectiveRate(0.5)).toBe(0.5);
    expect(slotIntervalMs(0.5, L)).toBe(2100);
    expect(slotIntervalMs(0.25, 0)).toBe(4004);
  });

  test('GIVEN an interval that is not a binary fraction WHEN computing it THEN it is rounded up to a multiple of 1/1024 ms', () => {
    const interval = slotIntervalMs(9, L);
    expect(interval * 9).toBeGreaterThanOrEqual(1050);
    expect(interval - 1050 / 9).toBeLessThan(1 / 1024);
    expect(Number.isInteger(interval * 1024)).toBe(true);
  });

  test('GIVEN a non-positive or non-finite rate or a negative tolerance WHEN computing the interval THEN it throws', () => {
    expect(() => slotIntervalMs(0, L)).toThrow(/requestsPerSecond/);
    expect(() => slotIntervalMs(-1, L)).toThrow(/requestsPerSecond/);
    expect(() => slotIntervalMs(NaN, L)).toThrow(/requestsPerSecond/);
    expect(() => slotIntervalMs(Infinity, L)).toThrow(/requestsPerSecond/);
    expect(() => slotIntervalMs(10, -1)).toThrow(/latenessToleranceMs/);
  });
});

describe('computeSchedule', () => {
  test('GIVEN an empty schedule WHEN reserving THEN slots start now, I apart, and the next slot follows the last', () => {
    const s = computeSchedule(T0, undefined, 4, 10, L, 10_000);
    expect(s).toEqual<Schedule>({ base: T0, n: 4, slots: [T0, T0 + 105, T0 + 210, T0 + 315], newNextSlotAtMs: T0 + 420 });
  });

  test('GIVEN a schedule idle since the past WHEN reserving THEN slots start now (no banked burst)', () => {
    const s = computeSchedule(T0, T0 - 60_000, 3, 10, L, 10_000);
    expect(s.base).toBe(T0);
    expect(s.slots).toEqual([T0, T0 + 105, T0 + 210]);
  });

  test('GIVEN a backlog WHEN reserving THEN slots continue from nextSlotAtMs', () => {
    const s = computeSchedule(T0, T0 + 700, 2, 10, L, 10_000);
    expect(s.base).toBe(T0 + 700);
    expect(s.slots).toEqual([T0 + 700, T0 + 805]);
    expect(s.newNextSlotAtMs).toBe(T0 + 910);
  });

  test('GIVEN more messages than fit before the deadline WHEN reserving THEN n is capped by maxWait', () => {
    // Slots at +0, +105, +210 are <= +250; +315 is not.
    const s = computeSchedule(T0, undefined, 10, 10, L, 250);
    expect(s.n).toBe(3);
    expect(s.slots).toEqual([T0, T0 + 105, T0 + 210]);
    expect(s.newNextSlotAtMs).toBe(T0 + 315);
  });

  test('GIVEN a slot exactly at the deadline WHEN reserving THEN it is granted', () => {
    expect(computeSchedule(T0, undefined, 10, 10, L, 210).n).toBe(3);
    expect(computeSchedule(T0, undefined, 10, 10, L, 209.99).n).toBe(2);
  });

  test('GIVEN maxWait 0 and an idle schedule WHEN reserving THEN exactly one slot (now) is granted', () => {
    const s = computeSchedule(T0, undefined, 5, 10, L, 0);
    expect(s.slots).toEqual([T0]);
  });

  test('GIVEN a backlog beyond the deadline WHEN reserving THEN n is 0 and the schedule is unchanged', () => {
    const s = computeSchedule(T0, T0 + 5_000, 5, 10, L, 4_999);
    expect(s).toEqual<Schedule>({ base: T0 + 5_000, n: 0, slots: [], newNextSlotAtMs: T0 + 5_000 });
  });

  test('GIVEN zero messages WHEN reserving THEN nothing is granted', () => {
    expect(computeSchedule(T0, undefined, 0, 10, L, 1000).n).toBe(0);
  });

  test('GIVEN a negative or fractional request WHEN reserving THEN it throws', () => {
    expect(() => computeSchedule(T0, undefined, -1, 10, L, 1000)).toThrow(/requested/);
    expect(() => computeSchedule(T0, undefined, 1.5, 10, L, 1000)).toThrow(/requested/);
  });

  test('GIVEN R = 2.5 WHEN reserving THEN slots are spaced for 2 per second', () => {
    const s = computeSchedule(T0, undefined, 3, 2.5, L, 10_000);
    expect(s.slots).toEqual([T0, T0 + 525, T0 + 1050]);
  });

  test('GIVEN a pause that ends off the 1/1024 ms grid WHEN reserving after it THEN every slot stays on the grid', () => {
    // e.g. Retry-After: 0.0001 (seconds) added to now.
    const s = computeSchedule(T0, undefined, 3, 9, L, 10_000, { pausedUntilMs: T0 + 0.1 });
    expect(s.base).toBe(T0 + 103 / 1024);
    for (const slot of [...s.slots, s.newNextSlotAtMs]) {
      expect(Number.isInteger(slot * 1024)).toBe(true);
    }
  });

  test('GIVEN R = 0.5 WHEN reserving THEN slots are 2.1 s apart', () => {
    const s = computeSchedule(T0, undefined, 3, 0.5, L, 10_000);
    expect(s.slots).toEqual([T0, T0 + 2100, T0 + 4200]);
  });

  test.each([1, 3, 7, 9, 10, 33, 100, 2.5, 0.3])(
    'GIVEN R = %p and back-to-back reservations WHEN chaining them THEN every slot is at least I after the previous one',
    (rate) => {
      const interval = slotIntervalMs(rate, L);
      const random = prng(7);
      let next: number | undefined;
      let now = T0;
      const all: number[] = [];
      for (let i = 0; i < 200; i++) {
        now += Math.floor(random() * 3 * interval); // sometimes idle, sometimes backlogged
        const s = computeSchedule(now, next, 1 + Math.floor(random() * 10), rate, L, 5_000);
        all.push(...s.slots);
        next = s.newNextSlotAtMs;
      }
      expect(all.length).toBeGreaterThan(200);
      expectSpacing(all, interval);
      expect(maxInAnyWindow(all, 1000 + L)).toBeLessThanOrEqual(Math.ceil(effectiveRate(rate)));
    },
  );
});

describe('maxInAnyWindow', () => {
  test('GIVEN no times WHEN counting THEN 0', () => {
    expect(maxInAnyWindow([])).toBe(0);
  });

  test('GIVEN times exactly one window apart WHEN counting THEN the window is half-open', () => {
    expect(maxInAnyWindow([0, 1000])).toBe(1);
    expect(maxInAnyWindow([0, 999.999])).toBe(2);
  });

  test('GIVEN times exactly one window apart WHEN counting closed windows THEN both are in it', () => {
    expect(maxInAnyWindow([0, 1000], 1000, true)).toBe(2);
    expect(maxInAnyWindow([0, 1000.001], 1000, true)).toBe(1);
  });

  test('GIVEN unsorted times WHEN counting THEN the fullest window is found', () => {
    expect(maxInAnyWindow([5000, 10, 900, 20, 1500, 5001, 5002, 950])).toBe(4);
    expect(maxInAnyWindow([0, 50, 100], 60)).toBe(2);
  });
});

describe('the pacing bound at its edge', () => {
  // An L for which (1000 + L) / R lies on the 1/1024 ms grid at these rates: the spacing without
  // the margin is then exact, as the proof without the margin allowed.
  const EDGE_L = 50;
  /**
   * The worst case the proof allows (arrivals relative to the earliest possible one): slots 0..r
   * (r + 1 of them), the first one's request arriving as late as allowed (L), every other one's on
   * time but no earlier than the first (a later request may be up to L late too).
   */
  function worstCaseArrivals(interval: number, rate: number): number[] {
    return Array.from({ length: rate + 1 }, (_, k) => (k === 0 ? T0 + EDGE_L : Math.max(T0 + k * interval, T0 + EDGE_L)));
  }

  /** What a vendor that timestamps in whole milliseconds sees, the real arrivals `offset` ms into a millisecond. */
  function wholeMilliseconds(arrivals: number[], offset: number): number[] {
    return arrivals.map((a) => Math.floor(a + offset));
  }

  test.each([1, 2, 10, 100])(
    'GIVEN R = %p and the worst allowed lateness WHEN a vendor counts closed windows or whole milliseconds THEN at most floor(R) fall in one second, and without the 1 ms margin floor(R) + 1 do',
    (rate) => {
      const interval = slotIntervalMs(rate, EDGE_L);
      expect(computeSchedule(T0, undefined, rate + 1, rate, EDGE_L, 100_000).slots).toEqual(
        Array.from({ length: rate + 1 }, (_, k) => T0 + k * interval),
      );
      const arrivals = worstCaseArrivals(interval, rate);
      expect(maxInAnyWindow(arrivals)).toBe(rate);
      expect(maxInAnyWindow(arrivals, 1000, true)).toBe(rate);
      for (const offset of [0, 0.3, 0.9]) {
        expect(maxInAnyWindow(wholeMilliseconds(arrivals, offset), 1000, true)).toBe(rate);
      }

      // The spacing of the proof without the margin, (1000 + L) / R (the library's before issue 13): the first and the last
      // request are exactly 1000 ms apart, and a closed window holds both.
      const unmargined = (1000 + EDGE_L) / rate;
      const tight = worstCaseArrivals(unmargined, rate);
      expect(maxInAnyWindow(tight)).toBe(rate);
      expect(maxInAnyWindow(tight, 1000, true)).toBe(rate + 1);
      // Half a millisecond more is still not enough once the vendor truncates to whole milliseconds.
      const half = worstCaseArrivals(Math.ceil(((1000 + EDGE_L + 0.5) / rate) * 1024) / 1024, rate);
      expect(maxInAnyWindow(half, 1000, true)).toBe(rate);
      expect(maxInAnyWindow(wholeMilliseconds(half, 0.3), 1000, true)).toBe(rate + 1);
    },
  );
});

// --- Simulation of concurrent invocations -------------------------------------------------------

interface SimOptions {
  readonly rate: number;
  readonly seed: number;
  /** Lateness tolerance the dispatcher enforces. */
  readonly latenessToleranceMs: number;
  /** Lateness tolerance used for the slot interval (equal to the above unless testing the test). */
  readonly scheduleToleranceMs?: number;
  readonly invocations?: number;
  readonly maxWaitMs?: number;
}

interface SimResult {
  readonly starts: number[];
  readonly postponed: number;
  readonly conflicts: number;
  readonly slotsGivenUp: number;
}

/**
 * Discrete-event simulation of concurrent dispatcher invocations sharing one pacer item.
 * Each reservation reads the item, computes, and writes later (after a random DynamoDB latency)
 * with the same conditional semantics as the real write; a lost race retries after a backoff.
 * Each start is issued at its slot plus a random delay; a start later than slot + L is not issued
 * and the invocation reserves again for its remaining messages, as dispatch.ts does.
 */
function simulate(options: SimOptions): SimResult {
  const random = prng(options.seed);
  const L_ = options.latenessToleranceMs;
  const scheduleL = options.scheduleToleranceMs ?? L_;
  const maxWaitMs = options.maxWaitMs ?? 3_000;
  let store: number | undefined;
  const starts: number[] = [];
  let postponed = 0;
  let conflicts = 0;
  let slotsGivenUp = 0;

  type Ev = { at: number; seq: number; run: (now: number) => void };
  const queue: Ev[] = [];
  let seq = 0;
  const schedule = (at: number, run: (now: number) => void) => {
    queue.push({ at, seq: seq++, run });
  };

  const attemptReservation = (now: number, remaining: number, deadline: number): void => {
    const seen = store;
    const s = computeSchedule(now, seen, remaining, options.rate, scheduleL, Math.max(0, deadline - now));
    if (s.n === 0) {
      postponed += remaining;
      return;
    }
    // The conditional write lands after a random latency; other invocations may write first.
    schedule(now + random() * 25, (writeAt) => {
      if (store !== seen) {
        conflicts++;
        schedule(writeAt + 1 + random() * 20, (t) => attemptReservation(t, remaining, deadline));
        return;
      }
      store = s.newNextSlotAtMs;
      let cursor = writeAt;
      let left = remaining;
      for (const slot of s.slots) {
        // Mostly within tolerance, sometimes an oversleep or a slow call beyond it.
        const delay = random() < 0.85 ? random() * L_ : L_ + random() * 3 * L_;
        const issueAt = Math.max(cursor, slot) + (cursor > slot ? 0 : delay);
        if (issueAt > slot + L_) {
          slotsGivenUp++;
          schedule(issueAt, (t) => attemptReservation(t, left, deadline));
          return;
        }
        starts.push(issueAt);
        cursor = issueAt;
        left--;
      }
      if (left > 0) {
        schedule(cursor, (t) => attemptReservation(t, left, deadline));
      }
    });
  };

  // Bursty arrivals: several invocations at almost the same moment, cold starts included.
  // Enough messages to overflow the schedule even at high rates.
  const invocations = options.invocations ?? Math.max(40, Math.ceil(2 * options.rate));
  for (let i = 0; i < invocations; i++) {
    const arrival = T0 + Math.floor(random() * 8) * 400 + random() * 5;
    const batch = 1 + Math.floor(random() * 10);
    schedule(arrival, (t) => attemptReservation(t, batch, t + maxWaitMs));
  }

  while (queue.length > 0) {
    queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
    const ev = queue.shift()!;
    ev.run(ev.at);
  }
  return { starts, postponed, conflicts, slotsGivenUp };
}

describe('simulated concurrent invocations', () => {
  test.each([1, 10, 100, 2.5, 0.5])(
    'GIVEN R = %p, interleaved reservations and random lateness WHEN simulating THEN no second holds more than max(1, floor(R)) starts',
    (rate) => {
      const bound = Math.max(1, Math.floor(rate));
      let totals = { starts: 0, conflicts: 0, slotsGivenUp: 0, postponed: 0 };
      for (let seed = 1; seed <= 25; seed++) {
        const result = simulate({ rate, seed, latenessToleranceMs: L });
        expect(maxInAnyWindow(result.starts)).toBeLessThanOrEqual(bound);
        totals = {
          starts: totals.starts + result.starts.length,
          conflicts: totals.conflicts + result.conflicts,
          slotsGivenUp: totals.slotsGivenUp + result.slotsGivenUp,
          postponed: totals.postponed + result.postponed,
        };
      }
      // The simulation really exercised what it claims to: starts, races, missed slots, overflow.
      expect(totals.starts).toBeGreaterThan(25);
      expect(totals.conflicts).toBeGreaterThan(0);
      expect(totals.slotsGivenUp).toBeGreaterThan(0);
      expect(totals.postponed).toBeGreaterThan(0);
    },
  );

  test('GIVEN R = 10 under load WHEN simulating THEN the schedule is used up to the bound (it is not trivially idle)', () => {
    const best = Math.max(...[1, 2, 3, 4, 5].map((seed) => maxInAnyWindow(simulate({ rate: 10, seed, latenessToleranceMs: L }).starts)));
    expect(best).toBe(10);
  });

  test('GIVEN slots spaced without the lateness tolerance WHEN simulating THEN the bound is broken (the check can fail)', () => {
    const worst = Math.max(...[1, 2, 3, 4, 5].map((seed) =>
      maxInAnyWindow(simulate({ rate: 10, seed, latenessToleranceMs: L, scheduleToleranceMs: 0 }).starts)));
    expect(worst).toBeGreaterThan(10);
  });
});

// --- The DynamoDB reservation -------------------------------------------------------------------

const ddb = mockClient(DynamoDBClient);
const TABLE = 'pacer-table';

function fakeClock(start: number = T0): Clock & { sleeps: number[]; t: number } {
  const clock = {
    t: start,
    sleeps: [] as number[],
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.sleeps.push(ms);
      clock.t += ms;
    },
  };
  return clock;
}

function conditionFailed(): ConditionalCheckFailedException {
  return new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} });
}

/** An in-memory pacer item behind the mocked client, with DynamoDB's conditional semantics. */
function inMemoryPacer(initial?: string): { value: () => string | undefined } {
  let stored = initial;
  ddb.on(GetItemCommand).callsFake(async () => {
    await new Promise((resolve) => setImmediate(resolve)); // let other callers interleave
    return { Item: stored === undefined ? undefined : { pk: { S: 'pacer' }, nextSlotAtMs: { N: stored } } };
  });
  ddb.on(UpdateItemCommand).callsFake(async (input: UpdateItemCommandInput) => {
    await new Promise((resolve) => setImmediate(resolve));
    const values = input.ExpressionAttributeValues!;
    const holds = input.ConditionExpression!.startsWith('attribute_not_exists(#next)')
      ? stored === undefined
      : stored !== undefined && Number(stored) === Number(values[':old'].N);
    if (!holds) {
      throw conditionFailed();
    }
    stored = values[':new'].N;
    return {};
  });
  return { value: () => stored };
}

/** reserveSlots with R = 10 (I = 105 ms), L = 50, a 5 s wait and a fake clock unless overridden. */
function reserve(overrides: Partial<ReserveSlotsOptions> = {}): Promise<SlotReservation> {
  return reserveSlots({
    dynamodb: new DynamoDBClient({}),
    tableName: TABLE,
    requested: 1,
    requestsPerSecond: 10,
    latenessToleranceMs: L,
    maxWaitMs: 5_000,
    clock: fakeClock(),
    ...overrides,
  });
}

describe('reserveSlots', () => {
  beforeEach(() => {
    ddb.reset();
  });

  test('GIVEN no pacer item WHEN reserving THEN the write requires the attribute to be absent', async () => {
    ddb.on(GetItemCommand).resolves({});
    ddb.on(UpdateItemCommand).resolves({});

    const result = await reserve({ requested: 3 });

    expect(result).toEqual({ slots: [T0, T0 + 105, T0 + 210], nextFreeAtMs: T0 + 315 });
    expect(ddb).toHaveReceivedCommandWith(GetItemCommand, { TableName: TABLE, Key: { pk: { S: 'pacer' } }, ConsistentRead: true });
    const update = ddb.commandCalls(UpdateItemCommand)[0].args[0].input;
    expect(update).toEqual({
      TableName: TABLE,
      Key: { pk: { S: 'pacer' } },
      UpdateExpression: 'SET #next = :new, #interval = :interval',
      ConditionExpression: 'attribute_not_exists(#next) AND attribute_not_exists(#interval)',
      ExpressionAttributeNames: { '#next': 'nextSlotAtMs', '#interval': 'intervalMs' },
      ExpressionAttributeValues: { ':new': { N: String(T0 + 315) }, ':interval': { N: '105' } },
    });
  });

  test('GIVEN a backlogged pacer item WHEN reserving THEN slots continue from it and the write is conditioned on the value read', async () => {
    const stored = String(T0 + 400);
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'pacer' }, nextSlotAtMs: { N: stored }, intervalMs: { N: '105' } } });
    ddb.on(UpdateItemCommand).resolves({});

    const result = await reserve({ requested: 2 });

    expect(result.slots).toEqual([T0 + 400, T0 + 505]);
    // Both values read: the pair (next slot, interval) never repeats, the next slot alone may (ABA).
    expect(ddb).toHaveReceivedCommandWith(UpdateItemCommand, {
      ConditionExpression: '#next = :old AND #interval = :oldInterval',
      ExpressionAttributeValues: { ':new': { N: String(T0 + 610) }, ':old': { N: stored }, ':interval': { N: '105' }, ':oldInterval': { N: '105' } },
    });
  });

  test('GIVEN another invocation writes first WHEN reserving THEN it re-reads, recomputes and succeeds', async () => {
    ddb.on(GetItemCommand)
      .resolvesOnce({})
      .resolves({ Item: { pk: { S: 'pacer' }, nextSlotAtMs: { N: String(T0 + 1_000) } } });
    ddb.on(UpdateItemCommand).rejectsOnce(conditionFailed()).resolves({});
    const clock = fakeClock();

    const result = await reserve({ requested: 2, clock, random: () => 0.5 });

    expect(ddb).toHaveReceivedCommandTimes(GetItemCommand, 2);
    expect(ddb).toHaveReceivedCommandTimes(UpdateItemCommand, 2);
    expect(clock.sleeps).toHaveLength(1); // one backoff
    // Computed from the second read, after the backoff advanced the clock.
    expect(result.slots).toEqual([T0 + 1_000, T0 + 1_105]);
    expect(ddb.commandCalls(UpdateItemCommand)[1].args[0].input.ConditionExpression).toBe('#next = :old AND attribute_not_exists(#interval)');
  });

  test('GIVEN every write loses the race WHEN reserving THEN it gives up after 25 attempts with a clear error', async () => {
    ddb.on(GetItemCommand).resolves({});
    ddb.on(UpdateItemCommand).rejects(conditionFailed());

    await expect(reserve()).rejects.toThrow(/lost 25 consecutive races/);
    expect(ddb).toHaveReceivedCommandTimes(UpdateItemCommand, 25);
  });

  test('GIVEN another DynamoDB error WHEN reserving THEN it is thrown without retrying', async () => {
    ddb.on(GetItemCommand).resolves({});
    ddb.on(UpdateItemCommand).rejects(new ProvisionedThroughputExceededException({ message: 'slow down', $metadata: {} }));

    await expect(reserve()).rejects.toThrow('slow down');
    expect(ddb).toHaveReceivedCommandTimes(UpdateItemCommand, 1);
  });

  test('GIVEN no slot before the deadline WHEN reserving THEN nothing is written and the next free slot is returned', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'pacer' }, nextSlotAtMs: { N: String(T0 + 9_000) } } });

    const result = await reserve({ requested: 4, maxWaitMs: 2_000 });

    expect(result).toEqual({ slots: [], nextFreeAtMs: T0 + 9_000 });
    expect(ddb).not.toHaveReceivedCommand(UpdateItemCommand);
  });

  test('GIVEN a pacer item that is not a number WHEN reserving THEN it throws naming the attribute', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'pacer' }, nextSlotAtMs: { S: 'soon' } } });

    await expect(reserve()).rejects.toThrow(/nextSlotAtMs is not a number/);
  });

  test('GIVEN several invocations reserving at once WHEN they race THEN every one gets its slots, all disjoint and I apart', async () => {
    const pacer = inMemoryPacer();
    const clock = fakeClock();
    clock.sleep = async () => {
      await new Promise((resolve) => setImmediate(resolve)); // backoff without moving fake time
    };
    const requested = [3, 1, 4, 1, 5, 2];

    const results = await Promise.all(requested.map((n) => reserve({ requested: n, requestsPerSecond: 100, maxWaitMs: 60_000, clock })));

    const all = results.flatMap((r) => r.slots);
    expect(results.map((r) => r.slots.length)).toEqual(requested);
    expect(new Set(all).size).toBe(all.length);
    expectSpacing(all, slotIntervalMs(100, L));
    expect(Number(pacer.value())).toBe(T0 + 16 * 10.5);
    // They really raced: more writes than reservations.
    expect(ddb.commandCalls(UpdateItemCommand).length).toBeGreaterThan(requested.length);
  });
});

describe('pauseUntil', () => {
  beforeEach(() => ddb.reset());

  test('GIVEN a pause that ends off the 1/1024 ms grid WHEN writing it THEN it is rounded up to the grid, like the slots', async () => {
    ddb.on(UpdateItemCommand).resolves({});

    const until = await pauseUntil(new DynamoDBClient({}), 'pacer-table', T0 + 0.1);

    expect(until).toBe(T0 + 103 / 1024);
    const input = ddb.commandCalls(UpdateItemCommand)[0].args[0].input;
    expect(input.ExpressionAttributeValues![':until']).toEqual({ N: String(T0 + 103 / 1024) });
  });
});
