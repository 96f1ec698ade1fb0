/**
 * The shared executor of synthesized definitions (test/asl/execute.ts) is as strict as AWS: an
 * error of the interpreter's own path or intrinsic processing fails the execution with
 * `States.Runtime`, which no Retry or Catch handles, "A retry or catch on States.ALL won't catch
 * States.Runtime errors." (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
 * aws-local-stepfunctions alone retries and catches the JavaScript error of a failing intrinsic
 * (test/asl/aws-local-stepfunctions-leniency.test.ts); local/aws/stepfunctions-errors.ts corrects it.
 */
import { executeDefinition, stepError } from './execute';
import { AslDefinition } from '../util';

const RETRY_AND_CATCH_ALL = {
  Retry: [{ ErrorEquals: ['States.ALL'], MaxAttempts: 1, IntervalSeconds: 0 }],
  Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Caught' }],
};
const CAUGHT = { Type: 'Pass', End: true };

function task(fields: Record<string, unknown>): AslDefinition {
  return {
    StartAt: 'Work',
    States: {
      Work: { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', ...fields, ...RETRY_AND_CATCH_ALL, End: true },
      Caught: CAUGHT,
    },
  };
}

function passInBranch(fields: Record<string, unknown>): AslDefinition {
  return {
    StartAt: 'Fan',
    States: {
      Fan: { Type: 'Parallel', Branches: [{ StartAt: 'Shape', States: { Shape: { Type: 'Pass', ...fields, End: true } } }], ...RETRY_AND_CATCH_ALL, End: true },
      Caught: CAUGHT,
    },
  };
}

const INPUT = { text: 'not json', object: { a: 1 } };
const answer = () => ({ body: 'not json!' });
const run = (definition: AslDefinition, work: (input: any) => unknown = answer) =>
  executeDefinition(definition, INPUT, { Work: work }, { record: false, name: 'StrictInterpreterTest' });

describe('an intrinsic function that fails is States.Runtime: never retried, never caught', () => {
  test.each([
    ['States.StringToJson of text that is not JSON, in Parameters', task({ Parameters: { 'a.$': 'States.StringToJson($.text)' } }), 0],
    ['States.StringToJson of text that is not JSON, in ResultSelector', task({ ResultSelector: { 'a.$': 'States.StringToJson($.body)' } }), 1],
    ['States.Base64Decode of text that is not base64, in ResultSelector', task({ ResultSelector: { 'a.$': 'States.Base64Decode($.body)' } }), 1],
    ['States.StringToJson in a Pass state of a Parallel branch', passInBranch({ Parameters: { 'a.$': 'States.StringToJson($.text)' } }), 0],
  ])('%s', async (_name, definition, calls) => {
    const result = await run(definition);
    expect(result.error?.name).toBe('States.Runtime');
    expect(result.error?.message).toMatch(/SyntaxError|InvalidCharacterError/);
    expect(result.edges.filter((edge) => /Retry|Catch/.test(edge))).toEqual([]);
    expect(result.calls.Work ?? []).toHaveLength(calls);
    expect(result.states).not.toContain('Caught');
  });

  test('a missing path stays States.Runtime (the library raises it so itself)', async () => {
    const result = await run(task({ ResultSelector: { 'a.$': '$.missing' } }));
    expect(result.error?.name).toBe('States.Runtime');
    expect(result.edges).toEqual([]);
  });
});

describe('what a Task integration throws is still the task\'s failure', () => {
  test('retried and caught by States.ALL, its name and cause in the error output', async () => {
    const result = await run(task({ ResultPath: '$.result' }), () => {
      throw stepError('Lambda.ServiceException', 'down');
    });
    expect(result.edges).toEqual(['Work: Retry 0', 'Work: Catch 0 -> Caught']);
    expect(result.output).toMatchObject({ error: { Error: 'Lambda.ServiceException', Cause: 'down' } });
  });

  test('a function that throws a SyntaxError of its own (Lambda errorType SyntaxError) is caught, as on AWS', async () => {
    const result = await run(task({}), () => JSON.parse('not json'));
    expect(result.edges).toEqual(['Work: Retry 0', 'Work: Catch 0 -> Caught']);
    expect(result.output).toMatchObject({ error: { Error: 'SyntaxError' } });
  });

  test('a task failure named States.Runtime is not caught', async () => {
    const result = await run(task({}), () => {
      throw stepError('States.Runtime', 'the execution has ended');
    });
    expect(result.error?.name).toBe('States.Runtime');
    expect(result.edges).toEqual([]);
  });
});
