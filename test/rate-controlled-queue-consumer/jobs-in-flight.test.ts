/**
 * Jobs in flight (VendorContract.maxJobsInFlight): the places item's conditional writes against
 * the local DynamoDB (dynalite: real condition semantics, no transactions), and the dispatcher's
 * admission on fake time (Step Functions and SQS mocked).
 */
import { DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { SendTaskHeartbeatCommand, SFNClient, StartExecutionCommand, StartExecutionCommandInput, TaskTimedOut } from '@aws-sdk/client-sfn';
import {
  ChangeMessageVisibilityCommand, DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { FakeClock, fakeClock, useLocalPacerTables } from './local-pacer-tables';
import { requestRecord } from './sqs-record';
import { dispatchBatch, DispatchConfig, DispatchDeps, loadConfig } from '../../src/rate-controlled-queue-consumer/dispatch';
import { admitJobs, AdmissionDeps } from '../../src/rate-controlled-queue-consumer/job-admission';
import { isJobPlacesSweep, sweepJobPlaces } from '../../src/rate-controlled-queue-consumer/job-places-sweep';
import { placeKey, readPlaces, releasePlace, takePlace } from '../../src/shared/job-places';
import { RequestMessage } from '../../src/shared/messages';
import { MetricNames } from '../../src/shared/metrics';

const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_700_000_000_000;
const STATE_MACHINE_ARN = 'arn:aws:states:eu-west-1:123456789012:stateMachine:dispatch';
const HOUR_MS = 3_600_000;

const local = useLocalPacerTables('');
let client: DynamoDBClient;
beforeAll(() => {
  client = local.client;
});

const freshTables = () => local.freshTables();


function fakeMetrics(): { addMetric: jest.Mock; values(name: string): number[] } {
  const addMetric = jest.fn();
  return { addMetric, values: (name) => addMetric.mock.calls.filter((c) => c[0] === name).map((c) => c[2]) };
}

const logger = { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() };

function message(requestId: string, extra: Partial<RequestMessage> = {}): RequestMessage {
  return { taskToken: `token-${requestId}`, requestId, payload: { document: requestId }, ...extra };
}

function record(body: object, messageId: string): SQSRecord {
  return requestRecord(body, messageId, T0);
}

const WAITING_QUEUE_URL = 'https://sqs.eu-west-1.amazonaws.com/123456789012/waiting';
const REQUEST_QUEUE_URL = 'https://sqs.eu-west-1.amazonaws.com/123456789012/requests';
/** The waiting room's queues, as the construct configures them with limitJobsInFlight(). */
const WAITING = { waitingQueueUrl: WAITING_QUEUE_URL, requestQueueUrl: REQUEST_QUEUE_URL };

function waitingDeps(tables: { pacer: string; correlation: string }, clock: FakeClock, metrics = fakeMetrics(), maxJobsInFlight = 2): DispatchDeps {
  const deps = dispatchDeps(tables, clock, metrics, maxJobsInFlight);
  return { ...deps, config: { ...deps.config, jobsInFlight: { ...deps.config.jobsInFlight!, ...WAITING } } };
}

function dispatchDeps(tables: { pacer: string; correlation: string }, clock: FakeClock, metrics = fakeMetrics(), maxJobsInFlight = 2): DispatchDeps {
  const config: DispatchConfig = {
    stateMachineArn: STATE_MACHINE_ARN,
    requestsPerSecond: 10,
    pacerTableName: tables.pacer,
    maxPacingWaitMs: 2_000,
    latenessToleranceMs: 49,
    correlationTtlSeconds: 86_400,
    deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/dlq',
    jobsInFlight: { maxJobsInFlight, maxJobDurationMs: HOUR_MS, recheckMs: 2000, correlationTableName: tables.correlation },
  };
  return { clients: { dynamodb: client, sfn: new SFNClient({}), sqs: new SQSClient({}) }, config, logger, metrics, clock, random: () => 0.5 };
}

function startedRequestIds(): string[] {
  return sfn.commandCalls(StartExecutionCommand).map((c) => JSON.parse((c.args[0].input as StartExecutionCommandInput).input!).requestId);
}

beforeEach(() => {
  sfn.reset();
  sqs.reset();
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:exec', startDate: new Date() });
  sqs.on(SendMessageCommand).resolves({ MessageId: 'copy' });
  sqs.on(ChangeMessageVisibilityCommand).resolves({});
});

describe('job places (one item, single conditional writes)', () => {
  test('GIVEN a limit of 2 WHEN three requests take places THEN two get one and the third finds the limit full', async () => {
    const { pacer } = await freshTables();
    const table = { dynamodb: client, tableName: pacer };
    expect(await takePlace(table, 'a', 2, T0 + HOUR_MS, T0)).toEqual({ result: 'taken', placesHeld: 1, expiresAtMs: T0 + HOUR_MS });
    expect(await takePlace(table, 'b', 2, T0 + HOUR_MS, T0)).toEqual({ result: 'taken', placesHeld: 2, expiresAtMs: T0 + HOUR_MS });
    expect(await takePlace(table, 'c', 2, T0 + HOUR_MS, T0)).toEqual({ result: 'full', placesHeld: 2 });
  });

  test('GIVEN a request holding a place WHEN it takes again (a retry, a redelivered copy) THEN it is not counted twice', async () => {
    const { pacer } = await freshTables();
    const table = { dynamodb: client, tableName: pacer };
    await takePlace(table, 'a', 2, T0 + HOUR_MS, T0);
    expect(await takePlace(table, 'a', 2, T0 + HOUR_MS, T0)).toEqual({ result: 'held', placesHeld: 1, expiresAtMs: T0 + HOUR_MS });
    expect((await readPlaces(table))!.held).toBe(1);
  });

  test('GIVEN a held place WHEN it is released twice (a redelivered callback) THEN it is freed once', async () => {
    const { pacer } = await freshTables();
    const table = { dynamodb: client, tableName: pacer };
    await takePlace(table, 'a', 2, T0 + HOUR_MS, T0);
    await takePlace(table, 'b', 2, T0 + HOUR_MS, T0);
    expect(await releasePlace(table, 'a')).toBe(1);
    expect(await releasePlace(table, 'a')).toBeUndefined();
    expect(await releasePlace(table, 'never-taken')).toBeUndefined();
    const state = (await readPlaces(table))!;
    expect(state.held).toBe(1);
    expect([...state.places.keys()]).toEqual([placeKey('b')]);
  });

  test('GIVEN a place whose callback was lost WHEN maxJobDuration has passed and the limit is full THEN the expired place is dropped and taken', async () => {
    const { pacer } = await freshTables();
    const table = { dynamodb: client, tableName: pacer };
    await takePlace(table, 'lost', 2, T0 + 1000, T0);
    await takePlace(table, 'b', 2, T0 + HOUR_MS, T0);
    // Before the expiry the place still counts: our own timeout never frees it.
    expect((await takePlace(table, 'c', 2, T0 + HOUR_MS, T0 + 999)).result).toBe('full');
    expect(await takePlace(table, 'c', 2, T0 + 1000 + HOUR_MS, T0 + 1000)).toEqual({ result: 'taken', placesHeld: 2, expiresAtMs: T0 + 1000 + HOUR_MS });
    const state = (await readPlaces(table))!;
    expect(new Set(state.places.keys())).toEqual(new Set([placeKey('b'), placeKey('c')]));
  });

  test('GIVEN a request whose own place has expired (a redelivery after maxJobDuration) WHEN it is admitted again THEN the place is renewed and nobody else can take it', async () => {
    const { pacer } = await freshTables();
    const table = { dynamodb: client, tableName: pacer };
    await takePlace(table, 'redelivered', 2, T0 + 1000, T0);
    await takePlace(table, 'b', 2, T0 + HOUR_MS, T0);
    // Back after its place expired: still ours, renewed from now.
    expect(await takePlace(table, 'redelivered', 2, T0 + 2000 + HOUR_MS, T0 + 2000)).toEqual({ result: 'held', placesHeld: 2, expiresAtMs: T0 + 2000 + HOUR_MS });
    expect((await readPlaces(table))!.places.get(placeKey('redelivered'))).toBe(T0 + 2000 + HOUR_MS);
    // So a waiting request finds the limit full instead of dropping it: two jobs, not three.
    expect((await takePlace(table, 'c', 2, T0 + 2000 + HOUR_MS, T0 + 2000)).result).toBe('full');
  });

  test('GIVEN 20 concurrent takes against a limit of 3 WHEN they race THEN exactly 3 places are taken', async () => {
    const { pacer } = await freshTables();
    const table = { dynamodb: client, tableName: pacer };
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => takePlace(table, `r${i}`, 3, T0 + HOUR_MS, T0)));
    expect(outcomes.filter((o) => o.result === 'taken')).toHaveLength(3);
    const state = (await readPlaces(table))!;
    expect(state.held).toBe(3);
    expect(state.places.size).toBe(3);
  });

  test('GIVEN a long request id WHEN keyed THEN the place key is a 22-character digest', () => {
    expect(placeKey('x'.repeat(2048))).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(placeKey('a')).not.toBe(placeKey('b'));
  });
});

describe('admitJobs', () => {
  function admissionDeps(tables: { pacer: string; correlation: string }, metrics = fakeMetrics()): AdmissionDeps {
    return {
      dynamodb: client,
      sfn: new SFNClient({}),
      pacerTableName: tables.pacer,
      config: { maxJobsInFlight: 1, maxJobDurationMs: HOUR_MS, recheckMs: 2000, correlationTableName: tables.correlation },
      clock: fakeClock(T0),
      logger,
      metrics,
    };
  }

  test('GIVEN the limit is full WHEN vendor calls (result fetches) arrive THEN they are admitted without a place', async () => {
    const tables = await freshTables();
    const d = admissionDeps(tables);
    const items = [{ message: message('job-1') }, { message: { kind: 'call', requestId: 'fetch-1' } as never }, { message: message('job-2') }];
    const admission = await admitJobs(items, d);
    expect(admission.admitted.map((i) => i.message.requestId)).toEqual(['job-1', 'fetch-1']);
    expect(admission.waiting.map((i) => i.message.requestId)).toEqual(['job-2']);
    expect((await readPlaces({ dynamodb: client, tableName: tables.pacer }))!.held).toBe(1);
  });

  test('GIVEN the limit is full WHEN the request holding the place comes back in the same batch THEN it is admitted', async () => {
    const tables = await freshTables();
    const d = admissionDeps(tables);
    await takePlace({ dynamodb: client, tableName: tables.pacer }, 'retry', 1, T0 + HOUR_MS, T0);
    const admission = await admitJobs([{ message: message('other') }, { message: message('retry') }], d);
    expect(admission.admitted.map((i) => i.message.requestId)).toEqual(['retry']);
    expect(admission.waiting.map((i) => i.message.requestId)).toEqual(['other']);
  });

  test('GIVEN a redelivered request whose job was already submitted (and ended) WHEN admitted THEN it holds no place afterwards', async () => {
    const tables = await freshTables();
    await client.send(new PutItemCommand({ TableName: tables.correlation, Item: { requestId: { S: 'done' }, jobId: { S: 'job-9' }, status: { S: 'COMPLETED' } } }));
    const metrics = fakeMetrics();
    const admission = await admitJobs([{ message: message('done') }, { message: message('next') }], admissionDeps(tables, metrics));
    expect(admission.admitted.map((i) => i.message.requestId)).toEqual(['done', 'next']);
    const state = (await readPlaces({ dynamodb: client, tableName: tables.pacer }))!;
    expect([...state.places.keys()]).toEqual([placeKey('next')]);
    expect(metrics.values(MetricNames.JOBS_IN_FLIGHT)).toEqual([1, 0, 1]);
  });

  test('GIVEN a request whose waiting workflow timed out while it waited WHEN it gets a place THEN the place is given back', async () => {
    const tables = await freshTables();
    sfn.on(SendTaskHeartbeatCommand, { taskToken: 'token-orphan' }).rejects(new TaskTimedOut({ message: 'timed out', $metadata: {} }));
    const admission = await admitJobs([{ message: message('orphan') }, { message: message('next') }], admissionDeps(tables));
    // Admitted: its execution ends at WaitingWorkflowEnded without calling the vendor, and holds no place.
    expect(admission.admitted.map((i) => i.message.requestId)).toEqual(['orphan', 'next']);
    expect([...(await readPlaces({ dynamodb: client, tableName: tables.pacer }))!.places.keys()]).toEqual([placeKey('next')]);
  });

  test('GIVEN the heartbeat fails for another reason WHEN a request gets a place THEN it keeps it (assumed still waiting)', async () => {
    const tables = await freshTables();
    sfn.on(SendTaskHeartbeatCommand).rejects(Object.assign(new Error('slow down'), { name: 'ThrottlingException' }));
    const admission = await admitJobs([{ message: message('a') }], admissionDeps(tables));
    expect(admission.admitted).toHaveLength(1);
    expect((await readPlaces({ dynamodb: client, tableName: tables.pacer }))!.held).toBe(1);
  });

  test('GIVEN DynamoDB fails WHEN admitting THEN the submissions are unknown (nothing is sent without a place)', async () => {
    const failing = { send: jest.fn().mockRejectedValue(Object.assign(new Error('boom'), { name: 'InternalServerError' })) } as unknown as DynamoDBClient;
    const d = { ...admissionDeps({ pacer: 'p', correlation: 'c' }), dynamodb: failing };
    const admission = await admitJobs([{ message: message('a') }], d);
    expect(admission).toEqual({ admitted: [], waiting: [], unknown: [{ message: message('a') }], keyFull: [] });
  });
});

describe('dispatchBatch with maxJobsInFlight', () => {
  test('GIVEN maxJobsInFlight 2 and four submissions WHEN dispatching THEN two start and two wait as delayed copies, reserving no slot', async () => {
    const tables = await freshTables();
    const clock = fakeClock(T0);
    const metrics = fakeMetrics();
    const records = ['a', 'b', 'c', 'd'].map((id, i) => record(message(id), `m${i}`));
    const result = await dispatchBatch({ Records: records }, dispatchDeps(tables, clock, metrics));

    expect(result.batchItemFailures).toEqual([]);
    expect(startedRequestIds()).toEqual(['a', 'b']);
    // The two without a place: copies delayed by the recheck interval, no receive spent.
    const copies = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
    expect(copies.map((c) => JSON.parse(c.MessageBody!).requestId)).toEqual(['c', 'd']);
    expect(copies.every((c) => c.DelaySeconds === 2)).toBe(true);
    expect(sqs).not.toHaveReceivedCommand(ChangeMessageVisibilityCommand);
    // Only the two admitted reserved slots: the schedule's next free slot is two intervals on.
    const pacerItem = await client.send(new GetItemCommand({ TableName: tables.pacer, Key: { pk: { S: 'pacer' } }, ConsistentRead: true }));
    expect(Number(pacerItem.Item!.nextSlotAtMs.N) - T0).toBeLessThan(3 * 105);
    // Taken, taken, then the limit found full (published while requests wait: the at-limit alarm's datapoints).
    expect(metrics.values(MetricNames.JOBS_IN_FLIGHT)).toEqual([1, 2, 2]);
  });

  test('GIVEN a place was freed by a callback WHEN the waiting request comes back THEN it takes the place and starts', async () => {
    const tables = await freshTables();
    const clock = fakeClock(T0);
    await dispatchBatch({ Records: ['a', 'b', 'c'].map((id, i) => record(message(id), `m${i}`)) }, dispatchDeps(tables, clock));
    expect(startedRequestIds()).toEqual(['a', 'b']);
    await releasePlace({ dynamodb: client, tableName: tables.pacer }, 'a');
    sfn.resetHistory();
    clock.t += 2000;
    await dispatchBatch({ Records: [record(message('c'), 'm2-copy')] }, dispatchDeps(tables, clock));
    expect(startedRequestIds()).toEqual(['c']);
  });

  test('GIVEN the dispatcher crashed after taking a place WHEN the message is redelivered at the limit THEN it starts on its own place (no leak, no double count)', async () => {
    const tables = await freshTables();
    const table = { dynamodb: client, tableName: tables.pacer };
    // The crashed invocation took the place; StartExecution never ran.
    await takePlace(table, 'crashed', 2, T0 + HOUR_MS, T0);
    await takePlace(table, 'other', 2, T0 + HOUR_MS, T0);
    await dispatchBatch({ Records: [record(message('crashed'), 'redelivered')] }, dispatchDeps(tables, fakeClock(T0)));
    expect(startedRequestIds()).toEqual(['crashed']);
    expect((await readPlaces(table))!.held).toBe(2);
  });

  test('GIVEN a waiting queue WHEN requests find every place taken THEN they are moved there (no delay, originals deleted), reserving no slot', async () => {
    const tables = await freshTables();
    const metrics = fakeMetrics();
    const records = ['a', 'b', 'c', 'd'].map((id, i) => record(message(id), `m${i}`));
    const result = await dispatchBatch({ Records: records }, waitingDeps(tables, fakeClock(T0), metrics));

    // Nothing stays on the request queue: c and d wait in the waiting queue until a place is freed.
    expect(result.batchItemFailures).toEqual([]);
    expect(startedRequestIds()).toEqual(['a', 'b']);
    const moved = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
    expect(moved.map((c) => [c.QueueUrl, JSON.parse(c.MessageBody!).requestId, c.DelaySeconds])).toEqual([
      [WAITING_QUEUE_URL, 'c', undefined],
      [WAITING_QUEUE_URL, 'd', undefined],
    ]);
    // The body as it was, with the request's start stamped in (request-start.ts): a wait does not restart its clock.
    expect(JSON.parse(moved[0].MessageBody!)).toEqual({ ...message('c'), requestStartedAtMs: expect.any(Number) });
    expect(sqs).not.toHaveReceivedCommand(ChangeMessageVisibilityCommand);
    expect(metrics.values(MetricNames.JOBS_IN_FLIGHT)).toEqual([1, 2, 2]);
  });

  test('GIVEN a place freed while requests are being moved to wait (its wake found nobody) WHEN moved THEN the dispatcher wakes a waiter for it', async () => {
    const tables = await freshTables();
    // The callback's release lands between the admission (limit full) and the move.
    sqs.on(SendMessageCommand, { QueueUrl: WAITING_QUEUE_URL }).callsFake(async () => {
      await releasePlace({ dynamodb: client, tableName: tables.pacer }, 'a');
      return { MessageId: 'waiting-c' };
    });
    sqs.on(ReceiveMessageCommand).resolves({ Messages: [{ MessageId: 'waiting-c', ReceiptHandle: 'rh-c', Body: JSON.stringify(message('c')) }] });
    sqs.on(DeleteMessageCommand).resolves({});
    await dispatchBatch({ Records: ['a', 'b', 'c'].map((id, i) => record(message(id), `m${i}`)) }, waitingDeps(tables, fakeClock(T0)));
    expect(sqs).toHaveReceivedCommandWith(ReceiveMessageCommand, { QueueUrl: WAITING_QUEUE_URL, MaxNumberOfMessages: 1 });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: REQUEST_QUEUE_URL, MessageBody: JSON.stringify(message('c')) });
  });

  test('GIVEN the waiting queue refuses a request WHEN it has no place THEN it rechecks as a delayed copy on the request queue instead', async () => {
    const tables = await freshTables();
    sqs.on(SendMessageCommand, { QueueUrl: WAITING_QUEUE_URL }).rejects(new Error('KMS.ThrottlingException'));
    const records = ['a', 'b', 'c'].map((id, i) => record(message(id), `m${i}`));
    const result = await dispatchBatch({ Records: records }, waitingDeps(tables, fakeClock(T0)));
    expect(result.batchItemFailures).toEqual([]);
    const copy = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input).find((c) => c.QueueUrl !== WAITING_QUEUE_URL)!;
    expect([JSON.parse(copy.MessageBody!).requestId, copy.DelaySeconds]).toEqual(['c', 2]);
  });

  test('GIVEN a redelivered request whose job was already submitted WHEN it gives its new place back THEN it wakes one waiter', async () => {
    const tables = await freshTables();
    await client.send(new PutItemCommand({ TableName: tables.correlation, Item: { requestId: { S: 'done' }, jobId: { S: 'job-9' } } }));
    sqs.on(ReceiveMessageCommand).resolves({ Messages: [{ MessageId: 'w1', ReceiptHandle: 'rh-1', Body: JSON.stringify(message('waiter')) }] });
    sqs.on(DeleteMessageCommand).resolves({});
    await dispatchBatch({ Records: [record(message('done'), 'm0')] }, waitingDeps(tables, fakeClock(T0)));
    expect(sqs).toHaveReceivedCommandWith(ReceiveMessageCommand, { QueueUrl: WAITING_QUEUE_URL, MaxNumberOfMessages: 1 });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: REQUEST_QUEUE_URL, MessageBody: JSON.stringify(message('waiter')) });
    expect(sqs).toHaveReceivedCommandWith(DeleteMessageCommand, { QueueUrl: WAITING_QUEUE_URL, ReceiptHandle: 'rh-1' });
  });

  test('GIVEN the jobs-in-flight variables WHEN loading the config THEN they are read, the recheck defaulting to 2 s', () => {
    const env = {
      STATE_MACHINE_ARN,
      REQUESTS_PER_SECOND: '10',
      PACER_TABLE_NAME: 'pacer',
      MAX_PACING_WAIT_MS: '1000',
      CORRELATION_TTL_SECONDS: '60',
      DEAD_LETTER_QUEUE_URL: 'dlq',
    };
    expect(loadConfig(env).jobsInFlight).toBeUndefined();
    expect(loadConfig({ ...env, MAX_JOBS_IN_FLIGHT: '5', MAX_JOB_DURATION_MS: '60000', CORRELATION_TABLE_NAME: 'corr' }).jobsInFlight)
      .toEqual({ maxJobsInFlight: 5, maxJobDurationMs: 60000, recheckMs: 2000, correlationTableName: 'corr' });
    expect(loadConfig({
      ...env, MAX_JOBS_IN_FLIGHT: '5', MAX_JOB_DURATION_MS: '60000', CORRELATION_TABLE_NAME: 'corr', JOB_PLACE_SUBMISSION_WINDOW_MS: '1000',
    }).jobsInFlight?.submissionWindowMs).toBe(1000);
    expect(() => loadConfig({ ...env, MAX_JOBS_IN_FLIGHT: '0', MAX_JOB_DURATION_MS: '60000', CORRELATION_TABLE_NAME: 'corr' }))
      .toThrow(/MAX_JOBS_IN_FLIGHT must be a whole number > 0/);
    const waitingEnv = { JOB_WAITING_QUEUE_URL: WAITING_QUEUE_URL, JOB_REQUEST_QUEUE_URL: REQUEST_QUEUE_URL };
    expect(loadConfig({ ...env, MAX_JOBS_IN_FLIGHT: '5', MAX_JOB_DURATION_MS: '60000', CORRELATION_TABLE_NAME: 'corr', ...waitingEnv }).jobsInFlight)
      .toMatchObject(WAITING);
  });
});

describe('the jobs-in-flight sweep', () => {
  function sweepDeps(tables: { pacer: string; correlation: string }, clock: FakeClock, metrics = fakeMetrics(), maxJobsInFlight = 3) {
    return { dynamodb: client, sqs: new SQSClient({}), config: waitingDeps(tables, clock, metrics, maxJobsInFlight).config, clock, logger, metrics };
  }
  const waiters = (n: number) => Array.from({ length: n }, (_, i) => ({ MessageId: `w${i}`, ReceiptHandle: `rh-${i}`, Body: JSON.stringify(message(`w${i}`)) }));

  test('GIVEN the sweep\'s tick WHEN recognised THEN only its kind matches', () => {
    expect(isJobPlacesSweep({ kind: 'JobPlacesSweep' })).toBe(true);
    expect(isJobPlacesSweep({ kind: 'ScheduledDrainTick' })).toBe(false);
    expect(isJobPlacesSweep({ Records: [] })).toBe(false);
  });

  test('GIVEN an expired place and a free one WHEN swept THEN the expired place is dropped and two waiters are moved back (long poll)', async () => {
    const tables = await freshTables();
    const table = { dynamodb: client, tableName: tables.pacer };
    await takePlace(table, 'lost-callback', 3, T0 + 1000, T0);
    await takePlace(table, 'running', 3, T0 + HOUR_MS, T0);
    const clock = fakeClock(T0 + 5000);
    const metrics = fakeMetrics();
    sqs.on(ReceiveMessageCommand).resolves({ Messages: waiters(2) });
    sqs.on(DeleteMessageCommand).resolves({});
    sqs.on(GetQueueAttributesCommand).resolves({ Attributes: { ApproximateNumberOfMessages: '5' } });

    expect(await sweepJobPlaces(sweepDeps(tables, clock, metrics))).toEqual({ placesHeld: 1, woken: 2, waiting: 5 });
    expect([...(await readPlaces(table))!.places.keys()]).toEqual([placeKey('running')]);
    expect(sqs).toHaveReceivedCommandWith(ReceiveMessageCommand, { QueueUrl: WAITING_QUEUE_URL, MaxNumberOfMessages: 2, WaitTimeSeconds: 1 });
    expect(sqs).toHaveReceivedCommandTimes(SendMessageCommand, 2);
    // Requests wait: the gauge is published, so the at-limit alarm sees every minute of waiting.
    expect(metrics.values(MetricNames.JOBS_IN_FLIGHT)).toEqual([1]);
  });

  test('GIVEN every place is held and nobody waits WHEN swept THEN nobody is woken and no gauge is published', async () => {
    const tables = await freshTables();
    const table = { dynamodb: client, tableName: tables.pacer };
    for (const id of ['a', 'b', 'c']) await takePlace(table, id, 3, T0 + HOUR_MS, T0);
    const metrics = fakeMetrics();
    sqs.on(GetQueueAttributesCommand).resolves({ Attributes: { ApproximateNumberOfMessages: '0' } });
    expect(await sweepJobPlaces(sweepDeps(tables, fakeClock(T0), metrics))).toEqual({ placesHeld: 3, woken: 0, waiting: 0 });
    expect(sqs).not.toHaveReceivedCommand(ReceiveMessageCommand);
    expect(metrics.values(MetricNames.JOBS_IN_FLIGHT)).toEqual([]);
  });

  test('GIVEN no places item yet and the depth cannot be read WHEN swept THEN all places are free and the sweep still wakes', async () => {
    const tables = await freshTables();
    sqs.on(ReceiveMessageCommand).resolves({ Messages: [] });
    sqs.on(GetQueueAttributesCommand).rejects(new Error('denied'));
    expect(await sweepJobPlaces(sweepDeps(tables, fakeClock(T0)))).toEqual({ placesHeld: 0, woken: 0 });
    expect(sqs).toHaveReceivedCommandWith(ReceiveMessageCommand, { MaxNumberOfMessages: 3 });
    expect(logger.warn).toHaveBeenCalledWith(expect.stringMatching(/could not read how many requests wait/), expect.anything());
  });

  test('GIVEN a dispatcher without the limit WHEN a sweep tick arrives THEN it fails naming the missing variable', async () => {
    const tables = await freshTables();
    const deps = sweepDeps(tables, fakeClock(T0));
    await expect(sweepJobPlaces({ ...deps, config: { ...deps.config, jobsInFlight: undefined } })).rejects.toThrow(/MAX_JOBS_IN_FLIGHT is not set/);
  });
});
