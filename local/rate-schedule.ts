/**
 * The rate in force at the vendor over time, and the windows that exceed it (README, "The rate at
 * run time"). A window is bound by the rate in force at its START: a decrease effective at T binds
 * every window that starts at or after T, an increase effective at T only the windows that lie
 * wholly after T. At or above 1 RPS a window is 1 s holding at most floor(R) requests; below 1 RPS
 * it is 1 / R seconds holding at most one (the pacer's guarantee, pacer.ts).
 *
 * Used by the vendor simulator (a strict vendor refusing calls beyond the rate in force), the demo
 * and the benchmark (violationsByLimit.rate), and the tests. Times in epoch ms.
 */
import { DynamicDelayEnv } from '../src/rate-controlled-queue-consumer/dynamic-delay-env';
import { rateIncreaseHoldMs } from '../src/rate-controlled-queue-consumer/pacer';
import { ConsumerEnv, VendorCallerEnv } from '../src/shared/env';

/** From `atMs` on, the vendor allows `requestsPerSecond`. */
export interface RateChange {
  readonly atMs: number;
  readonly requestsPerSecond: number;
}

/** The rate in force at `t`: the last change at or before it, else the contract. */
export function rateInForceAt(t: number, contractRps: number, schedule: readonly RateChange[]): number {
  let rate = contractRps;
  for (const change of schedule) {
    if (change.atMs <= t) rate = change.requestsPerSecond;
  }
  return rate;
}

/** The window a rate is stated for and how many requests it may hold. */
export function windowOf(rps: number): { windowMs: number; limit: number } {
  return rps >= 1 ? { windowMs: 1000, limit: Math.floor(rps) } : { windowMs: 1000 / rps, limit: 1 };
}

function countIn(sorted: readonly number[], from: number, to: number): number {
  let n = 0;
  for (const t of sorted) {
    if (t >= from && t <= to) n++;
  }
  return n;
}

/**
 * Whether some closed window ending at `now` exceeds the rate in force at its start: what a strict
 * vendor can check when a request arrives (`arrivals`: every arrival so far in ascending order,
 * `now` included). The windows that matter start at an earlier arrival, or just before a change
 * took effect (a window starting before an increase is still bound by the old rate). Scans back
 * only as far as the longest window.
 */
export function overRateInForce(arrivals: readonly number[], now: number, contractRps: number, schedule: readonly RateChange[]): boolean {
  const longest = Math.max(...[contractRps, ...schedule.map((c) => c.requestsPerSecond)].map((r) => windowOf(r).windowMs));
  let end = arrivals.length - 1;
  while (end >= 0 && arrivals[end] > now) end--;
  // Windows starting at an arrival: [arrivals[i], now] holds end - i + 1.
  for (let i = end; i >= 0 && arrivals[i] >= now - longest; i--) {
    const { windowMs, limit } = windowOf(rateInForceAt(arrivals[i], contractRps, schedule));
    if (now - arrivals[i] <= windowMs && end - i + 1 > limit) return true;
  }
  // Windows starting just before a change.
  for (const change of schedule) {
    const start = change.atMs - 1e-6;
    const { windowMs, limit } = windowOf(rateInForceAt(start, contractRps, schedule));
    if (start <= now && now - start <= windowMs && countIn(arrivals, start, now) > limit) return true;
  }
  return false;
}

/**
 * Arrivals that ended a closed window over the rate in force at its start, counted after the run
 * (each arrival counts once at most): 0 when every window kept the rate in force.
 */
export function violationsAgainstRateInForce(arrivals: readonly number[], contractRps: number, schedule: readonly RateChange[]): number {
  const sorted = [...arrivals].sort((a, b) => a - b);
  let count = 0;
  for (let i = 0; i < sorted.length; i++) {
    // Arrivals after sorted[i] are skipped by overRateInForce (it looks back from `now`).
    if (overRateInForce(sorted, sorted[i], contractRps, schedule)) count++;
  }
  return count;
}

/** What the pacer's stated bound needs from the deployed stack (pacer.ts, "The rate at run time"). */
export interface RateChangeTiming {
  /** The dynamic delay's poll interval, ms (every environment reads a change within it). */
  readonly pollIntervalMs: number;
  /** How far ahead a reservation may reach: the longer of the dispatcher's MAX_PACING_WAIT_MS and the caller's maxSlotWait. */
  readonly horizonMs: number;
  /** The pacing tolerance L, ms. */
  readonly latenessToleranceMs: number;
}

/**
 * When a change deployed at `deployedAtMs` binds at the vendor (the stated bound): a decrease binds
 * windows starting at or after `deployed + P + H + L`; an increase is in force at the vendor from
 * when it is deployed (the operator deploys it once the vendor allows it) and in use by the pacer
 * within `P + (1000 + L + 1) + H`.
 */
export function rateChangeBindsAtMs(deployedAtMs: number, decrease: boolean, timing: RateChangeTiming): number {
  return decrease ? deployedAtMs + timing.pollIntervalMs + timing.horizonMs + timing.latenessToleranceMs : deployedAtMs;
}

/** The stated time until the pacer uses the new rate: `P + H`, plus one window for an increase (the hold). */
export function rateChangeInUseWithinMs(decrease: boolean, timing: RateChangeTiming): number {
  return timing.pollIntervalMs + timing.horizonMs + (decrease ? 0 : rateIncreaseHoldMs(timing.latenessToleranceMs));
}

/**
 * When the new rate was observed in use, ms after its deployment: for an increase the first window
 * (after the deployment) holding more than the old rate allows; for a decrease the start of the
 * last window holding more than the new rate allows (after it, every window keeps the new rate),
 * or 0 when none did. Undefined for an increase never observed (no backlog to show it).
 */
export function newRateObservedAfterMs(arrivals: readonly number[], deployedAtMs: number, oldRps: number, newRps: number): number | undefined {
  const sorted = [...arrivals].sort((a, b) => a - b);
  if (newRps > oldRps) {
    const { windowMs, limit } = windowOf(oldRps);
    for (const a of sorted) {
      if (a >= deployedAtMs && countIn(sorted, a, a + windowMs) > limit) return a - deployedAtMs;
    }
    return undefined;
  }
  const { windowMs, limit } = windowOf(newRps);
  let last = deployedAtMs;
  for (const a of sorted) {
    if (a >= deployedAtMs && countIn(sorted, a, a + windowMs) > limit) last = a;
  }
  return last - deployedAtMs;
}

/**
 * The timing of a synthesized template: the dynamic delay's poll interval, the dispatcher's
 * MAX_PACING_WAIT_MS, the vendor caller's MAX_SLOT_WAIT_MS and the tolerance L,
 * read from the functions' environment variables.
 */
export function rateChangeTimingOf(template: { Resources: Record<string, { Type: string; Properties?: any }> }): RateChangeTiming {
  let pollIntervalMs = 0;
  let horizonMs = 0;
  let latenessToleranceMs = 0;
  for (const resource of Object.values(template.Resources)) {
    if (resource.Type !== 'AWS::Lambda::Function') continue;
    const env: Record<string, unknown> = resource.Properties?.Environment?.Variables ?? {};
    const num = (name: string) => (typeof env[name] === 'string' && env[name] !== '' ? Number(env[name]) : 0);
    pollIntervalMs = Math.max(pollIntervalMs, num(DynamicDelayEnv.POLL_INTERVAL_SECONDS) * 1000);
    horizonMs = Math.max(horizonMs, num(ConsumerEnv.MAX_PACING_WAIT_MS), num(VendorCallerEnv.MAX_SLOT_WAIT_MS));
    latenessToleranceMs = Math.max(latenessToleranceMs, num(ConsumerEnv.LATENESS_TOLERANCE_MS));
  }
  return { pollIntervalMs, horizonMs, latenessToleranceMs };
}
