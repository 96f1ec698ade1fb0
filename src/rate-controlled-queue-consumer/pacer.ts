/**
 * The shared pacing schedule: every request to the vendor gets a time slot from one DynamoDB item,
 * across all concurrent invocations, cold starts and both Lambda functions that use it (the
 * dispatcher and the vendor caller).
 *
 * ## The guarantee
 *
 * Let `R` be the contract, `r = floor(R)` (or `R` when `R < 1`). In the default pacing point
 * (`PacingPoint.VENDOR_CALL`) **no 1-second window at the vendor holds more than `floor(R)`
 * requests**, and when `R < 1` no window of `1 / R` seconds holds more than one (so one per second
 * at most, and e.g. at most one in any 2 s at `R = 0.5`). The windows are **closed**, `[a - 1 s, a]`:
 * the bound holds for a vendor that counts half-open windows `(a - 1 s, a]` too, and for one that
 * timestamps in whole milliseconds (see "The window's edge"). This holds provided that for every
 * request
 *
 *     (how late the vendor caller fires against its slot, by its own clock)
 *       + (spread of the caller -> vendor latency)
 *       + (spread between the callers' clocks) <= L
 *
 * where `L` is the lateness tolerance the slots are spaced for. The caller enforces the first term
 * (it fires in `[t, t + fireTolerance]` or gives the slot up); the second is an assumption about the
 * network path (caller Lambda -> API Gateway proxy -> vendor), the third about the clocks of the
 * Lambda hosts, both stated with the defaults in rate-settings.ts and checked once deployed (README,
 * "check it once deployed").
 *
 * In `PacingPoint.DISPATCH` the same bound holds for the StartExecution calls; at the vendor it holds
 * only if the spread of the whole Express workflow (start, its states, the proxy) stays within `L`,
 * which it does not (hundreds of milliseconds): that mode is cheaper but not contract-exact.
 *
 * ## The method: a shared slot schedule
 *
 * One DynamoDB item (`pk = 'pacer'`) holds `nextSlotAtMs`, the earliest time (epoch ms) that no
 * invocation has reserved yet, and `pausedUntilMs`, until when the vendor asked us to stop (a 429
 * with or without Retry-After). A reservation of up to `k` slots:
 *
 * - effective rate `r = R >= 1 ? floor(R) : R`;
 * - slot interval `I = (1000 + L + 1) / r + extra` ms (rounded up to a multiple of 1/1024 ms, see
 *   below), where `extra >= 0` is the operator's dynamic delay (it can only slow) and the 1 ms is
 *   the margin at the window's edge (`WINDOW_EDGE_MARGIN_MS`);
 * - `base = max(now, nextSlotAtMs, pausedUntilMs)` (rounded up to the 1/1024 ms grid), slots
 *   `base, base + I, ..., base + (n - 1) * I`,
 *   `n` as many as are wanted and fit before the invocation's deadline (`n` may be 0);
 * - `nextSlotAtMs := base + n * I`, written with the condition `nextSlotAtMs = :old` (or
 *   `attribute_not_exists(nextSlotAtMs)` when there was none). If another invocation wrote first,
 *   the condition fails and the whole read-compute-write is retried. No locks are held, so a
 *   crashed invocation cannot block the others.
 *
 * A request for slot `t` is issued in `[t, t + tolerance]` or not at all: a caller (or dispatcher)
 * that wakes up later gives the slot up and reserves a new one. The vendor caller makes each part
 * of that hold on AWS too: it fires a slot only once it has claimed it (single-use slots, below),
 * only once its wall clock has reached `t` (a timer may wake early: it sleeps again), counting
 * `Date.now()`'s whole-millisecond resolution in the tolerance, and only on a connected socket,
 * measuring its lateness when the request is handed to the operating system (vendor-call.ts). State lives only in DynamoDB, so a
 * cold start or a new container changes nothing: it reads the same item.
 *
 * ## Why it holds
 *
 * 1. Reserved slot times are globally disjoint and at least `I` apart: every successful write
 *    moves `nextSlotAtMs` forward past the slots it reserved, and the conditional write makes the
 *    read-compute-write of each reservation atomic, so the next reservation starts at or after
 *    the last slot of the previous one plus `I`.
 * 2. Request `i` for slot `t_i` reaches the vendor at `a_i = t_i + c_i + f_i + d_i` in real time:
 *    `c_i` the offset of its caller's clock (a caller whose clock runs ahead fires early in real
 *    time), `f_i` the firing lateness by that clock, `d_i` the caller -> vendor latency. With
 *    `c_i + f_i + d_i` in `[e_min, e_min + L]` for every request (the assumption: fire tolerance +
 *    path spread + clock spread <= L), `a_i - e_min` lies in `[t_i, t_i + L]`.
 * 3. Take any closed window `[a - 1000, a]` at the vendor. Every request in it has `t_i` in
 *    `[a - e_min - 1000 - L, a - e_min]`, a closed span of length `1000 + L < r * I`: `m` slots at
 *    least `I` apart in it satisfy `(m - 1) * I <= 1000 + L < r * I`, so `m <= r` when `r` is a
 *    whole number, and `m = 1` when `r < 1` (then `I > 1000 + L`; the same argument with a window
 *    of `1000 / r` ms shows one request at most in any `1 / R` seconds).
 *
 * ## The window's edge
 *
 * Without the margin (`r * I = 1000 + L` exactly), a request exactly `L` late and the request `r`
 * slots after it, on time, arrive exactly 1000 ms apart: a vendor counting closed windows
 * `[a - 1 s, a]` sees `r + 1`, and so does a vendor that timestamps in whole milliseconds when they
 * arrive 1000.4 ms apart. With `r * I >= 1000 + L + 1`, any `r + 1` requests span at least 1001 ms
 * of real time, and at least 1001 ms after rounding both ends to whole milliseconds (rounding is
 * monotone and moves whole numbers by whole numbers). The margin costs `1 / (1001 + L)` of the rate
 * (0.1 %).
 *
 * Clocks: every Lambda reads its own clock, and no AWS document bounds the error of a Lambda
 * host's clock (EC2 instances sync to the Amazon Time Sync Service; ClockBound, AWS's tool to read
 * the error bound, https://github.com/aws/clock-bound, is not available in Lambda; a ClockBound
 * client reports +/- 0.5-2 ms for EC2 on the default Time Sync Service,
 * https://pypi.org/project/clockbound/). So the spread between callers' clocks is a term of `L`
 * (rate-settings.ts `ASSUMED_CLOCK_SPREAD_MS`), and the deployment measures it against one clock,
 * API Gateway's `$context.requestTimeEpoch` (README, "check it once deployed").
 *
 * ## Choosing L (the defaults, and where the numbers come from)
 *
 * `L = (fireTolerance + 1 ms) + J + C` (rate-settings.ts): the fire term (the 1 ms is the
 * resolution of `Date.now()`, which the fire check reads), `J` the spread of one HTTPS request on a
 * warm keep-alive connection from a Lambda to a regional API Gateway endpoint in the same region
 * plus the proxy's HTTP integration to the vendor, `C` the spread between the callers' clocks:
 *
 * - Timer accuracy: Node.js timers aimed at a wall-clock time woke at most 2.9 ms late at p99 and
 *   5.8 ms at worst on a loaded 2-core machine (docs/benchmark.md, "Fire tolerance") -> the caller
 *   fires within `fireTolerance = 5 ms` or gives up (about 0.1 % of slots there).
 * - API Gateway overhead (the `Latency - IntegrationLatency` of REST APIs): typically 5-15 ms,
 *   spread about 10 ms at p99 for a regional endpoint (AWS re:Post / CloudWatch measurements).
 * - Network to the vendor: the vendor's own jitter is outside our control; within one region or
 *   to a nearby internet endpoint the spread of the TCP path is a few milliseconds (p99 ~5 ms).
 * - Clocks: 4 ms assumed (see "Clocks" above).
 *
 * So `J ~ 15-20 ms` and the default `L = 30 ms` (5 + 1 + 20 + 4): slots are spaced
 * `(1000 + 30 + 1) / r` apart, the best possible utilization is `1000 / 1031 = 0.970`. A vendor
 * whose path spreads more needs a larger `L` (utilization `1000 / (1001 + L)`).
 * A cold connection (new container: DNS + TCP + TLS, 30-100 ms) would break the assumption, so
 * the caller opens its connection during its lead time, before its first slot.
 *
 * In `PacingPoint.DISPATCH`, `L` only covers the dispatcher's own lateness (default 50 ms).
 *
 * ## The rate at run time (a rate in force below the contract)
 *
 * Operators may pace below the deployed contract without a deploy (the `requestsPerSecond` of the
 * dynamic-delay configuration, rate-in-force.ts): the contract is the ceiling, the rate in force
 * `R' <= R` gives the interval `I' = (1000 + L + 1) / r' + extra`. The pacer item records the
 * interval of the last reservation (`intervalMs`), so the last reserved slot is
 * `nextSlotAtMs - intervalMs`, and a reservation at interval `I` puts its first slot at
 * `last + I` (not at `nextSlotAtMs`, which is `last + I_old`):
 *
 * - **a decrease** (`I > I_old`) binds at once: every slot from the last old one on is at least the
 *   NEW interval apart, so by point 3 above every window whose slots all lie at or after the last
 *   old slot holds at most `r'`. With every invocation reading the new rate (after the
 *   configuration's poll interval P) and old-rate slots reserved at most a horizon H ahead (the
 *   dispatcher's `maxPacingWait`, the caller's `maxSlotWait`), the decrease binds every window at the
 *   vendor that starts at or after `T = C + P + H + L` (C: the deployment of the new rate; L here
 *   also covers the caller -> vendor latency, as in point 2).
 * - **an increase** (`I < I_old`) binds only windows that lie wholly after its effective time: an
 *   invocation that has seen the new rate for less than one window (`1000 + L + 1` ms,
 *   `rateIncreaseHoldMs`) keeps the older, longer interval, so every slot at the new spacing lies
 *   at least one window after the deployment C, and every window that starts before C holds only
 *   slots spaced at the old interval (at most `r_old`); windows that start at or after C hold slots
 *   at least `I` apart (at most `r'`). The new rate is in use within `P + 1000 + L + 1 + H`.
 * - without a stored interval (an item written before this field existed) the previous interval
 *   counts as the contract's, the shortest there can have been: the first slot then lies at least
 *   `I` after the true last slot (it may waste one interval, never the bound).
 *
 * Invocations that read the old rate during the poll interval may still reserve at the old spacing
 * (each reservation spaces from the true last slot, so slots stay at least `min(I, I_old)` apart:
 * the old rate is never exceeded during a change); the poll interval is part of the stated delay.
 *
 * ## Adaptive pacing (a rate in force the vendor's 429s lower)
 *
 * With adaptive pacing the reservation paces at `min(rate in force, a(t))`, `a(t)` the adaptive
 * rate read from this item in the same consistent read (contract/adaptive-spec.ts). That is a rate
 * in force at most the operators', so the two cases above cover it: a decrease binds every
 * reservation computed after its write (slots already reserved keep their spacing, at most the
 * horizon H ahead), and no slot is ever closer than the operators' rate in force's interval, so no
 * window exceeds the rate in force however the adaptive rate moves; an increase needs no hold, the
 * adaptive rate being a guess at the vendor's real limit, not a bound (adaptive-rate.ts). The probe
 * (adaptive-probe.ts) moves a few slots of one reservation earlier, but never closer to their
 * neighbours than the rate in force's interval, and a hole only widens the spacing: the same bound.
 *
 * ## Contention
 *
 * At high rates many invocations reserve at once: at 1000 RPS a vendor pause (a 429) makes every
 * vendor caller whose slot it covers give the slot up and reserve a fresh one, hundreds per second,
 * each a read-compute-write on this one item. Of the writes computed from the same read only one
 * can win; retried as a whole, each round again has one winner, and a reservation lost 25 rounds in
 * a row (its invocation failed: the dispatcher's batch returned to the queue, the vendor call
 * counted a failed attempt and was requeued; about 4,700 per 5-minute run in the benchmark's
 * model at 1000 RPS). So a reservation that lost its race is moved behind the winners instead of
 * recomputed: one UpdateItem `SET nextSlotAtMs = nextSlotAtMs + n * I` (DynamoDB adds to a number
 * in place, https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.UpdateExpressions.html)
 * returning the value it replaced (`ReturnValues: UPDATED_OLD`,
 * https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html), which is
 * the first of its `n` slots. Concurrent moves are serialized by DynamoDB like any writes to one
 * item, so none loses to another. The write is conditional on everything else the reservation was
 * computed from (a condition may compare two attributes,
 * https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.OperatorsAndFunctions.html):
 *
 * - the stored interval is the reservation's `I`, so the stored next slot is the last reserved slot
 *   plus `I` (the spacing of point 1 holds, and a rate change makes it read again);
 * - the next slot is not before `now + minLead` (nor `notBeforeMs`), and its `n` slots end before
 *   the deadline: the schedule is busy, so a fresh read would have put its first slot there too;
 * - no pause ends after the next slot (no slot inside a pause);
 * - with adaptive pacing, every adaptive attribute is as read (a decrease or a probe makes it read
 *   again).
 *
 * So the slots are those a read-compute-write at the time of the move would have given (a later
 * invocation could only space them wider, e.g. once a rate-increase hold ends). A reservation with
 * named limits or adaptive attributes to write is recomputed as before (its write carries more
 * than the schedule). DynamoDB serves one item from one partition, at most 1000 write and 3000 read
 * units per second, refused conditional writes included
 * (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/warm-throughput-scenarios.html):
 * a reservation now costs one read and at most two writes, where a lost round cost one more of each.
 *
 * ## Exact arithmetic
 *
 * `I` is rounded up to a multiple of 1/1024 ms. Rounding up only lowers the rate (`r * I >= 1000 + L + 1`
 * still holds), and every slot time is then a multiple of 1/1024 below 2^43 ms (the year 2248), so
 * doubles represent it exactly: no rounding error can squeeze two slots closer than `I`, and the
 * value written to DynamoDB reads back identical for the `nextSlotAtMs = :old` condition.
 */
// The pacer is bundled into the dispatcher Lambda only; the construct library never imports it, so
// the SDK stays a devDependency (bundled by esbuild).
import { type DynamoDBClient, GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { adaptiveUpdateClauses, clearedProbe, placeProbe, planProbe, ProbeGrid, ProbeOutcome, rateAttributes, spoiledProbe } from './adaptive-probe';
import { assignLimitedSlots, ExternalLimits, LimitedCalls, limitLastSlotAttribute } from './named-limit-schedule';
import { roundUpToSlotGrid, WINDOW_EDGE_MARGIN_MS } from './rate-settings';
import { ADAPTIVE_ATTRIBUTES, AdaptivePlan, AdaptiveSpec, AdaptiveState, adaptivePlan, parseAdaptiveState } from '../contract/adaptive-spec';

/** Partition key value of the single pacer item. */
export const PACER_ITEM_KEY = 'pacer';
/** Partition key attribute name of the pacer table. */
export const PACER_PARTITION_KEY = 'pk';
/** Attribute holding the next unreserved slot time, epoch milliseconds (N). */
export const NEXT_SLOT_ATTRIBUTE = 'nextSlotAtMs';
/**
 * Attribute holding the interval (ms) the last reservation spaced its slots at: with `nextSlotAtMs`
 * it locates the last reserved slot, from which a changed rate spaces its first slot (see "The rate
 * at run time"). Missing on items written before the rate could change at run time.
 */
export const INTERVAL_ATTRIBUTE = 'intervalMs';
/** Attribute holding until when dispatch is paused (vendor pushback), epoch milliseconds (N). */
export const PAUSED_UNTIL_ATTRIBUTE = 'pausedUntilMs';
/** Default lateness tolerance `L` when pacing StartExecution (PacingPoint.DISPATCH), in milliseconds. */
export const DEFAULT_LATENESS_TOLERANCE_MS = 50;
/**
 * Added to the `1000 + L` span that `floor(R)` slot intervals cover, so that the span is strictly
 * longer: see "The window's edge" in the module comment. One whole millisecond, because a vendor
 * that timestamps in whole milliseconds sees two arrivals 1000.5 ms apart as 1000 ms apart.
 * Declared with the other rate knobs in rate-settings.ts (pure, so the constructs read it too).
 */
export { WINDOW_EDGE_MARGIN_MS };
/**
 * How many times a reservation is attempted when other invocations keep writing first. A reservation
 * that lost a race is moved behind the winners (see "Contention"), so only a change of the pause,
 * the rate or the adaptive state between attempts costs another.
 */
export const DEFAULT_MAX_RESERVATION_ATTEMPTS = 25;

/** Time source, injectable so that tests run on fake time. */
export interface Clock {
  /** Current time, epoch milliseconds. */
  now(): number;
  /** Resolves after `ms` milliseconds. */
  sleep(ms: number): Promise<void>;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms))),
};

/** Slots per second actually scheduled: `floor(R)` when `R >= 1`, else `R`. */
export function effectiveRate(requestsPerSecond: number): number {
  if (!Number.isFinite(requestsPerSecond) || requestsPerSecond <= 0) {
    throw new Error(`requestsPerSecond must be a positive number, got ${requestsPerSecond}`);
  }
  return requestsPerSecond >= 1 ? Math.floor(requestsPerSecond) : requestsPerSecond;
}

/**
 * Slot interval `I = (1000 + L) / r` in milliseconds, rounded up to a multiple of 1/1024 ms so that
 * slot times stay exact in floating point (see the module comment).
 *
 * @param requestsPerSecond the contracted rate `R` (floored here when `R >= 1`)
 * @param latenessToleranceMs `L`
 * @param extraIntervalMs added to the interval (dynamic delay, >= 0: it can only slow)
 */
export function slotIntervalMs(requestsPerSecond: number, latenessToleranceMs: number, extraIntervalMs: number = 0): number {
  if (!Number.isFinite(latenessToleranceMs) || latenessToleranceMs < 0) {
    throw new Error(`latenessToleranceMs must be a non-negative number, got ${latenessToleranceMs}`);
  }
  if (!Number.isFinite(extraIntervalMs) || extraIntervalMs < 0) {
    throw new Error(`extraIntervalMs must be a non-negative number, got ${extraIntervalMs}`);
  }
  const exact = (1000 + latenessToleranceMs + WINDOW_EDGE_MARGIN_MS) / effectiveRate(requestsPerSecond) + extraIntervalMs;
  return roundUpToSlotGrid(exact);
}

// roundUpToSlotGrid lives in rate-settings.ts (adaptive-probe.ts, which this module imports, needs it too).
export { roundUpToSlotGrid };

/**
 * How long an invocation that sees a higher rate (a shorter interval) than the stored schedule's
 * keeps the stored interval: one window `1000 + L + 1` ms, so that no window starting before the
 * increase was deployed holds a slot at the new spacing (see "The rate at run time").
 */
export function rateIncreaseHoldMs(latenessToleranceMs: number): number {
  return 1000 + latenessToleranceMs + WINDOW_EDGE_MARGIN_MS;
}

/** Result of {@link computeSchedule}. */
export interface Schedule {
  /** Time of the first slot: `max(now, nextSlotAtMs, pausedUntilMs)`. */
  readonly base: number;
  /** Number of slots granted (0 when none fits before the deadline). */
  readonly n: number;
  /** The granted slot times, epoch ms, ascending, `I` apart. */
  readonly slots: number[];
  /** What `nextSlotAtMs` becomes: `base + n * I`. Also the next free slot. */
  readonly newNextSlotAtMs: number;
}

/** What else shapes a schedule besides the stored next slot. */
export interface ScheduleOptions {
  /** The vendor's pause: no slot before it (epoch ms). */
  readonly pausedUntilMs?: number;
  /** Added to the slot interval (dynamic delay), >= 0. */
  readonly extraIntervalMs?: number;
  /** No slot earlier than `nowMs + minLeadMs`: time the caller needs before it can fire. Default 0. */
  readonly minLeadMs?: number;
  /**
   * The rate in force set by operators at run time, at most the contract (a higher value counts as
   * the contract: the contract is the ceiling). Default: the contract.
   */
  readonly rateInForce?: number;
  /**
   * The interval the stored schedule was last reserved at (`intervalMs` of the pacer item). Default:
   * the contract's interval without extra delay, the shortest there can have been.
   */
  readonly previousIntervalMs?: number;
  /**
   * Since when (epoch ms) this invocation has paced at its rate and delay: a shorter interval than
   * the stored one is used only {@link rateIncreaseHoldMs} after it. Default: no hold (the caller
   * does not know when its settings changed, e.g. a fixed rate).
   */
  readonly settingsSinceMs?: number;
}

/**
 * The pure schedule step of a reservation.
 *
 * @param nowMs current time, epoch ms
 * @param nextSlotAtMs the stored next unreserved slot, or undefined when there is none yet
 * @param requested how many slots the caller wants
 * @param requestsPerSecond the contracted rate `R` (floored when `R >= 1`; passing `r` is the same)
 * @param latenessToleranceMs `L`
 * @param maxWaitMs the latest acceptable slot is `nowMs + maxWaitMs`
 * @param options the vendor's pause and the dynamic delay
 */
export function computeSchedule(
  nowMs: number,
  nextSlotAtMs: number | undefined,
  requested: number,
  requestsPerSecond: number,
  latenessToleranceMs: number,
  maxWaitMs: number,
  options: ScheduleOptions = {},
): Schedule {
  if (!Number.isInteger(requested) || requested < 0) {
    throw new Error(`requested must be a non-negative integer, got ${requested}`);
  }
  const interval = scheduleInterval(nowMs, requestsPerSecond, latenessToleranceMs, options);
  // The last reserved slot is `nextSlotAtMs - previousInterval`; the first new slot is `interval`
  // after it (a rate change spaces from the last old slot, see "The rate at run time"). Unchanged
  // settings give `nextSlotAtMs` exactly (both terms are on the slot grid).
  const previousInterval = options.previousIntervalMs ?? slotIntervalMs(requestsPerSecond, latenessToleranceMs);
  const nextAtThisInterval = nextSlotAtMs === undefined ? 0 : nextSlotAtMs - previousInterval + interval;
  // An idle schedule (nextSlotAtMs in the past) restarts at now: unused past slots are not
  // banked, otherwise an idle period would allow a burst. No slot falls inside a pause.
  // On the slot grid (a pause from Retry-After or a fractional lead need not be): every slot stays
  // exact in floating point.
  const base = roundUpToSlotGrid(Math.max(nowMs + Math.max(0, options.minLeadMs ?? 0), nextAtThisInterval, options.pausedUntilMs ?? 0));
  const latestSlot = nowMs + Math.max(0, maxWaitMs);
  const fitting = latestSlot < base ? 0 : Math.floor((latestSlot - base) / interval) + 1;
  const n = Math.min(requested, fitting);
  const slots: number[] = [];
  for (let k = 0; k < n; k++) {
    slots.push(base + k * interval);
  }
  return { base, n, slots, newNextSlotAtMs: base + n * interval };
}

/**
 * The interval a reservation spaces its slots at: the rate in force (at most the contract) plus the
 * extra delay; a shorter interval than the stored schedule's only once the invocation has paced at
 * its settings for {@link rateIncreaseHoldMs} (see "The rate at run time").
 */
export function scheduleInterval(nowMs: number, requestsPerSecond: number, latenessToleranceMs: number, options: ScheduleOptions = {}): number {
  const rate = Math.min(options.rateInForce ?? requestsPerSecond, requestsPerSecond);
  const interval = slotIntervalMs(rate, latenessToleranceMs, options.extraIntervalMs ?? 0);
  const previous = options.previousIntervalMs;
  const holding = previous !== undefined && interval < previous && options.settingsSinceMs !== undefined
    && nowMs < options.settingsSinceMs + rateIncreaseHoldMs(latenessToleranceMs);
  return holding ? previous : interval;
}

/**
 * The largest number of `times` inside any half-open window `(a - windowMs, a]`, or, with
 * `closed`, any closed window `[a - windowMs, a]` (what the guarantee is stated for: a vendor may
 * count either way). Used by tests to check the pacing guarantee.
 */
export function maxInAnyWindow(times: number[], windowMs: number = 1000, closed: boolean = false): number {
  const sorted = [...times].sort((x, y) => x - y);
  let max = 0;
  let first = 0;
  // The fullest window can always be taken to end at one of the times.
  for (let last = 0; last < sorted.length; last++) {
    while (closed ? sorted[first] < sorted[last] - windowMs : sorted[first] <= sorted[last] - windowMs) {
      first++;
    }
    max = Math.max(max, last - first + 1);
  }
  return max;
}

/** Slots granted by {@link reserveSlots}. */
export interface SlotReservation {
  /** Reserved slot times, epoch ms, ascending. Possibly fewer than requested, possibly none. */
  readonly slots: number[];
  /** The first slot after this reservation: when the schedule has room again. */
  readonly nextFreeAtMs: number;
  /** The vendor's pause as read, epoch ms (undefined when none was ever written). */
  readonly pausedUntilMs?: number;
  /**
   * With {@link ReserveSlotsOptions.limitedCalls}: for each slot, the index of the call it goes to
   * (named-limit-schedule.ts).
   */
  readonly callIndexes?: number[];
  /**
   * With {@link ReserveSlotsOptions.limitedCalls}: when a call left without a slot because of its
   * named limits has room in them (named-limit-schedule.ts); undefined when none was.
   */
  readonly limitedUntilMs?: number;
  /**
   * With {@link ReserveSlotsOptions.limitedCalls}, when a named limit left calls without a slot: per
   * limit, how many of them it held back (named-limit-schedule.ts `limitWaits`).
   */
  readonly limitWaits?: Record<string, number>;
  /** The calls `limitWaits` counts, per limit (indexes into the calls requested, as `callIndexes`). */
  readonly limitWaitCalls?: Record<string, number[]>;
  /**
   * With adaptive pacing: the effective rate the reservation was made with, `min(rate in force,
   * adaptive rate)` in requests per second (adaptive-rate.ts).
   */
  readonly effectiveRequestsPerSecond?: number;
}

/** Arguments of {@link reserveSlots}. */
export interface ReserveSlotsOptions {
  readonly dynamodb: DynamoDBClient;
  readonly tableName: string;
  /** How many slots are wanted. */
  readonly requested: number;
  readonly requestsPerSecond: number;
  readonly latenessToleranceMs: number;
  /** Slots later than (time of the call + maxWaitMs) are not granted. */
  readonly maxWaitMs: number;
  readonly clock?: Clock;
  /** Random source for the retry backoff. Default Math.random. */
  readonly random?: () => number;
  /** Default {@link DEFAULT_MAX_RESERVATION_ATTEMPTS}. */
  readonly maxAttempts?: number;
  /** Added to the slot interval (dynamic delay), >= 0. Default 0. */
  readonly extraIntervalMs?: number;
  /** No slot earlier than this long after the reservation is computed. Default 0. */
  readonly minLeadMs?: number;
  /** The rate in force, at most `requestsPerSecond` (the contract, the ceiling). Default: the contract. */
  readonly rateInForce?: number;
  /** Since when this invocation has paced at its rate and delay ({@link ScheduleOptions.settingsSinceMs}). */
  readonly settingsSinceMs?: number;
  /**
   * The waiting calls and the named limits each is subject to (one per requested slot): every
   * slot then also respects the calls' limits, reserved in the same write (named-limit-schedule.ts).
   * Default: no named limit.
   */
  readonly limitedCalls?: LimitedCalls;
  /**
   * Limits whose cursors live outside the pacer item (issue 15: per-key rates, key-schedule.ts), one
   * entry per requested slot like `limitedCalls`: the slots given respect them, the reservation's
   * `callIndexes` say which call got which slot, and nothing of them is written here (their owner
   * writes each one's cursor with its own conditional write). Default: none.
   */
  readonly externalLimits?: ExternalLimits;
  /**
   * With `externalLimits`: reads them again (in parallel with the contract's read) when a lost race
   * makes the reservation read again, since whoever won it may have moved them too. Default: the
   * first ones are reused (a stale external cursor costs its owner a lost write, never a limit).
   */
  readonly rereadExternalLimits?: () => Promise<ExternalLimits>;
  /**
   * No slot before this time (epoch ms), like a pause: a dispatcher that waited for a named limit
   * asks for the limit's next slot, whatever its own round trips took. Default: none.
   */
  readonly notBeforeMs?: number;
  /**
   * Adaptive pacing: the adaptive rate stored with the schedule lowers the rate in force
   * (adaptive-rate.ts says why the guarantee holds). Default: none.
   */
  readonly adaptivePacing?: AdaptiveSpec;
  /**
   * The slot the caller gave up before asking for this one (late, paused, no socket), if any: one
   * inside an adaptive probe's window spoils the probe (adaptive-probe.ts), which then makes no step.
   */
  readonly givenUpSlotMs?: number;
}

/**
 * Reserves up to `requested` slots in the shared schedule (optimistic concurrency, see the module
 * comment). Throws when the DynamoDB calls fail or other invocations won every attempt.
 */
export async function reserveSlots(options: ReserveSlotsOptions): Promise<SlotReservation> {
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_RESERVATION_ATTEMPTS;
  // The deadline is fixed when the call starts, so retries cannot push slots past it.
  const deadline = clock.now() + Math.max(0, options.maxWaitMs);
  const key = { [PACER_PARTITION_KEY]: { S: PACER_ITEM_KEY } };
  // Named limits (named-limit-schedule.ts): their cursors are read and written with the contract's.
  const limitNames = [...new Set((options.limitedCalls?.callLimits ?? []).flat())];
  if (options.limitedCalls && options.limitedCalls.callLimits.length !== options.requested) {
    throw new Error(`limitedCalls names the limits of ${options.limitedCalls.callLimits.length} calls, but ${options.requested} slots are requested`);
  }
  if (options.externalLimits && options.externalLimits.callLimits.length !== options.requested) {
    throw new Error(`externalLimits names the limits of ${options.externalLimits.callLimits.length} calls, but ${options.requested} slots are requested`);
  }
  let externalLimits = options.externalLimits;
  // External limits alone go through the same assignment, with no named limit.
  const limitedCalls: LimitedCalls | undefined = options.limitedCalls
    ?? (options.externalLimits ? { limits: [], callLimits: options.externalLimits.callLimits.map(() => []) } : undefined);

  // A reservation that lost its race and may be moved behind the winners (see "Contention").
  let lost: LostReservation | undefined;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    if (lost) {
      const moved = await moveBehindWinners(options, lost, clock.now(), deadline);
      if (moved) {
        return moved;
      }
      // What the reservation was computed from changed (a pause, the rate, adaptive pacing): read
      // again after a backoff, like any lost race.
      lost = undefined;
      if (attempt < maxAttempts) {
        await clock.sleep(Math.floor(random() * Math.min(50, 10 * attempt)) + 1);
      }
      continue;
    }
    // External limits (per-key cursors) are read again with the contract after a lost race.
    const rereadExternal = attempt > 1 && options.externalLimits && options.rereadExternalLimits ? options.rereadExternalLimits() : undefined;
    const [read, reread] = await Promise.all([options.dynamodb.send(new GetItemCommand({
      TableName: options.tableName,
      Key: key,
      // A stale read would only cost a failed condition, but a consistent one avoids the retry.
      ConsistentRead: true,
      ProjectionExpression: `${NEXT_SLOT_ATTRIBUTE}, ${PAUSED_UNTIL_ATTRIBUTE}, ${INTERVAL_ATTRIBUTE}`
        + (options.adaptivePacing ? ADAPTIVE_ATTRIBUTES.map((name) => `, ${name}`).join('') : '')
        + limitNames.map((_, i) => `, #l${i}`).join(''),
      // Limit attribute names hold '#': placeholders are needed (sent only when there are limits).
      ...(limitNames.length > 0 ? { ExpressionAttributeNames: Object.fromEntries(limitNames.map((name, i) => [`#l${i}`, limitLastSlotAttribute(name)])) } : {}),
    })), rereadExternal]);
    if (reread) {
      externalLimits = reread;
      if (externalLimits.callLimits.length !== options.requested) {
        throw new Error(`rereadExternalLimits names the limits of ${externalLimits.callLimits.length} calls, but ${options.requested} slots are requested`);
      }
    }
    const stored = parseNumberAttribute(read.Item?.[NEXT_SLOT_ATTRIBUTE], NEXT_SLOT_ATTRIBUTE);
    const previousInterval = parseNumberAttribute(read.Item?.[INTERVAL_ATTRIBUTE], INTERVAL_ATTRIBUTE);
    const previousIntervalMs = previousInterval?.value;
    const pausedUntilMs = parseNumberAttribute(read.Item?.[PAUSED_UNTIL_ATTRIBUTE], PAUSED_UNTIL_ATTRIBUTE)?.value;

    // Measured after the read: the first slot is never before the moment it is computed.
    const now = clock.now();
    // Adaptive pacing: the adaptive rate read with the schedule, capped at the rate in force, paces
    // like a lower rate in force.
    const ceiling = Math.min(options.rateInForce ?? options.requestsPerSecond, options.requestsPerSecond);
    const adaptiveState = options.adaptivePacing ? parseAdaptiveState(read.Item) : undefined;
    const plan = options.adaptivePacing ? adaptivePlan(now, ceiling, adaptiveState, options.adaptivePacing) : undefined;
    const rateInForce = plan ? plan.rps : options.rateInForce;
    const adaptive = options.adaptivePacing ? { effectiveRequestsPerSecond: rateInForce } : {};
    const scheduleOptions: ScheduleOptions = {
      // A slot asked not before a time (notBeforeMs) is placed like one after a pause.
      pausedUntilMs: options.notBeforeMs === undefined ? pausedUntilMs : Math.max(pausedUntilMs ?? 0, options.notBeforeMs),
      extraIntervalMs: options.extraIntervalMs,
      minLeadMs: options.minLeadMs,
      rateInForce,
      previousIntervalMs,
      settingsSinceMs: options.settingsSinceMs,
    };
    const schedule = computeSchedule(
      now, stored?.value, options.requested, options.requestsPerSecond, options.latenessToleranceMs, deadline - now, scheduleOptions,
    );
    // The interval computeSchedule spaced the slots at (same inputs, same value), stored with them.
    const intervalMs = scheduleInterval(now, options.requestsPerSecond, options.latenessToleranceMs, scheduleOptions);
    const paused = pausedUntilMs === undefined ? {} : { pausedUntilMs };
    const limited = limitedCalls
      ? reserveWithinLimits(schedule, intervalMs, limitedCalls, limitNames, read.Item, options.latenessToleranceMs, externalLimits)
      : undefined;
    // Adaptive pacing's probe (adaptive-probe.ts): planned, then placed, in the reservations' slots.
    const probe = plan && plan.probe !== 'none' && !limited ? adaptiveProbeStep(plan, adaptiveState, {
      nowMs: now,
      slots: schedule.slots,
      storedNextSlotAtMs: stored?.value,
      previousIntervalMs,
      intervalMs,
      ceilingIntervalMs: scheduleInterval(now, options.requestsPerSecond, options.latenessToleranceMs, { ...scheduleOptions, rateInForce: ceiling }),
      slotsPerWindow: effectiveRate(Math.min(rateInForce!, options.requestsPerSecond)),
      ceilingSlotsPerWindow: effectiveRate(ceiling),
      latenessToleranceMs: options.latenessToleranceMs,
      latestSlotMs: deadline,
      probeNotBeforeMs: (adaptiveState?.sinceMs ?? 0) + options.adaptivePacing!.probeIntervalMs,
    }) : undefined;
    const slots = limited ? limited.assignment.slots : probe ? probe.slots : schedule.slots;
    const newNextSlotAtMs = limited ? limited.newNextSlotAtMs : probe ? probe.newNextSlotAtMs : schedule.newNextSlotAtMs;
    const adaptiveAttributes = {
      ...(plan?.update && (plan.probe !== 'plan' || probe) ? { ...rateAttributes(plan.update), ...(plan.probe === 'none' ? clearedProbe() : {}) } : {}),
      ...probe?.attributes,
      ...(plan?.probe !== 'plan' && adaptiveState?.probe ? spoiledProbe(adaptiveState.probe, options.givenUpSlotMs) : {}),
    };
    const adaptiveWrite = Object.keys(adaptiveAttributes).length > 0 ? adaptiveUpdateClauses(adaptiveAttributes, read.Item) : undefined;
    const limitedResult = limited ? {
      callIndexes: limited.assignment.callIndexes,
      ...(limited.assignment.limitedUntilMs !== undefined ? { limitedUntilMs: limited.assignment.limitedUntilMs } : {}),
      ...(limited.assignment.limitWaits !== undefined
        ? { limitWaits: limited.assignment.limitWaits, limitWaitCalls: limited.assignment.limitWaitCalls }
        : {}),
    } : {};
    if (slots.length === 0) {
      // Nothing to claim: the stored value stays as it is (writing would only cause contention).
      return { slots: [], nextFreeAtMs: newNextSlotAtMs, ...paused, ...adaptive, ...limitedResult };
    }

    try {
      await options.dynamodb.send(new UpdateItemCommand({
        TableName: options.tableName,
        Key: key,
        // The interval goes with the next slot: together they locate the last reserved slot.
        UpdateExpression: `SET #next = :new, #interval = :interval${limited?.update.set ?? ''}${adaptiveWrite?.set ?? ''}${adaptiveWrite?.remove ?? ''}`,
        // The interval read is part of the condition: after a rate change one slot can put
        // `nextSlotAtMs` back to the value read (last + old I = last + new I + new I when the old
        // interval is twice the new), so the next slot alone would let a concurrent reservation
        // holding the same read take the same slot. The pair (next, interval) never repeats: with
        // an unchanged interval every write moves the next slot forward.
        ConditionExpression: (stored ? '#next = :old' : 'attribute_not_exists(#next)')
          + (previousInterval ? ' AND #interval = :oldInterval' : ' AND attribute_not_exists(#interval)')
          + (limited?.update.condition ?? '') + (adaptiveWrite?.condition ?? ''),
        ExpressionAttributeNames: { '#next': NEXT_SLOT_ATTRIBUTE, '#interval': INTERVAL_ATTRIBUTE, ...limited?.update.names, ...adaptiveWrite?.names },
        // DynamoDB rejects unused expression values, so :old is only sent with its condition.
        ExpressionAttributeValues: {
          ':new': { N: String(newNextSlotAtMs) },
          ':interval': { N: String(intervalMs) },
          ...(stored ? { ':old': { N: stored.raw } } : {}),
          ...(previousInterval ? { ':oldInterval': { N: previousInterval.raw } } : {}),
          ...limited?.update.values,
          ...adaptiveWrite?.values,
        },
      }));
      return { slots, nextFreeAtMs: newNextSlotAtMs, ...paused, ...adaptive, ...limitedResult };
    } catch (error) {
      if (!isConditionalCheckFailed(error)) {
        throw error;
      }
      // Another invocation reserved in between. A plain reservation (no named limit, nothing of
      // adaptive pacing to write, an interval stored) is moved behind the winners at once, in one
      // write that cannot lose a race to other reservations (see "Contention").
      if (!limited && !adaptiveWrite && previousInterval) {
        lost = {
          count: slots.length,
          intervalMs,
          adaptiveRead: options.adaptivePacing
            ? Object.fromEntries(ADAPTIVE_ATTRIBUTES.map((name) => [name, read.Item?.[name]?.N]))
            : undefined,
          result: { ...paused, ...adaptive },
        };
        continue;
      }
      // Otherwise back off a little (random, so that contenders spread out) and redo the whole
      // read-compute-write.
      if (attempt < maxAttempts) {
        // Capped: many contenders (dispatchers and late vendor callers) must not back off for long.
        await clock.sleep(Math.floor(random() * Math.min(50, 10 * attempt)) + 1);
      }
    }
  }
  throw new Error(`pacer reservation in ${options.tableName} lost ${maxAttempts} consecutive races with other invocations`);
}

/** A reservation that lost its race: what it would reserve again, computed from its read. */
interface LostReservation {
  /** How many slots it had computed. */
  readonly count: number;
  /** The interval it spaced them at (the rate in force, the adaptive rate, the extra delay). */
  readonly intervalMs: number;
  /** With adaptive pacing: every adaptive attribute as read (text; undefined when absent). */
  readonly adaptiveRead?: Record<string, string | undefined>;
  /** The pause and the adaptive rate as read, returned with the slots. */
  readonly result: Pick<SlotReservation, 'pausedUntilMs' | 'effectiveRequestsPerSecond'>;
}

/**
 * The same reservation placed behind the reservations that won the race: `nextSlotAtMs` moves
 * forward by the reservation's span in one UpdateItem whose condition holds whatever reservations
 * landed in between, as long as everything else the reservation was computed from still holds
 * (see "Contention"). Resolves undefined when that condition fails: the caller reads again.
 */
async function moveBehindWinners(
  options: ReserveSlotsOptions, lost: LostReservation, nowMs: number, deadline: number,
): Promise<SlotReservation | undefined> {
  // The first slot: no earlier than the lead and the time asked for, as computeSchedule places it,
  // and late enough for every slot to fit before the deadline.
  const floorMs = Math.max(nowMs + Math.max(0, options.minLeadMs ?? 0), options.notBeforeMs ?? 0);
  const latestFirstMs = deadline - (lost.count - 1) * lost.intervalMs;
  if (latestFirstMs < floorMs) {
    return undefined;
  }
  const names: Record<string, string> = {
    '#next': NEXT_SLOT_ATTRIBUTE, '#interval': INTERVAL_ATTRIBUTE, '#paused': PAUSED_UNTIL_ATTRIBUTE,
  };
  const values: Record<string, { N: string }> = {
    ':span': { N: String(lost.count * lost.intervalMs) },
    ':floor': { N: String(floorMs) },
    ':latest': { N: String(latestFirstMs) },
    ':interval': { N: String(lost.intervalMs) },
  };
  // With adaptive pacing the reservation's rate came from the adaptive attributes read: any change
  // (a decrease, a probe placed, refused or cleared) makes it read again.
  const adaptive = Object.entries(lost.adaptiveRead ?? {}).map(([name, raw], i) => {
    names[`#r${i}`] = name;
    if (raw === undefined) {
      return ` AND attribute_not_exists(#r${i})`;
    }
    values[`:r${i}`] = { N: raw };
    return ` AND #r${i} = :r${i}`;
  }).join('');
  try {
    const output = await options.dynamodb.send(new UpdateItemCommand({
      TableName: options.tableName,
      Key: { [PACER_PARTITION_KEY]: { S: PACER_ITEM_KEY } },
      // DynamoDB adds the span to the value in force when the write applies: no read in between.
      UpdateExpression: 'SET #next = #next + :span',
      // - the first slot (the next slot in force) is on time and the last fits before the deadline;
      // - the interval in force is this reservation's, so the next slot is the last slot + I;
      // - the pause ends at or before the first slot (no slot inside it);
      // - the adaptive state is the one read.
      ConditionExpression: '#next >= :floor AND #next <= :latest AND #interval = :interval'
        + ' AND (attribute_not_exists(#paused) OR #paused <= #next)' + adaptive,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
      // The next slot before the write: this reservation's first slot.
      ReturnValues: 'UPDATED_OLD',
    }));
    const raw = output?.Attributes?.[NEXT_SLOT_ATTRIBUTE]?.N;
    const first = raw === undefined ? NaN : Number(raw);
    if (!Number.isFinite(first)) {
      // The write applied, so these slots are spent; without their time none can be used.
      throw new Error(`pacer reservation in ${options.tableName}: the moved reservation returned no ${NEXT_SLOT_ATTRIBUTE} (got ${JSON.stringify(output?.Attributes)})`);
    }
    // Back onto the slot grid: DynamoDB added two decimals exactly; the nearest double of the text
    // read is within one unit in the last place of the grid value, far closer than 1/2048 ms.
    const base = Math.round(first * 1024) / 1024;
    const slots = Array.from({ length: lost.count }, (_, k) => base + k * lost.intervalMs);
    return { slots, nextFreeAtMs: base + lost.count * lost.intervalMs, ...lost.result };
  } catch (error) {
    if (isConditionalCheckFailed(error)) {
      return undefined;
    }
    throw error;
  }
}

/** The probe's step in a reservation: plan one, or place (or abandon) the one planned. */
function adaptiveProbeStep(plan: AdaptivePlan, state: AdaptiveState | undefined, grid: ProbeGrid): ProbeOutcome | undefined {
  if (plan.probe === 'plan') {
    return planProbe(grid);
  }
  return state?.probe ? placeProbe(grid, state.probe) : undefined;
}

/**
 * The named-limit part of a reservation (named-limit-schedule.ts): which candidate slots go to which
 * calls, and the clauses that add every limit cursor read to the same conditional UpdateItem: the
 * cursors it moves are set, and every cursor it read must still hold the value read.
 */
function reserveWithinLimits(
  schedule: Schedule,
  intervalMs: number,
  calls: LimitedCalls,
  limitNames: string[],
  item: Record<string, { N?: string }> | undefined,
  latenessToleranceMs: number,
  external: ExternalLimits | undefined,
) {
  const read = limitNames.map((name) => parseNumberAttribute(item?.[limitLastSlotAttribute(name)], limitLastSlotAttribute(name)));
  const lastSlots = Object.fromEntries(limitNames.map((name, i) => [name, read[i]?.value]));
  const assignment = assignLimitedSlots(schedule.slots, calls, lastSlots, latenessToleranceMs, external);
  const set: string[] = [];
  const condition: string[] = [];
  const names: Record<string, string> = {};
  const values: Record<string, { N: string }> = {};
  limitNames.forEach((name, i) => {
    names[`#l${i}`] = limitLastSlotAttribute(name);
    if (read[i]) {
      condition.push(`#l${i} = :lold${i}`);
      values[`:lold${i}`] = { N: read[i]!.raw };
    } else {
      condition.push(`attribute_not_exists(#l${i})`);
    }
    const moved = assignment.movedLastSlots[name];
    if (moved !== undefined) {
      set.push(`#l${i} = :l${i}`);
      values[`:l${i}`] = { N: String(moved) };
    }
  });
  return {
    assignment,
    // The contract's cursor moves past the slots given out only (a prefix of the candidates).
    newNextSlotAtMs: schedule.base + assignment.slots.length * intervalMs,
    update: {
      set: set.map((clause) => `, ${clause}`).join(''),
      condition: condition.map((clause) => ` AND ${clause}`).join(''),
      names,
      values,
    },
  };
}

/**
 * Reads the vendor's pause (consistent read): the vendor caller checks it just before firing, so
 * a pause written after its slot was reserved is still honoured. Undefined when none was written.
 */
export async function readPausedUntil(dynamodb: DynamoDBClient, tableName: string): Promise<number | undefined> {
  const read = await dynamodb.send(new GetItemCommand({
    TableName: tableName,
    Key: { [PACER_PARTITION_KEY]: { S: PACER_ITEM_KEY } },
    ConsistentRead: true,
    ProjectionExpression: PAUSED_UNTIL_ATTRIBUTE,
  }));
  return parseNumberAttribute(read.Item?.[PAUSED_UNTIL_ATTRIBUTE], PAUSED_UNTIL_ATTRIBUTE)?.value;
}

/**
 * Pauses every dispatcher and caller until `requestedUntilMs` rounded up to the slot grid (vendor
 * pushback). The pause only ever moves
 * forward: a shorter pause than the stored one changes nothing. Resolves to the pause in force.
 */
export async function pauseUntil(dynamodb: DynamoDBClient, tableName: string, requestedUntilMs: number): Promise<number> {
  return pauseItemUntil(dynamodb, tableName, PACER_ITEM_KEY, PAUSED_UNTIL_ATTRIBUTE, requestedUntilMs, () => readPausedUntil(dynamodb, tableName));
}

/**
 * Moves the pause stored in `attribute` of the item `itemKey` forward to `requestedUntilMs` rounded
 * up to the slot grid (never backward); resolves to the pause in force (read back with `readPause`
 * when a longer one was already stored). The contract's pause (`pauseUntil`) and a key's own pause
 * (key-schedule.ts `pauseKeyUntil`) are both this one conditional write, on different items.
 */
export async function pauseItemUntil(
  dynamodb: DynamoDBClient, tableName: string, itemKey: string, attribute: string, requestedUntilMs: number,
  readPause: () => Promise<number | undefined>,
): Promise<number> {
  if (!Number.isFinite(requestedUntilMs)) {
    throw new Error(`untilMs must be a finite number, got ${requestedUntilMs}`);
  }
  // On the slot grid, like the slots (the first slot after a pause starts at it); rounded up, so
  // the pause is never shortened. A Retry-After of "0.0001" seconds would otherwise be stored as is.
  const untilMs = roundUpToSlotGrid(requestedUntilMs);
  try {
    await dynamodb.send(new UpdateItemCommand({
      TableName: tableName,
      Key: { [PACER_PARTITION_KEY]: { S: itemKey } },
      UpdateExpression: 'SET #paused = :until',
      ConditionExpression: 'attribute_not_exists(#paused) OR #paused < :until',
      ExpressionAttributeNames: { '#paused': attribute },
      ExpressionAttributeValues: { ':until': { N: String(untilMs) } },
    }));
    return untilMs;
  } catch (error) {
    if (isConditionalCheckFailed(error)) {
      // A longer pause is already in force: keep it.
      return (await readPause()) ?? untilMs;
    }
    throw error;
  }
}

function parseNumberAttribute(attribute: { N?: string } | undefined, name: string): { value: number; raw: string } | undefined {
  if (attribute === undefined) {
    return undefined;
  }
  const value = attribute.N === undefined ? NaN : Number(attribute.N);
  if (!Number.isFinite(value)) {
    throw new Error(`pacer item attribute ${name} is not a number: ${JSON.stringify(attribute)}`);
  }
  // The condition compares against the stored text, so the exact number stored is what is matched.
  return { value, raw: attribute.N! };
}

/** Whether a DynamoDB call failed on its condition (another writer was first). */
export function isConditionalCheckFailed(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'ConditionalCheckFailedException';
}

// ---- Single-use slots (issue 13, item 1) ----

/*
 * Single-use slots: a pacing slot is fired at most once, whoever carries it
 *
 * The proof above counts one request per reserved slot. Two invocations can carry the same
 * slot, though:
 *
 * - the vendor-call task retries `Lambda.ServiceException` / `Lambda.AWSLambdaException` /
 *   `Lambda.SdkClientException` after about a second with full jitter, so the retried invocation can
 *   start well before the slot, while the first one keeps running (Lambda does not stop a function
 *   whose synchronous caller went away) and fires at the slot too
 *   (https://docs.aws.amazon.com/lambda/latest/dg/invocation-retries.html: "your function may be
 *   invoked multiple times");
 * - an asynchronous Express execution runs at least once
 *   (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-standard-vs-express.html), so a
 *   duplicate execution carries the same `slotAtMs`.
 *
 * Each would put two requests into one slot, `floor(R) + 1` into one second at the vendor. So the
 * caller claims a slot it was given before it fires it: one conditional PutItem of an item keyed
 * by the slot (`pk = 'slot#<slotAtMs>'`, `attribute_not_exists(pk)`) in the pacer table. The first
 * claim wins; a later one fails its condition and that invocation does not fire the slot (it
 * reserves a fresh one: rate-safe, as every fresh slot is its reserver's alone). A slot the caller
 * reserved itself needs no claim: the conditional write of `nextSlotAtMs` (`reserveSlots`) already
 * gives it to one invocation only. Cost: at most one DynamoDB write per request
 * (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html).
 *
 * Claims expire through the table's TTL attribute an hour after their slot: a duplicate comes
 * within the Express workflow's 5 minutes, and a slot older than its fire tolerance is never fired
 * anyway. DynamoDB deletes expired items in the background, typically within a few days, at no
 * cost (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html).
 */

/** The pacer table's TTL attribute (epoch seconds): slot claims expire, the pacer item never does. */
export const PACER_TTL_ATTRIBUTE = 'expiresAt';
/** How long a slot claim is kept after its slot. */
export const SLOT_CLAIM_RETENTION_SECONDS = 3600;

/** The pacer table key of the claim of a slot. */
export function slotClaimKey(slotAtMs: number): string {
  // String(number) is deterministic: every carrier of the same slot (parsed from the same JSON)
  // writes the same key. Distinct slots are at least one slot interval (> 1 ms) apart.
  return `slot#${String(slotAtMs)}`;
}

/**
 * Claims `slotAtMs` for this invocation: resolves true when it is the first to claim it, false when
 * another invocation already did (that one fires it). Throws on any other DynamoDB error.
 */
export async function claimSlot(dynamodb: DynamoDBClient, tableName: string, slotAtMs: number): Promise<boolean> {
  if (!Number.isFinite(slotAtMs)) {
    throw new Error(`slotAtMs must be a finite number, got ${slotAtMs}`);
  }
  try {
    await dynamodb.send(new PutItemCommand({
      TableName: tableName,
      Item: {
        [PACER_PARTITION_KEY]: { S: slotClaimKey(slotAtMs) },
        [PACER_TTL_ATTRIBUTE]: { N: String(Math.ceil(slotAtMs / 1000) + SLOT_CLAIM_RETENTION_SECONDS) },
      },
      ConditionExpression: 'attribute_not_exists(#pk)',
      ExpressionAttributeNames: { '#pk': PACER_PARTITION_KEY },
    }));
    return true;
  } catch (error) {
    if (isConditionalCheckFailed(error)) {
      return false;
    }
    throw error;
  }
}
