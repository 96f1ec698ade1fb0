/**
 * Keys end to end on the local runtime (issue 15, items 1-2): the synthesized template (keyed
 * tasks, the per-key credential function, the webhook's signing secret per key, their bundled
 * handlers) against the local Secrets Manager serving secrets by name. Two keys with their own
 * secrets both succeed and the vendor sees each call with its own key's credential and signs each
 * callback with its own key's secret; a callback signed with another key's secret is refused; a
 * key without a secret and an invalid key both end their workflow at once (not at the callback
 * timeout), with the documented errors. The run's handler log lines, ranked by the synthesized
 * Contributor Insights key rules (issue 15, item 5), name the keys that sent, waited and got callbacks.
 * acme's submission is high priority (read at run time): it travels through the high-priority
 * request queue and its own event source mapping.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { evaluateInsightRule } from '../../local/aws/contributor-insights';
import { LocalRuntime } from '../../local/runtime';
import { VendorSimulator } from '../../local/vendor-simulator';
import { AsyncExternalApiOrchestrator, Priority, VendorCredentials, WebhookAuthentication, WebhookSignature } from '../../src';
import { keyOfCallbackToken } from '../../src/shared/callback-token-key';
import { flattenCfnString } from '../util';

jest.setTimeout(60_000);

let runtime: LocalRuntime | undefined;
let vendor: VendorSimulator | undefined;
let outdir: string | undefined;

afterAll(async () => {
  await vendor?.stop();
  await runtime?.stop();
  if (outdir) fs.rmSync(outdir, { recursive: true, force: true });
});

/** Each key's webhook signing secret (umbrella's callbacks are signed with acme's: refused). */
const SIGNING: Record<string, string> = { acme: 'acme-signs-its-callbacks-32-bytes', globex: 'globex-signs-its-callbacks-32byte', umbrella: 'umbrella-signs-callbacks-32-bytes' };

test('two keys read their own secrets and sign their own callbacks; another key\'s signature is refused; a key without a secret and an invalid key fail at once', async () => {
  // GIVEN a main workflow that submits a job for its customer, then fetches the result, both keyed
  outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-keys-'));
  const app = new App({ outdir });
  const stack = new Stack(app, 'Keys');
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.seconds(60),
    proxy: { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}', headerName: 'x-api-key' }) },
    webhook: { authentication: WebhookAuthentication.capabilityUrlPerKey(WebhookSignature.github(new secretsmanager.Secret(stack, 'Signing')), 'vendor-webhook/{key}') },
  });
  const key = sfn.JsonPath.stringAt('$.customerId');
  // The priority read at run time: acme's submission goes to the high-priority request queue.
  const submit = orchestrator.submitJobTask(stack, 'SubmitJob', {
    payload: sfn.TaskInput.fromJsonPathAt('$.order'),
    requestId: sfn.JsonPath.stringAt('$.orderId'),
    key,
    resultPath: '$.vendor',
    priority: Priority.fromJsonPath('$.priority'),
  });
  const fetch = orchestrator.callVendorTask(stack, 'FetchResult', {
    path: sfn.JsonPath.format('/{}/result', sfn.JsonPath.stringAt('$.vendor.jobId')),
    requestId: sfn.JsonPath.format('{}-result', sfn.JsonPath.stringAt('$.orderId')),
    key,
    resultPath: '$.fetched',
  });
  const main = new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(submit.next(fetch)) });
  orchestrator.registerWorkflow(main);
  app.synth();

  const rt = await LocalRuntime.start({
    assemblyDir: outdir,
    stackName: stack.stackName,
    // By name, as an operator creates them: no deploy per key.
    secrets: {
      'vendor/acme': 'api-key-acme',
      'vendor/globex': 'api-key-globex',
      'vendor/umbrella': 'api-key-umbrella',
      ...Object.fromEntries(Object.entries(SIGNING).map(([k, v]) => [`vendor-webhook/${k}`, v])),
    },
    // The handlers' lines, for the key rules below.
    logFile: process.env.E2E_LOG ?? path.join(outdir, 'handlers.log'),
  });
  runtime = rt;
  // The vendor signs each callback with the secret of the account the callback URL belongs to
  // (its key, read from the URL as the vendor knows its own accounts); umbrella's with acme's.
  const signerOf = (url: string) => {
    const account = keyOfCallbackToken(url.slice(url.lastIndexOf('/') + 1)) ?? '';
    return SIGNING[account === 'umbrella' ? 'acme' : account];
  };
  vendor = new VendorSimulator({
    requestsPerSecond: 10,
    latencyMs: 20,
    callbackDelayMs: 100,
    rewriteUrl: (url) => rt.rewriteUrl(url),
    seed: 5,
    recordHeader: 'x-api-key',
    callbackSignature: { spec: WebhookSignature.github(secretsmanager.Secret.fromSecretNameV2(new Stack(), 'S', 's'))._spec, secret: signerOf },
  });
  rt.mapHost('vendor.example.com', await vendor.start());
  const mainArn = rt.template.arnOf(rt.template.ofType('AWS::StepFunctions::StateMachine').find((s) => /^Main/.test(s.logicalId))!.logicalId);

  // WHEN five customers order at once
  const started = Date.now();
  const orders = ['acme', 'globex', 'initech', 'two words', 'umbrella'];
  const executions = await Promise.all(orders.map(async (customerId, i) => (await rt.sfn.startExecution(mainArn,
    JSON.stringify({ orderId: `o-${i}`, customerId, priority: customerId === 'acme' ? 'high' : 'normal', order: { orderId: `o-${i}` } }))).executionArn));
  const ended = new Map<string, number>();
  // umbrella's never ends (its callback is refused; the callback timeout is 60 s): wait for the others.
  while (Date.now() - started < 40_000 && ended.size < executions.length - 1) {
    for (const arn of executions) {
      if (!ended.has(arn) && rt.sfn.describeExecution(arn).status !== 'RUNNING') ended.set(arn, Date.now() - started);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const results = executions.map((arn) => rt.sfn.describeExecution(arn));

  // THEN the two keys with a secret succeed, each call carrying its own key's credential
  expect(results.map((r) => [r.status, r.error])).toEqual([
    ['SUCCEEDED', undefined], ['SUCCEEDED', undefined], ['FAILED', 'VendorRequestFailed'], ['FAILED', 'InvalidRequestKey'], ['RUNNING', undefined],
  ]);
  const seen = vendor.seenHeaders();
  expect(seen.filter((s) => s.method === 'POST').map((s) => s.value).sort()).toEqual(['api-key-acme', 'api-key-globex', 'api-key-umbrella']);
  expect(seen.filter((s) => s.method === 'GET').map((s) => s.value).sort()).toEqual(['api-key-acme', 'api-key-globex']);
  // ... the key without a secret and the invalid key failed at once, not at the 60 s timeout
  expect(Math.max(...executions.slice(2, 4).map((arn) => ended.get(arn)!))).toBeLessThan(20_000);
  expect(results[2].cause).toContain('VendorCredentialNotFound');
  expect(results[2].cause).toContain("the secret 'vendor/initech' does not exist");
  // ... the first parked for a redrive once its secret exists, the invalid key not parked at all
  const dlq = rt.template.ofType('AWS::SQS::Queue').find((q) => /RequestDeadLetterQueue/.test(q.logicalId))!;
  const parked = await rt.peek(dlq.logicalId);
  expect(parked.map((m) => [m.attributes.reason, JSON.parse(m.body).key])).toEqual([['VendorCredentialNotFound', 'initech']]);
  // ... umbrella's callback, signed with acme's secret, was refused (parked in the callback DLQ)
  const callbackDlq = rt.template.ofType('AWS::SQS::Queue').find((q) => /CallbackDeadLetterQueue/.test(q.logicalId))!;
  const refused = await rt.peek(callbackDlq.logicalId);
  expect(refused.map((m) => [m.attributes.reason, m.attributes.detail])).toEqual([['CallbackRejected', expect.stringMatching(/^signature: .*does not match/)]]);
  // ... and the vendor saw nothing else: three submissions and two fetches
  expect(seen.length).toBe(5);
  // ... acme's high submission reached the dispatcher through the high-priority queue's own mapping
  // (the synthesized second event source mapping), everything else through the request queue's
  const highQueue = rt.template.ofType('AWS::SQS::Queue').find((q) => /^VendorConsumerHighPriorityRequestQueue/.test(q.logicalId))!;
  const mappings = Object.values(rt.poller.stats());
  const throughHigh = mappings.filter((m) => m.queueArn === rt.template.arnOf(highQueue.logicalId));
  expect(throughHigh.map((m) => m.messages)).toEqual([1]);

  // ... and the key rules, run over the handlers' EMF lines (the runtime stopped: the log is flushed),
  // rank the keys: acme and globex sent 2 requests each (submission, fetch), initech and umbrella 1
  // (the invalid key none); callbacks resolved for acme and globex only (umbrella's was refused).
  await rt.stop();
  runtime = undefined;
  const events = fs.readFileSync(process.env.E2E_LOG ?? path.join(outdir, 'handlers.log'), 'utf8').split('\n')
    .filter((line) => line.startsWith('{') && line.includes('"requestKey"'))
    .map((message) => ({ timestamp: (JSON.parse(message)._aws?.Timestamp as number) ?? 0, message }));
  const keyRule = (id: string) => JSON.parse(flattenCfnString(rt.template.ofType('AWS::CloudWatch::InsightRule').find((r) => r.logicalId.includes(id))!.properties.RuleBody));
  const day = 86_400; // one period for the whole run
  const [dispatched] = evaluateInsightRule(keyRule('DispatchedByKey'), events, day);
  expect(dispatched).toMatchObject({ maxContributorValue: 2, uniqueContributors: 4, sum: 6 });
  expect(['acme', 'globex']).toContain(dispatched.maxContributor[0]);
  const [waited] = evaluateInsightRule(keyRule('PacingWaitByKey'), events, day);
  expect(waited.uniqueContributors).toBe(4);
  const [callbacks] = evaluateInsightRule(keyRule('CallbacksByKey'), events, day);
  expect(callbacks).toMatchObject({ maxContributorValue: 1, uniqueContributors: 2, sum: 2 });
  // No 429 in this run: the 429 rule matches nothing.
  expect(evaluateInsightRule(keyRule('Vendor429sByKey'), events, day)).toEqual([]);
});
