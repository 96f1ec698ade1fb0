/**
 * Usage per request of a stack with one AsyncExternalApiOrchestrator, read from its synthesized
 * template: state counts, batch sizes, memory sizes, log settings and the DynamoDB writes come from
 * the template; latencies and sizes the template cannot know come from `assumptions.ts`.
 *
 * The template is read through `LocalTemplate` (local/template.ts), which resolves every intrinsic,
 * so definitions, environment variables and queue/table references can be compared as strings.
 */
import { arrivalAuditLines, arrivalAuditMonthly } from './arrival-audit';
import {
  ACCESS_LOG_VARIABLE_BYTES, BYTES_PER_GB, EXPRESS_BASE_MEMORY_MB, EXPRESS_DURATION_STEP_MS, EXPRESS_MEMORY_CHUNK_MB,
  LATENCY_MS, POLL_GATHER_SECONDS, SIZE_BYTES, SQS_CHUNK_BYTES, SQS_MESSAGES_PER_CALL,
} from './assumptions';
import { AslDefinition, AslState, happyPath } from './happy-path';
import { sweepMonthly, waitingRoomOf, WaitingRoomModel, waitUsage, wakeLinesPerJob } from './job-waiting';
import { jobsInFlightLines, jobsInFlightMonthly, maxJobsInFlightOf } from './jobs-in-flight';
import { DesignUsage, MonthlyLine, UsageLine } from './model';
import { DEFAULT_KEYS, perKeyCredentialLines, perKeyCredentialOf, PerKeyCredentialModel, perKeySecretsMonthly } from './per-key-credentials';
import { KEY_RULES_EVENTS, KEY_RULES_MONTHLY, perKeyLimitsOf, PerKeyLimitsModel, perKeyLines, perKeyMonthly, setAsideUsage } from './per-key-limits';
import { LocalTemplate } from '../local/template';
import { LocalEndpoints, ResolvedResource } from '../local/types';
import { DynamicDelayEnv } from '../src/rate-controlled-queue-consumer/dynamic-delay-env';
import { DEFAULT_LATENESS_TOLERANCE_MS, slotIntervalMs } from '../src/rate-controlled-queue-consumer/pacer';
import { DEFAULT_LEAD_MS } from '../src/rate-controlled-queue-consumer/rate-settings';
import { CallbackEnv, ConsumerEnv, VendorCallerEnv } from '../src/shared/env';
import { CorrelationAttributes, RequestStatus } from '../src/shared/messages';
import { MetricNames } from '../src/shared/metrics';

/** What the template cannot say about the traffic. */
export interface DeriveOptions {
  /** Requests per second sustained around the clock. */
  readonly trafficRps: number;
  /** How long the vendor takes to answer the job submission. */
  readonly vendorLatencyMs: number;
  /** Size of a request's payload (JSON). */
  readonly payloadBytes: number;
  /** Size of the vendor's callback body. */
  readonly callbackBytes: number;
  /** Length of a Step Functions task token. */
  readonly taskTokenBytes: number;
  /**
   * Request keys with a secret each, for per-key credentials (`fromSecretHeaderPerKey`): the
   * template cannot know them. Default DEFAULT_KEYS; unused without per-key credentials.
   */
  readonly keys?: number;
  /**
   * With per-key limits: calls per second of each active key (so trafficRps / keyCallRps active
   * keys), which decides how many distinct keys a batch holds. Default: the per-key limit.
   */
  readonly keyCallRps?: number;
}

export const DEFAULT_DERIVE_OPTIONS: Omit<DeriveOptions, 'trafficRps'> = {
  vendorLatencyMs: 300,
  payloadBytes: 1024,
  callbackBytes: 1024,
  taskTokenBytes: 700,
};

/** Endpoints for LocalTemplate: only used to build identities, never called. */
const NO_ENDPOINTS: LocalEndpoints = {
  sqs: 'https://sqs.invalid',
  dynamodb: 'https://dynamodb.invalid',
  sfn: 'https://states.invalid',
  secretsManager: 'https://secretsmanager.invalid',
};

/** Loads `<stackName>` from a cloud assembly directory, for {@link deriveStack}. */
export function loadStack(assemblyDir: string, stackName: string): LocalTemplate {
  return LocalTemplate.load(assemblyDir, stackName, NO_ENDPOINTS);
}

/** Reads a template object (tests, or a template not on disk), for {@link deriveStack}. */
export function stackFromTemplate(template: Record<string, unknown>, stackName: string): LocalTemplate {
  return LocalTemplate.fromTemplate(template, NO_ENDPOINTS, { stackName });
}

/** One DynamoDB write of a request and what it consumes. */
export interface WriteCost {
  /** Who writes: a state name or a handler. */
  readonly by: string;
  readonly table: string;
  /** Attributes set by the write. */
  readonly attributes: string[];
  /** Size of the item after the write (the larger of before and after is billed). */
  readonly itemBytes: number;
  readonly writeUnits: number;
  /** Units written to global secondary indexes (a write that touches an index's key or projection). */
  readonly indexWriteUnits: number;
}

/** An event source mapping as the model reads it. */
export interface QueueFeed {
  readonly queue: string;
  readonly function: string;
  readonly batchSize: number;
  readonly batchingWindowSeconds: number;
  readonly maxConcurrency?: number;
  /** Average messages per invocation at the traffic rate. */
  readonly fill: number;
  readonly fillRule: string;
  /** Size of one message body. */
  readonly messageBytes: number;
}

/** A Lambda function as the model reads it. */
export interface FunctionModel {
  readonly logicalId: string;
  readonly memoryMb: number;
  readonly arm: boolean;
  /** Powertools INFO lines are written. */
  readonly infoLogs: boolean;
  /** Platform (START/END/REPORT) bytes per invocation, 0 when filtered out. */
  readonly platformLogBytes: number;
}

/** An API Gateway REST API on the request's path. */
export interface ApiModel {
  readonly logicalId: string;
  readonly stage: string;
  /** Access log bytes per request (0 without access logging). */
  readonly accessLogBytes: number;
  /** Execution log bytes per request (0 unless INFO logging or data tracing). */
  readonly executionLogBytes: number;
  readonly detailedMetrics: boolean;
  readonly tracing: boolean;
}

/** A state machine walked on its happy path. */
export interface WorkflowModel {
  readonly logicalId: string;
  readonly type: 'STANDARD' | 'EXPRESS';
  readonly definition: AslDefinition;
  readonly path: string[];
  readonly logBytesPerExecution: number;
  readonly tracing: boolean;
}

/** Everything the model read from the template and computed from it. */
export interface StackModel {
  readonly contractRps: number;
  readonly latenessToleranceMs: number;
  readonly slotIntervalMs: number;
  /** Starts per second the pacer allows: 1000 / slot interval. */
  readonly pacingCapacityRps: number;
  readonly maxPacingWaitMs: number;
  /** The traffic is at or above the pacing capacity: the request queue holds a growing backlog. */
  readonly backlogged: boolean;
  readonly correlationTtlSeconds: number;
  readonly main: WorkflowModel & {
    readonly submitState: string;
    /** callVendorTask states on the happy path (costed per fetch, not per request). */
    readonly callStates: string[];
    /** Transitions billed per request: the happy path without the call states. */
    readonly transitions: number;
  };
  readonly dispatch: WorkflowModel & {
    readonly durationMs: number;
    readonly billedMs: number;
    readonly memoryMb: number;
    readonly definitionBytes: number;
    readonly executionDataBytes: number;
  };
  readonly requestFeed: QueueFeed;
  readonly callbackFeed: QueueFeed;
  readonly dispatcher: FunctionModel & { readonly msPerRequest: number; readonly durationRule: string };
  readonly processor: FunctionModel & { readonly msPerRequest: number };
  /** The vendor caller (PacingPoint.VENDOR_CALL); absent with PacingPoint.DISPATCH (apigateway:invoke). */
  readonly vendorCaller?: FunctionModel & {
    readonly msPerCall: number;
    readonly leadMs: number;
    readonly durationRule: string;
    /** The contract's quotas the caller spends a unit of per call (VendorContract.quotas). */
    readonly quotas: number;
  };
  readonly proxy: ApiModel;
  readonly webhook: ApiModel;
  readonly correlationTable: string;
  readonly pacerTable: string;
  readonly writes: WriteCost[];
  /** Read units of the callback processor's query by job id. */
  readonly lookupReadUnits: number;
  /** Read units of the processor's capability token check (strongly consistent GetItem); 0 without capability URLs. */
  readonly tokenCheckReadUnits: number;
  /** Size of the correlation item once the job id is stored. */
  readonly correlationItemBytes: number;
  /** Size of its entry in the job id index. */
  readonly indexEntryBytes: number;
  /** ChangeMessageVisibility calls per request (postponed messages). */
  readonly postponedPerRequest: number;
  /** The contract's jobs-in-flight limit (dispatcher MAX_JOBS_IN_FLIGHT); undefined without one. */
  readonly maxJobsInFlight?: number;
  /** The limit's waiting queue and sweep (dispatcher JOB_WAITING_QUEUE_URL); undefined without them. */
  readonly waitingRoom?: WaitingRoomModel;
  /** The proxy's per-key credential function (SECRET_NAME_PATTERN); undefined without per-key credentials. */
  readonly perKeyCredential?: PerKeyCredentialModel;
  /** Per-key limits (dispatcher KEY_LIMITS), with the traffic's spread over keys; undefined without them. */
  readonly perKeyLimits?: PerKeyLimitsModel;
}

/** The paced result fetches of the main workflow (callVendorTask), costed per fetch. */
export interface FetchDerivation {
  /** The call states on the main workflow's happy path. */
  readonly callStates: string[];
  /** Fetches per request (per submission): one per call state. */
  readonly perRequest: number;
  /** The VendorCallWorkflow's logical id and happy path. */
  readonly workflow: string;
  readonly path: string[];
  /** Usage per fetch. */
  readonly usage: DesignUsage;
}

/** The result of {@link deriveStack}. */
export interface StackDerivation {
  readonly model: StackModel;
  /** Usage per request: one vendor submission (submitJobTask) and its callback. */
  readonly usage: DesignUsage;
  /** Usage per result fetch (callVendorTask), when the main workflow makes any. */
  readonly fetch?: FetchDerivation;
  /**
   * Usage per wait for a job place (a request that found every place taken), when the stack has a
   * jobs-in-flight limit with its waiting queue: off the happy path, priced per wait.
   */
  readonly waits?: DesignUsage;
  /**
   * With per-key limits: what they add to a call (the per-key lines of a submission, also in
   * `usage`), and a set-aside (off the happy path, priced per set-aside).
   */
  readonly perKey?: { readonly perCall: DesignUsage; readonly setAside: DesignUsage };
  /** How each count was obtained, one line each. */
  readonly derivation: string[];
  /** Things the reader must know (backlog, missing features). */
  readonly warnings: string[];
}

/** The contract (requests per second) the stack's orchestrator was synthesized with. */
export function contractRpsOf(t: LocalTemplate): number {
  const fn = functionWithEnv(t, [ConsumerEnv.STATE_MACHINE_ARN, ConsumerEnv.PACER_TABLE_NAME], 'queue consumer (dispatcher)');
  return numberEnv(envOf(fn), ConsumerEnv.REQUESTS_PER_SECOND, fn);
}

/** Derives the usage per request of the stack's orchestrator. */
export function deriveStack(t: LocalTemplate, options: DeriveOptions): StackDerivation {
  validateOptions(options);
  const derivation: string[] = [];
  const warnings: string[] = [];
  const lambda = (fn: ResolvedResource) => functionModel(fn);

  // ---- The queue consumer: contract, pacing, request queue ----
  const dispatcherFn = functionWithEnv(t, [ConsumerEnv.STATE_MACHINE_ARN, ConsumerEnv.PACER_TABLE_NAME], 'queue consumer (dispatcher)');
  const consumerEnv = envOf(dispatcherFn);
  const contractRps = numberEnv(consumerEnv, ConsumerEnv.REQUESTS_PER_SECOND, dispatcherFn);
  const latenessToleranceMs = consumerEnv[ConsumerEnv.LATENESS_TOLERANCE_MS] !== undefined
    ? numberEnv(consumerEnv, ConsumerEnv.LATENESS_TOLERANCE_MS, dispatcherFn) : DEFAULT_LATENESS_TOLERANCE_MS;
  const maxPacingWaitMs = numberEnv(consumerEnv, ConsumerEnv.MAX_PACING_WAIT_MS, dispatcherFn);
  const correlationTtlSeconds = numberEnv(consumerEnv, ConsumerEnv.CORRELATION_TTL_SECONDS, dispatcherFn);
  const interval = slotIntervalMs(contractRps, latenessToleranceMs);
  const pacingCapacityRps = 1000 / interval;
  const backlogged = options.trafficRps >= pacingCapacityRps;
  derivation.push(`contract ${contractRps} rps (dispatcher ${ConsumerEnv.REQUESTS_PER_SECOND}), lateness tolerance ${latenessToleranceMs} ms: `
    + `slots ${fmt(interval, 2)} ms apart, at most ${fmt(pacingCapacityRps, 2)} starts/s`);
  if (backlogged) {
    warnings.push(`${fmt(options.trafficRps)} rps sustained is at or above the pacer's ${fmt(pacingCapacityRps, 2)} starts/s `
      + `(slots ${fmt(interval, 2)} ms apart): the request queue grows by ${fmt(options.trafficRps - pacingCapacityRps, 2)} requests/s `
      + `(${Math.round((options.trafficRps - pacingCapacityRps) * 86400).toLocaleString('en-US')} a day) and every batch is full. `
      + `The backlog alarm will fire; a sustainable rate is below ${fmt(pacingCapacityRps, 2)} rps (--traffic-rps).`);
  }

  const dispatcher = lambda(dispatcherFn);
  const requestEsm = feedOf(t, dispatcherFn.logicalId);
  const requestQueue = t.findByArn(String(requestEsm.properties.EventSourceArn));
  if (!requestQueue) {
    throw new Error(`The dispatcher's event source ${requestEsm.logicalId} reads ${requestEsm.properties.EventSourceArn}, which is not a queue of this stack`);
  }
  const requestMessageBytes = options.taskTokenBytes + SIZE_BYTES.requestId + options.payloadBytes + SIZE_BYTES.requestMessageOverhead;
  const requestFeed = feedModel(requestEsm, requestQueue.logicalId, dispatcherFn.logicalId, options.trafficRps, backlogged, requestMessageBytes);
  const concurrency = requestFeed.maxConcurrency ?? 5;
  derivation.push(`request queue ${requestQueue.logicalId} -> dispatcher ${dispatcherFn.logicalId}: batch size ${requestFeed.batchSize}, `
    + `batching window ${requestFeed.batchingWindowSeconds} s, maximum concurrency ${requestFeed.maxConcurrency ?? 'none (5 pollers assumed)'}; `
    + `${requestFeed.fillRule}`);

  // Slots that do not fit before the invocation's deadline are postponed (ChangeMessageVisibility).
  const startsPerInvocation = Math.min(requestFeed.fill, Math.floor(maxPacingWaitMs / (concurrency * interval)) + 1);
  const postponedPerRequest = backlogged && startsPerInvocation < requestFeed.fill
    ? (requestFeed.fill - startsPerInvocation) / startsPerInvocation : 0;
  derivation.push(postponedPerRequest === 0
    ? `no ChangeMessageVisibility on the happy path: a batch's ${fmt(requestFeed.fill)} slots behind ${concurrency} concurrent batches `
      + `(${fmt(requestFeed.fill * concurrency * interval / 1000, 2)} s) fit in ${ConsumerEnv.MAX_PACING_WAIT_MS} ${maxPacingWaitMs} ms`
    : `${fmt(postponedPerRequest, 3)} ChangeMessageVisibility per request: only ${startsPerInvocation} of ${fmt(requestFeed.fill)} slots fit `
      + `in ${ConsumerEnv.MAX_PACING_WAIT_MS} ${maxPacingWaitMs} ms behind ${concurrency} concurrent batches`);

  const fixedDispatcherMs = LATENCY_MS.invocationOverhead + 2 * LATENCY_MS.dynamodbCall + LATENCY_MS.startExecution;
  const dispatcherMsPerRequest = backlogged
    ? concurrency * interval + fixedDispatcherMs / requestFeed.fill
    : ((requestFeed.fill - 1) * interval + fixedDispatcherMs) / requestFeed.fill;
  const dispatcherRule = backlogged
    ? `backlog: ${concurrency} invocations always waiting for slots, ${concurrency} x ${fmt(interval, 1)} ms per start `
      + `+ ${fixedDispatcherMs} ms per invocation (reservation read and write, last StartExecution, overhead) / ${fmt(requestFeed.fill)}`
    : `an invocation lasts until its last slot, (${fmt(requestFeed.fill)} - 1) x ${fmt(interval, 1)} ms, `
      + `+ ${fixedDispatcherMs} ms (reservation read and write, last StartExecution, overhead), shared by ${fmt(requestFeed.fill)} requests`;

  // ---- Workflows ----
  const dispatchArn = consumerEnv[ConsumerEnv.STATE_MACHINE_ARN];
  const dispatchSm = t.findByArn(dispatchArn);
  if (!dispatchSm || dispatchSm.type !== 'AWS::StepFunctions::StateMachine') {
    throw new Error(`The dispatcher starts ${dispatchArn}, which is not a state machine of this stack`);
  }
  const requestQueueUrl = t.queueUrlOf(requestQueue.logicalId);
  const mains = t.ofType('AWS::StepFunctions::StateMachine')
    .map((sm) => ({ sm, submit: submitStateOf(t.definitionOf(sm.logicalId) as AslDefinition, requestQueueUrl) }))
    .filter((m): m is { sm: ResolvedResource; submit: string } => m.submit !== undefined);
  if (mains.length === 0) {
    throw new Error(`No state machine of stack ${t.stackName} sends to the request queue with .waitForTaskToken (submitJobTask): nothing to cost`);
  }
  if (mains.length > 1) {
    warnings.push(`${mains.length} workflows use submitJobTask (${mains.map((m) => m.sm.logicalId).join(', ')}); the Standard transitions are those of ${mains[0].sm.logicalId}`);
  }
  const mainWorkflow = workflowModel(t, mains[0].sm, options);
  if (!mainWorkflow.path.includes(mains[0].submit)) {
    throw new Error(`The happy path of ${mainWorkflow.logicalId} (${mainWorkflow.path.join(' -> ')}) does not pass its submit task ${mains[0].submit}`);
  }
  const callStates = mainWorkflow.path.filter((name) => isCallState(mainWorkflow.definition.States[name], requestQueueUrl));
  const main = { ...mainWorkflow, submitState: mains[0].submit, callStates, transitions: mainWorkflow.path.length - callStates.length };
  derivation.push(`main workflow ${main.logicalId} (${main.type}): happy path ${main.path.join(' -> ')} = ${main.path.length} state transitions `
    + `(the orchestrator's ${main.submitState} is 1${callStates.length > 0 ? `; ${callStates.join(', ')} (callVendorTask) ${callStates.length === 1 ? 'is' : 'are'} `
      + `costed per result fetch, below, so ${main.transitions} per request` : ''}; the others are the example's own states)`);

  // Requeues (the vendor caller found no slot in time) go back through the request queue: not the happy path.
  const requeues = (_: string, state: AslState) => state.Type === 'Task' && /:sqs:sendMessage$/.test(state.Resource ?? '')
    && (state.Parameters ?? state.Arguments ?? {}).QueueUrl === requestQueueUrl;
  const dispatchBase = workflowModel(t, dispatchSm, options, requeues);
  const definitionBytes = Buffer.byteLength(JSON.stringify(dispatchBase.definition), 'utf8');
  // The execution input (DispatchInput) carries the request message and, again, its fields.
  const executionDataBytes = 2 * (options.taskTokenBytes + SIZE_BYTES.requestId + options.payloadBytes) + 200;
  const memoryMb = expressMemoryMb(definitionBytes, executionDataBytes);

  // The vendor caller (PacingPoint.VENDOR_CALL) is started `lead` before its slot and waits for it.
  const leadMs = consumerEnv[ConsumerEnv.PACING_LEAD_MS] !== undefined
    ? numberEnv(consumerEnv, ConsumerEnv.PACING_LEAD_MS, dispatcherFn) : DEFAULT_LEAD_MS;
  const callerWaitMs = Math.max(0, leadMs - LATENCY_MS.expressStartToCaller);
  const callerMs = callerWaitMs + LATENCY_MS.apiGatewayOverhead + options.vendorLatencyMs;
  const callerRule = `waits for its slot, lead ${leadMs} ms (dispatcher ${ConsumerEnv.PACING_LEAD_MS}${consumerEnv[ConsumerEnv.PACING_LEAD_MS] === undefined ? ' absent: the library default' : ''}) `
    + `- ${LATENCY_MS.expressStartToCaller} ms from StartExecution to the caller (assumed) = ${callerWaitMs} ms, `
    + `then API Gateway ${LATENCY_MS.apiGatewayOverhead} ms + vendor ${options.vendorLatencyMs} ms (--vendor-latency-ms): ${callerMs} ms`;

  // ---- The dispatch workflow's tasks, in happy-path order ----
  const tables = new ItemTracker(options);
  const correlationFn = functionWithEnv(t, [CallbackEnv.TABLE_NAME, CallbackEnv.JOB_ID_INDEX_NAME], 'callback processor');
  const callbackEnv = envOf(correlationFn);
  const correlationTable = tableByName(t, callbackEnv[CallbackEnv.TABLE_NAME]);
  const pacerTable = tableByName(t, consumerEnv[ConsumerEnv.PACER_TABLE_NAME]);
  const walk = walkTasks(t, dispatchBase, 'Dispatch', tables, options, callerMs);
  const { durationMs, proxyCalls, proxyApiId, secretCalls, lambdaTasks, sqsTasks } = walk;
  const billedMs = Math.ceil(durationMs / EXPRESS_DURATION_STEP_MS) * EXPRESS_DURATION_STEP_MS;
  const dispatch = { ...dispatchBase, durationMs, billedMs, memoryMb, definitionBytes, executionDataBytes };
  derivation.push(`dispatch workflow ${dispatch.logicalId} (${dispatch.type}): happy path ${dispatch.path.join(' -> ')} (${dispatch.path.length} states)`);
  for (const line of walk.taskLines) {
    derivation.push(`  ${line}`);
  }
  derivation.push(`  duration ${dispatch.path.length} x ${LATENCY_MS.stateTransition} ms + tasks = ${durationMs} ms, billed ${billedMs} ms; `
    + `memory ${EXPRESS_BASE_MEMORY_MB} MB + definition ${fmtBytes(definitionBytes)} + execution data ${fmtBytes(executionDataBytes)}, billed ${memoryMb} MB`);
  if (!proxyApiId) {
    throw new Error(`The dispatch workflow's happy path (${dispatch.path.join(' -> ')}) calls no REST API: is this an AsyncExternalApiOrchestrator?`);
  }
  const callerFn = walk.callerTasks[0]?.fn;
  const vendorCaller = callerFn
    ? { ...lambda(callerFn), msPerCall: callerMs, leadMs, durationRule: callerRule, quotas: quotaCount(envOf(callerFn)) }
    : undefined;
  if (vendorCaller) {
    derivation.push(`vendor caller ${vendorCaller.logicalId} (PacingPoint.VENDOR_CALL): ${vendorCaller.memoryMb} MB, ${callerRule}; `
      + '1 strongly consistent GetItem of the pacer item (the pause check before the slot) = 1 RRU per call');
  } else {
    derivation.push('PacingPoint.DISPATCH: the dispatch workflow calls the proxy itself (apigateway:invoke), no vendor caller');
  }

  // ---- Callback side ----
  const processor = lambda(correlationFn);
  const callbackEsm = feedOf(t, correlationFn.logicalId);
  const callbackQueue = t.findByArn(String(callbackEsm.properties.EventSourceArn));
  if (!callbackQueue) {
    throw new Error(`The callback processor's event source ${callbackEsm.logicalId} reads ${callbackEsm.properties.EventSourceArn}, which is not a queue of this stack`);
  }
  const envelopeBytes = Math.ceil(options.callbackBytes / 3) * 4 + SIZE_BYTES.callbackEnvelopeOverhead;
  const callbackFeed = feedModel(callbackEsm, callbackQueue.logicalId, correlationFn.logicalId, options.trafficRps, false, envelopeBytes);
  derivation.push(`callback queue ${callbackQueue.logicalId} -> processor ${correlationFn.logicalId}: batch size ${callbackFeed.batchSize}, `
    + `batching window ${callbackFeed.batchingWindowSeconds} s; ${callbackFeed.fillRule}`);
  const webhookApi = t.ofType('AWS::ApiGateway::Method')
    .filter((m) => /:sqs:path\//.test(String(m.properties.Integration?.Uri ?? '')) && String(m.properties.Integration.Uri).endsWith(`/${t.nameOf(callbackQueue.logicalId)}`))
    .map((m) => t.ofType('AWS::ApiGateway::RestApi').find((a) => t.ref(a.logicalId) === m.properties.RestApiId))[0];
  if (!webhookApi) {
    throw new Error(`No REST API method of stack ${t.stackName} sends to the callback queue ${callbackQueue.logicalId}: where do callbacks arrive?`);
  }

  // The processor (callback-processing.ts): Query ByJobId (eventually consistent, Limit 1), SendTaskSuccess,
  // then UpdateItem SET status = COMPLETED, updatedAt = now.
  const indexName = callbackEnv[CallbackEnv.JOB_ID_INDEX_NAME];
  const indexEntryBytes = tables.indexEntryBytes(correlationTable, indexName);
  const lookupReadUnits = 0.5 * Math.ceil(indexEntryBytes / 4096);
  const correlationItemBytes = tables.itemBytes(correlationTable);
  tables.write(correlationTable, 'callback processor (mark COMPLETED)', {
    Key: { [CorrelationAttributes.REQUEST_ID]: { 'S.$': '$' } },
    UpdateExpression: 'SET #status = :status, #updatedAt = :updatedAt',
    ExpressionAttributeNames: { '#status': CorrelationAttributes.STATUS, '#updatedAt': CorrelationAttributes.UPDATED_AT },
    ExpressionAttributeValues: { ':status': { S: RequestStatus.COMPLETED }, ':updatedAt': { 'S.$': '$' } },
  });
  const completed = tables.writes[tables.writes.length - 1];
  // Capability URLs (webhookauth): the processor reads the request's callback token from the item
  // itself, a strongly consistent GetItem (1 RRU per started 4 KB of the item, projection or not).
  const tokenCheck = String(callbackEnv[CallbackEnv.REQUIRE_CALLBACK_TOKEN] ?? 'true').toLowerCase() !== 'false';
  const tokenCheckReadUnits = tokenCheck ? Math.ceil(Math.max(correlationItemBytes, 1) / 4096) : 0;
  derivation.push(`callback processor: Query ${indexName} (eventually consistent, entry ${fmtBytes(indexEntryBytes)}) ${lookupReadUnits} RRU; `
    + (tokenCheck ? `capability token check: GetItem (strongly consistent, item ${fmtBytes(correlationItemBytes)}) ${tokenCheckReadUnits} RRU; `
      : `no capability token check (${CallbackEnv.REQUIRE_CALLBACK_TOKEN} false); `)
    + `SendTaskSuccess (no charge); mark COMPLETED ${describeWrite(completed)}`);
  derivation.push(`correlation item ${fmtBytes(correlationItemBytes)}, index entry ${fmtBytes(indexEntryBytes)}, with a ${options.taskTokenBytes}-byte task token `
    + `(a write costs 2 units past 1 KB: item writes with a token above ~${Math.max(0, 1024 - (correlationItemBytes - options.taskTokenBytes))} bytes, `
    + `index writes above ~${Math.max(0, 1024 - (indexEntryBytes - options.taskTokenBytes))} bytes)`);
  const processorMsPerRequest = (tokenCheck ? 3 : 2) * LATENCY_MS.dynamodbCall + LATENCY_MS.sendTaskSuccess
    + LATENCY_MS.invocationOverhead / callbackFeed.fill;

  const maxJobsInFlight = maxJobsInFlightOf(consumerEnv);
  const waitingRoom = waitingRoomOf(t, consumerEnv, dispatcherFn.logicalId, maxJobsInFlight);
  const perKeyCredential = perKeyCredentialOf(t, (id) => functionModel(t.get(id)));
  const perKeyLimits = perKeyLimitsOf(t, consumerEnv, {
    trafficRps: options.trafficRps,
    ...(options.keyCallRps !== undefined ? { keyCallRps: options.keyCallRps } : {}),
    requestFeed,
    pacerTable: pacerTable.logicalId,
    contractQuotas: quotaCount(consumerEnv),
    ...(maxJobsInFlight !== undefined ? { maxJobsInFlight } : {}),
  });
  const model: StackModel = {
    contractRps,
    latenessToleranceMs,
    slotIntervalMs: interval,
    pacingCapacityRps,
    maxPacingWaitMs,
    backlogged,
    correlationTtlSeconds,
    main,
    dispatch,
    requestFeed,
    callbackFeed,
    dispatcher: { ...dispatcher, msPerRequest: dispatcherMsPerRequest, durationRule: dispatcherRule },
    processor: { ...processor, msPerRequest: processorMsPerRequest },
    ...(vendorCaller ? { vendorCaller } : {}),
    proxy: apiModel(t, proxyApiId, options.payloadBytes),
    webhook: apiModel(t, webhookApi.logicalId, options.callbackBytes),
    correlationTable: correlationTable.logicalId,
    pacerTable: pacerTable.logicalId,
    writes: tables.writes,
    lookupReadUnits,
    tokenCheckReadUnits,
    correlationItemBytes,
    indexEntryBytes,
    postponedPerRequest,
    maxJobsInFlight,
    ...(waitingRoom ? { waitingRoom } : {}),
    ...(perKeyCredential ? { perKeyCredential } : {}),
    ...(perKeyLimits ? { perKeyLimits } : {}),
  };
  const keys = options.keys ?? DEFAULT_KEYS;
  const perKeyFunctions = {
    dispatcher: model.dispatcher,
    processor: model.processor,
    ...(vendorCaller ? { vendorCaller } : {}),
    correlationItemBytes,
    correlationTable: correlationTable.logicalId,
  };
  if (perKeyLimits) {
    const d = perKeyLimits.defaults;
    derivation.push(`per-key limits (dispatcher KEY_LIMITS): ${d.requestsPerSecond} rps per key${d.maxJobsInFlight !== undefined ? `, ${d.maxJobsInFlight} jobs in flight` : ''}`
      + `${Object.keys(d.quotas).length > 0 ? `, quotas ${Object.keys(d.quotas).join(', ')}` : ''}; settings table ${perKeyLimits.settingsTable}; `
      + `${fmt(perKeyLimits.activeKeys)} active keys at ${fmt(perKeyLimits.keyCallRps, 3)} calls/s each (--key-call-rps${options.keyCallRps === undefined ? ' absent: the per-key limit' : ''}), `
      + `${fmt(perKeyLimits.distinctKeysPerBatch, 2)} distinct keys in a batch of ${fmt(requestFeed.fill)} (calls of each key independent: K (1 - e^(-F/K)))`);
    if (perKeyLimits.keyCallRps > d.requestsPerSecond) {
      warnings.push(`${fmt(perKeyLimits.keyCallRps, 3)} calls/s per key (--key-call-rps) is above the per-key limit of ${d.requestsPerSecond} rps: `
        + 'each key\'s excess is set aside again and again and its backlog grows (priced per set-aside, not in the per-request table)');
    }
  }
  if (waitingRoom) {
    derivation.push(`jobs in flight: waiting queue ${waitingRoom.queue}${waitingRoom.sweep ? `, sweep ${waitingRoom.sweep.schedule} every ${waitingRoom.sweep.periodSeconds} s` : ', no sweep schedule'}: `
      + 'each freed place wakes one waiter (2 empty short polls when nobody waits); waits are priced per wait');
  }
  if (perKeyCredential) {
    derivation.push(`per-key credentials: ${perKeyCredential.logicalId} reads '${perKeyCredential.secretNamePattern}', cached ${perKeyCredential.cacheTtlSeconds} s per key `
      + `and execution environment; ${keys} key(s) assumed (--keys)`);
  }

  // ---- Usage lines ----
  const lines: UsageLine[] = [];
  lines.push({
    service: 'stepFunctionsStandard',
    what: `${main.logicalId} state transitions`,
    perRequest: main.transitions,
    price: 'sfnStandardTransition',
    derivation: `${main.path.filter((st) => !callStates.includes(st)).join(' -> ')} (submit task ${main.submitState}: 1)`
      + `${callStates.length > 0 ? `; ${callStates.join(', ')}: per result fetch` : ''}`,
  });
  lines.push({ service: 'stepFunctionsExpress', what: `${dispatch.logicalId} executions`, perRequest: 1, price: 'sfnExpressRequest', derivation: 'one per request (no retry on the happy path)' });
  lines.push({
    service: 'stepFunctionsExpress',
    what: `${dispatch.logicalId} duration`,
    perRequest: (billedMs / 1000) * (memoryMb / 1024),
    price: 'sfnExpressGbSecond',
    derivation: `${billedMs} ms x ${memoryMb} MB`,
  });
  lines.push(...lambdaLines('dispatcher', dispatcherFn.logicalId, model.dispatcher, requestFeed.fill, dispatcherMsPerRequest));
  lines.push(...lambdaLines('callback processor', correlationFn.logicalId, model.processor, callbackFeed.fill, processorMsPerRequest));
  for (const task of lambdaTasks) {
    const fn = lambda(task.fn);
    lines.push(...lambdaLines(`${task.state} (dispatch task)`, task.fn.logicalId, fn, 1, LATENCY_MS.lambdaInvoke));
  }
  if (vendorCaller) {
    lines.push(...callerLines(vendorCaller, 'dispatch'));
  }
  lines.push(...arrivalAuditLines(t, options.trafficRps));
  lines.push(...sqsLines('request queue', requestFeed, `${main.submitState} (main workflow)`));
  if (postponedPerRequest > 0) {
    lines.push({ service: 'sqs', what: 'request queue ChangeMessageVisibility', perRequest: postponedPerRequest, price: 'sqsRequest', derivation: 'slots past the pacing deadline' });
  }
  for (const state of sqsTasks) {
    lines.push({ service: 'sqs', what: `${state} (dispatch task) SendMessage`, perRequest: 1, price: 'sqsRequest', derivation: 'a Task on the happy path' });
  }
  lines.push(...sqsLines('callback queue', callbackFeed, `webhook ${webhookApi.logicalId} (mapping template)`));
  lines.push({
    service: 'apiGateway',
    what: `${proxyApiId} (proxy) calls`,
    perRequest: proxyCalls,
    price: 'apiGatewayRestRequest',
    derivation: vendorCaller ? 'the vendor caller\'s request through the proxy (lambda:invoke task on the dispatch happy path)' : 'apigateway:invoke tasks on the dispatch happy path',
  });
  lines.push({ service: 'apiGateway', what: `${webhookApi.logicalId} (webhook) calls`, perRequest: 1, price: 'apiGatewayRestRequest', derivation: 'one callback per request' });
  lines.push(...auditLines(t, proxyCalls));
  lines.push(...tables.writes.map(writeLine));
  lines.push({ service: 'dynamodb', what: `callback processor Query ${indexName}`, perRequest: lookupReadUnits, price: 'dynamodbReadRequestUnit', derivation: 'eventually consistent, one entry' });
  lines.push({
    service: 'dynamodb',
    what: 'callback processor GetItem (capability token check)',
    perRequest: tokenCheckReadUnits,
    price: 'dynamodbReadRequestUnit',
    derivation: tokenCheck ? `strongly consistent read of the correlation item (${fmtBytes(correlationItemBytes)} < 4 KB): 1 RRU per callback`
      : `none: ${CallbackEnv.REQUIRE_CALLBACK_TOKEN} is false (no capability URLs)`,
  });
  lines.push({
    service: 'dynamodb',
    what: `pacer ${pacerTable.logicalId} reservation write`,
    perRequest: 1 / requestFeed.fill,
    price: 'dynamodbWriteRequestUnit',
    derivation: `1 conditional UpdateItem per batch of ${fmt(requestFeed.fill)} (no lost race assumed; each lost race adds 1 read + 1 write)`,
  });
  lines.push({
    service: 'dynamodb',
    what: `pacer ${pacerTable.logicalId} reservation read`,
    perRequest: 1 / requestFeed.fill,
    price: 'dynamodbReadRequestUnit',
    derivation: `1 strongly consistent GetItem per batch of ${fmt(requestFeed.fill)}`,
  });
  lines.push(...dispatcherQuotaReads(pacerTable.logicalId, quotaCount(consumerEnv), requestFeed.fill));
  if (vendorCaller) {
    lines.push(callerPacerRead(pacerTable.logicalId), callerSlotClaim(pacerTable.logicalId));
    lines.push(...callerQuotaWrites(pacerTable.logicalId, vendorCaller.quotas));
  }
  lines.push(...jobsInFlightLines({
    maxJobsInFlight: model.maxJobsInFlight,
    pacerTable: pacerTable.logicalId,
    correlationTable: correlationTable.logicalId,
    dispatcher: model.dispatcher,
    processor: model.processor,
  }));
  lines.push(...wakeLinesPerJob(waitingRoom, model.processor));
  lines.push(...perKeyCredentialLines(perKeyCredential, keys, options.trafficRps));
  const perKeyCall = perKeyLimits ? perKeyLines(perKeyLimits, perKeyFunctions, true) : [];
  lines.push(...perKeyCall);
  lines.push(...logLines(model, requestFeed, callbackFeed, lambdaTasks.map((x) => lambda(x.fn))));
  lines.push({
    service: 'secretsManager',
    what: 'GetSecretValue calls',
    perRequest: secretCalls,
    price: 'secretsManagerApiCall',
    derivation: secretCalls > 0 ? 'a GetSecretValue task on the dispatch happy path' : 'none: no vendor credential is read per request (no secret task on the happy path)',
  });
  const traced = tracingOf(t, model);
  lines.push({
    service: 'xray',
    what: 'traces recorded',
    perRequest: traced.length > 0 ? 1 : 0,
    price: 'xrayTraceRecorded',
    derivation: traced.length > 0 ? `tracing on ${traced.join(', ')}: at most one trace per request (sampling lowers it)` : 'none: tracing is off everywhere in the template',
  });
  lines.push({ service: 'kms', what: 'KMS requests', perRequest: 0, price: 'kmsRequest', derivation: kmsDerivation(t) });

  const monthly = monthlyLines(t, model, options);
  const usage: DesignUsage = {
    name: 'this stack',
    description: `${t.stackName} as synthesized: paced dispatcher${vendorCaller ? ', vendor caller at the slot' : ''}, claim before the call, retries through the queue, mark COMPLETED`,
    lines,
    monthly,
  };

  // ---- Result fetches (callVendorTask): another paced vendor request, costed per fetch ----
  let fetch: FetchDerivation | undefined;
  if (callStates.length > 0) {
    const callArn = consumerEnv[ConsumerEnv.CALL_STATE_MACHINE_ARN];
    const callSm = callArn !== undefined ? t.findByArn(callArn) : undefined;
    if (!callSm || callSm.type !== 'AWS::StepFunctions::StateMachine') {
      warnings.push(`${main.logicalId} makes vendor calls (${callStates.join(', ')}) but the dispatcher starts no vendor-call workflow `
        + `(${ConsumerEnv.CALL_STATE_MACHINE_ARN} ${JSON.stringify(callArn)}): the result fetches are not costed`);
    } else {
      fetch = deriveFetch(t, { callSm, callStates, main, model, options, requeues, callerMs, derivation, perKeyFunctions });
    }
  }
  const waits = waitingRoom && model.maxJobsInFlight !== undefined ? waitUsage({
    room: waitingRoom,
    maxJobsInFlight: model.maxJobsInFlight,
    requestQueue: requestQueue.logicalId,
    pacerTable: pacerTable.logicalId,
    requestFeed,
    dispatcher: model.dispatcher,
    processor: model.processor,
  }) : undefined;
  const perKey = perKeyLimits ? {
    perCall: {
      name: 'per-key limits, per call',
      description: 'what per-key limits add to a call of a key (a submission): the key\'s reads and writes at the dispatcher, the vendor caller and the callback processor',
      lines: perKeyCall,
      monthly: [],
    },
    setAside: setAsideUsage(perKeyLimits, requestFeed, perKeyFunctions),
  } : undefined;
  return { model, usage, ...(fetch ? { fetch } : {}), ...(waits ? { waits } : {}), ...(perKey ? { perKey } : {}), derivation, warnings };
}

interface FetchContext {
  readonly callSm: ResolvedResource;
  readonly callStates: string[];
  readonly main: StackModel['main'];
  readonly model: StackModel;
  readonly options: DeriveOptions;
  readonly requeues: (name: string, state: AslState) => boolean;
  readonly callerMs: number;
  readonly derivation: string[];
  readonly perKeyFunctions: Parameters<typeof perKeyLines>[1];
}

/**
 * One result fetch (callVendorTask): the call state's Standard transition, its message through the
 * request queue and the dispatcher (paced like a submission: it shares the batches and the pacer),
 * the VendorCallWorkflow's Express execution walked like the dispatch workflow, the vendor caller
 * (or apigateway:invoke) and the proxy call. One small claim item in the correlation table
 * (ClaimCall: a duplicate execution stops there), no callback.
 */
function deriveFetch(t: LocalTemplate, c: FetchContext): FetchDerivation {
  const { model, options } = c;
  const base = workflowModel(t, c.callSm, options, c.requeues);
  const tracker = new ItemTracker(options);
  const walk = walkTasks(t, base, 'Vendor-call', tracker, options, c.callerMs);
  if (walk.proxyCalls === 0) {
    throw new Error(`The vendor-call workflow's happy path (${base.path.join(' -> ')}) calls no REST API`);
  }
  const definitionBytes = Buffer.byteLength(JSON.stringify(base.definition), 'utf8');
  const messageBytes = options.taskTokenBytes + SIZE_BYTES.requestId + SIZE_BYTES.callMessageOverhead;
  // The execution input (message and its fields) and the vendor's answer it carries back.
  const executionDataBytes = 2 * messageBytes + SIZE_BYTES.callResponseBody + 200;
  const memoryMb = expressMemoryMb(definitionBytes, executionDataBytes);
  const billedMs = Math.ceil(walk.durationMs / EXPRESS_DURATION_STEP_MS) * EXPRESS_DURATION_STEP_MS;
  c.derivation.push(`result fetch (callVendorTask ${c.callStates.join(', ')}, costed per fetch): vendor-call workflow ${base.logicalId} (${base.type}): `
    + `happy path ${base.path.join(' -> ')} (${base.path.length} states)`);
  for (const line of walk.taskLines) {
    c.derivation.push(`  ${line}`);
  }
  c.derivation.push(`  duration ${base.path.length} x ${LATENCY_MS.stateTransition} ms + tasks = ${walk.durationMs} ms, billed ${billedMs} ms; `
    + `memory ${EXPRESS_BASE_MEMORY_MB} MB + definition ${fmtBytes(definitionBytes)} + execution data ${fmtBytes(executionDataBytes)}, billed ${memoryMb} MB`);

  const feed = { ...model.requestFeed, messageBytes };
  const lines: UsageLine[] = [];
  lines.push({
    service: 'stepFunctionsStandard',
    what: `${c.main.logicalId} ${c.callStates.join(', ')} transition`,
    perRequest: 1,
    price: 'sfnStandardTransition',
    derivation: 'the callVendorTask state (sqs:sendMessage.waitForTaskToken, kind call): 1 per fetch',
  });
  lines.push({ service: 'stepFunctionsExpress', what: `${base.logicalId} executions`, perRequest: 1, price: 'sfnExpressRequest', derivation: 'one per fetch (no retry on the happy path)' });
  lines.push({
    service: 'stepFunctionsExpress',
    what: `${base.logicalId} duration`,
    perRequest: (billedMs / 1000) * (memoryMb / 1024),
    price: 'sfnExpressGbSecond',
    derivation: `${billedMs} ms x ${memoryMb} MB`,
  });
  lines.push(...lambdaLines('dispatcher (fetch message)', model.requestFeed.function, model.dispatcher, feed.fill, model.dispatcher.msPerRequest)
    .map((l) => ({ ...l, derivation: `${l.derivation}; a fetch message shares the request queue's batches and slots` })));
  for (const task of walk.lambdaTasks) {
    lines.push(...lambdaLines(`${task.state} (vendor-call task)`, task.fn.logicalId, functionModel(task.fn), 1, LATENCY_MS.lambdaInvoke));
  }
  const caller = walk.callerTasks[0] ? { ...functionModel(walk.callerTasks[0].fn), msPerCall: c.callerMs, durationRule: model.vendorCaller?.durationRule ?? '' } : undefined;
  if (caller) {
    lines.push(...callerLines(caller, 'vendor-call'));
  }
  lines.push(...sqsLines('request queue (fetch message)', feed, `${c.callStates.join(', ')} (main workflow)`));
  for (const state of walk.sqsTasks) {
    lines.push({ service: 'sqs', what: `${state} (vendor-call task) SendMessage`, perRequest: 1, price: 'sqsRequest', derivation: 'a Task on the happy path' });
  }
  lines.push({
    service: 'apiGateway',
    what: `${model.proxy.logicalId} (proxy) calls`,
    perRequest: walk.proxyCalls,
    price: 'apiGatewayRestRequest',
    derivation: caller ? 'the vendor caller\'s request through the proxy' : 'apigateway:invoke tasks on the vendor-call happy path',
  });
  lines.push(...auditLines(t, walk.proxyCalls));
  lines.push({
    service: 'dynamodb',
    what: `pacer ${model.pacerTable} reservation write`,
    perRequest: 1 / feed.fill,
    price: 'dynamodbWriteRequestUnit',
    derivation: `1 conditional UpdateItem per batch of ${fmt(feed.fill)}, shared with the submissions`,
  });
  lines.push({
    service: 'dynamodb',
    what: `pacer ${model.pacerTable} reservation read`,
    perRequest: 1 / feed.fill,
    price: 'dynamodbReadRequestUnit',
    derivation: `1 strongly consistent GetItem per batch of ${fmt(feed.fill)}, shared with the submissions`,
  });
  if (caller) {
    lines.push(callerPacerRead(model.pacerTable), callerSlotClaim(model.pacerTable));
    lines.push(...callerQuotaWrites(model.pacerTable, model.vendorCaller?.quotas ?? 0));
  }
  // The workflow's own writes on its happy path (ClaimCall: the call's claim item).
  lines.push(...tracker.writes.map(writeLine));
  const proxyLogBytes = model.proxy.accessLogBytes + model.proxy.executionLogBytes;
  lines.push(logLine(`${model.proxy.logicalId} (proxy) API logs`, proxyLogBytes, proxyLogBytes === 0 ? 'no access or execution logging' : 'access log line from the stage\'s format'));
  lines.push(logLine('dispatcher logs (fetch message)', lambdaLogBytesPerRequest(model.dispatcher, feed.fill, 1, true),
    `START/END/REPORT + one EMF document per invocation / ${fmt(feed.fill)}${model.dispatcher.infoLogs ? ', one INFO line per started execution' : ''}`));
  if (base.logBytesPerExecution > 0) {
    lines.push(logLine(`${base.logicalId} (vendor-call) execution logs`, base.logBytesPerExecution, 'log level ALL: every state event'));
  }
  lines.push(...perKeyCredentialLines(model.perKeyCredential, options.keys ?? DEFAULT_KEYS, options.trafficRps));
  // A fetch is a call of its key too (per-key limits make the key required on every task); it holds no job place.
  lines.push(...(model.perKeyLimits ? perKeyLines(model.perKeyLimits, c.perKeyFunctions, false) : []));
  lines.push({
    service: 'secretsManager',
    what: 'GetSecretValue calls',
    perRequest: walk.secretCalls,
    price: 'secretsManagerApiCall',
    derivation: walk.secretCalls > 0 ? 'a GetSecretValue task on the vendor-call happy path' : 'none: no vendor credential is read per fetch',
  });
  return {
    callStates: c.callStates,
    perRequest: c.callStates.length,
    workflow: base.logicalId,
    path: base.path,
    usage: {
      name: 'result fetch (callVendorTask)',
      description: `${c.callStates.join(', ')} in ${c.main.logicalId}: a paced vendor request through the queue, ${base.logicalId}, `
        + `${caller ? 'the vendor caller' : 'apigateway:invoke'} and the proxy; SendTaskSuccess resumes the workflow (no charge)`,
      lines,
      monthly: [],
    },
  };
}

/** Invocation, duration and log lines of the vendor caller, one invocation per vendor request. */
function callerLines(caller: FunctionModel & { readonly msPerCall: number; readonly durationRule: string }, workflow: string): UsageLine[] {
  return [
    { service: 'lambda', what: `vendor caller invocations (${workflow})`, perRequest: 1, price: 'lambdaRequest', derivation: `${caller.logicalId}: 1 per vendor request (lambda:invoke task CallVendor)` },
    {
      service: 'lambda',
      what: `vendor caller duration (${workflow})`,
      perRequest: (caller.msPerCall / 1000) * (caller.memoryMb / 1024),
      price: caller.arm ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86',
      derivation: `${fmt(caller.msPerCall, 1)} ms x ${caller.memoryMb} MB (${caller.arm ? 'arm64' : 'x86_64'}): ${caller.durationRule}`,
    },
    logLine(`vendor caller logs (${workflow})`, lambdaLogBytesPerRequest(caller, 1, 1, true),
      `START/END/REPORT + one EMF document per invocation${caller.infoLogs ? ', one INFO line (called the vendor)' : ''}`),
  ];
}

/** One DynamoDB write of a happy path as a usage line. */
function writeLine(write: Parameters<typeof describeWrite>[0]): UsageLine {
  return {
    service: 'dynamodb',
    what: `${write.by} write`,
    perRequest: write.writeUnits + write.indexWriteUnits,
    price: 'dynamodbWriteRequestUnit',
    derivation: describeWrite(write),
  };
}

/**
 * The vendor caller's claim of the slot it was given (pacer.ts, claimSlot): one conditional PutItem
 * of a small item per call, so that a slot is fired once even when two invocations carry it.
 */
function callerSlotClaim(pacerTable: string): UsageLine {
  return {
    service: 'dynamodb',
    what: `vendor caller ${pacerTable} PutItem (slot claim)`,
    perRequest: 1,
    price: 'dynamodbWriteRequestUnit',
    derivation: 'one conditional PutItem of slot#<slotAtMs> (< 1 KB: 1 WRU) before the slot, so a duplicate invocation cannot fire it too; '
      + 'a caller late for its slot reserves a fresh one instead (1 UpdateItem, no claim): at most one write per call. '
      + 'The item expires an hour after its slot (TTL deletes are free; storage until then is negligible)',
  };
}

/**
 * The dispatcher's quota check (issue 14): one strongly consistent GetItem per quota per batch, so a
 * batch that finds a quota spent takes no slot; none without quotas.
 */
function dispatcherQuotaReads(pacerTable: string, quotas: number, fill: number): UsageLine[] {
  if (quotas === 0) {
    return [];
  }
  return [{
    service: 'dynamodb',
    what: `dispatcher ${pacerTable} GetItem (quota counters)`,
    perRequest: quotas / fill,
    price: 'dynamodbReadRequestUnit',
    derivation: `1 strongly consistent GetItem per quota (${quotas}) per batch of ${fmt(fill)}, before slots are reserved`,
  }];
}

/** How many quotas the vendor caller spends per call (its QUOTAS variable; none without it). */
function quotaCount(env: Record<string, string>): number {
  const raw = env[VendorCallerEnv.QUOTAS];
  return raw ? (JSON.parse(raw) as unknown[]).length : 0;
}

/**
 * The vendor caller's quota units (issue 14): one conditional UpdateItem per quota per call on the
 * counter of the period the call fires in (quota-ledger.ts); none without quotas.
 */
function callerQuotaWrites(pacerTable: string, quotas: number): UsageLine[] {
  if (quotas === 0) {
    return [];
  }
  return [{
    service: 'dynamodb',
    what: `vendor caller ${pacerTable} UpdateItem (quota units)`,
    perRequest: quotas,
    price: 'dynamodbWriteRequestUnit',
    derivation: `one conditional ADD per quota per call (${quotas} quota(s), < 1 KB: 1 WRU each) on quota#<name>#<periodStart>; `
      + 'a slot within 250 ms of a period boundary spends in both periods (one more write, a fraction 0.5 s / period of the calls: '
      + 'negligible for hours and days); counters expire a day after their period (TTL deletes are free)',
  }];
}

/** The vendor caller's pause check: a strongly consistent GetItem of the pacer item before its slot. */
function callerPacerRead(pacerTable: string): UsageLine {
  return {
    service: 'dynamodb',
    what: `vendor caller ${pacerTable} GetItem (pause check)`,
    perRequest: 1,
    price: 'dynamodbReadRequestUnit',
    derivation: 'strongly consistent read of the pacer item (< 4 KB) before the slot: 1 RRU per call; no fresh reservation while the given slot is on time',
  };
}

/** What the tasks of a workflow's happy path use. */
interface TaskWalk {
  readonly durationMs: number;
  readonly proxyCalls: number;
  readonly proxyApiId?: string;
  readonly secretCalls: number;
  readonly lambdaTasks: Array<{ state: string; fn: ResolvedResource }>;
  /** lambda:invoke tasks of the vendor caller (PROXY_ENDPOINT_URL in its environment). */
  readonly callerTasks: Array<{ state: string; fn: ResolvedResource }>;
  readonly sqsTasks: string[];
  readonly taskLines: string[];
}

/** Walks the tasks of a workflow's happy path: what each costs and how long it takes. */
function walkTasks(t: LocalTemplate, wf: WorkflowModel, role: string, tables: ItemTracker, options: DeriveOptions, callerMs: number): TaskWalk {
  let durationMs = 0;
  let proxyCalls = 0;
  let proxyApiId: string | undefined;
  let secretCalls = 0;
  const lambdaTasks: Array<{ state: string; fn: ResolvedResource }> = [];
  const callerTasks: Array<{ state: string; fn: ResolvedResource }> = [];
  const sqsTasks: string[] = [];
  const taskLines: string[] = [];
  for (const name of wf.path) {
    const state = wf.definition.States[name];
    durationMs += LATENCY_MS.stateTransition;
    if (state.Type !== 'Task') continue;
    const resource = state.Resource ?? '';
    const params = state.Parameters ?? state.Arguments ?? {};
    const dynamo = /^arn:aws:states:::(?:aws-sdk:)?dynamodb:(\w+)$/.exec(resource);
    if (dynamo) {
      const table = tableByName(t, String(params.TableName));
      const op = dynamo[1].toLowerCase();
      if (op === 'updateitem' || op === 'putitem' || op === 'deleteitem') {
        const write = tables.write(table, name, params);
        taskLines.push(`${name}: DynamoDB ${dynamo[1]} on ${table.logicalId}, ${describeWrite(write)}`);
      } else {
        throw new Error(`${role} state ${name}: DynamoDB ${dynamo[1]} on the happy path is not modeled (cost/derive.ts)`);
      }
      durationMs += LATENCY_MS.dynamodbCall;
    } else if (resource === 'arn:aws:states:::apigateway:invoke') {
      const host = String(params.ApiEndpoint ?? '');
      const api = t.ofType('AWS::ApiGateway::RestApi').find((a) => host.split('.')[0] === t.ref(a.logicalId));
      if (!api) {
        throw new Error(`${role} state ${name} calls ${host}, which is not a REST API of this stack`);
      }
      proxyCalls += 1;
      proxyApiId = api.logicalId;
      durationMs += LATENCY_MS.apiGatewayOverhead + options.vendorLatencyMs;
      taskLines.push(`${name}: API Gateway ${api.logicalId} -> vendor (${LATENCY_MS.apiGatewayOverhead} ms + vendor ${options.vendorLatencyMs} ms)`);
    } else if (resource === 'arn:aws:states:::aws-sdk:secretsmanager:getSecretValue') {
      secretCalls += 1;
      durationMs += LATENCY_MS.secretsManagerCall;
      taskLines.push(`${name}: Secrets Manager GetSecretValue (vendor credential), 1 API call`);
    } else if (/^arn:aws:states:::lambda:invoke$/.test(resource)) {
      const fnName = String(params.FunctionName ?? params['FunctionName.$']);
      const fn = t.findByArn(fnName) ?? t.findByName(fnName, 'AWS::Lambda::Function');
      if (!fn) {
        throw new Error(`${role} state ${name} invokes ${fnName}, which is not a function of this stack`);
      }
      const proxyUrl = envOf(fn)[VendorCallerEnv.PROXY_ENDPOINT_URL];
      if (proxyUrl !== undefined) {
        const api = proxyApiOf(t, proxyUrl);
        callerTasks.push({ state: name, fn });
        proxyCalls += 1;
        proxyApiId = api.logicalId;
        durationMs += LATENCY_MS.lambdaInvoke + callerMs;
        taskLines.push(`${name}: Lambda ${fn.logicalId} (vendor caller), 1 invocation: waits for its pacing slot, then API Gateway ${api.logicalId} -> vendor `
          + `(${LATENCY_MS.lambdaInvoke} ms invoke + ${callerMs} ms caller)`);
      } else {
        lambdaTasks.push({ state: name, fn });
        durationMs += LATENCY_MS.lambdaInvoke;
        // The proxy's credential function for a JSON secret (SECRET_FIELD, as in vendor-secret.ts)
        // reads the secret on every invocation (no cache); in its per-key mode (SECRET_NAME_PATTERN,
        // vendor-secret-per-key.ts) it caches per key: priced per-key-credentials.ts, not per call.
        const readsSecret = envOf(fn).SECRET_FIELD !== undefined && envOf(fn).SECRET_NAME_PATTERN === undefined;
        if (readsSecret) {
          secretCalls += 1;
          durationMs += LATENCY_MS.secretsManagerCall;
        }
        taskLines.push(`${name}: Lambda ${fn.logicalId}, 1 invocation${readsSecret ? ' (reads the vendor secret: Secrets Manager GetSecretValue, 1 API call)' : ''}`);
      }
    } else if (/^arn:aws:states:::(?:aws-sdk:)?sqs:sendMessage$/.test(resource)) {
      sqsTasks.push(name);
      durationMs += LATENCY_MS.sqsCall;
      taskLines.push(`${name}: SQS SendMessage, 1 request`);
    } else if (/^arn:aws:states:::aws-sdk:sfn:sendTask(Heartbeat|Success)$/.test(resource)) {
      // Step Functions API calls are not billed; the call only adds to the Express duration.
      durationMs += LATENCY_MS.sendTaskSuccess;
      taskLines.push(resource.endsWith('Heartbeat')
        ? `${name}: Step Functions SendTaskHeartbeat (is the workflow still waiting?), no charge`
        : `${name}: Step Functions SendTaskSuccess (resumes the waiting workflow), no charge`);
    } else {
      throw new Error(`${role} state ${name} (${resource}) is on the happy path but the cost model does not know what it costs: add it to cost/derive.ts`);
    }
  }
  return { durationMs, proxyCalls, proxyApiId, secretCalls, lambdaTasks, callerTasks, sqsTasks, taskLines };
}

/** The proxy REST API the vendor caller calls: the API its PROXY_ENDPOINT_URL names, else the one REST API that is not a webhook. */
function proxyApiOf(t: LocalTemplate, url: string): ResolvedResource {
  const host = url.replace(/^https?:\/\//, '').split('/')[0];
  const apis = t.ofType('AWS::ApiGateway::RestApi');
  const named = apis.find((a) => host.split('.')[0] === t.ref(a.logicalId));
  if (named) return named;
  const sqsBacked = new Set(t.ofType('AWS::ApiGateway::Method')
    .filter((m) => /:sqs:path\//.test(String(m.properties.Integration?.Uri ?? '')))
    .map((m) => String(m.properties.RestApiId)));
  const proxies = apis.filter((a) => !sqsBacked.has(String(t.ref(a.logicalId))));
  if (proxies.length !== 1) {
    throw new Error(`The vendor caller calls ${url}: no single proxy REST API in stack ${t.stackName} (${proxies.map((a) => a.logicalId).join(', ') || 'none'})`);
  }
  return proxies[0];
}

/** Express memory: 50 MB + definition + execution data, billed in 64 MB chunks. */
function expressMemoryMb(definitionBytes: number, executionDataBytes: number): number {
  const usedMb = EXPRESS_BASE_MEMORY_MB + (definitionBytes + executionDataBytes) / 1024 ** 2;
  return Math.ceil(usedMb / EXPRESS_MEMORY_CHUNK_MB) * EXPRESS_MEMORY_CHUNK_MB;
}

// -----------------------------------------------------------------------------------------------
// Shared by the comparisons

/** Invocation and duration lines of a Lambda function. */
export function lambdaLines(role: string, logicalId: string, fn: FunctionModel, fill: number, msPerRequest: number): UsageLine[] {
  return [
    { service: 'lambda', what: `${role} invocations`, perRequest: 1 / fill, price: 'lambdaRequest', derivation: `${logicalId}: 1 per batch of ${fmt(fill)}` },
    {
      service: 'lambda',
      what: `${role} duration`,
      perRequest: (msPerRequest / 1000) * (fn.memoryMb / 1024),
      price: fn.arm ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86',
      derivation: `${fmt(msPerRequest, 1)} ms per request x ${fn.memoryMb} MB (${fn.arm ? 'arm64' : 'x86_64'})`,
    },
  ];
}

/** SendMessage, ReceiveMessage and DeleteMessageBatch of one queue. */
export function sqsLines(role: string, feed: QueueFeed, sender: string): UsageLine[] {
  const chunks = Math.ceil(feed.messageBytes / SQS_CHUNK_BYTES);
  const receives = Math.max(Math.ceil(feed.fill / SQS_MESSAGES_PER_CALL), Math.ceil((feed.fill * feed.messageBytes) / SQS_CHUNK_BYTES));
  const deletes = Math.ceil(feed.fill / SQS_MESSAGES_PER_CALL);
  return [
    { service: 'sqs', what: `${role} SendMessage`, perRequest: chunks, price: 'sqsRequest', derivation: `by ${sender}, ${fmtBytes(feed.messageBytes)}: ${chunks} x 64 KB chunk` },
    {
      service: 'sqs',
      what: `${role} ReceiveMessage`,
      perRequest: receives / feed.fill,
      price: 'sqsRequest',
      derivation: `${receives} per batch of ${fmt(feed.fill)} (up to 10 messages and 64 KB per request)`,
    },
    { service: 'sqs', what: `${role} DeleteMessageBatch`, perRequest: deletes / feed.fill, price: 'sqsRequest', derivation: `${deletes} per batch of ${fmt(feed.fill)}` },
  ];
}

/** Log bytes of one invocation's worth of a function, spread over its batch. */
export function lambdaLogBytesPerRequest(fn: FunctionModel, fill: number, infoLinesPerRequest: number, emf: boolean): number {
  const perInvocation = fn.platformLogBytes + (emf ? SIZE_BYTES.emfDocument + SIZE_BYTES.logEventOverhead : 0);
  const perRequest = fn.infoLogs ? infoLinesPerRequest * (SIZE_BYTES.powertoolsInfoLine + SIZE_BYTES.logEventOverhead) : 0;
  return perInvocation / fill + perRequest;
}

/** A CloudWatch Logs ingestion line. */
export function logLine(what: string, bytesPerRequest: number, derivation: string): UsageLine {
  return { service: 'cloudwatchLogs', what, perRequest: bytesPerRequest / BYTES_PER_GB, price: 'logsIngestedGb', derivation: `${fmtBytes(bytesPerRequest)} per request: ${derivation}` };
}

/** Average batch size of an event source mapping at a rate. */
export function batchFill(batchSize: number, windowSeconds: number, trafficRps: number, backlogged: boolean): { fill: number; rule: string } {
  if (backlogged) {
    return { fill: batchSize, rule: `backlog: every batch is full (${batchSize})` };
  }
  const gather = windowSeconds > 0 ? windowSeconds : POLL_GATHER_SECONDS;
  const fill = Math.min(batchSize, Math.max(1, trafficRps * gather));
  const how = windowSeconds > 0
    ? `the ${windowSeconds} s batching window gathers ${fmt(trafficRps)} rps x ${windowSeconds} s`
    : `no batching window: a poll returns what arrived in ~${POLL_GATHER_SECONDS} s (${fmt(trafficRps)} rps x ${POLL_GATHER_SECONDS} s)`;
  return { fill, rule: `${how}, so ${fmt(fill)} message${fill === 1 ? '' : 's'} per batch (between 1 and ${batchSize})` };
}

// -----------------------------------------------------------------------------------------------
// Template readers

function validateOptions(options: DeriveOptions): void {
  const positive: Array<keyof DeriveOptions> = ['trafficRps'];
  const nonNegative: Array<keyof DeriveOptions> = ['vendorLatencyMs', 'payloadBytes', 'callbackBytes', 'taskTokenBytes'];
  for (const key of positive) {
    if (!Number.isFinite(options[key]) || options[key]! <= 0) throw new Error(`${key} must be a number greater than 0, got ${options[key]}`);
  }
  for (const key of nonNegative) {
    if (!Number.isFinite(options[key]) || options[key]! < 0) throw new Error(`${key} must be a number >= 0, got ${options[key]}`);
  }
  if (options.keyCallRps !== undefined && (!Number.isFinite(options.keyCallRps) || options.keyCallRps <= 0)) {
    throw new Error(`keyCallRps must be a number greater than 0 (calls per second of each active key), got ${options.keyCallRps}`);
  }
  if (options.keys !== undefined && (!Number.isInteger(options.keys) || options.keys < 1)) {
    throw new Error(`keys must be a whole number >= 1 (request keys with a secret each), got ${options.keys}`);
  }
}

/**
 * The custom metrics (EMF) the handlers publish on the happy path of this template, each with its
 * publisher: every distinct metric name is billed a month (one Scope dimension each). Read from
 * the functions' environment, as the handlers decide (dispatch.ts, vendor-call.ts,
 * callback-processing.ts).
 */
export function happyPathMetrics(t: LocalTemplate, model: Pick<StackModel, 'vendorCaller'>): string[] {
  const dispatcherEnv = envOf(functionWithEnv(t, [ConsumerEnv.STATE_MACHINE_ARN, ConsumerEnv.PACER_TABLE_NAME], 'queue consumer (dispatcher)'));
  const names = [`${MetricNames.DISPATCHED_REQUESTS} (dispatcher)`, `${MetricNames.PACING_WAIT} (dispatcher)`];
  if (dispatcherEnv[DynamicDelayEnv.APPLICATION_ID] !== undefined) {
    names.push(`${MetricNames.RATE_IN_FORCE} (dispatcher, with the run-time rate)`);
  }
  if (dispatcherEnv[ConsumerEnv.ADAPTIVE_PACING] !== undefined) {
    names.push(`${MetricNames.EFFECTIVE_RATE} (dispatcher, adaptive pacing)`);
  }
  if (model.vendorCaller) {
    names.push(`${MetricNames.VENDOR_CALLS} (vendor caller)`, `${MetricNames.VENDOR_CALL_LATENESS} (vendor caller)`);
    if (model.vendorCaller.quotas > 0) names.push(`${MetricNames.QUOTA_UNITS_SPENT} (vendor caller, quotas)`);
  }
  names.push(`${MetricNames.CALLBACKS_RESOLVED} (processor)`, `${MetricNames.CALLBACK_LATENCY} (processor)`);
  return names;
}

function envOf(fn: ResolvedResource): Record<string, string> {
  return (fn.properties.Environment?.Variables ?? {}) as Record<string, string>;
}

function numberEnv(env: Record<string, string>, name: string, fn: ResolvedResource): number {
  const value = Number(env[name]);
  if (env[name] === undefined || !Number.isFinite(value)) {
    throw new Error(`${fn.logicalId}: environment variable ${name} is ${JSON.stringify(env[name])}, expected a number`);
  }
  return value;
}

function functionWithEnv(t: LocalTemplate, names: string[], role: string): ResolvedResource {
  const found = t.ofType('AWS::Lambda::Function').filter((fn) => names.every((n) => envOf(fn)[n] !== undefined));
  if (found.length === 0) {
    throw new Error(`Stack ${t.stackName} has no ${role} (a Lambda function with ${names.join(' and ')} in its environment): is there an AsyncExternalApiOrchestrator in it?`);
  }
  if (found.length > 1) {
    throw new Error(`Stack ${t.stackName} has ${found.length} ${role}s (${found.map((f) => f.logicalId).join(', ')}): the cost model prices one orchestrator per stack`);
  }
  return found[0];
}

function feedOf(t: LocalTemplate, fnId: string): ResolvedResource {
  const names = [t.nameOf(fnId), t.arnOf(fnId)];
  const found = t.ofType('AWS::Lambda::EventSourceMapping').filter((e) => names.includes(String(e.properties.FunctionName)));
  if (found.length !== 1) {
    throw new Error(`${fnId} has ${found.length} event source mappings, expected 1`);
  }
  return found[0];
}

function feedModel(esm: ResolvedResource, queue: string, fn: string, trafficRps: number, backlogged: boolean, messageBytes: number): QueueFeed {
  const batchSize = Number(esm.properties.BatchSize ?? 10);
  const batchingWindowSeconds = Number(esm.properties.MaximumBatchingWindowInSeconds ?? 0);
  const maxConcurrency = esm.properties.ScalingConfig?.MaximumConcurrency;
  const { fill, rule } = batchFill(batchSize, batchingWindowSeconds, trafficRps, backlogged);
  return {
    queue,
    function: fn,
    batchSize,
    batchingWindowSeconds,
    fill,
    fillRule: rule,
    messageBytes,
    ...(maxConcurrency !== undefined ? { maxConcurrency: Number(maxConcurrency) } : {}),
  };
}

export function functionModel(fn: ResolvedResource): FunctionModel {
  const env = envOf(fn);
  const logging = fn.properties.LoggingConfig ?? {};
  const level = String(env.POWERTOOLS_LOG_LEVEL ?? env.LOG_LEVEL ?? logging.ApplicationLogLevel ?? 'INFO').toUpperCase();
  const json = logging.LogFormat === 'JSON';
  const systemLevel = String(logging.SystemLogLevel ?? 'INFO').toUpperCase();
  const platform = json && (systemLevel === 'WARN' || systemLevel === 'ERROR')
    ? 0
    : (json ? SIZE_BYTES.lambdaPlatformLogsJson : SIZE_BYTES.lambdaPlatformLogsText) + 3 * SIZE_BYTES.logEventOverhead;
  return {
    logicalId: fn.logicalId,
    memoryMb: Number(fn.properties.MemorySize ?? 128),
    arm: (fn.properties.Architectures ?? []).includes('arm64'),
    infoLogs: ['TRACE', 'DEBUG', 'INFO'].includes(level),
    platformLogBytes: platform,
  };
}

function workflowModel(t: LocalTemplate, sm: ResolvedResource, options: DeriveOptions,
  avoid?: (name: string, state: AslState) => boolean): WorkflowModel {
  const definition = t.definitionOf(sm.logicalId) as AslDefinition;
  const type = sm.properties.StateMachineType === 'EXPRESS' ? 'EXPRESS' : 'STANDARD';
  const path = happyPath(definition, `${sm.logicalId} (${type})`, avoid);
  const logging = sm.properties.LoggingConfiguration;
  let logBytesPerExecution = 0;
  if (logging && String(logging.Level).toUpperCase() === 'ALL') {
    const tasks = path.filter((s) => definition.States[s].Type === 'Task').length;
    const events = 2 + 2 * path.length + 3 * tasks;
    const perEvent = SIZE_BYTES.stepFunctionsLogEvent + SIZE_BYTES.logEventOverhead
      + (logging.IncludeExecutionData ? options.payloadBytes + options.taskTokenBytes : 0);
    logBytesPerExecution = events * perEvent;
  }
  return { logicalId: sm.logicalId, type, definition, path, logBytesPerExecution, tracing: sm.properties.TracingConfiguration?.Enabled === true };
}

/** The name of the state that submits a job (submitJobTask) to the request queue and waits for the token, if any. */
function submitStateOf(definition: AslDefinition, requestQueueUrl: string): string | undefined {
  return Object.entries(definition.States).find(([, s]) => waitsOnRequestQueue(s, requestQueueUrl) && !isCallState(s, requestQueueUrl))?.[0];
}

function waitsOnRequestQueue(state: AslState, requestQueueUrl: string): boolean {
  return state.Type === 'Task' && state.Resource === 'arn:aws:states:::sqs:sendMessage.waitForTaskToken'
    && (state.Parameters ?? state.Arguments ?? {}).QueueUrl === requestQueueUrl;
}

/** A callVendorTask state: it sends a message of kind `call` to the request queue and waits. */
function isCallState(state: AslState | undefined, requestQueueUrl: string): boolean {
  if (!state || !waitsOnRequestQueue(state, requestQueueUrl)) return false;
  const body = (state.Parameters ?? state.Arguments ?? {}).MessageBody;
  return typeof body === 'object' && body !== null && (body as Record<string, unknown>).kind === 'call';
}

function tableByName(t: LocalTemplate, name: string): ResolvedResource {
  const table = t.findByName(name, 'AWS::DynamoDB::Table');
  if (!table) {
    throw new Error(`Stack ${t.stackName} has no table ${name}`);
  }
  return table;
}

function apiModel(t: LocalTemplate, apiId: string, bodyBytes: number): ApiModel {
  const ref = t.ref(apiId);
  const stage = t.ofType('AWS::ApiGateway::Stage').find((s) => s.properties.RestApiId === ref);
  if (!stage) {
    throw new Error(`REST API ${apiId} has no stage`);
  }
  const format = stage.properties.AccessLogSetting?.Format as string | undefined;
  let accessLogBytes = 0;
  if (stage.properties.AccessLogSetting?.DestinationArn !== undefined) {
    const text = format ?? '$context.requestId';
    const variables = [...text.matchAll(/\$context\.([A-Za-z.]+[A-Za-z])/g)].map((m) => m[1]);
    const literal = text.replace(/\$context\.([A-Za-z.]+[A-Za-z])/g, '');
    accessLogBytes = Buffer.byteLength(literal, 'utf8')
      + variables.reduce((sum, v) => sum + (ACCESS_LOG_VARIABLE_BYTES[v] ?? SIZE_BYTES.accessLogVariableDefault), 0)
      + SIZE_BYTES.logEventOverhead;
  }
  const settings = (stage.properties.MethodSettings ?? []) as Array<Record<string, unknown>>;
  const all = settings.find((s) => s.HttpMethod === '*' && s.ResourcePath === '/*') ?? {};
  const executionLogBytes = (String(all.LoggingLevel ?? 'OFF').toUpperCase() === 'INFO' ? SIZE_BYTES.apiGatewayExecutionLogInfo : 0)
    + (all.DataTraceEnabled === true ? 2 * bodyBytes : 0);
  return {
    logicalId: apiId,
    stage: String(stage.properties.StageName),
    accessLogBytes,
    executionLogBytes,
    detailedMetrics: all.MetricsEnabled === true,
    tracing: stage.properties.TracingEnabled === true,
  };
}

function logLines(model: StackModel, requestFeed: QueueFeed, callbackFeed: QueueFeed, taskFunctions: FunctionModel[]): UsageLine[] {
  const lines: UsageLine[] = [];
  for (const [role, api] of [['proxy', model.proxy], ['webhook', model.webhook]] as const) {
    const bytes = api.accessLogBytes + api.executionLogBytes;
    lines.push(logLine(`${api.logicalId} (${role}) API logs`, bytes, bytes === 0 ? 'no access or execution logging'
      : `access log line from the stage's format${api.executionLogBytes > 0 ? ' + execution logs' : ''}; no execution logs at this level`));
  }
  lines.push(logLine(`${model.dispatch.logicalId} (dispatch) execution logs`, model.dispatch.logBytesPerExecution,
    model.dispatch.logBytesPerExecution > 0 ? 'log level ALL: every state event' : 'log level ERROR or OFF: nothing on the happy path'));
  if (model.main.logBytesPerExecution > 0) {
    lines.push(logLine(`${model.main.logicalId} (main) execution logs`, model.main.logBytesPerExecution, 'log level ALL: every state event'));
  }
  lines.push(logLine('dispatcher logs', lambdaLogBytesPerRequest(model.dispatcher, requestFeed.fill, 1, true),
    `START/END/REPORT + one EMF document per invocation / ${fmt(requestFeed.fill)}${model.dispatcher.infoLogs ? ', one INFO line per started execution' : ''}`));
  lines.push(logLine('callback processor logs', lambdaLogBytesPerRequest(model.processor, callbackFeed.fill, 1, true),
    `START/END/REPORT + one EMF document per invocation / ${fmt(callbackFeed.fill)}${model.processor.infoLogs ? ', one INFO line per resumed workflow' : ''}`));
  for (const fn of taskFunctions) {
    lines.push(logLine(`${fn.logicalId} logs`, lambdaLogBytesPerRequest(fn, 1, 0, false), 'START/END/REPORT per invocation'));
  }
  return lines;
}

function tracingOf(t: LocalTemplate, model: StackModel): string[] {
  const traced: string[] = [];
  if (model.dispatch.tracing) traced.push(model.dispatch.logicalId);
  if (model.main.tracing) traced.push(model.main.logicalId);
  if (model.proxy.tracing) traced.push(model.proxy.logicalId);
  if (model.webhook.tracing) traced.push(model.webhook.logicalId);
  for (const fn of t.ofType('AWS::Lambda::Function')) {
    if (fn.properties.TracingConfig?.Mode === 'Active') traced.push(fn.logicalId);
  }
  return traced;
}

/**
 * The key rules (issue 15, orchestrator/key-insights.ts): they rank keys by the handlers' EMF
 * property `requestKey`; every other rule is the proxy's access log audit.
 */
function isKeyRule(rule: { properties: Record<string, any> }): boolean {
  return JSON.stringify(rule.properties.RuleBody ?? '').includes('requestKey');
}

/**
 * The access log audit (README, "Audit"): each proxy call's log line matches each of its Contributor
 * Insights rules. The key rules (issue 15) match at most one EMF document per request each (one per
 * key per handler invocation): an upper bound of 1 per request per rule.
 */
function auditLines(t: LocalTemplate, proxyCalls: number): UsageLine[] {
  const all = t.ofType('AWS::CloudWatch::InsightRule');
  const keyRules = all.filter(isKeyRule).length;
  const rules = all.length - keyRules;
  return [
    ...(rules === 0 ? [] : [{
      service: 'cloudwatch' as const,
      what: 'Contributor Insights matched log events (proxy access log audit)',
      perRequest: rules * proxyCalls,
      price: 'contributorInsightsEvent' as const,
      derivation: `${rules} AWS::CloudWatch::InsightRule x ${fmt(proxyCalls)} proxy access log line(s)`,
    }]),
    ...(keyRules === 0 ? [] : [{
      service: 'cloudwatch' as const,
      what: KEY_RULES_EVENTS,
      perRequest: keyRules,
      price: 'contributorInsightsEvent' as const,
      derivation: `${keyRules} key rule(s) x at most 1 EMF document per request (one per key per handler invocation)`,
    }]),
  ];
}

function kmsDerivation(t: LocalTemplate): string {
  const keys = t.ofType('AWS::KMS::Key').length;
  const cmkQueues = t.ofType('AWS::SQS::Queue').filter((q) => q.properties.KmsMasterKeyId !== undefined).length;
  const cmkTables = t.ofType('AWS::DynamoDB::Table').filter((q) => q.properties.SSESpecification?.KMSMasterKeyId !== undefined).length;
  if (keys === 0 && cmkQueues === 0 && cmkTables === 0) {
    return 'none per request: queues use SQS-managed encryption, tables the AWS managed key (DynamoDB caches the table key), no customer managed key';
  }
  return `about 0 per request: ${cmkQueues} queue(s) and ${cmkTables} table(s) use a KMS key, but SQS reuses data keys (5 minutes by default) `
    + 'and DynamoDB caches the table key, so KMS sees a few requests every few minutes, not one per request';
}

function monthlyLines(t: LocalTemplate, model: StackModel, options: DeriveOptions): MonthlyLine[] {
  const lines: MonthlyLine[] = [];
  const count = (type: string) => t.ofType(type).length;
  const alarms = count('AWS::CloudWatch::Alarm');
  if (alarms > 0) lines.push({ what: 'CloudWatch alarms', quantity: alarms, price: 'cloudwatchAlarmMonth', derivation: `${alarms} AWS::CloudWatch::Alarm in the template` });
  const insightRules = t.ofType('AWS::CloudWatch::InsightRule');
  const keyRules = insightRules.filter(isKeyRule).length;
  const rules = insightRules.length - keyRules;
  if (rules > 0) lines.push({ what: 'Contributor Insights rules', quantity: rules, price: 'contributorInsightsRuleMonth', derivation: `${rules} AWS::CloudWatch::InsightRule in the template (the proxy's access log audit)` });
  if (keyRules > 0) lines.push({ what: KEY_RULES_MONTHLY, quantity: keyRules, price: 'contributorInsightsRuleMonth', derivation: `${keyRules} AWS::CloudWatch::InsightRule ranking the keys (requests carry keys)` });
  const dashboards = count('AWS::CloudWatch::Dashboard');
  if (dashboards > 0) lines.push({ what: 'CloudWatch dashboards', quantity: dashboards, price: 'cloudwatchDashboardMonth', derivation: `${dashboards} AWS::CloudWatch::Dashboard in the template` });
  const detailed = [model.proxy, model.webhook].filter((a) => a.detailedMetrics);
  if (detailed.length > 0) {
    lines.push({
      what: 'API Gateway detailed metrics',
      quantity: detailed.length * 5,
      price: 'cloudwatchMetricMonth',
      derivation: `${detailed.map((a) => a.logicalId).join(', ')}: MetricsEnabled; 1 method called x 5 metrics (Count, 4XX, 5XX, Latency, IntegrationLatency) each`,
    });
  }
  const happyMetrics = happyPathMetrics(t, model);
  lines.push({
    what: 'handler custom metrics (EMF)',
    quantity: happyMetrics.length,
    price: 'cloudwatchMetricMonth',
    derivation: `${happyMetrics.join(', ')}; one Scope dimension (what the handlers publish on the happy path; error-path metrics such as SlotsGivenUp are billed only in months they occur)`,
  });
  lines.push(...arrivalAuditMonthly(t));
  lines.push(...jobsInFlightMonthly(model.maxJobsInFlight));
  if (model.waitingRoom && model.maxJobsInFlight !== undefined) {
    lines.push(...sweepMonthly({ room: model.waitingRoom, maxJobsInFlight: model.maxJobsInFlight, dispatcher: model.dispatcher }));
  }
  lines.push(...perKeySecretsMonthly(model.perKeyCredential, options.keys ?? DEFAULT_KEYS));
  lines.push(...(model.perKeyLimits ? perKeyMonthly(model.perKeyLimits, options.keys ?? DEFAULT_KEYS) : []));
  const filters = t.ofType('AWS::Logs::MetricFilter');
  const filterMetrics = filters.reduce((sum, f) => sum + ((f.properties.MetricTransformations ?? []) as unknown[]).length, 0);
  if (filterMetrics > 0) {
    lines.push({ what: 'metric filter metrics', quantity: filterMetrics, price: 'cloudwatchMetricMonth', derivation: `${filters.length} AWS::Logs::MetricFilter in the template, one metric each` });
  }
  const secrets = count('AWS::SecretsManager::Secret');
  if (secrets > 0) lines.push({ what: 'Secrets Manager secrets', quantity: secrets, price: 'secretsManagerSecretMonth', derivation: `${secrets} AWS::SecretsManager::Secret in the template` });
  const keys = count('AWS::KMS::Key');
  if (keys > 0) lines.push({ what: 'KMS keys', quantity: keys, price: 'kmsKeyMonth', derivation: `${keys} AWS::KMS::Key in the template` });
  // Correlation items live until their TTL (TTL deletion may lag, so this is a floor).
  const items = options.trafficRps * model.correlationTtlSeconds;
  const bytesPerItem = model.correlationItemBytes + 100 + model.indexEntryBytes;
  lines.push({
    what: 'DynamoDB storage (correlation items until their TTL)',
    quantity: (items * bytesPerItem) / BYTES_PER_GB,
    price: 'dynamodbStorageGbMonth',
    derivation: `${fmt(options.trafficRps)} rps x ${model.correlationTtlSeconds} s TTL = ${Math.round(items).toLocaleString('en-US')} items x ${fmtBytes(bytesPerItem)} (item + index entry); point-in-time recovery adds about as much again`,
  });
  return lines;
}

// -----------------------------------------------------------------------------------------------
// DynamoDB items

/** Follows the items a request writes, to size every write (the larger of before and after is billed). */
class ItemTracker {
  public readonly writes: WriteCost[] = [];
  private readonly items = new Map<string, Map<string, number>>();

  constructor(private readonly options: DeriveOptions) {}

  /** Applies a write (Key + UpdateExpression SET, or Item) and records its cost. */
  public write(table: ResolvedResource, by: string, params: Record<string, any>): WriteCost {
    const item = this.items.get(table.logicalId) ?? new Map<string, number>();
    this.items.set(table.logicalId, item);
    const before = sizeOf(item);
    const indexedBefore = this.indexes(table).map((ix) => ix.keys.every((k) => item.has(k)));
    const set = new Map<string, number>();
    for (const [name, value] of Object.entries((params.Key ?? {}) as Record<string, any>)) set.set(name, this.valueBytes(name, value));
    for (const [name, value] of Object.entries((params.Item ?? {}) as Record<string, any>)) set.set(name, this.valueBytes(name, value));
    for (const [name, value] of parseSet(params)) set.set(name, this.valueBytes(name, value));
    for (const [name, bytes] of set) item.set(name, bytes);
    const after = sizeOf(item);
    let indexWriteUnits = 0;
    this.indexes(table).forEach((ix, i) => {
      const indexed = ix.keys.every((k) => item.has(k));
      const touched = [...set.keys()].some((a) => ix.keys.includes(a) || ix.projects(a));
      if ((indexed && touched) || (indexedBefore[i] && !indexed)) {
        indexWriteUnits += Math.ceil(this.entryBytes(table, ix, item) / 1024);
      }
    });
    const attributes = [...set.keys()].filter((a) => !Object.keys(params.Key ?? {}).includes(a));
    const writeUnits = Math.ceil(Math.max(before, after, 1) / 1024);
    const cost: WriteCost = { by, table: table.logicalId, attributes, itemBytes: after, writeUnits, indexWriteUnits };
    this.writes.push(cost);
    return cost;
  }

  public itemBytes(table: ResolvedResource): number {
    return sizeOf(this.items.get(table.logicalId) ?? new Map());
  }

  public indexEntryBytes(table: ResolvedResource, indexName: string): number {
    const ix = this.indexes(table).find((i) => i.name === indexName);
    if (!ix) {
      throw new Error(`Table ${table.logicalId} has no global secondary index ${indexName}`);
    }
    return this.entryBytes(table, ix, this.items.get(table.logicalId) ?? new Map());
  }

  private entryBytes(table: ResolvedResource, ix: IndexModel, item: Map<string, number>): number {
    const keys = (table.properties.KeySchema ?? []).map((k: any) => String(k.AttributeName));
    const bytes = [...item.entries()]
      .filter(([name]) => keys.includes(name) || ix.keys.includes(name) || ix.projects(name))
      .reduce((sum, [name, value]) => sum + Buffer.byteLength(name, 'utf8') + value, 0);
    return bytes + SIZE_BYTES.indexEntryOverhead;
  }

  private indexes(table: ResolvedResource): IndexModel[] {
    return ((table.properties.GlobalSecondaryIndexes ?? []) as any[]).map((gsi) => {
      const projection = gsi.Projection ?? {};
      const type = String(projection.ProjectionType ?? 'ALL');
      const include: string[] = (projection.NonKeyAttributes ?? []).map(String);
      return {
        name: String(gsi.IndexName),
        keys: (gsi.KeySchema ?? []).map((k: any) => String(k.AttributeName)),
        projects: (attribute: string) => type === 'ALL' || (type === 'INCLUDE' && include.includes(attribute)),
      };
    });
  }

  /** Bytes of a value: literals as written, `S.$`/`N.$` paths by what the attribute holds. */
  private valueBytes(attribute: string, value: unknown): number {
    if (value && typeof value === 'object') {
      const [type, literal] = Object.entries(value as Record<string, unknown>)[0] ?? [];
      if (type === 'S' && typeof literal === 'string') return Buffer.byteLength(literal, 'utf8');
      if (type === 'N' && literal !== undefined) return Math.ceil(String(literal).replace(/[^0-9]/g, '').length / 2) + 1;
    }
    switch (attribute) {
      case CorrelationAttributes.REQUEST_ID: return SIZE_BYTES.requestId;
      case CorrelationAttributes.JOB_ID: return SIZE_BYTES.jobId;
      case CorrelationAttributes.CALLBACK_TOKEN: return SIZE_BYTES.callbackToken;
      case CorrelationAttributes.TASK_TOKEN: return this.options.taskTokenBytes;
      case CorrelationAttributes.EXPIRES_AT: return SIZE_BYTES.epochSecondsNumber;
      case CorrelationAttributes.UPDATED_AT: return SIZE_BYTES.isoTimestamp;
      default: return SIZE_BYTES.unknownAttribute;
    }
  }
}

interface IndexModel {
  readonly name: string;
  readonly keys: string[];
  projects(attribute: string): boolean;
}

function sizeOf(item: Map<string, number>): number {
  return [...item.entries()].reduce((sum, [name, bytes]) => sum + Buffer.byteLength(name, 'utf8') + bytes, 0);
}

/** The attributes a `SET a = :v, #b = :w` update expression sets, with their values. */
function parseSet(params: Record<string, any>): Array<[string, unknown]> {
  const expression = String(params.UpdateExpression ?? '');
  const match = /\bSET\s+([\s\S]*?)(?=\s+\b(?:REMOVE|ADD|DELETE)\b|$)/i.exec(expression);
  if (!match) return [];
  const names = (params.ExpressionAttributeNames ?? {}) as Record<string, string>;
  const values = (params.ExpressionAttributeValues ?? {}) as Record<string, unknown>;
  const result: Array<[string, unknown]> = [];
  for (const assignment of splitTopLevel(match[1])) {
    const [lhs, rhs] = assignment.split('=').map((s) => s.trim());
    if (!lhs || rhs === undefined) continue;
    const name = names[lhs] ?? lhs;
    const valueRef = /:[A-Za-z0-9_]+/.exec(rhs)?.[0];
    result.push([name, valueRef ? values[valueRef] : undefined]);
  }
  return result;
}

function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  if (current.trim()) parts.push(current);
  return parts;
}

function describeWrite(write: WriteCost): string {
  return `${write.writeUnits} WRU (item ${fmtBytes(write.itemBytes)})${write.indexWriteUnits > 0 ? ` + ${write.indexWriteUnits} WRU index` : ''}`
    + ` [sets ${write.attributes.join(', ')}]`;
}

// -----------------------------------------------------------------------------------------------
// Formatting

/** A number for text: up to `digits` decimals, no trailing zeros. */
export function fmt(value: number, digits: number = 2): string {
  return String(Number(value.toFixed(digits)));
}

export function fmtBytes(bytes: number): string {
  return bytes >= 1024 ? `${fmt(bytes / 1024, 2)} KB` : `${Math.round(bytes)} B`;
}
