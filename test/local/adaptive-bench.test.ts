/**
 * The modeled adaptive pacing rows (issue 14, item 5): a vendor whose real limit is half the
 * contract. Virtual time: a 6-minute run at 10 RPS takes about 0.2 s, 4 minutes at 100 RPS about 2 s.
 */
import { adaptiveScenarios } from '../../local/bench';
import { LATENCY_MODEL, pacingKnobs } from '../../local/bench-model';
import { runPacedModel } from '../../local/bench-sim';

const knobs = pacingKnobs(LATENCY_MODEL);
const run = (name: string, requests?: number) => {
  const spec = adaptiveScenarios(false).find((s) => s.name === name)!;
  return runPacedModel({
    rps: spec.rps,
    load: requests === undefined ? spec.load : { kind: 'backlog', requests },
    model: LATENCY_MODEL,
    knobs,
    vendorLimitRps: spec.vendorLimitRps,
    adaptive: spec.adaptive,
    callerMaxWaitMs: 10_000,
    seed: 42,
  });
};

describe('adaptive pacing against a vendor whose real limit is half the contract (modeled)', () => {
  test('GIVEN the defaults at 10 RPS, real limit 5 WHEN a backlog runs THEN after convergence at most one 429 per probe interval, utilization of the real limit >= 0.75, nothing lost, V = 0 against the contract', async () => {
    const r = await run('adaptive-10rps-real-limit-5');
    const d = r.details as Record<string, number>;
    expect(r.vendorViolations).toBe(0);
    expect(r.delivered).toBe(r.requests);
    expect(d.lost).toBe(0);
    expect(d.vendor429PerProbeInterval).toBeLessThanOrEqual(1);
    expect(d.maxVendor429InAnyProbeInterval).toBeLessThanOrEqual(1);
    expect(d.realLimitUtilization).toBeGreaterThanOrEqual(0.75);
    // After convergence the probes hold the rate at the real limit (5 per window), never above the contract.
    expect(Math.floor(d.effectiveRateMinAfterConvergence)).toBe(5);
    expect(Math.floor(d.effectiveRateMaxAfterConvergence)).toBe(5);
  });

  test('GIVEN the defaults at 100 RPS, real limit 50 WHEN a backlog runs THEN after convergence at most one 429 in any probe interval (a probe costs one 429, not a burst), utilization of the real limit >= 0.75', async () => {
    // 12000 requests: 4 minutes of virtual time, about 2 s. Before the probe (adaptive-probe.ts) the
    // rate stepped for a whole interval and one step cost up to 3 429s (2 in this run).
    const r = await run('adaptive-100rps-real-limit-50', 12_000);
    const d = r.details as Record<string, number>;
    expect(r.vendorViolations).toBe(0);
    expect(d.lost).toBe(0);
    expect(d.maxVendor429InAnyProbeInterval).toBeLessThanOrEqual(1);
    expect(d.vendor429PerProbeInterval).toBeLessThanOrEqual(1);
    expect(d.realLimitUtilization).toBeGreaterThanOrEqual(0.75);
    expect(Math.floor(d.effectiveRateMaxAfterConvergence)).toBeLessThanOrEqual(50);
  }, 30_000); // about 2 s of CPU; the default 5 s is tight on a loaded 2-core machine

  test('GIVEN the same vendor without adaptive pacing THEN every second brings 429s (the pause alone cannot find the real limit)', async () => {
    const r = await run('no-adaptive-10rps-real-limit-5');
    const d = r.details as Record<string, number>;
    expect(d.lost).toBe(0);
    expect(d.vendor429PerProbeInterval).toBeGreaterThan(5);
  });
});
