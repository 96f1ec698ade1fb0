import { DynamoDBClient, GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { testVendorCallConfig } from './vendor-call-config';
import { AdaptiveSpec } from '../../src/contract/adaptive-spec';
import { callVendor, loadVendorCallConfig, VendorCallConfig, VendorCallDeps } from '../../src/dispatch-workflow/vendor-call';
import { slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';

const ddb = mockClient(DynamoDBClient);
const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined } as any;
const SPEC: AdaptiveSpec = { decreaseFactor: 0.5, probeIntervalMs: 10_000, increaseStep: 1, minimumRequestsPerSecond: 1, cooldownMs: 2000 };
const adaptiveWrites = () => ddb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input).filter((i) => i.UpdateExpression?.startsWith('SET #rps = :rps, #since = :since'));

function deps(config: Partial<VendorCallConfig>, status: number, metrics: string[] = [], rateInForce?: number): VendorCallDeps {
  return {
    dynamodb: new DynamoDBClient({ region: 'us-east-1' }),
    config: testVendorCallConfig(config),
    sign: async ({ headers }) => headers,
    fetch: async () => new Response(status === 429 ? 'slow down' : '{"jobId":"j-1"}', { status }),
    logger: silent,
    metrics: { addMetric: (name) => metrics.push(name) },
    ...(rateInForce === undefined ? {} : {
      dynamicDelay: { extraIntervalMs: async () => 0, pacingSettings: async () => ({ extraIntervalMs: 0, rateInForce }) },
    }),
  };
}

beforeEach(() => {
  ddb.reset();
  ddb.on(GetItemCommand).resolves({});
  ddb.on(PutItemCommand).resolves({});
  ddb.on(UpdateItemCommand).resolves({});
});

describe('callVendor with adaptive pacing (issue 14, item 5)', () => {
  test('GIVEN adaptive pacing WHEN the vendor answers 429 THEN the pause is written and the adaptive rate is decreased from the rate in force', async () => {
    const metrics: string[] = [];
    const error = await callVendor({ requestId: 'r-1', slotAtMs: Date.now() + 150 }, deps({ adaptivePacing: SPEC }, 429, metrics, 8)).catch((e) => e);
    expect(error.name).toBe('ApiGateway.429');
    const writes = adaptiveWrites();
    expect(writes).toHaveLength(1);
    // Half of the rate in force (8), not of the contract (10).
    expect(writes[0].ExpressionAttributeValues![':rps']).toEqual({ N: '4' });
    expect(metrics).toEqual(expect.arrayContaining(['VendorPauses', 'AdaptiveDecreases']));
  });

  test('GIVEN adaptive pacing WHEN the vendor answers 200 THEN the adaptive rate is not written', async () => {
    const result = await callVendor({ requestId: 'r-2', slotAtMs: Date.now() + 150 }, deps({ adaptivePacing: SPEC }, 202));
    expect(result.statusCode).toBe(202);
    expect(adaptiveWrites()).toHaveLength(0);
  });

  test('GIVEN no adaptive pacing WHEN the vendor answers 429 THEN only the pause is written', async () => {
    await callVendor({ requestId: 'r-3', slotAtMs: Date.now() + 150 }, deps({}, 429)).catch(() => undefined);
    expect(adaptiveWrites()).toHaveLength(0);
    expect(ddb.commandCalls(UpdateItemCommand).some((c) => c.args[0].input.UpdateExpression === 'SET #paused = :until')).toBe(true);
  });

  test('GIVEN the adaptive write fails WHEN the vendor answers 429 THEN the call still fails with ApiGateway.429 (the pause backs off)', async () => {
    ddb.on(UpdateItemCommand, { UpdateExpression: 'SET #rps = :rps, #since = :since REMOVE #probe, #probeSlots, #probeFrom, #probeTo' }).rejects(new Error('throttled'));
    const warnings: string[] = [];
    const error = await callVendor({ requestId: 'r-4', slotAtMs: Date.now() + 150 }, {
      ...deps({ adaptivePacing: SPEC }, 429), logger: { ...silent, warn: (m: string) => warnings.push(m) },
    }).catch((e) => e);
    expect(error.name).toBe('ApiGateway.429');
    expect(warnings).toContain('could not lower the adaptive rate (the pause still backs off)');
  });

  test('GIVEN a late slot and an adaptive rate of 5 WHEN reserving a fresh slot THEN it reads the adaptive state and spaces at 5 per second', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { adaptiveRps: { N: '5' }, adaptiveSinceMs: { N: String(Date.now()) } } });
    await callVendor({ requestId: 'r-5', slotAtMs: Date.now() - 5000 }, deps({ adaptivePacing: SPEC }, 202));
    const reservation = ddb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input).find((i) => i.UpdateExpression?.startsWith('SET #next = :new'))!;
    expect(reservation.ExpressionAttributeValues![':interval']).toEqual({ N: String(slotIntervalMs(5, 30)) });
  });

  test('GIVEN adaptive pacing\'s probe placed over the fired slot WHEN the vendor answers 429 THEN its refusal is recorded and the rate is not decreased (adaptive-probe.ts)', async () => {
    const slotAtMs = Date.now() + 150;
    ddb.on(GetItemCommand).resolves({
      Item: {
        adaptiveRps: { N: '5' },
        adaptiveSinceMs: { N: String(slotAtMs - 20_000) },
        adaptiveProbeAtMs: { N: String(slotAtMs - 10) },
        adaptiveProbeSlots: { N: '2' },
        adaptiveProbeFromMs: { N: String(slotAtMs - 900) },
        adaptiveProbeToMs: { N: String(slotAtMs + 40) },
      },
    });
    const metrics: string[] = [];
    const infos: string[] = [];
    const error = await callVendor({ requestId: 'r-6', slotAtMs }, {
      ...deps({ adaptivePacing: SPEC }, 429, metrics), logger: { ...silent, info: (m: string) => infos.push(m) },
    }).catch((e) => e);
    expect(error.name).toBe('ApiGateway.429');
    expect(adaptiveWrites()).toHaveLength(0);
    const refusal = ddb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input).find((i) => i.UpdateExpression === 'SET #refused = :probe')!;
    expect(refusal.ExpressionAttributeValues).toEqual({ ':probe': { N: String(slotAtMs - 10) } });
    expect(refusal.ConditionExpression).toBe('#probe = :probe');
    expect(metrics).not.toContain('AdaptiveDecreases');
    expect(infos).toContain('the vendor refused the adaptive probe: the rate stays');
  });

  test('GIVEN a late slot inside the probe\'s window WHEN reserving a fresh slot THEN the reservation marks the probe spoiled (its window holds one request fewer than planned)', async () => {
    const late = Date.now() - 5000;
    ddb.on(GetItemCommand).resolves({
      Item: {
        adaptiveRps: { N: '5' },
        adaptiveSinceMs: { N: String(late - 20_000) },
        adaptiveProbeAtMs: { N: String(late + 500) },
        adaptiveProbeSlots: { N: '2' },
        adaptiveProbeFromMs: { N: String(late - 100) },
        adaptiveProbeToMs: { N: String(Date.now() + 10_000) },
      },
    });
    await callVendor({ requestId: 'r-7', slotAtMs: late }, deps({ adaptivePacing: SPEC }, 202));
    const reservation = ddb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input).find((i) => i.UpdateExpression?.startsWith('SET #next = :new'))!;
    const placeholder = Object.entries(reservation.ExpressionAttributeNames!).find(([, name]) => name === 'adaptiveProbeRefusedAtMs' )![0];
    expect(reservation.UpdateExpression).toContain(`${placeholder} = :${placeholder.slice(1)}`);
    expect(reservation.ExpressionAttributeValues![`:${placeholder.slice(1)}`]).toEqual({ N: String(late + 500) });
  });

  test('GIVEN the environment WHEN loading the config THEN ADAPTIVE_PACING is read, and a bad one is refused by name', () => {
    const env = {
      PROXY_ENDPOINT_URL: 'https://x/',
      REQUESTS_PER_SECOND: '10',
      PACER_TABLE_NAME: 't',
      LATENESS_TOLERANCE_MS: '30',
      FIRE_TOLERANCE_MS: '5',
      MAX_SLOT_WAIT_MS: '10000',
      CALL_TIMEOUT_MS: '1000',
    };
    expect(loadVendorCallConfig(env).adaptivePacing).toBeUndefined();
    expect(loadVendorCallConfig({ ...env, ADAPTIVE_PACING: JSON.stringify(SPEC) }).adaptivePacing).toEqual(SPEC);
    expect(() => loadVendorCallConfig({ ...env, ADAPTIVE_PACING: '{"decreaseFactor":2}' })).toThrow(/ADAPTIVE_PACING: decreaseFactor must be below 1/);
  });
});
