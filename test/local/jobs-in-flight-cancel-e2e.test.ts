/**
 * Jobs in flight end to end: a cancel call (`callVendorTask({ endsJobOf })`, the README's cancel
 * example built into the example app with `cancelOnTimeout`) frees the place of a job the vendor
 * never calls back, and the request waiting for that place takes it at once. The synthesized stack
 * and the real handlers on the local runtime, against a strict vendor that refuses job N + 1 and
 * has a cancel endpoint (local/vendor-simulator.ts, cancelJob). The figures come from the
 * simulator's clock, never from the library's counters.
 *
 * Timeline (maxJobsInFlight 1, callbackTimeout T): the hanging request H takes the only place;
 * the waiting request W starts T - 2 s after H (its own wait then has about T - 2 s left after
 * H's timeout: every request's timeout counts from its own start, the time waiting for a place
 * included); H's wait times out at T, its workflow cancels the job, the vendor's 200 frees the
 * place and wakes W. maxJobDuration is 10 minutes: without the cancel, W would wait that long.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { buildExampleApp, ExampleStack } from '../../examples/app';
import { LOCAL_PACING } from '../../local/local-pacing';
import { LocalRuntime } from '../../local/runtime';
import { VendorSimulator } from '../../local/vendor-simulator';
import { VendorContract } from '../../src';

jest.setTimeout(120_000);

/** The callback timeout: long enough for W's cancel-wake-submit-callback after H's timeout on a loaded machine. */
const CALLBACK_TIMEOUT_MS = 10_000;
/** W starts this long before H's wait times out (so it is waiting when the cancel frees the place). */
const WAITER_LEAD_MS = 2_000;
const MAX_JOB_DURATION = Duration.minutes(10);

let runtime: LocalRuntime | undefined;
let vendor: VendorSimulator | undefined;
let stack: ExampleStack;
/** The handlers' INFO lines: which way W went (the waiting queue and the cancel's wake). */
let logFile: string;

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cancel-e2e-'));
  const built = buildExampleApp({
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    contract: VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 1, maxJobDuration: MAX_JOB_DURATION }),
    callbackTimeout: Duration.millis(CALLBACK_TIMEOUT_MS),
    // The submission alone: the result fetch would only lengthen W's run.
    fetchResult: false,
    cancelOnTimeout: true,
    // The local pacing knobs for 2 shared cores (local/local-pacing.ts), lead excepted (it would
    // lengthen both paced hops of W's route). With AWS's fire tolerance of 5 ms a loaded run
    // (load average 7.6) gave up 7 slots of H's cancel (its caller woke 5-65 ms late), requeued it
    // once, and the cancel reached the vendor 6.7 s after H's timeout instead of 2 s: W, woken
    // 1.1 s before its own timeout, timed out unsubmitted, and its own cancel's 404 failed it with
    // VendorRequestFailed (the README's cancel example does not catch it).
    fireTolerance: Duration.millis(LOCAL_PACING.fireToleranceMs),
    latenessTolerance: Duration.millis(LOCAL_PACING.latenessToleranceMs),
  }, outdir);
  built.app.synth();
  stack = built.stack;
  runtime = await LocalRuntime.start({
    assemblyDir: outdir,
    removeAssemblyDirOnStop: true,
    stackName: stack.stackName,
    logFile: (logFile = process.env.E2E_LOG ?? path.join(os.tmpdir(), `cancel-e2e-${process.pid}.log`)),
    functionEnv: { POWERTOOLS_LOG_LEVEL: 'INFO' },
  });
  // Two warm vendor callers (the cancel and W's submission), as a steady load has them on AWS.
  await runtime.prewarm(stack.orchestrator.dispatch.vendorCaller!, 2);
});

afterAll(async () => {
  await vendor?.stop();
  await runtime?.stop();
  if (!process.env.E2E_LOG) fs.rmSync(logFile, { force: true });
});

async function waitUntil(condition: () => boolean, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (!condition() && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return condition();
}

test('GIVEN maxJobsInFlight 1 held by a job the vendor never calls back WHEN its workflow times out THEN the cancel frees the place, the waiting request takes it promptly, the vendor never sees 2 jobs and nothing is lost', async () => {
  // GIVEN: a vendor whose no-callback jobs hang (until cancelled), with a cancel endpoint
  const rt = runtime!;
  vendor = new VendorSimulator({
    requestsPerSecond: 10,
    latencyMs: 20,
    callbackDelayMs: 100,
    noCallbackRate: 0.5,
    noCallbackRunsMs: MAX_JOB_DURATION.toMilliseconds(),
    maxJobsInFlight: 1,
    rewriteUrl: (url) => rt.rewriteUrl(url),
    seed: 11,
  });
  rt.mapHost('vendor.example.com', await vendor.start());
  const v = vendor;
  // The request ids the seeded faults make hang, or not.
  const hanging = ['a', 'b', 'c', 'd', 'e', 'f'].map((s) => `cancel-hang-${s}`).find((id) => v.faultsOf(id).includes('noCallback'))!;
  const waiting = ['a', 'b', 'c', 'd', 'e', 'f'].map((s) => `cancel-wait-${s}`).find((id) => v.faultsOf(id).length === 0)!;
  const mainArn = rt.stateMachineArn(stack.mainWorkflow);
  const start = async (orderId: string) => (await rt.sfn.startExecution(mainArn, JSON.stringify({ orderId, order: { orderId } }))).executionArn;

  // WHEN: H takes the place; W starts shortly before H's wait times out
  const hStartedAt = Date.now();
  const h = await start(hanging);
  expect(await waitUntil(() => (v.stats().requests[hanging]?.accepted ?? 0) === 1, CALLBACK_TIMEOUT_MS - WAITER_LEAD_MS)).toBe(true);
  await new Promise((r) => setTimeout(r, Math.max(0, hStartedAt + CALLBACK_TIMEOUT_MS - WAITER_LEAD_MS - Date.now())));
  const wStartedAt = Date.now();
  const w = await start(waiting);
  const ended = await waitUntil(() => [h, w].every((arn) => rt.sfn.describeExecution(arn).status !== 'RUNNING'), 30_000);

  // THEN: H timed out, cancelled its job (200) and failed as before; W succeeded with its callback
  const hRun = rt.sfn.describeExecution(h);
  const wRun = rt.sfn.describeExecution(w);
  if (wRun.status !== 'SUCCEEDED') {
    // What tracing a failed W needs: its own deadline against the cancel's arrival and its
    // submission (simulator's clock; ms after H's start). A W that timed out unsubmitted fails
    // with VendorRequestFailed: its own cancel gets 404.
    const at = (ms: number | undefined) => (ms === undefined ? 'never' : `+${ms - hStartedAt} ms`);
    const s = v.stats().requests;
    process.stdout.write(`cancel-e2e: W ${wRun.status} ${wRun.error} (${wRun.cause}); H timed out at +${CALLBACK_TIMEOUT_MS} ms, `
      + `cancel at the vendor ${at(s[hanging]?.cancelledAtMs)}, W started ${at(wStartedAt)}, times out at ${at(wStartedAt + CALLBACK_TIMEOUT_MS)}, `
      + `submitted ${at(s[waiting]?.firstSubmissionAtMs)}\n`);
  }
  expect(ended).toBe(true);
  expect({ h: [hRun.status, hRun.error], w: [wRun.status, wRun.error] })
    .toEqual({ h: ['FAILED', 'VendorTimedOut'], w: ['SUCCEEDED', undefined] });
  const stats = v.stats();
  expect(stats.cancels).toEqual({ cancelled: 1, notFound: 0, alreadyEnded: 0 });
  // The vendor never saw 2 jobs: none refused, none over the rate; each request one job.
  expect(stats.jobsInFlight).toMatchObject({ limit: 1, maxObserved: 1, violations: 0, now: 0 });
  expect(stats.violations).toBe(0);
  expect(stats.duplicateVendorCalls).toBe(0);
  expect([stats.requests[hanging].accepted, stats.requests[waiting].accepted]).toEqual([1, 1]);
  // The cancelled job was never called back; W's callback was delivered.
  expect(v.callbacks().map((c) => [c.requestId, c.outcome])).toEqual([[waiting, 'delivered']]);
  // W waited in the waiting queue (not as a delayed-copy recheck), and the vendor caller freed H's
  // place on the cancel's 200 and woke it.
  const log = fs.readFileSync(logFile, 'utf8');
  expect(log).toContain('requests without a place moved to the waiting queue');
  expect(log).toContain(`the call ended the job of request ${hanging} (the vendor answered 200): its place in flight is freed`);
  expect(log).toContain('waiting requests woken for freed places');
  expect(log).not.toContain('rechecks as a delayed copy');
  // Nothing lost: no dead letter on either side.
  expect([await rt.deadLetterCount('request'), await rt.deadLetterCount('callback')]).toEqual([0, 0]);

  // The figure: from the cancel's arrival at the vendor to W's submission (its first: W was never
  // submitted while H held the place), by the simulator's clock. Well under maxJobDuration (10 min).
  const cancelledAt = stats.requests[hanging].cancelledAtMs!;
  const cancelToNextSubmissionMs = stats.requests[waiting].firstSubmissionAtMs! - cancelledAt;
  expect(cancelToNextSubmissionMs).toBeGreaterThan(0);
  expect(cancelToNextSubmissionMs).toBeLessThan(5_000);
  // The simulator's hand-over: the place freed by the cancel, idle until W took it.
  expect(stats.jobsInFlight.handOvers).toBe(1);
  // Recorded for docs/benchmark.md ("Issue 14: jobs in flight").
  process.stdout.write(`cancel-e2e: timeout -> cancel at the vendor ${cancelledAt - (hStartedAt + CALLBACK_TIMEOUT_MS)} ms, `
    + `cancel -> next submission ${cancelToNextSubmissionMs} ms (hand-over idle ${Math.round(stats.jobsInFlight.maxHandOverIdleMs)} ms), `
    + `test ${Date.now() - hStartedAt} ms from the first start\n`);
});
