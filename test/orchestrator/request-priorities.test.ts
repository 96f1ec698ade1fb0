/**
 * A priority per request (issue 15, item 4) on the four tasks: the message's `priority` field
 * (the JSONata form evaluated with the jsonata package) and the synth-time checks of `Priority`.
 * The tasks with a priority are synthesized and executed end to end, through the dispatcher's code
 * and the workflows, by test/orchestrator/user-task-routes.test.ts (test/asl/user-tasks.ts).
 */
import { Duration, Lazy } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator, Priority } from '../../src';
import { evaluateTemplate } from '../asl/jsonata-execute';
import { testApp, testStack } from '../util';

function fixture() {
  const stack = testStack(testApp());
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
  });
  return { stack, orchestrator };
}

describe('tasks with a priority', () => {
  // Rendered and executed in the user's workflow, through the dispatcher's code and the workflows,
  // in both query languages: test/orchestrator/user-task-routes.test.ts (no second synthesis here).
  test('JSONata: the priority the input holds; one the input lacks becomes null (normal), not a failed state', async () => {
    const priority = Priority.fromJsonata('{% $states.input.priority %}')._jsonataField('test');
    expect(priority).toBe('{% ($p := ($states.input.priority); $exists($p) ? $p : null) %}');
    expect(await evaluateTemplate({ priority }, { states: { input: { priority: 'low' } } }, 'Arguments')).toEqual({ priority: 'low' });
    expect(await evaluateTemplate({ priority }, { states: { input: {} } }, 'Arguments')).toEqual({ priority: null });
  });

  test('literals render as their name in both query languages; a JSONPath as the path', () => {
    expect([Priority.HIGH, Priority.NORMAL, Priority.LOW, Priority.of('low')].map((p) => [p._jsonPathField('t'), p._jsonataField('t')]))
      .toEqual([['high', 'high'], ['normal', 'normal'], ['low', 'low'], ['low', 'low']]);
    expect(sfn.JsonPath.isEncodedJsonPath(Priority.fromJsonPath('$.priority')._jsonPathField('t'))).toBe(true);
  });
});

describe('synth-time checks of a priority', () => {
  test('Priority.of takes high, normal and low, and refuses anything else naming the allowed values', () => {
    expect(() => Priority.of('normal')).not.toThrow();
    expect(() => Priority.of('urgent')).toThrow("Priority.of: the priority must be one of 'high', 'normal', 'low' (given \"urgent\"); or use Priority.HIGH, Priority.NORMAL, Priority.LOW");
    expect(() => Priority.of('HIGH')).toThrow(/given "HIGH"/);
    expect(() => Priority.of(Lazy.string({ produce: () => 'high' }))).toThrow(/not a token.*Priority.fromJsonPath/);
  });

  test('Priority.fromJsonPath takes a path or sfn.JsonPath.stringAt, refuses anything else', () => {
    expect(() => Priority.fromJsonPath(sfn.JsonPath.stringAt('$.p'))).not.toThrow();
    expect(() => Priority.fromJsonPath('$$.Execution.Input.priority')).not.toThrow();
    expect(() => Priority.fromJsonPath('priority')).toThrow("Priority.fromJsonPath: give a JSONPath such as '$.priority' (given 'priority'); for a literal use Priority.HIGH, Priority.NORMAL or Priority.LOW");
    expect(() => Priority.fromJsonPath('{% $states.input.priority %}')).toThrow(/give a JSONPath/);
  });

  test('Priority.fromJsonata takes an expression, refuses a path, a literal or an empty expression', () => {
    expect(() => Priority.fromJsonata('$.priority')).toThrow("Priority.fromJsonata: give a JSONata expression such as '{% $states.input.priority %}' (given '$.priority'); for a literal use Priority.HIGH, Priority.NORMAL or Priority.LOW");
    expect(() => Priority.fromJsonata('high')).toThrow(/give a JSONata expression/);
    expect(() => Priority.fromJsonata('{%  %}')).toThrow(/give a JSONata expression/);
  });

  test('a JSONPath task refuses a JSONata priority and a JSONata task a JSONPath one, naming the task and the fix', () => {
    const { stack, orchestrator } = fixture();
    expect(() => orchestrator.submitJobTask(stack, 'A', { payload: sfn.TaskInput.fromObject({}), priority: Priority.fromJsonata('{% $states.input.p %}') }))
      .toThrow("submitJobTask 'A': priority is a JSONata expression (Priority.fromJsonata), which a JSONPath state does not read: use Priority.fromJsonPath('$.priority') or a literal");
    expect(() => orchestrator.callVendorTask(stack, 'B', { path: '/x', priority: Priority.fromJsonata('{% $states.input.p %}') })).toThrow(/callVendorTask 'B': priority is a JSONata expression/);
    expect(() => orchestrator.submitJobTaskJsonata(stack, 'C', { payload: '{% $states.input %}', priority: Priority.fromJsonPath('$.p') }))
      .toThrow("submitJobTaskJsonata 'C': priority is a JSONPath (Priority.fromJsonPath), which a JSONata state does not read: use Priority.fromJsonata('{% $states.input.priority %}') or a literal");
    expect(() => orchestrator.callVendorTaskJsonata(stack, 'D', { path: '/x', priority: Priority.fromJsonPath('$.p') })).toThrow(/callVendorTaskJsonata 'D': priority is a JSONPath/);
  });
});
