/**
 * Places of the vendor's jobs in flight (`VendorContract.maxJobsInFlight`): at most N jobs between
 * their submission call and their end as the vendor sees it (the job's callback, a documented
 * cancel, or the contract's `maxJobDuration`). Bundled into the dispatcher (takes places) and the
 * callback processor (frees them); the construct library never imports this module.
 *
 * ## One item, single conditional writes (no transactions)
 *
 * The pacer table's item `pk = 'job-places'` holds `places`, a map `<place key> -> expiresAtMs`,
 * and `placesHeld`, the number of entries (kept in the same writes, so it never disagrees with the
 * map; it is what the condition compares and what the JobsInFlight gauge reports). Every change is
 * ONE UpdateItem on that item, atomic by itself, so no TransactWriteItems is needed (dynalite, the
 * local runtime's DynamoDB, has none):
 *
 * - take:    `SET places.#k = :exp ADD placesHeld 1`
 *            if `attribute_exists(places) AND placesHeld < :n AND attribute_not_exists(places.#k)`;
 * - release: `REMOVE places.#k ADD placesHeld -1` if `attribute_exists(places.#k)`;
 * - expire:  the same, if `places.#k = :exp` (the very entry that was seen expired).
 *
 * A take that finds the place already held by the same request does not count it twice (the
 * condition fails and a consistent read shows it held); a release of a place that is not held
 * changes nothing. Both are therefore idempotent, which is what crashes and redeliveries need.
 * Expressions: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.OperatorsAndFunctions.html
 * (nested map paths, attribute_exists / attribute_not_exists on them) and
 * https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.UpdateExpressions.html
 * (SET on a map entry needs the map to exist: the item is created with an empty map first).
 *
 * ## Size
 *
 * An item holds at most 400 KB (names and values,
 * https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html). A request
 * id may be up to 2 KB (the correlation table's partition key), so the map is keyed by a 22-character
 * digest of the request id (SHA-256, first 128 bits, base64url), not by the id: an entry is then at
 * most about 50 bytes and `MAX_JOBS_IN_FLIGHT` (5000) entries stay under 250 KB.
 *
 * ## Expiry
 *
 * A place expires `maxJobDuration` plus `SUBMISSION_WINDOW_MS` after it was taken or last renewed
 * (each admission of a request that already holds it renews it): the submission follows the
 * admission within the dispatch workflow's run (an Express workflow runs at most 5 minutes), and the
 * vendor is assumed to end a job within `maxJobDuration` of its submission. Expired entries are dropped by the dispatcher when
 * the limit is reached (one conditional REMOVE per expired entry, then the take is tried again) and
 * by the once-a-minute sweep (`dropExpiredPlaces`, job-places-sweep.ts), which then wakes waiters
 * for them (shared/job-waiting.ts). A place is only ever dropped once it expired: never sooner.
 */
import { createHash } from 'crypto';
import { type AttributeValue, type DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';

/** Partition key value of the places item in the pacer table (key attribute `pk`). */
export const JOB_PLACES_ITEM_KEY = 'job-places';
/** Map attribute: place key -> expiry, epoch ms (N). */
export const PLACES_ATTRIBUTE = 'places';
/** Number attribute: entries in `places`. */
export const PLACES_HELD_ATTRIBUTE = 'placesHeld';
/**
 * Longest time from a request's admission (its place taken or renewed) to its submission: the
 * dispatch workflow is an Express workflow, which runs at most 5 minutes
 * (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html). Added to every expiry.
 */
export const SUBMISSION_WINDOW_MS = 5 * 60_000;
/** Largest `maxJobsInFlight` the one item can hold (see "Size"). Mirrored by VendorContract's validation. */
export const MAX_JOBS_IN_FLIGHT = 5000;

/** The pacer table's TTL attribute (pacer.ts PACER_TTL_ATTRIBUTE; not imported: this module is bundled without the pacer). */
const TTL_ATTRIBUTE = 'expiresAt';
const NAMES = { '#places': PLACES_ATTRIBUTE, '#held': PLACES_HELD_ATTRIBUTE };
/** Lost races (another invocation changed the item between our read and our write) before giving up. */
const MAX_TAKE_ROUNDS = 5;

/**
 * The key of a request's place in the map: a fixed-size digest of its request id, and of `owner`
 * when given. Two orchestrators sharing one contract state (VendorContractState) hold their places
 * in the one item, and their request ids are theirs to choose (`submitJobTask({ requestId })`): the
 * same id in both (e.g. one order sent to the old and the new stack of a blue/green deploy) is two
 * jobs at the vendor, so a place is keyed by its orchestrator too. Without `owner` (an orchestrator
 * with its own state) the key is the request id's digest alone, as places taken before sharing
 * existed were keyed.
 */
export function placeKey(requestId: string, owner?: string): string {
  const hash = createHash('sha256');
  if (owner) {
    // A NUL cannot occur in a queue ARN, so no (owner, requestId) pair reads as another.
    hash.update(owner, 'utf8').update('\u0000');
  }
  return hash.update(requestId, 'utf8').digest().subarray(0, 16).toString('base64url');
}

export interface JobPlacesTable {
  readonly dynamodb: DynamoDBClient;
  /** The pacer table. */
  readonly tableName: string;
  /**
   * This orchestrator's key in a shared contract state (`SHARED_STATE_OWNER`: its request queue's
   * ARN), which keys its places apart from the other orchestrators'.
   *
   * @default - none: the table is this orchestrator's own
   */
  readonly owner?: string;
  /**
   * The partition key of the places item. Per-key places (issue 15, design
   * docs/design/per-key-limits.md 1.4) use the same writes on a key's own item, `key-places#<key>`
   * (shared/key-limits.ts `keyPlacesItemKey`).
   *
   * @default JOB_PLACES_ITEM_KEY (the contract's places)
   */
  readonly itemKey?: string;
  /**
   * The item expires (the pacer table's TTL) this long after the latest take or renewal, so that an
   * idle key's item does not stay forever. Must be at least the longest time a place is held
   * (`maxJobDuration` + the submission window): every take and renewal rewrites it from its own
   * `now`, so the item outlives every place in it (a later provisional take never shortens it below
   * an earlier place's expiry, since both count from their own `now` with the same margin).
   *
   * @default - the item never expires (the contract's)
   */
  readonly itemTtlMs?: number;
  /**
   * A number attribute that every removal of a place from this item also raises by one (`ADD`, in
   * the same conditional write, so a release counts exactly when it frees): releases and expired
   * places dropped alike. A key's ticket line (shared/key-places.ts, `servedTicket`) counts its
   * freed places so; the contract's item has none.
   *
   * @default - none
   */
  readonly servedCounter?: string;
  /**
   * One more condition on takes (a request that already holds its place is renewed regardless). A
   * key's ticket line (shared/key-places.ts) uses it so that a new request does not take a place
   * ahead of the requests waiting in the line.
   *
   * @default - none
   */
  readonly takeGuard?: TakeGuard;
}

/** A condition ANDed to a take's, and how to tell from the item read after a refused take that it refused it. */
export interface TakeGuard {
  /** Condition expression; its names in `names`, no values. */
  readonly condition: string;
  readonly names: Record<string, string>;
  /** Whether the item as read refuses the take (then the take's outcome is `full`). */
  readonly refuses: (item: Record<string, AttributeValue>) => boolean;
}

/** The places item's key of `table`. */
function itemKeyOf(table: JobPlacesTable): Record<string, { S: string }> {
  return { pk: { S: table.itemKey ?? JOB_PLACES_ITEM_KEY } };
}

/** `SET` clause and values that renew the item's TTL at `nowMs` (none without `itemTtlMs`). */
function ttlUpdate(table: JobPlacesTable, nowMs: number): { set: string; names: Record<string, string>; values: Record<string, { N: string }> } {
  if (table.itemTtlMs === undefined) {
    return { set: '', names: {}, values: {} };
  }
  return {
    set: ', #ttl = :ttl',
    names: { '#ttl': TTL_ATTRIBUTE },
    values: { ':ttl': { N: String(Math.ceil((nowMs + table.itemTtlMs) / 1000)) } },
  };
}

/**
 * Outcome of a take: `taken` (a new place), `held` (this request already holds one: not counted
 * twice), or `full` (the limit is reached: the request must wait). `placesHeld` is the gauge after
 * the take, when known.
 */
export interface TakeOutcome {
  readonly result: 'taken' | 'held' | 'full';
  readonly placesHeld?: number;
  /** The place's expiry as stored after a `taken` or `held` outcome (what a later conditional renewal or give-back compares). */
  readonly expiresAtMs?: number;
}

/**
 * Takes a place for `requestId`, expiring at `expiresAtMs`, if fewer than `maxJobsInFlight` are
 * held. Expired places found on the way are dropped first. Throws on DynamoDB errors (the caller
 * treats the request as not admitted: nothing is sent without a place).
 */
export async function takePlace(
  table: JobPlacesTable, requestId: string, maxJobsInFlight: number, expiresAtMs: number, nowMs: number,
): Promise<TakeOutcome> {
  const key = placeKey(requestId, table.owner);
  const ttl = ttlUpdate(table, nowMs);
  const guard = table.takeGuard;
  for (let round = 0; round < MAX_TAKE_ROUNDS; round++) {
    try {
      const out = await table.dynamodb.send(new UpdateItemCommand({
        TableName: table.tableName,
        Key: itemKeyOf(table),
        UpdateExpression: `SET #places.#k = :exp${ttl.set} ADD #held :one`,
        ConditionExpression: `attribute_exists(#places) AND #held < :n AND attribute_not_exists(#places.#k)${guard ? ` AND (${guard.condition})` : ''}`,
        ExpressionAttributeNames: { ...NAMES, '#k': key, ...ttl.names, ...guard?.names },
        ExpressionAttributeValues: {
          ':exp': { N: String(Math.ceil(expiresAtMs)) }, ':one': { N: '1' }, ':n': { N: String(maxJobsInFlight) }, ...ttl.values,
        },
        ReturnValues: 'UPDATED_NEW',
      }));
      return { result: 'taken', placesHeld: heldOf(out.Attributes), expiresAtMs: Math.ceil(expiresAtMs) };
    } catch (error) {
      if (!isConditionalCheckFailed(error)) {
        throw error;
      }
    }
    // Why did it fail? A strongly consistent read tells: no item yet, already ours, full.
    const state = await readPlaces(table);
    if (state === undefined) {
      await createPlacesItem(table, nowMs);
      continue;
    }
    const heldUntil = state.places.get(key);
    if (heldUntil !== undefined) {
      // Ours already (a retry, a redelivered copy): renewed, so that it expires `maxJobDuration`
      // after THIS submission. Were it left to expire, another request could drop it and take the
      // place while this one goes on to call the vendor: one job too many.
      const renewed = await renewPlace(table, key, heldUntil, expiresAtMs, nowMs);
      if (renewed !== undefined) {
        return { result: 'held', placesHeld: state.held, expiresAtMs: renewed };
      }
      continue; // dropped (expired) meanwhile: take a place afresh
    }
    if (guard?.refuses(state.item)) {
      return { result: 'full', placesHeld: state.held };
    }
    if (state.held < maxJobsInFlight) {
      continue; // a place was freed (or the item created) since: try again
    }
    const expired = [...state.places].filter(([, exp]) => exp <= nowMs);
    if (expired.length === 0) {
      return { result: 'full', placesHeld: state.held };
    }
    for (const [expiredKey, exp] of expired) {
      await removePlace(table, expiredKey, exp);
    }
  }
  // Lost every race: the limit is busy changing; the request waits like one that found it full.
  return { result: 'full' };
}

/**
 * Renews `requestId`'s place to expire at `expiresAtMs` (never earlier than it does), if it still
 * expires at `heldUntil`: nobody dropped, released or renewed it since. Resolves to the stored
 * expiry, or undefined when the place is no longer as it was (then nothing changed). Per-key places
 * use it to turn a provisional take into a full one once the contract's place is taken.
 */
export async function renewHeldPlace(
  table: JobPlacesTable, requestId: string, heldUntil: number, expiresAtMs: number, nowMs: number,
): Promise<number | undefined> {
  return renewPlace(table, placeKey(requestId, table.owner), heldUntil, expiresAtMs, nowMs);
}

/** Sets a held place's expiry, if it still expires at `heldUntil` (nobody dropped or renewed it since). */
async function renewPlace(table: JobPlacesTable, key: string, heldUntil: number, expiresAtMs: number, nowMs: number): Promise<number | undefined> {
  const ttl = ttlUpdate(table, nowMs);
  const stored = Math.ceil(Math.max(expiresAtMs, heldUntil));
  try {
    await table.dynamodb.send(new UpdateItemCommand({
      TableName: table.tableName,
      Key: itemKeyOf(table),
      UpdateExpression: `SET #places.#k = :exp${ttl.set}`,
      ConditionExpression: '#places.#k = :old',
      ExpressionAttributeNames: { '#places': PLACES_ATTRIBUTE, '#k': key, ...ttl.names },
      ExpressionAttributeValues: { ':exp': { N: String(stored) }, ':old': { N: String(heldUntil) }, ...ttl.values },
    }));
    return stored;
  } catch (error) {
    if (isConditionalCheckFailed(error)) {
      return undefined;
    }
    throw error;
  }
}

/**
 * Frees `requestId`'s place. Idempotent: freeing a place that is not held (already freed, expired,
 * never taken) changes nothing. Resolves to the gauge after the release when it changed, else undefined.
 * With `ifExpiresAtMs`, only the very entry that expires then is freed (a give-back of a provisional
 * take that nobody renewed since).
 */
export async function releasePlace(table: JobPlacesTable, requestId: string, ifExpiresAtMs?: number): Promise<number | undefined> {
  return removePlace(table, placeKey(requestId, table.owner), ifExpiresAtMs);
}

/**
 * Frees `requestId`'s place as {@link releasePlace} does, and resolves to the item as it was before
 * (ReturnValues ALL_OLD: strongly consistent, no read capacity consumed,
 * https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html), or undefined
 * when nothing was freed. The freed place's entry in `old` is its expiry; `placeKey` names it.
 */
export async function releasePlaceReturningOld(
  table: JobPlacesTable, requestId: string,
): Promise<{ readonly held: number; readonly placeKey: string; readonly old: Record<string, AttributeValue> } | undefined> {
  const key = placeKey(requestId, table.owner);
  const out = await removePlaceItem(table, key, undefined, 'ALL_OLD');
  if (out === undefined) {
    return undefined;
  }
  return { held: Math.max(0, (heldOf(out) ?? 1) - 1), placeKey: key, old: out };
}

/**
 * Drops every place expired at `nowMs` (each a conditional REMOVE of the very entry seen expired, so
 * a renewal in between wins). Resolves to the places held afterwards (0 when there is no item yet).
 * The sweep (job-places-sweep.ts) calls it, so that an expired place is freed even while no request
 * asks for one.
 */
export async function dropExpiredPlaces(table: JobPlacesTable, nowMs: number): Promise<number> {
  const state = await readPlaces(table);
  if (state === undefined) {
    return 0;
  }
  let held = state.held;
  for (const [key, exp] of state.places) {
    if (exp <= nowMs) {
      held = (await removePlace(table, key, exp)) ?? held;
    }
  }
  return held;
}

/** Reads the places item (consistent). Undefined when it has no map yet. */
export async function readPlaces(
  table: JobPlacesTable,
): Promise<{ places: Map<string, number>; held: number; item: Record<string, AttributeValue> } | undefined> {
  const out = await table.dynamodb.send(new GetItemCommand({ TableName: table.tableName, Key: itemKeyOf(table), ConsistentRead: true }));
  const map = out.Item?.[PLACES_ATTRIBUTE]?.M;
  if (map === undefined) {
    return undefined;
  }
  const places = new Map(Object.entries(map).map(([k, v]) => [k, Number(v.N)]));
  return { places, held: heldOf(out.Item) ?? places.size, item: out.Item! };
}

async function createPlacesItem(table: JobPlacesTable, nowMs: number): Promise<void> {
  const ttl = ttlUpdate(table, nowMs);
  await table.dynamodb.send(new UpdateItemCommand({
    TableName: table.tableName,
    Key: itemKeyOf(table),
    UpdateExpression: `SET #places = if_not_exists(#places, :empty), #held = if_not_exists(#held, :zero)${ttl.set}`,
    ExpressionAttributeNames: { ...NAMES, ...ttl.names },
    ExpressionAttributeValues: { ':empty': { M: {} }, ':zero': { N: '0' }, ...ttl.values },
  }));
}

/** Removes one entry (only if it still expires at `expiresAtMs`, when given). Undefined when nothing was removed. */
async function removePlace(table: JobPlacesTable, key: string, expiresAtMs?: number): Promise<number | undefined> {
  const attributes = await removePlaceItem(table, key, expiresAtMs, 'UPDATED_NEW');
  return attributes === undefined ? undefined : heldOf(attributes);
}

/** The removal's write; resolves to the returned attributes, or undefined when nothing was removed. */
async function removePlaceItem(
  table: JobPlacesTable, key: string, expiresAtMs: number | undefined, returnValues: 'UPDATED_NEW' | 'ALL_OLD',
): Promise<Record<string, AttributeValue> | undefined> {
  const served = table.servedCounter;
  try {
    const out = await table.dynamodb.send(new UpdateItemCommand({
      TableName: table.tableName,
      Key: itemKeyOf(table),
      UpdateExpression: `REMOVE #places.#k ADD #held :minusOne${served === undefined ? '' : ', #served :one'}`,
      ConditionExpression: expiresAtMs === undefined ? 'attribute_exists(#places.#k)' : '#places.#k = :exp',
      ExpressionAttributeNames: { ...NAMES, '#k': key, ...(served === undefined ? {} : { '#served': served }) },
      ExpressionAttributeValues: {
        ':minusOne': { N: '-1' },
        ...(served === undefined ? {} : { ':one': { N: '1' } }),
        ...(expiresAtMs === undefined ? {} : { ':exp': { N: String(expiresAtMs) } }),
      },
      ReturnValues: returnValues,
    }));
    return out.Attributes ?? {};
  } catch (error) {
    if (isConditionalCheckFailed(error)) {
      return undefined;
    }
    throw error;
  }
}

function heldOf(attributes: Record<string, { N?: string }> | undefined): number | undefined {
  const raw = attributes?.[PLACES_HELD_ATTRIBUTE]?.N;
  return raw === undefined ? undefined : Number(raw);
}

function isConditionalCheckFailed(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'ConditionalCheckFailedException';
}
