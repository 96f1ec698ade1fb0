/**
 * submitJobTask (JSONPath) and submitJobTaskJsonata (JSONata): the rendered state, the callback
 * integration, the timeout, and whole main workflows validated with asl-validator (4.x validates
 * JSONata states: QueryLanguage, Arguments, Output, Assign and `{% %}` expressions).
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator, SubmitJobTaskJsonataProps } from '../../src';
import { AslDefinition, aslErrors, definitionOf, logicalIdOf, resourcesGranted, statementsOfRole, testApp, testStack } from '../util';

const WAIT_FOR_TASK_TOKEN = 'arn:aws:states:::sqs:sendMessage.waitForTaskToken';

interface Fixture {
  readonly stack: Stack;
  readonly orchestrator: AsyncExternalApiOrchestrator;
}

function fixture(): Fixture {
  const stack = testStack(testApp());
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
  });
  return { stack, orchestrator };
}

/** Synthesizes the stack and returns the definition of `machine`. */
function synthDefinition(f: Fixture, machine: sfn.StateMachine): { template: Template; definition: AslDefinition } {
  const template = Template.fromStack(f.stack);
  return { template, definition: definitionOf(template, logicalIdOf(f.stack, machine)) };
}

function queueUrlPlaceholder(f: Fixture): string {
  return `PLACEHOLDER-${logicalIdOf(f.stack, f.orchestrator.consumer.queue)}`;
}

describe('submitJobTask (JSONPath)', () => {
  test('renders Parameters with the task token, the request id and the payload, waits for the token, times out after callbackTimeout', () => {
    // GIVEN
    const f = fixture();
    const submit = f.orchestrator.submitJobTask(f.stack, 'Submit', {
      payload: sfn.TaskInput.fromJsonPathAt('$.order'),
      requestId: sfn.JsonPath.stringAt('$.orderId'),
      resultPath: '$.vendor',
      heartbeatTimeout: Duration.minutes(5),
    });
    const main = new sfn.StateMachine(f.stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(submit) });
    f.orchestrator.registerWorkflow(main);

    // WHEN
    const { definition } = synthDefinition(f, main);

    // THEN
    const state = definition.States.Submit;
    expect(state).toMatchObject({
      Type: 'Task',
      Resource: WAIT_FOR_TASK_TOKEN,
      TimeoutSeconds: 1800,
      HeartbeatSeconds: 300,
      ResultPath: '$.vendor',
      Parameters: {
        QueueUrl: queueUrlPlaceholder(f),
        MessageBody: {
          'taskToken.$': '$$.Task.Token',
          'requestId.$': '$.orderId',
          'payload.$': '$.order',
          'attempt': 1,
        },
      },
    });
    expect(state.QueryLanguage).toBeUndefined();
    expect(state.Arguments).toBeUndefined();
    expect(definition.QueryLanguage).toBeUndefined();
    expect(aslErrors(definition)).toEqual([]);
  });

  test('a new UUID per run is the default request id', () => {
    // GIVEN
    const f = fixture();
    const submit = f.orchestrator.submitJobTask(f.stack, 'Submit', { payload: sfn.TaskInput.fromObject({ sku: 'A-1' }) });
    const main = new sfn.StateMachine(f.stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(submit) });
    f.orchestrator.registerWorkflow(main);

    // WHEN
    const { definition } = synthDefinition(f, main);

    // THEN
    expect(definition.States.Submit.Parameters.MessageBody).toEqual({
      'taskToken.$': '$$.Task.Token',
      'requestId.$': 'States.UUID()',
      'payload': { sku: 'A-1' },
      'attempt': 1,
    });
  });
});

describe('submitJobTaskJsonata', () => {
  /** A JSONata main workflow: submit, keep the job id in a variable, process, and a catch per error. */
  function jsonataWorkflow(f: Fixture, props: Partial<SubmitJobTaskJsonataProps> = {}): sfn.StateMachine {
    const submit = f.orchestrator.submitJobTaskJsonata(f.stack, 'Submit', {
      payload: '{% $states.input.order %}',
      requestId: '{% $states.input.orderId %}',
      outputs: '{% $merge([$states.input, { "vendor": $states.result }]) %}',
      assign: { jobId: '{% $states.result.jobId %}' },
      ...props,
    });
    submit.addCatch(sfn.Fail.jsonata(f.stack, 'TimedOut', { error: 'VendorTimedOut' }), { errors: [sfn.Errors.TIMEOUT] });
    submit.addCatch(sfn.Fail.jsonata(f.stack, 'JobFailed', { error: AsyncExternalApiOrchestrator.ERROR_VENDOR_JOB_FAILED }), {
      errors: [AsyncExternalApiOrchestrator.ERROR_VENDOR_JOB_FAILED],
    });
    submit.addCatch(sfn.Fail.jsonata(f.stack, 'RequestFailed', { error: AsyncExternalApiOrchestrator.ERROR_VENDOR_REQUEST_FAILED }), {
      errors: [AsyncExternalApiOrchestrator.ERROR_VENDOR_REQUEST_FAILED],
    });
    const processResult = sfn.Pass.jsonata(f.stack, 'ProcessResult', {
      outputs: { orderId: '{% $states.input.orderId %}', jobId: '{% $jobId %}', result: '{% $states.input.vendor.result %}' },
    });
    const main = new sfn.StateMachine(f.stack, 'Main', {
      queryLanguage: sfn.QueryLanguage.JSONATA,
      definitionBody: sfn.DefinitionBody.fromChainable(submit.next(processResult)),
    });
    f.orchestrator.registerWorkflow(main);
    return main;
  }

  test('renders Arguments with the JSONata task token, request id and payload, waits for the token, times out after callbackTimeout', () => {
    // GIVEN
    const f = fixture();
    const main = jsonataWorkflow(f, { heartbeatTimeout: Duration.minutes(5) });

    // WHEN
    const { definition } = synthDefinition(f, main);

    // THEN
    expect(definition.QueryLanguage).toBe('JSONata');
    const state = definition.States.Submit;
    expect(state).toMatchObject({
      Type: 'Task',
      Resource: WAIT_FOR_TASK_TOKEN,
      TimeoutSeconds: 1800,
      HeartbeatSeconds: 300,
      Arguments: {
        QueueUrl: queueUrlPlaceholder(f),
        MessageBody: {
          taskToken: '{% $states.context.Task.Token %}',
          requestId: '{% $states.input.orderId %}',
          payload: '{% $states.input.order %}',
          attempt: 1,
        },
      },
      Output: '{% $merge([$states.input, { "vendor": $states.result }]) %}',
      Assign: { jobId: '{% $states.result.jobId %}' },
    });
    // No JSONPath fields in a JSONata state; the top-level QueryLanguage covers the state.
    for (const field of ['Parameters', 'ResultPath', 'ResultSelector', 'InputPath', 'OutputPath', 'QueryLanguage']) {
      expect(state[field]).toBeUndefined();
    }
    expect(JSON.stringify(state)).not.toContain('.$"');
  });

  test('the JSONata main workflow synthesizes and passes asl-validator, with a catch per error name', () => {
    // GIVEN
    const f = fixture();
    const main = jsonataWorkflow(f);

    // WHEN
    const { definition } = synthDefinition(f, main);

    // THEN
    expect(aslErrors(definition)).toEqual([]);
    expect(definition.States.Submit.Catch.map((c: { ErrorEquals: string[] }) => c.ErrorEquals)).toEqual([
      ['States.Timeout'], ['VendorJobFailed'], ['VendorRequestFailed'],
    ]);
    expect(definition.States.Submit.Next).toBe('ProcessResult');
  });

  test('asl-validator catches a broken JSONata state (the check is not vacuous)', () => {
    // GIVEN
    const f = fixture();
    const { definition } = synthDefinition(f, jsonataWorkflow(f));

    // WHEN: a JSONPath field in a JSONata state
    const broken = JSON.parse(JSON.stringify(definition));
    broken.States.Submit.ResultPath = '$.vendor';

    // THEN
    expect(aslErrors(broken)).not.toEqual([]);
  });

  test('a new UUID per run is the default request id, and the state output defaults to the result', () => {
    // GIVEN
    const f = fixture();
    const submit = f.orchestrator.submitJobTaskJsonata(f.stack, 'Submit', { payload: '{% $states.input %}' });
    const main = new sfn.StateMachine(f.stack, 'Main', {
      queryLanguage: sfn.QueryLanguage.JSONATA,
      definitionBody: sfn.DefinitionBody.fromChainable(submit),
    });
    f.orchestrator.registerWorkflow(main);

    // WHEN
    const { definition } = synthDefinition(f, main);

    // THEN
    expect(definition.States.Submit.Arguments.MessageBody).toEqual({
      taskToken: '{% $states.context.Task.Token %}',
      requestId: '{% $uuid() %}',
      payload: '{% $states.input %}',
      attempt: 1,
    });
    expect(definition.States.Submit.Output).toBeUndefined();
    expect(definition.States.Submit.Assign).toBeUndefined();
    expect(definition.States.Submit.HeartbeatSeconds).toBeUndefined();
    expect(definition.States.Submit.Comment).toContain('cdk-async-external-api');
    expect(aslErrors(definition)).toEqual([]);
  });

  test('payloadInput: a TaskInput object whose strings are JSONata expressions', () => {
    // GIVEN
    const f = fixture();
    const submit = f.orchestrator.submitJobTaskJsonata(f.stack, 'Submit', {
      payloadInput: sfn.TaskInput.fromObject({ sku: '{% $states.input.sku %}', quantity: 2, tags: ['a', 'b'] }),
      requestId: 'order-42',
      comment: 'Submit the order',
    });
    const main = new sfn.StateMachine(f.stack, 'Main', {
      queryLanguage: sfn.QueryLanguage.JSONATA,
      definitionBody: sfn.DefinitionBody.fromChainable(submit),
    });
    f.orchestrator.registerWorkflow(main);

    // WHEN
    const { definition } = synthDefinition(f, main);

    // THEN
    expect(definition.States.Submit.Comment).toBe('Submit the order');
    expect(definition.States.Submit.Arguments.MessageBody).toEqual({
      taskToken: '{% $states.context.Task.Token %}',
      requestId: 'order-42',
      payload: { sku: '{% $states.input.sku %}', quantity: 2, tags: ['a', 'b'] },
      attempt: 1,
    });
    expect(aslErrors(definition)).toEqual([]);
  });

  test('in a JSONPath workflow the state declares QueryLanguage JSONata itself', () => {
    // GIVEN
    const f = fixture();
    const submit = f.orchestrator.submitJobTaskJsonata(f.stack, 'Submit', { payload: '{% $states.input.order %}' });
    const main = new sfn.StateMachine(f.stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(submit.next(new sfn.Pass(f.stack, 'After', { resultPath: '$.after' }))),
    });
    f.orchestrator.registerWorkflow(main);

    // WHEN
    const { definition } = synthDefinition(f, main);

    // THEN
    expect(definition.QueryLanguage).toBeUndefined();
    expect(definition.States.Submit).toMatchObject({ QueryLanguage: 'JSONata', Resource: WAIT_FOR_TASK_TOKEN, TimeoutSeconds: 1800 });
    expect(definition.States.After.QueryLanguage).toBeUndefined();
    expect(aslErrors(definition)).toEqual([]);
  });

  test('the main workflow may send to the request queue', () => {
    // GIVEN
    const f = fixture();
    const main = jsonataWorkflow(f);

    // WHEN
    const template = Template.fromStack(f.stack);

    // THEN
    const statements = statementsOfRole(template, f.stack, main.role);
    expect(resourcesGranted(statements, 'sqs:SendMessage')).toContainEqual(f.stack.resolve(f.orchestrator.consumer.queue.queueArn));
  });

  test('synthesis fails when the workflow using it was not registered', () => {
    // GIVEN
    const f = fixture();
    const submit = f.orchestrator.submitJobTaskJsonata(f.stack, 'Submit', { payload: '{% $states.input %}' });
    new sfn.StateMachine(f.stack, 'Main', {
      queryLanguage: sfn.QueryLanguage.JSONATA,
      definitionBody: sfn.DefinitionBody.fromChainable(submit),
    });

    // THEN
    expect(() => Template.fromStack(f.stack)).toThrow(/no workflow was registered/);
  });

  describe('refuses at synthesis', () => {
    test.each<[string, Partial<SubmitJobTaskJsonataProps>, RegExp]>([
      ['neither payload nor payloadInput', {}, /exactly one of payload .* and payloadInput/],
      ['both payload and payloadInput', { payload: '{% $states.input %}', payloadInput: sfn.TaskInput.fromObject({}) }, /exactly one/],
      ['a payload that is not a JSONata expression', { payload: '$.order' }, /payload must be a JSONata expression/],
      ['a JSONPath payloadInput', { payloadInput: sfn.TaskInput.fromJsonPathAt('$.order') }, /payload uses JSONPath/],
      ['a payloadInput object with a JSONPath field', { payloadInput: sfn.TaskInput.fromObject({ sku: sfn.JsonPath.stringAt('$.sku') }) }, /payload uses JSONPath/],
      ['a JSONPath request id', { payload: '{% $states.input %}', requestId: '$.orderId' }, /requestId .* looks like JSONPath/],
      ['a JsonPath.stringAt request id', { payload: '{% $states.input %}', requestId: sfn.JsonPath.stringAt('$.orderId') }, /requestId .* looks like JSONPath/],
      ['an intrinsic request id', { payload: '{% $states.input %}', requestId: sfn.JsonPath.uuid() }, /requestId .* looks like JSONPath/],
    ])('%s', (_name, props, error) => {
      // GIVEN
      const f = fixture();

      // THEN
      expect(() => f.orchestrator.submitJobTaskJsonata(f.stack, 'Submit', props as SubmitJobTaskJsonataProps)).toThrow(error);
    });
  });
});
