/**
 * The demo's accounting (local/report.ts classifyRequest, local/demo.ts demoWaitMs): a slow
 * request is still running, not lost; a lost request is one with nothing left that can end it;
 * every timeout has a cause, and a timeout with none of the expected causes is reported as
 * unexplained (CI fails on it), including the fetch's timeout that the example's Catch renames.
 */
import * as os from 'os';
import * as path from 'path';
import { DEFAULT_DEMO_OPTIONS, demoWaitMs, runDemo } from '../../local/demo';
import { classifyRequest, RequestFacts } from '../../local/report';

const T0 = 1_700_000_000_000;
const timedOutSubmission: RequestFacts = {
  status: 'FAILED',
  error: 'VendorTimedOut',
  timedOutWait: 'submission',
  endedAtMs: T0 + 30_000,
  answerTakesMs: 2_200,
};

describe('open requests', () => {
  test('still running with a message, dead letter, execution or correlation item left: stillRunning, not lost', () => {
    for (const evidence of [['message'], ['deadLetter'], ['execution'], ['correlation'], ['execution', 'correlation']] as const) {
      expect(classifyRequest({ status: 'RUNNING', evidence: [...evidence] })).toEqual({ outcome: 'stillRunning' });
    }
  });

  test('still running with nothing left that can end it: lost', () => {
    expect(classifyRequest({ status: 'RUNNING', evidence: [] })).toEqual({ outcome: 'lost' });
    expect(classifyRequest({ status: 'RUNNING' })).toEqual({ outcome: 'lost' });
  });
});

describe('timeouts by cause', () => {
  test('planned by the fault mix', () => {
    expect(classifyRequest({ ...timedOutSubmission, plannedTimeout: true, reachedVendorAtMs: T0 })).toEqual({ outcome: 'timedOut', timeoutCause: 'planned' });
  });

  test('a callback refused or parked', () => {
    expect(classifyRequest({ ...timedOutSubmission, callbackRejected: true, reachedVendorAtMs: T0 })).toEqual({ outcome: 'timedOut', timeoutCause: 'callbackRejected' });
  });

  test('still waiting for a slot: never reached the vendor, or too late to be answered in time', () => {
    expect(classifyRequest({ ...timedOutSubmission })).toEqual({ outcome: 'timedOut', timeoutCause: 'waitingForSlot' });
    expect(classifyRequest({ ...timedOutSubmission, reachedVendorAtMs: T0 + 28_000 })).toEqual({ outcome: 'timedOut', timeoutCause: 'waitingForSlot' });
  });

  test('a callback accepted in time but processed after the timeout (LATE) or still queued: callbackLate', () => {
    expect(classifyRequest({ ...timedOutSubmission, reachedVendorAtMs: T0 + 1_000, callbackLate: true })).toEqual({ outcome: 'timedOut', timeoutCause: 'callbackLate' });
  });

  test('reached the vendor in time, nothing planned, nothing rejected, no late callback: unexplained (a defect that ended in a timeout)', () => {
    expect(classifyRequest({ ...timedOutSubmission, reachedVendorAtMs: T0 + 1_000 })).toEqual({ outcome: 'timedOut', timeoutCause: 'unexplained' });
  });

  test('the fetch\'s timeout caught as ResultFetchFailed is a timeout, not an ordinary failure', () => {
    const fetch: RequestFacts = { status: 'FAILED', error: 'ResultFetchFailed', timedOutWait: 'fetch', endedAtMs: T0 + 900_000, reachedVendorAtMs: 0, answerTakesMs: 1_200 };
    expect(classifyRequest(fetch)).toEqual({ outcome: 'timedOut', timeoutCause: 'unexplained' });
    expect(classifyRequest({ ...fetch, reachedVendorAtMs: undefined })).toEqual({ outcome: 'timedOut', timeoutCause: 'waitingForSlot' });
    // A refusal of the fetch (no timeout in its history) stays a failure.
    expect(classifyRequest({ status: 'FAILED', error: 'ResultFetchFailed' })).toEqual({ outcome: 'failed' });
  });

  test('the main workflow\'s own timeout (TIMED_OUT) is never explained by a slot wait', () => {
    expect(classifyRequest({ status: 'TIMED_OUT', endedAtMs: T0 })).toEqual({ outcome: 'timedOut', timeoutCause: 'unexplained' });
  });
});

test('other endings', () => {
  expect(classifyRequest({ status: 'SUCCEEDED' })).toEqual({ outcome: 'succeeded' });
  expect(classifyRequest({ status: 'FAILED', error: 'VendorRequestFailed' })).toEqual({ outcome: 'failed' });
  expect(classifyRequest({ status: 'ABORTED' })).toEqual({ outcome: 'failed' });
});

describe('the wait is sized from the work', () => {
  test('two paced calls per order, not one: 150 orders at 10 RPS take at least 30 s of slots', () => {
    const o = { ...DEFAULT_DEMO_OPTIONS, requests: 150 };
    // 300 slots of (1000 + L) / 10 ms, on the local runtime's margin, plus the answer and the slack.
    expect(demoWaitMs(o)).toBeGreaterThanOrEqual(300 * ((1000 + o.latenessToleranceMs) / 10) + o.callbackDelayMs);
  });

  test('retries and vendor pauses make it longer', () => {
    const base = { ...DEFAULT_DEMO_OPTIONS, requests: 150 };
    const faulty = { ...base, vendorErrorRate: 0.2, vendor429Rate: 0.2 };
    // 60 more calls and 30 one-second pauses.
    expect(demoWaitMs(faulty) - demoWaitMs(base)).toBeGreaterThanOrEqual(60 * ((1000 + base.latenessToleranceMs) / 10) + 30 * 1000);
  });

  test('it covers the callback timeout (up to 5 minutes), so a request a defect leaves waiting ends in a classified timeout', () => {
    const tiny = { ...DEFAULT_DEMO_OPTIONS, requests: 2, callbackTimeoutMs: 120_000 };
    expect(demoWaitMs(tiny)).toBeGreaterThan(120_000);
    expect(demoWaitMs({ ...tiny, callbackTimeoutMs: 3_600_000 })).toBeLessThan(6 * 60_000);
  });
});

describe('the demo on the local runtime', () => {
  // Issue 11: a request still running when the demo stopped waiting was counted as lost.
  test('requests still open when the demo stops waiting are stillRunning, with what can end them; none is lost', async () => {
    const r = await runDemo({
      ...DEFAULT_DEMO_OPTIONS,
      requests: 6,
      // Stop waiting at once: every request is still in the queue or on its way to the vendor.
      waitMs: 1,
      progress: false,
      chartPath: path.join(os.tmpdir(), `demo-accounting-${process.pid}.svg`),
    });
    expect(r.succeeded + r.failed + r.timedOut + r.stillRunning + r.lost).toBe(r.requests);
    expect(r.lost).toBe(0);
    expect(r.stillRunning).toBeGreaterThan(0);
    const evidence = r.stillRunningBy.message + r.stillRunningBy.deadLetter + r.stillRunningBy.execution + r.stillRunningBy.correlation;
    expect(evidence).toBeGreaterThanOrEqual(r.stillRunning);
    expect(r.unexplainedTimeouts).toBe(0);
  }, 180_000);
});
