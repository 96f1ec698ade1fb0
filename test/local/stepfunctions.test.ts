/**
 * The local Step Functions against real emulators: fauxqs (SQS), dynalite (DynamoDB) and a small
 * HTTP server standing in for the API Gateway in front of the vendor. The task tokens are answered
 * through the real AWS SDK client, as the callback processor does.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'child_process';
import * as http from 'http';
import type { AddressInfo } from 'net';
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import {
  DescribeExecutionCommand, SendTaskFailureCommand, SendTaskHeartbeatCommand, SendTaskSuccessCommand, SFNClient,
  StartExecutionCommand, StartSyncExecutionCommand, StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { LocalStepFunctions } from '../../local/aws/stepfunctions';
import { LOCAL_CREDENTIALS, LOCAL_REGION, PRINCIPAL_HEADER } from '../../local/types';
import { AsyncExternalApiOrchestrator, PacingPoint } from '../../src';
import { AslDefinition, definitionOf, logicalIdOf, testStack } from '../util';

jest.setTimeout(30_000);

const ACCOUNT_ARN = 'arn:aws:states:us-east-1:000000000000:stateMachine';
const clientConfig = { region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS, maxAttempts: 1 };

// ------------------------------------------------------------------ emulators

interface Fauxqs {
  readonly endpoint: string;
  stop(): Promise<void>;
}

/**
 * fauxqs is an ES module only (no "require" export), which jest's CommonJS runtime cannot load:
 * it runs in a child process that prints its address and stops when its stdin closes.
 */
async function startFauxqs(): Promise<Fauxqs> {
  const script = [
    "import { startFauxqs } from 'fauxqs';",
    'const server = await startFauxqs({ port: 0, logger: false });',
    'console.log(JSON.stringify({ endpoint: server.address }));',
    "process.stdin.on('end', async () => { await server.stop(); process.exit(0); });",
    'process.stdin.resume();',
  ].join('\n');
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd() });
  const endpoint = await new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line).endpoint);
    });
    child.stderr.on('data', (chunk) => {
      err += chunk;
    });
    child.once('exit', (code) => reject(new Error(`fauxqs exited (${code}): ${err}`)));
  });
  return {
    endpoint,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin.end();
      await exited;
    },
  };
}

interface Dynalite {
  readonly endpoint: string;
  stop(): Promise<void>;
}

async function startDynalite(): Promise<Dynalite> {
  // dynalite has no type declarations.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const server = require('dynalite')({ createTableMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface VendorRequest {
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: any;
}

/** Stands in for the API Gateway proxy in front of the vendor; answers what `reply` says. */
async function startVendor(): Promise<{ base: string; requests: VendorRequest[]; reply: { status: number; body: string }; stop(): Promise<void> }> {
  const requests: VendorRequest[] = [];
  const reply = { status: 200, body: '{"jobId":"j-1"}' };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      requests.push({ url: req.url ?? '', headers: req.headers, body: body ? JSON.parse(body) : undefined });
      res.writeHead(reply.status, { 'content-type': 'application/json' });
      res.end(reply.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    reply,
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

// ------------------------------------------------------------------ fixtures

let fauxqs: Fauxqs;
let dynalite: Dynalite;
let vendor: Awaited<ReturnType<typeof startVendor>>;
let local: LocalStepFunctions;
let sfnClient: SFNClient;
let sqsClient: SQSClient;
let ddbClient: DynamoDBClient;

beforeAll(async () => {
  [fauxqs, dynalite, vendor] = await Promise.all([startFauxqs(), startDynalite(), startVendor()]);
  local = new LocalStepFunctions({
    endpoints: { sqs: fauxqs.endpoint, dynamodb: dynalite.endpoint, secretsManager: 'http://127.0.0.1:9' },
    invokeLambda: async (name, event) => {
      if (name === 'Echo') return { echoed: event };
      const error = new Error(`${name} is down`);
      error.name = 'VendorDown';
      throw error;
    },
    // Every execute-api host is the vendor proxy here.
    rewriteUrl: (url) => url.replace(/^https:\/\/[^/]+\.execute-api\.[^/]+\.amazonaws\.com/, vendor.base),
  });
  const endpoint = await local.listen();
  sfnClient = new SFNClient({ ...clientConfig, endpoint });
  sqsClient = new SQSClient({ ...clientConfig, endpoint: fauxqs.endpoint });
  ddbClient = new DynamoDBClient({ ...clientConfig, endpoint: dynalite.endpoint });
});

afterAll(async () => {
  sfnClient?.destroy();
  sqsClient?.destroy();
  ddbClient?.destroy();
  await local?.stop();
  await Promise.all([fauxqs?.stop(), dynalite?.stop(), vendor?.stop()]);
});

async function createQueue(name: string): Promise<string> {
  const { QueueUrl } = await sqsClient.send(new CreateQueueCommand({ QueueName: name }));
  return QueueUrl!;
}

/** The next message of a queue (deleted), waiting up to `seconds`. */
async function receiveOne(queueUrl: string, seconds = 5): Promise<{ body: any; attributes: Record<string, string | undefined> }> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    const { Messages } = await sqsClient.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1, MessageAttributeNames: ['All'] }));
    const message = Messages?.[0];
    if (message) {
      await sqsClient.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle! }));
      const attributes = Object.fromEntries(Object.entries(message.MessageAttributes ?? {}).map(([k, v]) => [k, v.StringValue]));
      return { body: JSON.parse(message.Body!), attributes };
    }
  }
  throw new Error(`no message on ${queueUrl} within ${seconds} s`);
}

/** The error the SDK raises for a command (its `name` is the API's error code). */
async function sdkError(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('the call succeeded');
}

/** A Standard machine that sends a message with its task token and waits for the answer. */
function callbackMachine(queueUrl: string, timeoutSeconds: number): object {
  return {
    StartAt: 'SubmitAndWait',
    TimeoutSeconds: 60,
    States: {
      SubmitAndWait: {
        Type: 'Task',
        Resource: 'arn:aws:states:::sqs:sendMessage.waitForTaskToken',
        TimeoutSeconds: timeoutSeconds,
        Parameters: {
          QueueUrl: queueUrl,
          MessageBody: { 'token.$': '$$.Task.Token', 'order.$': '$.order', 'executionId.$': '$$.Execution.Id' },
          MessageAttributes: { kind: { DataType: 'String', StringValue: 'submit' } },
        },
        ResultPath: '$.result',
        Catch: [{ ErrorEquals: ['States.Timeout'], ResultPath: '$.error', Next: 'TimedOut' }],
        Next: 'Done',
      },
      Done: { Type: 'Succeed' },
      TimedOut: { Type: 'Pass', Result: 'timed out', ResultPath: '$.outcome', End: true },
    },
  };
}

// ------------------------------------------------------------------ callback tasks

describe('a waitForTaskToken task answered through the real SDK', () => {
  const arn = `${ACCOUNT_ARN}:Callback`;
  const shortArn = `${ACCOUNT_ARN}:CallbackShort`;
  let queueUrl: string;

  beforeAll(async () => {
    queueUrl = await createQueue('callback-requests');
    const roleArn = 'arn:aws:iam::000000000000:role/CallbackRole';
    local.addStateMachine({ arn, name: 'Callback', type: 'STANDARD', definition: callbackMachine(queueUrl, 10), roleArn });
    local.addStateMachine({ arn: shortArn, name: 'CallbackShort', type: 'STANDARD', definition: callbackMachine(queueUrl, 1), roleArn });
  });

  test('SendTaskSuccess resumes the execution with its output; the token is then closed', async () => {
    // GIVEN an execution waiting for its token
    const { executionArn } = await sfnClient.send(new StartExecutionCommand({ stateMachineArn: arn, input: JSON.stringify({ order: 'o-1' }) }));
    const message = await receiveOne(queueUrl);
    expect(message.body).toMatchObject({ order: 'o-1', executionId: executionArn });
    expect(message.attributes.kind).toBe('submit');
    const token = message.body.token;

    // WHEN
    await sfnClient.send(new SendTaskHeartbeatCommand({ taskToken: token }));
    await sfnClient.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify({ jobId: 'j-9' }) }));

    // THEN
    const ended = await local.waitForExecution(executionArn!);
    expect(ended.status).toBe('SUCCEEDED');
    const described = await sfnClient.send(new DescribeExecutionCommand({ executionArn }));
    expect(described.status).toBe('SUCCEEDED');
    expect(described.startDate).toBeInstanceOf(Date);
    expect(JSON.parse(described.output!)).toEqual({ order: 'o-1', result: { jobId: 'j-9' } });
    // A second answer on a closed token, and a token never issued, are refused as on AWS.
    expect((await sdkError(sfnClient.send(new SendTaskSuccessCommand({ taskToken: token, output: '{}' })))).name).toBe('TaskTimedOut');
    expect((await sdkError(sfnClient.send(new SendTaskSuccessCommand({ taskToken: 'garbage', output: '{}' })))).name).toBe('InvalidToken');
    expect((await sdkError(sfnClient.send(new SendTaskHeartbeatCommand({ taskToken: token })))).name).toBe('TaskTimedOut');
    const counters = local.counters();
    expect(counters.startedByStateMachine[arn]).toBeGreaterThanOrEqual(1);
    expect(counters.taskTokens).toMatchObject({ succeeded: 1, heartbeats: 1 });
    expect(counters.taskTokens.timedOut).toBeGreaterThanOrEqual(2);
    expect(counters.taskTokens.invalid).toBeGreaterThanOrEqual(1);
  });

  test('SendTaskFailure fails the task with the given error and cause', async () => {
    const { executionArn } = await sfnClient.send(new StartExecutionCommand({ stateMachineArn: arn, input: '{"order":"o-2"}' }));
    const { body } = await receiveOne(queueUrl);

    await sfnClient.send(new SendTaskFailureCommand({ taskToken: body.token, error: 'VendorJobFailed', cause: 'out of stock' }));

    const ended = await local.waitForExecution(executionArn!);
    expect(ended).toMatchObject({ status: 'FAILED', error: 'VendorJobFailed', cause: 'out of stock' });
  });

  test('resumesOf counts the answers accepted on one execution\'s tokens: not a refused one, not another execution\'s, not a timeout', async () => {
    const { executionArn: answered } = await sfnClient.send(new StartExecutionCommand({ stateMachineArn: arn, input: '{"order":"o-5"}' }));
    const first = await receiveOne(queueUrl);
    const { executionArn: failed } = await sfnClient.send(new StartExecutionCommand({ stateMachineArn: arn, input: '{"order":"o-6"}' }));
    const second = await receiveOne(queueUrl);
    const byOrder = Object.fromEntries([first, second].map((m) => [m.body.order, m.body.token]));

    await sfnClient.send(new SendTaskSuccessCommand({ taskToken: byOrder['o-5'], output: '{}' }));
    await sdkError(sfnClient.send(new SendTaskSuccessCommand({ taskToken: byOrder['o-5'], output: '{}' })));
    await sfnClient.send(new SendTaskFailureCommand({ taskToken: byOrder['o-6'], error: 'VendorJobFailed' }));
    await local.waitForExecution(answered!);
    await local.waitForExecution(failed!);
    const { executionArn: timedOut } = await sfnClient.send(new StartExecutionCommand({ stateMachineArn: shortArn, input: '{"order":"o-7"}' }));
    await receiveOne(queueUrl);
    await local.waitForExecution(timedOut!);

    expect([local.resumesOf(answered!), local.resumesOf(failed!), local.resumesOf(timedOut!)]).toEqual([1, 1, 0]);
  });

  test('without an answer the task times out with States.Timeout, which its Catch handles', async () => {
    const { executionArn } = await sfnClient.send(new StartExecutionCommand({ stateMachineArn: shortArn, input: '{"order":"o-3"}' }));
    const { body } = await receiveOne(queueUrl);

    const ended = await local.waitForExecution(executionArn!);

    expect(ended.status).toBe('SUCCEEDED');
    expect(JSON.parse(ended.output!)).toMatchObject({ outcome: 'timed out', error: { Error: 'States.Timeout' } });
    expect((await sdkError(sfnClient.send(new SendTaskSuccessCommand({ taskToken: body.token, output: '{}' })))).name).toBe('TaskTimedOut');
    expect(local.counters().taskTokens.expired).toBeGreaterThanOrEqual(1);
  });

  test('StopExecution aborts a waiting execution and closes its token', async () => {
    const { executionArn } = await sfnClient.send(new StartExecutionCommand({ stateMachineArn: arn, input: '{"order":"o-4"}' }));
    const { body } = await receiveOne(queueUrl);

    await sfnClient.send(new StopExecutionCommand({ executionArn, error: 'Cancelled', cause: 'by the test' }));

    expect(local.describeExecution(executionArn!)).toMatchObject({ status: 'ABORTED', error: 'Cancelled', cause: 'by the test' });
    expect((await sdkError(sfnClient.send(new SendTaskFailureCommand({ taskToken: body.token, error: 'X' })))).name).toBe('TaskTimedOut');
  });

  test('the API answers its errors in the AWS shape', async () => {
    const missing = await sdkError(sfnClient.send(new StartExecutionCommand({ stateMachineArn: `${ACCOUNT_ARN}:Nope`, input: '{}' })));
    expect(missing.name).toBe('StateMachineDoesNotExist');
    expect((await sdkError(sfnClient.send(new StartExecutionCommand({ stateMachineArn: arn, input: '{not json' })))).name).toBe('InvalidExecutionInput');
    expect((await sdkError(sfnClient.send(new DescribeExecutionCommand({ executionArn: `${arn.replace('stateMachine', 'execution')}:nope` })))).name)
      .toBe('ExecutionDoesNotExist');
    const first = await sfnClient.send(new StartExecutionCommand({ stateMachineArn: arn, name: 'once', input: '{"order":"o-5"}' }));
    const retried = await sfnClient.send(new StartExecutionCommand({ stateMachineArn: arn, name: 'once', input: '{"order":"o-5"}' }));
    expect(retried.executionArn).toBe(first.executionArn);
    expect((await sdkError(sfnClient.send(new StartExecutionCommand({ stateMachineArn: arn, name: 'once', input: '{}' })))).name).toBe('ExecutionAlreadyExists');
    await sfnClient.send(new StopExecutionCommand({ executionArn: first.executionArn }));
    await receiveOne(queueUrl);
  });

  test('StartSyncExecution runs an Express machine to its end', async () => {
    const expressArn = `${ACCOUNT_ARN}:Echo`;
    local.addStateMachine({
      arn: expressArn,
      name: 'Echo',
      type: 'EXPRESS',
      roleArn: 'arn:aws:iam::000000000000:role/Echo',
      definition: { StartAt: 'Echo', States: { Echo: { Type: 'Pass', Parameters: { 'said.$': '$.say', 'by.$': '$$.StateMachine.Name' }, End: true } } },
    });
    // StartSyncExecution has the host prefix "sync-": a client on a loopback endpoint must turn it off.
    const client = new SFNClient({ ...clientConfig, endpoint: await local.listen(), disableHostPrefix: true });
    try {
      const result = await client.send(new StartSyncExecutionCommand({ stateMachineArn: expressArn, input: '{"say":"hi"}' }));
      expect(result.status).toBe('SUCCEEDED');
      expect(JSON.parse(result.output!)).toEqual({ said: 'hi', by: 'Echo' });
    } finally {
      client.destroy();
    }
  });

  test('JSONata, a Distributed Map and $$.State are refused when the state machine is added (never run without them)', () => {
    const add = (name: string, definition: object) => () => local.addStateMachine({ arn: `${ACCOUNT_ARN}:${name}`, name, type: 'STANDARD', definition, roleArn: 'r' });
    expect(add('Jsonata', { QueryLanguage: 'JSONata', StartAt: 'P', States: { P: { Type: 'Pass', Output: '{% $states.input %}', End: true } } }))
      .toThrow(/the definition uses JSONata/);
    expect(add('JsonataState', { StartAt: 'P', States: { P: { Type: 'Pass', QueryLanguage: 'JSONata', Output: '{% 1 %}', End: true } } }))
      .toThrow(/state 'P' uses JSONata/);
    const iterator = { ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' }, StartAt: 'I', States: { I: { Type: 'Pass', End: true } } };
    expect(add('Distributed', { StartAt: 'M', States: { M: { Type: 'Map', ItemProcessor: iterator, End: true } } })).toThrow(/state 'M' is a Distributed Map/);
    expect(add('StateContext', { StartAt: 'P', States: { P: { Type: 'Pass', Parameters: { 'at.$': '$$.State.EnteredTime' }, End: true } } }))
      .toThrow(/state 'P' reads \$\$\.State\.EnteredTime/);
  });

  test('a Task resource that does not run locally is refused when the state machine is added', () => {
    const definition = { StartAt: 'Notify', States: { Notify: { Type: 'Task', Resource: 'arn:aws:states:::sns:publish', Parameters: { Message: 'x' }, End: true } } };
    expect(() => local.addStateMachine({ arn: `${ACCOUNT_ARN}:Bad`, name: 'Bad', type: 'STANDARD', definition, roleArn: 'r' }))
      .toThrow(/state 'Notify' uses Resource 'arn:aws:states:::sns:publish'/);
  });
});

// ------------------------------------------------------------------ integrations and their errors

describe('the integrations run against the emulators and fail with the error names of AWS', () => {
  test('DynamoDB, SQS, Step Functions and Lambda tasks', async () => {
    // GIVEN a table with one item and a queue
    const table = 'Integrations';
    await ddbClient.send(new CreateTableCommand({
      TableName: table,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
    }));
    while ((await ddbClient.send(new DescribeTableCommand({ TableName: table }))).Table?.TableStatus !== 'ACTIVE') {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const queueUrl = await createQueue('integrations');
    const missingQueueUrl = queueUrl.replace(/integrations$/, 'missing');
    const catchInto = (path: string, next: string) => [{ ErrorEquals: ['States.ALL'], ResultPath: path, Next: next }];
    const arn = `${ACCOUNT_ARN}:Integrations`;
    local.addStateMachine({
      arn,
      name: 'Integrations',
      type: 'EXPRESS',
      roleArn: 'arn:aws:iam::000000000000:role/Integrations',
      definition: {
        StartAt: 'Put',
        States: {
          Put: {
            Type: 'Task',
            Resource: 'arn:aws:states:::dynamodb:putItem',
            ResultPath: null,
            Next: 'PutAgain',
            Parameters: { TableName: table, Item: { id: { S: 'a' }, note: { 'S.$': 'States.JsonToString($.note)' } }, ConditionExpression: 'attribute_not_exists(id)' },
          },
          PutAgain: {
            Type: 'Task',
            Resource: 'arn:aws:states:::dynamodb:putItem',
            ResultPath: null,
            Next: 'Get',
            Catch: catchInto('$.errors.put', 'Get'),
            Parameters: { TableName: table, Item: { id: { S: 'a' } }, ConditionExpression: 'attribute_not_exists(id)' },
          },
          Get: {
            Type: 'Task',
            Resource: 'arn:aws:states:::aws-sdk:dynamodb:getItem',
            ResultSelector: { 'note.$': '$.Item.note.S' },
            ResultPath: '$.got',
            Next: 'Send',
            Parameters: { TableName: table, Key: { id: { S: 'a' } } },
          },
          Send: {
            Type: 'Task',
            Resource: 'arn:aws:states:::sqs:sendMessage',
            ResultSelector: { 'id.$': '$.MessageId' },
            ResultPath: '$.sent',
            Next: 'SendToMissing',
            Parameters: { QueueUrl: queueUrl, MessageBody: { 'note.$': '$.note' }, DelaySeconds: 0 },
          },
          SendToMissing: {
            Type: 'Task',
            Resource: 'arn:aws:states:::aws-sdk:sqs:sendMessage',
            ResultPath: null,
            Next: 'FailUnknownToken',
            Catch: catchInto('$.errors.sqs', 'FailUnknownToken'),
            Parameters: { QueueUrl: missingQueueUrl, MessageBody: 'x' },
          },
          FailUnknownToken: {
            Type: 'Task',
            Resource: 'arn:aws:states:::aws-sdk:sfn:sendTaskFailure',
            ResultPath: null,
            Next: 'Echo',
            Catch: catchInto('$.errors.sfn', 'Echo'),
            Parameters: { TaskToken: 'not-a-token', Error: 'X' },
          },
          Echo: {
            Type: 'Task',
            Resource: 'arn:aws:states:::lambda:invoke',
            ResultSelector: { 'echoed.$': '$.Payload.echoed' },
            ResultPath: '$.echo',
            Next: 'Broken',
            Parameters: { FunctionName: 'Echo', Payload: { 'n.$': '$.n' } },
          },
          Broken: {
            Type: 'Task',
            Resource: 'arn:aws:states:::lambda:invoke',
            ResultPath: null,
            End: true,
            Catch: catchInto('$.errors.lambda', 'Done'),
            Parameters: { FunctionName: 'Broken', Payload: {} },
          },
          Done: { Type: 'Succeed' },
        },
      },
    });

    // WHEN
    const result = await local.startSyncExecution(arn, { note: { text: 'say "hi"' }, n: 7 });

    // THEN
    expect(result).toMatchObject({ status: 'SUCCEEDED' });
    const output = JSON.parse(result.output!);
    expect(output.got.note).toBe('{"text":"say \\"hi\\""}');
    expect(output.sent.id).toEqual(expect.any(String));
    expect(output.echo).toEqual({ echoed: { n: 7 } });
    expect(output.errors.put.Error).toBe('DynamoDB.ConditionalCheckFailedException');
    expect(output.errors.sqs.Error).toBe('Sqs.QueueDoesNotExistException');
    expect(output.errors.sfn.Error).toBe('Sfn.InvalidTokenException');
    expect(output.errors.lambda.Error).toBe('VendorDown');
    expect(JSON.parse(output.errors.lambda.Cause)).toMatchObject({ errorType: 'VendorDown', errorMessage: 'Broken is down' });
    const { body } = await receiveOne(queueUrl);
    expect(body).toEqual({ note: { text: 'say "hi"' } });
  });
});

// ------------------------------------------------------------------ the orchestrator's definitions

/** The synthesized main and dispatch definitions of a stack with the orchestrator. */
function orchestratorDefinitions(): { main: AslDefinition; dispatch: AslDefinition } {
  const stack = testStack();
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
    // The workflow calls the proxy itself (apigateway:invoke), which this test serves; the vendor
    // caller (PacingPoint.VENDOR_CALL) runs in test/local/e2e.test.ts.
    pacingPoint: PacingPoint.DISPATCH,
  });
  const main = new sfn.StateMachine(stack, 'Main', {
    definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.submitJobTask(stack, 'Submit', {
      payload: sfn.TaskInput.fromJsonPathAt('$.order'),
      requestId: sfn.JsonPath.stringAt('$.orderId'),
    })),
  });
  orchestrator.registerWorkflow(main);
  const template = Template.fromStack(stack);
  return {
    main: definitionOf(template, logicalIdOf(stack, main)),
    dispatch: definitionOf(template, logicalIdOf(stack, orchestrator.dispatch.stateMachine)),
  };
}

/** Replaces the placeholders test/util.ts leaves for the queue URLs and the table name. */
function patchPlaceholders(value: unknown, names: { requestQueue: string; deadLetterQueue: string; table: string }): any {
  if (typeof value === 'string' && value.startsWith('PLACEHOLDER-')) {
    if (/CorrelationTable/.test(value)) return names.table;
    if (/RequestDeadLetterQueue/.test(value)) return names.deadLetterQueue;
    if (/RequestQueue/.test(value)) return names.requestQueue;
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => patchPlaceholders(v, names));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, patchPlaceholders(v, names)]));
  }
  return value;
}

/** A capability token as the dispatcher mints them (43 base64url characters). */
const CALLBACK_TOKEN = 'C'.repeat(43);

describe('the synthesized orchestrator definitions, end to end', () => {
  const mainArn = `${ACCOUNT_ARN}:Main`;
  const dispatchArn = `${ACCOUNT_ARN}:Dispatch`;
  const dispatchRole = 'arn:aws:iam::000000000000:role/DispatchRole';
  const table = 'VendorCorrelation';
  let requestQueue: string;
  let deadLetterQueue: string;

  beforeAll(async () => {
    [requestQueue, deadLetterQueue] = await Promise.all([createQueue('VendorRequestQueue'), createQueue('VendorRequestDeadLetterQueue')]);
    await ddbClient.send(new CreateTableCommand({
      TableName: table,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'requestId', AttributeType: 'S' }, { AttributeName: 'jobId', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'requestId', KeyType: 'HASH' }],
      GlobalSecondaryIndexes: [{ IndexName: 'ByJobId', KeySchema: [{ AttributeName: 'jobId', KeyType: 'HASH' }], Projection: { ProjectionType: 'ALL' } }],
    }));
    while ((await ddbClient.send(new DescribeTableCommand({ TableName: table }))).Table?.TableStatus !== 'ACTIVE') {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const definitions = orchestratorDefinitions();
    const names = { requestQueue, deadLetterQueue, table };
    const mainRole = 'arn:aws:iam::000000000000:role/MainRole';
    local.addStateMachine({ arn: mainArn, name: 'Main', type: 'STANDARD', definition: patchPlaceholders(definitions.main, names), roleArn: mainRole });
    local.addStateMachine({ arn: dispatchArn, name: 'Dispatch', type: 'EXPRESS', definition: patchPlaceholders(definitions.dispatch, names), roleArn: dispatchRole });
  });

  /** Starts the main workflow and returns the request message its submit task sent. */
  async function submit(orderId: string): Promise<{ executionArn: string; message: any }> {
    const { executionArn } = await sfnClient.send(new StartExecutionCommand({ stateMachineArn: mainArn, input: JSON.stringify({ orderId, order: { sku: 'a-1', qty: 2 } }) }));
    const { body } = await receiveOne(requestQueue);
    expect(body).toMatchObject({ requestId: orderId, payload: { sku: 'a-1', qty: 2 }, attempt: 1 });
    return { executionArn: executionArn!, message: body };
  }

  /** Runs the dispatch workflow for a request message, as the paced queue consumer starts it. */
  async function dispatch(message: any) {
    const { requestId, taskToken, payload, attempt } = message;
    // As the dispatcher builds it: the request's capability token (minted once, kept by retries).
    const callbackToken = message.callbackToken ?? CALLBACK_TOKEN;
    const claim = { deferrals: 0, claimSeq: attempt * 1000 };
    const input = {
      requestId, taskToken, payload, attempt, expiresAt: 1_900_000_000, ...claim, message, callbackToken, requestStartedAtMs: Date.now(),
    };
    const { executionArn } = await sfnClient.send(new StartExecutionCommand({ stateMachineArn: dispatchArn, input: JSON.stringify(input) }));
    return local.waitForExecution(executionArn!);
  }

  test('the vendor accepts: the job id is stored, and the callback resumes the main workflow', async () => {
    // GIVEN
    const { executionArn, message } = await submit('order-1');
    vendor.reply.status = 200;
    vendor.reply.body = '{"jobId":"j-1"}';
    const before = vendor.requests.length;

    // WHEN
    const dispatched = await dispatch(message);

    // THEN the vendor got the payload with the webhook URL, signed as the dispatch role
    expect(dispatched.status).toBe('SUCCEEDED');
    const request = vendor.requests[before];
    expect(request.url).toBe('/vendor');
    expect(request.headers[PRINCIPAL_HEADER]).toBe(dispatchRole);
    expect(request.headers['idempotency-key']).toBe('order-1');
    expect(request.body).toEqual({ sku: 'a-1', qty: 2, callbackUrl: expect.stringMatching(new RegExp(`/callback/${CALLBACK_TOKEN}$`)) });
    const { Item } = await ddbClient.send(new GetItemCommand({ TableName: table, Key: { requestId: { S: 'order-1' } } }));
    expect(Item).toMatchObject({ jobId: { S: 'j-1' }, status: { S: 'SUBMITTED' }, taskToken: { S: message.taskToken }, expiresAt: { N: '1900000000' } });

    // AND the callback processor's SendTaskSuccess resumes the main workflow
    await sfnClient.send(new SendTaskSuccessCommand({ taskToken: Item!.taskToken.S!, output: JSON.stringify({ jobId: 'j-1', result: { ok: true } }) }));
    const main = await local.waitForExecution(executionArn);
    expect(main.status).toBe('SUCCEEDED');
    expect(JSON.parse(main.output!)).toEqual({ jobId: 'j-1', result: { ok: true } });
  });

  test('a 503 goes back through the request queue as attempt 2; a 400 then gives up and fails the main workflow', async () => {
    // GIVEN
    const { executionArn, message } = await submit('order-2');
    vendor.reply.status = 503;
    vendor.reply.body = '{"message":"Service Unavailable"}';

    // WHEN the vendor is unavailable
    const first = await dispatch(message);

    // THEN the request is re-enqueued with a (full-jitter) delay, the same id and token
    expect(first.status).toBe('SUCCEEDED');
    const retry = await receiveOne(requestQueue, 5);
    expect(retry.body).toEqual({
      taskToken: message.taskToken,
      requestId: 'order-2',
      payload: message.payload,
      attempt: 2,
      callbackToken: CALLBACK_TOKEN,
      requestStartedAtMs: expect.any(Number), // the retry keeps the request's start (its quota deadline)
      priority: null, // and its priority (none here: the dispatcher's input defaults fill null)
    });

    // WHEN the vendor refuses the retry
    vendor.reply.status = 400;
    vendor.reply.body = '{"error":"invalid order"}';
    const second = await dispatch(retry.body);

    // THEN the request is parked and the main workflow fails through the in-process SendTaskFailure
    expect(second).toMatchObject({ status: 'FAILED', error: 'VendorRequestFailed' });
    const parked = await receiveOne(deadLetterQueue);
    expect(parked.body).toEqual(retry.body);
    expect(parked.attributes.reason).toBe('ApiGateway.400');
    const main = await local.waitForExecution(executionArn);
    expect(main.status).toBe('FAILED');
    expect(main.error).toBe('VendorRequestFailed');
    expect(JSON.parse(main.cause!)).toMatchObject({ Error: 'ApiGateway.400', Cause: '{"error":"invalid order"}' });
  });

  test('two copies of one request message dispatched at once: one claims it, the vendor is called once', async () => {
    // GIVEN one request message, delivered twice (SQS delivers at least once)
    const { executionArn, message } = await submit('order-3');
    vendor.reply.status = 200;
    vendor.reply.body = '{"jobId":"j-3"}';
    const before = vendor.requests.length;

    // WHEN both copies are dispatched at the same time
    const [a, b] = await Promise.all([dispatch(message), dispatch(message)]);

    // THEN both executions succeed, but only one called the vendor: the other stopped at the claim
    expect([a.status, b.status]).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    expect(vendor.requests.length - before).toBe(1);
    const { Item } = await ddbClient.send(new GetItemCommand({ TableName: table, Key: { requestId: { S: 'order-3' } } }));
    expect(Item).toMatchObject({ jobId: { S: 'j-3' }, claimSeq: { N: '1000' } });
    await sfnClient.send(new SendTaskSuccessCommand({ taskToken: Item!.taskToken.S!, output: JSON.stringify({ jobId: 'j-3', result: {} }) }));
    expect((await local.waitForExecution(executionArn)).status).toBe('SUCCEEDED');
  });
});

// ------------------------------------------------------------------ interpreter failures

describe('an intrinsic function that fails ends the execution with States.Runtime, as on AWS', () => {
  // "A States.Runtime error isn't retriable, and will always cause the execution to fail. A retry
  // or catch on States.ALL won't catch States.Runtime errors."
  // (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
  // aws-local-stepfunctions alone retries and catches JSON.parse's SyntaxError
  // (test/asl/aws-local-stepfunctions-leniency.test.ts).
  const arn = `${ACCOUNT_ARN}:ParseAnswer`;
  beforeAll(() => {
    local.addStateMachine({
      arn,
      name: 'ParseAnswer',
      type: 'EXPRESS',
      roleArn: 'arn:aws:iam::000000000000:role/ParseAnswer',
      definition: {
        StartAt: 'Call',
        States: {
          Call: {
            Type: 'Task',
            Resource: 'arn:aws:states:::lambda:invoke',
            Parameters: { 'FunctionName.$': '$.fn', 'Payload': { 'text.$': '$.text' } },
            ResultSelector: { 'parsed.$': 'States.StringToJson($.Payload.echoed.text)' },
            Retry: [{ ErrorEquals: ['States.ALL'], MaxAttempts: 1, IntervalSeconds: 0 }],
            Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Caught' }],
            End: true,
          },
          Caught: { Type: 'Pass', End: true },
        },
      },
    });
  });

  test('States.StringToJson of an answer that is not JSON, in a ResultSelector: FAILED, States.Runtime, not caught', async () => {
    const result = await local.startSyncExecution(arn, { fn: 'Echo', text: 'not json' });
    expect(result).toMatchObject({ status: 'FAILED', error: 'States.Runtime' });
    expect(result.cause).toMatch(/SyntaxError/);
  });

  test('the function\'s own failure is still the task\'s: caught', async () => {
    const result = await local.startSyncExecution(arn, { fn: 'Down', text: '{}' });
    expect(result.status).toBe('SUCCEEDED');
    expect(JSON.parse(result.output!)).toMatchObject({ error: { Error: 'VendorDown' } });
  });
});

describe('a task result over 256 KiB fails with States.DataLimitExceeded, which States.ALL does not catch', () => {
  // "States.DataLimitExceeded: A terminal error which cannot be caught by the States.ALL error
  // type. Reported due to: Output of a connector is larger than payload size quota."
  // (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html)
  const DATA_LIMIT = 'States.DataLimitExceeded';
  const bigBody = JSON.stringify({ data: 'x'.repeat(300 * 1024) });
  function fetchMachine(name: string, catchers: string[][]) {
    const arn = `${ACCOUNT_ARN}:${name}`;
    local.addStateMachine({
      arn,
      name,
      type: 'EXPRESS',
      roleArn: `arn:aws:iam::000000000000:role/${name}`,
      definition: {
        StartAt: 'Fetch',
        States: {
          Fetch: {
            Type: 'Task',
            Resource: 'arn:aws:states:::apigateway:invoke',
            Parameters: { ApiEndpoint: 'vendor.execute-api.us-east-1.amazonaws.com', Stage: 'prod', Method: 'GET', Path: '/result' },
            ResultSelector: { 'status.$': '$.StatusCode' },
            Catch: catchers.map((errors) => ({ ErrorEquals: errors, ResultPath: '$.error', Next: 'Caught' })),
            End: true,
          },
          Caught: { Type: 'Pass', End: true },
        },
      },
    });
    return arn;
  }

  async function withVendorBody<T>(body: string, f: () => Promise<T>): Promise<T> {
    const saved = { ...vendor.reply };
    Object.assign(vendor.reply, { status: 200, body });
    try {
      return await f();
    } finally {
      Object.assign(vendor.reply, saved);
    }
  }

  test('a States.ALL catcher does not catch it: the execution fails', async () => {
    const arn = fetchMachine('FetchCatchAll', [['States.ALL']]);
    const result = await withVendorBody(bigBody, () => local.startSyncExecution(arn, {}));
    expect(result).toMatchObject({ status: 'FAILED', error: 'States.DataLimitExceeded' });
    expect(result.cause).toMatch(/'Fetch' returned a result with a size exceeding/);
    // A result that fits passes as before.
    expect(await withVendorBody('{"ok":true}', () => local.startSyncExecution(arn, {}))).toMatchObject({ status: 'SUCCEEDED', output: '{"status":200}' });
  });

  test('an input over 256 KiB after Parameters fails the task; States.ALL does not catch it', async () => {
    const arn = `${ACCOUNT_ARN}:EchoTwice`;
    local.addStateMachine({
      arn,
      name: 'EchoTwice',
      type: 'EXPRESS',
      roleArn: 'arn:aws:iam::000000000000:role/EchoTwice',
      definition: {
        StartAt: 'Echo',
        States: {
          Echo: {
            Type: 'Task',
            Resource: 'arn:aws:states:::lambda:invoke',
            Parameters: { FunctionName: 'Echo', Payload: { 'a.$': '$.text', 'b.$': '$.text' } },
            ResultSelector: { 'ok.$': '$.StatusCode' },
            Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Caught' }],
            End: true,
          },
          Caught: { Type: 'Pass', End: true },
        },
      },
    });
    // 150 KiB fits in the execution's input; twice over it does not fit in the task's.
    const result = await local.startSyncExecution(arn, { text: 'x'.repeat(150 * 1024) });
    expect(result).toMatchObject({ status: 'FAILED', error: DATA_LIMIT });
    expect(result.cause).toMatch(/'Echo' has an input with a size exceeding/);
    expect((await local.startSyncExecution(arn, { text: 'x'.repeat(100 * 1024) })).status).toBe('SUCCEEDED');
  });

  test('a catcher naming States.DataLimitExceeded catches it', async () => {
    const arn = fetchMachine('FetchCatchLimit', [[DATA_LIMIT], ['States.ALL']]);
    const result = await withVendorBody(bigBody, () => local.startSyncExecution(arn, {}));
    expect(result.status).toBe('SUCCEEDED');
    expect(JSON.parse(result.output!)).toMatchObject({ error: { Error: DATA_LIMIT } });
  });
});
