/**
 * Per-key rates with the overall contract (issue 15; design: docs/design/per-key-limits.md,
 * section 1.3): a call reaches the vendor only at a slot the contract's schedule gave out (pacer.ts)
 * AND that its key's own schedule accepted, without a transaction.
 *
 * ## The method: contract slot first, then one conditional write per key
 *
 * 1. **Read** the batch's keys' `key-pacer#<key>` items (BatchGetItem, consistent): each key's last
 *    reserved slot `lastSlotAtMs` and its own vendor pause `pausedUntilMs`. The key's next free slot
 *    is `e_k = max(lastSlotAtMs + I_k, pausedUntilMs)`, `I_k = slotIntervalMs(R_k, L)` on the same
 *    1/1024 ms grid as the contract and its named limits.
 * 2. **Contract reservation**: `reserveSlots` as without keys, each key passed to
 *    `assignLimitedSlots` as an external limit (`key:<key>`, interval `I_k`, last slot `e_k - I_k`):
 *    a contract slot goes to a call only when its key has room at it, the assignment stops at the
 *    first candidate nobody can use (a full key never pushes the contract's cursor ahead), and the
 *    key's cursor is NOT written into the contract's item.
 * 3. **Key writes**: one UpdateItem per key that got slots `t_1 < ... < t_n`:
 *    `SET lastSlotAtMs = t_n IF attribute_not_exists(lastSlotAtMs) OR lastSlotAtMs <= t_1 - I_k`
 *    (and no pause of the key after `t_1`). The `<=` form, not `= :read`, lets two reservers of one
 *    key both win when their slots are far enough apart.
 * 4. **A lost key write**: re-read the key's item, keep the slots still `>= newLast + I_k` (and not
 *    inside its pause), write again; offer the others to calls of OTHER keys of the batch whose
 *    key has room at them (each with its own key write); a slot nobody can take is not fired
 *    (`KeySlotsWasted`). A call's execution starts only after its key write succeeded.
 *
 * ## Why no 1-second window over a key or the contract is exceeded
 *
 * - Contract: every call fires at a slot the contract's item gave out; the fired calls are a subset
 *   of the reserved slots, which pacer.ts "Why it holds" spaces `I` apart; a subset keeps that.
 *   A slot handed to another call after a lost key write stays the same contract slot, and goes only
 *   to a call whose named limits are among those of the call it was reserved for (their cursors
 *   already count it).
 * - Key k: a call fires only after a successful key write. Writes to one item are serialized, and a
 *   successful write needs `t_1 >= stored + I_k` where `stored` is the largest slot any earlier
 *   successful write stored (each stores its `t_n`, its largest). So the fired slots of k are
 *   increasing and at least `I_k` apart; points 2 and 3 of pacer.ts with `r_k` give: no closed
 *   window `[a - 1000, a]` holds more than `floor(R_k)` of k's calls, under the same assumption on L.
 * - A crash between the contract write and a key write leaves contract slots reserved and unfired
 *   (capacity lost, never an excess); a crash after the key write, before StartExecution, leaves
 *   both unfired. Duplicates are stopped by the slot claim (pacer.ts `claimSlot`), unchanged.
 *
 * Plain functions with their clients passed in: no module state, so a model can drive them on
 * virtual time (local/bench-sim.ts).
 */
// Bundled into the dispatcher and the vendor caller only; the SDK stays a devDependency.
import { BatchGetItemCommand, type DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import type { ExternalLimits } from './named-limit-schedule';
import { isConditionalCheckFailed, PACER_PARTITION_KEY, PACER_TTL_ATTRIBUTE, pauseItemUntil, slotIntervalMs } from './pacer';
import { keyPacerItemKey, KeyLimitsSpec, REQUEST_PRIORITIES, RequestPriority } from '../shared/key-limits';
import { realSleep, Sleep, UNPROCESSED_RETRY_DELAYS_MS } from '../shared/unprocessed-backoff';

/** The key pacer item's last reserved slot of the key (epoch ms, N). */
export const KEY_LAST_SLOT_ATTRIBUTE = 'lastSlotAtMs';
/** The key pacer item's interval of the reservation that stored the last slot (ms, N). */
export const KEY_INTERVAL_ATTRIBUTE = 'intervalMs';
/** The key pacer item's own vendor pause (epoch ms, N): a 429 with credentials per key. */
export const KEY_PAUSED_UNTIL_ATTRIBUTE = 'pausedUntilMs';
/** A key cursor constrains nothing once older than `I_k`; it is kept a day (TTL) at least. */
const KEY_CURSOR_RETENTION_MS = 24 * 3600 * 1000;
/** BatchGetItem takes at most 100 keys per call (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html). */
const BATCH_GET_MAX_KEYS = 100;
/** How many times a key's slots are re-read and written again after a lost key write. */
const MAX_KEY_WRITE_ATTEMPTS = 3;

/**
 * The key pacer item's advisory plan (key-set-aside.ts): the key's next slot after the slots a
 * dispatcher planned to reserve for the calls it kept (epoch ms, N). Other dispatchers plan after it.
 */
export const KEY_PLANNED_UNTIL_ATTRIBUTE = 'plannedUntilMs';
/** Which dispatcher invocation wrote the plan (a random number): its own plan does not hold it back. */
export const KEY_PLANNED_BY_ATTRIBUTE = 'plannedBy';

/** The key pacer item's advisory set-aside cursor of one priority (key-set-aside.ts). */
export function keyAsideUntilAttribute(priority: RequestPriority): string {
  return `asideUntilMs#${priority}`;
}

/** One key's pacer item as read. */
export interface KeyCursor {
  /** The key's last reserved slot (absent: none, or expired). */
  readonly lastSlotAtMs?: number;
  /** The key's own vendor pause (absent: none). */
  readonly pausedUntilMs?: number;
  /** The advisory set-aside cursors, per priority, as read: value and stored text (conditions compare the text). */
  readonly asideUntil: Partial<Record<RequestPriority, { readonly value: number; readonly raw: string }>>;
  /** The advisory plan of the dispatcher that last kept calls of the key (absent: none). */
  readonly plannedUntil?: { readonly value: number; readonly raw: string };
  /** Who wrote that plan (`KEY_PLANNED_BY_ATTRIBUTE`). */
  readonly plannedBy?: number;
}

/** The external limit of a key in the contract's slot assignment (named limits cannot contain ':'). */
export function keyLimitName(key: string): string {
  return `key:${key}`;
}

/** A key's slot interval `I_k`: the contract's formula at the key's rate (pacer.ts `slotIntervalMs`). */
export function keyIntervalMs(limits: Pick<KeyLimitsSpec, 'requestsPerSecond'>, latenessToleranceMs: number): number {
  return slotIntervalMs(limits.requestsPerSecond, latenessToleranceMs);
}

/** The key's next free slot `e_k = max(last + I_k, pause)`; -Infinity when nothing constrains it. */
export function keyNextFreeMs(cursor: KeyCursor | undefined, intervalMs: number): number {
  const afterLast = cursor?.lastSlotAtMs === undefined ? -Infinity : cursor.lastSlotAtMs + intervalMs;
  return Math.max(afterLast, cursor?.pausedUntilMs ?? -Infinity);
}

/**
 * Reads the `key-pacer` items of `keys` (BatchGetItem, consistent: a stale cursor would only cost a
 * lost key write). A key without an item maps to an empty cursor. Throws when DynamoDB fails or
 * leaves keys unprocessed after a few rounds, each after an exponential backoff (unprocessed-backoff.ts).
 */
export async function readKeyCursors(
  dynamodb: DynamoDBClient, tableName: string, keys: readonly string[], sleep: Sleep = realSleep,
): Promise<Map<string, KeyCursor>> {
  const cursors = new Map<string, KeyCursor>();
  const distinct = [...new Set(keys)];
  for (let i = 0; i < distinct.length; i += BATCH_GET_MAX_KEYS) {
    let wanted: Record<string, { S: string }>[] = distinct.slice(i, i + BATCH_GET_MAX_KEYS)
      .map((key) => ({ [PACER_PARTITION_KEY]: { S: keyPacerItemKey(key) } }));
    for (let round = 1; wanted.length > 0; round++) {
      if (round > UNPROCESSED_RETRY_DELAYS_MS.length + 1) {
        throw new Error(`reading ${wanted.length} key pacer items from ${tableName}: still unprocessed after ${round - 1} BatchGetItem calls`);
      }
      if (round > 1) {
        await sleep(UNPROCESSED_RETRY_DELAYS_MS[round - 2]);
      }
      const output = await dynamodb.send(new BatchGetItemCommand({
        RequestItems: { [tableName]: { Keys: wanted, ConsistentRead: true } },
      }));
      for (const item of output?.Responses?.[tableName] ?? []) {
        const pk = item[PACER_PARTITION_KEY]?.S;
        if (pk !== undefined) {
          cursors.set(pk, parseKeyCursor(item));
        }
      }
      wanted = (output?.UnprocessedKeys?.[tableName]?.Keys ?? []) as Record<string, { S: string }>[];
    }
  }
  return new Map(distinct.map((key) => [key, cursors.get(keyPacerItemKey(key)) ?? { asideUntil: {} }]));
}

/** Reads one key's pacer item (consistent): after a lost key write, and the vendor caller's pause check. */
export async function readKeyCursor(dynamodb: DynamoDBClient, tableName: string, key: string): Promise<KeyCursor> {
  const output = await dynamodb.send(new GetItemCommand({
    TableName: tableName,
    Key: { [PACER_PARTITION_KEY]: { S: keyPacerItemKey(key) } },
    ConsistentRead: true,
  }));
  return output?.Item ? parseKeyCursor(output.Item) : { asideUntil: {} };
}

function parseKeyCursor(item: Record<string, { N?: string }>): KeyCursor {
  const number = (name: string) => {
    const raw = item[name]?.N;
    if (raw === undefined) {
      return undefined;
    }
    const value = Number(raw);
    if (!Number.isFinite(value)) {
      throw new Error(`key pacer item attribute ${name} is not a number: ${JSON.stringify(item[name])}`);
    }
    return { value, raw };
  };
  const asideUntil: Partial<Record<RequestPriority, { value: number; raw: string }>> = {};
  for (const priority of REQUEST_PRIORITIES) {
    const aside = number(keyAsideUntilAttribute(priority));
    if (aside) {
      asideUntil[priority] = aside;
    }
  }
  const last = number(KEY_LAST_SLOT_ATTRIBUTE)?.value;
  const paused = number(KEY_PAUSED_UNTIL_ATTRIBUTE)?.value;
  const planned = number(KEY_PLANNED_UNTIL_ATTRIBUTE);
  const plannedBy = number(KEY_PLANNED_BY_ATTRIBUTE)?.value;
  return {
    ...(last !== undefined ? { lastSlotAtMs: last } : {}),
    ...(paused !== undefined ? { pausedUntilMs: paused } : {}),
    asideUntil,
    ...(planned ? { plannedUntil: planned } : {}),
    ...(plannedBy !== undefined ? { plannedBy } : {}),
  };
}

/** What the key schedule needs of a waiting call: its key and that key's limits in force (absent: not per-key limited). */
export interface KeyedCall {
  readonly message: { readonly key?: string };
  readonly keyLimits?: KeyLimitsSpec;
}

/** The key a call is limited by, or undefined (no key, or no per-key limits). */
export function limitedKeyOf(call: KeyedCall): string | undefined {
  return call.keyLimits !== undefined ? call.message.key : undefined;
}

/**
 * The calls in round-robin order by key (first of each key in order of first appearance, then the
 * second of each, ...), each key's calls in their given order; calls without a key limit each count
 * as their own key. So one key's many messages do not take all early contract slots. With `rankOf`
 * (effective priority, calls given in rank order: priority-order.ts), each run of equal rank is
 * interleaved on its own: priority first, then turns by key (design section 4).
 */
export function interleaveByKey<T extends KeyedCall>(calls: readonly T[], rankOf?: (call: T) => number): T[] {
  if (rankOf) {
    const runs: T[][] = [];
    let previous: number | undefined;
    for (const call of calls) {
      const rank = rankOf(call);
      if (runs.length === 0 || rank !== previous) {
        runs.push([]);
      }
      runs[runs.length - 1].push(call);
      previous = rank;
    }
    return runs.flatMap((run) => interleaveByKey(run));
  }
  const groups: T[][] = [];
  const byKey = new Map<string, T[]>();
  for (const call of calls) {
    const key = limitedKeyOf(call);
    const group = key === undefined ? undefined : byKey.get(key);
    if (group) {
      group.push(call);
    } else {
      const created = [call];
      groups.push(created);
      if (key !== undefined) {
        byKey.set(key, created);
      }
    }
  }
  const rounds = Math.max(0, ...groups.map((group) => group.length));
  const out: T[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const group of groups) {
      if (round < group.length) {
        out.push(group[round]);
      }
    }
  }
  return out;
}

/**
 * `reserveSlots`' `externalLimits` for the waiting calls: each key limited call is subject to its
 * key's limit (interval `I_k`, last slot `e_k - I_k`, so that its next free slot is `e_k`). Nothing
 * when no call is key limited (the reservation is then exactly the one without keys).
 */
export function keyExternalLimits(
  calls: readonly KeyedCall[], cursors: ReadonlyMap<string, KeyCursor>, latenessToleranceMs: number,
): { readonly externalLimits?: ExternalLimits } {
  const limits: Record<string, { intervalMs: number; lastSlotMs?: number }> = {};
  const callLimits = calls.map((call) => {
    const key = limitedKeyOf(call);
    if (key === undefined) {
      return [];
    }
    const name = keyLimitName(key);
    if (limits[name] === undefined) {
      const intervalMs = keyIntervalMs(call.keyLimits!, latenessToleranceMs);
      const nextFree = keyNextFreeMs(cursors.get(key), intervalMs);
      limits[name] = Number.isFinite(nextFree) ? { intervalMs, lastSlotMs: nextFree - intervalMs } : { intervalMs };
    }
    return [name];
  });
  return Object.keys(limits).length === 0 ? {} : { externalLimits: { limits, callLimits } };
}

/**
 * Writes one key's slots `t_1 < ... < t_n` (ascending, at least `I_k` apart) into its pacer item:
 * `SET lastSlotAtMs = t_n` if the stored last slot is at most `t_1 - I_k` and no pause of the key
 * ends after `t_1`. Resolves false when that condition failed (another reserver of the key was
 * first, or the key was paused). Throws on any other error.
 */
export async function writeKeySlots(
  dynamodb: DynamoDBClient, tableName: string, key: string, intervalMs: number, slots: readonly number[],
): Promise<boolean> {
  const first = slots[0];
  const last = slots[slots.length - 1];
  try {
    await dynamodb.send(new UpdateItemCommand({
      TableName: tableName,
      Key: { [PACER_PARTITION_KEY]: { S: keyPacerItemKey(key) } },
      // The interval goes with the last slot (design 1.2); the TTL drops a cursor that constrains nothing.
      UpdateExpression: 'SET #last = :last, #interval = :interval, #ttl = :ttl',
      // `<=`, not `= :read`: another reserver's slots far enough before ours do not make ours lose.
      ConditionExpression: '(attribute_not_exists(#last) OR #last <= :room) AND (attribute_not_exists(#paused) OR #paused <= :first)',
      ExpressionAttributeNames: { '#last': KEY_LAST_SLOT_ATTRIBUTE, '#interval': KEY_INTERVAL_ATTRIBUTE, '#ttl': PACER_TTL_ATTRIBUTE, '#paused': KEY_PAUSED_UNTIL_ATTRIBUTE },
      ExpressionAttributeValues: {
        ':last': { N: String(last) },
        ':interval': { N: String(intervalMs) },
        ':ttl': { N: String(Math.ceil((last + Math.max(intervalMs, KEY_CURSOR_RETENTION_MS)) / 1000)) },
        // Both on the 1/1024 ms grid: the difference is exact.
        ':room': { N: String(first - intervalMs) },
        ':first': { N: String(first) },
      },
    }));
    return true;
  } catch (error) {
    if (isConditionalCheckFailed(error)) {
      return false;
    }
    throw error;
  }
}

/** Arguments of {@link confirmKeySlots}. */
export interface ConfirmKeySlotsOptions<T extends KeyedCall> {
  readonly dynamodb: DynamoDBClient;
  readonly tableName: string;
  readonly latenessToleranceMs: number;
  /** The waiting calls the contract reservation was made for (its `callIndexes` point into them). */
  readonly calls: readonly T[];
  /** The contract reservation's slots, ascending. */
  readonly slots: readonly number[];
  /** For each slot, the index into `calls` of the call it was given to. */
  readonly callIndexes: readonly number[];
  /** The keys' items as read before the reservation. */
  readonly cursors: ReadonlyMap<string, KeyCursor>;
  /** The named limits each call is subject to: a slot is handed on only within them. Default: none. */
  readonly namedLimitsOf?: (call: T) => readonly string[];
  /** Told about a key write that failed on an error other than its condition (the key's calls then do not fire). */
  readonly onWriteError?: (key: string, error: unknown) => void;
}

/** Result of {@link confirmKeySlots}. */
export interface ConfirmedKeySlots<T> {
  /** The slots that may fire, each with its call, ascending. Calls not here did not get a slot. */
  readonly given: { readonly slot: number; readonly item: T }[];
  /** Contract slots reserved that no call may fire (the `KeySlotsWasted` metric). */
  readonly wasted: number;
  /** Key writes that lost their condition (before the re-read). */
  readonly lostWrites: number;
}

/**
 * Steps 3 and 4 of the module comment: writes each key's slots, re-reads and keeps what still fits
 * after a lost write, hands dropped slots to calls of other keys whose key has room (each with its
 * own key write), and returns only slots whose key write succeeded.
 */
export async function confirmKeySlots<T extends KeyedCall>(options: ConfirmKeySlotsOptions<T>): Promise<ConfirmedKeySlots<T>> {
  const { calls, latenessToleranceMs } = options;
  const given: { slot: number; item: T }[] = [];
  const intervalOf = new Map<string, number>();
  // What each key's stored last slot is known to be at least, and its pause, as far as this reservation knows.
  const lastKnown = new Map<string, number>();
  const pausedOf = new Map<string, number>();
  for (const call of calls) {
    const key = limitedKeyOf(call);
    if (key !== undefined && !intervalOf.has(key)) {
      intervalOf.set(key, keyIntervalMs(call.keyLimits!, latenessToleranceMs));
      const cursor = options.cursors.get(key);
      if (cursor?.lastSlotAtMs !== undefined) {
        lastKnown.set(key, cursor.lastSlotAtMs);
      }
      if (cursor?.pausedUntilMs !== undefined) {
        pausedOf.set(key, cursor.pausedUntilMs);
      }
    }
  }
  const byKey = new Map<string, { slot: number; index: number }[]>();
  options.slots.forEach((slot, k) => {
    const index = options.callIndexes[k] ?? k;
    const key = limitedKeyOf(calls[index]);
    if (key === undefined) {
      given.push({ slot, item: calls[index] });
    } else {
      (byKey.get(key) ?? byKey.set(key, []).get(key)!).push({ slot, index });
    }
  });

  let lostWrites = 0;
  let wasted = 0;
  const dropped: { slot: number; index: number }[] = [];
  const givenIndexes = new Set<number>(options.slots.map((_, k) => options.callIndexes[k] ?? k).filter((i) => limitedKeyOf(calls[i]) === undefined));
  await Promise.all([...byKey].map(async ([key, assigned]) => {
    const intervalMs = intervalOf.get(key)!;
    let keep = [...assigned].sort((a, b) => a.slot - b.slot);
    for (let attempt = 1; keep.length > 0; attempt++) {
      let written: boolean;
      try {
        written = await writeKeySlots(options.dynamodb, options.tableName, key, intervalMs, keep.map((a) => a.slot));
      } catch (error) {
        // Unknown outcome (or the invocation dies): none of these calls fires. Their contract slots are lost.
        options.onWriteError?.(key, error);
        wasted += keep.length;
        return;
      }
      if (written) {
        lastKnown.set(key, keep[keep.length - 1].slot);
        for (const a of keep) {
          given.push({ slot: a.slot, item: calls[a.index] });
          givenIndexes.add(a.index);
        }
        return;
      }
      lostWrites++;
      if (attempt >= MAX_KEY_WRITE_ATTEMPTS) {
        dropped.push(...keep);
        return;
      }
      // Another reserver of this key was first: keep what still fits after what it stored.
      let cursor: KeyCursor;
      try {
        cursor = await readKeyCursor(options.dynamodb, options.tableName, key);
      } catch (error) {
        options.onWriteError?.(key, error);
        dropped.push(...keep);
        return;
      }
      if (cursor.lastSlotAtMs !== undefined) {
        lastKnown.set(key, cursor.lastSlotAtMs);
      }
      if (cursor.pausedUntilMs !== undefined) {
        pausedOf.set(key, cursor.pausedUntilMs);
      }
      const nextFree = keyNextFreeMs(cursor, intervalMs);
      dropped.push(...keep.filter((a) => a.slot < nextFree));
      keep = keep.filter((a) => a.slot >= nextFree);
    }
  }));

  // Dropped slots go to calls of other keys of the batch whose key has room there.
  if (dropped.length > 0) {
    const namedOf = (index: number) => options.namedLimitsOf?.(calls[index]) ?? [];
    const handed = new Map<string, { slot: number; index: number }[]>();
    const tentativeLast = new Map(lastKnown);
    const taken = new Set(givenIndexes);
    for (const drop of dropped.sort((a, b) => a.slot - b.slot)) {
      const fromKey = limitedKeyOf(calls[drop.index]);
      const allowed = new Set(namedOf(drop.index));
      const to = calls.findIndex((call, index) => {
        if (taken.has(index) || !namedOf(index).every((name) => allowed.has(name))) {
          return false;
        }
        const key = limitedKeyOf(call);
        if (key === undefined) {
          return true;
        }
        const last = tentativeLast.get(key);
        return key !== fromKey
          && (last === undefined || last + intervalOf.get(key)! <= drop.slot)
          && (pausedOf.get(key) ?? -Infinity) <= drop.slot;
      });
      if (to < 0) {
        wasted++;
        continue;
      }
      taken.add(to);
      const key = limitedKeyOf(calls[to]);
      if (key === undefined) {
        given.push({ slot: drop.slot, item: calls[to] });
        continue;
      }
      tentativeLast.set(key, drop.slot);
      (handed.get(key) ?? handed.set(key, []).get(key)!).push({ slot: drop.slot, index: to });
    }
    await Promise.all([...handed].map(async ([key, assigned]) => {
      let written = false;
      try {
        written = await writeKeySlots(options.dynamodb, options.tableName, key, intervalOf.get(key)!, assigned.map((a) => a.slot));
        lostWrites += written ? 0 : 1;
      } catch (error) {
        options.onWriteError?.(key, error);
      }
      if (!written) {
        // One try only (bounded work per batch): these slots are not fired.
        wasted += assigned.length;
        return;
      }
      for (const a of assigned) {
        given.push({ slot: a.slot, item: calls[a.index] });
      }
    }));
  }
  given.sort((a, b) => a.slot - b.slot);
  return { given, wasted, lostWrites };
}

/**
 * Pauses one key until `requestedUntilMs` rounded up to the slot grid (a vendor 429 with credentials
 * per key: that key's account is throttled, not the contract). The pause only moves forward, as the
 * contract's (pacer.ts `pauseUntil`). Resolves to the key's pause in force.
 */
export async function pauseKeyUntil(dynamodb: DynamoDBClient, tableName: string, key: string, requestedUntilMs: number): Promise<number> {
  return pauseItemUntil(dynamodb, tableName, keyPacerItemKey(key), KEY_PAUSED_UNTIL_ATTRIBUTE, requestedUntilMs,
    async () => (await readKeyCursor(dynamodb, tableName, key)).pausedUntilMs);
}
