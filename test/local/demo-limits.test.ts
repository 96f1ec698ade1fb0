import { scenarios } from '../../local/bench';
import { DEFAULT_DEMO_OPTIONS, demoWaitMs, parseDemoArgs, parseLimitFlag } from '../../local/demo';

describe('demo --limit (issue 14, item 3)', () => {
  test('GIVEN --limit flags WHEN parsed THEN each becomes a named limit (methods upper case, optional path prefix), repeatable', () => {
    expect(parseLimitFlag('results:2:get')).toEqual({ name: 'results', requestsPerSecond: 2, methods: ['GET'] });
    expect(parseLimitFlag('status:5:GET,DELETE:/status')).toEqual({ name: 'status', requestsPerSecond: 5, methods: ['GET', 'DELETE'], pathPrefix: '/status' });
    expect(parseLimitFlag('all:3')).toEqual({ name: 'all', requestsPerSecond: 3 });
    expect(parseDemoArgs(['--limit', 'results:2:GET', '--limit=writes:4:POST']).limits).toEqual([
      { name: 'results', requestsPerSecond: 2, methods: ['GET'] },
      { name: 'writes', requestsPerSecond: 4, methods: ['POST'] },
    ]);
    expect(parseDemoArgs([]).limits).toBeUndefined();
  });

  test('GIVEN a malformed --limit WHEN parsed THEN it is refused with the expected form', () => {
    expect(() => parseLimitFlag('results')).toThrow("--limit needs NAME:RPS[:METHODS[:PATH_PREFIX]], e.g. results:2:GET (given 'results')");
    expect(() => parseLimitFlag('results:0:GET')).toThrow(/--limit needs NAME:RPS/);
  });

  test('GIVEN a named limit slower than the contract WHEN sizing the wait THEN the calls it binds are given their own slots', () => {
    const options = { ...DEFAULT_DEMO_OPTIONS, requests: 20, rps: 10 };
    expect(demoWaitMs({ ...options, limits: [{ name: 'results', requestsPerSecond: 1 }] })).toBeGreaterThan(demoWaitMs(options));
  });
});

describe('bench: a named limit inside the contract', () => {
  test('the full run has an emulated limit study row (submissions at 4 RPS under 10 RPS, a 60-request backlog); the quick run does not', () => {
    const full = scenarios({ quick: false, modeledOnly: false, emulated100: false }).filter((s) => s.study === 'issue-14-limits');
    expect(full).toEqual([expect.objectContaining({
      name: 'limit-10rps-submissions-4rps', rps: 10, kind: 'emulated', limits: [{ name: 'submissions', requestsPerSecond: 4, methods: ['POST'] }],
    })]);
    expect(scenarios({ quick: true, modeledOnly: false, emulated100: false }).some((s) => s.study === 'issue-14-limits')).toBe(false);
  });
});
