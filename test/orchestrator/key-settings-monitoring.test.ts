/**
 * The key settings source's own failures (issue 15, item 5): `metricKeySettingsReadFailed()` /
 * `metricKeySettingsInvalid()`, an alarm for each in `alarms` when the contract has per-key limits,
 * the graph in the dashboard's Keys section; and the alarms' metrics matched against the EMF the
 * dispatcher's settings code (shared/key-settings.ts) really writes on a failed read and an invalid item.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { BatchGetItemCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { mockClient } from 'aws-sdk-client-mock';
import { AsyncExternalApiOrchestrator, KeyLimits, VendorContract } from '../../src';
import { createHandlerMetrics } from '../../src/shared/handler-metrics';
import { KeySettings } from '../../src/shared/key-settings';
import { METRICS_SCOPE_ENV } from '../../src/shared/metrics';
import { captureEmf } from '../emf';
import { TEST_ENV, testApp } from '../util';

function orchestratorStack(perKey: boolean) {
  const stack = new Stack(testApp(), 'KeySettingsMonitoring', { env: TEST_ENV });
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    contract: VendorContract.of({ requestsPerSecond: 10, ...(perKey ? { perKey: KeyLimits.of({ requestsPerSecond: 2 }) } : {}) }),
    callbackTimeout: Duration.minutes(30),
  });
  const submit = orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromJsonPathAt('$.order'), key: sfn.JsonPath.stringAt('$.customerId') });
  orchestrator.registerWorkflow(new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(submit) }));
  return { stack, orchestrator, template: Template.fromStack(stack) };
}

const alarmsNamed = (template: Template, name: string) => Object.entries(template.findResources('AWS::CloudWatch::Alarm'))
  .filter(([, alarm]) => alarm.Properties.MetricName === name);

describe('key settings metrics and alarms', () => {
  test('GIVEN perKey THEN an alarm per failure in alarms: failed reads for two 5-minute periods, an invalid field at once', () => {
    const { stack, orchestrator, template } = orchestratorStack(true);
    const scope = stack.resolve(orchestrator.metricsScope);
    const readFailed = alarmsNamed(template, 'KeySettingsReadFailed');
    const invalid = alarmsNamed(template, 'KeySettingsInvalid');
    const common = {
      Namespace: 'CdkAsyncExternalApi',
      Dimensions: [{ Name: 'Scope', Value: scope }],
      Statistic: 'Sum',
      Period: 300,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'notBreaching',
    };
    expect(readFailed.map(([id]) => id)).toEqual([expect.stringMatching(/^VendorKeySettingsReadFailedAlarm/)]);
    expect(invalid.map(([id]) => id)).toEqual([expect.stringMatching(/^VendorKeySettingsInvalidAlarm/)]);
    expect(readFailed[0][1].Properties).toMatchObject({ ...common, EvaluationPeriods: 2 });
    expect(invalid[0][1].Properties).toMatchObject({ ...common, EvaluationPeriods: 1 });
    expect(orchestrator.alarms).toContain(orchestrator.keySettingsReadFailedAlarm);
    expect(orchestrator.alarms).toContain(orchestrator.keySettingsInvalidAlarm);
    expect(invalid[0][1].Properties.AlarmDescription).toMatch(/cannot be a limit.*fix its item/);
    expect(readFailed[0][1].Properties.AlarmDescription).toMatch(/could not read the key settings table.*does not take effect/);
    expect(orchestrator.metricKeySettingsReadFailed()).toMatchObject({ metricName: 'KeySettingsReadFailed', statistic: 'Sum', namespace: 'CdkAsyncExternalApi' });
    expect(orchestrator.metricKeySettingsInvalid({ period: Duration.minutes(1) })).toMatchObject({ metricName: 'KeySettingsInvalid', period: Duration.minutes(1) });
  });

  test('GIVEN perKey THEN the dashboard\'s Keys section charts both; without perKey neither alarm nor graph, and the metric methods say why', () => {
    const body = (template: Template) => JSON.stringify(Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody);
    const withPerKey = body(orchestratorStack(true).template);
    expect(withPerKey).toContain('Key settings: failed reads and invalid fields');
    const { orchestrator, template } = orchestratorStack(false);
    // Keys without per-key limits: the Keys section exists, the settings graph does not.
    expect(body(template)).toContain('Top key: requests dispatched');
    expect(body(template)).not.toContain('Key settings');
    expect(alarmsNamed(template, 'KeySettingsReadFailed')).toEqual([]);
    expect(alarmsNamed(template, 'KeySettingsInvalid')).toEqual([]);
    expect(orchestrator.keySettingsReadFailedAlarm).toBeUndefined();
    expect(() => orchestrator.metricKeySettingsReadFailed()).toThrow(/metricKeySettingsReadFailed: the contract has no perKey, so there is no key settings table.*perKey: KeyLimits.of/);
    expect(() => orchestrator.metricKeySettingsInvalid()).toThrow(/metricKeySettingsInvalid: the contract has no perKey/);
  });

  describe('the alarms\' metrics are what the dispatcher writes', () => {
    const ddb = mockClient(DynamoDBClient);
    afterEach(() => {
      ddb.reset();
      delete process.env[METRICS_SCOPE_ENV];
    });

    test('a failed read and an invalid field write KeySettingsReadFailed / KeySettingsInvalid in the namespace and {Scope} of the alarms', async () => {
      const { stack, orchestrator } = orchestratorStack(true);
      const scope = 'Vendor-scope-1';
      process.env[METRICS_SCOPE_ENV] = scope;
      const metrics = createHandlerMetrics(new Logger({ logLevel: 'SILENT' }));
      const settings = new KeySettings({
        dynamodb: new DynamoDBClient({}),
        tableName: 'T',
        defaults: { requestsPerSecond: 2, quotas: {}, priorityAgingMs: 30_000, paused: false },
        contract: { requestsPerSecond: 10, quotas: {} },
        now: () => 1_000_000,
        logger: { warn: () => undefined },
        metrics,
      });
      const invalidItem = { pk: { S: 'acme' }, requestsPerSecond: { N: '-1' } };
      ddb.on(BatchGetItemCommand).rejectsOnce(new Error('AccessDeniedException')).resolves({ Responses: { T: [invalidItem] } });
      const docs = await captureEmf(async () => {
        await settings.limitsFor(['acme']);
        await settings.limitsFor(['acme']);
        metrics.publish();
      });
      const written = docs.flatMap((d) => d._aws.CloudWatchMetrics.flatMap((m) => m.Metrics.map((metric) => (
        { namespace: m.Namespace, dimensions: m.Dimensions, name: metric.Name, scope: d.Scope }))));
      for (const metric of [orchestrator.metricKeySettingsReadFailed(), orchestrator.metricKeySettingsInvalid()]) {
        const expected = { namespace: metric.namespace, dimensions: [Object.keys(metric.dimensions!)], name: metric.metricName, scope };
        expect(written).toContainEqual(expected);
      }
      // The alarm selects the orchestrator's scope, which the construct writes into the dispatcher's METRICS_SCOPE.
      const dispatcherId = stack.resolve((orchestrator.consumer.function.node.defaultChild as any).logicalId);
      const env = Template.fromStack(stack).toJSON().Resources[dispatcherId].Properties.Environment.Variables;
      expect(env[METRICS_SCOPE_ENV]).toEqual(stack.resolve(orchestrator.metricsScope));
    });
  });
});
