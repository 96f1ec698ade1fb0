/**
 * The demo's rate change (`--rate-change-at-s T --rate-change-rps R2`): T seconds after the
 * requests were submitted, the operator deploys `{"extraDelayMs":0,"requestsPerSecond":R2}` to the
 * dynamic-delay configuration (runtime.setDynamicDelay, the local AppConfig), and the vendor
 * simulator is told the rate in force from when the stated bound says it binds (a decrease:
 * deployment + P + H + L; an increase: the deployment), so it refuses, and the summary counts,
 * every window over the rate in force (local/rate-schedule.ts).
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  newRateObservedAfterMs, RateChange, rateChangeBindsAtMs, rateChangeInUseWithinMs, RateChangeTiming, rateChangeTimingOf,
} from './rate-schedule';
import { LocalRuntime } from './runtime';
import { VendorSimulatorHost } from './vendor-host';

/** What the demo's JSON summary says about the rate change. */
export interface DemoRateChange {
  readonly fromRps: number;
  readonly toRps: number;
  /** When the operator deployed it, ms after the requests were submitted. */
  readonly deployedAtMs: number;
  /** When it binds at the vendor by the stated bound (the simulator's rate schedule), ms after the submissions. */
  readonly bindsAtMs: number;
  /** The stated time until the pacer uses the new rate, ms after the deployment. */
  readonly statedInUseWithinMs: number;
  /** When the vendor saw the new rate in use, ms after the deployment (rate-schedule.ts, newRateObservedAfterMs). */
  readonly observedInUseAfterMs: number | null;
  /** The timing the bound was computed from (poll interval, horizon, L). */
  readonly timing: RateChangeTiming;
}

/** A scheduled change; `result()` once the run is over. */
export class ScheduledRateChange {
  /**
   * Schedules the change `atS` seconds after `submittedAtMs`.
   * @param assemblyDir the synthesized app (the stack's template gives the timing)
   */
  public static start(
    runtime: LocalRuntime, vendor: VendorSimulatorHost, assemblyDir: string, stackName: string,
    submittedAtMs: number, fromRps: number, toRps: number, atS: number,
  ): ScheduledRateChange {
    const template = JSON.parse(fs.readFileSync(path.join(assemblyDir, `${stackName}.template.json`), 'utf8'));
    return new ScheduledRateChange(runtime, vendor, rateChangeTimingOf(template), submittedAtMs, fromRps, toRps, atS);
  }

  public readonly schedule: RateChange[] = [];
  private deployedAtMs?: number;
  private readonly timer: NodeJS.Timeout;
  private applied: Promise<void> = Promise.resolve();

  private constructor(
    runtime: LocalRuntime, vendor: VendorSimulatorHost, private readonly timing: RateChangeTiming,
    private readonly submittedAtMs: number, private readonly fromRps: number, private readonly toRps: number, atS: number,
  ) {
    this.timer = setTimeout(() => {
      runtime.setDynamicDelay({ extraDelayMs: 0, requestsPerSecond: toRps });
      const deployedAtMs = Date.now();
      this.deployedAtMs = deployedAtMs;
      this.schedule.push({ atMs: rateChangeBindsAtMs(deployedAtMs, toRps < fromRps, timing), requestsPerSecond: toRps });
      this.applied = vendor.setRateSchedule(this.schedule);
    }, Math.max(0, submittedAtMs + atS * 1000 - Date.now()));
  }

  /** The summary; stops the timer if the run ended before the change. */
  public async result(arrivals: number[]): Promise<DemoRateChange | undefined> {
    clearTimeout(this.timer);
    await this.applied;
    if (this.deployedAtMs === undefined) return undefined;
    return {
      fromRps: this.fromRps,
      toRps: this.toRps,
      deployedAtMs: this.deployedAtMs - this.submittedAtMs,
      bindsAtMs: this.schedule[0].atMs - this.submittedAtMs,
      statedInUseWithinMs: rateChangeInUseWithinMs(this.toRps < this.fromRps, this.timing),
      observedInUseAfterMs: newRateObservedAfterMs(arrivals, this.deployedAtMs, this.fromRps, this.toRps) ?? null,
      timing: this.timing,
    };
  }
}
