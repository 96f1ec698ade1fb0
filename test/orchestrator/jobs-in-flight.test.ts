/**
 * Jobs in flight through the L3 and its blocks: the contract's validation, what the dispatcher and
 * the callback processor are told, and what they may touch.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator, PacingPoint, RateControlledQueueConsumer, VendorContract } from '../../src';
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
    // A submission the vendor refuses (final 4xx) frees its place at the vendor caller.
    expect(environmentOf(template, stack, o.dispatch.vendorCaller!)).toMatchObject({ JOB_PLACES_TABLE_NAME: pacerTable });
    // The dispatcher reads the correlation table (already submitted?); the processor writes the places item.
    const dispatcher = statementsOfRole(template, stack, o.consumer.function.role!);
    expect(JSON.stringify(resourcesGranted(dispatcher, 'dynamodb:GetItem'))).toContain(logicalIdOf(stack, o.table.table));
    const processor = statementsOfRole(template, stack, o.webhook.processor.role!);
    expect(JSON.stringify(resourcesGranted(processor, 'dynamodb:UpdateItem'))).toContain(logicalIdOf(stack, o.consumer.pacerTable));
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
