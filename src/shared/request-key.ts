/**
 * The key of a request (issue 15): which account (customer, tenant) of the vendor a request belongs
 * to. Shared by the construct (synth-time checks of literal keys), the queue consumer (run-time
 * checks of the message) and the credential function (which secret to read). Plain code only: no
 * AWS SDK or aws-cdk-lib imports.
 *
 * A key is what an SQS `MessageGroupId` may be: 1 to 128 characters, each a letter, a digit or
 * ASCII punctuation (``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~``), so the key can also name the request's
 * group on the request queue (SQS fair queues) and can go into a secret's name pattern:
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html
 * (`MessageGroupId`).
 */

/** Longest key (`MessageGroupId` allows 128 characters). */
export const MAX_REQUEST_KEY_LENGTH = 128;

/** A key: 1-128 printable ASCII characters without space (letters, digits, punctuation). */
export const REQUEST_KEY_PATTERN = /^[\x21-\x7E]{1,128}$/;

/**
 * The error a waiting task fails with when its request's key is missing (the task declares a key,
 * or the vendor credential is per key) or is not a valid key. Nothing reaches the vendor.
 */
export const INVALID_REQUEST_KEY = 'InvalidRequestKey';

/** Why `key` is not a valid key, or undefined when it is. */
export function requestKeyProblem(key: unknown): string | undefined {
  if (key === undefined || key === null) {
    return 'the request has no key (the task\'s key expression found none in its input)';
  }
  if (typeof key !== 'string') {
    return `the key must be a string (given ${describe(key)}); in JSONPath write sfn.JsonPath.format('{}', sfn.JsonPath.stringAt('$.customerId')) for a number, in JSONata '{% $string($states.input.customerId) %}'`;
  }
  if (!REQUEST_KEY_PATTERN.test(key)) {
    const shown = JSON.stringify(key.length > 140 ? `${key.slice(0, 140)}...` : key);
    return `the key must be 1 to ${MAX_REQUEST_KEY_LENGTH} characters, each a letter, a digit or ASCII punctuation (what an SQS MessageGroupId allows; given ${shown}, ${key.length} characters)`;
  }
  return undefined;
}

function describe(value: unknown): string {
  if (Array.isArray(value)) {
    return 'an array';
  }
  return typeof value === 'object' ? 'an object' : `the ${typeof value} ${JSON.stringify(value)}`;
}
