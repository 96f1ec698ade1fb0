/**
 * The documented defaults say what the code derives (issue 11, finding 13): the `@default` texts
 * that users read in API.md and their IDE, and the README's description of shipped features.
 * Each test checks the code's figure and the sentence that states it, so neither drifts alone.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Duration, Stack } from 'aws-cdk-lib';
import { AsyncExternalApiOrchestrator, deriveRateSettings, PacingPoint, ThrottledProxy } from '../src';
import { testApp } from './util';
import { DEFAULT_NORMAL_RESERVATION_HORIZON_MS } from '../src/rate-controlled-queue-consumer/high-priority-queue';
import { DEFAULT_PRIORITY_AGING_MS } from '../src/shared/request-priority';

const ROOT = path.join(__dirname, '..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

/** The doc comment right above `readonly <prop>?:` in a source file. */
function docOf(file: string, prop: string): string {
  const source = read(file);
  const at = source.indexOf(`readonly ${prop}?:`);
  expect(at).toBeGreaterThan(0);
  const start = source.lastIndexOf('/**', at);
  return source.slice(start, at).replace(/\n\s*\* ?/g, ' ');
}

function orchestratorBurst(requestsPerSecond: number, pacingPoint?: PacingPoint): number {
  const stack = new Stack(testApp(), 'Docs');
  return new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond,
    callbackTimeout: Duration.minutes(5),
    pacingPoint,
  }).proxy.throttlingBurstLimit;
}

test('batchSize @default: the contract rounded up, at least 1, at most 10000 (not "between 1 and 10")', () => {
  for (const [rps, batch] of [[0.5, 1], [7.2, 8], [100, 100], [20_000, 10_000]]) {
    expect(deriveRateSettings(rps).batchSize).toBe(batch);
  }
  for (const file of ['src/orchestrator/async-external-api-orchestrator.ts', 'src/rate-controlled-queue-consumer/rate-controlled-queue-consumer.ts']) {
    const doc = docOf(file, 'batchSize');
    expect(doc).toMatch(/@default - the contract rounded up, at least 1 and at most 10000/);
    expect(doc).not.toMatch(/between 1 and 10\b/);
  }
});

test('throttlingBurstLimit @default: derived from the pacing in an orchestrator, a quarter of the contract alone', () => {
  // VENDOR_CALL (the orchestrator's default), L = 30 ms: max(2, 1 + ceil(R x 0.13)).
  expect(orchestratorBurst(10)).toBe(3);
  expect(orchestratorBurst(100)).toBe(14);
  // DISPATCH, and a proxy used alone: max(2, ceil(R / 4)).
  expect(orchestratorBurst(100, PacingPoint.DISPATCH)).toBe(25);
  const alone = new ThrottledProxy(new Stack(testApp(), 'Alone'), 'Proxy', { vendorUrl: 'https://vendor.example.com/v1/jobs', requestsPerSecond: 100 });
  expect(alone.throttlingBurstLimit).toBe(25);

  const doc = docOf('src/throttled-proxy/throttled-proxy.ts', 'throttlingBurstLimit');
  expect(doc).toContain('max(2, 1 + ceil(R x (L + 100 ms)))');
  expect(doc).toContain('3 at 10 RPS, 14 at 100 RPS');
  expect(doc).toContain('max(2, ceil(R / 4))');
  expect(doc).toMatch(/@default - `max\(2, 1 \+ ceil\(R x \(L \+ 100 ms\)\)\)` in an orchestrator with `PacingPoint.VENDOR_CALL`; otherwise a quarter of the contract, at least 2/);
});

test('the README and the synth demo describe dynamic delay and the Scheduler mode as shipped, not planned', () => {
  const readme = read('README.md');
  const step4 = readme.slice(readme.indexOf('\n4. '), readme.indexOf('\n5. '));
  expect(step4).toContain('consumer: { dynamicDelay: {} }');
  expect(step4).toContain('ConsumerTrigger.schedule(');
  // No line calls either feature planned (the demo's timeout cause `planned` is another matter).
  expect(readme.split('\n').filter((line) => /\bplanned\b/.test(line) && /dynamic delay|AppConfig|Scheduler/i.test(line))).toEqual([]);
  const synthDemo = read('examples/demo.ts');
  expect(synthDemo).not.toMatch(/come with the rate-control work|is the next step/);
  expect(readme).toContain('## Upgrade notes');
});

test('README "Priorities": the slots held ahead of a high request (500 ms past the lead with the high-priority queue) and the aging bound (60 s) are what the code derives', () => {
  // With a high-priority queue, request-queue batches reserve at most lead + this far ahead.
  expect(DEFAULT_NORMAL_RESERVATION_HORIZON_MS).toBe(500);
  expect(DEFAULT_PRIORITY_AGING_MS).toBe(30_000);
  const readme = read('README.md');
  const start = readme.indexOf('### Priorities');
  const section = readme.slice(start, readme.indexOf('\n### ', start + 1));
  expect(section).toContain('`poll + lead + H + its own key\'s pacing`');
  expect(section).toContain('with `H` at most 500 ms plus one slot interval while the\n  high queue exists');
  expect(section).toContain('reserve slots for request-queue batches in rounds at most `lead + 500 ms`\nahead');
  expect(section).toContain('`2 x priorityAging + W_high` (60 s + `W_high` by default)');
});
