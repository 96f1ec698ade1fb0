/**
 * The dispatcher and request priorities (issue 15, item 4): a batch's slots go to higher effective
 * priority first (priority-order.ts), keyed or not; a valid priority travels into the workflows'
 * input (their retries and deferrals keep it); an invalid one fails the waiting task with
 * InvalidRequestPriority at once, with no slot, no execution and no dead-letter message.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SendTaskFailureCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { answerDispatchByDefault, callRecordAt, TEST_DISPATCH_CONFIG, testDispatchDeps } from './dispatch-fixtures';
import { requestRecord } from './sqs-record';
import { dispatchBatch, DispatchConfig, DispatchDeps } from '../../src/rate-controlled-queue-consumer/dispatch';
import type { KeyLimitsSource, KeyLimitsSpec } from '../../src/shared/key-limits';
import { DEFAULT_PRIORITY_AGING_MS } from '../../src/shared/request-priority';

const ddb = mockClient(DynamoDBClient);
const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_800_000_001_000;
const CONFIG: DispatchConfig = { ...TEST_DISPATCH_CONFIG, callStateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:call' };

const deps = (extra: Partial<DispatchDeps> = {}): DispatchDeps => ({ ...testDispatchDeps(CONFIG, T0), ...extra });

/** A submission first received at T0, its message first sent `sentAgoMs` before. */
const submit = (requestId: string, extra: Record<string, unknown> = {}, sentAgoMs = 0) =>
  requestRecord({ taskToken: `token-${requestId}`, requestId, payload: {}, ...extra }, `m-${requestId}`, T0 - sentAgoMs);
const call = (requestId: string, extra: Record<string, unknown> = {}) => callRecordAt(requestId, T0, extra);

/** The started executions' request ids and slots, in the order they were started. */
function started(): Array<{ requestId: string; slotAtMs: number; priority?: string }> {
  return sfn.commandCalls(StartExecutionCommand).map((c) => JSON.parse(c.args[0].input.input!));
}

beforeEach(() => answerDispatchByDefault(ddb, sfn, sqs));

describe('dispatchBatch orders a batch by priority before assigning slots', () => {
  test('GIVEN a high message last in a batch of normals WHEN dispatched THEN it gets the first slot; the normals keep their order', async () => {
    const response = await dispatchBatch({ Records: [submit('n1'), submit('n2'), call('n3'), submit('h', { priority: 'high' })] }, deps());
    expect(response).toEqual({ batchItemFailures: [] });
    const starts = started();
    expect(starts.map((s) => s.requestId)).toEqual(['h', 'n1', 'n2', 'n3']);
    // Slots increase in that order (10 rps: about 100 ms apart).
    expect(starts.map((s) => s.slotAtMs)).toEqual([...starts.map((s) => s.slotAtMs)].sort((a, b) => a - b));
    expect(starts[0].slotAtMs).toBeLessThan(starts[1].slotAtMs);
  });

  test('GIVEN low, normal and high calls and submissions mixed WHEN dispatched THEN high, normal, low; the oldest first within a level', async () => {
    await dispatchBatch({
      Records: [submit('low', { priority: 'low' }), call('normal-new'), submit('normal-old', {}, 5_000), call('high', { priority: 'high' })],
    }, deps());
    expect(started().map((s) => s.requestId)).toEqual(['high', 'normal-old', 'normal-new', 'low']);
  });

  test('GIVEN a low request that has waited two aging periods since it started WHEN a fresh high one comes in its batch THEN the old low one is served first (aging)', async () => {
    await dispatchBatch({ Records: [submit('high', { priority: 'high' }), submit('aged-low', { priority: 'low' }, 2 * DEFAULT_PRIORITY_AGING_MS)] }, deps());
    expect(started().map((s) => s.requestId)).toEqual(['aged-low', 'high']);
  });

  test('GIVEN per-key limits WHEN a keyed low request waited longer than its key\'s priorityAging THEN it ages by the key\'s setting; the unkeyed one by the default', async () => {
    const spec: KeyLimitsSpec = { requestsPerSecond: 5, quotas: {}, priorityAgingMs: 1_000, paused: false };
    const keyLimits: KeyLimitsSource = { limitsFor: async (keys) => new Map(keys.map((k) => [k, spec])) };
    await dispatchBatch({
      Records: [submit('unkeyed-normal'), submit('unkeyed-low', { priority: 'low' }, 1_500), submit('keyed-low', { priority: 'low', key: 'acme' }, 1_500)],
    }, deps({ keyLimits }));
    // keyed-low: one level per second, 1.5 s waited: normal, and older than unkeyed-normal.
    expect(started().map((s) => s.requestId)).toEqual(['keyed-low', 'unkeyed-normal', 'unkeyed-low']);
  });

  test('GIVEN a priority WHEN dispatched THEN both workflows\' inputs carry it (for their retries and deferrals); none without one', async () => {
    await dispatchBatch({ Records: [submit('a', { priority: 'low' }), call('b', { priority: 'high' }), submit('c'), submit('d', { priority: null })] }, deps());
    const inputs = started();
    expect(inputs.map((i) => [i.requestId, i.priority])).toEqual([['b', 'high'], ['c', undefined], ['d', undefined], ['a', 'low']]);
    expect(inputs.filter((i) => i.requestId !== 'a' && i.requestId !== 'b').every((i) => !('priority' in i))).toBe(true);
  });
});

describe('dispatchBatch refuses an invalid priority', () => {
  test('GIVEN an invalid priority WHEN dispatched THEN its task fails with InvalidRequestPriority, nothing starts, nothing is parked, the message is deleted; the valid ones are dispatched', async () => {
    const response = await dispatchBatch({
      Records: [submit('urgent', { priority: 'urgent' }), call('number', { priority: 1 }), submit('upper', { priority: 'HIGH' }), submit('good', { priority: 'high' })],
    }, deps());
    expect(response).toEqual({ batchItemFailures: [] });
    const failures = sfn.commandCalls(SendTaskFailureCommand).map((c) => c.args[0].input);
    expect(failures.map((f) => [f.taskToken, f.error])).toEqual([
      ['token-urgent', 'InvalidRequestPriority'], ['token-number', 'InvalidRequestPriority'], ['token-upper', 'InvalidRequestPriority'],
    ]);
    expect(failures[0].cause).toBe("the priority must be one of 'high', 'normal', 'low' (given \"urgent\")");
    expect(started().map((s) => s.requestId)).toEqual(['good']);
    // Not parked: no message to the dead-letter queue.
    expect(sqs.commandCalls(SendMessageCommand)).toHaveLength(0);
  });

  test('GIVEN an invalid key and an invalid priority WHEN dispatched THEN the task fails once, with InvalidRequestKey', async () => {
    await dispatchBatch({ Records: [submit('both', { key: 'two words', priority: 'urgent' })] }, deps());
    expect(sfn.commandCalls(SendTaskFailureCommand).map((c) => c.args[0].input.error)).toEqual(['InvalidRequestKey']);
  });

  test('GIVEN Step Functions unreachable WHEN a priority is refused THEN the message stays on the queue; a closed task lets it go', async () => {
    const unreachable = new Error('socket hang up');
    unreachable.name = 'ServiceUnavailable';
    const closed = new Error('gone');
    closed.name = 'TaskTimedOut';
    sfn.on(SendTaskFailureCommand, { taskToken: 'token-a' }).rejects(unreachable).on(SendTaskFailureCommand, { taskToken: 'token-b' }).rejects(closed);
    const d = deps();
    const response = await dispatchBatch({ Records: [submit('a', { priority: 'urgent' }), submit('b', { priority: 'urgent' })] }, d);
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'm-a' }] });
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(0);
    expect((d.logger.warn as jest.Mock).mock.calls.map(([message]) => message)).toEqual(expect.arrayContaining([
      'request with an invalid priority: could not fail its waiting task; the message stays on the queue',
      'request refused: invalid priority; its waiting task was already closed',
    ]));
  });
});
