/**
 * Vendor caller Lambda: invoked by the dispatch workflow (PacingPoint.VENDOR_CALL), sends one
 * request to the vendor through the ThrottledProxy at its pacing slot, SigV4-signed with the
 * function's role. The logic lives in `vendor-call.ts`; this file only wires the real clients,
 * configuration, logger and metrics.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { freePlaceOfEndedJob } from './ended-job';
import { createRequestPreparer } from './prepared-request';
import { freePlaceOfRefusedSubmission, freePlaceOfUnsentSubmission } from './refused-submission';
import { callVendor, createSigV4Signer, loadVendorCallConfig, VendorCallEvent, VendorCallResult } from './vendor-call';
import { dynamicDelayFromEnv } from '../rate-controlled-queue-consumer/dynamic-delay-reader';
import { VendorCallerEnv } from '../shared/env';
import { createHandlerMetrics } from '../shared/handler-metrics';
import { waitingQueuesFromEnv, waitingRoomOf } from '../shared/job-waiting';

const logger = new Logger({ serviceName: 'vendor-caller' });
// Read at cold start: a misconfigured function fails loudly at once, naming the variable.
const config = loadVendorCallConfig(process.env);
const dynamodb = new DynamoDBClient({});
// Lambda puts the role's temporary credentials in the environment; read them at each signature.
const sign = createSigV4Signer(config.region, () => ({
  accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? '',
  secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? '',
  sessionToken: process.env.AWS_SESSION_TOKEN || undefined,
}));
const metrics = createHandlerMetrics(logger);
// Requests are built before their slot and written at it, over kept-alive connections.
const prepare = createRequestPreparer();
// The operators' dynamic delay (AppConfig), when the consumer has one: a fresh slot reserved by a
// late caller is spaced like the dispatcher's.
const dynamicDelay = dynamicDelayFromEnv(process.env, logger);

/** What freeing a job's place needs (jobs in flight, refused-submission.ts). */
// The waiting room: a place freed here wakes one waiting request (shared/job-waiting.ts).
const waitingQueues = waitingQueuesFromEnv(process.env);
const waitingRoom = waitingQueues ? waitingRoomOf(waitingQueues, new SQSClient({})) : undefined;
const placeDeps = () => ({
  dynamodb,
  jobPlacesTableName: process.env[VendorCallerEnv.JOB_PLACES_TABLE_NAME],
  jobPlacesOwner: process.env[VendorCallerEnv.SHARED_STATE_OWNER] || undefined,
  waitingRoom,
  logger,
  metrics,
});

export const handler = async (event: VendorCallEvent, context?: Context): Promise<VendorCallResult> => {
  if (context) {
    logger.addContext(context);
  }
  try {
    const result = await callVendor(event, {
      dynamodb,
      config,
      sign,
      fetch: (url, init) => fetch(url, init),
      prepare,
      logger,
      metrics,
      dynamicDelay,
      // An unsigned HEAD opens DNS + TCP + TLS to the proxy in the pool the prepared requests use;
      // API Gateway refuses it (403, IAM) before any integration, so the vendor never sees it.
      warmUp: async () => {
        await prepare(config.proxyUrl, { method: 'HEAD', headers: {} }).send(AbortSignal.timeout(2000));
      },
    });
    // Jobs in flight: a job the vendor refused (final 4xx) frees its place at once.
    await freePlaceOfRefusedSubmission(event, result, placeDeps());
    // ... and a call that ends a job (callVendorTask's endsJobOf, e.g. a cancel) frees that job's place on a 2xx.
    await freePlaceOfEndedJob(event, result, placeDeps());
    return result;
  } catch (error) {
    // ... and so does one given up before it was sent (VendorQuotaExhausted).
    await freePlaceOfUnsentSubmission(event, error, placeDeps());
    throw error;
  } finally {
    metrics.publish();
  }
};
