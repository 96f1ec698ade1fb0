/**
 * cdk-nag AwsSolutions over the L3: a user who runs the checks sees no error and no warning from
 * the library's resources. Every finding the library does not fix is suppressed, with its written
 * reason, inside the constructs (resource metadata `cdk_nag`), so users get the suppressions
 * without depending on cdk-nag.
 */
import { Aspects, Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { buildExampleApp } from '../../examples/app';
import { AsyncExternalApiOrchestrator, KeyLimits, Priority, VendorContract, VendorContractState, VendorCredentials, WebhookAuthentication, WebhookSignature } from '../../src';
import { actionsOf, resourcesOf, PolicyStatementJson, TEST_ENV, testApp } from '../util';

/** Every AwsSolutions error and warning of `stack`, as `<path>: <message>` lines. */
function nagFindings(stack: Stack): string[] {
  Aspects.of(stack).add(new AwsSolutionsChecks({ verbose: true }));
  const annotations = Annotations.fromStack(stack);
  return [
    ...annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-.*')),
    ...annotations.findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*')),
  ].map((m) => `${m.id}: ${String(m.entry.data).split('\n')[0]}`);
}

/** An orchestrator alone in a stack, with `props` on top of a minimal configuration. */
function orchestratorStack(props: Partial<ConstructorParameters<typeof AsyncExternalApiOrchestrator>[2]> = {}): Stack {
  const stack = new Stack(testApp(), 'Bare', { env: TEST_ENV });
  new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://api.vendor.example/v1/jobs',
    requestsPerSecond: 5,
    callbackTimeout: Duration.minutes(10),
    ...props,
  });
  return stack;
}

/** An orchestrator with every option that adds IAM grants: customer-managed keys, OAuth, X-Ray. */
function fullyOptionedStack(): Stack {
  const stack = new Stack(testApp(), 'Full', { env: TEST_ENV });
  const key = new kms.Key(stack, 'Key', { enableKeyRotation: true });
  const secret = new secretsmanager.Secret(stack, 'VendorSecret');
  const vendor = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://api.vendor.example/v1/jobs',
    requestsPerSecond: 5,
    callbackTimeout: Duration.minutes(10),
    tracing: true,
    consumer: { encryptionKey: key },
    webhook: { encryptionKey: key },
    table: { encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED, encryptionKey: key },
    proxy: {
      credentials: VendorCredentials.oauthClientCredentials({ secret, tokenUrl: 'https://auth.vendor.example/oauth/token' }),
    },
  });
  return Object.assign(stack, { vendor });
}

/** Only the library's findings: those under the orchestrator's construct path. */
function underOrchestrator(findings: string[], orchestratorPath: string): string[] {
  return findings.filter((f) => f.startsWith(`/${orchestratorPath}/`));
}

describe('cdk-nag AwsSolutions', () => {
  test('the example app has no errors or warnings from the library', () => {
    // GIVEN
    const { stack } = buildExampleApp();

    // WHEN
    const findings = nagFindings(stack);

    // THEN: the example's own main workflow is user code (its logging and tracing are the user's
    // choice, and priced by `npm run cost`); everything the orchestrator creates is clean
    expect(underOrchestrator(findings, 'AsyncExternalApiExample/Vendor')).toEqual([]);
    expect(findings.length).toBeGreaterThan(0);
  });

  test('a bare orchestrator has no errors or warnings', () => {
    // GIVEN
    const stack = orchestratorStack();

    // WHEN
    const findings = nagFindings(stack);

    // THEN
    expect(findings).toEqual([]);
  });

  test('an orchestrator with a jobs-in-flight limit has no errors or warnings', () => {
    const stack = orchestratorStack({ requestsPerSecond: undefined, contract: VendorContract.of({ requestsPerSecond: 5, maxJobsInFlight: 3 }) });
    expect(nagFindings(stack)).toEqual([]);
  });

  test('an orchestrator with a jobs-in-flight limit and a customer-managed key on its queues has no errors or warnings (the waiting room\'s grants)', () => {
    const stack = new Stack(testApp(), 'WaitingKey', { env: TEST_ENV });
    const key = new kms.Key(stack, 'Key', { enableKeyRotation: true });
    new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://api.vendor.example/v1/jobs',
      contract: VendorContract.of({ requestsPerSecond: 5, maxJobsInFlight: 3 }),
      callbackTimeout: Duration.minutes(10),
      consumer: { encryptionKey: key },
      webhook: { encryptionKey: key },
    });
    expect(nagFindings(stack)).toEqual([]);
  });

  test('two orchestrators sharing one contract state (and its dynamic delay), one importing it, have no errors or warnings', () => {
    const stack = new Stack(testApp(), 'Shared', { env: TEST_ENV });
    const contract = VendorContract.of({ requestsPerSecond: 5, maxJobsInFlight: 3 });
    const state = new VendorContractState(stack, 'State', { contract, dynamicDelay: {} });
    const imported = VendorContractState.fromVendorContractStateAttributes(stack, 'Imported', {
      contract,
      pacerTableName: 'blue-pacer',
      dynamicDelay: { applicationId: 'app1', environmentId: 'env1', configurationProfileId: 'prof1' },
    });
    for (const [id, contractState] of [['Orders', state], ['Invoices', state], ['Green', imported]] as const) {
      new AsyncExternalApiOrchestrator(stack, id, {
        vendorUrl: 'https://api.vendor.example/v1/jobs', contract, contractState, callbackTimeout: Duration.minutes(10),
      });
    }
    expect(nagFindings(stack)).toEqual([]);
  });

  test('limits per key (the key settings table, own and shared, the dispatcher\'s read and a managing role\'s grant) have no errors or warnings (issue 15)', () => {
    const stack = new Stack(testApp(), 'PerKey', { env: TEST_ENV });
    const contract = VendorContract.of({ requestsPerSecond: 5, perKey: KeyLimits.of({ requestsPerSecond: 1 }) });
    const state = new VendorContractState(stack, 'State', { contract });
    const manager = new iam.Role(stack, 'KeyManager', { assumedBy: new iam.AccountRootPrincipal() });
    for (const [id, contractState] of [['Own', undefined], ['Shared', state]] as const) {
      const o = new AsyncExternalApiOrchestrator(stack, id, { vendorUrl: 'https://api.vendor.example/v1/jobs', contract, contractState, callbackTimeout: Duration.minutes(10) });
      o.grantManageKeySettings(manager);
    }
    expect(nagFindings(stack)).toEqual([]);
  });

  test('an orchestrator with customer-managed keys, OAuth credentials and X-Ray has no errors or warnings', () => {
    // GIVEN
    const stack = fullyOptionedStack();

    // WHEN
    const findings = nagFindings(stack);

    // THEN: the stack's own key and secret are the user's: only the library's resources count
    expect(underOrchestrator(findings, 'Full/Vendor')).toEqual([]);
  });

  test('a high-priority request queue (issue 15: its DLQ, its mapping, a customer-managed key) has no errors or warnings', () => {
    // GIVEN
    const stack = new Stack(testApp(), 'HighQueue', { env: TEST_ENV });
    const key = new kms.Key(stack, 'Key', { enableKeyRotation: true });
    const vendor = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://api.vendor.example/v1/jobs',
      requestsPerSecond: 5,
      callbackTimeout: Duration.minutes(10),
      consumer: { encryptionKey: key },
    });
    const main = new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(vendor.submitJobTask(stack, 'Submit', {
        payload: sfn.TaskInput.fromJsonPathAt('$.order'), priority: Priority.fromJsonPath('$.priority'),
      })),
    });
    vendor.registerWorkflow(main);

    // WHEN
    const findings = nagFindings(stack);

    // THEN
    expect(vendor.consumer.highPriorityQueue).toBeDefined();
    expect(underOrchestrator(findings, 'HighQueue/Vendor')).toEqual([]);
  });

  test('vendor calls with a customer-managed key on the correlation table only (the claim uses the key) have no errors or warnings', () => {
    // GIVEN
    const stack = new Stack(testApp(), 'TableKey', { env: TEST_ENV });
    const key = new kms.Key(stack, 'Key', { enableKeyRotation: true });
    const vendor = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://api.vendor.example/v1/jobs',
      requestsPerSecond: 5,
      callbackTimeout: Duration.minutes(10),
      table: { encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED, encryptionKey: key },
    });
    const main = new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(vendor.callVendorTask(stack, 'Fetch', { path: '/x' })),
    });
    vendor.registerWorkflow(main);

    // WHEN
    const findings = nagFindings(stack);

    // THEN
    expect(underOrchestrator(findings, 'TableKey/Vendor')).toEqual([]);
  });

  test('an orchestrator whose credential and webhook signing secret are per key (secret name patterns, a customer-managed key) has no errors or warnings', () => {
    // GIVEN: issue 15's credential function, allowed GetSecretValue on the pattern's names
    const stack = new Stack(testApp(), 'PerKey', { env: TEST_ENV });
    const key = new kms.Key(stack, 'Key', { enableKeyRotation: true });
    const vendor = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://api.vendor.example/v1/jobs',
      requestsPerSecond: 5,
      callbackTimeout: Duration.minutes(10),
      proxy: { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}', jsonField: 'apiKey', encryptionKey: key }) },
      webhook: { authentication: WebhookAuthentication.capabilityUrlPerKey(WebhookSignature.github(new secretsmanager.Secret(stack, 'Signing')), 'vendor-webhook/{key}') },
    });
    vendor.registerWorkflow(new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(vendor.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromJsonPathAt('$.order'), key: sfn.JsonPath.stringAt('$.customerId') })
        .next(vendor.callVendorTask(stack, 'Fetch', { path: '/x', key: sfn.JsonPath.stringAt('$.customerId') }))),
    }));

    // WHEN
    const findings = nagFindings(stack);

    // THEN
    expect(underOrchestrator(findings, 'PerKey/Vendor')).toEqual([]);
  });

  test('an orchestrator whose credential is a JSON secret field (a credential function) has no errors or warnings', () => {
    // GIVEN: the proxy's credential function, invoked by the dispatch and vendor-call workflows
    const stack = new Stack(testApp(), 'JsonSecret', { env: TEST_ENV });
    const secret = new secretsmanager.Secret(stack, 'VendorSecret');
    const vendor = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://api.vendor.example/v1/jobs',
      requestsPerSecond: 5,
      callbackTimeout: Duration.minutes(10),
      proxy: { credentials: VendorCredentials.fromSecretHeader({ secret, jsonField: 'apiKey', prefix: 'Bearer ' }) },
    });
    vendor.registerWorkflow(new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(vendor.callVendorTask(stack, 'Fetch', { path: '/x' })),
      logs: { destination: new logs.LogGroup(stack, 'MainLogs'), level: sfn.LogLevel.ALL },
      tracingEnabled: true,
    }));

    // WHEN
    const findings = nagFindings(stack);

    // THEN
    expect(vendor.proxy.credentialFunction).toBeDefined();
    expect(underOrchestrator(findings, 'JsonSecret/Vendor')).toEqual([]);
  });

  test('the checks do find what is not suppressed (the test can fail)', () => {
    // GIVEN: a user workflow of their own, logging nothing
    const stack = orchestratorStack();
    new sfn.StateMachine(stack, 'UserWorkflow', { definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'Step')) });

    // WHEN
    const findings = nagFindings(stack);

    // THEN
    expect(findings).toEqual(expect.arrayContaining([expect.stringMatching(/^\/Bare\/UserWorkflow\/Resource: AwsSolutions-SF1/)]));
    expect(underOrchestrator(findings, 'Bare/Vendor')).toEqual([]);
  });

  test('every suppression ships as resource metadata with a written reason', () => {
    // GIVEN
    const template = Template.fromStack(fullyOptionedStack());

    // WHEN
    const rules = Object.values(template.toJSON().Resources as Record<string, any>)
      .flatMap((r) => r.Metadata?.cdk_nag?.rules_to_suppress ?? []) as Array<{ id: string; reason: string }>;

    // THEN
    expect(new Set(rules.map((r) => r.id))).toEqual(new Set([
      'AwsSolutions-APIG2', 'AwsSolutions-APIG3', 'AwsSolutions-APIG4', 'AwsSolutions-APIG6', 'AwsSolutions-COG4',
      'AwsSolutions-SF1', 'AwsSolutions-SF2', 'AwsSolutions-L1', 'AwsSolutions-IAM4', 'AwsSolutions-IAM5',
    ]));
    for (const rule of rules) {
      expect(rule.reason.length).toBeGreaterThanOrEqual(40);
    }
  });

  test('IAM policies use Resource * only for actions AWS offers no resource-level permission for', () => {
    // GIVEN: the X-Ray and log delivery actions, which support no resource-level permissions
    const allowedOnWildcard = new Set([
      'logs:CreateLogDelivery', 'logs:GetLogDelivery', 'logs:UpdateLogDelivery', 'logs:DeleteLogDelivery',
      'logs:ListLogDeliveries', 'logs:PutResourcePolicy', 'logs:DescribeResourcePolicies', 'logs:DescribeLogGroups',
      'xray:PutTraceSegments', 'xray:PutTelemetryRecords', 'xray:GetSamplingRules', 'xray:GetSamplingTargets',
    ]);
    for (const stack of [orchestratorStack(), fullyOptionedStack()]) {
      const template = Template.fromStack(stack);

      // WHEN
      const statements = Object.values(template.findResources('AWS::IAM::Policy'))
        .flatMap((p) => p.Properties.PolicyDocument.Statement as PolicyStatementJson[]);
      const onWildcard = statements.filter((s) => s.Effect === 'Allow' && resourcesOf(s).includes('*')).flatMap(actionsOf);

      // THEN
      expect(onWildcard.filter((a) => !allowedOnWildcard.has(a))).toEqual([]);
    }
  });

  test('queues and tables are encrypted and queues refuse anything but TLS', () => {
    // GIVEN
    const template = Template.fromStack(fullyOptionedStack());

    // THEN: SQS uses the customer-managed key, the correlation table too
    for (const queue of Object.values(template.findResources('AWS::SQS::Queue'))) {
      expect(queue.Properties.KmsMasterKeyId).toBeDefined();
    }
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      SSESpecification: Match.objectLike({ SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: Match.anyValue() }),
    });
    const queuePolicies = Object.values(template.findResources('AWS::SQS::QueuePolicy'));
    expect(queuePolicies).toHaveLength(Object.keys(template.findResources('AWS::SQS::Queue')).length);
    for (const policy of queuePolicies) {
      expect(policy.Properties.PolicyDocument.Statement).toEqual(expect.arrayContaining([expect.objectContaining({
        Effect: 'Deny',
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      })]));
    }
  });
});
