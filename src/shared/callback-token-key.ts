/**
 * A request's key in its capability callback URL (issue 15): with a signing secret per key
 * (`WebhookAuthentication.capabilityUrlPerKey`), the callback token is `<random>.<base64url(key)>`,
 * so the callback processor knows which key's secret to verify the signature with BEFORE it trusts
 * anything in the body. The whole token (key part included) must still equal the one stored with
 * the request, so a callback cannot borrow another key's secret by editing the key part: the
 * random part would not match. Plain code only (Node's Buffer): no AWS SDK or aws-cdk-lib imports.
 */
import { requestKeyProblem } from './request-key';

/** The callback token of a request with key `key`: the random token, `.`, the key in base64url. */
export function callbackTokenWithKey(randomToken: string, key: string): string {
  return `${randomToken}.${Buffer.from(key, 'utf8').toString('base64url')}`;
}

/** The key a callback token carries, or undefined (no key part, or not a valid key). */
export function keyOfCallbackToken(token: string): string | undefined {
  const dot = token.indexOf('.');
  if (dot < 0) {
    return undefined;
  }
  const encoded = token.slice(dot + 1);
  if (!/^[A-Za-z0-9_-]+$/.test(encoded)) {
    return undefined;
  }
  const key = Buffer.from(encoded, 'base64url').toString('utf8');
  return requestKeyProblem(key) === undefined ? key : undefined;
}
