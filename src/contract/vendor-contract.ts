import { VendorLimit } from './vendor-limit';
import { QuotaExhaustedAction, VendorQuota } from './vendor-quota';
import { validateRequestsPerSecond } from '../shared/validation';

/**
 * Properties of a VendorContract: what the vendor allows, in one place.
 */
export interface VendorContractProps {
  /**
   * The most requests per second the vendor allows. Every layer is derived from it: the pacing of
   * the queue consumer, the proxy's throttling, the backlog alarm.
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
}

/**
 * The vendor contract: the one home of every limit the orchestrator keeps (its rate, quotas per
 * period; jobs in flight and named limits as they are added). Each layer reads what it enforces
 * from here instead of from props threaded through the orchestrator, so a new limit is declared
 * once and validated once, at synth time.
 *
 * @example
 * const contract = VendorContract.of({ requestsPerSecond: 10 });
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
  /**
   * What the contract allows but probably did not mean (e.g. a quota smaller than one second of
   * the rate): the orchestrator shows them as synth-time warnings.
   */
  public readonly warnings: string[];

  private constructor(props: VendorContractProps) {
    validateRequestsPerSecond(props.requestsPerSecond);
    this.requestsPerSecond = props.requestsPerSecond;
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
