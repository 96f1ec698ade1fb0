/**
 * Executes every route of the vendor credential states (vendor-credential-steps.ts) in both
 * workflows that call the vendor (dispatch, vendor call) at both pacing points, with the
 * synthesized definitions and aws-local-stepfunctions.
 *
 * The credential states receive what AWS really answers: GetSecretValue output shaped like the
 * SDK's (SecretString or SecretBinary), and for the proxy's credential function (OAuth token, JSON
 * secret) the answers and errors of the real handler (vendor-token.lambda.ts, the environment the
 * template gives it), its Secrets Manager client and the token endpoint mocked. The workflows'
 * inputs come from the dispatcher's own builders.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { mockClient } from 'aws-sdk-client-mock';
import { AsyncExternalApiOrchestrator, PacingPoint, VendorCredentials } from '../../src';
import { buildDispatchInput } from '../../src/rate-controlled-queue-consumer/dispatch';
import { buildVendorCallInput } from '../../src/shared/vendor-call';
import { Execution, TaskHandler, executeDefinition } from '../asl/execute';
import { AslDefinition, definitionOf, logicalIdOf, testStack } from '../util';

/** An error as Step Functions reports it: `name` is the error name a Catch matches. */
function stepError(name: string, cause = ''): Error {
  const error = new Error(cause);
  error.name = name;
  return error;
}

type Handler = TaskHandler;
type Run = Execution;

/** Runs the definition once (test/asl/execute.ts); every Task state must have a handler (else the test fails). */
function run(definition: AslDefinition, input: unknown, handlers: Record<string, Handler>): Promise<Execution> {
  return executeDefinition(definition, input, handlers, { context: { Execution: { StartTime: '2026-11-27T12:00:00.000Z' } } });
}

// ---- The synthesized workflows ----

type Workflow = 'dispatch' | 'vendorCall';
type CredentialsFactory = (scope: Stack) => VendorCredentials;

interface Synthesized {
  readonly dispatch: AslDefinition;
  readonly vendorCall: AslDefinition;
  /** The credential function's environment in the template, if the proxy has one. */
  readonly functionEnvironment?: Record<string, unknown>;
}

/** Both workflows of one orchestrator (a main workflow that submits a job, then fetches a result). */
function synthesize(pacingPoint: PacingPoint, credentials: CredentialsFactory): Synthesized {
  const stack = testStack();
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
    pacingPoint,
    proxy: { credentials: credentials(stack) },
  });
  const main = new sfn.StateMachine(stack, 'Main', {
    definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromJsonPathAt('$.order') })
      .next(orchestrator.callVendorTask(stack, 'Fetch', { path: '/x' }))),
  });
  orchestrator.registerWorkflow(main);
  const template = Template.fromStack(stack);
  // The function that reads the secret (the proxy's credential function): its environment names it.
  const reader = Object.values(template.findResources('AWS::Lambda::Function'))
    .find((fn) => fn.Properties.Environment?.Variables?.SECRET_ARN !== undefined);
  return {
    dispatch: definitionOf(template, logicalIdOf(stack, orchestrator.dispatch.stateMachine)),
    vendorCall: definitionOf(template, logicalIdOf(stack, orchestrator.vendorCall!.stateMachine)),
    functionEnvironment: reader?.Properties.Environment.Variables,
  };
}

const secret = (scope: Stack) => new secretsmanager.Secret(scope, 'VendorSecret');
const CREDENTIALS: Record<string, CredentialsFactory> = {
  'a plain-text secret': (scope) => VendorCredentials.fromSecretHeader({ secret: secret(scope), headerName: 'x-api-key' }),
  'a plain-text secret with a prefix': (scope) => VendorCredentials.fromSecretHeader({ secret: secret(scope), headerName: 'Authorization', prefix: 'Token ' }),
  'a JSON secret field with a prefix': (scope) => VendorCredentials.fromSecretHeader({ secret: secret(scope), headerName: 'Authorization', jsonField: 'apiKey', prefix: 'Bearer ' }),
  'OAuth client credentials': (scope) => VendorCredentials.oauthClientCredentials({ secret: secret(scope), tokenUrl: 'https://auth.example.com/oauth/token' }),
};

const cache = new Map<string, Synthesized>();
function synthesized(pacingPoint: PacingPoint, credentials: string): Synthesized {
  const key = `${pacingPoint}/${credentials}`;
  if (!cache.has(key)) {
    cache.set(key, synthesize(pacingPoint, CREDENTIALS[credentials]));
  }
  return cache.get(key)!;
}

// ---- What AWS answers ----

const SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:VendorSecret-AbCdEf';
const SLOT = 1_900_000_000_123;
const NOW = 1_899_999_999_000;

/** GetSecretValue's output as the aws-sdk integration returns it (SDK field names). */
function secretValue(value: { SecretString: string } | { SecretBinary: string }) {
  return { ARN: SECRET_ARN, Name: 'VendorSecret-AbCdEf', VersionId: 'v-1', VersionStages: ['AWSCURRENT'], CreatedDate: '2026-11-01T00:00:00Z', ...value };
}

/** The workflow's input, as the dispatcher builds it. */
function inputFor(workflow: Workflow, pacingPoint: PacingPoint): any {
  const slotAtMs = pacingPoint === PacingPoint.VENDOR_CALL ? SLOT : undefined;
  return workflow === 'dispatch'
    ? buildDispatchInput({ taskToken: 'token-1', requestId: 'req-1', payload: { order: 'o-1' } }, NOW, 3600, slotAtMs)
    : buildVendorCallInput({ kind: 'call', taskToken: 'token-1', requestId: 'req-1', call: { method: 'GET', path: '/jobs/1/result' } }, NOW, 3600, slotAtMs);
}

/** The vendor accepted: the vendor caller's answer (VENDOR_CALL) or apigateway:invoke's (DISPATCH). */
function vendorAnswers(pacingPoint: PacingPoint): Handler {
  return () => (pacingPoint === PacingPoint.VENDOR_CALL
    ? {
      Payload: { statusCode: 200, body: { jobId: 'job-1' }, headers: { 'content-type': 'application/json' }, requeue: null },
      StatusCode: 200,
    }
    : { ResponseBody: { jobId: 'job-1' }, StatusCode: 200, StatusText: 'OK', Headers: { 'content-type': ['application/json'] } });
}

/** The states around the credential, answered as on the happy path. */
function workflowHandlers(workflow: Workflow, pacingPoint: PacingPoint): Record<string, Handler> {
  const ok = () => ({});
  const common = {
    CheckWaitingWorkflow: ok, CallVendor: vendorAnswers(pacingPoint), RequeueWithDelay: ok, ParkInDeadLetterQueue: ok, FailWaitingWorkflow: ok,
  };
  return workflow === 'dispatch'
    ? { ...common, ClaimRequest: () => ({ Attributes: { callbackToken: { S: 'T'.repeat(43) } } }), StoreJobId: ok }
    : { ...common, ClaimCall: ok, ReturnResponse: ok };
}

/** The X-Vendor-Credential header the vendor call got. */
function credentialHeaderOf(result: Run, pacingPoint: PacingPoint): unknown {
  const call = result.calls.CallVendor?.[0];
  return pacingPoint === PacingPoint.VENDOR_CALL ? call?.Payload.headers['X-Vendor-Credential'] : call?.Headers['X-Vendor-Credential'];
}

/**
 * The proxy's credential function: the real handler with the template's environment, its Secrets
 * Manager client answering `secretAnswer` and `fetch` answering `tokenAnswer`. Its errors reach
 * the workflow as Lambda reports them: the error name is the error's `name`.
 */
function realCredentialFunction(environment: Record<string, unknown>,
  secretAnswer: () => Promise<unknown>, tokenAnswer?: () => Promise<Response>): Handler {
  let handler!: (event: unknown) => Promise<unknown>;
  const saved = { ...process.env };
  Object.assign(process.env, { ...environment, SECRET_ARN, POWERTOOLS_LOG_LEVEL: 'SILENT' });
  try {
    jest.isolateModules(() => {
      // The handler's own copy of the SDK: mock that one. (import() needs --experimental-vm-modules under Jest.)
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const sdk = require('@aws-sdk/client-secrets-manager');
      mockClient(sdk.SecretsManagerClient).on(sdk.GetSecretValueCommand, { SecretId: SECRET_ARN }).callsFake(secretAnswer);
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      handler = require('../../src/throttled-proxy/vendor-token.lambda').handler;
    });
  } finally {
    process.env = saved;
  }
  return async () => {
    const fetchSpy = jest.spyOn(globalThis, 'fetch').mockImplementation(tokenAnswer ?? (() => Promise.reject(new Error('no token endpoint'))));
    try {
      return { Payload: await handler({}), StatusCode: 200, ExecutedVersion: '$LATEST' };
    } catch (e) {
      const error = e as Error;
      throw stepError(error.name, JSON.stringify({ errorType: error.name, errorMessage: error.message }));
    } finally {
      fetchSpy.mockRestore();
    }
  };
}

const secretString = (value: string) => async () => secretValue({ SecretString: value });
const tokenResponse = (status: number, body: unknown) => async () => new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
const CLIENT_SECRET = JSON.stringify({ clientId: 'client-1', clientSecret: 'client-secret-1' });

const COMBINATIONS: Array<[Workflow, PacingPoint]> = [
  ['dispatch', PacingPoint.VENDOR_CALL],
  ['dispatch', PacingPoint.DISPATCH],
  ['vendorCall', PacingPoint.VENDOR_CALL],
  ['vendorCall', PacingPoint.DISPATCH],
];

describe.each(COMBINATIONS)('%s workflow with %s pacing: the credential routes, executed', (workflow, pacingPoint) => {
  const definitionOfCredentials = (credentials: string) => synthesized(pacingPoint, credentials)[workflow];
  const input = () => inputFor(workflow, pacingPoint);
  const handlers = () => workflowHandlers(workflow, pacingPoint);

  /** The request was parked at once with `reason` and the waiting workflow failed: nothing waits for a timeout. */
  function expectParkedAtOnce(result: Run, reason: string): void {
    expect(result.calls.CallVendor).toBeUndefined();
    expect(result.calls.RequeueWithDelay).toBeUndefined();
    expect(result.calls.ParkInDeadLetterQueue).toHaveLength(1);
    const parked = result.calls.ParkInDeadLetterQueue[0];
    expect(parked.MessageAttributes.reason.StringValue).toBe(reason);
    expect(JSON.parse(parked.MessageBody)).toEqual(input().message);
    expect(result.calls.FailWaitingWorkflow[0]).toMatchObject({ TaskToken: 'token-1', Error: 'VendorRequestFailed' });
    expect(result.error?.name).toBe('VendorRequestFailed');
  }

  /** The request went back through the paced queue as the next attempt. */
  function expectRetriedThroughQueue(result: Run): void {
    expect(result.error).toBeUndefined();
    expect(result.calls.CallVendor).toBeUndefined();
    expect(JSON.parse(result.calls.RequeueWithDelay[0].MessageBody)).toMatchObject({ requestId: 'req-1', attempt: 2 });
    expect(result.calls.ParkInDeadLetterQueue).toBeUndefined();
  }

  describe('a plain-text secret (getSecretValue)', () => {
    test.each([
      ['a plain-text secret', 'api-key-123'],
      ['a plain-text secret with a prefix', 'Token api-key-123'],
    ])('%s: the secret\'s text goes to the vendor call', async (credentials, header) => {
      const result = await run(definitionOfCredentials(credentials), input(), {
        ...handlers(),
        ReadVendorCredential: secretString('api-key-123'),
      });

      expect(result.error).toBeUndefined();
      expect(result.calls.ReadVendorCredential[0].SecretId).toMatch(/VendorSecret/);
      expect(credentialHeaderOf(result, pacingPoint)).toEqual([header]);
    });

    test('a throttled or failing Secrets Manager read is retried in place', async () => {
      let calls = 0;
      const result = await run(definitionOfCredentials('a plain-text secret'), input(), {
        ...handlers(),
        ReadVendorCredential: () => {
          calls += 1;
          if (calls === 1) {
            throw stepError('SecretsManager.InternalServiceErrorException', 'try again');
          }
          return secretValue({ SecretString: 'api-key-123' });
        },
      });

      expect(result.error).toBeUndefined();
      expect(result.calls.ReadVendorCredential).toHaveLength(2);
      expect(credentialHeaderOf(result, pacingPoint)).toEqual(['api-key-123']);
    });

    test('a secret that cannot be read goes back through the queue like any retryable failure', async () => {
      const result = await run(definitionOfCredentials('a plain-text secret'), input(), {
        ...handlers(),
        ReadVendorCredential: () => {
          throw stepError('SecretsManager.ResourceNotFoundException', 'Secrets Manager can\'t find the specified secret.');
        },
      });

      expectRetriedThroughQueue(result);
    });

    test('a binary secret (SecretBinary, no SecretString) parks the request at once as VendorCredentialUnusable', async () => {
      // Regression (issue 11, finding 12): the workflow read $.SecretString of a binary secret:
      // States.Runtime, nothing parked, the waiting workflow left to its timeout.
      const result = await run(definitionOfCredentials('a plain-text secret with a prefix'), input(), {
        ...handlers(),
        ReadVendorCredential: async () => secretValue({ SecretBinary: Buffer.from('api-key-123').toString('base64') }),
      });

      expectParkedAtOnce(result, 'VendorCredentialUnusable');
      expect(JSON.parse(result.calls.FailWaitingWorkflow[0].Cause).Cause).toMatch(/has no SecretString \(it is a binary secret/);
    });
  });

  describe('a JSON secret field (the proxy\'s credential function)', () => {
    const definition = () => definitionOfCredentials('a JSON secret field with a prefix');
    const credentialFunction = (secretAnswer: () => Promise<unknown>) =>
      realCredentialFunction(synthesized(pacingPoint, 'a JSON secret field with a prefix').functionEnvironment!, secretAnswer);

    test('the field\'s value, with the prefix, goes to the vendor call', async () => {
      const result = await run(definition(), input(), {
        ...handlers(),
        ReadVendorCredential: credentialFunction(secretString(JSON.stringify({ apiKey: 'k-123', other: 'x' }))),
      });

      expect(result.error).toBeUndefined();
      expect(credentialHeaderOf(result, pacingPoint)).toEqual(['Bearer k-123']);
    });

    test('a throttled invocation is retried in place', async () => {
      const fn = credentialFunction(secretString(JSON.stringify({ apiKey: 'k-123' })));
      let calls = 0;
      const result = await run(definition(), input(), {
        ...handlers(),
        ReadVendorCredential: (taskInput) => {
          calls += 1;
          if (calls === 1) {
            throw stepError('Lambda.TooManyRequestsException', 'Rate exceeded');
          }
          return fn(taskInput);
        },
      });

      expect(result.error).toBeUndefined();
      expect(result.calls.ReadVendorCredential).toHaveLength(2);
      expect(credentialHeaderOf(result, pacingPoint)).toEqual(['Bearer k-123']);
    });

    test.each([
      ['plain text where JSON is expected', secretString('k-123')],
      ['JSON without the field', secretString(JSON.stringify({ key: 'k-123' }))],
      ['the field not a string', secretString(JSON.stringify({ apiKey: 123 }))],
      ['the field empty', secretString(JSON.stringify({ apiKey: '' }))],
      ['JSON that is not an object', secretString(JSON.stringify(['k-123']))],
      ['a binary secret', async () => secretValue({ SecretBinary: Buffer.from('{"apiKey":"k-123"}').toString('base64') })],
    ])('%s parks the request at once as VendorCredentialUnusable, the secret not quoted', async (_name, answer) => {
      // Regression (issue 11, finding 12): States.StringToJson / $.credential.secret.apiKey in the
      // workflow failed with States.Runtime: nothing parked, the waiting workflow left to its timeout.
      const result = await run(definition(), input(), { ...handlers(), ReadVendorCredential: credentialFunction(answer) });

      expectParkedAtOnce(result, 'VendorCredentialUnusable');
      const cause = result.calls.FailWaitingWorkflow[0].Cause;
      expect(cause).toContain(SECRET_ARN);
      expect(cause).not.toContain('k-123');
    });

    test('a secret that cannot be read goes back through the queue like any retryable failure', async () => {
      const result = await run(definition(), input(), {
        ...handlers(),
        ReadVendorCredential: credentialFunction(async () => {
          const error = new Error('Secrets Manager can\'t find the specified secret.');
          error.name = 'ResourceNotFoundException';
          throw error;
        }),
      });

      expectRetriedThroughQueue(result);
    });
  });

  describe('OAuth client credentials (the proxy\'s token function)', () => {
    const definition = () => definitionOfCredentials('OAuth client credentials');
    const tokenFunction = (secretAnswer: () => Promise<unknown>, tokenAnswer: () => Promise<Response>) =>
      realCredentialFunction(synthesized(pacingPoint, 'OAuth client credentials').functionEnvironment!, secretAnswer, tokenAnswer);

    test('the access token goes to the vendor call', async () => {
      const result = await run(definition(), input(), {
        ...handlers(),
        GetVendorToken: tokenFunction(secretString(CLIENT_SECRET), tokenResponse(200, { access_token: 'at-1', token_type: 'bearer', expires_in: 3600 })),
      });

      expect(result.error).toBeUndefined();
      expect(credentialHeaderOf(result, pacingPoint)).toEqual(['Bearer at-1']);
    });

    test('a Lambda service error is retried in place', async () => {
      const fn = tokenFunction(secretString(CLIENT_SECRET), tokenResponse(200, { access_token: 'at-1', token_type: 'bearer', expires_in: 3600 }));
      let calls = 0;
      const result = await run(definition(), input(), {
        ...handlers(),
        GetVendorToken: (taskInput) => {
          calls += 1;
          if (calls === 1) {
            throw stepError('Lambda.ServiceException', 'Service error');
          }
          return fn(taskInput);
        },
      });

      expect(result.error).toBeUndefined();
      expect(result.calls.GetVendorToken).toHaveLength(2);
      expect(credentialHeaderOf(result, pacingPoint)).toEqual(['Bearer at-1']);
    });

    test.each([
      ['plain text', secretString('client-1:client-secret-1')],
      ['JSON without clientSecret', secretString(JSON.stringify({ clientId: 'client-1' }))],
      ['a binary secret', async () => secretValue({ SecretBinary: Buffer.from(CLIENT_SECRET).toString('base64') })],
    ])('a client secret of the wrong shape (%s) parks the request at once as VendorCredentialUnusable', async (_name, answer) => {
      const result = await run(definition(), input(), {
        ...handlers(),
        GetVendorToken: tokenFunction(answer, tokenResponse(200, { access_token: 'at-1' })),
      });

      expectParkedAtOnce(result, 'VendorCredentialUnusable');
      expect(result.calls.FailWaitingWorkflow[0].Cause).not.toContain('client-secret-1');
    });

    test('a token endpoint failure (VendorTokenError) goes back through the queue', async () => {
      const result = await run(definition(), input(), {
        ...handlers(),
        GetVendorToken: tokenFunction(secretString(CLIENT_SECRET), tokenResponse(503, { error: 'temporarily_unavailable' })),
      });

      expectRetriedThroughQueue(result);
    });
  });
});
