/**
 * Per-key jobs in flight (issue 15, design docs/design/per-key-limits.md 1.4): the key's place
 * (`key-places#<key>`, provisional) before the contract's, renewed or given back; a full key set
 * aside without touching the contract's item or other keys; every freer releasing both. And the
 * per-key quota counters (1.5) on the same local table. The items on the local DynamoDB (dynalite:
 * real condition semantics, BatchGetItem), Step Functions and SQS mocked, fake time.
 */
import { DynamoDBClient, GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { SendTaskHeartbeatCommand, SFNClient, StartExecutionCommand, StartExecutionCommandInput } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { FakeClock, fakeClock, useLocalPacerTables } from './local-pacer-tables';
import { requestRecord } from './sqs-record';
import { keyQuotaCounterKey } from '../../src/contract/key-quota-ledger';
import { keyQuotasSpentUntil, QUOTA_BOUNDARY_GUARD_MS, spendQuotaUnits } from '../../src/contract/quota-ledger';
import { QuotaSpec } from '../../src/contract/quota-period';
import { freePlaceOfEndedJob } from '../../src/dispatch-workflow/ended-job';
import { freePlaceOfRefusedSubmission, freePlaceOfUnsentSubmission } from '../../src/dispatch-workflow/refused-submission';
import type { VendorCallEvent, VendorCallResult } from '../../src/dispatch-workflow/vendor-call';
import { dispatchBatch, DispatchConfig, DispatchDeps } from '../../src/rate-controlled-queue-consumer/dispatch';
import { admitJobs, AdmissionDeps } from '../../src/rate-controlled-queue-consumer/job-admission';
import { PACER_TTL_ATTRIBUTE } from '../../src/rate-controlled-queue-consumer/pacer';
import { JobPlacesTable, placeKey, readPlaces, SUBMISSION_WINDOW_MS, takePlace } from '../../src/shared/job-places';
import { KeyLimitsSource, KeyLimitsSpec } from '../../src/shared/key-limits';
import { keyPlacesTable, PROVISIONAL_KEY_PLACE_MS, releaseKeyPlace, takeKeyThenContractPlace } from '../../src/shared/key-places';
import { RequestMessage } from '../../src/shared/messages';

const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_700_000_000_000;
const HOUR_MS = 3_600_000;
const FULL = T0 + HOUR_MS + SUBMISSION_WINDOW_MS;
const logger = { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() };

const local = useLocalPacerTables('kp-');
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

function message(requestId: string, key?: string): RequestMessage {
  return { taskToken: `token-${requestId}`, requestId, payload: { document: requestId }, ...(key !== undefined ? { key } : {}) };
}

/** Places held in an item (0 when it does not exist). */
async function held(table: JobPlacesTable): Promise<number> {
  return (await readPlaces(table))?.held ?? 0;
}

const contractOf = (pacer: string): JobPlacesTable => ({ dynamodb: client, tableName: pacer });
const keyOf = (pacer: string, key: string): JobPlacesTable => keyPlacesTable(contractOf(pacer), key);

function take(pacer: string, requestId: string, key: string, keyMax: number, contractMax: number, nowMs = T0) {
  return takeKeyThenContractPlace({
    contract: contractOf(pacer),
    requestId,
    key,
    maxJobsInFlight: contractMax,
    keyMaxJobsInFlight: keyMax,
    expiresAtMs: nowMs + HOUR_MS + SUBMISSION_WINDOW_MS,
    maxJobDurationMs: HOUR_MS,
    nowMs,
  });
}

describe('takeKeyThenContractPlace', () => {
  test('GIVEN both free WHEN taking THEN the key\'s place is renewed to the full expiry, the contract\'s taken, and the key item gets a TTL past the longest hold', async () => {
    const { pacer } = await freshTables();
    expect(await take(pacer, 'r1', 'acme', 2, 10)).toEqual({ result: 'taken', placesHeld: 1, expiresAtMs: FULL });
    expect((await readPlaces(keyOf(pacer, 'acme')))!.places.get(placeKey('r1'))).toBe(FULL);
    expect((await readPlaces(contractOf(pacer)))!.places.get(placeKey('r1'))).toBe(FULL);
    const item = await client.send(new GetItemCommand({ TableName: pacer, Key: { pk: { S: 'key-places#acme' } }, ConsistentRead: true }));
    expect(Number(item.Item![PACER_TTL_ATTRIBUTE].N)).toBe(Math.ceil((FULL + 86_400_000) / 1000));
    // The contract's item never expires.
    const contract = await client.send(new GetItemCommand({ TableName: pacer, Key: { pk: { S: 'job-places' } }, ConsistentRead: true }));
    expect(contract.Item![PACER_TTL_ATTRIBUTE]).toBeUndefined();
  });

  test('GIVEN the key full and the contract free WHEN taking THEN keyFull, and the contract\'s item is not written', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'r1', 'acme', 1, 10);
    const before = await readPlaces(contractOf(pacer));
    expect(await take(pacer, 'r2', 'acme', 1, 10)).toEqual({ result: 'keyFull', keyPlacesHeld: 1 });
    expect(await readPlaces(contractOf(pacer))).toEqual(before);
  });

  test('GIVEN the key free and the contract full WHEN taking THEN full, and the key\'s provisional place is given back', async () => {
    const { pacer } = await freshTables();
    await takePlace(contractOf(pacer), 'other', 1, FULL, T0);
    expect((await take(pacer, 'r1', 'acme', 2, 1)).result).toBe('full');
    expect(await held(keyOf(pacer, 'acme'))).toBe(0);
  });

  test('GIVEN a dispatcher crashed between the key\'s take and its renewal WHEN the key is full THEN the provisional place counts until it expires, then is dropped and taken', async () => {
    const { pacer } = await freshTables();
    // The crash: only step 1 happened (provisional expiry), no contract place.
    await takePlace(keyOf(pacer, 'acme'), 'crashed', 1, T0 + PROVISIONAL_KEY_PLACE_MS, T0);
    expect(await held(contractOf(pacer))).toBe(0);
    expect((await take(pacer, 'next', 'acme', 1, 10, T0 + PROVISIONAL_KEY_PLACE_MS - 1)).result).toBe('keyFull');
    expect((await take(pacer, 'next', 'acme', 1, 10, T0 + PROVISIONAL_KEY_PLACE_MS)).result).toBe('taken');
    expect([...(await readPlaces(keyOf(pacer, 'acme')))!.places.keys()]).toEqual([placeKey('next')]);
  });

  test('GIVEN a key at its limit WHEN another key takes THEN it gets its place (keys are apart)', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'hot-1', 'hot', 1, 10);
    expect((await take(pacer, 'hot-2', 'hot', 1, 10)).result).toBe('keyFull');
    expect((await take(pacer, 'quiet-1', 'quiet', 1, 10)).result).toBe('taken');
    expect(await held(contractOf(pacer))).toBe(2);
  });

  test('GIVEN a request holding both places (a redelivered copy) WHEN it takes again THEN held, both renewed, nothing counted twice', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'r1', 'acme', 1, 1);
    const later = T0 + 10_000;
    expect(await take(pacer, 'r1', 'acme', 1, 1, later)).toEqual({ result: 'held', placesHeld: 1, expiresAtMs: FULL + 10_000 });
    expect((await readPlaces(keyOf(pacer, 'acme')))!.places.get(placeKey('r1'))).toBe(FULL + 10_000);
    expect(await held(keyOf(pacer, 'acme'))).toBe(1);
  });

  /** A DynamoDB client that runs `meanwhile` right after the contract's take (between the key's take and its renewal). */
  function interleaved(meanwhile: () => Promise<unknown>): DynamoDBClient {
    return {
      send: async (command: { input: { Key?: { pk?: { S?: string } }; UpdateExpression?: string } }) => {
        const out = await client.send(command as never);
        if (command.input.Key?.pk?.S === 'job-places' && command.input.UpdateExpression?.startsWith('SET #places.#k = :exp')) {
          await meanwhile();
        }
        return out;
      },
    } as unknown as DynamoDBClient;
  }
  const takeWith = (dynamodb: DynamoDBClient, pacer: string) => takeKeyThenContractPlace({
    contract: { dynamodb, tableName: pacer },
    requestId: 'r1',
    key: 'acme',
    maxJobsInFlight: 10,
    keyMaxJobsInFlight: 1,
    expiresAtMs: FULL,
    maxJobDurationMs: HOUR_MS,
    nowMs: T0,
  });

  test('GIVEN the provisional key place lapsed and the key filled before the renewal WHEN taking THEN the contract\'s place is given back and the key is full', async () => {
    const { pacer } = await freshTables();
    const lapsing = interleaved(async () => {
      await releaseKeyPlace(contractOf(pacer), 'acme', 'r1');
      await takePlace(keyOf(pacer, 'acme'), 'other', 1, FULL, T0);
    });
    expect((await takeWith(lapsing, pacer)).result).toBe('keyFull');
    expect(await held(contractOf(pacer))).toBe(0);
    expect([...(await readPlaces(keyOf(pacer, 'acme')))!.places.keys()]).toEqual([placeKey('other')]);
  });

  test('GIVEN a duplicate copy of the request renewed the key place before our renewal WHEN taking THEN it is still ours: both places held, nothing given back', async () => {
    const { pacer } = await freshTables();
    const duplicate = interleaved(() => take(pacer, 'r1', 'acme', 1, 10, T0 + 5));
    expect((await takeWith(duplicate, pacer)).result).toBe('taken');
    expect(await held(contractOf(pacer))).toBe(1);
    expect((await readPlaces(keyOf(pacer, 'acme')))!.places.get(placeKey('r1'))).toBe(FULL + 5);
  });

  test('GIVEN a key whose item exists WHEN a job takes its places and is freed THEN the key\'s item costs 3 writes and no read (docs/cost.md)', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'first', 'acme', 2, 10);
    await releaseKeyPlace(contractOf(pacer), 'acme', 'first');
    const calls: string[] = [];
    const counting = {
      send: async (command: { input: { Key?: { pk?: { S?: string } } } }) => {
        if (command.input.Key?.pk?.S === 'key-places#acme') {
          calls.push(command.constructor.name);
        }
        return client.send(command as never);
      },
    } as unknown as DynamoDBClient;
    await takeKeyThenContractPlace({
      contract: { dynamodb: counting, tableName: pacer },
      requestId: 'r2',
      key: 'acme',
      maxJobsInFlight: 10,
      keyMaxJobsInFlight: 2,
      expiresAtMs: FULL,
      maxJobDurationMs: HOUR_MS,
      nowMs: T0,
    });
    await releaseKeyPlace({ dynamodb: counting, tableName: pacer }, 'acme', 'r2');
    // The provisional take, the renewal, the release.
    expect(calls).toEqual(['UpdateItemCommand', 'UpdateItemCommand', 'UpdateItemCommand']);
  });

  test('GIVEN a key containing # WHEN its item is named THEN the key is the last component', () => {
    expect(keyPlacesTable(contractOf('p'), 'a#b').itemKey).toBe('key-places#a#b');
  });
});

describe('admitJobs with per-key places', () => {
  function admissionDeps(tables: { pacer: string; correlation: string }, maxJobsInFlight = 10): AdmissionDeps {
    return {
      dynamodb: client,
      sfn: new SFNClient({}),
      pacerTableName: tables.pacer,
      config: { maxJobsInFlight, maxJobDurationMs: HOUR_MS, recheckMs: 2000, correlationTableName: tables.correlation },
      clock: fakeClock(T0),
      logger,
      metrics: { addMetric: jest.fn() },
    };
  }

  test('GIVEN a key at its limit WHEN its requests and another key\'s arrive THEN the full key\'s are keyFull and the rest are admitted (the contract is not marked full)', async () => {
    const tables = await freshTables();
    const items = [
      { message: message('h1', 'hot'), keyLimits: limits(1) },
      { message: message('h2', 'hot'), keyLimits: limits(1) },
      { message: message('q1', 'quiet'), keyLimits: limits(1) },
      { message: message('plain') },
    ];
    const admission = await admitJobs(items, admissionDeps(tables));
    expect(admission.admitted.map((i) => i.message.requestId)).toEqual(['h1', 'q1', 'plain']);
    expect(admission.keyFull.map((i) => i.message.requestId)).toEqual(['h2']);
    expect(admission.waiting).toEqual([]);
    expect(await held(contractOf(tables.pacer))).toBe(3);
  });

  test('GIVEN keyless requests, or keyed ones without a places limit WHEN admitted THEN no key item is written (unchanged)', async () => {
    const tables = await freshTables();
    await admitJobs([{ message: message('a') }, { message: message('b', 'acme'), keyLimits: limits() }, { message: message('c', 'acme') }], admissionDeps(tables));
    expect(await held(contractOf(tables.pacer))).toBe(3);
    expect(await readPlaces(keyOf(tables.pacer, 'acme'))).toBeUndefined();
  });

  test('GIVEN a redelivered request whose job was already submitted WHEN it gives its new places back THEN both the contract\'s and the key\'s are freed', async () => {
    const tables = await freshTables();
    await client.send(new PutItemCommand({ TableName: tables.correlation, Item: { requestId: { S: 'done' }, jobId: { S: 'job-9' } } }));
    const admission = await admitJobs([{ message: message('done', 'acme'), keyLimits: limits(1) }], admissionDeps(tables));
    expect(admission.admitted).toHaveLength(1);
    expect(await held(contractOf(tables.pacer))).toBe(0);
    expect(await held(keyOf(tables.pacer, 'acme'))).toBe(0);
  });
});

describe('dispatchBatch with per-key places', () => {
  const WAITING = { waitingQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/waiting', requestQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/requests' };
  function deps(tables: { pacer: string; correlation: string }, clock: FakeClock): DispatchDeps {
    const config: DispatchConfig = {
      stateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:dispatch',
      requestsPerSecond: 10,
      pacerTableName: tables.pacer,
      maxPacingWaitMs: 2_000,
      latenessToleranceMs: 49,
      correlationTtlSeconds: 86_400,
      deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/dlq',
      jobsInFlight: { maxJobsInFlight: 10, maxJobDurationMs: HOUR_MS, recheckMs: 2000, correlationTableName: tables.correlation, ...WAITING },
    };
    const keyLimits: KeyLimitsSource = { limitsFor: async (keys) => new Map(keys.map((key) => [key, limits(1)])) };
    const clients = { dynamodb: client, sfn: new SFNClient({}), sqs: new SQSClient({}) };
    return { clients, config, logger, metrics: { addMetric: jest.fn() }, clock, random: () => 0.5, keyLimits };
  }

  test('GIVEN a key at its limit WHEN its request arrives with another key\'s THEN it is set aside as a delayed copy (recheck), not moved to the contract\'s waiting room, and contract waiters are woken for free places', async () => {
    const tables = await freshTables();
    const clock = fakeClock(T0);
    await take(tables.pacer, 'earlier', 'hot', 1, 10);
    const records = [requestRecord(message('h2', 'hot'), 'm0', T0), requestRecord(message('q1', 'quiet'), 'm1', T0)];
    const result = await dispatchBatch({ Records: records }, deps(tables, clock));
    expect(result.batchItemFailures).toEqual([]);
    expect(sfn.commandCalls(StartExecutionCommand).map((c) => JSON.parse((c.args[0].input as StartExecutionCommandInput).input!).requestId)).toEqual(['q1']);
    const sends = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
    expect(sends.map((s) => [s.QueueUrl, JSON.parse(s.MessageBody!).requestId, s.DelaySeconds])).toEqual([
      ['https://sqs.eu-west-1.amazonaws.com/123456789012/requests', 'h2', 2],
    ]);
    // The contract had 8 free places: its waiting room is asked for waiters (a woken waiter of a full key leaves its place unused).
    expect(sqs).toHaveReceivedCommandWith(ReceiveMessageCommand, { QueueUrl: WAITING.waitingQueueUrl });
  });
});

describe('freers release the contract\'s place, then the key\'s', () => {
  const answer = (statusCode: number | null): VendorCallResult => ({ statusCode, body: null, headers: null, requeue: null });
  const placeDeps = (pacer: string) => ({ dynamodb: client, jobPlacesTableName: pacer, logger, metrics: { addMetric: jest.fn() } });
  const submission = (requestId: string, extra: Partial<VendorCallEvent> = {}): VendorCallEvent => ({
    method: 'POST', headers: {}, body: {}, requestId, slotAtMs: 1, key: 'acme', keyLimits: limits(2), ...extra,
  });

  test.each([
    ['a submission refused with 400', (pacer: string) => freePlaceOfRefusedSubmission(submission('r1'), answer(400), placeDeps(pacer))],
    ['a submission given up unsent (VendorQuotaExhausted)', (pacer: string) => freePlaceOfUnsentSubmission(
      submission('r1'), Object.assign(new Error('spent'), { name: 'VendorQuotaExhausted' }), placeDeps(pacer))],
    ['a cancel of the key\'s job answered 2xx', (pacer: string) => freePlaceOfEndedJob(
      { ...submission('cancel-1'), path: 'jobs/1/cancel', query: null, endsJobOf: 'r1' } as unknown as VendorCallEvent, answer(200), placeDeps(pacer))],
  ])('GIVEN %s WHEN freed THEN both places are released and the key\'s other place stays', async (_, free) => {
    const { pacer } = await freshTables();
    await take(pacer, 'r1', 'acme', 2, 10);
    await take(pacer, 'r2', 'acme', 2, 10);
    await free(pacer);
    expect(await held(contractOf(pacer))).toBe(1);
    expect([...(await readPlaces(keyOf(pacer, 'acme')))!.places.keys()]).toEqual([placeKey('r2')]);
  });

  test('GIVEN a keyless submission, or one without per-key limits WHEN refused THEN only the contract\'s place is released (no key item written)', async () => {
    const { pacer } = await freshTables();
    await takePlace(contractOf(pacer), 'r1', 10, FULL, T0);
    await takePlace(contractOf(pacer), 'r2', 10, FULL, T0);
    await freePlaceOfRefusedSubmission(submission('r1', { key: undefined }), answer(400), placeDeps(pacer));
    await freePlaceOfRefusedSubmission(submission('r2', { keyLimits: null }), answer(400), placeDeps(pacer));
    expect(await held(contractOf(pacer))).toBe(0);
    expect(await readPlaces(keyOf(pacer, 'acme'))).toBeUndefined();
  });

  test('GIVEN a freed key place WHEN released THEN nobody is woken for it (only the contract\'s release wakes a contract waiter)', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'r1', 'acme', 2, 10);
    const room = { sqs: new SQSClient({}), waitingQueueUrl: 'waiting', requestQueueUrl: 'requests' };
    await freePlaceOfRefusedSubmission(submission('r1'), answer(400), { ...placeDeps(pacer), waitingRoom: room });
    // One wake (for the contract's place): a short poll repeated once when empty.
    expect(sqs.commandCalls(ReceiveMessageCommand)).toHaveLength(2);
    expect(await held(keyOf(pacer, 'acme'))).toBe(0);
  });

  test('GIVEN the key\'s release fails WHEN freeing THEN the error is logged and the answer still goes back (the key place lapses at its expiry)', async () => {
    const { pacer } = await freshTables();
    await take(pacer, 'r1', 'acme', 2, 10);
    const failingKeyWrites = {
      send: async (command: { input: { Key?: { pk?: { S?: string } } } }) => {
        if (command instanceof UpdateItemCommand && command.input.Key?.pk?.S?.startsWith('key-places#')) {
          throw Object.assign(new Error('boom'), { name: 'InternalServerError' });
        }
        return client.send(command as never);
      },
    } as unknown as DynamoDBClient;
    const warn = jest.fn();
    await freePlaceOfRefusedSubmission(submission('r1'), answer(400), { ...placeDeps(pacer), dynamodb: failingKeyWrites, logger: { ...logger, warn } });
    expect(await held(contractOf(pacer))).toBe(0);
    expect(warn).toHaveBeenCalledTimes(1);
  });
});

describe('per-key quota counters (design 1.5)', () => {
  const QUOTA_T0 = 1_800_000_001_000; // 1 s into a 3 s period that ends at 1_800_000_003_000
  const PERIOD_START = 1_800_000_000_000;
  const SHORT: QuotaSpec = { name: 'short', limit: 2, unit: 'fixed', periodMs: 3000 };

  test('GIVEN a key that spent its 2 units WHEN a third call spends THEN it is refused, and the batch read finds that key spent until its period ends, not the other key', async () => {
    const { pacer } = await freshTables();
    const spend = (key: string) => spendQuotaUnits(
      client, pacer, [SHORT], QUOTA_T0 + 300, new Set(), QUOTA_BOUNDARY_GUARD_MS, keyQuotaCounterKey(key),
    );
    expect((await spend('hot')).spent).toBe(true);
    expect((await spend('hot')).spent).toBe(true);
    expect(await spend('hot')).toEqual({ spent: false, exhausted: 'short', availableAtMs: PERIOD_START + 3000 + 250, units: [] });
    expect((await spend('quiet')).spent).toBe(true);
    // The counters are the keys' own: the contract's counter of the period was never written.
    const contract = await client.send(new GetItemCommand({ TableName: pacer, Key: { pk: { S: `quota#short#${PERIOD_START}` } } }));
    expect(contract.Item).toBeUndefined();

    const until = await keyQuotasSpentUntil(client, pacer, new Map([['hot', [SHORT]], ['quiet', [SHORT]], ['new', [SHORT]]]), QUOTA_T0);
    expect(until).toEqual(new Map([['hot', PERIOD_START + 3000 + 250]]));
  });
});
