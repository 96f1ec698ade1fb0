/**
 * Arrival audit Lambda: subscribed to the throttled proxy's access log group (a CloudWatch Logs
 * subscription filter that selects the vendor caller's lines), it publishes, per paced request,
 * API Gateway's receive time minus the request's slot as the metric `VendorArrivalAfterSlot` (EMF).
 * The logic lives in `arrival-audit.ts`; this file only wires the logger and the metrics.
 *
 * CloudWatch Logs invokes the function asynchronously
 * (https://docs.aws.amazon.com/lambda/latest/dg/services-cloudwatchlogs.html) and retries a delivery
 * that Lambda refuses with a retryable error (throttling, 5xx) for up to 24 hours
 * (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/Subscriptions.html); Lambda retries a
 * function error of an asynchronous invocation twice, then drops the event
 * (https://docs.aws.amazon.com/lambda/latest/dg/invocation-retries.html). A line it cannot read is
 * therefore counted (`VendorArrivalLinesSkipped`), logged and skipped, never thrown, or the batch's
 * other lines would be measured up to three times. Only a payload that is not a delivery of
 * CloudWatch Logs at all fails the invocation.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { ArrivalAuditMetricNames, auditArrivals, CloudWatchLogsSubscriptionEvent, decodeSubscriptionEvent, groupArrivals } from './arrival-audit';
import { METRICS_NAMESPACE, METRICS_SCOPE_DIMENSION, METRICS_SCOPE_ENV } from '../shared/metrics';

// Created once per execution environment.
const logger = new Logger({ serviceName: 'arrival-audit' });
// As handler-metrics.ts configures it (namespace, exactly the Scope dimension), plus what this
// function needs and handler-metrics does not offer: a property (the container) and a timestamp
// (API Gateway's receive time) per EMF document.
const metrics = new Metrics({ namespace: process.env.POWERTOOLS_METRICS_NAMESPACE?.trim() || METRICS_NAMESPACE, logger });
metrics.clearDefaultDimensions();
metrics.setDefaultDimensions({ [METRICS_SCOPE_DIMENSION]: process.env[METRICS_SCOPE_ENV]?.trim() || 'default' });

/** What an invocation measured (returned for tests and the local runtime; CloudWatch Logs ignores it). */
export interface ArrivalAuditResult {
  readonly messageType: string;
  readonly measured: number;
  readonly skipped: number;
  /** EMF documents written. */
  readonly documents: number;
}

export const handler = async (event: CloudWatchLogsSubscriptionEvent, context?: Context): Promise<ArrivalAuditResult> => {
  if (context) {
    logger.addContext(context);
  }
  const payload = decodeSubscriptionEvent(event);
  if (payload.messageType !== 'DATA_MESSAGE') {
    // CONTROL_MESSAGE: CloudWatch Logs checking that the destination is reachable; no log events.
    return { messageType: payload.messageType, measured: 0, skipped: 0, documents: 0 };
  }
  const audit = auditArrivals(payload.logEvents.map((e) => e?.message));
  const skipped = Object.values(audit.skipped).reduce((sum, n) => sum + (n ?? 0), 0);
  if (skipped > 0) {
    logger.warn('access log lines skipped: not a paced request the audit can read', {
      skipped: audit.skipped, logGroup: payload.logGroup, logStream: payload.logStream,
    });
  }
  let documents = 0;
  // One EMF document per container and minute (at most 100 values each, the EMF limit): the
  // document's properties name the container, so a Logs Insights query on this function's log
  // group breaks the spread down per container without a metric per container (each one would
  // be a custom metric billed on its own).
  for (const group of groupArrivals(audit.arrivals)) {
    documents += publish(() => {
      metrics.setTimestamp(group.timestampMs);
      metrics.addMetadata('container', group.container);
      // Numbers, so Logs Insights can take min/max of them (Powertools types metadata as string
      // but writes any JSON value).
      metrics.addMetadata('minAfterSlotMs', group.minAfterSlotMs as unknown as string);
      metrics.addMetadata('maxAfterSlotMs', group.maxAfterSlotMs as unknown as string);
      for (const value of group.afterSlotMs) {
        metrics.addMetric(ArrivalAuditMetricNames.AFTER_SLOT, MetricUnit.Milliseconds, value);
      }
    });
  }
  if (skipped > 0) {
    documents += publish(() => {
      metrics.setTimestamp(Date.now());
      metrics.addMetric(ArrivalAuditMetricNames.LINES_SKIPPED, MetricUnit.Count, skipped);
    });
  }
  return { messageType: payload.messageType, measured: audit.arrivals.length, skipped, documents };
};

/** Records and writes one EMF document; a metrics problem is logged, never thrown (see above). */
function publish(record: () => void): number {
  try {
    record();
    // Powertools already wrote the document itself when a metric reached 100 values.
    if (metrics.hasStoredMetrics()) {
      metrics.publishStoredMetrics();
    }
    return 1;
  } catch (error) {
    logger.warn('could not publish the arrival metrics (ignored)', { error });
    metrics.clearMetrics();
    metrics.clearMetadata();
    return 0;
  }
}
