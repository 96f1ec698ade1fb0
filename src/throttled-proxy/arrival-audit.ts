/**
 * The arrival audit's logic: measures, from API Gateway's clock, when each paced request reached
 * the proxy against the slot its caller fired it for (issue 13, item 2: the clock spread in `L`).
 *
 * The vendor caller writes its container and slot into its User-Agent
 * (`cdk-async-external-api-vendor-caller/<container> slot/<slot ms>`, see vendor-call.ts
 * `pacingUserAgent`), and the proxy's access log writes `$context.requestTimeEpoch` (when API
 * Gateway received the request, epoch milliseconds, by its own clock) beside it. A CloudWatch Logs
 * subscription delivers those lines to the audit function, which computes, per request,
 * `afterSlotMs = requestTimeEpoch - slot` = fire lateness + caller -> proxy latency + the caller's
 * clock offset, all read on one clock. Its spread (maximum - minimum) over every caller is what the
 * schedule's `L` must cover up to the proxy.
 *
 * Pure: no AWS SDK, no Powertools, no aws-cdk-lib (the construct imports the names below; the
 * `.lambda.ts` adapter publishes the result).
 */
import { gunzipSync } from 'node:zlib';

/**
 * Product token of the vendor caller's User-Agent. The same text as vendor-call.ts
 * `PACING_USER_AGENT_PRODUCT` (not imported: that module bundles the AWS SDK; a test checks they match).
 */
export const VENDOR_CALLER_USER_AGENT_PRODUCT = 'cdk-async-external-api-vendor-caller';

/** Metric names the audit publishes (namespace METRICS_NAMESPACE, dimension Scope). */
export const ArrivalAuditMetricNames = {
  /**
   * Per paced request: API Gateway's receive time minus the slot it was fired for, milliseconds.
   * Negative when the caller's clock runs ahead of API Gateway's by more than the path takes.
   */
  AFTER_SLOT: 'VendorArrivalAfterSlot',
  /** Access log lines delivered to the audit that it could not read (skipped, logged). Count. */
  LINES_SKIPPED: 'VendorArrivalLinesSkipped',
} as const;

/** The EMF documents carry at most this many values per metric (the EMF specification's limit). */
export const MAX_VALUES_PER_DOCUMENT = 100;

/** One paced request as the proxy received it. */
export interface Arrival {
  /** The vendor caller's execution environment (from its User-Agent). */
  readonly container: string;
  /** The slot the caller fired for, epoch milliseconds (may have a fraction). */
  readonly slotMs: number;
  /** `$context.requestTimeEpoch`: when API Gateway received the request, epoch milliseconds. */
  readonly receivedMs: number;
  /** `receivedMs - slotMs`, rounded to the microsecond. */
  readonly afterSlotMs: number;
}

/** Why a delivered line was not measured. */
export type SkipReason =
  /** Not JSON, or not an object. */
  | 'malformed'
  /** The User-Agent is not the vendor caller's (the subscription's filter normally keeps these out). */
  | 'not-vendor-caller'
  /** The vendor caller's User-Agent without a readable slot. */
  | 'no-slot'
  /** No readable requestTimeEpoch (`-` or missing). */
  | 'no-receive-time';

/** What one batch of access log lines gave. */
export interface ArrivalAudit {
  readonly arrivals: Arrival[];
  /** Lines skipped, by reason (only reasons that occurred). */
  readonly skipped: Partial<Record<SkipReason, number>>;
}

/** One EMF document's worth: up to MAX_VALUES_PER_DOCUMENT values of one container in one minute. */
export interface ArrivalGroup {
  readonly container: string;
  /** Timestamp of the document: the latest arrival of the group (API Gateway's clock). */
  readonly timestampMs: number;
  readonly afterSlotMs: number[];
  readonly minAfterSlotMs: number;
  readonly maxAfterSlotMs: number;
}

/** The subscription's event: `{ awslogs: { data: <base64 of gzipped JSON> } }`. */
export interface CloudWatchLogsSubscriptionEvent {
  readonly awslogs?: { readonly data?: string };
}

/** The decoded payload (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html). */
export interface CloudWatchLogsPayload {
  /** `DATA_MESSAGE`, or `CONTROL_MESSAGE` (CloudWatch Logs checking that the destination is reachable). */
  readonly messageType: string;
  readonly owner?: string;
  readonly logGroup?: string;
  readonly logStream?: string;
  readonly subscriptionFilters?: string[];
  readonly logEvents: Array<{ readonly id?: string; readonly timestamp?: number; readonly message: string }>;
}

/**
 * Decodes the subscription's payload. Throws when it is not base64 gzipped JSON with `logEvents`:
 * that is not a delivery of CloudWatch Logs, and no retry would make it one.
 */
export function decodeSubscriptionEvent(event: CloudWatchLogsSubscriptionEvent): CloudWatchLogsPayload {
  const data = event?.awslogs?.data;
  if (typeof data !== 'string' || data.length === 0) {
    throw new Error('not a CloudWatch Logs subscription event: awslogs.data is missing');
  }
  const payload = JSON.parse(gunzipSync(Buffer.from(data, 'base64')).toString('utf8')) as CloudWatchLogsPayload;
  if (typeof payload?.messageType !== 'string' || !Array.isArray(payload.logEvents)) {
    throw new Error('not a CloudWatch Logs subscription payload: messageType or logEvents is missing');
  }
  return payload;
}

const USER_AGENT = new RegExp(`^${VENDOR_CALLER_USER_AGENT_PRODUCT}/(\\S+) slot/(\\S+)$`);

/** Reads one access log line (the proxy's JSON format, see throttled-proxy.ts accessLogFormat). */
export function readArrival(message: string): Arrival | SkipReason {
  let line: unknown;
  try {
    line = JSON.parse(message);
  } catch {
    return 'malformed';
  }
  if (typeof line !== 'object' || line === null || Array.isArray(line)) {
    return 'malformed';
  }
  const { userAgent, requestTimeEpoch } = line as Record<string, unknown>;
  if (typeof userAgent !== 'string' || !userAgent.startsWith(`${VENDOR_CALLER_USER_AGENT_PRODUCT}/`)) {
    return 'not-vendor-caller';
  }
  const match = USER_AGENT.exec(userAgent);
  const slotMs = match ? Number(match[2]) : NaN;
  if (!match || !Number.isFinite(slotMs) || slotMs <= 0) {
    return 'no-slot';
  }
  // API Gateway writes '-' for a value it does not have; the format quotes every value.
  const receivedMs = typeof requestTimeEpoch === 'string' && /^\d+$/.test(requestTimeEpoch) ? Number(requestTimeEpoch)
    : typeof requestTimeEpoch === 'number' && Number.isInteger(requestTimeEpoch) ? requestTimeEpoch : NaN;
  if (!Number.isFinite(receivedMs) || receivedMs <= 0) {
    return 'no-receive-time';
  }
  return { container: match[1], slotMs, receivedMs, afterSlotMs: Math.round((receivedMs - slotMs) * 1000) / 1000 };
}

/** Reads every line of a batch; a line that cannot be read is counted and skipped, never fails the batch. */
export function auditArrivals(messages: readonly string[]): ArrivalAudit {
  const arrivals: Arrival[] = [];
  const skipped: Partial<Record<SkipReason, number>> = {};
  for (const message of messages) {
    const result = readArrival(message);
    if (typeof result === 'string') {
      skipped[result] = (skipped[result] ?? 0) + 1;
    } else {
      arrivals.push(result);
    }
  }
  return { arrivals, skipped };
}

/**
 * Groups arrivals by container and by the minute API Gateway received them, in chunks of at most
 * MAX_VALUES_PER_DOCUMENT: one EMF document each, timestamped by API Gateway's clock, so a
 * delivery that comes late still lands in the minute the requests arrived, and each document
 * names its one container (Logs Insights breaks the spread down per container from it).
 */
export function groupArrivals(arrivals: readonly Arrival[]): ArrivalGroup[] {
  const byKey = new Map<string, Arrival[]>();
  for (const arrival of arrivals) {
    const key = `${arrival.container} ${Math.floor(arrival.receivedMs / 60_000)}`;
    const list = byKey.get(key);
    if (list) {
      list.push(arrival);
    } else {
      byKey.set(key, [arrival]);
    }
  }
  const groups: ArrivalGroup[] = [];
  for (const list of byKey.values()) {
    for (let i = 0; i < list.length; i += MAX_VALUES_PER_DOCUMENT) {
      const chunk = list.slice(i, i + MAX_VALUES_PER_DOCUMENT);
      const values = chunk.map((a) => a.afterSlotMs);
      groups.push({
        container: chunk[0].container,
        timestampMs: Math.max(...chunk.map((a) => a.receivedMs)),
        afterSlotMs: values,
        minAfterSlotMs: Math.min(...values),
        maxAfterSlotMs: Math.max(...values),
      });
    }
  }
  return groups;
}
