import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { VendorAccounts } from '../../local/vendor-accounts';
import { VendorSimulatorHost } from '../../local/vendor-host';
import { VendorJobsInFlight } from '../../local/vendor-jobs-in-flight';
import { maxInAnyWindow, VendorSimulator, VendorSimulatorOptions } from '../../local/vendor-simulator';

// ---------------------------------------------------------------------------------------------
// Helpers: a webhook that records callbacks, plain HTTP calls, waiting
// ---------------------------------------------------------------------------------------------

interface Received {
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  /** Whether the submission of the same test had been answered when the callback arrived. */
  readonly submissionAnswered: boolean;
}

/** Stand-in for the webhook: records every callback and answers with the next scripted status (200 when none). */
class Webhook {
  public readonly received: Received[] = [];
  public statuses: number[] = [];
  public submissionAnswered = false;
  private server?: http.Server;

  public async start(): Promise<string> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), submissionAnswered: this.submissionAnswered });
        res.writeHead(this.statuses.shift() ?? 200, { 'Content-Type': 'application/json' });
        res.end('{}');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  public reset(): void {
    this.received.length = 0;
    this.statuses = [];
    this.submissionAnswered = false;
  }

  public stop(): Promise<void> {
    return new Promise((resolve) => {
      this.server?.close(() => resolve());
      this.server?.closeAllConnections();
    });
  }
}

interface Response {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: any;
}

function call(url: string, options: { method?: string; headers?: Record<string, string>; body?: unknown } = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : Buffer.from(typeof options.body === 'string' ? options.body : JSON.stringify(options.body));
    const req = http.request(url, {
      method: options.method ?? 'POST',
      agent: false,
      headers: { 'Content-Type': 'application/json', ...(options.headers ?? {}), ...(body ? { 'Content-Length': String(body.length) } : {}) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : undefined });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function waitFor(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`condition not met within ${timeoutMs} ms`);
    }
    await sleep(10);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------

const WEBHOOK_URL = 'https://abc123.execute-api.us-east-1.amazonaws.com/webhook/callback';
const CREDENTIALS = { 'X-Vendor-Signature': 'genuine' };

const webhook = new Webhook();
let webhookBase: string;
const running: VendorSimulator[] = [];

/** A started simulator that calls back on the local webhook; stopped after the test. */
async function startVendor(options: Partial<VendorSimulatorOptions> = {}): Promise<{ vendor: VendorSimulator; base: string }> {
  const vendor = new VendorSimulator({
    requestsPerSecond: 100,
    callbackDelayMs: 10,
    callbackRetryBaseMs: 10,
    callbackHeaders: CREDENTIALS,
    jobIdPrefix: 'job',
    rewriteUrl: (url) => url.replace('https://abc123.execute-api.us-east-1.amazonaws.com', webhookBase),
    ...options,
  });
  running.push(vendor);
  return { vendor, base: await vendor.start() };
}

/** Submits a job for `requestId` and marks the webhook's view of "answered". */
async function submit(base: string, requestId: string, extra: Record<string, unknown> = {}): Promise<Response> {
  const res = await call(`${base}/v1/jobs`, { headers: { 'Idempotency-Key': requestId }, body: { requestId, callbackUrl: WEBHOOK_URL, order: { id: 7 }, ...extra } });
  webhook.submissionAnswered = true;
  return res;
}

beforeAll(async () => {
  webhookBase = await webhook.start();
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((v) => v.stop()));
  webhook.reset();
});

afterAll(async () => {
  await webhook.stop();
});

describe('VendorSimulator: jobs and callbacks', () => {
  test('accepts a job with 202 {"jobId"} after latencyMs', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ latencyMs: 150 });

    // WHEN
    const started = Date.now();
    const res = await submit(base, 'r-1');
    const elapsed = Date.now() - started;

    // THEN
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ jobId: 'job-1' });
    expect(elapsed).toBeGreaterThanOrEqual(145);
    expect(vendor.arrivals()).toHaveLength(1);
    expect(vendor.stats()).toMatchObject({ submissions: 1, accepted: 1, rejected429ByContract: 0 });
  });

  test('calls back once with the submitted body minus callbackUrl, carrying the credentials', async () => {
    // GIVEN
    const { vendor, base } = await startVendor();

    // WHEN
    await submit(base, 'r-1');
    await waitFor(() => webhook.received.length >= 1);
    await sleep(100);

    // THEN
    expect(webhook.received).toHaveLength(1);
    expect(JSON.parse(webhook.received[0].body)).toEqual({
      jobId: 'job-1',
      requestId: 'r-1',
      status: 'SUCCEEDED',
      result: { echo: { requestId: 'r-1', order: { id: 7 } } },
    });
    expect(webhook.received[0].headers['x-vendor-signature']).toBe('genuine');
    expect(webhook.received[0].submissionAnswered).toBe(true);
    expect(vendor.stats()).toMatchObject({ callbacksSent: 1, callbacksDelivered: 1, callbacksFailed: 0, forgedSent: 0 });
  });

  test('takes the callback URL from X-Callback-Url and the request id from X-Request-Id', async () => {
    // GIVEN
    const { base } = await startVendor();

    // WHEN
    const res = await call(`${base}/submit`, { headers: { 'X-Request-Id': 'r-h', 'X-Callback-Url': WEBHOOK_URL }, body: { a: 1 } });
    await waitFor(() => webhook.received.length >= 1);

    // THEN
    expect(res.status).toBe(202);
    expect(JSON.parse(webhook.received[0].body)).toMatchObject({ requestId: 'r-h', result: { echo: { a: 1 } } });
  });

  test('duplicateCallbackRate 1: the callback is sent twice', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ duplicateCallbackRate: 1 });

    // WHEN
    await submit(base, 'r-1');
    await waitFor(() => webhook.received.length >= 2);
    await sleep(100);

    // THEN
    expect(webhook.received).toHaveLength(2);
    expect(webhook.received[0].body).toBe(webhook.received[1].body);
    expect(vendor.callbacks().map((c) => c.kind)).toEqual(['genuine', 'duplicate']);
  });

  test('noCallbackRate 1: the callback is never sent', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ noCallbackRate: 1 });

    // WHEN
    const res = await submit(base, 'r-1');
    await sleep(200);

    // THEN
    expect(res.status).toBe(202);
    expect(webhook.received).toHaveLength(0);
    expect(vendor.stats().requests['r-1'].faults).toEqual(['noCallback']);
  });

  test('earlyCallbackRate 1: the callback arrives before the submission is answered', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ earlyCallbackRate: 1 });

    // WHEN
    const res = await submit(base, 'r-1');

    // THEN the webhook already had it when the answer came
    expect(res.status).toBe(202);
    expect(webhook.received).toHaveLength(1);
    expect(webhook.received[0].submissionAnswered).toBe(false);
    expect(JSON.parse(webhook.received[0].body).jobId).toBe(res.body.jobId);
    expect(vendor.callbacks()[0].early).toBe(true);
  });

  test('malformedCallbackRate 1: the callback body is not JSON', async () => {
    // GIVEN
    const { base } = await startVendor({ malformedCallbackRate: 1 });

    // WHEN
    await submit(base, 'r-1');
    await waitFor(() => webhook.received.length >= 1);

    // THEN
    expect(() => JSON.parse(webhook.received[0].body)).toThrow();
    expect(webhook.received[0].body).toContain('"jobId":"job-1"');
  });

  test('forgedCallbackRate 1: a forged callback without credentials comes first, then the real one', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ forgedCallbackRate: 1 });

    // WHEN
    await submit(base, 'r-1');
    await waitFor(() => webhook.received.length >= 2);

    // THEN
    const [forged, real] = webhook.received;
    expect(JSON.parse(forged.body)).toEqual({ jobId: 'job-1', requestId: 'r-1', status: 'SUCCEEDED', result: { forged: true } });
    expect(forged.headers['x-vendor-signature']).toBeUndefined();
    expect(JSON.parse(real.body).result).toEqual({ echo: { requestId: 'r-1', order: { id: 7 } } });
    expect(real.headers['x-vendor-signature']).toBe('genuine');
    expect(vendor.stats()).toMatchObject({ forgedSent: 1, callbacksSent: 1 });
    expect(vendor.stats().requests['r-1'].forged).toBe(true);
  });

  test('retries a callback answered 503 and records it delivered', async () => {
    // GIVEN a webhook that fails twice
    const { vendor, base } = await startVendor();
    webhook.statuses = [503, 429];

    // WHEN
    await submit(base, 'r-1');
    await waitFor(() => webhook.received.length >= 3);
    await waitFor(() => vendor.callbacks()[0]?.outcome !== 'pending');

    // THEN
    expect(vendor.callbacks()[0]).toMatchObject({ attempts: 3, results: [503, 429, 200], outcome: 'delivered' });
    expect(vendor.stats()).toMatchObject({ callbacksDelivered: 1, callbacksFailed: 0, callbackAttempts: 3 });
  });

  test('gives up on a callback after its retries and on a 4xx at once', async () => {
    // GIVEN a webhook that always fails
    const { vendor, base } = await startVendor({ callbackRetries: 2 });
    const settled = (n: number) => () => vendor.callbacks().length === n && vendor.callbacks().every((c) => c.outcome !== 'pending');

    // WHEN r-1's callback meets 500s only, then r-2's a 400
    webhook.statuses = [500, 500, 500];
    await submit(base, 'r-1');
    await waitFor(settled(1));
    webhook.statuses = [400];
    await submit(base, 'r-2');
    await waitFor(settled(2));

    // THEN
    expect(vendor.callbacks().map((c) => [c.requestId, c.results, c.outcome])).toEqual([
      ['r-1', [500, 500, 500], 'failed'],
      ['r-2', [400], 'failed'],
    ]);
    expect(vendor.stats().callbacksFailed).toBe(2);
  });

  test('stop() cancels pending callbacks', async () => {
    // GIVEN a callback due in 200 ms
    const { vendor, base } = await startVendor({ callbackDelayMs: 200 });
    await submit(base, 'r-1');

    // WHEN the vendor stops first
    await vendor.stop();
    await sleep(400);

    // THEN
    expect(webhook.received).toHaveLength(0);
    expect(vendor.stats().callbacksDelivered).toBe(0);
  });
});

describe('VendorSimulator: submission faults', () => {
  test('errorRate 1, errorAttempts 2: two 503s, then accepted', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ errorRate: 1, errorAttempts: 2 });

    // WHEN
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      statuses.push((await submit(base, 'r-1')).status);
    }

    // THEN
    expect(statuses).toEqual([503, 503, 202]);
    expect(vendor.stats().faultAnswers.error).toBe(2);
    expect(vendor.stats().requests['r-1']).toMatchObject({ submissions: 3, accepted: 1, jobId: 'job-1' });
    // The callback follows the accepted submission, not the first (refused) one: the demo dates timeouts by it.
    const record = vendor.stats().requests['r-1'];
    expect(record.firstAcceptedAtMs).toBeGreaterThanOrEqual(record.firstSubmissionAtMs!);
  });

  test('rejectRate 1: 400 on every submission, never a job', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ rejectRate: 1 });

    // WHEN
    const statuses = [(await submit(base, 'r-1')).status, (await submit(base, 'r-1')).status];

    // THEN
    expect(statuses).toEqual([400, 400]);
    expect(vendor.stats().accepted).toBe(0);
  });

  test('throttleRate 1: the first submission gets 429 with Retry-After: 1, the next is accepted', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ throttleRate: 1 });

    // WHEN
    const first = await submit(base, 'r-1');
    const second = await submit(base, 'r-1');

    // THEN
    expect(first.status).toBe(429);
    expect(first.headers['retry-after']).toBe('1');
    expect(second.status).toBe(202);
    expect(vendor.stats()).toMatchObject({ rejected429ByContract: 0, violations: 0 });
  });

  test('slowRate 1: answers slowMs later', async () => {
    // GIVEN
    const { base } = await startVendor({ slowRate: 1, slowMs: 200 });

    // WHEN
    const started = Date.now();
    const res = await submit(base, 'r-1');

    // THEN
    expect(res.status).toBe(202);
    expect(Date.now() - started).toBeGreaterThanOrEqual(195);
  });

  test('refuses a submission without a request id', async () => {
    // GIVEN
    const { base } = await startVendor();

    // WHEN
    const res = await call(`${base}/v1/jobs`, { body: { callbackUrl: WEBHOOK_URL } });

    // THEN
    expect(res.status).toBe(400);
  });

  test('faults are decided per request id by the seed: same seed, same faults', () => {
    // GIVEN
    const rates = { errorRate: 0.5, duplicateCallbackRate: 0.3, forgedCallbackRate: 0.2, requestsPerSecond: 10 };
    const ids = Array.from({ length: 200 }, (_, i) => `req-${i}`);
    const a = new VendorSimulator({ ...rates, seed: 7 });
    const b = new VendorSimulator({ ...rates, seed: 7 });
    const c = new VendorSimulator({ ...rates, seed: 8 });

    // WHEN
    const faultsA = ids.map((id) => a.faultsOf(id));
    const faultsB = ids.map((id) => b.faultsOf(id));
    const faultsC = ids.map((id) => c.faultsOf(id));

    // THEN
    expect(faultsB).toEqual(faultsA);
    expect(faultsC).not.toEqual(faultsA);
    const errors = faultsA.filter((f) => f.includes('error')).length;
    expect(errors).toBeGreaterThan(70);
    expect(errors).toBeLessThan(130);
  });

  test('a retried request meets the same fault decision as its first attempt', async () => {
    // GIVEN a rate that hits some ids, not others
    const { vendor, base } = await startVendor({ rejectRate: 0.5, seed: 3 });
    const ids = Array.from({ length: 10 }, (_, i) => `r-${i}`);

    // WHEN each id is submitted twice
    const first = [];
    const second = [];
    for (const id of ids) {
      first.push((await submit(base, id)).status);
    }
    for (const id of ids) {
      second.push((await submit(base, id)).status);
    }

    // THEN
    expect(second).toEqual(first);
    expect(first.map((s) => s === 400)).toEqual(ids.map((id) => vendor.faultsOf(id).includes('reject')));
  });
});

describe('VendorSimulator: contract enforcement', () => {
  test('three times the contract in one second: 429s, violations counted, every arrival kept', async () => {
    // GIVEN a contract of 5 per second
    const { vendor, base } = await startVendor({ requestsPerSecond: 5 });

    // WHEN 15 requests arrive at once
    const responses = await Promise.all(Array.from({ length: 15 }, (_, i) => submit(base, `r-${i}`)));

    // THEN
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 202)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(10);
    expect(vendor.stats()).toMatchObject({ submissions: 15, accepted: 5, rejected429ByContract: 10, violations: 10, maxInAnyWindow: 15 });
    expect(vendor.arrivals()).toHaveLength(15);
  });

  test('a closed window [t - 1000 ms, t] (the default): an arrival exactly 1 s earlier is in it', async () => {
    // GIVEN arrivals at chosen times and a contract of 3
    const times = [0, 100, 900, 1000, 1050, 2100].map((t) => 1_700_000_000_000 + t);
    let next = 0;
    const { vendor, base } = await startVendor({ requestsPerSecond: 3.9, clock: () => times[next++] });

    // WHEN they arrive one by one
    const statuses = [];
    for (let i = 0; i < times.length; i++) {
      statuses.push((await submit(base, `r-${i}`)).status);
    }

    // THEN at 1000 the window [0, 1000] holds 4: one over floor(3.9); at 1050, [50, 1050] holds 4 too
    expect(statuses).toEqual([202, 202, 202, 429, 429, 202]);
    expect(vendor.stats()).toMatchObject({ violations: 2, maxInAnyWindow: 4 });
    expect(maxInAnyWindow([0, 1000])).toBe(2);
    expect(maxInAnyWindow([0, 1000], false)).toBe(1);
  });

  test('a quota of 3 per 3 s (issue 14): a 4th call in a period gets 429 with Retry-After until the period ends and counts as a quota violation; the next period starts afresh', async () => {
    // GIVEN a quota of 3 calls per epoch-aligned 3 s period, and calls at chosen times (rate far below the contract)
    const times = [0, 500, 1000, 2000, 2999, 3000, 4000].map((t) => 1_800_000_000_000 + t);
    let next = 0;
    const { vendor, base } = await startVendor({ requestsPerSecond: 100, quota: { limit: 3, periodMs: 3000 }, clock: () => times[next++] });

    // WHEN they arrive one by one
    const answers = [];
    for (let i = 0; i < times.length; i++) {
      answers.push(await submit(base, `q-${i}`));
    }

    // THEN the 4th and 5th of the first period are refused, and those of the next period accepted
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 429, 429, 202, 202]);
    expect(answers[3].headers['retry-after']).toBe('1');
    expect(vendor.stats()).toMatchObject({ quotaMaxInAnyPeriod: 5, quotaViolations: 2, accepted: 5, violations: 0 });
    expect(() => new VendorSimulator({ requestsPerSecond: 1, quota: { limit: 0, periodMs: 1000 } })).toThrow(/quota must have a whole limit above 0/);
  });

  test('named limits (issue 14, item 3): a result fetch beyond 2 in a sliding second of GETs gets 429 and counts against that limit only; submissions are not bound by it', async () => {
    // GIVEN a 'results' limit of 2 RPS on GETs below /v1/jobs, inside a contract of 100, and calls at chosen times
    const times = [0, 100, 200, 300, 1000, 1150, 1200].map((t) => 1_800_000_000_000 + t);
    let next = 0;
    const { vendor, base } = await startVendor({
      requestsPerSecond: 100, limits: [{ name: 'results', requestsPerSecond: 2, methods: ['GET'] }], limitBasePath: '/v1/jobs', clock: () => times[next++],
    });

    // WHEN a submission at 0 s, result fetches at 0.1 and 0.2 s, a submission at 0.3 s, result fetches at 1.0, 1.15 and 1.2 s
    const answers = [await submit(base, 'l-0')];
    answers.push(await call(`${base}/v1/jobs/job-1/result`, { method: 'GET' }));
    answers.push(await call(`${base}/v1/jobs/job-1/result`, { method: 'GET' }));
    answers.push(await submit(base, 'l-1'));
    for (let i = 0; i < 3; i++) {
      answers.push(await call(`${base}/v1/jobs/job-1/result`, { method: 'GET' }));
    }

    // THEN the fetch at 1.0 s makes [0, 1.0] hold 3 fetches (0.1, 0.2, 1.0): refused; at 1.15 s
    // [0.15, 1.15] holds 3 (0.2, 1.0, 1.15), at 1.2 s [0.2, 1.2] holds 4: refused (refused calls count too)
    expect(answers.map((a) => a.status)).toEqual([202, 200, 200, 202, 429, 429, 429]);
    expect(answers[4].body).toEqual({ error: "limit 'results' exceeded: at most 2 of its calls in any second" });
    expect(vendor.stats()).toMatchObject({ limitViolations: { results: 3 }, limitMaxInAnyWindow: { results: 4 }, violations: 0, accepted: 2 });
  });

  test('a real limit below the contract (issue 14, item 5): a call finding floor(limit) calls in its second gets 429 without Retry-After, counted as a refusal for the real limit, not a contract violation', async () => {
    // GIVEN a contract of 10 and a real limit of 2, and calls at chosen times
    const times = [0, 100, 200, 900, 1201, 1300].map((t) => 1_800_000_000_000 + t);
    let next = 0;
    const { vendor, base } = await startVendor({ requestsPerSecond: 10, realLimitRps: 2, clock: () => times[next++] });

    // WHEN they arrive one by one
    const answers = [];
    for (let i = 0; i < times.length; i++) {
      answers.push(await submit(base, `r-${i}`));
    }

    // THEN a call whose window already holds 2 (refused calls count) is refused: 200 and 900 within
    // [0, 1000]; 1201 finds only 900 in [201, 1201]; 1300 finds 900 and 1201
    expect(answers.map((a) => a.status)).toEqual([202, 202, 429, 429, 202, 429]);
    expect(answers[2].headers['retry-after']).toBeUndefined();
    expect(vendor.stats()).toMatchObject({ realLimitRefusals: 3, violations: 0, accepted: 3 });

    // AND once the limit is lifted, the contract is the limit again
    vendor.setRealLimit(undefined);
    expect(() => new VendorSimulator({ requestsPerSecond: 10, realLimitRps: 0 })).toThrow(/realLimitRps must be above 0/);
  });

  test('a half-open window (t - 1000 ms, t] when asked: an arrival exactly 1 s earlier is out of it', async () => {
    // GIVEN arrivals at chosen times and a contract of 3
    const times = [0, 100, 900, 1000, 1050, 2100].map((t) => 1_700_000_000_000 + t);
    let next = 0;
    const { vendor, base } = await startVendor({ requestsPerSecond: 3.9, window: 'half-open', clock: () => times[next++] });

    // WHEN they arrive one by one
    const statuses = [];
    for (let i = 0; i < times.length; i++) {
      statuses.push((await submit(base, `r-${i}`)).status);
    }

    // THEN at 1000 the window (0, 1000] holds 3; at 1050 (50, 1050] holds 4: one over floor(3.9)
    expect(statuses).toEqual([202, 202, 202, 202, 429, 202]);
    expect(vendor.stats()).toMatchObject({ violations: 1, maxInAnyWindow: 4 });
    expect(vendor.arrivals()).toEqual(times);
  });

  test('counts request ids accepted more than once as duplicate vendor calls', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ noCallbackRate: 1 });

    // WHEN r-1 is accepted twice, r-2 once
    await submit(base, 'r-1');
    await submit(base, 'r-1');
    await submit(base, 'r-2');

    // THEN
    const stats = vendor.stats();
    expect(stats.duplicateVendorCalls).toBe(1);
    expect(stats.requests['r-1']).toMatchObject({ accepted: 2, jobIds: ['job-1', 'job-2'] });
    expect(stats.requests['r-2']).toMatchObject({ accepted: 1 });
  });

  test('rejects invalid options with the value given', () => {
    // GIVEN / WHEN / THEN
    expect(() => new VendorSimulator({ requestsPerSecond: 0 })).toThrow(/requestsPerSecond must be above 0 \(given 0\)/);
    expect(() => new VendorSimulator({ requestsPerSecond: 1, errorRate: 1.5 })).toThrow(/errorRate must be a fraction between 0 and 1 \(given 1.5\)/);
  });
});

describe('VendorSimulator: accounts per key (issue 15, credentials per key)', () => {
  const ACCOUNTS = { credentialHeader: 'x-api-key', credentials: { 'api-key-hot': 'hot', 'api-key-quiet': 'quiet', 'api-key-slow': 'slow' } };
  const asKey = (base: string, credential: string | undefined, requestId: string) => call(`${base}/v1/jobs`, {
    headers: { 'Idempotency-Key': requestId, ...(credential ? { 'x-api-key': credential } : {}) },
    body: { requestId, callbackUrl: WEBHOOK_URL },
  });

  test('GIVEN a limit of 2 per key WHEN one key sends 4 calls in a second and another 2 THEN the first key\'s 3rd and 4th get 429 and count as its violations, the other\'s pass, independent of the contract', async () => {
    // GIVEN a contract of 100, every account limited to 2 per sliding second, except 'slow' at 1.5 (floor: 1)
    const times = [0, 100, 200, 300, 400, 500, 1150, 1300].map((t) => 1_800_000_000_000 + t);
    let next = 0;
    const { vendor, base } = await startVendor({
      requestsPerSecond: 100,
      noCallbackRate: 1,
      clock: () => times[next++],
      accounts: { ...ACCOUNTS, requestsPerSecond: 2, requestsPerSecondByKey: { slow: 1.5 } },
    });

    // WHEN hot calls at 0, 0.1, 0.2, 0.3 s, quiet at 0.4 and 0.5 s, hot again at 1.15 s and 1.3 s
    const answers = [];
    const order = ['hot', 'hot', 'hot', 'hot', 'quiet', 'quiet', 'hot', 'hot'];
    for (const [i, key] of order.entries()) {
      const credential = `api-key-${key}`;
      answers.push(await asKey(base, credential, `k-${i}`));
    }

    // THEN hot's window [0, 1000] is full after two calls (refused calls count too: at 1.15 s
    // [0.15, 1.15] holds 0.2 and 0.3 s, at 1.3 s [0.3, 1.3] holds 0.3 and 1.15 s)
    expect(answers.map((a) => a.status)).toEqual([202, 202, 429, 429, 202, 202, 429, 429]);
    expect(answers[2].headers['retry-after']).toBe('1');
    expect(answers[2].body).toEqual({ error: "account 'hot' exceeded its limit: at most 2 requests in any second" });
    const stats = vendor.stats();
    expect(stats.keys).toEqual({
      byKey: {
        hot: { limit: 2, arrivals: 6, violations: 4, maxInAnyWindow: 4 },
        quiet: { limit: 2, arrivals: 2, violations: 0, maxInAnyWindow: 2 },
        slow: { limit: 1, arrivals: 0, violations: 0, maxInAnyWindow: 0 },
      },
      unknownCredential: 0,
      violations: 4,
    });
    // ... and none of it is a contract violation
    expect(stats).toMatchObject({ violations: 0, accepted: 4, submissions: 8 });
  });

  test('GIVEN accounts without a limit WHEN keys call THEN every call passes and arrivals are counted per key; a call without a known credential gets 401', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ requestsPerSecond: 100, noCallbackRate: 1, accounts: ACCOUNTS });

    // WHEN three calls of hot, one of quiet, one without a credential and one with a wrong one
    const answers = await Promise.all([
      asKey(base, 'api-key-hot', 'u-0'), asKey(base, 'api-key-hot', 'u-1'), asKey(base, 'api-key-hot', 'u-2'),
      asKey(base, 'api-key-quiet', 'u-3'), asKey(base, undefined, 'u-4'), asKey(base, 'api-key-nobody', 'u-5'),
    ]);

    // THEN
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202, 401, 401]);
    expect(answers[5].body).toEqual({ error: 'unknown credential in x-api-key: no account has it' });
    expect(vendor.stats().keys).toEqual({
      byKey: { hot: { arrivals: 3, violations: 0, maxInAnyWindow: 3 }, quiet: { arrivals: 1, violations: 0, maxInAnyWindow: 1 } },
      unknownCredential: 2,
      violations: 0,
    });
  });

  test('GIVEN the contract is full WHEN a key over its own limit calls THEN the contract refuses it and the key counts the arrival without a violation of its own (never counted twice)', async () => {
    // GIVEN a contract of 2 and a key limit of 1
    const times = [0, 10, 20].map((t) => 1_800_000_000_000 + t);
    let next = 0;
    const { vendor, base } = await startVendor({
      requestsPerSecond: 2, noCallbackRate: 1, clock: () => times[next++], accounts: { ...ACCOUNTS, requestsPerSecond: 1 },
    });

    // WHEN quiet calls once, hot twice
    const answers = [];
    for (const [i, credential] of ['api-key-quiet', 'api-key-hot', 'api-key-hot'].entries()) {
      answers.push(await asKey(base, credential, `c-${i}`));
    }

    // THEN hot's second call is over the contract (3 in [0, 1000]): a contract violation, not the key's
    expect(answers.map((a) => a.status)).toEqual([202, 202, 429]);
    expect(answers[2].body.error).toMatch(/^contract exceeded/);
    expect(vendor.stats()).toMatchObject({
      violations: 1, keys: { violations: 0, byKey: { hot: { arrivals: 2, violations: 0, maxInAnyWindow: 2 } } },
    });
  });

  test('GIVEN a key\'s limit lowered from 2 to 1 at T WHEN it calls THEN seconds starting before T keep 2, seconds starting at or after T allow 1 (the fault suite\'s key-limit-change)', () => {
    // GIVEN 'hot' limited to 2 per second, 1 from T = 10 000
    const T = 10_000;
    const window = (arrivals: number[], t: number) => arrivals.filter((a) => a >= t - 1000 && a <= t).length;
    const schedule = { hot: [{ atMs: T, requestsPerSecond: 1 }] };
    const accounts = new VendorAccounts({ ...ACCOUNTS, requestsPerSecond: 2, requestsPerSecondScheduleByKey: schedule }, window, () => 0);

    // WHEN hot calls twice in the second before T, twice in the second from T + 500 (its start, T - 500, still before T), then
    // twice in [T + 1700, T + 2000] (seconds starting after T)
    const refused = [T - 900, T - 800, T + 500, T + 600, T + 1700, T + 2000].map((t) => accounts.arrive('api-key-hot', t, false)?.status);

    // THEN only the last is refused: [T + 1000, T + 2000] holds 2 where 1 is in force
    expect(refused).toEqual([undefined, undefined, undefined, undefined, undefined, 429]);
    expect(accounts.limitOf('hot', T - 1)).toBe(2);
    expect(accounts.limitOf('hot', T)).toBe(1);
    expect(accounts.stats().byKey.hot).toMatchObject({ limit: 1, violations: 1 });
    expect(() => new VendorAccounts({ ...ACCOUNTS, requestsPerSecondScheduleByKey: { hot: [{ atMs: T, requestsPerSecond: 0 }] } }, window, () => 0))
      .toThrow(/accounts.requestsPerSecondScheduleByKey\['hot'\]\[0\].requestsPerSecond must be above 0 requests per second \(given 0\)/);
  });

  test('GIVEN accounts options the simulator cannot use WHEN constructed THEN it says what was given', () => {
    expect(() => new VendorSimulator({ requestsPerSecond: 1, accounts: { credentialHeader: 'x api key', credentials: { a: 'a' } } }))
      .toThrow(/accounts.credentialHeader must be a header name, e.g. 'x-api-key' \(given "x api key"\)/);
    expect(() => new VendorSimulator({ requestsPerSecond: 1, accounts: { credentialHeader: 'x-api-key', credentials: {} } }))
      .toThrow(/accounts.credentials must name at least one credential/);
    expect(() => new VendorSimulator({ requestsPerSecond: 1, accounts: { ...ACCOUNTS, requestsPerSecondByKey: { hot: 0 } } }))
      .toThrow(/accounts.requestsPerSecondByKey\['hot'\] must be above 0 requests per second \(given 0\)/);
  });
});

describe('VendorSimulatorHost: the simulator in its own worker thread (benchmark and demo)', () => {
  test('GIVEN the REST API ports WHEN a job is submitted THEN its first arrival is noted and the callback reaches the mapped API', async () => {
    // GIVEN
    webhook.reset();
    const host = await VendorSimulatorHost.start({ requestsPerSecond: 10, callbackDelayMs: 10, callbackHeaders: CREDENTIALS, jobIdPrefix: 'job' });
    try {
      // The webhook URL's API id, served on the stand-in webhook's port.
      host.mapApis({ abc123: Number(new URL(webhookBase).port) });
      const before = Date.now();

      // WHEN
      const res = await call(`${host.base}/v1/jobs`, { headers: { 'Idempotency-Key': 'r-host' }, body: { requestId: 'r-host', callbackUrl: WEBHOOK_URL } });

      // THEN
      expect(res.status).toBe(202);
      await waitFor(() => webhook.received.length === 1);
      const stats = await host.stats();
      expect(stats.requests['r-host'].firstSubmissionAtMs).toBeGreaterThanOrEqual(before);
      expect(stats.callbacksDelivered).toBe(1);
      expect(await host.arrivals()).toEqual([stats.requests['r-host'].firstSubmissionAtMs]);
      expect((await host.callbacks())[0]).toMatchObject({ requestId: 'r-host', outcome: 'delivered' });
    } finally {
      await host.stop();
    }
  }, 30_000);

  test('GIVEN options the simulator refuses WHEN starting THEN start fails with its message', async () => {
    await expect(VendorSimulatorHost.start({ requestsPerSecond: 0 })).rejects.toThrow(/requestsPerSecond/);
  }, 30_000);
});

describe('VendorSimulator: jobs in flight (maxJobsInFlight)', () => {
  test('GIVEN maxJobsInFlight 2 WHEN a third job is submitted while two run THEN it gets 429 and counts as a violation', async () => {
    // GIVEN: callbacks 300 ms after the answer, so the first two jobs are still running
    const { vendor, base } = await startVendor({ maxJobsInFlight: 2, callbackDelayMs: 300 });

    // WHEN
    const answers = [await submit(base, 'r-1'), await submit(base, 'r-2'), await submit(base, 'r-3')];

    // THEN
    expect(answers.map((a) => a.status)).toEqual([202, 202, 429]);
    expect(answers[2].body.error).toMatch(/too many jobs in flight: at most 2/);
    expect(vendor.stats().jobsInFlight).toMatchObject({ limit: 2, now: 2, maxObserved: 3, violations: 1 });
  });

  test('GIVEN a job has called back WHEN the next job is submitted THEN it is accepted (a place is free again)', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ maxJobsInFlight: 1, callbackDelayMs: 10 });
    await submit(base, 'r-1');
    await waitFor(() => webhook.received.length >= 1);

    // WHEN
    const res = await submit(base, 'r-2');

    // THEN
    expect(res.status).toBe(202);
    expect(vendor.stats().jobsInFlight).toMatchObject({ maxObserved: 1, violations: 0 });
  });

  test('GIVEN a job that is never called back WHEN its callback delay has passed THEN it has ended on the vendor\'s side', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ maxJobsInFlight: 1, noCallbackRate: 1, callbackDelayMs: 20 });
    await submit(base, 'r-1');
    await sleep(100);

    // WHEN / THEN
    expect(vendor.stats().jobsInFlight.now).toBe(0);
    expect((await submit(base, 'r-2')).status).toBe(202);
  });

  test('GIVEN a job that hangs (noCallbackRunsMs) at the limit WHEN it is cancelled by its request id THEN its place is free at once, the next job is accepted and it is never called back', async () => {
    // GIVEN: the job would run for a minute without calling back
    const { vendor, base } = await startVendor({ maxJobsInFlight: 1, callbackDelayMs: 10, noCallbackRunsMs: 60_000 });
    const hanging = 'r-hang';
    expect(vendor.faultsOf(hanging)).toEqual([]);
    await submit(base, hanging, { callbackUrl: undefined }); // no callback URL: never called back
    expect((await submit(base, 'r-2')).status).toBe(429);

    // WHEN: the README's cancel example, by the submission's Idempotency-Key
    const cancel = await call(`${base}/v1/jobs/by-key/${hanging}/cancel`, { headers: { 'Idempotency-Key': `${hanging}-cancel` } });

    // THEN
    expect(cancel).toMatchObject({ status: 200, body: { jobId: 'job-1', status: 'CANCELLED' } });
    expect(vendor.stats().jobsInFlight.now).toBe(0);
    expect((await submit(base, 'r-3')).status).toBe(202);
    const stats = vendor.stats();
    expect(stats.requests[hanging].cancelledAtMs).toBeGreaterThan(0);
    expect(stats.cancels).toEqual({ cancelled: 1, notFound: 0, alreadyEnded: 0 });
    // The hand-over is measured from the cancel.
    expect(stats.jobsInFlight.handOvers).toBe(1);
  });

  test('GIVEN a running job with a callback due WHEN it is cancelled by its job id THEN it is never called back, and a retried cancel answers 200 again', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ maxJobsInFlight: 1, callbackDelayMs: 200 });
    await submit(base, 'r-1');

    // WHEN
    const first = await call(`${base}/v1/jobs/job-1/cancel`);
    const retried = await call(`${base}/v1/jobs/by-key/r-1/cancel`);
    await sleep(400);

    // THEN
    expect([first.status, retried.status]).toEqual([200, 200]);
    expect(retried.body).toEqual({ jobId: 'job-1', status: 'CANCELLED' });
    expect(webhook.received).toHaveLength(0);
    expect(vendor.callbacks()).toHaveLength(0);
    expect(vendor.stats()).toMatchObject({ submissions: 1, cancels: { cancelled: 2, notFound: 0, alreadyEnded: 0 } });
  });

  test('GIVEN a job that has called back and an unknown one WHEN they are cancelled THEN 409 and 404', async () => {
    // GIVEN
    const { vendor, base } = await startVendor({ maxJobsInFlight: 1, callbackDelayMs: 10 });
    await submit(base, 'r-1');
    await waitFor(() => webhook.received.length >= 1);

    // WHEN
    const ended = await call(`${base}/v1/jobs/by-key/r-1/cancel`);
    const unknownKey = await call(`${base}/v1/jobs/by-key/nobody/cancel`);
    const unknownJob = await call(`${base}/v1/jobs/job-99/cancel`);

    // THEN
    expect(ended.status).toBe(409);
    expect(ended.body.error).toMatch(/already ended/);
    expect([unknownKey.status, unknownJob.status]).toEqual([404, 404]);
    expect(vendor.stats()).toMatchObject({ submissions: 1, cancels: { cancelled: 0, notFound: 2, alreadyEnded: 1 } });
  });

  test('GIVEN the contract is full WHEN a cancel arrives THEN it is refused like any call (429): a cancel counts against the rate', async () => {
    const { vendor, base } = await startVendor({ requestsPerSecond: 1, maxJobsInFlight: 1, noCallbackRunsMs: 60_000 });
    await submit(base, 'r-1', { callbackUrl: undefined });
    const cancel = await call(`${base}/v1/jobs/by-key/r-1/cancel`);
    expect(cancel.status).toBe(429);
    expect(vendor.stats().jobsInFlight.now).toBe(1);
  });

  test('GIVEN no limit WHEN jobs run THEN jobs in flight are still measured', async () => {
    const { vendor, base } = await startVendor({ callbackDelayMs: 300 });
    await submit(base, 'r-1');
    await submit(base, 'r-2');
    expect(vendor.stats().jobsInFlight).toMatchObject({ now: 2, maxObserved: 2, violations: 0 });
    expect(vendor.stats().jobsInFlight).not.toHaveProperty('limit');
  });

  test('GIVEN jobs started and ended at chosen times WHEN measured THEN the means are time-weighted', () => {
    let now = 0;
    const g = new VendorJobsInFlight(2, () => now);
    g.start('a'); // t 0: 1 job
    now = 1000;
    g.start('b'); // t 1000: 2 jobs
    now = 3000;
    g.end('a'); // t 3000: 1 job
    g.start('c'); // t 3000: 2 jobs, the last start
    now = 4000;
    g.end('b');
    g.end('c');
    now = 5000;
    // While starting (0..3000): 1 x 1000 + 2 x 2000 = 5000 -> 5000 / 3000.
    expect(g.stats().meanInFlightWhileStarting).toBeCloseTo(5000 / 3000);
    // Overall (0..5000): 5000 + 2 x 1000 = 7000 -> 1.4.
    expect(g.stats().meanInFlight).toBeCloseTo(1.4);
    expect(g.stats()).toMatchObject({ now: 0, maxObserved: 2, violations: 0 });
  });

  test('GIVEN places freed at the limit WHEN later jobs take them THEN each hand-over\'s idle time is measured, oldest freed place first', () => {
    let now = 0;
    const g = new VendorJobsInFlight(2, () => now);
    g.start('a');
    g.end('a'); // below the limit: no hand-over
    g.start('b');
    g.start('c'); // t 0: at the limit
    now = 1000;
    g.end('b'); // freed at 1000
    now = 1500;
    g.end('c'); // freed at 1500
    now = 4000;
    g.start('d'); // takes the place freed at 1000: idle 3000
    now = 4500;
    g.start('e'); // takes the one freed at 1500: idle 3000
    now = 5000;
    g.end('d'); // freed after the last start: not a hand-over
    expect(g.stats()).toMatchObject({ handOvers: 2, meanHandOverIdleMs: 3000, maxHandOverIdleMs: 3000 });
  });
});
