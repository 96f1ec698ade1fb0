import { Duration, Token } from 'aws-cdk-lib';
import { isValidTimeZone, QuotaSpec, QuotaUnit } from './quota-period';

/**
 * Options of a calendar quota (`VendorQuota.perHour`, `perDay`, `perMonth`).
 */
export interface CalendarQuotaOptions extends FixedQuotaOptions {
  /**
   * The IANA time zone whose calendar the periods follow (e.g. `Europe/Berlin`): a day runs from
   * local midnight to local midnight (23 or 25 hours on daylight-saving days).
   *
   * @default 'UTC'
   */
  readonly timeZone?: string;
}

/**
 * Options of a fixed-period quota (`VendorQuota.every`).
 */
export interface FixedQuotaOptions {
  /**
   * The quota's name: part of its metrics' names (`QuotaUsed.<name>`) and of the key of its
   * counter. Letters, digits, `-` and `_`, at most 64. Keep it unchanged across deploys: a new
   * name starts a new counter.
   *
   * @default - `hourly`, `daily`, `monthly` or `every-<seconds>s`
   */
  readonly name?: string;

  /**
   * The orchestrator's alarm for this quota goes off when this fraction of the period's limit is
   * spent (0 < alarmAt <= 1).
   *
   * @default 0.8
   */
  readonly alarmAt?: number;
}

/** What a request does when a quota it needs is spent for the current period. */
export enum QuotaExhaustedAction {
  /**
   * The request goes back to the queue and is tried again when the period ends (delayed
   * deliveries of at most 15 minutes each), without spending an attempt. A request whose deadline
   * comes before the period ends fails at once with `VendorQuotaExhausted` instead.
   */
  WAIT = 'WAIT',
  /** The request fails at once with `VendorQuotaExhausted` (parked in the request dead-letter queue). */
  FAIL = 'FAIL',
}

/**
 * A quota of the vendor contract: at most `limit` calls reach the vendor per period.
 *
 * Every call that reaches the vendor spends a unit (submissions, result fetches and other calls,
 * retries included) when it fires, whatever the answer (a 429 or a 504 too); units are never
 * refunded.
 *
 * @example
 * VendorContract.of({
 *   requestsPerSecond: 10,
 *   quotas: [VendorQuota.perDay(100_000), VendorQuota.perMonth(2_000_000, { timeZone: 'Europe/Berlin' })],
 * });
 */
export class VendorQuota {
  /** At most `limit` calls per calendar hour. */
  public static perHour(limit: number, options: CalendarQuotaOptions = {}): VendorQuota {
    return VendorQuota.calendar('hour', 'hourly', limit, options);
  }

  /** At most `limit` calls per calendar day (UTC unless `timeZone` is given). */
  public static perDay(limit: number, options: CalendarQuotaOptions = {}): VendorQuota {
    return VendorQuota.calendar('day', 'daily', limit, options);
  }

  /** At most `limit` calls per calendar month (UTC unless `timeZone` is given). */
  public static perMonth(limit: number, options: CalendarQuotaOptions = {}): VendorQuota {
    return VendorQuota.calendar('month', 'monthly', limit, options);
  }

  /**
   * At most `limit` calls per fixed period of `period`, aligned to the Unix epoch
   * (1970-01-01T00:00:00Z): 6-hour periods start at 00:00, 06:00, 12:00 and 18:00 UTC.
   * Whole seconds, from 1 second to 366 days.
   */
  public static every(period: Duration, limit: number, options: FixedQuotaOptions = {}): VendorQuota {
    if (Token.isUnresolved(period.toMilliseconds())) {
      throw new Error('VendorQuota.every: the period must be a concrete Duration, not a token');
    }
    const ms = period.toMilliseconds();
    if (!Number.isInteger(ms / 1000) || ms < 1000 || ms > 366 * 86_400_000) {
      throw new Error(`VendorQuota.every: the period must be whole seconds from 1 second to 366 days, got ${period.toHumanString()}: give e.g. Duration.hours(6)`);
    }
    return new VendorQuota({ name: options.name ?? `every-${ms / 1000}s`, limit, unit: 'fixed', periodMs: ms }, options.alarmAt);
  }

  private static calendar(unit: QuotaUnit, defaultName: string, limit: number, options: CalendarQuotaOptions): VendorQuota {
    const timeZone = options.timeZone ?? 'UTC';
    if (!isValidTimeZone(timeZone)) {
      throw new Error(`VendorQuota: unknown time zone '${timeZone}': give an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York'`);
    }
    return new VendorQuota({ name: options.name ?? defaultName, limit, unit, timeZone }, options.alarmAt);
  }

  /** The quota's name (the `Quota` dimension of its metrics). */
  public readonly name: string;
  /** Calls allowed per period. */
  public readonly limit: number;
  /** The period, described (e.g. `day (UTC)`, `fixed 21600 s`). */
  public readonly period: string;
  /** The fraction of the limit at which the orchestrator's alarm goes off. */
  public readonly alarmAt: number;

  private readonly spec: QuotaSpec;

  private constructor(spec: QuotaSpec, alarmAt: number = 0.8) {
    if (!(alarmAt > 0 && alarmAt <= 1)) {
      throw new Error(`VendorQuota '${spec.name}': alarmAt must be a fraction above 0 and at most 1, got ${alarmAt}: e.g. 0.8 for an alarm at 80 % of the limit`);
    }
    this.alarmAt = alarmAt;
    if (!Number.isInteger(spec.limit) || spec.limit < 1 || spec.limit > 1e12) {
      throw new Error(`VendorQuota '${spec.name}': the limit must be a whole number from 1 to 1e12, got ${spec.limit}`);
    }
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(spec.name)) {
      throw new Error(`VendorQuota: the name must be 1 to 64 letters, digits, '-' or '_', got '${spec.name}'`);
    }
    this.spec = spec;
    this.name = spec.name;
    this.limit = spec.limit;
    this.period = spec.unit === 'fixed' ? `fixed ${spec.periodMs! / 1000} s` : `${spec.unit} (${spec.timeZone})`;
  }

  /**
   * The JSON form the handlers read (quota-period.ts).
   * @internal
   */
  public _spec(): QuotaSpec {
    return { ...this.spec };
  }
}
