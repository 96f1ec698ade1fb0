/**
 * Jobs in flight (`VendorContract.maxJobsInFlight`, issue 14): the dispatcher takes a place for each
 * job submission before its pacing slot (job-admission.ts) and the callback processor frees it
 * (callback-processing.ts, step d3). Both write the one places item of the pacer table
 * (shared/job-places.ts). Per job, on the happy path (a place is free, the job's callback arrives):
 *
 * - dispatcher: one conditional UpdateItem (take), one strongly consistent GetItem of the correlation
 *   item (was the job already submitted? Under 4 KB, or not written yet on a first delivery: 1 RRU
 *   assumed, the unit of a strongly consistent read up to 4 KB) and one
 *   SendTaskHeartbeat (has the waiting workflow ended? Step Functions bills state transitions and
 *   Express duration, not API calls: https://aws.amazon.com/step-functions/pricing/);
 * - callback processor: one conditional UpdateItem (free) and one INFO line ("its place in flight is
 *   freed").
 *
 * So 2 writes, 1 read, 1 heartbeat. Off the happy path: a retried or redelivered request renews its
 * place (a failed take, a consistent read of the places item and a renewing write: 3 writes and 1 read
 * in all); a request that will not call the vendor gives its place back at once; expired places are
 * dropped with one write each when the limit is reached; a request that finds no place is moved to
 * the waiting queue and back once a freed place wakes it (nothing while it waits; shared/job-waiting.ts),
 * and the sweep runs once a minute: both priced in job-waiting.ts (per wait, and a month), with the
 * freer's wake attempt that every job pays while nobody waits.
 *
 * Every write is billed on the size of the whole places item, the larger of before and after
 * (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html):
 * each place is a map entry of about 31 bytes, so the units per write grow with the limit.
 */
import { LATENCY_MS, SIZE_BYTES } from './assumptions';
import { fmtBytes, logLine } from './derive';
import { MonthlyLine, UsageLine } from './model';
import { PACER_PARTITION_KEY } from '../src/rate-controlled-queue-consumer/pacer';
import { ConsumerEnv } from '../src/shared/env';
import { JOB_PLACES_ITEM_KEY, PLACES_ATTRIBUTE, PLACES_HELD_ATTRIBUTE } from '../src/shared/job-places';

/** A place's map key: a 22-character digest of the request id (job-places.ts, placeKey). */
const PLACE_KEY_BYTES = 22;
/** A place's value: expiresAtMs, 13 significant digits (one byte per two, plus one). */
const EXPIRY_NUMBER_BYTES = 8;
/** DynamoDB's overhead per map element, and per map. */
const MAP_ELEMENT_OVERHEAD_BYTES = 1;
const MAP_OVERHEAD_BYTES = 3;

/** The contract's jobs-in-flight limit, from the dispatcher's environment (undefined: no limit). */
export function maxJobsInFlightOf(consumerEnv: Record<string, string>): number | undefined {
  const raw = consumerEnv[ConsumerEnv.MAX_JOBS_IN_FLIGHT];
  return raw === undefined || raw.trim() === '' ? undefined : Number(raw);
}

/**
 * Size of the places item holding `places` entries (DynamoDB's item size rules:
 * https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html).
 */
export function jobPlacesItemBytes(places: number): number {
  const numberBytes = (n: number) => Math.ceil(String(n).length / 2) + 1;
  return PACER_PARTITION_KEY.length + JOB_PLACES_ITEM_KEY.length
    + PLACES_ATTRIBUTE.length + MAP_OVERHEAD_BYTES + places * (PLACE_KEY_BYTES + EXPIRY_NUMBER_BYTES + MAP_ELEMENT_OVERHEAD_BYTES)
    + PLACES_HELD_ATTRIBUTE.length + numberBytes(places);
}

export interface JobsInFlightContext {
  readonly maxJobsInFlight?: number;
  readonly pacerTable: string;
  readonly correlationTable: string;
  readonly dispatcher: { readonly memoryMb: number; readonly arm: boolean; readonly infoLogs: boolean };
  readonly processor: { readonly memoryMb: number; readonly arm: boolean; readonly infoLogs: boolean };
}

/**
 * Usage lines per job submission (none without a limit; result fetches hold no place). The item is
 * sized at the limit (`maxJobsInFlight` entries): the state in which the limit does its work, and an
 * upper bound below it.
 */
export function jobsInFlightLines(c: JobsInFlightContext): UsageLine[] {
  const n = c.maxJobsInFlight;
  if (n === undefined) {
    return [];
  }
  const itemBytes = jobPlacesItemBytes(n);
  const writeUnits = Math.ceil(itemBytes / 1024);
  const sized = `${writeUnits} WRU: the places item with ${n} places (maxJobsInFlight) is ${fmtBytes(itemBytes)}, billed per started KB of the whole item`;
  // The admission's three calls run one after another before the batch's slots are reserved.
  const admissionMs = 2 * LATENCY_MS.dynamodbCall + LATENCY_MS.sendTaskSuccess;
  const gbSeconds = (ms: number, fn: { memoryMb: number }) => (ms / 1000) * (fn.memoryMb / 1024);
  const infoLineBytes = c.processor.infoLogs ? SIZE_BYTES.powertoolsInfoLine + SIZE_BYTES.logEventOverhead : 0;
  return [
    {
      service: 'dynamodb',
      what: `dispatcher ${c.pacerTable} UpdateItem (take a job place)`,
      perRequest: writeUnits,
      price: 'dynamodbWriteRequestUnit',
      derivation: `one conditional UpdateItem per job before its slot, ${sized}`,
    },
    {
      service: 'dynamodb',
      what: `dispatcher ${c.correlationTable} GetItem (job already submitted?)`,
      perRequest: 1,
      price: 'dynamodbReadRequestUnit',
      derivation: 'strongly consistent read of the correlation item after the take (not written yet on a first delivery): 1 RRU per job; '
        + 'then one SendTaskHeartbeat (no Step Functions charge)',
    },
    {
      service: 'lambda',
      what: 'dispatcher duration (job place)',
      perRequest: gbSeconds(admissionMs, c.dispatcher),
      price: c.dispatcher.arm ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86',
      derivation: `${admissionMs} ms per job x ${c.dispatcher.memoryMb} MB: UpdateItem, GetItem and SendTaskHeartbeat, one after another`,
    },
    {
      service: 'dynamodb',
      what: `callback processor ${c.pacerTable} UpdateItem (free the job place)`,
      perRequest: writeUnits,
      price: 'dynamodbWriteRequestUnit',
      derivation: `one conditional UpdateItem (REMOVE) per callback, ${sized}`,
    },
    {
      service: 'lambda',
      what: 'callback processor duration (job place)',
      perRequest: gbSeconds(LATENCY_MS.dynamodbCall, c.processor),
      price: c.processor.arm ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86',
      derivation: `${LATENCY_MS.dynamodbCall} ms per callback x ${c.processor.memoryMb} MB: the UpdateItem`,
    },
    logLine('callback processor logs (job place)', infoLineBytes,
      `${c.processor.infoLogs ? 'one INFO line per freed place' : 'no INFO lines at this log level'}; the JobsInFlight values add a few bytes to EMF documents already written`),
  ];
}

/** The JobsInFlight custom metric, billed monthly whatever the request count (none without a limit). */
export function jobsInFlightMonthly(maxJobsInFlight: number | undefined): MonthlyLine[] {
  return maxJobsInFlight === undefined ? [] : [{
    what: 'jobs in flight custom metric (EMF)',
    quantity: 1,
    price: 'cloudwatchMetricMonth',
    derivation: 'JobsInFlight (dispatcher and callback processor), one Scope dimension; the at-limit alarm is in the alarm count',
  }];
}
