/**
 * The named limits of the one call a vendor caller reserves a fresh slot for (issue 14, item 3):
 * the same matching as the dispatcher's (contract/named-limit.ts), by what reaches the vendor.
 */
import { limitsForCall, NamedLimitSpec } from '../contract/named-limit';
import type { LimitedCalls } from '../rate-controlled-queue-consumer/named-limit-schedule';

/** `reserveSlots`' `limitedCalls` for one call, or nothing when the contract has no named limit. */
export function freshSlotLimits(limits: readonly NamedLimitSpec[] | undefined, method: string, path: string | undefined):
{ readonly limitedCalls?: LimitedCalls } {
  if (limits === undefined || limits.length === 0) {
    return {};
  }
  return { limitedCalls: { limits, callLimits: [limitsForCall(limits, method, path).map((limit) => limit.name)] } };
}
