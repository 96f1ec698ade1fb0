/**
 * What the dispatcher tests of the contract's limits share: a configuration (10 rps, lead 1 s, the
 * request DLQ) and dependencies with a clock that advances when the dispatcher sleeps. The SDK
 * clients are plain ones, for aws-sdk-client-mock to intercept.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
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
