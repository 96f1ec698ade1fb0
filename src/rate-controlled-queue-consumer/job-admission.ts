/**
 * Jobs in flight at the dispatcher (`VendorContract.maxJobsInFlight`): a job submission gets a
 * place before any pacing slot is reserved for it, so the vendor never sees job N + 1, and a request
 * without a place reserves no slot (the pacing of the others is untouched). It is moved to the
 * waiting queue (shared/job-waiting.ts, `moveToWaiting` below): no attempt, no receive count spent,
 * and nothing done while it waits; whoever frees a place wakes one waiter. Without a waiting queue
 * (or when the move fails) it waits in the request queue as a delayed copy, asking again every
 * `recheckMs` (dispatch.ts, postponeAll).
 *
 * Vendor calls (`callVendorTask`: result fetches, status polls) hold no place: the vendor counts
 * jobs, not calls. See `shared/job-places.ts` for the item and its single conditional writes.
 *
 * Per-key places (issue 15, shared/key-places.ts): a keyed submission whose key's limits in force
 * set `maxJobsInFlight` takes its key's place first, then the contract's. A key at its own limit
 * writes nothing of the contract's and does not stop the batch's other keys: its requests come back
 * as `keyFull` (the dispatcher sets them aside as delayed copies, back on their ticket's estimate:
 * key-place-wake.ts).
 */
import { type DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { SendTaskHeartbeatCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { DispatchLogger } from './dispatch';
import { keyPlaceTicketOf } from './key-place-wake';
import type { Clock } from './pacer';
import { JobPlacesTable, placeKey, readPlaces, SUBMISSION_WINDOW_MS, takePlace } from '../shared/job-places';
import { releasePlaceAndWakeWaiter, sendToWaiting, WaitingRequest, WaitingRoom, wakeWaitersForFreePlaces } from '../shared/job-waiting';
import type { KeyLimitsSpec } from '../shared/key-limits';
import { KeyAndContractOutcome, releaseKeyPlace, takeKeyThenContractPlace } from '../shared/key-places';
import { AnyRequestMessage, CLOSED_TASK_ERROR_NAMES, CorrelationAttributes } from '../shared/messages';
import { MetricNames } from '../shared/metrics';
import { isVendorCallMessage } from '../shared/vendor-call';

/** The dispatcher's jobs-in-flight settings (ConsumerEnv.MAX_JOBS_IN_FLIGHT and the variables after it). */
export interface JobsInFlightConfig {
  readonly maxJobsInFlight: number;
  /** A place expires this long after it was taken (the contract's maxJobDuration). */
  readonly maxJobDurationMs: number;
  /**
   * How long a request without a place waits before it asks again, in milliseconds (whole seconds:
   * SQS delays), when it cannot be moved to the waiting queue (none configured, or the send failed).
   */
  readonly recheckMs: number;
  /**
   * The waiting queue (JobWaitingEnv.WAITING_QUEUE_URL) and the request queue woken waiters go back
   * to. Absent: requests without a place wait as delayed copies (`recheckMs`).
   */
  readonly waitingQueueUrl?: string;
  readonly requestQueueUrl?: string;
  /** The correlation table: a request whose job was already submitted takes no new place. */
  readonly correlationTableName: string;
  /**
   * Added to every expiry: the longest time from admission to the submission call. Default
   * SUBMISSION_WINDOW_MS (the Express dispatch workflow's 5 minutes); lower only in local tests.
   */
  readonly submissionWindowMs?: number;
  /**
   * Whether requests of a key at its own `maxJobsInFlight` come back on their ticket's estimate
   * (key-place-wake.ts, design 3.3). `false` (ConsumerEnv.KEY_PLACE_TICKETS `off`, an escape hatch
   * and the benchmark's baseline): they recheck every `recheckMs`.
   *
   * @default true
   */
  readonly keyPlaceTickets?: boolean;
}

export interface AdmissionDeps {
  readonly dynamodb: DynamoDBClient;
  /** For SendTaskHeartbeat: a request whose waiting workflow already ended takes no place. */
  readonly sfn: SFNClient;
  /** The pacer table, which holds the places item. */
  readonly pacerTableName: string;
  /** This orchestrator's key in a shared contract state (keys its places); absent: the table is its own. */
  readonly stateOwner?: string;
  readonly config: JobsInFlightConfig;
  /** Where a request that gives its place back wakes a waiter. Absent: nobody is woken. */
  readonly waitingRoom?: WaitingRoom;
  readonly clock: Clock;
  readonly logger: Pick<DispatchLogger, 'info' | 'warn'>;
  readonly metrics: { addMetric(name: string, unit: 'Count' | 'Milliseconds', value: number): void };
}

export interface Admission<T> {
  /** May be paced and started: a place is held (or not needed). */
  readonly admitted: T[];
  /** No place: moved to the waiting queue (or, without one, a delayed copy after `recheckMs`). */
  readonly waiting: T[];
  /** The places item could not be read or written: back to the queue after a short while. */
  readonly unknown: T[];
  /**
   * Their key is at its own `maxJobsInFlight` (per-key limits): no place taken, the contract's item
   * untouched. The dispatcher sets them aside (delayed copies, key-place-wake.ts), never in the
   * contract's waiting room, whose wakes are for contract places.
   */
  readonly keyFull: T[];
}

/** A request's key and its places limit, when per-key places apply to it. */
function keyPlacesOf(item: { readonly message: AnyRequestMessage; readonly keyLimits?: KeyLimitsSpec }): { key: string; max: number } | undefined {
  const key = item.message.key;
  const max = item.keyLimits?.maxJobsInFlight;
  return typeof key === 'string' && max !== undefined ? { key, max } : undefined;
}

/**
 * Splits items into admitted, waiting and unknown, in order. Once the limit is reached, the rest
 * are only checked against the map (a request already holding a place, e.g. a retry after a 5xx
 * or a redelivered copy, goes on), not taken one by one.
 */
export async function admitJobs<T extends { readonly message: AnyRequestMessage; readonly keyLimits?: KeyLimitsSpec }>(
  items: T[], deps: AdmissionDeps,
): Promise<Admission<T>> {
  const { config } = deps;
  const table: JobPlacesTable = { dynamodb: deps.dynamodb, tableName: deps.pacerTableName, owner: deps.stateOwner };
  const admitted: T[] = [];
  const waiting: T[] = [];
  const unknown: T[] = [];
  const keyFull: T[] = [];
  let full = false;
  let heldWhenFull: Set<string> | undefined;
  for (const item of items) {
    const { message } = item;
    if (isVendorCallMessage(message)) {
      admitted.push(item);
      continue;
    }
    try {
      const now = deps.clock.now();
      const expiresAtMs = now + config.maxJobDurationMs + (config.submissionWindowMs ?? SUBMISSION_WINDOW_MS);
      if (full) {
        heldWhenFull ??= new Set((await readPlaces(table))?.places.keys() ?? []);
        if (!heldWhenFull.has(placeKey(message.requestId, table.owner))) {
          waiting.push(item);
          continue;
        }
        // Its own place: renewed by the take (or taken afresh, if it expired and was dropped).
      }
      const keyPlaces = keyPlacesOf(item);
      const outcome: KeyAndContractOutcome = keyPlaces
        ? await takeKeyThenContractPlace({
          contract: table,
          requestId: message.requestId,
          key: keyPlaces.key,
          maxJobsInFlight: config.maxJobsInFlight,
          keyMaxJobsInFlight: keyPlaces.max,
          expiresAtMs,
          maxJobDurationMs: config.maxJobDurationMs,
          nowMs: now,
          // A new request queues behind the key's line of set-aside requests (key-place-wake.ts).
          behindLine: config.keyPlaceTickets !== false && keyPlaceTicketOf(item) === undefined,
        })
        : await takePlace(table, message.requestId, config.maxJobsInFlight, expiresAtMs, now);
      if (outcome.result === 'keyFull') {
        // Only this key waits: the contract's `full` stays as it was, the batch's other keys go on.
        keyFull.push(item);
        continue;
      }
      if (outcome.result === 'full') {
        // Published while requests wait too, so that the at-limit alarm sees every minute of it.
        if (outcome.placesHeld !== undefined) {
          deps.metrics.addMetric(MetricNames.JOBS_IN_FLIGHT, 'Count', outcome.placesHeld);
        }
        full = true;
        waiting.push(item);
        continue;
      }
      if (outcome.result === 'taken') {
        deps.metrics.addMetric(MetricNames.JOBS_IN_FLIGHT, 'Count', outcome.placesHeld ?? 0);
        // A redelivered request whose job was already submitted (and perhaps ended: its place freed)
        // must not hold a place again: its execution stops at AlreadySubmitted without calling the
        // vendor. Read after the take: a callback that freed the place before the take had its job
        // id stored before it, so a strongly consistent read sees it.
        // Likewise a request whose waiting workflow already ended (timed out while it waited for a
        // place): its execution stops at WaitingWorkflowEnded, the vendor is not called.
        const noCall = await jobAlreadySubmitted(deps, message.requestId) ? 'already submitted'
          : await waitingWorkflowEnded(deps, message.taskToken) ? 'its waiting workflow has ended' : undefined;
        if (noCall) {
          // A place given back wakes a waiter, as any other freed place does.
          const held = await releasePlaceAndWakeWaiter(table, deps.waitingRoom, message.requestId, deps.logger);
          if (held !== undefined) {
            deps.metrics.addMetric(MetricNames.JOBS_IN_FLIGHT, 'Count', held);
          }
          if (keyPlaces) {
            await releaseKeyPlace(table, keyPlaces.key, message.requestId);
          }
          deps.logger.info(`request will not call the vendor (${noCall}): its place is given back`, { requestId: message.requestId });
        }
      }
      admitted.push(item);
    } catch (error) {
      deps.logger.warn('jobs in flight: the places could not be read or taken; the request returns to the queue', {
        requestId: message.requestId, error,
      });
      unknown.push(item);
    }
  }
  if (waiting.length > 0) {
    deps.logger.info('jobs in flight at the limit: requests wait for a place', {
      waiting: waiting.length, maxJobsInFlight: config.maxJobsInFlight,
    });
  }
  if (keyFull.length > 0) {
    deps.logger.info('keys at their own jobs-in-flight limit: their requests are set aside', {
      keyFull: keyFull.length, keys: [...new Set(keyFull.map((item) => item.message.key))].slice(0, 20), recheckMs: config.recheckMs,
    });
  }
  return { admitted, waiting, unknown, keyFull };
}

/** How many requests are moved to the waiting queue at once. */
const MOVE_CONCURRENCY = 10;

/**
 * Moves requests without a place to the waiting queue. Resolves to those that could not be sent
 * (they stay with the caller, which postpones them as delayed copies); every other one is in the
 * waiting queue and its original may be deleted. A crash after a send and before the delete leaves
 * two copies: ClaimRequest lets only one of them call the vendor (shared/job-waiting.ts).
 *
 * Then, when any was moved, it wakes waiters for places freed since the admission found the limit
 * full: such a release found the waiting queue without them and woke nobody.
 */
export async function moveToWaiting<T extends { readonly message: AnyRequestMessage }>(
  items: T[], room: WaitingRoom, requestOf: (item: T) => WaitingRequest,
  deps: Pick<AdmissionDeps, 'dynamodb' | 'pacerTableName' | 'config' | 'logger'>,
): Promise<T[]> {
  const logger = deps.logger;
  const notMoved: T[] = [];
  for (let i = 0; i < items.length; i += MOVE_CONCURRENCY) {
    await Promise.all(items.slice(i, i + MOVE_CONCURRENCY).map(async (item) => {
      try {
        await sendToWaiting(room, requestOf(item));
      } catch (error) {
        logger.warn('could not move a request without a place to the waiting queue; it rechecks as a delayed copy', {
          requestId: item.message.requestId, error,
        });
        notMoved.push(item);
      }
    }));
  }
  if (items.length > notMoved.length) {
    logger.info('requests without a place moved to the waiting queue', { moved: items.length - notMoved.length });
    await wakeWaitersForFreePlaces({ dynamodb: deps.dynamodb, tableName: deps.pacerTableName }, room, deps.config.maxJobsInFlight, logger);
  }
  return notMoved;
}

/**
 * After requests of full keys were set aside: wakes contract waiters for the contract's free places.
 * A woken waiter whose key turns out full leaves the contract's place it was woken for unused (it is
 * set aside, not waiting), and nobody else would be woken for that place until the sweep; so
 * whenever keys were found full, the contract's free places are counted (one consistent read) and
 * as many waiters woken. Never throws (wakeWaitersForFreePlaces).
 */
export async function wakeWaitersForPlacesLeftByFullKeys(
  keyFull: number, room: WaitingRoom | undefined, deps: Pick<AdmissionDeps, 'dynamodb' | 'pacerTableName' | 'config' | 'logger'>,
): Promise<number> {
  if (keyFull === 0 || room === undefined) {
    return 0;
  }
  return wakeWaitersForFreePlaces({ dynamodb: deps.dynamodb, tableName: deps.pacerTableName }, room, deps.config.maxJobsInFlight, deps.logger);
}

async function jobAlreadySubmitted(deps: AdmissionDeps, requestId: string): Promise<boolean> {
  const out = await deps.dynamodb.send(new GetItemCommand({
    TableName: deps.config.correlationTableName,
    Key: { [CorrelationAttributes.REQUEST_ID]: { S: requestId } },
    ProjectionExpression: '#job',
    ExpressionAttributeNames: { '#job': CorrelationAttributes.JOB_ID },
    ConsistentRead: true,
  }));
  return out.Item?.[CorrelationAttributes.JOB_ID] !== undefined;
}

/**
 * SendTaskHeartbeat errors that mean the waiting task is closed (what CheckWaitingWorkflow catches,
 * TASK_CLOSED_ERRORS, without the integration prefix). Any other error: assume it still waits.
 */
const TASK_CLOSED = CLOSED_TASK_ERROR_NAMES;

async function waitingWorkflowEnded(deps: AdmissionDeps, taskToken: string): Promise<boolean> {
  try {
    await deps.sfn.send(new SendTaskHeartbeatCommand({ taskToken }));
    return false;
  } catch (error) {
    return TASK_CLOSED.has((error as Error).name);
  }
}
