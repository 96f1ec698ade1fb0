import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** What a work queue and its dead-letter queue are built from. */
export interface WorkQueueSpec {
  readonly visibilityTimeout: Duration;
  readonly maxReceiveCount: number;
  readonly encryptionKey?: kms.IKey;
  /**
   * MaximumMessageSize of both queues, bytes (SQS allows up to 1 MiB). The dead-letter queue gets
   * the same, so every message of the work queue (and a parked copy with its attributes) fits it.
   *
   * @default - SQS's default, 256 KiB (the attribute is left out of the template)
   */
  readonly maxMessageSizeBytes?: number;
}

/** A work queue with its dead-letter queue and an alarm on the dead-letter queue. */
export interface WorkQueue {
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly deadLetterAlarm: cloudwatch.Alarm;
}

/**
 * Creates `<id>Queue` and `<id>DeadLetterQueue`, both encrypted (SQS-managed keys unless a KMS
 * key is given) and refusing anything but TLS, plus `<id>DeadLetterAlarm`, which fires as soon as
 * one message is parked: a parked message is a request or callback that needs a person.
 */
export function createWorkQueue(scope: Construct, id: string, spec: WorkQueueSpec): WorkQueue {
  const encryption = spec.encryptionKey ? sqs.QueueEncryption.KMS : sqs.QueueEncryption.SQS_MANAGED;
  const deadLetterQueue = new sqs.Queue(scope, `${id}DeadLetterQueue`, {
    encryption,
    encryptionMasterKey: spec.encryptionKey,
    enforceSSL: true,
    // The longest SQS keeps a message: parked messages wait for a person.
    retentionPeriod: Duration.days(14),
    maxMessageSizeBytes: spec.maxMessageSizeBytes,
  });
  const queue = new sqs.Queue(scope, `${id}Queue`, {
    encryption,
    encryptionMasterKey: spec.encryptionKey,
    enforceSSL: true,
    visibilityTimeout: spec.visibilityTimeout,
    retentionPeriod: Duration.days(14),
    maxMessageSizeBytes: spec.maxMessageSizeBytes,
    deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: spec.maxReceiveCount },
  });
  const deadLetterAlarm = new cloudwatch.Alarm(scope, `${id}DeadLetterAlarm`, {
    alarmDescription: `Messages were parked in ${id} dead-letter queue: inspect them, fix the cause, then redrive.`,
    metric: deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: 'Maximum' }),
    threshold: 1,
    evaluationPeriods: 1,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
  });
  return { queue, deadLetterQueue, deadLetterAlarm };
}
