/**
 * The benchmark's numbers, from arrival times at the vendor. Definitions: ../shared/DESIGN.md
 * "How rate accuracy is measured" (a_i = time request i reached the vendor, R = the contract).
 */
import { maxInAnyWindow, percentile, violations } from './report';

export { maxInAnyWindow, percentile, violations };

/** Requests a window may hold: floor(R), at least 1. */
export function windowLimit(contractRps: number): number {
  return Math.max(1, Math.floor(contractRps));
}

/**
 * Utilization U = vendor requests / (R * T), over the span T while a backlog exists: the warm-up
 * (the pipeline filling) and the drain (the last requests in flight after the queue emptied) are
 * skipped. The span runs from the first arrival at or after `first + warmupMs` to the last arrival
 * at or before `last - cooldownMs`, and the arrivals after its start are counted (n arrivals spaced
 * evenly make n - 1 intervals), so a run paced exactly at R gives exactly 1.
 *
 * @param arrivals arrival times, ms, any order
 * @param contractRps R
 */
export function utilization(arrivals: number[], contractRps: number, warmupMs = 0, cooldownMs = 0): number {
  if (arrivals.length < 2) return 0;
  const sorted = [...arrivals].sort((a, b) => a - b);
  const first = sorted[0];
  const last = sorted[sorted.length - 1];
  let i = sorted.findIndex((a) => a >= first + warmupMs);
  let j = findLastIndex(sorted, (a) => a <= last - cooldownMs);
  if (i < 0 || j <= i) {
    // Too short to trim: use the whole run.
    i = 0;
    j = sorted.length - 1;
  }
  const span = sorted[j] - sorted[i];
  return span > 0 ? (j - i) / (contractRps * span / 1000) : 0;
}

function findLastIndex(values: number[], predicate: (v: number) => boolean): number {
  for (let k = values.length - 1; k >= 0; k--) if (predicate(values[k])) return k;
  return -1;
}

/** Added latency (enqueue -> vendor arrival) p50 and p99, ms, rounded; null when there is none. */
export function addedLatency(pairs: Array<{ enqueuedAt: number; arrivedAt: number }>): { p50: number | null; p99: number | null } {
  const values = pairs.map((p) => p.arrivedAt - p.enqueuedAt);
  const p50 = percentile(values, 50);
  const p99 = percentile(values, 99);
  return { p50: p50 === undefined ? null : Math.round(p50), p99: p99 === undefined ? null : Math.round(p99) };
}
