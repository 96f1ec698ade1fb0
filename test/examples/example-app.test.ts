import { Template } from 'aws-cdk-lib/assertions';
import { buildExampleApp } from '../../examples/app';

describe('example app', () => {
  test('synthesizes a main workflow that submits, waits and processes the result', () => {
    // GIVEN / WHEN
    const { stack } = buildExampleApp();
    const template = Template.fromStack(stack);

    // THEN: the user's Standard workflow, the Express dispatch workflow and the Express
    // vendor-call workflow (the result fetch)
    template.resourceCountIs('AWS::StepFunctions::StateMachine', 3);
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineType: 'EXPRESS' });
    const definition = JSON.stringify(template.findResources('AWS::StepFunctions::StateMachine'));
    expect(definition).toContain('sqs:sendMessage.waitForTaskToken');
    expect(definition).toContain('ProcessResult');
    expect(definition).toContain('FetchResult');
    expect(definition).toContain('/{}/result');
    expect(definition).toContain('States.Timeout');
  });

  test('the contract flows into every layer', () => {
    // GIVEN / WHEN
    const { stack } = buildExampleApp({ requestsPerSecond: 4 });
    const template = Template.fromStack(stack);

    // THEN
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      StageName: 'vendor',
      MethodSettings: [{ ThrottlingRateLimit: 4, ThrottlingBurstLimit: 2 }],
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: { REQUESTS_PER_SECOND: '4' } },
    });
    expect(stack.orchestrator.consumer.backlogThresholdMessages).toBe(1200);
  });
});
