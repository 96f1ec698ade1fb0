/**
 * Local SQS event source mappings: polls the emulated queues and invokes the local functions the
 * way Lambda's SQS poller does (batch size, batching window, maximum concurrency, partial batch
 * responses).
 *
 * Visibility timeouts and redrive to the dead-letter queue stay the SQS emulator's job: this poller
 * only deletes what succeeded. A failed record is left alone and comes back when its visibility
 * timeout ends, counting one more receive towards `maxReceiveCount`, as on AWS.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  Message,
  MessageAttributeValue,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSMessageAttributes, SQSRecord, SQSRecordAttributes } from 'aws-lambda';
import { LambdaInvoker, LOCAL_CREDENTIALS, LOCAL_REGION, ResolvedResource } from '../types';

/** One `AWS::Lambda::EventSourceMapping` and the queue it reads. */
export interface SqsEventSourceMappingInput {
  /** The mapping resource, properties resolved (`FunctionName` a name or ARN). */
  readonly resource: ResolvedResource;
  /** The queue URL exactly as the SQS emulator knows it (fauxqs looks queues up by URL). */
  readonly queueUrl: string;
  readonly queueArn: string;
}

export interface SqsEventSourcePollerOptions {
  readonly mappings: SqsEventSourceMappingInput[];
  readonly sqsEndpoint: string;
  readonly invoke: LambdaInvoker;
}

/** Counters of one mapping, since `start()`. */
export interface EventSourceMappingStats {
  readonly functionName: string;
  readonly queueArn: string;
  /** Invocations made. */
  readonly batches: number;
  /** Records handed to the function (a redelivered message counts again). */
  readonly messages: number;
  readonly deleted: number;
  /** Records not deleted after a completed invocation: listed in `batchItemFailures`, or the whole batch when the response was malformed. */
  readonly failedItems: number;
  /** Invocations that rejected (function error, timeout, throttle): nothing deleted. */
  readonly invocationErrors: number;
  /** Invocations whose partial batch response was malformed: nothing deleted. */
  readonly malformedResponses: number;
  readonly receiveErrors: number;
  readonly deleteErrors: number;
  /** Most invocations in flight at once for this mapping. */
  readonly maxConcurrent: number;
  readonly inFlight: number;
  readonly lastError?: string;
}

const DEFAULT_BATCH_SIZE = 10;
const DEFAULT_MAX_CONCURRENCY = 1000;
/** Lambda starts five pollers per SQS mapping; never more than the mapping's maximum concurrency. */
const INITIAL_POLLERS = 5;
/** How often a disabled mapping checks whether it was enabled again. */
const DISABLED_CHECK_MS = 50;
/** SQS returns at most ten messages per receive. */
const MAX_RECEIVE = 10;
/** Short long-poll: a disabled mapping's receive in flight ends within a second (a stop aborts it). */
const WAIT_TIME_SECONDS = 1;
const RECEIVE_ERROR_PAUSE_MS = 1000;
/** Between short polls while a batching window shorter than a second closes. */
const WINDOW_POLL_INTERVAL_MS = 50;
const DEFAULT_STOP_GRACE_MS = 10_000;

/** Static configuration of one mapping, read once from its resolved resource. */
interface MappingConfig {
  readonly id: string;
  readonly functionName: string;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly batchSize: number;
  readonly windowMs: number;
  readonly maxConcurrency: number;
  readonly reportBatchItemFailures: boolean;
}

function numberOr(value: unknown, fallback: number): number {
  const n = Number(value);
  return value === undefined || value === null || !Number.isFinite(n) ? fallback : n;
}

/** `Enabled` may come through resolution as a boolean or a string. */
function isEnabled(resource: ResolvedResource): boolean {
  const enabled = resource.properties.Enabled;
  return enabled !== false && enabled !== 'false';
}

function mappingConfig(input: SqsEventSourceMappingInput): MappingConfig {
  const props = input.resource.properties;
  const responseTypes: unknown[] = Array.isArray(props.FunctionResponseTypes) ? props.FunctionResponseTypes : [];
  return {
    id: input.resource.logicalId,
    functionName: String(props.FunctionName),
    queueUrl: input.queueUrl,
    queueArn: input.queueArn,
    batchSize: Math.max(1, numberOr(props.BatchSize, DEFAULT_BATCH_SIZE)),
    windowMs: Math.max(0, numberOr(props.MaximumBatchingWindowInSeconds, 0)) * 1000,
    maxConcurrency: Math.max(1, numberOr(props.ScalingConfig?.MaximumConcurrency, DEFAULT_MAX_CONCURRENCY)),
    reportBatchItemFailures: responseTypes.includes('ReportBatchItemFailures'),
  };
}

/** Lambda's event carries message attributes in camelCase, binary values base64-encoded, lists always present. */
function recordMessageAttributes(attributes: Record<string, MessageAttributeValue> | undefined): SQSMessageAttributes {
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

/** Every system attribute SQS returned, with the four Lambda always sets filled in if the emulator omitted one. */
function recordAttributes(message: Message, receivedAt: number): SQSRecordAttributes {
  const attributes: Record<string, string> = { ...message.Attributes };
  return {
    ...attributes,
    ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? '1',
    SentTimestamp: attributes.SentTimestamp ?? String(receivedAt),
    SenderId: attributes.SenderId ?? '000000000000',
    ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp ?? String(receivedAt),
  };
}

/** An SQS message as Lambda hands it to the function (see `SQSRecord` in @types/aws-lambda). */
export function toSqsRecord(message: Message, queueArn: string, receivedAt = Date.now()): SQSRecord {
  return {
    messageId: message.MessageId ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    body: message.Body ?? '',
    attributes: recordAttributes(message, receivedAt),
    messageAttributes: recordMessageAttributes(message.MessageAttributes),
    md5OfBody: message.MD5OfBody ?? '',
    ...(message.MD5OfMessageAttributes ? { md5OfMessageAttributes: message.MD5OfMessageAttributes } : {}),
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: LOCAL_REGION,
  };
}

/**
 * The message ids a partial batch response reports as failed, or `undefined` when the response is
 * malformed (Lambda then treats the whole batch as failed). A null/empty response or an empty or
 * null `batchItemFailures` is a complete success; an item with a missing, empty or unknown
 * `itemIdentifier` is malformed.
 */
export function batchItemFailures(response: unknown, messageIds: ReadonlySet<string>): Set<string> | undefined {
  if (response === null || response === undefined) {
    return new Set();
  }
  if (typeof response !== 'object' || Array.isArray(response)) {
    return undefined;
  }
  const list = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (list === null || list === undefined) {
    return new Set();
  }
  if (!Array.isArray(list)) {
    return undefined;
  }
  const failed = new Set<string>();
  for (const item of list) {
    const id: unknown = item?.itemIdentifier;
    if (typeof id !== 'string' || !messageIds.has(id)) {
      return undefined;
    }
    failed.add(id);
  }
  return failed;
}

/** A counting semaphore whose waiters are released (with `false`) when it closes. */
class Slots {
  private free: number;
  private readonly waiters: Array<(granted: boolean) => void> = [];
  private closed = false;

  constructor(size: number) {
    this.free = size;
  }

  acquire(): Promise<boolean> {
    if (this.closed) {
      return Promise.resolve(false);
    }
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) {
      next(true);
    } else {
      this.free++;
    }
  }

  close(): void {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) {
      waiter(false);
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** The pollers of one mapping. */
class MappingPoller {
  private readonly slots: Slots;
  private readonly pollers: Promise<void>[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private readonly wakers = new Set<() => void>();
  private stopping = false;
  /** UpdateEventSourceMapping Enabled=false: no receives until enabled again. */
  public disabled = false;
  /** Receive calls in flight (long polls). */
  private receiving = 0;
  /**
   * Aborts the receives in flight when the mapping stops: an idle mapping is always in a long poll,
   * and waiting for it to end added up to a second to every runtime's stop (half a second on
   * average, for each of the runtime lane's files). Messages an aborted receive took stay invisible
   * until their visibility timeout, as with any lost receive: the runtime is going away.
   */
  private readonly receiveAbort = new AbortController();
  private closed = false;
  private invoking = 0;
  private readonly counters = {
    batches: 0,
    messages: 0,
    deleted: 0,
    failedItems: 0,
    invocationErrors: 0,
    malformedResponses: 0,
    receiveErrors: 0,
    deleteErrors: 0,
    maxConcurrent: 0,
  };
  private lastError?: string;

  constructor(private readonly config: MappingConfig, private readonly sqs: SQSClient, private readonly invoke: LambdaInvoker) {
    // A slot is held from the receive to the end of the invocation: never more invocations in
    // flight than MaximumConcurrency, and no message is received that could not be invoked at once.
    this.slots = new Slots(config.maxConcurrency);
  }

  start(): void {
    const pollers = Math.min(INITIAL_POLLERS, this.config.maxConcurrency);
    for (let i = 0; i < pollers; i++) {
      this.pollers.push(this.pollLoop());
    }
  }

  get functionName(): string {
    return this.config.functionName;
  }

  /** Resolves when no receive is in flight (after disabling: what arrives from now on stays queued). */
  async receivesDone(): Promise<void> {
    while (this.receiving > 0) {
      await new Promise((resolve) => setTimeout(resolve, DISABLED_CHECK_MS));
    }
  }

  /** Stops receiving; in-flight invocations go on. */
  requestStop(): void {
    this.stopping = true;
    this.receiveAbort.abort();
    this.slots.close();
    for (const wake of [...this.wakers]) {
      wake();
    }
  }

  /** Waits for the pollers, then for in-flight invocations up to `graceMs`. */
  async drain(graceMs: number): Promise<void> {
    await Promise.all(this.pollers);
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([Promise.allSettled([...this.inFlight]), grace]);
    clearTimeout(timer);
    // Invocations still running past the grace period keep their messages: they come back later.
    this.closed = true;
  }

  stats(): EventSourceMappingStats {
    return {
      functionName: this.config.functionName,
      queueArn: this.config.queueArn,
      ...this.counters,
      inFlight: this.invoking,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
    };
  }

  private async pollLoop(): Promise<void> {
    while (!this.stopping) {
      if (this.disabled) {
        await this.pause(DISABLED_CHECK_MS);
        continue;
      }
      if (!(await this.slots.acquire())) {
        return;
      }
      let messages: Message[];
      try {
        messages = await this.gatherBatch();
      } catch (err) {
        this.slots.release();
        if (this.stopping) {
          // The receive was aborted by the stop: not an error of the queue.
          return;
        }
        this.noteError('receiveErrors', err);
        await this.pause(RECEIVE_ERROR_PAUSE_MS);
        continue;
      }
      if (messages.length === 0) {
        this.slots.release();
      } else if (this.stopping || this.disabled) {
        // A long poll in flight when the mapping stopped or was disabled: its messages go back.
        this.slots.release();
        await this.returnToQueue(messages);
      } else {
        // Not awaited: this poller receives the next batch while the function runs (up to MaximumConcurrency).
        this.track(this.processBatch(messages).finally(() => this.slots.release()));
      }
    }
  }

  /**
   * Receives until the batch is full or the batching window (opened by the first message) closes.
   * Without a window, invokes with whatever one receive returned, as Lambda does.
   */
  private async gatherBatch(): Promise<Message[]> {
    const messages: Message[] = [];
    let windowEnd: number | undefined;
    while (!this.stopping && !this.disabled && messages.length < this.config.batchSize) {
      const remainingMs = windowEnd === undefined ? undefined : windowEnd - Date.now();
      if (remainingMs !== undefined && remainingMs <= 0) {
        break;
      }
      // Whole seconds only: with less than a second of window left, short-poll instead.
      const waitSeconds = remainingMs === undefined || remainingMs >= 1000 ? WAIT_TIME_SECONDS : 0;
      let received: Message[];
      try {
        received = await this.receive(Math.min(MAX_RECEIVE, this.config.batchSize - messages.length), waitSeconds);
      } catch (err) {
        if (messages.length === 0) {
          throw err;
        }
        // Invoke with what was gathered rather than leave it invisible until its timeout (when
        // stopping, the caller puts it back).
        if (!this.stopping) {
          this.noteError('receiveErrors', err);
        }
        break;
      }
      messages.push(...received);
      if (messages.length > 0 && this.config.windowMs === 0) {
        break;
      }
      if (messages.length > 0 && windowEnd === undefined) {
        windowEnd = Date.now() + this.config.windowMs;
      }
      if (received.length === 0 && waitSeconds === 0) {
        await this.pause(Math.min(WINDOW_POLL_INTERVAL_MS, Math.max(0, (windowEnd ?? 0) - Date.now())));
      }
    }
    return messages;
  }

  private async receive(max: number, waitSeconds: number): Promise<Message[]> {
    this.receiving++;
    try {
      const out = await this.sqs.send(new ReceiveMessageCommand({
        QueueUrl: this.config.queueUrl,
        MaxNumberOfMessages: max,
        WaitTimeSeconds: waitSeconds,
        MessageSystemAttributeNames: ['All'],
        AttributeNames: ['All'],
        MessageAttributeNames: ['All'],
      }), { abortSignal: this.receiveAbort.signal });
      return out.Messages ?? [];
    } finally {
      this.receiving--;
    }
  }

  private async processBatch(messages: Message[]): Promise<void> {
    const receivedAt = Date.now();
    const records = messages.map((m) => toSqsRecord(m, this.config.queueArn, receivedAt));
    this.counters.batches++;
    this.counters.messages += records.length;
    this.invoking++;
    this.counters.maxConcurrent = Math.max(this.counters.maxConcurrent, this.invoking);
    let response: unknown;
    try {
      response = await this.invoke(this.config.functionName, { Records: records });
    } catch (err) {
      // The whole batch failed: every message returns after its visibility timeout.
      this.noteError('invocationErrors', err);
      return;
    } finally {
      this.invoking--;
    }
    await this.deleteRecords(this.succeeded(records, response));
  }

  /** Which records to delete after a completed invocation. */
  private succeeded(records: SQSRecord[], response: unknown): SQSRecord[] {
    if (!this.config.reportBatchItemFailures) {
      return records;
    }
    const failed = batchItemFailures(response, new Set(records.map((r) => r.messageId)));
    if (failed === undefined) {
      this.counters.malformedResponses++;
      this.counters.failedItems += records.length;
      this.lastError = `malformed partial batch response: ${JSON.stringify(response)?.slice(0, 200)}`;
      return [];
    }
    this.counters.failedItems += failed.size;
    return records.filter((r) => !failed.has(r.messageId));
  }

  private async deleteRecords(records: SQSRecord[]): Promise<void> {
    for (let i = 0; i < records.length && !this.closed; i += MAX_RECEIVE) {
      const chunk = records.slice(i, i + MAX_RECEIVE);
      try {
        const out = await this.sqs.send(new DeleteMessageBatchCommand({
          QueueUrl: this.config.queueUrl,
          Entries: chunk.map((r, index) => ({ Id: String(index), ReceiptHandle: r.receiptHandle })),
        }));
        this.counters.deleted += out.Successful?.length ?? 0;
        if (out.Failed?.length) {
          this.counters.deleteErrors += out.Failed.length;
          this.lastError = `delete failed: ${out.Failed[0].Code} ${out.Failed[0].Message ?? ''}`;
        }
      } catch (err) {
        this.counters.deleteErrors += chunk.length;
        this.lastError = `delete failed: ${errorText(err)}`;
      }
    }
  }

  /** Messages received while stopping go back at once instead of staying invisible until their timeout. */
  private async returnToQueue(messages: Message[]): Promise<void> {
    try {
      await this.sqs.send(new ChangeMessageVisibilityBatchCommand({
        QueueUrl: this.config.queueUrl,
        Entries: messages.map((m, index) => ({ Id: String(index), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0 })),
      }));
    } catch {
      // Best effort: they come back after their visibility timeout anyway.
    }
  }

  private track(work: Promise<void>): void {
    // processBatch handles its own failures; this only keeps a bug from becoming an unhandled rejection.
    const guarded = work.catch((err) => this.noteError('invocationErrors', err));
    this.inFlight.add(guarded);
    void guarded.finally(() => this.inFlight.delete(guarded));
  }

  private noteError(counter: 'receiveErrors' | 'invocationErrors', err: unknown): void {
    this.counters[counter]++;
    this.lastError = errorText(err);
  }

  /** A sleep that `requestStop()` cuts short. */
  private pause(ms: number): Promise<void> {
    if (this.stopping) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }
}

/** Every enabled SQS event source mapping of a template. */
export class SqsEventSourcePoller {
  private readonly sqs: SQSClient;
  private readonly pollers = new Map<string, MappingPoller>();
  private started = false;

  constructor(options: SqsEventSourcePollerOptions) {
    this.sqs = new SQSClient({ endpoint: options.sqsEndpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
    for (const input of options.mappings) {
      if (isEnabled(input.resource)) {
        this.pollers.set(input.resource.logicalId, new MappingPoller(mappingConfig(input), this.sqs, options.invoke));
      }
    }
  }

  start(): void {
    if (this.started) {
      return;
    }
    this.started = true;
    for (const poller of this.pollers.values()) {
      poller.start();
    }
  }

  /**
   * Stops polling at once (the receives in flight are aborted), then waits up to `graceMs` for
   * in-flight invocations to finish and delete their messages.
   */
  async stop(graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
    for (const poller of this.pollers.values()) {
      poller.requestStop();
    }
    await Promise.all([...this.pollers.values()].map((poller) => poller.drain(graceMs)));
    this.sqs.destroy();
  }

  /**
   * Enables or disables the mappings of a function, as UpdateEventSourceMapping `Enabled` does:
   * a disabled mapping receives nothing (messages stay in the queue); invocations in flight go on.
   * Disabling resolves once the receives in flight have ended (their messages, if any, are put
   * back at once), so that messages sent afterwards stay in the queue.
   */
  async setEnabled(functionName: string, enabled: boolean): Promise<void> {
    // FunctionName may be a name or an (alias) ARN.
    const mappings = [...this.pollers.values()].filter((p) => p.functionName === functionName || p.functionName.includes(`:function:${functionName}`));
    if (mappings.length === 0) {
      throw new Error(`no enabled event source mapping invokes ${functionName}`);
    }
    for (const poller of mappings) poller.disabled = !enabled;
    if (!enabled) {
      await Promise.all(mappings.map((poller) => poller.receivesDone()));
    }
  }

  /** Counters per mapping, keyed by the mapping's logical id (disabled mappings are absent). */
  stats(): Record<string, EventSourceMappingStats> {
    const out: Record<string, EventSourceMappingStats> = {};
    for (const [id, poller] of this.pollers) {
      out[id] = poller.stats();
    }
    return out;
  }
}
