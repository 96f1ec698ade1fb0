import { Duration } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';

/** The AWS services the workflows' own Task states call (the vendor call is classified elsewhere). */
export type AwsServiceIntegration = 'dynamodb' | 'sqs' | 'secretsmanager' | 'sfn';

/**
 * Throttling and transient errors per service, spelled as Step Functions raises them: Retry and
 * Catch match exactly and case-sensitively, so a name spelled otherwise never matches.
 *
 * - aws-sdk integrations (`aws-sdk:sqs`, `aws-sdk:sfn`, `aws-sdk:secretsmanager`) raise
 *   `ServiceName.ErrorName` in Pascal case (`Sqs.`, `Sfn.`, `SecretsManager.`), always with the
 *   `Exception` suffix (SQS's RequestThrottled is `Sqs.RequestThrottledException`); an error outside
 *   the service model is the service's generic exception (`Sqs.SqsException`, `Sfn.SfnException`):
 *   https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html
 *   ThrottlingException is one of the errors common to every AWS API:
 *   https://docs.aws.amazon.com/athena/latest/APIReference/CommonErrors.html
 * - the optimized DynamoDB integration (`dynamodb:updateItem`) uses the prefix `DynamoDB`:
 *   https://docs.aws.amazon.com/step-functions/latest/dg/connect-ddb.html
 *   whether it adds the Exception suffix to RequestLimitExceeded and InternalServerError is not
 *   documented: both spellings are listed.
 *
 * test/dispatch-workflow/error-names.test.ts checks every name of every synthesized definition
 * against what the installed `@aws-sdk/client-*` packages and these rules give.
 */
const TRANSIENT_ERRORS: Record<AwsServiceIntegration, string[]> = {
  dynamodb: [
    'DynamoDB.ProvisionedThroughputExceededException', 'DynamoDB.ThrottlingException',
    'DynamoDB.RequestLimitExceeded', 'DynamoDB.RequestLimitExceededException',
    'DynamoDB.InternalServerError', 'DynamoDB.InternalServerErrorException',
  ],
  sqs: ['Sqs.RequestThrottledException', 'Sqs.KmsThrottledException', 'Sqs.ThrottlingException', 'Sqs.SqsException'],
  secretsmanager: ['SecretsManager.ThrottlingException', 'SecretsManager.InternalServiceErrorException'],
  // KmsThrottlingException: a waiting workflow encrypted with a customer managed key passes KMS
  // throttling on to SendTask* / DescribeExecution (src/shared/throttling.ts names it for the handlers).
  sfn: ['Sfn.ThrottlingException', 'Sfn.KmsThrottlingException', 'Sfn.SfnException'],
};

/**
 * What `sendTaskHeartbeat` / `sendTaskSuccess` answer for a task that no longer waits (timed out,
 * failed, stopped, or already answered): the waiting workflow has ended.
 */
export const TASK_CLOSED_ERRORS = ['Sfn.TaskTimedOutException', 'Sfn.InvalidTokenException', 'Sfn.TaskDoesNotExistException'];

/**
 * How long a throttled DynamoDB call is retried in the workflows: about a minute, as the DynamoDB
 * Developer Guide advises ("Set the maximum number of retries to stop around one minute"):
 * https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html#Programming.Errors.RetryAndBackoff
 * Waits of at most 1, 2, 4, 8, then 10 s (full jitter draws each from zero up to that cap): 65 s
 * in the worst case over 9 retries, about half of it on average. Four retries (at most 15 s, 7.5 s
 * on average) gave up while a table was still throttling: StoreJobId then parked a request whose
 * job the vendor had already accepted (the fault suite's ddb-throttle scenario, seen in CI).
 */
export const DYNAMODB_RETRY = { maxAttempts: 9, maxDelay: Duration.seconds(10) } as const;

/**
 * The Retry of a call of an AWS service (no vendor call involved) on its throttling and transient
 * errors, with exponential backoff and full jitter. DynamoDB calls get their own budget
 * (DYNAMODB_RETRY) unless `maxAttempts` is given. The workflows' worst-case durations
 * (express-budget.ts) are summed from these same objects.
 */
export function awsServiceRetry(service: AwsServiceIntegration, maxAttempts?: number): sfn.RetryProps {
  const dynamodb = service === 'dynamodb' && maxAttempts === undefined;
  return {
    errors: TRANSIENT_ERRORS[service],
    interval: Duration.seconds(1),
    backoffRate: 2,
    maxAttempts: dynamodb ? DYNAMODB_RETRY.maxAttempts : maxAttempts ?? 4,
    ...(dynamodb ? { maxDelay: DYNAMODB_RETRY.maxDelay } : {}),
    jitterStrategy: sfn.JitterType.FULL,
  };
}

/** Adds `awsServiceRetry(service, maxAttempts)` to the task, and returns it. */
export function retryAwsServiceErrors(
  task: sfn.TaskStateBase | sfn.CustomState, service: AwsServiceIntegration, maxAttempts?: number,
): sfn.RetryProps {
  const retry = awsServiceRetry(service, maxAttempts);
  task.addRetry(retry);
  return retry;
}

/**
 * The Retry of a Lambda invoke (vendor caller, credential function) on errors where the function
 * did not run or Lambda failed around it (throttled, service errors): twice, 1 then 2 s at most.
 */
export const LAMBDA_INVOKE_RETRY: sfn.RetryProps = {
  errors: ['Lambda.TooManyRequestsException', 'Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException'],
  interval: Duration.seconds(1),
  backoffRate: 2,
  maxAttempts: 2,
  jitterStrategy: sfn.JitterType.FULL,
};
