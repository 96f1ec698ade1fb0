/**
 * The exact audit of the rate guarantee from the proxy's own access log: pure functions, no AWS
 * SDK, no CDK (the `cdk-async-external-api-audit` CLI and the local runtime's tests use them).
 *
 * The guarantee counts CLOSED sliding windows, [a - W, a] for every arrival a (README, "Pacing"),
 * with W = 1 s and at most floor(R) requests when R >= 1, and W = 1/R s and at most one request when
 * R < 1. Calendar seconds only bound that from below: a window that straddles two seconds can hold
 * more than either. So this audit slides the window over every arrival, on API Gateway's own
 * clock (`requestTimeEpoch`, epoch milliseconds:
 * https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-variables-for-access-logging.html).
 * Named limits (`VendorLimit`) are audited the same way over the calls each binds, matched by
 * method and request path with the library's own `limitsForCall`.
 */
import { limitsForCall, NamedLimitSpec } from '../contract/named-limit';

/**
 * Gateway responses API Gateway answers itself, before it calls the integration: a request logged
 * with one of these never reached the vendor and does not count against the contract
 * (https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html).
 * Everything else counts, including the vendor's own 429s and 5xx (the vendor received them) and
 * INTEGRATION_TIMEOUT / INTEGRATION_FAILURE / API_CONFIGURATION_ERROR / DEFAULT_5XX, for which the
 * log cannot say whether the vendor saw the request: an audit errs towards counting too many.
 */
export const REFUSED_BEFORE_VENDOR: readonly string[] = [
  // The ones the proxy can answer (IAM authorization, resource policy, stage throttling, payload limit, WAF).
  'THROTTLED',
  'ACCESS_DENIED',
  'MISSING_AUTHENTICATION_TOKEN',
  'INVALID_SIGNATURE',
  'EXPIRED_TOKEN',
  'UNAUTHORIZED',
  'REQUEST_TOO_LARGE',
  'WAF_FILTERED',
  'RESOURCE_NOT_FOUND',
  'QUOTA_EXCEEDED',
  // Features the proxy does not use (authorizers, API keys, request validation): listed so an
  // operator's addition (e.g. a request validator) does not turn refusals into counted calls.
  'AUTHORIZER_FAILURE',
  'AUTHORIZER_CONFIGURATION_ERROR',
  'INVALID_API_KEY',
  'BAD_REQUEST_PARAMETERS',
  'BAD_REQUEST_BODY',
  'UNSUPPORTED_MEDIA_TYPE',
];

/** One access log line of the proxy, as far as the audit reads it (every value is a string in the log). */
export interface AccessLogRecord {
  /** When API Gateway received the request, epoch milliseconds (its own clock). */
  readonly requestTimeEpoch: number;
  readonly status?: string;
  readonly integrationStatus?: string;
  readonly errorResponseType?: string;
  readonly httpMethod?: string;
  readonly resourcePath?: string;
  /**
   * `$context.path`: the path the caller requested, stage included on the execute-api URL
   * (`/{stage}/results/42`). Absent in lines written before the format had it.
   */
  readonly path?: string;
  /** `$context.stage`. */
  readonly stage?: string;
  readonly requestId?: string;
}

/**
 * The path the proxy forwarded to the vendor (the vendor URL's path below it): `$context.path`
 * without the stage, which it includes when the proxy is called on its execute-api URL
 * (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-variables-for-access-logging.html:
 * `/{stage}/root/child`). Undefined when the line has no path (an older log format).
 */
export function vendorPath(record: AccessLogRecord): string | undefined {
  const path = record.path;
  if (path === undefined || path === '-') {
    return undefined;
  }
  const stagePrefix = record.stage !== undefined && record.stage !== '-' ? `/${record.stage}` : undefined;
  if (stagePrefix !== undefined && (path === stagePrefix || path.startsWith(`${stagePrefix}/`))) {
    return path.slice(stagePrefix.length) || '/';
  }
  return path;
}

/** Whether the proxy forwarded the request to the vendor (it counts against the contract). */
export function reachedVendor(record: AccessLogRecord): boolean {
  return !REFUSED_BEFORE_VENDOR.includes(record.errorResponseType ?? '-');
}

/** The sliding window and the most requests it may hold under a contract of `requestsPerSecond`. */
export interface ContractWindow {
  /** Length of the closed window [a - windowMs, a], milliseconds. */
  readonly windowMs: number;
  /** The most requests the guarantee allows in one window. */
  readonly limit: number;
}

/**
 * The window the guarantee is stated for (README, "Pacing"): 1 s holding floor(R) when R >= 1;
 * 1/R s holding one when R < 1. `spreadMs` widens it by the spread of the proxy -> vendor hop: a
 * closed 1-second window on the vendor's clock holds requests that reached the proxy within
 * 1 s + spread, so a count at most `limit` in every widened window proves the vendor's windows too.
 */
export function contractWindow(requestsPerSecond: number, spreadMs: number = 0): ContractWindow {
  if (!(requestsPerSecond > 0) || !Number.isFinite(requestsPerSecond)) {
    throw new Error(`requestsPerSecond must be a number above 0 (given ${requestsPerSecond})`);
  }
  if (!(spreadMs >= 0) || !Number.isFinite(spreadMs)) {
    throw new Error(`the spread must be 0 ms or more (given ${spreadMs})`);
  }
  return requestsPerSecond >= 1
    ? { windowMs: 1000 + spreadMs, limit: Math.floor(requestsPerSecond) }
    // Whole-millisecond timestamps: two requests at most 1000/R ms apart share a closed window of
    // 1/R s exactly when they are at most floor(1000/R) ms apart.
    : { windowMs: Math.floor(1000 / requestsPerSecond) + spreadMs, limit: 1 };
}

/** The busiest closed window of a set of arrivals. */
export interface BusiestWindow {
  /** Requests in it. */
  readonly count: number;
  /** Its first arrival, epoch ms (the window is [endMs - windowMs, endMs]). */
  readonly firstMs: number;
  /** Its last arrival, epoch ms: where the window ends. */
  readonly endMs: number;
}

/**
 * The most arrivals in any closed window [a_i - windowMs, a_i] (an arrival exactly `windowMs`
 * before another counts in its window), and, when `limit` is given, how many arrivals found their
 * window over it (as a strict vendor counts violations: each such arrival is one).
 */
export function slidingWindowAudit(arrivalsMs: readonly number[], windowMs: number, limit?: number): { busiest: BusiestWindow; violations: number } {
  const sorted = [...arrivalsMs].sort((a, b) => a - b);
  let busiest: BusiestWindow = { count: 0, firstMs: NaN, endMs: NaN };
  let violations = 0;
  let left = 0;
  for (let right = 0; right < sorted.length; right++) {
    while (sorted[left] < sorted[right] - windowMs) {
      left++;
    }
    const count = right - left + 1;
    if (count > busiest.count) {
      busiest = { count, firstMs: sorted[left], endMs: sorted[right] };
    }
    if (limit !== undefined && count > limit) {
      violations++;
    }
  }
  return { busiest, violations };
}

/**
 * The most arrivals in one calendar second (UTC, whole seconds of `requestTimeEpoch`): what the
 * Contributor Insights rule keyed on `requestTime` sees. At most the busiest sliding 1-second
 * window, and at least half of it.
 */
export function busiestCalendarSecond(arrivalsMs: readonly number[]): { count: number; secondMs: number } {
  const perSecond = new Map<number, number>();
  for (const a of arrivalsMs) {
    const second = Math.floor(a / 1000) * 1000;
    perSecond.set(second, (perSecond.get(second) ?? 0) + 1);
  }
  let best = { count: 0, secondMs: NaN };
  for (const [secondMs, count] of perSecond) {
    if (count > best.count || (count === best.count && secondMs < best.secondMs)) {
      best = { count, secondMs };
    }
  }
  return best;
}

/** What the audit found in a set of access log lines. */
export interface AccessLogAuditReport {
  /** Log lines read. */
  readonly lines: number;
  /** Requests the proxy forwarded to the vendor (they count against the contract). */
  readonly forwarded: number;
  /** Requests API Gateway refused itself (REFUSED_BEFORE_VENDOR), by gateway response type. */
  readonly refusedBeforeVendor: Readonly<Record<string, number>>;
  /** 429s the vendor answered (integrationStatus 429): forwarded, so counted. */
  readonly vendorThrottles: number;
  /** First and last forwarded request, epoch ms (NaN when none). */
  readonly fromMs: number;
  readonly toMs: number;
  /** The window audited and the most it may hold. */
  readonly windowMs: number;
  readonly limit?: number;
  /** The busiest closed window of forwarded requests. */
  readonly busiest: BusiestWindow;
  /** Forwarded requests that found their window over `limit` (0 when no limit was given). */
  readonly violations: number;
  /** The busiest calendar second (what the Contributor Insights rule reports), for comparison. */
  readonly busiestCalendarSecond: { readonly count: number; readonly secondMs: number };
  /** The busiest closed window per route (`httpMethod resourcePath`). */
  readonly byRoute: Readonly<Record<string, { readonly forwarded: number; readonly busiest: number }>>;
  /** Per named limit audited (by name): its window, busiest closed window and violations. Empty when none was given. */
  readonly byLimit: Readonly<Record<string, NamedLimitAudit>>;
}

/** The audit of one named limit over the forwarded calls it binds. */
export interface NamedLimitAudit {
  /** The limit audited. */
  readonly spec: NamedLimitSpec;
  /** Its window (contractWindow of its rate, widened by the spread) and the most it may hold. */
  readonly windowMs: number;
  readonly limit: number;
  /** Forwarded calls the limit binds. */
  readonly forwarded: number;
  /** The busiest closed window of those calls. */
  readonly busiest: BusiestWindow;
  /** Those calls that found their window over `limit`. */
  readonly violations: number;
}

/** Named limits to audit besides the contract. */
export interface NamedLimitAuditOptions {
  /** The named limits (each audited in its own contract window). */
  readonly namedLimits?: readonly NamedLimitSpec[];
  /** The proxy -> vendor hop spread that widens each limit's window, ms. Default 0. */
  readonly spreadMs?: number;
}

/**
 * Audits access log records: the busiest closed window of `windowMs` and the windows over `limit`,
 * and each named limit of `options` in its own window over the forwarded calls it binds.
 */
export function auditAccessLog(
  records: readonly AccessLogRecord[], windowMs: number, limit?: number, options: NamedLimitAuditOptions = {},
): AccessLogAuditReport {
  if (!(windowMs > 0) || !Number.isFinite(windowMs)) {
    throw new Error(`the window must be above 0 ms (given ${windowMs})`);
  }
  const refused: Record<string, number> = {};
  const forwarded: number[] = [];
  const byRoute = new Map<string, number[]>();
  const namedLimits = options.namedLimits ?? [];
  const byLimit = new Map<string, number[]>(namedLimits.map((l) => [l.name, []]));
  let vendorThrottles = 0;
  for (const r of records) {
    if (!reachedVendor(r)) {
      const type = r.errorResponseType ?? '-';
      refused[type] = (refused[type] ?? 0) + 1;
      continue;
    }
    forwarded.push(r.requestTimeEpoch);
    if (r.integrationStatus === '429') {
      vendorThrottles++;
    }
    const route = `${r.httpMethod ?? '-'} ${r.resourcePath ?? '-'}`;
    const arrivals = byRoute.get(route) ?? [];
    arrivals.push(r.requestTimeEpoch);
    byRoute.set(route, arrivals);
    if (namedLimits.length > 0) {
      const path = vendorPath(r);
      if (path === undefined || r.httpMethod === undefined || r.httpMethod === '-') {
        throw new Error(`request ${r.requestId ?? r.requestTimeEpoch} has no path or method in the access log, so named limits cannot be audited: `
          + 'the proxy\'s access log format has `path` ($context.path) from this version on; audit lines written before it with --rps only');
      }
      for (const l of limitsForCall(namedLimits, r.httpMethod, path)) {
        byLimit.get(l.name)!.push(r.requestTimeEpoch);
      }
    }
  }
  const { busiest, violations } = slidingWindowAudit(forwarded, windowMs, limit);
  return {
    lines: records.length,
    forwarded: forwarded.length,
    refusedBeforeVendor: refused,
    vendorThrottles,
    fromMs: forwarded.length > 0 ? Math.min(...forwarded) : NaN,
    toMs: forwarded.length > 0 ? Math.max(...forwarded) : NaN,
    windowMs,
    ...(limit === undefined ? {} : { limit }),
    busiest,
    violations,
    busiestCalendarSecond: busiestCalendarSecond(forwarded),
    byRoute: Object.fromEntries([...byRoute].map(([route, arrivals]) => [route, {
      forwarded: arrivals.length,
      busiest: slidingWindowAudit(arrivals, windowMs).busiest.count,
    }])),
    byLimit: Object.fromEntries(namedLimits.map((spec) => {
      const window = contractWindow(spec.requestsPerSecond, options.spreadMs ?? 0);
      const arrivals = byLimit.get(spec.name)!;
      const audit = slidingWindowAudit(arrivals, window.windowMs, window.limit);
      return [spec.name, { spec, windowMs: window.windowMs, limit: window.limit, forwarded: arrivals.length, ...audit }];
    })),
  };
}

/**
 * Reads the access log lines an operator exported, in any of these shapes:
 * - the log lines themselves, one JSON object a line (e.g. the messages of
 *   `aws logs filter-log-events`, or the local runtime's `accessLog(apiId)`);
 * - the JSON document of `aws logs filter-log-events` (`{"events": [{"message": "..."}]}`), or
 *   several of them (one per page), or its events one a line;
 * - the JSON document of `aws logs get-query-results` (`{"results": [[{"field", "value"}]]}`)
 *   of a query that returns `@message`, or the fields the audit reads.
 * Lines without `requestTimeEpoch` (not the proxy's format) are refused with the line number.
 */
export function parseAccessLogExport(text: string): AccessLogRecord[] {
  const documents = parseJsonDocuments(text);
  const records: AccessLogRecord[] = [];
  documents.forEach((doc, index) => {
    for (const item of unwrap(doc)) {
      records.push(toRecord(item, index + 1));
    }
  });
  return records;
}

/** The JSON values in `text`: one document, or one per line. */
function parseJsonDocuments(text: string): unknown[] {
  const trimmed = text.trim();
  if (trimmed === '') {
    return [];
  }
  try {
    return [JSON.parse(trimmed)];
  } catch {
    // Not one document: JSON lines, or concatenated pages (`}{` or `}\n{`).
  }
  const docs: unknown[] = [];
  const lines = trimmed.split(/\r?\n/);
  let pending = '';
  lines.forEach((line, i) => {
    pending = pending === '' ? line : `${pending}\n${line}`;
    if (pending.trim() === '') {
      pending = '';
      return;
    }
    try {
      docs.push(JSON.parse(pending));
      pending = '';
    } catch (e) {
      // A pretty-printed page goes on over several lines; a line that starts a new value while
      // the pending text is a single broken line is an error.
      if (i === lines.length - 1) {
        throw new Error(`line ${i + 1}: not JSON (${(e as Error).message}): ${pending.slice(0, 200)}`);
      }
    }
  });
  return docs;
}

/** The log lines (objects) one document holds. */
function unwrap(doc: unknown): unknown[] {
  if (Array.isArray(doc)) {
    return doc.flatMap(unwrap);
  }
  if (doc !== null && typeof doc === 'object') {
    const o = doc as Record<string, unknown>;
    if (Array.isArray(o.events)) {
      return (o.events as unknown[]).flatMap(unwrap);
    }
    if (Array.isArray(o.results)) {
      return (o.results as unknown[]).map(queryResultRow);
    }
    if (typeof o.message === 'string') {
      return [JSON.parse(o.message)];
    }
    if (typeof o['@message'] === 'string') {
      return [JSON.parse(o['@message'] as string)];
    }
  }
  if (typeof doc === 'string') {
    return [JSON.parse(doc)];
  }
  return [doc];
}

/** A Logs Insights result row (`[{field, value}]`) as the log line it came from. */
function queryResultRow(row: unknown): unknown {
  if (!Array.isArray(row)) {
    return row;
  }
  const fields: Record<string, string> = {};
  for (const cell of row as Array<{ field?: string; value?: string }>) {
    if (cell && typeof cell.field === 'string') {
      fields[cell.field] = String(cell.value ?? '');
    }
  }
  return fields['@message'] !== undefined ? JSON.parse(fields['@message']) : fields;
}

function toRecord(item: unknown, documentNumber: number): AccessLogRecord {
  const o = (item ?? {}) as Record<string, unknown>;
  const epoch = Number(o.requestTimeEpoch);
  if (o.requestTimeEpoch === undefined || !Number.isFinite(epoch)) {
    throw new Error(`entry ${documentNumber}: no requestTimeEpoch (epoch milliseconds), so it is not a line of the proxy's access log: ${JSON.stringify(item).slice(0, 200)}`);
  }
  const text = (key: string): string | undefined => (o[key] === undefined || o[key] === null ? undefined : String(o[key]));
  return {
    requestTimeEpoch: epoch,
    status: text('status'),
    integrationStatus: text('integrationStatus'),
    errorResponseType: text('errorResponseType'),
    httpMethod: text('httpMethod'),
    resourcePath: text('resourcePath'),
    path: text('path'),
    stage: text('stage'),
    requestId: text('requestId'),
  };
}
