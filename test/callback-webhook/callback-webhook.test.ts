import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { CallbackWebhook, CallbackWebhookProps, TokenCorrelationTable } from '../../src';
import { CALLBACK_QUEUED_RESPONSE_TEMPLATE, callbackRequestTemplate } from '../../src/callback-webhook/mapping-template';
import { logicalIdOf, resourcesGranted, statementsOfRole, testStack } from '../util';

function newWebhook(stack: Stack, props: Partial<CallbackWebhookProps> = {}): { webhook: CallbackWebhook; table: TokenCorrelationTable } {
  const table = new TokenCorrelationTable(stack, 'Table');
  const webhook = new CallbackWebhook(stack, 'Webhook', { table, ...props });
  return { webhook, table };
}

function workflow(stack: Stack, id: string): sfn.StateMachine {
  return new sfn.StateMachine(stack, id, { definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, `${id}Pass`)) });
}

/** The POST /callback method. */
function callbackMethod(template: Template): any {
  const methods = Object.values(template.findResources('AWS::ApiGateway::Method', { Properties: { HttpMethod: 'POST' } }));
  expect(methods).toHaveLength(1);
  return methods[0].Properties;
}

describe('CallbackWebhook', () => {
  describe('callback queue', () => {
    test('creates a callback queue and a dead-letter queue encrypted with SQS-managed keys', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const { webhook } = newWebhook(stack);

      // THEN
      const template = Template.fromStack(stack);
      template.resourceCountIs('AWS::SQS::Queue', 2);
      template.hasResourceProperties('AWS::SQS::Queue', {
        SqsManagedSseEnabled: true,
        RedrivePolicy: {
          deadLetterTargetArn: stack.resolve(webhook.deadLetterQueue.queueArn),
          maxReceiveCount: 10,
        },
        // Six times the processor's 30 seconds.
        VisibilityTimeout: 180,
        // SQS's largest message: a body of up to about 729 KiB reaches the processor (finding 1).
        MaximumMessageSize: 1_048_576,
      });
      template.hasResourceProperties('AWS::SQS::Queue', {
        SqsManagedSseEnabled: true,
        MessageRetentionPeriod: 1_209_600,
        RedrivePolicy: Match.absent(),
        MaximumMessageSize: 1_048_576,
      });
    });

    test('uses the maxReceiveCount it is given', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newWebhook(stack, { maxReceiveCount: 4 });

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::SQS::Queue', {
        RedrivePolicy: Match.objectLike({ maxReceiveCount: 4 }),
      });
    });

    test('encrypts both queues with the KMS key it is given', () => {
      // GIVEN
      const stack = testStack();
      const key = new kms.Key(stack, 'Key');

      // WHEN
      const { webhook } = newWebhook(stack, { encryptionKey: key });

      // THEN
      const template = Template.fromStack(stack);
      const queues = Object.values(template.findResources('AWS::SQS::Queue'));
      expect(queues).toHaveLength(2);
      for (const queue of queues) {
        expect(queue.Properties.KmsMasterKeyId).toEqual(stack.resolve(key.keyArn));
        expect(queue.Properties.SqsManagedSseEnabled).toBeUndefined();
      }
      // API Gateway encrypts what it sends, the processor decrypts what it receives.
      const keyArn = stack.resolve(key.keyArn);
      const integrationRole = webhook.node.findChild('IntegrationRole') as iam.Role;
      expect(resourcesGranted(statementsOfRole(template, stack, integrationRole), 'kms:GenerateDataKey*')).toContainEqual(keyArn);
      expect(resourcesGranted(statementsOfRole(template, stack, webhook.processor.role!), 'kms:Decrypt')).toContainEqual(keyArn);
    });

    test('denies every request to either queue that does not use TLS', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const { webhook } = newWebhook(stack);

      // THEN
      const template = Template.fromStack(stack);
      for (const queue of [webhook.queue, webhook.deadLetterQueue]) {
        template.hasResourceProperties('AWS::SQS::QueuePolicy', {
          Queues: [stack.resolve(queue.queueUrl)],
          PolicyDocument: {
            Statement: Match.arrayWith([{
              Effect: 'Deny',
              Action: 'sqs:*',
              Principal: { AWS: '*' },
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
              Resource: stack.resolve(queue.queueArn),
            }]),
          },
        });
      }
    });

    test('alarms as soon as one callback is parked in the dead-letter queue', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const { webhook } = newWebhook(stack);

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: stack.resolve(webhook.deadLetterQueue.queueName) }],
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        EvaluationPeriods: 1,
        TreatMissingData: 'notBreaching',
      });
    });
  });

  describe('REST API', () => {
    test('exposes POST /callback without authorization on a throttled regional stage', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const { webhook } = newWebhook(stack, { requestsPerSecond: 20 });

      // THEN
      const template = Template.fromStack(stack);
      template.hasResourceProperties('AWS::ApiGateway::Resource', { PathPart: 'callback' });
      template.resourceCountIs('AWS::ApiGateway::Method', 1);
      expect(callbackMethod(template).AuthorizationType).toBe('NONE');
      template.hasResourceProperties('AWS::ApiGateway::Stage', {
        StageName: 'webhook',
        // Four times the contract, at least 50.
        MethodSettings: [Match.objectLike({ ThrottlingRateLimit: 80, ThrottlingBurstLimit: 80 })],
        AccessLogSetting: { DestinationArn: stack.resolve(webhook.accessLogGroup.logGroupArn), Format: Match.anyValue() },
      });
      expect(stack.resolve(webhook.url)).toEqual({
        'Fn::Join': ['', [
          'https://', stack.resolve(webhook.restApi.restApiId), '.execute-api.us-east-1.', { Ref: 'AWS::URLSuffix' }, '/',
          stack.resolve(webhook.restApi.deploymentStage.stageName), '/callback',
        ]],
      });
    });

    test('throttles the stage to at least 50 requests per second', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newWebhook(stack, { requestsPerSecond: 1 });

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::ApiGateway::Stage', {
        MethodSettings: [Match.objectLike({ ThrottlingRateLimit: 50, ThrottlingBurstLimit: 50 })],
      });
    });

    test('sends callbacks straight to the callback queue through an AWS integration', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const { webhook } = newWebhook(stack);

      // THEN
      const method = callbackMethod(Template.fromStack(stack));
      expect(method.Integration).toMatchObject({
        Type: 'AWS',
        IntegrationHttpMethod: 'POST',
        PassthroughBehavior: 'NEVER',
        RequestParameters: { 'integration.request.header.Content-Type': "'application/x-www-form-urlencoded'" },
        RequestTemplates: { 'application/json': callbackRequestTemplate({ tokenFromPath: true }) },
      });
      expect(Object.keys(method.Integration.RequestTemplates)).toEqual(['application/json']);
      const uri = JSON.stringify(method.Integration.Uri);
      expect(uri).toContain(':sqs:path/123456789012/');
      expect(method.Integration.Uri).toEqual({
        'Fn::Join': ['', [
          'arn:', { Ref: 'AWS::Partition' }, ':apigateway:us-east-1:sqs:path/123456789012/',
          stack.resolve(webhook.queue.queueName),
        ]],
      });
    });

    test('answers 202 once the callback is queued and 500 when it is not', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newWebhook(stack);

      // THEN
      const method = callbackMethod(Template.fromStack(stack));
      expect(method.Integration.IntegrationResponses).toEqual([
        // 202, or 413 (responseOverride) when the body was dropped as too large to queue.
        { StatusCode: '202', SelectionPattern: '2\\d{2}', ResponseTemplates: { 'application/json': CALLBACK_QUEUED_RESPONSE_TEMPLATE } },
        expect.objectContaining({ StatusCode: '500', SelectionPattern: '(4|5)\\d{2}' }),
      ]);
      expect(method.MethodResponses).toEqual([{ StatusCode: '202' }, { StatusCode: '413' }, { StatusCode: '500' }]);
    });

    test('reads the job id at the webhook at the configured path, for a body too large to queue', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newWebhook(stack, { jobIdPath: "$.data['job id'][0]" });

      // THEN
      const template = callbackMethod(Template.fromStack(stack)).Integration.RequestTemplates['application/json'];
      expect(template).toBe(callbackRequestTemplate({ tokenFromPath: true, jobIdPath: ['data', 'job id', '0'] }));
      expect(template).toContain('$input.json(\'$.data["job id"][0]\')');
    });

    test('lets only the integration role send to the callback queue', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const { webhook } = newWebhook(stack);

      // THEN
      const template = Template.fromStack(stack);
      const method = callbackMethod(template);
      const roles = template.findResources('AWS::IAM::Role', {
        Properties: { AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: 'apigateway.amazonaws.com' } })] } },
      });
      const [roleId] = Object.keys(roles);
      expect(Object.keys(roles)).toHaveLength(1);
      expect(method.Integration.Credentials).toEqual({ 'Fn::GetAtt': [roleId, 'Arn'] });
      template.hasResourceProperties('AWS::IAM::Policy', {
        Roles: [{ Ref: roleId }],
        PolicyDocument: {
          Statement: [Match.objectLike({
            Effect: 'Allow',
            Action: Match.arrayWith(['sqs:SendMessage']),
            Resource: stack.resolve(webhook.queue.queueArn),
          })],
        },
      });
    });
  });

  describe('callback processor', () => {
    test('is configured through its environment', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const { webhook, table } = newWebhook(stack, {
        jobIdPath: '$.data.job.id',
        statusPath: '$.data.state',
        failureStatusValues: ['failed', 'cancelled'],
      });

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', {
        Timeout: 30,
        Environment: {
          Variables: Match.objectLike({
            TABLE_NAME: stack.resolve(table.tableName),
            JOB_ID_INDEX_NAME: 'ByJobId',
            JOB_ID_PATH: '$.data.job.id',
            STATUS_PATH: '$.data.state',
            FAILURE_STATUS_VALUES: '["failed","cancelled"]',
            DEAD_LETTER_QUEUE_URL: stack.resolve(webhook.deadLetterQueue.queueUrl),
          }),
        },
      });
    });

    test('treats every callback as a success by default', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newWebhook(stack);

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', {
        Environment: {
          Variables: Match.objectLike({
            JOB_ID_PATH: '$.jobId',
            STATUS_PATH: '',
            FAILURE_STATUS_VALUES: '["FAILED","ERROR"]',
          }),
        },
      });
    });

    test('consumes the callback queue reporting batch item failures', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const { webhook } = newWebhook(stack);

      // THEN
      const template = Template.fromStack(stack);
      template.resourceCountIs('AWS::Lambda::EventSourceMapping', 1);
      template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        EventSourceArn: stack.resolve(webhook.queue.queueArn),
        FunctionName: stack.resolve(webhook.processor.functionName),
        BatchSize: 10,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
      });
    });

    test('may query the job id index, update items and park callbacks', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const { webhook, table } = newWebhook(stack);

      // THEN
      const statements = statementsOfRole(Template.fromStack(stack), stack, webhook.processor.role!);
      expect(resourcesGranted(statements, 'dynamodb:Query')).toContainEqual({ 'Fn::Join': ['', [stack.resolve(table.tableArn), '/index/*']] });
      expect(resourcesGranted(statements, 'dynamodb:UpdateItem')).toContainEqual(stack.resolve(table.tableArn));
      expect(resourcesGranted(statements, 'sqs:SendMessage')).toEqual([stack.resolve(webhook.deadLetterQueue.queueArn)]);
      expect(resourcesGranted(statements, 'states:SendTaskSuccess')).toEqual([]);
    });
  });

  describe('grantResume', () => {
    test('lets the processor send task success and failure to the given state machine only', () => {
      // GIVEN
      const stack = testStack();
      const { webhook } = newWebhook(stack);
      const granted = workflow(stack, 'Granted');
      workflow(stack, 'Other');

      // WHEN
      webhook.grantResume(granted);

      // THEN
      const statements = statementsOfRole(Template.fromStack(stack), stack, webhook.processor.role!);
      const grantedArn = { Ref: logicalIdOf(stack, granted) };
      expect(resourcesGranted(statements, 'states:SendTaskSuccess')).toEqual([grantedArn]);
      expect(resourcesGranted(statements, 'states:SendTaskFailure')).toEqual([grantedArn]);
    });

    test('grants each state machine it is given', () => {
      // GIVEN
      const stack = testStack();
      const { webhook } = newWebhook(stack);
      const first = workflow(stack, 'First');
      const second = workflow(stack, 'Second');

      // WHEN
      webhook.grantResume(first);
      webhook.grantResume(second);

      // THEN
      const statements = statementsOfRole(Template.fromStack(stack), stack, webhook.processor.role!);
      expect(resourcesGranted(statements, 'states:SendTaskSuccess')).toEqual([
        { Ref: logicalIdOf(stack, first) },
        { Ref: logicalIdOf(stack, second) },
      ]);
    });
  });

  describe('validation', () => {
    test.each(['$.*', '$..jobId', '$.items[*].id', '', '$.a.'])('fails if jobIdPath is %p', (jobIdPath) => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newWebhook(stack, { jobIdPath })).toThrow(/^jobIdPath: Invalid path/);
    });

    test('fails if statusPath is not a simple path', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newWebhook(stack, { statusPath: '$.status[?(@ == 1)]' })).toThrow(/^statusPath: Invalid path/);
    });

    test('fails if failureStatusValues are given without statusPath', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newWebhook(stack, { failureStatusValues: ['FAILED'] }))
        .toThrow(/failureStatusValues \(given \["FAILED"\]\) needs statusPath/);
    });

    test.each([0, 1001, 2.5])('fails if maxReceiveCount is %p', (maxReceiveCount) => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newWebhook(stack, { maxReceiveCount })).toThrow(/maxReceiveCount must be a whole number between 1 and 1000/);
    });

    test('fails if throttlingRateLimit is 0', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newWebhook(stack, { throttlingRateLimit: 0, throttlingBurstLimit: 1 })).toThrow(/throttlingRateLimit must be above 0/);
    });
  });
});
