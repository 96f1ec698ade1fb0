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
  sfn: ['Sfn.ThrottlingException', 'Sfn.SfnException'],
};

/**
 * What `sendTaskHeartbeat` / `sendTaskSuccess` answer for a task that no longer waits (timed out,
 * failed, stopped, or already answered): the waiting workflow has ended.
 */
export const TASK_CLOSED_ERRORS = ['Sfn.TaskTimedOutException', 'Sfn.InvalidTokenException', 'Sfn.TaskDoesNotExistException'];

/**
 * Retries a call of an AWS service (no vendor call involved) on its throttling and transient
 * errors, with exponential backoff and full jitter.
 */
export function retryAwsServiceErrors(task: sfn.TaskStateBase | sfn.CustomState, service: AwsServiceIntegration, maxAttempts = 4): void {
  task.addRetry({
    errors: TRANSIENT_ERRORS[service],
    interval: Duration.seconds(1),
    backoffRate: 2,
    maxAttempts,
    jitterStrategy: sfn.JitterType.FULL,
  });
}
