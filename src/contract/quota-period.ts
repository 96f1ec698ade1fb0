/**
 * Quota periods: which period an instant belongs to, for calendar periods (hour, day, month) in
 * UTC or an IANA time zone, and for fixed periods of any length.
 *
 * Shared by the construct library (validation at synth time) and the handlers that spend quota
 * units (vendor-call.ts, via quota-ledger.ts): plain TypeScript, no aws-cdk-lib or SDK imports.
 *
 * - Fixed periods are aligned to the Unix epoch (1970-01-01T00:00:00Z): a period of `p` ms starts
 *   at every multiple of `p`, so 6-hour periods start at 00:00, 06:00, 12:00 and 18:00 UTC and two
 *   deployments (or two orchestrators sharing one vendor) agree on the boundaries without sharing
 *   any state. A vendor whose fixed window starts elsewhere needs a period that divides into its
 *   own, or a calendar period.
 * - Calendar periods follow the wall clock of their time zone (UTC by default). A day is from local
 *   midnight to the next local midnight: 23 or 25 hours on daylight-saving days. Where midnight
 *   does not exist (a zone that springs forward at 00:00), the day starts at the first instant of
 *   that date. An hour is computed on instants (the zone's offset at that instant), so the hour
 *   repeated when clocks fall back is two periods, not one.
 * Time zones are resolved with `Intl` (Node.js ships full ICU, Lambda's Node.js runtimes included).
 */

/** The JSON form of a quota, as the handlers receive it (environment variable). */
export interface QuotaSpec {
  /** Unique among the contract's quotas; part of the DynamoDB key of its counter. */
  readonly name: string;
  /** Vendor calls allowed per period. */
  readonly limit: number;
  /** `hour`, `day`, `month` (calendar, in `timeZone`), or `fixed` (`periodMs` long, epoch-aligned). */
  readonly unit: QuotaUnit;
  /** For `fixed` only: the period's length in milliseconds. */
  readonly periodMs?: number;
  /** For calendar units: the IANA time zone. Default `UTC`. */
  readonly timeZone?: string;
}

export type QuotaUnit = 'hour' | 'day' | 'month' | 'fixed';

/** One period of a quota: `[startMs, endMs)`. */
export interface QuotaPeriod {
  readonly startMs: number;
  readonly endMs: number;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** Whether `timeZone` is an IANA time zone name Intl knows. */
export function isValidTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}

/** The period of `spec` that holds the instant `nowMs`. */
export function quotaPeriodAt(spec: QuotaSpec, nowMs: number): QuotaPeriod {
  const timeZone = spec.timeZone ?? 'UTC';
  switch (spec.unit) {
    case 'fixed': {
      const p = spec.periodMs!;
      if (!(p > 0)) throw new Error(`quota '${spec.name}': a fixed period needs periodMs > 0, got ${p}`);
      const startMs = Math.floor(nowMs / p) * p;
      return { startMs, endMs: startMs + p };
    }
    case 'hour': {
      // On instants: the zone's offset at `nowMs` says where its wall-clock hour began.
      const offsetMs = offsetAt(timeZone, nowMs);
      const startMs = nowMs - mod(nowMs + offsetMs, HOUR_MS);
      // A change of offset inside the hour (rare: DST changes happen on whole or half hours) ends
      // the period at the next wall-clock hour of the new offset; never later than an hour.
      return { startMs, endMs: Math.min(startMs + HOUR_MS, nextHourStart(timeZone, startMs)) };
    }
    case 'day':
    case 'month': {
      const wall = wallClock(timeZone, nowMs);
      const [y, m, d] = [wall.getUTCFullYear(), wall.getUTCMonth(), wall.getUTCDate()];
      const start = spec.unit === 'day' ? Date.UTC(y, m, d) : Date.UTC(y, m, 1);
      const next = spec.unit === 'day' ? Date.UTC(y, m, d + 1) : Date.UTC(y, m + 1, 1);
      return { startMs: instantOfLocalDateStart(timeZone, start), endMs: instantOfLocalDateStart(timeZone, next) };
    }
    default:
      throw new Error(`quota '${spec.name}': unknown period unit ${JSON.stringify(spec.unit)}`);
  }
}

/** The shortest a period of `spec` can be, in milliseconds (a 23-hour DST day, a 28-day month). */
export function shortestPeriodMs(spec: QuotaSpec): number {
  switch (spec.unit) {
    case 'fixed': return spec.periodMs!;
    // Offsets change by at most an hour at once in practice; an hour period may be cut by one.
    case 'hour': return HOUR_MS / 2;
    case 'day': return DAY_MS - HOUR_MS;
    case 'month': return 28 * DAY_MS - HOUR_MS;
    default: throw new Error(`unknown period unit ${JSON.stringify(spec.unit)}`);
  }
}

function mod(a: number, b: number): number {
  return ((a % b) + b) % b;
}

function nextHourStart(timeZone: string, startMs: number): number {
  // The first instant after startMs at which the wall clock shows a whole hour (minute 0).
  const offsetAfter = offsetAt(timeZone, startMs + HOUR_MS);
  const candidate = startMs + HOUR_MS - mod(startMs + HOUR_MS + offsetAfter, HOUR_MS);
  return candidate > startMs ? candidate : startMs + HOUR_MS;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The wall-clock time of `timeZone` at `instantMs`, as a Date whose UTC fields are the local ones. */
function wallClock(timeZone: string, instantMs: number): Date {
  let format = formatters.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    formatters.set(timeZone, format);
  }
  const parts: Record<string, number> = {};
  for (const part of format.formatToParts(new Date(instantMs))) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  const ms = mod(instantMs, 1000);
  return new Date(Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second, ms));
}

/** The zone's offset from UTC at an instant (local - UTC), in milliseconds. */
function offsetAt(timeZone: string, instantMs: number): number {
  return wallClock(timeZone, instantMs).getTime() - instantMs;
}

/**
 * The first instant of the local date whose midnight is `localMidnight` (a UTC-fields timestamp).
 * Candidates use the offsets a day before and after (no zone changes its offset twice within two
 * days); of those that show exactly local midnight the earliest wins (a repeated midnight); when
 * none does, midnight was skipped and the date starts at the transition, which is local midnight
 * read with the offset before it.
 */
function instantOfLocalDateStart(timeZone: string, localMidnight: number): number {
  const before = localMidnight - offsetAt(timeZone, localMidnight - DAY_MS);
  const after = localMidnight - offsetAt(timeZone, localMidnight + DAY_MS);
  const exact = [before, after].filter((t) => wallClock(timeZone, t).getTime() === localMidnight);
  return exact.length > 0 ? Math.min(...exact) : before;
}
