/**
 * One invocation of the queue consumer: turns a batch of request messages into paced StartExecution
 * calls of the dispatch (Express) workflow. See `pacer.ts` for the pacing guarantee.
 *
 * Everything this module needs from the outside (clients, configuration, clock, logger, metrics) is
 * passed in, so tests drive it on fake time with mocked clients. `dispatcher.lambda.ts` is the thin
 * adapter.
 */
import { randomBytes } from 'crypto';
// This module is bundled into the dispatcher Lambda only; the construct library never imports it,
// so the SDK stays a devDependency (bundled by esbuild).
import type { Logger } from '@aws-lambda-powertools/logger';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SendTaskFailureCommand, type SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, type MessageAttributeValue, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent, SQSMessageAttributes, SQSRecord } from 'aws-lambda';
import { anyKeyLimited, HeldKeyCalls, KeyRound, prepareKeyRound } from './dispatch-keys';
import { limitedCallsOf, limitNamesOf } from './dispatch-limits';
import { HighPriorityQueueConfig, highPriorityQueueFromEnv, horizonRetryInMs, reservationHorizonMs, reservationMaxWaitMs } from './high-priority-queue';
import { admitJobs, JobsInFlightConfig, moveToWaiting, wakeWaitersForPlacesLeftByFullKeys } from './job-admission';
import { KEY_PLACE_TICKET_FIELD, setAsideForKeyPlaces } from './key-place-wake';
import { splitByKeyQuota } from './key-quota-check';
import { confirmKeySlots } from './key-schedule';
import { DEFAULT_KEY_RESERVATION_HORIZON_MS, KEY_TURN_FIELD, setAsideByKey } from './key-set-aside';
import { Clock, DEFAULT_LATENESS_TOLERANCE_MS, reserveSlots, SlotReservation, systemClock } from './pacer';
import { PacingSettingsSource, readPacingSettings, recordRateInForce } from './pacing-settings';
import { effectiveRankOf, orderByPriority } from './priority-order';
import { messageKeyProblem, refuseRequestKey } from './request-key-check';
import { messagePriorityProblem, refuseRequestPriority } from './request-priority-check';
import { isRequestStart, splitByQuotaWait, withRequestStart } from './request-start';
import { AdaptiveSpec, parseAdaptiveSpec } from '../contract/adaptive-spec';
import { NamedLimitSpec, parseNamedLimitSpecs } from '../contract/named-limit';
import { parseQuotaSpecs, quotaSpentUntilMs } from '../contract/quota-ledger';
import type { QuotaSpec } from '../contract/quota-period';
import { callbackTokenWithKey } from '../shared/callback-token-key';
import { ConsumerEnv } from '../shared/env';
import { SUBMISSION_WINDOW_MS } from '../shared/job-places';
import { waitingQueuesFromEnv, waitingRoomOf } from '../shared/job-waiting';
import type { KeyLimitsSource, KeyLimitsSpec } from '../shared/key-limits';
import { AnyRequestMessage, claimSequence, DispatchInput, ErrorNames, RequestMessage, VendorCallInput } from '../shared/messages';
import { MetricNames } from '../shared/metrics';
import { CountedLimitWaits, recordNamedLimitWaits } from '../shared/named-limit-metrics';
import { isRequestPriority } from '../shared/request-priority';
import { sqsQueueUrl } from '../shared/sqs-url';
import { isThrottlingError } from '../shared/throttling';
import { buildVendorCallInput, isVendorCallMessage, parseVendorCallMessage } from '../shared/vendor-call';

/** Where malformed request messages are parked. Not in `ConsumerEnv`; the construct sets it. */
export const DEAD_LETTER_QUEUE_URL_ENV = 'DEAD_LETTER_QUEUE_URL';
/** Value of the `reason` message attribute of parked messages. */
export const MALFORMED_REASON = 'MalformedRequestMessage';
/** Step Functions' limit on an execution's input (UTF-8 bytes). */
export const MAX_EXECUTION_INPUT_BYTES = 256 * 1024;
/** SQS' longest visibility timeout, in seconds (12 hours). */
const MAX_VISIBILITY_TIMEOUT_SECONDS = 43200;
/**
 * SQS' longest message delay (`DelaySeconds`), in seconds (15 minutes):
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html
 */
export const MAX_DELAY_SECONDS = 900;
/**
 * A StartExecution that Step Functions throttles is tried again inside its slot's start tolerance
 * (at most this many attempts in all), after a short jittered backoff from START_RETRY_BASE_MS,
 * doubling: Step Functions throttles API actions with a token bucket that refills every second
 * (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html, API action
 * throttling), so a token is usually back within a few hundred milliseconds. Returned to the queue
 * instead, the message would wait for its visibility timeout (six times the dispatcher's timeout,
 * at least 3 minutes) before it is dispatched again. A retry is never later than a first start may
 * be (the tolerance startPaced allows), so the rate guarantee is the same.
 */
const MAX_START_ATTEMPTS = 4;
const START_RETRY_BASE_MS = 50;
/**
 * How early a dispatcher waiting for a named limit wakes before the slot it will reserve (minus
 * the lead): time for the reservation's GetItem and UpdateItem (a few milliseconds on AWS).
 */
const LIMIT_WAKE_EARLY_MS = 50;
/**
 * Room kept in a keyed request's execution input for its key's limits (`keyLimits`, issue 15),
 * which are read after the size check: about 150 bytes with a few quotas; 1 KiB leaves room for
 * long quota names.
 */
const KEY_LIMITS_INPUT_RESERVE_BYTES = 1024;
/** How many postponing copies are sent at once. */
const POSTPONE_SEND_CONCURRENCY = 10;

export interface DispatchClients {
  readonly dynamodb: DynamoDBClient;
  /**
   * Must not retry on its own (`maxAttempts: 1`): an SDK retry of StartExecution would be a start
   * outside its pacing slot.
   */
  readonly sfn: SFNClient;
  readonly sqs: SQSClient;
}

export interface DispatchConfig {
  readonly stateMachineArn: string;
  /** The vendor-call workflow started for messages of kind `call`; absent: such messages are parked. */
  readonly callStateMachineArn?: string;
  /** The vendor's contracted rate `R`. */
  readonly requestsPerSecond: number;
  readonly pacerTableName: string;
  /** Longest an invocation waits for its pacing slots; later messages go back to the queue. */
  readonly maxPacingWaitMs: number;
  /** `L`: how late a start may be against its slot. */
  readonly latenessToleranceMs: number;
  /**
   * PacingPoint.VENDOR_CALL: each execution starts this long before its slot and carries the slot
   * (`slotAtMs`) to the vendor caller, which fires at it. 0: start at the slot (PacingPoint.DISPATCH).
   */
  readonly leadMs?: number;
  readonly correlationTtlSeconds: number;
  readonly deadLetterQueueUrl: string;
  /** SQS endpoint override (AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL), for queue URLs built from ARNs. */
  readonly sqsEndpointUrl?: string;
  /** The contract's jobs in flight (job-admission.ts). Absent: no limit. */
  readonly jobsInFlight?: JobsInFlightConfig;
  /** The contract's quotas (ConsumerEnv.QUOTAS): a spent one postpones the batch without slots. */
  readonly quotas?: QuotaSpec[];
  /** `FAIL`: a spent quota postpones nothing (ConsumerEnv.QUOTA_EXHAUSTED). Default WAIT. */
  readonly whenQuotaExhausted?: 'WAIT' | 'FAIL';
  /** Longest a request may wait for a quota, from its start (ConsumerEnv.QUOTA_MAX_WAIT_MS). Default: no bound. */
  readonly quotaMaxWaitMs?: number;
  /** The contract's named limits (ConsumerEnv.VENDOR_LIMITS): each slot respects its call's. */
  readonly limits?: NamedLimitSpec[];
  /** Adaptive pacing (ConsumerEnv.ADAPTIVE_PACING): reservations pace at the adaptive rate when lower. */
  readonly adaptivePacing?: AdaptiveSpec;
  /**
   * This orchestrator's key in a shared contract state (ConsumerEnv.SHARED_STATE_OWNER): keys its
   * drain lease and job places apart from the other orchestrators'. Absent: the pacer table is its own.
   */
  readonly stateOwner?: string;
  /** Every request needs a key (ConsumerEnv.REQUIRE_REQUEST_KEY: the vendor credential is per key). */
  readonly requireKey?: boolean;
  /** A keyed request's callback token carries its key (ConsumerEnv.CALLBACK_TOKEN_WITH_KEY: signing secrets per key). */
  readonly keyInCallbackToken?: boolean;
  /**
   * With per-key limits: how far past the lead a key's slots are reserved; a request whose key has
   * no slot by then is set aside (key-set-aside.ts). Default {@link DEFAULT_KEY_RESERVATION_HORIZON_MS}.
   */
  readonly keyReservationHorizonMs?: number;
  /** Issue 15: the high-priority request queue (high-priority-queue.ts). Absent: none. */
  readonly highPriorityQueue?: HighPriorityQueueConfig;
}

/** The logger methods used; Powertools' Logger fits. */
export type DispatchLogger = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/**
 * Where the custom metrics (`MetricNames` in `shared/metrics.ts`) are counted. Powertools' Metrics
 * fits; the Lambda adapter publishes what was added once per invocation.
 */
export interface DispatchMetrics {
  /** `key`: the request's key (issue 15), an EMF property of the value (shared/handler-metrics.ts). */
  addMetric(name: string, unit: 'Count' | 'Milliseconds', value: number, key?: string): void;
}

export interface DispatchDeps {
  readonly clients: DispatchClients;
  readonly config: DispatchConfig;
  readonly logger: DispatchLogger;
  readonly metrics: DispatchMetrics;
  /** Default: the real clock. */
  readonly clock?: Clock;
  /** Random source for the pacer's retry backoff. Default Math.random. */
  readonly random?: () => number;
  /** Operator's dynamic delay and rate in force, read before every reservation (pacing-settings.ts). */
  readonly dynamicDelay?: PacingSettingsSource;
  /** Per-key limits in force (issue 15, shared/key-limits.ts), read once per batch for the batch's keys; absent: no per-key limits. */
  readonly keyLimits?: KeyLimitsSource;
}

/**
 * Reads the handler's configuration once. Throws an error naming the first missing or invalid
 * variable, so a misconfigured function fails at cold start instead of on every message.
 */
export function loadConfig(env: Record<string, string | undefined>): DispatchConfig {
  const sqsEndpointUrl = nonEmpty(env.AWS_ENDPOINT_URL_SQS) ?? nonEmpty(env.AWS_ENDPOINT_URL);
  const callStateMachineArn = nonEmpty(env[ConsumerEnv.CALL_STATE_MACHINE_ARN]);
  const highPriorityQueue = highPriorityQueueFromEnv(env);
  return {
    stateMachineArn: requireString(env, ConsumerEnv.STATE_MACHINE_ARN),
    ...(callStateMachineArn ? { callStateMachineArn } : {}),
    requestsPerSecond: readNumber(env, ConsumerEnv.REQUESTS_PER_SECOND, undefined, (v) => v > 0, 'a number greater than 0'),
    pacerTableName: requireString(env, ConsumerEnv.PACER_TABLE_NAME),
    ...(nonEmpty(env[ConsumerEnv.SHARED_STATE_OWNER]) ? { stateOwner: nonEmpty(env[ConsumerEnv.SHARED_STATE_OWNER]) } : {}),
    maxPacingWaitMs: readNumber(env, ConsumerEnv.MAX_PACING_WAIT_MS, undefined, (v) => v >= 0, 'a number of milliseconds >= 0'),
    latenessToleranceMs: readNumber(
      env, ConsumerEnv.LATENESS_TOLERANCE_MS, DEFAULT_LATENESS_TOLERANCE_MS, (v) => v >= 0, 'a number of milliseconds >= 0',
    ),
    leadMs: readNumber(env, ConsumerEnv.PACING_LEAD_MS, 0, (v) => v >= 0, 'a number of milliseconds >= 0'),
    correlationTtlSeconds: readNumber(
      env, ConsumerEnv.CORRELATION_TTL_SECONDS, undefined, (v) => Number.isSafeInteger(v) && v > 0, 'a whole number of seconds > 0',
    ),
    deadLetterQueueUrl: requireString(env, DEAD_LETTER_QUEUE_URL_ENV),
    ...(sqsEndpointUrl ? { sqsEndpointUrl } : {}),
    ...(nonEmpty(env[ConsumerEnv.QUOTAS]) ? { quotas: parseQuotaSpecs(env[ConsumerEnv.QUOTAS], ConsumerEnv.QUOTAS) } : {}),
    ...(env[ConsumerEnv.QUOTA_EXHAUSTED]?.trim() === 'FAIL' ? { whenQuotaExhausted: 'FAIL' as const } : {}),
    ...(nonEmpty(env[ConsumerEnv.QUOTA_MAX_WAIT_MS]) ? {
      quotaMaxWaitMs: readNumber(env, ConsumerEnv.QUOTA_MAX_WAIT_MS, undefined, (v) => v >= 0, 'a number of milliseconds >= 0'),
    } : {}),
    ...(nonEmpty(env[ConsumerEnv.VENDOR_LIMITS]) ? { limits: parseNamedLimitSpecs(env[ConsumerEnv.VENDOR_LIMITS], ConsumerEnv.VENDOR_LIMITS) } : {}),
    ...(nonEmpty(env[ConsumerEnv.ADAPTIVE_PACING])
      ? { adaptivePacing: parseAdaptiveSpec(env[ConsumerEnv.ADAPTIVE_PACING], ConsumerEnv.ADAPTIVE_PACING) }
      : {}),
    ...(nonEmpty(env[ConsumerEnv.MAX_JOBS_IN_FLIGHT]) ? { jobsInFlight: loadJobsInFlightConfig(env) } : {}),
    ...(env[ConsumerEnv.REQUIRE_REQUEST_KEY] === 'true' ? { requireKey: true } : {}),
    ...(env[ConsumerEnv.CALLBACK_TOKEN_WITH_KEY] === 'true' ? { keyInCallbackToken: true } : {}),
    ...(highPriorityQueue ? { highPriorityQueue } : {}),
  };
}

function loadJobsInFlightConfig(env: Record<string, string | undefined>): JobsInFlightConfig {
  const positiveWhole = (v: number) => Number.isSafeInteger(v) && v > 0;
  return {
    maxJobsInFlight: readNumber(env, ConsumerEnv.MAX_JOBS_IN_FLIGHT, undefined, positiveWhole, 'a whole number > 0'),
    maxJobDurationMs: readNumber(env, ConsumerEnv.MAX_JOB_DURATION_MS, undefined, positiveWhole, 'a whole number of milliseconds > 0'),
    recheckMs: readNumber(env, ConsumerEnv.JOB_PLACE_RECHECK_MS, 2000, (v) => v >= 1000, 'a number of milliseconds >= 1000'),
    correlationTableName: requireString(env, ConsumerEnv.CORRELATION_TABLE_NAME),
    ...waitingQueuesFromEnv(env),
    ...(env[ConsumerEnv.KEY_PLACE_TICKETS]?.trim() === 'off' ? { keyPlaceTickets: false } : {}),
    ...(nonEmpty(env[ConsumerEnv.JOB_PLACE_SUBMISSION_WINDOW_MS]) ? {
      submissionWindowMs: readNumber(env, ConsumerEnv.JOB_PLACE_SUBMISSION_WINDOW_MS, undefined, (v) => v >= 0, 'a number of milliseconds >= 0'),
    } : {}),
  };
}

/** Outcome of {@link parseRequestMessage}. */
export type ParsedRequest =
  | { readonly ok: true; readonly message: AnyRequestMessage }
  | { readonly ok: false; readonly detail: string; readonly taskToken?: string };

/**
 * Validates a record body as a {@link RequestMessage}. On failure, `detail` lists every problem and
 * `taskToken` is the token if one could be read (to fail the waiting task).
 */
export function parseRequestMessage(body: string): ParsedRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (error) {
    return { ok: false, detail: `body is not valid JSON (${(error as Error).message})` };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { ok: false, detail: 'body is not a JSON object' };
  }
  const fields = parsed as Record<string, unknown>;
  // ---- vendor calls (callVendorTask): `kind` absent or 'submit' = a job submission ----
  if (fields.kind === 'call') {
    return parseVendorCallMessage(fields);
  }
  const problems: string[] = [];
  if (fields.kind !== undefined && fields.kind !== 'submit') {
    problems.push(`kind must be 'submit', 'call' or absent (given ${JSON.stringify(fields.kind)})`);
  }
  if (!isNonEmptyString(fields.taskToken)) {
    problems.push('taskToken must be a non-empty string');
  }
  if (!isNonEmptyString(fields.requestId)) {
    problems.push('requestId must be a non-empty string');
  }
  // payload may be any JSON value (null too), but it must be there: the vendor call sends it.
  if (!('payload' in fields)) {
    problems.push('payload is missing');
  }
  if (fields.attempt !== undefined && !(Number.isSafeInteger(fields.attempt) && (fields.attempt as number) >= 1)) {
    problems.push('attempt must be a positive integer when present');
  }
  if (problems.length > 0) {
    return {
      ok: false,
      detail: problems.join('; '),
      ...(isNonEmptyString(fields.taskToken) ? { taskToken: fields.taskToken } : {}),
    };
  }
  return { ok: true, message: parsed as RequestMessage };
}

/** The dispatch workflow's input for a message. */
export function buildDispatchInput(
  message: RequestMessage, nowMs: number, correlationTtlSeconds: number, slotAtMs?: number, keyInCallbackToken = false,
  keyLimits: KeyLimitsSpec | null = null,
): DispatchInput {
  const attempt = message.attempt ?? 1;
  return {
    requestId: message.requestId,
    taskToken: message.taskToken,
    payload: message.payload,
    attempt,
    expiresAt: Math.floor(nowMs / 1000) + correlationTtlSeconds,
    ...claimSequence(attempt, message.deferrals),
    message,
    ...(message.key !== undefined ? { key: message.key } : {}),
    // Issue 15: a retry or deferral rebuilds the message from the input, so the priority travels in it.
    ...(isRequestPriority(message.priority) ? { priority: message.priority } : {}),
    // ---- webhookauth: capability callback URL ----
    // Kept across retries (the re-enqueued message carries it); minted on the first dispatch.
    // Issue 15: with a signing secret per key, the token carries the key (callback-token-key.ts).
    callbackToken: isCallbackToken(message.callbackToken) ? message.callbackToken
      : keyInCallbackToken && message.key !== undefined ? callbackTokenWithKey(newCallbackToken(), message.key) : newCallbackToken(),
    // ---- end webhookauth ----
    ...(slotAtMs !== undefined ? { slotAtMs } : {}),
    requestStartedAtMs: isRequestStart(message.requestStartedAtMs) ? message.requestStartedAtMs : Math.floor(nowMs),
    // Issue 15: the key's limits in force, for the vendor caller (null: no per-key limits).
    keyLimits,
  };
}

// ---- webhookauth: capability callback URL ----
/** A new callback token: 256 bits from the CSPRNG, base64url (43 characters, URL-path safe). */
export function newCallbackToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Whether `value` has the shape of a token `newCallbackToken` made (with a key part: `callbackTokenWithKey`). */
export function isCallbackToken(value: unknown): value is string {
  return typeof value === 'string' && /^[A-Za-z0-9_-]{43}(\.[A-Za-z0-9_-]{2,172})?$/.test(value);
}
// ---- end webhookauth ----

/**
 * Execution name: the request id (characters outside `[A-Za-z0-9-_]` replaced by `_`, at most 60
 * characters) for finding executions by request, then the attempt and 8 random hex characters
 * so that a re-dispatch never collides with an earlier execution. At most 80 characters.
 */
export function executionName(requestId: string, attempt: number, randomHex: string = randomBytes(4).toString('hex')): string {
  const suffix = `-${attempt}-${randomHex}`;
  const prefix = requestId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, Math.min(60, 80 - suffix.length));
  return `${prefix}${suffix}`;
}

/**
 * Queue URL of an SQS event record's source queue (`arn:PARTITION:sqs:REGION:ACCOUNT:NAME`).
 * With an endpoint override (LocalStack and the like) the URL is `${endpoint}/${account}/${name}`.
 */
export function queueUrlFromArn(arn: string, endpointUrl?: string): string {
  const url = sqsQueueUrl(arn, endpointUrl);
  if (!url) {
    throw new Error(`not an SQS queue ARN: ${arn}`);
  }
  return url;
}

interface ValidRecord {
  readonly record: SQSRecord;
  readonly message: AnyRequestMessage;
  /** The limits in force of the request's key (issue 15), when the contract has per-key limits and the request a key. */
  readonly keyLimits?: KeyLimitsSpec;
}

/**
 * The workflow a message starts and its input: the dispatch workflow for a job submission, the
 * vendor-call workflow for a `call` (callVendorTask). Both are paced alike: a call is one request
 * to the vendor and counts against the contract.
 */
export function executionFor(
  message: AnyRequestMessage, nowMs: number, config: DispatchConfig, slotAtMs?: number, keyLimits?: KeyLimitsSpec,
): { readonly stateMachineArn: string; readonly input: DispatchInput | VendorCallInput } {
  if (isVendorCallMessage(message)) {
    if (config.callStateMachineArn === undefined) {
      throw new Error('vendor calls (kind \'call\') are not enabled on this consumer: no vendor-call workflow is configured');
    }
    return {
      stateMachineArn: config.callStateMachineArn,
      input: buildVendorCallInput(message, nowMs, config.correlationTtlSeconds, slotAtMs, keyLimits ?? null),
    };
  }
  return {
    stateMachineArn: config.stateMachineArn,
    input: buildDispatchInput(message, nowMs, config.correlationTtlSeconds, slotAtMs, config.keyInCallbackToken, keyLimits ?? null),
  };
}

/**
 * Handles one SQS batch: parks malformed messages, starts one dispatch execution per valid message
 * in its own pacing slot, and returns the messages to retry as batch item failures.
 * Never throws for a single message; infrastructure errors turn into batch item failures.
 */
export async function dispatchBatch(event: SQSEvent, deps: DispatchDeps): Promise<SQSBatchResponse> {
  const { config } = deps;
  const clock = deps.clock ?? systemClock;
  // Fixed once: slots (also re-reserved ones) must all fall before it, so the invocation ends in time.
  const deadline = clock.now() + config.maxPacingWaitMs;
  const failures: string[] = [];

  // 1. Parse everything first, so that the slots reserved match the messages that can be started.
  const valid: ValidRecord[] = [];
  const parking: Promise<void>[] = [];
  for (const record of event.Records) {
    const parsed = parseRequestMessage(record.body);
    const problem = parsed.ok ? oversizeProblem(parsed.message, clock.now(), config) : undefined;
    // Issue 15: a missing or invalid key fails the waiting task (InvalidRequestKey), nothing else.
    const keyProblem = parsed.ok ? messageKeyProblem(parsed.message, config.requireKey === true) : undefined;
    // ... and so does a priority read at run time that is not high, normal or low (InvalidRequestPriority).
    const priorityProblem = parsed.ok && keyProblem === undefined ? messagePriorityProblem(parsed.message) : undefined;
    if (parsed.ok && (keyProblem !== undefined || priorityProblem !== undefined)) {
      const refuse = keyProblem !== undefined ? refuseRequestKey : refuseRequestPriority;
      parking.push(refuse(parsed.message, (keyProblem ?? priorityProblem)!,
        (taskToken, error, cause) => deps.clients.sfn.send(new SendTaskFailureCommand({ taskToken, error, cause })), deps.logger).then((refused) => {
        if (!refused) {
          failures.push(record.messageId);
        }
      }));
    } else if (parsed.ok && problem === undefined) {
      // The request's start travels with it (request-start.ts): its quota deadline counts from it.
      valid.push(withRequestStart(parsed.message, record, clock.now()));
    } else {
      const rejected = parsed.ok
        ? { detail: problem!, taskToken: parsed.message.taskToken }
        : parsed;
      parking.push(park(record, rejected.detail, rejected.taskToken, deps).then((parked) => {
        // A message that could not be parked stays on the queue (and reaches the DLQ by redrive).
        if (parked) {
          deps.metrics.addMetric(MetricNames.PARKED_REQUESTS, 'Count', 1);
        } else {
          failures.push(record.messageId);
        }
      }));
    }
  }
  await Promise.all(parking);

  // 1a. Per-key limits (issue 15): each keyed request carries its key's limits in force, read once
  // per batch for the batch's distinct keys (the source caches them and never throws).
  if (deps.keyLimits && valid.length > 0) {
    valid.splice(0, valid.length, ...await withKeyLimits(valid, deps.keyLimits));
  }

  // 1b. A quota spent for its period (issue 14): nothing can reach the vendor before the period
  // ends, so no slot is reserved; the messages come back then (delayed copies, no receive counted).
  const quotaSpentUntil = valid.length > 0 ? await readQuotaSpentUntil(clock, deps) : undefined;
  if (quotaSpentUntil !== undefined) {
    // Only requests that may wait for the period: the others (FAIL, or a deadline before the period
    // ends) go on, and the vendor caller fails them at once with VendorQuotaExhausted.
    const { wait, goOn } = splitByQuotaWait(valid, quotaSpentUntil, config);
    failures.push(...await postponeAll(wait, quotaSpentUntil, clock, deps));
    if (goOn.length === 0) {
      return { batchItemFailures: failures.map((itemIdentifier) => ({ itemIdentifier })) };
    }
    valid.splice(0, valid.length, ...goOn);
  }

  // 1b'. A key out of its own quota (issue 15, key-quota-check.ts): only its requests are set aside
  // until its period ends; the batch's other keys go on.
  if (deps.keyLimits && config.quotas && config.quotas.length > 0 && valid.length > 0) {
    const keyQuota = await splitByKeyQuota(valid, {
      dynamodb: deps.clients.dynamodb,
      pacerTableName: config.pacerTableName,
      quotas: config.quotas,
      whenQuotaExhausted: config.whenQuotaExhausted,
      quotaMaxWaitMs: config.quotaMaxWaitMs,
      nowMs: clock.now(),
      logger: deps.logger,
    });
    for (const { items, untilMs } of keyQuota.aside) {
      failures.push(...await postponeAll(items, untilMs, clock, deps));
    }
    if (keyQuota.goOn.length === 0) {
      return { batchItemFailures: failures.map((itemIdentifier) => ({ itemIdentifier })) };
    }
    valid.splice(0, valid.length, ...keyQuota.goOn);
  }

  // 1c. Jobs in flight: a job submission needs a place before a slot is reserved for it; one
  // without is moved to the waiting queue (no receive spent) until a freed place wakes it
  // (shared/job-waiting.ts); without a waiting queue it rechecks as a delayed copy after `recheckMs`.
  let ready = valid;
  if (config.jobsInFlight) {
    const waitingRoom = waitingRoomOf(config.jobsInFlight, deps.clients.sqs);
    const admissionDeps = {
      dynamodb: deps.clients.dynamodb,
      sfn: deps.clients.sfn,
      pacerTableName: config.pacerTableName,
      stateOwner: config.stateOwner,
      config: config.jobsInFlight,
      waitingRoom,
      clock,
      logger: deps.logger,
      metrics: deps.metrics,
    };
    const admission = await admitJobs(valid, admissionDeps);
    ready = admission.admitted;
    const recheck = waitingRoom ? await moveToWaiting(admission.waiting, waitingRoom, (item) => ({
      body: item.record.body,
      attributes: copyMessageAttributes(item.record.messageAttributes),
      groupId: item.record.attributes.MessageGroupId,
    }), admissionDeps) : admission.waiting;
    failures.push(...await postponeAll(recheck, clock.now() + config.jobsInFlight.recheckMs, clock, deps));
    failures.push(...await postponeAll(admission.unknown, undefined, clock, deps));
    // Per-key places (issue 15): a key at its own limit is set aside, back on its ticket's estimate
    // (key-place-wake.ts), or after `recheckMs` with the ticket line off.
    failures.push(...config.jobsInFlight.keyPlaceTickets === false
      ? await postponeAll(admission.keyFull, clock.now() + config.jobsInFlight.recheckMs, clock, deps)
      : await setAsideForKeyPlaces(admission.keyFull, {
        contract: { dynamodb: deps.clients.dynamodb, tableName: config.pacerTableName, owner: config.stateOwner },
        placeSpanMs: config.jobsInFlight.maxJobDurationMs + (config.jobsInFlight.submissionWindowMs ?? SUBMISSION_WINDOW_MS),
        recheckMs: config.jobsInFlight.recheckMs,
        send: (item, delaySeconds, ticket) => sendAsideCopy(item, delaySeconds, deps, KEY_PLACE_TICKET_FIELD, ticket),
        onLineError: (key, error) => deps.logger.warn('could not take or read a key\'s ticket line; its requests recheck', { key, error }),
      }));
    await wakeWaitersForPlacesLeftByFullKeys(admission.keyFull.length, waitingRoom, admissionDeps);
  }

  // 2. Start the valid ones, each in its slot.
  const { notStarted, startFailures, nextFreeAtMs } = await startPaced(ready, deadline, clock, deps);
  failures.push(...startFailures);

  // 3. What did not get a slot comes back when the schedule has room again: as a delayed copy (the
  // original is then deleted as done), so that waiting never counts against maxReceiveCount.
  if (notStarted.length > 0) {
    failures.push(...await postponeAll(notStarted, nextFreeAtMs, clock, deps));
  }

  return { batchItemFailures: failures.map((itemIdentifier) => ({ itemIdentifier })) };
}

/** The records, each keyed one with its key's limits in force (`ValidRecord.keyLimits`). */
async function withKeyLimits(valid: ValidRecord[], source: KeyLimitsSource): Promise<ValidRecord[]> {
  const keys = [...new Set(valid.map((item) => item.message.key).filter((key): key is string => key !== undefined))];
  if (keys.length === 0) {
    return valid;
  }
  const limits = await source.limitsFor(keys);
  return valid.map((item) => {
    const keyLimits = item.message.key === undefined ? undefined : limits.get(item.message.key);
    return keyLimits === undefined ? item : { ...item, keyLimits };
  });
}

/**
 * Until when a quota is spent (quota-ledger.ts), or undefined. A failed read is ignored: the
 * vendor caller's conditional write keeps the quota whatever the dispatcher knows.
 */
async function readQuotaSpentUntil(clock: Clock, deps: DispatchDeps): Promise<number | undefined> {
  const quotas = deps.config.quotas;
  if (!quotas || quotas.length === 0) {
    return undefined;
  }
  try {
    const until = await quotaSpentUntilMs(deps.clients.dynamodb, deps.config.pacerTableName, quotas, clock.now());
    if (until !== undefined) {
      deps.logger.info('a quota is spent for its period: the batch is postponed until it ends, without pacing slots', { untilMs: until });
    }
    return until;
  } catch (error) {
    deps.logger.warn('could not read the quota counters; dispatching (the vendor caller keeps the quota)', { error: (error as Error).message });
    return undefined;
  }
}

interface PacedOutcome {
  /** Messages that got no usable slot before the deadline. */
  readonly notStarted: ValidRecord[];
  /** Message ids whose StartExecution failed. */
  readonly startFailures: string[];
  /** When the schedule has room again; undefined when unknown (the pacer could not be read). */
  readonly nextFreeAtMs: number | undefined;
}

async function startPaced(valid: ValidRecord[], deadline: number, clock: Clock, deps: DispatchDeps): Promise<PacedOutcome> {
  const { config, logger } = deps;
  // Every message is ready from here on: its PacingWait is measured from this moment to its start,
  // so time lost to given-up slots counts too.
  const readyAtMs = clock.now();
  // Issue 15: the slots go to higher effective priority first, then to the oldest (priority-order.ts).
  const pending = orderByPriority(valid, readyAtMs);
  const inFlight: Promise<string | undefined>[] = [];
  const lead = config.leadMs ?? 0;
  // Each slot with the message it goes to: in order without named limits; with them, the pacer
  // may give a slot to a later message whose limits have room (named-limit-schedule.ts).
  let slots: { slot: number; item: ValidRecord }[] = [];
  let nextFreeAtMs: number | undefined;
  // When the waiting messages' named limits have room (after a reservation they stopped): the next
  // reservation asks for no slot before it, so that it is not lost to the reservation's own latency.
  let limitedUntilMs = 0;
  const countedLimitWaits: CountedLimitWaits = new Map();
  // Per-key limits (key-schedule.ts, key-set-aside.ts): requests set aside as delayed copies, sent
  // while the others are paced; resolve to the message ids that stay on the queue.
  const settingAside: Promise<string[]>[] = [];
  // This invocation's key plans (key-set-aside.ts) do not hold back its own later rounds.
  const planOwner = randomBytes(6).readUIntBE(0, 6);
  // The keyed calls an earlier round kept: later rounds hold them (key-set-aside.ts `splitByKeyHorizon`).
  const held = new HeldKeyCalls<ValidRecord>();
  // With a high-priority queue, a batch from another queue reserves in rounds a short horizon ahead
  // (high-priority-queue.ts); undefined: up to the deadline.
  const horizonMs = reservationHorizonMs(valid.map((item) => item.record), config.highPriorityQueue);

  while (pending.length > 0 || slots.length > 0) {
    if (slots.length === 0) {
      let reservation: SlotReservation;
      let keyRound: KeyRound<ValidRecord> | undefined;
      try {
        if (anyKeyLimited(pending)) {
          keyRound = await keyRoundOf(pending, clock, deps, planOwner, readyAtMs, held);
          keyRound.keep.forEach((item) => held.add(item));
          settingAside.push(setAsideRecords(keyRound, clock, deps, planOwner));
          pending.splice(0, pending.length, ...keyRound.keep);
          if (pending.length === 0) {
            break;
          }
        }
        // The operators' delay and rate in force (at most the contract), as the vendor caller reads them.
        const settings = await readPacingSettings(deps.dynamicDelay);
        if (deps.dynamicDelay) {
          // Only where operators can change it: otherwise it is the contract, a constant.
          recordRateInForce(deps.metrics, config.requestsPerSecond, settings);
        }
        reservation = await reserveSlots({
          ...settings,
          dynamodb: deps.clients.dynamodb,
          tableName: config.pacerTableName,
          requested: pending.length,
          requestsPerSecond: config.requestsPerSecond,
          latenessToleranceMs: config.latenessToleranceMs,
          maxWaitMs: reservationMaxWaitMs(clock.now(), deadline, lead, horizonMs),
          clock,
          random: deps.random,
          // VENDOR_CALL: no slot sooner than the lead, so that the execution can start `lead` before it.
          minLeadMs: lead,
          ...(limitedUntilMs > 0 ? { notBeforeMs: limitedUntilMs } : {}),
          ...limitedCallsOf(pending, config.limits),
          ...(keyRound?.externalLimits ? { externalLimits: keyRound.externalLimits, rereadExternalLimits: keyRound.rereadExternalLimits } : {}),
          adaptivePacing: config.adaptivePacing,
        });
        limitedUntilMs = 0;
        // Each message once per limit, however many reservations held it back (named-limit-metrics.ts).
        recordNamedLimitWaits(deps.metrics, reservation, pending.map((item) => item.record.messageId), countedLimitWaits);
        if (reservation.effectiveRequestsPerSecond !== undefined) {
          deps.metrics.addMetric(MetricNames.EFFECTIVE_RATE, 'Count', reservation.effectiveRequestsPerSecond);
        }
      } catch (error) {
        // Without a slot nothing may start; the messages return after their visibility timeout.
        logger.error('pacing slot reservation failed; the remaining messages return to the queue', {
          remaining: pending.length, error,
        });
        nextFreeAtMs = undefined;
        break;
      }
      nextFreeAtMs = Math.max(reservation.nextFreeAtMs, reservation.limitedUntilMs ?? 0);
      if (reservation.slots.length === 0) {
        // Only named limits are full (the contract has room): wait for them if that fits before
        // the deadline, without taking a contract slot meanwhile (named-limit-schedule.ts).
        if (reservation.limitedUntilMs !== undefined && reservation.limitedUntilMs <= deadline) {
          // Woken a little early, the reservation's own round trip does not delay the slot.
          limitedUntilMs = reservation.limitedUntilMs;
          await clock.sleep(Math.max(1, limitedUntilMs - lead - LIMIT_WAKE_EARLY_MS - clock.now()));
          continue;
        }
        // Within its horizon the schedule is taken: reserve again when the next free slot enters it.
        const retryInMs = horizonRetryInMs(clock.now(), nextFreeAtMs, deadline, lead, horizonMs);
        if (retryInMs !== undefined) {
          await clock.sleep(retryInMs);
          continue;
        }
        break;
      }
      const given = keyRound
        // A keyed call fires only once its key's write succeeded (key-schedule.ts).
        ? await confirmRecordKeySlots(pending, reservation, keyRound, deps)
        : reservation.slots.map((slot, k) => ({ slot, item: pending[reservation.callIndexes?.[k] ?? k] }));
      slots = given;
      pending.splice(0, pending.length, ...pending.filter((item) => !given.some((g) => g.item === item)));
      if (slots.length === 0) {
        // Every key write lost (key-schedule.ts): reserve again for the calls left.
        continue;
      }
    }

    const { slot, item } = slots.shift()!;
    // VENDOR_CALL: the execution starts `lead` before the slot; the vendor caller fires at the slot.
    const startAt = slot - lead;
    const waitMs = Math.max(0, startAt - clock.now());
    logger.debug('waiting for pacing slot', {
      requestId: item.message.requestId, messageId: item.record.messageId, slotAtMs: slot, waitMs,
    });
    if (waitMs > 0) {
      await clock.sleep(waitMs);
    }
    const lateByMs = clock.now() - startAt;
    // With a lead the vendor caller enforces the slot (it gives late slots up itself): a start may
    // then be late by up to half the lead. Without one, the start is the paced event.
    const startTolerance = lead > 0 ? Math.max(config.latenessToleranceMs, lead / 2) : config.latenessToleranceMs;
    if (lateByMs > startTolerance) {
      // Starting now could break the rate guarantee (see pacer.ts). The rest of this reservation
      // is at least as stale, so give it all up and reserve afresh for the remaining messages.
      const slotsGivenUp = slots.length + 1;
      logger.warn('missed pacing slot; reserving new slots', {
        requestId: item.message.requestId,
        messageId: item.record.messageId,
        slotAtMs: slot,
        lateByMs,
        slotsGivenUp,
      });
      deps.metrics.addMetric(MetricNames.SLOTS_GIVEN_UP, 'Count', slotsGivenUp);
      // The messages of the given-up slots wait again, first.
      pending.unshift(item, ...slots.map((given) => given.item));
      slots = [];
      continue;
    }
    // Not awaited: the next slot may come before this call returns. The call is issued now, inside
    // its slot; its outcome is collected below.
    inFlight.push(startExecution(item, slot, readyAtMs, clock, deps, startAt + startTolerance));
  }

  const startFailures = (await Promise.all(inFlight)).filter((id): id is string => id !== undefined);
  startFailures.push(...(await Promise.all(settingAside)).flat());
  return { notStarted: pending, startFailures, nextFreeAtMs };
}

/** Reads the waiting records' keys and splits them by the key horizon (dispatch-keys.ts). */
function keyRoundOf(
  pending: ValidRecord[], clock: Clock, deps: DispatchDeps, planOwner: number, readyAtMs: number, held: HeldKeyCalls<ValidRecord>,
): Promise<KeyRound<ValidRecord>> {
  const { config } = deps;
  return prepareKeyRound(pending, deps.clients.dynamodb, config.pacerTableName, {
    nowMs: clock.now(), leadMs: config.leadMs ?? 0, latenessToleranceMs: config.latenessToleranceMs, planOwner,
  }, config.keyReservationHorizonMs ?? DEFAULT_KEY_RESERVATION_HORIZON_MS,
  // Turns by key within each priority (pending is in priority order: priority-order.ts, same time).
  (item) => effectiveRankOf(item, readyAtMs), held);
}

/** Sets aside the records of a key round whose key had no slot within the horizon (key-set-aside.ts). */
async function setAsideRecords(round: KeyRound<ValidRecord>, clock: Clock, deps: DispatchDeps, planOwner: number): Promise<string[]> {
  for (const item of round.aside) {
    deps.metrics.addMetric(MetricNames.KEY_SET_ASIDE, 'Count', 1, item.message.key);
  }
  return setAsideByKey(round.aside, {
    dynamodb: deps.clients.dynamodb,
    tableName: deps.config.pacerTableName,
    timing: { nowMs: clock.now(), leadMs: deps.config.leadMs ?? 0, latenessToleranceMs: deps.config.latenessToleranceMs, planOwner },
    cursors: round.cursors,
    keptPerKey: round.keptPerKey,
    send: async (item, delaySeconds, turnAtMs) => {
      // The key's backlog: the time set aside, copy or hidden alike (key-insights.ts, Little's law).
      deps.metrics.addMetric(MetricNames.KEY_SET_ASIDE_DELAY, 'Milliseconds', delaySeconds * 1000, item.message.key);
      // The copy carries the slot it is meant for: back, it keeps its turn (key-set-aside.ts).
      return sendAsideCopy(item, delaySeconds, deps, KEY_TURN_FIELD, turnAtMs);
    },
    onCursorError: (key, error) => deps.logger.warn('could not write a key\'s set-aside cursor; delays come from its slot cursor', { key, error }),
  });
}

/**
 * Sends a set-aside copy back after `delaySeconds`, with `field: value` set in its body when a value
 * is given; if that fails, hides the message itself instead and resolves to its id (it stays on the queue).
 */
async function sendAsideCopy(
  item: ValidRecord, delaySeconds: number, deps: DispatchDeps, field: string, value: number | undefined,
): Promise<string | undefined> {
  const body = value === undefined ? undefined : JSON.stringify({ ...JSON.parse(item.record.body), [field]: value });
  if (await sendDelayedCopy(item, delaySeconds, deps, body)) {
    return undefined;
  }
  await hide(item, delaySeconds, deps);
  return item.record.messageId;
}

/** The slots of a reservation whose key writes succeeded, each with its record (key-schedule.ts). */
async function confirmRecordKeySlots(
  pending: ValidRecord[], reservation: SlotReservation, round: KeyRound<ValidRecord>, deps: DispatchDeps,
): Promise<{ slot: number; item: ValidRecord }[]> {
  const { config } = deps;
  const confirmed = await confirmKeySlots({
    dynamodb: deps.clients.dynamodb,
    tableName: config.pacerTableName,
    latenessToleranceMs: config.latenessToleranceMs,
    calls: pending,
    slots: reservation.slots,
    callIndexes: reservation.callIndexes ?? reservation.slots.map((_, k) => k),
    cursors: round.cursors,
    namedLimitsOf: (item) => (config.limits ? limitNamesOf(item.message, config.limits) : []),
    onWriteError: (key, error) => deps.logger.error('a key\'s slot write failed; its calls do not fire in these slots', { key, error }),
  });
  if (confirmed.wasted > 0) {
    deps.metrics.addMetric(MetricNames.KEY_SLOTS_WASTED, 'Count', confirmed.wasted);
  }
  return confirmed.given;
}

/**
 * Starts the dispatch execution of one message. Resolves to the message id when it failed.
 * Counts the call as dispatched whatever its outcome: it was issued, inside its slot.
 * A throttled start is tried again while it is still on time (until `latestStartMs`, see
 * MAX_START_ATTEMPTS); any other failure returns the message to the queue at once.
 */
async function startExecution(
  item: ValidRecord, slot: number, readyAtMs: number, clock: Clock, deps: DispatchDeps, latestStartMs: number,
): Promise<string | undefined> {
  const { config, logger, metrics } = deps;
  const now = clock.now();
  const { stateMachineArn, input } = executionFor(item.message, now, config, slot, item.keyLimits);
  const name = executionName(item.message.requestId, input.attempt);
  const log = {
    requestId: item.message.requestId,
    messageId: item.record.messageId,
    attempt: input.attempt,
    executionName: name,
  };
  metrics.addMetric(MetricNames.DISPATCHED_REQUESTS, 'Count', 1, item.message.key);
  metrics.addMetric(MetricNames.PACING_WAIT, 'Milliseconds', Math.max(0, now - readyAtMs), item.message.key);
  for (let startAttempt = 1; ; startAttempt++) {
    try {
      const output = await deps.clients.sfn.send(new StartExecutionCommand({
        stateMachineArn,
        name,
        input: JSON.stringify(input),
      }));
      logger.info('started dispatch execution', {
        ...log, executionArn: output.executionArn, slotAtMs: slot, lateByMs: clock.now() - (slot - (config.leadMs ?? 0)), startAttempt,
      });
      return undefined;
    } catch (error) {
      // Equal jitter: half the backoff fixed, half random, so throttled starts do not come back together.
      const backoffMs = START_RETRY_BASE_MS * 2 ** (startAttempt - 1) * (0.5 + (deps.random ?? Math.random)() / 2);
      if (isThrottlingError(error) && startAttempt < MAX_START_ATTEMPTS && clock.now() + backoffMs <= latestStartMs) {
        logger.warn('StartExecution throttled; trying again within the slot\'s start tolerance', { ...log, startAttempt, backoffMs });
        await clock.sleep(backoffMs);
        continue;
      }
      // The slot is wasted, never reused later: a late start could break the rate guarantee.
      logger.error('StartExecution failed; the message returns to the queue', { ...log, startAttempt, error });
      return item.record.messageId;
    }
  }
}

/** Sends a message that can never be dispatched to the DLQ, then fails its waiting task. */
async function park(record: SQSRecord, detail: string, taskToken: string | undefined, deps: DispatchDeps): Promise<boolean> {
  const { config, logger } = deps;
  const log = { messageId: record.messageId, detail };
  try {
    await deps.clients.sqs.send(new SendMessageCommand({
      QueueUrl: config.deadLetterQueueUrl,
      MessageBody: record.body,
      MessageAttributes: {
        reason: { DataType: 'String', StringValue: MALFORMED_REASON },
        detail: { DataType: 'String', StringValue: truncate(detail, 1024) },
      },
    }));
  } catch (error) {
    logger.error('could not park malformed request message; it stays on the queue', { ...log, error });
    return false;
  }
  logger.warn('parked malformed request message in the dead-letter queue', log);

  if (taskToken !== undefined) {
    // Best effort: the main workflow would otherwise wait until its timeout. The token may be
    // garbage or the task already closed; neither is worth a retry.
    try {
      await deps.clients.sfn.send(new SendTaskFailureCommand({
        taskToken,
        error: ErrorNames.VENDOR_REQUEST_FAILED,
        cause: truncate(`malformed request message: ${detail}`, 32768),
      }));
    } catch (error) {
      logger.warn('could not fail the waiting task of a malformed message (ignored)', { ...log, error });
    }
  }
  return true;
}

/**
 * Postpones messages that got no pacing slot. Resolves to the message ids that stay on the queue
 * (batch item failures); every other message was re-sent and may be deleted.
 *
 * Why a copy, not ChangeMessageVisibility: every receive of a message raises its
 * `ApproximateReceiveCount`, which a visibility change never resets, and SQS moves the message to
 * the dead-letter queue once the count exceeds the redrive policy's `maxReceiveCount`
 * (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html,
 * `ApproximateReceiveCount` in
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html).
 * Hiding the same message again and again during a long vendor pause or a full schedule would thus
 * park a request that was never sent, without failing its waiting workflow. A copy sent with
 * `DelaySeconds` starts at receive count 0; waiting for room costs no receive.
 *
 * The copy is the original body (with the request's start stamped in once, request-start.ts): same `attempt` and `deferrals`, hence the same claim
 * sequence (`DispatchInput.claimSeq`). If the invocation dies after the send and before the
 * original is deleted, both come back; the dispatch workflow's ClaimRequest lets exactly one of them
 * claim the request (a claim needs a sequence above the stored one), so the vendor is called once.
 *
 * When the schedule's next free slot is unknown (the reservation failed: DynamoDB errors or lost
 * races), or the copy cannot be sent, the message itself is hidden for a while instead and counts a
 * receive: a failure that lasts must end in the dead-letter queue (and its alarm), not loop forever.
 */
async function postponeAll(items: ValidRecord[], nextFreeAtMs: number | undefined, clock: Clock, deps: DispatchDeps): Promise<string[]> {
  if (nextFreeAtMs === undefined) {
    // Comes back in 1-5 s (jittered), not after the queue's long visibility timeout.
    await Promise.all(items.map((item) => hide(item, 1 + Math.floor((deps.random ?? Math.random)() * 5), deps)));
    return items.map((item) => item.record.messageId);
  }
  const stay: string[] = [];
  for (let i = 0; i < items.length; i += POSTPONE_SEND_CONCURRENCY) {
    await Promise.all(items.slice(i, i + POSTPONE_SEND_CONCURRENCY).map(async (item) => {
      // Computed per message: the sends take time too.
      const waitSeconds = Math.max(0, Math.ceil((nextFreeAtMs - clock.now()) / 1000));
      if (!await sendDelayedCopy(item, Math.min(MAX_DELAY_SECONDS, waitSeconds), deps)) {
        await hide(item, Math.min(MAX_VISIBILITY_TIMEOUT_SECONDS, waitSeconds), deps);
        stay.push(item.record.messageId);
      }
    }));
  }
  return stay;
}

/**
 * Sends a copy of a postponed message to its queue, visible after `delaySeconds` (at most 15
 * minutes: a longer wait takes several copies, each one receive). Resolves to whether it was sent.
 * `body`: the copy's body when it differs from the record's.
 */
async function sendDelayedCopy(item: ValidRecord, delaySeconds: number, deps: DispatchDeps, body: string = item.record.body): Promise<boolean> {
  const log = { requestId: item.message.requestId, messageId: item.record.messageId };
  try {
    const attributes = copyMessageAttributes(item.record.messageAttributes);
    // A message group (the tenant of an SQS fair queue) stays with the request.
    const groupId = item.record.attributes.MessageGroupId;
    const sent = await deps.clients.sqs.send(new SendMessageCommand({
      QueueUrl: queueUrlFromArn(item.record.eventSourceARN, deps.config.sqsEndpointUrl),
      MessageBody: body,
      DelaySeconds: delaySeconds,
      ...(attributes ? { MessageAttributes: attributes } : {}),
      ...(groupId ? { MessageGroupId: groupId } : {}),
    }));
    deps.logger.info('no pacing slot before the deadline; message postponed as a delayed copy', {
      ...log, copyMessageId: sent.MessageId, delaySeconds,
    });
    return true;
  } catch (error) {
    deps.logger.warn('could not send the postponing copy; the message itself is hidden instead', { ...log, error });
    return false;
  }
}

/** Hides a message (it stays on the queue: one more receive). Errors are logged only. */
async function hide(item: ValidRecord, seconds: number, deps: DispatchDeps): Promise<void> {
  const log = { requestId: item.message.requestId, messageId: item.record.messageId };
  try {
    await deps.clients.sqs.send(new ChangeMessageVisibilityCommand({
      QueueUrl: queueUrlFromArn(item.record.eventSourceARN, deps.config.sqsEndpointUrl),
      ReceiptHandle: item.record.receiptHandle,
      VisibilityTimeout: seconds,
    }));
    deps.logger.info('message hidden until the schedule may have room', { ...log, visibilityTimeoutSeconds: seconds });
  } catch (error) {
    deps.logger.warn('could not postpone the message; it returns after its visibility timeout', { ...log, error });
  }
}

/** A record's message attributes (Lambda's camelCase, binary base64) as SendMessage takes them. */
export function copyMessageAttributes(attributes: SQSMessageAttributes | undefined): Record<string, MessageAttributeValue> | undefined {
  const entries = Object.entries(attributes ?? {}).map(([name, value]): [string, MessageAttributeValue] => [name, {
    DataType: value.dataType,
    ...(value.stringValue !== undefined ? { StringValue: value.stringValue } : {}),
    ...(value.binaryValue !== undefined ? { BinaryValue: Buffer.from(value.binaryValue, 'base64') } : {}),
  }]);
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}

/**
 * A message whose execution input would exceed Step Functions' limit can never be started
 * (the input carries the payload twice), so it is parked rather than retried forever.
 */
function oversizeProblem(message: AnyRequestMessage, nowMs: number, config: DispatchConfig): string | undefined {
  let input: unknown;
  try {
    input = executionFor(message, nowMs, config).input;
  } catch (error) {
    return (error as Error).message;
  }
  // A keyed request's input also carries its key's limits, read after this check (issue 15): room for them.
  const bytes = Buffer.byteLength(JSON.stringify(input), 'utf8') + (message.key !== undefined ? KEY_LIMITS_INPUT_RESERVE_BYTES : 0);
  return bytes > MAX_EXECUTION_INPUT_BYTES
    ? `dispatch input would be ${bytes} bytes, over the ${MAX_EXECUTION_INPUT_BYTES}-byte Step Functions limit`
    : undefined;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 3)}...`;
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function requireString(env: Record<string, string | undefined>, name: string): string {
  const value = nonEmpty(env[name]);
  if (value === undefined) {
    throw new Error(`Environment variable ${name} is required but not set`);
  }
  return value;
}

function readNumber(
  env: Record<string, string | undefined>,
  name: string,
  defaultValue: number | undefined,
  isValid: (value: number) => boolean,
  expected: string,
): number {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) {
    if (defaultValue === undefined) {
      throw new Error(`Environment variable ${name} is required but not set (expected ${expected})`);
    }
    return defaultValue;
  }
  const value = Number(raw);
  if (!Number.isFinite(value) || !isValid(value)) {
    throw new Error(`Environment variable ${name} must be ${expected}, got ${JSON.stringify(raw)}`);
  }
  return value;
}
