/**
 * Pacing of StartExecution calls across every concurrent dispatcher invocation.
 *
 * ## The guarantee
 *
 * Across all concurrent invocations and cold starts, the dispatcher issues at most `floor(R)`
 * StartExecution calls (at most 1 when `R < 1`) in any sliding 1-second window, where `R` is the
 * vendor's contracted requests per second, assuming the Lambda clocks agree within the lateness
 * tolerance `L`.
 *
 * ## The method: a shared slot schedule
 *
 * One DynamoDB item (`pk = 'pacer'`) holds `nextSlotAtMs`, the earliest time (epoch ms) that no
 * invocation has reserved yet. An invocation that holds `k` messages reserves up to `k` slots:
 *
 * - effective rate `r = R >= 1 ? floor(R) : R`;
 * - slot interval `I = (1000 + L) / r` ms (rounded up to a multiple of 1/1024 ms, see below);
 * - `base = max(now, nextSlotAtMs)`, slots `base, base + I, ..., base + (n - 1) * I`, where `n`
 *   is as many as are wanted and fit before the invocation's deadline (`n` may be 0);
 * - `nextSlotAtMs := base + n * I`, written with the condition `nextSlotAtMs = :old` (or
 *   `attribute_not_exists(nextSlotAtMs)` when there was none). If another invocation wrote first,
 *   the condition fails and the whole read-compute-write is retried. No locks are held, so a
 *   crashed invocation cannot block the others.
 *
 * A start for slot `t` is issued in `[t, t + L]` or not at all: an invocation that wakes up later
 * than `t + L` (a slow SDK call, a long GC pause) gives the slot up and reserves new ones.
 *
 * ## Why it holds
 *
 * 1. Reserved slot times are globally disjoint and at least `I` apart: every successful write
 *    moves `nextSlotAtMs` forward past the slots it reserved, and the conditional write makes the
 *    read-compute-write of each reservation atomic, so the next reservation starts at or after
 *    the last slot of the previous one plus `I`.
 * 2. Take any window `(a - 1000, a]`. A start in it was issued at some `s` with `t <= s <= t + L`
 *    for its slot `t`, so `t` lies in `(a - 1000 - L, a]`.
 * 3. That is a half-open span of length `1000 + L <= r * I`: any two points in it are less than
 *    `r * I` apart. `m` slots at least `I` apart have a first and a last at least `(m - 1) * I`
 *    apart, so `(m - 1) * I < r * I`, i.e. `m < r + 1`, i.e. `m <= ceil(r)`.
 * 4. `ceil(r)` is `floor(R)` when `R >= 1`, and 1 when `R < 1`.
 *
 * The argument reads all times off one clock. Each Lambda uses its own; the proof carries over
 * as far as they agree (the stated assumption), and skew between them is not otherwise covered.
 *
 * The bound is on when the calls are *issued*; callers must not let the SDK retry StartExecution
 * on their behalf (a retry is a start outside its slot).
 *
 * ## Exact arithmetic
 *
 * `I` is rounded up to a multiple of 1/1024 ms. Rounding up only lowers the rate (`r * I >= 1000 + L`
 * still holds), and every slot time is then a multiple of 1/1024 below 2^43 ms (the year 2248), so
 * doubles represent it exactly: no rounding error can squeeze two slots closer than `I`, and the
 * value written to DynamoDB reads back identical for the `nextSlotAtMs = :old` condition.
 */
// The pacer is bundled into the dispatcher Lambda only; the construct library never imports it, so
// the SDK stays a devDependency (bundled by esbuild).
import { type DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';

/** Partition key value of the single pacer item. */
export const PACER_ITEM_KEY = 'pacer';
/** Partition key attribute name of the pacer table. */
export const PACER_PARTITION_KEY = 'pk';
/** Attribute holding the next unreserved slot time, epoch milliseconds (N). */
export const NEXT_SLOT_ATTRIBUTE = 'nextSlotAtMs';
/** Default lateness tolerance `L`, in milliseconds. */
export const DEFAULT_LATENESS_TOLERANCE_MS = 50;
/** How many times a reservation is attempted when other invocations keep writing first. */
export const DEFAULT_MAX_RESERVATION_ATTEMPTS = 10;

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
 */
export function slotIntervalMs(requestsPerSecond: number, latenessToleranceMs: number): number {
  if (!Number.isFinite(latenessToleranceMs) || latenessToleranceMs < 0) {
    throw new Error(`latenessToleranceMs must be a non-negative number, got ${latenessToleranceMs}`);
  }
  const exact = (1000 + latenessToleranceMs) / effectiveRate(requestsPerSecond);
  return Math.ceil(exact * 1024) / 1024;
}

/** Result of {@link computeSchedule}. */
export interface Schedule {
  /** Time of the first slot: `max(now, nextSlotAtMs)`. */
  readonly base: number;
  /** Number of slots granted (0 when none fits before the deadline). */
  readonly n: number;
  /** The granted slot times, epoch ms, ascending, `I` apart. */
  readonly slots: number[];
  /** What `nextSlotAtMs` becomes: `base + n * I`. Also the next free slot. */
  readonly newNextSlotAtMs: number;
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
 * @param extraIntervalMs added to the slot interval (dynamic delay): it can only slow, so the
 *   guarantee holds unchanged (slots stay at least `I` apart). Rounded up to 1/1024 ms like `I`.
 */
export function computeSchedule(
  nowMs: number,
  nextSlotAtMs: number | undefined,
  requested: number,
  requestsPerSecond: number,
  latenessToleranceMs: number,
  maxWaitMs: number,
  extraIntervalMs: number = 0,
): Schedule {
  if (!Number.isInteger(requested) || requested < 0) {
    throw new Error(`requested must be a non-negative integer, got ${requested}`);
  }
  if (!Number.isFinite(extraIntervalMs) || extraIntervalMs < 0) {
    throw new Error(`extraIntervalMs must be a non-negative number, got ${extraIntervalMs}`);
  }
  const interval = slotIntervalMs(requestsPerSecond, latenessToleranceMs) + Math.ceil(extraIntervalMs * 1024) / 1024;
  // An idle schedule (nextSlotAtMs in the past) restarts at now: unused past slots are not
  // banked, otherwise an idle period would allow a burst.
  const base = Math.max(nowMs, nextSlotAtMs ?? 0);
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
 * The largest number of `times` inside any half-open window `(a - windowMs, a]`.
 * Used by tests to check the pacing guarantee.
 */
export function maxInAnyWindow(times: number[], windowMs: number = 1000): number {
  const sorted = [...times].sort((x, y) => x - y);
  let max = 0;
  let first = 0;
  // The fullest window can always be taken to end at one of the times.
  for (let last = 0; last < sorted.length; last++) {
    while (sorted[first] <= sorted[last] - windowMs) {
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
  /** Added to the slot interval (dynamic delay, >= 0). Default 0. */
  readonly extraIntervalMs?: number;
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

  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const read = await options.dynamodb.send(new GetItemCommand({
      TableName: options.tableName,
      Key: key,
      // A stale read would only cost a failed condition, but a consistent one avoids the retry.
      ConsistentRead: true,
      ProjectionExpression: NEXT_SLOT_ATTRIBUTE,
    }));
    const stored = parseNextSlot(read.Item?.[NEXT_SLOT_ATTRIBUTE]);

    // Measured after the read: the first slot is never before the moment it is computed.
    const now = clock.now();
    const schedule = computeSchedule(
      now, stored?.value, options.requested, options.requestsPerSecond, options.latenessToleranceMs, deadline - now,
      options.extraIntervalMs,
    );
    if (schedule.n === 0) {
      // Nothing to claim: the stored value stays as it is (writing would only cause contention).
      return { slots: [], nextFreeAtMs: schedule.newNextSlotAtMs };
    }

    try {
      await options.dynamodb.send(new UpdateItemCommand({
        TableName: options.tableName,
        Key: key,
        UpdateExpression: 'SET #next = :new',
        ConditionExpression: stored ? '#next = :old' : 'attribute_not_exists(#next)',
        ExpressionAttributeNames: { '#next': NEXT_SLOT_ATTRIBUTE },
        // DynamoDB rejects unused expression values, so :old is only sent with its condition.
        ExpressionAttributeValues: {
          ':new': { N: String(schedule.newNextSlotAtMs) },
          ...(stored ? { ':old': { N: stored.raw } } : {}),
        },
      }));
      return { slots: schedule.slots, nextFreeAtMs: schedule.newNextSlotAtMs };
    } catch (error) {
      if (!isConditionalCheckFailed(error)) {
        throw error;
      }
      // Another invocation reserved in between: back off a little (random, so that contenders
      // spread out) and redo the whole read-compute-write.
      if (attempt < maxAttempts) {
        await clock.sleep(Math.floor(random() * 10 * attempt) + 1);
      }
    }
  }
  throw new Error(`pacer reservation in ${options.tableName} lost ${maxAttempts} consecutive races with other invocations`);
}

function parseNextSlot(attribute: { N?: string } | undefined): { value: number; raw: string } | undefined {
  if (attribute === undefined) {
    return undefined;
  }
  const value = attribute.N === undefined ? NaN : Number(attribute.N);
  if (!Number.isFinite(value)) {
    throw new Error(`pacer item attribute ${NEXT_SLOT_ATTRIBUTE} is not a number: ${JSON.stringify(attribute)}`);
  }
  // The condition compares against the stored text, so the exact number stored is what is matched.
  return { value, raw: attribute.N! };
}

function isConditionalCheckFailed(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'ConditionalCheckFailedException';
}
