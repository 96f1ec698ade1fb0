/**
 * CloudWatch Logs subscription filters (`AWS::Logs::SubscriptionFilter`) with a Lambda destination,
 * on the log groups the local runtime writes: the REST API stages' access logs.
 *
 * Every `intervalMs` (and on `flush()`), the access log lines written since the last delivery that
 * match the filter's pattern go to the destination function in the payload CloudWatch Logs sends:
 * `{ awslogs: { data } }`, `data` the base64 of gzipped JSON `{ messageType: 'DATA_MESSAGE', owner,
 * logGroup, logStream, subscriptionFilters, logEvents: [{ id, timestamp, message }] }`
 * (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html), in batches.
 * CloudWatch Logs invokes the function asynchronously, and Lambda retries a failed asynchronous
 * invocation twice before it drops the event (https://docs.aws.amazon.com/lambda/latest/dg/invocation-retries.html):
 * so does this, at once rather than after Lambda's back-off.
 *
 * Only what the library's templates use is implemented, and anything else fails at load, naming
 * the resource: a Lambda destination of the stack (no Kinesis, Firehose or cross-account
 * destination, no RoleArn), a log group that is an access log group of a stage, and the JSON
 * filter pattern `{ $.field = "value" }` / `{ $.field = "prefix*" }` (one equality, a trailing
 * wildcard at most).
 */
import { gzipSync } from 'node:zlib';
import { LOCAL_ACCOUNT, ResolvedResource } from '../types';

/** Most log events per delivered batch (a local choice: AWS batches by size and time). */
export const MAX_EVENTS_PER_DELIVERY = 500;

export interface LocalLogSubscriptionsOptions {
  /** The template's `AWS::Logs::SubscriptionFilter` resources. */
  readonly filters: ResolvedResource[];
  /** The template's `AWS::ApiGateway::Stage` resources (their AccessLogSetting names the log group). */
  readonly stages: ResolvedResource[];
  /** Function ARNs of the stack: a destination must be one of them. */
  readonly functionArns: readonly string[];
  /** The access log lines of a REST API so far (LocalApiGateway.accessLog). */
  readonly readAccessLog: (apiId: string) => Promise<string[]>;
  /** Invokes a function by ARN; rejects with the function's error. */
  readonly invoke: (functionArn: string, event: unknown) => Promise<unknown>;
  /** How often lines are delivered without `flush()` (default 2000 ms); 0: only on `flush()`. */
  readonly intervalMs?: number;
  readonly clock?: () => number;
}

/** One delivery of a batch to a destination. */
export interface LogDelivery {
  readonly filter: string;
  readonly functionArn: string;
  readonly events: number;
  /** What the function returned; undefined when every attempt failed. */
  readonly result?: unknown;
  /** The last error, when every attempt (3) failed and the batch was dropped. */
  readonly error?: string;
}

interface CompiledFilter {
  readonly logicalId: string;
  readonly name: string;
  readonly logGroupName: string;
  readonly apiId: string;
  readonly stageName: string;
  readonly functionArn: string;
  readonly matches: (message: string) => boolean;
  /** Lines of the API's access log already looked at. */
  cursor: number;
}

export class LocalLogSubscriptions {
  private readonly filters: CompiledFilter[];
  private readonly clock: () => number;
  private timer?: NodeJS.Timeout;
  private running?: Promise<LogDelivery[]>;
  private eventId = 0;
  private readonly deliveries: LogDelivery[] = [];

  constructor(private readonly options: LocalLogSubscriptionsOptions) {
    this.clock = options.clock ?? Date.now;
    const accessLogGroups = new Map<string, { apiId: string; stageName: string }>();
    for (const stage of options.stages) {
      const arn = stage.properties.AccessLogSetting?.DestinationArn;
      if (typeof arn === 'string') {
        accessLogGroups.set(logGroupNameOfArn(arn), { apiId: String(stage.properties.RestApiId), stageName: String(stage.properties.StageName) });
      }
    }
    this.filters = options.filters.map((r) => compileFilter(r, accessLogGroups, options.functionArns));
  }

  /** Delivers on a timer (see `intervalMs`). */
  public start(): void {
    const interval = this.options.intervalMs ?? 2000;
    if (interval > 0 && this.filters.length > 0 && !this.timer) {
      this.timer = setInterval(() => void this.flush().catch(() => undefined), interval);
      this.timer.unref();
    }
  }

  /**
   * Delivers every matching line written so far and waits for the invocations; returns this
   * call's deliveries. Concurrent calls wait for the one running, then deliver what is left.
   */
  public async flush(): Promise<LogDelivery[]> {
    while (this.running) {
      await this.running;
    }
    this.running = this.deliverNew();
    try {
      return await this.running;
    } finally {
      this.running = undefined;
    }
  }

  /** Every delivery so far. */
  public history(): LogDelivery[] {
    return [...this.deliveries];
  }

  public async stop(): Promise<void> {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    await this.running?.catch(() => undefined);
  }

  private async deliverNew(): Promise<LogDelivery[]> {
    const out: LogDelivery[] = [];
    for (const filter of this.filters) {
      const lines = await this.options.readAccessLog(filter.apiId);
      const fresh = lines.slice(filter.cursor);
      filter.cursor = lines.length;
      const now = this.clock();
      const events = fresh.filter(filter.matches).map((message) => ({ id: String(++this.eventId).padStart(20, '0'), timestamp: now, message }));
      for (let i = 0; i < events.length; i += MAX_EVENTS_PER_DELIVERY) {
        const batch = events.slice(i, i + MAX_EVENTS_PER_DELIVERY);
        const payload = {
          messageType: 'DATA_MESSAGE',
          owner: LOCAL_ACCOUNT,
          logGroup: filter.logGroupName,
          logStream: `${filter.apiId}_${filter.stageName}`,
          subscriptionFilters: [filter.name],
          logEvents: batch,
        };
        const event = { awslogs: { data: gzipSync(Buffer.from(JSON.stringify(payload), 'utf8')).toString('base64') } };
        out.push(await this.invokeWithRetries(filter, event, batch.length));
      }
    }
    this.deliveries.push(...out);
    return out;
  }

  private async invokeWithRetries(filter: CompiledFilter, event: unknown, events: number): Promise<LogDelivery> {
    let error = '';
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const result = await this.options.invoke(filter.functionArn, event);
        return { filter: filter.name, functionArn: filter.functionArn, events, result };
      } catch (e) {
        error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      }
    }
    return { filter: filter.name, functionArn: filter.functionArn, events, error };
  }
}

/** `arn:aws:logs:<region>:<account>:log-group:<name>[:*]` -> `<name>`. */
function logGroupNameOfArn(arn: string): string {
  const match = /:log-group:(.+?)(:\*)?$/.exec(arn);
  return match ? match[1] : arn;
}

function compileFilter(
  r: ResolvedResource,
  accessLogGroups: Map<string, { apiId: string; stageName: string }>,
  functionArns: readonly string[],
): CompiledFilter {
  const p = r.properties;
  const fail = (why: string): Error => new Error(`LocalLogSubscriptions: ${r.logicalId} (AWS::Logs::SubscriptionFilter) ${why}`);
  if (p.RoleArn !== undefined) {
    throw fail('has a RoleArn (a Kinesis or Firehose destination): only Lambda destinations are executed locally');
  }
  if (typeof p.DestinationArn !== 'string' || !functionArns.includes(p.DestinationArn)) {
    throw fail(`sends to ${JSON.stringify(p.DestinationArn)}, which is not a Lambda function of this stack: only Lambda destinations of the stack are executed locally`);
  }
  const group = accessLogGroups.get(String(p.LogGroupName));
  if (!group) {
    throw fail(`subscribes to log group ${JSON.stringify(p.LogGroupName)}, which is not the access log group of a REST API stage: the local runtime writes no other log group`);
  }
  return {
    logicalId: r.logicalId,
    name: typeof p.FilterName === 'string' ? p.FilterName : r.logicalId,
    logGroupName: String(p.LogGroupName),
    ...group,
    functionArn: p.DestinationArn,
    matches: compileFilterPattern(String(p.FilterPattern ?? ''), fail),
    cursor: 0,
  };
}

/**
 * The JSON filter patterns the library's templates use: `{ $.a.b = "text" }` (equality) and
 * `{ $.a.b = "prefix*" }` (a trailing wildcard), with or without quotes
 * (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html). A JSON
 * pattern matches only log events that are JSON objects.
 */
export function compileFilterPattern(pattern: string, fail: (why: string) => Error = (why) => new Error(why)): (message: string) => boolean {
  const match = /^\{\s*\$\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)\s*=\s*(?:"([^"*]*)(\*?)"|([^\s"*{}]*)(\*?))\s*\}$/.exec(pattern.trim());
  if (!match) {
    throw fail(`has the filter pattern ${JSON.stringify(pattern)}: the local runtime implements only { $.field = "value" } and { $.field = "prefix*" }`);
  }
  const path = match[1].split('.');
  const literal = match[2] ?? match[4];
  const prefix = (match[3] ?? match[5]) === '*';
  return (message: string) => {
    let value: unknown;
    try {
      value = JSON.parse(message);
    } catch {
      return false;
    }
    for (const key of path) {
      value = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)[key] : undefined;
    }
    if (typeof value !== 'string' && typeof value !== 'number') {
      return false;
    }
    const text = String(value);
    return prefix ? text.startsWith(literal) : text === literal;
  };
}
