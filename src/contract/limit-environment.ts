import * as lambda from 'aws-cdk-lib/aws-lambda';
import { VendorContract } from './vendor-contract';
import { ConsumerEnv, VendorCallerEnv } from '../shared/env';

/**
 * Gives a function that reserves pacing slots (the dispatcher, the vendor caller) the contract's
 * named limits (contract/named-limit.ts reads them). Nothing without named limits, so templates of
 * contracts without them are unchanged.
 */
export function addLimitEnvironment(fn: lambda.Function, contract: VendorContract | undefined): void {
  if (!contract || contract.limits.length === 0) {
    return;
  }
  // One name for both functions (ConsumerEnv.VENDOR_LIMITS = VendorCallerEnv.VENDOR_LIMITS).
  const name: typeof ConsumerEnv.VENDOR_LIMITS & typeof VendorCallerEnv.VENDOR_LIMITS = ConsumerEnv.VENDOR_LIMITS;
  fn.addEnvironment(name, JSON.stringify(contract.limits.map((limit) => limit._spec())));
}
