import { deriveRateSettings, PacingPoint } from '../../src/rate-controlled-queue-consumer/rate-settings';

describe('deriveRateSettings', () => {
  test('GIVEN only the contract WHEN deriving THEN VENDOR_CALL defaults hold and utilization is 1000/1030', () => {
    const s = deriveRateSettings(10);
    expect(s).toMatchObject({
      pacingPoint: PacingPoint.VENDOR_CALL,
      batchSize: 10,
      maxBatchingWindowMs: 0,
      maxConcurrency: 2,
      leadMs: 1000,
      latenessToleranceMs: 30,
      fireToleranceMs: 10,
      proxyRateLimit: 10,
      proxyBurstLimit: 3,
      warnings: [],
    });
    expect(s.slotIntervalMs).toBe(103);
    expect(s.maxUtilization).toBeCloseTo(1000 / 1030, 6);
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
});
