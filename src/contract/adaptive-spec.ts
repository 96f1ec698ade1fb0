/**
 * Adaptive pacing (issue 14, item 5): the arithmetic, shared by the construct (which resolves and
 * validates the spec at synth time) and the handlers (which read it from their environment).
 * Plain code only: no AWS SDK or aws-cdk-lib imports.
 *
 * ## The rule (AIMD on the pacer item)
 *
 * The pacer item holds the adaptive rate `a0` (`adaptiveRps`), when it last changed
 * (`adaptiveSinceMs`) and the probe under way, if any. The rate climbs by `step` only after a probe
 * the vendor took (`adaptivePlan`; the probe's shape and proof: rate-controlled-queue-consumer/
 * adaptive-probe.ts), at most one probe per probe interval, never above `ceiling`, the rate in force
 * (the operators' rate, at most the contract). Where no probe could be given out for a whole
 * interval past the one it was due in, the climb is lazy (the first design's rule):
 *
 *     a(t) = max(min(minimum, ceiling), min(ceiling, a0 + step * max(0, floor((t - since) / probeInterval) - 1)))
 *
 * Without a stored state the adaptive rate is the ceiling. A 429 (the vendor's or the proxy's) to
 * a slot that is not the probe's, at time `t`, decreases it once per cooldown:
 * `a0 := max(minimum, a(t) * decreaseFactor)`, `since := t`, with a conditional write on the
 * stored `since`, so that many 429s of one burst, answered to concurrent callers, decrease once;
 * a 429 to the probe records its refusal instead.
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
  /** The adaptive rate at the last change (decrease, probe judged), requests per second. */
  readonly rps: number;
  /** When it last changed, epoch ms: the probe interval counts from here. */
  readonly sinceMs: number;
  /** The probe under way, if any (rate-controlled-queue-consumer/adaptive-probe.ts). */
  readonly probe?: ProbeState;
}

/** A probe under way: planned (its hole reserved), then placed (its slots given out), then judged. */
export interface ProbeState {
  /** Where its first slot goes, epoch ms. */
  readonly atMs: number;
  /** How many slots it gives out at the ceiling's interval from `atMs`. */
  readonly slots: number;
  /** A 429 to a slot from `fromMs` to `toMs` is the probe's (the arrivals it reorders with). */
  readonly fromMs: number;
  /** Set once placed: the end of the slots a 429 to which is the probe's, epoch ms. */
  readonly toMs?: number;
  /** Whether the vendor refused it. */
  readonly refused: boolean;
}

/** The adaptive rate at the last change, requests per second (N). */
export const ADAPTIVE_RATE_ATTRIBUTE = 'adaptiveRps';
/** When the adaptive rate last changed, epoch ms (N). */
export const ADAPTIVE_SINCE_ATTRIBUTE = 'adaptiveSinceMs';
/** The probe's first slot, epoch ms (N); absent when no probe is under way. */
export const ADAPTIVE_PROBE_ATTRIBUTE = 'adaptiveProbeAtMs';
/** The probe's slot count (N). */
export const ADAPTIVE_PROBE_SLOTS_ATTRIBUTE = 'adaptiveProbeSlots';
/** The start of the probe's slots, epoch ms (N): see ProbeState. */
export const ADAPTIVE_PROBE_FROM_ATTRIBUTE = 'adaptiveProbeFromMs';
/** The end of the probe's slots, epoch ms (N), written when it is placed. */
export const ADAPTIVE_PROBE_TO_ATTRIBUTE = 'adaptiveProbeToMs';
/** The first slot of the probe the vendor refused, epoch ms (N): equal to the probe's when it was refused. */
export const ADAPTIVE_PROBE_REFUSED_ATTRIBUTE = 'adaptiveProbeRefusedAtMs';
/** Every attribute of the probe (cleared together). */
export const ADAPTIVE_PROBE_ATTRIBUTES = [
  ADAPTIVE_PROBE_ATTRIBUTE, ADAPTIVE_PROBE_SLOTS_ATTRIBUTE, ADAPTIVE_PROBE_FROM_ATTRIBUTE, ADAPTIVE_PROBE_TO_ATTRIBUTE,
  ADAPTIVE_PROBE_REFUSED_ATTRIBUTE,
] as const;
/** Every adaptive attribute of the pacer item (what a reservation reads). */
export const ADAPTIVE_ATTRIBUTES = [ADAPTIVE_RATE_ATTRIBUTE, ADAPTIVE_SINCE_ATTRIBUTE, ...ADAPTIVE_PROBE_ATTRIBUTES] as const;

/** The adaptive state of a read pacer item; undefined when none was written (or only part of it). */
export function parseAdaptiveState(item: Record<string, { N?: string } | undefined> | undefined): AdaptiveState | undefined {
  const rps = Number(item?.[ADAPTIVE_RATE_ATTRIBUTE]?.N);
  const sinceMs = Number(item?.[ADAPTIVE_SINCE_ATTRIBUTE]?.N);
  if (item?.[ADAPTIVE_RATE_ATTRIBUTE]?.N === undefined || item?.[ADAPTIVE_SINCE_ATTRIBUTE]?.N === undefined
    || !Number.isFinite(rps) || !Number.isFinite(sinceMs) || rps <= 0) {
    return undefined;
  }
  const number = (name: string) => (item?.[name]?.N === undefined ? undefined : Number(item[name]!.N));
  const atMs = number(ADAPTIVE_PROBE_ATTRIBUTE);
  const slots = number(ADAPTIVE_PROBE_SLOTS_ATTRIBUTE);
  const fromMs = number(ADAPTIVE_PROBE_FROM_ATTRIBUTE);
  if (atMs === undefined || slots === undefined || fromMs === undefined || ![atMs, slots, fromMs].every(Number.isFinite)) {
    return { rps, sinceMs };
  }
  const toMs = number(ADAPTIVE_PROBE_TO_ATTRIBUTE);
  return {
    rps,
    sinceMs,
    probe: {
      atMs,
      slots,
      fromMs,
      ...(toMs !== undefined && Number.isFinite(toMs) ? { toMs } : {}),
      refused: number(ADAPTIVE_PROBE_REFUSED_ATTRIBUTE) === atMs,
    },
  };
}

/**
 * The adaptive rate at `nowMs` (requests per second): the stored rate, plus (when no probe could be
 * given out) one step per whole probe interval after the first since the last change, never above `ceiling` (the rate in force), never below the
 * minimum (unless the ceiling is lower). While a probe is under way, the stored rate: the step waits
 * for the probe's answer. The ceiling without a stored state.
 */
export function adaptiveRateAt(nowMs: number, ceiling: number, state: AdaptiveState | undefined, spec: AdaptiveSpec): number {
  if (state === undefined) {
    return ceiling;
  }
  // Without a probe for a whole interval past the one it was due in (none could be planned: a gap in
  // the schedule, named limits, no room below the ceiling), one step per interval regardless.
  const probes = state.probe !== undefined ? 0 : Math.max(0, Math.floor(Math.max(0, nowMs - state.sinceMs) / spec.probeIntervalMs) - 1);
  const raised = Math.min(ceiling, state.rps + probes * spec.increaseStep);
  return Math.max(Math.min(spec.minimumRequestsPerSecond, ceiling), raised);
}

/** What a reservation does with the adaptive state (rate-controlled-queue-consumer/adaptive-probe.ts). */
export interface AdaptivePlan {
  /** The rate the reservation paces at, requests per second. */
  readonly rps: number;
  /** The rate and its time to write with the reservation, the probe cleared; undefined: none. */
  readonly update?: { readonly rps: number; readonly sinceMs: number };
  /**
   * `plan`: this reservation should plan a probe (when its schedule allows one), writing `update`
   * with it; `place`: the probe planned (`state.probe`) is placed by the reservation whose slots
   * reach it; `none`.
   */
  readonly probe: 'plan' | 'place' | 'none';
}

/**
 * The adaptive side of a reservation at `nowMs`:
 *
 * - a probe placed, once its answer is in (a cooldown after its last slot): passed (no 429
 *   recorded for it) -> one step up; refused (or spoiled) -> the rate stays. Either way the probe is
 *   cleared and the next one goes a probe interval after it (`sinceMs` := its last slot + L');
 * - a probe planned: placed by the reservation whose slots reach its first slot;
 * - no probe, half a probe interval or more since the last change, the rate below the ceiling:
 *   this reservation plans one, whose first slot goes at least a probe interval after the last
 *   change (the climb so far, if any, is written with it);
 * - otherwise the rate as read, nothing written.
 */
export function adaptivePlan(nowMs: number, ceiling: number, state: AdaptiveState | undefined, spec: AdaptiveSpec): AdaptivePlan {
  const rps = adaptiveRateAt(nowMs, ceiling, state, spec);
  if (state === undefined) {
    return { rps, probe: 'none' };
  }
  const elapsedMs = nowMs - state.sinceMs;
  if (state.probe !== undefined) {
    if (state.probe.toMs === undefined) {
      return { rps, probe: 'place' };
    }
    if (nowMs < state.probe.toMs + spec.cooldownMs) {
      return { rps, probe: 'none' };
    }
    // The next probe goes a probe interval after this one's last arrival (`sinceMs`): at most one
    // probe, so one 429, in any probe interval.
    const judged = state.probe.refused ? rps : Math.min(ceiling, rps + spec.increaseStep);
    return { rps: judged, update: { rps: judged, sinceMs: state.probe.toMs }, probe: 'none' };
  }
  if (elapsedMs < spec.probeIntervalMs / 2 || rps >= ceiling) {
    return { rps, probe: 'none' };
  }
  // After a lazy climb (no probe could be planned) the climbed rate is written, and the interval
  // counted as gone, so the probe may go at once.
  const sinceMs = elapsedMs >= 2 * spec.probeIntervalMs ? nowMs - spec.probeIntervalMs : state.sinceMs;
  return { rps, update: { rps, sinceMs }, probe: 'plan' };
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
