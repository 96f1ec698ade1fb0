import * as os from 'node:os';

/**
 * Pacing knobs for the local runtime. The library's defaults (lead 1 s, fire tolerance 5 ms,
 * L = 30 ms) are sized for AWS. On 2 shared cores the caller -> API Gateway -> vendor path spreads
 * by up to 20-35 ms (measured in the benchmark's steady state: worker threads waking on busy
 * cores), against about 20 ms assumed on AWS, and the emulated Express start sometimes takes more
 * than a second; timers on these loaded cores wake later too (docs/benchmark.md, "Fire
 * tolerance"). So the demo and the benchmark's emulated rows keep a fire tolerance of 10 ms, space
 * slots for L = 40 ms and start executions 1.5 s ahead, and say so. Utilization is then at most
 * 1000 / (1000 + 40 + 1) = 0.961 (the 1 ms margin at the window's edge).
 */
export const LOCAL_PACING = {
  leadMs: 1500,
  fireToleranceMs: 10,
  latenessToleranceMs: 40,
} as const;

/**
 * Vendor callers busy at once: rate x (lead + a call), plus headroom; at most 60 worker threads.
 * They are started before the run (LocalRuntime.prewarm), as a steady load or provisioned
 * concurrency has them warm on AWS.
 */
export function vendorCallerWarmPool(rps: number, leadMs: number): number {
  return Math.min(60, Math.ceil(rps * (leadMs / 1000 + 1)) + 2);
}

/** Nice value the emulated control plane runs at once the data plane's threads exist. */
const CONTROL_PLANE_NICE = 10;

/**
 * Lowers the OS priority of this thread (the emulated Step Functions, SQS and event source
 * mappings) and of every thread it starts from now on (dispatcher and callback processor
 * environments), below the threads already running: the vendor simulator, the API Gateway and
 * the prewarmed vendor callers, started before this call.
 *
 * Why: on AWS the paced hop (vendor caller -> API Gateway -> vendor) runs on machines of its own; on
 * 2 shared cores it waited behind the control plane's bursts, which spread the arrivals at the
 * vendor by tens of milliseconds. The control plane is not made faster or slower by this: it gets
 * the CPU the data plane leaves, and the lead covers its latency. On Linux a thread's nice value is
 * its own and new threads inherit their creator's; raising it needs no privilege.
 */
export function yieldToDataPlane(): void {
  try {
    os.setPriority(0, Math.max(os.getPriority(0), CONTROL_PLANE_NICE));
  } catch {
    // Not permitted or not supported here: the run goes on at equal priority.
  }
}
