/**
 * The credential function's per-key mode (issue 15, item 2): each key's credential from its own
 * secret, cached per key for a TTL; a key without a secret fails with VendorCredentialNotFound.
 * The handler (vendor-token.lambda.ts) is driven with its Secrets Manager client mocked.
 */
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import type { SecretValue } from '../../src/throttled-proxy/vendor-secret';
import {
  loadPerKeySecretConfig, MAX_CACHED_KEYS, PerKeyCredentials, secretNameOf,
} from '../../src/throttled-proxy/vendor-secret-per-key';

function sdkError(name: string, message = name): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

/** A Secrets Manager of named string secrets; counts reads. */
function store(secrets: Record<string, SecretValue>) {
  const reads: string[] = [];
  const getSecretValue = async (name: string): Promise<SecretValue> => {
    reads.push(name);
    if (!(name in secrets)) {
      throw sdkError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
    }
    return secrets[name];
  };
  return { reads, getSecretValue };
}

describe('PerKeyCredentials', () => {
  test('each key reads its own secret; a second call within the TTL is served from the cache; after the TTL it reads again', async () => {
    let now = 1_000_000;
    const { reads, getSecretValue } = store({ 'vendor/acme': { SecretString: 'key-acme' }, 'vendor/globex': { SecretString: 'key-globex' } });
    const credentials = new PerKeyCredentials({ secretNamePattern: 'vendor/{key}', cacheTtlMs: 300_000 }, getSecretValue, () => now);

    expect(await credentials.credentialFor('acme')).toEqual({ credential: 'key-acme', cached: false });
    expect(await credentials.credentialFor('globex')).toEqual({ credential: 'key-globex', cached: false });
    expect(await credentials.credentialFor('acme')).toEqual({ credential: 'key-acme', cached: true });
    now += 299_999;
    expect((await credentials.credentialFor('acme')).cached).toBe(true);
    now += 1;
    expect((await credentials.credentialFor('acme')).cached).toBe(false);
    expect(reads).toEqual(['vendor/acme', 'vendor/globex', 'vendor/acme']);
  });

  test('a TTL of 0 reads the secret on every call', async () => {
    const { reads, getSecretValue } = store({ 'vendor/acme': { SecretString: 'key-acme' } });
    const credentials = new PerKeyCredentials({ secretNamePattern: 'vendor/{key}', cacheTtlMs: 0 }, getSecretValue, () => 0);
    await credentials.credentialFor('acme');
    await credentials.credentialFor('acme');
    expect(reads).toHaveLength(2);
    expect(credentials.size).toBe(0);
  });

  test('a key without a secret fails with VendorCredentialNotFound naming the secret (not cached: creating it fixes the next request)', async () => {
    const { reads, getSecretValue } = store({});
    const credentials = new PerKeyCredentials({ secretNamePattern: 'prod/vendor/{key}/api', cacheTtlMs: 300_000 }, getSecretValue, () => 0);
    await expect(credentials.credentialFor('initech')).rejects.toMatchObject({
      name: 'VendorCredentialNotFound',
      message: expect.stringMatching(/key "initech": the secret 'prod\/vendor\/initech\/api' does not exist/),
    });
    await expect(credentials.credentialFor('initech')).rejects.toMatchObject({ name: 'VendorCredentialNotFound' });
    expect(reads).toEqual(['prod/vendor/initech/api', 'prod/vendor/initech/api']);
  });

  test('a secret that cannot be read now (throttled, access denied) is a read error: retried through the queue', async () => {
    const credentials = new PerKeyCredentials({ secretNamePattern: 'vendor/{key}', cacheTtlMs: 1000 },
      async () => { throw sdkError('ThrottlingException', 'Rate exceeded'); }, () => 0);
    await expect(credentials.credentialFor('acme')).rejects.toMatchObject({ name: 'VendorCredentialReadError', message: expect.stringMatching(/vendor\/acme.*ThrottlingException/) });
  });

  test('a key a secret name cannot hold, or no valid key at all, fails with VendorCredentialNotFound without a read', async () => {
    const { reads, getSecretValue } = store({});
    const credentials = new PerKeyCredentials({ secretNamePattern: 'vendor/{key}', cacheTtlMs: 1000 }, getSecretValue, () => 0);
    await expect(credentials.credentialFor('acme#1')).rejects.toMatchObject({ name: 'VendorCredentialNotFound', message: expect.stringMatching(/characters a secret name cannot/) });
    await expect(credentials.credentialFor(undefined)).rejects.toMatchObject({ name: 'VendorCredentialNotFound', message: expect.stringMatching(/has no key/) });
    await expect(credentials.credentialFor('two words')).rejects.toMatchObject({ name: 'VendorCredentialNotFound' });
    expect(reads).toEqual([]);
  });

  test('a JSON secret gives its field; an unusable secret (binary, empty, missing field) is VendorCredentialUnusable and never shows its value', async () => {
    const { getSecretValue } = store({
      'vendor/a': { SecretString: '{"apiKey":"k-a"}' },
      'vendor/b': { SecretString: '{"other":"s3cr3t"}' },
      'vendor/c': { SecretBinary: new Uint8Array([1]) },
    });
    const json = new PerKeyCredentials({ secretNamePattern: 'vendor/{key}', field: 'apiKey', cacheTtlMs: 0 }, getSecretValue, () => 0);
    expect((await json.credentialFor('a')).credential).toBe('k-a');
    const missing = json.credentialFor('b');
    await expect(missing).rejects.toMatchObject({ name: 'VendorCredentialUnusable' });
    await expect(missing).rejects.not.toMatchObject({ message: expect.stringContaining('s3cr3t') });
    await expect(json.credentialFor('c')).rejects.toMatchObject({ name: 'VendorCredentialUnusable' });
    const plain = new PerKeyCredentials({ secretNamePattern: 'vendor/{key}', cacheTtlMs: 0 }, store({ 'vendor/e': { SecretString: '' } }).getSecretValue, () => 0);
    await expect(plain.credentialFor('e')).rejects.toMatchObject({ name: 'VendorCredentialUnusable', message: expect.stringMatching(/empty/) });
  });

  test(`at most ${MAX_CACHED_KEYS} keys are cached: the least recently read goes first`, async () => {
    const reads: string[] = [];
    const credentials = new PerKeyCredentials({ secretNamePattern: 'v/{key}', cacheTtlMs: 60_000 }, async (name) => {
      reads.push(name);
      return { SecretString: `c-${name}` };
    }, () => 0);
    for (let i = 0; i < MAX_CACHED_KEYS; i++) {
      await credentials.credentialFor(`k${i}`);
    }
    await credentials.credentialFor('k0'); // k0 read again recently: k1 is now the oldest
    await credentials.credentialFor('new');
    expect(credentials.size).toBe(MAX_CACHED_KEYS);
    expect((await credentials.credentialFor('k0')).cached).toBe(true);
    expect((await credentials.credentialFor('k1')).cached).toBe(false);
  });
});

describe('per-key configuration', () => {
  test('reads the pattern, field and TTL; absent pattern: not the per-key mode', () => {
    expect(loadPerKeySecretConfig({})).toBeUndefined();
    expect(loadPerKeySecretConfig({ SECRET_NAME_PATTERN: 'vendor/{key}', CACHE_TTL_SECONDS: '60', SECRET_FIELD: 'apiKey' }))
      .toEqual({ secretNamePattern: 'vendor/{key}', cacheTtlMs: 60_000, field: 'apiKey' });
    expect(() => loadPerKeySecretConfig({ SECRET_NAME_PATTERN: 'vendor' })).toThrow(/must hold \{key\} once/);
    expect(() => loadPerKeySecretConfig({ SECRET_NAME_PATTERN: 'v/{key}', CACHE_TTL_SECONDS: '-1' })).toThrow(/CACHE_TTL_SECONDS/);
    expect(secretNameOf('vendor/{key}', 'a.b@c')).toBe('vendor/a.b@c');
    expect(secretNameOf('vendor/{key}', 'a!b')).toBeUndefined();
  });
});

describe('the credential function (vendor-token.lambda.ts) in the per-key mode', () => {
  const sm = mockClient(SecretsManagerClient);
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
    sm.reset();
  });

  test('answers { credential } for the event\'s key, reading each key\'s secret once per TTL', async () => {
    process.env.SECRET_NAME_PATTERN = 'vendor/{key}';
    process.env.CACHE_TTL_SECONDS = '300';
    process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    sm.on(GetSecretValueCommand, { SecretId: 'vendor/acme' }).resolves({ SecretString: 'key-acme' })
      .on(GetSecretValueCommand, { SecretId: 'vendor/globex' }).resolves({ SecretString: 'key-globex' });
    process.env.AWS_REGION = 'eu-west-1';
    // Loaded here, once in this file, after its environment is set (the handler reads it at load).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const handler: (event: unknown) => Promise<unknown> = require('../../src/throttled-proxy/vendor-token.lambda').handler;
    expect(await handler({ key: 'acme' })).toEqual({ credential: 'key-acme' });
    expect(await handler({ key: 'globex' })).toEqual({ credential: 'key-globex' });
    expect(await handler({ key: 'acme' })).toEqual({ credential: 'key-acme' });
    expect(sm.commandCalls(GetSecretValueCommand).map((c) => c.args[0].input.SecretId)).toEqual(['vendor/acme', 'vendor/globex']);
    sm.on(GetSecretValueCommand, { SecretId: 'vendor/initech' }).rejects(sdkError('ResourceNotFoundException'));
    await expect(handler({ key: 'initech' })).rejects.toMatchObject({ name: 'VendorCredentialNotFound' });
  });
});
