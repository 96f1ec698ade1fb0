/**
 * Callback authentication in the callback processor: the capability token check and the vendor
 * signature check (HMAC-SHA256 over the raw body bytes). Pure logic on Node's crypto; the secret
 * comes from a `SecretSource` (Secrets Manager in the Lambda adapter, a fake in tests).
 *
 * `signCallback` is the vendor's side of the same schemes, for tests and the local vendor simulator.
 */
import { createHash, createHmac, timingSafeEqual } from 'crypto';
import { SignatureSpec, specUsesTimestamp } from './signature-spec';

/** Constant-time comparison of two tokens of any length (compares their SHA-256 digests). */
export function tokensEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** The callback's headers, decoded from the envelope (lowercase name -> value, the last one wins). */
export function decodeHeaders(encoded: Record<string, string> | undefined): Map<string, string> {
  const headers = new Map<string, string>();
  for (const [name, value] of Object.entries(encoded ?? {})) {
    if (typeof value !== 'string') continue;
    headers.set(Buffer.from(name, 'base64').toString('utf8').toLowerCase(), Buffer.from(value, 'base64').toString('utf8'));
  }
  return headers;
}

/** Outcome of a signature check: `undefined` when valid, else why not (never contains the secret). */
export type SignatureProblem = string | undefined;

/**
 * Checks the signature of one callback against one secret. Throws `UnusableSecretError` when the
 * secret gives no usable key (see `signingKey`).
 * @param body the raw body bytes
 * @param headers lowercase header name -> value
 * @param nowSeconds the processor's clock, epoch seconds
 */
export function verifySignature(
  spec: SignatureSpec, secret: string, body: Buffer, headers: Map<string, string>, nowSeconds: number,
): SignatureProblem {
  const header = headers.get(spec.signatureHeader.toLowerCase());
  if (header === undefined || header.trim() === '') {
    return `no ${spec.signatureHeader} header`;
  }
  const parsed = parseSignatureHeader(spec, header, headers);
  if (typeof parsed === 'string') {
    return parsed;
  }
  let timestamp = parsed.timestamp;
  if (specUsesTimestamp(spec)) {
    if (timestamp === undefined || !/^\d{1,12}$/.test(timestamp)) {
      return `no valid timestamp (epoch seconds) ${spec.scheme === 'stripe' ? `in ${spec.signatureHeader}` : `in ${spec.timestampHeader}`}`;
    }
    const skew = Math.abs(nowSeconds - Number(timestamp));
    if (skew > spec.toleranceSeconds) {
      return `timestamp ${timestamp} is ${skew} s away from now, over the tolerance of ${spec.toleranceSeconds} s (stale or replayed)`;
    }
  } else {
    timestamp = '';
  }
  const id = spec.idHeader ? headers.get(spec.idHeader.toLowerCase()) : '';
  if (id === undefined) {
    return `no ${spec.idHeader} header`;
  }
  const expected = hmac(spec, secret, signedContent(spec.signedPayload, body, timestamp, id));
  for (const candidate of parsed.signatures) {
    const bytes = decodeSignature(spec.encoding, candidate, spec.canonicalSignature ?? false);
    if (bytes && bytes.length === expected.length && timingSafeEqual(bytes, expected)) {
      return undefined;
    }
  }
  return `${spec.signatureHeader} does not match the body (${parsed.signatures.length} signature(s) checked)`;
}

/**
 * Signs a callback as a vendor using `spec` would: the headers to send with `body`.
 * For tests and the local vendor simulator.
 */
export function signCallback(spec: SignatureSpec, secret: string, body: Buffer | string, timestampSeconds: number, id = 'msg_local'): Record<string, string> {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const timestamp = String(timestampSeconds);
  const signature = hmac(spec, secret, signedContent(spec.signedPayload, bytes, specUsesTimestamp(spec) ? timestamp : '', spec.idHeader ? id : '')).toString(spec.encoding);
  const headers: Record<string, string> = {};
  switch (spec.scheme) {
    case 'standardWebhooks':
      headers[spec.signatureHeader] = `v1,${signature}`;
      break;
    case 'stripe':
      headers[spec.signatureHeader] = `t=${timestamp},v1=${signature}`;
      break;
    default:
      headers[spec.signatureHeader] = `${spec.prefix}${signature}`;
  }
  if (spec.timestampHeader) headers[spec.timestampHeader] = timestamp;
  if (spec.idHeader) headers[spec.idHeader] = id;
  return headers;
}

interface ParsedHeader {
  readonly signatures: string[];
  readonly timestamp?: string;
}

function parseSignatureHeader(spec: SignatureSpec, header: string, headers: Map<string, string>): ParsedHeader | string {
  const timestampFromHeader = spec.timestampHeader ? headers.get(spec.timestampHeader.toLowerCase())?.trim() : undefined;
  switch (spec.scheme) {
    case 'standardWebhooks': {
      // `v1,<base64> v1,<base64>`: several signatures during a key rotation; other versions ignored.
      // Split on single spaces, as the official library does: any other separator spoils the entry.
      const signatures = header.trim().split(' ').filter((e) => e.startsWith('v1,')).map((e) => e.slice(3));
      return signatures.length > 0 ? { signatures, timestamp: timestampFromHeader } : `${spec.signatureHeader} has no v1 signature`;
    }
    case 'stripe': {
      // `t=<ts>,v1=<hex>,v1=<hex>,v0=...`: only v1 (HMAC-SHA256) counts. Entries are not trimmed,
      // as in Stripe's library: `t=1, v1=...` has no v1 entry.
      const entries = header.trim().split(',');
      const timestamps = entries.filter((e) => e.startsWith('t=')).map((e) => e.slice(2));
      const signatures = entries.filter((e) => e.startsWith('v1=')).map((e) => e.slice(3));
      if (signatures.length === 0) return `${spec.signatureHeader} has no v1 signature`;
      if (timestamps.length !== 1) return `${spec.signatureHeader} must have exactly one t= timestamp`;
      return { signatures, timestamp: timestamps[0] };
    }
    default: {
      const value = header.trim();
      if (!value.startsWith(spec.prefix)) {
        return `${spec.signatureHeader} does not start with '${spec.prefix}'`;
      }
      return { signatures: [value.slice(spec.prefix.length)], timestamp: timestampFromHeader };
    }
  }
}

function signedContent(template: string, body: Buffer, timestamp: string, id: string): Buffer {
  const [before, after] = template.split('{body}');
  const text = (t: string) => Buffer.from(t.replace(/\{timestamp\}/g, timestamp).replace(/\{id\}/g, id), 'utf8');
  return Buffer.concat([text(before), body, text(after ?? '')]);
}

function hmac(spec: SignatureSpec, secret: string, content: Buffer): Buffer {
  const key = signingKey(spec, secret);
  if ('problem' in key) {
    throw new UnusableSecretError(key.problem);
  }
  return createHmac('sha256', key.key).update(content).digest();
}

/** Keys shorter than this many bytes are used, with a warning (RFC 2104 asks for at least the hash's output, 32 bytes for SHA-256). */
export const MIN_SIGNING_KEY_BYTES = 16;

/**
 * Thrown by `verifySignature` / `signCallback` when the secret gives no usable HMAC key. Not the
 * callback's fault: the processor parks the callback with reason `SIGNING_SECRET_UNUSABLE`.
 */
export class UnusableSecretError extends Error {
  constructor(readonly problem: string) {
    super(`The signing secret is unusable: ${problem}`);
    this.name = 'UnusableSecretError';
  }
}

/** The HMAC key of a secret: the key (with `short` when under MIN_SIGNING_KEY_BYTES), or why there is none. */
export type SigningKey = { readonly key: Buffer; readonly short: boolean } | { readonly problem: string };

/**
 * The HMAC key of a secret string, decoded strictly. An empty key would let anyone sign callbacks
 * (HMAC with an empty key is public knowledge), so a secret that is blank, only the `whsec_` prefix,
 * or not canonical base64 where base64 is expected gives no key, never an empty or partial one
 * (Node's base64 decoder silently skips invalid characters). The problem never contains the secret.
 */
export function signingKey(spec: SignatureSpec, secret: string): SigningKey {
  if (secret.trim() === '') {
    return { problem: 'the secret is empty or only whitespace' };
  }
  let key: Buffer;
  if (spec.secretEncoding === 'utf8') {
    // Used as is, as the schemes' libraries do (Stripe, GitHub): the secret string's UTF-8 bytes.
    if (secret.trim() === 'whsec_') {
      return { problem: 'the secret is only the whsec_ prefix, with no key after it' };
    }
    key = Buffer.from(secret, 'utf8');
  } else {
    const trimmed = secret.trim();
    const text = spec.secretEncoding === 'whsec' && trimmed.startsWith('whsec_') ? trimmed.slice(6) : trimmed;
    const decoded = decodeBase64Strictly(text);
    if (decoded === undefined) {
      return { problem: `the secret is not ${spec.secretEncoding === 'whsec' ? 'whsec_ followed by ' : ''}canonical, padded base64 (${text.length} characters after trimming)` };
    }
    if (decoded.length === 0) {
      return { problem: `the secret decodes to an empty key${spec.secretEncoding === 'whsec' ? ' (nothing after whsec_)' : ''}` };
    }
    key = decoded;
  }
  return { key, short: key.length < MIN_SIGNING_KEY_BYTES };
}

/** The bytes of canonical, padded base64 text; undefined for anything else (bad characters, padding, trailing bits). */
function decodeBase64Strictly(text: string): Buffer | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    return undefined;
  }
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}

/**
 * The bytes of an encoded signature, or undefined when it is not valid in that encoding. With
 * `canonical`, only the spelling the scheme's official library produces and compares against is
 * accepted (lowercase hex, padded canonical base64); otherwise also uppercase hex and unpadded base64.
 */
function decodeSignature(encoding: 'hex' | 'base64', text: string, canonical: boolean): Buffer | undefined {
  if (encoding === 'hex') {
    return (canonical ? /^(?:[0-9a-f]{2})+$/ : /^(?:[0-9a-fA-F]{2})+$/).test(text) ? Buffer.from(text, 'hex') : undefined;
  }
  const padded = canonical ? text : text.padEnd(text.length + ((4 - (text.length % 4)) % 4), '=');
  return text.length > 0 ? decodeBase64Strictly(padded) : undefined;
}

/** Where the processor gets the signing secret. */
export interface SecretSource {
  /** The current secret string. */
  read(): Promise<string>;
}

/**
 * The signing secret, cached for `ttlMs` (default 5 minutes). `refresh()` reads it again, at most
 * once per `minRefreshMs` (default 30 s), so a rotated secret is picked up on the first mismatch
 * while a flood of forged callbacks cannot turn into a flood of Secrets Manager calls.
 */
export class CachedSecret {
  private value?: string;
  private readAtMs = -Infinity;

  constructor(
    private readonly source: SecretSource,
    private readonly now: () => number = Date.now,
    private readonly ttlMs = 5 * 60_000,
    private readonly minRefreshMs = 30_000,
  ) {}

  /** The cached secret, read when absent or older than the TTL. */
  public async get(): Promise<string> {
    if (this.value === undefined || this.now() - this.readAtMs >= this.ttlMs) {
      await this.load();
    }
    return this.value!;
  }

  /** Reads the secret again unless it was read very recently; returns whether it changed. */
  public async refresh(): Promise<boolean> {
    if (this.now() - this.readAtMs < this.minRefreshMs) {
      return false;
    }
    const before = this.value;
    await this.load();
    return this.value !== before;
  }

  private async load(): Promise<void> {
    this.value = await this.source.read();
    this.readAtMs = this.now();
  }
}
