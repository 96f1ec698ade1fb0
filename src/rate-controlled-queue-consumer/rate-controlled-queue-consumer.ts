import { Annotations, Duration, Names, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { ConsumerTrigger, ConsumerTriggerType } from './consumer-trigger';
import { DispatcherFunction } from './dispatcher-function';
import { DynamicDelay, DynamicDelayOptions } from './dynamic-delay';
import { createHighPriorityRequestQueue, HighPriorityQueueSpec } from './high-priority-request-queue';
import { allowWakingWaiters, createJobWaitingRoom } from './job-waiting-room';
import { deriveRateSettings, PacingPoint, RateSettings } from './rate-settings';
import { addScheduleTrigger, planScheduleTrigger, ScheduleTriggerPlan } from './schedule-trigger';
import { createPacerTable } from '../contract/contract-state-resources';
import { VendorContract } from '../contract/vendor-contract';
import { IVendorContractState } from '../contract/vendor-contract-state';
import { customMetric, POWERTOOLS_METRICS_NAMESPACE_ENV, validateMetricsScope } from '../shared/custom-metrics';
import { ConsumerEnv } from '../shared/env';
import { METRICS_NAMESPACE, METRICS_SCOPE_ENV, MetricNames } from '../shared/metrics';
import { addFunctionNagSuppressions } from '../shared/nag';
import { createWorkQueue, WorkQueue } from '../shared/queues';
import { validateDuration, validateRequestsPerSecond, validateWholeNumber } from '../shared/validation';

/**
 * Options for the RateControlledQueueConsumer that the orchestrator passes through.
 */
export interface RateControlledQueueConsumerOptions {
  /**
   * Messages per invocation (the event source mapping's batch size), 1 to 10000.
   *
   * Batch size alone does not limit the rate: the dispatcher paces every start.
   *
   * @default - the contract rounded up, at least 1 and at most 10000 (about one second of work per invocation)
   */
  readonly batchSize?: number;

  /**
   * How long the event source mapping gathers messages before invoking, up to 5 minutes.
   * Lambda requires at least 1 second when `batchSize` is above 10.
   *
   * @default - no wait when batchSize <= 10, 1 second otherwise
   */
  readonly maxBatchingWindow?: Duration;

  /**
   * Most concurrent invocations the event source mapping may start, 2 to 1000.
   *
   * This, not reserved concurrency, is how AWS recommends capping an SQS consumer.
   *
   * @default 2
   */
  readonly maxConcurrency?: number;

  /**
   * Reserved concurrency of the dispatcher function.
   *
   * Below `maxConcurrency` it throttles invocations, which returns messages to the queue and can
   * push them to the dead-letter queue: a synth-time warning says so. Lambda only lets an account
   * reserve what leaves 100 unreserved, so accounts with a low concurrency quota (new accounts
   * can have 10) refuse any reservation at deploy time.
   *
   * With `ConsumerTrigger.schedule()` it may only be 1 (ticks already run one at a time through
   * the drain lease; 1 makes Lambda enforce it too).
   *
   * @default - no reservation
   */
  readonly reservedConcurrentExecutions?: number;

  /**
   * Provisioned concurrency of the dispatcher function (on an alias named `live`). It removes
   * cold starts; it limits nothing.
   *
   * @default - none
   */
  readonly provisionedConcurrentExecutions?: number;

  /**
   * Receives before a request message is parked in the dead-letter queue.
   *
   * Waiting for a pacing slot does not count: a message that gets no slot in time is re-sent as a
   * delayed copy (the copy starts at receive count 0) and the original deleted, so only failed
   * dispatches (StartExecution or the pacer table failing) use up receives.
   *
   * @default 10
   */
  readonly maxReceiveCount?: number;

  /**
   * Visibility timeout of the request queue. At least the function timeout; AWS recommends six
   * times it.
   *
   * @default - six times the function timeout
   */
  readonly visibilityTimeout?: Duration;

  /**
   * Where the pacing schedule is applied: the StartExecution calls (`DISPATCH`) or the vendor call
   * itself (`VENDOR_CALL`: executions start `lead` before their slot and pass `slotAtMs` to the
   * workflow, whose vendor caller fires at the slot). See the README, "Pacing".
   *
   * @default - PacingPoint.VENDOR_CALL in an AsyncExternalApiOrchestrator; PacingPoint.DISPATCH for a
   * consumer used alone (its workflow may not honour `slotAtMs`)
   */
  readonly pacingPoint?: PacingPoint;

  /**
   * With `PacingPoint.VENDOR_CALL`: how long before its pacing slot an execution is started, so
   * that the workflow reaches the vendor caller before the slot. Too short: callers arrive late
   * and give their slots up (throughput, never the bound). Too long: callers wait (Lambda time).
   *
   * @default Duration.seconds(1) with VENDOR_CALL, none with DISPATCH
   */
  readonly lead?: Duration;

  /**
   * `L`: slots are spaced `(1 s + L + 1 ms) / floor(requestsPerSecond)` apart (the 1 ms is a margin
   * at the window's edge). With `VENDOR_CALL` it must cover how late the caller fires
   * (`fireTolerance` + 1 ms, the resolution of the caller's clock) plus the spread of the caller ->
   * proxy -> vendor latency plus the spread between the callers' clocks (README, "Choosing L");
   * with `DISPATCH`, how late a start may be. Larger values cost throughput (best utilization
   * `1 s / (1 s + L + 1 ms)`).
   *
   * @default Duration.millis(30) with VENDOR_CALL (utilization up to 0.970), Duration.millis(50) with DISPATCH
   */
  readonly latenessTolerance?: Duration;

  /**
   * With `VENDOR_CALL`: how late the vendor caller may fire against its slot before it gives the
   * slot up and reserves a new one. Part of `latenessTolerance`. At least 2 ms: the caller's clock
   * (`Date.now()`) counts whole milliseconds, and 1 ms of the tolerance goes to that resolution.
   *
   * @default Duration.millis(5)
   */
  readonly fireTolerance?: Duration;

  /**
   * Customer-managed KMS key for the request queue and its dead-letter queue.
   *
   * @default - SQS-managed encryption (SSE-SQS)
   */
  readonly encryptionKey?: kms.IKey;

  /**
   * Alarm when the backlog holds more than this much work at the contracted rate
   * (threshold = requestsPerSecond x this many seconds of messages).
   *
   * @default Duration.minutes(5)
   */
  readonly backlogAlarmThreshold?: Duration;

  /**
   * How long the dispatcher's logs are kept.
   *
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * X-Ray active tracing of the dispatcher function.
   *
   * @default false
   */
  readonly tracingEnabled?: boolean;

  // --- schedule trigger (low-rate mode): begin ---
  /**
   * What invokes the dispatcher: the request queue's event source mapping, or an EventBridge
   * Scheduler schedule that drains at most `floor(requestsPerSecond x period)` messages per tick
   * (low-rate mode, for contracts below about 1 request per second; see docs/low-rate-mode.md).
   * Both pace every start through the same schedule of slots.
   *
   * With `ConsumerTrigger.schedule()`, `batchSize`, `maxConcurrency`, `maxBatchingWindow` and
   * `provisionedConcurrentExecutions` do not apply (an error if given), and the function timeout is
   * the period minus 5 seconds (at most 15 minutes). Ticks run one at a time through a lease in the
   * pacer table, without reserved concurrency (which accounts with little concurrency refuse).
   *
   * @default ConsumerTrigger.eventSource()
   */
  readonly trigger?: ConsumerTrigger;
  // --- schedule trigger (low-rate mode): end ---
  // --- dynamic delay (AppConfig) ---
  /**
   * Creates an AWS AppConfig configuration `{"extraDelayMs": N}` that operators change at run
   * time to slow dispatch down without a deploy: `N` milliseconds (0 to 60000) are added to the
   * interval between two pacing slots. It can only slow; the contract is always kept. It also
   * takes the rate in force, `"requestsPerSecond": R` (at most the contract, the ceiling fixed at
   * deploy; absent: the contract). Give `{}` for the defaults. How to change them and when a change
   * takes effect: docs/operations.md, "Slowing dispatch at run time", and the README, "The rate at
   * run time".
   *
   * @default - no dynamic delay
   */
  readonly dynamicDelay?: DynamicDelayOptions;
  // --- end dynamic delay ---
}

/**
 * Properties for a RateControlledQueueConsumer.
 */
/**
 * A jobs-in-flight limit for `RateControlledQueueConsumer.limitJobsInFlight()`.
 */
export interface JobsInFlightLimit {
  /** The most of the vendor's jobs in progress at once (VendorContract.maxJobsInFlight). */
  readonly maxJobsInFlight: number;
  /** A place not freed by a callback expires this long after it was taken (VendorContract.maxJobDuration). */
  readonly maxJobDuration: Duration;
  /** The correlation table: a redelivered request whose job was already submitted takes no new place. */
  readonly correlationTable: dynamodb.ITable;
  /**
   * How long a request without a place waits before it asks again when it cannot be moved to the
   * waiting queue (an SQS error): it then waits as a delayed copy in the request queue. Normally a
   * request without a place waits in the waiting queue and is woken when a place is freed. Whole
   * seconds.
   *
   * @default Duration.seconds(2)
   */
  readonly recheckInterval?: Duration;
  /**
   * The `jobsInFlightAlarm` fires when the jobs in flight stayed at the limit this long (every
   * minute of it): requests have been waiting for places. Whole minutes.
   *
   * @default Duration.minutes(15)
   */
  readonly atLimitAlarmAfter?: Duration;
}

export interface RateControlledQueueConsumerProps extends RateControlledQueueConsumerOptions {
  /** The contract: the most requests per second the vendor allows. */
  readonly requestsPerSecond: number;

  /**
   * The Express workflow started once per message.
   *
   * @default - none: call `dispatchTo()` before synthesis
   */
  readonly stateMachine?: sfn.IStateMachine;

  /**
   * How long correlation items written for a request live (DynamoDB TTL).
   *
   * @default Duration.days(2)
   */
  readonly correlationTtl?: Duration;

  /**
   * Value of the `Scope` dimension of the dispatcher's custom metrics (namespace
   * `CdkAsyncExternalApi`). An orchestrator passes its own, so all its metrics share one scope.
   * Letters, digits and `. _ : / -`, at most 255 characters.
   *
   * @default - this construct's unique id (`Names.uniqueId`)
   */
  readonly metricsScope?: string;

  /**
   * The contract's state (pacer table, dynamic delay) when it is shared with other consumers or
   * orchestrators calling the same vendor under the same contract (`VendorContractState`, or one
   * imported with `VendorContractState.fromVendorContractStateAttributes`): all pace against one
   * schedule. Its contract's rate must be `requestsPerSecond`; give `dynamicDelay` to the state,
   * not here.
   *
   * @default - its own: a pacer table (and, with `dynamicDelay`, an AppConfig configuration)
   * created by this consumer
   */
  readonly contractState?: IVendorContractState;
}

/**
 * How a consumer reserves slots from a schedule: every consumer sharing one pacer table must reserve
 * them alike, or the one with the shorter spacing (or the other pacing point) breaks the bound the
 * other keeps. Recorded per table (own or shared) within one app: a state imported by another app
 * cannot be checked.
 */
const PACING_OF_TABLE = new WeakMap<dynamodb.ITable, { readonly path: string; readonly pacing: SlotPacing }>();

/** Time an invocation keeps for its SDK calls after its last pacing slot. */
const INVOCATION_SLACK_SECONDS = 15;

/**
 * SQS request queue and a paced Lambda consumer that starts one Express execution per message
 * (blog steps 2-3).
 *
 * The dispatcher never starts more than the contract in any sliding 1-second window, across all
 * its concurrent invocations and cold starts: each invocation reserves start times ("slots")
 * spaced `(1 s + latenessTolerance) / requestsPerSecond` apart from one schedule kept in a small
 * DynamoDB table (conditional writes, no locks), sleeps until each slot and gives up a slot it
 * is late for. The function timeout is derived from the longest such wait.
 */
export class RateControlledQueueConsumer extends Construct {
  /** The request queue. */
  public readonly queue: sqs.Queue;
  /** Where request messages that cannot be dispatched are parked. */
  public readonly deadLetterQueue: sqs.Queue;
  /** The dispatcher function. */
  public readonly function: lambda.Function;
  /**
   * The pacing schedule: the pacer table of `contractState` (its own unless a shared state was
   * given). Items: README, "Sharing a contract".
   */
  public readonly pacerTable: dynamodb.ITable;
  /** The contract's state this consumer paces against (its own unless `contractState` was given). */
  public readonly contractState: IVendorContractState;
  /** Fires when the backlog exceeds `backlogAlarmThreshold` of work at the contracted rate. */
  public readonly backlogAlarm: cloudwatch.Alarm;
  /** Fires when a request message is parked in the dead-letter queue. */
  public readonly deadLetterAlarm: cloudwatch.Alarm;
  /** The contract. */
  public readonly requestsPerSecond: number;
  /** The event source mapping's batch size. */
  public readonly batchSize: number;
  /** The event source mapping's maximum concurrency. */
  public readonly maxConcurrency: number;
  /** Backlog alarm threshold, in messages. */
  public readonly backlogThresholdMessages: number;
  /** Value of the `Scope` dimension of the dispatcher's custom metrics. */
  public readonly metricsScope: string;
  // --- schedule trigger (low-rate mode): begin ---
  /** The schedule invoking the dispatcher; undefined with the event source trigger. */
  public readonly schedule?: scheduler.Schedule;
  /**
   * The most messages one tick drains: `floor(requestsPerSecond x period)`; undefined with the
   * event source trigger.
   */
  public readonly maxMessagesPerTick?: number;
  // --- schedule trigger (low-rate mode): end ---
  /**
   * The AppConfig dynamic delay this consumer created, when `dynamicDelay` is given. With a shared
   * `contractState`, the one in force is `contractState.dynamicDelay`.
   */
  public readonly dynamicDelay?: DynamicDelay;
  /** Where the pacing schedule is applied. */
  public readonly pacingPoint: PacingPoint;
  /** Every rate knob, derived from the contract and the overrides (see the README, "Pacing"). */
  public readonly rateSettings: RateSettings;

  private readonly sharesState: boolean;
  private stateMachine?: sfn.IStateMachine;
  private callStateMachine?: sfn.IStateMachine;
  private jobsInFlightLimit?: number;
  private atLimitAlarm?: cloudwatch.Alarm;
  private waitingQueue?: sqs.Queue;
  private readonly encryptionKey?: kms.IKey;
  /** What the high-priority queue copies (high-priority-request-queue.ts); undefined with the schedule trigger. */
  private readonly highPriorityQueueSpec?: HighPriorityQueueSpec;
  private highPriorityWork?: WorkQueue;

  constructor(scope: Construct, id: string, props: RateControlledQueueConsumerProps) {
    super(scope, id);

    this.encryptionKey = props.encryptionKey;
    validateRequestsPerSecond(props.requestsPerSecond);
    this.requestsPerSecond = props.requestsPerSecond;
    validateWholeNumber('batchSize', props.batchSize, 1, 10_000, 'the SQS event source mapping limit for standard queues');
    validateWholeNumber('maxConcurrency', props.maxConcurrency, 2, 1000, 'the SQS event source mapping limit');
    validateWholeNumber('maxReceiveCount', props.maxReceiveCount, 1, 1000);
    validateWholeNumber('reservedConcurrentExecutions', props.reservedConcurrentExecutions, 1, 10_000);
    validateWholeNumber('provisionedConcurrentExecutions', props.provisionedConcurrentExecutions, 1, 10_000);
    validateDuration('maxBatchingWindow', props.maxBatchingWindow, Duration.seconds(0), Duration.minutes(5));
    validateDuration('latenessTolerance', props.latenessTolerance, Duration.millis(1), Duration.seconds(1));
    validateDuration('fireTolerance', props.fireTolerance, Duration.millis(0), Duration.seconds(1));
    validateDuration('lead', props.lead, Duration.millis(0), Duration.minutes(1));
    validateDuration('backlogAlarmThreshold', props.backlogAlarmThreshold, Duration.seconds(1), Duration.days(1));
    validateDuration('correlationTtl', props.correlationTtl, Duration.minutes(1), Duration.days(400));
    validateMetricsScope(props.metricsScope);
    this.metricsScope = props.metricsScope ?? Names.uniqueId(this);
    this.pacingPoint = props.pacingPoint ?? PacingPoint.DISPATCH;
    this.rateSettings = deriveRateSettings(props.requestsPerSecond, {
      pacingPoint: this.pacingPoint,
      batchSize: props.batchSize,
      maxBatchingWindowMs: props.maxBatchingWindow?.toMilliseconds(),
      maxConcurrency: props.maxConcurrency,
      leadMs: props.lead?.toMilliseconds(),
      latenessToleranceMs: props.latenessTolerance?.toMilliseconds(),
      fireToleranceMs: props.fireTolerance?.toMilliseconds(),
    });
    for (const warning of this.rateSettings.warnings) {
      // Proxy warnings are the proxy's to give (it knows its own limits).
      if (!/throttling/.test(warning.id)) {
        Annotations.of(this).addWarningV2(warning.id, warning.message);
      }
    }
    this.batchSize = this.rateSettings.batchSize;
    this.maxConcurrency = this.rateSettings.maxConcurrency;
    validateWholeNumber('batchSize', this.batchSize, 1, 10_000, 'the SQS event source mapping limit for standard queues');
    if (this.batchSize > 10 && props.maxBatchingWindow !== undefined && props.maxBatchingWindow.toMilliseconds() < 1000) {
      throw new Error(`maxBatchingWindow must be at least 1 second when batchSize is above 10 (given ${props.maxBatchingWindow.toHumanString()} with batchSize ${this.batchSize}): Lambda requires it`);
    }

    // Function timeout: the longest an invocation may wait for its pacing slots (every other
    // concurrent invocation's batch may be scheduled first) plus slack for the SDK calls.
    const latenessTolerance = Duration.millis(this.rateSettings.latenessToleranceMs);
    const slotIntervalMs = this.rateSettings.slotIntervalMs;
    const pacingSeconds = Math.ceil((this.batchSize * this.maxConcurrency * slotIntervalMs) / 1000);
    let timeoutSeconds = Math.max(30, pacingSeconds + INVOCATION_SLACK_SECONDS);
    // --- schedule trigger (low-rate mode): begin ---
    const trigger = props.trigger ?? ConsumerTrigger.eventSource();
    const schedulePlan: ScheduleTriggerPlan | undefined = trigger.type === ConsumerTriggerType.SCHEDULE
      ? planScheduleTrigger(this, props, trigger.every ?? Duration.minutes(1))
      : undefined;
    if (schedulePlan) {
      // Ticks run one at a time and end before the next is due; a tick paces what fits in it.
      timeoutSeconds = schedulePlan.timeoutSeconds;
      this.maxMessagesPerTick = schedulePlan.maxMessagesPerTick;
    }
    // --- schedule trigger (low-rate mode): end ---
    if (timeoutSeconds > 900) {
      throw new Error(`batchSize x maxConcurrency = ${this.batchSize * this.maxConcurrency} messages take ${pacingSeconds} s to pace at ${props.requestsPerSecond} requests per second, more than a Lambda invocation may run (15 minutes): lower batchSize or maxConcurrency`);
    }
    const timeout = Duration.seconds(timeoutSeconds);

    const visibilityTimeout = props.visibilityTimeout ?? Duration.seconds(Math.min(43_200, timeoutSeconds * 6));
    validateDuration('visibilityTimeout', visibilityTimeout, timeout, Duration.hours(12),
      `the request queue's visibility timeout must cover the dispatcher's timeout of ${timeout.toHumanString()}`);
    if (props.visibilityTimeout && props.visibilityTimeout.toSeconds() < timeoutSeconds * 6) {
      Annotations.of(this).addWarningV2('cdk-async-external-api:visibilityTimeout',
        `visibilityTimeout ${props.visibilityTimeout.toHumanString()} is below six times the dispatcher timeout (${timeoutSeconds * 6} seconds), which AWS recommends so that retried invocations do not see messages reappear`);
    }
    // The schedule trigger has no event source mapping: maxConcurrency does not apply there.
    if (!schedulePlan && props.reservedConcurrentExecutions !== undefined && props.reservedConcurrentExecutions < this.maxConcurrency) {
      Annotations.of(this).addWarningV2('cdk-async-external-api:reservedConcurrency',
        `reservedConcurrentExecutions (${props.reservedConcurrentExecutions}) is below maxConcurrency (${this.maxConcurrency}): Lambda throttles the extra invocations, messages return to the queue and can reach the dead-letter queue. Use maxConcurrency alone to cap the consumer`);
    }

    const work = createWorkQueue(this, 'Request', {
      visibilityTimeout,
      maxReceiveCount: props.maxReceiveCount ?? 10,
      encryptionKey: props.encryptionKey,
    });
    this.queue = work.queue;
    this.deadLetterQueue = work.deadLetterQueue;
    this.deadLetterAlarm = work.deadLetterAlarm;

    // The contract's state: given (shared with other consumers) or this consumer's own, created
    // under the same ids as before sharing existed (logical ids unchanged for deployed stacks).
    const sharedState = props.contractState;
    this.sharesState = sharedState !== undefined;
    if (sharedState) {
      checkSharedState(this, sharedState, props);
    }
    this.pacerTable = sharedState?.pacerTable ?? createPacerTable(this, 'PacerTable');
    recordPacing(this, this.pacerTable, { pacingPoint: this.pacingPoint, slotIntervalMs: this.rateSettings.slotIntervalMs });

    this.function = new DispatcherFunction(this, 'Function', {
      description: 'Starts one dispatch workflow per request message, paced to the vendor contract',
      timeout,
      memorySize: 256,
      // Schedule trigger: no reservation by default (ticks take the drain lease instead, see
      // scheduled-drain.ts); a reservation needs spare account concurrency and new accounts have none.
      reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      tracing: props.tracingEnabled ? lambda.Tracing.ACTIVE : undefined,
      logGroup: new logs.LogGroup(this, 'FunctionLogs', {
        retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
        removalPolicy: RemovalPolicy.RETAIN,
      }),
      environment: {
        [ConsumerEnv.REQUESTS_PER_SECOND]: String(props.requestsPerSecond),
        [ConsumerEnv.PACER_TABLE_NAME]: this.pacerTable.tableName,
        [ConsumerEnv.MAX_PACING_WAIT_MS]: String((timeoutSeconds - INVOCATION_SLACK_SECONDS) * 1000),
        [ConsumerEnv.LATENESS_TOLERANCE_MS]: String(latenessTolerance.toMilliseconds()),
        [ConsumerEnv.PACING_LEAD_MS]: String(this.rateSettings.leadMs),
        [ConsumerEnv.CORRELATION_TTL_SECONDS]: String((props.correlationTtl ?? Duration.days(2)).toSeconds()),
        DEAD_LETTER_QUEUE_URL: this.deadLetterQueue.queueUrl,
        POWERTOOLS_SERVICE_NAME: 'dispatcher',
      },
    });
    // Custom metrics (Powertools Metrics, EMF): one scope per orchestrator or standalone consumer.
    this.function.addEnvironment(METRICS_SCOPE_ENV, this.metricsScope);
    this.function.addEnvironment(POWERTOOLS_METRICS_NAMESPACE_ENV, METRICS_NAMESPACE);
    this.pacerTable.grant(this.function, 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem');
    this.deadLetterQueue.grantSendMessages(this.function);
    // Postponing a message that got no pacing slot re-sends it with a delay (dispatch.ts,
    // postponeAll), so that waiting never counts against maxReceiveCount.
    this.queue.grantSendMessages(this.function);
    // --- dynamic delay (AppConfig) ---
    if (!sharedState && props.dynamicDelay) {
      // The contract is the ceiling of the rate operators may set at run time (AppConfig refuses more).
      this.dynamicDelay = new DynamicDelay(this, 'DynamicDelay', { ...props.dynamicDelay, maxRequestsPerSecond: props.requestsPerSecond });
    }
    // Its own state records only the rate (the consumer knows no other term of the contract); an
    // orchestrator's own state records its whole contract (AsyncExternalApiOrchestrator.contractState).
    const ownContract = VendorContract.of({ requestsPerSecond: props.requestsPerSecond });
    this.contractState = sharedState ?? { contract: ownContract, pacerTable: this.pacerTable, dynamicDelay: this.dynamicDelay };
    const dynamicDelay = this.contractState.dynamicDelay;
    if (dynamicDelay) {
      for (const [name, value] of Object.entries(dynamicDelay.environmentVariables)) {
        this.function.addEnvironment(name, value);
      }
      dynamicDelay.grantRead(this.function);
    }
    // --- end dynamic delay ---
    if (sharedState) {
      // Keys what is this consumer's own in the shared table (its drain lease, its job places): its
      // queue's ARN, unique in the account and region, and stable (the queue is never replaced).
      this.function.addEnvironment(ConsumerEnv.SHARED_STATE_OWNER, this.queue.queueArn);
    }
    // cdk-nag AwsSolutions: the pinned runtime, the managed logging policy, X-Ray and KMS wildcards.
    addFunctionNagSuppressions(this.function, { tracing: props.tracingEnabled, kms: props.encryptionKey !== undefined });

    const target: lambda.IFunction = props.provisionedConcurrentExecutions !== undefined
      ? this.function.addAlias('live', { provisionedConcurrentExecutions: props.provisionedConcurrentExecutions })
      : this.function;
    // --- schedule trigger (low-rate mode): begin ---
    if (schedulePlan) {
      this.schedule = addScheduleTrigger(this, this.function, target, this.queue, schedulePlan).schedule;
    } else {
    // --- schedule trigger (low-rate mode): end ---
      target.addEventSource(new SqsEventSource(this.queue, {
        batchSize: this.batchSize,
        maxBatchingWindow: this.rateSettings.maxBatchingWindowMs > 0 ? Duration.millis(this.rateSettings.maxBatchingWindowMs) : undefined,
        maxConcurrency: this.maxConcurrency,
        reportBatchItemFailures: true,
      }));
      // Issue 15: a high-priority queue is mapped to the same target when a task needs one.
      this.highPriorityQueueSpec = {
        visibilityTimeout,
        maxReceiveCount: props.maxReceiveCount ?? 10,
        encryptionKey: props.encryptionKey,
        dispatcher: this.function,
        target,
        batchSize: this.batchSize,
        maxConcurrency: this.maxConcurrency,
        reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      };
    } // schedule trigger (low-rate mode)

    const backlogAlarmThreshold = props.backlogAlarmThreshold ?? Duration.minutes(5);
    this.backlogThresholdMessages = Math.max(1, Math.ceil(props.requestsPerSecond * backlogAlarmThreshold.toSeconds()));
    this.backlogAlarm = new cloudwatch.Alarm(this, 'BacklogAlarm', {
      alarmDescription: `The request backlog holds more than ${this.backlogThresholdMessages} messages, over ${backlogAlarmThreshold.toHumanString()} of work at the contracted ${props.requestsPerSecond} requests per second: demand exceeds the contract.`,
      metric: this.metricBacklog({ period: Duration.minutes(1), statistic: 'Maximum' }),
      threshold: this.backlogThresholdMessages,
      evaluationPeriods: 3,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    if (props.stateMachine) {
      this.dispatchTo(props.stateMachine);
    }
    this.node.addValidation({
      validate: () => (this.stateMachine ? [] : ['RateControlledQueueConsumer has no workflow to start: pass stateMachine or call dispatchTo()']),
    });
  }

  /**
   * The high-priority request queue (issue 15), once `enableHighPriorityQueue()` created it: high
   * requests sent there are dispatched ahead of the request queue's backlog (README, "Priorities").
   *
   * @default - none
   */
  public get highPriorityQueue(): sqs.IQueue | undefined {
    return this.highPriorityWork?.queue;
  }

  /**
   * Fires when a message is parked in the high-priority queue's dead-letter queue (once
   * `enableHighPriorityQueue()` created it).
   *
   * @default - none
   */
  public get highPriorityDeadLetterAlarm(): cloudwatch.Alarm | undefined {
    return this.highPriorityWork?.deadLetterAlarm;
  }

  /**
   * Creates the high-priority request queue (with its own dead-letter queue and alarm) and maps it
   * to the dispatcher, once; returns it. The orchestrator calls it for the first task that can send
   * a high-priority request. With `ConsumerTrigger.schedule()` there is no event source mapping to
   * poll a second queue: it returns undefined and priorities only order each drained batch.
   *
   * @returns the high-priority request queue, or undefined with the schedule trigger
   */
  public enableHighPriorityQueue(): sqs.IQueue | undefined {
    if (this.highPriorityQueueSpec) {
      this.highPriorityWork ??= createHighPriorityRequestQueue(this, this.highPriorityQueueSpec);
    }
    return this.highPriorityWork?.queue;
  }

  /**
   * Sets the Express workflow the dispatcher starts once per message. Called once.
   */
  public dispatchTo(stateMachine: sfn.IStateMachine): void {
    if (this.stateMachine) {
      throw new Error('dispatchTo() was already called or stateMachine was given: a consumer starts exactly one workflow');
    }
    this.stateMachine = stateMachine;
    this.function.addEnvironment(ConsumerEnv.STATE_MACHINE_ARN, stateMachine.stateMachineArn);
    stateMachine.grantStartExecution(this.function);
  }

  /**
   * Sets the Express workflow the dispatcher starts for vendor-call messages (kind `call`, from
   * `callVendorTask`), paced like every other message. Called once.
   */
  public dispatchCallsTo(stateMachine: sfn.IStateMachine): void {
    if (this.callStateMachine) {
      throw new Error('dispatchCallsTo() was already called: a consumer starts one vendor-call workflow');
    }
    this.callStateMachine = stateMachine;
    this.function.addEnvironment(ConsumerEnv.CALL_STATE_MACHINE_ARN, stateMachine.stateMachineArn);
    stateMachine.grantStartExecution(this.function);
  }

  /**
   * Keeps the vendor's jobs in flight at most `maxJobsInFlight` (VendorContract.maxJobsInFlight): a
   * job submission gets a place in the pacer table before a pacing slot is reserved for it; one
   * without is moved to the waiting queue (`jobWaitingQueue`: no attempt, no receive count spent,
   * nothing done while it waits). The places are freed by the callback processor
   * (`CallbackWebhook.freeJobPlacesIn`) or expire after `maxJobDuration`; every function that frees
   * places wakes one waiter per freed place (`allowWakingWaiters`), and a sweep every minute drops
   * expired places and wakes waiters for the free ones. Called once.
   */
  public limitJobsInFlight(limit: JobsInFlightLimit): void {
    if (this.jobsInFlightLimit !== undefined) {
      throw new Error('limitJobsInFlight() was already called: a consumer keeps one jobs-in-flight limit');
    }
    validateWholeNumber('maxJobsInFlight', limit.maxJobsInFlight, 1, 5000, 'the places are kept in one DynamoDB item of at most 400 KB');
    const stateLimit = this.contractState.contract.maxJobsInFlight;
    if (this.sharesState && stateLimit !== limit.maxJobsInFlight) {
      throw new Error(`maxJobsInFlight ${limit.maxJobsInFlight} differs from the shared contract state's (${stateLimit ?? 'none'}): the places in its table are counted against one limit; give the contract's maxJobsInFlight, or a state made for this contract`);
    }
    validateDuration('maxJobDuration', limit.maxJobDuration, Duration.seconds(1), Duration.days(365));
    const recheck = limit.recheckInterval ?? Duration.seconds(2);
    validateDuration('recheckInterval', recheck, Duration.seconds(1), Duration.minutes(15), 'a waiting request is a delayed SQS copy (whole seconds, at most 15 minutes)');
    if (!Number.isInteger(recheck.toSeconds({ integral: false }))) {
      throw new Error(`recheckInterval must be whole seconds (given ${recheck.toHumanString()}): SQS delays messages in whole seconds`);
    }
    this.jobsInFlightLimit = limit.maxJobsInFlight;
    this.function.addEnvironment(ConsumerEnv.MAX_JOBS_IN_FLIGHT, String(limit.maxJobsInFlight));
    this.function.addEnvironment(ConsumerEnv.MAX_JOB_DURATION_MS, String(limit.maxJobDuration.toMilliseconds()));
    this.function.addEnvironment(ConsumerEnv.JOB_PLACE_RECHECK_MS, String(recheck.toMilliseconds()));
    this.function.addEnvironment(ConsumerEnv.CORRELATION_TABLE_NAME, limit.correlationTable.tableName);
    // The waiting room (shared/job-waiting.ts): requests without a place wait in their own queue
    // and are woken when a place is freed; the sweep bounds what the wakes miss to about a minute.
    // Not with a shared contract state: each consumer's freers would wake only its own waiters, and
    // a consumer with no job running would wait for the others' places only through its sweep (it
    // could starve while another keeps a backlog). Its requests recheck as delayed copies instead.
    if (!this.sharesState) {
      this.waitingQueue = createJobWaitingRoom(this, this.function, this.queue, this.encryptionKey).queue;
    }
    // A request whose job was already submitted takes no new place (job-admission.ts). The table
    // itself only: `table.grant` would add its indexes (`/index/*`), which a GetItem never reads.
    iam.Grant.addToPrincipal({ grantee: this.function, actions: ['dynamodb:GetItem'], resourceArns: [limit.correlationTable.tableArn] });
    limit.correlationTable.encryptionKey?.grantDecrypt(this.function);

    const alarmAfter = limit.atLimitAlarmAfter ?? Duration.minutes(15);
    validateDuration('atLimitAlarmAfter', alarmAfter, Duration.minutes(1), Duration.days(1));
    const minutes = alarmAfter.toMinutes(); // throws unless whole minutes
    // The gauge is published when a place is taken or freed, each time a request finds the limit
    // full, and by the sweep every minute while requests wait: while they wait, every minute has a
    // datapoint.
    // No datapoint: nothing changed and nobody waited, which is not "requests kept waiting".
    this.atLimitAlarm = new cloudwatch.Alarm(this, 'JobsInFlightAlarm', {
      alarmDescription: `The vendor's jobs in flight stayed at the contract's limit of ${limit.maxJobsInFlight} for ${alarmAfter.toHumanString()}: requests are waiting for places. `
        + 'Check that callbacks arrive (a lost callback holds its place until maxJobDuration), the vendor\'s job durations, and whether the contract allows more jobs.',
      metric: this.metricJobsInFlight({ statistic: 'Maximum', period: Duration.minutes(1) }),
      threshold: limit.maxJobsInFlight,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: minutes,
      datapointsToAlarm: minutes,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  /**
   * Fires when the jobs in flight stayed at the limit for `atLimitAlarmAfter` (requests waiting for
   * places). Only with `limitJobsInFlight()`.
   *
   * @default - none without a jobs-in-flight limit
   */
  public get jobsInFlightAlarm(): cloudwatch.IAlarm | undefined {
    return this.atLimitAlarm;
  }

  /**
   * The queue where requests wait for a place in flight (no consumer: each freed place moves one
   * back to the request queue). Only with `limitJobsInFlight()` and the consumer's own contract state.
   *
   * @default - none without a jobs-in-flight limit, or with a shared contract state
   */
  public get jobWaitingQueue(): sqs.IQueue | undefined {
    return this.waitingQueue;
  }

  /**
   * Lets `fn`, a function that frees places in flight (the callback processor, the vendor caller),
   * wake one waiting request per place it frees: it gets the waiting and request queues' URLs
   * (environment) and may receive and delete on the waiting queue and send to the request queue.
   * Call after `limitJobsInFlight()`, on a consumer with its own contract state (a consumer sharing
   * one has no waiting queue: its requests recheck as delayed copies).
   */
  public allowWakingWaiters(fn: lambda.Function): void {
    if (!this.waitingQueue) {
      throw new Error(this.sharesState
        ? 'allowWakingWaiters(): a consumer sharing a contract state has no waiting queue (its requests recheck as delayed copies); do not call it'
        : 'allowWakingWaiters() needs the waiting queue: call limitJobsInFlight() first');
    }
    allowWakingWaiters(fn, this.waitingQueue, this.queue);
  }

  /**
   * Requests waiting for a place in flight (the waiting queue's visible messages). Only with
   * `limitJobsInFlight()`; undefined without.
   *
   * @default - maximum over 1 minute
   */
  public metricJobsWaiting(props?: cloudwatch.MetricOptions): cloudwatch.Metric | undefined {
    return this.waitingQueue?.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: 'Maximum', ...props });
  }

  /**
   * The jobs-in-flight limit set by `limitJobsInFlight()`.
   *
   * @default - no limit
   */
  public get maxJobsInFlight(): number | undefined {
    return this.jobsInFlightLimit;
  }

  /** Lets `grantee` put requests on the queue. */
  public grantSendRequests(grantee: iam.IGrantable): iam.Grant {
    return this.queue.grantSendMessages(grantee);
  }

  /** Messages waiting in the request queue. */
  public metricBacklog(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.queue.metricApproximateNumberOfMessagesVisible(props);
  }

  /** Age of the oldest request waiting, in seconds. */
  public metricAgeOfOldestRequest(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.queue.metricApproximateAgeOfOldestMessage(props);
  }

  /** Request messages parked in the dead-letter queue. */
  public metricDeadLetterMessages(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.deadLetterQueue.metricApproximateNumberOfMessagesVisible(props);
  }

  /**
   * Dispatch executions the dispatcher started (one per request attempt), custom metric
   * `DispatchedRequests`.
   *
   * @default - sum over 5 minutes
   */
  public metricDispatchedRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.DISPATCHED_REQUESTS, 'Sum', props);
  }

  /**
   * Time a request waited for its pacing slot, in milliseconds, custom metric `PacingWait`.
   *
   * @default - average over 5 minutes
   */
  public metricPacingWait(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.PACING_WAIT, 'Average', props);
  }

  /**
   * Pacing slots given up because the start would have been late, custom metric `SlotsGivenUp`.
   *
   * @default - sum over 5 minutes
   */
  public metricSlotsGivenUp(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.SLOTS_GIVEN_UP, 'Sum', props);
  }

  /**
   * The vendor's jobs in flight (places held), custom metric `JobsInFlight`, published each time a
   * place is taken or freed. Only with `limitJobsInFlight()`.
   *
   * @default - maximum over 1 minute
   */
  public metricJobsInFlight(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.JOBS_IN_FLIGHT, 'Maximum', { period: Duration.minutes(1), ...props });
  }

  /**
   * Malformed request messages the dispatcher parked in the dead-letter queue, custom metric
   * `ParkedRequests`.
   *
   * @default - sum over 5 minutes
   */
  public metricParkedRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.PARKED_REQUESTS, 'Sum', props);
  }

  /**
   * The rate in force the dispatcher reserved pacing slots at, requests per second, custom metric
   * `RateInForce`: the operators' `requestsPerSecond` of the dynamic delay, capped at the contract
   * (the contract when none is set). Published only with `dynamicDelay` and only while the
   * dispatcher reserves slots (no data while idle).
   *
   * @default - minimum over 5 minutes (during a change, the lower rate)
   */
  public metricRateInForce(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.RATE_IN_FORCE, 'Minimum', props);
  }
}

/**
 * Refuses a shared state this consumer cannot pace against: another contract's rate, or a dynamic
 * delay given to the consumer (the rate in force is the contract's: it belongs to the state).
 */
function checkSharedState(consumer: Construct, state: IVendorContractState, props: RateControlledQueueConsumerProps): void {
  const path = consumer.node.path;
  if (state.contract.requestsPerSecond !== props.requestsPerSecond) {
    throw new Error(`${path}: requestsPerSecond ${props.requestsPerSecond} differs from the shared contract state's ${state.contract.requestsPerSecond}: `
      + 'consumers sharing a state pace against one schedule of one contract; give the same rate, or a state of its own (omit contractState)');
  }
  if (props.dynamicDelay) {
    throw new Error(`${path}: dynamicDelay is given with a shared contractState: the rate in force is the contract's, read by every consumer of the state; `
      + 'give dynamicDelay to the VendorContractState instead');
  }
}

/** Refuses a second consumer of `table` in this app that reserves slots differently from the first. */
interface SlotPacing {
  readonly pacingPoint: PacingPoint;
  readonly slotIntervalMs: number;
}

function recordPacing(consumer: Construct, table: dynamodb.ITable, pacing: SlotPacing): void {
  const path = consumer.node.path;
  const describe = (p: typeof pacing) => `pacingPoint ${p.pacingPoint}, slots ${p.slotIntervalMs.toFixed(1)} ms apart`;
  const first = PACING_OF_TABLE.get(table);
  if (!first) {
    PACING_OF_TABLE.set(table, { path, pacing });
  } else if (first.pacing.pacingPoint !== pacing.pacingPoint || first.pacing.slotIntervalMs !== pacing.slotIntervalMs) {
    throw new Error(`${path} reserves slots with ${describe(pacing)}, but ${first.path}, which shares its contract state, with ${describe(first.pacing)}: `
      + 'consumers of one schedule must space their slots alike (same pacingPoint and latenessTolerance), or the shorter spacing breaks the bound the other keeps');
  }
}
