/**
 * Upgrade safety: a stack deployed with an earlier version of the library (the committed integ
 * snapshot stands for it) must take the current template without CloudFormation replacing or
 * deleting a stateful resource. A queue, table or log group that is replaced or deleted loses what
 * it holds (queued requests, correlation items with their task tokens, the pacer item, logs); a
 * replaced AppConfig version or deployment re-deploys the initial `{"extraDelayMs":0}` and resets
 * the delay an operator set (README, "Upgrade notes").
 *
 * Replacement comes from a changed logical id (delete + create), a changed type, or a change to a
 * property whose update requires replacement. Which properties those are, and which resource types
 * are stateful, comes from the AWS service specification CDK itself uses
 * (`@aws-cdk/aws-service-spec`, the "Update requires: Replacement" of each property in
 * https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-template-resource-type-ref.html).
 *
 * When this test fails on purpose (a deliberate breaking change), say so in the README's upgrade
 * notes and regenerate the snapshot (`npx projen integ:snapshot`).
 */
import * as fs from 'fs';
import * as path from 'path';
// The AWS resource specification CDK's own diff uses; installed with @aws-cdk/integ-runner.
import { loadAwsServiceSpecSync } from '@aws-cdk/aws-service-spec';
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AsyncExternalApiOrchestrator, VendorContract, VendorQuota } from '../../src';
import { testStack } from '../util';

type Resources = Record<string, { Type: string; Properties?: Record<string, unknown> }>;

const SNAPSHOT_TEMPLATE = path.join(__dirname, '..', 'integ', 'integ.orchestrator.ts.snapshot', 'AsyncExternalApiInteg.template.json');

/**
 * Not stateful to CloudFormation, but they hold the operator's run-time setting: the profile keeps
 * the operator's versions, the environment their deployment; a new initial version, deployment or
 * strategy (the deployment refers to both) starts a deployment of `{"extraDelayMs":0}`.
 */
const APPCONFIG_STATE = [
  'AWS::AppConfig::Application',
  'AWS::AppConfig::Environment',
  'AWS::AppConfig::ConfigurationProfile',
  'AWS::AppConfig::HostedConfigurationVersion',
  'AWS::AppConfig::DeploymentStrategy',
  'AWS::AppConfig::Deployment',
];

const spec = loadAwsServiceSpecSync();

function resourceSpec(type: string) {
  return spec.lookup('resource', 'cloudFormationType', 'equals', type).only();
}

/** Whether losing or replacing a resource of this type loses data or the operator's settings. */
export function isStateful(type: string): boolean {
  return APPCONFIG_STATE.includes(type) || resourceSpec(type).isStateful === true;
}

/** Properties of `type` whose change makes CloudFormation replace the resource. */
function replacementProperties(type: string): string[] {
  return Object.entries(resourceSpec(type).properties)
    .filter(([, property]) => property.causesReplacement === 'yes')
    .map(([name]) => name);
}

/**
 * What deploying `current` over a stack deployed from `deployed` would do to the deployed stack's
 * stateful resources: one line per resource deleted or replaced, empty when none is.
 */
export function statefulReplacements(deployed: Resources, current: Resources): string[] {
  const problems: string[] = [];
  for (const [id, before] of Object.entries(deployed)) {
    if (!isStateful(before.Type)) continue;
    const after = current[id];
    if (!after) {
      problems.push(`${id} (${before.Type}) is gone from the template: CloudFormation would delete it (or replace it under a new logical id). Keep its construct id and path, or overrideLogicalId('${id}')`);
      continue;
    }
    if (after.Type !== before.Type) {
      problems.push(`${id} changed type from ${before.Type} to ${after.Type}: CloudFormation would replace it`);
      continue;
    }
    for (const property of replacementProperties(before.Type)) {
      const was = JSON.stringify(before.Properties?.[property]);
      const is = JSON.stringify(after.Properties?.[property]);
      if (was !== is) {
        problems.push(`${id} (${before.Type}): ${property} changed from ${was ?? 'unset'} to ${is ?? 'unset'}, an update that requires replacement`);
      }
    }
  }
  return problems;
}

function snapshotResources(): Resources {
  return JSON.parse(fs.readFileSync(SNAPSHOT_TEMPLATE, 'utf8')).Resources;
}

/**
 * The integ app as the current code synthesizes it (test/integ/integ.orchestrator.ts), with the
 * feature flags integ-runner gives every integ app (its recommended-feature-flags.json), as the
 * snapshot was written: without them e.g. Lambda log groups are not created by CDK.
 */
function integResources(): Resources {
  const flags = fs.readFileSync(require.resolve('@aws-cdk/integ-runner/lib/recommended-feature-flags.json'), 'utf8');
  const saved = process.env.CDK_CONTEXT_JSON;
  let stack: Stack | undefined;
  try {
    process.env.CDK_CONTEXT_JSON = flags;
    jest.isolateModules(() => {
      stack = jest.requireActual<{ stack: Stack }>('../integ/integ.orchestrator').stack;
    });
  } finally {
    if (saved === undefined) delete process.env.CDK_CONTEXT_JSON;
    else process.env.CDK_CONTEXT_JSON = saved;
  }
  return Template.fromStack(stack!).toJSON().Resources;
}

test('every stateful resource of the committed integ snapshot keeps its logical id, type and replacement properties', () => {
  const deployed = snapshotResources();
  const stateful = Object.entries(deployed).filter(([, r]) => isStateful(r.Type));
  // The snapshot holds the orchestrator's queues, tables and log groups: the check checks something.
  const types = new Set(stateful.map(([, r]) => r.Type));
  expect(['AWS::SQS::Queue', 'AWS::DynamoDB::Table', 'AWS::Logs::LogGroup'].filter((t) => !types.has(t))).toEqual([]);
  expect(stateful.map(([id]) => id)).toEqual(expect.arrayContaining([
    expect.stringMatching(/^VendorConsumerRequestQueue/),
    expect.stringMatching(/^VendorConsumerRequestDeadLetterQueue/),
    expect.stringMatching(/^VendorConsumerPacerTable/),
    expect.stringMatching(/^VendorCorrelationTable/),
    expect.stringMatching(/^VendorWebhookCallbackQueue/),
    expect.stringMatching(/^VendorWebhookCallbackDeadLetterQueue/),
  ]));

  expect(statefulReplacements(deployed, integResources())).toEqual([]);
});

// Issue 14, item 8: the pacer table holds the contract's counters (job places, quota used this
// period, the schedule, the adaptive rate): a deploy, an upgrade or a change of the contract must
// keep them.
describe('the pacer table keeps the contract\'s counters', () => {
  function resourcesUnder(requestsPerSecond: number): Resources {
    const stack = testStack();
    new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/v1/jobs',
      contract: VendorContract.of({ requestsPerSecond, maxJobsInFlight: 20, quotas: [VendorQuota.perDay(50_000)] }),
      callbackTimeout: Duration.minutes(5),
      consumer: { dynamicDelay: {} },
    });
    return Template.fromStack(stack).toJSON().Resources;
  }
  const pacerTableOf = (resources: Resources) =>
    Object.entries(resources).filter(([id, r]) => r.Type === 'AWS::DynamoDB::Table' && /PacerTable/.test(id));

  test('GIVEN a deployed stack WHEN the contract\'s rate changes (10 -> 25 requests per second) THEN no stateful resource is replaced, the pacer table included', () => {
    const deployed = resourcesUnder(10);
    const current = resourcesUnder(25);
    expect(pacerTableOf(deployed).map(([id]) => id)).toEqual(pacerTableOf(current).map(([id]) => id));
    expect(statefulReplacements(deployed, current)).toEqual([]);
  });

  test('the pacer table is retained: removed from the template or replaced, CloudFormation leaves it and its counters in the account', () => {
    const tables = pacerTableOf(resourcesUnder(10)) as Array<[string, { DeletionPolicy?: string; UpdateReplacePolicy?: string }]>;
    expect(tables).toHaveLength(1);
    expect(tables[0][1]).toMatchObject({ DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
  });
});

describe('the check itself', () => {
  function orchestratorResources(): Resources {
    const stack = testStack();
    new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: 'https://vendor.example.com/v1/jobs',
      requestsPerSecond: 10,
      callbackTimeout: Duration.minutes(5),
      consumer: { dynamicDelay: {} },
    });
    return Template.fromStack(stack).toJSON().Resources;
  }
  const idOf = (resources: Resources, type: string, pattern: RegExp) =>
    Object.keys(resources).find((id) => resources[id].Type === type && pattern.test(id))!;

  test('finds nothing between two syntheses of the same code', () => {
    expect(statefulReplacements(orchestratorResources(), orchestratorResources())).toEqual([]);
  });

  test('a renamed request queue or a changed table key is a replacement', () => {
    const deployed = orchestratorResources();
    const current = JSON.parse(JSON.stringify(deployed)) as Resources;
    const queue = idOf(current, 'AWS::SQS::Queue', /RequestQueue/);
    current[`${queue}Renamed`] = current[queue];
    delete current[queue];
    const table = idOf(current, 'AWS::DynamoDB::Table', /CorrelationTable/);
    current[table].Properties!.KeySchema = [{ AttributeName: 'jobId', KeyType: 'HASH' }];
    const problems = statefulReplacements(deployed, current);
    expect(problems).toHaveLength(2);
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringContaining(`${queue} (AWS::SQS::Queue) is gone from the template`),
      expect.stringMatching(new RegExp(`^${table} \\(AWS::DynamoDB::Table\\): KeySchema changed`)),
    ]));
  });

  // The finding of issue 11: an upgrade that changes the initial AppConfig content re-deploys it.
  test('a changed initial dynamic delay (content or description) is a replacement that resets the operator\'s delay', () => {
    const deployed = orchestratorResources();
    const current = JSON.parse(JSON.stringify(deployed)) as Resources;
    const version = idOf(current, 'AWS::AppConfig::HostedConfigurationVersion', /InitialVersion/);
    current[version].Properties!.Content = '{"extraDelayMs": 0}';
    const deployment = idOf(current, 'AWS::AppConfig::Deployment', /InitialDeployment/);
    current[deployment].Properties!.Description = 'Initial dynamic delay';
    expect(statefulReplacements(deployed, current)).toEqual([
      expect.stringMatching(new RegExp(`^${version} .*Content changed`)),
      expect.stringMatching(new RegExp(`^${deployment} .*Description changed`)),
    ]);
  });

  test('stateless resources may change freely', () => {
    const deployed = orchestratorResources();
    const current = JSON.parse(JSON.stringify(deployed)) as Resources;
    for (const resource of Object.values(current)) {
      if (resource.Type === 'AWS::Lambda::Function') resource.Properties!.Description = 'changed';
    }
    expect(statefulReplacements(deployed, current)).toEqual([]);
  });
});
