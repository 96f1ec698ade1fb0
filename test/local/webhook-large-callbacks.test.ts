/**
 * Callbacks too large for the callback queue, on a webhook that authenticates by signature only
 * (`WebhookAuthentication.signatureOnly`), on the local runtime. The body is dropped at the webhook,
 * so the signature cannot be verified: the vendor gets 413 at once, nothing is resumed or failed,
 * and the callback is parked (reason PAYLOAD_TOO_LARGE, the DLQ alarm's metric) and counted.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { LocalRuntime } from '../../local/runtime';
import { LOCAL_REGION } from '../../local/types';
import { CallbackWebhook, TokenCorrelationTable, WebhookAuthentication, WebhookSignature } from '../../src';
import { CALLBACK_TOO_LARGE_RESPONSE } from '../../src/callback-webhook/mapping-template';
import { signCallback } from '../../src/callback-webhook/signature-verification';

jest.setTimeout(120_000);

const SIGNING_SECRET = 'whsec_' + Buffer.from('local signing key of the large-callback test').toString('base64');
let runtime: LocalRuntime;
let signature: WebhookSignature;
let logFile: string;

beforeAll(async () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'webhook-large-'));
  logFile = path.join(outdir, 'functions.log');
  const app = new App({ outdir });
  const stack = new Stack(app, 'WebhookLarge');
  const secret = new secretsmanager.Secret(stack, 'SigningSecret');
  signature = WebhookSignature.standardWebhooks(secret);
  new CallbackWebhook(stack, 'Webhook', {
    table: new TokenCorrelationTable(stack, 'Table'),
    authentication: WebhookAuthentication.signatureOnly(signature),
  });
  app.synth();
  runtime = await LocalRuntime.start({
    assemblyDir: outdir,
    stackName: stack.stackName,
    logFile,
    secrets: { [stack.getLogicalId(secret.node.defaultChild as any)]: SIGNING_SECRET },
  });
});

afterAll(async () => {
  await runtime?.stop();
});

function post(url: string, body: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(runtime.rewriteUrl(url), { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function waitUntil(condition: () => boolean | Promise<boolean>, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return condition();
}

function counted(metric: string): number {
  if (!fs.existsSync(logFile)) return 0;
  return fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"_aws"') && l.includes(metric))
    .reduce((sum, l) => sum + (Number(JSON.parse(l.slice(l.indexOf('{')))[metric]) || 0), 0);
}

test('a signed callback too large for the callback queue is answered 413, parked unverified and counted; no workflow is touched', async () => {
  // GIVEN a 2 MiB body, signed as the vendor would
  const webhook = runtime.template.ofType('AWS::ApiGateway::RestApi')[0];
  const url = `https://${webhook.logicalId.toLowerCase()}.execute-api.${LOCAL_REGION}.amazonaws.com/webhook/callback`;
  const body = JSON.stringify({ jobId: 'job-large', blob: 'x'.repeat(2 * 1024 * 1024) });
  const headers = signCallback(signature._spec, SIGNING_SECRET, body, Math.floor(Date.now() / 1000));

  // WHEN it is posted
  const res = await post(url, body, headers);

  // THEN the vendor is told at once not to retry
  expect(res.status).toBe(413);
  expect(res.body).toBe(CALLBACK_TOO_LARGE_RESPONSE);
  // AND the callback is parked with the reason, and counted as rejected
  const dlq = runtime.template.ofType('AWS::SQS::Queue').find((q) => /CallbackDeadLetterQueue/.test(q.logicalId))!.logicalId;
  let parked: Array<{ body: string; attributes: Record<string, string | undefined> }> = [];
  expect(await waitUntil(async () => (parked = await runtime.peek(dlq, 10)).length > 0, 30_000)).toBe(true);
  expect(parked[0].attributes).toMatchObject({ reason: 'PAYLOAD_TOO_LARGE', detail: expect.stringMatching(/signature cannot be verified without it/) });
  expect(JSON.parse(parked[0].body)).toMatchObject({ bodyDropped: true, bodyBase64: '' });
  expect(await waitUntil(() => counted('CallbacksRejected') >= 1, 10_000)).toBe(true);
  expect(counted('CallbacksResolved')).toBe(0);
});
