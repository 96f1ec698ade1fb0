import { ConditionalCheckFailedException, DynamoDBClient, GetItemCommand, QueryCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { InvalidToken, SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient, TaskDoesNotExist, TaskTimedOut } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, DeleteMessageCommand, KmsThrottled, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import {
  CallbackClients,
  CallbackConfig,
  CallbackDeps,
  CallbackLogger,
  CallbackMetrics,
  EarlyCallbackError,
  loadConfig,
  processCallbackRecord,
  queueUrlFromArn,
} from '../../src/callback-webhook/callback-processing';
import { CallbackEnv } from '../../src/shared/env';
import { placeKey } from '../../src/shared/job-places';
import { METRICS_SCOPE_ENV } from '../../src/shared/metrics';
import { captureEmf } from '../emf';

// mockClient(Class) stubs `send` on the prototype: every client instance is mocked, including the
// ones the Lambda module creates at load time.
const ddbMock = mockClient(DynamoDBClient);
const sfnMock = mockClient(SFNClient);
const sqsMock = mockClient(SQSClient);

const clients: CallbackClients = {
  dynamodb: new DynamoDBClient({ region: 'eu-west-1' }),
  sfn: new SFNClient({ region: 'eu-west-1' }),
  sqs: new SQSClient({ region: 'eu-west-1' }),
};

const DLQ_URL = 'https://sqs.eu-west-1.amazonaws.com/123456789012/callback-dlq';
const QUEUE_ARN = 'arn:aws:sqs:eu-west-1:123456789012:callback-queue';
const QUEUE_URL = 'https://sqs.eu-west-1.amazonaws.com/123456789012/callback-queue';

const config: CallbackConfig = {
  tableName: 'correlation-table',
  jobIdIndexName: 'ByJobId',
  jobIdPath: ['jobId'],
  statusPath: ['status'],
  failureStatusValues: ['FAILED', 'ERROR'],
  deadLetterQueueUrl: DLQ_URL,
  // Authentication has its own tests (callback-authentication.test.ts): this file covers what follows it.
  requireCallbackToken: false,
};

// ---------------------------------------------------------------------------------------------
// Builders of real event shapes
// ---------------------------------------------------------------------------------------------

/** The envelope the webhook's mapping template writes, around a raw body. */
function envelope(rawBody: string | Buffer, overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    v: 1,
    bodyBase64: Buffer.from(rawBody).toString('base64'),
    headers: { 'Content-Type': Buffer.from('application/json').toString('base64') },
    receivedAtEpochMs: 1700000000000,
    apiRequestId: 'api-req-1',
    sourceIp: '203.0.113.7',
    ...overrides,
  });
}

function sqsRecord(body: string, options: { messageId?: string; receiveCount?: number } = {}): SQSRecord {
  const messageId = options.messageId ?? 'msg-1';
  return {
    messageId,
    receiptHandle: `receipt-${messageId}`,
    body,
    attributes: {
      ApproximateReceiveCount: String(options.receiveCount ?? 1),
      SentTimestamp: '1700000000000',
      SenderId: 'AROAEXAMPLE:apigateway',
      ApproximateFirstReceiveTimestamp: '1700000000100',
    },
    messageAttributes: {},
    md5OfBody: '0123456789abcdef0123456789abcdef',
    eventSource: 'aws:sqs',
    eventSourceARN: QUEUE_ARN,
    awsRegion: 'eu-west-1',
  };
}

function callbackRecord(body: unknown, options: { messageId?: string; receiveCount?: number } = {}): SQSRecord {
  return sqsRecord(envelope(JSON.stringify(body)), options);
}

/** A correlation item as the ByJobId index returns it (marshalled). */
function correlationItem(status: string, suffix = '1') {
  return {
    requestId: { S: `req-${suffix}` },
    jobId: { S: `job-${suffix}` },
    taskToken: { S: `token-${suffix}` },
    status: { S: status },
  };
}

function fakeLogger(): jest.Mocked<CallbackLogger> {
  return {
    debug: jest.fn(),
    info: jest.fn(),
    warn: jest.fn(),
    error: jest.fn(),
    appendKeys: jest.fn(),
    removeKeys: jest.fn(),
  };
}

interface FakeMetrics extends CallbackMetrics {
  readonly calls: Array<{ name: string; unit: string; value: number }>;
}

/** Records every addMetric call. */
function fakeMetrics(): FakeMetrics {
  const calls: Array<{ name: string; unit: string; value: number }> = [];
  return {
    calls,
    addMetric: (name, unit, value) => {
      calls.push({ name, unit, value });
    },
  };
}

/** The metric names counted, with their sums (what CloudWatch's Sum statistic shows). */
function sums(metrics: FakeMetrics): Record<string, number> {
  const out: Record<string, number> = {};
  for (const call of metrics.calls) {
    out[call.name] = (out[call.name] ?? 0) + call.value;
  }
  return out;
}

/** The fake "now" of the processor: 2.5 s after the webhook received the callback (see `envelope`). */
const NOW = 1700000002500;

const throttling = () => Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $fault: 'client' });

const expectedUpdate = (status: string, requestId = 'req-1') => ({
  TableName: 'correlation-table',
  Key: { requestId: { S: requestId } },
  UpdateExpression: 'SET #status = :status, #updatedAt = :updatedAt',
  ConditionExpression: 'attribute_exists(#requestId) AND #status <> :completed',
  ExpressionAttributeNames: { '#requestId': 'requestId', '#status': 'status', '#updatedAt': 'updatedAt' },
  ExpressionAttributeValues: {
    ':status': { S: status },
    ':updatedAt': { S: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/) },
    ':completed': { S: 'COMPLETED' },
  },
});

const expectParked = (record: SQSRecord, reason: string, detail: string | jest.AsymmetricMatcher) => {
  expect(sqsMock).toHaveReceivedCommandTimes(SendMessageCommand, 1);
  expect(sqsMock).toHaveReceivedCommandWith(SendMessageCommand, {
    QueueUrl: DLQ_URL,
    MessageBody: record.body,
    MessageAttributes: {
      reason: { DataType: 'String', StringValue: reason },
      detail: { DataType: 'String', StringValue: detail },
    },
  });
};

let logger: jest.Mocked<CallbackLogger>;
let metrics: FakeMetrics;
let deps: CallbackDeps;

beforeEach(() => {
  ddbMock.reset();
  sfnMock.reset();
  sqsMock.reset();
  logger = fakeLogger();
  metrics = fakeMetrics();
  deps = { metrics, now: () => NOW };
  delete process.env.AWS_ENDPOINT_URL_SQS;
  delete process.env.AWS_ENDPOINT_URL;
});

afterEach(() => {
  jest.restoreAllMocks();
});

// ---------------------------------------------------------------------------------------------
// The logic, one record at a time
// ---------------------------------------------------------------------------------------------

describe('processCallbackRecord', () => {
  describe('GIVEN a callback for a submitted request', () => {
    beforeEach(() => {
      ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });
    });

    test('WHEN the vendor reports success THEN the workflow gets {jobId, result} and the request is COMPLETED', async () => {
      const body = { jobId: 'job-1', status: 'DONE', data: { pages: 3, text: 'héllo ✓' } };
      const record = callbackRecord(body);

      await processCallbackRecord(record, clients, config, logger, deps);

      expect(ddbMock).toHaveReceivedCommandWith(QueryCommand, {
        TableName: 'correlation-table',
        IndexName: 'ByJobId',
        KeyConditionExpression: '#jobId = :jobId',
        ExpressionAttributeNames: { '#jobId': 'jobId' },
        ExpressionAttributeValues: { ':jobId': { S: 'job-1' } },
        Limit: 1,
      });
      expect(sfnMock).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 1);
      expect(sfnMock).toHaveReceivedCommandWith(SendTaskSuccessCommand, { taskToken: 'token-1', output: JSON.stringify({ jobId: 'job-1', result: body }) });
      expect(sfnMock).not.toHaveReceivedCommand(SendTaskFailureCommand);
      expect(ddbMock).toHaveReceivedCommandTimes(UpdateItemCommand, 1);
      expect(ddbMock).toHaveReceivedCommandWith(UpdateItemCommand, expectedUpdate('COMPLETED'));
      expect(sqsMock).not.toHaveReceivedAnyCommand();
      // Resolved, 2.5 s after the webhook received it.
      expect(metrics.calls).toEqual([
        { name: 'CallbacksResolved', unit: 'Count', value: 1 },
        { name: 'CallbackLatency', unit: 'Milliseconds', value: 2500 },
      ]);
      expect(logger.info).toHaveBeenCalledWith('Waiting workflow resumed', { outcome: 'success', latencyMs: 2500 });
    });

    test.each([
      ['a string', '1700000001000', 1500],
      ['in the future (clock skew)', 1700000009999, 0],
    ])('WHEN the envelope time is %s THEN the latency is still measured', async (_, receivedAtEpochMs, expected) => {
      await processCallbackRecord(sqsRecord(envelope(JSON.stringify({ jobId: 'job-1' }), { receivedAtEpochMs })), clients, config, logger, deps);

      expect(metrics.calls).toContainEqual({ name: 'CallbackLatency', unit: 'Milliseconds', value: expected });
    });

    test.each([
      ['missing', undefined],
      ['not a number', 'yesterday'],
    ])('WHEN the envelope time is %s THEN the callback is resolved without a latency', async (_, receivedAtEpochMs) => {
      await processCallbackRecord(sqsRecord(envelope(JSON.stringify({ jobId: 'job-1' }), { receivedAtEpochMs })), clients, config, logger, deps);

      expect(sfnMock).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 1);
      expect(sums(metrics)).toEqual({ CallbacksResolved: 1 });
    });

    test('WHEN no clock is given THEN the latency is measured on the real one', async () => {
      jest.spyOn(Date, 'now').mockReturnValue(1700000000042);

      await processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, config, logger, { metrics });

      expect(metrics.calls).toContainEqual({ name: 'CallbackLatency', unit: 'Milliseconds', value: 42 });
    });

    test('WHEN processed THEN every log key of the record is appended and removed afterwards', async () => {
      await processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, config, logger, deps);

      expect(logger.appendKeys).toHaveBeenCalledWith({ messageId: 'msg-1' });
      expect(logger.appendKeys).toHaveBeenCalledWith({ apiRequestId: 'api-req-1' });
      expect(logger.appendKeys).toHaveBeenCalledWith({ jobId: 'job-1' });
      expect(logger.appendKeys).toHaveBeenCalledWith({ requestId: 'req-1' });
      expect(logger.removeKeys).toHaveBeenCalledWith(['messageId', 'apiRequestId', 'jobId', 'requestId', 'requestKey']);
      // Keys are appended before the info log line, so that line carries them.
      expect(logger.appendKeys.mock.invocationCallOrder[3]).toBeLessThan(logger.info.mock.invocationCallOrder[0]);
    });

    test('WHEN the job id is a number THEN it is looked up and reported as a string', async () => {
      const body = { jobId: 12345 };
      await processCallbackRecord(callbackRecord(body), clients, config, logger, deps);

      expect(ddbMock).toHaveReceivedCommandWith(QueryCommand, { ExpressionAttributeValues: { ':jobId': { S: '12345' } } });
      expect(sfnMock).toHaveReceivedCommandWith(SendTaskSuccessCommand, { taskToken: 'token-1', output: JSON.stringify({ jobId: '12345', result: body }) });
    });

    test('WHEN the job id is nested THEN the configured path finds it', async () => {
      const body = { data: { jobs: [{ 'job-id': 'job-1' }] } };
      await processCallbackRecord(callbackRecord(body), clients, { ...config, jobIdPath: ['data', 'jobs', '0', 'job-id'] }, logger, deps);

      expect(ddbMock).toHaveReceivedCommandWith(QueryCommand, { ExpressionAttributeValues: { ':jobId': { S: 'job-1' } } });
      expect(sfnMock).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 1);
    });

    test('WHEN the vendor reports a failure status THEN the task fails with VendorJobFailed and the request is COMPLETED', async () => {
      const body = { jobId: 'job-1', status: 'FAILED', reason: 'bad input' };
      await processCallbackRecord(callbackRecord(body), clients, config, logger, deps);

      expect(sfnMock).toHaveReceivedCommandTimes(SendTaskFailureCommand, 1);
      expect(sfnMock).toHaveReceivedCommandWith(SendTaskFailureCommand, {
        taskToken: 'token-1',
        error: 'VendorJobFailed',
        cause: JSON.stringify({ jobId: 'job-1', result: body }),
      });
      expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
      expect(ddbMock).toHaveReceivedCommandWith(UpdateItemCommand, expectedUpdate('COMPLETED'));
      // Failing the waiting task resolves it too.
      expect(sums(metrics)).toEqual({ CallbacksResolved: 1, CallbackLatency: 2500 });
    });

    test('WHEN a numeric status is listed as a failure THEN it is compared as a string', async () => {
      await processCallbackRecord(callbackRecord({ jobId: 'job-1', code: 500 }), clients,
        { ...config, statusPath: ['code'], failureStatusValues: ['500'] }, logger, deps);

      expect(sfnMock).toHaveReceivedCommandWith(SendTaskFailureCommand, { error: 'VendorJobFailed' });
    });

    test.each([
      ['a status that is not listed', { jobId: 'job-1', status: 'failed' }, config],
      ['no status field', { jobId: 'job-1' }, config],
      ['an object status', { jobId: 'job-1', status: { FAILED: true } }, config],
      ['no status path configured', { jobId: 'job-1', status: 'FAILED' }, { ...config, statusPath: undefined }],
    ])('WHEN the callback has %s THEN it is a success', async (_, body, cfg) => {
      await processCallbackRecord(callbackRecord(body), clients, cfg, logger, deps);

      expect(sfnMock).toHaveReceivedCommandWith(SendTaskSuccessCommand, { taskToken: 'token-1', output: JSON.stringify({ jobId: 'job-1', result: body }) });
      expect(sfnMock).not.toHaveReceivedCommand(SendTaskFailureCommand);
    });

    test('WHEN a failure callback is huge THEN the cause is cut to 32768 characters', async () => {
      const body = { jobId: 'job-1', status: 'ERROR', log: 'x'.repeat(100_000) };
      await processCallbackRecord(callbackRecord(body), clients, config, logger, deps);

      const cause = sfnMock.commandCalls(SendTaskFailureCommand)[0].args[0].input.cause!;
      expect(cause).toHaveLength(32768);
      expect(cause).toBe(JSON.stringify({ jobId: 'job-1', result: body }).slice(0, 32768));
      expect(sqsMock).not.toHaveReceivedAnyCommand();
    });

    test('WHEN the output is over the limit THEN the record is parked AND the task fails with CallbackTooLarge', async () => {
      const body = { jobId: 'job-1', text: 'y'.repeat(200) };
      const record = callbackRecord(body);
      const outputBytes = Buffer.byteLength(JSON.stringify({ jobId: 'job-1', result: body }));

      await processCallbackRecord(record, clients, { ...config, maxOutputBytes: 100 }, logger, deps);

      expectParked(record, 'OUTPUT_TOO_LARGE', `task output is ${outputBytes} bytes, over the limit of 100 bytes`);
      expect(sfnMock).toHaveReceivedCommandWith(SendTaskFailureCommand, {
        taskToken: 'token-1',
        error: 'CallbackTooLarge',
        cause: `The callback for job job-1 makes a task output of ${outputBytes} bytes, over the limit of 100 bytes. `
          + 'The callback was parked in the callback dead-letter queue.',
      });
      expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
      expect(ddbMock).toHaveReceivedCommandWith(UpdateItemCommand, expectedUpdate('COMPLETED'));
      // Both parked (rejected) and its task failed (resolved).
      expect(sums(metrics)).toEqual({ CallbacksRejected: 1, CallbacksResolved: 1, CallbackLatency: 2500 });
    });

    test('WHEN the output is over the default 256 KiB in UTF-8 bytes THEN it is too large', async () => {
      // 100,000 three-byte characters: 300,000 bytes, but only 100,000 UTF-16 units.
      const body = { jobId: 'job-1', text: '€'.repeat(100_000) };
      await processCallbackRecord(callbackRecord(body), clients, config, logger, deps);

      expect(sqsMock).toHaveReceivedCommandWith(SendMessageCommand, { MessageAttributes: expect.objectContaining({ reason: { DataType: 'String', StringValue: 'OUTPUT_TOO_LARGE' } }) });
      expect(sfnMock).toHaveReceivedCommandWith(SendTaskFailureCommand, { error: 'CallbackTooLarge' });
      expect(sfnMock).not.toHaveReceivedCommand(SendTaskSuccessCommand);
    });

    test('WHEN the output is exactly at the limit THEN it is sent', async () => {
      const body = { jobId: 'job-1' };
      const size = Buffer.byteLength(JSON.stringify({ jobId: 'job-1', result: body }));
      await processCallbackRecord(callbackRecord(body), clients, { ...config, maxOutputBytes: size }, logger, deps);

      expect(sfnMock).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 1);
      expect(sqsMock).not.toHaveReceivedAnyCommand();
    });

    test.each([
      ['TaskTimedOut', () => new TaskTimedOut({ message: 'Task Timed Out', $metadata: {} })],
      ['InvalidToken', () => new InvalidToken({ message: 'Invalid Token', $metadata: {} })],
      ['TaskDoesNotExist', () => new TaskDoesNotExist({ message: 'Task does not exist', $metadata: {} })],
    ])('WHEN Step Functions answers %s THEN the request is LATE and the record is handled', async (name, error) => {
      sfnMock.on(SendTaskSuccessCommand).rejects(error());

      await expect(processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, config, logger, deps)).resolves.toBeUndefined();

      expect(ddbMock).toHaveReceivedCommandTimes(UpdateItemCommand, 1);
      expect(ddbMock).toHaveReceivedCommandWith(UpdateItemCommand, expectedUpdate('LATE'));
      expect(logger.warn).toHaveBeenCalledWith('Late callback: the waiting workflow has already ended', expect.objectContaining({ error: name }));
      expect(sqsMock).not.toHaveReceivedAnyCommand();
      expect(metrics.calls).toEqual([{ name: 'LateCallbacks', unit: 'Count', value: 1 }]);
    });

    test('WHEN the vendor failure is late THEN the request is LATE too', async () => {
      sfnMock.on(SendTaskFailureCommand).rejects(new TaskTimedOut({ message: 'Task Timed Out', $metadata: {} }));

      await processCallbackRecord(callbackRecord({ jobId: 'job-1', status: 'FAILED' }), clients, config, logger, deps);

      expect(ddbMock).toHaveReceivedCommandWith(UpdateItemCommand, expectedUpdate('LATE'));
    });

    test('WHEN Step Functions throttles THEN the record fails for redelivery in seconds (not the queue\'s 180 s visibility timeout) and nothing is updated', async () => {
      jest.spyOn(Math, 'random').mockReturnValue(0.5);
      sfnMock.on(SendTaskSuccessCommand).rejects(throttling());

      await expect(processCallbackRecord(callbackRecord({ jobId: 'job-1' }, { receiveCount: 2 }), clients, config, logger, deps)).rejects.toThrow('Rate exceeded');

      expect(ddbMock).not.toHaveReceivedCommand(UpdateItemCommand);
      // The early callbacks' backoff: 2^2 s + a random 0..4 s.
      expect(sqsMock).toHaveReceivedCommandTimes(ChangeMessageVisibilityCommand, 1);
      expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { QueueUrl: QUEUE_URL, ReceiptHandle: 'receipt-msg-1', VisibilityTimeout: 4 + 2 });
      expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
      expect(logger.error).toHaveBeenCalledWith('Callback processing failed; the record will be redelivered', expect.objectContaining({ name: 'ThrottlingException' }));
      // The keys are removed even when the record fails.
      expect(logger.removeKeys).toHaveBeenCalledTimes(1);
      // Not decided yet: the redelivery will be counted.
      expect(metrics.calls).toEqual([]);
    });

    test('WHEN parking into a KMS-encrypted dead-letter queue is KMS-throttled THEN the record comes back in seconds', async () => {
      jest.spyOn(Math, 'random').mockReturnValue(0.5);
      sqsMock.on(SendMessageCommand).rejects(new KmsThrottled({ message: 'KMS throttled the request', $metadata: {} }));

      await expect(processCallbackRecord(sqsRecord('not json {', { receiveCount: 1 }), clients, config, logger, deps)).rejects.toThrow('KMS throttled the request');

      // The early callbacks' backoff: 2^1 s + a random 0..2 s, not the queue's 180 s visibility timeout.
      expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { QueueUrl: QUEUE_URL, ReceiptHandle: 'receipt-msg-1', VisibilityTimeout: 2 + 1 });
    });

    test('WHEN the COMPLETED update fails THEN the record is still handled', async () => {
      ddbMock.on(UpdateItemCommand).rejects(throttling());

      await expect(processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, config, logger, deps)).resolves.toBeUndefined();

      expect(sfnMock).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 1);
      expect(logger.error).toHaveBeenCalledWith('Could not set the request status to COMPLETED; the callback is still handled', expect.objectContaining({ name: 'ThrottlingException' }));
    });

    test('WHEN the status update finds the item gone or COMPLETED THEN the record is still handled', async () => {
      ddbMock.on(UpdateItemCommand).rejects(new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} }));
      sfnMock.on(SendTaskSuccessCommand).rejects(new InvalidToken({ message: 'Invalid Token', $metadata: {} }));

      await expect(processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, config, logger, deps)).resolves.toBeUndefined();
      expect(logger.error).not.toHaveBeenCalled();
    });
  });

  describe('GIVEN the request is already finished', () => {
    test.each(['COMPLETED', 'LATE'])('WHEN a callback for a %s request comes THEN Step Functions is not called', async (status) => {
      ddbMock.on(QueryCommand).resolves({ Items: [correlationItem(status)] });

      await expect(processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, config, logger, deps)).resolves.toBeUndefined();

      expect(sfnMock).not.toHaveReceivedAnyCommand();
      expect(ddbMock).not.toHaveReceivedCommand(UpdateItemCommand);
      expect(sqsMock).not.toHaveReceivedAnyCommand();
      expect(logger.info).toHaveBeenCalledWith('Duplicate callback ignored: the request is already finished', { status });
      expect(metrics.calls).toEqual([{ name: 'DuplicateCallbacks', unit: 'Count', value: 1 }]);
    });
  });

  describe('GIVEN the job id is not in the table yet (early callback)', () => {
    beforeEach(() => {
      ddbMock.on(QueryCommand).resolves({ Items: [] });
    });

    test.each([
      // receive count, Math.random(), expected visibility timeout: min(2^n, 300) + floor(random * (that + 1))
      [1, 0, 2],
      [3, 0.5, 8 + 4],
      [8, 0.999, 256 + 256],
      [9, 0, 300],
      [20, 0.999, 600],
    ])('WHEN received for the %i. time (random %d) THEN it fails with the visibility set to %i s', async (receiveCount, random, expected) => {
      jest.spyOn(Math, 'random').mockReturnValue(random);
      const record = callbackRecord({ jobId: 'job-early' }, { receiveCount });

      const error = await processCallbackRecord(record, clients, config, logger, deps).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(EarlyCallbackError);
      expect(sqsMock).toHaveReceivedCommandTimes(ChangeMessageVisibilityCommand, 1);
      expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, {
        QueueUrl: QUEUE_URL,
        ReceiptHandle: 'receipt-msg-1',
        VisibilityTimeout: expected,
      });
      expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
      expect(sfnMock).not.toHaveReceivedAnyCommand();
      expect(metrics.calls).toEqual([{ name: 'EarlyCallbacks', unit: 'Count', value: 1 }]);
    });

    test('WHEN a local endpoint is configured THEN the queue URL uses it', async () => {
      process.env.AWS_ENDPOINT_URL_SQS = 'http://localhost:4566/';

      await expect(processCallbackRecord(callbackRecord({ jobId: 'job-early' }), clients, config, logger, deps)).rejects.toThrow(EarlyCallbackError);

      expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { QueueUrl: 'http://localhost:4566/123456789012/callback-queue' });
    });

    test('WHEN ChangeMessageVisibility fails THEN the error is logged and the record still fails for retry', async () => {
      sqsMock.on(ChangeMessageVisibilityCommand).rejects(throttling());

      await expect(processCallbackRecord(callbackRecord({ jobId: 'job-early' }), clients, config, logger, deps))
        .rejects.toThrow('No request found for job id "job-early"');

      expect(logger.error).toHaveBeenCalledWith(expect.stringContaining('Could not delay the retry'), expect.objectContaining({ name: 'ThrottlingException' }));
      expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
      expect(sums(metrics)).toEqual({ EarlyCallbacks: 1 });
    });
  });

  describe('GIVEN a record that can never succeed', () => {
    test.each([
      ['a non-JSON record body', 'not json {', expect.stringMatching(/^record body is not JSON: /)],
      ['a JSON array', '[1,2]', 'record body is not a JSON object: got array [1,2]'],
      ['another envelope version', envelope('{}', { v: 2 }), 'unsupported envelope version: v is number 2, expected 1'],
      ['no bodyBase64', JSON.stringify({ v: 1, headers: {} }), 'bodyBase64 is not a base64 string: got nothing'],
      ['a bodyBase64 that is not base64', envelope('{}', { bodyBase64: 'not base64!' }), 'bodyBase64 is not a base64 string: got string "not base64!"'],
      ['headers that are not an object', envelope('{}', { headers: 'x' }), 'headers is not an object: got string "x"'],
    ])('WHEN the envelope has %s THEN it is parked as MALFORMED_ENVELOPE', async (_, body, detail) => {
      const record = sqsRecord(body);

      await expect(processCallbackRecord(record, clients, config, logger, deps)).resolves.toBeUndefined();

      expectParked(record, 'MALFORMED_ENVELOPE', detail);
      expect(ddbMock).not.toHaveReceivedAnyCommand();
      expect(sfnMock).not.toHaveReceivedAnyCommand();
      expect(logger.warn).toHaveBeenCalledWith('Callback parked in the dead-letter queue', { reason: 'MALFORMED_ENVELOPE', detail: expect.any(String) });
      expect(metrics.calls).toEqual([{ name: 'CallbacksRejected', unit: 'Count', value: 1 }]);
    });

    test.each([
      ['not JSON', Buffer.from('jobId=job-1&status=DONE')],
      ['empty', Buffer.from('')],
      ['not UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
    ])('WHEN the callback body is %s THEN it is parked as MALFORMED_BODY', async (_, rawBody) => {
      const record = sqsRecord(envelope(rawBody));

      await expect(processCallbackRecord(record, clients, config, logger, deps)).resolves.toBeUndefined();

      expectParked(record, 'MALFORMED_BODY', expect.stringMatching(/^callback body is not UTF-8 JSON: /));
      expect(ddbMock).not.toHaveReceivedAnyCommand();
      expect(sums(metrics)).toEqual({ CallbacksRejected: 1 });
    });

    test.each([
      ['missing', { other: 1 }, 'nothing'],
      ['empty', { jobId: '' }, 'string ""'],
      ['blank', { jobId: '  ' }, 'string "  "'],
      ['null', { jobId: null }, 'null null'],
      ['an object', { jobId: { id: 1 } }, 'object {"id":1}'],
      ['a boolean', { jobId: true }, 'boolean true'],
    ])('WHEN the job id is %s THEN it is parked as MISSING_JOB_ID', async (_, body, got) => {
      const record = callbackRecord(body);

      await expect(processCallbackRecord(record, clients, config, logger, deps)).resolves.toBeUndefined();

      expectParked(record, 'MISSING_JOB_ID', `no job id at $['jobId']: expected a non-empty string or a number, got ${got}`);
      expect(ddbMock).not.toHaveReceivedAnyCommand();
      expect(sfnMock).not.toHaveReceivedAnyCommand();
      expect(sums(metrics)).toEqual({ CallbacksRejected: 1 });
    });

    test('WHEN the correlation item has no task token THEN it is parked as INVALID_CORRELATION_ITEM', async () => {
      ddbMock.on(QueryCommand).resolves({ Items: [{ requestId: { S: 'req-1' }, jobId: { S: 'job-1' }, status: { S: 'SUBMITTED' } }] });
      const record = callbackRecord({ jobId: 'job-1' });

      await processCallbackRecord(record, clients, config, logger, deps);

      expectParked(record, 'INVALID_CORRELATION_ITEM', 'the item for job id "job-1" has no taskToken');
      expect(sfnMock).not.toHaveReceivedAnyCommand();
      expect(sums(metrics)).toEqual({ CallbacksRejected: 1 });
    });

    test('WHEN the detail is long THEN it is cut to 1000 characters', async () => {
      const longName = 'k'.repeat(2000);
      const record = callbackRecord({ jobId: 'job-1' });

      await processCallbackRecord(record, clients, { ...config, jobIdPath: [longName] }, logger, deps);

      const detail = sqsMock.commandCalls(SendMessageCommand)[0].args[0].input.MessageAttributes!.detail.StringValue!;
      expect(detail).toBe(`no job id at $['${longName}']: expected a non-empty string or a number, got nothing`.slice(0, 1000));
    });

    test('WHEN parking in the dead-letter queue fails THEN the record fails for redelivery (never lost)', async () => {
      sqsMock.on(SendMessageCommand).rejects(throttling());

      await expect(processCallbackRecord(sqsRecord('not json'), clients, config, logger, deps)).rejects.toThrow('Rate exceeded');
      // Not parked: not counted (the redelivery will be).
      expect(metrics.calls).toEqual([]);
    });

    test('WHEN parking a too large output fails THEN the task is not failed (the redelivery starts over)', async () => {
      ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });
      sqsMock.on(SendMessageCommand).rejects(throttling());

      await expect(processCallbackRecord(callbackRecord({ jobId: 'job-1', text: 'z'.repeat(500) }), clients, { ...config, maxOutputBytes: 100 }, logger, deps))
        .rejects.toThrow('Rate exceeded');

      expect(sfnMock).not.toHaveReceivedAnyCommand();
      expect(metrics.calls).toEqual([]);
    });
  });

  describe('GIVEN DynamoDB throttles the lookup', () => {
    test('WHEN a callback comes THEN the record fails for redelivery in seconds, not after the queue\'s visibility timeout', async () => {
      jest.spyOn(Math, 'random').mockReturnValue(0);
      ddbMock.on(QueryCommand).rejects(throttling());

      await expect(processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, config, logger, deps)).rejects.toThrow('Rate exceeded');

      expect(sqsMock).toHaveReceivedCommandTimes(ChangeMessageVisibilityCommand, 1);
      expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { ReceiptHandle: 'receipt-msg-1', VisibilityTimeout: 2 });
      expect(sqsMock).not.toHaveReceivedCommand(SendMessageCommand);
      expect(sfnMock).not.toHaveReceivedAnyCommand();
    });

    test('WHEN the look-up fails otherwise THEN the record returns after the queue\'s visibility timeout, untouched', async () => {
      ddbMock.on(QueryCommand).rejects(Object.assign(new Error('User is not authorized'), { name: 'AccessDeniedException' }));

      await expect(processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, config, logger, deps)).rejects.toThrow('not authorized');

      expect(sqsMock).not.toHaveReceivedAnyCommand();
    });
  });
});

describe('queueUrlFromArn', () => {
  test('GIVEN an SQS ARN WHEN converted THEN gives the regional queue URL', () => {
    expect(queueUrlFromArn(QUEUE_ARN, {})).toBe(QUEUE_URL);
    expect(queueUrlFromArn('arn:aws-cn:sqs:cn-north-1:123456789012:q', {})).toBe('https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q');
  });

  test('GIVEN an endpoint override WHEN converted THEN the SQS-specific one wins over the global one', () => {
    expect(queueUrlFromArn(QUEUE_ARN, { AWS_ENDPOINT_URL: 'http://global:1' })).toBe('http://global:1/123456789012/callback-queue');
    expect(queueUrlFromArn(QUEUE_ARN, { AWS_ENDPOINT_URL: 'http://global:1', AWS_ENDPOINT_URL_SQS: 'http://sqs:2' })).toBe('http://sqs:2/123456789012/callback-queue');
  });

  test('GIVEN something else WHEN converted THEN throws', () => {
    expect(() => queueUrlFromArn('arn:aws:sns:eu-west-1:123456789012:topic', {})).toThrow('Not an SQS queue ARN');
    expect(() => queueUrlFromArn('callback-queue', {})).toThrow('Not an SQS queue ARN');
  });
});

describe('loadConfig', () => {
  const env = {
    [CallbackEnv.TABLE_NAME]: 'correlation-table',
    [CallbackEnv.JOB_ID_INDEX_NAME]: 'ByJobId',
    [CallbackEnv.JOB_ID_PATH]: '$.data.jobId',
    [CallbackEnv.STATUS_PATH]: "$['job-status']",
    [CallbackEnv.FAILURE_STATUS_VALUES]: '["FAILED", 500]',
    [CallbackEnv.DEAD_LETTER_QUEUE_URL]: DLQ_URL,
  };

  test('GIVEN every variable WHEN loaded THEN gives the parsed config', () => {
    expect(loadConfig(env)).toEqual({
      tableName: 'correlation-table',
      jobIdIndexName: 'ByJobId',
      jobIdPath: ['data', 'jobId'],
      statusPath: ['job-status'],
      failureStatusValues: ['FAILED', '500'],
      deadLetterQueueUrl: DLQ_URL,
      requireCallbackToken: true,
      signature: undefined,
      maxPayloadBytes: undefined,
    });
  });

  test('GIVEN the authentication variables WHEN loaded THEN the token check is on unless explicitly off, and the signature and limit are parsed', () => {
    const spec = { scheme: 'hmac', signatureHeader: 'X-Sig', encoding: 'hex', prefix: '', signedPayload: '{body}', toleranceSeconds: 0, secretEncoding: 'utf8' };
    const loaded = loadConfig({
      ...env,
      [CallbackEnv.REQUIRE_CALLBACK_TOKEN]: 'false',
      [CallbackEnv.WEBHOOK_SIGNATURE]: JSON.stringify(spec),
      [CallbackEnv.MAX_PAYLOAD_BYTES]: '1024',
    });
    expect(loaded).toMatchObject({ requireCallbackToken: false, signature: spec, maxPayloadBytes: 1024 });
    expect(loadConfig({ ...env, [CallbackEnv.REQUIRE_CALLBACK_TOKEN]: 'no' }).requireCallbackToken).toBe(true);
    expect(() => loadConfig({ ...env, [CallbackEnv.WEBHOOK_SIGNATURE]: '{"scheme":"md5"}' })).toThrow(/WEBHOOK_SIGNATURE is not a signature specification/);
    expect(() => loadConfig({ ...env, [CallbackEnv.MAX_PAYLOAD_BYTES]: '-1' })).toThrow(/MAX_PAYLOAD_BYTES must be a positive whole number/);
  });

  test('GIVEN no status path and no failure values WHEN loaded THEN every callback is a success', () => {
    const config1 = loadConfig({ ...env, [CallbackEnv.STATUS_PATH]: '', [CallbackEnv.FAILURE_STATUS_VALUES]: undefined });
    expect(config1.statusPath).toBeUndefined();
    expect(config1.failureStatusValues).toEqual([]);
  });

  test.each([
    CallbackEnv.TABLE_NAME,
    CallbackEnv.JOB_ID_INDEX_NAME,
    CallbackEnv.JOB_ID_PATH,
    CallbackEnv.DEAD_LETTER_QUEUE_URL,
  ])('GIVEN %s is missing WHEN loaded THEN the error names it', (name) => {
    expect(() => loadConfig({ ...env, [name]: undefined })).toThrow(`Environment variable ${name} is required by the callback processor but is not set`);
    expect(() => loadConfig({ ...env, [name]: ' ' })).toThrow(`Environment variable ${name} is required`);
  });

  test('GIVEN an invalid path WHEN loaded THEN the error names the variable and the path', () => {
    expect(() => loadConfig({ ...env, [CallbackEnv.JOB_ID_PATH]: '$..jobId' })).toThrow('Environment variable JOB_ID_PATH: Invalid path "$..jobId"');
    expect(() => loadConfig({ ...env, [CallbackEnv.STATUS_PATH]: '$.a[*]' })).toThrow('Environment variable STATUS_PATH: Invalid path "$.a[*]"');
  });

  test.each(['FAILED', '{"a":1}', '[["x"]]'])('GIVEN FAILURE_STATUS_VALUES %s WHEN loaded THEN the error names the variable', (value) => {
    expect(() => loadConfig({ ...env, [CallbackEnv.FAILURE_STATUS_VALUES]: value })).toThrow('Environment variable FAILURE_STATUS_VALUES must be a JSON array of strings');
  });
});

// ---------------------------------------------------------------------------------------------
// The Lambda handler: real module, real Powertools batch processing
// ---------------------------------------------------------------------------------------------


describe('handler', () => {
  let handler: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;
  const context: Context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'callback-processor',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:callback-processor',
    memoryLimitInMB: '256',
    awsRequestId: 'lambda-req-1',
    logGroupName: '/aws/lambda/callback-processor',
    logStreamName: '2024/01/01/[$LATEST]abcdef',
    getRemainingTimeInMillis: () => 30_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };

  beforeAll(() => {
    // The module reads its configuration at load time: set the environment first, then load it.
    // Loaded into the shared module registry (not jest.isolateModules) so that it gets the same SDK
    // client classes as the mocks above; `import()` would need --experimental-vm-modules under ts-jest.
    process.env[CallbackEnv.TABLE_NAME] = 'correlation-table';
    process.env[CallbackEnv.JOB_ID_INDEX_NAME] = 'ByJobId';
    process.env[CallbackEnv.JOB_ID_PATH] = '$.jobId';
    process.env[CallbackEnv.STATUS_PATH] = '$.status';
    process.env[CallbackEnv.FAILURE_STATUS_VALUES] = '["FAILED"]';
    process.env[CallbackEnv.DEAD_LETTER_QUEUE_URL] = DLQ_URL;
    // The batch handling is what is tested here; authentication has its own tests.
    process.env[CallbackEnv.REQUIRE_CALLBACK_TOKEN] = 'false';
    process.env.AWS_REGION = 'eu-west-1';
    process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    process.env.POWERTOOLS_SERVICE_NAME = 'callback-processor';
    process.env.POWERTOOLS_METRICS_NAMESPACE = 'CustomNamespace';
    process.env[METRICS_SCOPE_ENV] = 'orders-scope';
    ({ handler } = jest.requireActual<typeof import('../../src/callback-webhook/callback-processor.lambda')>(
      '../../src/callback-webhook/callback-processor.lambda',
    ));
  });

  test('GIVEN a batch mixing good and bad records WHEN handled THEN batchItemFailures lists exactly the retryable ones', async () => {
    jest.spyOn(Math, 'random').mockReturnValue(0);
    const jobQuery = (jobId: string) => ({ ExpressionAttributeValues: { ':jobId': { S: jobId } } });
    ddbMock.on(QueryCommand).resolves({ Items: [] }); // any other job id: early callback
    ddbMock.on(QueryCommand, jobQuery('job-good')).resolves({ Items: [correlationItem('SUBMITTED', 'good')] });
    ddbMock.on(QueryCommand, jobQuery('job-failed')).resolves({ Items: [correlationItem('SUBMITTED', 'failed')] });
    ddbMock.on(QueryCommand, jobQuery('job-throttled')).resolves({ Items: [correlationItem('SUBMITTED', 'throttled')] });
    ddbMock.on(QueryCommand, jobQuery('job-late')).resolves({ Items: [correlationItem('SUBMITTED', 'late')] });
    ddbMock.on(QueryCommand, jobQuery('job-duplicate')).resolves({ Items: [correlationItem('COMPLETED', 'duplicate')] });
    sfnMock.on(SendTaskSuccessCommand, { taskToken: 'token-throttled' }).rejects(throttling());
    sfnMock.on(SendTaskSuccessCommand, { taskToken: 'token-late' }).rejects(new TaskTimedOut({ message: 'Task Timed Out', $metadata: {} }));

    const records = [
      callbackRecord({ jobId: 'job-good', status: 'DONE' }, { messageId: 'good' }),
      sqsRecord('this is not an envelope', { messageId: 'malformed-envelope' }),
      callbackRecord({ jobId: 'job-early' }, { messageId: 'early', receiveCount: 2 }),
      sqsRecord(envelope('<xml/>'), { messageId: 'malformed-body' }),
      callbackRecord({ jobId: 'job-throttled' }, { messageId: 'throttled' }),
      callbackRecord({ no: 'job id' }, { messageId: 'missing-job-id' }),
      callbackRecord({ jobId: 'job-failed', status: 'FAILED' }, { messageId: 'vendor-failed' }),
      callbackRecord({ jobId: 'job-late' }, { messageId: 'late' }),
      callbackRecord({ jobId: 'job-duplicate' }, { messageId: 'duplicate' }),
    ];

    let response: SQSBatchResponse | undefined;
    const emf = await captureEmf(async () => {
      response = await handler({ Records: records }, context);
    });

    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'early' }, { itemIdentifier: 'throttled' }] });
    // One EMF document for the invocation: the namespace from the environment, exactly the Scope
    // dimension, and a count per outcome (the throttled record is not decided yet: not counted).
    expect(emf).toHaveLength(1);
    const [doc] = emf;
    expect(doc._aws.CloudWatchMetrics).toHaveLength(1);
    expect(doc._aws.CloudWatchMetrics[0].Namespace).toBe('CustomNamespace');
    expect(doc._aws.CloudWatchMetrics[0].Dimensions).toEqual([['Scope']]);
    expect(doc._aws.CloudWatchMetrics[0].Metrics).toEqual(expect.arrayContaining([
      { Name: 'CallbacksResolved', Unit: 'Count' },
      { Name: 'CallbacksRejected', Unit: 'Count' },
      { Name: 'EarlyCallbacks', Unit: 'Count' },
      { Name: 'LateCallbacks', Unit: 'Count' },
      { Name: 'DuplicateCallbacks', Unit: 'Count' },
      { Name: 'CallbackLatency', Unit: 'Milliseconds' },
    ]));
    expect(doc._aws.CloudWatchMetrics[0].Metrics).toHaveLength(6);
    expect(doc.Scope).toBe('orders-scope');
    expect(doc).not.toHaveProperty('service');
    expect(doc).toMatchObject({
      CallbacksResolved: [1, 1], // good, vendor-failed
      CallbacksRejected: [1, 1, 1], // malformed-envelope, malformed-body, missing-job-id
      EarlyCallbacks: 1,
      LateCallbacks: 1,
      DuplicateCallbacks: 1,
      CallbackLatency: [expect.any(Number), expect.any(Number)],
    });
    // The good ones went through.
    expect(sfnMock).toHaveReceivedCommandWith(SendTaskSuccessCommand, { taskToken: 'token-good', output: JSON.stringify({ jobId: 'job-good', result: { jobId: 'job-good', status: 'DONE' } }) });
    expect(sfnMock).toHaveReceivedCommandWith(SendTaskFailureCommand, { taskToken: 'token-failed', error: 'VendorJobFailed' });
    expect(sfnMock).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 3); // good, throttled, late
    expect(sfnMock).toHaveReceivedCommandTimes(SendTaskFailureCommand, 1);
    expect(ddbMock).toHaveReceivedCommandWith(UpdateItemCommand, expectedUpdate('COMPLETED', 'req-good'));
    expect(ddbMock).toHaveReceivedCommandWith(UpdateItemCommand, expectedUpdate('COMPLETED', 'req-failed'));
    expect(ddbMock).toHaveReceivedCommandWith(UpdateItemCommand, expectedUpdate('LATE', 'req-late'));
    expect(ddbMock).toHaveReceivedCommandTimes(UpdateItemCommand, 3);
    // The three that can never succeed are parked, with their reason.
    const parked = sqsMock.commandCalls(SendMessageCommand)
      .map((call) => [call.args[0].input.MessageBody, call.args[0].input.MessageAttributes!.reason.StringValue]);
    expect(parked).toEqual([
      [records[1].body, 'MALFORMED_ENVELOPE'],
      [records[3].body, 'MALFORMED_BODY'],
      [records[5].body, 'MISSING_JOB_ID'],
    ]);
    // The early one and the throttled one are retried with backoff.
    expect(sqsMock).toHaveReceivedCommandTimes(ChangeMessageVisibilityCommand, 2);
    expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { QueueUrl: QUEUE_URL, ReceiptHandle: 'receipt-early', VisibilityTimeout: 4 });
    expect(sqsMock).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { QueueUrl: QUEUE_URL, ReceiptHandle: 'receipt-throttled', VisibilityTimeout: 2 });
  });

  test('GIVEN a batch where every record is early WHEN handled THEN every record is reported, without failing the invocation', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [] });
    const records = [
      callbackRecord({ jobId: 'job-a' }, { messageId: 'a' }),
      callbackRecord({ jobId: 'job-b' }, { messageId: 'b' }),
    ];

    const emf = await captureEmf(async () => {
      await expect(handler({ Records: records }, context)).resolves.toEqual({ batchItemFailures: [{ itemIdentifier: 'a' }, { itemIdentifier: 'b' }] });
    });

    expect(emf).toHaveLength(1);
    expect(emf[0]).toMatchObject({ Scope: 'orders-scope', EarlyCallbacks: [1, 1] });
  });

  test('GIVEN an empty batch WHEN handled THEN nothing fails and no EMF document is written', async () => {
    const emf = await captureEmf(async () => {
      await expect(handler({ Records: [] }, context)).resolves.toEqual({ batchItemFailures: [] });
    });

    expect(emf).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Jobs in flight: a callback frees its job's place (VendorContract.maxJobsInFlight)
// ---------------------------------------------------------------------------------------------

describe('processCallbackRecord with jobs in flight', () => {
  const placesConfig: CallbackConfig = { ...config, jobPlacesTableName: 'pacer-table' };
  const releaseInput = {
    TableName: 'pacer-table',
    Key: { pk: { S: 'job-places' } },
    UpdateExpression: 'REMOVE #places.#k ADD #held :minusOne',
    ConditionExpression: 'attribute_exists(#places.#k)',
    ExpressionAttributeNames: { '#places': 'places', '#held': 'placesHeld', '#k': placeKey('req-1') },
  };
  const placeFreed = () => ddbMock.on(UpdateItemCommand, { TableName: 'pacer-table' }).resolves({ Attributes: { placesHeld: { N: '4' } } });

  test.each([
    ['succeeded', { jobId: 'job-1', status: 'DONE' }],
    ['failed', { jobId: 'job-1', status: 'FAILED' }],
  ])('GIVEN the vendor\'s job %s WHEN its callback is processed THEN its place is freed before the workflow is resumed', async (_, body) => {
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });
    const order: string[] = [];
    ddbMock.on(UpdateItemCommand, { TableName: 'pacer-table' }).callsFake(async () => {
      order.push('free place');
      return { Attributes: { placesHeld: { N: '4' } } };
    });
    sfnMock.on(SendTaskSuccessCommand).callsFake(async () => order.push('resume'));
    sfnMock.on(SendTaskFailureCommand).callsFake(async () => order.push('resume'));

    await processCallbackRecord(callbackRecord(body), clients, placesConfig, logger, deps);

    expect(ddbMock).toHaveReceivedCommandWith(UpdateItemCommand, releaseInput);
    expect(order).toEqual(['free place', 'resume']);
    expect(metrics.calls).toContainEqual({ name: 'JobsInFlight', unit: 'Count', value: 4 });
  });

  test('GIVEN the waiting workflow timed out WHEN the late callback arrives THEN the place is still freed (the vendor ended the job only now)', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });
    placeFreed();
    sfnMock.on(SendTaskSuccessCommand).rejects(new TaskTimedOut({ message: 'timed out', $metadata: {} }));

    await processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, placesConfig, logger, deps);

    expect(ddbMock).toHaveReceivedCommandWith(UpdateItemCommand, releaseInput);
    expect(sums(metrics)).toMatchObject({ LateCallbacks: 1, JobsInFlight: 4 });
  });

  test('GIVEN a redelivered or duplicate callback WHEN the place was already freed THEN nothing is freed twice and the callback is a duplicate', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('COMPLETED')] });
    ddbMock.on(UpdateItemCommand, { TableName: 'pacer-table' })
      .rejects(new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} }));

    await processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, placesConfig, logger, deps);

    expect(ddbMock).toHaveReceivedCommandWith(UpdateItemCommand, releaseInput);
    expect(sums(metrics)).toEqual({ DuplicateCallbacks: 1 });
  });

  test('GIVEN the places item cannot be written WHEN a callback is processed THEN it throws (redelivered) before resuming anything', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });
    ddbMock.on(UpdateItemCommand, { TableName: 'pacer-table' }).rejects(throttling());

    await expect(processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, placesConfig, logger, deps)).rejects.toThrow('Rate exceeded');

    expect(sfnMock).not.toHaveReceivedAnyCommand();
  });

  test('GIVEN a waiting room WHEN a callback frees its job\'s place THEN one waiting request is moved back to the request queue', async () => {
    const waiting = { waitingQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/waiting', requestQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/requests' };
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });
    placeFreed();
    sqsMock.on(ReceiveMessageCommand).resolves({ Messages: [{ MessageId: 'w1', ReceiptHandle: 'rh-1', Body: '{"requestId":"waiter"}' }] });

    await processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, { ...placesConfig, jobWaiting: waiting }, logger, deps);

    expect(sqsMock).toHaveReceivedCommandWith(ReceiveMessageCommand, { QueueUrl: waiting.waitingQueueUrl, MaxNumberOfMessages: 1 });
    expect(sqsMock).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: waiting.requestQueueUrl, MessageBody: '{"requestId":"waiter"}' });
    expect(sqsMock).toHaveReceivedCommandWith(DeleteMessageCommand, { QueueUrl: waiting.waitingQueueUrl, ReceiptHandle: 'rh-1' });
  });

  test('GIVEN a waiting room WHEN a duplicate callback frees nothing THEN nobody is woken', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('COMPLETED')] });
    ddbMock.on(UpdateItemCommand, { TableName: 'pacer-table' })
      .rejects(new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} }));
    const waiting = { waitingQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/waiting', requestQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/requests' };

    await processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, { ...placesConfig, jobWaiting: waiting }, logger, deps);

    expect(sqsMock).not.toHaveReceivedCommand(ReceiveMessageCommand);
  });

  test('GIVEN no jobs-in-flight limit WHEN a callback is processed THEN no place is touched', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });

    await processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, config, logger, deps);

    expect(ddbMock.commandCalls(UpdateItemCommand).map((c) => c.args[0].input.TableName)).toEqual(['correlation-table']);
  });

  test('GIVEN JOB_PLACES_TABLE_NAME WHEN loading the config THEN the processor frees places in that table', () => {
    const env = {
      [CallbackEnv.TABLE_NAME]: 't',
      [CallbackEnv.JOB_ID_INDEX_NAME]: 'ByJobId',
      [CallbackEnv.JOB_ID_PATH]: '$.jobId',
      [CallbackEnv.DEAD_LETTER_QUEUE_URL]: DLQ_URL,
    };
    expect(loadConfig(env).jobPlacesTableName).toBeUndefined();
    expect(loadConfig({ ...env, [CallbackEnv.JOB_PLACES_TABLE_NAME]: 'pacer-table' }).jobPlacesTableName).toBe('pacer-table');
    expect(loadConfig({ ...env, JOB_WAITING_QUEUE_URL: 'w', JOB_REQUEST_QUEUE_URL: 'r' }).jobWaiting).toEqual({ waitingQueueUrl: 'w', requestQueueUrl: 'r' });
    expect(loadConfig(env).jobWaiting).toBeUndefined();
  });
});

describe('processCallbackRecord with per-key places (issue 15)', () => {
  const keyConfig: CallbackConfig = { ...config, jobPlacesTableName: 'pacer-table', freeKeyPlaces: true };
  const pacerWrites = () => ddbMock.commandCalls(UpdateItemCommand)
    .filter((c) => c.args[0].input.TableName === 'pacer-table')
    .map((c) => [c.args[0].input.Key!.pk.S, c.args[0].input.ExpressionAttributeNames!['#k']]);

  test('GIVEN a keyed request WHEN its callback is processed THEN the contract\'s place is freed, then its key\'s (the key read from the correlation item)', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });
    ddbMock.on(GetItemCommand, { TableName: 'correlation-table' }).resolves({ Item: { requestId: { S: 'req-1' }, requestKey: { S: 'acme' } } });
    ddbMock.on(UpdateItemCommand, { TableName: 'pacer-table' }).resolves({ Attributes: { placesHeld: { N: '3' } } });

    await processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, keyConfig, logger, deps);

    expect(pacerWrites()).toEqual([['job-places', placeKey('req-1')], ['key-places#acme', placeKey('req-1')]]);
    expect(ddbMock).toHaveReceivedCommandWith(GetItemCommand, {
      TableName: 'correlation-table', Key: { requestId: { S: 'req-1' } }, ProjectionExpression: '#requestKey', ConsistentRead: true,
    });
    expect(sfnMock).toHaveReceivedCommand(SendTaskSuccessCommand);
  });

  test('GIVEN a keyed request WHEN its callback frees the key\'s place THEN the same write advances the key\'s servedTicket and the hold is folded into its meanJobMs (ticket line, design 3.3)', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });
    ddbMock.on(GetItemCommand, { TableName: 'correlation-table' }).resolves({ Item: { requestId: { S: 'req-1' }, requestKey: { S: 'acme' } } });
    const spanMs = 3_900_000;
    // The key's place was taken 3 s ago (its expiry is span after that); the mean so far 5 s.
    const old = {
      placesHeld: { N: '2' },
      placeSpanMs: { N: String(spanMs) },
      meanJobMs: { N: '5000' },
      places: { M: { [placeKey('req-1')]: { N: String(Date.now() - 3000 + spanMs) } } },
    };
    ddbMock.on(UpdateItemCommand, { TableName: 'pacer-table' }).callsFake(async (input) => (
      input.Key.pk.S.startsWith('key-places#') && input.ReturnValues === 'ALL_OLD' ? { Attributes: old } : { Attributes: { placesHeld: { N: '3' } } }));

    await processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, keyConfig, logger, deps);

    const keyWrites = ddbMock.commandCalls(UpdateItemCommand).map((c) => c.args[0].input).filter((input) => input.Key!.pk?.S === 'key-places#acme');
    expect(keyWrites[0]).toEqual(expect.objectContaining({
      UpdateExpression: 'REMOVE #places.#k ADD #held :minusOne, #served :one',
      ExpressionAttributeNames: expect.objectContaining({ '#served': 'servedTicket' }),
    }));
    expect(keyWrites[1]).toEqual(expect.objectContaining({ UpdateExpression: 'SET #mean = :mean', ConditionExpression: '#mean = :old' }));
    // 5000 + 0.25 * (about 3000 - 5000)
    expect(Number(keyWrites[1].ExpressionAttributeValues![':mean'].N)).toBeGreaterThanOrEqual(4500);
    expect(Number(keyWrites[1].ExpressionAttributeValues![':mean'].N)).toBeLessThan(4700);
    expect(sfnMock).toHaveReceivedCommand(SendTaskSuccessCommand);
  });

  test('GIVEN a request without a key WHEN its callback is processed THEN only the contract\'s place is freed', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });
    ddbMock.on(GetItemCommand, { TableName: 'correlation-table' }).resolves({ Item: { requestId: { S: 'req-1' } } });
    ddbMock.on(UpdateItemCommand, { TableName: 'pacer-table' }).resolves({ Attributes: { placesHeld: { N: '3' } } });

    await processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, keyConfig, logger, deps);

    expect(pacerWrites()).toEqual([['job-places', placeKey('req-1')]]);
  });

  test('GIVEN per-key limits off WHEN a callback is processed THEN the key is not read and no key place touched (unchanged)', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });
    ddbMock.on(UpdateItemCommand, { TableName: 'pacer-table' }).resolves({ Attributes: { placesHeld: { N: '3' } } });

    await processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, { ...keyConfig, freeKeyPlaces: undefined }, logger, deps);

    expect(pacerWrites()).toEqual([['job-places', placeKey('req-1')]]);
    expect(ddbMock).not.toHaveReceivedCommand(GetItemCommand);
  });

  test('GIVEN the key\'s place cannot be written WHEN a callback is processed THEN it throws (redelivered; both releases are idempotent) before resuming', async () => {
    ddbMock.on(QueryCommand).resolves({ Items: [correlationItem('SUBMITTED')] });
    ddbMock.on(GetItemCommand, { TableName: 'correlation-table' }).resolves({ Item: { requestKey: { S: 'acme' } } });
    ddbMock.on(UpdateItemCommand, { TableName: 'pacer-table' }).callsFake(async (input) => {
      if (input.Key.pk.S.startsWith('key-places#')) throw throttling();
      return { Attributes: { placesHeld: { N: '3' } } };
    });

    await expect(processCallbackRecord(callbackRecord({ jobId: 'job-1' }), clients, keyConfig, logger, deps)).rejects.toThrow('Rate exceeded');
    expect(sfnMock).not.toHaveReceivedAnyCommand();
  });

  test('GIVEN FREE_KEY_PLACES WHEN loading the config THEN key places are freed only when it is \'true\'', () => {
    const env = {
      [CallbackEnv.TABLE_NAME]: 't', [CallbackEnv.JOB_ID_INDEX_NAME]: 'ByJobId', [CallbackEnv.JOB_ID_PATH]: '$.jobId', [CallbackEnv.DEAD_LETTER_QUEUE_URL]: DLQ_URL,
    };
    expect(loadConfig({ ...env, [CallbackEnv.FREE_KEY_PLACES]: 'true' }).freeKeyPlaces).toBe(true);
    expect(loadConfig({ ...env, [CallbackEnv.FREE_KEY_PLACES]: 'false' }).freeKeyPlaces).toBeUndefined();
    expect(loadConfig(env).freeKeyPlaces).toBeUndefined();
  });
});
