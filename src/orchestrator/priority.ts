/**
 * A request's priority (issue 15, item 4; design: docs/design/per-key-limits.md, section 4): what
 * `submitJobTask` / `callVendorTask` (and their JSONata forms) take as `priority`. It travels in the
 * request message (`priority`, shared/messages.ts); the dispatcher orders each batch by effective
 * priority (with aging, shared/request-priority.ts) before it assigns pacing slots.
 *
 * A literal is checked here, at synthesis. A value read at run time (`fromJsonPath`, `fromJsonata`)
 * is checked by the dispatcher on the request's first receive, like the key (request-key-check.ts):
 * anything but `high`, `normal` or `low` fails the waiting task with `InvalidRequestPriority`, before
 * any pacing slot, job place or vendor call.
 */
import { Token } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { REQUEST_PRIORITIES } from '../shared/key-limits';
import { isRequestPriority, requestPriorityProblem } from '../shared/request-priority';

/**
 * The priority of a request: `Priority.HIGH`, `Priority.NORMAL`, `Priority.LOW`, or a value read
 * from the state at run time (`Priority.fromJsonPath('$.priority')` in a JSONPath workflow,
 * `Priority.fromJsonata('{% $states.input.priority %}')` in a JSONata one).
 *
 * Under a backlog, higher priority reaches the vendor first; a waiting request rises one level per
 * `priorityAging` (30 seconds by default), so lower priorities are never starved (README, "Priorities").
 */
export class Priority {
  /** Served first: waits only behind slots already reserved (at most the reservation horizon) and its own key's pacing. */
  public static readonly HIGH = new Priority('literal', 'high');
  /** The priority of a request without one. */
  public static readonly NORMAL = new Priority('literal', 'normal');
  /** Served after high and normal; it rises to normal after one `priorityAging` of waiting, to high after two. */
  public static readonly LOW = new Priority('literal', 'low');

  /**
   * A literal priority by name: `high`, `normal` or `low` (checked now, at synthesis). For
   * configuration-driven code; `Priority.HIGH` and its siblings say the same.
   */
  public static of(priority: string): Priority {
    if (Token.isUnresolved(priority)) {
      throw new Error('Priority.of: the priority must be a literal (high, normal or low), not a token; for a value read at run time use Priority.fromJsonPath(\'$.priority\') or Priority.fromJsonata(\'{% $states.input.priority %}\')');
    }
    if (!isRequestPriority(priority)) {
      throw new Error(`Priority.of: ${requestPriorityProblem(priority) ?? `the priority must be one of ${REQUEST_PRIORITIES.map((p) => `'${p}'`).join(', ')} (given ${JSON.stringify(priority)})`}; or use Priority.HIGH, Priority.NORMAL, Priority.LOW`);
    }
    return new Priority('literal', priority);
  }

  /**
   * The priority read from the state at run time, for `submitJobTask` / `callVendorTask`: a JSONPath
   * such as `'$.priority'` (or `sfn.JsonPath.stringAt('$.priority')`). It must find `"high"`,
   * `"normal"` or `"low"` (null: normal); anything else fails the task with `InvalidRequestPriority`.
   * A path that points at nothing fails the execution with `States.Runtime` (Step Functions' own rule,
   * no Catch handles it): give a path the input always has, or use a literal.
   */
  public static fromJsonPath(path: string): Priority {
    if (sfn.JsonPath.isEncodedJsonPath(path)) {
      return new Priority('jsonPath', path);
    }
    if (Token.isUnresolved(path) || !/^\$/.test(path.trim())) {
      throw new Error(`Priority.fromJsonPath: give a JSONPath such as '$.priority' (given ${Token.isUnresolved(path) ? 'a deploy-time token' : `'${path}'`}); for a literal use Priority.HIGH, Priority.NORMAL or Priority.LOW`);
    }
    return new Priority('jsonPath', sfn.JsonPath.stringAt(path.trim()));
  }

  /**
   * The priority as a JSONata expression, for `submitJobTaskJsonata` / `callVendorTaskJsonata`:
   * `'{% $states.input.priority %}'`. It must evaluate to `"high"`, `"normal"` or `"low"`; nothing
   * (the input lacks it) or null is normal; anything else fails the task with `InvalidRequestPriority`.
   */
  public static fromJsonata(expression: string): Priority {
    const inner = Token.isUnresolved(expression) ? null : /^\{%([\s\S]*)%\}$/.exec(expression.trim());
    if (!inner || inner[1].trim() === '') {
      throw new Error(`Priority.fromJsonata: give a JSONata expression such as '{% $states.input.priority %}' (given ${Token.isUnresolved(expression) ? 'a deploy-time token' : `'${expression}'`}); for a literal use Priority.HIGH, Priority.NORMAL or Priority.LOW`);
    }
    // What the expression does not find becomes null (normal), not a failed state: a JSONata
    // expression that evaluates to nothing fails the state with States.QueryEvaluationError
    // (https://docs.aws.amazon.com/step-functions/latest/dg/transforming-data.html).
    return new Priority('jsonata', `{% ($p := (${inner[1].trim()}); $exists($p) ? $p : null) %}`);
  }

  private constructor(
    private readonly form: 'literal' | 'jsonPath' | 'jsonata',
    private readonly value: string,
  ) {}

  /**
   * Whether a request of this priority goes to the high-priority request queue: `always` (HIGH),
   * `never` (NORMAL, LOW), or `runtime` (read from the state: the task's QueueUrl chooses).
   *
   * @internal
   */
  public _highQueueRoute(): 'always' | 'never' | 'runtime' {
    return this.form !== 'literal' ? 'runtime' : this.value === 'high' ? 'always' : 'never';
  }

  /**
   * A JSONPath task's QueueUrl for a priority read at run time: the high queue's URL when the
   * value is `"high"`, the request queue's otherwise (normal, low, null; an invalid value goes to
   * the request queue, whose dispatcher refuses it). JSONPath has no comparison intrinsic, so the
   * test is the length of `States.ArrayUnique(States.Array(<priority>, 'high'))`: 1 when the value
   * is "high", 2 otherwise; minus one, it indexes `[highUrl, normalUrl]`. Intrinsics may be nested
   * (https://docs.aws.amazon.com/step-functions/latest/dg/intrinsic-functions.html).
   *
   * @internal
   */
  public _jsonPathQueueUrl(where: string, highQueueUrl: string, requestQueueUrl: string): string {
    const priority = this._jsonPathField(where);
    // The helpers return encoded tokens; Token.asNumber passes them where a number is typed.
    const distinct = Token.asNumber(sfn.JsonPath.arrayLength(sfn.JsonPath.arrayUnique(sfn.JsonPath.array(priority, 'high'))));
    return sfn.JsonPath.arrayGetItem(sfn.JsonPath.array(highQueueUrl, requestQueueUrl), Token.asNumber(sfn.JsonPath.mathAdd(distinct, -1)));
  }

  /**
   * A JSONata task's QueueUrl for a priority read at run time: the high queue's URL when the
   * expression evaluates to `"high"`, the request queue's otherwise.
   *
   * @internal
   */
  public _jsonataQueueUrl(where: string, highQueueUrl: string, requestQueueUrl: string): string {
    const expression = /^\{%([\s\S]*)%\}$/.exec(this._jsonataField(where))![1].trim();
    return `{% ($priority := ${expression}; $priority = 'high' ? '${highQueueUrl}' : '${requestQueueUrl}') %}`;
  }

  /**
   * The message body's `priority` field in a JSONPath task (`submitJobTask`, `callVendorTask`).
   *
   * @internal
   */
  public _jsonPathField(where: string): string {
    if (this.form === 'jsonata') {
      throw new Error(`${where}: priority is a JSONata expression (Priority.fromJsonata), which a JSONPath state does not read: use Priority.fromJsonPath('$.priority') or a literal`);
    }
    return this.value;
  }

  /**
   * The message body's `priority` field in a JSONata task (`submitJobTaskJsonata`, `callVendorTaskJsonata`).
   *
   * @internal
   */
  public _jsonataField(where: string): string {
    if (this.form === 'jsonPath') {
      throw new Error(`${where}: priority is a JSONPath (Priority.fromJsonPath), which a JSONata state does not read: use Priority.fromJsonata('{% $states.input.priority %}') or a literal`);
    }
    return this.value;
  }
}
