import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { CreateQueueCommand, DeleteMessageCommand, Message, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { SignatureV4 } from '@smithy/signature-v4';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { buildExampleApp } from '../../examples/app';
import { LocalApiGateway } from '../../local/aws/apigateway';
import { ApiGatewayHost } from '../../local/aws/apigateway-host';
import { LOCAL_ACCOUNT, LOCAL_CREDENTIALS, LOCAL_REGION, localAccessKeyForRole, PRINCIPAL_HEADER, ResolvedResource } from '../../local/types';
import { CALLBACK_ACCEPTED_RESPONSE, CALLBACK_ERROR_RESPONSE } from '../../src/callback-webhook/mapping-template';
import { createSigV4Signer } from '../../src/dispatch-workflow/vendor-call';
import { CallbackEnvelope } from '../../src/shared/messages';
import { NodeSha256 } from '../../src/shared/node-sha256';
import { PROXY_HOP_SIGNING_HEADERS, REDACTED_HEADER_VALUE, ThrottledProxy } from '../../src/throttled-proxy/throttled-proxy';
import { VENDOR_CREDENTIAL_HEADER, VendorCredentials } from '../../src/throttled-proxy/vendor-credentials';

// ---------------------------------------------------------------------------------------------
// Resolving the synthesized template as the runtime's resolver does (local/template.ts rules)
// ---------------------------------------------------------------------------------------------

const API_TYPES = ['AWS::ApiGateway::RestApi', 'AWS::ApiGateway::Resource', 'AWS::ApiGateway::Method', 'AWS::ApiGateway::Stage', 'AWS::ApiGateway::Deployment'];
const PSEUDO: Record<string, string> = {
  'AWS::Partition': 'aws',
  'AWS::Region': LOCAL_REGION,
  'AWS::AccountId': LOCAL_ACCOUNT,
  'AWS::URLSuffix': 'amazonaws.com',
};

type CfnResources = Record<string, { Type: string; Properties?: Record<string, unknown>; Metadata?: Record<string, unknown> }>;

/** Ref and Fn::GetAtt values by the shared resolution rules. */
function refOf(resources: CfnResources, id: string, sqsEndpoint: string): string {
  const r = resources[id];
  switch (r?.Type) {
    case 'AWS::ApiGateway::RestApi': return id.toLowerCase();
    case 'AWS::ApiGateway::Stage': return String(r.Properties?.StageName);
    case 'AWS::SQS::Queue': return `${sqsEndpoint}/${LOCAL_ACCOUNT}/${id}`;
    default: return id;
  }
}

function getAttOf(resources: CfnResources, id: string, attribute: string): string {
  const type = resources[id]?.Type;
  if (type === 'AWS::ApiGateway::RestApi' && attribute === 'RootResourceId') return `${id.toLowerCase()}-root`;
  if (type === 'AWS::IAM::Role' && attribute === 'Arn') return `arn:aws:iam::${LOCAL_ACCOUNT}:role/${id}`;
  if (type === 'AWS::SQS::Queue' && attribute === 'QueueName') return id;
  if (type === 'AWS::SQS::Queue' && attribute === 'Arn') return `arn:aws:sqs:${LOCAL_REGION}:${LOCAL_ACCOUNT}:${id}`;
  return `arn:aws:local:${LOCAL_REGION}:${LOCAL_ACCOUNT}:${id}/${attribute}`;
}

function resolveValue(value: unknown, resources: CfnResources, sqsEndpoint: string): any {
  if (Array.isArray(value)) {
    return value.map((v) => resolveValue(v, resources, sqsEndpoint));
  }
  if (value === null || typeof value !== 'object') {
    return value;
  }
  const obj = value as Record<string, any>;
  if (typeof obj.Ref === 'string') {
    return PSEUDO[obj.Ref] ?? refOf(resources, obj.Ref, sqsEndpoint);
  }
  if (Array.isArray(obj['Fn::GetAtt'])) {
    return getAttOf(resources, obj['Fn::GetAtt'][0], obj['Fn::GetAtt'][1]);
  }
  if (Array.isArray(obj['Fn::Join'])) {
    const [separator, parts] = obj['Fn::Join'];
    return resolveValue(parts, resources, sqsEndpoint).join(separator);
  }
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, resolveValue(v, resources, sqsEndpoint)]));
}

/** The template's API Gateway resources with every intrinsic resolved. */
function resolvedApiResources(template: { Resources: CfnResources }, sqsEndpoint: string): ResolvedResource[] {
  return Object.entries(template.Resources)
    .filter(([, r]) => API_TYPES.includes(r.Type))
    .map(([logicalId, r]) => ({
      logicalId,
      type: r.Type,
      properties: resolveValue(r.Properties ?? {}, template.Resources, sqsEndpoint),
      metadata: r.Metadata ?? {},
    }));
}

/** A deep copy of `resources` with `change` applied to the one with `logicalId`. */
function withChange(resources: ResolvedResource[], logicalId: string, change: (properties: Record<string, any>) => void): ResolvedResource[] {
  const copy: ResolvedResource[] = JSON.parse(JSON.stringify(resources));
  const target = copy.find((r) => r.logicalId === logicalId);
  if (!target) {
    throw new Error(`No resource ${logicalId}`);
  }
  change(target.properties);
  return copy;
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

interface Response {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** One request with exactly the headers given (no client defaults such as a text/plain type). */
function call(url: string, options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : Buffer.from(options.body);
    const req = http.request(url, {
      method: options.method ?? 'GET',
      agent: false,
      headers: { ...(options.headers ?? {}), ...(body ? { 'Content-Length': String(body.length) } : {}) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** A stand-in vendor that records what reaches it and answers 201. */
async function startUpstream(): Promise<{ server: http.Server; base: string; received: Recorded[] }> {
  const received: Recorded[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      if (req.url?.includes('hang')) {
        return; // never answers: the integration timeout must fire
      }
      res.writeHead(201, { 'Content-Type': 'application/json', 'X-Upstream': 'stub' });
      res.end(JSON.stringify({ jobId: 'job-42' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

/**
 * The headers of a call signed as the vendor caller signs it (createSigV4Signer), with the local
 * key of `roleArn` and the local secret unless told otherwise; `signingDate` goes to the signer.
 */
async function signAs(roleArn: string, url: string, headers: Record<string, string>, body: string,
  options: { accessKeyId?: string; secretAccessKey?: string; sessionToken?: string; signingDate?: Date } = {}): Promise<Record<string, string>> {
  const credentials = {
    accessKeyId: options.accessKeyId ?? localAccessKeyForRole(roleArn),
    secretAccessKey: options.secretAccessKey ?? LOCAL_CREDENTIALS.secretAccessKey,
    sessionToken: options.sessionToken,
  };
  if (options.signingDate) {
    const signer = new SignatureV4({ service: 'execute-api', region: LOCAL_REGION, credentials, sha256: NodeSha256 });
    const u = new URL(url);
    const signed = await signer.sign({ method: 'POST', protocol: u.protocol, hostname: u.hostname, port: Number(u.port), path: u.pathname, query: Object.fromEntries(u.searchParams), headers: { ...headers, host: u.host }, body },
      { signingDate: options.signingDate });
    const { host: _host, ...rest } = signed.headers;
    return rest;
  }
  return createSigV4Signer(LOCAL_REGION, () => credentials)({ method: 'POST', url, headers, body });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Rewrites the vendor's https URL to the stub. */
function vendorRewriter(base: string): (url: string) => string {
  return (url) => url.replace('https://vendor.example.com', base);
}

/**
 * fauxqs on 127.0.0.1, port 0. fauxqs is an ES module only, which Jest's CommonJS runtime cannot
 * load: a worker thread imports it natively. buildApp rather than startFauxqs, which listens on
 * every interface; and a queue store without a host, so queue URLs are built from the request's
 * Host: `<endpoint>/000000000000/<name>`, the form the resolver gives queue URLs.
 */
async function startFauxqsWorker(): Promise<{ address: string; stop: () => Promise<void> }> {
  // Its exports hide package.json and every file but dist/app.js: find the package by path.
  const root = path.join(__dirname, '..', '..', 'node_modules', 'fauxqs');
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const { pathToFileURL } = require('node:url');
    Promise.all([
      import(pathToFileURL(workerData.root + '/dist/app.js').href),
      import(pathToFileURL(workerData.root + '/dist/sqs/sqsStore.js').href),
    ]).then(async ([{ buildApp }, { SqsStore }]) => {
      const sqsStore = new SqsStore();
      sqsStore.host = undefined;
      const app = buildApp({ logger: false, stores: { sqsStore } });
      await app.listen({ port: 0, host: '127.0.0.1' });
      parentPort.once('message', async () => {
        await app.close();
        parentPort.close();
      });
      parentPort.postMessage({ port: app.server.address().port });
    }, (err) => { throw err; });
  `, { eval: true, workerData: { root } });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', (m: { port: number }) => resolve(m.port));
    worker.once('error', reject);
  });
  return {
    address: `http://127.0.0.1:${port}`,
    stop: async () => {
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.postMessage('stop');
      await exited;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The example app on the local API Gateway
// ---------------------------------------------------------------------------------------------

const VENDOR_PROXY = 'VendorProxy330D7490';
const WEBHOOK = 'VendorWebhook2ACFD7FE';
const WEBHOOK_METHOD = 'VendorWebhookcallbacktokenPOSTC35632CA';
/** A capability token in the callback path (POST /callback/{token}). */
const TOKEN = 'Tok3n_-'.repeat(6) + 'x';
const PROXY_ROOT_METHOD = 'VendorProxyANY14B4686C';
// PacingPoint.VENDOR_CALL (the default): the vendor caller's role is the one allowed on the proxy.
const DISPATCH_ROLE = 'VendorDispatchVendorCallerServiceRole084BF02F';
const ALLOWED = `arn:aws:iam::${LOCAL_ACCOUNT}:role/${DISPATCH_ROLE}`;
const INTRUDER = `arn:aws:iam::${LOCAL_ACCOUNT}:role/SomeOtherRole`;

let fauxqs: Awaited<ReturnType<typeof startFauxqsWorker>>;
let sqs: SQSClient;
let upstream: Awaited<ReturnType<typeof startUpstream>>;
let resources: ResolvedResource[];
let templateJson: { Resources: CfnResources };
let gateway: LocalApiGateway;
let now = 1_700_000_000_000;
const clock = () => now;
const others: LocalApiGateway[] = [];

let proxyBase: string;
let webhookBase: string;
let queueUrl: string;

/** A second gateway over changed resources, stopped in afterAll. */
async function startOther(changed: ResolvedResource[], rewriteUrl = vendorRewriter(upstream.base)): Promise<LocalApiGateway> {
  const other = new LocalApiGateway({ resources: changed, sqsEndpoint: fauxqs.address, rewriteUrl, clock });
  others.push(other);
  await other.start();
  return other;
}

async function receiveAll(): Promise<Message[]> {
  const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
  for (const m of out.Messages ?? []) {
    await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }));
  }
  return out.Messages ?? [];
}

beforeAll(async () => {
  const { stack } = buildExampleApp();
  templateJson = Template.fromStack(stack).toJSON() as { Resources: CfnResources };

  fauxqs = await startFauxqsWorker();
  sqs = new SQSClient({ endpoint: fauxqs.address, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  resources = resolvedApiResources(templateJson, fauxqs.address);

  // The webhook's queue, named as its integration URI says.
  const uri: string = resources.find((r) => r.logicalId === WEBHOOK_METHOD)!.properties.Integration.Uri;
  const queueName = uri.split('/').pop()!;
  queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: queueName }))).QueueUrl!;

  upstream = await startUpstream();
  gateway = new LocalApiGateway({ resources, sqsEndpoint: fauxqs.address, rewriteUrl: vendorRewriter(upstream.base), clock });
  await gateway.start();
  proxyBase = gateway.baseUrl(VENDOR_PROXY.toLowerCase());
  webhookBase = gateway.baseUrl(WEBHOOK.toLowerCase());
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await Promise.all(others.map((o) => o.stop()));
  if (upstream) {
    await closeServer(upstream.server);
  }
  sqs?.destroy();
  await fauxqs?.stop();
});

beforeEach(() => {
  // A second passes between tests: every stage's token bucket is full again.
  now += 1000;
  upstream.received.length = 0;
});

describe('LocalApiGateway: the throttled proxy of the example app', () => {
  test('the synthesized template is what these tests assume', () => {
    // GIVEN / WHEN
    const stage = resources.find((r) => r.type === 'AWS::ApiGateway::Stage' && r.properties.StageName === 'vendor')!;

    // THEN
    expect(stage.properties.MethodSettings).toEqual([expect.objectContaining({ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: 10, ThrottlingBurstLimit: 3 })]);
    expect(JSON.stringify(resources.find((r) => r.logicalId === VENDOR_PROXY)!.properties.Policy)).toContain(ALLOWED);
  });

  test('accepts a SigV4-signed call whose access key names an allowed role (the local Lambda hands those out)', async () => {
    // GIVEN calls signed as the vendor caller signs them, with the local keys of two roles
    const url = `${proxyBase}/vendor/`;
    const allowed = await signAs(ALLOWED, url, { 'Content-Type': 'application/json' }, '{}');
    const intruder = await signAs(INTRUDER, url, { 'Content-Type': 'application/json' }, '{}');

    // WHEN
    const res = await call(url, { method: 'POST', headers: allowed, body: '{}' });
    const refused = await call(url, { method: 'POST', headers: intruder, body: '{}' });

    // THEN the allowed role reaches the vendor, another role is refused by the resource policy
    expect(res.status).toBe(201);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toEqual({ message: `User: ${INTRUDER} is not authorized to access this resource with an explicit deny` });
  });

  test('refuses a signature that does not verify with API Gateway\'s 403, and never calls the vendor', async () => {
    // GIVEN a correctly signed call, and variations API Gateway refuses
    const url = `${proxyBase}/vendor/job-1?x=1`;
    const body = '{"a":1}';
    const signed = await signAs(ALLOWED, url, { 'Content-Type': 'application/json' }, body);
    const tenMinutesAgo = await signAs(ALLOWED, url, { 'Content-Type': 'application/json' }, body, { signingDate: new Date(Date.now() - 10 * 60_000) });
    const wrongSecret = await signAs(ALLOWED, url, { 'Content-Type': 'application/json' }, body, { secretAccessKey: 'not-the-local-secret' });
    const unknownKey = await signAs(ALLOWED, url, { 'Content-Type': 'application/json' }, body, { accessKeyId: 'AKIAEXAMPLE' });
    const before = gateway.stats(VENDOR_PROXY.toLowerCase()).unauthorized;

    // WHEN
    const tamperedBody = await call(url, { method: 'POST', headers: signed, body: '{"a":2}' });
    const otherPath = await call(`${proxyBase}/vendor/job-2?x=1`, { method: 'POST', headers: signed, body });
    const expired = await call(url, { method: 'POST', headers: tenMinutesAgo, body });
    const badSecret = await call(url, { method: 'POST', headers: wrongSecret, body });
    const notLocal = await call(url, { method: 'POST', headers: unknownKey, body });
    const malformed = await call(url, { method: 'POST', headers: { ...signed, Authorization: 'AWS4-HMAC-SHA256 Signature=00' }, body });
    const good = await call(url, { method: 'POST', headers: signed, body });

    // THEN each refusal is API Gateway's 403 with its error type, and only the good call got through
    const refusal = (res: Response) => [res.status, res.headers['x-amzn-errortype'], JSON.parse(res.body).message.split(/[.:]/)[0]];
    const mismatch = [403, 'InvalidSignatureException', 'The request signature we calculated does not match the signature you provided'];
    expect(refusal(tamperedBody)).toEqual(mismatch);
    expect(refusal(otherPath)).toEqual(mismatch);
    expect(refusal(badSecret)).toEqual(mismatch);
    expect(refusal(expired)).toEqual([403, 'InvalidSignatureException', 'Signature expired']);
    expect(refusal(notLocal)).toEqual([403, 'UnrecognizedClientException', 'The security token included in the request is invalid']);
    expect([malformed.status, malformed.headers['x-amzn-errortype']]).toEqual([403, 'IncompleteSignatureException']);
    expect(good.status).toBe(201);
    expect(upstream.received.map((r) => r.url)).toEqual(['/v1/jobs/job-1?x=1']);
    expect(gateway.stats(VENDOR_PROXY.toLowerCase()).unauthorized).toBe(before + 6);
  });

  test('GIVEN a call signed with a session token WHEN it reaches the vendor THEN none of the proxy hop\'s SigV4 headers does (issue 11, finding 9)', async () => {
    // GIVEN the vendor caller's signed headers: Authorization, X-Amz-Date, X-Amz-Security-Token, X-Amz-Content-Sha256
    const url = `${proxyBase}/vendor/`;
    const signed = await signAs(ALLOWED, url, { 'Content-Type': 'application/json', 'Idempotency-Key': 'r-9' }, '{}', { sessionToken: 'the-role-session-token' });
    expect(Object.keys(signed).map((h) => h.toLowerCase())).toEqual(expect.arrayContaining(['authorization', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256']));

    // WHEN
    const res = await call(url, { method: 'POST', headers: signed, body: '{}' });

    // THEN the vendor gets the call and its own headers, but nothing of the signature
    expect(res.status).toBe(201);
    const got = upstream.received[0].headers;
    expect(got['idempotency-key']).toBe('r-9');
    expect(got.authorization).toBeUndefined();
    expect(JSON.stringify(got)).not.toContain('the-role-session-token');
    for (const name of PROXY_HOP_SIGNING_HEADERS) {
      expect([name, got[name.toLowerCase()]]).toEqual([name, REDACTED_HEADER_VALUE]);
    }
  });

  test('refuses a call without the principal header: 403 Missing Authentication Token, vendor not called', async () => {
    // GIVEN
    const before = gateway.stats(VENDOR_PROXY.toLowerCase()).unauthorized;

    // WHEN
    const res = await call(`${proxyBase}/vendor/`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });

    // THEN
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toEqual({ message: 'Missing Authentication Token' });
    expect(upstream.received).toHaveLength(0);
    expect(gateway.stats(VENDOR_PROXY.toLowerCase()).unauthorized).toBe(before + 1);
  });

  test('refuses a principal the resource policy does not list, with an explicit deny', async () => {
    // GIVEN / WHEN
    const res = await call(`${proxyBase}/vendor/`, { method: 'POST', headers: { [PRINCIPAL_HEADER]: INTRUDER }, body: '{}' });

    // THEN
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toEqual({ message: `User: ${INTRUDER} is not authorized to access this resource with an explicit deny` });
    expect(upstream.received).toHaveLength(0);
  });

  test('writes the stage\'s access log: requestTimeEpoch on the gateway\'s clock beside the vendor caller\'s User-Agent, so lateness + clock offset read on one clock', async () => {
    // GIVEN a vendor caller whose slot was 7 ms before the gateway received its request
    const slot = now - 7;
    const userAgent = `cdk-async-external-api-vendor-caller/0123456789ab slot/${slot}`;

    // WHEN it calls, and a throttled-out or refused call comes too
    const res = await call(`${proxyBase}/vendor/`, { method: 'POST', headers: { [PRINCIPAL_HEADER]: ALLOWED, 'User-Agent': userAgent }, body: '{}' });
    const refused = await call(`${proxyBase}/vendor/`, { method: 'POST', body: '{}' });

    // THEN one JSON line per request, in the format the ThrottledProxy synthesized
    expect(res.status).toBe(201);
    expect(refused.status).toBe(403);
    const lines = gateway.accessLog(VENDOR_PROXY.toLowerCase()).slice(-2).map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({
      requestTimeEpoch: String(now), userAgent, status: '201', integrationStatus: '201', httpMethod: 'POST', resourcePath: '/', caller: ALLOWED,
    });
    expect(lines[1]).toMatchObject({ status: '403', integrationStatus: '-', errorResponseType: 'MISSING_AUTHENTICATION_TOKEN' });
    // AND $context.path is the path requested, stage included, as AWS logs it (the audit per named limit reads it)
    expect(lines[0]).toMatchObject({ path: '/vendor/', stage: 'vendor' });
    // AND the README's check parses it: requestTimeEpoch - slot, per container
    const [, container, slotText] = /^cdk-async-external-api-vendor-caller\/(\S+) slot\/(\S+)$/.exec(lines[0].userAgent)!;
    expect(container).toBe('0123456789ab');
    expect(Number(lines[0].requestTimeEpoch) - Number(slotText)).toBe(7);
  });

  test('forwards an allowed call to the vendor URL: method, body, headers; the principal header stays behind', async () => {
    // GIVEN
    const body = '{"requestId":"r-1","payload":{"a":1}}';

    // WHEN
    const res = await call(`${proxyBase}/vendor/`, {
      method: 'POST',
      headers: { [PRINCIPAL_HEADER]: ALLOWED, 'Content-Type': 'application/json', 'Idempotency-Key': 'r-1', 'Connection': 'keep-alive' },
      body,
    });

    // THEN the upstream's answer comes back as is
    expect(res.status).toBe(201);
    expect(JSON.parse(res.body)).toEqual({ jobId: 'job-42' });
    expect(res.headers['x-upstream']).toBe('stub');
    // AND the vendor got the call at the URL of the template
    expect(upstream.received).toHaveLength(1);
    const got = upstream.received[0];
    expect(got.method).toBe('POST');
    expect(got.url).toBe('/v1/jobs');
    expect(got.body).toBe(body);
    expect(got.headers['idempotency-key']).toBe('r-1');
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers[PRINCIPAL_HEADER]).toBeUndefined();
  });

  test('forwards {proxy+} paths and the query string to <vendorUrl>/{proxy}', async () => {
    // GIVEN / WHEN
    const res = await call(`${proxyBase}/vendor/job-42/result?format=json&x=a%20b`, { headers: { [PRINCIPAL_HEADER]: ALLOWED } });

    // THEN
    expect(res.status).toBe(201);
    expect(upstream.received.map((r) => [r.method, r.url])).toEqual([['GET', '/v1/jobs/job-42/result?format=json&x=a+b']]);
  });

  test('throttles to 429 over the stage rate (10/s) and burst (3)', async () => {
    // GIVEN a full bucket (three tokens) and a clock that does not move
    const apiId = VENDOR_PROXY.toLowerCase();
    const before = gateway.stats(apiId).throttled429;
    const send = () => call(`${proxyBase}/vendor/`, { method: 'POST', headers: { [PRINCIPAL_HEADER]: ALLOWED }, body: '{}' });

    // WHEN six calls arrive at once
    const burst = [];
    for (let i = 0; i < 6; i++) {
      burst.push((await send()).status);
    }
    // AND 100 ms later (one token at 10/s) two more
    now += 100;
    const afterRefill = [(await send()).status, (await send()).status];

    // THEN
    expect(burst).toEqual([201, 201, 201, 429, 429, 429]);
    expect(afterRefill).toEqual([201, 429]);
    expect(gateway.stats(apiId).throttled429).toBe(before + 4);
    expect(upstream.received).toHaveLength(4);
    const refused = await send();
    expect(JSON.parse(refused.body)).toEqual({ message: 'Too Many Requests' });
  });

  test('answers 403 for an unknown stage', async () => {
    // GIVEN / WHEN
    const res = await call(`${proxyBase}/prod/`, { headers: { [PRINCIPAL_HEADER]: ALLOWED } });

    // THEN
    expect(res.status).toBe(403);
    expect(upstream.received).toHaveLength(0);
  });

  test('the proxy\'s integrations wait TimeoutInMillis, 29 s by default (API Gateway\'s default quota)', () => {
    // GIVEN / WHEN the example app (default vendorCallTimeout)
    const methods = resources.filter((r) => r.type === 'AWS::ApiGateway::Method' && r.properties.Integration?.Type === 'HTTP_PROXY');

    // THEN
    expect(methods.map((m) => m.properties.Integration.TimeoutInMillis)).toEqual([29_000, 29_000]);
  });

  test('refuses TimeoutInMillis outside 50 ms to 300 s, as API Gateway does', () => {
    // GIVEN / WHEN / THEN
    for (const bad of [49, 300_001]) {
      const changed = withChange(resources, PROXY_ROOT_METHOD, (p) => {
        p.Integration.TimeoutInMillis = bad;
      });
      expect(() => new LocalApiGateway({ resources: changed, sqsEndpoint: fauxqs.address, rewriteUrl: vendorRewriter(upstream.base), clock }))
        .toThrow(`${PROXY_ROOT_METHOD}.Integration.TimeoutInMillis must be between 50 and 300000 (given ${bad})`);
    }
  });

  test('answers 502 when the vendor is unreachable and 504 past the integration timeout', async () => {
    // GIVEN the root method with a 300 ms timeout, and a gateway whose vendor is a closed port
    const short = withChange(resources, PROXY_ROOT_METHOD, (p) => {
      p.Integration.TimeoutInMillis = 300;
      p.Integration.Uri = 'https://vendor.example.com/hang';
    });
    const slow = await startOther(short);
    const closed = await startUpstream();
    await closeServer(closed.server);
    const unreachable = await startOther(resources, vendorRewriter(closed.base));

    // WHEN
    const started = Date.now();
    const timedOut = await call(`${slow.baseUrl(VENDOR_PROXY.toLowerCase())}/vendor/`, { method: 'POST', headers: { [PRINCIPAL_HEADER]: ALLOWED }, body: '{}' });
    const waitedMs = Date.now() - started;
    const refused = await call(`${unreachable.baseUrl(VENDOR_PROXY.toLowerCase())}/vendor/`, { method: 'POST', headers: { [PRINCIPAL_HEADER]: ALLOWED }, body: '{}' });

    // THEN API Gateway's INTEGRATION_TIMEOUT response, after TimeoutInMillis
    expect(timedOut.status).toBe(504);
    expect(JSON.parse(timedOut.body)).toEqual({ message: 'Endpoint request timed out' });
    expect(timedOut.headers['x-amzn-errortype']).toBe('IntegrationTimeoutException');
    expect(waitedMs).toBeGreaterThanOrEqual(295);
    expect(waitedMs).toBeLessThan(5000);
    expect(refused.status).toBe(502);
    expect(unreachable.stats(VENDOR_PROXY.toLowerCase()).integrationErrors).toBe(1);
  });

  test('answers 413 for a body over 10 MB', async () => {
    // GIVEN
    const body = Buffer.alloc(10 * 1024 * 1024 + 1, 'a');

    // WHEN
    const res = await call(`${proxyBase}/vendor/`, { method: 'POST', headers: { [PRINCIPAL_HEADER]: ALLOWED }, body });

    // THEN
    expect(res.status).toBe(413);
    expect(upstream.received).toHaveLength(0);
  });
});

describe('LocalApiGateway: vendor credentials mapped into the vendor call', () => {
  test('sends X-Vendor-Credential on as the vendor header configured', async () => {
    // GIVEN a proxy synthesized with header credentials, and its invoker
    // (no env: the account is AWS::AccountId, which resolves to the local account)
    const stack = new Stack(new App(), 'ProxyStack');
    const proxy = new ThrottledProxy(stack, 'Proxy', {
      vendorUrl: 'https://vendor.example.com/v1/jobs',
      requestsPerSecond: 5,
      credentials: VendorCredentials.fromSecretHeader({ secret: new secretsmanager.Secret(stack, 'VendorKey'), headerName: 'x-api-key' }),
    });
    const caller = new iam.Role(stack, 'Caller', { assumedBy: new iam.ServicePrincipal('states.amazonaws.com') });
    proxy.grantInvoke(caller);
    const template = Template.fromStack(stack).toJSON() as { Resources: CfnResources };
    const proxyResources = resolvedApiResources(template, fauxqs.address);
    const callerArn = `arn:aws:iam::${LOCAL_ACCOUNT}:role/${stack.getLogicalId(caller.node.defaultChild as iam.CfnRole)}`;
    const local = await startOther(proxyResources);
    const apiId = local.apiIds()[0];

    // WHEN
    const res = await call(`${local.baseUrl(apiId)}/vendor/job-1`, {
      headers: { [PRINCIPAL_HEADER]: callerArn, [VENDOR_CREDENTIAL_HEADER]: 'secret-123' },
    });

    // THEN
    expect(res.status).toBe(201);
    expect(upstream.received).toHaveLength(1);
    expect(upstream.received[0].url).toBe('/v1/jobs/job-1');
    expect(upstream.received[0].headers['x-api-key']).toBe('secret-123');
  });
});

describe('LocalApiGateway: the callback webhook of the example app', () => {
  test('renders the real mapping template and queues an envelope whose body round-trips exactly', async () => {
    // GIVEN a callback with bytes that would break a naive template
    const body = '{"jobId":"job-1","status":"SUCCEEDED","note":"\\"quotes\\" & $refs #set( ) ünïcødé 😀\\n"}';

    // WHEN
    const res = await call(`${webhookBase}/webhook/callback/${TOKEN}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json; charset=utf-8', 'X-Vendor-Signature': 't=1,v1=abc"}' },
      body,
    });
    const messages = await receiveAll();

    // THEN the vendor is answered at once with the template's body
    expect(res.status).toBe(202);
    expect(res.body).toBe(CALLBACK_ACCEPTED_RESPONSE);
    // AND one envelope is on the queue
    expect(messages).toHaveLength(1);
    const envelope: CallbackEnvelope = JSON.parse(messages[0].Body!);
    expect(envelope.v).toBe(1);
    expect(Buffer.from(envelope.bodyBase64, 'base64').equals(Buffer.from(body, 'utf8'))).toBe(true);
    const decode = (text: string) => Buffer.from(text, 'base64').toString('utf8');
    const headers = Object.fromEntries(Object.entries(envelope.headers).map(([k, v]) => [decode(k), decode(v)]));
    expect(headers['X-Vendor-Signature']).toBe('t=1,v1=abc"}');
    expect(headers['Content-Type']).toBe('application/json; charset=utf-8');
    expect(envelope.receivedAtEpochMs).toBe(now);
    expect(envelope.apiRequestId).toBe(res.headers['x-amzn-requestid']);
    expect(envelope.sourceIp).toBe('127.0.0.1');
    // AND the path's capability token travels with it (base64), for the processor to verify
    expect(Buffer.from(envelope.callbackTokenBase64!, 'base64').toString('utf8')).toBe(TOKEN);
  });

  test('treats a callback without Content-Type as JSON', async () => {
    // GIVEN / WHEN
    const res = await call(`${webhookBase}/webhook/callback/${TOKEN}`, { method: 'POST', body: '{"jobId":"job-2"}' });
    const messages = await receiveAll();

    // THEN
    expect(res.status).toBe(202);
    expect(messages).toHaveLength(1);
  });

  test('refuses text/plain with 415 and queues nothing', async () => {
    // GIVEN / WHEN
    const res = await call(`${webhookBase}/webhook/callback/${TOKEN}`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'jobId=job-1' });
    const messages = await receiveAll();

    // THEN
    expect(res.status).toBe(415);
    expect(JSON.parse(res.body)).toEqual({ message: 'Unsupported Media Type' });
    expect(messages).toHaveLength(0);
  });

  test('answers the error template (500) when SQS refuses the message', async () => {
    // GIVEN a webhook whose queue does not exist
    const missing = withChange(resources, WEBHOOK_METHOD, (p) => {
      p.Integration.Uri = `arn:aws:apigateway:${LOCAL_REGION}:sqs:path/${LOCAL_ACCOUNT}/no-such-queue`;
    });
    const other = await startOther(missing);

    // WHEN
    const res = await call(`${other.baseUrl(WEBHOOK.toLowerCase())}/webhook/callback/${TOKEN}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });

    // THEN
    expect(res.status).toBe(500);
    expect(res.body).toBe(CALLBACK_ERROR_RESPONSE);
    expect(other.stats(WEBHOOK.toLowerCase()).lastIntegrationError).toMatch(/no-such-queue/);
  });

  test('answers 403 Missing Authentication Token for a method or path the API does not have', async () => {
    // GIVEN / WHEN
    const wrongMethod = await call(`${webhookBase}/webhook/callback/${TOKEN}`);
    // Without a capability token: no such route
    const noToken = await call(`${webhookBase}/webhook/callback`, { method: 'POST', body: '{}' });
    const wrongPath = await call(`${webhookBase}/webhook/other`, { method: 'POST', body: '{}' });

    // THEN
    for (const res of [wrongMethod, wrongPath, noToken]) {
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body)).toEqual({ message: 'Missing Authentication Token' });
    }
  });

  test('rewriter() maps execute-api URLs of known APIs to loopback and leaves others alone', () => {
    // GIVEN
    const rewrite = gateway.rewriter();

    // WHEN / THEN
    expect(rewrite(`https://${WEBHOOK.toLowerCase()}.execute-api.us-east-1.amazonaws.com/webhook/callback`)).toBe(`${webhookBase}/webhook/callback`);
    expect(rewrite('https://abc123.execute-api.us-east-1.amazonaws.com/webhook/callback')).toBe('https://abc123.execute-api.us-east-1.amazonaws.com/webhook/callback');
    expect(rewrite('https://vendor.example.com/v1/jobs')).toBe('https://vendor.example.com/v1/jobs');
  });
});

describe('LocalApiGateway: fails loudly on what it does not implement', () => {
  test('throws on a resource-policy condition it cannot evaluate', () => {
    // GIVEN
    const changed = withChange(resources, VENDOR_PROXY, (p) => {
      p.Policy.Statement[1].Condition = { IpAddress: { 'aws:SourceIp': '10.0.0.0/8' } };
    });

    // WHEN / THEN
    expect(() => new LocalApiGateway({ resources: changed, sqsEndpoint: fauxqs.address, rewriteUrl: (u) => u })).toThrow(/IpAddress/);
  });

  test('throws on an access log format variable it does not render (strict: no \'-\' where AWS logs a value)', () => {
    // GIVEN the proxy's stage logging a variable the local runtime does not model
    const stage = resources.find((r) => r.type === 'AWS::ApiGateway::Stage' && r.properties.StageName === 'vendor')!;
    const changed = withChange(resources, stage.logicalId, (p) => {
      p.AccessLogSetting.Format = p.AccessLogSetting.Format.replace('$context.path', '$context.domainName');
    });

    // WHEN / THEN
    expect(() => new LocalApiGateway({ resources: changed, sqsEndpoint: fauxqs.address, rewriteUrl: (u) => u })).toThrow(/\$context\.domainName/);
  });

  test('writes a named path\'s $context.path with the stage and the path below it', async () => {
    // GIVEN / WHEN a result fetch through the proxy
    await call(`${proxyBase}/vendor/results/42`, { method: 'GET', headers: { [PRINCIPAL_HEADER]: ALLOWED } });

    // THEN
    const [last] = gateway.accessLog(VENDOR_PROXY.toLowerCase()).slice(-1).map((l) => JSON.parse(l));
    expect(last).toMatchObject({ httpMethod: 'GET', resourcePath: '/{proxy+}', path: '/vendor/results/42', stage: 'vendor' });
  });

  test('throws on an integration type it does not support', () => {
    // GIVEN
    const changed = withChange(resources, PROXY_ROOT_METHOD, (p) => {
      p.Integration = { Type: 'MOCK', RequestTemplates: { 'application/json': '{"statusCode": 200}' } };
    });

    // WHEN / THEN
    expect(() => new LocalApiGateway({ resources: changed, sqsEndpoint: fauxqs.address, rewriteUrl: (u) => u })).toThrow(new RegExp(`${PROXY_ROOT_METHOD}.*MOCK`));
  });
});

describe('ApiGatewayHost: the same gateway in its own worker thread (what LocalRuntime runs)', () => {
  test('GIVEN the template WHEN a signed call comes THEN it reaches the vendor from the worker, and the stats count it', async () => {
    // GIVEN the outside host served locally, as LocalRuntime maps the vendor
    const host = await ApiGatewayHost.start({ resources, sqsEndpoint: fauxqs.address, hostMap: { 'vendor.example.com': upstream.base } });
    try {
      const url = host.rewriter()(`https://${VENDOR_PROXY.toLowerCase()}.execute-api.us-east-1.amazonaws.com/vendor/`);
      expect(url).toBe(`http://127.0.0.1:${host.ports[VENDOR_PROXY.toLowerCase()]}/vendor/`);

      // WHEN
      const res = await call(url, { method: 'POST', headers: { [PRINCIPAL_HEADER]: ALLOWED, 'Content-Type': 'application/json' }, body: '{"a":1}' });
      const refused = await call(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });

      // THEN
      expect(res.status).toBe(201);
      expect(refused.status).toBe(403);
      expect(upstream.received).toHaveLength(1);
      expect(await host.stats(VENDOR_PROXY.toLowerCase())).toMatchObject({ requests: 2, status2xx: 1, unauthorized: 1 });
      await expect(host.stats('nosuchapi')).rejects.toThrow(/no REST API nosuchapi/);
    } finally {
      await host.stop();
    }
  }, 30_000);

  test('GIVEN a template it cannot run WHEN starting THEN start fails with the same message as in-process', async () => {
    // GIVEN
    const changed = withChange(resources, PROXY_ROOT_METHOD, (p) => {
      p.Integration = { Type: 'MOCK', RequestTemplates: { 'application/json': '{"statusCode": 200}' } };
    });

    // WHEN / THEN
    await expect(ApiGatewayHost.start({ resources: changed, sqsEndpoint: fauxqs.address, hostMap: {} })).rejects.toThrow(new RegExp(`${PROXY_ROOT_METHOD}.*MOCK`));
  }, 30_000);
});
