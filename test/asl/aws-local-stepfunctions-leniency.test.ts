/**
 * What aws-local-stepfunctions ALONE does with the errors AWS raises as `States.Runtime` (a
 * JSONPath that points at nothing, a failing intrinsic function), which "isn't retriable, and will
 * always cause the execution to fail. A retry or catch on States.ALL won't catch States.Runtime
 * errors." (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
 *
 * Each case runs one state with a `States.ALL` retrier and catcher. Most cases the library fails
 * as AWS does; the lenient ones (a plain JavaScript error escaping an intrinsic, retried and
 * caught) are what local/aws/stepfunctions-errors.ts corrects for both our executors
 * (test/asl/strict-interpreter.test.ts). If a library upgrade changes a row, this file says so.
 *
 * This file must not load local/aws/stepfunctions-errors.ts (nor test/asl/execute.ts, which
 * does): it changes how errors answer the library in the whole jest context.
 */
import { interpreterAslValidatorDir, withCompiledSchemas } from '../../local/aws/asl-schema-cache';
import '../../local/polyfills';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { StateMachine } = require('aws-local-stepfunctions') as typeof import('aws-local-stepfunctions', { with: { 'resolution-mode': 'import' } });
// The library's own validator, its schemas compiled once for the file rather than for every case
// (local/aws/asl-schema-cache.ts: the same answers, nothing else of the library changed).
withCompiledSchemas(interpreterAslValidatorDir());

/**
 * Under jest, atob's DOMException comes from Node's own realm, shared by the test files of a jest
 * worker: an earlier file that loaded stepfunctions-errors.ts left its getters on that prototype.
 * Set them aside here, so that this file sees the library alone.
 */
const ASIDE = ['isCatchable', 'isRetryable'].map((key) => [key, Object.getOwnPropertyDescriptor(DOMException.prototype, key)] as const);
beforeAll(() => ASIDE.forEach(([key]) => delete (DOMException.prototype as any)[key]));
afterAll(() => ASIDE.forEach(([key, descriptor]) => descriptor && Object.defineProperty(DOMException.prototype, key, descriptor)));

const RETRY_AND_CATCH_ALL = {
  Retry: [{ ErrorEquals: ['States.ALL'], MaxAttempts: 1, IntervalSeconds: 0 }],
  Catch: [{ ErrorEquals: ['States.ALL'], Next: 'Caught' }],
};
const CAUGHT = { Type: 'Pass', End: true };

/** A Task state (answered with `{ body: 'not json!' }`) with the given fields. */
function task(fields: Record<string, unknown>) {
  return {
    StartAt: 'Work',
    States: {
      Work: { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', ...fields, ...RETRY_AND_CATCH_ALL, End: true },
      Caught: CAUGHT,
    },
  };
}

/** A Parallel state whose one branch is a Pass state with the given fields. */
function passInBranch(fields: Record<string, unknown>) {
  return {
    StartAt: 'Fan',
    States: {
      Fan: { Type: 'Parallel', Branches: [{ StartAt: 'Shape', States: { Shape: { Type: 'Pass', ...fields, End: true } } }], ...RETRY_AND_CATCH_ALL, End: true },
      Caught: CAUGHT,
    },
  };
}

const INPUT = { text: 'not json', object: { a: 1 }, list: [1] };

interface Outcome {
  readonly error?: string;
  readonly output?: unknown;
  readonly calls: number;
  readonly retried: number;
  readonly caught: number;
}

async function run(definition: object, input: unknown = INPUT): Promise<Outcome> {
  let calls = 0;
  const machine = new StateMachine(definition as any, { validationOptions: { checkArn: false, checkPaths: false } });
  const execution = machine.run(input as any, {
    overrides: { taskResourceLocalHandlers: { Work: async () => { calls++; return { body: 'not json!' }; } } },
  });
  let error: string | undefined;
  let output: unknown;
  try {
    output = await execution.result;
  } catch (e) {
    error = ((e as Error).cause as Error ?? e).name;
  }
  let retried = 0;
  let caught = 0;
  for await (const event of execution.eventLogs as AsyncGenerator<any>) {
    if (event.type === 'StateRetried') retried++;
    if (event.type === 'StateCaught') caught++;
  }
  return { error, output, calls, retried, caught };
}

/** What AWS does, and the library alike: the execution fails with States.Runtime, nothing retried or caught. */
const FAILS_AS_ON_AWS = { error: 'States.Runtime', retried: 0, caught: 0 };

describe('aws-local-stepfunctions agrees with AWS: States.Runtime, neither retried nor caught', () => {
  test.each([
    ['a missing path in InputPath', task({ InputPath: '$.missing' }), 0],
    ['a missing path in Parameters', task({ Parameters: { 'a.$': '$.missing' } }), 0],
    ['a missing path in ResultSelector', task({ ResultSelector: { 'a.$': '$.missing' } }), 1],
    ['a missing path in OutputPath', task({ OutputPath: '$.missing' }), 1],
    ['States.JsonMerge of a non-object', task({ Parameters: { 'a.$': 'States.JsonMerge($.text, $.object, false)' } }), 0],
    ['States.MathAdd of a non-number', task({ Parameters: { 'a.$': 'States.MathAdd($.text, 1)' } }), 0],
    ['States.Format with too few arguments', task({ Parameters: { 'a.$': "States.Format('{} {}', $.text)" } }), 0],
    ['States.Hash with an unknown algorithm', task({ Parameters: { 'a.$': "States.Hash($.text, 'SHA-3')" } }), 0],
    ['States.ArrayRange over 1000 items', task({ Parameters: { 'a.$': 'States.ArrayRange(1, 2000, 1)' } }), 0],
    ['a missing path in a Pass state of a Parallel branch', passInBranch({ Parameters: { 'a.$': '$.missing' } }), 0],
  ])('%s', async (_name, definition, calls) => {
    expect(await run(definition)).toEqual({ ...FAILS_AS_ON_AWS, calls });
  });

  test('a missing ItemsPath of a Map state', async () => {
    const definition = {
      StartAt: 'Each',
      States: {
        Each: { Type: 'Map', ItemsPath: '$.missing', Iterator: { StartAt: 'One', States: { One: { Type: 'Pass', End: true } } }, ...RETRY_AND_CATCH_ALL, End: true },
        Caught: CAUGHT,
      },
    };
    expect(await run(definition)).toEqual({ ...FAILS_AS_ON_AWS, calls: 0 });
  });

  test('a Choice rule on a missing variable', async () => {
    const definition = {
      StartAt: 'Pick',
      States: { Pick: { Type: 'Choice', Choices: [{ Variable: '$.missing', StringEquals: 'a', Next: 'Caught' }], Default: 'Caught' }, Caught: CAUGHT },
    };
    expect(await run(definition)).toEqual({ ...FAILS_AS_ON_AWS, calls: 0 });
  });
});

describe('aws-local-stepfunctions is more lenient than AWS: the JavaScript error of an intrinsic is retried and caught', () => {
  const LENIENT = { retried: 1, caught: 1 };
  test.each([
    ['States.StringToJson of text that is not JSON, in Parameters', task({ Parameters: { 'a.$': 'States.StringToJson($.text)' } }), 'SyntaxError', 0],
    ['States.StringToJson of text that is not JSON, in ResultSelector', task({ ResultSelector: { 'a.$': 'States.StringToJson($.body)' } }), 'SyntaxError', 2],
    ['States.Base64Decode of text that is not base64, in ResultSelector', task({ ResultSelector: { 'a.$': 'States.Base64Decode($.body)' } }), 'InvalidCharacterError', 2],
  ])('%s', async (_name, definition, errorName, calls) => {
    const outcome = await run(definition);
    expect(outcome).toMatchObject({ ...LENIENT, calls, error: undefined });
    // The catcher's error output names the JavaScript error (and its cause quotes the text).
    expect(outcome.output).toMatchObject({ Error: errorName });
  });

  test('States.StringToJson in a Pass state of a Parallel branch: the Parallel state catches it', async () => {
    const outcome = await run(passInBranch({ Parameters: { 'a.$': 'States.StringToJson($.text)' } }));
    expect(outcome).toMatchObject({ caught: 1, error: undefined, output: { Error: 'SyntaxError' } });
  });
});

describe('aws-local-stepfunctions where AWS does not document the outcome', () => {
  test('States.ArrayGetItem past the end of the array answers null (the AWS page names no error)', async () => {
    const outcome = await run(task({ Parameters: { 'a.$': 'States.ArrayGetItem($.list, 5)' }, ResultPath: null }));
    expect(outcome).toEqual({ calls: 1, retried: 0, caught: 0, error: undefined, output: INPUT });
  });

  test('a ResultPath into an input that is not an object: States.ResultPathMatchFailure, which a Catch may handle', async () => {
    // The Amazon States Language lists States.ResultPathMatchFailure among the errors a retrier or
    // catcher can name (https://states-language.net/spec.html#appendix-a).
    const outcome = await run(task({ ResultPath: '$.result' }), 'a string');
    expect(outcome).toMatchObject({ calls: 2, retried: 1, caught: 1, output: { Error: 'States.ResultPathMatchFailure' } });
  });
});
