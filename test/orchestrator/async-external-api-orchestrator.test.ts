import { App, Duration, SecretValue, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import {
  AsyncExternalApiOrchestrator,
  AsyncExternalApiOrchestratorProps,
  CallbackUrlDelivery,
  PacingPoint,
  VendorContract,
  VendorCredentials,
} from '../../src';
import {
  AslDefinition,
  aslErrors,
  definitionOf,
  flattenCfnString,
  followNext,
  logicalIdOf,
  nextOfChoice,
  resourcesGranted,
  statementsOfRole,
  testApp,
  testStack,
} from '../util';

const VENDOR_URL = 'https://vendor.example.com/v1/jobs';

/** The acceptance case. */
const ACCEPTANCE_PROPS: AsyncExternalApiOrchestratorProps = {
  vendorUrl: VENDOR_URL,
  requestsPerSecond: 10,
  batchSize: 20,
  maxConcurrency: 2,
  callbackTimeout: Duration.minutes(30),
};

/** A Standard workflow whose only state submits `$.order` and waits for the callback. */
function mainWorkflow(stack: Stack, orchestrator: AsyncExternalApiOrchestrator, id = 'Main'): sfn.StateMachine {
  const submit = orchestrator.submitJobTask(stack, id === 'Main' ? 'Submit' : `${id}Submit`, {
    payload: sfn.TaskInput.fromJsonPathAt('$.order'),
  });
  return new sfn.StateMachine(stack, id, { definitionBody: sfn.DefinitionBody.fromChainable(submit) });
}

interface Acceptance {
  readonly app: App;
  readonly stack: Stack;
  readonly orchestrator: AsyncExternalApiOrchestrator;
  readonly main: sfn.StateMachine;
  readonly template: Template;
}

function acceptance(props: Partial<AsyncExternalApiOrchestratorProps> = {}): Acceptance {
  const app = testApp();
  const stack = testStack(app);
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', { ...ACCEPTANCE_PROPS, ...props });
  const main = mainWorkflow(stack, orchestrator);
  orchestrator.registerWorkflow(main);
  return { app, stack, orchestrator, main, template: Template.fromStack(stack) };
}

function dispatchDefinitionOf(a: Acceptance): AslDefinition {
  return definitionOf(a.template, logicalIdOf(a.stack, a.orchestrator.dispatch.stateMachine));
}

function mainDefinitionOf(a: Acceptance): AslDefinition {
  return definitionOf(a.template, logicalIdOf(a.stack, a.main));
}

describe('AsyncExternalApiOrchestrator', () => {
  describe('acceptance case: 10 rps, batch 20, maxConcurrency 2, 30 minute callbacks', () => {
    let a: Acceptance;
    beforeAll(() => {
      // GIVEN / WHEN (shared by the tests of this block, which only read the template)
      a = acceptance();
    });

    test('creates one Express dispatch workflow next to the Standard main workflow', () => {
      // THEN
      a.template.resourceCountIs('AWS::StepFunctions::StateMachine', 2);
      const machines = a.template.findResources('AWS::StepFunctions::StateMachine');
      const express = Object.entries(machines).filter(([, r]) => r.Properties.StateMachineType === 'EXPRESS').map(([id]) => id);
      expect(express).toEqual([logicalIdOf(a.stack, a.orchestrator.dispatch.stateMachine)]);
      expect(machines[logicalIdOf(a.stack, a.main)].Properties.StateMachineType ?? 'STANDARD').toBe('STANDARD');
    });

    test('both state machine definitions are valid', () => {
      // THEN
      const definitions = [mainDefinitionOf(a), dispatchDefinitionOf(a)];
      for (const definition of definitions) {
        expect(aslErrors(definition)).toEqual([]);
      }
    });

    test('the submit task sends the token, a request id and the payload to the request queue and waits 30 minutes', () => {
      // THEN
      const definition = mainDefinitionOf(a);
      expect(definition.StartAt).toBe('Submit');
      expect(definition.States.Submit).toMatchObject({
        Type: 'Task',
        Resource: 'arn:aws:states:::sqs:sendMessage.waitForTaskToken',
        TimeoutSeconds: 1800,
        Parameters: {
          QueueUrl: `PLACEHOLDER-${logicalIdOf(a.stack, a.orchestrator.consumer.queue)}`,
          MessageBody: {
            'taskToken.$': '$$.Task.Token',
            'requestId.$': 'States.UUID()',
            'payload.$': '$.order',
            'attempt': 1,
          },
        },
      });
      expect(definition.States.Submit.HeartbeatSeconds).toBeUndefined();
    });

    test('the consumer reads 20 messages at a time with at most 2 concurrent invocations', () => {
      // THEN
      a.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        EventSourceArn: a.stack.resolve(a.orchestrator.consumer.queue.queueArn),
        BatchSize: 20,
        MaximumBatchingWindowInSeconds: 1,
        ScalingConfig: { MaximumConcurrency: 2 },
        FunctionResponseTypes: ['ReportBatchItemFailures'],
      });
      a.template.hasResourceProperties('AWS::Lambda::Function', {
        Timeout: 30,
        Environment: {
          Variables: Match.objectLike({
            STATE_MACHINE_ARN: { Ref: logicalIdOf(a.stack, a.orchestrator.dispatch.stateMachine) },
            REQUESTS_PER_SECOND: '10',
            // Correlations outlive the wait by a day: 30 minutes + 1 day.
            CORRELATION_TTL_SECONDS: '88200',
          }),
        },
      });
    });

    test('the proxy is throttled to 10 requests per second with a burst of 3', () => {
      // THEN
      expect(a.orchestrator.proxy.throttlingRateLimit).toBe(10);
      expect(a.orchestrator.proxy.throttlingBurstLimit).toBe(3);
      a.template.hasResourceProperties('AWS::ApiGateway::Stage', {
        RestApiId: a.stack.resolve(a.orchestrator.proxy.restApi.restApiId),
        MethodSettings: [Match.objectLike({ ThrottlingRateLimit: 10, ThrottlingBurstLimit: 3 })],
      });
    });

    test('the proxy forwards to the vendor and lets only the dispatch workflow in', () => {
      // THEN
      a.template.hasResourceProperties('AWS::ApiGateway::Method', {
        RestApiId: a.stack.resolve(a.orchestrator.proxy.restApi.restApiId),
        AuthorizationType: 'AWS_IAM',
        Integration: Match.objectLike({ Type: 'HTTP_PROXY', Uri: VENDOR_URL }),
      });
      a.template.hasResourceProperties('AWS::ApiGateway::RestApi', {
        Policy: {
          Statement: Match.arrayWith([Match.objectLike({
            Effect: 'Deny',
            // PacingPoint.VENDOR_CALL: only the vendor caller calls the proxy.
            Condition: { ArnNotEquals: { 'aws:PrincipalArn': [a.stack.resolve(a.orchestrator.dispatch.vendorCaller!.role!.roleArn)] } },
          })]),
        },
      });
    });

    test('the webhook queues callbacks for the processor', () => {
      // THEN
      a.template.hasResourceProperties('AWS::ApiGateway::Method', {
        RestApiId: a.stack.resolve(a.orchestrator.webhook.restApi.restApiId),
        HttpMethod: 'POST',
        Integration: Match.objectLike({
          Type: 'AWS',
          Uri: { 'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp(':sqs:path/')])] },
        }),
      });
      a.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        EventSourceArn: a.stack.resolve(a.orchestrator.webhook.queue.queueArn),
        FunctionName: a.stack.resolve(a.orchestrator.webhook.processor.functionName),
      });
      a.template.hasResourceProperties('AWS::Lambda::Function', {
        Environment: {
          Variables: Match.objectLike({
            TABLE_NAME: a.stack.resolve(a.orchestrator.table.tableName),
            JOB_ID_INDEX_NAME: 'ByJobId',
          }),
        },
      });
    });

    test('the correlation table is created with its job id index', () => {
      // THEN the correlation table and the pacer table
      a.template.resourceCountIs('AWS::DynamoDB::Table', 2);
      a.template.hasResourceProperties('AWS::DynamoDB::Table', {
        KeySchema: [{ AttributeName: 'requestId', KeyType: 'HASH' }],
        GlobalSecondaryIndexes: [Match.objectLike({ IndexName: 'ByJobId' })],
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
      });
    });

    test('the dispatch workflow sends the webhook URL to the vendor in the body', () => {
      // THEN
      const definition = dispatchDefinitionOf(a);
      // Each request gets its capability URL: the webhook URL and the token ClaimRequest stored.
      expect(definition.States.AddCallbackUrl.Parameters.fields['callbackUrl.$'])
        .toBe(`States.Format('{}/{}', '${flattenCfnString(a.stack.resolve(a.orchestrator.webhook.url))}', $.claimed.callbackToken)`);
      expect(definition.States.CallVendor.Parameters.FunctionName).toBe(`PLACEHOLDER-${logicalIdOf(a.stack, a.orchestrator.dispatch.vendorCaller!)}-Arn`);
      a.template.hasResourceProperties('AWS::Lambda::Function', {
        Environment: {
          Variables: Match.objectLike({
            PROXY_ENDPOINT_URL: Match.anyValue(),
            PACER_TABLE_NAME: a.stack.resolve(a.orchestrator.consumer.pacerTable.tableName),
          }),
        },
      });
    });

    test('the dispatch workflow claims, calls, retries and gives up as designed', () => {
      // THEN
      const definition = dispatchDefinitionOf(a);
      expect(definition.StartAt).toBe('WrapInput');
      expect(definition.States.ApplyInputDefaults.Next).toBe('ClaimRequest');
      expect(definition.States.ClaimRequest.Parameters.ConditionExpression)
        .toBe('attribute_not_exists(#job) AND (attribute_not_exists(#claimSeq) OR #claimSeq < :claimSeq)');
      expect(definition.States.ClaimRequest.Catch[0]).toMatchObject({
        ErrorEquals: ['DynamoDB.ConditionalCheckFailedException'],
        Next: 'AlreadySubmitted',
      });
      expect(definition.States.CallVendor).toMatchObject({
        Resource: 'arn:aws:states:::lambda:invoke',
        Parameters: { Payload: { 'headers': { 'Idempotency-Key.$': 'States.Array($.requestId)' }, 'body.$': '$.vendorRequest.body', 'slotAtMs.$': '$.slotAtMs' } },
      });
      expect(definition.States.WasVendorCalled.Choices[0]).toMatchObject({ Variable: '$.vendor.requeue.delaySeconds', IsPresent: true, Next: 'DeferToQueue' });
      expect(followNext(definition, 'DeferToQueue')).toEqual(['DeferToQueue', 'NoUsableSlot', 'RequeueWithDelay', 'RetryScheduled']);
      expect(nextOfChoice(definition.States.ClassifyVendorError, { error: { Error: 'ApiGateway.429' } })).toBe('RetryOrGiveUp');
      expect(nextOfChoice(definition.States.ClassifyVendorError, { error: { Error: 'ApiGateway.400' } })).toBe('ParkInDeadLetterQueue');
      expect(definition.States.RetryOrGiveUp.Choices[0]).toMatchObject({ Variable: '$.attempt', NumericLessThan: 5 });
      expect(followNext(definition, 'BackoffCaps')).toEqual(['BackoffCaps', 'ComputeBackoff', 'RequeueWithDelay', 'RetryScheduled']);
      expect(definition.States.RequeueWithDelay).toMatchObject({
        Resource: 'arn:aws:states:::aws-sdk:sqs:sendMessage',
        Parameters: {
          'QueueUrl': `PLACEHOLDER-${logicalIdOf(a.stack, a.orchestrator.consumer.queue)}`,
          'DelaySeconds.$': '$.retry.delaySeconds',
        },
      });
      expect(followNext(definition, 'ParkInDeadLetterQueue')).toEqual(['ParkInDeadLetterQueue', 'FailWaitingWorkflow', 'DispatchFailed']);
      expect(definition.States.ParkInDeadLetterQueue.Parameters.QueueUrl)
        .toBe(`PLACEHOLDER-${logicalIdOf(a.stack, a.orchestrator.consumer.deadLetterQueue)}`);
      expect(definition.States.FailWaitingWorkflow).toMatchObject({
        Resource: 'arn:aws:states:::aws-sdk:sfn:sendTaskFailure',
        Parameters: { Error: 'VendorRequestFailed' },
      });
    });

    describe('permissions', () => {
      const mainArn = () => ({ Ref: logicalIdOf(a.stack, a.main) });
      const statementsOf = (role: iam.IRole) => statementsOfRole(a.template, a.stack, role);

      test('the main workflow may send to the request queue', () => {
        // THEN
        const statements = statementsOf(a.main.role);
        expect(resourcesGranted(statements, 'sqs:SendMessage')).toEqual([a.stack.resolve(a.orchestrator.consumer.queue.queueArn)]);
      });

      test('the consumer may start the dispatch workflow and fail tasks of the main workflow only', () => {
        // THEN
        const statements = statementsOf(a.orchestrator.consumer.function.role!);
        expect(resourcesGranted(statements, 'states:StartExecution'))
          .toEqual([{ Ref: logicalIdOf(a.stack, a.orchestrator.dispatch.stateMachine) }]);
        expect(resourcesGranted(statements, 'states:SendTaskFailure')).toEqual([mainArn()]);
        expect(resourcesGranted(statements, 'states:SendTaskSuccess')).toEqual([]);
      });

      test('the callback processor may resume and fail tasks of the main workflow only', () => {
        // THEN
        const statements = statementsOf(a.orchestrator.webhook.processor.role!);
        expect(resourcesGranted(statements, 'states:SendTaskSuccess')).toEqual([mainArn()]);
        expect(resourcesGranted(statements, 'states:SendTaskFailure')).toEqual([mainArn()]);
      });

      test('the vendor caller may invoke the proxy and read and write the pacer item', () => {
        // THEN
        const statements = statementsOf(a.orchestrator.dispatch.vendorCaller!.role!);
        const proxyId = JSON.stringify(a.stack.resolve(a.orchestrator.proxy.restApi.restApiId));
        const invoke = resourcesGranted(statements, 'execute-api:Invoke');
        expect(invoke.length).toBeGreaterThan(0);
        for (const resource of invoke) {
          expect(JSON.stringify(resource)).toContain(proxyId);
        }
        expect(resourcesGranted(statements, 'dynamodb:UpdateItem')).toEqual([a.stack.resolve(a.orchestrator.consumer.pacerTable.tableArn)]);
        expect(resourcesGranted(statements, 'dynamodb:GetItem')).toEqual([a.stack.resolve(a.orchestrator.consumer.pacerTable.tableArn)]);
      });

      test('the dispatch workflow may invoke the vendor caller (not the proxy), update the table, send to the request queue and its DLQ and fail main tasks', () => {
        // THEN
        const statements = statementsOf(a.orchestrator.dispatch.stateMachine.role);
        expect(resourcesGranted(statements, 'execute-api:Invoke')).toEqual([]);
        expect(JSON.stringify(resourcesGranted(statements, 'lambda:InvokeFunction'))).toContain(logicalIdOf(a.stack, a.orchestrator.dispatch.vendorCaller!));
        expect(resourcesGranted(statements, 'dynamodb:UpdateItem')).toContainEqual(a.stack.resolve(a.orchestrator.table.tableArn));
        expect(resourcesGranted(statements, 'sqs:SendMessage')).toEqual(expect.arrayContaining([
          a.stack.resolve(a.orchestrator.consumer.queue.queueArn),
          a.stack.resolve(a.orchestrator.consumer.deadLetterQueue.queueArn),
        ]));
        const fail = resourcesGranted(statements, 'states:SendTaskFailure');
        expect(fail.length).toBeGreaterThan(0);
        for (const resource of fail) {
          expect(resource).toEqual(mainArn());
        }
        expect(resourcesGranted(statements, 'states:SendTaskSuccess')).toEqual([]);
      });
    });
  });

  describe('options', () => {
    test('sends the webhook URL in a header with CallbackUrlDelivery.header', () => {
      // GIVEN / WHEN
      const a = acceptance({ dispatch: { callbackUrlDelivery: CallbackUrlDelivery.header('X-Callback-Url') } });

      // THEN
      const definition = dispatchDefinitionOf(a);
      expect(definition.States.CallVendor.Parameters.Payload.headers['X-Callback-Url.$'])
        .toEqual(`States.Array(States.Format('{}/{}', '${flattenCfnString(a.stack.resolve(a.orchestrator.webhook.url))}', $.claimed.callbackToken))`);
      expect(definition.States.AddCallbackUrl).toBeUndefined();
      expect(JSON.stringify(definition.States.PrepareVendorRequest)).not.toContain('callbackUrl');
      expect(aslErrors(definition)).toEqual([]);
    });

    test('reads vendor credentials from Secrets Manager at run time', () => {
      // GIVEN
      const app = testApp();
      const stack = testStack(app);
      const secretValue = 'vendor-api-key-do-not-leak';
      const secret = new secretsmanager.Secret(stack, 'VendorKey', { secretStringValue: SecretValue.unsafePlainText(secretValue) });

      // WHEN
      const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
        ...ACCEPTANCE_PROPS,
        proxy: { credentials: VendorCredentials.fromSecretHeader({ secret, headerName: 'x-api-key' }) },
      });
      orchestrator.registerWorkflow(mainWorkflow(stack, orchestrator));

      // THEN
      const template = Template.fromStack(stack);
      const definition = definitionOf(template, logicalIdOf(stack, orchestrator.dispatch.stateMachine));
      expect(definition.States.ReadVendorCredential).toMatchObject({
        Resource: 'arn:aws:states:::aws-sdk:secretsmanager:getSecretValue',
        Parameters: { SecretId: `PLACEHOLDER-${logicalIdOf(stack, secret)}` },
      });
      expect(definition.States.CallVendor.Parameters.Payload.headers['X-Vendor-Credential.$']).toBe('States.Array($.credential.SecretString)');
      expect(aslErrors(definition)).toEqual([]);
      template.hasResourceProperties('AWS::ApiGateway::Method', {
        RestApiId: stack.resolve(orchestrator.proxy.restApi.restApiId),
        Integration: Match.objectLike({
          RequestParameters: Match.objectLike({ 'integration.request.header.x-api-key': 'method.request.header.X-Vendor-Credential' }),
        }),
      });
      // The value is only in the secret resource itself.
      const resources = { ...template.toJSON().Resources };
      delete resources[logicalIdOf(stack, secret)];
      expect(JSON.stringify(resources)).not.toContain(secretValue);
      expect(JSON.stringify(resources)).not.toMatch(/resolve:secretsmanager/);
      expect(resourcesGranted(statementsOfRole(template, stack, orchestrator.dispatch.stateMachine.role), 'secretsmanager:GetSecretValue'))
        .toContainEqual(stack.resolve(secret.secretArn));
    });

    test("looks for the job id at the dispatch jobIdPath '$.data.id' in the vendor response", () => {
      // GIVEN / WHEN
      const a = acceptance({ dispatch: { jobIdPath: '$.data.id' }, webhook: { jobIdPath: '$.data.id' } });

      // THEN
      const definition = dispatchDefinitionOf(a);
      const variables = JSON.stringify(definition.States.HasJobId.Choices);
      expect(variables).toContain('"Variable":"$.vendor.body.data.id"');
      expect(variables).not.toContain('$.vendor.body.jobId');
      a.template.hasResourceProperties('AWS::Lambda::Function', {
        Environment: { Variables: Match.objectLike({ JOB_ID_PATH: '$.data.id' }) },
      });
    });

    test('passes consumer options through', () => {
      // GIVEN / WHEN
      const a = acceptance({ batchSize: undefined, maxConcurrency: undefined, consumer: { batchSize: 5, maxConcurrency: 3 } });

      // THEN
      a.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        BatchSize: 5,
        ScalingConfig: { MaximumConcurrency: 3 },
      });
    });

    test('uses the heartbeat, request id and result path given to submitJobTask', () => {
      // GIVEN
      const stack = testStack();
      const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', ACCEPTANCE_PROPS);

      // WHEN
      const submit = orchestrator.submitJobTask(stack, 'Submit', {
        payload: sfn.TaskInput.fromObject({ sku: sfn.JsonPath.stringAt('$.sku') }),
        requestId: sfn.JsonPath.stringAt('$.orderId'),
        resultPath: '$.vendorResult',
        heartbeatTimeout: Duration.minutes(10),
      });
      const main = new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(submit) });
      orchestrator.registerWorkflow(main);

      // THEN
      const definition = definitionOf(Template.fromStack(stack), logicalIdOf(stack, main));
      expect(definition.States.Submit).toMatchObject({
        HeartbeatSeconds: 600,
        ResultPath: '$.vendorResult',
        Parameters: { MessageBody: { 'requestId.$': '$.orderId', 'payload': { 'sku.$': '$.sku' }, 'attempt': 1 } },
      });
    });
  });

  describe('workflow registration', () => {
    test('fails synthesis when submitJobTask is used and no workflow is registered', () => {
      // GIVEN
      const app = testApp();
      const stack = testStack(app);
      const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', ACCEPTANCE_PROPS);

      // WHEN
      mainWorkflow(stack, orchestrator);

      // THEN
      expect(() => app.synth()).toThrow(/submitJobTask\(\) or callVendorTask\(\) was used but no workflow was registered: call registerWorkflow/);
    });

    test('synthesizes without workflows when submitJobTask is never used', () => {
      // GIVEN
      const app = testApp();
      const stack = testStack(app);

      // WHEN
      new AsyncExternalApiOrchestrator(stack, 'Vendor', ACCEPTANCE_PROPS);

      // THEN
      expect(() => app.synth()).not.toThrow();
    });

    test('two main workflows can share one orchestrator', () => {
      // GIVEN
      const stack = testStack();
      const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', ACCEPTANCE_PROPS);
      const orders = mainWorkflow(stack, orchestrator, 'Orders');
      const refunds = mainWorkflow(stack, orchestrator, 'Refunds');

      // WHEN
      orchestrator.registerWorkflow(orders);
      orchestrator.registerWorkflow(refunds);
      orchestrator.registerWorkflow(orders);

      // THEN
      const template = Template.fromStack(stack);
      const both = [{ Ref: logicalIdOf(stack, orders) }, { Ref: logicalIdOf(stack, refunds) }];
      const processor = statementsOfRole(template, stack, orchestrator.webhook.processor.role!);
      expect(resourcesGranted(processor, 'states:SendTaskSuccess')).toEqual(both);
      expect(resourcesGranted(processor, 'states:SendTaskFailure')).toEqual(both);
      const consumer = statementsOfRole(template, stack, orchestrator.consumer.function.role!);
      expect(resourcesGranted(consumer, 'states:SendTaskFailure')).toEqual(both);
      const dispatch = statementsOfRole(template, stack, orchestrator.dispatch.stateMachine.role);
      expect(resourcesGranted(dispatch, 'states:SendTaskFailure')).toEqual(expect.arrayContaining(both));
      for (const resource of resourcesGranted(dispatch, 'states:SendTaskFailure')) {
        expect(both).toContainEqual(resource);
      }
      for (const main of [orders, refunds]) {
        expect(resourcesGranted(statementsOfRole(template, stack, main.role), 'sqs:SendMessage'))
          .toEqual([stack.resolve(orchestrator.consumer.queue.queueArn)]);
        expect(aslErrors(definitionOf(template, logicalIdOf(stack, main)))).toEqual([]);
      }
    });
  });

  describe('two stacks of one app', () => {
    function twoStacks(): { app: App; stacks: Stack[]; orchestrators: AsyncExternalApiOrchestrator[]; mains: sfn.StateMachine[] } {
      const app = testApp();
      const stacks = [testStack(app, 'OrdersStack'), testStack(app, 'BillingStack')];
      const orchestrators = stacks.map((stack) => new AsyncExternalApiOrchestrator(stack, 'Vendor', ACCEPTANCE_PROPS));
      const mains = stacks.map((stack, i) => mainWorkflow(stack, orchestrators[i]));
      orchestrators.forEach((o, i) => o.registerWorkflow(mains[i]));
      return { app, stacks, orchestrators, mains };
    }

    test('synthesizes an independent orchestrator in each stack', () => {
      // GIVEN / WHEN
      const { app, stacks, orchestrators, mains } = twoStacks();

      // THEN
      expect(() => app.synth()).not.toThrow();
      stacks.forEach((stack, i) => {
        const template = Template.fromStack(stack);
        template.resourceCountIs('AWS::StepFunctions::StateMachine', 2);
        template.resourceCountIs('AWS::ApiGateway::RestApi', 2);
        expect(JSON.stringify(template.toJSON())).not.toMatch(/Fn::ImportValue/);
        const processor = statementsOfRole(template, stack, orchestrators[i].webhook.processor.role!);
        expect(resourcesGranted(processor, 'states:SendTaskSuccess')).toEqual([{ Ref: logicalIdOf(stack, mains[i]) }]);
        for (const definition of Object.values(template.findResources('AWS::StepFunctions::StateMachine'))) {
          expect(aslErrors(JSON.parse(flattenCfnString(definition.Properties.DefinitionString)))).toEqual([]);
        }
      });
    });

    test('gives every REST API a distinct name, so their ApiName metrics do not mix', () => {
      // GIVEN / WHEN
      const { stacks, orchestrators } = twoStacks();

      // THEN API Gateway metrics are keyed by ApiName and stage: equal names would add up
      const names = stacks.flatMap((stack, i) => [
        stack.resolve(orchestrators[i].proxy.restApi.restApiName),
        stack.resolve(orchestrators[i].webhook.restApi.restApiName),
      ]);
      expect(new Set(names.map((n) => JSON.stringify(n))).size).toBe(4);
    });
  });

  describe('metrics', () => {
    test("the vendor request metric does not count the webhook's requests", () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', ACCEPTANCE_PROPS);

      // THEN API Gateway metrics are selected by their dimensions alone
      const vendorRequests = stack.resolve(orchestrator.metricVendorRequests().dimensions);
      const webhookErrors = stack.resolve(orchestrator.webhook.metricServerErrors().dimensions);
      const proxyErrors = stack.resolve(orchestrator.proxy.metricServerErrors().dimensions);
      expect(vendorRequests).toEqual(proxyErrors);
      expect(webhookErrors).not.toEqual(proxyErrors);
    });
  });

  describe('validation', () => {
    const build = (props: Partial<AsyncExternalApiOrchestratorProps>) => () =>
      new AsyncExternalApiOrchestrator(testStack(), 'Vendor', { ...ACCEPTANCE_PROPS, ...props });

    test('fails if callbackTimeout is 0 seconds', () => {
      // WHEN / THEN
      expect(build({ callbackTimeout: Duration.seconds(0) }))
        .toThrow(/callbackTimeout must be between 1 second and 365 days \(given 0 seconds\): a Standard workflow runs at most one year/);
    });

    test('fails if callbackTimeout is above 365 days', () => {
      // WHEN / THEN
      expect(build({ callbackTimeout: Duration.days(366) })).toThrow(/callbackTimeout must be between 1 second and 365 days \(given 366 days\)/);
    });

    test('accepts a callbackTimeout of 365 days', () => {
      // WHEN / THEN
      expect(build({ callbackTimeout: Duration.days(365) })).not.toThrow();
    });

    test('sets the proxy\'s integration timeout from vendorCallTimeout, 29 s by default (issue 11, finding 6)', () => {
      // GIVEN / WHEN
      const timeoutsOf = (props: Partial<AsyncExternalApiOrchestratorProps>) => {
        const stack = testStack();
        const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', { ...ACCEPTANCE_PROPS, ...props });
        const methods = Object.values(Template.fromStack(stack).findResources('AWS::ApiGateway::Method'))
          .filter((m) => m.Properties.Integration.Type === 'HTTP_PROXY');
        return [orchestrator.proxy.integrationTimeout.toSeconds(), ...methods.map((m) => m.Properties.Integration.TimeoutInMillis)];
      };

      // THEN the proxy waits as long as the longest vendor call
      expect(timeoutsOf({})).toEqual([29, 29_000, 29_000]);
      expect(timeoutsOf({ dispatch: { vendorCallTimeout: Duration.seconds(10) } })).toEqual([29, 29_000, 29_000]);
      expect(timeoutsOf({
        proxy: { integrationTimeoutQuota: Duration.minutes(2) },
        dispatch: { vendorCallTimeout: Duration.seconds(60) },
        vendorCall: { vendorCallTimeout: Duration.seconds(90) },
      })).toEqual([90, 90_000, 90_000]);
    });

    test('fails if vendorCallTimeout is above 29 s without a raised integration timeout quota (issue 11, finding 6)', () => {
      // WHEN / THEN
      expect(build({ dispatch: { vendorCallTimeout: Duration.seconds(30) } }))
        .toThrow(/integrationTimeout must be between 50 milliseconds and integrationTimeoutQuota \(29 seconds\) \(given 30 seconds; an orchestrator sets it/);
      expect(build({ vendorCall: { vendorCallTimeout: Duration.minutes(1) } })).toThrow(/given 1 minute/);
      const raisedQuota = { proxy: { integrationTimeoutQuota: Duration.seconds(30) } };
      expect(build({ ...raisedQuota, dispatch: { vendorCallTimeout: Duration.seconds(30) } })).not.toThrow();
    });

    test('fails if the dispatch workflow\'s longest route could outlast the Express workflow\'s 5 minutes (DynamoDB retries of a minute before and after the vendor call)', () => {
      // GIVEN a raised integration timeout quota (a vendor call above 29 s needs it)
      const raisedQuota = { proxy: { integrationTimeoutQuota: Duration.minutes(5) } };

      // WHEN / THEN 4 minutes, which the former check (vendor caller alone <= 280 s) accepted, is refused,
      // saying what was given, the parts of the sum and the bound
      expect(build({ ...raisedQuota, dispatch: { vendorCallTimeout: Duration.minutes(4) } })).toThrow(new RegExp(
        "the dispatch workflow's longest route could take 449.5 s \\(ClaimRequest 70 s \\+ CheckWaitingWorkflow 9 s \\+ CallVendor 265 s "
        + '\\+ StoreJobId 70 s \\+ ParkInDeadLetterQueue 17.5 s \\+ FailWaitingWorkflow 9 s \\+ FailWaitingWorkflowBriefly 9 s\\), '
        + 'more than an Express workflow runs \\(300 s.*CallVendor\'s Task timeout is 261 s \\(lead 1000 ms \\+ maxSlotWait 10 seconds '
        + '\\+ vendorCallTimeout 4 minutes \\+ 10 s\\).*lower maxSlotWait or vendorCallTimeout so that lead \\+ maxSlotWait \\+ vendorCallTimeout is at most 101 s'));
      // ... the bound holds: 101 s less the lead (1 s) and maxSlotWait (10 s) fits, a second more does not
      expect(build({ ...raisedQuota, dispatch: { vendorCallTimeout: Duration.seconds(90) } })).not.toThrow();
      expect(build({ ...raisedQuota, dispatch: { vendorCallTimeout: Duration.seconds(91) } })).toThrow(/is at most 101 s/);
      // ... a shorter maxSlotWait leaves the vendor call more
      expect(build({ ...raisedQuota, dispatch: { vendorCallTimeout: Duration.seconds(98), maxSlotWait: Duration.seconds(2) } })).not.toThrow();
    });

    test('fails if the longest route with a secret credential and PacingPoint.DISPATCH could outlast the Express workflow\'s 5 minutes', () => {
      // GIVEN a plain-text secret (ReadVendorCredential, retried 4 times) and no vendor caller
      const withSecret = (vendorCallTimeout: Duration) => () => {
        const stack = testStack();
        const secret = new secretsmanager.Secret(stack, 'VendorKey');
        new AsyncExternalApiOrchestrator(stack, 'Vendor', {
          ...ACCEPTANCE_PROPS,
          pacingPoint: PacingPoint.DISPATCH,
          proxy: { integrationTimeoutQuota: Duration.minutes(5), credentials: VendorCredentials.fromSecretHeader({ secret, headerName: 'x-api-key' }) },
          dispatch: { vendorCallTimeout },
        });
      };

      // WHEN / THEN the credential read counts, and the bound is on vendorCallTimeout alone
      expect(withSecret(Duration.minutes(4))).toThrow(/ReadVendorCredential 17.5 s.*CallVendor 240 s.*lower vendorCallTimeout so that vendorCallTimeout is at most 98 s/);
      expect(withSecret(Duration.seconds(98))).not.toThrow();
      expect(withSecret(Duration.seconds(99))).toThrow(/is at most 98 s/);
    });

    test('fails if the vendor-call workflow\'s longest route could outlast the Express workflow\'s 5 minutes (PacingPoint.DISPATCH)', () => {
      // GIVEN a raised integration timeout quota and no vendor caller: the call is the proxy call itself
      const withCall = (vendorCallTimeout: Duration) => () => {
        const stack = testStack();
        const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
          ...ACCEPTANCE_PROPS,
          pacingPoint: PacingPoint.DISPATCH,
          proxy: { integrationTimeoutQuota: Duration.minutes(5) },
          vendorCall: { vendorCallTimeout },
        });
        orchestrator.callVendorTask(stack, 'Fetch', { path: '/x' }); // creates the vendor-call workflow
      };

      // WHEN / THEN 4 minutes is refused, naming the vendor-call workflow's steps
      expect(withCall(Duration.minutes(4))).toThrow(new RegExp(
        "the vendor-call workflow's longest route could take 372 s \\(ClaimCall 70 s \\+ CheckWaitingWorkflow 9 s \\+ CallVendor 240 s "
        + '\\+ RequeueWithDelay 17.5 s \\+ ParkInDeadLetterQueue 17.5 s \\+ FailWaitingWorkflow 9 s \\+ FailWaitingWorkflowBriefly 9 s\\).*'
        + 'lower vendorCallTimeout so that vendorCallTimeout is at most 168 s'));
      expect(withCall(Duration.seconds(168))).not.toThrow();
      expect(withCall(Duration.seconds(169))).toThrow(/is at most 168 s/);
    });

    test('fails if batchSize is given twice', () => {
      // WHEN / THEN
      expect(build({ batchSize: 20, consumer: { batchSize: 10 } }))
        .toThrow(/batchSize is given twice \(batchSize 20 and consumer.batchSize 10\): give one/);
    });

    test('fails if maxConcurrency is given twice', () => {
      // WHEN / THEN
      expect(build({ maxConcurrency: 2, consumer: { maxConcurrency: 4 } }))
        .toThrow(/maxConcurrency is given twice \(maxConcurrency 2 and consumer.maxConcurrency 4\): give one/);
    });

    test.each([1, 1001])('fails if maxConcurrency is %p', (maxConcurrency) => {
      // WHEN / THEN
      expect(build({ maxConcurrency })).toThrow(/maxConcurrency must be a whole number between 2 and 1000/);
    });

    test.each([0, 10_001])('fails if batchSize is %p', (batchSize) => {
      // WHEN / THEN
      expect(build({ batchSize })).toThrow(/batchSize must be a whole number between 1 and 10000/);
    });

    test('fails if vendorUrl is http://', () => {
      // WHEN / THEN
      expect(build({ vendorUrl: 'http://vendor.example.com/v1/jobs' })).toThrow(/vendorUrl must use https/);
    });

    test('fails if requestsPerSecond is 0', () => {
      // WHEN / THEN
      expect(build({ requestsPerSecond: 0 })).toThrow(/requestsPerSecond must be above 0 and at most 10000 \(given 0\)/);
    });

    test('fails if both contract and requestsPerSecond are given', () => {
      // WHEN / THEN
      expect(build({ contract: VendorContract.of({ requestsPerSecond: 5 }), requestsPerSecond: 5 }))
        .toThrow(/requestsPerSecond is given twice \(requestsPerSecond 5 and contract.requestsPerSecond 5\): give contract or requestsPerSecond, not both/);
    });

    test('fails if neither contract nor requestsPerSecond is given', () => {
      // WHEN / THEN
      expect(build({ requestsPerSecond: undefined })).toThrow(/the vendor contract is missing: give contract/);
    });

    test('a contract sets the rate every layer reads', () => {
      // WHEN
      const stack = testStack();
      const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
        ...ACCEPTANCE_PROPS, requestsPerSecond: undefined, contract: VendorContract.of({ requestsPerSecond: 4 }),
      });
      // THEN
      expect(orchestrator.requestsPerSecond).toBe(4);
      expect(orchestrator.contract.requestsPerSecond).toBe(4);
      expect(orchestrator.consumer.requestsPerSecond).toBe(4);
    });

    test('fails if maxAttempts is 0', () => {
      // WHEN / THEN
      expect(build({ dispatch: { maxAttempts: 0 } })).toThrow(/maxAttempts must be a whole number between 1 and 20 \(given 0\)/);
    });

    test('fails if maxRetryDelay is 20 minutes', () => {
      // WHEN / THEN
      expect(build({ dispatch: { maxRetryDelay: Duration.minutes(20) } }))
        .toThrow(/maxRetryDelay must be between 2 seconds and 15 minutes \(given 20 minutes\)/);
    });

    test('fails if the proxy rate limit is above the contract', () => {
      // WHEN / THEN
      expect(build({ proxy: { throttlingRateLimit: 20 } })).toThrow(/throttlingRateLimit must be above 0 and at most the contract of 10/);
    });

    test('fails if the webhook failure statuses are given without statusPath', () => {
      // WHEN / THEN
      expect(build({ webhook: { failureStatusValues: ['FAILED'] } })).toThrow(/needs statusPath/);
    });
  });
});

describe('AsyncExternalApiOrchestrator with @aws-cdk/aws-iam:minimizePolicies', () => {
  test('synthesizes (cdk init turns the flag on) and still scopes SendTaskFailure to the registered workflow', () => {
    // GIVEN an app with the flag new CDK apps set
    const app = testApp({ context: { '@aws-cdk/aws-iam:minimizePolicies': true } });
    const stack = new Stack(app, 'Minimized', { env: { account: '123456789012', region: 'us-east-1' } });
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/v1/jobs',
      requestsPerSecond: 10,
      callbackTimeout: Duration.minutes(30),
    });
    const main = new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromJsonPathAt('$.order') })),
    });

    // WHEN
    orchestrator.registerWorkflow(main);
    const template = Template.fromStack(stack);

    // THEN the dispatch role may fail tasks of the main workflow, and of nothing else
    const policies = JSON.stringify(Object.values(template.findResources('AWS::IAM::Policy')).map((p) => p.Properties.PolicyDocument));
    expect(policies).toContain('states:SendTaskFailure');
    expect(policies).not.toMatch(/"Resource":"\*"[^}]*SendTaskFailure|SendTaskFailure[^}]*"Resource":"\*"/);
  });
});
