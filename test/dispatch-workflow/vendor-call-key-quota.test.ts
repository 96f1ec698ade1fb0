/**
 * Per-key quotas at the vendor caller (issue 15, design docs/design/per-key-limits.md 1.5): the
 * key's units are spent first (`key-quota#<name>#<periodStartMs>#<key>`), then the contract's; a
 * key out of its quota waits for its period (or fails under FAIL) without a contract unit spent.
 * DynamoDB mocked (aws-sdk-client-mock); injected clock (no real waits).
 */
import { DynamoDBClient, GetItemCommand, PutItemCommand, UpdateItemCommand, UpdateItemCommandInput } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { testVendorCallConfig } from './vendor-call-config';
import { keyQuotaCounterKey, keyQuotaSpecs } from '../../src/contract/key-quota-ledger';
import { QuotaSpec } from '../../src/contract/quota-period';
import { callVendor, QUOTA_EXHAUSTED_REASON, VendorCallConfig, VendorCallDeps, VendorCallEvent } from '../../src/dispatch-workflow/vendor-call';
import type { KeyLimitsSpec } from '../../src/shared/key-limits';

const ddb = mockClient(DynamoDBClient);
const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined } as any;
const conditionFailed = Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });

// A 3 s fixed period; now 1 s into [T0, T0 + 3000), the slot 300 ms ahead (no boundary within 250 ms).
const T0 = 1_800_000_000_000 - (1_800_000_000_000 % 3000);
const NOW = T0 + 1000;
const SHORT: QuotaSpec = { name: 'short', limit: 100, unit: 'fixed', periodMs: 3000 };
const DAILY: QuotaSpec = { name: 'daily', limit: 1000, unit: 'day' };

function keyLimits(quotas: Record<string, number>): KeyLimitsSpec {
  return { requestsPerSecond: 5, quotas, priorityAgingMs: 30_000, paused: false };
}

function deps(config: Partial<VendorCallConfig>, fetched: string[], metrics: Array<[string, string | undefined]> = []): VendorCallDeps {
  let t = NOW;
  return {
    dynamodb: new DynamoDBClient({ region: 'us-east-1' }),
    config: testVendorCallConfig(config),
    sign: async ({ headers }) => headers,
    fetch: async (url) => {
      fetched.push(String(url));
      return new Response('{"jobId":"j-1"}', { status: 202, headers: { 'content-type': 'application/json' } });
    },
    logger: silent,
    metrics: { addMetric: (name, _unit, _value, key) => { metrics.push([name, key]); } },
    clock: { now: () => t, sleep: async (ms: number) => { t += ms; } },
  };
}

const event = (extra: Partial<VendorCallEvent> = {}): VendorCallEvent => ({ requestId: 'r-1', body: {}, slotAtMs: NOW + 300, ...extra });
/** The partition keys of the quota counters written, in order. */
const counterWrites = () => ddb.commandCalls(UpdateItemCommand)
  .map((c) => c.args[0].input as UpdateItemCommandInput)
  .filter((input) => /^(key-)?quota#/.test(String(input.Key?.pk?.S)))
  .map((input) => ({ pk: input.Key!.pk.S!, limit: input.ExpressionAttributeValues?.[':limit']?.N }));
/** Counters whose partition key starts with `prefix` are spent (their conditional write fails). */
const spent = (prefix: string) => ddb.on(UpdateItemCommand).callsFake(async (input: UpdateItemCommandInput) => {
  if (String(input.Key?.pk?.S).startsWith(prefix)) throw conditionFailed;
  return { Attributes: { used: { N: '1' } } };
});

beforeEach(() => {
  ddb.reset();
  ddb.on(GetItemCommand).resolves({});
  ddb.on(PutItemCommand).resolves({});
  ddb.on(UpdateItemCommand).resolves({ Attributes: { used: { N: '1' } } });
});

describe('keyQuotaSpecs', () => {
  test('GIVEN key limits naming some of the contract\'s quotas WHEN resolved THEN those quotas with the key\'s limits, unknown names and bad values ignored', () => {
    const specs = keyQuotaSpecs([SHORT, DAILY], keyLimits({ daily: 50, other: 7, short: Number.NaN }));
    expect(specs).toEqual([{ ...DAILY, limit: 50 }]);
    expect(keyQuotaSpecs([SHORT], null)).toEqual([]);
    expect(keyQuotaSpecs(undefined, keyLimits({ short: 1 }))).toEqual([]);
  });

  test('GIVEN a key containing # WHEN its counter key is built THEN the key is the last component', () => {
    expect(keyQuotaCounterKey('a#b')('daily', { startMs: 5, endMs: 9 })).toBe('key-quota#daily#5#a#b');
  });
});

describe('callVendor with per-key quotas', () => {
  test('GIVEN quota left for the key and the contract WHEN calling THEN the key\'s unit is spent first, with the key\'s limit, then the contract\'s, and the call fires', async () => {
    const fetched: string[] = [];
    const result = await callVendor(event({ key: 'acme', keyLimits: keyLimits({ short: 10 }) }), deps({ quotas: [SHORT] }, fetched));
    expect(result.statusCode).toBe(202);
    expect(fetched).toHaveLength(1);
    expect(counterWrites()).toEqual([
      { pk: `key-quota#short#${T0}#acme`, limit: '10' },
      { pk: `quota#short#${T0}`, limit: '100' },
    ]);
  });

  test('GIVEN the key\'s quota spent while the contract\'s is not (WAIT) WHEN calling THEN it waits for its period, no contract unit is spent, no slot claimed, the vendor not called', async () => {
    spent('key-quota#');
    const fetched: string[] = [];
    const metrics: Array<[string, string | undefined]> = [];
    const result = await callVendor(event({ key: 'acme', keyLimits: keyLimits({ short: 10 }) }), deps({ quotas: [SHORT] }, fetched, metrics));
    expect(result.statusCode).toBeNull();
    // Back when the key's period ends (T0 + 3000) plus the boundary margin, in whole seconds.
    expect(result.requeue).toEqual({ delaySeconds: Math.ceil((T0 + 3000 + 250 - NOW) / 1000), reason: QUOTA_EXHAUSTED_REASON });
    expect(counterWrites().map((w) => w.pk)).toEqual([`key-quota#short#${T0}#acme`]);
    expect(ddb.commandCalls(PutItemCommand)).toHaveLength(0);
    expect(fetched).toHaveLength(0);
    // Its own metric, with the key as its property; the contract's QuotaExhausted (alarmed) is not raised.
    expect(metrics).toContainEqual(['KeyQuotaExhausted', 'acme']);
    expect(metrics.map(([name]) => name)).not.toContain('QuotaExhausted');
  });

  test('GIVEN the key\'s quota spent and QuotaExhaustedAction.FAIL WHEN calling THEN VendorQuotaExhausted names the key\'s quota', async () => {
    spent('key-quota#');
    const fetched: string[] = [];
    const error = await callVendor(event({ key: 'acme', keyLimits: keyLimits({ short: 10 }) }), deps({ quotas: [SHORT], whenQuotaExhausted: 'FAIL' }, fetched))
      .catch((e: Error) => e);
    expect((error as Error).name).toBe('VendorQuotaExhausted');
    expect((error as Error).message).toMatch(/^quota 'short' of key 'acme' is spent until .*\(QuotaExhaustedAction\.FAIL\)$/);
    expect(fetched).toHaveLength(0);
  });

  test('GIVEN one key\'s quota spent WHEN another key calls THEN the other key spends its own counter and fires', async () => {
    ddb.on(UpdateItemCommand).callsFake(async (input: UpdateItemCommandInput) => {
      if (String(input.Key?.pk?.S).endsWith('#hot')) throw conditionFailed;
      return { Attributes: { used: { N: '1' } } };
    });
    const fetched: string[] = [];
    const hot = await callVendor(event({ requestId: 'h', key: 'hot', keyLimits: keyLimits({ short: 10 }) }), deps({ quotas: [SHORT] }, fetched));
    const quiet = await callVendor(event({ requestId: 'q', key: 'quiet', keyLimits: keyLimits({ short: 10 }) }), deps({ quotas: [SHORT] }, fetched));
    expect(hot.requeue?.reason).toBe(QUOTA_EXHAUSTED_REASON);
    expect(quiet.statusCode).toBe(202);
    expect(fetched).toHaveLength(1);
  });

  test('GIVEN the contract\'s quota spent and the key\'s not WHEN calling THEN the key\'s unit stays spent (never refunded) and the request waits for the contract\'s period', async () => {
    spent('quota#');
    const result = await callVendor(event({ key: 'acme', keyLimits: keyLimits({ short: 10 }) }), deps({ quotas: [SHORT] }, []));
    expect(result.requeue?.reason).toBe(QUOTA_EXHAUSTED_REASON);
    expect(counterWrites().map((w) => w.pk)).toEqual([`key-quota#short#${T0}#acme`, `quota#short#${T0}`]);
  });

  test('GIVEN per-key quotas but no key in the event (a wiring fault) WHEN calling THEN only the contract\'s counter is spent and a warning says why', async () => {
    const warn = jest.fn();
    await callVendor(event({ keyLimits: keyLimits({ short: 10 }) }), { ...deps({ quotas: [SHORT] }, []), logger: { ...silent, warn } });
    expect(counterWrites().map((w) => w.pk)).toEqual([`quota#short#${T0}`]);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('per-key quotas came without the request\'s key'), expect.anything());
  });

  test('GIVEN a keyless request, or a key without per-key limits WHEN calling THEN only the contract\'s counter is written (unchanged)', async () => {
    await callVendor(event(), deps({ quotas: [SHORT] }, []));
    await callVendor(event({ requestId: 'r-2', key: 'acme', keyLimits: null }), deps({ quotas: [SHORT] }, []));
    await callVendor(event({ requestId: 'r-3', key: 'acme', keyLimits: keyLimits({}) }), deps({ quotas: [SHORT] }, []));
    expect(counterWrites().map((w) => w.pk)).toEqual([`quota#short#${T0}`, `quota#short#${T0}`, `quota#short#${T0}`]);
  });
});
