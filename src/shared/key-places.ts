/**
 * Per-key jobs in flight (issue 15; design docs/design/per-key-limits.md 1.4): at most
 * `maxJobsInFlight_k` jobs of one key between their submission and their end, beside the
 * contract's `maxJobsInFlight` across all keys. Bundled into the dispatcher (takes places) and the
 * freers (callback processor, vendor caller); the construct library never imports this module.
 *
 * ## Two items, no transaction
 *
 * A key's places live in their own item, `key-places#<key>` (shared/key-limits.ts), written with
 * exactly the contract's single conditional writes (job-places.ts, same map keyed by the request's
 * digest, same condition, same idempotent release): only the item key differs. A submission takes
 *
 * 1. the key's place, with a PROVISIONAL expiry (`now + PROVISIONAL_KEY_PLACE_MS`);
 * 2. then the contract's place (`takePlace`, unchanged);
 * 3. contract full: gives the key's place back (only the very provisional entry it wrote), and the
 *    request waits for a contract place as today (waiting room);
 * 4. contract place held: renews the key's place to the full expiry (`maxJobDuration` + the
 *    submission window), conditional on the provisional entry still being there.
 *
 * Key first, because a key at its own limit then never writes the contract's item, the scarce one
 * (the whole map is billed per write). A crash between 1 and 4 holds a key place for at most the
 * provisional minute (expired entries are dropped by the next take that finds the key full), never
 * a contract place without a key place (a renewal that finds the provisional entry gone takes the
 * key's place again, or gives the contract's back). So each item holds the `job-places.ts` guarantee by itself,
 * and a submission is sent only while it holds both: at most `maxJobsInFlight_k` jobs of the key and
 * `maxJobsInFlight` in all.
 *
 * ## Freeing
 *
 * Every freer releases the contract's place (waking one contract waiter, job-waiting.ts), then the
 * key's ({@link releaseKeyPlace}): a freed key place wakes nobody. Requests of a key at its limit do
 * not wait in the contract's waiting room (SQS cannot hand "a waiter of key k" out): they are set
 * aside as delayed copies (dispatch.ts, key-place-wake.ts), so a full key blocks neither other keys
 * nor the contract's waiters.
 *
 * ## The ticket line: when a key's waiter comes back (design 3.3)
 *
 * Ends of jobs are not scheduled, so a set-aside request's return is estimated from a ticket line in
 * the same item: the set-aside takes tickets ({@link takeKeyPlaceTickets}: `ADD nextTicket :n`),
 * every removal of a key place adds one to `servedTicket` in its own conditional write (the table's
 * `servedCounter`: releases by every freer, and expired places dropped), and each freer keeps
 * `meanJobMs`, an EWMA of how long the key's places were held, in the same item. A request with
 * ticket `t` comes back after half its estimated wait, `(t - servedTicket - 1) * meanJobMs /
 * maxJobsInFlight_k`, at least the recheck interval, at most SQS' 900 s ({@link keyPlaceWaitMs}),
 * and then looks again: the request next in line, and any whose turn has come, rechecks every
 * recheck interval. A new request takes a free place only while the line is empty ({@link BEHIND_THE_LINE}),
 * else it joins the line: so the places freed go to the line, in turn, and a turn that comes is
 * served. Places taken otherwise (the line off, a line restarted) only move turns early, never
 * late: those requests recheck as before.
 *
 * The line is counts only, so a ticket whose request never takes a place (orphaned) keeps it
 * non-empty for good. Two heals: a new request refused while the key holds no place restarts the
 * line and takes the place ({@link restartIdleKeyLine}); one refused while the key has a free place
 * rechecks instead of waiting out an estimate the orphans inflate (key-place-wake.ts).
 */
// Bundled into the dispatcher and the freers only; the SDK stays a devDependency.
import { type AttributeValue, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import {
  JobPlacesTable, PLACES_HELD_ATTRIBUTE, releasePlace, releasePlaceReturningOld, renewHeldPlace, SUBMISSION_WINDOW_MS, takePlace, TakeGuard,
  TakeOutcome,
} from './job-places';
import { keyPlacesItemKey } from './key-limits';

/** Number attribute of `key-places#<key>`: the last ticket handed out (design 3.3). */
export const NEXT_TICKET_ATTRIBUTE = 'nextTicket';
/** Number attribute of `key-places#<key>`: places of the key freed so far (releases and expiry drops). */
export const SERVED_TICKET_ATTRIBUTE = 'servedTicket';
/** Number attribute of `key-places#<key>`: EWMA of how long the key's places were held, ms. */
export const MEAN_JOB_MS_ATTRIBUTE = 'meanJobMs';
/**
 * Number attribute of `key-places#<key>`: how long a full place is held before it expires (the
 * contract's `maxJobDuration` plus the submission window), written with each ticket take, so that
 * a freer (which does not know the contract) can tell when a place was taken: `expiry - span`.
 */
export const PLACE_SPAN_MS_ATTRIBUTE = 'placeSpanMs';
/**
 * Weight of the newest job time in `meanJobMs`: 0.25 follows a change of the vendor's job times
 * within about 8 jobs of the key (0.75^8 = 0.1) while one odd job moves the mean by a quarter.
 */
export const JOB_TIME_EWMA_WEIGHT = 0.25;
/** SQS' longest message delay (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html), ms. */
const MAX_RETURN_MS = 900_000;

/**
 * How long a key place taken before the contract's place stays valid without renewal: long enough
 * for the contract's take (a few conditional writes and reads, at most five rounds), short enough
 * that a dispatcher crash between the two writes idles the key's place for at most a minute.
 */
export const PROVISIONAL_KEY_PLACE_MS = 60_000;

/** How long a key's places item outlives its latest take or renewal (TTL), beyond the longest hold: a day. */
const KEY_PLACES_RETENTION_MS = 86_400_000;

/**
 * The table of `key`'s places: the contract's table (same DynamoDB table, same owner) on the key's
 * item. `maxJobDurationMs` (when taking places) sets the item's TTL past the longest hold, so an
 * idle key's item is deleted by the table's TTL a day after its last place expired.
 */
export function keyPlacesTable(contract: JobPlacesTable, key: string, maxJobDurationMs?: number): JobPlacesTable {
  return {
    ...contract,
    itemKey: keyPlacesItemKey(key),
    servedCounter: SERVED_TICKET_ATTRIBUTE,
    ...(maxJobDurationMs !== undefined ? { itemTtlMs: maxJobDurationMs + SUBMISSION_WINDOW_MS + KEY_PLACES_RETENTION_MS } : {}),
  };
}

/** Outcome of taking a key's place and the contract's: `keyFull` when the key is at its own limit (the contract was not written). */
export type KeyAndContractOutcome = TakeOutcome | { readonly result: 'keyFull'; readonly keyPlacesHeld?: number };

/** What taking both places needs. */
export interface KeyPlaceTake {
  /** The contract's places (pacer table, owner). */
  readonly contract: JobPlacesTable;
  readonly requestId: string;
  readonly key: string;
  readonly maxJobsInFlight: number;
  readonly keyMaxJobsInFlight: number;
  /** The full expiry of both places. */
  readonly expiresAtMs: number;
  readonly maxJobDurationMs: number;
  readonly nowMs: number;
  /**
   * The request holds no ticket of the key's line (a new request): it takes a place only while
   * nobody waits in the line ({@link BEHIND_THE_LINE}); else it is `keyFull` and joins the line.
   *
   * @default false
   */
  readonly behindLine?: boolean;
}

/**
 * A new request takes a key's place only while the line is empty (`nextTicket <= servedTicket`):
 * otherwise a place freed while the line's first requests are away (they come back on their
 * estimate) goes to whichever new request reaches a dispatcher first, the line's turns pass without
 * their requests being served, and every request whose turn has passed rechecks every recheck
 * interval. Measured (`inflight-keys-ticket`, docs/benchmark.md): without it one request of the hot
 * key came back 74 times.
 */
export const BEHIND_THE_LINE: TakeGuard = {
  condition: 'attribute_not_exists(#next) OR (attribute_exists(#served) AND #next <= #served)',
  names: { '#next': NEXT_TICKET_ATTRIBUTE, '#served': SERVED_TICKET_ATTRIBUTE },
  refuses: (item) => {
    const line = lineOf(item);
    return line !== undefined && line.nextTicket > line.servedTicket;
  },
};

/**
 * Takes the key's place (provisional), then the contract's, then renews the key's (steps 1-4 above).
 * Resolves to the contract's outcome, or `keyFull`. Throws on DynamoDB errors; a key place taken
 * before the error is given back when possible (else it lapses after the provisional minute).
 */
export async function takeKeyThenContractPlace(take: KeyPlaceTake): Promise<KeyAndContractOutcome> {
  const keyTable = keyPlacesTable(take.contract, take.key, take.maxJobDurationMs);
  // Giving back a provisional place frees none the line waits for (the key had room when it was
  // taken): not counted as served, or waiters would come back early for nothing.
  const giveBackTable: JobPlacesTable = { ...keyTable, servedCounter: undefined };
  const requestId = take.requestId;
  const firstTakeTable: JobPlacesTable = take.behindLine ? { ...keyTable, takeGuard: BEHIND_THE_LINE } : keyTable;
  const takeKeyPlace = () => takePlace(firstTakeTable, requestId, take.keyMaxJobsInFlight, take.nowMs + PROVISIONAL_KEY_PLACE_MS, take.nowMs);
  let keyOutcome = await takeKeyPlace();
  if (keyOutcome.result === 'full' && take.behindLine && keyOutcome.placesHeld === 0) {
    // Refused behind a line while the key holds no place: no release can ever advance that line
    // (orphaned tickets, see restartIdleKeyLine). Restart it, then take once more, still behind
    // whatever line there is then: the take's own condition keeps the key's limit, whoever won.
    await restartIdleKeyLine(keyTable);
    keyOutcome = await takeKeyPlace();
  }
  if (keyOutcome.result === 'full') {
    return { result: 'keyFull', keyPlacesHeld: keyOutcome.placesHeld };
  }
  const provisional = keyOutcome.expiresAtMs!;
  let contractOutcome: TakeOutcome;
  try {
    contractOutcome = await takePlace(take.contract, requestId, take.maxJobsInFlight, take.expiresAtMs, take.nowMs);
  } catch (error) {
    await releasePlace(giveBackTable, requestId, provisional).catch(() => undefined);
    throw error;
  }
  if (contractOutcome.result === 'full') {
    // Waits for a contract place without holding the key's: the key's other requests may use it.
    await releasePlace(giveBackTable, requestId, provisional);
    return contractOutcome;
  }
  if (await renewHeldPlace(keyTable, requestId, provisional, take.expiresAtMs, take.nowMs) === undefined) {
    // The entry is not as we wrote it: another copy of this request (a duplicate delivery admitted
    // at the same time) renewed it, so it is still ours; or it lapsed and was dropped (the
    // contract's take took over the provisional minute). A plain take tells them apart: `held`
    // renews ours, a free place is taken afresh, and a key now full means this request must not be
    // sent: the contract's place is given back (no copy holds the key's place, so none relies on
    // it; a waiter it could wake is woken by the sweep) and the request waits like any of its key's.
    const again = await takePlace(keyTable, requestId, take.keyMaxJobsInFlight, take.expiresAtMs, take.nowMs);
    if (again.result === 'full') {
      await releasePlace(take.contract, requestId);
      return { result: 'keyFull', keyPlacesHeld: again.placesHeld };
    }
  }
  return contractOutcome;
}

/**
 * Restarts the ticket line of a key that holds no place: `SET servedTicket = nextTicket`, on the
 * condition that the key still holds none (`placesHeld = 0`) and the line is not empty. The line is
 * counts only: a ticket whose request never takes a place (its set-aside copy could not be sent, so
 * the original came back without it and took another; a request parked or refused after taking
 * one; a dispatcher crash) is never served, `nextTicket - servedTicket` stays above zero and, with
 * no place held, no release will ever advance it: every new request of the key would be refused by
 * {@link BEHIND_THE_LINE} and set aside on an estimate inflated by the orphans, with all its places
 * free. Requests still away with a ticket (a key idle while its line is away on estimates) keep
 * their tickets and take a free place without the line's condition, as before, but their turn has
 * come: they recheck every recheck interval instead of waiting out an estimate. Measured alone that
 * cost 24 % more SQS requests per call; with key-place-wake.ts' recheck for new requests refused
 * beside a free place (which keeps such keys from idling), 1-7 % (docs/benchmark.md). Condition on
 * `nextTicket` as read is not needed: a ticket taken meanwhile is served by the restart too (its
 * request rechecks), and the places limit is the take's condition, not the line's. Resolves to
 * whether the line was restarted; throws on DynamoDB errors other than the condition.
 */
export async function restartIdleKeyLine(table: JobPlacesTable): Promise<boolean> {
  try {
    await table.dynamodb.send(new UpdateItemCommand({
      TableName: table.tableName,
      Key: { pk: { S: table.itemKey! } },
      // An update's operand may be another attribute's path
      // (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.UpdateExpressions.html).
      UpdateExpression: 'SET #served = #next',
      ConditionExpression: '#held = :zero AND (attribute_not_exists(#served) OR #next > #served)',
      ExpressionAttributeNames: { '#held': PLACES_HELD_ATTRIBUTE, '#next': NEXT_TICKET_ATTRIBUTE, '#served': SERVED_TICKET_ATTRIBUTE },
      ExpressionAttributeValues: { ':zero': { N: '0' } },
    }));
    return true;
  } catch (error) {
    if ((error as { name?: unknown }).name === 'ConditionalCheckFailedException') {
      return false;
    }
    throw error;
  }
}

/**
 * Frees `requestId`'s place of `key` (after the contract's, released by the caller). Idempotent, as
 * `releasePlace`; wakes nobody (a key's waiters come back on their ticket's estimate). The same
 * write advances the key's `servedTicket`; then, when the place was really freed, the key's
 * `meanJobMs` takes in how long it was held ({@link recordJobTime}, best effort). Resolves to the
 * key's places held after the release when it changed, else undefined.
 */
export async function releaseKeyPlace(
  contract: JobPlacesTable, key: string, requestId: string, nowMs: number = Date.now(),
): Promise<number | undefined> {
  const table = keyPlacesTable(contract, key);
  const freed = await releasePlaceReturningOld(table, requestId);
  if (freed === undefined) {
    return undefined;
  }
  await recordJobTime(table, freed.old, freed.placeKey, nowMs).catch(() => undefined);
  return freed.held;
}

/**
 * Folds the freed place's hold time into the key's `meanJobMs` (EWMA), conditioned on the mean the
 * release saw, so two freers at once never blend one sample twice (the loser's sample is dropped:
 * an estimate, not an account). No sample without the place span (no ticket taken yet: nobody has
 * waited for the key) or when the entry reads as impossible (a provisional entry, a clock step).
 */
async function recordJobTime(table: JobPlacesTable, old: Record<string, AttributeValue>, placeKey: string, nowMs: number): Promise<void> {
  const spanMs = numberOf(old[PLACE_SPAN_MS_ATTRIBUTE]);
  const expiresAtMs = numberOf(old.places?.M?.[placeKey]);
  if (spanMs === undefined || expiresAtMs === undefined) {
    return;
  }
  // An entry expiring within the provisional minute may be a provisional one (a dispatcher crashed
  // between its two takes), whose expiry says nothing of a job: no sample (a job held that close to
  // its whole span is not one to estimate waits by either).
  const heldMs = nowMs - (expiresAtMs - spanMs);
  if (!(heldMs >= 0 && expiresAtMs - nowMs >= PROVISIONAL_KEY_PLACE_MS)) {
    return;
  }
  const oldMean = numberOf(old[MEAN_JOB_MS_ATTRIBUTE]);
  const mean = oldMean === undefined ? heldMs : oldMean + JOB_TIME_EWMA_WEIGHT * (heldMs - oldMean);
  await table.dynamodb.send(new UpdateItemCommand({
    TableName: table.tableName,
    Key: { pk: { S: table.itemKey! } },
    UpdateExpression: 'SET #mean = :mean',
    ConditionExpression: oldMean === undefined ? 'attribute_not_exists(#mean)' : '#mean = :old',
    ExpressionAttributeNames: { '#mean': MEAN_JOB_MS_ATTRIBUTE },
    ExpressionAttributeValues: { ':mean': { N: String(Math.round(mean)) }, ...(oldMean === undefined ? {} : { ':old': { N: String(oldMean) } }) },
  }));
}

/** A key's ticket line as read or written: tickets handed out, places freed, mean job time. */
export interface KeyPlaceLine {
  /** The last ticket handed out (after this take). */
  readonly nextTicket: number;
  readonly servedTicket: number;
  /** Undefined until a place of the key was freed after a ticket take. */
  readonly meanJobMs?: number;
  /** The first ticket of this take (tickets `firstTicket .. nextTicket`); undefined for a read. */
  readonly firstTicket?: number;
  /** The key's places held when the tickets were taken; undefined for a read. */
  readonly placesHeld?: number;
}

/**
 * Takes `n` tickets in `key`'s line: `ADD nextTicket :n` while the line is ahead of the places served;
 * a line behind them (empty: more places freed than tickets taken, or no line yet) restarts at
 * `servedTicket` (`SET nextTicket = servedTicket + :n`), so a new line's first ticket is next, not
 * long past (`SET a = if_not_exists(b, :zero) + :n`: an operand may be a function,
 * https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.UpdateExpressions.html).
 * Each write also records the place span (see {@link PLACE_SPAN_MS_ATTRIBUTE}). Throws on
 * DynamoDB errors; resolves to undefined when both forms lost a race (the caller rechecks as before).
 */
export async function takeKeyPlaceTickets(contract: JobPlacesTable, key: string, n: number, placeSpanMs: number): Promise<KeyPlaceLine | undefined> {
  const table = keyPlacesTable(contract, key);
  const names = { '#next': NEXT_TICKET_ATTRIBUTE, '#served': SERVED_TICKET_ATTRIBUTE, '#span': PLACE_SPAN_MS_ATTRIBUTE };
  const values = { ':n': { N: String(n) }, ':span': { N: String(Math.round(placeSpanMs)) } };
  const forms = [
    { update: 'SET #span = :span ADD #next :n', condition: 'attribute_exists(#next) AND (attribute_not_exists(#served) OR #next >= #served)', values },
    {
      update: 'SET #span = :span, #next = if_not_exists(#served, :zero) + :n',
      condition: 'attribute_not_exists(#next) OR #next < #served',
      values: { ...values, ':zero': { N: '0' } },
    },
  ];
  for (const form of forms) {
    try {
      const out = await table.dynamodb.send(new UpdateItemCommand({
        TableName: table.tableName,
        Key: { pk: { S: table.itemKey! } },
        UpdateExpression: form.update,
        ConditionExpression: form.condition,
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: form.values,
        ReturnValues: 'ALL_NEW',
      }));
      const line = lineOf(out.Attributes);
      const placesHeld = numberOf(out.Attributes?.[PLACES_HELD_ATTRIBUTE]) ?? 0;
      return line === undefined ? undefined : { ...line, firstTicket: line.nextTicket - n + 1, placesHeld };
    } catch (error) {
      if ((error as { name?: unknown }).name !== 'ConditionalCheckFailedException') {
        throw error;
      }
    }
  }
  return undefined;
}

/** Reads `key`'s ticket line (for requests that hold tickets already). Throws on DynamoDB errors. */
export async function readKeyPlaceLine(contract: JobPlacesTable, key: string): Promise<KeyPlaceLine | undefined> {
  const table = keyPlacesTable(contract, key);
  const out = await table.dynamodb.send(new GetItemCommand({
    TableName: table.tableName,
    Key: { pk: { S: table.itemKey! } },
    ProjectionExpression: '#next, #served, #mean',
    ExpressionAttributeNames: { '#next': NEXT_TICKET_ATTRIBUTE, '#served': SERVED_TICKET_ATTRIBUTE, '#mean': MEAN_JOB_MS_ATTRIBUTE },
  }));
  return lineOf(out.Item);
}

/**
 * The part of its estimated wait a request in a key's line waits before it looks again (and
 * re-estimates from the places served by then). Ends of jobs vary: when several places free sooner
 * than their mean, a request that waited its whole estimate leaves them idle until it is back.
 * Measured (docs/benchmark.md, `inflight-keys-*`; hot key's places used, SQS requests per call):
 * with jobs of 2-6 s, 1: 0.835, 7.0; 0.5: 0.893, 10.3 (the plain 2 s recheck: 0.876, 15.1); with
 * jobs of 10-30 s, 1: 0.805 (one place idle for 17 s), 6.2; 0.5: 0.922, 7.8 (recheck: 0.939, 8.9).
 */
export const KEY_PLACE_WAIT_FRACTION = 0.5;

/**
 * How long a request with `ticket` waits before it looks for a place of its key again (design 3.3):
 * `max(recheckMs, KEY_PLACE_WAIT_FRACTION * (ticket - servedTicket - 1) * meanJobMs / maxJobsInFlight_k)`,
 * at most 900 s. Without a mean (no place freed since the line started), next in line or once its
 * turn has come: `recheckMs`. One free fewer than the design's `ticket - servedTicket`: the request
 * next in line rechecks instead of waiting out the mean time to the next free (hand-over idle 963 ->
 * 837 ms with jobs of 2-6 s, 2967 -> 2199 ms with jobs of 10-30 s, before the fraction).
 */
export function keyPlaceWaitMs(ticket: number, line: KeyPlaceLine, keyMaxJobsInFlight: number, recheckMs: number): number {
  const ahead = ticket - line.servedTicket;
  if (line.meanJobMs === undefined || ahead <= 0 || !(keyMaxJobsInFlight > 0)) {
    return recheckMs;
  }
  return Math.min(MAX_RETURN_MS, Math.max(recheckMs, KEY_PLACE_WAIT_FRACTION * (ahead - 1) * line.meanJobMs / keyMaxJobsInFlight));
}

function lineOf(item: Record<string, AttributeValue> | undefined): KeyPlaceLine | undefined {
  const next = numberOf(item?.[NEXT_TICKET_ATTRIBUTE]);
  const mean = numberOf(item?.[MEAN_JOB_MS_ATTRIBUTE]);
  if (next === undefined) {
    return undefined;
  }
  return { nextTicket: next, servedTicket: numberOf(item?.[SERVED_TICKET_ATTRIBUTE]) ?? 0, ...(mean !== undefined ? { meanJobMs: mean } : {}) };
}

function numberOf(value: AttributeValue | undefined): number | undefined {
  const n = value?.N === undefined ? NaN : Number(value.N);
  return Number.isFinite(n) ? n : undefined;
}
