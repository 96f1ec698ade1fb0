import { Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator, DynamicDelay, RateControlledQueueConsumer } from '../../src';
import { DYNAMIC_DELAY_JSON_SCHEMA, dynamicDelayJsonSchema, DynamicDelayEnv } from '../../src/rate-controlled-queue-consumer/dynamic-delay-env';
import { flattenCfnString, resourcesGranted, statementsOfRole, testStack } from '../util';

function consumerWith(stack: Stack, dynamicDelay?: { pollInterval?: Duration }): RateControlledQueueConsumer {
  const consumer = new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 10, dynamicDelay });
  consumer.dispatchTo(new sfn.StateMachine(stack, 'Dispatch', {
    stateMachineType: sfn.StateMachineType.EXPRESS,
    definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'Pass')),
  }));
  return consumer;
}

describe('DynamicDelay', () => {
  test('off by default: no AppConfig resource, no variable', () => {
    const stack = testStack();
    const consumer = consumerWith(stack);
    const template = Template.fromStack(stack);
    expect(consumer.dynamicDelay).toBeUndefined();
    for (const type of ['Application', 'Environment', 'ConfigurationProfile', 'HostedConfigurationVersion', 'Deployment']) {
      template.resourceCountIs(`AWS::AppConfig::${type}`, 0);
    }
    const variables = Object.values(template.findResources('AWS::Lambda::Function'))[0].Properties.Environment.Variables;
    expect(Object.keys(variables)).not.toContain(DynamicDelayEnv.APPLICATION_ID);
  });

  test('opt-in: a hosted, schema-validated profile, initial {"extraDelayMs":0} deployed with an immediate strategy', () => {
    const stack = testStack();
    const consumer = consumerWith(stack, {});
    const template = Template.fromStack(stack);
    expect(consumer.dynamicDelay).toBeInstanceOf(DynamicDelay);

    template.resourceCountIs('AWS::AppConfig::Application', 1);
    template.hasResourceProperties('AWS::AppConfig::Environment', { Name: 'live' });
    template.hasResourceProperties('AWS::AppConfig::ConfigurationProfile', {
      LocationUri: 'hosted',
      Type: 'AWS.Freeform',
      // The consumer's contract (10) is the ceiling of the rate in force.
      Validators: [{ Type: 'JSON_SCHEMA', Content: JSON.stringify(dynamicDelayJsonSchema(10)) }],
    });
    template.hasResourceProperties('AWS::AppConfig::HostedConfigurationVersion', {
      Content: '{"extraDelayMs":0}',
      ContentType: 'application/json',
    });
    template.hasResourceProperties('AWS::AppConfig::DeploymentStrategy', {
      DeploymentDurationInMinutes: 0,
      FinalBakeTimeInMinutes: 0,
      GrowthFactor: 100,
      ReplicateTo: 'NONE',
    });
    template.hasResourceProperties('AWS::AppConfig::Deployment', {
      ConfigurationVersion: { Ref: Match.stringLikeRegexp('InitialVersion') },
      DeploymentStrategyId: { Ref: Match.stringLikeRegexp('DeploymentStrategy') },
    });
  });

  test('the schema accepts exactly an integer extraDelayMs from 0 to 60000 and nothing else', () => {
    const schema = DYNAMIC_DELAY_JSON_SCHEMA;
    expect(schema.required).toEqual(['extraDelayMs']);
    expect(schema.additionalProperties).toBe(false);
    expect(schema.properties.extraDelayMs).toEqual({ type: 'integer', minimum: 0, maximum: 60000 });
  });

  test('the dispatcher gets the variables and read access to this configuration only', () => {
    const stack = testStack();
    const consumer = consumerWith(stack, { pollInterval: Duration.seconds(15) });
    const template = Template.fromStack(stack);
    const variables = Object.values(template.findResources('AWS::Lambda::Function'))[0].Properties.Environment.Variables;
    const delay = consumer.dynamicDelay!;
    expect(variables[DynamicDelayEnv.APPLICATION_ID]).toEqual({ Ref: stack.resolve(delay.application.logicalId) });
    expect(variables[DynamicDelayEnv.ENVIRONMENT_ID]).toEqual({ Ref: stack.resolve(delay.environment.logicalId) });
    expect(variables[DynamicDelayEnv.CONFIGURATION_PROFILE_ID]).toEqual({ Ref: stack.resolve(delay.configurationProfile.logicalId) });
    expect(variables[DynamicDelayEnv.POLL_INTERVAL_SECONDS]).toBe('15');

    const statements = statementsOfRole(template, stack, consumer.function.role!);
    for (const action of ['appconfig:StartConfigurationSession', 'appconfig:GetLatestConfiguration']) {
      const resources = resourcesGranted(statements, action);
      expect(resources).toHaveLength(1);
      expect(flattenCfnString(resources[0])).toMatch(/^arn:aws:appconfig:[^:]+:\d+:application\/PLACEHOLDER-\w*Application\w*\/environment\/PLACEHOLDER-\w*Environment\w*\/configuration\/PLACEHOLDER-\w*ConfigurationProfile\w*$/);
    }
  });

  test('the poll interval is validated: 15 seconds to 1 hour, whole seconds', () => {
    expect(() => consumerWith(testStack(), { pollInterval: Duration.seconds(5) })).toThrow(/dynamicDelay.pollInterval/);
    expect(() => consumerWith(testStack(), { pollInterval: Duration.hours(2) })).toThrow(/dynamicDelay.pollInterval/);
    expect(() => consumerWith(testStack(), { pollInterval: Duration.millis(15500) })).toThrow(/whole number/);
  });

  test('operatorCommands: the two CLI calls with the ids, and only valid values', () => {
    const stack = testStack();
    const delay = new DynamicDelay(stack, 'Delay');
    const commands = stack.resolve(delay.operatorCommands(500));
    const text = flattenCfnString(commands);
    expect(text).toContain('aws appconfig create-hosted-configuration-version');
    expect(text).toContain('--content \'{"extraDelayMs":500}\'');
    expect(text).toContain('aws appconfig start-deployment');
    expect(text).toContain('--configuration-version "$VERSION"');
    expect(() => delay.operatorCommands(-1)).toThrow(/extraDelayMs/);
    expect(() => delay.operatorCommands(60001)).toThrow(/extraDelayMs/);
  });

  test('the orchestrator passes consumer.dynamicDelay through', () => {
    const stack = testStack();
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/jobs',
      requestsPerSecond: 5,
      callbackTimeout: Duration.minutes(5),
      consumer: { dynamicDelay: {} },
    });
    expect(orchestrator.consumer.dynamicDelay).toBeDefined();
    Template.fromStack(stack).resourceCountIs('AWS::AppConfig::Deployment', 1);
  });
});
