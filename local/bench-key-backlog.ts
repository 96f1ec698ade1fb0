/**
 * How much of a key's backlog `metricTopKeysByBacklog()` sees (issue 15, item 5): the row
 * `keys-100-hot90` (bench-keys.ts) on the real dispatcher in virtual time, comparing for the hot key
 *
 * - the metric's figure: the sum of its `KeySetAsideDelay` (the time the dispatcher set each of its
 *   requests aside for, as the EMF `keyTotals` the BacklogByKey rule sums) over the run's span, i.e.
 *   its average number of requests set aside (Little's law, orchestrator/key-insights.ts);
 * - its whole backlog: the average number of its requests enqueued and not yet at the vendor
 *   (set aside, visible in the queue, or held by a dispatcher), from each request's enqueue and
 *   arrival times (or the run's end).
 *
 *   npx ts-node --transpile-only --project local/tsconfig.json local/bench-key-backlog.ts
 */
import { runDispatchModel } from './bench-dispatch-model';
import { HOT_KEY, keyLimitsOf, KEYS_100_HOT90, keysRequests, perKeyEnv } from './bench-keys';
import { LATENCY_MODEL, pacingKnobs, round } from './bench-model';

async function main(): Promise<void> {
  const load = KEYS_100_HOT90;
  const requests = keysRequests(load);
  const run = await runDispatchModel({
    rps: load.contractRps,
    requests,
    keyLimits: keyLimitsOf(load),
    dispatcherEnv: perKeyEnv(load),
    model: LATENCY_MODEL,
    knobs: pacingKnobs(LATENCY_MODEL),
    seed: load.seed,
  });
  const spanMs = run.runEndMs - run.runStartMs;
  const arrived = new Map(run.calls.map((call) => [call.requestId, call.arrivedAt]));
  let waitingMs = 0;
  let hotRequests = 0;
  requests.forEach((request, n) => {
    if (request.key !== HOT_KEY) return;
    hotRequests++;
    const enqueuedAt = run.runStartMs + request.atMs;
    waitingMs += (arrived.get(`req-${n}`) ?? run.runEndMs) - enqueuedAt;
  });
  const hot = run.metricsByKey[HOT_KEY] ?? {};
  const setAsideMs = hot.KeySetAsideDelay ?? 0;
  const quiet = Object.entries(run.metricsByKey).filter(([key]) => key !== HOT_KEY).map(([, totals]) => totals);
  const figures = {
    row: 'keys-100-hot90',
    spanS: round(spanMs / 1000, 1),
    hotRequests,
    hotDelivered: run.calls.filter((call) => call.key === HOT_KEY).length,
    hotSetAsides: hot.KeySetAside ?? 0,
    metricAverageSetAside: round(setAsideMs / spanMs, 1),
    wholeAverageBacklog: round(waitingMs / spanMs, 1),
    share: round(setAsideMs / waitingMs, 3),
    quietKeysWithSetAsideTime: quiet.filter((totals) => (totals.KeySetAsideDelay ?? 0) > 0).length,
    quietKeysMaxAverageSetAside: round(Math.max(0, ...quiet.map((totals) => (totals.KeySetAsideDelay ?? 0) / spanMs)), 3),
  };
  process.stdout.write(`${JSON.stringify(figures, undefined, 2)}\n`);
}

void main();
