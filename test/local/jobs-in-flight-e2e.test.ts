/**
 * Jobs in flight on the local runtime (issue 14, item 1): the synthesized stack, the real handlers
 * and a strict vendor that refuses job N + 1 (local/vendor-jobs-in-flight.ts). The figures come
 * from the vendor simulator, never from the library's own counters; the handlers' INFO lines show
 * which way the waiting requests went (the waiting queue and its wakes, not the delayed-copy recheck).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DEFAULT_DEMO_OPTIONS, runDemo } from '../../local/demo';

test('GIVEN a backlog against maxJobsInFlight 2 with slow callbacks WHEN it drains THEN the vendor never sees a third job, nothing is lost, and freed places wake the waiting requests', async () => {
  const logFile = path.join(os.tmpdir(), `jobs-in-flight-e2e-${process.pid}.log`);
  const saved = { log: process.env.DEMO_LOG, level: process.env.DEMO_LOG_LEVEL };
  process.env.DEMO_LOG = logFile;
  process.env.DEMO_LOG_LEVEL = 'INFO';
  let r: Awaited<ReturnType<typeof runDemo>>;
  try {
    r = await runDemo({
      ...DEFAULT_DEMO_OPTIONS,
      // Twice the limit: the first batch takes both places and the other two wait in the waiting
      // queue until freed places wake them (two rounds of jobs; 6 requests took three).
      requests: 4,
      maxJobsInFlight: 2,
      // Slow callbacks: each job holds its place for 1.5 s at the vendor (and until its callback is processed).
      callbackDelayMs: 1500,
      callbackTimeoutMs: 120_000,
      progress: false,
      chartPath: path.join(os.tmpdir(), `jobs-in-flight-e2e-${process.pid}.svg`),
    });
  } finally {
    for (const [name, value] of [['DEMO_LOG', saved.log], ['DEMO_LOG_LEVEL', saved.level]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
  expect(r).toMatchObject({
    succeeded: 4,
    lost: 0,
    duplicateVendorCalls: 0,
    violationsByLimit: { rate: 0, inFlight: 0 },
    vendorViolations: 0,
  });
  // The limit was reached (a backlog of 4 against 2), and never exceeded.
  expect(r.maxJobsInFlightObserved).toBe(2);
  // Requests without a place waited in the waiting queue and were woken by freed places.
  const log = fs.readFileSync(logFile, 'utf8');
  fs.rmSync(logFile, { force: true });
  expect(log).toContain('requests without a place moved to the waiting queue');
  expect(log).toContain('waiting requests woken for freed places');
  expect(log).not.toContain('rechecks as a delayed copy');
  expect(r.handOvers.count).toBeGreaterThan(0);
}, 240_000);
