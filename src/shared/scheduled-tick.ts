/**
 * What the low-rate (EventBridge Scheduler) trigger of the queue consumer shares between the
 * construct (which sets it) and the dispatcher handler (which reads it). Plain constants: no AWS
 * SDK or aws-cdk-lib imports.
 */

/** Value of `kind` in the input the schedule sends to the dispatcher on every tick. */
export const SCHEDULED_TICK_KIND = 'ScheduledDrainTick';

/** The input of one tick, as EventBridge Scheduler delivers it to the dispatcher. */
export interface ScheduledTickEvent {
  readonly kind: typeof SCHEDULED_TICK_KIND;
  /** When the tick was due (Scheduler's `<aws.scheduler.scheduled-time>`), ISO 8601. */
  readonly scheduledTime?: string;
  /** Scheduler's `<aws.scheduler.execution-id>`, for the logs. */
  readonly executionId?: string;
}

/** Environment of the dispatcher in schedule mode (absent in event source mode). */
export const ScheduleEnv = {
  /** URL of the request queue the tick drains. */
  REQUEST_QUEUE_URL: 'REQUEST_QUEUE_URL',
  /** ARN of the request queue (the records handed to the dispatch logic carry it). */
  REQUEST_QUEUE_ARN: 'REQUEST_QUEUE_ARN',
  /** The most messages one tick may take: floor(requestsPerSecond x tick period). */
  MAX_MESSAGES_PER_TICK: 'MAX_MESSAGES_PER_TICK',
} as const;

/**
 * Value of `kind` in the input of the jobs-in-flight sweep schedule (once a minute, only with
 * `limitJobsInFlight()`): the dispatcher drops expired places and wakes waiters for free places
 * (job-places-sweep.ts).
 */
export const JOB_PLACES_SWEEP_KIND = 'JobPlacesSweep';
