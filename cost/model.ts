/**
 * Usage per request, priced: the shapes every design (this stack and the comparisons) is described
 * in, and the arithmetic that turns usage into dollars.
 */
import { SECONDS_PER_MONTH } from './assumptions';
import { PriceKey, RegionPrices, UsagePriceKey } from './prices';

/** The AWS services a request costs money in; the keys of `byService`. */
export const SERVICES = {
  stepFunctionsStandard: 'Step Functions Standard',
  stepFunctionsExpress: 'Step Functions Express',
  lambda: 'Lambda',
  sqs: 'SQS',
  apiGateway: 'API Gateway (REST)',
  dynamodb: 'DynamoDB (on demand)',
  cloudwatchLogs: 'CloudWatch Logs',
  cloudwatch: 'CloudWatch Contributor Insights',
  secretsManager: 'Secrets Manager',
  xray: 'X-Ray',
  kms: 'KMS',
} as const;

export type ServiceKey = keyof typeof SERVICES;

export const SERVICE_KEYS = Object.keys(SERVICES) as ServiceKey[];

/** One kind of usage of one request. */
export interface UsageLine {
  readonly service: ServiceKey;
  /** What is used, e.g. 'Express executions'. */
  readonly what: string;
  /** Units used per request (may be a fraction: amortised over a batch). */
  readonly perRequest: number;
  /** The price that applies. */
  readonly price: UsagePriceKey;
  /** How the quantity was obtained. */
  readonly derivation: string;
}

/** A cost that does not depend on the traffic (alarms, secrets) or only on the rate (storage). */
export interface MonthlyLine {
  readonly what: string;
  /** Units per month. */
  readonly quantity: number;
  /** A monthly price, or a usage price for usage that does not follow the traffic (a schedule's runs). */
  readonly price: PriceKey;
  readonly derivation: string;
}

/** The usage of one design. */
export interface DesignUsage {
  /** Short name. */
  readonly name: string;
  /** One sentence. */
  readonly description: string;
  readonly lines: UsageLine[];
  readonly monthly: MonthlyLine[];
}

export interface PricedLine extends UsageLine {
  readonly usdPerMillion: number;
}

export interface PricedMonthlyLine extends MonthlyLine {
  readonly usdPerMonth: number;
}

/** A design, priced. */
export interface DesignCost {
  readonly name: string;
  readonly description: string;
  readonly lines: PricedLine[];
  readonly monthly: PricedMonthlyLine[];
  /** USD per million requests, by service (every service, 0 when unused). */
  readonly byService: Record<ServiceKey, number>;
  readonly perMillionRequestsUsd: number;
  /** Requests in 30 days at the sustained rate. */
  readonly requestsPerMonth: number;
  /** USD for those requests. */
  readonly usagePerMonthUsd: number;
  /** USD per month of the monthly lines. */
  readonly monthlyFixedUsd: number;
}

/** Requests in 30 days at `rps` sustained around the clock (rps x 2.592 million). */
export function requestsPerMonth(rps: number): number {
  return rps * SECONDS_PER_MONTH;
}

/** Prices a design at a sustained rate. */
export function priceDesign(usage: DesignUsage, prices: RegionPrices, trafficRps: number): DesignCost {
  const lines = usage.lines.map((line) => {
    if (!Number.isFinite(line.perRequest) || line.perRequest < 0) {
      throw new Error(`${usage.name}: usage '${line.what}' is ${line.perRequest} per request`);
    }
    return { ...line, usdPerMillion: line.perRequest * prices.prices[line.price].usd * 1_000_000 };
  });
  const monthly = usage.monthly.map((line) => ({ ...line, usdPerMonth: line.quantity * prices.prices[line.price].usd }));
  const byService = Object.fromEntries(SERVICE_KEYS.map((k) => [k, 0])) as Record<ServiceKey, number>;
  for (const line of lines) {
    byService[line.service] += line.usdPerMillion;
  }
  const perMillionRequestsUsd = lines.reduce((sum, l) => sum + l.usdPerMillion, 0);
  const perMonth = requestsPerMonth(trafficRps);
  return {
    name: usage.name,
    description: usage.description,
    lines,
    monthly,
    byService,
    perMillionRequestsUsd,
    requestsPerMonth: perMonth,
    usagePerMonthUsd: perMillionRequestsUsd * perMonth / 1_000_000,
    monthlyFixedUsd: monthly.reduce((sum, l) => sum + l.usdPerMonth, 0),
  };
}

/** Rounds for display and JSON (no float noise in the output). */
export function round(value: number, digits: number = 4): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
