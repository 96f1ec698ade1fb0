import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { validateJsonSchema } from '../../local/aws/appconfig';
import { AsyncExternalApiOrchestrator, DynamicDelay, RateControlledQueueConsumer } from '../../src';
import { dynamicDelayJsonSchema, INITIAL_DYNAMIC_DELAY_CONTENT } from '../../src/rate-controlled-queue-consumer/dynamic-delay-env';
import { flattenCfnString, testStack } from '../util';

// The rate at run time, construct side: the contract is the ceiling AppConfig enforces, the
// operator commands, the metric and the dashboard line.

describe('the rate in force in the dynamic-delay configuration', () => {
  test('GIVEN a 10 RPS contract WHEN the schema validates THEN requestsPerSecond 0.01..10 passes, above the ceiling or 0 is refused, the delay-only content stays valid', () => {
    const schema = dynamicDelayJsonSchema(10);
    expect(validateJsonSchema(schema, JSON.parse(INITIAL_DYNAMIC_DELAY_CONTENT), '$')).toEqual([]);
    expect(validateJsonSchema(schema, { extraDelayMs: 0, requestsPerSecond: 4 }, '$')).toEqual([]);
    expect(validateJsonSchema(schema, { extraDelayMs: 0, requestsPerSecond: 10 }, '$')).toEqual([]);
    expect(validateJsonSchema(schema, { extraDelayMs: 0, requestsPerSecond: 0.5 }, '$')).toEqual([]);
    expect(validateJsonSchema(schema, { extraDelayMs: 0, requestsPerSecond: 10.5 }, '$')).toEqual(['$.requestsPerSecond must be <= 10, got 10.5']);
    expect(validateJsonSchema(schema, { extraDelayMs: 0, requestsPerSecond: 0 }, '$')).toEqual(['$.requestsPerSecond must be >= 0.01, got 0']);
    // Without a ceiling the configuration takes no rate.
    expect(validateJsonSchema(dynamicDelayJsonSchema(), { extraDelayMs: 0, requestsPerSecond: 4 }, '$')).toEqual(['$.requestsPerSecond is not allowed']);
  });

  test('GIVEN a consumer with a dynamic delay WHEN synthesized THEN the profile validator carries the contract as the ceiling', () => {
    const stack = testStack();
    new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 25, dynamicDelay: {} }).dispatchTo(new sfn.StateMachine(stack, 'Dispatch', {
      stateMachineType: sfn.StateMachineType.EXPRESS,
      definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'Pass')),
    }));
    const profile = Object.values(Template.fromStack(stack).findResources('AWS::AppConfig::ConfigurationProfile'))[0];
    const schema = JSON.parse(profile.Properties.Validators[0].Content);
    expect(schema.properties.requestsPerSecond).toEqual({ type: 'number', minimum: 0.01, maximum: 25 });
  });

  test('GIVEN operatorCommands with a rate WHEN rendered THEN the content carries it; outside 0.01..ceiling or without a ceiling it throws', () => {
    const stack = testStack();
    const delay = new DynamicDelay(stack, 'Delay', { maxRequestsPerSecond: 10 });
    expect(flattenCfnString(stack.resolve(delay.operatorCommands(0, 4)))).toContain('--content \'{"extraDelayMs":0,"requestsPerSecond":4}\'');
    expect(() => delay.operatorCommands(0, 11)).toThrow(/between 0.01 and the contract of 10 \(given 11\)/);
    expect(() => delay.operatorCommands(0, 0)).toThrow(/requestsPerSecond/);
    expect(() => new DynamicDelay(stack, 'NoCeiling').operatorCommands(0, 4)).toThrow(/needs a DynamicDelay with maxRequestsPerSecond/);
    expect(() => new DynamicDelay(stack, 'BadCeiling', { maxRequestsPerSecond: -1 })).toThrow(/requestsPerSecond/);
  });

  test('GIVEN an orchestrator with a dynamic delay WHEN synthesized THEN metricRateInForce is the RateInForce minimum and the dashboard charts it', () => {
    const stack = testStack();
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/jobs',
      requestsPerSecond: 5,
      callbackTimeout: Duration.minutes(5),
      consumer: { dynamicDelay: {} },
    });
    const metric = orchestrator.consumer.metricRateInForce();
    expect(metric.metricName).toBe('RateInForce');
    expect(metric.statistic).toBe('Minimum');
    const dashboards = Template.fromStack(stack).findResources('AWS::CloudWatch::Dashboard');
    const body = JSON.stringify(stack.resolve(Object.values(dashboards)[0].Properties.DashboardBody));
    expect(body).toContain('RateInForce');
  });

  test('GIVEN an orchestrator without a dynamic delay WHEN synthesized THEN the dashboard has no rate-in-force line', () => {
    const stack = testStack();
    new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/jobs',
      requestsPerSecond: 5,
      callbackTimeout: Duration.minutes(5),
    });
    const dashboards = Template.fromStack(stack).findResources('AWS::CloudWatch::Dashboard');
    expect(JSON.stringify(stack.resolve(Object.values(dashboards)[0].Properties.DashboardBody))).not.toContain('RateInForce');
  });
});
