/**
 * Two orchestrators sharing one contract (issue 14, item 8) on the local runtime: one stack with a
 * VendorContractState and two orchestrators given it, the real handlers, and one strict vendor
 * simulator holding the contract (its rate and its jobs in flight). The figures come from the
 * simulator, never from the library's own counters. With a state each (no contractState), the
 * same run gave the vendor 4 calls in a 1-second window against a contract of 2 (2 violations) and
 * 8 calls for 6 requests (429s, retried); shared: at most 2 in any window, 6 calls.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { LOCAL_PACING, vendorCallerWarmPool, yieldToDataPlane } from '../../local/local-pacing';
import { maxInAnyWindow, violations } from '../../local/report';
import { LocalRuntime } from '../../local/runtime';
import { VendorSimulatorHost } from '../../local/vendor-host';
import { AsyncExternalApiOrchestrator, VendorContract, VendorContractState } from '../../src';

const RPS = 2;
const MAX_JOBS_IN_FLIGHT = 3;
const PER_ORCHESTRATOR = 3;

test('GIVEN two orchestrators sharing one contract state WHEN both get a backlog THEN the vendor sees no window over the rate and never more jobs in flight than the contract, nothing lost', async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'shared-contract-e2e-'));
  const app = new App({ outdir });
  const stack = new Stack(app, 'SharedContract');
  const contract = VendorContract.of({ requestsPerSecond: RPS, maxJobsInFlight: MAX_JOBS_IN_FLIGHT });
  const contractState = new VendorContractState(stack, 'VendorState', { contract });
  const mains = ['Orders', 'Invoices'].map((id) => {
    const orchestrator = new AsyncExternalApiOrchestrator(stack, id, {
      vendorUrl: 'https://vendor.example.com/v1/jobs',
      contract,
      contractState,
      callbackTimeout: Duration.seconds(60),
      webhook: { statusPath: '$.status', failureStatusValues: ['FAILED'] },
      consumer: {
        lead: Duration.millis(LOCAL_PACING.leadMs),
        fireTolerance: Duration.millis(LOCAL_PACING.fireToleranceMs),
        // Two orchestrators' threads on 2 shared cores spread the caller -> proxy -> vendor latency
        // more than one's (the local L of 40 ms gave a window of 3 in 1 run of 9 under a load
        // average of 11): L is the deploy's stated spread, so this run states a larger one.
        latenessTolerance: Duration.millis(150),
      },
    });
    const submit = orchestrator.submitJobTask(stack, `${id}Submit`, {
      payload: sfn.TaskInput.fromJsonPathAt('$.order'),
      requestId: sfn.JsonPath.stringAt('$.orderId'),
    });
    const main = new sfn.StateMachine(stack, `${id}Main`, { definitionBody: sfn.DefinitionBody.fromChainable(submit) });
    orchestrator.registerWorkflow(main);
    return { orchestrator, main };
  });
  app.synth();

  const vendor = await VendorSimulatorHost.start({
    requestsPerSecond: RPS, latencyMs: 100, callbackDelayMs: 300, seed: 7, maxJobsInFlight: MAX_JOBS_IN_FLIGHT,
  });
  let runtime: LocalRuntime | undefined;
  try {
    runtime = await LocalRuntime.start({
      assemblyDir: outdir, removeAssemblyDirOnStop: true, stackName: stack.stackName, hostMap: { 'vendor.example.com': vendor.base },
    });
    vendor.mapApis(runtime.apiGateway.ports);
    // A few warm callers each (not the demo's full pool: two orchestrators' pools on 2 cores would
    // take longer to start than the run lasts).
    for (const { orchestrator } of mains) {
      await runtime.prewarm(orchestrator.dispatch.vendorCaller!, Math.min(4, vendorCallerWarmPool(RPS, LOCAL_PACING.leadMs)));
    }
    yieldToDataPlane();

    // Distinct request ids (the simulator counts a repeated id as a duplicate call; the same id in
    // two orchestrators is tested at the handlers, shared-contract-state.test.ts).
    const executions: string[] = [];
    for (let i = 0; i < PER_ORCHESTRATOR; i++) {
      for (const [n, { main }] of mains.entries()) {
        const input = JSON.stringify({ orderId: `order-${n}-${i}`, order: { orderId: `order-${n}-${i}` } });
        executions.push((await runtime.sfn.startExecution(runtime.stateMachineArn(main), input)).executionArn);
      }
    }
    const deadline = Date.now() + 40_000;
    const running = () => executions.filter((arn) => runtime!.sfn.describeExecution(arn).status === 'RUNNING').length;
    while (running() > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }

    const statuses = executions.map((arn) => runtime!.sfn.describeExecution(arn).status);
    const stats = await vendor.stats();
    const arrivals = await vendor.arrivals();
    console.log(JSON.stringify({
      maxInAnyWindow: maxInAnyWindow(arrivals),
      maxJobsInFlightObserved: stats.jobsInFlight.maxObserved,
      vendorCalls: arrivals.length,
      spanMs: Math.max(...arrivals) - Math.min(...arrivals),
    }));
    // One contract for both: no 1-second window over RPS, never more than N jobs at the vendor (a
    // state each: about twice the rate, and the strict vendor's 429s and the retries they cause).
    expect(violations(arrivals, RPS)).toBe(0);
    expect(maxInAnyWindow(arrivals)).toBeLessThanOrEqual(RPS);
    expect(stats.jobsInFlight.violations).toBe(0);
    expect(stats.jobsInFlight.maxObserved).toBeLessThanOrEqual(MAX_JOBS_IN_FLIGHT);
    expect(stats.rejected429ByContract).toBe(0);
    expect(statuses.filter((s) => s === 'SUCCEEDED')).toHaveLength(2 * PER_ORCHESTRATOR);
    expect(arrivals).toHaveLength(2 * PER_ORCHESTRATOR);
    expect(stats.duplicateVendorCalls).toBe(0);
  } finally {
    await vendor.stop();
    await runtime?.stop();
  }
}, 120_000);
