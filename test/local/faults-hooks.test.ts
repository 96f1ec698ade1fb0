/**
 * The fault hooks of the local runtime (local/faults.ts) and the emulators that consult them.
 * The scenarios that use them end to end are in test/local/faults.test.ts.
 */
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { ListExecutionsCommand, SFNClient } from '@aws-sdk/client-sfn';
import { LocalDynamoDb, startDynamoDb } from '../../local/aws/dynamodb';
import { LocalStepFunctions } from '../../local/aws/stepfunctions';
import { FaultInjector, mulberry32 } from '../../local/faults';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/types';

describe('FaultInjector', () => {
  test('throttles the planned fraction of matching calls, with the error codes in turn, and counts them', () => {
    const faults = new FaultInjector();
    faults.configure({ throttle: [{ service: 'dynamodb', rate: 1, actions: ['PutItem'] }] });
    expect(faults.beforeCall('dynamodb', 'GetItem')).toBeUndefined();
    expect(faults.beforeCall('sfn', 'PutItem')).toBeUndefined();
    const codes = [1, 2, 3].map(() => faults.beforeCall('dynamodb', 'PutItem')?.code);
    expect(codes).toEqual(['ProvisionedThroughputExceededException', 'ThrottlingException', 'ProvisionedThroughputExceededException']);
    expect(faults.beforeCall('dynamodb', 'PutItem')?.status).toBe(400);
    expect(faults.stats()).toMatchObject({ throttled: { 'dynamodb:PutItem': 4 }, throttledTotal: 4 });

    faults.configure({ throttle: [{ service: 'sfn', rate: 0.3 }], seed: 5 });
    const hits = Array.from({ length: 1000 }, () => faults.beforeCall('sfn', 'StartExecution')).filter(Boolean).length;
    expect(hits).toBeGreaterThan(250);
    expect(hits).toBeLessThan(350);
    faults.reset();
    expect(faults.beforeCall('sfn', 'StartExecution')).toBeUndefined();
    expect(faults.stats().throttledTotal).toBe(0);
  });

  test('crashes after every n-th matching call, as many times as planned', async () => {
    const faults = new FaultInjector();
    const crashed: string[] = [];
    faults.attach(async (name) => {
      crashed.push(name);
      return 2;
    });
    faults.configure({ crash: [{ functionName: 'fn', service: 'sfn', action: 'SendTaskSuccess', afterCalls: 2, times: 2 }] });
    for (let i = 0; i < 7; i++) {
      await faults.afterCall('sfn', 'SendTaskSuccess');
      await faults.afterCall('sfn', 'StartExecution');
    }
    expect(crashed).toEqual(['fn', 'fn']);
    expect(faults.stats()).toMatchObject({ crashes: { fn: 2 }, environmentsKilled: 4 });
  });

  test('refuses a plan it cannot carry out, saying what was given', async () => {
    const faults = new FaultInjector();
    expect(() => faults.configure({ throttle: [{ service: 'sfn', rate: 2 }] })).toThrow(/fraction between 0 and 1 \(given 2\)/);
    expect(() => faults.configure({ crash: [{ functionName: 'fn', service: 'sfn', action: 'X', afterCalls: 0 }] }))
      .toThrow(/at least 1 \(given 0\)/);
    faults.configure({ crash: [{ functionName: 'fn', service: 'sfn', action: 'X', afterCalls: 1 }] });
    await expect(faults.afterCall('sfn', 'X')).rejects.toThrow(/no Lambda service is attached/);
  });

  test('mulberry32 is reproducible', () => {
    const a = mulberry32(9);
    const b = mulberry32(9);
    expect([a(), a(), a()]).toEqual([b(), b(), b()]);
  });
});

describe('emulators with a fault hook', () => {
  let dynamodb: LocalDynamoDb | undefined;
  let sfn: LocalStepFunctions | undefined;
  afterEach(async () => {
    await dynamodb?.stop();
    await sfn?.stop();
    dynamodb = undefined;
    sfn = undefined;
  });

  test('the local DynamoDB answers a throttled call with the DynamoDB error, and serves it again after reset', async () => {
    const faults = new FaultInjector();
    dynamodb = await startDynamoDb(faults);
    const client = new DynamoDBClient({ endpoint: dynamodb.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS, maxAttempts: 1 });
    try {
      faults.configure({ throttle: [{ service: 'dynamodb', rate: 1, actions: ['ListTables'] }] });
      await expect(client.send(new ListTablesCommand({}))).rejects.toMatchObject({ name: 'ProvisionedThroughputExceededException' });
      faults.reset();
      await expect(client.send(new ListTablesCommand({}))).resolves.toMatchObject({ TableNames: [] });
    } finally {
      client.destroy();
    }
  });

  test('the local Step Functions answers a throttled call with ThrottlingException', async () => {
    const faults = new FaultInjector();
    sfn = new LocalStepFunctions({
      endpoints: { sqs: 'http://127.0.0.1:9', dynamodb: 'http://127.0.0.1:9', secretsManager: 'http://127.0.0.1:9' },
      invokeLambda: async () => null,
      rewriteUrl: (url) => url,
      faults,
    });
    const endpoint = await sfn.listen();
    const client = new SFNClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS, maxAttempts: 1 });
    try {
      faults.configure({ throttle: [{ service: 'sfn', rate: 1 }] });
      await expect(client.send(new ListExecutionsCommand({ stateMachineArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:x' })))
        .rejects.toMatchObject({ name: 'ThrottlingException' });
      expect(faults.stats().throttled).toEqual({ 'sfn:ListExecutions': 1 });
    } finally {
      client.destroy();
    }
  });
});
