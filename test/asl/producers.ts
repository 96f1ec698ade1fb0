/**
 * What the workflows really receive, for route tests: inputs built by the dispatcher's own code
 * (parseRequestMessage + buildDispatchInput / buildVendorCallInput, as `executionFor` does), the
 * vendor caller's answers from its real handler logic (`callVendor`, with a simulated vendor behind
 * a fake `fetch` and the pacer table mocked), and AWS service answers shaped like the SDK's
 * output types (only AWS services are mocked).
 */
import { DynamoDBClient, GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { stepError, TaskHandler } from './execute';
import { callVendor, createSigV4Signer, VendorCallConfig, VendorCallError, VendorCallEvent } from '../../src/dispatch-workflow/vendor-call';
import { buildDispatchInput, parseRequestMessage } from '../../src/rate-controlled-queue-consumer/dispatch';
import { Clock, PAUSED_UNTIL_ATTRIBUTE } from '../../src/rate-controlled-queue-consumer/pacer';
import { CorrelationAttributes, DispatchInput, RequestMessage, VendorCallInput, VendorCallMessage } from '../../src/shared/messages';
import { buildVendorCallInput } from '../../src/shared/vendor-call';
import { readSecretField, SecretValue } from '../../src/throttled-proxy/vendor-secret';
import { PerKeyCredentials } from '../../src/throttled-proxy/vendor-secret-per-key';
import { VendorTokenProvider } from '../../src/throttled-proxy/vendor-token';

/** The dispatcher's correlation TTL in these tests (a day). */
const CORRELATION_TTL_SECONDS = 86_400;
/** How far ahead of its slot the dispatcher starts an execution (PacingPoint.VENDOR_CALL). */
const LEAD_MS = 2_000;

/** The message a main workflow's submitJobTask sends (its MessageBody), with a job payload. */
export function submitMessage(payload: unknown = { order: 'o-1', amount: 3 }): Record<string, unknown> {
  // A key (issue 15) as a keyed task sends it: the per-key credential configuration needs it.
  return { taskToken: 'main-task-token-1', requestId: 'req-1', payload, key: 'tenant-1', attempt: 1 };
}

/** The message a main workflow's callVendorTask sends. */
export function callMessage(call: Record<string, unknown> = { method: 'GET', path: '/jobs/job-1/result', query: { fields: ['all'] } }): Record<string, unknown> {
  return { kind: 'call', taskToken: 'main-task-token-2', requestId: 'call-1', call, key: 'tenant-1', attempt: 1 };
}

/**
 * The dispatch workflow's input for a request message body (a string: what the queue delivers,
 * e.g. a RequeueWithDelay MessageBody), built by the dispatcher's own code. `paced`: the dispatcher
 * passes the slot it reserved (PacingPoint.VENDOR_CALL).
 */
export function dispatchInputFor(body: string | Record<string, unknown>, paced: boolean): DispatchInput {
  const parsed = parseRequestMessage(typeof body === 'string' ? body : JSON.stringify(body));
  if (!parsed.ok) {
    throw new Error(`the dispatcher refuses this message: ${parsed.detail}`);
  }
  return buildDispatchInput(parsed.message as RequestMessage, Date.now(), CORRELATION_TTL_SECONDS, paced ? Date.now() + LEAD_MS : undefined);
}

/** The vendor-call workflow's input for a request message body, built by the dispatcher's own code. */
export function vendorCallInputFor(body: string | Record<string, unknown>, paced: boolean): VendorCallInput {
  const parsed = parseRequestMessage(typeof body === 'string' ? body : JSON.stringify(body));
  if (!parsed.ok) {
    throw new Error(`the dispatcher refuses this message: ${parsed.detail}`);
  }
  return buildVendorCallInput(parsed.message as VendorCallMessage, Date.now(), CORRELATION_TTL_SECONDS, paced ? Date.now() + LEAD_MS : undefined);
}

/** What the simulated vendor does with a request. */
export type VendorBehaviour =
  | { readonly status: number; readonly body?: unknown; readonly headers?: Record<string, string> }
  | { readonly noAnswer: true }
  /** The vendor paused dispatch (a 429's Retry-After, in the pacer table) for longer than the caller may wait. */
  | { readonly pausedForMs: number }
  /** A quota of the contract is spent for its period; the caller waits (WAIT) or fails (FAIL). */
  | { readonly quotaExhausted: 'WAIT' | 'FAIL' };

export const vendorAccepts = (body: unknown): VendorBehaviour => ({ status: 200, body });
export const vendorRefuses = (status: number, body: unknown = { error: `status ${status}` }, headers?: Record<string, string>): VendorBehaviour => ({ status, body, headers });
export const vendorSilent: VendorBehaviour = { noAnswer: true };
/**
 * The vendor accepts with a 300 KiB answer: more than Step Functions lets a task return (256 KiB).
 * The vendor caller refuses it (VendorResponseTooLarge); PacingPoint.DISPATCH cannot (no code in
 * between: the execution would fail with States.DataLimitExceeded).
 */
export const vendorAnswersTooLarge = (jobId = 'job-1'): VendorBehaviour => ({ status: 200, body: { jobId, data: 'x'.repeat(300 * 1024) } });
/**
 * The contract's hourly quota is spent (its counter's conditional write fails): the vendor caller
 * sends the request back to the queue until the next hour (WAIT) or fails it with
 * VendorQuotaExhausted (FAIL). PacingPoint.VENDOR_CALL only (quotas need the vendor caller).
 */
export const vendorQuotaExhausted = (action: 'WAIT' | 'FAIL'): VendorBehaviour => ({ quotaExhausted: action });
/** The pacer table holds a vendor pause of a minute: the vendor caller defers (PacingPoint.VENDOR_CALL only). */
export const vendorPaused: VendorBehaviour = { pausedForMs: 60_000 };

/** The requests the simulated vendor received through the vendor caller. */
export interface VendorRequest {
  readonly url: string;
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly body?: string;
}

const pacerTable = mockClient(DynamoDBClient);

const CALLER_CONFIG: VendorCallConfig = {
  proxyUrl: 'https://proxy-id.execute-api.us-east-1.amazonaws.com/vendor/',
  region: 'us-east-1',
  requestsPerSecond: 10,
  pacerTableName: 'pacer',
  latenessToleranceMs: 40,
  fireToleranceMs: 10,
  maxSlotWaitMs: 10_000,
  callTimeoutMs: 30_000,
  defaultPauseMs: 1_000,
  maxPauseMs: 900_000,
};

/**
 * The CallVendor task of PacingPoint.VENDOR_CALL (lambda:invoke of the vendor caller): runs the
 * caller's real logic on the task's Payload, against `vendor`, and answers like the Lambda
 * integration (`{ ExecutedVersion, Payload, StatusCode }`), or fails like it: the function's
 * error type is the error name, its error JSON the cause. The pacer table is mocked (no pause).
 */
export function vendorCallerTask(vendor: VendorBehaviour, received: VendorRequest[] = []): TaskHandler {
  return async (taskInput: { FunctionName: string; Payload: VendorCallEvent }) => {
    pacerTable.reset();
    // A virtual clock that sleeps instantly: the caller waits for its slot without the test waiting.
    // It starts a second before the slot at the latest (a slot already past stays past), so a
    // loaded machine that takes long to reach this task does not make the caller late for it.
    const slot = taskInput.Payload.slotAtMs;
    let nowMs = typeof slot === 'number' ? Math.min(Date.now(), slot - 1000) : Date.now();
    // Its sleep first lets pending I/O answer (a macrotask), as real time would: the caller races its
    // pause check (mocked reads, answered in microtasks) against sleeping until the slot.
    const clock: Clock = {
      now: () => nowMs,
      sleep: async (ms) => {
        // The time to wake at is fixed when the sleep starts: a sleep that lost a race and is still
        // pending never moves the clock past where the caller has got to meanwhile.
        const wakeAtMs = nowMs + Math.max(0, ms);
        await new Promise((resolve) => setImmediate(resolve));
        nowMs = Math.max(nowMs, wakeAtMs);
      },
    };
    // The pause the caller re-reads before its slot (GetItem on the pacer item), if the vendor paused dispatch.
    pacerTable.on(GetItemCommand).resolves('pausedForMs' in vendor
      ? { Item: { [PAUSED_UNTIL_ATTRIBUTE]: { N: String(nowMs + vendor.pausedForMs) } } }
      : {});
    pacerTable.on(UpdateItemCommand).resolves({});
    const quotaExhausted = 'quotaExhausted' in vendor ? vendor.quotaExhausted : undefined;
    if (quotaExhausted) {
      // The quota counter's conditional ADD fails: the hour's units are spent.
      pacerTable.on(UpdateItemCommand).callsFake(async (input) => {
        if (String(input.Key?.pk?.S).startsWith('quota#')) {
          throw Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });
        }
        return {};
      });
    }
    // The claim of the slot before it is fired (a conditional PutItem): the first claim of it.
    pacerTable.on(PutItemCommand).resolves({});
    const fakeFetch = async (url: string | URL | Request, init?: RequestInit): Promise<Response> => {
      received.push({ url: String(url), method: init?.method ?? 'GET', headers: init?.headers as Record<string, string>, body: init?.body as string | undefined });
      if ('pausedForMs' in vendor) {
        throw new Error('the vendor caller fired during a vendor pause');
      }
      if ('quotaExhausted' in vendor) {
        throw new Error('the vendor caller fired beyond a spent quota');
      }
      if ('noAnswer' in vendor) {
        const timeout = new Error('The operation was aborted due to timeout');
        timeout.name = 'TimeoutError';
        throw timeout;
      }
      const text = typeof vendor.body === 'string' ? vendor.body : JSON.stringify(vendor.body ?? null);
      return new Response(text, { status: vendor.status, headers: { 'content-type': 'application/json', ...vendor.headers } });
    };
    try {
      const result = await callVendor(taskInput.Payload, {
        dynamodb: new DynamoDBClient({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } }),
        config: quotaExhausted
          ? { ...CALLER_CONFIG, quotas: [{ name: 'hourly', limit: 1000, unit: 'hour' }], whenQuotaExhausted: quotaExhausted }
          : CALLER_CONFIG,
        sign: createSigV4Signer('us-east-1', () => ({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' })),
        fetch: fakeFetch as typeof fetch,
        logger: { debug: () => undefined, info: () => undefined, warn: () => undefined },
        clock,
      });
      // The Lambda integration's output: the function's result, parsed, as Payload.
      return { ExecutedVersion: '$LATEST', Payload: JSON.parse(JSON.stringify(result)), StatusCode: 200 };
    } catch (error) {
      if (error instanceof VendorCallError) {
        throw stepError(error.name, JSON.stringify({ errorType: error.name, errorMessage: error.message, trace: [] }));
      }
      throw error;
    }
  };
}

/**
 * The CallVendor task of PacingPoint.DISPATCH (apigateway:invoke, IAM): the proxy's answer as the
 * integration gives it (`{ Headers, ResponseBody, StatusCode, StatusText }`), a non-2xx status as
 * `ApiGateway.<status>` with the body as cause, no answer as the task's States.Timeout.
 */
export function apiGatewayInvokeTask(vendor: VendorBehaviour): TaskHandler {
  return () => {
    if ('pausedForMs' in vendor) {
      throw new Error('PacingPoint.DISPATCH has no vendor caller: a vendor pause holds the dispatcher, not the workflow');
    }
    if ('quotaExhausted' in vendor) {
      throw new Error('PacingPoint.DISPATCH has no vendor caller: quotas need PacingPoint.VENDOR_CALL');
    }
    if ('noAnswer' in vendor) {
      throw stepError('States.Timeout', 'Task timed out');
    }
    if (vendor.status < 200 || vendor.status > 299) {
      throw stepError(`ApiGateway.${vendor.status}`, JSON.stringify(vendor.body ?? null));
    }
    return {
      Headers: Object.fromEntries(Object.entries({ 'content-type': 'application/json', ...vendor.headers }).map(([k, v]) => [k, [v]])),
      ResponseBody: vendor.body,
      StatusCode: vendor.status,
      StatusText: 'OK',
    };
  };
}

/** The vendor call of either pacing point. */
export function callVendorTask(paced: boolean, vendor: VendorBehaviour, received?: VendorRequest[]): TaskHandler {
  return paced ? vendorCallerTask(vendor, received) : apiGatewayInvokeTask(vendor);
}

// ---- AWS service answers (SDK output shapes) ----

/** SQS SendMessage (SendMessageResult). */
export const sqsSent: TaskHandler = () => ({ MessageId: '2f1f8e1a-0000-4000-8000-000000000001', MD5OfMessageBody: 'd41d8cd98f00b204e9800998ecf8427e' });

/** DynamoDB UpdateItem without ReturnValues (UpdateItemOutput). */
export const dynamoUpdated: TaskHandler = () => ({});

/**
 * ClaimRequest (DynamoDB UpdateItem, ReturnValues ALL_NEW) on a new item: the item as the update
 * writes it, from the task's own parameters (the callback token is this dispatch's).
 */
export const claimNew: TaskHandler = (taskInput: any) => {
  const values = taskInput.ExpressionAttributeValues;
  return {
    Attributes: {
      [CorrelationAttributes.REQUEST_ID]: taskInput.Key[CorrelationAttributes.REQUEST_ID],
      [CorrelationAttributes.TASK_TOKEN]: values[':token'],
      [CorrelationAttributes.STATUS]: values[':status'],
      [CorrelationAttributes.EXPIRES_AT]: values[':expires'],
      [CorrelationAttributes.UPDATED_AT]: values[':updated'],
      [CorrelationAttributes.CALLBACK_TOKEN]: values[':cbToken'],
      [CorrelationAttributes.CLAIM_SEQ]: values[':claimSeq'],
    },
  };
};

/** Step Functions SendTaskHeartbeat / SendTaskSuccess / SendTaskFailure (empty outputs). */
export const sfnOk: TaskHandler = () => ({});

/** Fails `times` times with `error`, then answers with `then`. */
export function failing(times: number, error: () => Error, then: TaskHandler): TaskHandler {
  let failures = 0;
  return (input) => {
    if (failures < times) {
      failures++;
      throw error();
    }
    return then(input);
  };
}

/** Always fails with `error`. */
export function failsWith(name: string, cause = ''): TaskHandler {
  return () => {
    throw stepError(name, cause);
  };
}

// ---- The vendor credential (the configurations of test/asl/configurations.ts) ----

const secretsManager = mockClient(SecretsManagerClient);

/** Secrets Manager GetSecretValue (GetSecretValueResponse) of a string secret. */
export function secretValue(secretString: string): TaskHandler {
  return (taskInput: { SecretId: string }) => ({
    ARN: taskInput.SecretId,
    Name: 'VendorSecret',
    VersionId: 'a1b2c3d4-0000-4000-8000-000000000001',
    SecretString: secretString,
    VersionStages: ['AWSCURRENT'],
    CreatedDate: '2026-11-27T12:00:00.000Z',
  });
}

const CLIENT_SECRET = JSON.stringify({ clientId: 'client-1', clientSecret: 'client-secret-1' });
const tokenAnswer = (status: number, body: unknown) => async () =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/**
 * GetVendorToken (lambda:invoke of the proxy's OAuth token function): the function's real logic
 * (VendorTokenProvider) with `clientSecret` from a mocked Secrets Manager and `token` answering
 * for the token endpoint; answers (or fails) like the Lambda integration.
 */
function vendorTokenWith(clientSecret: string, token: () => Promise<Response>): TaskHandler {
  return () => asLambda(async () => {
    secretsManager.reset();
    secretsManager.on(GetSecretValueCommand).resolves({ SecretString: clientSecret });
    const provider = new VendorTokenProvider(
      { secretArn: SECRET_ARN, tokenUrl: 'https://auth.vendor.example.com/token', clientAuthentication: 'BASIC' },
      {
        secretsManager: new SecretsManagerClient({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } }),
        fetch: token,
        now: () => Date.now(),
      },
    );
    return { authorization: await provider.getAuthorization() };
  });
}

/** GetVendorToken when the client secret and the token endpoint are fine. */
export const vendorToken: TaskHandler = vendorTokenWith(CLIENT_SECRET, tokenAnswer(200, { access_token: 'access-token-1', token_type: 'Bearer', expires_in: 3600 }));

/** Runs a Lambda function's logic and answers like the Lambda integration: its error type is the error name. */
async function asLambda(logic: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ExecutedVersion: '$LATEST', Payload: await logic(), StatusCode: 200 };
  } catch (e) {
    const error = e as Error;
    throw stepError(error.name, JSON.stringify({ errorType: error.name, errorMessage: error.message, trace: [] }));
  }
}

const SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:VendorSecret-AbCdEf';

/**
 * ReadVendorCredential with a JSON secret (`jsonField`): lambda:invoke of the proxy's credential
 * function, its real logic (readSecretField) reading `secret` (a GetSecretValue output, or a
 * function that fails like the SDK call).
 */
export function jsonSecretCredential(secret: SecretValue | (() => Promise<SecretValue>), field: string): TaskHandler {
  return () => asLambda(async () => ({
    credential: await readSecretField(typeof secret === 'function' ? secret : async () => secret, SECRET_ARN, field),
  }));
}

/**
 * The answers of a configuration's credential states when the credential is there and has the
 * shape the configuration expects (a JSON secret with the `jsonField` the configuration names).
 */
export function credentialAnswers(configuration: string): Record<string, TaskHandler> {
  const secretJson = { SecretString: JSON.stringify({ apiKey: 'api-key-1', token: 'token-1' }) };
  if (/per-key/.test(configuration)) {
    return { ReadVendorCredential: perKeyCredential(async (name) => ({ SecretString: `api-key-of-${name}` })) };
  }
  if (/OAuth/.test(configuration)) {
    return { GetVendorToken: vendorToken };
  }
  if (/jsonField and prefix/.test(configuration)) {
    // test/asl/configurations.ts names the field `token` with a prefix, `apiKey` without.
    return { ReadVendorCredential: jsonSecretCredential(secretJson, 'token') };
  }
  if (/jsonField/.test(configuration)) {
    return { ReadVendorCredential: jsonSecretCredential(secretJson, 'apiKey') };
  }
  if (/secret header/.test(configuration)) {
    return { ReadVendorCredential: secretValue('api-key-1') };
  }
  return {};
}

/** How a credential problem ends: the request parked at once, or retried through the queue. */
export type CredentialOutcome = 'parked as VendorCredentialUnusable' | 'parked as VendorCredentialNotFound' | 'retried through the queue';

/**
 * ReadVendorCredential with a credential per key (`fromSecretHeaderPerKey('vendor/{key}')`):
 * lambda:invoke of the proxy's credential function, its real logic (PerKeyCredentials) reading the
 * key's secret with `read` (answers or fails like the SDK call, given the secret's name).
 */
export function perKeyCredential(read: (secretName: string) => Promise<SecretValue>): TaskHandler {
  return (taskInput: { Payload: { key?: unknown } }) => asLambda(async () => {
    const credentials = new PerKeyCredentials({ secretNamePattern: 'vendor/{key}', cacheTtlMs: 0 }, read, () => Date.now());
    return { credential: (await credentials.credentialFor(taskInput.Payload.key)).credential };
  });
}

/**
 * The ways a configuration's credential read fails, as the credential's producer fails: Secrets
 * Manager's errors and outputs for a plain-text secret, the credential function's or the token
 * function's real logic for a JSON secret or OAuth.
 */
export function credentialFailures(configuration: string): Array<[string, Record<string, TaskHandler>, CredentialOutcome]> {
  const notFound = () => {
    const error = new Error("Secrets Manager can't find the specified secret.");
    error.name = 'ResourceNotFoundException';
    return Promise.reject(error);
  };
  if (/per-key/.test(configuration)) {
    const sdkError = (name: string, message: string) => async (): Promise<SecretValue> => {
      const error = new Error(message);
      error.name = name;
      throw error;
    };
    return [
      ['a key without a secret', { ReadVendorCredential: perKeyCredential(sdkError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.")) },
        'parked as VendorCredentialNotFound'],
      ['a key whose secret is binary', { ReadVendorCredential: perKeyCredential(async () => ({ SecretBinary: new Uint8Array([0, 1]) })) }, 'parked as VendorCredentialUnusable'],
      ['a key whose secret cannot be read now', { ReadVendorCredential: perKeyCredential(sdkError('ThrottlingException', 'Rate exceeded')) }, 'retried through the queue'],
    ];
  }
  if (/OAuth/.test(configuration)) {
    return [
      ['a client secret that is not JSON', { GetVendorToken: vendorTokenWith('client-secret-1', tokenAnswer(200, {})) }, 'parked as VendorCredentialUnusable'],
      ['a token endpoint that fails', { GetVendorToken: vendorTokenWith(CLIENT_SECRET, tokenAnswer(503, { error: 'unavailable' })) }, 'retried through the queue'],
    ];
  }
  if (/jsonField/.test(configuration)) {
    return [
      ['a JSON secret without the field', { ReadVendorCredential: jsonSecretCredential({ SecretString: '{"other":"x"}' }, 'apiKey') }, 'parked as VendorCredentialUnusable'],
      ['a secret that cannot be read', { ReadVendorCredential: jsonSecretCredential(notFound, 'apiKey') }, 'retried through the queue'],
    ];
  }
  if (/secret header/.test(configuration)) {
    return [
      ['a binary secret (no SecretString)', { ReadVendorCredential: binarySecretValue }, 'parked as VendorCredentialUnusable'],
      ['a secret that cannot be read', { ReadVendorCredential: () => { throw stepError('SecretsManager.ResourceNotFoundException', "Secrets Manager can't find the specified secret."); } },
        'retried through the queue'],
    ];
  }
  return [];
}

/** GetSecretValue of a binary secret: SecretBinary (base64), no SecretString. */
const binarySecretValue: TaskHandler = (taskInput: { SecretId: string }) => ({
  ARN: taskInput.SecretId,
  Name: 'VendorSecret',
  VersionId: 'a1b2c3d4-0000-4000-8000-000000000001',
  SecretBinary: 'AAECAw==',
  VersionStages: ['AWSCURRENT'],
  CreatedDate: '2026-11-27T12:00:00.000Z',
});
