/**
 * Adaptive pacing (issue 14, item 5): the arithmetic, shared by the construct (which resolves and
 * validates the spec at synth time) and the handlers (which read it from their environment).
 * Plain code only: no AWS SDK or aws-cdk-lib imports.
 *
 * ## The rule (AIMD on the pacer item)
 *
 * The pacer item holds the adaptive rate `a0` (`adaptiveRps`) and when it was last decreased
 * (`adaptiveSinceMs`). At time `t` the adaptive rate is
 *
 *     a(t) = max(min(minimum, ceiling), min(ceiling, a0 + step * floor((t - since) / probeInterval)))
 *
 * where `ceiling` is the rate in force (the operators' rate, at most the contract): the increase is
 * lazy (computed at each read, never written), one `step` per probe interval since the last
 * decrease, and never above the rate in force. Without a stored state the adaptive rate is the
 * ceiling. A 429 (the vendor's or the proxy's) at time `t` decreases it once per cooldown:
 * `a0 := max(minimum, a(t) * decreaseFactor)`, `since := t`, with a conditional write on the
 * stored `since`, so that many 429s of one burst, answered to concurrent callers, decrease once.
 *
 * The pacer paces at `min(rate in force, a(t))`: a lower rate in force as far as the schedule is
 * concerned, so the proof of "The rate at run time" (pacer.ts) covers it.
 */

import { parseJsonEnv } from '../shared/env';

/** The resolved settings of adaptive pacing (the handlers' `ADAPTIVE_PACING` environment variable, as JSON). */
export interface AdaptiveSpec {
  /** The adaptive rate is multiplied by this at a decrease, 0 < f < 1. */
  readonly decreaseFactor: number;
  /** One increase step per this many milliseconds since the last decrease. */
  readonly probeIntervalMs: number;
  /** Requests per second added per probe interval. */
  readonly increaseStep: number;
  /** The adaptive rate never goes below this (requests per second), unless the rate in force does. */
  readonly minimumRequestsPerSecond: number;
  /** At most one decrease per this many milliseconds: the 429s of one burst decrease once. */
  readonly cooldownMs: number;
}

/** The adaptive state stored in the pacer item. */
export interface AdaptiveState {
  /** The adaptive rate at the last decrease, requests per second. */
  readonly rps: number;
  /** When it was last decreased, epoch ms. */
  readonly sinceMs: number;
}

/** The adaptive rate at the last decrease, requests per second (N). */
export const ADAPTIVE_RATE_ATTRIBUTE = 'adaptiveRps';
/** When the adaptive rate was last decreased, epoch ms (N). */
export const ADAPTIVE_SINCE_ATTRIBUTE = 'adaptiveSinceMs';

/** The adaptive state of a read pacer item; undefined when none was written (or only part of it). */
export function parseAdaptiveState(item: Record<string, { N?: string } | undefined> | undefined): AdaptiveState | undefined {
  const rps = Number(item?.[ADAPTIVE_RATE_ATTRIBUTE]?.N);
  const sinceMs = Number(item?.[ADAPTIVE_SINCE_ATTRIBUTE]?.N);
  if (item?.[ADAPTIVE_RATE_ATTRIBUTE]?.N === undefined || item?.[ADAPTIVE_SINCE_ATTRIBUTE]?.N === undefined
    || !Number.isFinite(rps) || !Number.isFinite(sinceMs) || rps <= 0) {
    return undefined;
  }
  return { rps, sinceMs };
}

/**
 * The adaptive rate at `nowMs` (requests per second): the stored rate plus one step per whole probe
 * interval since the last decrease, never above `ceiling` (the rate in force), never below the
 * minimum (unless the ceiling is lower). The ceiling without a stored state.
 */
export function adaptiveRateAt(nowMs: number, ceiling: number, state: AdaptiveState | undefined, spec: AdaptiveSpec): number {
  if (state === undefined) {
    return ceiling;
  }
  const probes = Math.floor(Math.max(0, nowMs - state.sinceMs) / spec.probeIntervalMs);
  const raised = Math.min(ceiling, state.rps + probes * spec.increaseStep);
  return Math.max(Math.min(spec.minimumRequestsPerSecond, ceiling), raised);
}

/**
 * The state after a 429 at `nowMs`, or undefined when the last decrease is less than a cooldown
 * ago (that 429 belongs to a burst already answered).
 */
export function decreasedState(nowMs: number, ceiling: number, state: AdaptiveState | undefined, spec: AdaptiveSpec): AdaptiveState | undefined {
  if (state !== undefined && nowMs - state.sinceMs < spec.cooldownMs) {
    return undefined;
  }
  const current = adaptiveRateAt(nowMs, ceiling, state, spec);
  return { rps: Math.max(Math.min(spec.minimumRequestsPerSecond, ceiling), current * spec.decreaseFactor), sinceMs: nowMs };
}

/**
 * How long the adaptive rate takes to climb from `fromRps` back to `toRps`: whole probe intervals
 * (README "Adaptive pacing" states it for the defaults).
 */
export function recoveryMs(fromRps: number, toRps: number, spec: AdaptiveSpec): number {
  return Math.max(0, Math.ceil((toRps - fromRps) / spec.increaseStep)) * spec.probeIntervalMs;
}

/** Reads the spec from its JSON text (environment variable); undefined when absent. Throws naming `name` when invalid. */
export function parseAdaptiveSpec(raw: string | undefined, name: string): AdaptiveSpec | undefined {
  const parsed = parseJsonEnv(raw, name, 'JSON');
  if (parsed === undefined) {
    return undefined;
  }
  const spec = parsed as Record<string, unknown>;
  const positive = (key: keyof AdaptiveSpec) => {
    const value = spec?.[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new Error(`Environment variable ${name}: ${key} must be a number above 0, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  const decreaseFactor = positive('decreaseFactor');
  if (decreaseFactor >= 1) {
    throw new Error(`Environment variable ${name}: decreaseFactor must be below 1, got ${decreaseFactor}`);
  }
  return {
    decreaseFactor,
    probeIntervalMs: positive('probeIntervalMs'),
    increaseStep: positive('increaseStep'),
    minimumRequestsPerSecond: positive('minimumRequestsPerSecond'),
    cooldownMs: positive('cooldownMs'),
  };
}
