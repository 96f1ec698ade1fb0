import { VendorContract } from '../contract/vendor-contract';
import { ConsumerEnv, VendorCallerEnv } from '../shared/env';

/**
 * The environment that turns adaptive pacing on in a handler that reserves slots (the dispatcher,
 * ConsumerEnv.ADAPTIVE_PACING) or sees the vendor's 429s (the vendor caller,
 * VendorCallerEnv.ADAPTIVE_PACING): the spec resolved for the contract, as JSON. Empty without it.
 */
export function adaptivePacingEnvironment(
  contract: VendorContract | undefined,
  name: typeof ConsumerEnv.ADAPTIVE_PACING | typeof VendorCallerEnv.ADAPTIVE_PACING,
): Record<string, string> {
  if (!contract?.adaptivePacing) {
    return {};
  }
  return { [name]: JSON.stringify(contract.adaptivePacing._spec(contract.requestsPerSecond)) };
}
