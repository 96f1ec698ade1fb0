import { CfnResource } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { IConstruct } from 'constructs';

/**
 * One cdk-nag rule suppression, shipped with the construct as resource metadata so that users
 * running cdk-nag get it without this library depending on cdk-nag.
 */
export interface NagSuppression {
  /** The rule, e.g. `AwsSolutions-IAM5`. */
  readonly id: string;
  /** Why the finding is acceptable: a specific sentence (cdk-nag requires 10 characters or more). */
  readonly reason: string;
  /**
   * The findings of a granular rule this applies to: exact finding ids
   * (`Resource::<Table.Arn>/index/*`) or `{ regex: '/^Resource::.../' }`.
   *
   * @default - every finding of the rule on the resource
   */
  readonly appliesTo?: Array<string | { regex: string }>;
}

/** The metadata key and shape cdk-nag reads (`NagSuppressions` writes the same). */
const NAG_METADATA_KEY = 'cdk_nag';

interface NagMetadata {
  rules_to_suppress: Array<{ id: string; reason: string; applies_to?: Array<string | { regex: string }> }>;
}

/**
 * Adds cdk-nag suppressions to `construct`'s CloudFormation resource (the construct itself when it
 * is a CfnResource, else its default child), merged with the suppressions already there.
 * Throws when there is no such resource or a reason is shorter than 10 characters.
 */
export function addNagSuppressions(construct: IConstruct, suppressions: NagSuppression[]): void {
  const resource = CfnResource.isCfnResource(construct) ? construct : construct.node.defaultChild;
  if (!resource || !CfnResource.isCfnResource(resource)) {
    throw new Error(`addNagSuppressions: ${construct.node.path} has no CloudFormation resource to carry the suppressions`);
  }
  const existing = resource.getMetadata(NAG_METADATA_KEY) as NagMetadata | undefined;
  const rules = [...(existing?.rules_to_suppress ?? [])];
  for (const s of suppressions) {
    if (s.reason.length < 10) {
      throw new Error(`addNagSuppressions: the reason for ${s.id} must be at least 10 characters (given '${s.reason}')`);
    }
    const rule = { id: s.id, reason: s.reason, ...(s.appliesTo ? { applies_to: s.appliesTo } : {}) };
    if (!rules.some((r) => JSON.stringify(r) === JSON.stringify(rule))) {
      rules.push(rule);
    }
  }
  resource.addMetadata(NAG_METADATA_KEY, { rules_to_suppress: rules });
}

/**
 * Adds suppressions to the default policy (`<role>/DefaultPolicy`) that grants write to, if it
 * exists yet: call it after the grants. Does nothing for imported roles or roles without one.
 */
export function addRolePolicyNagSuppressions(role: iam.IRole | undefined, suppressions: NagSuppression[]): void {
  const policy = role?.node.tryFindChild('DefaultPolicy');
  if (policy) {
    addNagSuppressions(policy, suppressions);
  }
}

/** The finding ids of the wildcard actions CDK grants for encrypt/decrypt with a KMS key. */
export const KMS_WILDCARD_ACTIONS = ['Action::kms:GenerateDataKey*', 'Action::kms:ReEncrypt*'];

/** What a role's grants may include that needs an IAM5 suppression. */
export interface WildcardGrants {
  /** X-Ray active tracing is on (xray:PutTraceSegments and PutTelemetryRecords on Resource *). */
  readonly tracing?: boolean;
  /** A customer-managed KMS key is used (kms:GenerateDataKey*, kms:ReEncrypt* on that key). */
  readonly kms?: boolean;
}

/** IAM5 suppressions for the wildcards of `grants`: none when there are none. */
export function wildcardSuppressions(grants: WildcardGrants): NagSuppression[] {
  const result: NagSuppression[] = [];
  if (grants.tracing) {
    result.push({ id: 'AwsSolutions-IAM5', reason: NagReasons.XRAY, appliesTo: ['Resource::*'] });
  }
  if (grants.kms) {
    result.push({ id: 'AwsSolutions-IAM5', reason: NagReasons.KMS_WILDCARD_ACTIONS, appliesTo: KMS_WILDCARD_ACTIONS });
  }
  return result;
}

/**
 * The suppressions every function of the library carries: the pinned runtime (L1), the managed
 * logging policy (IAM4), and the X-Ray and KMS wildcards (IAM5) its grants produce. Call it
 * after the function's grants.
 */
export function addFunctionNagSuppressions(fn: lambda.Function, grants: WildcardGrants): void {
  addNagSuppressions(fn, [{ id: 'AwsSolutions-L1', reason: NagReasons.LAMBDA_RUNTIME_PINNED }]);
  if (fn.role?.node.defaultChild) {
    addNagSuppressions(fn.role.node.defaultChild, [{
      id: 'AwsSolutions-IAM4',
      reason: NagReasons.LAMBDA_BASIC_EXECUTION_ROLE,
      appliesTo: ['Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole'],
    }]);
  }
  const wildcards = wildcardSuppressions(grants);
  if (wildcards.length > 0) {
    addRolePolicyNagSuppressions(fn.role, wildcards);
  }
}

/** Reasons shared by several constructs, so that the README and the templates say the same. */
export const NagReasons = {
  LAMBDA_BASIC_EXECUTION_ROLE: 'AWSLambdaBasicExecutionRole is the AWS-maintained minimal policy for a function to write its own logs (logs:CreateLogStream, logs:PutLogEvents); it grants nothing else.',
  LAMBDA_RUNTIME_PINNED: 'The runtime is pinned to Node.js 22 on purpose: the handlers are bundled and tested against it, and a new runtime is adopted with a tested release rather than implicitly.',
  XRAY: 'X-Ray tracing is opt-in (tracing / tracingEnabled); xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level permissions, so AWS requires Resource *.',
  KMS_WILDCARD_ACTIONS: 'kms:GenerateDataKey* and kms:ReEncrypt* are what CDK grants for encrypt/decrypt with the customer-managed key; the resource is that one key, not *.',
  TABLE_INDEX: 'The table grant covers the correlation table and its own indexes (<table ARN>/index/*) because the callback processor queries the ByJobId index; the wildcard never leaves this one table.',
  APIGW_WAF: 'No AWS WAF web ACL by default: a web ACL costs a monthly fee per stage and its rules depend on the account; the stage is throttled, and users can associate their own web ACL with it.',
  APIGW_EXECUTION_LOGS: 'Execution logging needs an account-wide API Gateway CloudWatch role, which a library must not set for the whole account, and at INFO it would log request headers and bodies (the vendor credential); access logs are on instead.',
} as const;

/** The IAM5 finding of a grant on the indexes of one table (defined in the stack or imported by name). */
export const TABLE_INDEX_FINDING = { regex: '/^Resource::(<[A-Za-z0-9]+\\.Arn>|arn:<AWS::Partition>:dynamodb:[^/*]+:table\\/[^/*]+)\\/index\\/\\*$/' };
