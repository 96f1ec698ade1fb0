import { GetSecretValueCommand, ResourceNotFoundException, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { credentialFromJsonSecret, readSecretField, secretStringOf } from '../../src/throttled-proxy/vendor-secret';

const ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:vendor-AbCdEf';
const KEY = 'k-SECRET-123';

/** The error `f` throws (fails the test when it throws none). */
function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

describe('the vendor secret\'s shape', () => {
  test('the field of a JSON object is the credential', () => {
    expect(credentialFromJsonSecret(JSON.stringify({ apiKey: KEY, other: 1 }), 'apiKey', ARN)).toBe(KEY);
  });

  test.each([
    ['not JSON', KEY, /is not JSON: store a JSON object whose field "apiKey" holds the credential/],
    ['a JSON array', JSON.stringify([KEY]), /is JSON but not an object \(an array\)/],
    ['JSON null', 'null', /is JSON but not an object \(null\)/],
    ['a JSON string', JSON.stringify(KEY), /is JSON but not an object \(a string\)/],
    ['without the field', JSON.stringify({ key: KEY }), /has no non-empty string field "apiKey" \(missing; fields: key\)/],
    ['the field a number', JSON.stringify({ apiKey: 42 }), /has no non-empty string field "apiKey" \(a number; fields: apiKey\)/],
    ['the field an object', JSON.stringify({ apiKey: { value: KEY } }), /\(an object; fields: apiKey\)/],
    ['the field empty', JSON.stringify({ apiKey: '' }), /has no non-empty string field "apiKey" \(a string/],
    ['the field with a line break', JSON.stringify({ apiKey: `${KEY}\r\nX-Injected: 1` }), /contains a line break/],
  ])('%s is VendorCredentialUnusable, named, the secret never quoted', (_name, secretString, message) => {
    const error = errorOf(() => credentialFromJsonSecret(secretString, 'apiKey', ARN));
    expect(error.name).toBe('VendorCredentialUnusable');
    expect(error.message).toContain(ARN);
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain(KEY);
  });

  test('a binary secret (SecretBinary, no SecretString) is VendorCredentialUnusable', () => {
    const error = errorOf(() => secretStringOf({ SecretBinary: new Uint8Array([1, 2]) }, ARN, 'the key as text'));
    expect(error.name).toBe('VendorCredentialUnusable');
    expect(error.message).toBe(`The vendor secret ${ARN} has no SecretString (it is a binary secret, which is not supported): store the key as text`);
  });
});

describe('readSecretField', () => {
  const secretsManager = mockClient(SecretsManagerClient);
  beforeEach(() => secretsManager.reset());

  test('reads the secret every time (a rotated secret applies at once)', async () => {
    secretsManager.on(GetSecretValueCommand, { SecretId: ARN }).resolvesOnce({ SecretString: JSON.stringify({ apiKey: 'old' }) })
      .resolves({ SecretString: JSON.stringify({ apiKey: 'new' }) });
    const client = new SecretsManagerClient({ region: 'us-east-1' });
    const read = (secretId: string) => client.send(new GetSecretValueCommand({ SecretId: secretId }));
    expect(await readSecretField(read, ARN, 'apiKey')).toBe('old');
    expect(await readSecretField(read, ARN, 'apiKey')).toBe('new');
  });

  test('a secret that cannot be read is VendorCredentialReadError (retried through the queue), named', async () => {
    secretsManager.on(GetSecretValueCommand).rejects(new ResourceNotFoundException({ message: 'Secrets Manager can\'t find the specified secret.', $metadata: {} }));
    const client = new SecretsManagerClient({ region: 'us-east-1' });
    await expect(readSecretField((secretId) => client.send(new GetSecretValueCommand({ SecretId: secretId })), ARN, 'apiKey')).rejects.toMatchObject({
      name: 'VendorCredentialReadError',
      message: `Could not read the vendor secret ${ARN}: ResourceNotFoundException: Secrets Manager can't find the specified secret.`,
    });
  });
});
