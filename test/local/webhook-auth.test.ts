/**
 * Webhook authentication end to end on the local runtime: an orchestrator with capability URLs
 * and Standard Webhooks signatures, the vendor simulator signing its genuine callbacks, and
 * forged callbacks (guessable job id, wrong or missing token, bad signature, stale timestamp,
 * replayed body). Genuine callbacks resume; forged ones resume nothing, land in the callback DLQ
 * with reason CallbackRejected and are counted (EMF CallbacksRejected in the function logs).
 */
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { LocalRuntime } from '../../local/runtime';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/types';
import { VendorSimulator } from '../../local/vendor-simulator';
import { AsyncExternalApiOrchestrator, WebhookAuthentication, WebhookSignature } from '../../src';
import { signCallback } from '../../src/callback-webhook/signature-verification';

jest.setTimeout(240_000);

const SIGNING_SECRET = 'whsec_' + Buffer.from('local signing key of the webhook-auth test').toString('base64');
let runtime: LocalRuntime;
let orchestrator: AsyncExternalApiOrchestrator;
let main: sfn.StateMachine;
let signature: WebhookSignature;
let vendor: VendorSimulator | undefined;
let logFile: string;

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'webhook-auth-'));
  logFile = path.join(outdir, 'functions.log');
  const app = new App({ outdir });
  const stack = new Stack(app, 'WebhookAuth');
  const secret = new secretsmanager.Secret(stack, 'SigningSecret');
  signature = WebhookSignature.standardWebhooks(secret);
  orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.seconds(60),
    webhook: { authentication: WebhookAuthentication.capabilityUrl(signature) },
  });
  main = new sfn.StateMachine(stack, 'Main', {
    definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.submitJobTask(stack, 'Submit', {
      payload: sfn.TaskInput.fromJsonPathAt('$.order'),
      requestId: sfn.JsonPath.stringAt('$.orderId'),
    })),
  });
  orchestrator.registerWorkflow(main);
  app.synth();
  runtime = await LocalRuntime.start({
    assemblyDir: outdir,
    stackName: stack.stackName,
    logFile,
    secrets: { [stack.getLogicalId(secret.node.defaultChild as any)]: SIGNING_SECRET },
  });
});

afterAll(async () => {
  await vendor?.stop();
  await runtime?.stop();
});

afterEach(async () => {
  await vendor?.stop();
  vendor = undefined;
});

async function useVendor(options: { forgedCallbackRate?: number; noCallbackRate?: number }): Promise<VendorSimulator> {
  vendor = new VendorSimulator({
    requestsPerSecond: 10,
    latencyMs: 10,
    callbackDelayMs: 200,
    rewriteUrl: (url) => runtime.rewriteUrl(url),
    callbackSignature: { spec: signature._spec, secret: SIGNING_SECRET },
    ...options,
  });
  runtime.mapHost('vendor.example.com', await vendor.start());
  return vendor;
}

let counter = 0;
async function start(n: number): Promise<string[]> {
  const arns: string[] = [];
  for (let i = 0; i < n; i++) {
    const orderId = `auth-order-${++counter}`;
    const { executionArn } = await runtime.sfn.startExecution(runtime.stateMachineArn(main), JSON.stringify({ orderId, order: { orderId } }));
    arns.push(executionArn);
  }
  return arns;
}

async function waitUntil(condition: () => boolean | Promise<boolean>, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return condition();
}

const callbackDlq = () => runtime.template.ofType('AWS::SQS::Queue').find((q) => /WebhookCallbackDeadLetterQueue/.test(q.logicalId))!.logicalId;

async function parkedReasons(): Promise<string[]> {
  // A receive may return only some of the messages: read several times, one entry per message body.
  const seen = new Map<string, string>();
  for (let i = 0; i < 15; i++) {
    for (const m of await runtime.peek(callbackDlq(), 10)) {
      seen.set(m.body, `${m.attributes.reason}: ${m.attributes.detail}`);
    }
  }
  return [...seen.values()];
}

/** The sum of a metric the processor published (EMF lines in the function log). */
function counted(metric: string): number {
  // The log file appears with the first line a function writes.
  if (!fs.existsSync(logFile)) return 0;
  return fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"_aws"') && l.includes(metric))
    .reduce((sum, l) => sum + (Number(JSON.parse(l.slice(l.indexOf('{')))[metric]) || 0), 0);
}
const rejectedCounted = () => counted('CallbacksRejected');

/** The table's item of a request: its job id (as the vendor got it) and capability token. */
async function waitingRequest(v: VendorSimulator): Promise<{ arn: string; jobId: string; token: string }> {
  const [arn] = await start(1);
  const requestId = `auth-order-${counter}`;
  expect(await waitUntil(() => v.stats().requests[requestId]?.jobId !== undefined, 60_000)).toBe(true);
  const ddb = new DynamoDBClient({ endpoint: runtime.endpoints.dynamodb, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  try {
    const items = await ddb.send(new ScanCommand({
      TableName: runtime.template.nameOf(runtime.template.ofType('AWS::DynamoDB::Table')
        .find((t) => /Table/.test(t.logicalId) && t.properties.GlobalSecondaryIndexes)!.logicalId),
    }));
    return { arn, jobId: v.stats().requests[requestId].jobId!, token: items.Items!.find((i) => i.requestId.S === requestId)!.callbackToken.S! };
  } finally {
    ddb.destroy();
  }
}

function webhookBase(): string {
  const webhook = runtime.template.ofType('AWS::ApiGateway::RestApi').find((a) => /Webhook/.test(a.logicalId))!;
  return `https://${webhook.logicalId.toLowerCase()}.execute-api.${LOCAL_REGION}.amazonaws.com/webhook/callback`;
}

function post(url: string, body: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(runtime.rewriteUrl(url), { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('genuine signed callbacks on their capability URL resume; the simulator\'s forged ones (wrong token, unsigned) resume nothing', async () => {
  // GIVEN a vendor that sends a forged callback (guessable job id, wrong token, no signature) before each genuine one
  const v = await useVendor({ forgedCallbackRate: 1 });
  const before = rejectedCounted();

  // WHEN
  const arns = await start(3);
  await waitUntil(() => arns.every((a) => runtime.sfn.describeExecution(a).status !== 'RUNNING'), 120_000);

  // THEN every workflow resumed with the genuine result, never the forged one
  const results = arns.map((a) => runtime.sfn.describeExecution(a));
  expect(results.map((r) => r.status)).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);
  const forgedAccepted = results.filter((r) => JSON.stringify(r.output).includes('"forged":true')).length;
  expect(forgedAccepted).toBe(0);
  expect(v.stats().forgedSent).toBe(3);
  expect(v.callbacks().filter((c) => c.kind === 'forged').every((c) => /\/callback\/[A-Za-z0-9_-]{43}$/.test(c.url))).toBe(true);
  // AND the forged ones are kept and counted
  expect(await waitUntil(async () => (await parkedReasons()).filter((r) => r.startsWith('CallbackRejected')).length >= 3, 30_000)).toBe(true);
  expect(await waitUntil(() => rejectedCounted() - before >= 3, 10_000)).toBe(true);
});

test('forged callbacks for a waiting request (wrong or missing token, bad signature, stale or replayed timestamp) resume nothing; the genuine one does, once', async () => {
  // GIVEN a request waiting for a vendor that never calls back
  const v = await useVendor({ noCallbackRate: 1 });
  const [arn] = await start(1);
  expect(await waitUntil(() => Object.values(v.stats().requests).some((r) => r.jobId !== undefined), 60_000)).toBe(true);
  const requestId = `auth-order-${counter}`;
  const jobId = v.stats().requests[requestId].jobId!;
  // The request's capability token, as the vendor got it (read from the table, as only AWS could).
  const ddb = new DynamoDBClient({ endpoint: runtime.endpoints.dynamodb, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  const items = await ddb.send(new ScanCommand({
    TableName: runtime.template.nameOf(runtime.template.ofType('AWS::DynamoDB::Table')
      .find((t) => /Table/.test(t.logicalId) && t.properties.GlobalSecondaryIndexes)!.logicalId),
  }));
  const token = items.Items!.find((i) => i.requestId.S === requestId)!.callbackToken.S!;
  expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  const webhook = runtime.template.ofType('AWS::ApiGateway::RestApi').find((a) => /Webhook/.test(a.logicalId))!;
  const base = `https://${webhook.logicalId.toLowerCase()}.execute-api.${LOCAL_REGION}.amazonaws.com/webhook/callback`;
  const body = JSON.stringify({ jobId, status: 'SUCCEEDED', result: { forged: true } });
  const now = Math.floor(Date.now() / 1000);
  const before = rejectedCounted();
  const parkedBefore = (await parkedReasons()).length;

  // WHEN forgers post
  const statuses = [
    await post(`${base}/${'x'.repeat(43)}`, body, signCallback(signature._spec, SIGNING_SECRET, body, now)), // wrong token (signed by an insider)
    await post(base, body, signCallback(signature._spec, SIGNING_SECRET, body, now)), // no token: the bare URL has no route
    await post(`${base}/${token}`, body, signCallback(signature._spec, 'whsec_' + Buffer.from('guess').toString('base64'), body, now)), // bad signature
    await post(`${base}/${token}`, body, {}), // no signature
    await post(`${base}/${token}`, body, signCallback(signature._spec, SIGNING_SECRET, body, now - 3600)), // replayed, stale timestamp
  ];

  // THEN the webhook answered (202 queued, 403 for the bare URL) and nothing resumed
  expect(statuses).toEqual([202, 403, 202, 202, 202]);
  expect(await waitUntil(async () => (await parkedReasons()).length - parkedBefore >= 4, 30_000)).toBe(true);
  expect(runtime.sfn.describeExecution(arn).status).toBe('RUNNING');
  const reasons = await parkedReasons();
  expect(reasons.filter((r) => r.startsWith('CallbackRejected')).join('\n')).toEqual(expect.stringMatching(/does not match the request[\s\S]*signature/));
  expect(reasons.some((r) => /tolerance/.test(r))).toBe(true);
  expect(await waitUntil(() => rejectedCounted() - before >= 4, 10_000)).toBe(true);

  // WHEN the genuine callback comes, and is replayed a second later within the tolerance
  const genuine = JSON.stringify({ jobId, status: 'SUCCEEDED', result: { ok: true } });
  const headers = signCallback(signature._spec, SIGNING_SECRET, genuine, Math.floor(Date.now() / 1000));
  expect(await post(`${base}/${token}`, genuine, headers)).toBe(202);
  expect(await waitUntil(() => runtime.sfn.describeExecution(arn).status !== 'RUNNING', 60_000)).toBe(true);
  expect(await post(`${base}/${token}`, genuine, headers)).toBe(202);

  // THEN it resumed the workflow with the genuine result, and the replay resumed nothing more
  const done = runtime.sfn.describeExecution(arn);
  expect(done.status).toBe('SUCCEEDED');
  const output = typeof done.output === 'string' ? JSON.parse(done.output) : done.output;
  expect(output.result.result).toEqual({ ok: true });
  const rejectedBeforeReplay = rejectedCounted();
  expect(await waitUntil(() => counted('DuplicateCallbacks') >= 1, 30_000)).toBe(true);
  expect(rejectedCounted()).toBe(rejectedBeforeReplay);
});

test.each([
  ['200 KiB: over maxPayloadSize (180 KiB), queued whole and verified', 200 * 1024, 202],
  ['1 MiB: too large for the callback queue, dropped at the webhook', 1024 * 1024, 413],
  ['9 MiB: near API Gateway\'s 10 MB limit, dropped at the webhook', 9 * 1024 * 1024, 413],
])('a genuine callback of %s ends its workflow at once with CallbackTooLarge; nothing loops', async (_name, bytes, expectedStatus) => {
  // GIVEN a request waiting for a vendor that never calls back by itself
  const v = await useVendor({ noCallbackRate: 1 });
  const { arn, jobId, token } = await waitingRequest(v);
  const head = JSON.stringify({ jobId, status: 'SUCCEEDED' }).slice(0, -1) + ',"blob":"';
  const body = `${head}${'x'.repeat(bytes - head.length - 2)}"}`;
  const headers = signCallback(signature._spec, SIGNING_SECRET, body, Math.floor(Date.now() / 1000));

  // WHEN the vendor posts it on the request's capability URL
  const status = await post(`${webhookBase()}/${token}`, body, headers);

  // THEN it is answered at once (202 queued, or 413 for a body too large to queue: the vendor should not retry)
  expect(status).toBe(expectedStatus);
  // AND the workflow fails now, not at its 60 s timeout
  expect(await waitUntil(() => runtime.sfn.describeExecution(arn).status !== 'RUNNING', 30_000)).toBe(true);
  expect(runtime.sfn.describeExecution(arn)).toMatchObject({ status: 'FAILED', error: 'CallbackTooLarge' });
  // AND the callback is kept in the dead-letter queue with the reason
  expect(await waitUntil(async () => (await parkedReasons()).some((r) => r.startsWith('PAYLOAD_TOO_LARGE') && (bytes > 1e6 ? /dropped at the webhook/.test(r) : /maxPayloadSize/.test(r))), 30_000)).toBe(true);
});
