/**
 * Every route of the vendor-call workflow (callVendorTask) in each configuration (both pacing points,
 * each kind of vendor credential), executed from StartAt with the input the dispatcher's own code
 * builds for a `call` message, the vendor caller's real logic answering the call tasks
 * (PacingPoint.VENDOR_CALL), and only AWS services mocked (SDK output shapes).
 *
 * The credential's producers fail as they really do (Secrets Manager's errors and outputs, the
 * credential and token functions' real logic); credential-routes.test.ts checks those routes in
 * more detail. The last test of each configuration
 * checks that every other edge ran (docs/asl-coverage.md).
 */
import { literalKeyGroupId } from '../../src/orchestrator/request-key-fields';
import { allConfigurations, requestsKeyed } from '../asl/configurations';
import { edgesOf } from '../asl/edges';
import { Execution, executeDefinition, stepError, TaskHandler } from '../asl/execute';
import {
  callMessage, callVendorTask, credentialAnswers, credentialFailures, dynamoUpdated, failing, failsWith, sfnOk, sqsSent,
  vendorAccepts, vendorAnswersTooLarge, VendorBehaviour, vendorCallInputFor, vendorPaused, vendorQuotaExhausted, vendorRefuses, VendorRequest,
  vendorSilent,
} from '../asl/producers';

/** Edges no real input reaches: none in this workflow. */
const UNREACHABLE: RegExp[] = [];

const configurations = allConfigurations((label) => !/callback URL/.test(label))
  .filter((c) => c.name === 'VendorCallWorkflow');

const GET_RESULT = { method: 'GET', path: '/jobs/job-1/result', query: { fields: ['all'] } };
const PUT_PRIORITY = { method: 'PUT', path: '/jobs/job-1', body: { priority: 'high' } };

describe.each(configurations.map((c) => [c.configuration, c] as const))('vendor-call workflow (%s), every route', (_, configuration) => {
  const definition = configuration.definition;
  const paced = 'WasVendorCalled' in definition.States;
  const taken = new Set<string>();

  /** The AWS calls' answers when they succeed. */
  const succeeding: Record<string, TaskHandler> = {
    ClaimCall: dynamoUpdated,
    CheckWaitingWorkflow: sfnOk,
    ReturnResponse: sfnOk,
    RequeueWithDelay: sqsSent,
    ParkInDeadLetterQueue: sqsSent,
    FailWaitingWorkflow: sfnOk,
    FailWaitingWorkflowBriefly: sfnOk,
    FailWaitingWorkflowByName: sfnOk,
    ...credentialAnswers(configuration.configuration),
  };

  /** Every AWS call succeeds and the vendor answers 200, unless `overrides` say otherwise. */
  async function run(input: unknown, overrides: Record<string, TaskHandler> = {}, vendor: VendorBehaviour = vendorAccepts({ result: 42 }),
    received: VendorRequest[] = []): Promise<Execution> {
    const call = callVendorTask(paced, vendor, received);
    const result = await executeDefinition(definition, input, { ...succeeding, CallVendor: call, CallVendorWithBody: call, ...overrides });
    result.edges.forEach((e) => taken.add(e));
    // Every Task the route reaches has its answer: none failed for want of a handler.
    expect(result.unexpected).toEqual([]);
    return result;
  }
  const firstCall = (call: Record<string, unknown> = GET_RESULT) => vendorCallInputFor(callMessage(call), paced);
  /** The error name the state's Retry entry `i` lists first. */
  const retried = (state: string, i = 0) => () => stepError(definition.States[state].Retry[i].ErrorEquals[0], 'Rate exceeded');

  test.each([
    ['without a body', GET_RESULT, 'HasRequestBody: Default -> CallVendor'],
    ['with a body', PUT_PRIORITY, 'HasRequestBody: Choice 0 -> CallVendorWithBody'],
  ])('a call %s returns { statusCode, body, headers } to the waiting workflow', async (_what, call, edge) => {
    const received: VendorRequest[] = [];
    const result = await run(firstCall(call), {}, vendorAccepts({ result: 42 }), received);
    expect(result.error).toBeUndefined();
    expect(result.edges).toContain(edge);
    expect(result.states[result.states.length - 1]).toBe('Returned');
    const resumed = result.calls.ReturnResponse[0];
    expect(resumed.TaskToken).toBe('main-task-token-2');
    expect(JSON.parse(resumed.Output)).toMatchObject({ statusCode: 200, body: { result: 42 } });
    if (paced) {
      expect(received[0].method).toBe(call.method);
    }
  });

  test('issue 15: the key\'s limits in force reach the vendor caller (limits per key); an earlier dispatcher\'s input without them runs with null', async () => {
    const limitsPerKey = /limits per key/.test(configuration.configuration);
    const keyLimits = { requestsPerSecond: 2, quotas: {}, priorityAgingMs: 30_000, paused: false };
    const events: Array<Record<string, unknown>> = [];
    const seen = {
      CallVendor: (input: { Payload?: Record<string, unknown> }) => {
        events.push(input.Payload ?? {});
        return callVendorTask(paced, vendorAccepts({ result: 42 }))(input);
      },
    };
    const { keyLimits: _none, ...earlier } = firstCall();
    for (const input of [{ ...firstCall(), keyLimits }, earlier]) {
      const result = await run(input, seen);
      expect(result.error).toBeUndefined();
      expect(result.states[result.states.length - 1]).toBe('Returned');
    }
    if (paced) {
      expect(events.map((event) => [event.key, event.keyLimits])).toEqual(limitsPerKey
        ? [['tenant-1', keyLimits], ['tenant-1', null]]
        : [[requestsKeyed(configuration.configuration) ? 'tenant-1' : undefined, undefined], [requestsKeyed(configuration.configuration) ? 'tenant-1' : undefined, undefined]]);
    }
  });

  test('a second execution of the same delivery (its claim is taken: a duplicate Express execution, a message delivered twice) does not reach the vendor (issue 13, item 1)', async () => {
    const result = await run(firstCall(), { ClaimCall: failsWith('DynamoDB.ConditionalCheckFailedException', 'The conditional request failed') });
    expect(result.error).toBeUndefined();
    expect(result.edges).toContain('ClaimCall: Catch 0 -> AlreadyClaimed');
    expect(result.calls.CheckWaitingWorkflow).toBeUndefined();
    expect(result.calls.CallVendor).toBeUndefined();
    expect(result.calls.ReturnResponse).toBeUndefined();
  });

  test('an AWS failure of the claim goes back through the queue as the next attempt, without calling the vendor', async () => {
    const result = await run(firstCall(), { ClaimCall: failsWith('DynamoDB.AmazonDynamoDBException', 'The security token included in the request is invalid') });
    expect(result.error).toBeUndefined();
    expect(result.edges).toContain('ClaimCall: Catch 1 -> ClassifyVendorError');
    expect(result.calls.CallVendor).toBeUndefined();
    expect(JSON.parse(result.calls.RequeueWithDelay[0].MessageBody)).toMatchObject({ requestId: 'call-1', attempt: 2 });
  });

  test('the claim is a conditional write of call#<requestId> with the claim sequence the dispatcher built', async () => {
    const result = await run(firstCall());
    const claim = result.calls.ClaimCall[0];
    expect(claim.Key).toEqual({ requestId: { S: 'call#call-1' } });
    expect(claim.ConditionExpression).toBe('attribute_not_exists(#claimSeq) OR #claimSeq < :claimSeq');
    expect(claim.ExpressionAttributeValues[':claimSeq']).toEqual({ N: '1000' });
  });

  test('a call whose waiting workflow has ended does not reach the vendor', async () => {
    const result = await run(firstCall(), { CheckWaitingWorkflow: failsWith('Sfn.TaskTimedOutException', 'Task Timed Out') });
    expect(result.error).toBeUndefined();
    expect(result.edges).toContain('CheckWaitingWorkflow: Catch 0 -> WaitingWorkflowEnded');
    expect(result.calls.CallVendor).toBeUndefined();
  });

  test('an answer for a workflow that ended meanwhile is dropped', async () => {
    const result = await run(firstCall(), { ReturnResponse: failsWith('Sfn.TaskTimedOutException', 'Task Timed Out') });
    expect(result.error).toBeUndefined();
    expect(result.edges).toContain('ReturnResponse: Catch 0 -> WaitingWorkflowEnded');
    expect(result.calls.ParkInDeadLetterQueue).toBeUndefined();
  });

  test('an answer that cannot be returned (too large) fails the waiting workflow', async () => {
    const result = await run(firstCall(), { ReturnResponse: failsWith('Sfn.ValidationException', 'Output too large') });
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.edges).toContain('ReturnResponse: Catch 1 -> ParkInDeadLetterQueue');
  });

  /** The states each route reaches, to throttle each retried AWS call on its own route. */
  const routes: Array<[string, VendorBehaviour]> = [
    ['ClaimCall', vendorAccepts({ result: 42 })],
    ['CheckWaitingWorkflow', vendorAccepts({ result: 42 })],
    ['ReturnResponse', vendorAccepts({ result: 42 })],
    ['RequeueWithDelay', vendorRefuses(503)],
    ['ParkInDeadLetterQueue', vendorRefuses(404)],
    ['FailWaitingWorkflow', vendorRefuses(404)],
    ['FailWaitingWorkflowBriefly', vendorRefuses(404)],
    ['FailWaitingWorkflowByName', vendorQuotaExhausted('FAIL')], // with quotas only
  ];
  const credentialState = ['ReadVendorCredential', 'GetVendorToken'].find((state) => state in definition.States);
  if (credentialState) {
    routes.push([credentialState, vendorAccepts({ jobId: 'job-1', result: 42 })]);
  }
  const retriedStates = routes.filter(([state]) => state in definition.States && (definition.States[state].Retry ?? []).length > 0);
  test.each(retriedStates)('a throttled %s is retried in the workflow, then the route goes on', async (state, vendor) => {
    const overrides: Record<string, TaskHandler> = {};
    if (state === 'FailWaitingWorkflowBriefly') {
      overrides.FailWaitingWorkflow = failsWith('Sfn.ValidationException', 'Cause too long');
    }
    const normal = (await run(firstCall(), overrides, vendor)).states;
    for (let i = 0; i < definition.States[state].Retry.length; i++) {
      const result = await run(firstCall(), { ...overrides, [state]: failing(1, retried(state, i), succeeding[state]) }, vendor);
      expect(result.edges).toContain(`${state}: Retry ${i}`);
      expect(result.states).toEqual(normal);
    }
  });

  test.each([['CallVendor', GET_RESULT], ['CallVendorWithBody', PUT_PRIORITY]] as const)('a %s invocation that fails around the call is retried', async (state, call) => {
    if (!definition.States[state].Retry) {
      return; // apigateway:invoke (PacingPoint.DISPATCH): no retry in the workflow
    }
    const result = await run(firstCall(call), { [state]: failing(1, retried(state), callVendorTask(paced, vendorAccepts({ ok: true }))) });
    expect(result.edges).toContain(`${state}: Retry 0`);
    expect(result.calls.ReturnResponse).toHaveLength(1);
  });

  const failures = credentialFailures(configuration.configuration);
  if (failures.length > 0) {
    test.each(failures)('%s: the vendor is not called, the request is %s', async (_what, overrides, outcome) => {
      const result = await run(firstCall(), overrides);
      expect(result.calls.CallVendor).toBeUndefined();
      if (outcome.startsWith('parked as ')) {
        expect(result.error?.name).toBe('VendorRequestFailed');
        expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe(outcome.slice('parked as '.length));
        expect(result.calls.FailWaitingWorkflow[0]).toMatchObject({ TaskToken: 'main-task-token-2', Error: 'VendorRequestFailed' });
      } else {
        expect(result.error).toBeUndefined();
        expect(JSON.parse(result.calls.RequeueWithDelay[0].MessageBody).attempt).toBe(2);
      }
    });
  }

  test.each([
    ['a 429', GET_RESULT, vendorRefuses(429, { message: 'slow down' }, { 'retry-after': '1' }), 'ClassifyVendorError: Choice 0 -> RetryOrGiveUp'],
    ['a 503', PUT_PRIORITY, vendorRefuses(503), 'ClassifyVendorError: Default -> RetryOrGiveUp'],
    ['no answer', GET_RESULT, vendorSilent, 'ClassifyVendorError: Default -> RetryOrGiveUp'],
  ])('%s from the vendor goes back through the queue as the same call, next attempt', async (_what, call, vendor, edge) => {
    const result = await run(firstCall(call), {}, vendor);
    expect(result.error).toBeUndefined();
    expect(result.edges).toContain(edge);
    const sent = JSON.parse(result.calls.RequeueWithDelay[0].MessageBody);
    // Issue 15: with a credential or limits per key, the retry keeps the key and its group (the key's SHA-256).
    const perKey = requestsKeyed(configuration.configuration);
    expect(sent).toEqual({
      kind: 'call',
      taskToken: 'main-task-token-2',
      requestId: 'call-1',
      ...(perKey ? { key: 'tenant-1' } : {}),
      attempt: 2,
      call: callMessage(call).call,
      // The retry keeps the call's start (its quota deadline), what job it ends (none here) and its priority (none: normal).
      requestStartedAtMs: expect.any(Number),
      endsJobOf: null,
      priority: null,
    });
    expect(result.calls.RequeueWithDelay[0].MessageGroupId).toBe(perKey ? literalKeyGroupId('tenant-1') : undefined);
  });

  test.each([['CallVendor', GET_RESULT], ['CallVendorWithBody', PUT_PRIORITY]] as const)('a 404 on %s parks the call and fails the waiting workflow', async (state, call) => {
    const result = await run(firstCall(call), {}, vendorRefuses(404, { error: 'no job job-1' }));
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.edges).toEqual(expect.arrayContaining([`${state}: Catch 0 -> ClassifyVendorError`, 'ClassifyVendorError: Choice 1 -> ParkInDeadLetterQueue']));
    expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('ApiGateway.404');
  });

  test('an AWS failure of the waiting-workflow check is retried through the queue', async () => {
    const result = await run(firstCall(), { CheckWaitingWorkflow: failsWith('Sfn.AccessDeniedException', 'not authorized') });
    expect(result.error).toBeUndefined();
    expect(result.edges).toContain('CheckWaitingWorkflow: Catch 1 -> ClassifyVendorError');
    expect(result.calls.CallVendor).toBeUndefined();
  });

  test('a retry that cannot be sent to the queue is parked; a call that cannot be parked still fails the waiting workflow', async () => {
    const requeueFails = await run(firstCall(), { RequeueWithDelay: failsWith('Sqs.QueueDoesNotExistException', 'The specified queue does not exist.') }, vendorRefuses(503));
    expect(requeueFails.edges).toContain('RequeueWithDelay: Catch 0 -> ParkInDeadLetterQueue');
    expect(requeueFails.error?.name).toBe('VendorRequestFailed');
    const parkFails = await run(firstCall(), { ParkInDeadLetterQueue: failsWith('Sqs.QueueDoesNotExistException', 'The specified queue does not exist.') }, vendorRefuses(404));
    expect(parkFails.edges).toContain('ParkInDeadLetterQueue: Catch 0 -> FailWaitingWorkflow');
    expect(parkFails.calls.FailWaitingWorkflow).toHaveLength(1);
  });

  test('a failure cause SendTaskFailure refuses is replaced by a brief one; a failure of that ends the execution', async () => {
    const brief = await run(firstCall(), { FailWaitingWorkflow: failsWith('Sfn.ValidationException', 'Cause too long') }, vendorRefuses(404));
    expect(brief.edges).toEqual(expect.arrayContaining(['FailWaitingWorkflow: Catch 0 -> FailWaitingWorkflowBriefly', 'FailWaitingWorkflowBriefly: Next -> CallFailed']));
    const none = await run(firstCall(), {
      FailWaitingWorkflow: failsWith('Sfn.ValidationException', 'Cause too long'),
      FailWaitingWorkflowBriefly: failsWith('Sfn.TaskTimedOutException', 'Task Timed Out'),
    }, vendorRefuses(404));
    expect(none.edges).toContain('FailWaitingWorkflowBriefly: Catch 0 -> CallFailed');
    expect(none.error?.name).toBe('VendorRequestFailed');
  });

  if (JSON.stringify(definition.States.ClassifyVendorError).includes('VendorQuotaExhausted')) {
    test('a spent quota that the call may not wait for (QuotaExhaustedAction.FAIL, or beyond its deadline): parked as VendorQuotaExhausted, the waiting workflow fails at once (issue 14)', async () => {
      const received: VendorRequest[] = [];
      const result = await run(firstCall(), {}, vendorQuotaExhausted('FAIL'), received);
      expect(received).toEqual([]);
      expect(result.error?.name).toBe('VendorRequestFailed');
      expect(result.edges).toEqual(expect.arrayContaining([
        'CallVendor: Catch 0 -> ClassifyVendorError', 'ClassifyVendorError: Choice 3 -> ParkInDeadLetterQueue',
        'ParkInDeadLetterQueue: Next -> FailWaitingWorkflowHow', 'FailWaitingWorkflowHow: Choice 0 -> FailWaitingWorkflowByName',
        'FailWaitingWorkflowByName: Next -> CallFailed',
      ]));
      // Not retried: no attempt is spent on a quota that is gone for the period.
      expect(result.calls.RequeueWithDelay).toBeUndefined();
      expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('VendorQuotaExhausted');
      // The waiting workflow fails with the error's own name: it can catch VendorQuotaExhausted.
      expect(result.calls.FailWaitingWorkflowByName[0]).toMatchObject({ TaskToken: 'main-task-token-2', Error: 'VendorQuotaExhausted' });
      expect(result.calls.FailWaitingWorkflowByName[0].Cause).toMatch(/quota 'hourly' is spent until/);
      expect(result.calls.FailWaitingWorkflow).toBeUndefined();
    });

    test('a refused request still fails the waiting workflow with VendorRequestFailed when quotas are configured; a failing by-name SendTaskFailure falls back to the brief one (issue 14)', async () => {
      const refused = await run(firstCall(), {}, vendorRefuses(400));
      expect(refused.edges).toContain('FailWaitingWorkflowHow: Default -> FailWaitingWorkflow');
      expect(refused.calls.FailWaitingWorkflow[0]).toMatchObject({ Error: 'VendorRequestFailed' });
      const byNameFails = await run(firstCall(), {
        FailWaitingWorkflowByName: failsWith('Sfn.TaskTimedOutException', 'Task Timed Out'),
      }, vendorQuotaExhausted('FAIL'));
      expect(byNameFails.edges).toContain('FailWaitingWorkflowByName: Catch 0 -> FailWaitingWorkflowBriefly');
      expect(byNameFails.error?.name).toBe('VendorRequestFailed');
    });

    test('a spent quota (QuotaExhaustedAction.WAIT): the call goes back to the queue until the period ends, without counting an attempt (issue 14)', async () => {
      const received: VendorRequest[] = [];
      const input = firstCall();
      const result = await run(input, {}, vendorQuotaExhausted('WAIT'), received);
      expect(received).toEqual([]);
      expect(result.error).toBeUndefined();
      expect(result.edges).toEqual(expect.arrayContaining(['WasVendorCalled: Choice 0 -> DeferToQueue', 'RequeueWithDelay: Next -> RetryScheduled']));
      const requeued = result.calls.RequeueWithDelay[0];
      expect(JSON.parse(requeued.MessageBody).attempt).toBe(input.attempt);
      expect(requeued.DelaySeconds).toBeGreaterThan(0);
      expect(requeued.DelaySeconds).toBeLessThanOrEqual(900);
    });
  }

  if (paced) {
    test('an answer too large for Step Functions (300 KiB) is refused by the vendor caller: the call is parked as VendorResponseTooLarge and the waiting workflow fails at once (issue 11)', async () => {
      // Before: the caller returned it, the task result went over 256 KiB, and the execution failed
      // with States.DataLimitExceeded, which no Catch handles: nothing parked, the workflow waited.
      const result = await run(firstCall(), {}, vendorAnswersTooLarge());
      expect(result.error?.name).toBe('VendorRequestFailed');
      expect(result.edges).toEqual(expect.arrayContaining(['CallVendor: Catch 0 -> ClassifyVendorError', 'ClassifyVendorError: Choice 2 -> ParkInDeadLetterQueue']));
      // Not retried: the same call would fetch the same answer.
      expect(result.calls.RequeueWithDelay).toBeUndefined();
      const parked = result.calls.ParkInDeadLetterQueue[0];
      expect(parked.MessageAttributes.reason.StringValue).toBe('VendorResponseTooLarge');
      expect(parked.MessageAttributes.detail.StringValue).toMatch(/VendorResponseTooLarge.*256 KiB/);
      expect(result.calls.FailWaitingWorkflow[0]).toMatchObject({ TaskToken: 'main-task-token-2', Error: 'VendorRequestFailed' });
      expect(result.calls.FailWaitingWorkflow[0].Cause).toMatch(/VendorResponseTooLarge/);
    });

    test('a vendor pause longer than the caller may wait sends the call back to the queue without counting an attempt', async () => {
      const result = await run(firstCall(), {}, vendorPaused);
      expect(result.error).toBeUndefined();
      expect(result.edges).toEqual(expect.arrayContaining(['WasVendorCalled: Choice 0 -> DeferToQueue', 'RequeueWithDelay: Next -> RetryScheduled']));
      // One more deferral: the next dispatch of the message claims again, with a higher sequence.
      const deferred = JSON.parse(result.calls.RequeueWithDelay[0].MessageBody);
      expect(deferred).toMatchObject({ kind: 'call', requestId: 'call-1', attempt: 1, deferrals: 1 });
      expect(vendorCallInputFor(deferred, paced).claimSeq).toBe(1001);
      expect(result.calls.ReturnResponse).toBeUndefined();
    });

    test('a deferred call that cannot be sent back to the queue is parked and the waiting workflow failed', async () => {
      const result = await run(firstCall(), { RequeueWithDelay: failsWith('Sqs.QueueDoesNotExistException', 'The specified queue does not exist.') }, vendorPaused);
      expect(result.error?.name).toBe('VendorRequestFailed');
      expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('VendorCallDeferred');
    });
  }

  test('retries go through the queue until the last attempt, which gives up', async () => {
    let input = firstCall();
    const attempts: Execution[] = [];
    for (let i = 0; i < 20 && attempts[attempts.length - 1]?.error === undefined; i++) {
      const result = await run(input, {}, vendorRefuses(500));
      attempts.push(result);
      if (result.calls.RequeueWithDelay) {
        input = vendorCallInputFor(result.calls.RequeueWithDelay[0].MessageBody, paced);
      }
    }
    expect(attempts).toHaveLength(5);
    expect(attempts[4].edges).toContain('RetryOrGiveUp: Default -> ParkInDeadLetterQueue');
    expect(attempts[4].error?.name).toBe('VendorRequestFailed');
  });

  test('every other edge of this configuration ran', () => {
    const missing = edgesOf(definition).filter((e) => !taken.has(e) && !UNREACHABLE.some((p) => p.test(e)));
    expect(missing).toEqual([]);
  });
});
