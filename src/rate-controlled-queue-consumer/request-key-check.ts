/**
 * The queue consumer's check of a request's key (issue 15), before anything else is done with the
 * message: no job place, no pacing slot, no execution, no vendor call for a request whose key is
 * missing or invalid. Its waiting task fails at once with `InvalidRequestKey` and the message is
 * deleted (it is the caller's input that is wrong: a redrive would fail the same way, so it is not
 * parked in the dead-letter queue).
 *
 * Why here and not in the task: a JSONPath task cannot test a value before it sends it (no
 * conditional in Parameters), and the group id it sends (see `requestGroupId` in the orchestrator)
 * is valid whatever the key, so every task, JSONPath or JSONata, reaches this one check.
 */
import { AnyRequestMessage, CLOSED_TASK_ERROR_NAMES } from '../shared/messages';
import { INVALID_REQUEST_KEY, requestKeyProblem } from '../shared/request-key';


/**
 * Why the message's key is refused, or undefined. A message without a `key` field has no key,
 * which is fine unless `required` (the vendor credential is per key: no key, no credential).
 */
export function messageKeyProblem(message: AnyRequestMessage, required: boolean): string | undefined {
  if (!('key' in message) && !required) {
    return undefined;
  }
  const problem = requestKeyProblem(message.key);
  if (problem !== undefined && !('key' in message)) {
    return `${problem}: the vendor credential is per key, so every submitJobTask / callVendorTask of this orchestrator needs a key`;
  }
  return problem;
}

/**
 * Fails the waiting task with `InvalidRequestKey`. Resolves to whether the message may be deleted:
 * true once the task is failed (or was already closed), false when Step Functions could not be
 * reached (the message then stays on the queue and is checked again).
 */
export async function refuseRequestKey(
  message: AnyRequestMessage, problem: string,
  // SendTaskFailure, passed in by dispatch.ts (this module does not import the SDK).
  sendTaskFailure: (taskToken: string, error: string, cause: string) => Promise<unknown>,
  logger: { warn(message: string, attributes: Record<string, unknown>): void },
): Promise<boolean> {
  return refuseRequest(message, { error: INVALID_REQUEST_KEY, what: 'invalid or missing key' }, problem, sendTaskFailure, logger);
}

/**
 * Fails the waiting task of a request whose input is wrong (`refusal.error`, e.g. InvalidRequestKey,
 * InvalidRequestPriority) with `problem` as the cause. Resolves to whether the message may be
 * deleted: true once the task is failed (or was already closed), false when Step Functions could
 * not be reached (the message then stays on the queue and is checked again).
 */
export async function refuseRequest(
  message: AnyRequestMessage, refusal: { readonly error: string; readonly what: string }, problem: string,
  sendTaskFailure: (taskToken: string, error: string, cause: string) => Promise<unknown>,
  logger: { warn(message: string, attributes: Record<string, unknown>): void },
): Promise<boolean> {
  const log = { requestId: message.requestId, problem };
  try {
    await sendTaskFailure(message.taskToken, refusal.error, problem.slice(0, 32768));
    logger.warn(`request refused: ${refusal.what}; its waiting task failed with ${refusal.error}`, log);
    return true;
  } catch (error) {
    const name = (error as Error).name;
    if (CLOSED_TASK_ERROR_NAMES.has(name)) {
      logger.warn(`request refused: ${refusal.what}; its waiting task was already closed`, { ...log, error: name });
      return true;
    }
    logger.warn(`request with an ${refusal.what}: could not fail its waiting task; the message stays on the queue`, { ...log, error });
    return false;
  }
}
