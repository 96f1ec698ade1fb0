/**
 * The webhook's signing secret per key (issue 15, item 2): the request's key rides in its
 * capability token (`<random>.<base64url(key)>`), so the processor verifies each callback with
 * that key's secret before it trusts the body. A callback signed with another key's secret is
 * refused; a key without a signing secret is refused; the token (key part included) must still be
 * the request's.
 */
import { DynamoDBClient, GetItemCommand, QueryCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { WebhookSignature } from '../../src';
import { CallbackConfig, CallbackDeps, processCallbackRecord } from '../../src/callback-webhook/callback-processing';
import { CachedSecret, signCallback } from '../../src/callback-webhook/signature-verification';
import { buildDispatchInput, isCallbackToken } from '../../src/rate-controlled-queue-consumer/dispatch';
import { callbackTokenWithKey, keyOfCallbackToken } from '../../src/shared/callback-token-key';
import { testStack } from '../util';

const ddbMock = mockClient(DynamoDBClient);
const sfnMock = mockClient(SFNClient);
const sqsMock = mockClient(SQSClient);
const clients = {
  dynamodb: new DynamoDBClient({ region: 'eu-west-1' }),
  sfn: new SFNClient({ region: 'eu-west-1' }),
  sqs: new SQSClient({ region: 'eu-west-1' }),
};

const NOW_MS = 1_700_000_000_000;
const spec = WebhookSignature.github(secretsmanager.Secret.fromSecretNameV2(testStack(), 'S', 'signing'))._spec;
const config: CallbackConfig = {
  tableName: 'correlation-table',
  jobIdIndexName: 'ByJobId',
  jobIdPath: ['jobId'],
  failureStatusValues: [],
  deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/callback-dlq',
  requireCallbackToken: true,
  signature: spec,
};
/** Each key's signing secret (initech has none). */
const SIGNING: Record<string, string> = { acme: 'acme-signing-secret-32-bytes-long!', globex: 'globex-signing-secret-32-bytes-lng' };
const ACME_TOKEN = callbackTokenWithKey('A'.repeat(43), 'acme');

function record(body: string, token: string, signedWith: string): SQSRecord {
  const headers = { 'Content-Type': 'application/json', ...signCallback(spec, signedWith, body, NOW_MS / 1000) };
  const envelope = {
    v: 1,
    bodyBase64: Buffer.from(body).toString('base64'),
    headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [Buffer.from(k).toString('base64'), Buffer.from(v).toString('base64')])),
    receivedAtEpochMs: NOW_MS - 100,
    apiRequestId: 'api-1',
    callbackTokenBase64: Buffer.from(token).toString('base64'),
  };
  return {
    messageId: 'm-1',
    receiptHandle: 'r-1',
    body: JSON.stringify(envelope),
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 'x', ApproximateFirstReceiveTimestamp: '0' },
    eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:callback-queue',
    awsRegion: 'eu-west-1',
  };
}

function deps(reads: string[] = []): CallbackDeps {
  const secrets = new Map<string, CachedSecret>();
  return {
    metrics: { addMetric: () => undefined },
    now: () => NOW_MS,
    signatureSecret: new CachedSecret({ read: async () => 'the-webhooks-one-secret-32-bytes!' }, () => NOW_MS),
    keySignatureSecret: (key) => {
      if (!secrets.has(key)) {
        secrets.set(key, new CachedSecret({
          read: async () => {
            reads.push(key);
            if (!(key in SIGNING)) {
              const error = new Error("Secrets Manager can't find the specified secret.");
              error.name = 'ResourceNotFoundException';
              throw error;
            }
            return SIGNING[key];
          },
        }, () => NOW_MS));
      }
      return secrets.get(key)!;
    },
  };
}
const logger = () => ({ debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn(), appendKeys: jest.fn(), removeKeys: jest.fn() });
const parked = () => sqsMock.commandCalls(SendMessageCommand)
  .map((c) => [c.args[0].input.MessageAttributes?.reason?.StringValue, c.args[0].input.MessageAttributes?.detail?.StringValue]);

beforeEach(() => {
  ddbMock.reset();
  sfnMock.reset();
  sqsMock.reset();
  ddbMock.on(QueryCommand).resolves({ Items: [{ requestId: { S: 'req-1' }, jobId: { S: 'job-1' }, taskToken: { S: 'task-token-1' }, status: { S: 'SUBMITTED' } }] });
  ddbMock.on(GetItemCommand).resolves({ Item: { callbackToken: { S: ACME_TOKEN } } });
  ddbMock.on(UpdateItemCommand).resolves({});
  sfnMock.on(SendTaskSuccessCommand).resolves({});
  sqsMock.on(SendMessageCommand).resolves({});
});

describe('the key in the callback token', () => {
  test('round-trips any valid key; a token without one, or with garbage, has none; the dispatcher mints it only when told', () => {
    for (const key of ['acme', 'customer/42', 'x'.repeat(128), '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~']) {
      const token = callbackTokenWithKey('A'.repeat(43), key);
      expect(isCallbackToken(token)).toBe(true);
      expect(keyOfCallbackToken(token)).toBe(key);
    }
    expect(keyOfCallbackToken('A'.repeat(43))).toBeUndefined();
    expect(keyOfCallbackToken(`${'A'.repeat(43)}.!!`)).toBeUndefined();
    const message = { taskToken: 't', requestId: 'r', payload: {}, key: 'acme' };
    expect(keyOfCallbackToken(buildDispatchInput(message, NOW_MS, 60, undefined, true).callbackToken)).toBe('acme');
    expect(buildDispatchInput(message, NOW_MS, 60).callbackToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('processCallbackRecord with a signing secret per key', () => {
  test('GIVEN a callback signed with its own key\'s secret WHEN processed THEN the workflow resumes', async () => {
    const reads: string[] = [];
    await processCallbackRecord(record('{"jobId":"job-1"}', ACME_TOKEN, SIGNING.acme), clients, config, logger(), deps(reads));
    expect(sfnMock).toHaveReceivedCommandWith(SendTaskSuccessCommand, { taskToken: 'task-token-1' });
    expect(parked()).toEqual([]);
    expect(reads).toEqual(['acme']);
  });

  test('GIVEN callbacks with and without a key in their token WHEN resolved THEN CallbacksResolved carries the key (an EMF property), none without', async () => {
    const counted: Array<[string, string | undefined]> = [];
    const withKey = { ...deps(), metrics: { addMetric: (name: string, _unit: string, _value: number, key?: string) => counted.push([name, key]) } };
    await processCallbackRecord(record('{"jobId":"job-1"}', ACME_TOKEN, SIGNING.acme), clients, config, logger(), withKey);
    const plain = 'B'.repeat(43);
    ddbMock.on(GetItemCommand).resolves({ Item: { callbackToken: { S: plain } } });
    await processCallbackRecord(record('{"jobId":"job-1"}', plain, 'the-webhooks-one-secret-32-bytes!'), clients, config, logger(), withKey);
    expect(counted.filter(([name]) => name === 'CallbacksResolved')).toEqual([['CallbacksResolved', 'acme'], ['CallbacksResolved', undefined]]);
  });

  test('GIVEN a callback signed with another key\'s secret WHEN processed THEN it is refused: nothing resumes', async () => {
    await processCallbackRecord(record('{"jobId":"job-1"}', ACME_TOKEN, SIGNING.globex), clients, config, logger(), deps());
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskFailureCommand);
    expect(parked()).toEqual([['CallbackRejected', expect.stringMatching(/^signature: .*does not match/)]]);
  });

  test('GIVEN another key\'s token part on this request\'s URL, signed with that key\'s secret WHEN processed THEN the token does not match: refused', async () => {
    const forged = callbackTokenWithKey('A'.repeat(43), 'globex');
    await processCallbackRecord(record('{"jobId":"job-1"}', forged, SIGNING.globex), clients, config, logger(), deps());
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
    expect(parked()).toEqual([['CallbackRejected', expect.stringMatching(/callback token does not match/)]]);
  });

  test('GIVEN a key without a signing secret WHEN processed THEN it is refused, naming the key', async () => {
    const token = callbackTokenWithKey('A'.repeat(43), 'initech');
    await processCallbackRecord(record('{"jobId":"job-1"}', token, 'anything'), clients, config, logger(), deps());
    expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
    expect(parked()).toEqual([['CallbackRejected', expect.stringMatching(/no signing secret for key "initech"/)]]);
  });

  test('GIVEN a request without a key (its token has no key part) WHEN processed THEN the webhook\'s one secret verifies it', async () => {
    const plain = 'B'.repeat(43);
    ddbMock.on(GetItemCommand).resolves({ Item: { callbackToken: { S: plain } } });
    const reads: string[] = [];
    await processCallbackRecord(record('{"jobId":"job-1"}', plain, 'the-webhooks-one-secret-32-bytes!'), clients, config, logger(), deps(reads));
    expect(sfnMock).toHaveReceivedCommandWith(SendTaskSuccessCommand, { taskToken: 'task-token-1' });
    expect(reads).toEqual([]);
  });
});
