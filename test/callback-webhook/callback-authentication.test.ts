/**
 * Callback authentication: signature schemes (known vectors from the schemes' public docs and
 * round trips), the secret cache, and the processor's capability token / signature checks.
 */
import { createHmac } from 'crypto';
import { DynamoDBClient, GetItemCommand, QueryCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { Duration } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { WebhookSignature, SignatureEncoding, SecretEncoding } from '../../src';
import { CallbackConfig, CallbackLogger, processCallbackRecord } from '../../src/callback-webhook/callback-processing';
import { SignatureSpec } from '../../src/callback-webhook/signature-spec';
import { CachedSecret, signCallback, tokensEqual, verifySignature } from '../../src/callback-webhook/signature-verification';
import { testStack } from '../util';

const ddbMock = mockClient(DynamoDBClient);
const sfnMock = mockClient(SFNClient);
const sqsMock = mockClient(SQSClient);
const clients = {
  dynamodb: new DynamoDBClient({ region: 'eu-west-1' }),
  sfn: new SFNClient({ region: 'eu-west-1' }),
  sqs: new SQSClient({ region: 'eu-west-1' }),
};

function specOf(signature: WebhookSignature): SignatureSpec {
  return signature._spec;
}
const secret = () => secretsmanager.Secret.fromSecretNameV2(testStack(), 'S', 'signing');
const headersOf = (h: Record<string, string>) => new Map(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));

describe('signature schemes', () => {
  test('GitHub: matches the vector in GitHub\'s "Validating webhook deliveries"', () => {
    // GIVEN the documented secret, payload and X-Hub-Signature-256
    const spec = specOf(WebhookSignature.github(secret()));
    const headers = headersOf({ 'X-Hub-Signature-256': 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' });

    // THEN it verifies, and the signer produces the same header
    expect(verifySignature(spec, 'It\'s a Secret to Everybody', Buffer.from('Hello, World!'), headers, 0)).toBeUndefined();
    expect(signCallback(spec, 'It\'s a Secret to Everybody', 'Hello, World!', 0)).toEqual({
      'X-Hub-Signature-256': 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
    });
    expect(verifySignature(spec, 'It\'s a Secret to Everybody', Buffer.from('Hello, World?'), headers, 0)).toMatch(/does not match/);
  });

  test('Standard Webhooks: matches the specification\'s test vector', () => {
    // GIVEN the specification's secret, id, timestamp, payload and signature
    const spec = specOf(WebhookSignature.standardWebhooks(secret()));
    const body = Buffer.from('{"test": 2432232314}');
    const headers = headersOf({
      'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      'webhook-timestamp': '1614265330',
      'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    });

    // THEN
    expect(verifySignature(spec, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', body, headers, 1614265330)).toBeUndefined();
    // The key without its whsec_ prefix works too; a rotation's second signature in the list is accepted.
    expect(verifySignature(spec, 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', body, headers, 1614265330)).toBeUndefined();
    const rotating = new Map(headers).set('webhook-signature', 'v1,AAAA v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
    expect(verifySignature(spec, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', body, rotating, 1614265330)).toBeUndefined();
    expect(signCallback(spec, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', body, 1614265330, 'msg_p5jXN8AQM9LWM0D4loKWxJek')['webhook-signature'])
      .toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
    // Another message id is another signed content.
    const otherId = new Map(headers).set('webhook-id', 'msg_other');
    expect(verifySignature(spec, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', body, otherId, 1614265330)).toMatch(/does not match/);
  });

  test('Stripe: t=...,v1=<hex> over "<t>.<body>" with the secret string as the key', () => {
    // GIVEN (Stripe publishes no fixed vector: computed independently here with createHmac)
    const spec = specOf(WebhookSignature.stripe(secret()));
    const body = '{"id":"evt_1","object":"event"}';
    const expected = createHmac('sha256', 'whsec_test').update(`1700000000.${body}`).digest('hex');

    // THEN
    expect(signCallback(spec, 'whsec_test', body, 1700000000)).toEqual({ 'Stripe-Signature': `t=1700000000,v1=${expected}` });
    const headers = headersOf({ 'Stripe-Signature': `t=1700000000,v1=deadbeef,v1=${expected},v0=zzz` });
    expect(verifySignature(spec, 'whsec_test', Buffer.from(body), headers, 1700000100)).toBeUndefined();
    expect(verifySignature(spec, 'whsec_test', Buffer.from(body), headersOf({ 'Stripe-Signature': `v1=${expected}` }), 1700000000))
      .toMatch(/exactly one t= timestamp/);
  });

  test.each([
    ['stale (6 minutes old)', 1700000000 - 360],
    ['from the future (6 minutes ahead)', 1700000000 + 360],
  ])('refuses a signed timestamp that is %s: replay protection', (_name, signedAt) => {
    const spec = specOf(WebhookSignature.stripe(secret()));
    const headers = headersOf(signCallback(spec, 'k', '{}', signedAt));
    expect(verifySignature(spec, 'k', Buffer.from('{}'), headers, 1700000000)).toMatch(/over the tolerance of 300 s/);
  });

  test('a custom scheme: base64, prefix, timestamp header and payload template round-trip; wrong secret, body or missing header fail', () => {
    const spec = specOf(WebhookSignature.hmacSha256({
      secret: secret(),
      signatureHeader: 'X-Sig',
      encoding: SignatureEncoding.BASE64,
      prefix: 'hmac-sha256=',
      timestampHeader: 'X-Sig-Time',
      signedPayload: 'v2:{timestamp}:{body}',
      secretEncoding: SecretEncoding.BASE64,
      tolerance: Duration.seconds(30),
    }));
    const key = Buffer.from('0123456789abcdef').toString('base64');
    const headers = headersOf(signCallback(spec, key, '{"a":1}', 1000));
    expect(headers.get('x-sig')).toMatch(/^hmac-sha256=[A-Za-z0-9+/]+=*$/);
    expect(verifySignature(spec, key, Buffer.from('{"a":1}'), headers, 1020)).toBeUndefined();
    expect(verifySignature(spec, key, Buffer.from('{"a":1}'), headers, 1031)).toMatch(/tolerance of 30 s/);
    expect(verifySignature(spec, Buffer.from('other').toString('base64'), Buffer.from('{"a":1}'), headers, 1000)).toMatch(/does not match/);
    expect(verifySignature(spec, key, Buffer.from('{"a":2}'), headers, 1000)).toMatch(/does not match/);
    expect(verifySignature(spec, key, Buffer.from('{"a":1}'), new Map(), 1000)).toBe('no X-Sig header');
    expect(verifySignature(spec, key, Buffer.from('{"a":1}'), headersOf({ 'X-Sig': 'hmac-sha256=x' }), 1000)).toMatch(/no valid timestamp/);
  });

  test.each([
    [{ signatureHeader: 'bad header' }, /signatureHeader/],
    [{ signatureHeader: 'X-Sig', signedPayload: '{timestamp}' }, /must contain \{body\} exactly once/],
    [{ signatureHeader: 'X-Sig', signedPayload: '{body}.{nonce}' }, /unknown \{nonce\}/],
    [{ signatureHeader: 'X-Sig', signedPayload: '{timestamp}.{body}' }, /set timestampHeader/],
    [{ signatureHeader: 'X-Sig', timestampHeader: 'X-Time', signedPayload: '{body}' }, /an unsigned timestamp protects nothing/],
    [{ signatureHeader: 'X-Sig', signedPayload: '{id}.{body}' }, /set idHeader/],
    [{ signatureHeader: 'X-Sig', timestampHeader: 'X-Time', tolerance: Duration.hours(2) }, /tolerance must be between 1 second and 1 hour/],
  ])('hmacSha256 fails on an invalid option (%j)', (options, message) => {
    expect(() => WebhookSignature.hmacSha256({ secret: secret(), ...options } as any)).toThrow(message);
  });

  test('tokensEqual compares in constant time, any lengths', () => {
    expect(tokensEqual('abc', 'abc')).toBe(true);
    expect(tokensEqual('abc', 'abd')).toBe(false);
    expect(tokensEqual('', 'abc')).toBe(false);
  });
});

describe('CachedSecret', () => {
  test('reads once per TTL, and a refresh reads again at most once per minimum interval', async () => {
    let now = 0;
    let value = 'v1';
    const read = jest.fn(async () => value);
    const cached = new CachedSecret({ read }, () => now, 300_000, 30_000);

    expect(await cached.get()).toBe('v1');
    now = 299_999;
    expect(await cached.get()).toBe('v1');
    expect(read).toHaveBeenCalledTimes(1);

    value = 'v2';
    now = 300_000;
    expect(await cached.get()).toBe('v2');
    expect(read).toHaveBeenCalledTimes(2);

    // A refresh right after a read does nothing (forged callbacks cannot flood Secrets Manager).
    now = 310_000;
    expect(await cached.refresh()).toBe(false);
    expect(read).toHaveBeenCalledTimes(2);
    value = 'v3';
    now = 330_000;
    expect(await cached.refresh()).toBe(true);
    expect(await cached.get()).toBe('v3');
  });
});

// ---------------------------------------------------------------------------------------------
// The processor
// ---------------------------------------------------------------------------------------------

const TOKEN = 'A'.repeat(43);
const NOW_MS = 1_700_000_000_000;
const config: CallbackConfig = {
  tableName: 'correlation-table',
  jobIdIndexName: 'ByJobId',
  jobIdPath: ['jobId'],
  failureStatusValues: [],
  deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/callback-dlq',
  requireCallbackToken: true,
};

function record(body: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): SQSRecord {
  const envelope = {
    v: 1,
    bodyBase64: Buffer.from(body).toString('base64'),
    headers: Object.fromEntries(Object.entries({ 'Content-Type': 'application/json', ...headers })
      .map(([k, v]) => [Buffer.from(k).toString('base64'), Buffer.from(v).toString('base64')])),
    receivedAtEpochMs: NOW_MS - 100,
    apiRequestId: 'api-1',
    ...extra,
  };
  return {
    messageId: 'm-1',
    receiptHandle: 'r-1',
    body: JSON.stringify(envelope),
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 'x', ApproximateFirstReceiveTimestamp: '0' },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:callback-queue',
    awsRegion: 'eu-west-1',
  };
}
const withToken = (token: string) => ({ callbackTokenBase64: Buffer.from(token).toString('base64') });
const logger = (): CallbackLogger => ({
  debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn(), appendKeys: jest.fn(), removeKeys: jest.fn(),
});

function metrics() {
  const counted: Record<string, number> = {};
  return { counted, addMetric: (name: string, _unit: string, value: number) => { counted[name] = (counted[name] ?? 0) + value; } };
}

function parked(): Array<{ reason?: string; detail?: string; body?: string }> {
  return sqsMock.commandCalls(SendMessageCommand).map((c) => ({
    reason: c.args[0].input.MessageAttributes?.reason?.StringValue,
    detail: c.args[0].input.MessageAttributes?.detail?.StringValue,
    body: c.args[0].input.MessageBody,
  }));
}

beforeEach(() => {
  ddbMock.reset();
  sfnMock.reset();
  sqsMock.reset();
  ddbMock.on(QueryCommand).resolves({ Items: [{ requestId: { S: 'req-1' }, jobId: { S: 'job-1' }, taskToken: { S: 'task-token-1' }, status: { S: 'SUBMITTED' } }] });
  ddbMock.on(GetItemCommand).resolves({ Item: { callbackToken: { S: TOKEN } } });
  ddbMock.on(UpdateItemCommand).resolves({});
  sfnMock.on(SendTaskSuccessCommand).resolves({});
  sfnMock.on(SendTaskFailureCommand).resolves({});
  sqsMock.on(SendMessageCommand).resolves({});
});

describe('processCallbackRecord, capability URL', () => {
  test('GIVEN the request\'s token WHEN processed THEN the workflow resumes (token read consistently by request id)', async () => {
    const m = metrics();
    await processCallbackRecord(record('{"jobId":"job-1"}', withToken(TOKEN)), clients, config, logger(), { metrics: m, now: () => NOW_MS });

    expect(sfnMock).toHaveReceivedCommandWith(SendTaskSuccessCommand, { taskToken: 'task-token-1' });
    expect(ddbMock).toHaveReceivedCommandWith(GetItemCommand, { Key: { requestId: { S: 'req-1' } }, ConsistentRead: true, ProjectionExpression: '#cbToken' });
    expect(m.counted).toMatchObject({ CallbacksResolved: 1 });
    expect(m.counted.CallbacksRejected).toBeUndefined();
  });

  test.each([
    ['a wrong token (a guessed job id)', withToken('B'.repeat(43)), /does not match the request of job id "job-1"/],
    ['no token', {}, /no callback token/],
    ['an empty token', withToken(''), /no callback token/],
  ])('GIVEN %s WHEN processed THEN nothing resumes, the callback is parked as CallbackRejected and counted', async (_name, extra, detail) => {
    const m = metrics();
    await processCallbackRecord(record('{"jobId":"job-1","result":{"forged":true}}', extra), clients, config, logger(), { metrics: m, now: () => NOW_MS });

    expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskFailureCommand);
    expect(ddbMock).not.toHaveReceivedCommand(UpdateItemCommand);
    const [p] = parked();
    expect(p.reason).toBe('CallbackRejected');
    expect(p.detail).toMatch(detail);
    expect(p.detail).not.toContain(TOKEN);
    expect(m.counted).toEqual({ CallbacksRejected: 1 });
  });

  test('GIVEN a request stored without a callback token WHEN a callback comes with any token THEN it is rejected', async () => {
    ddbMock.on(GetItemCommand).resolves({ Item: {} });
    await processCallbackRecord(record('{"jobId":"job-1"}', withToken(TOKEN)), clients, config, logger(), { metrics: metrics() });
    expect(parked()[0]).toMatchObject({ reason: 'CallbackRejected', detail: expect.stringMatching(/has no callback token/) });
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
  });

  test('GIVEN a forged callback for a finished request WHEN processed THEN it is rejected, not counted as a duplicate', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [{ requestId: { S: 'req-1' }, taskToken: { S: 't' }, status: { S: 'COMPLETED' } }] });
    const m = metrics();
    await processCallbackRecord(record('{"jobId":"job-1"}', withToken('C'.repeat(43))), clients, config, logger(), { metrics: m });
    expect(m.counted).toEqual({ CallbacksRejected: 1 });
  });

  test('GIVEN an authentic callback over maxPayloadBytes WHEN processed THEN it is parked as PAYLOAD_TOO_LARGE and the workflow fails with CallbackTooLarge', async () => {
    const m = metrics();
    const body = JSON.stringify({ jobId: 'job-1', data: 'x'.repeat(200) });
    await processCallbackRecord(record(body, withToken(TOKEN)), clients, { ...config, maxPayloadBytes: 100 }, logger(), { metrics: m });

    expect(parked()[0]).toMatchObject({ reason: 'PAYLOAD_TOO_LARGE', detail: expect.stringMatching(/over the webhook's maxPayloadSize of 100 bytes/) });
    expect(sfnMock).toHaveReceivedCommandWith(SendTaskFailureCommand, { taskToken: 'task-token-1', error: 'CallbackTooLarge' });
    expect(m.counted).toMatchObject({ CallbacksRejected: 1, CallbacksResolved: 1 });
  });
});

describe('processCallbackRecord, a body dropped at the webhook (too large for the callback queue)', () => {
  const droppedEnvelope = (jobIdJson: string | undefined, extra: Record<string, unknown> = {}) => ({
    bodyDropped: true,
    bodyBase64Length: 4_000_000,
    ...(jobIdJson === undefined ? {} : { jobIdJsonBase64: Buffer.from(jobIdJson).toString('base64') }),
    ...extra,
  });
  const spec = specOf(WebhookSignature.standardWebhooks(secret()));
  const SECRET = 'whsec_' + Buffer.from('a 32 byte key for the test suite').toString('base64');
  const signatureDeps = (m: ReturnType<typeof metrics>) => ({
    metrics: m, now: () => NOW_MS, signatureSecret: new CachedSecret({ read: async () => SECRET }, () => NOW_MS),
  });

  test.each([
    ['capability URL', config, (m: ReturnType<typeof metrics>) => ({ metrics: m })],
    ['capability URL and a signature (which cannot be checked without the body)', { ...config, signature: spec }, signatureDeps],
  ])('GIVEN the request\'s token (%s) WHEN processed THEN the callback is parked as PAYLOAD_TOO_LARGE and the workflow fails at once with CallbackTooLarge', async (_name, cfg, depsOf) => {
    const m = metrics();
    await processCallbackRecord(record('', { ...withToken(TOKEN), ...droppedEnvelope('"job-1"') }), clients, cfg, logger(), depsOf(m));

    expect(parked()[0]).toMatchObject({ reason: 'PAYLOAD_TOO_LARGE', detail: expect.stringMatching(/about 3000000 bytes .* dropped at the webhook \(answered 413\)/) });
    expect(sfnMock).toHaveReceivedCommandWith(SendTaskFailureCommand, { taskToken: 'task-token-1', error: 'CallbackTooLarge', cause: expect.stringMatching(/job job-1 .* about 3000000 bytes/) });
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
    expect(m.counted).toMatchObject({ CallbacksRejected: 1, CallbacksResolved: 1 });
  });

  test('GIVEN a numeric job id read at the webhook WHEN processed THEN it is looked up as a string', async () => {
    await processCallbackRecord(record('', { ...withToken(TOKEN), ...droppedEnvelope('42') }), clients, config, logger(), { metrics: metrics() });
    expect(ddbMock).toHaveReceivedCommandWith(QueryCommand, { ExpressionAttributeValues: { ':jobId': { S: '42' } } });
  });

  test('GIVEN a wrong token WHEN processed THEN nothing fails or resumes: CallbackRejected', async () => {
    const m = metrics();
    await processCallbackRecord(record('', { ...withToken('B'.repeat(43)), ...droppedEnvelope('"job-1"') }), clients, config, logger(), { metrics: m });
    expect(parked()[0]).toMatchObject({ reason: 'CallbackRejected' });
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskFailureCommand);
    expect(m.counted).toEqual({ CallbacksRejected: 1 });
  });

  test.each([
    ['no job id was found', undefined],
    ['the job id is not JSON', '{'],
    ['the job id is an object', '{"a":1}'],
  ])('GIVEN %s WHEN processed THEN it is parked as MISSING_JOB_ID, saying the body was dropped', async (_name, jobIdJson) => {
    const m = metrics();
    await processCallbackRecord(record('', { ...withToken(TOKEN), ...droppedEnvelope(jobIdJson) }), clients, config, logger(), { metrics: m });
    expect(parked()[0]).toMatchObject({ reason: 'MISSING_JOB_ID', detail: expect.stringMatching(/dropped at the webhook, which answered 413/) });
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskFailureCommand);
    expect(m.counted).toEqual({ CallbacksRejected: 1 });
  });

  test('GIVEN signature-only authentication WHEN processed THEN it cannot be verified: parked as PAYLOAD_TOO_LARGE, counted, no table read, no workflow touched', async () => {
    const m = metrics();
    await processCallbackRecord(record('', droppedEnvelope('"job-1"')), clients, { ...config, requireCallbackToken: false, signature: spec }, logger(), signatureDeps(m));

    expect(parked()[0]).toMatchObject({ reason: 'PAYLOAD_TOO_LARGE', detail: expect.stringMatching(/signature cannot be verified without it, so no workflow was resumed or failed/) });
    expect(ddbMock).not.toHaveReceivedCommand(QueryCommand);
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskFailureCommand);
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
    expect(m.counted).toEqual({ CallbacksRejected: 1 });
  });

  test('GIVEN a request already finished WHEN its dropped-body callback comes again THEN it is a duplicate', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [{ requestId: { S: 'req-1' }, taskToken: { S: 't' }, status: { S: 'COMPLETED' } }] });
    const m = metrics();
    await processCallbackRecord(record('', { ...withToken(TOKEN), ...droppedEnvelope('"job-1"') }), clients, config, logger(), { metrics: m });
    expect(m.counted).toEqual({ DuplicateCallbacks: 1 });
    expect(parked()).toEqual([]);
  });
});

describe('processCallbackRecord, vendor signature', () => {
  const spec = specOf(WebhookSignature.standardWebhooks(secret()));
  const SECRET = 'whsec_' + Buffer.from('a 32 byte key for the test suite').toString('base64');
  const signed = (body: string, at = NOW_MS / 1000, key = SECRET) => signCallback(spec, key, body, at, 'msg_1');
  const signedConfig: CallbackConfig = { ...config, requireCallbackToken: false, signature: spec };

  function deps(read: () => Promise<string> = async () => SECRET) {
    const m = metrics();
    return { m, deps: { metrics: m, now: () => NOW_MS, signatureSecret: new CachedSecret({ read }, () => NOW_MS) } };
  }

  test('GIVEN a valid signature WHEN processed THEN the workflow resumes', async () => {
    const body = '{"jobId":"job-1"}';
    const { m, deps: d } = deps();
    await processCallbackRecord(record(body, {}, signed(body)), clients, signedConfig, logger(), d);
    expect(sfnMock).toHaveReceivedCommand(SendTaskSuccessCommand);
    expect(m.counted).toMatchObject({ CallbacksResolved: 1 });
  });

  test.each([
    ['a bad signature', (body: string) => signed(body, NOW_MS / 1000, 'whsec_' + Buffer.from('another key').toString('base64')), /does not match/],
    ['no signature', () => ({}), /no webhook-signature header/],
    ['a stale timestamp (a replayed old signed body)', (body: string) => signed(body, NOW_MS / 1000 - 600), /over the tolerance of 300 s/],
  ])('GIVEN %s WHEN processed THEN it is rejected before any table read', async (_name, headersFor, detail) => {
    const body = '{"jobId":"job-1"}';
    const { m, deps: d } = deps();
    await processCallbackRecord(record(body, {}, headersFor(body)), clients, signedConfig, logger(), d);

    expect(ddbMock).not.toHaveReceivedCommand(QueryCommand);
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
    expect(parked()[0]).toMatchObject({ reason: 'CallbackRejected', detail: expect.stringMatching(detail) });
    expect(parked()[0].detail).not.toContain(SECRET);
    expect(m.counted).toEqual({ CallbacksRejected: 1 });
  });

  test('GIVEN a genuine callback that waited 20 minutes in the queue (backoff, redelivery, backlog) WHEN processed THEN the replay window is measured at its arrival, and it resumes the workflow', async () => {
    const body = '{"jobId":"job-1"}';
    const arrivedAtMs = NOW_MS - 20 * 60_000;
    const { m, deps: d } = deps();
    const waited = record(body, { receivedAtEpochMs: arrivedAtMs }, signed(body, arrivedAtMs / 1000 - 2));
    await processCallbackRecord(waited, clients, signedConfig, logger(), d);

    expect(parked()).toEqual([]);
    expect(sfnMock).toHaveReceivedCommand(SendTaskSuccessCommand);
    expect(m.counted).toMatchObject({ CallbacksResolved: 1, CallbackLatency: 20 * 60_000 });
  });

  test.each([
    ['signed 6 minutes before it reached the webhook', -360, NOW_MS],
    ['without an arrival time, against the processor\'s clock', -360, undefined],
  ])('GIVEN a callback %s WHEN processed THEN it is refused as stale', async (_name, signedOffsetSeconds, arrivedAtMs) => {
    const body = '{"jobId":"job-1"}';
    const { m, deps: d } = deps();
    const signedAt = (arrivedAtMs ?? NOW_MS) / 1000 + signedOffsetSeconds;
    await processCallbackRecord(record(body, { receivedAtEpochMs: arrivedAtMs }, signed(body, signedAt)), clients, signedConfig, logger(), d);

    expect(parked()[0]).toMatchObject({ reason: 'CallbackRejected', detail: expect.stringMatching(/over the tolerance of 300 s/) });
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
    expect(m.counted).toEqual({ CallbacksRejected: 1 });
  });

  test.each([
    ['only the whsec_ prefix', 'whsec_'],
    ['whitespace', ' \n'],
    ['invalid base64', 'whsec_@@@@'],
  ])('GIVEN a signing secret that is %s (no usable key) WHEN a callback signed with an empty key comes THEN nothing resumes: it is parked as SIGNING_SECRET_UNUSABLE, counted and logged', async (_name, bad) => {
    const body = '{"jobId":"job-1"}';
    // What anyone can compute when the key is empty: HMAC-SHA256 with a zero-length key.
    const at = NOW_MS / 1000;
    const forged = {
      'webhook-id': 'msg_1',
      'webhook-timestamp': String(at),
      'webhook-signature': `v1,${createHmac('sha256', Buffer.alloc(0)).update(`msg_1.${at}.${body}`).digest('base64')}`,
    };
    const log = logger();
    const { m, deps: d } = deps(async () => bad);
    await processCallbackRecord(record(body, {}, forged), clients, signedConfig, log, d);

    expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
    expect(ddbMock).not.toHaveReceivedCommand(QueryCommand);
    expect(parked()[0]).toMatchObject({ reason: 'SIGNING_SECRET_UNUSABLE', detail: expect.stringMatching(/the signing secret is unusable: .*fix the secret in Secrets Manager, then redrive/) });
    expect(m.counted).toEqual({ CallbacksRejected: 1 });
    expect(log.error).toHaveBeenCalledWith(expect.stringMatching(/gives no usable HMAC key/), expect.anything());
  });

  test('GIVEN a signing secret shorter than 16 bytes WHEN callbacks come THEN they are verified and one warning is logged', async () => {
    const SHORT = 'whsec_' + Buffer.from('ten bytes!').toString('base64');
    const log = logger();
    const { m, deps: d } = deps(async () => SHORT);
    for (const id of ['job-1', 'job-1']) {
      const body = `{"jobId":"${id}"}`;
      await processCallbackRecord(record(body, {}, signed(body, NOW_MS / 1000, SHORT)), clients, signedConfig, log, d);
    }
    expect(m.counted.CallbacksResolved).toBe(2);
    expect((log.warn as jest.Mock).mock.calls.filter(([msg]) => /10-byte HMAC key, under 16 bytes/.test(msg))).toHaveLength(1);
  });

  test('GIVEN the secret was rotated WHEN a callback signed with the new one comes THEN the secret is read again once and the callback accepted', async () => {
    const NEW = 'whsec_' + Buffer.from('the rotated key of the test suite').toString('base64');
    const reads = [SECRET, NEW];
    const read = jest.fn(async () => reads.shift()!);
    const m = metrics();
    let now = NOW_MS;
    const signatureSecret = new CachedSecret({ read }, () => now);
    await signatureSecret.get(); // cached before the rotation
    now += 60_000;
    const body = '{"jobId":"job-1"}';
    await processCallbackRecord(record(body, {}, signCallback(spec, NEW, body, now / 1000, 'msg_1')), clients, signedConfig, logger(),
      { metrics: m, now: () => now, signatureSecret });
    expect(read).toHaveBeenCalledTimes(2);
    expect(m.counted).toMatchObject({ CallbacksResolved: 1 });
  });

  test('GIVEN both a capability token and a signature WHEN the token is right but the signature wrong THEN it is rejected', async () => {
    const body = '{"jobId":"job-1"}';
    const { m, deps: d } = deps();
    await processCallbackRecord(record(body, withToken(TOKEN), signed(body, NOW_MS / 1000, 'whsec_AAAA')), clients,
      { ...signedConfig, requireCallbackToken: true }, logger(), d);
    expect(m.counted).toEqual({ CallbacksRejected: 1 });
  });
});
