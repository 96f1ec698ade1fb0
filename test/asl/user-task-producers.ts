/**
 * How a user's `submitJobTask` / `callVendorTask` state really ends, for its route tests
 * (test/orchestrator/user-task-routes.test.ts): the task's answer is produced by the rest of the
 * orchestrator, from the message the state sent, with the library's own code all the way:
 *
 *   task's MessageBody --(the dispatcher: parseRequestMessage + build*Input)--> dispatch or
 *   vendor-call workflow (executed from StartAt) --> its SendTaskFailure, or its SendTaskSuccess
 *   (vendor-call workflow), or the vendor's callback through the callback processor's real logic
 *   (processCallbackRecord, configured by loadConfig from the synthesized environment) -->
 *   SendTaskSuccess output (the task's result) or SendTaskFailure error and cause (the task's error).
 *
 * Only AWS services are answered by hand (SDK output shapes), and the two errors Step Functions
 * raises itself when nothing answers: `States.Timeout` and `States.HeartbeatTimeout`.
 */
import { GetItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { SendTaskFailureCommand, SendTaskSuccessCommand } from '@aws-sdk/client-sfn';
import type { SQSRecord } from 'aws-lambda';
import { executeDefinition, stepError, TaskHandler } from './execute';
import {
  callVendorTask, claimNew, dispatchInputFor, dynamoUpdated, sfnOk, sqsSent, VendorBehaviour, vendorCallInputFor,
} from './producers';
import { UserTaskConfiguration } from './user-tasks';
import { CallbackClients, loadConfig, processCallbackRecord } from '../../src/callback-webhook/callback-processing';
import { parseRequestMessage } from '../../src/rate-controlled-queue-consumer/dispatch';
import { messagePriorityProblem, refuseRequestPriority } from '../../src/rate-controlled-queue-consumer/request-priority-check';
import { CorrelationAttributes, DispatchInput, RequestStatus } from '../../src/shared/messages';

/** How the rest of the system ends the waiting task. */
export type Outcome =
  /** submit: the vendor accepts, its callback reports success; call: the vendor answers 2xx. */
  | { readonly kind: 'vendor answers'; readonly callback?: unknown; readonly vendor?: VendorBehaviour }
  /** The vendor refuses the request (a 4xx the workflow does not retry): the workflow parks it and fails the task. */
  | { readonly kind: 'vendor refuses'; readonly status: number }
  /** submit: the vendor accepts, then its callback (this body) goes through the callback processor. */
  | { readonly kind: 'callback'; readonly callback: unknown }
  /** submit: the vendor accepts, no callback comes; Step Functions ends the task with this error. */
  | { readonly kind: 'no callback'; readonly error: 'States.Timeout' | 'States.HeartbeatTimeout' }
  /**
   * Issue 15: the message's priority (read at run time) is not high, normal or low: the dispatcher's
   * check fails the task (InvalidRequestPriority) on first receive, before any execution.
   */
  | { readonly kind: 'dispatcher refuses the priority' };

/** What the request queue receives: Step Functions sends an object MessageBody as its JSON text. */
export function queuedBody(taskArguments: { MessageBody: unknown }): string {
  return typeof taskArguments.MessageBody === 'string' ? taskArguments.MessageBody : JSON.stringify(taskArguments.MessageBody);
}

/** What one task run did, for the test's checks. */
export interface TaskRun {
  /** The request queue's message body (parsed). */
  readonly message: Record<string, any>;
  /** The QueueUrl the state sent to (issue 15: the high-priority queue's or the request queue's). */
  readonly queueUrl: string;
  /** The SendTaskSuccess / SendTaskFailure the producer made. */
  readonly resolution?: { readonly taskToken: string; readonly output?: string; readonly error?: string; readonly cause?: string };
}

/**
 * The task handler of a user task state in configuration `c`: each run takes the next outcome of
 * `outcomes` (the last one repeats) and records what happened in `runs`.
 */
export function userTaskAnswer(c: UserTaskConfiguration, outcomes: Outcome[], runs: TaskRun[] = []): TaskHandler {
  let n = 0;
  return async (taskArguments: { MessageBody: unknown; QueueUrl: string }) => {
    const outcome = outcomes[Math.min(n++, outcomes.length - 1)];
    const body = queuedBody(taskArguments);
    const message = JSON.parse(body);
    const run: { message: Record<string, any>; queueUrl: string; resolution?: TaskRun['resolution'] } = { message, queueUrl: taskArguments.QueueUrl };
    runs.push(run);
    const resolution = outcome.kind === 'dispatcher refuses the priority' ? await refusedPriority(message)
      : message.kind === 'call' ? await vendorCall(c, body, outcome) : await submission(c, body, outcome);
    run.resolution = resolution;
    if (resolution.taskToken !== message.taskToken) {
      throw new Error(`the producer resumed task token ${resolution.taskToken}, the task sent ${message.taskToken}`);
    }
    if (resolution.error !== undefined) {
      throw stepError(resolution.error, resolution.cause ?? '');
    }
    // SendTaskSuccess output is JSON text; the task's result is its value.
    return JSON.parse(resolution.output!);
  };
}

/** AWS answers of the dispatch and vendor-call workflows' service tasks when they succeed. */
const SERVICES: Record<string, TaskHandler> = {
  ClaimRequest: claimNew,
  ClaimCall: dynamoUpdated,
  CheckWaitingWorkflow: sfnOk,
  StoreJobId: dynamoUpdated,
  RequeueWithDelay: sqsSent,
  ParkInDeadLetterQueue: sqsSent,
  FailWaitingWorkflow: sfnOk,
  FailWaitingWorkflowBriefly: sfnOk,
  ReturnResponse: sfnOk,
};

type Resolution = NonNullable<TaskRun['resolution']>;

/** The outcomes that reach a workflow (the dispatcher accepted the message). */
type WorkflowOutcome = Exclude<Outcome, { readonly kind: 'dispatcher refuses the priority' }>;

/** The dispatcher's own check and refusal of the message's priority (request-priority-check.ts). */
async function refusedPriority(message: Record<string, any>): Promise<Resolution> {
  const parsed = parseRequestMessage(JSON.stringify(message));
  const problem = parsed.ok ? messagePriorityProblem(parsed.message) : undefined;
  if (!parsed.ok || problem === undefined) {
    throw new Error(`the dispatcher accepts this message's priority (${JSON.stringify(message.priority)}): give the workflow an invalid one`);
  }
  let resolution: Resolution | undefined;
  const refused = await refuseRequestPriority(parsed.message, problem, async (taskToken, error, cause) => {
    resolution = { taskToken, error, cause };
  }, { warn: () => undefined });
  if (!refused || !resolution) {
    throw new Error('the dispatcher did not fail the waiting task');
  }
  return resolution;
}

async function submission(c: UserTaskConfiguration, body: string, outcome: WorkflowOutcome): Promise<Resolution> {
  const paced = 'WasVendorCalled' in c.dispatch.States;
  // The dispatcher's own code accepts the message (or the test fails here, naming why).
  const input = dispatchInputFor(body, paced);
  const vendor: VendorBehaviour = outcome.kind === 'vendor refuses' ? { status: outcome.status, body: { error: 'invalid order' } } : { status: 202, body: { jobId: 'job-1' } };
  const dispatched = await executeDefinition(c.dispatch, input, { ...SERVICES, CallVendor: callVendorTask(paced, vendor) });
  if (dispatched.unexpected.length || (dispatched.error && outcome.kind !== 'vendor refuses')) {
    throw new Error(`the dispatch workflow failed: ${dispatched.error?.name} ${dispatched.error?.message} (unexpected: ${dispatched.unexpected})`);
  }
  if (outcome.kind === 'vendor refuses') {
    const failure = dispatched.calls.FailWaitingWorkflow?.[0] ?? dispatched.calls.FailWaitingWorkflowBriefly?.[0];
    if (!failure) {
      throw new Error(`the dispatch workflow did not fail the waiting task (states: ${dispatched.states})`);
    }
    return { taskToken: failure.TaskToken, error: failure.Error, cause: failure.Cause };
  }
  const stored = dispatched.calls.StoreJobId[0].ExpressionAttributeValues[':job'].S as string;
  if (outcome.kind === 'no callback') {
    // Step Functions itself ends the task (TimeoutSeconds / HeartbeatSeconds); nobody resumes it.
    return { taskToken: input.taskToken, error: outcome.error, cause: '' };
  }
  const callback = outcome.kind === 'callback' ? outcome.callback : { jobId: stored, status: 'COMPLETED', result: { score: 0.93 } };
  return processCallback(c, input, stored, callback);
}

/**
 * The callback processor's real logic on the vendor's callback, as the webhook's mapping template
 * enqueues it (the envelope, with the request's capability token from its callback URL), against
 * the correlation item the dispatch workflow wrote.
 */
async function processCallback(c: UserTaskConfiguration, input: DispatchInput, jobId: string, callback: unknown): Promise<Resolution> {
  const config = loadConfig(c.callbackEnv);
  let resolution: Resolution | undefined;
  const fake = (answer: (command: unknown) => unknown) => ({ send: async (command: unknown) => answer(command) }) as any;
  const clients: CallbackClients = {
    dynamodb: fake((command) => {
      if (command instanceof QueryCommand) {
        return {
          Count: 1,
          Items: [{
            [CorrelationAttributes.REQUEST_ID]: { S: input.requestId },
            [CorrelationAttributes.JOB_ID]: { S: jobId },
            [CorrelationAttributes.TASK_TOKEN]: { S: input.taskToken },
            [CorrelationAttributes.STATUS]: { S: RequestStatus.SUBMITTED },
          }],
        };
      }
      if (command instanceof GetItemCommand) {
        return { Item: { [CorrelationAttributes.CALLBACK_TOKEN]: { S: input.callbackToken } } };
      }
      return {}; // UpdateItem (the status): UpdateItemOutput without ReturnValues
    }),
    sfn: fake((command) => {
      if (command instanceof SendTaskSuccessCommand) {
        resolution = { taskToken: command.input.taskToken!, output: command.input.output };
      } else if (command instanceof SendTaskFailureCommand) {
        resolution = { taskToken: command.input.taskToken!, error: command.input.error, cause: command.input.cause };
      }
      return {};
    }),
    sqs: fake(() => ({ MessageId: '2f1f8e1a-0000-4000-8000-000000000002', MD5OfMessageBody: 'd41d8cd98f00b204e9800998ecf8427e' })),
  };
  const raw = JSON.stringify(callback);
  const record: SQSRecord = {
    messageId: 'callback-1',
    receiptHandle: 'receipt-callback-1',
    body: JSON.stringify({
      v: 1,
      bodyBase64: Buffer.from(raw).toString('base64'),
      headers: { 'Content-Type': Buffer.from('application/json').toString('base64') },
      receivedAtEpochMs: Date.now(),
      apiRequestId: 'api-request-1',
      sourceIp: '203.0.113.7',
      callbackTokenBase64: Buffer.from(input.callbackToken ?? '').toString('base64'),
    }),
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(Date.now()), SenderId: 'AROAEXAMPLE:apigateway', ApproximateFirstReceiveTimestamp: String(Date.now()) },
    messageAttributes: {},
    md5OfBody: '0123456789abcdef0123456789abcdef',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:callback-queue',
    awsRegion: 'us-east-1',
  };
  const quiet = () => undefined;
  await processCallbackRecord(record, clients, config, { debug: quiet, info: quiet, warn: quiet, error: quiet, appendKeys: quiet, removeKeys: quiet },
    { metrics: { addMetric: quiet } });
  if (!resolution) {
    throw new Error('the callback processor neither resumed nor failed the waiting task');
  }
  return resolution;
}

async function vendorCall(c: UserTaskConfiguration, body: string, outcome: WorkflowOutcome): Promise<Resolution> {
  if (!c.vendorCall) {
    throw new Error('a call message, but the stack has no vendor-call workflow');
  }
  const paced = 'WasVendorCalled' in c.vendorCall.States;
  const input = vendorCallInputFor(body, paced);
  if (outcome.kind === 'no callback') {
    // The task's TimeoutSeconds ran out (e.g. the call waited in the queue): Step Functions ends it.
    return { taskToken: input.taskToken, error: outcome.error, cause: '' };
  }
  if (outcome.kind === 'callback') {
    throw new Error('a vendor call has no callback');
  }
  const vendor: VendorBehaviour = outcome.kind === 'vendor refuses' ? { status: outcome.status, body: { error: 'no such job' } }
    : outcome.vendor ?? { status: 200, body: { result: 42 } };
  const call = callVendorTask(paced, vendor);
  const executed = await executeDefinition(c.vendorCall, input, { ...SERVICES, CallVendor: call, CallVendorWithBody: call });
  if (executed.unexpected.length) {
    throw new Error(`the vendor-call workflow called ${executed.unexpected} without an answer`);
  }
  const success = executed.calls.ReturnResponse?.[0];
  if (success && !executed.calls.FailWaitingWorkflow && !executed.calls.FailWaitingWorkflowBriefly) {
    return { taskToken: success.TaskToken, output: success.Output };
  }
  const failure = executed.calls.FailWaitingWorkflow?.[0] ?? executed.calls.FailWaitingWorkflowBriefly?.[0];
  if (!failure) {
    throw new Error(`the vendor-call workflow neither resumed nor failed the waiting task (states: ${executed.states})`);
  }
  return { taskToken: failure.TaskToken, error: failure.Error, cause: failure.Cause };
}
