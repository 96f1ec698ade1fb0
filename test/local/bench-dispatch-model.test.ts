/**
 * The model that drives the real dispatcher in virtual time (local/bench-dispatch-model.ts) and the
 * items store behind it (local/bench-dynamo-items.ts). Small runs: a few seconds in all.
 */
import { PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { ChangeMessageVisibilityBatchCommand, SendMessageBatchCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { parseBenchArgs, scenarios } from '../../local/bench';
import {
  dynamodbRequestsPerCall, keyFigures, MODEL_DEAD_LETTER_QUEUE_URL, MODEL_HIGH_QUEUE_URL, MODEL_QUEUE_URL, ModeledQueue, ModeledRequest, ModeledSqs,
  rateOnlyKeyLimits, runDispatchModel, windowFigures,
} from '../../local/bench-dispatch-model';
import { DynamoItems } from '../../local/bench-dynamo-items';
import { keyPlaceFigures } from '../../local/bench-inflight-keys';
import { keysRequests, KEYS_100_HOT90, priorityDetails, priorityRequests, PRIORITY_BACKLOG, targetsLine } from '../../local/bench-keys';
import { LATENCY_MODEL, pacingKnobs, round } from '../../local/bench-model';
import { VirtualClock } from '../../local/bench-sim';
import { ConsumerEnv } from '../../src/shared/env';

describe('modeled queue', () => {
  test('FIFO by the time a message became visible; a delayed message waits for its DelaySeconds', async () => {
    const clock = new VirtualClock(0);
    const queue = new ModeledQueue(clock);
    queue.add('a');
    queue.add('b', 1);
    queue.add('c');
    expect(queue.receive(10, 30_000).map((m) => m.body)).toEqual(['a', 'c']);
    expect(queue.nextVisibleAt()).toBe(1000);
    await Promise.all([clock.sleep(999), clock.run()]);
    expect(queue.receive(10, 30_000)).toEqual([]);
    const later = clock.sleep(1);
    await clock.run();
    await later;
    queue.add('d');
    // b became visible at 1000 ms, before d was sent: it comes first.
    expect(queue.receive(1, 30_000).map((m) => m.body)).toEqual(['b']);
    expect(queue.receive(1, 30_000).map((m) => m.body)).toEqual(['d']);
  });

  test('a received message is in flight until deleted, its visibility changed, or its timeout ends', async () => {
    const clock = new VirtualClock(0);
    const queue = new ModeledQueue(clock);
    queue.add('kept');
    queue.add('hidden');
    queue.add('deleted');
    const [kept, hidden, deleted] = queue.receive(3, 5000);
    queue.delete(deleted.receipt!);
    queue.changeVisibility(hidden.receipt!, 2);
    expect(queue.receive(3, 5000)).toEqual([]);
    const at2s = clock.sleep(2000);
    await clock.run(2000);
    await at2s;
    expect(queue.receive(3, 5000).map((m) => m.body)).toEqual(['hidden']);
    const at5s = clock.sleep(3000);
    await clock.run(3000);
    await at5s;
    const again = queue.receive(3, 5000);
    expect(again.map((m) => m.body)).toEqual(['kept']);
    expect(again[0].receiveCount).toBe(2);
    expect(again[0]).toBe(kept);
    expect(() => queue.changeVisibility(deleted.receipt!, 1)).toThrow(/not valid/);
    expect(queue.requests.ReceiveMessage).toBe(3);
    // 3 received at once; then 'hidden' came back and was received again while 'kept' was still out.
    expect(queue.maxInFlight).toBe(3);
  });
});

describe('modeled SQS client (what the dispatcher sends)', () => {
  test('SendMessageBatch with delays onto the queue, the dead-letter queue, batch visibility changes; each call a round trip', async () => {
    const clock = new VirtualClock(0);
    const queue = new ModeledQueue(clock);
    const sqs = new ModeledSqs(queue, clock, () => 20);
    queue.add('held');
    const [held] = queue.receive(1, 30_000);
    const sent = sqs.send(new SendMessageBatchCommand({
      QueueUrl: MODEL_QUEUE_URL,
      Entries: [{ Id: 'a', MessageBody: 'aside-2s', DelaySeconds: 2 }, { Id: 'b', MessageBody: 'aside-1s', DelaySeconds: 1 }],
    }));
    await clock.run();
    expect(await sent).toMatchObject({ Successful: [{ Id: 'a' }, { Id: 'b' }], Failed: [] });
    expect(clock.now()).toBe(20);
    const parked = sqs.send(new SendMessageCommand({ QueueUrl: MODEL_DEAD_LETTER_QUEUE_URL, MessageBody: 'bad' }));
    const hidden = sqs.send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: MODEL_QUEUE_URL, Entries: [{ Id: 'h', ReceiptHandle: held.receipt!, VisibilityTimeout: 3 }] }));
    await clock.run();
    await Promise.all([parked, hidden]);
    expect(sqs.parked).toBe(1);
    // Visible in the order they become so: 1 s, 2 s, then the hidden one at 3 s.
    const order: string[] = [];
    for (const at of [1020, 2020, 3040]) {
      const wake = clock.sleep(at - clock.now());
      await clock.run();
      await wake;
      order.push(...queue.receive(10, 30_000).map((m) => m.body));
    }
    expect(order).toEqual(['aside-1s', 'aside-2s', 'held']);
    expect(queue.requests).toMatchObject({ SendMessage: 1, SendMessageBatch: 1, ChangeMessageVisibility: 1 });
  });

  test('refuses what SQS refuses: more than 10 entries, duplicate ids, a delay over 900 s, an unknown queue', async () => {
    const clock = new VirtualClock(0);
    const sqs = new ModeledSqs(new ModeledQueue(clock), clock, () => 10);
    const refusal = async (command: unknown) => {
      const outcome = sqs.send(command).then(() => undefined, (error: Error) => error.name);
      await clock.run();
      return outcome;
    };
    const entries = (n: number) => Array.from({ length: n }, (_, k) => ({ Id: `e${k}`, MessageBody: 'x' }));
    expect(await refusal(new SendMessageBatchCommand({ QueueUrl: MODEL_QUEUE_URL, Entries: entries(11) }))).toBe('TooManyEntriesInBatchRequest');
    expect(await refusal(new SendMessageBatchCommand({ QueueUrl: MODEL_QUEUE_URL, Entries: [entries(1)[0], entries(1)[0]] }))).toBe('BatchEntryIdsNotDistinct');
    expect(await refusal(new SendMessageCommand({ QueueUrl: MODEL_QUEUE_URL, MessageBody: 'x', DelaySeconds: 901 }))).toBe('InvalidParameterValue');
    expect(await refusal(new SendMessageCommand({ QueueUrl: 'https://sqs.us-east-1.amazonaws.com/1/other', MessageBody: 'x' }))).toBe('QueueDoesNotExist');
    expect(await refusal(new SendMessageBatchCommand({ QueueUrl: MODEL_QUEUE_URL, Entries: entries(10) }))).toBeUndefined();
  });
});

describe('modeled DynamoDB items (dynalite evaluates the expressions)', () => {
  test('conditional writes, ADD and the refusal the SDK throws', () => {
    const items = new DynamoItems();
    const reserve = (last: number, floor: number) => new UpdateItemCommand({
      TableName: 't',
      Key: { pk: { S: 'key-pacer#a' } },
      UpdateExpression: 'SET lastSlotAtMs = :last ADD reservations :one',
      ConditionExpression: 'attribute_not_exists(lastSlotAtMs) OR lastSlotAtMs <= :floor',
      ExpressionAttributeValues: { ':last': { N: String(last) }, ':floor': { N: String(floor) }, ':one': { N: '1' } },
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    });
    items.send(reserve(1000, 0));
    expect(() => items.send(reserve(1200, 900))).toThrow(expect.objectContaining({
      name: 'ConditionalCheckFailedException', Item: expect.objectContaining({ lastSlotAtMs: { N: '1000' } }),
    }));
    items.send(reserve(1600, 1100));
    expect(items.item('key-pacer#a')).toEqual({ pk: { S: 'key-pacer#a' }, lastSlotAtMs: { N: '1600' }, reservations: { N: '2' } });
    const claim = new PutItemCommand({ TableName: 't', Item: { pk: { S: 'slot#1' } }, ConditionExpression: 'attribute_not_exists(#pk)', ExpressionAttributeNames: { '#pk': 'pk' } });
    items.send(claim);
    expect(() => items.send(claim)).toThrow(expect.objectContaining({ name: 'ConditionalCheckFailedException' }));
    expect(Object.fromEntries(items.conditionalFailures)).toEqual({ 'key-pacer': 1, 'slot': 1 });
  });
});

describe('the real dispatcher in virtual time', () => {
  const keys = new Map([['a', rateOnlyKeyLimits(2)], ['b', rateOnlyKeyLimits(2)], ['c', rateOnlyKeyLimits(2)]]);
  // Key a at its limit (2 RPS, 8 s), b and c light; a 10 RPS contract.
  const requests: ModeledRequest[] = [
    ...Array.from({ length: 16 }, (_, n) => ({ atMs: n * 500, key: 'a' })),
    ...Array.from({ length: 4 }, (_, n) => ({ atMs: 250 + n * 2000, key: 'b' })),
    ...Array.from({ length: 2 }, (_, n) => ({ atMs: 900 + n * 4000, key: 'c' })),
  ].sort((x, y) => x.atMs - y.atMs);

  test('3 keys: every request reaches the vendor once, counted per key against its own limit and in all', async () => {
    const run = await runDispatchModel({ rps: 10, requests, keyLimits: keys, seed: 7 });
    expect(run.delivered).toBe(22);
    expect(run.vendorArrivals).toHaveLength(22);
    const figures = keyFigures(run, 10, keys);
    const arrivalsOf = (key: string) => run.vendorArrivals.filter((a) => a.key === key).map((a) => a.at);
    expect(figures.perKey.get('a')!.arrivals).toHaveLength(16);
    expect(figures.perKey.get('b')!.arrivals).toHaveLength(4);
    // The per-key count is the closed-window count of that key's own arrivals against its limit.
    for (const key of ['a', 'b', 'c']) {
      expect(figures.perKey.get(key)).toMatchObject(windowFigures(arrivalsOf(key), 2));
    }
    expect(figures.contract).toEqual(windowFigures(run.vendorArrivals.map((a) => a.at), 10));
    // Added latency starts at the producer's send: at least the dispatcher's lead.
    expect(Math.min(...run.calls.map((c) => c.arrivedAt - c.enqueuedAt))).toBeGreaterThanOrEqual(1000);
    // The metrics counted with a key, per key (the EMF keyTotals): each key's dispatches, in all the total.
    const dispatchedByKey = Object.entries(run.metricsByKey).map(([key, totals]) => [key, totals.DispatchedRequests]);
    expect(Object.fromEntries(dispatchedByKey)).toEqual({ a: 16, b: 4, c: 2 });
    expect(run.metrics.DispatchedRequests).toBe(22);
    // DynamoDB requests, per action (the keys' BatchGetItem counts once), and per call.
    expect(run.dynamodbRequests).toMatchObject({ BatchGetItem: expect.any(Number), GetItem: expect.any(Number), UpdateItem: expect.any(Number) });
    const total = Object.values(run.dynamodbRequests).reduce((a, b) => a + b, 0);
    expect(dynamodbRequestsPerCall(run)).toBeCloseTo(total / 22, 2);
  });

  test('a key at its limit: 2 per closed second is no violation, a third arrival in the window is one', () => {
    const atLimit = Array.from({ length: 10 }, (_, n) => n * 501);
    expect(windowFigures(atLimit, 2)).toEqual({ violations: 0, maxInAnySecond: 2 });
    expect(windowFigures([...atLimit, 1002], 2)).toEqual({ violations: 2, maxInAnySecond: 3 });
    const figures = keyFigures({ vendorArrivals: atLimit.map((at) => ({ at, key: 'a' })) }, 10, keys);
    expect(figures.perKey.get('a')).toMatchObject({ violations: 0, maxInAnySecond: 2 });
  });

  test('the same seed gives the same run; another seed another', async () => {
    const arrivals = async (seed: number) => (await runDispatchModel({ rps: 10, requests, keyLimits: keys, seed })).vendorArrivals;
    expect(await arrivals(3)).toEqual(await arrivals(3));
    expect(await arrivals(3)).not.toEqual(await arrivals(4));
  });

  test('what gets no slot in time comes back as a delayed copy, visible after its delay, and is delivered', async () => {
    const backlog: ModeledRequest[] = Array.from({ length: 20 }, () => ({ atMs: 0 }));
    const run = await runDispatchModel({ rps: 5, requests: backlog, lanes: 2, batchSize: 10, maxPacingWaitMs: 1500, seed: 1 });
    expect(run.delivered).toBe(20);
    // Each postponed message is one more SendMessage (a delayed copy), no receive counted against it.
    expect(run.sqsRequests.SendMessage).toBeGreaterThan(20);
    expect(run.maxReceiveCount).toBe(1);
    expect(windowFigures(run.vendorArrivals.map((a) => a.at), 5).violations).toBe(0);
    // A copy waits for its delay: nothing arrives faster than the contract allows from the start.
    expect(run.calls.at(-1)!.arrivedAt - run.runStartMs).toBeGreaterThan(19 * 200);
  });
});

describe('per-key jobs in flight in the model (bench-inflight-keys.ts)', () => {
  const limits = new Map([['k', { ...rateOnlyKeyLimits(10), maxJobsInFlight: 1 }]]);
  const env = (tickets: boolean) => ({
    [ConsumerEnv.MAX_JOBS_IN_FLIGHT]: '10',
    [ConsumerEnv.MAX_JOB_DURATION_MS]: '600000',
    ...(tickets ? {} : { [ConsumerEnv.KEY_PLACE_TICKETS]: 'off' }),
  });
  const requests: ModeledRequest[] = Array.from({ length: 4 }, () => ({ atMs: 0, key: 'k' }));

  test.each([[true], [false]])('a key of 1 place, 4 requests, jobs of 3 s (tickets %s): one job at a time, all delivered', async (tickets) => {
    const jobs = { durationMs: () => 3000 };
    const run = await runDispatchModel({ rps: 10, requests, keyLimits: limits, dispatcherEnv: env(tickets), jobs, seed: 3 });
    expect(run.delivered).toBe(4);
    expect(Math.max(...run.keyPlaces.map((c) => c.held))).toBe(1);
    const arrivals = run.vendorArrivals.map((a) => a.at).sort((a, b) => a - b);
    for (let i = 1; i < arrivals.length; i++) expect(arrivals[i] - arrivals[i - 1]).toBeGreaterThanOrEqual(3000);
    const figures = keyPlaceFigures(1, requests.map((r) => run.runStartMs + r.atMs), run.keyPlaces);
    expect(figures.handOvers).toBe(3);
    expect(figures.utilization).toBeGreaterThan(0.3);
  });

  test('place figures: idle place time only while requests wait, hand-over idle from a release to the next take', () => {
    // 2 places; offers at 0, 0, 0; takes at 100, 200; a release at 1000, the third take at 1500.
    const figures = keyPlaceFigures(2, [0, 0, 0], [
      { at: 100, key: 'k', held: 1 }, { at: 200, key: 'k', held: 2 }, { at: 1000, key: 'k', held: 1 }, { at: 1500, key: 'k', held: 2 },
    ]);
    // Waiting from 0 to 1500 (the third request's take): idle 2 x 100 + 1 x 100 + 1 x 500.
    expect(figures).toEqual({
      places: 2,
      waitingMs: 1500,
      idlePlaceMs: 800,
      utilization: round(1 - 800 / 3000, 4),
      handOvers: 1,
      meanHandOverIdleMs: 500,
      maxHandOverIdleMs: 500,
    });
  });
});

describe('a high-priority request queue (issue 15, high-priority-queue.ts)', () => {
  test('the modeled SQS client sends to the high queue by its URL, and nowhere else', async () => {
    const clock = new VirtualClock(0);
    const queue = new ModeledQueue(clock);
    const high = new ModeledQueue(clock);
    const sqs = new ModeledSqs(queue, clock, () => 0, high);
    const sent = Promise.all([
      sqs.send(new SendMessageCommand({ QueueUrl: MODEL_HIGH_QUEUE_URL, MessageBody: 'h' })),
      sqs.send(new SendMessageCommand({ QueueUrl: MODEL_QUEUE_URL, MessageBody: 'n' })),
    ]);
    await clock.run();
    await sent;
    expect(high.receive(10, 30_000).map((m) => m.body)).toEqual(['h']);
    expect(queue.receive(10, 30_000).map((m) => m.body)).toEqual(['n']);
    const refused = new ModeledSqs(queue, clock, () => 0).send(new SendMessageCommand({ QueueUrl: MODEL_HIGH_QUEUE_URL, MessageBody: 'h' }));
    const refusal = expect(refused).rejects.toMatchObject({ name: 'QueueDoesNotExist' });
    await clock.run();
    await refusal;
  });

  // Regression (issue 15's priority target): with one FIFO queue high p99 was 32 s; with the high
  // queue but normal batches reserving up to maxPacingWait ahead, 5.1 s.
  test('priority-backlog with a high-priority queue: high p99 within 2 s + its own pacing, low within its bound, all delivered, no violation', async () => {
    const knobs = pacingKnobs(LATENCY_MODEL);
    const run = await runDispatchModel({
      rps: PRIORITY_BACKLOG.contractRps,
      requests: priorityRequests(PRIORITY_BACKLOG),
      model: LATENCY_MODEL,
      knobs,
      seed: PRIORITY_BACKLOG.seed,
      highPriorityQueue: {},
    });
    const details = priorityDetails(run, PRIORITY_BACKLOG, knobs.latenessToleranceMs);
    expect(details.highP99AddedLatencyMs).toBeLessThanOrEqual(details.highTargetMs as number);
    expect(targetsLine(details)).toBe('targets met 2/2');
    expect(run.delivered).toBe(run.requests);
    expect(windowFigures(run.vendorArrivals.map((a) => a.at), PRIORITY_BACKLOG.contractRps).violations).toBe(0);
  });
});

describe('bench rows of issue 15', () => {
  test('the hot-idle baseline offers exactly the quiet requests of keys-100-hot90', () => {
    const hot = keysRequests(KEYS_100_HOT90);
    const idle = keysRequests({ ...KEYS_100_HOT90, hotRps: 0 });
    expect(hot.filter((r) => r.key !== 'key-000')).toEqual(idle);
    expect(hot.filter((r) => r.key === 'key-000').length).toBeGreaterThan(8 * idle.length);
  });

  test('the priority row: a backlog, then 10 % high', () => {
    const requests = priorityRequests(PRIORITY_BACKLOG);
    expect(requests.slice(0, 300).every((r) => r.atMs === 0 && r.priority !== 'high')).toBe(true);
    const high = requests.filter((r) => r.priority === 'high').length / (requests.length - 300);
    expect(high).toBeGreaterThan(0.05);
    expect(high).toBeLessThan(0.15);
  });

  test('in the full modeled run, not in --quick; --only picks rows', () => {
    const rows = (quick: boolean) => scenarios({ quick, modeledOnly: true, emulated100: false }).filter((s) => s.study === 'issue-15-keys');
    expect(rows(false).map((s) => [s.name, s.kind, s.rps])).toEqual([
      ['keys-100-hot-idle', 'dispatch-model', 100], ['keys-100-hot90', 'dispatch-model', 100], ['priority-backlog', 'dispatch-model', 10],
      ['keys-500-burst', 'dispatch-model', 100],
      ['inflight-keys-recheck', 'dispatch-model', 20], ['inflight-keys-ticket', 'dispatch-model', 20],
    ]);
    expect(rows(true)).toEqual([]);
    expect(parseBenchArgs(['--only', 'keys-100-hot90,priority-backlog']).only).toEqual(['keys-100-hot90', 'priority-backlog']);
    expect(parseBenchArgs(['--only=keys-100-hot90']).only).toEqual(['keys-100-hot90']);
  });

  test('targets read as one line', () => {
    expect(targetsLine({ 'target.a': 'pass', 'target.b': 'fail', 'x': 1 })).toBe('targets met 1/2 (not met: b)');
    expect(targetsLine({ x: 1 })).toBeUndefined();
  });
});
