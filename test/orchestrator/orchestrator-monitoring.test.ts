import { Duration, Names, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import {
  AsyncExternalApiOrchestrator,
  AsyncExternalApiOrchestratorProps,
  PacingPoint,
  VendorCredentials,
} from '../../src';
import { flattenCfnString, logicalIdOf, testApp, testStack } from '../util';

const PROPS: AsyncExternalApiOrchestratorProps = {
  vendorUrl: 'https://vendor.example.com/v1/jobs',
  requestsPerSecond: 10,
  callbackTimeout: Duration.minutes(30),
};
const NAMESPACE = 'CdkAsyncExternalApi';

interface Setup {
  readonly stack: Stack;
  readonly orchestrator: AsyncExternalApiOrchestrator;
}

function setup(props: Partial<AsyncExternalApiOrchestratorProps> = {}): Setup {
  const stack = testStack(testApp());
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', { ...PROPS, ...props });
  return { stack, orchestrator };
}

/** A Standard workflow that submits `$.order` and waits for the callback. */
function mainWorkflow(stack: Stack, orchestrator: AsyncExternalApiOrchestrator, id = 'Main'): sfn.StateMachine {
  const submit = orchestrator.submitJobTask(stack, `${id}Submit`, { payload: sfn.TaskInput.fromJsonPathAt('$.order') });
  return new sfn.StateMachine(stack, id, { definitionBody: sfn.DefinitionBody.fromChainable(submit) });
}

interface Widget {
  readonly type: string;
  readonly properties: {
    readonly title?: string;
    readonly markdown?: string;
    readonly metrics?: unknown[][];
    readonly annotations?: { horizontal?: Array<{ value: number; label?: string }> };
  };
}

/** The widgets of the only dashboard in the template, with tokens flattened to placeholders. */
function dashboardWidgets(template: Template): Widget[] {
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  expect(dashboards).toHaveLength(1);
  return JSON.parse(flattenCfnString(dashboards[0].Properties.DashboardBody)).widgets;
}

function widgetTitled(widgets: Widget[], title: RegExp): Widget {
  const found = widgets.filter((w) => title.test(w.properties.title ?? ''));
  expect(found).toHaveLength(1);
  return found[0];
}

/** `namespace/metricName` of every plain metric of a widget (math expressions left out). */
function metricNamesOf(widget: Widget): string[] {
  return (widget.properties.metrics ?? [])
    .filter((m) => typeof m[0] === 'string')
    .map((m) => `${m[0]}/${m[1]}`);
}

/** The statistics a widget uses for `metricName`. */
function statsOf(widget: Widget, metricName: string): string[] {
  return (widget.properties.metrics ?? [])
    .filter((m) => m[1] === metricName)
    .map((m) => (m[m.length - 1] as { stat: string }).stat);
}

function alarmsOf(template: Template): Array<Record<string, any>> {
  return Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties);
}

describe('AsyncExternalApiOrchestrator monitoring', () => {
  describe('dashboard', () => {
    test('is created by default', () => {
      // GIVEN / WHEN
      const { stack, orchestrator } = setup();

      // THEN
      Template.fromStack(stack).resourceCountIs('AWS::CloudWatch::Dashboard', 1);
      expect(orchestrator.dashboard).toBeDefined();
    });

    test('is not created with monitoring.dashboard false', () => {
      // GIVEN / WHEN
      const { stack, orchestrator } = setup({ monitoring: { dashboard: false } });

      // THEN
      Template.fromStack(stack).resourceCountIs('AWS::CloudWatch::Dashboard', 0);
      expect(orchestrator.dashboard).toBeUndefined();
    });

    test('takes the name it is given', () => {
      // GIVEN / WHEN
      const { stack } = setup({ monitoring: { dashboardName: 'vendor-ops' } });

      // THEN
      Template.fromStack(stack).hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'vendor-ops' });
    });

    test('fails if dashboardName is given with dashboard false', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => new AsyncExternalApiOrchestrator(stack, 'Vendor', { ...PROPS, monitoring: { dashboard: false, dashboardName: 'ops' } }))
        .toThrow(/monitoring.dashboardName is given \('ops'\) but monitoring.dashboard is false/);
    });

    test('fails if dashboardName has characters CloudWatch refuses', () => {
      // GIVEN
      const stack = testStack();

      // WHEN / THEN
      expect(() => new AsyncExternalApiOrchestrator(stack, 'Vendor', { ...PROPS, monitoring: { dashboardName: 'vendor ops' } }))
        .toThrow(/monitoring.dashboardName must be 1 to 255 letters, digits, '-' or '_' \(given 'vendor ops'\)/);
    });

    describe('widgets', () => {
      let widgets: Widget[];
      let s: Setup;
      let main: sfn.StateMachine;
      beforeAll(() => {
        // GIVEN
        s = setup();
        main = mainWorkflow(s.stack, s.orchestrator);
        // WHEN: registered after the dashboard exists
        s.orchestrator.registerWorkflow(main);
        widgets = dashboardWidgets(Template.fromStack(s.stack));
      });

      test('has a header and eleven graphs', () => {
        // THEN
        expect(widgets.map((w) => w.type)).toEqual(['text', ...Array(11).fill('metric')]);
        expect(widgets[0].properties.markdown).toContain('10 requests per second');
        expect(widgets[0].properties.markdown).toContain('docs/operations.md');
      });

      test('charts requests per second through the proxy and dispatched against the contract', () => {
        // THEN
        const rate = widgetTitled(widgets, /^Contract vs delivered requests per second$/);
        const expressions = (rate.properties.metrics ?? []).flatMap((m) => m)
          .filter((m): m is { expression: string } => typeof m === 'object' && m !== null && 'expression' in m)
          .map((m) => m.expression);
        // ... and the audit's busiest second of each minute at the proxy (README, "Audit").
        expect(expressions).toEqual(['proxyRequests / PERIOD(proxyRequests)', 'dispatched / PERIOD(dispatched)',
          expect.stringMatching(/^INSIGHT_RULE_METRIC\('.+', 'MaxContributorValue'\)$/)]);
        expect(metricNamesOf(rate)).toEqual(['AWS/ApiGateway/Count', `${NAMESPACE}/DispatchedRequests`]);
        expect(statsOf(rate, 'Count')).toEqual(['Sum']);
        expect(rate.properties.annotations?.horizontal).toEqual([expect.objectContaining({ value: 10 })]);
      });

      test('charts the backlog, with its alarm threshold, and the age of the oldest request', () => {
        // THEN
        const backlog = widgetTitled(widgets, /^Request backlog and age of the oldest request$/);
        expect(metricNamesOf(backlog)).toEqual(['AWS/SQS/ApproximateNumberOfMessagesVisible', 'AWS/SQS/ApproximateAgeOfOldestMessage']);
        expect(backlog.properties.annotations?.horizontal).toEqual([expect.objectContaining({ value: 3000 })]);
      });

      test('charts dispatches succeeded next to callbacks resolved and says it is not a gauge', () => {
        // THEN
        const inFlight = widgetTitled(widgets, /not a count of jobs in flight/);
        expect(metricNamesOf(inFlight)).toEqual(['AWS/States/ExecutionsSucceeded', `${NAMESPACE}/CallbacksResolved`]);
      });

      test('charts callback latency p50 and p99', () => {
        // THEN
        const latency = widgetTitled(widgets, /^Callback latency/);
        expect(statsOf(latency, 'CallbackLatency')).toEqual(['p50', 'p99']);
      });

      test('charts both dead-letter queues', () => {
        // THEN
        const dlq = widgetTitled(widgets, /^Dead-letter queue depths/);
        const queues = (dlq.properties.metrics ?? []).map((m) => m[3]);
        expect(queues).toEqual([
          `PLACEHOLDER-${logicalIdOf(s.stack, s.orchestrator.consumer.deadLetterQueue)}-QueueName`,
          `PLACEHOLDER-${logicalIdOf(s.stack, s.orchestrator.webhook.deadLetterQueue)}-QueueName`,
        ]);
      });

      test('charts dispatch failures', () => {
        // THEN
        const failures = widgetTitled(widgets, /^Dispatch failures/);
        expect(metricNamesOf(failures)).toContain('AWS/States/ExecutionsFailed');
        expect(failures.properties.metrics?.[0][3]).toBe(`PLACEHOLDER-${logicalIdOf(s.stack, s.orchestrator.dispatch.stateMachine)}`);
      });

      test('charts failed and timed-out executions of a workflow registered after the dashboard was created', () => {
        // THEN
        const workflows = widgetTitled(widgets, /^Registered workflows/);
        expect(metricNamesOf(workflows)).toEqual(['AWS/States/ExecutionsFailed', 'AWS/States/ExecutionsTimedOut']);
        expect(workflows.properties.metrics?.map((m) => m[3])).toEqual([
          `PLACEHOLDER-${logicalIdOf(s.stack, main)}`,
          `PLACEHOLDER-${logicalIdOf(s.stack, main)}`,
        ]);
      });

      test('charts the 429s of the proxy and of the vendor', () => {
        // THEN
        const throttles = widgetTitled(widgets, /^429s/);
        expect(metricNamesOf(throttles)).toEqual([`${NAMESPACE}/ProxyThrottles`, `${NAMESPACE}/VendorThrottles`]);
      });

      test('charts rejected, late, duplicate and early callbacks', () => {
        // THEN
        const callbacks = widgetTitled(widgets, /^Callbacks: rejected/);
        expect(metricNamesOf(callbacks)).toEqual([
          `${NAMESPACE}/CallbacksRejected`, `${NAMESPACE}/LateCallbacks`, `${NAMESPACE}/DuplicateCallbacks`,
          `${NAMESPACE}/EarlyCallbacks`, 'AWS/ApiGateway/5XXError',
        ]);
      });

      test('charts pacing wait p50 and p99 and slots given up', () => {
        // THEN
        const pacing = widgetTitled(widgets, /^Pacing/);
        expect(statsOf(pacing, 'PacingWait')).toEqual(['p50', 'p99']);
        expect(metricNamesOf(pacing)).toContain(`${NAMESPACE}/SlotsGivenUp`);
      });

      test('charts the arrivals after their slots on API Gateway\'s clock (earliest, latest, spread) against the alarm threshold', () => {
        // THEN
        const arrival = widgetTitled(widgets, /^Arrival at the proxy after the slot/);
        expect(statsOf(arrival, 'VendorArrivalAfterSlot')).toEqual(['Minimum', 'Maximum']);
        const expressions = (arrival.properties.metrics ?? []).flatMap((m) => m)
          .filter((m): m is { expression: string } => typeof m === 'object' && m !== null && 'expression' in m)
          .map((m) => m.expression);
        expect(expressions).toEqual(['latest - earliest']);
        expect(arrival.properties.annotations?.horizontal).toEqual([expect.objectContaining({ value: 15 })]);
      });

      test('has no arrival widget with PacingPoint.DISPATCH (no request carries a slot)', () => {
        // GIVEN / WHEN
        const dispatch = setup({ pacingPoint: PacingPoint.DISPATCH });

        // THEN
        const titles = dashboardWidgets(Template.fromStack(dispatch.stack)).map((w) => w.properties.title ?? '');
        expect(titles.filter((t) => /^Arrival/.test(t))).toEqual([]);
      });

      test('every custom metric carries the orchestrator scope', () => {
        // THEN
        const custom = widgets.flatMap((w) => w.properties.metrics ?? []).filter((m) => m[0] === NAMESPACE);
        expect(custom.length).toBeGreaterThanOrEqual(12);
        for (const metric of custom) {
          expect(metric.slice(2, 4)).toEqual(['Scope', s.orchestrator.metricsScope]);
        }
      });
    });
  });

  describe('alarms', () => {
    let s: Setup;
    let main: sfn.StateMachine;
    let alarms: Array<Record<string, any>>;
    beforeAll(() => {
      // GIVEN
      s = setup();
      main = mainWorkflow(s.stack, s.orchestrator);
      // WHEN
      s.orchestrator.registerWorkflow(main);
      alarms = alarmsOf(Template.fromStack(s.stack));
    });

    test('lists the eight alarms of the orchestrator (the arrival spread and busiest-second audits among them) and one per registered workflow', () => {
      // THEN
      expect(alarms).toHaveLength(9);
      expect(s.orchestrator.alarms).toHaveLength(9);
      expect(s.orchestrator.alarms).toContain(s.orchestrator.proxy.busiestSecondAlarm);
      expect(s.orchestrator.alarms).toEqual(expect.arrayContaining([
        s.orchestrator.backlogAlarm,
        s.orchestrator.requestDeadLetterAlarm,
        s.orchestrator.callbackDeadLetterAlarm,
        s.orchestrator.dispatchFailuresAlarm,
        s.orchestrator.webhookServerErrorsAlarm,
        s.orchestrator.rejectedCallbacksAlarm,
        s.orchestrator.arrivalSpreadAlarm,
      ]));
    });

    test('reuses the alarms of the consumer and the webhook', () => {
      // THEN
      expect(s.orchestrator.backlogAlarm).toBe(s.orchestrator.consumer.backlogAlarm);
      expect(s.orchestrator.requestDeadLetterAlarm).toBe(s.orchestrator.consumer.deadLetterAlarm);
      expect(s.orchestrator.callbackDeadLetterAlarm).toBe(s.orchestrator.webhook.deadLetterAlarm);
    });

    test('alarms on a backlog of more than five minutes of work (3000 messages at 10 rps)', () => {
      // THEN
      expect(alarms).toContainEqual(expect.objectContaining({
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: s.stack.resolve(s.orchestrator.consumer.queue.queueName) }],
        Threshold: 3000,
        ComparisonOperator: 'GreaterThanThreshold',
      }));
    });

    test('alarms on one message in either dead-letter queue', () => {
      // THEN
      for (const queue of [s.orchestrator.consumer.deadLetterQueue, s.orchestrator.webhook.deadLetterQueue]) {
        expect(alarms).toContainEqual(expect.objectContaining({
          MetricName: 'ApproximateNumberOfMessagesVisible',
          Dimensions: [{ Name: 'QueueName', Value: s.stack.resolve(queue.queueName) }],
          Threshold: 1,
          ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        }));
      }
    });

    test('alarms on any failed dispatch execution within 5 minutes', () => {
      // THEN
      expect(alarms).toContainEqual(expect.objectContaining({
        Namespace: 'AWS/States',
        MetricName: 'ExecutionsFailed',
        Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: logicalIdOf(s.stack, s.orchestrator.dispatch.stateMachine) } }],
        Statistic: 'Sum',
        Period: 300,
        EvaluationPeriods: 1,
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'notBreaching',
      }));
    });

    test('alarms on any webhook 5xx within 5 minutes', () => {
      // THEN
      expect(alarms).toContainEqual(expect.objectContaining({
        Namespace: 'AWS/ApiGateway',
        MetricName: '5XXError',
        Dimensions: [{ Name: 'ApiName', Value: s.stack.resolve(s.orchestrator.webhook.restApi.restApiName) }],
        Statistic: 'Sum',
        Period: 300,
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
      }));
    });

    test('alarms on any rejected callback within 5 minutes (custom metric)', () => {
      // THEN
      expect(alarms).toContainEqual(expect.objectContaining({
        Namespace: NAMESPACE,
        MetricName: 'CallbacksRejected',
        Dimensions: [{ Name: 'Scope', Value: s.orchestrator.metricsScope }],
        Statistic: 'Sum',
        Period: 300,
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
      }));
    });

    test('alarms on failed or timed-out executions of the registered workflow', () => {
      // THEN
      const workflowAlarm = alarms.find((a) => a.Metrics?.some((m: any) => m.Expression === 'FILL(failed, 0) + FILL(timedOut, 0)'));
      expect(workflowAlarm).toMatchObject({ Threshold: 0, ComparisonOperator: 'GreaterThanThreshold', EvaluationPeriods: 1 });
      expect(workflowAlarm!.Metrics).toContainEqual(expect.objectContaining({ Expression: 'FILL(failed, 0) + FILL(timedOut, 0)' }));
      const inputs = workflowAlarm!.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat);
      expect(inputs.map((m: any) => m.Metric.MetricName).sort()).toEqual(['ExecutionsFailed', 'ExecutionsTimedOut']);
      for (const input of inputs) {
        expect(input).toMatchObject({ Stat: 'Sum', Period: 300 });
        expect(input.Metric.Dimensions).toEqual([{ Name: 'StateMachineArn', Value: { Ref: logicalIdOf(s.stack, main) } }]);
      }
    });

    test('every alarm description says what to do', () => {
      // THEN
      for (const alarm of alarms) {
        expect(typeof alarm.AlarmDescription).toBe('string');
      }
      const own = alarms.filter((a) => a.Threshold === 0);
      expect(own).toHaveLength(4);
      for (const alarm of own) {
        expect(alarm.AlarmDescription).toContain('docs/operations.md');
      }
    });

    test('adds one alarm per workflow, once, however often it is registered', () => {
      // GIVEN
      const { stack, orchestrator } = setup();
      const first = mainWorkflow(stack, orchestrator, 'First');
      const second = mainWorkflow(stack, orchestrator, 'Second');

      // WHEN
      orchestrator.registerWorkflow(first);
      orchestrator.registerWorkflow(first);
      orchestrator.registerWorkflow(second);

      // THEN
      expect(orchestrator.alarms).toHaveLength(10);
      Template.fromStack(stack).resourceCountIs('AWS::CloudWatch::Alarm', 10);
    });
  });

  describe('alarm actions', () => {
    function everyAlarmNotifies(stack: Stack, topic: sns.ITopic): void {
      const alarms = alarmsOf(Template.fromStack(stack));
      expect(alarms.length).toBeGreaterThan(0);
      for (const alarm of alarms) {
        expect(alarm.AlarmActions).toEqual([stack.resolve(topic.topicArn)]);
      }
    }

    test('addAlarmAction applies to every alarm, including one registered afterwards', () => {
      // GIVEN
      const { stack, orchestrator } = setup();
      const topic = new sns.Topic(stack, 'Ops');

      // WHEN
      orchestrator.addAlarmAction(new cloudwatchActions.SnsAction(topic));
      orchestrator.registerWorkflow(mainWorkflow(stack, orchestrator));

      // THEN
      Template.fromStack(stack).resourceCountIs('AWS::CloudWatch::Alarm', 9);
      everyAlarmNotifies(stack, topic);
    });

    test('addAlarmAction applies to alarms of workflows registered before it', () => {
      // GIVEN
      const { stack, orchestrator } = setup();
      const topic = new sns.Topic(stack, 'Ops');
      orchestrator.registerWorkflow(mainWorkflow(stack, orchestrator));

      // WHEN
      orchestrator.addAlarmAction(new cloudwatchActions.SnsAction(topic));

      // THEN
      everyAlarmNotifies(stack, topic);
    });

    test('monitoring.alarmTopic notifies the topic from every alarm', () => {
      // GIVEN
      const stack = testStack();
      const topic = new sns.Topic(stack, 'Ops');

      // WHEN
      const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', { ...PROPS, monitoring: { alarmTopic: topic } });
      orchestrator.registerWorkflow(mainWorkflow(stack, orchestrator));

      // THEN
      everyAlarmNotifies(stack, topic);
    });

    test('monitoring.alarmActions are taken by every alarm', () => {
      // GIVEN
      const stack = testStack();
      const topic = new sns.Topic(stack, 'Ops');

      // WHEN
      const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
        ...PROPS,
        monitoring: { alarmActions: [new cloudwatchActions.SnsAction(topic)] },
      });
      orchestrator.registerWorkflow(mainWorkflow(stack, orchestrator));

      // THEN
      everyAlarmNotifies(stack, topic);
    });

    test('alarms have no actions unless some are given', () => {
      // GIVEN / WHEN
      const { stack, orchestrator } = setup();
      orchestrator.registerWorkflow(mainWorkflow(stack, orchestrator));

      // THEN
      for (const alarm of alarmsOf(Template.fromStack(stack))) {
        expect(alarm.AlarmActions).toBeUndefined();
      }
    });
  });

  describe('metrics scope', () => {
    test('is the orchestrator unique id, shared by the dispatcher, the callback processor and the proxy', () => {
      // GIVEN / WHEN
      const { stack, orchestrator } = setup();

      // THEN
      expect(orchestrator.metricsScope).toBe(Names.uniqueId(orchestrator));
      expect(orchestrator.consumer.metricsScope).toBe(orchestrator.metricsScope);
      expect(orchestrator.webhook.metricsScope).toBe(orchestrator.metricsScope);
      expect(orchestrator.proxy.metricsScope).toBe(orchestrator.metricsScope);
      const template = Template.fromStack(stack);
      for (const fn of [orchestrator.consumer.function, orchestrator.webhook.processor]) {
        expect(template.toJSON().Resources[logicalIdOf(stack, fn)].Properties.Environment.Variables).toMatchObject({
          METRICS_SCOPE: orchestrator.metricsScope,
          POWERTOOLS_METRICS_NAMESPACE: NAMESPACE,
        });
      }
    });

    test('differs between two orchestrators of one stack', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const one = new AsyncExternalApiOrchestrator(stack, 'One', PROPS);
      const two = new AsyncExternalApiOrchestrator(stack, 'Two', PROPS);

      // THEN
      expect(one.metricsScope).not.toBe(two.metricsScope);
    });
  });

  describe('metric methods', () => {
    const { orchestrator } = setup();
    const custom: Array<[string, (p?: cloudwatch.MetricOptions) => cloudwatch.Metric, string, string]> = [
      ['metricDispatchedRequests', (p) => orchestrator.metricDispatchedRequests(p), 'DispatchedRequests', 'Sum'],
      ['metricPacingWait', (p) => orchestrator.metricPacingWait(p), 'PacingWait', 'Average'],
      ['metricSlotsGivenUp', (p) => orchestrator.metricSlotsGivenUp(p), 'SlotsGivenUp', 'Sum'],
      ['metricVendorCalls', (p) => orchestrator.metricVendorCalls(p), 'VendorCalls', 'Sum'],
      ['metricVendorCallLateness', (p) => orchestrator.metricVendorCallLateness(p), 'VendorCallLateness', 'Maximum'],
      ['metricVendorPauses', (p) => orchestrator.metricVendorPauses(p), 'VendorPauses', 'Sum'],
      ['metricPauseChecksSkipped', (p) => orchestrator.metricPauseChecksSkipped(p), 'PauseChecksSkipped', 'Sum'],
      ['metricProxyThrottles', (p) => orchestrator.metricProxyThrottles(p), 'ProxyThrottles', 'Sum'],
      ['metricVendorThrottles', (p) => orchestrator.metricVendorThrottles(p), 'VendorThrottles', 'Sum'],
      ['metricCallbacksResolved', (p) => orchestrator.metricCallbacksResolved(p), 'CallbacksResolved', 'Sum'],
      ['metricCallbacksRejected', (p) => orchestrator.metricCallbacksRejected(p), 'CallbacksRejected', 'Sum'],
      ['metricLateCallbacks', (p) => orchestrator.metricLateCallbacks(p), 'LateCallbacks', 'Sum'],
      ['metricDuplicateCallbacks', (p) => orchestrator.metricDuplicateCallbacks(p), 'DuplicateCallbacks', 'Sum'],
      ['metricEarlyCallbacks', (p) => orchestrator.metricEarlyCallbacks(p), 'EarlyCallbacks', 'Sum'],
      ['metricCallbackLatency', (p) => orchestrator.metricCallbackLatency(p), 'CallbackLatency', 'Average'],
    ];

    test.each(custom)('%s is custom metric %s in the orchestrator scope', (_name, metric, metricName, statistic) => {
      // WHEN
      const m = metric();

      // THEN
      expect(m.namespace).toBe(NAMESPACE);
      expect(m.metricName).toBe(metricName);
      expect(m.dimensions).toEqual({ Scope: orchestrator.metricsScope });
      expect(m.statistic).toBe(statistic);
      expect(m.period.toSeconds()).toBe(300);
    });

    test('the vendor caller publishes its metrics in the orchestrator scope, so the caller metrics above find its data', () => {
      // GIVEN / WHEN
      const one = setup();

      // THEN
      Template.fromStack(one.stack).hasResourceProperties('AWS::Lambda::Function', {
        Description: Match.stringLikeRegexp('at its pacing slot'),
        Environment: { Variables: Match.objectLike({ METRICS_SCOPE: one.orchestrator.metricsScope }) },
      });
    });

    test.each(custom)('%s takes the options it is given', (_name, metric) => {
      // WHEN
      const m = metric({ statistic: 'p99', period: Duration.minutes(1) });

      // THEN
      expect(m.statistic).toBe('p99');
      expect(m.period.toSeconds()).toBe(60);
      expect(m.dimensions).toEqual({ Scope: orchestrator.metricsScope });
    });

    test.each<[string, string, string, () => cloudwatch.Metric]>([
      ['metricBacklog', 'AWS/SQS', 'ApproximateNumberOfMessagesVisible', () => orchestrator.metricBacklog()],
      ['metricAgeOfOldestRequest', 'AWS/SQS', 'ApproximateAgeOfOldestMessage', () => orchestrator.metricAgeOfOldestRequest()],
      ['metricRequestDeadLetterMessages', 'AWS/SQS', 'ApproximateNumberOfMessagesVisible', () => orchestrator.metricRequestDeadLetterMessages()],
      ['metricCallbackDeadLetterMessages', 'AWS/SQS', 'ApproximateNumberOfMessagesVisible', () => orchestrator.metricCallbackDeadLetterMessages()],
      ['metricDispatchFailures', 'AWS/States', 'ExecutionsFailed', () => orchestrator.metricDispatchFailures()],
      ['metricVendorRequests', 'AWS/ApiGateway', 'Count', () => orchestrator.metricVendorRequests()],
    ])('%s is %s %s', (_name, namespace, metricName, metric) => {
      // WHEN
      const m = metric();

      // THEN
      expect(m.namespace).toBe(namespace);
      expect(m.metricName).toBe(metricName);
    });

    test('the dead-letter metrics point at their own queues', () => {
      // WHEN / THEN
      expect(orchestrator.metricRequestDeadLetterMessages().dimensions)
        .toEqual({ QueueName: orchestrator.consumer.deadLetterQueue.queueName });
      expect(orchestrator.metricCallbackDeadLetterMessages().dimensions)
        .toEqual({ QueueName: orchestrator.webhook.deadLetterQueue.queueName });
    });
  });

  describe('tracing', () => {
    function tracingOf(s: Setup) {
      const template = Template.fromStack(s.stack);
      const resources = template.toJSON().Resources;
      const stages = Object.values(template.findResources('AWS::ApiGateway::Stage')).map((r) => r.Properties.TracingEnabled);
      const functions = Object.values(template.findResources('AWS::Lambda::Function'))
        .filter((r) => r.Properties.Handler === 'index.handler')
        .map((r) => r.Properties.TracingConfig?.Mode);
      const dispatch = resources[logicalIdOf(s.stack, s.orchestrator.dispatch.stateMachine)].Properties.TracingConfiguration;
      return { stages, functions, dispatch };
    }

    test('is off by default', () => {
      // GIVEN / WHEN
      const t = tracingOf(setup());

      // THEN
      expect(t.stages).toEqual([undefined, undefined]);
      expect(t.functions).toEqual([undefined, undefined]);
      expect(t.dispatch?.Enabled ?? false).toBe(false);
    });

    test('tracing turns on X-Ray for the functions, the Express workflow and both stages', () => {
      // GIVEN
      const stack = testStack();
      const secret = new secretsmanager.Secret(stack, 'Client');

      // WHEN
      const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
        ...PROPS,
        tracing: true,
        proxy: { credentials: VendorCredentials.oauthClientCredentials({ secret, tokenUrl: 'https://auth.vendor.example.com/token' }) },
      });

      // THEN
      const t = tracingOf({ stack, orchestrator });
      expect(t.stages).toEqual([true, true]);
      // dispatcher, vendor caller, callback processor, arrival audit, and one more (see tracingOf)
      expect(t.functions).toEqual(['Active', 'Active', 'Active', 'Active', 'Active']);
      expect(t.dispatch).toEqual({ Enabled: true });
      Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
        PolicyDocument: {
          Statement: Match.arrayWith([Match.objectLike({ Action: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'] })]),
        },
      });
    });

    test("a block's own tracingEnabled wins over tracing", () => {
      // GIVEN / WHEN
      const s = setup({ tracing: true, webhook: { tracingEnabled: false }, dispatch: { tracingEnabled: false } });

      // THEN
      const stages = Template.fromStack(s.stack).findResources('AWS::ApiGateway::Stage');
      const webhookStage = Object.values(stages).find((r) => r.Properties.StageName === 'webhook');
      const proxyStage = Object.values(stages).find((r) => r.Properties.StageName === 'vendor');
      expect(webhookStage!.Properties.TracingEnabled).toBeUndefined();
      expect(proxyStage!.Properties.TracingEnabled).toBe(true);
      expect(tracingOf(s).dispatch?.Enabled ?? false).toBe(false);
    });
  });
});
