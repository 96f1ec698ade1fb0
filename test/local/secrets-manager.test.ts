/**
 * The local Secrets Manager, read with the real SDK client the handlers use.
 */
import {
  DescribeSecretCommand,
  GetSecretValueCommand,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { LocalSecretsManager, startSecretsManager } from '../../local/aws/secrets-manager';
import { LOCAL_ACCOUNT, LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/types';

const VENDOR_ARN = `arn:aws:secretsmanager:${LOCAL_REGION}:${LOCAL_ACCOUNT}:secret:VendorApiKey`;

let secrets: LocalSecretsManager;
let client: SecretsManagerClient;

beforeAll(async () => {
  secrets = await startSecretsManager({ [VENDOR_ARN]: 'key-1', 'webhook/hmac': 'hmac-1' });
  client = new SecretsManagerClient({ endpoint: secrets.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
});

afterAll(async () => {
  client?.destroy();
  await secrets?.stop();
});

describe('GetSecretValue', () => {
  test('looks a secret up by ARN and by name', async () => {
    const byArn = await client.send(new GetSecretValueCommand({ SecretId: VENDOR_ARN }));
    expect(byArn).toMatchObject({ ARN: VENDOR_ARN, Name: 'VendorApiKey', SecretString: 'key-1', VersionStages: ['AWSCURRENT'] });
    expect(byArn.VersionId).toEqual(expect.any(String));
    expect(byArn.CreatedDate).toBeInstanceOf(Date);

    const byName = await client.send(new GetSecretValueCommand({ SecretId: 'VendorApiKey' }));
    expect(byName.SecretString).toBe('key-1');
  });

  test('gives a secret given by name a local ARN', async () => {
    const secret = await client.send(new GetSecretValueCommand({ SecretId: `arn:aws:secretsmanager:${LOCAL_REGION}:${LOCAL_ACCOUNT}:secret:webhook/hmac` }));
    expect(secret).toMatchObject({ Name: 'webhook/hmac', SecretString: 'hmac-1' });
  });

  test('serves a new value and version after set()', async () => {
    const before = await client.send(new GetSecretValueCommand({ SecretId: 'webhook/hmac' }));
    secrets.set('webhook/hmac', 'hmac-2');
    const after = await client.send(new GetSecretValueCommand({ SecretId: 'webhook/hmac' }));
    expect(after.SecretString).toBe('hmac-2');
    expect(after.VersionId).not.toBe(before.VersionId);

    secrets.set('added-later', 'value');
    expect((await client.send(new GetSecretValueCommand({ SecretId: 'added-later' }))).SecretString).toBe('value');
  });

  test('fails as AWS does for an unknown secret or version', async () => {
    const unknown = client.send(new GetSecretValueCommand({ SecretId: 'nope' }));
    await expect(unknown).rejects.toBeInstanceOf(ResourceNotFoundException);
    await expect(unknown).rejects.toMatchObject({ name: 'ResourceNotFoundException', message: "Secrets Manager can't find the specified secret.", $metadata: { httpStatusCode: 400 } });
    await expect(client.send(new GetSecretValueCommand({ SecretId: VENDOR_ARN, VersionStage: 'AWSPREVIOUS' })))
      .rejects.toMatchObject({ name: 'ResourceNotFoundException' });
  });

  test('answers every other operation with an error', async () => {
    await expect(client.send(new DescribeSecretCommand({ SecretId: VENDOR_ARN }))).rejects.toThrow(/serves only GetSecretValue/);
  });
});
