import { Duration } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';

/**
 * Options common to the two Express workflows that call the vendor: the dispatch workflow
 * (`DispatchWorkflowOptions`) and the vendor-call workflow (`VendorCallWorkflowOptions`).
 * Both retry, time out and log the same way, so they take the same settings.
 */
export interface CommonVendorWorkflowOptions {
  /**
   * Vendor calls per request before it is given up (the first call included), 1 to 20.
   * Each retry goes back through the request queue, so it is paced like any other request.
   *
   * @default 5
   */
  readonly maxAttempts?: number;

  /**
   * Backoff cap of the first retry; it doubles with every attempt up to `maxRetryDelay`, and the
   * actual delay is drawn uniformly between zero and the cap (full jitter).
   *
   * @default Duration.seconds(2)
   */
  readonly retryBaseDelay?: Duration;

  /**
   * Largest backoff cap, at most 15 minutes (the longest SQS delivery delay).
   *
   * @default Duration.minutes(5)
   */
  readonly maxRetryDelay?: Duration;

  /**
   * How long one vendor call through the proxy may take, 1 second to 4 minutes. The orchestrator
   * sets the proxy's integration timeout to it (the longer of `dispatch` and `vendorCall`), so the
   * proxy never answers 504 while the caller still waits for the vendor. Above 29 seconds (API
   * Gateway's default quota) raise the account's quota "Maximum integration timeout in
   * milliseconds" first and set `proxy.integrationTimeoutQuota`
   * (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
   * In the dispatch workflow the whole route must fit in the Express workflow's 5 minutes with
   * every step retried to its last attempt: with PacingPoint.VENDOR_CALL `lead + maxSlotWait +
   * vendorCallTimeout` is at most 101 s (90 s of vendorCallTimeout with the defaults), 17.5 s
   * less with a Secrets Manager credential read; with PacingPoint.DISPATCH vendorCallTimeout is at
   * most 115 s in the dispatch workflow and 168 s in the vendor-call workflow (17.5 s less each with
   * a credential read). Synthesis fails above it and says the bound.
   *
   * @default Duration.seconds(29)
   */
  readonly vendorCallTimeout?: Duration;

  /**
   * How long the workflow's logs are kept. Execution data is never logged: it holds the vendor
   * credential (and, in the vendor-call workflow, the vendor's response).
   *
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * X-Ray tracing of the workflow.
   *
   * @default false
   */
  readonly tracingEnabled?: boolean;
}
