/**
 * The REAL dispatcher (`dispatchBatch`, src/rate-controlled-queue-consumer/dispatch.ts) driven in
 * virtual time, for the benchmark's many-keys and priority rows (issue 15, "Measured"; design
 * docs/design/per-key-limits.md, section 6 steps 2, 3 and 5). Whatever the dispatcher does with
 * keys and priorities (per-key pacing, set-asides, ordering) is measured as it is, not
 * re-implemented: the model only plays the services around it.
 *
 * - The request queue: plain FIFO (visible messages in the order they became visible; a delayed
 *   copy becomes visible after its `DelaySeconds`; no fair queues, design section 3.2). SQS
 *   standard queues order on a best-effort basis only
 *   (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/standard-queues.html):
 *   strict FIFO is the model's simplification. Received messages are in flight for the visibility
 *   timeout (or what `ChangeMessageVisibility` sets); `SendMessage` / `SendMessageBatch` with
 *   `DelaySeconds` add copies.
 * - The event source mapping: `lanes` consumers (its maximum concurrency), each receiving up to
 *   `batchSize` visible messages (gathering up to the batching window), then invoking the real
 *   `dispatchBatch` after the `queueToConsumer` hop; it deletes what the invocation did not report
 *   as a batch item failure (one `DeleteMessageBatch` per 10).
 * - DynamoDB: bench-sim.ts `InMemoryPacerTable` (the contract's `pacer` item as runPacedModel
 *   models it; every other item, `BatchGetItem`, `PutItem`, ... evaluated by dynalite's code,
 *   bench-dynamo-items.ts), each call a `dynamodbCall` round trip.
 * - Step Functions: `StartExecution` is recorded; the execution reaches the vendor caller after the
 *   `expressStart` and `lambdaInvoke` hops (plus a cold start for `coldStartFraction`), which, as
 *   in runPacedModel, checks the contract's pause `PAUSE_CHECK_LEAD_MS` before the slot and fires
 *   at the input's `slotAtMs` plus the timer's lateness, the request reaching the vendor after
 *   `callerToProxy` and `proxyToVendor`. A caller too late for its slot reserves a fresh one with
 *   the real `reserveSlots` (contract only: the per-key fresh reservation of design 1.3 is not
 *   modeled here).
 * - The vendor counts arrivals per key and in all (it refuses nothing: the rows count windows over
 *   each limit, V, from its log).
 *
 * Deterministic for a seed (the model's draws and the dispatcher's `random`); the only other
 * randomness, callback tokens and execution name suffixes, changes no timing.
 */
import { GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { SendTaskFailureCommand, SendTaskHeartbeatCommand, StartExecutionCommand } from '@aws-sdk/client-sfn';
import {
  ChangeMessageVisibilityBatchCommand, ChangeMessageVisibilityCommand, SendMessageBatchCommand, SendMessageCommand,
} from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import type { DynamoItems } from './bench-dynamo-items';
import { addedLatency, maxInAnyWindow, percentile, utilization, violations, windowLimit } from './bench-metrics';
import { Hop, LATENCY_MODEL, LatencyModel, pacingKnobs, PacingKnobs, round, sample, seededRandom } from './bench-model';
import { InMemoryPacerTable, VirtualClock } from './bench-sim';
import { TimeHeap } from './time-heap';
import { FRESH_SLOT_LEAD_MS, PAUSE_CHECK_LEAD_MS } from '../src/dispatch-workflow/vendor-call';
import { DEAD_LETTER_QUEUE_URL_ENV, dispatchBatch, DispatchDeps, loadConfig, MAX_DELAY_SECONDS, queueUrlFromArn } from '../src/rate-controlled-queue-consumer/dispatch';
import { reserveSlots, slotIntervalMs } from '../src/rate-controlled-queue-consumer/pacer';
import { deriveRateSettings } from '../src/rate-controlled-queue-consumer/rate-settings';
import { ConsumerEnv } from '../src/shared/env';
import { releasePlace } from '../src/shared/job-places';
import { keyPlacesItemKey } from '../src/shared/key-limits';
import type { KeyLimitsSource, KeyLimitsSpec, RequestPriority } from '../src/shared/key-limits';
import { releaseKeyPlace } from '../src/shared/key-places';

/** One SQS API call (SendMessage, SendMessageBatch, ChangeMessageVisibility), round trip. */
export const SQS_CALL_HOP: Hop = {
  distribution: { kind: 'triangular', minMs: 5, modeMs: 10, maxMs: 40 },
  source: 'assumed (an API call in the Region; AWS publishes no SQS latency figure)',
};

/** The request queue's ARN as the records carry it (the dispatcher derives the queue URL from it). */
export const MODEL_QUEUE_ARN = 'arn:aws:sqs:us-east-1:123456789012:bench-requests';
/** The request queue's URL, as the dispatcher derives it from the records' ARN (dispatch.ts queueUrlFromArn). */
export const MODEL_QUEUE_URL = queueUrlFromArn(MODEL_QUEUE_ARN);
export const MODEL_DEAD_LETTER_QUEUE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/bench-requests-dlq';
/** The partition key prefix of a key's places item (`key-places#<key>`). */
const KEY_PLACES_PREFIX = keyPlacesItemKey('');
/** The high-priority request queue (issue 15, high-priority-queue.ts), when a run models one. */
export const MODEL_HIGH_QUEUE_ARN = 'arn:aws:sqs:us-east-1:123456789012:bench-requests-high';
export const MODEL_HIGH_QUEUE_URL = queueUrlFromArn(MODEL_HIGH_QUEUE_ARN);

// ---------------------------------------------------------------------------------------------
// The queue
// ---------------------------------------------------------------------------------------------

/** A message of the modeled queue. */
export interface ModeledMessage {
  readonly messageId: string;
  readonly body: string;
  readonly groupId?: string;
  readonly sentAt: number;
  receiveCount: number;
  /** The receipt handle of the latest receive (earlier ones are stale). */
  receipt?: string;
  deleted: boolean;
  /** Bumped by each receive and visibility change: older heap entries are stale. */
  version: number;
}

interface HeapEntry { readonly at: number; readonly seq: number; readonly message: ModeledMessage; readonly version: number }

/**
 * A queue with delays and visibility, strictly FIFO in the order messages became visible (ties:
 * the order they were sent or handed back). Counts the API requests made on it.
 */
export class ModeledQueue {
  private readonly heap = new TimeHeap<HeapEntry>();
  private readonly byReceipt = new Map<string, ModeledMessage>();
  private waiters: Array<() => void> = [];
  private seq = 0;
  private ids = 0;
  /** Requests per API action (receives only when they returned messages). */
  public readonly requests = { SendMessage: 0, SendMessageBatch: 0, ReceiveMessage: 0, DeleteMessageBatch: 0, ChangeMessageVisibility: 0 };
  /** The most receives any message had. */
  public maxReceiveCount = 0;
  /** The most messages in flight (received, neither deleted nor visible again), counted at each receive. */
  public maxInFlight = 0;
  private readonly inFlight = new Set<ModeledMessage>();

  constructor(private readonly clock: VirtualClock) {}

  /** Adds a message, visible after `delaySeconds`. Does not count a request (the caller does). */
  public add(body: string, delaySeconds = 0, groupId?: string): ModeledMessage {
    const message: ModeledMessage = {
      messageId: `m-${++this.ids}`, body, ...(groupId ? { groupId } : {}), sentAt: this.clock.now(), receiveCount: 0, deleted: false, version: 0,
    };
    this.push(message, this.clock.now() + delaySeconds * 1000);
    return message;
  }

  /** Up to `n` messages visible now, in FIFO order; each in flight for `visibilityTimeoutMs`. */
  public receive(n: number, visibilityTimeoutMs: number): ModeledMessage[] {
    const now = this.clock.now();
    const taken: ModeledMessage[] = [];
    while (taken.length < n && this.heap.length > 0 && this.heap.peek()!.at <= now) {
      const entry = this.pop()!;
      if (entry.message.deleted || entry.version !== entry.message.version) continue;
      const message = entry.message;
      // Visible again (its timeout ended or its visibility was changed): no longer in flight.
      this.inFlight.delete(message);
      message.receiveCount++;
      this.maxReceiveCount = Math.max(this.maxReceiveCount, message.receiveCount);
      if (message.receipt) this.byReceipt.delete(message.receipt);
      message.receipt = `${message.messageId}#${message.receiveCount}`;
      this.byReceipt.set(message.receipt, message);
      // In flight: back when the visibility timeout ends, unless deleted or changed before.
      this.push(message, now + visibilityTimeoutMs);
      taken.push(message);
      this.inFlight.add(message);
    }
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight.size);
    // A ReceiveMessage returns at most 10 messages: the mapping's pollers make one per 10.
    this.requests.ReceiveMessage += Math.ceil(taken.length / 10);
    return taken;
  }

  /** ChangeMessageVisibility: the in-flight message becomes visible `seconds` from now. */
  public changeVisibility(receipt: string, seconds: number): void {
    const message = this.byReceipt.get(receipt);
    if (!message || message.deleted) throw Object.assign(new Error(`receipt handle ${receipt} is not valid`), { name: 'ReceiptHandleIsInvalid' });
    this.push(message, this.clock.now() + seconds * 1000);
  }

  public delete(receipt: string): void {
    const message = this.byReceipt.get(receipt);
    if (message) {
      message.deleted = true;
      this.byReceipt.delete(receipt);
      this.inFlight.delete(message);
    }
  }

  /** When the next message becomes visible (now or later); undefined: nothing left. */
  public nextVisibleAt(): number | undefined {
    while (this.heap.length > 0 && (this.heap.peek()!.message.deleted || this.heap.peek()!.version !== this.heap.peek()!.message.version)) this.pop();
    return this.heap.peek()?.at;
  }

  /** Long polling: resolves when a message is added, or after `ms`. */
  public waitForMessage(ms: number): Promise<void> {
    return Promise.race([new Promise<void>((resolve) => this.waiters.push(resolve)), this.clock.sleep(ms)]);
  }

  private push(message: ModeledMessage, at: number): void {
    message.version++;
    this.heap.push({ at, seq: this.seq++, message, version: message.version });
    if (at <= this.clock.now()) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    }
  }

  private pop(): HeapEntry | undefined {
    return this.heap.pop();
  }
}

/**
 * The dispatcher's SQS client on the modeled queue: SendMessage / SendMessageBatch (with
 * `DelaySeconds`) onto the request queue or the dead-letter queue, ChangeMessageVisibility (single
 * and batch) on received messages, each a round trip. Checks what SQS checks of them (at most 10
 * entries, distinct ids, a delay of 0-900 s, a known queue), so a wrong call fails here as on AWS
 * (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html).
 */
export class ModeledSqs {
  /** Messages sent to the dead-letter queue. */
  public parked = 0;
  /** The most copies the dispatcher sent back to a request queue for one request (set-asides, postponements). */
  public mostCopiesOfOneRequest = 0;
  private readonly copiesByRequest = new Map<string, number>();

  /**
   * `highQueue`: the high-priority request queue, when the run has one (the dispatcher's sends and
   * visibility changes on it are counted on the request queue's counters; the run sums both queues').
   */
  constructor(
    private readonly queue: ModeledQueue, private readonly clock: VirtualClock, private readonly roundTripMs: () => number,
    private readonly highQueue?: ModeledQueue,
  ) {}

  public async send(command: unknown): Promise<unknown> {
    const rtt = this.roundTripMs();
    await this.clock.sleep(rtt / 2);
    let result: unknown;
    let failure: Error | undefined;
    try {
      result = this.apply(command);
    } catch (error) {
      failure = error as Error;
    }
    await this.clock.sleep(rtt / 2);
    if (failure) throw failure;
    return result;
  }

  private apply(command: unknown): unknown {
    const requests = this.queue.requests;
    if (command instanceof SendMessageCommand) {
      requests.SendMessage++;
      const input = command.input;
      return this.sendOne(input.QueueUrl, input.MessageBody, input.DelaySeconds, input.MessageGroupId);
    }
    if (command instanceof SendMessageBatchCommand) {
      requests.SendMessageBatch++;
      const entries = command.input.Entries ?? [];
      if (entries.length === 0 || entries.length > 10) throw sqsError(entries.length === 0 ? 'EmptyBatchRequest' : 'TooManyEntriesInBatchRequest');
      if (new Set(entries.map((entry) => entry.Id)).size !== entries.length) throw sqsError('BatchEntryIdsNotDistinct');
      return {
        Successful: entries.map((entry) => ({
          Id: entry.Id, ...this.sendOne(command.input.QueueUrl, entry.MessageBody, entry.DelaySeconds, entry.MessageGroupId),
        })),
        Failed: [],
      };
    }
    if (command instanceof ChangeMessageVisibilityCommand) {
      requests.ChangeMessageVisibility++;
      this.queueOf(command.input.QueueUrl, false)!.changeVisibility(command.input.ReceiptHandle!, command.input.VisibilityTimeout ?? 0);
      return {};
    }
    if (command instanceof ChangeMessageVisibilityBatchCommand) {
      requests.ChangeMessageVisibility++;
      const queue = this.queueOf(command.input.QueueUrl, false)!;
      const entries = command.input.Entries ?? [];
      if (entries.length === 0 || entries.length > 10) throw sqsError(entries.length === 0 ? 'EmptyBatchRequest' : 'TooManyEntriesInBatchRequest');
      for (const entry of entries) queue.changeVisibility(entry.ReceiptHandle!, entry.VisibilityTimeout ?? 0);
      return { Successful: entries.map((entry) => ({ Id: entry.Id })), Failed: [] };
    }
    throw new Error(`modeled SQS: unexpected command ${(command as object).constructor.name}`);
  }

  private sendOne(
    queueUrl: string | undefined, body: string | undefined, delaySeconds: number | undefined, groupId: string | undefined,
  ): { MessageId: string } {
    const queue = this.queueOf(queueUrl, true);
    if (body === undefined || body === '') throw sqsError('MissingParameter', 'MessageBody is required');
    if (delaySeconds !== undefined && !(Number.isInteger(delaySeconds) && delaySeconds >= 0 && delaySeconds <= MAX_DELAY_SECONDS)) {
      throw sqsError('InvalidParameterValue', `DelaySeconds must be a whole number of seconds from 0 to ${MAX_DELAY_SECONDS} (given ${delaySeconds})`);
    }
    if (queue === undefined) {
      this.parked++;
      return { MessageId: `dlq-${this.parked}` };
    }
    const requestId = requestIdOf(body);
    if (requestId !== undefined) {
      const copies = (this.copiesByRequest.get(requestId) ?? 0) + 1;
      this.copiesByRequest.set(requestId, copies);
      this.mostCopiesOfOneRequest = Math.max(this.mostCopiesOfOneRequest, copies);
    }
    return { MessageId: queue.add(body, delaySeconds ?? 0, groupId).messageId };
  }

  /** The queue a URL names (undefined: the dead-letter queue); throws for a queue the model does not have. */
  private queueOf(queueUrl: string | undefined, deadLetterAllowed: boolean): ModeledQueue | undefined {
    if (queueUrl === MODEL_QUEUE_URL) return this.queue;
    if (this.highQueue && queueUrl === MODEL_HIGH_QUEUE_URL) return this.highQueue;
    if (deadLetterAllowed && queueUrl === MODEL_DEAD_LETTER_QUEUE_URL) return undefined;
    throw sqsError('QueueDoesNotExist', `modeled SQS: no queue ${queueUrl}`);
  }
}

/** The request id of a message body, when it is a request's JSON (the model's tests also send plain strings). */
function requestIdOf(body: string): string | undefined {
  try {
    const requestId = (JSON.parse(body) as { requestId?: unknown }).requestId;
    return typeof requestId === 'string' ? requestId : undefined;
  } catch {
    return undefined;
  }
}

function sqsError(name: string, message = name): Error {
  return Object.assign(new Error(message), { name });
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/** One request offered to the queue: when (ms after the run starts), its key and priority. */
export interface ModeledRequest {
  readonly atMs: number;
  readonly key?: string;
  readonly priority?: RequestPriority;
}

export interface DispatchModelOptions {
  /** The contract `R`. */
  readonly rps: number;
  /** What is offered, in time order. */
  readonly requests: readonly ModeledRequest[];
  /** Each key's limits in force (`DispatchDeps.keyLimits`); absent: the dispatcher gets no key limits source. */
  readonly keyLimits?: ReadonlyMap<string, KeyLimitsSpec>;
  /**
   * Instead of `keyLimits`: each dispatcher environment's own key limits source, made once per lane
   * (one lane is one execution environment: the handler's module-scope settings cache is per
   * environment, dispatcher.lambda.ts). Used by `keys-500-burst` (bench-key-burst.ts).
   */
  readonly keyLimitsPerEnvironment?: (environment: number, context: ModelEnvironmentContext) => KeyLimitsSource;
  readonly model?: LatencyModel;
  readonly knobs?: PacingKnobs;
  /** Event source mapping maximum concurrency. @default the library's derivation for R (rate-settings.ts) */
  readonly lanes?: number;
  /** @default the library's derivation for R */
  readonly batchSize?: number;
  /** @default the library's derivation for R (1 s above 10 messages per batch) */
  readonly maxBatchingWindowMs?: number;
  /** The dispatcher's longest pacing wait. @default as the construct sets it: (max(30 s, batchSize x lanes x I) - 15 s) */
  readonly maxPacingWaitMs?: number;
  /** @default 6 x the dispatcher's timeout, as the construct sets it */
  readonly visibilityTimeoutSeconds?: number;
  /**
   * More environment of the dispatcher (its configuration is read with the handler's own
   * `loadConfig`, so a setting added there applies here with its default). @default none
   */
  readonly dispatcherEnv?: Readonly<Record<string, string>>;
  readonly seed?: number;
  /**
   * Issue 15: a high-priority request queue (high-priority-queue.ts): high requests are sent to it,
   * and its own event source mapping (`lanes` pollers, batches of up to 10, no batching window)
   * invokes the same dispatcher; the dispatcher is configured with it (HIGH_PRIORITY_QUEUE_ARN).
   * @default none: every request goes to the one request queue
   */
  readonly highPriorityQueue?: {
    /** @default 2 (an SQS mapping's lowest maximum concurrency) */
    readonly lanes?: number;
    /** NORMAL_RESERVATION_HORIZON_MS. @default the dispatcher's default */
    readonly normalHorizonMs?: number;
  };
  /** Virtual time after which the run stops (what is not delivered by then is counted). @default 10 minutes */
  readonly maxRunMs?: number;
  /**
   * Jobs in flight (per-key places, issue 15 design 3.3): the dispatcher runs with its
   * jobs-in-flight settings (give them in `dispatcherEnv`: MAX_JOBS_IN_FLIGHT, MAX_JOB_DURATION_MS;
   * the correlation table is the model's, and never holds a submitted job), and each job ends
   * `durationMs()` after its call reached the vendor: its places are then freed through the real
   * freers' functions (`releasePlace` for the contract's, `releaseKeyPlace` for its key's, as the
   * callback processor calls them). The run records every change of a key's places held
   * (`keyPlaces`). @default none: no places, as before
   */
  readonly jobs?: { readonly durationMs: (random: () => number) => number };
}

/** A change of a key's places held (read from the item after each write to it). */
export interface KeyPlacesChange {
  readonly at: number;
  readonly key: string;
  readonly held: number;
}

/** The model's correlation table (jobs in flight: the dispatcher asks it whether a job was already submitted). */
export const MODEL_CORRELATION_TABLE = 'bench-correlation';

/** What an environment's key limits source gets from the model: its clock, the run's metrics, a DynamoDB round trip. */
export interface ModelEnvironmentContext {
  readonly clock: VirtualClock;
  readonly metrics: DispatchDeps['metrics'];
  readonly dynamodbRoundTripMs: () => number;
}

/** A request's first arrival at the vendor. */
export interface ModeledCall {
  readonly requestId: string;
  readonly key?: string;
  readonly priority?: RequestPriority;
  readonly enqueuedAt: number;
  readonly arrivedAt: number;
}

export interface DispatchModelRun {
  readonly requests: number;
  readonly delivered: number;
  /** First arrival per request, in arrival order. */
  readonly calls: ModeledCall[];
  /** Every arrival at the vendor (a request started twice arrives twice), with its key. */
  readonly vendorArrivals: Array<{ readonly at: number; readonly key?: string }>;
  readonly runStartMs: number;
  readonly runEndMs: number;
  readonly startExecutions: number;
  /** Starts of a request already delivered or on its way (the dispatch workflow's claim stops them before the vendor). */
  readonly duplicateStarts: number;
  /** Messages parked in the dead-letter queue and waiting tasks failed (SendTaskFailure). */
  readonly parked: number;
  readonly taskFailures: number;
  /** SQS API requests per action: the producer's sends, the mapping's receives and deletes, the dispatcher's sends and visibility changes. */
  readonly sqsRequests: Record<string, number>;
  readonly maxReceiveCount: number;
  /** The most copies the dispatcher sent back for one request (ModeledSqs.mostCopiesOfOneRequest). */
  readonly maxCopiesPerRequest: number;
  /** The most messages in flight at once (ModeledQueue.maxInFlight). */
  readonly maxInFlight: number;
  /** The dispatcher's metrics (DispatchMetrics.addMetric), summed per name. */
  readonly metrics: Record<string, number>;
  /** The same for the values counted with a key (the EMF documents' `keyTotals`), per key. */
  readonly metricsByKey: Record<string, Record<string, number>>;
  readonly lateCallers: number;
  readonly callerRequeues: number;
  readonly invocations: number;
  /** DynamoDB requests per action (GetItem, BatchGetItem, UpdateItem, ...), on every item. */
  readonly dynamodbRequests: Record<string, number>;
  /** DynamoDB calls on items other than the contract's pacer item, per partition key prefix. */
  readonly itemWrites: Record<string, number>;
  readonly itemReads: Record<string, number>;
  readonly itemConditionalFailures: Record<string, number>;
  /** The items stored at the end of the run (other than the contract's pacer item): what the dispatchers created. */
  readonly items: DynamoItems;
  readonly pacerConditionalFailures: number;
  /** Successful writes of the contract's pacer item (one per reservation that got slots). */
  readonly pacerWrites: number;
  readonly lanes: number;
  readonly batchSize: number;
  readonly maxPacingWaitMs: number;
  /** With `jobs`: every change of a key's places held, in time order. */
  readonly keyPlaces: KeyPlacesChange[];
}

export async function runDispatchModel(options: DispatchModelOptions): Promise<DispatchModelRun> {
  const model = options.model ?? LATENCY_MODEL;
  const knobs = options.knobs ?? pacingKnobs(model);
  const random = seededRandom(options.seed ?? 42);
  const draw = (hop: Hop) => sample(hop.distribution, random);
  const clock = new VirtualClock();
  const runStartMs = clock.now();
  const table = new InMemoryPacerTable(clock, () => draw(model.dynamodbCall));
  // DynamoDB requests per action, whoever makes them (the dispatcher, a caller's fresh slot): a BatchGetItem counts once.
  const dynamodbRequests: Record<string, number> = {};
  const dynamodb = {
    send: (command: object): Promise<unknown> => {
      const action = command.constructor.name.replace(/Command$/, '');
      dynamodbRequests[action] = (dynamodbRequests[action] ?? 0) + 1;
      return table.send(command);
    },
  };
  const queue = new ModeledQueue(clock);
  const highQueue = options.highPriorityQueue ? new ModeledQueue(clock) : undefined;
  const settings = deriveRateSettings(options.rps, {
    latenessToleranceMs: knobs.latenessToleranceMs, fireToleranceMs: knobs.fireToleranceMs, leadMs: knobs.leadMs,
  });
  const lanes = options.lanes ?? settings.maxConcurrency;
  const batchSize = options.batchSize ?? settings.batchSize;
  const batchingWindowMs = options.maxBatchingWindowMs ?? (batchSize > 10 ? 1000 : 0);
  // As the construct derives the dispatcher's timeout and the queue's visibility timeout
  // (rate-controlled-queue-consumer.ts): 30 s at least, 15 s of it slack.
  const timeoutSeconds = Math.max(30, Math.ceil((batchSize * lanes * slotIntervalMs(options.rps, knobs.latenessToleranceMs)) / 1000) + 15);
  const maxPacingWaitMs = options.maxPacingWaitMs ?? (timeoutSeconds - 15) * 1000;
  const visibilityTimeoutMs = (options.visibilityTimeoutSeconds ?? Math.min(43_200, timeoutSeconds * 6)) * 1000;
  const stopAt = runStartMs + (options.maxRunMs ?? 600_000);

  const enqueuedAt = new Map<string, number>();
  const priorities = new Map<string, RequestPriority | undefined>();
  const startsPerRequest = new Map<string, number>();
  const deliveredIds = new Set<string>();
  const executing = new Set<string>();
  let duplicateStarts = 0;
  const calls: ModeledCall[] = [];
  const vendorArrivals: Array<{ at: number; key?: string }> = [];
  const metrics: Record<string, number> = {};
  const metricsByKey: Record<string, Record<string, number>> = {};
  let taskFailures = 0;
  let lateCallers = 0;
  let callerRequeues = 0;
  let invocations = 0;
  const finished = () => calls.length + sqs.parked + taskFailures >= options.requests.length;

  const sqs = new ModeledSqs(queue, clock, () => draw(SQS_CALL_HOP), highQueue);

  // Jobs in flight: the correlation table answers "not submitted" (the model's requests are each
  // delivered once), and every write to a key's places item records its places held after it.
  const keyPlaces: KeyPlacesChange[] = [];
  const heldByKey = new Map<string, number>();
  const clientDynamodb = options.jobs === undefined ? dynamodb : {
    send: async (command: object): Promise<unknown> => {
      if (command instanceof GetItemCommand && command.input.TableName === MODEL_CORRELATION_TABLE) {
        dynamodbRequests.GetItem = (dynamodbRequests.GetItem ?? 0) + 1;
        await clock.sleep(draw(model.dynamodbCall));
        return {};
      }
      try {
        return await dynamodb.send(command);
      } finally {
        const pk = command instanceof UpdateItemCommand ? command.input.Key?.pk?.S : undefined;
        if (pk?.startsWith(KEY_PLACES_PREFIX)) {
          const key = pk.slice(KEY_PLACES_PREFIX.length);
          const held = Number(table.items.item(pk)?.placesHeld?.N ?? 0);
          if (heldByKey.get(key) !== held) {
            heldByKey.set(key, held);
            keyPlaces.push({ at: clock.now(), key, held });
          }
        }
      }
    },
  };
  const placesTable = { dynamodb: clientDynamodb as never, tableName: 'bench-pacer' };
  /** A job's end: its places freed as the callback processor frees them (the contract's, then the key's). */
  const endJob = async (requestId: string, key: string | undefined) => {
    await clock.sleep(options.jobs!.durationMs(random));
    await releasePlace(placesTable, requestId);
    if (key !== undefined) await releaseKeyPlace(placesTable, key, requestId, clock.now());
  };

  /** A fresh slot for a caller too late for its own (vendor-call.ts reserveFresh, contract only). */
  const freshSlot = async (): Promise<number | undefined> => {
    const reservation = await reserveSlots({
      dynamodb: dynamodb as never,
      tableName: 'bench-pacer',
      requested: 1,
      requestsPerSecond: options.rps,
      latenessToleranceMs: knobs.latenessToleranceMs,
      maxWaitMs: 60_000,
      minLeadMs: FRESH_SLOT_LEAD_MS,
      clock,
      random,
    });
    return reservation.slots[0];
  };

  /** The started execution up to the vendor: workflow start, caller invoke, pause check, fire at the slot. */
  const execution = async (input: { requestId: string; key?: string; slotAtMs?: number; message?: unknown }) => {
    await clock.sleep(draw(model.expressStart));
    let invoke = draw(model.lambdaInvoke);
    if (random() < model.coldStartFraction) invoke += draw(model.lambdaColdStart);
    await clock.sleep(invoke);
    let slot = input.slotAtMs ?? clock.now();
    for (;;) {
      if (clock.now() > slot + knobs.fireToleranceMs) {
        lateCallers++;
        const fresh = await freshSlot();
        if (fresh === undefined) {
          // vendor-call.ts requeues the request through the queue (NoSlotInTime).
          callerRequeues++;
          queue.add(JSON.stringify(input.message), 1);
          queue.requests.SendMessage++;
          return;
        }
        slot = fresh;
        continue;
      }
      await clock.until(slot - PAUSE_CHECK_LEAD_MS);
      if (table.pausedUntil !== undefined && Number(table.pausedUntil) > slot) {
        // Not expected in these rows (the vendor answers no 429): the slot is given up as the caller does.
        slot = clock.now() + knobs.fireToleranceMs + 1;
        continue;
      }
      await clock.until(slot);
      const timerLateMs = draw(model.timerLateness);
      if (timerLateMs > knobs.fireToleranceMs) {
        continue;
      }
      await clock.sleep(timerLateMs + draw(model.callerToProxy) + draw(model.proxyToVendor));
      vendorArrivals.push({ at: clock.now(), ...(input.key !== undefined ? { key: input.key } : {}) });
      if (!deliveredIds.has(input.requestId)) {
        deliveredIds.add(input.requestId);
        if (options.jobs) void endJob(input.requestId, input.key);
        calls.push({
          requestId: input.requestId,
          ...(input.key !== undefined ? { key: input.key } : {}),
          ...(priorities.get(input.requestId) !== undefined ? { priority: priorities.get(input.requestId) } : {}),
          enqueuedAt: enqueuedAt.get(input.requestId)!,
          arrivedAt: clock.now(),
        });
      }
      return;
    }
  };

  const sfn = {
    send: async (command: unknown): Promise<unknown> => {
      const rtt = draw(model.startExecutionCall);
      await clock.sleep(rtt / 2);
      let result: unknown;
      if (command instanceof StartExecutionCommand) {
        const input = JSON.parse(command.input.input!) as { requestId: string; key?: string; slotAtMs?: number; message?: unknown };
        const starts = (startsPerRequest.get(input.requestId) ?? 0) + 1;
        startsPerRequest.set(input.requestId, starts);
        // The dispatch workflow's claim lets one execution of a request through (ClaimRequest).
        if (!deliveredIds.has(input.requestId) && !executing.has(input.requestId)) {
          executing.add(input.requestId);
          void execution(input).finally(() => executing.delete(input.requestId));
        } else {
          duplicateStarts++;
        }
        result = { executionArn: `${command.input.stateMachineArn}:${command.input.name}`, startDate: new Date(clock.now()) };
      } else if (command instanceof SendTaskFailureCommand) {
        taskFailures++;
        result = {};
      } else if (command instanceof SendTaskHeartbeatCommand) {
        // Jobs in flight: the admission's check that the waiting workflow still waits (it does).
        result = {};
      } else {
        throw new Error(`modeled Step Functions: unexpected command ${(command as object).constructor.name}`);
      }
      await clock.sleep(rtt / 2);
      return result;
    },
  };

  const keyLimits: KeyLimitsSource | undefined = options.keyLimits ? {
    limitsFor: async (keys) => new Map(keys.flatMap((key): Array<[string, KeyLimitsSpec]> => {
      const limits = options.keyLimits!.get(key);
      return limits ? [[key, limits]] : [];
    })),
  } : undefined;
  const noop = () => undefined;
  const deps: DispatchDeps = {
    clients: { dynamodb: clientDynamodb as never, sfn: sfn as never, sqs: sqs as never },
    // As the construct configures the dispatcher (rate-controlled-queue-consumer.ts), read by the handler's own code.
    config: loadConfig({
      [ConsumerEnv.STATE_MACHINE_ARN]: 'arn:aws:states:us-east-1:123456789012:stateMachine:bench-dispatch',
      [ConsumerEnv.REQUESTS_PER_SECOND]: String(options.rps),
      [ConsumerEnv.PACER_TABLE_NAME]: 'bench-pacer',
      [ConsumerEnv.MAX_PACING_WAIT_MS]: String(maxPacingWaitMs),
      [ConsumerEnv.LATENESS_TOLERANCE_MS]: String(knobs.latenessToleranceMs),
      [ConsumerEnv.PACING_LEAD_MS]: String(knobs.leadMs),
      [ConsumerEnv.CORRELATION_TTL_SECONDS]: '86400',
      [DEAD_LETTER_QUEUE_URL_ENV]: MODEL_DEAD_LETTER_QUEUE_URL,
      ...(options.jobs ? { [ConsumerEnv.CORRELATION_TABLE_NAME]: MODEL_CORRELATION_TABLE } : {}),
      ...(options.highPriorityQueue ? {
        [ConsumerEnv.HIGH_PRIORITY_QUEUE_ARN]: MODEL_HIGH_QUEUE_ARN,
        ...(options.highPriorityQueue.normalHorizonMs !== undefined
          ? { [ConsumerEnv.NORMAL_RESERVATION_HORIZON_MS]: String(options.highPriorityQueue.normalHorizonMs) } : {}),
      } : {}),
      ...options.dispatcherEnv,
    }),
    logger: { debug: noop, info: noop, warn: noop, error: noop },
    metrics: {
      addMetric: (name, _unit, value, key) => {
        metrics[name] = (metrics[name] ?? 0) + value;
        if (key !== undefined) {
          const totals = metricsByKey[key] ??= {};
          totals[name] = (totals[name] ?? 0) + value;
        }
      },
    },
    clock,
    random,
    ...(keyLimits ? { keyLimits } : {}),
  };

  const recordOf = (message: ModeledMessage, queueArn: string): SQSRecord => ({
    messageId: message.messageId,
    receiptHandle: message.receipt!,
    body: message.body,
    attributes: {
      ApproximateReceiveCount: String(message.receiveCount),
      SentTimestamp: String(Math.floor(message.sentAt)),
      SenderId: 'bench',
      ApproximateFirstReceiveTimestamp: String(Math.floor(clock.now())),
      ...(message.groupId ? { MessageGroupId: message.groupId } : {}),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: 'us-east-1',
  });

  const producer = (async () => {
    for (const [n, request] of options.requests.entries()) {
      await clock.until(runStartMs + request.atMs);
      const requestId = `req-${n}`;
      enqueuedAt.set(requestId, clock.now());
      priorities.set(requestId, request.priority);
      // With a high-priority queue, the orchestrator's task sends a high request there.
      const target = highQueue && request.priority === 'high' ? highQueue : queue;
      target.requests.SendMessage++;
      target.add(JSON.stringify({
        taskToken: `token-${n}`,
        requestId,
        payload: { n },
        ...(request.key !== undefined ? { key: request.key } : {}),
        ...(request.priority !== undefined ? { priority: request.priority } : {}),
      }));
    }
  })();

  /**
   * One poller of an event source mapping in execution environment `environment`: `source` is the
   * queue it polls, `queueArn` its records' source.
   */
  const lane = async (environment: number, source: ModeledQueue, queueArn: string, laneBatchSize: number, laneWindowMs: number) => {
    const context: ModelEnvironmentContext = { clock, metrics: deps.metrics, dynamodbRoundTripMs: () => draw(model.dynamodbCall) };
    const laneDeps: DispatchDeps = options.keyLimitsPerEnvironment
      ? { ...deps, keyLimits: options.keyLimitsPerEnvironment(environment, context) } : deps;
    while (!finished() && clock.now() < stopAt) {
      const next = source.nextVisibleAt();
      if (next === undefined || next > clock.now()) {
        // Long polling: a new message, or the next delayed one becoming visible.
        await source.waitForMessage(next === undefined ? 200 : Math.min(200, next - clock.now()));
        continue;
      }
      const first = clock.now();
      const batch = source.receive(laneBatchSize, visibilityTimeoutMs);
      if (batch.length === 0) continue;
      // The batching window: the mapping gathers until the batch is full or the window ends.
      while (batch.length < laneBatchSize && clock.now() < first + laneWindowMs) {
        const more = source.nextVisibleAt();
        const until = first + laneWindowMs;
        await source.waitForMessage(Math.max(1, Math.min(until, more === undefined || more <= clock.now() ? until : more) - clock.now()));
        batch.push(...source.receive(laneBatchSize - batch.length, visibilityTimeoutMs));
      }
      await clock.sleep(draw(model.queueToConsumer));
      invocations++;
      const response = await dispatchBatch({ Records: batch.map((message) => recordOf(message, queueArn)) }, laneDeps);
      const failed = new Set((response?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
      const done = batch.filter((message) => !failed.has(message.messageId));
      for (const message of done) source.delete(message.receipt!);
      source.requests.DeleteMessageBatch += Math.ceil(done.length / 10);
    }
  };

  void producer;
  void Promise.all(Array.from({ length: lanes }, (_, environment) => lane(environment, queue, MODEL_QUEUE_ARN, batchSize, batchingWindowMs)));
  if (highQueue) {
    // Lambda polls each mapped queue on its own: the high queue's mapping has its own pollers (and
    // invocations in environments of their own).
    const highLanes = options.highPriorityQueue!.lanes ?? 2;
    void Promise.all(Array.from({ length: highLanes }, (_, k) => lane(lanes + k, highQueue, MODEL_HIGH_QUEUE_ARN, Math.min(10, batchSize), 0)));
  }
  await clock.run(stopAt - clock.now());

  return {
    requests: options.requests.length,
    delivered: calls.length,
    calls,
    vendorArrivals,
    runStartMs,
    runEndMs: clock.now(),
    startExecutions: [...startsPerRequest.values()].reduce((a, b) => a + b, 0),
    duplicateStarts,
    parked: sqs.parked,
    taskFailures,
    sqsRequests: Object.fromEntries(Object.entries(queue.requests)
      .map(([action, n]) => [action, n + (highQueue?.requests[action as keyof ModeledQueue['requests']] ?? 0)])),
    dynamodbRequests,
    maxReceiveCount: Math.max(queue.maxReceiveCount, highQueue?.maxReceiveCount ?? 0),
    maxCopiesPerRequest: sqs.mostCopiesOfOneRequest,
    maxInFlight: queue.maxInFlight + (highQueue?.maxInFlight ?? 0),
    metrics,
    metricsByKey,
    lateCallers,
    callerRequeues,
    invocations,
    itemWrites: Object.fromEntries(table.items.writes),
    itemReads: Object.fromEntries(table.items.reads),
    itemConditionalFailures: Object.fromEntries(table.items.conditionalFailures),
    items: table.items,
    pacerConditionalFailures: table.conditionalFailures,
    pacerWrites: table.writes,
    lanes,
    batchSize,
    maxPacingWaitMs,
    keyPlaces,
  };
}

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

/** V and the busiest window of a set of arrival times against a rate limit (bench-metrics' definitions). */
export function windowFigures(arrivals: number[], limitRps: number): { violations: number; maxInAnySecond: number } {
  const sorted = [...arrivals].sort((a, b) => a - b);
  return { violations: violations(sorted, windowLimit(limitRps)), maxInAnySecond: maxInAnyWindow(sorted) };
}

/** Added latency (enqueue -> first arrival at the vendor) of some calls: p50, p99, max, ms. */
export function latencyFigures(calls: readonly ModeledCall[]): { p50: number | null; p99: number | null; max: number | null } {
  const { p50, p99 } = addedLatency(calls.map((c) => ({ enqueuedAt: c.enqueuedAt, arrivedAt: c.arrivedAt })));
  const max = percentile(calls.map((c) => c.arrivedAt - c.enqueuedAt), 100);
  return { p50, p99, max: max === undefined ? null : Math.round(max) };
}

/** Per-key figures of a run: V per key (against each key's limit) and of the contract, each key's arrivals. */
export function keyFigures(
  run: Pick<DispatchModelRun, 'vendorArrivals'>, contractRps: number, keyLimits: ReadonlyMap<string, KeyLimitsSpec>,
): {
    readonly contract: { violations: number; maxInAnySecond: number };
    readonly perKey: Map<string, { arrivals: number[]; violations: number; maxInAnySecond: number }>;
  } {
  const byKey = new Map<string, number[]>();
  for (const arrival of run.vendorArrivals) {
    if (arrival.key === undefined) continue;
    const arrivals = byKey.get(arrival.key) ?? [];
    arrivals.push(arrival.at);
    byKey.set(arrival.key, arrivals);
  }
  const perKey = new Map<string, { arrivals: number[]; violations: number; maxInAnySecond: number }>();
  for (const [key, arrivals] of byKey) {
    const limit = keyLimits.get(key)?.requestsPerSecond ?? contractRps;
    perKey.set(key, { arrivals: [...arrivals].sort((a, b) => a - b), ...windowFigures(arrivals, limit) });
  }
  return { contract: windowFigures(run.vendorArrivals.map((a) => a.at), contractRps), perKey };
}

/** A key's limits with a rate and no other limit (aging as the library's default). */
export function rateOnlyKeyLimits(requestsPerSecond: number, priorityAgingMs = 30_000): KeyLimitsSpec {
  return { requestsPerSecond, quotas: {}, priorityAgingMs, paused: false };
}

/** Poisson arrivals at `rps` over `durationMs`, each given `pick(random)` (seeded). */
export function poissonArrivals<T>(
  rps: number, durationMs: number, seed: number, pick: (random: () => number) => T,
): Array<{ atMs: number; value: T }> {
  const random = seededRandom(seed);
  const out: Array<{ atMs: number; value: T }> = [];
  if (!(rps > 0)) return out;
  for (let t = -Math.log(1 - random()) * (1000 / rps); t < durationMs; t += -Math.log(1 - random()) * (1000 / rps)) {
    out.push({ atMs: t, value: pick(random) });
  }
  return out;
}

/** SQS requests per delivered call (every action the run counted). */
export function sqsRequestsPerCall(run: Pick<DispatchModelRun, 'sqsRequests' | 'delivered'>): number {
  const total = Object.values(run.sqsRequests).reduce((a, b) => a + b, 0);
  return run.delivered > 0 ? round(total / run.delivered, 3) : 0;
}

/** DynamoDB requests per delivered call (every action the run counted). */
export function dynamodbRequestsPerCall(run: Pick<DispatchModelRun, 'dynamodbRequests' | 'delivered'>): number {
  const total = Object.values(run.dynamodbRequests).reduce((a, b) => a + b, 0);
  return run.delivered > 0 ? round(total / run.delivered, 3) : 0;
}

/** Utilization of a key's limit while its backlog lasts (bench-metrics utilization, 1 s trimmed at each end). */
export function keyUtilization(arrivals: number[], limitRps: number): number {
  return round(utilization(arrivals, limitRps, 1000, 1000), 4);
}
