/**
 * The benchmark's metric computations and the modeled pacing design (no emulators: fast).
 */
import { parseBenchArgs, scenarios } from '../../local/bench';
import { jobsInFlightFigures, jobsInFlightSpecs, modeledHandOverIdleMs, occupancyOf } from '../../local/bench-jobs-in-flight';
import { addedLatency, maxInAnyWindow, percentile, utilization, violations, windowLimit } from '../../local/bench-metrics';
import { LATENCY_MODEL, pacingKnobs, postFireSpreadMs, sample, seededRandom, uMax, withPostFireSpread } from '../../local/bench-model';
import { ISSUE_13_EFFECTS, PacingFix, runBaselineModel, runPacedModel, VirtualClock } from '../../local/bench-sim';
import type { DemoResult } from '../../local/demo';

describe('bench metrics', () => {
  test('utilization is 1 for arrivals exactly at R, and counts intervals, not points', () => {
    const arrivals = Array.from({ length: 101 }, (_, i) => 1000 + i * 100); // 10 rps for 10 s
    expect(utilization(arrivals, 10)).toBeCloseTo(1, 10);
    expect(utilization(arrivals, 20)).toBeCloseTo(0.5, 10);
  });

  test('utilization skips the warm-up and the drain', () => {
    // A slow start and a straggler at the end do not count against the steady part.
    const steady = Array.from({ length: 51 }, (_, i) => 5000 + i * 100);
    const arrivals = [0, 2000, ...steady, 20000];
    expect(utilization(arrivals, 10)).toBeLessThan(0.4);
    expect(utilization(arrivals, 10, 4000, 4000)).toBeCloseTo(1, 10);
  });

  test('windows are closed, [a_i - 1 s, a_i]: an arrival exactly 1 s earlier is inside (half-open on request)', () => {
    expect(maxInAnyWindow([0, 1000, 2000])).toBe(2);
    expect(maxInAnyWindow([0, 1000, 2000], 1000, false)).toBe(1);
    expect(maxInAnyWindow([0, 1001, 2002])).toBe(1);
    expect(maxInAnyWindow([0, 999, 1998])).toBe(2);
    expect(violations([0, 1000, 2000], 1)).toBe(2);
    expect(violations([0, 1000, 2000], 1, 1000, false)).toBe(0);
    expect(violations([0, 500, 999, 1500], 2)).toBe(2); // [-1, 999] and [500, 1500] hold 3
    expect(violations([0, 500, 999, 1500], 2, 1000, false)).toBe(1); // (500, 1500] holds 2
    expect(windowLimit(10.9)).toBe(10);
    expect(windowLimit(0.5)).toBe(1);
  });

  test('percentiles are nearest-rank, added latency is enqueue -> arrival', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile([], 50)).toBeUndefined();
    expect(addedLatency([{ enqueuedAt: 10, arrivedAt: 110 }, { enqueuedAt: 0, arrivedAt: 300 }])).toEqual({ p50: 100, p99: 300 });
    expect(addedLatency([])).toEqual({ p50: null, p99: null });
  });

  test('U max = 1000 / (1000 + spread)', () => {
    expect(uMax(0)).toBe(1);
    expect(uMax(50)).toBeCloseTo(0.952, 3);
  });
});

describe('bench model', () => {
  test('draws stay inside the declared bounds', () => {
    const random = seededRandom(1);
    for (const hop of [LATENCY_MODEL.expressStart, LATENCY_MODEL.dynamodbCall, LATENCY_MODEL.lambdaColdStart]) {
      const d = hop.distribution as { minMs: number; maxMs: number };
      for (let i = 0; i < 1000; i++) {
        const v = sample(hop.distribution, random);
        expect(v).toBeGreaterThanOrEqual(d.minMs);
        expect(v).toBeLessThanOrEqual(d.maxMs);
      }
    }
  });

  test('every hop names its source', () => {
    for (const value of Object.values(LATENCY_MODEL)) {
      if (typeof value === 'object') expect(value.source.length).toBeGreaterThan(5);
    }
  });

  test('the virtual clock runs sleeps in time order without waiting', async () => {
    const clock = new VirtualClock(0);
    const seen: number[] = [];
    const actor = async (ms: number) => {
      await clock.sleep(ms);
      seen.push(clock.now());
    };
    const all = Promise.all([actor(300), actor(100), actor(200)]);
    await clock.run();
    await all;
    expect(seen).toEqual([100, 200, 300]);
  });
});

describe('modeled pacing design', () => {
  const knobs = pacingKnobs();

  test.each([10, 100, 1000])('at %i rps under backlog: V = 0, no 429, U close to U max', async (rps) => {
    const r = await runPacedModel({ rps, load: { kind: 'backlog', requests: Math.min(4000, rps * 6) }, model: LATENCY_MODEL, knobs, seed: 3 });
    expect(r.delivered).toBe(r.requests);
    expect(r.vendorViolations).toBe(0);
    expect(r.vendorMaxRequestsInAnySecond).toBeLessThanOrEqual(rps);
    expect(r.proxy429 + r.vendor429).toBe(0);
    expect(r.utilization).toBeGreaterThan(uMax(knobs.latenessToleranceMs) - 0.03);
    expect(r.utilization).toBeLessThanOrEqual(uMax(knobs.latenessToleranceMs) + 0.005);
  }, 30_000);

  test('cold starts make callers late; they re-reserve and V stays 0', async () => {
    // A lead shorter than a cold start: a cold caller wakes after its slot.
    const model = { ...LATENCY_MODEL, coldStartFraction: 0.2 };
    const r = await runPacedModel({ rps: 100, load: { kind: 'backlog', requests: 500 }, model, knobs: pacingKnobs(model, { leadMs: 150 }), seed: 5 });
    expect(Number(r.details.reReservations)).toBeGreaterThan(0);
    expect(r.vendorViolations).toBe(0);
    expect(r.delivered).toBe(500);
  }, 30_000);

  test('half load: every request delivered, added latency is about the lead', async () => {
    const r = await runPacedModel({ rps: 10, load: { kind: 'fraction', fraction: 0.5, durationMs: 10_000 }, model: LATENCY_MODEL, knobs });
    expect(r.requests).toBe(50);
    expect(r.delivered).toBe(50);
    expect(r.vendorViolations).toBe(0);
    expect(r.p50AddedLatencyMs!).toBeGreaterThanOrEqual(knobs.leadMs);
    expect(r.p99AddedLatencyMs!).toBeLessThan(knobs.leadMs + 500);
  });

  test('a post-fire spread wider than L breaks the bound (the assumption matters)', async () => {
    const model = withPostFireSpread(LATENCY_MODEL, 400);
    expect(postFireSpreadMs(model)).toBe(400);
    const r = await runPacedModel({ rps: 100, load: { kind: 'backlog', requests: 1500 }, model, knobs: pacingKnobs(model), seed: 9 });
    expect(r.vendorViolations).toBeGreaterThan(0);
  }, 30_000);
});

describe('modeled effects of issue 13 (edge-exact lateness, whole-millisecond vendor, closed windows)', () => {
  const knobs = pacingKnobs();
  const run = (withoutFix?: PacingFix) => runPacedModel({
    rps: 10, load: { kind: 'backlog', requests: 400 }, model: LATENCY_MODEL, knobs, effects: ISSUE_13_EFFECTS, withoutFix, seed: 13,
  });

  test('with every fix: V = 0, every request delivered once, one slot claim write per fire', async () => {
    const r = await run();
    expect(r.vendorViolations).toBe(0);
    expect(r.vendorMaxRequestsInAnySecond).toBeLessThanOrEqual(10);
    expect(r.delivered).toBe(400);
    expect(r.details.duplicatesSent).toBe(0);
    expect(Number(r.details.slotClaimWrites)).toBe(400 + Number(r.details.duplicateFires));
    expect(r.proxy429).toBe(0);
  });

  test.each<PacingFix>(['single-use-slots', 'clock-budget', 'window-edge-margin', 'connected-socket'])(
    'without the fix %s: floor(R) + 1 requests in one second', async (fix) => {
      const r = await run(fix);
      expect(r.vendorViolations).toBeGreaterThan(0);
      expect(r.vendorMaxRequestsInAnySecond).toBe(11);
    });

  test('without never-early: a timer that wakes up to 1 ms early breaks a whole-millisecond vendor\'s count', async () => {
    const r = await runPacedModel({
      rps: 10, load: { kind: 'backlog', requests: 600 }, model: LATENCY_MODEL, knobs, effects: ISSUE_13_EFFECTS, withoutFix: 'never-early', seed: 13,
    });
    expect(Number(r.details.earlyWakeUps)).toBeGreaterThan(0);
    expect(r.vendorViolations).toBeGreaterThan(0);
  });

  test('the proxy burst is the library\'s derivation, not a quarter of the contract', async () => {
    const r = await runPacedModel({ rps: 100, load: { kind: 'backlog', requests: 300 }, model: LATENCY_MODEL, knobs, seed: 3 });
    expect(r.details.proxyBurst).toBe(14); // max(2, 1 + ceil(100 x (30 + 100) / 1000)), not ceil(100 / 4) = 25
  });
});

describe('modeled baseline (published pattern)', () => {
  test('asynchronous starts overshoot: the proxy throttles and the vendor sees more than R', async () => {
    const r = await runBaselineModel({ rps: 10, mode: 'async', load: { kind: 'backlog', requests: 200 }, model: LATENCY_MODEL });
    expect(r.proxy429).toBeGreaterThan(0);
    expect(r.vendorMaxRequestsInAnySecond).toBeGreaterThan(10);
  });
});

describe('bench scenarios and flags', () => {
  test('exactly one backlog scenario per contract 1, 10, 100, 1000 (baseline rows included), full and quick', () => {
    for (const quick of [false, true]) {
      const list = scenarios({ quick, modeledOnly: false, emulated100: false });
      for (const rps of [1, 10, 100, 1000]) {
        expect(list.filter((s) => s.rps === rps && s.load.kind === 'backlog' && !s.study)).toHaveLength(1);
      }
      // Issue 13: one unfixed-... row per effect beside the row with every fix.
      expect(list.filter((s) => s.name.startsWith('unfixed-')).map((s) => s.withoutFix).sort()).toEqual(
        ['clock-budget', 'connected-socket', 'never-early', 'single-use-slots', 'window-edge-margin'],
      );
      expect(list.some((s) => s.name === 'paced-10rps-effects' && s.effects && !s.withoutFix)).toBe(true);
      expect(list.some((s) => s.rps === 10 && s.load.kind === 'fraction' && s.load.fraction === 0.5)).toBe(true);
      expect(list.some((s) => s.name.startsWith('baseline') && s.rps === 10)).toBe(true);
    }
  });

  test('flags', () => {
    expect(parseBenchArgs(['--quick', '--json', '--lateness-ms=25'])).toMatchObject({ quick: true, json: true, latenessToleranceMs: 25 });
    expect(() => parseBenchArgs(['--nope'])).toThrow(/unknown flag/);
    expect(() => parseBenchArgs(['--lead-ms', 'x'])).toThrow(/needs a number/);
  });

  test('jobs-in-flight rows (issue 14): slow callbacks against limits of 4 and 10, not in the quick run; occupancy is the vendor\'s mean over N', () => {
    expect(jobsInFlightSpecs(true)).toEqual([]);
    expect(jobsInFlightSpecs(false).map((s) => [s.maxJobsInFlight, s.jobDurationMs])).toEqual([[4, 15_000], [10, 30_000], [4, 60_000], [4, 120_000]]);
    const demo = {
      requests: 24,
      succeeded: 24,
      lost: 0,
      vendorRequests: 48,
      maxJobsInFlightObserved: 4,
      violationsByLimit: { rate: 0, quota: 0, inFlight: 0 },
      meanJobsInFlightWhileBacklog: 3.4,
      handOvers: { count: 20, meanIdleMs: 2690, maxIdleMs: 2996 },
      deliveredRps: 0.43,
      elapsedMs: 1,
    } as unknown as DemoResult;
    // On AWS, modeled: the lead (1 s by default) and about 20 hops of a few to tens of milliseconds.
    const idle = modeledHandOverIdleMs();
    expect(idle.minMs).toBeGreaterThan(1000);
    expect(idle.minMs).toBeLessThan(idle.meanMs);
    expect(idle.meanMs).toBeLessThan(idle.maxMs);
    expect(idle.maxMs).toBeLessThan(1600);
    expect(modeledHandOverIdleMs(undefined, 500).meanMs).toBe(idle.meanMs - 500);
    expect(occupancyOf(30_000, idle.meanMs)).toBeGreaterThanOrEqual(0.95);
    expect(occupancyOf(15_000, 1_000)).toBe(0.938);
    expect(jobsInFlightFigures(demo, 4)).toMatchObject({
      maxJobsInFlightObserved: 4, inFlightViolations: 0, occupancy: 0.85, handOvers: 20, meanHandOverIdleMs: 2690, maxHandOverIdleMs: 2996,
    });
  });
});
