import { isValidTimeZone, quotaPeriodAt, QuotaSpec } from '../../src/contract/quota-period';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => new Date(ms).toISOString();
const period = (spec: Partial<QuotaSpec>, when: string) => {
  const p = quotaPeriodAt({ name: 'q', limit: 1, unit: 'day', ...spec } as QuotaSpec, at(when));
  return [iso(p.startMs), iso(p.endMs)];
};

describe('quota periods (issue 14, item 2)', () => {
  test('GIVEN UTC calendar periods THEN hours, days and months run from their first instant to the next one', () => {
    expect(period({ unit: 'hour' }, '2026-12-07T12:34:56.789Z')).toEqual(['2026-12-07T12:00:00.000Z', '2026-12-07T13:00:00.000Z']);
    expect(period({ unit: 'day' }, '2026-12-07T23:59:59.999Z')).toEqual(['2026-12-07T00:00:00.000Z', '2026-12-08T00:00:00.000Z']);
    expect(period({ unit: 'day' }, '2026-12-08T00:00:00.000Z')).toEqual(['2026-12-08T00:00:00.000Z', '2026-12-09T00:00:00.000Z']);
  });

  test('GIVEN month ends (31 days, February, a leap year, December) THEN the month period ends at the next month\'s first instant', () => {
    expect(period({ unit: 'month' }, '2027-01-31T23:59:59.999Z')).toEqual(['2027-01-01T00:00:00.000Z', '2027-02-01T00:00:00.000Z']);
    expect(period({ unit: 'month' }, '2027-02-15T00:00:00.000Z')).toEqual(['2027-02-01T00:00:00.000Z', '2027-03-01T00:00:00.000Z']);
    expect(period({ unit: 'month' }, '2028-02-29T12:00:00.000Z')).toEqual(['2028-02-01T00:00:00.000Z', '2028-03-01T00:00:00.000Z']);
    expect(period({ unit: 'month' }, '2026-12-31T23:00:00.000Z')).toEqual(['2026-12-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z']);
  });

  test('GIVEN a time zone THEN days and months follow its midnight (Europe/Berlin, winter +01:00)', () => {
    // 23:30 UTC on 7 December is already 8 December in Berlin.
    expect(period({ unit: 'day', timeZone: 'Europe/Berlin' }, '2026-12-07T23:30:00.000Z')).toEqual(['2026-12-07T23:00:00.000Z', '2026-12-08T23:00:00.000Z']);
    expect(period({ unit: 'month', timeZone: 'America/New_York' }, '2027-01-01T03:00:00.000Z')).toEqual(['2026-12-01T05:00:00.000Z', '2027-01-01T05:00:00.000Z']);
  });

  test('GIVEN daylight-saving days THEN the day is 23 hours in spring and 25 in autumn (Europe/Berlin 2026)', () => {
    const [s1, e1] = period({ unit: 'day', timeZone: 'Europe/Berlin' }, '2026-03-29T12:00:00.000Z');
    expect([s1, e1]).toEqual(['2026-03-28T23:00:00.000Z', '2026-03-29T22:00:00.000Z']);
    const [s2, e2] = period({ unit: 'day', timeZone: 'Europe/Berlin' }, '2026-10-25T12:00:00.000Z');
    expect([s2, e2]).toEqual(['2026-10-24T22:00:00.000Z', '2026-10-25T23:00:00.000Z']);
    // And the month that holds the spring change is 1 hour short.
    const [s3, e3] = period({ unit: 'month', timeZone: 'Europe/Berlin' }, '2026-03-15T00:00:00.000Z');
    expect(Date.parse(e3) - Date.parse(s3)).toBe(31 * 86_400_000 - 3_600_000);
  });

  test('GIVEN a zone that skips midnight (America/Santiago springs forward at 00:00) THEN the day starts at the first instant of that date', () => {
    // 2026-09-06: 00:00 -04:00 becomes 01:00 -03:00; the day starts at 04:00Z and lasts 23 hours.
    expect(period({ unit: 'day', timeZone: 'America/Santiago' }, '2026-09-06T12:00:00.000Z')).toEqual(['2026-09-06T04:00:00.000Z', '2026-09-07T03:00:00.000Z']);
    // The day before ends where this one starts.
    expect(period({ unit: 'day', timeZone: 'America/Santiago' }, '2026-09-06T01:00:00.000Z')[1]).toBe('2026-09-06T04:00:00.000Z');
  });

  test('GIVEN hours in a half-hour zone and in the hour repeated when clocks fall back THEN each wall-clock hour is its own period', () => {
    expect(period({ unit: 'hour', timeZone: 'Asia/Kolkata' }, '2026-12-07T12:10:00.000Z')).toEqual(['2026-12-07T11:30:00.000Z', '2026-12-07T12:30:00.000Z']);
    // Berlin 2026-10-25: 02:00-03:00 local happens twice (00:00Z-01:00Z at +02:00, 01:00Z-02:00Z at +01:00).
    expect(period({ unit: 'hour', timeZone: 'Europe/Berlin' }, '2026-10-25T00:30:00.000Z')).toEqual(['2026-10-25T00:00:00.000Z', '2026-10-25T01:00:00.000Z']);
    expect(period({ unit: 'hour', timeZone: 'Europe/Berlin' }, '2026-10-25T01:30:00.000Z')).toEqual(['2026-10-25T01:00:00.000Z', '2026-10-25T02:00:00.000Z']);
  });

  test('GIVEN fixed periods THEN they are aligned to the Unix epoch', () => {
    expect(period({ unit: 'fixed', periodMs: 6 * 3_600_000 }, '2026-12-07T13:00:00.000Z')).toEqual(['2026-12-07T12:00:00.000Z', '2026-12-07T18:00:00.000Z']);
    const p = quotaPeriodAt({ name: 'q', limit: 5, unit: 'fixed', periodMs: 3000 }, 1_800_000_001_234);
    expect(p).toEqual({ startMs: 1_800_000_000_000, endMs: 1_800_000_003_000 });
    expect(quotaPeriodAt({ name: 'q', limit: 5, unit: 'fixed', periodMs: 3000 }, p.endMs).startMs).toBe(p.endMs);
  });

  test('GIVEN time zone names THEN IANA names are valid and others not', () => {
    expect(isValidTimeZone('UTC')).toBe(true);
    expect(isValidTimeZone('Europe/Berlin')).toBe(true);
    expect(isValidTimeZone('Mars/Olympus_Mons')).toBe(false);
  });
});
