import type { SQSRecord } from 'aws-lambda';

/**
 * A request queue record as the event source mapping delivers it to the dispatcher: first
 * receive, sent at `sentAtMs`, `body` as given (a string) or as JSON.
 */
export function requestRecord(body: unknown, messageId: string, sentAtMs: number): SQSRecord {
  return {
    messageId,
    receiptHandle: `receipt-${messageId}`,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(sentAtMs), SenderId: 's', ApproximateFirstReceiveTimestamp: String(sentAtMs) },
    messageAttributes: {},
    md5OfBody: 'md5',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:requests',
    awsRegion: 'eu-west-1',
  };
}
