import { Aws, Duration, Token } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { retryAwsServiceErrors } from './aws-service-errors';
import { RouteStep } from './express-budget';
import { ErrorNames } from '../shared/messages';

/** A task that sends one SQS message (`aws-sdk:sqs:sendMessage`). */
export type SendMessageState = sfn.TaskStateBase | sfn.CustomState;

/** What the retry and give-up states need from the workflow that uses them. */
export interface RetryOrGiveUpOptions {
  /** Vendor calls before the request is given up (validated by the workflow). */
  readonly maxAttempts: number;
  /** Backoff cap of the first retry. */
  readonly retryBaseDelay: Duration;
  /** Largest backoff cap. */
  readonly maxRetryDelay: Duration;
  /** Comment of the `ComputeBackoff` state. */
  readonly computeBackoffComment: string;
  /** The message the retry sends back to the request queue (JSONPath), its attempt counted up. */
  readonly retryMessage: Record<string, unknown>;
  /**
   * `RequeueWithDelay`: sends `$.retry.message` to the request queue after `$.retry.delaySeconds`,
   * with the workflow's own retries already added.
   *
   * The workflow builds it (and `park`) because the two workflows build these tasks differently:
   * the dispatch workflow with `CallAwsService`, which adds its own IAM statement on the queue,
   * the vendor-call workflow as a raw state, which relies on `grantSendMessages` alone. Building
   * them here one way would change the other workflow's definition and role policy.
   */
  readonly requeue: SendMessageState;
  /**
   * `ParkInDeadLetterQueue`: sends the original message (`$.message`) to the dead-letter queue,
   * with the workflow's own retries already added.
   */
  readonly park: SendMessageState;
  /** The cause SendTaskFailure gets when the full error is too long for it. */
  readonly briefFailureCause: string;
  /**
   * Error names of the vendor call that retrying cannot fix besides `ApiGateway.4xx`: given up at
   * once (e.g. the vendor caller's VendorResponseTooLarge). Only names the workflow's call can
   * raise: each is a Choice rule, and a rule no input reaches is an edge no test can execute.
   *
   * @default - none
   */
  readonly finalErrors?: string[];
  /**
   * Of `finalErrors`, those the waiting workflow fails with by their own name (SendTaskFailure
   * `Error`), so it can catch them (e.g. VendorQuotaExhausted); the others fail it with
   * VendorRequestFailed. A Choice after the park picks the SendTaskFailure; without such names the
   * park goes straight to FailWaitingWorkflow, as before.
   *
   * @default - none
   */
  readonly namedFailures?: string[];
  /** Id of the final Fail state. */
  readonly failedStateId: string;
  /** Cause of the final Fail state. */
  readonly failedCause: string;
}

/** The entry points into the retry and give-up states. */
export interface RetryOrGiveUpStates {
  /**
   * `ClassifyVendorError`: the catch target of a failed vendor call (error at `$.error`). It
   * retries what may succeed later and gives up on the rest.
   */
  readonly classify: sfn.Choice;
  /**
   * Park the message, fail the waiting workflow, fail this execution: for an error that retrying
   * cannot fix (error at `$.error`).
   */
  readonly giveUp: sfn.Chain;
  /**
   * The longest give-up after the request is parked, for the workflow's Express budget
   * (express-budget.ts): FailWaitingWorkflow (or ...ByName) retried to its last attempt, then
   * FailWaitingWorkflowBriefly, with the Retry they carry.
   */
  readonly failWaitingRoute: RouteStep[];
}

/**
 * The retry / park / fail states shared by the dispatch workflow and the vendor-call workflow.
 *
 * A retryable failure sends the message back to the request queue with a jittered, growing delay
 * (so the retry is paced like any other request) until `maxAttempts`; a final failure parks the
 * message in the dead-letter queue and fails the waiting workflow at once (SendTaskFailure
 * `VendorRequestFailed`), then this execution.
 *
 * The states are created in `scope` (the workflow construct), so their ids are the same as if the
 * workflow had created them itself.
 */
export function retryOrGiveUpStates(scope: Construct, options: RetryOrGiveUpOptions): RetryOrGiveUpStates {
  const { maxAttempts, retryBaseDelay, maxRetryDelay, requeue, park } = options;

  // ---- Retry: back through the request queue, with a jittered, growing delay. ----
  const caps = [retryBaseDelay.toSeconds()];
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    caps.push(Math.min(maxRetryDelay.toSeconds(), retryBaseDelay.toSeconds() * 2 ** (attempt - 1)));
  }
  const backoffCaps = new sfn.Pass(scope, 'BackoffCaps', {
    comment: 'Backoff cap in seconds per attempt: base x 2^(attempt - 1), at most maxRetryDelay',
    result: sfn.Result.fromArray(caps),
    resultPath: '$.backoffCaps',
  });
  const computeBackoff = new sfn.Pass(scope, 'ComputeBackoff', {
    comment: options.computeBackoffComment,
    parameters: {
      delaySeconds: sfn.JsonPath.mathRandom(0, Token.asNumber(sfn.JsonPath.arrayGetItem(sfn.JsonPath.listAt('$.backoffCaps'), sfn.JsonPath.numberAt('$.attempt')))),
      message: options.retryMessage,
    },
    resultPath: '$.retry',
  });
  const retryScheduled = new sfn.Succeed(scope, 'RetryScheduled');

  // ---- Give up: park the message and fail the waiting workflow at once. ----
  const failWaiting = sendTaskFailureState(scope, 'FailWaitingWorkflow', { path: 'States.JsonToString($.error)' });
  // The cause above can exceed SendTaskFailure's 32768 characters (a long vendor body): say less.
  const failWaitingShort = sendTaskFailureState(scope, 'FailWaitingWorkflowBriefly', { text: options.briefFailureCause });
  const failed = new sfn.Fail(scope, options.failedStateId, {
    error: ErrorNames.VENDOR_REQUEST_FAILED,
    cause: options.failedCause,
  });
  // Step Functions throttles SendTaskFailure per account and Region (token bucket, "Quotas related
  // to API action throttling": https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html).
  // Without a Retry a throttled call went to the Catch below at once, and if the brief one was
  // throttled too, the request was parked but its waiting workflow only ended at its own task
  // timeout instead of VendorRequestFailed now. Retried like the other Step Functions calls
  // (CheckWaitingWorkflow, ReturnResponse); a closed task (TASK_CLOSED_ERRORS) is not in the
  // Retry's list, so it still goes to the Catch at once.
  const failWaitingRetry = retryAwsServiceErrors(failWaiting, 'sfn', 3);
  failWaitingShort.addRetry(failWaitingRetry);
  failWaiting.addCatch(failWaitingShort, { resultPath: '$.failError' });
  failWaitingShort.addCatch(failed, { resultPath: '$.failError' });
  let giveUp: sfn.Chain;
  const namedFailures = options.namedFailures ?? [];
  if (namedFailures.length > 0) {
    const failWaitingNamed = sendTaskFailureState(scope, 'FailWaitingWorkflowByName', { path: 'States.JsonToString($.error)' }, '$.error.Error');
    failWaitingNamed.addRetry(failWaitingRetry);
    failWaitingNamed.addCatch(failWaitingShort, { resultPath: '$.failError' });
    const howToFail = new sfn.Choice(scope, 'FailWaitingWorkflowHow', {
      comment: 'Errors the waiting workflow may catch by name fail it with that name; the rest with VendorRequestFailed',
    });
    for (const name of namedFailures) {
      howToFail.when(sfn.Condition.stringEquals('$.error.Error', name), failWaitingNamed.next(failed));
    }
    howToFail.otherwise(failWaiting.next(failed));
    giveUp = park.next(howToFail);
  } else {
    giveUp = park.next(failWaiting.next(failed));
  }
  failWaitingShort.next(failed);
  park.addCatch(failWaiting, { resultPath: '$.parkError' });

  const retryOrGiveUp = new sfn.Choice(scope, 'RetryOrGiveUp')
    .when(sfn.Condition.numberLessThan('$.attempt', maxAttempts), backoffCaps.next(computeBackoff).next(requeue).next(retryScheduled))
    .otherwise(giveUp);
  // A failed requeue must not lose the message: give up loudly instead.
  requeue.addCatch(park, { resultPath: '$.requeueError' });

  // 429, 408, 5xx and anything that is not an HTTP answer (timeouts, network) are retryable;
  // other 4xx answers are the vendor's final word on this request (it refused it, or e.g. 404 on
  // a call: no such job): retrying cannot help.
  // Step Functions names API Gateway failures `ApiGateway.<status>` (documented as `APIGateway.`).
  const classify = new sfn.Choice(scope, 'ClassifyVendorError')
    .when(sfn.Condition.or(...['429', '408'].flatMap((code) => [
      sfn.Condition.stringEquals('$.error.Error', `ApiGateway.${code}`),
      sfn.Condition.stringEquals('$.error.Error', `APIGateway.${code}`),
    ])), retryOrGiveUp)
    .when(sfn.Condition.or(
      sfn.Condition.stringMatches('$.error.Error', 'ApiGateway.4*'),
      sfn.Condition.stringMatches('$.error.Error', 'APIGateway.4*'),
    ), giveUp);
  // Appended after the rules above, so that their indexes (and edge names) stay the same.
  for (const name of options.finalErrors ?? []) {
    classify.when(sfn.Condition.stringEquals('$.error.Error', name), giveUp);
  }
  classify.otherwise(retryOrGiveUp);

  const failWaitingRoute = [failWaiting, failWaitingShort].map((state) => ({ name: state.id, retry: failWaitingRetry }));
  return { classify, giveUp, failWaitingRoute };
}

/**
 * `NoUsableSlot`: on the vendor caller's deferral route (no pacing slot within its wait budget),
 * records why the message goes back to the queue at `$.error`, which `ParkInDeadLetterQueue` and
 * `FailWaitingWorkflow` read when `RequeueWithDelay` fails. On the retry route `$.error` is the
 * vendor call's error; here nothing else sets it, and a path that points at nothing fails the
 * execution with States.Runtime, which no Catch handles: the request would be neither requeued
 * nor parked, and its workflow would wait for its timeout.
 *
 * @param reasonPath where the caller's `requeue.reason` is (`VendorPaused`, `NoSlotInTime`)
 */
export function noUsableSlotState(scope: Construct, reasonPath: string): sfn.Pass {
  return new sfn.Pass(scope, 'NoUsableSlot', {
    comment: 'Why the request goes back to the queue: what it is parked with if the requeue fails',
    parameters: {
      Error: ErrorNames.VENDOR_CALL_DEFERRED,
      Cause: sfn.JsonPath.format(
        'The vendor caller found no pacing slot within its wait budget ({}), and sending the request back to the request queue failed',
        sfn.JsonPath.stringAt(reasonPath),
      ),
    },
    resultPath: '$.error',
  });
}

/**
 * A raw `aws-sdk:sfn:sendTaskFailure` task. Not `CallAwsService`: that one attaches its own IAM
 * statement, which would need the waiting workflows' ARNs before they are known (a lazy list
 * there breaks synthesis under `@aws-cdk/aws-iam:minimizePolicies`). Each workflow's
 * `grantTaskResponses()` grants the permission per waiting workflow instead.
 */
function sendTaskFailureState(scope: Construct, id: string, cause: { text?: string; path?: string }, errorPath?: string): sfn.CustomState {
  return new sfn.CustomState(scope, id, {
    stateJson: {
      Type: 'Task',
      Resource: `arn:${Aws.PARTITION}:states:::aws-sdk:sfn:sendTaskFailure`,
      Parameters: {
        'TaskToken.$': '$.taskToken',
        ...(errorPath ? { 'Error.$': errorPath } : { Error: ErrorNames.VENDOR_REQUEST_FAILED }),
        ...(cause.path ? { 'Cause.$': cause.path } : { Cause: cause.text }),
      },
      ResultPath: null,
    },
  });
}
