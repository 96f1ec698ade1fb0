/**
 * The arrival audit (issue 13, item 2): the access log lines of paced requests -> `requestTimeEpoch - slot`
 * per request, published as EMF; every branch of the logic and of the handler.
 */
import { gzipSync } from 'node:zlib';
import { PACING_USER_AGENT_PRODUCT } from '../../src/dispatch-workflow/vendor-call';
import { METRICS_NAMESPACE } from '../../src/shared/metrics';
import {
  auditArrivals, decodeSubscriptionEvent, groupArrivals, MAX_VALUES_PER_DOCUMENT, readArrival, VENDOR_CALLER_USER_AGENT_PRODUCT,
} from '../../src/throttled-proxy/arrival-audit';
import { captureEmf } from '../emf';

// Recent (CloudWatch takes EMF timestamps up to 14 days old), on a whole minute plus 30 s.
const SLOT = 60_000 * Math.floor(Date.now() / 60_000) - 30_000;

/** An access log line in the proxy's format (throttled-proxy.ts accessLogFormat). */
function line(fields: Record<string, unknown> = {}): string {
  return JSON.stringify({
    requestId: 'r-1',
    requestTimeEpoch: String(SLOT + 7),
    httpMethod: 'POST',
    status: '202',
    integrationStatus: '202',
    userAgent: `cdk-async-external-api-vendor-caller/abc123 slot/${SLOT}`,
    scope: 'orders-scope',
    ...fields,
  });
}

function subscriptionEvent(messages: string[], messageType = 'DATA_MESSAGE') {
  const payload = {
    messageType,
    owner: '123456789012',
    logGroup: 'proxy-access-logs',
    logStream: 'stream',
    subscriptionFilters: ['filter'],
    logEvents: messages.map((message, i) => ({ id: String(i), timestamp: SLOT, message })),
  };
  return { awslogs: { data: gzipSync(Buffer.from(JSON.stringify(payload))).toString('base64') } };
}

describe('readArrival', () => {
  test('GIVEN a paced request\'s line WHEN read THEN afterSlotMs is API Gateway\'s receive time minus the slot', () => {
    expect(readArrival(line())).toEqual({ container: 'abc123', slotMs: SLOT, receivedMs: SLOT + 7, afterSlotMs: 7 });
  });

  test('GIVEN a slot with a fraction of a millisecond (slots are multiples of 1/1024 ms) WHEN read THEN afterSlotMs keeps it, to the microsecond', () => {
    const arrival = readArrival(line({ userAgent: `cdk-async-external-api-vendor-caller/abc123 slot/${SLOT + 0.3330078125}` }));
    expect(arrival).toMatchObject({ afterSlotMs: 6.667 });
  });

  test('GIVEN a caller whose clock runs ahead WHEN read THEN afterSlotMs is negative (kept: it is the clock offset the audit is for)', () => {
    expect(readArrival(line({ requestTimeEpoch: String(SLOT - 3) }))).toMatchObject({ afterSlotMs: -3 });
  });

  test.each([
    ['not JSON', 'malformed', 'START RequestId: 1'],
    ['a JSON array', 'malformed', '[1,2]'],
    ['JSON null', 'malformed', 'null'],
    ['another User-Agent', 'not-vendor-caller', line({ userAgent: 'aws-sdk-js/3.0' })],
    ['a User-Agent of "-"', 'not-vendor-caller', line({ userAgent: '-' })],
    ['no User-Agent', 'not-vendor-caller', line({ userAgent: undefined })],
    ['the caller\'s User-Agent without a slot', 'no-slot', line({ userAgent: 'cdk-async-external-api-vendor-caller/abc123' })],
    ['a slot of "-"', 'no-slot', line({ userAgent: 'cdk-async-external-api-vendor-caller/abc123 slot/-' })],
    ['a slot that is not a number', 'no-slot', line({ userAgent: 'cdk-async-external-api-vendor-caller/abc123 slot/soon' })],
    ['a requestTimeEpoch of "-"', 'no-receive-time', line({ requestTimeEpoch: '-' })],
    ['no requestTimeEpoch', 'no-receive-time', line({ requestTimeEpoch: undefined })],
    ['a requestTimeEpoch with a fraction', 'no-receive-time', line({ requestTimeEpoch: '17651.5' })],
  ])('GIVEN %s WHEN read THEN it is skipped as %s', (_name, reason, message) => {
    expect(readArrival(message)).toBe(reason);
  });

  test('GIVEN a numeric requestTimeEpoch (an unquoted format) WHEN read THEN it is read too', () => {
    expect(readArrival(line({ requestTimeEpoch: SLOT + 2 }))).toMatchObject({ afterSlotMs: 2 });
  });

  test('the User-Agent product matches the vendor caller\'s (vendor-call.ts cannot be imported by the construct: it bundles the AWS SDK)', () => {
    expect(VENDOR_CALLER_USER_AGENT_PRODUCT).toBe(PACING_USER_AGENT_PRODUCT);
  });
});

describe('auditArrivals and groupArrivals', () => {
  test('GIVEN good and bad lines WHEN audited THEN the good ones are measured and the bad ones counted by reason, never thrown', () => {
    const audit = auditArrivals([line(), 'garbage', line({ userAgent: 'curl/8' }), line({ requestTimeEpoch: '-' }), line({ requestTimeEpoch: String(SLOT + 9) })]);
    expect(audit.arrivals.map((a) => a.afterSlotMs)).toEqual([7, 9]);
    expect(audit.skipped).toEqual({ 'malformed': 1, 'not-vendor-caller': 1, 'no-receive-time': 1 });
  });

  test('GIVEN arrivals of two containers over two minutes WHEN grouped THEN one group per container and minute, timestamped by the latest arrival', () => {
    const minute = 60_000 * Math.ceil(SLOT / 60_000);
    const ua = (c: string, slot: number) => `cdk-async-external-api-vendor-caller/${c} slot/${slot}`;
    const { arrivals } = auditArrivals([
      line({ userAgent: ua('a', minute - 100), requestTimeEpoch: String(minute - 95) }),
      line({ userAgent: ua('a', minute - 50), requestTimeEpoch: String(minute - 40) }),
      line({ userAgent: ua('a', minute + 10), requestTimeEpoch: String(minute + 12) }),
      line({ userAgent: ua('b', minute - 80), requestTimeEpoch: String(minute - 81) }),
    ]);
    expect(groupArrivals(arrivals)).toEqual([
      { container: 'a', timestampMs: minute - 40, afterSlotMs: [5, 10], minAfterSlotMs: 5, maxAfterSlotMs: 10 },
      { container: 'a', timestampMs: minute + 12, afterSlotMs: [2], minAfterSlotMs: 2, maxAfterSlotMs: 2 },
      { container: 'b', timestampMs: minute - 81, afterSlotMs: [-1], minAfterSlotMs: -1, maxAfterSlotMs: -1 },
    ]);
  });

  test('GIVEN 250 arrivals of one container in one minute WHEN grouped THEN chunks of at most 100 values (the EMF limit per metric)', () => {
    const minuteStart = 60_000 * Math.ceil(SLOT / 60_000);
    const { arrivals } = auditArrivals(Array.from({ length: 250 }, (_, i) => line({
      userAgent: `cdk-async-external-api-vendor-caller/a slot/${minuteStart + i * 100}`,
      requestTimeEpoch: String(minuteStart + i * 100 + 4),
    })));
    expect(groupArrivals(arrivals).map((g) => g.afterSlotMs.length)).toEqual([MAX_VALUES_PER_DOCUMENT, MAX_VALUES_PER_DOCUMENT, 50]);
  });

  test('GIVEN a subscription event WHEN decoded THEN the payload comes back; GIVEN something else THEN it throws', () => {
    expect(decodeSubscriptionEvent(subscriptionEvent([line()])).logEvents[0].message).toBe(line());
    expect(() => decodeSubscriptionEvent({})).toThrow(/awslogs.data is missing/);
    expect(() => decodeSubscriptionEvent({ awslogs: { data: gzipSync(Buffer.from('{"a":1}')).toString('base64') } })).toThrow(/messageType or logEvents is missing/);
  });
});

describe('arrival audit handler', () => {
  const saved = { ...process.env };
  let handler: (event: unknown) => Promise<any>;

  beforeAll(() => {
    process.env.METRICS_SCOPE = 'orders-scope';
    process.env.POWERTOOLS_METRICS_NAMESPACE = METRICS_NAMESPACE;
    delete process.env.POWERTOOLS_METRICS_DISABLED;
    delete process.env.POWERTOOLS_DEV;
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      handler = require('../../src/throttled-proxy/arrival-audit.lambda').handler;
    });
  });

  afterAll(() => {
    process.env = { ...saved };
  });

  test('GIVEN a delivery with two containers and an unreadable line WHEN handled THEN one EMF document per container (Scope only, container as a property) and one counting the skipped line', async () => {
    let result: unknown;
    const emf = await captureEmf(async () => {
      result = await handler(subscriptionEvent([
        line(),
        line({ requestTimeEpoch: String(SLOT + 3) }),
        line({ userAgent: `cdk-async-external-api-vendor-caller/def456 slot/${SLOT}`, requestTimeEpoch: String(SLOT - 2) }),
        'not json',
      ]));
    });

    expect(result).toEqual({ messageType: 'DATA_MESSAGE', measured: 3, skipped: 1, documents: 3 });
    expect(emf).toHaveLength(3);
    for (const doc of emf) {
      expect(doc._aws.CloudWatchMetrics[0].Namespace).toBe(METRICS_NAMESPACE);
      expect(doc._aws.CloudWatchMetrics[0].Dimensions).toEqual([['Scope']]);
      expect(doc.Scope).toBe('orders-scope');
      expect(doc).not.toHaveProperty('service');
    }
    const [first, second, skipped] = emf;
    expect(first._aws.CloudWatchMetrics[0].Metrics).toEqual([{ Name: 'VendorArrivalAfterSlot', Unit: 'Milliseconds' }]);
    expect(first).toMatchObject({ container: 'abc123', VendorArrivalAfterSlot: [7, 3], minAfterSlotMs: 3, maxAfterSlotMs: 7 });
    // Timestamped by API Gateway's clock (the latest arrival of the group), not by the delivery.
    expect(first._aws.Timestamp).toBe(SLOT + 7);
    expect(second).toMatchObject({ container: 'def456', VendorArrivalAfterSlot: -2 });
    expect(skipped).toMatchObject({ VendorArrivalLinesSkipped: 1 });
    expect(skipped).not.toHaveProperty('container');
  });

  test('GIVEN CloudWatch Logs\' CONTROL_MESSAGE WHEN handled THEN nothing is published', async () => {
    let result: unknown;
    const emf = await captureEmf(async () => {
      result = await handler(subscriptionEvent([], 'CONTROL_MESSAGE'));
    });
    expect(result).toEqual({ messageType: 'CONTROL_MESSAGE', measured: 0, skipped: 0, documents: 0 });
    expect(emf).toEqual([]);
  });

  test('GIVEN only lines it cannot read WHEN handled THEN it counts them and does not fail (a failure would make Lambda retry the whole batch)', async () => {
    let result: unknown;
    const emf = await captureEmf(async () => {
      result = await handler(subscriptionEvent(['x', line({ requestTimeEpoch: '-' })]));
    });
    expect(result).toEqual({ messageType: 'DATA_MESSAGE', measured: 0, skipped: 2, documents: 1 });
    expect(emf).toHaveLength(1);
    expect(emf[0]).toMatchObject({ VendorArrivalLinesSkipped: 2 });
  });

  test('GIVEN 150 arrivals of one container in one minute WHEN handled THEN two documents, each naming the container', async () => {
    const minuteStart = 60_000 * Math.ceil(SLOT / 60_000);
    const emf = await captureEmf(() => handler(subscriptionEvent(Array.from({ length: 150 }, (_, i) => line({
      userAgent: `cdk-async-external-api-vendor-caller/a slot/${minuteStart + i * 100}`,
      requestTimeEpoch: String(minuteStart + i * 100 + 5),
    })))));
    expect(emf.map((d) => [d.container, (d.VendorArrivalAfterSlot as number[]).length])).toEqual([['a', 100], ['a', 50]]);
  });

  test('GIVEN an event that is not a CloudWatch Logs delivery WHEN handled THEN it fails (no retry could make it one)', async () => {
    await expect(handler({ Records: [] })).rejects.toThrow(/not a CloudWatch Logs subscription event/);
  });
});
