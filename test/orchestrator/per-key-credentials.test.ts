/**
 * Credentials per key (issue 15, item 2) in the template: the proxy's credential function in its
 * per-key mode, its IAM grant on the secret name pattern, the queue consumer requiring keys, the
 * workflows passing the key, and the synth-time checks.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator, VendorCredentials, WebhookAuthentication, WebhookSignature } from '../../src';
import { definitionOf, logicalIdOf, TEST_ENV, testApp } from '../util';

function perKeyStack(credentials = VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}', headerName: 'Authorization', prefix: 'Bearer ' })) {
  const stack = new Stack(testApp(), 'PerKey', { env: TEST_ENV });
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
    proxy: { credentials },
  });
  return { stack, orchestrator };
}

describe('VendorCredentials.fromSecretHeaderPerKey', () => {
  test.each([
    ['no {key}', { secretNamePattern: 'vendor/acme' }, /must hold \{key\} exactly once/],
    ['{key} twice', { secretNamePattern: '{key}/{key}' }, /exactly once/],
    ['a character no secret name holds', { secretNamePattern: 'vendor:{key}' }, /only letters, digits and \/_\+=\.@-/],
    ['a cache longer than an hour', { secretNamePattern: 'vendor/{key}', cacheTtl: Duration.hours(2) }, /cacheTtl must be between 0 seconds \(no cache\) and 1 hour.*given 7200 seconds/],
    ['a bad JSON field', { secretNamePattern: 'vendor/{key}', jsonField: 'a.b' }, /jsonField must be/],
  ])('refuses %s', (_, options, message) => {
    expect(() => VendorCredentials.fromSecretHeaderPerKey(options)).toThrow(message);
  });

  test('defaults: x-api-key, a 5-minute cache, per key', () => {
    const credentials = VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}' });
    expect([credentials.headerName, credentials.cacheTtl?.toSeconds(), credentials.isPerKey, credentials.secret]).toEqual(['x-api-key', 300, true, undefined]);
  });
});

describe('an orchestrator with a credential per key', () => {
  test('the credential function reads the pattern\'s secrets (GetSecretValue on secret:vendor/*-??????), caches for the TTL; the consumer requires keys', () => {
    const { stack, orchestrator } = perKeyStack();
    orchestrator.registerWorkflow(new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.submitJobTask(stack, 'Submit', {
        payload: sfn.TaskInput.fromJsonPathAt('$.order'), key: sfn.JsonPath.stringAt('$.customerId'),
      })),
    }));
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ SECRET_NAME_PATTERN: 'vendor/{key}', CACHE_TTL_SECONDS: '300' }) },
    });
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({
          Action: 'secretsmanager:GetSecretValue',
          Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:secretsmanager:${TEST_ENV.region}:${TEST_ENV.account}:secret:vendor/*-??????`]] },
        })]),
      },
    });
    template.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ REQUIRE_REQUEST_KEY: 'true' }) } });

    // The dispatch workflow passes the key to the function and records it in the correlation item.
    const dispatch = definitionOf(template, logicalIdOf(stack, orchestrator.dispatch.stateMachine));
    expect(dispatch.States.ReadVendorCredential.Parameters.Payload).toEqual({ 'key.$': '$.key' });
    expect(dispatch.States.ReadVendorCredential.Catch[0].ErrorEquals).toEqual(['VendorCredentialUnusable', 'VendorCredentialNotFound']);
    expect(dispatch.States.ClaimRequest.Parameters.UpdateExpression).toMatch(/, #requestKey = :requestKey$/);
    expect(dispatch.States.ClaimRequest.Parameters.ExpressionAttributeValues[':requestKey']).toEqual({ 'S.$': '$.key' });
    // Every message the workflows put back on the queue keeps the key (a retry, a deferral to the
    // queue), and the vendor caller gets it: without it the next dispatch would refuse the request.
    expect(dispatch.States.CallVendor.Parameters.Payload['key.$']).toBe('$.key');
    expect(dispatch.States.DeferToQueue.Parameters.message['key.$']).toBe('$.key');
    expect(dispatch.States.ComputeBackoff.Parameters.message['key.$']).toBe('$.key');
  });

  test('the vendor-call workflow passes the key to the caller and keeps it on deferrals and retries', () => {
    const { stack, orchestrator } = perKeyStack();
    orchestrator.registerWorkflow(new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.callVendorTask(stack, 'Fetch', { path: '/x', key: 'acme' })),
    }));
    const call = definitionOf(Template.fromStack(stack), logicalIdOf(stack, orchestrator.vendorCall!.stateMachine));
    expect(call.States.CallVendor.Parameters.Payload['key.$']).toBe('$.key');
    expect(call.States.DeferToQueue.Parameters.message['key.$']).toBe('$.key');
    expect(call.States.ComputeBackoff.Parameters.message['key.$']).toBe('$.key');
    expect(call.States.RequeueWithDelay.Parameters['MessageGroupId.$']).toBe("States.Hash(States.Format('{}', $.key), 'SHA-256')");
  });

  test('a task without a key is refused at synth, naming the fix', () => {
    const { stack, orchestrator } = perKeyStack();
    expect(() => orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromObject({}) }))
      .toThrow(/submitJobTask 'Submit': the vendor credential is per key .* key: sfn.JsonPath.stringAt\('\$.customerId'\)/);
    expect(() => orchestrator.callVendorTaskJsonata(stack, 'Fetch', { path: '/x' }))
      .toThrow(/callVendorTaskJsonata 'Fetch': .*key: '\{% \$states.input.customerId %\}'/);
  });

  test('without a credential per key, a key only groups requests: no key in the claim, no key required', () => {
    const stack = new Stack(testApp(), 'Plain', { env: TEST_ENV });
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', { vendorUrl: 'https://vendor.example.com/v1/jobs', requestsPerSecond: 10, callbackTimeout: Duration.minutes(30) });
    orchestrator.registerWorkflow(new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromObject({}), key: 'acme' })),
    }));
    const template = Template.fromStack(stack);
    const dispatch = definitionOf(template, logicalIdOf(stack, orchestrator.dispatch.stateMachine));
    expect(dispatch.States.ClaimRequest.Parameters.UpdateExpression).not.toMatch(/requestKey/);
    expect(JSON.stringify(template.findResources('AWS::Lambda::Function'))).not.toMatch(/REQUIRE_REQUEST_KEY/);
  });
});

describe('the webhook\'s signing secret per key', () => {
  test('the processor may read the pattern\'s secrets and knows the pattern; the consumer puts the key in the capability token', () => {
    const stack = new Stack(testApp(), 'SigningPerKey', { env: TEST_ENV });
    const fallback = new secretsmanager.Secret(stack, 'Signing');
    new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/v1/jobs',
      requestsPerSecond: 10,
      callbackTimeout: Duration.minutes(30),
      webhook: { authentication: WebhookAuthentication.capabilityUrlPerKey(WebhookSignature.github(fallback), 'vendor-webhook/{key}') },
    });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ WEBHOOK_SIGNATURE_SECRET_NAME_PATTERN: 'vendor-webhook/{key}' }) },
    });
    template.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ CALLBACK_TOKEN_WITH_KEY: 'true' }) } });
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({
          Action: 'secretsmanager:GetSecretValue',
          Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:secretsmanager:${TEST_ENV.region}:${TEST_ENV.account}:secret:vendor-webhook/*-??????`]] },
        })]),
      },
    });
  });

  test('refuses a pattern without {key}', () => {
    const stack = new Stack(testApp(), 'Bad', { env: TEST_ENV });
    const fallback = new secretsmanager.Secret(stack, 'Signing');
    expect(() => WebhookAuthentication.capabilityUrlPerKey(WebhookSignature.github(fallback), 'vendor-webhook'))
      .toThrow(/signingSecretNamePattern must hold \{key\} exactly once/);
  });
});
