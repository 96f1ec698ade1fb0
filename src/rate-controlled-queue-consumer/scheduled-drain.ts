/**
 * Low-rate mode: one tick of an EventBridge Scheduler schedule drains the request queue itself
 * (no event source mapping), then hands what it received to the same dispatch logic.
 *
 * ## What a tick does
 *
 * First it takes the drain lease (see "The drain lease" below): a tick that finds another one still draining
 * ends at once. Then, round after round, until the tick's budget is used, the queue is empty or
 * time runs out:
 *
 * 1. `ReceiveMessage` (at most 10, a 1-second long poll so that an empty answer means empty) for
 *    only as many messages as the tick may still take and as have a pacing slot before the tick's
 *    deadline;
 * 2. build an `SQSEvent` of them and call `dispatchBatch` (dispatch.ts): it paces every start
 *    through the shared slot schedule (pacer.ts), so the rate guarantee is the event source
 *    mode's, unchanged;
 * 3. `DeleteMessageBatch` the records that are not in `batchItemFailures` (started, parked, or
 *    postponed as a delayed copy). Failures are left alone and come back after their visibility
 *    timeout (or sooner, when dispatch hid them for a few seconds), as with the event source
 *    mapping.
 *
 * The budget of a tick is `floor(R x period)` messages (`MAX_MESSAGES_PER_TICK`, derived at synth
 * time), further bounded by the time left: the function's remaining time minus a safety margin.
 *
 * ## Why nothing is lost
 *
 * A message is deleted only after `dispatchBatch` returned and did not list it as failed, i.e.
 * after its dispatch execution was started (or it was parked in the dead-letter queue). A crash,
 * timeout or failed delete anywhere before that leaves it on the queue: it reappears after its
 * visibility timeout and is dispatched again; the dispatch workflow's ClaimRequest makes a second
 * start of an already started request harmless (the vendor is called once).
 *
 * The queue's visibility timeout is at least the function timeout (the construct validates it)
 * and a message is only received when its slot fits before the tick's deadline, which is before
 * the function timeout: a received message cannot reappear while it waits for its slot.
 */
// Bundled into the dispatcher Lambda only; the construct library never imports it, so the SDK
// stays a devDependency (bundled by esbuild).
import { type DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import {
  DeleteMessageBatchCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent, SQSMessageAttributes, SQSRecord } from 'aws-lambda';
import { Clock, DEFAULT_LATENESS_TOLERANCE_MS, isConditionalCheckFailed, PACER_PARTITION_KEY, slotIntervalMs, systemClock } from './pacer';
import { ConsumerEnv } from '../shared/env';
import { SCHEDULED_TICK_KIND, ScheduleEnv, ScheduledTickEvent } from '../shared/scheduled-tick';

/** SQS returns at most ten messages per receive, and deletes at most ten per batch. */
const MAX_PER_CALL = 10;
/** Long poll of a receive: short, but long enough that an empty answer means an empty queue. */
const RECEIVE_WAIT_SECONDS = 1;
/**
 * Time kept at the end of a tick for the last start, the deletes and the logs. A message whose
 * slot would fall after `remaining time - margin` is not received this tick.
 */
export const DEFAULT_SAFETY_MARGIN_MS = 5_000;

/** Whether a dispatcher event is a schedule tick (not an SQS batch). */
export function isScheduledTick(event: unknown): event is ScheduledTickEvent {
  return typeof event === 'object' && event !== null && (event as { kind?: unknown }).kind === SCHEDULED_TICK_KIND;
}

export interface DrainConfig {
  readonly queueUrl: string;
  readonly queueArn: string;
  /** `floor(R x period)`: the most messages one tick takes. */
  readonly maxMessagesPerTick: number;
  /** The pacer's slot interval `I` in milliseconds (pacer.ts `slotIntervalMs`). */
  readonly slotIntervalMs: number;
  /** Time kept free before the function's timeout. Default {@link DEFAULT_SAFETY_MARGIN_MS}. */
  readonly safetyMarginMs?: number;
  /**
   * The dispatch logic's own pacing window per call (`MAX_PACING_WAIT_MS`): slots later than that
   * after a dispatch call are not granted, so a round never takes more than fit in it.
   * Default: no limit besides the tick's deadline.
   */
  readonly maxPacingWaitMs?: number;
}

/** Reads the drain configuration; undefined when the dispatcher does not run in schedule mode. */
export function loadDrainConfig(env: Record<string, string | undefined>): DrainConfig | undefined {
  const queueUrl = env[ScheduleEnv.REQUEST_QUEUE_URL]?.trim();
  if (!queueUrl) {
    return undefined;
  }
  const queueArn = env[ScheduleEnv.REQUEST_QUEUE_ARN]?.trim();
  if (!queueArn) {
    throw new Error(`Environment variable ${ScheduleEnv.REQUEST_QUEUE_ARN} is required when ${ScheduleEnv.REQUEST_QUEUE_URL} is set`);
  }
  const perTick = Number(env[ScheduleEnv.MAX_MESSAGES_PER_TICK]);
  if (!Number.isInteger(perTick) || perTick < 1) {
    throw new Error(`Environment variable ${ScheduleEnv.MAX_MESSAGES_PER_TICK} must be a whole number >= 1, got ${JSON.stringify(env[ScheduleEnv.MAX_MESSAGES_PER_TICK])}`);
  }
  const rps = Number(env[ConsumerEnv.REQUESTS_PER_SECOND]);
  const rawTolerance = env[ConsumerEnv.LATENESS_TOLERANCE_MS];
  const tolerance = rawTolerance === undefined || rawTolerance.trim() === '' ? DEFAULT_LATENESS_TOLERANCE_MS : Number(rawTolerance);
  const maxPacingWaitMs = Number(env[ConsumerEnv.MAX_PACING_WAIT_MS]);
  return {
    queueUrl,
    queueArn,
    maxMessagesPerTick: perTick,
    slotIntervalMs: slotIntervalMs(rps, tolerance),
    ...(Number.isFinite(maxPacingWaitMs) && maxPacingWaitMs > 0 ? { maxPacingWaitMs } : {}),
  };
}

/** The logger calls a tick makes (Powertools' Logger fits). */
export interface DrainLogger {
  info(message: string, ...extra: unknown[]): void;
  warn(message: string, ...extra: unknown[]): void;
  error(message: string, ...extra: unknown[]): void;
}

export interface DrainDeps {
  readonly sqs: SQSClient;
  readonly config: DrainConfig;
  readonly logger: DrainLogger;
  readonly clock?: Clock;
  /** Keeps ticks one at a time (see "The drain lease"). */
  readonly lease: DrainLease;
  /** The dispatch logic: `(event) => dispatchBatch(event, deps)`. */
  dispatch(event: SQSEvent): Promise<SQSBatchResponse>;
  /** Time left before the function times out (`context.getRemainingTimeInMillis()`). */
  remainingTimeMs(): number;
}

/** Why a tick stopped draining; `leaseHeld`: another tick was still draining, this one did nothing. */
export type DrainStop = 'budget' | 'empty' | 'time' | 'leaseHeld';

/** What one tick did (also logged). */
export interface DrainResult {
  /** Messages received (and handed to dispatch). */
  readonly received: number;
  /** Messages deleted: dispatched, parked, or postponed (re-sent as a delayed copy) by dispatch. */
  readonly deleted: number;
  /** Messages dispatch reported as failed: left on the queue. */
  readonly failed: number;
  /** Messages whose delete failed: they come back and are dispatched again (ClaimRequest dedupes). */
  readonly deleteFailed: number;
  readonly rounds: number;
  readonly stoppedBecause: DrainStop;
}

/**
 * How many slots `I` apart fit before `deadline` when the first may be `headroomMs` after now.
 * The first round of a tick uses no headroom (the schedule is idle between ticks, and dispatch's
 * own window bounds it anyway); later rounds use `I`: the previous round's last slot is past when
 * dispatch returns, so the next free slot is at most `I` ahead.
 */
export function slotsBefore(nowMs: number, deadlineMs: number, intervalMs: number, headroomMs: number = intervalMs): number {
  const lastStart = deadlineMs - nowMs - headroomMs;
  return lastStart < 0 ? 0 : Math.floor(lastStart / intervalMs) + 1;
}

/**
 * Drains the request queue for one tick; see the module comment. Throws only if dispatch throws or
 * the lease cannot be read (DynamoDB errors: the next tick tries again).
 */
export async function drainQueue(tick: ScheduledTickEvent, deps: DrainDeps): Promise<DrainResult> {
  const { logger } = deps;
  const clock = deps.clock ?? systemClock;
  // Held until this invocation's own timeout at the latest: a crashed tick cannot block the next.
  if (!await deps.lease.acquire(clock.now() + deps.remainingTimeMs())) {
    const skipped: DrainResult = { received: 0, deleted: 0, failed: 0, deleteFailed: 0, rounds: 0, stoppedBecause: 'leaseHeld' };
    logger.info('another tick is still draining; this tick does nothing', { ...skipped, scheduledTime: tick.scheduledTime, executionId: tick.executionId });
    return skipped;
  }
  try {
    return await drainRounds(tick, deps, clock);
  } finally {
    try {
      await deps.lease.release();
    } catch (error) {
      // It expires at this invocation's timeout anyway.
      logger.warn('could not release the drain lease; it expires at the function timeout', { error });
    }
  }
}

async function drainRounds(tick: ScheduledTickEvent, deps: DrainDeps, clock: Clock): Promise<DrainResult> {
  const { config, logger } = deps;
  const deadline = clock.now() + deps.remainingTimeMs() - (config.safetyMarginMs ?? DEFAULT_SAFETY_MARGIN_MS);
  let received = 0;
  let deleted = 0;
  let failed = 0;
  let deleteFailed = 0;
  let rounds = 0;
  let stoppedBecause: DrainStop = 'budget';

  while (true) {
    const budgetLeft = config.maxMessagesPerTick - received;
    if (budgetLeft <= 0) {
      stoppedBecause = 'budget';
      break;
    }
    const now = clock.now();
    const roundDeadline = Math.min(deadline, now + (config.maxPacingWaitMs ?? Infinity));
    const fit = slotsBefore(now, roundDeadline, config.slotIntervalMs, rounds === 0 ? 0 : config.slotIntervalMs);
    const want = Math.min(MAX_PER_CALL, budgetLeft, fit);
    if (want <= 0) {
      stoppedBecause = 'time';
      break;
    }
    const timeLeftSeconds = Math.floor((deadline - clock.now()) / 1000);
    const output = await deps.sqs.send(new ReceiveMessageCommand({
      QueueUrl: config.queueUrl,
      MaxNumberOfMessages: want,
      WaitTimeSeconds: Math.max(0, Math.min(RECEIVE_WAIT_SECONDS, timeLeftSeconds)),
      MessageSystemAttributeNames: ['All'],
      MessageAttributeNames: ['All'],
    }));
    // An emulator or a future API might return more than asked: never dispatch past the budget.
    const messages = (output.Messages ?? []).slice(0, want);
    if (messages.length === 0) {
      stoppedBecause = 'empty';
      break;
    }
    rounds++;
    received += messages.length;
    const receivedAt = clock.now();
    const event: SQSEvent = { Records: messages.map((m) => toSqsRecord(m, config.queueArn, receivedAt)) };

    // Not caught: if dispatch throws, nothing of this round is deleted (the messages come back).
    const response = await deps.dispatch(event);
    const failedIds = new Set((response?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
    failed += event.Records.filter((r) => failedIds.has(r.messageId)).length;
    const done = event.Records.filter((r) => !failedIds.has(r.messageId));
    const outcome = await deleteRecords(done, deps);
    deleted += outcome.deleted;
    deleteFailed += outcome.failed;
  }

  const result: DrainResult = { received, deleted, failed, deleteFailed, rounds, stoppedBecause };
  logger.info('scheduled drain tick done', { ...result, scheduledTime: tick.scheduledTime, executionId: tick.executionId });
  return result;
}

async function deleteRecords(records: SQSRecord[], deps: DrainDeps): Promise<{ deleted: number; failed: number }> {
  let deleted = 0;
  let failed = 0;
  for (let i = 0; i < records.length; i += MAX_PER_CALL) {
    const chunk = records.slice(i, i + MAX_PER_CALL);
    try {
      const output = await deps.sqs.send(new DeleteMessageBatchCommand({
        QueueUrl: deps.config.queueUrl,
        Entries: chunk.map((r, index) => ({ Id: String(index), ReceiptHandle: r.receiptHandle })),
      }));
      const failures = output.Failed ?? [];
      failed += failures.length;
      deleted += chunk.length - failures.length;
      if (failures.length > 0) {
        deps.logger.warn('some dispatched messages could not be deleted; they come back and are deduplicated by ClaimRequest', {
          messageIds: failures.map((f) => chunk[Number(f.Id)]?.messageId), failures,
        });
      }
    } catch (error) {
      failed += chunk.length;
      deps.logger.warn('could not delete dispatched messages; they come back and are deduplicated by ClaimRequest', {
        messageIds: chunk.map((r) => r.messageId), error,
      });
    }
  }
  return { deleted, failed };
}

/** An SQS message as the event source mapping would hand it to the function (`SQSRecord`). */
export function toSqsRecord(message: Message, queueArn: string, receivedAt: number): SQSRecord {
  const attributes: Record<string, string> = { ...message.Attributes };
  const region = queueArn.split(':')[3] ?? '';
  return {
    messageId: message.MessageId ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    body: message.Body ?? '',
    attributes: {
      ...attributes,
      ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? '1',
      SentTimestamp: attributes.SentTimestamp ?? String(receivedAt),
      SenderId: attributes.SenderId ?? '',
      ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp ?? String(receivedAt),
    },
    messageAttributes: messageAttributes(message.MessageAttributes),
    md5OfBody: message.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: region,
  };
}

/** Lambda's event carries message attributes in camelCase, binary values base64-encoded. */
function messageAttributes(attributes: Record<string, MessageAttributeValue> | undefined): SQSMessageAttributes {
  const out: SQSMessageAttributes = {};
  for (const [name, value] of Object.entries(attributes ?? {})) {
    out[name] = {
      ...(value.StringValue !== undefined ? { stringValue: value.StringValue } : {}),
      ...(value.BinaryValue !== undefined ? { binaryValue: Buffer.from(value.BinaryValue).toString('base64') } : {}),
      stringListValues: value.StringListValues ?? [],
      binaryListValues: (value.BinaryListValues ?? []).map((b) => Buffer.from(b).toString('base64')),
      dataType: value.DataType ?? 'String',
    };
  }
  return out;
}

// ---- The drain lease ----

/**
 * The drain lease keeps schedule ticks one at a time without reserved concurrency.
 *
 * Ticks are meant not to overlap: the dispatcher's timeout is the period minus 5 seconds. They can
 * still overlap, because EventBridge Scheduler delivers at least once and retries a failed Invoke
 * call, and Lambda runs asynchronous invocations concurrently. Reserved concurrency 1 used to
 * prevent that, but an account can only reserve what leaves its unreserved concurrency at the
 * minimum ("You can reserve up to the Unreserved account concurrency value minus 100",
 * https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html): new accounts, whose
 * concurrency quota is low (10), refuse the deploy.
 *
 * Instead a tick takes a lease in the pacer table first: one item (`pk = 'drain-lease'`) holding
 * `heldUntilMs`, taken with a conditional write that succeeds only when no lease is in force
 * (`attribute_not_exists(heldUntilMs) OR heldUntilMs < now`). A tick that does not get it ends at
 * once (`stoppedBecause: 'leaseHeld'`): the tick in force drains the same queue. The lease lasts
 * until the invocation's own timeout (now + remaining time), so a tick that crashes or times out
 * holds it no longer than it could have run; a tick that ends releases it (only if it still holds
 * it: `holder = :me`). No lock outlives an invocation.
 *
 * The lease is not what keeps the contract: every start still takes a slot from the shared pacer
 * (pacer.ts), so two ticks draining at once (clocks a few milliseconds apart at the lease's end)
 * could only both wait for slots. It keeps one tick's budget and the visibility-timeout reasoning
 * of this module true, and spares the overlapping invocation's time.
 */
/** Partition key value of the drain lease item (in the pacer table, beside the `pacer` item). */
export const DRAIN_LEASE_KEY = 'drain-lease';

/**
 * The drain lease's key for the orchestrator keyed `owner` in a shared contract state
 * (ConsumerEnv.SHARED_STATE_OWNER, its request queue's ARN): the lease guards ONE queue, so two
 * orchestrators sharing a pacer table must not take turns at one lease (each would skip ticks
 * while the other drains). Without an owner (the table is this orchestrator's own), the key
 * stays `drain-lease`.
 */
export function drainLeaseKey(owner?: string): string {
  return owner ? `${DRAIN_LEASE_KEY}#${owner}` : DRAIN_LEASE_KEY;
}
/** Until when the lease is held, epoch milliseconds (N). */
export const LEASE_HELD_UNTIL_ATTRIBUTE = 'heldUntilMs';
/** Who holds it: a random id per invocation (S). */
export const LEASE_HOLDER_ATTRIBUTE = 'holder';

/** The lease a tick takes before it drains. */
export interface DrainLease {
  /** Takes the lease until `untilMs` unless another tick holds it. Resolves to whether it was taken. */
  acquire(untilMs: number): Promise<boolean>;
  /** Gives the lease back if this holder still holds it. */
  release(): Promise<void>;
}

/** The drain lease in the pacer table, for one invocation (`holder` must be unique to it). */
export function dynamoDbDrainLease(
  dynamodb: DynamoDBClient, tableName: string, holder: string, clock: Clock = systemClock, leaseKey: string = DRAIN_LEASE_KEY,
): DrainLease {
  const key = { [PACER_PARTITION_KEY]: { S: leaseKey } };
  const names = { '#until': LEASE_HELD_UNTIL_ATTRIBUTE, '#holder': LEASE_HOLDER_ATTRIBUTE };
  return {
    async acquire(untilMs: number): Promise<boolean> {
      try {
        await dynamodb.send(new UpdateItemCommand({
          TableName: tableName,
          Key: key,
          UpdateExpression: 'SET #until = :until, #holder = :holder',
          ConditionExpression: 'attribute_not_exists(#until) OR #until < :now',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: {
            ':until': { N: String(Math.ceil(untilMs)) },
            ':holder': { S: holder },
            ':now': { N: String(clock.now()) },
          },
        }));
        return true;
      } catch (error) {
        if (isConditionalCheckFailed(error)) {
          return false;
        }
        throw error;
      }
    },
    async release(): Promise<void> {
      try {
        await dynamodb.send(new UpdateItemCommand({
          TableName: tableName,
          Key: key,
          UpdateExpression: 'SET #until = :zero',
          ConditionExpression: '#holder = :holder',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: { ':zero': { N: '0' }, ':holder': { S: holder } },
        }));
      } catch (error) {
        // Another tick took it after ours expired: nothing to give back.
        if (!isConditionalCheckFailed(error)) {
          throw error;
        }
      }
    },
  };
}
