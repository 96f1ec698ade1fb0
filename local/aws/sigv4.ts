/**
 * SigV4 verification for the local API Gateway's AWS_IAM methods: the request is signed again
 * with the secret the local runtime hands out (LOCAL_CREDENTIALS) and the signatures compared, as
 * API Gateway does with the caller's real secret. A refusal carries API Gateway's 403 shape:
 * `{"message": ...}` and `x-amzn-ErrorType` (gateway response types INVALID_SIGNATURE,
 * EXPIRED_TOKEN, UNAUTHORIZED / MISSING_AUTHENTICATION_TOKEN:
 * https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html).
 *
 * Signing process: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
 * (a signature is valid for 5 minutes from its X-Amz-Date).
 */
import { createHash } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { NodeSha256 } from '../../src/shared/node-sha256';
import { LOCAL_CREDENTIALS, LOCAL_REGION, roleFromLocalAccessKey } from '../types';

/** How far X-Amz-Date may be from the gateway's clock. */
export const SIGNATURE_VALIDITY_MS = 5 * 60 * 1000;

/** What the gateway needs of a request to check its signature. */
export interface SignedRequest {
  readonly method: string;
  /** The request target as received: path (still encoded) and query. */
  readonly url: string;
  /** Header names lowercased (Node's `req.headers`). */
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

/** The signer's role, or API Gateway's refusal. */
export type SignatureCheck =
  | { readonly ok: true; readonly principalArn: string }
  | { readonly ok: false; readonly status: number; readonly message: string; readonly errorType: string };

const AUTHORIZATION = /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request\s*,\s*SignedHeaders=([^,\s]+)\s*,\s*Signature=([0-9a-f]+)\s*$/;

/**
 * Checks the SigV4 signature of `request` (its `Authorization` header). `now` is wall-clock time:
 * signers use it, whatever clock drives the gateway's throttling.
 */
export async function verifySigV4(request: SignedRequest, now: number = Date.now()): Promise<SignatureCheck> {
  const authorization = header(request.headers, 'authorization') ?? '';
  const parts = AUTHORIZATION.exec(authorization.trim());
  if (!parts) {
    return refuse(403, `Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters (AWS4-HMAC-SHA256). Authorization=${authorization}`,
      'IncompleteSignatureException');
  }
  const [, accessKeyId, scopeDate, region, service, signedHeaderList, signature] = parts;
  const principalArn = roleFromLocalAccessKey(accessKeyId);
  if (!principalArn) {
    // Not a key the local runtime handed out, as AWS answers an access key it does not know.
    return refuse(403, 'The security token included in the request is invalid.', 'UnrecognizedClientException');
  }
  const amzDate = header(request.headers, 'x-amz-date');
  const signedAt = amzDate === undefined ? undefined : parseAmzDate(amzDate);
  if (signedAt === undefined) {
    return refuse(403, 'Authorization header requires existence of either a \'X-Amz-Date\' or a \'Date\' header.', 'IncompleteSignatureException');
  }
  if (Math.abs(now - signedAt) > SIGNATURE_VALIDITY_MS) {
    return refuse(403, `Signature expired: ${amzDate} is now earlier than ${formatAmzDate(now - SIGNATURE_VALIDITY_MS)} (${formatAmzDate(now)} - 5 min.)`,
      'InvalidSignatureException');
  }
  if (service !== 'execute-api' || region !== LOCAL_REGION || scopeDate !== amzDate!.slice(0, 8)) {
    return refuse(403, `Credential should be scoped to a valid region, service execute-api and the date of X-Amz-Date (given ${scopeDate}/${region}/${service})`,
      'InvalidSignatureException');
  }
  const payloadHash = header(request.headers, 'x-amz-content-sha256');
  if (payloadHash !== undefined && payloadHash !== createHash('sha256').update(request.body).digest('hex')) {
    return mismatch();
  }

  // Sign the same request again, with only the headers the caller signed.
  const signedHeaders = signedHeaderList.split(';');
  const headers: Record<string, string> = {};
  for (const name of signedHeaders) {
    const value = header(request.headers, name);
    if (value === undefined) {
      return mismatch();
    }
    headers[name] = value;
  }
  const target = new URL(request.url, 'http://local');
  const query: Record<string, string | string[]> = {};
  target.searchParams.forEach((value, key) => {
    const existing = query[key];
    query[key] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
  });
  const sessionToken = headers['x-amz-security-token'];
  const signer = new SignatureV4({
    service,
    region,
    credentials: { accessKeyId, secretAccessKey: LOCAL_CREDENTIALS.secretAccessKey, sessionToken },
    sha256: NodeSha256,
  });
  const expected = await signer.sign({
    method: request.method,
    protocol: 'http:',
    hostname: (headers.host ?? '').replace(/:\d+$/, ''),
    path: target.pathname,
    query,
    headers,
    body: request.body,
  }, { signingDate: new Date(signedAt) });
  const expectedAuthorization = String(expected.headers.authorization ?? expected.headers.Authorization ?? '');
  return expectedAuthorization.endsWith(`Signature=${signature}`) && expectedAuthorization.includes(`SignedHeaders=${signedHeaderList},`)
    ? { ok: true, principalArn }
    : mismatch();
}

function mismatch(): SignatureCheck {
  return refuse(403, 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. '
    + 'Consult the service documentation for details.', 'InvalidSignatureException');
}

function refuse(status: number, message: string, errorType: string): SignatureCheck {
  return { ok: false, status, message, errorType };
}

function header(headers: SignedRequest['headers'], name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(',') : value;
}

/** `20261207T093000Z` in epoch ms, or undefined. */
function parseAmzDate(text: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) : undefined;
}

function formatAmzDate(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}
