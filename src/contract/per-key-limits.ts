import { Duration, Token } from 'aws-cdk-lib';
import { VendorQuota } from './vendor-quota';
import type { KeyLimitsSpec } from '../shared/key-limits';
import { validateDuration, validateWholeNumber } from '../shared/validation';

/**
 * Largest per-key `maxJobsInFlight`: a key's places live in one DynamoDB item, like the
 * contract's (`MAX_JOBS_IN_FLIGHT` of vendor-contract.ts and shared/job-places.ts).
 */
const MAX_KEY_JOBS_IN_FLIGHT = 5000;

/** `priorityAging` when none is given (docs/design/per-key-limits.md, section 4). */
const DEFAULT_PRIORITY_AGING = Duration.seconds(30);

/**
 * Properties of KeyLimits: what each key (customer, tenant) of the vendor may use unless an
 * operator overrides it for that key in the key settings table.
 */
export interface KeyLimitsProps {
  /**
   * The most requests per second of one key. At most the contract's `requestsPerSecond` (all
   * keys together).
   */
  readonly requestsPerSecond: number;

  /**
   * The most of one key's vendor jobs in progress at once. Only when the contract has
   * `maxJobsInFlight`, and at most it.
   *
   * @default - no per-key limit: a key may hold every place of the contract
   */
  readonly maxJobsInFlight?: number;

  /**
   * Quotas per key: each names a quota of the contract (by its name, e.g. `daily` for
   * `VendorQuota.perDay`) with the same period, and allows at most the contract's limit.
   *
   * @default - no per-key quota: a key may spend all of the contract's
   */
  readonly quotas?: VendorQuota[];

  /**
   * A waiting request rises one priority level per `priorityAging` since it started (low becomes
   * normal, then high), so a low request waits at most about twice this long behind higher ones.
   * From 1 second to 1 hour.
   *
   * @default Duration.seconds(30)
   */
  readonly priorityAging?: Duration;
}

/**
 * Per-key limits of a vendor contract (issue 15): the defaults every key gets, each bound inside
 * the contract, which keeps holding for all keys together. Operators override them per key at run
 * time in the orchestrator's `keySettingsTable` (README, "Per-key limits: settings").
 *
 * Checked against the contract when given to `VendorContract.of({ perKey })`.
 *
 * @example
 * VendorContract.of({
 *   requestsPerSecond: 100,
 *   maxJobsInFlight: 500,
 *   quotas: [VendorQuota.perDay(1_000_000)],
 *   perKey: KeyLimits.of({ requestsPerSecond: 5, maxJobsInFlight: 20, quotas: [VendorQuota.perDay(50_000)] }),
 * });
 */
export class KeyLimits {
  /** Per-key limits from their properties; throws at synth time when one cannot hold. */
  public static of(props: KeyLimitsProps): KeyLimits {
    return new KeyLimits(props);
  }

  /** The most requests per second of one key. */
  public readonly requestsPerSecond: number;
  /** The per-key quotas (empty: none). */
  public readonly quotas: VendorQuota[];
  /** After how long a waiting request rises one priority level. */
  public readonly priorityAging: Duration;

  /**
   * The most of one key's jobs in flight.
   *
   * @default - no per-key limit
   */
  public readonly maxJobsInFlight?: number;

  private constructor(props: KeyLimitsProps) {
    if (Token.isUnresolved(props.requestsPerSecond)) {
      throw new Error('KeyLimits: requestsPerSecond must be a plain number known at synth time (given a token)');
    }
    if (!Number.isFinite(props.requestsPerSecond) || props.requestsPerSecond <= 0) {
      throw new Error(`KeyLimits: requestsPerSecond must be above 0 (given ${props.requestsPerSecond}): it is the most requests per second of one key`);
    }
    validateWholeNumber('KeyLimits: maxJobsInFlight', props.maxJobsInFlight, 1, MAX_KEY_JOBS_IN_FLIGHT,
      "a key's places are kept in one DynamoDB item of at most 400 KB");
    const priorityAging = props.priorityAging ?? DEFAULT_PRIORITY_AGING;
    if (priorityAging.isUnresolved()) {
      throw new Error('KeyLimits: priorityAging must be a concrete Duration known at synth time (given a token)');
    }
    validateDuration('KeyLimits: priorityAging', priorityAging, Duration.seconds(1), Duration.hours(1),
      'a waiting request rises one priority level per priorityAging; give e.g. Duration.seconds(30)');
    const names = new Set<string>();
    for (const quota of props.quotas ?? []) {
      if (names.has(quota.name)) {
        throw new Error(`KeyLimits: two per-key quotas are named '${quota.name}': give each quota of the contract at most one per-key limit`);
      }
      names.add(quota.name);
    }
    this.requestsPerSecond = props.requestsPerSecond;
    this.maxJobsInFlight = props.maxJobsInFlight;
    this.quotas = [...props.quotas ?? []];
    this.priorityAging = priorityAging;
  }

  /**
   * The per-key limits checked against the contract they belong to: a key cannot be allowed more
   * than all keys together, a per-key limit of something the contract does not limit has nothing
   * to lie inside, and a quota is matched to the contract's by name and period. Throws what was
   * given and how to fix it. Called by `VendorContract`.
   * @internal
   */
  public _validateWithin(contract: { readonly requestsPerSecond: number; readonly maxJobsInFlight?: number; readonly quotas: VendorQuota[] }): void {
    if (this.requestsPerSecond > contract.requestsPerSecond) {
      throw new Error(`perKey allows ${this.requestsPerSecond} requests per second per key, above the contract's ${contract.requestsPerSecond} for all keys together: `
        + 'lower perKey.requestsPerSecond or raise the contract\'s requestsPerSecond');
    }
    if (this.maxJobsInFlight !== undefined) {
      if (contract.maxJobsInFlight === undefined) {
        throw new Error(`perKey.maxJobsInFlight (${this.maxJobsInFlight}) is given but the contract has no maxJobsInFlight: a key's jobs in flight lie inside the contract's; `
          + 'give the contract maxJobsInFlight too, or remove perKey.maxJobsInFlight');
      }
      if (this.maxJobsInFlight > contract.maxJobsInFlight) {
        throw new Error(`perKey.maxJobsInFlight (${this.maxJobsInFlight}) is above the contract's maxJobsInFlight (${contract.maxJobsInFlight}) for all keys together: lower one or raise the other`);
      }
    }
    for (const quota of this.quotas) {
      const own = contract.quotas.find((candidate) => candidate.name === quota.name);
      if (!own) {
        const known = contract.quotas.map((q) => `'${q.name}' (per ${q.period})`).join(', ');
        throw new Error(`perKey quota '${quota.name}' (${quota.limit} per ${quota.period}) names no quota of the contract (${known || 'it has none'}): `
          + 'a per-key quota lies inside the contract\'s quota of the same name and period; add that quota to the contract or name it with { name: \'...\' }');
      }
      if (own.period !== quota.period) {
        throw new Error(`perKey quota '${quota.name}' is per ${quota.period}, but the contract's quota '${own.name}' is per ${own.period}: give the per-key quota the same period`);
      }
      if (quota.limit > own.limit) {
        throw new Error(`perKey quota '${quota.name}' allows ${quota.limit} per ${quota.period} per key, above the contract's ${own.limit} for all keys together: lower it`);
      }
    }
  }

  /**
   * The run-time defaults every key gets (the `KEY_LIMITS` environment variable, as JSON).
   * @internal
   */
  public _spec(): KeyLimitsSpec {
    return {
      requestsPerSecond: this.requestsPerSecond,
      ...(this.maxJobsInFlight !== undefined ? { maxJobsInFlight: this.maxJobsInFlight } : {}),
      quotas: Object.fromEntries(this.quotas.map((quota) => [quota.name, quota.limit])),
      priorityAgingMs: this.priorityAging.toMilliseconds(),
      paused: false,
    };
  }
}
