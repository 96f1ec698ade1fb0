/**
 * Per-key rates in the template (issue 15; key-schedule.ts): the queue consumer may read the keys'
 * pacer items in one BatchGetItem, and with a credential per key the vendor caller pauses a key,
 * not the contract, on the vendor's 429 (KEY_PAUSE_ON_429).
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator, VendorCredentials } from '../../src';
import { TEST_ENV } from '../util';

function template(perKey: boolean): Template {
  const stack = new Stack(new App(), 'KeyRate', { env: TEST_ENV });
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
    ...(perKey ? { proxy: { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}' }) } } : {}),
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

test('GIVEN a credential per key WHEN synthesized THEN the vendor caller pauses keys on a 429 and the consumer may BatchGetItem the pacer table', () => {
  const t = template(true);
  expect(vendorCallerVariables(t).KEY_PAUSE_ON_429).toBe('true');
  t.hasResourceProperties('AWS::IAM::Policy', {
    PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: Match.arrayWith(['dynamodb:BatchGetItem']) })]) },
  });
});

test('GIVEN one credential for all keys WHEN synthesized THEN a 429 pauses the contract (no KEY_PAUSE_ON_429)', () => {
  expect(vendorCallerVariables(template(false)).KEY_PAUSE_ON_429).toBeUndefined();
});
