import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkReservedConcurrency, functionNameOf, LocalLambda } from '../../local/aws/lambda';
import type { LocalEndpoints, ResolvedResource } from '../../local/types';

/**
 * A handler that reports what it sees. `GREETING` is read at module load, as the real handlers
 * read their configuration: two functions sharing one module instance would see the same value.
 */
const ECHO_HANDLER = `
const { threadId } = require('node:worker_threads');
const greeting = process.env.GREETING;
let served = 0;
exports.handler = async (event, context) => {
  served++;
  if (event && event.log) {
    console.log(JSON.stringify({ level: 'INFO', message: event.log }));
  }
  // When the handler ran and slept, by the worker's clock: tests compare these recorded times
  // instead of the wall time of the whole call, which a loaded machine stretches.
  const handledAt = Date.now();
  if (event && event.sleepMs) {
    await new Promise((resolve) => setTimeout(resolve, event.sleepMs));
  }
  const sleptUntil = Date.now();
  if (event && event.fail) {
    const err = new Error(event.fail);
    err.name = 'VendorUnavailable';
    throw err;
  }
  return {
    greeting,
    threadId,
    served,
    handledAt,
    sleptUntil,
    event,
    functionName: context.functionName,
    awsRequestId: context.awsRequestId,
    invokedFunctionArn: context.invokedFunctionArn,
    memoryLimitInMB: context.memoryLimitInMB,
    remainingMs: context.getRemainingTimeInMillis(),
    env: {
      AWS_REGION: process.env.AWS_REGION,
      AWS_DEFAULT_REGION: process.env.AWS_DEFAULT_REGION,
      AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY,
      AWS_LAMBDA_FUNCTION_NAME: process.env.AWS_LAMBDA_FUNCTION_NAME,
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      AWS_ENDPOINT_URL_SQS: process.env.AWS_ENDPOINT_URL_SQS,
      AWS_ENDPOINT_URL_DYNAMODB: process.env.AWS_ENDPOINT_URL_DYNAMODB,
      AWS_ENDPOINT_URL_SFN: process.env.AWS_ENDPOINT_URL_SFN,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER,
      POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL,
      MAX_ITEMS: process.env.MAX_ITEMS,
      LEAK_CHECK: process.env.LEAK_CHECK,
    },
  };
};
`;

/** Fails at module load, as a handler missing a required variable does. */
const BROKEN_INIT_HANDLER = `
throw new Error('Environment variable STATE_MACHINE_ARN is required but not set');
`;

/** Crashes its execution environment from a timer (an uncaught exception outside the handler's promise). */
const CRASHING_HANDLER = `
exports.handler = () => new Promise(() => {
  setTimeout(() => { throw new TypeError('late crash'); }, 10);
});
`;

const endpoints: LocalEndpoints = {
  sqs: 'http://127.0.0.1:1001',
  dynamodb: 'http://127.0.0.1:1002',
  sfn: 'http://127.0.0.1:1003',
  secretsManager: 'http://127.0.0.1:1004',
};

function fn(logicalId: string, properties: Record<string, any>): ResolvedResource {
  return { logicalId, type: 'AWS::Lambda::Function', properties: { Handler: 'index.handler', Runtime: 'nodejs20.x', ...properties }, metadata: {} };
}

let dir: string;
let echoDir: string;
let lambda: LocalLambda;
const logFile = () => path.join(dir, 'lambda.log');

function writeHandler(name: string, code: string): string {
  const codeDir = path.join(dir, name);
  fs.mkdirSync(codeDir, { recursive: true });
  fs.writeFileSync(path.join(codeDir, 'index.js'), code);
  return codeDir;
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'local-lambda-'));
  echoDir = writeHandler('echo', ECHO_HANDLER);
  process.env.LEAK_CHECK = 'host';
  lambda = new LocalLambda({
    functions: [
      // Same code, different environments: each needs its own module instance.
      { resource: fn('FnA', { FunctionName: 'fn-a', Timeout: 5, MemorySize: 256, Environment: { Variables: { GREETING: 'hello from A', MAX_ITEMS: 3 } } }), codeDir: echoDir, aliases: ['FnARef'] },
      { resource: fn('FnB', { FunctionName: 'fn-b', Timeout: 5, Environment: { Variables: { GREETING: 'hello from B' } } }), codeDir: echoDir },
      { resource: fn('Reserved', { FunctionName: 'reserved', Timeout: 5, ReservedConcurrentExecutions: 2 }), codeDir: echoDir },
      { resource: fn('Slow', { FunctionName: 'slow', Timeout: 1 }), codeDir: echoDir },
      { resource: fn('Broken', { FunctionName: 'broken' }), codeDir: writeHandler('broken', BROKEN_INIT_HANDLER) },
      { resource: fn('Crashing', { FunctionName: 'crashing' }), codeDir: writeHandler('crashing', CRASHING_HANDLER) },
      { resource: fn('Unnamed', {}), codeDir: echoDir },
    ],
    endpoints,
    extraEnv: { AWS_ENDPOINT_URL_SFN: 'http://127.0.0.1:2003' },
    logFile: logFile(),
  });
});

afterAll(async () => {
  await lambda?.stop();
  delete process.env.LEAK_CHECK;
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('functionNameOf', () => {
  test.each([
    ['fn-a', 'fn-a'],
    ['fn-a:live', 'fn-a'],
    ['arn:aws:lambda:us-east-1:000000000000:function:fn-a', 'fn-a'],
    ['arn:aws:lambda:us-east-1:000000000000:function:fn-a:$LATEST', 'fn-a'],
    ['000000000000:function:fn-a', 'fn-a'],
  ])('%s -> %s', (input, expected) => {
    expect(functionNameOf(input)).toBe(expected);
  });
});

test('each function gets its own module instance and environment', async () => {
  const [a, b] = await Promise.all([lambda.invoke('fn-a', { n: 1 }), lambda.invoke('fn-b', { n: 2 })]) as any[];
  expect(a.greeting).toBe('hello from A');
  expect(b.greeting).toBe('hello from B');
  expect(a.threadId).not.toBe(b.threadId);
  expect(a.event).toEqual({ n: 1 });
  expect(a.env).toEqual({
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'local',
    AWS_SECRET_ACCESS_KEY: 'local',
    AWS_LAMBDA_FUNCTION_NAME: 'fn-a',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
    AWS_ENDPOINT_URL_SQS: endpoints.sqs,
    AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb,
    // extraEnv wins over everything.
    AWS_ENDPOINT_URL_SFN: 'http://127.0.0.1:2003',
    AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoints.secretsManager,
    POWERTOOLS_LOG_LEVEL: 'WARN',
    // Template numbers arrive as strings, as Lambda passes them.
    MAX_ITEMS: '3',
    // Nothing leaks from the host process's environment.
  });
  expect(b.env.AWS_LAMBDA_FUNCTION_NAME).toBe('fn-b');
  expect(b.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE).toBe('128');
});

test('passes a Lambda-like context', async () => {
  const result = await lambda.invoke('arn:aws:lambda:us-east-1:000000000000:function:fn-a:live', {}) as any;
  expect(result.functionName).toBe('fn-a');
  expect(result.invokedFunctionArn).toBe('arn:aws:lambda:us-east-1:000000000000:function:fn-a:live');
  expect(result.memoryLimitInMB).toBe('256');
  expect(result.awsRequestId).toMatch(/^[0-9a-f-]{36}$/);
  expect(result.remainingMs).toBeGreaterThan(4000);
  expect(result.remainingMs).toBeLessThanOrEqual(5000);
});

test('events and results cross as JSON, as through the Lambda API', async () => {
  const result = await lambda.invoke('fn-a', { when: new Date(0), skip: undefined }) as any;
  expect(result.event).toEqual({ when: '1970-01-01T00:00:00.000Z' });
  await expect(lambda.invoke('fn-a', { big: BigInt(1) })).rejects.toMatchObject({ name: 'InvalidRequestContentException' });
});

test('answers to its name, ARN, logical id and aliases', async () => {
  for (const name of ['fn-a', 'arn:aws:lambda:us-east-1:000000000000:function:fn-a', 'FnA', 'FnARef']) {
    expect((await lambda.invoke(name, {}) as any).greeting).toBe('hello from A');
  }
  // A function without FunctionName is known by its logical id.
  expect((await lambda.invoke('Unnamed', {}) as any).functionName).toBe('Unnamed');
  await expect(lambda.invoke('nope', {})).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
});

test('reuses a warm execution environment for sequential invocations', async () => {
  const before = lambda.stats('fn-b');
  const first = await lambda.invoke('fn-b', {}) as any;
  const second = await lambda.invoke('fn-b', {}) as any;
  expect(second.threadId).toBe(first.threadId);
  expect(second.served).toBe(first.served + 1);
  expect(lambda.stats('fn-b').coldStarts).toBe(before.coldStarts);
});

test('runs parallel invocations in separate environments without blocking', async () => {
  const before = lambda.stats('fn-b').coldStarts;
  const results = await Promise.all([1, 2, 3].map(() => lambda.invoke('fn-b', { sleepMs: 400 }))) as any[];
  // The sleeps overlapped: three environments, not one after another (each began before any ended).
  expect(Math.max(...results.map((r) => r.handledAt))).toBeLessThan(Math.min(...results.map((r) => r.sleptUntil)));
  expect(new Set(results.map((r) => r.threadId)).size).toBe(3);
  const stats = lambda.stats('fn-b');
  expect(stats.maxConcurrent).toBeGreaterThanOrEqual(3);
  // One environment was warm already: two cold starts.
  expect(stats.coldStarts).toBe(before + 2);
  expect(stats.idle).toBe(3);
  expect(stats.busy).toBe(0);

  // A long invocation does not hold up another one of the same function.
  const slow = lambda.invoke('fn-b', { sleepMs: 800 });
  const quick = await lambda.invoke('fn-b', {}) as any;
  // The quick one was handled (in another environment) while the slow one still slept.
  expect(quick.threadId).not.toBe((await slow as any).threadId);
  expect(quick.handledAt).toBeLessThan((await slow as any).sleptUntil);
});

test('throttles beyond ReservedConcurrentExecutions', async () => {
  const outcomes = await Promise.allSettled([1, 2, 3].map(() => lambda.invoke('reserved', { sleepMs: 300 })));
  expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(2);
  const rejected = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
  expect(rejected).toHaveLength(1);
  expect(rejected[0].reason).toMatchObject({ name: 'TooManyRequestsException' });
  const stats = lambda.stats('reserved');
  expect(stats).toMatchObject({ maxConcurrent: 2, throttles: 1, invocations: 2, coldStarts: 2 });
  // Once one finishes, the next invocation is served.
  await expect(lambda.invoke('reserved', {})).resolves.toMatchObject({ functionName: 'reserved' });
});

test('times out after the function Timeout and resets the environment', async () => {
  const started = Date.now();
  const error: any = await lambda.invoke('slow', { sleepMs: 5000 }).catch((e) => e);
  const elapsed = Date.now() - started;
  expect(error).toBeInstanceOf(Error);
  expect(error.name).toBe('Sandbox.Timedout');
  expect(error.message).toBe('Task timed out after 1.00 seconds');
  expect(elapsed).toBeGreaterThanOrEqual(950);
  // Ended by the 1 s timeout, not by the handler's 5 s sleep (the error above says which).
  expect(elapsed).toBeLessThan(5000);
  // The timed-out environment is gone: the next invocation cold-starts a fresh module.
  const next = await lambda.invoke('slow', {}) as any;
  expect(next.served).toBe(1);
  expect(lambda.stats('slow')).toMatchObject({ timeouts: 1, errors: 1, coldStarts: 2, idle: 1 });
});

test('rejects with the handler error name and message, keeping the environment', async () => {
  const first = await lambda.invoke('fn-b', {}) as any;
  const error: any = await lambda.invoke('fn-b', { fail: 'vendor said no' }).catch((e) => e);
  expect(error).toMatchObject({ name: 'VendorUnavailable', message: 'vendor said no', errorType: 'VendorUnavailable', errorMessage: 'vendor said no' });
  expect(error.trace.join('\n')).toContain('index.js');
  // A handler error does not reset the environment.
  const after = await lambda.invoke('fn-b', {}) as any;
  expect(after.threadId).toBe(first.threadId);
  expect(lambda.stats('fn-b').errors).toBe(1);
});

test('reports init errors and crashes, then starts a fresh environment', async () => {
  await expect(lambda.invoke('broken', {})).rejects.toMatchObject({
    name: 'Error',
    message: 'Environment variable STATE_MACHINE_ARN is required but not set',
  });
  await expect(lambda.invoke('broken', {})).rejects.toThrow(/STATE_MACHINE_ARN/);
  expect(lambda.stats('broken')).toMatchObject({ errors: 2, coldStarts: 2, idle: 0 });

  await expect(lambda.invoke('crashing', {})).rejects.toMatchObject({ name: 'TypeError', message: 'late crash' });
  expect(lambda.stats('crashing')).toMatchObject({ errors: 1, idle: 0 });
});

test('writes handler output and one report line per invocation to the log file', async () => {
  await lambda.invoke('fn-a', { log: 'visible-in-log-file' });
  // Worker stdout reaches the parent asynchronously.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const log = fs.readFileSync(logFile(), 'utf8');
  expect(log).toContain('visible-in-log-file');
  const reports = log.split('\n').filter((line) => line.includes('"platform.report"')).map((line) => JSON.parse(line));
  expect(reports.some((r) => r.function === 'slow' && r.status === 'timeout')).toBe(true);
  expect(reports.some((r) => r.function === 'fn-a' && r.status === 'success' && typeof r.initDurationMs === 'number')).toBe(true);
});

test('refuses invocations once stopped', async () => {
  const stopped = new LocalLambda({ functions: [{ resource: fn('X', { FunctionName: 'x' }), codeDir: echoDir }], endpoints });
  const inFlight = stopped.invoke('x', { sleepMs: 2000 }).catch((e) => e);
  await new Promise((resolve) => setTimeout(resolve, 300));
  await stopped.stop();
  expect(await inFlight).toMatchObject({ name: 'ServiceException' });
  await expect(stopped.invoke('x', {})).rejects.toMatchObject({ name: 'ServiceException' });
});

/** The real bundle (`npm test` runs `npx projen bundle` first): it loads and runs in a Worker. */
const dispatcherBundle = path.join(__dirname, '..', '..', 'assets', 'rate-controlled-queue-consumer', 'dispatcher.lambda');
test('runs the real bundled dispatcher handler', async () => {
  expect(fs.existsSync(path.join(dispatcherBundle, 'index.js'))).toBe(true);
  const real = new LocalLambda({
    functions: [{
      resource: fn('Dispatcher', {
        FunctionName: 'dispatcher',
        Timeout: 10,
        Environment: {
          Variables: {
            STATE_MACHINE_ARN: 'arn:aws:states:us-east-1:000000000000:stateMachine:dispatch',
            REQUESTS_PER_SECOND: '5',
            PACER_TABLE_NAME: 'pacer',
            MAX_PACING_WAIT_MS: '1000',
            CORRELATION_TTL_SECONDS: '3600',
            DEAD_LETTER_QUEUE_URL: `${endpoints.sqs}/000000000000/dlq`,
          },
        },
      }),
      codeDir: dispatcherBundle,
    }],
    endpoints,
  });
  try {
    // An empty batch touches no AWS service: this checks the bundle's cold start and handler wiring.
    await expect(real.invoke('dispatcher', { Records: [] })).resolves.toEqual({ batchItemFailures: [] });
  } finally {
    await real.stop();
  }
});

describe('reserved concurrency the account cannot give (refused at deploy time, as Lambda refuses it)', () => {
  test('an account with the usual quota (1000) may reserve up to 900; a new account (quota 10) nothing', () => {
    const reserving = [fn('A', { ReservedConcurrentExecutions: 1 }), fn('B', {})];
    expect(() => checkReservedConcurrency(reserving)).not.toThrow();
    expect(() => checkReservedConcurrency([fn('Big', { ReservedConcurrentExecutions: 900 })], 1000)).not.toThrow();
    expect(() => checkReservedConcurrency([fn('Big', { ReservedConcurrentExecutions: 901 })], 1000))
      .toThrow(/decreases account's UnreservedConcurrentExecution below its minimum value of \[100\]: an account with a concurrency quota of 1000 can reserve at most 900/);
    expect(() => checkReservedConcurrency(reserving, 10))
      .toThrow(/Specified ReservedConcurrentExecutions \(A: 1\) decreases account's UnreservedConcurrentExecution below its minimum value of \[10\]/);
    expect(() => checkReservedConcurrency([fn('B', {})], 10)).not.toThrow();
  });

  test('the local Lambda refuses to start such a template', () => {
    expect(() => new LocalLambda({ functions: [{ resource: fn('R', { FunctionName: 'r', ReservedConcurrentExecutions: 1 }), codeDir: echoDir }], endpoints, accountConcurrency: 10 }))
      .toThrow(expect.objectContaining({ name: 'InvalidParameterValueException' }));
  });
});
