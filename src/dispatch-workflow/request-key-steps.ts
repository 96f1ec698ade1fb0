/**
 * What the two workflows that call the vendor do with a request's key (issue 15) when every
 * request has one: the vendor credential is per key, or the contract has limits per key
 * (`VendorContract.perKey`). `$.key` is then always there (the queue consumer starts no execution
 * without one), and a retry keeps it, in its message and as its MessageGroupId (the key's
 * SHA-256, as the user's task sent it: orchestrator/request-key-fields.ts); the vendor caller
 * gets it (its key's credential, its key's limits).
 *
 * Otherwise a request may have no key: a retry then travels without its key and group (keys only
 * group requests then).
 */
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { VendorContract } from '../contract/vendor-contract';
import { KEY_LIMITS_INPUT_FIELD } from '../shared/key-limits';
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

/**
 * Whether every request has a key: the vendor credential is per key, or the contract has limits
 * per key. The orchestrator refuses a task without a key then, and the dispatcher a message.
 */
export function requestsCarryKey(proxy: Pick<ThrottledProxy, 'credentials'>, contract: VendorContract | undefined): boolean {
  return proxy.credentials.isPerKey || contract?.perKey !== undefined;
}

/** Fields of a retry message (`retryMessage`, rendered by CDK): the key when every request has one. */
export function retryMessageKey(keyed: boolean): Record<string, string> {
  return keyed ? { key: sfn.JsonPath.stringAt(KEY_PATH) } : {};
}

/**
 * Fields of the vendor caller's event (`VendorCallEvent.keyLimits`, rendered by CDK): the
 * request's key limits in force as the dispatcher resolved them (null for a dispatcher of an
 * earlier version: input-defaults.ts), when the contract has limits per key.
 */
export function callerKeyLimits(contract: VendorContract | undefined): Record<string, unknown> {
  return contract?.perKey ? { [KEY_LIMITS_INPUT_FIELD]: sfn.JsonPath.objectAt(`$.${KEY_LIMITS_INPUT_FIELD}`) } : {};
}

/**
 * Parameters of the requeue's SendMessage: the key's group when every request has one, for
 * CDK-rendered parameters (`raw` false) or raw ASL (`raw` true, the `.$` field).
 */
export function requeueGroupId(keyed: boolean, raw: boolean): Record<string, string> {
  if (!keyed) {
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
  // The same requests as those that carry a key: every one has it then.
  return requestsCarryKey(proxy, contract);
}
