/**
 * `keys-100-hot90` (local/bench-keys.ts) over several seeds: one JSON line per seed with the row's
 * figures that vary most from one seed to the next (KeySlotsWasted, the hot key's utilization,
 * quiet p99, SQS and DynamoDB requests per call), so that a change is judged on more than the
 * benchmark's one seed (15).
 *
 *   npx ts-node --transpile-only --project local/tsconfig.json local/bench-keys-seeds.ts 15,16,17,18,19,20,21,22,23,24
 */
import { runDispatchModel } from './bench-dispatch-model';
import { KEYS_100_HOT90, keyLimitsOf, keysDetails, keysRequests, perKeyEnv } from './bench-keys';
import { LATENCY_MODEL, pacingKnobs } from './bench-model';

async function main(seeds: number[]): Promise<void> {
  for (const seed of seeds) {
    const load = { ...KEYS_100_HOT90, seed };
    const run = await runDispatchModel({
      rps: load.contractRps,
      requests: keysRequests(load),
      keyLimits: keyLimitsOf(load),
      dispatcherEnv: perKeyEnv(load),
      model: LATENCY_MODEL,
      knobs: pacingKnobs(LATENCY_MODEL),
      seed,
    });
    const d = keysDetails(run, load, null);
    console.log(JSON.stringify({
      seed,
      keySlotsWasted: d.KeySlotsWasted,
      keySlotsWastedPctOfCalls: d.keySlotsWastedPctOfCalls,
      hotKeyUtilization: d.hotKeyUtilization,
      quietP99AddedLatencyMs: d.quietP99AddedLatencyMs,
      sqsRequestsPerCall: d.sqsRequestsPerCall,
      dynamodbRequestsPerCall: d.dynamodbRequestsPerCall,
      keyViolations: d.keyViolations,
      contractViolations: d.contractViolations,
    }));
  }
}

main((process.argv[2] ?? '15').split(',').map(Number)).catch((error) => {
  console.error(error);
  process.exit(1);
});
