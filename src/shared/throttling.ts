/**
 * Whether an AWS SDK error says the call was throttled (refused for its rate: nothing was done, the
 * same call may succeed shortly). By the error's name (the error code for errors outside a
 * service's model, e.g. Step Functions' ThrottlingException) or the SDK's own classification
 * (`$retryable.throttling`).
 */
export function isThrottlingError(error: unknown): boolean {
  const e = error as { name?: unknown; $retryable?: { throttling?: boolean } } | undefined;
  return THROTTLING_ERROR_NAMES.has(String(e?.name)) || e?.$retryable?.throttling === true;
}

/**
 * Throttling error codes of the services the handlers call: the common ThrottlingException, DynamoDB's
 * ProvisionedThroughputExceededException and RequestLimitExceeded, SQS' RequestThrottled.
 */
const THROTTLING_ERROR_NAMES = new Set([
  'ThrottlingException', 'TooManyRequestsException', 'ProvisionedThroughputExceededException', 'RequestLimitExceeded',
  'RequestThrottled', 'RequestThrottledException',
]);
