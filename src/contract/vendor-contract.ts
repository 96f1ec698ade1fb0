import { validateRequestsPerSecond } from '../shared/validation';

/**
 * Properties of a VendorContract: what the vendor allows, in one place.
 */
export interface VendorContractProps {
  /**
   * The most requests per second the vendor allows. Every layer is derived from it: the pacing of
   * the queue consumer, the proxy's throttling, the backlog alarm.
   */
  readonly requestsPerSecond: number;
}

/**
 * The vendor contract: the one home of every limit the orchestrator keeps (its rate today; jobs
 * in flight, quotas per period and named limits as they are added). Each layer reads what it
 * enforces from here instead of from props threaded through the orchestrator, so a new limit is
 * declared once and validated once, at synth time.
 *
 * @example
 * const contract = VendorContract.of({ requestsPerSecond: 10 });
 */
export class VendorContract {
  /** A contract from its properties; throws at synth time when one cannot hold. */
  public static of(props: VendorContractProps): VendorContract {
    return new VendorContract(props);
  }

  /** The most requests per second the vendor allows. */
  public readonly requestsPerSecond: number;

  private constructor(props: VendorContractProps) {
    validateRequestsPerSecond(props.requestsPerSecond);
    this.requestsPerSecond = props.requestsPerSecond;
  }
}
