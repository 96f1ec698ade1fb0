import { Duration, Token } from 'aws-cdk-lib';

/**
 * Synth-time checks shared by the constructs. Each error quotes what was given and says how to
 * fix it; values that are still tokens (resolved at deploy time) are skipped.
 */

export function validateRequestsPerSecond(requestsPerSecond: number): void {
  if (Token.isUnresolved(requestsPerSecond)) {
    throw new Error('requestsPerSecond must be a plain number known at synth time (given a token): every layer is derived from it');
  }
  if (!Number.isFinite(requestsPerSecond) || requestsPerSecond <= 0 || requestsPerSecond > 10_000) {
    throw new Error(`requestsPerSecond must be above 0 and at most 10000 (given ${requestsPerSecond}): it is the vendor contract in requests per second`);
  }
}

export function validateVendorUrl(vendorUrl: string): void {
  if (Token.isUnresolved(vendorUrl)) {
    return;
  }
  let url: URL;
  try {
    url = new URL(vendorUrl);
  } catch {
    throw new Error(`vendorUrl must be an absolute https URL such as https://api.example.com/v1/jobs (given '${vendorUrl}')`);
  }
  if (url.protocol !== 'https:') {
    throw new Error(`vendorUrl must use https so requests and credentials are encrypted in transit (given '${vendorUrl}')`);
  }
  // URL reports a bare trailing '?' or '#' as empty: look at the text too.
  if (url.search || url.hash || vendorUrl.includes('?') || vendorUrl.includes('#')) {
    throw new Error(`vendorUrl must not carry a query string or fragment (given '${vendorUrl}'): the proxy appends paths to it`);
  }
  if (vendorUrl.endsWith('/')) {
    throw new Error(`vendorUrl must not end with '/' (given '${vendorUrl}'): the proxy appends '/<path>' to it`);
  }
}

export function validateWholeNumber(name: string, value: number | undefined, min: number, max: number, hint = ''): void {
  if (value === undefined || Token.isUnresolved(value)) {
    return;
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be a whole number between ${min} and ${max} (given ${value})${hint ? `: ${hint}` : ''}`);
  }
}

export function validateDuration(name: string, value: Duration | undefined, min: Duration, max: Duration, hint = ''): void {
  if (value === undefined || value.isUnresolved()) {
    return;
  }
  const ms = value.toMilliseconds();
  if (ms < min.toMilliseconds() || ms > max.toMilliseconds()) {
    throw new Error(`${name} must be between ${min.toHumanString()} and ${max.toHumanString()} (given ${value.toHumanString()})${hint ? `: ${hint}` : ''}`);
  }
}

/** An HTTP header name (an RFC 9110 token). */
export function validateHeaderName(headerName: string, name = 'headerName'): void {
  if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(headerName)) {
    throw new Error(`${name} must be an HTTP header name (letters, digits and !#$%&'*+.^_\`|~-), given '${headerName}'`);
  }
}

/**
 * A secret name pattern: `{key}` once, the rest what a secret name may hold (letters, digits and
 * `/_+=.@-`, CreateSecret's `Name`:
 * https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html).
 */
export function validateSecretNamePattern(pattern: string, what = 'secretNamePattern'): void {
  if (Token.isUnresolved(pattern)) {
    throw new Error(`${what} must be a literal such as 'vendor/{key}', not a token: it becomes the IAM grant's resource`);
  }
  const parts = pattern.split('{key}');
  if (parts.length !== 2) {
    throw new Error(`${what} must hold {key} exactly once, where the request's key goes, e.g. 'vendor/{key}' (given '${pattern}')`);
  }
  const rest = parts.join('');
  if (!/^[A-Za-z0-9/_+=.@-]*$/.test(rest)) {
    throw new Error(`${what} may hold only letters, digits and /_+=.@- besides {key} (what a secret name allows; given '${pattern}')`);
  }
  if (pattern.length - '{key}'.length > 384) {
    throw new Error(`${what} is too long: a secret name has at most 512 characters and the key up to 128 (given ${pattern.length} characters)`);
  }
}
