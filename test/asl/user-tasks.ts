/**
 * The states the orchestrator adds to a user's own workflow (`submitJobTask`, `callVendorTask` and
 * their JSONata forms), as ASL coverage entries of their own (docs/asl-coverage.md).
 *
 * Each method adds one `.waitForTaskToken` Task state. Its edges are the `Next` it is chained to
 * and the Retry / Catch entries the user adds for the errors the method documents
 * (VendorRequestFailed, VendorJobFailed, CallbackTooLarge, States.Timeout, States.HeartbeatTimeout):
 * a misspelled or never-sent error name would leave a catcher that never matches. So each entry is
 * one canonical user workflow that catches every documented error of the task, and only the task
 * state's edges count (the user's own states are not the library's). A configuration is a set of
 * props that changes the rendered state (the default request id or one from the state, a
 * heartbeat, a body and a query, a payload expression or a TaskInput, a key, a priority). A task
 * whose priority is read at run time also catches InvalidRequestPriority, which the dispatcher's
 * check sends (test/asl/user-task-producers.ts).
 */
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { BASE_PROPS } from './configurations';
import { Edge, edgesOf } from './edges';
import { synthesizedOncePerRun } from './once-per-run';
import { AsyncExternalApiOrchestrator, Priority } from '../../src';
import { CallbackEnv } from '../../src/shared/env';
import { AslDefinition, definitionOf, logicalIdOf, testStack } from '../util';

const Errors = {
  REQUEST_FAILED: AsyncExternalApiOrchestrator.ERROR_VENDOR_REQUEST_FAILED,
  JOB_FAILED: AsyncExternalApiOrchestrator.ERROR_VENDOR_JOB_FAILED,
  TOO_LARGE: AsyncExternalApiOrchestrator.ERROR_CALLBACK_TOO_LARGE,
  /** Issue 15: the dispatcher refuses a priority read at run time that is not high, normal or low. */
  INVALID_PRIORITY: AsyncExternalApiOrchestrator.ERROR_INVALID_REQUEST_PRIORITY,
};

/** The coverage entries' names, one per method. */
export type UserTaskName = 'SubmitJobTask' | 'CallVendorTask' | 'SubmitJobTaskJsonata' | 'CallVendorTaskJsonata';

/** The name of the state each method adds in the canonical workflows. */
export const USER_TASK_STATE: Record<UserTaskName, string> = {
  SubmitJobTask: 'SubmitJob',
  CallVendorTask: 'FetchResult',
  SubmitJobTaskJsonata: 'SubmitJob',
  CallVendorTaskJsonata: 'FetchResult',
};

/** One canonical user workflow: the library's state in it, and the library's workflows of the same stack. */
export interface UserTaskConfiguration {
  readonly name: UserTaskName;
  /** e.g. `default request id`. */
  readonly configuration: string;
  /** The user's main workflow. */
  readonly definition: AslDefinition;
  /** The state the method added. */
  readonly state: string;
  /** Only that state's edges: what the coverage entry counts. */
  readonly edges: Edge[];
  readonly dispatch: AslDefinition;
  readonly vendorCall?: AslDefinition;
  /**
   * The callback processor's environment as synthesized (CloudFormation references replaced by
   * `<token>` strings), for its real `loadConfig`.
   */
  readonly callbackEnv: Record<string, string>;
}

/**
 * The orchestrator props of the canonical workflows: the shared ones, and a status field in the
 * callback body, so that a vendor's failed job fails the task (`VendorJobFailed`). It only changes
 * the callback processor's environment, not a state machine.
 */
export const USER_TASK_PROPS = { ...BASE_PROPS, webhook: { statusPath: '$.status' } };

type Build = (orchestrator: AsyncExternalApiOrchestrator, stack: import('aws-cdk-lib').Stack) => sfn.StateMachine;

/** The user's catchers: one Fail state per error (JSONPath). */
function catchEach(stack: import('aws-cdk-lib').Stack, task: sfn.TaskStateBase, errors: string[]): void {
  for (const error of errors) {
    task.addCatch(new sfn.Fail(stack, `Caught ${error}`, { error: `Main.${error}` }), { errors: [error], resultPath: '$.failure' });
  }
}

function catchEachJsonata(stack: import('aws-cdk-lib').Stack, task: sfn.TaskStateBase, errors: string[]): void {
  for (const error of errors) {
    task.addCatch(sfn.Fail.jsonata(stack, `Caught ${error}`, { error: `Main.${error}`, cause: '{% $states.input.Cause %}' }), { errors: [error] });
  }
}

const SUBMIT_ERRORS = [Errors.REQUEST_FAILED, Errors.JOB_FAILED, Errors.TOO_LARGE, sfn.Errors.TIMEOUT];
const CALL_ERRORS = [Errors.REQUEST_FAILED, sfn.Errors.TIMEOUT];

const BUILDS: Array<[UserTaskName, string, Build]> = [
  ['SubmitJobTask', 'default request id', (o, stack) => {
    const submit = o.submitJobTask(stack, 'SubmitJob', { payload: sfn.TaskInput.fromJsonPathAt('$.order'), resultPath: '$.vendor' });
    catchEach(stack, submit, SUBMIT_ERRORS);
    return mainWorkflow(stack, submit.next(new sfn.Pass(stack, 'ProcessResult', {
      parameters: { 'jobId.$': '$.vendor.jobId', 'result.$': '$.vendor.result' },
    })));
  }],
  ['SubmitJobTask', 'request id, key and priority from the state, heartbeat, retried', (o, stack) => {
    const submit = o.submitJobTask(stack, 'SubmitJob', {
      payload: sfn.TaskInput.fromJsonPathAt('$.order'),
      requestId: sfn.JsonPath.stringAt('$.orderId'),
      // A key (issue 15): the message's key and a MessageGroupId (States.Hash of the key).
      key: sfn.JsonPath.stringAt('$.sku'),
      // A priority read at run time (issue 15): the dispatcher refuses an invalid one (InvalidRequestPriority).
      priority: Priority.fromJsonPath('$.priority'),
      resultPath: '$.vendor',
      heartbeatTimeout: Duration.minutes(10),
    });
    // A stable request id makes a resubmission safe (SubmitJobTaskProps.requestId).
    submit.addRetry({ errors: [sfn.Errors.HEARTBEAT_TIMEOUT], maxAttempts: 1 });
    catchEach(stack, submit, [...SUBMIT_ERRORS, sfn.Errors.HEARTBEAT_TIMEOUT, Errors.INVALID_PRIORITY]);
    return mainWorkflow(stack, submit.next(new sfn.Pass(stack, 'ProcessResult', {
      parameters: { 'orderId.$': '$.orderId', 'jobId.$': '$.vendor.jobId', 'result.$': '$.vendor.result' },
    })));
  }],
  ['CallVendorTask', 'GET', (o, stack) => {
    const fetch = o.callVendorTask(stack, 'FetchResult', {
      path: sfn.JsonPath.format('/{}/result', sfn.JsonPath.stringAt('$.jobId')),
      resultPath: '$.fetched',
    });
    catchEach(stack, fetch, CALL_ERRORS);
    return mainWorkflow(stack, fetch.next(new sfn.Pass(stack, 'ProcessResult', {
      parameters: { 'status.$': '$.fetched.statusCode', 'result.$': '$.fetched.body', 'contentType.$': '$.fetched.headers.content-type[0]' },
    })));
  }],
  ['CallVendorTask', 'POST with a query, a body, a key and a literal priority', (o, stack) => {
    const fetch = o.callVendorTask(stack, 'FetchResult', {
      method: 'POST',
      key: sfn.JsonPath.stringAt('$.sku'),
      priority: Priority.HIGH,
      path: sfn.JsonPath.format('/{}/priority', sfn.JsonPath.stringAt('$.jobId')),
      query: sfn.TaskInput.fromObject({ notify: 'true', tags: sfn.JsonPath.listAt('$.tags') }),
      body: sfn.TaskInput.fromJsonPathAt('$.update'),
      requestId: sfn.JsonPath.format('{}-priority', sfn.JsonPath.stringAt('$.jobId')),
      resultPath: '$.fetched',
      timeout: Duration.minutes(5),
    });
    catchEach(stack, fetch, CALL_ERRORS);
    return mainWorkflow(stack, fetch.next(new sfn.Pass(stack, 'ProcessResult', {
      parameters: { 'status.$': '$.fetched.statusCode', 'result.$': '$.fetched.body' },
    })));
  }],
  ['SubmitJobTaskJsonata', 'payload expression, default request id', (o, stack) => {
    const submit = o.submitJobTaskJsonata(stack, 'SubmitJob', {
      payload: '{% $states.input.order %}',
      outputs: '{% $merge([$states.input, { "vendor": $states.result }]) %}',
      assign: { jobId: '{% $states.result.jobId %}' },
    });
    catchEachJsonata(stack, submit, SUBMIT_ERRORS);
    return mainWorkflow(stack, submit.next(sfn.Pass.jsonata(stack, 'ProcessResult', {
      outputs: { jobId: '{% $jobId %}', result: '{% $states.input.vendor.result %}' },
    })), true);
  }],
  ['SubmitJobTaskJsonata', 'payloadInput, request id, key and priority from the input, heartbeat, retried', (o, stack) => {
    const submit = o.submitJobTaskJsonata(stack, 'SubmitJob', {
      payloadInput: sfn.TaskInput.fromObject({ sku: '{% $states.input.sku %}', quantity: 2 }),
      requestId: '{% $states.input.orderId %}',
      // A key (issue 15): the message's key and a MessageGroupId ($hash of the key).
      key: '{% $states.input.sku %}',
      // A priority read at run time (issue 15): the dispatcher refuses an invalid one (InvalidRequestPriority).
      priority: Priority.fromJsonata('{% $states.input.priority %}'),
      heartbeatTimeout: Duration.minutes(10),
      assign: { jobId: '{% $states.result.jobId %}', result: '{% $states.result.result %}' },
    });
    submit.addRetry({ errors: [sfn.Errors.HEARTBEAT_TIMEOUT], maxAttempts: 1 });
    catchEachJsonata(stack, submit, [...SUBMIT_ERRORS, sfn.Errors.HEARTBEAT_TIMEOUT, Errors.INVALID_PRIORITY]);
    return mainWorkflow(stack, submit.next(sfn.Pass.jsonata(stack, 'ProcessResult', {
      outputs: { jobId: '{% $jobId %}', result: '{% $result %}' },
    })), true);
  }],
  ['CallVendorTaskJsonata', 'GET', (o, stack) => {
    const fetch = o.callVendorTaskJsonata(stack, 'FetchResult', {
      path: '{% "/" & $states.input.jobId & "/result" %}',
      outputs: '{% $merge([$states.input, { "fetched": $states.result }]) %}',
    });
    catchEachJsonata(stack, fetch, CALL_ERRORS);
    return mainWorkflow(stack, fetch.next(sfn.Pass.jsonata(stack, 'ProcessResult', {
      outputs: { status: '{% $states.input.fetched.statusCode %}', result: '{% $states.input.fetched.body %}', contentType: '{% $states.input.fetched.headers."content-type"[0] %}' },
    })), true);
  }],
  ['CallVendorTaskJsonata', 'POST with a query, a body, a key and a literal priority', (o, stack) => {
    const fetch = o.callVendorTaskJsonata(stack, 'FetchResult', {
      method: 'POST',
      key: '{% $states.input.sku %}',
      priority: Priority.LOW,
      path: '{% "/" & $states.input.jobId & "/priority" %}',
      query: sfn.TaskInput.fromObject({ notify: 'true', page: '{% $string($states.input.page) %}' }),
      body: sfn.TaskInput.fromText('{% $states.input.update %}'),
      requestId: '{% $states.input.jobId & "-priority" %}',
      assign: { status: '{% $states.result.statusCode %}', result: '{% $states.result.body %}' },
    });
    catchEachJsonata(stack, fetch, CALL_ERRORS);
    return mainWorkflow(stack, fetch.next(sfn.Pass.jsonata(stack, 'ProcessResult', {
      outputs: { status: '{% $status %}', result: '{% $result %}' },
    })), true);
  }],
];

function mainWorkflow(stack: import('aws-cdk-lib').Stack, chain: sfn.IChainable, jsonata = false): sfn.StateMachine {
  return new sfn.StateMachine(stack, 'Main', {
    queryLanguage: jsonata ? sfn.QueryLanguage.JSONATA : undefined,
    definitionBody: sfn.DefinitionBody.fromChainable(chain),
  });
}

/** Every configuration of the user tasks (or those `only` accepts), each synthesized once per jest run (synthesizedOncePerRun). */
export function userTaskConfigurations(only: (name: UserTaskName, configuration: string) => boolean = () => true): UserTaskConfiguration[] {
  const wanted = BUILDS.filter(([name, configuration]) => only(name, configuration));
  const synthesized = synthesizedOncePerRun('user-task', [__filename], wanted.map(([name, configuration, build]) =>
    [`${name} ${configuration}`, () => synthesizeUserTask(name, configuration, build)]));
  return wanted.map(([name, configuration]) => synthesized.get(`${name} ${configuration}`)!);
}

function synthesizeUserTask(name: UserTaskName, configuration: string, build: Build): UserTaskConfiguration {
  const stack = testStack();
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', USER_TASK_PROPS);
  const main = build(orchestrator, stack);
  orchestrator.registerWorkflow(main);
  const template = Template.fromStack(stack);
  const definition = definitionOf(template, logicalIdOf(stack, main));
  const state = USER_TASK_STATE[name];
  return {
    name,
    configuration,
    definition,
    state,
    edges: edgesOf(definition).filter((edge) => edge.startsWith(`${state}: `)),
    dispatch: definitionOf(template, logicalIdOf(stack, orchestrator.dispatch.stateMachine)),
    vendorCall: orchestrator.vendorCall ? definitionOf(template, logicalIdOf(stack, orchestrator.vendorCall.stateMachine)) : undefined,
    callbackEnv: callbackProcessorEnv(template),
  };
}

/** The environment of the template's callback processor function (the one with a FAILURE_STATUS_VALUES variable). */
function callbackProcessorEnv(template: Template): Record<string, string> {
  const functions = Object.values(template.findResources('AWS::Lambda::Function'))
    .map((f) => f.Properties?.Environment?.Variables as Record<string, unknown> | undefined)
    .filter((variables) => variables && CallbackEnv.FAILURE_STATUS_VALUES in variables);
  if (functions.length !== 1) {
    throw new Error(`expected one callback processor function in the template, found ${functions.length}`);
  }
  return Object.fromEntries(Object.entries(functions[0]!).map(([k, v]) => [k, typeof v === 'string' ? v : `<token ${k}>`]));
}
