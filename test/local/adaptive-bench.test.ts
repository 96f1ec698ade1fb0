/**
 * The modeled adaptive pacing rows (issue 14, item 5): a vendor whose real limit is half the
 * contract. Virtual time: a 6-minute run takes about 0.1 s.
 */
import { adaptiveScenarios } from '../../local/bench';
import { LATENCY_MODEL, pacingKnobs } from '../../local/bench-model';
import { runPacedModel } from '../../local/bench-sim';

const knobs = pacingKnobs(LATENCY_MODEL);
const run = (name: string) => {
  const spec = adaptiveScenarios(false).find((s) => s.name === name)!;
  return runPacedModel({
    rps: spec.rps,
    load: spec.load,
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
    // The effective rate drops below the real limit and climbs back, never above the contract.
    expect(d.effectiveRateMinAfterConvergence).toBeLessThan(5);
    expect(d.effectiveRateMaxAfterConvergence).toBeLessThanOrEqual(10);
  });

  test('GIVEN the same vendor without adaptive pacing THEN every second brings 429s (the pause alone cannot find the real limit)', async () => {
    const r = await run('no-adaptive-10rps-real-limit-5');
    const d = r.details as Record<string, number>;
    expect(d.lost).toBe(0);
    expect(d.vendor429PerProbeInterval).toBeGreaterThan(5);
  });
});
