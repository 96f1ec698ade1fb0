import { runAuditCli } from '../../src/throttled-proxy/access-log-audit-cli';
import {
  auditAccessLog, busiestCalendarSecond, contractWindow, parseAccessLogExport, reachedVendor, slidingWindowAudit, vendorPath,
} from '../../src/throttled-proxy/access-log-audit-report';

/** An access log line of the proxy, as the stage's format writes it (every value a string). */
function line(requestTimeEpoch: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    requestId: `r-${requestTimeEpoch}`,
    requestTime: '07/Dec/2026:12:00:00 +0000',
    requestTimeEpoch: String(requestTimeEpoch),
    httpMethod: 'POST',
    resourcePath: '/',
    status: '202',
    integrationStatus: '202',
    errorResponseType: '-',
    ...extra,
  };
}

const T0 = Date.UTC(2026, 11, 7, 12, 0, 0);

describe('GIVEN arrivals and a closed sliding window', () => {
  test('WHEN two arrivals are exactly the window apart THEN they share one window (closed, [a - W, a])', () => {
    expect(slidingWindowAudit([T0, T0 + 1000], 1000).busiest.count).toBe(2);
    expect(slidingWindowAudit([T0, T0 + 1001], 1000).busiest.count).toBe(1);
  });

  test('WHEN a burst straddles two calendar seconds THEN the sliding window sees it whole and the calendar second only half', () => {
    // 10 RPS contract: 6 requests at .700-.950 of one second and 6 at .000-.250 of the next.
    const arrivals = [...[700, 750, 800, 850, 900, 950].map((ms) => T0 + ms), ...[0, 50, 100, 150, 200, 250].map((ms) => T0 + 1000 + ms)];
    const { busiest, violations } = slidingWindowAudit(arrivals, 1000, 10);
    expect(busiest).toEqual({ count: 12, firstMs: T0 + 700, endMs: T0 + 1250 });
    expect(violations).toBe(2);
    expect(busiestCalendarSecond(arrivals)).toEqual({ count: 6, secondMs: T0 });
  });

  test('WHEN no arrival is given THEN the busiest window is empty and nothing is violated', () => {
    expect(slidingWindowAudit([], 1000, 1)).toEqual({ busiest: { count: 0, firstMs: NaN, endMs: NaN }, violations: 0 });
  });
});

describe('GIVEN a contract', () => {
  test('WHEN R >= 1 THEN the window is 1 s holding floor(R); the spread widens it', () => {
    expect(contractWindow(10)).toEqual({ windowMs: 1000, limit: 10 });
    expect(contractWindow(2.5, 7)).toEqual({ windowMs: 1007, limit: 2 });
  });

  test('WHEN R < 1 THEN the window is 1/R s holding one (R = 0.5: one in any 2 s)', () => {
    expect(contractWindow(0.5)).toEqual({ windowMs: 2000, limit: 1 });
    // 1/0.3 s = 3333.3 ms: on whole milliseconds, 3333 ms apart share a window, 3334 ms apart do not.
    expect(contractWindow(0.3)).toEqual({ windowMs: 3333, limit: 1 });
  });

  test('WHEN the contract or spread is not usable THEN it says what was given', () => {
    expect(() => contractWindow(0)).toThrow('requestsPerSecond must be a number above 0 (given 0)');
    expect(() => contractWindow(1, -1)).toThrow('the spread must be 0 ms or more (given -1)');
  });
});

describe('GIVEN access log lines', () => {
  test('WHEN API Gateway refused a request itself THEN it did not reach the vendor; the vendor\'s 429 and an integration timeout did', () => {
    expect(reachedVendor({ requestTimeEpoch: T0, status: '429', integrationStatus: '-', errorResponseType: 'THROTTLED' })).toBe(false);
    expect(reachedVendor({ requestTimeEpoch: T0, status: '403', errorResponseType: 'ACCESS_DENIED' })).toBe(false);
    expect(reachedVendor({ requestTimeEpoch: T0, status: '429', integrationStatus: '429', errorResponseType: '-' })).toBe(true);
    expect(reachedVendor({ requestTimeEpoch: T0, status: '504', integrationStatus: '-', errorResponseType: 'INTEGRATION_TIMEOUT' })).toBe(true);
  });

  test('WHEN the audit runs THEN it counts forwarded requests only, per route, with the vendor\'s 429s and the refusals apart', () => {
    const records = parseAccessLogExport([
      line(T0),
      line(T0 + 100, { status: '429', integrationStatus: '-', errorResponseType: 'THROTTLED' }),
      line(T0 + 200, { status: '429', integrationStatus: '429' }),
      line(T0 + 1200, { httpMethod: 'GET', resourcePath: '/{proxy+}', status: '200', integrationStatus: '200' }),
    ].map((l) => JSON.stringify(l)).join('\n'));
    const report = auditAccessLog(records, 1000, 2);
    expect(report).toMatchObject({
      lines: 4,
      forwarded: 3,
      refusedBeforeVendor: { THROTTLED: 1 },
      vendorThrottles: 1,
      fromMs: T0,
      toMs: T0 + 1200,
      busiest: { count: 2, firstMs: T0, endMs: T0 + 200 },
      violations: 0,
      byRoute: { 'POST /': { forwarded: 2, busiest: 2 }, 'GET /{proxy+}': { forwarded: 1, busiest: 1 } },
    });
  });

  test('WHEN the export is a filter-log-events document, its pages, or a get-query-results document THEN the same lines are read', () => {
    const lines = [line(T0), line(T0 + 500)];
    const events = { events: lines.map((l, i) => ({ logStreamName: 's', timestamp: T0 + i, message: JSON.stringify(l) })) };
    const page = (l: Record<string, string>) => JSON.stringify({ events: [{ message: JSON.stringify(l) }] }, null, 2);
    const query = { status: 'Complete', results: lines.map((l) => [{ field: '@timestamp', value: 'x' }, { field: '@message', value: JSON.stringify(l) }]) };
    const fieldsOnly = { results: lines.map((l) => [{ field: 'requestTimeEpoch', value: l.requestTimeEpoch }, { field: 'errorResponseType', value: '-' }]) };
    for (const text of [JSON.stringify(events), `${page(lines[0])}\n${page(lines[1])}`, events.events.map((e) => JSON.stringify(e)).join('\n'),
      JSON.stringify(query), JSON.stringify(fieldsOnly)]) {
      expect(parseAccessLogExport(text).map((r) => r.requestTimeEpoch)).toEqual([T0, T0 + 500]);
    }
  });

  test('WHEN a line is not the proxy\'s format THEN the error names it', () => {
    expect(() => parseAccessLogExport('{"requestId":"x"}')).toThrow(/entry 1: no requestTimeEpoch/);
    expect(() => parseAccessLogExport('{"requestTimeEpoch":"1"}\nnot json')).toThrow(/line 2: not JSON/);
  });
});

describe('GIVEN the audit CLI', () => {
  function run(argv: string[], stdin: string, files: Record<string, string> = {}): { status: number; out: string; err: string } {
    let out = '';
    let err = '';
    const status = runAuditCli(argv, {
      readFile: (p) => {
        if (files[p] === undefined) throw new Error(`no such file ${p}`);
        return files[p];
      },
      readStdin: () => stdin,
      out: (t) => { out += t; },
      err: (t) => { err += t; },
    });
    return { status, out, err };
  }
  const within = [0, 101, 202].map((ms) => JSON.stringify(line(T0 + ms))).join('\n');

  test('WHEN every window is within the contract THEN it exits 0 and says so', () => {
    const r = run(['--rps', '3'], within);
    expect(r.status).toBe(0);
    expect(r.out).toContain('busiest closed 1000 ms window: 3 request(s)');
    expect(r.out).toContain('no window over 3: within the contract on API Gateway\'s clock');
  });

  test('WHEN a window is over the contract THEN it exits 1 and counts the requests that found it full (JSON)', () => {
    const r = run(['--rps', '2', '--json'], within);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.out)).toMatchObject({ windowMs: 1000, limit: 2, violations: 1, busiest: { count: 3 } });
  });

  test('WHEN the spread widens the window THEN requests just over a second apart count together', () => {
    const apart = [0, 1003].map((ms) => JSON.stringify(line(T0 + ms))).join('\n');
    expect(run(['--rps', '1'], apart).status).toBe(0);
    expect(run(['--rps', '1', '--spread-ms', '5'], apart).status).toBe(1);
  });

  test('WHEN two proxies share one contract (blue/green) THEN their logs audited together find the window neither shows alone', () => {
    const blue = [0, 400].map((ms) => JSON.stringify(line(T0 + ms))).join('\n');
    const green = [200, 600].map((ms) => JSON.stringify(line(T0 + ms))).join('\n');
    const files = { 'blue.json': blue, 'green.json': green };
    expect(run(['--rps', '3', 'blue.json'], '', files).status).toBe(0);
    expect(run(['--rps', '3', 'green.json'], '', files).status).toBe(0);
    const both = run(['--rps', '3', '--json', 'blue.json', 'green.json'], '', files);
    expect(both.status).toBe(1);
    expect(JSON.parse(both.out)).toMatchObject({ forwarded: 4, busiest: { count: 4 }, violations: 1 });
  });

  test('WHEN the options are wrong or the input unreadable THEN it exits 2 with the reason', () => {
    expect(run([], within)).toMatchObject({ status: 2, err: expect.stringContaining('give --rps R (the contract) or --window-ms W') });
    expect(run(['--rps', '2', '--limit', '1'], within)).toMatchObject({ status: 2, err: expect.stringContaining('not both') });
    expect(run(['--rps', 'ten'], within)).toMatchObject({ status: 2, err: expect.stringContaining('--rps needs a number (given \'ten\')') });
    expect(run(['--window-ms', '1000', 'missing.json'], within)).toMatchObject({ status: 2, err: expect.stringContaining('no such file missing.json') });
    expect(run(['--help'], '')).toMatchObject({ status: 0, out: expect.stringContaining('usage:') });
  });
});

describe('GIVEN named limits (VendorLimit) and lines with $context.path', () => {
  // A 10 RPS contract with results (GET /results...) at 2 RPS: three fetches within one second
  // (one too many for results) among submissions (POST /, within the contract).
  const fetch = (ms: number, id: string) => line(T0 + ms, { httpMethod: 'GET', resourcePath: '/{proxy+}', path: `/vendor/results/${id}`, stage: 'vendor' });
  const submit = (ms: number) => line(T0 + ms, { path: '/vendor/', stage: 'vendor' });
  const lines = [submit(0), fetch(100, 'a'), submit(150), fetch(400, 'b'), fetch(900, 'c'), fetch(2500, 'd'), line(T0 + 950, {
    httpMethod: 'GET', path: '/vendor/results/e', stage: 'vendor', errorResponseType: 'THROTTLED', status: '429',
  })];
  const results = { name: 'results', requestsPerSecond: 2, methods: ['GET'], pathPrefix: '/results' };

  test('WHEN the path is read THEN the stage is stripped (AWS logs /{stage}/...) and older lines have none', () => {
    expect(vendorPath({ requestTimeEpoch: 0, path: '/vendor/results/1', stage: 'vendor' })).toBe('/results/1');
    expect(vendorPath({ requestTimeEpoch: 0, path: '/vendor/', stage: 'vendor' })).toBe('/');
    expect(vendorPath({ requestTimeEpoch: 0, path: '/vendor', stage: 'vendor' })).toBe('/');
    // A custom domain's path has no stage: kept as requested.
    expect(vendorPath({ requestTimeEpoch: 0, path: '/vendorish/x', stage: 'vendor' })).toBe('/vendorish/x');
    expect(vendorPath({ requestTimeEpoch: 0, path: '-', stage: 'vendor' })).toBeUndefined();
    expect(vendorPath({ requestTimeEpoch: 0 })).toBeUndefined();
  });

  test('WHEN audited per limit THEN each limit gets its busiest closed window and violations over the calls it binds (refusals excluded)', () => {
    const report = auditAccessLog(parseAccessLogExport(lines.map((l) => JSON.stringify(l)).join('\n')), 1000, 10, {
      namedLimits: [results, { name: 'submissions', requestsPerSecond: 1, methods: ['POST'] }],
    });
    expect(report.violations).toBe(0);
    expect(report.byLimit.results).toMatchObject({
      windowMs: 1000, limit: 2, forwarded: 4, busiest: { count: 3, firstMs: T0 + 100, endMs: T0 + 900 }, violations: 1,
    });
    expect(report.byLimit.submissions).toMatchObject({ windowMs: 1000, limit: 1, forwarded: 2, busiest: { count: 2 }, violations: 1 });
  });

  test('WHEN the spread is given THEN it widens each limit\'s window too', () => {
    const apart = parseAccessLogExport([fetch(0, 'a'), fetch(1003, 'b')].map((l) => JSON.stringify(l)).join('\n'));
    const audit = (spreadMs: number) => auditAccessLog(apart, 1000, undefined, {
      namedLimits: [{ ...results, requestsPerSecond: 1 }], spreadMs,
    }).byLimit.results;
    expect(audit(0)).toMatchObject({ windowMs: 1000, violations: 0 });
    expect(audit(5)).toMatchObject({ windowMs: 1005, violations: 1 });
  });

  test('WHEN a line has no path (a log written before the format had it) THEN a per-limit audit refuses it, naming why', () => {
    expect(() => auditAccessLog(parseAccessLogExport(JSON.stringify(line(T0))), 1000, 10, { namedLimits: [results] }))
      .toThrow(/no path or method in the access log, so named limits cannot be audited/);
    // Without named limits it audits the contract as before.
    expect(auditAccessLog(parseAccessLogExport(JSON.stringify(line(T0))), 1000, 10).byLimit).toEqual({});
  });

  test('WHEN the CLI is given --limit NAME:RPS[:METHODS[:PATH_PREFIX]] THEN it reports each limit and exits 1 on a violation of one', () => {
    let out = '';
    let err = '';
    const io = { readFile: () => '', readStdin: () => lines.map((l) => JSON.stringify(l)).join('\n'), out: (t: string) => { out += t; }, err: (t: string) => { err += t; } };
    expect(runAuditCli(['--rps', '10', '--limit', 'results:2:GET:/results'], io)).toBe(1);
    expect(out).toContain('limit results (2 rps, GET /results): 4 forwarded, busiest closed 1000 ms window 3');
    expect(out).toContain('1 request(s) found their window over it: over the limit');
    expect(out).toContain('no window over 10: within the contract');
    out = '';
    expect(runAuditCli(['--rps', '10', '--limit', 'results:3:GET', '--json'], io)).toBe(0);
    expect(JSON.parse(out).byLimit.results).toMatchObject({ limit: 3, violations: 0, busiest: { count: 3 } });
    expect(runAuditCli(['--rps', '10', '--limit', 'results:x'], io)).toBe(2);
    expect(err).toContain('--limit needs NAME:RPS[:METHODS[:PATH_PREFIX]]');
    err = '';
    expect(runAuditCli(['--rps', '10', '--limit', 'r:2', '--limit', 'r:3'], io)).toBe(2);
    expect(err).toContain('--limit r is given twice');
  });
});
