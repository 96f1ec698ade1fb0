import { Stack, Token } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import {
  DispatchWorkflow,
  OAuthClientAuthentication,
  OAuthClientCredentialsOptions,
  ThrottledProxy,
  TokenCorrelationTable,
  VendorCredentials,
} from '../../src';
import {
  AslDefinition,
  aslErrors,
  definitionOf,
  followNext,
  logicalIdOf,
  resourcesGranted,
  routeThroughChoices,
  statementsOfRole,
  testStack,
} from '../util';

const TOKEN_URL = 'https://auth.example.com/oauth/token';

interface Fixture {
  readonly stack: Stack;
  readonly secret: secretsmanager.Secret;
  readonly proxy: ThrottledProxy;
  readonly dispatch: DispatchWorkflow;
}

/** A dispatch workflow calling a proxy with OAuth client credentials. */
function newFixture(options: Partial<OAuthClientCredentialsOptions> = {}): Fixture {
  const stack = testStack();
  const secret = new secretsmanager.Secret(stack, 'VendorOAuthClient');
  const proxy = new ThrottledProxy(stack, 'Proxy', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    credentials: VendorCredentials.oauthClientCredentials({ secret, tokenUrl: TOKEN_URL, ...options }),
  });
  const deadLetterQueue = new sqs.Queue(stack, 'RequestDeadLetterQueue');
  const dispatch = new DispatchWorkflow(stack, 'Dispatch', {
    proxy,
    table: new TokenCorrelationTable(stack, 'Table'),
    requestQueue: new sqs.Queue(stack, 'RequestQueue', { deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: 10 } }),
    deadLetterQueue,
    callbackUrl: 'https://hooks.example.com/webhook/callback',
  });
  return { stack, secret, proxy, dispatch };
}

function dispatchDefinition(fixture: Fixture): AslDefinition {
  return definitionOf(Template.fromStack(fixture.stack), logicalIdOf(fixture.stack, fixture.dispatch.stateMachine));
}

/** The properties of the token function's AWS::Lambda::Function resource. */
function tokenFunctionProperties(fixture: Fixture): any {
  const resource = Template.fromStack(fixture.stack).toJSON().Resources[logicalIdOf(fixture.stack, fixture.proxy.tokenFunction!)];
  expect(resource?.Type).toBe('AWS::Lambda::Function');
  return resource.Properties;
}

describe('VendorCredentials.oauthClientCredentials', () => {
  describe('token function', () => {
    test('is created with its configuration, a 10 second timeout and 128 MB', () => {
      // GIVEN / WHEN
      const fixture = newFixture({ scope: 'jobs:write', audience: 'https://api.vendor.example.com', clientAuthentication: OAuthClientAuthentication.BODY });

      // THEN
      expect(fixture.proxy.tokenFunction).toBeDefined();
      const properties = tokenFunctionProperties(fixture);
      expect(properties).toMatchObject({
        Runtime: 'nodejs22.x',
        Handler: 'index.handler',
        Timeout: 10,
        MemorySize: 128,
        Environment: {
          Variables: {
            SECRET_ARN: { Ref: logicalIdOf(fixture.stack, fixture.secret) },
            TOKEN_URL,
            SCOPE: 'jobs:write',
            AUDIENCE: 'https://api.vendor.example.com',
            CLIENT_AUTHENTICATION: 'BODY',
          },
        },
      });
      expect(properties.LoggingConfig).toEqual({ LogGroup: { Ref: expect.stringMatching(/^ProxyTokenFunctionLogs/) } });
    });

    test('defaults to HTTP Basic client authentication, no scope and no audience', () => {
      // GIVEN / WHEN
      const fixture = newFixture();

      // THEN
      const variables = tokenFunctionProperties(fixture).Environment.Variables;
      expect(variables.CLIENT_AUTHENTICATION).toBe('BASIC');
      expect(variables.SCOPE).toBeUndefined();
      expect(variables.AUDIENCE).toBeUndefined();
      expect(fixture.proxy.credentials).toMatchObject({
        headerName: 'Authorization',
        oauthTokenUrl: TOKEN_URL,
        oauthClientAuthentication: OAuthClientAuthentication.BASIC,
        isOAuth: true,
      });
      expect(fixture.proxy.credentials.oauthScope).toBeUndefined();
    });

    test('can read the secret', () => {
      // GIVEN / WHEN
      const fixture = newFixture();

      // THEN
      const template = Template.fromStack(fixture.stack);
      const statements = statementsOfRole(template, fixture.stack, fixture.proxy.tokenFunction!.role!);
      expect(resourcesGranted(statements, 'secretsmanager:GetSecretValue')).toContainEqual({ Ref: logicalIdOf(fixture.stack, fixture.secret) });
    });

    test('is not created for other credentials', () => {
      // GIVEN
      const stack = testStack();
      const secret = new secretsmanager.Secret(stack, 'ApiKey');

      // WHEN
      const withHeader = new ThrottledProxy(stack, 'WithHeader', {
        vendorUrl: 'https://vendor.example.com/v1/jobs',
        requestsPerSecond: 10,
        credentials: VendorCredentials.fromSecretHeader({ secret }),
      });
      const without = new ThrottledProxy(stack, 'Without', { vendorUrl: 'https://vendor.example.com/v1/jobs', requestsPerSecond: 10 });

      // THEN
      expect(withHeader.tokenFunction).toBeUndefined();
      expect(without.tokenFunction).toBeUndefined();
      expect(withHeader.credentials.isOAuth).toBe(false);
      Template.fromStack(stack).resourceCountIs('AWS::Lambda::Function', 0);
    });
  });

  describe('proxy', () => {
    test('maps X-Vendor-Credential to Authorization on both methods', () => {
      // GIVEN / WHEN
      const fixture = newFixture();

      // THEN
      const methods = Template.fromStack(fixture.stack).findResources('AWS::ApiGateway::Method');
      expect(Object.keys(methods)).toHaveLength(2);
      for (const method of Object.values(methods)) {
        expect(method.Properties.RequestParameters).toMatchObject({ 'method.request.header.X-Vendor-Credential': true });
        expect(method.Properties.Integration.RequestParameters).toMatchObject({
          'integration.request.header.Authorization': 'method.request.header.X-Vendor-Credential',
        });
      }
    });

    test('maps it to another header when asked', () => {
      // GIVEN / WHEN
      const fixture = newFixture({ headerName: 'X-Access-Token' });

      // THEN
      Template.fromStack(fixture.stack).hasResourceProperties('AWS::ApiGateway::Method', {
        Integration: Match.objectLike({
          RequestParameters: Match.objectLike({ 'integration.request.header.X-Access-Token': 'method.request.header.X-Vendor-Credential' }),
        }),
      });
    });
  });

  describe('dispatch workflow', () => {
    test('invokes the token function instead of reading the secret, and sends its answer unchanged', () => {
      // GIVEN / WHEN
      const fixture = newFixture();
      const definition = dispatchDefinition(fixture);

      // THEN
      expect(followNext(definition, 'ClaimRequest', 'GetVendorToken')).toEqual(['ClaimRequest', 'GetVendorToken']);
      const state = definition.States.GetVendorToken;
      expect(state).toMatchObject({
        Type: 'Task',
        Resource: 'arn:aws:states:::lambda:invoke',
        Parameters: { FunctionName: `PLACEHOLDER-${logicalIdOf(fixture.stack, fixture.proxy.tokenFunction!)}-Arn`, Payload: {} },
        ResultSelector: { 'secret.$': '$.Payload.authorization' },
        ResultPath: '$.credential',
      });
      expect(definition.States.CallVendor.Parameters.Headers['X-Vendor-Credential.$']).toBe('States.Array($.credential.secret)');
      expect(definition.States.ReadVendorCredential).toBeUndefined();
      expect(JSON.stringify(definition)).not.toMatch(/getSecretValue/i);
      expect(aslErrors(definition)).toEqual([]);
    });

    test('retries Lambda service errors twice with full jitter, nothing else', () => {
      // GIVEN / WHEN
      const definition = dispatchDefinition(newFixture());

      // THEN
      expect(definition.States.GetVendorToken.Retry).toEqual([{
        ErrorEquals: ['Lambda.TooManyRequestsException', 'Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException'],
        IntervalSeconds: 1,
        BackoffRate: 2,
        MaxAttempts: 2,
        JitterStrategy: 'FULL',
      }]);
    });

    test.each(['VendorTokenError', 'Lambda.Unknown', 'States.Timeout'])('sends a %s back through the queue like any retryable vendor error', (error) => {
      // GIVEN
      const definition = dispatchDefinition(newFixture());

      // WHEN
      const catchers: Array<{ ErrorEquals: string[]; Next: string; ResultPath: string }> = definition.States.GetVendorToken.Catch;

      // THEN
      expect(catchers).toEqual([
        // A badly shaped client secret: parked at once (retrying cannot fix it).
        { ErrorEquals: ['VendorCredentialUnusable'], Next: 'ParkInDeadLetterQueue', ResultPath: '$.error' },
        { ErrorEquals: ['States.ALL'], Next: 'ClassifyVendorError', ResultPath: '$.error' },
      ]);
      const input = { attempt: 1, error: { Error: error, Cause: 'Token endpoint https://auth.example.com/oauth/token answered HTTP 503' } };
      expect(routeThroughChoices(definition, 'ClassifyVendorError', input)).toBe('BackoffCaps');
    });

    test('may invoke the token function, and may not read the secret itself', () => {
      // GIVEN / WHEN
      const fixture = newFixture();

      // THEN
      const template = Template.fromStack(fixture.stack);
      const statements = statementsOfRole(template, fixture.stack, fixture.dispatch.stateMachine.role);
      const functionArn = { 'Fn::GetAtt': [logicalIdOf(fixture.stack, fixture.proxy.tokenFunction!), 'Arn'] };
      expect(resourcesGranted(statements, 'lambda:InvokeFunction')).toContainEqual(functionArn);
      expect(resourcesGranted(statements, 'secretsmanager:GetSecretValue')).toEqual([]);
    });
  });

  describe('validation', () => {
    let secret: secretsmanager.ISecret;
    beforeEach(() => {
      secret = new secretsmanager.Secret(testStack(), 'Client');
    });

    test.each([
      ['http://auth.example.com/oauth/token', "tokenUrl must use https: the client secret and the access token travel over it (given 'http://auth.example.com/oauth/token')"],
      ['auth.example.com/oauth/token', "tokenUrl must be an absolute https URL such as https://auth.example.com/oauth/token (given 'auth.example.com/oauth/token')"],
      ['https://auth.example.com/oauth/token#x', "tokenUrl must not carry a fragment (given 'https://auth.example.com/oauth/token#x')"],
    ])('refuses the token URL %p', (tokenUrl, message) => {
      expect(() => VendorCredentials.oauthClientCredentials({ secret, tokenUrl })).toThrow(message);
    });

    test('refuses credentials in the token URL without quoting the password', () => {
      // WHEN
      const attempt = () => VendorCredentials.oauthClientCredentials({ secret, tokenUrl: 'https://client:hunter2@auth.example.com/token' });

      // THEN
      expect(attempt).toThrow("tokenUrl must not carry credentials (user:password@): put them in the secret (given 'https://client:***@auth.example.com/token')");
    });

    test('accepts a token URL that is a token', () => {
      // GIVEN
      const tokenUrl = Token.asString({ 'Fn::ImportValue': 'TokenUrl' });

      // WHEN
      const credentials = VendorCredentials.oauthClientCredentials({ secret, tokenUrl });

      // THEN
      expect(credentials.oauthTokenUrl).toBe(tokenUrl);
    });

    test.each(['X Access Token', 'Authorization:', ''])('refuses the header name %p', (headerName) => {
      expect(() => VendorCredentials.oauthClientCredentials({ secret, tokenUrl: TOKEN_URL, headerName }))
        .toThrow(`headerName must be an HTTP header name (letters, digits and !#$%&'*+.^_\`|~-), given '${headerName}'`);
    });

    test.each(['jobs  read', ' jobs', 'jobs "read"'])('refuses the scope %p', (scope) => {
      expect(() => VendorCredentials.oauthClientCredentials({ secret, tokenUrl: TOKEN_URL, scope }))
        .toThrow(`scope must be scopes separated by single spaces, each of printable ASCII without '"' or '\\' (RFC 6749 section 3.3), given '${scope}'`);
    });

    test('refuses an empty audience', () => {
      expect(() => VendorCredentials.oauthClientCredentials({ secret, tokenUrl: TOKEN_URL, audience: ' ' }))
        .toThrow("audience must not be empty when given (leave it out for no audience parameter), given ' '");
    });

    test('refuses an unknown client authentication', () => {
      expect(() => VendorCredentials.oauthClientCredentials({ secret, tokenUrl: TOKEN_URL, clientAuthentication: 'POST' as OAuthClientAuthentication }))
        .toThrow("clientAuthentication must be OAuthClientAuthentication.BASIC or OAuthClientAuthentication.BODY, given 'POST'");
    });
  });

  test('the token function role is the only principal granted the secret', () => {
    // GIVEN / WHEN
    const fixture = newFixture();

    // THEN: no other role in the stack may read it.
    const template = Template.fromStack(fixture.stack);
    const readers = Object.entries(template.findResources('AWS::IAM::Role'))
      .filter(([logicalId]) => Object.values(template.findResources('AWS::IAM::Policy'))
        .filter((p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: logicalId }]))
        .some((p) => JSON.stringify(p.Properties.PolicyDocument).includes('secretsmanager:GetSecretValue')))
      .map(([logicalId]) => logicalId);
    expect(readers).toEqual([logicalIdOf(fixture.stack, fixture.proxy.tokenFunction!.role as iam.Role)]);
  });
});
