/**
 * Callback processor: reads the webhook's callback queue and resumes the waiting workflows.
 * A thin adapter: the logic is in `callback-processing.ts`.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { CallbackClients, CallbackDeps, loadConfig, processCallbackRecord } from './callback-processing';
import { CachedSecret } from './signature-verification';
import { CallbackEnv } from '../shared/env';
import { createHandlerMetrics } from '../shared/handler-metrics';

// Created once per execution environment and reused by every invocation.
const logger = new Logger({ serviceName: 'callback-processor' });
const clients: CallbackClients = {
  dynamodb: new DynamoDBClient({}),
  sfn: new SFNClient({}),
  sqs: new SQSClient({}),
};
// Read at load time so a misconfigured function fails at init, naming the missing variable.
const config = loadConfig(process.env);
const processor = new BatchProcessor(EventType.SQS);

// Custom metrics (EMF), published once per invocation.
const metrics = createHandlerMetrics(logger);
// The vendor's signing secret, when signatures are verified: cached, read again on a mismatch.
const secretArn = process.env[CallbackEnv.WEBHOOK_SIGNATURE_SECRET_ARN];
if (config.signature && !secretArn) {
  throw new Error(`Environment variable ${CallbackEnv.WEBHOOK_SIGNATURE_SECRET_ARN} is required when ${CallbackEnv.WEBHOOK_SIGNATURE} is set`);
}
const secretsManager = secretArn ? new SecretsManagerClient({}) : undefined;
const signatureSecret = secretArn ? new CachedSecret({
  read: async () => {
    const out = await secretsManager!.send(new GetSecretValueCommand({ SecretId: secretArn }));
    if (typeof out.SecretString !== 'string' || out.SecretString === '') {
      throw new Error(`The signing secret ${secretArn} has no SecretString`);
    }
    return out.SecretString;
  },
}) : undefined;
// Issue 15: each key's signing secret, read by name and cached per key (at most 1,000 keys; the
// least recently used is dropped first), when the webhook signs per key.
const keySecretPattern = process.env[CallbackEnv.WEBHOOK_SIGNATURE_SECRET_NAME_PATTERN];
const secretsManagerForKeys = keySecretPattern ? secretsManager ?? new SecretsManagerClient({}) : undefined;
const keySecrets = new Map<string, CachedSecret>();
const keySignatureSecret = keySecretPattern ? (key: string): CachedSecret => {
  let cached = keySecrets.get(key);
  if (cached) {
    keySecrets.delete(key);
  } else {
    const secretId = keySecretPattern.replace('{key}', key);
    cached = new CachedSecret({
      read: async () => {
        // ResourceNotFoundException passes through: the processor refuses the callback, naming the key.
        const out = await secretsManagerForKeys!.send(new GetSecretValueCommand({ SecretId: secretId }));
        if (typeof out.SecretString !== 'string' || out.SecretString === '') {
          throw new Error(`The signing secret ${secretId} has no SecretString`);
        }
        return out.SecretString;
      },
    });
    if (keySecrets.size >= 1000) {
      keySecrets.delete(keySecrets.keys().next().value as string);
    }
  }
  keySecrets.set(key, cached);
  return cached;
} : undefined;
const deps: CallbackDeps = { metrics, signatureSecret, ...(keySignatureSecret ? { keySignatureSecret } : {}) };

const recordHandler = (record: SQSRecord): Promise<void> => processCallbackRecord(record, clients, config, logger, deps);

/**
 * SQS event source handler. Needs `reportBatchItemFailures` on the event source mapping: only the
 * records that threw are returned to the queue, the others are deleted.
 */
export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  logger.addContext(context);
  try {
    return await processPartialResponse(event, recordHandler, processor, {
      context,
      // One record at a time: the record's log keys (jobId, requestId) live on the shared logger.
      processInParallel: false,
      // A batch where every record must be retried (e.g. early callbacks) is an expected outcome,
      // not a function error: report the failures instead of throwing, so the Lambda error metric
      // only counts real errors. SQS treats both the same way.
      throwOnFullBatchFailure: false,
    });
  } finally {
    // Once per invocation, also when the batch crashed half-way: what was counted is published.
    metrics.publish();
  }
};
