/**
 * The order in which a batch's requests get pacing slots (issue 15, item 4; design:
 * docs/design/per-key-limits.md, section 4): by effective priority (high first, a waiting request
 * rising one level per aging period: shared/request-priority.ts), then by the request's start
 * (`requestStartedAtMs`: the oldest first), then as received (stable). Keyed or not: priority
 * counts without per-key limits too, with the default aging.
 *
 * What it gives: slots go out in this order (`reserveSlots` hands a reservation's slots to the
 * waiting calls in order; with named limits to the first whose limits have room), so a high request
 * in a batch takes the batch's first slot. Slots already reserved are never taken back: a high
 * request waits behind at most the slots reserved before its batch (README, "Priorities").
 *
 * A pure function of the batch and the clock (no state kept between batches).
 */
import type { KeyLimitsSpec } from '../shared/key-limits';
import type { AnyRequestMessage } from '../shared/messages';
import { DEFAULT_PRIORITY_AGING_MS, effectivePriorityRank } from '../shared/request-priority';

/** What ordering needs of a batch's record: its message and, with per-key limits, its key's (for the aging). */
export interface PrioritizedItem {
  readonly message: AnyRequestMessage;
  readonly keyLimits?: KeyLimitsSpec;
}

/** When an item's request started: stamped by the dispatcher (request-start.ts); a message without a start counts as starting now. */
function startedAtOf(item: PrioritizedItem, nowMs: number): number {
  const start = item.message.requestStartedAtMs;
  return Number.isFinite(start) ? start! : nowMs;
}

/** An item's effective priority rank at `nowMs` (0 first), as `orderByPriority` sorts by it. */
export function effectiveRankOf(item: PrioritizedItem, nowMs: number): number {
  const agingMs = item.keyLimits?.priorityAgingMs ?? DEFAULT_PRIORITY_AGING_MS;
  return effectivePriorityRank(item.message.priority, startedAtOf(item, nowMs), nowMs, agingMs);
}

/** The items in the order they get slots (a new array; `items` is left as it is). */
export function orderByPriority<T extends PrioritizedItem>(items: readonly T[], nowMs: number): T[] {
  return items
    .map((item, index) => ({ item, index, startedAtMs: startedAtOf(item, nowMs), rank: effectiveRankOf(item, nowMs) }))
    .sort((a, b) => a.rank - b.rank || a.startedAtMs - b.startedAtMs || a.index - b.index)
    .map(({ item }) => item);
}
