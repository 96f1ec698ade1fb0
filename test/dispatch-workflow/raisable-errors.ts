/**
 * Builds, offline, the error names that the Task states of this library's state machines can really
 * raise, per service integration: what a Retry or Catch may name (matching is exact and
 * case-sensitive, so any other name silently never matches). `raisable-errors.json` holds the
 * result; `error-names.test.ts` checks it against this builder and every synthesized definition
 * against it. Regenerate after upgrading an `@aws-sdk/client-*` package:
 *
 *   UPDATE_RAISABLE_ERRORS=1 npx jest test/dispatch-workflow/error-names.test.ts
 *
 * Sources (the naming rules, checked 2026-12):
 * - aws-sdk integrations raise `ServiceName.ErrorName`, both in Pascal case, and always with the
 *   `Exception` suffix, even where the service's own error name has none (S3's BucketAlreadyExists
 *   is `S3.BucketAlreadyExistsException`):
 *   https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html
 * - an error outside the service model is the service's generic exception, e.g. `S3.S3Exception`:
 *   https://docs.aws.amazon.com/step-functions/latest/dg/tutorial-gather-s3-bucket-info-using-aws-sdk-service-integrations.html
 * - the optimized DynamoDB integration's prefix is `DynamoDB` (the aws-sdk one's `DynamoDb`):
 *   https://docs.aws.amazon.com/step-functions/latest/dg/connect-ddb.html
 *   Its names are not documented further: both the service's error code and the code with the
 *   Exception suffix are listed, and the generic `DynamoDB.AmazonDynamoDBException` of AWS's own
 *   examples; the same for the optimized SQS integration (`SQS`, `SQS.AmazonSQSException`).
 * - errors every AWS API may return (throttling, internal failure, authentication):
 *   https://docs.aws.amazon.com/athena/latest/APIReference/CommonErrors.html (the list every
 *   service's API reference repeats) and https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html
 * - the Lambda integration's names (`Lambda.ClientExecutionTimeoutException`, `Lambda.ServiceException`,
 *   `Lambda.AWSLambdaException`, `Lambda.SdkClientException`, `Lambda.TooManyRequestsException`,
 *   `Lambda.Unknown`), besides the function's own error types:
 *   https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html
 * - the `States.*` error names: https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html
 * The exception classes come from the installed `@aws-sdk/client-*` packages (the service models).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The error names, per integration (the part of a Task's Resource after `arn:<partition>:states:::`). */
export interface RaisableErrors {
  /** `aws-sdk:sqs`, `dynamodb`, `lambda:invoke`, ...: the sorted error names a Task of it can raise. */
  readonly integrations: Record<string, string[]>;
  /** The documented `States.*` error names. */
  readonly states: string[];
  /** The `@aws-sdk/client-*` versions the names were read from. */
  readonly sdkVersions: Record<string, string>;
}

/** The errors every AWS API may return (CommonErrors pages of the API references). */
export const COMMON_ERRORS = [
  'AccessDeniedException', 'ExpiredTokenException', 'IncompleteSignature', 'InternalFailure', 'InvalidAction',
  'InvalidClientTokenId', 'InvalidParameterCombination', 'InvalidParameterValue', 'InvalidQueryParameter',
  'MalformedQueryString', 'MissingAction', 'MissingAuthenticationToken', 'MissingParameter', 'NotAuthorized',
  'OptInRequired', 'RequestExpired', 'ServiceUnavailable', 'ThrottlingException', 'ValidationError',
];

/** The documented `States.*` error names. */
export const STATES_ERRORS = [
  'States.ALL', 'States.BranchFailed', 'States.DataLimitExceeded', 'States.ExceedToleratedFailureThreshold',
  'States.HeartbeatTimeout', 'States.Http.Socket', 'States.IntrinsicFailure', 'States.ItemReaderFailed',
  'States.NoChoiceMatched', 'States.ParameterPathFailure', 'States.Permissions', 'States.QueryEvaluationError',
  'States.ResultPathMatchFailure', 'States.ResultWriterFailed', 'States.Runtime', 'States.TaskFailed', 'States.Timeout',
];

/** The Lambda integration's own names for failures around the function (documented). */
const LAMBDA_SERVICE_ERRORS = [
  'Lambda.AWSLambdaException', 'Lambda.ClientExecutionTimeoutException', 'Lambda.SdkClientException', 'Lambda.Unknown',
];

/** The aws-sdk services the workflows call: client package, Step Functions' service name, generic exception. */
const AWS_SDK_SERVICES = {
  'aws-sdk:sqs': { client: 'client-sqs', prefix: 'Sqs' },
  'aws-sdk:sfn': { client: 'client-sfn', prefix: 'Sfn' },
  'aws-sdk:secretsmanager': { client: 'client-secrets-manager', prefix: 'SecretsManager' },
  'aws-sdk:dynamodb': { client: 'client-dynamodb', prefix: 'DynamoDb' },
} as const;

/** The exception classes of an installed `@aws-sdk/client-*` package (its service model's errors). */
export function exceptionClasses(client: string): string[] {
  const dir = path.join(path.dirname(require.resolve(`@aws-sdk/${client}/package.json`)), 'dist-types', 'models');
  const files = fs.readdirSync(dir).filter((f) => f === 'errors.d.ts' || /^models_\d+\.d\.ts$/.test(f));
  const names = new Set<string>();
  for (const file of files) {
    for (const match of fs.readFileSync(path.join(dir, file), 'utf8').matchAll(/export declare class (\w+) extends __BaseException/g)) {
      names.add(match[1]);
    }
  }
  if (names.size === 0) {
    throw new Error(`no exception classes found in @aws-sdk/${client} (${dir}): has the package layout changed?`);
  }
  return [...names].sort();
}

function withExceptionSuffix(name: string): string {
  return name.endsWith('Exception') ? name : `${name}Exception`;
}

function sdkVersion(client: string): string {
  return JSON.parse(fs.readFileSync(require.resolve(`@aws-sdk/${client}/package.json`), 'utf8')).version;
}

/** Builds the list from the installed SDK packages and the documented names above. */
export function buildRaisableErrors(): RaisableErrors {
  const integrations: Record<string, string[]> = {};
  const sdkVersions: Record<string, string> = {};
  for (const [integration, { client, prefix }] of Object.entries(AWS_SDK_SERVICES)) {
    sdkVersions[client] = sdkVersion(client);
    integrations[integration] = [
      ...[...exceptionClasses(client), ...COMMON_ERRORS].map((name) => `${prefix}.${withExceptionSuffix(name)}`),
      `${prefix}.${prefix}Exception`,
    ];
  }
  // Optimized integrations: the service's error code, and the code with the Exception suffix.
  const optimized = (prefix: string, client: string, generic: string) => [
    ...[...exceptionClasses(client), ...COMMON_ERRORS].flatMap((name) => [`${prefix}.${name}`, `${prefix}.${withExceptionSuffix(name)}`]),
    `${prefix}.${generic}`,
  ];
  integrations.dynamodb = optimized('DynamoDB', 'client-dynamodb', 'AmazonDynamoDBException');
  integrations.sqs = optimized('SQS', 'client-sqs', 'AmazonSQSException');
  sdkVersions['client-lambda'] = sdkVersion('client-lambda');
  integrations['lambda:invoke'] = [...exceptionClasses('client-lambda').map((name) => `Lambda.${name}`), ...LAMBDA_SERVICE_ERRORS];
  for (const key of Object.keys(integrations)) {
    integrations[key] = [...new Set(integrations[key])].sort();
  }
  return { integrations, states: [...STATES_ERRORS].sort(), sdkVersions };
}

/** The integration of a Task's Resource, as keyed in `RaisableErrors.integrations`. */
export function integrationOf(resource: string): string {
  const states = /^arn:aws[a-z-]*:states:::(.+)$/.exec(resource)?.[1];
  if (!states) {
    return /^arn:aws[a-z-]*:lambda:/.test(resource) ? 'lambda:invoke' : resource;
  }
  // The service pattern (.sync, .waitForTaskToken) does not change the error names.
  const base = states.replace(/\.(sync(:2)?|waitForTaskToken)$/, '');
  if (base.startsWith('aws-sdk:')) {
    return base.split(':').slice(0, 2).join(':');
  }
  return base.split(':')[0] === 'lambda' ? 'lambda:invoke' : base.split(':')[0];
}
