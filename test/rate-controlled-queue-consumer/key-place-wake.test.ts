/**
 * Per-key jobs in flight: when a request of a full key comes back (issue 15, design
 * docs/design/per-key-limits.md 3.3). The ticket line on `key-places#<key>` (tickets, places
 * served, mean job time), the estimate, the set-aside that uses it, and every freer advancing the
 * line. Items on the local DynamoDB (dynalite: real condition and update semantics), SQS and Step
 * Functions mocked, fake time.
 */
import { DynamoDBClient, GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { SendTaskHeartbeatCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { FakeClock, fakeClock, useLocalPacerTables } from './local-pacer-tables';
import { requestRecord } from './sqs-record';
import { freePlaceOfEndedJob } from '../../src/dispatch-workflow/ended-job';
import { freePlaceOfRefusedSubmission, freePlaceOfUnsentSubmission } from '../../src/dispatch-workflow/refused-submission';
import type { VendorCallEvent, VendorCallResult } from '../../src/dispatch-workflow/vendor-call';
import { DEAD_LETTER_QUEUE_URL_ENV, dispatchBatch, DispatchConfig, DispatchDeps, loadConfig } from '../../src/rate-controlled-queue-consumer/dispatch';
import { admitJobs } from '../../src/rate-controlled-queue-consumer/job-admission';
import { KEY_PLACE_TICKET_FIELD, keyPlaceTicketOf, setAsideForKeyPlaces } from '../../src/rate-controlled-queue-consumer/key-place-wake';
import { ConsumerEnv } from '../../src/shared/env';
import { JobPlacesTable, SUBMISSION_WINDOW_MS, takePlace } from '../../src/shared/job-places';
import type { KeyLimitsSource, KeyLimitsSpec } from '../../src/shared/key-limits';
import {
  keyPlacesTable, keyPlaceWaitMs, MEAN_JOB_MS_ATTRIBUTE, PROVISIONAL_KEY_PLACE_MS, readKeyPlaceLine, releaseKeyPlace, SERVED_TICKET_ATTRIBUTE,
  takeKeyPlaceTickets, takeKeyThenContractPlace,
} from '../../src/shared/key-places';
import type { RequestMessage } from '../../src/shared/messages';

const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_700_000_000_000;
const HOUR_MS = 3_600_000;
const SPAN_MS = HOUR_MS + SUBMISSION_WINDOW_MS;
const logger = { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() };

const local = useLocalPacerTables('kw-');
let client: DynamoDBClient;
beforeAll(() => {
  client = local.client;
});

beforeEach(() => {
  sfn.reset();
  sqs.reset();
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:exec', startDate: new Date() });
  sfn.on(SendTaskHeartbeatCommand).resolves({});
  sqs.on(SendMessageCommand).resolves({ MessageId: 'copy' });
  sqs.on(ChangeMessageVisibilityCommand).resolves({});
  sqs.on(ReceiveMessageCommand).resolves({ Messages: [] });
  sqs.on(GetQueueAttributesCommand).resolves({ Attributes: { ApproximateNumberOfMessages: '0' } });
});

const freshTables = () => local.freshTables();


function limits(maxJobsInFlight?: number): KeyLimitsSpec {
  return { requestsPerSecond: 5, ...(maxJobsInFlight !== undefined ? { maxJobsInFlight } : {}), quotas: {}, priorityAgingMs: 30_000, paused: false };
}

function message(requestId: string, key: string, extra: Record<string, unknown> = {}): RequestMessage {
  return { taskToken: `token-${requestId}`, requestId, payload: { document: requestId }, key, ...extra } as RequestMessage;
}

const contractOf = (pacer: string): JobPlacesTable => ({ dynamodb: client, tableName: pacer });

function take(pacer: string, requestId: string, key: string, keyMax: number, contractMax = 10, nowMs = T0) {
  return takeKeyThenContractPlace({
    contract: contractOf(pacer),
    requestId,
    key,
    maxJobsInFlight: contractMax,
    keyMaxJobsInFlight: keyMax,
    expiresAtMs: nowMs + SPAN_MS,
    maxJobDurationMs: HOUR_MS,
    nowMs,
  });
}

/** A number attribute of the key's places item (undefined when absent). */
async function keyNumber(pacer: string, key: string, attribute: string): Promise<number | undefined> {
  const out = await client.send(new GetItemCommand({ TableName: pacer, Key: { pk: { S: `key-places#${key}` } }, ConsistentRead: true }));
  const raw = out.Item?.[attribute]?.N;
  return raw === undefined ? undefined : Number(raw);
}

describe('the ticket line (key-places.ts)', () => {
  test('GIVEN no line yet WHEN tickets are taken THEN they start after the places served, and a line ahead of them grows by ADD', async () => {
    const { pacer } = await freshTables();
    expect(await takeKeyPlaceTickets(contractOf(pacer), 'acme', 3, SPAN_MS)).toEqual({ nextTicket: 3, servedTicket: 0, firstTicket: 1, placesHeld: 0 });
    expect(await takeKeyPlaceTickets(contractOf(pacer), 'acme', 2, SPAN_MS)).toEqual({ nextTicket: 5, servedTicket: 0, firstTicket: 4, placesHeld: 0 });
    expect(await readKeyPlaceLine(contractOf(pacer), 'acme')).toEqual({ nextTicket: 5, servedTicket: 0 });
  });

  test('GIVEN more places freed than tickets taken (the line emptied) WHEN tickets are taken THEN the line restarts right after the places served', async () => {
    const { pacer } = await freshTables();
    await takeKeyPlaceTickets(contractOf(pacer), 'acme', 1, SPAN_MS);
    for (const id of ['a', 'b', 'c']) {
      await take(pacer, id, 'acme', 5);
      await releaseKeyPlace(contractOf(pacer), 'acme', id, T0 + 1000);
    }
    expect(await takeKeyPlaceTickets(contractOf(pacer), 'acme', 2, SPAN_MS)).toEqual(expect.objectContaining({ nextTicket: 5, servedTicket: 3, firstTicket: 4 }));
  });

  test('GIVEN a ticket taken WHEN the key\'s places are freed THEN each release advances servedTicket once, and the mean job time is an EWMA of the holds', async () => {
    const { pacer } = await freshTables();
    await takeKeyPlaceTickets(contractOf(pacer), 'acme', 1, SPAN_MS);
    await take(pacer, 'r1', 'acme', 2);
    await take(pacer, 'r2', 'acme', 2);
    await releaseKeyPlace(contractOf(pacer), 'acme', 'r1', T0 + 4000);
    expect(await keyNumber(pacer, 'acme', SERVED_TICKET_ATTRIBUTE)).toBe(1);
    expect(await keyNumber(pacer, 'acme', MEAN_JOB_MS_ATTRIBUTE)).toBe(4000);
    await releaseKeyPlace(contractOf(pacer), 'acme', 'r2', T0 + 8000);
    // 4000 + 0.25 * (8000 - 4000)
    expect(await keyNumber(pacer, 'acme', MEAN_JOB_MS_ATTRIBUTE)).toBe(5000);
    // A duplicate release frees nothing and counts nothing.
    expect(await releaseKeyPlace(contractOf(pacer), 'acme', 'r2', T0 + 9000)).toBeUndefined();
    expect(await keyNumber(pacer, 'acme', SERVED_TICKET_ATTRIBUTE)).toBe(2);
    expect(await keyNumber(pacer, 'acme', MEAN_JOB_MS_ATTRIBUTE)).toBe(5000);
  });

  test('GIVEN no ticket ever taken for the key WHEN a place is freed THEN servedTicket advances but no mean is kept (no span known; the release stays one write)', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'r1', 'acme', 2);
    await releaseKeyPlace(contractOf(pacer), 'acme', 'r1', T0 + 4000);
    expect(await keyNumber(pacer, 'acme', SERVED_TICKET_ATTRIBUTE)).toBe(1);
    expect(await keyNumber(pacer, 'acme', MEAN_JOB_MS_ATTRIBUTE)).toBeUndefined();
  });

  test('GIVEN a key place expired WHEN a take drops it THEN servedTicket advances (an expiry frees a place too)', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'lost', 'acme', 1);
    expect(await take(pacer, 'next', 'acme', 1, 10, T0 + SPAN_MS + 1)).toEqual(expect.objectContaining({ result: 'taken' }));
    expect(await keyNumber(pacer, 'acme', SERVED_TICKET_ATTRIBUTE)).toBe(1);
  });

  test('GIVEN the contract full WHEN the key\'s provisional place is given back THEN servedTicket does not advance (the key had room: nobody waited for that place)', async () => {
    const { pacer } = await freshTables();
    await takePlace(contractOf(pacer), 'other', 1, T0 + SPAN_MS, T0);
    expect(await take(pacer, 'r1', 'acme', 2, 1)).toEqual(expect.objectContaining({ result: 'full' }));
    expect(await keyNumber(pacer, 'acme', SERVED_TICKET_ATTRIBUTE)).toBeUndefined();
  });

  test('GIVEN tickets and a mean WHEN the wait is estimated THEN half of: the frees before its own x mean / places; at least the recheck, at most 900 s; the recheck without a mean, next in line or once the turn has come', () => {
    const line = { nextTicket: 20, servedTicket: 4, meanJobMs: 4000 };
    // 6 frees to its turn: 5 before it, 2 s apart: 10 s, half of it.
    expect(keyPlaceWaitMs(10, line, 2, 2000)).toBe(5_000);
    expect(keyPlaceWaitMs(5, line, 4, 2000)).toBe(2000);
    expect(keyPlaceWaitMs(4, line, 2, 2000)).toBe(2000);
    expect(keyPlaceWaitMs(3, line, 2, 2000)).toBe(2000);
    expect(keyPlaceWaitMs(10, { nextTicket: 20, servedTicket: 4 }, 2, 2000)).toBe(2000);
    expect(keyPlaceWaitMs(1_000_004, line, 2, 2000)).toBe(900_000);
  });

  test('GIVEN a provisional entry freed (a crash between take and renewal, then a release) WHEN the hold reads as impossible THEN no sample is taken', async () => {
    const { pacer } = await freshTables();
    await takeKeyPlaceTickets(contractOf(pacer), 'acme', 1, SPAN_MS);
    // The key's take alone, as a dispatcher that crashed before the contract's take left it.
    await takePlace(keyPlacesTable(contractOf(pacer), 'acme', HOUR_MS), 'r1', 2, T0 + PROVISIONAL_KEY_PLACE_MS, T0);
    await releaseKeyPlace(contractOf(pacer), 'acme', 'r1', T0 + 1000);
    expect(await keyNumber(pacer, 'acme', SERVED_TICKET_ATTRIBUTE)).toBe(1);
    expect(await keyNumber(pacer, 'acme', MEAN_JOB_MS_ATTRIBUTE)).toBeUndefined();
  });
});

describe('new requests queue behind the key\'s line (BEHIND_THE_LINE)', () => {
  function takeAs(pacer: string, requestId: string, behindLine: boolean) {
    return takeKeyThenContractPlace({
      contract: contractOf(pacer),
      requestId,
      key: 'acme',
      maxJobsInFlight: 10,
      keyMaxJobsInFlight: 2,
      expiresAtMs: T0 + SPAN_MS,
      maxJobDurationMs: HOUR_MS,
      nowMs: T0,
      behindLine,
    });
  }

  test('GIVEN a place of the key free while requests wait in its line WHEN a new request takes THEN it is keyFull (it joins the line), and a request with a ticket takes the place', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'r1', 'acme', 2);
    await take(pacer, 'r2', 'acme', 2);
    await takeKeyPlaceTickets(contractOf(pacer), 'acme', 1, SPAN_MS);
    await releaseKeyPlace(contractOf(pacer), 'acme', 'r1', T0 + 4000);
    // next 1, served 1: the line is consumed; a second ticket holder waits: next 2.
    await takeKeyPlaceTickets(contractOf(pacer), 'acme', 1, SPAN_MS);
    expect(await takeAs(pacer, 'new', true)).toEqual(expect.objectContaining({ result: 'keyFull', keyPlacesHeld: 1 }));
    expect(await takeAs(pacer, 'ticketed', false)).toEqual(expect.objectContaining({ result: 'taken' }));
  });

  test('GIVEN the line empty (every ticket served) WHEN a new request takes THEN it takes the free place', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'r1', 'acme', 2);
    await takeKeyPlaceTickets(contractOf(pacer), 'acme', 1, SPAN_MS);
    await releaseKeyPlace(contractOf(pacer), 'acme', 'r1', T0 + 4000);
    expect(await takeAs(pacer, 'new', true)).toEqual(expect.objectContaining({ result: 'taken' }));
  });

  test('GIVEN no line ever WHEN a new request takes THEN it takes a free place as before', async () => {
    const { pacer } = await freshTables();
    expect(await takeAs(pacer, 'new', true)).toEqual(expect.objectContaining({ result: 'taken' }));
  });

  test('GIVEN a request already holding its place WHEN it takes again behind a line THEN it is renewed (held), not sent to the line', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'mine', 'acme', 2);
    await takeKeyPlaceTickets(contractOf(pacer), 'acme', 3, SPAN_MS);
    expect(await takeAs(pacer, 'mine', true)).toEqual(expect.objectContaining({ result: 'held' }));
  });

  test('GIVEN orphaned tickets (their requests never came back) and no place of the key held WHEN a new request takes THEN it takes a free place at once and the line is restarted', async () => {
    const { pacer } = await freshTables();
    // Tickets 1-4 taken while both places were held; both released (served 2); the requests of
    // tickets 3 and 4 never come back (their copies could not be sent; the originals took others).
    await take(pacer, 'r1', 'acme', 2);
    await take(pacer, 'r2', 'acme', 2);
    await takeKeyPlaceTickets(contractOf(pacer), 'acme', 4, SPAN_MS);
    await releaseKeyPlace(contractOf(pacer), 'acme', 'r1', T0 + 4000);
    await releaseKeyPlace(contractOf(pacer), 'acme', 'r2', T0 + 4000);
    expect(await takeAs(pacer, 'new', true)).toEqual(expect.objectContaining({ result: 'taken' }));
    expect(await readKeyPlaceLine(contractOf(pacer), 'acme')).toEqual(expect.objectContaining({ nextTicket: 4, servedTicket: 4 }));
    expect(await keyNumber(pacer, 'acme', 'placesHeld')).toBe(1);
  });

  test.each([
    ['a request with a ticket took the key\'s only place', (pacer: string) => take(pacer, 'rival', 'acme', 1)],
    ['another new request restarted the line and took the key\'s only place', (pacer: string) => takeKeyThenContractPlace({
      contract: contractOf(pacer),
      requestId: 'rival',
      key: 'acme',
      maxJobsInFlight: 10,
      keyMaxJobsInFlight: 1,
      expiresAtMs: T0 + SPAN_MS,
      maxJobDurationMs: HOUR_MS,
      nowMs: T0,
      behindLine: true,
    })],
  ])('GIVEN orphaned tickets and no place held WHEN the restart\'s condition is lost (%s) THEN the new request is keyFull and the key holds no place over its limit', async (_, meanwhile) => {
    const { pacer } = await freshTables();
    await takeKeyPlaceTickets(contractOf(pacer), 'acme', 3, SPAN_MS);
    let interleaved = false;
    const racing = {
      send: async (command: unknown) => {
        if (!interleaved && command instanceof UpdateItemCommand && command.input.UpdateExpression === 'SET #served = #next') {
          interleaved = true;
          expect(await meanwhile(pacer)).toEqual(expect.objectContaining({ result: 'taken' }));
        }
        return client.send(command as never);
      },
    } as unknown as DynamoDBClient;
    const outcome = await takeKeyThenContractPlace({
      contract: { dynamodb: racing, tableName: pacer },
      requestId: 'new',
      key: 'acme',
      maxJobsInFlight: 10,
      keyMaxJobsInFlight: 1,
      expiresAtMs: T0 + SPAN_MS,
      maxJobDurationMs: HOUR_MS,
      nowMs: T0,
      behindLine: true,
    });
    expect(interleaved).toBe(true);
    expect(outcome).toEqual({ result: 'keyFull', keyPlacesHeld: 1 });
    expect(await keyNumber(pacer, 'acme', 'placesHeld')).toBe(1);
    // The contract's places: the rival's only (none taken for the refused request).
    const contract = await client.send(new GetItemCommand({ TableName: pacer, Key: { pk: { S: 'job-places' } }, ConsistentRead: true }));
    expect(Object.keys(contract.Item?.places?.M ?? {})).toHaveLength(1);
  });

  test('GIVEN the ticket line on WHEN admitJobs takes a key place THEN a request without a ticket is held behind the line, one with a ticket is not', async () => {
    const tables = await freshTables();
    await take(tables.pacer, 'r1', 'acme', 2);
    await takeKeyPlaceTickets(contractOf(tables.pacer), 'acme', 2, SPAN_MS);
    const admit = (keyPlaceTickets?: boolean) => admitJobs([
      { message: message('new', 'acme'), keyLimits: limits(2) },
      { message: message('back', 'acme', { [KEY_PLACE_TICKET_FIELD]: 1 }), keyLimits: limits(2) },
    ], {
      dynamodb: client,
      sfn: new SFNClient({}),
      pacerTableName: tables.pacer,
      config: {
        maxJobsInFlight: 10,
        maxJobDurationMs: HOUR_MS,
        recheckMs: 2000,
        correlationTableName: tables.correlation,
        ...(keyPlaceTickets === undefined ? {} : { keyPlaceTickets }),
      },
      clock: fakeClock(T0),
      logger,
      metrics: { addMetric: jest.fn() },
    });
    const on = await admit();
    expect([on.admitted.map((i) => i.message.requestId), on.keyFull.map((i) => i.message.requestId)]).toEqual([['back'], ['new']]);
  });

  test('GIVEN the ticket line off WHEN admitJobs takes THEN a new request takes a free place whatever the line', async () => {
    const tables = await freshTables();
    await takeKeyPlaceTickets(contractOf(tables.pacer), 'acme', 2, SPAN_MS);
    const off = await admitJobs([{ message: message('new', 'acme'), keyLimits: limits(2) }], {
      dynamodb: client,
      sfn: new SFNClient({}),
      pacerTableName: tables.pacer,
      config: { maxJobsInFlight: 10, maxJobDurationMs: HOUR_MS, recheckMs: 2000, correlationTableName: tables.correlation, keyPlaceTickets: false },
      clock: fakeClock(T0),
      logger,
      metrics: { addMetric: jest.fn() },
    });
    expect(off.admitted.map((i) => i.message.requestId)).toEqual(['new']);
  });
});

describe('setAsideForKeyPlaces (key-place-wake.ts)', () => {
  type Call = { message: RequestMessage; keyLimits: KeyLimitsSpec; id: string };
  const call = (id: string, key: string, keyMax: number, ticket?: number): Call => ({
    id, message: message(id, key, ticket === undefined ? {} : { [KEY_PLACE_TICKET_FIELD]: ticket }), keyLimits: limits(keyMax),
  });
  function wakeDeps(contract: JobPlacesTable, sent: Array<[string, number, number | undefined]>) {
    return {
      contract,
      placeSpanMs: SPAN_MS,
      recheckMs: 2000,
      send: async (item: Call, delaySeconds: number, ticket: number | undefined) => {
        sent.push([item.id, delaySeconds, ticket]);
        return undefined;
      },
      onLineError: jest.fn(),
    };
  }

  test('GIVEN a key at its places with a line and a mean WHEN new requests are set aside THEN each takes the next ticket and returns on its estimate; a request back with a ticket keeps it', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'p1', 'hot', 2);
    await take(pacer, 'p2', 'hot', 2);
    await takeKeyPlaceTickets(contractOf(pacer), 'hot', 6, SPAN_MS);
    await client.send(new UpdateItemCommand({
      TableName: pacer,
      Key: { pk: { S: 'key-places#hot' } },
      UpdateExpression: 'SET meanJobMs = :m, servedTicket = :s',
      ExpressionAttributeValues: { ':m': { N: '4000' }, ':s': { N: '2' } },
    }));
    const sent: Array<[string, number, number | undefined]> = [];
    // 2 places, 4 s a job: one place frees every 2 s; ticket 7 waits for 5 frees, 4 before its own: 8 s, back after half.
    await setAsideForKeyPlaces([call('n1', 'hot', 2), call('n2', 'hot', 2), call('back', 'hot', 2, 3)], wakeDeps(contractOf(pacer), sent));
    expect(sent).toEqual([['n1', 4, 7], ['n2', 5, 8], ['back', 2, 3]]);
  });

  test('GIVEN a line of 20 orphaned tickets and one of the key\'s 2 places free WHEN a new request is set aside THEN it rechecks (2 s), not after the orphans\' 20 s; a request back with a ticket keeps its estimate', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'p1', 'hot', 2);
    await takeKeyPlaceTickets(contractOf(pacer), 'hot', 20, SPAN_MS);
    await client.send(new UpdateItemCommand({
      TableName: pacer, Key: { pk: { S: 'key-places#hot' } }, UpdateExpression: 'SET meanJobMs = :m', ExpressionAttributeValues: { ':m': { N: '4000' } },
    }));
    const sent: Array<[string, number, number | undefined]> = [];
    // Ticket 21, 20 ahead: half of 20 x 4 s / 2 = 20 s were it not for the free place; ticket 11: half of 10 x 4 s / 2.
    await setAsideForKeyPlaces([call('new', 'hot', 2), call('back', 'hot', 2, 11)], wakeDeps(contractOf(pacer), sent));
    expect(sent).toEqual([['new', 2, 21], ['back', 10, 11]]);
  });

  test('GIVEN only requests back with tickets WHEN set aside THEN the line is read (no ticket taken) and their turns are kept', async () => {
    const { pacer } = await freshTables();
    await takeKeyPlaceTickets(contractOf(pacer), 'hot', 6, SPAN_MS);
    await client.send(new UpdateItemCommand({
      TableName: pacer, Key: { pk: { S: 'key-places#hot' } }, UpdateExpression: 'SET meanJobMs = :m', ExpressionAttributeValues: { ':m': { N: '3000' } },
    }));
    const sent: Array<[string, number, number | undefined]> = [];
    await setAsideForKeyPlaces([call('b6', 'hot', 1, 6)], wakeDeps(contractOf(pacer), sent));
    expect(sent).toEqual([['b6', 7, 6]]);
    expect((await readKeyPlaceLine(contractOf(pacer), 'hot'))?.nextTicket).toBe(6);
  });

  test('GIVEN the ticket write fails WHEN set aside THEN the key\'s requests recheck as before (2 s, no ticket) and the error is reported', async () => {
    const { pacer } = await freshTables();
    const failing = { send: async () => { throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }); } } as unknown as DynamoDBClient;
    const sent: Array<[string, number, number | undefined]> = [];
    const deps = wakeDeps({ dynamodb: failing, tableName: pacer }, sent);
    await setAsideForKeyPlaces([call('n1', 'hot', 2), call('back', 'hot', 2, 9)], deps);
    expect(sent).toEqual([['n1', 2, undefined], ['back', 2, 9]]);
    expect(deps.onLineError).toHaveBeenCalledWith('hot', expect.objectContaining({ name: 'ThrottlingException' }));
  });

  test('GIVEN both ticket writes lose their race WHEN set aside THEN the requests recheck without a ticket', async () => {
    const { pacer } = await freshTables();
    const losing = {
      send: async (command: unknown) => {
        if (command instanceof UpdateItemCommand) throw Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });
        return client.send(command as never);
      },
    } as unknown as DynamoDBClient;
    const sent: Array<[string, number, number | undefined]> = [];
    await setAsideForKeyPlaces([call('n1', 'hot', 2)], wakeDeps({ dynamodb: losing, tableName: pacer }, sent));
    expect(sent).toEqual([['n1', 2, undefined]]);
  });

  test('GIVEN a body field WHEN read as a ticket THEN only a whole number counts', () => {
    expect(keyPlaceTicketOf({ message: { [KEY_PLACE_TICKET_FIELD]: 4 } })).toBe(4);
    expect(keyPlaceTicketOf({ message: { [KEY_PLACE_TICKET_FIELD]: '4' } })).toBeUndefined();
    expect(keyPlaceTicketOf({ message: { [KEY_PLACE_TICKET_FIELD]: 1.5 } })).toBeUndefined();
    expect(keyPlaceTicketOf({ message: {} })).toBeUndefined();
  });
});

describe('dispatchBatch sets a full key\'s requests aside on their ticket', () => {
  function deps(tables: { pacer: string; correlation: string }, clock: FakeClock, keyPlaceTickets?: boolean): DispatchDeps {
    const config: DispatchConfig = {
      stateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:dispatch',
      requestsPerSecond: 10,
      pacerTableName: tables.pacer,
      maxPacingWaitMs: 2_000,
      latenessToleranceMs: 49,
      correlationTtlSeconds: 86_400,
      deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/dlq',
      jobsInFlight: {
        maxJobsInFlight: 10,
        maxJobDurationMs: HOUR_MS,
        recheckMs: 2000,
        correlationTableName: tables.correlation,
        ...(keyPlaceTickets === undefined ? {} : { keyPlaceTickets }),
      },
    };
    const keyLimits: KeyLimitsSource = { limitsFor: async (keys) => new Map(keys.map((key) => [key, limits(2)])) };
    const clients = { dynamodb: client, sfn: new SFNClient({}), sqs: new SQSClient({}) };
    return { clients, config, logger, metrics: { addMetric: jest.fn() }, clock, random: () => 0.5, keyLimits };
  }

  /** The hot key at its 2 places, 4 s a job, 3 requests already in its line (tickets 1-3, none served). */
  async function hotKeyWithLine(pacer: string): Promise<void> {
    await take(pacer, 'p1', 'hot', 2);
    await take(pacer, 'p2', 'hot', 2);
    await takeKeyPlaceTickets(contractOf(pacer), 'hot', 3, SPAN_MS);
    await client.send(new UpdateItemCommand({
      TableName: pacer, Key: { pk: { S: 'key-places#hot' } }, UpdateExpression: 'SET meanJobMs = :m', ExpressionAttributeValues: { ':m': { N: '4000' } },
    }));
  }

  test('GIVEN a key at its places with 3 ahead in line WHEN its request arrives THEN the copy carries ticket 4 and returns after half of (4 - 1) x 4 s / 2 = 3 s, not the 2 s recheck', async () => {
    const tables = await freshTables();
    await hotKeyWithLine(tables.pacer);
    const result = await dispatchBatch({ Records: [requestRecord(message('h9', 'hot'), 'm0', T0)] }, deps(tables, fakeClock(T0)));
    expect(result.batchItemFailures).toEqual([]);
    const sends = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
    expect(sends.map((s) => [JSON.parse(s.MessageBody!).requestId, JSON.parse(s.MessageBody!)[KEY_PLACE_TICKET_FIELD], s.DelaySeconds])).toEqual([['h9', 4, 3]]);
  });

  test('GIVEN the ticket line off (KEY_PLACE_TICKETS=off) WHEN the request arrives THEN it rechecks after 2 s without a ticket (the benchmark\'s baseline)', async () => {
    const tables = await freshTables();
    await hotKeyWithLine(tables.pacer);
    await dispatchBatch({ Records: [requestRecord(message('h9', 'hot'), 'm0', T0)] }, deps(tables, fakeClock(T0), false));
    const sends = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
    expect(sends.map((s) => [JSON.parse(s.MessageBody!)[KEY_PLACE_TICKET_FIELD], s.DelaySeconds])).toEqual([[undefined, 2]]);
    expect((await readKeyPlaceLine(contractOf(tables.pacer), 'hot'))?.nextTicket).toBe(3);
  });

  test('GIVEN the copy cannot be sent WHEN set aside THEN the message is hidden for its wait and stays on the queue', async () => {
    const tables = await freshTables();
    await hotKeyWithLine(tables.pacer);
    sqs.on(SendMessageCommand).rejects(Object.assign(new Error('down'), { name: 'InternalError' }));
    const result = await dispatchBatch({ Records: [requestRecord(message('h9', 'hot'), 'm0', T0)] }, deps(tables, fakeClock(T0)));
    expect(result.batchItemFailures).toEqual([{ itemIdentifier: 'm0' }]);
    expect(sqs).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, { VisibilityTimeout: 3 });
  });

  test('GIVEN KEY_PLACE_TICKETS WHEN loading the config THEN only \'off\' turns the line off', () => {
    const env = {
      [ConsumerEnv.STATE_MACHINE_ARN]: 'arn:aws:states:eu-west-1:123456789012:stateMachine:dispatch',
      [ConsumerEnv.REQUESTS_PER_SECOND]: '10',
      [ConsumerEnv.PACER_TABLE_NAME]: 'pacer',
      [ConsumerEnv.MAX_PACING_WAIT_MS]: '2000',
      [ConsumerEnv.CORRELATION_TTL_SECONDS]: '86400',
      [ConsumerEnv.MAX_JOBS_IN_FLIGHT]: '5',
      [ConsumerEnv.MAX_JOB_DURATION_MS]: '60000',
      [ConsumerEnv.CORRELATION_TABLE_NAME]: 'correlation',
      [DEAD_LETTER_QUEUE_URL_ENV]: 'https://sqs.eu-west-1.amazonaws.com/123456789012/dlq',
    };
    expect(loadConfig(env).jobsInFlight?.keyPlaceTickets).toBeUndefined();
    expect(loadConfig({ ...env, [ConsumerEnv.KEY_PLACE_TICKETS]: 'off' }).jobsInFlight?.keyPlaceTickets).toBe(false);
    expect(loadConfig({ ...env, [ConsumerEnv.KEY_PLACE_TICKETS]: 'on' }).jobsInFlight?.keyPlaceTickets).toBeUndefined();
  });
});

describe('every freer of a key\'s place advances its line', () => {
  const answer = (statusCode: number | null): VendorCallResult => ({ statusCode, body: null, headers: null, requeue: null });
  const placeDeps = (pacer: string) => ({ dynamodb: client, jobPlacesTableName: pacer, logger, metrics: { addMetric: jest.fn() } });
  const submission = (requestId: string, extra: Partial<VendorCallEvent> = {}): VendorCallEvent => ({
    method: 'POST', headers: {}, body: {}, requestId, slotAtMs: 1, key: 'acme', keyLimits: limits(2), ...extra,
  });

  test.each([
    ['a submission refused with 400 (retry-or-give-up)', (pacer: string) => freePlaceOfRefusedSubmission(submission('r1'), answer(400), placeDeps(pacer))],
    ['a submission given up unsent', (pacer: string) => freePlaceOfUnsentSubmission(
      submission('r1'), Object.assign(new Error('spent'), { name: 'VendorQuotaExhausted' }), placeDeps(pacer))],
    ['a cancel of the key\'s job answered 2xx', (pacer: string) => freePlaceOfEndedJob(
      { ...submission('cancel-1'), path: 'jobs/1/cancel', query: null, endsJobOf: 'r1' } as unknown as VendorCallEvent, answer(200), placeDeps(pacer))],
  ])('GIVEN %s WHEN freed THEN servedTicket advances by one', async (_, free) => {
    const { pacer } = await freshTables();
    await take(pacer, 'r1', 'acme', 2);
    await free(pacer);
    expect(await keyNumber(pacer, 'acme', SERVED_TICKET_ATTRIBUTE)).toBe(1);
  });

  test('GIVEN a redelivered request whose job was already submitted WHEN the dispatcher gives its places back THEN servedTicket advances', async () => {
    const tables = await freshTables();
    await client.send(new PutItemCommand({ TableName: tables.correlation, Item: { requestId: { S: 'done' }, jobId: { S: 'job-9' } } }));
    await admitJobs([{ message: message('done', 'acme'), keyLimits: limits(1) }], {
      dynamodb: client,
      sfn: new SFNClient({}),
      pacerTableName: tables.pacer,
      config: { maxJobsInFlight: 10, maxJobDurationMs: HOUR_MS, recheckMs: 2000, correlationTableName: tables.correlation },
      clock: fakeClock(T0),
      logger,
      metrics: { addMetric: jest.fn() },
    });
    expect(await keyNumber(tables.pacer, 'acme', SERVED_TICKET_ATTRIBUTE)).toBe(1);
  });
});
