/**
 * Public list prices the cost model uses, per region.
 *
 * Compiled in 2026-11 from the AWS pricing pages named on each line (the tool does not fetch
 * them: check the pages before you budget). On-demand, first pricing tier (the highest unit
 * price where a service has volume tiers), free tiers excluded, USD, taxes excluded.
 */

/** When the prices below were compiled. */
export const PRICE_DATE = '2026-11';

/** How the prices were obtained, printed with every result. */
export const PRICE_STATEMENT = `list prices as published by AWS on aws.amazon.com/<service>/pricing, compiled ${PRICE_DATE} `
  + '(not fetched live); on demand, first volume tier, free tiers excluded, USD before tax';

/** Prices charged per unit of usage (per request, per GB-second, ...). */
export type UsagePriceKey =
  | 'sfnStandardTransition'
  | 'sfnExpressRequest'
  | 'sfnExpressGbSecond'
  | 'lambdaRequest'
  | 'lambdaGbSecondX86'
  | 'lambdaGbSecondArm'
  | 'sqsRequest'
  | 'apiGatewayRestRequest'
  | 'dynamodbWriteRequestUnit'
  | 'dynamodbReadRequestUnit'
  | 'logsIngestedGb'
  | 'contributorInsightsEvent'
  | 'secretsManagerApiCall'
  | 'xrayTraceRecorded'
  | 'kmsRequest'
  | 'schedulerInvocation';

/** Prices charged per month whatever the traffic (per alarm, per secret, per GB stored, ...). */
export type MonthlyPriceKey =
  | 'cloudwatchAlarmMonth'
  | 'cloudwatchDashboardMonth'
  | 'cloudwatchMetricMonth'
  | 'contributorInsightsRuleMonth'
  | 'secretsManagerSecretMonth'
  | 'kmsKeyMonth'
  | 'dynamodbStorageGbMonth';

export type PriceKey = UsagePriceKey | MonthlyPriceKey;

/** One line of the price table. */
export interface Price {
  /** USD per single unit (per request, per GB-second, per GB, per month). */
  readonly usd: number;
  /** The unit `usd` is for. */
  readonly unit: string;
  /** The price as the pricing page states it. */
  readonly listed: string;
  /** The pricing page. */
  readonly source: string;
  /** Anything a reader should know about this line. */
  readonly note?: string;
}

/** Every price of one region. */
export interface RegionPrices {
  readonly region: string;
  readonly location: string;
  readonly prices: Readonly<Record<PriceKey, Price>>;
}

const SFN = 'https://aws.amazon.com/step-functions/pricing/';
const LAMBDA = 'https://aws.amazon.com/lambda/pricing/';
const SQS = 'https://aws.amazon.com/sqs/pricing/';
const APIGW = 'https://aws.amazon.com/api-gateway/pricing/';
const DDB = 'https://aws.amazon.com/dynamodb/pricing/on-demand/';
const CW = 'https://aws.amazon.com/cloudwatch/pricing/';
const SM = 'https://aws.amazon.com/secrets-manager/pricing/';
const XRAY = 'https://aws.amazon.com/xray/pricing/';
const KMS = 'https://aws.amazon.com/kms/pricing/';
const EVENTBRIDGE = 'https://aws.amazon.com/eventbridge/pricing/';

const MILLION = 1_000_000;

/** The prices that are the same in every region listed here. */
function common(): Record<Exclude<PriceKey, 'dynamodbWriteRequestUnit' | 'dynamodbReadRequestUnit' | 'logsIngestedGb' | 'dynamodbStorageGbMonth'>, Price> {
  return {
    sfnStandardTransition: {
      usd: 0.025 / 1000,
      unit: 'state transition',
      listed: '$0.025 per 1,000 state transitions',
      source: SFN,
      note: 'every state entered counts, retries included; the 4,000 free transitions a month are excluded',
    },
    sfnExpressRequest: { usd: 1.0 / MILLION, unit: 'Express execution', listed: '$1.00 per 1M requests', source: SFN },
    sfnExpressGbSecond: {
      usd: 0.06 / 3600,
      unit: 'GB-second',
      listed: '$0.00001667 per GB-second ($0.06 per GB-hour, first 1,000 GB-hours a month)',
      source: SFN,
      note: 'duration rounded up to the next 100 ms, memory billed in 64 MB chunks (50 MB + definition + execution data); '
        + 'later tiers are $0.03 and $0.01642 per GB-hour',
    },
    lambdaRequest: { usd: 0.2 / MILLION, unit: 'invocation', listed: '$0.20 per 1M requests', source: LAMBDA },
    lambdaGbSecondX86: {
      usd: 0.0000166667, unit: 'GB-second', listed: '$0.0000166667 per GB-second (x86, first 6 billion GB-seconds a month)', source: LAMBDA,
    },
    lambdaGbSecondArm: {
      usd: 0.0000133334, unit: 'GB-second', listed: '$0.0000133334 per GB-second (Arm, first 7.5 billion GB-seconds a month)', source: LAMBDA,
    },
    sqsRequest: {
      usd: 0.4 / MILLION,
      unit: 'request (64 KB chunk)',
      listed: '$0.40 per 1M requests (standard queue)',
      source: SQS,
      note: 'every 64 KB chunk of a request is billed as one request; a batch call of up to 10 messages is one request',
    },
    apiGatewayRestRequest: {
      usd: 3.5 / MILLION,
      unit: 'API call',
      listed: '$3.50 per 1M REST API calls (first 333 million a month)',
      source: APIGW,
      note: 'later tiers are $2.80, $2.38 and $1.51 per million',
    },
    contributorInsightsEvent: {
      usd: 0.02 / MILLION,
      unit: 'log event matched',
      listed: '$0.02 per million log events that match a rule (Contributor Insights for CloudWatch Logs)',
      source: CW,
      note: 'the us-east-1 list price, assumed in the other regions listed here: check the page',
    },
    secretsManagerApiCall: { usd: 0.05 / 10_000, unit: 'API call', listed: '$0.05 per 10,000 API calls', source: SM },
    xrayTraceRecorded: { usd: 5.0 / MILLION, unit: 'trace recorded', listed: '$5.00 per 1M traces recorded', source: XRAY },
    kmsRequest: { usd: 0.03 / 10_000, unit: 'request', listed: '$0.03 per 10,000 requests', source: KMS },
    schedulerInvocation: {
      usd: 1.0 / MILLION,
      unit: 'scheduled invocation',
      listed: '$1.00 per 1M scheduled invocations (EventBridge Scheduler, after the first 14 million a month)',
      source: EVENTBRIDGE,
      note: 'the free 14 million a month are excluded, as every free tier here; the us-east-1 list price, assumed in the other regions listed here: check the page',
    },
    cloudwatchAlarmMonth: { usd: 0.1, unit: 'alarm metric-month', listed: '$0.10 per standard-resolution alarm metric per month', source: CW },
    cloudwatchDashboardMonth: { usd: 3.0, unit: 'dashboard-month', listed: '$3.00 per dashboard per month', source: CW },
    cloudwatchMetricMonth: { usd: 0.3, unit: 'metric-month', listed: '$0.30 per metric per month (first 10,000 metrics)', source: CW },
    contributorInsightsRuleMonth: {
      usd: 0.5,
      unit: 'rule-month',
      listed: '$0.50 per Contributor Insights rule per month (CloudWatch Logs rules)',
      source: CW,
      note: 'the us-east-1 list price, assumed in the other regions listed here: check the page',
    },
    secretsManagerSecretMonth: { usd: 0.4, unit: 'secret-month', listed: '$0.40 per secret per month', source: SM },
    kmsKeyMonth: { usd: 1.0, unit: 'key-month', listed: '$1.00 per customer managed key per month', source: KMS },
  };
}

const US_PRICES: Pick<Record<PriceKey, Price>, 'dynamodbWriteRequestUnit' | 'dynamodbReadRequestUnit' | 'logsIngestedGb' | 'dynamodbStorageGbMonth'> = {
  dynamodbWriteRequestUnit: {
    usd: 0.625 / MILLION,
    unit: 'write request unit',
    listed: '$0.625 per 1M write request units',
    source: DDB,
    note: 'on-demand, Standard table class, after the November 2024 price reduction; one unit writes up to 1 KB',
  },
  dynamodbReadRequestUnit: {
    usd: 0.125 / MILLION,
    unit: 'read request unit',
    listed: '$0.125 per 1M read request units',
    source: DDB,
    note: 'one unit reads up to 4 KB strongly consistent, or twice that eventually consistent',
  },
  logsIngestedGb: {
    usd: 0.5, unit: 'GB ingested', listed: '$0.50 per GB ingested (Standard log class; first tier of vended logs)', source: CW,
  },
  dynamodbStorageGbMonth: { usd: 0.25, unit: 'GB-month', listed: '$0.25 per GB-month (first 25 GB free, excluded here)', source: DDB },
};

/** The regions the model knows, by code. */
export const PRICES: Readonly<Record<string, RegionPrices>> = {
  'us-east-1': { region: 'us-east-1', location: 'US East (N. Virginia)', prices: { ...common(), ...US_PRICES } },
  'us-west-2': { region: 'us-west-2', location: 'US West (Oregon)', prices: { ...common(), ...US_PRICES } },
  'eu-west-1': {
    region: 'eu-west-1',
    location: 'Europe (Ireland)',
    prices: {
      ...common(),
      dynamodbWriteRequestUnit: {
        usd: 0.7068 / MILLION,
        unit: 'write request unit',
        listed: '$0.7068 per 1M write request units',
        source: DDB,
        note: 'on-demand, after the November 2024 reduction (half of the earlier $1.4135); one unit writes up to 1 KB',
      },
      dynamodbReadRequestUnit: {
        usd: 0.1415 / MILLION,
        unit: 'read request unit',
        listed: '$0.1415 per 1M read request units',
        source: DDB,
        note: 'on-demand, after the November 2024 reduction (half of the earlier $0.283)',
      },
      logsIngestedGb: { usd: 0.57, unit: 'GB ingested', listed: '$0.57 per GB ingested (Standard log class)', source: CW },
      dynamodbStorageGbMonth: { usd: 0.283, unit: 'GB-month', listed: '$0.283 per GB-month (first 25 GB free, excluded here)', source: DDB },
    },
  },
};

/** The region codes the model knows. */
export function knownRegions(): string[] {
  return Object.keys(PRICES);
}

/** Thrown for a region without a price table. */
export class UnknownRegionError extends Error {
  constructor(readonly region: string) {
    super(`No prices for region '${region}'. Known regions: ${knownRegions().join(', ')}. `
      + 'Add a table to cost/prices.ts (with the pricing page of every line) to cost another region.');
    this.name = 'UnknownRegionError';
  }
}

/** The price table of a region; throws {@link UnknownRegionError} for a region it does not know. */
export function pricesFor(region: string): RegionPrices {
  const table = PRICES[region];
  if (!table) {
    throw new UnknownRegionError(region);
  }
  return table;
}
