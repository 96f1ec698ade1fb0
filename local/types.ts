/**
 * Contracts shared by the pieces of the local runtime (local/): how a synthesized template's
 * resources are named on loopback, and how the pieces call one another.
 *
 * The local runtime executes the synthesized template with emulators; it is not part of the
 * published library and src/ never imports it.
 */

/** The account and region every local resource lives in. */
export const LOCAL_ACCOUNT = '000000000000';
export const LOCAL_REGION = 'us-east-1';

/** Dummy credentials: the emulators accept anything, the SDK wants something. */
export const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' };

/**
 * Header by which the local Step Functions tells the local API Gateway which IAM role signed an
 * `apigateway:invoke` call with `AuthType: IAM_ROLE` (the state machine's `RoleArn` from the
 * template). The API Gateway emulator evaluates the REST API's resource policy against it
 * (`aws:PrincipalArn`) and refuses AWS_IAM methods without it, as API Gateway refuses unsigned calls.
 */
export const PRINCIPAL_HEADER = 'x-local-principal-arn';

/**
 * The access key id a local Lambda function gets: it names the function's execution role, so a
 * SigV4-signed request from the function (e.g. the vendor caller to the proxy) can be attributed
 * to that role by the API Gateway emulator, as API Gateway attributes it from the signature.
 * Signatures themselves are not verified.
 */
export function localAccessKeyForRole(roleArn: string): string {
  return `LOCALROLE${Buffer.from(roleArn, 'utf8').toString('base64url')}`;
}

/** The role named by a {@link localAccessKeyForRole} access key id; undefined for any other key. */
export function roleFromLocalAccessKey(accessKeyId: string): string | undefined {
  if (!accessKeyId.startsWith('LOCALROLE')) return undefined;
  const arn = Buffer.from(accessKeyId.slice('LOCALROLE'.length), 'base64url').toString('utf8');
  return /^arn:aws[a-z-]*:(iam|sts)::\d{12}:/.test(arn) ? arn : undefined;
}

/** One resource of the template, with every intrinsic in its properties resolved. */
export interface ResolvedResource {
  readonly logicalId: string;
  readonly type: string;
  /** Properties with Ref / Fn::GetAtt / Fn::Join / Fn::Sub / Fn::Select / Fn::Split resolved. */
  readonly properties: Record<string, any>;
  /** The template's resource Metadata (e.g. `aws:asset:path`), unresolved. */
  readonly metadata: Record<string, any>;
}

/** The loopback endpoints of the emulated AWS services (base URLs, no trailing slash). */
export interface LocalEndpoints {
  readonly sqs: string;
  readonly dynamodb: string;
  readonly sfn: string;
  readonly secretsManager: string;
  /** AppConfigData (dynamic delay); absent: functions get no AWS_ENDPOINT_URL_APPCONFIGDATA. */
  readonly appConfigData?: string;
}

/**
 * Maps a URL as the template knows it (an API Gateway URL `https://<id>.execute-api.<region>.
 * amazonaws.com/<stage>/...`, or the vendor's `https://vendor.example.com/...`) to the loopback URL
 * that serves it. URLs it does not know are returned unchanged.
 */
export type UrlRewriter = (url: string) => string;

/**
 * Maps `https://<host>...` to `<base>...` for the hosts of `hostMap` (e.g. the vendor's, served on
 * loopback); other URLs are returned unchanged.
 */
export function rewriteHost(hostMap: Record<string, string>, url: string): string {
  for (const [host, base] of Object.entries(hostMap)) {
    const prefix = `https://${host}`;
    if (url === prefix || url.startsWith(`${prefix}/`) || url.startsWith(`${prefix}?`)) {
      return `${base.replace(/\/$/, '')}${url.slice(prefix.length)}`;
    }
  }
  return url;
}

/** Invokes a local Lambda function by name or ARN and resolves with its result. */
export type LambdaInvoker = (functionNameOrArn: string, event: unknown) => Promise<unknown>;
