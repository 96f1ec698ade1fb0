/**
 * The serialized form of a `WebhookSignature`: what the construct puts in the callback processor's
 * environment (`WEBHOOK_SIGNATURE`, JSON) and the processor verifies with. Plain types only: shared
 * by the construct and the bundled handler, so no AWS SDK or aws-cdk-lib imports here.
 */

/** How the signature header is laid out. */
export type SignatureScheme =
  /** `<prefix><signature>`, one signature (GitHub style, and custom schemes). */
  | 'hmac'
  /** Standard Webhooks: space-separated `v1,<base64>` entries. */
  | 'standardWebhooks'
  /** Stripe: comma-separated `t=<timestamp>`, `v1=<hex>` (one or more) entries. */
  | 'stripe';

export interface SignatureSpec {
  readonly scheme: SignatureScheme;
  /** Header holding the signature (compared case-insensitively). */
  readonly signatureHeader: string;
  /** Encoding of the signature bytes in the header. */
  readonly encoding: 'hex' | 'base64';
  /** Text before the signature (`hmac` scheme), e.g. `sha256=`. */
  readonly prefix: string;
  /** Header holding the timestamp, epoch seconds (`hmac` and `standardWebhooks`). */
  readonly timestampHeader?: string;
  /** Header holding the message id (`{id}` in `signedPayload`). */
  readonly idHeader?: string;
  /** What is signed: `{body}` (the raw bytes), `{timestamp}`, `{id}` and literal text. */
  readonly signedPayload: string;
  /** Largest allowed difference between the timestamp and the processor's clock, seconds. */
  readonly toleranceSeconds: number;
  /** How the secret string becomes the HMAC key: its UTF-8 bytes, base64, or `whsec_` + base64. */
  readonly secretEncoding: 'utf8' | 'base64' | 'whsec';
  /**
   * Accept only the canonical spelling of a signature, as the scheme's official library does (it
   * compares the header text with the signature it computes): lowercase hex, padded canonical
   * base64. Set by the presets; a custom scheme also accepts uppercase hex and unpadded base64.
   */
  readonly canonicalSignature?: boolean;
}

/** Whether the spec checks a timestamp (and therefore refuses stale callbacks). */
export function specUsesTimestamp(spec: SignatureSpec): boolean {
  return spec.scheme === 'stripe' || spec.signedPayload.includes('{timestamp}');
}
