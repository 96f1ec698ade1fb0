/**
 * Issue 15: which queue a task's request message goes to (design docs/design/per-key-limits.md,
 * section 4). A high-priority request goes to the consumer's high-priority request queue, which the
 * dispatcher serves ahead of the request queue's backlog (rate-controlled-queue-consumer/
 * high-priority-queue.ts); everything else to the request queue, as before.
 *
 * - No priority, NORMAL or LOW: the request queue; no high queue is created for them.
 * - HIGH: the high-priority queue (created with the first task that can send there).
 * - Read at run time (`Priority.fromJsonPath` / `fromJsonata`): the task's QueueUrl is an
 *   expression choosing between the two queues (priority.ts), so the task stays one state with the
 *   same edges (no Choice state: the methods return the Task state users chain and catch on). Its
 *   role may send to both queues.
 *
 * With `ConsumerTrigger.schedule()` there is no high-priority queue: every request goes to the
 * request queue and priorities order each drained batch.
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { Priority } from './priority';
import { RateControlledQueueConsumer } from '../rate-controlled-queue-consumer/rate-controlled-queue-consumer';

/** Where a task sends: the queue its QueueUrl names (possibly an expression), and a second queue it may send to. */
export interface RequestQueueRoute {
  readonly queue: sqs.IQueue;
  readonly alsoSendsTo?: sqs.IQueue;
}

/**
 * The route of a task with `priority` in `language`. `scope` holds the imported queue a run-time
 * route needs, under `id` (unique in `scope`; the import creates no resource).
 */
export function requestQueueRoute(
  scope: Construct, id: string, consumer: RateControlledQueueConsumer, priority: Priority | undefined, language: 'jsonPath' | 'jsonata', where: string,
): RequestQueueRoute {
  const route = priority?._highQueueRoute() ?? 'never';
  // A priority in the other query language is refused (naming the task) before anything is created.
  if (route === 'runtime') {
    void (language === 'jsonPath' ? priority!._jsonPathField(where) : priority!._jsonataField(where));
  }
  const high = route === 'never' ? undefined : consumer.enableHighPriorityQueue();
  if (high === undefined) {
    return { queue: consumer.queue };
  }
  if (route === 'always') {
    return { queue: high };
  }
  const queueUrl = language === 'jsonPath'
    ? priority!._jsonPathQueueUrl(where, high.queueUrl, consumer.queue.queueUrl)
    : priority!._jsonataQueueUrl(where, high.queueUrl, consumer.queue.queueUrl);
  // The request queue under a QueueUrl chosen at run time (the task's policy names the request
  // queue and its key; the high queue is added by `sendRequestMessage`). Both share the key.
  const queue = sqs.Queue.fromQueueAttributes(scope, id, {
    queueArn: consumer.queue.queueArn,
    queueUrl,
    keyArn: consumer.queue.encryptionMasterKey?.keyArn,
  });
  return { queue, alsoSendsTo: high };
}

/** The task sending a request message on `route` (its role may send to the route's second queue too). */
export function sendRequestMessage(scope: Construct, id: string, props: tasks.SqsSendMessageProps, route: RequestQueueRoute): tasks.SqsSendMessage {
  return new RoutedSqsSendMessage(scope, id, { ...props, queue: route.queue }, route.alsoSendsTo);
}

/** SqsSendMessage whose role may also send to a second queue (the other side of a run-time QueueUrl). */
class RoutedSqsSendMessage extends tasks.SqsSendMessage {
  constructor(scope: Construct, id: string, props: tasks.SqsSendMessageProps, alsoSendsTo?: sqs.IQueue) {
    super(scope, id, props);
    if (alsoSendsTo) {
      this.taskPolicies?.push(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [alsoSendsTo.queueArn] }));
    }
  }
}
