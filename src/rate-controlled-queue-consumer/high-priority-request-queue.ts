/**
 * Issue 15: the high-priority request queue's resources (design docs/design/per-key-limits.md,
 * section 4; the dispatcher's side: high-priority-queue.ts). Created on demand, when a task can
 * send a high-priority request, so a consumer without priorities deploys exactly what it did.
 *
 * - The queue and its own dead-letter queue (redrive at the request queue's `maxReceiveCount`),
 *   encrypted, retained and alarmed like the request queue (shared/queues.ts). New ids
 *   (`HighPriorityRequestQueue`, ...): the request queue's logical id does not change.
 * - A second SQS event source mapping on the same dispatcher function: Lambda polls each mapped
 *   queue with its own pollers, so a high request never waits in the request queue's backlog
 *   (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html). Batches of at most 10 and no
 *   batching window (a window would add up to its length to each high request's wait); maximum
 *   concurrency 2, the lowest Lambda allows
 *   (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-lambda-eventsourcemapping-scalingconfig.html):
 *   high requests are a small share of the contract, and each high batch is done within about
 *   `lead + horizon`. Each mapping has its own maximum concurrency, and the function's reserved
 *   concurrency must cover their sum, else Lambda throttles
 *   (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html): a warning says so.
 * - The dispatcher's HIGH_PRIORITY_QUEUE_ARN: its request-queue batches then reserve slots only a
 *   short horizon ahead, so a high batch finds an early slot (high-priority-queue.ts).
 */
import { Annotations, Duration } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { Construct } from 'constructs';
import { ConsumerEnv } from '../shared/env';
import { createWorkQueue, WorkQueue } from '../shared/queues';

/** Batches of the high-priority queue's event source mapping: at most 10, so that no batching window is required. */
export const HIGH_PRIORITY_BATCH_SIZE = 10;
/** The high-priority queue's event source mapping maximum concurrency: the lowest Lambda allows. */
export const HIGH_PRIORITY_MAX_CONCURRENCY = 2;

/** What the high-priority queue copies from the request queue. */
export interface HighPriorityQueueSpec {
  readonly visibilityTimeout: Duration;
  readonly maxReceiveCount: number;
  readonly encryptionKey?: kms.IKey;
  /** The dispatcher function, and what its event source mappings invoke (the function or its alias). */
  readonly dispatcher: lambda.Function;
  readonly target: lambda.IFunction;
  /** The request queue's batch size (the high queue's is at most 10). */
  readonly batchSize: number;
  /** The request queue mapping's maximum concurrency and the function's reserved concurrency, for the warning. */
  readonly maxConcurrency: number;
  readonly reservedConcurrentExecutions?: number;
}

/** Creates the high-priority request queue, its DLQ and alarm, and maps it to the dispatcher. */
export function createHighPriorityRequestQueue(scope: Construct, spec: HighPriorityQueueSpec): WorkQueue {
  const work = createWorkQueue(scope, 'HighPriorityRequest', {
    visibilityTimeout: spec.visibilityTimeout,
    maxReceiveCount: spec.maxReceiveCount,
    encryptionKey: spec.encryptionKey,
  });
  spec.target.addEventSource(new SqsEventSource(work.queue, {
    batchSize: Math.min(HIGH_PRIORITY_BATCH_SIZE, spec.batchSize),
    maxConcurrency: HIGH_PRIORITY_MAX_CONCURRENCY,
    reportBatchItemFailures: true,
  }));
  spec.dispatcher.addEnvironment(ConsumerEnv.HIGH_PRIORITY_QUEUE_ARN, work.queue.queueArn);
  const both = spec.maxConcurrency + HIGH_PRIORITY_MAX_CONCURRENCY;
  if (spec.reservedConcurrentExecutions !== undefined && spec.reservedConcurrentExecutions < both) {
    Annotations.of(scope).addWarningV2('cdk-async-external-api:highPriorityReservedConcurrency',
      `reservedConcurrentExecutions (${spec.reservedConcurrentExecutions}) is below the two mappings' maximum concurrency (${spec.maxConcurrency} + ${HIGH_PRIORITY_MAX_CONCURRENCY} for the high-priority queue): Lambda throttles the extra invocations and high requests can wait. Raise it to ${both} or leave it unset`);
  }
  // Postponing a high message that got no slot re-sends it to its own queue (dispatch.ts postponeAll).
  work.queue.grantSendMessages(spec.dispatcher);
  return work;
}
