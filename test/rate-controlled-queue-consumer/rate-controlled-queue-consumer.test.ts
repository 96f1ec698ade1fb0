import { Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { RateControlledQueueConsumer, RateControlledQueueConsumerProps } from '../../src';
import { logicalIdOf, resourcesGranted, statementsOfRole, testApp, testStack } from '../util';

function expressWorkflow(stack: Stack, id = 'Dispatch'): sfn.StateMachine {
  return new sfn.StateMachine(stack, id, {
    stateMachineType: sfn.StateMachineType.EXPRESS,
    definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, `${id}Pass`)),
  });
}

/** A consumer that starts a small Express workflow, as the orchestrator wires it. */
function newConsumer(stack: Stack, props: Partial<RateControlledQueueConsumerProps> = {}): RateControlledQueueConsumer {
  const consumer = new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 10, ...props });
  consumer.dispatchTo(expressWorkflow(stack));
  return consumer;
}

function dispatcherFunction(template: Template): any {
  const functions = Object.values(template.findResources('AWS::Lambda::Function'));
  expect(functions).toHaveLength(1);
  return functions[0].Properties;
}

function eventSourceMapping(template: Template): any {
  const mappings = Object.values(template.findResources('AWS::Lambda::EventSourceMapping'));
  expect(mappings).toHaveLength(1);
  return mappings[0].Properties;
}

describe('RateControlledQueueConsumer', () => {
  describe('event source mapping', () => {
    test.each([
      // [requestsPerSecond, default batch size]
      [0.5, 1],
      [1, 1],
      [2.5, 3],
      [7, 7],
      [10, 10],
      // Above 10, a second of work per invocation (Lambda then needs a 1 s batching window).
      [100, 100],
    ])('defaults the batch size for %p requests per second to %p', (requestsPerSecond, batchSize) => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const consumer = newConsumer(stack, { requestsPerSecond });

      // THEN
      expect(consumer.batchSize).toBe(batchSize);
      expect(eventSourceMapping(Template.fromStack(stack)).BatchSize).toBe(batchSize);
      expect(eventSourceMapping(Template.fromStack(stack)).MaximumBatchingWindowInSeconds).toBe(batchSize > 10 ? 1 : undefined);
    });

    test('caps concurrent invocations at 2 by default, reporting batch item failures', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const consumer = newConsumer(stack);

      // THEN
      expect(consumer.maxConcurrency).toBe(2);
      Template.fromStack(stack).hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        EventSourceArn: stack.resolve(consumer.queue.queueArn),
        FunctionName: stack.resolve(consumer.function.functionName),
        BatchSize: 10,
        ScalingConfig: { MaximumConcurrency: 2 },
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        MaximumBatchingWindowInSeconds: Match.absent(),
      });
    });

    test('uses the maxConcurrency it is given', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newConsumer(stack, { maxConcurrency: 5 });

      // THEN
      expect(eventSourceMapping(Template.fromStack(stack)).ScalingConfig).toEqual({ MaximumConcurrency: 5 });
    });

    test('waits 1 second for a batch when batchSize is above 10', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newConsumer(stack, { batchSize: 20 });

      // THEN
      expect(eventSourceMapping(Template.fromStack(stack))).toMatchObject({ BatchSize: 20, MaximumBatchingWindowInSeconds: 1 });
    });

    test('uses the batching window it is given', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newConsumer(stack, { batchSize: 20, maxBatchingWindow: Duration.seconds(5) });

      // THEN
      expect(eventSourceMapping(Template.fromStack(stack)).MaximumBatchingWindowInSeconds).toBe(5);
    });

    test('fails if maxBatchingWindow is below 1 second with batchSize above 10', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newConsumer(stack, { batchSize: 11, maxBatchingWindow: Duration.millis(500) }))
        .toThrow(/maxBatchingWindow must be at least 1 second when batchSize is above 10/);
    });

    test('fails if maxBatchingWindow is above 5 minutes', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newConsumer(stack, { maxBatchingWindow: Duration.minutes(6) })).toThrow(/maxBatchingWindow must be between/);
    });
  });

  describe('function timeout', () => {
    test('is 30 seconds when pacing takes less: 10 rps, batch 20, maxConcurrency 2', () => {
      // GIVEN 40 messages paced (1000 + 50 + 1) / 10 = 105.1 ms apart: ceil(4.2) = 5 s, plus 15 s of slack
      const stack = testStack();

      // WHEN
      const consumer = newConsumer(stack, { requestsPerSecond: 10, batchSize: 20, maxConcurrency: 2 });

      // THEN
      const template = Template.fromStack(stack);
      const fn = dispatcherFunction(template);
      expect(fn.Timeout).toBe(30);
      expect(fn.Environment.Variables.MAX_PACING_WAIT_MS).toBe('15000');
      template.hasResourceProperties('AWS::SQS::Queue', {
        VisibilityTimeout: 180,
        RedrivePolicy: { deadLetterTargetArn: stack.resolve(consumer.deadLetterQueue.queueArn), maxReceiveCount: 10 },
      });
    });

    test('grows with the pacing: 1 rps, batch 10, maxConcurrency 2', () => {
      // GIVEN 20 messages paced (1000 + 50 + 1) / 1 = 1051 ms apart: ceil(21.02) = 22 s, plus 15 s of slack
      const stack = testStack();

      // WHEN
      newConsumer(stack, { requestsPerSecond: 1, batchSize: 10, maxConcurrency: 2 });

      // THEN
      const template = Template.fromStack(stack);
      const fn = dispatcherFunction(template);
      expect(fn.Timeout).toBe(37);
      expect(fn.Environment.Variables.MAX_PACING_WAIT_MS).toBe('22000');
      template.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 222, RedrivePolicy: Match.anyValue() });
    });

    test('paces at the whole contract below a fractional rate: 2.5 rps paces like 2', () => {
      // GIVEN 2 x 100 messages paced 525.5 ms apart: ceil(105.1) = 106 s, plus 15 s of slack
      const stack = testStack();

      // WHEN
      newConsumer(stack, { requestsPerSecond: 2.5, batchSize: 100, maxConcurrency: 2 });

      // THEN
      expect(dispatcherFunction(Template.fromStack(stack)).Timeout).toBe(121);
    });

    test('accounts for the lateness tolerance', () => {
      // GIVEN 20 messages paced (1000 + 1000 + 1) / 1 ms apart: ceil(40.02) = 41 s, plus 15 s of slack
      const stack = testStack();

      // WHEN
      newConsumer(stack, { requestsPerSecond: 1, batchSize: 10, maxConcurrency: 2, latenessTolerance: Duration.seconds(1) });

      // THEN
      const fn = dispatcherFunction(Template.fromStack(stack));
      expect(fn.Timeout).toBe(56);
      expect(fn.Environment.Variables.LATENESS_TOLERANCE_MS).toBe('1000');
    });

    test('fails if pacing one round of batches would take more than 15 minutes', () => {
      // GIVEN 2 x 500 messages paced 1051 ms apart: 1051 s
      const stack = testStack();

      // WHEN / THEN
      expect(() => newConsumer(stack, { requestsPerSecond: 1, batchSize: 500, maxConcurrency: 2 }))
        .toThrow(/take 1051 s to pace at 1 requests per second, more than a Lambda invocation may run/);
    });

    test('uses the visibility timeout it is given and warns when it is below six times the timeout', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newConsumer(stack, { visibilityTimeout: Duration.seconds(60) });

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 60, RedrivePolicy: Match.anyValue() });
      Annotations.fromStack(stack).hasWarning('/TestStack/Consumer', Match.stringLikeRegexp('visibilityTimeout 1 minute is below six times'));
    });

    test('fails if the visibility timeout is below the function timeout', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newConsumer(stack, { visibilityTimeout: Duration.seconds(29) })).toThrow(/visibilityTimeout must be between 30 seconds and 12 hours/);
    });
  });

  describe('concurrency', () => {
    test('warns when reservedConcurrentExecutions is below maxConcurrency', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newConsumer(stack, { maxConcurrency: 5, reservedConcurrentExecutions: 3 });

      // THEN
      Annotations.fromStack(stack).hasWarning('/TestStack/Consumer',
        Match.stringLikeRegexp('reservedConcurrentExecutions \\(3\\) is below maxConcurrency \\(5\\)'));
      expect(dispatcherFunction(Template.fromStack(stack)).ReservedConcurrentExecutions).toBe(3);
    });

    test('does not warn when reservedConcurrentExecutions covers maxConcurrency', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newConsumer(stack, { maxConcurrency: 5, reservedConcurrentExecutions: 5 });

      // THEN
      Annotations.fromStack(stack).hasNoWarning('*', Match.stringLikeRegexp('reservedConcurrentExecutions'));
    });

    test('puts provisioned concurrency on an alias that the event source mapping invokes', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newConsumer(stack, { provisionedConcurrentExecutions: 2 });

      // THEN
      const template = Template.fromStack(stack);
      const aliases = template.findResources('AWS::Lambda::Alias');
      const [aliasId] = Object.keys(aliases);
      expect(Object.keys(aliases)).toHaveLength(1);
      expect(aliases[aliasId].Properties).toMatchObject({
        Name: 'live',
        ProvisionedConcurrencyConfig: { ProvisionedConcurrentExecutions: 2 },
      });
      // The alias's function name: '<function>:live', from the alias ARN.
      expect(eventSourceMapping(template).FunctionName).toEqual({
        'Fn::Join': ['', [{ 'Fn::Select': [6, { 'Fn::Split': [':', { Ref: aliasId }] }] }, ':live']],
      });
    });

    test('invokes the function itself without provisioned concurrency', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const consumer = newConsumer(stack);

      // THEN
      const template = Template.fromStack(stack);
      template.resourceCountIs('AWS::Lambda::Alias', 0);
      expect(eventSourceMapping(template).FunctionName).toEqual(stack.resolve(consumer.function.functionName));
    });
  });

  describe('alarms', () => {
    test('alarms when the backlog exceeds 5 minutes of work at the contract', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const consumer = newConsumer(stack, { requestsPerSecond: 10 });

      // THEN
      expect(consumer.backlogThresholdMessages).toBe(3000);
      Template.fromStack(stack).hasResourceProperties('AWS::CloudWatch::Alarm', {
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: stack.resolve(consumer.queue.queueName) }],
        Threshold: 3000,
        ComparisonOperator: 'GreaterThanThreshold',
      });
    });

    test('uses the backlog threshold it is given', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newConsumer(stack, { requestsPerSecond: 4, backlogAlarmThreshold: Duration.minutes(1) });

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::CloudWatch::Alarm', { Threshold: 240, ComparisonOperator: 'GreaterThanThreshold' });
    });

    test('alarms as soon as one request is parked in the dead-letter queue', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const consumer = newConsumer(stack);

      // THEN
      const template = Template.fromStack(stack);
      template.resourceCountIs('AWS::CloudWatch::Alarm', 2);
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Dimensions: [{ Name: 'QueueName', Value: stack.resolve(consumer.deadLetterQueue.queueName) }],
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        EvaluationPeriods: 1,
      });
    });
  });

  describe('queues', () => {
    test('encrypts both queues and denies requests without TLS', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const consumer = newConsumer(stack);

      // THEN
      const template = Template.fromStack(stack);
      template.resourceCountIs('AWS::SQS::Queue', 2);
      for (const queue of Object.values(template.findResources('AWS::SQS::Queue'))) {
        expect(queue.Properties.SqsManagedSseEnabled).toBe(true);
      }
      for (const queue of [consumer.queue, consumer.deadLetterQueue]) {
        template.hasResourceProperties('AWS::SQS::QueuePolicy', {
          Queues: [stack.resolve(queue.queueUrl)],
          PolicyDocument: {
            Statement: Match.arrayWith([Match.objectLike({
              Effect: 'Deny',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            })]),
          },
        });
      }
    });

    test('encrypts both queues with the KMS key it is given', () => {
      // GIVEN
      const stack = testStack();
      const key = new kms.Key(stack, 'Key');

      // WHEN
      newConsumer(stack, { encryptionKey: key });

      // THEN
      for (const queue of Object.values(Template.fromStack(stack).findResources('AWS::SQS::Queue'))) {
        expect(queue.Properties.KmsMasterKeyId).toEqual(stack.resolve(key.keyArn));
      }
    });

    test('grantSendRequests lets the grantee send to the request queue', () => {
      // GIVEN
      const stack = testStack();
      const consumer = newConsumer(stack);
      const role = new iam.Role(stack, 'Sender', { assumedBy: new iam.ServicePrincipal('states.amazonaws.com') });

      // WHEN
      consumer.grantSendRequests(role);

      // THEN
      const statements = statementsOfRole(Template.fromStack(stack), stack, role);
      expect(resourcesGranted(statements, 'sqs:SendMessage')).toEqual([stack.resolve(consumer.queue.queueArn)]);
    });
  });

  describe('dispatcher', () => {
    test('is configured through its environment', () => {
      // GIVEN
      const stack = testStack();
      const consumer = new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 10, correlationTtl: Duration.hours(3) });
      const workflow = expressWorkflow(stack);

      // WHEN
      consumer.dispatchTo(workflow);

      // THEN
      expect(dispatcherFunction(Template.fromStack(stack)).Environment.Variables).toMatchObject({
        STATE_MACHINE_ARN: { Ref: logicalIdOf(stack, workflow) },
        REQUESTS_PER_SECOND: '10',
        PACER_TABLE_NAME: stack.resolve(consumer.pacerTable.tableName),
        MAX_PACING_WAIT_MS: '15000',
        LATENESS_TOLERANCE_MS: '50',
        CORRELATION_TTL_SECONDS: '10800',
        DEAD_LETTER_QUEUE_URL: stack.resolve(consumer.deadLetterQueue.queueUrl),
      });
    });

    test('keeps correlations 2 days by default', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newConsumer(stack);

      // THEN
      expect(dispatcherFunction(Template.fromStack(stack)).Environment.Variables.CORRELATION_TTL_SECONDS).toBe('172800');
    });

    test('may start the workflow, use the pacer table, park requests and re-send postponed ones', () => {
      // GIVEN
      const stack = testStack();
      const consumer = new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 10 });
      const workflow = expressWorkflow(stack);

      // WHEN
      consumer.dispatchTo(workflow);

      // THEN
      const statements = statementsOfRole(Template.fromStack(stack), stack, consumer.function.role!);
      expect(resourcesGranted(statements, 'states:StartExecution')).toEqual([{ Ref: logicalIdOf(stack, workflow) }]);
      expect(resourcesGranted(statements, 'dynamodb:UpdateItem')).toEqual([stack.resolve(consumer.pacerTable.tableArn)]);
      // Parks malformed requests in the DLQ; postpones by re-sending a delayed copy (issue 11, finding 7).
      expect(resourcesGranted(statements, 'sqs:SendMessage')).toEqual(expect.arrayContaining([
        stack.resolve(consumer.deadLetterQueue.queueArn), stack.resolve(consumer.queue.queueArn),
      ]));
      expect(resourcesGranted(statements, 'sqs:SendMessage')).toHaveLength(2);
      expect(resourcesGranted(statements, 'sqs:ReceiveMessage')).toEqual([stack.resolve(consumer.queue.queueArn)]);
    });

    test('accepts the workflow as a prop', () => {
      // GIVEN
      const stack = testStack();
      const workflow = expressWorkflow(stack);

      // WHEN
      new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 10, stateMachine: workflow });

      // THEN
      expect(dispatcherFunction(Template.fromStack(stack)).Environment.Variables.STATE_MACHINE_ARN).toEqual({ Ref: logicalIdOf(stack, workflow) });
    });

    test('fails synthesis if dispatchTo is never called', () => {
      // GIVEN
      const app = testApp();
      const stack = testStack(app);

      // WHEN
      new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 10 });

      // THEN
      expect(() => app.synth()).toThrow(/no workflow to start/);
    });

    test('fails if dispatchTo is called twice', () => {
      // GIVEN
      const stack = testStack();
      const consumer = newConsumer(stack);

      // WHEN / THEN
      expect(() => consumer.dispatchTo(expressWorkflow(stack, 'Second'))).toThrow(/dispatchTo\(\) was already called/);
    });

    test('fails if dispatchTo is called after stateMachine was given', () => {
      // GIVEN
      const stack = testStack();
      const consumer = new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 10, stateMachine: expressWorkflow(stack) });

      // WHEN / THEN
      expect(() => consumer.dispatchTo(expressWorkflow(stack, 'Second'))).toThrow(/a consumer starts exactly one workflow/);
    });
  });

  describe('validation', () => {
    test.each([1, 1001, 2.5])('fails if maxConcurrency is %p', (maxConcurrency) => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newConsumer(stack, { maxConcurrency })).toThrow(/maxConcurrency must be a whole number between 2 and 1000/);
    });

    test.each([0, 10_001, 1.5])('fails if batchSize is %p', (batchSize) => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newConsumer(stack, { batchSize })).toThrow(/batchSize must be a whole number between 1 and 10000/);
    });

    test.each([0, -5, 10_001])('fails if requestsPerSecond is %p', (requestsPerSecond) => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newConsumer(stack, { requestsPerSecond })).toThrow(/requestsPerSecond must be above 0 and at most 10000/);
    });

    test.each([0, 1001])('fails if maxReceiveCount is %p', (maxReceiveCount) => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newConsumer(stack, { maxReceiveCount })).toThrow(/maxReceiveCount must be a whole number between 1 and 1000/);
    });

    test('fails if reservedConcurrentExecutions is 0', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newConsumer(stack, { reservedConcurrentExecutions: 0 }))
        .toThrow(/reservedConcurrentExecutions must be a whole number between 1 and 10000/);
    });

    test('fails if latenessTolerance is above 1 second', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newConsumer(stack, { latenessTolerance: Duration.seconds(2) })).toThrow(/latenessTolerance must be between/);
    });

    test('fails if correlationTtl is below 1 minute', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newConsumer(stack, { correlationTtl: Duration.seconds(30) })).toThrow(/correlationTtl must be between/);
    });
  });
});
