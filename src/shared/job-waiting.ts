/**
 * The waiting room of the jobs-in-flight limit (VendorContract.maxJobsInFlight): requests that found
 * every place taken wait in their own SQS queue (no event source mapping: waiting costs nothing per
 * second), and whoever frees a place wakes one of them. Bundled into the dispatcher, the callback
 * processor and the vendor caller; the construct library never imports this module.
 *
 * ## The hand-over
 *
 * - The dispatcher moves a request without a place to the waiting queue: send the original body
 *   and attributes there, then the original is deleted from the request queue (it is done there).
 *   A crash between the two leaves two copies, which the dispatch workflow's ClaimRequest already
 *   deduplicates (same body, same claim sequence). No receive count is spent on the request queue:
 *   each move is a new message.
 * - Every freer (callback processor, vendor caller on a refused or unsent submission, the
 *   dispatcher when a request gives its place back) calls {@link releasePlaceAndWakeWaiter}: when a
 *   place was really freed (a duplicate release frees nothing and wakes nobody), ONE waiter is moved
 *   back to the request queue (receive, send, delete), where the next dispatcher takes the place. A
 *   woken request that finds no place (a new arrival took it first) just waits again.
 * - The sweep (the dispatcher, on its `JobPlacesSweep` schedule, once a minute) drops expired places
 *   and moves `maxJobsInFlight - placesHeld` waiters back: a place freed by expiry, a waker that
 *   crashed after the release, or a wake that found nobody (short polling, below) strands a waiter
 *   at most one sweep period.
 *
 * ## Order
 *
 * Roughly first come, first served, not guaranteed: a standard queue delivers in best-effort order
 * and a request that just arrived may take a freed place before the woken waiter is back. Nothing is
 * starved for long: every freed place takes a waiter out, and waiters older in the queue are usually
 * received first.
 *
 * ## Short polling
 *
 * A wake receives with short polling (no wait): a callback must not wait a second when nobody waits.
 * Short polling samples a subset of SQS's servers, so with very few messages an answer may be empty
 * although one waits; AWS says to repeat the request, which a wake does once
 * (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html).
 * A waiter still missed is moved by the next sweep, which long-polls (an empty answer means empty).
 */
import {
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { JobWaitingEnv } from './env';
import { JobPlacesTable, readPlaces, releasePlace } from './job-places';

/** The waiting queue and the request queue a woken waiter goes back to. */
export interface WaitingRoom extends WaitingQueues {
  readonly sqs: SQSClient;
}

/** The logger calls of the waiting room (Powertools' Logger fits). */
export interface WaitingLogger {
  info(message: string, ...extra: unknown[]): void;
  warn(message: string, ...extra: unknown[]): void;
}

/** A request as it is moved between the queues: body and attributes byte for byte. */
export interface WaitingRequest {
  readonly body: string;
  readonly attributes?: Record<string, MessageAttributeValue>;
  /** The tenant of an SQS fair queue, kept with the request. */
  readonly groupId?: string;
}

/** SQS returns at most ten messages per receive. */
const MAX_PER_RECEIVE = 10;
/**
 * How long a received waiter stays hidden while it is moved: if the mover dies, it is visible to
 * the next wake or sweep again after this long.
 */
export const WAKE_VISIBILITY_TIMEOUT_SECONDS = 30;

/** The queues of the waiting room, as a handler's configuration holds them. */
export interface WaitingQueues {
  readonly waitingQueueUrl: string;
  readonly requestQueueUrl: string;
}

/** The waiting queues a handler was configured with (JobWaitingEnv), or undefined: no waiting queue. */
export function waitingQueuesFromEnv(env: Record<string, string | undefined>): WaitingQueues | undefined {
  const waitingQueueUrl = env[JobWaitingEnv.WAITING_QUEUE_URL]?.trim();
  if (!waitingQueueUrl) {
    return undefined;
  }
  const requestQueueUrl = env[JobWaitingEnv.REQUEST_QUEUE_URL]?.trim();
  if (!requestQueueUrl) {
    throw new Error(`Environment variable ${JobWaitingEnv.REQUEST_QUEUE_URL} is required when ${JobWaitingEnv.WAITING_QUEUE_URL} is set`);
  }
  return { waitingQueueUrl, requestQueueUrl };
}

/** The waiting room of configured queues, undefined without them. */
export function waitingRoomOf(queues: Partial<WaitingQueues> | undefined, sqs: SQSClient): WaitingRoom | undefined {
  return queues?.waitingQueueUrl && queues.requestQueueUrl
    ? { sqs, waitingQueueUrl: queues.waitingQueueUrl, requestQueueUrl: queues.requestQueueUrl }
    : undefined;
}

/** Puts a request without a place in the waiting queue. Throws on SQS errors (the caller keeps the original). */
export async function sendToWaiting(room: WaitingRoom, request: WaitingRequest): Promise<string | undefined> {
  const sent = await room.sqs.send(new SendMessageCommand({
    QueueUrl: room.waitingQueueUrl,
    MessageBody: request.body,
    ...(request.attributes ? { MessageAttributes: request.attributes } : {}),
    ...(request.groupId ? { MessageGroupId: request.groupId } : {}),
  }));
  return sent.MessageId;
}

/**
 * Frees `requestId`'s place and, when that freed one, wakes one waiter. Resolves to the gauge after
 * the release (undefined: nothing was held, nobody is woken). Throws only when the release fails;
 * a failed wake is logged (the sweep moves the waiter).
 */
export async function releasePlaceAndWakeWaiter(
  table: JobPlacesTable, room: WaitingRoom | undefined, requestId: string, logger: WaitingLogger,
): Promise<number | undefined> {
  const held = await releasePlace(table, requestId);
  if (held !== undefined && room !== undefined) {
    await wakeWaiters(room, 1, logger);
  }
  return held;
}

/**
 * Moves up to `count` waiters back to the request queue. `longPoll`: wait up to a second so that an
 * empty answer means an empty queue (the sweep); otherwise short polls, repeated once when empty (a
 * wake). Never throws: resolves to the number moved; errors are logged and the waiters stay (visible
 * again after WAKE_VISIBILITY_TIMEOUT_SECONDS at most).
 */
export async function wakeWaiters(room: WaitingRoom, count: number, logger: WaitingLogger, longPoll = false): Promise<number> {
  let moved = 0;
  let emptyAnswers = 0;
  try {
    while (moved < count) {
      const out = await room.sqs.send(new ReceiveMessageCommand({
        QueueUrl: room.waitingQueueUrl,
        MaxNumberOfMessages: Math.min(MAX_PER_RECEIVE, count - moved),
        WaitTimeSeconds: longPoll ? 1 : 0,
        VisibilityTimeout: WAKE_VISIBILITY_TIMEOUT_SECONDS,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['MessageGroupId'],
      }));
      const messages = out.Messages ?? [];
      if (messages.length === 0) {
        // A long poll's empty answer means empty; a short poll's may be false: asked once more.
        if (longPoll || ++emptyAnswers > 1) {
          break;
        }
        continue;
      }
      const results = await Promise.all(messages.map((message) => moveBack(room, message, logger)));
      moved += results.filter(Boolean).length;
      if (results.some((ok) => !ok)) {
        break; // SQS is failing: the rest waits for the next wake or sweep
      }
    }
  } catch (error) {
    logger.warn('could not wake waiting requests; the sweep moves them', { error, moved });
  }
  if (moved > 0) {
    logger.info('jobs in flight: waiting requests woken for freed places', { woken: moved });
  }
  return moved;
}

/** Sends one waiter back to the request queue, then deletes it from the waiting queue. */
async function moveBack(room: WaitingRoom, message: Message, logger: WaitingLogger): Promise<boolean> {
  try {
    await room.sqs.send(new SendMessageCommand({
      QueueUrl: room.requestQueueUrl,
      MessageBody: message.Body ?? '',
      ...(message.MessageAttributes && Object.keys(message.MessageAttributes).length > 0
        ? { MessageAttributes: message.MessageAttributes as Record<string, MessageAttributeValue> } : {}),
      ...(message.Attributes?.MessageGroupId ? { MessageGroupId: message.Attributes.MessageGroupId } : {}),
    }));
  } catch (error) {
    logger.warn('could not move a waiting request back to the request queue; it stays waiting', { messageId: message.MessageId, error });
    return false;
  }
  try {
    await room.sqs.send(new DeleteMessageCommand({ QueueUrl: room.waitingQueueUrl, ReceiptHandle: message.ReceiptHandle }));
  } catch (error) {
    // Two copies now: the one left here comes back later and ClaimRequest lets only one call the vendor.
    logger.warn('could not delete a woken request from the waiting queue; its copy is deduplicated later', { messageId: message.MessageId, error });
  }
  return true;
}

/**
 * Wakes as many waiters as places are free now (`maxJobsInFlight` minus the places held, by a
 * consistent read). The dispatcher calls it right after moving requests to the waiting queue: a
 * place freed between its admission (which found the limit full) and the move woke nobody (the
 * queue was still empty), and would otherwise stay idle until the sweep. Never throws; resolves
 * to the number woken.
 */
export async function wakeWaitersForFreePlaces(
  table: JobPlacesTable, room: WaitingRoom, maxJobsInFlight: number, logger: WaitingLogger,
): Promise<number> {
  let held: number;
  try {
    held = (await readPlaces(table))?.held ?? 0;
  } catch (error) {
    logger.warn('could not read the places after moving requests to wait; the sweep wakes them if places are free', { error });
    return 0;
  }
  return held < maxJobsInFlight ? wakeWaiters(room, maxJobsInFlight - held, logger) : 0;
}

/** Requests waiting (ApproximateNumberOfMessages of the waiting queue, visible ones). */
export async function waitingCount(room: WaitingRoom): Promise<number> {
  const out = await room.sqs.send(new GetQueueAttributesCommand({
    QueueUrl: room.waitingQueueUrl, AttributeNames: ['ApproximateNumberOfMessages'],
  }));
  return Number(out.Attributes?.ApproximateNumberOfMessages ?? 0);
}
