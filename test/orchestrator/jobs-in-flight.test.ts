/**
 * Jobs in flight through the L3 and its blocks: the contract's validation, what the dispatcher and
 * the callback processor are told, and what they may touch.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator, KeyLimits, PacingPoint, RateControlledQueueConsumer, VendorContract, VendorContractState, VendorQuota } from '../../src';
import { recordsRequestKey } from '../../src/dispatch-workflow/request-key-steps';
import { logicalIdOf, resourcesGranted, statementsOfRole, testStack } from '../util';

const VENDOR_URL = 'https://vendor.example.com/v1/jobs';

function orchestrator(contract: VendorContract, stack: Stack = testStack()): AsyncExternalApiOrchestrator {
  return new AsyncExternalApiOrchestrator(stack, 'Vendor', { vendorUrl: VENDOR_URL, contract, callbackTimeout: Duration.hours(2) });
}

function environmentOf(template: Template, stack: Stack, fn: { node: { defaultChild?: unknown } }): Record<string, unknown> {
  return template.toJSON().Resources[logicalIdOf(stack, fn)].Properties.Environment.Variables;
}

describe('VendorContract.maxJobsInFlight', () => {
  test.each([0, 2.5, 5001])('GIVEN maxJobsInFlight %s WHEN the contract is made THEN it is refused with the range and why', (value) => {
    expect(() => VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: value }))
      .toThrow(`maxJobsInFlight must be a whole number between 1 and 5000 (given ${value}): the places are kept in one DynamoDB item of at most 400 KB`);
  });

  test('GIVEN maxJobDuration without maxJobsInFlight WHEN the contract is made THEN it is refused', () => {
    expect(() => VendorContract.of({ requestsPerSecond: 10, maxJobDuration: Duration.hours(1) }))
      .toThrow(/maxJobDuration \(1 hour\) is given without maxJobsInFlight/);
  });

  test('GIVEN maxJobDuration under a second WHEN the contract is made THEN it is refused', () => {
    expect(() => VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 2, maxJobDuration: Duration.millis(10) }))
      .toThrow(/maxJobDuration must be between 1 second and 365 days \(given 10 millis\)/);
  });

  test('GIVEN a contract with maxJobsInFlight WHEN the orchestrator is built THEN the dispatcher takes places and the callback processor frees them', () => {
    const stack = testStack();
    const o = orchestrator(VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 25, maxJobDuration: Duration.hours(6) }), stack);
    const template = Template.fromStack(stack);
    const pacerTable = { Ref: logicalIdOf(stack, o.consumer.pacerTable) };
    const correlationTable = { Ref: logicalIdOf(stack, o.table.table) };

    expect(o.contract.maxJobsInFlight).toBe(25);
    expect(o.consumer.maxJobsInFlight).toBe(25);
    expect(environmentOf(template, stack, o.consumer.function)).toMatchObject({
      MAX_JOBS_IN_FLIGHT: '25',
      MAX_JOB_DURATION_MS: String(6 * 3_600_000),
      JOB_PLACE_RECHECK_MS: '2000',
      CORRELATION_TABLE_NAME: correlationTable,
    });
    expect(environmentOf(template, stack, o.webhook.processor)).toMatchObject({ JOB_PLACES_TABLE_NAME: pacerTable });
    // Without per-key limits no key place is freed (issue 15).
    expect(environmentOf(template, stack, o.webhook.processor).FREE_KEY_PLACES).toBeUndefined();
    // A submission the vendor refuses (final 4xx) frees its place at the vendor caller.
    expect(environmentOf(template, stack, o.dispatch.vendorCaller!)).toMatchObject({ JOB_PLACES_TABLE_NAME: pacerTable });
    // The dispatcher reads the correlation table (already submitted?); the processor writes the places item.
    const dispatcher = statementsOfRole(template, stack, o.consumer.function.role!);
    expect(JSON.stringify(resourcesGranted(dispatcher, 'dynamodb:GetItem'))).toContain(logicalIdOf(stack, o.table.table));
    const processor = statementsOfRole(template, stack, o.webhook.processor.role!);
    expect(JSON.stringify(resourcesGranted(processor, 'dynamodb:UpdateItem'))).toContain(logicalIdOf(stack, o.consumer.pacerTable));
  });

  test('GIVEN a contract with per-key limits WHEN the orchestrator is built THEN the callback processor frees key places, the claim records the key and the dispatcher may read key counters (issue 15)', () => {
    const stack = testStack();
    const contract = VendorContract.of({
      requestsPerSecond: 10,
      maxJobsInFlight: 5,
      quotas: [VendorQuota.perDay(1000)],
      perKey: KeyLimits.of({ requestsPerSecond: 2, maxJobsInFlight: 2 }),
    });
    const o = orchestrator(contract, stack);
    const template = Template.fromStack(stack);
    expect(environmentOf(template, stack, o.webhook.processor)).toMatchObject({ FREE_KEY_PLACES: 'true' });
    const dispatch = template.toJSON().Resources[logicalIdOf(stack, o.dispatch.stateMachine)].Properties.DefinitionString;
    expect(JSON.stringify(dispatch)).toContain('#requestKey = :requestKey');
    // Per-key quotas: the dispatcher reads the batch's keys' counters in one BatchGetItem on the pacer table.
    const dispatcher = statementsOfRole(template, stack, o.consumer.function.role!);
    expect(JSON.stringify(resourcesGranted(dispatcher, 'dynamodb:BatchGetItem'))).toContain(logicalIdOf(stack, o.consumer.pacerTable));
  });

  test('recordsRequestKey: with a credential per key, or a contract with per-key limits, the claim records the key; else not (unchanged)', () => {
    const perKeyContract = VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 5, perKey: KeyLimits.of({ requestsPerSecond: 2 }) });
    const shared = { credentials: { isPerKey: false } } as never;
    expect(recordsRequestKey({ credentials: { isPerKey: true } } as never, undefined)).toBe(true);
    expect(recordsRequestKey(shared, perKeyContract)).toBe(true);
    expect(recordsRequestKey(shared, VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 5 }))).toBe(false);
    expect(recordsRequestKey(shared, undefined)).toBe(false);
  });

  test('GIVEN a registered workflow WHEN jobs in flight are limited THEN the dispatcher may check whether its tasks still wait (SendTaskHeartbeat)', () => {
    const stack = testStack();
    const o = orchestrator(VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 3 }), stack);
    const main = new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'Nothing')) });
    o.registerWorkflow(main);
    const dispatcher = statementsOfRole(Template.fromStack(stack), stack, o.consumer.function.role!);
    expect(JSON.stringify(resourcesGranted(dispatcher, 'states:SendTaskHeartbeat'))).toContain(logicalIdOf(stack, main));
  });

  test('GIVEN maxJobsInFlight without maxJobDuration WHEN the orchestrator is built THEN places expire after callbackTimeout', () => {
    const stack = testStack();
    const o = orchestrator(VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 3 }), stack);
    expect(environmentOf(Template.fromStack(stack), stack, o.consumer.function)).toMatchObject({ MAX_JOB_DURATION_MS: String(2 * 3_600_000) });
  });

  test('GIVEN no maxJobsInFlight WHEN the orchestrator is built THEN nothing takes or frees places', () => {
    const stack = testStack();
    const o = orchestrator(VendorContract.of({ requestsPerSecond: 10 }), stack);
    const template = Template.fromStack(stack);
    expect(o.consumer.maxJobsInFlight).toBeUndefined();
    expect(environmentOf(template, stack, o.consumer.function)).not.toHaveProperty('MAX_JOBS_IN_FLIGHT');
    expect(environmentOf(template, stack, o.webhook.processor)).not.toHaveProperty('JOB_PLACES_TABLE_NAME');
    expect(environmentOf(template, stack, o.dispatch.vendorCaller!)).not.toHaveProperty('JOB_PLACES_TABLE_NAME');
  });
});

describe('jobs in flight: the waiting room', () => {
  test('GIVEN maxJobsInFlight WHEN built THEN requests without a place wait in an encrypted waiting queue that nothing polls', () => {
    const stack = testStack();
    const o = orchestrator(VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 4 }), stack);
    const template = Template.fromStack(stack);
    const waitingId = logicalIdOf(stack, o.consumer.jobWaitingQueue!);
    // A stateful resource: its logical id must never change (test/upgrade).
    expect(waitingId).toMatch(/^VendorConsumerJobWaitingQueue[0-9A-F]{8}$/);
    expect(template.toJSON().Resources[waitingId].Properties).toMatchObject({ SqsManagedSseEnabled: true, MessageRetentionPeriod: 14 * 86_400 });
    // No event source mapping: waiting costs nothing per second.
    const mappings = Object.values(template.findResources('AWS::Lambda::EventSourceMapping'));
    expect(JSON.stringify(mappings)).not.toContain(waitingId);
    expect(o.consumer.metricJobsWaiting()!.metricName).toBe('ApproximateNumberOfMessagesVisible');
    const body = JSON.stringify(template.findResources('AWS::CloudWatch::Dashboard'));
    expect(body).toContain('requests waiting for a place (waiting queue depth)');
  });

  test('GIVEN maxJobsInFlight WHEN built THEN every freer of places may wake a waiter, and the dispatcher is swept every minute', () => {
    const stack = testStack();
    const o = orchestrator(VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 4 }), stack);
    const template = Template.fromStack(stack);
    const waiting = { Ref: logicalIdOf(stack, o.consumer.jobWaitingQueue!) };
    const requests = { Ref: logicalIdOf(stack, o.consumer.queue) };
    for (const fn of [o.consumer.function, o.webhook.processor, o.dispatch.vendorCaller!]) {
      expect(environmentOf(template, stack, fn)).toMatchObject({ JOB_WAITING_QUEUE_URL: waiting, JOB_REQUEST_QUEUE_URL: requests });
      const statements = statementsOfRole(template, stack, (fn as typeof o.consumer.function).role!);
      expect(JSON.stringify(resourcesGranted(statements, 'sqs:ReceiveMessage'))).toContain(waiting.Ref);
      expect(JSON.stringify(resourcesGranted(statements, 'sqs:DeleteMessage'))).toContain(waiting.Ref);
      expect(JSON.stringify(resourcesGranted(statements, 'sqs:SendMessage'))).toContain(requests.Ref);
    }
    // Only the dispatcher sends requests to wait.
    expect(JSON.stringify(resourcesGranted(statementsOfRole(template, stack, o.consumer.function.role!), 'sqs:SendMessage'))).toContain(waiting.Ref);
    expect(JSON.stringify(resourcesGranted(statementsOfRole(template, stack, o.webhook.processor.role!), 'sqs:SendMessage'))).not.toContain(waiting.Ref);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 minute)',
      Target: { Arn: { 'Fn::GetAtt': [logicalIdOf(stack, o.consumer.function), 'Arn'] }, Input: JSON.stringify({ kind: 'JobPlacesSweep' }) },
    });
  });

  test('GIVEN a callbackTimeout longer than the waiting queue keeps a message WHEN built THEN a warning says so', () => {
    const stack = testStack();
    new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: VENDOR_URL, contract: VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 4 }), callbackTimeout: Duration.days(20),
    });
    const warnings = Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('jobWaitingRetention'));
    expect(warnings).toHaveLength(1);
    expect(JSON.stringify(warnings[0].entry.data)).toContain('callbackTimeout (20 days) is longer than the 14 days SQS keeps a message');
  });

  test('GIVEN two orchestrators sharing one contract state WHEN built THEN neither has a waiting queue (each would wake only its own waiters): their requests recheck as delayed copies', () => {
    const stack = testStack();
    const contract = VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 4 });
    const state = new VendorContractState(stack, 'State', { contract });
    const built = ['Orders', 'Invoices'].map((id) => new AsyncExternalApiOrchestrator(stack, id, {
      vendorUrl: VENDOR_URL, contract, contractState: state, callbackTimeout: Duration.hours(2),
    }));
    const template = Template.fromStack(stack);
    for (const o of built) {
      expect(o.consumer.jobWaitingQueue).toBeUndefined();
      expect(environmentOf(template, stack, o.consumer.function)).toMatchObject({ MAX_JOBS_IN_FLIGHT: '4', JOB_PLACE_RECHECK_MS: '2000' });
      expect(environmentOf(template, stack, o.consumer.function)).not.toHaveProperty('JOB_WAITING_QUEUE_URL');
      expect(environmentOf(template, stack, o.webhook.processor)).not.toHaveProperty('JOB_WAITING_QUEUE_URL');
      expect(() => o.consumer.allowWakingWaiters(o.webhook.processor)).toThrow(/a consumer sharing a contract state has no waiting queue/);
    }
    expect(Object.keys(template.findResources('AWS::Scheduler::Schedule'))).toHaveLength(0);
  });

  test('GIVEN no maxJobsInFlight WHEN built THEN there is no waiting queue and no sweep', () => {
    const stack = testStack();
    const o = orchestrator(VendorContract.of({ requestsPerSecond: 10 }), stack);
    expect(o.consumer.jobWaitingQueue).toBeUndefined();
    expect(o.consumer.metricJobsWaiting()).toBeUndefined();
    expect(Object.keys(Template.fromStack(stack).findResources('AWS::Scheduler::Schedule'))).toHaveLength(0);
  });
});

describe('jobs in flight: gauge, alarm, dashboard', () => {
  test('GIVEN maxJobsInFlight WHEN the orchestrator is built THEN an alarm fires after 15 minutes at the limit and is one of its alarms', () => {
    const stack = testStack();
    const o = orchestrator(VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 7 }), stack);
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'JobsInFlight',
      Namespace: 'CdkAsyncExternalApi',
      Dimensions: [{ Name: 'Scope', Value: o.metricsScope }],
      Statistic: 'Maximum',
      Period: 60,
      Threshold: 7,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: 15,
      DatapointsToAlarm: 15,
      TreatMissingData: 'notBreaching',
    });
    expect(o.jobsInFlightAlarm).toBeDefined();
    expect(o.alarms).toContain(o.jobsInFlightAlarm);
    expect(o.metricJobsInFlight().metricName).toBe('JobsInFlight');
    // The dashboard charts the gauge against the contract.
    const body = JSON.stringify(template.findResources('AWS::CloudWatch::Dashboard'));
    expect(body).toContain('Vendor jobs in flight (places held) vs the contract');
    expect(body).toContain('contract: 7 jobs in flight');
  });

  test('GIVEN monitoring.jobsAtLimitAlarmAfter WHEN built THEN the alarm waits that many minutes', () => {
    const stack = testStack();
    new AsyncExternalApiOrchestrator(stack, 'Vendor', {
      vendorUrl: VENDOR_URL,
      contract: VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 7 }),
      callbackTimeout: Duration.hours(2),
      monitoring: { jobsAtLimitAlarmAfter: Duration.minutes(5) },
    });
    Template.fromStack(stack).hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'JobsInFlight', EvaluationPeriods: 5 });
  });

  test('GIVEN monitoring.jobsAtLimitAlarmAfter without maxJobsInFlight WHEN built THEN it is refused', () => {
    expect(() => new AsyncExternalApiOrchestrator(testStack(), 'Vendor', {
      vendorUrl: VENDOR_URL, requestsPerSecond: 10, callbackTimeout: Duration.hours(2), monitoring: { jobsAtLimitAlarmAfter: Duration.minutes(5) },
    })).toThrow(/monitoring.jobsAtLimitAlarmAfter is given \(5 minutes\) but the contract has no maxJobsInFlight/);
  });

  test('GIVEN no maxJobsInFlight WHEN built THEN there is no jobs-in-flight alarm or widget', () => {
    const stack = testStack();
    const o = orchestrator(VendorContract.of({ requestsPerSecond: 10 }), stack);
    const template = Template.fromStack(stack);
    expect(o.jobsInFlightAlarm).toBeUndefined();
    expect(Object.keys(template.findResources('AWS::CloudWatch::Alarm', { Properties: { MetricName: 'JobsInFlight' } }))).toHaveLength(0);
    expect(JSON.stringify(template.findResources('AWS::CloudWatch::Dashboard'))).not.toContain('Vendor jobs in flight');
  });
});

describe('RateControlledQueueConsumer.limitJobsInFlight', () => {
  function consumer(stack: Stack): { c: RateControlledQueueConsumer; table: dynamodb.Table } {
    const table = new dynamodb.Table(stack, 'Correlation', { partitionKey: { name: 'requestId', type: dynamodb.AttributeType.STRING } });
    return { c: new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 5 }), table };
  }

  test('GIVEN a second call WHEN limiting THEN it is refused', () => {
    const { c, table } = consumer(testStack());
    c.limitJobsInFlight({ maxJobsInFlight: 2, maxJobDuration: Duration.hours(1), correlationTable: table });
    expect(() => c.limitJobsInFlight({ maxJobsInFlight: 2, maxJobDuration: Duration.hours(1), correlationTable: table }))
      .toThrow(/limitJobsInFlight\(\) was already called/);
  });

  test('GIVEN no limit yet WHEN letting a function wake waiters THEN it is refused with what to call first', () => {
    const stack = testStack();
    const { c } = consumer(stack);
    expect(() => c.allowWakingWaiters(c.function)).toThrow('allowWakingWaiters() needs the waiting queue: call limitJobsInFlight() first');
  });

  test('GIVEN a customer-managed key WHEN limiting THEN the waiting queue is encrypted with it', () => {
    const stack = testStack();
    const key = new kms.Key(stack, 'Key');
    const table = new dynamodb.Table(stack, 'Correlation', { partitionKey: { name: 'requestId', type: dynamodb.AttributeType.STRING } });
    const c = new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 5, encryptionKey: key });
    c.limitJobsInFlight({ maxJobsInFlight: 2, maxJobDuration: Duration.hours(1), correlationTable: table });
    c.dispatchTo(new sfn.StateMachine(stack, 'Dispatch', { definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'Nothing')) }));
    Template.fromStack(stack).hasResourceProperties('AWS::SQS::Queue', {
      KmsMasterKeyId: { 'Fn::GetAtt': [logicalIdOf(stack, key), 'Arn'] },
      MessageRetentionPeriod: 14 * 86_400,
      VisibilityTimeout: Match.absent(),
    });
  });

  test('GIVEN a recheck interval that is not whole seconds WHEN limiting THEN it is refused', () => {
    const { c, table } = consumer(testStack());
    const limit = { maxJobsInFlight: 2, maxJobDuration: Duration.hours(1), correlationTable: table, recheckInterval: Duration.millis(1500) };
    expect(() => c.limitJobsInFlight(limit))
      .toThrow(/recheckInterval must be whole seconds \(given 1 second 500 millis\)/);
  });
});

describe('callVendorTask endsJobOf: a call that ends a job frees its place', () => {
  const JOBS = VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 5 });

  function messageBodyOf(task: sfn.TaskStateBase): Record<string, unknown> {
    return (task.toStateJson() as any).Parameters.MessageBody;
  }

  test('GIVEN endsJobOf WHEN the task is built THEN the message names the submission whose job the call ends', () => {
    const stack = testStack();
    const o = orchestrator(JOBS, stack);
    const cancel = o.callVendorTask(stack, 'CancelJob', {
      method: 'POST', path: sfn.JsonPath.format('/{}/cancel', sfn.JsonPath.stringAt('$.vendor.jobId')), endsJobOf: sfn.JsonPath.stringAt('$.orderId'),
    });
    expect(messageBodyOf(cancel)).toMatchObject({ 'kind': 'call', 'endsJobOf.$': '$.orderId' });
    const fetch = o.callVendorTask(stack, 'Fetch', { path: '/x' });
    expect(messageBodyOf(fetch)).not.toHaveProperty('endsJobOf');
    expect(messageBodyOf(fetch)).not.toHaveProperty('endsJobOf.$');
  });

  test('GIVEN endsJobOf in JSONata WHEN the task is built THEN the message carries the expression', () => {
    const stack = testStack();
    const o = orchestrator(JOBS, stack);
    const cancel = o.callVendorTaskJsonata(stack, 'CancelJob', { method: 'DELETE', path: '/jobs/1', endsJobOf: '{% $states.input.orderId %}' });
    expect(JSON.stringify((cancel.toStateJson() as any).Arguments)).toContain('"endsJobOf":"{% $states.input.orderId %}"');
  });

  test('GIVEN endsJobOf without maxJobsInFlight WHEN the task is built THEN it is refused with how to fix it', () => {
    const stack = testStack();
    const o = orchestrator(VendorContract.of({ requestsPerSecond: 10 }), stack);
    expect(() => o.callVendorTask(stack, 'CancelJob', { method: 'POST', path: '/jobs/1/cancel', endsJobOf: 'order-1' }))
      .toThrow("callVendorTask 'CancelJob': endsJobOf frees the job's place in flight, but the contract has no maxJobsInFlight: remove endsJobOf, or set VendorContract.of({ maxJobsInFlight, ... })");
  });

  test('GIVEN endsJobOf with PacingPoint.DISPATCH WHEN the task is built THEN it is refused (no Lambda sees the answer)', () => {
    const stack = testStack();
    const o = new AsyncExternalApiOrchestrator(stack, 'Vendor', { vendorUrl: VENDOR_URL, contract: JOBS, callbackTimeout: Duration.hours(2), pacingPoint: PacingPoint.DISPATCH });
    expect(() => o.callVendorTask(stack, 'CancelJob', { method: 'POST', path: '/jobs/1/cancel', endsJobOf: 'order-1' }))
      .toThrow(/endsJobOf needs pacingPoint PacingPoint.VENDOR_CALL \(the vendor caller sees the vendor's answer and frees the place\)/);
  });

  test('GIVEN an empty endsJobOf or a JSONPath one in JSONata WHEN the task is built THEN it is refused', () => {
    const stack = testStack();
    const o = orchestrator(JOBS, stack);
    expect(() => o.callVendorTask(stack, 'A', { method: 'POST', path: '/jobs/1/cancel', endsJobOf: ' ' }))
      .toThrow(/endsJobOf must be the request id of the submitJobTask whose job the call ends/);
    expect(() => o.callVendorTaskJsonata(stack, 'B', { method: 'POST', path: '/jobs/1/cancel', endsJobOf: '$.orderId' }))
      .toThrow("callVendorTaskJsonata 'B': endsJobOf uses JSONPath, which JSONata states do not read: write a JSONata expression such as '{% $states.input.x %}'");
  });
});
