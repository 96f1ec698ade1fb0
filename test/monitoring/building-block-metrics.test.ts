import { Names, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import {
  CallbackWebhook,
  CallbackWebhookProps,
  DispatchWorkflow,
  RateControlledQueueConsumer,
  RateControlledQueueConsumerProps,
  ThrottledProxy,
  ThrottledProxyProps,
  TokenCorrelationTable,
  VendorCredentials,
} from '../../src';
import { logicalIdOf, testStack } from '../util';

const NAMESPACE = 'CdkAsyncExternalApi';
const VENDOR_URL = 'https://vendor.example.com/v1/jobs';

function expressWorkflow(stack: Stack): sfn.StateMachine {
  return new sfn.StateMachine(stack, 'Express', {
    stateMachineType: sfn.StateMachineType.EXPRESS,
    definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'Pass')),
  });
}

function newConsumer(stack: Stack, props: Partial<RateControlledQueueConsumerProps> = {}): RateControlledQueueConsumer {
  return new RateControlledQueueConsumer(stack, 'Consumer', { requestsPerSecond: 10, stateMachine: expressWorkflow(stack), ...props });
}

function newWebhook(stack: Stack, props: Partial<CallbackWebhookProps> = {}): CallbackWebhook {
  return new CallbackWebhook(stack, 'Webhook', { table: new TokenCorrelationTable(stack, 'Table'), ...props });
}

function newProxy(stack: Stack, props: Partial<ThrottledProxyProps> = {}): ThrottledProxy {
  return new ThrottledProxy(stack, 'Proxy', { vendorUrl: VENDOR_URL, requestsPerSecond: 10, ...props });
}

/** The environment variables of a function, as synthesized. */
function environmentOf(stack: Stack, fn: { node: { defaultChild?: unknown } }): Record<string, unknown> {
  return Template.fromStack(stack).toJSON().Resources[logicalIdOf(stack, fn)].Properties.Environment.Variables;
}

function tracingModeOf(stack: Stack, fn: { node: { defaultChild?: unknown } }): string | undefined {
  return Template.fromStack(stack).toJSON().Resources[logicalIdOf(stack, fn)].Properties.TracingConfig?.Mode;
}

function expectCustomMetric(metric: cloudwatch.Metric, metricName: string, scope: string, statistic: string): void {
  expect(metric.namespace).toBe(NAMESPACE);
  expect(metric.metricName).toBe(metricName);
  expect(metric.dimensions).toEqual({ Scope: scope });
  expect(metric.statistic).toBe(statistic);
}

describe('RateControlledQueueConsumer metrics', () => {
  test('a standalone consumer publishes in its own scope, its unique id', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    const consumer = newConsumer(stack);

    // THEN
    expect(consumer.metricsScope).toBe(Names.uniqueId(consumer));
    expect(environmentOf(stack, consumer.function)).toMatchObject({
      METRICS_SCOPE: consumer.metricsScope,
      POWERTOOLS_METRICS_NAMESPACE: NAMESPACE,
    });
  });

  test('publishes in the scope it is given', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    const consumer = newConsumer(stack, { metricsScope: 'orders-vendor' });

    // THEN
    expect(environmentOf(stack, consumer.function)).toMatchObject({ METRICS_SCOPE: 'orders-vendor' });
    expectCustomMetric(consumer.metricDispatchedRequests(), 'DispatchedRequests', 'orders-vendor', 'Sum');
  });

  test('fails if metricsScope has characters that need escaping', () => {
    // GIVEN
    const stack = testStack();

    // WHEN / THEN
    expect(() => newConsumer(stack, { metricsScope: 'a "scope"' }))
      .toThrow(/metricsScope must be 1 to 255 letters, digits or \. _ : \/ - \(given 'a "scope"'\)/);
  });

  test('the dispatcher metric methods name the custom metrics', () => {
    // GIVEN
    const consumer = newConsumer(testStack());

    // WHEN / THEN
    expectCustomMetric(consumer.metricDispatchedRequests(), 'DispatchedRequests', consumer.metricsScope, 'Sum');
    expectCustomMetric(consumer.metricPacingWait(), 'PacingWait', consumer.metricsScope, 'Average');
    expectCustomMetric(consumer.metricSlotsGivenUp(), 'SlotsGivenUp', consumer.metricsScope, 'Sum');
    expectCustomMetric(consumer.metricParkedRequests(), 'ParkedRequests', consumer.metricsScope, 'Sum');
  });

  test('tracingEnabled turns on active tracing of the dispatcher; off by default', () => {
    // GIVEN
    const off = testStack();
    const on = testStack(undefined, 'Traced');

    // WHEN
    const plain = newConsumer(off);
    const traced = newConsumer(on, { tracingEnabled: true });

    // THEN
    expect(tracingModeOf(off, plain.function)).toBeUndefined();
    expect(tracingModeOf(on, traced.function)).toBe('Active');
  });
});

describe('CallbackWebhook metrics', () => {
  test('a standalone webhook publishes in its own scope, its unique id', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    const webhook = newWebhook(stack);

    // THEN
    expect(webhook.metricsScope).toBe(Names.uniqueId(webhook));
    expect(environmentOf(stack, webhook.processor)).toMatchObject({
      METRICS_SCOPE: webhook.metricsScope,
      POWERTOOLS_METRICS_NAMESPACE: NAMESPACE,
    });
  });

  test('publishes in the scope it is given', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    const webhook = newWebhook(stack, { metricsScope: 'orders-vendor' });

    // THEN
    expect(environmentOf(stack, webhook.processor)).toMatchObject({ METRICS_SCOPE: 'orders-vendor' });
  });

  test('the callback metric methods name the custom metrics', () => {
    // GIVEN
    const webhook = newWebhook(testStack());

    // WHEN / THEN
    expectCustomMetric(webhook.metricCallbacksResolved(), 'CallbacksResolved', webhook.metricsScope, 'Sum');
    expectCustomMetric(webhook.metricCallbacksRejected(), 'CallbacksRejected', webhook.metricsScope, 'Sum');
    expectCustomMetric(webhook.metricLateCallbacks(), 'LateCallbacks', webhook.metricsScope, 'Sum');
    expectCustomMetric(webhook.metricDuplicateCallbacks(), 'DuplicateCallbacks', webhook.metricsScope, 'Sum');
    expectCustomMetric(webhook.metricEarlyCallbacks(), 'EarlyCallbacks', webhook.metricsScope, 'Sum');
    expectCustomMetric(webhook.metricCallbackLatency(), 'CallbackLatency', webhook.metricsScope, 'Average');
  });

  test('tracingEnabled traces the stage and the processor; off by default', () => {
    // GIVEN
    const off = testStack();
    const on = testStack(undefined, 'Traced');

    // WHEN
    const plain = newWebhook(off);
    const traced = newWebhook(on, { tracingEnabled: true });

    // THEN
    expect(tracingModeOf(off, plain.processor)).toBeUndefined();
    expect(tracingModeOf(on, traced.processor)).toBe('Active');
    const stageOf = (stack: Stack) => Object.values(Template.fromStack(stack).findResources('AWS::ApiGateway::Stage'))[0].Properties;
    expect(stageOf(off).TracingEnabled).toBeUndefined();
    expect(stageOf(on).TracingEnabled).toBe(true);
  });
});

describe('ThrottledProxy 429 metrics', () => {
  describe('access log format', () => {
    let stack: Stack;
    let proxy: ThrottledProxy;
    let format: Record<string, string>;
    beforeAll(() => {
      // GIVEN
      stack = testStack();
      // WHEN
      proxy = newProxy(stack, { metricsScope: 'orders-vendor' });
      const stages = Object.values(Template.fromStack(stack).findResources('AWS::ApiGateway::Stage'));
      format = JSON.parse(stages[0].Properties.AccessLogSetting.Format);
    });

    test('is JSON with the status, the integration status, the caller, and API Gateway\'s receive time beside the caller\'s User-Agent', () => {
      // THEN
      expect(format).toEqual({
        requestId: '$context.requestId',
        requestTime: '$context.requestTime',
        // One clock for every vendor caller's lateness and clock offset (issue 13, item 2).
        requestTimeEpoch: '$context.requestTimeEpoch',
        httpMethod: '$context.httpMethod',
        resourcePath: '$context.resourcePath',
        // The path requested, stage included: the audit per named limit matches on it.
        path: '$context.path',
        stage: '$context.stage',
        status: '$context.status',
        integrationStatus: '$context.integration.status',
        errorResponseType: '$context.error.responseType',
        responseLatency: '$context.responseLatency',
        integrationLatency: '$context.integration.latency',
        responseLength: '$context.responseLength',
        protocol: '$context.protocol',
        ip: '$context.identity.sourceIp',
        caller: '$context.identity.userArn',
        userAgent: '$context.identity.userAgent',
        scope: 'orders-vendor',
      });
    });

    test('carries the metrics scope as a literal, for the metric filters to read', () => {
      // THEN
      expect(format.scope).toBe(proxy.metricsScope);
    });
  });

  describe('metric filters', () => {
    let stack: Stack;
    let proxy: ThrottledProxy;
    let filters: Array<Record<string, any>>;
    beforeAll(() => {
      // GIVEN
      stack = testStack();
      // WHEN
      proxy = newProxy(stack);
      filters = Object.values(Template.fromStack(stack).findResources('AWS::Logs::MetricFilter')).map((f) => f.Properties);
    });

    function filterFor(metricName: string): Record<string, any> {
      const found = filters.filter((f) => f.MetricTransformations[0].MetricName === metricName);
      expect(found).toHaveLength(1);
      return found[0];
    }

    test('two filters, both on the access log group', () => {
      // THEN
      expect(filters).toHaveLength(2);
      for (const filter of filters) {
        expect(filter.LogGroupName).toEqual({ Ref: logicalIdOf(stack, proxy.accessLogGroup) });
      }
    });

    test('ProxyThrottles counts 429s the vendor did not give (API Gateway refused before calling it)', () => {
      // THEN
      expect(filterFor('ProxyThrottles')).toMatchObject({
        FilterPattern: '{ ($.status = "429") && ($.integrationStatus != "429") }',
        MetricTransformations: [{
          MetricNamespace: NAMESPACE,
          MetricName: 'ProxyThrottles',
          MetricValue: '1',
          Unit: 'Count',
          Dimensions: [{ Key: 'Scope', Value: '$.scope' }],
        }],
      });
    });

    test('VendorThrottles counts the vendor 429s', () => {
      // THEN
      expect(filterFor('VendorThrottles')).toMatchObject({
        FilterPattern: '{ $.integrationStatus = "429" }',
        MetricTransformations: [{
          MetricNamespace: NAMESPACE,
          MetricName: 'VendorThrottles',
          MetricValue: '1',
          Unit: 'Count',
          Dimensions: [{ Key: 'Scope', Value: '$.scope' }],
        }],
      });
    });

    test('no filter sets a default value (CloudWatch refuses one with dimensions)', () => {
      // THEN
      for (const filter of filters) {
        expect(filter.MetricTransformations[0].DefaultValue).toBeUndefined();
      }
    });

    test('metricProxyThrottles and metricVendorThrottles read what the filters publish', () => {
      // WHEN / THEN
      expectCustomMetric(proxy.metricProxyThrottles(), 'ProxyThrottles', proxy.metricsScope, 'Sum');
      expectCustomMetric(proxy.metricVendorThrottles(), 'VendorThrottles', proxy.metricsScope, 'Sum');
      expect(proxy.metricsScope).toBe(Names.uniqueId(proxy));
    });
  });

  test('tracingEnabled traces the stage and the OAuth token function; off by default', () => {
    // GIVEN
    const off = testStack();
    const on = testStack(undefined, 'Traced');
    const credentials = (stack: Stack) => VendorCredentials.oauthClientCredentials({
      secret: new secretsmanager.Secret(stack, 'Client'),
      tokenUrl: 'https://auth.vendor.example.com/token',
    });

    // WHEN
    const plain = newProxy(off, { credentials: credentials(off) });
    const traced = newProxy(on, { credentials: credentials(on), tracingEnabled: true });

    // THEN
    expect(tracingModeOf(off, plain.tokenFunction!)).toBeUndefined();
    expect(tracingModeOf(on, traced.tokenFunction!)).toBe('Active');
    const stageOf = (stack: Stack) => Object.values(Template.fromStack(stack).findResources('AWS::ApiGateway::Stage'))[0].Properties;
    expect(stageOf(off).TracingEnabled).toBeUndefined();
    expect(stageOf(on).TracingEnabled).toBe(true);
  });
});

describe('DispatchWorkflow metrics', () => {
  test('started, succeeded, failed and timed-out executions of the Express workflow', () => {
    // GIVEN
    const stack = testStack();
    const deadLetterQueue = new sqs.Queue(stack, 'RequestDeadLetterQueue');
    const dispatch = new DispatchWorkflow(stack, 'Dispatch', {
      proxy: newProxy(stack),
      table: new TokenCorrelationTable(stack, 'Table'),
      requestQueue: new sqs.Queue(stack, 'RequestQueue', { deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: 10 } }),
      deadLetterQueue,
      callbackUrl: 'https://hooks.example.com/callback',
    });

    // WHEN
    const metrics = {
      ExecutionsStarted: dispatch.metricDispatchesStarted(),
      ExecutionsSucceeded: dispatch.metricDispatchesSucceeded(),
      ExecutionsFailed: dispatch.metricDispatchFailures(),
      ExecutionsTimedOut: dispatch.metricDispatchTimeouts(),
    };

    // THEN
    for (const [metricName, metric] of Object.entries(metrics)) {
      expect(metric.namespace).toBe('AWS/States');
      expect(metric.metricName).toBe(metricName);
      expect(metric.statistic).toBe('Sum');
      expect(metric.dimensions).toEqual({ StateMachineArn: dispatch.stateMachine.stateMachineArn });
    }
  });
});
