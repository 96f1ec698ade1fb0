/**
 * Local EventBridge Scheduler: fires the template's `AWS::Scheduler::Schedule` resources by
 * invoking their Lambda targets through the local Lambda service, with the schedule's `Input`
 * (context attributes such as `<aws.scheduler.scheduled-time>` filled in), as Scheduler does.
 *
 * What it runs:
 * - `rate(N minute|minutes|hour|hours|day|days)` expressions only. `cron(...)` and `at(...)` are
 *   refused when the runtime starts, naming the schedule (nothing else is needed by the library).
 * - Lambda function targets only (`Target.Arn` a function ARN); any other target is refused.
 * - `State: DISABLED` schedules are kept but never fired. A flexible time window is not
 *   emulated: ticks fire at the start of their window (stated, so a test never relies on it).
 *
 * Time: a `speedup` factor divides every period, so that `rate(1 minute)` with `speedup: 60`
 * ticks every second. Only the ticks are sped up; the functions run in real time (a tick that
 * paces starts 2 s apart still takes 2 s per start). `tickAll()` fires every enabled schedule at
 * once and resolves when those invocations end, for tests that want no timers at all.
 *
 * Invocation: Scheduler invokes a Lambda target asynchronously, and Lambda runs asynchronous
 * invocations concurrently: a tick that finds the previous one still running runs beside it, as on
 * AWS. Only when the target has reserved concurrency (`reservedConcurrency`) and that many ticks
 * run is the tick held and fired when one ends (at most one held; later ones coalesce into it), as
 * Lambda's asynchronous queue retries an event that reserved concurrency throttled. A tick whose
 * invocation fails is counted, not retried (the library sets the function's asynchronous retries
 * to 0: the next tick is the retry).
 */
import { randomUUID } from 'crypto';
import { LambdaInvoker, LOCAL_ACCOUNT, LOCAL_REGION, ResolvedResource } from '../types';

export interface LocalSchedulerOptions {
  /** The `AWS::Scheduler::Schedule` resources, properties resolved. */
  readonly schedules: ResolvedResource[];
  readonly invoke: LambdaInvoker;
  /** Every period is divided by this (default 1: real time). Must be above 0. */
  readonly speedup?: number;
  /**
   * The target function's `ReservedConcurrentExecutions` (by target ARN), undefined when it has
   * none. Default: none for every target (overlapping ticks run at once).
   */
  readonly reservedConcurrency?: (target: string) => number | undefined;
}

/** Counters of one schedule, since `start()`. */
export interface ScheduleStats {
  readonly name: string;
  readonly expression: string;
  readonly periodMs: number;
  /** Ticks due (timer or `tickAll`). */
  readonly ticks: number;
  /** Invocations made. */
  readonly invocations: number;
  /** Invocations that rejected (function error, timeout, throttle). */
  readonly errors: number;
  /** Ticks held because the target's reserved concurrency was in use, and later fired. */
  readonly held: number;
  /** Ticks folded into an already held one (never fired on their own). */
  readonly coalesced: number;
  readonly lastError?: string;
  /** The most recent invocation's result. */
  readonly lastResult?: unknown;
  /** Most invocations of this schedule running at once. */
  readonly maxConcurrent: number;
}

/** Milliseconds of a `rate(...)` expression; throws on anything else. */
export function parseRateExpression(expression: string): number {
  const match = /^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$/.exec(expression.trim());
  if (!match) {
    throw new Error(`only rate(N minute(s)|hour(s)|day(s)) schedule expressions run locally (given '${expression}')`);
  }
  const value = Number(match[1]);
  const unit = match[2].replace(/s$/, '');
  if (value < 1 || (value === 1) !== !match[2].endsWith('s')) {
    // Scheduler rejects 'rate(1 minutes)' and 'rate(2 minute)': so does the runtime.
    throw new Error(`invalid rate expression '${expression}': use 'rate(1 ${unit})' or 'rate(N ${unit}s)' with N > 1`);
  }
  const unitMs = unit === 'minute' ? 60_000 : unit === 'hour' ? 3_600_000 : 86_400_000;
  return value * unitMs;
}

/** Scheduler's context attributes for one tick. */
export interface ScheduleContext {
  readonly scheduleArn: string;
  readonly scheduledTime: string;
  readonly executionId: string;
  readonly attemptNumber: number;
}

/** The input Scheduler sends for one tick: the schedule's Input with its context attributes filled in. */
export function renderInput(input: unknown, context: ScheduleContext): unknown {
  if (input === undefined || input === null) {
    return {};
  }
  const text = typeof input === 'string' ? input : JSON.stringify(input);
  const rendered = text
    .split('<aws.scheduler.schedule-arn>').join(context.scheduleArn)
    .split('<aws.scheduler.scheduled-time>').join(context.scheduledTime)
    .split('<aws.scheduler.execution-id>').join(context.executionId)
    .split('<aws.scheduler.attempt-number>').join(String(context.attemptNumber));
  try {
    return JSON.parse(rendered);
  } catch {
    return rendered;
  }
}

interface RunningSchedule {
  readonly name: string;
  readonly arn: string;
  readonly expression: string;
  readonly periodMs: number;
  readonly target: string;
  readonly input: unknown;
  readonly enabled: boolean;
  /** The target's reserved concurrency; undefined: none (ticks never held). */
  readonly reserved?: number;
  timer?: NodeJS.Timeout;
  readonly inFlight: Set<Promise<void>>;
  held: boolean;
  stats: {
    ticks: number;
    invocations: number;
    errors: number;
    held: number;
    coalesced: number;
    maxConcurrent: number;
    lastError?: string;
    lastResult?: unknown;
  };
}

export class LocalScheduler {
  private readonly schedules: RunningSchedule[];
  private readonly speedup: number;
  private readonly invoke: LambdaInvoker;
  private readonly reservedConcurrency: (target: string) => number | undefined;
  private stopped = false;

  constructor(options: LocalSchedulerOptions) {
    this.speedup = options.speedup ?? 1;
    if (!(this.speedup > 0) || !Number.isFinite(this.speedup)) {
      throw new Error(`scheduleSpeedup must be a positive number (given ${options.speedup})`);
    }
    this.invoke = options.invoke;
    this.reservedConcurrency = options.reservedConcurrency ?? (() => undefined);
    this.schedules = options.schedules.map((resource) => this.plan(resource));
  }

  /** Starts a timer per enabled schedule: the first tick one (sped-up) period from now. */
  public start(): void {
    for (const s of this.schedules.filter((x) => x.enabled)) {
      s.timer = setInterval(() => this.tick(s), Math.max(1, s.periodMs / this.speedup));
      s.timer.unref?.();
    }
  }

  /** Fires every enabled schedule now and resolves when those invocations (and any held tick) end. */
  public async tickAll(): Promise<void> {
    await Promise.all(this.schedules.filter((s) => s.enabled).map((s) => {
      this.tick(s);
      return this.settled(s);
    }));
  }

  /** Counters by schedule name. */
  public stats(): Record<string, ScheduleStats> {
    const out: Record<string, ScheduleStats> = {};
    for (const s of this.schedules) {
      out[s.name] = { name: s.name, expression: s.expression, periodMs: s.periodMs, ...s.stats };
    }
    return out;
  }

  /** Stops the timers and waits for the ticks in flight. Held ticks are dropped. */
  public async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.schedules) {
      if (s.timer) clearInterval(s.timer);
      s.held = false;
    }
    await Promise.all(this.schedules.flatMap((s) => [...s.inFlight].map((p) => p.catch(() => undefined))));
  }

  private plan(resource: ResolvedResource): RunningSchedule {
    const props = resource.properties;
    const where = `schedule ${resource.logicalId}`;
    const expression = String(props.ScheduleExpression ?? '');
    let periodMs: number;
    try {
      periodMs = parseRateExpression(expression);
    } catch (error) {
      throw new Error(`Cannot run ${where} locally: ${(error as Error).message}`);
    }
    const target = props.Target?.Arn;
    if (typeof target !== 'string' || !/^arn:aws:lambda:[^:]+:\d+:function:[^:]+(:[^:]+)?$/.test(target)) {
      throw new Error(`Cannot run ${where} locally: only Lambda function targets are fired (Target.Arn ${JSON.stringify(target)})`);
    }
    const name = typeof props.Name === 'string' ? props.Name : resource.logicalId;
    const group = typeof props.GroupName === 'string' ? props.GroupName : 'default';
    return {
      name,
      arn: `arn:aws:scheduler:${LOCAL_REGION}:${LOCAL_ACCOUNT}:schedule/${group}/${name}`,
      expression,
      periodMs,
      target,
      input: props.Target?.Input,
      enabled: props.State !== 'DISABLED',
      reserved: this.reservedConcurrency(target),
      inFlight: new Set(),
      held: false,
      stats: { ticks: 0, invocations: 0, errors: 0, held: 0, coalesced: 0, maxConcurrent: 0 },
    };
  }

  private tick(s: RunningSchedule): void {
    if (this.stopped) return;
    s.stats.ticks++;
    if (s.reserved !== undefined && s.inFlight.size >= s.reserved) {
      if (s.held) {
        s.stats.coalesced++;
      } else {
        s.held = true;
        s.stats.held++;
      }
      return;
    }
    this.fire(s);
  }

  private fire(s: RunningSchedule): void {
    const event = renderInput(s.input, {
      scheduleArn: s.arn,
      scheduledTime: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      executionId: randomUUID(),
      attemptNumber: 1,
    });
    s.stats.invocations++;
    const invocation: Promise<void> = this.invoke(s.target, event).then(
      (result) => {
        s.stats.lastResult = result;
      },
      (error) => {
        s.stats.errors++;
        s.stats.lastError = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      },
    ).finally(() => {
      s.inFlight.delete(invocation);
      if (s.held && !this.stopped) {
        s.held = false;
        this.fire(s);
      }
    });
    s.inFlight.add(invocation);
    s.stats.maxConcurrent = Math.max(s.stats.maxConcurrent, s.inFlight.size);
  }

  /** Resolves when the schedule has nothing in flight and nothing held. */
  private async settled(s: RunningSchedule): Promise<void> {
    while (s.inFlight.size > 0) {
      await Promise.all([...s.inFlight]);
      // The finally above may have fired a held tick: wait for it too.
      await Promise.resolve();
    }
  }
}
