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
import { releasePlace } from '../shared/job-places';
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
 * Frees the place of a refused submission. Best effort: an error is logged and the place expires
 * at maxJobDuration (the vendor's answer must reach the workflow whatever happens here).
 */
export async function freePlaceOfRefusedSubmission(
  event: VendorCallEvent,
  result: VendorCallResult,
  deps: {
    readonly dynamodb: DynamoDBClient;
    readonly jobPlacesTableName?: string;
    readonly logger: VendorCallLogger;
    readonly metrics?: { addMetric(name: string, unit: 'Count' | 'Milliseconds', value: number): void };
  },
): Promise<void> {
  if (!deps.jobPlacesTableName || !event.requestId || !isJobSubmission(event) || !refusedWithoutJob(result.statusCode)) {
    return;
  }
  try {
    const held = await releasePlace({ dynamodb: deps.dynamodb, tableName: deps.jobPlacesTableName }, event.requestId);
    if (held !== undefined) {
      deps.metrics?.addMetric(MetricNames.JOBS_IN_FLIGHT, 'Count', held);
      deps.logger.info('the vendor refused the job: its place in flight is freed', { requestId: event.requestId, statusCode: result.statusCode, jobsInFlight: held });
    }
  } catch (error) {
    deps.logger.warn('could not free the place of a refused job; it expires at maxJobDuration', { requestId: event.requestId, error });
  }
}
