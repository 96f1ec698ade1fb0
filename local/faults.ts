/**
 * Fault hooks of the local runtime: what the fault-injection suite (local/fault-suite.ts,
 * test/local/faults.test.ts) and `npm run demo` use to make the emulated AWS services misbehave.
 *
 * The emulators ask a `ServiceFaultHook` around the calls the handlers make to them over HTTP:
 * - `beforeCall`: answer this call with an AWS error instead of carrying it out (throttling);
 * - `afterCall`: the call was carried out; do something before its answer goes back, e.g. crash the
 *   Lambda execution environment that made it (a handler that dies after its side effect and before
 *   its SQS message is deleted).
 * With no hook installed (the default) the emulators behave exactly as before.
 *
 * `FaultInjector` is the one implementation: a mutable plan, so one runtime can run several
 * scenarios in a row (`configure` / `reset`), a seeded random source so a run is reproducible, and
 * counters of what was injected.
 */

/** The emulated services that consult the hook. */
export type FaultService = 'dynamodb' | 'sfn';

/** An AWS error an emulator answers instead of carrying a call out. */
export interface InjectedError {
  /** The AWS error code (`__type`), e.g. `ThrottlingException`. */
  readonly code: string;
  readonly message: string;
  /** HTTP status. AWS answers throttling with 400. */
  readonly status: number;
}

/** What the emulators ask; every method is optional and cheap when nothing is planned. */
export interface ServiceFaultHook {
  /** Before `action` is carried out: an error to answer instead, or undefined to go on. */
  beforeCall?(service: FaultService, action: string): InjectedError | undefined;
  /** After `action` was carried out successfully, before the answer is sent. */
  afterCall?(service: FaultService, action: string): Promise<void> | void;
}

/** Throttle a fraction of one service's calls. */
export interface ThrottleFault {
  readonly service: FaultService;
  /** Fraction (0..1) of the matching calls answered with the error. */
  readonly rate: number;
  /** Actions to throttle, e.g. `['PutItem', 'UpdateItem']`. Default: every action. */
  readonly actions?: string[];
  /**
   * Error codes, used in turn. Default: DynamoDB `ProvisionedThroughputExceededException` and
   * `ThrottlingException`; Step Functions `ThrottlingException`.
   */
  readonly codes?: string[];
}

/** Crash a function's busy execution environments right after one of its calls succeeded. */
export interface CrashFault {
  /** The function whose busy environments are crashed, by name (as the local Lambda knows it). */
  readonly functionName: string;
  readonly service: FaultService;
  /** The call after which to crash, e.g. `StartExecution` or `SendTaskSuccess`. */
  readonly action: string;
  /** Crash after the n-th successful matching call (1 = the first). */
  readonly afterCalls: number;
  /** How many crashes in all: after call n, 2n, ... until this many. @default 1 */
  readonly times?: number;
}

export interface FaultPlan {
  readonly throttle?: ThrottleFault[];
  readonly crash?: CrashFault[];
  /** Seed of the throttling draws. @default 1 */
  readonly seed?: number;
}

/** What the injector did, since the last `configure` / `reset`. */
export interface FaultCounters {
  /** Calls answered with an injected error, by `service:action`. */
  readonly throttled: Record<string, number>;
  readonly throttledTotal: number;
  /** Crashes made, by function name. */
  readonly crashes: Record<string, number>;
  /** Execution environments terminated by those crashes (all the function's busy ones). */
  readonly environmentsKilled: number;
}

/** Crashes every busy execution environment of a function; resolves with how many there were. */
export type CrashBusyEnvironments = (functionName: string, reason: string) => Promise<number>;

const DEFAULT_CODES: Record<FaultService, string[]> = {
  dynamodb: ['ProvisionedThroughputExceededException', 'ThrottlingException'],
  sfn: ['ThrottlingException'],
};

/** A `ServiceFaultHook` driven by a `FaultPlan`. Install it in the runtime, then `attach` the crash target. */
export class FaultInjector implements ServiceFaultHook {
  private plan: FaultPlan = {};
  private random: () => number = mulberry32(1);
  private crashBusy?: CrashBusyEnvironments;
  private readonly callCounts = new Map<CrashFault, number>();
  private readonly crashesDone = new Map<CrashFault, number>();
  private codeTurn = 0;
  private counters = emptyCounters();

  /** Where crashes go (the local Lambda service); set once the runtime has started. */
  public attach(crashBusy: CrashBusyEnvironments): void {
    this.crashBusy = crashBusy;
  }

  /** Replaces the plan and clears the counters. */
  public configure(plan: FaultPlan): void {
    for (const t of plan.throttle ?? []) {
      if (!(t.rate >= 0 && t.rate <= 1)) {
        throw new Error(`throttle rate for ${t.service} must be a fraction between 0 and 1 (given ${t.rate})`);
      }
    }
    for (const c of plan.crash ?? []) {
      if (!(Number.isInteger(c.afterCalls) && c.afterCalls >= 1)) {
        throw new Error(`crash afterCalls for ${c.functionName} must be a whole number of at least 1 (given ${c.afterCalls})`);
      }
    }
    this.plan = plan;
    this.random = mulberry32(plan.seed ?? 1);
    this.callCounts.clear();
    this.crashesDone.clear();
    this.codeTurn = 0;
    this.counters = emptyCounters();
  }

  /** No faults from now on. */
  public reset(): void {
    this.configure({});
  }

  public stats(): FaultCounters {
    return {
      throttled: { ...this.counters.throttled },
      throttledTotal: this.counters.throttledTotal,
      crashes: { ...this.counters.crashes },
      environmentsKilled: this.counters.environmentsKilled,
    };
  }

  public beforeCall(service: FaultService, action: string): InjectedError | undefined {
    const rule = this.plan.throttle?.find((t) => t.service === service && (!t.actions || t.actions.includes(action)));
    if (!rule || rule.rate <= 0 || this.random() >= rule.rate) {
      return undefined;
    }
    const codes = rule.codes ?? DEFAULT_CODES[service];
    const code = codes[this.codeTurn++ % codes.length];
    const key = `${service}:${action}`;
    this.counters.throttled[key] = (this.counters.throttled[key] ?? 0) + 1;
    this.counters.throttledTotal++;
    return { code, message: `Rate exceeded (injected by the local fault plan for ${action})`, status: 400 };
  }

  public async afterCall(service: FaultService, action: string): Promise<void> {
    for (const rule of this.plan.crash ?? []) {
      if (rule.service !== service || rule.action !== action) continue;
      const calls = (this.callCounts.get(rule) ?? 0) + 1;
      this.callCounts.set(rule, calls);
      const done = this.crashesDone.get(rule) ?? 0;
      if (calls % rule.afterCalls !== 0 || done >= (rule.times ?? 1)) continue;
      if (!this.crashBusy) {
        throw new Error('FaultInjector: a crash is planned but no Lambda service is attached (call attach())');
      }
      this.crashesDone.set(rule, done + 1);
      this.counters.crashes[rule.functionName] = (this.counters.crashes[rule.functionName] ?? 0) + 1;
      this.counters.environmentsKilled += await this.crashBusy(rule.functionName,
        `injected crash after ${action} call ${calls} (local fault plan)`);
    }
  }
}

function emptyCounters(): { throttled: Record<string, number>; throttledTotal: number; crashes: Record<string, number>; environmentsKilled: number } {
  return { throttled: {}, throttledTotal: 0, crashes: {}, environmentsKilled: 0 };
}

/** A small seeded PRNG (mulberry32): numbers in [0, 1), the same sequence for the same seed. */
/* eslint-disable no-bitwise */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
/* eslint-enable no-bitwise */
