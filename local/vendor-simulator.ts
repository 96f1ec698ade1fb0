/**
 * A strict asynchronous vendor on 127.0.0.1: it accepts a job (`202 {"jobId"}`), calls the
 * caller back later, enforces its rate contract over a sliding one-second window (closed,
 * [t - 1 s, t], unless told otherwise) and injects
 * faults. Every fault is decided once per request id from a seeded hash, so a run is reproducible
 * and a retried request meets the same fault, not a new coin toss.
 *
 * Calls: `POST <any path>` submits a job (request id from `Idempotency-Key`, else `X-Request-Id`,
 * else the body's `requestId`); `GET <path ending in a job id>` reads a job; `GET <path>/<job id>/result`
 * fetches a job's result (blog step 11); `POST <path>/by-key/<request id>/cancel` or
 * `POST <path>/<job id>/cancel` cancels a job (see `cancelJob`: the README's cancel example, "Jobs
 * in flight"). Every call counts against the contract, as a vendor counts result fetches too: all
 * arrivals are in one log.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { overRateInForce, RateChange } from './rate-schedule';
import { UrlRewriter } from './types';
import { VendorAccounts, VendorAccountsOptions, VendorAccountsStats } from './vendor-accounts';
import { VendorJobsInFlight, VendorJobsInFlightStats } from './vendor-jobs-in-flight';
import { SignatureSpec } from '../src/callback-webhook/signature-spec';
import { signCallback } from '../src/callback-webhook/signature-verification';
import { limitsForCall, NamedLimitSpec } from '../src/contract/named-limit';

/** What a simulated vendor does. Rates are fractions (0..1) of request ids. */
export interface VendorSimulatorOptions {
  /** The contract: calls per sliding second above floor(requestsPerSecond) (at least 1) get 429. */
  readonly requestsPerSecond: number;
  /**
   * How the vendor counts a second: `closed`, [t - 1000 ms, t] (an arrival exactly 1000 ms earlier
   * still counts: the stricter reading, and what the library's guarantee is stated for), or
   * `half-open`, (t - 1000 ms, t]. Arrival times are whole milliseconds (`Date.now()`), as a vendor
   * that timestamps in milliseconds sees them. @default 'closed'
   */
  readonly window?: 'closed' | 'half-open';
  /**
   * Changes of the vendor's rate at run time (README, "The rate at run time"): a call whose window
   * exceeds the rate in force at the window's start gets a 429 too, counted in
   * `rateInForceViolations`. Also settable once running (`setRateSchedule`). @default - none
   */
  readonly rateSchedule?: readonly RateChange[];
  /** Time to answer any call, ms. @default 0 */
  readonly latencyMs?: number;
  /** Time from answering a submission to calling back, ms. @default 0 */
  readonly callbackDelayMs?: number;
  /** Body field holding the callback URL (header `X-Callback-Url` is accepted too). @default 'callbackUrl' */
  readonly callbackUrlField?: string;
  /** Maps the callback URL (e.g. the webhook's execute-api URL) to loopback. @default - unchanged */
  readonly rewriteUrl?: UrlRewriter;
  /** Headers the genuine callbacks carry (the vendor's credentials); forged ones do not. @default - none */
  readonly callbackHeaders?: Record<string, string>;
  /**
   * A request header to record per call (e.g. `x-api-key`: which account's credential each call
   * carried, issue 15), read back with `seenHeaders()`. @default - none recorded
   */
  readonly recordHeader?: string;
  /**
   * Signs genuine callbacks with this scheme (a `WebhookSignature`'s `_spec`) and secret; forged
   * ones are not signed. @default - unsigned
   */
  readonly callbackSignature?: {
    readonly spec: SignatureSpec;
    /** The signing secret, or the secret for a callback URL (each account signs its own callbacks, issue 15). */
    readonly secret: string | ((callbackUrl: string) => string);
  };
  /** Seed of the fault decisions. @default 1 */
  readonly seed?: number;
  /**
   * Job ids are `<jobIdPrefix>-<n>`. Default: `job-` and a random tag, so ids stay unique across
   * simulator instances, as a real vendor's do (a reused id would match an older request).
   */
  readonly jobIdPrefix?: string;
  /** Requests whose first `errorAttempts` submissions get 503. @default 0 */
  readonly errorRate?: number;
  /** @default 1 */
  readonly errorAttempts?: number;
  /** Requests answered 400 on every submission (a permanent failure). @default 0 */
  readonly rejectRate?: number;
  /** Requests whose first submission gets 429 with `Retry-After: 1`. @default 0 */
  readonly throttleRate?: number;
  /** Requests answered `slowMs` later than the others. @default 0 */
  readonly slowRate?: number;
  /** @default 2000 */
  readonly slowMs?: number;
  /** Requests that are never called back. @default 0 */
  readonly noCallbackRate?: number;
  /**
   * How long a job that is never called back (`noCallbackRate`, or no callback URL) runs on the
   * vendor's side, ms: it counts against `maxJobsInFlight` until then, or until it is cancelled. A
   * long one is a job that hangs at the vendor, which only a cancel (or the caller's own expiry)
   * ends. @default - callbackDelayMs
   */
  readonly noCallbackRunsMs?: number;
  /** Requests called back twice. @default 0 */
  readonly duplicateCallbackRate?: number;
  /** Requests called back before their submission is answered (before the job id can be stored). @default 0 */
  readonly earlyCallbackRate?: number;
  /** Requests whose callback body is not valid JSON. @default 0 */
  readonly malformedCallbackRate?: number;
  /**
   * Requests that also get a forged callback, sent first: same job id (guessable), no credentials
   * or signature, a wrong token in place of the capability URL's, result `{"forged": true}`. @default 0
   */
  readonly forgedCallbackRate?: number;
  /** Retries of a callback answered 5xx/429 or not answered at all. @default 3 */
  readonly callbackRetries?: number;
  /** First retry delay; each retry waits twice as long. @default 100 */
  readonly callbackRetryBaseMs?: number;
  /** Time to wait for the webhook to answer one callback attempt, ms. @default 10000 */
  readonly callbackTimeoutMs?: number;
  /** Requests whose first `resultErrorAttempts` result fetches (`GET .../<job id>/result`) get 503. @default 0 */
  readonly resultErrorRate?: number;
  /** @default 1 */
  readonly resultErrorAttempts?: number;
  /** Requests whose result fetches always get 404 (the vendor lost the result). @default 0 */
  readonly resultNotFoundRate?: number;
  /**
   * Pads every successful result answer with a `padding` field of this many characters (a large
   * result, e.g. over Step Functions' 256 KiB). @default 0
   */
  readonly resultPaddingBytes?: number;
  /** Milliseconds since the epoch, for arrival times. @default Date.now */
  readonly clock?: () => number;
  /**
   * Jobs in progress at once: a submission beyond it gets 429 and counts as a violation
   * (local/vendor-jobs-in-flight.ts). @default - no limit (jobs in flight still measured)
   */
  readonly maxJobsInFlight?: number;
  /**
   * A quota: at most `limit` calls (any method) in each fixed period of `periodMs`, aligned to the
   * Unix epoch like `VendorQuota.every`. Every arrival counts, refused ones included (a vendor
   * bills the call whatever it answers); one beyond the limit gets 429 with Retry-After until the
   * period ends and counts as a quota violation. @default - no quota
   */
  readonly quota?: { readonly limit: number; readonly periodMs: number };
  /**
   * Named limits, as a strict vendor keeps them (issue 14, item 3): a call bound by a limit (its
   * method and its path below `limitBasePath`, matched like `VendorLimit`) whose sliding second
   * already holds floor(requestsPerSecond) of that limit's calls gets 429 and counts as a violation
   * of that limit. Every arrival counts, refused ones included. @default - none
   */
  readonly limits?: readonly NamedLimitSpec[];
  /** The vendor URL's path, which the limits' paths are relative to (e.g. `/v1/jobs`). @default '/' */
  readonly limitBasePath?: string;
  /**
   * The vendor's real limit, below the contract (issue 14, item 5: a vendor that lowered its limit,
   * or shares it with other clients): a call that finds floor(realLimitRps) calls (refused ones
   * included) in its window gets 429 without Retry-After, counted in `realLimitRefusals` (not a
   * contract violation: the library kept the contract). Also settable once running
   * (`setRealLimit`). @default - none (the contract is the limit)
   */
  readonly realLimitRps?: number;
  /**
   * The vendor's accounts (issue 15, credentials per key): it tells each call's key by the
   * credential it carries and keeps each key's own rate limit (local/vendor-accounts.ts); a call
   * with an unknown credential gets 401. @default - one account, credentials not checked
   */
  readonly accounts?: VendorAccountsOptions;
}

/** A fault the simulator injects into one request id. */
export type VendorFault = 'error' | 'reject' | 'throttle' | 'slow' | 'noCallback' | 'duplicateCallback'
  | 'earlyCallback' | 'malformedCallback' | 'forgedCallback' | 'resultError' | 'resultNotFound';

/** What the vendor saw of one request id. */
export interface VendorRequestRecord {
  readonly requestId: string;
  /** The first job id given for it. */
  readonly jobId?: string;
  /** Every job id given for it (more than one: the vendor did the work twice). */
  readonly jobIds: string[];
  /** Submissions received, contract 429s included. */
  readonly submissions: number;
  /** Submissions accepted (202). */
  readonly accepted: number;
  readonly faults: VendorFault[];
  /** Whether a forged callback was sent for it. */
  readonly forged: boolean;
  /** Result fetches (`GET .../<job id>/result`) of its jobs, contract 429s excluded. */
  readonly resultFetches: number;
  /** When its first submission arrived, contract 429s included (ms since the epoch). */
  readonly firstSubmissionAtMs?: number;
  /** When its first accepted submission arrived (ms since the epoch): the job's callback follows it. */
  readonly firstAcceptedAtMs?: number;
  /** When a cancel first ended one of its jobs (ms since the epoch, the cancel's arrival). */
  readonly cancelledAtMs?: number;
}

/** One callback the vendor sent (or tried to). */
export interface VendorCallbackRecord {
  readonly requestId: string;
  readonly jobId: string;
  /** `duplicate`: the second genuine callback; `forged`: no credentials, result `{"forged": true}`. */
  readonly kind: 'genuine' | 'duplicate' | 'forged';
  /** Sent before the submission was answered. */
  readonly early: boolean;
  readonly malformed: boolean;
  /** The URL called, after rewriteUrl. */
  readonly url: string;
  readonly attempts: number;
  /** HTTP status or error code of each attempt. */
  readonly results: Array<number | string>;
  readonly outcome: 'pending' | 'delivered' | 'failed' | 'cancelled';
}

/** Counters of the simulator. */
export interface VendorStats {
  /** POSTs received, contract 429s included. */
  readonly submissions: number;
  readonly accepted: number;
  readonly rejected429ByContract: number;
  /** Calls that found the sliding window already holding the contract (each got a 429). */
  readonly violations: number;
  /** The most calls in any sliding 1 s window, counted as the `window` option says. */
  readonly maxInAnyWindow: number;
  /** Calls whose window exceeded the rate in force of the rate schedule (each got a 429). */
  readonly rateInForceViolations: number;
  /** Request ids with more than one accepted submission. */
  readonly duplicateVendorCalls: number;
  /** Answers given by injected faults. */
  readonly faultAnswers: { readonly error: number; readonly reject: number; readonly throttle: number };
  /** Genuine callbacks (duplicates included) started, delivered (2xx) and given up on. */
  readonly callbacksSent: number;
  readonly callbacksDelivered: number;
  readonly callbacksFailed: number;
  /** HTTP attempts of all callbacks, forged ones included. */
  readonly callbackAttempts: number;
  readonly forgedSent: number;
  /** Result fetches (`GET .../<job id>/result`) received, contract 429s excluded. */
  readonly resultFetches: number;
  /**
   * Calls that carried a value of the proxy hop's SigV4 signature (see signatureHeaders): the
   * caller's signature, signing time, payload hash or session token must never reach a vendor.
   */
  readonly callsWithAwsSignature: number;
  /** Jobs in flight as the vendor counts them (see maxJobsInFlight). */
  readonly jobsInFlight: VendorJobsInFlightStats;
  /** With a quota: the most arrivals in any one of its periods (refused ones included). Else 0. */
  readonly quotaMaxInAnyPeriod: number;
  /** With a quota: arrivals beyond the limit of their period (each got 429). Else 0. */
  readonly quotaViolations: number;
  /** Per named limit: the most of its calls in any sliding 1 s window (counted as `window` says). */
  readonly limitMaxInAnyWindow: Record<string, number>;
  /** Per named limit: calls that found its window full (each got 429). */
  readonly limitViolations: Record<string, number>;
  /** With a real limit below the contract: calls refused for it (each got 429). Else 0. */
  readonly realLimitRefusals: number;
  /** With `accounts`: per key, arrivals, the limit and its violations (local/vendor-accounts.ts). Else empty. */
  readonly keys: VendorAccountsStats;
  /**
   * Cancels (`POST .../cancel`) answered: `cancelled` 200 (a job was running, or was already
   * cancelled), `notFound` 404 (no such job or request id), `alreadyEnded` 409 (its job had ended).
   */
  readonly cancels: { readonly cancelled: number; readonly notFound: number; readonly alreadyEnded: number };
  readonly requests: Record<string, VendorRequestRecord>;
}

const WINDOW_MS = 1000;
const DUPLICATE_GAP_MS = 20;
const MAX_BODY_BYTES = 10 * 1024 * 1024;

interface RequestState {
  readonly requestId: string;
  readonly faults: Set<VendorFault>;
  readonly jobIds: string[];
  submissions: number;
  /** Submissions that passed the contract check: faults count attempts from these. */
  attempts: number;
  accepted: number;
  forged: boolean;
  resultFetches: number;
  /** When its first submission arrived, contract 429s included (ms since the epoch). */
  firstSubmissionAtMs?: number;
  /** When its first accepted submission arrived (ms since the epoch). */
  firstAcceptedAtMs?: number;
  /** When a cancel first ended one of its jobs (ms since the epoch). */
  cancelledAtMs?: number;
}

interface Job {
  readonly jobId: string;
  readonly requestId: string;
  readonly echo: unknown;
  readonly callbackUrl?: string;
}

interface MutableCallbackRecord {
  requestId: string;
  jobId: string;
  kind: 'genuine' | 'duplicate' | 'forged';
  early: boolean;
  malformed: boolean;
  url: string;
  attempts: number;
  results: Array<number | string>;
  outcome: 'pending' | 'delivered' | 'failed' | 'cancelled';
}

interface Answer {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Record<string, string>;
}

/** A strict vendor with a contract, callbacks and seeded faults. */
export class VendorSimulator {
  private readonly options: VendorSimulatorOptions;
  private readonly limit: number;
  private readonly closedWindow: boolean;
  private readonly clock: () => number;
  private server?: http.Server;
  private stopped = false;
  private jobCounter = 0;
  private readonly jobIdPrefix: string;
  private readonly arrivalTimes: number[] = [];
  private readonly recordedHeaders: Array<{ readonly method: string; readonly path: string; readonly value?: string }> = [];
  private rateSchedule: readonly RateChange[] = [];
  private readonly states = new Map<string, RequestState>();
  private readonly jobs = new Map<string, Job>();
  private readonly callbackLog: MutableCallbackRecord[] = [];
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  private readonly inflight = new Set<http.ClientRequest>();
  private readonly agent = new http.Agent({ keepAlive: false });
  private readonly jobsInFlight: VendorJobsInFlight;
  /** Jobs ended by a cancel: never called back. */
  private readonly cancelledJobs = new Set<string>();
  /** Arrivals per quota period (key: the period's start, ms). */
  private readonly quotaCounts = new Map<number, number>();
  private quotaViolations = 0;
  /** Per named limit: the arrival times of the calls it binds, and its violations. */
  private readonly limitArrivals = new Map<string, number[]>();
  private readonly limitViolations = new Map<string, number>();
  private realLimitRps: number | undefined;
  private realLimitRefusals = 0;
  private readonly accounts?: VendorAccounts;
  private readonly counters = {
    submissions: 0,
    accepted: 0,
    rejected429ByContract: 0,
    violations: 0,
    rateInForceViolations: 0,
    error: 0,
    reject: 0,
    throttle: 0,
    callbacksSent: 0,
    callbacksDelivered: 0,
    callbacksFailed: 0,
    callbackAttempts: 0,
    forgedSent: 0,
    resultFetches: 0,
    callsWithAwsSignature: 0,
    cancelled: 0,
    cancelNotFound: 0,
    cancelAlreadyEnded: 0,
  };

  constructor(options: VendorSimulatorOptions) {
    validateOptions(options);
    this.options = options;
    this.limit = Math.max(1, Math.floor(options.requestsPerSecond));
    this.closedWindow = (options.window ?? 'closed') === 'closed';
    this.rateSchedule = options.rateSchedule ?? [];
    this.realLimitRps = options.realLimitRps;
    this.clock = options.clock ?? Date.now;
    this.jobIdPrefix = options.jobIdPrefix ?? `job-${Math.random().toString(36).slice(2, 8)}`;
    // Its own wall clock (only for the time-weighted mean): the `clock` option scripts arrival times.
    this.jobsInFlight = new VendorJobsInFlight(options.maxJobsInFlight, Date.now);
    this.accounts = options.accounts && new VendorAccounts(options.accounts,
      (arrivals, t) => countInWindow(arrivals, t, this.closedWindow), (arrivals) => maxInAnyWindow(arrivals, this.closedWindow));
  }

  /** The vendor's rate changes from now on (see the `rateSchedule` option). */
  public setRateSchedule(schedule: readonly RateChange[]): void {
    this.rateSchedule = [...schedule];
  }

  /** The vendor's real limit from now on (see the `realLimitRps` option); undefined: none. */
  public setRealLimit(requestsPerSecond: number | undefined): void {
    this.realLimitRps = requestsPerSecond;
  }

  /** Starts the vendor on 127.0.0.1 (a free port); resolves with its base URL. */
  public async start(): Promise<string> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        if (!res.headersSent) {
          writeAnswer(res, { status: 500, body: { error: `simulator error: ${(e as Error).message}` } });
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Stops the vendor: pending callbacks are cancelled, open connections dropped. */
  public async stop(): Promise<void> {
    this.stopped = true;
    for (const sleeper of this.sleepers) {
      clearTimeout(sleeper.timer);
      sleeper.resolve();
    }
    this.sleepers.clear();
    for (const req of this.inflight) {
      req.destroy(new Error('vendor simulator stopped'));
    }
    const server = this.server;
    this.server = undefined;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    this.agent.destroy();
  }

  /** When every call arrived (ms since the epoch), in arrival order. */
  public arrivals(): number[] {
    return [...this.arrivalTimes];
  }

  /** With `recordHeader`: each call's method, path and value of that header, in arrival order. */
  public seenHeaders(): Array<{ readonly method: string; readonly path: string; readonly value?: string }> {
    return [...this.recordedHeaders];
  }

  /** Every callback sent or being sent, in the order they started. */
  public callbacks(): VendorCallbackRecord[] {
    return this.callbackLog.map((c) => ({ ...c, results: [...c.results] }));
  }

  /** The faults a request id gets with these options (decided by the seed, whether it arrived or not). */
  public faultsOf(requestId: string): VendorFault[] {
    return [...this.decideFaults(requestId)];
  }

  public stats(): VendorStats {
    const requests: Record<string, VendorRequestRecord> = {};
    for (const s of this.states.values()) {
      requests[s.requestId] = {
        requestId: s.requestId,
        jobId: s.jobIds[0],
        jobIds: [...s.jobIds],
        submissions: s.submissions,
        accepted: s.accepted,
        faults: [...s.faults],
        forged: s.forged,
        resultFetches: s.resultFetches,
        ...(s.firstSubmissionAtMs === undefined ? {} : { firstSubmissionAtMs: s.firstSubmissionAtMs }),
        ...(s.firstAcceptedAtMs === undefined ? {} : { firstAcceptedAtMs: s.firstAcceptedAtMs }),
        ...(s.cancelledAtMs === undefined ? {} : { cancelledAtMs: s.cancelledAtMs }),
      };
    }
    const c = this.counters;
    return {
      submissions: c.submissions,
      accepted: c.accepted,
      rejected429ByContract: c.rejected429ByContract,
      violations: c.violations,
      maxInAnyWindow: maxInAnyWindow(this.arrivalTimes, this.closedWindow),
      rateInForceViolations: c.rateInForceViolations,
      duplicateVendorCalls: [...this.states.values()].filter((s) => s.accepted > 1).length,
      faultAnswers: { error: c.error, reject: c.reject, throttle: c.throttle },
      callbacksSent: c.callbacksSent,
      callbacksDelivered: c.callbacksDelivered,
      callbacksFailed: c.callbacksFailed,
      callbackAttempts: c.callbackAttempts,
      forgedSent: c.forgedSent,
      resultFetches: c.resultFetches,
      callsWithAwsSignature: c.callsWithAwsSignature,
      jobsInFlight: this.jobsInFlight.stats(),
      quotaMaxInAnyPeriod: Math.max(0, ...this.quotaCounts.values()),
      quotaViolations: this.quotaViolations,
      limitMaxInAnyWindow: Object.fromEntries((this.options.limits ?? [])
        .map((l) => [l.name, maxInAnyWindow(this.limitArrivals.get(l.name) ?? [], this.closedWindow)])),
      limitViolations: Object.fromEntries((this.options.limits ?? []).map((l) => [l.name, this.limitViolations.get(l.name) ?? 0])),
      realLimitRefusals: this.realLimitRefusals,
      keys: this.accounts?.stats() ?? { byKey: {}, unknownCredential: 0, violations: 0 },
      cancels: { cancelled: c.cancelled, notFound: c.cancelNotFound, alreadyEnded: c.cancelAlreadyEnded },
      requests,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Calls
  // -------------------------------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // The arrival is counted before anything else: the vendor saw it, whatever it answers.
    const now = this.clock();
    this.arrivalTimes.push(now);
    if (this.options.recordHeader) {
      this.recordedHeaders.push({ method: req.method ?? '', path: req.url ?? '', value: header(req, this.options.recordHeader.toLowerCase()) });
    }
    let overContract = countInWindow(this.arrivalTimes, now, this.closedWindow) > this.limit;
    // A strict vendor also refuses what exceeds the rate in force (local/rate-schedule.ts).
    if (!overContract && this.rateSchedule.length > 0 && overRateInForce(this.arrivalTimes, now, this.options.requestsPerSecond, this.rateSchedule)) {
      this.counters.rateInForceViolations++;
      overContract = true;
    }
    const body = await readBody(req);
    const method = (req.method ?? 'GET').toUpperCase();
    if (signatureHeaders(req).length > 0) {
      this.counters.callsWithAwsSignature++;
    }

    const limitRefusal = this.countLimits(req, method, now, overContract);
    // The call's account (by its credential) counts it whatever is refused; its own refusal (429
    // over the account's limit, 401 for an unknown credential) comes after the contract's and the
    // named limits', so none is counted twice.
    const accountRefusal = this.accounts?.arrive(header(req, this.accounts.credentialHeader), now, overContract || limitRefusal !== undefined);
    if (limitRefusal) {
      if (method === 'POST') this.counters.submissions++;
      await this.answer(res, limitRefusal, this.options.latencyMs ?? 0);
      return;
    }
    if (accountRefusal) {
      if (method === 'POST') this.counters.submissions++;
      await this.answer(res, accountRefusal, this.options.latencyMs ?? 0);
      return;
    }
    if (!overContract && this.realLimitRps !== undefined
      && countInWindow(this.arrivalTimes, now, this.closedWindow) > Math.max(1, Math.floor(this.realLimitRps))) {
      this.realLimitRefusals++;
      if (method === 'POST') this.counters.submissions++;
      await this.answer(res, { status: 429, body: { error: `too many requests: at most ${Math.floor(this.realLimitRps)} in any second` } }, this.options.latencyMs ?? 0);
      return;
    }
    const quotaRefusal = overContract ? undefined : this.countQuota(now);
    if (quotaRefusal) {
      if (method === 'POST') this.counters.submissions++;
      await this.answer(res, quotaRefusal, this.options.latencyMs ?? 0);
      return;
    }
    const cancel = method === 'POST' ? cancelTarget(req.url ?? '/') : undefined;
    if (method === 'POST' && !cancel) {
      await this.submit(req, res, body, overContract, now);
      return;
    }
    if (overContract) {
      await this.answer(res, this.contractRefusal(), this.options.latencyMs ?? 0);
      return;
    }
    if (cancel) {
      await this.answer(res, this.cancelJob(cancel, now), this.options.latencyMs ?? 0);
      return;
    }
    if (method === 'GET') {
      await this.answer(res, this.readJob(req.url ?? '/'), this.options.latencyMs ?? 0);
      return;
    }
    await this.answer(res, { status: 405, body: { error: `${method} is not supported` } }, this.options.latencyMs ?? 0);
  }

  private async submit(
    req: http.IncomingMessage, res: http.ServerResponse, rawBody: Buffer | undefined, overContract: boolean, arrivedAtMs: number,
  ): Promise<void> {
    this.counters.submissions++;
    const latency = this.options.latencyMs ?? 0;
    const parsed = parseJsonObject(rawBody);
    const requestId = header(req, 'idempotency-key') ?? header(req, 'x-request-id')
      ?? (parsed && typeof parsed.requestId === 'string' ? parsed.requestId : undefined);
    const state = requestId === undefined ? undefined : this.stateOf(requestId);
    if (state) {
      state.submissions++;
      state.firstSubmissionAtMs ??= arrivedAtMs;
    }
    if (overContract) {
      await this.answer(res, this.contractRefusal(), latency);
      return;
    }
    if (!parsed) {
      await this.answer(res, { status: 400, body: { error: 'the body must be a JSON object' } }, latency);
      return;
    }
    if (!state) {
      await this.answer(res, { status: 400, body: { error: 'no request id: send Idempotency-Key, X-Request-Id or requestId' } }, latency);
      return;
    }

    state.attempts++;
    const faults = state.faults;
    const delay = latency + (faults.has('slow') ? this.options.slowMs ?? 2000 : 0);
    const refusal = this.faultRefusal(state);
    if (refusal) {
      await this.answer(res, refusal, delay);
      return;
    }

    // Jobs in flight: job N + 1 is refused, as a strict vendor would.
    if (!this.jobsInFlight.admits()) {
      await this.answer(res, {
        status: 429, body: { error: `too many jobs in flight: at most ${this.options.maxJobsInFlight}` }, headers: { 'Retry-After': '1' },
      }, delay);
      return;
    }
    state.firstAcceptedAtMs ??= arrivedAtMs;
    const job = this.acceptJob(state, req, parsed);
    this.jobsInFlight.start(job.jobId);
    const answer: Answer = { status: 202, body: { jobId: job.jobId } };
    if (faults.has('earlyCallback') && this.willCallBack(job)) {
      // The callback reaches the webhook before the caller learns the job id.
      await this.sleep(delay);
      await new Promise<void>((firstAttemptDone) => {
        void this.runCallbacks(job, true, firstAttemptDone);
      });
      await this.answer(res, answer, 0);
      return;
    }
    await this.answer(res, answer, delay);
    if (this.willCallBack(job)) {
      void this.sleep(this.options.callbackDelayMs ?? 0).then(() => this.runCallbacks(job, false));
    } else {
      // No callback (lost, or no URL): the job still ends on the vendor's side, when it would have
      // called back, or later (noCallbackRunsMs: a job that hangs until it is cancelled).
      void this.sleep(this.options.noCallbackRunsMs ?? this.options.callbackDelayMs ?? 0).then(() => this.jobsInFlight.end(job.jobId));
    }
  }

  /** The answer of an injected submission fault, if this attempt gets one. */
  private faultRefusal(state: RequestState): Answer | undefined {
    if (state.faults.has('reject')) {
      this.counters.reject++;
      return { status: 400, body: { error: 'request rejected by the vendor' } };
    }
    if (state.faults.has('throttle') && state.attempts === 1) {
      this.counters.throttle++;
      return { status: 429, body: { error: 'slow down' }, headers: { 'Retry-After': '1' } };
    }
    if (state.faults.has('error') && state.attempts <= (this.options.errorAttempts ?? 1)) {
      this.counters.error++;
      return { status: 503, body: { error: 'temporarily unavailable' } };
    }
    return undefined;
  }

  private acceptJob(state: RequestState, req: http.IncomingMessage, body: Record<string, unknown>): Job {
    const field = this.options.callbackUrlField ?? 'callbackUrl';
    const fromBody = typeof body[field] === 'string' ? body[field] as string : undefined;
    const echo = { ...body };
    delete echo[field];
    const job: Job = {
      jobId: `${this.jobIdPrefix}-${++this.jobCounter}`,
      requestId: state.requestId,
      echo,
      callbackUrl: fromBody ?? header(req, 'x-callback-url'),
    };
    this.jobs.set(job.jobId, job);
    state.jobIds.push(job.jobId);
    state.accepted++;
    this.counters.accepted++;
    return job;
  }

  private willCallBack(job: Job): boolean {
    return job.callbackUrl !== undefined && !this.stateOf(job.requestId).faults.has('noCallback');
  }

  /**
   * Counts an arrival against every named limit that binds it; the refusal when one's sliding
   * second already held its limit (the contract's refusal comes first: then none is counted twice).
   */
  private countLimits(req: http.IncomingMessage, method: string, now: number, overContract: boolean): Answer | undefined {
    const limits = this.options.limits ?? [];
    if (limits.length === 0) return undefined;
    const pathname = new URL(req.url ?? '/', 'http://local').pathname;
    const base = (this.options.limitBasePath ?? '/').replace(/\/$/, '');
    const relative = pathname === base ? '/' : pathname.startsWith(`${base}/`) ? pathname.slice(base.length) : pathname;
    let over: NamedLimitSpec | undefined;
    for (const limit of limitsForCall(limits, method, relative)) {
      const arrivals = this.limitArrivals.get(limit.name) ?? [];
      arrivals.push(now);
      this.limitArrivals.set(limit.name, arrivals);
      if (!overContract && over === undefined && countInWindow(arrivals, now, this.closedWindow) > Math.max(1, Math.floor(limit.requestsPerSecond))) {
        over = limit;
      }
    }
    if (!over) return undefined;
    this.limitViolations.set(over.name, (this.limitViolations.get(over.name) ?? 0) + 1);
    return {
      status: 429,
      body: { error: `limit '${over.name}' exceeded: at most ${Math.max(1, Math.floor(over.requestsPerSecond))} of its calls in any second` },
      headers: { 'Retry-After': '1' },
    };
  }

  /** Counts an arrival against the quota's period; the refusal when it is beyond the limit. */
  private countQuota(now: number): Answer | undefined {
    const quota = this.options.quota;
    if (!quota) return undefined;
    const start = Math.floor(now / quota.periodMs) * quota.periodMs;
    const count = (this.quotaCounts.get(start) ?? 0) + 1;
    this.quotaCounts.set(start, count);
    if (count <= quota.limit) return undefined;
    this.quotaViolations++;
    return {
      status: 429,
      body: { error: `quota exceeded: at most ${quota.limit} calls per ${quota.periodMs} ms` },
      headers: { 'Retry-After': String(Math.max(1, Math.ceil((start + quota.periodMs - now) / 1000))) },
    };
  }

  private contractRefusal(): Answer {
    this.counters.violations++;
    this.counters.rejected429ByContract++;
    return {
      status: 429,
      body: { error: `contract exceeded: at most ${this.limit} requests in any second` },
      headers: { 'Retry-After': '1' },
    };
  }

  private readJob(url: string): Answer {
    const segments = new URL(url, 'http://local').pathname.split('/').filter(Boolean);
    if (segments.length >= 2 && segments[segments.length - 1] === 'result') {
      return this.fetchResult(decodeURIComponent(segments[segments.length - 2]));
    }
    const jobId = segments.pop() ?? '';
    const job = this.jobs.get(decodeURIComponent(jobId));
    return job
      ? { status: 200, body: callbackBody(job) }
      : { status: 404, body: { error: `no job ${jobId}` } };
  }

  /**
   * `POST .../by-key/<request id>/cancel` (the job the submission with that `Idempotency-Key`
   * started, as the README's cancel example calls it) or `POST .../<job id>/cancel`. As a strict
   * vendor: a running job ends at once (it stops counting against `maxJobsInFlight`) and is never
   * called back; the answer is `200 {"jobId", "status": "CANCELLED"}`, also for a job already
   * cancelled (a retried cancel). A job that had already ended (it called back, or ran its course)
   * gets `409`, an unknown job or request id `404`.
   */
  private cancelJob(target: { readonly requestId?: string; readonly jobId?: string }, now: number): Answer {
    const jobIds = target.requestId !== undefined
      ? this.states.get(target.requestId)?.jobIds ?? []
      : this.jobs.has(target.jobId!) ? [target.jobId!] : [];
    const name = target.requestId !== undefined ? `request id ${target.requestId}` : `job ${target.jobId}`;
    if (jobIds.length === 0) {
      this.counters.cancelNotFound++;
      return { status: 404, body: { error: `no job for ${name}` } };
    }
    const running = jobIds.filter((id) => this.jobsInFlight.isRunning(id));
    if (running.length === 0 && !jobIds.some((id) => this.cancelledJobs.has(id))) {
      this.counters.cancelAlreadyEnded++;
      return { status: 409, body: { error: `the job of ${name} has already ended: nothing to cancel`, jobId: jobIds[jobIds.length - 1] } };
    }
    for (const id of running) {
      this.cancelledJobs.add(id);
      this.jobsInFlight.end(id);
    }
    if (running.length > 0) {
      this.stateOf(this.jobs.get(running[0])!.requestId).cancelledAtMs ??= now;
    }
    this.counters.cancelled++;
    return { status: 200, body: { jobId: running[0] ?? jobIds.find((id) => this.cancelledJobs.has(id)), status: 'CANCELLED' } };
  }

  /** `GET .../<job id>/result`: the job's result, with the injected result faults. */
  private fetchResult(jobId: string): Answer {
    this.counters.resultFetches++;
    const job = this.jobs.get(jobId);
    if (!job) {
      return { status: 404, body: { error: `no job ${jobId}` } };
    }
    const state = this.stateOf(job.requestId);
    state.resultFetches++;
    if (state.faults.has('resultNotFound')) {
      return { status: 404, body: { error: `no result for job ${jobId}` } };
    }
    if (state.faults.has('resultError') && state.resultFetches <= (this.options.resultErrorAttempts ?? 1)) {
      return { status: 503, body: { error: 'temporarily unavailable' } };
    }
    const padding = this.options.resultPaddingBytes ? { padding: 'x'.repeat(this.options.resultPaddingBytes) } : {};
    return { status: 200, body: { jobId: job.jobId, status: 'SUCCEEDED', result: { echo: job.echo }, ...padding } };
  }

  private async answer(res: http.ServerResponse, answer: Answer, delayMs: number): Promise<void> {
    await this.sleep(delayMs);
    if (!this.stopped && !res.destroyed) {
      writeAnswer(res, answer);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Callbacks
  // -------------------------------------------------------------------------------------------

  /** Forged (if any), genuine, duplicate (if any), one after the other. */
  private async runCallbacks(job: Job, early: boolean, firstAttemptDone: () => void = () => undefined): Promise<void> {
    const state = this.stateOf(job.requestId);
    // The job is done on the vendor's side when it starts calling back.
    this.jobsInFlight.end(job.jobId);
    try {
      if (this.stopped || this.cancelledJobs.has(job.jobId)) {
        return; // stop() cancels callbacks that have not started; a cancelled job never calls back
      }
      if (state.faults.has('forgedCallback')) {
        state.forged = true;
        const forged = JSON.stringify({ jobId: job.jobId, requestId: job.requestId, status: 'SUCCEEDED', result: { forged: true } });
        await this.deliver(job, 'forged', forged, {}, early, false, 0, undefined, forgedCallbackUrl(job.callbackUrl!));
      }
      const malformed = state.faults.has('malformedCallback');
      const genuine = malformed ? JSON.stringify(callbackBody(job)).slice(0, -1) + ',' : JSON.stringify(callbackBody(job));
      const signature = this.options.callbackSignature;
      const headers = {
        ...this.options.callbackHeaders,
        ...(signature ? signCallback(signature.spec, typeof signature.secret === 'function' ? signature.secret(job.callbackUrl ?? '') : signature.secret,
          genuine, Math.floor(this.clock() / 1000), `msg_${job.jobId}`) : {}),
      };
      const retries = this.options.callbackRetries ?? 3;
      await this.deliver(job, 'genuine', genuine, headers, early, malformed, retries, firstAttemptDone);
      if (state.faults.has('duplicateCallback')) {
        await this.sleep(DUPLICATE_GAP_MS);
        await this.deliver(job, 'duplicate', genuine, headers, false, malformed, retries);
      }
    } finally {
      firstAttemptDone();
    }
  }

  /** POSTs one callback, retrying 5xx, 429 and network errors with exponential backoff. */
  private async deliver(job: Job, kind: MutableCallbackRecord['kind'], body: string, headers: Record<string, string>,
    early: boolean, malformed: boolean, retries: number, firstAttemptDone: () => void = () => undefined,
    callbackUrl = job.callbackUrl!): Promise<void> {
    const url = (this.options.rewriteUrl ?? ((u: string) => u))(callbackUrl);
    const record: MutableCallbackRecord = { requestId: job.requestId, jobId: job.jobId, kind, early, malformed, url, attempts: 0, results: [], outcome: 'pending' };
    this.callbackLog.push(record);
    if (kind === 'forged') {
      this.counters.forgedSent++;
    } else {
      this.counters.callbacksSent++;
    }
    const settle = (outcome: MutableCallbackRecord['outcome']) => {
      record.outcome = outcome;
      if (kind !== 'forged' && outcome === 'delivered') {
        this.counters.callbacksDelivered++;
      } else if (kind !== 'forged' && outcome === 'failed') {
        this.counters.callbacksFailed++;
      }
      firstAttemptDone();
    };

    const target = loopbackUrl(url);
    if (!target) {
      // Never leave the machine: an URL nobody rewrote is a wiring error, recorded as a failure.
      record.results.push('not a loopback URL');
      settle('failed');
      return;
    }
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (this.stopped) {
        settle('cancelled');
        return;
      }
      record.attempts++;
      this.counters.callbackAttempts++;
      const result = await this.post(target, body, headers);
      record.results.push(result);
      if (typeof result === 'number' && result >= 200 && result < 300) {
        settle('delivered');
        return;
      }
      firstAttemptDone();
      const retryable = typeof result === 'string' || result >= 500 || result === 429;
      if (!retryable) {
        break;
      }
      if (attempt < retries) {
        await this.sleep((this.options.callbackRetryBaseMs ?? 100) * 2 ** attempt);
      }
    }
    settle(this.stopped ? 'cancelled' : 'failed');
  }

  /** The status of one POST, or an error code when there was no answer. */
  private post(url: URL, body: string, headers: Record<string, string>): Promise<number | string> {
    return new Promise((resolve) => {
      const req = http.request(url, {
        method: 'POST',
        agent: this.agent,
        timeout: this.options.callbackTimeoutMs ?? 10_000,
        headers: { ...headers, 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) },
      }, (res) => {
        res.resume();
        res.on('end', () => {
          this.inflight.delete(req);
          resolve(res.statusCode ?? 0);
        });
      });
      this.inflight.add(req);
      req.on('timeout', () => req.destroy(Object.assign(new Error('callback timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', (e: NodeJS.ErrnoException) => {
        this.inflight.delete(req);
        resolve(e.code ?? e.message);
      });
      req.end(body);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Faults and state
  // -------------------------------------------------------------------------------------------

  private stateOf(requestId: string): RequestState {
    let state = this.states.get(requestId);
    if (!state) {
      state = {
        requestId, faults: this.decideFaults(requestId), jobIds: [], submissions: 0, attempts: 0, accepted: 0, forged: false, resultFetches: 0,
      };
      this.states.set(requestId, state);
    }
    return state;
  }

  /** Each fault is an independent draw from hash(seed, fault, request id): same seed, same faults. */
  private decideFaults(requestId: string): Set<VendorFault> {
    const o = this.options;
    const rates: Array<[VendorFault, number | undefined]> = [
      ['error', o.errorRate], ['reject', o.rejectRate], ['throttle', o.throttleRate], ['slow', o.slowRate],
      ['noCallback', o.noCallbackRate], ['duplicateCallback', o.duplicateCallbackRate], ['earlyCallback', o.earlyCallbackRate],
      ['malformedCallback', o.malformedCallbackRate], ['forgedCallback', o.forgedCallbackRate],
      ['resultError', o.resultErrorRate], ['resultNotFound', o.resultNotFoundRate],
    ];
    const seed = o.seed ?? 1;
    return new Set(rates.filter(([fault, rate]) => (rate ?? 0) > 0 && uniform(seed, fault, requestId) < rate!).map(([fault]) => fault));
  }

  /** A timer stop() can cut short, so no callback outlives the simulator. */
  private sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.stopped) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const sleeper = {
        timer: setTimeout(() => {
          this.sleepers.delete(sleeper);
          resolve();
        }, ms),
        resolve,
      };
      this.sleepers.add(sleeper);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/** Whether an arrival at `a` is before the window ending at `t` ([t - 1000, t] when `closed`, else (t - 1000, t]). */
function beforeWindow(a: number, t: number, closed: boolean): boolean {
  return closed ? a < t - WINDOW_MS : a <= t - WINDOW_MS;
}

/** Arrivals in the window ending at t, `arrivals` in arrival order. */
function countInWindow(arrivals: number[], t: number, closed: boolean): number {
  let count = 0;
  for (let i = arrivals.length - 1; i >= 0; i--) {
    if (beforeWindow(arrivals[i], t, closed)) {
      break;
    }
    if (arrivals[i] <= t) {
      count++;
    }
  }
  return count;
}

/** The most arrivals in any window [a_i - 1000 ms, a_i] ((a_i - 1000 ms, a_i] when not `closed`). */
export function maxInAnyWindow(arrivals: number[], closed: boolean = true): number {
  const sorted = [...arrivals].sort((a, b) => a - b);
  let best = 0;
  let left = 0;
  for (let right = 0; right < sorted.length; right++) {
    while (beforeWindow(sorted[left], sorted[right], closed)) {
      left++;
    }
    best = Math.max(best, right - left + 1);
  }
  return best;
}

/** A number in [0, 1) from the seed, the fault and the request id. */
function uniform(seed: number, fault: VendorFault, requestId: string): number {
  const digest = createHash('sha256').update(`${seed}\u0000${fault}\u0000${requestId}`).digest();
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

/** The job a cancel names: `.../by-key/<request id>/cancel` or `.../<job id>/cancel`; undefined: not a cancel. */
function cancelTarget(url: string): { readonly requestId?: string; readonly jobId?: string } | undefined {
  const segments = new URL(url, 'http://local').pathname.split('/').filter(Boolean).map(decodeURIComponent);
  if (segments.length < 2 || segments[segments.length - 1] !== 'cancel') return undefined;
  const id = segments[segments.length - 2];
  return segments.length >= 3 && segments[segments.length - 3] === 'by-key' ? { requestId: id } : { jobId: id };
}

function callbackBody(job: Job): Record<string, unknown> {
  return { jobId: job.jobId, requestId: job.requestId, status: 'SUCCEEDED', result: { echo: job.echo } };
}

function validateOptions(o: VendorSimulatorOptions): void {
  if (!(o.requestsPerSecond > 0)) {
    throw new Error(`requestsPerSecond must be above 0 (given ${o.requestsPerSecond})`);
  }
  if (o.realLimitRps !== undefined && !(o.realLimitRps > 0)) {
    throw new Error(`realLimitRps must be above 0 (given ${o.realLimitRps})`);
  }
  if (o.quota && !(Number.isInteger(o.quota.limit) && o.quota.limit > 0 && o.quota.periodMs > 0)) {
    throw new Error(`quota must have a whole limit above 0 and a period above 0 ms (given ${JSON.stringify(o.quota)})`);
  }
  const rates: Array<keyof VendorSimulatorOptions> = ['errorRate', 'rejectRate', 'throttleRate', 'slowRate', 'noCallbackRate',
    'duplicateCallbackRate', 'earlyCallbackRate', 'malformedCallbackRate', 'forgedCallbackRate',
    'resultErrorRate', 'resultNotFoundRate'];
  for (const name of rates) {
    const value = o[name] as number | undefined;
    if (value !== undefined && !(value >= 0 && value <= 1)) {
      throw new Error(`${name} must be a fraction between 0 and 1 (given ${value})`);
    }
  }
  const durations: Array<keyof VendorSimulatorOptions> = ['latencyMs', 'callbackDelayMs', 'noCallbackRunsMs', 'slowMs', 'callbackRetryBaseMs', 'callbackTimeoutMs'];
  for (const name of durations) {
    const value = o[name] as number | undefined;
    if (value !== undefined && !(value >= 0)) {
      throw new Error(`${name} must be 0 or more milliseconds (given ${value})`);
    }
  }
  if (o.window !== undefined && o.window !== 'closed' && o.window !== 'half-open') {
    throw new Error(`window must be 'closed' or 'half-open' (given ${JSON.stringify(o.window)})`);
  }
  for (const name of ['errorAttempts', 'resultErrorAttempts', 'callbackRetries'] as const) {
    const value = o[name];
    const min = name === 'callbackRetries' ? 0 : 1;
    if (value !== undefined && !(Number.isInteger(value) && value >= min)) {
      throw new Error(`${name} must be a whole number${min === 1 ? ' of at least 1' : ''} (given ${value})`);
    }
  }
}

function parseJsonObject(body: Buffer | undefined): Record<string, unknown> | undefined {
  if (body === undefined) {
    return undefined;
  }
  if (body.length === 0) {
    return {};
  }
  try {
    const value = JSON.parse(body.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function loopbackUrl(url: string): URL | undefined {
  try {
    const parsed = new URL(url);
    const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(parsed.hostname);
    return loopback && parsed.protocol === 'http:' ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** The headers of `req` that hold a SigV4 value: AWS4-HMAC-SHA256 credentials, a signing time, a payload hash or a session token. */
export function signatureHeaders(req: { readonly headers: http.IncomingHttpHeaders }): string[] {
  const looksSigned: Record<string, RegExp> = {
    'authorization': /^AWS4-HMAC-SHA256\s/i,
    'x-amz-date': /^\d{8}T\d{6}Z$/,
    'x-amz-content-sha256': /^([0-9a-f]{64}|UNSIGNED-PAYLOAD)$/i,
    'x-amz-security-token': /^.{2,}$/s,
  };
  return Object.entries(looksSigned).filter(([name, pattern]) => {
    const value = req.headers[name];
    return (Array.isArray(value) ? value : [value]).some((v) => v !== undefined && pattern.test(v));
  }).map(([name]) => name);
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  const last = Array.isArray(value) ? value[value.length - 1] : value;
  return last === undefined || last === '' ? undefined : last;
}

/** The body, or undefined when it is over the limit. */
function readBody(req: http.IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(size > MAX_BODY_BYTES ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function writeAnswer(res: http.ServerResponse, answer: Answer): void {
  const body = JSON.stringify(answer.body);
  res.writeHead(answer.status, {
    ...(answer.headers ?? {}),
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(body)),
  });
  res.end(body);
}

/**
 * Where a forger posts: the forger knows the webhook and a job id but not the request's secret
 * token, so a capability URL (`.../callback/<token>`) gets a random token of the same shape; a
 * bare webhook URL is used as is.
 */
export function forgedCallbackUrl(callbackUrl: string): string {
  return callbackUrl.replace(/\/callback\/[^/?#]+/, `/callback/${randomBytes(32).toString('base64url')}`);
}
