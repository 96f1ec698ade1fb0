/**
 * The fault suite's jobs-in-flight scenarios (local/fault-suite-jobs-in-flight.ts) on one runtime
 * whose contract has maxJobsInFlight 2, maxJobDuration 5 s and a quota of 6 calls per 5 s, against
 * a strict vendor that refuses job 3 and a call beyond the quota. Each asserts the safety figures
 * (accounted, lost 0, duplicate vendor calls 0), no violation of either limit at the vendor, and
 * no leaked place.
 *
 * The lost-callback scenario spends 30 s waiting for its lost jobs' callback timeout: it starts in
 * the background right after the runtime and the other scenarios run once nothing of it runs any
 * more (its other requests ended, no place held: startFaultScenarioInBackground's quietWhen); it
 * is counted last.
 */
import { Duration } from 'aws-cdk-lib';
import {
  FaultScenario, FaultScenarioResult, FaultSuiteContext, formatFaultTable, runFaultScenario, startFaultScenarioInBackground, startFaultSuite,
} from '../../local/fault-suite';
import {
  JOBS_SUITE_MAX_JOB_DURATION, JOBS_SUITE_MAX_JOBS_IN_FLIGHT, JOBS_SUITE_QUOTA, JOBS_SUITE_SCHEDULE_SPEEDUP, jobsInFlightScenarios, placesHeld,
} from '../../local/fault-suite-jobs-in-flight';
import { VendorQuota } from '../../src';

jest.setTimeout(120_000);

let ctx: FaultSuiteContext;
const results: FaultScenarioResult[] = [];
/** The scenario waiting for the callback timeout, running in the background. */
const LOST = 'inflight-lost-callback';
let lost: { finish(): Promise<FaultScenarioResult> } | undefined;

function scenarioOf(id: string): FaultScenario {
  const scenario = jobsInFlightScenarios(ctx).find((s) => s.id === id)!;
  return { ...scenario, vendor: { maxJobsInFlight: JOBS_SUITE_MAX_JOBS_IN_FLIGHT, quota: JOBS_SUITE_QUOTA, ...scenario.vendor } };
}

beforeAll(async () => {
  ctx = await startFaultSuite({
    logFile: process.env.FAULTS_LOG,
    maxJobsInFlight: JOBS_SUITE_MAX_JOBS_IN_FLIGHT,
    maxJobDuration: JOBS_SUITE_MAX_JOB_DURATION,
    quotas: [VendorQuota.every(Duration.millis(JOBS_SUITE_QUOTA.periodMs), JOBS_SUITE_QUOTA.limit)],
    // On AWS every expiry also covers the dispatch workflow's 5 minutes (admission -> submission);
    // here 1 s, so that the lost callbacks' places expire within the scenario.
    functionEnv: { JOB_PLACE_SUBMISSION_WINDOW_MS: '1000' },
    // The sweep every 2 s: it frees the lost callbacks' expired places and wakes their waiters.
    scheduleSpeedup: JOBS_SUITE_SCHEDULE_SPEEDUP,
    // No warm-up requests: the background scenario comes first and takes the cold starts within
    // its 30 s callback timeout (its requests that are called back end in about 10 s).
    warmUp: false,
  });
  // Quiet once its other requests ended and the sweep freed the lost jobs' expired places: from
  // then on the other scenarios start from the clean places item they started from before.
  lost = await startFaultScenarioInBackground(ctx, scenarioOf(LOST), {
    quietWhen: async (c) => {
      const places = await placesHeld(c);
      return places.held === 0 && places.live === 0;
    },
  });
}, 120_000);

afterAll(async () => {
  // Its vendor and its waiting workflows go on until it is finished (e.g. when -t left its test out).
  await lost?.finish().catch(() => undefined);
  if (results.length > 0) {
    console.log(formatFaultTable(results));
    // What the vendor counted for the two limits (the table's columns are the common ones).
    console.log(results.map((r) => `${r.id}: most jobs in flight ${r.vendorJobsInFlight.maxObserved}, `
      + `in-flight violations ${r.vendorJobsInFlight.violations}, most calls in a quota period ${r.vendorQuota.maxInAnyPeriod}, `
      + `quota violations ${r.vendorQuota.violations}`).join('\n'));
  }
  await ctx?.runtime.stop();
}, 120_000);

async function run(id: string): Promise<FaultScenarioResult> {
  const result = id === LOST ? await lost!.finish() : await runFaultScenario(ctx, scenarioOf(id));
  results.push(result);
  expect({
    id,
    accounted: result.succeeded + result.failed + result.timedOut + result.lost,
    lost: result.lost,
    duplicateVendorCalls: result.duplicateVendorCalls,
    inFlightViolations: result.vendorJobsInFlight.violations,
    quotaViolations: result.vendorQuota.violations,
  }).toEqual({ id, accounted: result.requests, lost: 0, duplicateVendorCalls: 0, inFlightViolations: 0, quotaViolations: 0 });
  expect(result.vendorJobsInFlight.maxObserved).toBeLessThanOrEqual(JOBS_SUITE_MAX_JOBS_IN_FLIGHT);
  expect(result.vendorQuota.maxInAnyPeriod).toBeLessThanOrEqual(JOBS_SUITE_QUOTA.limit);
  return result;
}

test('GIVEN the dispatcher crashes while holding places WHEN its messages are redelivered THEN they succeed on their own places and none is left', async () => {
  const r = await run('inflight-dispatcher-crash');
  expect(r.succeeded).toBe(4);
  expect(r.injected.crashes).not.toEqual({});
  expect(await placesHeld(ctx)).toEqual({ held: 0, live: 0 });
});

test('GIVEN the callback processor crashes after freeing a place WHEN the callback is redelivered THEN nothing is freed twice and every workflow resumes', async () => {
  const r = await run('inflight-processor-crash');
  expect(r.succeeded).toBe(4);
  expect(r.injected.crashes).not.toEqual({});
  expect(await placesHeld(ctx)).toEqual({ held: 0, live: 0 });
});

test('GIVEN duplicate and replayed callbacks WHEN processed THEN each place is freed once and none is left', async () => {
  const r = await run('inflight-redelivered-callbacks');
  expect(r.succeeded).toBe(4);
  expect(await placesHeld(ctx)).toEqual({ held: 0, live: 0 });
});

test('GIVEN a burst larger than the quota across a period boundary WHEN dispatched THEN no period holds more calls than the quota, the rest wait for the next period, and no place is left', async () => {
  const r = await run('inflight-quota-boundary');
  // 10 vendor calls against 6 per period: some waited for a later period, none was refused.
  expect(r.succeeded).toBe(5);
  expect(r.vendorQuota.violations).toBe(0);
  expect(await placesHeld(ctx)).toEqual({ held: 0, live: 0 });
});

// Started in beforeAll; the scenarios above ran during its wait.
test('GIVEN lost callbacks WHEN their jobs pass maxJobDuration THEN their places expire, the waiting requests go on, and no live place is left', async () => {
  const r = await run('inflight-lost-callback');
  const lostCallbacks = Object.values(r.perRequest).filter((p) => p.vendorFaults.includes('noCallback')).length;
  expect(lostCallbacks).toBeGreaterThan(0);
  expect(r.timedOut).toBe(lostCallbacks);
  expect(r.succeeded).toBe(r.requests - lostCallbacks);
  // Expired places may still be in the item (dropped when the limit is next full); none is live.
  expect((await placesHeld(ctx)).live).toBe(0);
});
