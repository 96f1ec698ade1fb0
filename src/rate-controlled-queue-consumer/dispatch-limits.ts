/**
 * The named limits of the messages a dispatcher reserves slots for (issue 14, item 3): which
 * limits each call is subject to, by what reaches the vendor (contract/named-limit.ts).
 */
import type { LimitedCalls } from './named-limit-schedule';
import { limitsForCall, NamedLimitSpec } from '../contract/named-limit';
import type { AnyRequestMessage } from '../shared/messages';
import { isVendorCallMessage } from '../shared/vendor-call';

/** The names of the limits a message's vendor call is subject to: a job submission is `POST /`. */
export function limitNamesOf(message: AnyRequestMessage, limits: readonly NamedLimitSpec[]): string[] {
  const call = isVendorCallMessage(message) ? message.call : undefined;
  return limitsForCall(limits, call?.method, call?.path).map((limit) => limit.name);
}

/**
 * `reserveSlots`' `limitedCalls` for the waiting messages, or nothing when the contract has no
 * named limit (the reservation is then exactly the plain one).
 */
export function limitedCallsOf(pending: readonly { readonly message: AnyRequestMessage }[], limits: readonly NamedLimitSpec[] | undefined):
{ readonly limitedCalls?: LimitedCalls } {
  if (limits === undefined || limits.length === 0) {
    return {};
  }
  return { limitedCalls: { limits, callLimits: pending.map((item) => limitNamesOf(item.message, limits)) } };
}
