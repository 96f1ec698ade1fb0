/**
 * `npm run demo:synth`: synthesizes the example app and prints what it would deploy, building block
 * by building block, with the settings derived from the contract.
 *
 * Flags: --rps N (the contract, default 10), --callback-timeout-ms N (default 15000).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { buildExampleApp } from './app';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`--${name} must be a positive number (given '${process.argv[i + 1]}')`);
  }
  return value;
}

const rps = flag('rps', 10);
const callbackTimeoutMs = flag('callback-timeout-ms', 15000);
const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-async-external-api-demo-'));
const { app, stack } = buildExampleApp({ requestsPerSecond: rps, callbackTimeout: Duration.millis(callbackTimeoutMs) }, outdir);
const assembly = app.synth();
const template = assembly.getStackByName(stack.stackName).template as { Resources: Record<string, { Type: string; Properties?: any }> };

const byType = new Map<string, number>();
for (const resource of Object.values(template.Resources)) {
  byType.set(resource.Type, (byType.get(resource.Type) ?? 0) + 1);
}
const o = stack.orchestrator;
const consumerFn = Object.values(template.Resources).find((r) => r.Type === 'AWS::Lambda::Function' && r.Properties?.Description?.startsWith('Starts one dispatch workflow'));

console.log(`Synthesized ${stack.stackName} (${Object.keys(template.Resources).length} resources) into ${outdir}\n`);
console.log('What it deploys, following the pattern:');
console.log(`  1. Main workflow (Standard): SubmitJob waits for the callback, at most ${callbackTimeoutMs} ms (States.Timeout)`);
console.log(`  2. Request queue + DLQ (encrypted, TLS only); backlog alarm above ${o.consumer.backlogThresholdMessages} messages`);
console.log(`  3. Paced consumer: batch ${o.consumer.batchSize}, max concurrency ${o.consumer.maxConcurrency}, timeout ${consumerFn?.Properties?.Timeout} s; at most ${rps >= 1 ? Math.floor(rps) : 1} starts in any 1-second window`);
// Both are options of the consumer (README step 4): say which this synthesis uses.
const delay = o.consumer.dynamicDelay;
console.log(`  4. Dynamic delay: ${delay ? `AppConfig {"extraDelayMs": N}, read every ${delay.pollInterval.toSeconds()} s` : 'off (consumer.dynamicDelay turns it on)'}; `
  + `trigger: ${o.consumer.schedule ? `EventBridge Scheduler, at most ${o.consumer.maxMessagesPerTick} messages a tick` : 'SQS event source mapping (ConsumerTrigger.schedule() for contracts below about 1 RPS)'}`);
console.log(`  5. Throttled proxy (REST, IAM only): rate ${o.proxy.throttlingRateLimit}/s, burst ${o.proxy.throttlingBurstLimit}`);
console.log('  6. Dispatch workflow (Express): claim -> call vendor -> store job id; retries re-enqueue with full jitter; give-up -> DLQ + SendTaskFailure');
console.log('  7. Correlation table (DynamoDB, TTL, index on job id)');
console.log('  8-9. Webhook (REST): POST /callback -> mapping template -> callback queue, 202 at once');
console.log('  10. Callback processor: SendTaskSuccess / SendTaskFailure, callback DLQ with alarm\n');
console.log('Resources by type:');
for (const [type, count] of [...byType.entries()].sort()) {
  console.log(`  ${String(count).padStart(3)}  ${type}`);
}
console.log('\nRun this stack end to end on the local runtime: npm run demo (see the README, "Run it locally").');
