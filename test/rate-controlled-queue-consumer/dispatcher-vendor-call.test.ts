/**
 * The dispatcher's routing by message kind: job submissions start the dispatch workflow, vendor
 * calls (`kind: 'call'`, from callVendorTask) start the vendor-call workflow; both are paced alike.
 */
import { ConditionalCheckFailedException, DynamoDBClient, GetItemCommand, UpdateItemCommand, UpdateItemCommandInput } from '@aws-sdk/client-dynamodb';
import { SendTaskFailureCommand, SFNClient, StartExecutionCommand, StartExecutionCommandInput } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { dispatchBatch, DispatchConfig, DispatchDeps, loadConfig, parseRequestMessage } from '../../src/rate-controlled-queue-consumer/dispatch';
import { Clock } from '../../src/rate-controlled-queue-consumer/pacer';
import { normalizeVendorCall, pathProblem } from '../../src/shared/vendor-call';

const ddb = mockClient(DynamoDBClient);
const sfn = mockClient(SFNClient);
const sqs = mockClient(SQSClient);

const T0 = 1_700_000_000_000;
const DISPATCH_ARN = 'arn:aws:states:eu-west-1:123456789012:stateMachine:dispatch';
const CALL_ARN = 'arn:aws:states:eu-west-1:123456789012:stateMachine:vendor-call';
const CONFIG: DispatchConfig = {
  stateMachineArn: DISPATCH_ARN,
  callStateMachineArn: CALL_ARN,
  requestsPerSecond: 10,
  pacerTableName: 'pacer',
  maxPacingWaitMs: 5_000,
  latenessToleranceMs: 50,
  correlationTtlSeconds: 86_400,
  deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/requests-dlq',
};

function fakeClock(): Clock & { t: number } {
  const clock = { t: T0, now: () => clock.t, sleep: async (ms: number) => { clock.t += ms; } };
  return clock;
}

function record(body: unknown, messageId: string): SQSRecord {
  return {
    messageId,
    receiptHandle: `receipt-${messageId}`,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(T0), SenderId: 's', ApproximateFirstReceiveTimestamp: String(T0) },
    messageAttributes: {},
    md5OfBody: 'md5',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:requests',
    awsRegion: 'eu-west-1',
  };
}

function deps(clock: Clock, config: DispatchConfig = CONFIG): DispatchDeps {
  return {
    clients: { dynamodb: new DynamoDBClient({}), sfn: new SFNClient({}), sqs: new SQSClient({}) },
    config,
    logger: { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() } as any,
    metrics: { addMetric: jest.fn() },
    clock,
    random: () => 0.5,
  };
}

const callMessage = (requestId: string, call: unknown = { method: 'GET', path: '/job-1/result' }) =>
  ({ kind: 'call', taskToken: `token-${requestId}`, requestId, call, attempt: 1 });
const submission = (requestId: string) => ({ taskToken: `token-${requestId}`, requestId, payload: { n: 1 } });

beforeEach(() => {
  ddb.reset();
  sfn.reset();
  sqs.reset();
  let stored: string | undefined;
  ddb.on(GetItemCommand).callsFake(async () => ({ Item: stored === undefined ? undefined : { pk: { S: 'pacer' }, nextSlotAtMs: { N: stored } } }));
  ddb.on(UpdateItemCommand).callsFake(async (input: UpdateItemCommandInput) => {
    const values = input.ExpressionAttributeValues!;
    const holds = input.ConditionExpression!.startsWith('attribute_not_exists(#next)') ? stored === undefined : Number(stored) === Number(values[':old'].N);
    if (!holds) throw new ConditionalCheckFailedException({ message: 'conditional', $metadata: {} });
    stored = values[':new'].N;
    return {};
  });
  sfn.on(StartExecutionCommand).callsFake(async (input: StartExecutionCommandInput) => ({ executionArn: `arn:x:${input.name}`, startDate: new Date() }));
  sfn.on(SendTaskFailureCommand).resolves({});
  sqs.on(SendMessageCommand).resolves({ MessageId: 'dlq' });
  sqs.on(ChangeMessageVisibilityCommand).resolves({});
});

describe('dispatcher: vendor calls', () => {
  test('starts the vendor-call workflow for a call and the dispatch workflow for a submission, each in its own pacing slot', async () => {
    // GIVEN
    const clock = fakeClock();
    const startTimes: Record<string, number> = {};
    sfn.on(StartExecutionCommand).callsFake(async (input: StartExecutionCommandInput) => {
      startTimes[input.name!] = clock.now();
      return { executionArn: `arn:x:${input.name}`, startDate: new Date() };
    });

    // WHEN
    const response = await dispatchBatch({
      Records: [record(submission('sub-1'), 'm1'), record(callMessage('call-1', { method: 'get', path: '/job-1/result', query: { a: 'b' } }), 'm2')],
    }, deps(clock));

    // THEN
    expect(response.batchItemFailures).toEqual([]);
    const starts = sfn.commandCalls(StartExecutionCommand).map((c) => c.args[0].input);
    expect(starts.map((s) => s.stateMachineArn)).toEqual([DISPATCH_ARN, CALL_ARN]);
    const callInput = JSON.parse(starts[1].input!);
    expect(callInput).toEqual({
      requestId: 'call-1',
      taskToken: 'token-call-1',
      attempt: 1,
      // The workflow's ClaimCall: attempt x 1000 + deferrals, kept for the correlation TTL.
      deferrals: 0,
      claimSeq: 1000,
      expiresAt: expect.any(Number),
      call: { method: 'GET', path: '/job-1/result', query: { a: ['b'] } },
      message: { ...callMessage('call-1', { method: 'get', path: '/job-1/result', query: { a: 'b' } }), requestStartedAtMs: T0 },
      // The vendor caller fires at this slot (PacingPoint.VENDOR_CALL).
      slotAtMs: expect.any(Number),
      // The call's start (the first delivery's SentTimestamp): its quota deadline counts from it.
      requestStartedAtMs: T0,
      // The call ends no job (callVendorTask's endsJobOf): always present for the workflow.
      endsJobOf: null,
      // Issue 15: no per-key limits (always present for the workflow).
      keyLimits: null,
    });
    expect(callInput.expiresAt - T0 / 1000).toBeGreaterThanOrEqual(CONFIG.correlationTtlSeconds);
    // A call is one vendor request: it takes a slot of its own, one interval (105 ms) after the submission's.
    const [first, second] = Object.values(startTimes);
    expect(second - first).toBeGreaterThanOrEqual(105);
  });

  test('a call with a body keeps it; a call without one has no body field', async () => {
    const clock = fakeClock();
    await dispatchBatch({
      Records: [
        record(callMessage('c-1', { method: 'POST', path: '/jobs', body: { x: 1 } }), 'm1'),
        record(callMessage('c-2', { method: 'DELETE', path: '/jobs/1', body: null }), 'm2'),
      ],
    }, deps(clock));
    const inputs = sfn.commandCalls(StartExecutionCommand).map((c) => JSON.parse(c.args[0].input!.input!));
    expect(inputs[0].call).toEqual({ method: 'POST', path: '/jobs', query: {}, body: { x: 1 } });
    expect(inputs[1].call).toEqual({ method: 'DELETE', path: '/jobs/1', query: {} });
  });

  /** Step Functions' throttling answer (an error outside the SFN model: the SDK names it by its code). */
  const throttled = () => Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });

  test('a throttled StartExecution is tried again within the slot\'s start tolerance, not after the queue\'s visibility timeout', async () => {
    // GIVEN a lead of 1 s (start tolerance 500 ms) and a StartExecution throttled twice
    const clock = fakeClock();
    const startTimes: number[] = [];
    let calls = 0;
    sfn.on(StartExecutionCommand).callsFake(async (input: StartExecutionCommandInput) => {
      startTimes.push(clock.now());
      if (++calls <= 2) throw throttled();
      return { executionArn: `arn:x:${input.name}`, startDate: new Date() };
    });

    // WHEN
    const response = await dispatchBatch({ Records: [record(submission('sub-1'), 'm1')] }, deps(clock, { ...CONFIG, leadMs: 1000 }));

    // THEN the third try started it: nothing goes back to the queue; the tries were 37.5 and 75 ms
    // apart (50 and 100 ms, equal jitter at random 0.5), well within the 500 ms a start may be late with this lead.
    expect(response.batchItemFailures).toEqual([]);
    expect(startTimes.map((t) => t - startTimes[0])).toEqual([0, 37.5, 112.5]);
    const names = sfn.commandCalls(StartExecutionCommand).map((c) => c.args[0].input.name);
    expect(new Set(names).size).toBe(1);
  });

  test('a start throttled on every try goes back to the queue, never started later than a first start may be', async () => {
    // GIVEN a lead of 1 s and a StartExecution throttled on every try
    const clock = fakeClock();
    const startTimes: number[] = [];
    sfn.on(StartExecutionCommand).callsFake(async () => {
      startTimes.push(clock.now());
      throw throttled();
    });

    // WHEN
    const response = await dispatchBatch({ Records: [record(submission('sub-1'), 'm1')] }, deps(clock, { ...CONFIG, leadMs: 1000 }));

    // THEN four tries in 262.5 ms, then a batch item failure; without a lead (start tolerance 50 ms) only two
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: 'm1' }]);
    expect(startTimes.map((t) => t - startTimes[0])).toEqual([0, 37.5, 112.5, 262.5]);
    startTimes.length = 0;
    expect((await dispatchBatch({ Records: [record(submission('sub-2'), 'm2')] }, deps(fakeClock()))).batchItemFailures).toEqual([{ itemIdentifier: 'm2' }]);
    expect(startTimes).toHaveLength(2);
  });

  test('a malformed call is parked and its waiting task failed, naming every problem', async () => {
    const clock = fakeClock();
    const response = await dispatchBatch({
      Records: [record(callMessage('bad', { method: 'TRACE', path: 'no-slash', body: { a: 1 } }), 'm1')],
    }, deps(clock));
    expect(response.batchItemFailures).toEqual([]);
    expect(sfn).not.toHaveReceivedCommand(StartExecutionCommand);
    const parked = sqs.commandCalls(SendMessageCommand)[0].args[0].input;
    expect(parked.MessageAttributes!.detail.StringValue).toMatch(/call\.method must be one of GET, POST, PUT, PATCH, DELETE \(given "TRACE"\); call\.path must start with '\/'/);
    expect(sfn).toHaveReceivedCommandWith(SendTaskFailureCommand, { taskToken: 'token-bad', error: 'VendorRequestFailed' });
  });

  test('a call reaching a consumer without a vendor-call workflow is parked and failed, not retried', async () => {
    const clock = fakeClock();
    const { callStateMachineArn: _, ...withoutCalls } = CONFIG;
    const response = await dispatchBatch({ Records: [record(callMessage('c-1'), 'm1')] }, deps(clock, withoutCalls));
    expect(response.batchItemFailures).toEqual([]);
    expect(sfn).not.toHaveReceivedCommand(StartExecutionCommand);
    expect(sqs.commandCalls(SendMessageCommand)[0].args[0].input.MessageAttributes!.detail.StringValue).toMatch(/vendor calls \(kind 'call'\) are not enabled/);
    expect(sfn).toHaveReceivedCommandWith(SendTaskFailureCommand, { taskToken: 'token-c-1' });
  });

  test('an unknown kind is refused', () => {
    const parsed = parseRequestMessage(JSON.stringify({ ...submission('x'), kind: 'poll' }));
    expect(parsed).toEqual({ ok: false, detail: 'kind must be \'submit\', \'call\' or absent (given "poll")', taskToken: 'token-x' });
    expect(parseRequestMessage(JSON.stringify({ ...submission('x'), kind: 'submit' })).ok).toBe(true);
  });

  test('loadConfig reads the vendor-call workflow ARN when set', () => {
    const env = {
      STATE_MACHINE_ARN: DISPATCH_ARN,
      REQUESTS_PER_SECOND: '10',
      PACER_TABLE_NAME: 'p',
      MAX_PACING_WAIT_MS: '1000',
      CORRELATION_TTL_SECONDS: '60',
      DEAD_LETTER_QUEUE_URL: 'https://q',
    };
    expect(loadConfig(env).callStateMachineArn).toBeUndefined();
    expect(loadConfig({ ...env, CALL_STATE_MACHINE_ARN: CALL_ARN }).callStateMachineArn).toBe(CALL_ARN);
  });
});

describe('vendor call validation', () => {
  test.each([
    ['/', undefined],
    ['/job-1/result', undefined],
    ['/jobs/a%20b/', undefined],
    ['/a:b@c', undefined],
    ['', /must start with '\/'/],
    ['//x', /empty, '\.' or '\.\.' segments/],
    ['/a/./b', /empty, '\.' or '\.\.' segments/],
    ['/a%zz', /%XX escapes/],
    ['/a\nb', /URL path characters/],
    [`/${'a'.repeat(2048)}`, /at most 2048 characters/],
  ])('path %j', (path, problem) => {
    const result = pathProblem(path);
    if (problem === undefined) {
      expect(result).toBeUndefined();
    } else {
      expect(result).toMatch(problem);
    }
  });

  test('query values must be strings', () => {
    expect(normalizeVendorCall({ method: 'GET', path: '/x', query: { page: 2 } })).toEqual({
      ok: false, problems: ['call.query.page must be a string or an array of strings'],
    });
    expect(normalizeVendorCall({ method: 'GET', path: '/x', body: {} })).toEqual({ ok: false, problems: ['call.body must not be given with GET'] });
    expect(normalizeVendorCall('GET /x')).toEqual({ ok: false, problems: ['call must be an object { method, path, query?, body? }'] });
  });
});
