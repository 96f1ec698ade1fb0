/**
 * Fault scenarios of the jobs-in-flight limit (VendorContract.maxJobsInFlight, issue 14 item 1),
 * run on a fault suite started with the limit (`startFaultSuite({ maxJobsInFlight, maxJobDuration })`):
 * crashes while a place is held, redelivered requests and callbacks, lost callbacks, and a quota
 * period boundary under load (the contract also has a quota, `JOBS_SUITE_QUOTA`). After each, no
 * place is leaked (every place still held has expired: its job's callback was lost) or counted
 * twice (the vendor never refused a job for its limit), no call went beyond the quota, and nothing
 * is lost.
 */
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { Duration } from 'aws-cdk-lib';
import { callbackProcessorFunction, dispatcherFunction, FaultScenario, FaultSuiteContext, replayCallbacks } from './fault-suite';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from './types';

/** The limit and the job duration these scenarios are written for. */
export const JOBS_SUITE_MAX_JOBS_IN_FLIGHT = 2;
export const JOBS_SUITE_MAX_JOB_DURATION = Duration.seconds(5);
/**
 * The jobs-in-flight sweep (once a minute on AWS) runs every 2 s here: an expired place (a lost
 * callback) is only noticed by the sweep when no request asks for a place, and the scenarios last
 * seconds, not minutes.
 */
export const JOBS_SUITE_SCHEDULE_SPEEDUP = 30;
/**
 * The contract's quota on the same runtime (`VendorQuota.every(5 s, 6)`), enforced by the vendor in
 * every scenario. About what the other scenarios ask for at their busiest (4 requests, 2 jobs at
 * once: 8 calls over 8 s or more; they reach it at times without being slowed measurably), below
 * what the quota scenario's burst asks for (a tighter quota slowed every other scenario: 4 per 3 s
 * made the file 25 s slower).
 */
export const JOBS_SUITE_QUOTA = { limit: 6, periodMs: 5000 } as const;

/**
 * Visibility timeout of the crash scenarios: how long a crashed invocation's messages stay hidden
 * before their redelivery. 3 s, as the main suite's crash scenarios (local/fault-suite.ts): above
 * the longest invocation here (a batch of 4 takes its places or joins the waiting queue within
 * about a second), and well inside a held place's expiry (maxJobDuration 5 s + the 1 s submission
 * window from its admission), so that the redelivered request still finds its own place, the route
 * the dispatcher-crash scenario is about. It was 5 s: 2 s more per crash scenario, and a
 * redelivery under load came within about a second of the place's expiry.
 */
const CRASH_VISIBILITY_TIMEOUT_SECONDS = 3;

export function jobsInFlightScenarios(ctx: FaultSuiteContext): FaultScenario[] {
  const dispatcher = dispatcherFunction(ctx);
  const processor = callbackProcessorFunction(ctx);
  return [
    {
      id: 'inflight-dispatcher-crash',
      // The dispatcher checks the waiting task (SendTaskHeartbeat) right after taking a new place and
      // before StartExecution; the local DynamoDB has no crash hook, Step Functions has.
      title: 'Dispatcher crash while holding a place: its environment dies after its 2nd SendTaskHeartbeat (place taken, execution not started)',
      expected: 'the redelivered messages find their own places (not counted twice) and succeed; no place left',
      requests: 4,
      faults: { crash: [{ functionName: dispatcher, service: 'sfn', action: 'SendTaskHeartbeat', afterCalls: 2 }] },
      visibilityTimeoutSeconds: CRASH_VISIBILITY_TIMEOUT_SECONDS,
    },
    {
      id: 'inflight-processor-crash',
      title: 'Callback processor crash after freeing the place and resuming the workflow, before its message is deleted (twice)',
      expected: 'the redelivered callbacks free nothing twice (another job\'s place stays held); every workflow resumed once; no place left',
      requests: 4,
      faults: { crash: [{ functionName: processor, service: 'sfn', action: 'SendTaskSuccess', afterCalls: 1, times: 2 }] },
      visibilityTimeoutSeconds: CRASH_VISIBILITY_TIMEOUT_SECONDS,
    },
    {
      id: 'inflight-redelivered-callbacks',
      title: 'Every job called back twice, and each callback replayed twice more after the workflow resumed',
      expected: 'each place freed once; no place left, none freed that another job holds',
      requests: 4,
      vendor: { duplicateCallbackRate: 1 },
      afterEnd: replayCallbacks,
    },
    {
      id: 'inflight-lost-callback',
      title: `Lost callbacks: half the jobs are never called back (maxJobDuration ${JOBS_SUITE_MAX_JOB_DURATION.toHumanString()})`,
      expected: 'their places expire at maxJobDuration (never freed by our timeout alone) and the waiting requests go on; those workflows time out',
      requests: 4,
      vendor: { noCallbackRate: 0.5 },
    },
    {
      id: 'inflight-quota-boundary',
      // 10 calls against 6 per period: the burst spans at least one period boundary, and with 2 jobs
      // in flight and no callback delay it asks for more than 6 calls in a period.
      title: `Quota period boundary under load: 5 requests at once (10 calls with their result fetches) against a quota of ${JOBS_SUITE_QUOTA.limit} calls per ${JOBS_SUITE_QUOTA.periodMs / 1000} s`,
      expected: 'never more calls than the quota in any period at the vendor (0 refused); the requests beyond it wait for the next period and succeed; no place left',
      requests: 5,
      vendor: { callbackDelayMs: 0 },
    },
  ];
}

/** Places held now in the pacer table's places item: all of them, and those not expired yet. */
export async function placesHeld(ctx: FaultSuiteContext): Promise<{ readonly held: number; readonly live: number }> {
  const pacer = ctx.runtime.template.ofType('AWS::DynamoDB::Table').find((t) => /PacerTable/.test(t.logicalId))!;
  const ddb = new DynamoDBClient({ endpoint: ctx.runtime.endpoints.dynamodb, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  try {
    const { Item } = await ddb.send(new GetItemCommand({
      TableName: ctx.runtime.template.nameOf(pacer.logicalId), Key: { pk: { S: 'job-places' } }, ConsistentRead: true,
    }));
    const expiries = Object.values(Item?.places?.M ?? {}).map((v) => Number(v.N));
    const now = Date.now();
    return { held: Number(Item?.placesHeld?.N ?? 0), live: expiries.filter((exp) => exp > now).length };
  } finally {
    ddb.destroy();
  }
}
