/**
 * Jobs in flight at the vendor caller: a job submission the vendor refused with a final 4xx created
 * no job, so its place (taken by the dispatcher, job-admission.ts) is freed at once instead of at
 * `maxJobDuration`. Bundled into the vendor caller only (PacingPoint.VENDOR_CALL): with
 * PacingPoint.DISPATCH nothing sees the answer in a Lambda, and such a place expires.
 *
 * Kept: 408 and 429 (retried: the request comes back and keeps its place), 409 (with an
 * Idempotency-Key a vendor answers 409 for a job it already has), 5xx and timeouts (the vendor may
 * have created the job: its callback or maxJobDuration frees the place).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { VendorCallEvent, VendorCallLogger, VendorCallResult } from './vendor-call';
import { releasePlaceAndWakeWaiter, type WaitingRoom } from '../shared/job-waiting';
import { releaseKeyPlace } from '../shared/key-places';
import { ErrorNames } from '../shared/messages';
import { MetricNames } from '../shared/metrics';

/** 4xx answers after which the vendor holds no job for the request. */
export function refusedWithoutJob(statusCode: number | null): boolean {
  return statusCode !== null && statusCode >= 400 && statusCode < 500 && ![408, 409, 429].includes(statusCode);
}

/**
 * Whether the event is the dispatch workflow's job submission, not a `callVendorTask` call: the
 * vendor-call workflow always passes `path` and `query` (possibly null), the dispatch workflow
 * never does (both payloads are checked by test/dispatch-workflow/refused-submission.test.ts).
 */
export function isJobSubmission(event: VendorCallEvent): boolean {
  return !('path' in event) && !('query' in event);
}

/**
 * Errors the vendor caller throws before it calls the vendor: the submission was not sent and is
 * given up (VendorQuotaExhausted with `QuotaExhaustedAction.FAIL`, or a period that ends after the
 * request's wait), so its place is freed like a refused one's.
 */
const GIVEN_UP_UNSENT = new Set<string>([ErrorNames.VENDOR_QUOTA_EXHAUSTED]);

/** Frees the place of a submission given up before it was sent (see GIVEN_UP_UNSENT). Best effort. */
export async function freePlaceOfUnsentSubmission(
  event: VendorCallEvent,
  error: unknown,
  deps: PlaceFreeingDeps,
): Promise<void> {
  const name = (error as { name?: unknown } | undefined)?.name;
  if (typeof name !== 'string' || !GIVEN_UP_UNSENT.has(name)) {
    return;
  }
  await freePlace(event, deps, `the submission was given up unsent (${name})`);
}

/** What the vendor caller needs to free a job's place (and wake a waiter). */
export interface PlaceFreeingDeps {
  readonly dynamodb: DynamoDBClient;
  readonly jobPlacesTableName?: string;
  /** This orchestrator's key in a shared contract state (VendorCallerEnv.SHARED_STATE_OWNER): keys its places. */
  readonly jobPlacesOwner?: string;
  /** The jobs-in-flight waiting room: a freed place wakes one waiter. Default: none. */
  readonly waitingRoom?: WaitingRoom;
  readonly logger: VendorCallLogger;
  readonly metrics?: { addMetric(name: string, unit: 'Count' | 'Milliseconds', value: number): void };
}

/**
 * Frees the place of a refused submission. Best effort: an error is logged and the place expires
 * at maxJobDuration (the vendor's answer must reach the workflow whatever happens here).
 */
export async function freePlaceOfRefusedSubmission(
  event: VendorCallEvent,
  result: VendorCallResult,
  deps: PlaceFreeingDeps,
): Promise<void> {
  if (!refusedWithoutJob(result.statusCode)) {
    return;
  }
  await freePlace(event, deps, `the vendor refused the job (${result.statusCode})`);
}

async function freePlace(event: VendorCallEvent, deps: PlaceFreeingDeps, why: string): Promise<void> {
  if (!deps.jobPlacesTableName || !event.requestId || !isJobSubmission(event)) {
    return;
  }
  await releaseJobPlace(event.requestId, deps, {
    freed: `${why}: its place in flight is freed`,
    failed: 'could not free the place of a job that was not created; it expires at maxJobDuration',
    fields: { requestId: event.requestId },
  }, keyWithPlacesOf(event));
}

/**
 * The key whose place a job holds besides the contract's (issue 15, shared/key-places.ts): the
 * event's key when it comes with per-key limits in force (`keyLimits`, set by the dispatcher whenever
 * the contract has per-key limits), else undefined. Not only when `keyLimits.maxJobsInFlight` is
 * set: a key's limit may have been removed since its place was taken, and freeing a place that is
 * not held changes nothing (one failed conditional write).
 */
export function keyWithPlacesOf(event: VendorCallEvent): string | undefined {
  return event.keyLimits && typeof event.key === 'string' && event.key !== '' ? event.key : undefined;
}

/**
 * Frees the place of `placeOf`'s job and wakes one waiting request (shared/job-waiting.ts), then
 * the job's place of `key` when given (per-key limits, shared/key-places.ts).
 * Best effort: the vendor's answer must reach the workflow whatever happens here, so an error is
 * logged (`messages.failed`) and the place then waits for the job's callback or maxJobDuration.
 */
export async function releaseJobPlace(
  placeOf: string,
  deps: PlaceFreeingDeps,
  messages: { readonly freed: string; readonly failed: string; readonly fields: Record<string, unknown> },
  key?: string,
): Promise<void> {
  if (!deps.jobPlacesTableName) {
    return;
  }
  try {
    const table = { dynamodb: deps.dynamodb, tableName: deps.jobPlacesTableName, owner: deps.jobPlacesOwner };
    const held = await releasePlaceAndWakeWaiter(table, deps.waitingRoom, placeOf, deps.logger);
    if (held !== undefined) {
      deps.metrics?.addMetric(MetricNames.JOBS_IN_FLIGHT, 'Count', held);
      deps.logger.info(messages.freed, { ...messages.fields, jobsInFlight: held });
    }
    // Per-key limits: then the key's place (wakes nobody: a key's waiters recheck on their own).
    if (key !== undefined) {
      await releaseKeyPlace(table, key, placeOf);
    }
  } catch (error) {
    deps.logger.warn(messages.failed, { ...messages.fields, error });
  }
}
