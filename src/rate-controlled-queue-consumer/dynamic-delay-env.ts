/**
 * Names and limits shared by the DynamicDelay construct (which sets them) and the dispatcher's
 * DynamicDelayReader (which reads them). Plain constants: no AWS SDK or aws-cdk-lib imports.
 */

/** Environment variables of a function that reads the dynamic delay. */
export const DynamicDelayEnv = {
  /** AppConfig application id. */
  APPLICATION_ID: 'DYNAMIC_DELAY_APPLICATION_ID',
  /** AppConfig environment id. */
  ENVIRONMENT_ID: 'DYNAMIC_DELAY_ENVIRONMENT_ID',
  /** AppConfig configuration profile id. */
  CONFIGURATION_PROFILE_ID: 'DYNAMIC_DELAY_CONFIGURATION_PROFILE_ID',
  /** Shortest time between two reads of the configuration, in whole seconds (15 or more). */
  POLL_INTERVAL_SECONDS: 'DYNAMIC_DELAY_POLL_INTERVAL_SECONDS',
} as const;

/** Largest `extraDelayMs` accepted: one minute between two vendor requests. */
export const MAX_EXTRA_DELAY_MS = 60_000;

/** AppConfig's floor for `RequiredMinimumPollIntervalInSeconds`. */
export const MIN_POLL_INTERVAL_SECONDS = 15;

/** Poll interval when none is given. */
export const DEFAULT_POLL_INTERVAL_SECONDS = 30;

/** The content deployed when the stack is created: no extra delay. */
export const INITIAL_DYNAMIC_DELAY_CONTENT = '{"extraDelayMs":0}';

/**
 * Smallest rate in force operators may set (`requestsPerSecond` in the configuration): one request
 * in 100 seconds. To stop dispatch, use the pause (README, operator runbook), not a rate of 0.
 */
export const MIN_RATE_IN_FORCE = 0.01;

/**
 * JSON schema (draft-04, what AppConfig validators accept) of the configuration: AppConfig refuses
 * to create a version that does not match it, so a bad value never reaches the dispatcher.
 */
export const DYNAMIC_DELAY_JSON_SCHEMA = {
  $schema: 'http://json-schema.org/draft-04/schema#',
  title: 'cdk-async-external-api dynamic delay',
  description: 'Extra milliseconds added to the interval between two vendor requests. It can only slow dispatch down.',
  type: 'object',
  properties: {
    extraDelayMs: { type: 'integer', minimum: 0, maximum: MAX_EXTRA_DELAY_MS },
  },
  required: ['extraDelayMs'],
  additionalProperties: false,
} as const;

/**
 * The schema with the rate in force: `requestsPerSecond` (optional) from MIN_RATE_IN_FORCE to
 * `maxRequestsPerSecond`, the contract deployed (the ceiling), so AppConfig itself refuses a
 * version above it. Without a ceiling: the delay-only schema.
 */
export function dynamicDelayJsonSchema(maxRequestsPerSecond?: number): object {
  if (maxRequestsPerSecond === undefined) {
    return DYNAMIC_DELAY_JSON_SCHEMA;
  }
  return {
    ...DYNAMIC_DELAY_JSON_SCHEMA,
    description: 'Extra milliseconds added to the interval between two vendor requests (it can only slow), and the rate in force '
      + `(requests per second, at most the contract of ${maxRequestsPerSecond}; absent: the contract).`,
    properties: {
      ...DYNAMIC_DELAY_JSON_SCHEMA.properties,
      requestsPerSecond: { type: 'number', minimum: MIN_RATE_IN_FORCE, maximum: maxRequestsPerSecond },
    },
  };
}
