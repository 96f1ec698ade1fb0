import { Duration, Names, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { contractWindow, REFUSED_BEFORE_VENDOR } from './access-log-audit-report';

/** Contributor Insights accepts at most 10 values per In/NotIn filter and 4 filters per rule. */
const VALUES_PER_FILTER = 10;

/**
 * The Contributor Insights rule that counts, per calendar second (`requestTime`, whole seconds),
 * the requests the proxy forwarded to the vendor: every access log line except the ones API Gateway
 * answered itself (`errorResponseType` in REFUSED_BEFORE_VENDOR, in chunks of 10 values: filters
 * are ANDed, so two NotIn filters exclude the union). Syntax:
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/ContributorInsights-RuleSyntax.html
 */
export function busiestSecondRuleDefinition(logGroupName: string): Record<string, unknown> {
  const filters: Array<Record<string, unknown>> = [];
  for (let i = 0; i < REFUSED_BEFORE_VENDOR.length; i += VALUES_PER_FILTER) {
    filters.push({ Match: '$.errorResponseType', NotIn: REFUSED_BEFORE_VENDOR.slice(i, i + VALUES_PER_FILTER) });
  }
  return {
    Schema: { Name: 'CloudWatchLogRule', Version: 1 },
    LogGroupNames: [logGroupName],
    LogFormat: 'JSON',
    Contribution: { Keys: ['$.requestTime'], Filters: filters },
    AggregateOn: 'Count',
  };
}

/** The Logs Insights filter that keeps the requests the proxy forwarded to the vendor. */
const FORWARDED_FILTER = `errorResponseType not in [${REFUSED_BEFORE_VENDOR.map((t) => `"${t}"`).join(', ')}]`;

/**
 * Properties of an AccessLogAudit (internal: a ThrottledProxy creates it on its access log group).
 */
export interface AccessLogAuditProps {
  /** The proxy's access log group (JSON lines in the ThrottledProxy's format). */
  readonly logGroup: logs.ILogGroup;
  /** The contract, requests per second. */
  readonly requestsPerSecond: number;
}

/**
 * The audit of the rate at the proxy from AWS's own records (README, "Audit"), independent of the
 * pacer: a Contributor Insights rule keyed on the calendar second, `INSIGHT_RULE_METRIC(rule,
 * 'MaxContributorValue')` at 60 s = the busiest second of each minute, an alarm above the contract,
 * and saved Logs Insights queries. Calendar seconds bound the guarantee's sliding windows from below
 * only (a burst can straddle two seconds); the exact audit is the `cdk-async-external-api-audit` CLI.
 */
export class AccessLogAudit extends Construct {
  /** The Contributor Insights rule: forwarded requests per calendar second. */
  public readonly rule: cloudwatch.CfnInsightRule;
  /** The most requests one calendar second may hold: floor(R), or 1 when R < 1. */
  public readonly secondLimit: number;
  /** Fires when a calendar second at the proxy held more than `secondLimit` forwarded requests. */
  public readonly alarm: cloudwatch.Alarm;
  /** Saved Logs Insights queries on the access log group. */
  public readonly queries: logs.QueryDefinition[];

  constructor(scope: Construct, id: string, props: AccessLogAuditProps) {
    super(scope, id);
    // R >= 1: floor(R) in any 1-s window, so in any calendar second. R < 1: one in any 1/R s, so
    // one in a calendar second (the rule cannot see two requests in consecutive seconds: the CLI can).
    this.secondLimit = contractWindow(props.requestsPerSecond).limit;
    this.rule = new cloudwatch.CfnInsightRule(this, 'BusiestSecondRule', {
      ruleName: Names.uniqueResourceName(this, { maxLength: 128 }),
      ruleState: 'ENABLED',
      ruleBody: Stack.of(this).toJsonString(busiestSecondRuleDefinition(props.logGroup.logGroupName)),
    });

    this.alarm = new cloudwatch.Alarm(this, 'BusiestSecondAlarm', {
      alarmDescription: `A calendar second at the proxy held more than ${this.secondLimit} requests forwarded to the vendor `
        + `(contract ${props.requestsPerSecond} requests per second), by API Gateway's own clock and independent of the pacer. `
        + 'Find the seconds with the saved Logs Insights query "busiest-seconds" and prove the exact sliding windows with '
        + 'cdk-async-external-api-audit (docs/operations.md, "Audit the rate").',
      metric: this.metricBusiestSecond(),
      threshold: this.secondLimit,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      // No request in a minute: no contributor, no data point.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const name = (query: string) => `cdk-async-external-api/${Names.uniqueResourceName(this, { maxLength: 120 })}/${query}`;
    const secondOf = 'floor(requestTimeEpoch / 1000) as epochSecond';
    this.queries = [
      new logs.QueryDefinition(this, 'RequestsPerSecondQuery', {
        queryDefinitionName: name('requests-per-second'),
        logGroups: [props.logGroup],
        queryString: new logs.QueryString({
          fields: [secondOf],
          filterStatements: [FORWARDED_FILTER],
          statsStatements: ['count(*) as requests by epochSecond'],
          sort: 'epochSecond asc',
          limit: 10000,
        }),
      }),
      new logs.QueryDefinition(this, 'BusiestSecondsQuery', {
        queryDefinitionName: name('busiest-seconds'),
        logGroups: [props.logGroup],
        queryString: new logs.QueryString({
          fields: [secondOf],
          filterStatements: [FORWARDED_FILTER],
          statsStatements: ['count(*) as requests by epochSecond'],
          sort: 'requests desc',
          limit: 20,
        }),
      }),
      new logs.QueryDefinition(this, 'ThrottlesBySourceQuery', {
        queryDefinitionName: name('throttles-by-source'),
        logGroups: [props.logGroup],
        queryString: new logs.QueryString({
          // errorResponseType THROTTLED: the proxy's own throttle (the vendor was not called);
          // integrationStatus 429: the vendor's answer (it counts against the contract).
          filterStatements: ['status = "429"'],
          statsStatements: ['count(*) as throttled by bin(1m), errorResponseType, integrationStatus'],
        }),
      }),
    ];
  }

  /**
   * The busiest calendar second of each period at the proxy: `INSIGHT_RULE_METRIC(rule,
   * 'MaxContributorValue')`, forwarded requests only.
   */
  public metricBusiestSecond(props?: { readonly period?: Duration; readonly label?: string }): cloudwatch.MathExpression {
    return new cloudwatch.MathExpression({
      expression: `INSIGHT_RULE_METRIC('${this.rule.attrRuleName}', 'MaxContributorValue')`,
      usingMetrics: {},
      period: props?.period ?? Duration.minutes(1),
      label: props?.label ?? 'busiest second at the proxy (forwarded requests)',
    });
  }
}
