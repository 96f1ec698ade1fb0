/**
 * The dispatcher's key settings (issue 15, design 2.2-2.3): defaults with each key's overrides,
 * checked and capped at the contract, cached 30 s in an LRU, a failed read falling back. One test
 * per branch, with aws-sdk-client-mock and an injected clock.
 */
import { BatchGetItemCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import type { KeyLimitsSpec } from '../../src/shared/key-limits';
import { KeySettings, KeySettingsDeps, keySettingsFromEnv, parseKeyLimitsSpec } from '../../src/shared/key-settings';

const TABLE = 'KeySettings';
const DEFAULTS: KeyLimitsSpec = { requestsPerSecond: 5, maxJobsInFlight: 20, quotas: { daily: 50_000 }, priorityAgingMs: 30_000, paused: false };
const CONTRACT = { requestsPerSecond: 100, maxJobsInFlight: 500, quotas: { daily: 1_000_000, hourly: 50_000 } };

const ddb = mockClient(DynamoDBClient);

function setup(overrides: Partial<KeySettingsDeps> = {}) {
  let now = 1_000_000;
  const warnings: Array<[string, Record<string, unknown> | undefined]> = [];
  const metrics: Array<[string, number, string | undefined]> = [];
  const sleeps: number[] = [];
  const settings = new KeySettings({
    dynamodb: new DynamoDBClient({}),
    tableName: TABLE,
    defaults: DEFAULTS,
    contract: CONTRACT,
    now: () => now,
    logger: {
      warn: (message: unknown, ...extra: unknown[]) => { warnings.push([message as string, extra[0] as Record<string, unknown> | undefined]); },
    },
    metrics: { addMetric: (name, _unit, value, key) => metrics.push([name, value, key]) },
    sleep: async (ms) => { sleeps.push(ms); },
    ...overrides,
  });
  return { settings, warnings, metrics, sleeps, advance: (ms: number) => { now += ms; } };
}

/** Answers BatchGetItem with the items stored for the keys asked (pk = key). */
function serve(items: Record<string, Record<string, unknown>>) {
  ddb.on(BatchGetItemCommand).callsFake((input) => {
    const keys: Array<{ pk: { S: string } }> = input.RequestItems[TABLE].Keys;
    return { Responses: { [TABLE]: keys.filter((k) => items[k.pk.S]).map((k) => ({ pk: { S: k.pk.S }, ...items[k.pk.S] })) } };
  });
}

function keysAsked(call: number): string[] {
  return (ddb.commandCalls(BatchGetItemCommand)[call].args[0].input.RequestItems![TABLE].Keys ?? []).map((k) => k.pk.S!);
}

beforeEach(() => ddb.reset());

describe('KeySettings', () => {
  test('GIVEN a key without an override item THEN it gets the defaults, read eventually consistent', async () => {
    serve({});
    const { settings, metrics } = setup();
    expect((await settings.limitsFor(['acme'])).get('acme')).toEqual(DEFAULTS);
    const input = ddb.commandCalls(BatchGetItemCommand)[0].args[0].input;
    expect(input.RequestItems![TABLE]).toEqual({ Keys: [{ pk: { S: 'acme' } }] });
    expect(input.RequestItems![TABLE].ConsistentRead).toBeUndefined();
    expect(metrics).toEqual([]);
  });

  test('GIVEN an override THEN its fields replace the defaults (quotas per name), paused is read through', async () => {
    serve({
      acme: { requestsPerSecond: { N: '20' }, maxJobsInFlight: { N: '50' }, quotas: { M: { hourly: { N: '2000' } } }, paused: { BOOL: true }, note: { S: 'ticket 123' } },
    });
    const { settings, metrics } = setup();
    expect((await settings.limitsFor(['acme'])).get('acme')).toEqual({
      requestsPerSecond: 20, maxJobsInFlight: 50, quotas: { daily: 50_000, hourly: 2000 }, priorityAgingMs: 30_000, paused: true,
    });
    expect(metrics).toEqual([]);
  });

  test('GIVEN keys read within 30 s THEN they come from the cache (hit); at 30 s they are read again (TTL), only the stale ones (miss)', async () => {
    serve({ acme: { requestsPerSecond: { N: '20' } } });
    const { settings, advance } = setup();
    await settings.limitsFor(['acme']);
    advance(20_000);
    await settings.limitsFor(['beta']);
    advance(9_999);
    expect((await settings.limitsFor(['acme', 'beta'])).get('acme')?.requestsPerSecond).toBe(20);
    expect(ddb.commandCalls(BatchGetItemCommand)).toHaveLength(2);
    advance(1);
    serve({ acme: { requestsPerSecond: { N: '7' } } });
    const limits = await settings.limitsFor(['acme', 'beta']);
    expect(limits.get('acme')?.requestsPerSecond).toBe(7);
    expect(limits.get('beta')).toEqual(DEFAULTS);
    expect(keysAsked(2)).toEqual(['acme']);
  });

  test('GIVEN more keys than the cache holds THEN the least recently used is dropped (LRU eviction)', async () => {
    serve({});
    const { settings } = setup({ maxKeys: 2 });
    await settings.limitsFor(['a', 'b']);
    await settings.limitsFor(['a']); // a is now the most recently used
    await settings.limitsFor(['c']); // drops b
    expect(settings.size).toBe(2);
    expect(keysAsked(1)).toEqual(['c']);
    await settings.limitsFor(['a', 'b', 'c']);
    expect(keysAsked(2)).toEqual(['b']);
    expect(ddb.commandCalls(BatchGetItemCommand)).toHaveLength(3);
  });

  test('GIVEN fields that cannot be limits THEN each takes its default and KeySettingsInvalid is counted with the key as a property', async () => {
    serve({
      acme: {
        requestsPerSecond: { N: '0' }, maxJobsInFlight: { N: '2.5' }, quotas: { M: { weekly: { N: '10' }, daily: { S: 'lots' } } }, paused: { S: 'yes' },
      },
    });
    const { settings, metrics, warnings } = setup();
    expect((await settings.limitsFor(['acme'])).get('acme')).toEqual(DEFAULTS);
    expect(metrics).toEqual([['KeySettingsInvalid', 5, 'acme']]);
    expect(warnings[0][1]).toMatchObject({ key: 'acme', fields: ['requestsPerSecond', 'maxJobsInFlight', 'quotas.weekly', 'quotas.daily', 'paused'] });
  });

  test('GIVEN per-key jobs in flight under a contract without them THEN the field is invalid', async () => {
    serve({ acme: { maxJobsInFlight: { N: '3' }, quotas: { S: 'x' } } });
    const { settings, metrics } = setup({
      contract: { requestsPerSecond: 100, quotas: {} }, defaults: { ...DEFAULTS, maxJobsInFlight: undefined, quotas: {} },
    });
    expect((await settings.limitsFor(['acme'])).get('acme')?.maxJobsInFlight).toBeUndefined();
    expect(metrics).toEqual([['KeySettingsInvalid', 2, 'acme']]);
  });

  test('GIVEN an override above the contract THEN it is capped at the contract (not invalid)', async () => {
    serve({ acme: { requestsPerSecond: { N: '250' }, maxJobsInFlight: { N: '900' }, quotas: { M: { daily: { N: '5000000' } } } } });
    const { settings, metrics, warnings } = setup();
    expect((await settings.limitsFor(['acme'])).get('acme')).toEqual({
      requestsPerSecond: 100, maxJobsInFlight: 500, quotas: { daily: 1_000_000 }, priorityAgingMs: 30_000, paused: false,
    });
    expect(metrics).toEqual([]);
    expect(warnings[0][1]).toEqual({ key: 'acme', fields: ['requestsPerSecond', 'maxJobsInFlight', 'quotas.daily'] });
  });

  test('GIVEN unprocessed keys THEN they are read again with backoff; still unprocessed after the retries: a failed read', async () => {
    let calls = 0;
    ddb.on(BatchGetItemCommand).callsFake((input) => {
      calls += 1;
      const keys: Array<{ pk: { S: string } }> = input.RequestItems[TABLE].Keys;
      // First answer: acme read, beta unprocessed; then beta read.
      return calls === 1
        ? { Responses: { [TABLE]: [{ pk: { S: 'acme' }, requestsPerSecond: { N: '9' } }] }, UnprocessedKeys: { [TABLE]: { Keys: [keys[1]] } } }
        : { Responses: { [TABLE]: [{ pk: { S: 'beta' }, requestsPerSecond: { N: '3' } }] } };
    });
    const first = setup();
    const limits = await first.settings.limitsFor(['acme', 'beta']);
    expect([limits.get('acme')?.requestsPerSecond, limits.get('beta')?.requestsPerSecond]).toEqual([9, 3]);
    expect(keysAsked(1)).toEqual(['beta']);
    expect(first.sleeps).toEqual([25]);

    ddb.reset();
    ddb.on(BatchGetItemCommand).callsFake((input) => ({ UnprocessedKeys: { [TABLE]: input.RequestItems[TABLE] } }));
    const second = setup();
    expect((await second.settings.limitsFor(['gamma'])).get('gamma')).toEqual(DEFAULTS);
    expect(ddb.commandCalls(BatchGetItemCommand)).toHaveLength(4);
    expect(second.sleeps).toEqual([25, 100, 400]);
    expect(second.metrics).toEqual([['KeySettingsReadFailed', 1, undefined]]);
  });

  test('GIVEN more than 100 keys THEN they are read in calls of at most 100', async () => {
    serve({});
    const { settings } = setup();
    const keys = Array.from({ length: 150 }, (_, i) => `k${i}`);
    expect((await settings.limitsFor(keys)).size).toBe(150);
    expect([keysAsked(0).length, keysAsked(1).length]).toEqual([100, 50]);
  });

  test('GIVEN a failed read and no earlier read of the key THEN the defaults, a warning and KeySettingsReadFailed; nothing cached', async () => {
    ddb.on(BatchGetItemCommand).rejects(Object.assign(new Error('throttled'), { name: 'ProvisionedThroughputExceededException' }));
    const { settings, metrics, warnings } = setup();
    expect((await settings.limitsFor(['acme'])).get('acme')).toEqual(DEFAULTS);
    expect(metrics).toEqual([['KeySettingsReadFailed', 1, undefined]]);
    expect(warnings[0][0]).toMatch(/could not read the key settings table/);
    expect(warnings[0][1]).toMatchObject({ tableName: TABLE, keys: ['acme'], unreadKeys: 1 });
    expect(settings.size).toBe(0);
  });

  test('GIVEN a failed read of a key read before (stale entry) THEN its last limits read are kept', async () => {
    serve({ acme: { requestsPerSecond: { N: '20' }, paused: { BOOL: true } } });
    const { settings, advance, metrics } = setup();
    await settings.limitsFor(['acme']);
    advance(45_000);
    ddb.reset();
    ddb.on(BatchGetItemCommand).rejects(new Error('network'));
    const limits = (await settings.limitsFor(['acme'])).get('acme');
    expect(limits).toMatchObject({ requestsPerSecond: 20, paused: true });
    expect(metrics).toEqual([['KeySettingsReadFailed', 1, undefined]]);
    // The next batch tries again (a failed read is not cached).
    serve({});
    expect((await settings.limitsFor(['acme'])).get('acme')).toEqual(DEFAULTS);
  });
});

describe('KEY_LIMITS and the key settings table from the environment', () => {
  const deps = { dynamodb: new DynamoDBClient({}), now: () => 0, logger: { warn: () => undefined }, metrics: { addMetric: () => undefined } };

  test('GIVEN no KEY_LIMITS THEN no per-key limits', () => {
    expect(parseKeyLimitsSpec({})).toBeUndefined();
    expect(keySettingsFromEnv({}, CONTRACT, deps)).toBeUndefined();
  });

  test('GIVEN KEY_LIMITS and the table THEN a source with those defaults', () => {
    const env = {
      KEY_LIMITS: JSON.stringify({ requestsPerSecond: 2, quotas: {}, priorityAgingMs: 30_000, paused: false }), KEY_SETTINGS_TABLE_NAME: TABLE,
    };
    expect(parseKeyLimitsSpec(env)).toEqual({ requestsPerSecond: 2, quotas: {}, priorityAgingMs: 30_000, paused: false });
    expect(keySettingsFromEnv(env, CONTRACT, deps)).toBeInstanceOf(KeySettings);
  });

  test.each([
    ['not JSON', '{', /KEY_LIMITS is not JSON/],
    ['no rate', '{"quotas":{},"priorityAgingMs":1000}', /KEY_LIMITS must be the per-key limits the construct writes/],
    ['a bad quota', '{"requestsPerSecond":1,"quotas":{"daily":0},"priorityAgingMs":1000}', /KEY_LIMITS must be/],
  ])('GIVEN KEY_LIMITS %s THEN the function fails at cold start naming it', (_label, value, error) => {
    expect(() => parseKeyLimitsSpec({ KEY_LIMITS: value })).toThrow(error);
  });

  test('GIVEN KEY_SETTINGS_CACHE_TTL_MS THEN a key is read again after that TTL, not 30 s (the fault suite\'s key-limit-change)', async () => {
    serve({});
    let now = 0;
    const env = {
      KEY_LIMITS: JSON.stringify({ requestsPerSecond: 2, quotas: {}, priorityAgingMs: 30_000 }), KEY_SETTINGS_TABLE_NAME: TABLE, KEY_SETTINGS_CACHE_TTL_MS: '1000',
    };
    const settings = keySettingsFromEnv(env, CONTRACT, { ...deps, now: () => now })!;
    await settings.limitsFor(['acme']);
    now = 999;
    await settings.limitsFor(['acme']);
    expect(ddb.commandCalls(BatchGetItemCommand)).toHaveLength(1);
    now = 1000;
    await settings.limitsFor(['acme']);
    expect(ddb.commandCalls(BatchGetItemCommand)).toHaveLength(2);
  });

  test.each(['-1', 'soon'])('GIVEN KEY_SETTINGS_CACHE_TTL_MS %s THEN it fails at cold start naming it', (value) => {
    expect(() => keySettingsFromEnv({
      KEY_LIMITS: JSON.stringify({ requestsPerSecond: 2, quotas: {}, priorityAgingMs: 30_000 }),
      KEY_SETTINGS_TABLE_NAME: TABLE,
      KEY_SETTINGS_CACHE_TTL_MS: value,
    }, CONTRACT, deps)).toThrow(/KEY_SETTINGS_CACHE_TTL_MS must be a number of milliseconds >= 0/);
  });

  test('GIVEN KEY_LIMITS without the table THEN it fails naming the missing variable', () => {
    expect(() => keySettingsFromEnv({ KEY_LIMITS: JSON.stringify({ requestsPerSecond: 2, quotas: {}, priorityAgingMs: 30_000 }) }, CONTRACT, deps))
      .toThrow(/KEY_SETTINGS_TABLE_NAME is required with KEY_LIMITS/);
  });
});
