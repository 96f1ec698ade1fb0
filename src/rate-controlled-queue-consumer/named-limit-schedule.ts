/**
 * Several limits at once (issue 14, item 3): the pacing of calls subject to named limits inside
 * the contract (contract/named-limit.ts), on top of the shared slot schedule of pacer.ts.
 *
 * ## The guarantee
 *
 * For every named limit X with rate `R_X` (`r_X = floor(R_X)`, or `R_X` below 1): **no closed
 * 1-second window at the vendor holds more than `r_X` of the calls X binds**, and at the same time
 * the contract's bound (pacer.ts) holds for all calls together, under the same assumption on `L`
 * (fire tolerance + path spread + clock spread <= L). No sliding window over any limit exceeds it.
 *
 * ## The method: every cursor in the one pacer item, one conditional write
 *
 * The pacer item holds, beside the contract's `nextSlotAtMs`, the last slot reserved for each
 * named limit (`limitLastSlotAtMs#<name>`). A reservation reads them all with the contract's cursor
 * (one consistent GetItem), gives each candidate slot of the contract (`base, base + I, ...`,
 * pacer.ts) to the first waiting call whose every limit has room at that slot (its last slot +
 * `I_X` <= the slot, `I_X = (1000 + L + 1) / r_X` on the 1/1024 ms grid), and writes the new
 * contract cursor and every limit cursor it moved in ONE UpdateItem, conditioned on every value it
 * read. DynamoDB's item operations are atomic (PutItem, GetItem, UpdateItem, DeleteItem: "All these
 * operations are atomic", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/WorkingWithItems.html),
 * so the reservation against the
 * contract and against every limit is one write: it happens entirely or not at all, and there is no
 * point between two reservations where a crash could leave one taken and not the other. (Dynalite,
 * the local runtime's DynamoDB, has no TransactWriteItems; none is needed.) A crash after the write
 * and before the call leaves reserved, unfired slots: fewer calls, never more.
 *
 * ## Why it holds
 *
 * Every successful write is conditioned on the cursors it read, so reservations are serialized per
 * limit as for the contract (pacer.ts, point 1): the slots of calls bound by X are at least `I_X`
 * apart, because a slot is given to such a call only at or after the previous one + `I_X`, and the
 * previous one is the stored cursor. Points 2 and 3 of pacer.ts then apply to X's calls alone with
 * `r_X` in place of `r`: any window `[a - 1000, a]` holds calls whose slots lie in a span of
 * `1000 + L < r_X * I_X`, hence at most `r_X` of them.
 *
 * ## Keeping the contract's schedule dense
 *
 * A call whose limit has no room at the contract's next slot does not take a later contract slot
 * (that would leave the slots in between unused by everyone): candidates are given out in order
 * and the reservation stops at the first candidate no waiting call can use. Calls left over wait:
 * the dispatcher sleeps until their limit has room (`limitedUntilMs`) if that is before its
 * deadline, else sends them back to the queue as delayed copies (no attempt or receive spent).
 *
 * ## Changing a limit
 *
 * The cursor is the limit's LAST slot, not its next one, so a limit lowered by a deploy spaces its
 * next call at the new interval from the last old one (binds at once); a raised limit spaces at the
 * new, shorter interval from the last old slot (slots stay at least the new interval apart).
 */
import { slotIntervalMs } from './pacer';
import type { NamedLimitSpec } from '../contract/named-limit';

/** Prefix of the pacer item's attribute holding a named limit's last reserved slot (epoch ms). */
export const LIMIT_LAST_SLOT_ATTRIBUTE_PREFIX = 'limitLastSlotAtMs#';

/** The pacer item's attribute holding the last reserved slot of the limit `name`. */
export function limitLastSlotAttribute(name: string): string {
  return `${LIMIT_LAST_SLOT_ATTRIBUTE_PREFIX}${name}`;
}

/** The waiting calls of a reservation and the named limits each is subject to. */
export interface LimitedCalls {
  /** The contract's named limits (at least those the calls name). */
  readonly limits: readonly NamedLimitSpec[];
  /** Per waiting call, in queue order, the names of the limits it is subject to (may be empty). */
  readonly callLimits: readonly (readonly string[])[];
}

/**
 * Limits whose cursors live outside the contract's item (issue 15: a key's `key-pacer#<key>` item,
 * key-schedule.ts): the assignment respects them like named limits, but their moved last slots are
 * returned (`LimitedAssignment.externalLastSlots`), never written into the contract's item; their
 * owner writes them, each with its own conditional write.
 */
export interface ExternalLimits {
  /** Per external limit: its interval (ms, on the 1/1024 ms slot grid) and its last slot (absent: none yet). */
  readonly limits: Readonly<Record<string, { readonly intervalMs: number; readonly lastSlotMs?: number }>>;
  /** Per waiting call, in the order of `LimitedCalls.callLimits`, the external limits it is subject to (may be empty). */
  readonly callLimits: readonly (readonly string[])[];
}

/** Result of {@link assignLimitedSlots}. */
export interface LimitedAssignment {
  /** The slots given out, ascending: a prefix of the candidates. */
  readonly slots: number[];
  /** For each slot, the index (into `callLimits`) of the call it goes to. */
  readonly callIndexes: number[];
  /** Each named limit's last slot after the assignment, for the limits it moved. */
  readonly movedLastSlots: Record<string, number>;
  /** With external limits: each one's last slot after the assignment, for those it moved (not stored by the pacer). */
  readonly externalLastSlots?: Record<string, number>;
  /**
   * When the first call left without a slot could have one as far as its limits go (the latest of
   * their next free times); undefined when every call got a slot or what stopped them was the
   * contract's schedule, not a limit.
   */
  readonly limitedUntilMs?: number;
  /**
   * When a limit stopped the assignment: per named limit, how many of the calls left without a slot it
   * had no room for at the first candidate nobody could take (a call held back by two limits counts
   * for both). The `NamedLimitWaits.<name>` metric (external limits are not counted: one metric per
   * key would be unbounded). Undefined otherwise.
   */
  readonly limitWaits?: Record<string, number>;
  /** The calls `limitWaits` counts, per limit (indexes into `calls.callLimits`). */
  readonly limitWaitCalls?: Record<string, number[]>;
}

/** Interval `I_X` of a named limit: the contract's formula at the limit's rate (pacer.ts). */
export function limitIntervalMs(limit: NamedLimitSpec, latenessToleranceMs: number): number {
  return slotIntervalMs(limit.requestsPerSecond, latenessToleranceMs);
}

/**
 * The pure step: gives the contract's candidate slots (ascending, at least the contract's interval
 * apart) to waiting calls, each to the first call in order whose every limit has room at it.
 * Stops at the first candidate no call can use, so the contract's schedule has no gap.
 *
 * @param candidates the contract's slots, as pacer.ts computeSchedule gives them
 * @param calls the waiting calls and their limits
 * @param lastSlots each limit's stored last slot (absent: none yet)
 * @param latenessToleranceMs `L`
 * @param external limits whose cursors live elsewhere (per-key limits): respected, returned, not stored
 */
export function assignLimitedSlots(
  candidates: readonly number[],
  calls: LimitedCalls,
  lastSlots: Readonly<Record<string, number | undefined>>,
  latenessToleranceMs: number,
  external?: ExternalLimits,
): LimitedAssignment {
  if (external && external.callLimits.length !== calls.callLimits.length) {
    throw new Error(`external limits name the limits of ${external.callLimits.length} calls, but ${calls.callLimits.length} calls wait`);
  }
  const byName = new Map(calls.limits.map((limit) => [limit.name, limit]));
  const intervals = new Map<string, number>();
  const externalNames = new Set<string>();
  const lastOfExternal: Record<string, number | undefined> = {};
  for (const names of external?.callLimits ?? []) {
    for (const name of names) {
      const limit = external!.limits[name];
      if (limit === undefined || byName.has(name)) {
        throw new Error(`a call names the external limit '${name}', which is ${limit === undefined ? 'not given' : 'also a named limit'}`);
      }
      intervals.set(name, limit.intervalMs);
      externalNames.add(name);
      lastOfExternal[name] = limit.lastSlotMs;
    }
  }
  // Each call's limits: its named ones, then its external ones.
  const callLimits = calls.callLimits.map((names, index) => [...names, ...(external?.callLimits[index] ?? [])]);
  for (const names of calls.callLimits) {
    for (const name of names) {
      const limit = byName.get(name);
      if (limit === undefined) {
        throw new Error(`a call names the limit '${name}', which the contract does not have (limits: ${[...byName.keys()].join(', ') || 'none'})`);
      }
      intervals.set(name, limitIntervalMs(limit, latenessToleranceMs));
    }
  }
  const last: Record<string, number | undefined> = { ...lastSlots, ...lastOfExternal };
  const nextFree = (name: string) => (last[name] === undefined ? -Infinity : last[name]! + intervals.get(name)!);
  const fits = (index: number, slot: number) => callLimits[index].every((name) => nextFree(name) <= slot);

  const waiting = callLimits.map((_, index) => index);
  const slots: number[] = [];
  const callIndexes: number[] = [];
  const movedLastSlots: Record<string, number> = {};
  const externalLastSlots: Record<string, number> = {};
  for (const slot of candidates) {
    const at = waiting.findIndex((index) => fits(index, slot));
    if (at < 0) {
      break;
    }
    const index = waiting.splice(at, 1)[0];
    slots.push(slot);
    callIndexes.push(index);
    for (const name of callLimits[index]) {
      last[name] = slot;
      (externalNames.has(name) ? externalLastSlots : movedLastSlots)[name] = slot;
    }
  }
  const moved = external ? { movedLastSlots, externalLastSlots } : { movedLastSlots };
  if (waiting.length === 0) {
    return { slots, callIndexes, ...moved };
  }
  // The earliest time any waiting call's limits all have room: what it waits for, if not the contract.
  const limitedUntilMs = Math.min(...waiting.map((index) => Math.max(-Infinity, ...callLimits[index].map(nextFree))));
  const stoppedByLimit = slots.length < candidates.length && Number.isFinite(limitedUntilMs);
  if (!stoppedByLimit) {
    return { slots, callIndexes, ...moved };
  }
  const stoppedAt = candidates[slots.length];
  const limitWaits: Record<string, number> = {};
  const limitWaitCalls: Record<string, number[]> = {};
  for (const index of waiting) {
    for (const name of calls.callLimits[index].filter((n) => nextFree(n) > stoppedAt)) {
      limitWaits[name] = (limitWaits[name] ?? 0) + 1;
      (limitWaitCalls[name] ??= []).push(index);
    }
  }
  if (Object.keys(limitWaits).length === 0) {
    // Only external limits held the calls back.
    return { slots, callIndexes, ...moved, limitedUntilMs };
  }
  return { slots, callIndexes, ...moved, limitedUntilMs, limitWaits, limitWaitCalls };
}
