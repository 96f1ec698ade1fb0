/**
 * Executes the synthesized dispatch workflow (the template's own definition, not a copy) with
 * aws-local-stepfunctions, replacing each AWS call by a local handler that records its input.
 * This checks the behaviour of the states: intrinsics, choices, catches and the retry path.
 */
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { callerAnswerDuringVendorPause } from './vendor-caller-answers';
import { AsyncExternalApiOrchestrator, AsyncExternalApiOrchestratorProps, CallbackUrlDelivery, PacingPoint } from '../../src';
import { Execution, TaskHandler, executeDefinition } from '../asl/execute';
import { AslDefinition, definitionOf, logicalIdOf, testStack } from '../util';

/** An error as Step Functions reports it: `name` is the error name a Catch matches. */
function stepError(name: string, cause = ''): Error {
  const error = new Error(cause);
  error.name = name;
  return error;
}

function dispatchDefinition(overrides: Partial<AsyncExternalApiOrchestratorProps> = {}): AslDefinition {
  const stack = testStack();
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
    ...overrides,
  });
  const main = new sfn.StateMachine(stack, 'Main', {
    definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromJsonPathAt('$.order') })),
  });
  orchestrator.registerWorkflow(main);
  return definitionOf(Template.fromStack(stack), logicalIdOf(stack, orchestrator.dispatch.stateMachine));
}

type Handler = TaskHandler;

/** Runs the definition once (test/asl/execute.ts); every Task state must have a handler (else the test fails). */
function run(definition: AslDefinition, input: unknown, handlers: Record<string, Handler>): Promise<Execution> {
  // The waiting workflow is still waiting unless a test says otherwise.
  return executeDefinition(definition, input, handlers, {
    defaultHandlers: { CheckWaitingWorkflow: ok },
    context: { Execution: { StartTime: '2026-11-27T12:00:00.000Z' } },
  });
}

const SLOT = 1_900_000_000_123;
/** When the request's first message reached the queue (the dispatcher stamps it). */
const REQUEST_STARTED_AT = SLOT - 60_000;

function dispatchInput(attempt = 1, payload: unknown = { order: 'o-1', amount: 3 }) {
  const message = { taskToken: 'token-1', requestId: 'req-1', payload, attempt };
  return {
    ...message,
    expiresAt: 1_900_000_000,
    deferrals: 0,
    claimSeq: attempt * 1000,
    message,
    callbackToken: INPUT_TOKEN,
    slotAtMs: SLOT,
    requestStartedAtMs: REQUEST_STARTED_AT,
  };
}

const ok = () => ({});
/** The callback token this dispatch minted, and the one the item already held (a redelivery's). */
const INPUT_TOKEN = 'T'.repeat(43);
const STORED_TOKEN = 'S'.repeat(43);
/** ClaimRequest succeeded (ALL_NEW): the item holds the first token stored for the request. */
const claimed = () => ({ Attributes: { requestId: { S: 'req-1' }, taskToken: { S: 'token-1' }, callbackToken: { S: STORED_TOKEN } } });
/** The vendor caller's answer (PacingPoint.VENDOR_CALL, the default): the function's result as is. */
const vendorAccepts = (body: unknown) => () => ({ Payload: { statusCode: 200, body, requeue: null }, StatusCode: 200 });

describe('dispatch workflow, executed', () => {
  const definition = dispatchDefinition();

  test('submits the payload with the webhook URL and idempotency key, then stores the job id', async () => {
    // GIVEN a vendor that accepts the job
    // WHEN
    const result = await run(definition, dispatchInput(), {
      ClaimRequest: claimed,
      CallVendor: vendorAccepts({ jobId: 'job-42' }),
      StoreJobId: ok,
    });

    // THEN
    expect(result.error).toBeUndefined();
    const claim = result.calls.ClaimRequest[0];
    expect(claim.ConditionExpression).toBe('attribute_not_exists(#job) AND (attribute_not_exists(#claimSeq) OR #claimSeq < :claimSeq)');
    expect(claim.ExpressionAttributeValues[':claimSeq']).toEqual({ N: '1000' });
    expect(claim.ExpressionAttributeValues[':token']).toEqual({ S: 'token-1' });
    expect(claim.ExpressionAttributeValues[':expires']).toEqual({ N: '1900000000' });
    expect(result.calls.CallVendor[0].FunctionName).toMatch(/VendorCaller/);
    const call = result.calls.CallVendor[0].Payload;
    expect(call.method).toBe('POST');
    expect(call.slotAtMs).toBe(SLOT);
    expect(call.requestId).toBe('req-1');
    expect(call.headers['Idempotency-Key']).toEqual(['req-1']);
    // The capability URL carries the token the item holds, not necessarily the one this dispatch minted.
    expect(claim.ExpressionAttributeValues[':cbToken']).toEqual({ S: INPUT_TOKEN });
    expect(call.body).toEqual({ order: 'o-1', amount: 3, callbackUrl: expect.stringMatching(new RegExp(`/callback/${STORED_TOKEN}$`)) });
    expect(result.calls.StoreJobId[0].ExpressionAttributeValues[':job']).toEqual({ S: 'job-42' });
    expect(result.calls.StoreJobId[0].Key).toEqual({ requestId: { S: 'req-1' } });
  });

  test('an execution started by a dispatcher of an earlier version (no requestStartedAtMs or key in its input) submits and stores the job id: the fields are filled with null, no States.Runtime (input-defaults.ts)', async () => {
    // GIVEN the input of an old dispatcher: a deploy updates this workflow before the dispatcher
    const { requestStartedAtMs: _start, ...oldInput } = dispatchInput();
    // WHEN
    const result = await run(definition, oldInput, { ClaimRequest: claimed, CallVendor: vendorAccepts({ jobId: 'job-42' }), StoreJobId: ok });
    // THEN
    expect(result.error).toBeUndefined();
    expect(result.calls.CallVendor[0].Payload).toMatchObject({ requestId: 'req-1', requestStartedAtMs: null });
    expect(result.calls.StoreJobId[0].ExpressionAttributeValues[':job']).toEqual({ S: 'job-42' });
  });

  test('stores a numeric job id as a string', async () => {
    const result = await run(definition, dispatchInput(), { ClaimRequest: claimed, CallVendor: vendorAccepts({ jobId: 1234 }), StoreJobId: ok });
    expect(result.error).toBeUndefined();
    expect(result.calls.StoreJobId[0].ExpressionAttributeValues[':job']).toEqual({ S: '1234' });
  });

  test('a redelivered request whose job was submitted already does not call the vendor', async () => {
    const result = await run(definition, dispatchInput(), {
      ClaimRequest: () => {
        throw stepError('DynamoDB.ConditionalCheckFailedException', 'The conditional request failed');
      },
    });
    expect(result.error).toBeUndefined();
    expect(result.calls.CallVendor).toBeUndefined();
  });

  test.each([
    ['ApiGateway.429', 1, 2],
    ['APIGateway.503', 2, 4],
    ['ApiGateway.500', 3, 8],
    ['States.Timeout', 4, 16],
  ])('a retryable failure (%s) on attempt %d goes back through the queue with a delay of at most %d s', async (errorName, attempt, cap) => {
    // GIVEN / WHEN
    const result = await run(definition, dispatchInput(attempt), {
      ClaimRequest: claimed,
      CallVendor: () => {
        throw stepError(errorName, '{"message":"slow down"}');
      },
      RequeueWithDelay: ok,
    });

    // THEN the request is re-enqueued with the same id, the next attempt number and full jitter
    expect(result.error).toBeUndefined();
    const requeue = result.calls.RequeueWithDelay[0];
    expect(requeue.QueueUrl).toMatch(/RequestQueue/);
    // SQS takes a whole number of seconds, 0 to 900; full jitter draws it from [0, cap].
    expect(Number.isInteger(requeue.DelaySeconds)).toBe(true);
    expect(requeue.DelaySeconds).toBeGreaterThanOrEqual(0);
    expect(requeue.DelaySeconds).toBeLessThanOrEqual(cap);
    expect(JSON.parse(requeue.MessageBody)).toEqual({
      taskToken: 'token-1',
      requestId: 'req-1',
      payload: { order: 'o-1', amount: 3 },
      attempt: attempt + 1,
      callbackToken: INPUT_TOKEN,
      requestStartedAtMs: REQUEST_STARTED_AT, // the retry keeps the request's start (its quota deadline)
      priority: null, // ... and its priority (none: normal)
    });
    expect(result.calls.ParkInDeadLetterQueue).toBeUndefined();
  });

  test('the full-jitter delays spread over the whole range', async () => {
    const delays = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const result = await run(definition, dispatchInput(4), {
        ClaimRequest: claimed,
        CallVendor: () => {
          throw stepError('ApiGateway.503');
        },
        RequeueWithDelay: ok,
      });
      delays.add(result.calls.RequeueWithDelay[0].DelaySeconds);
    }
    // Attempt 4 has a cap of 16 s: 40 draws that land on a handful of values would not be jitter.
    expect(delays.size).toBeGreaterThanOrEqual(6);
    // Both halves of [0, 16]: not a fixed or half-range delay.
    expect(Math.min(...delays)).toBeLessThan(8);
    expect(Math.max(...delays)).toBeGreaterThanOrEqual(8);
    expect(Math.max(...delays)).toBeLessThanOrEqual(16);
  });

  test('the last attempt gives up: the request is parked unchanged and the waiting workflow fails at once', async () => {
    // GIVEN attempt 5 of 5
    const result = await run(definition, dispatchInput(5), {
      ClaimRequest: claimed,
      CallVendor: () => {
        throw stepError('ApiGateway.502', 'bad gateway');
      },
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: ok,
    });

    // THEN
    expect(result.calls.RequeueWithDelay).toBeUndefined();
    const park = result.calls.ParkInDeadLetterQueue[0];
    expect(park.QueueUrl).toMatch(/RequestDeadLetterQueue/);
    expect(JSON.parse(park.MessageBody)).toEqual(dispatchInput(5).message);
    expect(park.MessageAttributes.reason).toEqual({ DataType: 'String', StringValue: 'ApiGateway.502' });
    const fail = result.calls.FailWaitingWorkflow[0];
    expect(fail).toMatchObject({ TaskToken: 'token-1', Error: 'VendorRequestFailed' });
    expect(JSON.parse(fail.Cause)).toMatchObject({ Error: 'ApiGateway.502', Cause: 'bad gateway' });
    expect(result.error?.name).toBe('VendorRequestFailed');
  });

  test('a 4xx refusal is final on the first attempt', async () => {
    const result = await run(definition, dispatchInput(1), {
      ClaimRequest: claimed,
      CallVendor: () => {
        throw stepError('ApiGateway.400', '{"error":"invalid order"}');
      },
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: ok,
    });
    expect(result.calls.RequeueWithDelay).toBeUndefined();
    expect(result.calls.ParkInDeadLetterQueue).toHaveLength(1);
    expect(result.calls.FailWaitingWorkflow).toHaveLength(1);
    expect(result.error?.name).toBe('VendorRequestFailed');
  });

  test('a response without a job id fails the request with a clear cause', async () => {
    const result = await run(definition, dispatchInput(), {
      ClaimRequest: claimed,
      CallVendor: vendorAccepts({ id: 'wrong-field' }),
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: ok,
    });
    expect(result.calls.StoreJobId).toBeUndefined();
    expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('VendorResponseWithoutJobId');
    expect(JSON.parse(result.calls.FailWaitingWorkflow[0].Cause).Cause).toMatch(/\$\.jobId/);
  });

  test('a payload that is not an object is refused before any vendor call', async () => {
    const result = await run(definition, dispatchInput(1, 'just a string'), {
      ClaimRequest: claimed,
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: ok,
    });
    expect(result.calls.CallVendor).toBeUndefined();
    expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('PayloadNotAnObject');
    expect(result.error?.name).toBe('VendorRequestFailed');
  });

  test.each([
    ['an array', ['an', 'array']],
    ['an empty array', []],
    ['an array of objects', [{ order: 'o-1' }]],
  ])('a payload that is %s is refused before any vendor call, the waiting workflow failed at once', async (_kind, payload) => {
    // GIVEN the webhook URL goes in a body field, which an array cannot hold
    // WHEN
    const result = await run(definition, dispatchInput(1, payload), {
      ClaimRequest: claimed,
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: ok,
    });

    // THEN
    expect(result.calls.CallVendor).toBeUndefined();
    expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('PayloadNotAnObject');
    expect(JSON.parse(result.calls.ParkInDeadLetterQueue[0].MessageBody).payload).toEqual(payload);
    expect(result.calls.FailWaitingWorkflow[0]).toMatchObject({ TaskToken: 'token-1', Error: 'VendorRequestFailed' });
    expect(result.error?.name).toBe('VendorRequestFailed');
  });

  test.each([
    ['null', null],
    ['a number', 42],
    ['a boolean', true],
  ])('a payload that is %s is refused too', async (_kind, payload) => {
    const result = await run(definition, dispatchInput(1, payload), { ClaimRequest: claimed, ParkInDeadLetterQueue: ok, FailWaitingWorkflow: ok });
    expect(result.calls.CallVendor).toBeUndefined();
    expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('PayloadNotAnObject');
    expect(result.error?.name).toBe('VendorRequestFailed');
  });

  test('an object payload whose JSON holds brackets and braces in strings is still an object', async () => {
    const result = await run(definition, dispatchInput(1, { note: '[not an array] {x}', list: [1, 2] }), {
      ClaimRequest: claimed,
      CallVendor: vendorAccepts({ jobId: 'job-3' }),
      StoreJobId: ok,
    });
    expect(result.error).toBeUndefined();
    expect(result.calls.CallVendor[0].Payload.body).toMatchObject({ note: '[not an array] {x}', list: [1, 2], callbackUrl: expect.any(String) });
  });

  test('when the cause is too long for SendTaskFailure, the waiting workflow is still failed', async () => {
    const result = await run(definition, dispatchInput(5), {
      ClaimRequest: claimed,
      CallVendor: () => {
        throw stepError('ApiGateway.500', 'x'.repeat(40_000));
      },
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: () => {
        throw stepError('Sfn.SfnException', 'Member must have length less than or equal to 32768');
      },
      FailWaitingWorkflowBriefly: ok,
    });
    expect(result.calls.FailWaitingWorkflowBriefly[0]).toMatchObject({ TaskToken: 'token-1', Error: 'VendorRequestFailed' });
    expect(result.error?.name).toBe('VendorRequestFailed');
  });

  // KmsThrottlingException: a waiting workflow encrypted with a customer managed key passes KMS
  // throttling on to SendTaskFailure.
  test.each([
    ['Sfn.ThrottlingException'],
    ['Sfn.KmsThrottlingException'],
  ])('the waiting workflow gets VendorRequestFailed even when the first SendTaskFailure is throttled (%s is retried)', async (throttling) => {
    // GIVEN Step Functions throttles the first two SendTaskFailure calls, whichever state makes them
    const delivered: Array<{ state: string; input: Record<string, unknown> }> = [];
    let sendTaskFailures = 0;
    const sendTaskFailure = (state: string) => (input: Record<string, unknown>) => {
      sendTaskFailures += 1;
      if (sendTaskFailures <= 2) {
        throw stepError(throttling, 'Rate exceeded');
      }
      delivered.push({ state, input });
      return {};
    };

    // WHEN the vendor refuses the request for good
    const result = await run(definition, dispatchInput(1), {
      ClaimRequest: claimed,
      CallVendor: () => {
        throw stepError('ApiGateway.400', '{"error":"invalid order"}');
      },
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: sendTaskFailure('FailWaitingWorkflow'),
      FailWaitingWorkflowBriefly: sendTaskFailure('FailWaitingWorkflowBriefly'),
    });

    // THEN the full failure reaches the waiting workflow after the retries, instead of none at all
    // (it would then wait for its task timeout)
    expect(result.unexpected).toEqual([]);
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.calls.FailWaitingWorkflow).toHaveLength(3);
    expect(result.calls.FailWaitingWorkflowBriefly).toBeUndefined();
    expect(delivered).toHaveLength(1);
    expect(delivered[0].state).toBe('FailWaitingWorkflow');
    expect(delivered[0].input).toMatchObject({ TaskToken: 'token-1', Error: 'VendorRequestFailed' });
    // (aws-local-stepfunctions' States.JsonToString does not escape nested quotes: compare text.)
    expect(delivered[0].input.Cause).toContain('"Error":"ApiGateway.400"');
  });

  test('a waiting workflow that already ended is not retried: SendTaskFailure\'s closed-task errors still go to the Catch at once', async () => {
    const result = await run(definition, dispatchInput(1), {
      ClaimRequest: claimed,
      CallVendor: () => {
        throw stepError('ApiGateway.400', '{"error":"invalid order"}');
      },
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: () => {
        throw stepError('Sfn.TaskTimedOutException', 'Task Timed Out');
      },
      FailWaitingWorkflowBriefly: () => {
        throw stepError('Sfn.TaskTimedOutException', 'Task Timed Out');
      },
    });
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.calls.FailWaitingWorkflow).toHaveLength(1);
    expect(result.calls.FailWaitingWorkflowBriefly).toHaveLength(1);
  });

  test('a failed job id write after the vendor accepted fails the waiting workflow rather than leaving it to time out', async () => {
    const result = await run(definition, dispatchInput(), {
      ClaimRequest: claimed,
      CallVendor: vendorAccepts({ jobId: 'job-1' }),
      StoreJobId: () => {
        throw stepError('DynamoDB.AmazonDynamoDBException', 'access denied');
      },
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: ok,
    });
    expect(result.calls.FailWaitingWorkflow).toHaveLength(1);
    expect(result.error?.name).toBe('VendorRequestFailed');
  });

  test('with CallbackUrlDelivery.header the URL goes in a header and the body is the payload alone', async () => {
    const headerDefinition = dispatchDefinition({ dispatch: { callbackUrlDelivery: CallbackUrlDelivery.header('X-Callback-Url'), jobIdPath: '$.data.id' } });
    const result = await run(headerDefinition, dispatchInput(1, ['an', 'array']), {
      ClaimRequest: claimed,
      CallVendor: vendorAccepts({ data: { id: 'nested-7' } }),
      StoreJobId: ok,
    });
    expect(result.error).toBeUndefined();
    const call = result.calls.CallVendor[0].Payload;
    expect(call.body).toEqual(['an', 'array']);
    expect(call.headers['X-Callback-Url']).toEqual([expect.stringMatching(new RegExp(`/callback/${STORED_TOKEN}$`))]);
    expect(result.calls.StoreJobId[0].ExpressionAttributeValues[':job']).toEqual({ S: 'nested-7' });
  });

  test.each(['Sfn.TaskTimedOutException', 'Sfn.InvalidTokenException', 'Sfn.TaskDoesNotExistException'])(
    'a request whose waiting workflow has ended (%s) is not sent to the vendor', async (errorName) => {
      // GIVEN a retry or a redriven dead letter whose workflow timed out, failed or was stopped
      const result = await run(definition, dispatchInput(2), {
        ClaimRequest: claimed,
        CheckWaitingWorkflow: () => {
          throw stepError(errorName, 'Task Timed Out');
        },
      });

      // THEN nothing is sent and nothing is parked: nobody waits for the answer
      expect(result.error).toBeUndefined();
      expect(result.calls.CheckWaitingWorkflow[0]).toEqual({ TaskToken: 'token-1' });
      expect(result.calls.CallVendor).toBeUndefined();
      expect(result.calls.ParkInDeadLetterQueue).toBeUndefined();
    },
  );

  test('a caller that found no usable slot sends the request back through the queue without counting an attempt', async () => {
    // GIVEN the vendor paused dispatch longer than the caller may wait
    const result = await run(definition, dispatchInput(2), {
      ClaimRequest: claimed,
      CallVendor: () => ({ Payload: { statusCode: null, body: null, requeue: { delaySeconds: 42, reason: 'VendorPaused' } } }),
      RequeueWithDelay: ok,
    });

    // THEN the same request goes back with the caller's delay and the same attempt
    expect(result.error).toBeUndefined();
    const sent = result.calls.RequeueWithDelay[0];
    expect(sent.DelaySeconds).toBe(42);
    expect(JSON.parse(sent.MessageBody)).toEqual({
      taskToken: 'token-1',
      requestId: 'req-1',
      payload: { order: 'o-1', amount: 3 },
      attempt: 2,
      deferrals: 1,
      callbackToken: INPUT_TOKEN,
      requestStartedAtMs: REQUEST_STARTED_AT,
      priority: null,
    });
    expect(result.calls.StoreJobId).toBeUndefined();
  });

  test('issue 15: a high-priority request keeps its priority when retried and when deferred (both messages are rebuilt from the input)', async () => {
    // As the dispatcher builds it for a message with a priority (dispatcher-priorities.test.ts).
    const input = { ...dispatchInput(2), priority: 'high' };
    const retried = await run(definition, input, {
      ClaimRequest: claimed,
      CallVendor: () => {
        throw stepError('ApiGateway.503');
      },
      RequeueWithDelay: ok,
    });
    const deferred = await run(definition, input, {
      ClaimRequest: claimed,
      CallVendor: () => ({ Payload: { statusCode: null, body: null, requeue: { delaySeconds: 42, reason: 'VendorPaused' } } }),
      RequeueWithDelay: ok,
    });
    expect([retried, deferred].map((r) => JSON.parse(r.calls.RequeueWithDelay[0].MessageBody))).toEqual([
      expect.objectContaining({ attempt: 3, priority: 'high' }), expect.objectContaining({ attempt: 2, deferrals: 1, priority: 'high' }),
    ]);
  });

  test.each([
    ['ClaimRequest', 'DynamoDB.ProvisionedThroughputExceededException'],
    ['ClaimRequest', 'DynamoDB.ThrottlingException'],
    ['RequeueWithDelay', 'Sqs.RequestThrottledException'],
    ['RequeueWithDelay', 'Sqs.ThrottlingException'],
  ])('%s retries %s (as Step Functions names it) and carries on', async (state, errorName) => {
    // GIVEN the AWS call is throttled once
    let calls = 0;
    const throttledOnce = (answer: () => unknown) => () => {
      calls += 1;
      if (calls === 1) {
        throw stepError(errorName, 'Rate exceeded');
      }
      return answer();
    };
    // WHEN
    const result = await run(definition, dispatchInput(1), {
      ClaimRequest: state === 'ClaimRequest' ? throttledOnce(claimed) : claimed,
      CallVendor: () => {
        throw stepError('ApiGateway.503');
      },
      RequeueWithDelay: state === 'RequeueWithDelay' ? throttledOnce(ok) : ok,
    });

    // THEN the retry went through and nothing was given up
    expect(result.error).toBeUndefined();
    expect(result.calls[state]).toHaveLength(2);
    expect(result.calls.RequeueWithDelay.length).toBeGreaterThanOrEqual(1);
    expect(result.calls.ParkInDeadLetterQueue).toBeUndefined();
  });

  test('a job id write throttled 8 times in a row is still stored: DynamoDB retries last about a minute, the accepted job is not parked', async () => {
    // GIVEN the vendor accepted the job and DynamoDB throttles the job id write 8 times in a row
    // (the fault suite's ddb-throttle scenario saw 5 in a row, which the former 4 retries gave up on)
    let writes = 0;
    const result = await run(definition, dispatchInput(1), {
      ClaimRequest: claimed,
      CallVendor: vendorAccepts({ jobId: 'job-42' }),
      StoreJobId: () => {
        writes += 1;
        if (writes <= 8) {
          throw stepError(writes % 2 ? 'DynamoDB.ThrottlingException' : 'DynamoDB.ProvisionedThroughputExceededException', 'Rate exceeded');
        }
        return {};
      },
    });

    // THEN the 9th write stored the job id; nothing was parked, the waiting workflow was not failed
    expect(result.error).toBeUndefined();
    expect(result.states[result.states.length - 1]).toBe('Submitted');
    expect(result.calls.StoreJobId).toHaveLength(9);
    expect(result.calls.ParkInDeadLetterQueue).toBeUndefined();
    // ... and the retrier waits about a minute at most, as DynamoDB advises (1 + 2 + 4 + 8 + 5 x 10 s).
    const [retrier] = definition.States.StoreJobId.Retry;
    const caps = Array.from({ length: retrier.MaxAttempts },
      (_, i) => Math.min(retrier.IntervalSeconds * retrier.BackoffRate ** i, retrier.MaxDelaySeconds));
    expect(caps.reduce((a, b) => a + b, 0)).toBe(65);
  });

  test('a deferred request whose requeue fails is parked and fails the waiting workflow at once', async () => {
    // GIVEN the caller finds no slot within its wait budget (its real answer), and SQS refuses the requeue
    const result = await run(definition, dispatchInput(2), {
      ClaimRequest: claimed,
      CallVendor: callerAnswerDuringVendorPause,
      RequeueWithDelay: () => {
        throw stepError('Sqs.KmsAccessDeniedException', 'KMS denied the key to SQS');
      },
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: ok,
    });

    // THEN the request is parked unchanged, saying why, and the waiting workflow fails now
    expect(result.calls.RequeueWithDelay).toHaveLength(1);
    expect(result.error?.name).toBe('VendorRequestFailed');
    const park = result.calls.ParkInDeadLetterQueue[0];
    expect(JSON.parse(park.MessageBody)).toEqual(dispatchInput(2).message);
    expect(park.MessageAttributes.reason).toEqual({ DataType: 'String', StringValue: 'VendorCallDeferred' });
    expect(JSON.parse(park.MessageAttributes.detail.StringValue).Cause).toContain('VendorPaused');
    expect(result.calls.FailWaitingWorkflow[0]).toMatchObject({ TaskToken: 'token-1', Error: 'VendorRequestFailed' });
    expect(JSON.parse(result.calls.FailWaitingWorkflow[0].Cause)).toMatchObject({ Error: 'VendorCallDeferred' });
  });

  test.each(['VendorCallTimeout', 'VendorCallNetworkError'])('a caller failure without an answer (%s) is retried through the queue', async (errorName) => {
    const result = await run(definition, dispatchInput(1), {
      ClaimRequest: claimed,
      CallVendor: () => {
        throw stepError(errorName, 'no answer');
      },
      RequeueWithDelay: ok,
    });
    expect(result.error).toBeUndefined();
    expect(JSON.parse(result.calls.RequeueWithDelay[0].MessageBody).attempt).toBe(2);
  });
});

describe('dispatch workflow with PacingPoint.DISPATCH, executed', () => {
  const definition = dispatchDefinition({ pacingPoint: PacingPoint.DISPATCH });

  test('calls the proxy with apigateway:invoke (IAM) and stores the job id', async () => {
    const result = await run(definition, dispatchInput(), {
      ClaimRequest: claimed,
      CallVendor: () => ({ ResponseBody: { jobId: 'job-9' }, StatusCode: 200 }),
      StoreJobId: ok,
    });
    expect(result.error).toBeUndefined();
    const call = result.calls.CallVendor[0];
    expect(call.AuthType).toBe('IAM_ROLE');
    expect(call.Method).toBe('POST');
    expect(call.Headers['Idempotency-Key']).toEqual(['req-1']);
    expect(result.calls.StoreJobId[0].ExpressionAttributeValues[':job']).toEqual({ S: 'job-9' });
  });

  test('an ApiGateway.429 goes back through the queue as the next attempt', async () => {
    const result = await run(definition, dispatchInput(1), {
      ClaimRequest: claimed,
      CallVendor: () => {
        throw stepError('ApiGateway.429');
      },
      RequeueWithDelay: ok,
    });
    expect(result.error).toBeUndefined();
    expect(JSON.parse(result.calls.RequeueWithDelay[0].MessageBody).attempt).toBe(2);
  });
});

describe('dispatch workflow, worst case within the Express workflow\'s 5 minutes', () => {
  /**
   * The longest vendor call synthesis accepts: the error for a too-long one says how much
   * `lead + maxSlotWait + vendorCallTimeout` may be; the lead and the default maxSlotWait (10 s)
   * come off it.
   */
  function longestAcceptedVendorCallTimeout(): Duration {
    const raisedQuota = { proxy: { integrationTimeoutQuota: Duration.minutes(5) } };
    let message = '';
    try {
      dispatchDefinition({ ...raisedQuota, dispatch: { vendorCallTimeout: Duration.minutes(4) } });
    } catch (e) {
      message = (e as Error).message;
    }
    const allowed = Number(/is at most (\d+) s/.exec(message)![1]);
    const leadMs = Number(/lead (\d+) ms/.exec(message)![1]);
    return Duration.seconds(allowed - Math.ceil(leadMs / 1000) - 10);
  }

  test('the longest accepted vendorCallTimeout, every step retried to its last attempt, still parks the request and fails the waiting workflow in time', async () => {
    // GIVEN the longest vendor call synthesis accepts, one second more is refused
    const vendorCallTimeout = longestAcceptedVendorCallTimeout();
    const raisedQuota = { proxy: { integrationTimeoutQuota: Duration.minutes(5) } };
    expect(() => dispatchDefinition({ ...raisedQuota, dispatch: { vendorCallTimeout: vendorCallTimeout.plus(Duration.seconds(1)) } }))
      .toThrow(/longest route could take/);
    const definition = dispatchDefinition({ ...raisedQuota, dispatch: { vendorCallTimeout } });

    // ... and a virtual clock: each call takes 500 ms (express-budget.ts AWS_CALL_ALLOWANCE), each
    // retry waits its longest (the cap of the state's own Retry, full jitter draws up to it), and
    // the vendor caller runs to its Task timeout. Retries wait 0 ms in the interpreter.
    let clockMs = 0;
    const attempts: Record<string, number> = {};
    const call = (state: string, failures: number, error: string, answer: () => unknown = ok, runMs = 500) => () => {
      const n = (attempts[state] = (attempts[state] ?? 0) + 1);
      if (n > 1) {
        const [retrier] = definition.States[state].Retry;
        clockMs += 1000 * Math.min(retrier.IntervalSeconds * retrier.BackoffRate ** (n - 2), retrier.MaxDelaySeconds ?? Infinity);
      }
      if (n <= failures) {
        clockMs += 500;
        throw stepError(error, 'throttled');
      }
      clockMs += runMs;
      return answer();
    };
    const retries = (state: string) => definition.States[state].Retry[0].MaxAttempts as number;

    // WHEN DynamoDB throttles the claim to its last retry, Step Functions throttles the check, Lambda
    // throttles the caller twice, the caller then runs to its timeout and the vendor accepts the job,
    // DynamoDB throttles the job id write past its last retry, SQS the park to its last retry, Step
    // Functions the full failure past its last retry (so the brief one is sent too) and the brief
    // one to its last retry: the longest route
    const result = await run(definition, dispatchInput(1), {
      ClaimRequest: call('ClaimRequest', retries('ClaimRequest'), 'DynamoDB.ThrottlingException', claimed),
      CheckWaitingWorkflow: call('CheckWaitingWorkflow', retries('CheckWaitingWorkflow'), 'Sfn.ThrottlingException'),
      CallVendor: call('CallVendor', retries('CallVendor'), 'Lambda.TooManyRequestsException', vendorAccepts({ jobId: 'job-42' }),
        1000 * definition.States.CallVendor.TimeoutSeconds),
      StoreJobId: call('StoreJobId', retries('StoreJobId') + 1, 'DynamoDB.ProvisionedThroughputExceededException'),
      ParkInDeadLetterQueue: call('ParkInDeadLetterQueue', retries('ParkInDeadLetterQueue'), 'Sqs.RequestThrottledException'),
      FailWaitingWorkflow: call('FailWaitingWorkflow', retries('FailWaitingWorkflow') + 1, 'Sfn.ThrottlingException'),
      FailWaitingWorkflowBriefly: call('FailWaitingWorkflowBriefly', retries('FailWaitingWorkflowBriefly'), 'Sfn.ThrottlingException'),
    });

    // THEN the request is parked and its waiting workflow failed, within 5 minutes
    expect(result.unexpected).toEqual([]);
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.calls.StoreJobId).toHaveLength(retries('StoreJobId') + 1);
    expect(result.calls.ParkInDeadLetterQueue).toHaveLength(retries('ParkInDeadLetterQueue') + 1);
    expect(result.calls.FailWaitingWorkflow).toHaveLength(retries('FailWaitingWorkflow') + 1);
    expect(result.calls.FailWaitingWorkflowBriefly).toHaveLength(retries('FailWaitingWorkflowBriefly') + 1);
    expect(clockMs).toBeLessThanOrEqual(5 * 60 * 1000);
    expect(clockMs).toBeGreaterThan(5 * 60 * 1000 - 2000); // the longest accepted configuration: nothing to spare
  });
});
