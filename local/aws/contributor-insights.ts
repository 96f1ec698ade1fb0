/**
 * CloudWatch Contributor Insights, as far as the access log audit needs it: evaluates a rule body
 * (JSON log format) against log events and returns, per period, the statistics that
 * `INSIGHT_RULE_METRIC` gives (`MaxContributorValue`, `UniqueContributors`, `SampleCount`, `Sum`).
 * CloudWatch is not emulated by the local runtime; this lets tests run the synthesized rule on the
 * local access log lines. Strict: a rule using anything not implemented here throws.
 *
 * Semantics from https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/ContributorInsights-RuleSyntax.html
 * (case-sensitive matching; up to 4 keys, a contributor is a unique combination of their values;
 * up to 4 filters, ANDed; In/NotIn/StartsWith take up to 10 strings, ORed; GreaterThan, LessThan,
 * EqualTo, NotEqualTo a number; IsPresent a boolean) and
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/ContributorInsights-GraphReportData.html
 * (the metrics). Assumption (AWS does not document it): an event falls in the period of its log
 * event timestamp, which for API Gateway access logs is when the line was written, not `requestTime`.
 */

/** One log event: its timestamp (epoch ms) and its message (a JSON line). */
export interface LogEvent {
  readonly timestamp: number;
  readonly message: string;
}

/** The statistics of one period. */
export interface InsightRulePeriod {
  /** Start of the period, epoch ms. */
  readonly startMs: number;
  readonly uniqueContributors: number;
  readonly maxContributorValue: number;
  /** The top contributor's key values (the first one on a tie, in order of appearance). */
  readonly maxContributor: string[];
  /** Events the rule matched. */
  readonly sampleCount: number;
  readonly sum: number;
}

interface Filter {
  readonly Match: string;
  readonly In?: string[];
  readonly NotIn?: string[];
  readonly StartsWith?: string[];
  readonly GreaterThan?: number;
  readonly LessThan?: number;
  readonly EqualTo?: number;
  readonly NotEqualTo?: number;
  readonly IsPresent?: boolean;
}

interface PeriodState {
  readonly contributors: Map<string, number>;
  /** Contributor ids in order of first appearance (ties go to the first). */
  readonly order: string[];
  sampleCount: number;
  sum: number;
}

const OPERATORS = ['In', 'NotIn', 'StartsWith', 'GreaterThan', 'LessThan', 'EqualTo', 'NotEqualTo', 'IsPresent'];

/** Evaluates `ruleBody` (the rule's JSON, parsed) over `events`, in periods of `periodSeconds`. */
export function evaluateInsightRule(ruleBody: unknown, events: readonly LogEvent[], periodSeconds: number = 60): InsightRulePeriod[] {
  const rule = checkRule(ruleBody);
  const periodMs = periodSeconds * 1000;
  const periods = new Map<number, PeriodState>();
  for (const event of events) {
    const log = JSON.parse(event.message) as unknown;
    if (!rule.filters.every((f) => matches(f, log))) {
      continue;
    }
    const keys = rule.keys.map((k) => valueAt(log, k));
    if (keys.some((k) => k === undefined)) {
      continue; // An event without a key field contributes nothing.
    }
    const value = rule.valueOf === undefined ? 1 : Number(valueAt(log, rule.valueOf));
    if (!Number.isFinite(value)) {
      continue;
    }
    const startMs = Math.floor(event.timestamp / periodMs) * periodMs;
    const period: PeriodState = periods.get(startMs) ?? { contributors: new Map<string, number>(), order: [], sampleCount: 0, sum: 0 };
    const id = JSON.stringify(keys.map(String));
    if (!period.contributors.has(id)) {
      period.order.push(id);
    }
    period.contributors.set(id, (period.contributors.get(id) ?? 0) + value);
    period.sampleCount++;
    period.sum += value;
    periods.set(startMs, period);
  }
  return [...periods.entries()].sort(([a], [b]) => a - b).map(([startMs, p]) => {
    let top = p.order[0];
    for (const id of p.order) {
      if (p.contributors.get(id)! > p.contributors.get(top)!) {
        top = id;
      }
    }
    return {
      startMs,
      uniqueContributors: p.contributors.size,
      maxContributorValue: p.contributors.get(top)!,
      maxContributor: JSON.parse(top) as string[],
      sampleCount: p.sampleCount,
      sum: p.sum,
    };
  });
}

function checkRule(body: unknown): { keys: string[]; filters: Filter[]; valueOf?: string } {
  const rule = body as Record<string, any>;
  if (rule?.Schema?.Name !== 'CloudWatchLogRule' || rule?.Schema?.Version !== 1) {
    throw new Error(`Contributor Insights: Schema must be {"Name": "CloudWatchLogRule", "Version": 1} (given ${JSON.stringify(rule?.Schema)})`);
  }
  if (rule.LogFormat !== 'JSON') {
    throw new Error(`Contributor Insights: only LogFormat JSON is implemented here (given ${rule.LogFormat})`);
  }
  const keys = rule.Contribution?.Keys;
  if (!Array.isArray(keys) || keys.length < 1 || keys.length > 4) {
    throw new Error(`Contribution.Keys must hold 1 to 4 fields (given ${JSON.stringify(keys)})`);
  }
  const filters: Filter[] = rule.Contribution.Filters ?? [];
  if (filters.length > 4) {
    throw new Error(`Contribution.Filters holds at most 4 filters (given ${filters.length})`);
  }
  for (const f of filters) {
    const ops = Object.keys(f).filter((k) => k !== 'Match');
    if (typeof f.Match !== 'string' || ops.length !== 1 || !OPERATORS.includes(ops[0])) {
      throw new Error(`a filter needs Match and one of ${OPERATORS.join(', ')} (given ${JSON.stringify(f)})`);
    }
    const values = (f as any)[ops[0]];
    if (['In', 'NotIn', 'StartsWith'].includes(ops[0]) && (!Array.isArray(values) || values.length > 10 || values.some((v: unknown) => typeof v !== 'string'))) {
      throw new Error(`${ops[0]} takes up to 10 strings (given ${JSON.stringify(values)})`);
    }
  }
  if (rule.AggregateOn !== 'Count' && rule.AggregateOn !== 'Sum') {
    throw new Error(`AggregateOn must be Count or Sum (given ${rule.AggregateOn})`);
  }
  if ((rule.AggregateOn === 'Sum') !== (rule.Contribution.ValueOf !== undefined)) {
    throw new Error('ValueOf is given with AggregateOn Sum, and only then');
  }
  return { keys, filters, valueOf: rule.Contribution.ValueOf };
}

/** The value at a JSON property path (`$.a.b`, `$.list[0]`), or undefined. */
function valueAt(log: unknown, path: string): unknown {
  if (!path.startsWith('$.')) {
    throw new Error(`a field must be in JSON property format, starting with $. (given ${path})`);
  }
  let current: unknown = log;
  for (const part of path.slice(2).split('.')) {
    const m = /^([^[\]]+)((?:\[\d+\])*)$/.exec(part);
    if (!m) {
      throw new Error(`unsupported JSON property path ${path}`);
    }
    current = (current as Record<string, unknown> | undefined)?.[m[1]];
    for (const index of m[2].match(/\d+/g) ?? []) {
      current = (current as unknown[] | undefined)?.[Number(index)];
    }
  }
  return current === null ? undefined : current;
}

function matches(f: Filter, log: unknown): boolean {
  const value = valueAt(log, f.Match);
  if (f.IsPresent !== undefined) {
    return (value !== undefined) === f.IsPresent;
  }
  if (f.In) return value !== undefined && f.In.includes(String(value));
  if (f.NotIn) return value !== undefined && !f.NotIn.includes(String(value));
  if (f.StartsWith) return value !== undefined && f.StartsWith.some((p) => String(value).startsWith(p));
  const n = Number(value);
  if (value === undefined || !Number.isFinite(n)) return false;
  if (f.GreaterThan !== undefined) return n > f.GreaterThan;
  if (f.LessThan !== undefined) return n < f.LessThan;
  if (f.EqualTo !== undefined) return n === f.EqualTo;
  return n !== f.NotEqualTo;
}
