/**
 * Adaptive pacing's probe (issue 14, item 5): how the adaptive rate finds out whether the vendor
 * takes one more request per second, at the cost of at most one 429 per probe interval.
 *
 * ## Why not a rate step for a whole interval
 *
 * The first design raised the adaptive rate by one step per probe interval and let the 429s say
 * when it went too far. At 100 RPS against a real limit of 50 (docs/benchmark.md, "Issue 14:
 * adaptive pacing") one step cost a burst of 1-3 429s: when the first 429 came back, the callers of
 * the next ~100 ms of slots had already passed their pause check (PAUSE_CHECK_LEAD_MS before their
 * slot), and a strict vendor counts the refused call in its window, so each of them could find the
 * window full too. At 1000 RPS that is about 50 requests past their pause check, and no later pause
 * check can stop them (a DynamoDB read takes longer than the slot interval).
 *
 * Testing one more request in a window with a few slots pulled forward does not fix it either: the
 * arrivals spread by up to L (the lateness tolerance) around their slots, more than the slot
 * interval at these rates, so which arrival of the pulled slots finds the window full is random, and
 * every one after it is refused too (modeled: 1-2 429s per probe at 100 RPS).
 *
 * ## The probe: a window whose count is known exactly
 *
 * A probe makes ONE window at the vendor hold exactly `r + 1` requests (`r = floor(rate)`, the
 * pacer's bound at the next rate: "The guarantee", pacer.ts), whatever the arrivals' spread, so
 * that only the last arrival of it can be refused. With `I` the adaptive interval, `I_c` the rate in
 * force's (the ceiling's), `L'` = L + 1 ms (the spread bound and the window's edge), `last` the last
 * slot reserved:
 *
 * 1. **Plan** (a reservation half a probe interval after the last change, its schedule continuing
 *    without a gap): its slots start `H` later than `last + I` (a hole), so that no request before
 *    the hole can reach the probe's window; it records where the probe goes: after `N` regular
 *    slots, at `g0 = holeEnd + N I`, `k = r + 1 - N` slots `I_c` apart.
 * 2. **Place** (the reservation whose slots reach `g0`, if the schedule still runs on the same grid):
 *    the `k` slots at `g0, g0 + I_c, ...` replace the regular ones at `g0, g0 + I, ...`.
 *
 * `N` is the largest with `N I + (k - 1) I_c + L' <= 1000`, and the hole ends after
 * `last + 1000 + L' - N I`. Then for every arrival `a` of the probe's `k` slots (each within L' of
 * its slot): the `N` regular slots after the hole lie inside `a`'s window, every slot before the
 * hole lies outside it, so the window holds `N` + (the probe's arrivals up to `a`): the `k`-th
 * arrival finds `r + 1`, the others at most `r`. Against a vendor whose limit is `r`: one 429.
 * After the probe, every window holds at most what the regular slots it replaced would have put in
 * it (the probe's slots come earlier than the ones they replace), refused or not: nothing else is
 * refused. No two slots are closer than `I_c`, so no window exceeds the rate in force (pacer.ts,
 * "The rate at run time"). A 429 to any slot from `g0 - L'` to the probe's last slot `+ L'` (the
 * arrivals that can reorder with the probe's) is the probe's.
 *
 * The caller that gets that 429 records the refusal (adaptive-rate.ts `decreaseAdaptiveRate`) instead
 * of decreasing the rate; a reservation a cooldown after the probe, and a probe interval after the
 * last change, judges it (contract/adaptive-spec.ts `adaptivePlan`): no refusal -> one step up,
 * refused -> the rate stays. A 429 to any other slot still decreases the rate.
 *
 * Cost: nothing per request in DynamoDB (the probe's state is read and written with the
 * reservation's own GetItem and conditional UpdateItem; a refused probe costs the GetItem +
 * UpdateItem a decrease costs). The hole costs about 125 ms of the schedule per probe at 100 and
 * 1000 RPS against half the contract (6 and 60 slots, 1.2 % of a 10 s probe interval), about 1 ms at 10 RPS.
 *
 * Where a probe cannot be planned (the schedule has a gap, named limits, or `r + 1` requests do not
 * fit within 1000 - L' ms at the ceiling's interval, e.g. one step below the ceiling), the rate
 * climbs one step per interval without a probe (the first design's rule).
 */
import { roundUpToSlotGrid, WINDOW_EDGE_MARGIN_MS } from './rate-settings';
import {
  ADAPTIVE_PROBE_ATTRIBUTE, ADAPTIVE_PROBE_ATTRIBUTES, ADAPTIVE_PROBE_FROM_ATTRIBUTE, ADAPTIVE_PROBE_REFUSED_ATTRIBUTE,
  ADAPTIVE_PROBE_SLOTS_ATTRIBUTE,
  ADAPTIVE_PROBE_TO_ATTRIBUTE, ADAPTIVE_RATE_ATTRIBUTE, ADAPTIVE_SINCE_ATTRIBUTE, ProbeState,
} from '../contract/adaptive-spec';

/** The grid of a reservation's schedule, as the probe needs it. */
export interface ProbeGrid {
  /** The reservation's time, epoch ms. */
  readonly nowMs: number;
  /** The reservation's slots (computeSchedule). */
  readonly slots: number[];
  /** The stored `nextSlotAtMs` and interval read (undefined: none). */
  readonly storedNextSlotAtMs?: number;
  readonly previousIntervalMs?: number;
  /** The interval of this reservation (the adaptive rate's), and of the rate in force (the shortest allowed). */
  readonly intervalMs: number;
  readonly ceilingIntervalMs: number;
  /** floor of the adaptive rate, and of the rate in force. */
  readonly slotsPerWindow: number;
  readonly ceilingSlotsPerWindow: number;
  /** The lateness tolerance L. */
  readonly latenessToleranceMs: number;
  /** The latest slot the reservation may give out, epoch ms. */
  readonly latestSlotMs: number;
  /** A probe's first slot goes no earlier than this (a probe interval after the last change), epoch ms. */
  readonly probeNotBeforeMs: number;
}

/** What a reservation gives out and writes for a probe. */
export interface ProbeOutcome {
  /** The reservation's slots, changed by the probe. */
  readonly slots: number[];
  /** The next unreserved slot after them. */
  readonly newNextSlotAtMs: number;
  /** The probe attributes to write (SET); undefined values are removed. */
  readonly attributes: Record<string, number | undefined>;
}

/**
 * Plans a probe in this reservation (step 1): its slots shifted by the hole, the probe recorded.
 * Undefined when the schedule does not continue the stored one on the same grid, or the probe does
 * not fit (see the module comment).
 */
export function planProbe(grid: ProbeGrid): ProbeOutcome | undefined {
  const { slots, intervalMs: I, ceilingIntervalMs: Ic } = grid;
  // Below 1 request per second a window holds one request at most: nothing to test one more in.
  if (slots.length === 0 || grid.storedNextSlotAtMs === undefined || grid.previousIntervalMs !== I || !(Ic < I)
    || !Number.isInteger(grid.slotsPerWindow) || grid.slotsPerWindow < 1 || grid.slotsPerWindow + 1 > grid.ceilingSlotsPerWindow) {
    return undefined;
  }
  const last = grid.storedNextSlotAtMs - I;
  if (slots[0] !== last + I) {
    return undefined; // a gap (idle, pause, lead): no full window to test
  }
  const spreadMs = grid.latenessToleranceMs + WINDOW_EDGE_MARGIN_MS;
  const r = grid.slotsPerWindow;
  const n = Math.floor((1000 - spreadMs - r * Ic) / (I - Ic));
  if (n < 0 || n > r) {
    return undefined; // r + 1 requests do not fit in 1000 - L' ms at the ceiling's interval
  }
  const k = r + 1 - n;
  // The hole: the first slot after it so that every slot up to `last` stays out of the probe's window.
  const holeEnd = Math.max(last + I, roundUpToSlotGrid(last + 1000 + spreadMs - n * I + 1));
  const shift = holeEnd - (last + I);
  const shifted = slots.map((slot) => slot + shift).filter((slot) => slot <= grid.latestSlotMs);
  if (shifted.length === 0) {
    return undefined;
  }
  const atMs = holeEnd + n * I;
  if (atMs < grid.probeNotBeforeMs) {
    return undefined; // too early: a later reservation plans it
  }
  const planned: ProbeOutcome = {
    slots: shifted,
    newNextSlotAtMs: shifted[shifted.length - 1] + I,
    attributes: {
      [ADAPTIVE_PROBE_ATTRIBUTE]: atMs,
      [ADAPTIVE_PROBE_SLOTS_ATTRIBUTE]: k,
      [ADAPTIVE_PROBE_FROM_ATTRIBUTE]: holeEnd,
    },
  };
  // A reservation that reaches the probe's first slot places it at once (or gives the plan up).
  const placed = placeProbe({ ...grid, slots: shifted }, { atMs, slots: k, fromMs: holeEnd, refused: false });
  if (placed === undefined) {
    return planned;
  }
  return placed.attributes[ADAPTIVE_PROBE_ATTRIBUTE] === undefined && placed.attributes[ADAPTIVE_PROBE_TO_ATTRIBUTE] === undefined
    && ADAPTIVE_PROBE_ATTRIBUTE in placed.attributes
    ? undefined // abandoned at once
    : { ...placed, attributes: { ...planned.attributes, ...placed.attributes } };
}

/**
 * Places the planned probe (step 2) when this reservation's slots reach it: its slots replace the
 * regular ones from `probe.atMs` on. Abandons it (clears it) when the schedule left the planned grid
 * (the slot at `atMs` was given out, or is not on this grid) or this reservation cannot hold all of
 * its slots. Undefined: not reached yet, nothing to do.
 */
export function placeProbe(grid: ProbeGrid, probe: ProbeState): ProbeOutcome | undefined {
  const { slots, intervalMs: I, ceilingIntervalMs: Ic } = grid;
  if (slots.length === 0 || slots[slots.length - 1] < probe.atMs) {
    return undefined;
  }
  const index = slots.indexOf(probe.atMs);
  if (index < 0 || (index === 0 && probe.slots > slots.length) || !(Ic < I)) {
    return { slots, newNextSlotAtMs: slots[slots.length - 1] + I, attributes: clearedProbe() };
  }
  if (index + probe.slots > slots.length) {
    // Too few slots to hold the probe: this reservation stops before it, the next one places it.
    return { slots: slots.slice(0, index), newNextSlotAtMs: probe.atMs, attributes: {} };
  }
  const placed = slots.slice();
  for (let j = 0; j < probe.slots; j++) {
    placed[index + j] = probe.atMs + j * Ic;
  }
  const spreadMs = grid.latenessToleranceMs + WINDOW_EDGE_MARGIN_MS;
  return {
    slots: placed,
    newNextSlotAtMs: slots[slots.length - 1] + I,
    attributes: { [ADAPTIVE_PROBE_TO_ATTRIBUTE]: probe.atMs + (probe.slots - 1) * Ic + spreadMs },
  };
}

/**
 * The refusal mark of a probe spoiled by a slot given up inside its window (from the end of its
 * hole to its last slot): the window then holds fewer requests than planned, so the vendor taking
 * the probe would prove nothing; judged like a refused one (no step). Nothing otherwise.
 */
export function spoiledProbe(probe: ProbeState, givenUpSlotMs: number | undefined): Record<string, number> {
  // Not placed yet: its slots lie within a second of its first one.
  const toMs = probe.toMs ?? probe.atMs + 1000;
  if (givenUpSlotMs === undefined || probe.refused || givenUpSlotMs < probe.fromMs || givenUpSlotMs > toMs) {
    return {};
  }
  return { [ADAPTIVE_PROBE_REFUSED_ATTRIBUTE]: probe.atMs };
}

/** The probe's attributes, all removed. */
export function clearedProbe(): Record<string, undefined> {
  return Object.fromEntries(ADAPTIVE_PROBE_ATTRIBUTES.map((name) => [name, undefined]));
}

/** The clauses a reservation adds to its conditional UpdateItem to write the adaptive state. */
export interface AdaptiveUpdateClauses {
  readonly set: string;
  readonly remove: string;
  readonly condition: string;
  readonly names: Record<string, string>;
  readonly values: Record<string, { N: string }>;
}

/**
 * The adaptive attributes written with a reservation (undefined values removed), conditional on the
 * time of the last change and the probe's refusal as read: a decrease or a refusal written since
 * then makes the reservation read again.
 */
export function adaptiveUpdateClauses(
  attributes: Record<string, number | undefined>,
  item: Record<string, { N?: string }> | undefined,
): AdaptiveUpdateClauses {
  const names: Record<string, string> = {};
  const values: Record<string, { N: string }> = {};
  const set: string[] = [];
  const remove: string[] = [];
  Object.entries(attributes).forEach(([name, value], i) => {
    names[`#a${i}`] = name;
    if (value === undefined) {
      remove.push(`#a${i}`);
    } else {
      set.push(`#a${i} = :a${i}`);
      values[`:a${i}`] = { N: String(value) };
    }
  });
  const condition: string[] = [];
  for (const [placeholder, name] of [['#asince', ADAPTIVE_SINCE_ATTRIBUTE], ['#arefused', ADAPTIVE_PROBE_REFUSED_ATTRIBUTE]]) {
    names[placeholder] = name;
    const read = item?.[name]?.N;
    if (read === undefined) {
      condition.push(`attribute_not_exists(${placeholder})`);
    } else {
      condition.push(`${placeholder} = :old${placeholder.slice(1)}`);
      values[`:old${placeholder.slice(1)}`] = { N: read };
    }
  }
  return {
    set: set.map((clause) => `, ${clause}`).join(''),
    remove: remove.length > 0 ? ` REMOVE ${remove.join(', ')}` : '',
    condition: condition.map((clause) => ` AND ${clause}`).join(''),
    names,
    values,
  };
}

/** The rate's attributes to write. */
export function rateAttributes(update: { readonly rps: number; readonly sinceMs: number }): Record<string, number> {
  return { [ADAPTIVE_RATE_ATTRIBUTE]: update.rps, [ADAPTIVE_SINCE_ATTRIBUTE]: update.sinceMs };
}

