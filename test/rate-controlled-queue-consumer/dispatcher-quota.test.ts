/**
 * The dispatcher and the contract's quotas (issue 14, item 2): a batch that finds a quota spent for
 * its period takes no pacing slot and goes back to the queue until the period ends.
 */
import { DynamoDBClient, GetItemCommand, GetItemCommandInput, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { TEST_DISPATCH_CONFIG, testDispatchDeps } from './dispatch-fixtures';
import { requestRecord } from './sqs-record';
import { QuotaSpec } from '../../src/contract/quota-period';
import { dispatchBatch, DispatchConfig, DispatchDeps, loadConfig } from '../../src/rate-controlled-queue-consumer/dispatch';

const ddb = mockClient(DynamoDBClient);
const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_800_000_001_000; // 1 s into a 3 s period that ends at 1_800_000_003_000
const SHORT: QuotaSpec = { name: 'short', limit: 5, unit: 'fixed', periodMs: 3000 };
const CONFIG: DispatchConfig = { ...TEST_DISPATCH_CONFIG, quotas: [SHORT] };

function record(requestId: string): SQSRecord {
  return requestRecord({ taskToken: `token-${requestId}`, requestId, payload: {} }, `m-${requestId}`, T0);
}

const deps = (config: DispatchConfig = CONFIG): DispatchDeps => testDispatchDeps(config, T0);

/** The quota counter holds `used`; the pacer item is idle. */
function counterHolds(used: number | undefined) {
  ddb.on(GetItemCommand).callsFake(async (input: GetItemCommandInput) => {
    if (String(input.Key?.pk?.S).startsWith('quota#')) {
      return used === undefined ? {} : { Item: { used: { N: String(used) } } };
    }
    return {};
  });
  ddb.on(UpdateItemCommand).resolves({});
}

beforeEach(() => {
  ddb.reset();
  sfn.reset();
  sqs.reset();
  sqs.on(SendMessageCommand).resolves({ MessageId: 'copy' });
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:exec', startDate: new Date() });
});

describe('dispatchBatch with quotas', () => {
  test('GIVEN a quota spent for its period WHEN a batch arrives THEN no slot is reserved, nothing starts, and each message comes back as a delayed copy when the period ends', async () => {
    counterHolds(5);
    const response = await dispatchBatch({ Records: [record('a'), record('b')] }, deps());

    expect(response).toEqual({ batchItemFailures: [] });
    expect(ddb.commandCalls(UpdateItemCommand)).toHaveLength(0);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(0);
    // The period ends in 2 s (+ the 250 ms boundary margin): 3 s, as whole seconds.
    const copies = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
    expect(copies.map((c) => c.DelaySeconds)).toEqual([3, 3]);
    expect(copies.map((c) => JSON.parse(c.MessageBody!).requestId)).toEqual(['a', 'b']);
    // The counter was read strongly consistent, keyed by the period.
    const read = ddb.commandCalls(GetItemCommand).find((c) => String(c.args[0].input.Key?.pk?.S).startsWith('quota#'))!.args[0].input;
    expect(read).toMatchObject({ Key: { pk: { S: 'quota#short#1800000000000' } }, ConsistentRead: true });
  });

  test('GIVEN a request postponed for a spent quota WHEN its copy comes back later THEN its start stays the first delivery\'s SentTimestamp (its quota deadline does not restart)', async () => {
    counterHolds(5);
    const first = requestRecord({ taskToken: 'token-s', requestId: 's', payload: {} }, 'm-s', T0 - 7000);
    await dispatchBatch({ Records: [first] }, deps());
    const copy = JSON.parse(sqs.commandCalls(SendMessageCommand)[0].args[0].input.MessageBody!);
    expect(copy).toMatchObject({ requestId: 's', requestStartedAtMs: T0 - 7000 });

    // The copy is delivered 3 s later with its own SentTimestamp; the execution gets the first one.
    ddb.reset();
    counterHolds(0);
    await dispatchBatch({ Records: [requestRecord(copy, 'm-s2', T0 + 3000)] }, deps());
    const input = JSON.parse(sfn.commandCalls(StartExecutionCommand)[0].args[0].input.input!);
    expect(input.requestStartedAtMs).toBe(T0 - 7000);
    expect(input.message.requestStartedAtMs).toBe(T0 - 7000);
  });

  describe('requests that may not wait for the period', () => {
    // The period ends at T0 + 2000; a request may call again from T0 + 2250 (the boundary margin).
    const SPENT_UNTIL = T0 + 2250;
    const MAX_WAIT = 10_000;
    const startedAt = (requestId: string, startMs: number) =>
      requestRecord({ taskToken: `token-${requestId}`, requestId, payload: {}, requestStartedAtMs: startMs }, `m-${requestId}`, T0);

    test('GIVEN a request whose deadline (start + callbackTimeout) comes 1 ms before the period ends WHEN the quota is spent THEN it is not postponed but sent on, for the vendor caller to fail at once', async () => {
      counterHolds(5);
      await dispatchBatch({
        Records: [startedAt('late', SPENT_UNTIL - 1 - MAX_WAIT), startedAt('fresh', SPENT_UNTIL - MAX_WAIT)],
      }, deps({ ...CONFIG, quotaMaxWaitMs: MAX_WAIT }));
      const started = sfn.commandCalls(StartExecutionCommand).map((c) => JSON.parse(c.args[0].input.input!));
      expect(started.map((i) => [i.requestId, i.requestStartedAtMs])).toEqual([['late', SPENT_UNTIL - 1 - MAX_WAIT]]);
      // The other one's deadline is exactly when the period may be called again: it waits for it.
      const copies = sqs.commandCalls(SendMessageCommand).map((c) => JSON.parse(c.args[0].input.MessageBody!).requestId);
      expect(copies).toEqual(['fresh']);
    });

    test('GIVEN QuotaExhaustedAction.FAIL WHEN the quota is spent THEN nothing is postponed: every request goes on and the vendor caller fails it at once', async () => {
      counterHolds(5);
      await dispatchBatch({ Records: [record('f1'), record('f2')] }, deps({ ...CONFIG, whenQuotaExhausted: 'FAIL' }));
      expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(2);
      expect(sqs.commandCalls(SendMessageCommand)).toHaveLength(0);
    });
  });

  test('GIVEN a unit left (or no counter yet) WHEN a batch arrives THEN it is dispatched as usual', async () => {
    for (const used of [4, undefined]) {
      ddb.reset();
      sfn.resetHistory();
      counterHolds(used);
      await dispatchBatch({ Records: [record('c')] }, deps());
      expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(1);
    }
  });

  test('GIVEN the counters cannot be read WHEN a batch arrives THEN it is dispatched (the vendor caller keeps the quota)', async () => {
    ddb.on(GetItemCommand).callsFake(async (input: GetItemCommandInput) => {
      if (String(input.Key?.pk?.S).startsWith('quota#')) throw new Error('throttled');
      return {};
    });
    ddb.on(UpdateItemCommand).resolves({});
    const d = deps();
    await dispatchBatch({ Records: [record('d')] }, d);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(1);
    expect(d.logger.warn).toHaveBeenCalledWith(expect.stringMatching(/could not read the quota counters/), expect.anything());
  });

  test('GIVEN no quota THEN no counter is read', async () => {
    counterHolds(5);
    await dispatchBatch({ Records: [record('e')] }, deps({ ...CONFIG, quotas: undefined }));
    expect(ddb.commandCalls(GetItemCommand).filter((c) => String(c.args[0].input.Key?.pk?.S).startsWith('quota#'))).toHaveLength(0);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(1);
  });

  test('GIVEN the environment WHEN loading the config THEN QUOTAS is read', () => {
    const env = {
      STATE_MACHINE_ARN: CONFIG.stateMachineArn,
      REQUESTS_PER_SECOND: '10',
      PACER_TABLE_NAME: 'pacer',
      MAX_PACING_WAIT_MS: '2000',
      CORRELATION_TTL_SECONDS: '86400',
      DEAD_LETTER_QUEUE_URL: CONFIG.deadLetterQueueUrl,
    };
    const plain = loadConfig(env);
    expect([plain.quotas, plain.whenQuotaExhausted, plain.quotaMaxWaitMs]).toEqual([undefined, undefined, undefined]);
    expect(loadConfig({ ...env, QUOTAS: JSON.stringify([SHORT]), QUOTA_EXHAUSTED: 'FAIL', QUOTA_MAX_WAIT_MS: '60000' }))
      .toMatchObject({ quotas: [SHORT], whenQuotaExhausted: 'FAIL', quotaMaxWaitMs: 60000 });
    expect(() => loadConfig({ ...env, QUOTA_MAX_WAIT_MS: 'soon' })).toThrow(/QUOTA_MAX_WAIT_MS/);
  });
});
