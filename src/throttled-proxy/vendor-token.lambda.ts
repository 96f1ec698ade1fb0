/**
 * Vendor token Lambda: invoked by the dispatch workflow before each vendor call, returns
 * `{ authorization: '<token_type> <access_token>' }` for OAuth 2.0 client credentials.
 * The logic lives in `vendor-token.ts`; this file only wires the real clients, configuration and logger.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Context } from 'aws-lambda';
import { loadConfig, VendorTokenProvider, VendorTokenResult } from './vendor-token';

// Created once per execution environment: the token and the client secret stay cached across invocations.
const logger = new Logger({ serviceName: 'vendor-token' });
const provider = new VendorTokenProvider(loadConfig(process.env), {
  secretsManager: new SecretsManagerClient({}),
  fetch: (url, init) => fetch(url, init),
  now: () => Date.now(),
  log: (message, attributes) => logger.info(message, attributes),
});

export const handler = async (_event: unknown, context?: Context): Promise<VendorTokenResult> => {
  if (context) {
    logger.addContext(context);
  }
  return { authorization: await provider.getAuthorization() };
};
