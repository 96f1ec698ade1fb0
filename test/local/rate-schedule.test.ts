import { rateChangeScenarios } from '../../local/bench';
import { LATENCY_MODEL, pacingKnobs } from '../../local/bench-model';
import { runPacedModel } from '../../local/bench-sim';
import { parseDemoArgs } from '../../local/demo';
import {
  newRateObservedAfterMs,
  overRateInForce,
  rateChangeBindsAtMs,
  rateChangeInUseWithinMs,
  rateChangeTimingOf,
  rateInForceAt,
  violationsAgainstRateInForce,
} from '../../local/rate-schedule';
import { VendorSimulator } from '../../local/vendor-simulator';

// The rate in force at the vendor (local/rate-schedule.ts): a window is bound by the rate in force at its start.

const T = 1_000_000;

describe('rate schedule', () => {
  test('GIVEN a decrease at T WHEN windows are checked THEN windows starting at or after T are bound by the new rate, earlier ones by the old', () => {
    const schedule = [{ atMs: T, requestsPerSecond: 2 }];
    expect(rateInForceAt(T - 1, 10, schedule)).toBe(10);
    expect(rateInForceAt(T, 10, schedule)).toBe(2);
    // Three arrivals in the second after T: over 2.
    expect(violationsAgainstRateInForce([T + 100, T + 200, T + 300], 10, schedule)).toBeGreaterThan(0);
    // Three in a window that starts before T (the old rate, 10): fine.
    expect(violationsAgainstRateInForce([T - 500, T - 400, T - 300], 10, schedule)).toBe(0);
    // Online: the window starting at the first arrival after T holds 3 when the third arrives.
    expect(overRateInForce([T + 100, T + 200, T + 300], T + 300, 10, schedule)).toBe(true);
    expect(overRateInForce([T + 100, T + 200], T + 200, 10, schedule)).toBe(false);
  });

  test('GIVEN an increase at T WHEN windows are checked THEN a window starting before T is still bound by the old rate', () => {
    const schedule = [{ atMs: T, requestsPerSecond: 10 }];
    // Contract 10, but the rate in force before T is 2 (an earlier decrease at 0).
    const withEarlier = [{ atMs: 0, requestsPerSecond: 2 }, ...schedule];
    // Window [T - 1, T + 999] starts before T: 5 arrivals > 2.
    expect(violationsAgainstRateInForce([T - 1, T + 100, T + 200, T + 300, T + 400], 10, withEarlier)).toBeGreaterThan(0);
    // The same arrivals one second later: all windows lie after T.
    expect(violationsAgainstRateInForce([T + 1000, T + 1100, T + 1200, T + 1300, T + 1400], 10, withEarlier)).toBe(0);
  });

  test('GIVEN a rate below 1 WHEN windows are checked THEN one request per 1 / R seconds', () => {
    const schedule = [{ atMs: 0, requestsPerSecond: 0.5 }];
    expect(violationsAgainstRateInForce([T, T + 2001], 10, schedule)).toBe(0);
    // Closed windows: exactly 1 / R apart is two in one window.
    expect(violationsAgainstRateInForce([T, T + 2000], 10, schedule)).toBe(1);
  });

  test('GIVEN the stated bound WHEN computed THEN a decrease binds after P + H + L, an increase at its deployment; in use within P + H (+ one window for an increase)', () => {
    const timing = { pollIntervalMs: 15_000, horizonMs: 15_000, latenessToleranceMs: 40 };
    expect(rateChangeBindsAtMs(T, true, timing)).toBe(T + 30_040);
    expect(rateChangeBindsAtMs(T, false, timing)).toBe(T);
    expect(rateChangeInUseWithinMs(true, timing)).toBe(30_000);
    expect(rateChangeInUseWithinMs(false, timing)).toBe(31_041);
  });

  test('GIVEN arrivals around a change WHEN observed THEN the time the new rate was in use is measured', () => {
    // Increase 2 -> 10 at T: the first window over 2 starts at T + 3000.
    const up = [T + 100, T + 1200, T + 3000, T + 3100, T + 3200];
    expect(newRateObservedAfterMs(up, T, 2, 10)).toBe(3000);
    expect(newRateObservedAfterMs([T + 100, T + 1200], T, 2, 10)).toBeUndefined();
    // Decrease 10 -> 2 at T: the last window over 2 starts at T + 500.
    const down = [T + 400, T + 500, T + 600, T + 700, T + 3000, T + 4000];
    expect(newRateObservedAfterMs(down, T, 10, 2)).toBe(500);
  });

  test('GIVEN a template WHEN its timing is read THEN poll interval, horizon and L come from the functions\' variables', () => {
    const template = {
      Resources: {
        Dispatcher: { Type: 'AWS::Lambda::Function', Properties: { Environment: { Variables: { MAX_PACING_WAIT_MS: '15000', LATENESS_TOLERANCE_MS: '30', DYNAMIC_DELAY_POLL_INTERVAL_SECONDS: '30' } } } },
        Caller: { Type: 'AWS::Lambda::Function', Properties: { Environment: { Variables: { MAX_SLOT_WAIT_MS: '10000', LATENESS_TOLERANCE_MS: '30' } } } },
        Queue: { Type: 'AWS::SQS::Queue' },
      },
    };
    expect(rateChangeTimingOf(template)).toEqual({ pollIntervalMs: 30_000, horizonMs: 15_000, latenessToleranceMs: 30 });
  });
});

describe('VendorSimulator: the rate in force', () => {
  test('GIVEN a rate schedule lowering the rate WHEN calls exceed it THEN the vendor answers 429 and counts rateInForceViolations', async () => {
    let now = T;
    const vendor = new VendorSimulator({ requestsPerSecond: 10, clock: () => now });
    const base = await vendor.start();
    try {
      vendor.setRateSchedule([{ atMs: T, requestsPerSecond: 2 }]);
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        now = T + 100 * (i + 1);
        statuses.push((await fetch(`${base}/jobs/missing/result`)).status);
      }
      expect(statuses[2]).toBe(429);
      expect(statuses.slice(0, 2)).not.toContain(429);
      expect(vendor.stats().rateInForceViolations).toBe(1);
      expect(vendor.stats().violations).toBe(1);
    } finally {
      await vendor.stop();
    }
  });
});

describe('demo flags --rate-change-at-s / --rate-change-rps', () => {
  test('GIVEN the flags WHEN parsed THEN they are taken, the rate must come with the time and stay at or below the contract', () => {
    const options = parseDemoArgs(['--rps', '10', '--rate-change-at-s', '5', '--rate-change-rps', '4']);
    expect(options).toMatchObject({ rps: 10, rateChangeAtS: 5, rateChangeRps: 4 });
    expect(parseDemoArgs([])).toMatchObject({ rateChangeAtS: 0, rateChangeRps: 0 });
    expect(() => parseDemoArgs(['--rate-change-at-s', '5'])).toThrow(/needs --rate-change-rps/);
    expect(() => parseDemoArgs(['--rps', '10', '--rate-change-rps', '12'])).toThrow(/above the contract of 10/);
  });
});

describe('benchmark: rate change mid-run (modeled)', () => {
  test('GIVEN 10 -> 4 -> 10 RPS under a backlog WHEN modeled THEN V = 0 against the rate in force and each new rate is in use within the stated time', async () => {
    const [, downUp] = rateChangeScenarios(false);
    const result = await runPacedModel({
      rps: downUp.rps,
      load: downUp.load,
      model: LATENCY_MODEL,
      knobs: pacingKnobs(LATENCY_MODEL),
      rateChanges: downUp.rateChanges,
      callerMaxWaitMs: 10_000,
    });
    expect(result.vendorViolations).toBe(0);
    expect(result.details.rateInForceViolations).toBe(0);
    expect(result.delivered).toBe(result.requests);
    for (const key of ['change1', 'change2']) {
      const [, observed, stated] = /in use after ([\d.]+) s \(stated within ([\d.]+) s\)/.exec(String(result.details[key]))!;
      expect(Number(observed)).toBeLessThanOrEqual(Number(stated));
    }
  });
});
