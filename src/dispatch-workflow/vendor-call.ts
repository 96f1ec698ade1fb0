/**
 * The vendor caller: makes one paced HTTP request to the vendor through the ThrottledProxy, at its
 * pacing slot (see `rate-controlled-queue-consumer/pacer.ts` for the guarantee).
 *
 * The dispatch workflow invokes it with the slot `slotAtMs` the dispatcher reserved (the execution
 * was started `lead` before it). The caller
 *
 * 1. takes the given slot when it is still on time (`now <= slotAtMs + fireTolerance`), else gives
 *    it up and reserves a fresh one in the same shared schedule;
 * 2. shortly before the slot re-reads the vendor's pause (consistent read) and never fires inside
 *    it: a slot that falls in a pause is given up and a new one reserved after the pause;
 * 3. fires the SigV4-signed request at the slot, or gives the slot up when it woke up too late;
 * 4. on a 429 (the vendor's or the proxy's), pauses every dispatcher and caller for Retry-After
 *    (capped) or a default pause, then fails with `ApiGateway.429` (the workflow retries through
 *    the paced queue with backoff);
 * 5. when no slot fits its wait budget (a long pause or a full schedule), answers
 *    `{ requeue: { delaySeconds } }` instead of waiting: the workflow puts the request back on the
 *    queue without counting an attempt.
 *
 * No SDK retry, no HTTP retry here: a retried request would be a call outside its slot.
 * Everything from the outside (clients, clock, signer, fetch) is passed in; `vendor-caller.lambda.ts`
 * is the thin adapter.
 */
import { randomBytes } from 'node:crypto';
// This module is bundled into the vendor caller Lambda only; the construct library never imports
// it, so the SDK stays a devDependency (bundled by esbuild).
import type { Logger } from '@aws-lambda-powertools/logger';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
// A dependency of every AWS SDK v3 client (pinned by the lockfile), used here to sign plain HTTP
// requests to the proxy with the function's role.
import { SignatureV4 } from '@smithy/signature-v4';
import { confirmFreshKeySlot, keyedRequestOf, readFreshKeyLimit, readKeyPausedUntil } from './fresh-key-slot';
import { freshSlotLimits } from './fresh-slot-limits';
import { PreparedRequest, PrepareRequest } from './prepared-request';
import { AdaptiveSpec, parseAdaptiveSpec } from '../contract/adaptive-spec';
import { keyQuotaCounterKey, keyQuotaSpecs } from '../contract/key-quota-ledger';
import { NamedLimitSpec, parseNamedLimitSpecs } from '../contract/named-limit';
import { parseQuotaSpecs, QUOTA_BOUNDARY_GUARD_MS, spendQuotaUnits } from '../contract/quota-ledger';
import type { QuotaSpec } from '../contract/quota-period';
import { decreaseAdaptiveRate } from '../rate-controlled-queue-consumer/adaptive-rate';
import { pauseKeyUntil } from '../rate-controlled-queue-consumer/key-schedule';
import { claimSlot, Clock, pauseUntil, readPausedUntil, reserveSlots, systemClock } from '../rate-controlled-queue-consumer/pacer';
import { PacingSettingsSource, readPacingSettings } from '../rate-controlled-queue-consumer/pacing-settings';

import { VendorCallerEnv } from '../shared/env';
import type { KeyLimitsSpec } from '../shared/key-limits';
import { ErrorNames } from '../shared/messages';
import { MetricNames, quotaUsedMetricName, quotaUsedPercentMetricName } from '../shared/metrics';
import { CountedLimitWaits, recordNamedLimitWaits } from '../shared/named-limit-metrics';
import { NodeSha256 } from '../shared/node-sha256';

/** What the dispatch workflow sends. */
export interface VendorCallEvent {
  /** HTTP method. Default POST. */
  readonly method?: string;
  /** Path below the proxy's stage URL, e.g. `jobs/42/result`. Default: the stage root. */
  readonly path?: string;
  /** Query string parameters (a list repeats the parameter). */
  readonly query?: Record<string, string | string[]>;
  /** Request headers; array values are joined with `, `. */
  readonly headers?: Record<string, string | string[]>;
  /** Body: sent as JSON (a string is sent as is). Absent: no body. */
  readonly body?: unknown;
  /** For the logs. */
  readonly requestId?: string;
  /** The request's key (issue 15), for the logs; sent with a credential per key. */
  readonly key?: string;
  /** The pacing slot reserved by the dispatcher, epoch ms. Absent: the caller reserves one. */
  readonly slotAtMs?: number;
  /**
   * When the request's first message reached the request queue, epoch ms (the dispatcher stamps it,
   * request-start.ts): its quota deadline (`quotaMaxWaitMs`) counts from it. Absent: from now.
   */
  readonly requestStartedAtMs?: number;
  /**
   * The request id of the submission whose job this call ends (callVendorTask's `endsJobOf`, e.g.
   * a cancel): on a 2xx answer the caller's handler frees that job's place (ended-job.ts). Absent
   * or null: none.
   */
  readonly endsJobOf?: string | null;
  /**
   * The limits in force of the request's key (issue 15, shared/key-limits.ts), as the dispatcher
   * resolved them: the caller paces, pauses and spends quotas of the key with them and never reads
   * the key settings table. Absent or null: no per-key limits.
   */
  readonly keyLimits?: KeyLimitsSpec | null;
}

/**
 * What the caller answers: the vendor's response, or "put the request back on the queue". All
 * four fields are always present (null when not applicable): the workflows select them with
 * ResultSelector, and a path that points at nothing fails the execution with States.Runtime,
 * which no Catch handles.
 */
export interface VendorCallResult {
  /** The vendor's status code; null when the request was not sent. */
  readonly statusCode: number | null;
  /** The response body, parsed as JSON when it is JSON, else the text; null when not sent. */
  readonly body: unknown;
  /** The response headers (lower-case names); null when the request was not sent. */
  readonly headers: Record<string, string> | null;
  /** Set when the request was not sent: requeue it after this delay. Else null. */
  readonly requeue: { readonly delaySeconds: number; readonly reason: string } | null;
}

export interface VendorCallConfig {
  /** The proxy stage URL (`https://<api>.execute-api.<region>.amazonaws.com/<stage>/`). */
  readonly proxyUrl: string;
  readonly region: string;
  readonly requestsPerSecond: number;
  readonly pacerTableName: string;
  /** `L`, the slot spacing tolerance (see pacer.ts). */
  readonly latenessToleranceMs: number;
  /** How late the caller may fire against its slot; part of `L`. */
  readonly fireToleranceMs: number;
  /** Longest the caller waits for a fresh slot or a pause; beyond it the request is requeued. */
  readonly maxSlotWaitMs: number;
  /** Timeout of the HTTP call. */
  readonly callTimeoutMs: number;
  /** Pause after a 429 without a usable Retry-After. */
  readonly defaultPauseMs: number;
  /** Longest pause a Retry-After may ask for. */
  readonly maxPauseMs: number;
  /** The contract's quotas: one unit of each is spent before the slot is taken. Default none. */
  readonly quotas?: QuotaSpec[];
  /** `FAIL`: a spent quota fails the request at once; `WAIT` (default): it waits for the next period. */
  readonly whenQuotaExhausted?: 'WAIT' | 'FAIL';
  /**
   * Longest a request may wait for the next period, counted from the request's start
   * (`VendorCallEvent.requestStartedAtMs`): its deadline is the waiting workflow's
   * callbackTimeout after it started waiting. A period that ends after that deadline fails it at
   * once. Default: no bound.
   */
  readonly quotaMaxWaitMs?: number;
  /** The contract's named limits: a fresh slot respects those of the call. Default none. */
  readonly limits?: NamedLimitSpec[];
  /** Adaptive pacing: a 429 decreases the adaptive rate, fresh slots are spaced at it. Default: off. */
  readonly adaptivePacing?: AdaptiveSpec;
  /**
   * The vendor credential is per key (issue 15): a vendor 429 to a request with per-key limits is
   * about that key's account, so it pauses the key (`pausedUntilMs` of its `key-pacer` item), not
   * the contract (VendorCallerEnv.KEY_PAUSE_ON_429). Default false: every 429 pauses the contract.
   */
  readonly keyPauseOn429?: boolean;
}

/** Signs a request: returns the headers to send (the given ones plus the signature). */
export type RequestSigner = (request: {
  method: string; url: string; headers: Record<string, string>; body?: string;
}) => Promise<Record<string, string>>;

/** Powertools' Logger fits. */
export type VendorCallLogger = Pick<Logger, 'debug' | 'info' | 'warn'>;

export interface VendorCallDeps {
  /** Must not retry on its own beyond the SDK defaults for DynamoDB (no vendor call involved). */
  readonly dynamodb: DynamoDBClient;
  readonly config: VendorCallConfig;
  readonly sign: RequestSigner;
  readonly fetch: typeof fetch;
  /**
   * Builds the request before the slot, so that firing only writes it (prepared-request.ts).
   * Without it, `fetch` is called at the slot.
   */
  readonly prepare?: PrepareRequest;
  readonly logger: VendorCallLogger;
  /** `key`: the request's key (issue 15), an EMF property of the value (shared/handler-metrics.ts). */
  readonly metrics?: { addMetric(name: string, unit: 'Count' | 'Milliseconds' | 'Percent', value: number, key?: string): void };
  /** Default: the real clock. */
  readonly clock?: Clock;
  readonly random?: () => number;
  /** Operator's dynamic delay and rate in force, read before fresh reservations (pacing-settings.ts). */
  readonly dynamicDelay?: PacingSettingsSource;
  /**
   * Opens the connection to the proxy before the first slot (DNS, TCP, TLS), so the first request
   * of a new container is not slower than the others. Called when the caller has time before its
   * slot and the container has not talked to the proxy for a while. Errors are ignored.
   */
  readonly warmUp?: () => Promise<void>;
}

/**
 * How long before the slot the pause is re-read. One consistent GetItem takes a few ms on AWS; the
 * margin covers slow reads (a loaded local runtime). A pause written later than this before a slot
 * does not stop that one request.
 */
export const PAUSE_CHECK_LEAD_MS = 100;
/** Resolution of `Date.now()`: it counts whole milliseconds (counted in the fire term, see lateBeyondTolerance). */
export const CLOCK_RESOLUTION_MS = 1;
/** A fresh slot is at least this far ahead: time to sign, re-read the pause and sleep accurately. */
export const FRESH_SLOT_LEAD_MS = 250;
/** Attempts at getting a usable slot before the request is requeued. */
const MAX_SLOT_ATTEMPTS = 5;
/** SQS' longest delivery delay. */
const MAX_DELAY_SECONDS = 900;
/**
 * Largest answer the caller returns, in UTF-8 bytes of `{ statusCode, body, headers, requeue }` as
 * JSON, measured escaped as a JSON string (how the vendor-call workflow's ReturnResponse carries it
 * in SendTaskSuccess's Output: each quote and backslash grows by one byte).
 *
 * Step Functions limits a task's result and a state's input and output to 256 KiB (262,144 bytes);
 * above it the execution fails with States.DataLimitExceeded, which no Catch on States.ALL handles
 * (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html,
 * https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html): nothing would
 * be parked and the waiting workflow would wait for its timeout. 200 KiB leaves 56 KiB for what the
 * answer travels with: the task token (at most 1,024 characters), the request id, the call's own
 * request (method, path, query, body), the claim and attempt fields, and the Lambda integration's
 * envelope around the payload. A larger answer is refused with VendorResponseTooLarge, which the
 * workflows give up on at once (retrying would fetch the same answer).
 */
export const MAX_VENDOR_ANSWER_BYTES = 200 * 1024;
/** Only this much of a failed response body goes into the error message. */
const MAX_ERROR_BODY_CHARS = 8192;
/** A connection idle this long may have been closed (undici's keep-alive default is 4 s). */
const CONNECTION_IDLE_MS = 3000;
/** Warm-up only when the slot is at least this far away. */
const WARM_UP_MIN_LEAD_MS = 100;
/**
 * The request takes its connection (warm-up, prepared request) at most this long before its slot.
 * A connection held idle while the caller waits for a distant slot (a fresh slot at a low rate is
 * seconds away) may be closed by the server before the slot (see CONNECTION_IDLE_MS): the slot
 * would then be given up for want of a connected socket, and at a low rate every slot given up
 * costs the whole schedule one slot interval. Taken this late, a connection is idle at most
 * CONNECTION_IDLE_MS + this (3.75 s, under undici's and Node's keep-alive timeouts of 4-5 s), and
 * there is still time for a new connection's handshake (30-100 ms).
 */
export const CONNECT_AHEAD_MS = 750;

/** Identifies this execution environment (container) in the User-Agent: one per cold start. */
const CONTAINER_ID = randomBytes(6).toString('hex');
/** Product token of the caller's User-Agent; the README's Logs Insights query parses it. */
export const PACING_USER_AGENT_PRODUCT = 'cdk-async-external-api-vendor-caller';

/**
 * The caller's User-Agent: `cdk-async-external-api-vendor-caller/<container> slot/<slot ms>`.
 * The proxy's access log records it (`$context.identity.userAgent`) beside `$context.requestTimeEpoch`,
 * API Gateway's own receive time, so `requestTimeEpoch - slot` measures fire lateness + caller ->
 * proxy latency + this container's clock offset on one clock (README, "check it once deployed";
 * https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-variables-for-access-logging.html).
 * SigV4 never signs User-Agent (@smithy/signature-v4 ALWAYS_UNSIGNABLE_HEADERS), so it may be set
 * after signing.
 */
export function pacingUserAgent(slotAtMs: number): string {
  return `${PACING_USER_AGENT_PRODUCT}/${CONTAINER_ID} slot/${slotAtMs}`;
}

/** A failure the dispatch workflow's ClassifyVendorError understands (by its name). */
export class VendorCallError extends Error {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}

/** Error names besides `ApiGateway.<status>`; both retryable (not `ApiGateway.4xx`). */
export const VendorCallErrorNames = {
  TIMEOUT: 'VendorCallTimeout',
  NETWORK: 'VendorCallNetworkError',
  /**
   * A 2xx answer too large to return through Step Functions (see MAX_VENDOR_ANSWER_BYTES). Not
   * retryable: ClassifyVendorError gives up at once (parked with this reason, the waiting workflow
   * fails with VendorRequestFailed).
   */
  RESPONSE_TOO_LARGE: ErrorNames.VENDOR_RESPONSE_TOO_LARGE,
  /**
   * A quota of the contract is spent for its period, and the request may not wait for the next
   * one (`QuotaExhaustedAction.FAIL`, or the period ends after the request's deadline). Not
   * retryable: ClassifyVendorError gives up at once.
   */
  QUOTA_EXHAUSTED: ErrorNames.VENDOR_QUOTA_EXHAUSTED,
} as const;

let lastConnectionUseMs = Number.NEGATIVE_INFINITY;

/** Reads the caller's configuration once; throws naming the first missing or invalid variable. */
export function loadVendorCallConfig(env: Record<string, string | undefined>): VendorCallConfig {
  const num = (name: string, def?: number, min = 0): number => {
    const raw = env[name]?.trim();
    if (!raw) {
      if (def === undefined) throw new Error(`Environment variable ${name} is required but not set`);
      return def;
    }
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min) {
      throw new Error(`Environment variable ${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`);
    }
    return value;
  };
  const str = (name: string): string => {
    const value = env[name]?.trim();
    if (!value) throw new Error(`Environment variable ${name} is required but not set`);
    return value;
  };
  const requestsPerSecond = num(VendorCallerEnv.REQUESTS_PER_SECOND);
  if (!(requestsPerSecond > 0)) {
    throw new Error(`Environment variable ${VendorCallerEnv.REQUESTS_PER_SECOND} must be above 0, got ${requestsPerSecond}`);
  }
  return {
    proxyUrl: str(VendorCallerEnv.PROXY_ENDPOINT_URL),
    region: env.AWS_REGION?.trim() || 'us-east-1',
    requestsPerSecond,
    pacerTableName: str(VendorCallerEnv.PACER_TABLE_NAME),
    latenessToleranceMs: num(VendorCallerEnv.LATENESS_TOLERANCE_MS),
    fireToleranceMs: num(VendorCallerEnv.FIRE_TOLERANCE_MS),
    maxSlotWaitMs: num(VendorCallerEnv.MAX_SLOT_WAIT_MS),
    callTimeoutMs: num(VendorCallerEnv.CALL_TIMEOUT_MS, undefined, 1),
    defaultPauseMs: num(VendorCallerEnv.DEFAULT_PAUSE_MS, 1000),
    maxPauseMs: num(VendorCallerEnv.MAX_PAUSE_MS, 15 * 60 * 1000),
    quotas: parseQuotaSpecs(env[VendorCallerEnv.QUOTAS], VendorCallerEnv.QUOTAS),
    whenQuotaExhausted: env[VendorCallerEnv.QUOTA_EXHAUSTED]?.trim() === 'FAIL' ? 'FAIL' : 'WAIT',
    quotaMaxWaitMs: env[VendorCallerEnv.QUOTA_MAX_WAIT_MS]?.trim() ? num(VendorCallerEnv.QUOTA_MAX_WAIT_MS) : undefined,
    limits: parseNamedLimitSpecs(env[VendorCallerEnv.VENDOR_LIMITS], VendorCallerEnv.VENDOR_LIMITS),
    adaptivePacing: parseAdaptiveSpec(env[VendorCallerEnv.ADAPTIVE_PACING], VendorCallerEnv.ADAPTIVE_PACING),
    ...(env[VendorCallerEnv.KEY_PAUSE_ON_429]?.trim() === 'true' ? { keyPauseOn429: true } : {}),
  };
}

/**
 * Retry-After as milliseconds from `nowMs` (RFC 9110: delay-seconds or an HTTP date), capped at
 * `maxMs`. Undefined when absent or unreadable.
 */
export function parseRetryAfterMs(value: string | null | undefined, nowMs: number, maxMs: number): number | undefined {
  if (value === null || value === undefined || value.trim() === '') {
    return undefined;
  }
  const text = value.trim();
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    const at = Date.parse(text);
    if (Number.isNaN(at)) {
      return undefined;
    }
    ms = at - nowMs;
  }
  return Math.min(maxMs, Math.max(0, ms));
}

/** One paced vendor call. Throws {@link VendorCallError} for anything but a 2xx answer. */
export async function callVendor(event: VendorCallEvent, deps: VendorCallDeps): Promise<VendorCallResult> {
  const { config, logger } = deps;
  const clock = deps.clock ?? systemClock;
  const method = (event.method ?? 'POST').toUpperCase();
  const url = withQuery(proxyRequestUrl(config.proxyUrl, event.path), event.query);
  const headers = flattenHeaders(event.headers);
  const body = method === 'GET' || method === 'HEAD' || event.body === undefined
    ? undefined
    : typeof event.body === 'string' ? event.body : JSON.stringify(event.body);
  const log = { requestId: event.requestId, slotAtMs: event.slotAtMs, ...(event.key !== undefined ? { key: event.key } : {}) };

  let slot: number | undefined = typeof event.slotAtMs === 'number' && Number.isFinite(event.slotAtMs) ? event.slotAtMs : undefined;
  // A slot that came with the event may be carried by a duplicate invocation too (pacer.ts, claimSlot):
  // it is claimed before it is fired. A slot reserved here is this invocation's alone.
  let slotIsOurs = slot === undefined;
  // How much of the lead was left when the caller started: the margin that keeps it on time.
  logger.debug('vendor caller started', { ...log, aheadOfSlotMs: slot === undefined ? null : slot - clock.now() });
  let fired = false;
  let signed: Record<string, string> | undefined;
  let prepared: PreparedRequest | undefined;
  let fireHeaders: Record<string, string> | undefined;
  // A DynamoDB call that fails ends the invocation: the prepared request must not keep its socket.
  const cancelOnError = <T>(pending: Promise<T>): Promise<T> => pending.catch((error: unknown) => {
    prepared?.cancel();
    throw error;
  });
  const countedLimitWaits: CountedLimitWaits = new Map();
  // The last slot given up: the fresh reservation tells adaptive pacing's probe (adaptive-probe.ts).
  let givenUpSlotMs: number | undefined;
  const giveUpSlot = (reason: string, detail: Record<string, unknown>) => {
    logger.warn(`${reason}; the slot is given up`, { ...log, slotAtMs: slot, ...detail });
    deps.metrics?.addMetric(MetricNames.SLOTS_GIVEN_UP, 'Count', 1);
    givenUpSlotMs = slot;
    slot = undefined;
  };
  // The quota counters this call has spent a unit in (quota-ledger.ts): a later slot in the same
  // period does not spend again.
  const quotaSpent = new Set<string>();
  // Per-key limits (issue 15): a fresh slot needs the key's slot too (fresh-key-slot.ts).
  const keyed = keyedRequestOf(event);
  for (let attempt = 1; attempt <= MAX_SLOT_ATTEMPTS && !fired; attempt++) {
    // 1. A usable slot: the given one while it is on time, else a fresh one.
    if (slot !== undefined && lateBeyondTolerance(clock.now(), slot, config.fireToleranceMs)) {
      giveUpSlot('late for the pacing slot', { lateByMs: clock.now() - slot });
    }
    if (slot === undefined) {
      // The same settings the dispatcher reserves with: a fresh slot is spaced at the rate in force.
      const settings = await readPacingSettings(deps.dynamicDelay);
      const keyLimit = keyed
        ? await cancelOnError(readFreshKeyLimit(deps.dynamodb, config.pacerTableName, keyed, config.latenessToleranceMs))
        : undefined;
      const reserveFresh = (minLeadMs: number) => cancelOnError(reserveSlots({
        ...settings,
        dynamodb: deps.dynamodb,
        tableName: config.pacerTableName,
        requested: 1,
        requestsPerSecond: config.requestsPerSecond,
        latenessToleranceMs: config.latenessToleranceMs,
        maxWaitMs: config.maxSlotWaitMs,
        minLeadMs,
        clock,
        random: deps.random,
        // The call's named limits (named-limit-schedule.ts), reserved in the same write.
        ...freshSlotLimits(config.limits, method, event.path),
        adaptivePacing: config.adaptivePacing,
        givenUpSlotMs,
        // The key's limit (key-schedule.ts): not written into the contract's item.
        ...(keyLimit ? { externalLimits: keyLimit.externalLimits, rereadExternalLimits: keyLimit.rereadExternalLimits } : {}),
      }));
      let reservation = await reserveFresh(FRESH_SLOT_LEAD_MS);
      // Once per limit for this call, however many fresh slots it reserves (named-limit-metrics.ts).
      recordNamedLimitWaits(deps.metrics, reservation, ['call'], countedLimitWaits);
      if (reservation.slots.length === 0 && reservation.limitedUntilMs !== undefined
        && reservation.limitedUntilMs - clock.now() <= config.maxSlotWaitMs) {
        // Only the call's named limit was full: ask once more for a slot no earlier than when it
        // has room (this single late call may leave a gap in the contract's schedule, never a window over it).
        reservation = await reserveFresh(Math.max(FRESH_SLOT_LEAD_MS, reservation.limitedUntilMs - clock.now()));
      }
      if (reservation.slots.length === 0) {
        prepared?.cancel();
        return requeue(Math.max(reservation.nextFreeAtMs, reservation.limitedUntilMs ?? 0), clock, 'NoSlotInTime', logger, log);
      }
      slot = reservation.slots[0];
      slotIsOurs = true;
      const keyWritten = !keyed
        || await cancelOnError(confirmFreshKeySlot(deps.dynamodb, config.pacerTableName, keyed, slot, keyLimit!, config.latenessToleranceMs));
      if (!keyWritten) {
        // Another reserver of the key was first: this contract slot is not fired (key-schedule.ts).
        logger.info('the key\'s slot write lost to another reserver; the fresh slot is not fired', { ...log, slotAtMs: slot });
        deps.metrics?.addMetric(MetricNames.KEY_SLOTS_WASTED, 'Count', 1);
        slot = undefined;
        continue;
      }
    }
    // 1a. Quotas: one unit of each, in the period the slot fires in, before the slot is claimed or
    // fired (quota-ledger.ts says why first). A spent quota leaves the slot unused (rate-safe).
    if (config.quotas && config.quotas.length > 0) {
      const deferred = await cancelOnError(spendQuotasOrDefer(deps, clock, slot, quotaSpent, event, log));
      if (deferred) {
        prepared?.cancel();
        return deferred;
      }
    }
    // 1b. Each slot is fired once: a duplicate invocation carrying the same slot (a retried invoke,
    // a duplicate Express execution) loses the claim and does not fire it.
    if (!slotIsOurs) {
      if (!await cancelOnError(claimSlot(deps.dynamodb, config.pacerTableName, slot))) {
        giveUpSlot('another invocation already claimed this pacing slot (a retried invoke or a duplicate execution)', {});
        continue;
      }
      slotIsOurs = true;
    }

    // A distant slot: wait without a connection until it is near (CONNECT_AHEAD_MS), so that the
    // connection is not closed as idle before the slot. A request prepared for an earlier slot
    // gives its connection back meanwhile.
    if (slot - clock.now() > CONNECT_AHEAD_MS) {
      prepared?.cancel();
      prepared = undefined;
      await sleepUntil(clock, slot - CONNECT_AHEAD_MS);
    }
    // Open the connection now if it may have been closed, while there is time before the slot.
    if (deps.warmUp && slot - clock.now() >= WARM_UP_MIN_LEAD_MS && clock.now() - lastConnectionUseMs > CONNECTION_IDLE_MS) {
      lastConnectionUseMs = clock.now();
      await deps.warmUp().catch(() => undefined);
    }
    // Signing takes a few HMACs: done before the wait, not at the slot.
    signed ??= await deps.sign({ method, url, headers, body });
    // The request is built now, so that at the slot only its write is left, and it takes (or
    // opens) its connection during the wait, not at the slot. Kept across slots until sent.
    if (prepared?.broken) {
      prepared.cancel();
      prepared = undefined;
    }
    prepared ??= deps.prepare?.(url, { method, headers: signed, body });

    // 2. Just before the slot: is the vendor pausing us?
    await sleepUntil(clock, slot - PAUSE_CHECK_LEAD_MS);
    const pausedUntilMs = await readPauseBeforeSlot(deps, clock, slot, log, keyed?.message.key);
    if (pausedUntilMs !== undefined && pausedUntilMs > slot) {
      giveUpSlot('the vendor paused dispatch', { pausedUntilMs });
      if (pausedUntilMs - clock.now() > config.maxSlotWaitMs) {
        prepared?.cancel();
        return requeue(pausedUntilMs, clock, 'VendorPaused', logger, log);
      }
      continue;
    }

    // 3. Fire at the slot, or not at all: never before it by the wall clock (sleepUntil), and
    // only on a connected socket (else the bytes would wait for a handshake and leave late).
    await sleepUntil(clock, slot);
    if (lateBeyondTolerance(clock.now(), slot, config.fireToleranceMs)) {
      continue;
    }
    if (prepared && !prepared.connected) {
      giveUpSlot('no connected socket to the proxy at the slot (the request would wait for a TCP/TLS handshake)', { broken: prepared.broken });
      continue;
    }
    // The User-Agent carries the slot fired (see pacingUserAgent): set last, since the slot may have
    // changed since the request was built. SigV4 does not sign it.
    fireHeaders = { ...signed, 'user-agent': pacingUserAgent(slot) };
    prepared?.setHeader('user-agent', fireHeaders['user-agent']);
    fired = true;
  }
  if (!fired) {
    prepared?.cancel();
    return requeue(clock.now() + 1000, clock, 'NoSlotInTime', logger, log);
  }

  const firedAtMs = clock.now();
  // Lateness counts from when the request leaves (handed to the operating system), not from when
  // it is handed to Node.js: a write that waits (a handshake, a full socket) shows here.
  let writtenAtMs: number | undefined;
  const onWritten = () => {
    writtenAtMs = clock.now();
  };
  deps.metrics?.addMetric(MetricNames.VENDOR_CALLS, 'Count', 1, event.key);
  const recordLateness = () => {
    if (writtenAtMs === undefined) {
      return; // never written (the request failed before it left)
    }
    // An upper bound: the reading truncates to whole milliseconds, so the request left up to
    // CLOCK_RESOLUTION_MS after it.
    const lateByMs = writtenAtMs - slot! + CLOCK_RESOLUTION_MS;
    deps.metrics?.addMetric(MetricNames.VENDOR_CALL_LATENESS, 'Milliseconds', lateByMs);
    if (lateByMs > config.fireToleranceMs) {
      logger.warn('the request left later than the fire tolerance allows (its write waited)', { ...log, slotAtMs: slot, lateByMs, fireToleranceMs: config.fireToleranceMs });
    }
  };
  let response: Response;
  let text: string;
  let overLimit: boolean;
  try {
    const signal = AbortSignal.timeout(config.callTimeoutMs);
    if (prepared) {
      response = await prepared.send(signal, onWritten, MAX_VENDOR_ANSWER_BYTES);
    } else {
      // fetch tells nothing of its socket: the request counts as written when fetch is called.
      onWritten();
      response = await deps.fetch(url, { method, headers: fireHeaders, body, signal });
    }
    // At most MAX_VENDOR_ANSWER_BYTES of the body are read: a larger one cannot be returned anyway.
    ({ text, overLimit } = await readBodyWithin(response, MAX_VENDOR_ANSWER_BYTES));
  } catch (error) {
    const e = error as Error & { cause?: unknown };
    const timedOut = e.name === 'TimeoutError' || e.name === 'AbortError';
    logger.warn('vendor call failed without an answer', { ...log, firedAtMs, timedOut, error: e.message });
    throw new VendorCallError(
      timedOut ? VendorCallErrorNames.TIMEOUT : VendorCallErrorNames.NETWORK,
      timedOut ? `no answer from ${url} within ${config.callTimeoutMs} ms` : `${e.message}${e.cause ? ` (${String(e.cause)})` : ''} calling ${url}`,
    );
  } finally {
    lastConnectionUseMs = clock.now();
    recordLateness();
  }
  logger.info('called the vendor', { ...log, slotAtMs: slot, lateByMs: (writtenAtMs ?? firedAtMs) - slot!, statusCode: response.status, durationMs: clock.now() - firedAtMs });

  if (response.status === 429) {
    const retryAfterMs = parseRetryAfterMs(response.headers.get('retry-after'), clock.now(), config.maxPauseMs);
    const pauseMs = retryAfterMs ?? config.defaultPauseMs;
    try {
      // With credentials per key, the 429 is about the key's own account: only the key pauses.
      const pauseKey = config.keyPauseOn429 === true && keyed !== undefined;
      const until = pauseKey
        ? await pauseKeyUntil(deps.dynamodb, config.pacerTableName, keyed.message.key, clock.now() + pauseMs)
        : await pauseUntil(deps.dynamodb, config.pacerTableName, clock.now() + pauseMs);
      logger.warn(`the vendor (or the proxy) answered 429: ${pauseKey ? 'the key' : 'dispatch'} paused`, {
        ...log, pauseMs, pausedUntilMs: until, retryAfter: response.headers.get('retry-after'),
      });
    } catch (error) {
      logger.warn('could not write the pause (the retry still backs off)', { ...log, error: (error as Error).message });
    }
    // One pause per 429 answer: VendorPauses is also the count of the vendor's 429s.
    deps.metrics?.addMetric(MetricNames.VENDOR_PAUSES, 'Count', 1, event.key);
    if (config.adaptivePacing) {
      await decreaseAfter429(deps, clock, slot!, log);
    }
  }
  if (response.status < 200 || response.status > 299) {
    // The name ClassifyVendorError matches: 429/408/5xx retry, other 4xx give up.
    throw new VendorCallError(`ApiGateway.${response.status}`, truncate(text, MAX_ERROR_BODY_CHARS));
  }
  const tooLarge = (size: string) => {
    logger.warn('the vendor\'s answer is too large to return through Step Functions; the request is given up', { ...log, statusCode: response.status, size });
    return new VendorCallError(VendorCallErrorNames.RESPONSE_TOO_LARGE,
      `The vendor answered ${response.status} with ${size}, more than the ${MAX_VENDOR_ANSWER_BYTES} bytes the vendor caller may return `
      + '(Step Functions limits a task result and a state to 256 KiB); retrying would fetch the same answer');
  };
  if (overLimit) {
    throw tooLarge(`a body over ${MAX_VENDOR_ANSWER_BYTES} bytes`);
  }
  const result: VendorCallResult = { statusCode: response.status, body: parseJsonOr(text), headers: headersRecord(response.headers), requeue: null };
  // With its headers, and escaped as the JSON string ReturnResponse sends.
  const bytes = Buffer.byteLength(JSON.stringify(JSON.stringify(result)));
  if (bytes > MAX_VENDOR_ANSWER_BYTES) {
    throw tooLarge(`an answer of ${bytes} bytes (body and headers, as JSON text)`);
  }
  return result;
}

/**
 * The body as text (UTF-8, as `Response.text()` reads it), reading at most `maxBytes` of it:
 * `overLimit` when there was more (the rest is not read; the text is then the first `maxBytes`).
 */
export async function readBodyWithin(response: Response, maxBytes: number): Promise<{ text: string; overLimit: boolean }> {
  if (!response.body) {
    return { text: '', overLimit: false };
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  let overLimit = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      break;
    }
    if (bytes + value.length > maxBytes) {
      chunks.push(value.subarray(0, maxBytes - bytes));
      bytes = maxBytes;
      overLimit = true;
      await reader.cancel().catch(() => undefined);
      break;
    }
    chunks.push(value);
    bytes += value.length;
  }
  return { text: new TextDecoder().decode(Buffer.concat(chunks)), overLimit };
}

/** A SigV4 signer for `execute-api` with credentials read at each call (Lambda's environment). */
export function createSigV4Signer(
  region: string,
  credentials: () => { accessKeyId: string; secretAccessKey: string; sessionToken?: string },
): RequestSigner {
  const signer = new SignatureV4({ service: 'execute-api', region, credentials: async () => credentials(), sha256: NodeSha256 });
  return async ({ method, url, headers, body }) => {
    const u = new URL(url);
    const query: Record<string, string | string[]> = {};
    u.searchParams.forEach((value, key) => {
      const existing = query[key];
      query[key] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
    });
    const signedRequest = await signer.sign({
      method,
      protocol: u.protocol,
      hostname: u.hostname,
      port: u.port ? Number(u.port) : undefined,
      path: u.pathname,
      query,
      // SigV4 signs the host header; fetch sends the same one.
      headers: { ...headers, host: u.host },
      body,
    });
    const out: Record<string, string> = {};
    for (const [key, value] of Object.entries(signedRequest.headers)) {
      // fetch sets Host itself (and refuses to be told).
      if (key.toLowerCase() !== 'host') {
        out[key] = String(value);
      }
    }
    return out;
  };
}

/**
 * The vendor's pause as read just before `slot`, or undefined when there is none, or when the read
 * has not answered by the slot or failed. The read must never cost the slot: the slot is this
 * caller's whatever the pause (the rate bound does not depend on it), and a pause only spares the
 * vendor requests it would refuse. A read slower than PAUSE_CHECK_LEAD_MS (a loaded DynamoDB, a
 * throttled table) used to make the caller late and give its slot up.
 */
async function readPauseBeforeSlot(
  deps: VendorCallDeps, clock: Clock, slot: number, log: Record<string, unknown>, key?: string,
): Promise<number | undefined> {
  // With per-key limits, the key's own pause too (two consistent reads in parallel): the later one counts.
  const read = Promise.all([
    readPausedUntil(deps.dynamodb, deps.config.pacerTableName),
    key === undefined ? undefined : readKeyPausedUntil(deps.dynamodb, deps.config.pacerTableName, key),
  ]).then(
    ([contract, ofKey]) => ({ pausedUntilMs: ofKey === undefined ? contract : Math.max(contract ?? -Infinity, ofKey) }),
    (error: Error) => ({ error }),
  );
  const outcome = await Promise.race([read, sleepUntil(clock, slot).then(() => undefined)]);
  if (outcome === undefined) {
    deps.logger.info('the pause check did not answer before the slot; firing without it', { ...log, slotAtMs: slot });
    deps.metrics?.addMetric(MetricNames.PAUSE_CHECKS_SKIPPED, 'Count', 1);
    return undefined;
  }
  if ('error' in outcome) {
    deps.logger.warn('could not read the vendor pause; firing at the slot without it', { ...log, slotAtMs: slot, error: outcome.error.message });
    deps.metrics?.addMetric(MetricNames.PAUSE_CHECKS_SKIPPED, 'Count', 1);
    return undefined;
  }
  return outcome.pausedUntilMs;
}

/**
 * The request's deadline for a quota wait: `quotaMaxWaitMs` (its callbackTimeout) after the
 * request started waiting (`requestStartedAtMs`, when it is a usable epoch-ms number, else now:
 * a request of an older dispatcher), or undefined without a bound.
 */
export function quotaDeadlineMs(config: Pick<VendorCallConfig, 'quotaMaxWaitMs'>, requestStartedAtMs: unknown, nowMs: number): number | undefined {
  if (config.quotaMaxWaitMs === undefined) {
    return undefined;
  }
  const startedAtMs = Number.isSafeInteger(requestStartedAtMs) && (requestStartedAtMs as number) > 0 && (requestStartedAtMs as number) <= nowMs
    ? requestStartedAtMs as number
    : nowMs;
  return startedAtMs + config.quotaMaxWaitMs;
}

/**
 * Spends one unit of every quota for a call fired at `slotAtMs` (quota-ledger.ts). Resolves undefined when all were spent (the
 * call may go on), a requeue answer when one is spent for its period and the request waits for the
 * next one (no attempt counted, no slot taken), and throws VendorQuotaExhausted when it may not
 * wait: `whenQuotaExhausted` FAIL, or the next period begins after the request's deadline
 * (quotaDeadlineMs: counted from when the request started waiting, so a request that already
 * waited is not kept for a period it cannot live to see).
 */
async function spendQuotasOrDefer(
  deps: VendorCallDeps, clock: Clock, slotAtMs: number, spent: Set<string>, event: VendorCallEvent,
  log: Record<string, unknown>,
): Promise<VendorCallResult | undefined> {
  const { config } = deps;
  // Per-key quotas (issue 15, key-quota-ledger.ts): the key's units first, so that a key out of its
  // quota never spends a contract unit; it waits for its period (or fails) like the contract's.
  const keyQuotas = keyQuotaSpecs(config.quotas, event.keyLimits);
  const key = event.key;
  if (keyQuotas.length > 0 && typeof key === 'string') {
    const keyOutcome = await spendQuotaUnits(
      deps.dynamodb, config.pacerTableName, keyQuotas, slotAtMs, spent, QUOTA_BOUNDARY_GUARD_MS, keyQuotaCounterKey(key),
    );
    if (!keyOutcome.spent) {
      deps.metrics?.addMetric(MetricNames.KEY_QUOTA_EXHAUSTED, 'Count', 1, key);
      return deferOrFail(deps, clock, keyOutcome, key, event.requestStartedAtMs, log);
    }
  } else if (keyQuotas.length > 0) {
    // The workflow passes the key whenever per-key limits are on: without it no key counter can be
    // named, and only the contract's quota binds this call.
    deps.logger.warn('per-key quotas came without the request\'s key: only the contract\'s quotas are spent', log);
  }
  const outcome = await spendQuotaUnits(deps.dynamodb, config.pacerTableName, config.quotas!, slotAtMs, spent);
  if (outcome.units.length > 0) {
    deps.metrics?.addMetric(MetricNames.QUOTA_UNITS_SPENT, 'Count', outcome.units.length);
  }
  for (const unit of outcome.units) {
    if (Number.isFinite(unit.used)) {
      deps.metrics?.addMetric(quotaUsedMetricName(unit.name), 'Count', unit.used);
      deps.metrics?.addMetric(quotaUsedPercentMetricName(unit.name), 'Percent', (100 * unit.used) / unit.limit);
    }
  }
  if (outcome.spent) {
    return undefined;
  }
  deps.metrics?.addMetric(MetricNames.QUOTA_EXHAUSTED, 'Count', 1);
  // Its conditional write failed: the period's limit is spent. Published while requests wait, so
  // the quota's alarm stays on while nothing can be spent.
  const exhausted = config.quotas!.find((quota) => quota.name === outcome.exhausted);
  if (exhausted) {
    deps.metrics?.addMetric(quotaUsedMetricName(exhausted.name), 'Count', exhausted.limit);
    deps.metrics?.addMetric(quotaUsedPercentMetricName(exhausted.name), 'Percent', 100);
  }
  return deferOrFail(deps, clock, outcome, undefined, event.requestStartedAtMs, log);
}

/**
 * A quota (the contract's, or `key`'s own) is spent for its period: the request waits for the
 * next one (a requeue: no attempt counted, no slot taken), or fails with VendorQuotaExhausted under
 * `whenQuotaExhausted` FAIL or when the period ends after the request's deadline.
 */
function deferOrFail(
  deps: VendorCallDeps, clock: Clock, outcome: { readonly exhausted: string; readonly availableAtMs: number }, key: string | undefined,
  requestStartedAtMs: number | undefined, log: Record<string, unknown>,
): VendorCallResult {
  const { config, logger } = deps;
  const what = key === undefined ? `quota '${outcome.exhausted}'` : `quota '${outcome.exhausted}' of key '${key}'`;
  const deadlineMs = quotaDeadlineMs(config, requestStartedAtMs, clock.now());
  const tooLong = deadlineMs !== undefined && outcome.availableAtMs > deadlineMs;
  if (config.whenQuotaExhausted === 'FAIL' || tooLong) {
    logger.warn('a quota is spent for its period: the request fails', { ...log, quota: outcome.exhausted, ...(key !== undefined ? { keyQuota: true } : {}), availableAtMs: outcome.availableAtMs, deadlineMs });
    throw new VendorCallError(VendorCallErrorNames.QUOTA_EXHAUSTED, tooLong
      ? `${what} is spent until ${new Date(outcome.availableAtMs).toISOString()}, after the request's deadline ${new Date(deadlineMs!).toISOString()} (${config.quotaMaxWaitMs} ms after it started waiting)`
      : `${what} is spent until ${new Date(outcome.availableAtMs).toISOString()} (QuotaExhaustedAction.FAIL)`);
  }
  const keyQuota = key !== undefined ? { keyQuota: true } : {};
  return requeue(outcome.availableAtMs, clock, QUOTA_EXHAUSTED_REASON, logger, { ...log, quota: outcome.exhausted, ...keyQuota });
}

/**
 * Adaptive pacing: the 429 lowers the adaptive rate, once per cooldown (adaptive-rate.ts: concurrent
 * 429s of one burst decrease once). The ceiling is the rate in force the caller reads (at most the
 * contract). A failed write is logged and ignored: the pause already backs off, and the next 429
 * tries again.
 */
async function decreaseAfter429(deps: VendorCallDeps, clock: Clock, slotAtMs: number, log: Record<string, unknown>): Promise<void> {
  const { config, logger } = deps;
  try {
    const settings = await readPacingSettings(deps.dynamicDelay);
    const ceiling = Math.min(settings.rateInForce ?? config.requestsPerSecond, config.requestsPerSecond);
    // The slot fired: a 429 to adaptive pacing's probe is recorded as its answer, not a decrease.
    const outcome = await decreaseAdaptiveRate(deps.dynamodb, config.pacerTableName, clock.now(), ceiling, config.adaptivePacing!, slotAtMs);
    if (outcome.probeRefused) {
      logger.info('the vendor refused the adaptive probe: the rate stays', { ...log, slotAtMs });
    }
    if (outcome.decreased) {
      logger.warn('the vendor answered 429: the adaptive rate is lowered', { ...log, adaptiveRequestsPerSecond: outcome.rps });
      deps.metrics?.addMetric(MetricNames.ADAPTIVE_DECREASES, 'Count', 1);
    }
  } catch (error) {
    logger.warn('could not lower the adaptive rate (the pause still backs off)', { ...log, error: (error as Error).message });
  }
}

/** `requeue.reason` of a request that waits for the next quota period. */
export const QUOTA_EXHAUSTED_REASON = 'QuotaExhausted';

function requeue(
  notBeforeMs: number, clock: Clock, reason: string, logger: VendorCallLogger, log: Record<string, unknown>,
): VendorCallResult {
  const delaySeconds = Math.min(MAX_DELAY_SECONDS, Math.max(0, Math.ceil((notBeforeMs - clock.now()) / 1000)));
  logger.info('no usable pacing slot within the wait budget; the request goes back to the queue', { ...log, reason, delaySeconds });
  return { statusCode: null, body: null, headers: null, requeue: { delaySeconds, reason } };
}

/**
 * Resolves once the wall clock has reached `atMs`. Node's timers run on a monotonic clock in whole
 * milliseconds while slots are wall-clock times, so a timer can wake a fraction of a millisecond
 * (more when the two clocks drift apart) before the slot: then it sleeps again.
 */
async function sleepUntil(clock: Clock, atMs: number): Promise<void> {
  for (let waitMs = atMs - clock.now(); waitMs > 0; waitMs = atMs - clock.now()) {
    await clock.sleep(waitMs);
  }
}

/**
 * Whether firing at the clock reading `nowMs` could be more than `fireToleranceMs` late for `slot`.
 * `Date.now()` truncates to whole milliseconds: at a reading `nowMs` the wall clock is anywhere in
 * `[nowMs, nowMs + 1)`, so the last millisecond of the tolerance is spent on the clock's resolution.
 */
export function lateBeyondTolerance(nowMs: number, slot: number, fireToleranceMs: number): boolean {
  return nowMs + CLOCK_RESOLUTION_MS - slot > fireToleranceMs;
}

/** The URL with the query parameters appended (a list repeats the parameter). */
export function withQuery(url: string, query: Record<string, string | string[]> | undefined): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== undefined && v !== null) params.append(key, String(v));
    }
  }
  const text = params.toString();
  return text === '' ? url : `${url}${url.includes('?') ? '&' : '?'}${text}`;
}

/** The stage URL joined with a path (no double slash). */
export function proxyRequestUrl(proxyUrl: string, path: string | undefined): string {
  const base = proxyUrl.endsWith('/') ? proxyUrl : `${proxyUrl}/`;
  const rest = (path ?? '').replace(/^\/+/, '');
  return rest === '' ? base.replace(/\/$/, '') || base : `${base}${rest}`;
}

function flattenHeaders(headers: Record<string, string | string[]> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers ?? {})) {
    if (value === undefined || value === null) continue;
    out[key] = Array.isArray(value) ? value.map(String).join(', ') : String(value);
  }
  return out;
}

function headersRecord(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, key) => {
    out[key] = value;
  });
  return out;
}

function parseJsonOr(text: string): unknown {
  if (text === '') return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 3)}...`;
}

/** Test hook: forget when the connection was last used. */
export function resetConnectionState(): void {
  lastConnectionUseMs = Number.NEGATIVE_INFINITY;
}
