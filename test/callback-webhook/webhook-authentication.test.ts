import { Size, Stack, Duration } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AsyncExternalApiOrchestrator, CallbackUrlDelivery, CallbackWebhook, CallbackWebhookProps, TokenCorrelationTable, WebhookAuthentication, WebhookSignature } from '../../src';
import { callbackRequestTemplate } from '../../src/callback-webhook/mapping-template';
import { testStack } from '../util';

function newWebhook(stack: Stack, props: Partial<CallbackWebhookProps> = {}): CallbackWebhook {
  return new CallbackWebhook(stack, 'Webhook', { table: new TokenCorrelationTable(stack, 'Table'), ...props });
}

function routes(template: Template): string[] {
  const resources = template.findResources('AWS::ApiGateway::Resource');
  const pathOf = (id: string): string => {
    const parent = resources[id].Properties.ParentId;
    const parentId = parent.Ref;
    return `${parentId && resources[parentId] ? pathOf(parentId) : ''}/${resources[id].Properties.PathPart}`;
  };
  return Object.values(template.findResources('AWS::ApiGateway::Method'))
    .map((m) => `${m.Properties.HttpMethod} ${m.Properties.ResourceId.Ref ? pathOf(m.Properties.ResourceId.Ref) : '/'}`);
}

function processorEnv(template: Template): Record<string, unknown> {
  const fns = Object.values(template.findResources('AWS::Lambda::Function', { Properties: { Description: Match.stringLikeRegexp('Resumes') } }));
  return fns[0].Properties.Environment.Variables;
}

describe('CallbackWebhook authentication', () => {
  test('by default only POST /callback/{token} exists, the token goes into the envelope, and the processor requires it', () => {
    const stack = testStack();
    newWebhook(stack);
    const template = Template.fromStack(stack);
    expect(routes(template)).toEqual(['POST /callback/{token}']);
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      Integration: { RequestTemplates: { 'application/json': callbackRequestTemplate({ tokenFromPath: true }) } },
    });
    expect(processorEnv(template)).toMatchObject({ REQUIRE_CALLBACK_TOKEN: 'true', MAX_PAYLOAD_BYTES: String(180 * 1024) });
    expect(processorEnv(template).WEBHOOK_SIGNATURE).toBeUndefined();
    Annotations.fromStack(stack).hasNoWarning('*', Match.anyValue());
  });

  test('a signature is verified with the secret, which the processor may read', () => {
    const stack = testStack();
    const secret = new secretsmanager.Secret(stack, 'Signing');
    newWebhook(stack, { authentication: WebhookAuthentication.capabilityUrl(WebhookSignature.stripe(secret, { tolerance: Duration.minutes(2) })) });
    const template = Template.fromStack(stack);
    const env = processorEnv(template);
    expect(JSON.parse(env.WEBHOOK_SIGNATURE as string)).toMatchObject({ scheme: 'stripe', signatureHeader: 'Stripe-Signature', toleranceSeconds: 120 });
    expect(env.WEBHOOK_SIGNATURE_SECRET_ARN).toEqual({ Ref: Object.keys(template.findResources('AWS::SecretsManager::Secret'))[0] });
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'] })]) },
    });
  });

  test('signatureOnly uses the bare POST /callback and no token', () => {
    const stack = testStack();
    newWebhook(stack, { authentication: WebhookAuthentication.signatureOnly(WebhookSignature.github(new secretsmanager.Secret(stack, 'S'))) });
    const template = Template.fromStack(stack);
    expect(routes(template)).toEqual(['POST /callback']);
    expect(processorEnv(template).REQUIRE_CALLBACK_TOKEN).toBe('false');
    Annotations.fromStack(stack).hasNoWarning('*', Match.anyValue());
  });

  test('none() is an explicit opt-out that warns at synth time', () => {
    const stack = testStack();
    newWebhook(stack, { authentication: WebhookAuthentication.none() });
    expect(routes(Template.fromStack(stack))).toEqual(['POST /callback']);
    Annotations.fromStack(stack).hasWarning('/TestStack/Webhook', Match.stringLikeRegexp('does not authenticate callbacks.*guesses a job id.*cdk-async-external-api:webhookUnauthenticated'));
  });

  test.each([
    [Size.kibibytes(181), /maxPayloadSize must be between 1 byte and 180 KiB \(given 185344 bytes\)/],
    [Size.bytes(0), /given 0 bytes/],
  ])('fails if maxPayloadSize is out of range (%s)', (size, message) => {
    expect(() => newWebhook(testStack(), { maxPayloadSize: size })).toThrow(message);
  });

  test('associates a regional web ACL with the stage', () => {
    const stack = testStack();
    const webhook = newWebhook(stack, { webAclArn: 'arn:aws:wafv2:us-east-1:123456789012:regional/webacl/callbacks/abc' });
    Template.fromStack(stack).hasResourceProperties('AWS::WAFv2::WebACLAssociation', {
      ResourceArn: stack.resolve(webhook.restApi.deploymentStage.stageArn),
      WebACLArn: 'arn:aws:wafv2:us-east-1:123456789012:regional/webacl/callbacks/abc',
    });
    expect(() => newWebhook(testStack(), { webAclArn: 'arn:aws:wafv2:us-east-1:123456789012:global/webacl/x/y' })).toThrow(/REGIONAL AWS WAF web ACL/);
  });

  test('the orchestrator passes authentication through and sends each request its capability URL; a vendor without per-request URLs needs signatureOnly', () => {
    const base = { vendorUrl: 'https://vendor.example.com/v1/jobs', requestsPerSecond: 5, callbackTimeout: Duration.minutes(5) };
    expect(() => new AsyncExternalApiOrchestrator(testStack(), 'O', { ...base, dispatch: { callbackUrlDelivery: CallbackUrlDelivery.none() } }))
      .toThrow(/WebhookAuthentication.signatureOnly/);
    const stack = testStack();
    const o = new AsyncExternalApiOrchestrator(stack, 'O', {
      ...base,
      dispatch: { callbackUrlDelivery: CallbackUrlDelivery.none() },
      webhook: { authentication: WebhookAuthentication.signatureOnly(WebhookSignature.github(new secretsmanager.Secret(stack, 'S'))) },
    });
    expect(o.webhook.capabilityUrls).toBe(false);
  });
});
