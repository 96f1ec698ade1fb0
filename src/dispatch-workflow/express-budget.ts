import { Duration } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';

/**
 * An Express workflow runs at most 5 minutes, and its execution timeout cannot be caught: no Catch
 * runs, so whatever the route had not done yet (store the job id, park the request, fail the
 * waiting workflow) is simply not done.
 * https://docs.aws.amazon.com/step-functions/latest/dg/choosing-workflow-type.html
 */
export const EXPRESS_WORKFLOW_LIMIT = Duration.minutes(5);

/**
 * What one attempt of an AWS service-integration Task (DynamoDB, SQS, Secrets Manager, Step
 * Functions API calls) is allowed in the worst-case sum: these Tasks have no TimeoutSeconds, and
 * their calls answer in milliseconds; this is an allowance of this library, not an AWS figure.
 * A Lambda Task's failed attempts that are retried (throttled, Lambda service errors) are counted
 * the same way: the function did not run, or failed around it.
 */
export const AWS_CALL_ALLOWANCE = Duration.millis(500);

/** One Task on a workflow route, for the worst-case sum. */
export interface RouteStep {
  /** The state's name (shown in the error). */
  readonly name: string;
  /** Longest one successful (or last) attempt takes. @default AWS_CALL_ALLOWANCE */
  readonly run?: Duration;
  /** The Retry the state carries (the same object given to addRetry). @default - none */
  readonly retry?: sfn.RetryProps;
}

/**
 * Longest the waits of a Retry add up to: with full jitter each wait is drawn from zero up to its
 * cap `interval x backoffRate^(n-1)`, at most `maxDelay`
 * (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html#error-handling-retrying-after-an-error).
 */
export function retryWaitBound(retry: sfn.RetryProps): Duration {
  const interval = (retry.interval ?? Duration.seconds(1)).toMilliseconds();
  const rate = retry.backoffRate ?? 2;
  const cap = retry.maxDelay?.toMilliseconds() ?? Infinity;
  let total = 0;
  for (let n = 1; n <= (retry.maxAttempts ?? 3); n++) {
    total += Math.min(cap, interval * rate ** (n - 1));
  }
  return Duration.millis(total);
}

/** Longest a step takes: its last attempt, every retried attempt, and every wait between them. */
export function stepBound(step: RouteStep): Duration {
  const retries = step.retry ? (step.retry.maxAttempts ?? 3) : 0;
  const run = (step.run ?? AWS_CALL_ALLOWANCE).toMilliseconds();
  const waits = step.retry ? retryWaitBound(step.retry).toMilliseconds() : 0;
  return Duration.millis(run + retries * AWS_CALL_ALLOWANCE.toMilliseconds() + waits);
}

/** Longest a route of steps takes, in milliseconds, and the sum spelled out per step. */
export function routeBound(steps: RouteStep[]): { ms: number; parts: string } {
  const bounds = steps.map((s) => ({ name: s.name, ms: stepBound(s).toMilliseconds() }));
  return {
    ms: bounds.reduce((sum, b) => sum + b.ms, 0),
    parts: bounds.map((b) => `${b.name} ${seconds(b.ms)} s`).join(' + '),
  };
}

/** Milliseconds as seconds with at most one decimal. */
export function seconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}

/** A workflow's route around its vendor call, as checkExpressBudget sums it. */
export interface ExpressRoute {
  /** The workflow, for the error ("the dispatch workflow"). */
  readonly workflow: string;
  /** The Tasks every request passes before the vendor call, in order. */
  readonly beforeCall: RouteStep[];
  /** The vendor call Task (`run`: its TimeoutSeconds). */
  readonly call: RouteStep;
  /** The alternative routes after the call (the longest counts). */
  readonly afterCall: RouteStep[][];
  /**
   * How the call's run is made of the props, for the error: `text` spells it out, `fixedMs` is its
   * part no prop sets, `sum` the props' sum to bound, `lower` the props to lower.
   */
  readonly callParts: { readonly fixedMs: number; readonly text: string; readonly sum: string; readonly lower: string };
}

/**
 * Fails synthesis when a workflow's longest route (the dispatch or the vendor-call workflow) could outlast an Express workflow's
 * 5 minutes: every Task's last attempt, its retried attempts (AWS_CALL_ALLOWANCE each) and its
 * Retry's longest waits, from the same Retry objects the states carry.
 *
 * The budget split, deliberately:
 * - The steps after the vendor accepted a job keep DynamoDB's full minute of retries (StoreJobId):
 *   its give-up parks a request whose job the vendor already runs, and the job's callback can then
 *   never find the workflow. That is what parked requests when it retried for 15 s.
 * - ClaimRequest keeps its minute too: its give-up is not free. Its Catch goes to
 *   ClassifyVendorError, which sends the request back through the queue as a new attempt (nothing
 *   is lost, the vendor was not called, but an attempt is spent), and on the last attempt parks it
 *   and fails the waiting workflow (VendorRequestFailed) without the vendor ever being called.
 *   The DynamoDB Developer Guide advises retrying throttled calls for about a minute:
 *   https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html#Programming.Errors.RetryAndBackoff
 * - So what gives is the vendor call's own budget, `lead + maxSlotWait + vendorCallTimeout`: 101 s
 *   with these retries and no credential read (was 275 s, with 20 s assumed for the rest; 118 s
 *   before the SendTaskFailure states retried Step Functions throttling, 8.5 s each). A vendor
 *   call that long needs an API Gateway quota increase above 29 s in the first place
 *   (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
 * Express limit: https://docs.aws.amazon.com/step-functions/latest/dg/choosing-workflow-type.html
 */
export function checkExpressBudget(route: ExpressRoute): { ms: number; parts: string } {
  const after = route.afterCall.map(routeBound).reduce((a, b) => (b.ms > a.ms ? b : a));
  const before = routeBound(route.beforeCall);
  const call = routeBound([route.call]);
  const total = { ms: before.ms + call.ms + after.ms, parts: [before.parts, call.parts, after.parts].filter((p) => p).join(' + ') };
  const limitMs = EXPRESS_WORKFLOW_LIMIT.toMilliseconds();
  if (total.ms > limitMs) {
    const rest = total.ms - route.call.run!.toMilliseconds();
    const allowed = Math.floor((limitMs - rest - route.callParts.fixedMs) / 1000);
    throw new Error(`${route.workflow}'s longest route could take ${seconds(total.ms)} s (${total.parts}), more than an Express workflow runs `
      + `(${seconds(limitMs)} s, and its timeout is not caught: the job id would not be stored nor the request parked). `
      + `${route.call.name}'s Task timeout is ${seconds(route.call.run!.toMilliseconds())} s (${route.callParts.text}); the retries of the other steps `
      + `are fixed (DynamoDB's is a minute, so that a throttled table does not park requests): lower ${route.callParts.lower} so that `
      + `${route.callParts.sum} is at most ${allowed} s`);
  }
  return total;
}
