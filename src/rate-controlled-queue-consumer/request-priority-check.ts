/**
 * The queue consumer's check of a request's priority (issue 15, item 4), beside the key's
 * (request-key-check.ts) and for the same reason: a JSONPath task cannot test a value before it
 * sends it, so a priority read at run time (`Priority.fromJsonPath`, `Priority.fromJsonata`) is
 * checked here, on the request's first receive. One that is not `high`, `normal` or `low` (absent
 * or null is normal) fails its waiting task at once with `InvalidRequestPriority`: no job place, no
 * pacing slot, no execution, no vendor call; the message is deleted, not parked (the caller's input
 * is wrong: a redrive would fail the same way).
 */
import { refuseRequest } from './request-key-check';
import type { AnyRequestMessage } from '../shared/messages';
import { INVALID_REQUEST_PRIORITY, requestPriorityProblem } from '../shared/request-priority';

/** Why the message's priority is refused, or undefined (absent and null are normal). */
export function messagePriorityProblem(message: AnyRequestMessage): string | undefined {
  return requestPriorityProblem(message.priority);
}

/**
 * Fails the waiting task with `InvalidRequestPriority`. Resolves to whether the message may be
 * deleted (false: Step Functions could not be reached, the message stays and is checked again).
 */
export async function refuseRequestPriority(
  message: AnyRequestMessage, problem: string,
  // SendTaskFailure, passed in by dispatch.ts (this module does not import the SDK).
  sendTaskFailure: (taskToken: string, error: string, cause: string) => Promise<unknown>,
  logger: { warn(message: string, attributes: Record<string, unknown>): void },
): Promise<boolean> {
  return refuseRequest(message, { error: INVALID_REQUEST_PRIORITY, what: 'invalid priority' }, problem, sendTaskFailure, logger);
}
