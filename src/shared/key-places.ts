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
 * aside as delayed copies that recheck after `recheckMs` (dispatch.ts), so a full key blocks neither
 * other keys nor the contract's waiters.
 */
import { JobPlacesTable, releasePlace, renewHeldPlace, SUBMISSION_WINDOW_MS, takePlace, TakeOutcome } from './job-places';
import { keyPlacesItemKey } from './key-limits';

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
}

/**
 * Takes the key's place (provisional), then the contract's, then renews the key's (steps 1-4 above).
 * Resolves to the contract's outcome, or `keyFull`. Throws on DynamoDB errors; a key place taken
 * before the error is given back when possible (else it lapses after the provisional minute).
 */
export async function takeKeyThenContractPlace(take: KeyPlaceTake): Promise<KeyAndContractOutcome> {
  const keyTable = keyPlacesTable(take.contract, take.key, take.maxJobDurationMs);
  const requestId = take.requestId;
  const keyOutcome = await takePlace(keyTable, requestId, take.keyMaxJobsInFlight, take.nowMs + PROVISIONAL_KEY_PLACE_MS, take.nowMs);
  if (keyOutcome.result === 'full') {
    return { result: 'keyFull', keyPlacesHeld: keyOutcome.placesHeld };
  }
  const provisional = keyOutcome.expiresAtMs!;
  let contractOutcome: TakeOutcome;
  try {
    contractOutcome = await takePlace(take.contract, requestId, take.maxJobsInFlight, take.expiresAtMs, take.nowMs);
  } catch (error) {
    await releasePlace(keyTable, requestId, provisional).catch(() => undefined);
    throw error;
  }
  if (contractOutcome.result === 'full') {
    // Waits for a contract place without holding the key's: the key's other requests may use it.
    await releasePlace(keyTable, requestId, provisional);
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
 * Frees `requestId`'s place of `key` (after the contract's, released by the caller). Idempotent, as
 * `releasePlace`; wakes nobody (a key's waiters recheck on their own). Resolves to the key's places
 * held after the release when it changed, else undefined.
 */
export async function releaseKeyPlace(contract: JobPlacesTable, key: string, requestId: string): Promise<number | undefined> {
  return releasePlace(keyPlacesTable(contract, key), requestId);
}
