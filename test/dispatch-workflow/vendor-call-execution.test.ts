/**
 * Executes the synthesized vendor-call workflow (the template's own definition) with
 * aws-local-stepfunctions, replacing each AWS call by a local handler that records its input.
 */
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { callerAnswerDuringVendorPause } from './vendor-caller-answers';
import { AsyncExternalApiOrchestrator, PacingPoint } from '../../src';
import { VendorCallMessage } from '../../src/shared/messages';
import { buildVendorCallInput } from '../../src/shared/vendor-call';
import { Execution, TaskHandler, executeDefinition } from '../asl/execute';
import { AslDefinition, definitionOf, logicalIdOf, testStack } from '../util';

function stepError(name: string, cause = ''): Error {
  const error = new Error(cause);
  error.name = name;
  return error;
}

// apigateway:invoke by default, mocked below; the vendor caller's own logic is tested in vendor-call.test.ts.
function callDefinition(pacingPoint: PacingPoint = PacingPoint.DISPATCH): AslDefinition {
  const stack = testStack();
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
    pacingPoint,
  });
  const main = new sfn.StateMachine(stack, 'Main', {
    definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.callVendorTask(stack, 'Fetch', { path: '/x' })),
  });
  orchestrator.registerWorkflow(main);
  return definitionOf(Template.fromStack(stack), logicalIdOf(stack, orchestrator.vendorCall!.stateMachine));
}

type Handler = TaskHandler;

/** Runs the definition once (test/asl/execute.ts); every Task state must have a handler (else the test fails). */
function run(definition: AslDefinition, input: unknown, handlers: Record<string, Handler>): Promise<Execution> {
  return executeDefinition(definition, input, handlers, { defaultHandlers: { ClaimCall: ok, CheckWaitingWorkflow: ok, ReturnResponse: ok } });
}

const NOW_MS = Date.parse('2026-12-07T10:00:00Z');
const CORRELATION_TTL_SECONDS = 2 * 86400;

/** The input the dispatcher really builds for a call message (buildVendorCallInput). */
function callInput(attempt = 1, call: Record<string, unknown> = { method: 'GET', path: '/job-1/result', query: { fields: ['all'] } }, deferrals?: number) {
  const message = { kind: 'call', taskToken: 'token-1', requestId: 'req-1', call, attempt, ...(deferrals === undefined ? {} : { deferrals }) } as unknown as VendorCallMessage;
  return buildVendorCallInput(message, NOW_MS, CORRELATION_TTL_SECONDS);
}

const ok = () => ({});
const vendorAnswers = (body: unknown, status = 200) => () => ({ ResponseBody: body, StatusCode: status, StatusText: 'OK', Headers: { 'content-type': ['application/json'] } });

describe('vendor-call workflow, executed', () => {
  const definition = callDefinition();

  test('calls the vendor with the message\'s method, path and query and returns { statusCode, body, headers }', async () => {
    const result = await run(definition, callInput(), { CallVendor: vendorAnswers({ result: 42 }) });

    expect(result.error).toBeUndefined();
    const call = result.calls.CallVendor[0];
    expect(call).toMatchObject({ Method: 'GET', Path: '/job-1/result', QueryParameters: { fields: ['all'] }, AuthType: 'IAM_ROLE', Stage: 'vendor' });
    expect(call.Headers['Idempotency-Key']).toEqual(['req-1']);
    expect(call.RequestBody).toBeUndefined();
    expect(result.calls.CheckWaitingWorkflow[0]).toEqual({ TaskToken: 'token-1' });
    const resumed = result.calls.ReturnResponse[0];
    expect(resumed.TaskToken).toBe('token-1');
    expect(JSON.parse(resumed.Output)).toEqual({ statusCode: 200, body: { result: 42 }, headers: { 'content-type': ['application/json'] } });
  });

  test('the call is claimed first, under call#<requestId>, with the claim sequence and expiry the dispatcher built (issue 13, item 1)', async () => {
    const input = callInput(3);
    const result = await run(definition, input, { CallVendor: vendorAnswers({ result: 42 }) });

    expect(result.error).toBeUndefined();
    expect(result.calls.ClaimCall).toHaveLength(1);
    const claim = result.calls.ClaimCall[0];
    expect(claim.Key).toEqual({ requestId: { S: 'call#req-1' } });
    expect(claim.ConditionExpression).toBe('attribute_not_exists(#claimSeq) OR #claimSeq < :claimSeq');
    expect(claim.ExpressionAttributeValues[':claimSeq']).toEqual({ N: '3000' });
    expect(claim.ExpressionAttributeValues[':expires']).toEqual({ N: String(NOW_MS / 1000 + CORRELATION_TTL_SECONDS) });
    expect(result.calls.CallVendor).toHaveLength(1);
  });

  test('a duplicate execution of the same delivery (its claim is taken) ends without calling the vendor (issue 13, item 1)', async () => {
    // GIVEN another execution of this delivery claimed the call (an Express execution run twice,
    // a message delivered twice)
    const result = await run(definition, callInput(), {
      ClaimCall: () => {
        throw stepError('DynamoDB.ConditionalCheckFailedException', 'The conditional request failed');
      },
      CallVendor: vendorAnswers({ result: 42 }),
    });

    // THEN it ends quietly: the vendor is not called, the waiting workflow is left to the other one
    expect(result.error).toBeUndefined();
    expect(result.calls.CallVendor).toBeUndefined();
    expect(result.calls.CheckWaitingWorkflow).toBeUndefined();
    expect(result.calls.ReturnResponse).toBeUndefined();
  });

  test('a throttled claim (DynamoDB.ProvisionedThroughputExceededException) is retried and the call goes on', async () => {
    let claims = 0;
    const result = await run(definition, callInput(), {
      ClaimCall: () => {
        claims += 1;
        if (claims === 1) {
          throw stepError('DynamoDB.ProvisionedThroughputExceededException', 'Throughput exceeds the current capacity');
        }
        return {};
      },
      CallVendor: vendorAnswers({ result: 42 }),
    });
    expect(result.error).toBeUndefined();
    expect(result.calls.ClaimCall).toHaveLength(2);
    expect(result.calls.CallVendor).toHaveLength(1);
  });

  test('a claim that keeps failing goes back through the queue like any retryable failure', async () => {
    const result = await run(definition, callInput(), {
      ClaimCall: () => {
        throw stepError('DynamoDB.InternalServerErrorException', 'Internal server error');
      },
      RequeueWithDelay: ok,
    });
    expect(result.error).toBeUndefined();
    expect(result.calls.CallVendor).toBeUndefined();
    expect(JSON.parse(result.calls.RequeueWithDelay[0].MessageBody)).toMatchObject({ requestId: 'req-1', attempt: 2 });
  });

  test('a call with a body sends it as JSON', async () => {
    const result = await run(definition, callInput(1, { method: 'PUT', path: '/job-1', query: {}, body: { priority: 'high' } }), {
      CallVendorWithBody: vendorAnswers({ updated: true }),
    });
    expect(result.error).toBeUndefined();
    const call = result.calls.CallVendorWithBody[0];
    expect(call).toMatchObject({ Method: 'PUT', RequestBody: { priority: 'high' } });
    expect(call.Headers['Content-Type']).toEqual(['application/json']);
    expect(result.calls.CallVendor).toBeUndefined();
  });

  test('a call whose workflow no longer waits does not reach the vendor', async () => {
    const result = await run(definition, callInput(), {
      CheckWaitingWorkflow: () => {
        throw stepError('Sfn.TaskTimedOutException', 'Task Timed Out');
      },
    });
    expect(result.error).toBeUndefined();
    expect(result.calls.CallVendor).toBeUndefined();
  });

  test.each([
    ['ApiGateway.429', 1, 2],
    ['ApiGateway.503', 2, 4],
    ['States.Timeout', 3, 8],
  ])('a retryable failure (%s) on attempt %d goes back through the queue, the same call, with a delay of at most %d s', async (errorName, attempt, cap) => {
    const result = await run(definition, callInput(attempt), {
      CallVendor: () => {
        throw stepError(errorName, '{"message":"try later"}');
      },
      RequeueWithDelay: ok,
    });
    expect(result.error).toBeUndefined();
    const sent = result.calls.RequeueWithDelay[0];
    // SQS takes a whole number of seconds, 0 to 900; full jitter draws it from [0, cap].
    expect(Number.isInteger(sent.DelaySeconds)).toBe(true);
    expect(sent.DelaySeconds).toBeGreaterThanOrEqual(0);
    expect(sent.DelaySeconds).toBeLessThanOrEqual(cap);
    expect(JSON.parse(sent.MessageBody)).toEqual({
      kind: 'call',
      taskToken: 'token-1',
      requestId: 'req-1',
      attempt: attempt + 1,
      call: { method: 'GET', path: '/job-1/result', query: { fields: ['all'] } },
      // The retry keeps the call's start (its quota deadline) and the job it ends (none).
      requestStartedAtMs: NOW_MS,
      endsJobOf: null,
      priority: null, // the retry keeps the call's priority (none: normal)
    });
    expect(result.calls.ReturnResponse).toBeUndefined();
  });

  test('the full-jitter delays spread over the whole range, not a fixed delay', async () => {
    // Attempt 4 has a cap of 16 s (2, 4, 8, 16): 40 draws on a handful of values, or all in one half
    // of the range, would not be full jitter (a retry storm would stay synchronized).
    const delays: number[] = [];
    for (let i = 0; i < 40; i++) {
      const result = await run(definition, callInput(4), {
        CallVendor: () => {
          throw stepError('ApiGateway.503');
        },
        RequeueWithDelay: ok,
      });
      delays.push(result.calls.RequeueWithDelay[0].DelaySeconds);
    }
    expect(new Set(delays).size).toBeGreaterThanOrEqual(6);
    expect(Math.min(...delays)).toBeLessThan(8);
    expect(Math.max(...delays)).toBeGreaterThanOrEqual(8);
    expect(Math.max(...delays)).toBeLessThanOrEqual(16);
  });

  test('a 404 parks the call and fails the waiting workflow with VendorRequestFailed, the status and the vendor body in the cause', async () => {
    const result = await run(definition, callInput(), {
      CallVendor: () => {
        throw stepError('ApiGateway.404', '{"error":"no job job-1"}');
      },
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: ok,
    });
    expect(result.error?.name).toBe('VendorRequestFailed');
    const parked = result.calls.ParkInDeadLetterQueue[0];
    expect(JSON.parse(parked.MessageBody)).toEqual(callInput().message);
    expect(parked.MessageAttributes.reason.StringValue).toBe('ApiGateway.404');
    const failed = result.calls.FailWaitingWorkflow[0];
    expect(failed.Error).toBe('VendorRequestFailed');
    // (aws-local-stepfunctions' States.JsonToString does not escape nested quotes: compare text.)
    expect(failed.Cause).toContain('"Error":"ApiGateway.404"');
    expect(failed.Cause).toContain('no job job-1');
    expect(result.calls.RequeueWithDelay).toBeUndefined();
  });

  test('the last attempt gives up instead of retrying', async () => {
    const result = await run(definition, callInput(5), {
      CallVendor: () => {
        throw stepError('ApiGateway.500', 'oops');
      },
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: ok,
    });
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.calls.RequeueWithDelay).toBeUndefined();
  });

  test('an answer that cannot be returned (too large) fails the waiting workflow', async () => {
    const result = await run(definition, callInput(), {
      CallVendor: vendorAnswers({ big: true }),
      ReturnResponse: () => {
        throw stepError('Sfn.InvalidOutputException', 'output too large');
      },
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: ok,
    });
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.calls.FailWaitingWorkflow[0].Cause).toContain('"Error":"Sfn.InvalidOutputException"');
  });

  test.each([
    ['CheckWaitingWorkflow', 'Sfn.ThrottlingException'],
    ['ReturnResponse', 'Sfn.ThrottlingException'],
    ['ReturnResponse', 'Sfn.SfnException'],
  ])('%s retries %s (as Step Functions names it) and carries on', async (state, errorName) => {
    let calls = 0;
    const result = await run(definition, callInput(), {
      CallVendor: vendorAnswers({ ok: true }),
      [state]: () => {
        calls += 1;
        if (calls === 1) {
          throw stepError(errorName, 'Rate exceeded');
        }
        return {};
      },
    });
    expect(result.error).toBeUndefined();
    expect(result.calls[state]).toHaveLength(2);
    expect(result.calls.ReturnResponse).toHaveLength(state === 'ReturnResponse' ? 2 : 1);
  });

  test('a throttled requeue (Sqs.RequestThrottledException) is retried: the call is not given up', async () => {
    let calls = 0;
    const result = await run(definition, callInput(1), {
      CallVendor: () => {
        throw stepError('ApiGateway.503');
      },
      RequeueWithDelay: () => {
        calls += 1;
        if (calls === 1) {
          throw stepError('Sqs.RequestThrottledException', 'Request is throttled');
        }
        return {};
      },
    });
    expect(result.error).toBeUndefined();
    expect(result.calls.RequeueWithDelay).toHaveLength(2);
    expect(result.calls.ParkInDeadLetterQueue).toBeUndefined();
  });

  test('an answer for a workflow that ended meanwhile is dropped', async () => {
    const result = await run(definition, callInput(), {
      CallVendor: vendorAnswers({ ok: true }),
      ReturnResponse: () => {
        throw stepError('Sfn.TaskTimedOutException', 'Task Timed Out');
      },
    });
    expect(result.error).toBeUndefined();
    expect(result.calls.ParkInDeadLetterQueue).toBeUndefined();
  });
});

describe('vendor-call workflow with the vendor caller (PacingPoint.VENDOR_CALL), executed', () => {
  const definition = callDefinition(PacingPoint.VENDOR_CALL);
  const slotInput = (deferrals?: number) =>
    buildVendorCallInput(callInput(2, undefined, deferrals).message, NOW_MS, CORRELATION_TTL_SECONDS, Date.now() + 100);

  test('a caller that finds no slot within its wait budget sends the call back through the queue, the same attempt', async () => {
    // GIVEN the vendor paused dispatch for longer than maxSlotWait
    // WHEN
    const result = await run(definition, slotInput(), { CallVendor: callerAnswerDuringVendorPause, RequeueWithDelay: ok });

    // THEN the call goes back with the caller's delay, not counted as an attempt
    expect(result.error).toBeUndefined();
    expect(result.calls.CallVendor[0].Payload).toMatchObject({ method: 'GET', path: '/job-1/result', requestId: 'req-1' });
    const sent = result.calls.RequeueWithDelay[0];
    expect(sent.DelaySeconds).toBeGreaterThanOrEqual(59);
    expect(JSON.parse(sent.MessageBody)).toEqual({
      kind: 'call', taskToken: 'token-1', requestId: 'req-1', attempt: 2, deferrals: 1, call: callInput().call, requestStartedAtMs: NOW_MS, endsJobOf: null, priority: null,
    });
    expect(result.calls.ReturnResponse).toBeUndefined();
  });

  test('an execution started by a dispatcher of an earlier version (no requestStartedAtMs, endsJobOf or key in its input) calls the vendor and defers like any other: the fields are filled with null, no States.Runtime (input-defaults.ts)', async () => {
    // GIVEN the input of an old dispatcher: a deploy updates this workflow before the dispatcher
    const { requestStartedAtMs: _start, endsJobOf: _ends, ...oldInput } = slotInput();
    expect(Object.keys(oldInput)).not.toContain('key');
    // WHEN
    const result = await run(definition, oldInput, { CallVendor: callerAnswerDuringVendorPause, RequeueWithDelay: ok });
    // THEN the caller gets nulls (it counts a quota deadline from now, frees no place) and the deferral carries them
    expect(result.error).toBeUndefined();
    expect(result.calls.CallVendor[0].Payload).toMatchObject({ requestId: 'req-1', requestStartedAtMs: null, endsJobOf: null });
    expect(JSON.parse(result.calls.RequeueWithDelay[0].MessageBody)).toMatchObject({ requestId: 'req-1', requestStartedAtMs: null, endsJobOf: null });
  });

  test('issue 15: a high-priority call keeps its priority when deferred and when retried (both messages are rebuilt from the input)', async () => {
    const input = buildVendorCallInput({ ...slotInput().message, priority: 'high' }, NOW_MS, CORRELATION_TTL_SECONDS, Date.now() + 100);
    expect(input.priority).toBe('high');
    const deferred = await run(definition, input, { CallVendor: callerAnswerDuringVendorPause, RequeueWithDelay: ok });
    const retried = await run(definition, input, {
      CallVendor: () => {
        throw stepError('ApiGateway.503');
      },
      RequeueWithDelay: ok,
    });
    expect([deferred, retried].map((r) => JSON.parse(r.calls.RequeueWithDelay[0].MessageBody))).toEqual([
      expect.objectContaining({ attempt: 2, deferrals: 1, priority: 'high' }), expect.objectContaining({ attempt: 3, priority: 'high' }),
    ]);
  });

  test('a deferred call comes back with one more deferral, so its next execution claims again (a higher claim sequence) (issue 13, item 1)', async () => {
    // GIVEN a call deferred twice already
    const input = slotInput(2);
    expect(input.claimSeq).toBe(2002);

    // WHEN deferred again
    const result = await run(definition, input, { CallVendor: callerAnswerDuringVendorPause, RequeueWithDelay: ok });

    // THEN the requeued message, dispatched again, claims with a higher sequence than this execution did
    expect(result.calls.ClaimCall[0].ExpressionAttributeValues[':claimSeq']).toEqual({ N: '2002' });
    const next = buildVendorCallInput(JSON.parse(result.calls.RequeueWithDelay[0].MessageBody), NOW_MS, CORRELATION_TTL_SECONDS);
    expect(next).toMatchObject({ attempt: 2, deferrals: 3, claimSeq: 2003 });
  });

  test('a deferred call whose requeue fails is parked and fails the waiting workflow at once', async () => {
    // GIVEN no slot within the wait budget, and SQS refusing the requeue
    const result = await run(definition, slotInput(), {
      CallVendor: callerAnswerDuringVendorPause,
      RequeueWithDelay: () => {
        throw stepError('Sqs.KmsAccessDeniedException', 'KMS denied the key to SQS');
      },
      ParkInDeadLetterQueue: ok,
      FailWaitingWorkflow: ok,
    });

    // THEN the message is parked unchanged, saying why, and the waiting workflow fails now
    expect(result.error?.name).toBe('VendorRequestFailed');
    const parked = result.calls.ParkInDeadLetterQueue[0];
    expect(JSON.parse(parked.MessageBody)).toEqual(callInput(2).message);
    expect(parked.MessageAttributes.reason.StringValue).toBe('VendorCallDeferred');
    expect(parked.MessageAttributes.detail.StringValue).toContain('VendorPaused');
    expect(result.calls.FailWaitingWorkflow[0]).toMatchObject({ TaskToken: 'token-1', Error: 'VendorRequestFailed' });
    expect(result.calls.FailWaitingWorkflow[0].Cause).toContain('VendorCallDeferred');
  });
});
