/**
 * Pacing knobs for the local runtime. The library's defaults (lead 1 s, fire tolerance 10 ms,
 * L = 30 ms) are sized for AWS; on 2 shared cores the emulated Express workflow and Lambda start
 * take 1-2 s and worker-thread timers wake later, so the demo and the benchmark's emulated rows use
 * these values, and say so. Utilization is then at most 1000 / (1000 + 45) = 0.957.
 */
export const LOCAL_PACING = {
  leadMs: 1500,
  fireToleranceMs: 25,
  latenessToleranceMs: 45,
} as const;

/**
 * Vendor callers busy at once: rate x (lead + a call), plus headroom; at most 60 worker threads.
 * They are started before the run (LocalRuntime.prewarm), as a steady load or provisioned
 * concurrency has them warm on AWS.
 */
export function vendorCallerWarmPool(rps: number, leadMs: number): number {
  return Math.min(60, Math.ceil(rps * (leadMs / 1000 + 1)) + 2);
}
