/**
 * Custom metrics for the bundled handlers, in CloudWatch embedded metric format (EMF), written to
 * stdout by Powertools Metrics. Handler code only: constructs never import this file.
 *
 * Namespace: POWERTOOLS_METRICS_NAMESPACE, default METRICS_NAMESPACE. Dimensions: exactly {Scope}.
 * Powertools always adds a default `service` dimension (serviceName, else POWERTOOLS_SERVICE_NAME,
 * else 'service_undefined'); it is cleared, because CloudWatch matches dimension sets exactly and
 * the constructs' charts and alarms select by Scope alone. Powertools' own warnings go through the
 * structured logger. POWERTOOLS_METRICS_DISABLED / POWERTOOLS_DEV still turn the output off.
 *
 * Per-key figures (issue 15): a metric counted for a request with a key goes into an EMF document of
 * that key, with the key as a property (`requestKey`, never a dimension: CloudWatch charges per
 * metric, i.e. per dimension value) and the key's totals in this document (`keyTotals`, one number per
 * metric name: the sum of its values). The metric itself is the same metric (same namespace and
 * {Scope}), each value counted once, so charts and alarms see no change and no metric is added.
 * One document per key per publish, not per request: a batch of 10 requests of 2 keys writes 2 (plus
 * one for the counts without a key). Contributor Insights rules sum `$.keyTotals.<metric>` by
 * `$.requestKey` (orchestrator/key-insights.ts). Requests without a key log no `requestKey` at all.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { METRICS_NAMESPACE, METRICS_SCOPE_DIMENSION, METRICS_SCOPE_ENV } from './metrics';

/** What handler logic counts with. */
export interface HandlerMetrics {
  /** Counts `value`; with `key` (the request's key) the value goes into that key's EMF document. */
  addMetric(name: string, unit: Parameters<Metrics['addMetric']>[1], value: number, key?: string): void;
  /** Publishes what was counted in this invocation (nothing when nothing was counted). */
  publish(): void;
}

/** Created once per execution environment; never throws from `addMetric` or `publish`. */
/** The EMF property that holds the request's key (issue 15). */
export const REQUEST_KEY_PROPERTY = 'requestKey';
/** The EMF property that holds, per metric name, the sum of its values for the key in the document. */
export const KEY_TOTALS_PROPERTY = 'keyTotals';

type Unit = Parameters<Metrics['addMetric']>[1];

export function createHandlerMetrics(logger: Logger): HandlerMetrics {
  const metrics = new Metrics({
    namespace: process.env.POWERTOOLS_METRICS_NAMESPACE?.trim() || METRICS_NAMESPACE,
    logger,
  });
  metrics.clearDefaultDimensions();
  metrics.setDefaultDimensions({ [METRICS_SCOPE_DIMENSION]: process.env[METRICS_SCOPE_ENV]?.trim() || 'default' });
  // Values counted for a key, kept until publish (insertion order: the documents' order).
  const keyed = new Map<string, Array<{ name: string; unit: Unit; value: number }>>();
  const add = (name: string, unit: Unit, value: number) => {
    try {
      metrics.addMetric(name, unit, value);
    } catch (error) {
      logger.warn('could not record a metric (ignored)', { metric: name, value, error });
    }
  };
  const flush = () => {
    // Nothing counted (e.g. an empty batch): no EMF document, and no Powertools warning.
    if (!metrics.hasStoredMetrics()) {
      return;
    }
    try {
      metrics.publishStoredMetrics();
    } catch (error) {
      logger.warn('could not publish the metrics (ignored)', { error });
    }
  };
  return {
    // A metrics problem must never fail a record: that would redeliver work already done.
    addMetric: (name, unit, value, key) => {
      if (key === undefined) {
        add(name, unit, value);
        return;
      }
      const values = keyed.get(key) ?? [];
      values.push({ name, unit, value });
      keyed.set(key, values);
    },
    publish: () => {
      flush();
      for (const [key, values] of keyed) {
        const totals: Record<string, number> = {};
        for (const { name, unit, value } of values) {
          add(name, unit, value);
          totals[name] = (totals[name] ?? 0) + value;
        }
        // Powertools types metadata as strings but writes any JSON value into the document
        // (its root properties); the rules need numbers to sum.
        metrics.addMetadata(REQUEST_KEY_PROPERTY, key);
        metrics.addMetadata(KEY_TOTALS_PROPERTY, totals as unknown as string);
        flush();
      }
      keyed.clear();
    },
  };
}
