import { ConditionalCheckFailedException, DynamoDBClient, GetItemCommand, UpdateItemCommand, UpdateItemCommandInput } from '@aws-sdk/client-dynamodb';
import { SendTaskFailureCommand, SFNClient, StartExecutionCommand, StartExecutionCommandInput } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { callVendor } from '../../src/dispatch-workflow/vendor-call';
import { dispatchBatch, DispatchConfig } from '../../src/rate-controlled-queue-consumer/dispatch';
import { AppConfigDataApi, DynamicDelayReader, parseRateInForce } from '../../src/rate-controlled-queue-consumer/dynamic-delay-reader';
import { INTERVAL_ATTRIBUTE, NEXT_SLOT_ATTRIBUTE, rateIncreaseHoldMs, slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';
import { PacingSettings, readPacingSettings, recordRateInForce } from '../../src/rate-controlled-queue-consumer/pacing-settings';
import { testVendorCallConfig } from '../dispatch-workflow/vendor-call-config';

// The rate at run time, handler side: the reader, the settings both reservers read, the dispatcher
// and a late vendor caller reserving at the rate in force.

const T0 = 1_700_000_000_000;
const ddb = mockClient(DynamoDBClient);
const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

/** AppConfigData with one deployed content; every read returns it when it changed since the token's last read. */
class OneContentAppConfig implements AppConfigDataApi {
  public content = '{"extraDelayMs":0}';
  public version = 1;
  public failing = false;
  private seen = new Map<string, number>();
  private serial = 0;
  public async startConfigurationSession() {
    if (this.failing) throw new Error('AppConfig down');
    return { InitialConfigurationToken: this.mint(0) };
  }
  public async getLatestConfiguration(input: { ConfigurationToken: string }) {
    if (this.failing) throw new Error('AppConfig down');
    const seen = this.seen.get(input.ConfigurationToken) ?? 0;
    return {
      NextPollConfigurationToken: this.mint(this.version),
      NextPollIntervalInSeconds: 15,
      Configuration: seen === this.version ? new Uint8Array(0) : new TextEncoder().encode(this.content),
    };
  }
  public deploy(content: string) {
    this.content = content;
    this.version++;
  }
  private mint(version: number) {
    const token = `t${++this.serial}`;
    this.seen.set(token, version);
    return token;
  }
}

function newReader(api: AppConfigDataApi, clock: { t: number }, logger = { info: jest.fn(), warn: jest.fn() }) {
  return new DynamicDelayReader({ api, applicationId: 'a', environmentId: 'e', configurationProfileId: 'p', pollIntervalSeconds: 15, logger, now: () => clock.t });
}

describe('DynamicDelayReader: the rate in force', () => {
  test('GIVEN a configuration without requestsPerSecond WHEN read THEN the rate is the contract (none) and the settings are known since the first read', async () => {
    const clock = { t: T0 };
    const settings = await newReader(new OneContentAppConfig(), clock).pacingSettings();
    expect(settings).toEqual({ extraIntervalMs: 0, settingsSinceMs: T0 });
  });

  test('GIVEN an operator deploys requestsPerSecond WHEN the poll interval has passed THEN the rate in force changes and its since-time with it', async () => {
    const api = new OneContentAppConfig();
    const clock = { t: T0 };
    const reader = newReader(api, clock);
    await reader.pacingSettings();
    api.deploy('{"extraDelayMs":0,"requestsPerSecond":4}');
    clock.t += 14_999;
    expect((await reader.pacingSettings()).rateInForce).toBeUndefined(); // cached
    clock.t += 1;
    expect(await reader.pacingSettings()).toEqual({ extraIntervalMs: 0, rateInForce: 4, settingsSinceMs: T0 + 15_000 });
    // Unchanged content keeps the since-time.
    clock.t += 15_000;
    expect((await reader.pacingSettings()).settingsSinceMs).toBe(T0 + 15_000);
    // Back to the contract: the field removed.
    api.deploy('{"extraDelayMs":0}');
    clock.t += 15_000;
    expect(await reader.pacingSettings()).toEqual({ extraIntervalMs: 0, settingsSinceMs: T0 + 45_000 });
  });

  test('GIVEN AppConfig fails from the cold start WHEN read THEN the settings are unknown (infinite since-time: the schedule never speeds up)', async () => {
    const api = new OneContentAppConfig();
    api.failing = true;
    const settings = await newReader(api, { t: T0 }).pacingSettings();
    expect(settings).toEqual({ extraIntervalMs: 0, settingsSinceMs: Number.POSITIVE_INFINITY });
  });

  test('GIVEN an invalid requestsPerSecond WHEN read THEN it is ignored with a warning and the last value stays', async () => {
    const api = new OneContentAppConfig();
    api.content = '{"extraDelayMs":0,"requestsPerSecond":5}';
    const clock = { t: T0 };
    const logger = { info: jest.fn(), warn: jest.fn() };
    const reader = newReader(api, clock, logger);
    expect((await reader.pacingSettings()).rateInForce).toBe(5);
    api.deploy('{"extraDelayMs":0,"requestsPerSecond":0}');
    clock.t += 15_000;
    expect((await reader.pacingSettings()).rateInForce).toBe(5);
    expect(logger.warn).toHaveBeenCalledWith(expect.stringMatching(/requestsPerSecond must be a number above 0/), expect.anything());
    expect(parseRateInForce('{"requestsPerSecond":"7"}')).toMatchObject({ ignored: true });
    expect(parseRateInForce('not json')).toEqual({ ignored: true });
    expect(parseRateInForce('{"extraDelayMs":1}')).toEqual({});
  });
});

describe('readPacingSettings and recordRateInForce', () => {
  test('GIVEN no source, a delay-only source or a full source WHEN read THEN the reservation settings follow', async () => {
    expect(await readPacingSettings(undefined)).toEqual({ extraIntervalMs: 0 });
    expect(await readPacingSettings({ extraIntervalMs: async () => -5 })).toEqual({ extraIntervalMs: 0 });
    const full: PacingSettings = { extraIntervalMs: 7, rateInForce: 3, settingsSinceMs: T0 };
    expect(await readPacingSettings({ extraIntervalMs: async () => 7, pacingSettings: async () => full })).toEqual(full);
  });

  test('GIVEN a rate in force above the contract or none WHEN recorded THEN the metric shows the rate used (capped at the contract)', () => {
    const added: number[] = [];
    const metrics = { addMetric: (_name: string, _unit: 'Count', value: number) => void added.push(value) };
    recordRateInForce(metrics, 10, { extraIntervalMs: 0, rateInForce: 4 });
    recordRateInForce(metrics, 10, { extraIntervalMs: 0, rateInForce: 40 });
    recordRateInForce(metrics, 10, { extraIntervalMs: 0 });
    expect(added).toEqual([4, 10, 10]);
  });
});

/** The pacer item in memory behind the mocked client, storing next slot and interval. */
function inMemoryPacer(initial?: { next: number; interval: number }) {
  let item: Record<string, { N: string }> | undefined = initial
    ? { [NEXT_SLOT_ATTRIBUTE]: { N: String(initial.next) }, [INTERVAL_ATTRIBUTE]: { N: String(initial.interval) } }
    : undefined;
  ddb.on(GetItemCommand).callsFake(async () => ({ Item: item ? { pk: { S: 'pacer' }, ...item } : undefined }));
  ddb.on(UpdateItemCommand).callsFake(async (input: UpdateItemCommandInput) => {
    const values = input.ExpressionAttributeValues!;
    if (values[':new'] === undefined) return {}; // the pause
    const stored = item?.[NEXT_SLOT_ATTRIBUTE]?.N;
    const holds = values[':old'] === undefined ? stored === undefined : stored === values[':old'].N;
    if (!holds) throw new ConditionalCheckFailedException({ message: 'conditional', $metadata: {} });
    item = { [NEXT_SLOT_ATTRIBUTE]: values[':new'] as { N: string }, [INTERVAL_ATTRIBUTE]: values[':interval'] as { N: string } };
    return {};
  });
  return { item: () => item };
}

const L = 30;
const CONFIG: DispatchConfig = {
  stateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:dispatch',
  requestsPerSecond: 10,
  pacerTableName: 'pacer',
  maxPacingWaitMs: 5_000,
  latenessToleranceMs: L,
  correlationTtlSeconds: 86_400,
  deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/dlq',
};

function sqsEvent(n: number): SQSEvent {
  return {
    Records: Array.from({ length: n }, (_, i) => ({
      messageId: `m${i}`,
      receiptHandle: `r${i}`,
      body: JSON.stringify({ taskToken: `token-${i}`, requestId: `req-${i}`, payload: {} }),
      attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(T0), SenderId: 's', ApproximateFirstReceiveTimestamp: String(T0) },
      messageAttributes: {},
      md5OfBody: 'md5',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:requests',
      awsRegion: 'eu-west-1',
    })),
  };
}

describe('dispatcher and vendor caller reserve at the rate in force', () => {
  beforeEach(() => {
    ddb.reset();
    sfn.reset();
    sqs.reset();
    sfn.on(SendTaskFailureCommand).resolves({});
  });

  test('GIVEN operators set 4 RPS under a 10 RPS contract, after slots reserved at 10 WHEN the dispatcher reserves THEN starts are spaced for 4 RPS from the last old slot, and RateInForce is 4', async () => {
    const i10 = slotIntervalMs(10, L);
    const i4 = slotIntervalMs(4, L);
    const lastOld = T0 + 200;
    const pacer = inMemoryPacer({ next: lastOld + i10, interval: i10 });
    let t = T0;
    const starts: number[] = [];
    sfn.on(StartExecutionCommand).callsFake(async (input: StartExecutionCommandInput) => {
      starts.push(t);
      return { executionArn: `arn:x:${input.name}`, startDate: new Date() };
    });
    const added: Array<[string, number]> = [];
    await dispatchBatch(sqsEvent(3), {
      clients: { dynamodb: new DynamoDBClient({}), sfn: new SFNClient({}), sqs: new SQSClient({}) },
      config: CONFIG,
      logger: { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() } as any,
      metrics: { addMetric: (name, _unit, value) => void added.push([name, value]) },
      clock: { now: () => t, sleep: async (ms) => { t += ms; } },
      random: () => 0.5,
      dynamicDelay: {
        extraIntervalMs: async () => 0,
        pacingSettings: async () => ({ extraIntervalMs: 0, rateInForce: 4, settingsSinceMs: T0 - 60_000 }),
      },
    });
    expect(starts).toEqual([lastOld + i4, lastOld + 2 * i4, lastOld + 3 * i4]);
    expect(pacer.item()).toEqual({ [NEXT_SLOT_ATTRIBUTE]: { N: String(lastOld + 4 * i4) }, [INTERVAL_ATTRIBUTE]: { N: String(i4) } });
    expect(added).toContainEqual(['RateInForce', 4]);
  });

  test('GIVEN a late vendor caller and a rate raised less than one window ago WHEN it reserves a fresh slot THEN it keeps the stored interval; after the hold it uses the new rate', async () => {
    const i4 = slotIntervalMs(4, L);
    const i10 = slotIntervalMs(10, L);
    const fired: number[] = [];
    const call = async (settingsSinceMs: number) => {
      const lastOld = Date.now() + 100;
      const pacer = inMemoryPacer({ next: lastOld + i4, interval: i4 });
      await callVendor({ requestId: 'r-late', body: { a: 1 } }, {
        dynamodb: new DynamoDBClient({ region: 'us-east-1' }),
        config: testVendorCallConfig({ latenessToleranceMs: L, maxSlotWaitMs: 5_000 }),
        sign: async ({ headers }) => headers,
        fetch: async () => {
          fired.push(Date.now());
          return new Response('{"jobId":"j"}', { status: 200, headers: { 'content-type': 'application/json' } });
        },
        logger: { debug: () => undefined, info: () => undefined, warn: () => undefined },
        dynamicDelay: { extraIntervalMs: async () => 0, pacingSettings: async () => ({ extraIntervalMs: 0, rateInForce: 10, settingsSinceMs }) },
      });
      return { lastOld, stored: Number(pacer.item()![INTERVAL_ATTRIBUTE].N) };
    };
    const held = await call(Date.now());
    expect(held.stored).toBe(i4);
    const after = await call(Date.now() - rateIncreaseHoldMs(L));
    expect(after.stored).toBe(i10);
    expect(fired).toHaveLength(2);
  });
});
