/**
 * Defaults for the workflow input fields that a dispatcher of an earlier version does not send.
 *
 * A deploy updates the state machine before the dispatcher (the dispatcher's environment refers to
 * the state machine, so CloudFormation orders them so), and for a while an old dispatcher starts
 * executions of the new definition. A JSONPath that points at nothing fails the execution with
 * `States.Runtime`, which no Retry or Catch handles
 * (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html): the request
 * would be lost (its message was deleted once the execution started). So the first states of the
 * workflow give every field added after the first release a value when it is absent, and the steps
 * that read them treat the default as "not known" (the vendor caller counts a quota deadline from
 * now without `requestStartedAtMs`, frees no place without `endsJobOf`).
 *
 * Three Pass states: `States.StringToJson` would need escaped braces in its literal, which the local
 * interpreter does not unescape, and CDK drops null values from Parameters, so the defaults come
 * from a Pass `Result`, set beside the input rather than inside it (merging an object with one that
 * contains it recurses without end in the local interpreter).
 */
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { VendorContract } from '../contract/vendor-contract';
import { KEY_LIMITS_INPUT_FIELD } from '../shared/key-limits';

/**
 * The three states that fill `defaults` into the execution input where absent (fields present in
 * the input win, a present null included). Chain them before the workflow's first state.
 */
export function inputDefaults(scope: Construct, defaults: Record<string, null>): sfn.Chain {
  const wrap = new sfn.Pass(scope, 'WrapInput', {
    comment: 'Fields a dispatcher of an earlier version does not send (a deploy updates this workflow first): the input aside',
    parameters: { 'input.$': '$' },
  });
  // A Pass Result keeps nulls (Parameters drop them when CDK renders them).
  const set = new sfn.Pass(scope, 'SetInputDefaults', {
    comment: 'The defaults beside the input',
    result: sfn.Result.fromObject(defaults),
    resultPath: '$.defaults',
  });
  const merge = new sfn.Pass(scope, 'ApplyInputDefaults', {
    comment: 'The input, with the defaults where a field is absent',
    // A copy of the defaults as the first argument: the local interpreter's JsonMerge is
    // Object.assign(first, second), which would write this execution's fields into the definition's
    // Result object, the next execution's defaults (on AWS both arguments are values).
    parameters: { 'input.$': 'States.JsonMerge(States.StringToJson(States.JsonToString($.defaults)), $.input, false)' },
    outputPath: '$.input',
  });
  return sfn.Chain.start(wrap).next(set).next(merge);
}

/**
 * Issue 15: `keyLimits` (the request's key limits in force) is null from a dispatcher of an earlier
 * version, which does not send it; the vendor caller then keeps the contract's limits only (it
 * treats null as "no per-key limits"). Only with limits per key: other definitions do not read it.
 */
export function keyLimitsDefault(contract: VendorContract | undefined): Record<string, null> {
  return contract?.perKey ? { [KEY_LIMITS_INPUT_FIELD]: null } : {};
}
