import type { VendorContract } from './vendor-contract';

/**
 * Whether the contract has per-key limits (`VendorContract.perKey`, issue 15, design
 * docs/design/per-key-limits.md 2.1).
 */
export function hasPerKeyLimits(contract: VendorContract | undefined): boolean {
  return contract?.perKey !== undefined;
}
