/**
 * End-to-end vendor credentials on the local runtime: the synthesized template (its credential
 * states, the proxy's credential function, its bundled handler) against the local Secrets Manager,
 * whose GetSecretValue answers come from the real SDK. A submission and a paced fetch read the
 * credential (dispatch and vendor-call workflows); a secret of the wrong shape ends the waiting
 * workflow at once instead of at its timeout.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { LocalRuntime } from '../../local/runtime';
import { VendorSimulator } from '../../local/vendor-simulator';
import { AsyncExternalApiOrchestrator, VendorCredentials } from '../../src';
import { logicalIdOf } from '../util';

jest.setTimeout(120_000);

interface Deployed {
  readonly outdir: string;
  readonly stackName: string;
  readonly secretLogicalId: string;
}

/** A stack whose main workflow submits a job, waits for its callback, then fetches its result. */
function deploy(jsonField: string | undefined): Deployed {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-credentials-'));
  const app = new App({ outdir });
  const stack = new Stack(app, `Credentials${jsonField ? 'Json' : 'Text'}`);
  const secret = new secretsmanager.Secret(stack, 'VendorSecret');
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.seconds(60),
    proxy: { credentials: VendorCredentials.fromSecretHeader({ secret, headerName: 'x-api-key', jsonField }) },
  });
  const submit = orchestrator.submitJobTask(stack, 'SubmitJob', {
    payload: sfn.TaskInput.fromJsonPathAt('$.order'),
    requestId: sfn.JsonPath.stringAt('$.orderId'),
    resultPath: '$.vendor',
  });
  const fetch = orchestrator.callVendorTask(stack, 'FetchResult', {
    path: sfn.JsonPath.format('/{}/result', sfn.JsonPath.stringAt('$.vendor.jobId')),
    requestId: sfn.JsonPath.format('{}-result', sfn.JsonPath.stringAt('$.orderId')),
    resultPath: '$.fetched',
  });
  const main = new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(submit.next(fetch)) });
  orchestrator.registerWorkflow(main);
  app.synth();
  return { outdir, stackName: stack.stackName, secretLogicalId: logicalIdOf(stack, secret) };
}

/** The runtime running now, and the stack it runs: the tests of one stack share it. */
let running: { readonly deployed: Deployed; readonly runtime: LocalRuntime } | undefined;
let vendor: VendorSimulator | undefined;
/** The stack of the JSON secret field, synthesized once for the two tests that run it. */
let jsonFieldStack: Deployed | undefined;
const jsonField = () => (jsonFieldStack ??= deploy('apiKey'));

afterEach(async () => {
  await vendor?.stop();
  vendor = undefined;
});

afterAll(async () => {
  await running?.runtime.stop();
});

/**
 * The runtime of `deployed`, started once: the two tests of the JSON field's stack run on one
 * runtime (a start is seconds of a loaded 2-core machine's CPU), each with the secret value it
 * needs, set as an operator's PutSecretValue would.
 */
async function runtimeOf(deployed: Deployed): Promise<LocalRuntime> {
  if (running?.deployed !== deployed) {
    await running?.runtime.stop();
    running = undefined;
    const runtime = await LocalRuntime.start({ assemblyDir: deployed.outdir, stackName: deployed.stackName, logFile: process.env.E2E_LOG });
    running = { deployed, runtime };
  }
  return running.runtime;
}

let orders = 0;
/** Sets the secret to `secretValue` and runs one order to its end (its own order id: the runtime may be shared). */
async function runOrder(deployed: Deployed, secretValue: string) {
  const rt = await runtimeOf(deployed);
  rt.setSecret(deployed.secretLogicalId, secretValue);
  vendor = new VendorSimulator({ requestsPerSecond: 10, latencyMs: 20, callbackDelayMs: 100, rewriteUrl: (url) => rt.rewriteUrl(url), seed: 5 });
  rt.mapHost('vendor.example.com', await vendor.start());
  const mainArn = rt.template.ofType('AWS::StepFunctions::StateMachine').find((s) => /^Main/.test(s.logicalId))!;
  const started = Date.now();
  const orderId = `o-${++orders}`;
  const { executionArn } = await rt.sfn.startExecution(rt.template.arnOf(mainArn.logicalId), JSON.stringify({ orderId, order: { orderId } }));
  while (Date.now() - started < 60_000 && rt.sfn.describeExecution(executionArn).status === 'RUNNING') {
    await new Promise((r) => setTimeout(r, 100));
  }
  return { runtime: rt, result: rt.sfn.describeExecution(executionArn), elapsedMs: Date.now() - started };
}

test('a plain-text secret: the submission and the fetch read it and reach the vendor', async () => {
  const { result } = await runOrder(deploy(undefined), 'api-key-123');

  expect([result.status, result.error, result.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
  expect(vendor!.stats().accepted).toBe(1);
  expect(vendor!.stats().resultFetches).toBe(1);
});

test('a JSON secret field: the proxy\'s credential function reads it for the submission and the fetch', async () => {
  const { result } = await runOrder(jsonField(), JSON.stringify({ apiKey: 'api-key-123' }));

  expect([result.status, result.error, result.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
  expect(vendor!.stats().accepted).toBe(1);
  expect(vendor!.stats().resultFetches).toBe(1);
});

test('plain text where a JSON secret is expected: the request is parked as VendorCredentialUnusable and the waiting workflow fails at once', async () => {
  const { runtime, result, elapsedMs } = await runOrder(jsonField(), 'api-key-123');

  expect([result.status, result.error]).toEqual(['FAILED', 'VendorRequestFailed']);
  // The callback timeout is 60 s: the failure came from the dispatch workflow, not the timeout.
  expect(elapsedMs).toBeLessThan(20_000);
  expect(vendor!.stats().accepted).toBe(0);
  const dlq = runtime.template.ofType('AWS::SQS::Queue').find((q) => /RequestDeadLetterQueue/.test(q.logicalId))!;
  const parked = await runtime.peek(dlq.logicalId);
  expect(parked.map((m) => m.attributes.reason)).toEqual(['VendorCredentialUnusable']);
  expect(JSON.stringify(parked)).not.toContain('api-key-123');
});
