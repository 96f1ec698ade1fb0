import { Duration } from 'aws-cdk-lib';
import { validateDuration, validateRequestsPerSecond, validateWholeNumber } from '../shared/validation';

/**
 * Largest `maxJobsInFlight`: the places live in one DynamoDB item (one conditional write per
 * change, no transaction), and an item holds at most 400 KB
 * (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html). 5000
 * places of about 50 bytes each stay under 250 KB. Mirrors `MAX_JOBS_IN_FLIGHT` of shared/job-places.ts.
 */
const MAX_JOBS_IN_FLIGHT = 5000;

/**
 * Properties of a VendorContract: what the vendor allows, in one place.
 */
export interface VendorContractProps {
  /**
   * The most requests per second the vendor allows. Every layer is derived from it: the pacing of
   * the queue consumer, the proxy's throttling, the backlog alarm.
   */
  readonly requestsPerSecond: number;

  /**
   * The most of the vendor's jobs in progress at once. A place is taken before the submission call
   * fires (a request without one waits in the queue, spending no attempt and no receive) and held
   * until the job's callback (success or failure) or `maxJobDuration`; never freed by our own
   * timeout alone (the vendor may still run the job). Vendor calls (`callVendorTask`, e.g. result fetches) hold no place. At most 5000.
   *
   * @default - no limit
   */
  readonly maxJobsInFlight?: number;

  /**
   * The longest a vendor job may run by the contract: a place not freed by a callback is freed this
   * long after the submission (e.g. a lost callback). Only with `maxJobsInFlight`.
   *
   * @default - the orchestrator's `callbackTimeout`
   */
  readonly maxJobDuration?: Duration;
}

/**
 * The vendor contract: the one home of every limit the orchestrator keeps (its rate, jobs in flight;
 * quotas per period and named limits as they are added). Each layer reads what it
 * enforces from here instead of from props threaded through the orchestrator, so a new limit is
 * declared once and validated once, at synth time.
 *
 * @example
 * const contract = VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 50 });
 */
export class VendorContract {
  /** A contract from its properties; throws at synth time when one cannot hold. */
  public static of(props: VendorContractProps): VendorContract {
    return new VendorContract(props);
  }

  /** The most requests per second the vendor allows. */
  public readonly requestsPerSecond: number;

  /**
   * The most of the vendor's jobs in progress at once.
   *
   * @default - no limit
   */
  public readonly maxJobsInFlight?: number;

  /**
   * The longest a vendor job may run by the contract (when a place not freed by a callback expires).
   *
   * @default - the orchestrator's `callbackTimeout`
   */
  public readonly maxJobDuration?: Duration;

  private constructor(props: VendorContractProps) {
    validateRequestsPerSecond(props.requestsPerSecond);
    this.requestsPerSecond = props.requestsPerSecond;
    validateWholeNumber('maxJobsInFlight', props.maxJobsInFlight, 1, MAX_JOBS_IN_FLIGHT,
      'the places are kept in one DynamoDB item of at most 400 KB');
    validateDuration('maxJobDuration', props.maxJobDuration, Duration.seconds(1), Duration.days(365));
    if (props.maxJobDuration !== undefined && props.maxJobsInFlight === undefined) {
      throw new Error(`maxJobDuration (${props.maxJobDuration.toHumanString()}) is given without maxJobsInFlight: it says when a job's place in flight expires, so give maxJobsInFlight too, or remove maxJobDuration`);
    }
    this.maxJobsInFlight = props.maxJobsInFlight;
    this.maxJobDuration = props.maxJobDuration;
  }
}
