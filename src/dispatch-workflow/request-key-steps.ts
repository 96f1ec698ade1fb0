/**
 * What the two workflows that call the vendor do with a request's key (issue 15) when the vendor
 * credential is per key: every request then has a key (`$.key`: the queue consumer starts no
 * execution without one), and a retry keeps it, in its message and as its MessageGroupId (the
 * key's SHA-256, as the user's task sent it: orchestrator/request-key-fields.ts).
 *
 * Without a credential per key a request may have no key: a retry then travels without its key and
 * group (keys only group requests then). Both workflows now fill an absent `$.key` with null
 * (input-defaults.ts), so carrying it always is possible; it is left for the per-key limits work.
 */
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { hasPerKeyLimits } from '../contract/per-key-limits-on';
import type { VendorContract } from '../contract/vendor-contract';
import { ThrottledProxy } from '../throttled-proxy/throttled-proxy';

/** The key's JSONPath in the workflows' input (DispatchInput.key, VendorCallInput.key). */
const KEY_PATH = '$.key';

/**
 * The priority's JSONPath in the workflows' input (DispatchInput.priority, VendorCallInput.priority;
 * issue 15): filled with null when absent (input-defaults.ts), so every retry and deferral message
 * carries it (null is normal), as the user's task sent it. Without it a high request deferred for a
 * full schedule or a vendor pause, exactly when priority matters, would come back as normal.
 */
export const PRIORITY_PATH = '$.priority';

/** Fields of a retry message (`retryMessage`, rendered by CDK): the key when the credential is per key. */
export function retryMessageKey(proxy: ThrottledProxy): Record<string, string> {
  return proxy.credentials.isPerKey ? { key: sfn.JsonPath.stringAt(KEY_PATH) } : {};
}

/**
 * Parameters of the requeue's SendMessage: the key's group when the credential is per key, for
 * CDK-rendered parameters (`raw` false) or raw ASL (`raw` true, the `.$` field).
 */
export function requeueGroupId(proxy: ThrottledProxy, raw: boolean): Record<string, string> {
  if (!proxy.credentials.isPerKey) {
    return {};
  }
  const hash = sfn.JsonPath.hash(sfn.JsonPath.format('{}', sfn.JsonPath.stringAt(KEY_PATH)), 'SHA-256');
  return raw ? { 'MessageGroupId.$': `States.Hash(States.Format('{}', ${KEY_PATH}), 'SHA-256')` } : { MessageGroupId: hash };
}

/**
 * Whether ClaimRequest records the request's key in its correlation item (`requestKey`): with a
 * credential per key (a callback is tied to its key), and whenever the contract has per-key limits
 * (`VendorContract.perKey`, which makes the key required): the callback processor then frees the
 * job's place of that key (shared/key-places.ts), and only the correlation item knows the key.
 */
export function recordsRequestKey(proxy: Pick<ThrottledProxy, 'credentials'>, contract: VendorContract | undefined): boolean {
  return proxy.credentials.isPerKey || hasPerKeyLimits(contract);
}
