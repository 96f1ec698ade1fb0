/**
 * The per-key part of a dispatcher's reservation rounds (dispatch-keys.ts `prepareKeyRound`,
 * `HeldKeyCalls`): calls a dispatcher holds across rounds stay out of the slots another dispatcher
 * planned for its own calls, so that two dispatchers do not wake for the same slot of a key and
 * waste a contract slot on a lost key write (issue 15, `KeySlotsWasted`).
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { inMemoryPacerTable, PacerTableFake } from './pacer-table-fake';
import { HeldKeyCalls, prepareKeyRound } from '../../src/rate-controlled-queue-consumer/dispatch-keys';
import {
  KEY_LAST_SLOT_ATTRIBUTE, KEY_PLANNED_BY_ATTRIBUTE, KEY_PLANNED_UNTIL_ATTRIBUTE, keyIntervalMs, keyLimitName,
} from '../../src/rate-controlled-queue-consumer/key-schedule';
import type { KeyLimitsSpec } from '../../src/shared/key-limits';

const ddb = mockClient(DynamoDBClient);
const T0 = 1_800_000_000_000;
const L = 30;
const LEAD = 1000;
const HORIZON = 750;
const TABLE = 'pacer';
const SPEC: KeyLimitsSpec = { requestsPerSecond: 10, quotas: {}, priorityAgingMs: 30_000, paused: false };
const I = keyIntervalMs(SPEC, L);
/** The other dispatcher's plan: it keeps the key's slots up to here. */
const P = T0 + LEAD + 3 * I;

const call = (id: string) => ({ id, message: { key: 'k' }, keyLimits: SPEC });
const timing = (nowMs: number, planOwner: number) => ({ nowMs, leadMs: LEAD, latenessToleranceMs: L, planOwner });
const round = (calls: ReturnType<typeof call>[], nowMs: number, held: HeldKeyCalls<ReturnType<typeof call>>) =>
  prepareKeyRound(calls, new DynamoDBClient({}), TABLE, timing(nowMs, 2), HORIZON, undefined, held);
const ids = (calls: { id: string }[]) => calls.map((c) => c.id);

let table: PacerTableFake;
const setKeyItem = (item: Record<string, number>) => table.items.set('key-pacer#k', Object.fromEntries(Object.entries(item).map(([name, n]) => [name, String(n)])));
const keyItem = () => table.items.get('key-pacer#k')!;
/** The key's last slot the round's reservation is limited by (`e_k - I_k`). */
const lastSlotLimit = (limits: { limits: Record<string, { lastSlotMs?: number }> } | undefined) => limits?.limits[keyLimitName('k')].lastSlotMs;

beforeEach(() => {
  ddb.reset();
  table = inMemoryPacerTable(ddb);
});

describe('prepareKeyRound: calls held across rounds (HeldKeyCalls)', () => {
  /** Round 1 of dispatcher 2: another dispatcher (1) planned the key's slots up to P; a and b are kept after it. */
  const keptAfterOthersPlan = async () => {
    setKeyItem({ [KEY_LAST_SLOT_ATTRIBUTE]: T0 + LEAD - I, [KEY_PLANNED_UNTIL_ATTRIBUTE]: P, [KEY_PLANNED_BY_ATTRIBUTE]: 1 });
    const held = new HeldKeyCalls<ReturnType<typeof call>>();
    const first = await round([call('a'), call('b')], T0, held);
    first.keep.forEach((c) => held.add(c));
    return { held, first };
  };

  test('GIVEN calls kept after another dispatcher\'s plan WHEN it fires a slot of the key and a later round reserves them THEN they are still limited from that plan\'s end, also after a lost contract race (re-read), not from the key\'s last slot', async () => {
    const { held, first } = await keptAfterOthersPlan();
    expect(ids(first.keep)).toEqual(['a', 'b']);
    expect(lastSlotLimit(first.externalLimits)).toBe(P - I);
    expect(keyItem()[KEY_PLANNED_UNTIL_ATTRIBUTE]).toBe(String(P + 2 * I));
    // Dispatcher 1 fires its held call at T0 + LEAD: the key's last slot is now before P.
    setKeyItem({ ...Object.fromEntries(Object.entries(keyItem()).map(([name, n]) => [name, Number(n)])), [KEY_LAST_SLOT_ATTRIBUTE]: T0 + LEAD });

    const second = await round(first.keep, T0 + 100, held);
    expect(ids(second.keep)).toEqual(['a', 'b']);
    // Without HeldKeyCalls' plan floor: T0 + LEAD, the slot dispatcher 1 reserves next for its own held calls.
    expect(lastSlotLimit(second.externalLimits)).toBe(P - I);
    expect(lastSlotLimit(await second.rereadExternalLimits())).toBe(P - I);
    // Held calls within this dispatcher's plan write no plan.
    expect(keyItem()[KEY_PLANNED_UNTIL_ATTRIBUTE]).toBe(String(P + 2 * I));
  });

  test('GIVEN a held call past the end of this dispatcher\'s own plan and another dispatcher planned after it WHEN split again THEN it is planned again after that plan (its own plan written, conditioned on the other\'s), not reserved from the key\'s last slot', async () => {
    const { held, first } = await keptAfterOthersPlan();
    const b = first.keep[1];
    // a fired one slot late (P + I, its round lost a contract race): b would need P + 2I, this
    // dispatcher's plan end, where dispatcher 3 planned its first call.
    setKeyItem({ [KEY_LAST_SLOT_ATTRIBUTE]: P + I, [KEY_PLANNED_UNTIL_ATTRIBUTE]: P + 3 * I, [KEY_PLANNED_BY_ATTRIBUTE]: 3 });

    const second = await round([b], T0 + 200, held);
    expect(ids(second.keep)).toEqual(['b']);
    expect(lastSlotLimit(second.externalLimits)).toBe(P + 3 * I - I);
    expect(keyItem()[KEY_PLANNED_UNTIL_ATTRIBUTE]).toBe(String(P + 4 * I));
    expect(keyItem()[KEY_PLANNED_BY_ATTRIBUTE]).toBe('2');
    // Within its new plan, the next round keeps it there without writing again.
    const writes = table.writes.length;
    const third = await round([b], T0 + 250, held);
    expect(lastSlotLimit(third.externalLimits)).toBe(P + 3 * I - I);
    expect(table.writes).toHaveLength(writes);
  });

  test('GIVEN a held call within this dispatcher\'s plan and one past it WHEN the second one\'s new plan loses (another dispatcher planned meanwhile) THEN only that one is set aside; the first stays kept', async () => {
    const { held, first } = await keptAfterOthersPlan();
    const c = call('c');
    held.add(c);
    // a fired at P: b fits before this dispatcher's plan end (P + 2I), c does not.
    setKeyItem({ [KEY_LAST_SLOT_ATTRIBUTE]: P, [KEY_PLANNED_UNTIL_ATTRIBUTE]: P + 3 * I, [KEY_PLANNED_BY_ATTRIBUTE]: 3 });
    table.beforeWrite = (_pk, input) => {
      if (input.ExpressionAttributeNames?.['#p'] === KEY_PLANNED_UNTIL_ATTRIBUTE) {
        keyItem()[KEY_PLANNED_UNTIL_ATTRIBUTE] = String(P + 5 * I);
      }
    };

    const second = await round([first.keep[1], c], T0 + 200, held);
    expect(ids(second.keep)).toEqual(['b']);
    expect(ids(second.aside)).toEqual(['c']);
    // b's limit: the key's last slot (a's), later than the plan it was kept after.
    expect(lastSlotLimit(second.externalLimits)).toBe(P);
  });
});
