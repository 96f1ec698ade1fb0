/**
 * The dispatcher's pre-check of per-key quotas (issue 15; design docs/design/per-key-limits.md
 * 1.5): the requests of a key out of its own quota for the period are set aside until the period
 * ends (delayed copies, capped at SQS' 15 minutes: such a request returns every 15 minutes until
 * then), reserving no slot, taking no place; the batch's other keys go on. Requests that may not
 * wait (`whenQuotaExhausted` FAIL, or a period ending after their deadline) go on too: the vendor
 * caller fails them at once with VendorQuotaExhausted. The vendor caller's conditional write
 * (key-quota-ledger.ts) stays the guarantee; this check only spares slots and executions.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { splitByQuotaWait } from './request-start';
import { keyQuotaSpecs } from '../contract/key-quota-ledger';
import { keyQuotasSpentUntil } from '../contract/quota-ledger';
import type { QuotaSpec } from '../contract/quota-period';
import type { KeyLimitsSpec } from '../shared/key-limits';
import type { AnyRequestMessage } from '../shared/messages';

export interface KeyQuotaCheck {
  readonly dynamodb: DynamoDBClient;
  readonly pacerTableName: string;
  /** The contract's quotas (a key's quotas are some of them, with the key's limits). */
  readonly quotas?: readonly QuotaSpec[];
  readonly whenQuotaExhausted?: 'WAIT' | 'FAIL';
  readonly quotaMaxWaitMs?: number;
  readonly nowMs: number;
  readonly logger: { info(message: string, ...extra: unknown[]): void; warn(message: string, ...extra: unknown[]): void };
}

export interface KeyQuotaSplit<T> {
  /** Per key out of quota: its requests that wait, and until when. */
  readonly aside: { readonly key: string; readonly items: T[]; readonly untilMs: number }[];
  /** Everything else, in order. */
  readonly goOn: T[];
}

/**
 * Splits `items` by their keys' quotas (one eventually consistent BatchGetItem for the batch's
 * keys' counters). A failed read sets nothing aside: the vendor caller keeps the quotas.
 */
export async function splitByKeyQuota<T extends { readonly message: AnyRequestMessage; readonly keyLimits?: KeyLimitsSpec }>(
  items: readonly T[], check: KeyQuotaCheck,
): Promise<KeyQuotaSplit<T>> {
  const quotasByKey = new Map<string, QuotaSpec[]>();
  for (const item of items) {
    const key = item.message.key;
    if (typeof key === 'string' && !quotasByKey.has(key)) {
      const quotas = keyQuotaSpecs(check.quotas, item.keyLimits);
      if (quotas.length > 0) {
        quotasByKey.set(key, quotas);
      }
    }
  }
  if (quotasByKey.size === 0) {
    return { aside: [], goOn: [...items] };
  }
  let spentUntil: Map<string, number>;
  try {
    spentUntil = await keyQuotasSpentUntil(check.dynamodb, check.pacerTableName, quotasByKey, check.nowMs);
  } catch (error) {
    check.logger.warn('could not read the keys\' quota counters; dispatching (the vendor caller keeps the quotas)', { error: (error as Error).message });
    return { aside: [], goOn: [...items] };
  }
  if (spentUntil.size === 0) {
    return { aside: [], goOn: [...items] };
  }
  const aside: KeyQuotaSplit<T>['aside'] = [];
  const waiting = new Set<T>();
  for (const [key, untilMs] of spentUntil) {
    const { wait } = splitByQuotaWait(items.filter((item) => item.message.key === key), untilMs, check);
    if (wait.length > 0) {
      aside.push({ key, items: wait, untilMs });
      wait.forEach((item) => waiting.add(item));
    }
  }
  if (aside.length > 0) {
    check.logger.info('keys out of their own quota: their requests are set aside until their period ends, without pacing slots', {
      keys: aside.slice(0, 20).map(({ key, items: keyItems, untilMs }) => ({ key, requests: keyItems.length, untilMs })),
    });
  }
  return { aside, goOn: items.filter((item) => !waiting.has(item)) };
}
