/**
 * Step Functions' uncatchable interpreter errors, for both executors of synthesized definitions:
 * the local runtime (local/aws/stepfunctions.ts) and the execution tests (test/asl/execute.ts).
 *
 * On AWS an error of the interpreter itself (a JSONPath that points at nothing, an intrinsic
 * function that fails, in a state's InputPath, Parameters, ResultSelector, ResultPath, OutputPath,
 * ItemsPath, ItemSelector or a Choice rule) fails the execution with `States.Runtime`: "A
 * States.Runtime error isn't retriable, and will always cause the execution to fail. A retry or
 * catch on States.ALL won't catch States.Runtime errors."
 * (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
 *
 * aws-local-stepfunctions raises most of them as its own non-catchable `States.Runtime`, but an
 * intrinsic whose JavaScript implementation throws lets a plain JavaScript error escape:
 * `States.StringToJson` on text that is not JSON (JSON.parse's `SyntaxError`) and
 * `States.Base64Decode` of bad input (atob's `InvalidCharacterError`). The library then retries
 * and catches it like a task's failure (`States.ALL`, and its name matches a Catch that names it),
 * and a Parallel or Map state catches it when it escapes a branch (test/asl/interpreter-strictness.test.ts).
 *
 * The library decides with `error.isRetryable ?? true` and `error.isCatchable ?? true`; its own
 * errors answer with their class's getters (States.Runtime: false; States.Timeout, a Fail state's
 * error, States.NoChoiceMatched, States.ResultPathMatchFailure: true). Importing this module makes
 * every other error answer false through getters on Error.prototype (only this library reads these
 * two names), and the executors mark what their Task integrations throw as task failures
 * (`taskFailure`), which answer true. What remains unmarked came from the interpreter: the
 * executors report it as States.Runtime (`executionFailure`).
 */

const MARK = 'isCatchable';

/**
 * The prototypes answering false: Error's, and DOMException's when it is not an Error of this
 * realm (under jest, atob and its DOMException come from Node's own realm).
 */
const UNCATCHABLE_PROTOTYPES: readonly object[] = [Error.prototype,
  ...(typeof DOMException === 'function' && !(DOMException.prototype instanceof Error) ? [DOMException.prototype] : [])];
for (const proto of UNCATCHABLE_PROTOTYPES) {
  if (!Object.prototype.hasOwnProperty.call(proto, MARK)) {
    const uncatchable: PropertyDescriptor = { configurable: true, enumerable: false, get: () => false };
    Object.defineProperty(proto, 'isCatchable', uncatchable);
    Object.defineProperty(proto, 'isRetryable', uncatchable);
  }
}

/**
 * An error a Task's integration threw (a service error, a Lambda function error, a timeout of the
 * integration, a SendTaskFailure), marked so that its Retry and Catch handle it. A `States.Runtime`
 * stays uncatchable, as on AWS. Not an Error (e.g. a thrown string): wrapped in one.
 */
export function taskFailure(error: unknown): Error {
  // Duck-typed: under jest an error may come from another realm (instanceof Error is false).
  const e = (error !== null && typeof error === 'object' ? error : new Error(String(error))) as Error;
  if (e.name !== 'States.Runtime' && !Object.prototype.hasOwnProperty.call(e, MARK)) {
    Object.defineProperty(e, 'isCatchable', { configurable: true, enumerable: false, value: true });
    Object.defineProperty(e, 'isRetryable', { configurable: true, enumerable: false, value: true });
  }
  return e;
}

/**
 * Marks an error as a Retry or Catch handles it only as given: e.g. States.DataLimitExceeded, which
 * `States.ALL` does not match but a catcher naming it does. Reported by its own name.
 */
export function handledOnlyIf(error: Error, catchable: boolean, retryable: boolean): Error {
  Object.defineProperty(error, 'isCatchable', { configurable: true, enumerable: false, value: catchable });
  Object.defineProperty(error, 'isRetryable', { configurable: true, enumerable: false, value: retryable });
  return error;
}

/**
 * Whether the error came from the interpreter's path or intrinsic processing: neither marked by
 * `taskFailure` nor one of the library's own errors (whose class answers `isCatchable` before
 * Error.prototype does).
 */
export function isInterpreterFailure(error: unknown): boolean {
  if (error === null || typeof error !== 'object' || Object.prototype.hasOwnProperty.call(error, MARK)) {
    return false;
  }
  let proto = Object.getPrototypeOf(error);
  while (proto && !Object.prototype.hasOwnProperty.call(proto, MARK)) {
    proto = Object.getPrototypeOf(proto);
  }
  return proto !== null && UNCATCHABLE_PROTOTYPES.includes(proto);
}

/**
 * The error that ended an execution as Step Functions reports it: an interpreter failure becomes
 * `States.Runtime` (its cause names the JavaScript error); anything else is returned as it is.
 */
export function executionFailure(error: unknown): Error {
  if (!isInterpreterFailure(error) || (error as Error).name === 'States.Runtime') {
    return error as Error;
  }
  const e = error as Error;
  const failure = new Error(`The state's path or intrinsic function processing failed: ${e.name}: ${e.message}`);
  failure.name = 'States.Runtime';
  return failure;
}
