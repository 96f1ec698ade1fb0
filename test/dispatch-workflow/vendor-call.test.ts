import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { createRequestPreparer } from '../../src/dispatch-workflow/prepared-request';
import { callVendor, pacingUserAgent, parseRetryAfterMs, VendorCallConfig, VendorCallDeps, VendorCallError } from '../../src/dispatch-workflow/vendor-call';

const ddb = mockClient(DynamoDBClient);
const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined } as any;
let server: http.Server;
let base: string;
let answer: { status: number; headers?: Record<string, string>; body: string; delayMs?: number };
const received: Array<{ at: number; headers: http.IncomingHttpHeaders; body: string }> = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ at: Date.now(), headers: req.headers, body });
      setTimeout(() => {
        res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
        res.end(answer.body);
      }, answer.delayMs ?? 0);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/vendor/`;
});
afterAll(() => new Promise((r) => server.close(r)));
beforeEach(() => {
  ddb.reset();
  received.length = 0;
  ddb.on(GetItemCommand).resolves({});
  ddb.on(UpdateItemCommand).resolves({});
});

function deps(overrides: Partial<VendorCallConfig> = {}): VendorCallDeps {
  return {
    dynamodb: new DynamoDBClient({ region: 'us-east-1' }),
    config: {
      proxyUrl: base,
      region: 'us-east-1',
      requestsPerSecond: 10,
      pacerTableName: 'pacer',
      latenessToleranceMs: 30,
      fireToleranceMs: 10,
      maxSlotWaitMs: 2000,
      callTimeoutMs: 500,
      defaultPauseMs: 1000,
      maxPauseMs: 900_000,
      ...overrides,
    },
    sign: async ({ headers }) => ({ ...headers, authorization: 'signed' }),
    fetch: (url, init) => fetch(url, init),
    logger: silent,
  };
}

describe('callVendor', () => {
  test('GIVEN an on-time slot WHEN calling THEN the signed request fires at the slot and the response comes back', async () => {
    answer = { status: 200, body: '{"jobId":"j-1"}' };
    const slot = Date.now() + 300;
    const firedAt: number[] = [];
    const callerDeps = deps();
    const result = await callVendor({ method: 'POST', headers: { 'Idempotency-Key': ['r-1'] }, body: { a: 1 }, requestId: 'r-1', slotAtMs: slot }, {
      ...callerDeps,
      fetch: (url, init) => {
        firedAt.push(Date.now());
        return callerDeps.fetch(url, init);
      },
    });
    expect(result).toMatchObject({ statusCode: 200, body: { jobId: 'j-1' }, requeue: null });
    // Fired once, not before its slot, and at that slot: a late caller would have given it up and
    // reserved another one (how precisely it fires is the benchmark's to measure, not a unit test's).
    expect(firedAt).toHaveLength(1);
    expect(firedAt[0]).toBeGreaterThanOrEqual(slot);
    expect(received[0].at).toBeGreaterThanOrEqual(slot);
    expect(received[0].headers.authorization).toBe('signed');
    expect(received[0].headers['idempotency-key']).toBe('r-1');
    // The slot goes with the request, for the access log's single-clock lateness check.
    expect(received[0].headers['user-agent']).toMatch(new RegExp(`^cdk-async-external-api-vendor-caller/[0-9a-f]{12} slot/${slot}$`));
    expect(JSON.parse(received[0].body)).toEqual({ a: 1 });
    // the pause was re-read (consistent) before firing
    expect(ddb.commandCalls(GetItemCommand).some((c) => c.args[0].input.ConsistentRead === true)).toBe(true);
  });

  test('GIVEN a request preparer WHEN calling THEN the request is built before the slot and written at it', async () => {
    answer = { status: 202, headers: { 'x-vendor': 'v' }, body: '{"jobId":"j-prepared"}' };
    const slot = Date.now() + 300;
    const prepared: number[] = [];
    const preparer = createRequestPreparer();
    const result = await callVendor({ requestId: 'r-prepared', headers: { 'Idempotency-Key': 'r-prepared' }, body: { a: 1 }, slotAtMs: slot }, {
      ...deps(),
      fetch: () => Promise.reject(new Error('fetch is not used when requests are prepared')),
      prepare: (url, init) => {
        prepared.push(Date.now());
        return preparer(url, init);
      },
    });
    expect(result).toMatchObject({ statusCode: 202, body: { jobId: 'j-prepared' }, headers: expect.objectContaining({ 'x-vendor': 'v' }) });
    expect(prepared).toHaveLength(1);
    expect(prepared[0]).toBeLessThan(slot);
    expect(received).toHaveLength(1);
    expect(received[0].at).toBeGreaterThanOrEqual(slot);
    expect(received[0].headers.authorization).toBe('signed');
    expect(received[0].headers['user-agent']).toBe(pacingUserAgent(slot));
    expect(JSON.parse(received[0].body)).toEqual({ a: 1 });
  });

  test('GIVEN two slots WHEN naming them in the User-Agent THEN the container part is the same and the slot is exact', () => {
    const [a, b] = [pacingUserAgent(1_796_638_446_418.5), pacingUserAgent(1_796_638_446_521.6005859375)];
    expect(a).toMatch(/^cdk-async-external-api-vendor-caller\/[0-9a-f]{12} slot\/1796638446418\.5$/);
    expect(b.split(' ')[0]).toBe(a.split(' ')[0]);
    expect(Number(b.split('slot/')[1])).toBe(1_796_638_446_521.6005859375);
  });

  test('GIVEN a pause check that has not answered by the slot WHEN calling THEN the request fires at its slot without it', async () => {
    answer = { status: 202, body: '{"jobId":"j-slow-read"}' };
    // The consistent read of the pause takes longer than the margin before the slot (a loaded table).
    ddb.on(GetItemCommand).callsFake(() => new Promise((resolve) => setTimeout(() => resolve({}), 400)));
    const metrics: string[] = [];
    const slot = Date.now() + 300;
    const result = await callVendor({ requestId: 'r-slow-read', body: {}, slotAtMs: slot }, {
      ...deps(), metrics: { addMetric: (name) => metrics.push(name) },
    });
    expect(result.statusCode).toBe(202);
    expect(received).toHaveLength(1);
    // On time (the slot is not given up for a slow read): it fired before the read answered.
    expect(received[0].at).toBeGreaterThanOrEqual(slot);
    expect(received[0].at).toBeLessThan(slot + 300);
    expect(metrics).toContain('PauseChecksSkipped');
    expect(metrics).not.toContain('SlotsGivenUp');
  });

  test('GIVEN a failing pause check WHEN calling THEN the request still fires at its slot, and the failure is counted', async () => {
    answer = { status: 202, body: '{"jobId":"j-failed-read"}' };
    ddb.on(GetItemCommand).rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));
    const metrics: string[] = [];
    const warnings: string[] = [];
    const result = await callVendor({ requestId: 'r-failed-read', body: {}, slotAtMs: Date.now() + 200 }, {
      ...deps(), metrics: { addMetric: (name) => metrics.push(name) }, logger: { ...silent, warn: (m: string) => warnings.push(m) },
    });
    expect(result.statusCode).toBe(202);
    expect(received).toHaveLength(1);
    expect(metrics).toContain('PauseChecksSkipped');
    expect(warnings.some((w) => /could not read the vendor pause/.test(w))).toBe(true);
  });

  test('GIVEN a 429 with Retry-After WHEN calling THEN the pause moves forward in the pacer item and ApiGateway.429 is thrown', async () => {
    answer = { status: 429, headers: { 'retry-after': '7' }, body: 'slow down' };
    const before = Date.now();
    const error = await callVendor({ requestId: 'r-2', slotAtMs: Date.now() + 150 }, deps()).catch((e) => e);
    expect(error).toBeInstanceOf(VendorCallError);
    expect(error.name).toBe('ApiGateway.429');
    const update = ddb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input).find((i) => i.UpdateExpression === 'SET #paused = :until')!;
    expect(update.ConditionExpression).toBe('attribute_not_exists(#paused) OR #paused < :until');
    expect(Number(update.ExpressionAttributeValues![':until'].N) - before).toBeGreaterThanOrEqual(7000);
  });

  test('GIVEN a pause longer than the wait budget WHEN calling THEN the request is requeued without calling the vendor', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'pacer' }, pausedUntilMs: { N: String(Date.now() + 60_000) } } });
    const result = await callVendor({ requestId: 'r-3', slotAtMs: Date.now() + 120 }, deps());
    expect(result.requeue).toMatchObject({ reason: 'VendorPaused' });
    expect(result.requeue!.delaySeconds).toBeGreaterThanOrEqual(59);
    expect(received).toHaveLength(0);
  });

  test('GIVEN a late slot WHEN calling THEN it is given up and a fresh slot reserved', async () => {
    answer = { status: 200, body: '{}' };
    const result = await callVendor({ requestId: 'r-4', slotAtMs: Date.now() - 5000 }, deps());
    expect(result.statusCode).toBe(200);
    expect(ddb.commandCalls(UpdateItemCommand).some((c) => c.args[0].input.UpdateExpression === 'SET #next = :new')).toBe(true);
  });

  test('GIVEN a vendor slower than the call timeout WHEN calling THEN a retryable VendorCallTimeout is thrown', async () => {
    answer = { status: 200, body: '{}', delayMs: 1500 };
    const error = await callVendor({ requestId: 'r-5', slotAtMs: Date.now() + 120 }, deps({ callTimeoutMs: 200 })).catch((e) => e);
    expect(error.name).toBe('VendorCallTimeout');
  });

  test('GIVEN a 400 WHEN calling THEN ApiGateway.400 carries the body', async () => {
    answer = { status: 400, body: '{"error":"bad"}' };
    const error = await callVendor({ requestId: 'r-6', slotAtMs: Date.now() + 120 }, deps()).catch((e) => e);
    expect(error.name).toBe('ApiGateway.400');
    expect(error.message).toContain('bad');
  });
});

describe('parseRetryAfterMs', () => {
  test('reads seconds and HTTP dates, caps them, ignores garbage', () => {
    const now = Date.parse('2026-11-28T00:00:00Z');
    expect(parseRetryAfterMs('3', now, 900_000)).toBe(3000);
    expect(parseRetryAfterMs('Sat, 28 Nov 2026 00:00:10 GMT', now, 900_000)).toBe(10_000);
    expect(parseRetryAfterMs('99999', now, 900_000)).toBe(900_000);
    expect(parseRetryAfterMs('soon', now, 900_000)).toBeUndefined();
    expect(parseRetryAfterMs(null, now, 900_000)).toBeUndefined();
  });
});
