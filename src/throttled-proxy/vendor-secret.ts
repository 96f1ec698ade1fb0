/**
 * Shape checks of the vendor secret, for the proxy's credential function (`fromSecretHeader` with
 * `jsonField`) and the OAuth token function.
 *
 * Why in code: a workflow that parses the secret itself (`States.StringToJson`) or reads a field
 * that is not there fails with `States.Runtime`, which no Catch handles
 * (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html#states-runtime-error):
 * nothing is parked and the waiting workflow waits for its timeout. Thrown here, the error is a
 * Lambda error the workflow catches and parks the request with.
 *
 * Neither the secret nor any part of it ever appears in an error message: errors end up in Step
 * Functions error causes and in the request dead-letter queue.
 */
// Types only: the caller passes the Secrets Manager read in (vendor-token.lambda.ts wires the SDK).
import type { GetSecretValueCommandOutput } from '@aws-sdk/client-secrets-manager';
import { VENDOR_CREDENTIAL_UNUSABLE } from '../shared/messages';

/** The secret does not have the shape the credentials expect: retrying cannot help. */
export class VendorCredentialUnusableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = VENDOR_CREDENTIAL_UNUSABLE;
  }
}

/** The secret could not be read (not found, access denied, throttled): may succeed later. */
export class VendorCredentialReadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VendorCredentialReadError';
  }
}

/** Environment variables of the credential function (the construct sets them). */
export const VendorSecretEnv = {
  SECRET_ARN: 'SECRET_ARN',
  /** The JSON field that holds the credential. */
  SECRET_FIELD: 'SECRET_FIELD',
} as const;

/**
 * The secret's text. GetSecretValue answers `SecretBinary` instead of `SecretString` for a secret
 * stored as binary
 * (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html).
 */
export function secretStringOf(output: SecretValue, arn: string, expected: string): string {
  if (typeof output.SecretString !== 'string') {
    throw new VendorCredentialUnusableError(`The vendor secret ${arn} has no SecretString`
      + `${output.SecretBinary !== undefined ? ' (it is a binary secret, which is not supported)' : ''}: store ${expected}`);
  }
  return output.SecretString;
}

/** The secret's text parsed as a JSON object. */
export function secretJsonObject(secretString: string, arn: string, expected: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(secretString);
  } catch {
    // JSON.parse's message quotes the input: never pass it on.
    throw new VendorCredentialUnusableError(`The vendor secret ${arn} is not JSON: store ${expected}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new VendorCredentialUnusableError(`The vendor secret ${arn} is JSON but not an object (${describeType(parsed)}): store ${expected}`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * The credential in field `field` of a JSON secret: a non-empty string without line breaks (it
 * becomes a header value).
 */
export function credentialFromJsonSecret(secretString: string, field: string, arn: string): string {
  const expected = `a JSON object whose field "${field}" holds the credential, e.g. {"${field}": "..."}`;
  const fields = secretJsonObject(secretString, arn, expected);
  const value = fields[field];
  if (typeof value !== 'string' || value === '') {
    throw new VendorCredentialUnusableError(`The vendor secret ${arn} has no non-empty string field "${field}"`
      + ` (${field in fields ? describeType(value) : 'missing'}; fields: ${Object.keys(fields).join(', ') || 'none'}): store ${expected}`);
  }
  if (/[\r\n]/.test(value)) {
    throw new VendorCredentialUnusableError(`The vendor secret ${arn} field "${field}" contains a line break, which a header value cannot hold`);
  }
  return value;
}

/** What GetSecretValue answers, as far as the shape checks need it. */
export type SecretValue = Pick<GetSecretValueCommandOutput, 'SecretString' | 'SecretBinary'>;

/**
 * Reads the secret with `getSecretValue` (GetSecretValue) and returns the credential in its JSON
 * field `field`. No cache: a rotated secret applies to the next request, as when the workflow
 * reads a plain-text secret itself.
 */
export async function readSecretField(getSecretValue: (secretId: string) => Promise<SecretValue>, arn: string, field: string): Promise<string> {
  let output: SecretValue;
  try {
    output = await getSecretValue(arn);
  } catch (e) {
    const error = e as Error;
    throw new VendorCredentialReadError(`Could not read the vendor secret ${arn}: ${error.name}: ${error.message}`);
  }
  return credentialFromJsonSecret(secretStringOf(output, arn, `a JSON object with the field "${field}"`), field, arn);
}

function describeType(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  if (Array.isArray(value)) {
    return 'an array';
  }
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
