import { Annotations, Duration, Names, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { KeyInsights, keyBacklogMetric, keyRuleMetric } from './key-insights';
import { createKeySettingsAlarms, keySettingsInvalidMetric, keySettingsReadFailedMetric } from './key-settings-monitoring';
import { namedLimitWaitsMetric } from './named-limit-monitoring';
import { OrchestratorDashboard } from './orchestrator-dashboard';
import { Priority } from './priority';
import { createQuotaAlarms, quotaUsedMetric, quotaUsedPercentMetric } from './quota-monitoring';
import { jsonataKeyFields, jsonPathKeyFields, RequestKeyFields } from './request-key-fields';
import { requestQueueRoute, RequestQueueRoute, sendRequestMessage } from './request-queue-routing';
import { CallbackWebhook, CallbackWebhookOptions } from '../callback-webhook/callback-webhook';
import { contractDifferences, createKeySettingsTable, grantManageKeySettings } from '../contract/contract-state-resources';
import { addLimitEnvironment } from '../contract/limit-environment';
import { hasPerKeyLimits } from '../contract/per-key-limits-on';
import { VendorContract } from '../contract/vendor-contract';
import { IVendorContractState } from '../contract/vendor-contract-state';
import { DispatchWorkflow, DispatchWorkflowOptions } from '../dispatch-workflow/dispatch-workflow';
import { requestsCarryKey } from '../dispatch-workflow/request-key-steps';
import { VendorCallWorkflow, VendorCallWorkflowOptions } from '../dispatch-workflow/vendor-call-workflow';
import { adaptivePacingEnvironment } from '../dispatch-workflow/vendor-caller-adaptive';
import { RateControlledQueueConsumer, RateControlledQueueConsumerOptions } from '../rate-controlled-queue-consumer/rate-controlled-queue-consumer';
import { deriveRateSettings, PacingPoint } from '../rate-controlled-queue-consumer/rate-settings';
import { customMetric } from '../shared/custom-metrics';
import { CallbackEnv, ConsumerEnv } from '../shared/env';
import { KEY_LIMITS_ENV, KEY_SETTINGS_TABLE_ENV } from '../shared/key-limits';
import { ErrorNames, VENDOR_CALL_METHODS } from '../shared/messages';
import { MetricNames } from '../shared/metrics';
import { INVALID_REQUEST_KEY } from '../shared/request-key';
import { INVALID_REQUEST_PRIORITY } from '../shared/request-priority';
import { validateDuration, validateVendorUrl, validateWholeNumber } from '../shared/validation';
import { methodProblem, pathProblem } from '../shared/vendor-call';
import { orchestratorArrivalAudit } from '../throttled-proxy/arrival-audit-metrics';
import { longestVendorCallTimeout } from '../throttled-proxy/integration-timeout';
import { ThrottledProxy, ThrottledProxyOptions } from '../throttled-proxy/throttled-proxy';
import { TokenCorrelationTable, TokenCorrelationTableProps } from '../token-correlation-table/token-correlation-table';

/** Where alarm descriptions send the operator. */
const RUNBOOK = 'Runbook: docs/operations.md of cdk-async-external-api.';

/**
 * Monitoring options of an AsyncExternalApiOrchestrator: its dashboard and where its alarms go.
 * The alarms themselves always exist.
 */
export interface OrchestratorMonitoringOptions {
  /**
   * Whether to create a CloudWatch dashboard (contract vs delivered rate, backlog, callbacks,
   * dead-letter queues, failures, 429s, pacing).
   *
   * @default true
   */
  readonly dashboard?: boolean;

  /**
   * Name of the dashboard: letters, digits, `-` and `_`, at most 255 characters.
   *
   * @default - a name CloudFormation generates
   */
  readonly dashboardName?: string;

  /**
   * Actions every alarm of the orchestrator takes when it fires, including the alarms of
   * workflows registered later. More can be added with `addAlarmAction()`.
   *
   * @default - no actions
   */
  readonly alarmActions?: cloudwatch.IAlarmAction[];

  /**
   * An SNS topic every alarm of the orchestrator notifies when it fires (an alarm action, added
   * to `alarmActions`).
   *
   * @default - no topic
   */
  readonly alarmTopic?: sns.ITopic;

  /**
   * With `contract.maxJobsInFlight`: `jobsInFlightAlarm` fires when the jobs in flight stayed at
   * the limit this long (requests waiting for places). Whole minutes.
   *
   * @default Duration.minutes(15)
   */
  readonly jobsAtLimitAlarmAfter?: Duration;
}

/**
 * Properties for an AsyncExternalApiOrchestrator.
 */
export interface AsyncExternalApiOrchestratorProps {
  /**
   * The vendor's job-submission URL: https, no query string, no trailing slash (or a token).
   */
  readonly vendorUrl: string;

  /**
   * The vendor contract: every limit the orchestrator keeps (`VendorContract.of({...})`). Give
   * `contract` or `requestsPerSecond`, not both.
   *
   * @default - a contract of `requestsPerSecond` alone
   */
  readonly contract?: VendorContract;

  /**
   * The most requests per second the vendor allows: shorthand for
   * `contract: VendorContract.of({ requestsPerSecond })`. Every layer is derived from it: the pacing
   * of the queue consumer, the proxy's throttling, the backlog alarm. Give `contract` or
   * `requestsPerSecond`, not both.
   *
   * @default - `contract.requestsPerSecond`
   */
  readonly requestsPerSecond?: number;

  /**
   * The contract's state (pacer table, AppConfig rate in force) when other orchestrators call the
   * same vendor under the same contract: give each the same `VendorContractState` (or, from
   * another stack or app, one imported with `VendorContractState.fromVendorContractStateAttributes`,
   * or another orchestrator's `contractState`), and together they keep the contract once (README,
   * "Sharing a contract"). Its contract must equal this orchestrator's (refused at synth time
   * otherwise); give the dynamic delay to the state, not to `consumer.dynamicDelay`.
   *
   * @default - its own state, created by its consumer (as before sharing existed)
   */
  readonly contractState?: IVendorContractState;

  /**
   * How long a workflow waits for the vendor's callback before failing with `States.Timeout`.
   * Consider the vendor's longest processing time. Up to one year (a Standard workflow's limit).
   */
  readonly callbackTimeout: Duration;

  /**
   * Messages per consumer invocation. Same as `consumer.batchSize`; give one or the other.
   *
   * @default - the contract rounded up, at least 1 and at most 10000 (about one second of work per invocation)
   */
  readonly batchSize?: number;

  /**
   * Most concurrent consumer invocations, 2 to 1000. Same as `consumer.maxConcurrency`.
   *
   * @default 2
   */
  readonly maxConcurrency?: number;

  /**
   * Where the pacing schedule is applied. `VENDOR_CALL` keeps the contract at the vendor (a small
   * Lambda fires each request at its slot); `DISPATCH` paces StartExecution only (cheaper, but the
   * workflow's spread can exceed the contract at the vendor; the proxy throttle is then the limit).
   * Same as `consumer.pacingPoint`; give one or the other.
   *
   * @default PacingPoint.VENDOR_CALL
   */
  readonly pacingPoint?: PacingPoint;

  /**
   * Options of the request queue and its paced consumer.
   *
   * @default - derived from the contract
   */
  readonly consumer?: RateControlledQueueConsumerOptions;

  /**
   * Options of the throttled proxy in front of the vendor (credentials among them).
   *
   * @default - throttled to the contract, no vendor credentials
   */
  readonly proxy?: ThrottledProxyOptions;

  /**
   * Options of the callback webhook and its processor.
   *
   * @default - job id at `$.jobId`, every callback a success
   */
  readonly webhook?: CallbackWebhookOptions;

  /**
   * Options of the dispatch workflow.
   *
   * @default - webhook URL in the body field `callbackUrl`, job id at `$.jobId`, 5 attempts
   */
  readonly dispatch?: DispatchWorkflowOptions;

  /**
   * Options of the vendor-call workflow behind `callVendorTask()` (created on its first use).
   *
   * @default - 5 attempts, backoff from 2 seconds up to 5 minutes, 30-second call timeout
   */
  readonly vendorCall?: VendorCallWorkflowOptions;

  /**
   * Options of the correlation table.
   *
   * @default - on demand, point-in-time recovery, AWS-managed encryption, retained
   */
  readonly table?: TokenCorrelationTableProps;

  /**
   * The dashboard and where the alarms go.
   *
   * @default - a dashboard, alarms without actions
   */
  readonly monitoring?: OrchestratorMonitoringOptions;

  /**
   * AWS X-Ray tracing: active tracing of the functions, tracing of the dispatch workflow and of
   * both API stages. A block's own `tracingEnabled` option, when given, wins for that block.
   *
   * @default false
   */
  readonly tracing?: boolean;
}

/**
 * Properties for `submitJobTask()`.
 */
export interface SubmitJobTaskProps {
  /**
   * The request payload, sent to the vendor as the JSON body, e.g.
   * `sfn.TaskInput.fromJsonPathAt('$.order')` or `sfn.TaskInput.fromObject({...})`.
   */
  readonly payload: sfn.TaskInput;

  /**
   * The request's id: the idempotency key the vendor receives and the key in the correlation
   * table. A JSONPath (`sfn.JsonPath.stringAt('$.orderId')`) or a literal. Give a stable id when
   * the task may run twice for one request (e.g. under a Retry): the second run then reuses the
   * first submission instead of calling the vendor again.
   *
   * @default - a new UUID per run of the task (`States.UUID()`)
   */
  readonly requestId?: string;

  /**
   * Where the task's output (`{ jobId, result }`) goes in the state.
   *
   * @default '$' (replaces the state)
   */
  readonly resultPath?: string;

  /**
   * Fails the task with `States.HeartbeatTimeout` when nothing resumes it for this long.
   *
   * @default - no heartbeat
   */
  readonly heartbeatTimeout?: Duration;

  /**
   * The request's key (issue 15): the vendor account (customer, tenant) the request belongs to, as
   * a JSONPath (`sfn.JsonPath.stringAt('$.customerId')`) or a literal. It must evaluate to 1-128
   * characters, each a letter, a digit or ASCII punctuation (what an SQS `MessageGroupId` allows).
   * It travels with the request (message, workflows, vendor caller, and the correlation item when
   * the credential is per key), groups the request on the request queue (`MessageGroupId`: SQS
   * fair queues), and with `VendorCredentials.fromSecretHeaderPerKey` picks the vendor credential.
   * A key that is not a string or not valid fails the task with `InvalidRequestKey` before
   * anything reaches the vendor; a JSONPath that points at nothing fails the execution with
   * `States.Runtime` (Step Functions' own rule, no Catch handles it): give a path the input has.
   * Limits per key are not enforced yet: keys share the orchestrator's contract.
   *
   * @default - no key (required when the vendor credential is per key)
   */
  readonly key?: string;
  /**
   * The request's priority (issue 15): `Priority.HIGH`, `Priority.NORMAL`, `Priority.LOW`, or
   * `Priority.fromJsonPath('$.priority')` for a value read from the state. Under a backlog the
   * dispatcher serves higher priority first; a waiting request rises one level per
   * `priorityAging` (30 seconds by default; README, "Priorities"). A value read at run time that
   * is not `"high"`, `"normal"` or `"low"` (null is normal) fails the task with
   * `InvalidRequestPriority` before anything reaches the vendor.
   *
   * @default - normal
   */
  readonly priority?: Priority;
  /**
   * A comment for the state.
   *
   * @default - a description of the task
   */
  readonly comment?: string;
}

/**
 * Properties for `submitJobTaskJsonata()`, the task for workflows written in JSONata.
 *
 * Give the payload either as a JSONata expression (`payload`) or as a `TaskInput`
 * (`payloadInput`), not both.
 */
export interface SubmitJobTaskJsonataProps {
  /**
   * The request payload as a JSONata expression that evaluates to a JSON object, sent to the
   * vendor as the JSON body, e.g. `'{% $states.input.order %}'` or `'{% $order %}'` (a variable).
   *
   * @default - give `payloadInput` instead
   */
  readonly payload?: string;

  /**
   * The request payload as a `TaskInput` whose strings may hold JSONata expressions, e.g.
   * `sfn.TaskInput.fromObject({ sku: '{% $states.input.sku %}', quantity: 2 })`.
   * A JSONPath input (`TaskInput.fromJsonPathAt`) is refused: JSONata states do not read JSONPath.
   *
   * @default - give `payload` instead
   */
  readonly payloadInput?: sfn.TaskInput;

  /**
   * The request's id as a JSONata expression (`'{% $states.input.orderId %}'`) or a literal: the
   * idempotency key the vendor receives and the key in the correlation table. It must evaluate to
   * a non-empty string (`'{% $string($states.input.orderId) %}'` for a number). Give a stable id
   * when the task may run twice for one request (e.g. under a Retry).
   *
   * @default '{% $uuid() %}' (a new UUID per run of the task)
   */
  readonly requestId?: string;

  /**
   * The state's output (JSONata `Output`). The task's result `{ jobId, result }` is
   * `$states.result`, e.g. `'{% $merge([$states.input, { "vendor": $states.result }]) %}'`.
   *
   * @default - the task's result, `{ jobId, result }` (replaces the state)
   */
  readonly outputs?: any;

  /**
   * Workflow variables to set from the result (JSONata `Assign`), e.g.
   * `{ jobId: '{% $states.result.jobId %}' }`.
   *
   * @default - no variables
   */
  readonly assign?: { [name: string]: any };

  /**
   * Fails the task with `States.HeartbeatTimeout` when nothing resumes it for this long.
   *
   * @default - no heartbeat
   */
  readonly heartbeatTimeout?: Duration;

  /**
   * The request's key (issue 15) as a JSONata expression (`'{% $states.input.customerId %}'`) or
   * a literal: same rules as `submitJobTask`'s `key`. A key the expression does not find, or one
   * that is not a valid key, fails the task with `InvalidRequestKey` before anything reaches the
   * vendor.
   *
   * @default - no key (required when the vendor credential is per key)
   */
  readonly key?: string;
  /**
   * The request's priority (issue 15): `Priority.HIGH`, `Priority.NORMAL`, `Priority.LOW`, or
   * `Priority.fromJsonata('{% $states.input.priority %}')` for a value read at run time (nothing
   * found, or null: normal). Same rules as `submitJobTask`'s `priority`.
   *
   * @default - normal
   */
  readonly priority?: Priority;
  /**
   * A comment for the state.
   *
   * @default - a description of the task
   */
  readonly comment?: string;
}

/**
 * Properties for `callVendorTask()`: one synchronous HTTP call to the vendor, paced against the
 * contract like every job submission.
 */
export interface CallVendorTaskProps {
  /**
   * The path below `vendorUrl` the proxy forwards to, starting with `/` (`/` alone is `vendorUrl`
   * itself), e.g. `'/job-1/result'` or, built from the state,
   * `sfn.JsonPath.format('/{}/result', sfn.JsonPath.stringAt('$.vendor.jobId'))`. Its characters
   * must already be URL-safe (RFC 3986 path characters and `%XX` escapes); no `?`, `#`, empty,
   * `.` or `..` segments. A call with a bad path is parked and fails with `VendorRequestFailed`.
   */
  readonly path: string;

  /**
   * The HTTP method: GET, POST, PUT, PATCH or DELETE (or a JSONPath to one).
   *
   * @default 'GET'
   */
  readonly method?: string;

  /**
   * Query parameters, an object of name -> string or array of strings, e.g.
   * `sfn.TaskInput.fromObject({ fields: 'result', page: sfn.JsonPath.stringAt('$.page') })`.
   *
   * @default - none
   */
  readonly query?: sfn.TaskInput;

  /**
   * The JSON body (not with GET), e.g. `sfn.TaskInput.fromJsonPathAt('$.update')`.
   *
   * @default - no body
   */
  readonly body?: sfn.TaskInput;

  /**
   * The call's id, sent to the vendor as the `Idempotency-Key` and `X-Request-Id` headers.
   * Use an id different from the job submission's (the vendor may take the same key for the same
   * operation).
   *
   * @default - a new UUID per run of the task (`States.UUID()`)
   */
  readonly requestId?: string;

  /**
   * Marks the call as ending a job of the vendor, e.g. its documented cancel endpoint: the request
   * id of the `submitJobTask` whose job it ends (give that task a stable `requestId` so the workflow
   * knows it). When the vendor answers 2xx, that job's place in flight (`VendorContract.maxJobsInFlight`)
   * is freed at once, instead of at the job's callback or `maxJobDuration`; another answer frees
   * nothing (the callback or `maxJobDuration` still does). Freeing is idempotent: a retried cancel
   * or the job's own late callback frees it once. Needs `maxJobsInFlight` in the contract and
   * `PacingPoint.VENDOR_CALL` (the vendor caller sees the answer).
   *
   * The converse, a call that holds a place (a job started by a call rather than by
   * `submitJobTask`), does not exist: such a job has no correlation item, so its callback could
   * never be matched to free its place; start jobs with `submitJobTask`.
   *
   * e.g. `sfn.JsonPath.stringAt('$.orderId')` (the submission's `requestId`).
   *
   * @default - the call ends no job
   */
  readonly endsJobOf?: string;

  /**
   * Where the task's output (`{ statusCode, body, headers }`) goes in the state.
   *
   * @default '$' (replaces the state)
   */
  readonly resultPath?: string;

  /**
   * How long the task waits for the answer, queueing, pacing and retries included; then it fails
   * with `States.Timeout`.
   *
   * @default Duration.minutes(15)
   */
  readonly timeout?: Duration;

  /**
   * The request's key (issue 15): the vendor account (customer, tenant) the request belongs to, as
   * a JSONPath (`sfn.JsonPath.stringAt('$.customerId')`) or a literal. It must evaluate to 1-128
   * characters, each a letter, a digit or ASCII punctuation (what an SQS `MessageGroupId` allows).
   * It travels with the request (message, workflows, vendor caller, and the correlation item when
   * the credential is per key), groups the request on the request queue (`MessageGroupId`: SQS
   * fair queues), and with `VendorCredentials.fromSecretHeaderPerKey` picks the vendor credential.
   * A key that is not a string or not valid fails the task with `InvalidRequestKey` before
   * anything reaches the vendor; a JSONPath that points at nothing fails the execution with
   * `States.Runtime` (Step Functions' own rule, no Catch handles it): give a path the input has.
   * Limits per key are not enforced yet: keys share the orchestrator's contract.
   *
   * @default - no key (required when the vendor credential is per key)
   */
  readonly key?: string;
  /**
   * The request's priority (issue 15): `Priority.HIGH`, `Priority.NORMAL`, `Priority.LOW`, or
   * `Priority.fromJsonPath('$.priority')` for a value read from the state. Under a backlog the
   * dispatcher serves higher priority first; a waiting request rises one level per
   * `priorityAging` (30 seconds by default; README, "Priorities"). A value read at run time that
   * is not `"high"`, `"normal"` or `"low"` (null is normal) fails the task with
   * `InvalidRequestPriority` before anything reaches the vendor.
   *
   * @default - normal
   */
  readonly priority?: Priority;
  /**
   * A comment for the state.
   *
   * @default - a description of the task
   */
  readonly comment?: string;
}

/**
 * Properties for `callVendorTaskJsonata()`, the vendor call for workflows written in JSONata.
 */
export interface CallVendorTaskJsonataProps {
  /**
   * The path below `vendorUrl`, starting with `/`, as a literal or a JSONata expression, e.g.
   * `'{% "/" & $states.input.vendor.jobId & "/result" %}'`. Same rules as `callVendorTask`'s.
   */
  readonly path: string;

  /**
   * The HTTP method: GET, POST, PUT, PATCH or DELETE (or a JSONata expression).
   *
   * @default 'GET'
   */
  readonly method?: string;

  /**
   * Query parameters (name -> string or array of strings); strings may hold JSONata
   * expressions, e.g. `sfn.TaskInput.fromObject({ page: '{% $string($page) %}' })`.
   *
   * @default - none
   */
  readonly query?: sfn.TaskInput;

  /**
   * The JSON body (not with GET); strings may hold JSONata expressions, e.g.
   * `sfn.TaskInput.fromText('{% $states.input.update %}')` for a whole object.
   *
   * @default - no body
   */
  readonly body?: sfn.TaskInput;

  /**
   * The call's id (`Idempotency-Key` and `X-Request-Id` headers), a literal or a JSONata
   * expression evaluating to a non-empty string.
   *
   * @default '{% $uuid() %}'
   */
  readonly requestId?: string;

  /**
   * Marks the call as ending a job of the vendor, e.g. its documented cancel endpoint: the request
   * id of the `submitJobTask` whose job it ends (give that task a stable `requestId` so the workflow
   * knows it). When the vendor answers 2xx, that job's place in flight (`VendorContract.maxJobsInFlight`)
   * is freed at once, instead of at the job's callback or `maxJobDuration`; another answer frees
   * nothing (the callback or `maxJobDuration` still does). Freeing is idempotent: a retried cancel
   * or the job's own late callback frees it once. Needs `maxJobsInFlight` in the contract and
   * `PacingPoint.VENDOR_CALL` (the vendor caller sees the answer).
   *
   * The converse, a call that holds a place (a job started by a call rather than by
   * `submitJobTask`), does not exist: such a job has no correlation item, so its callback could
   * never be matched to free its place; start jobs with `submitJobTask`.
   *
   * A literal or a JSONata expression, e.g. `'{% $states.input.orderId %}'`.
   *
   * @default - the call ends no job
   */
  readonly endsJobOf?: string;

  /**
   * The state's output (JSONata `Output`); the task's result `{ statusCode, body, headers }` is
   * `$states.result`.
   *
   * @default - the task's result (replaces the state)
   */
  readonly outputs?: any;

  /**
   * Workflow variables to set from the result (JSONata `Assign`), e.g.
   * `{ result: '{% $states.result.body %}' }`.
   *
   * @default - no variables
   */
  readonly assign?: { [name: string]: any };

  /**
   * How long the task waits for the answer, queueing, pacing and retries included.
   *
   * @default Duration.minutes(15)
   */
  readonly timeout?: Duration;

  /**
   * The request's key (issue 15) as a JSONata expression (`'{% $states.input.customerId %}'`) or
   * a literal: same rules as `submitJobTask`'s `key`. A key the expression does not find, or one
   * that is not a valid key, fails the task with `InvalidRequestKey` before anything reaches the
   * vendor.
   *
   * @default - no key (required when the vendor credential is per key)
   */
  readonly key?: string;
  /**
   * The request's priority (issue 15): `Priority.HIGH`, `Priority.NORMAL`, `Priority.LOW`, or
   * `Priority.fromJsonata('{% $states.input.priority %}')` for a value read at run time (nothing
   * found, or null: normal). Same rules as `submitJobTask`'s `priority`.
   *
   * @default - normal
   */
  readonly priority?: Priority;
  /**
   * A comment for the state.
   *
   * @default - a description of the task
   */
  readonly comment?: string;
}

/**
 * Calls an asynchronous vendor API from Step Functions within the vendor's requests-per-second
 * contract, and resumes the calling workflow when the vendor's callback arrives.
 *
 * ```
 * main workflow --submitJobTask--> request queue --> paced consumer --> dispatch workflow
 *   (waits)                                                              | proxy --> vendor
 *      ^                                                                 v
 *      +-- SendTaskSuccess <-- callback processor <-- callback queue <-- webhook <-- vendor
 * ```
 *
 * Use `submitJobTask()` in your own (Standard) workflow and register that workflow with
 * `registerWorkflow()` so the orchestrator may resume it.
 */
export class AsyncExternalApiOrchestrator extends Construct {
  /** Error names of a failed `submitJobTask` (besides `States.Timeout` and `States.HeartbeatTimeout`). */
  public static readonly ERROR_VENDOR_REQUEST_FAILED = ErrorNames.VENDOR_REQUEST_FAILED;
  /** The vendor's callback said the job failed. */
  public static readonly ERROR_VENDOR_JOB_FAILED = ErrorNames.VENDOR_JOB_FAILED;
  /** The vendor's callback was larger than a task output may be (256 KiB); it is parked. */
  public static readonly ERROR_CALLBACK_TOO_LARGE = 'CallbackTooLarge';
  /**
   * A quota of the contract (`VendorContract.quotas`) is spent for its period and the request may
   * not wait for the next one (`QuotaExhaustedAction.FAIL`, or the period ends after the request's
   * `callbackTimeout`): the request is parked, the vendor was not called. `submitJobTask` and
   * `callVendorTask` fail with it.
   */
  public static readonly ERROR_VENDOR_QUOTA_EXHAUSTED = ErrorNames.VENDOR_QUOTA_EXHAUSTED;
  /**
   * The request's key (the tasks' `key`) is missing (the task declares a key, or the vendor
   * credential is per key) or is not 1-128 characters of letters, digits and ASCII punctuation:
   * the queue consumer fails the task with it on the request's first receive, before any pacing
   * slot, job place or vendor call, and drops the message (not parked: the input is wrong).
   */
  public static readonly ERROR_INVALID_REQUEST_KEY = INVALID_REQUEST_KEY;
  /**
   * The request's priority (the tasks' `priority`, read at run time) is not `high`, `normal` or
   * `low`: the queue consumer fails the task with it on the request's first receive, before any
   * pacing slot, job place or vendor call, and drops the message (not parked: the input is wrong).
   */
  public static readonly ERROR_INVALID_REQUEST_PRIORITY = INVALID_REQUEST_PRIORITY;

  /** The vendor contract every layer reads. */
  public readonly contract: VendorContract;
  /**
   * The contract's state this orchestrator paces against: `contractState` when given, else its
   * own (the consumer's pacer table and dynamic delay). Give it to another orchestrator under the
   * same contract to share it.
   */
  public readonly contractState: IVendorContractState;
  /**
   * The key settings table (issue 15), when the contract has `perKey`: one item per key whose
   * limits an operator overrides (README, "Per-key limits: settings"); the shared
   * `contractState`'s when given, else this orchestrator's own (retained). Give your managing
   * service `grantManageKeySettings`.
   *
   * @default - none without `contract.perKey`
   */
  public readonly keySettingsTable?: dynamodb.ITable;
  /**
   * One alarm per quota of the contract: `alarmAt` (default 80 %) of the period's limit spent.
   * Included in `alarms`; empty without quotas.
   */
  public readonly quotaAlarms: cloudwatch.Alarm[];
  /** The contract's rate: the most requests per second the vendor allows. */
  public readonly requestsPerSecond: number;
  /** How long workflows wait for a callback. */
  public readonly callbackTimeout: Duration;
  /** The correlation table (job id / request id -> task token). */
  public readonly table: TokenCorrelationTable;
  /** The request queue and its paced consumer. */
  public readonly consumer: RateControlledQueueConsumer;
  /** The throttled proxy in front of the vendor. */
  public readonly proxy: ThrottledProxy;
  /** The webhook and callback processor. */
  public readonly webhook: CallbackWebhook;
  /** The Express workflow that submits requests to the vendor. */
  public readonly dispatch: DispatchWorkflow;
  /**
   * Value of the `Scope` dimension of every custom metric of this orchestrator (namespace
   * `CdkAsyncExternalApi`): its unique id.
   */
  public readonly metricsScope: string;
  /**
   * The CloudWatch dashboard.
   *
   * @default - none when `monitoring.dashboard` is false
   */
  public readonly dashboard?: cloudwatch.Dashboard;
  /** Fires when the request backlog holds more than `consumer.backlogAlarmThreshold` of work. */
  public readonly backlogAlarm: cloudwatch.IAlarm;
  /** Fires when a request is parked in the request dead-letter queue. */
  public readonly requestDeadLetterAlarm: cloudwatch.IAlarm;
  /** Fires when a callback is parked in the callback dead-letter queue. */
  public readonly callbackDeadLetterAlarm: cloudwatch.IAlarm;
  /** Fires when a dispatch execution failed (a request was given up) within 5 minutes. */
  public readonly dispatchFailuresAlarm: cloudwatch.IAlarm;
  /** Fires when the webhook answered 5xx within 5 minutes. */
  public readonly webhookServerErrorsAlarm: cloudwatch.IAlarm;
  /** Fires when a callback was rejected (malformed, no job id, too large) within 5 minutes. */
  public readonly rejectedCallbacksAlarm: cloudwatch.IAlarm;
  /**
   * Fires when paced requests reach the proxy spread around their slots by more than the lateness
   * tolerance leaves for it, on API Gateway's clock (the proxy's arrival audit; README, "Check it
   * once deployed").
   *
   * @default - none with PacingPoint.DISPATCH (no request carries a slot)
   */
  public readonly arrivalSpreadAlarm?: cloudwatch.IAlarm;
  /**
   * Fires when the vendor's jobs in flight stayed at `contract.maxJobsInFlight` for
   * `monitoring.jobsAtLimitAlarmAfter` (15 minutes by default).
   *
   * @default - none without `contract.maxJobsInFlight`
   */
  public readonly jobsInFlightAlarm?: cloudwatch.IAlarm;
  /**
   * Fires when the dispatchers could not read the key settings table for 10 minutes (a pause or a
   * lower limit written meanwhile does not take effect; the contract's limits hold).
   *
   * @default - none without `contract.perKey`
   */
  public readonly keySettingsReadFailedAlarm?: cloudwatch.IAlarm;
  /**
   * Fires when a key's settings item has a field that cannot be a limit (the key uses that field's default).
   *
   * @default - none without `contract.perKey`
   */
  public readonly keySettingsInvalidAlarm?: cloudwatch.IAlarm;
  /**
   * Every alarm of the orchestrator: the ones above and one per registered workflow (its
   * executions failed or timed out), added by `registerWorkflow()`.
   */
  public readonly alarms: cloudwatch.IAlarm[] = [];

  private readonly registeredWorkflows = new Set<string>();
  private readonly registeredStateMachines: sfn.IStateMachine[] = [];
  private vendorCallWorkflow?: VendorCallWorkflow;
  private readonly vendorCallOptions?: VendorCallWorkflowOptions;
  private readonly tracing?: boolean;
  private submitTasks = 0;
  private readonly alarmActions: cloudwatch.IAlarmAction[] = [];
  private readonly actionableAlarms: cloudwatch.Alarm[] = [];
  private readonly dashboardBuilder?: OrchestratorDashboard;
  /** Issue 15: the Contributor Insights rules of the keys, once a request may carry a key. */
  private keyInsights?: KeyInsights;

  constructor(scope: Construct, id: string, props: AsyncExternalApiOrchestratorProps) {
    super(scope, id);

    validateVendorUrl(props.vendorUrl);
    const contract = contractOf(props);
    const requestsPerSecond = contract.requestsPerSecond;
    validateDuration('callbackTimeout', props.callbackTimeout, Duration.seconds(1), Duration.days(365),
      'a Standard workflow runs at most one year');
    if (props.batchSize !== undefined && props.consumer?.batchSize !== undefined) {
      throw new Error(`batchSize is given twice (batchSize ${props.batchSize} and consumer.batchSize ${props.consumer.batchSize}): give one`);
    }
    if (props.maxConcurrency !== undefined && props.consumer?.maxConcurrency !== undefined) {
      throw new Error(`maxConcurrency is given twice (maxConcurrency ${props.maxConcurrency} and consumer.maxConcurrency ${props.consumer.maxConcurrency}): give one`);
    }
    validateWholeNumber('batchSize', props.batchSize, 1, 10_000);
    validateWholeNumber('maxConcurrency', props.maxConcurrency, 2, 1000);
    if (props.pacingPoint !== undefined && props.consumer?.pacingPoint !== undefined) {
      throw new Error(`pacingPoint is given twice (pacingPoint ${props.pacingPoint} and consumer.pacingPoint ${props.consumer.pacingPoint}): give one`);
    }
    const pacingPoint = props.pacingPoint ?? props.consumer?.pacingPoint ?? PacingPoint.VENDOR_CALL;
    if (contract.quotas.length > 0 && pacingPoint !== PacingPoint.VENDOR_CALL) {
      throw new Error(`the contract has quotas (${contract.quotas.map((q) => q.name).join(', ')}), which the vendor caller spends: they need pacingPoint PacingPoint.VENDOR_CALL (given ${pacingPoint})`);
    }
    if (contract.adaptivePacing && pacingPoint !== PacingPoint.VENDOR_CALL) {
      throw new Error(`the contract has adaptivePacing, which the vendor caller drives (it sees the 429s): it needs pacingPoint PacingPoint.VENDOR_CALL (given ${pacingPoint}); remove adaptivePacing or the pacingPoint`);
    }
    if (contract.perKey && pacingPoint !== PacingPoint.VENDOR_CALL) {
      throw new Error(`the contract has perKey limits, which the vendor caller keeps for each key (its slot, its quotas): they need pacingPoint PacingPoint.VENDOR_CALL (given ${pacingPoint}); remove perKey or the pacingPoint`);
    }
    // The proxy's limits follow the pacing (see deriveRateSettings); the consumer derives the rest.
    const proxySettings = deriveRateSettings(requestsPerSecond, {
      pacingPoint,
      latenessToleranceMs: props.consumer?.latenessTolerance?.toMilliseconds(),
      fireToleranceMs: props.consumer?.fireTolerance?.toMilliseconds(),
      leadMs: props.consumer?.lead?.toMilliseconds(),
      proxyRateLimit: props.proxy?.throttlingRateLimit,
      proxyBurstLimit: props.proxy?.throttlingBurstLimit,
    });
    const monitoring = props.monitoring ?? {};
    if (monitoring.dashboard === false && monitoring.dashboardName !== undefined) {
      throw new Error(`monitoring.dashboardName is given ('${monitoring.dashboardName}') but monitoring.dashboard is false: give one or the other`);
    }
    if (monitoring.dashboardName !== undefined && !Token.isUnresolved(monitoring.dashboardName)
      && !/^[A-Za-z0-9_-]{1,255}$/.test(monitoring.dashboardName)) {
      throw new Error(`monitoring.dashboardName must be 1 to 255 letters, digits, '-' or '_' (given '${monitoring.dashboardName}')`);
    }
    if (props.contractState) {
      const differences = contractDifferences(contract, props.contractState.contract);
      if (differences.length > 0) {
        throw new Error(`contractState was made for another contract than this orchestrator's (${differences.join('; ')}): `
          + 'orchestrators share a state only under one contract; give both the same VendorContract.of({...}), or omit contractState for a state of its own');
      }
    }
    this.contract = contract;
    this.requestsPerSecond = requestsPerSecond;
    this.callbackTimeout = props.callbackTimeout;
    this.vendorCallOptions = props.vendorCall;
    this.tracing = props.tracing;
    // One scope for every custom metric of this orchestrator, whatever block publishes it.
    this.metricsScope = Names.uniqueId(this);

    this.table = new TokenCorrelationTable(this, 'CorrelationTable', props.table);

    this.proxy = new ThrottledProxy(this, 'Proxy', {
      ...props.proxy,
      throttlingRateLimit: proxySettings.proxyRateLimit,
      throttlingBurstLimit: proxySettings.proxyBurstLimit,
      vendorUrl: props.vendorUrl,
      requestsPerSecond,
      metricsScope: this.metricsScope,
      tracingEnabled: props.proxy?.tracingEnabled ?? props.tracing,
      // The proxy waits as long as the longest vendor call may take, so no caller gets its 504.
      integrationTimeout: longestVendorCallTimeout(props.dispatch?.vendorCallTimeout, props.vendorCall?.vendorCallTimeout),
      // Measures the schedule's assumption (L) once deployed, on API Gateway's clock.
      arrivalAudit: orchestratorArrivalAudit(props.proxy?.arrivalAudit, pacingPoint === PacingPoint.VENDOR_CALL, proxySettings.latenessToleranceMs),
    });

    for (const warning of contract.warnings) {
      Annotations.of(this).addWarningV2('cdk-async-external-api:contract', warning);
    }
    for (const warning of proxySettings.warnings.filter((w) => /throttling/.test(w.id))) {
      Annotations.of(this.proxy).addWarningV2(warning.id, warning.message);
    }

    this.webhook = new CallbackWebhook(this, 'Webhook', {
      ...props.webhook,
      table: this.table,
      requestsPerSecond,
      metricsScope: this.metricsScope,
      tracingEnabled: props.webhook?.tracingEnabled ?? props.tracing,
    });

    this.consumer = new RateControlledQueueConsumer(this, 'Consumer', {
      ...props.consumer,
      batchSize: props.batchSize ?? props.consumer?.batchSize,
      maxConcurrency: props.maxConcurrency ?? props.consumer?.maxConcurrency,
      pacingPoint,
      requestsPerSecond,
      // Items outlive the wait by a day, so late callbacks are still recognised as late.
      correlationTtl: props.callbackTimeout.plus(Duration.days(1)),
      metricsScope: this.metricsScope,
      tracingEnabled: props.consumer?.tracingEnabled ?? props.tracing,
      contractState: props.contractState,
    });
    // Issue 15: the key settings table of a shared state, or this orchestrator's own (only with perKey).
    if (contract.perKey && props.contractState && !props.contractState.keySettingsTable) {
      throw new Error('the contract has perKey but contractState has no keySettingsTable: give the state the key settings table every orchestrator '
        + 'of the contract reads (VendorContractState creates it with perKey; fromVendorContractStateAttributes takes keySettingsTableName)');
    }
    this.keySettingsTable = contract.perKey
      ? props.contractState?.keySettingsTable ?? createKeySettingsTable(this, 'KeySettingsTable')
      : undefined;
    this.contractState = props.contractState ?? {
      contract,
      pacerTable: this.consumer.pacerTable,
      dynamicDelay: this.consumer.contractState.dynamicDelay,
      keySettingsTable: this.keySettingsTable,
    };
    // Keys this orchestrator's own items (job places) in a shared pacer table, as its consumer does.
    const stateOwner = props.contractState ? this.consumer.queue.queueArn : undefined;

    this.dispatch = new DispatchWorkflow(this, 'Dispatch', {
      ...props.dispatch,
      proxy: this.proxy,
      table: this.table,
      requestQueue: this.consumer.queue,
      deadLetterQueue: this.consumer.deadLetterQueue,
      callbackUrl: this.webhook.url,
      perRequestCallbackUrl: this.webhook.capabilityUrls, // webhookauth
      tracingEnabled: props.dispatch?.tracingEnabled ?? props.tracing,
      pacing: pacingPoint === PacingPoint.VENDOR_CALL
        ? {
          pacerTable: this.consumer.pacerTable,
          rateSettings: this.consumer.rateSettings,
          metricsScope: this.metricsScope,
          dynamicDelay: this.contractState.dynamicDelay,
          contract,
          // A request that cannot get quota before its workflow stops waiting fails at once.
          quotaMaxWait: props.callbackTimeout,
        }
        : undefined,
      jobPlacesTable: contract.maxJobsInFlight !== undefined ? this.consumer.pacerTable : undefined,
      jobPlacesOwner: stateOwner,
    });
    this.table.grantWriteRequests(this.dispatch.stateMachine);
    this.consumer.dispatchTo(this.dispatch.stateMachine);
    // ---- Jobs in flight (contract.maxJobsInFlight): the dispatcher takes places, callbacks free them. ----
    if (contract.maxJobsInFlight !== undefined) {
      this.consumer.limitJobsInFlight({
        maxJobsInFlight: contract.maxJobsInFlight,
        // Without a stated maximum, a job is assumed to end by the time its workflow stops waiting.
        maxJobDuration: contract.maxJobDuration ?? props.callbackTimeout,
        correlationTable: this.table.table,
        atLimitAlarmAfter: props.monitoring?.jobsAtLimitAlarmAfter,
      });
      this.webhook.freeJobPlacesIn(this.consumer.pacerTable, stateOwner);
      // Per-key limits (issue 15, shared/key-places.ts): a callback also frees its key's place (the
      // key from the correlation item, which the claim then records).
      if (hasPerKeyLimits(contract)) {
        this.webhook.processor.addEnvironment(CallbackEnv.FREE_KEY_PLACES, 'true');
      }
      // Every function that frees a place wakes one waiting request for it (shared/job-waiting.ts).
      // With a shared contract state there is no waiting queue (the requests recheck as delayed copies).
      if (this.consumer.jobWaitingQueue) {
        this.consumer.allowWakingWaiters(this.webhook.processor);
        if (this.dispatch.vendorCaller instanceof lambda.Function) {
          this.consumer.allowWakingWaiters(this.dispatch.vendorCaller);
        }
        if (props.callbackTimeout.toSeconds() > Duration.days(14).toSeconds()) {
          Annotations.of(this).addWarningV2('cdk-async-external-api:jobWaitingRetention',
            `callbackTimeout (${props.callbackTimeout.toHumanString()}) is longer than the 14 days SQS keeps a message: a request waiting that long for a place in flight is deleted from the waiting queue and its workflow waits until callbackTimeout. Keep callbackTimeout at 14 days or less with maxJobsInFlight`);
        }
      }
      this.jobsInFlightAlarm = this.trackAlarm(this.consumer.jobsInFlightAlarm as cloudwatch.Alarm);
    } else if (props.monitoring?.jobsAtLimitAlarmAfter !== undefined) {
      throw new Error(`monitoring.jobsAtLimitAlarmAfter is given (${props.monitoring.jobsAtLimitAlarmAfter.toHumanString()}) but the contract has no maxJobsInFlight: give contract: VendorContract.of({ ..., maxJobsInFlight }) or remove it`);
    }
    if (contract.quotas.length > 0) {
      // The dispatcher postpones a batch while a quota is spent (it reads the counters it already may read: the pacer table).
      this.consumer.function.addEnvironment(ConsumerEnv.QUOTAS, JSON.stringify(contract.quotas.map((quota) => quota._spec())));
      // ... but only requests that may wait: those that must fail (FAIL, or a deadline before the
      // period ends) go on to the vendor caller, which fails them at once (request-start.ts).
      this.consumer.function.addEnvironment(ConsumerEnv.QUOTA_EXHAUSTED, contract.whenQuotaExhausted);
      this.consumer.function.addEnvironment(ConsumerEnv.QUOTA_MAX_WAIT_MS, String(props.callbackTimeout.toMilliseconds()));
    }
    // Per-key limits (issue 15): the dispatcher reads the batch's keys' items in BatchGetItem: their
    // pacer items (key-schedule.ts) and, with quotas, their counters (key-quota-check.ts).
    if (hasPerKeyLimits(contract)) {
      this.consumer.pacerTable.grant(this.consumer.function, 'dynamodb:BatchGetItem');
    }
    // Each slot the dispatcher reserves respects its call's named limits (named-limit-schedule.ts).
    addLimitEnvironment(this.consumer.function, contract);
    // Adaptive pacing: the dispatcher reserves at the effective rate (it already reads the pacer item).
    for (const [name, value] of Object.entries(adaptivePacingEnvironment(contract, ConsumerEnv.ADAPTIVE_PACING))) {
      this.consumer.function.addEnvironment(name, value);
    }
    // Issue 15: a credential per key, or limits per key, need a key on every request; the
    // dispatcher refuses the rest.
    if (this.keysRequired) {
      this.consumer.function.addEnvironment(ConsumerEnv.REQUIRE_REQUEST_KEY, 'true');
    }
    // Issue 15: the limits every key gets unless overridden in the key settings table (the dispatcher
    // resolves each key's limits in force and hands them to the workflows: shared/key-settings.ts).
    if (contract.perKey && this.keySettingsTable) {
      this.consumer.function.addEnvironment(KEY_LIMITS_ENV, JSON.stringify(contract.perKey._spec()));
      this.consumer.function.addEnvironment(KEY_SETTINGS_TABLE_ENV, this.keySettingsTable.tableName);
      // Only the dispatchers read the overrides (the vendor callers get them in the execution input).
      this.keySettingsTable.grant(this.consumer.function, 'dynamodb:BatchGetItem', 'dynamodb:GetItem');
    }
    // ... and a signing secret per key needs the key in the request's capability URL.
    if (props.webhook?.authentication?.signingSecretNamePattern) {
      this.consumer.function.addEnvironment(ConsumerEnv.CALLBACK_TOKEN_WITH_KEY, 'true');
    }

    // ---- Alarms: the blocks' own, and the orchestrator's. ----
    this.backlogAlarm = this.trackAlarm(this.consumer.backlogAlarm);
    this.requestDeadLetterAlarm = this.trackAlarm(this.consumer.deadLetterAlarm);
    this.callbackDeadLetterAlarm = this.trackAlarm(this.webhook.deadLetterAlarm);
    this.dispatchFailuresAlarm = this.trackAlarm(new cloudwatch.Alarm(this, 'DispatchFailuresAlarm', {
      alarmDescription: 'Requests were given up (vendor refused them, every attempt failed, or no job id) and their workflows failed with VendorRequestFailed. '
        + `Read the reason attribute of the messages in the request dead-letter queue, fix the cause, then redrive only requests whose workflow still waits. ${RUNBOOK}`,
      metric: this.metricDispatchFailures({ statistic: 'Sum', period: Duration.minutes(5) }),
      threshold: 0,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }));
    this.webhookServerErrorsAlarm = this.trackAlarm(new cloudwatch.Alarm(this, 'WebhookServerErrorsAlarm', {
      alarmDescription: 'The callback webhook answered 5xx: those callbacks were not queued and depend on the vendor retrying them. '
        + `Check the webhook's access logs and that API Gateway may still send to the callback queue (role, KMS key, queue). ${RUNBOOK}`,
      metric: this.webhook.metricServerErrors({ statistic: 'Sum', period: Duration.minutes(5) }),
      threshold: 0,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }));
    this.rejectedCallbacksAlarm = this.trackAlarm(new cloudwatch.Alarm(this, 'RejectedCallbacksAlarm', {
      alarmDescription: 'Callbacks were rejected (not JSON, no job id at jobIdPath, or too large) and parked in the callback dead-letter queue. '
        + `Read their reason attribute; if the vendor changed its callback format, fix webhook.jobIdPath and redeploy. ${RUNBOOK}`,
      metric: this.metricCallbacksRejected({ statistic: 'Sum', period: Duration.minutes(5) }),
      threshold: 0,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }));
    if (this.proxy.busiestSecondAlarm) {
      // The audit from the proxy's access log (README, "Audit"): a second over the contract.
      this.trackAlarm(this.proxy.busiestSecondAlarm);
    }
    if (this.proxy.arrivalAudit) {
      this.arrivalSpreadAlarm = this.trackAlarm(this.proxy.arrivalAudit.spreadAlarm);
    }
    this.quotaAlarms = createQuotaAlarms(this, contract, this.metricsScope, RUNBOOK).map((alarm) => this.trackAlarm(alarm));
    if (this.keySettingsTable) {
      const keySettingsAlarms = createKeySettingsAlarms(this, this.metricsScope, RUNBOOK);
      this.keySettingsReadFailedAlarm = this.trackAlarm(keySettingsAlarms.readFailed);
      this.keySettingsInvalidAlarm = this.trackAlarm(keySettingsAlarms.invalid);
    }
    if (monitoring.alarmTopic) {
      this.addAlarmAction(new cloudwatchActions.SnsAction(monitoring.alarmTopic));
    }
    if (monitoring.alarmActions && monitoring.alarmActions.length > 0) {
      this.addAlarmAction(...monitoring.alarmActions);
    }

    if (monitoring.dashboard ?? true) {
      this.dashboardBuilder = new OrchestratorDashboard(this, 'Dashboard', this, monitoring.dashboardName);
      this.dashboard = this.dashboardBuilder.dashboard;
    }
    // Issue 15: with a credential or limits per key every request has a key: rank the keys from the start.
    if (this.keysRequired) {
      this.useKeys();
    }

    this.node.addValidation({
      validate: () => (this.submitTasks > 0 && this.registeredWorkflows.size === 0
        ? ['submitJobTask() or callVendorTask() was used but no workflow was registered: call registerWorkflow(yourStateMachine) so the orchestrator may resume (SendTaskSuccess) and fail (SendTaskFailure) it']
        : []),
    });
  }

  /**
   * A task for your own workflow that sends `{ taskToken, requestId, payload }` to the request
   * queue and waits (`.waitForTaskToken`) until the vendor's callback resumes it, at most
   * `callbackTimeout`.
   *
   * On success its output is `{ jobId, result }` (`result` is the vendor's callback body). It
   * fails with `States.Timeout` when no callback arrives in time, `VendorRequestFailed` when the
   * vendor refused the request or every attempt failed, `VendorJobFailed` when the callback
   * reports a failure (see `webhook.statusPath`) and `CallbackTooLarge` when the callback does not
   * fit in a task output. Add `addCatch` / `addRetry` as for any task.
   */
  public submitJobTask(scope: Construct, id: string, props: SubmitJobTaskProps): tasks.SqsSendMessage {
    const key = this.keyFields(id, 'submitJobTask', props.key, jsonPathKeyFields);
    this.submitTasks += 1;
    // Issue 15: a high-priority request goes to the high-priority queue (request-queue-routing.ts).
    const route = this.requestQueueRoute(props.priority, 'jsonPath', `submitJobTask '${id}'`);
    return sendRequestMessage(scope, id, {
      comment: props.comment ?? 'Submit a job to the vendor and wait for its callback (cdk-async-external-api)',
      queue: route.queue,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      messageBody: sfn.TaskInput.fromObject({
        taskToken: sfn.JsonPath.taskToken,
        requestId: props.requestId ?? sfn.JsonPath.uuid(),
        payload: props.payload.value,
        ...(key ? { key: key.bodyKey } : {}),
        ...(props.priority ? { priority: props.priority._jsonPathField(`submitJobTask '${id}'`) } : {}),
        attempt: 1,
      }),
      messageGroupId: key?.messageGroupId,
      taskTimeout: sfn.Timeout.duration(this.callbackTimeout),
      heartbeatTimeout: props.heartbeatTimeout ? sfn.Timeout.duration(props.heartbeatTimeout) : undefined,
      resultPath: props.resultPath,
    }, route);
  }

  /**
   * `submitJobTask()` for workflows written in JSONata (`queryLanguage: sfn.QueryLanguage.JSONATA`
   * on the state machine, or on the states around it): the state itself is a JSONata state, so it
   * also fits in a JSONPath workflow. It sends the same message to the request queue,
   * `{ taskToken: '{% $states.context.Task.Token %}', requestId, payload, attempt: 1 }`, waits
   * (`.waitForTaskToken`) at most `callbackTimeout`, and fails with the same errors.
   *
   * Its result is `$states.result`, `{ jobId, result }`: keep it with `outputs` or `assign`
   * (JSONata states have no `resultPath`).
   */
  public submitJobTaskJsonata(scope: Construct, id: string, props: SubmitJobTaskJsonataProps): tasks.SqsSendMessage {
    if ((props.payload === undefined) === (props.payloadInput === undefined)) {
      throw new Error(`submitJobTaskJsonata '${id}': give exactly one of payload (a JSONata expression such as '{% $states.input.order %}') and payloadInput (a TaskInput)`);
    }
    if (props.payload !== undefined && !Token.isUnresolved(props.payload) && !/^\{%[\s\S]*%\}$/.test(props.payload.trim())) {
      throw new Error(`submitJobTaskJsonata '${id}': payload must be a JSONata expression such as '{% $states.input.order %}' (given '${props.payload}'); for a literal payload use payloadInput: sfn.TaskInput.fromObject({...})`);
    }
    // JSONPath fields (TaskInput.fromJsonPathAt, JsonPath.stringAt, intrinsics) render as "key.$",
    // which a JSONata state refuses at deployment: refuse them at synthesis, with the JSONata form.
    const usesJsonPath = (value: unknown): boolean => /\.\$":/.test(JSON.stringify(sfn.FieldUtils.renderObject({ value })));
    const payload = props.payload ?? props.payloadInput?.value;
    if (usesJsonPath(payload)) {
      throw new Error(`submitJobTaskJsonata '${id}': the payload uses JSONPath, which JSONata states do not read: use a JSONata expression such as payload: '{% $states.input.order %}'`);
    }
    const requestId = props.requestId ?? '{% $uuid() %}';
    if (usesJsonPath(requestId) || (!Token.isUnresolved(requestId) && /^(\$|States\.)/.test(requestId.trim()))) {
      throw new Error(`submitJobTaskJsonata '${id}': requestId '${requestId}' looks like JSONPath or an intrinsic function; in JSONata write '{% $states.input.orderId %}'`);
    }
    const key = this.keyFields(id, 'submitJobTaskJsonata', props.key, jsonataKeyFields);
    this.submitTasks += 1;
    const route = this.requestQueueRoute(props.priority, 'jsonata', `submitJobTaskJsonata '${id}'`);
    return sendRequestMessage(scope, id, {
      comment: props.comment ?? 'Submit a job to the vendor and wait for its callback (cdk-async-external-api)',
      queue: route.queue,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      messageBody: sfn.TaskInput.fromObject({
        taskToken: '{% $states.context.Task.Token %}',
        requestId,
        payload,
        ...(key ? { key: key.bodyKey } : {}),
        ...(props.priority ? { priority: props.priority._jsonataField(`submitJobTaskJsonata '${id}'`) } : {}),
        attempt: 1,
      }),
      messageGroupId: key?.messageGroupId,
      taskTimeout: sfn.Timeout.duration(this.callbackTimeout),
      heartbeatTimeout: props.heartbeatTimeout ? sfn.Timeout.duration(props.heartbeatTimeout) : undefined,
      queryLanguage: sfn.QueryLanguage.JSONATA,
      outputs: props.outputs,
      assign: props.assign,
    }, route);
  }

  /**
   * The Express workflow behind `callVendorTask()`, created on its first use.
   *
   * @default - none until `callVendorTask()` or `callVendorTaskJsonata()` is used
   */
  public get vendorCall(): VendorCallWorkflow | undefined {
    return this.vendorCallWorkflow;
  }

  /**
   * A task for your own workflow that makes one synchronous HTTP call to the vendor (e.g. fetch a
   * job's result: blog step 11) through the same request queue, pacing and proxy as job
   * submissions, so the call counts against the contract. It sends
   * `{ kind: 'call', taskToken, requestId, call: { method, path, query, body } }` to the request
   * queue and waits (`.waitForTaskToken`) at most `timeout`.
   *
   * On success its output is `{ statusCode, body, headers }`: the vendor's 2xx status, its body
   * (parsed when it is JSON) and its response headers (name -> array of values). It fails with
   * `VendorRequestFailed` when the vendor answered another 4xx than 408/429 or every attempt
   * failed (the call is parked in the request dead-letter queue; the cause holds the status and
   * the vendor's body), and with `States.Timeout` after `timeout`. Retries go back through the
   * paced queue. Calls are not deduplicated: a redelivered message may reach the vendor again, so
   * other methods than GET carry `Idempotency-Key: <requestId>` for the vendor to deduplicate.
   *
   * Register the workflow that uses it with `registerWorkflow()`.
   */
  public callVendorTask(scope: Construct, id: string, props: CallVendorTaskProps): tasks.SqsSendMessage {
    const method = props.method ?? 'GET';
    this.validateCall(id, 'callVendorTask', method, props.path, props.body !== undefined, (v) => Token.isUnresolved(v));
    this.validateEndsJobOf(id, 'callVendorTask', props.endsJobOf);
    const key = this.keyFields(id, 'callVendorTask', props.key, jsonPathKeyFields);
    this.ensureVendorCallWorkflow();
    this.submitTasks += 1;
    const route = this.requestQueueRoute(props.priority, 'jsonPath', `callVendorTask '${id}'`);
    return sendRequestMessage(scope, id, {
      comment: props.comment ?? 'Call the vendor, paced against the contract, and wait for its answer (cdk-async-external-api)',
      queue: route.queue,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      messageBody: sfn.TaskInput.fromObject({
        kind: 'call',
        taskToken: sfn.JsonPath.taskToken,
        requestId: props.requestId ?? sfn.JsonPath.uuid(),
        call: {
          method: Token.isUnresolved(method) ? method : method.toUpperCase(),
          path: props.path,
          ...(props.query ? { query: props.query.value } : {}),
          ...(props.body ? { body: props.body.value } : {}),
        },
        ...(key ? { key: key.bodyKey } : {}),
        ...(props.priority ? { priority: props.priority._jsonPathField(`callVendorTask '${id}'`) } : {}),
        attempt: 1,
        ...(props.endsJobOf !== undefined ? { endsJobOf: props.endsJobOf } : {}),
      }),
      messageGroupId: key?.messageGroupId,
      taskTimeout: sfn.Timeout.duration(this.validateCallTimeout(id, props.timeout)),
      resultPath: props.resultPath,
    }, route);
  }

  /**
   * `callVendorTask()` for workflows written in JSONata: a JSONata state sending the same message
   * (`taskToken: '{% $states.context.Task.Token %}'`), with the same output and errors. Its result
   * is `$states.result`, `{ statusCode, body, headers }`: keep it with `outputs` or `assign`.
   */
  public callVendorTaskJsonata(scope: Construct, id: string, props: CallVendorTaskJsonataProps): tasks.SqsSendMessage {
    const method = props.method ?? 'GET';
    const isExpression = (v: string) => Token.isUnresolved(v) || /^\{%[\s\S]*%\}$/.test(v.trim());
    this.validateCall(id, 'callVendorTaskJsonata', method, props.path, props.body !== undefined, isExpression);
    // JSONPath fields render as "key.$", which a JSONata state refuses at deployment.
    const usesJsonPath = (value: unknown): boolean => /\.\$":/.test(JSON.stringify(sfn.FieldUtils.renderObject({ value })));
    const requestId = props.requestId ?? '{% $uuid() %}';
    this.validateEndsJobOf(id, 'callVendorTaskJsonata', props.endsJobOf);
    const fields = { path: props.path, method, requestId, query: props.query?.value, body: props.body?.value, endsJobOf: props.endsJobOf };
    for (const [name, value] of Object.entries(fields)) {
      if (usesJsonPath(value) || (typeof value === 'string' && !Token.isUnresolved(value) && /^(\$\.|\$\[|States\.)/.test(value.trim()))) {
        throw new Error(`callVendorTaskJsonata '${id}': ${name} uses JSONPath, which JSONata states do not read: write a JSONata expression such as '{% $states.input.x %}'`);
      }
    }
    const key = this.keyFields(id, 'callVendorTaskJsonata', props.key, jsonataKeyFields);
    this.ensureVendorCallWorkflow();
    this.submitTasks += 1;
    const route = this.requestQueueRoute(props.priority, 'jsonata', `callVendorTaskJsonata '${id}'`);
    return sendRequestMessage(scope, id, {
      comment: props.comment ?? 'Call the vendor, paced against the contract, and wait for its answer (cdk-async-external-api)',
      queue: route.queue,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      messageBody: sfn.TaskInput.fromObject({
        kind: 'call',
        taskToken: '{% $states.context.Task.Token %}',
        requestId,
        call: {
          method: isExpression(method) ? method : method.toUpperCase(),
          path: props.path,
          ...(props.query ? { query: props.query.value } : {}),
          ...(props.body ? { body: props.body.value } : {}),
        },
        ...(key ? { key: key.bodyKey } : {}),
        ...(props.priority ? { priority: props.priority._jsonataField(`callVendorTaskJsonata '${id}'`) } : {}),
        attempt: 1,
        ...(props.endsJobOf !== undefined ? { endsJobOf: props.endsJobOf } : {}),
      }),
      messageGroupId: key?.messageGroupId,
      taskTimeout: sfn.Timeout.duration(this.validateCallTimeout(id, props.timeout)),
      queryLanguage: sfn.QueryLanguage.JSONATA,
      outputs: props.outputs,
      assign: props.assign,
    }, route);
  }

  /**
   * Lets the orchestrator resume and fail tasks of `stateMachine`: the callback processor
   * (SendTaskSuccess / SendTaskFailure), the dispatch workflow and the queue consumer
   * (SendTaskFailure when a request is given up), and the vendor-call workflow. Call it for every
   * workflow that uses `submitJobTask()` or `callVendorTask()`; the orchestrator can resume no
   * other workflow.
   */
  public registerWorkflow(stateMachine: sfn.IStateMachine): void {
    if (this.registeredWorkflows.has(stateMachine.stateMachineArn)) {
      return;
    }
    this.registeredWorkflows.add(stateMachine.stateMachineArn);
    this.registeredStateMachines.push(stateMachine);
    this.webhook.grantResume(stateMachine);
    this.dispatch.grantTaskResponses(stateMachine);
    this.vendorCallWorkflow?.grantTaskResponses(stateMachine);
    iam.Grant.addToPrincipal({
      grantee: this.consumer.function,
      // Jobs in flight: the dispatcher gives a new place back when the waiting task is closed (job-admission.ts).
      actions: this.contract.maxJobsInFlight !== undefined ? ['states:SendTaskFailure', 'states:SendTaskHeartbeat'] : ['states:SendTaskFailure'],
      resourceArns: [stateMachine.stateMachineArn],
    });

    // One alarm per workflow: its executions failed or timed out.
    const period = Duration.minutes(5);
    this.trackAlarm(new cloudwatch.Alarm(this, `WorkflowAlarm${Names.uniqueId(stateMachine)}`, {
      alarmDescription: `Executions of ${stateMachine.node.path} failed or timed out. Open them in the Step Functions console: `
        + 'VendorRequestFailed -> see the request dead-letter queue; States.Timeout -> no callback in time (ask the vendor, check the callback dead-letter queue); '
        + `VendorJobFailed -> the vendor's job failed; any other error is the workflow's own. ${RUNBOOK}`,
      metric: new cloudwatch.MathExpression({
        expression: 'FILL(failed, 0) + FILL(timedOut, 0)',
        usingMetrics: {
          failed: stateMachine.metricFailed({ statistic: 'Sum', period }),
          timedOut: stateMachine.metricTimedOut({ statistic: 'Sum', period }),
        },
        label: 'executions failed or timed out',
        period,
      }),
      threshold: 0,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }));
    this.dashboardBuilder?.addWorkflow(stateMachine);
  }

  /**
   * Adds actions to every alarm of the orchestrator (`alarms`), including the alarms of workflows
   * registered later.
   */
  public addAlarmAction(...actions: cloudwatch.IAlarmAction[]): void {
    this.alarmActions.push(...actions);
    for (const alarm of this.actionableAlarms) {
      alarm.addAlarmAction(...actions);
    }
  }

  /**
   * Requests waiting in the request queue.
   *
   * @default - maximum over 5 minutes
   */
  public metricBacklog(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.consumer.metricBacklog(props);
  }

  /**
   * Age of the oldest request waiting in the request queue, in seconds.
   *
   * @default - maximum over 5 minutes
   */
  public metricAgeOfOldestRequest(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.consumer.metricAgeOfOldestRequest(props);
  }

  /**
   * Dispatch executions the paced dispatcher started (one per request attempt), custom metric
   * `DispatchedRequests`.
   *
   * @default - sum over 5 minutes
   */
  public metricDispatchedRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.consumer.metricDispatchedRequests(props);
  }

  /**
   * The vendor's jobs in flight (places held), custom metric `JobsInFlight`: published when a place
   * is taken or freed, and while requests wait for one. Only with `contract.maxJobsInFlight`.
   *
   * @default - maximum over 1 minute
   */
  public metricJobsInFlight(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.consumer.metricJobsInFlight(props);
  }

  /**
   * Time a request waited for its pacing slot, in milliseconds, custom metric `PacingWait`.
   *
   * @default - average over 5 minutes
   */
  public metricPacingWait(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.consumer.metricPacingWait(props);
  }

  /**
   * The busiest key's requests dispatched per period (issue 15): Contributor Insights
   * `INSIGHT_RULE_METRIC(rule, 'MaxContributorValue')` over the dispatcher's per-key EMF totals; which
   * key it is shows in the rule's report. Needs a task that declares a key.
   *
   * @default - 1 minute
   */
  public metricTopKeysByDispatched(period?: Duration): cloudwatch.IMetric {
    return keyRuleMetric(this.keyRules('metricTopKeysByDispatched').dispatchedRule, 'MaxContributorValue', 'top key: requests dispatched', period);
  }

  /**
   * The busiest key's total pacing wait per period, in milliseconds (issue 15): the sum of the
   * `PacingWait` of its requests, Contributor Insights `MaxContributorValue`. Needs a task that
   * declares a key.
   *
   * @default - 1 minute
   */
  public metricTopKeysByPacingWait(period?: Duration): cloudwatch.IMetric {
    return keyRuleMetric(this.keyRules('metricTopKeysByPacingWait').pacingWaitRule, 'MaxContributorValue', 'top key: pacing wait (ms)', period);
  }

  /**
   * The key with the most vendor 429 answers per period (issue 15): Contributor Insights
   * `MaxContributorValue` over the vendor caller's `VendorPauses` (one per 429). Needs
   * PacingPoint.VENDOR_CALL and a credential per key (only then does the vendor caller know the key).
   *
   * @default - 1 minute
   */
  public metricTopKeysByVendor429s(period?: Duration): cloudwatch.IMetric {
    const rule = this.keyRules('metricTopKeysByVendor429s').vendor429sRule;
    if (!rule) {
      throw new Error('metricTopKeysByVendor429s: the 429s of a key are counted by the vendor caller, which knows the key only with PacingPoint.VENDOR_CALL and a credential per key (VendorCredentials.fromSecretHeaderPerKey) or limits per key (VendorContract.of({ perKey })); otherwise find them with metricVendorThrottles (all keys)');
    }
    return keyRuleMetric(rule, 'MaxContributorValue', 'top key: vendor 429s', period);
  }

  /**
   * The backlog of the key with the most requests set aside (issue 15): their average number per
   * period, from the time the dispatcher set each aside for (`KeySetAsideDelay`, Contributor Insights
   * `MaxContributorValue` divided by the period; docs/operations.md, "Many keys"). Only with
   * `contract.perKey` (only then are requests set aside).
   *
   * @default - 1 minute
   */
  public metricTopKeysByBacklog(period?: Duration): cloudwatch.IMetric {
    const rule = this.keyRules('metricTopKeysByBacklog').backlogRule;
    if (!rule) {
      throw new Error('metricTopKeysByBacklog: a key\'s backlog is the time its requests are set aside, which only per-key limits do: give contract: VendorContract.of({ ..., perKey: KeyLimits.of({...}) }); without them a key\'s waiting is metricTopKeysByPacingWait');
    }
    return keyBacklogMetric(rule, 'top key: requests set aside', period);
  }

  /**
   * The key with the most callbacks resolved per period (issue 15): Contributor Insights
   * `MaxContributorValue`. The callback processor knows a callback's key only from a capability
   * URL per key (`WebhookAuthentication` with a signing secret per key). Needs a task that declares a key.
   *
   * @default - 1 minute
   */
  public metricTopKeysByCallbacks(period?: Duration): cloudwatch.IMetric {
    return keyRuleMetric(this.keyRules('metricTopKeysByCallbacks').callbacksRule, 'MaxContributorValue', 'top key: callbacks resolved', period);
  }

  /**
   * Reads of the key settings table that failed (issue 15), custom metric `KeySettingsReadFailed`:
   * the keys kept the limits last read, or the defaults. Only with `contract.perKey`.
   *
   * @default - sum over 5 minutes
   */
  public metricKeySettingsReadFailed(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return keySettingsReadFailedMetric(this.metricsScopeOfKeySettings('metricKeySettingsReadFailed'), props);
  }

  /**
   * Fields of keys' settings items that could not be a limit (issue 15), custom metric
   * `KeySettingsInvalid`; each used its default. Only with `contract.perKey`.
   *
   * @default - sum over 5 minutes
   */
  public metricKeySettingsInvalid(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return keySettingsInvalidMetric(this.metricsScopeOfKeySettings('metricKeySettingsInvalid'), props);
  }

  /**
   * Pacing slots given up because the start would have been late, custom metric `SlotsGivenUp`.
   *
   * @default - sum over 5 minutes
   */
  public metricSlotsGivenUp(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.consumer.metricSlotsGivenUp(props);
  }

  /**
   * Units of a quota of the contract spent in its current period (custom metric
   * `QuotaUsed.<quotaName>`, published by the vendor caller at each unit it spends, and as the
   * limit while requests find the quota spent). Throws when the contract has no such quota.
   *
   * @default - maximum over 5 minutes
   */
  public metricQuotaUsed(quotaName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return quotaUsedMetric(this.metricsScope, this.contract, quotaName, props);
  }

  /**
   * The same as a percentage of the quota's limit (custom metric `QuotaUsedPercent.<quotaName>`):
   * what the quota's alarm watches; `100 - it` is the share remaining.
   *
   * @default - maximum over 5 minutes
   */
  public metricQuotaUsedPercent(quotaName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return quotaUsedPercentMetric(this.metricsScope, this.contract, quotaName, props);
  }

  /**
   * Calls a named limit of the contract held back (custom metric `NamedLimitWaits.<limitName>`,
   * published by the dispatcher and the vendor caller each time a slot reservation leaves calls
   * waiting for the limit; a call held back twice counts twice). No alarm: waiting is the limit
   * working. Throws when the contract has no such limit.
   *
   * @default - sum over 5 minutes
   */
  public metricNamedLimitWaits(limitName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return namedLimitWaitsMetric(this.metricsScope, this.contract, limitName, props);
  }

  /**
   * Requests the vendor caller sent at their pacing slot, custom metric `VendorCalls`
   * (`PacingPoint.VENDOR_CALL` only).
   *
   * @default - sum over 5 minutes
   */
  public metricVendorCalls(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.VENDOR_CALLS, 'Sum', props);
  }

  /**
   * How late the vendor caller fired against its pacing slot, in milliseconds, custom metric
   * `VendorCallLateness` (`PacingPoint.VENDOR_CALL` only). It is the first term of the pacing
   * guarantee: with the proxy's `Latency` spread it tells whether the lateness tolerance L covers
   * your path (README, Pacing).
   *
   * @default - maximum over 5 minutes
   */
  public metricVendorCallLateness(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.VENDOR_CALL_LATENESS, 'Maximum', props);
  }

  /**
   * 429s (the vendor's or the proxy's) that paused all dispatch, custom metric `VendorPauses`
   * (`PacingPoint.VENDOR_CALL` only).
   *
   * @default - sum over 5 minutes
   */
  public metricVendorPauses(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.VENDOR_PAUSES, 'Sum', props);
  }

  /**
   * With adaptive pacing (`VendorContract.adaptivePacing`): the effective rate the dispatcher
   * reserved pacing slots at, requests per second, custom metric `EffectiveRate`:
   * `min(rate in force, adaptive rate)`. Published only while the dispatcher reserves slots (no
   * data while idle); below the rate in force after the vendor's 429s, climbing back one step per
   * probe interval.
   *
   * @default - minimum over 5 minutes
   */
  public metricEffectiveRate(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.EFFECTIVE_RATE, 'Minimum', props);
  }

  /**
   * Requests sent at their slot without the pause check, because the read of the vendor's pause
   * failed or had not answered by the slot, custom metric `PauseChecksSkipped`
   * (`PacingPoint.VENDOR_CALL` only). The rate bound holds regardless; frequent ones mean a slow or
   * throttled pacer table.
   *
   * @default - sum over 5 minutes
   */
  public metricPauseChecksSkipped(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.PAUSE_CHECKS_SKIPPED, 'Sum', props);
  }

  /**
   * Requests given up by the dispatch workflow (its failed executions).
   *
   * @default - sum over 5 minutes
   */
  public metricDispatchFailures(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.dispatch.metricDispatchFailures(props);
  }

  /**
   * Requests to the vendor through the proxy (API Gateway `Count`, the proxy's 429s included).
   *
   * @default - sample count over 5 minutes
   */
  public metricVendorRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.proxy.metricCount(props);
  }

  /**
   * Requests the proxy refused with 429 before calling the vendor, metric `ProxyThrottles`
   * (from the proxy's access logs).
   *
   * @default - sum over 5 minutes
   */
  public metricProxyThrottles(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.proxy.metricProxyThrottles(props);
  }

  /**
   * Requests the vendor answered with 429, metric `VendorThrottles` (from the proxy's access
   * logs).
   *
   * @default - sum over 5 minutes
   */
  public metricVendorThrottles(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.proxy.metricVendorThrottles(props);
  }

  /**
   * Callbacks that resumed or failed a waiting workflow, custom metric `CallbacksResolved`.
   *
   * @default - sum over 5 minutes
   */
  public metricCallbacksResolved(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.webhook.metricCallbacksResolved(props);
  }

  /**
   * Callbacks refused and parked (malformed, no job id, too large), custom metric
   * `CallbacksRejected`.
   *
   * @default - sum over 5 minutes
   */
  public metricCallbacksRejected(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.webhook.metricCallbacksRejected(props);
  }

  /**
   * Callbacks for a workflow that had already ended, custom metric `LateCallbacks`.
   *
   * @default - sum over 5 minutes
   */
  public metricLateCallbacks(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.webhook.metricLateCallbacks(props);
  }

  /**
   * Repeated callbacks for a request already resumed, custom metric `DuplicateCallbacks`.
   *
   * @default - sum over 5 minutes
   */
  public metricDuplicateCallbacks(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.webhook.metricDuplicateCallbacks(props);
  }

  /**
   * Callbacks that arrived before their job id was stored, custom metric `EarlyCallbacks`.
   *
   * @default - sum over 5 minutes
   */
  public metricEarlyCallbacks(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.webhook.metricEarlyCallbacks(props);
  }

  /**
   * Time from a callback's arrival at the webhook to its workflow resumed, in milliseconds,
   * custom metric `CallbackLatency`.
   *
   * @default - average over 5 minutes
   */
  public metricCallbackLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.webhook.metricCallbackLatency(props);
  }

  /**
   * Requests parked in the request dead-letter queue.
   *
   * @default - maximum over 5 minutes
   */
  public metricRequestDeadLetterMessages(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.consumer.metricDeadLetterMessages(props);
  }

  /**
   * Callbacks parked in the callback dead-letter queue.
   *
   * @default - maximum over 5 minutes
   */
  public metricCallbackDeadLetterMessages(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.webhook.metricDeadLetterMessages(props);
  }

  /**
   * Lets an operator's managing service (a console, a billing system) read and write the key
   * settings items (issue 15): GetItem, PutItem, UpdateItem and DeleteItem on `keySettingsTable`
   * only, never the pacer table. Throws when the contract has no `perKey`.
   */
  public grantManageKeySettings(grantee: iam.IGrantable): iam.Grant {
    if (!this.keySettingsTable) {
      throw new Error('grantManageKeySettings: the contract has no perKey, so there is no key settings table: give contract: VendorContract.of({ ..., perKey: KeyLimits.of({...}) })');
    }
    return grantManageKeySettings(this.keySettingsTable, grantee);
  }

  /** Synth-time checks of a vendor call's literal method and path, naming the task. */
  private validateCall(id: string, task: string, method: string, path: string, hasBody: boolean, isDynamic: (v: string) => boolean): void {
    if (!isDynamic(method)) {
      const problem = methodProblem(method);
      if (problem) {
        throw new Error(`${task} '${id}': ${problem}`);
      }
      if (hasBody && method.toUpperCase() === 'GET') {
        throw new Error(`${task} '${id}': a GET call cannot have a body: remove body or use one of ${VENDOR_CALL_METHODS.filter((m) => m !== 'GET').join(', ')}`);
      }
    }
    if (!isDynamic(path)) {
      const problem = pathProblem(path);
      if (problem) {
        throw new Error(`${task} '${id}': ${problem}`);
      }
    }
  }

  /** A task's key fields (request-key-fields.ts), or undefined without a key. */
  private keyFields(id: string, method: string, key: string | undefined,
    fields: (where: string, key: string) => RequestKeyFields): RequestKeyFields | undefined {
    if (key === undefined && this.keysRequired) {
      const why = this.proxy.credentials.isPerKey
        ? 'the vendor credential is per key (VendorCredentials.fromSecretHeaderPerKey)'
        : 'the contract has limits per key (VendorContract.of({ perKey }))';
      throw new Error(`${method} '${id}': ${why}, so the task needs a key, e.g. key: ${method.endsWith('Jsonata') ? "'{% $states.input.customerId %}'" : "sfn.JsonPath.stringAt('$.customerId')"}`);
    }
    if (key === undefined) {
      return undefined;
    }
    const keyFields = fields(`${method} '${id}'`, key);
    this.useKeys();
    return keyFields;
  }

  /**
   * Issue 15: requests carry keys, so the Contributor Insights rules that rank them (and their
   * dashboard section) are created, once. Not before: each rule costs $0.50 a month (docs/cost.md).
   */
  private useKeys(): void {
    if (this.keyInsights) {
      return;
    }
    const caller = this.dispatch.vendorCaller;
    this.keyInsights = new KeyInsights(this, 'KeyInsights', {
      dispatcherLogGroup: this.consumer.function.logGroup,
      callbackProcessorLogGroup: this.webhook.processor.logGroup,
      // The vendor caller knows the key only when every request has one (request-key-steps.ts).
      vendorCallerLogGroup: this.keysRequired && caller instanceof lambda.Function ? caller.logGroup : undefined,
      // Only per-key limits set requests aside (key-set-aside.ts).
      setAside: hasPerKeyLimits(this.contract),
    });
    this.dashboardBuilder?.addKeys(this.keyInsights);
  }

  /**
   * Issue 15: every request needs a key, because the vendor credential is per key or the contract
   * has limits per key (the same test as the workflows' `requestsCarryKey`).
   */
  private get keysRequired(): boolean {
    return requestsCarryKey(this.proxy, this.contract);
  }

  /** The metrics scope, or an error when there is no key settings table (a metric of it is asked for). */
  private metricsScopeOfKeySettings(metric: string): string {
    if (!this.keySettingsTable) {
      throw new Error(`${metric}: the contract has no perKey, so there is no key settings table to read: give contract: VendorContract.of({ ..., perKey: KeyLimits.of({...}) })`);
    }
    return this.metricsScope;
  }

  /** The key rules, or an error saying how to get them (a metric of the keys is asked for). */
  private keyRules(metric: string): KeyInsights {
    if (!this.keyInsights) {
      throw new Error(`${metric}: no task of this orchestrator declares a key, so there are no per-key rules: give submitJobTask/callVendorTask a key (e.g. key: sfn.JsonPath.stringAt('$.customerId')) before asking for the metric`);
    }
    return this.keyInsights;
  }

  /**
   * `endsJobOf` frees a place of `maxJobsInFlight`, and only the vendor caller
   * (PacingPoint.VENDOR_CALL) sees the answer that decides it: refused otherwise, rather than
   * silently freeing nothing.
   */
  private validateEndsJobOf(id: string, task: string, endsJobOf: string | undefined): void {
    if (endsJobOf === undefined) {
      return;
    }
    if (!Token.isUnresolved(endsJobOf) && endsJobOf.trim() === '') {
      throw new Error(`${task} '${id}': endsJobOf must be the request id of the submitJobTask whose job the call ends (e.g. sfn.JsonPath.stringAt('$.orderId')), given an empty string`);
    }
    if (this.contract.maxJobsInFlight === undefined) {
      throw new Error(`${task} '${id}': endsJobOf frees the job's place in flight, but the contract has no maxJobsInFlight: remove endsJobOf, or set VendorContract.of({ maxJobsInFlight, ... })`);
    }
    if (!this.dispatch.vendorCaller) {
      throw new Error(`${task} '${id}': endsJobOf needs pacingPoint PacingPoint.VENDOR_CALL (the vendor caller sees the vendor's answer and frees the place); with PacingPoint.DISPATCH the job's place is freed by its callback or expires at maxJobDuration: remove endsJobOf or the pacingPoint`);
    }
  }

  private validateCallTimeout(id: string, timeout: Duration | undefined): Duration {
    const value = timeout ?? Duration.minutes(15);
    validateDuration(`timeout of '${id}'`, value, Duration.seconds(1), Duration.days(365), 'a Standard workflow runs at most one year');
    return value;
  }

  /** The vendor-call workflow, created (and wired to the consumer and registered workflows) on first use. */
  private ensureVendorCallWorkflow(): VendorCallWorkflow {
    if (!this.vendorCallWorkflow) {
      const workflow = new VendorCallWorkflow(this, 'VendorCall', {
        ...this.vendorCallOptions,
        proxy: this.proxy,
        table: this.table,
        requestQueue: this.consumer.queue,
        deadLetterQueue: this.consumer.deadLetterQueue,
        // PacingPoint.VENDOR_CALL: calls are fired at their slot by the same caller as submissions.
        vendorCaller: this.dispatch.vendorCaller,
        contract: this.contract,
        tracingEnabled: this.vendorCallOptions?.tracingEnabled ?? this.tracing,
      });
      this.consumer.dispatchCallsTo(workflow.stateMachine);
      for (const stateMachine of this.registeredStateMachines) {
        workflow.grantTaskResponses(stateMachine);
      }
      this.vendorCallWorkflow = workflow;
    }
    return this.vendorCallWorkflow;
  }

  /** Where a task with `priority` sends (request-queue-routing.ts); the high queue's DLQ alarm joins `alarms` when it is created. */
  private requestQueueRoute(priority: Priority | undefined, language: 'jsonPath' | 'jsonata', where: string): RequestQueueRoute {
    const route = requestQueueRoute(this, `PriorityRoute${this.submitTasks}`, this.consumer, priority, language, where);
    const alarm = this.consumer.highPriorityDeadLetterAlarm;
    if (alarm && !this.alarms.includes(alarm)) {
      this.trackAlarm(alarm);
    }
    return route;
  }

  /** Adds an alarm to `alarms` and gives it the alarm actions added so far. */
  private trackAlarm(alarm: cloudwatch.Alarm): cloudwatch.Alarm {
    this.alarms.push(alarm);
    this.actionableAlarms.push(alarm);
    if (this.alarmActions.length > 0) {
      alarm.addAlarmAction(...this.alarmActions);
    }
    return alarm;
  }
}

/** The contract from `contract` or its `requestsPerSecond` shorthand: exactly one of the two. */
function contractOf(props: AsyncExternalApiOrchestratorProps): VendorContract {
  if (props.contract !== undefined && props.requestsPerSecond !== undefined) {
    throw new Error(`requestsPerSecond is given twice (requestsPerSecond ${props.requestsPerSecond} and contract.requestsPerSecond ${props.contract.requestsPerSecond}): give contract or requestsPerSecond, not both`);
  }
  if (props.contract !== undefined) {
    return props.contract;
  }
  if (props.requestsPerSecond === undefined) {
    throw new Error('the vendor contract is missing: give contract (VendorContract.of({ requestsPerSecond: 10, ... })) or requestsPerSecond');
  }
  return VendorContract.of({ requestsPerSecond: props.requestsPerSecond });
}
