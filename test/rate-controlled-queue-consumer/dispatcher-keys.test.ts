/**
 * The dispatcher and request keys (issue 15, item 1): a valid key travels into the workflows'
 * input; a missing or invalid one fails the waiting task with InvalidRequestKey at once, with no
 * slot, no execution and no dead-letter message, and the message is deleted.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SendTaskFailureCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { answerDispatchByDefault, callRecordAt, TEST_DISPATCH_CONFIG, testDispatchDeps } from './dispatch-fixtures';
import { requestRecord } from './sqs-record';
import { dispatchBatch, DispatchConfig, DispatchDeps, loadConfig } from '../../src/rate-controlled-queue-consumer/dispatch';
import { messageKeyProblem } from '../../src/rate-controlled-queue-consumer/request-key-check';
import { requestKeyProblem } from '../../src/shared/request-key';

const ddb = mockClient(DynamoDBClient);
const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_800_000_001_000;
const CONFIG: DispatchConfig = { ...TEST_DISPATCH_CONFIG, callStateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:call' };

const deps = (config: DispatchConfig = CONFIG): DispatchDeps => testDispatchDeps(config, T0);

const submit = (requestId: string, extra: Record<string, unknown> = {}) =>
  requestRecord({ taskToken: `token-${requestId}`, requestId, payload: {}, ...extra }, `m-${requestId}`, T0);
const call = (requestId: string, extra: Record<string, unknown> = {}) => callRecordAt(requestId, T0, extra);

beforeEach(() => answerDispatchByDefault(ddb, sfn, sqs));

describe('requestKeyProblem (what an SQS MessageGroupId allows)', () => {
  test.each([['acme'], ['customer-42'], ['a'], ['x'.repeat(128)], ['!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~']])('accepts %j', (key) => {
    expect(requestKeyProblem(key)).toBeUndefined();
  });
  test.each([
    ['', /1 to 128 characters/],
    ['x'.repeat(129), /1 to 128 characters.*129 characters/],
    ['two words', /1 to 128 characters/],
    ['caf\u00e9', /1 to 128 characters/],
    [42, /must be a string \(given the number 42\).*States.Format|\$string/],
    [null, /has no key/],
    [undefined, /has no key/],
    [{ id: 1 }, /given an object/],
  ])('refuses %j', (key, message) => {
    expect(requestKeyProblem(key)).toMatch(message);
  });
  test('a message without a key is fine unless keys are required (per-key credentials)', () => {
    expect(messageKeyProblem({ taskToken: 't', requestId: 'r', payload: {} }, false)).toBeUndefined();
    expect(messageKeyProblem({ taskToken: 't', requestId: 'r', payload: {} }, true)).toMatch(/has no key.*credential is per key/);
  });
});

describe('dispatchBatch with keys', () => {
  test('GIVEN valid keys WHEN dispatched THEN the dispatch and vendor-call inputs carry them', async () => {
    const response = await dispatchBatch({ Records: [submit('a', { key: 'acme' }), call('b', { key: 'globex' })] }, deps());
    expect(response).toEqual({ batchItemFailures: [] });
    const inputs = sfn.commandCalls(StartExecutionCommand).map((c) => JSON.parse(c.args[0].input.input!));
    expect(inputs.map((i) => [i.requestId, i.key, i.message.key])).toEqual([['a', 'acme', 'acme'], ['b', 'globex', 'globex']]);
    expect(sfn.commandCalls(SendTaskFailureCommand)).toHaveLength(0);
  });

  test('GIVEN requests with and without a key WHEN dispatched THEN DispatchedRequests and PacingWait carry the key (an EMF property), none without', async () => {
    const d = deps();
    await dispatchBatch({ Records: [submit('a', { key: 'acme' }), submit('b')] }, d);
    const calls = (d.metrics.addMetric as jest.Mock).mock.calls.filter(([name]) => name === 'DispatchedRequests' || name === 'PacingWait');
    expect(calls.map(([name, , , key]) => [name, key])).toEqual([
      ['DispatchedRequests', 'acme'], ['PacingWait', 'acme'], ['DispatchedRequests', undefined], ['PacingWait', undefined],
    ]);
  });

  test('GIVEN no key and keys optional WHEN dispatched THEN the input has no key field (as before issue 15)', async () => {
    await dispatchBatch({ Records: [submit('a')] }, deps());
    const input = JSON.parse(sfn.commandCalls(StartExecutionCommand)[0].args[0].input.input!);
    expect('key' in input).toBe(false);
  });

  test('GIVEN an invalid or missing key WHEN dispatched THEN its task fails with InvalidRequestKey, nothing starts, nothing is parked, the message is deleted; the valid one is dispatched', async () => {
    const response = await dispatchBatch({
      Records: [submit('bad', { key: 'two words' }), call('missing', { key: null }), submit('number', { key: 42 }), submit('good', { key: 'acme' })],
    }, deps());
    expect(response).toEqual({ batchItemFailures: [] });
    const failures = sfn.commandCalls(SendTaskFailureCommand).map((c) => c.args[0].input);
    expect(failures.map((f) => [f.taskToken, f.error])).toEqual([
      ['token-bad', 'InvalidRequestKey'], ['token-missing', 'InvalidRequestKey'], ['token-number', 'InvalidRequestKey'],
    ]);
    expect(failures[1].cause).toMatch(/has no key/);
    const started = sfn.commandCalls(StartExecutionCommand).map((c) => JSON.parse(c.args[0].input.input!).requestId);
    expect(started).toEqual(['good']);
    // Not parked: no message to the dead-letter queue.
    expect(sqs.commandCalls(SendMessageCommand)).toHaveLength(0);
  });

  test('GIVEN keys required (REQUIRE_REQUEST_KEY) WHEN a message has no key field THEN its task fails with InvalidRequestKey', async () => {
    const config = loadConfig({
      STATE_MACHINE_ARN: CONFIG.stateMachineArn,
      REQUESTS_PER_SECOND: '10',
      PACER_TABLE_NAME: 'pacer',
      MAX_PACING_WAIT_MS: '2000',
      CORRELATION_TTL_SECONDS: '86400',
      DEAD_LETTER_QUEUE_URL: CONFIG.deadLetterQueueUrl,
      REQUIRE_REQUEST_KEY: 'true',
    });
    expect(config.requireKey).toBe(true);
    await dispatchBatch({ Records: [submit('a'), submit('b', { key: 'acme' })] }, deps(config));
    expect(sfn.commandCalls(SendTaskFailureCommand).map((c) => [c.args[0].input.taskToken, c.args[0].input.error, c.args[0].input.cause]))
      .toEqual([['token-a', 'InvalidRequestKey', expect.stringMatching(/credential is per key/)]]);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(1);
  });

  test('GIVEN Step Functions unreachable WHEN a key is refused THEN the message stays on the queue; a closed task lets it go', async () => {
    const unreachable = new Error('socket hang up');
    unreachable.name = 'ServiceUnavailable';
    const closed = new Error('gone');
    closed.name = 'TaskTimedOut';
    sfn.on(SendTaskFailureCommand, { taskToken: 'token-a' }).rejects(unreachable).on(SendTaskFailureCommand, { taskToken: 'token-b' }).rejects(closed);
    const response = await dispatchBatch({ Records: [submit('a', { key: '' }), submit('b', { key: '' })] }, deps());
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'm-a' }] });
  });
});
