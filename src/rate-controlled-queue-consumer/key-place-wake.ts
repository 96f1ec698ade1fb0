/**
 * When a request of a key at its own `maxJobsInFlight` comes back (issue 15; design
 * docs/design/per-key-limits.md 3.3). Such a request is set aside as a delayed copy (dispatch.ts),
 * since no SQS queue can be woken per key; this module picks each copy's delay from the key's
 * ticket line (shared/key-places.ts):
 *
 * - a request without a ticket takes one: one `ADD nextTicket :n` per key and batch for all of them,
 *   in batch order; the ticket travels in the copy's body ({@link KEY_PLACE_TICKET_FIELD});
 * - a request back with a ticket keeps it (its place in the line); the line is read once per key;
 * - each returns after `keyPlaceWaitMs` (half of: the frees it waits for before its own x mean job
 *   time / the key's places; at least `recheckMs`, at most 900 s) and looks again; the one next in
 *   line, or whose turn has come, rechecks every `recheckMs`;
 * - a new request does not take a key's free place while others wait in its line (key-places.ts
 *   `BEHIND_THE_LINE`, job-admission.ts): it takes a ticket and queues; refused while the key had a
 *   free place (the line ahead may be orphaned tickets, key-places.ts `restartIdleKeyLine`), it
 *   rechecks after `recheckMs` rather than on the estimate.
 *
 * A failed or lost ticket write or read leaves the key's requests on today's recheck: the estimate
 * only ever spares rechecks, no request depends on it to be served.
 *
 * Plain function, clients passed in (the benchmark's model drives it in virtual time).
 */
import type { JobPlacesTable } from '../shared/job-places';
import type { KeyLimitsSpec } from '../shared/key-limits';
import { KeyPlaceLine, keyPlaceWaitMs, readKeyPlaceLine, takeKeyPlaceTickets } from '../shared/key-places';

/** Copies sent at once per key (as dispatch.ts postpones). */
const SEND_CONCURRENCY = 10;

/** Field of a set-aside copy's body: its ticket in its key's line of jobs in flight. */
export const KEY_PLACE_TICKET_FIELD = 'keyPlaceTicket';

/** The ticket a request back from a key-full set-aside holds ({@link KEY_PLACE_TICKET_FIELD}); undefined for a new request. */
export function keyPlaceTicketOf(call: { readonly message: object }): number | undefined {
  const ticket = (call.message as Record<string, unknown>)[KEY_PLACE_TICKET_FIELD];
  return typeof ticket === 'number' && Number.isSafeInteger(ticket) ? ticket : undefined;
}

/** A request of a full key (job-admission.ts `keyFull`). */
export interface KeyFullCall {
  readonly message: { readonly key?: string };
  readonly keyLimits?: KeyLimitsSpec;
}

export interface KeyPlaceWakeDeps<T> {
  /** The contract's places (the key items live in the same table). */
  readonly contract: JobPlacesTable;
  /** How long a full place is held: the contract's `maxJobDuration` plus the submission window. */
  readonly placeSpanMs: number;
  /** The jobs-in-flight recheck interval (ms): the shortest wait, and the wait without an estimate. */
  readonly recheckMs: number;
  /**
   * Sends the copy back after `delaySeconds`, carrying `ticket` when given. Resolves to the record's
   * message id when the copy could not be sent (the record stays on the queue), else undefined.
   */
  readonly send: (item: T, delaySeconds: number, ticket: number | undefined) => Promise<string | undefined>;
  readonly onLineError: (key: string, error: unknown) => void;
}

/** Sets aside the requests of full keys, each returning on its ticket's estimate. Resolves to the message ids that stay on the queue. */
export async function setAsideForKeyPlaces<T extends KeyFullCall>(items: readonly T[], deps: KeyPlaceWakeDeps<T>): Promise<string[]> {
  const byKey = new Map<string, T[]>();
  for (const item of items) {
    const key = item.message.key ?? '';
    byKey.set(key, [...byKey.get(key) ?? [], item]);
  }
  const stay: string[] = [];
  await Promise.all([...byKey].map(async ([key, calls]) => {
    const fresh = calls.filter((call) => keyPlaceTicketOf(call) === undefined);
    let line: KeyPlaceLine | undefined;
    try {
      line = fresh.length > 0
        ? await takeKeyPlaceTickets(deps.contract, key, fresh.length, deps.placeSpanMs)
        : await readKeyPlaceLine(deps.contract, key);
    } catch (error) {
      deps.onLineError(key, error);
    }
    const tickets = new Map<T, number>();
    if (line?.firstTicket !== undefined) {
      fresh.forEach((call, i) => tickets.set(call, line.firstTicket! + i));
    }
    for (let i = 0; i < calls.length; i += SEND_CONCURRENCY) {
      await Promise.all(calls.slice(i, i + SEND_CONCURRENCY).map(async (call) => {
        const ticket = keyPlaceTicketOf(call) ?? tickets.get(call);
        const max = call.keyLimits?.maxJobsInFlight ?? 1;
        // A new request refused behind the line while its key had free places rechecks: the line
        // ahead of it may be orphaned tickets (key-places.ts restartIdleKeyLine), which would
        // inflate its estimate while places stay free; back with its ticket, it takes a free place.
        const freePlaces = keyPlaceTicketOf(call) === undefined && line?.placesHeld !== undefined && line.placesHeld < max;
        const waitMs = line !== undefined && ticket !== undefined && !freePlaces ? keyPlaceWaitMs(ticket, line, max, deps.recheckMs) : deps.recheckMs;
        // Whole seconds (SQS delays): the recheck as today rounds up; an estimate rounds down (back
        // early costs one more look, back late leaves the key's place idle).
        const delaySeconds = waitMs <= deps.recheckMs ? Math.ceil(deps.recheckMs / 1000) : Math.floor(waitMs / 1000);
        const notSent = await deps.send(call, delaySeconds, ticket);
        if (notSent !== undefined) {
          stay.push(notSent);
        }
      }));
    }
  }));
  return stay;
}
