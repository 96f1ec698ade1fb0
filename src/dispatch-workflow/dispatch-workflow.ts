import { Annotations, Aws, Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { LAMBDA_INVOKE_RETRY, retryAwsServiceErrors, TASK_CLOSED_ERRORS } from './aws-service-errors';
import { CallbackUrlDelivery } from './callback-url-delivery';
import { CommonVendorWorkflowOptions } from './common-vendor-workflow-options';
import { addDispatchWorkflowNagSuppressions } from './dispatch-workflow-nag';
import { checkExpressBudget } from './express-budget';
import { inputDefaults, keyLimitsDefault } from './input-defaults';
import { callerKeyLimits, PRIORITY_PATH, requeueGroupId, requestsCarryKey, retryMessageKey } from './request-key-steps';
import { noUsableSlotState, retryOrGiveUpStates } from './retry-or-give-up';
import { adaptivePacingEnvironment } from './vendor-caller-adaptive';
import { VendorCallerFunction } from './vendor-caller-function';
import { addQuotaEnvironment, vendorCallerFinalErrors, vendorCallerNamedFailures } from './vendor-caller-quotas';
import { vendorCredentialSteps } from './vendor-credential-steps';
import { parseSimplePath } from '../callback-webhook/json-path';
import { addLimitEnvironment } from '../contract/limit-environment';
import { hasPerKeyLimits } from '../contract/per-key-limits-on';
import { VendorContract } from '../contract/vendor-contract';
import { IDynamicDelay } from '../rate-controlled-queue-consumer/dynamic-delay';
import { RateSettings } from '../rate-controlled-queue-consumer/rate-settings';
import { VendorCallerEnv } from '../shared/env';
import { CorrelationAttributes, RequestStatus } from '../shared/messages';
import { METRICS_NAMESPACE, METRICS_SCOPE_ENV } from '../shared/metrics';
import { addFunctionNagSuppressions, addRolePolicyNagSuppressions } from '../shared/nag';
import { validateDuration, validateWholeNumber } from '../shared/validation';
import { resolveVendorCallTimeout } from '../throttled-proxy/integration-timeout';
import { ThrottledProxy } from '../throttled-proxy/throttled-proxy';
import { ITokenCorrelationTable } from '../token-correlation-table/token-correlation-table';

/**
 * Options for the DispatchWorkflow that the orchestrator passes through: the retry, timeout and
 * log settings it shares with the vendor-call workflow, and its own.
 */
export interface DispatchWorkflowOptions extends CommonVendorWorkflowOptions {
  /**
   * How the vendor learns the webhook URL.
   *
   * @default CallbackUrlDelivery.bodyField('callbackUrl')
   */
  readonly callbackUrlDelivery?: CallbackUrlDelivery;

  /**
   * Where the job id is in the vendor's response body: `$.jobId`, `$.data.id`, `$.items[0].id`.
   *
   * @default '$.jobId'
   */
  readonly jobIdPath?: string;

  /**
   * With PacingPoint.VENDOR_CALL: longest the vendor caller waits for a fresh slot (it was late for
   * its own, or the vendor paused dispatch) before it puts the request back on the queue (without
   * counting an attempt). Waiting costs Lambda time; requeueing costs a pass through the queue.
   * 1 second to 2 minutes, and `lead + maxSlotWait + vendorCallTimeout` at most 101 s (less with
   * a credential read): the dispatch workflow's longest route must fit in 5 minutes.
   *
   * @default Duration.seconds(10)
   */
  readonly maxSlotWait?: Duration;

  /**
   * With PacingPoint.VENDOR_CALL: how long every dispatch pauses after a 429 that has no usable
   * `Retry-After` header. A `Retry-After` is honoured up to 15 minutes.
   *
   * @default Duration.seconds(1)
   */
  readonly defaultVendorPause?: Duration;

  /**
   * With PacingPoint.VENDOR_CALL: reserved concurrency of the vendor caller function. Below what
   * the rate needs (`requestsPerSecond x (lead + fireTolerance)`) a synth-time warning says so.
   *
   * @default - no reservation (reserving carves from the account's pool)
   */
  readonly callerReservedConcurrency?: number;
}

/**
 * How the dispatch workflow paces its vendor call (PacingPoint.VENDOR_CALL): the shared schedule
 * and the settings derived from the contract.
 */
export interface VendorCallPacing {
  /** The pacing schedule (the queue consumer's `pacerTable`). */
  readonly pacerTable: dynamodb.ITable;
  /** The consumer's derived settings (`rateSettings`). */
  readonly rateSettings: RateSettings;
  /**
   * Value of the `Scope` dimension of the caller's custom metrics.
   *
   * @default 'default'
   */
  readonly metricsScope?: string;
  /**
   * The consumer's AppConfig dynamic delay: the caller reads it too, so that a fresh slot it
   * reserves (when late for its own) is spaced like the dispatcher's.
   *
   * @default - none
   */
  readonly dynamicDelay?: IDynamicDelay;
  /**
   * The vendor contract: the vendor caller spends one unit of each of its quotas per call
   * (`VendorContract.quotas`) and acts on a spent one as `whenQuotaExhausted` says.
   *
   * @default - no quota
   */
  readonly contract?: VendorContract;
  /**
   * Longest a request may wait for the next quota period (its deadline: the waiting workflow's
   * callbackTimeout, the request queue's retention); when the period ends later the request fails
   * at once with VendorQuotaExhausted.
   *
   * @default - no bound
   */
  readonly quotaMaxWait?: Duration;
}

/**
 * Properties for a DispatchWorkflow.
 */
export interface DispatchWorkflowProps extends DispatchWorkflowOptions {
  /** The proxy in front of the vendor. */
  readonly proxy: ThrottledProxy;
  /** Where job ids and task tokens are stored. */
  readonly table: ITokenCorrelationTable;
  /** The request queue: retries go back through it, so they are paced. */
  readonly requestQueue: sqs.IQueue;
  /** Where requests that are given up are parked. */
  readonly deadLetterQueue: sqs.IQueue;
  /** The webhook URL the vendor calls back on. */
  readonly callbackUrl: string;
  // ---- webhookauth: capability callback URL ----
  /**
   * Whether each request gets its own capability URL, `<callbackUrl>/<token>`, the token being the
   * request's secret callback token stored in its correlation item (what a `CallbackWebhook` with
   * capability URLs expects, see its `capabilityUrls`). `false`: the vendor gets `callbackUrl` as is.
   *
   * @default true
   */
  readonly perRequestCallbackUrl?: boolean;
  // ---- end webhookauth ----
  /**
   * Pace the vendor call itself (PacingPoint.VENDOR_CALL): a vendor caller Lambda fires the request
   * at the slot the dispatcher passed in `slotAtMs`.
   *
   * @default - the workflow calls the proxy with apigateway:invoke (PacingPoint.DISPATCH)
   */
  readonly pacing?: VendorCallPacing;
  /**
   * Jobs in flight (VendorContract.maxJobsInFlight): the table holding the places (the consumer's
   * pacer table). With `pacing`, the vendor caller frees the place of a job the vendor refused with
   * a final 4xx (refused-submission.ts).
   *
   * @default - no jobs-in-flight limit
   */
  readonly jobPlacesTable?: dynamodb.ITable;
  /**
   * With `jobPlacesTable` shared by several orchestrators (a shared `VendorContractState`): the key
   * of this orchestrator's places in it, the same the consumer uses (its request queue's ARN,
   * `ConsumerEnv.SHARED_STATE_OWNER`).
   *
   * @default - the table is this orchestrator's own
   */
  readonly jobPlacesOwner?: string;
}

/**
 * The Express workflow that submits one request to the vendor (blog steps 5-7).
 *
 * It claims the request in the correlation table (a conditional write, so a redelivered message
 * never calls the vendor twice), reads the vendor credential from Secrets Manager, calls the
 * vendor through the ThrottledProxy with the payload, the webhook URL and an `Idempotency-Key`
 * header, stores the returned job id, and ends. A retryable failure (429, 5xx, timeout) sends
 * the request back to the request queue with a jittered, growing delay, so the retry is paced
 * like any other request; a final failure parks the request in the dead-letter queue and fails
 * the waiting workflow at once (SendTaskFailure `VendorRequestFailed`).
 *
 * It is not one of the four building blocks because it is the glue between them: it needs the
 * proxy, the table, the request queue and the webhook URL, and means nothing alone.
 */
export class DispatchWorkflow extends Construct {
  /** The Express state machine. */
  public readonly stateMachine: sfn.StateMachine;
  /** Its log group. */
  public readonly logGroup: logs.LogGroup;
  /**
   * The vendor caller (PacingPoint.VENDOR_CALL): fires each request at its pacing slot.
   *
   * @default - none with PacingPoint.DISPATCH
   */
  public readonly vendorCaller?: lambda.IFunction;


  constructor(scope: Construct, id: string, props: DispatchWorkflowProps) {
    super(scope, id);

    const jobIdPath = props.jobIdPath ?? '$.jobId';
    let jobIdSegments: string[];
    try {
      jobIdSegments = parseSimplePath(jobIdPath);
    } catch (e) {
      throw new Error(`jobIdPath: ${(e as Error).message}`);
    }
    if (jobIdSegments.length === 0) {
      throw new Error(`jobIdPath must point inside the vendor's response body, e.g. '$.jobId' (given '${jobIdPath}')`);
    }
    const maxAttempts = props.maxAttempts ?? 5;
    validateWholeNumber('maxAttempts', maxAttempts, 1, 20);
    const retryBaseDelay = props.retryBaseDelay ?? Duration.seconds(2);
    const maxRetryDelay = props.maxRetryDelay ?? Duration.minutes(5);
    validateDuration('retryBaseDelay', retryBaseDelay, Duration.seconds(1), Duration.minutes(15));
    validateDuration('maxRetryDelay', maxRetryDelay, retryBaseDelay, Duration.minutes(15), 'SQS delays a message by at most 15 minutes');
    const vendorCallTimeout = resolveVendorCallTimeout(props.vendorCallTimeout, props.proxy.integrationTimeout);
    const delivery = props.callbackUrlDelivery ?? CallbackUrlDelivery.bodyField('callbackUrl');
    // ---- webhookauth: a capability URL must reach the vendor with each request. ----
    if ((props.perRequestCallbackUrl ?? true) && !delivery.bodyFieldName && !delivery.headerName) {
      throw new Error('callbackUrlDelivery is CallbackUrlDelivery.none() (the vendor is configured with one webhook URL out of band), '
        + 'but the webhook expects a capability URL per request: send the URL with each request (bodyField / header), or authenticate '
        + 'callbacks with WebhookAuthentication.signatureOnly(...) on the webhook');
    }
    // ---- end webhookauth ----

    // ---- Claim the request: a second dispatch of the same request id stops here. ----
    // webhookauth: the claim also stores the request's callback token, keeping the first one
    // (if_not_exists): a redelivered message carrying a newer token then still sends the vendor
    // the URL the item holds. The stored token comes back as $.claimed.callbackToken.
    // Issue 15: with a credential or limits per key, the item also records the request's key (every
    // request has one then: the queue consumer refuses those without), so a callback can be tied to
    // it, and with per-key limits it frees the job's place of its key (shared/key-places.ts).
    const keyed = requestsCarryKey(props.proxy, props.pacing?.contract);
    const claim = new tasks.DynamoUpdateItem(this, 'ClaimRequest', {
      comment: 'Record the task token and the callback token; fails with ConditionalCheckFailed when the job was already submitted',
      table: props.table.table,
      key: { [CorrelationAttributes.REQUEST_ID]: tasks.DynamoAttributeValue.fromString(sfn.JsonPath.stringAt('$.requestId')) },
      updateExpression: 'SET #token = :token, #status = :status, #expires = :expires, #updated = :updated, '
        + '#cbToken = if_not_exists(#cbToken, :cbToken), #claimSeq = :claimSeq' + (keyed ? ', #requestKey = :requestKey' : ''),
      // Not yet submitted, and no dispatch of this delivery (or a later one) claimed it: two copies
      // of one message running at once (SQS delivers at least once) cannot both call the vendor.
      conditionExpression: 'attribute_not_exists(#job) AND (attribute_not_exists(#claimSeq) OR #claimSeq < :claimSeq)',
      expressionAttributeNames: {
        '#token': CorrelationAttributes.TASK_TOKEN,
        '#status': CorrelationAttributes.STATUS,
        '#expires': CorrelationAttributes.EXPIRES_AT,
        '#updated': CorrelationAttributes.UPDATED_AT,
        '#job': CorrelationAttributes.JOB_ID,
        '#cbToken': CorrelationAttributes.CALLBACK_TOKEN,
        '#claimSeq': CorrelationAttributes.CLAIM_SEQ,
        ...(keyed ? { '#requestKey': CorrelationAttributes.REQUEST_KEY } : {}),
      },
      expressionAttributeValues: {
        ':token': tasks.DynamoAttributeValue.fromString(sfn.JsonPath.stringAt('$.taskToken')),
        ':status': tasks.DynamoAttributeValue.fromString(RequestStatus.DISPATCHING),
        ':expires': tasks.DynamoAttributeValue.numberFromString(sfn.JsonPath.jsonToString(sfn.JsonPath.numberAt('$.expiresAt'))),
        ':updated': tasks.DynamoAttributeValue.fromString(sfn.JsonPath.stringAt('$$.Execution.StartTime')),
        ':cbToken': tasks.DynamoAttributeValue.fromString(sfn.JsonPath.stringAt('$.callbackToken')),
        ':claimSeq': tasks.DynamoAttributeValue.numberFromString(sfn.JsonPath.jsonToString(sfn.JsonPath.numberAt('$.claimSeq'))),
        ...(keyed ? { ':requestKey': tasks.DynamoAttributeValue.fromString(sfn.JsonPath.stringAt('$.key')) } : {}),
      },
      returnValues: tasks.DynamoReturnValues.ALL_NEW,
      // Only the callback token leaves the state: the item also holds the task token.
      resultSelector: { callbackToken: sfn.JsonPath.stringAt(`$.Attributes.${CorrelationAttributes.CALLBACK_TOKEN}.S`) },
      resultPath: '$.claimed',
    });
    // webhookauth: the URL the vendor calls back on: per request `<callbackUrl>/<token>`, or as is.
    const callbackUrlValue = (props.perRequestCallbackUrl ?? true)
      ? sfn.JsonPath.format('{}/{}', props.callbackUrl, sfn.JsonPath.stringAt('$.claimed.callbackToken'))
      : props.callbackUrl;
    const claimRetry = retryAwsServiceErrors(claim, 'dynamodb');

    // ---- Read the vendor credential (never stored in the template). ----
    // The same states as the vendor-call workflow's. With OAuth, a token endpoint failure is not
    // retried in the workflow: it goes through ClassifyVendorError and back through the paced
    // queue like any other retryable error.
    const credential = vendorCredentialSteps(this, props.proxy, (task) => retryAwsServiceErrors(task, 'secretsmanager'));

    // ---- Call the vendor through the proxy. ----
    const headers: Record<string, unknown> = {
      'Idempotency-Key': sfn.JsonPath.array(sfn.JsonPath.stringAt('$.requestId')),
      'X-Request-Id': sfn.JsonPath.array(sfn.JsonPath.stringAt('$.requestId')),
      'Content-Type': ['application/json'],
    };
    if (delivery.headerName) {
      // webhookauth: a per-request URL is a path, so the header's one-value list is built at run time.
      headers[delivery.headerName] = (props.perRequestCallbackUrl ?? true) ? sfn.JsonPath.array(callbackUrlValue) : [callbackUrlValue];
    }
    // The credential header goes last, after the webhook URL header (the order shows in the definition).
    Object.assign(headers, credential.headers);
    // The vendor's body: the payload, merged with the webhook URL when it goes in the body.
    // JsonMerge needs an object; anything else is refused before the call, with a clear cause.
    let prepare: sfn.IChainable;
    let prepareEnd: sfn.INextable;
    let payloadNotObject: sfn.Pass | undefined;
    if (delivery.bodyFieldName) {
      payloadNotObject = new sfn.Pass(this, 'PayloadNotAnObject', {
        parameters: {
          Error: 'PayloadNotAnObject',
          Cause: `The payload must be a JSON object: the webhook URL is added to it as the field '${delivery.bodyFieldName}'`,
        },
        resultPath: '$.error',
      });
      const addUrl = new sfn.Pass(this, 'AddCallbackUrl', {
        parameters: { fields: { [delivery.bodyFieldName]: callbackUrlValue } }, // webhookauth
        resultPath: '$.vendorRequest',
      });
      const merge = new sfn.Pass(this, 'MergeCallbackUrl', {
        parameters: { body: sfn.JsonPath.jsonMerge(sfn.JsonPath.objectAt('$.payload'), sfn.JsonPath.objectAt('$.vendorRequest.fields')) },
        resultPath: '$.vendorRequest',
      });
      addUrl.next(merge);
      // An intrinsic that fails in a Pass state (JsonMerge given an array) fails the execution with
      // States.Runtime, which no Catch handles: the request would be neither sent nor parked. So
      // only an object reaches the merge. A Choice has no IsArray / IsObject test: an array or an
      // object is told apart by the first character of its JSON text ('{' only for an object).
      // The text goes where the vendor request is built next (overwritten by AddCallbackUrl), so
      // it stands in for the copy MergeCallbackUrl makes anyway; escaped quotes make it a little
      // larger (a 50 KB payload of short strings: state 167 KB here against 155 KB at the merge,
      // of the 256 KiB Step Functions allows).
      // https://docs.aws.amazon.com/step-functions/latest/dg/intrinsic-functions.html
      const payloadAsJson = new sfn.Pass(this, 'PayloadAsJson', {
        comment: 'The payload as JSON text: its first character tells an object from an array',
        parameters: { json: sfn.JsonPath.jsonToString(sfn.JsonPath.objectAt('$.payload')) },
        resultPath: '$.vendorRequest',
      });
      payloadAsJson.next(new sfn.Choice(this, 'IsPayloadAnObject')
        .when(sfn.Condition.stringMatches('$.vendorRequest.json', '{*'), addUrl)
        .otherwise(payloadNotObject));
      // `$.payload` is always present: the dispatcher starts no execution for a message without one
      // (parseRequestMessage parks it), so no presence rule here: it would be a route no input takes.
      prepare = new sfn.Choice(this, 'IsPayloadAScalar')
        .when(sfn.Condition.or(
          sfn.Condition.isNull('$.payload'),
          sfn.Condition.isString('$.payload'),
          sfn.Condition.isNumeric('$.payload'),
          sfn.Condition.isBoolean('$.payload'),
        ), payloadNotObject)
        .otherwise(payloadAsJson);
      prepareEnd = merge;
    } else {
      const pass = new sfn.Pass(this, 'PrepareVendorRequest', {
        parameters: { body: sfn.JsonPath.objectAt('$.payload') },
        resultPath: '$.vendorRequest',
      });
      prepare = pass;
      prepareEnd = pass;
    }
    let callVendor: sfn.TaskStateBase;
    let caller: lambda.Function | undefined;
    if (props.pacing) {
      caller = this.createVendorCaller(props, props.pacing, vendorCallTimeout);
      callVendor = new tasks.LambdaInvoke(this, 'CallVendor', {
        comment: 'Submit the job through the throttled proxy at its pacing slot (vendor caller)',
        lambdaFunction: caller,
        retryOnServiceExceptions: false,
        payload: sfn.TaskInput.fromObject({
          method: 'POST',
          headers,
          body: sfn.JsonPath.objectAt('$.vendorRequest.body'),
          requestId: sfn.JsonPath.stringAt('$.requestId'),
          slotAtMs: sfn.JsonPath.numberAt('$.slotAtMs'),
          // A quota wait is bounded by the request's deadline, counted from its start.
          requestStartedAtMs: sfn.JsonPath.numberAt('$.requestStartedAtMs'),
          ...retryMessageKey(keyed), // issue 15: the caller logs the request's key
          // Issue 15: the key's limits in force, as the dispatcher resolved them (the caller never reads the settings).
          ...callerKeyLimits(props.pacing.contract),
        }),
        // The caller always answers all three (requeue null when it called the vendor).
        resultSelector: { 'body.$': '$.Payload.body', 'statusCode.$': '$.Payload.statusCode', 'requeue.$': '$.Payload.requeue' },
        resultPath: '$.vendor',
        // The caller waits up to lead + maxSlotWait before its call: its own timeout covers it.
        taskTimeout: sfn.Timeout.duration(caller.timeout!.plus(Duration.seconds(5))),
      });
      // The function did not run (throttled) or Lambda failed around it. The retry can start before
      // the slot while the first invocation still runs (Lambda does not stop a function whose caller
      // went away): the caller claims its slot before firing it (pacer.ts, claimSlot), so only one of
      // them fires it and the other takes a fresh slot. Retrying cannot break the bound.
      callVendor.addRetry(LAMBDA_INVOKE_RETRY);
    } else {
      callVendor = new tasks.CallApiGatewayRestApiEndpoint(this, 'CallVendor', {
        comment: 'Submit the job through the throttled proxy',
        api: props.proxy.restApi,
        stageName: props.proxy.stageName,
        method: tasks.HttpMethod.POST,
        authType: tasks.AuthType.IAM_ROLE,
        headers: sfn.TaskInput.fromObject(headers),
        requestBody: sfn.TaskInput.fromJsonPathAt('$.vendorRequest.body'),
        resultSelector: { 'body.$': '$.ResponseBody', 'statusCode.$': '$.StatusCode' },
        resultPath: '$.vendor',
        taskTimeout: sfn.Timeout.duration(vendorCallTimeout),
      });
    }
    this.vendorCaller = caller;

    // ---- Store the job id next to the token. ----
    const jobIdInBody = `$.vendor.body${jobIdPathSuffix(jobIdSegments)}`;
    const extractJobId = new sfn.Pass(this, 'ExtractJobId', {
      parameters: { id: sfn.JsonPath.format('{}', sfn.JsonPath.stringAt(jobIdInBody)) },
      resultPath: '$.job',
    });
    const storeJobId = new tasks.DynamoUpdateItem(this, 'StoreJobId', {
      comment: 'The callback processor finds the task token by this job id',
      table: props.table.table,
      key: { [CorrelationAttributes.REQUEST_ID]: tasks.DynamoAttributeValue.fromString(sfn.JsonPath.stringAt('$.requestId')) },
      updateExpression: 'SET #job = :job, #status = :status',
      expressionAttributeNames: { '#job': CorrelationAttributes.JOB_ID, '#status': CorrelationAttributes.STATUS },
      expressionAttributeValues: {
        ':job': tasks.DynamoAttributeValue.fromString(sfn.JsonPath.stringAt('$.job.id')),
        ':status': tasks.DynamoAttributeValue.fromString(RequestStatus.SUBMITTED),
      },
      resultPath: sfn.JsonPath.DISCARD,
    });
    const storeRetry = retryAwsServiceErrors(storeJobId, 'dynamodb');
    const submitted = new sfn.Succeed(this, 'Submitted');
    const alreadySubmitted = new sfn.Succeed(this, 'AlreadySubmitted', {
      comment: 'A redelivered request whose job was already submitted, or another copy of a delivery that is being dispatched: nothing to do',
    });

    // ---- Retry through the paced queue, or give up (park, fail the waiting workflow). ----
    // The two SQS tasks are built here, not in retryOrGiveUpStates: they are CallAwsService tasks,
    // with their own IAM statements, where the vendor-call workflow uses raw states.
    const requeue = new tasks.CallAwsService(this, 'RequeueWithDelay', {
      comment: 'The retry is another vendor call: it goes back through the paced queue with the same request id',
      service: 'sqs',
      action: 'sendMessage',
      parameters: {
        QueueUrl: props.requestQueue.queueUrl,
        MessageBody: sfn.JsonPath.jsonToString(sfn.JsonPath.objectAt('$.retry.message')),
        DelaySeconds: sfn.JsonPath.numberAt('$.retry.delaySeconds'),
        ...requeueGroupId(keyed, false),
      },
      iamResources: [props.requestQueue.queueArn],
      resultPath: sfn.JsonPath.DISCARD,
    });
    const requeueRetry = retryAwsServiceErrors(requeue, 'sqs');
    // The original request message, unchanged, so the dead-letter queue can be redriven; why it
    // was given up travels in message attributes.
    const park = new tasks.CallAwsService(this, 'ParkInDeadLetterQueue', {
      service: 'sqs',
      action: 'sendMessage',
      parameters: {
        QueueUrl: props.deadLetterQueue.queueUrl,
        MessageBody: sfn.JsonPath.jsonToString(sfn.JsonPath.objectAt('$.message')),
        MessageAttributes: {
          reason: { DataType: 'String', StringValue: sfn.JsonPath.stringAt('$.error.Error') },
          detail: { DataType: 'String', StringValue: sfn.JsonPath.jsonToString(sfn.JsonPath.objectAt('$.error')) },
          attempt: { DataType: 'Number', StringValue: sfn.JsonPath.jsonToString(sfn.JsonPath.numberAt('$.attempt')) },
        },
      },
      iamResources: [props.deadLetterQueue.queueArn],
      resultPath: sfn.JsonPath.DISCARD,
    });
    const parkRetry = retryAwsServiceErrors(park, 'sqs');
    const { classify, giveUp, failWaitingRoute } = retryOrGiveUpStates(this, {
      maxAttempts,
      // The vendor caller refuses an answer too large for Step Functions (256 KiB per state):
      // the same call would get the same answer. Without it (PacingPoint.DISPATCH) nothing can
      // refuse it: an answer over the limit fails the execution (docs/vendor-calls.md).
      finalErrors: props.pacing ? vendorCallerFinalErrors(props.pacing.contract) : undefined,
      namedFailures: props.pacing ? vendorCallerNamedFailures(props.pacing.contract) : undefined,
      retryBaseDelay,
      maxRetryDelay,
      computeBackoffComment: 'Full jitter: a delay drawn uniformly from [0, cap); the retry carries the same request id',
      retryMessage: {
        taskToken: sfn.JsonPath.stringAt('$.taskToken'),
        requestId: sfn.JsonPath.stringAt('$.requestId'),
        payload: sfn.JsonPath.objectAt('$.payload'),
        attempt: sfn.JsonPath.mathAdd(sfn.JsonPath.numberAt('$.attempt'), 1),
        callbackToken: sfn.JsonPath.stringAt('$.callbackToken'), // webhookauth: retries keep the URL
        requestStartedAtMs: sfn.JsonPath.numberAt('$.requestStartedAtMs'), // retries keep the request's start
        ...retryMessageKey(keyed),
        priority: sfn.JsonPath.stringAt(PRIORITY_PATH), // issue 15: retries keep the request's priority
      },
      requeue,
      park,
      briefFailureCause: 'The vendor request failed; the request and the full error are in the request dead-letter queue',
      failedStateId: 'DispatchFailed',
      failedCause: 'The request was given up and parked in the request dead-letter queue',
    });

    const missingJobId = new sfn.Pass(this, 'MissingJobId', {
      parameters: {
        Error: 'VendorResponseWithoutJobId',
        Cause: `The vendor accepted the request but its response body has no string or number at ${jobIdPath}`,
      },
      resultPath: '$.error',
    }).next(giveUp);
    const hasJobId = new sfn.Choice(this, 'HasJobId')
      .when(
        sfn.Condition.or(sfn.Condition.isString(jobIdInBody), sfn.Condition.isNumeric(jobIdInBody)),
        extractJobId.next(storeJobId).next(submitted),
      )
      .otherwise(missingJobId);
    // Step Functions fails a Choice whose variable is missing (except IsPresent): test presence first.
    const jobIdPresent = new sfn.Choice(this, 'IsJobIdPresent')
      .when(sfn.Condition.isPresent(jobIdInBody), hasJobId)
      .otherwise(missingJobId);

    claim.addCatch(alreadySubmitted, { errors: ['DynamoDB.ConditionalCheckFailedException'], resultPath: sfn.JsonPath.DISCARD });
    claim.addCatch(classify, { resultPath: '$.error' });
    callVendor.addCatch(classify, { resultPath: '$.error' });
    // The vendor accepted the job but its id could not be stored: a callback could never find
    // the workflow, so fail it now rather than at its timeout.
    storeJobId.addCatch(giveUp, { resultPath: '$.error' });

    payloadNotObject?.next(giveUp);
    prepareEnd.next(callVendor);
    if (caller) {
      // No usable slot within the caller's wait budget (a long vendor pause, a full schedule): the
      // request goes back through the queue after the delay the caller computed. Not an attempt:
      // the vendor was not called.
      const defer = new sfn.Pass(this, 'DeferToQueue', {
        comment: 'Back to the paced queue without counting an attempt: the vendor was not called',
        parameters: {
          delaySeconds: sfn.JsonPath.numberAt('$.vendor.requeue.delaySeconds'),
          message: {
            taskToken: sfn.JsonPath.stringAt('$.taskToken'),
            requestId: sfn.JsonPath.stringAt('$.requestId'),
            payload: sfn.JsonPath.objectAt('$.payload'),
            attempt: sfn.JsonPath.numberAt('$.attempt'),
            // A new claim sequence for the same attempt (see DispatchInput.claimSeq).
            deferrals: sfn.JsonPath.mathAdd(sfn.JsonPath.numberAt('$.deferrals'), 1),
            ...retryMessageKey(keyed), // issue 15: a deferred request keeps its key
            // The same capability URL on the next dispatch (webhookauth).
            callbackToken: sfn.JsonPath.stringAt('$.callbackToken'),
            requestStartedAtMs: sfn.JsonPath.numberAt('$.requestStartedAtMs'),
            priority: sfn.JsonPath.stringAt(PRIORITY_PATH), // issue 15: a deferred request keeps its priority
          },
        },
        resultPath: '$.retry',
      });
      callVendor.next(new sfn.Choice(this, 'WasVendorCalled')
        .when(sfn.Condition.isPresent('$.vendor.requeue.delaySeconds'), defer.next(noUsableSlotState(this, '$.vendor.requeue.reason')).next(requeue))
        .otherwise(jobIdPresent));
    } else {
      callVendor.next(jobIdPresent);
    }
    // ---- Is anyone still waiting? A request whose workflow already ended (timed out, failed,
    // stopped) is not sent: a retry that outlived its workflow, or a redriven dead letter whose
    // workflow was already failed. SendTaskHeartbeat succeeds only on an open task token. ----
    const checkWaiting = new sfn.CustomState(this, 'CheckWaitingWorkflow', {
      stateJson: {
        Type: 'Task',
        Comment: 'Only call the vendor while the waiting workflow still waits for this request',
        Resource: `arn:${Aws.PARTITION}:states:::aws-sdk:sfn:sendTaskHeartbeat`,
        Parameters: { 'TaskToken.$': '$.taskToken' },
        ResultPath: null,
      },
    });
    const waitingWorkflowEnded = new sfn.Succeed(this, 'WaitingWorkflowEnded', {
      comment: 'Nobody waits for this request any more: it is not sent to the vendor',
    });
    checkWaiting.addCatch(waitingWorkflowEnded, { errors: TASK_CLOSED_ERRORS, resultPath: sfn.JsonPath.DISCARD });
    const checkRetry = retryAwsServiceErrors(checkWaiting, 'sfn', 3);
    checkWaiting.addCatch(classify, { resultPath: '$.error' });

    checkWaiting.next(prepare);
    // Fields added after the first release (input-defaults.ts): an old dispatcher may start this definition.
    const definition = inputDefaults(this, { requestStartedAtMs: null, key: null, priority: null, ...keyLimitsDefault(props.pacing?.contract) })
      .next(claim.next(credential.before(checkWaiting, { classify, giveUp })));

    const giveUpRoute = [{ name: park.id, retry: parkRetry }, ...failWaitingRoute];
    checkExpressBudget({
      workflow: 'the dispatch workflow',
      beforeCall: [{ name: claim.id, retry: claimRetry }, ...credential.route, { name: checkWaiting.id, retry: checkRetry }],
      // The vendor caller's Task timeout, or the proxy call's (vendorCallTimeout).
      call: caller
        ? { name: callVendor.id, run: caller.timeout!.plus(Duration.seconds(5)), retry: LAMBDA_INVOKE_RETRY }
        : { name: callVendor.id, run: vendorCallTimeout },
      afterCall: [
        // The job was accepted: its id is stored, or the request is parked and its workflow failed.
        [{ name: storeJobId.id, retry: storeRetry }, ...giveUpRoute],
        // The call failed or was deferred: back to the queue, or parked if that fails.
        [{ name: requeue.id, retry: requeueRetry }, ...giveUpRoute],
      ],
      callParts: caller
        ? { fixedMs: 10_000, text: `lead ${props.pacing!.rateSettings.leadMs} ms + maxSlotWait ${(props.maxSlotWait ?? DEFAULT_MAX_SLOT_WAIT).toHumanString()} + vendorCallTimeout ${vendorCallTimeout.toHumanString()} + 10 s`, sum: 'lead + maxSlotWait + vendorCallTimeout', lower: 'maxSlotWait or vendorCallTimeout' }
        : { fixedMs: 0, text: `vendorCallTimeout ${vendorCallTimeout.toHumanString()}`, sum: 'vendorCallTimeout', lower: 'vendorCallTimeout' },
    });

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.stateMachine = new sfn.StateMachine(this, 'Resource', {
      stateMachineType: sfn.StateMachineType.EXPRESS,
      comment: 'Submits one request to the vendor (cdk-async-external-api)',
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      timeout: Duration.minutes(5),
      tracingEnabled: props.tracingEnabled ?? false,
      logs: { destination: this.logGroup, level: sfn.LogLevel.ERROR, includeExecutionData: false },
    });
    if (!props.proxy.credentialFunction) {
      // With a credential function only the function reads the secret (LambdaInvoke grants the invoke).
      props.proxy.credentials.secret?.grantRead(this.stateMachine);
    }
    if (!caller) {
      props.proxy.grantInvoke(this.stateMachine);
    }
    // Covers KMS when the request queue has a customer-managed key.
    props.requestQueue.grantSendMessages(this.stateMachine);
    props.deadLetterQueue.grantSendMessages(this.stateMachine);
    // cdk-nag AwsSolutions: logging level, X-Ray and IAM wildcards, with reasons (resource metadata).
    addDispatchWorkflowNagSuppressions(this.stateMachine, props);
  }

  private createVendorCaller(props: DispatchWorkflowProps, pacing: VendorCallPacing, callTimeout: Duration): lambda.Function {
    const settings = pacing.rateSettings;
    const maxSlotWait = props.maxSlotWait ?? DEFAULT_MAX_SLOT_WAIT;
    validateDuration('maxSlotWait', maxSlotWait, Duration.seconds(1), Duration.minutes(2));
    const defaultPause = props.defaultVendorPause ?? Duration.seconds(1);
    validateDuration('defaultVendorPause', defaultPause, Duration.millis(100), Duration.minutes(15));
    validateWholeNumber('callerReservedConcurrency', props.callerReservedConcurrency, 1, 10_000);
    if (props.callerReservedConcurrency !== undefined) {
      const minimum = Math.ceil((settings.requestsPerSecond * (settings.leadMs + settings.fireToleranceMs)) / 1000) + 1;
      if (props.callerReservedConcurrency < minimum) {
        Annotations.of(this).addWarningV2('cdk-async-external-api:callerReservedConcurrency',
          `callerReservedConcurrency ${props.callerReservedConcurrency} is below ${minimum}, the vendor callers that wait for their slots at ${settings.requestsPerSecond} requests per second with a lead of ${settings.leadMs} ms: invocations will be throttled, arrive late and give their slots up (lower throughput, never above the contract). Give at least ${settings.expectedCallerConcurrency} (rate x (lead + a typical call)) or remove it`);
      }
    }
    // lead + a full wait for a fresh slot + the call itself + slack for the DynamoDB calls. Whether
    // that fits in the workflow's 5 minutes with the rest of its route is checked by checkExpressBudget.
    const timeout = Duration.millis(settings.leadMs + maxSlotWait.toMilliseconds() + callTimeout.toMilliseconds() + 5000);
    const timeoutSeconds = Math.ceil(timeout.toSeconds({ integral: false }));
    const fn = new VendorCallerFunction(this, 'VendorCaller', {
      description: 'Sends one request to the vendor through the throttled proxy at its pacing slot',
      timeout: Duration.seconds(timeoutSeconds),
      memorySize: 256,
      reservedConcurrentExecutions: props.callerReservedConcurrency,
      tracing: props.tracingEnabled ? lambda.Tracing.ACTIVE : undefined,
      logGroup: new logs.LogGroup(this, 'VendorCallerLogs', {
        retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
        removalPolicy: RemovalPolicy.RETAIN,
      }),
      environment: {
        [VendorCallerEnv.PROXY_ENDPOINT_URL]: props.proxy.restApi.url,
        [VendorCallerEnv.REQUESTS_PER_SECOND]: String(settings.requestsPerSecond),
        [VendorCallerEnv.PACER_TABLE_NAME]: pacing.pacerTable.tableName,
        [VendorCallerEnv.LATENESS_TOLERANCE_MS]: String(settings.latenessToleranceMs),
        [VendorCallerEnv.FIRE_TOLERANCE_MS]: String(settings.fireToleranceMs),
        [VendorCallerEnv.MAX_SLOT_WAIT_MS]: String(maxSlotWait.toMilliseconds()),
        [VendorCallerEnv.CALL_TIMEOUT_MS]: String(callTimeout.toMilliseconds()),
        [VendorCallerEnv.DEFAULT_PAUSE_MS]: String(defaultPause.toMilliseconds()),
        [VendorCallerEnv.MAX_PAUSE_MS]: String(15 * 60 * 1000),
        [METRICS_SCOPE_ENV]: pacing.metricsScope ?? 'default',
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        POWERTOOLS_SERVICE_NAME: 'vendor-caller',
      },
    });
    addQuotaEnvironment(fn, pacing.contract, pacing.quotaMaxWait);
    // A fresh slot respects the call's named limits (named-limit-schedule.ts).
    addLimitEnvironment(fn, pacing.contract);
    // Issue 15: with a credential per key, a vendor 429 to a request with per-key limits is about
    // that key's account: it pauses the key, not the contract (key-schedule.ts pauseKeyUntil).
    if (props.proxy.credentials.isPerKey && hasPerKeyLimits(pacing.contract)) {
      fn.addEnvironment(VendorCallerEnv.KEY_PAUSE_ON_429, 'true');
    }
    // Adaptive pacing: a 429 lowers the adaptive rate in the pacer item (UpdateItem, granted below).
    for (const [name, value] of Object.entries(adaptivePacingEnvironment(pacing.contract, VendorCallerEnv.ADAPTIVE_PACING))) {
      fn.addEnvironment(name, value);
    }
    props.proxy.grantInvoke(fn);
    if (props.jobPlacesTable) {
      fn.addEnvironment(VendorCallerEnv.JOB_PLACES_TABLE_NAME, props.jobPlacesTable.tableName);
      if (props.jobPlacesOwner) {
        fn.addEnvironment(VendorCallerEnv.SHARED_STATE_OWNER, props.jobPlacesOwner);
      }
      props.jobPlacesTable.grant(fn, 'dynamodb:UpdateItem');
    }
    // UpdateItem also spends quota units (quota-ledger.ts). PutItem: the claim of a slot before it is fired (pacer.ts, claimSlot).
    pacing.pacerTable.grant(fn, 'dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:PutItem');
    if (pacing.dynamicDelay) {
      for (const [name, value] of Object.entries(pacing.dynamicDelay.environmentVariables)) {
        fn.addEnvironment(name, value);
      }
      pacing.dynamicDelay.grantRead(fn);
    }
    addFunctionNagSuppressions(fn, { tracing: props.tracingEnabled });
    addRolePolicyNagSuppressions(fn.role, [{
      id: 'AwsSolutions-IAM5',
      reason: 'The vendor caller may call every method and path of the throttled proxy\'s stage (the proxy forwards <vendorUrl>/{proxy+}); the ARN is limited to that one API and stage, whose resource policy denies every other role.',
      appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:execute-api:(<AWS::Region>|[a-z0-9-]+):(<AWS::AccountId>|[0-9]+):<[A-Za-z0-9]+>\\/[^/*]+\\/\\*\\/\\*$/' }],
    }]);
    return fn;
  }

  /**
   * Lets the dispatch workflow check (SendTaskHeartbeat) and fail (SendTaskFailure) tasks of
   * `stateMachine`: it checks that the waiting task is still open before each vendor call, and
   * fails it at once when it gives a request up.
   */
  public grantTaskResponses(stateMachine: sfn.IStateMachine): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee: this.stateMachine,
      actions: ['states:SendTaskFailure', 'states:SendTaskHeartbeat'],
      resourceArns: [stateMachine.stateMachineArn],
    });
  }

  /** Dispatch executions that failed (requests given up). */
  public metricDispatchFailures(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricFailed(props);
  }

  /**
   * Dispatch executions started (one per request attempt).
   *
   * @default - sum over 5 minutes
   */
  public metricDispatchesStarted(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricStarted(props);
  }

  /**
   * Dispatch executions that succeeded: a job submitted, a retry scheduled through the queue, or
   * a redelivered request found already submitted.
   *
   * @default - sum over 5 minutes
   */
  public metricDispatchesSucceeded(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricSucceeded(props);
  }

  /**
   * Dispatch executions that hit the Express workflow's 5-minute timeout.
   *
   * @default - sum over 5 minutes
   */
  public metricDispatchTimeouts(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricTimedOut(props);
  }
}

/** The vendor caller's default `maxSlotWait`. */
const DEFAULT_MAX_SLOT_WAIT = Duration.seconds(10);

/** `['data', 0, 'id']`-style segments as a JSONPath suffix (`.data[0].id`). */
function jobIdPathSuffix(segments: string[]): string {
  return segments.map((s) => (/^\d+$/.test(s) ? `[${s}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? `.${s}` : `['${s}']`)).join('');
}
