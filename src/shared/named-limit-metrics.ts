/**
 * The per-limit metric of named limits (issue 14): how many calls a slot reservation held back for
 * a named limit, published by the dispatcher and the vendor caller where they reserve slots.
 */
import { namedLimitWaitsMetricName } from './metrics';

/** What both handlers' metrics sinks offer. */
interface CountMetrics {
  addMetric(name: string, unit: 'Count', value: number): void;
}

/** Publishes `NamedLimitWaits.<name>` for each limit of a reservation's `limitWaits` (nothing when none). */
export function recordNamedLimitWaits(metrics: CountMetrics | undefined, limitWaits: Readonly<Record<string, number>> | undefined): void {
  for (const [name, calls] of Object.entries(limitWaits ?? {})) {
    metrics?.addMetric(namedLimitWaitsMetricName(name), 'Count', calls);
  }
}
