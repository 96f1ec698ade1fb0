/**
 * What operators set at run time and the pacer reads before every reservation: the dynamic delay
 * and the rate in force (the `requestsPerSecond` beside `extraDelayMs` in the AppConfig
 * configuration, at most the contract). Pure: the dispatcher and the vendor caller both call
 * {@link readPacingSettings}, so a fresh reservation by a late caller is spaced like the
 * dispatcher's (pacer.ts, "The rate at run time").
 */
import { MetricNames } from '../shared/metrics';

/** The settings a reservation is made with (ReserveSlotsOptions fields). */
export interface PacingSettings {
  /** Added to the slot interval, >= 0. */
  readonly extraIntervalMs: number;
  /** The rate in force; undefined: the contract. The pacer caps it at the contract. */
  readonly rateInForce?: number;
  /**
   * Since when this execution environment has paced at these settings (epoch ms); infinite when it
   * has never read them (then the schedule never speeds up). Undefined: settings that never change.
   */
  readonly settingsSinceMs?: number;
}

/** A source of run-time settings (DynamicDelayReader); the older shape gives only the delay. */
export interface PacingSettingsSource {
  extraIntervalMs(): Promise<number>;
  pacingSettings?(): Promise<PacingSettings>;
}

/**
 * Publishes the rate in force a reservation is made with (MetricNames.RATE_IN_FORCE): the operators'
 * rate capped at the contract, the contract when none is set.
 */
export function recordRateInForce(
  metrics: { addMetric(name: string, unit: 'Count', value: number): void },
  contractRequestsPerSecond: number,
  settings: PacingSettings,
): void {
  metrics.addMetric(MetricNames.RATE_IN_FORCE, 'Count', Math.min(settings.rateInForce ?? contractRequestsPerSecond, contractRequestsPerSecond));
}

/** The settings of the next reservation: the contract and no delay without a source. Never throws past the source. */
export async function readPacingSettings(source: PacingSettingsSource | undefined): Promise<PacingSettings> {
  if (source === undefined) {
    return { extraIntervalMs: 0 };
  }
  if (source.pacingSettings) {
    const settings = await source.pacingSettings();
    return { ...settings, extraIntervalMs: Math.max(0, settings.extraIntervalMs) };
  }
  return { extraIntervalMs: Math.max(0, await source.extraIntervalMs()) };
}
