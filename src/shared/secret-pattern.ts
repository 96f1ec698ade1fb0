/**
 * The IAM resource of secrets named by a pattern with `{key}` (issue 15: a vendor credential or a
 * signing secret per request key), for the grant and its cdk-nag suppression.
 */
import { ArnFormat, Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { NagSuppression } from './nag';

/**
 * `arn:<partition>:secretsmanager:<region>:<account>:secret:<pattern, {key} as *>-??????`: `-??????`
 * matches the six random characters Secrets Manager appends to a secret's ARN
 * (https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_examples.html).
 */
export function perKeySecretArnPattern(scope: IConstruct, secretNamePattern: string): string {
  return Stack.of(scope).formatArn({
    service: 'secretsmanager',
    resource: 'secret',
    resourceName: `${secretNamePattern.replace('{key}', '*')}-??????`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
}

/** The IAM5 suppression of that grant, limited to exactly that resource. */
export function perKeySecretNagSuppression(secretNamePattern: string, reason: string): NagSuppression {
  // The region and account are tokens or literals, as the stack's environment says.
  const name = escapeRegex(secretNamePattern.replace('{key}', '*'));
  return { id: 'AwsSolutions-IAM5', reason, appliesTo: [{ regex: `/^Resource::arn:<AWS::Partition>:secretsmanager:[^:]+:[^:]+:secret:${name}-\\?{6}$/g` }] };
}

/** `text` as a literal in a regular expression. */
function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
