import { Duration } from 'aws-cdk-lib';

/** How a RateControlledQueueConsumer's dispatcher is invoked. */
export enum ConsumerTriggerType {
  /** An SQS event source mapping polls the request queue (the default). */
  EVENT_SOURCE = 'EVENT_SOURCE',
  /** An EventBridge Scheduler schedule invokes the dispatcher, which drains the queue itself. */
  SCHEDULE = 'SCHEDULE',
}

/**
 * Options of `ConsumerTrigger.schedule()`.
 */
export interface ScheduleTriggerOptions {
  /**
   * Time between two ticks. At least 1 minute (EventBridge Scheduler's rate granularity), in
   * whole minutes. Each tick drains at most `floor(requestsPerSecond x every)` messages, so the
   * period must be long enough for at least one (`every >= 1 / requestsPerSecond`). A request can
   * wait up to one period before its tick.
   *
   * The dispatcher's timeout is derived from it (the period minus 5 seconds, at most 15 minutes)
   * so that ticks do not overlap.
   *
   * @default Duration.minutes(1)
   */
  readonly every?: Duration;
}

/**
 * What invokes the queue consumer's dispatcher: an SQS event source mapping (default) or, for
 * contracts below about 1 request per second, an EventBridge Scheduler schedule ("low-rate mode",
 * see docs/low-rate-mode.md).
 */
export class ConsumerTrigger {
  /**
   * The request queue's SQS event source mapping invokes the dispatcher as messages arrive.
   * Lowest latency; the polling is free, but each invocation is billed.
   */
  public static eventSource(): ConsumerTrigger {
    return new ConsumerTrigger(ConsumerTriggerType.EVENT_SOURCE);
  }

  /**
   * An EventBridge Scheduler schedule invokes the dispatcher every `every`; each tick receives
   * and dispatches at most what the contract allows in one period, through the same pacer.
   * One tick drains at a time (a lease in the pacer table; no reserved concurrency needed).
   */
  public static schedule(options: ScheduleTriggerOptions = {}): ConsumerTrigger {
    return new ConsumerTrigger(ConsumerTriggerType.SCHEDULE, options.every ?? Duration.minutes(1));
  }

  /** Which trigger. */
  public readonly type: ConsumerTriggerType;
  /** Tick period of the schedule trigger; undefined for the event source trigger. */
  public readonly every?: Duration;

  private constructor(type: ConsumerTriggerType, every?: Duration) {
    this.type = type;
    this.every = every;
  }
}
