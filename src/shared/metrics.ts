/**
 * Custom metrics the handlers publish in CloudWatch embedded metric format (EMF) and the
 * constructs chart and alarm on. Plain constants, shared by both sides.
 */

/** CloudWatch namespace of every custom metric. */
export const METRICS_NAMESPACE = 'CdkAsyncExternalApi';

/**
 * Dimension that tells orchestrators (or standalone building blocks) apart. Its value is set by
 * the construct in the handler's environment variable `METRICS_SCOPE_ENV`.
 */
export const METRICS_SCOPE_DIMENSION = 'Scope';
export const METRICS_SCOPE_ENV = 'METRICS_SCOPE';

/** Metric names. */
export const MetricNames = {
  /** Dispatcher: StartExecution calls issued (one per request attempt). Count. */
  DISPATCHED_REQUESTS: 'DispatchedRequests',
  /** Dispatcher: time a message waited for its pacing slot. Milliseconds. */
  PACING_WAIT: 'PacingWait',
  /** Dispatcher: slots given up because the start would have been late. Count. */
  SLOTS_GIVEN_UP: 'SlotsGivenUp',
  /** Vendor caller: slots fired without the pause check (the read failed or had not answered by the slot). Count. */
  PAUSE_CHECKS_SKIPPED: 'PauseChecksSkipped',
  /** Vendor caller: requests sent to the vendor at their slot. Count. */
  VENDOR_CALLS: 'VendorCalls',
  /** Vendor caller: how late a request fired against its slot. Milliseconds. */
  VENDOR_CALL_LATENESS: 'VendorCallLateness',
  /** Vendor caller: quota units spent (one per quota per call). Count. */
  QUOTA_UNITS_SPENT: 'QuotaUnitsSpent',
  /** Vendor caller: requests that found a quota spent for its period (they wait or fail). Count. */
  QUOTA_EXHAUSTED: 'QuotaExhausted',
  /**
   * Vendor caller: requests that found their key's own quota spent for its period (issue 15; they
   * wait or fail; the key is an EMF property, never a dimension). Not QuotaExhausted: a customer
   * at its own quota is no alarm for the contract. Count.
   */
  KEY_QUOTA_EXHAUSTED: 'KeyQuotaExhausted',
  /** Vendor caller: 429s that paused dispatch. Count. */
  VENDOR_PAUSES: 'VendorPauses',
  /** Dispatcher: malformed request messages parked in the request DLQ. Count. */
  PARKED_REQUESTS: 'ParkedRequests',
  /** Callback processor: callbacks that resumed or failed a waiting workflow. Count. */
  CALLBACKS_RESOLVED: 'CallbacksResolved',
  /** Callback processor: callbacks refused and parked (malformed, no job id, too large). Count. */
  CALLBACKS_REJECTED: 'CallbacksRejected',
  /** Callback processor: callbacks for a workflow that had already ended. Count. */
  LATE_CALLBACKS: 'LateCallbacks',
  /** Callback processor: repeated callbacks for a request already resumed. Count. */
  DUPLICATE_CALLBACKS: 'DuplicateCallbacks',
  /** Callback processor: callbacks whose job id was not stored yet (retried). Count. */
  EARLY_CALLBACKS: 'EarlyCallbacks',
  /** Callback processor: webhook arrival to the waiting workflow resumed. Milliseconds. */
  CALLBACK_LATENCY: 'CallbackLatency',
  /**
   * Dispatcher and callback processor: the vendor's jobs in flight (places held), published each
   * time a place is taken or freed (VendorContract.maxJobsInFlight). A gauge: read its Maximum.
   */
  JOBS_IN_FLIGHT: 'JobsInFlight',
  /**
   * Dispatcher: the rate in force each reservation was made with, requests per second (the
   * operators' `requestsPerSecond`, capped at the contract; the contract when none is set). Count
   * unit, read with the Minimum/Maximum statistic.
   */
  RATE_IN_FORCE: 'RateInForce',
  /**
   * Dispatcher, with adaptive pacing: the effective rate each reservation was made with, requests
   * per second: `min(rate in force, adaptive rate)`. Count unit, read with Minimum/Maximum.
   */
  EFFECTIVE_RATE: 'EffectiveRate',
  /** Vendor caller, with adaptive pacing: 429s that decreased the adaptive rate (at most one per cooldown). Count. */
  ADAPTIVE_DECREASES: 'AdaptiveDecreases',
  /**
   * Dispatcher, with limits per key (issue 15): fields of a key's override item that could not be a
   * limit, each replaced by its default (shared/key-settings.ts). Count, with the key as an EMF property.
   */
  KEY_SETTINGS_INVALID: 'KeySettingsInvalid',
  /** Dispatcher, with limits per key: reads of the key settings table that failed (the keys kept their last limits or the defaults). Count. */
  KEY_SETTINGS_READ_FAILED: 'KeySettingsReadFailed',
  /**
   * Dispatcher and vendor caller, with per-key limits: contract slots reserved and never fired
   * because their key's write lost to another reserver and no other call could take them
   * (key-schedule.ts). Count (per reservation, not per key).
   */
  KEY_SLOTS_WASTED: 'KeySlotsWasted',
  /**
   * Dispatcher, with per-key limits: requests set aside as delayed copies because their key had no
   * slot within the reservation horizon or was paused (key-set-aside.ts). Count, the key as an EMF property.
   */
  KEY_SET_ASIDE: 'KeySetAside',
  /**
   * Dispatcher, with per-key limits: how long each request set aside stays aside (its delayed copy's
   * `DelaySeconds`), the key as an EMF property. Summed per key over a period and divided by the
   * period, the key's average number of requests set aside (Little's law): its backlog
   * (orchestrator/key-insights.ts). Milliseconds.
   */
  KEY_SET_ASIDE_DELAY: 'KeySetAsideDelay',
} as const;

/**
 * Per quota of the contract (VendorQuota), the vendor caller publishes, at each unit it spends,
 * the units spent so far in the quota's current period (`QuotaUsed.<name>`, Count) and that as a
 * percentage of the limit (`QuotaUsedPercent.<name>`, Percent). The quota's name is in the metric
 * name, not in a dimension: every custom metric has exactly the {Scope} dimension.
 */
export function quotaUsedMetricName(quotaName: string): string {
  return `QuotaUsed.${quotaName}`;
}

/** See quotaUsedMetricName. */
export function quotaUsedPercentMetricName(quotaName: string): string {
  return `QuotaUsedPercent.${quotaName}`;
}

/**
 * Per named limit of the contract (VendorLimit), the dispatcher and the vendor caller publish, at
 * each slot reservation a limit stopped, how many calls it held back (`NamedLimitWaits.<name>`,
 * Count; a call held back twice counts twice). The name is in the metric name, as for quotas: every
 * custom metric has exactly the {Scope} dimension. Waiting is the limit working: no alarm.
 */
export function namedLimitWaitsMetricName(limitName: string): string {
  return `NamedLimitWaits.${limitName}`;
}
