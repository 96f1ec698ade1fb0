/**
 * How a task's `key` (issue 15) goes on the request queue: in the message body (`key`, which the
 * dispatcher checks) and as the message's `MessageGroupId` (the tenant of an SQS fair queue).
 *
 * The group id is the SHA-256 of the key's text (64 hex characters), not the key itself: a
 * MessageGroupId that SQS refuses (longer than 128 characters, a space, a non-ASCII character)
 * fails SendMessage, so the task would fail with SQS's error instead of `InvalidRequestKey`, and a
 * JSONPath state cannot test the key before it sends it (no conditional in Parameters). The hash is
 * a valid group id whatever the key, every key keeps its own group, and the same key gets the same
 * group from a JSONPath and a JSONata task (`States.Format('{}', key)` and `$string(key)` give the
 * same text for a string). The dispatcher then checks the key itself (request-key-check.ts).
 * MessageGroupId on a standard queue turns on fair queues:
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html
 * (`MessageGroupId`); `States.Hash` and `$hash`:
 * https://docs.aws.amazon.com/step-functions/latest/dg/intrinsic-functions.html#asl-intrsc-func-hash-calc and
 * https://docs.aws.amazon.com/step-functions/latest/dg/transforming-data.html (JSONata functions
 * provided by Step Functions).
 */
import { createHash } from 'crypto';
import { Token } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { requestKeyProblem } from '../shared/request-key';

/** The key's two places in a request message. */
export interface RequestKeyFields {
  /** The message body's `key` field (a JSONPath, a JSONata expression or a literal). */
  readonly bodyKey: string;
  /** The SendMessage `MessageGroupId`: the key's SHA-256, hex. */
  readonly messageGroupId: string;
}

/** The group id of a literal key, as the workflows compute it at run time. */
export function literalKeyGroupId(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/**
 * The key of a JSONPath task (`submitJobTask`, `callVendorTask`): `sfn.JsonPath.stringAt(...)`
 * (or another JSONPath string, e.g. `sfn.JsonPath.format(...)`) or a literal key.
 */
export function jsonPathKeyFields(where: string, key: string): RequestKeyFields {
  if (sfn.JsonPath.isEncodedJsonPath(key)) {
    return { bodyKey: key, messageGroupId: sfn.JsonPath.hash(sfn.JsonPath.format('{}', key), 'SHA-256') };
  }
  if (Token.isUnresolved(key)) {
    throw new Error(`${where}: key must be a JSONPath (e.g. sfn.JsonPath.stringAt('$.customerId')) or a literal key, not a deploy-time token`);
  }
  if (/^(\$|States\.)/.test(key.trim())) {
    throw new Error(`${where}: key '${key}' is a plain string that looks like JSONPath: write sfn.JsonPath.stringAt('${key.trim()}') to read it from the state`);
  }
  return literalKey(where, key);
}

/** The key of a JSONata task: a JSONata expression (`'{% $states.input.customerId %}'`) or a literal key. */
export function jsonataKeyFields(where: string, key: string): RequestKeyFields {
  if (Token.isUnresolved(key)) {
    throw new Error(`${where}: key must be a JSONata expression (e.g. '{% $states.input.customerId %}') or a literal key, not a token`);
  }
  const expression = /^\{%([\s\S]*)%\}$/.exec(key.trim());
  if (expression) {
    // A key the expression does not find becomes null (not a failed state): the dispatcher then
    // fails the task with InvalidRequestKey, as for any other invalid key.
    const orNull = `($k := (${expression[1].trim()}); $exists($k) ? $k : null)`;
    return { bodyKey: `{% ${orNull} %}`, messageGroupId: `{% $hash($string(${orNull}), 'SHA-256') %}` };
  }
  if (/^(\$|States\.)/.test(key.trim())) {
    throw new Error(`${where}: key '${key}' looks like JSONPath or an intrinsic function; in JSONata write '{% $states.input.customerId %}'`);
  }
  return literalKey(where, key);
}

function literalKey(where: string, key: string): RequestKeyFields {
  const problem = requestKeyProblem(key);
  if (problem !== undefined) {
    throw new Error(`${where}: ${problem}`);
  }
  return { bodyKey: key, messageGroupId: literalKeyGroupId(key) };
}
