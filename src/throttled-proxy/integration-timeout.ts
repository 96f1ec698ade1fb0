import { Duration } from 'aws-cdk-lib';
import { validateDuration } from '../shared/validation';

/**
 * API Gateway's integration timeout for REST APIs: 50 ms to 29 s by default. Regional and private
 * REST APIs can go up to 300 s once the account's quota "Maximum integration timeout in
 * milliseconds" is raised in Service Quotas, which may lower the account-level throttle quota.
 * https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html
 * https://aws.amazon.com/about-aws/whats-new/2024/06/amazon-api-gateway-integration-timeout-limit-29-seconds/
 */
export const DEFAULT_INTEGRATION_TIMEOUT_QUOTA = Duration.seconds(29);
const MIN_INTEGRATION_TIMEOUT = Duration.millis(50);
const MAX_RAISED_INTEGRATION_TIMEOUT_QUOTA = Duration.seconds(300);

/**
 * How long one vendor call may take by default: API Gateway's default integration timeout, so a
 * caller never waits for an answer the proxy has already replaced with a 504.
 */
export const DEFAULT_VENDOR_CALL_TIMEOUT = DEFAULT_INTEGRATION_TIMEOUT_QUOTA;

/** Checks the proxy's integration timeout against the account's quota (both resolved or defaulted). */
export function validateIntegrationTimeout(integrationTimeout: Duration, quota: Duration): void {
  validateDuration('integrationTimeoutQuota', quota, DEFAULT_INTEGRATION_TIMEOUT_QUOTA, MAX_RAISED_INTEGRATION_TIMEOUT_QUOTA,
    'API Gateway\'s default is 29 seconds; a raised quota ("Maximum integration timeout in milliseconds", Regional REST APIs) goes up to 300 seconds');
  if (integrationTimeout.isUnresolved() || quota.isUnresolved()) {
    return;
  }
  const ms = integrationTimeout.toMilliseconds();
  if (ms < MIN_INTEGRATION_TIMEOUT.toMilliseconds() || ms > quota.toMilliseconds()) {
    throw new Error(`integrationTimeout must be between 50 milliseconds and integrationTimeoutQuota (${quota.toHumanString()}) (given ${integrationTimeout.toHumanString()}; `
      + 'an orchestrator sets it to the longest vendorCallTimeout of dispatch and vendorCall): API Gateway cuts the vendor call off at its quota '
      + 'and answers 504, and a retry could create a second job. Lower vendorCallTimeout, or raise the quota "Maximum integration timeout in milliseconds" '
      + 'in Service Quotas (Regional REST APIs, up to 300 seconds; it may lower the account\'s throttle quota) and set integrationTimeoutQuota (the orchestrator\'s proxy.integrationTimeoutQuota)');
  }
}

/**
 * The vendor call timeout of a workflow (`vendorCallTimeout` or its default), checked: within what
 * an Express workflow allows, and not longer than the proxy waits for the vendor, since a longer
 * wait would only end in the proxy's 504 while the vendor may still be creating the job.
 */
export function resolveVendorCallTimeout(vendorCallTimeout: Duration | undefined, proxyIntegrationTimeout: Duration): Duration {
  const timeout = withinExpressWorkflow(vendorCallTimeout);
  if (!timeout.isUnresolved() && !proxyIntegrationTimeout.isUnresolved()
    && timeout.toMilliseconds() > proxyIntegrationTimeout.toMilliseconds()) {
    throw new Error(`vendorCallTimeout (${timeout.toHumanString()}) is longer than the proxy's integrationTimeout (${proxyIntegrationTimeout.toHumanString()}): `
      + 'API Gateway would answer 504 before the call times out, and a retry could create a second job. '
      + 'Lower vendorCallTimeout, or give the ThrottledProxy an integrationTimeout at least as long');
  }
  return timeout;
}

/** The longest of the given vendor call timeouts (each defaulted): what a shared proxy must wait. */
export function longestVendorCallTimeout(...timeouts: Array<Duration | undefined>): Duration {
  return timeouts
    .map(withinExpressWorkflow)
    // An unresolved duration cannot be compared: the workflow's own check then has the last word.
    .reduce((longest, t) => (!t.isUnresolved() && !longest.isUnresolved() && t.toMilliseconds() > longest.toMilliseconds() ? t : longest));
}

/** `vendorCallTimeout` or its default, checked against what an Express workflow allows. */
function withinExpressWorkflow(vendorCallTimeout: Duration | undefined): Duration {
  const timeout = vendorCallTimeout ?? DEFAULT_VENDOR_CALL_TIMEOUT;
  validateDuration('vendorCallTimeout', timeout, Duration.seconds(1), Duration.minutes(4), 'an Express workflow runs at most 5 minutes');
  return timeout;
}
