/**
 * Per-key rates in the template (issue 15; key-schedule.ts): the queue consumer may read the keys'
 * pacer items in one BatchGetItem, and with a credential per key the vendor caller pauses a key,
 * not the contract, on the vendor's 429 (KEY_PAUSE_ON_429).
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator, KeyLimits, VendorContract, VendorCredentials } from '../../src';
import { TEST_ENV, testApp } from '../util';

function template(credentialPerKey: boolean, perKeyLimits: boolean): Template {
  const stack = new Stack(testApp(), 'KeyRate', { env: TEST_ENV });
  const contract = VendorContract.of({ requestsPerSecond: 10, ...(perKeyLimits ? { perKey: KeyLimits.of({ requestsPerSecond: 2 }) } : {}) });
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    contract,
    callbackTimeout: Duration.minutes(30),
    ...(credentialPerKey ? { proxy: { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}' }) } } : {}),
  });
  orchestrator.registerWorkflow(new sfn.StateMachine(stack, 'Main', {
    definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.submitJobTask(stack, 'Submit', {
      payload: sfn.TaskInput.fromJsonPathAt('$.order'), key: sfn.JsonPath.stringAt('$.customerId'),
    })),
  }));
  return Template.fromStack(stack);
}

function vendorCallerVariables(t: Template): Record<string, unknown> {
  const callers = Object.values(t.findResources('AWS::Lambda::Function'))
    .map((resource) => resource.Properties?.Environment?.Variables ?? {})
    .filter((variables) => 'PROXY_ENDPOINT_URL' in variables);
  expect(callers).toHaveLength(1);
  return callers[0];
}

/** The BatchGetItem grants on the pacer table (the keys' pacing items; the settings table has its own). */
const batchGets = (t: Template) => Object.values(t.findResources('AWS::IAM::Policy'))
  .flatMap((policy) => policy.Properties.PolicyDocument.Statement)
  .filter((statement: { Action: string | string[] }) => [statement.Action].flat().includes('dynamodb:BatchGetItem'))
  .filter((statement: { Resource: unknown }) => JSON.stringify(statement.Resource).includes('PacerTable'));

test('GIVEN per-key limits and a credential per key WHEN synthesized THEN the vendor caller pauses keys on a 429 and the consumer may BatchGetItem the pacer table', () => {
  const t = template(true, true);
  expect(vendorCallerVariables(t).KEY_PAUSE_ON_429).toBe('true');
  expect(batchGets(t)).toHaveLength(1);
});

test('GIVEN per-key limits with one credential for all keys WHEN synthesized THEN a 429 pauses the contract (no KEY_PAUSE_ON_429); the keys are still read', () => {
  const t = template(false, true);
  expect(vendorCallerVariables(t).KEY_PAUSE_ON_429).toBeUndefined();
  expect(batchGets(t)).toHaveLength(1);
});

test('GIVEN no per-key limits WHEN synthesized THEN nothing changes (no BatchGetItem, no KEY_PAUSE_ON_429)', () => {
  const t = template(true, false);
  expect(vendorCallerVariables(t).KEY_PAUSE_ON_429).toBeUndefined();
  expect(batchGets(t)).toEqual([]);
});
