/**
 * The waiting room of the jobs-in-flight limit, construct side (internal, not exported from the
 * package): the waiting queue and the once-a-minute sweep schedule. The handler side, and why it
 * is built so, is shared/job-waiting.ts.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { JobWaitingEnv } from '../shared/env';
import { addNagSuppressions, addRolePolicyNagSuppressions, wildcardSuppressions } from '../shared/nag';
import { JOB_PLACES_SWEEP_KIND } from '../shared/scheduled-tick';

/** How often the sweep runs: EventBridge Scheduler's shortest rate. */
export const JOB_PLACES_SWEEP_PERIOD = Duration.minutes(1);

export interface JobWaitingRoomResources {
  readonly queue: sqs.Queue;
  readonly sweepSchedule: scheduler.Schedule;
}

/**
 * Creates `JobWaitingQueue` (a stateful resource: keep its id) and the `JobPlacesSweepSchedule`
 * invoking `fn` (the dispatcher) every minute, and lets `fn` move requests to the queue and back.
 */
export function createJobWaitingRoom(
  scope: Construct, fn: lambda.Function, requestQueue: sqs.IQueue, encryptionKey: kms.IKey | undefined,
): JobWaitingRoomResources {
  const queue = new sqs.Queue(scope, 'JobWaitingQueue', {
    encryption: encryptionKey ? sqs.QueueEncryption.KMS : sqs.QueueEncryption.SQS_MANAGED,
    encryptionMasterKey: encryptionKey,
    enforceSSL: true,
    // The longest SQS keeps a message. A request waits at most its workflow's callback timeout; one
    // waiting longer than this would be deleted by SQS (its workflow has timed out long before).
    retentionPeriod: Duration.days(14),
    // No consumer but the wakes and the sweep, which set their own visibility timeout per receive.
    // No dead-letter queue: every receive of a waiter moves it away (a new message), so receive
    // counts mean nothing here.
  });
  addNagSuppressions(queue, [{
    id: 'AwsSolutions-SQS3',
    reason: 'The waiting queue has no consumer that can fail on a message: each receive (a wake or the sweep) moves the message back to the request queue, which has the dead-letter queue; a dead-letter queue here would park waiting requests after N wakes that found no place',
  }]);
  allowWakingWaiters(fn, queue, requestQueue);
  // Requests without a place are sent here by the dispatcher.
  queue.grantSendMessages(fn);

  const role = new iam.Role(scope, 'JobPlacesSweepRole', {
    description: 'Lets EventBridge Scheduler invoke the dispatcher for the jobs-in-flight sweep',
    assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
      conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(scope).account } },
    }),
  });
  const sweepSchedule = new scheduler.Schedule(scope, 'JobPlacesSweepSchedule', {
    description: 'Jobs in flight: drops expired places and wakes waiting requests for free places, every minute',
    schedule: scheduler.ScheduleExpression.rate(JOB_PLACES_SWEEP_PERIOD),
    timeWindow: scheduler.TimeWindow.off(),
    target: new targets.LambdaInvoke(fn, {
      role,
      input: scheduler.ScheduleTargetInput.fromObject({ kind: JOB_PLACES_SWEEP_KIND }),
      // A sweep carries no data: a dropped one loses nothing, the next one does the same work.
      retryAttempts: 0,
      maxEventAge: Duration.seconds(60),
    }),
  });
  addRolePolicyNagSuppressions(role, [{
    id: 'AwsSolutions-IAM5',
    reason: 'lambda:InvokeFunction on the dispatcher and its versions/aliases (<Arn>:*, as Lambda grantInvoke writes it): one function, and the role is assumable only by EventBridge Scheduler of this account',
    appliesTo: [{ regex: '/^Resource::<.*\\.Arn>:\\*$/' }],
  }]);
  return { queue, sweepSchedule };
}

/**
 * Lets `fn` wake waiters: receive and delete on the waiting queue, send to the request queue, and
 * the environment that names both (JobWaitingEnv).
 */
export function allowWakingWaiters(fn: lambda.Function, waitingQueue: sqs.IQueue, requestQueue: sqs.IQueue): void {
  fn.addEnvironment(JobWaitingEnv.WAITING_QUEUE_URL, waitingQueue.queueUrl);
  fn.addEnvironment(JobWaitingEnv.REQUEST_QUEUE_URL, requestQueue.queueUrl);
  // ReceiveMessage, DeleteMessage, ChangeMessageVisibility, GetQueueAttributes (the sweep reads the
  // depth), and kms:Decrypt with a customer-managed key.
  waitingQueue.grantConsumeMessages(fn);
  requestQueue.grantSendMessages(fn);
  // With a customer-managed key, sending grants kms:GenerateDataKey* and kms:ReEncrypt* on it.
  if (waitingQueue.encryptionMasterKey || requestQueue.encryptionMasterKey) {
    addRolePolicyNagSuppressions(fn.role, wildcardSuppressions({ kms: true }));
  }
}
