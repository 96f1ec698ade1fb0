/**
 * Two orchestrators sharing one contract state (VendorContractState, issue 14 item 8), at the
 * handlers, against ONE pacer table in the local DynamoDB (dynalite: real conditional writes):
 * their dispatchers reserve disjoint slots of one schedule, their places count against one
 * jobs-in-flight limit and their quota units against one counter, while what is each
 * orchestrator's own (its drain lease, its job places) is keyed apart by SHARED_STATE_OWNER.
 */
import { CreateTableCommand, DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { SendTaskHeartbeatCommand, SFNClient, StartExecutionCommand, StartExecutionCommandInput } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { requestRecord } from './sqs-record';
import { LocalDynamoDb, startDynamoDb } from '../../local/aws/dynamodb';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/types';
import { loadConfig as loadCallbackConfig } from '../../src/callback-webhook/callback-processing';
import { spendQuotaUnits } from '../../src/contract/quota-ledger';
import { QuotaSpec } from '../../src/contract/quota-period';
import { freePlaceOfRefusedSubmission } from '../../src/dispatch-workflow/refused-submission';
import { dispatchBatch, DispatchConfig, DispatchDeps, loadConfig } from '../../src/rate-controlled-queue-consumer/dispatch';
import { Clock } from '../../src/rate-controlled-queue-consumer/pacer';
import { drainLeaseKey, dynamoDbDrainLease } from '../../src/rate-controlled-queue-consumer/scheduled-drain';
import { placeKey, readPlaces, releasePlace, takePlace } from '../../src/shared/job-places';

const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_700_000_000_000;
const HOUR_MS = 3_600_000;
/** The two orchestrators' keys: their request queues' ARNs (ConsumerEnv.SHARED_STATE_OWNER). */
const ORDERS = 'arn:aws:sqs:us-east-1:123456789012:Orders-RequestQueue';
const INVOICES = 'arn:aws:sqs:us-east-1:123456789012:Invoices-RequestQueue';
const workflowOf = (owner: string) => `arn:aws:states:us-east-1:123456789012:stateMachine:${owner.split(':').pop()}`;

let dynamo: LocalDynamoDb;
let client: DynamoDBClient;
let tableCount = 0;

beforeAll(async () => {
  dynamo = await startDynamoDb();
  client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
}, 30_000);

afterAll(async () => {
  client?.destroy();
  await dynamo?.stop();
});

/** A fresh table keyed `key`: the pacer table both orchestrators share (`pk`), or a correlation table (`requestId`). */
async function freshTable(prefix: string, key: string): Promise<string> {
  tableCount += 1;
  const name = `${prefix}-${tableCount}`;
  await client.send(new CreateTableCommand({
    TableName: name,
    AttributeDefinitions: [{ AttributeName: key, AttributeType: 'S' }],
    KeySchema: [{ AttributeName: key, KeyType: 'HASH' }],
    BillingMode: 'PAY_PER_REQUEST',
  }));
  for (let i = 0; i < 50; i++) {
    try {
      await client.send(new GetItemCommand({ TableName: name, Key: { [key]: { S: 'x' } } }));
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return name;
}
const sharedPacerTable = () => freshTable('shared-pacer', 'pk');

interface FakeClock extends Clock { t: number }
const fakeClock = (start: number = T0): FakeClock => {
  const clock: FakeClock = { t: start, now: () => clock.t, sleep: async (ms: number) => { clock.t += ms; } };
  return clock;
};
const logger = { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() };
const metrics = () => ({ addMetric: jest.fn() });

/** A dispatcher of the orchestrator keyed `owner` (PacingPoint.VENDOR_CALL: executions carry their slot). */
interface Limit { readonly max: number; readonly correlationTableName: string }

function dispatcher(pacerTableName: string, owner: string, clock: FakeClock, limit?: Limit): DispatchDeps {
  const config: DispatchConfig = {
    stateMachineArn: workflowOf(owner),
    requestsPerSecond: 10,
    pacerTableName,
    maxPacingWaitMs: 5_000,
    latenessToleranceMs: 30,
    leadMs: 1000,
    correlationTtlSeconds: 86_400,
    deadLetterQueueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/dlq',
    stateOwner: owner,
    ...(limit
      ? { jobsInFlight: { maxJobsInFlight: limit.max, maxJobDurationMs: HOUR_MS, recheckMs: 2000, correlationTableName: limit.correlationTableName } }
      : {}),
  };
  const clients = { dynamodb: client, sfn: new SFNClient({}), sqs: new SQSClient({}) };
  return { clients, config, logger, metrics: metrics(), clock, random: () => 0.5 };
}

function batch(prefix: string, n: number) {
  return { Records: Array.from({ length: n }, (_, i) => requestRecord({ taskToken: `t-${prefix}${i}`, requestId: `${prefix}${i}`, payload: {} }, `${prefix}-m${i}`, T0)) };
}

/** Every started execution: its workflow (which orchestrator) and the slot it carries. */
function starts(): Array<{ workflow: string; requestId: string; slotAtMs: number }> {
  return sfn.commandCalls(StartExecutionCommand).map((c) => {
    const input = c.args[0].input as StartExecutionCommandInput;
    const body = JSON.parse(input.input!);
    return { workflow: input.stateMachineArn!, requestId: body.requestId, slotAtMs: body.slotAtMs };
  });
}

beforeEach(() => {
  sfn.reset();
  sqs.reset();
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:exec', startDate: new Date() });
  // The waiting workflows are alive (job admission checks before it takes a place).
  sfn.on(SendTaskHeartbeatCommand).resolves({});
  sqs.on(SendMessageCommand).resolves({ MessageId: 'copy' });
  sqs.on(ChangeMessageVisibilityCommand).resolves({});
});

describe('one schedule', () => {
  test('GIVEN two orchestrators\' dispatchers at the same moment WHEN each dispatches 5 requests THEN their 10 slots are disjoint and spaced like one orchestrator\'s', async () => {
    const table = await sharedPacerTable();
    // Both invocations start at T0 (two Lambdas at once); each sleeps on its own clock.
    await dispatchBatch(batch('o', 5) as any, dispatcher(table, ORDERS, fakeClock()));
    await dispatchBatch(batch('i', 5) as any, dispatcher(table, INVOICES, fakeClock()));

    const all = starts();
    expect(all.filter((s) => s.workflow === workflowOf(ORDERS))).toHaveLength(5);
    expect(all.filter((s) => s.workflow === workflowOf(INVOICES))).toHaveLength(5);
    const slots = all.map((s) => s.slotAtMs).sort((a, b) => a - b);
    expect(new Set(slots).size).toBe(10);
    // (1 s + L + 1 ms) / 10 = 103.1 ms between any two slots, whichever orchestrator holds them:
    // no 1-second window holds more than the contract's 10.
    const interval = (1000 + 30 + 1) / 10;
    for (let i = 1; i < slots.length; i++) {
      expect(slots[i] - slots[i - 1]).toBeGreaterThanOrEqual(interval - 0.001);
    }
    for (const start of slots) {
      expect(slots.filter((s) => s >= start && s < start + 1000).length).toBeLessThanOrEqual(10);
    }
  });
});

describe('one jobs-in-flight limit, places keyed by orchestrator', () => {
  test('GIVEN a limit of 3 WHEN Orders admits 2 and Invoices 2 THEN Invoices gets 1 place and its other request waits', async () => {
    const table = await sharedPacerTable();
    // Each orchestrator has its own correlation table; the places are the contract's.
    const ordersLimit = { max: 3, correlationTableName: await freshTable('orders-correlation', 'requestId') };
    const invoicesLimit = { max: 3, correlationTableName: await freshTable('invoices-correlation', 'requestId') };
    await dispatchBatch(batch('o', 2) as any, dispatcher(table, ORDERS, fakeClock(), ordersLimit));
    await dispatchBatch(batch('i', 2) as any, dispatcher(table, INVOICES, fakeClock(), invoicesLimit));

    expect(starts().map((s) => s.requestId)).toEqual(['o0', 'o1', 'i0']);
    // i1 waits as a delayed copy; the places item holds 3 entries, one per (orchestrator, request).
    expect(sqs.commandCalls(SendMessageCommand)).toHaveLength(1);
    const places = (await readPlaces({ dynamodb: client, tableName: table }))!;
    expect(places.held).toBe(3);
    expect(new Set(places.places.keys())).toEqual(new Set([placeKey('o0', ORDERS), placeKey('o1', ORDERS), placeKey('i0', INVOICES)]));
  });

  test('GIVEN the same request id in both orchestrators (one order sent to blue and green) THEN they are two jobs: two places, each freed by its own orchestrator', async () => {
    const table = await sharedPacerTable();
    const orders = { dynamodb: client, tableName: table, owner: ORDERS };
    const invoices = { dynamodb: client, tableName: table, owner: INVOICES };
    expect(await takePlace(orders, 'order-1', 3, T0 + HOUR_MS, T0)).toEqual({ result: 'taken', placesHeld: 1, expiresAtMs: T0 + HOUR_MS });
    // Keyed by the request id alone, this would be 'held' (not counted): a second job at the vendor without a place.
    expect(await takePlace(invoices, 'order-1', 3, T0 + HOUR_MS, T0)).toEqual({ result: 'taken', placesHeld: 2, expiresAtMs: T0 + HOUR_MS });
    // The callback of the green job frees the green place only.
    expect(await releasePlace(invoices, 'order-1')).toBe(1);
    expect(await releasePlace(invoices, 'order-1')).toBeUndefined();
    expect([...(await readPlaces(orders))!.places.keys()]).toEqual([placeKey('order-1', ORDERS)]);
  });

  test('GIVEN a place of an orchestrator with its own state (no owner) THEN its key is the request id\'s digest as before sharing existed', () => {
    expect(placeKey('order-1', undefined)).toBe(placeKey('order-1'));
    expect(placeKey('order-1', ORDERS)).not.toBe(placeKey('order-1'));
    expect(placeKey('order-1', ORDERS)).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  test('GIVEN a submission the vendor refused (final 4xx) WHEN the vendor caller frees its place THEN it frees its own orchestrator\'s', async () => {
    const table = await sharedPacerTable();
    await takePlace({ dynamodb: client, tableName: table, owner: ORDERS }, 'order-1', 3, T0 + HOUR_MS, T0);
    await takePlace({ dynamodb: client, tableName: table, owner: INVOICES }, 'order-1', 3, T0 + HOUR_MS, T0);
    await freePlaceOfRefusedSubmission(
      { requestId: 'order-1', body: {} },
      { statusCode: 400, body: null, headers: {}, requeue: null } as any,
      { dynamodb: client, jobPlacesTableName: table, jobPlacesOwner: INVOICES, logger: logger as any },
    );
    expect([...(await readPlaces({ dynamodb: client, tableName: table }))!.places.keys()]).toEqual([placeKey('order-1', ORDERS)]);
  });
});

describe('configuration read by the handlers', () => {
  const dispatcherEnv = {
    STATE_MACHINE_ARN: 'arn:sm',
    REQUESTS_PER_SECOND: '10',
    PACER_TABLE_NAME: 'pacer',
    MAX_PACING_WAIT_MS: '1000',
    CORRELATION_TTL_SECONDS: '86400',
    DEAD_LETTER_QUEUE_URL: 'https://dlq',
  };
  test('the dispatcher reads SHARED_STATE_OWNER; absent (own state) it has none', () => {
    expect(loadConfig({ ...dispatcherEnv, SHARED_STATE_OWNER: ORDERS }).stateOwner).toBe(ORDERS);
    expect(loadConfig(dispatcherEnv).stateOwner).toBeUndefined();
  });

  const callbackEnv = {
    TABLE_NAME: 't', JOB_ID_INDEX_NAME: 'i', JOB_ID_PATH: '$.jobId', DEAD_LETTER_QUEUE_URL: 'https://dlq', JOB_PLACES_TABLE_NAME: 'pacer',
  };
  test('the callback processor reads SHARED_STATE_OWNER to free its own places; absent (own state) it has none', () => {
    expect(loadCallbackConfig({ ...callbackEnv, SHARED_STATE_OWNER: INVOICES }).jobPlacesOwner).toBe(INVOICES);
    expect(loadCallbackConfig(callbackEnv).jobPlacesOwner).toBeUndefined();
  });
});

describe('one drain lease per queue', () => {
  test('GIVEN two orchestrators in low-rate mode sharing the table THEN each takes its own lease; ticks of one queue still exclude each other', async () => {
    const table = await sharedPacerTable();
    const clock = fakeClock();
    const orders = dynamoDbDrainLease(client, table, 'orders-tick', clock, drainLeaseKey(ORDERS));
    const invoices = dynamoDbDrainLease(client, table, 'invoices-tick', clock, drainLeaseKey(INVOICES));
    expect(await orders.acquire(T0 + 55_000)).toBe(true);
    expect(await invoices.acquire(T0 + 55_000)).toBe(true);
    expect(await dynamoDbDrainLease(client, table, 'orders-duplicate', clock, drainLeaseKey(ORDERS)).acquire(T0 + 55_000)).toBe(false);
    expect(drainLeaseKey(undefined)).toBe('drain-lease');
    expect(drainLeaseKey(ORDERS)).toBe(`drain-lease#${ORDERS}`);
  });
});

describe('one quota', () => {
  test('GIVEN a quota of 3 per day WHEN Orders\' caller spends 2 and Invoices\' 1 THEN the next call of either finds it spent', async () => {
    const table = await sharedPacerTable();
    const quotas: QuotaSpec[] = [{ name: 'daily', limit: 3, unit: 'day' }];
    const slot = T0 + 10_000;
    for (let i = 0; i < 2; i++) {
      expect((await spendQuotaUnits(client, table, quotas, slot + i)).spent).toBe(true); // Orders
    }
    expect((await spendQuotaUnits(client, table, quotas, slot + 5)).spent).toBe(true); // Invoices
    expect(await spendQuotaUnits(client, table, quotas, slot + 6)).toMatchObject({ spent: false, exhausted: 'daily' });
  });
});
