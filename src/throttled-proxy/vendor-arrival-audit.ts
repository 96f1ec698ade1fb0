import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as destinations from 'aws-cdk-lib/aws-logs-destinations';
import { Construct } from 'constructs';
import { VENDOR_CALLER_USER_AGENT_PRODUCT } from './arrival-audit';
import { ArrivalAuditFunction } from './arrival-audit-function';
import { arrivalAfterSlotMetric, arrivalSpreadExpression, SPREAD_PERIOD } from './arrival-audit-metrics';
import { METRICS_NAMESPACE, METRICS_SCOPE_ENV } from '../shared/metrics';
import { addFunctionNagSuppressions } from '../shared/nag';

/**
 * The part of the lateness budget `L` that the arrival audit cannot see: what spreads after API
 * Gateway received a request. API Gateway's own overhead (~10 ms at p99, `Latency -
 * IntegrationLatency` of a regional REST API) plus the proxy -> vendor network hop (~5 ms at p99 to
 * a nearby endpoint on a warm connection): the README's "Choosing L" table.
 */
export const DEFAULT_SPREAD_AFTER_PROXY_MS = 15;

/**
 * Options of the arrival audit: a Lambda subscribed to the proxy's access log that measures, on API
 * Gateway's clock, how long after its slot each paced request arrived (metric
 * `VendorArrivalAfterSlot`), and an alarm when the spread of that measure exceeds what the lateness
 * tolerance `L` leaves for it.
 */
export interface VendorArrivalAuditOptions {
  /**
   * The lateness tolerance `L` the pacing schedule is spaced for (fire term + path spread + clock
   * spread; README, "Choosing L"). An `AsyncExternalApiOrchestrator` fills it in from its rate
   * settings (give `consumer.latenessTolerance` there instead).
   *
   * @default - the orchestrator's; required for a ThrottledProxy used alone
   */
  readonly latenessTolerance?: Duration;

  /**
   * How much the requests' latency spreads after API Gateway received them (API Gateway's own
   * overhead plus the proxy -> vendor hop): the part of `L` the audit cannot measure. The alarm
   * fires when the measured spread exceeds `latenessTolerance - spreadAfterProxy`. Raise it for a
   * distant vendor (and `latenessTolerance` with it).
   *
   * @default Duration.millis(15) - ~10 ms API Gateway overhead + ~5 ms network to the vendor, at p99
   */
  readonly spreadAfterProxy?: Duration;

  /**
   * How long the audit function's logs (its EMF documents, one per container and minute) are kept.
   *
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;
}

/** Properties of a VendorArrivalAudit. */
export interface VendorArrivalAuditProps extends VendorArrivalAuditOptions {
  /** The proxy's access log group (its JSON format has requestTimeEpoch and userAgent). */
  readonly accessLogGroup: logs.ILogGroup;
  /** Value of the `Scope` dimension of the audit's metrics. */
  readonly metricsScope: string;
  /**
   * X-Ray active tracing of the audit function (the proxy's `tracingEnabled`).
   *
   * @default false
   */
  readonly tracingEnabled?: boolean;
}

/**
 * Measures the pacing guarantee's assumption once deployed, from one clock (issue 13, item 2).
 *
 * The vendor caller sends its container and the slot it fires for in its User-Agent; the proxy's
 * access log records API Gateway's receive time (`$context.requestTimeEpoch`) beside it. A
 * CloudWatch Logs subscription filter delivers the caller's lines to a small function that
 * publishes `requestTimeEpoch - slot` per request (custom metric `VendorArrivalAfterSlot`, EMF, the
 * container as a property). Its spread, maximum - minimum over a minute, is fire lateness +
 * caller -> proxy spread + the spread of the callers' clocks, read on API Gateway's clock: what `L`
 * must cover up to the proxy. The alarm fires when it exceeds `L - spreadAfterProxy`.
 *
 * Created by a ThrottledProxy with `arrivalAudit` (an orchestrator with PacingPoint.VENDOR_CALL
 * always has one).
 */
export class VendorArrivalAudit extends Construct {
  /** The function the subscription invokes (one invocation per delivered batch of log lines). */
  public readonly function: lambda.Function;
  /** The subscription filter on the proxy's access log group (the vendor caller's lines only). */
  public readonly subscriptionFilter: logs.SubscriptionFilter;
  /** Fires when the spread of `VendorArrivalAfterSlot` over a minute (any of the last three) exceeds `spreadThresholdMs`. */
  public readonly spreadAlarm: cloudwatch.Alarm;
  /** `L - spreadAfterProxy`, in milliseconds. */
  public readonly spreadThresholdMs: number;
  /** The lateness tolerance `L` the threshold derives from, in milliseconds. */
  public readonly latenessToleranceMs: number;

  private readonly metricsScope: string;

  constructor(scope: Construct, id: string, props: VendorArrivalAuditProps) {
    super(scope, id);
    this.metricsScope = props.metricsScope;
    if (props.latenessTolerance === undefined) {
      throw new Error('arrivalAudit.latenessTolerance is missing: give the lateness tolerance L the pacing schedule is spaced for (e.g. Duration.millis(30), the default of an orchestrator with PacingPoint.VENDOR_CALL); the alarm threshold derives from it');
    }
    this.latenessToleranceMs = props.latenessTolerance.toMilliseconds();
    const afterProxyMs = props.spreadAfterProxy?.toMilliseconds() ?? DEFAULT_SPREAD_AFTER_PROXY_MS;
    if (!(afterProxyMs >= 0) || afterProxyMs > 1000) {
      throw new Error(`arrivalAudit.spreadAfterProxy must be between 0 and 1000 ms (given ${afterProxyMs} ms)`);
    }
    if (!(this.latenessToleranceMs > afterProxyMs)) {
      throw new Error(`the lateness tolerance (${this.latenessToleranceMs} ms) must be above arrivalAudit.spreadAfterProxy (${afterProxyMs} ms): `
        + 'L covers the caller\'s lateness, the callers\' clocks and the path to the vendor, and the spread after API Gateway alone would use it up. '
        + 'Raise the lateness tolerance (consumer.latenessTolerance in an orchestrator) or, if you measured a smaller spread after the proxy, lower spreadAfterProxy');
    }
    this.spreadThresholdMs = this.latenessToleranceMs - afterProxyMs;

    this.function = new ArrivalAuditFunction(this, 'Function', {
      description: 'Measures when paced requests reached the vendor proxy against their slots, on API Gateway\'s clock (metric VendorArrivalAfterSlot)',
      timeout: Duration.seconds(30),
      memorySize: 128,
      tracing: props.tracingEnabled ? lambda.Tracing.ACTIVE : undefined,
      logGroup: new logs.LogGroup(this, 'FunctionLogs', {
        retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
        removalPolicy: RemovalPolicy.RETAIN,
      }),
      environment: {
        [METRICS_SCOPE_ENV]: props.metricsScope,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        POWERTOOLS_SERVICE_NAME: 'arrival-audit',
      },
    });
    addFunctionNagSuppressions(this.function, { tracing: props.tracingEnabled ?? false });

    this.subscriptionFilter = new logs.SubscriptionFilter(this, 'Subscription', {
      logGroup: props.accessLogGroup,
      destination: new destinations.LambdaDestination(this.function),
      // Only the vendor caller's lines: a JSON filter pattern with a trailing wildcard matches the
      // User-Agent's prefix (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html,
      // "Using filter patterns to match terms in JSON log events"). A log group has at most two
      // subscription filters; this takes one.
      filterPattern: logs.FilterPattern.stringValue('$.userAgent', '=', `${VENDOR_CALLER_USER_AGENT_PRODUCT}/*`),
    });

    this.spreadAlarm = new cloudwatch.Alarm(this, 'SpreadAlarm', {
      alarmDescription: `Paced requests reached the vendor proxy spread by more than ${this.spreadThresholdMs} ms around their slots within a minute, on API Gateway's clock `
        + `(lateness tolerance L ${this.latenessToleranceMs} ms minus ${afterProxyMs} ms for the spread after the proxy). The contract bound at the vendor assumes less: `
        + 'break the spread down per container (README, "Check it once deployed"); a container whose earliest arrivals sit apart from the others\' is a clock offset, '
        + 'a spread within every container is the fire lateness or the path. Raise consumer.latenessTolerance to cover it. '
        + 'Runbook: docs/operations.md of cdk-async-external-api ("Arrival spread").',
      metric: this.metricSpread({ period: SPREAD_PERIOD }),
      threshold: this.spreadThresholdMs,
      // One breaching minute among the last three: the values are timestamped when API Gateway
      // received the requests and reach CloudWatch after the subscription's delivery, so a minute
      // is often complete only after CloudWatch first evaluated it; an M-of-N alarm looks at the
      // last N datapoints each time (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-evaluation.html).
      evaluationPeriods: 3,
      datapointsToAlarm: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  /** See `arrivalAfterSlotMetric`. */
  public metricAfterSlot(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return arrivalAfterSlotMetric(this.metricsScope, props);
  }

  /** See `arrivalSpreadExpression`. */
  public metricSpread(props?: cloudwatch.MathExpressionOptions): cloudwatch.MathExpression {
    return arrivalSpreadExpression(this.metricsScope, props);
  }
}
