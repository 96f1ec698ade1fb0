/**
 * The vendor simulator's jobs-in-flight limit, as a strict vendor keeps it: a job is in progress
 * from the submission it accepted until the job ends on its side (when it starts calling back, or,
 * for a job it never calls back about, when it would have). A submission that would be job N + 1
 * gets 429 and is counted as a violation: the figures come from here, never from the library's
 * own counters (VendorContract.maxJobsInFlight, shared/job-places.ts).
 */

/** What the simulator saw of jobs in flight. */
export interface VendorJobsInFlightStats {
  /** The limit enforced; undefined: none (still measured). */
  readonly limit?: number;
  /** Jobs in progress now. */
  readonly now: number;
  /**
   * The most jobs the caller tried to have in progress at once: the jobs in progress, plus one at
   * a submission refused for the limit. Above the limit only when there were violations.
   */
  readonly maxObserved: number;
  /** Submissions refused (429) because `limit` jobs were already in progress. */
  readonly violations: number;
  /** Time-weighted mean of the jobs in progress between the first job's start and now. */
  readonly meanInFlight: number;
  /**
   * Time-weighted mean of the jobs in progress between the first job's start and the last one's:
   * while jobs were still being started, i.e. while a backlog lasted (the benchmark's occupancy,
   * divided by the limit).
   */
  readonly meanInFlightWhileStarting: number;
  /**
   * Hand-overs (with a limit only): a job ended at the limit freed a place and a later job took it.
   * Each freed place is taken by the next start, oldest first; places freed after the last start
   * (the end of the backlog) are not hand-overs.
   */
  readonly handOvers: number;
  /** Mean time a freed place stayed idle until the next job took it, ms (0 without hand-overs). */
  readonly meanHandOverIdleMs: number;
  /** The longest such idle time, ms. */
  readonly maxHandOverIdleMs: number;
}

export class VendorJobsInFlight {
  private readonly running = new Set<string>();
  private maxObserved = 0;
  private violations = 0;
  private firstAtMs?: number;
  private lastChangeAtMs = 0;
  private area = 0;
  private lastStartAtMs?: number;
  private areaAtLastStart = 0;
  /** When each place freed at the limit and not taken again yet was freed, oldest first. */
  private readonly freedAtMs: number[] = [];
  private handOvers = 0;
  private handOverIdleMs = 0;
  private maxHandOverIdleMs = 0;

  constructor(private readonly limit: number | undefined, private readonly clock: () => number) {
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1)) {
      throw new Error(`maxJobsInFlight must be a whole number of at least 1 (given ${limit})`);
    }
  }

  /** Whether one more job may start now; a refusal is counted as a violation. */
  public admits(): boolean {
    if (this.limit !== undefined && this.running.size >= this.limit) {
      this.violations++;
      this.maxObserved = Math.max(this.maxObserved, this.running.size + 1);
      return false;
    }
    return true;
  }

  public start(jobId: string): void {
    const freedAt = this.freedAtMs.shift();
    if (freedAt !== undefined) {
      const idle = this.clock() - freedAt;
      this.handOvers++;
      this.handOverIdleMs += idle;
      this.maxHandOverIdleMs = Math.max(this.maxHandOverIdleMs, idle);
    }
    this.change(() => this.running.add(jobId));
    this.maxObserved = Math.max(this.maxObserved, this.running.size);
    this.lastStartAtMs = this.lastChangeAtMs;
    this.areaAtLastStart = this.area;
  }

  /** Whether a job is in progress (started and not ended). */
  public isRunning(jobId: string): boolean {
    return this.running.has(jobId);
  }

  /** Ends a job (idempotent: a duplicate callback ends nothing twice). */
  public end(jobId: string): void {
    if (this.running.has(jobId)) {
      // A place freed at the limit: the next start is its hand-over.
      if (this.limit !== undefined && this.running.size + this.freedAtMs.length >= this.limit) {
        this.freedAtMs.push(this.clock());
      }
      this.change(() => this.running.delete(jobId));
    }
  }

  public stats(): VendorJobsInFlightStats {
    const now = this.clock();
    const span = this.firstAtMs === undefined ? 0 : now - this.firstAtMs;
    const area = this.area + this.running.size * (now - this.lastChangeAtMs);
    return {
      ...(this.limit === undefined ? {} : { limit: this.limit }),
      now: this.running.size,
      maxObserved: this.maxObserved,
      violations: this.violations,
      meanInFlight: span > 0 ? area / span : 0,
      meanInFlightWhileStarting: this.firstAtMs !== undefined && this.lastStartAtMs! > this.firstAtMs
        ? this.areaAtLastStart / (this.lastStartAtMs! - this.firstAtMs) : 0,
      handOvers: this.handOvers,
      meanHandOverIdleMs: this.handOvers > 0 ? this.handOverIdleMs / this.handOvers : 0,
      maxHandOverIdleMs: this.maxHandOverIdleMs,
    };
  }

  private change(apply: () => void): void {
    const now = this.clock();
    this.firstAtMs ??= now;
    this.area += this.running.size * (now - this.lastChangeAtMs);
    this.lastChangeAtMs = now;
    apply();
  }
}
