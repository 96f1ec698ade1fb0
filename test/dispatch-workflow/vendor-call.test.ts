import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { DynamoDBClient, GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { createRequestPreparer } from '../../src/dispatch-workflow/prepared-request';
import {
  callVendor, CONNECT_AHEAD_MS, lateBeyondTolerance, MAX_VENDOR_ANSWER_BYTES, pacingUserAgent, parseRetryAfterMs, readBodyWithin, VendorCallConfig,
  VendorCallDeps, VendorCallError, VendorCallErrorNames,
} from '../../src/dispatch-workflow/vendor-call';
import { slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';

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
      // These tests run on the real clock against a real local server; what they check is not how
      // late a timer wakes (that is tested on the injected clock below): at 10 ms a loaded machine
      // made a caller late for its slot, give it up and take another path.
      fireToleranceMs: 1000,
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

  test('GIVEN a request with a key WHEN the vendor answers 429 THEN VendorCalls and VendorPauses (its 429s) carry the key (an EMF property)', async () => {
    answer = { status: 429, headers: { 'retry-after': '1' }, body: 'slow down' };
    const counted: Array<[string, string | undefined]> = [];
    const error = await callVendor({ requestId: 'r-k', key: 'acme', slotAtMs: Date.now() + 100 }, {
      ...deps(), metrics: { addMetric: (name, _unit, _value, key) => counted.push([name, key]) },
    }).catch((e) => e);
    expect(error.name).toBe('ApiGateway.429');
    expect(counted.filter(([name]) => name === 'VendorCalls' || name === 'VendorPauses')).toEqual([['VendorCalls', 'acme'], ['VendorPauses', 'acme']]);
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
    expect(ddb.commandCalls(UpdateItemCommand).some((c) => c.args[0].input.UpdateExpression?.startsWith('SET #next = :new'))).toBe(true);
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

// ---- On an injected clock: when exactly the request leaves (issue 13, items 1, 3 and 5). ----

/**
 * A wall clock read like `Date.now()` (whole milliseconds, truncated) whose timers wake `offsetMs`
 * off their target (negative: early, as a monotonic timer can against the wall clock; positive:
 * late). `t` is the true time.
 */
function wallClock(start: number, offsetMs = 0) {
  // Timers fire in time order once every promise chain has settled (setImmediate runs after the
  // microtasks), so concurrent invocations share one consistent timeline.
  const timers: Array<{ at: number; resolve: () => void }> = [];
  let driving = false;
  const step = () => {
    timers.sort((a, b) => a.at - b.at);
    const next = timers.shift();
    if (!next) {
      driving = false;
      return;
    }
    clock.t = Math.max(clock.t, next.at);
    next.resolve();
    setImmediate(step);
  };
  const clock = {
    t: start,
    now: () => Math.floor(clock.t),
    sleep: (ms: number) => new Promise<void>((resolve) => {
      // Node clamps a timer to at least 1 ms.
      timers.push({ at: clock.t + Math.max(1, ms) + offsetMs, resolve });
      if (!driving) {
        driving = true;
        setImmediate(step);
      }
    }),
  };
  return clock;
}

const T0 = 1_800_000_000_000;

/**
 * A request preparer on the fake clock. `connectedAt`: true time from which the socket is
 * connected (default: at once). A request sent earlier is written when the connection is up, as
 * Node buffers it meanwhile. `writeDelayMs`: time the write takes to leave. Records the true time
 * each request left.
 */
function fakePreparer(clock: { t: number }, options: { connectedAt?: number; writeDelayMs?: number } = {}) {
  const left: number[] = [];
  const prepare = () => ({
    get connected() {
      return clock.t >= (options.connectedAt ?? -Infinity);
    },
    broken: false,
    send: async (_signal?: AbortSignal, onWritten?: () => void) => {
      clock.t = Math.max(clock.t, options.connectedAt ?? -Infinity) + (options.writeDelayMs ?? 0);
      left.push(clock.t);
      onWritten?.();
      return new Response('{"jobId":"j-fake"}', { status: 202, headers: { 'content-type': 'application/json' } });
    },
    setHeader: () => undefined,
    cancel: () => undefined,
  });
  return { prepare, left };
}

function clockDeps(clock: ReturnType<typeof wallClock>, prepare: ReturnType<typeof fakePreparer>['prepare'], metrics: Array<[string, number]> = []): VendorCallDeps {
  return {
    // On the injected clock, the library's fire tolerance: timing is what these tests check.
    ...deps({ fireToleranceMs: 10 }),
    clock,
    fetch: () => Promise.reject(new Error('fetch is not used when requests are prepared')),
    prepare,
    metrics: { addMetric: (name, _unit, value) => metrics.push([name, value]) },
  };
}

describe('callVendor: never early, never beyond the fire tolerance (issue 13, item 3)', () => {
  test('GIVEN timers that wake 0.6 ms early against the wall clock WHEN the slot comes THEN the request leaves at or after the slot', async () => {
    // GIVEN
    const clock = wallClock(T0, -0.6);
    const vendor = fakePreparer(clock);
    const slot = T0 + 500;

    // WHEN
    const result = await callVendor({ requestId: 'r-early', body: {}, slotAtMs: slot }, clockDeps(clock, vendor.prepare));

    // THEN sleeps again until the wall clock reads the slot (before: it left at slot - 0.6)
    expect(result.statusCode).toBe(202);
    expect(vendor.left).toHaveLength(1);
    expect(vendor.left[0]).toBeGreaterThanOrEqual(slot);
  });

  test('GIVEN a wake-up that Date.now() shows 9 ms late but is 10.4 ms late WHEN the tolerance is 10 ms THEN the slot is given up (the 1 ms resolution counts)', async () => {
    // GIVEN every timer wakes 10.4 ms late; a fractional slot, as the pacer makes them
    const clock = wallClock(T0, 10.4);
    const vendor = fakePreparer(clock);
    const metrics: Array<[string, number]> = [];
    const slot = T0 + 500.5;

    // WHEN
    const result = await callVendor({ requestId: 'r-quantized', body: {}, slotAtMs: slot }, clockDeps(clock, vendor.prepare, metrics));

    // THEN nothing left more than 10 ms after its slot: every slot was given up, the call requeued
    expect(vendor.left).toHaveLength(0);
    expect(result.requeue).toMatchObject({ reason: 'NoSlotInTime' });
    expect(metrics.filter(([name]) => name === 'SlotsGivenUp').length).toBeGreaterThan(0);
  });

  test.each([
    [1000, 999, false],
    [1000, 1009, false],
    [1000, 1010, true],
    [1000.5, 1009, false],
    [1000.5, 1010, true],
  ])('lateBeyondTolerance(slot %d, reading %d, 10 ms) = %s', (slot, reading, late) => {
    expect(lateBeyondTolerance(reading, slot, 10)).toBe(late);
  });
});

describe('callVendor: single-use slots (issue 13, item 1)', () => {
  test('GIVEN two invocations carrying the same slot (a retried invoke, a duplicate execution) WHEN both run THEN the slot is fired once; the other fires in a fresh slot', async () => {
    // GIVEN a pacer table that keeps claims (PutItem attribute_not_exists) and an empty schedule
    const claimed = new Set<string>();
    ddb.on(PutItemCommand).callsFake((input) => {
      const key = input.Item.pk.S;
      if (input.ConditionExpression !== 'attribute_not_exists(#pk)' || claimed.has(key)) {
        if (claimed.has(key)) throw Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });
      }
      claimed.add(key);
      return {};
    });
    const clock = wallClock(T0);
    const vendor = fakePreparer(clock);
    const slot = T0 + 800;

    // WHEN
    const [first, second] = await Promise.all([
      callVendor({ requestId: 'r-dup', body: {}, slotAtMs: slot }, clockDeps(clock, vendor.prepare)),
      callVendor({ requestId: 'r-dup', body: {}, slotAtMs: slot }, clockDeps(clock, vendor.prepare)),
    ]);

    // THEN both answered, but only one request left in the slot (before: both did, two in one slot)
    expect(first.statusCode).toBe(202);
    expect(second).toMatchObject({ statusCode: 202 });
    expect(vendor.left.filter((t) => t >= slot && t <= slot + 10)).toHaveLength(1);
    expect(claimed).toEqual(new Set([`slot#${slot}`]));
    // the loser reserved a fresh slot in the shared schedule
    expect(ddb.commandCalls(UpdateItemCommand).filter((c) => c.args[0].input.UpdateExpression?.startsWith('SET #next = :new'))).toHaveLength(1);
  });

  test('GIVEN a slot from the dispatcher THEN it is claimed with one conditional write that expires; a slot the caller reserved itself is not claimed', async () => {
    // GIVEN / WHEN an on-time slot
    const clock = wallClock(T0);
    const vendor = fakePreparer(clock);
    await callVendor({ requestId: 'r-claim', body: {}, slotAtMs: T0 + 400 }, clockDeps(clock, vendor.prepare));

    // THEN one claim, no reservation: one write for the request
    const puts = ddb.commandCalls(PutItemCommand).map((c) => c.args[0].input);
    expect(puts).toEqual([{
      TableName: 'pacer',
      Item: { pk: { S: `slot#${T0 + 400}` }, expiresAt: { N: String(Math.ceil((T0 + 400) / 1000) + 3600) } },
      ConditionExpression: 'attribute_not_exists(#pk)',
      ExpressionAttributeNames: { '#pk': 'pk' },
    }]);
    expect(ddb.commandCalls(UpdateItemCommand)).toHaveLength(0);

    // WHEN a late slot: a fresh reservation, which is the caller's alone
    ddb.resetHistory();
    await callVendor({ requestId: 'r-late', body: {}, slotAtMs: clock.now() - 5000 }, clockDeps(clock, vendor.prepare));

    // THEN one write (the reservation) and no claim
    expect(ddb.commandCalls(PutItemCommand)).toHaveLength(0);
    expect(ddb.commandCalls(UpdateItemCommand)).toHaveLength(1);
  });
});

describe('callVendor: a connected socket at the slot, lateness when the request leaves (issue 13, item 5)', () => {
  test('GIVEN a connection still in its handshake at the slot WHEN the slot comes THEN the slot is given up and the request leaves on time in a fresh one', async () => {
    // GIVEN the handshake ends 60 ms after the slot (an empty pool: a new TCP + TLS connection)
    const clock = wallClock(T0);
    const slot = T0 + 400;
    const vendor = fakePreparer(clock, { connectedAt: slot + 60 });
    const metrics: Array<[string, number]> = [];

    // WHEN
    const result = await callVendor({ requestId: 'r-handshake', body: {}, slotAtMs: slot }, clockDeps(clock, vendor.prepare, metrics));

    // THEN (before: it left 60 ms after its slot while VendorCallLateness said 0)
    expect(result.statusCode).toBe(202);
    expect(vendor.left).toHaveLength(1);
    expect(vendor.left[0]).toBeGreaterThan(slot + 10);
    const fresh = Number(ddb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input).find((i) => i.UpdateExpression?.startsWith('SET #next = :new'))!
      .ExpressionAttributeValues![':new'].N) - slotIntervalMs(10, 30);
    expect(vendor.left[0] - fresh).toBeGreaterThanOrEqual(0);
    expect(vendor.left[0] - fresh).toBeLessThanOrEqual(10);
    expect(metrics.filter(([name]) => name === 'SlotsGivenUp')).toHaveLength(1);
  });

  test('GIVEN a slot 6 s away and a server that closes a connection idle 4 s WHEN the caller waits for it THEN it connects shortly before the slot and fires it, no slot given up', async () => {
    // GIVEN a distant slot (a fresh slot at a low rate) and sockets that close once held idle
    // 4 s, as a keep-alive server closes them (Node's http server: 5 s, undici: 4 s)
    const clock = wallClock(T0);
    const slot = T0 + 6000;
    const vendor = fakePreparer(clock);
    const preparedAt: number[] = [];
    const prepare = () => {
      const at = clock.t;
      preparedAt.push(at);
      const request = vendor.prepare();
      const closed = () => clock.t - at > 4000;
      return { ...request, send: request.send, get connected() { return !closed(); }, get broken() { return closed(); } };
    };
    const metrics: Array<[string, number]> = [];

    // WHEN
    const result = await callVendor({ requestId: 'r-distant', body: {}, slotAtMs: slot }, clockDeps(clock, prepare, metrics));

    // THEN (before: prepared at once, its socket closed at T0 + 4 s, the slot given up for want of
    // a connected socket and the request sent in a fresh slot)
    expect(result.statusCode).toBe(202);
    expect(vendor.left).toEqual([slot]);
    expect(preparedAt).toHaveLength(1);
    expect(slot - preparedAt[0]).toBeLessThanOrEqual(CONNECT_AHEAD_MS);
    expect(metrics.filter(([name]) => name === 'SlotsGivenUp')).toHaveLength(0);
  });

  test('GIVEN a prepared request WHEN the pacer table fails before it is sent THEN it is cancelled (its socket freed) and the error thrown', async () => {
    // GIVEN a socket never connected (the slot is given up), then a failing reservation
    const clock = wallClock(T0);
    const vendor = fakePreparer(clock, { connectedAt: Infinity });
    let cancelled = 0;
    const prepare = () => ({ ...vendor.prepare(), connected: false, cancel: () => void (cancelled += 1) });
    ddb.on(UpdateItemCommand).rejects(Object.assign(new Error('Internal server error'), { name: 'InternalServerError' }));

    // WHEN
    const error = await callVendor({ requestId: 'r-ddb-down', body: {}, slotAtMs: T0 + 400 }, clockDeps(clock, prepare)).catch((e) => e);

    // THEN
    expect(error.name).toBe('InternalServerError');
    expect(cancelled).toBe(1);
    expect(vendor.left).toHaveLength(0);
  });

  test('GIVEN a write that takes 40 ms to leave WHEN the request is sent THEN VendorCallLateness counts it (measured when the bytes are written) and a warning says so', async () => {
    // GIVEN
    const clock = wallClock(T0);
    const vendor = fakePreparer(clock, { writeDelayMs: 40 });
    const metrics: Array<[string, number]> = [];
    const warnings: string[] = [];

    // WHEN
    await callVendor({ requestId: 'r-slow-write', body: {}, slotAtMs: T0 + 400 }, {
      ...clockDeps(clock, vendor.prepare, metrics), logger: { ...silent, warn: (m: string) => warnings.push(m) },
    });

    // THEN 40 ms, plus the clock's 1 ms resolution (before: 0)
    expect(metrics.filter(([name]) => name === 'VendorCallLateness').map(([, v]) => v)).toEqual([41]);
    expect(warnings.some((w) => /later than the fire tolerance/.test(w))).toBe(true);
  });
});

describe('callVendor: an answer too large for Step Functions (issue 11, "nothing lost, prompt failures")', () => {
  // Step Functions limits a task result and a state to 256 KiB; above it the execution fails with
  // States.DataLimitExceeded, which no Catch handles: nothing parked, the waiting workflow waits
  // for its timeout. The caller refuses such an answer with a named error the workflows give up on.
  const KiB = 1024;
  const jsonOfBytes = (bytes: number) => JSON.stringify({ data: 'x'.repeat(bytes - '{"data":""}'.length) });
  const preparing = (): VendorCallDeps => ({ ...deps(), fetch: () => Promise.reject(new Error('prepared')), prepare: createRequestPreparer() });

  test.each([['fetch', deps], ['a prepared request', preparing]] as const)(
    'GIVEN a 300 KiB answer (%s) WHEN calling THEN VendorResponseTooLarge is thrown instead of returning it', async (_how, callerDeps) => {
      answer = { status: 200, body: jsonOfBytes(300 * KiB) };
      const error = await callVendor({ requestId: 'r-big', slotAtMs: Date.now() + 120 }, callerDeps()).catch((e) => e);
      expect(error).toBeInstanceOf(VendorCallError);
      expect(error.name).toBe('VendorResponseTooLarge');
      expect(VendorCallErrorNames.RESPONSE_TOO_LARGE).toBe('VendorResponseTooLarge');
      expect(error.message).toMatch(/256 KiB/);
      expect(MAX_VENDOR_ANSWER_BYTES).toBeLessThan(256 * KiB);
    });

  test.each([['fetch', deps], ['a prepared request', preparing]] as const)('GIVEN a 100 KiB answer (%s) WHEN calling THEN it is returned whole', async (_how, callerDeps) => {
    answer = { status: 200, body: jsonOfBytes(100 * KiB) };
    const result = await callVendor({ requestId: 'r-100k', slotAtMs: Date.now() + 120 }, callerDeps());
    expect(result.statusCode).toBe(200);
    expect(JSON.stringify(result.body)).toBe(answer.body);
    expect(Buffer.byteLength(JSON.stringify(result))).toBeLessThan(256 * KiB);
  });

  test('GIVEN a 150 KiB body of quotes (over the limit once escaped, as ReturnResponse sends it) WHEN calling THEN it is refused', async () => {
    answer = { status: 200, body: JSON.stringify(Array.from({ length: 150 * KiB / 3 }, () => '')) };
    const error = await callVendor({ requestId: 'r-quotes', slotAtMs: Date.now() + 120 }, deps()).catch((e) => e);
    expect(error.name).toBe('VendorResponseTooLarge');
  });

  test('GIVEN a large failed answer (503) WHEN calling THEN it stays ApiGateway.503 (retryable), its body cut', async () => {
    answer = { status: 503, body: jsonOfBytes(300 * KiB) };
    const error = await callVendor({ requestId: 'r-big-503', slotAtMs: Date.now() + 120 }, deps()).catch((e) => e);
    expect(error.name).toBe('ApiGateway.503');
    expect(error.message.length).toBeLessThanOrEqual(8192);
  });

  test('GIVEN a body larger than the limit WHEN reading it THEN at most the limit is read', async () => {
    let pulled = 0;
    const chunk = new Uint8Array(16 * KiB).fill(0x61);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += chunk.length;
        controller.enqueue(chunk);
      },
    }, { highWaterMark: 0 });
    const { text, overLimit } = await readBodyWithin(new Response(body), 40 * KiB);
    expect(overLimit).toBe(true);
    expect(text).toHaveLength(40 * KiB);
    expect(pulled).toBeLessThanOrEqual(48 * KiB);
  });
});
