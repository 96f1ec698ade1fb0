import { Aws, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { LAMBDA_INVOKE_RETRY, retryAwsServiceErrors, TASK_CLOSED_ERRORS } from './aws-service-errors';
import { CommonVendorWorkflowOptions } from './common-vendor-workflow-options';
import { checkExpressBudget } from './express-budget';
import { inputDefaults, keyLimitsDefault } from './input-defaults';
import { callerKeyLimits, PRIORITY_PATH, requeueGroupId, requestsCarryKey, retryMessageKey } from './request-key-steps';
import { noUsableSlotState, retryOrGiveUpStates } from './retry-or-give-up';
import { vendorCallerFinalErrors, vendorCallerNamedFailures } from './vendor-caller-quotas';
import { vendorCredentialSteps } from './vendor-credential-steps';
import { VendorContract } from '../contract/vendor-contract';
import { CALL_CLAIM_KEY_PREFIX, CorrelationAttributes } from '../shared/messages';
import { addNagSuppressions, addRolePolicyNagSuppressions, wildcardSuppressions } from '../shared/nag';
import { validateDuration, validateWholeNumber } from '../shared/validation';
import { resolveVendorCallTimeout } from '../throttled-proxy/integration-timeout';
import { ThrottledProxy } from '../throttled-proxy/throttled-proxy';
import { ITokenCorrelationTable } from '../token-correlation-table/token-correlation-table';

/**
 * Options for the VendorCallWorkflow that the orchestrator passes through (`vendorCall`): the
 * retry, timeout and log settings it shares with the dispatch workflow.
 */
export interface VendorCallWorkflowOptions extends CommonVendorWorkflowOptions {
}

/**
 * Properties for a VendorCallWorkflow.
 */
export interface VendorCallWorkflowProps extends VendorCallWorkflowOptions {
  /** The proxy in front of the vendor. */
  readonly proxy: ThrottledProxy;
  /**
   * Where each call is claimed before it is made (item `call#<requestId>`, expiring with the
   * table's TTL), so a duplicate execution or a message delivered twice does not call the vendor
   * twice.
   */
  readonly table: ITokenCorrelationTable;
  /** The request queue: retries go back through it, so they are paced. */
  readonly requestQueue: sqs.IQueue;
  /** Where calls that are given up are parked. */
  readonly deadLetterQueue: sqs.IQueue;
  /**
   * The dispatch workflow's vendor caller (PacingPoint.VENDOR_CALL): when given, the call is fired
   * by it at the pacing slot the dispatcher passed (`slotAtMs`), exactly like a job submission.
   *
   * @default - the workflow calls the proxy with apigateway:invoke (PacingPoint.DISPATCH)
   */
  readonly vendorCaller?: lambda.IFunction;
  /**
   * The vendor contract the vendor caller keeps: with quotas, a call refused for a spent quota
   * (VendorQuotaExhausted) is given up at once. Give the contract the dispatch workflow's pacing
   * was given.
   *
   * @default - no quota
   */
  readonly contract?: VendorContract;
}

/**
 * The Express workflow that makes one synchronous vendor call for a waiting workflow
 * (`callVendorTask`, e.g. fetching a job's result: blog step 11) and returns the vendor's answer.
 *
 * The queue consumer starts it for request messages of kind `call`, paced like job submissions:
 * a call is one request to the vendor and counts against the contract. It checks that the
 * waiting workflow still waits (SendTaskHeartbeat), reads the vendor credential, calls the vendor
 * through the ThrottledProxy with the message's method, path, query and body (plus
 * `Idempotency-Key` and `X-Request-Id` headers holding the request id), and resumes the waiting
 * workflow with `{ statusCode, body, headers }` (SendTaskSuccess). A retryable failure (429, 408,
 * 5xx, timeout) sends the message back to the request queue with a jittered, growing delay; a
 * final failure parks it in the dead-letter queue and fails the waiting workflow at once
 * (SendTaskFailure `VendorRequestFailed`).
 *
 * It first claims the call in the correlation table (a conditional write on `call#<requestId>`, as
 * the dispatch workflow claims a submission), so a duplicate Express execution or a message
 * delivered twice stops there instead of calling the vendor again. A call can still reach the
 * vendor twice when its first execution called the vendor and then failed before answering (the
 * retry is a new attempt); calls other than GET should be idempotent for the vendor (the
 * `Idempotency-Key` header helps).
 */
export class VendorCallWorkflow extends Construct {
  /** The Express state machine. */
  public readonly stateMachine: sfn.StateMachine;
  /** Its log group. */
  public readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: VendorCallWorkflowProps) {
    super(scope, id);

    const maxAttempts = props.maxAttempts ?? 5;
    validateWholeNumber('maxAttempts', maxAttempts, 1, 20);
    const retryBaseDelay = props.retryBaseDelay ?? Duration.seconds(2);
    const maxRetryDelay = props.maxRetryDelay ?? Duration.minutes(5);
    validateDuration('retryBaseDelay', retryBaseDelay, Duration.seconds(1), Duration.minutes(15));
    validateDuration('maxRetryDelay', maxRetryDelay, retryBaseDelay, Duration.minutes(15), 'SQS delays a message by at most 15 minutes');
    const vendorCallTimeout = resolveVendorCallTimeout(props.vendorCallTimeout, props.proxy.integrationTimeout);
    // Issue 15: every request has a key (credential or limits per key): retries keep it.
    const keyed = requestsCarryKey(props.proxy, props.contract);

    // ---- Claim the call: a second execution of the same delivery stops here. ----
    // Asynchronous Express executions run at least once, and SQS delivers at least once
    // (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-standard-vs-express.html):
    // without a claim both copies would call the vendor. The claim sequence rises with each
    // retry and deferral (a new message), which claims again (see VendorCallInput.claimSeq).
    const claim = new tasks.DynamoUpdateItem(this, 'ClaimCall', {
      comment: 'Claim this delivery of the call; fails with ConditionalCheckFailed when an execution of it (or of a later one) already claimed it',
      table: props.table.table,
      key: {
        [CorrelationAttributes.REQUEST_ID]: tasks.DynamoAttributeValue.fromString(
          sfn.JsonPath.format(`${CALL_CLAIM_KEY_PREFIX}{}`, sfn.JsonPath.stringAt('$.requestId'))),
      },
      updateExpression: 'SET #claimSeq = :claimSeq, #expires = :expires, #updated = :updated',
      conditionExpression: 'attribute_not_exists(#claimSeq) OR #claimSeq < :claimSeq',
      expressionAttributeNames: {
        '#claimSeq': CorrelationAttributes.CLAIM_SEQ,
        '#expires': CorrelationAttributes.EXPIRES_AT,
        '#updated': CorrelationAttributes.UPDATED_AT,
      },
      expressionAttributeValues: {
        ':claimSeq': tasks.DynamoAttributeValue.numberFromString(sfn.JsonPath.jsonToString(sfn.JsonPath.numberAt('$.claimSeq'))),
        ':expires': tasks.DynamoAttributeValue.numberFromString(sfn.JsonPath.jsonToString(sfn.JsonPath.numberAt('$.expiresAt'))),
        ':updated': tasks.DynamoAttributeValue.fromString(sfn.JsonPath.stringAt('$$.Execution.StartTime')),
      },
      resultPath: sfn.JsonPath.DISCARD,
    });
    const claimRetry = retryAwsServiceErrors(claim, 'dynamodb');
    const alreadyClaimed = new sfn.Succeed(this, 'AlreadyClaimed', {
      comment: 'Another execution of this delivery (or of a later one) claimed the call: it makes the call, not this one',
    });

    // ---- Is anyone still waiting? A call whose workflow already ended is not sent. ----
    const checkWaiting = new sfn.CustomState(this, 'CheckWaitingWorkflow', {
      stateJson: {
        Type: 'Task',
        Comment: 'Only call the vendor while the waiting workflow still waits for this call',
        Resource: `arn:${Aws.PARTITION}:states:::aws-sdk:sfn:sendTaskHeartbeat`,
        Parameters: { 'TaskToken.$': '$.taskToken' },
        ResultPath: null,
      },
    });
    const waitingWorkflowEnded = new sfn.Succeed(this, 'WaitingWorkflowEnded', {
      comment: 'Nobody waits for this call any more: the vendor is not called, or its answer is dropped',
    });
    checkWaiting.addCatch(waitingWorkflowEnded, { errors: TASK_CLOSED_ERRORS, resultPath: sfn.JsonPath.DISCARD });
    const checkRetry = retryAwsServiceErrors(checkWaiting, 'sfn', 3);

    // ---- Read the vendor credential (the dispatch workflow's states). ----
    const credential = vendorCredentialSteps(this, props.proxy, (task) => retryAwsServiceErrors(task, 'secretsmanager'));

    // ---- Call the vendor through the proxy. ----
    const headers = {
      'Idempotency-Key': sfn.JsonPath.array(sfn.JsonPath.stringAt('$.requestId')),
      'X-Request-Id': sfn.JsonPath.array(sfn.JsonPath.stringAt('$.requestId')),
      ...credential.headers,
    };
    const callVendor = this.callVendorState('CallVendor', props, headers, false, vendorCallTimeout);
    const callVendorWithBody = this.callVendorState('CallVendorWithBody', props,
      { ...headers, 'Content-Type': ['application/json'] }, true, vendorCallTimeout);
    // Step Functions fails a Choice whose variable is missing (except IsPresent): presence is the test.
    const hasBody = new sfn.Choice(this, 'HasRequestBody')
      .when(sfn.Condition.isPresent('$.call.body'), callVendorWithBody)
      .otherwise(callVendor);

    // ---- Return the vendor's answer to the waiting workflow. ----
    const returnResponse = new sfn.CustomState(this, 'ReturnResponse', {
      stateJson: {
        Type: 'Task',
        Comment: 'Resume the waiting workflow with { statusCode, body, headers }',
        Resource: `arn:${Aws.PARTITION}:states:::aws-sdk:sfn:sendTaskSuccess`,
        Parameters: { 'TaskToken.$': '$.taskToken', 'Output.$': 'States.JsonToString($.response)' },
        ResultPath: null,
      },
    });
    const returnRetry = retryAwsServiceErrors(returnResponse, 'sfn', 3);
    returnResponse.addCatch(waitingWorkflowEnded, { errors: TASK_CLOSED_ERRORS, resultPath: sfn.JsonPath.DISCARD });
    const returned = new sfn.Succeed(this, 'Returned');

    // ---- Retry through the paced queue, or give up (park, fail the waiting workflow). ----
    // The two SQS tasks are built here, not in retryOrGiveUpStates: they are raw states, granted by
    // grantSendMessages alone, where the dispatch workflow uses CallAwsService tasks.
    const requeue = new sfn.CustomState(this, 'RequeueWithDelay', {
      stateJson: {
        Type: 'Task',
        Comment: 'The retry is another vendor call: it goes back through the paced queue',
        Resource: `arn:${Aws.PARTITION}:states:::aws-sdk:sqs:sendMessage`,
        Parameters: {
          'QueueUrl': props.requestQueue.queueUrl,
          'MessageBody.$': 'States.JsonToString($.retry.message)',
          'DelaySeconds.$': '$.retry.delaySeconds',
          ...requeueGroupId(keyed, true),
        },
        ResultPath: null,
      },
    });
    const requeueRetry = retryAwsServiceErrors(requeue, 'sqs');
    const park = new sfn.CustomState(this, 'ParkInDeadLetterQueue', {
      stateJson: {
        Type: 'Task',
        Resource: `arn:${Aws.PARTITION}:states:::aws-sdk:sqs:sendMessage`,
        Parameters: {
          'QueueUrl': props.deadLetterQueue.queueUrl,
          'MessageBody.$': 'States.JsonToString($.message)',
          'MessageAttributes': {
            reason: { 'DataType': 'String', 'StringValue.$': '$.error.Error' },
            detail: { 'DataType': 'String', 'StringValue.$': 'States.JsonToString($.error)' },
            attempt: { 'DataType': 'Number', 'StringValue.$': 'States.JsonToString($.attempt)' },
          },
        },
        ResultPath: null,
      },
    });
    const parkRetry = retryAwsServiceErrors(park, 'sqs');
    const { classify, giveUp, failWaitingRoute } = retryOrGiveUpStates(this, {
      maxAttempts,
      // The vendor caller refuses an answer too large for Step Functions (256 KiB per state):
      // the same call would get the same answer. Without it (PacingPoint.DISPATCH) nothing can
      // refuse it: an answer over the limit fails the execution (docs/vendor-calls.md).
      finalErrors: props.vendorCaller ? vendorCallerFinalErrors(props.contract) : undefined,
      namedFailures: props.vendorCaller ? vendorCallerNamedFailures(props.contract) : undefined,
      retryBaseDelay,
      maxRetryDelay,
      computeBackoffComment: 'Full jitter: a delay drawn uniformly from [0, cap); the retry is the same call with the same request id',
      retryMessage: {
        kind: 'call',
        taskToken: sfn.JsonPath.stringAt('$.taskToken'),
        requestId: sfn.JsonPath.stringAt('$.requestId'),
        call: sfn.JsonPath.objectAt('$.message.call'),
        attempt: sfn.JsonPath.mathAdd(sfn.JsonPath.numberAt('$.attempt'), 1),
        requestStartedAtMs: sfn.JsonPath.numberAt('$.requestStartedAtMs'), // retries keep the call's start
        endsJobOf: sfn.JsonPath.stringAt('$.endsJobOf'), // a retried cancel still frees the job's place
        ...retryMessageKey(keyed),
        priority: sfn.JsonPath.stringAt(PRIORITY_PATH), // issue 15: retries keep the call's priority
      },
      requeue,
      park,
      briefFailureCause: 'The vendor call failed; the call and the full error are in the request dead-letter queue',
      failedStateId: 'CallFailed',
      failedCause: 'The vendor call was given up and parked in the request dead-letter queue',
    });

    // The answer could not be delivered (e.g. larger than a task output may be): fail the caller.
    returnResponse.addCatch(giveUp, { resultPath: '$.error' });
    checkWaiting.addCatch(classify, { resultPath: '$.error' });
    // With the vendor caller: no slot within its wait budget (a long vendor pause, a full schedule)
    // sends the call back through the queue after the delay it computed. Not an attempt: the
    // vendor was not called.
    let afterCall: sfn.IChainable = returnResponse;
    if (props.vendorCaller) {
      const defer = new sfn.Pass(this, 'DeferToQueue', {
        comment: 'Back to the paced queue without counting an attempt: the vendor was not called',
        parameters: {
          delaySeconds: sfn.JsonPath.numberAt('$.response.requeue.delaySeconds'),
          message: {
            kind: 'call',
            taskToken: sfn.JsonPath.stringAt('$.taskToken'),
            requestId: sfn.JsonPath.stringAt('$.requestId'),
            call: sfn.JsonPath.objectAt('$.message.call'),
            attempt: sfn.JsonPath.numberAt('$.attempt'),
            // A new claim sequence for the same attempt (see VendorCallInput.claimSeq).
            deferrals: sfn.JsonPath.mathAdd(sfn.JsonPath.numberAt('$.deferrals'), 1),
            requestStartedAtMs: sfn.JsonPath.numberAt('$.requestStartedAtMs'),
            endsJobOf: sfn.JsonPath.stringAt('$.endsJobOf'),
            ...retryMessageKey(keyed), // issue 15: a deferred request keeps its key
            priority: sfn.JsonPath.stringAt(PRIORITY_PATH), // ... and its priority
          },
        },
        resultPath: '$.retry',
      });
      afterCall = new sfn.Choice(this, 'WasVendorCalled')
        .when(sfn.Condition.isPresent('$.response.requeue.delaySeconds'), defer.next(noUsableSlotState(this, '$.response.requeue.reason')).next(requeue))
        .otherwise(returnResponse);
    }
    for (const call of [callVendor, callVendorWithBody]) {
      call.addCatch(classify, { resultPath: '$.error' });
      call.next(afterCall);
    }
    returnResponse.next(returned);

    claim.addCatch(alreadyClaimed, { errors: ['DynamoDB.ConditionalCheckFailedException'], resultPath: sfn.JsonPath.DISCARD });
    claim.addCatch(classify, { resultPath: '$.error' });
    // Fields added after the first release (input-defaults.ts): an old dispatcher may start this definition.
    const defaults = { requestStartedAtMs: null, endsJobOf: null, key: null, priority: null, ...keyLimitsDefault(props.contract) };
    const definition = inputDefaults(this, defaults)
      .next(claim.next(checkWaiting).next(credential.before(hasBody, { classify, giveUp })));

    // ---- The longest route must end within the Express workflow's 5 minutes (express-budget.ts). ----
    // An imported vendor caller's timeout is not known here (its Task waits 290 s): not checked.
    const caller = props.vendorCaller;
    const callerTimeout = caller instanceof lambda.Function ? caller.timeout : undefined;
    if (!caller || callerTimeout) {
      const giveUpRoute = [{ name: park.id, retry: parkRetry }, ...failWaitingRoute];
      checkExpressBudget({
        workflow: 'the vendor-call workflow',
        beforeCall: [{ name: claim.id, retry: claimRetry }, { name: checkWaiting.id, retry: checkRetry }, ...credential.route],
        call: callerTimeout
          ? { name: callVendor.id, run: callerTimeout.plus(Duration.seconds(5)), retry: LAMBDA_INVOKE_RETRY }
          : { name: callVendor.id, run: vendorCallTimeout },
        afterCall: [
          // The answer could not be returned: parked, the waiting workflow failed.
          [{ name: returnResponse.id, retry: returnRetry }, ...giveUpRoute],
          // The call failed or was deferred: back to the queue, or parked if that fails.
          [{ name: requeue.id, retry: requeueRetry }, ...giveUpRoute],
        ],
        callParts: callerTimeout
          // The vendor caller is the dispatch workflow's: its timeout comes from dispatch's settings.
          ? { fixedMs: 5_000, text: `the vendor caller's timeout ${callerTimeout.toHumanString()} + 5 s`, sum: 'the vendor caller\'s timeout', lower: 'dispatch.maxSlotWait or dispatch.vendorCallTimeout' }
          : { fixedMs: 0, text: `vendorCallTimeout ${vendorCallTimeout.toHumanString()}`, sum: 'vendorCallTimeout', lower: 'vendorCallTimeout' },
      });
    }

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.stateMachine = new sfn.StateMachine(this, 'Resource', {
      stateMachineType: sfn.StateMachineType.EXPRESS,
      comment: 'Makes one paced synchronous vendor call for a waiting workflow (cdk-async-external-api)',
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      timeout: Duration.minutes(5),
      tracingEnabled: props.tracingEnabled ?? false,
      logs: { destination: this.logGroup, level: sfn.LogLevel.ERROR, includeExecutionData: false },
    });
    if (!props.proxy.credentialFunction) {
      // With a credential function only the function reads the secret (LambdaInvoke grants the invoke).
      props.proxy.credentials.secret?.grantRead(this.stateMachine);
    }
    if (props.vendorCaller) {
      // Only the vendor caller calls the proxy (its resource policy admits the caller's role).
      props.vendorCaller.grantInvoke(this.stateMachine);
    } else {
      props.proxy.grantInvoke(this.stateMachine);
    }
    // ClaimCall: the task grants UpdateItem on the table itself (not its indexes); a customer-managed
    // key of the table must be usable too.
    props.table.table.encryptionKey?.grantEncryptDecrypt(this.stateMachine);
    // Covers KMS when the request queue has a customer-managed key.
    props.requestQueue.grantSendMessages(this.stateMachine);
    props.deadLetterQueue.grantSendMessages(this.stateMachine);
    addVendorCallNagSuppressions(this.stateMachine, props);
  }

  /**
   * Lets the workflow check (SendTaskHeartbeat), resume (SendTaskSuccess) and fail
   * (SendTaskFailure) tasks of `stateMachine`.
   */
  public grantTaskResponses(stateMachine: sfn.IStateMachine): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee: this.stateMachine,
      actions: ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'],
      resourceArns: [stateMachine.stateMachineArn],
    });
  }

  /**
   * Vendor-call executions that failed (calls given up).
   *
   * @default - sum over 5 minutes
   */
  public metricCallFailures(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricFailed(props);
  }

  /**
   * Vendor-call executions started (one per call attempt).
   *
   * @default - sum over 5 minutes
   */
  public metricCallsStarted(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricStarted(props);
  }

  /**
   * THE vendor call of this workflow: `apigateway:invoke` (IAM-signed) on the ThrottledProxy with
   * the message's method, path, query and (when `withBody`) body. One place, so that replacing
   * the transport (e.g. by a Lambda that fires the call at its pacing slot) changes only this.
   *
   * A raw state rather than `CallApiGatewayRestApiEndpoint`, which takes the method as a constant:
   * here the method comes from the message. Its result is `$.response = { statusCode, body, headers }`.
   */
  private callVendorState(id: string, props: VendorCallWorkflowProps, headers: Record<string, unknown>,
    withBody: boolean, timeout: Duration): sfn.CustomState {
    const caller = props.vendorCaller;
    if (caller) {
      // The vendor caller waits for the slot the dispatcher reserved, then sends the request; it
      // answers { statusCode, body, headers, requeue } (requeue: no slot within its wait budget).
      return new sfn.CustomState(this, id, {
        stateJson: {
          Type: 'Task',
          Comment: `Call the vendor through the throttled proxy at the pacing slot${withBody ? ', with a JSON body' : ''} (vendor caller)`,
          Resource: `arn:${Aws.PARTITION}:states:::lambda:invoke`,
          Parameters: {
            FunctionName: caller.functionArn,
            Payload: {
              'method.$': '$.call.method',
              'path.$': '$.call.path',
              'query.$': '$.call.query',
              'headers': sfn.FieldUtils.renderObject(headers),
              ...(withBody ? { 'body.$': '$.call.body' } : {}),
              'requestId.$': '$.requestId',
              'slotAtMs.$': '$.slotAtMs',
              // A quota wait is bounded by the call's deadline, counted from its start.
              'requestStartedAtMs.$': '$.requestStartedAtMs',
              // A call that ends a job (callVendorTask's endsJobOf): its 2xx frees that job's place.
              'endsJobOf.$': '$.endsJobOf',
              // Issue 15: the caller logs the request's key (always there with a credential or limits per key)
              // and gets the key's limits in force, as the dispatcher resolved them.
              ...(requestsCarryKey(props.proxy, props.contract) ? { 'key.$': '$.key' } : {}),
              ...sfn.FieldUtils.renderObject(callerKeyLimits(props.contract)),
            },
          },
          ResultSelector: {
            'statusCode.$': '$.Payload.statusCode',
            'body.$': '$.Payload.body',
            'headers.$': '$.Payload.headers',
            'requeue.$': '$.Payload.requeue',
          },
          ResultPath: '$.response',
          // The caller's own timeout covers its wait for the slot and the call.
          TimeoutSeconds: caller instanceof lambda.Function && caller.timeout ? caller.timeout.toSeconds() + 5 : 290,
          Retry: [{
            // The function did not run or Lambda failed around it. The retry can start before the
            // slot while the first invocation still runs: the caller claims its slot before firing
            // it (pacer.ts, claimSlot), so only one fires it. Retrying cannot break the bound.
            // LAMBDA_INVOKE_RETRY rendered, so the workflow's worst case (express-budget.ts) counts it.
            ErrorEquals: LAMBDA_INVOKE_RETRY.errors,
            IntervalSeconds: LAMBDA_INVOKE_RETRY.interval!.toSeconds(),
            BackoffRate: LAMBDA_INVOKE_RETRY.backoffRate,
            MaxAttempts: LAMBDA_INVOKE_RETRY.maxAttempts,
            JitterStrategy: LAMBDA_INVOKE_RETRY.jitterStrategy,
          }],
        },
      });
    }
    const proxy = props.proxy;
    const stack = Stack.of(proxy.restApi);
    return new sfn.CustomState(this, id, {
      stateJson: {
        Type: 'Task',
        Comment: `Call the vendor through the throttled proxy${withBody ? ' with a JSON body' : ''}`,
        Resource: `arn:${Aws.PARTITION}:states:::apigateway:invoke`,
        Parameters: {
          'ApiEndpoint': `${proxy.restApi.restApiId}.execute-api.${stack.region}.${stack.urlSuffix}`,
          'Stage': proxy.stageName,
          'Method.$': '$.call.method',
          'Path.$': '$.call.path',
          'QueryParameters.$': '$.call.query',
          'Headers': sfn.FieldUtils.renderObject(headers),
          ...(withBody ? { 'RequestBody.$': '$.call.body' } : {}),
          'AuthType': 'IAM_ROLE',
        },
        ResultSelector: { 'statusCode.$': '$.StatusCode', 'body.$': '$.ResponseBody', 'headers.$': '$.Headers' },
        ResultPath: '$.response',
        TimeoutSeconds: timeout.toSeconds(),
      },
    });
  }
}

/** The cdk-nag AwsSolutions suppressions of the vendor-call workflow, with their reasons. */
function addVendorCallNagSuppressions(stateMachine: sfn.StateMachine, props: VendorCallWorkflowProps): void {
  const kms = [props.requestQueue.encryptionMasterKey, props.deadLetterQueue.encryptionMasterKey, props.table.table.encryptionKey]
    .some((key) => key !== undefined);
  addNagSuppressions(stateMachine, [
    {
      id: 'AwsSolutions-SF1',
      reason: 'The vendor-call workflow logs at level ERROR without execution data on purpose: its execution data holds the vendor credential and the vendor\'s responses, which must not reach CloudWatch Logs.',
    },
    {
      id: 'AwsSolutions-SF2',
      reason: 'X-Ray tracing of the vendor-call workflow is opt-in (the tracing / tracingEnabled prop), because traces cost money per request and most users of the construct do not read them.',
    },
  ]);
  addRolePolicyNagSuppressions(stateMachine.role, [
    {
      id: 'AwsSolutions-IAM5',
      reason: 'Step Functions log delivery (logs:CreateLogDelivery, GetLogDelivery, UpdateLogDelivery, DeleteLogDelivery, ListLogDeliveries, PutResourcePolicy, DescribeResourcePolicies, DescribeLogGroups) supports no resource-level permissions, so AWS requires Resource *; so does X-Ray when tracing is on.',
      appliesTo: ['Resource::*'],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'The vendor-call workflow calls the method and path each callVendorTask asks for (the proxy forwards <vendorUrl>/{proxy+}); the ARN is limited to the throttled proxy\'s one API and stage, whose resource policy denies every other role.',
      appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:execute-api:(<AWS::Region>|[a-z0-9-]+):(<AWS::AccountId>|[0-9]+):<[A-Za-z0-9]+>\\/[^/*]+\\/\\*\\/\\*$/' }],
    },
    ...(props.proxy.credentialFunction || props.vendorCaller ? [{
      id: 'AwsSolutions-IAM5',
      reason: 'Invoking the vendor caller (PacingPoint.VENDOR_CALL) or the proxy\'s credential function (OAuth token, JSON secret) is granted on the function and its versions and aliases (<function ARN>:*); the wildcard never leaves that one function.',
      appliesTo: [{ regex: '/^Resource::<[A-Za-z0-9]+\\.Arn>:\\*$/' }],
    }] : []),
    ...wildcardSuppressions({ kms }),
  ]);
}
