/**
 * The dispatcher and per-key quotas (issue 15, design docs/design/per-key-limits.md 1.5): the
 * batch's keys' counters are read in one BatchGetItem; a key out of its own quota is set aside
 * until its period ends (delay capped at 15 minutes), the other keys go on. DynamoDB, Step
 * Functions and SQS mocked; fake clock.
 */
import {
  BatchGetItemCommand, BatchGetItemCommandInput, DynamoDBClient, GetItemCommand, UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { SFNClient, StartExecutionCommand, StartExecutionCommandInput } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { TEST_DISPATCH_CONFIG, testDispatchDeps } from './dispatch-fixtures';
import { requestRecord } from './sqs-record';
import { keyQuotasSpentUntil } from '../../src/contract/quota-ledger';
import { QuotaSpec } from '../../src/contract/quota-period';
import { dispatchBatch, DispatchConfig, DispatchDeps } from '../../src/rate-controlled-queue-consumer/dispatch';
import { KeyLimitsSource, KeyLimitsSpec } from '../../src/shared/key-limits';

const ddb = mockClient(DynamoDBClient);
const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_800_000_001_000; // 1 s into a 3 s period that ends at 1_800_000_003_000
const PERIOD_START = 1_800_000_000_000;
const DAY_START = T0 - (T0 % 86_400_000);
const SHORT: QuotaSpec = { name: 'short', limit: 100, unit: 'fixed', periodMs: 3000 };
const DAILY: QuotaSpec = { name: 'daily', limit: 1000, unit: 'day' };

function limits(quotas: Record<string, number>): KeyLimitsSpec {
  return { requestsPerSecond: 5, quotas, priorityAgingMs: 30_000, paused: false };
}

function record(requestId: string, key?: string) {
  return requestRecord({ taskToken: `token-${requestId}`, requestId, payload: {}, ...(key ? { key } : {}) }, `m-${requestId}`, T0);
}

function deps(config: Partial<DispatchConfig>, keyQuotas: Record<string, number> = { short: 2 }): DispatchDeps {
  const keyLimits: KeyLimitsSource = { limitsFor: async (keys) => new Map(keys.map((key) => [key, limits(keyQuotas)])) };
  return { ...testDispatchDeps({ ...TEST_DISPATCH_CONFIG, ...config }, T0), keyLimits };
}

/** The key counters hold `used` per partition key (absent: 0); the contract's counters and the pacer item are idle. */
function countersHold(used: Record<string, number>) {
  ddb.on(BatchGetItemCommand).callsFake(async (input: BatchGetItemCommandInput) => {
    const [table, request] = Object.entries(input.RequestItems!)[0];
    const items = request.Keys!.map((k) => k.pk.S!).filter((pk) => used[pk] !== undefined)
      .map((pk) => ({ pk: { S: pk }, used: { N: String(used[pk]) } }));
    return { Responses: { [table]: items } };
  });
}

/** The reads of key quota counters (with per-key limits, the keys' pacer items are read too: key-schedule.ts). */
const counterReads = () => ddb.commandCalls(BatchGetItemCommand)
  .filter((c) => c.args[0].input.RequestItems!.pacer.Keys!.some((k) => k.pk.S!.startsWith('key-quota#')));
const started = () => sfn.commandCalls(StartExecutionCommand)
  .map((c) => JSON.parse((c.args[0].input as StartExecutionCommandInput).input!).requestId);
const copies = () => sqs.commandCalls(SendMessageCommand)
  .map((c) => [JSON.parse(c.args[0].input.MessageBody!).requestId, c.args[0].input.DelaySeconds]);

beforeEach(() => {
  ddb.reset();
  sfn.reset();
  sqs.reset();
  ddb.on(GetItemCommand).resolves({});
  ddb.on(UpdateItemCommand).resolves({});
  sqs.on(SendMessageCommand).resolves({ MessageId: 'copy' });
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:exec', startDate: new Date() });
});

describe('dispatchBatch with per-key quotas', () => {
  test('GIVEN one key out of its quota WHEN a batch of two keys arrives THEN only that key\'s request is set aside until its period ends, the other starts', async () => {
    countersHold({ [`key-quota#short#${PERIOD_START}#hot`]: 2, [`key-quota#short#${PERIOD_START}#quiet`]: 1 });
    const response = await dispatchBatch({ Records: [record('h1', 'hot'), record('q1', 'quiet')] }, deps({ quotas: [SHORT] }));
    expect(response).toEqual({ batchItemFailures: [] });
    expect(started()).toEqual(['q1']);
    // The period ends in 2 s (+ the 250 ms boundary margin): 3 s, as whole seconds.
    expect(copies()).toEqual([['h1', 3]]);
    // One eventually consistent read of both keys' counters.
    expect(counterReads()).toHaveLength(1);
    const read = counterReads()[0].args[0].input.RequestItems!.pacer;
    expect(read.Keys!.map((k) => k.pk.S)).toEqual([`key-quota#short#${PERIOD_START}#hot`, `key-quota#short#${PERIOD_START}#quiet`]);
    expect(read.ConsistentRead).toBeUndefined();
  });

  test('GIVEN a key out of its daily quota WHEN set aside THEN its delay is capped at SQS\'s 15 minutes (it returns and checks again)', async () => {
    countersHold({ [`key-quota#daily#${DAY_START}#hot`]: 2 });
    await dispatchBatch({ Records: [record('h1', 'hot')] }, deps({ quotas: [DAILY] }, { daily: 2 }));
    expect(started()).toEqual([]);
    expect(copies()).toEqual([['h1', 900]]);
  });

  test.each([
    ['QuotaExhaustedAction.FAIL', { whenQuotaExhausted: 'FAIL' as const }],
    ['a period ending after the request\'s deadline', { quotaMaxWaitMs: 1000 }],
  ])('GIVEN a key out of its quota and %s WHEN dispatching THEN its request goes on (the vendor caller fails it at once)', async (_, extra) => {
    countersHold({ [`key-quota#short#${PERIOD_START}#hot`]: 2 });
    await dispatchBatch({ Records: [record('h1', 'hot')] }, deps({ quotas: [SHORT], ...extra }));
    expect(started()).toEqual(['h1']);
    expect(copies()).toEqual([]);
  });

  test('GIVEN the counters cannot be read WHEN dispatching THEN nothing is set aside (the vendor caller keeps the quotas)', async () => {
    ddb.on(BatchGetItemCommand).callsFake(async (input: BatchGetItemCommandInput) => {
      if (input.RequestItems!.pacer.Keys!.some((k) => k.pk.S!.startsWith('key-quota#'))) {
        throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
      }
      return { Responses: { pacer: [] } };
    });
    const d = deps({ quotas: [SHORT] });
    await dispatchBatch({ Records: [record('h1', 'hot')] }, d);
    expect(started()).toEqual(['h1']);
    expect(d.logger.warn).toHaveBeenCalledWith(expect.stringContaining('could not read the keys\' quota counters'), expect.anything());
  });

  test('GIVEN keyless requests, keys without per-key quotas, or no per-key limits WHEN dispatching THEN no key counter is read (unchanged)', async () => {
    await dispatchBatch({ Records: [record('a'), record('b', 'acme')] }, deps({ quotas: [SHORT] }, {}));
    await dispatchBatch({ Records: [record('c', 'acme')] }, { ...deps({ quotas: [SHORT] }), keyLimits: undefined });
    expect(counterReads()).toEqual([]);
    expect(started()).toEqual(['a', 'b', 'c']);
  });
});

describe('keyQuotasSpentUntil', () => {
  const dynamodb = new DynamoDBClient({});

  test('GIVEN more than 100 counters and keys left unprocessed WHEN read THEN they are read in batches of 100 and the unprocessed ones asked again', async () => {
    const quotasByKey = new Map(Array.from({ length: 101 }, (_, i) => [`k${i}`, [{ ...SHORT, limit: 1 }]]));
    let first = true;
    ddb.on(BatchGetItemCommand).callsFake(async (input: BatchGetItemCommandInput) => {
      const keys = input.RequestItems!.pacer.Keys!;
      if (first && keys.length === 100) {
        first = false;
        // DynamoDB throttled part of the batch: the last key comes back unprocessed.
        return { Responses: { pacer: [] }, UnprocessedKeys: { pacer: { ...input.RequestItems!.pacer, Keys: [keys[99]] } } };
      }
      return { Responses: { pacer: keys.map((k) => ({ pk: k.pk, used: { N: '1' } })) } };
    });
    const waits: number[] = [];
    const until = await keyQuotasSpentUntil(dynamodb, 'pacer', quotasByKey, T0, async (ms) => {
      waits.push(ms);
    });
    expect(ddb.commandCalls(BatchGetItemCommand).map((c) => c.args[0].input.RequestItems!.pacer.Keys!.length)).toEqual([100, 1, 1]);
    // ... the unprocessed key asked again after a backoff (AWS recommends exponential backoff), not at once
    expect(waits).toEqual([25]);
    // Only the unprocessed key (k99, re-read) and the second batch's (k100) were seen: both spent.
    expect([...until.keys()].sort()).toEqual(['k100', 'k99']);
    expect(until.get('k99')).toBe(PERIOD_START + 3000 + 250);
  });

  test('GIVEN a key with two quotas, one spent WHEN read THEN the key is spent until that quota\'s period ends', async () => {
    countersHold({ [`key-quota#daily#${DAY_START}#acme`]: 5, [`key-quota#short#${PERIOD_START}#acme`]: 0 });
    const until = await keyQuotasSpentUntil(dynamodb, 'pacer', new Map([['acme', [{ ...SHORT, limit: 3 }, { ...DAILY, limit: 5 }]]]), T0);
    expect(until).toEqual(new Map([['acme', DAY_START + 86_400_000 + 250]]));
  });
});
