/**
 * End-to-end on the local runtime: a named limit inside the contract (issue 14, item 3).
 *
 * The example app (submit -> callback -> paced result fetch) under a 10 RPS contract with a
 * `results` limit of 2 RPS on GETs; the simulated vendor enforces both as a strict vendor (429
 * beyond either) and counts what it sees. The submissions fill the contract; the result fetches
 * keep to their limit. V = 0 on both, measured by the simulator.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { buildExampleApp, ExampleStack } from '../../examples/app';
import { proxyAccessLog } from '../../local/access-log-audit';
import { FaultInjector } from '../../local/faults';
import { LOCAL_PACING } from '../../local/local-pacing';
import { LocalRuntime } from '../../local/runtime';
import { maxInAnyWindow, VendorSimulator } from '../../local/vendor-simulator';
import { VendorContract, VendorLimit } from '../../src';
import { auditAccessLog, parseAccessLogExport } from '../../src/throttled-proxy/access-log-audit-report';

jest.setTimeout(120_000);

const ORDERS = 8;
const RESULTS = VendorLimit.of({ name: 'results', requestsPerSecond: 2, methods: ['GET'] });
let runtime: LocalRuntime;
let stack: ExampleStack;
let vendor: VendorSimulator;
const faults = new FaultInjector();

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'named-limits-e2e-'));
  const built = buildExampleApp({
    contract: VendorContract.of({ requestsPerSecond: 10, limits: [RESULTS] }),
    callbackTimeout: Duration.seconds(40),
    // The demo's pacing knobs for 2 shared cores (local/local-pacing.ts: the local path spreads by
    // up to 20-35 ms). The limit binds at saturation, so every fetch is exactly one limit interval
    // from the last: with AWS's L = 30 ms, a clean-clone CI run (full npm test beside it) saw one
    // window of three fetches (1 violation; the contract's 0), the local spread beyond 30 ms.
    lead: Duration.millis(LOCAL_PACING.leadMs),
    fireTolerance: Duration.millis(LOCAL_PACING.fireToleranceMs),
    latenessTolerance: Duration.millis(LOCAL_PACING.latenessToleranceMs),
  }, outdir);
  built.app.synth();
  stack = built.stack;
  runtime = await LocalRuntime.start({ assemblyDir: outdir, stackName: stack.stackName, logFile: process.env.E2E_LOG, faults });
  vendor = new VendorSimulator({
    requestsPerSecond: 10,
    limits: [RESULTS._spec()],
    limitBasePath: '/v1/jobs',
    latencyMs: 20,
    callbackDelayMs: 100,
    rewriteUrl: (url) => runtime.rewriteUrl(url),
    seed: 14,
  });
  runtime.mapHost('vendor.example.com', await vendor.start());
});

afterAll(async () => {
  await vendor?.stop();
  await runtime?.stop();
});

/** Starts `n` orders at once and waits until they end (or 60 s); their final descriptions. */
async function runOrders(prefix: string, n: number) {
  const arns: string[] = [];
  for (let i = 0; i < n; i++) {
    const orderId = `${prefix}-${i}`;
    const input = JSON.stringify({ orderId, order: { orderId, quantity: i } });
    const { executionArn } = await runtime.sfn.startExecution(runtime.stateMachineArn(stack.mainWorkflow), input);
    arns.push(executionArn);
  }
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && arns.some((arn) => runtime.sfn.describeExecution(arn).status === 'RUNNING')) {
    await new Promise((r) => setTimeout(r, 100));
  }
  return arns.map((arn) => runtime.sfn.describeExecution(arn));
}

test('result fetches at 2 RPS inside a 10 RPS contract: every order ends with its result, no window over the contract or the limit (simulator)', async () => {
  // WHEN orders arrive at once
  const results = await runOrders('limit-order', ORDERS);

  // THEN every order succeeded, each vendor call once, and the vendor saw no call beyond either limit
  expect(results.map((r) => r.status)).toEqual(Array(ORDERS).fill('SUCCEEDED'));
  const stats = vendor.stats();
  expect(stats.accepted).toBe(ORDERS);
  expect(stats.resultFetches).toBe(ORDERS);
  expect(stats.duplicateVendorCalls).toBe(0);
  expect(stats.violations).toBe(0);
  expect(maxInAnyWindow(vendor.arrivals())).toBeLessThanOrEqual(10);
  expect(stats.limitViolations).toEqual({ results: 0 });
  expect(stats.limitMaxInAnyWindow.results).toBeLessThanOrEqual(2);
  // The limit was in use: the fetches were paced at it, not only spread by chance.
  expect(stats.limitMaxInAnyWindow.results).toBe(2);
  // AND the audit per named limit from the proxy's access log (README, "Audit"; $context.path)
  // finds every fetch and no closed window over either, on API Gateway's clock.
  const audit = auditAccessLog(parseAccessLogExport((await proxyAccessLog(runtime)).join('\n')), 1000, 10, { namedLimits: [RESULTS._spec()] });
  expect(audit).toMatchObject({ forwarded: 2 * ORDERS, violations: 0 });
  expect(audit.byLimit.results).toMatchObject({ forwarded: ORDERS, limit: 2, violations: 0, busiest: { count: 2 } });
});

test('vendor callers crashed right after claiming their slots (before firing): the retried calls reserve fresh slots within the limit; no window over either, nothing lost or sent twice', async () => {
  // GIVEN the vendor callers' busy execution environments killed right after the 1st, 3rd and 5th
  // slot claim (PutItem): the retried invocation finds its slot claimed and reserves a fresh one,
  // against the contract and the call's limit in one write (named-limit-schedule.ts)
  const callerId = stack.getLogicalId(stack.orchestrator.dispatch.vendorCaller!.node.defaultChild as any);
  faults.configure({ crash: [{ functionName: callerId, service: 'dynamodb', action: 'PutItem', afterCalls: 2, times: 3 }] });
  const before = vendor.stats();

  // WHEN 6 orders run
  const results = await runOrders('limit-crash', 6);
  const crashes = faults.stats().crashes[callerId] ?? 0;
  faults.reset();

  // THEN the crashes happened, and the vendor saw every call once, within both limits
  expect(crashes).toBeGreaterThanOrEqual(1);
  expect(results.map((r) => r.status)).toEqual(Array(6).fill('SUCCEEDED'));
  const stats = vendor.stats();
  expect(stats.accepted - before.accepted).toBe(6);
  expect(stats.duplicateVendorCalls).toBe(0);
  expect(stats.violations).toBe(0);
  expect(stats.limitViolations).toEqual({ results: 0 });
  expect(stats.limitMaxInAnyWindow.results).toBeLessThanOrEqual(2);
});
