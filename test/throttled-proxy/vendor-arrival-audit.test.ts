/**
 * The arrival audit's resources (issue 13, item 2): subscription filter on the proxy's access log,
 * the audit function, the spread metric and its alarm; on a ThrottledProxy alone (opt-in) and in an
 * orchestrator (always with PacingPoint.VENDOR_CALL, never with DISPATCH).
 */
import * as fs from 'fs';
import * as path from 'path';
import { Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import {
  AsyncExternalApiOrchestrator, AsyncExternalApiOrchestratorProps, DEFAULT_SPREAD_AFTER_PROXY_MS, PacingPoint, ThrottledProxy, ThrottledProxyProps,
} from '../../src';
import { logicalIdOf, testApp, testStack } from '../util';

const VENDOR_URL = 'https://vendor.example.com/v1/jobs';
const ORCHESTRATOR: AsyncExternalApiOrchestratorProps = { vendorUrl: VENDOR_URL, requestsPerSecond: 10, callbackTimeout: Duration.minutes(30) };

function newProxy(stack: Stack, props: Partial<ThrottledProxyProps> = {}): ThrottledProxy {
  return new ThrottledProxy(stack, 'Proxy', { vendorUrl: VENDOR_URL, requestsPerSecond: 10, ...props });
}

function orchestrator(props: Partial<AsyncExternalApiOrchestratorProps> = {}): { stack: Stack; o: AsyncExternalApiOrchestrator } {
  const stack = testStack(testApp());
  return { stack, o: new AsyncExternalApiOrchestrator(stack, 'Vendor', { ...ORCHESTRATOR, ...props }) };
}

/** The arrival spread alarm's properties (the one alarm whose expression is `latest - earliest`). */
function spreadAlarm(template: Template): Record<string, any> | undefined {
  return Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties)
    .find((p) => p.Metrics?.some((m: any) => m.Expression === 'latest - earliest'));
}

describe('arrival audit', () => {
  describe('on a ThrottledProxy used alone', () => {
    test('is off by default: no function, no subscription, no alarm', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const proxy = newProxy(stack);

      // THEN
      expect(proxy.arrivalAudit).toBeUndefined();
      const template = Template.fromStack(stack);
      template.resourceCountIs('AWS::Logs::SubscriptionFilter', 0);
      template.resourceCountIs('AWS::Lambda::Function', 0);
      expect(spreadAlarm(template)).toBeUndefined();
    });

    test('subscribes the audit function to the vendor caller\'s access log lines only, and alarms on a spread above L - 15 ms', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const proxy = newProxy(stack, { metricsScope: 'orders', arrivalAudit: { latenessTolerance: Duration.millis(30) } });

      // THEN
      const template = Template.fromStack(stack);
      const audit = proxy.arrivalAudit!;
      expect(audit.spreadThresholdMs).toBe(30 - DEFAULT_SPREAD_AFTER_PROXY_MS);
      template.hasResourceProperties('AWS::Logs::SubscriptionFilter', {
        LogGroupName: { Ref: logicalIdOf(stack, proxy.accessLogGroup) },
        FilterPattern: '{ $.userAgent = "cdk-async-external-api-vendor-caller/*" }',
        DestinationArn: { 'Fn::GetAtt': [logicalIdOf(stack, audit.function), 'Arn'] },
      });
      template.hasResourceProperties('AWS::Lambda::Permission', {
        Principal: 'logs.amazonaws.com',
        FunctionName: { 'Fn::GetAtt': [logicalIdOf(stack, audit.function), 'Arn'] },
      });
      template.hasResourceProperties('AWS::Lambda::Function', {
        Runtime: 'nodejs22.x',
        Environment: { Variables: Match.objectLike({ METRICS_SCOPE: 'orders', POWERTOOLS_METRICS_NAMESPACE: 'CdkAsyncExternalApi' }) },
      });
      const alarm = spreadAlarm(template)!;
      expect(alarm).toMatchObject({ Threshold: 15, EvaluationPeriods: 3, DatapointsToAlarm: 1, ComparisonOperator: 'GreaterThanThreshold', TreatMissingData: 'notBreaching' });
      const inputs = alarm.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat);
      expect(inputs.map((m: any) => [m.Metric.MetricName, m.Stat, m.Period]).sort()).toEqual([
        ['VendorArrivalAfterSlot', 'Maximum', 60],
        ['VendorArrivalAfterSlot', 'Minimum', 60],
      ]);
      for (const input of inputs) {
        expect(input.Metric).toMatchObject({ Namespace: 'CdkAsyncExternalApi', Dimensions: [{ Name: 'Scope', Value: 'orders' }] });
      }
      expect(alarm.AlarmDescription).toMatch(/more than 15 ms .*lateness tolerance L 30 ms minus 15 ms/);
    });

    test('uses a given spreadAfterProxy', () => {
      const stack = testStack();
      const proxy = newProxy(stack, { arrivalAudit: { latenessTolerance: Duration.millis(60), spreadAfterProxy: Duration.millis(40) } });
      expect(proxy.arrivalAudit!.spreadThresholdMs).toBe(20);
      expect(spreadAlarm(Template.fromStack(stack))).toMatchObject({ Threshold: 20 });
    });

    test('fails without a lateness tolerance, naming it', () => {
      expect(() => newProxy(testStack(), { arrivalAudit: {} })).toThrow(/arrivalAudit.latenessTolerance is missing/);
    });

    test.each([
      [15, 15],
      [10, 15],
      [30, 30],
    ])('fails when L (%p ms) leaves nothing after the spread after the proxy (%p ms)', (lMs, afterMs) => {
      expect(() => newProxy(testStack(), { arrivalAudit: { latenessTolerance: Duration.millis(lMs), spreadAfterProxy: Duration.millis(afterMs) } }))
        .toThrow(new RegExp(`the lateness tolerance \\(${lMs} ms\\) must be above arrivalAudit.spreadAfterProxy \\(${afterMs} ms\\)`));
    });

    test('fails on a spreadAfterProxy above one second', () => {
      expect(() => newProxy(testStack(), { arrivalAudit: { latenessTolerance: Duration.seconds(5), spreadAfterProxy: Duration.millis(1001) } }))
        .toThrow(/arrivalAudit.spreadAfterProxy must be between 0 and 1000 ms \(given 1001 ms\)/);
    });

    test('metric methods: the per-request metric and its spread, in the proxy\'s scope', () => {
      const proxy = newProxy(testStack(), { metricsScope: 'orders' });
      const metric = proxy.metricVendorArrivalAfterSlot();
      expect([metric.namespace, metric.metricName, metric.statistic, metric.dimensions]).toEqual(['CdkAsyncExternalApi', 'VendorArrivalAfterSlot', 'Maximum', { Scope: 'orders' }]);
      const spread = proxy.metricVendorArrivalSpread({ period: Duration.minutes(5) });
      expect(spread.expression).toBe('latest - earliest');
      expect(spread.period.toSeconds()).toBe(300);
      expect(Object.values(spread.usingMetrics).map((m: any) => [m.statistic, m.period.toSeconds()]).sort()).toEqual([['Maximum', 300], ['Minimum', 300]]);
    });
  });

  describe('in an orchestrator', () => {
    test('PacingPoint.VENDOR_CALL (the default): the audit exists, against the orchestrator\'s L (30 ms) and scope; its alarm is in alarms', () => {
      const { stack, o } = orchestrator();
      const audit = o.proxy.arrivalAudit!;
      expect(audit.latenessToleranceMs).toBe(30);
      expect(audit.spreadThresholdMs).toBe(15);
      expect(o.arrivalSpreadAlarm).toBe(audit.spreadAlarm);
      expect(o.alarms).toContain(audit.spreadAlarm);
      const template = Template.fromStack(stack);
      template.resourceCountIs('AWS::Logs::SubscriptionFilter', 1);
      expect(template.toJSON().Resources[logicalIdOf(stack, audit.function)].Properties.Environment.Variables.METRICS_SCOPE).toBe(o.metricsScope);
    });

    test('follows consumer.latenessTolerance and proxy.arrivalAudit.spreadAfterProxy', () => {
      const { stack, o } = orchestrator({
        consumer: { latenessTolerance: Duration.millis(50) },
        proxy: { arrivalAudit: { spreadAfterProxy: Duration.millis(25) } },
      });
      expect(o.proxy.arrivalAudit!.spreadThresholdMs).toBe(25);
      expect(spreadAlarm(Template.fromStack(stack))).toMatchObject({ Threshold: 25 });
    });

    test('PacingPoint.DISPATCH: no audit (no request carries a slot), no alarm', () => {
      const { stack, o } = orchestrator({ pacingPoint: PacingPoint.DISPATCH });
      expect(o.proxy.arrivalAudit).toBeUndefined();
      expect(o.arrivalSpreadAlarm).toBeUndefined();
      Template.fromStack(stack).resourceCountIs('AWS::Logs::SubscriptionFilter', 0);
    });

    test('refuses proxy.arrivalAudit with PacingPoint.DISPATCH', () => {
      expect(() => orchestrator({ pacingPoint: PacingPoint.DISPATCH, proxy: { arrivalAudit: { spreadAfterProxy: Duration.millis(5) } } }))
        .toThrow(/proxy.arrivalAudit is given with PacingPoint.DISPATCH/);
    });

    test('refuses a lateness tolerance in proxy.arrivalAudit (the orchestrator\'s own is audited)', () => {
      expect(() => orchestrator({ proxy: { arrivalAudit: { latenessTolerance: Duration.millis(40) } } }))
        .toThrow(/proxy.arrivalAudit.latenessTolerance is given \(40 ms\).*set consumer.latenessTolerance instead/);
    });
  });
});

test('the README states the threshold the code derives: L 30 ms - 15 ms = 15 ms by default', () => {
  const readme = fs.readFileSync(path.join(__dirname, '../../README.md'), 'utf8');
  const { o } = orchestrator();
  const audit = o.proxy.arrivalAudit!;
  expect([audit.latenessToleranceMs, DEFAULT_SPREAD_AFTER_PROXY_MS, audit.spreadThresholdMs]).toEqual([30, 15, 15]);
  expect(readme.replace(/\s+/g, ' ')).toContain('fires when it exceeds **`L` − `spreadAfterProxy`** (30 − 15 = **15 ms** by default');
});
