/**
 * The per-limit metric of named limits (issue 14): how many calls a named limit held back, published
 * by the dispatcher and the vendor caller where they reserve slots. A call held back at several
 * reservations of one invocation (the dispatcher waits for the limit and reserves again; the vendor
 * caller reserves a fresh slot more than once) counts once per limit: the metric counts calls, not
 * reservations.
 */
import { namedLimitWaitsMetricName } from './metrics';

/** What both handlers' metrics sinks offer. */
interface CountMetrics {
  addMetric(name: string, unit: 'Count', value: number): void;
}

/** The calls already counted in one invocation, per limit (by the caller's id of each call). */
export type CountedLimitWaits = Map<string, Set<string>>;

/**
 * Publishes `NamedLimitWaits.<name>` for the calls of a reservation held back by each limit that
 * this invocation has not counted for that limit yet (nothing when none).
 *
 * @param reservation what reserveSlots returned (`limitWaitCalls`: indexes into the calls requested)
 * @param callIds the id of each call requested, in the order requested
 * @param counted the invocation's record, updated
 */
export function recordNamedLimitWaits(
  metrics: CountMetrics | undefined,
  reservation: { readonly limitWaitCalls?: Readonly<Record<string, readonly number[]>> },
  callIds: readonly string[],
  counted: CountedLimitWaits,
): void {
  for (const [name, indexes] of Object.entries(reservation.limitWaitCalls ?? {})) {
    const seen = counted.get(name) ?? new Set<string>();
    counted.set(name, seen);
    const fresh = indexes.map((index) => callIds[index]).filter((id) => !seen.has(id));
    fresh.forEach((id) => seen.add(id));
    if (fresh.length > 0) {
      metrics?.addMetric(namedLimitWaitsMetricName(name), 'Count', fresh.length);
    }
  }
}
