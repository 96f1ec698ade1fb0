import { DynamoDBClient, GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { testVendorCallConfig } from './vendor-call-config';
import { QuotaSpec } from '../../src/contract/quota-period';
import {
  callVendor, loadVendorCallConfig, QUOTA_EXHAUSTED_REASON, quotaDeadlineMs, VendorCallConfig, VendorCallDeps, VendorCallError,
} from '../../src/dispatch-workflow/vendor-call';

const ddb = mockClient(DynamoDBClient);
const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined } as any;
const DAILY: QuotaSpec = { name: 'daily', limit: 100, unit: 'day' };
const SHORT: QuotaSpec = { name: 'short', limit: 5, unit: 'fixed', periodMs: 3000 };
const conditionFailed = Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });

/** The quota counters' conditional writes fail (spent); the pacer item's succeed. */
const quotaIsSpent = (error: Error = conditionFailed) => ddb.on(UpdateItemCommand).callsFake(async (input) => {
  if (String(input.Key?.pk?.S).startsWith('quota#')) throw error;
  return { Attributes: { nextSlotAtMs: { N: '0' } } };
});
const quotaWrites = () => ddb.commandCalls(UpdateItemCommand).filter((c) => String(c.args[0].input.Key?.pk?.S).startsWith('quota#'));

function deps(config: Partial<VendorCallConfig>, fetched: string[], metrics: string[] = [], values: Array<[string, number]> = []): VendorCallDeps {
  return {
    dynamodb: new DynamoDBClient({ region: 'us-east-1' }),
    config: testVendorCallConfig(config),
    sign: async ({ headers }) => headers,
    fetch: async (url) => {
      fetched.push(String(url));
      return new Response('{"jobId":"j-1"}', { status: 202, headers: { 'content-type': 'application/json' } });
    },
    logger: silent,
    metrics: {
      addMetric: (name, _unit, value) => {
        metrics.push(name);
        values.push([name, value]);
      },
    },
  };
}

beforeEach(() => {
  ddb.reset();
  ddb.on(GetItemCommand).resolves({});
  ddb.on(PutItemCommand).resolves({});
  ddb.on(UpdateItemCommand).resolves({ Attributes: { used: { N: '1' } } });
});

describe('callVendor with quotas (issue 14, item 2)', () => {
  test('GIVEN quota left WHEN calling THEN one unit of each quota is spent before the slot is claimed, and the call fires', async () => {
    const fetched: string[] = [];
    const metrics: string[] = [];
    const result = await callVendor({ requestId: 'r-1', body: {}, slotAtMs: Date.now() + 200 }, deps({ quotas: [DAILY, SHORT] }, fetched, metrics));
    expect(result.statusCode).toBe(202);
    expect(fetched).toHaveLength(1);
    // One per quota (two for the 3 s quota when the slot lies within 250 ms of its boundary).
    const keys = quotaWrites().map((c) => c.args[0].input.Key!.pk.S!);
    expect(keys[0]).toMatch(/^quota#daily#\d+$/);
    expect(keys.slice(1).length).toBeGreaterThanOrEqual(1);
    expect(keys.slice(1).every((k) => /^quota#short#\d+$/.test(k))).toBe(true);
    // Spent first, then claimed: a crash in between spends a unit without a call (safe).
    const order = ddb.calls().map((c) => c.args[0].constructor.name);
    expect(order.indexOf('UpdateItemCommand')).toBeLessThan(order.indexOf('PutItemCommand'));
    expect(metrics).toContain('QuotaUnitsSpent');
  });

  test('GIVEN a spent quota (WAIT) WHEN calling THEN the request goes back to the queue until the period ends, no slot is taken and the vendor is not called', async () => {
    quotaIsSpent();
    const fetched: string[] = [];
    const metrics: string[] = [];
    const before = Date.now();
    const result = await callVendor({ requestId: 'r-2', body: {}, slotAtMs: before + 200 }, deps({ quotas: [SHORT] }, fetched, metrics));
    expect(result.statusCode).toBeNull();
    expect(result.requeue?.reason).toBe(QUOTA_EXHAUSTED_REASON);
    // The slot's 3 s period ends within 3.2 s, plus the 250 ms boundary margin, in whole seconds.
    expect(result.requeue!.delaySeconds).toBeGreaterThanOrEqual(1);
    expect(result.requeue!.delaySeconds).toBeLessThanOrEqual(4);
    expect(fetched).toHaveLength(0);
    expect(ddb.commandCalls(PutItemCommand)).toHaveLength(0);
    expect(metrics).toContain('QuotaExhausted');
  });

  test('GIVEN a daily quota spent WHEN the request waits THEN its delay is capped at SQS\'s 15 minutes (it comes back and checks again)', async () => {
    quotaIsSpent();
    const slot = Date.now() + 200;
    const result = await callVendor({ requestId: 'r-3', body: {}, slotAtMs: slot }, deps({ quotas: [DAILY] }, []));
    // Unless the test runs in the last 15 minutes of a UTC day, the delay is the cap.
    const msToMidnight = 86_400_000 - (slot % 86_400_000);
    expect(result.requeue!.delaySeconds).toBeLessThanOrEqual(900);
    expect(result.requeue!.delaySeconds).toBeGreaterThanOrEqual(Math.min(900, Math.floor(msToMidnight / 1000)));
  });

  test('GIVEN a spent quota and QuotaExhaustedAction.FAIL WHEN calling THEN VendorQuotaExhausted is thrown and the vendor is not called', async () => {
    quotaIsSpent();
    const fetched: string[] = [];
    const error = await callVendor({ requestId: 'r-4', body: {} }, deps({ quotas: [SHORT], whenQuotaExhausted: 'FAIL' }, fetched)).catch((e) => e);
    expect(error).toBeInstanceOf(VendorCallError);
    expect(error.name).toBe('VendorQuotaExhausted');
    expect(error.message).toMatch(/quota 'short' is spent until .*QuotaExhaustedAction.FAIL/);
    expect(fetched).toHaveLength(0);
  });

  test('GIVEN a spent quota whose period ends after the request\'s deadline WHEN calling THEN VendorQuotaExhausted is thrown instead of waiting in vain', async () => {
    quotaIsSpent();
    const error = await callVendor({ requestId: 'r-5', body: {} }, deps({ quotas: [DAILY], quotaMaxWaitMs: 1000 }, [])).catch((e) => e);
    expect(error.name).toBe('VendorQuotaExhausted');
    expect(error.message).toMatch(/after the request's deadline .* \(1000 ms after it started waiting\)/);
  });

  test('GIVEN a DynamoDB failure while spending WHEN calling THEN the error is thrown and the vendor is not called', async () => {
    quotaIsSpent(Object.assign(new Error('throttled'), { name: 'ProvisionedThroughputExceededException' }));
    const fetched: string[] = [];
    await expect(callVendor({ requestId: 'r-6', body: {} }, deps({ quotas: [SHORT] }, fetched))).rejects.toThrow(/throttled/);
    expect(fetched).toHaveLength(0);
  });

  test('GIVEN no slot from the dispatcher WHEN calling THEN the caller reserves one and spends in the period of that slot', async () => {
    const fetched: string[] = [];
    const result = await callVendor({ requestId: 'r-8', body: {} }, deps({ quotas: [SHORT] }, fetched));
    expect(result.statusCode).toBe(202);
    // One write (two when the reserved slot lies within 250 ms of a 3 s boundary).
    const keys = quotaWrites().map((c) => c.args[0].input.Key!.pk.S!);
    expect(keys.length === 1 || keys.length === 2).toBe(true);
    expect(keys.every((k) => /^quota#short#\d+$/.test(k))).toBe(true);
    // Spent after the reservation (the pacer item's UpdateItem comes first), for that slot's period.
    const names = ddb.calls().map((c) => (c.args[0].input as any).Key?.pk?.S ?? '');
    expect(names.findIndex((k: string) => k.startsWith('quota#'))).toBeGreaterThan(names.indexOf('pacer'));
    expect(fetched).toHaveLength(1);
  });

  test('GIVEN units spent, then a spent quota WHEN calling THEN QuotaUsed.<name> and QuotaUsedPercent.<name> are published (the limit and 100 % when spent)', async () => {
    ddb.on(UpdateItemCommand).resolves({ Attributes: { used: { N: '4' } } });
    const spent: Array<[string, number]> = [];
    await callVendor({ requestId: 'r-9', body: {}, slotAtMs: Date.now() + 200 }, deps({ quotas: [DAILY] }, [], [], spent));
    expect(spent).toEqual(expect.arrayContaining([['QuotaUsed.daily', 4], ['QuotaUsedPercent.daily', 4]]));
    ddb.reset();
    quotaIsSpent();
    const full: Array<[string, number]> = [];
    await callVendor({ requestId: 'r-10', body: {}, slotAtMs: Date.now() + 200 }, deps({ quotas: [DAILY] }, [], [], full));
    expect(full).toEqual(expect.arrayContaining([['QuotaExhausted', 1], ['QuotaUsed.daily', 100], ['QuotaUsedPercent.daily', 100]]));
  });

  test('GIVEN no quota WHEN calling THEN no quota write is made', async () => {
    await callVendor({ requestId: 'r-7', body: {}, slotAtMs: Date.now() + 200 }, deps({}, []));
    expect(quotaWrites()).toHaveLength(0);
  });

  test('GIVEN the environment WHEN loading the config THEN quotas, the action and the deadline are read, and a bad QUOTAS is refused', () => {
    const env = {
      PROXY_ENDPOINT_URL: 'https://x/',
      REQUESTS_PER_SECOND: '10',
      PACER_TABLE_NAME: 't',
      LATENESS_TOLERANCE_MS: '30',
      FIRE_TOLERANCE_MS: '5',
      MAX_SLOT_WAIT_MS: '10000',
      CALL_TIMEOUT_MS: '1000',
    };
    expect(loadVendorCallConfig(env)).toMatchObject({ quotas: [], whenQuotaExhausted: 'WAIT', quotaMaxWaitMs: undefined });
    expect(loadVendorCallConfig({ ...env, QUOTAS: JSON.stringify([SHORT]), QUOTA_EXHAUSTED: 'FAIL', QUOTA_MAX_WAIT_MS: '60000' }))
      .toMatchObject({ quotas: [SHORT], whenQuotaExhausted: 'FAIL', quotaMaxWaitMs: 60000 });
    expect(() => loadVendorCallConfig({ ...env, QUOTAS: '[{"name":"x","limit":0,"unit":"day"}]' })).toThrow(/QUOTAS must be a JSON array/);
    expect(() => loadVendorCallConfig({ ...env, QUOTAS: 'daily' })).toThrow(/QUOTAS must be a JSON array/);
  });
});

// ---- The quota deadline counts from the request's start, not from when the quota is found spent. ----
describe('quota deadline from the request\'s own start (injected clock)', () => {
  // A 3 s fixed period; `now` 1 s into the period [T0, T0 + 3000): it ends at T0 + 3000, and a
  // request may call again from T0 + 3250 (the 250 ms boundary margin). Slot 300 ms ahead.
  const T0 = 1_800_000_000_000 - (1_800_000_000_000 % 3000);
  const NOW = T0 + 1000;
  const AVAILABLE_AT = T0 + 3000 + 250;
  const MAX_WAIT = 10_000;
  const clockAt = (start: number) => {
    let t = start;
    return { now: () => t, sleep: async (ms: number) => { t += ms; } };
  };
  const callAt = (requestStartedAtMs: number | undefined, fetched: string[] = []) => callVendor(
    { requestId: 'r-deadline', body: {}, slotAtMs: NOW + 300, ...(requestStartedAtMs !== undefined ? { requestStartedAtMs } : {}) },
    { ...deps({ quotas: [SHORT], quotaMaxWaitMs: MAX_WAIT }, fetched), clock: clockAt(NOW) },
  );

  test('quotaDeadlineMs: the request\'s start plus the wait; now for a missing, invalid or future start; none without a bound', () => {
    expect(quotaDeadlineMs({ quotaMaxWaitMs: MAX_WAIT }, NOW - 4000, NOW)).toBe(NOW - 4000 + MAX_WAIT);
    expect(quotaDeadlineMs({ quotaMaxWaitMs: MAX_WAIT }, undefined, NOW)).toBe(NOW + MAX_WAIT);
    expect(quotaDeadlineMs({ quotaMaxWaitMs: MAX_WAIT }, 'soon', NOW)).toBe(NOW + MAX_WAIT);
    expect(quotaDeadlineMs({ quotaMaxWaitMs: MAX_WAIT }, NOW + 5000, NOW)).toBe(NOW + MAX_WAIT);
    expect(quotaDeadlineMs({}, NOW - 4000, NOW)).toBeUndefined();
  });

  test('GIVEN a request that already waited so long that its deadline falls just before the next period WHEN the quota is spent THEN it fails at once with VendorQuotaExhausted', async () => {
    quotaIsSpent();
    const fetched: string[] = [];
    // Started MAX_WAIT - 2249 ms ago: its deadline is 1 ms before the next period's first call.
    const error = await callAt(AVAILABLE_AT - 1 - MAX_WAIT, fetched).catch((e) => e);
    expect(error).toBeInstanceOf(VendorCallError);
    expect(error.name).toBe('VendorQuotaExhausted');
    expect(error.message).toContain(`after the request's deadline ${new Date(AVAILABLE_AT - 1).toISOString()}`);
    expect(fetched).toHaveLength(0);
  });

  test('GIVEN a request whose deadline is exactly when the next period may be called WHEN the quota is spent THEN it waits for that period (requeued, no attempt)', async () => {
    quotaIsSpent();
    const result = await callAt(AVAILABLE_AT - MAX_WAIT);
    expect(result.statusCode).toBeNull();
    expect(result.requeue).toEqual({ delaySeconds: Math.ceil((AVAILABLE_AT - NOW) / 1000), reason: QUOTA_EXHAUSTED_REASON });
  });

  test('GIVEN the same request without its start (an older dispatcher) WHEN the quota is spent THEN the deadline counts from now, as before (it waits)', async () => {
    quotaIsSpent();
    const result = await callAt(undefined);
    expect(result.requeue?.reason).toBe(QUOTA_EXHAUSTED_REASON);
  });
});
