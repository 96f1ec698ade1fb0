/**
 * Every error name in every Retry and Catch of every synthesized state machine must be one that the
 * state can really raise: Step Functions matches ErrorEquals exactly and case-sensitively, so a
 * misspelled name (`SQS.ThrottlingException` on an aws-sdk:sqs task, whose errors are `Sqs.`) or
 * one the service never returns silently never matches, and the retry it promises never happens.
 * What can be raised is built offline (raisable-errors.ts, committed as raisable-errors.json).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { buildRaisableErrors, integrationOf, RaisableErrors } from './raisable-errors';
import { AsyncExternalApiOrchestrator, AsyncExternalApiOrchestratorProps, CallbackUrlDelivery, PacingPoint, VendorCredentials } from '../../src';
import { VendorCallErrorNames } from '../../src/dispatch-workflow/vendor-call';
import { VendorCredentialReadError, VendorCredentialUnusableError } from '../../src/throttled-proxy/vendor-secret';
import { VendorCredentialNotFoundError } from '../../src/throttled-proxy/vendor-secret-per-key';
import { VendorTokenError } from '../../src/throttled-proxy/vendor-token';
import { stateMachineDefinitions, testStack } from '../util';

const LIST_FILE = path.join(__dirname, 'raisable-errors.json');

/** One error name where it is used. */
interface ErrorUse {
  readonly stateMachine: string;
  readonly state: string;
  readonly field: 'Retry' | 'Catch';
  readonly name: string;
  readonly integration: string;
}

/** Every ErrorEquals name of every Task, Parallel and Map state, nested states included. */
function errorUses(stateMachine: string, states: Record<string, any>): ErrorUse[] {
  const uses: ErrorUse[] = [];
  for (const [stateName, state] of Object.entries(states)) {
    for (const field of ['Retry', 'Catch'] as const) {
      for (const rule of state[field] ?? []) {
        for (const name of rule.ErrorEquals as string[]) {
          const integration = state.Type === 'Task' ? integrationOf(String(state.Resource)) : state.Type;
          uses.push({ stateMachine, state: stateName, field, name, integration });
        }
      }
    }
    for (const branch of state.Branches ?? []) {
      uses.push(...errorUses(stateMachine, branch.States));
    }
    const processor = state.ItemProcessor ?? state.Iterator;
    if (processor) {
      uses.push(...errorUses(stateMachine, processor.States));
    }
  }
  return uses;
}

/**
 * Error types our own functions throw on purpose: a Lambda task reports a function error under its
 * `errorType`, the thrown error's `name`. Taken from the error classes, so a rename shows up here.
 */
const OWN_FUNCTION_ERRORS: Record<string, string[]> = {
  // The credential function (OAuth token or JSON secret field) behind GetVendorToken / ReadVendorCredential,
  // and the vendor caller behind CallVendor (PacingPoint.VENDOR_CALL; besides ApiGateway.<status>).
  'lambda:invoke': [
    ...[VendorCredentialUnusableError, VendorCredentialReadError, VendorTokenError, VendorCredentialNotFoundError].map((type) => new type('').name),
    ...Object.values(VendorCallErrorNames),
  ],
};

/** The names a use may not have: unknown to the list of what its state can raise. */
function unraisable(uses: ErrorUse[], list: RaisableErrors): string[] {
  const raisable = (integration: string) => [...(list.integrations[integration] ?? []), ...(OWN_FUNCTION_ERRORS[integration] ?? [])];
  return uses
    .filter(({ name, integration }) => name.startsWith('States.') ? !list.states.includes(name) : !raisable(integration).includes(name))
    .map((u) => `${u.stateMachine} > ${u.state} > ${u.field}: '${u.name}' (${u.integration})`);
}

type Configure = (stack: Stack) => Partial<AsyncExternalApiOrchestratorProps>;

/** Every configuration that changes the states or their error handling. */
const CONFIGURATIONS: Array<[string, Configure]> = [
  ['defaults (vendor caller, URL in a body field, no credential)', () => ({})],
  ['PacingPoint.DISPATCH', () => ({ pacingPoint: PacingPoint.DISPATCH })],
  ['callback URL in a header', () => ({ dispatch: { callbackUrlDelivery: CallbackUrlDelivery.header('X-Callback-Url') } })],
  ['PacingPoint.DISPATCH, callback URL in a header', () => ({
    pacingPoint: PacingPoint.DISPATCH,
    dispatch: { callbackUrlDelivery: CallbackUrlDelivery.header('X-Callback-Url') },
  })],
  ['a secret header credential', (stack) => ({
    proxy: { credentials: VendorCredentials.fromSecretHeader({ secret: new secretsmanager.Secret(stack, 'Key'), headerName: 'X-Api-Key' }) },
  })],
  ['a JSON-field credential with a prefix, PacingPoint.DISPATCH', (stack) => ({
    pacingPoint: PacingPoint.DISPATCH,
    proxy: {
      credentials: VendorCredentials.fromSecretHeader({
        secret: new secretsmanager.Secret(stack, 'Key'), headerName: 'Authorization', jsonField: 'token', prefix: 'Bearer ',
      }),
    },
  })],
  ['OAuth client credentials', (stack) => ({
    proxy: { credentials: VendorCredentials.oauthClientCredentials({ secret: new secretsmanager.Secret(stack, 'Client'), tokenUrl: 'https://auth.vendor.example.com/token' }) },
  })],
  ['a credential per key (issue 15)', () => ({ proxy: { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}' }) } })],
  ['OAuth client credentials, PacingPoint.DISPATCH', (stack) => ({
    pacingPoint: PacingPoint.DISPATCH,
    proxy: { credentials: VendorCredentials.oauthClientCredentials({ secret: new secretsmanager.Secret(stack, 'Client'), tokenUrl: 'https://auth.vendor.example.com/token' }) },
  })],
];

/** All state machines of a stack with the orchestrator, its tasks in the user's workflows (JSONPath and JSONata). */
function synthesizedDefinitions(configure: Configure): Record<string, any> {
  const stack = testStack();
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
    ...configure(stack),
  });
  const main = new sfn.StateMachine(stack, 'Main', {
    definitionBody: sfn.DefinitionBody.fromChainable(
      // With keys (issue 15): a credential per key needs them on every task.
      orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromJsonPathAt('$.order'), key: sfn.JsonPath.stringAt('$.customerId') })
        .next(orchestrator.callVendorTask(stack, 'Fetch', { path: '/x', key: sfn.JsonPath.stringAt('$.customerId') })),
    ),
  });
  const jsonata = new sfn.StateMachine(stack, 'MainJsonata', {
    queryLanguage: sfn.QueryLanguage.JSONATA,
    definitionBody: sfn.DefinitionBody.fromChainable(
      orchestrator.submitJobTaskJsonata(stack, 'SubmitJsonata', { payload: '{% $states.input.order %}', key: '{% $states.input.customerId %}' })
        .next(orchestrator.callVendorTaskJsonata(stack, 'FetchJsonata', { path: '/x', key: '{% $states.input.customerId %}' })),
    ),
  });
  orchestrator.registerWorkflow(main);
  orchestrator.registerWorkflow(jsonata);
  return stateMachineDefinitions(Template.fromStack(stack));
}

describe('error names in Retry and Catch', () => {
  const list: RaisableErrors = JSON.parse(fs.readFileSync(LIST_FILE, 'utf8'));

  test('the committed list is what the installed @aws-sdk/client-* packages and the documented names give', () => {
    const built = buildRaisableErrors();
    if (process.env.UPDATE_RAISABLE_ERRORS) {
      fs.writeFileSync(LIST_FILE, `${JSON.stringify(built, undefined, 2)}\n`);
    }
    // After an SDK upgrade: UPDATE_RAISABLE_ERRORS=1 npx jest test/dispatch-workflow/error-names.test.ts
    expect(JSON.parse(fs.readFileSync(LIST_FILE, 'utf8'))).toEqual(built);
  });

  test('the list spells the services as Step Functions does', () => {
    expect(list.integrations['aws-sdk:sqs']).toEqual(expect.arrayContaining(['Sqs.SqsException', 'Sqs.RequestThrottledException', 'Sqs.ThrottlingException']));
    expect(list.integrations['aws-sdk:sqs']).not.toContain('SQS.ThrottlingException');
    expect(list.integrations['aws-sdk:sfn']).toEqual(expect.arrayContaining(['Sfn.TaskTimedOutException', 'Sfn.InvalidTokenException', 'Sfn.SfnException']));
    // The aws-sdk integrations always add the Exception suffix.
    expect(list.integrations['aws-sdk:sfn']).not.toContain('Sfn.TaskTimedOut');
    expect(list.integrations.dynamodb).toEqual(expect.arrayContaining(['DynamoDB.ConditionalCheckFailedException', 'DynamoDB.AmazonDynamoDBException']));
    expect(list.integrations['lambda:invoke']).toEqual(expect.arrayContaining(['Lambda.ServiceException', 'Lambda.SdkClientException', 'Lambda.Unknown']));
  });

  test('a name the state cannot raise is found (the check itself)', () => {
    const uses = errorUses('M', {
      Requeue: { Type: 'Task', Resource: 'arn:aws:states:::aws-sdk:sqs:sendMessage', Retry: [{ ErrorEquals: ['SQS.ThrottlingException', 'Sqs.SqsException'] }] },
      Claim: { Type: 'Task', Resource: 'arn:aws:states:::dynamodb:updateItem', Catch: [{ ErrorEquals: ['Sqs.SqsException', 'States.ALL'], Next: 'X' }] },
      Branches: { Type: 'Parallel', Branches: [{ States: { Inner: { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', Retry: [{ ErrorEquals: ['States.Tiemout'] }] } } }] },
    });
    expect(unraisable(uses, list)).toEqual([
      "M > Requeue > Retry: 'SQS.ThrottlingException' (aws-sdk:sqs)",
      "M > Claim > Catch: 'Sqs.SqsException' (dynamodb)",
      "M > Inner > Retry: 'States.Tiemout' (lambda:invoke)",
    ]);
  });

  /**
   * The names ClassifyVendorError compares `$.error.Error` with (a Choice, not an ErrorEquals): the
   * errors it gives up on at once besides `ApiGateway.<status>`. Matching is exact too.
   */
  function classifiedNames(definitions: Record<string, any>): string[] {
    return Object.values(definitions).flatMap((definition) => Object.entries(definition.States as Record<string, any>)
      .filter(([name]) => name === 'ClassifyVendorError')
      .flatMap(([, state]) => (state.Choices as any[]).filter((rule) => rule.Variable === '$.error.Error' && rule.StringEquals !== undefined))
      .map((rule) => rule.StringEquals as string)
      .filter((name) => !/^(ApiGateway|APIGateway)\./.test(name)));
  }

  test.each(CONFIGURATIONS)('every name ClassifyVendorError gives up on is one our vendor caller throws, and only where it calls: %s', (name, configure) => {
    const names = classifiedNames(synthesizedDefinitions(configure));
    if (/DISPATCH/.test(name)) {
      // apigateway:invoke: no vendor caller, nothing else to name.
      expect(names).toEqual([]);
    } else {
      // Both workflows (dispatch and vendor-call) give up at once on an answer too large to return.
      expect(names).toEqual(['VendorResponseTooLarge', 'VendorResponseTooLarge']);
      expect(names.filter((n) => !OWN_FUNCTION_ERRORS['lambda:invoke'].includes(n))).toEqual([]);
    }
  });

  test.each(CONFIGURATIONS)('every name can be raised by its state: %s', (_name, configure) => {
    // GIVEN / WHEN
    const definitions = synthesizedDefinitions(configure);
    const uses = Object.entries(definitions).flatMap(([id, definition]) => errorUses(id, definition.States));

    // THEN
    expect(uses.length).toBeGreaterThan(20);
    expect(unraisable(uses, list)).toEqual([]);
  });
});
