/**
 * The per-key part of a dispatcher's reservation round (issue 15; design:
 * docs/design/per-key-limits.md, 1.3 and 3.1), kept out of dispatch.ts: read the waiting calls'
 * keys' pacer items, interleave the calls by key, set aside those whose key has no slot within the
 * horizon, write this dispatcher's plan for each key it keeps calls of (a key another dispatcher
 * planned first is set aside: key-set-aside.ts `splitByKeyHorizon` says why), and give the rest to
 * the contract reservation as external limits (key-schedule.ts).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { interleaveByKey, KeyCursor, KeyedCall, keyExternalLimits, keyIntervalMs, limitedKeyOf, readKeyCursors } from './key-schedule';
import { KeyTiming, splitByKeyHorizon, writeKeyPlan } from './key-set-aside';
import type { ExternalLimits } from './named-limit-schedule';

/** One reservation round's per-key view of the waiting calls. */
export interface KeyRound<T> {
  /** The keys' pacer items as last read (refreshed by `rereadExternalLimits`). */
  readonly cursors: Map<string, KeyCursor>;
  /** The calls to reserve slots for, interleaved by key. */
  readonly keep: T[];
  /** The calls to set aside (key-set-aside.ts). */
  readonly aside: T[];
  /** How many calls of each key are kept. */
  readonly keptPerKey: ReadonlyMap<string, number>;
  /** `reserveSlots`' external limits for `keep` (absent: no kept call is key limited). */
  readonly externalLimits?: ExternalLimits;
  /** `reserveSlots`' re-read after a lost race: the kept calls' keys read again (`cursors` refreshed). */
  readonly rereadExternalLimits: () => Promise<ExternalLimits>;
}

/** Whether any waiting call has per-key limits (otherwise the round is exactly the one without keys). */
export function anyKeyLimited(calls: readonly KeyedCall[]): boolean {
  return calls.some((call) => limitedKeyOf(call) !== undefined);
}

/** Reads the keys and splits the waiting calls (throws when the keys cannot be read: nothing may start then). */
export async function prepareKeyRound<T extends KeyedCall>(
  calls: readonly T[], dynamodb: DynamoDBClient, tableName: string, timing: KeyTiming, horizonMs: number, rankOf?: (call: T) => number,
  held?: HeldKeyCalls<T>,
): Promise<KeyRound<T>> {
  const keys = calls.map(limitedKeyOf).filter((key): key is string => key !== undefined);
  const cursors = await readKeyCursors(dynamodb, tableName, keys);
  const holds = held ?? new HeldKeyCalls<T>();
  // Calls kept in an earlier round of this batch (`held`) stay kept (key-set-aside.ts says why).
  const split = splitByKeyHorizon(interleaveByKey(calls, rankOf), cursors, timing, horizonMs, (call) => holds.has(call),
    (key) => holds.ownPlanEnd(key));
  // The plans (key-set-aside.ts): a key another dispatcher planned first is set aside here.
  const lost = new Set<string>();
  await Promise.all(split.plans.map(async (plan) => {
    try {
      if (await writeKeyPlan(dynamodb, tableName, plan)) {
        holds.planned(plan.key, plan.newValue);
      } else {
        lost.add(plan.key);
      }
    } catch {
      // Advisory: without it this dispatcher may only lose more key writes (wasted slots), never a limit.
    }
  }));
  const planned = new Set(split.planned);
  const isLost = (call: T) => planned.has(call) && lost.has(limitedKeyOf(call) ?? '');
  const keep = split.keep.filter((call) => !isLost(call));
  // In the order they were waiting; `keptPerKey` still counts them, so that they are planned after
  // the slots the other dispatcher is taking.
  const aside = lost.size === 0 ? split.aside : calls.filter((call) => split.aside.includes(call) || isLost(call));
  const keptPerKey = split.keptPerKey;
  // The calls kept after another dispatcher's plan stay after it, in this round and the later ones.
  for (const call of keep) {
    const cursor = planned.has(call) ? cursors.get(limitedKeyOf(call)!) : undefined;
    if (cursor?.plannedUntil && cursor.plannedBy !== timing.planOwner) {
      holds.keptAfterPlan(call, cursor.plannedUntil.value);
    }
  }
  const rereadExternalLimits = async () => {
    const fresh = await readKeyCursors(dynamodb, tableName, keep.map(limitedKeyOf).filter((key): key is string => key !== undefined));
    fresh.forEach((cursor, key) => cursors.set(key, cursor));
    return keyExternalLimits(keep, afterOthersPlans(keep, cursors, timing, holds), timing.latenessToleranceMs).externalLimits
      ?? { limits: {}, callLimits: keep.map(() => []) };
  };
  const limitedBy = afterOthersPlans(keep, cursors, timing, holds);
  return { cursors, keep, aside, keptPerKey, ...keyExternalLimits(keep, limitedBy, timing.latenessToleranceMs), rereadExternalLimits };
}

/**
 * The cursors the contract reservation limits the kept calls by: a key whose calls this invocation
 * kept after another dispatcher's plan is reserved from the end of that plan, where the round that
 * kept them estimated them (key-set-aside.ts `keyPlanFloorMs`), not from the key's last slot.
 * Otherwise this dispatcher takes the slots the other one holds calls for, one of the two key writes
 * loses and its contract slot goes unfired: measured in `keys-100-hot90`, 7.7 % of the calls'
 * contract slots were wasted that way (1.0 % with this in the round that keeps them; see
 * {@link HeldKeyCalls} for the later rounds). Only narrower than the key's cursor, so never a slot
 * the key has no room at.
 */
function afterOthersPlans<T extends KeyedCall>(
  keep: readonly T[], cursors: ReadonlyMap<string, KeyCursor>, timing: KeyTiming, held: HeldKeyCalls<T>,
): ReadonlyMap<string, KeyCursor> {
  const limitedBy = new Map(cursors);
  const seen = new Set<string>();
  for (const call of keep) {
    const key = limitedKeyOf(call);
    // A key's calls share its limit in a reservation: its first call (the next to get a slot) sets it.
    if (key === undefined || seen.has(key)) {
      continue;
    }
    seen.add(key);
    const planEnd = held.planKeptAfter(call);
    if (planEnd === undefined) {
      continue;
    }
    const intervalMs = keyIntervalMs(call.keyLimits!, timing.latenessToleranceMs);
    const cursor = cursors.get(key);
    // The reservation's next free slot of the key is `lastSlotAtMs + I_k`: the plan's end at the earliest.
    limitedBy.set(key, { asideUntil: {}, ...cursor, lastSlotAtMs: Math.max(cursor?.lastSlotAtMs ?? -Infinity, planEnd - intervalMs) });
  }
  return limitedBy;
}

/**
 * The keyed calls one dispatcher invocation kept in the rounds of its batch (dispatch.ts
 * `startPaced`): for each, the other dispatcher's plan (`plannedUntilMs`) it was kept after, and
 * per key the end of the plan this invocation wrote last.
 *
 * A round reserves a hot key's calls one contract slot at a time, just in time (the contract's
 * assignment stops at the first candidate slot nobody can use), so a dispatcher holding several of
 * them sleeps until the key's next free slot and reserves again. Later rounds keep those calls
 * whatever plan was written since (key-set-aside.ts `splitByKeyHorizon`), but two things keep them
 * out of the slots another dispatcher planned for its own calls:
 *
 * - they are still reserved after the plan they were kept after (reserved from the key's last slot
 *   alone they reached back before it);
 * - past the end of this invocation's own plan (its rounds lost contract races and got later slots
 *   than estimated) they are planned again like new calls.
 *
 * Otherwise both dispatchers wake for the same next free slot of the key, both get a contract slot
 * (one contract interval apart) and the second key write loses: measured in `keys-100-hot90`
 * (`npm run bench -- --modeled-only --only keys-100-hot-idle,keys-100-hot90`, the model's DynamoDB
 * requests traced), all 32 wasted contract slots (1.05 % of the calls) were such races.
 */
export class HeldKeyCalls<T> {
  private readonly calls = new Map<T, number | undefined>();
  private readonly planEnds = new Map<string, number>();

  /** Whether an earlier round kept this call. */
  public has(call: T): boolean {
    return this.calls.has(call);
  }

  /** Holds a call a round kept. */
  public add(call: T): void {
    if (!this.calls.has(call)) {
      this.calls.set(call, undefined);
    }
  }

  /** Holds a call kept after another dispatcher's plan ending at `planEndMs`. */
  public keptAfterPlan(call: T, planEndMs: number): void {
    this.calls.set(call, planEndMs);
  }

  /** The end of the other dispatcher's plan the call was kept after (undefined: none). */
  public planKeptAfter(call: T): number | undefined {
    return this.calls.get(call);
  }

  /** Records the plan this invocation wrote for the key (its end, `plannedUntilMs`). */
  public planned(key: string, planEndMs: number): void {
    this.planEnds.set(key, planEndMs);
  }

  /** The end of the plan this invocation last wrote for the key (undefined: none). */
  public ownPlanEnd(key: string): number | undefined {
    return this.planEnds.get(key);
  }
}
