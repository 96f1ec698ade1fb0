/**
 * Per-key figures without a metric per key (issue 15, item 5): Contributor Insights rules over the
 * handlers' EMF documents (`requestKey`, `keyTotals`), created only when requests carry keys; their
 * metrics and dashboard section; and the synthesized rule bodies evaluated (local/aws/
 * contributor-insights.ts) over the EMF lines the handlers' metrics code really writes.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { evaluateInsightRule, LogEvent } from '../../local/aws/contributor-insights';
import { AsyncExternalApiOrchestrator, KeyLimits, PacingPoint, VendorContract, VendorCredentials } from '../../src';
import { createHandlerMetrics } from '../../src/shared/handler-metrics';
import { captureEmf } from '../emf';
import { TEST_ENV, testApp } from '../util';

type Props = Partial<ConstructorParameters<typeof AsyncExternalApiOrchestrator>[2]>;
const PER_KEY_CONTRACT = () => VendorContract.of({ requestsPerSecond: 10, perKey: KeyLimits.of({ requestsPerSecond: 2 }) });

function orchestratorStack(props: Props = {}, keyed = true) {
  const stack = new Stack(testApp(), 'Keys', { env: TEST_ENV });
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
    ...props,
  });
  const submit = orchestrator.submitJobTask(stack, 'Submit', {
    payload: sfn.TaskInput.fromJsonPathAt('$.order'),
    ...(keyed ? { key: sfn.JsonPath.stringAt('$.customerId') } : {}),
  });
  orchestrator.registerWorkflow(new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(submit) }));
  return { stack, orchestrator, template: Template.fromStack(stack) };
}

/** The key rules of a template: name (its construct id) -> rule body, `Ref`s written as the logical id. */
function keyRules(template: Template): Record<string, any> {
  const rules: Record<string, any> = {};
  for (const [logicalId, resource] of Object.entries(template.findResources('AWS::CloudWatch::InsightRule'))) {
    const body = resource.Properties.RuleBody;
    const text = typeof body === 'string' ? body : (body['Fn::Join'][1] as unknown[]).map((p: any) => (typeof p === 'string' ? p : p.Ref)).join('');
    const rule = JSON.parse(text);
    if (rule.Contribution.Keys.includes('$.requestKey')) {
      rules[logicalId.replace(/^VendorKeyInsights/, '').replace(/[0-9A-F]{8}$/, '')] = rule;
    }
  }
  return rules;
}

function logicalIdOfLogGroup(stack: Stack, logGroup: { node: { defaultChild?: unknown } } | any): string {
  return stack.resolve((logGroup.node.defaultChild ?? logGroup).logicalId);
}

describe('Contributor Insights rules of the keys', () => {
  test('GIVEN no task declares a key THEN no key rule exists (Contributor Insights costs per rule), and the key metrics say why', () => {
    const { orchestrator, template } = orchestratorStack({}, false);
    expect(keyRules(template)).toEqual({});
    expect(() => orchestrator.metricTopKeysByDispatched()).toThrow(/metricTopKeysByDispatched: no task of this orchestrator declares a key.*give submitJobTask\/callVendorTask a key/);
  });

  test('GIVEN a task with a key (credential not per key) THEN three rules on the dispatcher\'s and callback processor\'s log groups; no 429 rule (the vendor caller does not know the key)', () => {
    const { stack, orchestrator, template } = orchestratorStack();
    const rules = keyRules(template);
    expect(Object.keys(rules).sort()).toEqual(['CallbacksByKey', 'DispatchedByKey', 'PacingWaitByKey']);
    const dispatcherLogs = logicalIdOfLogGroup(stack, orchestrator.consumer.function.logGroup);
    const processorLogs = logicalIdOfLogGroup(stack, orchestrator.webhook.processor.logGroup);
    expect(rules.DispatchedByKey).toEqual({
      Schema: { Name: 'CloudWatchLogRule', Version: 1 },
      AggregateOn: 'Sum',
      Contribution: { Keys: ['$.requestKey'], ValueOf: '$.keyTotals.DispatchedRequests', Filters: [{ Match: '$.keyTotals.DispatchedRequests', IsPresent: true }] },
      LogFormat: 'JSON',
      LogGroupNames: [dispatcherLogs],
    });
    expect(rules.PacingWaitByKey.Contribution.ValueOf).toBe('$.keyTotals.PacingWait');
    expect(rules.PacingWaitByKey.LogGroupNames).toEqual([dispatcherLogs]);
    expect(rules.CallbacksByKey.Contribution.ValueOf).toBe('$.keyTotals.CallbacksResolved');
    expect(rules.CallbacksByKey.LogGroupNames).toEqual([processorLogs]);
    expect(() => orchestrator.metricTopKeysByVendor429s()).toThrow(/PacingPoint.VENDOR_CALL and a credential per key/);
    const expression = stack.resolve((orchestrator.metricTopKeysByDispatched() as any).expression);
    expect(expression['Fn::Join'][1]).toEqual(["INSIGHT_RULE_METRIC('", { 'Fn::GetAtt': [expect.stringMatching(/^VendorKeyInsightsDispatchedByKey/), 'RuleName'] }, "', 'MaxContributorValue')"]);
    for (const rule of Object.values(template.findResources('AWS::CloudWatch::InsightRule'))) {
      expect(rule.Properties.RuleName.length).toBeLessThanOrEqual(128);
      expect(rule.Properties.RuleState).toBe('ENABLED');
    }
  });

  test('GIVEN a credential per key (vendor caller) THEN a fourth rule ranks the keys by the vendor\'s 429s (VendorPauses) on the vendor caller\'s log group', () => {
    const { stack, orchestrator, template } = orchestratorStack({ proxy: { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}' }) } });
    const rules = keyRules(template);
    expect(Object.keys(rules).sort()).toEqual(['CallbacksByKey', 'DispatchedByKey', 'PacingWaitByKey', 'Vendor429sByKey']);
    expect(rules.Vendor429sByKey.Contribution.ValueOf).toBe('$.keyTotals.VendorPauses');
    expect(rules.Vendor429sByKey.LogGroupNames).toEqual([logicalIdOfLogGroup(stack, (orchestrator.dispatch.vendorCaller as any).logGroup)]);
    expect(orchestrator.metricTopKeysByVendor429s()).toBeDefined();
    // Saved Logs Insights queries, one per question.
    const queries = Object.values(template.findResources('AWS::Logs::QueryDefinition')).map((q) => q.Properties)
      .filter((q) => /keys-by-/.test(q.Name));
    expect(queries.map((q) => q.Name.split('/').pop()).sort()).toEqual(['keys-by-429s', 'keys-by-callbacks', 'keys-by-requests-and-wait']);
    const requests = queries.find((q) => q.Name.endsWith('keys-by-requests-and-wait'))!;
    expect(requests.QueryString).toContain('stats sum(keyTotals.DispatchedRequests) as requests, sum(keyTotals.PacingWait) as waitedMs by requestKey');
    expect(requests.LogGroupNames).toEqual([logicalIdOfLogGroup(stack, orchestrator.consumer.function.logGroup)].map((id) => ({ Ref: id })));
  });

  test('GIVEN a credential per key and PacingPoint.DISPATCH THEN no 429 rule (no vendor caller)', () => {
    const { template } = orchestratorStack({ pacingPoint: PacingPoint.DISPATCH, proxy: { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}' }) } });
    expect(Object.keys(keyRules(template)).sort()).toEqual(['CallbacksByKey', 'DispatchedByKey', 'PacingWaitByKey']);
  });

  test('GIVEN per-key limits THEN a fifth rule ranks the keys by backlog (KeySetAsideDelay, dispatcher logs), with its metric (ms set aside per period / period), saved query and graph; without them metricTopKeysByBacklog says why', () => {
    const perKey = { requestsPerSecond: undefined, contract: PER_KEY_CONTRACT() };
    const { stack, orchestrator, template } = orchestratorStack(perKey);
    const rules = keyRules(template);
    expect(Object.keys(rules).sort()).toEqual(['BacklogByKey', 'CallbacksByKey', 'DispatchedByKey', 'PacingWaitByKey', 'Vendor429sByKey']);
    const dispatcherLogs = logicalIdOfLogGroup(stack, orchestrator.consumer.function.logGroup);
    expect(rules.BacklogByKey.Contribution).toEqual({
      Keys: ['$.requestKey'], ValueOf: '$.keyTotals.KeySetAsideDelay', Filters: [{ Match: '$.keyTotals.KeySetAsideDelay', IsPresent: true }],
    });
    expect(rules.BacklogByKey.LogGroupNames).toEqual([dispatcherLogs]);
    const expression = (period?: Duration) => stack.resolve((orchestrator.metricTopKeysByBacklog(period) as any).expression)['Fn::Join'][1];
    expect(expression()).toEqual(["INSIGHT_RULE_METRIC('", { 'Fn::GetAtt': [expect.stringMatching(/^VendorKeyInsightsBacklogByKey/), 'RuleName'] }, "', 'MaxContributorValue') / 60000"]);
    expect(expression(Duration.minutes(15))[2]).toBe("', 'MaxContributorValue') / 900000");
    const backlog = Object.values(template.findResources('AWS::Logs::QueryDefinition')).map((q) => q.Properties).find((q) => q.Name.endsWith('/keys-by-backlog'))!;
    expect(backlog.QueryString).toContain('stats sum(keyTotals.KeySetAsideDelay) as setAsideMs, sum(keyTotals.KeySetAside) as setAside by requestKey');
    expect(backlog.LogGroupNames).toEqual([{ Ref: dispatcherLogs }]);
    const dashboard = JSON.stringify(Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody);
    expect(dashboard).toContain('Top key: backlog (requests set aside, average)');

    const keyedOnly = orchestratorStack();
    expect(Object.keys(keyRules(keyedOnly.template))).not.toContain('BacklogByKey');
    expect(() => keyedOnly.orchestrator.metricTopKeysByBacklog()).toThrow(/metricTopKeysByBacklog: a key's backlog is the time its requests are set aside, which only per-key limits do/);
    expect(JSON.stringify(keyedOnly.template.toJSON())).not.toContain('keys-by-backlog');
  });

  test('the dashboard gets a keys section (top key and active keys per rule); without keys it has none', () => {
    const body = (template: Template) => JSON.stringify(Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody);
    const keyed = body(orchestratorStack().template);
    expect(keyed).toContain('Top key: requests dispatched');
    expect(keyed).toContain('Top key: pacing wait (ms, sum)');
    expect(keyed).toContain('Top key: callbacks resolved');
    expect(keyed).toContain('UniqueContributors');
    expect(body(orchestratorStack({}, false).template)).not.toContain('Top key');
  });
});

describe('the synthesized rules evaluated over the handlers\' EMF lines', () => {
  afterEach(() => {
    delete process.env.POWERTOOLS_METRICS_NAMESPACE;
  });

  /** EMF lines as the handlers write them: one invocation per entry, [key | undefined, metric, value]. */
  async function emfLines(invocations: Array<Array<[string | undefined, string, 'Count' | 'Milliseconds', number]>>): Promise<LogEvent[]> {
    const metrics = createHandlerMetrics(new Logger({ logLevel: 'SILENT' }));
    const events: LogEvent[] = [];
    let t = 1_800_000_000_000;
    for (const invocation of invocations) {
      const docs = await captureEmf(async () => {
        for (const [key, name, unit, value] of invocation) {
          metrics.addMetric(name, unit, value, key);
        }
        metrics.publish();
      });
      events.push(...docs.map((d) => ({ timestamp: t, message: JSON.stringify(d) })));
      t += 1000;
    }
    return events;
  }

  test('the top key is the one with the most requests, the longest total wait, the most 429s; lines without a key count for no key', async () => {
    const { template } = orchestratorStack({ proxy: { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}' }) } });
    const rules = keyRules(template);
    // Dispatcher batches: acme 5 requests (short waits), globex 3 (long waits), 4 without a key.
    const dispatcher = await emfLines([
      [['acme', 'DispatchedRequests', 'Count', 1], ['acme', 'PacingWait', 'Milliseconds', 100], ['globex', 'DispatchedRequests', 'Count', 1], ['globex', 'PacingWait', 'Milliseconds', 2000],
        [undefined, 'DispatchedRequests', 'Count', 1], [undefined, 'DispatchedRequests', 'Count', 1], ['acme', 'DispatchedRequests', 'Count', 1], ['acme', 'PacingWait', 'Milliseconds', 100]],
      [['acme', 'DispatchedRequests', 'Count', 1], ['acme', 'PacingWait', 'Milliseconds', 100], ['globex', 'DispatchedRequests', 'Count', 1], ['globex', 'PacingWait', 'Milliseconds', 1500],
        [undefined, 'DispatchedRequests', 'Count', 1], [undefined, 'DispatchedRequests', 'Count', 1]],
      [['acme', 'DispatchedRequests', 'Count', 1], ['acme', 'PacingWait', 'Milliseconds', 100], ['acme', 'DispatchedRequests', 'Count', 1], ['acme', 'PacingWait', 'Milliseconds', 100],
        ['globex', 'DispatchedRequests', 'Count', 1], ['globex', 'PacingWait', 'Milliseconds', 1800]],
    ]);
    const dispatched = evaluateInsightRule(rules.DispatchedByKey, dispatcher);
    expect(dispatched).toHaveLength(1);
    expect(dispatched[0]).toMatchObject({ maxContributor: ['acme'], maxContributorValue: 5, uniqueContributors: 2, sum: 8 });
    const waited = evaluateInsightRule(rules.PacingWaitByKey, dispatcher);
    expect(waited[0]).toMatchObject({ maxContributor: ['globex'], maxContributorValue: 5300, uniqueContributors: 2, sum: 5800 });

    // Vendor caller: one request per invocation; globex gets the 429s.
    const caller = await emfLines([
      [['acme', 'VendorCalls', 'Count', 1]],
      [['globex', 'VendorCalls', 'Count', 1], ['globex', 'VendorPauses', 'Count', 1]],
      [['globex', 'VendorCalls', 'Count', 1], ['globex', 'VendorPauses', 'Count', 1]],
      [['acme', 'VendorCalls', 'Count', 1], ['acme', 'VendorPauses', 'Count', 1]],
      [[undefined, 'VendorCalls', 'Count', 1], [undefined, 'VendorPauses', 'Count', 1]],
    ]);
    expect(evaluateInsightRule(rules.Vendor429sByKey, caller)[0]).toMatchObject({ maxContributor: ['globex'], maxContributorValue: 2, uniqueContributors: 2, sum: 3 });

    const processor = await emfLines([
      [['initech', 'CallbacksResolved', 'Count', 1], ['initech', 'CallbackLatency', 'Milliseconds', 900]],
      [['acme', 'CallbacksResolved', 'Count', 1], ['initech', 'CallbacksResolved', 'Count', 1]],
    ]);
    expect(evaluateInsightRule(rules.CallbacksByKey, processor)[0]).toMatchObject({ maxContributor: ['initech'], maxContributorValue: 2, sum: 3 });
    // A rule matches only its own metric's totals: the dispatcher's rules see nothing in the caller's lines.
    expect(evaluateInsightRule(rules.DispatchedByKey, caller)).toEqual([]);
  });

  test('the backlog rule: the top key is the one with the most time set aside; divided by the period, its average number of requests set aside (Little\'s law)', async () => {
    const perKey = { requestsPerSecond: undefined, contract: PER_KEY_CONTRACT() };
    const rules = keyRules(orchestratorStack(perKey).template);
    // One minute of a steady line: each second acme sets 2 new requests aside for 30 s (a line of
    // 60 requests), globex 1 for 10 s (a line of 10); a dispatch of acme counts no set-aside time.
    const seconds = Array.from({ length: 60 }, () => [
      ['acme', 'KeySetAside', 'Count', 1], ['acme', 'KeySetAsideDelay', 'Milliseconds', 30_000],
      ['acme', 'KeySetAside', 'Count', 1], ['acme', 'KeySetAsideDelay', 'Milliseconds', 30_000],
      ['globex', 'KeySetAside', 'Count', 1], ['globex', 'KeySetAsideDelay', 'Milliseconds', 10_000],
      ['acme', 'DispatchedRequests', 'Count', 1],
    ] as Array<[string, string, 'Count' | 'Milliseconds', number]>);
    const lines = await emfLines(seconds);
    const [minute, ...rest] = evaluateInsightRule(rules.BacklogByKey, lines);
    expect(rest).toEqual([]);
    expect(minute).toMatchObject({ maxContributor: ['acme'], uniqueContributors: 2 });
    // metricTopKeysByBacklog: MaxContributorValue / 60000 ms.
    expect(minute.maxContributorValue / 60_000).toBe(60);
    expect((minute.sum - minute.maxContributorValue) / 60_000).toBe(10);
  });
});
