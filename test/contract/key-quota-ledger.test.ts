/**
 * Per-key quota counters on the local DynamoDB (dynalite: real conditional writes and BatchGetItem):
 * a key's units are spent with the contract's ledger on the key's own counter, and the
 * dispatcher's read of the batch's keys' counters finds a spent key, not the others.
 */
import { CreateTableCommand, DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { LocalDynamoDb, startDynamoDb } from '../../local/aws/dynamodb';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/types';
import { keyQuotaCounterKey } from '../../src/contract/key-quota-ledger';
import { keyQuotasSpentUntil, QUOTA_BOUNDARY_GUARD_MS, spendQuotaUnits } from '../../src/contract/quota-ledger';
import { QuotaSpec } from '../../src/contract/quota-period';

const T0 = 1_800_000_001_000; // 1 s into a 3 s period that ends at 1_800_000_003_000
const PERIOD_START = 1_800_000_000_000;
const SHORT: QuotaSpec = { name: 'short', limit: 2, unit: 'fixed', periodMs: 3000 };

let dynamo: LocalDynamoDb;
let client: DynamoDBClient;

beforeAll(async () => {
  dynamo = await startDynamoDb();
  client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  await client.send(new CreateTableCommand({
    TableName: 'pacer',
    AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    BillingMode: 'PAY_PER_REQUEST',
  }));
  for (let i = 0; i < 50; i++) {
    try {
      await client.send(new GetItemCommand({ TableName: 'pacer', Key: { pk: { S: 'x' } } }));
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}, 30_000);

afterAll(async () => {
  client?.destroy();
  await dynamo?.stop();
});

test('GIVEN a key that spent its 2 units WHEN a third call spends THEN it is refused, and the batch read finds that key spent until its period ends, not the other key', async () => {
  const spend = (key: string) => spendQuotaUnits(client, 'pacer', [SHORT], T0 + 300, new Set(), QUOTA_BOUNDARY_GUARD_MS, keyQuotaCounterKey(key));
  expect((await spend('hot')).spent).toBe(true);
  expect((await spend('hot')).spent).toBe(true);
  expect(await spend('hot')).toEqual({ spent: false, exhausted: 'short', availableAtMs: PERIOD_START + 3000 + 250, units: [] });
  expect((await spend('quiet')).spent).toBe(true);
  // The counters are the keys' own: the contract's counter of the period was never written.
  const contract = await client.send(new GetItemCommand({ TableName: 'pacer', Key: { pk: { S: `quota#short#${PERIOD_START}` } } }));
  expect(contract.Item).toBeUndefined();

  const until = await keyQuotasSpentUntil(client, 'pacer', new Map([['hot', [SHORT]], ['quiet', [SHORT]], ['new', [SHORT]]]), T0);
  expect(until).toEqual(new Map([['hot', PERIOD_START + 3000 + 250]]));
});
