/**
 * The local CloudWatch Logs subscription filters (local/aws/logs-subscriptions.ts): what the
 * arrival audit's template uses is delivered in the AWS payload shape; anything else is refused at load.
 */
import { gunzipSync } from 'node:zlib';
import { compileFilterPattern, LocalLogSubscriptions, LocalLogSubscriptionsOptions, MAX_EVENTS_PER_DELIVERY } from '../../local/aws/logs-subscriptions';
import { ResolvedResource } from '../../local/types';

const FN = 'arn:aws:lambda:us-east-1:000000000000:function:audit';
const GROUP = 'Stack-ProxyAccessLogs1234';

function resource(logicalId: string, type: string, properties: Record<string, any>): ResolvedResource {
  return { logicalId, type, properties, metadata: {} };
}

const stage = resource('ProxyStage', 'AWS::ApiGateway::Stage', {
  RestApiId: 'proxyapi',
  StageName: 'vendor',
  AccessLogSetting: { DestinationArn: `arn:aws:logs:us-east-1:000000000000:log-group:${GROUP}:*`, Format: '{}' },
});

function filter(properties: Record<string, any> = {}): ResolvedResource {
  return resource('AuditSubscription', 'AWS::Logs::SubscriptionFilter', {
    LogGroupName: GROUP,
    DestinationArn: FN,
    FilterPattern: '{ $.userAgent = "cdk-async-external-api-vendor-caller/*" }',
    ...properties,
  });
}

const caller = (n: number) => JSON.stringify({ requestTimeEpoch: String(1000 + n), userAgent: `cdk-async-external-api-vendor-caller/c slot/${1000 + n}` });
const other = JSON.stringify({ requestTimeEpoch: '5', userAgent: 'aws-sdk-js/3' });

function subscriptions(lines: string[], overrides: Partial<LocalLogSubscriptionsOptions> = {}) {
  const invocations: any[] = [];
  const subs = new LocalLogSubscriptions({
    filters: [filter()],
    stages: [stage],
    functionArns: [FN],
    readAccessLog: async (apiId) => (apiId === 'proxyapi' ? lines : []),
    invoke: async (arn, event: any) => {
      const payload = JSON.parse(gunzipSync(Buffer.from(event.awslogs.data, 'base64')).toString('utf8'));
      invocations.push({ arn, payload });
      return { measured: payload.logEvents.length };
    },
    intervalMs: 0,
    clock: () => 42,
    ...overrides,
  });
  return { subs, invocations };
}

describe('LocalLogSubscriptions', () => {
  test('GIVEN access log lines WHEN flushed THEN the matching ones reach the function once, in the CloudWatch Logs payload', async () => {
    // GIVEN
    const lines = [caller(1), other, 'not json', caller(2)];
    const { subs, invocations } = subscriptions(lines);

    // WHEN
    const first = await subs.flush();
    lines.push(caller(3));
    const second = await subs.flush();

    // THEN
    expect(first).toEqual([{ filter: 'AuditSubscription', functionArn: FN, events: 2, result: { measured: 2 } }]);
    expect(second).toEqual([expect.objectContaining({ events: 1 })]);
    expect(invocations[0]).toEqual({
      arn: FN,
      payload: {
        messageType: 'DATA_MESSAGE',
        owner: '000000000000',
        logGroup: GROUP,
        logStream: 'proxyapi_vendor',
        subscriptionFilters: ['AuditSubscription'],
        logEvents: [
          { id: expect.stringMatching(/^\d+$/), timestamp: 42, message: caller(1) },
          { id: expect.stringMatching(/^\d+$/), timestamp: 42, message: caller(2) },
        ],
      },
    });
    expect(invocations[1].payload.logEvents.map((e: any) => e.message)).toEqual([caller(3)]);
    expect(await subs.flush()).toEqual([]);
  });

  test('GIVEN more lines than one delivery holds WHEN flushed THEN batches', async () => {
    const { subs } = subscriptions(Array.from({ length: MAX_EVENTS_PER_DELIVERY + 3 }, (_, i) => caller(i)));
    expect((await subs.flush()).map((d) => d.events)).toEqual([MAX_EVENTS_PER_DELIVERY, 3]);
  });

  test('GIVEN a function that fails WHEN delivered THEN it is tried three times (Lambda\'s two retries of an asynchronous invocation), then the batch is dropped', async () => {
    let calls = 0;
    const { subs } = subscriptions([caller(1)], { invoke: async () => { calls++; throw Object.assign(new Error('boom'), { name: 'Runtime.Error' }); } });
    expect(await subs.flush()).toEqual([{ filter: 'AuditSubscription', functionArn: FN, events: 1, error: 'Runtime.Error: boom' }]);
    expect(calls).toBe(3);
  });

  test.each([
    ['a RoleArn (Kinesis, Firehose)', { RoleArn: 'arn:aws:iam::000000000000:role/r' }, /only Lambda destinations are executed locally/],
    ['a destination outside the stack', { DestinationArn: 'arn:aws:lambda:us-east-1:000000000000:function:elsewhere' }, /not a Lambda function of this stack/],
    ['a log group nothing writes locally', { LogGroupName: 'app-logs' }, /not the access log group of a REST API stage/],
    ['a filter pattern it does not implement', { FilterPattern: '{ $.status != "200" }' }, /implements only \{ \$\.field = "value" \}/],
    ['a space-delimited pattern', { FilterPattern: '[ip, user, ...]' }, /implements only/],
  ])('GIVEN %s WHEN loaded THEN it is refused, naming the resource', (_name, properties, message) => {
    expect(() => new LocalLogSubscriptions({
      filters: [filter(properties)], stages: [stage], functionArns: [FN], readAccessLog: async () => [], invoke: async () => undefined,
    })).toThrow(message);
    expect(() => new LocalLogSubscriptions({
      filters: [filter(properties)], stages: [stage], functionArns: [FN], readAccessLog: async () => [], invoke: async () => undefined,
    })).toThrow(/AuditSubscription \(AWS::Logs::SubscriptionFilter\)/);
  });

  test.each([
    ['{ $.userAgent = "abc*" }', '{"userAgent":"abcdef"}', true],
    ['{ $.userAgent = "abc*" }', '{"userAgent":"xabc"}', false],
    ['{ $.userAgent = "abc" }', '{"userAgent":"abcdef"}', false],
    ['{ $.userAgent = "abc" }', '{"userAgent":"abc"}', true],
    ['{ $.status = 429 }', '{"status":"429"}', true],
    ['{ $.a.b = "x" }', '{"a":{"b":"x"}}', true],
    ['{ $.a.b = "x" }', '{"a":"x"}', false],
    ['{ $.userAgent = "abc*" }', 'abcdef', false],
  ])('pattern %s against %s: %p', (pattern, message, expected) => {
    expect(compileFilterPattern(pattern)(message)).toBe(expected);
  });
});
