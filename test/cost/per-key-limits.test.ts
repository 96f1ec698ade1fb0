/**
 * Per-key limits in the cost model (cost/per-key-limits.ts): the lines follow the template's
 * KEY_LIMITS (rate, jobs in flight, quotas), the batch's distinct keys follow the traffic's spread
 * over keys, and the per-key figures (per call, per set-aside, per active and idle key) follow the
 * lines.
 */
import * as fs from 'fs';
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { SECONDS_PER_MONTH } from '../../cost/assumptions';
import { costOf, parseArgs, synthesizeExample, UsageError } from '../../cost/cost';
import { DEFAULT_DERIVE_OPTIONS, DeriveOptions, deriveStack, loadStack, stackFromTemplate } from '../../cost/derive';
import { priceDesign } from '../../cost/model';
import { distinctKeysPerBatch, perKeyFigures } from '../../cost/per-key-limits';
import { pricesFor } from '../../cost/prices';
import { markdownReport, summary, textReport } from '../../cost/report';
import { AsyncExternalApiOrchestrator, KeyLimits, VendorContract, VendorCredentials, VendorQuota } from '../../src';
import { KEY_SETTINGS_CACHE_MAX_KEYS } from '../../src/shared/key-settings';
import { testStack } from '../util';

/** The example's shape (submit, fetch, ProcessResult), every task keyed by $.customerId. */
function synthesize(contract: VendorContract, perKeyCredentials = false) {
  const stack = testStack();
  const vendor = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    contract,
    batchSize: 20,
    maxConcurrency: 2,
    callbackTimeout: Duration.minutes(30),
    ...(perKeyCredentials ? { proxy: { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}', headerName: 'x-api-key' }) } } : {}),
  });
  const key = { key: sfn.JsonPath.stringAt('$.customerId') };
  const submit = vendor.submitJobTask(stack, 'SubmitJob', {
    payload: sfn.TaskInput.fromJsonPathAt('$.order'), requestId: sfn.JsonPath.stringAt('$.orderId'), resultPath: '$.vendor', ...key,
  });
  const fetch = vendor.callVendorTask(stack, 'FetchResult', {
    path: sfn.JsonPath.format('/{}/result', sfn.JsonPath.stringAt('$.vendor.jobId')), resultPath: '$.fetched', ...key,
  });
  const main = new sfn.StateMachine(stack, 'Main', {
    definitionBody: sfn.DefinitionBody.fromChainable(submit.next(fetch).next(new sfn.Pass(stack, 'ProcessResult'))),
  });
  vendor.registerWorkflow(main);
  return stackFromTemplate(Template.fromStack(stack).toJSON(), stack.stackName);
}

const options = (trafficRps: number, more: Partial<DeriveOptions> = {}): DeriveOptions => ({ ...DEFAULT_DERIVE_OPTIONS, trafficRps, ...more });
const perCall = (d: ReturnType<typeof deriveStack>, what: RegExp) => d.perKey!.perCall.lines.filter((l) => what.test(l.what));
const one = (d: ReturnType<typeof deriveStack>, what: RegExp) => {
  const found = perCall(d, what);
  if (found.length !== 1) throw new Error(`${found.length} per-key lines match ${what}: ${d.perKey!.perCall.lines.map((l) => l.what).join(', ')}`);
  return found[0];
};

describe('per-key limits in the cost model', () => {
  // The example app as `npm run cost -- --per-key-rps 2` synthesizes it (every task keyed by customerId).
  const example = synthesizeExample(10, undefined, { requestsPerSecond: 2 });
  const rateOnly = loadStack(example.dir, example.stackName);
  afterAll(() => fs.rmSync(example.dir, { recursive: true, force: true }));

  test('distinct keys in a batch: 1 with one key, the whole batch with many quiet keys, K (1 - e^(-F/K)) between', () => {
    expect(distinctKeysPerBatch(20, 1)).toBe(1);
    expect(distinctKeysPerBatch(20, 0.5)).toBe(1);
    expect(distinctKeysPerBatch(20, 1e9)).toBeCloseTo(20, 3);
    expect(distinctKeysPerBatch(20, 20)).toBeCloseTo(20 * (1 - Math.exp(-1)), 6);
  });

  test('without KEY_LIMITS in the template: no per-key lines, figures or monthly items', () => {
    const keyless = synthesize(VendorContract.of({ requestsPerSecond: 10 }));
    const d = deriveStack(keyless, options(10));
    expect(d.perKey).toBeUndefined();
    expect(d.model.perKeyLimits).toBeUndefined();
    expect(d.usage.lines.filter((l) => /key (pacer|settings|plan|slots|pause)/.test(l.what))).toEqual([]);
    expect(d.usage.monthly.filter((l) => /key settings/.test(l.what))).toEqual([]);
    expect(perKeyFigures(d, pricesFor('us-east-1'), 10)).toBeUndefined();
  });

  test('rate only: per distinct key per batch 1 RRU (key items), 2 WRU (plan, slots); per call the pause check\'s second read; settings reads bounded by the cache', () => {
    // 10 keys at 1 call/s, batches of 20 (backlogged at the contract).
    const d = deriveStack(rateOnly, options(10, { keyCallRps: 1 }));
    const m = d.model.perKeyLimits!;
    expect(m.defaults.requestsPerSecond).toBe(2);
    expect(m.activeKeys).toBe(10);
    expect(m.fill).toBe(20);
    const share = distinctKeysPerBatch(20, 10) / 20;
    expect(one(d, /BatchGetItem \(key pacer items\)/).perRequest).toBeCloseTo(share, 9);
    expect(one(d, /UpdateItem \(key plan\)/).perRequest).toBeCloseTo(share, 9);
    expect(one(d, /UpdateItem \(key slots\)/).perRequest).toBeCloseTo(share, 9);
    expect(one(d, /GetItem \(key pause check\)/).perRequest).toBe(1);
    // Settings: 10 keys x 2 dispatcher environments / 30 s = 0.667 reads/s (fewer than the keys asked for), 0.5 RRU each, over 10 calls/s.
    expect(one(d, /key settings, cached/).perRequest).toBeCloseTo((0.5 * (10 * 2) / 30) / 10, 9);
    expect(one(d, /key settings, cached/).what).toContain('VendorKeySettingsTable');
    // No per-key quotas or places: no such lines.
    expect(perCall(d, /quota|job place|request key/)).toEqual([]);
    // In the per-request table and the fetch's too (a fetch is a call of its key); a fetch holds no place.
    for (const l of d.perKey!.perCall.lines) expect(d.usage.lines).toContainEqual(l);
    expect(d.fetch!.usage.lines.filter((l) => /key pacer items|key pause check/.test(l.what))).toHaveLength(2);
    // Stored keys' override items a month.
    expect(d.usage.monthly.map((l) => l.what)).toContain('DynamoDB storage (key settings items)');
  });

  test('the spread over keys decides the per-call share: one hot key shares a batch\'s reads and writes, many quiet keys pay them per call', () => {
    const hot = deriveStack(rateOnly, options(10, { keyCallRps: 10 }));
    const quiet = deriveStack(rateOnly, options(10, { keyCallRps: 0.001 }));
    expect(one(hot, /key plan/).perRequest).toBeCloseTo(1 / 20, 9);
    expect(one(quiet, /key plan/).perRequest).toBeCloseTo(distinctKeysPerBatch(20, 10_000) / 20, 9);
    expect(one(quiet, /key plan/).perRequest).toBeGreaterThan(0.99);
    // More keys than an environment caches: every key a batch holds is read.
    const many = deriveStack(rateOnly, options(10, { keyCallRps: 10 / (2 * KEY_SETTINGS_CACHE_MAX_KEYS) }));
    expect(one(many, /key settings, cached/).perRequest).toBeCloseTo(0.5 * one(many, /key pacer items/).perRequest, 9);
    // A shorter settings cache (KEY_SETTINGS_CACHE_TTL_MS, set only by the local fault suite): more reads.
    const dispatcher = rateOnly.resources.find((r) => r.properties?.Environment?.Variables?.KEY_LIMITS !== undefined)!;
    dispatcher.properties.Environment.Variables.KEY_SETTINGS_CACHE_TTL_MS = '1000';
    try {
      // 10 keys x 2 environments / 1 s = 20 misses/s is more than the 4.3 keys/s the batches ask for: every key asked for is read.
      expect(one(deriveStack(rateOnly, options(10, { keyCallRps: 1 })), /key settings, cached/).perRequest).toBeCloseTo(0.5 * distinctKeysPerBatch(20, 10) / 20, 9);
    } finally {
      delete dispatcher.properties.Environment.Variables.KEY_SETTINGS_CACHE_TTL_MS;
    }
    // The default: every key at its limit (2 rps): 5 active keys.
    expect(deriveStack(rateOnly, options(10)).model.perKeyLimits!.activeKeys).toBe(5);
    // A key called above its limit: said, not hidden.
    expect(deriveStack(rateOnly, options(10, { keyCallRps: 3 })).warnings.join('\n')).toContain('above the per-key limit of 2 rps');
    expect(() => deriveStack(rateOnly, options(10, { keyCallRps: 0 }))).toThrow(/keyCallRps must be a number greater than 0/);
  });

  test('per-key quotas and jobs in flight: the key\'s counter per quota per call, its places item twice per job and once per callback', () => {
    const full = synthesize(VendorContract.of({
      requestsPerSecond: 10,
      maxJobsInFlight: 100,
      quotas: [VendorQuota.perDay(100_000)],
      perKey: KeyLimits.of({ requestsPerSecond: 2, maxJobsInFlight: 5, quotas: [VendorQuota.perDay(10_000)] }),
    }));
    const d = deriveStack(full, options(10, { keyCallRps: 1 }));
    const share = distinctKeysPerBatch(20, 10) / 20;
    expect(one(d, /key quota counters/).perRequest).toBeCloseTo(0.5 * share, 9);
    expect(one(d, /UpdateItem \(key quota units\)/).perRequest).toBe(1);
    expect(one(d, /key job place: take and renew/).perRequest).toBe(2);
    expect(one(d, /free the key job place/).perRequest).toBe(1);
    expect(one(d, /GetItem \(request key\)/).perRequest).toBe(1);
    // A fetch spends its key's quota but holds no place.
    expect(d.fetch!.usage.lines.filter((l) => /key quota units/.test(l.what))).toHaveLength(1);
    expect(d.fetch!.usage.lines.filter((l) => /job place|request key/.test(l.what))).toEqual([]);
    // The dispatcher keeps a keyless EMF document (JobsInFlight): a document per key comes on top of it.
    expect(one(d, /dispatcher logs \(per-key limits\)/).derivation).toContain('beside the keyless one');
    expect(one(deriveStack(rateOnly, options(10, { keyCallRps: 1 })), /dispatcher logs \(per-key limits\)/).derivation).toContain('instead of the keyless one');
  });

  test('the figures: per call the sum of the per-key lines, an active key its calls a month plus its idle cost, an idle key its override item (and its secret with credentials per key)', () => {
    const prices = pricesFor('us-east-1');
    const d = deriveStack(rateOnly, options(10, { keyCallRps: 1 }));
    const k = perKeyFigures(d, prices, 10)!;
    expect(k.perCall.perMillionRequestsUsd).toBeCloseTo(priceDesign(d.perKey!.perCall, prices, 10).perMillionRequestsUsd, 9);
    expect(k.idleKeyMonthUsd).toBeGreaterThan(0);
    expect(k.idleKeyMonthUsd).toBeLessThan(1e-6); // a few hundred bytes at $0.25 per GB-month
    expect(k.activeKeyMonthUsd).toBeCloseTo((k.perCall.perMillionRequestsUsd / 1e6) * SECONDS_PER_MONTH + k.idleKeyMonthUsd, 9);
    // A set-aside: its delayed copy (1 SQS request), the key's cursor write (1 WRU), the batch's per-key work again.
    expect(d.perKey!.setAside.lines.find((l) => /delayed copy/.test(l.what))!.perRequest).toBe(1);
    expect(d.perKey!.setAside.lines.find((l) => /set-aside cursor/.test(l.what))!.perRequest).toBe(1);
    expect(k.setAside.perMillionRequestsUsd).toBeGreaterThan(0.4 + 0.625);
    // The key rules come with keys: counted from the template.
    expect(k.keyRules.count).toBeGreaterThan(0);
    // With credentials per key: the idle key's secret, and the active key's secret reads.
    const withSecrets = synthesize(VendorContract.of({ requestsPerSecond: 10, perKey: KeyLimits.of({ requestsPerSecond: 2 }) }), true);
    const s = perKeyFigures(deriveStack(withSecrets, options(10, { keyCallRps: 1 })), prices, 10)!;
    expect(s.idleKeyMonthUsd).toBeCloseTo(0.4 + k.idleKeyMonthUsd, 9);
    expect(s.activeKeyMonthUsd).toBeGreaterThan(s.idleKeyMonthUsd + (s.perCall.perMillionRequestsUsd / 1e6) * SECONDS_PER_MONTH);
  });

  test('the report: the per-key figures in the JSON summary, the text and the Markdown (docs/cost.md)', () => {
    const result = costOf(example.dir, example.stackName, 'us-east-1', { ...DEFAULT_DERIVE_OPTIONS, trafficRps: 10, keyCallRps: 0.1 });
    const k = summary(result).perKey!;
    expect(k).toEqual(expect.objectContaining({ keyCallRps: 0.1, activeKeys: 100, perMillionIdleKeysMonthUsd: expect.any(Number) }));
    expect(k.perMillionCallsUsd).toBeCloseTo(result.perKey!.perCall.perMillionRequestsUsd, 3);
    expect(k.activeKeyMonthUsd).toBeCloseTo(result.perKey!.activeKeyMonthUsd, 3);
    expect(textReport(result)).toContain('PER-KEY LIMITS');
    expect(markdownReport(result)).toContain('per-key limits add $');
    // Without per-key limits: nothing of it.
    expect(summary({ ...result, perKey: undefined }).perKey).toBeUndefined();
  });

  test('command line: --per-key-rps and --key-call-rps are read; --per-key-rps synthesizes (not with --assembly); a per-key place limit needs the contract\'s', () => {
    expect(parseArgs(['--per-key-rps', '2', '--key-call-rps', '0.5'])).toEqual(expect.objectContaining({ perKeyRps: 2, keyCallRps: 0.5 }));
    expect(() => parseArgs(['--per-key-rps', '0'])).toThrow(UsageError);
    expect(() => parseArgs(['--assembly', 'x', '--stack', 'S', '--per-key-rps', '2'])).toThrow(/read from the template/);
    expect(() => parseArgs(['--per-key-rps', '2', '--per-key-max-jobs-in-flight', '5'])).toThrow(/needs --per-key-rps R and --max-jobs-in-flight N/);
    expect(parseArgs(['--per-key-rps', '2', '--max-jobs-in-flight', '50', '--per-key-max-jobs-in-flight', '5']).perKeyMaxJobsInFlight).toBe(5);
  });
});
