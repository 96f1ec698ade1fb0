/**
 * What the dispatcher tests of the contract's limits share: a configuration (10 rps, lead 1 s, the
 * request DLQ) and dependencies with a clock that advances when the dispatcher sleeps. The SDK
 * clients are plain ones, for aws-sdk-client-mock to intercept.
 */
import { DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { SendTaskFailureCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import type { AwsClientStub } from 'aws-sdk-client-mock';
import { requestRecord } from './sqs-record';
import type { DispatchConfig, DispatchDeps } from '../../src/rate-controlled-queue-consumer/dispatch';

export const TEST_DISPATCH_CONFIG: DispatchConfig = {
  stateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:dispatch',
  requestsPerSecond: 10,
  pacerTableName: 'pacer',
  maxPacingWaitMs: 2_000,
  latenessToleranceMs: 49,
  leadMs: 1000,
  correlationTtlSeconds: 86_400,
  deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/requests-dlq',
};

/** Dependencies whose clock starts at `startMs` and moves on by every sleep; `sqs` replaces the SQS client. */
export function testDispatchDeps(
  config: DispatchConfig,
  startMs: number,
  sqs: SQSClient = new SQSClient({}),
): DispatchDeps & { metrics: { addMetric: jest.Mock } } {
  let t = startMs;
  return {
    clients: { dynamodb: new DynamoDBClient({}), sfn: new SFNClient({}), sqs },
    config,
    logger: { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() } as any,
    metrics: { addMetric: jest.fn() },
    clock: { now: () => t, sleep: async (ms: number) => { t += ms; } },
    random: () => 0.5,
  };
}

/** A vendor call's message (`kind: 'call'`, GET /x) as a record sent at `sentAtMs`. */
export function callRecordAt(requestId: string, sentAtMs: number, extra: Record<string, unknown> = {}): SQSRecord {
  return requestRecord({ kind: 'call', taskToken: `token-${requestId}`, requestId, call: { method: 'GET', path: '/x' }, ...extra }, `m-${requestId}`, sentAtMs);
}

/**
 * Resets the mocked clients and answers what the dispatcher sends by default: nothing stored in the
 * pacer table, every write accepted, every copy sent, every start and task failure accepted.
 */
export function answerDispatchByDefault(
  ddb: AwsClientStub<DynamoDBClient>, sfn: AwsClientStub<SFNClient>, sqs: AwsClientStub<SQSClient>,
): void {
  ddb.reset();
  sfn.reset();
  sqs.reset();
  ddb.on(GetItemCommand).resolves({});
  ddb.on(UpdateItemCommand).resolves({});
  sqs.on(SendMessageCommand).resolves({ MessageId: 'x' });
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:exec', startDate: new Date() });
  sfn.on(SendTaskFailureCommand).resolves({});
}
