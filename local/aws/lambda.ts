/**
 * Local Lambda: runs the real bundled handlers (`<codeDir>/index.js`, CommonJS `exports.handler`)
 * in `worker_threads` Workers, one invocation at a time per Worker, like Lambda execution
 * environments.
 *
 * Why Workers: the handlers read their configuration from environment variables at module load,
 * so every function (and every execution environment) needs its own module instance and its own
 * `process.env`; a Worker gets both, and its `setTimeout` pacing sleeps never block the caller.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream, WriteStream } from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { LOCAL_ACCOUNT, LOCAL_CREDENTIALS, LOCAL_REGION, localAccessKeyForRole, LocalEndpoints, ResolvedResource, UrlRewriter } from '../types';

/** One function of the template and where its bundled code lives. */
export interface LocalLambdaFunction {
  /** The `AWS::Lambda::Function` resource, properties resolved. */
  readonly resource: ResolvedResource;
  /** Directory holding the bundle: `<assemblyDir>/<Metadata aws:asset:path>`. */
  readonly codeDir: string;
  /** Other names the function answers to (e.g. the value a `Ref` resolved to). */
  readonly aliases?: string[];
}

export interface LocalLambdaOptions {
  readonly functions: LocalLambdaFunction[];
  readonly endpoints: LocalEndpoints;
  /** Added to every function's environment last (overrides everything, e.g. POWERTOOLS_LOG_LEVEL). */
  readonly extraEnv?: Record<string, string>;
  /**
   * Maps the values of the functions' own `*_ENDPOINT_URL` variables (e.g. the vendor caller's
   * proxy stage URL) to loopback, as `AWS_ENDPOINT_URL_*` point the SDK at the emulators.
   */
  readonly rewriteUrl?: UrlRewriter;
  /** Where the handlers' stdout/stderr and one platform report line per invocation go. Default: discarded. */
  readonly logFile?: string;
  /**
   * The account's Lambda concurrency quota in the Region. The functions' reservations are checked
   * against it as Lambda checks them at deploy time (see {@link checkReservedConcurrency}).
   * @default DEFAULT_ACCOUNT_CONCURRENCY (1000, the usual quota; new accounts can have 10)
   */
  readonly accountConcurrency?: number;
}

/** Lambda's usual concurrency quota per account and Region. */
export const DEFAULT_ACCOUNT_CONCURRENCY = 1000;
/** Concurrency Lambda keeps unreserved for the functions without a reservation. */
export const MIN_UNRESERVED_CONCURRENCY = 100;

/**
 * Refuses the reservations Lambda refuses at deploy time: "You can reserve up to the Unreserved
 * account concurrency value minus 100 for functions that don't have reserved concurrency"
 * (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html). An account whose
 * quota is 100 or less (new accounts can have 10) can reserve nothing; Lambda answers
 * InvalidParameterValueException ("... decreases account's UnreservedConcurrentExecution below its
 * minimum value"), and the stack does not deploy.
 */
export function checkReservedConcurrency(functions: ResolvedResource[], accountConcurrency: number = DEFAULT_ACCOUNT_CONCURRENCY): void {
  const reserving = functions
    .map((f) => ({ id: f.logicalId, reserved: Number(f.properties.ReservedConcurrentExecutions ?? 0) }))
    .filter((f) => f.reserved > 0);
  const total = reserving.reduce((sum, f) => sum + f.reserved, 0);
  const allowed = Math.max(0, accountConcurrency - MIN_UNRESERVED_CONCURRENCY);
  if (total > allowed) {
    throw lambdaError('InvalidParameterValueException',
      `Specified ReservedConcurrentExecutions (${reserving.map((f) => `${f.id}: ${f.reserved}`).join(', ')}) decreases account's `
      + `UnreservedConcurrentExecution below its minimum value of [${Math.min(MIN_UNRESERVED_CONCURRENCY, accountConcurrency)}]: `
      + `an account with a concurrency quota of ${accountConcurrency} can reserve at most ${allowed}. Remove the reservations or raise the quota`);
  }
}

/** Counters of one function, since the runtime started. */
export interface LambdaFunctionStats {
  /** Invocations that reached an execution environment (throttled ones excluded, as in CloudWatch). */
  readonly invocations: number;
  /** Invocations that failed: handler errors, timeouts, init errors, crashes. */
  readonly errors: number;
  readonly timeouts: number;
  /** Invocations refused because `ReservedConcurrentExecutions` environments were busy. */
  readonly throttles: number;
  /** Execution environments started. */
  readonly coldStarts: number;
  /** Most invocations running at the same time. */
  readonly maxConcurrent: number;
  /** Invocations running now. */
  readonly busy: number;
  /** Warm environments waiting for an invocation now. */
  readonly idle: number;
}

/** Lambda's limit on the init phase; beyond it the environment is discarded. */
const INIT_TIMEOUT_MS = 10_000;
const DEFAULT_TIMEOUT_SECONDS = 3;
const DEFAULT_MEMORY_MB = 128;

/**
 * The code each Worker runs. Plain JavaScript (the Worker is outside ts-jest / ts-node): loads the
 * handler once (the cold start), then serves `invoke` messages one at a time. Results and events
 * cross as JSON, as they do through the Lambda API.
 */
const BOOTSTRAP = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const path = require('node:path');

function describe(err) {
  if (err instanceof Error) {
    return { errorType: err.name || 'Error', errorMessage: err.message, trace: String(err.stack || '').split('\\n') };
  }
  const errorType = err && typeof err === 'object' && typeof err.name === 'string' ? err.name : 'Error';
  const errorMessage = err && typeof err === 'object' && typeof err.message === 'string' ? err.message : String(err);
  return { errorType, errorMessage, trace: [] };
}

// RFC 6761: every *.localhost name is loopback. Node asks the OS, which often does not know
// sqs.us-east-1.localhost: the name fauxqs gives its queue URLs, and the SDK sends SQS calls to
// the QueueUrl's host. 'localhost' itself too: the emulators listen on IPv4 only.
const dns = require('node:dns');
const osLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (typeof options === 'function') {
    callback = options;
    options = {};
  }
  if (typeof hostname === 'string' && (hostname === 'localhost' || hostname.endsWith('.localhost'))) {
    const all = options !== null && typeof options === 'object' && options.all;
    process.nextTick(() => (all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4)));
    return {};
  }
  return osLookup.call(this, hostname, options, callback);
};

let handler;
try {
  const mod = require(path.resolve(workerData.codeDir, workerData.moduleFile));
  handler = mod[workerData.exportName];
  if (typeof handler !== 'function') {
    const err = new Error(workerData.handler + ' is undefined or not exported');
    err.name = 'Runtime.HandlerNotFound';
    throw err;
  }
  parentPort.postMessage({ type: 'ready' });
} catch (err) {
  const error = describe(err);
  if (err && err.code === 'MODULE_NOT_FOUND') {
    error.errorType = 'Runtime.ImportModuleError';
  }
  parentPort.postMessage({ type: 'initError', error });
}

function runHandler(event, context) {
  return new Promise((resolve, reject) => {
    // Callback-style handlers are still supported by the Node.js runtime.
    const callback = (err, result) => (err ? reject(err) : resolve(result));
    try {
      const out = handler(event, context, callback);
      if (out && typeof out.then === 'function') {
        out.then(resolve, reject);
      }
    } catch (err) {
      reject(err);
    }
  });
}

parentPort.on('message', (msg) => {
  if (msg.type !== 'invoke') {
    return;
  }
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: workerData.functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: msg.invokedFunctionArn,
    memoryLimitInMB: String(workerData.memorySize),
    awsRequestId: msg.requestId,
    logGroupName: '/aws/lambda/' + workerData.functionName,
    logStreamName: workerData.logStreamName,
    getRemainingTimeInMillis: () => Math.max(0, msg.deadline - Date.now()),
  };
  runHandler(JSON.parse(msg.event), context).then(
    (result) => {
      let payload;
      try {
        payload = JSON.stringify(result === undefined ? null : result) ?? 'null';
      } catch (err) {
        const error = describe(err);
        error.errorType = 'Runtime.MarshalError';
        parentPort.postMessage({ type: 'result', requestId: msg.requestId, ok: false, error });
        return;
      }
      parentPort.postMessage({ type: 'result', requestId: msg.requestId, ok: true, payload });
    },
    (err) => parentPort.postMessage({ type: 'result', requestId: msg.requestId, ok: false, error: describe(err) }),
  );
});
`;

/** What the Worker reports for a failed invocation (Lambda's error payload). */
interface ErrorPayload {
  readonly errorType: string;
  readonly errorMessage: string;
  readonly trace?: string[];
}

type WorkerMessage =
  | { type: 'ready' }
  | { type: 'initError'; error: ErrorPayload }
  | { type: 'result'; requestId: string; ok: true; payload: string }
  | { type: 'result'; requestId: string; ok: false; error: ErrorPayload };

/** An Error shaped like Lambda's function error: `name` is the errorType. */
export class LambdaFunctionError extends Error {
  public readonly errorType: string;
  public readonly errorMessage: string;
  public readonly trace: string[];

  constructor(payload: ErrorPayload) {
    super(payload.errorMessage);
    this.name = payload.errorType;
    this.errorType = payload.errorType;
    this.errorMessage = payload.errorMessage;
    this.trace = payload.trace ?? [];
  }
}

function lambdaError(errorType: string, errorMessage: string): LambdaFunctionError {
  return new LambdaFunctionError({ errorType, errorMessage });
}

/**
 * A Worker's uncaught error as a Lambda error. Duck-typed: the error comes from another realm
 * (the Worker's, structured-cloned into the host's), so `instanceof Error` may not hold.
 */
function asLambdaError(err: unknown): LambdaFunctionError {
  if (err && typeof err === 'object' && typeof (err as Error).message === 'string') {
    const e = err as Error;
    return new LambdaFunctionError({ errorType: e.name || 'Error', errorMessage: e.message, trace: String(e.stack ?? '').split('\n') });
  }
  return lambdaError('Error', String(err));
}

/** Static configuration of one function, read once from its resolved resource. */
interface FunctionConfig {
  readonly name: string;
  readonly arn: string;
  readonly codeDir: string;
  readonly handler: string;
  readonly timeoutMs: number;
  readonly memorySize: number;
  readonly reservedConcurrency?: number;
  readonly env: Record<string, string>;
}

/** Name, ARN, `name:qualifier`, `account:function:name`, or ARN with qualifier -> the bare name. */
export function functionNameOf(nameOrArn: string): string {
  const parts = nameOrArn.split(':');
  if (nameOrArn.startsWith('arn:')) {
    return parts[6] ?? nameOrArn;
  }
  if (parts.length >= 3 && parts[1] === 'function') {
    return parts[2];
  }
  return parts[0];
}

function functionArn(name: string): string {
  return `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${name}`;
}

function numberOr(value: unknown, fallback: number): number {
  const n = Number(value);
  return value === undefined || value === null || !Number.isFinite(n) ? fallback : n;
}

/** Lambda passes environment variables as strings; the resolved template may hold numbers. */
function stringValues(vars: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(vars ?? {})) {
    out[key] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  return out;
}

/**
 * The environment of one function, in Lambda's precedence: defaults the function may override,
 * then its own variables, then the variables Lambda reserves (a function cannot set them), then
 * the local endpoints, then the integrator's `extraEnv`. Nothing leaks from the host's env.
 */
function functionEnvironment(
  resource: ResolvedResource,
  name: string,
  codeDir: string,
  endpoints: LocalEndpoints,
  extraEnv: Record<string, string> | undefined,
  rewriteUrl: UrlRewriter | undefined,
): Record<string, string> {
  const props = resource.properties;
  const own = stringValues(props.Environment?.Variables);
  if (rewriteUrl) {
    for (const key of Object.keys(own)) {
      if (key.endsWith('_ENDPOINT_URL')) {
        own[key] = rewriteUrl(own[key]);
      }
    }
  }
  return {
    // Quiet by default: the handlers' logs go to a file the demo does not print.
    POWERTOOLS_LOG_LEVEL: 'WARN',
    ...own,
    AWS_REGION: LOCAL_REGION,
    AWS_DEFAULT_REGION: LOCAL_REGION,
    // Names the execution role (see localAccessKeyForRole): signed calls are attributed to it.
    AWS_ACCESS_KEY_ID: typeof props.Role === 'string' ? localAccessKeyForRole(props.Role) : LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    AWS_LAMBDA_FUNCTION_NAME: name,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(numberOr(props.MemorySize, DEFAULT_MEMORY_MB)),
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${name}`,
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs20.x',
    LAMBDA_TASK_ROOT: codeDir,
    _HANDLER: typeof props.Handler === 'string' ? props.Handler : 'index.handler',
    AWS_ENDPOINT_URL_SQS: endpoints.sqs,
    AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb,
    AWS_ENDPOINT_URL_SFN: endpoints.sfn,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoints.secretsManager,
    ...(endpoints.appConfigData ? { AWS_ENDPOINT_URL_APPCONFIGDATA: endpoints.appConfigData } : {}),
    ...extraEnv,
  };
}

function functionConfig(
  fn: LocalLambdaFunction, endpoints: LocalEndpoints, extraEnv?: Record<string, string>, rewriteUrl?: UrlRewriter,
): FunctionConfig {
  const props = fn.resource.properties;
  const name = typeof props.FunctionName === 'string' ? props.FunctionName : fn.resource.logicalId;
  const reserved = props.ReservedConcurrentExecutions;
  return {
    name,
    arn: functionArn(name),
    codeDir: fn.codeDir,
    handler: typeof props.Handler === 'string' ? props.Handler : 'index.handler',
    timeoutMs: numberOr(props.Timeout, DEFAULT_TIMEOUT_SECONDS) * 1000,
    memorySize: numberOr(props.MemorySize, DEFAULT_MEMORY_MB),
    reservedConcurrency: reserved === undefined || reserved === null ? undefined : Number(reserved),
    env: functionEnvironment(fn.resource, name, fn.codeDir, endpoints, extraEnv, rewriteUrl),
  };
}

/** Appends the handlers' output and platform lines to the log file, or drops them. */
class LogSink {
  private readonly stream?: WriteStream;

  constructor(logFile?: string) {
    if (logFile) {
      this.stream = createWriteStream(logFile, { flags: 'a' });
      // A log file problem must never take the runtime down.
      this.stream.on('error', () => undefined);
    }
  }

  /** Worker stdio is read either way: an unread stream would buffer without bound. */
  attach(worker: Worker): void {
    for (const readable of [worker.stdout, worker.stderr]) {
      if (this.stream) {
        const stream = this.stream;
        readable.on('data', (chunk: Buffer) => {
          if (stream.writable) {
            stream.write(chunk);
          }
        });
      } else {
        readable.resume();
      }
    }
  }

  /** One JSON line per invocation, like Lambda's `platform.report` record. */
  report(record: Record<string, unknown>): void {
    if (this.stream?.writable) {
      this.stream.write(JSON.stringify({ time: new Date().toISOString(), type: 'platform.report', ...record }) + '\n');
    }
  }

  close(): Promise<void> {
    const stream = this.stream;
    if (!stream || stream.writableEnded) {
      return Promise.resolve();
    }
    return new Promise((resolve) => stream.end(() => resolve()));
  }
}

interface Pending {
  readonly requestId: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** One Worker = one execution environment: loads the handler once, serves one invocation at a time. */
class ExecutionEnvironment {
  public readonly ready: Promise<void>;
  public initDurationMs?: number;
  private readonly startedAt = Date.now();
  private readonly worker: Worker;
  private pending?: Pending;
  private dead = false;
  private readyResolve!: () => void;
  private readyReject!: (error: Error) => void;

  constructor(private readonly config: FunctionConfig, sink: LogSink, private readonly onDeath: (env: ExecutionEnvironment) => void) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    // The invocation that awaits `ready` handles the rejection; this only silences the duplicate.
    this.ready.catch(() => undefined);
    const [moduleFile, exportName] = splitHandler(config.handler);
    this.worker = new Worker(BOOTSTRAP, {
      eval: true,
      env: config.env,
      // Lambda runs plain node: no ts-node / tsx loaders or flags inherited from the host process.
      execArgv: [],
      stdout: true,
      stderr: true,
      workerData: {
        codeDir: config.codeDir,
        moduleFile,
        exportName,
        handler: config.handler,
        functionName: config.name,
        memorySize: config.memorySize,
        logStreamName: `local/[$LATEST]${randomUUID().replace(/-/g, '')}`,
      },
    });
    sink.attach(this.worker);
    this.worker.on('message', (msg: WorkerMessage) => this.onMessage(msg));
    // An uncaught exception or unhandled rejection kills the environment, as it kills Lambda's.
    this.worker.on('error', (err: unknown) => this.die(asLambdaError(err)));
    this.worker.on('exit', (code: number) => this.die(lambdaError('Runtime.ExitError', `Runtime exited with error: exit status ${code}`)));
  }

  get alive(): boolean {
    return !this.dead;
  }

  /** Waits for the cold start, bounded like Lambda's init phase (a timed-out init discards the environment). */
  async waitReady(): Promise<void> {
    const message = `Init phase timed out after ${INIT_TIMEOUT_MS / 1000} seconds`;
    const timer = setTimeout(() => this.die(lambdaError('Sandbox.Timedout', message)), INIT_TIMEOUT_MS);
    try {
      await this.ready;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs one invocation; on timeout the Worker is terminated (the environment is reset). */
  invoke(eventJson: string, requestId: string, invokedFunctionArn: string): Promise<unknown> {
    if (this.dead) {
      return Promise.reject(lambdaError('Runtime.ExitError', 'execution environment is gone'));
    }
    return new Promise((resolve, reject) => {
      const timeoutSeconds = (this.config.timeoutMs / 1000).toFixed(2);
      const timer = setTimeout(() => {
        this.die(lambdaError('Sandbox.Timedout', `Task timed out after ${timeoutSeconds} seconds`));
      }, this.config.timeoutMs);
      this.pending = { requestId, resolve, reject, timer };
      this.worker.postMessage({
        type: 'invoke',
        requestId,
        invokedFunctionArn,
        deadline: Date.now() + this.config.timeoutMs,
        event: eventJson,
      });
    });
  }

  /** Busy environments keep the process alive; idle ones must not (the demo can exit). */
  setActive(active: boolean): void {
    if (active) {
      this.worker.ref();
    } else {
      this.worker.unref();
    }
  }

  async terminate(reason: Error): Promise<void> {
    this.die(reason);
    await this.worker.terminate();
  }

  private onMessage(msg: WorkerMessage): void {
    if (msg.type === 'ready') {
      this.initDurationMs = Date.now() - this.startedAt;
      this.readyResolve();
    } else if (msg.type === 'initError') {
      // Lambda discards an environment whose init failed; the next invocation cold-starts again.
      this.die(new LambdaFunctionError(msg.error));
    } else if (msg.type === 'result' && this.pending?.requestId === msg.requestId) {
      const pending = this.takePending();
      if (msg.ok) {
        pending?.resolve(JSON.parse(msg.payload));
      } else {
        pending?.reject(new LambdaFunctionError(msg.error));
      }
    }
  }

  private takePending(): Pending | undefined {
    const pending = this.pending;
    this.pending = undefined;
    if (pending) {
      clearTimeout(pending.timer);
    }
    return pending;
  }

  /** Marks the environment unusable and fails whatever waits on it with `reason` (first reason wins). */
  private die(reason: Error): void {
    if (this.dead) {
      return;
    }
    this.dead = true;
    this.readyReject(reason);
    this.takePending()?.reject(reason);
    void this.worker.terminate();
    this.onDeath(this);
  }
}

/** JSON, as through the Lambda API: no Dates, class instances or undefined reach the handler. */
function serializeEvent(event: unknown): string {
  try {
    return JSON.stringify(event === undefined ? null : event) ?? 'null';
  } catch (err) {
    throw lambdaError('InvalidRequestContentException', `Could not serialize the request payload: ${(err as Error).message}`);
  }
}

/** `index.handler` -> ['index', 'handler']; `src/app.main` -> ['src/app', 'main']. */
function splitHandler(handler: string): [string, string] {
  const dot = handler.lastIndexOf('.');
  return dot < 0 ? [handler, 'handler'] : [handler.slice(0, dot), handler.slice(dot + 1)];
}

/** The execution environments of one function: warm ones reused, new ones started on demand. */
class FunctionPool {
  private readonly idle: ExecutionEnvironment[] = [];
  private readonly busy = new Set<ExecutionEnvironment>();
  private readonly all = new Set<ExecutionEnvironment>();
  private stopped = false;
  private readonly counters = { invocations: 0, errors: 0, timeouts: 0, throttles: 0, coldStarts: 0, maxConcurrent: 0 };

  constructor(public readonly config: FunctionConfig, private readonly sink: LogSink) {}

  async invoke(event: unknown, invokedFunctionArn: string): Promise<unknown> {
    if (this.stopped) {
      throw lambdaError('ServiceException', 'the local Lambda runtime is stopped');
    }
    const reserved = this.config.reservedConcurrency;
    if (reserved !== undefined && this.busy.size >= reserved) {
      // Lambda throttles synchronous invocations beyond reserved concurrency rather than queueing them.
      this.counters.throttles++;
      throw lambdaError('TooManyRequestsException', 'Rate Exceeded.');
    }
    const eventJson = serializeEvent(event);
    this.counters.invocations++;
    const { env, cold } = this.acquire();
    const requestId = randomUUID();
    const started = Date.now();
    let status = 'success';
    try {
      await env.waitReady();
      return await env.invoke(eventJson, requestId, invokedFunctionArn);
    } catch (err) {
      status = this.countFailure(err);
      throw err;
    } finally {
      this.release(env);
      this.sink.report({
        function: this.config.name,
        requestId,
        status,
        durationMs: Date.now() - started,
        ...(cold ? { initDurationMs: env.initDurationMs } : {}),
      });
    }
  }

  stats(): LambdaFunctionStats {
    return { ...this.counters, busy: this.busy.size, idle: this.idle.length };
  }

  // ---- fault hook (local/faults.ts) begin ----
  /** Crashes every busy environment (their invocations fail with `Runtime.ExitError`); resolves with how many. */
  async crashBusy(reason: string): Promise<number> {
    const victims = [...this.busy];
    await Promise.all(victims.map((env) => env.terminate(lambdaError('Runtime.ExitError', reason))));
    return victims.length;
  }
  // ---- fault hook end ----

  async stop(): Promise<void> {
    this.stopped = true;
    const reason = lambdaError('ServiceException', 'the local Lambda runtime stopped during the invocation');
    await Promise.all([...this.all].map((env) => env.terminate(reason)));
  }

  /**
   * Starts environments until `count` are idle and ready (what a steady load, or provisioned
   * concurrency, has on AWS). Counted as cold starts.
   */
  async prewarm(count: number): Promise<void> {
    const started: ExecutionEnvironment[] = [];
    while (this.idle.length + started.length < count) {
      const env = new ExecutionEnvironment(this.config, this.sink, (dead) => this.forget(dead));
      this.all.add(env);
      this.counters.coldStarts++;
      started.push(env);
    }
    await Promise.all(started.map((env) => env.waitReady()));
    for (const env of started) {
      if (env.alive && !this.stopped) {
        env.setActive(false);
        this.idle.push(env);
      }
    }
  }

  /** The most recently used warm environment (LIFO keeps few environments warm), else a cold start. */
  private acquire(): { env: ExecutionEnvironment; cold: boolean } {
    let env = this.idle.pop();
    const cold = env === undefined;
    if (!env) {
      env = new ExecutionEnvironment(this.config, this.sink, (dead) => this.forget(dead));
      this.all.add(env);
      this.counters.coldStarts++;
    }
    env.setActive(true);
    this.busy.add(env);
    this.counters.maxConcurrent = Math.max(this.counters.maxConcurrent, this.busy.size);
    return { env, cold };
  }

  private release(env: ExecutionEnvironment): void {
    this.busy.delete(env);
    if (env.alive && !this.stopped) {
      env.setActive(false);
      this.idle.push(env);
    }
  }

  /** A dead environment (timeout, crash, init error) is never handed out again. */
  private forget(env: ExecutionEnvironment): void {
    this.all.delete(env);
    const index = this.idle.indexOf(env);
    if (index >= 0) {
      this.idle.splice(index, 1);
    }
  }

  private countFailure(err: unknown): string {
    this.counters.errors++;
    if (err instanceof Error && err.name === 'Sandbox.Timedout') {
      this.counters.timeouts++;
      return 'timeout';
    }
    return 'error';
  }
}

/** The functions of a template, invocable by name or ARN. */
export class LocalLambda {
  private readonly pools = new Map<string, FunctionPool>();
  private readonly sink: LogSink;

  constructor(options: LocalLambdaOptions) {
    // Before anything starts: a template Lambda would refuse never runs.
    checkReservedConcurrency(options.functions.map((fn) => fn.resource), options.accountConcurrency);
    this.sink = new LogSink(options.logFile);
    for (const fn of options.functions) {
      const pool = new FunctionPool(functionConfig(fn, options.endpoints, options.extraEnv, options.rewriteUrl), this.sink);
      const names = [pool.config.name, fn.resource.logicalId, ...(fn.aliases ?? [])];
      for (const name of names) {
        this.pools.set(functionNameOf(name), pool);
      }
    }
  }

  /** Function names (as in the template) this runtime serves. */
  get functionNames(): string[] {
    return [...new Set([...this.pools.values()].map((pool) => pool.config.name))];
  }

  /** Synchronous (RequestResponse) invocation. Rejects with the function's error, as `Error.name`. */
  invoke(functionNameOrArn: string, event: unknown): Promise<unknown> {
    const pool = this.pools.get(functionNameOf(functionNameOrArn));
    if (!pool) {
      return Promise.reject(lambdaError('ResourceNotFoundException', `Function not found: ${functionNameOrArn}`));
    }
    const invokedArn = functionNameOrArn.startsWith('arn:') ? functionNameOrArn : pool.config.arn;
    return pool.invoke(event, invokedArn);
  }

  /** A function's `ReservedConcurrentExecutions` (by name or ARN); undefined when it has none or is unknown. */
  reservedConcurrency(functionNameOrArn: string): number | undefined {
    return this.pools.get(functionNameOf(functionNameOrArn))?.config.reservedConcurrency;
  }

  /** Makes `count` warm environments of a function ready (see FunctionPool.prewarm). */
  prewarm(functionNameOrArn: string, count: number): Promise<void> {
    const pool = this.pools.get(functionNameOf(functionNameOrArn));
    if (!pool) {
      return Promise.reject(lambdaError('ResourceNotFoundException', `Function not found: ${functionNameOrArn}`));
    }
    return pool.prewarm(count);
  }

  /** Counters of one function, by name or ARN. */
  stats(functionNameOrArn: string): LambdaFunctionStats {
    const pool = this.pools.get(functionNameOf(functionNameOrArn));
    if (!pool) {
      throw lambdaError('ResourceNotFoundException', `Function not found: ${functionNameOrArn}`);
    }
    return pool.stats();
  }

  // ---- fault hook (local/faults.ts) begin ----
  /**
   * Crashes every busy execution environment of a function, as if it died (out of memory, killed):
   * the invocations in flight fail with `Runtime.ExitError`, their side effects stay. For fault injection.
   */
  crashBusy(functionNameOrArn: string, reason: string): Promise<number> {
    const pool = this.pools.get(functionNameOf(functionNameOrArn));
    if (!pool) {
      return Promise.reject(lambdaError('ResourceNotFoundException', `Function not found: ${functionNameOrArn}`));
    }
    return pool.crashBusy(reason);
  }
  // ---- fault hook end ----

  /** Counters of every function, by function name. */
  allStats(): Record<string, LambdaFunctionStats> {
    const out: Record<string, LambdaFunctionStats> = {};
    for (const pool of new Set(this.pools.values())) {
      out[pool.config.name] = pool.stats();
    }
    return out;
  }

  /**
   * Terminates every execution environment (in-flight invocations reject) and closes the log file.
   * Stop the event sources first so nothing is cut off mid-invocation.
   */
  async stop(): Promise<void> {
    await Promise.all([...new Set(this.pools.values())].map((pool) => pool.stop()));
    await this.sink.close();
  }
}

/** Exposed for the integrator: where a function's bundle lives in a synthesized cloud assembly. */
export function assetCodeDir(assemblyDir: string, resource: ResolvedResource): string {
  const assetPath = resource.metadata['aws:asset:path'];
  if (typeof assetPath !== 'string') {
    throw new Error(`${resource.logicalId} has no aws:asset:path metadata`);
  }
  return path.resolve(assemblyDir, assetPath);
}
