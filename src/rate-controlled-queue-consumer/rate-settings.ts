/**
 * One number configures the rate control: every knob derived from the contract `requestsPerSecond`,
 * and every override checked against it. Pure (no aws-cdk-lib): the constructs turn the result
 * into resources and synth-time annotations. The table is in the README ("Pacing").
 */

/** Where the shared pacing schedule is applied. */
export enum PacingPoint {
  /**
   * Pace the StartExecution calls of the dispatch workflow, which calls the proxy with
   * `apigateway:invoke`. Cheaper (no extra Lambda), but the Express start, the workflow's states
   * and the proxy spread the requests by hundreds of milliseconds, so the contract can be exceeded
   * at the vendor (e.g. 14 requests in one second at 10 RPS were measured): the proxy's throttle
   * is then the only limit there. No code sees the vendor's answer before Step Functions does:
   * an answer over Step Functions' 256 KiB fails the execution with States.DataLimitExceeded,
   * which no Catch handles (nothing parked; the waiting workflow fails at its timeout). Use
   * VENDOR_CALL when answers may be large: its caller refuses them (VendorResponseTooLarge).
   */
  DISPATCH = 'DISPATCH',
  /**
   * Pace the vendor call itself: the dispatcher starts each execution `lead` before its slot and a
   * small Lambda (the vendor caller) fires the signed HTTP request at the slot. The bound holds at
   * the vendor (see pacer.ts for the assumption).
   */
  VENDOR_CALL = 'VENDOR_CALL',
}

/**
 * Smallest fire tolerance of the vendor caller: 1 ms goes to the resolution of `Date.now()`, and at
 * least 1 ms must be left for the timer's own lateness.
 */
export const MIN_FIRE_TOLERANCE_MS = 2;

/** What a user may override; everything else is derived. Times in milliseconds. */
export interface RateSettingsOverrides {
  readonly pacingPoint?: PacingPoint;
  readonly batchSize?: number;
  readonly maxBatchingWindowMs?: number;
  readonly maxConcurrency?: number;
  readonly leadMs?: number;
  readonly latenessToleranceMs?: number;
  readonly fireToleranceMs?: number;
  readonly proxyRateLimit?: number;
  readonly proxyBurstLimit?: number;
  readonly callerReservedConcurrency?: number;
}

/** The derived configuration. Times in milliseconds. */
export interface RateSettings {
  readonly requestsPerSecond: number;
  readonly pacingPoint: PacingPoint;
  readonly batchSize: number;
  /** 0: the event source mapping does not wait. */
  readonly maxBatchingWindowMs: number;
  readonly maxConcurrency: number;
  /** How long before its slot an execution is started (0 with PacingPoint.DISPATCH). */
  readonly leadMs: number;
  /** `L`: slots are spaced for it. */
  readonly latenessToleranceMs: number;
  /** How late the vendor caller may fire (VENDOR_CALL) or the dispatcher may start (DISPATCH). */
  readonly fireToleranceMs: number;
  /** `(1000 + L + 1) / floor(R)` (the 1 ms: `WINDOW_EDGE_MARGIN_MS`). */
  readonly slotIntervalMs: number;
  /** The best utilization the spacing allows: `1000 / (1001 + L)` (when `R` is a whole number). */
  readonly maxUtilization: number;
  readonly proxyRateLimit: number;
  readonly proxyBurstLimit: number;
  /** Vendor callers running at once at full rate: `R x (lead + typical call)`, for sizing; not reserved. */
  readonly expectedCallerConcurrency: number;
  readonly callerReservedConcurrency?: number;
  /** Soft problems: the settings work but may cost throughput or let the proxy 429 paced requests. */
  readonly warnings: RateSettingsWarning[];
}

export interface RateSettingsWarning {
  /** Stable id for `Annotations.addWarningV2`. */
  readonly id: string;
  readonly message: string;
}

/**
 * Added to the `1000 + L` ms that `floor(R)` slot intervals span, so that `floor(R) + 1` requests
 * always span more than one second, also for a vendor that counts closed windows `[a - 1 s, a]` or
 * timestamps in whole milliseconds (pacer.ts, "The window's edge").
 */
export const WINDOW_EDGE_MARGIN_MS = 1;
/**
 * Fire tolerance of the vendor caller: it fires within this long after its slot, by its own clock,
 * or gives the slot up. Chosen from measurements (docs/benchmark.md, "Fire tolerance"): Node.js
 * timers aimed at a wall-clock time woke at most 2.9 ms late at p99 and 5.8 ms at worst on a loaded
 * 2-core machine; 5 ms gives up about 0.1 % of slots there, 3 ms about 1 %, and each
 * millisecond of `L` saved is worth about 0.1 % of the contract.
 */
export const DEFAULT_FIRE_TOLERANCE_MS = 5;
/**
 * The resolution of the clock the caller fires by (`Date.now()`: whole milliseconds): a caller that
 * reads `slot + fireTolerance` may really be up to 1 ms later. Part of the fire term of `L`.
 */
export const FIRE_CLOCK_RESOLUTION_MS = 1;
/**
 * Spread of the caller -> proxy -> vendor latency the default `L` assumes (API Gateway overhead
 * ~10 ms at p99, network ~5 ms; see pacer.ts), rounded up.
 */
export const ASSUMED_PATH_SPREAD_MS = 20;
/**
 * Spread between the clocks of the Lambda hosts the vendor callers run on, which the default `L`
 * assumes. Each caller fires by its own clock, so a caller whose clock runs ahead fires early in
 * real time. AWS publishes no clock-error bound for Lambda; EC2 hosts on the Amazon Time Sync
 * Service stay within about +/- 0.5-2 ms of true time (a ClockBound client's figures,
 * https://pypi.org/project/clockbound/), so two hosts within 4 ms.
 * Measured once deployed from API Gateway's clock (README, "check it once deployed").
 */
export const ASSUMED_CLOCK_SPREAD_MS = 4;
/**
 * Default `L` with PacingPoint.VENDOR_CALL, the whole budget: fire term (fire tolerance + the
 * clock's resolution) + path spread + clock spread = 5 + 1 + 20 + 4 = 30 ms.
 */
export const DEFAULT_VENDOR_CALL_LATENESS_MS =
  DEFAULT_FIRE_TOLERANCE_MS + FIRE_CLOCK_RESOLUTION_MS + ASSUMED_PATH_SPREAD_MS + ASSUMED_CLOCK_SPREAD_MS;
/** Default `L` with PacingPoint.DISPATCH (the dispatcher's own lateness). */
export const DEFAULT_DISPATCH_LATENESS_MS = 50;
/**
 * Default lead: Express StartExecution + ClaimRequest + CheckWaitingWorkflow + the Pass states +
 * the Lambda invoke take ~150-400 ms on AWS (p99 under 1 s); a caller that arrives after its slot
 * gives it up, which costs throughput, never the bound.
 */
export const DEFAULT_LEAD_MS = 1000;
/** A vendor call's typical duration, for the concurrency estimate only. */
const TYPICAL_CALL_MS = 1000;
/** Extra jitter the proxy's bucket absorbs beyond `L` (API Gateway throttling is best-effort). */
const PROXY_JITTER_ALLOWANCE_MS = 100;

/**
 * Derives every rate knob from the contract and checks the overrides against it. Throws on
 * settings that would break the contract or cannot work; returns soft problems as warnings.
 */
export function deriveRateSettings(requestsPerSecond: number, overrides: RateSettingsOverrides = {}): RateSettings {
  const R = requestsPerSecond;
  if (!Number.isFinite(R) || R <= 0) {
    throw new Error(`requestsPerSecond must be a positive number (given ${R})`);
  }
  const r = R >= 1 ? Math.floor(R) : R;
  const pacingPoint = overrides.pacingPoint ?? PacingPoint.VENDOR_CALL;
  const vendorCall = pacingPoint === PacingPoint.VENDOR_CALL;
  const warnings: RateSettingsWarning[] = [];

  const fireToleranceMs = overrides.fireToleranceMs ?? (vendorCall ? DEFAULT_FIRE_TOLERANCE_MS : DEFAULT_DISPATCH_LATENESS_MS);
  const latenessToleranceMs = overrides.latenessToleranceMs ?? (vendorCall ? DEFAULT_VENDOR_CALL_LATENESS_MS : DEFAULT_DISPATCH_LATENESS_MS);
  const leadMs = overrides.leadMs ?? (vendorCall ? DEFAULT_LEAD_MS : 0);
  nonNegative('latenessTolerance', latenessToleranceMs, 1000);
  nonNegative('fireTolerance', fireToleranceMs, 1000);
  nonNegative('lead', leadMs, 60_000);
  if (vendorCall) {
    // The caller reads Date.now(), which counts whole milliseconds: 1 ms of the fire tolerance goes
    // to the clock's resolution (vendor-call.ts, lateBeyondTolerance).
    if (fireToleranceMs < MIN_FIRE_TOLERANCE_MS) {
      throw new Error(`fireTolerance (${fireToleranceMs} ms) must be at least ${MIN_FIRE_TOLERANCE_MS} ms with PacingPoint.VENDOR_CALL: the vendor caller's clock (Date.now()) counts whole milliseconds, so 1 ms of the tolerance goes to its resolution and a smaller one would give nearly every slot up. Raise fireTolerance`);
    }
    if (fireToleranceMs >= latenessToleranceMs) {
      throw new Error(`fireTolerance (${fireToleranceMs} ms) must be below latenessTolerance (${latenessToleranceMs} ms): latenessTolerance covers the caller's lateness plus the spread of the network path to the vendor, so nothing would be left for the path. Raise latenessTolerance or lower fireTolerance`);
    }
    const leftForPathAndClocks = latenessToleranceMs - fireToleranceMs - FIRE_CLOCK_RESOLUTION_MS;
    if (leftForPathAndClocks < ASSUMED_PATH_SPREAD_MS + ASSUMED_CLOCK_SPREAD_MS) {
      warnings.push({
        id: 'cdk-async-external-api:latenessTolerance',
        message: `latenessTolerance ${latenessToleranceMs} ms leaves ${leftForPathAndClocks} ms for the spread of the caller -> proxy -> vendor latency and of the callers' clocks after the fire term of ${fireToleranceMs + FIRE_CLOCK_RESOLUTION_MS} ms (fire tolerance ${fireToleranceMs} ms + ${FIRE_CLOCK_RESOLUTION_MS} ms clock resolution); the contract bound at the vendor assumes they spread no more than that (the default assumes ${ASSUMED_PATH_SPREAD_MS} ms for the path and ${ASSUMED_CLOCK_SPREAD_MS} ms for the clocks). Keep latenessTolerance >= fireTolerance + ${FIRE_CLOCK_RESOLUTION_MS + ASSUMED_PATH_SPREAD_MS + ASSUMED_CLOCK_SPREAD_MS} ms unless you measured both (README, "check it once deployed")`,
      });
    }
    if (leadMs < 200) {
      warnings.push({
        id: 'cdk-async-external-api:lead',
        message: `lead ${leadMs} ms is shorter than an Express start plus the workflow's states usually take (150-400 ms): many vendor callers will arrive after their slot and give it up, which lowers throughput (never the bound). The default is ${DEFAULT_LEAD_MS} ms`,
      });
    }
  } else if (overrides.fireToleranceMs !== undefined && overrides.fireToleranceMs !== latenessToleranceMs) {
    throw new Error(`fireTolerance is only used with PacingPoint.VENDOR_CALL (given ${overrides.fireToleranceMs} ms with PacingPoint.DISPATCH): remove it`);
  }
  if (!vendorCall && overrides.leadMs !== undefined && overrides.leadMs !== 0) {
    throw new Error(`lead is only used with PacingPoint.VENDOR_CALL (given ${overrides.leadMs} ms with PacingPoint.DISPATCH): starting executions before their slot would let the dispatch workflow call the vendor early. Remove lead or use PacingPoint.VENDOR_CALL`);
  }

  const batchSize = overrides.batchSize ?? (R <= 10 ? Math.max(1, Math.ceil(R)) : Math.min(10_000, Math.ceil(R)));
  const maxBatchingWindowMs = overrides.maxBatchingWindowMs ?? (batchSize > 10 ? 1000 : 0);
  const maxConcurrency = overrides.maxConcurrency ?? (R < 100 ? 2 : Math.min(1000, 2 + Math.ceil(R / 500)));

  // As the pacer computes it (pacer.ts slotIntervalMs, which this pure module cannot import: it
  // bundles the AWS SDK): rounded up to a multiple of 1/1024 ms.
  const slotIntervalMs = Math.ceil(((1000 + latenessToleranceMs + WINDOW_EDGE_MARGIN_MS) / r) * 1024) / 1024;
  const maxUtilization = (1000 / slotIntervalMs) / R;

  const proxyRateLimit = overrides.proxyRateLimit ?? R;
  if (!(proxyRateLimit > 0) || proxyRateLimit > R) {
    throw new Error(`throttlingRateLimit must be above 0 and at most the contract of ${R} requests per second (given ${proxyRateLimit}): the proxy must never let more through than the vendor allows`);
  }
  // Paced requests reach the proxy at most 1 + r x (w + L) / (1001 + L) in any w ms, while the
  // bucket refills R x w / 1000: the deficit never exceeds 1 + r x L / 1000 tokens. The bucket
  // holds that plus an allowance for jitter the pacing does not model.
  const minimumBurst = 1 + Math.ceil((r * latenessToleranceMs) / 1000);
  const proxyBurstLimit = overrides.proxyBurstLimit ?? (vendorCall
    ? Math.max(2, 1 + Math.ceil((R * (latenessToleranceMs + PROXY_JITTER_ALLOWANCE_MS)) / 1000))
    : Math.max(2, Math.ceil(R / 4)));
  if (vendorCall && proxyRateLimit >= r && proxyBurstLimit < minimumBurst) {
    warnings.push({
      id: 'cdk-async-external-api:throttlingBurstLimit',
      message: `throttlingBurstLimit ${proxyBurstLimit} is below ${minimumBurst}, what paced requests can need at ${R} requests per second with latenessTolerance ${latenessToleranceMs} ms: the proxy may answer 429 to requests inside the contract (each pauses dispatch). Give at least ${minimumBurst}`,
    });
  }
  if (proxyRateLimit < r) {
    warnings.push({
      id: 'cdk-async-external-api:throttlingRateLimit',
      message: `throttlingRateLimit ${proxyRateLimit} is below the paced rate of ${r} requests per second: the proxy will answer 429 to paced requests under backlog (each pauses dispatch and retries). Lower requestsPerSecond instead to pace below the contract`,
    });
  }

  const expectedCallerConcurrency = vendorCall ? Math.ceil((R * (leadMs + fireToleranceMs + TYPICAL_CALL_MS)) / 1000) + 1 : 0;
  const callerReservedConcurrency = overrides.callerReservedConcurrency;
  if (callerReservedConcurrency !== undefined) {
    if (!vendorCall) {
      throw new Error(`callerReservedConcurrency is only used with PacingPoint.VENDOR_CALL (given ${callerReservedConcurrency}): remove it`);
    }
    const minimum = Math.ceil((R * (leadMs + fireToleranceMs)) / 1000) + 1;
    if (callerReservedConcurrency < minimum) {
      warnings.push({
        id: 'cdk-async-external-api:callerReservedConcurrency',
        message: `callerReservedConcurrency ${callerReservedConcurrency} is below ${minimum}, the callers that wait for their slots at ${R} requests per second with a lead of ${leadMs} ms: invocations will be throttled, arrive late and give their slots up (lower throughput). Give at least ${expectedCallerConcurrency} (rate x (lead + a typical call))`,
      });
    }
  }

  return {
    requestsPerSecond: R,
    pacingPoint,
    batchSize,
    maxBatchingWindowMs,
    maxConcurrency,
    leadMs,
    latenessToleranceMs,
    fireToleranceMs,
    slotIntervalMs,
    maxUtilization,
    proxyRateLimit,
    proxyBurstLimit,
    expectedCallerConcurrency,
    ...(callerReservedConcurrency !== undefined ? { callerReservedConcurrency } : {}),
    warnings,
  };
}

function nonNegative(name: string, value: number, max: number): void {
  if (!Number.isFinite(value) || value < 0 || value > max) {
    throw new Error(`${name} must be between 0 and ${max} ms (given ${value} ms)`);
  }
}

/**
 * `ms` rounded up to a multiple of 1/1024 ms, the grid every slot time lies on (see "Exact
 * arithmetic" in pacer.ts's module comment). Rounding up never brings a slot or the end of a pause
 * closer.
 */
export function roundUpToSlotGrid(ms: number): number {
  return Math.ceil(ms * 1024) / 1024;
}
