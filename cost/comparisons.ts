/**
 * The two designs this stack is compared with, built from what was read from the stack (the main
 * workflow, batch sizes, memory sizes, message sizes) so that only the design differs:
 *
 * (a) the published pattern as written: AWS Architecture Blog, "Invoking asynchronous external APIs
 *     with AWS Step Functions";
 * (b) a Standard workflow that calls the vendor with an HTTP Task and waits for the callback with a
 *     .waitForTaskToken task, behind the same webhook path.
 */
import {
  EXPRESS_DURATION_STEP_MS, EXPRESS_MEMORY_CHUNK_MB, LATENCY_MS, SIZE_BYTES,
} from './assumptions';
import {
  batchFill, DeriveOptions, fmt, fmtBytes, lambdaLines, lambdaLogBytesPerRequest, logLine, sqsLines, StackModel,
} from './derive';
import { AslDefinition, AslState, happyPath } from './happy-path';
import { DesignUsage, UsageLine } from './model';

/** A design with what sets it apart from this stack. */
export interface Comparison {
  /** Key in the JSON output. */
  readonly key: 'publishedPattern' | 'standardHttpTask';
  readonly usage: DesignUsage;
  /** How it differs from this stack, one line each. */
  readonly differences: string[];
}

export const PUBLISHED_PATTERN_URL = 'https://aws.amazon.com/blogs/architecture/invoking-asynchronous-external-apis-with-aws-step-functions/';

/** The published pattern's Express workflow as written: call the vendor, store the job id with the token. */
export const PUBLISHED_EXPRESS_DEFINITION: AslDefinition = {
  StartAt: 'CallVendor',
  States: {
    CallVendor: { Type: 'Task', Resource: 'arn:aws:states:::apigateway:invoke', Next: 'StoreJobIdAndToken' },
    StoreJobIdAndToken: { Type: 'Task', Resource: 'arn:aws:states:::dynamodb:putItem', End: true },
  },
};

/** Both comparisons. */
export function comparisons(model: StackModel, options: DeriveOptions): Comparison[] {
  return [publishedPattern(model, options), standardHttpTask(model, options)];
}

/** (a) The published pattern as written. */
export function publishedPattern(model: StackModel, options: DeriveOptions): Comparison {
  const lines: UsageLine[] = [];
  lines.push(mainTransitions(model, model.main.transitions, `${perRequestStates(model, model.main.path).join(' -> ')}, the same main workflow`));

  // Express: the call and the store, nothing else.
  const path = happyPath(PUBLISHED_EXPRESS_DEFINITION, 'the published Express workflow');
  const durationMs = path.length * LATENCY_MS.stateTransition + LATENCY_MS.apiGatewayOverhead + options.vendorLatencyMs + LATENCY_MS.dynamodbCall;
  const billedMs = Math.ceil(durationMs / EXPRESS_DURATION_STEP_MS) * EXPRESS_DURATION_STEP_MS;
  lines.push({ service: 'stepFunctionsExpress', what: 'Express executions', perRequest: 1, price: 'sfnExpressRequest', derivation: 'one per request' });
  lines.push({
    service: 'stepFunctionsExpress',
    what: 'Express duration',
    perRequest: (billedMs / 1000) * (EXPRESS_MEMORY_CHUNK_MB / 1024),
    price: 'sfnExpressGbSecond',
    derivation: `${path.join(' -> ')}: ${durationMs} ms, billed ${billedMs} ms x ${EXPRESS_MEMORY_CHUNK_MB} MB`,
  });

  // The consumer starts executions as the batch comes: no pacing, so no backlog of its own.
  const request = { ...model.requestFeed, ...fillOf(model.requestFeed, options) };
  const consumerMs = LATENCY_MS.startExecution + LATENCY_MS.invocationOverhead / request.fill;
  lines.push(...lambdaLines('consumer', 'consumer function (memory as the dispatcher)', model.dispatcher, request.fill, consumerMs));
  lines.push(...sqsLines('request queue', request, 'the main workflow'));

  const processorMs = LATENCY_MS.dynamodbCall + LATENCY_MS.sendTaskSuccess + LATENCY_MS.invocationOverhead / model.callbackFeed.fill;
  lines.push(...lambdaLines('callback processor', 'callback function (memory as ours)', model.processor, model.callbackFeed.fill, processorMs));
  lines.push(...sqsLines('callback queue', model.callbackFeed, 'the webhook'));
  lines.push({ service: 'apiGateway', what: 'proxy calls', perRequest: 1, price: 'apiGatewayRestRequest', derivation: 'the Express workflow calls the vendor through API Gateway' });
  lines.push({ service: 'apiGateway', what: 'webhook calls', perRequest: 1, price: 'apiGatewayRestRequest', derivation: 'one callback per request' });

  const item = SIZE_BYTES.jobId + 'jobId'.length + options.taskTokenBytes + 'taskToken'.length;
  lines.push({
    service: 'dynamodb',
    what: 'StoreJobIdAndToken PutItem',
    perRequest: Math.ceil(item / 1024),
    price: 'dynamodbWriteRequestUnit',
    derivation: `item { jobId, taskToken } ${fmtBytes(item)}, keyed by job id (no index)`,
  });
  lines.push({ service: 'dynamodb', what: 'callback GetItem by job id', perRequest: 0.5 * Math.ceil(item / 4096), price: 'dynamodbReadRequestUnit', derivation: 'eventually consistent' });

  const platformOnly = (fill: number) => lambdaLogBytesPerRequest({ ...model.dispatcher, infoLogs: false }, fill, 0, false);
  lines.push(logLine('consumer logs', platformOnly(request.fill), `START/END/REPORT per invocation / ${fmt(request.fill)}`));
  lines.push(logLine('callback processor logs', lambdaLogBytesPerRequest({ ...model.processor, infoLogs: false }, model.callbackFeed.fill, 0, false),
    `START/END/REPORT per invocation / ${fmt(model.callbackFeed.fill)}`));

  return {
    key: 'publishedPattern',
    usage: {
      name: '(a) published pattern as written',
      description: `SQS + Lambda consumer + Express (API Gateway call, DynamoDB store) + webhook API + SQS + Lambda (${PUBLISHED_PATTERN_URL})`,
      lines,
      monthly: [],
    },
    differences: [
      'no pacer: the consumer starts executions as the batch arrives and only concurrency bounds the rate (no pacer table read and write per batch, '
        + 'no Lambda time spent waiting for slots), so bursts can exceed the contract',
      'no claim write before the vendor call (ClaimRequest): a redelivered message calls the vendor again',
      'the token is stored once, with the job id, after the vendor answered; keyed by job id, so no index write',
      'the callback function reads the token by key and does not mark the request COMPLETED',
      'no retries through the paced queue (the happy path is unaffected: retries cost only when they happen)',
      `the Express workflow has ${path.length} states instead of ${model.dispatch.path.length} (no payload check, no callback URL merge, no job id checks)`,
      'API access logs, structured application logs and EMF metrics are not part of the post: only Lambda START/END/REPORT lines are counted',
      'batch size, batching window and memory sizes are taken from this stack (the post does not fix them)',
    ],
  };
}

/** (b) Standard workflow: HTTP Task to submit, .waitForTaskToken task to wait, the same webhook path. */
export function standardHttpTask(model: StackModel, options: DeriveOptions): Comparison {
  const submit = model.main.definition.States[model.main.submitState];
  const states: Record<string, AslState> = { ...model.main.definition.States };
  delete states[model.main.submitState];
  const callName = uniqueName(states, 'CallVendorHttp');
  const waitName = uniqueName(states, 'WaitForCallback');
  const after = submit.Next !== undefined ? { Next: submit.Next } : { End: true };
  states[callName] = { Type: 'Task', Resource: 'arn:aws:states:::http:invoke', Next: waitName };
  states[waitName] = { Type: 'Task', Resource: 'arn:aws:states:::aws-sdk:dynamodb:putItem.waitForTaskToken', ...after };
  const rewire = (name: string) => (name === model.main.submitState ? callName : name);
  for (const [name, state] of Object.entries(states)) {
    states[name] = {
      ...state,
      ...(state.Next !== undefined ? { Next: rewire(state.Next) } : {}),
      ...(state.Default !== undefined ? { Default: rewire(state.Default) } : {}),
      ...(state.Choices ? { Choices: state.Choices.map((c) => ({ ...c, ...(c.Next ? { Next: rewire(c.Next) } : {}) })) } : {}),
    };
  }
  const definition: AslDefinition = { ...model.main.definition, StartAt: rewire(model.main.definition.StartAt), States: states };
  // The result fetches (callVendorTask) are costed per fetch, as for this stack.
  const path = perRequestStates(model, happyPath(definition, 'the Standard workflow with an HTTP Task'));

  const lines: UsageLine[] = [];
  lines.push(mainTransitions(model, path.length, `${path.join(' -> ')} (${model.main.submitState} becomes ${callName} + ${waitName})`));
  const item = SIZE_BYTES.jobId + 'jobId'.length + options.taskTokenBytes + 'taskToken'.length;
  lines.push({
    service: 'dynamodb',
    what: `${waitName} PutItem`,
    perRequest: Math.ceil(item / 1024),
    price: 'dynamodbWriteRequestUnit',
    derivation: `{ jobId, taskToken } ${fmtBytes(item)}, keyed by job id (no index), written by the .waitForTaskToken task`,
  });
  lines.push({ service: 'dynamodb', what: 'callback GetItem by job id', perRequest: 0.5 * Math.ceil(item / 4096), price: 'dynamodbReadRequestUnit', derivation: 'eventually consistent' });
  lines.push({ service: 'dynamodb', what: 'callback processor mark COMPLETED', perRequest: Math.ceil((item + 20) / 1024), price: 'dynamodbWriteRequestUnit', derivation: 'as this stack\'s processor does' });
  const processorMs = 2 * LATENCY_MS.dynamodbCall + LATENCY_MS.sendTaskSuccess + LATENCY_MS.invocationOverhead / model.callbackFeed.fill;
  lines.push(...lambdaLines('callback processor', model.processor.logicalId, model.processor, model.callbackFeed.fill, processorMs));
  lines.push(...sqsLines('callback queue', model.callbackFeed, 'the webhook'));
  lines.push({ service: 'apiGateway', what: 'webhook calls', perRequest: 1, price: 'apiGatewayRestRequest', derivation: 'one callback per request' });
  lines.push(logLine('webhook API logs', model.webhook.accessLogBytes + model.webhook.executionLogBytes, 'the same webhook stage as this stack'));
  lines.push(logLine('callback processor logs', lambdaLogBytesPerRequest(model.processor, model.callbackFeed.fill, 1, true), 'as this stack\'s processor'));

  return {
    key: 'standardHttpTask',
    usage: {
      name: '(b) Standard workflow + HTTP Task',
      description: 'the caller\'s Standard workflow calls the vendor with an HTTP Task (arn:aws:states:::http:invoke) and waits in a '
        + '.waitForTaskToken task; callbacks through this stack\'s webhook path',
      lines,
      monthly: [],
    },
    differences: [
      `an HTTP Task supports only the request-response pattern, so the call and the wait are two states: ${path.length} transitions instead of ${model.main.transitions}`,
      'the wait task (an AWS SDK integration, DynamoDB PutItem .waitForTaskToken) stores the token with the job id the HTTP Task returned',
      'no request queue, no consumer Lambda, no Express workflow, no proxy API, no pacer: nothing holds the calls to the contract '
        + '(an HTTP Task is not throttled; the workflow starts are the only rate)',
      'no idempotency claim and no retries through a paced queue; a Retry on the HTTP Task adds transitions and calls the vendor at once',
      'the HTTP Task\'s EventBridge connection: its Secrets Manager secret is included in the EventBridge charge (EventBridge documentation), '
        + 'and the HTTP Task itself costs only its state transition',
      'same webhook API, callback queue and callback processor as this stack',
    ],
  };
}

function mainTransitions(model: StackModel, transitions: number, derivation: string): UsageLine {
  return { service: 'stepFunctionsStandard', what: `${model.main.logicalId} state transitions`, perRequest: transitions, price: 'sfnStandardTransition', derivation };
}

/** The states of a main workflow path billed per request: all but the callVendorTask states (costed per fetch). */
function perRequestStates(model: StackModel, path: string[]): string[] {
  return path.filter((s) => !model.main.callStates.includes(s));
}

function fillOf(feed: StackModel['requestFeed'], options: DeriveOptions): { fill: number; fillRule: string } {
  const { fill, rule } = batchFill(feed.batchSize, feed.batchingWindowSeconds, options.trafficRps, false);
  return { fill, fillRule: rule };
}

function uniqueName(states: Record<string, AslState>, base: string): string {
  let name = base;
  for (let i = 2; states[name]; i++) name = `${base}${i}`;
  return name;
}
