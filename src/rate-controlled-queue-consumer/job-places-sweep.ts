/**
 * The jobs-in-flight sweep: once a minute (the `JobPlacesSweep` schedule, only with
 * `limitJobsInFlight()`) the dispatcher drops expired places and moves as many waiters back to the
 * request queue as places are free (shared/job-waiting.ts). Wakes are event-driven (each freed place
 * wakes one waiter at once); the sweep only bounds what they can miss: a place freed by expiry, a
 * waker that died between the release and the wake, a wake whose short poll found nobody. Such a
 * waiter waits at most one sweep period (plus its own dispatch) for a free place.
 *
 * It also publishes the JobsInFlight gauge while requests wait, so that the at-limit alarm sees
 * every minute of waiting even when no place changes hands.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { DispatchConfig, DispatchLogger, DispatchMetrics } from './dispatch';
import type { Clock } from './pacer';
import { dropExpiredPlaces } from '../shared/job-places';
import { waitingCount, waitingRoomOf, wakeWaiters } from '../shared/job-waiting';
import { MetricNames } from '../shared/metrics';
import { JOB_PLACES_SWEEP_KIND } from '../shared/scheduled-tick';

/** Whether a dispatcher event is the sweep's tick. */
export function isJobPlacesSweep(event: unknown): boolean {
  return typeof event === 'object' && event !== null && (event as { kind?: unknown }).kind === JOB_PLACES_SWEEP_KIND;
}

/** What one sweep did (also logged). */
export interface SweepResult {
  /** Places held after the expired ones were dropped. */
  readonly placesHeld: number;
  /** Waiters moved back to the request queue. */
  readonly woken: number;
  /** Requests still waiting (approximate), undefined when it could not be read. */
  readonly waiting?: number;
}

export interface SweepDeps {
  readonly dynamodb: DynamoDBClient;
  readonly sqs: SQSClient;
  readonly config: DispatchConfig;
  readonly clock: Clock;
  readonly logger: Pick<DispatchLogger, 'info' | 'warn'>;
  readonly metrics: DispatchMetrics;
}

/** One sweep. Throws when the places cannot be read (the next sweep is the retry). */
export async function sweepJobPlaces(deps: SweepDeps): Promise<SweepResult> {
  const limit = deps.config.jobsInFlight;
  if (!limit) {
    throw new Error('received a JobPlacesSweep tick but the dispatcher has no jobs-in-flight limit (MAX_JOBS_IN_FLIGHT is not set)');
  }
  const placesHeld = await dropExpiredPlaces({ dynamodb: deps.dynamodb, tableName: deps.config.pacerTableName }, deps.clock.now());
  const room = waitingRoomOf(limit, deps.sqs);
  const free = Math.max(0, limit.maxJobsInFlight - placesHeld);
  // Long polls: an empty answer means nobody waits (a sweep is not in a hurry).
  const woken = room && free > 0 ? await wakeWaiters(room, free, deps.logger, true) : 0;
  let waiting: number | undefined;
  if (room) {
    try {
      waiting = await waitingCount(room);
    } catch (error) {
      deps.logger.warn('could not read how many requests wait', { error });
    }
  }
  if ((waiting ?? 0) > 0 || woken > 0) {
    deps.metrics.addMetric(MetricNames.JOBS_IN_FLIGHT, 'Count', placesHeld);
  }
  const result = { placesHeld, woken, ...(waiting !== undefined ? { waiting } : {}) };
  deps.logger.info('jobs in flight: sweep done', { ...result, maxJobsInFlight: limit.maxJobsInFlight });
  return result;
}
