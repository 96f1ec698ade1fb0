/**
 * The local DynamoDB (dynalite: real condition semantics) for the jobs-in-flight and per-key place
 * tests: started once per test file, a fresh pacer table (`pk`) and correlation table (`requestId`)
 * per test, and a fake clock whose sleep only moves time.
 */
import { CreateTableCommand, DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { LocalDynamoDb, startDynamoDb } from '../../local/aws/dynamodb';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/types';
import type { Clock } from '../../src/rate-controlled-queue-consumer/pacer';

export interface LocalPacerTables {
  /** The client of the local DynamoDB (set once the file's beforeAll ran). */
  readonly client: DynamoDBClient;
  /** Creates a fresh pacer table and correlation table, named `<prefix>pacer-N` / `<prefix>correlation-N`. */
  freshTables(): Promise<{ pacer: string; correlation: string }>;
}

/** Starts the local DynamoDB before the file's tests and stops it after them (registers beforeAll / afterAll). */
export function useLocalPacerTables(prefix: string): LocalPacerTables {
  let dynamo: LocalDynamoDb | undefined;
  let client: DynamoDBClient | undefined;
  let tableCount = 0;
  beforeAll(async () => {
    dynamo = await startDynamoDb();
    client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  }, 30_000);
  afterAll(async () => {
    client?.destroy();
    await dynamo?.stop();
  });
  return {
    get client(): DynamoDBClient {
      if (!client) throw new Error('the local DynamoDB is not started yet (use it inside a test or hook)');
      return client;
    },
    async freshTables() {
      const c = this.client;
      tableCount += 1;
      const pacer = `${prefix}pacer-${tableCount}`;
      const correlation = `${prefix}correlation-${tableCount}`;
      for (const [name, key] of [[pacer, 'pk'], [correlation, 'requestId']]) {
        await c.send(new CreateTableCommand({
          TableName: name,
          AttributeDefinitions: [{ AttributeName: key, AttributeType: 'S' }],
          KeySchema: [{ AttributeName: key, KeyType: 'HASH' }],
          BillingMode: 'PAY_PER_REQUEST',
        }));
      }
      // dynalite creates tables in a few ms; wait until a read works.
      for (let i = 0; i < 50; i++) {
        try {
          await c.send(new GetItemCommand({ TableName: correlation, Key: { requestId: { S: 'x' } } }));
          await c.send(new GetItemCommand({ TableName: pacer, Key: { pk: { S: 'x' } } }));
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      return { pacer, correlation };
    },
  };
}

export interface FakeClock extends Clock { t: number }

/** A clock at `start` whose sleep moves it forward at once. */
export function fakeClock(start: number): FakeClock {
  const clock: FakeClock = { t: start, now: () => clock.t, sleep: async (ms: number) => { clock.t += ms; } };
  return clock;
}
