/**
 * Vendor credential Lambda, invoked by the workflows before each vendor call. Three modes, set by
 * the construct through the environment:
 * - a secret per request key (`fromSecretHeaderPerKey`, SECRET_NAME_PATTERN set): the event is
 *   `{ key }`, returns `{ credential }` from the key's secret, cached per key
 *   (`vendor-secret-per-key.ts`);
 * - OAuth 2.0 client credentials: returns `{ authorization: '<token_type> <access_token>' }`
 *   (`vendor-token.ts`);
 * - a JSON secret (`fromSecretHeader` with `jsonField`, SECRET_FIELD set): returns
 *   `{ credential: '<the field's value>' }`, the secret's shape checked (`vendor-secret.ts`).
 * This file only wires the real clients, configuration and logger.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Context } from 'aws-lambda';
import { readSecretField, VendorSecretEnv } from './vendor-secret';
import { loadPerKeySecretConfig, PerKeyCredentials } from './vendor-secret-per-key';
import { loadConfig, VendorTokenProvider, VendorTokenResult } from './vendor-token';

// Created once per execution environment: the token and the client secret stay cached across invocations.
const logger = new Logger({ serviceName: 'vendor-token' });
const secretsManager = new SecretsManagerClient({});
const perKeyConfig = loadPerKeySecretConfig(process.env);
const perKey = perKeyConfig
  ? new PerKeyCredentials(perKeyConfig, (secretId) => secretsManager.send(new GetSecretValueCommand({ SecretId: secretId })), () => Date.now())
  : undefined;
const secretField = perKey ? undefined : process.env[VendorSecretEnv.SECRET_FIELD];
// Read at cold start, like the OAuth configuration: a missing variable fails there, named.
const secretArn = secretField ? requiredEnv(VendorSecretEnv.SECRET_ARN) : undefined;
const provider = secretField || perKey ? undefined : new VendorTokenProvider(loadConfig(process.env), {
  secretsManager,
  fetch: (url, init) => fetch(url, init),
  now: () => Date.now(),
  log: (message, attributes) => logger.info(message, attributes),
});

/** What the function returns in the JSON secret mode. */
export interface VendorSecretResult {
  /** The credential, without the prefix (the workflow adds it). */
  readonly credential: string;
}

export const handler = async (event: unknown, context?: Context): Promise<VendorTokenResult | VendorSecretResult> => {
  if (context) {
    logger.addContext(context);
  }
  if (perKey) {
    const key = (event as { key?: unknown } | null)?.key;
    const { credential, cached } = await perKey.credentialFor(key);
    logger.info('vendor credential of a key', { key, cached, cachedKeys: perKey.size });
    return { credential };
  }
  if (secretField) {
    const getSecretValue = (secretId: string) => secretsManager.send(new GetSecretValueCommand({ SecretId: secretId }));
    return { credential: await readSecretField(getSecretValue, secretArn!, secretField) };
  }
  return { authorization: await provider!.getAuthorization() };
};

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`Environment variable ${name} is not set`);
  }
  return value;
}
