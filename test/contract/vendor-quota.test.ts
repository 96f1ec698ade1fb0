import { DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { Duration } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { mockClient } from 'aws-sdk-client-mock';
import {
  AsyncExternalApiOrchestrator, AsyncExternalApiOrchestratorProps, PacingPoint, QuotaExhaustedAction, VendorContract, VendorQuota,
} from '../../src';
import { parseQuotaSpecs, periodsOfCall, quotaCounterKey, spendQuotaUnits } from '../../src/contract/quota-ledger';
import { definitionOf, logicalIdOf, testStack } from '../util';

const PROPS = { vendorUrl: 'https://vendor.example.com/v1/jobs', callbackTimeout: Duration.minutes(30) };

describe('VendorQuota and the contract\'s quotas (issue 14, item 2)', () => {
  test('GIVEN the factories THEN names, limits and periods are what was asked', () => {
    expect(VendorQuota.perDay(100_000)).toMatchObject({ name: 'daily', limit: 100_000, period: 'day (UTC)' });
    expect(VendorQuota.perMonth(2_000_000, { timeZone: 'Europe/Berlin' })).toMatchObject({ name: 'monthly', period: 'month (Europe/Berlin)' });
    expect(VendorQuota.perHour(500, { name: 'fetches' })).toMatchObject({ name: 'fetches', period: 'hour (UTC)' });
    expect(VendorQuota.every(Duration.hours(6), 5000)).toMatchObject({ name: 'every-21600s', period: 'fixed 21600 s' });
    expect(VendorQuota.every(Duration.seconds(3), 5)._spec()).toEqual({ name: 'every-3s', limit: 5, unit: 'fixed', periodMs: 3000 });
  });

  test('GIVEN quotas that cannot hold THEN synthesis fails saying what was given and how to fix it', () => {
    expect(() => VendorQuota.perDay(0)).toThrow(/the limit must be a whole number from 1 to 1e12, got 0/);
    expect(() => VendorQuota.perDay(1.5)).toThrow(/got 1.5/);
    expect(() => VendorQuota.perDay(10, { timeZone: 'Berlin' })).toThrow(/unknown time zone 'Berlin': give an IANA name/);
    expect(() => VendorQuota.perDay(10, { name: 'a b' })).toThrow(/name must be 1 to 64 letters.*got 'a b'/);
    expect(() => VendorQuota.every(Duration.millis(1500), 10)).toThrow(/whole seconds from 1 second to 366 days, got 1 second 500 millis/);
    expect(() => VendorQuota.every(Duration.days(400), 10)).toThrow(/whole seconds from 1 second to 366 days/);
    expect(() => VendorContract.of({ requestsPerSecond: 10, quotas: [VendorQuota.perDay(10), VendorQuota.perDay(20)] }))
      .toThrow(/two quotas are named 'daily'/);
  });

  test('GIVEN a quota smaller than one second of the rate THEN it is a warning, not an error', () => {
    const contract = VendorContract.of({ requestsPerSecond: 10, quotas: [VendorQuota.every(Duration.seconds(3), 5)] });
    expect(contract.warnings).toEqual([expect.stringMatching(/quota 'every-3s' \(5 per fixed 3 s\) is smaller than one second of the rate \(10/)]);
    expect(contract.whenQuotaExhausted).toBe(QuotaExhaustedAction.WAIT);
    const stack = testStack();
    new AsyncExternalApiOrchestrator(stack, 'O', { ...PROPS, contract });
    Annotations.fromStack(stack).hasWarning('/TestStack/O', Match.stringLikeRegexp('smaller than one second of the rate'));
  });

  test('GIVEN quotas with PacingPoint.DISPATCH THEN synthesis fails (the vendor caller spends the units)', () => {
    const contract = VendorContract.of({ requestsPerSecond: 10, quotas: [VendorQuota.perDay(1000)] });
    expect(() => new AsyncExternalApiOrchestrator(testStack(), 'O', { ...PROPS, contract, pacingPoint: PacingPoint.DISPATCH }))
      .toThrow(/the contract has quotas \(daily\), which the vendor caller spends: they need pacingPoint PacingPoint.VENDOR_CALL/);
  });

  test('GIVEN quotas THEN the vendor caller gets them, the action and the deadline, and both workflows give VendorQuotaExhausted up at once', () => {
    const stack = testStack();
    const contract = VendorContract.of({
      requestsPerSecond: 10, quotas: [VendorQuota.perDay(1000, { timeZone: 'Europe/Berlin' })], whenQuotaExhausted: QuotaExhaustedAction.FAIL,
    });
    const props: AsyncExternalApiOrchestratorProps = { ...PROPS, contract };
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'O', props);
    const fetch = orchestrator.callVendorTask(stack, 'Fetch', { path: sfn.JsonPath.stringAt('$.path') });
    orchestrator.registerWorkflow(new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(fetch) }));
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          QUOTAS: JSON.stringify([{ name: 'daily', limit: 1000, unit: 'day', timeZone: 'Europe/Berlin' }]),
          QUOTA_EXHAUSTED: 'FAIL',
          QUOTA_MAX_WAIT_MS: String(30 * 60 * 1000),
        }),
      },
    });
    // The dispatcher reads the counters too, to postpone a batch while a quota is spent.
    const consumerFn = template.toJSON().Resources[stack.getLogicalId(orchestrator.consumer.function.node.defaultChild as any)];
    expect(consumerFn.Properties.Environment.Variables.QUOTAS).toBe(JSON.stringify([{ name: 'daily', limit: 1000, unit: 'day', timeZone: 'Europe/Berlin' }]));
    for (const machine of [orchestrator.dispatch.stateMachine, orchestrator.vendorCall!.stateMachine]) {
      const classify = definitionOf(template, logicalIdOf(stack, machine)).States.ClassifyVendorError as any;
      expect(classify.Choices.map((c: any) => c.StringEquals).filter(Boolean)).toEqual(['VendorResponseTooLarge', 'VendorQuotaExhausted']);
    }
  });

  test('GIVEN quotas THEN each has an alarm at its fraction of the limit (default 80 %), metrics by name, and a dashboard graph', () => {
    const stack = testStack();
    const contract = VendorContract.of({
      requestsPerSecond: 10, quotas: [VendorQuota.perDay(100_000), VendorQuota.perMonth(2_000_000, { alarmAt: 0.5 })],
    });
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'O', { ...PROPS, contract });
    expect(orchestrator.quotaAlarms).toHaveLength(2);
    expect(orchestrator.alarms).toEqual(expect.arrayContaining(orchestrator.quotaAlarms));
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'QuotaUsedPercent.daily',
      Statistic: 'Maximum',
      Threshold: 80,
      Period: 900,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      AlarmDescription: Match.stringLikeRegexp("80 % or more of the vendor quota 'daily' \\(100000 calls per day \\(UTC\\)\\)"),
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'QuotaUsedPercent.monthly', Threshold: 50 });
    expect(orchestrator.metricQuotaUsed('daily').metricName).toBe('QuotaUsed.daily');
    expect(orchestrator.metricQuotaUsedPercent('monthly').statistic).toBe('Maximum');
    expect(() => orchestrator.metricQuotaUsed('weekly')).toThrow(/the contract has no quota named 'weekly' \(its quotas: 'daily', 'monthly'\)/);
    const body = JSON.stringify(template.findResources('AWS::CloudWatch::Dashboard'));
    expect(body).toMatch(/Vendor quotas: share of each period's limit spent/);
    expect(body).toMatch(/QuotaUsedPercent.monthly/);
    expect(() => VendorQuota.perDay(10, { alarmAt: 1.5 })).toThrow(/alarmAt must be a fraction above 0 and at most 1, got 1.5/);
  });

  test('GIVEN no quota THEN the caller gets no quota variable and ClassifyVendorError has no quota rule', () => {
    const stack = testStack();
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'O', { ...PROPS, requestsPerSecond: 10 });
    const template = Template.fromStack(stack);
    const classify = definitionOf(template, logicalIdOf(stack, orchestrator.dispatch.stateMachine)).States.ClassifyVendorError as any;
    expect(JSON.stringify(classify)).not.toMatch(/VendorQuotaExhausted/);
    for (const fn of Object.values(template.findResources('AWS::Lambda::Function'))) {
      expect(Object.keys((fn as any).Properties.Environment?.Variables ?? {})).not.toContain('QUOTAS');
    }
    expect(orchestrator.quotaAlarms).toEqual([]);
    expect(JSON.stringify(template.toJSON())).not.toMatch(/QuotaUsed/);
  });
});

describe('spendQuotaUnits (quota-ledger.ts)', () => {
  const ddb = mockClient(DynamoDBClient);
  const client = new DynamoDBClient({ region: 'us-east-1' });
  const NOW = 1_800_000_001_234;
  const SHORT = { name: 'short', limit: 5, unit: 'fixed' as const, periodMs: 3000 };
  const DAILY = { name: 'daily', limit: 100, unit: 'day' as const };
  const conditionFailed = Object.assign(new Error('failed'), { name: 'ConditionalCheckFailedException' });
  beforeEach(() => ddb.reset());

  test('GIVEN units left THEN one conditional ADD per quota on the period\'s counter, expiring a day after the period', async () => {
    ddb.on(UpdateItemCommand).resolves({ Attributes: { used: { N: '3' } } });
    const outcome = await spendQuotaUnits(client, 'pacer', [SHORT, DAILY], NOW);
    expect(outcome).toEqual({
      spent: true,
      units: [
        { name: 'short', limit: 5, used: 3, period: { startMs: 1_800_000_000_000, endMs: 1_800_000_003_000 } },
        expect.objectContaining({ name: 'daily', used: 3 }),
      ],
    });
    const first = ddb.commandCalls(UpdateItemCommand)[0].args[0].input;
    expect(first).toMatchObject({
      TableName: 'pacer',
      Key: { pk: { S: 'quota#short#1800000000000' } },
      UpdateExpression: 'ADD #used :one SET #ttl = :ttl',
      ConditionExpression: 'attribute_not_exists(#used) OR #used < :limit',
      ExpressionAttributeValues: { ':one': { N: '1' }, ':limit': { N: '5' }, ':ttl': { N: String(1_800_000_003 + 86_400) } },
    });
    expect(quotaCounterKey('short', { startMs: 1_800_000_000_000, endMs: 0 })).toBe('quota#short#1800000000000');
  });

  test('GIVEN the second quota spent THEN it stops there, says until when, and the first unit stays spent (conservative)', async () => {
    ddb.on(UpdateItemCommand).resolvesOnce({ Attributes: { used: { N: '1' } } }).rejectsOnce(conditionFailed);
    const outcome = await spendQuotaUnits(client, 'pacer', [SHORT, DAILY], NOW);
    // Available again after the period, plus the boundary margin (a slot right at the start still spends in both).
    expect(outcome).toMatchObject({ spent: false, exhausted: 'daily', availableAtMs: Date.parse('2027-01-16T00:00:00.000Z') + 250, units: [{ name: 'short' }] });
    expect(ddb.commandCalls(UpdateItemCommand)).toHaveLength(2);
  });

  test('GIVEN a slot within 250 ms of a boundary THEN a unit is spent in both periods (the vendor may count the call in either); counters already spent are skipped', async () => {
    ddb.on(UpdateItemCommand).resolves({ Attributes: { used: { N: '1' } } });
    expect(periodsOfCall(SHORT, 1_800_000_002_900)).toEqual([
      { startMs: 1_800_000_000_000, endMs: 1_800_000_003_000 }, { startMs: 1_800_000_003_000, endMs: 1_800_000_006_000 },
    ]);
    expect(periodsOfCall(SHORT, 1_800_000_003_100)).toHaveLength(2);
    expect(periodsOfCall(SHORT, 1_800_000_001_500)).toHaveLength(1);
    const spent = new Set<string>(['quota#short#1800000000000']);
    const outcome = await spendQuotaUnits(client, 'pacer', [SHORT], 1_800_000_002_900, spent);
    expect(outcome.spent).toBe(true);
    expect(ddb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input.Key!.pk.S)).toEqual(['quota#short#1800000003000']);
    expect([...spent]).toEqual(['quota#short#1800000000000', 'quota#short#1800000003000']);
  });

  test('GIVEN another DynamoDB error THEN it is thrown', async () => {
    ddb.on(UpdateItemCommand).rejects(new Error('boom'));
    await expect(spendQuotaUnits(client, 'pacer', [SHORT], NOW)).rejects.toThrow('boom');
  });

  test('GIVEN the quotas variable THEN absent is none and a malformed one is refused', () => {
    expect(parseQuotaSpecs(undefined, 'QUOTAS')).toEqual([]);
    expect(parseQuotaSpecs(JSON.stringify([SHORT]), 'QUOTAS')).toEqual([SHORT]);
    expect(() => parseQuotaSpecs('[{"name":"f","limit":3,"unit":"fixed"}]', 'QUOTAS')).toThrow(/QUOTAS must be a JSON array of/);
  });
});
