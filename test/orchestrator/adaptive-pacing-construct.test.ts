/**
 * Adaptive pacing through the L3 (issue 14, item 5): the contract's setting reaches both handlers
 * that reserve slots, DISPATCH pacing is refused, the effective rate is a metric and a dashboard line.
 */
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AdaptivePacing, AsyncExternalApiOrchestrator, AsyncExternalApiOrchestratorProps, PacingPoint, VendorContract } from '../../src';
import { flattenCfnString, testStack } from '../util';

const PROPS: AsyncExternalApiOrchestratorProps = {
  vendorUrl: 'https://vendor.example.com/v1/jobs',
  callbackTimeout: Duration.minutes(30),
};
const SPEC = JSON.stringify({ decreaseFactor: 0.5, probeIntervalMs: 30_000, increaseStep: 1, minimumRequestsPerSecond: 1, cooldownMs: 2000 });

function adaptiveContract(): VendorContract {
  return VendorContract.of({
    requestsPerSecond: 20,
    adaptivePacing: AdaptivePacing.of({ decreaseFactor: 0.5, probeInterval: Duration.seconds(30), minimumRequestsPerSecond: 1 }),
  });
}

describe('AsyncExternalApiOrchestrator with adaptive pacing', () => {
  test('GIVEN adaptivePacing on the contract THEN the vendor caller and the dispatcher get the spec resolved for the contract, and the pacer table logical id is unchanged', () => {
    const stack = testStack();
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'O', { ...PROPS, contract: adaptiveContract() });
    const template = Template.fromStack(stack).toJSON();
    const withSpec = Object.entries(template.Resources)
      .filter(([, r]: [string, any]) => r.Type === 'AWS::Lambda::Function' && r.Properties.Environment?.Variables?.ADAPTIVE_PACING === SPEC)
      .map(([id]) => id);
    const consumerId = stack.getLogicalId(orchestrator.consumer.function.node.defaultChild as any);
    const callerId = stack.getLogicalId(orchestrator.dispatch.vendorCaller!.node.defaultChild as any);
    expect(withSpec.sort()).toEqual([callerId, consumerId].sort());
    expect(stack.getLogicalId(orchestrator.consumer.pacerTable.node.defaultChild as any))
      .toBe(stack.getLogicalId(new AsyncExternalApiOrchestrator(testStack(), 'O', { ...PROPS, requestsPerSecond: 20 }).consumer.pacerTable.node.defaultChild as any));
  });

  test('GIVEN no adaptivePacing THEN no function gets ADAPTIVE_PACING and the dashboard has no effective rate line', () => {
    const stack = testStack();
    new AsyncExternalApiOrchestrator(stack, 'O', { ...PROPS, requestsPerSecond: 20 });
    const template = Template.fromStack(stack);
    for (const fn of Object.values(template.findResources('AWS::Lambda::Function'))) {
      expect(Object.keys((fn as any).Properties.Environment?.Variables ?? {})).not.toContain('ADAPTIVE_PACING');
    }
    const body = flattenCfnString(Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody);
    expect(body).not.toContain('EffectiveRate');
  });

  test('GIVEN adaptivePacing with PacingPoint.DISPATCH THEN synthesis fails, saying why and how to fix it', () => {
    expect(() => new AsyncExternalApiOrchestrator(testStack(), 'O', { ...PROPS, contract: adaptiveContract(), pacingPoint: PacingPoint.DISPATCH }))
      .toThrow(/the contract has adaptivePacing, which the vendor caller drives .*: it needs pacingPoint PacingPoint.VENDOR_CALL \(given DISPATCH\)/);
  });

  test('GIVEN adaptivePacing THEN metricEffectiveRate reads EffectiveRate (minimum) and the dashboard\'s rate graph shows it', () => {
    const stack = testStack();
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'O', { ...PROPS, contract: adaptiveContract() });
    const metric = orchestrator.metricEffectiveRate();
    expect(metric.metricName).toBe('EffectiveRate');
    expect(metric.statistic).toBe('Minimum');
    expect(metric.namespace).toBe('CdkAsyncExternalApi');
    const body = JSON.parse(flattenCfnString(Object.values(Template.fromStack(stack).findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody));
    const rate = body.widgets.find((w: any) => /Contract vs delivered/.test(w.properties.title ?? ''));
    expect(JSON.stringify(rate.properties.metrics)).toContain('"EffectiveRate"');
    expect(JSON.stringify(rate.properties.metrics)).toContain('effective rate (EffectiveRate, minimum)');
  });
});
