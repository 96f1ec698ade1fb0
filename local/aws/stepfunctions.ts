/**
 * A local Step Functions: runs the state machines of the synthesized template with
 * aws-local-stepfunctions and speaks enough of the Step Functions JSON 1.0 API over HTTP that the
 * real AWS SDK in our Lambda handlers works against it (AWS_ENDPOINT_URL_SFN).
 *
 * Every Task state is executed for real against the local services (SQS, DynamoDB, Secrets
 * Manager, API Gateway, Lambda) with the error names Step Functions gives, so the Retry and Catch
 * of the definitions behave as on AWS. `.waitForTaskToken` and `$$.Task.Token`, which the library
 * does not support, are emulated: a token is minted per task run and SendTaskSuccess /
 * SendTaskFailure settle the waiting task.
 *
 * Differences from AWS, on purpose or because the library cannot do better:
 * - HeartbeatSeconds is not enforced (SendTaskHeartbeat is accepted for open tokens).
 * - `$$.State.*`, `$$.Task.*` outside a `"key.$": "$$.Task.Token"` parameter, JSONata, `.sync`
 *   integrations and Distributed Map are refused when the state machine is added.
 * - Express and Standard executions run alike; DescribeExecution also answers for Express ones.
 * - An intrinsic function whose JavaScript implementation throws (States.StringToJson,
 *   States.Base64Decode) fails the execution with States.Runtime, uncaught, as on AWS
 *   (./stepfunctions-errors.ts); the library alone would let a Catch handle it.
 * - A task's input (after Parameters) or result over 256 KiB fails with States.DataLimitExceeded,
 *   which States.ALL does not catch; a state's output (e.g. after ResultPath) is not checked.
 * - Executions live in memory; only the most recent finished ones are kept.
 */
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'crypto';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as dynamodb from '@aws-sdk/client-dynamodb';
import * as secretsManager from '@aws-sdk/client-secrets-manager';
import * as sqs from '@aws-sdk/client-sqs';
import type { ServiceFaultHook } from '../faults';
import { LOCAL_ACCOUNT, LOCAL_CREDENTIALS, LOCAL_REGION, LambdaInvoker, LocalEndpoints, PRINCIPAL_HEADER, UrlRewriter } from '../types';
import '../polyfills';
import { buildStateMachine } from './asl-validation';
import { executionFailure, handledOnlyIf, taskFailure } from './stepfunctions-errors';

// The package is an ES module for TypeScript (its package.json says "type": "module") but ships
// a CommonJS build, which require() loads.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ExecutionAbortedError, ExecutionError, ExecutionTimeoutError, StateMachine } = require('aws-local-stepfunctions') as typeof import('aws-local-stepfunctions', { with: { 'resolution-mode': 'import' } });
type StateMachine = InstanceType<typeof StateMachine>;


export type StateMachineType = 'STANDARD' | 'EXPRESS';
export type ExecutionStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';

export interface LocalStepFunctionsOptions {
  readonly endpoints: Pick<LocalEndpoints, 'sqs' | 'dynamodb' | 'secretsManager'>;
  readonly invokeLambda: LambdaInvoker;
  readonly rewriteUrl: UrlRewriter;
  /** Milliseconds since the epoch, for startDate / stopDate (default Date.now). */
  readonly clock?: () => number;
  /** Finished executions kept for Describe / List; older ones are forgotten (default 2000). */
  readonly maxFinishedExecutions?: number;
  /** Fault injection on the HTTP API (local/faults.ts): the calls the handlers make. Default: none. */
  readonly faults?: ServiceFaultHook;
}

/** A state machine of the template, its definition resolved (no CloudFormation tokens left). */
export interface LocalStateMachine {
  readonly arn: string;
  readonly name: string;
  readonly type: StateMachineType;
  readonly definition: object;
  readonly roleArn: string;
  /**
   * The definition as the template writes it (tokens unresolved), for the tests' ASL edge
   * coverage (test/asl/local-runtime.ts), which identifies definitions by it. Default: none.
   */
  readonly templateDefinition?: unknown;
}

/**
 * Sees every event of every execution (aws-local-stepfunctions' event log entries, in order).
 * Under jest, test/asl/local-runtime.ts puts one at this global symbol to record the edges the
 * local runtime's executions take; a global rather than an import, so that no other test pays for
 * loading the tooling. Its failures are reported, never break an execution.
 */
export type ExecutionEventObserver = (stateMachine: LocalStateMachine, executionArn: string, event: unknown) => void;
export const EXECUTION_EVENT_OBSERVER = Symbol.for('cdk-async-external-api.local-stepfunctions.execution-event-observer');

/** What DescribeExecution says about an execution (`input` / `output` are JSON text, as on AWS). */
export interface ExecutionDescription {
  readonly executionArn: string;
  readonly stateMachineArn: string;
  readonly name: string;
  readonly type: StateMachineType;
  readonly status: ExecutionStatus;
  readonly input: string;
  readonly output?: string;
  readonly error?: string;
  readonly cause?: string;
  readonly startDate: Date;
  readonly stopDate?: Date;
}

/** One event of an execution as aws-local-stepfunctions reports it (StateEntered, StateFailed ...). */
export interface ExecutionEvent {
  readonly type: string;
  readonly timestamp: number;
  readonly [key: string]: unknown;
}

export interface LocalStepFunctionsCounters {
  /** Executions started, by state machine ARN. */
  readonly startedByStateMachine: Record<string, number>;
  /** Executions started, by state machine type. */
  readonly startedByType: Record<StateMachineType, number>;
  readonly taskTokens: {
    /** Tokens minted (one per run of a `.waitForTaskToken` task). */
    readonly issued: number;
    /** Accepted SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat calls. */
    readonly succeeded: number;
    readonly failed: number;
    readonly heartbeats: number;
    /** Calls refused with InvalidToken or TaskDoesNotExist (a token this service did not mint). */
    readonly invalid: number;
    /** Calls refused with TaskTimedOut (the token was settled, timed out or its execution ended). */
    readonly timedOut: number;
    /** Tokens whose task reached its TimeoutSeconds before any answer. */
    readonly expired: number;
  };
}

/**
 * An error of the Step Functions API. `name` is the error code (`TaskTimedOut`, `InvalidToken` ...),
 * the `__type` of the HTTP answer. `modeled` is false for codes outside the service model as the AWS
 * SDK for Java v2 sees it: an `aws-sdk:sfn` task then fails with `Sfn.SfnException`.
 */
export class LocalSfnError extends Error {
  constructor(name: string, message: string, public readonly modeled = true) {
    super(message);
    this.name = name;
  }
}

/** The Step Functions API actions this service answers, over HTTP and to `aws-sdk:sfn` tasks. */
const SFN_ACTIONS = [
  'StartExecution', 'StartSyncExecution', 'DescribeExecution', 'StopExecution', 'ListExecutions',
  'SendTaskSuccess', 'SendTaskFailure', 'SendTaskHeartbeat',
] as const;
type SfnAction = typeof SFN_ACTIONS[number];

/** setTimeout holds at most 2^31-1 ms; beyond it Node fires after 1 ms. */
const MAX_TIMEOUT_SECONDS = Math.floor(0x7fffffff / 1000);
/** Step Functions' limit on input, output and task results (UTF-8 bytes). */
const MAX_PAYLOAD_BYTES = 256 * 1024;
const WAIT_FOR_TASK_TOKEN = '.waitForTaskToken';
const DATA_LIMIT_EXCEEDED = 'States.DataLimitExceeded';
/** Stands for `$$.Task.Token` in rewritten Parameters until a token is minted for the task run. */
const TOKEN_PLACEHOLDER = '__LOCAL_SFN_TASK_TOKEN__';
const TOKEN_PREFIX = 'LSFN1';
const FAIL_STATE_DEFAULT_ERROR = 'FailStateError';
const FAIL_STATE_DEFAULT_CAUSE = 'Execution failed because of a Fail state';
const MAX_EVENTS_PER_EXECUTION = 200;

/** How one AWS service appears in error names, and its SDK. */
interface SdkService {
  /** Prefix of `aws-sdk:<service>` errors (PascalCase as Step Functions writes it). */
  readonly sdkPrefix: string;
  /** Error of `aws-sdk:<service>` calls for codes outside the service model (`Sqs.SqsException`). */
  readonly sdkGeneric: string;
  /** The SDK module (commands by name) and its client and base exception classes. */
  readonly module: Record<string, unknown>;
  readonly clientClass: new (config: object) => SdkClient;
  readonly baseException: Function;
  readonly endpoint: keyof LocalStepFunctionsOptions['endpoints'];
}

interface SdkClient {
  send(command: unknown, options?: { abortSignal?: AbortSignal }): Promise<Record<string, unknown>>;
  destroy(): void;
}

const SDK_SERVICES: Record<'sqs' | 'dynamodb' | 'secretsmanager', SdkService> = {
  sqs: {
    sdkPrefix: 'Sqs',
    sdkGeneric: 'SqsException',
    module: sqs as unknown as Record<string, unknown>,
    clientClass: sqs.SQSClient as unknown as SdkService['clientClass'],
    baseException: sqs.SQSServiceException,
    endpoint: 'sqs',
  },
  dynamodb: {
    sdkPrefix: 'DynamoDb',
    sdkGeneric: 'DynamoDbException',
    module: dynamodb as unknown as Record<string, unknown>,
    clientClass: dynamodb.DynamoDBClient as unknown as SdkService['clientClass'],
    baseException: dynamodb.DynamoDBServiceException,
    endpoint: 'dynamodb',
  },
  secretsmanager: {
    sdkPrefix: 'SecretsManager',
    sdkGeneric: 'SecretsManagerException',
    module: secretsManager as unknown as Record<string, unknown>,
    clientClass: secretsManager.SecretsManagerClient as unknown as SdkService['clientClass'],
    baseException: secretsManager.SecretsManagerServiceException,
    endpoint: 'secretsManager',
  },
};

/** Runs one Task's integration with the task's effective input (Parameters applied). */
type TaskCall = (parameters: any, run: TaskRun) => Promise<unknown>;

interface TaskRun {
  readonly execution: ExecutionRecord;
  readonly signal: AbortSignal;
  /** The task's TimeoutSeconds in ms when known, to bound HTTP calls. */
  readonly timeoutMs?: number;
}

interface TaskPlan {
  readonly stateName: string;
  readonly resource: string;
  readonly waitForToken: boolean;
  readonly timeoutSeconds?: number;
  readonly timeoutSecondsPath?: string;
  /** Where the Parameters had `"<key>.$": "States.JsonToString(<path>)"` (see prepareTask). */
  readonly stringifyAt: readonly string[][];
  /** Whether a catcher / retrier of the state names States.DataLimitExceeded (States.ALL does not match it). */
  readonly handlesDataLimit: { readonly catch: boolean; readonly retry: boolean };
  readonly call: TaskCall;
}

interface CompiledStateMachine {
  readonly spec: LocalStateMachine;
  readonly machine: StateMachine;
  readonly tasks: readonly TaskPlan[];
  /** The names of the `.waitForTaskToken` states, to count the tokens that timed out. */
  readonly tokenStates: ReadonlySet<string>;
}

interface ExecutionRecord {
  readonly executionArn: string;
  readonly stateMachineArn: string;
  readonly name: string;
  readonly type: StateMachineType;
  readonly roleArn: string;
  readonly input: string;
  readonly startDate: Date;
  status: ExecutionStatus;
  output?: string;
  error?: string;
  cause?: string;
  stopDate?: Date;
  abortRun?: () => void;
  done: Promise<void>;
  /** Aborts the integrations in flight (HTTP calls, SDK calls) when the execution ends. */
  readonly controller: AbortController;
  readonly openTokens: Set<OpenToken>;
  readonly events: ExecutionEvent[];
  /** Its waiting tasks resumed: SendTaskSuccess / SendTaskFailure accepted on its tokens. */
  resumes: number;
}

interface OpenToken {
  readonly token: string;
  readonly execution: ExecutionRecord;
  readonly stateName: string;
  readonly promise: Promise<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  timer?: NodeJS.Timeout;
}

interface Outcome {
  readonly status: Exclude<ExecutionStatus, 'RUNNING'>;
  readonly output?: string;
  readonly error?: string;
  readonly cause?: string;
}

type Mutable<T> = { -readonly [K in keyof T]: Mutable<T[K]> };

export class LocalStepFunctions {
  private readonly machines = new Map<string, CompiledStateMachine>();
  /** Every execution still known, in start order (a Map keeps insertion order). */
  private readonly executions = new Map<string, ExecutionRecord>();
  private readonly finishedOrder: string[] = [];
  private readonly openTokens = new Map<string, OpenToken>();
  private readonly listeners = new Set<(execution: ExecutionDescription) => void>();
  private readonly clients = new Map<string, SdkClient>();
  /** Signs minted tokens, so a token can be told apart from garbage without remembering it. */
  private readonly tokenKey = randomBytes(32);
  private readonly clock: () => number;
  private readonly maxFinished: number;
  private readonly stats: Mutable<LocalStepFunctionsCounters> = {
    startedByStateMachine: {},
    startedByType: { STANDARD: 0, EXPRESS: 0 },
    taskTokens: { issued: 0, succeeded: 0, failed: 0, heartbeats: 0, invalid: 0, timedOut: 0, expired: 0 },
  };
  private server?: http.Server;
  private baseUrl?: string;
  private stopped = false;

  constructor(private readonly options: LocalStepFunctionsOptions) {
    this.clock = options.clock ?? Date.now;
    this.maxFinished = options.maxFinishedExecutions ?? 2000;
  }

  // ---------------------------------------------------------------- lifecycle

  /** Starts the HTTP API on 127.0.0.1 (a free port) and resolves with its base URL. */
  public async listen(): Promise<string> {
    if (this.baseUrl) {
      return this.baseUrl;
    }
    const server = http.createServer((req, res) => {
      void this.handleHttp(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this.baseUrl;
  }

  /** Aborts the running executions, closes the HTTP API and the SDK clients. */
  public async stop(): Promise<void> {
    this.stopped = true;
    const running = [...this.executions.values()].filter((e) => e.status === 'RUNNING');
    for (const execution of running) {
      this.abortExecution(execution, undefined, 'The local Step Functions stopped');
    }
    // Aborting settles every pending task, so the library's timers are cleared and the runs end.
    await Promise.allSettled(running.map((e) => e.done));
    const server = this.server;
    this.server = undefined;
    this.baseUrl = undefined;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    for (const client of this.clients.values()) {
      client.destroy();
    }
    this.clients.clear();
  }

  // ---------------------------------------------------------------- state machines

  /**
   * Adds a state machine. Builds (and so validates) it once, and throws when a state uses
   * something this service cannot execute, naming the state and what it uses.
   */
  public addStateMachine(sm: LocalStateMachine): void {
    const prepared = prepareDefinition(sm);
    const tasks = prepared.tasks.map((task) => this.planTask(sm, task));
    let machine: StateMachine;
    try {
      machine = buildStateMachine(prepared.definition, { checkArn: true, checkPaths: true });
    } catch (error) {
      throw new Error(`state machine ${sm.name}: ${(error as Error).message}`);
    }
    const tokenStates = new Set(tasks.filter((t) => t.waitForToken).map((t) => t.stateName));
    this.machines.set(sm.arn, { spec: sm, machine, tasks, tokenStates });
  }

  /** The ARNs of the state machines added. */
  public stateMachineArns(): string[] {
    return [...this.machines.keys()];
  }

  // ---------------------------------------------------------------- executions

  /**
   * Starts an execution. `input` is JSON text as in the API, or any other value to serialize.
   * Throws LocalSfnError (StateMachineDoesNotExist, InvalidExecutionInput, InvalidName,
   * ExecutionAlreadyExists) as the API does.
   */
  public startExecution(stateMachineArn: string, input: unknown = '{}', name?: string): { executionArn: string; startDate: Date } {
    const execution = this.createExecution(stateMachineArn, input, name);
    return { executionArn: execution.executionArn, startDate: execution.startDate };
  }

  /** Starts an Express execution and resolves when it ends (StartSyncExecution). */
  public async startSyncExecution(stateMachineArn: string, input: unknown = '{}', name?: string): Promise<ExecutionDescription> {
    const machine = this.machines.get(stateMachineArn);
    if (machine && machine.spec.type !== 'EXPRESS') {
      throw new LocalSfnError('StateMachineTypeNotSupported', 'This operation is not supported by this type of state machine');
    }
    const execution = this.createExecution(stateMachineArn, input, name);
    await execution.done;
    return describe(execution);
  }

  /** Throws LocalSfnError ExecutionDoesNotExist for an unknown (or forgotten) execution. */
  public describeExecution(executionArn: string): ExecutionDescription {
    return describe(this.executionOf(executionArn));
  }

  /**
   * How many times the execution's waiting tasks were resumed (SendTaskSuccess / SendTaskFailure
   * accepted on its tokens): `counters().taskTokens` per execution, for runs that share the
   * service (the fault suite's scenarios running side by side).
   */
  public resumesOf(executionArn: string): number {
    return this.executionOf(executionArn).resumes;
  }

  /** Resolves when the execution has ended. */
  public async waitForExecution(executionArn: string): Promise<ExecutionDescription> {
    const execution = this.executionOf(executionArn);
    await execution.done;
    return describe(execution);
  }

  /** The executions of a state machine still known, newest first. */
  public listExecutions(stateMachineArn: string, status?: ExecutionStatus): ExecutionDescription[] {
    if (!this.machines.has(stateMachineArn)) {
      throw new LocalSfnError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${stateMachineArn}'`);
    }
    return [...this.executions.values()]
      .filter((e) => e.stateMachineArn === stateMachineArn && (status === undefined || e.status === status))
      .reverse()
      .map(describe);
  }

  /** The last events of an execution (bounded), for debugging a local run. */
  public executionEvents(executionArn: string): ExecutionEvent[] {
    return [...this.executionOf(executionArn).events];
  }

  /** Stops a running execution (status ABORTED); a closed one is left as it is. */
  public stopExecution(executionArn: string, error?: string, cause?: string): { stopDate: Date } {
    const execution = this.executionOf(executionArn);
    if (execution.status === 'RUNNING') {
      this.abortExecution(execution, error, cause);
    }
    return { stopDate: execution.stopDate ?? new Date(this.clock()) };
  }

  /** Calls `listener` with the description of every execution that ends. Returns an unsubscribe. */
  public onExecutionEnd(listener: (execution: ExecutionDescription) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A snapshot of the counters. */
  public counters(): LocalStepFunctionsCounters {
    return JSON.parse(JSON.stringify(this.stats));
  }

  // ---------------------------------------------------------------- task tokens

  /** SendTaskSuccess: `output` is JSON text. */
  public sendTaskSuccess(taskToken: string, output: string): void {
    if (typeof output !== 'string' || Buffer.byteLength(output) > MAX_PAYLOAD_BYTES) {
      throw new LocalSfnError('ValidationException', `1 validation error detected: Value at 'output' failed to satisfy constraint: Member must have length less than or equal to ${MAX_PAYLOAD_BYTES}`, false);
    }
    const open = this.openTokenOf(taskToken);
    let value: unknown;
    try {
      value = JSON.parse(output);
    } catch {
      throw new LocalSfnError('InvalidOutput', 'The provided JSON output data is invalid');
    }
    this.stats.taskTokens.succeeded++;
    open.execution.resumes++;
    this.settleToken(open, { value });
  }

  /** SendTaskFailure: the waiting task fails with `error` (its Catch sees `cause`). */
  public sendTaskFailure(taskToken: string, error?: string, cause?: string): void {
    checkLength('error', error, 256);
    checkLength('cause', cause, 32768);
    const open = this.openTokenOf(taskToken);
    this.stats.taskTokens.failed++;
    open.execution.resumes++;
    this.settleToken(open, { error: taskError(error ?? '', cause ?? '') });
  }

  /** SendTaskHeartbeat: accepted for open tokens; HeartbeatSeconds is not enforced locally. */
  public sendTaskHeartbeat(taskToken: string): void {
    this.openTokenOf(taskToken);
    this.stats.taskTokens.heartbeats++;
  }

  // ---------------------------------------------------------------- executions, internals

  private createExecution(stateMachineArn: string, input: unknown, name: string | undefined): ExecutionRecord {
    if (this.stopped) {
      throw new LocalSfnError('ServiceUnavailable', 'The local Step Functions is stopped', false);
    }
    const machine = this.machines.get(stateMachineArn);
    if (!machine) {
      throw new LocalSfnError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${stateMachineArn}'`);
    }
    const inputText = executionInputText(input);
    const executionName = name ?? randomUUID();
    checkExecutionName(executionName);
    const executionArn = executionArnOf(machine.spec, executionName);
    const existing = this.executions.get(executionArn);
    if (existing) {
      // AWS: the same name and input while running is an idempotent retry; anything else a clash.
      if (existing.status === 'RUNNING' && existing.input === inputText) {
        return existing;
      }
      throw new LocalSfnError('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn}'`);
    }
    const execution: ExecutionRecord = {
      executionArn,
      stateMachineArn,
      name: executionName,
      type: machine.spec.type,
      roleArn: machine.spec.roleArn,
      input: inputText,
      startDate: new Date(this.clock()),
      status: 'RUNNING',
      done: Promise.resolve(),
      controller: new AbortController(),
      openTokens: new Set(),
      events: [],
      resumes: 0,
    };
    this.executions.set(executionArn, execution);
    this.stats.startedByStateMachine[stateMachineArn] = (this.stats.startedByStateMachine[stateMachineArn] ?? 0) + 1;
    this.stats.startedByType[machine.spec.type]++;
    this.run(machine, execution);
    return execution;
  }

  private run(machine: CompiledStateMachine, execution: ExecutionRecord): void {
    const handlers: Record<string, (input: any) => Promise<any>> = {};
    for (const plan of machine.tasks) {
      // What the integration throws is the task's failure, for its Retry and Catch; an error of the
      // interpreter's own path or intrinsic processing is not marked so: States.Runtime, uncaught.
      handlers[plan.stateName] = (input) => this.runTask(plan, execution, input).catch((error) => {
        throw taskFailure(error);
      });
    }
    // The library overwrites Execution.Input and Execution.StartTime with its own values.
    const context = {
      Execution: { Id: execution.executionArn, Name: execution.name, RoleArn: execution.roleArn, StartTime: execution.startDate.toISOString() },
      StateMachine: { Id: machine.spec.arn, Name: machine.spec.name },
    };
    const run = machine.machine.run(JSON.parse(execution.input), { overrides: { taskResourceLocalHandlers: handlers }, context });
    execution.abortRun = run.abort;
    void this.collectEvents(execution, run.eventLogs, machine.tokenStates, machine.spec);
    execution.done = run.result.then(
      (output) => this.finish(execution, { status: 'SUCCEEDED', output: JSON.stringify(output) }),
      (error) => this.finish(execution, outcomeOfError(error)),
    );
  }

  /**
   * Keeps the last events of the execution (the library queues them until someone reads) and
   * counts the callback tasks that timed out.
   */
  private async collectEvents(execution: ExecutionRecord, events: AsyncGenerator<unknown>, tokenStates: ReadonlySet<string>,
    spec: LocalStateMachine): Promise<void> {
    const observer = (globalThis as Record<symbol, ExecutionEventObserver | undefined>)[EXECUTION_EVENT_OBSERVER];
    try {
      for await (const item of events) {
        if (observer) {
          try {
            observer(spec, execution.executionArn, item);
          } catch (error) {
            process.stderr.write(`execution event observer failed on ${execution.executionArn}: ${(error as Error).message}\n`);
          }
        }
        const event = item as ExecutionEvent & { Error?: string; state?: { name?: string } };
        if (event.type === 'StateFailed' && event.Error === 'States.Timeout' && tokenStates.has(event.state?.name ?? '')) {
          this.stats.taskTokens.expired++;
        }
        execution.events.push(event);
        if (execution.events.length > MAX_EVENTS_PER_EXECUTION) {
          execution.events.shift();
        }
      }
    } catch {
      // Events are a debugging aid only.
    }
  }

  private abortExecution(execution: ExecutionRecord, error?: string, cause?: string): void {
    // Abort first, so the tasks failed by closing their tokens do not lead to further states.
    execution.abortRun?.();
    this.finish(execution, { status: 'ABORTED', error, cause });
  }

  /** Records the end of an execution once, closes its tokens and aborts its calls in flight. */
  private finish(execution: ExecutionRecord, outcome: Outcome): void {
    if (execution.status !== 'RUNNING') {
      return;
    }
    execution.status = outcome.status;
    execution.output = outcome.output;
    execution.error = outcome.error || undefined;
    execution.cause = outcome.cause || undefined;
    execution.stopDate = new Date(this.clock());
    for (const open of [...execution.openTokens]) {
      this.settleToken(open, { error: taskError('States.Runtime', 'The execution has ended') });
    }
    execution.controller.abort();
    this.finishedOrder.push(execution.executionArn);
    this.forgetOldExecutions();
    const description = describe(execution);
    for (const listener of this.listeners) {
      try {
        listener(description);
      } catch {
        // A listener's failure must not break the execution's bookkeeping.
      }
    }
  }

  private forgetOldExecutions(): void {
    while (this.finishedOrder.length > this.maxFinished) {
      this.executions.delete(this.finishedOrder.shift()!);
    }
  }

  private executionOf(executionArn: string): ExecutionRecord {
    const execution = typeof executionArn === 'string' ? this.executions.get(executionArn) : undefined;
    if (!execution) {
      throw new LocalSfnError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
    }
    return execution;
  }

  // ---------------------------------------------------------------- tasks

  /** Runs one Task state for the library: the integration, then the wait for its token if any. */
  private async runTask(plan: TaskPlan, execution: ExecutionRecord, input: unknown): Promise<any> {
    // Everything before the first await runs inside the library's call, before it starts its
    // own TimeoutSeconds timer: openToken relies on that to expire the token just after it.
    if (execution.status !== 'RUNNING') {
      throw taskError('States.Runtime', 'The execution has ended');
    }
    checkPayloadSize(plan, 'input', input);
    const timeoutSeconds = plan.timeoutSeconds ?? timeoutFromPath(plan.timeoutSecondsPath, input);
    const timeoutMs = timeoutSeconds === undefined ? undefined : timeoutSeconds * 1000;
    const run: TaskRun = { execution, signal: execution.controller.signal, timeoutMs };
    const parameters = stringifyAt(input, plan.stringifyAt);
    if (!plan.waitForToken) {
      return checkPayloadSize(plan, 'result', jsonSafe(await abortable(plan.call(parameters, run), run.signal), 'iso'));
    }
    const open = this.openToken(execution, plan.stateName, timeoutSeconds);
    try {
      await abortable(plan.call(replaceDeep(parameters, TOKEN_PLACEHOLDER, open.token), run), run.signal);
    } catch (error) {
      // The token never reached anyone: close it so a stray answer gets TaskTimedOut.
      this.settleToken(open, { error: error as Error });
      throw error;
    }
    return open.promise;
  }

  private openToken(execution: ExecutionRecord, stateName: string, timeoutSeconds: number | undefined): OpenToken {
    const token = this.mintToken(execution.executionArn, stateName);
    let resolve!: (value: unknown) => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A token can be settled before the integration call returns: never an unhandled rejection.
    promise.catch(() => undefined);
    const open: OpenToken = { token, execution, stateName, promise, resolve, reject };
    this.openTokens.set(token, open);
    execution.openTokens.add(open);
    this.stats.taskTokens.issued++;
    if (timeoutSeconds !== undefined) {
      // Deferred to a microtask, the timer is created after the library's TimeoutSeconds timer of
      // the same duration and so fires just after it: the library fails the task with its own
      // States.Timeout (which States.TaskFailed does not match), then the token is closed.
      queueMicrotask(() => {
        if (this.openTokens.has(token)) {
          open.timer = setTimeout(() => this.expireToken(open), timeoutSeconds * 1000);
          open.timer.unref();
        }
      });
    }
    return open;
  }

  private expireToken(open: OpenToken): void {
    this.settleToken(open, { error: taskError('States.Timeout', '') });
  }

  private settleToken(open: OpenToken, result: { value: unknown } | { error: Error }): void {
    if (!this.openTokens.delete(open.token)) {
      return;
    }
    open.execution.openTokens.delete(open);
    clearTimeout(open.timer);
    if ('error' in result) {
      open.reject(result.error);
    } else {
      open.resolve(result.value);
    }
  }

  private mintToken(executionArn: string, stateName: string): string {
    const payload = Buffer.from(JSON.stringify({ e: executionArn, s: stateName, n: randomBytes(12).toString('base64url') })).toString('base64url');
    return `${TOKEN_PREFIX}.${payload}.${this.signature(payload)}`;
  }

  private signature(payload: string): string {
    return createHmac('sha256', this.tokenKey).update(payload).digest('base64url');
  }

  /**
   * The open token, or the error AWS gives: TaskTimedOut for a token that was ours but is closed
   * (settled, timed out, execution ended), InvalidToken for garbage, TaskDoesNotExist for a token
   * that looks like ours but was not minted here (e.g. before the runtime restarted).
   */
  private openTokenOf(taskToken: unknown): OpenToken {
    if (typeof taskToken !== 'string' || taskToken.length < 1 || taskToken.length > 2048) {
      this.stats.taskTokens.invalid++;
      throw new LocalSfnError('InvalidToken', 'Invalid Token: the token must be a string of 1 to 2048 characters');
    }
    const open = this.openTokens.get(taskToken);
    if (open) {
      return open;
    }
    const [prefix, payload, signature, ...rest] = taskToken.split('.');
    if (prefix !== TOKEN_PREFIX || !payload || !signature || rest.length > 0) {
      this.stats.taskTokens.invalid++;
      throw new LocalSfnError('InvalidToken', `Invalid Token: '${abbreviate(taskToken)}'`);
    }
    const expected = Buffer.from(this.signature(payload));
    const given = Buffer.from(signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      this.stats.taskTokens.invalid++;
      throw new LocalSfnError('TaskDoesNotExist', 'Provided task does not exist (the token was not issued by this local Step Functions)');
    }
    this.stats.taskTokens.timedOut++;
    throw new LocalSfnError('TaskTimedOut', 'Task Timed Out: the task of this token is closed');
  }

  // ---------------------------------------------------------------- integrations

  /** What a Task's Resource runs, or an error naming the state and the Resource. */
  private planTask(sm: LocalStateMachine, task: PreparedTask): TaskPlan {
    const { stateName, state } = task;
    const resource = String(state.Resource);
    const waitForToken = resource.endsWith(WAIT_FOR_TASK_TOKEN);
    const base = waitForToken ? resource.slice(0, -WAIT_FOR_TASK_TOKEN.length) : resource;
    const fail = (why: string) => new Error(`state machine ${sm.name}: state '${stateName}' uses Resource '${resource}', ${why}`);
    if (waitForToken && sm.type === 'EXPRESS') {
      throw fail('but Express state machines do not support .waitForTaskToken');
    }
    const call = this.callFor(base, waitForToken, fail);
    return {
      stateName,
      resource,
      waitForToken,
      timeoutSeconds: typeof state.TimeoutSeconds === 'number' ? state.TimeoutSeconds : undefined,
      timeoutSecondsPath: typeof state.TimeoutSecondsPath === 'string' ? state.TimeoutSecondsPath : undefined,
      stringifyAt: task.stringifyAt,
      handlesDataLimit: {
        catch: namesError(state.Catch, DATA_LIMIT_EXCEEDED),
        retry: namesError(state.Retry, DATA_LIMIT_EXCEEDED),
      },
      call,
    };
  }

  private callFor(base: string, waitForToken: boolean, fail: (why: string) => Error): TaskCall {
    const states = /^arn:aws[a-z-]*:states:::(.+)$/.exec(base)?.[1];
    if (states === 'sqs:sendMessage') {
      return (p, run) => this.sqsSendMessage(p, run);
    }
    const dynamoOp = /^dynamodb:(getItem|putItem|updateItem|deleteItem)$/.exec(states ?? '')?.[1];
    if (dynamoOp) {
      return (p, run) => this.dynamoDbItem(dynamoOp, p, run);
    }
    if (states === 'apigateway:invoke') {
      return (p, run) => this.apiGatewayInvoke(p, run);
    }
    if (states === 'lambda:invoke') {
      return (p) => this.lambdaInvoke(p);
    }
    const sdk = /^aws-sdk:([a-z0-9]+):([A-Za-z0-9]+)$/.exec(states ?? '');
    if (sdk) {
      return this.sdkCallFor(sdk[1], sdk[2], fail);
    }
    if (!waitForToken && /^arn:aws[a-z-]*:lambda:[^:]+:[0-9]{12}:function:[^:]+(:[^:]+)?$/.test(base)) {
      return async (p) => (await this.invokeLambda(base, p)) ?? null;
    }
    throw fail('which the local Step Functions does not support (supported: sqs:sendMessage, dynamodb:getItem/putItem/updateItem/deleteItem, '
      + 'apigateway:invoke, lambda:invoke, Lambda function ARNs, aws-sdk:sqs|sfn|dynamodb|secretsmanager:<action>, each with .waitForTaskToken)');
  }

  private sdkCallFor(service: string, action: string, fail: (why: string) => Error): TaskCall {
    const command = `${upperFirst(action)}Command`;
    if (service === 'sfn') {
      const sfnAction = upperFirst(action) as SfnAction;
      if (!SFN_ACTIONS.includes(sfnAction)) {
        throw fail(`but the local Step Functions answers only ${SFN_ACTIONS.join(', ')}`);
      }
      return (p) => this.sfnInProcess(sfnAction, p);
    }
    const known = SDK_SERVICES[service as keyof typeof SDK_SERVICES];
    if (!known) {
      throw fail(`but only the services ${['sfn', ...Object.keys(SDK_SERVICES)].join(', ')} run locally`);
    }
    if (typeof known.module[command] !== 'function') {
      throw fail(`but the ${service} SDK has no ${command}`);
    }
    return async (p, run) => {
      try {
        return await this.sdkSend(known, command, p, run.signal);
      } catch (error) {
        throw sdkTaskError(error, known.sdkPrefix, known.sdkGeneric, known.baseException);
      }
    };
  }

  /** `arn:aws:states:::sqs:sendMessage`: a MessageBody that is not a string is sent as JSON. */
  private async sqsSendMessage(parameters: Record<string, unknown>, run: TaskRun): Promise<unknown> {
    const input = { ...parameters };
    if (input.MessageBody !== undefined && typeof input.MessageBody !== 'string') {
      input.MessageBody = JSON.stringify(input.MessageBody);
    }
    try {
      return await this.sdkSend(SDK_SERVICES.sqs, 'SendMessageCommand', input, run.signal);
    } catch (error) {
      throw sdkTaskError(error, 'SQS', 'AmazonSQSException', SDK_SERVICES.sqs.baseException);
    }
  }

  /** `arn:aws:states:::dynamodb:<op>Item`, with raw attribute values as in the definition. */
  private async dynamoDbItem(operation: string, parameters: Record<string, unknown>, run: TaskRun): Promise<unknown> {
    try {
      return await this.sdkSend(SDK_SERVICES.dynamodb, `${upperFirst(operation)}Command`, parameters, run.signal);
    } catch (error) {
      throw sdkTaskError(error, 'DynamoDB', 'AmazonDynamoDBException', SDK_SERVICES.dynamodb.baseException);
    }
  }

  private async sdkSend(service: SdkService, command: string, input: unknown, signal: AbortSignal): Promise<unknown> {
    const Command = service.module[command] as new (input: unknown) => unknown;
    const output = await this.client(service).send(new Command(input), { abortSignal: signal });
    const { $metadata: _metadata, ...rest } = output;
    return rest;
  }

  private client(service: SdkService): SdkClient {
    let client = this.clients.get(service.endpoint);
    if (!client) {
      // One attempt: the Retry of the definition decides, as it does for an error on AWS.
      client = new service.clientClass({
        endpoint: this.options.endpoints[service.endpoint],
        region: LOCAL_REGION,
        credentials: LOCAL_CREDENTIALS,
        maxAttempts: 1,
      });
      this.clients.set(service.endpoint, client);
    }
    return client;
  }

  /** `aws-sdk:sfn:<action>`: answered in-process, with the error names of the AWS SDK integration. */
  private async sfnInProcess(action: SfnAction, parameters: Record<string, unknown>): Promise<unknown> {
    try {
      const output = await this.answer(action, lowerFirstKeys(parameters ?? {}));
      return upperFirstKeysDeep(jsonSafe(output, 'iso'));
    } catch (error) {
      if (error instanceof LocalSfnError) {
        const name = error.modeled ? `Sfn.${withExceptionSuffix(error.name)}` : 'Sfn.SfnException';
        throw taskError(name, `${error.message} (Service: Sfn, Status Code: 400, Error Code: ${error.name})`);
      }
      throw taskError('Sfn.SfnException', String((error as Error)?.message ?? error));
    }
  }

  /**
   * `arn:aws:states:::apigateway:invoke`: calls `https://<ApiEndpoint>/<Stage><Path>` through
   * rewriteUrl. IAM_ROLE calls carry the state machine's role in PRINCIPAL_HEADER.
   */
  private async apiGatewayInvoke(p: Record<string, any>, run: TaskRun): Promise<unknown> {
    const url = new URL(this.options.rewriteUrl(apiGatewayUrl(p)));
    for (const [key, values] of Object.entries(p.QueryParameters ?? {})) {
      for (const value of asArray(values)) {
        url.searchParams.append(key, String(value));
      }
    }
    const headers = new Headers();
    for (const [key, values] of Object.entries(p.Headers ?? {})) {
      for (const value of asArray(values)) {
        headers.append(key, String(value));
      }
    }
    if (p.AuthType === 'IAM_ROLE') {
      headers.set(PRINCIPAL_HEADER, run.execution.roleArn);
    }
    const method = String(p.Method ?? 'GET').toUpperCase();
    const body = p.RequestBody === undefined || method === 'GET' || method === 'HEAD'
      ? undefined
      : typeof p.RequestBody === 'string' ? p.RequestBody : JSON.stringify(p.RequestBody);
    const signals = run.timeoutMs === undefined ? [run.signal] : [run.signal, AbortSignal.timeout(run.timeoutMs)];
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, { method, headers, body, signal: AbortSignal.any(signals) });
      text = await response.text();
    } catch (error) {
      const e = error as Error & { cause?: { code?: string } };
      throw taskError(`ApiGateway.${e.cause?.code ?? e.name}`, `${e.message}${e.cause ? ` (${String(e.cause)})` : ''} calling ${url.href}`);
    }
    if (response.status < 200 || response.status > 299) {
      throw taskError(`ApiGateway.${response.status}`, text);
    }
    return {
      ResponseBody: parseJsonOr(text),
      StatusCode: response.status,
      StatusText: response.statusText,
      Headers: headersAsArrays(response.headers),
    };
  }

  /** `arn:aws:states:::lambda:invoke`: the result in Payload; InvocationType Event does not wait. */
  private async lambdaInvoke(p: Record<string, any>): Promise<unknown> {
    if (typeof p.FunctionName !== 'string') {
      throw taskError('States.Runtime', 'lambda:invoke needs a FunctionName');
    }
    if (p.InvocationType === 'Event') {
      this.invokeLambda(p.FunctionName, p.Payload ?? {}).catch(() => undefined);
      return { Payload: '', StatusCode: 202 };
    }
    // A function that returns nothing gives a null Payload, as Lambda does.
    return { Payload: (await this.invokeLambda(p.FunctionName, p.Payload ?? {})) ?? null, StatusCode: 200 };
  }

  private async invokeLambda(functionName: string, payload: unknown): Promise<unknown> {
    try {
      return await this.options.invokeLambda(functionName, payload);
    } catch (error) {
      throw lambdaTaskError(error);
    }
  }

  // ---------------------------------------------------------------- Step Functions API

  /** One API action: input and output as on the wire (camelCase), dates as Date. */
  private async answer(action: SfnAction, input: Record<string, any>): Promise<Record<string, unknown>> {
    switch (action) {
      case 'StartExecution':
        return this.startExecution(requireString(input, 'stateMachineArn'), input.input ?? '{}', input.name);
      case 'StartSyncExecution':
        return describeOutput(await this.startSyncExecution(requireString(input, 'stateMachineArn'), input.input ?? '{}', input.name));
      case 'DescribeExecution':
        return describeOutput(this.describeExecution(requireString(input, 'executionArn')));
      case 'StopExecution':
        return this.stopExecution(requireString(input, 'executionArn'), input.error, input.cause);
      case 'ListExecutions':
        return { executions: this.listExecutions(requireString(input, 'stateMachineArn'), input.statusFilter).slice(0, input.maxResults || 1000).map(listItem) };
      case 'SendTaskSuccess':
        this.sendTaskSuccess(input.taskToken, typeof input.output === 'string' ? input.output : JSON.stringify(input.output));
        return {};
      case 'SendTaskFailure':
        this.sendTaskFailure(input.taskToken, input.error, input.cause);
        return {};
      case 'SendTaskHeartbeat':
        this.sendTaskHeartbeat(input.taskToken);
        return {};
    }
  }

  private async handleHttp(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const target = String(req.headers['x-amz-target'] ?? '');
    const action = target.startsWith('AWSStepFunctions.') ? target.slice('AWSStepFunctions.'.length) : '';
    try {
      const body = await readBody(req);
      if (!SFN_ACTIONS.includes(action as SfnAction)) {
        throw new LocalSfnError('UnknownOperationException', `The local Step Functions does not answer '${target}'`, false);
      }
      let input: Record<string, unknown>;
      try {
        input = body.length === 0 ? {} : JSON.parse(body);
      } catch {
        throw new LocalSfnError('SerializationException', 'The request body is not valid JSON', false);
      }
      // ---- fault hook (local/faults.ts) begin ----
      const injected = this.options.faults?.beforeCall?.('sfn', action);
      if (injected) {
        throw new LocalSfnError(injected.code, injected.message);
      }
      // ---- fault hook end ----
      const output = await this.answer(action as SfnAction, input ?? {});
      // ---- fault hook (local/faults.ts) begin: e.g. crash the caller after its call took effect ----
      await this.options.faults?.afterCall?.('sfn', action);
      // ---- fault hook end ----
      sendJson(res, 200, jsonSafe(output, 'epoch'));
    } catch (error) {
      if (error instanceof LocalSfnError) {
        res.setHeader('x-amzn-errortype', error.name);
        sendJson(res, 400, { __type: `com.amazonaws.sfn#${error.name}`, message: error.message });
      } else {
        sendJson(res, 500, { __type: 'com.amazonaws.sfn#InternalFailure', message: String((error as Error)?.message ?? error) });
      }
    }
  }
}

// ------------------------------------------------------------------ definitions

interface PreparedTask {
  readonly stateName: string;
  readonly state: Record<string, any>;
  readonly stringifyAt: string[][];
}

/**
 * A copy of the definition the library can run, and its Task states (nested ones included: the
 * library keys task handlers by state name across Parallel branches and Map iterators).
 * Throws for what cannot run locally.
 */
function prepareDefinition(sm: LocalStateMachine): { definition: Record<string, any>; tasks: PreparedTask[] } {
  // A copy: the rewrites below must not change the caller's object. A JSON string is taken too.
  const source: unknown = sm.definition;
  const definition = JSON.parse(typeof source === 'string' ? source : JSON.stringify(source)) as Record<string, any>;
  const fail = (where: string, why: string) => new Error(`state machine ${sm.name}: ${where} ${why}`);
  if (definition.QueryLanguage === 'JSONata') {
    throw fail('the definition', 'uses JSONata, which aws-local-stepfunctions ignores silently');
  }
  if (typeof definition.TimeoutSeconds === 'number') {
    definition.TimeoutSeconds = Math.min(definition.TimeoutSeconds, MAX_TIMEOUT_SECONDS);
  }
  const tasks = new Map<string, PreparedTask>();
  visitStates(definition, (stateName, state) => {
    const where = `state '${stateName}'`;
    if (state.QueryLanguage === 'JSONata') {
      throw fail(where, 'uses JSONata, which aws-local-stepfunctions ignores silently');
    }
    if (state.Type === 'Map' && (state.ItemReader || state.ItemProcessor?.ProcessorConfig?.Mode === 'DISTRIBUTED')) {
      throw fail(where, 'is a Distributed Map, which does not run locally');
    }
    if (state.Type === 'Task') {
      const stringify = prepareTask(stateName, state, fail);
      const previous = tasks.get(stateName);
      if (previous && JSON.stringify(previous.state) !== JSON.stringify(state)) {
        throw fail(where, 'appears twice with different definitions; task handlers are keyed by state name locally');
      }
      tasks.set(stateName, { stateName, state, stringifyAt: stringify });
    }
    const own = { ...state, Branches: undefined, Iterator: undefined, ItemProcessor: undefined };
    const unsupported = /\$\$\.(Task|State)\b[.A-Za-z]*/.exec(JSON.stringify(own));
    if (unsupported) {
      throw fail(where, `reads ${unsupported[0]}, which the local Step Functions does not provide (only "<key>.$": "$$.Task.Token" in the Parameters of a .waitForTaskToken task)`);
    }
  });
  return { definition, tasks: [...tasks.values()] };
}

/**
 * Rewrites one Task state in place: its token parameter, its JsonToString parameters and its
 * timeout. Returns where the task's input must be JSON-stringified.
 */
function prepareTask(stateName: string, state: Record<string, any>, fail: (where: string, why: string) => Error): string[][] {
  const where = `state '${stateName}'`;
  if (typeof state.Resource === 'string' && /\.sync(:\d+)?$/.test(state.Resource)) {
    throw fail(where, `uses Resource '${state.Resource}': .sync integrations do not run locally`);
  }
  if (typeof state.Resource === 'string' && state.Resource.endsWith(WAIT_FOR_TASK_TOKEN)) {
    const replaced = replaceTokenParameters(state.Parameters);
    if (replaced === 0) {
      throw fail(where, `uses Resource '${state.Resource}' but passes no "<key>.$": "$$.Task.Token" in its Parameters`);
    }
  }
  // The library's default task timeout is 60 s; AWS has none (the execution's bounds it).
  if (state.TimeoutSeconds === undefined && state.TimeoutSecondsPath === undefined) {
    state.TimeoutSeconds = MAX_TIMEOUT_SECONDS;
  } else if (typeof state.TimeoutSeconds === 'number') {
    state.TimeoutSeconds = Math.min(state.TimeoutSeconds, MAX_TIMEOUT_SECONDS);
  }
  // aws-local-stepfunctions strips every backslash from the result of a string intrinsic, which
  // breaks States.JsonToString of a value holding a JSON string (a Cause, a response body). The
  // whole-value form is taken over: the library reads the path, the task stringifies.
  const stringify: string[][] = [];
  takeOverJsonToString(state.Parameters, [], stringify);
  return stringify;
}

/** Replaces `"<key>.$": "States.JsonToString(<path>)"` by `"<key>.$": "<path>"`, noting where. */
function takeOverJsonToString(value: unknown, at: string[], found: string[][]): void {
  if (value === null || typeof value !== 'object') {
    return;
  }
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    const path = typeof obj[key] === 'string' && key.endsWith('.$') ? /^States\.JsonToString\((\$[^(),']*)\)$/.exec((obj[key] as string).trim())?.[1] : undefined;
    if (path) {
      obj[key] = path.trim();
      found.push([...at, key.slice(0, -2)]);
    } else {
      takeOverJsonToString(obj[key], [...at, Array.isArray(obj) ? key : key.replace(/\.\$$/, '')], found);
    }
  }
}

/** JSON-stringifies the values of `input` at the given key paths. */
function stringifyAt(input: unknown, paths: readonly string[][]): unknown {
  if (paths.length === 0) {
    return input;
  }
  const copy = JSON.parse(JSON.stringify(input ?? null));
  for (const path of paths) {
    let parent: any = copy;
    for (const key of path.slice(0, -1)) {
      parent = parent?.[key];
    }
    const last = path[path.length - 1];
    if (parent !== null && typeof parent === 'object' && last in parent) {
      parent[last] = JSON.stringify(parent[last]);
    }
  }
  return copy;
}

/** Replaces `"<key>.$": "$$.Task.Token"` by `"<key>": TOKEN_PLACEHOLDER`, at any depth. */
function replaceTokenParameters(value: unknown): number {
  if (Array.isArray(value)) {
    return value.reduce<number>((n, item) => n + replaceTokenParameters(item), 0);
  }
  if (value === null || typeof value !== 'object') {
    return 0;
  }
  const obj = value as Record<string, unknown>;
  let count = 0;
  for (const key of Object.keys(obj)) {
    if (key.endsWith('.$') && obj[key] === '$$.Task.Token') {
      delete obj[key];
      obj[key.slice(0, -2)] = TOKEN_PLACEHOLDER;
      count++;
    } else {
      count += replaceTokenParameters(obj[key]);
    }
  }
  return count;
}

function visitStates(machine: Record<string, any>, visit: (name: string, state: Record<string, any>) => void): void {
  for (const [name, state] of Object.entries<Record<string, any>>(machine.States ?? {})) {
    visit(name, state);
    for (const branch of state.Branches ?? []) {
      visitStates(branch, visit);
    }
    const iterator = state.ItemProcessor ?? state.Iterator;
    if (iterator) {
      visitStates(iterator, visit);
    }
  }
}

// ------------------------------------------------------------------ helpers

/** An error as a Catch sees it: `name` is matched by ErrorEquals, `message` becomes the Cause. */
function taskError(name: string, cause: string): Error {
  const error = new Error(cause);
  error.name = name;
  return error;
}

/**
 * The error of a failed SDK call as Step Functions names it: `<prefix>.<Code>Exception` for an
 * error of the service model (Step Functions always adds the Exception suffix), the generic
 * `<prefix>.<generic>` for anything else (e.g. `Sqs.SqsException`, `DynamoDB.AmazonDynamoDBException`).
 */
function sdkTaskError(error: unknown, prefix: string, generic: string, baseException: Function): Error {
  const e = error as Error & { $metadata?: { httpStatusCode?: number } };
  const modeled = error instanceof baseException && Object.getPrototypeOf(error) !== baseException.prototype;
  const name = modeled ? `${prefix}.${withExceptionSuffix(e.name)}` : `${prefix}.${generic}`;
  const status = e?.$metadata?.httpStatusCode;
  return taskError(name, `${e?.message ?? String(error)} (Service: ${prefix}, Status Code: ${status ?? 'none'}, Error Code: ${e?.name ?? 'unknown'})`);
}

/** A Lambda function error: named after the function's error type, the cause as Lambda reports it. */
function lambdaTaskError(error: unknown): Error {
  const e = (error ?? {}) as { name?: unknown; message?: unknown; errorType?: unknown; errorMessage?: unknown; stack?: unknown; trace?: unknown };
  const type = typeof e.errorType === 'string' ? e.errorType : error instanceof Error ? error.name : undefined;
  const name = type ? type : 'Lambda.Unknown';
  const message = typeof e.errorMessage === 'string' ? e.errorMessage : typeof e.message === 'string' ? e.message : String(error);
  const trace = Array.isArray(e.trace) ? e.trace : typeof e.stack === 'string' ? e.stack.split('\n').slice(1).map((l) => l.trim()) : [];
  return taskError(name, JSON.stringify({ errorType: name, errorMessage: message, trace }));
}

/**
 * A task's input after Parameters, or its result, over 256 KiB fails the state with
 * States.DataLimitExceeded ("After Parameters processing, the input of a state is larger than the
 * payload size quota", "Output of a connector is larger than payload size quota"), "a terminal
 * error which cannot be caught by the States.ALL error type"
 * (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html, quota:
 * https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html). A catcher or retrier
 * that names it is taken to match (the page says only that States.ALL does not).
 */
function checkPayloadSize(plan: TaskPlan, what: 'input' | 'result', payload: unknown): unknown {
  const bytes = Buffer.byteLength(JSON.stringify(payload ?? null));
  if (bytes <= MAX_PAYLOAD_BYTES) {
    return payload;
  }
  const error = taskError(DATA_LIMIT_EXCEEDED,
    `The state/task '${plan.stateName}' ${what === 'input' ? 'has an input' : 'returned a result'} with a size exceeding the maximum number of bytes service limit (${bytes} bytes, at most ${MAX_PAYLOAD_BYTES})`);
  throw handledOnlyIf(error, plan.handlesDataLimit.catch, plan.handlesDataLimit.retry);
}

function namesError(handlers: unknown, name: string): boolean {
  return Array.isArray(handlers) && handlers.some((h) => Array.isArray(h?.ErrorEquals) && h.ErrorEquals.includes(name));
}

function withExceptionSuffix(name: string): string {
  return name.endsWith('Exception') ? name : `${name}Exception`;
}

/** Rejects when the execution ends, so a task never outlives its execution (and its timers). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(taskError('States.Runtime', 'The execution has ended'));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(taskError('States.Runtime', 'The execution has ended'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function outcomeOfError(error: unknown): Outcome {
  if (error instanceof ExecutionTimeoutError) {
    return { status: 'TIMED_OUT', error: 'States.Timeout', cause: 'The execution ran longer than the TimeoutSeconds of its state machine' };
  }
  if (error instanceof ExecutionAbortedError) {
    return { status: 'ABORTED' };
  }
  // The library wraps the error that ended the execution; the wrapped one carries the name.
  // (Not `cause instanceof Error`: atob's DOMException comes from another realm under jest.)
  const inner = executionFailure(error instanceof ExecutionError && error.cause !== undefined ? error.cause : error);
  const name = inner?.name === FAIL_STATE_DEFAULT_ERROR ? undefined : inner?.name;
  const cause = inner?.message === FAIL_STATE_DEFAULT_CAUSE ? undefined : inner?.message;
  return { status: 'FAILED', error: name, cause };
}

function describe(execution: ExecutionRecord): ExecutionDescription {
  return {
    executionArn: execution.executionArn,
    stateMachineArn: execution.stateMachineArn,
    name: execution.name,
    type: execution.type,
    status: execution.status,
    input: execution.input,
    ...(execution.output !== undefined ? { output: execution.output } : {}),
    ...(execution.error !== undefined ? { error: execution.error } : {}),
    ...(execution.cause !== undefined ? { cause: execution.cause } : {}),
    startDate: execution.startDate,
    ...(execution.stopDate ? { stopDate: execution.stopDate } : {}),
  };
}

/** The answer of DescribeExecution and StartSyncExecution. */
function describeOutput(d: ExecutionDescription): Record<string, unknown> {
  const { type: _type, ...rest } = d;
  return { ...rest, inputDetails: { included: true }, ...(d.output !== undefined ? { outputDetails: { included: true } } : {}) };
}

function listItem(d: ExecutionDescription): Record<string, unknown> {
  const { executionArn, stateMachineArn, name, status, startDate, stopDate } = d;
  return { executionArn, stateMachineArn, name, status, startDate, stopDate };
}

function executionArnOf(sm: LocalStateMachine, name: string): string {
  const [, partition = 'aws', , region = LOCAL_REGION, account = LOCAL_ACCOUNT] = sm.arn.split(':');
  const base = `arn:${partition}:states:${region}:${account}`;
  // Express execution ARNs carry an id of their own: names need not be unique there.
  return sm.type === 'EXPRESS' ? `${base}:express:${sm.name}:${name}:${randomUUID()}` : `${base}:execution:${sm.name}:${name}`;
}

function executionInputText(input: unknown): string {
  const text = typeof input === 'string' ? input : JSON.stringify(input ?? {});
  try {
    JSON.parse(text);
  } catch {
    throw new LocalSfnError('InvalidExecutionInput', 'Invalid State Machine Execution Input: the input is not valid JSON');
  }
  if (Buffer.byteLength(text) > MAX_PAYLOAD_BYTES) {
    throw new LocalSfnError('InvalidExecutionInput', `Invalid State Machine Execution Input: larger than ${MAX_PAYLOAD_BYTES} bytes`);
  }
  return text;
}

function checkExecutionName(name: unknown): void {
  // AWS: 1-80 characters, no whitespace, brackets, wildcards, special or control characters.
  if (typeof name !== 'string' || name.length < 1 || name.length > 80 || /[\s<>{}[\]?*"#%\\^|~`$&,;:/\u0000-\u001f\u007f-\u009f]/.test(name)) {
    throw new LocalSfnError('InvalidName', `Invalid Name: '${String(name)}'`);
  }
}

function checkLength(field: string, value: unknown, max: number): void {
  if (value !== undefined && (typeof value !== 'string' || value.length > max)) {
    throw new LocalSfnError('ValidationException', `1 validation error detected: Value at '${field}' failed to satisfy constraint: Member must have length less than or equal to ${max}`, false);
  }
}

function requireString(input: Record<string, unknown>, key: string): string {
  const value = input[key];
  if (typeof value !== 'string' || value.length === 0) {
    throw new LocalSfnError('ValidationException', `1 validation error detected: Value at '${key}' failed to satisfy constraint: Member must not be null`, false);
  }
  return value;
}

function apiGatewayUrl(p: Record<string, any>): string {
  if (typeof p.ApiEndpoint !== 'string' || p.ApiEndpoint.length === 0) {
    throw taskError('States.Runtime', 'apigateway:invoke needs an ApiEndpoint');
  }
  const host = p.ApiEndpoint.replace(/^https?:\/\//, '').replace(/\/$/, '');
  const stage = typeof p.Stage === 'string' && p.Stage.length > 0 ? `/${p.Stage}` : '';
  const path = typeof p.Path === 'string' && p.Path.length > 0 ? (p.Path.startsWith('/') ? p.Path : `/${p.Path}`) : '';
  return `https://${host}${stage}${path}`;
}

function headersAsArrays(headers: Headers): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  headers.forEach((value, key) => {
    (result[key] ??= []).push(value);
  });
  return result;
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [value];
}

function parseJsonOr(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The timeout a TimeoutSecondsPath gives, for simple paths (`$.a.b`); undefined otherwise. */
function timeoutFromPath(path: string | undefined, input: unknown): number | undefined {
  if (!path || !/^\$(\.[A-Za-z_][A-Za-z0-9_]*)+$/.test(path)) {
    return undefined;
  }
  let value: any = input;
  for (const key of path.slice(2).split('.')) {
    value = value !== null && typeof value === 'object' ? value[key] : undefined;
  }
  return Number.isInteger(value) && value > 0 ? Math.min(value, MAX_TIMEOUT_SECONDS) : undefined;
}

function replaceDeep(value: unknown, from: string, to: string): unknown {
  if (value === from) {
    return to;
  }
  if (Array.isArray(value)) {
    return value.map((v) => replaceDeep(v, from, to));
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, replaceDeep(v, from, to)]));
  }
  return value;
}

/** A JSON value: Dates as ISO strings or epoch seconds (the JSON 1.0 wire), bytes as base64. */
function jsonSafe(value: unknown, dates: 'iso' | 'epoch'): any {
  if (value instanceof Date) {
    return dates === 'iso' ? value.toISOString() : value.getTime() / 1000;
  }
  if (value instanceof Uint8Array) {
    return Buffer.from(value).toString('base64');
  }
  if (typeof value === 'bigint') {
    return Number(value);
  }
  if (Array.isArray(value)) {
    return value.map((v) => jsonSafe(v, dates));
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, jsonSafe(v, dates)]));
  }
  return value;
}

function upperFirst(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function lowerFirstKeys(value: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k.charAt(0).toLowerCase() + k.slice(1), v]));
}

/** The SDK integrations answer in the API's PascalCase member names. */
function upperFirstKeysDeep(value: unknown): unknown {
  if (Array.isArray(value)) {
    return value.map(upperFirstKeysDeep);
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [upperFirst(k), upperFirstKeysDeep(v)]));
  }
  return value;
}

function abbreviate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.0',
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': randomUUID(),
  });
  res.end(text);
}
