/**
 * The JSONata executor (test/asl/jsonata-execute.ts) itself: it evaluates what Step Functions
 * evaluates, the way https://docs.aws.amazon.com/step-functions/latest/dg/transforming-data.html
 * describes it, and refuses what it does not model.
 */
import { stepError } from './execute';
import { evaluateTemplate, executeJsonataDefinition } from './jsonata-execute';
import { AslDefinition } from '../util';

const run = (definition: AslDefinition, input: unknown, handlers: Record<string, (input: any) => unknown> = {}, context: Record<string, unknown> = { Task: { Token: 'tok-1' } }) =>
  executeJsonataDefinition(definition, input, handlers, { name: 'test', record: false, context });

/** Task -> Pass, catching `Boom` into Caught. */
const TASK: AslDefinition = {
  QueryLanguage: 'JSONata',
  StartAt: 'Call',
  States: {
    Call: {
      Type: 'Task',
      Resource: 'arn:aws:states:::sqs:sendMessage.waitForTaskToken',
      Arguments: { token: '{% $states.context.Task.Token %}', id: '{% $uuid() %}', order: '{% $states.input.order %}', literal: '$.not.a.path', n: 1 },
      Output: '{% $merge([$states.input, { "got": $states.result, "before": $seen }]) %}',
      Assign: { seen: '{% $states.result.value %}' },
      Retry: [{ ErrorEquals: ['Flaky'], MaxAttempts: 2 }],
      Catch: [
        { ErrorEquals: ['Boom'], Next: 'Caught', Assign: { failure: '{% $states.errorOutput.Cause %}' } },
        { ErrorEquals: ['States.ALL'], Next: 'Caught', Output: { error: '{% $states.errorOutput.Error %}' } },
      ],
      Next: 'Decide',
    },
    Decide: {
      Type: 'Choice',
      Choices: [{ Condition: '{% $seen > 10 %}', Next: 'Big', Output: { big: '{% $seen %}' } }],
      Default: 'Small',
    },
    Big: { Type: 'Succeed' },
    Small: { Type: 'Pass', Output: { small: '{% $seen %}' }, End: true },
    Caught: { Type: 'Fail', Error: 'Caught', Cause: '{% $exists($failure) ? $failure : $states.input.error %}' },
  },
};

describe('JSONata executor', () => {
  test('evaluates Arguments with $states.input, $states.context and $uuid(), keeps literals, and Output / Assign from $states.result', async () => {
    const result = await run(TASK, { order: { sku: 'A' } }, { Call: () => ({ value: 42 }) }, { Task: { Token: 'tok-1' } });
    expect(result.error).toBeUndefined();
    const args = result.calls.Call[0];
    expect(args).toMatchObject({ token: 'tok-1', order: { sku: 'A' }, literal: '$.not.a.path', n: 1 });
    expect(args.id).toMatch(/^[0-9a-f-]{36}$/);
    // The Assign of a state is not visible to its own Output: `before` is the value before it (none).
    expect(result.edges).toEqual(['Call: Next -> Decide', 'Decide: Choice 0 -> Big']);
    expect(result.output).toEqual({ big: 42 });
    expect(result.variables).toEqual({ seen: 42 });
  });

  test('a field whose expression evaluates to nothing raises States.QueryEvaluationError, a missing input path in Arguments too', async () => {
    // `$seen` is unset while Call's Output is evaluated, so `"before": $seen` is dropped inside $merge, not an error;
    // an expression that evaluates to nothing as a whole field is.
    const missing = await run(TASK, {}, { Call: () => ({ value: 1 }) });
    expect(missing.calls.Call).toBeUndefined();
    expect(missing.edges).toEqual(['Call: Catch 1 -> Caught']);
    expect(missing.error).toMatchObject({ name: 'Caught', message: 'States.QueryEvaluationError' });
    const result = await run({ ...TASK, States: { ...TASK.States, Small: { Type: 'Pass', Output: '{% $nothing %}', End: true } } },
      { order: {} }, { Call: () => ({ value: 1 }) });
    expect(result.edges).toEqual(['Call: Next -> Decide', 'Decide: Default -> Small']);
    expect(result.error?.name).toBe('States.QueryEvaluationError');
    expect(result.error?.message).toMatch(/Small.Output/);
  });

  test('an expression error raises States.QueryEvaluationError, which the state\'s Catch matches (States.ALL)', async () => {
    // $number('x') fails in JSONata (D3030).
    const definition: AslDefinition = { ...TASK, States: { ...TASK.States, Call: { ...TASK.States.Call, Arguments: { n: '{% $number("x") %}' } } } };
    const result = await run(definition, {}, { Call: () => ({ value: 1 }) });
    expect(result.calls.Call).toBeUndefined();
    expect(result.edges).toEqual(['Call: Catch 1 -> Caught']);
    expect(result.error).toMatchObject({ name: 'Caught', message: 'States.QueryEvaluationError' });
  });

  test('evaluateTemplate: undefined and JSONata errors are States.QueryEvaluationError naming the field', async () => {
    await expect(evaluateTemplate({ a: '{% $states.input.missing %}' }, { states: { input: {} } }, 'S.Arguments'))
      .rejects.toMatchObject({ name: 'States.QueryEvaluationError', message: expect.stringContaining('S.Arguments.a') });
    await expect(evaluateTemplate('{% 1 + "a" %}', {}, 'S.Output')).rejects.toMatchObject({ name: 'States.QueryEvaluationError' });
    await expect(evaluateTemplate('{% $states.input.a %}', { states: { input: { a: null } } }, 'x')).resolves.toBeNull();
    await expect(evaluateTemplate('{% $uuid %}', {}, 'S.Output')).rejects.toMatchObject({ name: 'States.QueryEvaluationError', message: expect.stringContaining('no JSON value') });
  });

  test('Retry re-runs the task up to MaxAttempts, then Catch passes the error on with $states.errorOutput', async () => {
    let calls = 0;
    const retried = await run(TASK, { order: 1 }, { Call: () => { calls++; if (calls < 3) throw stepError('Flaky', 'again'); return { value: 1 }; } });
    expect(retried.edges).toEqual(['Call: Retry 0', 'Call: Retry 0', 'Call: Next -> Decide', 'Decide: Default -> Small']);
    expect(retried.output).toEqual({ small: 1 });

    const exhausted = await run(TASK, { order: 1 }, { Call: () => { throw stepError('Flaky', 'again'); } });
    expect(exhausted.edges).toEqual(['Call: Retry 0', 'Call: Retry 0', 'Call: Catch 1 -> Caught']);
    expect(exhausted.error).toMatchObject({ name: 'Caught', message: 'Flaky' });

    const caught = await run(TASK, { order: 1 }, { Call: () => { throw stepError('Boom', 'the cause'); } });
    expect(caught.edges).toEqual(['Call: Catch 0 -> Caught']);
    expect(caught.error).toMatchObject({ name: 'Caught', message: 'the cause' });
  });

  test('an error no Retry or Catch matches fails the execution with its name', async () => {
    const definition: AslDefinition = { ...TASK, States: { ...TASK.States, Call: { ...TASK.States.Call, Catch: [] } } };
    const result = await run(definition, { order: 1 }, { Call: () => { throw stepError('Boom', 'x'); } });
    expect(result.error?.name).toBe('Boom');
    expect(result.edges).toEqual([]);
  });

  test('a Choice Condition that is not a boolean raises States.QueryEvaluationError', async () => {
    const definition: AslDefinition = { QueryLanguage: 'JSONata', StartAt: 'C', States: { C: { Type: 'Choice', Choices: [{ Condition: '{% "yes" %}', Next: 'D' }], Default: 'D' }, D: { Type: 'Succeed' } } };
    expect((await run(definition, {})).error?.name).toBe('States.QueryEvaluationError');
  });

  test('refuses what it does not model: JSONPath states, other state types and fields', async () => {
    await expect(run({ StartAt: 'P', States: { P: { Type: 'Pass', End: true } } }, {})).rejects.toThrow(/JSONPath state/);
    await expect(run({ QueryLanguage: 'JSONata', StartAt: 'W', States: { W: { Type: 'Wait', Seconds: 1, End: true } } }, {})).rejects.toThrow(/Wait state is not modelled/);
    await expect(run({ QueryLanguage: 'JSONata', StartAt: 'T', States: { T: { Type: 'Task', Resource: 'x', Credentials: {}, End: true } } }, {})).rejects.toThrow(/Credentials not modelled/);
    await expect(run({ QueryLanguage: 'JSONata', StartAt: 'T', States: { T: { Type: 'Task', Resource: 'x', Catch: [{ ErrorEquals: ['States.TaskFailed'], Next: 'T' }], End: true } } }, {}))
      .rejects.toThrow(/States.TaskFailed is not modelled/);
  });
});
