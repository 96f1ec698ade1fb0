/**
 * Custom metrics for the bundled handlers, in CloudWatch embedded metric format (EMF), written to
 * stdout by Powertools Metrics. Handler code only: constructs never import this file.
 *
 * Namespace: POWERTOOLS_METRICS_NAMESPACE, default METRICS_NAMESPACE. Dimensions: exactly {Scope}.
 * Powertools always adds a default `service` dimension (serviceName, else POWERTOOLS_SERVICE_NAME,
 * else 'service_undefined'); it is cleared, because CloudWatch matches dimension sets exactly and
 * the constructs' charts and alarms select by Scope alone. Powertools' own warnings go through the
 * structured logger. POWERTOOLS_METRICS_DISABLED / POWERTOOLS_DEV still turn the output off.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { METRICS_NAMESPACE, METRICS_SCOPE_DIMENSION, METRICS_SCOPE_ENV } from './metrics';

/** What handler logic counts with. */
export interface HandlerMetrics {
  addMetric(name: string, unit: Parameters<Metrics['addMetric']>[1], value: number): void;
  /** Publishes what was counted in this invocation (nothing when nothing was counted). */
  publish(): void;
}

/** Created once per execution environment; never throws from `addMetric` or `publish`. */
export function createHandlerMetrics(logger: Logger): HandlerMetrics {
  const metrics = new Metrics({
    namespace: process.env.POWERTOOLS_METRICS_NAMESPACE?.trim() || METRICS_NAMESPACE,
    logger,
  });
  metrics.clearDefaultDimensions();
  metrics.setDefaultDimensions({ [METRICS_SCOPE_DIMENSION]: process.env[METRICS_SCOPE_ENV]?.trim() || 'default' });
  return {
    // A metrics problem must never fail a record: that would redeliver work already done.
    addMetric: (name, unit, value) => {
      try {
        metrics.addMetric(name, unit, value);
      } catch (error) {
        logger.warn('could not record a metric (ignored)', { metric: name, value, error });
      }
    },
    publish: () => {
      // Nothing counted (e.g. an empty batch): no EMF document, and no Powertools warning.
      if (!metrics.hasStoredMetrics()) {
        return;
      }
      try {
        metrics.publishStoredMetrics();
      } catch (error) {
        logger.warn('could not publish the metrics (ignored)', { error });
      }
    },
  };
}
