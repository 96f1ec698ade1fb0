/**
 * The dispatcher and adaptive pacing (issue 14, item 5): its reservations read the adaptive rate
 * stored with the schedule and pace at min(rate in force, adaptive rate), published as EffectiveRate.
 */
import { DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { TEST_DISPATCH_CONFIG, testDispatchDeps } from './dispatch-fixtures';
import { requestRecord } from './sqs-record';
import { AdaptiveSpec } from '../../src/contract/adaptive-spec';
import { dispatchBatch, DispatchConfig, loadConfig } from '../../src/rate-controlled-queue-consumer/dispatch';
import { slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';

const ddb = mockClient(DynamoDBClient);
const sfn = mockClient(SFNClient);

const T0 = 1_800_000_001_000;
const SPEC: AdaptiveSpec = { decreaseFactor: 0.5, probeIntervalMs: 10_000, increaseStep: 1, minimumRequestsPerSecond: 1, cooldownMs: 2000 };
const CONFIG: DispatchConfig = { ...TEST_DISPATCH_CONFIG, maxPacingWaitMs: 5_000, adaptivePacing: SPEC };

function record(requestId: string): SQSRecord {
  return requestRecord({ taskToken: `token-${requestId}`, requestId, payload: {} }, `m-${requestId}`, T0);
}

// No SQS client: nothing here may reach the queue.
const deps = (config: DispatchConfig = CONFIG) => testDispatchDeps(config, T0, {} as any);

beforeEach(() => {
  ddb.reset();
  sfn.reset();
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:exec', startDate: new Date() });
  ddb.on(UpdateItemCommand).resolves({});
});

describe('dispatchBatch with adaptive pacing', () => {
  test('GIVEN an adaptive rate of 4 (a decrease to 3 two probe intervals ago, no probe possible: one lazy step) WHEN a batch arrives THEN its slots are spaced at 4 per second and EffectiveRate 4 is published', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { adaptiveRps: { N: '3' }, adaptiveSinceMs: { N: String(T0 - 25_000) } } });
    const d = deps();
    await dispatchBatch({ Records: [record('a'), record('b'), record('c')] }, d);

    const reservation = ddb.commandCalls(UpdateItemCommand)[0].args[0].input;
    expect(reservation.ExpressionAttributeValues![':interval']).toEqual({ N: String(slotIntervalMs(4, 49)) });
    expect(d.metrics.addMetric).toHaveBeenCalledWith('EffectiveRate', 'Count', 4);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(3);
  });

  test('GIVEN no adaptive pacing WHEN a batch arrives THEN no EffectiveRate is published and the adaptive state is not read', async () => {
    ddb.on(GetItemCommand).resolves({});
    const d = deps({ ...CONFIG, adaptivePacing: undefined });
    await dispatchBatch({ Records: [record('a')] }, d);

    expect(d.metrics.addMetric).not.toHaveBeenCalledWith('EffectiveRate', expect.anything(), expect.anything());
    expect(ddb.commandCalls(GetItemCommand)[0].args[0].input.ProjectionExpression).not.toContain('adaptiveRps');
  });

  test('GIVEN the environment WHEN loading the config THEN ADAPTIVE_PACING is read', () => {
    const env = {
      STATE_MACHINE_ARN: CONFIG.stateMachineArn,
      REQUESTS_PER_SECOND: '10',
      PACER_TABLE_NAME: 'pacer',
      MAX_PACING_WAIT_MS: '5000',
      CORRELATION_TTL_SECONDS: '86400',
      DEAD_LETTER_QUEUE_URL: CONFIG.deadLetterQueueUrl,
    };
    expect(loadConfig(env).adaptivePacing).toBeUndefined();
    expect(loadConfig({ ...env, ADAPTIVE_PACING: JSON.stringify(SPEC) }).adaptivePacing).toEqual(SPEC);
  });
});
