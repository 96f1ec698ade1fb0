import { Duration, Fn, Stack, Token } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { ThrottledProxy, ThrottledProxyProps, VendorCredentials } from '../../src';
import { resourcesGranted, statementsOfRole, testStack } from '../util';

const VENDOR_URL = 'https://vendor.example.com/v1/jobs';

function newProxy(stack: Stack, props: Partial<ThrottledProxyProps> = {}): ThrottledProxy {
  return new ThrottledProxy(stack, 'Proxy', { vendorUrl: VENDOR_URL, requestsPerSecond: 10, ...props });
}

function invokerRole(stack: Stack, id = 'Invoker'): iam.Role {
  return new iam.Role(stack, id, { assumedBy: new iam.ServicePrincipal('states.amazonaws.com') });
}

/** The Deny statement of the proxy's resource policy. */
function denyStatement(template: Template): any {
  const apis = Object.values(template.findResources('AWS::ApiGateway::RestApi'));
  expect(apis).toHaveLength(1);
  const statements: any[] = apis[0].Properties.Policy.Statement;
  const denies = statements.filter((s) => s.Effect === 'Deny');
  expect(denies).toHaveLength(1);
  return denies[0];
}

describe('ThrottledProxy', () => {
  describe('stage throttling', () => {
    test.each([
      // [contract, burst]
      [10, 3],
      [1, 2],
      [0.5, 2],
      [25, 7],
      [100, 25],
      [1000, 250],
    ])('throttles the stage to the contract of %p requests per second with a burst of %p', (requestsPerSecond, burst) => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const proxy = newProxy(stack, { requestsPerSecond });

      // THEN
      expect(proxy.throttlingRateLimit).toBe(requestsPerSecond);
      expect(proxy.throttlingBurstLimit).toBe(burst);
      Template.fromStack(stack).hasResourceProperties('AWS::ApiGateway::Stage', {
        StageName: 'vendor',
        MethodSettings: [Match.objectLike({
          HttpMethod: '*',
          ResourcePath: '/*',
          ThrottlingRateLimit: requestsPerSecond,
          ThrottlingBurstLimit: burst,
        })],
      });
    });

    test('uses a lower rate limit and an explicit burst limit when given', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newProxy(stack, { requestsPerSecond: 10, throttlingRateLimit: 8, throttlingBurstLimit: 2, stageName: 'live' });

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::ApiGateway::Stage', {
        StageName: 'live',
        MethodSettings: [Match.objectLike({ ThrottlingRateLimit: 8, ThrottlingBurstLimit: 2 })],
      });
    });

    test('fails if throttlingRateLimit is above the contract', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newProxy(stack, { requestsPerSecond: 10, throttlingRateLimit: 11 }))
        .toThrow(/throttlingRateLimit must be above 0 and at most the contract of 10 requests per second \(given 11\)/);
    });

    test('fails if throttlingRateLimit is 0', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newProxy(stack, { throttlingRateLimit: 0 })).toThrow(/throttlingRateLimit must be above 0/);
    });

    test.each([0, 1.5, 5001])('fails if throttlingBurstLimit is %p', (throttlingBurstLimit) => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newProxy(stack, { throttlingBurstLimit }))
        .toThrow(/throttlingBurstLimit must be a whole number between 1 and 5000/);
    });
  });

  test('writes access logs to a retained log group kept three months by default', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    const proxy = newProxy(stack);

    // THEN
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      AccessLogSetting: {
        DestinationArn: stack.resolve(proxy.accessLogGroup.logGroupArn),
        Format: Match.stringLikeRegexp('requestId'),
      },
      MethodSettings: [Match.objectLike({ MetricsEnabled: true })],
    });
    template.hasResource('AWS::Logs::LogGroup', {
      Properties: { RetentionInDays: 90 },
      DeletionPolicy: 'Retain',
    });
  });

  test('logs the requested path ($context.path, stage included) and the stage, so the audit can match named limits', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    newProxy(stack);

    // THEN
    const [stage] = Object.values(Template.fromStack(stack).findResources('AWS::ApiGateway::Stage'));
    expect(JSON.parse(stage.Properties.AccessLogSetting.Format)).toMatchObject({
      httpMethod: '$context.httpMethod', resourcePath: '$context.resourcePath', path: '$context.path', stage: '$context.stage',
    });
  });

  test('keeps access logs for the retention it is given', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    newProxy(stack, { accessLogRetention: logs.RetentionDays.ONE_YEAR });

    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 365 });
  });

  test('creates a regional REST API without the account-wide CloudWatch role', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    newProxy(stack);

    // THEN
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::ApiGateway::RestApi', {
      EndpointConfiguration: { Types: ['REGIONAL'] },
    });
    template.resourceCountIs('AWS::ApiGateway::Account', 0);
  });

  test('requires IAM authorization on every method', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    newProxy(stack);

    // THEN
    const methods = Object.values(Template.fromStack(stack).findResources('AWS::ApiGateway::Method'));
    expect(methods.length).toBeGreaterThanOrEqual(2);
    for (const method of methods) {
      expect(method.Properties.AuthorizationType).toBe('AWS_IAM');
    }
  });

  test('proxies the root to vendorUrl and every path below it to vendorUrl/{proxy}', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    newProxy(stack);

    // THEN
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::ApiGateway::Method', 2);
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'ANY',
      ResourceId: { 'Fn::GetAtt': [Match.anyValue(), 'RootResourceId'] },
      Integration: Match.objectLike({ Type: 'HTTP_PROXY', IntegrationHttpMethod: 'ANY', Uri: VENDOR_URL }),
    });
    template.hasResourceProperties('AWS::ApiGateway::Resource', { PathPart: '{proxy+}' });
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'ANY',
      RequestParameters: { 'method.request.path.proxy': true },
      Integration: Match.objectLike({
        Type: 'HTTP_PROXY',
        Uri: `${VENDOR_URL}/{proxy}`,
        RequestParameters: { 'integration.request.path.proxy': 'method.request.path.proxy' },
      }),
    });
  });

  describe('integration timeout (issue 11, finding 6)', () => {
    test('sets TimeoutInMillis on both integrations from integrationTimeout, 29 s by default', () => {
      // GIVEN
      const stack = testStack();
      const other = testStack();

      // WHEN
      const proxy = newProxy(stack);
      newProxy(other, { integrationTimeout: Duration.seconds(12) });

      // THEN
      expect(proxy.integrationTimeout.toSeconds()).toBe(29);
      const timeouts = (s: Stack) => Object.values(Template.fromStack(s).findResources('AWS::ApiGateway::Method'))
        .map((m) => m.Properties.Integration.TimeoutInMillis);
      expect(timeouts(stack)).toEqual([29_000, 29_000]);
      expect(timeouts(other)).toEqual([12_000, 12_000]);
    });

    test('refuses an integrationTimeout above API Gateway\'s default quota of 29 s, naming the fix', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newProxy(stack, { integrationTimeout: Duration.seconds(30) }))
        .toThrow(/integrationTimeout must be between 50 milliseconds and integrationTimeoutQuota \(29 seconds\) \(given 30 seconds;.*set integrationTimeoutQuota/);
      expect(() => newProxy(testStack(), { integrationTimeout: Duration.millis(49) })).toThrow(/integrationTimeout must be between 50 milliseconds/);
    });

    test('allows up to integrationTimeoutQuota once the quota was raised, at most 300 s', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newProxy(stack, { integrationTimeout: Duration.minutes(2), integrationTimeoutQuota: Duration.minutes(3) });

      // THEN
      Template.fromStack(stack).allResourcesProperties('AWS::ApiGateway::Method', { Integration: Match.objectLike({ TimeoutInMillis: 120_000 }) });
      expect(() => newProxy(testStack(), { integrationTimeoutQuota: Duration.seconds(301) })).toThrow(/integrationTimeoutQuota must be between 29 seconds and 5 minutes \(given 5 minutes 1 second\)/);
    });
  });

  describe('resource policy', () => {
    test('allows the account and denies every principal not granted', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newProxy(stack);

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::ApiGateway::RestApi', {
        Policy: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Allow',
              Action: 'execute-api:Invoke',
              Principal: { AWS: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::123456789012:root']] } },
              Resource: 'execute-api:/*',
            }),
            Match.objectLike({
              Effect: 'Deny',
              Action: 'execute-api:Invoke',
              Principal: { AWS: '*' },
              Resource: 'execute-api:/*',
            }),
          ]),
        },
      });
    });

    test('lists a placeholder that matches no caller when nobody was granted', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newProxy(stack);

      // THEN
      const deny = denyStatement(Template.fromStack(stack));
      expect(deny.Condition).toEqual({
        ArnNotEquals: { 'aws:PrincipalArn': ['arn:aws:iam::000000000000:role/no-invoker-granted'] },
      });
    });

    test('lists exactly the role passed to grantInvoke', () => {
      // GIVEN
      const stack = testStack();
      const proxy = newProxy(stack);
      const role = invokerRole(stack);

      // WHEN
      proxy.grantInvoke(role);

      // THEN
      const deny = denyStatement(Template.fromStack(stack));
      expect(deny.Condition).toEqual({
        ArnNotEquals: { 'aws:PrincipalArn': [stack.resolve(role.roleArn)] },
      });
    });

    test('lists every granted role once', () => {
      // GIVEN
      const stack = testStack();
      const proxy = newProxy(stack);
      const first = invokerRole(stack, 'First');
      const second = invokerRole(stack, 'Second');

      // WHEN
      proxy.grantInvoke(first);
      proxy.grantInvoke(second);
      proxy.grantInvoke(first);

      // THEN
      const deny = denyStatement(Template.fromStack(stack));
      expect(deny.Condition.ArnNotEquals['aws:PrincipalArn']).toEqual([
        stack.resolve(first.roleArn),
        stack.resolve(second.roleArn),
      ]);
    });
  });

  describe('grantInvoke', () => {
    test('gives the role execute-api:Invoke on the stage', () => {
      // GIVEN
      const stack = testStack();
      const proxy = newProxy(stack);
      const role = invokerRole(stack);

      // WHEN
      proxy.grantInvoke(role);

      // THEN
      const statements = statementsOfRole(Template.fromStack(stack), stack, role);
      expect(resourcesGranted(statements, 'execute-api:Invoke')).toEqual([
        {
          'Fn::Join': ['', [
            'arn:', { Ref: 'AWS::Partition' }, ':execute-api:us-east-1:123456789012:',
            stack.resolve(proxy.restApi.restApiId), '/vendor/*/*',
          ]],
        },
      ]);
    });

    test('accepts a grantable whose principal is a role, such as a Lambda function', () => {
      // GIVEN
      const stack = testStack();
      const proxy = newProxy(stack);
      const role = invokerRole(stack);
      const grantable: iam.IGrantable = { grantPrincipal: role };

      // WHEN
      proxy.grantInvoke(grantable);

      // THEN
      const deny = denyStatement(Template.fromStack(stack));
      expect(deny.Condition.ArnNotEquals['aws:PrincipalArn']).toEqual([stack.resolve(role.roleArn)]);
    });

    test('fails if the grantee is an IAM user', () => {
      // GIVEN
      const stack = testStack();
      const proxy = newProxy(stack);
      const user = new iam.User(stack, 'User');

      // WHEN / THEN
      expect(() => proxy.grantInvoke(user)).toThrow(/grantInvoke needs an IAM role/);
    });

    test('fails if the grantee is a service principal', () => {
      // GIVEN
      const stack = testStack();
      const proxy = newProxy(stack);

      // WHEN / THEN
      expect(() => proxy.grantInvoke({ grantPrincipal: new iam.ServicePrincipal('lambda.amazonaws.com') }))
        .toThrow(/grantInvoke needs an IAM role/);
    });
  });

  describe('vendor credentials', () => {
    test('maps X-Vendor-Credential to the header the vendor expects on both methods', () => {
      // GIVEN
      const stack = testStack();
      const secret = new secretsmanager.Secret(stack, 'ApiKey');

      // WHEN
      newProxy(stack, { credentials: VendorCredentials.fromSecretHeader({ secret, headerName: 'Authorization' }) });

      // THEN
      const methods = Object.values(Template.fromStack(stack).findResources('AWS::ApiGateway::Method'));
      expect(methods).toHaveLength(2);
      for (const method of methods) {
        expect(method.Properties.RequestParameters).toMatchObject({ 'method.request.header.X-Vendor-Credential': true });
        expect(method.Properties.Integration.RequestParameters).toMatchObject({
          'integration.request.header.Authorization': 'method.request.header.X-Vendor-Credential',
        });
      }
    });

    test('uses x-api-key when no header name is given', () => {
      // GIVEN
      const stack = testStack();
      const secret = new secretsmanager.Secret(stack, 'ApiKey');

      // WHEN
      newProxy(stack, { credentials: VendorCredentials.fromSecretHeader({ secret }) });

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::ApiGateway::Method', {
        Integration: Match.objectLike({
          RequestParameters: Match.objectLike({ 'integration.request.header.x-api-key': 'method.request.header.X-Vendor-Credential' }),
        }),
      });
    });

    test('overwrites the proxy hop\'s SigV4 headers on both methods, with and without credentials (issue 11, finding 9)', () => {
      // GIVEN
      const stack = testStack();
      const withKey = testStack();

      // WHEN
      newProxy(stack);
      newProxy(withKey, { credentials: VendorCredentials.fromSecretHeader({ secret: new secretsmanager.Secret(withKey, 'ApiKey') }) });

      // THEN the vendor receives '-' in each of them
      const overwritten = {
        'integration.request.header.X-Amz-Date': '\'-\'',
        'integration.request.header.X-Amz-Security-Token': '\'-\'',
        'integration.request.header.X-Amz-Content-Sha256': '\'-\'',
      };
      for (const s of [stack, withKey]) {
        const methods = Object.values(Template.fromStack(s).findResources('AWS::ApiGateway::Method'));
        expect(methods).toHaveLength(2);
        for (const method of methods) {
          expect(method.Properties.Integration.RequestParameters).toMatchObject(overwritten);
        }
      }
    });

    test('maps no header without credentials', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const proxy = newProxy(stack);

      // THEN
      expect(proxy.credentials.headerName).toBeUndefined();
      const methods = Object.values(Template.fromStack(stack).findResources('AWS::ApiGateway::Method'));
      for (const method of methods) {
        expect(JSON.stringify(method.Properties)).not.toMatch(/X-Vendor-Credential/);
      }
    });

    test('fails if headerName is not an HTTP header name', () => {
      // GIVEN
      const stack = testStack();
      const secret = new secretsmanager.Secret(stack, 'ApiKey');

      // WHEN / THEN
      expect(() => VendorCredentials.fromSecretHeader({ secret, headerName: 'X Api Key' }))
        .toThrow(/headerName must be an HTTP header name/);
    });

    test('fails if jsonField is not a top-level field name', () => {
      // GIVEN
      const stack = testStack();
      const secret = new secretsmanager.Secret(stack, 'ApiKey');

      // WHEN / THEN
      expect(() => VendorCredentials.fromSecretHeader({ secret, jsonField: 'a.b' }))
        .toThrow(/jsonField must be a top-level field name/);
    });
  });

  describe('validation', () => {
    test.each([
      ['http://vendor.example.com/v1/jobs', /vendorUrl must use https/],
      ['ftp://vendor.example.com/v1/jobs', /vendorUrl must use https/],
      ['vendor.example.com/v1/jobs', /vendorUrl must be an absolute https URL/],
      ['', /vendorUrl must be an absolute https URL/],
      ['https://vendor.example.com/v1/jobs/', /vendorUrl must not end with '\/'/],
      ['https://vendor.example.com/', /vendorUrl must not end with '\/'/],
      ['https://vendor.example.com/v1/jobs?tenant=a', /vendorUrl must not carry a query string or fragment/],
      ['https://vendor.example.com/v1/jobs#top', /vendorUrl must not carry a query string or fragment/],
      // An empty query or fragment still ends the path: the proxy would append '/{proxy}' after it.
      ['https://vendor.example.com/v1/jobs?', /vendorUrl must not carry a query string or fragment/],
      ['https://vendor.example.com/v1/jobs#', /vendorUrl must not carry a query string or fragment/],
    ])('fails if vendorUrl is %p', (vendorUrl, message) => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newProxy(stack, { vendorUrl })).toThrow(message);
    });

    test.each([0, -1, 10_001, Number.NaN, Number.POSITIVE_INFINITY])('fails if requestsPerSecond is %p', (requestsPerSecond) => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newProxy(stack, { requestsPerSecond })).toThrow(/requestsPerSecond must be above 0 and at most 10000/);
    });

    test('fails if requestsPerSecond is a token', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => newProxy(stack, { requestsPerSecond: Token.asNumber({ Ref: 'Rate' }) }))
        .toThrow(/requestsPerSecond must be a plain number known at synth time/);
    });

    test('accepts a vendorUrl token', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      newProxy(stack, { vendorUrl: Fn.importValue('VendorUrl') });

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::ApiGateway::Method', {
        Integration: Match.objectLike({ Uri: { 'Fn::ImportValue': 'VendorUrl' } }),
      });
    });
  });
});
