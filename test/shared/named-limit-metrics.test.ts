import { CountedLimitWaits, recordNamedLimitWaits } from '../../src/shared/named-limit-metrics';

describe('NamedLimitWaits: each held-back call once per limit and invocation', () => {
  test('GIVEN a call held back at two reservations, and a call held back by two limits WHEN recorded THEN each limit counts each call once', () => {
    const metrics = { addMetric: jest.fn() };
    const counted: CountedLimitWaits = new Map();
    recordNamedLimitWaits(metrics, { limitWaitCalls: { results: [0, 1], exports: [1] } }, ['a', 'b'], counted);
    // The next reservation: 'b' is still held back by results, 'c' (a new call at index 0) too.
    recordNamedLimitWaits(metrics, { limitWaitCalls: { results: [0, 1] } }, ['c', 'b'], counted);
    recordNamedLimitWaits(metrics, {}, ['b'], counted);
    expect(metrics.addMetric.mock.calls).toEqual([
      ['NamedLimitWaits.results', 'Count', 2],
      ['NamedLimitWaits.exports', 'Count', 1],
      ['NamedLimitWaits.results', 'Count', 1],
    ]);
  });

  test('GIVEN only calls already counted WHEN recorded THEN nothing is published', () => {
    const metrics = { addMetric: jest.fn() };
    const counted: CountedLimitWaits = new Map([['results', new Set(['a'])]]);
    recordNamedLimitWaits(metrics, { limitWaitCalls: { results: [0] } }, ['a'], counted);
    expect(metrics.addMetric).not.toHaveBeenCalled();
  });
});
