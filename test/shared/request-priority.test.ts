import { DEFAULT_PRIORITY_AGING_MS, effectivePriorityRank, requestPriorityProblem } from '../../src/shared/request-priority';

describe('request priority', () => {
  test('absent, high, normal and low are valid; anything else names the allowed values', () => {
    expect(requestPriorityProblem(undefined)).toBeUndefined();
    expect(requestPriorityProblem(null)).toBeUndefined();
    expect(requestPriorityProblem('high')).toBeUndefined();
    expect(requestPriorityProblem('low')).toBeUndefined();
    expect(requestPriorityProblem('urgent')).toBe("the priority must be one of 'high', 'normal', 'low' (given \"urgent\")");
    expect(requestPriorityProblem(1)).toContain('given 1');
  });

  test('rank: high 0, normal (also absent) 1, low 2, without waiting', () => {
    expect(effectivePriorityRank('high', 1000, 1000, DEFAULT_PRIORITY_AGING_MS)).toBe(0);
    expect(effectivePriorityRank(undefined, 1000, 1000, DEFAULT_PRIORITY_AGING_MS)).toBe(1);
    expect(effectivePriorityRank('low', undefined, 1000, DEFAULT_PRIORITY_AGING_MS)).toBe(2);
  });

  test('aging: one level per whole agingMs waited, never above high', () => {
    const aging = 30_000;
    expect(effectivePriorityRank('low', 0, aging - 1, aging)).toBe(2);
    expect(effectivePriorityRank('low', 0, aging, aging)).toBe(1);
    expect(effectivePriorityRank('low', 0, 2 * aging, aging)).toBe(0);
    expect(effectivePriorityRank('low', 0, 10 * aging, aging)).toBe(0);
    // A clock behind the start does not lower a request.
    expect(effectivePriorityRank('normal', 5000, 0, aging)).toBe(1);
  });
});
