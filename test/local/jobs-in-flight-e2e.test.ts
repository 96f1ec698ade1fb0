/**
 * Jobs in flight on the local runtime (issue 14, item 1): the synthesized stack, the real handlers
 * and a strict vendor that refuses job N + 1 (local/vendor-jobs-in-flight.ts). The figures come
 * from the vendor simulator, never from the library's own counters.
 */
import * as os from 'os';
import * as path from 'path';
import { DEFAULT_DEMO_OPTIONS, runDemo } from '../../local/demo';

test('GIVEN a backlog against maxJobsInFlight 2 with slow callbacks WHEN it drains THEN the vendor never sees a third job and nothing is lost', async () => {
  const r = await runDemo({
    ...DEFAULT_DEMO_OPTIONS,
    requests: 6,
    maxJobsInFlight: 2,
    // Slow callbacks: each job holds its place for 1.5 s at the vendor (and until its callback is processed).
    callbackDelayMs: 1500,
    callbackTimeoutMs: 120_000,
    progress: false,
    chartPath: path.join(os.tmpdir(), `jobs-in-flight-e2e-${process.pid}.svg`),
  });
  expect(r).toMatchObject({
    succeeded: 6,
    lost: 0,
    duplicateVendorCalls: 0,
    violationsByLimit: { rate: 0, inFlight: 0 },
    vendorViolations: 0,
  });
  // The limit was reached (a backlog of 6 against 2), and never exceeded.
  expect(r.maxJobsInFlightObserved).toBe(2);
}, 240_000);
