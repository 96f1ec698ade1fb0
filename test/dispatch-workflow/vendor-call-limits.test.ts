/**
 * The vendor caller's fresh slot with named limits (issue 14, item 3): a call whose dispatcher slot
 * was lost reserves a new one that respects its limits, in the same write as the contract's.
 */
import { DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { testVendorCallConfig } from './vendor-call-config';
import type { NamedLimitSpec } from '../../src/contract/named-limit';
import { callVendor, loadVendorCallConfig, VendorCallConfig, VendorCallDeps } from '../../src/dispatch-workflow/vendor-call';
import { inMemoryPacerItem } from '../rate-controlled-queue-consumer/pacer-item-fake';

const ddb = mockClient(DynamoDBClient);
const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined } as any;
// L = 30: the results limit's slots are (1000 + 30 + 1) / 2 = 515.5 ms apart.
const RESULTS: NamedLimitSpec = { name: 'results', requestsPerSecond: 2, pathPrefix: '/results' };

function deps(config: Partial<VendorCallConfig>, fetched: Array<{ url: string; at: number }>): VendorCallDeps {
  return {
    dynamodb: new DynamoDBClient({ region: 'us-east-1' }),
    config: testVendorCallConfig({ limits: [RESULTS], ...config }),
    sign: async ({ headers }) => headers,
    fetch: async (url) => {
      fetched.push({ url: String(url), at: Date.now() });
      return new Response('{"ok":true}', { status: 200, headers: { 'content-type': 'application/json' } });
    },
    logger: silent,
  };
}

beforeEach(() => {
  ddb.reset();
  ddb.on(PutItemCommand).resolves({});
});

test('GIVEN VENDOR_LIMITS WHEN the caller config is loaded THEN the limits are read', () => {
  const config = loadVendorCallConfig({
    PROXY_ENDPOINT_URL: 'http://proxy/',
    REQUESTS_PER_SECOND: '10',
    PACER_TABLE_NAME: 'pacer',
    LATENESS_TOLERANCE_MS: '30',
    FIRE_TOLERANCE_MS: '5',
    MAX_SLOT_WAIT_MS: '2000',
    CALL_TIMEOUT_MS: '500',
    VENDOR_LIMITS: JSON.stringify([RESULTS]),
  });
  expect(config.limits).toEqual([RESULTS]);
});

test('GIVEN a result fetch whose limit was used 100 ms ago WHEN the caller reserves a fresh slot THEN it fires no earlier than 515.5 ms after that use, and the one write moved both cursors', async () => {
  const pacer = inMemoryPacerItem(ddb);
  const lastUse = Date.now() - 100;
  pacer.item = { 'limitLastSlotAtMs#results': String(lastUse) };
  const fetched: Array<{ url: string; at: number }> = [];

  const result = await callVendor({ requestId: 'r-1', method: 'GET', path: 'results/1' }, deps({}, fetched));

  expect(result.statusCode).toBe(200);
  expect(fetched).toHaveLength(1);
  const slot = Number(pacer.item['limitLastSlotAtMs#results']);
  expect(slot).toBeGreaterThanOrEqual(lastUse + 515.5);
  expect(fetched[0].at).toBeGreaterThanOrEqual(Math.floor(slot));
  expect(Number(pacer.item.nextSlotAtMs)).toBeGreaterThan(slot);
});

test('GIVEN a call the limit does not bind WHEN the caller reserves THEN the limit cursor is neither waited for nor moved', async () => {
  const pacer = inMemoryPacerItem(ddb);
  const lastUse = Date.now() + 1500;
  pacer.item = { 'limitLastSlotAtMs#results': String(lastUse) };
  const fetched: Array<{ url: string; at: number }> = [];

  const metrics = { addMetric: jest.fn() };
  const result = await callVendor({ requestId: 'r-2', method: 'POST', path: '/jobs' }, { ...deps({}, fetched), metrics });

  expect(result.statusCode).toBe(200);
  expect(metrics.addMetric.mock.calls.filter(([name]) => String(name).startsWith('NamedLimitWaits'))).toEqual([]);
  expect(pacer.item['limitLastSlotAtMs#results']).toBe(String(lastUse));
  expect(fetched[0].at).toBeLessThan(lastUse);
});

test('GIVEN a limit full beyond the slot wait WHEN the caller reserves THEN the request goes back to the queue until the limit has room, and the vendor is not called', async () => {
  const pacer = inMemoryPacerItem(ddb);
  pacer.item = { 'limitLastSlotAtMs#results': String(Date.now() + 5000) };
  const fetched: Array<{ url: string; at: number }> = [];

  const metrics = { addMetric: jest.fn() };
  const result = await callVendor({ requestId: 'r-3', method: 'GET', path: '/results/3' }, { ...deps({ maxSlotWaitMs: 1000 }, fetched), metrics });

  expect(result.statusCode).toBeNull();
  expect(result.requeue).toEqual({ delaySeconds: expect.any(Number), reason: 'NoSlotInTime' });
  // The limit held the call back once: NamedLimitWaits.results (no vendor call, so no VendorCalls).
  expect(metrics.addMetric).toHaveBeenCalledWith('NamedLimitWaits.results', 'Count', 1);
  expect(metrics.addMetric.mock.calls.filter(([name]) => name === 'NamedLimitWaits.results')).toHaveLength(1);
  // Room at +5.5155 s: back in 6 s (whole seconds, rounded up).
  expect(result.requeue!.delaySeconds).toBeGreaterThanOrEqual(5);
  expect(result.requeue!.delaySeconds).toBeLessThanOrEqual(6);
  expect(fetched).toHaveLength(0);
});
