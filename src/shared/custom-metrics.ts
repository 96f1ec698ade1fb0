import { Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { METRICS_NAMESPACE, METRICS_SCOPE_DIMENSION } from './metrics';

/** Environment variable Powertools Metrics reads its namespace from. */
export const POWERTOOLS_METRICS_NAMESPACE_ENV = 'POWERTOOLS_METRICS_NAMESPACE';

/**
 * A custom metric of this library: namespace `METRICS_NAMESPACE`, dimension `Scope = scope`.
 * `props` override the defaults (statistic, period, label ...), as in the aws-cdk `metricX()`
 * methods.
 */
export function customMetric(
  metricsScope: string,
  metricName: string,
  statistic: string,
  props?: cloudwatch.MetricOptions,
): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRICS_NAMESPACE,
    metricName,
    dimensionsMap: { [METRICS_SCOPE_DIMENSION]: metricsScope },
    statistic,
    ...props,
  });
}

/**
 * Checks a `metricsScope` prop: it becomes a CloudWatch dimension value and a literal in the
 * proxy's access log format, so it is kept to characters that need no escaping in either.
 */
export function validateMetricsScope(metricsScope: string | undefined): void {
  if (metricsScope === undefined || Token.isUnresolved(metricsScope)) {
    return;
  }
  if (!/^[A-Za-z0-9._:/-]{1,255}$/.test(metricsScope)) {
    throw new Error(`metricsScope must be 1 to 255 letters, digits or . _ : / - (given '${metricsScope}'): it is a CloudWatch dimension value and appears in the proxy's access log format`);
  }
}
