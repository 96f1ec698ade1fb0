/**
 * Per-key limits (issue 15; design: docs/design/per-key-limits.md): what each key (customer,
 * tenant) of the vendor may use, as the handlers see it at run time. The deploy-time defaults come
 * from `VendorContract.of({ perKey: KeyLimits.of({...}) })` through the `KEY_LIMITS` environment
 * variable; operators override them per key at run time in the key settings table (one item per
 * key). Only the dispatchers read the settings; they hand each key's limits in force to the
 * workflows in the execution input (`keyLimits`), so the vendor callers never read the table.
 *
 * Where each key's state lives (the pacer table, `pk` string; the key is the LAST component of
 * every partition key, so a key containing `#` cannot be taken for another):
 * - `key-pacer#<key>`: the key's last reserved slot, its own vendor pause, set-aside cursors;
 * - `key-places#<key>`: the key's jobs in flight (same shape as the contract's `job-places`);
 * - `key-quota#<name>#<periodStartMs>#<key>`: the key's units spent of a quota in a period.
 *
 * Plain code only: no AWS SDK or aws-cdk-lib imports (bundled into several handlers).
 */

/** The priorities a request may carry, highest first. */
export type RequestPriority = 'high' | 'normal' | 'low';

/** Every priority, highest first (the order the dispatcher serves them in). */
export const REQUEST_PRIORITIES: readonly RequestPriority[] = ['high', 'normal', 'low'];

/** One key's limits in force: the deploy defaults, with the key's valid overrides applied and capped at the contract. */
export interface KeyLimitsSpec {
  /** The most requests per second of this key (at most the contract's). */
  readonly requestsPerSecond: number;
  /** The most of this key's jobs in flight at once (at most the contract's); absent: no per-key limit. */
  readonly maxJobsInFlight?: number;
  /** Per quota name (a quota of the contract, same period): the most units this key may spend per period. */
  readonly quotas: Readonly<Record<string, number>>;
  /** After how long a waiting request rises one priority level (aging: bounds the wait of low priority). */
  readonly priorityAgingMs: number;
  /** An operator paused this key: its requests wait (set aside), nothing of it reaches the vendor. */
  readonly paused: boolean;
}

/** Environment variable with the deploy-time defaults (JSON of a `KeyLimitsSpec`); absent: no per-key limits. */
export const KEY_LIMITS_ENV = 'KEY_LIMITS';

/** Environment variable with the name of the key settings table (per-key overrides). */
export const KEY_SETTINGS_TABLE_ENV = 'KEY_SETTINGS_TABLE_NAME';

/**
 * Environment variable with how long a key's settings are cached, in milliseconds (default 30 s).
 * Never set by the constructs: the local fault suite lowers it to see a key's changed limits
 * applied within a test.
 */
export const KEY_SETTINGS_CACHE_TTL_ENV = 'KEY_SETTINGS_CACHE_TTL_MS';

/**
 * The execution input field (both workflows, and the vendor caller's event) that carries the
 * request's key limits in force, as the dispatcher resolved them; null without per-key limits.
 */
export const KEY_LIMITS_INPUT_FIELD = 'keyLimits';

/** Where the dispatcher gets the limits in force of the keys of a batch (cached; never throws: a read failure falls back to the defaults). */
export interface KeyLimitsSource {
  limitsFor(keys: readonly string[]): Promise<Map<string, KeyLimitsSpec>>;
}

/** Partition key of a key's pacing item (last slot, own pause, set-aside cursors). */
export function keyPacerItemKey(key: string): string {
  return `key-pacer#${key}`;
}

/** Partition key of a key's jobs-in-flight item. */
export function keyPlacesItemKey(key: string): string {
  return `key-places#${key}`;
}

/** Partition key of a key's counter of a quota in the period starting at `periodStartMs`. */
export function keyQuotaItemKey(quotaName: string, periodStartMs: number, key: string): string {
  return `key-quota#${quotaName}#${periodStartMs}#${key}`;
}
