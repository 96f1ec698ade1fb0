import { Duration, SecretValue, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import {
  CallbackUrlDelivery,
  DispatchWorkflow,
  DispatchWorkflowOptions,
  ThrottledProxy,
  TokenCorrelationTable,
  VendorCredentials,
} from '../../src';
import { parseRequestMessage } from '../../src/rate-controlled-queue-consumer/dispatch';
import {
  AslDefinition,
  aslErrors,
  definitionOf,
  followNext,
  logicalIdOf,
  nextOfChoice,
  resourcesGranted,
  routeThroughChoices,
  statementsOfRole,
  testStack,
} from '../util';

const CALLBACK_URL = 'https://hooks.example.com/webhook/callback';
/** The per-request capability URL: the webhook URL and the claimed callback token. */
const PER_REQUEST_URL = `States.Format('{}/{}', '${CALLBACK_URL}', $.claimed.callbackToken)`;
const SECRET_VALUE = 'sk-live-0123456789abcdef';

interface Fixture {
  readonly stack: Stack;
  readonly dispatch: DispatchWorkflow;
  readonly proxy: ThrottledProxy;
  readonly table: TokenCorrelationTable;
  readonly requestQueue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
}

/** A dispatch workflow with the building blocks it glues together. */
function newDispatch(
  options: DispatchWorkflowOptions & { perRequestCallbackUrl?: boolean } = {},
  credentials?: (stack: Stack) => VendorCredentials,
): Fixture {
  const stack = testStack();
  const proxy = new ThrottledProxy(stack, 'Proxy', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    credentials: credentials?.(stack),
  });
  const table = new TokenCorrelationTable(stack, 'Table');
  const deadLetterQueue = new sqs.Queue(stack, 'RequestDeadLetterQueue');
  const requestQueue = new sqs.Queue(stack, 'RequestQueue', { deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: 10 } });
  const dispatch = new DispatchWorkflow(stack, 'Dispatch', {
    ...options,
    proxy,
    table,
    requestQueue,
    deadLetterQueue,
    callbackUrl: CALLBACK_URL,
  });
  return { stack, dispatch, proxy, table, requestQueue, deadLetterQueue };
}

function dispatchDefinition(fixture: Fixture): AslDefinition {
  return definitionOf(Template.fromStack(fixture.stack), logicalIdOf(fixture.stack, fixture.dispatch.stateMachine));
}

/** The placeholder a Ref to `construct` becomes in a resolved definition. */
function placeholderOf(stack: Stack, construct: { node: { defaultChild?: unknown } }): string {
  return `PLACEHOLDER-${logicalIdOf(stack, construct)}`;
}

/** Where a state's Catch sends `error`. */
function catchTarget(definition: AslDefinition, stateName: string, error: string): string | undefined {
  const catchers: Array<{ ErrorEquals: string[]; Next: string }> = definition.States[stateName].Catch ?? [];
  return catchers.find((c) => c.ErrorEquals.includes(error) || c.ErrorEquals.includes('States.ALL'))?.Next;
}

/** Where the vendor call goes when it fails with `error`, through ClassifyVendorError and RetryOrGiveUp. */
function routeOfVendorError(definition: AslDefinition, error: string, attempt = 1): string {
  const input = { attempt, error: { Error: error, Cause: 'test' } };
  let state = catchTarget(definition, 'CallVendor', error)!;
  while (definition.States[state].Type === 'Choice') {
    state = nextOfChoice(definition.States[state], input);
  }
  return state;
}

describe('DispatchWorkflow', () => {
  test('is an Express state machine that logs errors without execution data', () => {
    // GIVEN / WHEN
    const { stack, dispatch } = newDispatch();

    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'EXPRESS',
      LoggingConfiguration: {
        Level: 'ERROR',
        IncludeExecutionData: false,
        Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: stack.resolve(dispatch.logGroup.logGroupArn) } }],
      },
    });
  });

  test('has a valid definition', () => {
    // GIVEN / WHEN
    const definition = dispatchDefinition(newDispatch());

    // THEN
    expect(aslErrors(definition)).toEqual([]);
  });

  describe('claim', () => {
    test('starts by claiming the request with a conditional write', () => {
      // GIVEN / WHEN
      const fixture = newDispatch();
      const definition = dispatchDefinition(fixture);

      // THEN
      // After the input defaults (input-defaults.ts: fields an earlier dispatcher does not send).
      expect(definition.StartAt).toBe('WrapInput');
      expect(definition.States.ApplyInputDefaults.Next).toBe('ClaimRequest');
      const claim = definition.States.ClaimRequest;
      expect(claim).toMatchObject({
        Type: 'Task',
        Resource: 'arn:aws:states:::dynamodb:updateItem',
        Parameters: {
          TableName: placeholderOf(fixture.stack, fixture.table.table),
          Key: { requestId: { 'S.$': '$.requestId' } },
          // Not submitted yet, and not claimed by this delivery or a later one (a second copy of one
          // SQS message running at the same time stops here).
          ConditionExpression: 'attribute_not_exists(#job) AND (attribute_not_exists(#claimSeq) OR #claimSeq < :claimSeq)',
          ExpressionAttributeNames: { '#job': 'jobId', '#token': 'taskToken', '#claimSeq': 'claimSeq' },
          ExpressionAttributeValues: { ':token': { 'S.$': '$.taskToken' }, ':status': { S: 'DISPATCHING' } },
        },
      });
    });

    test('stops quietly when the request was already submitted', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch());

      // THEN the specific catcher comes before the catch-all, or it is never used
      const catchers: Array<{ ErrorEquals: string[]; Next: string }> = definition.States.ClaimRequest.Catch;
      const conditional = catchers.findIndex((c) => c.ErrorEquals.includes('DynamoDB.ConditionalCheckFailedException'));
      const catchAll = catchers.findIndex((c) => c.ErrorEquals.includes('States.ALL'));
      expect(conditional).toBeGreaterThanOrEqual(0);
      expect(catchAll === -1 || conditional < catchAll).toBe(true);
      expect(catchers[conditional].Next).toBe('AlreadySubmitted');
      expect(definition.States.AlreadySubmitted.Type).toBe('Succeed');
    });
  });

  describe('vendor call', () => {
    test('calls the proxy root with IAM auth, an idempotency key and the merged body', () => {
      // GIVEN / WHEN
      const fixture = newDispatch();
      const definition = dispatchDefinition(fixture);

      // THEN
      expect(definition.States.CallVendor).toMatchObject({
        Type: 'Task',
        Resource: 'arn:aws:states:::apigateway:invoke',
        TimeoutSeconds: 29, // the default vendorCallTimeout: API Gateway's integration timeout
        Parameters: {
          'ApiEndpoint': `${placeholderOf(fixture.stack, fixture.proxy.restApi)}.execute-api.us-east-1.amazonaws.com`,
          'Method': 'POST',
          'Stage': 'vendor',
          'AuthType': 'IAM_ROLE',
          'RequestBody.$': '$.vendorRequest.body',
          'Headers': {
            'Idempotency-Key.$': 'States.Array($.requestId)',
            'Content-Type': ['application/json'],
          },
        },
      });
      expect(definition.States.CallVendor.Parameters.Path).toBeUndefined();
    });

    test('adds the webhook URL to the payload as callbackUrl before the call', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch());

      // THEN
      expect(routeThroughChoices(definition, 'IsPayloadAScalar', { payload: { sku: 'A-1' } })).toBe('PayloadAsJson');
      expect(definition.States.PayloadAsJson).toMatchObject({ Parameters: { 'json.$': 'States.JsonToString($.payload)' }, Next: 'IsPayloadAnObject' });
      expect(routeThroughChoices(definition, 'IsPayloadAnObject', { vendorRequest: { json: '{"sku":"A-1"}' } })).toBe('AddCallbackUrl');
      expect(followNext(definition, 'AddCallbackUrl', 'CallVendor')).toEqual(['AddCallbackUrl', 'MergeCallbackUrl', 'CallVendor']);
      expect(definition.States.AddCallbackUrl.Parameters).toEqual({ fields: { 'callbackUrl.$': PER_REQUEST_URL } });
      expect(definition.States.AddCallbackUrl.ResultPath).toBe('$.vendorRequest');
      expect(definition.States.MergeCallbackUrl.Parameters).toEqual({
        'body.$': 'States.JsonMerge($.payload, $.vendorRequest.fields, false)',
      });
      expect(definition.States.MergeCallbackUrl.ResultPath).toBe('$.vendorRequest');
    });

    test.each([
      ['a string', { payload: 'text' }],
      ['a number', { payload: 3 }],
      ['a boolean', { payload: true }],
      ['null', { payload: null }],
    ])('gives up at once when the payload is %s', (_name, input) => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch());

      // THEN
      const next = routeThroughChoices(definition, 'IsPayloadAScalar', input);
      expect(next).toBe('PayloadNotAnObject');
      expect(definition.States[next].Next).toBe('ParkInDeadLetterQueue');
    });

    test('gives up at once when the payload is absent', () => {
      // GIVEN a request message without a payload (the taskToken is there to fail the waiting task)
      const body = JSON.stringify({ taskToken: 'token-1', requestId: 'req-1', attempt: 1 });

      // WHEN / THEN the dispatcher refuses it before any execution starts (it parks the message and
      // fails the waiting task), so the workflow has no route for an absent payload: one would be
      // an edge no input takes (docs/asl-coverage.md).
      expect(parseRequestMessage(body)).toEqual({ ok: false, detail: 'payload is missing', taskToken: 'token-1' });
      const definition = dispatchDefinition(newDispatch());
      expect(JSON.stringify(definition.States.IsPayloadAScalar)).not.toContain('IsPresent');
    });

    test('gives up at once when the payload is an array (its JSON text does not start with a brace)', () => {
      const definition = dispatchDefinition(newDispatch());
      expect(routeThroughChoices(definition, 'IsPayloadAnObject', { vendorRequest: { json: '[{"sku":"A-1"}]' } })).toBe('PayloadNotAnObject');
    });

    test('uses the body field it is given', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch({ callbackUrlDelivery: CallbackUrlDelivery.bodyField('notify_url') }));

      // THEN
      expect(definition.States.AddCallbackUrl.Parameters).toEqual({ fields: { 'notify_url.$': PER_REQUEST_URL } });
    });

    test('sends the webhook URL in a header instead of the body with CallbackUrlDelivery.header', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch({ callbackUrlDelivery: CallbackUrlDelivery.header('X-Callback-Url') }));

      // THEN
      expect(definition.States.CallVendor.Parameters.Headers['X-Callback-Url.$']).toEqual(`States.Array(${PER_REQUEST_URL})`);
      expect(definition.States.AddCallbackUrl).toBeUndefined();
      expect(definition.States.MergeCallbackUrl).toBeUndefined();
      expect(followNext(definition, 'ClaimRequest', 'CallVendor')).toEqual(['ClaimRequest', 'CheckWaitingWorkflow', 'PrepareVendorRequest', 'CallVendor']);
      expect(definition.States.PrepareVendorRequest.Parameters).toEqual({ 'body.$': '$.payload' });
      expect(aslErrors(definition)).toEqual([]);
    });

    test('fails if the URL is delivered nowhere while the webhook expects capability URLs', () => {
      // WHEN / THEN
      expect(() => newDispatch({ callbackUrlDelivery: CallbackUrlDelivery.none() }))
        .toThrow(/callbackUrlDelivery is CallbackUrlDelivery.none\(\).*WebhookAuthentication.signatureOnly/);
    });

    test('sends the webhook URL as is without per-request URLs (signature-only webhook)', () => {
      // GIVEN / WHEN
      const body = dispatchDefinition(newDispatch({ perRequestCallbackUrl: false }));
      const header = dispatchDefinition(newDispatch({ perRequestCallbackUrl: false, callbackUrlDelivery: CallbackUrlDelivery.header('X-Callback-Url') }));

      // THEN
      expect(body.States.AddCallbackUrl.Parameters).toEqual({ fields: { callbackUrl: CALLBACK_URL } });
      expect(header.States.CallVendor.Parameters.Headers['X-Callback-Url']).toEqual([CALLBACK_URL]);
    });

    test('claims the request with the callback token, keeping a token stored before, and returns the stored one', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch());

      // THEN
      const claim = definition.States.ClaimRequest;
      expect(claim.Parameters.UpdateExpression).toContain('#cbToken = if_not_exists(#cbToken, :cbToken)');
      expect(claim.Parameters.ExpressionAttributeNames['#cbToken']).toBe('callbackToken');
      expect(claim.Parameters.ExpressionAttributeValues[':cbToken']).toEqual({ 'S.$': '$.callbackToken' });
      expect(claim.Parameters.ReturnValues).toBe('ALL_NEW');
      expect(claim.ResultSelector).toEqual({ 'callbackToken.$': '$.Attributes.callbackToken.S' });
      expect(claim.ResultPath).toBe('$.claimed');
    });

    test('sends the webhook URL nowhere with CallbackUrlDelivery.none', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch({ callbackUrlDelivery: CallbackUrlDelivery.none(), perRequestCallbackUrl: false }));

      // THEN
      expect(JSON.stringify(definition)).not.toContain(CALLBACK_URL);
      expect(aslErrors(definition)).toEqual([]);
    });

    test.each([
      ['a dotted name', 'a.b'],
      ['a space', 'callback url'],
      ['an empty name', ''],
    ])('fails if the body field name has %s', (_name, fieldName) => {
      // WHEN / THEN
      expect(() => CallbackUrlDelivery.bodyField(fieldName)).toThrow(/fieldName must be a top-level field name/);
    });

    test('fails if the callback header name is not an HTTP header name', () => {
      // WHEN / THEN
      expect(() => CallbackUrlDelivery.header('X Callback')).toThrow(/headerName must be an HTTP header name/);
    });

    test('uses the vendor call timeout it is given', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch({ vendorCallTimeout: Duration.seconds(10) }));

      // THEN
      expect(definition.States.CallVendor.TimeoutSeconds).toBe(10);
    });
  });

  describe('vendor credentials', () => {
    const credentials = (jsonField?: string, prefix?: string) => (stack: Stack) => VendorCredentials.fromSecretHeader({
      secret: new secretsmanager.Secret(stack, 'VendorKey', { secretStringValue: SecretValue.unsafePlainText(SECRET_VALUE) }),
      headerName: 'Authorization',
      jsonField,
      prefix,
    });

    test('reads the secret at run time and sends it in X-Vendor-Credential', () => {
      // GIVEN / WHEN
      const fixture = newDispatch({}, credentials());
      const definition = dispatchDefinition(fixture);

      // THEN the whole output is kept (a binary secret has no SecretString) and tested before it is read
      expect(followNext(definition, 'ClaimRequest', 'ReadVendorCredential')).toEqual(['ClaimRequest', 'ReadVendorCredential']);
      expect(definition.States.ReadVendorCredential).toMatchObject({
        Type: 'Task',
        Resource: 'arn:aws:states:::aws-sdk:secretsmanager:getSecretValue',
        Parameters: { SecretId: placeholderOf(fixture.stack, fixture.proxy.credentials.secret!) },
        ResultPath: '$.credential',
        Next: 'IsVendorCredentialText',
      });
      expect(definition.States.ReadVendorCredential.ResultSelector).toBeUndefined();
      expect(definition.States.CallVendor.Parameters.Headers['X-Vendor-Credential.$']).toBe('States.Array($.credential.SecretString)');
      expect(catchTarget(definition, 'ReadVendorCredential', 'States.ALL')).toBe('ClassifyVendorError');
      expect(fixture.proxy.credentialFunction).toBeUndefined();
      expect(aslErrors(definition)).toEqual([]);
    });

    test('reads a field of a JSON secret with the proxy\'s credential function and puts the prefix before it', () => {
      // GIVEN / WHEN
      const fixture = newDispatch({}, credentials('apiKey', 'Bearer '));
      const definition = dispatchDefinition(fixture);

      // THEN no States.StringToJson in the workflow: the function parses the secret
      expect(fixture.proxy.credentialFunction).toBeDefined();
      expect(definition.States.ReadVendorCredential).toMatchObject({
        Resource: 'arn:aws:states:::lambda:invoke',
        ResultSelector: { 'secret.$': '$.Payload.credential' },
        ResultPath: '$.credential',
      });
      expect(JSON.stringify(definition)).not.toContain('StringToJson($.SecretString)');
      expect(definition.States.CallVendor.Parameters.Headers['X-Vendor-Credential.$'])
        .toBe("States.Array(States.Format('Bearer {}', $.credential.secret))");
      expect(aslErrors(definition)).toEqual([]);
    });

    test('never puts the secret value in the template outside the secret itself', () => {
      // GIVEN / WHEN
      const fixture = newDispatch({}, credentials());

      // THEN
      const resources = { ...Template.fromStack(fixture.stack).toJSON().Resources };
      delete resources[logicalIdOf(fixture.stack, fixture.proxy.credentials.secret!)];
      const rest = JSON.stringify(resources);
      expect(rest).not.toContain(SECRET_VALUE);
      expect(rest).not.toMatch(/resolve:secretsmanager/);
    });

    test('lets the dispatch workflow read the secret', () => {
      // GIVEN / WHEN
      const fixture = newDispatch({}, credentials());

      // THEN
      const statements = statementsOfRole(Template.fromStack(fixture.stack), fixture.stack, fixture.dispatch.stateMachine.role);
      expect(resourcesGranted(statements, 'secretsmanager:GetSecretValue'))
        .toContainEqual(fixture.stack.resolve(fixture.proxy.credentials.secret!.secretArn));
    });

    test('reads no secret without credentials', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch());

      // THEN
      expect(definition.States.ReadVendorCredential).toBeUndefined();
      expect(Object.keys(definition.States.CallVendor.Parameters.Headers)).not.toContain('X-Vendor-Credential.$');
    });
  });

  describe('job id', () => {
    test.each([
      ['$.jobId', '$.vendor.body.jobId'],
      ['$.data.id', '$.vendor.body.data.id'],
      ['$.items[0].id', '$.vendor.body.items[0].id'],
      ['id', '$.vendor.body.id'],
    ])('looks for jobIdPath %p at %p of the vendor response', (jobIdPath, variable) => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch({ jobIdPath }));

      // THEN
      const choices = definition.States.HasJobId.Choices as Array<{ Or: Array<{ Variable: string }> }>;
      expect(choices).toHaveLength(1);
      for (const rule of choices[0].Or) {
        expect(rule.Variable).toBe(variable);
      }
      expect(definition.States.ExtractJobId.Parameters).toEqual({ 'id.$': `States.Format('{}', ${variable})` });
      expect(aslErrors(definition)).toEqual([]);
    });

    test.each([
      ['a string job id', { data: { id: 'j-1' } }],
      ['a numeric job id', { data: { id: 42 } }],
    ])('stores %s, then succeeds', (_name, body) => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch({ jobIdPath: '$.data.id' }));

      // THEN
      expect(routeThroughChoices(definition, definition.States.CallVendor.Next, { vendor: { body } })).toBe('ExtractJobId');
      expect(followNext(definition, 'ExtractJobId')).toEqual(['ExtractJobId', 'StoreJobId', 'Submitted']);
      expect(definition.States.StoreJobId.Parameters).toMatchObject({
        UpdateExpression: 'SET #job = :job, #status = :status',
        ExpressionAttributeValues: { ':job': { 'S.$': '$.job.id' }, ':status': { S: 'SUBMITTED' } },
      });
      expect(definition.States.Submitted.Type).toBe('Succeed');
    });

    test.each([
      ['an object', { data: { id: { nested: 1 } } }],
      ['null', { data: { id: null } }],
      ['absent', { data: {} }],
      ['absent with its parent', { other: true }],
    ])('gives up when the job id in the response is %s', (_name, body) => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch({ jobIdPath: '$.data.id' }));

      // THEN a missing variable in a Choice would fail the execution without failing the waiting workflow
      expect(routeThroughChoices(definition, definition.States.CallVendor.Next, { vendor: { body } })).toBe('MissingJobId');
      expect(definition.States.MissingJobId.Next).toBe('ParkInDeadLetterQueue');
    });

    test('gives up when the job id cannot be stored', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch());

      // THEN
      expect(catchTarget(definition, 'StoreJobId', 'States.ALL')).toBe('ParkInDeadLetterQueue');
    });
  });

  describe('errors', () => {
    test.each([
      ['ApiGateway.429', 'RetryOrGiveUp'],
      ['APIGateway.429', 'RetryOrGiveUp'],
      ['ApiGateway.408', 'RetryOrGiveUp'],
      ['ApiGateway.500', 'RetryOrGiveUp'],
      ['ApiGateway.503', 'RetryOrGiveUp'],
      ['States.Timeout', 'RetryOrGiveUp'],
      ['States.TaskFailed', 'RetryOrGiveUp'],
      ['ApiGateway.400', 'ParkInDeadLetterQueue'],
      ['ApiGateway.401', 'ParkInDeadLetterQueue'],
      ['APIGateway.403', 'ParkInDeadLetterQueue'],
      ['ApiGateway.404', 'ParkInDeadLetterQueue'],
      ['ApiGateway.422', 'ParkInDeadLetterQueue'],
    ])('ClassifyVendorError sends %s to %s', (error, target) => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch());

      // THEN
      expect(catchTarget(definition, 'CallVendor', error)).toBe('ClassifyVendorError');
      expect(nextOfChoice(definition.States.ClassifyVendorError, { error: { Error: error } })).toBe(target);
    });

    test.each([1, 2, 3, 4])('retries a 429 on attempt %p of 5 through the request queue', (attempt) => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch());

      // THEN
      expect(routeOfVendorError(definition, 'ApiGateway.429', attempt)).toBe('BackoffCaps');
    });

    test('gives up a retryable error on the last attempt', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch());

      // THEN
      expect(routeOfVendorError(definition, 'ApiGateway.429', 5)).toBe('ParkInDeadLetterQueue');
      expect(routeOfVendorError(definition, 'ApiGateway.500', 5)).toBe('ParkInDeadLetterQueue');
    });

    test.each([1, 3, 20])('bounds the retries with maxAttempts %p', (maxAttempts) => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch({ maxAttempts }));

      // THEN
      expect(definition.States.RetryOrGiveUp.Choices).toEqual([
        { Variable: '$.attempt', NumericLessThan: maxAttempts, Next: 'BackoffCaps' },
      ]);
      expect(definition.States.RetryOrGiveUp.Default).toBe('ParkInDeadLetterQueue');
      expect(routeOfVendorError(definition, 'ApiGateway.503', maxAttempts)).toBe('ParkInDeadLetterQueue');
      if (maxAttempts > 1) {
        expect(routeOfVendorError(definition, 'ApiGateway.503', maxAttempts - 1)).toBe('BackoffCaps');
      }
    });

    test('requeues a retry with a jittered delay, the same request id and the next attempt', () => {
      // GIVEN / WHEN
      const fixture = newDispatch();
      const definition = dispatchDefinition(fixture);

      // THEN
      expect(followNext(definition, 'BackoffCaps')).toEqual(['BackoffCaps', 'ComputeBackoff', 'RequeueWithDelay', 'RetryScheduled']);
      expect(definition.States.ComputeBackoff.Parameters).toEqual({
        'delaySeconds.$': 'States.MathRandom(0, States.ArrayGetItem($.backoffCaps, $.attempt))',
        'message': {
          'taskToken.$': '$.taskToken',
          'requestId.$': '$.requestId',
          'payload.$': '$.payload',
          'attempt.$': 'States.MathAdd($.attempt, 1)',
          'callbackToken.$': '$.callbackToken',
          'requestStartedAtMs.$': '$.requestStartedAtMs',
          'priority.$': '$.priority', // issue 15: filled with null when absent (input-defaults.ts)
        },
      });
      expect(definition.States.RequeueWithDelay).toMatchObject({
        Type: 'Task',
        Resource: 'arn:aws:states:::aws-sdk:sqs:sendMessage',
        Parameters: {
          'QueueUrl': placeholderOf(fixture.stack, fixture.requestQueue),
          'MessageBody.$': 'States.JsonToString($.retry.message)',
          'DelaySeconds.$': '$.retry.delaySeconds',
        },
      });
      expect(definition.States.RetryScheduled.Type).toBe('Succeed');
      // A failed requeue must not lose the request.
      expect(catchTarget(definition, 'RequeueWithDelay', 'States.ALL')).toBe('ParkInDeadLetterQueue');
    });

    test.each([
      // [maxAttempts, retryBaseDelay, maxRetryDelay, caps]
      [5, 2, 300, [2, 2, 4, 8, 16, 32]],
      [6, 2, 10, [2, 2, 4, 8, 10, 10, 10]],
      [3, 60, 900, [60, 60, 120, 240]],
    ])('caps the backoff per attempt (maxAttempts %p, base %p s, max %p s)', (maxAttempts, base, max, caps) => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch({
        maxAttempts,
        retryBaseDelay: Duration.seconds(base),
        maxRetryDelay: Duration.seconds(max),
      }));

      // THEN an entry for every attempt that can be retried, none above maxRetryDelay or SQS's 900 s
      const result: number[] = definition.States.BackoffCaps.Result;
      expect(result).toEqual(caps);
      expect(result.length).toBeGreaterThan(maxAttempts - 1);
      expect(Math.max(...result)).toBeLessThanOrEqual(Math.min(max, 900));
    });

    test('parks the request and fails the waiting workflow when it gives up', () => {
      // GIVEN / WHEN
      const fixture = newDispatch();
      const definition = dispatchDefinition(fixture);

      // THEN
      expect(followNext(definition, 'ParkInDeadLetterQueue')).toEqual(['ParkInDeadLetterQueue', 'FailWaitingWorkflow', 'DispatchFailed']);
      expect(definition.States.ParkInDeadLetterQueue).toMatchObject({
        Resource: 'arn:aws:states:::aws-sdk:sqs:sendMessage',
        Parameters: {
          'QueueUrl': placeholderOf(fixture.stack, fixture.deadLetterQueue),
          'MessageBody.$': 'States.JsonToString($.message)',
        },
      });
      expect(definition.States.FailWaitingWorkflow).toMatchObject({
        Resource: 'arn:aws:states:::aws-sdk:sfn:sendTaskFailure',
        Parameters: { 'TaskToken.$': '$.taskToken', 'Error': 'VendorRequestFailed' },
      });
      expect(definition.States.DispatchFailed).toMatchObject({ Type: 'Fail', Error: 'VendorRequestFailed' });
      // A failed park still fails the waiting workflow; a too-long cause is retried shorter.
      expect(catchTarget(definition, 'ParkInDeadLetterQueue', 'States.ALL')).toBe('FailWaitingWorkflow');
      expect(catchTarget(definition, 'FailWaitingWorkflow', 'States.ALL')).toBe('FailWaitingWorkflowBriefly');
      expect(definition.States.FailWaitingWorkflowBriefly.Parameters).toMatchObject({ Error: 'VendorRequestFailed' });
    });
  });

  describe('permissions', () => {
    test('may invoke the proxy, update the table and send to both queues', () => {
      // GIVEN / WHEN
      const fixture = newDispatch();
      const { stack } = fixture;

      // THEN
      const template = Template.fromStack(stack);
      const statements = statementsOfRole(template, stack, fixture.dispatch.stateMachine.role);
      const invokeResources = JSON.stringify(resourcesGranted(statements, 'execute-api:Invoke'));
      expect(invokeResources).toContain(JSON.stringify(stack.resolve(fixture.proxy.restApi.restApiId)));
      expect(resourcesGranted(statements, 'dynamodb:UpdateItem').length).toBeGreaterThan(0);
      expect(resourcesGranted(statements, 'sqs:SendMessage')).toEqual(expect.arrayContaining([
        stack.resolve(fixture.requestQueue.queueArn),
        stack.resolve(fixture.deadLetterQueue.queueArn),
      ]));
      // The proxy lets exactly this role in.
      template.hasResourceProperties('AWS::ApiGateway::RestApi', {
        Policy: {
          Statement: Match.arrayWith([Match.objectLike({
            Effect: 'Deny',
            Condition: { ArnNotEquals: { 'aws:PrincipalArn': [stack.resolve(fixture.dispatch.stateMachine.role.roleArn)] } },
          })]),
        },
      });
    });

    test('may fail tasks of no workflow until one is granted', () => {
      // GIVEN / WHEN
      const fixture = newDispatch();

      // THEN
      const statements = statementsOfRole(Template.fromStack(fixture.stack), fixture.stack, fixture.dispatch.stateMachine.role);
      expect(resourcesGranted(statements, 'states:SendTaskFailure')).toEqual([]);
    });

    test('grantTaskResponses lets it fail tasks of the given workflow only', () => {
      // GIVEN
      const fixture = newDispatch();
      const { stack } = fixture;
      const main = new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'P')) });

      // WHEN
      fixture.dispatch.grantTaskResponses(main);

      // THEN
      const statements = statementsOfRole(Template.fromStack(stack), stack, fixture.dispatch.stateMachine.role);
      const resources = resourcesGranted(statements, 'states:SendTaskFailure');
      expect(resources.length).toBeGreaterThan(0);
      for (const resource of resources) {
        expect(resource).toEqual({ Ref: logicalIdOf(stack, main) });
      }
      expect(resourcesGranted(statements, 'states:SendTaskSuccess')).toEqual([]);
    });
  });

  describe('validation', () => {
    test.each([0, 21, 2.5])('fails if maxAttempts is %p', (maxAttempts) => {
      // WHEN / THEN
      expect(() => newDispatch({ maxAttempts })).toThrow(/maxAttempts must be a whole number between 1 and 20/);
    });

    test('fails if maxRetryDelay is above 15 minutes', () => {
      // WHEN / THEN
      expect(() => newDispatch({ maxRetryDelay: Duration.minutes(20) }))
        .toThrow(/maxRetryDelay must be between 2 seconds and 15 minutes \(given 20 minutes\): SQS delays a message by at most 15 minutes/);
    });

    test('fails if maxRetryDelay is below retryBaseDelay', () => {
      // WHEN / THEN
      expect(() => newDispatch({ retryBaseDelay: Duration.seconds(30), maxRetryDelay: Duration.seconds(10) }))
        .toThrow(/maxRetryDelay must be between 30 seconds and 15 minutes/);
    });

    test('fails if retryBaseDelay is below 1 second', () => {
      // WHEN / THEN
      expect(() => newDispatch({ retryBaseDelay: Duration.millis(500) })).toThrow(/retryBaseDelay must be between 1 second and 15 minutes/);
    });

    test('waits 29 s for the vendor by default: API Gateway\'s default integration timeout (issue 11, finding 6)', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newDispatch());

      // THEN
      expect(definition.States.CallVendor.TimeoutSeconds).toBe(29);
    });

    test('fails if vendorCallTimeout is longer than the proxy\'s integration timeout (issue 11, finding 6)', () => {
      // WHEN / THEN the proxy of newDispatch waits 29 s
      expect(() => newDispatch({ vendorCallTimeout: Duration.seconds(30) }))
        .toThrow(/vendorCallTimeout \(30 seconds\) is longer than the proxy's integrationTimeout \(29 seconds\): API Gateway would answer 504/);
    });

    test('fails if vendorCallTimeout is above 4 minutes', () => {
      // WHEN / THEN
      expect(() => newDispatch({ vendorCallTimeout: Duration.minutes(5) })).toThrow(/vendorCallTimeout must be between/);
    });

    test('fails if jobIdPath is the whole response', () => {
      // WHEN / THEN
      expect(() => newDispatch({ jobIdPath: '$' })).toThrow(/jobIdPath must point inside the vendor's response body/);
    });

    test('fails if jobIdPath is not a simple path', () => {
      // WHEN / THEN
      expect(() => newDispatch({ jobIdPath: '$.items[*].id' })).toThrow(/^jobIdPath: Invalid path/);
    });
  });
});
