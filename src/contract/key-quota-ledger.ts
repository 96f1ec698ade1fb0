/**
 * Per-key quotas (issue 15; design docs/design/per-key-limits.md 1.5): a key's units of a contract
 * quota, spent with exactly the contract's ledger (quota-ledger.ts `spendQuotaUnits`: one
 * conditional counter per quota and period, the same boundary guard, never refunded) on the key's
 * own counter `key-quota#<name>#<periodStartMs>#<key>` (shared/key-limits.ts), with the key's limit
 * (`KeyLimitsSpec.quotas[name]`, a quota of the contract with the same period).
 *
 * The vendor caller spends the key's units FIRST, then the contract's: a key out of its quota then
 * never spends a contract unit (a spent-then-refused unit is never refunded, so the over-count falls
 * on the key that caused it, never on the other keys). The dispatcher's pre-check reads the batch's
 * keys' counters (quota-ledger.ts `keyQuotasSpentUntil`) and sets the requests of a key out of quota aside
 * until its period ends; the vendor caller's conditional write stays the guarantee.
 *
 * Plain code (no SDK: the reads and writes are quota-ledger.ts'); bundled into the dispatcher and
 * the vendor caller.
 */
import type { QuotaCounterKey } from './quota-ledger';
import type { QuotaPeriod, QuotaSpec } from './quota-period';
import { keyQuotaItemKey, type KeyLimitsSpec } from '../shared/key-limits';

/**
 * The key's quotas in force: each contract quota its limits name, with the key's limit (same
 * name, unit, period and time zone, so the key's periods are the contract's). A name the contract
 * does not have is ignored (the settings are checked when read; a counter of a period the contract
 * does not know would bind nothing it promised).
 */
export function keyQuotaSpecs(contractQuotas: readonly QuotaSpec[] | undefined, keyLimits: KeyLimitsSpec | null | undefined): QuotaSpec[] {
  const limits = keyLimits?.quotas ?? {};
  return (contractQuotas ?? []).flatMap((quota) => {
    const limit = limits[quota.name];
    return typeof limit === 'number' && Number.isFinite(limit) && limit >= 0 ? [{ ...quota, limit }] : [];
  });
}

/** Where `key`'s counters live (spendQuotaUnits' `counterKey`). */
export function keyQuotaCounterKey(key: string): QuotaCounterKey {
  return (name: string, period: QuotaPeriod) => keyQuotaItemKey(name, period.startMs, key);
}
