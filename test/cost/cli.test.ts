/**
 * The command: its JSON last line and its errors. The example app is synthesized once, and the
 * command reads that assembly (--assembly), as it does after synthesizing it itself.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { main, parseArgs, UsageError } from '../../cost/cost';
import { SERVICE_KEYS } from '../../cost/model';
import { knownRegions, PRICE_DATE } from '../../cost/prices';
import { buildExampleApp } from '../../examples/app';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t: string) => out.push(...t.split('\n')), err: (t: string) => err.push(...t.split('\n')) }, out, err };
}

describe('npm run cost', () => {
  let dir: string;
  let stackName: string;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cost-test-'));
    const { app, stack } = buildExampleApp({ requestsPerSecond: 10 }, dir);
    app.synth();
    stackName = stack.stackName;
  });

  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('--json prints the summary as its last line', async () => {
    // WHEN
    const { io, out } = capture();
    const code = await main(['--assembly', dir, '--stack', stackName, '--json'], io);

    // THEN
    expect(code).toBe(0);
    const last = JSON.parse(out[out.length - 1]);
    expect(last).toEqual(expect.objectContaining({
      perMillionRequestsUsd: expect.any(Number),
      region: 'us-east-1',
      priceDate: PRICE_DATE,
      rps: 10,
      trafficRps: 10,
      requestsPerMonth: 25_920_000,
      monthlyUsd: expect.any(Number),
    }));
    expect(Object.keys(last.byService)).toEqual(SERVICE_KEYS);
    const sum = Object.values(last.byService as Record<string, number>).reduce((a, b) => a + b, 0);
    expect(sum).toBeCloseTo(last.perMillionRequestsUsd, 2);
    expect(last.byService.stepFunctionsStandard).toBeCloseTo(50, 6); // 2 transitions x $25 per million
    expect(last.byService.apiGateway).toBeCloseTo(7, 6); // proxy + webhook x $3.50 per million
    expect(last.monthlyUsd).toBeCloseTo(last.perMillionRequestsUsd * 25.92, 1);
    // The example's own ProcessResult transition is not the orchestrator's.
    expect(last.orchestratorPerMillionRequestsUsd).toBeCloseTo(last.perMillionRequestsUsd - 25, 4);
    // The example's result fetch (FetchResult, callVendorTask) is costed per fetch, and per order with the submission.
    expect(last.resultFetch).toEqual(expect.objectContaining({ fetchesPerRequest: 1, perMillionFetchesUsd: expect.any(Number) }));
    expect(last.resultFetch.byService.stepFunctionsStandard).toBeCloseTo(25, 6); // the FetchResult transition
    expect(last.resultFetch.byService.apiGateway).toBeCloseTo(3.5, 6); // one proxy call
    expect(last.resultFetch.perMillionOrdersUsd).toBeCloseTo(last.perMillionRequestsUsd + last.resultFetch.perMillionFetchesUsd, 3);
    for (const key of ['publishedPattern', 'standardHttpTask']) {
      expect(last.comparisons[key]).toEqual(expect.objectContaining({ perMillionRequestsUsd: expect.any(Number), byService: expect.any(Object) }));
    }
    // The text report comes first: the per-service table, the comparison, the assumptions.
    const text = out.join('\n');
    expect(text).toContain('THIS STACK, BY SERVICE');
    expect(text).toContain('COMPARISON');
    expect(text).toContain('RESULT FETCH (FetchResult: callVendorTask), PER FETCH');
    expect(text).toContain('ASSUMPTIONS');
  });

  test('--region prices the same usage with another table', async () => {
    const us = capture();
    const eu = capture();
    await main(['--assembly', dir, '--stack', stackName, '--traffic-rps', '5', '--json'], us.io);
    await main(['--assembly', dir, '--stack', stackName, '--traffic-rps', '5', '--region', 'eu-west-1', '--json'], eu.io);
    const usLast = JSON.parse(us.out[us.out.length - 1]);
    const euLast = JSON.parse(eu.out[eu.out.length - 1]);
    expect(euLast.region).toBe('eu-west-1');
    expect(euLast.trafficRps).toBe(5);
    expect(euLast.byService.stepFunctionsStandard).toBe(usLast.byService.stepFunctionsStandard);
    expect(euLast.byService.dynamodb).toBeGreaterThan(usLast.byService.dynamodb);
  });

  test('an unknown region exits with an error listing the known ones, before synthesizing anything', async () => {
    const { io, out, err } = capture();
    const code = await main(['--rps', '10', '--region', 'mars-north-1'], io);
    expect(code).toBe(2);
    expect(out).toEqual([]);
    expect(err.join('\n')).toContain(`No prices for region 'mars-north-1'. Known regions: ${knownRegions().join(', ')}`);
  });

  test('bad command lines are usage errors', async () => {
    expect(() => parseArgs(['--rps'])).toThrow(UsageError);
    expect(() => parseArgs(['--rps', '0'])).toThrow(/greater than 0/);
    expect(() => parseArgs(['--frobnicate'])).toThrow(/unknown option --frobnicate/);
    expect(() => parseArgs(['--assembly', 'x'])).toThrow(/--stack/);
    expect(() => parseArgs(['--assembly', 'x', '--stack', 'y', '--rps', '3'])).toThrow(/--traffic-rps/);
    expect(parseArgs(['--rps=4', '--json']).rps).toBe(4);
    // Per-key credentials' keys and the example's jobs-in-flight limit: whole numbers; the limit only for the example.
    expect(parseArgs(['--keys', '50', '--max-jobs-in-flight', '100'])).toEqual(expect.objectContaining({ keys: 50, maxJobsInFlight: 100 }));
    expect(() => parseArgs(['--keys', '0'])).toThrow("--keys must be a whole number >= 1, got '0'");
    expect(() => parseArgs(['--max-jobs-in-flight', '2.5'])).toThrow(/whole number/);
    expect(() => parseArgs(['--assembly', 'x', '--stack', 'y', '--max-jobs-in-flight', '3'])).toThrow(/read from the template/);
    const { io, err } = capture();
    expect(await main(['--nope'], io)).toBe(2);
    expect(err.join('\n')).toContain('Usage: npm run cost');
  });
});
