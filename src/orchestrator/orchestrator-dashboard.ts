import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { AsyncExternalApiOrchestrator } from './async-external-api-orchestrator';
import { KeyInsights, keyInsightsWidgets } from './key-insights';
import { keySettingsWidget } from './key-settings-monitoring';
import { namedLimitWidget } from './named-limit-monitoring';
import { quotaWidget } from './quota-monitoring';

/** Period of every graph: one minute, the finest the AWS metrics charted here have. */
const PERIOD = Duration.minutes(1);
const HALF = 12;
const THIRD = 8;
const HEIGHT = 6;

/**
 * The orchestrator's dashboard (internal: the orchestrator creates it). Its widgets are described
 * in docs/operations.md ("Dashboard tour"); keep the two in step.
 */
export class OrchestratorDashboard extends Construct {
  /** The CloudWatch dashboard. */
  public readonly dashboard: cloudwatch.Dashboard;

  /** Failed and timed-out executions of the registered workflows; filled by `addWorkflow`. */
  private readonly workflowsWidget: cloudwatch.GraphWidget;

  constructor(scope: Construct, id: string, private readonly o: AsyncExternalApiOrchestrator, dashboardName?: string) {
    super(scope, id);
    const period = PERIOD;
    const rps = o.requestsPerSecond;

    const header = new cloudwatch.TextWidget({
      markdown: [
        `## Async external API: ${o.node.path}`,
        `Contract: **${rps} requests per second**. Metrics scope: \`${o.metricsScope}\`. `
          + 'Alarms, runbook and redrive: `docs/operations.md` of cdk-async-external-api.',
      ].join('\n'),
      width: 24,
      height: 2,
    });

    const rate = new cloudwatch.GraphWidget({
      title: 'Contract vs delivered requests per second',
      left: [
        new cloudwatch.MathExpression({
          expression: 'proxyRequests / PERIOD(proxyRequests)',
          usingMetrics: { proxyRequests: o.metricVendorRequests({ statistic: 'Sum', period }) },
          label: 'requests to the proxy per second (API Gateway Count)',
          period,
        }),
        new cloudwatch.MathExpression({
          expression: 'dispatched / PERIOD(dispatched)',
          usingMetrics: { dispatched: o.metricDispatchedRequests({ period }) },
          label: 'dispatches started per second (DispatchedRequests)',
          period,
        }),
        // The rate operators set at run time (README, "The rate at run time"), when they can.
        ...(o.contractState.dynamicDelay
          ? [o.consumer.metricRateInForce({ period, label: 'rate in force (RateInForce, minimum)', color: cloudwatch.Color.ORANGE })]
          : []),
        // Adaptive pacing (README, "Adaptive pacing"): the rate the vendor's 429s left in force.
        ...(o.contract.adaptivePacing
          ? [o.metricEffectiveRate({ period, label: 'effective rate (EffectiveRate, minimum)', color: cloudwatch.Color.PURPLE })]
          : []),
        // The audit (README, "Audit"): the busiest calendar second of each minute at the proxy.
        ...(o.proxy.auditRule ? [o.proxy.metricBusiestSecond({ period, label: 'busiest second of the minute at the proxy (audit, forwarded requests)' })] : []),
      ],
      leftAnnotations: [{ value: rps, label: `contract: ${rps} requests per second`, color: cloudwatch.Color.RED }],
      leftYAxis: { min: 0, label: 'requests per second', showUnits: false },
      width: HALF,
      height: HEIGHT,
    });

    const backlog = new cloudwatch.GraphWidget({
      title: 'Request backlog and age of the oldest request',
      left: [o.metricBacklog({ statistic: 'Maximum', period, label: 'requests waiting (messages visible)' })],
      right: [o.metricAgeOfOldestRequest({ statistic: 'Maximum', period, label: 'age of the oldest request (seconds)' })],
      leftAnnotations: [{ value: o.consumer.backlogThresholdMessages, label: 'backlog alarm threshold', color: cloudwatch.Color.ORANGE }],
      leftYAxis: { min: 0, label: 'messages', showUnits: false },
      rightYAxis: { min: 0, label: 'seconds', showUnits: false },
      width: HALF,
      height: HEIGHT,
    });

    const inFlight = new cloudwatch.GraphWidget({
      title: 'Dispatches succeeded vs callbacks resolved per minute (rates to compare, not a count of jobs in flight)',
      left: [
        o.dispatch.metricDispatchesSucceeded({ statistic: 'Sum', period, label: 'dispatch executions succeeded (jobs submitted, retries scheduled)' }),
        o.metricCallbacksResolved({ period, label: 'callbacks resolved (workflows resumed or failed)' }),
      ],
      leftYAxis: { min: 0, showUnits: false },
      width: HALF,
      height: HEIGHT,
    });

    const latency = new cloudwatch.GraphWidget({
      title: 'Callback latency: webhook to workflow resumed (p50, p99)',
      left: [
        o.metricCallbackLatency({ statistic: 'p50', period, label: 'p50' }),
        o.metricCallbackLatency({ statistic: 'p99', period, label: 'p99' }),
      ],
      leftYAxis: { min: 0, label: 'milliseconds', showUnits: false },
      width: HALF,
      height: HEIGHT,
    });

    const deadLetters = new cloudwatch.GraphWidget({
      title: 'Dead-letter queue depths (any message needs a person)',
      left: [
        o.metricRequestDeadLetterMessages({ statistic: 'Maximum', period, label: 'request DLQ' }),
        o.metricCallbackDeadLetterMessages({ statistic: 'Maximum', period, label: 'callback DLQ' }),
      ],
      leftYAxis: { min: 0, label: 'messages', showUnits: false },
      width: THIRD,
      height: HEIGHT,
    });

    const dispatchFailures = new cloudwatch.GraphWidget({
      title: 'Dispatch failures (requests given up)',
      left: [
        o.metricDispatchFailures({ statistic: 'Sum', period, label: 'dispatch executions failed' }),
        o.dispatch.metricDispatchTimeouts({ statistic: 'Sum', period, label: 'dispatch executions timed out' }),
        o.consumer.metricParkedRequests({ period, label: 'malformed requests parked by the dispatcher' }),
      ],
      leftYAxis: { min: 0, showUnits: false },
      width: THIRD,
      height: HEIGHT,
    });

    this.workflowsWidget = new cloudwatch.GraphWidget({
      title: 'Registered workflows: executions failed and timed out',
      left: [],
      leftYAxis: { min: 0, showUnits: false },
      width: THIRD,
      height: HEIGHT,
    });

    const throttles = new cloudwatch.GraphWidget({
      title: '429s: refused by the proxy vs answered by the vendor',
      left: [
        o.metricProxyThrottles({ period, label: 'proxy throttled (vendor not called)' }),
        o.metricVendorThrottles({ period, label: 'vendor answered 429' }),
      ],
      leftYAxis: { min: 0, showUnits: false },
      width: THIRD,
      height: HEIGHT,
    });

    const callbacks = new cloudwatch.GraphWidget({
      title: 'Callbacks: rejected, late, duplicate, early; webhook 5xx',
      left: [
        o.metricCallbacksRejected({ period, label: 'rejected (parked)' }),
        o.metricLateCallbacks({ period, label: 'late (workflow already ended)' }),
        o.metricDuplicateCallbacks({ period, label: 'duplicate' }),
        o.metricEarlyCallbacks({ period, label: 'early (job id not stored yet, retried)' }),
      ],
      right: [o.webhook.metricServerErrors({ statistic: 'Sum', period, label: 'webhook 5xx answers' })],
      leftYAxis: { min: 0, showUnits: false },
      rightYAxis: { min: 0, showUnits: false },
      width: THIRD,
      height: HEIGHT,
    });

    const pacing = new cloudwatch.GraphWidget({
      title: 'Pacing: wait for a slot (p50, p99) and slots given up',
      left: [
        o.metricPacingWait({ statistic: 'p50', period, label: 'pacing wait p50' }),
        o.metricPacingWait({ statistic: 'p99', period, label: 'pacing wait p99' }),
      ],
      right: [o.metricSlotsGivenUp({ period, label: 'slots given up (late start)' })],
      leftYAxis: { min: 0, label: 'milliseconds', showUnits: false },
      rightYAxis: { min: 0, showUnits: false },
      width: THIRD,
      height: HEIGHT,
    });

    const rows: cloudwatch.IWidget[][] = [
      [header],
      [rate, backlog],
      [inFlight, latency],
      [deadLetters, dispatchFailures, this.workflowsWidget],
      [throttles, callbacks, pacing],
    ];
    const audit = o.proxy.arrivalAudit;
    if (audit) {
      // The pacing guarantee's assumption, measured on API Gateway's clock (PacingPoint.VENDOR_CALL only).
      rows.push([new cloudwatch.GraphWidget({
        title: 'Arrival at the proxy after the slot (API Gateway\'s clock): earliest, latest, spread',
        left: [
          o.proxy.metricVendorArrivalAfterSlot({ statistic: 'Minimum', period, label: 'earliest after slot' }),
          o.proxy.metricVendorArrivalAfterSlot({ statistic: 'Maximum', period, label: 'latest after slot' }),
          o.proxy.metricVendorArrivalSpread({ period, label: 'spread (latest - earliest)' }),
        ],
        leftAnnotations: [{
          value: audit.spreadThresholdMs,
          label: `alarm: spread above ${audit.spreadThresholdMs} ms (L ${audit.latenessToleranceMs} ms minus the spread after the proxy)`,
          color: cloudwatch.Color.RED,
        }],
        leftYAxis: { label: 'milliseconds', showUnits: false },
        width: 24,
        height: HEIGHT,
      })]);
    }
    const maxJobs = o.contract.maxJobsInFlight;
    if (maxJobs !== undefined) {
      // Only with the limit: dashboards of orchestrators without it stay as they are.
      const waiting = o.consumer.metricJobsWaiting({ statistic: 'Maximum', period, label: 'requests waiting for a place (waiting queue depth)' });
      rows.push([new cloudwatch.GraphWidget({
        title: 'Vendor jobs in flight (places held) vs the contract',
        left: [o.metricJobsInFlight({ statistic: 'Maximum', period, label: 'jobs in flight (JobsInFlight, maximum)' })],
        leftAnnotations: [{ value: maxJobs, label: `contract: ${maxJobs} jobs in flight`, color: cloudwatch.Color.RED }],
        leftYAxis: { min: 0, label: 'jobs', showUnits: false },
        // The waiting queue's depth: requests that found every place taken, waiting to be woken
        // (none with a shared contract state: its requests wait as delayed copies in the request queue).
        ...(waiting ? { right: [waiting], rightYAxis: { min: 0, label: 'requests', showUnits: false } } : {}),
        width: 24,
        height: HEIGHT,
      })]);
    }
    this.dashboard = new cloudwatch.Dashboard(this, 'Resource', { dashboardName, widgets: rows });
    // Issue 14: the contract's quotas, when it has any.
    const quotas = quotaWidget(o.contract, o.metricsScope, HALF, HEIGHT);
    if (quotas) {
      this.dashboard.addWidgets(quotas);
    }
    // Issue 14: the contract's named limits, when it has any.
    const limits = namedLimitWidget(o.contract, o.metricsScope, HALF, HEIGHT);
    if (limits) {
      this.dashboard.addWidgets(limits);
    }
  }

  /** Issue 15: the section of the keys (the top key and the active keys of each rule). */
  public addKeys(insights: KeyInsights): void {
    const [header, ...graphs] = keyInsightsWidgets(insights, HALF, HEIGHT);
    // With per-key limits: the settings source's own failures (their alarms are in `alarms`).
    if (this.o.keySettingsTable) {
      graphs.push(keySettingsWidget(this.o.metricsScope, HALF, HEIGHT));
    }
    this.dashboard.addWidgets(header);
    for (let i = 0; i < graphs.length; i += 2) {
      this.dashboard.addWidgets(...graphs.slice(i, i + 2));
    }
  }

  /** Charts the failed and timed-out executions of a registered workflow. */
  public addWorkflow(stateMachine: sfn.IStateMachine): void {
    const name = stateMachine.node.id;
    this.workflowsWidget.addLeftMetric(stateMachine.metricFailed({ statistic: 'Sum', period: PERIOD, label: `${name} failed` }));
    this.workflowsWidget.addLeftMetric(stateMachine.metricTimedOut({ statistic: 'Sum', period: PERIOD, label: `${name} timed out` }));
  }
}
