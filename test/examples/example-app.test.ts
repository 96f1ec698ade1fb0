import { CfnElement, Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildExampleApp } from '../../examples/app';
import { KeyLimits, VendorContract } from '../../src';
import { definitionOf } from '../util';

/** The main workflow's definition (the Standard state machine), parsed. */
function mainDefinition(stack: ReturnType<typeof buildExampleApp>['stack']): any {
  return definitionOf(Template.fromStack(stack), stack.getLogicalId(stack.mainWorkflow.node.defaultChild as CfnElement));
}

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

  test('GIVEN a contract with limits per key THEN every task carries the customer as its key and the key settings table is an output (issue 15)', () => {
    const perKey = KeyLimits.of({ requestsPerSecond: 2, maxJobsInFlight: 2 });
    const contract = VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 5, perKey });
    const { stack } = buildExampleApp({ contract, cancelOnTimeout: true });
    const states = mainDefinition(stack).States;
    for (const task of ['SubmitJob', 'FetchResult', 'CancelJob']) {
      expect(JSON.stringify(states[task].Parameters)).toContain('"key.$":"$.customerId"');
    }
    const tableId = stack.getLogicalId(stack.orchestrator.keySettingsTable!.node.defaultChild as CfnElement);
    Template.fromStack(stack).hasOutput('KeySettingsTableName', { Value: { Ref: tableId } });
    // Without perKey the example is unchanged: no key, no table.
    const plain = buildExampleApp().stack;
    expect(JSON.stringify(mainDefinition(plain).States.SubmitJob.Parameters)).not.toContain('key');
    expect(plain.orchestrator.keySettingsTable).toBeUndefined();
  });

  test('GIVEN the default example THEN a timeout fails at once (no cancel call)', () => {
    const states = mainDefinition(buildExampleApp().stack).States;
    expect(states.CancelJob).toBeUndefined();
    expect(states.SubmitJob.Catch[0]).toEqual({ ErrorEquals: ['States.Timeout'], Next: 'VendorTimedOut' });
  });

  test('GIVEN cancelOnTimeout WHEN the submission times out THEN the job is cancelled by its key (endsJobOf) before VendorTimedOut, the state kept', () => {
    const { stack } = buildExampleApp({
      contract: VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 2, maxJobDuration: Duration.minutes(10) }),
      cancelOnTimeout: true,
    });
    const states = mainDefinition(stack).States;
    expect(states.SubmitJob.Catch[0]).toEqual({ ErrorEquals: ['States.Timeout'], ResultPath: '$.error', Next: 'CancelJob' });
    expect(states.CancelJob.Next).toBe('VendorTimedOut');
    expect(states.CancelJob.ResultPath).toBeNull();
    const body = states.CancelJob.Parameters.MessageBody;
    expect(body).toMatchObject({
      'call': { 'method': 'POST', 'path.$': "States.Format('/by-key/{}/cancel', $.orderId)" },
      'requestId.$': "States.Format('{}-cancel', $.orderId)",
      'endsJobOf.$': '$.orderId',
    });
  });

  test('GIVEN cancelOnTimeout without maxJobsInFlight THEN synthesis fails, saying so', () => {
    expect(() => buildExampleApp({ cancelOnTimeout: true })).toThrow(/endsJobOf/);
  });

  test('GIVEN credentialsPerKey WHEN synthesized THEN every vendor call (submission, fetch, cancel) carries the customer\'s key and the credential function reads vendor/{key}', () => {
    // GIVEN / WHEN
    const { stack } = buildExampleApp({
      contract: VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 2, maxJobDuration: Duration.minutes(10) }),
      cancelOnTimeout: true,
      credentialsPerKey: true,
    });

    // THEN
    const states = mainDefinition(stack).States;
    for (const name of ['SubmitJob', 'FetchResult', 'CancelJob']) {
      expect({ name, keyed: JSON.stringify(states[name]).includes('$.customerId') }).toEqual({ name, keyed: true });
    }
    Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: { SECRET_NAME_PATTERN: 'vendor/{key}' } },
    });
    // ... and without it, no key anywhere
    expect(JSON.stringify(mainDefinition(buildExampleApp().stack))).not.toContain('customerId');
  });
});
