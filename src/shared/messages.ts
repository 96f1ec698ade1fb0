/**
 * Shapes of the messages and items that flow between the constructs and their handlers.
 * Plain types only: imported by construct code and by the bundled Lambda handlers alike,
 * so nothing here may import the AWS SDK or aws-cdk-lib.
 */
import type { KeyLimitsSpec, RequestPriority } from './key-limits';

/**
 * What the main workflow's submit task puts on the request queue (blog step 1-2), and what the
 * dispatch workflow puts back on it (with `attempt` raised) when a vendor call must be retried.
 */
export interface RequestMessage {
  /** The main workflow's task token (`$$.Task.Token`). */
  readonly taskToken: string;
  /** Stable id of this request; the idempotency key sent to the vendor. */
  readonly requestId: string;
  /** The request payload, sent to the vendor as the body. */
  readonly payload: unknown;
  /** 1 for the first dispatch; raised by each re-enqueue. Absent means 1. */
  readonly attempt?: number;
  /**
   * How often this attempt went back to the queue without calling the vendor (no pacing slot in
   * time, a vendor pause). Absent means 0. Part of the claim sequence (see `DispatchInput.claimSeq`).
   */
  readonly deferrals?: number;
  /**
   * When the request's first message reached the request queue, epoch ms: stamped by the dispatcher
   * (rate-controlled-queue-consumer/request-start.ts) and carried by every re-enqueue. A quota wait
   * counts the request's deadline from it. Absent on the user's workflow's message.
   */
  readonly requestStartedAtMs?: number;
  /**
   * The request's key (issue 15; `submitJobTask`'s / `callVendorTask`'s `key`): the vendor account
   * (customer, tenant) it belongs to, 1-128 characters of what an SQS MessageGroupId allows
   * (request-key.ts). Absent when the task declares no key.
   */
  readonly key?: string;
  /**
   * The request's priority (issue 15; `submitJobTask`'s / `callVendorTask`'s `priority`): under a
   * backlog the dispatcher serves higher effective priority first (shared/request-priority.ts).
   * Absent or null: normal. Anything but `high`, `normal`, `low` fails the waiting task with
   * `InvalidRequestPriority` on first receive (request-priority-check.ts).
   */
  readonly priority?: RequestPriority | null;
  /** Absent (or `submit`) for a job submission; see {@link VendorCallMessage} for `call`. */
  readonly kind?: 'submit';
  // ---- webhookauth: capability callback URL ----
  /**
   * The request's secret callback token (32 random bytes, base64url), set by the dispatcher on the
   * first dispatch and carried by every re-enqueue, so retries send the vendor the same URL.
   * Absent on the main workflow's message.
   */
  readonly callbackToken?: string;
  // ---- end webhookauth ----
}

// ---- Vendor calls (callVendorTask; blog step 11): a paced synchronous call through the same queue. ----

/** Values of a request message's `kind` field. Absent means a job submission. */
export const MessageKinds = {
  SUBMIT: 'submit',
  CALL: 'call',
} as const;

/** HTTP methods a vendor call may use. */
export const VENDOR_CALL_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/** The HTTP request of a vendor call, relative to the vendor URL the proxy forwards to. */
export interface VendorCallRequest {
  /** One of {@link VENDOR_CALL_METHODS}. */
  readonly method: string;
  /** Path below the vendor URL, starting with `/` (`/` alone is the vendor URL itself). */
  readonly path: string;
  /** Query parameters: name -> value or values. */
  readonly query?: Record<string, string | string[]>;
  /** JSON body (not for GET or DELETE). */
  readonly body?: unknown;
}

/** What `callVendorTask` puts on the request queue, and the vendor-call workflow re-enqueues on retry. */
export interface VendorCallMessage {
  readonly kind: 'call';
  readonly taskToken: string;
  readonly requestId: string;
  readonly call: VendorCallRequest;
  /**
   * The request id of the job submission (`submitJobTask`) whose job this call ends at the vendor
   * (`callVendorTask`'s `endsJobOf`, e.g. the vendor's cancel endpoint): on a 2xx answer the vendor
   * caller frees that request's place in flight. Absent or null: the call frees nothing.
   */
  readonly endsJobOf?: string | null;
  /**
   * The request's key (issue 15; `callVendorTask`'s `key`): the vendor account
   * (customer, tenant) it belongs to, 1-128 characters of what an SQS MessageGroupId allows
   * (request-key.ts). Absent when the task declares no key.
   */
  readonly key?: string;
  /** The request's priority (`callVendorTask`'s `priority`; see `RequestMessage.priority`). Absent or null: normal. */
  readonly priority?: RequestPriority | null;
  /** 1 for the first call; raised by each re-enqueue. Absent means 1. */
  readonly attempt?: number;
  /**
   * How often this attempt went back to the queue without calling the vendor (no pacing slot in
   * time, a vendor pause). Absent means 0. Part of the claim sequence (see `DispatchInput.claimSeq`).
   */
  readonly deferrals?: number;
  /**
   * When the request's first message reached the request queue, epoch ms: stamped by the dispatcher
   * (rate-controlled-queue-consumer/request-start.ts) and carried by every re-enqueue. A quota wait
   * counts the request's deadline from it. Absent on the user's workflow's message.
   */
  readonly requestStartedAtMs?: number;
}

/** Input of one vendor-call (Express) workflow execution, built by the queue consumer. */
export interface VendorCallInput {
  readonly requestId: string;
  readonly taskToken: string;
  readonly attempt: number;
  /** `deferrals` of the message (0 to 999). */
  readonly deferrals: number;
  /**
   * `attempt x 1000 + deferrals`: the workflow's ClaimCall succeeds only when it is higher than the
   * stored one, so two executions of one delivery (a duplicate Express execution, a message
   * delivered twice) cannot both call the vendor (see `DispatchInput.claimSeq`).
   */
  readonly claimSeq: number;
  /** When the call's claim item may be deleted (DynamoDB TTL, epoch seconds). */
  readonly expiresAt: number;
  /** The call, normalized: `query` always present (`{}` when none); `body` present only when sent. */
  readonly call: VendorCallRequest;
  /** The raw message, re-enqueued or parked in the DLQ as is when the call gives up. */
  readonly message: VendorCallMessage;
  /** `endsJobOf` of the message, null when absent: always present (the workflow passes it to the vendor caller). */
  readonly endsJobOf: string | null;
  /** The message's key (see `RequestMessage.key`); absent when it has none. */
  readonly key?: string;
  /** The message's priority (see `RequestMessage.priority`), carried into the call's retries and deferrals; absent when normal by default. */
  readonly priority?: RequestPriority;
  /** The pacing slot of this call, epoch ms: the vendor caller fires at it (PacingPoint.VENDOR_CALL). */
  readonly slotAtMs?: number;
  /** The request's start (`requestStartedAtMs` of the message), epoch ms: the vendor caller's quota deadline counts from it. */
  readonly requestStartedAtMs: number;
  /**
   * Issue 15: the limits in force of the request's key, as the dispatcher resolved them (defaults,
   * the key's overrides, capped at the contract); the workflow hands them to the vendor caller.
   * Null without per-key limits or without a key.
   */
  readonly keyLimits: KeyLimitsSpec | null;
}

/**
 * A message's deferrals, counted as 0 when absent or not a small whole number (more than 999 stay
 * at 999: their claims then tie and the later ones stop at the claim, as duplicates would), and
 * its claim sequence `attempt x 1000 + deferrals` (see `DispatchInput.claimSeq`).
 */
export function claimSequence(attempt: number, deferrals: unknown): { readonly deferrals: number; readonly claimSeq: number } {
  const counted = Number.isSafeInteger(deferrals) && (deferrals as number) > 0 ? Math.min(999, deferrals as number) : 0;
  return { deferrals: counted, claimSeq: attempt * 1000 + counted };
}

/** Partition key of a vendor call's claim in the correlation table: `call#<requestId>`, apart from job submissions' items. */
export const CALL_CLAIM_KEY_PREFIX = 'call#';

/** Any message on the request queue. */
export type AnyRequestMessage = RequestMessage | VendorCallMessage;

/** Input of one dispatch (Express) workflow execution, built by the queue consumer. */
export interface DispatchInput {
  readonly requestId: string;
  readonly taskToken: string;
  readonly payload: unknown;
  readonly attempt: number;
  /** When the correlation item may be deleted (DynamoDB TTL, epoch seconds). */
  readonly expiresAt: number;
  /** `deferrals` of the message (0 to 999). */
  readonly deferrals: number;
  /**
   * `attempt x 1000 + deferrals`: ClaimRequest only succeeds when it is higher than the stored one,
   * so two deliveries of the same message running at once (SQS may deliver a message twice) cannot
   * both call the vendor, while a retry or a deferral (a new message) claims again.
   */
  readonly claimSeq: number;
  /** The raw request message, re-enqueued or parked in the DLQ as is when dispatch gives up. */
  readonly message: RequestMessage;
  /** The message's key (see `RequestMessage.key`); absent when it has none. */
  readonly key?: string;
  /** The message's priority (see `RequestMessage.priority`), carried into the request's retries and deferrals; absent when normal by default. */
  readonly priority?: RequestPriority;

  // ---- webhookauth: capability callback URL ----
  /** The request's secret callback token (see `RequestMessage.callbackToken`). */
  readonly callbackToken: string;
  // ---- end webhookauth ----
  /**
   * The pacing slot of this request, epoch ms: the vendor caller fires at it
   * (PacingPoint.VENDOR_CALL). With PacingPoint.DISPATCH, the slot the execution was started in.
   */
  readonly slotAtMs?: number;
  /** The request's start (`requestStartedAtMs` of the message), epoch ms: the vendor caller's quota deadline counts from it. */
  readonly requestStartedAtMs: number;
  /**
   * Issue 15: the limits in force of the request's key, as the dispatcher resolved them (defaults,
   * the key's overrides, capped at the contract); the workflow hands them to the vendor caller.
   * Null without per-key limits or without a key.
   */
  readonly keyLimits: KeyLimitsSpec | null;
}

/**
 * What the webhook's mapping template writes to the callback queue for every callback.
 * The body and every header name and value are base64-encoded so that the bytes the vendor sent survive
 * untouched (signature checks need the raw body) and no value can break the JSON envelope.
 */
export interface CallbackEnvelope {
  /** Envelope format version. */
  readonly v: number;
  /** The raw request body, base64. */
  readonly bodyBase64: string;
  /** Request headers: base64 of the name -> base64 of the value. */
  readonly headers: Record<string, string>;
  /** API Gateway's request time, epoch milliseconds. */
  readonly receivedAtEpochMs: number | string;
  /** API Gateway's request id, for tracing a callback back to the access log. */
  readonly apiRequestId: string;
  readonly sourceIp?: string;
  // ---- webhookauth: capability callback URL and payload limit ----
  /** Base64 of the `{token}` path segment of `POST /callback/{token}`; absent on the bare `/callback` route. */
  readonly callbackTokenBase64?: string;
  // ---- end webhookauth ----
  /**
   * The body was too large for the callback queue and was dropped at the webhook (`bodyBase64` is
   * empty; the vendor was answered 413). Absent when the body is there.
   */
  readonly bodyDropped?: boolean;
  /** With `bodyDropped`: the length of the body's base64, characters (4/3 of its bytes, rounded up). */
  readonly bodyBase64Length?: number;
  /**
   * With `bodyDropped`: base64 of the job id as JSON (`$input.json(jobIdPath)`, e.g. `"job-1"` or
   * `42`), empty when none was found or it was too long.
   */
  readonly jobIdJsonBase64?: string;
}

/** Life cycle of a request in the correlation table. */
export const RequestStatus = {
  /** The dispatch workflow claimed the request and is calling the vendor. */
  DISPATCHING: 'DISPATCHING',
  /** The vendor accepted the job; the job id is stored; waiting for the callback. */
  SUBMITTED: 'SUBMITTED',
  /** A callback resumed the waiting workflow. */
  COMPLETED: 'COMPLETED',
  /** A callback came after the waiting workflow had ended (timed out, failed or stopped). */
  LATE: 'LATE',
} as const;

/** Attribute names of the correlation table's items. */
export const CorrelationAttributes = {
  REQUEST_ID: 'requestId',
  JOB_ID: 'jobId',
  TASK_TOKEN: 'taskToken',
  /** The highest claim sequence a dispatch claimed (`DispatchInput.claimSeq`). */
  CLAIM_SEQ: 'claimSeq',
  STATUS: 'status',
  EXPIRES_AT: 'expiresAt',
  UPDATED_AT: 'updatedAt',
  /** The request's secret callback token (capability URL), written by ClaimRequest. */
  CALLBACK_TOKEN: 'callbackToken',
  /** The request's key (`RequestMessage.key`), written by ClaimRequest when the credential is per key. */
  REQUEST_KEY: 'requestKey',
} as const;

/** Name of the correlation table's index on job id. */
export const JOB_ID_INDEX_NAME = 'ByJobId';

/**
 * Step Functions errors of SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat meaning the
 * waiting task has already ended (timed out, failed, stopped, or already resumed): retrying can
 * never succeed. The SDK error names, without a Task state's integration prefix.
 */
export const CLOSED_TASK_ERROR_NAMES: ReadonlySet<string> = new Set(['TaskTimedOut', 'InvalidToken', 'TaskDoesNotExist']);

/** Error names the submit task can fail with (besides States.Timeout). */
export const ErrorNames = {
  /** The vendor refused the request or every retry failed; the request went to the request DLQ. */
  VENDOR_REQUEST_FAILED: 'VendorRequestFailed',
  /** The vendor's callback reported that the job failed. */
  VENDOR_JOB_FAILED: 'VendorJobFailed',
  /**
   * `reason` of a request parked because the vendor caller found no pacing slot in time and its
   * requeue failed (the waiting workflow fails with VendorRequestFailed, this in the cause).
   */
  VENDOR_CALL_DEFERRED: 'VendorCallDeferred',
  /**
   * The vendor caller's error (and the `reason` of the parked request) for a 2xx answer too large
   * to return through Step Functions (256 KiB per task result and state; see
   * MAX_VENDOR_ANSWER_BYTES in dispatch-workflow/vendor-call.ts). Given up at once: retrying would
   * fetch the same answer.
   */
  VENDOR_RESPONSE_TOO_LARGE: 'VendorResponseTooLarge',
  /**
   * The vendor caller's error (and the `reason` of the parked request) when a quota of the
   * contract is spent for its period and the request may not wait for the next one
   * (QuotaExhaustedAction.FAIL, or the period ends after the request's deadline). Given up at once.
   */
  VENDOR_QUOTA_EXHAUSTED: 'VendorQuotaExhausted',
} as const;

/**
 * The error of a vendor secret whose shape is not what the credentials expect (binary, not JSON,
 * the JSON field missing or not a non-empty string, an OAuth client secret without clientId and
 * clientSecret). Retrying cannot fix it: the request is parked at once with this reason, and is
 * redriven once the secret is fixed.
 */
export const VENDOR_CREDENTIAL_UNUSABLE = 'VendorCredentialUnusable';

/**
 * The error of a request key without a vendor credential (`VendorCredentials.fromSecretHeaderPerKey`:
 * no secret of that name). Retrying cannot fix it: the request is parked at once with this reason
 * and is redriven once the key's secret exists.
 */
export const VENDOR_CREDENTIAL_NOT_FOUND = 'VendorCredentialNotFound';
