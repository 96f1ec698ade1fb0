/**
 * Per-key rates with the overall contract (key-schedule.ts; design docs/design/per-key-limits.md
 * 1.3): the contract slot first, then one conditional write per key; a call fires only after both.
 */
import { BatchGetItemCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { inMemoryPacerTable } from './pacer-table-fake';
import { HeldKeyCalls, prepareKeyRound } from '../../src/rate-controlled-queue-consumer/dispatch-keys';
import {
  confirmKeySlots, interleaveByKey, KEY_LAST_SLOT_ATTRIBUTE, KEY_PAUSED_UNTIL_ATTRIBUTE, KeyedCall, keyExternalLimits, keyIntervalMs,
  keyLimitName, readKeyCursors,
} from '../../src/rate-controlled-queue-consumer/key-schedule';
import { assignLimitedSlots } from '../../src/rate-controlled-queue-consumer/named-limit-schedule';
import { maxInAnyWindow, NEXT_SLOT_ATTRIBUTE, reserveSlots, slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';
import type { KeyLimitsSpec } from '../../src/shared/key-limits';

const ddb = mockClient(DynamoDBClient);
const L = 30;
const T0 = 1_800_000_000_000;
const TABLE = 'pacer-table';

const limits = (requestsPerSecond: number, extra: Partial<KeyLimitsSpec> = {}): KeyLimitsSpec =>
  ({ requestsPerSecond, quotas: {}, priorityAgingMs: 30_000, paused: false, ...extra });
const call = (key: string | undefined, rps = 2, id = ''): KeyedCall & { id: string } =>
  ({ id, message: key === undefined ? {} : { key }, ...(key === undefined ? {} : { keyLimits: limits(rps) }) });

beforeEach(() => ddb.reset());

describe('assignLimitedSlots with external limits (a key per call)', () => {
  const I = slotIntervalMs(100, L);
  const candidates = Array.from({ length: 10 }, (_, k) => T0 + k * I);

  test('GIVEN a hot key with three calls and a quiet key WHEN assigned THEN the hot key gets one slot (its interval is longer), the quiet key the next, and the assignment stops at the first candidate nobody can use', () => {
    const Ik = slotIntervalMs(2, L);
    const assignment = assignLimitedSlots(candidates, { limits: [], callLimits: [[], [], [], []] }, {}, L, {
      limits: { 'key:hot': { intervalMs: Ik }, 'key:quiet': { intervalMs: Ik } },
      callLimits: [['key:hot'], ['key:hot'], ['key:hot'], ['key:quiet']],
    });
    expect(assignment.slots).toEqual([candidates[0], candidates[1]]);
    expect(assignment.callIndexes).toEqual([0, 3]);
    expect(assignment.externalLastSlots).toEqual({ 'key:hot': candidates[0], 'key:quiet': candidates[1] });
    expect(assignment.movedLastSlots).toEqual({});
    // The hot key's next room, what the dispatcher waits for; no NamedLimitWaits metric per key.
    expect(assignment.limitedUntilMs).toBe(candidates[0] + Ik);
    expect(assignment.limitWaits).toBeUndefined();
  });

  test('GIVEN a key whose last slot is recent WHEN assigned THEN no contract slot before its room is taken, and its first slot is at least I_k after it', () => {
    const Ik = slotIntervalMs(50, L);
    const assignment = assignLimitedSlots(candidates, { limits: [], callLimits: [[]] }, {}, L, {
      limits: { 'key:a': { intervalMs: Ik, lastSlotMs: T0 - 5 } }, callLimits: [['key:a']],
    });
    // The contract's next slots come before the key has room: none is taken (the contract's cursor
    // is not pushed ahead by a full key), and the key's room is what the dispatcher waits for.
    expect(assignment.slots).toEqual([]);
    expect(assignment.limitedUntilMs).toBe(T0 - 5 + Ik);
    const later = assignLimitedSlots(candidates.map((c) => c + Ik), { limits: [], callLimits: [[]] }, {}, L, {
      limits: { 'key:a': { intervalMs: Ik, lastSlotMs: T0 - 5 } }, callLimits: [['key:a']],
    });
    expect(later.slots).toEqual([T0 + Ik]);
  });

  test('GIVEN external limits for a different number of calls WHEN assigned THEN it throws', () => {
    expect(() => assignLimitedSlots(candidates, { limits: [], callLimits: [[]] }, {}, L, { limits: {}, callLimits: [] })).toThrow(/1 calls wait/);
  });
});

describe('interleaveByKey', () => {
  test('GIVEN one key\'s many calls ahead of others WHEN interleaved THEN keys take turns, each key in its order, unkeyed calls in the first round', () => {
    const calls = [call('hot', 2, 'h1'), call('hot', 2, 'h2'), call('hot', 2, 'h3'), call('quiet', 2, 'q1'), call(undefined, 2, 'u'), call('quiet', 2, 'q2')];
    expect(interleaveByKey(calls).map((c) => c.id)).toEqual(['h1', 'q1', 'u', 'h2', 'q2', 'h3']);
  });

  test('GIVEN calls in priority order WHEN interleaved with their ranks THEN turns by key happen within each priority, never a lower one before a higher one', () => {
    const calls = [call('hot', 2, 'h1'), call('hot', 2, 'h2'), call('hot', 2, 'h3'), call('quiet', 2, 'q-low')];
    const rank = (c: { id: string }) => (c.id === 'q-low' ? 2 : 0);
    expect(interleaveByKey(calls, rank).map((c) => c.id)).toEqual(['h1', 'h2', 'h3', 'q-low']);
    expect(interleaveByKey(calls).map((c) => c.id)).toEqual(['h1', 'q-low', 'h2', 'h3']);
  });
});

describe('readKeyCursors', () => {
  test('GIVEN more than 100 keys and unprocessed keys WHEN read THEN BatchGetItem is called per 100, consistently, and unprocessed keys are read again', async () => {
    const table = inMemoryPacerTable(ddb);
    table.items.set('key-pacer#k7', { [KEY_LAST_SLOT_ATTRIBUTE]: String(T0), [KEY_PAUSED_UNTIL_ATTRIBUTE]: String(T0 + 9), 'asideUntilMs#high': String(T0 + 5) });
    table.unprocessedOnce.add('key-pacer#k7');
    const keys = Array.from({ length: 150 }, (_, i) => `k${i}`);
    const cursors = await readKeyCursors(new DynamoDBClient({}), TABLE, [...keys, 'k7']);
    expect(cursors.size).toBe(150);
    expect(cursors.get('k7')).toEqual({ lastSlotAtMs: T0, pausedUntilMs: T0 + 9, asideUntil: { high: { value: T0 + 5, raw: String(T0 + 5) } } });
    expect(cursors.get('k8')).toEqual({ asideUntil: {} });
    expect(ddb.commandCalls(BatchGetItemCommand).map((c) => c.args[0].input.RequestItems![TABLE].Keys!.length)).toEqual([100, 1, 50]);
  });

  test('GIVEN keys that stay unprocessed WHEN read THEN it backs off exponentially between rounds, then throws (nothing may start without its key read)', async () => {
    ddb.on(BatchGetItemCommand).callsFake(async (input) => ({ UnprocessedKeys: input.RequestItems }));
    const waits: number[] = [];
    await expect(readKeyCursors(new DynamoDBClient({}), TABLE, ['a'], async (ms) => {
      waits.push(ms);
    })).rejects.toThrow(/still unprocessed after 4 BatchGetItem calls/);
    expect(waits).toEqual([25, 100, 400]);
    expect(ddb.commandCalls(BatchGetItemCommand)).toHaveLength(4);
  });
});

describe('confirmKeySlots (steps 3 and 4)', () => {
  const Ik = keyIntervalMs(limits(2), L);
  const I = slotIntervalMs(100, L);
  const confirm = (calls: (KeyedCall & { id: string })[], slots: number[], callIndexes: number[], cursors = new Map(), extra = {}) =>
    confirmKeySlots({ dynamodb: new DynamoDBClient({}), tableName: TABLE, latenessToleranceMs: L, calls, slots, callIndexes, cursors, ...extra });

  test('GIVEN free keys WHEN confirmed THEN one conditional write per key stores its last slot, its interval and a TTL, and every slot is given', async () => {
    const table = inMemoryPacerTable(ddb);
    const calls = [call('a', 2, 'a1'), call('b', 2, 'b1'), call(undefined, 2, 'u')];
    const result = await confirm(calls, [T0, T0 + I, T0 + 2 * I], [0, 1, 2]);
    expect(result.given.map((g) => g.item.id)).toEqual(['a1', 'b1', 'u']);
    expect(result.wasted).toBe(0);
    expect(table.items.get('key-pacer#a')).toEqual({ lastSlotAtMs: String(T0), intervalMs: String(Ik), expiresAt: String(Math.ceil((T0 + 86_400_000) / 1000)) });
    expect(table.items.get('key-pacer#b')![KEY_LAST_SLOT_ATTRIBUTE]).toBe(String(T0 + I));
    expect(table.writes).toHaveLength(2);
  });

  test('GIVEN another reserver stored a slot of the key in between WHEN the key write loses THEN the re-read keeps the slots still I_k after it (kept) and writes again', async () => {
    const table = inMemoryPacerTable(ddb);
    const rps = 20;
    const Ik20 = keyIntervalMs(limits(rps), L);
    // Ours: T0 and T0 + Ik20 for key a. Another reserver stored T0 - 10 meanwhile (ours read nothing).
    table.items.set('key-pacer#a', { [KEY_LAST_SLOT_ATTRIBUTE]: String(T0 - 10) });
    const calls = [call('a', rps, 'a1'), call('a', rps, 'a2')];
    const result = await confirm(calls, [T0, T0 + Ik20], [0, 1]);
    // T0 < T0 - 10 + Ik20: dropped; T0 + Ik20 >= T0 - 10 + Ik20: kept. No other key to take T0: wasted.
    expect(result.given.map((g) => [g.slot, g.item.id])).toEqual([[T0 + Ik20, 'a2']]);
    expect(result).toMatchObject({ wasted: 1, lostWrites: 1 });
    expect(table.items.get('key-pacer#a')![KEY_LAST_SLOT_ATTRIBUTE]).toBe(String(T0 + Ik20));
  });

  test('GIVEN a lost key write WHEN another key of the batch has room at the dropped slot THEN the slot is reassigned to it, with its own key write', async () => {
    const table = inMemoryPacerTable(ddb);
    table.items.set('key-pacer#a', { [KEY_LAST_SLOT_ATTRIBUTE]: String(T0 - 10) });
    // b's call got no slot in the reservation (a's was first in order); it can take a's dropped slot.
    const calls = [call('a', 2, 'a1'), call('b', 2, 'b1')];
    const result = await confirm(calls, [T0], [0]);
    expect(result.given.map((g) => [g.slot, g.item.id])).toEqual([[T0, 'b1']]);
    expect(result).toMatchObject({ wasted: 0, lostWrites: 1 });
    expect(table.items.get('key-pacer#b')![KEY_LAST_SLOT_ATTRIBUTE]).toBe(String(T0));
    expect(table.items.get('key-pacer#a')![KEY_LAST_SLOT_ATTRIBUTE]).toBe(String(T0 - 10));
  });

  test('GIVEN a lost key write WHEN the only other call is bound by a named limit the slot was not reserved under THEN it is not reassigned (wasted)', async () => {
    const table = inMemoryPacerTable(ddb);
    table.items.set('key-pacer#a', { [KEY_LAST_SLOT_ATTRIBUTE]: String(T0 - 10) });
    const calls = [call('a', 2, 'a1'), call('b', 2, 'b1')];
    const result = await confirm(calls, [T0], [0], new Map(), { namedLimitsOf: (c: { id: string }) => (c.id === 'b1' ? ['results'] : []) });
    expect(result.given).toEqual([]);
    expect(result.wasted).toBe(1);
    expect(table.items.has('key-pacer#b')).toBe(false);
  });

  test('GIVEN a key paused after the read WHEN its write is evaluated THEN it loses, the re-read drops every slot inside the pause, nothing of the key fires', async () => {
    const table = inMemoryPacerTable(ddb);
    table.items.set('key-pacer#a', { [KEY_PAUSED_UNTIL_ATTRIBUTE]: String(T0 + 60_000) });
    const result = await confirm([call('a', 2, 'a1')], [T0], [0]);
    expect(result.given).toEqual([]);
    expect(result).toMatchObject({ wasted: 1, lostWrites: 1 });
    expect(table.items.get('key-pacer#a')![KEY_LAST_SLOT_ATTRIBUTE]).toBeUndefined();
  });

  test('GIVEN the invocation dies at a key write (crash between the contract write and the key write) THEN none of that key\'s calls fire; the other key\'s do', async () => {
    const table = inMemoryPacerTable(ddb);
    table.beforeWrite = (pk) => {
      if (pk === 'key-pacer#a') {
        throw new Error('Runtime.ExitError');
      }
    };
    const errors: string[] = [];
    const result = await confirm([call('a', 2, 'a1'), call('b', 2, 'b1')], [T0, T0 + I], [0, 1], new Map(), { onWriteError: (key: string) => errors.push(key) });
    expect(result.given.map((g) => g.item.id)).toEqual(['b1']);
    expect(result.wasted).toBe(1);
    expect(errors).toEqual(['a']);
  });
});

describe('property: interleaved reservers on fake time never exceed a key\'s rate or the contract', () => {
  test('GIVEN 3 reservers, 4 keys, random round trips, random crashes WHEN they reserve over thousands of interleavings THEN every key and the contract keep their bound, and every fired call had both writes', async () => {
    const R = 20;
    const keyRates: Record<string, number> = { hot: 5, warm: 3, quiet: 2, slow: 0.5 };
    const keys = Object.keys(keyRates);
    // Deterministic pseudo-random (a linear congruential generator), so a failure reproduces.
    let seed = 20261207;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let now = T0;
    const table = inMemoryPacerTable(ddb, () => { now += random() * 4; });
    const clock = { now: () => now, sleep: async (ms: number) => { now += ms; await new Promise((r) => setImmediate(r)); } };
    let crashes = 0;
    table.beforeWrite = (pk) => {
      if (pk.startsWith('key-pacer#') && random() < 0.03) {
        crashes++;
        throw new Error('Runtime.ExitError: the invocation died between its writes');
      }
    };
    const fired: { key: string; slot: number }[] = [];
    let wasted = 0;
    let lostWrites = 0;
    let reservations = 0;
    const rereadKeys = process.env.NO_REREAD !== '1';
    const reserver = async () => {
      for (let round = 0; round < 60; round++) {
        const calls = Array.from({ length: 1 + Math.floor(random() * 6) }, () => {
          const key = keys[Math.floor(random() * (keys.length + 1))];
          return key === undefined ? call(undefined) : call(key, keyRates[key]);
        });
        const keysOf = calls.flatMap((c) => (c.keyLimits ? [c.message.key!] : []));
        let cursors = await readKeyCursors(new DynamoDBClient({}), TABLE, keysOf);
        const ordered = interleaveByKey(calls);
        const reservation = await reserveSlots({
          dynamodb: new DynamoDBClient({}),
          tableName: TABLE,
          requested: ordered.length,
          requestsPerSecond: R,
          latenessToleranceMs: L,
          maxWaitMs: 1_500,
          minLeadMs: 200,
          clock,
          random,
          ...keyExternalLimits(ordered, cursors, L),
          ...(rereadKeys ? {
            rereadExternalLimits: async () => {
              cursors = await readKeyCursors(new DynamoDBClient({}), TABLE, keysOf);
              return keyExternalLimits(ordered, cursors, L).externalLimits!;
            },
          } : {}),
        });
        reservations++;
        const confirmed = await confirmKeySlots({
          dynamodb: new DynamoDBClient({}),
          tableName: TABLE,
          latenessToleranceMs: L,
          calls: ordered,
          slots: reservation.slots,
          callIndexes: reservation.callIndexes ?? reservation.slots.map((_, k) => k),
          cursors,
        });
        wasted += confirmed.wasted;
        lostWrites += confirmed.lostWrites;
        fired.push(...confirmed.given.map((g) => ({ key: g.item.message.key ?? '', slot: g.slot })));
        await clock.sleep(random() * 150);
      }
    };
    await Promise.all([reserver(), reserver(), reserver()]);

    expect(fired.length).toBeGreaterThan(200);
    expect(crashes).toBeGreaterThan(0);
    const all = fired.map((f) => f.slot);
    expect(new Set(all).size).toBe(all.length);
    // Slots (before L's spread): any span of 1000 + L ms holds at most floor(R) contract slots and floor(R_k) of key k.
    expect(maxInAnyWindow(all, 1000 + L, true)).toBeLessThanOrEqual(R);
    for (const key of keys) {
      const ofKey = fired.filter((f) => f.key === key).map((f) => f.slot);
      const bound = keyRates[key] >= 1 ? Math.floor(keyRates[key]) : 1;
      const windowMs = keyRates[key] >= 1 ? 1000 + L : 1000 / keyRates[key] + L;
      expect(maxInAnyWindow(ofKey, windowMs, true)).toBeLessThanOrEqual(bound);
    }
    // Both writes: every fired slot lies in a successful contract write's range and in one of its key's successful writes.
    // A reservation moved behind the winners (pacer.ts "Contention") adds its span to the next slot.
    const contractWrites = table.writes.filter((w) => w.pk === 'pacer').map((w) => {
      const from = w.before[NEXT_SLOT_ATTRIBUTE] === undefined ? -Infinity : Number(w.before[NEXT_SLOT_ATTRIBUTE]);
      const values = w.input.ExpressionAttributeValues!;
      return { from, to: values[':new'] ? Number(values[':new'].N) : from + Number(values[':span'].N) };
    });
    const keyWrites = table.writes.filter((w) => w.pk.startsWith('key-pacer#') && w.input.ExpressionAttributeValues![':first']).map((w) => ({
      key: w.pk.slice('key-pacer#'.length), first: Number(w.input.ExpressionAttributeValues![':first'].N), last: Number(w.input.ExpressionAttributeValues![':last'].N),
    }));
    for (const f of fired) {
      expect(contractWrites.some((w) => w.from <= f.slot && f.slot < w.to)).toBe(true);
      if (f.key !== '') {
        expect(keyWrites.some((w) => w.key === f.key && w.first <= f.slot && f.slot <= w.last)).toBe(true);
      }
    }
    // Waste: contract slots whose key write lost (or crashed) and that no other call could take. This
    // scenario is adversarial (three reservers oversubscribing four keys without pause: about a quarter
    // of key writes lose, about 16 % of the slots reserved are wasted at this seed); the benchmark measures
    // realistic rows. A guard against a regression, not a target.
    expect(lostWrites).toBeGreaterThan(0);
    expect(wasted / (fired.length + wasted)).toBeLessThan(0.25);
    expect(reservations).toBe(180);
  }, 20_000);
});

describe('property: dispatchers holding calls across rounds (plans, HeldKeyCalls) on fake time never exceed a key\'s rate or the contract', () => {
  test('GIVEN 3 dispatchers keeping batches across rounds (plans, calls kept after another\'s plan, re-plans past their own plan), random round trips, random crashes WHEN they reserve THEN every key and the contract keep their bound, and every fired call had both writes', async () => {
    const R = 20;
    const LEAD = 200;
    const keyRates: Record<string, number> = { hot: 5, warm: 3, quiet: 2, slow: 0.5 };
    const keys = Object.keys(keyRates);
    let seed = 20261208;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let now = T0;
    const table = inMemoryPacerTable(ddb, () => { now += random() * 4; });
    const clock = { now: () => now, sleep: async (ms: number) => { now += ms; await new Promise((r) => setImmediate(r)); } };
    let crashes = 0;
    table.beforeWrite = (pk) => {
      if (pk.startsWith('key-pacer#') && random() < 0.03) {
        crashes++;
        throw new Error('Runtime.ExitError: the invocation died between its writes');
      }
    };
    type Call = ReturnType<typeof call>;
    const fired: { key: string; slot: number }[] = [];
    let wasted = 0;
    let heldAfterOthersPlan = 0;
    let replanned = 0;
    const dispatcher = async (owner: number) => {
      let pending: Call[] = [];
      let held = new HeldKeyCalls<Call>();
      for (let round = 0; round < 150; round++) {
        if (pending.length === 0) {
          // A new batch (a new invocation): mostly the hot key, as in keys-100-hot90.
          pending = Array.from({ length: 1 + Math.floor(random() * 8) }, (_, j) => {
            const key = random() < 0.6 ? 'hot' : keys[Math.floor(random() * (keys.length + 1))];
            return key === undefined ? call(undefined, 2, `${owner}-${round}-${j}`) : call(key, keyRates[key], `${owner}-${round}-${j}`);
          });
          held = new HeldKeyCalls<Call>();
        }
        const plansBefore = new Map(keys.map((key) => [key, held.ownPlanEnd(key)]));
        const timing = { nowMs: now, leadMs: LEAD, latenessToleranceMs: L, planOwner: owner };
        const keyRound = await prepareKeyRound(pending, new DynamoDBClient({}), TABLE, timing, 750, undefined, held);
        for (const c of keyRound.keep) {
          if (held.has(c) && held.planKeptAfter(c) !== undefined) heldAfterOthersPlan++;
          if (held.has(c) && held.ownPlanEnd(c.message.key!) !== plansBefore.get(c.message.key!)) replanned++;
          held.add(c);
        }
        pending = keyRound.keep;
        if (pending.length === 0) continue;
        const reservation = await reserveSlots({
          dynamodb: new DynamoDBClient({}),
          tableName: TABLE,
          requested: pending.length,
          requestsPerSecond: R,
          latenessToleranceMs: L,
          maxWaitMs: 1_500,
          minLeadMs: LEAD,
          clock,
          random,
          ...(keyRound.externalLimits ? { externalLimits: keyRound.externalLimits, rereadExternalLimits: keyRound.rereadExternalLimits } : {}),
        });
        const confirmed = await confirmKeySlots({
          dynamodb: new DynamoDBClient({}),
          tableName: TABLE,
          latenessToleranceMs: L,
          calls: pending,
          slots: reservation.slots,
          callIndexes: reservation.callIndexes ?? reservation.slots.map((_, k) => k),
          cursors: keyRound.cursors,
        });
        wasted += confirmed.wasted;
        fired.push(...confirmed.given.map((g) => ({ key: g.item.message.key ?? '', slot: g.slot })));
        pending = pending.filter((c) => !confirmed.given.some((g) => g.item === c));
        // As the dispatcher: with nothing given, wake a little before the key's room; else a random pause.
        const limitedUntil = confirmed.given.length === 0 ? reservation.limitedUntilMs : undefined;
        await clock.sleep(limitedUntil !== undefined ? Math.max(1, limitedUntil - LEAD - 50 - now) : random() * 60);
      }
    };
    await Promise.all([dispatcher(1), dispatcher(2), dispatcher(3)]);
    expect(fired.length).toBeGreaterThan(200);
    expect(crashes).toBeGreaterThan(0);
    expect(heldAfterOthersPlan).toBeGreaterThan(0);
    expect(replanned).toBeGreaterThan(0);
    const all = fired.map((f) => f.slot);
    expect(new Set(all).size).toBe(all.length);
    expect(maxInAnyWindow(all, 1000 + L, true)).toBeLessThanOrEqual(R);
    for (const key of keys) {
      const ofKey = fired.filter((f) => f.key === key).map((f) => f.slot);
      const bound = keyRates[key] >= 1 ? Math.floor(keyRates[key]) : 1;
      const windowMs = keyRates[key] >= 1 ? 1000 + L : 1000 / keyRates[key] + L;
      expect(maxInAnyWindow(ofKey, windowMs, true)).toBeLessThanOrEqual(bound);
    }
    const keyWrites = table.writes.filter((w) => w.pk.startsWith('key-pacer#') && w.input.ExpressionAttributeValues![':first']).map((w) => ({
      key: w.pk.slice('key-pacer#'.length), first: Number(w.input.ExpressionAttributeValues![':first'].N), last: Number(w.input.ExpressionAttributeValues![':last'].N),
    }));
    for (const f of fired.filter((x) => x.key !== '')) {
      expect(keyWrites.some((w) => w.key === f.key && w.first <= f.slot && f.slot <= w.last)).toBe(true);
    }
    // Adversarial (small batches of four keys at 60 % hot, a 20 rps contract, crashes at 3 % of key
    // writes): about 22 % of the slots reserved are wasted at this seed. A guard, not a target: the
    // benchmark measures realistic rows.
    expect(wasted / (fired.length + wasted)).toBeLessThan(0.25);
  }, 20_000);
});

describe('keyExternalLimits', () => {
  test('GIVEN no key limited call WHEN asked THEN nothing (the reservation is the one without keys)', () => {
    expect(keyExternalLimits([call(undefined)], new Map(), L)).toEqual({});
  });
  test('GIVEN a paused key (its own vendor pause) WHEN asked THEN its next free slot is the pause\'s end', () => {
    const Ik = keyIntervalMs(limits(2), L);
    const { externalLimits } = keyExternalLimits([call('a')], new Map([['a', { pausedUntilMs: T0 + 5000, asideUntil: {} }]]), L);
    expect(externalLimits!.limits[keyLimitName('a')]).toEqual({ intervalMs: Ik, lastSlotMs: T0 + 5000 - Ik });
  });
});
