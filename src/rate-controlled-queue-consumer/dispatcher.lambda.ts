/**
 * Queue consumer Lambda: fed by the request queue's event source mapping (ReportBatchItemFailures),
 * starts one dispatch workflow execution per request message, paced across all invocations.
 * The logic lives in `dispatch.ts`; this file only wires the real clients, configuration, logger
 * and metrics.
 */
import { randomUUID } from 'crypto';
import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { dispatchBatch, DispatchClients, DispatchConfig, loadConfig } from './dispatch';
import { dynamicDelayFromEnv } from './dynamic-delay-reader';
import { isJobPlacesSweep, sweepJobPlaces, SweepResult } from './job-places-sweep';
import { systemClock } from './pacer';
import { DrainResult, drainLeaseKey, drainQueue, dynamoDbDrainLease, isScheduledTick, loadDrainConfig } from './scheduled-drain';
import { createHandlerMetrics } from '../shared/handler-metrics';
import { keySettingsContractOf, keySettingsFromEnv } from '../shared/key-settings';
import type { ScheduledTickEvent } from '../shared/scheduled-tick';

// Created once per execution environment, reused by every invocation it serves.
const logger = new Logger({ serviceName: 'dispatcher' });
// Read at cold start: a misconfigured function fails loudly at once, naming the variable.
const config: DispatchConfig = loadConfig(process.env);
const clients: DispatchClients = {
  dynamodb: new DynamoDBClient({}),
  // No SDK retries: a retried StartExecution would be issued outside its pacing slot. A failed
  // start returns its message to the queue instead.
  sfn: new SFNClient({ maxAttempts: 1 }),
  sqs: new SQSClient({}),
};
// AppConfig dynamic delay, when the construct enabled it (cached per execution environment).
const dynamicDelay = dynamicDelayFromEnv(process.env, logger);

// Custom metrics (EMF), published once per invocation.
const metrics = createHandlerMetrics(logger);

// Issue 15: each key's limits in force (defaults, the key's overrides in the key settings table,
// capped at the contract), cached per execution environment; absent without per-key limits.
const keyLimits = keySettingsFromEnv(process.env, keySettingsContractOf(config), {
  dynamodb: clients.dynamodb, now: () => Date.now(), logger, metrics,
});

// --- scheduled drain (low-rate mode): begin ---
// Set only when an EventBridge Scheduler schedule triggers the dispatcher (ConsumerTrigger.schedule()).
const drainConfig = loadDrainConfig(process.env);
// --- scheduled drain (low-rate mode): end ---

export const handler = async (event: SQSEvent | ScheduledTickEvent, context?: Context): Promise<SQSBatchResponse | DrainResult | SweepResult> => {
  if (context) {
    logger.addContext(context);
  }
  try {
    // Jobs in flight: the once-a-minute sweep (expired places, waiters missed by the wakes).
    if (isJobPlacesSweep(event)) {
      return await sweepJobPlaces({ dynamodb: clients.dynamodb, sqs: clients.sqs, config, clock: systemClock, logger, metrics });
    }
    // --- scheduled drain (low-rate mode): begin ---
    if (isScheduledTick(event)) {
      if (!drainConfig) {
        throw new Error('received a schedule tick but the dispatcher is not configured for schedule mode (REQUEST_QUEUE_URL is not set)');
      }
      const deps = { clients, config, logger, metrics, dynamicDelay, keyLimits };
      return await drainQueue(event, {
        sqs: clients.sqs,
        config: drainConfig,
        dispatch: (batch) => dispatchBatch(batch, deps),
        // One holder id per invocation: a duplicate tick must not release this one's lease.
        lease: dynamoDbDrainLease(clients.dynamodb, config.pacerTableName, randomUUID(), undefined, drainLeaseKey(config.stateOwner)),
        // Without a context (direct calls in tests), the configured pacing window bounds the tick.
        remainingTimeMs: () => context?.getRemainingTimeInMillis() ?? config.maxPacingWaitMs,
        logger,
      });
    }
    // --- scheduled drain (low-rate mode): end ---
    return await dispatchBatch(event, { clients, config, logger, metrics, dynamicDelay, keyLimits });
  } finally {
    // Once per invocation, also when the batch crashed half-way: what was counted is published.
    metrics.publish();
  }
};
