/**
 * The vendor simulator's accounts (issue 15): with credentials per key, each key's secret
 * `vendor/<key>` holds that key's own API key, so the vendor tells the keys apart by the
 * credential each call carries, as a real vendor does (it knows its accounts, not our keys). Each
 * account may have its own rate limit: a call that finds its account's sliding second already
 * holding floor(limit) calls (refused ones included) gets 429 and counts as a violation of that
 * key. The figures come from here, never from the library's own per-key counters.
 *
 * A key's limit may change during a run (`requestsPerSecondScheduleByKey`, the fault suite's
 * `key-limit-change`): as for the contract (local/rate-schedule.ts), a sliding second is bound by
 * the limit in force at its START, so a decrease binds the seconds starting at or after it and an
 * increase only the seconds wholly after it.
 */
import { rateInForceAt, type RateChange } from './rate-schedule';


/** The vendor's accounts, as the simulator's `accounts` option. Plain data: it crosses to the vendor's worker thread. */
export interface VendorAccountsOptions {
  /** The request header that carries the account's credential, e.g. `x-api-key`. */
  readonly credentialHeader: string;
  /**
   * Each account's credential and the key it belongs to, e.g. `{ 'api-key-acme': 'acme' }` (the
   * secret `vendor/acme` holds `api-key-acme`). A call with no credential or another one gets 401.
   */
  readonly credentials: Record<string, string>;
  /**
   * Every account's limit, calls per sliding second (each call of the account counts, whatever its
   * method). @default - unlimited (arrivals still counted per key)
   */
  readonly requestsPerSecond?: number;
  /** Limits of some keys, over `requestsPerSecond`. @default - none */
  readonly requestsPerSecondByKey?: Record<string, number>;
  /**
   * Changes of some keys' limits during the run (epoch ms, ascending), from the key's limit above
   * (`requestsPerSecondByKey`, else `requestsPerSecond`). @default - none
   */
  readonly requestsPerSecondScheduleByKey?: Record<string, RateChange[]>;
}

/** What the vendor saw of one account. */
export interface VendorAccountStats {
  /** The limit enforced (at the end of the run, with a schedule), floor(requestsPerSecond) (at least 1); undefined: none. */
  readonly limit?: number;
  /** Calls that carried the account's credential, refused ones included. */
  readonly arrivals: number;
  /** Calls that found the account's sliding second full (each got 429). */
  readonly violations: number;
  /** The most of the account's calls in any sliding 1 s window (counted as the simulator's `window` says). */
  readonly maxInAnyWindow: number;
}

/** What the vendor saw of its accounts. */
export interface VendorAccountsStats {
  /** Per key (only keys that called, or that have a limit of their own). */
  readonly byKey: Record<string, VendorAccountStats>;
  /** Calls with no credential or one no account has (each got 401, unless refused for the contract first). */
  readonly unknownCredential: number;
  /** Violations of all keys together. */
  readonly violations: number;
}

/** A refusal the simulator sends as is. */
export interface AccountRefusal {
  readonly status: number;
  readonly body: { readonly error: string };
  readonly headers?: Record<string, string>;
}

/** Counts arrivals in the window ending at `t` / the most in any window (the simulator's own window rule). */
export type CountInWindow = (arrivals: number[], t: number) => number;
export type MaxInAnyWindow = (arrivals: number[]) => number;

export class VendorAccounts {
  private readonly arrivals = new Map<string, number[]>();
  private readonly violations = new Map<string, number>();
  private unknownCredential = 0;

  constructor(
    private readonly options: VendorAccountsOptions,
    private readonly countInWindow: CountInWindow,
    private readonly maxInAnyWindow: MaxInAnyWindow,
  ) {
    validateAccounts(options);
  }

  /** The credential's header, lower case (as Node.js gives request headers). */
  public get credentialHeader(): string {
    return this.options.credentialHeader.toLowerCase();
  }

  /** The key of a credential; undefined: no such account. */
  public keyOf(credential: string | undefined): string | undefined {
    return credential === undefined || !Object.prototype.hasOwnProperty.call(this.options.credentials, credential)
      ? undefined : this.options.credentials[credential];
  }

  /**
   * The limit enforced for a key (floor, at least 1) on the sliding second starting at `atMs`
   * (default: the last one scheduled), or undefined when it has none.
   */
  public limitOf(key: string, atMs: number = Infinity): number | undefined {
    const byKey = this.options.requestsPerSecondByKey ?? {};
    const base = Object.prototype.hasOwnProperty.call(byKey, key) ? byKey[key] : this.options.requestsPerSecond;
    const schedules = this.options.requestsPerSecondScheduleByKey ?? {};
    const schedule = Object.prototype.hasOwnProperty.call(schedules, key) ? schedules[key] : [];
    const rps = base === undefined && schedule.every((c) => c.atMs > atMs) ? undefined : rateInForceAt(atMs, base ?? Infinity, schedule);
    return rps === undefined || rps === Infinity ? undefined : Math.max(1, Math.floor(rps));
  }

  /**
   * Counts one arrival at `now` carrying `credential`; the refusal when the credential is unknown
   * (401) or its account's second was already full (429, a violation of that key).
   * @param refusedAlready the call is refused for the contract: counted, never refused twice
   */
  public arrive(credential: string | undefined, now: number, refusedAlready: boolean): AccountRefusal | undefined {
    const key = this.keyOf(credential);
    if (key === undefined) {
      this.unknownCredential++;
      return refusedAlready ? undefined : {
        status: 401, body: { error: `unknown credential in ${this.options.credentialHeader}: no account has it` },
      };
    }
    const arrivals = this.arrivals.get(key) ?? [];
    arrivals.push(now);
    this.arrivals.set(key, arrivals);
    // The sliding second ending now is bound by the limit in force at its start.
    const limit = this.limitOf(key, now - 1000);
    if (refusedAlready || limit === undefined || this.countInWindow(arrivals, now) <= limit) {
      return undefined;
    }
    this.violations.set(key, (this.violations.get(key) ?? 0) + 1);
    return {
      status: 429,
      body: { error: `account '${key}' exceeded its limit: at most ${limit} requests in any second` },
      headers: { 'Retry-After': '1' },
    };
  }

  public stats(): VendorAccountsStats {
    const keys = new Set([...this.arrivals.keys(), ...Object.keys(this.options.requestsPerSecondByKey ?? {}),
      ...Object.keys(this.options.requestsPerSecondScheduleByKey ?? {})]);
    const byKey: Record<string, VendorAccountStats> = {};
    let violations = 0;
    for (const key of [...keys].sort()) {
      const arrivals = this.arrivals.get(key) ?? [];
      const limit = this.limitOf(key);
      const keyViolations = this.violations.get(key) ?? 0;
      violations += keyViolations;
      byKey[key] = {
        ...(limit === undefined ? {} : { limit }),
        arrivals: arrivals.length,
        violations: keyViolations,
        maxInAnyWindow: this.maxInAnyWindow(arrivals),
      };
    }
    return { byKey, unknownCredential: this.unknownCredential, violations };
  }
}

function validateAccounts(o: VendorAccountsOptions): void {
  if (!/^[A-Za-z0-9-]+$/.test(o.credentialHeader ?? '')) {
    throw new Error(`accounts.credentialHeader must be a header name, e.g. 'x-api-key' (given ${JSON.stringify(o.credentialHeader)})`);
  }
  if (Object.keys(o.credentials ?? {}).length === 0) {
    throw new Error('accounts.credentials must name at least one credential and its key, e.g. { \'api-key-acme\': \'acme\' }');
  }
  const limits: Array<[string, number | undefined]> = [['accounts.requestsPerSecond', o.requestsPerSecond],
    ...Object.entries(o.requestsPerSecondByKey ?? {}).map(([key, rps]) => [`accounts.requestsPerSecondByKey['${key}']`, rps] as [string, number]),
    ...Object.entries(o.requestsPerSecondScheduleByKey ?? {}).flatMap(([key, schedule]) => schedule.map((c, i) =>
      [`accounts.requestsPerSecondScheduleByKey['${key}'][${i}].requestsPerSecond`, c.requestsPerSecond] as [string, number]))];
  for (const [name, rps] of limits) {
    if (rps !== undefined && !(rps > 0)) {
      throw new Error(`${name} must be above 0 requests per second (given ${rps}); leave it out for no limit`);
    }
  }
}
