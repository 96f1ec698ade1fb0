import { Duration } from 'aws-cdk-lib';
import { AdaptivePacing } from './adaptive-pacing';
import { KeyLimits } from './per-key-limits';
import { VendorLimit } from './vendor-limit';
import { QuotaExhaustedAction, VendorQuota } from './vendor-quota';
import { validateDuration, validateRequestsPerSecond, validateWholeNumber } from '../shared/validation';

/**
 * Largest `maxJobsInFlight`: the places live in one DynamoDB item (one conditional write per
 * change, no transaction), and an item holds at most 400 KB
 * (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html). 5000
 * places of about 50 bytes each stay under 250 KB. Mirrors `MAX_JOBS_IN_FLIGHT` of shared/job-places.ts.
 */
const MAX_JOBS_IN_FLIGHT = 5000;

/**
 * Properties of a VendorContract: what the vendor allows, in one place.
 */
export interface VendorContractProps {
  /**
   * The most requests per second the vendor allows. Every layer is derived from it: the pacing of
   * the queue consumer, the proxy's throttling, the backlog alarm. With the consumer's
   * `dynamicDelay`, it is also the ceiling of the rate operators set at run time (AppConfig refuses
   * a higher one).
   */
  readonly requestsPerSecond: number;

  /**
   * Quotas per period: at most so many calls reach the vendor per calendar hour, day or month, or
   * per fixed period (`VendorQuota.perDay(100_000)`, `VendorQuota.every(Duration.hours(6), 5000)`).
   * Every call that reaches the vendor spends one unit of each quota when it fires (retries and
   * result fetches included; a 429 or a 504 too); units are never refunded. Needs
   * `PacingPoint.VENDOR_CALL` (the vendor caller spends the units).
   *
   * @default - no quota
   */
  readonly quotas?: VendorQuota[];

  /**
   * What a request does when a quota is spent for the current period: wait for the next period
   * in the queue (without spending an attempt), or fail at once with `VendorQuotaExhausted`.
   *
   * @default QuotaExhaustedAction.WAIT
   */
  readonly whenQuotaExhausted?: QuotaExhaustedAction;

  /**
   * Named limits inside the contract: a lower rate for the calls each binds (by method and path),
   * e.g. result fetches at 2 RPS inside a 10 RPS contract
   * (`VendorLimit.of({ name: 'results', requestsPerSecond: 2, pathPrefix: '/results' })`). A call
   * consumes the contract and every limit that binds it, in one conditional write; no 1-second
   * window at the vendor holds more than `floor(requestsPerSecond)` of a limit's calls. Needs
   * `PacingPoint.VENDOR_CALL` for the bound at the vendor, like the contract's.
   *
   * @default - no named limit
   */
  readonly limits?: VendorLimit[];

  /**
   * The most of the vendor's jobs in progress at once. A place is taken before the submission call
   * fires (a request without one waits in the queue, spending no attempt and no receive) and held
   * until the job's callback (success or failure) or `maxJobDuration`; never freed by our own
   * timeout alone (the vendor may still run the job). Vendor calls (`callVendorTask`, e.g. result fetches) hold no place. At most 5000.
   *
   * @default - no limit
   */
  readonly maxJobsInFlight?: number;

  /**
   * The longest a vendor job may run by the contract: a place not freed by a callback is freed this
   * long after the submission (e.g. a lost callback). Only with `maxJobsInFlight`.
   *
   * @default - the orchestrator's `callbackTimeout`
   */
  readonly maxJobDuration?: Duration;

  /**
   * Adaptive pacing (opt-in): after a 429 (the vendor's real limit is lower than the contract, or
   * shared with other clients) the effective rate drops, then climbs back toward the rate in force,
   * never above it (README, "Adaptive pacing"). Needs `PacingPoint.VENDOR_CALL` (the vendor caller
   * sees the 429s).
   *
   * @default - none: the pacer paces at the rate in force, a 429 only pauses dispatch
   */
  readonly adaptivePacing?: AdaptivePacing;

  /**
   * Limits per key (issue 15): what each key (a request's `key` on `submitJobTask` /
   * `callVendorTask`: a customer, a tenant) may use, inside the contract, which still holds for
   * all keys together. These are the defaults; operators override them per key at run time in the
   * orchestrator's `keySettingsTable` (README, "Per-key limits: settings"). Every task then needs a
   * key (refused at synth time without one), and `PacingPoint.VENDOR_CALL`.
   *
   * @default - no per-key limits: keys share the contract
   */
  readonly perKey?: KeyLimits;
}

/**
 * The vendor contract: the one home of every limit the orchestrator keeps (its rate, quotas per
 * period, jobs in flight; named limits as they are added). Each layer reads what it enforces
 * from here instead of from props threaded through the orchestrator, so a new limit is declared
 * once and validated once, at synth time.
 *
 * @example
 * const contract = VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 50 });
 */
export class VendorContract {
  /** A contract from its properties; throws at synth time when one cannot hold. */
  public static of(props: VendorContractProps): VendorContract {
    return new VendorContract(props);
  }

  /** The most requests per second the vendor allows. */
  public readonly requestsPerSecond: number;
  /** The quotas per period (empty: none). */
  public readonly quotas: VendorQuota[];
  /** What a request does when a quota is spent. */
  public readonly whenQuotaExhausted: QuotaExhaustedAction;
  /** The named limits inside the contract (empty: none). */
  public readonly limits: VendorLimit[];
  /** Adaptive pacing, when opted in. */
  public readonly adaptivePacing?: AdaptivePacing;
  /**
   * The limits every key gets unless overridden (issue 15).
   *
   * @default - no per-key limits
   */
  public readonly perKey?: KeyLimits;
  /**
   * What the contract allows but probably did not mean (e.g. a quota smaller than one second of
   * the rate): the orchestrator shows them as synth-time warnings.
   */
  public readonly warnings: string[];

  /**
   * The most of the vendor's jobs in progress at once.
   *
   * @default - no limit
   */
  public readonly maxJobsInFlight?: number;

  /**
   * The longest a vendor job may run by the contract (when a place not freed by a callback expires).
   *
   * @default - the orchestrator's `callbackTimeout`
   */
  public readonly maxJobDuration?: Duration;

  private constructor(props: VendorContractProps) {
    validateRequestsPerSecond(props.requestsPerSecond);
    this.requestsPerSecond = props.requestsPerSecond;
    validateWholeNumber('maxJobsInFlight', props.maxJobsInFlight, 1, MAX_JOBS_IN_FLIGHT,
      'the places are kept in one DynamoDB item of at most 400 KB');
    validateDuration('maxJobDuration', props.maxJobDuration, Duration.seconds(1), Duration.days(365));
    if (props.maxJobDuration !== undefined && props.maxJobsInFlight === undefined) {
      throw new Error(`maxJobDuration (${props.maxJobDuration.toHumanString()}) is given without maxJobsInFlight: it says when a job's place in flight expires, so give maxJobsInFlight too, or remove maxJobDuration`);
    }
    this.maxJobsInFlight = props.maxJobsInFlight;
    this.maxJobDuration = props.maxJobDuration;
    const quotas = props.quotas ?? [];
    const names = new Set<string>();
    for (const quota of quotas) {
      if (names.has(quota.name)) {
        throw new Error(`two quotas are named '${quota.name}': give each its own name (VendorQuota.perDay(limit, { name: '...' }))`);
      }
      names.add(quota.name);
    }
    this.quotas = [...quotas];
    this.whenQuotaExhausted = props.whenQuotaExhausted ?? QuotaExhaustedAction.WAIT;
    this.limits = validateLimits(props.requestsPerSecond, props.limits ?? []);
    // Resolved once here, so that a setting that cannot hold under this contract fails at synth time.
    props.adaptivePacing?._spec(props.requestsPerSecond);
    this.adaptivePacing = props.adaptivePacing;
    // A key cannot be allowed more than all keys together (docs/design/per-key-limits.md, 2.1).
    props.perKey?._validateWithin(this);
    this.perKey = props.perKey;
    this.warnings = quotas
      .filter((quota) => quota.limit < props.requestsPerSecond)
      .map((quota) => `quota '${quota.name}' (${quota.limit} per ${quota.period}) is smaller than one second of the rate (${props.requestsPerSecond} requests per second): it is spent in its first second of each period; check the numbers`);
    for (const limit of this.limits) {
      if (Math.floor(limit.requestsPerSecond) === Math.floor(props.requestsPerSecond) && limit.requestsPerSecond >= 1) {
        this.warnings.push(`limit '${limit.name}' (${limit.requestsPerSecond} requests per second) schedules as many calls per second as the contract (${props.requestsPerSecond}): it never binds; check the numbers`);
      }
    }
  }
}

/**
 * The named limits, checked against the contract: a limit above the contract could never bind
 * (the vendor's overall limit is the lower one), so it is refused rather than silently ignored.
 */
function validateLimits(requestsPerSecond: number, limits: VendorLimit[]): VendorLimit[] {
  const names = new Set<string>();
  for (const limit of limits) {
    if (names.has(limit.name)) {
      throw new Error(`two limits are named '${limit.name}': give each its own name (VendorLimit.of({ name: '...' }))`);
    }
    names.add(limit.name);
    if (limit.requestsPerSecond > requestsPerSecond) {
      throw new Error(`limit '${limit.name}' allows ${limit.requestsPerSecond} requests per second, above the contract's ${requestsPerSecond}: a named limit lies inside the contract; lower it or raise requestsPerSecond`);
    }
  }
  return [...limits];
}
