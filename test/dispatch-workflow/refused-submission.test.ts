/**
 * Jobs in flight at the vendor caller: a submission refused with a final 4xx frees its place.
 */
import { ConditionalCheckFailedException, DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { DeleteMessageCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { freePlaceOfRefusedSubmission, freePlaceOfUnsentSubmission, isJobSubmission, refusedWithoutJob } from '../../src/dispatch-workflow/refused-submission';
import type { VendorCallEvent, VendorCallResult } from '../../src/dispatch-workflow/vendor-call';
import { placeKey } from '../../src/shared/job-places';
import { synthesizeWorkflows } from '../asl/configurations';

const ddb = mockClient(DynamoDBClient);
const sqs = mockClient(SQSClient);
const submission: VendorCallEvent = { method: 'POST', headers: {}, body: {}, requestId: 'req-1', slotAtMs: 1 };
const answer = (statusCode: number | null): VendorCallResult => ({ statusCode, body: null, headers: null, requeue: null });
const logger = { debug: jest.fn(), info: jest.fn(), warn: jest.fn() };

beforeEach(() => {
  ddb.reset();
  sqs.reset();
  ddb.on(UpdateItemCommand).resolves({ Attributes: { placesHeld: { N: '1' } } });
});

/** `null`: no jobs-in-flight limit (the caller has no JOB_PLACES_TABLE_NAME). */
function deps(jobPlacesTableName: string | null = 'pacer') {
  return { dynamodb: new DynamoDBClient({}), jobPlacesTableName: jobPlacesTableName ?? undefined, logger, metrics: { addMetric: jest.fn() } };
}

describe('refusedWithoutJob', () => {
  test.each([
    [400, true], [403, true], [404, true], [422, true],
    [408, false], [409, false], [429, false], [500, false], [504, false], [202, false], [null, false],
  ])(
    'GIVEN status %s THEN refused without a job: %s', (status, expected) => {
      expect(refusedWithoutJob(status)).toBe(expected);
    });
});

describe('freePlaceOfRefusedSubmission', () => {
  test('GIVEN a submission refused with 400 WHEN answered THEN its place is freed and the gauge published', async () => {
    const d = deps();
    await freePlaceOfRefusedSubmission(submission, answer(400), d);
    expect(ddb).toHaveReceivedCommandWith(UpdateItemCommand, {
      TableName: 'pacer',
      UpdateExpression: 'REMOVE #places.#k ADD #held :minusOne',
      ExpressionAttributeNames: { '#places': 'places', '#held': 'placesHeld', '#k': placeKey('req-1') },
    });
    expect(d.metrics.addMetric).toHaveBeenCalledWith('JobsInFlight', 'Count', 1);
  });

  test.each([
    ['accepted (202)', submission, answer(202), 'pacer'],
    ['answered 504 (the vendor may hold the job)', submission, answer(504), 'pacer'],
    ['a vendor call (callVendorTask) refused with 404', { ...submission, path: 'jobs/1/result', query: null } as unknown as VendorCallEvent, answer(404), 'pacer'],
    ['refused without a jobs-in-flight limit', submission, answer(400), null],
  ])('GIVEN %s WHEN answered THEN no place is touched', async (_, event, result, table) => {
    await freePlaceOfRefusedSubmission(event, result, deps(table));
    expect(ddb).not.toHaveReceivedCommand(UpdateItemCommand);
  });

  test('GIVEN a waiting room WHEN a refused submission frees its place THEN one waiting request is woken', async () => {
    const waitingRoom = { sqs: new SQSClient({}), waitingQueueUrl: 'waiting-url', requestQueueUrl: 'request-url' };
    sqs.on(ReceiveMessageCommand).resolves({ Messages: [{ MessageId: 'w1', ReceiptHandle: 'rh-1', Body: '{"requestId":"waiter"}' }] });
    sqs.on(SendMessageCommand).resolves({});
    sqs.on(DeleteMessageCommand).resolves({});
    await freePlaceOfRefusedSubmission(submission, answer(400), { ...deps(), waitingRoom });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: 'request-url', MessageBody: '{"requestId":"waiter"}' });
    expect(sqs).toHaveReceivedCommandWith(DeleteMessageCommand, { QueueUrl: 'waiting-url', ReceiptHandle: 'rh-1' });
  });

  test('GIVEN the place was already freed WHEN refused THEN nothing is published', async () => {
    ddb.on(UpdateItemCommand).rejects(new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} }));
    const d = deps();
    await freePlaceOfRefusedSubmission(submission, answer(400), d);
    expect(d.metrics.addMetric).not.toHaveBeenCalled();
  });

  test('GIVEN DynamoDB fails WHEN freeing THEN the answer still goes back (logged; the place expires)', async () => {
    ddb.on(UpdateItemCommand).rejects(new Error('boom'));
    await expect(freePlaceOfRefusedSubmission(submission, answer(400), deps())).resolves.toBeUndefined();
    expect(logger.warn).toHaveBeenCalledWith(expect.stringMatching(/expires at maxJobDuration/), expect.anything());
  });
});

describe('freePlaceOfUnsentSubmission', () => {
  test('GIVEN a submission given up with VendorQuotaExhausted (not sent) WHEN the caller throws THEN its place is freed', async () => {
    await freePlaceOfUnsentSubmission(submission, Object.assign(new Error('spent'), { name: 'VendorQuotaExhausted' }), deps());
    expect(ddb).toHaveReceivedCommandWith(UpdateItemCommand, { TableName: 'pacer', ExpressionAttributeNames: { '#places': 'places', '#held': 'placesHeld', '#k': placeKey('req-1') } });
  });

  test.each([
    ['VendorResponseTooLarge (the vendor answered: a job may exist)', 'VendorResponseTooLarge'],
    ['any other error', 'TypeError'],
  ])('GIVEN %s WHEN the caller throws THEN the place stays', async (_, name) => {
    await freePlaceOfUnsentSubmission(submission, Object.assign(new Error('x'), { name }), deps());
    expect(ddb).not.toHaveReceivedCommand(UpdateItemCommand);
  });
});

describe('isJobSubmission against the synthesized payloads', () => {
  test('GIVEN both workflows WHEN they invoke the vendor caller THEN only the vendor-call workflow passes path and query', () => {
    const { dispatch, vendorCall } = synthesizeWorkflows();
    const payloads = (definition: { States: Record<string, any> }) => Object.values(definition.States)
      .filter((state) => typeof state.Resource === 'string' && state.Resource.includes(':lambda:invoke') && state.Parameters?.Payload?.['slotAtMs.$'])
      .map((state) => Object.keys(state.Parameters.Payload).map((k) => k.replace(/\.\$$/, '')));
    const dispatchPayloads = payloads(dispatch as never);
    const callPayloads = payloads(vendorCall as never);
    expect(dispatchPayloads.length).toBeGreaterThan(0);
    expect(callPayloads.length).toBeGreaterThan(0);
    for (const keys of dispatchPayloads) {
      expect(isJobSubmission(Object.fromEntries(keys.map((k) => [k, 1])) as VendorCallEvent)).toBe(true);
    }
    for (const keys of callPayloads) {
      expect(isJobSubmission(Object.fromEntries(keys.map((k) => [k, 1])) as VendorCallEvent)).toBe(false);
    }
  });
});
