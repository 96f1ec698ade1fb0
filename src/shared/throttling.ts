/**
 * Whether an AWS SDK error says the call was throttled (refused for its rate: nothing was done, the
 * same call may succeed shortly). By the error's name (the error code for errors outside a
 * service's model, e.g. Step Functions' ThrottlingException), the SDK's own classification
 * (`$retryable.throttling`), or the HTTP status 429 (Too Many Requests), as the SDK's retry strategy
 * classifies throttling too.
 */
export function isThrottlingError(error: unknown): boolean {
  const e = error as { name?: unknown; $retryable?: { throttling?: boolean }; $metadata?: { httpStatusCode?: number } } | undefined;
  return THROTTLING_ERROR_NAMES.has(String(e?.name)) || e?.$retryable?.throttling === true || e?.$metadata?.httpStatusCode === 429;
}

/**
 * Throttling error codes of the services the handlers call: the common ThrottlingException, DynamoDB's
 * ProvisionedThroughputExceededException and RequestLimitExceeded, SQS' RequestThrottled, and the
 * KMS throttling that a queue encrypted with a KMS key passes on (`encryptionKey`): SQS' KmsThrottled
 * (https://docs.aws.amazon.com/botocore/latest/reference/services/sqs/client/exceptions/KmsThrottled.html)
 * and Step Functions' KmsThrottlingException (a state machine encrypted with a customer managed key).
 * These are the names the installed @aws-sdk clients give their modeled errors (`error.name`).
 */
const THROTTLING_ERROR_NAMES = new Set([
  'ThrottlingException', 'TooManyRequestsException', 'ProvisionedThroughputExceededException', 'RequestLimitExceeded',
  'RequestThrottled', 'RequestThrottledException', 'KmsThrottled', 'KmsThrottlingException',
]);
