import { Duration, Names, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { MetricNames } from '../shared/metrics';

/**
 * Per-key figures without a metric per key (issue 15): CloudWatch charges per metric, so a key is
 * never a dimension. The handlers write the key as an EMF property (`requestKey`) with the key's
 * totals per metric (`keyTotals.<metric>`, shared/handler-metrics.ts), and Contributor Insights rules
 * rank the keys from those log lines. Costs $0.50 per rule a month plus $0.02 per million matched
 * log events (docs/cost.md), so the rules exist only when the orchestrator's requests carry keys.
 *
 * Rule syntax (JSON log format, `$.` paths, Sum of `ValueOf`, IsPresent filter):
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/ContributorInsights-RuleSyntax.html
 * Rule metrics (INSIGHT_RULE_METRIC, MaxContributorValue, UniqueContributors):
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/ContributorInsights-GraphReportData.html
 */

/** The EMF property of the request's key (shared/handler-metrics.ts REQUEST_KEY_PROPERTY). */
const KEY_FIELD = '$.requestKey';
/** The key's totals in one EMF document (shared/handler-metrics.ts KEY_TOTALS_PROPERTY). */
const TOTALS_FIELD = '$.keyTotals';

/**
 * The Contributor Insights rule that sums `metricName`'s per-key totals by key in `logGroupName`.
 * Only the EMF documents of a key have `keyTotals.<metricName>`: other log lines match nothing.
 */
export function keyTopRuleDefinition(logGroupName: string, metricName: string): Record<string, unknown> {
  const value = `${TOTALS_FIELD}.${metricName}`;
  return {
    Schema: { Name: 'CloudWatchLogRule', Version: 1 },
    AggregateOn: 'Sum',
    Contribution: {
      Keys: [KEY_FIELD],
      ValueOf: value,
      Filters: [{ Match: value, IsPresent: true }],
    },
    LogFormat: 'JSON',
    LogGroupNames: [logGroupName],
  };
}

/** What KeyInsights ranks the keys by, and where the figure is logged. */
export interface KeyInsightsProps {
  /** The dispatcher's (queue consumer's) log group: DispatchedRequests, PacingWait. */
  readonly dispatcherLogGroup: logs.ILogGroup;
  /** The callback processor's log group: CallbacksResolved. */
  readonly callbackProcessorLogGroup: logs.ILogGroup;
  /**
   * The vendor caller's log group (PacingPoint.VENDOR_CALL): VendorPauses, one per 429 answer.
   * It knows the key only when the vendor credential is per key.
   *
   * @default - no rule for 429s
   */
  readonly vendorCallerLogGroup?: logs.ILogGroup;
  /**
   * Whether requests can be set aside (per-key limits): a rule ranks the keys by their backlog, the
   * time their requests are set aside (KeySetAsideDelay, dispatcher logs).
   *
   * @default false
   */
  readonly setAside?: boolean;
}

/** The Contributor Insights rules that rank an orchestrator's keys. */
export class KeyInsights extends Construct {
  /** Top keys by requests dispatched (sum of DispatchedRequests). */
  public readonly dispatchedRule: cloudwatch.CfnInsightRule;
  /** Top keys by time waited for a pacing slot (sum of PacingWait, milliseconds). */
  public readonly pacingWaitRule: cloudwatch.CfnInsightRule;
  /** Top keys by callbacks resolved (sum of CallbacksResolved). */
  public readonly callbacksRule: cloudwatch.CfnInsightRule;
  /** Top keys by the vendor's 429 answers (sum of VendorPauses); only with a vendor caller. */
  public readonly vendor429sRule?: cloudwatch.CfnInsightRule;
  /**
   * Top keys by backlog: the sum of the time their requests were set aside for (KeySetAsideDelay,
   * milliseconds); divided by the period, the average number set aside ({@link keyBacklogMetric}).
   * Only with per-key limits.
   */
  public readonly backlogRule?: cloudwatch.CfnInsightRule;
  /** Saved Logs Insights queries (no charge until run): the same figures, any key, any time range. */
  public readonly queries: logs.QueryDefinition[];

  constructor(scope: Construct, id: string, props: KeyInsightsProps) {
    super(scope, id);
    this.dispatchedRule = this.rule('DispatchedByKey', props.dispatcherLogGroup, MetricNames.DISPATCHED_REQUESTS);
    this.pacingWaitRule = this.rule('PacingWaitByKey', props.dispatcherLogGroup, MetricNames.PACING_WAIT);
    this.callbacksRule = this.rule('CallbacksByKey', props.callbackProcessorLogGroup, MetricNames.CALLBACKS_RESOLVED);
    if (props.vendorCallerLogGroup) {
      this.vendor429sRule = this.rule('Vendor429sByKey', props.vendorCallerLogGroup, MetricNames.VENDOR_PAUSES);
    }
    if (props.setAside) {
      this.backlogRule = this.rule('BacklogByKey', props.dispatcherLogGroup, MetricNames.KEY_SET_ASIDE_DELAY);
    }
    const name = (query: string) => `cdk-async-external-api/${Names.uniqueResourceName(this, { maxLength: 120 })}/${query}`;
    const total = (metric: string) => `keyTotals.${metric}`;
    const byKey = (queryId: string, query: string, logGroup: logs.ILogGroup, sums: Record<string, string>, sortBy: string) =>
      new logs.QueryDefinition(this, queryId, {
        queryDefinitionName: name(query),
        logGroups: [logGroup],
        queryString: new logs.QueryString({
          // Only a key's EMF documents have requestKey; a sum skips documents without the field.
          filterStatements: ['ispresent(requestKey)'],
          statsStatements: [`${Object.entries(sums).map(([as, field]) => `sum(${field}) as ${as}`).join(', ')} by requestKey`],
          sort: `${sortBy} desc`,
          limit: 100,
        }),
      });
    this.queries = [
      byKey('KeysByRequestsQuery', 'keys-by-requests-and-wait', props.dispatcherLogGroup,
        { requests: total(MetricNames.DISPATCHED_REQUESTS), waitedMs: total(MetricNames.PACING_WAIT) }, 'requests'),
      byKey('KeysByCallbacksQuery', 'keys-by-callbacks', props.callbackProcessorLogGroup, { callbacks: total(MetricNames.CALLBACKS_RESOLVED) }, 'callbacks'),
      ...(props.vendorCallerLogGroup
        ? [byKey('KeysBy429sQuery', 'keys-by-429s', props.vendorCallerLogGroup, { vendor429s: total(MetricNames.VENDOR_PAUSES), calls: total(MetricNames.VENDOR_CALLS) }, 'vendor429s')]
        : []),
      // Over the query's range T: setAsideMs / T is the key's average number of requests set aside.
      ...(props.setAside
        ? [byKey('KeysByBacklogQuery', 'keys-by-backlog', props.dispatcherLogGroup,
          { setAsideMs: total(MetricNames.KEY_SET_ASIDE_DELAY), setAside: total(MetricNames.KEY_SET_ASIDE) }, 'setAsideMs')]
        : []),
    ];
  }

  private rule(id: string, logGroup: logs.ILogGroup, metricName: string): cloudwatch.CfnInsightRule {
    return new cloudwatch.CfnInsightRule(this, id, {
      ruleName: Names.uniqueResourceName(this, { maxLength: 110 }) + `-${id}`,
      ruleState: 'ENABLED',
      ruleBody: Stack.of(this).toJsonString(keyTopRuleDefinition(logGroup.logGroupName, metricName)),
    });
  }
}

/**
 * A statistic of a key rule per period: `MaxContributorValue` (the top key's figure),
 * `UniqueContributors` (active keys), `Sum` (all keys).
 */
export function keyRuleMetric(rule: cloudwatch.CfnInsightRule, statistic: 'MaxContributorValue' | 'UniqueContributors' | 'Sum',
  label: string, period: Duration = Duration.minutes(1)): cloudwatch.IMetric {
  return new cloudwatch.MathExpression({
    expression: `INSIGHT_RULE_METRIC('${rule.attrRuleName}', '${statistic}')`,
    usingMetrics: {},
    period,
    label,
  });
}

/**
 * The backlog of the key with the most requests set aside, averaged over each period: the top key's
 * sum of `KeySetAsideDelay` (ms) divided by the period. Little's law: the time set aside scheduled
 * in a period, over the period, is the average number waiting aside, exactly so in a steady state
 * and over periods longer than the key's line (a delay counts when it is scheduled: a line that
 * starts or ends within the period shows early). Requests visible in the queue and requests held by
 * a dispatcher are not counted (the queue has no count per key; their wait is `PacingWait`).
 */
export function keyBacklogMetric(rule: cloudwatch.CfnInsightRule, label: string, period: Duration = Duration.minutes(1)): cloudwatch.IMetric {
  return new cloudwatch.MathExpression({
    expression: `INSIGHT_RULE_METRIC('${rule.attrRuleName}', 'MaxContributorValue') / ${period.toMilliseconds()}`,
    usingMetrics: {},
    period,
    label,
  });
}

/** The dashboard section of the keys: the top key's figure and the number of active keys per rule. */
export function keyInsightsWidgets(insights: KeyInsights, width: number, height: number): cloudwatch.IWidget[] {
  const graph = (title: string, rule: cloudwatch.CfnInsightRule, what: string) => new cloudwatch.GraphWidget({
    title,
    width,
    height,
    left: [keyRuleMetric(rule, 'MaxContributorValue', `top key: ${what}`)],
    right: [keyRuleMetric(rule, 'UniqueContributors', 'keys')],
  });
  const header = new cloudwatch.TextWidget({
    markdown: '### Keys (accounts)\nThe busiest key per minute and the number of active keys. Which key: CloudWatch > '
      + 'Contributor Insights, the rules below; runbook: `docs/operations.md`, "Find the noisiest key".',
    width: 2 * width,
    height: 2,
  });
  return [
    header,
    graph('Top key: requests dispatched', insights.dispatchedRule, 'requests'),
    graph('Top key: pacing wait (ms, sum)', insights.pacingWaitRule, 'ms waited'),
    ...(insights.vendor429sRule ? [graph('Top key: vendor 429s', insights.vendor429sRule, '429s')] : []),
    ...(insights.backlogRule
      ? [new cloudwatch.GraphWidget({
        title: 'Top key: backlog (requests set aside, average)',
        width,
        height,
        left: [keyBacklogMetric(insights.backlogRule, 'top key: requests set aside')],
        right: [keyRuleMetric(insights.backlogRule, 'UniqueContributors', 'keys set aside')],
      })]
      : []),
    graph('Top key: callbacks resolved', insights.callbacksRule, 'callbacks'),
  ];
}
