/**
 * The waiting room of the jobs-in-flight limit (`VendorContract.maxJobsInFlight`, issue 14;
 * src/shared/job-waiting.ts): a request that finds every place taken is moved to the waiting queue
 * (an SQS queue nothing polls) and moved back when a freed place wakes it; once a minute the
 * `JobPlacesSweep` schedule invokes the dispatcher to drop expired places and wake waiters for free
 * places. Present only when the dispatcher has `MAX_JOBS_IN_FLIGHT` and `JOB_WAITING_QUEUE_URL`.
 *
 * Three kinds of cost, each derived from the template (queues, schedule, the dispatcher's and the
 * callback processor's memory and log level):
 *
 * - per job, on the happy path (nobody waits): whoever frees a place tries to wake a waiter with a
 *   short-poll ReceiveMessage, and asks once more when the answer is empty (short polling may
 *   answer empty although a message waits:
 *   https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html),
 *   so 2 ReceiveMessage per freed place ({@link wakeLinesPerJob});
 * - per wait (a request that found no place), priced per million waits whatever their length
 *   ({@link waitUsage}): the move there (SendMessage; the original deleted with its batch), the
 *   batch's failed take and two consistent reads of the places item, the wake (ReceiveMessage,
 *   SendMessage back, DeleteMessage) and the second pass through the request queue;
 * - per month ({@link sweepMonthly}): one Scheduler invocation and one dispatcher invocation per
 *   period, each a consistent read of the places item, a long-poll ReceiveMessage (1 s when nobody
 *   waits) and a GetQueueAttributes.
 */
import { LATENCY_MS, SECONDS_PER_MONTH, SIZE_BYTES, SQS_CHUNK_BYTES, SQS_MESSAGES_PER_CALL } from './assumptions';
import { fmt, fmtBytes, FunctionModel, lambdaLogBytesPerRequest, logLine, QueueFeed } from './derive';
import { jobPlacesItemBytes } from './jobs-in-flight';
import { DesignUsage, MonthlyLine, UsageLine } from './model';
import { LocalTemplate } from '../local/template';
import { JobWaitingEnv } from '../src/shared/env';
import { JOB_PLACES_SWEEP_KIND } from '../src/shared/scheduled-tick';

/** A wake's short poll and its one repeat when the answer is empty (shared/job-waiting.ts, wakeWaiters). */
export const EMPTY_WAKE_RECEIVES = 2;

/** The sweep's long poll when nobody waits (WaitTimeSeconds 1 in wakeWaiters): billed dispatcher time. */
export const SWEEP_LONG_POLL_MS = 1000;

/** The waiting room as read from the template. */
export interface WaitingRoomModel {
  /** The waiting queue's logical id. */
  readonly queue: string;
  /** The sweep schedule's logical id and period, when the template has one. */
  readonly sweep?: { readonly schedule: string; readonly periodSeconds: number };
}

/**
 * The waiting room of the dispatcher whose environment is `consumerEnv` (undefined without a
 * jobs-in-flight limit or without a waiting queue).
 */
export function waitingRoomOf(
  t: LocalTemplate, consumerEnv: Record<string, string>, dispatcherId: string, maxJobsInFlight: number | undefined,
): WaitingRoomModel | undefined {
  const url = consumerEnv[JobWaitingEnv.WAITING_QUEUE_URL];
  if (maxJobsInFlight === undefined || url === undefined || url.trim() === '') {
    return undefined;
  }
  const queue = t.ofType('AWS::SQS::Queue').find((q) => t.queueUrlOf(q.logicalId) === url);
  if (!queue) {
    throw new Error(`The dispatcher's ${JobWaitingEnv.WAITING_QUEUE_URL} (${url}) is not a queue of stack ${t.stackName}`);
  }
  const dispatcherArn = t.arnOf(dispatcherId);
  const schedule = t.ofType('AWS::Scheduler::Schedule').find((s) => {
    const target = s.properties.Target ?? {};
    return String(target.Arn) === dispatcherArn && String(target.Input ?? '').includes(JOB_PLACES_SWEEP_KIND);
  });
  if (!schedule) {
    return { queue: queue.logicalId };
  }
  const periodSeconds = rateSeconds(String(schedule.properties.ScheduleExpression), schedule.logicalId);
  return { queue: queue.logicalId, sweep: { schedule: schedule.logicalId, periodSeconds } };
}

/** Seconds between runs of a `rate(N unit)` schedule expression. */
export function rateSeconds(expression: string, id: string): number {
  const m = /^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$/.exec(expression.trim());
  if (!m) {
    throw new Error(`Schedule ${id}: expression ${JSON.stringify(expression)} is not rate(N minutes|hours|days): the cost model cannot count its runs`);
  }
  const unit = m[2].startsWith('minute') ? 60 : m[2].startsWith('hour') ? 3600 : 86400;
  return Number(m[1]) * unit;
}

/**
 * Per job: the freer's wake when nobody waits (the happy path): two short-poll ReceiveMessage on
 * the waiting queue, one after the other, in the callback processor.
 */
export function wakeLinesPerJob(room: WaitingRoomModel | undefined, processor: FunctionModel): UsageLine[] {
  if (!room) {
    return [];
  }
  const ms = EMPTY_WAKE_RECEIVES * LATENCY_MS.sqsCall;
  return [
    {
      service: 'sqs',
      what: `callback processor ${room.queue} ReceiveMessage (wake, nobody waits)`,
      perRequest: EMPTY_WAKE_RECEIVES,
      price: 'sqsRequest',
      derivation: 'every freed place wakes one waiter: a short poll, asked once more when empty (short polling may answer empty although a message waits); '
        + 'counted for every job, also when a waiter is found (its receive is priced per wait: an upper bound)',
    },
    {
      service: 'lambda',
      what: 'callback processor duration (wake)',
      perRequest: (ms / 1000) * (processor.memoryMb / 1024),
      price: processor.arm ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86',
      derivation: `${ms} ms per callback x ${processor.memoryMb} MB: the two receives`,
    },
  ];
}

export interface WaitContext {
  readonly room: WaitingRoomModel;
  readonly maxJobsInFlight: number;
  readonly requestQueue: string;
  readonly pacerTable: string;
  /** The request queue's feed (its fill is the batch a waiter is received in, both times). */
  readonly requestFeed: QueueFeed;
  readonly dispatcher: FunctionModel;
  /** The freer on the happy path: the callback processor. */
  readonly processor: FunctionModel;
}

/** Usage per wait: a request that found no place, moved to the waiting queue and back. */
export function waitUsage(c: WaitContext): DesignUsage {
  const fill = c.requestFeed.fill;
  const chunks = Math.ceil(c.requestFeed.messageBytes / SQS_CHUNK_BYTES);
  const batchCalls = Math.ceil(fill / SQS_MESSAGES_PER_CALL);
  const itemBytes = jobPlacesItemBytes(c.maxJobsInFlight);
  const writeUnits = Math.ceil(itemBytes / 1024);
  const readUnits = Math.ceil(itemBytes / 4096);
  const sized = `the places item with ${c.maxJobsInFlight} places is ${fmtBytes(itemBytes)}`;
  // The dispatcher's first pass, per batch of waiters: the failed take, the read of the places,
  // the sends (ten at a time), the read after the move (wakeWaitersForFreePlaces).
  const moveMs = 3 * LATENCY_MS.dynamodbCall + Math.ceil(fill / 10) * LATENCY_MS.sqsCall + LATENCY_MS.invocationOverhead;
  // The freer's wake: receive, then send back and delete, one after the other.
  const wakeMs = 3 * LATENCY_MS.sqsCall;
  const gbs = (ms: number, fn: FunctionModel) => (ms / 1000) * (fn.memoryMb / 1024);
  const info = SIZE_BYTES.powertoolsInfoLine + SIZE_BYTES.logEventOverhead;
  const dispatcherLogBytes = lambdaLogBytesPerRequest(c.dispatcher, fill, 0, true) + (c.dispatcher.infoLogs ? (2 * info) / fill : 0);
  const raw: UsageLine[] = [
    {
      service: 'sqs',
      what: `dispatcher ${c.room.queue} SendMessage (move to wait)`,
      perRequest: chunks,
      price: 'sqsRequest',
      derivation: `the request's body and attributes, ${fmtBytes(c.requestFeed.messageBytes)}: ${chunks} x 64 KB chunk; the original is deleted with its batch`,
    },
    {
      service: 'sqs',
      what: `request queue ${c.requestQueue} ReceiveMessage + DeleteMessageBatch (the pass that finds no place)`,
      perRequest: (2 * batchCalls) / fill,
      price: 'sqsRequest',
      derivation: `a waiter goes through the request queue twice (before it waits, and once woken): ${batchCalls} receive(s) and ${batchCalls} delete(s) per batch of ${fmt(fill)}`,
    },
    {
      service: 'sqs',
      what: `freer ${c.room.queue} ReceiveMessage (wake)`,
      perRequest: 1,
      price: 'sqsRequest',
      derivation: 'one waiter per freed place; the per-job lines already count 2 receives for every freed place, so a wait woken this way '
        + 'is counted one receive too many (an upper bound; a false empty short poll, repeated once, is that receive)',
    },
    {
      service: 'sqs',
      what: `freer ${c.requestQueue} SendMessage (woken, back to the request queue)`,
      perRequest: chunks,
      price: 'sqsRequest',
      derivation: `no delay, ${chunks} x 64 KB chunk`,
    },
    {
      service: 'sqs',
      what: `freer ${c.room.queue} DeleteMessage (woken)`,
      perRequest: 1,
      price: 'sqsRequest',
      derivation: 'after the send back',
    },
    {
      service: 'dynamodb',
      what: `dispatcher ${c.pacerTable} UpdateItem (failed take, per batch of waiters)`,
      perRequest: writeUnits / fill,
      price: 'dynamodbWriteRequestUnit',
      derivation: 'the first request of a batch to find the limit full: a failed conditional write still consumes write units, on the item\'s size '
        + `(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html); ${sized}: ${writeUnits} WRU per batch of ${fmt(fill)}`,
    },
    {
      service: 'dynamodb',
      what: `dispatcher ${c.pacerTable} GetItem (places, per batch of waiters)`,
      perRequest: (2 * readUnits) / fill,
      price: 'dynamodbReadRequestUnit',
      derivation: `two strongly consistent reads of the places item per batch of ${fmt(fill)} (the rest of the batch checked against the map; `
        + `free places after the move?), ${readUnits} RRU each`,
    },
    {
      service: 'lambda',
      what: 'dispatcher invocations (the pass that finds no place)',
      perRequest: 1 / fill,
      price: 'lambdaRequest',
      derivation: `${c.requestFeed.function}: 1 per batch of ${fmt(fill)}`,
    },
    {
      service: 'lambda',
      what: 'dispatcher duration (move to wait)',
      perRequest: gbs(moveMs / fill, c.dispatcher),
      price: c.dispatcher.arm ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86',
      derivation: `${moveMs} ms per batch of ${fmt(fill)} x ${c.dispatcher.memoryMb} MB: failed take, read, sends (10 at a time), read`,
    },
    {
      service: 'lambda',
      what: 'freer duration (wake)',
      perRequest: gbs(wakeMs, c.processor),
      price: c.processor.arm ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86',
      derivation: `${wakeMs} ms x ${c.processor.memoryMb} MB (the callback processor): receive, send, delete, one after the other`,
    },
    logLine('dispatcher logs (move to wait)', dispatcherLogBytes,
      `START/END/REPORT + one EMF document per invocation / ${fmt(fill)}${c.dispatcher.infoLogs ? ', two INFO lines per batch (requests wait, moved)' : ''}`),
    logLine('freer logs (wake)', c.processor.infoLogs ? info : 0, c.processor.infoLogs ? 'one INFO line (waiting requests woken)' : 'no INFO lines at this log level'),
  ];
  // logLine says "per request"; here a request is a wait.
  const lines = raw.map((l) => (l.service === 'cloudwatchLogs' ? { ...l, derivation: l.derivation.replace(' per request: ', ' per wait: ') } : l));
  return {
    name: 'a wait for a job place',
    description: `a request that finds all ${c.maxJobsInFlight} places taken waits in ${c.room.queue} (no cost while it waits) and is woken by a freed place`,
    lines,
    monthly: [],
  };
}

export interface SweepContext {
  readonly room: WaitingRoomModel;
  readonly maxJobsInFlight: number;
  readonly dispatcher: FunctionModel;
}

/** The sweep's cost a month (none without its schedule). */
export function sweepMonthly(c: SweepContext): MonthlyLine[] {
  const sweep = c.room.sweep;
  if (!sweep) {
    return [];
  }
  const runs = SECONDS_PER_MONTH / sweep.periodSeconds;
  const readUnits = Math.ceil(jobPlacesItemBytes(c.maxJobsInFlight) / 4096);
  // GetItem, the long poll (nobody waits, a place free: the poll waits its whole second),
  // GetQueueAttributes, the invocation's own overhead.
  const ms = LATENCY_MS.dynamodbCall + SWEEP_LONG_POLL_MS + LATENCY_MS.sqsCall + LATENCY_MS.invocationOverhead;
  const logBytes = lambdaLogBytesPerRequest(c.dispatcher, 1, 1, false);
  const every = `every ${fmt(sweep.periodSeconds / 60)} min (${sweep.schedule}): ${Math.round(runs).toLocaleString('en-US')} runs in 30 days`;
  return [
    {
      what: 'jobs-in-flight sweep: Scheduler invocations',
      quantity: runs,
      price: 'schedulerInvocation',
      derivation: `${every} (the first 14 million scheduled invocations a month are free, excluded here)`,
    },
    { what: 'jobs-in-flight sweep: dispatcher invocations', quantity: runs, price: 'lambdaRequest', derivation: every },
    {
      what: 'jobs-in-flight sweep: dispatcher duration (GB-s)',
      quantity: runs * (ms / 1000) * (c.dispatcher.memoryMb / 1024),
      price: c.dispatcher.arm ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86',
      derivation: `${ms} ms per run x ${c.dispatcher.memoryMb} MB: GetItem, a 1 s long poll that finds nobody, GetQueueAttributes`,
    },
    {
      what: 'jobs-in-flight sweep: places reads (RRU)',
      quantity: runs * readUnits,
      price: 'dynamodbReadRequestUnit',
      derivation: `one strongly consistent GetItem of the places item per run (${readUnits} RRU at ${c.maxJobsInFlight} places); expired places dropped only when there are some`,
    },
    {
      what: 'jobs-in-flight sweep: SQS requests',
      quantity: runs * 2,
      price: 'sqsRequest',
      derivation: 'per run a long-poll ReceiveMessage on the waiting queue and a GetQueueAttributes (its depth)',
    },
    {
      what: 'jobs-in-flight sweep: logs (GB)',
      quantity: (runs * logBytes) / 1024 ** 3,
      price: 'logsIngestedGb',
      derivation: `${fmtBytes(logBytes)} per run: START/END/REPORT${c.dispatcher.infoLogs ? ' and one INFO line (sweep done)' : ''}`,
    },
  ];
}
