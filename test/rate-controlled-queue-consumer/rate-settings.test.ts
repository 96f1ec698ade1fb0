import { slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';
import {
  ASSUMED_CLOCK_SPREAD_MS,
  ASSUMED_PATH_SPREAD_MS,
  DEFAULT_FIRE_TOLERANCE_MS,
  DEFAULT_VENDOR_CALL_LATENESS_MS,
  deriveRateSettings,
  FIRE_CLOCK_RESOLUTION_MS,
  PacingPoint,
} from '../../src/rate-controlled-queue-consumer/rate-settings';

describe('deriveRateSettings', () => {
  test('GIVEN only the contract WHEN deriving THEN VENDOR_CALL defaults hold and utilization is 1000/1031', () => {
    const s = deriveRateSettings(10);
    expect(s).toMatchObject({
      pacingPoint: PacingPoint.VENDOR_CALL,
      batchSize: 10,
      maxBatchingWindowMs: 0,
      maxConcurrency: 2,
      leadMs: 1000,
      latenessToleranceMs: 30,
      fireToleranceMs: 5,
      proxyRateLimit: 10,
      proxyBurstLimit: 3,
      warnings: [],
    });
    // (1000 + L + 1 ms at the window's edge) / R, on the pacer's 1/1024 ms grid.
    expect(s.slotIntervalMs).toBe(slotIntervalMs(10, 30));
    expect(s.slotIntervalMs).toBeCloseTo(103.1, 2);
    expect(s.maxUtilization).toBeCloseTo(1000 / 1031, 4);
  });

  test.each([[0.5, 1, 0, 2], [100, 100, 1000, 3], [1000, 1000, 1000, 4]])(
    'GIVEN %p rps WHEN deriving THEN batch %p, window %p ms, concurrency %p', (rps, batch, window, concurrency) => {
      const s = deriveRateSettings(rps);
      expect([s.batchSize, s.maxBatchingWindowMs, s.maxConcurrency]).toEqual([batch, window, concurrency]);
    });

  test('GIVEN DISPATCH WHEN deriving THEN no lead, L 50 ms and the quarter burst', () => {
    expect(deriveRateSettings(10, { pacingPoint: PacingPoint.DISPATCH })).toMatchObject({ leadMs: 0, latenessToleranceMs: 50, proxyBurstLimit: 3 });
  });

  test('GIVEN overrides that break the contract WHEN deriving THEN it throws saying what was given', () => {
    expect(() => deriveRateSettings(10, { proxyRateLimit: 11 })).toThrow(/throttlingRateLimit.*at most the contract of 10.*given 11/);
    expect(() => deriveRateSettings(10, { fireToleranceMs: 30, latenessToleranceMs: 30 })).toThrow(/fireTolerance \(30 ms\) must be below latenessTolerance \(30 ms\)/);
    // Date.now()'s 1 ms resolution is part of the fire term (issue 13, item 3).
    expect(() => deriveRateSettings(10, { fireToleranceMs: 1 })).toThrow(/fireTolerance \(1 ms\) must be at least 2 ms with PacingPoint.VENDOR_CALL: the vendor caller's clock \(Date.now\(\)\) counts whole milliseconds/);
    expect(deriveRateSettings(10, { fireToleranceMs: 2 }).fireToleranceMs).toBe(2);
    expect(() => deriveRateSettings(10, { pacingPoint: PacingPoint.DISPATCH, leadMs: 500 })).toThrow(/lead is only used with PacingPoint.VENDOR_CALL \(given 500 ms/);
    expect(() => deriveRateSettings(0)).toThrow(/requestsPerSecond must be a positive number/);
  });

  test('GIVEN risky overrides WHEN deriving THEN warnings name the value and the fix', () => {
    const s = deriveRateSettings(10, { latenessToleranceMs: 15, proxyBurstLimit: 1, leadMs: 50, callerReservedConcurrency: 1 });
    expect(s.warnings.map((w) => w.id)).toEqual([
      'cdk-async-external-api:latenessTolerance',
      'cdk-async-external-api:lead',
      'cdk-async-external-api:throttlingBurstLimit',
      'cdk-async-external-api:callerReservedConcurrency',
    ]);
    expect(s.warnings[2].message).toMatch(/throttlingBurstLimit 1 is below 2/);
  });

  test('GIVEN the defaults WHEN reading the budget THEN L = fire tolerance + clock resolution + path spread + clock spread', () => {
    const budget = DEFAULT_FIRE_TOLERANCE_MS + FIRE_CLOCK_RESOLUTION_MS + ASSUMED_PATH_SPREAD_MS + ASSUMED_CLOCK_SPREAD_MS;
    expect(DEFAULT_VENDOR_CALL_LATENESS_MS).toBe(budget);
    expect([DEFAULT_FIRE_TOLERANCE_MS, FIRE_CLOCK_RESOLUTION_MS, ASSUMED_PATH_SPREAD_MS, ASSUMED_CLOCK_SPREAD_MS]).toEqual([5, 1, 20, 4]);
    expect(deriveRateSettings(10).warnings).toEqual([]);
  });

  test('GIVEN an L that leaves the path room but not the clocks WHEN deriving THEN the warning names the clock spread', () => {
    // 10 ms fire tolerance + 1 ms resolution + 20 ms path = 31 ms: nothing left for the clocks.
    const s = deriveRateSettings(10, { fireToleranceMs: 10, latenessToleranceMs: 31 });
    expect(s.warnings.map((w) => w.id)).toEqual(['cdk-async-external-api:latenessTolerance']);
    expect(s.warnings[0].message).toMatch(/leaves 20 ms for the spread of the caller -> proxy -> vendor latency and of the callers' clocks/);
    expect(s.warnings[0].message).toMatch(/4 ms for the clocks/);
    expect(deriveRateSettings(10, { fireToleranceMs: 10, latenessToleranceMs: 35 }).warnings).toEqual([]);
  });
});
