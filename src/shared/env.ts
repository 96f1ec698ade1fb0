/**
 * Environment variable names shared by the constructs (which set them) and the handlers (which
 * read them). Plain constants: no AWS SDK or aws-cdk-lib imports.
 */

/** Queue consumer (RateControlledQueueConsumer). */
export const ConsumerEnv = {
  STATE_MACHINE_ARN: 'STATE_MACHINE_ARN',
  /** The vendor-call workflow (callVendorTask), started for messages of kind `call`. Optional. */
  CALL_STATE_MACHINE_ARN: 'CALL_STATE_MACHINE_ARN',
  REQUESTS_PER_SECOND: 'REQUESTS_PER_SECOND',
  PACER_TABLE_NAME: 'PACER_TABLE_NAME',
  /** Longest a single invocation may wait for its pacing slots, in milliseconds. */
  MAX_PACING_WAIT_MS: 'MAX_PACING_WAIT_MS',
  /** How late a start may be against its slot before the slot is given up, in milliseconds. */
  LATENESS_TOLERANCE_MS: 'LATENESS_TOLERANCE_MS',
  /**
   * How long before its pacing slot an execution is started (PacingPoint.VENDOR_CALL), in
   * milliseconds; 0 or absent: at the slot (PacingPoint.DISPATCH).
   */
  PACING_LEAD_MS: 'PACING_LEAD_MS',
  /** How long correlation items live (TTL), in seconds. */
  CORRELATION_TTL_SECONDS: 'CORRELATION_TTL_SECONDS',
  /** The contract's jobs in flight (VendorContract.maxJobsInFlight). Absent: no limit. */
  MAX_JOBS_IN_FLIGHT: 'MAX_JOBS_IN_FLIGHT',
  /** The contract's maxJobDuration, in milliseconds: when a job's place expires. */
  MAX_JOB_DURATION_MS: 'MAX_JOB_DURATION_MS',
  /** How long a request without a place waits before it asks again, in milliseconds. */
  JOB_PLACE_RECHECK_MS: 'JOB_PLACE_RECHECK_MS',
  /** The correlation table (jobs in flight: a request whose job was already submitted takes no place). */
  CORRELATION_TABLE_NAME: 'CORRELATION_TABLE_NAME',
  /**
   * Jobs in flight: the longest time from admission to the submission call, in milliseconds, added
   * to every place's expiry. Never set by the constructs (default: the Express workflow's 5 minutes);
   * the local fault suite lowers it to see places expire within a test.
   */
  JOB_PLACE_SUBMISSION_WINDOW_MS: 'JOB_PLACE_SUBMISSION_WINDOW_MS',
  /**
   * `off`: requests of a key at its own jobs-in-flight limit recheck every JOB_PLACE_RECHECK_MS
   * instead of coming back on their ticket's estimate (key-place-wake.ts). Never set by the
   * constructs: an operator's escape hatch and the benchmark's baseline.
   */
  KEY_PLACE_TICKETS: 'KEY_PLACE_TICKETS',
  /**
   * The contract's quotas (JSON, as VendorCallerEnv.QUOTAS): a batch that finds one spent is
   * postponed until its period ends, without pacing slots. Absent: none.
   */
  QUOTAS: 'QUOTAS',
  /**
   * `WAIT` or `FAIL` (QuotaExhaustedAction, as VendorCallerEnv.QUOTA_EXHAUSTED): with FAIL a spent
   * quota postpones nothing, the vendor caller fails the requests at once. Default WAIT.
   */
  QUOTA_EXHAUSTED: 'QUOTA_EXHAUSTED',
  /**
   * Longest a request may wait for a quota, from its start (as VendorCallerEnv.QUOTA_MAX_WAIT_MS), in
   * milliseconds: a request whose deadline comes before the spent period ends is not postponed but
   * sent on, and the vendor caller fails it at once. Absent: no bound.
   */
  QUOTA_MAX_WAIT_MS: 'QUOTA_MAX_WAIT_MS',
  /**
   * The contract's named limits (JSON array of contract/named-limit.ts `NamedLimitSpec`): each slot
   * also respects the limits of the call it goes to. Absent: none.
   */
  VENDOR_LIMITS: 'VENDOR_LIMITS',
  /** Adaptive pacing (contract/adaptive-spec.ts `AdaptiveSpec`, JSON): reservations read the adaptive rate. Absent: off. */
  ADAPTIVE_PACING: 'ADAPTIVE_PACING',
  /**
   * This orchestrator's key in a contract state it shares with others (VendorContractState): its
   * request queue's ARN. Keys what is its own in the shared pacer table (its drain lease, its job
   * places). Absent: the pacer table is its own (keys as before sharing existed).
   */
  SHARED_STATE_OWNER: 'SHARED_STATE_OWNER',
  /** `true`: every request needs a key (issue 15: the vendor credential is per key). Absent: keys are optional. */
  REQUIRE_REQUEST_KEY: 'REQUIRE_REQUEST_KEY',
  /** `true`: a keyed request's callback token carries its key (issue 15: signing secrets per key). */
  CALLBACK_TOKEN_WITH_KEY: 'CALLBACK_TOKEN_WITH_KEY',
  /**
   * Issue 15: the high-priority request queue's ARN (high-priority-queue.ts). Set: batches from the
   * other queue reserve slots only a short horizon ahead, so a high request finds an early slot.
   * Absent: no high-priority queue.
   */
  HIGH_PRIORITY_QUEUE_ARN: 'HIGH_PRIORITY_QUEUE_ARN',
  /** With HIGH_PRIORITY_QUEUE_ARN: the other batches' horizon past the lead, in ms. Absent: the default (500 ms). */
  NORMAL_RESERVATION_HORIZON_MS: 'NORMAL_RESERVATION_HORIZON_MS',
} as const;

/** Callback processor (CallbackWebhook). */
export const CallbackEnv = {
  TABLE_NAME: 'TABLE_NAME',
  JOB_ID_INDEX_NAME: 'JOB_ID_INDEX_NAME',
  /** JSONPath-like dotted path of the job id in the callback body, e.g. `$.jobId`. */
  JOB_ID_PATH: 'JOB_ID_PATH',
  /** Dotted path of the status field in the callback body. Empty: every callback is a success. */
  STATUS_PATH: 'STATUS_PATH',
  /** JSON array of status values that mean the vendor's job failed. */
  FAILURE_STATUS_VALUES: 'FAILURE_STATUS_VALUES',
  /** Where messages that can never succeed are parked at once. */
  DEAD_LETTER_QUEUE_URL: 'DEAD_LETTER_QUEUE_URL',
  /** 'false': callbacks need no capability token (signature-only or no authentication). Default true. */
  REQUIRE_CALLBACK_TOKEN: 'REQUIRE_CALLBACK_TOKEN',
  /** JSON signature specification (`SignatureSpec`); empty: no signature check. */
  WEBHOOK_SIGNATURE: 'WEBHOOK_SIGNATURE',
  /**
   * The name pattern of the signing secret per key (`{key}` where the key goes; issue 15): a
   * callback whose capability token carries a key is verified with that key's secret. Absent: one secret.
   */
  WEBHOOK_SIGNATURE_SECRET_NAME_PATTERN: 'WEBHOOK_SIGNATURE_SECRET_NAME_PATTERN',
  /** ARN of the Secrets Manager secret holding the signing secret. */
  WEBHOOK_SIGNATURE_SECRET_ARN: 'WEBHOOK_SIGNATURE_SECRET_ARN',
  /** Largest callback body in bytes. */
  MAX_PAYLOAD_BYTES: 'MAX_PAYLOAD_BYTES',
  /** The pacer table holding the jobs-in-flight places: a callback frees its job's place. Absent: no limit. */
  JOB_PLACES_TABLE_NAME: 'JOB_PLACES_TABLE_NAME',
  /** As ConsumerEnv.SHARED_STATE_OWNER: keys this orchestrator's job places in a shared pacer table. */
  SHARED_STATE_OWNER: 'SHARED_STATE_OWNER',
  /**
   * 'true': per-key limits are on (issue 15): a callback also frees its job's place of the request's
   * key (`key-places#<key>`, shared/key-places.ts), the key read from the correlation item
   * (`requestKey`). Absent: only the contract's place.
   */
  FREE_KEY_PLACES: 'FREE_KEY_PLACES',
} as const;

/** Vendor caller (DispatchWorkflow with PacingPoint.VENDOR_CALL). */
export const VendorCallerEnv = {
  /**
   * The proxy stage URL. Named like the SDK's endpoint overrides (`*_ENDPOINT_URL`) so a local
   * runtime can point it at its emulated API.
   */
  PROXY_ENDPOINT_URL: 'PROXY_ENDPOINT_URL',
  REQUESTS_PER_SECOND: 'REQUESTS_PER_SECOND',
  PACER_TABLE_NAME: 'PACER_TABLE_NAME',
  LATENESS_TOLERANCE_MS: 'LATENESS_TOLERANCE_MS',
  /** How late the caller may fire against its slot, in milliseconds. */
  FIRE_TOLERANCE_MS: 'FIRE_TOLERANCE_MS',
  /** Longest wait for a fresh slot or a pause before the request is requeued, in milliseconds. */
  MAX_SLOT_WAIT_MS: 'MAX_SLOT_WAIT_MS',
  CALL_TIMEOUT_MS: 'CALL_TIMEOUT_MS',
  /** Pause after a 429 without Retry-After, in milliseconds. */
  DEFAULT_PAUSE_MS: 'DEFAULT_PAUSE_MS',
  /** Cap of Retry-After, in milliseconds. */
  MAX_PAUSE_MS: 'MAX_PAUSE_MS',
  /** The pacer table holding the jobs-in-flight places: a submission refused with a final 4xx frees its place. Absent: no limit. */
  JOB_PLACES_TABLE_NAME: 'JOB_PLACES_TABLE_NAME',
  /** The contract's quotas, a JSON array of quota-period.ts `QuotaSpec`. Absent: none. */
  QUOTAS: 'QUOTAS',
  /** `WAIT` or `FAIL` (QuotaExhaustedAction). */
  QUOTA_EXHAUSTED: 'QUOTA_EXHAUSTED',
  /** Longest a request may wait for the next quota period, in milliseconds. */
  QUOTA_MAX_WAIT_MS: 'QUOTA_MAX_WAIT_MS',
  /** The contract's named limits (JSON, as ConsumerEnv.VENDOR_LIMITS): a fresh slot respects the call's. */
  VENDOR_LIMITS: 'VENDOR_LIMITS',
  /** Adaptive pacing (JSON `AdaptiveSpec`): a 429 decreases the adaptive rate, fresh slots read it. Absent: off. */
  ADAPTIVE_PACING: 'ADAPTIVE_PACING',
  /** As ConsumerEnv.SHARED_STATE_OWNER: keys this orchestrator's job places in a shared pacer table. */
  SHARED_STATE_OWNER: 'SHARED_STATE_OWNER',
  /**
   * `true`: the vendor credential is per key (issue 15), so a vendor 429 to a request with per-key
   * limits pauses that key, not the contract (key-schedule.ts `pauseKeyUntil`). Absent: the contract.
   */
  KEY_PAUSE_ON_429: 'KEY_PAUSE_ON_429',
} as const;

/**
 * The jobs-in-flight waiting room (shared/job-waiting.ts), set on every function that frees places
 * (and on the dispatcher, which moves requests without a place there). Absent: no waiting queue.
 */
export const JobWaitingEnv = {
  /** The waiting queue: requests that found every place taken. */
  WAITING_QUEUE_URL: 'JOB_WAITING_QUEUE_URL',
  /** The request queue a woken waiter is sent back to. */
  REQUEST_QUEUE_URL: 'JOB_REQUEST_QUEUE_URL',
} as const;

/**
 * The JSON a construct put in environment variable `variableName`, for a handler to check: undefined
 * when the variable is unset or blank; throws naming the variable and `expected` when it is not JSON.
 */
export function parseJsonEnv(raw: string | undefined, variableName: string, expected: string): unknown {
  if (raw === undefined || raw.trim() === '') {
    return undefined;
  }
  try {
    return JSON.parse(raw);
  } catch {
    throw new Error(`Environment variable ${variableName} must be ${expected}, got ${JSON.stringify(raw)}`);
  }
}
