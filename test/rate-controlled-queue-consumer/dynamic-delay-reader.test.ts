import * as http from 'http';
import { AddressInfo } from 'net';
import { DynamoDBClient, GetItemCommand, UpdateItemCommand, UpdateItemCommandInput } from '@aws-sdk/client-dynamodb';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { dispatchBatch, DispatchConfig, DispatchLogger } from '../../src/rate-controlled-queue-consumer/dispatch';
import { DynamicDelayEnv, MAX_EXTRA_DELAY_MS } from '../../src/rate-controlled-queue-consumer/dynamic-delay-env';
import {
  AppConfigDataApi,
  appConfigDataEndpoint,
  dynamicDelayFromEnv,
  DynamicDelayReader,
  parseExtraDelay,
  SignedFetchAppConfigData,
} from '../../src/rate-controlled-queue-consumer/dynamic-delay-reader';
import { computeSchedule, maxInAnyWindow, slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';

const T0 = 1_700_000_000_000;

/** A scripted AppConfigData: the deployed content, the token chain, call counts, injectable failures. */
class FakeAppConfigData implements AppConfigDataApi {
  public content = '{"extraDelayMs":0}';
  public version = 1;
  public nextPollIntervalSeconds = 30;
  public readonly calls: string[] = [];
  public failNext: Error[] = [];
  private tokens = new Map<string, number>(); // token -> version last seen on it (0: none)
  private serial = 0;

  public async startConfigurationSession(input: Parameters<AppConfigDataApi['startConfigurationSession']>[0]) {
    this.calls.push(`start:${input.RequiredMinimumPollIntervalInSeconds}`);
    this.throwIfScripted();
    return { InitialConfigurationToken: this.mint(0) };
  }

  public async getLatestConfiguration(input: { ConfigurationToken: string }) {
    this.calls.push('get');
    this.throwIfScripted();
    const seen = this.tokens.get(input.ConfigurationToken);
    if (seen === undefined) {
      throw Object.assign(new Error('Invalid or expired token'), { name: 'BadRequestException' });
    }
    this.tokens.delete(input.ConfigurationToken); // one use per token
    const changed = seen !== this.version;
    return {
      NextPollConfigurationToken: this.mint(this.version),
      NextPollIntervalInSeconds: this.nextPollIntervalSeconds,
      ContentType: 'application/json',
      Configuration: changed ? new TextEncoder().encode(this.content) : new Uint8Array(0),
      VersionLabel: String(this.version),
    };
  }

  public deploy(content: string): void {
    this.content = content;
    this.version++;
  }

  private mint(version: number): string {
    const token = `token-${++this.serial}`;
    this.tokens.set(token, version);
    return token;
  }

  private throwIfScripted(): void {
    const error = this.failNext.shift();
    if (error) {
      throw error;
    }
  }
}

function reader(api: FakeAppConfigData, clock: { t: number }, logger = { info: jest.fn(), warn: jest.fn() }) {
  return {
    logger,
    reader: new DynamicDelayReader({
      api,
      applicationId: 'app',
      environmentId: 'env',
      configurationProfileId: 'profile',
      pollIntervalSeconds: 30,
      logger: logger as any,
      now: () => clock.t,
    }),
  };
}

describe('DynamicDelayReader', () => {
  test('reads once per poll interval, follows the token chain, applies a deployed change at the next poll', async () => {
    const api = new FakeAppConfigData();
    const clock = { t: T0 };
    const { reader: r } = reader(api, clock);

    expect(await r.extraIntervalMs()).toBe(0);
    expect(api.calls).toEqual(['start:30', 'get']);

    api.deploy('{"extraDelayMs":400}');
    clock.t += 29_999;
    expect(await r.extraIntervalMs()).toBe(0); // cached: no call before the interval ends
    expect(api.calls).toHaveLength(2);

    clock.t += 1;
    expect(await r.extraIntervalMs()).toBe(400);
    expect(api.calls).toEqual(['start:30', 'get', 'get']); // one session, the chain continues

    clock.t += 30_000;
    expect(await r.extraIntervalMs()).toBe(400); // unchanged: empty body keeps the value
    expect(api.calls).toHaveLength(4);
  });

  test("respects AppConfig's NextPollIntervalInSeconds when it is longer than ours", async () => {
    const api = new FakeAppConfigData();
    api.nextPollIntervalSeconds = 60;
    const clock = { t: T0 };
    const { reader: r } = reader(api, clock);
    await r.extraIntervalMs();
    api.deploy('{"extraDelayMs":10}');
    clock.t += 59_000;
    expect(await r.extraIntervalMs()).toBe(0);
    clock.t += 1_000;
    expect(await r.extraIntervalMs()).toBe(10);
  });

  test('concurrent callers share one refresh', async () => {
    const api = new FakeAppConfigData();
    api.content = '{"extraDelayMs":5}';
    const { reader: r } = reader(api, { t: T0 });
    expect(await Promise.all([r.extraIntervalMs(), r.extraIntervalMs(), r.extraIntervalMs()])).toEqual([5, 5, 5]);
    expect(api.calls).toEqual(['start:30', 'get']);
  });

  test('never throws: 0 when the first read fails, then the last good value; a new session after a failure', async () => {
    const api = new FakeAppConfigData();
    const clock = { t: T0 };
    const { reader: r, logger } = reader(api, clock);

    api.failNext = [Object.assign(new Error('throttled'), { name: 'ThrottlingException' })];
    expect(await r.extraIntervalMs()).toBe(0);
    expect(logger.warn).toHaveBeenCalledWith(expect.stringContaining('could not read the dynamic delay'), expect.objectContaining({ extraDelayMs: 0 }));
    // The failure is not retried at every reservation: the next call waits a poll interval.
    expect(await r.extraIntervalMs()).toBe(0);
    expect(api.calls).toEqual(['start:30']);

    api.deploy('{"extraDelayMs":250}');
    clock.t += 30_000;
    expect(await r.extraIntervalMs()).toBe(250);

    // AppConfig down: the last good value stays.
    clock.t += 30_000;
    api.failNext = [new Error('socket hang up')];
    expect(await r.extraIntervalMs()).toBe(250);
    // After a failure the token may be spent or expired: a new session is opened.
    clock.t += 30_000;
    const before = api.calls.length;
    expect(await r.extraIntervalMs()).toBe(250);
    expect(api.calls.slice(before)).toEqual(['start:30', 'get']);
  });

  test('invalid content: ignored or clamped so that it can only slow, with a warning', async () => {
    const api = new FakeAppConfigData();
    api.content = '{"extraDelayMs":300}';
    const clock = { t: T0 };
    const { reader: r, logger } = reader(api, clock);
    expect(await r.extraIntervalMs()).toBe(300);

    const next = async (content: string) => {
      api.deploy(content);
      clock.t += 30_000;
      return r.extraIntervalMs();
    };
    expect(await next('not json')).toBe(300);
    expect(await next('{"extraDelayMs":"500"}')).toBe(300);
    expect(await next('[1]')).toBe(300);
    expect(await next('{"extraDelayMs":-100}')).toBe(0);
    expect(await next('{"extraDelayMs":999999}')).toBe(MAX_EXTRA_DELAY_MS);
    expect(await next('{"extraDelayMs":12.2}')).toBe(13);
    expect(logger.warn).toHaveBeenCalledTimes(6);
  });

  test('parseExtraDelay', () => {
    expect(parseExtraDelay('{"extraDelayMs":0}')).toEqual({ value: 0 });
    expect(parseExtraDelay('{"extraDelayMs":60000}')).toEqual({ value: 60000 });
    expect(parseExtraDelay('{}').value).toBeUndefined();
    expect(parseExtraDelay('{"extraDelayMs":null}').warning).toMatch(/must be a number, got null/);
  });
});

describe('dynamicDelayFromEnv', () => {
  const env = {
    [DynamicDelayEnv.APPLICATION_ID]: 'a',
    [DynamicDelayEnv.ENVIRONMENT_ID]: 'e',
    [DynamicDelayEnv.CONFIGURATION_PROFILE_ID]: 'p',
    [DynamicDelayEnv.POLL_INTERVAL_SECONDS]: '15',
  };

  test('no variables: no reader (the feature is off)', () => {
    expect(dynamicDelayFromEnv({})).toBeUndefined();
  });

  test('all variables: a reader; a partial or invalid set fails at cold start naming the variable', async () => {
    const api = new FakeAppConfigData();
    const r = dynamicDelayFromEnv(env, undefined, api)!;
    expect(await r.extraIntervalMs()).toBe(0);
    expect(api.calls[0]).toBe('start:15');
    expect(() => dynamicDelayFromEnv({ [DynamicDelayEnv.APPLICATION_ID]: 'a' })).toThrow(/must be set together/);
    expect(() => dynamicDelayFromEnv({ ...env, [DynamicDelayEnv.POLL_INTERVAL_SECONDS]: '5' })).toThrow(/DYNAMIC_DELAY_POLL_INTERVAL_SECONDS must be a whole number of seconds >= 15, got "5"/);
  });

  test('endpoint override: AWS_ENDPOINT_URL_APPCONFIGDATA, then AWS_ENDPOINT_URL', () => {
    expect(appConfigDataEndpoint({})).toBeUndefined();
    expect(appConfigDataEndpoint({ AWS_ENDPOINT_URL: 'http://a' })).toBe('http://a');
    expect(appConfigDataEndpoint({ AWS_ENDPOINT_URL: 'http://a', AWS_ENDPOINT_URL_APPCONFIGDATA: 'http://b' })).toBe('http://b');
  });
});

describe('SignedFetchAppConfigData (the REST transport)', () => {
  let server: http.Server;
  let endpoint: string;
  const seen: Array<{ method?: string; url?: string; headers: http.IncomingHttpHeaders; body: string }> = [];
  let reply: { status: number; headers: Record<string, string>; body: string };

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(reply.status, reply.headers);
        res.end(reply.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const api = () => new SignedFetchAppConfigData({
    region: 'eu-west-1',
    endpoint,
    credentials: async () => ({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret', sessionToken: 'session' }),
  });

  test('StartConfigurationSession: POST /configurationsessions, JSON body, SigV4 for appconfig', async () => {
    seen.length = 0;
    reply = { status: 201, headers: { 'content-type': 'application/json' }, body: '{"InitialConfigurationToken":"tok/1+="}' };
    const out = await api().startConfigurationSession({
      ApplicationIdentifier: 'a', EnvironmentIdentifier: 'e', ConfigurationProfileIdentifier: 'p', RequiredMinimumPollIntervalInSeconds: 30,
    });
    expect(out.InitialConfigurationToken).toBe('tok/1+=');
    expect(seen[0].method).toBe('POST');
    expect(seen[0].url).toBe('/configurationsessions');
    expect(JSON.parse(seen[0].body)).toEqual({
      ApplicationIdentifier: 'a', EnvironmentIdentifier: 'e', ConfigurationProfileIdentifier: 'p', RequiredMinimumPollIntervalInSeconds: 30,
    });
    expect(seen[0].headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/appconfig\/aws4_request, SignedHeaders=[a-z0-9;-]*host[a-z0-9;-]*, Signature=[0-9a-f]{64}$/);
    expect(seen[0].headers['x-amz-security-token']).toBe('session');
    expect(seen[0].headers['x-amz-date']).toMatch(/^\d{8}T\d{6}Z$/);
  });

  test('GetLatestConfiguration: GET /configuration?configuration_token=, headers and body mapped', async () => {
    seen.length = 0;
    reply = {
      status: 200,
      headers: {
        'content-type': 'application/json',
        'next-poll-configuration-token': 'tok-2',
        'next-poll-interval-in-seconds': '45',
        'version-label': 'v3',
      },
      body: '{"extraDelayMs":7}',
    };
    const out = await api().getLatestConfiguration({ ConfigurationToken: 'tok/1+=' });
    expect(seen[0].method).toBe('GET');
    expect(new URL(seen[0].url!, endpoint).searchParams.get('configuration_token')).toBe('tok/1+=');
    expect(out.NextPollConfigurationToken).toBe('tok-2');
    expect(out.NextPollIntervalInSeconds).toBe(45);
    expect(out.VersionLabel).toBe('v3');
    expect(Buffer.from(out.Configuration!).toString()).toBe('{"extraDelayMs":7}');
  });

  test('errors are named as AWS names them', async () => {
    reply = {
      status: 400,
      headers: { 'content-type': 'application/json', 'x-amzn-errortype': 'BadRequestException:http://internal.amazon.com/' },
      body: '{"Message":"Token expired"}',
    };
    await expect(api().getLatestConfiguration({ ConfigurationToken: 'old' })).rejects.toMatchObject({ name: 'BadRequestException', message: 'Token expired', statusCode: 400 });
  });
});

describe('pacing with an extra interval', () => {
  // L = 49 ms: I = (1000 + 49 + 1 ms at the window's edge) / 10 = 105 ms.
  test('computeSchedule adds the extra interval to every slot gap', () => {
    const I = slotIntervalMs(10, 49); // 105 ms
    const s = computeSchedule(T0, undefined, 5, 10, 49, 10_000, { extraIntervalMs: 395 });
    expect(s.slots.map((t) => t - T0)).toEqual([0, 500, 1000, 1500, 2000].map((k) => k * (I + 395) / 500));
    expect(s.newNextSlotAtMs).toBe(T0 + 5 * (I + 395));
    // Fewer slots fit before the deadline.
    expect(computeSchedule(T0, undefined, 50, 10, 49, 1_000, { extraIntervalMs: 395 }).n).toBe(3);
    expect(() => computeSchedule(T0, undefined, 1, 10, 49, 1_000, { extraIntervalMs: -1 })).toThrow(/extraIntervalMs must be a non-negative number, got -1/);
    expect(() => computeSchedule(T0, undefined, 1, 10, 49, 1_000, { extraIntervalMs: NaN })).toThrow(/extraIntervalMs/);
  });

  test('a change of the extra interval between reservations never brings slots closer than I (the bound holds)', () => {
    const I = slotIntervalMs(10, 49);
    let next: number | undefined;
    const all: number[] = [];
    for (const extra of [0, 300, 0, 1000, 7, 0]) {
      const s = computeSchedule(T0, next, 4, 10, 49, 60_000, { extraIntervalMs: extra });
      all.push(...s.slots);
      next = s.newNextSlotAtMs;
    }
    const gaps = all.slice(1).map((t, i) => t - all[i]);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(I);
    expect(maxInAnyWindow(all)).toBeLessThanOrEqual(10);
  });

  test('dispatchBatch reads the dynamic delay before reserving and spaces the starts by I + extra', async () => {
    const ddb = mockClient(DynamoDBClient);
    const sfn = mockClient(SFNClient);
    const sqs = mockClient(SQSClient);
    try {
      ddb.on(GetItemCommand).resolves({});
      ddb.on(UpdateItemCommand).resolves({});
      sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:exec' });
      const clock = { t: T0, now: () => clock.t, sleep: async (ms: number) => { clock.t += ms; } };
      const starts: number[] = [];
      sfn.on(StartExecutionCommand).callsFake(() => {
        starts.push(clock.t);
        return { executionArn: 'arn:exec' };
      });
      const config: DispatchConfig = {
        stateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:d',
        requestsPerSecond: 10,
        pacerTableName: 'pacer',
        maxPacingWaitMs: 10_000,
        latenessToleranceMs: 49,
        correlationTtlSeconds: 3600,
        deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/dlq',
      };
      const dynamicDelay = { extraIntervalMs: jest.fn(async () => 895) };
      const event: SQSEvent = {
        Records: [1, 2, 3].map((i) => ({
          messageId: `m${i}`,
          receiptHandle: `r${i}`,
          body: JSON.stringify({ taskToken: `t${i}`, requestId: `req-${i}`, payload: {} }),
          attributes: {} as any,
          messageAttributes: {},
          md5OfBody: '',
          eventSource: 'aws:sqs',
          eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:requests',
          awsRegion: 'eu-west-1',
        })),
      };
      const logger = { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() } as unknown as DispatchLogger;
      const result = await dispatchBatch(event, {
        clients: { dynamodb: new DynamoDBClient({}), sfn: new SFNClient({}), sqs: new SQSClient({}) },
        config,
        logger,
        metrics: { addMetric: () => undefined },
        clock,
        dynamicDelay,
      });
      expect(result.batchItemFailures).toEqual([]);
      expect(dynamicDelay.extraIntervalMs).toHaveBeenCalledTimes(1);
      expect(starts.map((t) => t - T0)).toEqual([0, 1000, 2000]); // I = 105 ms + 895 ms
      const written = ddb.commandCalls(UpdateItemCommand)[0].args[0].input as UpdateItemCommandInput;
      expect(written.ExpressionAttributeValues![':new'].N).toBe(String(T0 + 3000));
    } finally {
      ddb.restore();
      sfn.restore();
      sqs.restore();
    }
  });
});
