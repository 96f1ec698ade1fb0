/**
 * The access log audit of the ThrottledProxy (README, "Audit"): the Contributor Insights rule, its
 * alarm and metric, the saved Logs Insights queries, and the rule's logic evaluated against access
 * log lines rendered from the synthesized format (CloudWatch is not emulated).
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { evaluateInsightRule, LogEvent } from '../../local/aws/contributor-insights';
import { ThrottledProxy, ThrottledProxyProps } from '../../src';
import { auditAccessLog, parseAccessLogExport, REFUSED_BEFORE_VENDOR } from '../../src/throttled-proxy/access-log-audit-report';
import { flattenCfnString, logicalIdOf, testStack } from '../util';

function newProxy(stack: Stack, props: Partial<ThrottledProxyProps> = {}): ThrottledProxy {
  return new ThrottledProxy(stack, 'Proxy', { vendorUrl: 'https://vendor.example.com/v1/jobs', requestsPerSecond: 10, ...props });
}

/** The rule body and the access log format as synthesized (tokens flattened to placeholders). */
function synthesized(stack: Stack): { rule: any; format: string; alarm: any } {
  const template = Template.fromStack(stack);
  const rules = Object.values(template.findResources('AWS::CloudWatch::InsightRule'));
  expect(rules).toHaveLength(1);
  const stages = Object.values(template.findResources('AWS::ApiGateway::Stage'));
  const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm', { Properties: { Metrics: Match.anyValue() } }));
  expect(alarms).toHaveLength(1);
  return {
    rule: JSON.parse(flattenCfnString(rules[0].Properties.RuleBody)),
    format: stages[0].Properties.AccessLogSetting.Format,
    alarm: alarms[0].Properties,
  };
}

/** A line in the stage's access log format, as API Gateway renders `$context` variables (`-` when absent). */
function render(format: string, values: Record<string, string>): string {
  return format.replace(/\$context\.([A-Za-z0-9_.]*[A-Za-z0-9_])/g, (_m, name: string) => values[name] ?? '-');
}

const T0 = Date.UTC(2026, 11, 7, 12, 0, 0);
const clf = (ms: number) => {
  const d = new Date(ms);
  const month = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getUTCMonth()];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${month}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
};

describe('GIVEN a ThrottledProxy with its access log audit (the default)', () => {
  test('WHEN synthesized THEN a Contributor Insights rule on its access log group counts forwarded requests per calendar second', () => {
    const stack = testStack();
    const proxy = newProxy(stack);
    const { rule } = synthesized(stack);
    expect(rule).toEqual({
      Schema: { Name: 'CloudWatchLogRule', Version: 1 },
      LogGroupNames: [`PLACEHOLDER-${logicalIdOf(stack, proxy.accessLogGroup)}`],
      LogFormat: 'JSON',
      Contribution: {
        Keys: ['$.requestTime'],
        Filters: [
          { Match: '$.errorResponseType', NotIn: REFUSED_BEFORE_VENDOR.slice(0, 10) },
          { Match: '$.errorResponseType', NotIn: REFUSED_BEFORE_VENDOR.slice(10) },
        ],
      },
      AggregateOn: 'Count',
    });
    Template.fromStack(stack).hasResourceProperties('AWS::CloudWatch::InsightRule', { RuleState: 'ENABLED', RuleName: Match.stringLikeRegexp('Proxy') });
    expect(proxy.auditRule).toBeDefined();
  });

  test.each([
    // [contract, most requests in one calendar second]
    [10, 10],
    [2.5, 2],
    [0.5, 1],
  ])('WHEN the contract is %p requests per second THEN the alarm fires when a second holds more than %p', (requestsPerSecond, limit) => {
    const stack = testStack();
    const proxy = newProxy(stack, { requestsPerSecond });
    const { alarm } = synthesized(stack);
    expect(alarm).toMatchObject({ Threshold: limit, ComparisonOperator: 'GreaterThanThreshold', EvaluationPeriods: 1, TreatMissingData: 'notBreaching' });
    expect(alarm.Metrics).toEqual([expect.objectContaining({ Period: 60, ReturnData: true })]);
    expect(alarm.Metrics[0].Expression).toEqual({
      'Fn::Join': ['', ['INSIGHT_RULE_METRIC(\'', { 'Fn::GetAtt': [stack.getLogicalId(proxy.auditRule!), 'RuleName'] }, '\', \'MaxContributorValue\')']],
    });
    expect(alarm.AlarmDescription).toContain('cdk-async-external-api-audit');
    expect(proxy.busiestSecondAlarm).toBeDefined();
  });

  test('WHEN synthesized THEN three saved Logs Insights queries read its access log group', () => {
    const stack = testStack();
    const proxy = newProxy(stack);
    const queries = Object.values(Template.fromStack(stack).findResources('AWS::Logs::QueryDefinition')).map((q) => q.Properties);
    expect(queries.map((q) => flattenCfnString(q.Name).split('/').pop())).toEqual(['requests-per-second', 'busiest-seconds', 'throttles-by-source']);
    for (const q of queries) {
      expect(q.LogGroupNames).toEqual([{ Ref: logicalIdOf(stack, proxy.accessLogGroup) }]);
    }
    expect(queries[1].QueryString).toBe([
      'fields floor(requestTimeEpoch / 1000) as epochSecond',
      `| filter errorResponseType not in [${REFUSED_BEFORE_VENDOR.map((t) => `"${t}"`).join(', ')}]`,
      '| stats count(*) as requests by epochSecond',
      '| sort requests desc',
      '| limit 20',
    ].join('\n'));
    expect(proxy.auditQueries).toHaveLength(3);
  });

  test('WHEN the synthesized rule runs on lines in the synthesized format THEN its busiest second counts forwarded requests only (vendor 429s and 504s in, the proxy\'s own refusals out) and equals the audit\'s calendar second', () => {
    // GIVEN the lines API Gateway would write in one minute: 3 forwarded late in second 0 (one of
    // them the vendor's 429, one an integration timeout), 4 in second 1, and 3 refusals in second 0
    const stack = testStack();
    newProxy(stack);
    const { rule, format } = synthesized(stack);
    const at = (ms: number, status: string, integrationStatus: string | undefined, errorResponseType?: string): LogEvent => ({
      timestamp: T0 + ms + 30,
      message: render(format, {
        requestId: `r-${ms}`,
        requestTime: clf(T0 + ms),
        requestTimeEpoch: String(T0 + ms),
        httpMethod: 'POST',
        resourcePath: '/',
        status: status,
        ...(integrationStatus ? { 'integration.status': integrationStatus } : {}),
        ...(errorResponseType ? { 'error.responseType': errorResponseType } : {}),
      }),
    });
    const events = [
      at(700, '202', '202'), at(800, '429', '429'), at(900, '504', undefined, 'INTEGRATION_TIMEOUT'),
      at(400, '429', undefined, 'THROTTLED'), at(450, '429', undefined, 'THROTTLED'), at(500, '403', undefined, 'ACCESS_DENIED'),
      at(1000, '202', '202'), at(1250, '202', '202'), at(1500, '202', '202'), at(1750, '202', '202'),
    ];

    // WHEN
    const periods = evaluateInsightRule(rule, events, 60);
    const report = auditAccessLog(parseAccessLogExport(events.map((e) => e.message).join('\n')), 1000, 10);

    // THEN
    expect(periods).toEqual([{
      startMs: T0, uniqueContributors: 2, maxContributorValue: 4, maxContributor: [clf(T0 + 1000)], sampleCount: 7, sum: 7,
    }]);
    expect(report.busiestCalendarSecond).toEqual({ count: 4, secondMs: T0 + 1000 });
    expect(report.forwarded).toBe(7);
    // The sliding window sees more than any calendar second: [500 ms, 1500 ms] holds 6.
    expect(report.busiest).toEqual({ count: 6, firstMs: T0 + 700, endMs: T0 + 1500 });
  });

  test('WHEN metricBusiestSecond is asked for another period THEN the expression keeps the rule and takes the period', () => {
    const stack = testStack();
    const proxy = newProxy(stack);
    const metric = proxy.metricBusiestSecond({ period: Duration.minutes(5), label: 'busiest' });
    const config = metric.toMetricConfig();
    expect(config.mathExpression?.period).toBe(300);
    expect(stack.resolve(config.mathExpression?.expression)).toEqual({ 'Fn::Join': ['', ['INSIGHT_RULE_METRIC(\'', { 'Fn::GetAtt': [stack.getLogicalId(proxy.auditRule!), 'RuleName'] }, '\', \'MaxContributorValue\')']] });
  });
});

describe('GIVEN a ThrottledProxy without the audit (accessLogAudit: false)', () => {
  test('WHEN synthesized THEN no rule, alarm or query exists, and metricBusiestSecond says how to get it', () => {
    const stack = testStack();
    const proxy = newProxy(stack, { accessLogAudit: false });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::CloudWatch::InsightRule', 0);
    template.resourceCountIs('AWS::CloudWatch::Alarm', 0);
    template.resourceCountIs('AWS::Logs::QueryDefinition', 0);
    expect(proxy.busiestSecondAlarm).toBeUndefined();
    expect(proxy.auditQueries).toEqual([]);
    expect(() => proxy.metricBusiestSecond()).toThrow('metricBusiestSecond needs the access log audit, which is off for TestStack/Proxy (accessLogAudit: false): turn it on or drop the metric');
  });
});
