/**
 * Per-key places (issue 15, design docs/design/per-key-limits.md 1.4): the claim records the
 * request's key in its correlation item whenever the contract has per-key limits, so that the
 * callback processor can free the job's place of that key. (How ClaimRequest renders a recorded key
 * is covered by per-key-credentials.test.ts; an orchestrator synth here would cost ~5 s.)
 */
import { VendorContract, VendorCredentials } from '../../src';
import { recordsRequestKey } from '../../src/dispatch-workflow/request-key-steps';

/** A contract with per-key limits: `VendorContract.perKey` (KeyLimits) is set by its own change; stood in for here. */
function withPerKey(contract: VendorContract): VendorContract {
  return Object.defineProperty(contract, 'perKey', { value: { maxJobsInFlight: 2 }, enumerable: true });
}

describe('recordsRequestKey', () => {
  const shared = { credentials: { isPerKey: false } } as never;
  const perKey = { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}' }) } as never;

  test('GIVEN a credential per key, or a contract with per-key limits THEN the key is recorded; else not (unchanged)', () => {
    expect(recordsRequestKey(perKey, undefined)).toBe(true);
    expect(recordsRequestKey(shared, withPerKey(VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 5 })))).toBe(true);
    expect(recordsRequestKey(shared, VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 5 }))).toBe(false);
    expect(recordsRequestKey(shared, undefined)).toBe(false);
  });
});
