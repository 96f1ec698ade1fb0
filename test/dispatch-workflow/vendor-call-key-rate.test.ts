/**
 * The vendor caller with per-key limits (issue 15; design docs/design/per-key-limits.md 1.3): a
 * fresh slot needs the key's slot too (fresh-key-slot.ts), the pause check reads the key's own
 * pause, and with credentials per key a vendor 429 pauses the key, not the contract.
 */
import { DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { testVendorCallConfig } from './vendor-call-config';
import { callVendor, loadVendorCallConfig, VendorCallConfig, VendorCallDeps, VendorCallEvent } from '../../src/dispatch-workflow/vendor-call';
import { keyIntervalMs } from '../../src/rate-controlled-queue-consumer/key-schedule';
import type { KeyLimitsSpec } from '../../src/shared/key-limits';
import { inMemoryPacerTable, PacerTableFake } from '../rate-controlled-queue-consumer/pacer-table-fake';

const ddb = mockClient(DynamoDBClient);
const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined } as any;
const T0 = 1_800_000_000_000;
const L = 30;
const KEY_LIMITS: KeyLimitsSpec = { requestsPerSecond: 2, quotas: {}, priorityAgingMs: 30_000, paused: false };
const I_K = keyIntervalMs(KEY_LIMITS, L);

let table: PacerTableFake;
let now: number;
let fired: number[];
beforeEach(() => {
  ddb.reset();
  ddb.on(PutItemCommand).resolves({});
  table = inMemoryPacerTable(ddb);
  now = T0;
  fired = [];
});

function deps(config: Partial<VendorCallConfig> = {}, status = 200): VendorCallDeps & { metrics: { addMetric: jest.Mock } } {
  return {
    dynamodb: new DynamoDBClient({ region: 'us-east-1' }),
    config: testVendorCallConfig({ latenessToleranceMs: L, ...config }),
    sign: async ({ headers }) => headers,
    fetch: async () => {
      fired.push(now);
      return new Response('{"ok":true}', { status, headers: { 'content-type': 'application/json' } });
    },
    logger: silent,
    metrics: { addMetric: jest.fn() },
    // A sleep lets the DynamoDB reads in flight answer first (the pause check races the slot).
    // Concurrent sleeps end at their own times (a virtual clock), not one after the other.
    clock: {
      now: () => now,
      sleep: async (ms: number) => {
        const until = now + ms;
        await new Promise((resolve) => setTimeout(resolve, 2));
        now = Math.max(now, until);
      },
    },
    random: () => 0.5,
  };
}
const keyed = (extra: Partial<VendorCallEvent> = {}): VendorCallEvent => ({ requestId: 'r', method: 'POST', key: 'acme', keyLimits: KEY_LIMITS, ...extra });

test('GIVEN KEY_PAUSE_ON_429 WHEN the caller config is loaded THEN a 429 pauses the key', () => {
  const env = {
    PROXY_ENDPOINT_URL: 'http://proxy/',
    REQUESTS_PER_SECOND: '10',
    PACER_TABLE_NAME: 'pacer',
    LATENESS_TOLERANCE_MS: '30',
    FIRE_TOLERANCE_MS: '5',
    MAX_SLOT_WAIT_MS: '2000',
    CALL_TIMEOUT_MS: '500',
  };
  expect(loadVendorCallConfig({ ...env, KEY_PAUSE_ON_429: 'true' }).keyPauseOn429).toBe(true);
  expect(loadVendorCallConfig(env).keyPauseOn429).toBeUndefined();
});

test('GIVEN a key used 100 ms ago WHEN the caller reserves a fresh slot THEN it fires no earlier than I_k after that use, the key\'s item holds the slot, the contract\'s item not the key', async () => {
  table.items.set('key-pacer#acme', { lastSlotAtMs: String(T0 - 100) });
  const result = await callVendor(keyed(), deps());
  expect(result.statusCode).toBe(200);
  const slot = Number(table.items.get('key-pacer#acme')!.lastSlotAtMs);
  expect(slot).toBeGreaterThanOrEqual(T0 - 100 + I_K);
  expect(fired).toEqual([slot]);
  expect(Object.keys(table.items.get('pacer')!).some((name) => name.includes('acme'))).toBe(false);
});

test('GIVEN another reserver takes the key\'s slot between the contract write and the key write WHEN the key write loses THEN that contract slot is not fired (KeySlotsWasted) and a fresh one I_k after the other\'s is', async () => {
  let other: number | undefined;
  table.beforeWrite = (pk) => {
    if (pk === 'key-pacer#acme' && other === undefined) {
      other = Number(table.items.get('pacer')!.nextSlotAtMs) - 50;
      table.items.set(pk, { lastSlotAtMs: String(other) });
    }
  };
  const d = deps();
  const result = await callVendor(keyed(), d);
  expect(result.statusCode).toBe(200);
  expect(fired).toHaveLength(1);
  expect(fired[0]).toBeGreaterThanOrEqual(other! + I_K);
  expect(d.metrics.addMetric.mock.calls.filter(([name]) => name === 'KeySlotsWasted')).toEqual([['KeySlotsWasted', 'Count', 1]]);
});

test('GIVEN the key\'s own pause beyond the dispatcher\'s slot WHEN the caller checks before firing THEN it does not fire and requeues; a request without key limits ignores the key\'s pause', async () => {
  const slotAtMs = T0 + 1000;
  table.items.set('key-pacer#acme', { pausedUntilMs: String(slotAtMs + 60_000) });
  const paused = await callVendor(keyed({ slotAtMs }), deps());
  expect(paused.statusCode).toBeNull();
  expect(paused.requeue).toMatchObject({ reason: 'VendorPaused' });
  expect(fired).toEqual([]);

  const unkeyed = await callVendor({ requestId: 'r2', method: 'POST', key: 'acme', slotAtMs: now + 1000 }, deps());
  expect(unkeyed.statusCode).toBe(200);
  expect(fired).toHaveLength(1);
});

test('GIVEN credentials per key WHEN the vendor answers 429 THEN the key is paused and the contract is not', async () => {
  await expect(callVendor(keyed({ slotAtMs: T0 + 1000 }), deps({ keyPauseOn429: true }, 429))).rejects.toThrow();
  expect(Number(table.items.get('key-pacer#acme')!.pausedUntilMs)).toBeGreaterThanOrEqual(T0 + 1000 + 1000);
  expect(table.items.get('pacer')?.pausedUntilMs).toBeUndefined();
});

test('GIVEN one credential for all keys WHEN the vendor answers 429 THEN the contract is paused (as before)', async () => {
  await expect(callVendor(keyed({ slotAtMs: T0 + 1000 }), deps({}, 429))).rejects.toThrow();
  expect(Number(table.items.get('pacer')!.pausedUntilMs)).toBeGreaterThanOrEqual(T0 + 1000 + 1000);
  expect(table.items.get('key-pacer#acme')).toBeUndefined();
});
