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
  held?: (call: T) => boolean,
): Promise<KeyRound<T>> {
  const keys = calls.map(limitedKeyOf).filter((key): key is string => key !== undefined);
  const cursors = await readKeyCursors(dynamodb, tableName, keys);
  // Calls kept in an earlier round of this batch (`held`) stay kept (key-set-aside.ts says why).
  const split = splitByKeyHorizon(interleaveByKey(calls, rankOf), cursors, timing, horizonMs, held);
  // The plans (key-set-aside.ts): a key another dispatcher planned first is set aside here.
  const lost = new Set<string>();
  await Promise.all(split.plans.map(async (plan) => {
    try {
      if (!await writeKeyPlan(dynamodb, tableName, plan)) {
        lost.add(plan.key);
      }
    } catch {
      // Advisory: without it this dispatcher may only lose more key writes (wasted slots), never a limit.
    }
  }));
  const isLost = (call: T) => lost.has(limitedKeyOf(call) ?? '');
  const keep = split.keep.filter((call) => !isLost(call));
  // In the order they were waiting; `keptPerKey` still counts them, so that they are planned after
  // the slots the other dispatcher is taking.
  const aside = lost.size === 0 ? split.aside : calls.filter((call) => split.aside.includes(call) || (split.keep.includes(call) && isLost(call)));
  const keptPerKey = split.keptPerKey;
  const rereadExternalLimits = async () => {
    const fresh = await readKeyCursors(dynamodb, tableName, keep.map(limitedKeyOf).filter((key): key is string => key !== undefined));
    fresh.forEach((cursor, key) => cursors.set(key, cursor));
    return keyExternalLimits(keep, cursors, timing.latenessToleranceMs).externalLimits ?? { limits: {}, callLimits: keep.map(() => []) };
  };
  const limitedBy = afterOthersPlans(keep, cursors, timing, held);
  return { cursors, keep, aside, keptPerKey, ...keyExternalLimits(keep, limitedBy, timing.latenessToleranceMs), rereadExternalLimits };
}

/**
 * The cursors the contract reservation limits new calls by: a key another dispatcher planned is
 * reserved from the end of that plan, where this round estimated them (key-set-aside.ts
 * `keyPlanFloorMs`), not from the key's last slot. Otherwise this dispatcher takes the slots the
 * other one holds calls for, one of the two key writes loses and its contract slot goes unfired:
 * measured in `keys-100-hot90`, 7.7 % of the calls' contract slots were wasted that way (1.0 % with
 * this). Calls held from an earlier round keep the key's own cursor (the plan written since is after
 * them). Only narrower than the key's cursor, so never a slot the key has no room at.
 */
function afterOthersPlans<T extends KeyedCall>(
  keep: readonly T[], cursors: ReadonlyMap<string, KeyCursor>, timing: KeyTiming, held?: (call: T) => boolean,
): ReadonlyMap<string, KeyCursor> {
  const limitedBy = new Map(cursors);
  for (const call of keep) {
    const key = limitedKeyOf(call);
    const cursor = key === undefined ? undefined : cursors.get(key);
    if (key === undefined || !cursor?.plannedUntil || cursor.plannedBy === timing.planOwner || held?.(call)) {
      continue;
    }
    const intervalMs = keyIntervalMs(call.keyLimits!, timing.latenessToleranceMs);
    // The reservation's next free slot of the key is `lastSlotAtMs + I_k`: the plan's end at the earliest.
    limitedBy.set(key, { ...cursor, lastSlotAtMs: Math.max(cursor.lastSlotAtMs ?? -Infinity, cursor.plannedUntil.value - intervalMs) });
  }
  return limitedBy;
}
