/**
 * The jobs-in-flight waiting room (shared/job-waiting.ts): moving requests without a place to the
 * waiting queue, waking waiters for freed places, the configuration. SQS mocked; the places item's
 * release is mocked at the DynamoDB client (its conditional writes are tested in jobs-in-flight.test.ts).
 */
import { DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import {
  DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient,
} from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import {
  releasePlaceAndWakeWaiter, sendToWaiting, waitingCount, waitingQueuesFromEnv, WaitingRoom, waitingRoomOf, wakeWaiters, wakeWaitersForFreePlaces,
} from '../../src/shared/job-waiting';

const sqsMock = mockClient(SQSClient);
const ddbMock = mockClient(DynamoDBClient);
const WAITING = 'https://sqs.eu-west-1.amazonaws.com/123456789012/waiting';
const REQUESTS = 'https://sqs.eu-west-1.amazonaws.com/123456789012/requests';
const logger = { info: jest.fn(), warn: jest.fn() };

function room(): WaitingRoom {
  return { sqs: new SQSClient({}), waitingQueueUrl: WAITING, requestQueueUrl: REQUESTS };
}

function waiter(id: string, extra: object = {}) {
  return { MessageId: `w-${id}`, ReceiptHandle: `rh-${id}`, Body: JSON.stringify({ requestId: id }), ...extra };
}

beforeEach(() => {
  sqsMock.reset();
  ddbMock.reset();
  logger.info.mockReset();
  logger.warn.mockReset();
  sqsMock.on(SendMessageCommand).resolves({ MessageId: 'sent' });
  sqsMock.on(DeleteMessageCommand).resolves({});
});

describe('wakeWaiters', () => {
  test('GIVEN a waiter with attributes and a message group WHEN woken THEN it is sent back to the request queue as it was, then deleted', async () => {
    sqsMock.on(ReceiveMessageCommand).resolves({
      Messages: [waiter('a', {
        MessageAttributes: { tenant: { DataType: 'String', StringValue: 't1' } },
        Attributes: { MessageGroupId: 'tenant-1' },
      })],
    });
    expect(await wakeWaiters(room(), 1, logger)).toBe(1);
    expect(sqsMock).toHaveReceivedCommandWith(ReceiveMessageCommand, {
      QueueUrl: WAITING, MaxNumberOfMessages: 1, WaitTimeSeconds: 0, MessageAttributeNames: ['All'], MessageSystemAttributeNames: ['MessageGroupId'],
    });
    expect(sqsMock).toHaveReceivedCommandWith(SendMessageCommand, {
      QueueUrl: REQUESTS,
      MessageBody: JSON.stringify({ requestId: 'a' }),
      MessageAttributes: { tenant: { DataType: 'String', StringValue: 't1' } },
      MessageGroupId: 'tenant-1',
    });
    // No delay: the freed place is taken at once.
    expect(sqsMock.commandCalls(SendMessageCommand)[0].args[0].input.DelaySeconds).toBeUndefined();
    expect(sqsMock).toHaveReceivedCommandWith(DeleteMessageCommand, { QueueUrl: WAITING, ReceiptHandle: 'rh-a' });
  });

  test('GIVEN a short poll answers empty (a false empty answer) WHEN waking THEN it asks once more, and no more', async () => {
    sqsMock.on(ReceiveMessageCommand).resolvesOnce({ Messages: [] }).resolvesOnce({ Messages: [waiter('a')] });
    expect(await wakeWaiters(room(), 1, logger)).toBe(1);
    expect(sqsMock).toHaveReceivedCommandTimes(ReceiveMessageCommand, 2);

    sqsMock.reset();
    sqsMock.on(ReceiveMessageCommand).resolves({});
    expect(await wakeWaiters(room(), 1, logger)).toBe(0);
    expect(sqsMock).toHaveReceivedCommandTimes(ReceiveMessageCommand, 2);
  });

  test('GIVEN a long poll (the sweep) WHEN the queue is empty THEN it stops at the first empty answer', async () => {
    sqsMock.on(ReceiveMessageCommand).resolves({ Messages: [] });
    expect(await wakeWaiters(room(), 3, logger, true)).toBe(0);
    expect(sqsMock).toHaveReceivedCommandTimes(ReceiveMessageCommand, 1);
    expect(sqsMock).toHaveReceivedCommandWith(ReceiveMessageCommand, { WaitTimeSeconds: 1, MaxNumberOfMessages: 3 });
  });

  test('GIVEN more waiters to wake than one receive returns WHEN waking THEN it receives again until the count is reached', async () => {
    const ten = Array.from({ length: 10 }, (_, i) => waiter(`a${i}`));
    sqsMock.on(ReceiveMessageCommand).resolvesOnce({ Messages: ten }).resolvesOnce({ Messages: [waiter('b0'), waiter('b1')] });
    expect(await wakeWaiters(room(), 12, logger, true)).toBe(12);
    expect(sqsMock.commandCalls(ReceiveMessageCommand).map((c) => c.args[0].input.MaxNumberOfMessages)).toEqual([10, 2]);
    expect(sqsMock).toHaveReceivedCommandTimes(DeleteMessageCommand, 12);
  });

  test('GIVEN the send back fails WHEN waking THEN the waiter is not deleted (it stays waiting) and waking stops', async () => {
    sqsMock.on(ReceiveMessageCommand).resolves({ Messages: [waiter('a')] });
    sqsMock.on(SendMessageCommand).rejects(new Error('throttled'));
    expect(await wakeWaiters(room(), 2, logger)).toBe(0);
    expect(sqsMock).not.toHaveReceivedCommand(DeleteMessageCommand);
    expect(sqsMock).toHaveReceivedCommandTimes(ReceiveMessageCommand, 1);
    expect(logger.warn).toHaveBeenCalledWith(expect.stringMatching(/stays waiting/), expect.anything());
  });

  test('GIVEN the delete fails after the send WHEN waking THEN it counts as woken (the copy left is deduplicated later)', async () => {
    sqsMock.on(ReceiveMessageCommand).resolves({ Messages: [waiter('a')] });
    sqsMock.on(DeleteMessageCommand).rejects(new Error('gone'));
    expect(await wakeWaiters(room(), 1, logger)).toBe(1);
    expect(logger.warn).toHaveBeenCalledWith(expect.stringMatching(/deduplicated later/), expect.anything());
  });

  test('GIVEN the receive fails WHEN waking THEN nothing is thrown: 0 woken, logged (the sweep moves the waiter)', async () => {
    sqsMock.on(ReceiveMessageCommand).rejects(new Error('down'));
    expect(await wakeWaiters(room(), 1, logger)).toBe(0);
    expect(logger.warn).toHaveBeenCalledWith(expect.stringMatching(/the sweep moves them/), expect.anything());
  });
});

describe('releasePlaceAndWakeWaiter', () => {
  const table = () => ({ dynamodb: new DynamoDBClient({}), tableName: 'pacer' });

  test('GIVEN a held place WHEN released THEN one waiter is woken', async () => {
    ddbMock.on(UpdateItemCommand).resolves({ Attributes: { placesHeld: { N: '3' } } });
    sqsMock.on(ReceiveMessageCommand).resolves({ Messages: [waiter('a')] });
    expect(await releasePlaceAndWakeWaiter(table(), room(), 'r-1', logger)).toBe(3);
    expect(sqsMock).toHaveReceivedCommandWith(ReceiveMessageCommand, { MaxNumberOfMessages: 1 });
    expect(sqsMock).toHaveReceivedCommandTimes(SendMessageCommand, 1);
  });

  test('GIVEN a place that is not held (a duplicate callback) WHEN released THEN nobody is woken', async () => {
    ddbMock.on(UpdateItemCommand).rejects(Object.assign(new Error('no'), { name: 'ConditionalCheckFailedException' }));
    expect(await releasePlaceAndWakeWaiter(table(), room(), 'r-1', logger)).toBeUndefined();
    expect(sqsMock).not.toHaveReceivedCommand(ReceiveMessageCommand);
  });

  test('GIVEN no waiting room WHEN a place is released THEN it is only released', async () => {
    ddbMock.on(UpdateItemCommand).resolves({ Attributes: { placesHeld: { N: '0' } } });
    expect(await releasePlaceAndWakeWaiter(table(), undefined, 'r-1', logger)).toBe(0);
    expect(sqsMock).not.toHaveReceivedCommand(ReceiveMessageCommand);
  });
});

describe('wakeWaitersForFreePlaces', () => {
  const table = () => ({ dynamodb: new DynamoDBClient({}), tableName: 'pacer' });

  test('GIVEN 2 of 4 places held WHEN called THEN up to 2 waiters are woken', async () => {
    ddbMock.on(GetItemCommand).resolves({ Item: { places: { M: { k1: { N: '1' }, k2: { N: '2' } } }, placesHeld: { N: '2' } } });
    sqsMock.on(ReceiveMessageCommand).resolves({ Messages: [waiter('a'), waiter('b')] });
    expect(await wakeWaitersForFreePlaces(table(), room(), 4, logger)).toBe(2);
    expect(sqsMock).toHaveReceivedCommandWith(ReceiveMessageCommand, { MaxNumberOfMessages: 2 });
  });

  test('GIVEN every place held WHEN called THEN nobody is woken', async () => {
    ddbMock.on(GetItemCommand).resolves({ Item: { places: { M: { k1: { N: '1' } } }, placesHeld: { N: '1' } } });
    expect(await wakeWaitersForFreePlaces(table(), room(), 1, logger)).toBe(0);
    expect(sqsMock).not.toHaveReceivedCommand(ReceiveMessageCommand);
  });

  test('GIVEN the places cannot be read WHEN called THEN nothing is thrown and nobody is woken (the sweep will)', async () => {
    ddbMock.on(GetItemCommand).rejects(new Error('throttled'));
    expect(await wakeWaitersForFreePlaces(table(), room(), 4, logger)).toBe(0);
    expect(logger.warn).toHaveBeenCalledWith(expect.stringMatching(/the sweep wakes them/), expect.anything());
  });
});

describe('waiting queue', () => {
  test('GIVEN a request without a place WHEN sent to wait THEN body, attributes and message group are kept', async () => {
    await sendToWaiting(room(), { body: '{"requestId":"a"}', attributes: { k: { DataType: 'String', StringValue: 'v' } }, groupId: 'g' });
    expect(sqsMock).toHaveReceivedCommandWith(SendMessageCommand, {
      QueueUrl: WAITING, MessageBody: '{"requestId":"a"}', MessageAttributes: { k: { DataType: 'String', StringValue: 'v' } }, MessageGroupId: 'g',
    });
  });

  test('GIVEN the waiting queue WHEN its depth is read THEN ApproximateNumberOfMessages is returned', async () => {
    sqsMock.on(GetQueueAttributesCommand).resolves({ Attributes: { ApproximateNumberOfMessages: '7' } });
    expect(await waitingCount(room())).toBe(7);
  });

  test('GIVEN the environment WHEN read THEN both queues are needed together', () => {
    expect(waitingQueuesFromEnv({})).toBeUndefined();
    expect(waitingQueuesFromEnv({ JOB_WAITING_QUEUE_URL: WAITING, JOB_REQUEST_QUEUE_URL: REQUESTS }))
      .toEqual({ waitingQueueUrl: WAITING, requestQueueUrl: REQUESTS });
    expect(() => waitingQueuesFromEnv({ JOB_WAITING_QUEUE_URL: WAITING })).toThrow(/JOB_REQUEST_QUEUE_URL is required when JOB_WAITING_QUEUE_URL is set/);
    expect(waitingRoomOf(undefined, new SQSClient({}))).toBeUndefined();
    expect(waitingRoomOf({ waitingQueueUrl: WAITING }, new SQSClient({}))).toBeUndefined();
  });
});
