/**
 * The `keys-500-burst` row (local/bench-key-burst.ts): its load, its settings table, and its
 * invariants on a small variant (50 keys; the 500-key row runs with `npm run bench`).
 */
import { BatchGetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { DynamoItems } from '../../local/bench-dynamo-items';
import {
  burstKeys, burstLimitsInForce, burstOverrides, keyBurstRequests, KEYS_500_BURST, ModeledKeySettingsTable, runKeyBurst,
} from '../../local/bench-key-burst';
import { LATENCY_MODEL, pacingKnobs } from '../../local/bench-model';
import { VirtualClock } from '../../local/bench-sim';

describe('keys-500-burst load', () => {
  test('500 keys first seen within 1 s, 3 requests each, all within the second; every tenth key has an override item', () => {
    const requests = keyBurstRequests(KEYS_500_BURST);
    expect(requests).toHaveLength(1500);
    expect(requests.every((r, n) => r.atMs >= 0 && r.atMs < 1000 && (n === 0 || r.atMs >= requests[n - 1].atMs))).toBe(true);
    const perKey = new Map<string, number>();
    for (const r of requests) perKey.set(r.key!, (perKey.get(r.key!) ?? 0) + 1);
    expect(perKey.size).toBe(500);
    expect([...perKey.values()].every((n) => n === 3)).toBe(true);
    const overrides = burstOverrides(KEYS_500_BURST);
    expect(overrides.size).toBe(50);
    expect(new Set(overrides.values())).toEqual(new Set([1, 5]));
    const limits = burstLimitsInForce(KEYS_500_BURST);
    expect(limits.get('tenant-0000')!.requestsPerSecond).toBe(1);
    expect(limits.get('tenant-0001')!.requestsPerSecond).toBe(2);
    expect(limits.get('tenant-0010')!.requestsPerSecond).toBe(5);
  });
});

describe('modeled key settings table', () => {
  test('answers BatchGetItem with the items written, counts each environment\'s calls and keys, refuses over 100 keys', async () => {
    const clock = new VirtualClock(0);
    const table = new ModeledKeySettingsTable();
    table.put('a', { requestsPerSecond: { N: '1' } });
    const context = { clock, dynamodbRoundTripMs: () => 10 };
    const [one, two] = [table.client(0, context), table.client(1, context)];
    const get = (client: typeof one, keys: string[]) => {
      const answer = client.send(new BatchGetItemCommand({ RequestItems: { [table.tableName]: { Keys: keys.map((k) => ({ pk: { S: k } })) } } }));
      return Promise.all([answer.then((a) => a, (error: Error) => error.name), clock.run()]).then(([a]) => a);
    };
    expect(await get(one, ['a', 'b'])).toEqual({ Responses: { [table.tableName]: [{ pk: { S: 'a' }, requestsPerSecond: { N: '1' } }] }, UnprocessedKeys: {} });
    expect(clock.now()).toBe(10);
    await get(two, ['a']);
    expect(await get(two, Array.from({ length: 101 }, (_, k) => `k${k}`))).toBe('ValidationException');
    expect([...table.reads].map(([env, r]) => [env, r.requests, r.keysRead, r.distinctKeys.size])).toEqual([[0, 1, 2, 2], [1, 2, 102, 102]]);
    expect(table.maxKeysPerRequest).toBe(101);
  });

  test('the items store refuses a BatchGetItem of more than 100 keys over all its tables, as DynamoDB does; counts stored items per prefix', () => {
    const items = new DynamoItems();
    items.send(new PutItemCommand({ TableName: 't', Item: { pk: { S: 'key-pacer#a' } } }));
    items.send(new PutItemCommand({ TableName: 't', Item: { pk: { S: 'key-pacer#b' } } }));
    items.send(new PutItemCommand({ TableName: 't', Item: { pk: { S: 'slot#1' } } }));
    expect(items.storedByPrefix()).toEqual({ 'key-pacer': 2, 'slot': 1 });
    const keys = (n: number) => Array.from({ length: n }, (_, k) => ({ pk: { S: `key-pacer#${k}` } }));
    expect(() => items.send(new BatchGetItemCommand({ RequestItems: { t: { Keys: keys(60) }, u: { Keys: keys(41) } } })))
      .toThrow(expect.objectContaining({ name: 'ValidationException', message: 'Too many items requested for the BatchGetItem call' }));
    expect(items.send(new BatchGetItemCommand({ RequestItems: { t: { Keys: keys(100) } } }))).toMatchObject({ UnprocessedKeys: {} });
  });
});

describe('keys-500-burst invariants on a small burst (50 new keys x 3 in 1 s, 20 RPS contract)', () => {
  const load = { ...KEYS_500_BURST, keys: 50, contractRps: 20 };

  test('one settings cache per dispatcher environment: each reads a key at most once; V 0; lost 0; one key-pacer item per key at its limit', async () => {
    const burst = await runKeyBurst(LATENCY_MODEL, pacingKnobs(LATENCY_MODEL), load);
    const { run, table, figures, targets } = burst;
    expect(targets).toEqual({ keyV0: true, contractV0: true, lost0: true, settingsReadsWithinKeysTimesEnvironments: true, keyItemsAsExpected: true });
    // Each lane is an environment with its own cache: every environment read the keys it saw itself.
    expect(run.lanes).toBe(2);
    expect([...table.reads.keys()]).toEqual([0, 1]);
    for (const reads of table.reads.values()) {
      expect(reads.keysRead).toBe(reads.distinctKeys.size);
      expect(reads.distinctKeys.size).toBeGreaterThan(0);
    }
    expect(figures['settings.rereadsInOneEnvironment']).toBe(0);
    expect(figures['settings.keysRead']).toBeLessThanOrEqual(50 * 2);
    // Fewer reads than requests: a key's later requests in the same environment hit its cache.
    expect(figures['settings.keysRead']).toBeLessThan(150);
    expect(figures['settings.batchGetItemRequests']).toBeLessThanOrEqual(run.invocations);
    expect(figures['items.key-pacer']).toBe(50);
    expect(figures.keyPacerItemsWithWrongInterval).toBe(0);
    expect(figures.lost).toBe(0);
    expect(figures.idealDrainMs).toBe(7500);
    expect(figures.drainMs).toBeGreaterThan(7500);
    expect(burstKeys(load).every((key) => run.calls.filter((c) => c.key === key).length === 3)).toBe(true);
  });
});
