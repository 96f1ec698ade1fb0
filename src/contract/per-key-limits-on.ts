import type { VendorContract } from './vendor-contract';

/**
 * Whether the contract has per-key limits (`VendorContract.perKey`, issue 15, design
 * docs/design/per-key-limits.md 2.1). Read structurally: `perKey` lands with the per-key settings
 * (KeyLimits) beside the per-key places and quotas that need to know it; once both are merged this
 * is `contract?.perKey !== undefined`.
 */
export function hasPerKeyLimits(contract: VendorContract | undefined): boolean {
  return (contract as { readonly perKey?: unknown } | undefined)?.perKey !== undefined;
}
