/**
 * Setting a full key aside (key-set-aside.ts; design docs/design/per-key-limits.md 3.1): which
 * requests are set aside, and when each comes back (early, never late; at most 900 s).
 */
import { KeyCursor, keyIntervalMs } from '../../src/rate-controlled-queue-consumer/key-schedule';
import {
  DEFAULT_KEY_RESERVATION_HORIZON_MS, KEY_TURN_FIELD, planSetAside, RETURN_EXTRA_HORIZON_MS, SET_ASIDE_RETURN_MARGIN_MS, setAsidePriorityOf,
  splitByKeyHorizon,
} from '../../src/rate-controlled-queue-consumer/key-set-aside';
import type { KeyLimitsSpec } from '../../src/shared/key-limits';

const T0 = 1_800_000_000_000;
const L = 30;
const LEAD = 1000;
const timing = { nowMs: T0, leadMs: LEAD, latenessToleranceMs: L };
const spec = (requestsPerSecond: number, extra: Partial<KeyLimitsSpec> = {}): KeyLimitsSpec =>
  ({ requestsPerSecond, quotas: {}, priorityAgingMs: 30_000, paused: false, ...extra });
const call = (id: string, key?: string, limits?: KeyLimitsSpec, priority?: unknown, turnAtMs?: number) => ({
  id,
  message: {
    ...(key ? { key } : {}), ...(priority !== undefined ? { priority } : {}), ...(turnAtMs !== undefined ? { [KEY_TURN_FIELD]: turnAtMs } : {}),
  },
  ...(limits ? { keyLimits: limits } : {}),
});
const cursors = (entries: Record<string, Partial<KeyCursor>>) =>
  new Map(Object.entries(entries).map(([key, cursor]) => [key, { asideUntil: {}, ...cursor }]));

describe('splitByKeyHorizon', () => {
  test('GIVEN a key whose j-th slot lands exactly at the horizon WHEN split THEN it is kept, the next one is set aside, and every later one of the key too', () => {
    const I = keyIntervalMs(spec(2), L);
    // Slots at now + lead + {0, I}: I = 515.5 ms <= 750; 2 I > 750.
    const horizon = I;
    const calls = [call('a1', 'a', spec(2)), call('a2', 'a', spec(2)), call('a3', 'a', spec(2)), call('u1')];
    const split = splitByKeyHorizon(calls, new Map(), timing, horizon);
    expect(split.keep.map((c) => c.id)).toEqual(['a1', 'a2', 'u1']);
    expect(split.aside.map((c) => c.id)).toEqual(['a3']);
    expect(split.keptPerKey).toEqual(new Map([['a', 2]]));
  });

  test('GIVEN a key paused by an operator WHEN split THEN all its calls are set aside, whatever its schedule', () => {
    const split = splitByKeyHorizon([call('p1', 'p', spec(50, { paused: true }))], new Map(), timing, DEFAULT_KEY_RESERVATION_HORIZON_MS);
    expect(split.aside.map((c) => c.id)).toEqual(['p1']);
  });

  test('GIVEN a key whose last slot is far ahead WHEN split THEN its call is set aside; a key without an item is kept', () => {
    const split = splitByKeyHorizon([call('b1', 'b', spec(5)), call('c1', 'c', spec(5))], cursors({ b: { lastSlotAtMs: T0 + 3000 } }), timing, 750);
    expect(split.aside.map((c) => c.id)).toEqual(['b1']);
    expect(split.keep.map((c) => c.id)).toEqual(['c1']);
  });
});

describe('splitByKeyHorizon with plans (another dispatcher keeping the key\'s next slots)', () => {
  const I = keyIntervalMs(spec(5), L);
  const planned = (by: number) => cursors({ k: { plannedUntil: { value: T0 + LEAD + 700, raw: String(T0 + LEAD + 700) }, plannedBy: by } });

  test('GIVEN another dispatcher\'s plan past the horizon WHEN split THEN the key\'s calls are set aside and nothing is planned', () => {
    const split = splitByKeyHorizon([call('a', 'k', spec(5))], planned(1), { ...timing, planOwner: 2 }, 500);
    expect(split.aside.map((c) => c.id)).toEqual(['a']);
    expect(split.plans).toEqual([]);
  });

  test('GIVEN this dispatcher\'s own plan WHEN split THEN it does not hold its own calls back, and the new plan is conditioned on the one read', () => {
    const split = splitByKeyHorizon([call('a', 'k', spec(5)), call('b', 'k', spec(5))], planned(2), { ...timing, planOwner: 2 }, 500);
    expect(split.keep.map((c) => c.id)).toEqual(['a', 'b']);
    expect(split.plans).toEqual([{ key: 'k', oldRaw: String(T0 + LEAD + 700), newValue: T0 + LEAD + 2 * I, owner: 2 }]);
  });
});

describe('splitByKeyHorizon: a hot key\'s line (issue 15, the hot key at 95 % of its limit)', () => {
  const I = keyIntervalMs(spec(10), L);
  const line = (end: number) => cursors({ k: { lastSlotAtMs: T0 + LEAD - I, asideUntil: { normal: { value: end, raw: String(end) } } } });

  test('GIVEN calls this dispatcher kept in an earlier round and another dispatcher\'s plan written after them WHEN split again THEN they stay kept and no plan is written', () => {
    const calls = [call('a', 'k', spec(10)), call('b', 'k', spec(10))];
    const plannedUntil = { value: T0 + LEAD + 2500, raw: String(T0 + LEAD + 2500) };
    const read = cursors({ k: { lastSlotAtMs: T0 + LEAD - I, plannedUntil, plannedBy: 1 } });
    const split = splitByKeyHorizon(calls, read, { ...timing, planOwner: 2 }, DEFAULT_KEY_RESERVATION_HORIZON_MS, () => true);
    expect(split.keep.map((c) => c.id)).toEqual(['a', 'b']);
    expect(split.plans).toEqual([]);
    // Not held (a new batch): the other dispatcher's plan sets them aside.
    expect(splitByKeyHorizon(calls, read, { ...timing, planOwner: 2 }, DEFAULT_KEY_RESERVATION_HORIZON_MS).aside.map((c) => c.id)).toEqual(['a', 'b']);
  });

  test('GIVEN requests back from a set-aside WHEN split THEN they are kept up to RETURN_EXTRA_HORIZON_MS past the horizon, a new request only to the horizon', () => {
    const fits = Math.floor((DEFAULT_KEY_RESERVATION_HORIZON_MS + RETURN_EXTRA_HORIZON_MS) / I) + 1;
    const returned = Array.from({ length: fits + 1 }, (_, j) => call(`r${j}`, 'k', spec(10), undefined, T0 + LEAD + j * I));
    const split = splitByKeyHorizon(returned, new Map(), timing, DEFAULT_KEY_RESERVATION_HORIZON_MS);
    expect(split.keep).toHaveLength(fits);
    expect(split.aside.map((c) => c.id)).toEqual([`r${fits}`]);
    const fresh = Array.from({ length: fits }, (_, j) => call(`n${j}`, 'k', spec(10)));
    expect(splitByKeyHorizon(fresh, new Map(), timing, DEFAULT_KEY_RESERVATION_HORIZON_MS).keep)
      .toHaveLength(Math.floor(DEFAULT_KEY_RESERVATION_HORIZON_MS / I) + 1);
  });

  test('GIVEN a key whose line of set-aside requests ends past a new request\'s slot WHEN split THEN the new request joins the line, the one back at its turn is kept', () => {
    const split = splitByKeyHorizon([call('r', 'k', spec(10), undefined, T0 + LEAD), call('n', 'k', spec(10))], line(T0 + 60_000), timing, 750);
    expect(split.keep.map((c) => c.id)).toEqual(['r']);
    expect(split.aside.map((c) => c.id)).toEqual(['n']);
    // A high request does not wait behind a line of normal ones.
    expect(splitByKeyHorizon([call('h', 'k', spec(10), 'high')], line(T0 + 60_000), timing, 750).keep.map((c) => c.id)).toEqual(['h']);
  });
});

describe('splitByKeyHorizon: held calls past the end of this dispatcher\'s own plan', () => {
  const I = keyIntervalMs(spec(10), L);
  const ownEnd = T0 + LEAD + 2 * I;
  const read = (plannedUntil: number, extra: Partial<KeyCursor> = {}) => cursors({
    k: { lastSlotAtMs: T0 + LEAD + I, plannedUntil: { value: plannedUntil, raw: String(plannedUntil) }, plannedBy: 1, ...extra },
  });
  const split = (cursor: ReturnType<typeof read>) =>
    splitByKeyHorizon([call('a', 'k', spec(10)), call('b', 'k', spec(10))], cursor, { ...timing, planOwner: 2 }, 750, () => true, () => ownEnd);

  test('GIVEN held calls whose slots reach this dispatcher\'s plan end WHEN another dispatcher planned after it THEN they are planned again after that plan, with a plan write conditioned on it', () => {
    const result = split(read(T0 + LEAD + 4 * I));
    expect(result.keep.map((c) => c.id)).toEqual(['a', 'b']);
    expect(result.planned.map((c) => c.id)).toEqual(['a', 'b']);
    expect(result.plans).toEqual([{ key: 'k', oldRaw: String(T0 + LEAD + 4 * I), newValue: T0 + LEAD + 6 * I, owner: 2 }]);
  });

  test('GIVEN the other dispatcher\'s plan ends past the horizon WHEN split THEN they are set aside; a key\'s line of set-aside requests does not take them (they were kept before it)', () => {
    expect(split(read(T0 + LEAD + 800)).aside.map((c) => c.id)).toEqual(['a', 'b']);
    const withLine = split(read(T0 + LEAD + 4 * I, { asideUntil: { normal: { value: T0 + 60_000, raw: String(T0 + 60_000) } } }));
    expect(withLine.keep.map((c) => c.id)).toEqual(['a', 'b']);
  });

  test('GIVEN held calls within this dispatcher\'s plan WHEN split THEN they are kept from the key\'s last slot and plan nothing', () => {
    const result = splitByKeyHorizon([call('a', 'k', spec(10))], read(T0 + LEAD + 4 * I), { ...timing, planOwner: 2 }, 750, () => true, () => T0 + LEAD + 3 * I);
    expect(result.keep.map((c) => c.id)).toEqual(['a']);
    expect(result.plans).toEqual([]);
    expect(result.planned).toEqual([]);
  });
});

describe('planSetAside: a request back at its turn keeps it', () => {
  const limits = spec(10);
  const I = keyIntervalMs(limits, L);
  const read = cursors({ k: { lastSlotAtMs: T0 + 3_000, asideUntil: { normal: { value: T0 + 200_000, raw: String(T0 + 200_000) } } } });

  test('GIVEN requests back from a set-aside and new ones WHEN set aside THEN those back go right after the slots held now, ahead of the line, the new ones at its end, each copy with its turn', () => {
    const aside = [call('r1', 'k', limits, undefined, T0 + 500), call('r2', 'k', limits, undefined, T0 + 600), call('n', 'k', limits)];
    const { plans, writes } = planSetAside(aside, read, timing, new Map([['k', 3]]));
    // The key's next free slot, after the 3 calls this batch holds.
    const front = T0 + 3_000 + I + 3 * I;
    expect(plans.map((p) => [p.item.id, p.turnAtMs])).toEqual([['r1', front], ['r2', front + I], ['n', T0 + 200_000]]);
    expect(plans.map((p) => p.delaySeconds)).toEqual([
      Math.floor((front - LEAD - SET_ASIDE_RETURN_MARGIN_MS - T0) / 1000),
      Math.floor((front + I - LEAD - SET_ASIDE_RETURN_MARGIN_MS - T0) / 1000),
      Math.floor((T0 + 200_000 - LEAD - SET_ASIDE_RETURN_MARGIN_MS - T0) / 1000),
    ]);
    expect(writes[0].cursors.normal).toEqual({ oldRaw: String(T0 + 200_000), newValue: T0 + 200_000 + I });
  });

  test('GIVEN a request back before its turn (a line beyond 900 s) WHEN set aside again THEN it keeps its own turn', () => {
    const { plans } = planSetAside([call('r', 'k', limits, undefined, T0 + 1_500_000)], read, timing, new Map());
    expect(plans.map((p) => [p.turnAtMs, p.delaySeconds])).toEqual([[T0 + 1_500_000, 900]]);
  });

  test('GIVEN the line\'s cursor write lost WHEN a new request is planned again THEN its copy carries no turn (back, it joins the line)', () => {
    const { plans } = planSetAside([call('n', 'k', limits)], read, timing, new Map(), false);
    expect(plans[0].turnAtMs).toBeUndefined();
  });
});

describe('planSetAside: when a set-aside request comes back', () => {
  test('GIVEN a key an hour behind WHEN planned THEN the delay is capped at 900 s (it comes back every 15 minutes)', () => {
    const { plans } = planSetAside([call('x', 'k', spec(1))], cursors({ k: { lastSlotAtMs: T0 + 3_600_000 } }), timing, new Map());
    expect(plans.map((p) => p.delaySeconds)).toEqual([900]);
  });

  test('GIVEN random cursors, rates and counts WHEN planned THEN every request returns at most 1 s before, and never after, lead + margin before its estimated slot', () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let run = 0; run < 500; run++) {
      const rps = [0.5, 1, 2, 5, 20][Math.floor(random() * 5)];
      const limits = spec(rps);
      const I = keyIntervalMs(limits, L);
      const last = T0 + Math.floor(random() * 20_000) - 2_000;
      const asideNormal = random() < 0.5 ? last + random() * 30_000 : undefined;
      const kept = Math.floor(random() * 3);
      const n = 1 + Math.floor(random() * 5);
      const aside = Array.from({ length: n }, (_, j) => call(`m${j}`, 'k', limits));
      const asideUntil = asideNormal ? { normal: { value: asideNormal, raw: String(asideNormal) } } : {};
      const read = cursors({ k: { lastSlotAtMs: last, asideUntil } });
      const { plans, writes } = planSetAside(aside, read, timing, new Map([['k', kept]]));
      plans.forEach((plan, j) => {
        const target = Math.max(Math.max(last + I, T0 + LEAD) + kept * I, asideNormal ?? -Infinity) + j * I - LEAD - SET_ASIDE_RETURN_MARGIN_MS;
        const returnAt = T0 + plan.delaySeconds * 1000;
        // Within SQS' delays (0 to 900 s), the rounding is the only error.
        if (target - T0 >= 0 && target - T0 < 900_000) {
          expect(returnAt).toBeLessThanOrEqual(target);
          expect(returnAt).toBeGreaterThan(target - 1000);
        }
      });
      expect(writes).toEqual([{ key: 'k', cursors: { normal: { ...(asideNormal ? { oldRaw: String(asideNormal) } : {}), newValue: expect.any(Number) } } }]);
    }
  });

  test('GIVEN high and normal requests set aside WHEN planned THEN the normal ones are placed after the high ones and after the high cursor', () => {
    const limits = spec(1);
    const I = keyIntervalMs(limits, L);
    const read = cursors({ k: { lastSlotAtMs: T0 + 5_000, asideUntil: { high: { value: T0 + 12_000, raw: String(T0 + 12_000) } } } });
    const { plans, writes } = planSetAside([call('n', 'k', limits), call('h', 'k', limits, 'high')], read, timing, new Map());
    const back = (slot: number) => Math.floor((slot - LEAD - SET_ASIDE_RETURN_MARGIN_MS - T0) / 1000);
    expect(Object.fromEntries(plans.map((p) => [p.item.id, p.delaySeconds]))).toEqual({ h: back(T0 + 12_000), n: back(T0 + 12_000 + I) });
    expect(writes[0].cursors).toEqual({
      high: { oldRaw: String(T0 + 12_000), newValue: T0 + 12_000 + I },
      normal: { newValue: T0 + 12_000 + 2 * I },
    });
  });

  test('GIVEN the fallback (cursor write lost) WHEN planned THEN the advisory cursors are ignored and nothing is written', () => {
    const limits = spec(1);
    const I = keyIntervalMs(limits, L);
    const read = cursors({ k: { lastSlotAtMs: T0 + 5_000, asideUntil: { normal: { value: T0 + 60_000, raw: String(T0 + 60_000) } } } });
    const { plans, writes } = planSetAside([call('n', 'k', limits)], read, timing, new Map(), false);
    expect(plans[0].delaySeconds).toBe(Math.floor((T0 + 5_000 + I - LEAD - SET_ASIDE_RETURN_MARGIN_MS - T0) / 1000));
    expect(writes).toEqual([]);
  });

  test('GIVEN a priority that is not one WHEN set aside THEN it counts as normal', () => {
    expect(setAsidePriorityOf(call('x', 'k', spec(1), 'urgent'))).toBe('normal');
    expect(setAsidePriorityOf(call('x', 'k', spec(1), 'low'))).toBe('low');
  });
});
