/**
 * The callback processor's logic: turns one callback (an SQS record holding a CallbackEnvelope)
 * into SendTaskSuccess / SendTaskFailure for the workflow waiting on the vendor's job.
 *
 * Pure logic: the AWS clients, the configuration, the logger and the metrics are arguments, so tests
 * drive it directly. `callback-processor.lambda.ts` is the thin Lambda adapter around it.
 *
 * Outcome of one record:
 * - returns normally: the record is done (resumed, duplicate, late, or parked in the dead-letter queue);
 * - throws: the record is reported as a batch item failure and SQS redelivers it later
 *   (early callback, throttling, network errors, or a failure to park it).
 */

import { createHash } from 'crypto';
// The AWS SDK is bundled into the Lambda asset by esbuild; the construct library never imports this file.
import { DynamoDBClient, GetItemCommand, QueryCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { getAtPath, parseSimplePath } from './json-path';
import { SignatureSpec } from './signature-spec';
import { CachedSecret, decodeHeaders, MIN_SIGNING_KEY_BYTES, signingKey, tokensEqual, UnusableSecretError, verifySignature } from './signature-verification';
import { keyOfCallbackToken } from '../shared/callback-token-key';
import { CallbackEnv } from '../shared/env';
import { releasePlaceAndWakeWaiter, waitingQueuesFromEnv, WaitingQueues, waitingRoomOf } from '../shared/job-waiting';
import { releaseKeyPlace } from '../shared/key-places';
import { CallbackEnvelope, CLOSED_TASK_ERROR_NAMES, CorrelationAttributes, ErrorNames, RequestStatus } from '../shared/messages';
import { MetricNames } from '../shared/metrics';
import { sqsQueueUrl } from '../shared/sqs-url';
import { isThrottlingError } from '../shared/throttling';

/** The AWS clients the processor uses. */
export interface CallbackClients {
  readonly dynamodb: DynamoDBClient;
  readonly sfn: SFNClient;
  readonly sqs: SQSClient;
}

export interface CallbackConfig {
  /** Correlation table. */
  readonly tableName: string;
  /** Its index on job id (`ByJobId`). */
  readonly jobIdIndexName: string;
  /** Where the job id is in the callback body (segments from `parseSimplePath`). */
  readonly jobIdPath: string[];
  /** Where the vendor's job status is in the callback body. Absent: every callback is a success. */
  readonly statusPath?: string[];
  /** Status values (compared as strings) that mean the vendor's job failed. */
  readonly failureStatusValues: string[];
  /** Where records that can never succeed are parked at once. */
  readonly deadLetterQueueUrl: string;
  /** Largest SendTaskSuccess output, in UTF-8 bytes. Default: Step Functions' limit, 256 KiB. */
  readonly maxOutputBytes?: number;
  /** Callbacks must come on their request's capability URL (`/callback/<token>`). Default true. */
  readonly requireCallbackToken?: boolean;
  /** The vendor signature to verify, if any (the secret comes from `CallbackDeps.signatureSecret`). */
  readonly signature?: SignatureSpec;
  /** Largest callback body, in bytes; larger ones are parked and their workflow failed. Default: no limit. */
  readonly maxPayloadBytes?: number;
  /**
   * The table holding the jobs-in-flight places (VendorContract.maxJobsInFlight): an authenticated
   * callback frees its job's place. Default: no limit, nothing to free.
   */
  readonly jobPlacesTableName?: string;
  /** This orchestrator's key in a shared contract state (CallbackEnv.SHARED_STATE_OWNER): keys its places. */
  readonly jobPlacesOwner?: string;
  /** The jobs-in-flight waiting room (shared/job-waiting.ts): a freed place wakes one waiter. Default: none. */
  readonly jobWaiting?: WaitingQueues;
  /**
   * Per-key limits are on (CallbackEnv.FREE_KEY_PLACES): the job's place of its request's key is
   * freed too, after the contract's. Default false.
   */
  readonly freeKeyPlaces?: boolean;
}

/**
 * The logger calls the processor makes: a subset of the Powertools Logger, so tests can pass a fake.
 * Keys are appended per record; the caller must process records one at a time (the keys live on the logger).
 */
export interface CallbackLogger {
  debug(message: string, ...extra: unknown[]): void;
  info(message: string, ...extra: unknown[]): void;
  warn(message: string, ...extra: unknown[]): void;
  error(message: string, ...extra: unknown[]): void;
  appendKeys(keys: Record<string, unknown>): void;
  removeKeys(keys: string[]): void;
}

/**
 * Where the custom metrics (`MetricNames` in `shared/metrics.ts`) are counted. Powertools' Metrics
 * fits; the Lambda adapter publishes what was added once per invocation.
 */
export interface CallbackMetrics {
  /** `key`: the request's key (issue 15), an EMF property of the value (shared/handler-metrics.ts). */
  addMetric(name: string, unit: 'Count' | 'Milliseconds', value: number, key?: string): void;
}

/** The other things the processor needs besides clients, configuration and logger. */
export interface CallbackDeps {
  readonly metrics: CallbackMetrics;
  /**
   * Current time, epoch ms, for CallbackLatency (and signature timestamps when the envelope has no
   * arrival time). Default Date.now.
   */
  readonly now?: () => number;
  /** The signing secret, required when the configuration has a `signature`. */
  readonly signatureSecret?: CachedSecret;
  /**
   * The signing secret of a key (issue 15, `WebhookAuthentication.capabilityUrlPerKey`): used for a
   * callback whose capability token carries a key. Absent: every callback uses `signatureSecret`.
   */
  readonly keySignatureSecret?: (key: string) => CachedSecret;
}

/** Deepest nesting of objects and arrays a callback body may have. */
export const MAX_BODY_NESTING = 512;

/**
 * How deep objects and arrays nest in a parsed JSON value (a scalar is 0), without recursion, and
 * stopping once past ten times the limit.
 */
export function nestingDepth(value: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    const depth = d + 1;
    max = Math.max(max, depth);
    if (max > 10 * MAX_BODY_NESTING) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      stack.push([child, depth]);
    }
  }
  return max;
}

/** The `reason` message attribute of a record parked in the dead-letter queue. */
export const ParkReasons = {
  /** The record body is not a valid CallbackEnvelope. */
  MALFORMED_ENVELOPE: 'MALFORMED_ENVELOPE',
  /** The callback body is not UTF-8 JSON. */
  MALFORMED_BODY: 'MALFORMED_BODY',
  /** No usable job id at the configured path. */
  MISSING_JOB_ID: 'MISSING_JOB_ID',
  /** The correlation item for the job id has no task token. */
  INVALID_CORRELATION_ITEM: 'INVALID_CORRELATION_ITEM',
  /** `{jobId, result}` is larger than Step Functions accepts as task output. */
  OUTPUT_TOO_LARGE: 'OUTPUT_TOO_LARGE',
  /** The callback body is over the webhook's `maxPayloadSize`. */
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /**
   * Authentication failed: no or wrong capability token, no or bad signature, stale timestamp.
   * Nothing was resumed; the `detail` attribute says which check failed (never the secret).
   */
  CALLBACK_REJECTED: 'CallbackRejected',
  /**
   * The signing secret gives no usable HMAC key (empty, only `whsec_`, not canonical base64): no
   * callback can be verified. Nothing was resumed; fix the secret, then redrive the dead-letter queue.
   */
  SIGNING_SECRET_UNUSABLE: 'SIGNING_SECRET_UNUSABLE',
} as const;
export type ParkReason = typeof ParkReasons[keyof typeof ParkReasons];

/** Error name the waiting task fails with when the callback is too large to be its output. */
export const CALLBACK_TOO_LARGE_ERROR = 'CallbackTooLarge';

/** Step Functions' limit on task output (SendTaskSuccess `output`), in bytes. */
export const DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024;
/** Step Functions' limit on SendTaskFailure `cause`, in characters. */
export const MAX_CAUSE_CHARS = 32768;
/** Longest `detail` message attribute on a parked record. */
export const MAX_DETAIL_CHARS = 1000;
/** Cap of the early-callback backoff before jitter, in seconds. */
export const MAX_BACKOFF_SECONDS = 300;

/** The waiting workflow has already ended: retrying can never succeed, the callback is late. */
const FINAL_TASK_ERRORS = CLOSED_TASK_ERROR_NAMES;

/** Keys appended to the logger per record; removed after the record. */
const RECORD_LOG_KEYS = ['messageId', 'apiRequestId', 'jobId', 'requestId', 'requestKey'];

/**
 * Thrown for a callback whose job id is not (yet) in the correlation table, so the record is retried
 * with backoff until the dispatch workflow has stored the job id, or the queue's redrive policy parks it.
 */
export class EarlyCallbackError extends Error {
  constructor(readonly jobId: string, readonly receiveCount: number) {
    super(`No request found for job id "${jobId}" (receive count ${receiveCount}): the callback came before the job id was stored; it will be retried`);
    this.name = 'EarlyCallbackError';
  }
}

/**
 * Reads the configuration from the environment (the `CallbackEnv` variables).
 * Call once at module load: a misconfigured function then fails at init, naming the variable.
 */
export function loadConfig(env: Record<string, string | undefined>): CallbackConfig {
  const required = (name: string): string => {
    const value = env[name];
    if (value === undefined || value.trim() === '') {
      throw new Error(`Environment variable ${name} is required by the callback processor but is not set`);
    }
    return value;
  };
  const path = (name: string, value: string): string[] => {
    try {
      return parseSimplePath(value);
    } catch (err) {
      throw new Error(`Environment variable ${name}: ${(err as Error).message}`);
    }
  };

  const statusPathValue = env[CallbackEnv.STATUS_PATH];
  const failureValuesText = env[CallbackEnv.FAILURE_STATUS_VALUES];
  let failureStatusValues: string[] = [];
  if (failureValuesText !== undefined && failureValuesText.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(failureValuesText);
    } catch {
      parsed = undefined;
    }
    if (!Array.isArray(parsed) || !parsed.every((v) => ['string', 'number', 'boolean'].includes(typeof v))) {
      throw new Error(`Environment variable ${CallbackEnv.FAILURE_STATUS_VALUES} must be a JSON array of strings, got: ${failureValuesText}`);
    }
    // Compared with String(status), so `[500]` matches a numeric status 500.
    failureStatusValues = parsed.map((v) => String(v));
  }

  return {
    tableName: required(CallbackEnv.TABLE_NAME),
    jobIdIndexName: required(CallbackEnv.JOB_ID_INDEX_NAME),
    jobIdPath: path(CallbackEnv.JOB_ID_PATH, required(CallbackEnv.JOB_ID_PATH)),
    // Empty STATUS_PATH means "no status field": every callback is a success.
    statusPath: statusPathValue === undefined || statusPathValue.trim() === ''
      ? undefined
      : path(CallbackEnv.STATUS_PATH, statusPathValue),
    failureStatusValues,
    deadLetterQueueUrl: required(CallbackEnv.DEAD_LETTER_QUEUE_URL),
    // Secure default: only an explicit 'false' turns the capability token check off.
    requireCallbackToken: env[CallbackEnv.REQUIRE_CALLBACK_TOKEN] !== 'false',
    signature: parseSignatureSpec(env[CallbackEnv.WEBHOOK_SIGNATURE]),
    maxPayloadBytes: optionalPositiveInteger(CallbackEnv.MAX_PAYLOAD_BYTES, env[CallbackEnv.MAX_PAYLOAD_BYTES]),
    ...(env[CallbackEnv.JOB_PLACES_TABLE_NAME]?.trim() ? { jobPlacesTableName: env[CallbackEnv.JOB_PLACES_TABLE_NAME]!.trim() } : {}),
    ...(env[CallbackEnv.SHARED_STATE_OWNER]?.trim() ? { jobPlacesOwner: env[CallbackEnv.SHARED_STATE_OWNER]!.trim() } : {}),
    ...(waitingQueuesFromEnv(env) ? { jobWaiting: waitingQueuesFromEnv(env) } : {}),
    ...(env[CallbackEnv.FREE_KEY_PLACES] === 'true' ? { freeKeyPlaces: true } : {}),
  };
}

function parseSignatureSpec(text: string | undefined): SignatureSpec | undefined {
  if (text === undefined || text.trim() === '') {
    return undefined;
  }
  let spec: SignatureSpec;
  try {
    spec = JSON.parse(text);
  } catch (err) {
    throw new Error(`Environment variable ${CallbackEnv.WEBHOOK_SIGNATURE} is not JSON: ${(err as Error).message}`);
  }
  if (!['hmac', 'standardWebhooks', 'stripe'].includes(spec.scheme) || typeof spec.signatureHeader !== 'string'
    || typeof spec.signedPayload !== 'string' || !['hex', 'base64'].includes(spec.encoding)) {
    throw new Error(`Environment variable ${CallbackEnv.WEBHOOK_SIGNATURE} is not a signature specification: ${text}`);
  }
  return spec;
}

function optionalPositiveInteger(name: string, text: string | undefined): number | undefined {
  if (text === undefined || text.trim() === '') {
    return undefined;
  }
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`Environment variable ${name} must be a positive whole number, got: ${text}`);
  }
  return value;
}

/**
 * Processes one callback record. Returns when the record is done; throws when it must be retried.
 * Appends `messageId`, `apiRequestId`, `jobId` and `requestId` to the logger as they become known,
 * and removes them before returning.
 *
 * Metrics: CallbacksResolved (+ CallbackLatency) when the waiting task was resumed or failed,
 * CallbacksRejected when the record was parked, LateCallbacks, DuplicateCallbacks, EarlyCallbacks.
 * A too large callback is both rejected (parked) and resolved (its task failed).
 */
export async function processCallbackRecord(
  record: SQSRecord,
  clients: CallbackClients,
  config: CallbackConfig,
  logger: CallbackLogger,
  deps: CallbackDeps,
): Promise<void> {
  logger.appendKeys({ messageId: record.messageId });
  try {
    await processRecord(record, clients, config, logger, deps);
  } catch (err) {
    // Logged here, while the record's keys are still on the logger.
    if (err instanceof EarlyCallbackError) {
      deps.metrics.addMetric(MetricNames.EARLY_CALLBACKS, 'Count', 1);
      logger.info('Callback came before its job id was stored; it will be retried', { receiveCount: err.receiveCount });
    } else {
      logger.error('Callback processing failed; the record will be redelivered', err as Error);
      if (isThrottlingError(err)) {
        // Throttled (SendTaskSuccess, the look-up...) after the SDK's own retries: back in seconds,
        // with the early callbacks' growing backoff, not after the queue's visibility timeout
        // (180 s): a throttle passes in a second or two. Other failures keep the visibility timeout.
        await delayRetry(record, clients, logger);
      }
    }
    throw err;
  } finally {
    logger.removeKeys(RECORD_LOG_KEYS);
  }
}

async function processRecord(
  record: SQSRecord, clients: CallbackClients, config: CallbackConfig, logger: CallbackLogger, deps: CallbackDeps,
): Promise<void> {
  const { metrics } = deps;
  const park = async (reason: ParkReason, detail: string): Promise<void> => {
    await parkRecord(record, reason, detail, clients, config, logger);
    metrics.addMetric(MetricNames.CALLBACKS_REJECTED, 'Count', 1);
  };

  // a. The envelope, written by the webhook's mapping template.
  const envelope = parseEnvelope(record.body);
  if (typeof envelope === 'string') {
    return park(ParkReasons.MALFORMED_ENVELOPE, envelope);
  }
  if (typeof envelope.apiRequestId === 'string') {
    logger.appendKeys({ apiRequestId: envelope.apiRequestId });
  }
  const reject = (detail: string): Promise<void> => park(ParkReasons.CALLBACK_REJECTED, detail);

  // a2. Authentication that needs no table read: the capability token is present, the signature valid.
  let callbackToken: string | undefined;
  if (config.requireCallbackToken ?? true) {
    callbackToken = typeof envelope.callbackTokenBase64 === 'string'
      ? Buffer.from(envelope.callbackTokenBase64, 'base64').toString('utf8')
      : '';
    if (callbackToken === '') {
      return reject('no callback token: callbacks must come on the request\'s capability URL /callback/<token>');
    }
  }
  // a3. A body too large for the callback queue was dropped at the webhook (the vendor got 413). Only
  // a capability URL still authenticates it (the token, checked against the table below); a
  // signature cannot be verified without the body, so such a callback must not end any workflow.
  const dropped = envelope.bodyDropped === true;
  const droppedBytes = dropped ? Math.floor((Number(envelope.bodyBase64Length) || 0) * 3 / 4) : 0;
  if (dropped && config.signature && !(config.requireCallbackToken ?? true)) {
    return park(ParkReasons.PAYLOAD_TOO_LARGE, `callback body of about ${droppedBytes} bytes was too large for the callback queue and was dropped `
      + 'at the webhook (answered 413); its signature cannot be verified without it, so no workflow was resumed or failed');
  }
  const rawBody = Buffer.from(envelope.bodyBase64, 'base64');
  if (config.signature && !dropped) {
    // Issue 15: the key in the capability token picks the key's own signing secret, before
    // anything in the body is trusted; the token itself is checked against the request below.
    const key = callbackToken !== undefined && deps.keySignatureSecret ? keyOfCallbackToken(callbackToken) : undefined;
    const secrets = key !== undefined ? deps.keySignatureSecret!(key) : deps.signatureSecret;
    if (key !== undefined) {
      logger.appendKeys({ requestKey: key });
      try {
        await secrets!.get();
      } catch (err) {
        if ((err as Error).name === 'ResourceNotFoundException') {
          return reject(`no signing secret for key ${JSON.stringify(key)}: its callbacks cannot be verified (create the key's signing secret)`);
        }
        throw err;
      }
    }
    const problem = await checkSignature(config.signature, rawBody, envelope, { ...deps, signatureSecret: secrets }, logger);
    if (problem instanceof UnusableSecretError) {
      // Our configuration, not the callback, is at fault: nothing can be verified, so nothing
      // resumes. Parked (the dead-letter alarm fires) for a redrive once the secret is fixed; the
      // replay window is measured at the callback's arrival, so a redriven callback still verifies.
      logger.error('The signing secret gives no usable HMAC key: callbacks cannot be verified and are parked', { problem: problem.problem });
      return park(ParkReasons.SIGNING_SECRET_UNUSABLE, `the signing secret is unusable: ${problem.problem}; fix the secret in Secrets Manager, then redrive`);
    }
    if (problem) {
      return reject(`signature: ${problem}`);
    }
  }

  // b. The vendor's body: base64 -> UTF-8 (strict: invalid bytes are an error, not U+FFFD) -> JSON.
  let body: unknown;
  if (!dropped) {
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(rawBody);
      body = JSON.parse(text);
    } catch (err) {
      return park(ParkReasons.MALFORMED_BODY, `callback body is not UTF-8 JSON: ${(err as Error).message}`);
    }
    // JSON.parse copes with deep nesting, the recursive JSON.stringify of the task output does not
    // (RangeError): such a body could only be retried for nothing, so it is parked at once.
    const depth = nestingDepth(body);
    if (depth > MAX_BODY_NESTING) {
      return park(ParkReasons.MALFORMED_BODY, `callback body nests ${depth > 10 * MAX_BODY_NESTING ? `more than ${10 * MAX_BODY_NESTING}` : depth} levels deep, more than ${MAX_BODY_NESTING}`);
    }
  }

  // c. The job id: a non-empty string, or a finite number (stringified, as the table stores strings).
  // Of a dropped body, the mapping template read it (`$input.json(jobIdPath)`).
  const jobIdValue = dropped ? droppedJobId(envelope) : getAtPath(body, config.jobIdPath);
  let jobId: string;
  if (typeof jobIdValue === 'string' && jobIdValue.trim() !== '') {
    jobId = jobIdValue;
  } else if (typeof jobIdValue === 'number' && Number.isFinite(jobIdValue)) {
    jobId = String(jobIdValue);
  } else {
    return park(ParkReasons.MISSING_JOB_ID,
      `no job id at ${formatPath(config.jobIdPath)}: expected a non-empty string or a number, got ${describeValue(jobIdValue)}`
      + (dropped ? ` (the body, about ${droppedBytes} bytes, was too large for the callback queue and was dropped at the webhook, which answered 413)` : ''));
  }
  logger.appendKeys({ jobId });

  // d. The waiting request. The index is eventually consistent and the dispatch workflow stores the
  // job id only after the vendor answered, so a fast vendor's callback can arrive first: retry later.
  const query = await clients.dynamodb.send(new QueryCommand({
    TableName: config.tableName,
    IndexName: config.jobIdIndexName,
    KeyConditionExpression: '#jobId = :jobId',
    ExpressionAttributeNames: { '#jobId': CorrelationAttributes.JOB_ID },
    ExpressionAttributeValues: { ':jobId': { S: jobId } },
    Limit: 1,
  }));
  const item = query.Items?.[0];
  if (!item) {
    const receiveCount = await delayRetry(record, clients, logger);
    throw new EarlyCallbackError(jobId, receiveCount);
  }
  const requestId = item[CorrelationAttributes.REQUEST_ID]?.S;
  const taskToken = item[CorrelationAttributes.TASK_TOKEN]?.S;
  const status = item[CorrelationAttributes.STATUS]?.S;
  if (requestId) {
    logger.appendKeys({ requestId });
  }
  if (!requestId || !taskToken) {
    // Written by our own dispatch workflow, so this is a bug; retrying cannot fix the item.
    return park(ParkReasons.INVALID_CORRELATION_ITEM, `the item for job id "${jobId}" has no ${!requestId ? 'requestId' : 'taskToken'}`);
  }

  // d2. The capability token must be this request's. Read from the item itself (GetItem, strongly
  // consistent) rather than projected into the job id index: the secret is then stored once, and
  // existing tables need no index rebuild.
  if (callbackToken !== undefined) {
    const stored = await clients.dynamodb.send(new GetItemCommand({
      TableName: config.tableName,
      Key: { [CorrelationAttributes.REQUEST_ID]: { S: requestId } },
      ProjectionExpression: '#cbToken',
      ExpressionAttributeNames: { '#cbToken': CorrelationAttributes.CALLBACK_TOKEN },
      ConsistentRead: true,
    }));
    const expected = stored.Item?.[CorrelationAttributes.CALLBACK_TOKEN]?.S;
    if (!expected) {
      return reject(`the request of job id "${truncate(jobId, 200)}" has no callback token (dispatched without capability URLs?)`);
    }
    if (!tokensEqual(callbackToken, expected)) {
      return reject(`the callback token does not match the request of job id "${truncate(jobId, 200)}"`);
    }
  }

  // d3. Jobs in flight: the vendor's job has ended (succeeded or failed), so its place is free,
  // whether or not the workflow still waits (a late callback, after our timeout, frees it too: only
  // the vendor's end counts). Before the duplicate check and before resuming: a crash after it is
  // redelivered and frees nothing twice (releasePlace is idempotent). A place really freed wakes
  // one waiting request at once (shared/job-waiting.ts); a crash before the wake leaves it to the sweep.
  if (config.jobPlacesTableName) {
    const held = await releasePlaceAndWakeWaiter(
      { dynamodb: clients.dynamodb, tableName: config.jobPlacesTableName, owner: config.jobPlacesOwner },
      waitingRoomOf(config.jobWaiting, clients.sqs), requestId, logger,
    );
    if (held !== undefined) {
      metrics.addMetric(MetricNames.JOBS_IN_FLIGHT, 'Count', held);
      logger.info('Job ended: its place in flight is freed', { jobsInFlight: held });
    }
    // Per-key limits (issue 15): then the key's place, the key as the correlation item recorded it
    // (ClaimRequest writes it whenever per-key limits are on). Wakes nobody: a key's waiters recheck.
    if (config.freeKeyPlaces) {
      const key = await requestKeyOf(clients.dynamodb, config.tableName, requestId);
      if (key !== undefined) {
        await releaseKeyPlace({ dynamodb: clients.dynamodb, tableName: config.jobPlacesTableName, owner: config.jobPlacesOwner }, key, requestId);
      }
    }
  }

  // e. Already done: vendors may send a callback more than once, and SQS delivers at least once.
  if (status === RequestStatus.COMPLETED || status === RequestStatus.LATE) {
    logger.info('Duplicate callback ignored: the request is already finished', { status });
    metrics.addMetric(MetricNames.DUPLICATE_CALLBACKS, 'Count', 1);
    return;
  }

  // f. Resume the waiting workflow.
  const result = JSON.stringify({ jobId, result: body });
  const statusValue = config.statusPath ? getAtPath(body, config.statusPath) : undefined;
  // Only scalar statuses are compared: a missing or object status is not a listed failure value.
  const vendorFailed = isScalar(statusValue) && config.failureStatusValues.includes(String(statusValue));

  // Each branch sets the Step Functions call to make (the two commands do not fit one variable for `send`).
  let sendTaskResult: () => Promise<unknown>;
  let outcome: string;
  const maxOutputBytes = config.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const outputBytes = Buffer.byteLength(result, 'utf8');
  const maxPayloadBytes = config.maxPayloadBytes ?? Infinity;
  if (dropped) {
    // Authenticated by its capability token (or authentication is off): the workflow fails now.
    await park(ParkReasons.PAYLOAD_TOO_LARGE, `callback body of about ${droppedBytes} bytes was too large for the callback queue and was dropped at the webhook (answered 413)`);
    outcome = CALLBACK_TOO_LARGE_ERROR;
    sendTaskResult = () => clients.sfn.send(new SendTaskFailureCommand({
      taskToken,
      error: CALLBACK_TOO_LARGE_ERROR,
      cause: `The callback for job ${truncate(jobId, 1000)} has a body of about ${droppedBytes} bytes, too large for the callback queue: `
        + 'the webhook dropped the body and answered 413. The callback (without its body) was parked in the callback dead-letter queue.',
    }));
  } else if (rawBody.length > maxPayloadBytes) {
    // An authenticated callback over the webhook's limit: kept for a human, and the workflow fails
    // now rather than at its timeout.
    await park(ParkReasons.PAYLOAD_TOO_LARGE, `callback body is ${rawBody.length} bytes, over the webhook's maxPayloadSize of ${maxPayloadBytes} bytes`);
    outcome = CALLBACK_TOO_LARGE_ERROR;
    sendTaskResult = () => clients.sfn.send(new SendTaskFailureCommand({
      taskToken,
      error: CALLBACK_TOO_LARGE_ERROR,
      cause: `The callback for job ${truncate(jobId, 1000)} has a body of ${rawBody.length} bytes, over the webhook's maxPayloadSize of ${maxPayloadBytes} bytes. `
        + 'The callback was parked in the callback dead-letter queue.',
    }));
  } else if (vendorFailed) {
    // The cause is only for humans, so a too long one is cut rather than rejected.
    outcome = ErrorNames.VENDOR_JOB_FAILED;
    sendTaskResult = () => clients.sfn.send(new SendTaskFailureCommand({
      taskToken,
      error: ErrorNames.VENDOR_JOB_FAILED,
      cause: truncate(result, MAX_CAUSE_CHARS),
    }));
  } else if (outputBytes > maxOutputBytes) {
    // Step Functions would reject the output. Keep the callback in the DLQ for a human, and fail the
    // task so the workflow does not wait until its timeout for a callback that will never fit.
    // Parked first: if parking fails nothing has happened yet and the redelivery starts over.
    await park(ParkReasons.OUTPUT_TOO_LARGE, `task output is ${outputBytes} bytes, over the limit of ${maxOutputBytes} bytes`);
    outcome = CALLBACK_TOO_LARGE_ERROR;
    sendTaskResult = () => clients.sfn.send(new SendTaskFailureCommand({
      taskToken,
      error: CALLBACK_TOO_LARGE_ERROR,
      cause: `The callback for job ${truncate(jobId, 1000)} makes a task output of ${outputBytes} bytes, over the limit of ${maxOutputBytes} bytes. `
        + 'The callback was parked in the callback dead-letter queue.',
    }));
  } else {
    outcome = 'success';
    sendTaskResult = () => clients.sfn.send(new SendTaskSuccessCommand({ taskToken, output: result }));
  }

  try {
    await sendTaskResult();
  } catch (err) {
    // g. The workflow already ended: this callback is late. Final, never retried.
    if (FINAL_TASK_ERRORS.has((err as Error).name)) {
      logger.warn('Late callback: the waiting workflow has already ended', { error: (err as Error).name, detail: (err as Error).message });
      metrics.addMetric(MetricNames.LATE_CALLBACKS, 'Count', 1);
      await updateStatus(requestId, RequestStatus.LATE, clients, config, logger);
      return;
    }
    // i. Throttling, network...: rethrow so SQS redelivers.
    throw err;
  }
  const latencyMs = callbackLatencyMs(envelope, (deps.now ?? Date.now)());
  logger.info('Waiting workflow resumed', { outcome, ...(latencyMs === undefined ? {} : { latencyMs }) });
  // The request's key, when its capability token carries one (checked equal to the request's own
  // token above); otherwise unknown here: the job id index does not project the key.
  const requestKey = callbackToken !== undefined ? keyOfCallbackToken(callbackToken) : undefined;
  metrics.addMetric(MetricNames.CALLBACKS_RESOLVED, 'Count', 1, requestKey);
  if (latencyMs !== undefined) {
    metrics.addMetric(MetricNames.CALLBACK_LATENCY, 'Milliseconds', latencyMs, requestKey);
  }

  // h. Best effort: the workflow is resumed whatever happens here, and a redelivery would end as late.
  await updateStatus(requestId, RequestStatus.COMPLETED, clients, config, logger);
}

/**
 * Verifies the vendor's signature; returns why it is invalid, an `UnusableSecretError` when the
 * secret gives no usable key, or undefined. On a mismatch or an unusable secret the secret is read
 * again once (it may have been rotated or fixed) before the callback is refused.
 */
async function checkSignature(
  spec: SignatureSpec, rawBody: Buffer, envelope: CallbackEnvelope, deps: CallbackDeps, logger: CallbackLogger,
): Promise<string | UnusableSecretError | undefined> {
  const secrets = deps.signatureSecret;
  if (!secrets) {
    throw new Error('The callback processor is configured to verify signatures but has no signing secret');
  }
  let key = signingKey(spec, await secrets.get());
  if ('problem' in key && await secrets.refresh()) {
    key = signingKey(spec, await secrets.get());
  }
  if ('problem' in key) {
    return new UnusableSecretError(key.problem);
  }
  if (key.short) {
    warnShortKey(await secrets.get(), key.key.length, logger);
  }
  const headers = decodeHeaders(envelope.headers);
  // The replay window is measured when the callback reached the webhook, not when the record is
  // processed: a genuine callback may wait in the queue past the tolerance (an early callback's
  // backoff, a redelivery after a processor failure, a backlog, a redrive from the dead-letter
  // queue). The arrival time is API Gateway's ($context.requestTimeEpoch, written by the mapping
  // template), which a caller cannot set; without one, the processor's clock is the stricter choice.
  const arrivedAtSeconds = Math.floor((receivedAtMs(envelope) ?? (deps.now ?? Date.now)()) / 1000);
  const problem = verifySignature(spec, await secrets.get(), rawBody, headers, arrivedAtSeconds);
  if (problem && problem.includes('does not match') && await secrets.refresh()) {
    try {
      return verifySignature(spec, await secrets.get(), rawBody, headers, arrivedAtSeconds);
    } catch (err) {
      // The secret was rotated to an unusable one.
      if (err instanceof UnusableSecretError) return err;
      throw err;
    }
  }
  return problem;
}

/** SHA-256 digests of the secrets already warned about: one warning per secret and execution environment. */
const shortKeysWarned = new Set<string>();

function warnShortKey(secret: string, keyBytes: number, logger: CallbackLogger): void {
  const digest = createHash('sha256').update(secret).digest('hex');
  if (!shortKeysWarned.has(digest)) {
    shortKeysWarned.add(digest);
    logger.warn(`The signing secret gives a ${keyBytes}-byte HMAC key, under ${MIN_SIGNING_KEY_BYTES} bytes: a short key can be guessed. Use a random key of at least 32 bytes.`);
  }
}

/** API Gateway's arrival time of the callback, epoch ms, or undefined when the envelope has none usable. */
function receivedAtMs(envelope: CallbackEnvelope): number | undefined {
  const raw = envelope.receivedAtEpochMs;
  const value = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  return Number.isFinite(value) && value > 0 ? value : undefined;
}

/**
 * Webhook arrival (API Gateway's request time) to `nowMs`; undefined when the envelope has no usable
 * time. Never negative (the clocks of API Gateway and Lambda may disagree a little).
 */
function callbackLatencyMs(envelope: CallbackEnvelope, nowMs: number): number | undefined {
  const arrivedAtMs = receivedAtMs(envelope);
  return arrivedAtMs === undefined ? undefined : Math.max(0, nowMs - arrivedAtMs);
}

/** The job id the mapping template read from a dropped body (JSON), or undefined. */
function droppedJobId(envelope: CallbackEnvelope): unknown {
  if (typeof envelope.jobIdJsonBase64 !== 'string' || envelope.jobIdJsonBase64 === '') {
    return undefined;
  }
  try {
    return JSON.parse(Buffer.from(envelope.jobIdJsonBase64, 'base64').toString('utf8'));
  } catch {
    return undefined;
  }
}

/** Parses and validates the envelope; returns a description of the problem when it is invalid. */
function parseEnvelope(text: string): CallbackEnvelope | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return `record body is not JSON: ${(err as Error).message}`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `record body is not a JSON object: got ${describeValue(value)}`;
  }
  const envelope = value as Record<string, unknown>;
  if (envelope.v !== 1) {
    return `unsupported envelope version: v is ${describeValue(envelope.v)}, expected 1`;
  }
  // Buffer.from(..., 'base64') silently skips bad characters, so check the alphabet first.
  if (typeof envelope.bodyBase64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(envelope.bodyBase64)) {
    return `bodyBase64 is not a base64 string: got ${describeValue(envelope.bodyBase64)}`;
  }
  if (envelope.headers !== undefined && (typeof envelope.headers !== 'object' || envelope.headers === null || Array.isArray(envelope.headers))) {
    return `headers is not an object: got ${describeValue(envelope.headers)}`;
  }
  // The other fields are only used for logging: not worth losing a callback over.
  return value as CallbackEnvelope;
}

/**
 * Sends the original record body to the dead-letter queue with the reason; the record is then done.
 * A failure to park throws, so the record is redelivered rather than lost.
 */
async function parkRecord(
  record: SQSRecord,
  reason: ParkReason,
  detail: string,
  clients: CallbackClients,
  config: CallbackConfig,
  logger: CallbackLogger,
): Promise<void> {
  const shortDetail = truncate(detail, MAX_DETAIL_CHARS) || '(no detail)'; // SQS rejects empty attribute values
  await clients.sqs.send(new SendMessageCommand({
    QueueUrl: config.deadLetterQueueUrl,
    MessageBody: record.body,
    MessageAttributes: {
      reason: { DataType: 'String', StringValue: reason },
      detail: { DataType: 'String', StringValue: shortDetail },
    },
  }));
  logger.warn('Callback parked in the dead-letter queue', { reason, detail: shortDetail });
}

/**
 * Delays the record's next delivery: min(2^receiveCount, 300) seconds, plus a random 0..that, so
 * early callbacks of many jobs do not come back together. Returns the receive count.
 * Never throws: if the call fails the record still comes back after the queue's visibility timeout.
 */
async function delayRetry(record: SQSRecord, clients: CallbackClients, logger: CallbackLogger): Promise<number> {
  const receiveCount = Math.max(1, Number(record.attributes.ApproximateReceiveCount) || 1);
  const backoff = Math.min(2 ** receiveCount, MAX_BACKOFF_SECONDS);
  const visibilityTimeout = backoff + Math.floor(Math.random() * (backoff + 1));
  try {
    await clients.sqs.send(new ChangeMessageVisibilityCommand({
      QueueUrl: queueUrlFromArn(record.eventSourceARN),
      ReceiptHandle: record.receiptHandle,
      VisibilityTimeout: visibilityTimeout,
    }));
  } catch (err) {
    logger.error('Could not delay the retry of an early callback; it will come back after the queue\'s visibility timeout', err as Error);
  }
  return receiveCount;
}

/**
 * Sets the request's status. Conditional so that it never creates an item (the item may have expired)
 * and never turns COMPLETED into LATE (a concurrent duplicate may have resumed the workflow).
 * Never throws: the workflow's fate is already decided, only the bookkeeping failed.
 */
async function updateStatus(
  requestId: string,
  status: typeof RequestStatus.COMPLETED | typeof RequestStatus.LATE,
  clients: CallbackClients,
  config: CallbackConfig,
  logger: CallbackLogger,
): Promise<void> {
  try {
    await clients.dynamodb.send(new UpdateItemCommand({
      TableName: config.tableName,
      Key: { [CorrelationAttributes.REQUEST_ID]: { S: requestId } },
      UpdateExpression: 'SET #status = :status, #updatedAt = :updatedAt',
      ConditionExpression: 'attribute_exists(#requestId) AND #status <> :completed',
      ExpressionAttributeNames: {
        '#requestId': CorrelationAttributes.REQUEST_ID,
        '#status': CorrelationAttributes.STATUS,
        '#updatedAt': CorrelationAttributes.UPDATED_AT,
      },
      ExpressionAttributeValues: {
        ':status': { S: status },
        ':updatedAt': { S: new Date().toISOString() },
        ':completed': { S: RequestStatus.COMPLETED },
      },
    }));
  } catch (err) {
    if ((err as Error).name === 'ConditionalCheckFailedException') {
      logger.info(`Request status not set to ${status}: the item is gone or already ${RequestStatus.COMPLETED}`);
    } else {
      logger.error(`Could not set the request status to ${status}; the callback is still handled`, err as Error);
    }
  }
}

/**
 * The queue URL of an SQS ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`), for ChangeMessageVisibility.
 * Honours `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL` (local emulators) like the SDK does.
 */
export function queueUrlFromArn(arn: string, env: Record<string, string | undefined> = process.env): string {
  const url = sqsQueueUrl(arn, env.AWS_ENDPOINT_URL_SQS || env.AWS_ENDPOINT_URL);
  if (!url) {
    throw new Error(`Not an SQS queue ARN: "${arn}"`);
  }
  return url;
}

/** Cuts a string to at most `max` UTF-16 units, without splitting a surrogate pair. */
function truncate(text: string, max: number): string {
  if (text.length <= max) {
    return text;
  }
  const end = /[\uD800-\uDBFF]/.test(text[max - 1]) ? max - 1 : max;
  return text.slice(0, end);
}

function isScalar(value: unknown): value is string | number | boolean {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

function formatPath(segments: string[]): string {
  return '$' + segments.map((s) => (/^[0-9]+$/.test(s) ? `[${s}]` : `['${s}']`)).join('');
}

/** A short description of a value for error details, never the whole value. */
function describeValue(value: unknown): string {
  if (value === undefined) {
    return 'nothing';
  }
  const json = JSON.stringify(value) ?? String(value);
  return `${Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value} ${truncate(json, 100)}`;
}

/**
 * The key recorded in a request's correlation item (`requestKey`), undefined when it has none.
 * Read consistently: the item was written by the request's claim, long before its callback.
 */
async function requestKeyOf(dynamodb: DynamoDBClient, tableName: string, requestId: string): Promise<string | undefined> {
  const out = await dynamodb.send(new GetItemCommand({
    TableName: tableName,
    Key: { [CorrelationAttributes.REQUEST_ID]: { S: requestId } },
    ProjectionExpression: '#requestKey',
    ExpressionAttributeNames: { '#requestKey': CorrelationAttributes.REQUEST_KEY },
    ConsistentRead: true,
  }));
  return out.Item?.[CorrelationAttributes.REQUEST_KEY]?.S;
}
