import { Duration } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { VendorContract } from '../contract/vendor-contract';
import { VendorCallerEnv } from '../shared/env';
import { ErrorNames } from '../shared/messages';

/**
 * The vendor caller's error names that retrying cannot fix, for a workflow's ClassifyVendorError
 * (`finalErrors`): VendorResponseTooLarge always, VendorQuotaExhausted when the contract has
 * quotas (only then can the caller raise it: a rule no input reaches is an edge no test executes).
 */
export function vendorCallerFinalErrors(contract: VendorContract | undefined): string[] {
  return [
    ErrorNames.VENDOR_RESPONSE_TOO_LARGE,
    ...(contract && contract.quotas.length > 0 ? [ErrorNames.VENDOR_QUOTA_EXHAUSTED] : []),
  ];
}

/** Gives the vendor caller the contract's quotas (quota-ledger.ts reads them). Nothing without quotas. */
export function addQuotaEnvironment(fn: lambda.Function, contract: VendorContract | undefined, maxWait: Duration | undefined): void {
  if (!contract || contract.quotas.length === 0) {
    return;
  }
  fn.addEnvironment(VendorCallerEnv.QUOTAS, JSON.stringify(contract.quotas.map((quota) => quota._spec())));
  fn.addEnvironment(VendorCallerEnv.QUOTA_EXHAUSTED, contract.whenQuotaExhausted);
  if (maxWait) {
    fn.addEnvironment(VendorCallerEnv.QUOTA_MAX_WAIT_MS, String(maxWait.toMilliseconds()));
  }
}

/**
 * Of the vendor caller's final errors, those the waiting workflow fails with by name
 * (`namedFailures`): VendorQuotaExhausted when the contract has quotas.
 */
export function vendorCallerNamedFailures(contract: VendorContract | undefined): string[] {
  return contract && contract.quotas.length > 0 ? [ErrorNames.VENDOR_QUOTA_EXHAUSTED] : [];
}
