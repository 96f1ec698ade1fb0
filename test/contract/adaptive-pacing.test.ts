import { Duration } from 'aws-cdk-lib';
import { AdaptivePacing, VendorContract } from '../../src';
import { adaptivePlan, AdaptiveSpec, adaptiveRateAt, decreasedState, parseAdaptiveSpec, parseAdaptiveState, recoveryMs } from '../../src/contract/adaptive-spec';

const T0 = 1_700_000_000_000;
const SPEC: AdaptiveSpec = { decreaseFactor: 0.5, probeIntervalMs: 10_000, increaseStep: 1, minimumRequestsPerSecond: 2, cooldownMs: 2000 };

describe('adaptive rate arithmetic (injected clock)', () => {
  test('GIVEN no stored state WHEN reading THEN the adaptive rate is the rate in force', () => {
    expect(adaptiveRateAt(T0, 10, undefined, SPEC)).toBe(10);
  });

  test('GIVEN a decrease and no probe given out WHEN time passes THEN the rate climbs one step per whole probe interval after the first (the interval a probe was due in), lazily', () => {
    const state = { rps: 4, sinceMs: T0 };
    expect(adaptiveRateAt(T0, 10, state, SPEC)).toBe(4);
    expect(adaptiveRateAt(T0 + 19_999, 10, state, SPEC)).toBe(4);
    expect(adaptiveRateAt(T0 + 20_000, 10, state, SPEC)).toBe(5);
    expect(adaptiveRateAt(T0 + 45_000, 10, state, SPEC)).toBe(7);
  });

  test('GIVEN a probe under way WHEN time passes THEN the rate waits for its judgement', () => {
    const state = { rps: 4, sinceMs: T0, probe: { atMs: T0 + 10_000, slots: 2, fromMs: T0 + 9_000, refused: false } };
    expect(adaptiveRateAt(T0 + 60_000, 10, state, SPEC)).toBe(4);
  });

  test('GIVEN a long climb WHEN reading THEN the rate never goes above the rate in force (a lowered one too)', () => {
    const state = { rps: 4, sinceMs: T0 };
    expect(adaptiveRateAt(T0 + 600_000, 10, state, SPEC)).toBe(10);
    expect(adaptiveRateAt(T0 + 600_000, 6, state, SPEC)).toBe(6);
    // A stored rate above a since lowered rate in force: the rate in force wins at once.
    expect(adaptiveRateAt(T0, 3, { rps: 8, sinceMs: T0 }, SPEC)).toBe(3);
  });

  test('GIVEN repeated decreases WHEN the rate would fall below the minimum THEN it stays at the minimum (or the rate in force, when lower)', () => {
    let state = decreasedState(T0, 10, undefined, SPEC)!;
    expect(state).toEqual({ rps: 5, sinceMs: T0 });
    state = decreasedState(T0 + 2000, 10, state, SPEC)!;
    expect(state.rps).toBe(2.5);
    state = decreasedState(T0 + 4000, 10, state, SPEC)!;
    expect(state.rps).toBe(2);
    expect(adaptiveRateAt(T0 + 4000, 10, state, SPEC)).toBe(2);
    expect(adaptiveRateAt(T0 + 4000, 1, { rps: 0.5, sinceMs: T0 }, SPEC)).toBe(1);
  });

  test('GIVEN a decrease WHEN another 429 comes within the cooldown THEN it does not decrease again; after it, it does', () => {
    const first = decreasedState(T0, 10, undefined, SPEC)!;
    expect(decreasedState(T0 + 1999, 10, first, SPEC)).toBeUndefined();
    expect(decreasedState(T0 + 2000, 10, first, SPEC)).toEqual({ rps: 2.5, sinceMs: T0 + 2000 });
  });

  test('GIVEN a climb under way WHEN a 429 comes THEN the decrease starts from the climbed rate, and the climb restarts', () => {
    const state = { rps: 4, sinceMs: T0 };
    const next = decreasedState(T0 + 30_000, 10, state, SPEC)!;
    expect(next).toEqual({ rps: 3, sinceMs: T0 + 30_000 });
    expect(adaptiveRateAt(T0 + 49_999, 10, next, SPEC)).toBe(3);
  });

  test('GIVEN no probe WHEN less than half a probe interval passed, or the rate is the ceiling THEN a reservation plans none; after it, it plans one', () => {
    const state = { rps: 4, sinceMs: T0 };
    expect(adaptivePlan(T0 + 4_999, 10, state, SPEC)).toEqual({ rps: 4, probe: 'none' });
    expect(adaptivePlan(T0 + 5_000, 10, state, SPEC)).toEqual({ rps: 4, update: { rps: 4, sinceMs: T0 }, probe: 'plan' });
    expect(adaptivePlan(T0 + 5_000, 4, state, SPEC)).toEqual({ rps: 4, probe: 'none' });
    expect(adaptivePlan(T0, 10, undefined, SPEC)).toEqual({ rps: 10, probe: 'none' });
    // After a lazy climb, the climbed rate is written with the plan.
    expect(adaptivePlan(T0 + 25_000, 10, state, SPEC)).toEqual({ rps: 5, update: { rps: 5, sinceMs: T0 + 15_000 }, probe: 'plan' });
  });

  test('GIVEN a probe planned, then placed WHEN its answer is in (a cooldown after it) THEN it is judged: passed -> one step up, refused -> the rate stays; the next probe counts from its end', () => {
    const planned = { atMs: T0 + 10_000, slots: 2, fromMs: T0 + 9_000, refused: false };
    expect(adaptivePlan(T0 + 9_000, 10, { rps: 4, sinceMs: T0, probe: planned }, SPEC)).toEqual({ rps: 4, probe: 'place' });
    const placed = { rps: 4, sinceMs: T0, probe: { ...planned, toMs: T0 + 10_100 } };
    expect(adaptivePlan(T0 + 12_099, 10, placed, SPEC)).toEqual({ rps: 4, probe: 'none' });
    expect(adaptivePlan(T0 + 12_100, 10, placed, SPEC)).toEqual({ rps: 5, update: { rps: 5, sinceMs: T0 + 10_100 }, probe: 'none' });
    const refused = { ...placed, probe: { ...placed.probe, refused: true } };
    expect(adaptivePlan(T0 + 12_100, 10, refused, SPEC)).toEqual({ rps: 4, update: { rps: 4, sinceMs: T0 + 10_100 }, probe: 'none' });
    // Never above the ceiling.
    expect(adaptivePlan(T0 + 12_100, 4.5, placed, SPEC).rps).toBe(4.5);
  });

  test('the probe is read back from the pacer item; a refusal counts for the probe it names only', () => {
    const item = {
      adaptiveRps: { N: '4' },
      adaptiveSinceMs: { N: String(T0) },
      adaptiveProbeAtMs: { N: String(T0 + 10_000) },
      adaptiveProbeSlots: { N: '2' },
      adaptiveProbeFromMs: { N: String(T0 + 9_000) },
      adaptiveProbeToMs: { N: String(T0 + 10_100) },
      adaptiveProbeRefusedAtMs: { N: String(T0 + 10_000) },
    };
    expect(parseAdaptiveState(item)).toEqual({
      rps: 4, sinceMs: T0, probe: { atMs: T0 + 10_000, slots: 2, fromMs: T0 + 9_000, toMs: T0 + 10_100, refused: true },
    });
    expect(parseAdaptiveState({ ...item, adaptiveProbeRefusedAtMs: { N: '1' } })!.probe!.refused).toBe(false);
    expect(parseAdaptiveState({ adaptiveRps: { N: '4' }, adaptiveSinceMs: { N: String(T0) } })).toEqual({ rps: 4, sinceMs: T0 });
  });

  test('recovery time is whole probe intervals', () => {
    expect(recoveryMs(5, 10, SPEC)).toBe(50_000);
    expect(recoveryMs(9.5, 10, SPEC)).toBe(10_000);
    expect(recoveryMs(10, 10, SPEC)).toBe(0);
  });

  test('the spec round-trips through its environment variable; a bad one is refused by name', () => {
    expect(parseAdaptiveSpec(JSON.stringify(SPEC), 'ADAPTIVE_PACING')).toEqual(SPEC);
    expect(parseAdaptiveSpec(undefined, 'ADAPTIVE_PACING')).toBeUndefined();
    expect(() => parseAdaptiveSpec('{', 'ADAPTIVE_PACING')).toThrow(/ADAPTIVE_PACING must be JSON/);
    expect(() => parseAdaptiveSpec(JSON.stringify({ ...SPEC, decreaseFactor: 1 }), 'ADAPTIVE_PACING')).toThrow(/decreaseFactor must be below 1/);
    expect(() => parseAdaptiveSpec(JSON.stringify({ ...SPEC, probeIntervalMs: 0 }), 'ADAPTIVE_PACING')).toThrow(/probeIntervalMs must be a number above 0/);
  });
});

describe('AdaptivePacing (synth-time validation)', () => {
  test('GIVEN no options WHEN resolved for a contract THEN the stated defaults apply', () => {
    const contract = VendorContract.of({ requestsPerSecond: 10, adaptivePacing: AdaptivePacing.of() });
    expect(contract.adaptivePacing!._spec(10)).toEqual({
      decreaseFactor: 0.7, probeIntervalMs: 10_000, increaseStep: 1, minimumRequestsPerSecond: 1, cooldownMs: 2000,
    });
  });

  test('GIVEN no step WHEN resolved THEN it is 1 request per second, a tenth of the contract below 10', () => {
    expect(AdaptivePacing.of()._spec(100)).toMatchObject({ increaseStep: 1, minimumRequestsPerSecond: 10 });
    expect(AdaptivePacing.of()._spec(4)).toMatchObject({ increaseStep: 0.4, minimumRequestsPerSecond: 0.4 });
  });

  test.each([
    [{ decreaseFactor: 1 }, /decreaseFactor must be a number above 0 and below 1, got 1/],
    [{ decreaseFactor: 0 }, /decreaseFactor must be a number above 0 and below 1, got 0/],
    [{ probeInterval: Duration.millis(500) }, /probeInterval must be from .* got 500 millis/],
    [{ cooldown: Duration.hours(2) }, /cooldown must be from .* got 2 hours/],
    [{ increaseStep: -1 }, /increaseStep must be a number of requests per second above 0, got -1/],
    [{ minimumRequestsPerSecond: 0 }, /minimumRequestsPerSecond must be a number of requests per second above 0, got 0/],
  ])('GIVEN %j THEN AdaptivePacing.of refuses it, saying what was given', (props, message) => {
    expect(() => AdaptivePacing.of(props)).toThrow(message);
  });

  test('GIVEN a minimum or a step above the contract THEN the contract refuses it at synth time', () => {
    expect(() => VendorContract.of({ requestsPerSecond: 10, adaptivePacing: AdaptivePacing.of({ minimumRequestsPerSecond: 12 }) }))
      .toThrow(/minimumRequestsPerSecond \(12\) is above the contract \(10\)/);
    expect(() => VendorContract.of({ requestsPerSecond: 10, adaptivePacing: AdaptivePacing.of({ increaseStep: 20 }) }))
      .toThrow(/increaseStep \(20 requests per second\) is above the contract \(10\)/);
  });
});
