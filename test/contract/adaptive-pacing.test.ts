import { Duration } from 'aws-cdk-lib';
import { AdaptivePacing, VendorContract } from '../../src';
import { AdaptiveSpec, adaptiveRateAt, decreasedState, parseAdaptiveSpec, recoveryMs } from '../../src/contract/adaptive-spec';

const T0 = 1_700_000_000_000;
const SPEC: AdaptiveSpec = { decreaseFactor: 0.5, probeIntervalMs: 10_000, increaseStep: 1, minimumRequestsPerSecond: 2, cooldownMs: 2000 };

describe('adaptive rate arithmetic (injected clock)', () => {
  test('GIVEN no stored state WHEN reading THEN the adaptive rate is the rate in force', () => {
    expect(adaptiveRateAt(T0, 10, undefined, SPEC)).toBe(10);
  });

  test('GIVEN a decrease WHEN time passes THEN the rate climbs one step per whole probe interval, lazily', () => {
    const state = { rps: 4, sinceMs: T0 };
    expect(adaptiveRateAt(T0, 10, state, SPEC)).toBe(4);
    expect(adaptiveRateAt(T0 + 9_999, 10, state, SPEC)).toBe(4);
    expect(adaptiveRateAt(T0 + 10_000, 10, state, SPEC)).toBe(5);
    expect(adaptiveRateAt(T0 + 35_000, 10, state, SPEC)).toBe(7);
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
    expect(next).toEqual({ rps: 3.5, sinceMs: T0 + 30_000 });
    expect(adaptiveRateAt(T0 + 39_999, 10, next, SPEC)).toBe(3.5);
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
