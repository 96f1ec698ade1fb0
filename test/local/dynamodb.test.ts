/**
 * The local DynamoDB (dynalite) with the example app's tables: key schemas, indexes and their
 * projections as synthesized, conditional writes, and the TTL gap.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
} from '@aws-sdk/client-dynamodb';
import { buildExampleApp } from '../../examples/app';
import { createTableInput, createTables, LocalDynamoDb, startDynamoDb } from '../../local/aws/dynamodb';
import { LocalTemplate } from '../../local/template';
import { LOCAL_CREDENTIALS, LOCAL_REGION, LocalEndpoints } from '../../local/types';
import { claimSlot } from '../../src/rate-controlled-queue-consumer/pacer';

const STACK = 'AsyncExternalApiExample';

let outdir: string;
let dynamodb: LocalDynamoDb;
let endpoints: LocalEndpoints;
let template: LocalTemplate;
let client: DynamoDBClient;

/** The local name of the one table whose logical id starts with `prefix`. */
function tableName(prefix: string): string {
  const matches = template.ofType('AWS::DynamoDB::Table').filter((t) => t.logicalId.startsWith(prefix));
  expect(matches).toHaveLength(1);
  return template.nameOf(matches[0].logicalId);
}

beforeAll(async () => {
  outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'local-dynamodb-'));
  buildExampleApp({}, outdir).app.synth();
  dynamodb = await startDynamoDb();
  endpoints = { sqs: 'http://127.0.0.1:1', dynamodb: dynamodb.endpoint, sfn: 'http://127.0.0.1:1', secretsManager: 'http://127.0.0.1:1' };
  template = LocalTemplate.load(outdir, STACK, endpoints);
  await createTables(template, dynamodb.endpoint);
  client = new DynamoDBClient({ endpoint: dynamodb.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
}, 30_000);

afterAll(async () => {
  client?.destroy();
  await dynamodb?.stop();
  fs.rmSync(outdir, { recursive: true, force: true });
});

describe('startDynamoDb', () => {
  test('listens on loopback', () => {
    expect(dynamodb.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });
});

describe('createTables', () => {
  test('creates the correlation table with its key, on-demand billing and the INCLUDE index', async () => {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName('VendorCorrelationTable') }));
    expect(Table?.TableStatus).toBe('ACTIVE');
    expect(Table?.KeySchema).toEqual([{ AttributeName: 'requestId', KeyType: 'HASH' }]);
    expect(Table?.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
    expect(Table?.GlobalSecondaryIndexes).toEqual([expect.objectContaining({
      IndexName: 'ByJobId',
      IndexStatus: 'ACTIVE',
      KeySchema: [{ AttributeName: 'jobId', KeyType: 'HASH' }],
      Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['taskToken', 'status'] },
    })]);
  });

  test('creates the pacer table', async () => {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName('VendorConsumerPacerTable') }));
    expect(Table?.KeySchema).toEqual([{ AttributeName: 'pk', KeyType: 'HASH' }]);
  });

  test('gives provisioned tables and indexes without throughput some, and creates local indexes', async () => {
    const provisioned = LocalTemplate.fromTemplate({
      Resources: {
        Provisioned: {
          Type: 'AWS::DynamoDB::Table',
          Properties: {
            TableName: 'provisioned',
            KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }, { AttributeName: 'sk', KeyType: 'RANGE' }],
            AttributeDefinitions: [
              { AttributeName: 'pk', AttributeType: 'S' },
              { AttributeName: 'sk', AttributeType: 'N' },
              { AttributeName: 'gk', AttributeType: 'S' },
            ],
            GlobalSecondaryIndexes: [{ IndexName: 'ByGk', KeySchema: [{ AttributeName: 'gk', KeyType: 'HASH' }], Projection: { ProjectionType: 'KEYS_ONLY' } }],
            LocalSecondaryIndexes: [{
              IndexName: 'ByGkLocal',
              KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }, { AttributeName: 'gk', KeyType: 'RANGE' }],
              Projection: { ProjectionType: 'ALL' },
            }],
          },
        },
      },
    }, endpoints, { stackName: 'Provisioned' });
    await createTables(provisioned, dynamodb.endpoint);
    const { Table } = await client.send(new DescribeTableCommand({ TableName: 'provisioned' }));
    expect(Table?.ProvisionedThroughput).toEqual(expect.objectContaining({ ReadCapacityUnits: 5, WriteCapacityUnits: 5 }));
    expect(Table?.GlobalSecondaryIndexes?.[0].ProvisionedThroughput).toEqual(expect.objectContaining({ ReadCapacityUnits: 5 }));
    expect(Table?.LocalSecondaryIndexes?.map((i) => i.IndexName)).toEqual(['ByGkLocal']);
  });

  test('fails on a table property that would change behaviour and is not applied', () => {
    const odd = LocalTemplate.fromTemplate({
      Resources: { Odd: { Type: 'AWS::DynamoDB::Table', Properties: { KeySchema: [], KinesisStreamSpecification: {} } } },
    }, endpoints, { stackName: 'Odd' });
    expect(() => createTableInput(odd.get('Odd'), 'Odd')).toThrow(/Cannot run table Odd locally: property KinesisStreamSpecification/);
  });
});

describe('table behaviour', () => {
  test('queries the INCLUDE index with only the projected attributes', async () => {
    const TableName = tableName('VendorCorrelationTable');
    await client.send(new PutItemCommand({
      TableName,
      Item: { requestId: { S: 'r-1' }, jobId: { S: 'j-1' }, taskToken: { S: 't-1' }, status: { S: 'SUBMITTED' }, secret: { S: 'not projected' } },
    }));
    const { Items } = await client.send(new QueryCommand({
      TableName,
      IndexName: 'ByJobId',
      KeyConditionExpression: 'jobId = :j',
      ExpressionAttributeValues: { ':j': { S: 'j-1' } },
    }));
    expect(Items).toEqual([{ requestId: { S: 'r-1' }, jobId: { S: 'j-1' }, taskToken: { S: 't-1' }, status: { S: 'SUBMITTED' } }]);
  });

  test('refuses a conditional write whose condition fails', async () => {
    const TableName = tableName('VendorConsumerPacerTable');
    const put = (): PutItemCommand => new PutItemCommand({ TableName, Item: { pk: { S: 'slot' } }, ConditionExpression: 'attribute_not_exists(pk)' });
    await client.send(put());
    await expect(client.send(put())).rejects.toMatchObject({ name: 'ConditionalCheckFailedException' });
  });

  test('claims a pacing slot once: the vendor caller\'s conditional PutItem on the synthesized pacer table (issue 13, item 1)', async () => {
    const TableName = tableName('VendorConsumerPacerTable');
    const slot = 1_800_000_000_123.5;
    expect(await claimSlot(client, TableName, slot)).toBe(true);
    expect(await claimSlot(client, TableName, slot)).toBe(false);
    expect(await claimSlot(client, TableName, slot + 103)).toBe(true);
    const { Item } = await client.send(new GetItemCommand({ TableName, Key: { pk: { S: `slot#${slot}` } } }));
    expect(Item?.expiresAt).toEqual({ N: String(Math.ceil(slot / 1000) + 3600) });
    // The table expires claims through its TTL attribute on AWS.
    expect(template.get(template.ofType('AWS::DynamoDB::Table').find((t) => t.logicalId.startsWith('VendorConsumerPacerTable'))!.logicalId)
      .properties.TimeToLiveSpecification).toEqual({ AttributeName: 'expiresAt', Enabled: true });
  });

  test('never expires items (TTL is not set on dynalite): readers must filter expired items', async () => {
    const TableName = tableName('VendorCorrelationTable');
    const expired = Math.floor(Date.now() / 1000) - 3600;
    await client.send(new PutItemCommand({ TableName, Item: { requestId: { S: 'old' }, expiresAt: { N: String(expired) } } }));
    const { Item } = await client.send(new GetItemCommand({ TableName, Key: { requestId: { S: 'old' } } }));
    expect(Item?.expiresAt).toEqual({ N: String(expired) });
  });
});
