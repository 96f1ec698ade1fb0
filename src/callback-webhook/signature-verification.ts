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
 * Checks the signature of one callback against one secret.
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
    const bytes = decodeSignature(spec.encoding, candidate);
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
      const signatures = header.trim().split(/\s+/).filter((e) => e.startsWith('v1,')).map((e) => e.slice(3));
      return signatures.length > 0 ? { signatures, timestamp: timestampFromHeader } : `${spec.signatureHeader} has no v1 signature`;
    }
    case 'stripe': {
      // `t=<ts>,v1=<hex>,v1=<hex>,v0=...`: only v1 (HMAC-SHA256) counts.
      const entries = header.split(',').map((e) => e.trim());
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
  return createHmac('sha256', secretKey(spec, secret)).update(content).digest();
}

/** The HMAC key of a secret string. */
export function secretKey(spec: SignatureSpec, secret: string): Buffer {
  const trimmed = secret.trim();
  switch (spec.secretEncoding) {
    case 'whsec':
      return Buffer.from(trimmed.startsWith('whsec_') ? trimmed.slice(6) : trimmed, 'base64');
    case 'base64':
      return Buffer.from(trimmed, 'base64');
    default:
      return Buffer.from(secret, 'utf8');
  }
}

/** The bytes of an encoded signature, or undefined when it is not valid in that encoding. */
function decodeSignature(encoding: 'hex' | 'base64', text: string): Buffer | undefined {
  if (encoding === 'hex') {
    return /^(?:[0-9a-fA-F]{2})+$/.test(text) ? Buffer.from(text, 'hex') : undefined;
  }
  return /^[A-Za-z0-9+/]+={0,2}$/.test(text) ? Buffer.from(text, 'base64') : undefined;
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
