/**
 * Jobs in flight at the vendor caller: a call that ends a job (callVendorTask's endsJobOf, e.g. the
 * vendor's cancel endpoint) frees that job's place on the vendor's 2xx answer.
 */
import { ConditionalCheckFailedException, DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { DeleteMessageCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { freePlaceOfEndedJob } from '../../src/dispatch-workflow/ended-job';
import type { VendorCallEvent, VendorCallResult } from '../../src/dispatch-workflow/vendor-call';
import { placeKey } from '../../src/shared/job-places';
import { synthesizeWorkflows } from '../asl/configurations';

const ddb = mockClient(DynamoDBClient);
const sqs = mockClient(SQSClient);
const cancel: VendorCallEvent = { method: 'POST', path: '/jobs/j-1/cancel', query: {}, headers: {}, requestId: 'order-1-cancel', slotAtMs: 1, endsJobOf: 'order-1' };
const answer = (statusCode: number | null): VendorCallResult => ({ statusCode, body: null, headers: null, requeue: statusCode === null ? { delaySeconds: 2, reason: 'NoSlotInTime' } : null });
const logger = { debug: jest.fn(), info: jest.fn(), warn: jest.fn() };

beforeEach(() => {
  ddb.reset();
  logger.warn.mockReset();
  ddb.on(UpdateItemCommand).resolves({ Attributes: { placesHeld: { N: '1' } } });
});

/** `null`: no jobs-in-flight limit (the caller has no JOB_PLACES_TABLE_NAME). */
function deps(jobPlacesTableName: string | null = 'pacer') {
  return { dynamodb: new DynamoDBClient({}), jobPlacesTableName: jobPlacesTableName ?? undefined, logger, metrics: { addMetric: jest.fn() } };
}

describe('freePlaceOfEndedJob', () => {
  test('GIVEN a waiting room and a shared contract state WHEN a cancel frees the job\'s place THEN the owner\'s key is freed and one waiting request is woken', async () => {
    sqs.reset();
    sqs.on(ReceiveMessageCommand).resolves({ Messages: [{ MessageId: 'w1', ReceiptHandle: 'rh-1', Body: '{"requestId":"waiter"}' }] });
    sqs.on(SendMessageCommand).resolves({});
    sqs.on(DeleteMessageCommand).resolves({});
    const waitingRoom = { sqs: new SQSClient({}), waitingQueueUrl: 'waiting-url', requestQueueUrl: 'request-url' };
    await freePlaceOfEndedJob(cancel, answer(202), { ...deps(), jobPlacesOwner: 'arn:aws:sqs:eu-west-1:1:orders', waitingRoom });
    expect(ddb).toHaveReceivedCommandWith(UpdateItemCommand, {
      ExpressionAttributeNames: { '#places': 'places', '#held': 'placesHeld', '#k': placeKey('order-1', 'arn:aws:sqs:eu-west-1:1:orders') },
    });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: 'request-url', MessageBody: '{"requestId":"waiter"}' });
  });

  test.each([200, 202, 204])('GIVEN a cancel answered %s WHEN done THEN the place of the job it names is freed and the gauge published', async (status) => {
    const d = deps();
    await freePlaceOfEndedJob(cancel, answer(status), d);
    expect(ddb).toHaveReceivedCommandTimes(UpdateItemCommand, 1);
    expect(ddb).toHaveReceivedCommandWith(UpdateItemCommand, {
      TableName: 'pacer',
      UpdateExpression: 'REMOVE #places.#k ADD #held :minusOne',
      // The submission's place (keyed by ITS request id), not the cancel call's own id.
      ExpressionAttributeNames: { '#places': 'places', '#held': 'placesHeld', '#k': placeKey('order-1') },
    });
    expect(d.metrics.addMetric).toHaveBeenCalledWith('JobsInFlight', 'Count', 1);
  });

  test.each([
    ['answered 404 (no such job)', cancel, answer(404), 'pacer'],
    ['answered 503', cancel, answer(503), 'pacer'],
    ['not sent (requeued: no slot in time)', cancel, answer(null), 'pacer'],
    ['a call that ends no job', { ...cancel, endsJobOf: null }, answer(200), 'pacer'],
    ['a call without the field (an older workflow)', { ...cancel, endsJobOf: undefined }, answer(200), 'pacer'],
    ['an empty endsJobOf', { ...cancel, endsJobOf: '' }, answer(200), 'pacer'],
    ['no jobs-in-flight limit', cancel, answer(200), null],
  ])('GIVEN %s WHEN done THEN no place is touched', async (_, event, result, table) => {
    await freePlaceOfEndedJob(event, result, deps(table));
    expect(ddb).not.toHaveReceivedCommand(UpdateItemCommand);
  });

  test('GIVEN the place was already freed (a retried cancel, the job\'s callback) WHEN the cancel is answered 2xx THEN nothing is freed twice or published', async () => {
    ddb.on(UpdateItemCommand).rejects(new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} }));
    const d = deps();
    await freePlaceOfEndedJob(cancel, answer(200), d);
    expect(d.metrics.addMetric).not.toHaveBeenCalled();
    expect(logger.warn).not.toHaveBeenCalled();
  });

  test('GIVEN DynamoDB fails WHEN freeing THEN the answer still goes back (logged; the callback or maxJobDuration frees it)', async () => {
    ddb.on(UpdateItemCommand).rejects(new Error('boom'));
    await expect(freePlaceOfEndedJob(cancel, answer(200), deps())).resolves.toBeUndefined();
    expect(logger.warn).toHaveBeenCalledWith(expect.stringMatching(/expires at maxJobDuration/), expect.objectContaining({ endsJobOf: 'order-1' }));
  });
});

describe('the vendor-call workflow passes endsJobOf to the vendor caller', () => {
  test('GIVEN the synthesized vendor-call workflow WHEN it invokes the vendor caller THEN the payload carries endsJobOf and the request\'s start, and retries keep both', () => {
    const { vendorCall } = synthesizeWorkflows();
    const states = Object.values((vendorCall as { States: Record<string, any> }).States);
    const invokes = states.filter((state) => typeof state.Resource === 'string' && state.Resource.includes(':lambda:invoke') && state.Parameters?.Payload?.['slotAtMs.$']);
    expect(invokes.length).toBeGreaterThan(0);
    for (const state of invokes) {
      expect(state.Parameters.Payload).toMatchObject({ 'endsJobOf.$': '$.endsJobOf', 'requestStartedAtMs.$': '$.requestStartedAtMs' });
    }
    expect(JSON.stringify(vendorCall)).toContain('"endsJobOf.$":"$.endsJobOf"');
  });
});
