/**
 * The demo's quota flag (issue 14, item 2): `--quota LIMIT/SECONDS` and the wait it sizes.
 */
import { scenarios } from '../../local/bench';
import { DEFAULT_DEMO_OPTIONS, demoWaitMs, parseDemoArgs } from '../../local/demo';

describe('demo --quota', () => {
  test('LIMIT/SECONDS is read, inline or as the next argument; anything else is refused with the expected form', () => {
    expect(parseDemoArgs(['--quota', '5/3']).quota).toEqual({ limit: 5, periodSeconds: 3 });
    expect(parseDemoArgs(['--quota=100/60', '--requests', '10']).quota).toEqual({ limit: 100, periodSeconds: 60 });
    expect(parseDemoArgs([]).quota).toBeUndefined();
    expect(() => parseDemoArgs(['--quota', '5'])).toThrow(/--quota needs LIMIT\/SECONDS.*given '5'/);
    expect(() => parseDemoArgs(['--quota', '0/3'])).toThrow(/--quota needs LIMIT\/SECONDS/);
  });

  test('the wait covers one quota period per LIMIT calls: 12 orders (24 calls) at 5 per 3 s take at least 15 s', () => {
    const o = { ...DEFAULT_DEMO_OPTIONS, requests: 12, rps: 5, callbackTimeoutMs: 1000, quota: { limit: 5, periodSeconds: 3 } };
    expect(demoWaitMs(o)).toBeGreaterThanOrEqual(Math.ceil(24 / 5) * 3000);
    expect(demoWaitMs(o)).toBeGreaterThan(demoWaitMs({ ...o, quota: undefined }));
  });
});

describe('bench: a quota spent and refilled', () => {
  test('the full run has an emulated quota study row (20 per 3 s under 10 RPS, a 60-request backlog); the quick run does not', () => {
    const full = scenarios({ quick: false, modeledOnly: false, emulated100: false }).filter((s) => s.study === 'issue-14-quota');
    expect(full).toEqual([expect.objectContaining({ name: 'quota-10rps-refill', rps: 10, kind: 'emulated', quota: { limit: 20, periodMs: 3000 } })]);
    expect(scenarios({ quick: true, modeledOnly: false, emulated100: false }).some((s) => s.study === 'issue-14-quota')).toBe(false);
  });
});
