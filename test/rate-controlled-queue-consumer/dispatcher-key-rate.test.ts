/**
 * The dispatcher with per-key rates (key-schedule.ts, key-set-aside.ts; design
 * docs/design/per-key-limits.md 1.3, 3.1): keyed requests get a contract slot and a key slot, one
 * key's many messages are interleaved with the others', a key without a slot within the horizon
 * (or paused) is set aside as a delayed copy, and requests without key limits behave as before.
 */
import { BatchGetItemCommand, DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { TEST_DISPATCH_CONFIG, testDispatchDeps } from './dispatch-fixtures';
import { inMemoryPacerTable, PacerTableFake } from './pacer-table-fake';
import { requestRecord } from './sqs-record';
import { dispatchBatch, DispatchDeps } from '../../src/rate-controlled-queue-consumer/dispatch';
import { keyIntervalMs } from '../../src/rate-controlled-queue-consumer/key-schedule';
import { KEY_TURN_FIELD, PAUSED_KEY_RECHECK_MS, SET_ASIDE_RETURN_MARGIN_MS } from '../../src/rate-controlled-queue-consumer/key-set-aside';
import type { KeyLimitsSource, KeyLimitsSpec } from '../../src/shared/key-limits';

const ddb = mockClient(DynamoDBClient);
const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_800_000_001_000;
const LEAD = TEST_DISPATCH_CONFIG.leadMs!;
const L = TEST_DISPATCH_CONFIG.latenessToleranceMs;

const spec = (requestsPerSecond: number, extra: Partial<KeyLimitsSpec> = {}): KeyLimitsSpec =>
  ({ requestsPerSecond, quotas: {}, priorityAgingMs: 30_000, paused: false, ...extra });
const source = (limits: Record<string, KeyLimitsSpec>): KeyLimitsSource => ({
  limitsFor: async (keys) => new Map(keys.filter((key) => limits[key]).map((key) => [key, limits[key]])),
});
const submit = (requestId: string, key?: string, extra: Record<string, unknown> = {}) =>
  requestRecord({ taskToken: `token-${requestId}`, requestId, payload: {}, ...(key ? { key } : {}), ...extra }, `m-${requestId}`, T0);

let table: PacerTableFake;
beforeEach(() => {
  ddb.reset();
  sfn.reset();
  sqs.reset();
  table = inMemoryPacerTable(ddb);
  sqs.on(SendMessageCommand).resolves({ MessageId: 'copy' });
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:exec', startDate: new Date() });
});

const deps = (keyLimits?: KeyLimitsSource): DispatchDeps & { metrics: { addMetric: jest.Mock } } =>
  ({ ...testDispatchDeps(TEST_DISPATCH_CONFIG, T0), ...(keyLimits ? { keyLimits } : {}) });
const started = () => sfn.commandCalls(StartExecutionCommand)
  .map((c) => JSON.parse(c.args[0].input.input!) as { requestId: string; slotAtMs: number });
const copies = () => sqs.commandCalls(SendMessageCommand)
  .map((c) => [JSON.parse(c.args[0].input.MessageBody!).requestId, c.args[0].input.DelaySeconds]);

describe('dispatchBatch with per-key rates', () => {
  test('GIVEN requests without key limits WHEN dispatched THEN no key item is read or written (as before per-key limits)', async () => {
    const response = await dispatchBatch({ Records: [submit('a'), submit('b', 'acme')] }, deps(source({})));
    expect(response).toEqual({ batchItemFailures: [] });
    expect(started().map((i) => i.requestId)).toEqual(['a', 'b']);
    expect(ddb.commandCalls(BatchGetItemCommand)).toHaveLength(0);
    expect([...table.items.keys()]).toEqual(['pacer']);
  });

  test('GIVEN a hot key\'s four messages ahead of a quiet key\'s one WHEN dispatched THEN the quiet one is not behind the hot ones, the hot key\'s slots are I_k apart, the ones past the horizon are set aside as delayed copies (early, never late), and each key\'s cursors are written', async () => {
    const hotI = keyIntervalMs(spec(2), L);
    const d = deps(source({ hot: spec(2), quiet: spec(2) }));
    const response = await dispatchBatch({ Records: [submit('h1', 'hot'), submit('h2', 'hot'), submit('h3', 'hot'), submit('h4', 'hot'), submit('q1', 'quiet')] }, d);
    expect(response).toEqual({ batchItemFailures: [] });
    const inputs = started();
    // Interleaved by key: h1, q1, then h2 once the hot key has room again.
    expect(inputs.map((i) => i.requestId)).toEqual(['h1', 'q1', 'h2']);
    const hot = inputs.filter((i) => i.requestId.startsWith('h')).map((i) => i.slotAtMs);
    expect(hot[1] - hot[0]).toBeGreaterThanOrEqual(hotI);
    // The hot key's slots at now + lead and + I_k fit the 0.75 s horizon, the third does not: h3, h4
    // are meant for the slots after the two kept, returning lead + margin before them, rounded down.
    const base = T0 + LEAD + 2 * hotI;
    const expected = [0, 1].map((j) => Math.floor((base + j * hotI - LEAD - SET_ASIDE_RETURN_MARGIN_MS - T0) / 1000));
    expect(copies()).toEqual([['h3', expected[0]], ['h4', expected[1]]]);
    expect(table.items.get('key-pacer#hot')).toMatchObject({ 'lastSlotAtMs': String(hot[1]), 'asideUntilMs#normal': String(base + 2 * hotI) });
    expect(table.items.get('key-pacer#quiet')!.lastSlotAtMs).toBe(String(inputs[1].slotAtMs));
    const setAside = d.metrics.addMetric.mock.calls.filter(([name]) => name === 'KeySetAside');
    expect(setAside.map(([, , value, key]) => [value, key])).toEqual([[1, 'hot'], [1, 'hot']]);
  });

  test('GIVEN requests set aside WHEN dispatched THEN each counts the time it is set aside for under its key (KeySetAsideDelay: the backlog per key); a paused key\'s the recheck period', async () => {
    const d = deps(source({ hot: spec(2), paused: spec(5, { paused: true }) }));
    await dispatchBatch({ Records: [submit('h1', 'hot'), submit('h2', 'hot'), submit('h3', 'hot'), submit('h4', 'hot'), submit('p1', 'paused')] }, d);
    const delays = Object.fromEntries(copies());
    const setAsideDelay = d.metrics.addMetric.mock.calls.filter(([name]) => name === 'KeySetAsideDelay');
    expect(setAsideDelay.map(([, unit, value, key]) => [unit, value, key])).toEqual(expect.arrayContaining([
      ['Milliseconds', delays.h3 * 1000, 'hot'], ['Milliseconds', delays.h4 * 1000, 'hot'], ['Milliseconds', PAUSED_KEY_RECHECK_MS, 'paused'],
    ]));
    expect(setAsideDelay).toHaveLength(3);
  });

  test('GIVEN an earlier batch set the key aside WHEN more of its messages come THEN they are spread after the advisory cursor, per priority (high before normal)', async () => {
    const I = keyIntervalMs(spec(1), L);
    // The key has no room within the horizon (its last slot 5 s ahead).
    table.items.set('key-pacer#k', { 'lastSlotAtMs': String(T0 + 5_000), 'asideUntilMs#normal': String(T0 + 20_000), 'asideUntilMs#high': String(T0 + 9_000) });
    await dispatchBatch({ Records: [submit('n1', 'k'), submit('h1', 'k', { priority: 'high' })] }, deps(source({ k: spec(1) })));
    expect(started()).toEqual([]);
    const back = (slotMs: number) => Math.floor((slotMs - LEAD - SET_ASIDE_RETURN_MARGIN_MS - T0) / 1000);
    expect(Object.fromEntries(copies())).toEqual({ h1: back(T0 + 9_000), n1: back(T0 + 20_000) });
    expect(table.items.get('key-pacer#k')).toMatchObject({ 'asideUntilMs#high': String(T0 + 9_000 + I), 'asideUntilMs#normal': String(T0 + 20_000 + I) });
  });

  test('GIVEN another dispatcher moves the advisory cursor meanwhile WHEN the cursor write loses THEN the delays come from the key\'s slot cursor alone', async () => {
    const I = keyIntervalMs(spec(1), L);
    table.items.set('key-pacer#k', { 'lastSlotAtMs': String(T0 + 3_000), 'asideUntilMs#normal': String(T0 + 20_000) });
    table.beforeWrite = (pk, input) => {
      if (pk === 'key-pacer#k' && JSON.stringify(input.ExpressionAttributeNames).includes('asideUntilMs')) {
        table.items.get(pk)!['asideUntilMs#normal'] = String(T0 + 40_000);
      }
    };
    await dispatchBatch({ Records: [submit('n1', 'k')] }, deps(source({ k: spec(1) })));
    expect(copies()).toEqual([['n1', Math.floor((T0 + 3_000 + I - LEAD - SET_ASIDE_RETURN_MARGIN_MS - T0) / 1000)]]);
    expect(table.items.get('key-pacer#k')!['asideUntilMs#normal']).toBe(String(T0 + 40_000));
  });

  test('GIVEN a key paused by an operator WHEN dispatched THEN its messages are set aside for the recheck period, no slot, no key write; another key goes on', async () => {
    await dispatchBatch({ Records: [submit('p1', 'paused'), submit('p2', 'paused'), submit('o1', 'other')] }, deps(source({ paused: spec(5, { paused: true }), other: spec(5) })));
    expect(started().map((i) => i.requestId)).toEqual(['o1']);
    expect(copies()).toEqual([['p1', PAUSED_KEY_RECHECK_MS / 1000], ['p2', PAUSED_KEY_RECHECK_MS / 1000]]);
    expect(table.items.has('key-pacer#paused')).toBe(false);
  });

  test('GIVEN a key the vendor paused (its own 429) WHEN dispatched THEN its message returns shortly before the pause ends', async () => {
    table.items.set('key-pacer#k', { pausedUntilMs: String(T0 + 60_000) });
    await dispatchBatch({ Records: [submit('a', 'k')] }, deps(source({ k: spec(5) })));
    expect(started()).toEqual([]);
    expect(copies()).toEqual([['a', Math.floor((60_000 - LEAD - SET_ASIDE_RETURN_MARGIN_MS) / 1000)]]);
  });

  test('GIVEN two dispatchers whose batches hold the same hot key at once WHEN they dispatch THEN only the first to plan the key reserves its slots, the other sets its calls aside, and no contract slot is wasted', async () => {
    const a = deps(source({ hot: spec(2) }));
    const b = { ...deps(source({ hot: spec(2) })), random: () => 0.25 };
    const [ra, rb] = await Promise.all([
      dispatchBatch({ Records: [submit('a1', 'hot'), submit('a2', 'hot')] }, a),
      dispatchBatch({ Records: [submit('b1', 'hot'), submit('b2', 'hot')] }, b),
    ]);
    expect([ra, rb]).toEqual([{ batchItemFailures: [] }, { batchItemFailures: [] }]);
    const wasted = [a, b].flatMap((d) => d.metrics.addMetric.mock.calls.filter(([name]) => name === 'KeySlotsWasted'));
    expect(wasted).toEqual([]);
    const inputs = started();
    expect(inputs.map((i) => i.requestId).sort()).toEqual(['a1', 'a2']);
    expect(inputs[1].slotAtMs - inputs[0].slotAtMs).toBeGreaterThanOrEqual(keyIntervalMs(spec(2), L));
    expect(copies().map(([id]) => id).sort()).toEqual(['b1', 'b2']);
  });

  test('GIVEN a dispatcher holding a hot key\'s calls WHEN another dispatcher plans the key\'s slots after them between its rounds THEN it still fires them all (none set aside), and the copy of the one past the horizon carries its turn', async () => {
    const I = keyIntervalMs(spec(2), L);
    let replanned = false;
    table.beforeWrite = (pk, input) => {
      // Right after this dispatcher's first key slot write: another one keeps a call after its plan.
      if (!replanned && pk === 'key-pacer#hot' && JSON.stringify(input.ExpressionAttributeNames).includes('lastSlotAtMs')) {
        replanned = true;
        Object.assign(table.items.get(pk) ?? table.items.set(pk, {}).get(pk)!, { plannedUntilMs: String(T0 + LEAD + 5_000), plannedBy: '42' });
      }
    };
    await dispatchBatch({ Records: [submit('h1', 'hot'), submit('h2', 'hot'), submit('h3', 'hot')] }, deps(source({ hot: spec(2) })));
    expect(replanned).toBe(true);
    expect(started().map((i) => i.requestId)).toEqual(['h1', 'h2']);
    const copy = sqs.commandCalls(SendMessageCommand).map((c) => JSON.parse(c.args[0].input.MessageBody!));
    expect(copy).toEqual([expect.objectContaining({ requestId: 'h3', [KEY_TURN_FIELD]: T0 + LEAD + 2 * I })]);
  });

  test('GIVEN another dispatcher\'s plan ending within the horizon WHEN a batch keeps the key\'s call THEN its slot is after that plan, not at the key\'s next free slot the other one holds a call for', async () => {
    const I = keyIntervalMs(spec(5), L);
    // The key's next free slot is now + lead; the other dispatcher holds a call for it and planned until + 2 I.
    table.items.set('key-pacer#k', { lastSlotAtMs: String(T0 + LEAD - I), plannedUntilMs: String(T0 + LEAD + 2 * I), plannedBy: '42' });
    await dispatchBatch({ Records: [submit('a', 'k')] }, deps(source({ k: spec(5) })));
    expect(started().map((i) => i.requestId)).toEqual(['a']);
    expect(started()[0].slotAtMs).toBeGreaterThanOrEqual(T0 + LEAD + 2 * I);
  });

  test('GIVEN another dispatcher planned the key\'s next slots WHEN a batch of the key comes THEN its calls are set aside after that plan, without a contract slot', async () => {
    const I = keyIntervalMs(spec(2), L);
    table.items.set('key-pacer#k', { plannedUntilMs: String(T0 + LEAD + 3 * I), plannedBy: '42' });
    await dispatchBatch({ Records: [submit('a', 'k')] }, deps(source({ k: spec(2) })));
    expect(started()).toEqual([]);
    expect(copies()).toEqual([['a', Math.floor((3 * I - SET_ASIDE_RETURN_MARGIN_MS) / 1000)]]);
    expect(table.items.get('pacer')).toBeUndefined();
  });

  test('GIVEN the set-aside copy cannot be sent WHEN dispatched THEN the message is hidden instead and stays on the queue', async () => {
    table.items.set('key-pacer#k', { pausedUntilMs: String(T0 + 60_000) });
    sqs.on(SendMessageCommand).rejects(new Error('throttled'));
    sqs.on(ChangeMessageVisibilityCommand).resolves({});
    const response = await dispatchBatch({ Records: [submit('a', 'k')] }, deps(source({ k: spec(5) })));
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'm-a' }] });
    expect(sqs.commandCalls(ChangeMessageVisibilityCommand)).toHaveLength(1);
  });

  test('GIVEN the keys cannot be read WHEN dispatched THEN nothing starts and the messages come back (hidden briefly)', async () => {
    ddb.on(BatchGetItemCommand).rejects(new Error('ProvisionedThroughputExceededException'));
    sqs.on(ChangeMessageVisibilityCommand).resolves({});
    const response = await dispatchBatch({ Records: [submit('a', 'k')] }, deps(source({ k: spec(5) })));
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'm-a' }] });
    expect(started()).toEqual([]);
  });

  test('GIVEN another reserver stored the key\'s slot between the read and the key write WHEN the key write loses THEN the call does not fire in that slot (KeySlotsWasted) and is reserved again later', async () => {
    let raced = false;
    table.beforeWrite = (pk, input) => {
      // The key's slot write (not its plan, written before the contract's reservation).
      if (pk === 'key-pacer#k' && input.ExpressionAttributeValues![':room'] && !raced) {
        raced = true;
        // Another dispatcher's slot for the key, just before ours.
        const contract = Number(table.items.get('pacer')!.nextSlotAtMs);
        table.items.set(pk, { lastSlotAtMs: String(contract - 20) });
      }
    };
    const d = deps(source({ k: spec(5) }));
    await dispatchBatch({ Records: [submit('a', 'k')] }, d);
    const I = keyIntervalMs(spec(5), L);
    const [input] = started();
    const stored = Number(table.items.get('key-pacer#k')!.lastSlotAtMs);
    expect(input.slotAtMs).toBe(stored);
    expect(d.metrics.addMetric.mock.calls.filter(([name]) => name === 'KeySlotsWasted').map(([, , v]) => v)).toEqual([1]);
    // Its slot is at least I_k after the other dispatcher's.
    const writes = table.writes.filter((w) => w.pk === 'key-pacer#k' && w.input.ExpressionAttributeValues![':room']);
    expect(writes).toHaveLength(1);
    expect(input.slotAtMs - Number(writes[0].before.lastSlotAtMs)).toBeGreaterThanOrEqual(I);
    expect(ddb.commandCalls(UpdateItemCommand).length).toBeGreaterThan(2);
  });
});
