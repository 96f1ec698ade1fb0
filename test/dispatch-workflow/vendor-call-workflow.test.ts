/**
 * callVendorTask / VendorCallWorkflow: the construct (Template assertions), the orchestrator's
 * task and grants, and synth-time validation.
 */
import { CfnElement, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator, AsyncExternalApiOrchestratorProps, PacingPoint, VendorCredentials } from '../../src';
import { aslErrors, definitionOf, logicalIdOf, resourcesGranted, statementsOfRole, testStack } from '../util';

interface Fixture {
  readonly stack: Stack;
  readonly orchestrator: AsyncExternalApiOrchestrator;
  readonly main: sfn.StateMachine;
}

/** An orchestrator and a main workflow that fetches a result with callVendorTask. */
function withCall(props: Partial<AsyncExternalApiOrchestratorProps> = {}, register = true): Fixture {
  const stack = testStack();
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
    ...props,
  });
  const fetch = orchestrator.callVendorTask(stack, 'FetchResult', {
    path: sfn.JsonPath.format('/{}/result', sfn.JsonPath.stringAt('$.jobId')),
    query: sfn.TaskInput.fromObject({ fields: 'all' }),
    resultPath: '$.fetched',
  });
  const main = new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(fetch) });
  if (register) {
    orchestrator.registerWorkflow(main);
  }
  return { stack, orchestrator, main };
}

describe('callVendorTask', () => {
  test('puts a call message on the request queue and waits for the task token', () => {
    // GIVEN / WHEN
    const { stack, orchestrator, main } = withCall();

    // THEN
    const definition = definitionOf(Template.fromStack(stack), logicalIdOf(stack, main));
    const state = definition.States.FetchResult;
    expect(state.Resource).toMatch(/sqs:sendMessage\.waitForTaskToken$/);
    expect(state.TimeoutSeconds).toBe(900);
    expect(state.ResultPath).toBe('$.fetched');
    expect(state.Parameters.MessageBody).toEqual({
      'kind': 'call',
      'taskToken.$': '$$.Task.Token',
      'requestId.$': 'States.UUID()',
      'call': { 'method': 'GET', 'path.$': "States.Format('/{}/result', $.jobId)", 'query': { fields: 'all' } },
      'attempt': 1,
    });
    expect(orchestrator.vendorCall).toBeDefined();
  });

  test('the JSONata variant sends the same message with JSONata expressions', () => {
    const stack = testStack();
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/v1/jobs', requestsPerSecond: 10, callbackTimeout: Duration.minutes(30),
    });
    const fetch = orchestrator.callVendorTaskJsonata(stack, 'Fetch', {
      method: 'put',
      path: '{% "/" & $states.input.jobId %}',
      body: sfn.TaskInput.fromText('{% $states.input.update %}'),
      timeout: Duration.minutes(2),
    });
    const main = new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(fetch) });
    orchestrator.registerWorkflow(main);

    const state = definitionOf(Template.fromStack(stack), logicalIdOf(stack, main)).States.Fetch;
    expect(state.QueryLanguage).toBe('JSONata');
    expect(state.TimeoutSeconds).toBe(120);
    expect(state.Arguments.MessageBody).toEqual({
      kind: 'call',
      taskToken: '{% $states.context.Task.Token %}',
      requestId: '{% $uuid() %}',
      call: { method: 'PUT', path: '{% "/" & $states.input.jobId %}', body: '{% $states.input.update %}' },
      attempt: 1,
    });
  });

  test.each([
    [{ method: 'HEAD', path: '/x' }, /callVendorTask 'Bad': method must be one of GET, POST, PUT, PATCH, DELETE \(given "HEAD"\)/],
    [{ path: 'jobs/1' }, /callVendorTask 'Bad': path must start with '\/', relative to the vendor URL/],
    [{ path: '/jobs?id=1' }, /must not hold '\?' or '#': give query parameters in query/],
    [{ path: '/jobs/../admin' }, /must not hold empty, '\.' or '\.\.' segments/],
    [{ path: '/jobs/a b' }, /may hold only URL path characters/],
    [{ path: '/x', body: sfn.TaskInput.fromObject({ a: 1 }) }, /a GET call cannot have a body/],
    [{ path: '/x', timeout: Duration.days(400) }, /timeout of 'Bad' must be between 1 second and 365 days/],
  ])('fails at synthesis for %o', (props, message) => {
    const stack = testStack();
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/v1/jobs', requestsPerSecond: 10, callbackTimeout: Duration.minutes(30),
    });
    expect(() => orchestrator.callVendorTask(stack, 'Bad', props as any)).toThrow(message);
  });

  test('the JSONata variant refuses JSONPath', () => {
    const stack = testStack();
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/v1/jobs', requestsPerSecond: 10, callbackTimeout: Duration.minutes(30),
    });
    expect(() => orchestrator.callVendorTaskJsonata(stack, 'Fetch', { path: sfn.JsonPath.stringAt('$.path') }))
      .toThrow(/callVendorTaskJsonata 'Fetch': path uses JSONPath/);
  });

  test('synthesis fails when the workflow using it is not registered', () => {
    const { stack } = withCall({}, false);
    expect(() => Template.fromStack(stack)).toThrow(/callVendorTask\(\) was used but no workflow was registered/);
  });

  test('no vendor-call workflow exists until callVendorTask is used', () => {
    const stack = testStack();
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/v1/jobs', requestsPerSecond: 10, callbackTimeout: Duration.minutes(30),
    });
    expect(orchestrator.vendorCall).toBeUndefined();
    Template.fromStack(stack).resourceCountIs('AWS::StepFunctions::StateMachine', 1);
  });
});

describe('VendorCallWorkflow', () => {
  test('is an Express workflow that logs no execution data, with a valid definition', () => {
    const { stack, orchestrator } = withCall();
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'EXPRESS',
      LoggingConfiguration: Match.objectLike({ Level: 'ERROR', IncludeExecutionData: false }),
    });
    const definition = definitionOf(template, logicalIdOf(stack, orchestrator.vendorCall!.stateMachine));
    expect(aslErrors(definition)).toEqual([]);
    // The call is claimed first (a duplicate execution stops there), then checked, then made.
    expect(definition.StartAt).toBe('WrapInput');
    expect(definition.States.ApplyInputDefaults.Next).toBe('ClaimCall');
    expect(definition.States.ClaimCall.Next).toBe('CheckWaitingWorkflow');
  });

  test('claims each call in the correlation table with a conditional write of its claim sequence (issue 13, item 1)', () => {
    const { stack, orchestrator } = withCall();
    const template = Template.fromStack(stack);
    const definition = definitionOf(template, logicalIdOf(stack, orchestrator.vendorCall!.stateMachine));
    const claim = definition.States.ClaimCall;
    expect(claim.Resource).toMatch(/:states:::dynamodb:updateItem$/);
    expect(claim.Parameters.ConditionExpression).toBe('attribute_not_exists(#claimSeq) OR #claimSeq < :claimSeq');
    expect(claim.Parameters.Key).toEqual({ requestId: { 'S.$': "States.Format('call#{}', $.requestId)" } });
    expect(claim.Catch[0]).toMatchObject({ ErrorEquals: ['DynamoDB.ConditionalCheckFailedException'], Next: 'AlreadyClaimed' });
    expect(definition.States.AlreadyClaimed.Type).toBe('Succeed');
    // the workflow's role may write to the correlation table
    const policies = template.findResources('AWS::IAM::Policy');
    const statements = Object.values(policies).flatMap((p: any) => p.Properties.PolicyDocument.Statement);
    expect(statements.some((st: any) => [st.Action].flat().includes('dynamodb:UpdateItem')
      && JSON.stringify(st.Resource).includes(logicalIdOf(stack, orchestrator.table.table)))).toBe(true);
  });

  test('with a customer-managed key on the correlation table, the workflow may use the key for its claim', () => {
    const stack = testStack();
    const key = new kms.Key(stack, 'TableKey');
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/v1/jobs',
      requestsPerSecond: 10,
      callbackTimeout: Duration.minutes(30),
      table: { encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED, encryptionKey: key },
    });
    const main = new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.callVendorTask(stack, 'FetchResult', { path: '/x' })),
    });
    orchestrator.registerWorkflow(main);
    const statements = statementsOfRole(Template.fromStack(stack), stack, orchestrator.vendorCall!.stateMachine.role);
    expect(JSON.stringify(resourcesGranted(statements, 'kms:Decrypt'))).toContain(logicalIdOf(stack, key));
    expect(JSON.stringify(resourcesGranted(statements, 'dynamodb:UpdateItem'))).toContain(logicalIdOf(stack, orchestrator.table.table));
  });

  test('with PacingPoint.VENDOR_CALL (default), the vendor caller fires the call at its slot with the message\'s method, path, query and body', () => {
    const { stack, orchestrator } = withCall();
    const template = Template.fromStack(stack);
    const definition = definitionOf(template, logicalIdOf(stack, orchestrator.vendorCall!.stateMachine));
    for (const name of ['CallVendor', 'CallVendorWithBody']) {
      const state = definition.States[name];
      expect(state.Resource).toMatch(/:states:::lambda:invoke$/);
      expect(state.Parameters.Payload).toMatchObject({
        'method.$': '$.call.method',
        'path.$': '$.call.path',
        'query.$': '$.call.query',
        'slotAtMs.$': '$.slotAtMs',
        'headers': { 'Idempotency-Key.$': 'States.Array($.requestId)', 'X-Request-Id.$': 'States.Array($.requestId)' },
      });
      expect(state.Next).toBe('WasVendorCalled');
    }
    expect(definition.States.CallVendorWithBody.Parameters.Payload['body.$']).toBe('$.call.body');
    expect(definition.States.CallVendor.Parameters.Payload['body.$']).toBeUndefined();
    // No slot within the caller's wait budget: back to the queue, the attempt not counted.
    expect(definition.States.DeferToQueue.Parameters.message['attempt.$']).toBe('$.attempt');
    // Only the caller calls the proxy; the workflow may invoke the caller.
    const statements = statementsOfRole(template, stack, orchestrator.vendorCall!.stateMachine.role);
    expect(resourcesGranted(statements, 'execute-api:Invoke')).toHaveLength(0);
    expect(resourcesGranted(statements, 'lambda:InvokeFunction')).toContainEqual(stack.resolve(orchestrator.dispatch.vendorCaller!.functionArn));
  });

  test('with PacingPoint.DISPATCH, calls the proxy with the method, path, query and body of the message, signed with its role', () => {
    const { stack, orchestrator } = withCall({ pacingPoint: PacingPoint.DISPATCH });
    const definition = definitionOf(Template.fromStack(stack), logicalIdOf(stack, orchestrator.vendorCall!.stateMachine));
    for (const name of ['CallVendor', 'CallVendorWithBody']) {
      const state = definition.States[name];
      expect(state.Resource).toMatch(/:states:::apigateway:invoke$/);
      expect(state.Parameters).toMatchObject({
        'Method.$': '$.call.method',
        'Path.$': '$.call.path',
        'QueryParameters.$': '$.call.query',
        'AuthType': 'IAM_ROLE',
        'Stage': 'vendor',
        'Headers': { 'Idempotency-Key.$': 'States.Array($.requestId)', 'X-Request-Id.$': 'States.Array($.requestId)' },
      });
      expect(state.ResultSelector).toEqual({ 'statusCode.$': '$.StatusCode', 'body.$': '$.ResponseBody', 'headers.$': '$.Headers' });
      expect(state.TimeoutSeconds).toBe(29); // the default vendorCallTimeout: API Gateway's integration timeout
    }
    expect(definition.States.CallVendorWithBody.Parameters['RequestBody.$']).toBe('$.call.body');
    expect(definition.States.CallVendor.Parameters.RequestBody).toBeUndefined();
    expect(definition.States.CallVendor.Parameters['RequestBody.$']).toBeUndefined();
  });

  test('the consumer starts it for call messages', () => {
    const { stack, orchestrator } = withCall();
    const template = Template.fromStack(stack);
    const callArn = stack.resolve(orchestrator.vendorCall!.stateMachine.stateMachineArn);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ CALL_STATE_MACHINE_ARN: callArn }) },
    });
    const statements = statementsOfRole(template, stack, orchestrator.consumer.function.role!);
    expect(resourcesGranted(statements, 'states:StartExecution')).toContainEqual(callArn);
  });

  test('may resume, fail and check only registered workflows, whatever the order of calls', () => {
    // GIVEN a workflow registered before callVendorTask was first used
    const stack = testStack();
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/v1/jobs',
      requestsPerSecond: 10,
      callbackTimeout: Duration.minutes(30),
      pacingPoint: PacingPoint.DISPATCH, // the workflow itself calls the proxy
    });
    const early = new sfn.StateMachine(stack, 'Early', { definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'P')) });
    orchestrator.registerWorkflow(early);
    const fetch = orchestrator.callVendorTask(stack, 'Fetch', { path: '/x' });
    const late = new sfn.StateMachine(stack, 'Late', { definitionBody: sfn.DefinitionBody.fromChainable(fetch) });
    orchestrator.registerWorkflow(late);

    // THEN
    const template = Template.fromStack(stack);
    const statements = statementsOfRole(template, stack, orchestrator.vendorCall!.stateMachine.role);
    for (const action of ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat']) {
      const resources = resourcesGranted(statements, action);
      expect(resources).toContainEqual(stack.resolve(early.stateMachineArn));
      expect(resources).toContainEqual(stack.resolve(late.stateMachineArn));
      expect(resources).toHaveLength(2);
    }
    expect(resourcesGranted(statements, 'sqs:SendMessage')).toHaveLength(2);
    expect(resourcesGranted(statements, 'execute-api:Invoke')).toHaveLength(1);
    // The proxy lets the vendor-call workflow's role through its resource policy.
    const api = template.findResources('AWS::ApiGateway::RestApi');
    const policy = JSON.stringify(Object.values(api)[0].Properties.Policy);
    expect(policy).toContain(stack.getLogicalId(orchestrator.vendorCall!.stateMachine.role.node.defaultChild as CfnElement));
  });

  test('reads a secret credential and sends it in the proxy\'s credential header', () => {
    const stack = testStack();
    const secret = new secretsmanager.Secret(stack, 'VendorSecret');
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/v1/jobs',
      requestsPerSecond: 10,
      callbackTimeout: Duration.minutes(30),
      proxy: { credentials: VendorCredentials.fromSecretHeader({ secret, headerName: 'X-Api-Key' }) },
    });
    const main = new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.callVendorTask(stack, 'Fetch', { path: '/x' })),
    });
    orchestrator.registerWorkflow(main);
    const template = Template.fromStack(stack);
    const definition = definitionOf(template, logicalIdOf(stack, orchestrator.vendorCall!.stateMachine));
    expect(definition.States.CheckWaitingWorkflow.Next).toBe('ReadVendorCredential');
    expect(definition.States.ReadVendorCredential.Next).toBe('IsVendorCredentialText');
    expect(definition.States.IsVendorCredentialText.Default).toBe('VendorCredentialUnusable');
    const headers = definition.States.CallVendor.Parameters.Payload.headers; // the vendor caller's payload
    expect(Object.keys(headers).some((k) => /credential/i.test(k))).toBe(true);
    const statements = statementsOfRole(template, stack, orchestrator.vendorCall!.stateMachine.role);
    expect(resourcesGranted(statements, 'secretsmanager:GetSecretValue')).toContainEqual(stack.resolve(secret.secretArn));
  });

  test('validates its options', () => {
    expect(() => withCall({ vendorCall: { maxAttempts: 0 } })).toThrow(/maxAttempts must be/);
    expect(() => withCall({ vendorCall: { vendorCallTimeout: Duration.minutes(5) } })).toThrow(/vendorCallTimeout must be between/);
  });
});
