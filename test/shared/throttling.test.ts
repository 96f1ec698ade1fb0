import { ProvisionedThroughputExceededException, RequestLimitExceeded, ThrottlingException as DynamoDBThrottlingException } from '@aws-sdk/client-dynamodb';
import { KmsThrottlingException, SFNServiceException } from '@aws-sdk/client-sfn';
import { KmsThrottled, RequestThrottled, SQSServiceException } from '@aws-sdk/client-sqs';
import { isThrottlingError } from '../../src/shared/throttling';

const $metadata = {};

describe('isThrottlingError', () => {
  test('the modeled throttling errors of the installed SDK clients (their error.name)', () => {
    expect(isThrottlingError(new ProvisionedThroughputExceededException({ message: 'x', $metadata }))).toBe(true);
    expect(isThrottlingError(new RequestLimitExceeded({ message: 'x', $metadata }))).toBe(true);
    expect(isThrottlingError(new DynamoDBThrottlingException({ message: 'x', $metadata }))).toBe(true);
    expect(isThrottlingError(new RequestThrottled({ message: 'x', $metadata }))).toBe(true);
  });

  test('KMS throttling passed on by an encrypted queue or state machine', () => {
    // Before: a KmsThrottled record kept the callback queue's visibility timeout (180 s).
    expect(isThrottlingError(new KmsThrottled({ message: 'x', $metadata }))).toBe(true);
    expect(isThrottlingError(new KmsThrottlingException({ message: 'x', $metadata }))).toBe(true);
  });

  test('unmodeled errors by their code, and HTTP 429', () => {
    // Step Functions' ThrottlingException is outside its model: the SDK names the error by its code.
    expect(isThrottlingError(new SFNServiceException({ name: 'ThrottlingException', $fault: 'client', $metadata: { httpStatusCode: 400 } }))).toBe(true);
    expect(isThrottlingError(new SQSServiceException({ name: 'SomeNewThrottle', $fault: 'client', $metadata: { httpStatusCode: 429 } }))).toBe(true);
  });

  test('other errors are not throttling', () => {
    expect(isThrottlingError(new SFNServiceException({ name: 'ExecutionLimitExceeded', $fault: 'client', $metadata: { httpStatusCode: 400 } }))).toBe(false);
    expect(isThrottlingError(new Error('socket hang up'))).toBe(false);
    expect(isThrottlingError(undefined)).toBe(false);
  });
});
