/**
 * Jobs in flight at the vendor caller: a call that ends a job (`callVendorTask`'s `endsJobOf`, e.g.
 * the vendor's documented cancel endpoint) frees that job's place when the vendor answers 2xx, so
 * the place is back at once instead of at the job's callback or `maxJobDuration`. Bundled into the
 * vendor caller only (PacingPoint.VENDOR_CALL: the orchestrator refuses `endsJobOf` otherwise).
 *
 * Only a 2xx frees: it is the vendor saying the job has ended (or will run no further). Any other
 * answer (a 404 or 409 for a job that already ended, a 5xx) frees nothing here: the job's callback,
 * the retried call's 2xx or `maxJobDuration` does. Freeing is idempotent (job-places.ts,
 * releasePlace): a retried or duplicate cancel, and the cancelled job's own callback (a vendor may
 * still send one), free the place once; the place is keyed by the request id, so a call can never
 * free a place another request holds.
 */
import { keyWithPlacesOf, type PlaceFreeingDeps, releaseJobPlace } from './refused-submission';
import type { VendorCallEvent, VendorCallResult } from './vendor-call';

/** Frees the place of the job `event.endsJobOf` when the vendor answered 2xx. Best effort: errors are logged. */
export async function freePlaceOfEndedJob(
  event: VendorCallEvent,
  result: VendorCallResult,
  deps: PlaceFreeingDeps,
): Promise<void> {
  const endsJobOf = event.endsJobOf;
  if (!deps.jobPlacesTableName || typeof endsJobOf !== 'string' || endsJobOf === ''
    || result.statusCode === null || result.statusCode < 200 || result.statusCode > 299) {
    return;
  }
  await releaseJobPlace(endsJobOf, deps, {
    freed: `the call ended the job of request ${endsJobOf} (the vendor answered ${result.statusCode}): its place in flight is freed`,
    failed: 'could not free the place of the job the call ended; it is freed by its callback or expires at maxJobDuration',
    fields: { requestId: event.requestId, endsJobOf },
    // The ended job's key place: the call's own key. A call ending another key's job (with credentials
    // per key the vendor would refuse it) frees no key place; that place then lapses at its expiry.
  }, keyWithPlacesOf(event));
}
