import { Aspects, Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { AsyncExternalApiOrchestrator, ConsumerTrigger, ConsumerTriggerType, RateControlledQueueConsumer, RateControlledQueueConsumerProps } from '../../src';
import { logicalIdOf, resourcesGranted, statementsOfRole, TEST_ENV, testApp, testStack } from '../util';

function newConsumer(stack: Stack, props: Partial<RateControlledQueueConsumerProps> = {}): RateControlledQueueConsumer {
  const consumer = new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 0.1, trigger: ConsumerTrigger.schedule(), ...props });
  consumer.dispatchTo(new sfn.StateMachine(stack, 'Dispatch', {
    stateMachineType: sfn.StateMachineType.EXPRESS,
    definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'DispatchPass')),
  }));
  return consumer;
}

function dispatcher(template: Template): any {
  const functions = Object.values(template.findResources('AWS::Lambda::Function'));
  expect(functions).toHaveLength(1);
  return functions[0].Properties;
}

describe('ConsumerTrigger', () => {
  test('schedule() defaults to one tick a minute; eventSource() has no period', () => {
    expect(ConsumerTrigger.schedule().type).toBe(ConsumerTriggerType.SCHEDULE);
    expect(ConsumerTrigger.schedule().every?.toMinutes()).toBe(1);
    expect(ConsumerTrigger.schedule({ every: Duration.minutes(5) }).every?.toMinutes()).toBe(5);
    expect(ConsumerTrigger.eventSource().type).toBe(ConsumerTriggerType.EVENT_SOURCE);
    expect(ConsumerTrigger.eventSource().every).toBeUndefined();
  });
});

describe('RateControlledQueueConsumer with the schedule trigger', () => {
  test('replaces the event source mapping with a rate schedule invoking the dispatcher, time window off', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    const consumer = newConsumer(stack);

    // THEN
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::Lambda::EventSourceMapping', 0);
    template.resourceCountIs('AWS::Scheduler::Schedule', 1);
    const fnId = logicalIdOf(stack, consumer.function);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: {
        Arn: { 'Fn::GetAtt': [fnId, 'Arn'] },
        RoleArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('ConsumerScheduleRole'), 'Arn'] },
        Input: Match.serializedJson({
          kind: 'ScheduledDrainTick',
          scheduledTime: '<aws.scheduler.scheduled-time>',
          executionId: '<aws.scheduler.execution-id>',
        }),
        RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 60 },
      },
    });
    expect(consumer.schedule).toBeDefined();
  });

  test('the schedule role may invoke the dispatcher and nothing else; Scheduler of this account only', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    const consumer = newConsumer(stack);

    // THEN
    const template = Template.fromStack(stack);
    const roles = template.findResources('AWS::IAM::Role', {
      Properties: { AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: 'scheduler.amazonaws.com' } })] } },
    });
    expect(Object.keys(roles)).toHaveLength(1);
    const [roleId, role] = Object.entries(roles)[0];
    expect(role.Properties.AssumeRolePolicyDocument.Statement[0].Condition).toEqual({ StringEquals: { 'aws:SourceAccount': TEST_ENV.account } });
    const policies = Object.values(template.findResources('AWS::IAM::Policy'))
      .filter((p: any) => p.Properties.Roles.some((r: any) => r.Ref === roleId));
    const actions = policies.flatMap((p: any) => p.Properties.PolicyDocument.Statement.flatMap((s: any) => [].concat(s.Action)));
    expect(actions).toEqual(['lambda:InvokeFunction']);
    expect(consumer.schedule).toBeDefined();
  });

  test('one tick at a time without reserved concurrency (new accounts refuse any): timeout below the period, no Lambda retries of a tick', () => {
    // Regression (issue 11, finding 2): the schedule trigger set ReservedConcurrentExecutions 1,
    // which an account whose unreserved concurrency is at its minimum refuses at deploy time.
    // GIVEN
    const stack = testStack();

    // WHEN
    newConsumer(stack, { trigger: ConsumerTrigger.schedule({ every: Duration.minutes(2) }) });

    // THEN
    const template = Template.fromStack(stack);
    expect(dispatcher(template)).toMatchObject({ Timeout: 115 });
    expect(dispatcher(template).ReservedConcurrentExecutions).toBeUndefined();
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 120 });
    template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(2 minutes)' });
  });

  test('reserved concurrency 1 stays available as an option, without the maxConcurrency warning', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    newConsumer(stack, { trigger: ConsumerTrigger.schedule(), reservedConcurrentExecutions: 1 });

    // THEN
    expect(dispatcher(Template.fromStack(stack)).ReservedConcurrentExecutions).toBe(1);
    Annotations.fromStack(stack).hasNoWarning('*', Match.stringLikeRegexp('reservedConcurrentExecutions'));
  });

  test('the dispatcher may receive, delete and postpone request messages, and knows its tick budget', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    const consumer = newConsumer(stack, { requestsPerSecond: 0.5 });

    // THEN
    const template = Template.fromStack(stack);
    const statements = statementsOfRole(template, stack, consumer.function.role!);
    const queueArn = { 'Fn::GetAtt': [logicalIdOf(stack, consumer.queue), 'Arn'] };
    for (const action of ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility']) {
      expect(resourcesGranted(statements, action)).toContainEqual(queueArn);
    }
    expect(consumer.maxMessagesPerTick).toBe(30);
    expect(dispatcher(template).Environment.Variables).toMatchObject({
      REQUEST_QUEUE_URL: { Ref: logicalIdOf(stack, consumer.queue) },
      REQUEST_QUEUE_ARN: queueArn,
      MAX_MESSAGES_PER_TICK: '30',
      REQUESTS_PER_SECOND: '0.5',
    });
    // Received messages stay hidden for longer than a tick can run.
    template.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 55 * 6 });
  });

  test.each([
    // [requestsPerSecond, period in minutes, floor(R x period)]
    [0.1, 1, 6],
    [0.01, 2, 1],
    [0.5, 5, 150],
  ])('a tick drains at most floor(%p rps x %p min)', (requestsPerSecond, minutes, perTick) => {
    const stack = testStack();
    const consumer = newConsumer(stack, { requestsPerSecond, trigger: ConsumerTrigger.schedule({ every: Duration.minutes(minutes) }) });
    expect(consumer.maxMessagesPerTick).toBe(perTick);
  });

  test('fails when a tick could drain nothing at the contract', () => {
    expect(() => newConsumer(testStack(), { requestsPerSecond: 0.01 }))
      .toThrow(/a tick of 1 minute at 0.01 requests per second may drain floor\(0.01 x 60 s\) = 0 messages: make the period \(every\) at least 2 minute/);
  });

  test('fails on a period below a minute or not in whole minutes', () => {
    expect(() => newConsumer(testStack(), { trigger: ConsumerTrigger.schedule({ every: Duration.seconds(30) }) }))
      .toThrow(/schedule trigger period \(every\) must be between 1 minute and 1 day \(given 30 seconds\)/);
    expect(() => newConsumer(testStack(), { trigger: ConsumerTrigger.schedule({ every: Duration.seconds(90) }) }))
      .toThrow(/must be whole minutes \(given 1 minute 30 seconds\)/);
  });

  test('fails on event source options', () => {
    expect(() => newConsumer(testStack(), { batchSize: 5, maxConcurrency: 3 }))
      .toThrow(/batchSize, maxConcurrency configure the event source mapping and do not apply to the schedule trigger/);
    expect(() => newConsumer(testStack(), { reservedConcurrentExecutions: 2 }))
      .toThrow(/reservedConcurrentExecutions must be 1 or left out with the schedule trigger \(given 2\)/);
  });

  test('warns when chosen at 1 rps or more (latency cost), not below', () => {
    const fast = testStack();
    newConsumer(fast, { requestsPerSecond: 2 });
    Annotations.fromStack(fast).hasWarning('*', Match.stringLikeRegexp('meant for contracts below about 1 request per second \\(given 2\\): a request waits up to one period'));

    const slow = testStack();
    newConsumer(slow, { requestsPerSecond: 0.5 });
    expect(Annotations.fromStack(slow).findWarning('*', Match.stringLikeRegexp('meant for contracts below'))).toHaveLength(0);
  });

  test('warns when the period is longer than a Lambda invocation can drain', () => {
    const stack = testStack();
    const consumer = newConsumer(stack, { trigger: ConsumerTrigger.schedule({ every: Duration.hours(1) }) });
    expect(dispatcher(Template.fromStack(stack)).Timeout).toBe(900);
    expect(consumer.maxMessagesPerTick).toBe(360);
    Annotations.fromStack(stack).hasWarning('*', Match.stringLikeRegexp('at most about 25% of the contract is used'));
  });

  test('the event source trigger (default) keeps the event source mapping and no schedule', () => {
    const stack = testStack();
    const consumer = newConsumer(stack, { requestsPerSecond: 10, trigger: ConsumerTrigger.eventSource() });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::Lambda::EventSourceMapping', 1);
    template.resourceCountIs('AWS::Scheduler::Schedule', 0);
    expect(consumer.schedule).toBeUndefined();
    expect(consumer.maxMessagesPerTick).toBeUndefined();
  });
});

describe('AsyncExternalApiOrchestrator with the schedule trigger', () => {
  test('passes consumer.trigger through, and stays cdk-nag AwsSolutions clean', () => {
    // GIVEN
    const stack = new Stack(testApp(), 'LowRate', { env: TEST_ENV });

    // WHEN
    new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://api.vendor.example/v1/jobs',
      requestsPerSecond: 0.2,
      callbackTimeout: Duration.minutes(10),
      consumer: { trigger: ConsumerTrigger.schedule({ every: Duration.minutes(5) }) },
    });
    Aspects.of(stack).add(new AwsSolutionsChecks({ verbose: true }));

    // THEN
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::Lambda::EventSourceMapping', 1); // the callback processor's only
    template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(5 minutes)' });
    const annotations = Annotations.fromStack(stack);
    const findings = [
      ...annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-.*')),
      ...annotations.findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*')),
    ].map((m) => `${m.id}: ${String(m.entry.data).split('\n')[0]}`);
    expect(findings).toEqual([]);
  });
});
