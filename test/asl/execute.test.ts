/**
 * The shared executor (test/asl/execute.ts) records the edges an execution takes: the Choice rule
 * that matched (not just the state it led to), the retrier and catcher by their index.
 */
import { executeDefinition, stepError } from './execute';
import { failing, failsWith } from './producers';
import { AslDefinition } from '../util';

const definition: AslDefinition = {
  StartAt: 'Check',
  States: {
    Check: {
      Type: 'Choice',
      Choices: [
        { Variable: '$.kind', StringEquals: 'a', Next: 'Work' },
        { Or: [{ Variable: '$.kind', StringEquals: 'b' }, { Variable: '$.kind', StringMatches: 'c*' }], Next: 'Work' },
      ],
      Default: 'Done',
    },
    Work: {
      Type: 'Task',
      Resource: 'arn:aws:states:::aws-sdk:sqs:sendMessage',
      Parameters: { 'QueueUrl': 'https://sqs.us-east-1.amazonaws.com/123456789012/q', 'MessageBody.$': '$.kind' },
      ResultPath: null,
      Retry: [
        { ErrorEquals: ['Sqs.RequestThrottledException'], MaxAttempts: 1 },
        { ErrorEquals: ['Sqs.InternalError'], MaxAttempts: 2 },
      ],
      Catch: [
        { ErrorEquals: ['Sqs.QueueDoesNotExistException'], Next: 'Done' },
        { ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Handle' },
      ],
      Next: 'Done',
    },
    Handle: { Type: 'Pass', Next: 'Done' },
    Done: { Type: 'Succeed' },
  },
};

const run = (input: unknown, work = (() => ({})) as (input: any) => unknown) =>
  executeDefinition(definition, input, { Work: work }, { record: false });

describe('executeDefinition', () => {
  test('records the Choice rule that matched, among rules leading to the same state, and the Next taken', async () => {
    expect((await run({ kind: 'a' })).edges).toEqual(['Check: Choice 0 -> Work', 'Work: Next -> Done']);
    expect((await run({ kind: 'cc' })).edges).toEqual(['Check: Choice 1 -> Work', 'Work: Next -> Done']);
    expect((await run({ kind: 'z' })).edges).toEqual(['Check: Default -> Done']);
  });

  test('records retries and catches by the index of the retrier and catcher that handled the error', async () => {
    const retried = await run({ kind: 'a' }, failing(2, () => stepError('Sqs.InternalError'), () => ({})));
    expect(retried.edges).toEqual(['Check: Choice 0 -> Work', 'Work: Retry 1', 'Work: Retry 1', 'Work: Next -> Done']);
    const caught = await run({ kind: 'a' }, failsWith('Sqs.KmsAccessDenied', 'denied'));
    expect(caught.edges).toEqual(['Check: Choice 0 -> Work', 'Work: Catch 1 -> Handle', 'Handle: Next -> Done']);
    expect(caught.calls.Work).toHaveLength(1);
  });

  test('a Choice whose variable is absent fails the execution (States.Runtime, as on AWS) and counts no edge', async () => {
    const result = await run({ other: 1 });
    expect(result.error?.name).toBe('States.Runtime');
    expect(result.edges).toEqual([]);
  });

  test('a Task without a handler fails (here caught by States.ALL) and is listed as unexpected', async () => {
    const result = await executeDefinition(definition, { kind: 'a' }, {}, { record: false });
    expect(result.unexpected).toEqual(['Work']);
    expect(result.edges).toContain('Work: Catch 1 -> Handle');
  });

  test('a JSONata state is refused, not run without its expressions', async () => {
    const jsonata = { ...definition, States: { ...definition.States, Handle: { Type: 'Pass', QueryLanguage: 'JSONata', Output: '{% $states.input %}', Next: 'Done' } } };
    await expect(executeDefinition(jsonata, { kind: 'z' }, {}, { record: false })).rejects.toThrow(/Handle uses JSONata/);
  });
});
