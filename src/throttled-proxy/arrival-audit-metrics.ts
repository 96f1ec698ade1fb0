/**
 * The arrival audit's metrics (internal: the ThrottledProxy's `metricVendorArrival*()` methods and
 * the VendorArrivalAudit's alarm use them), and how an orchestrator configures the audit.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { ArrivalAuditMetricNames } from './arrival-audit';
import type { VendorArrivalAuditOptions } from './vendor-arrival-audit';
import { customMetric } from '../shared/custom-metrics';

/** Period of the spread the alarm checks: the finest standard-resolution metrics have. */
export const SPREAD_PERIOD = Duration.minutes(1);

/**
 * API Gateway's receive time minus the slot, per paced request, in milliseconds (custom metric
 * `VendorArrivalAfterSlot`, published by the arrival audit).
 */
export function arrivalAfterSlotMetric(metricsScope: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
  return customMetric(metricsScope, ArrivalAuditMetricNames.AFTER_SLOT, 'Maximum', props);
}

/** Maximum - minimum of `VendorArrivalAfterSlot` per period (default one minute). */
export function arrivalSpreadExpression(metricsScope: string, props?: cloudwatch.MathExpressionOptions): cloudwatch.MathExpression {
  const period = props?.period ?? SPREAD_PERIOD;
  return new cloudwatch.MathExpression({
    expression: 'latest - earliest',
    usingMetrics: {
      latest: arrivalAfterSlotMetric(metricsScope, { statistic: 'Maximum', period }),
      earliest: arrivalAfterSlotMetric(metricsScope, { statistic: 'Minimum', period }),
    },
    label: 'spread of arrival after slot (max - min, ms)',
    ...props,
    period,
  });
}

/**
 * The audit options an orchestrator gives its proxy: with PacingPoint.VENDOR_CALL always an audit,
 * with `L` from the rate settings; with DISPATCH none (nobody fires at slots, so no request carries
 * one), and options given for it are refused.
 */
export function orchestratorArrivalAudit(
  given: VendorArrivalAuditOptions | undefined, vendorCall: boolean, latenessToleranceMs: number,
): VendorArrivalAuditOptions | undefined {
  if (given?.latenessTolerance !== undefined) {
    throw new Error(`proxy.arrivalAudit.latenessTolerance is given (${given.latenessTolerance.toMilliseconds()} ms), but an orchestrator audits against its own lateness tolerance: set consumer.latenessTolerance instead`);
  }
  if (!vendorCall) {
    if (given !== undefined) {
      throw new Error('proxy.arrivalAudit is given with PacingPoint.DISPATCH: only the vendor caller (PacingPoint.VENDOR_CALL) fires requests at slots, so there is nothing to audit. Remove proxy.arrivalAudit or use PacingPoint.VENDOR_CALL');
    }
    return undefined;
  }
  return { ...given, latenessTolerance: Duration.millis(latenessToleranceMs) };
}
