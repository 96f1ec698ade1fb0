/**
 * Priorities (issue 15, item 4; design: docs/design/per-key-limits.md, section 4). A request may
 * carry `priority: 'high' | 'normal' | 'low'` (absent: normal). Under a backlog the dispatcher
 * serves higher effective priority first, within a key and within the contract. Aging bounds the
 * wait of lower priorities: a request rises one level per `agingMs` since it started
 * (`requestStartedAtMs`, request-start.ts), so a low request is served as high after `2 * agingMs`.
 * Computed from fields every message already has: no state.
 *
 * Plain code only: no AWS SDK or aws-cdk-lib imports (bundled into handlers).
 */
import { REQUEST_PRIORITIES, RequestPriority } from './key-limits';

/** The priority of a request without one. */
export const DEFAULT_REQUEST_PRIORITY: RequestPriority = 'normal';

/** Aging without per-key limits (with them: `KeyLimitsSpec.priorityAgingMs`). */
export const DEFAULT_PRIORITY_AGING_MS = 30_000;

/** The error a waiting task fails with when its request's priority is not one of high, normal, low. Nothing reaches the vendor. */
export const INVALID_REQUEST_PRIORITY = 'InvalidRequestPriority';

/** Whether `value` is a priority. */
export function isRequestPriority(value: unknown): value is RequestPriority {
  return typeof value === 'string' && (REQUEST_PRIORITIES as readonly string[]).includes(value);
}

/** Why `value` is not a valid priority (absent is valid: normal), or undefined. */
export function requestPriorityProblem(value: unknown): string | undefined {
  if (value === undefined || value === null || isRequestPriority(value)) {
    return undefined;
  }
  return `the priority must be one of ${REQUEST_PRIORITIES.map((p) => `'${p}'`).join(', ')} (given ${JSON.stringify(value)})`;
}

/**
 * The rank a request is served by: 0 is served first. Its priority's rank (high 0, normal 1, low 2)
 * less one per whole `agingMs` it has waited since `startedAtMs`, never below 0.
 */
export function effectivePriorityRank(
  priority: RequestPriority | undefined | null, startedAtMs: number | undefined, nowMs: number, agingMs: number,
): number {
  const rank = REQUEST_PRIORITIES.indexOf(priority ?? DEFAULT_REQUEST_PRIORITY);
  if (startedAtMs === undefined || !(agingMs > 0)) {
    return rank;
  }
  const levelsRisen = Math.floor(Math.max(0, nowMs - startedAtMs) / agingMs);
  return Math.max(0, rank - levelsRisen);
}
