import { Duration, Token } from 'aws-cdk-lib';
import { AdaptiveSpec } from './adaptive-spec';

/**
 * Options of adaptive pacing (`AdaptivePacing.of`).
 */
export interface AdaptivePacingProps {
  /**
   * At each decrease the effective rate is multiplied by this (above 0, below 1). A decrease follows
   * a 429 to a regular request (the vendor's limit went down); a refused probe does not decrease.
   *
   * @default 0.7 - a moderate drop after a real change of the vendor's limit (the climb back is one
   * step per probe interval); 0.5 (TCP Reno's halving) would waste more of it
   */
  readonly decreaseFactor?: number;

  /**
   * At most one probe per interval: a probe puts exactly one request per second more than the
   * effective rate into one 1-second window at the vendor; when the vendor takes it, the effective
   * rate climbs one `increaseStep` toward the rate in force, when it refuses it, the rate stays. A
   * probe costs at most one 429 (only the last request of its window can be refused), so after
   * convergence at the vendor's real limit expect one 429 per probe interval. 1 second to 1 hour.
   *
   * @default Duration.seconds(10)
   */
  readonly probeInterval?: Duration;

  /**
   * Requests per second added after each passed probe (above 0, at most the contract). A probe tests
   * one request per second more, so a step above 1 climbs past what was tested (faster recovery after
   * a temporary drop, at the risk of 429s the probe did not foresee).
   *
   * @default - 1 request per second (a tenth of the contract below 10 requests per second)
   */
  readonly increaseStep?: number;

  /**
   * The effective rate never drops below this (above 0, at most the contract). A vendor that
   * refuses everything is handled by the pause (`Retry-After`), not by this rate.
   *
   * @default - a tenth of the contract
   */
  readonly minimumRequestsPerSecond?: number;

  /**
   * At most one decrease per cooldown: the 429s answered to requests of one burst (already
   * scheduled at the old rate, or in flight) decrease the rate once. 100 ms to 1 hour.
   *
   * @default Duration.seconds(2) - the default vendor pause (1 s) plus one 1-second window
   */
  readonly cooldown?: Duration;
}

/**
 * Adaptive pacing (opt-in, `VendorContractProps.adaptivePacing`): when the vendor answers 429 (its
 * real limit is lower than the contract, or shared with other clients), the effective rate drops
 * by `decreaseFactor` (once per cooldown), then climbs back by `increaseStep` after each probe the
 * vendor takes (at most one per `probeInterval`, each costing at most one 429) toward the rate in
 * force, never above it. The effective rate is `min(rate in force, adaptive
 * rate)`, published as the `EffectiveRate` metric.
 *
 * @example
 * VendorContract.of({ requestsPerSecond: 10, adaptivePacing: AdaptivePacing.of() });
 */
export class AdaptivePacing {
  /** Adaptive pacing with the given options (all optional). */
  public static of(props: AdaptivePacingProps = {}): AdaptivePacing {
    return new AdaptivePacing(props);
  }

  /** The multiplicative decrease. */
  public readonly decreaseFactor: number;
  /** One increase step per this interval. */
  public readonly probeInterval: Duration;
  /** At most one decrease per cooldown. */
  public readonly cooldown: Duration;

  private readonly props: AdaptivePacingProps;

  private constructor(props: AdaptivePacingProps) {
    this.decreaseFactor = props.decreaseFactor ?? 0.7;
    if (Token.isUnresolved(this.decreaseFactor) || !(this.decreaseFactor > 0 && this.decreaseFactor < 1)) {
      throw new Error(`AdaptivePacing: decreaseFactor must be a number above 0 and below 1, got ${this.decreaseFactor}: e.g. 0.7 to pace at 70 % of the rate after a 429`);
    }
    this.probeInterval = props.probeInterval ?? Duration.seconds(10);
    checkDuration('probeInterval', this.probeInterval, 1000, 3_600_000, 'e.g. Duration.seconds(10)');
    this.cooldown = props.cooldown ?? Duration.seconds(2);
    checkDuration('cooldown', this.cooldown, 100, 3_600_000, 'e.g. Duration.seconds(2)');
    for (const [name, value] of [['increaseStep', props.increaseStep], ['minimumRequestsPerSecond', props.minimumRequestsPerSecond]] as const) {
      if (value !== undefined && (Token.isUnresolved(value) || !(Number.isFinite(value) && value > 0))) {
        throw new Error(`AdaptivePacing: ${name} must be a number of requests per second above 0, got ${value}`);
      }
    }
    this.props = props;
  }

  /**
   * The settings the handlers read, resolved for a contract of `requestsPerSecond`. Throws when one
   * cannot hold under that contract.
   * @internal
   */
  public _spec(requestsPerSecond: number): AdaptiveSpec {
    // One request per second per step: what a probe tests (rate-controlled-queue-consumer/adaptive-probe.ts).
    const increaseStep = this.props.increaseStep ?? Math.min(1, requestsPerSecond / 10);
    const minimumRequestsPerSecond = this.props.minimumRequestsPerSecond ?? requestsPerSecond / 10;
    if (increaseStep > requestsPerSecond) {
      throw new Error(`AdaptivePacing: increaseStep (${increaseStep} requests per second) is above the contract (${requestsPerSecond}): the first probe would jump to the contract; give at most the contract, e.g. ${Math.min(1, requestsPerSecond / 10)}`);
    }
    if (minimumRequestsPerSecond > requestsPerSecond) {
      throw new Error(`AdaptivePacing: minimumRequestsPerSecond (${minimumRequestsPerSecond}) is above the contract (${requestsPerSecond}), which is the ceiling of every rate: give at most the contract, e.g. ${requestsPerSecond / 10}`);
    }
    return {
      decreaseFactor: this.decreaseFactor,
      probeIntervalMs: this.probeInterval.toMilliseconds(),
      increaseStep,
      minimumRequestsPerSecond,
      cooldownMs: this.cooldown.toMilliseconds(),
    };
  }
}

function checkDuration(name: string, value: Duration, minMs: number, maxMs: number, hint: string): void {
  if (value.isUnresolved()) {
    throw new Error(`AdaptivePacing: ${name} must be a concrete Duration, not a token`);
  }
  const ms = value.toMilliseconds();
  if (ms < minMs || ms > maxMs) {
    throw new Error(`AdaptivePacing: ${name} must be from ${Duration.millis(minMs).toHumanString()} to ${Duration.millis(maxMs).toHumanString()}, got ${value.toHumanString()}: ${hint}`);
  }
}
