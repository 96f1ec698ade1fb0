/**
 * Modeled scenarios: event-driven simulations on a virtual clock, with the hops drawn from the
 * declared latency model (local/bench-model.ts).
 *
 * - `runPacedModel`: the pacing design (the dispatcher reserves a slot with the REAL
 *   `reserveSlots` of src/rate-controlled-queue-consumer/pacer.ts against an in-memory table that
 *   answers the same GetItem / conditional UpdateItem calls, starts the Express execution `lead`
 *   ms before the slot, and the vendor caller fires at the slot, or gives it up and reserves again
 *   when it woke up later than slot + fire tolerance).
 * - `runBaselineModel`: the published pattern (the consumer starts Express executions itself,
 *   asynchronously or waiting for each; rate left to the API Gateway stage throttle).
 *
 * Nothing here sleeps for real: a 30-second run at 1000 RPS takes a few seconds of CPU.
 */
import { AttributeValue, BatchGetItemCommand, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { DynamoItems } from './bench-dynamo-items';
import { addedLatency, maxInAnyWindow, utilization, violations, windowLimit } from './bench-metrics';
import { bounds, Distribution, LatencyModel, PacingKnobs, round, sample, seededRandom } from './bench-model';
import {
  newRateObservedAfterMs, RateChange, rateChangeBindsAtMs, rateChangeInUseWithinMs, RateChangeTiming, violationsAgainstRateInForce,
} from './rate-schedule';
import { TimeHeap } from './time-heap';
import {
  ADAPTIVE_PROBE_ATTRIBUTE, ADAPTIVE_PROBE_ATTRIBUTES, ADAPTIVE_PROBE_REFUSED_ATTRIBUTE, ADAPTIVE_RATE_ATTRIBUTE, ADAPTIVE_SINCE_ATTRIBUTE,
  AdaptiveSpec,
} from '../src/contract/adaptive-spec';
import { PAUSE_CHECK_LEAD_MS } from '../src/dispatch-workflow/vendor-call';
import { decreaseAdaptiveRate } from '../src/rate-controlled-queue-consumer/adaptive-rate';
import {
  Clock, INTERVAL_ATTRIBUTE, NEXT_SLOT_ATTRIBUTE, PACER_ITEM_KEY, PACER_PARTITION_KEY, PAUSED_UNTIL_ATTRIBUTE, pauseUntil, reserveSlots,
  slotIntervalMs, WINDOW_EDGE_MARGIN_MS,
} from '../src/rate-controlled-queue-consumer/pacer';
import { deriveRateSettings } from '../src/rate-controlled-queue-consumer/rate-settings';

// ---------------------------------------------------------------------------------------------
// Virtual time
// ---------------------------------------------------------------------------------------------

interface Timer { at: number; seq: number; resolve: () => void }

/** A clock whose time only moves when every pending promise waits on it. */
export class VirtualClock implements Clock {
  private time: number;
  private seq = 0;
  private readonly heap = new TimeHeap<Timer>();

  constructor(startMs = 1_700_000_000_000) {
    this.time = startMs;
  }

  public now(): number {
    return this.time;
  }

  public sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.push({ at: this.time + Math.max(0, ms), seq: this.seq++, resolve }));
  }

  /** Sleeps until `at` (no-op when it has passed). */
  public until(at: number): Promise<void> {
    return this.sleep(at - this.time);
  }

  /** Runs until no timer is left (every simulated actor finished) or `limitMs` of virtual time passed. */
  public async run(limitMs = Infinity): Promise<void> {
    const end = this.time + limitMs;
    for (;;) {
      // Let every promise chain settle before time moves: setImmediate runs after the microtasks.
      await new Promise((r) => setImmediate(r));
      const next = this.pop();
      if (!next || next.at > end) return;
      this.time = next.at;
      next.resolve();
      // Timers due at the same instant fire together.
      while (this.heap.length && this.heap.peek()!.at === this.time) this.pop()!.resolve();
    }
  }

  private push(t: Timer): void {
    this.heap.push(t);
  }

  private pop(): Timer | undefined {
    return this.heap.pop();
  }
}

/**
 * The pacer table in memory: answers the GetItem and conditional UpdateItem calls that
 * `reserveSlots` sends, each taking a DynamoDB round trip drawn from the model; the read and the
 * write take effect half-way through the round trip. Every other item (per-key items, slot
 * claims; `BatchGetItem`, `PutItem`, `DeleteItem`) is kept in `items`, whose expressions dynalite's
 * code evaluates (bench-dynamo-items.ts); a BatchGetItem may name the `pacer` item too.
 */
export class InMemoryPacerTable {
  /** The items other than the contract's `pacer` item. */
  public readonly items = new DynamoItems();
  private stored: string | undefined;
  /** The interval stored with the next slot (pacer.ts INTERVAL_ATTRIBUTE). */
  private storedInterval: string | undefined;
  /** The vendor's pause (pacer.ts pauseUntil), epoch ms text. */
  public pausedUntil: string | undefined;
  /** Adaptive pacing's attributes (contract/adaptive-spec.ts ADAPTIVE_ATTRIBUTES), as stored. */
  private readonly adaptive = new Map<string, string>();
  public conditionalFailures = 0;
  public writes = 0;
  /** Reservations moved behind the winners of a lost race (pacer.ts "Contention"). */
  public movedReservations = 0;
  /** When each read and each write (applied or refused) reached the item, virtual epoch ms. */
  public readonly readTimes: number[] = [];
  public readonly writeTimes: number[] = [];
  /** Probe slots given out (adaptive-probe.ts). */
  public probesGiven = 0;

  constructor(private readonly clock: VirtualClock, private readonly latency: () => number) {}

  public async send(command: unknown): Promise<unknown> {
    const rtt = this.latency();
    await this.clock.sleep(rtt / 2);
    if (!isPacerItemCommand(command)) {
      let answer: unknown;
      let refused: unknown;
      try {
        answer = command instanceof BatchGetItemCommand ? this.batchGet(command) : this.items.send(command);
      } catch (error) {
        refused = error;
      }
      await this.clock.sleep(rtt / 2);
      if (refused !== undefined) throw refused;
      return answer;
    }
    // Each call on the one item takes capacity when it applies, refused writes too (a partition
    // serves at most 1000 write and 3000 read units per second).
    (command instanceof GetItemCommand ? this.readTimes : this.writeTimes).push(this.clock.now());
    let result: unknown;
    let failure: Error | undefined;
    if (command instanceof GetItemCommand) {
      result = { Item: this.pacerItem() };
    } else if (command instanceof UpdateItemCommand && command.input.UpdateExpression === 'SET #paused = :until') {
      // pauseUntil: the pause only moves forward.
      const until = command.input.ExpressionAttributeValues![':until'].N!;
      if (this.pausedUntil === undefined || Number(this.pausedUntil) < Number(until)) {
        this.pausedUntil = until;
        result = {};
      } else {
        failure = Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });
      }
    } else if (command instanceof UpdateItemCommand && command.input.UpdateExpression!.startsWith('SET #rps = :rps, #since = :since')) {
      // decreaseAdaptiveRate: conditional on the time of the last decrease it read; clears the probe.
      const values = command.input.ExpressionAttributeValues!;
      const since = this.adaptive.get(ADAPTIVE_SINCE_ATTRIBUTE);
      if (values[':old'] === undefined ? since === undefined : since === values[':old'].N) {
        this.adaptive.set(ADAPTIVE_RATE_ATTRIBUTE, values[':rps'].N!);
        this.adaptive.set(ADAPTIVE_SINCE_ATTRIBUTE, values[':since'].N!);
        for (const name of ADAPTIVE_PROBE_ATTRIBUTES) if (name !== ADAPTIVE_PROBE_REFUSED_ATTRIBUTE) this.adaptive.delete(name);
        result = {};
      } else {
        failure = Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });
      }
    } else if (command instanceof UpdateItemCommand && command.input.UpdateExpression === 'SET #refused = :probe') {
      // The probe's refusal (adaptive-rate.ts): conditional on the probe still under way.
      const probe = command.input.ExpressionAttributeValues![':probe'].N!;
      if (this.adaptive.get(ADAPTIVE_PROBE_ATTRIBUTE) === probe) {
        this.adaptive.set(ADAPTIVE_PROBE_REFUSED_ATTRIBUTE, probe);
        result = {};
      } else {
        failure = Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });
      }
    } else if (command instanceof UpdateItemCommand && command.input.UpdateExpression === 'SET #next = #next + :span') {
      // A reservation moved behind the winners of its race (pacer.ts "Contention"): the span is
      // added to the next slot in force, under the conditions the pacer states.
      const values = command.input.ExpressionAttributeValues!;
      const names = command.input.ExpressionAttributeNames!;
      const next = this.stored === undefined ? undefined : Number(this.stored);
      const adaptiveHolds = Object.entries(names).filter(([placeholder]) => /^#r\d+$/.test(placeholder))
        .every(([placeholder, name]) => this.adaptive.get(name) === values[`:${placeholder.slice(1)}`]?.N);
      const ok = next !== undefined && next >= Number(values[':floor'].N) && next <= Number(values[':latest'].N)
        && this.storedInterval !== undefined && Number(this.storedInterval) === Number(values[':interval'].N)
        && (this.pausedUntil === undefined || Number(this.pausedUntil) <= next) && adaptiveHolds;
      if (ok) {
        result = { Attributes: { [NEXT_SLOT_ATTRIBUTE]: { N: this.stored } } };
        this.stored = String(next + Number(values[':span'].N));
        this.writes++;
        this.movedReservations++;
      } else {
        this.conditionalFailures++;
        failure = Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });
      }
    } else if (command instanceof UpdateItemCommand) {
      const input = command.input;
      const values = input.ExpressionAttributeValues ?? {};
      const old = values[':old']?.N;
      const names = input.ExpressionAttributeNames ?? {};
      // The adaptive state written with the reservation (adaptive-probe.ts adaptiveUpdateClauses).
      const holds = (placeholder: string) => names[placeholder] === undefined
        || (values[`:old${placeholder.slice(1)}`] === undefined
          ? !this.adaptive.has(names[placeholder])
          : this.adaptive.get(names[placeholder]) === values[`:old${placeholder.slice(1)}`].N);
      const ok = (old === undefined ? this.stored === undefined : this.stored === old) && holds('#asince') && holds('#arefused');
      if (ok) {
        this.stored = values[':new']!.N;
        this.storedInterval = values[':interval']?.N;
        for (const [placeholder, name] of Object.entries(names)) {
          if (!/^#a\d+$/.test(placeholder)) continue;
          const value = values[`:${placeholder.slice(1)}`]?.N;
          if (value === undefined) {
            this.adaptive.delete(name);
          } else {
            this.adaptive.set(name, value);
            if (name === ADAPTIVE_PROBE_ATTRIBUTE) this.probesGiven++;
          }
        }
        this.writes++;
        result = {};
      } else {
        this.conditionalFailures++;
        failure = Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });
      }
    } else {
      throw new Error(`in-memory pacer table: unexpected command ${(command as object).constructor.name}`);
    }
    await this.clock.sleep(rtt / 2);
    if (failure) throw failure;
    return result;
  }

  /** The `pacer` item as a GetItem returns it (undefined before anything was written). */
  private pacerItem(): Record<string, AttributeValue> | undefined {
    const item = {
      ...(this.stored === undefined ? {} : { [NEXT_SLOT_ATTRIBUTE]: { N: this.stored } }),
      ...(this.storedInterval === undefined ? {} : { [INTERVAL_ATTRIBUTE]: { N: this.storedInterval } }),
      ...(this.pausedUntil === undefined ? {} : { [PAUSED_UNTIL_ATTRIBUTE]: { N: this.pausedUntil } }),
      ...Object.fromEntries([...this.adaptive].map(([name, n]) => [name, { N: n }])),
    };
    return Object.keys(item).length === 0 ? undefined : item;
  }

  /** A BatchGetItem: the `pacer` item from this model, every other item from `items`. */
  private batchGet(command: BatchGetItemCommand): unknown {
    const responses: Record<string, Array<Record<string, AttributeValue>>> = {};
    for (const [table, request] of Object.entries(command.input.RequestItems ?? {})) {
      const others = (request.Keys ?? []).filter((key) => key[PACER_PARTITION_KEY]?.S !== PACER_ITEM_KEY);
      const pacer = others.length < (request.Keys ?? []).length ? this.pacerItem() : undefined;
      if (pacer) this.readTimes.push(this.clock.now());
      const answer = others.length === 0 ? undefined
        : this.items.send(new BatchGetItemCommand({ RequestItems: { [table]: { ...request, Keys: others } } })) as {
          Responses: Record<string, Array<Record<string, AttributeValue>>>;
        };
      const rest = answer?.Responses[table] ?? [];
      responses[table] = [...(pacer ? [{ [PACER_PARTITION_KEY]: { S: PACER_ITEM_KEY }, ...pacer }] : []), ...rest];
    }
    return { Responses: responses, UnprocessedKeys: {} };
  }
}

/** Whether a command is a GetItem or UpdateItem of the contract's `pacer` item (the model above answers it). */
function isPacerItemCommand(command: unknown): boolean {
  return (command instanceof GetItemCommand || command instanceof UpdateItemCommand)
    && command.input.Key?.[PACER_PARTITION_KEY]?.S === PACER_ITEM_KEY;
}

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

interface Message { id: number; enqueuedAt: number; visibleAt: number }

/** A queue with visibility: messages come back when a consumer hands them back. */
class SimQueue {
  private readonly messages: Message[] = [];
  private waiters: Array<() => void> = [];
  constructor(private readonly clock: VirtualClock) {}

  public add(m: Message): void {
    this.messages.push(m);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Long polling: resolves when a message is added, or after `ms`. */
  public waitForMessage(ms: number): Promise<void> {
    return Promise.race([new Promise<void>((r) => this.waiters.push(r)), this.clock.sleep(ms)]);
  }

  public get size(): number {
    return this.messages.length;
  }

  /** Up to `n` messages visible now, oldest first. */
  public take(n: number): Message[] {
    const now = this.clock.now();
    const taken: Message[] = [];
    for (let i = 0; i < this.messages.length && taken.length < n;) {
      if (this.messages[i].visibleAt <= now) {
        taken.push(this.messages.splice(i, 1)[0]);
      } else {
        i++;
      }
    }
    return taken;
  }

  /** When the next message becomes visible (undefined: the queue is empty). */
  public nextVisibleAt(): number | undefined {
    let min: number | undefined;
    for (const m of this.messages) if (min === undefined || m.visibleAt < min) min = m.visibleAt;
    return min;
  }
}

/** API Gateway stage throttling: a token bucket of `rate` per second holding at most `burst`. */
class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(private readonly rate: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.last = now;
  }

  public take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }
}

/**
 * The strict vendor: a call finding floor(R) calls in the last second already gets 429. It
 * timestamps in whole milliseconds and counts closed windows [t - 1000, t], the strictest way a
 * vendor may count (issue 13, item 4).
 */
class StrictVendor {
  public readonly arrivals: number[] = [];
  public readonly accepted: number[] = [];
  public rejected = 0;
  private first = 0;
  constructor(private readonly limit: number) {}

  /** Arrivals come in time order (virtual time only moves forward). */
  public arrive(realNow: number): boolean {
    const now = Math.floor(realNow);
    this.arrivals.push(now);
    while (this.arrivals[this.first] < now - 1000) this.first++;
    if (this.arrivals.length - this.first > this.limit) {
      this.rejected++;
      return false;
    }
    this.accepted.push(now);
    return true;
  }
}

/** What a modeled run produces. */
export interface ModeledRun {
  readonly arrivals: number[];
  readonly acceptedArrivals: number[];
  readonly latencies: Array<{ enqueuedAt: number; arrivedAt: number }>;
  readonly requests: number;
  readonly delivered: number;
  readonly failed: number;
  readonly proxy429: number;
  readonly vendor429: number;
  readonly utilization: number;
  readonly vendorMaxRequestsInAnySecond: number;
  readonly vendorViolations: number;
  readonly p50AddedLatencyMs: number | null;
  readonly p99AddedLatencyMs: number | null;
  readonly details: Record<string, number | string>;
}

/** How requests are offered: a backlog present at the start, or a steady fraction of the contract. */
export type Load = { readonly kind: 'backlog'; readonly requests: number }
  | { readonly kind: 'fraction'; readonly fraction: number; readonly durationMs: number };

function offer(queue: SimQueue, clock: VirtualClock, load: Load, rps: number): { total: number; done: Promise<void> } {
  const t0 = clock.now();
  if (load.kind === 'backlog') {
    for (let i = 0; i < load.requests; i++) queue.add({ id: i, enqueuedAt: t0, visibleAt: t0 });
    return { total: load.requests, done: Promise.resolve() };
  }
  // Evenly spaced at fraction * R.
  const spacing = 1000 / (load.fraction * rps);
  const total = Math.max(1, Math.floor(load.durationMs / spacing));
  const done = (async () => {
    for (let i = 0; i < total; i++) {
      await clock.until(t0 + i * spacing);
      queue.add({ id: i, enqueuedAt: clock.now(), visibleAt: clock.now() });
    }
  })();
  return { total, done };
}

function summarize(
  rps: number, vendor: StrictVendor, latencies: ModeledRun['latencies'], requests: number, failed: number,
  proxy429: number, warmupMs: number, details: ModeledRun['details'],
): ModeledRun {
  const limit = windowLimit(rps);
  const lat = addedLatency(latencies);
  return {
    arrivals: vendor.arrivals,
    acceptedArrivals: vendor.accepted,
    latencies,
    requests,
    delivered: latencies.length,
    failed,
    proxy429,
    vendor429: vendor.rejected,
    // Only what the vendor accepted uses the contract; a window can never accept more than floor(R).
    utilization: round(Math.min(1, utilization(vendor.accepted, rps, warmupMs, warmupMs)), 4),
    vendorMaxRequestsInAnySecond: maxInAnyWindow(vendor.arrivals),
    vendorViolations: violations(vendor.arrivals, limit),
    p50AddedLatencyMs: lat.p50,
    p99AddedLatencyMs: lat.p99,
    details,
  };
}

// ---------------------------------------------------------------------------------------------
// The pacing design, modeled
// ---------------------------------------------------------------------------------------------

/**
 * What the real system does beyond the latency model (issue 13): each can put floor(R) + 1
 * requests into one second at the vendor unless its fix is in place. Rates are fractions of
 * requests; all draws are seeded.
 */
export interface PacingEffects {
  /**
   * Fraction of requests whose slot a second invocation fires too: a vendor-caller invoke that
   * Step Functions retried after a Lambda service error while the first keeps running, or a
   * duplicate asynchronous Express execution.
   */
  readonly duplicateFireRate: number;
  /**
   * Spread between the callers' clocks, ms: each container's clock runs ahead by 0 or by this
   * much (the two extremes, half the containers each), so its caller fires that much early in real
   * time.
   */
  readonly clockSpreadMs: number;
  /** Containers the vendor callers run in, each with its own clock. */
  readonly containers: number;
  /** Fraction of fires whose timer wakes before the slot in real time (monotonic timers, wall-clock slots). */
  readonly earlyWakeUpRate: number;
  /** How early such a timer wakes, at most, ms (drawn uniformly in (0, this]). */
  readonly earlyWakeUpMs: number;
  /** Fraction of requests that find no connected socket at the slot: the request waits for a TCP and TLS handshake. */
  readonly freshConnectionRate: number;
  /** The handshake's delay, ms. */
  readonly freshConnectionMs: Distribution;
  /**
   * Edge-exact lateness: every request's delay after its slot (fire lateness + path to the vendor)
   * is one of its two extremes, the path's minimum or the minimum plus the whole budget for it,
   * instead of a draw from the latency model. The worst case the guarantee's assumption allows.
   */
  readonly edgeExact: boolean;
}

/** One fix of issue 13 that a row may leave out (`unfixed-...` rows). */
export type PacingFix = 'single-use-slots' | 'clock-budget' | 'never-early' | 'window-edge-margin' | 'connected-socket';

/** The effects of issue 13 at stated rates, for the modeled `...-effects` and `unfixed-...` rows. */
export const ISSUE_13_EFFECTS: PacingEffects = {
  duplicateFireRate: 0.01,
  clockSpreadMs: 4,
  containers: 16,
  earlyWakeUpRate: 0.1,
  earlyWakeUpMs: 1,
  freshConnectionRate: 0.02,
  freshConnectionMs: { kind: 'uniform', minMs: 30, maxMs: 100 },
  edgeExact: true,
};

export interface PacedModelOptions {
  readonly rps: number;
  readonly load: Load;
  readonly model: LatencyModel;
  readonly knobs: PacingKnobs;
  /** Consumer Lambdas polling at once (the event source mapping's maximum concurrency). @default 2 */
  readonly lanes?: number;
  /** Messages per invocation. @default ceil(R / 2), 1..1000 */
  readonly batchSize?: number;
  /** Latest slot an invocation reserves. @default max(5 s, 3 batches of slots) */
  readonly maxWaitMs?: number;
  readonly seed?: number;
  /** Arrivals in the first and the last `warmupMs` are not counted in U. @default 1 s */
  readonly warmupMs?: number;
  /** The effects of issue 13. @default none (the latency model only) */
  readonly effects?: PacingEffects;
  /** The one fix left out (the row then shows what the effect does without it). @default every fix in place */
  readonly withoutFix?: PacingFix;
  /** The proxy's stage burst. @default the library's derivation (rate-settings.ts deriveRateSettings) */
  readonly proxyBurst?: number;
  /**
   * Operators change the rate in force (README, "The rate at run time"): `atMs` after the run
   * starts, each execution environment (lane, caller container) reads it at a random time within
   * `pollIntervalMs`. @default none (the contract throughout)
   */
  readonly rateChanges?: ReadonlyArray<{ readonly atMs: number; readonly rps: number }>;
  /** @default 15000 (AppConfig's shortest poll) */
  readonly pollIntervalMs?: number;
  /** Latest fresh slot a late caller reserves (the library's maxSlotWait). @default 60000 */
  readonly callerMaxWaitMs?: number;
  /**
   * The vendor's real limit, requests per second, below the contract (issue 14, item 5): it answers
   * 429 to a call that finds floor(limit) calls (answered or refused) in the last second. A 429 is
   * handled as the vendor caller does: the pause (`defaultPauseMs`) and, with `adaptive`, the
   * decrease (the real pauseUntil and decreaseAdaptiveRate on the in-memory table); the request goes
   * back to the queue (the workflow's retry) after 1-2 s. Callers re-read the pause
   * PAUSE_CHECK_LEAD_MS before their slot and give a paused slot up. @default the contract, no 429 handling
   */
  readonly vendorLimitRps?: number;
  /** Adaptive pacing (contract/adaptive-spec.ts), read by every reservation. @default none */
  readonly adaptive?: AdaptiveSpec;
  /** The pause after a 429 without Retry-After (the library's defaultVendorPause). @default 1000 */
  readonly defaultPauseMs?: number;
  /** Receives the run's events (reservations, pause checks, arrivals, decreases), e.g. to print a timeline. @default none */
  readonly trace?: (event: PacedModelEvent) => void;
}

/** One event of a modeled run (`PacedModelOptions.trace`): virtual time `at` (epoch ms), what happened, and its figures. */
export interface PacedModelEvent {
  readonly at: number;
  readonly kind: 'reserved' | 'pause-check-passed' | 'pause-give-up' | 'accepted' | 'refused' | 'paused' | 'decreased' | 'probe-refused';
  readonly [key: string]: number | string | boolean | undefined | number[];
}

export async function runPacedModel(options: PacedModelOptions): Promise<ModeledRun> {
  const { rps, model, knobs } = options;
  const random = seededRandom(options.seed ?? 42);
  const draw = (hop: { distribution: Parameters<typeof sample>[0] }) => sample(hop.distribution, random);
  const clock = new VirtualClock();
  const table = new InMemoryPacerTable(clock, () => draw(model.dynamodbCall));
  const queue = new SimQueue(clock);
  const limited = options.vendorLimitRps !== undefined;
  const vendor = new StrictVendor(windowLimit(options.vendorLimitRps ?? rps));
  const settings = deriveRateSettings(rps, {
    latenessToleranceMs: knobs.latenessToleranceMs, fireToleranceMs: knobs.fireToleranceMs, leadMs: knobs.leadMs,
  });
  const proxyBurst = options.proxyBurst ?? settings.proxyBurstLimit;
  const proxy = new TokenBucket(rps, proxyBurst, clock.now());
  const lanes = options.lanes ?? 2;
  const batchSize = options.batchSize ?? Math.min(1000, Math.max(1, Math.ceil(rps / 2)));
  const effects = options.effects;
  const fixed = (fix: PacingFix) => options.withoutFix !== fix;
  // Without the margin at the window's edge the slots are (1000 + L) / r apart, as before issue
  // 13: the pacer adds its 1 ms to what it is given, so it is given L - 1.
  const scheduleToleranceMs = fixed('window-edge-margin') ? knobs.latenessToleranceMs : knobs.latenessToleranceMs - WINDOW_EDGE_MARGIN_MS;
  const intervalMs = slotIntervalMs(rps, scheduleToleranceMs);
  const maxWaitMs = options.maxWaitMs ?? Math.max(5000, 3 * batchSize * intervalMs);
  // The dispatcher reserves no slot earlier than `lead` from now (its execution needs that long to
  // reach the caller); the caller, when it reserves again, no earlier than its write can land.
  const dynamoMax = (model.dynamodbCall.distribution as { maxMs?: number }).maxMs ?? 20;
  const dispatcherClock: Clock = { now: () => clock.now() + knobs.leadMs, sleep: (ms) => clock.sleep(ms) };
  const callerClock: Clock = { now: () => clock.now() + 2 * dynamoMax, sleep: (ms) => clock.sleep(ms) };

  // The rate in force each environment has read (pacing-settings.ts), in the frame of the clock it
  // reserves with (`offsetMs`: the dispatcher's and the caller's clocks run ahead, see above).
  const runStartMs = clock.now();
  const trace = options.trace ?? (() => undefined);
  const seenAt = new Map<string, number[]>();
  const pollIntervalMs = options.pollIntervalMs ?? 15_000;
  const rateSettings = (environment: string, offsetMs: number) => {
    const changes = options.rateChanges ?? [];
    if (changes.length === 0) return {};
    if (!seenAt.has(environment)) seenAt.set(environment, changes.map((c) => runStartMs + c.atMs + random() * pollIntervalMs));
    let read: { rateInForce?: number; settingsSinceMs: number } = { settingsSinceMs: runStartMs - 60_000 + offsetMs };
    changes.forEach((change, k) => {
      const at = seenAt.get(environment)![k];
      if (at <= clock.now()) read = { rateInForce: change.rps, settingsSinceMs: at + offsetMs };
    });
    return read;
  };

  // Edge-exact lateness: the path's fastest time, and the budget after it. The budget is what L
  // leaves after the clocks' spread (the fixed budget), or all of L (before issue 13, when the
  // budget had no clock term and the clocks were assumed to agree).
  const minPathMs = bounds(model.callerToProxy.distribution)[0] + bounds(model.proxyToVendor.distribution)[0];
  const clockSpreadMs = effects?.clockSpreadMs ?? 0;
  const delayBudgetMs = fixed('clock-budget') ? knobs.latenessToleranceMs - clockSpreadMs : knobs.latenessToleranceMs;
  const containerAheadMs = (container: number) => (effects && container % 2 === 1 ? clockSpreadMs : 0);
  const pickContainer = () => Math.floor(random() * (effects?.containers ?? 1));

  const latencies: ModeledRun['latencies'] = [];
  let proxy429 = 0;
  let failed = 0;
  let lateCallers = 0;
  let coldStarts = 0;
  let reReservations = 0;
  let duplicateFires = 0;
  let slotClaimsRefused = 0;
  let timerGiveUps = 0;
  let slotClaimWrites = 0;
  let earlyWakeUps = 0;
  let freshConnections = 0;
  let noSocketGiveUps = 0;
  const claimedSlots = new Set<number>();
  // With a real limit below the contract (vendorLimitRps): the 429s, the decreases, the effective
  // rate each reservation was made with, and the slots given up for a pause.
  const rejections: number[] = [];
  const decreases: Array<{ at: number; rps: number }> = [];
  const effectiveRates: Array<{ at: number; rps: number }> = [];
  let pauseGiveUps = 0;
  let probesRefused = 0;
  let reservationRaceFailures = 0;
  const delivered = new Set<number>();
  const offered = offer(queue, clock, options.load, rps);
  let finished = 0;
  const allDone = () => finished >= offered.total;

  /** The request leaves the caller `delayMs` after now and crosses the proxy to the vendor. */
  const fire = async (m: Message, afterFireMs?: number) => {
    if (afterFireMs !== undefined) {
      // Edge-exact: the whole post-fire delay at once, the proxy's throttle at its minimum hop.
      await clock.sleep(bounds(model.callerToProxy.distribution)[0]);
    } else {
      await clock.sleep(draw(model.callerToProxy));
    }
    if (!proxy.take(clock.now())) {
      // Does not happen while the pacer holds; counted if it does (the caller would pause and retry).
      proxy429++;
      failed++;
      return true;
    }
    await clock.sleep(afterFireMs !== undefined ? afterFireMs - bounds(model.callerToProxy.distribution)[0] : draw(model.proxyToVendor));
    if (!vendor.arrive(clock.now()) && limited) {
      rejections.push(clock.now());
      trace({ at: clock.now(), kind: 'refused', id: m?.id });
      return false;
    }
    if (limited) trace({ at: clock.now(), kind: 'accepted', id: m?.id });
    // A request fired twice (a duplicate that got through) is delivered once, at its first arrival.
    if (m && !delivered.has(m.id)) {
      delivered.add(m.id);
      latencies.push({ enqueuedAt: m.enqueuedAt, arrivedAt: clock.now() });
    }
    return true;
  };

  /**
   * One vendor caller firing `slot` from `container`: by its own clock (ahead of real time by the
   * container's offset), never before the slot when the never-early fix is in, claiming the slot
   * first when the single-use fix is in. Resolves false when it did not send (claim refused).
   */
  const fireSlot = async (m: Message, slot: number, container: number): Promise<'sent' | 'refused' | 'late' | 'rejected'> => {
    const ahead = containerAheadMs(container);
    let wake = slot - ahead;
    if (effects && !fixed('never-early') && random() < effects.earlyWakeUpRate) {
      earlyWakeUps++;
      wake -= random() * effects.earlyWakeUpMs;
    }
    await clock.until(wake);
    // The timer's own lateness; a caller that wakes later than its fire tolerance gives the slot up.
    const timerLateMs = effects?.edgeExact ? 0 : draw(model.timerLateness);
    if (timerLateMs > knobs.fireToleranceMs) {
      return 'late';
    }
    if (effects) {
      // The single-use slot: one conditional write of the slot per fire (before the request is
      // written); a second fire of the same slot finds it claimed.
      if (fixed('single-use-slots')) {
        slotClaimWrites++;
        if (claimedSlots.has(slot)) {
          slotClaimsRefused++;
          return 'refused';
        }
        claimedSlots.add(slot);
      }
    }
    let extraMs = 0;
    if (effects && random() < effects.freshConnectionRate && !fixed('connected-socket')) {
      freshConnections++;
      extraMs = sample(effects.freshConnectionMs, random);
    }
    let accepted: boolean;
    if (effects?.edgeExact) {
      accepted = await fire(m, minPathMs + (random() < 0.5 ? 0 : delayBudgetMs) + extraMs);
    } else {
      await clock.sleep(timerLateMs + extraMs);
      accepted = await fire(m);
    }
    return accepted ? 'sent' : 'rejected';
  };

  /** The vendor caller's 429 handling (vendor-call.ts): the pause, the adaptive decrease, the retry through the queue. */
  const on429 = async (m: Message, slotAtMs: number) => {
    const until = await pauseUntil(table as never, 'bench-pacer', clock.now() + (options.defaultPauseMs ?? 1000));
    trace({ at: clock.now(), kind: 'paused', id: m.id, until });
    if (options.adaptive) {
      const outcome = await decreaseAdaptiveRate(table as never, 'bench-pacer', clock.now(), rps, options.adaptive, slotAtMs);
      if (outcome.probeRefused) {
        probesRefused++;
        trace({ at: clock.now(), kind: 'probe-refused', id: m.id });
      }
      if (outcome.decreased) {
        decreases.push({ at: clock.now(), rps: outcome.rps! });
        trace({ at: clock.now(), kind: 'decreased', id: m.id, rps: outcome.rps, pausedUntil: outcome.pausedUntilMs });
      }
    }
    queue.add({ ...m, visibleAt: clock.now() + 1000 + random() * 1000 });
  };

  /** Resolves true when the request was delivered, false when the vendor refused it (it is back in the queue). */
  const caller = async (m: Message, slotAtMs: number): Promise<boolean> => {
    let slot = slotAtMs;
    const container = pickContainer();
    for (;;) {
      if (limited) {
        // The caller re-reads the pause shortly before its slot and gives a paused slot up.
        await clock.until(slot - PAUSE_CHECK_LEAD_MS);
        if (table.pausedUntil !== undefined && Number(table.pausedUntil) > slot) {
          trace({ at: clock.now(), kind: 'pause-give-up', id: m.id, slot });
          pauseGiveUps++;
          const fresh = await reserveOrRequeue(m, container, slot);
          if (fresh === undefined) return false;
          slot = fresh;
          continue;
        }
        trace({ at: clock.now(), kind: 'pause-check-passed', id: m.id, slot });
      }
      const noSocket = effects !== undefined && fixed('connected-socket') && random() < effects.freshConnectionRate;
      if (clock.now() + containerAheadMs(container) <= slot + knobs.fireToleranceMs && !noSocket) {
        if (effects && random() < effects.duplicateFireRate) {
          // A second invocation carries the same slot and fires it from another container.
          duplicateFires++;
          void fireSlot(m, slot, pickContainer());
        }
        const outcome = await fireSlot(m, slot, container);
        if (outcome === 'rejected') {
          await on429(m, slot);
          return false;
        }
        if (outcome !== 'late') {
          return true;
        }
        // Woke up later than the fire tolerance at its slot: given up, reserved again below.
        timerGiveUps++;
      } else if (noSocket) {
        // No connected socket before the slot: the slot is given up rather than fired late.
        noSocketGiveUps++;
      } else {
        // Woke up too late for its slot: give it up, reserve again (the pacer's own code).
        lateCallers++;
      }
      reReservations++;
      const fresh = await reserveOrRequeue(m, container, slot);
      if (fresh === undefined) return false;
      slot = fresh;
    }
  };

  /**
   * A fresh slot, or undefined when the reservation lost DEFAULT_MAX_RESERVATION_ATTEMPTS races in a
   * row (many callers giving their slots up at once, e.g. at 1000 RPS after a pause): the caller's
   * invocation fails and the request goes back to the queue, as after a 429 (counted).
   */
  const reserveOrRequeue = async (m: Message, container: number, givenUpSlotMs: number): Promise<number | undefined> => {
    try {
      return await reserveForCaller(container, givenUpSlotMs);
    } catch (error) {
      if (!/consecutive races/.test((error as Error).message)) throw error;
      reservationRaceFailures++;
      queue.add({ ...m, visibleAt: clock.now() + 1000 + random() * 1000 });
      return undefined;
    }
  };

  /** A late caller's fresh slot (vendor-call.ts: the same settings as the dispatcher's). */
  const reserveForCaller = async (container: number, givenUpSlotMs: number): Promise<number> => {
    const r = await reserveSlots({
      dynamodb: table as never,
      tableName: 'bench-pacer',
      requested: 1,
      requestsPerSecond: rps,
      latenessToleranceMs: scheduleToleranceMs,
      maxWaitMs: options.callerMaxWaitMs ?? 60_000,
      clock: callerClock,
      random,
      ...rateSettings(`caller-${container}`, 2 * dynamoMax),
      adaptivePacing: options.adaptive,
      givenUpSlotMs,
    });
    trace({ at: clock.now(), kind: 'reserved', by: `caller-${container}`, rps: r.effectiveRequestsPerSecond, slots: r.slots });
    return r.slots[0];
  };

  const execution = async (m: Message, slotAtMs: number) => {
    await clock.sleep(draw(model.expressStart));
    let invoke = draw(model.lambdaInvoke);
    if (random() < model.coldStartFraction) {
      coldStarts++;
      invoke += draw(model.lambdaColdStart);
    }
    await clock.sleep(invoke);
    if (await caller(m, slotAtMs)) {
      finished++;
    }
  };

  const lane = async (_: unknown, laneId: number) => {
    const pending: Array<Promise<void>> = [];
    while (!allDone()) {
      const next = queue.nextVisibleAt();
      if (next === undefined) {
        // Long polling: wait for the next message (or for the run to end).
        await queue.waitForMessage(200);
        continue;
      }
      await clock.until(next);
      await clock.sleep(draw(model.queueToConsumer));
      const batch = queue.take(batchSize);
      if (!batch.length) continue;
      let reservation: Awaited<ReturnType<typeof reserveSlots>>;
      try {
        reservation = await reserveSlots({
          dynamodb: table as never,
          tableName: 'bench-pacer',
          requested: batch.length,
          requestsPerSecond: rps,
          latenessToleranceMs: scheduleToleranceMs,
          maxWaitMs,
          clock: dispatcherClock,
          random,
          ...rateSettings(`lane-${laneId}`, knobs.leadMs),
          adaptivePacing: options.adaptive,
        });
      } catch (error) {
        // Lost every race (see reserveOrRequeue): the invocation fails, its batch comes back.
        if (!/consecutive races/.test((error as Error).message)) throw error;
        reservationRaceFailures++;
        for (const m of batch) queue.add({ ...m, visibleAt: clock.now() + 1000 });
        continue;
      }
      if (reservation.effectiveRequestsPerSecond !== undefined) {
        effectiveRates.push({ at: clock.now(), rps: reservation.effectiveRequestsPerSecond });
      }
      trace({ at: clock.now(), kind: 'reserved', by: `lane-${laneId}`, rps: reservation.effectiveRequestsPerSecond, slots: reservation.slots });
      // Messages without a slot go back, visible again when the schedule has room.
      for (const m of batch.slice(reservation.slots.length)) {
        queue.add({ ...m, visibleAt: Math.max(clock.now(), reservation.nextFreeAtMs - knobs.leadMs - 100) });
      }
      const starts = reservation.slots.map(async (slot, k) => {
        await clock.until(slot - knobs.leadMs);
        await clock.sleep(draw(model.startExecutionCall));
        pending.push(execution(batch[k], slot));
      });
      // The invocation ends when its last start has been issued.
      await Promise.all(starts);
    }
    await Promise.all(pending);
  };

  const lanesDone = Promise.all(Array.from({ length: lanes }, lane));
  await clock.run();
  await Promise.all([lanesDone, offered.done]);
  return summarize(rps, vendor, latencies, offered.total, failed, proxy429, options.warmupMs ?? 1000, {
    ...rateChangeDetails(vendor.arrivals, rps, runStartMs, options.rateChanges ?? [], {
      pollIntervalMs, horizonMs: Math.max(maxWaitMs, options.callerMaxWaitMs ?? 60_000), latenessToleranceMs: knobs.latenessToleranceMs,
    }),
    ...(limited
      ? {
        ...adaptiveDetails(vendor, rejections, decreases, effectiveRates, runStartMs, options, pauseGiveUps, offered.total - delivered.size),
        ...(options.adaptive ? { probesPlanned: table.probesGiven, probesRefused } : {}),
        reservationRaceFailures,
      }
      : {}),
    lanes,
    batchSize,
    maxWaitMs: Math.round(maxWaitMs),
    slotIntervalMs: round(intervalMs, 3),
    lateCallers,
    coldStarts,
    reReservations,
    conditionalWriteFailures: table.conditionalFailures,
    movedReservations: table.movedReservations,
    // Capacity units per second on the one pacer item (each call on an item under 1 KB is one unit).
    pacerWritesMaxPerSecond: maxInAnyWindow(table.writeTimes, 1000),
    pacerReadsMaxPerSecond: maxInAnyWindow(table.readTimes, 1000),
    proxyBurst,
    timerGiveUps,
    ...(effects ? {
      withoutFix: options.withoutFix ?? 'none',
      duplicateFires,
      // Both fires of a duplicated slot reached the vendor (one of the two, with the single-use slot).
      duplicatesSent: duplicateFires - slotClaimsRefused,
      slotClaimsRefused,
      slotClaimWrites,
      earlyWakeUps,
      freshConnections,
      noSocketGiveUps,
    } : {}),
  });
}

/** After this long the adaptive rows count as converged: the first decreases are over. */
export const ADAPTIVE_CONVERGENCE_MS = 60_000;

/**
 * The adaptive pacing figures of a run against a vendor whose real limit is below the contract
 * (issue 14, item 5), all from the vendor's own arrivals and answers: after convergence
 * (ADAPTIVE_CONVERGENCE_MS) and while the backlog lasts (until the last accepted arrival), the 429s
 * per probe interval (on average, and the most in any sliding probe interval) and the utilization
 * of the real limit (accepted calls / (floor(limit) x span)).
 */
function adaptiveDetails(
  vendor: StrictVendor, rejections: number[], decreases: Array<{ at: number; rps: number }>, effectiveRates: Array<{ at: number; rps: number }>,
  runStartMs: number, options: PacedModelOptions, pauseGiveUps: number, lost: number,
): Record<string, number | string> {
  const limit = windowLimit(options.vendorLimitRps!);
  const from = runStartMs + ADAPTIVE_CONVERGENCE_MS;
  const accepted = [...vendor.accepted].sort((a, b) => a - b);
  const to = accepted[accepted.length - 1] ?? from;
  const spanMs = Math.max(0, to - from);
  const inSpan = (t: number) => t >= from && t <= to;
  const probeMs = options.adaptive?.probeIntervalMs ?? 10_000;
  const rejectedAfter = rejections.filter(inSpan);
  const rates = effectiveRates.filter((e) => inSpan(e.at)).map((e) => e.rps);
  return {
    realLimitRps: options.vendorLimitRps!,
    adaptive: options.adaptive ? `decrease x${options.adaptive.decreaseFactor} per ${options.adaptive.cooldownMs} ms cooldown, +${options.adaptive.increaseStep} rps per ${probeMs} ms probe, minimum ${options.adaptive.minimumRequestsPerSecond} rps` : 'off',
    convergedAfterMs: ADAPTIVE_CONVERGENCE_MS,
    measuredSpanMs: Math.round(spanMs),
    vendor429Total: rejections.length,
    vendor429AfterConvergence: rejectedAfter.length,
    probeIntervalsAfterConvergence: round(spanMs / probeMs, 1),
    vendor429PerProbeInterval: spanMs > 0 ? round(rejectedAfter.length / (spanMs / probeMs), 3) : 0,
    maxVendor429InAnyProbeInterval: maxInAnyWindow(rejectedAfter, probeMs),
    // A burst: 429s less than a cooldown apart (answered to requests already past their pause check).
    maxVendor429BurstsInAnyProbeInterval: maxInAnyWindow(burstStarts(rejectedAfter, options.adaptive?.cooldownMs ?? 2000), probeMs),
    realLimitUtilization: spanMs > 0 ? round(accepted.filter(inSpan).length / (limit * spanMs / 1000), 4) : 0,
    adaptiveDecreases: decreases.length,
    effectiveRateMinAfterConvergence: rates.length ? round(Math.min(...rates), 3) : 'n/a',
    effectiveRateMaxAfterConvergence: rates.length ? round(Math.max(...rates), 3) : 'n/a',
    pauseGiveUps,
    lost,
  };
}

/** The first 429 of each burst (429s less than `gapMs` apart), times ascending. */
function burstStarts(times: number[], gapMs: number): number[] {
  return times.filter((t, k) => k === 0 || t - times[k - 1] >= gapMs);
}

/**
 * The rate-change figures of a run (local/rate-schedule.ts): windows over the rate in force (each
 * change binding where the stated bound says), and per change the stated and the observed time
 * until the new rate was in use.
 */
function rateChangeDetails(
  arrivals: number[], rps: number, runStartMs: number, changes: ReadonlyArray<{ atMs: number; rps: number }>, timing: RateChangeTiming,
): Record<string, number | string> {
  if (changes.length === 0) return {};
  const schedule: RateChange[] = [];
  const details: Record<string, number | string> = {};
  let previous = rps;
  changes.forEach((change, k) => {
    const deployedAt = runStartMs + change.atMs;
    const decrease = change.rps < previous;
    schedule.push({ atMs: rateChangeBindsAtMs(deployedAt, decrease, timing), requestsPerSecond: change.rps });
    const until = k + 1 < changes.length ? runStartMs + changes[k + 1].atMs : Number.POSITIVE_INFINITY;
    const observed = newRateObservedAfterMs(arrivals.filter((a) => a < until), deployedAt, previous, change.rps);
    details[`change${k + 1}`] = `${previous} -> ${change.rps} rps at ${change.atMs / 1000} s: in use after ${observed === undefined ? 'not observed' : `${round(observed / 1000, 1)} s`}`
      + ` (stated within ${round(rateChangeInUseWithinMs(decrease, timing) / 1000, 1)} s)`;
    previous = change.rps;
  });
  details.rateInForceViolations = violationsAgainstRateInForce(arrivals, rps, schedule);
  details.rateChangeTiming = `P ${timing.pollIntervalMs} ms, H ${Math.round(timing.horizonMs)} ms, L ${timing.latenessToleranceMs} ms`;
  return details;
}

// ---------------------------------------------------------------------------------------------
// The published pattern, modeled
// ---------------------------------------------------------------------------------------------

export interface BaselineModelOptions {
  readonly rps: number;
  readonly load: Load;
  readonly model: LatencyModel;
  /**
   * `async`: the consumer calls StartExecution for each message of its batch and moves on (the
   * blog's design). `sync`: it waits for each execution (StartSyncExecution) to get the vendor's
   * answer before the next.
   */
  readonly mode: 'async' | 'sync';
  /** Event source mapping maximum concurrency. @default async 2 (the minimum), sync 10 */
  readonly lanes?: number;
  /** @default 10 */
  readonly batchSize?: number;
  /** Proxy stage rate and burst. @default R and max(2, ceil(R / 4)), as the library derives them */
  readonly proxyRate?: number;
  readonly proxyBurst?: number;
  /**
   * Step Functions Retry on 429: retries after the first attempt, first interval, backoff rate.
   * @default 3, 1000 ms, 2 (the ASL defaults MaxAttempts 3, IntervalSeconds 1, BackoffRate 2; no jitter)
   */
  readonly retries?: number;
  readonly retryIntervalMs?: number;
  readonly backoffRate?: number;
  readonly seed?: number;
  readonly warmupMs?: number;
}

export async function runBaselineModel(options: BaselineModelOptions): Promise<ModeledRun> {
  const { rps, model } = options;
  const random = seededRandom(options.seed ?? 7);
  const draw = (hop: { distribution: Parameters<typeof sample>[0] }) => sample(hop.distribution, random);
  const clock = new VirtualClock();
  const queue = new SimQueue(clock);
  const vendor = new StrictVendor(windowLimit(rps));
  const proxy = new TokenBucket(options.proxyRate ?? rps, options.proxyBurst ?? Math.max(2, Math.ceil(rps / 4)), clock.now());
  const lanes = options.lanes ?? (options.mode === 'async' ? 2 : 10);
  const batchSize = options.batchSize ?? 10;
  const retries = options.retries ?? 3;
  const retryIntervalMs = options.retryIntervalMs ?? 1000;
  const backoffRate = options.backoffRate ?? 2;
  const latencies: ModeledRun['latencies'] = [];
  let proxy429 = 0;
  let failed = 0;
  let reachedProxy = 0;
  const offered = offer(queue, clock, options.load, rps);
  let taken = 0;

  /** The Express workflow's HTTP task through the proxy, with its Retry on 429. */
  const execution = async (m: Message) => {
    await clock.sleep(draw(model.expressStart));
    for (let attempt = 0; ; attempt++) {
      await clock.sleep(draw(model.callerToProxy));
      reachedProxy++;
      let ok = proxy.take(clock.now());
      if (!ok) {
        proxy429++;
      } else {
        await clock.sleep(draw(model.proxyToVendor));
        ok = vendor.arrive(clock.now());
        if (ok) latencies.push({ enqueuedAt: m.enqueuedAt, arrivedAt: clock.now() });
        if (options.mode === 'sync') await clock.sleep(draw(model.vendorResponse));
      }
      if (ok) break;
      if (attempt >= retries) {
        failed++;
        break;
      }
      await clock.sleep(retryIntervalMs * backoffRate ** attempt);
    }
  };

  const lane = async () => {
    const pending: Array<Promise<void>> = [];
    while (taken < offered.total) {
      const next = queue.nextVisibleAt();
      if (next === undefined) {
        await queue.waitForMessage(200);
        continue;
      }
      await clock.until(next);
      await clock.sleep(draw(model.queueToConsumer));
      const batch = queue.take(batchSize);
      taken += batch.length;
      for (const m of batch) {
        if (options.mode === 'async') {
          await clock.sleep(draw(model.startExecutionCall));
          pending.push(execution(m));
        } else {
          await clock.sleep(draw(model.startExecutionCall) / 2);
          await execution(m);
          await clock.sleep(draw(model.startExecutionCall) / 2);
        }
      }
    }
    await Promise.all(pending);
  };

  const lanesDone = Promise.all(Array.from({ length: lanes }, lane));
  await clock.run();
  await Promise.all([lanesDone, offered.done]);
  const firstArrival = vendor.arrivals[0] ?? 0;
  const lastArrival = vendor.arrivals[vendor.arrivals.length - 1] ?? 0;
  return summarize(rps, vendor, latencies, offered.total, failed, proxy429, options.warmupMs ?? 1000, {
    mode: options.mode,
    lanes,
    batchSize,
    proxyAttemptsPerSecond: round(reachedProxy / Math.max(0.001, (lastArrival - firstArrival) / 1000), 1),
    failedAfterRetries: failed,
  });
}
