/**
 * Issue 15, design docs/design/per-key-limits.md section 4: the high-priority request queue.
 *
 * High requests go to a queue of their own, polled by its own event source mapping on the same
 * dispatcher function (Lambda polls each mapped queue separately), so they never wait in the
 * request queue's FIFO backlog. That alone is not enough: a dispatcher holding a normal batch
 * reserves slots up to `maxPacingWait` ahead, so a high batch would find the schedule taken for
 * seconds. With a high-priority queue configured, a batch from any OTHER queue therefore reserves
 * its slots in rounds, each at most `lead + horizon` ahead of now (the dispatcher keeps holding its
 * batch, up to its deadline as before; no message is set aside, no receive is added). A high batch
 * reserves up to its deadline: the next free slot it finds is at most `lead + horizon` away.
 */
import type { SQSRecord } from 'aws-lambda';
import { ConsumerEnv } from '../shared/env';

/**
 * The normal batches' reservation horizon past the lead when a high-priority queue exists. A high
 * request's slot is at most this much later than it would be on an idle schedule; smaller costs a
 * pacer reservation (one GetItem, one UpdateItem) per dispatcher per horizon. 500 ms: measured
 * (docs/benchmark.md "The priority target") against 250 / 1000 ms.
 */
export const DEFAULT_NORMAL_RESERVATION_HORIZON_MS = 500;

/** What the dispatcher's configuration holds about the high-priority queue. */
export interface HighPriorityQueueConfig {
  readonly queueArn: string;
  /** Other batches' horizon past the lead, ms. */
  readonly normalHorizonMs: number;
}

/** Reads HIGH_PRIORITY_QUEUE_ARN and NORMAL_RESERVATION_HORIZON_MS; undefined without a high-priority queue. */
export function highPriorityQueueFromEnv(env: Record<string, string | undefined>): HighPriorityQueueConfig | undefined {
  const queueArn = env[ConsumerEnv.HIGH_PRIORITY_QUEUE_ARN]?.trim();
  if (!queueArn) {
    return undefined;
  }
  const rawHorizon = env[ConsumerEnv.NORMAL_RESERVATION_HORIZON_MS]?.trim();
  const normalHorizonMs = rawHorizon ? Number(rawHorizon) : DEFAULT_NORMAL_RESERVATION_HORIZON_MS;
  if (!(Number.isFinite(normalHorizonMs) && normalHorizonMs > 0)) {
    throw new Error(`${ConsumerEnv.NORMAL_RESERVATION_HORIZON_MS} must be a number of milliseconds > 0 (given ${JSON.stringify(rawHorizon)})`);
  }
  return { queueArn, normalHorizonMs };
}

/**
 * How far past the lead this batch may reserve: the normal horizon for a batch from another queue
 * than the high-priority one; undefined (up to the deadline) for a high batch or without a
 * high-priority queue. A batch comes from one queue (one event source mapping per queue).
 */
export function reservationHorizonMs(records: readonly Pick<SQSRecord, 'eventSourceARN'>[], config: HighPriorityQueueConfig | undefined): number | undefined {
  if (config === undefined || records.length === 0 || records[0].eventSourceARN === config.queueArn) {
    return undefined;
  }
  return config.normalHorizonMs;
}

/** The `maxWaitMs` of a reservation made now: up to the deadline, and with a horizon no further than `lead + horizon`. */
export function reservationMaxWaitMs(nowMs: number, deadlineMs: number, leadMs: number, horizonMs: number | undefined): number {
  const toDeadline = Math.max(0, deadlineMs - nowMs);
  return horizonMs === undefined ? toDeadline : Math.min(toDeadline, leadMs + horizonMs);
}

/**
 * After a horizon-bound reservation found no slot: how long to sleep before reserving again (the
 * next free slot comes within the horizon then), or undefined when that slot is past the deadline
 * (the batch's rest is postponed as without a horizon).
 */
export function horizonRetryInMs(
  nowMs: number, nextFreeAtMs: number, deadlineMs: number, leadMs: number, horizonMs: number | undefined,
): number | undefined {
  if (horizonMs === undefined || nextFreeAtMs > deadlineMs) {
    return undefined;
  }
  return Math.max(1, nextFreeAtMs - leadMs - horizonMs - nowMs);
}
