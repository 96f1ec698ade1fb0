/**
 * The vendor caller's fresh slot and pause check for a request with per-key limits (issue 15;
 * design docs/design/per-key-limits.md 1.3): the same three steps as the dispatcher's
 * (rate-controlled-queue-consumer/key-schedule.ts) for its one call, with the key's limits from
 * the event (`VendorCallEvent.keyLimits`, resolved by the dispatcher: callers never read the key
 * settings table).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  confirmKeySlots, KeyCursor, keyExternalLimits, readKeyCursor,
} from '../rate-controlled-queue-consumer/key-schedule';
import type { ExternalLimits } from '../rate-controlled-queue-consumer/named-limit-schedule';
import type { KeyLimitsSpec } from '../shared/key-limits';

/** A request subject to its key's limits. */
export interface KeyedRequest {
  readonly message: { readonly key: string };
  readonly keyLimits: KeyLimitsSpec;
}

/** The request's key and limits, when the event carries both (else the call is paced by the contract alone). */
export function keyedRequestOf(event: { readonly key?: unknown; readonly keyLimits?: KeyLimitsSpec | null }): KeyedRequest | undefined {
  return typeof event.key === 'string' && event.keyLimits ? { message: { key: event.key }, keyLimits: event.keyLimits } : undefined;
}

/** What a fresh reservation needs of the key: its external limit, a way to read it again, its cursor as read. */
export interface FreshKeyLimit {
  readonly externalLimits: ExternalLimits;
  readonly rereadExternalLimits: () => Promise<ExternalLimits>;
  readonly cursors: Map<string, KeyCursor>;
}

/** Step 1: reads the key's pacer item (consistent) and makes it `reserveSlots`' external limit. */
export async function readFreshKeyLimit(
  dynamodb: DynamoDBClient, tableName: string, request: KeyedRequest, latenessToleranceMs: number,
): Promise<FreshKeyLimit> {
  const key = request.message.key;
  const cursors = new Map([[key, await readKeyCursor(dynamodb, tableName, key)]]);
  const limitsOf = () => keyExternalLimits([request], cursors, latenessToleranceMs).externalLimits!;
  return {
    externalLimits: limitsOf(),
    rereadExternalLimits: async () => {
      cursors.set(key, await readKeyCursor(dynamodb, tableName, key));
      return limitsOf();
    },
    cursors,
  };
}

/**
 * Steps 3 and 4: writes the fresh slot into the key's item; after a lost write, re-reads and keeps
 * the slot if it still fits. Resolves whether the slot may fire (false: the contract slot is wasted,
 * the caller reserves again).
 */
export async function confirmFreshKeySlot(
  dynamodb: DynamoDBClient, tableName: string, request: KeyedRequest, slot: number, limit: FreshKeyLimit, latenessToleranceMs: number,
): Promise<boolean> {
  const confirmed = await confirmKeySlots({
    dynamodb,
    tableName,
    latenessToleranceMs,
    calls: [request],
    slots: [slot],
    callIndexes: [0],
    cursors: limit.cursors,
    onWriteError: (_key, error) => {
      throw error;
    },
  });
  return confirmed.given.length === 1;
}

/** The key's own vendor pause (consistent read), or undefined. */
export async function readKeyPausedUntil(dynamodb: DynamoDBClient, tableName: string, key: string): Promise<number | undefined> {
  return (await readKeyCursor(dynamodb, tableName, key)).pausedUntilMs;
}
