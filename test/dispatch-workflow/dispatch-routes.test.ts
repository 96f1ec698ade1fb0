/**
 * Every route of the dispatch workflow, in every configuration (both pacing points; callback URL in
 * the body, in a header, per request or not, or not sent; each kind of vendor credential), executed
 * from StartAt with the input the dispatcher's own code builds, the vendor caller's real logic
 * answering CallVendor (PacingPoint.VENDOR_CALL), and only AWS services mocked (SDK output shapes).
 *
 * The credential's producers fail as they really do (Secrets Manager's errors and outputs, the
 * credential and token functions' real logic); credential-routes.test.ts checks those routes in
 * more detail.
 * The last test of each configuration checks that every other edge ran (docs/asl-coverage.md).
 */
import { literalKeyGroupId } from '../../src/orchestrator/request-key-fields';
import { VENDOR_CREDENTIAL_HEADER } from '../../src/throttled-proxy/vendor-credentials';
import { allConfigurations, requestsKeyed } from '../asl/configurations';
import { edgesOf } from '../asl/edges';
import { Execution, executeDefinition, stepError, TaskHandler } from '../asl/execute';
import {
  callVendorTask, claimNew, credentialAnswers, credentialFailures, dispatchInputFor, dynamoUpdated, failing, failsWith, sfnOk, sqsSent, submitMessage,
  vendorAccepts, vendorAnswersTooLarge, VendorBehaviour, vendorQuotaExhausted, vendorPaused, vendorRefuses, VendorRequest, vendorSilent,
} from '../asl/producers';

const configurations = allConfigurations().filter((c) => c.name === 'DispatchWorkflow');

/** The credential header value the proxy gets in each configuration (see credentialAnswers). */
function expectedCredential(configuration: string): string | undefined {
  if (/per-key/.test(configuration)) return 'api-key-of-vendor/tenant-1';
  if (/OAuth/.test(configuration)) return 'Bearer access-token-1';
  if (/jsonField and prefix/.test(configuration)) return 'Bearer token-1';
  if (/prefix/.test(configuration)) return 'Bearer api-key-1';
  if (/secret header/.test(configuration)) return 'api-key-1';
  return undefined;
}

describe.each(configurations.map((c) => [c.configuration, c] as const))('dispatch workflow (%s), every route', (_, configuration) => {
  const definition = configuration.definition;
  const paced = 'WasVendorCalled' in definition.States;
  const taken = new Set<string>();

  /** The AWS calls' answers when they succeed. */
  const succeeding: Record<string, TaskHandler> = {
    ClaimRequest: claimNew,
    CheckWaitingWorkflow: sfnOk,
    StoreJobId: dynamoUpdated,
    RequeueWithDelay: sqsSent,
    ParkInDeadLetterQueue: sqsSent,
    FailWaitingWorkflow: sfnOk,
    FailWaitingWorkflowBriefly: sfnOk,
    FailWaitingWorkflowByName: sfnOk,
    ...credentialAnswers(configuration.configuration),
  };

  /** Every AWS call succeeds and the vendor accepts the job, unless `overrides` say otherwise. */
  async function run(input: unknown, overrides: Record<string, TaskHandler> = {}, vendor: VendorBehaviour = vendorAccepts({ jobId: 'job-1' }),
    received: VendorRequest[] = []): Promise<Execution> {
    const result = await executeDefinition(definition, input, { ...succeeding, CallVendor: callVendorTask(paced, vendor, received), ...overrides });
    result.edges.forEach((e) => taken.add(e));
    // Every Task the route reaches has its answer: none failed for want of a handler.
    expect(result.unexpected).toEqual([]);
    return result;
  }
  const firstDispatch = () => dispatchInputFor(submitMessage(), paced);
  /** The error names the state's Retry entry `i` lists first. */
  const retried = (state: string, i = 0) => () => stepError(definition.States[state].Retry[i].ErrorEquals[0], 'Rate exceeded');

  test('a job is submitted with the request id and its job id stored', async () => {
    const received: VendorRequest[] = [];
    const result = await run(firstDispatch(), {}, vendorAccepts({ jobId: 'job-1' }), received);
    expect(result.error).toBeUndefined();
    expect(result.states[result.states.length - 1]).toBe('Submitted');
    expect(result.calls.StoreJobId[0].ExpressionAttributeValues[':job']).toEqual({ S: 'job-1' });
    // Issue 15: with a credential or limits per key, the correlation item records the request's key.
    expect(result.calls.ClaimRequest[0].ExpressionAttributeValues[':requestKey']).toEqual(requestsKeyed(configuration.configuration) ? { S: 'tenant-1' } : undefined);
    // The request id, and the credential as the configuration reads it, reach the proxy.
    const credential = expectedCredential(configuration.configuration);
    if (paced) {
      expect(received).toHaveLength(1);
      expect(received[0].headers['Idempotency-Key']).toBe('req-1');
      expect(received[0].headers[VENDOR_CREDENTIAL_HEADER]).toBe(credential);
    } else {
      expect(result.calls.CallVendor[0].Headers['Idempotency-Key']).toEqual(['req-1']);
      expect(result.calls.CallVendor[0].Headers[VENDOR_CREDENTIAL_HEADER]).toEqual(credential === undefined ? undefined : [credential]);
    }
  });

  test('a numeric job id is stored as a string', async () => {
    const result = await run(firstDispatch(), {}, vendorAccepts({ jobId: 1234 }));
    expect(result.calls.StoreJobId[0].ExpressionAttributeValues[':job']).toEqual({ S: '1234' });
  });

  test('a request whose job was submitted already stops at the claim', async () => {
    const result = await run(firstDispatch(), { ClaimRequest: failsWith('DynamoDB.ConditionalCheckFailedException', 'The conditional request failed') });
    expect(result.error).toBeUndefined();
    expect(result.edges).toContain('ClaimRequest: Catch 0 -> AlreadySubmitted');
    expect(result.calls.CallVendor).toBeUndefined();
  });

  test('a request whose waiting workflow has ended is not sent', async () => {
    const result = await run(firstDispatch(), { CheckWaitingWorkflow: failsWith('Sfn.TaskTimedOutException', 'Task Timed Out') });
    expect(result.error).toBeUndefined();
    expect(result.edges).toContain('CheckWaitingWorkflow: Catch 0 -> WaitingWorkflowEnded');
    expect(result.calls.CallVendor).toBeUndefined();
  });

  /** The states each route reaches, to throttle each retried AWS call on its own route. */
  const routes: Array<[string, VendorBehaviour]> = [
    ['ClaimRequest', vendorAccepts({ jobId: 'job-1' })],
    ['CheckWaitingWorkflow', vendorAccepts({ jobId: 'job-1' })],
    ['StoreJobId', vendorAccepts({ jobId: 'job-1' })],
    ['RequeueWithDelay', vendorRefuses(503)],
    ['ParkInDeadLetterQueue', vendorRefuses(400)],
    ['FailWaitingWorkflow', vendorRefuses(400)],
    ['FailWaitingWorkflowBriefly', vendorRefuses(400)],
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
    const normal = (await run(firstDispatch(), overrides, vendor)).states;
    for (let i = 0; i < definition.States[state].Retry.length; i++) {
      const throttledOnce = failing(1, retried(state, i), overrides[state] ?? succeeding[state]);
      const result = await run(firstDispatch(), { ...overrides, [state]: throttledOnce }, vendor);
      expect(result.edges).toContain(`${state}: Retry ${i}`);
      expect(result.states).toEqual(normal);
    }
  });

  if (paced) {
    test('a CallVendor invocation that Lambda throttles is retried', async () => {
      const result = await run(firstDispatch(), {
        CallVendor: failing(1, retried('CallVendor'), callVendorTask(paced, vendorAccepts({ jobId: 'job-1' }))),
      });
      expect(result.edges).toContain('CallVendor: Retry 0');
      expect(result.calls.StoreJobId).toHaveLength(1);
    });
  }

  const failures = credentialFailures(configuration.configuration);
  if (failures.length > 0) {
    test.each(failures)('%s: the vendor is not called, the request is %s', async (_what, overrides, outcome) => {
      const result = await run(firstDispatch(), overrides);
      expect(result.calls.CallVendor).toBeUndefined();
      if (outcome.startsWith('parked as ')) {
        expect(result.error?.name).toBe('VendorRequestFailed');
        expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe(outcome.slice('parked as '.length));
        expect(result.calls.FailWaitingWorkflow[0]).toMatchObject({ TaskToken: 'main-task-token-1', Error: 'VendorRequestFailed' });
      } else {
        expect(result.error).toBeUndefined();
        expect(JSON.parse(result.calls.RequeueWithDelay[0].MessageBody).attempt).toBe(2);
      }
    });
  }

  test.each([
    ['a 429', vendorRefuses(429, { message: 'slow down' }, { 'retry-after': '2' }), 'ClassifyVendorError: Choice 0 -> RetryOrGiveUp'],
    ['a 503', vendorRefuses(503), 'ClassifyVendorError: Default -> RetryOrGiveUp'],
    ['no answer', vendorSilent, 'ClassifyVendorError: Default -> RetryOrGiveUp'],
  ])('%s from the vendor goes back through the queue as the next attempt', async (_what, vendor, edge) => {
    const result = await run(firstDispatch(), {}, vendor);
    expect(result.error).toBeUndefined();
    expect(result.edges).toEqual(expect.arrayContaining([edge, 'RetryOrGiveUp: Choice 0 -> BackoffCaps',
      'RequeueWithDelay: Next -> RetryScheduled']));
    const sent = JSON.parse(result.calls.RequeueWithDelay[0].MessageBody);
    expect(sent).toMatchObject({ requestId: 'req-1', taskToken: 'main-task-token-1', attempt: 2 });
    // Issue 15: with a credential or limits per key, the retry keeps the key and its group (the key's SHA-256).
    const perKey = requestsKeyed(configuration.configuration);
    expect(sent.key).toBe(perKey ? 'tenant-1' : undefined);
    expect(result.calls.RequeueWithDelay[0].MessageGroupId).toBe(perKey ? literalKeyGroupId('tenant-1') : undefined);
  });

  test('issue 15: the key\'s limits in force reach the vendor caller (limits per key); an earlier dispatcher\'s input without them runs with null', async () => {
    const limitsPerKey = /limits per key/.test(configuration.configuration);
    const keyLimits = { requestsPerSecond: 2, quotas: {}, priorityAgingMs: 30_000, paused: false };
    const events: Array<Record<string, unknown>> = [];
    const seen = {
      CallVendor: (input: { Payload?: Record<string, unknown> }) => {
        events.push(input.Payload ?? {});
        return callVendorTask(paced, vendorAccepts({ jobId: 'job-1' }))(input);
      },
    };
    const { keyLimits: _none, ...earlier } = firstDispatch();
    for (const input of [{ ...firstDispatch(), keyLimits }, earlier]) {
      const result = await run(input, seen);
      expect(result.error).toBeUndefined();
      expect(result.states[result.states.length - 1]).toBe('Submitted');
    }
    if (paced) {
      expect(events.map((event) => event.keyLimits)).toEqual(limitsPerKey ? [keyLimits, null] : [undefined, undefined]);
    }
  });

  test('a 4xx refusal parks the request and fails the waiting workflow at once', async () => {
    const result = await run(firstDispatch(), {}, vendorRefuses(400, { error: 'invalid order' }));
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.edges).toContain('ClassifyVendorError: Choice 1 -> ParkInDeadLetterQueue');
    expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('ApiGateway.400');
    expect(result.calls.FailWaitingWorkflow[0]).toMatchObject({ TaskToken: 'main-task-token-1', Error: 'VendorRequestFailed' });
  });

  test.each([
    ['without the job id field', { id: 'job-1' }, 'IsJobIdPresent: Default -> MissingJobId'],
    ['with a job id that is not a string or number', { jobId: { nested: true } }, 'HasJobId: Default -> MissingJobId'],
  ])('a response %s gives the request up with a clear reason', async (_what, body, edge) => {
    const result = await run(firstDispatch(), {}, vendorAccepts(body));
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.edges).toContain(edge);
    expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('VendorResponseWithoutJobId');
  });

  test.each([
    ['ClaimRequest', 'DynamoDB.ResourceNotFoundException', 'ClaimRequest: Catch 1 -> ClassifyVendorError'],
    ['CheckWaitingWorkflow', 'Sfn.AccessDeniedException', 'CheckWaitingWorkflow: Catch 1 -> ClassifyVendorError'],
  ])('an AWS failure of %s before the vendor call is retried through the queue', async (state, error, edge) => {
    const result = await run(firstDispatch(), { [state]: failsWith(error, 'failed') });
    expect(result.error).toBeUndefined();
    expect(result.edges).toEqual(expect.arrayContaining([edge, 'ClassifyVendorError: Default -> RetryOrGiveUp']));
    expect(result.calls.CallVendor).toBeUndefined();
    expect(JSON.parse(result.calls.RequeueWithDelay[0].MessageBody).attempt).toBe(2);
  });

  test('a job id that cannot be stored fails the waiting workflow rather than leaving it to time out', async () => {
    const result = await run(firstDispatch(), { StoreJobId: failsWith('DynamoDB.ResourceNotFoundException', 'Requested resource not found') });
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.edges).toContain('StoreJobId: Catch 0 -> ParkInDeadLetterQueue');
  });

  test('a retry that cannot be sent to the queue is parked and the waiting workflow failed', async () => {
    const result = await run(firstDispatch(), { RequeueWithDelay: failsWith('Sqs.QueueDoesNotExistException', 'The specified queue does not exist.') }, vendorRefuses(503));
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.edges).toContain('RequeueWithDelay: Catch 0 -> ParkInDeadLetterQueue');
    expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('ApiGateway.503');
  });

  test('a request that cannot be parked still fails the waiting workflow', async () => {
    const result = await run(firstDispatch(), { ParkInDeadLetterQueue: failsWith('Sqs.QueueDoesNotExistException', 'The specified queue does not exist.') }, vendorRefuses(400));
    expect(result.error?.name).toBe('VendorRequestFailed');
    expect(result.edges).toContain('ParkInDeadLetterQueue: Catch 0 -> FailWaitingWorkflow');
    expect(result.calls.FailWaitingWorkflow).toHaveLength(1);
  });

  test('a failure cause SendTaskFailure refuses is replaced by a brief one; a failure of that ends the execution', async () => {
    const brief = await run(firstDispatch(), { FailWaitingWorkflow: failsWith('Sfn.ValidationException', 'Cause too long') }, vendorRefuses(400));
    expect(brief.edges).toEqual(expect.arrayContaining(['FailWaitingWorkflow: Catch 0 -> FailWaitingWorkflowBriefly', 'FailWaitingWorkflowBriefly: Next -> DispatchFailed']));
    const none = await run(firstDispatch(), {
      FailWaitingWorkflow: failsWith('Sfn.ValidationException', 'Cause too long'),
      FailWaitingWorkflowBriefly: failsWith('Sfn.TaskTimedOutException', 'Task Timed Out'),
    }, vendorRefuses(400));
    expect(none.edges).toContain('FailWaitingWorkflowBriefly: Catch 0 -> DispatchFailed');
    expect(none.error?.name).toBe('VendorRequestFailed');
  });

  if ('IsPayloadAScalar' in definition.States) {
    test.each([
      ['a string', 'just a string', 'IsPayloadAScalar: Choice 0 -> PayloadNotAnObject'],
      ['null', null, 'IsPayloadAScalar: Choice 0 -> PayloadNotAnObject'],
      ['an array', ['an', 'array'], 'IsPayloadAnObject: Default -> PayloadNotAnObject'],
    ])('a payload that is %s is refused before any vendor call (the webhook URL goes in a body field)', async (_what, payload, edge) => {
      const result = await run(dispatchInputFor(submitMessage(payload), paced));
      expect(result.error?.name).toBe('VendorRequestFailed');
      expect(result.edges).toContain(edge);
      expect(result.calls.CallVendor).toBeUndefined();
      expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('PayloadNotAnObject');
    });
  }

  if (JSON.stringify(definition.States.ClassifyVendorError).includes('VendorQuotaExhausted')) {
    test('a spent quota that the request may not wait for (QuotaExhaustedAction.FAIL, or beyond its deadline): parked as VendorQuotaExhausted, the waiting workflow fails at once (issue 14)', async () => {
      const received: VendorRequest[] = [];
      const result = await run(firstDispatch(), {}, vendorQuotaExhausted('FAIL'), received);
      expect(received).toEqual([]);
      expect(result.error?.name).toBe('VendorRequestFailed');
      expect(result.edges).toEqual(expect.arrayContaining([
        'CallVendor: Catch 0 -> ClassifyVendorError', 'ClassifyVendorError: Choice 3 -> ParkInDeadLetterQueue',
        'ParkInDeadLetterQueue: Next -> FailWaitingWorkflowHow', 'FailWaitingWorkflowHow: Choice 0 -> FailWaitingWorkflowByName',
        'FailWaitingWorkflowByName: Next -> DispatchFailed',
      ]));
      // Not retried: no attempt is spent on a quota that is gone for the period.
      expect(result.calls.RequeueWithDelay).toBeUndefined();
      expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('VendorQuotaExhausted');
      // The waiting workflow fails with the error's own name: it can catch VendorQuotaExhausted.
      expect(result.calls.FailWaitingWorkflowByName[0]).toMatchObject({ TaskToken: 'main-task-token-1', Error: 'VendorQuotaExhausted' });
      expect(result.calls.FailWaitingWorkflowByName[0].Cause).toMatch(/quota 'hourly' is spent until/);
      expect(result.calls.FailWaitingWorkflow).toBeUndefined();
    });

    test('a refused request still fails the waiting workflow with VendorRequestFailed when quotas are configured; a failing by-name SendTaskFailure falls back to the brief one (issue 14)', async () => {
      const refused = await run(firstDispatch(), {}, vendorRefuses(400));
      expect(refused.edges).toContain('FailWaitingWorkflowHow: Default -> FailWaitingWorkflow');
      expect(refused.calls.FailWaitingWorkflow[0]).toMatchObject({ Error: 'VendorRequestFailed' });
      const byNameFails = await run(firstDispatch(), {
        FailWaitingWorkflowByName: failsWith('Sfn.TaskTimedOutException', 'Task Timed Out'),
      }, vendorQuotaExhausted('FAIL'));
      expect(byNameFails.edges).toContain('FailWaitingWorkflowByName: Catch 0 -> FailWaitingWorkflowBriefly');
      expect(byNameFails.error?.name).toBe('VendorRequestFailed');
    });

    test('a spent quota (QuotaExhaustedAction.WAIT): the request goes back to the queue until the period ends, without counting an attempt (issue 14)', async () => {
      const received: VendorRequest[] = [];
      const input = firstDispatch();
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
    test('an answer too large for Step Functions (300 KiB) is refused by the vendor caller: the request is parked as VendorResponseTooLarge and the waiting workflow fails at once (issue 11)', async () => {
      // Before: the caller returned it, the task result went over 256 KiB, and the execution failed
      // with States.DataLimitExceeded, which no Catch handles: nothing parked, the workflow waited.
      const result = await run(firstDispatch(), {}, vendorAnswersTooLarge());
      expect(result.error?.name).toBe('VendorRequestFailed');
      expect(result.edges).toEqual(expect.arrayContaining(['CallVendor: Catch 0 -> ClassifyVendorError', 'ClassifyVendorError: Choice 2 -> ParkInDeadLetterQueue']));
      // Not retried: the same call would fetch the same answer.
      expect(result.calls.RequeueWithDelay).toBeUndefined();
      const parked = result.calls.ParkInDeadLetterQueue[0];
      expect(parked.MessageAttributes.reason.StringValue).toBe('VendorResponseTooLarge');
      expect(parked.MessageAttributes.detail.StringValue).toMatch(/VendorResponseTooLarge.*256 KiB/);
      expect(result.calls.FailWaitingWorkflow[0]).toMatchObject({ TaskToken: 'main-task-token-1', Error: 'VendorRequestFailed' });
      expect(result.calls.FailWaitingWorkflow[0].Cause).toMatch(/VendorResponseTooLarge/);
    });

    test('a vendor pause longer than the caller may wait sends the request back to the queue without counting an attempt', async () => {
      const received: VendorRequest[] = [];
      const result = await run(firstDispatch(), {}, vendorPaused, received);
      expect(result.error).toBeUndefined();
      expect(received).toEqual([]);
      expect(result.edges).toEqual(expect.arrayContaining(['WasVendorCalled: Choice 0 -> DeferToQueue', 'RequeueWithDelay: Next -> RetryScheduled']));
      const sent = result.calls.RequeueWithDelay[0];
      expect(sent.DelaySeconds).toBeGreaterThan(0);
      expect(JSON.parse(sent.MessageBody)).toMatchObject({ requestId: 'req-1', attempt: 1, deferrals: 1 });
    });

    test('a deferred request that cannot be sent back to the queue is parked and the waiting workflow failed', async () => {
      const result = await run(firstDispatch(), { RequeueWithDelay: failsWith('Sqs.QueueDoesNotExistException', 'The specified queue does not exist.') }, vendorPaused);
      expect(result.error?.name).toBe('VendorRequestFailed');
      expect(result.calls.ParkInDeadLetterQueue[0].MessageAttributes.reason.StringValue).toBe('VendorCallDeferred');
      expect(result.calls.FailWaitingWorkflow).toHaveLength(1);
    });
  }

  test('retries go through the queue until the last attempt, which gives up', async () => {
    // GIVEN a vendor that keeps failing; each attempt's input is what the dispatcher builds from
    // the message the previous attempt sent back to the queue
    let input = firstDispatch();
    const attempts: Execution[] = [];
    for (let i = 0; i < 20 && attempts[attempts.length - 1]?.error === undefined; i++) {
      const result = await run(input, {}, vendorRefuses(502));
      attempts.push(result);
      if (result.calls.RequeueWithDelay) {
        input = dispatchInputFor(result.calls.RequeueWithDelay[0].MessageBody, paced);
      }
    }

    // THEN five attempts, the last one parked with its own message and the waiting workflow failed
    expect(attempts).toHaveLength(5);
    const last = attempts[4];
    expect(last.edges).toContain('RetryOrGiveUp: Default -> ParkInDeadLetterQueue');
    expect(JSON.parse(last.calls.ParkInDeadLetterQueue[0].MessageBody)).toMatchObject({ requestId: 'req-1', attempt: 5 });
    expect(last.error?.name).toBe('VendorRequestFailed');
  });

  test('every other edge of this configuration ran', () => {
    const missing = edgesOf(definition).filter((e) => !taken.has(e));
    expect(missing).toEqual([]);
  });
});
