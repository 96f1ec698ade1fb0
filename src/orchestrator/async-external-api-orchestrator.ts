import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { CallbackWebhook, CallbackWebhookOptions } from '../callback-webhook/callback-webhook';
import { DispatchWorkflow, DispatchWorkflowOptions } from '../dispatch-workflow/dispatch-workflow';
import { RateControlledQueueConsumer, RateControlledQueueConsumerOptions } from '../rate-controlled-queue-consumer/rate-controlled-queue-consumer';
import { ErrorNames } from '../shared/messages';
import { validateDuration, validateRequestsPerSecond, validateVendorUrl, validateWholeNumber } from '../shared/validation';
import { ThrottledProxy, ThrottledProxyOptions } from '../throttled-proxy/throttled-proxy';
import { TokenCorrelationTable, TokenCorrelationTableProps } from '../token-correlation-table/token-correlation-table';

/**
 * Properties for an AsyncExternalApiOrchestrator.
 */
export interface AsyncExternalApiOrchestratorProps {
  /**
   * The vendor's job-submission URL: https, no query string, no trailing slash (or a token).
   */
  readonly vendorUrl: string;

  /**
   * The contract: the most requests per second the vendor allows. Every layer is derived from it:
   * the pacing of the queue consumer, the proxy's throttling, the backlog alarm.
   */
  readonly requestsPerSecond: number;

  /**
   * How long a workflow waits for the vendor's callback before failing with `States.Timeout`.
   * Consider the vendor's longest processing time. Up to one year (a Standard workflow's limit).
   */
  readonly callbackTimeout: Duration;

  /**
   * Messages per consumer invocation. Same as `consumer.batchSize`; give one or the other.
   *
   * @default - the contract rounded up, between 1 and 10
   */
  readonly batchSize?: number;

  /**
   * Most concurrent consumer invocations, 2 to 1000. Same as `consumer.maxConcurrency`.
   *
   * @default 2
   */
  readonly maxConcurrency?: number;

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
   * Options of the correlation table.
   *
   * @default - on demand, point-in-time recovery, AWS-managed encryption, retained
   */
  readonly table?: TokenCorrelationTableProps;
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

  /** The contract. */
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

  private readonly registeredWorkflows = new Set<string>();
  private submitTasks = 0;

  constructor(scope: Construct, id: string, props: AsyncExternalApiOrchestratorProps) {
    super(scope, id);

    validateVendorUrl(props.vendorUrl);
    validateRequestsPerSecond(props.requestsPerSecond);
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
    this.requestsPerSecond = props.requestsPerSecond;
    this.callbackTimeout = props.callbackTimeout;

    this.table = new TokenCorrelationTable(this, 'CorrelationTable', props.table);

    this.proxy = new ThrottledProxy(this, 'Proxy', {
      ...props.proxy,
      vendorUrl: props.vendorUrl,
      requestsPerSecond: props.requestsPerSecond,
    });

    this.webhook = new CallbackWebhook(this, 'Webhook', {
      ...props.webhook,
      table: this.table,
      requestsPerSecond: props.requestsPerSecond,
    });

    this.consumer = new RateControlledQueueConsumer(this, 'Consumer', {
      ...props.consumer,
      batchSize: props.batchSize ?? props.consumer?.batchSize,
      maxConcurrency: props.maxConcurrency ?? props.consumer?.maxConcurrency,
      requestsPerSecond: props.requestsPerSecond,
      // Items outlive the wait by a day, so late callbacks are still recognised as late.
      correlationTtl: props.callbackTimeout.plus(Duration.days(1)),
    });

    this.dispatch = new DispatchWorkflow(this, 'Dispatch', {
      ...props.dispatch,
      proxy: this.proxy,
      table: this.table,
      requestQueue: this.consumer.queue,
      deadLetterQueue: this.consumer.deadLetterQueue,
      callbackUrl: this.webhook.url,
    });
    this.table.grantWriteRequests(this.dispatch.stateMachine);
    this.consumer.dispatchTo(this.dispatch.stateMachine);

    this.node.addValidation({
      validate: () => (this.submitTasks > 0 && this.registeredWorkflows.size === 0
        ? ['submitJobTask() was used but no workflow was registered: call registerWorkflow(yourStateMachine) so the orchestrator may resume (SendTaskSuccess) and fail (SendTaskFailure) it']
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
    this.submitTasks += 1;
    return new tasks.SqsSendMessage(scope, id, {
      comment: props.comment ?? 'Submit a job to the vendor and wait for its callback (cdk-async-external-api)',
      queue: this.consumer.queue,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      messageBody: sfn.TaskInput.fromObject({
        taskToken: sfn.JsonPath.taskToken,
        requestId: props.requestId ?? sfn.JsonPath.uuid(),
        payload: props.payload.value,
        attempt: 1,
      }),
      taskTimeout: sfn.Timeout.duration(this.callbackTimeout),
      heartbeatTimeout: props.heartbeatTimeout ? sfn.Timeout.duration(props.heartbeatTimeout) : undefined,
      resultPath: props.resultPath,
    });
  }

  /**
   * Lets the orchestrator resume and fail tasks of `stateMachine`: the callback processor
   * (SendTaskSuccess / SendTaskFailure), the dispatch workflow and the queue consumer
   * (SendTaskFailure when a request is given up). Call it for every workflow that uses
   * `submitJobTask()`; the orchestrator can resume no other workflow.
   */
  public registerWorkflow(stateMachine: sfn.IStateMachine): void {
    if (this.registeredWorkflows.has(stateMachine.stateMachineArn)) {
      return;
    }
    this.registeredWorkflows.add(stateMachine.stateMachineArn);
    this.webhook.grantResume(stateMachine);
    this.dispatch.grantFailTasks(stateMachine);
    iam.Grant.addToPrincipal({
      grantee: this.consumer.function,
      actions: ['states:SendTaskFailure'],
      resourceArns: [stateMachine.stateMachineArn],
    });
  }

  /** Requests waiting in the request queue. */
  public metricBacklog(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.consumer.metricBacklog(props);
  }

  /** Requests given up by the dispatch workflow. */
  public metricDispatchFailures(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.dispatch.metricDispatchFailures(props);
  }

  /** Vendor requests through the proxy. */
  public metricVendorRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.proxy.metricCount(props);
  }
}
