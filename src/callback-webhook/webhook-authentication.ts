import { Duration } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { SignatureSpec } from './signature-spec';
import { validateDuration, validateHeaderName, validateSecretNamePattern } from '../shared/validation';

/** How a signature is written in its header. */
export enum SignatureEncoding {
  /** Lowercase or uppercase hexadecimal. */
  HEX = 'hex',
  /** Standard base64 (canonical, with or without `=` padding; the presets require the padding). */
  BASE64 = 'base64',
}

/** How the secret's string becomes the HMAC key. */
export enum SecretEncoding {
  /** The UTF-8 bytes of the secret string (GitHub, Stripe). */
  UTF8 = 'utf8',
  /** The secret string is base64 of the key. */
  BASE64 = 'base64',
}

/**
 * A custom HMAC-SHA256 signature scheme.
 */
export interface HmacSha256SignatureOptions {
  /** Secrets Manager secret holding the signing secret (a plain string, not JSON). */
  readonly secret: secretsmanager.ISecret;

  /** Header holding the signature, e.g. `X-Signature`. */
  readonly signatureHeader: string;

  /**
   * How the signature bytes are written in the header.
   *
   * @default SignatureEncoding.HEX
   */
  readonly encoding?: SignatureEncoding;

  /**
   * Text in front of the signature in the header, e.g. `sha256=`.
   *
   * @default '' (no prefix)
   */
  readonly prefix?: string;

  /**
   * Header holding the time the vendor signed the callback, epoch seconds. With it, callbacks
   * whose timestamp is further than `tolerance` from now are refused (replay protection).
   *
   * @default - no timestamp: replays are only stopped by the capability URL and duplicate handling
   */
  readonly timestampHeader?: string;

  /**
   * Header holding a message id, for `{id}` in `signedPayload`.
   *
   * @default - no message id
   */
  readonly idHeader?: string;

  /**
   * What the vendor signs: `{body}` (the raw body bytes, exactly once), and optionally
   * `{timestamp}`, `{id}` and literal text, e.g. `{timestamp}.{body}`.
   *
   * @default '{timestamp}.{body}' with a timestampHeader, else '{body}'
   */
  readonly signedPayload?: string;

  /**
   * Largest difference between the signed timestamp and the processor's clock.
   * Between 1 second and 1 hour.
   *
   * @default Duration.minutes(5)
   */
  readonly tolerance?: Duration;

  /**
   * How the secret string becomes the HMAC key.
   *
   * @default SecretEncoding.UTF8
   */
  readonly secretEncoding?: SecretEncoding;
}

/** Options of the preset signature schemes. */
export interface SignaturePresetOptions {
  /**
   * Largest difference between the signed timestamp and the processor's clock.
   * Between 1 second and 1 hour.
   *
   * @default Duration.minutes(5)
   */
  readonly tolerance?: Duration;
}

const DEFAULT_TOLERANCE = Duration.minutes(5);

/**
 * Verification of the vendor's HMAC-SHA256 signature over the raw callback body, with the
 * signing secret in Secrets Manager. The callback processor reads the secret (cached for 5
 * minutes, read again once when a signature does not match, so a rotated secret is picked up).
 */
export class WebhookSignature {
  /**
   * Standard Webhooks (https://www.standardwebhooks.com): headers `webhook-id`,
   * `webhook-timestamp` and `webhook-signature` (space-separated `v1,<base64>` entries), signed
   * content `<id>.<timestamp>.<body>`, secret `whsec_<base64 key>`.
   */
  public static standardWebhooks(secret: secretsmanager.ISecret, options: SignaturePresetOptions = {}): WebhookSignature {
    return new WebhookSignature(secret, {
      scheme: 'standardWebhooks',
      signatureHeader: 'webhook-signature',
      encoding: 'base64',
      prefix: '',
      timestampHeader: 'webhook-timestamp',
      idHeader: 'webhook-id',
      signedPayload: '{id}.{timestamp}.{body}',
      toleranceSeconds: toleranceSeconds(options.tolerance),
      secretEncoding: 'whsec',
      canonicalSignature: true,
    });
  }

  /**
   * Stripe style: header `Stripe-Signature: t=<timestamp>,v1=<hex>[,v1=<hex>...]`, signed content
   * `<timestamp>.<body>`, the secret string (`whsec_...`) used as the key as is.
   */
  public static stripe(secret: secretsmanager.ISecret, options: SignaturePresetOptions = {}): WebhookSignature {
    return new WebhookSignature(secret, {
      scheme: 'stripe',
      signatureHeader: 'Stripe-Signature',
      encoding: 'hex',
      prefix: '',
      signedPayload: '{timestamp}.{body}',
      toleranceSeconds: toleranceSeconds(options.tolerance),
      secretEncoding: 'utf8',
      canonicalSignature: true,
    });
  }

  /**
   * GitHub style: header `X-Hub-Signature-256: sha256=<hex>` over the body alone. There is no
   * timestamp, so a captured callback can be replayed: replay protection then relies on the
   * capability URL's secrecy and on duplicate callbacks being ignored.
   */
  public static github(secret: secretsmanager.ISecret): WebhookSignature {
    return new WebhookSignature(secret, {
      scheme: 'hmac',
      signatureHeader: 'X-Hub-Signature-256',
      encoding: 'hex',
      prefix: 'sha256=',
      signedPayload: '{body}',
      toleranceSeconds: 0,
      secretEncoding: 'utf8',
      canonicalSignature: true,
    });
  }

  /** A custom HMAC-SHA256 scheme. */
  public static hmacSha256(options: HmacSha256SignatureOptions): WebhookSignature {
    validateHeaderName(options.signatureHeader, 'signatureHeader');
    if (options.timestampHeader !== undefined) {
      validateHeaderName(options.timestampHeader, 'timestampHeader');
    }
    if (options.idHeader !== undefined) {
      validateHeaderName(options.idHeader, 'idHeader');
    }
    const signedPayload = options.signedPayload ?? (options.timestampHeader ? '{timestamp}.{body}' : '{body}');
    if (signedPayload.split('{body}').length !== 2) {
      throw new Error(`signedPayload must contain {body} exactly once (given '${signedPayload}')`);
    }
    const unknown = signedPayload.match(/\{[^}]*\}/g)?.filter((p) => !['{body}', '{timestamp}', '{id}'].includes(p)) ?? [];
    if (unknown.length > 0) {
      throw new Error(`signedPayload may only use {body}, {timestamp} and {id} (given '${signedPayload}', unknown ${unknown.join(', ')})`);
    }
    if (signedPayload.includes('{timestamp}') !== (options.timestampHeader !== undefined)) {
      throw new Error(options.timestampHeader === undefined
        ? `signedPayload uses {timestamp} (given '${signedPayload}'): set timestampHeader`
        : `timestampHeader '${options.timestampHeader}' is set but signedPayload does not use {timestamp} (given '${signedPayload}'): an unsigned timestamp protects nothing`);
    }
    if (signedPayload.includes('{id}') && options.idHeader === undefined) {
      throw new Error(`signedPayload uses {id} (given '${signedPayload}'): set idHeader`);
    }
    const prefix = options.prefix ?? '';
    if (/[\r\n]/.test(prefix)) {
      throw new Error('prefix must not contain line breaks');
    }
    return new WebhookSignature(options.secret, {
      scheme: 'hmac',
      signatureHeader: options.signatureHeader,
      encoding: options.encoding ?? SignatureEncoding.HEX,
      prefix,
      timestampHeader: options.timestampHeader,
      idHeader: options.idHeader,
      signedPayload,
      toleranceSeconds: options.timestampHeader ? toleranceSeconds(options.tolerance) : 0,
      secretEncoding: options.secretEncoding ?? SecretEncoding.UTF8,
    });
  }

  /** The secret holding the signing secret. */
  public readonly secret: secretsmanager.ISecret;
  /** @internal the processor's configuration */
  public readonly _spec: SignatureSpec;

  private constructor(secret: secretsmanager.ISecret, spec: SignatureSpec) {
    this.secret = secret;
    this._spec = spec;
  }
}

/**
 * How the callback webhook authenticates callbacks.
 */
export class WebhookAuthentication {
  /**
   * The secure default: each request gets its own callback URL, `<webhook url>/<token>`, the
   * token being 256 random bits stored with the request. A callback is accepted only on its
   * request's URL. With `signature`, the vendor's signature is checked too.
   */
  public static capabilityUrl(signature?: WebhookSignature): WebhookAuthentication {
    return new WebhookAuthentication(true, signature);
  }

  /**
   * Capability URLs and a signing secret per request key (issue 15: each vendor account signs its
   * own callbacks). A keyed request's capability token carries its key
   * (`<webhook url>/<random>.<base64url(key)>`), so the processor verifies the callback with that
   * key's secret, named by `signingSecretNamePattern` with `{key}` where the key goes (e.g.
   * `'vendor-webhook/{key}'`), before it trusts anything in the body; the token must still be the
   * request's, so a callback cannot pick another key's secret. A callback of a request without a
   * key is verified with `signature`'s own secret. A key without a signing secret has its
   * callbacks refused (parked as `CallbackRejected`). The processor caches each key's secret for
   * 5 minutes and may read every secret the pattern matches.
   */
  public static capabilityUrlPerKey(signature: WebhookSignature, signingSecretNamePattern: string): WebhookAuthentication {
    validateSecretNamePattern(signingSecretNamePattern, 'signingSecretNamePattern');
    return new WebhookAuthentication(true, signature, signingSecretNamePattern);
  }

  /**
   * The vendor's signature only, on the bare webhook URL: for vendors configured with one
   * webhook URL out of band (`CallbackUrlDelivery.none()`).
   */
  public static signatureOnly(signature: WebhookSignature): WebhookAuthentication {
    return new WebhookAuthentication(false, signature);
  }

  /**
   * No authentication: anyone who learns or guesses a job id can resume (or fail) the waiting
   * workflow with a body of their choice. Adds a synth-time warning.
   */
  public static none(): WebhookAuthentication {
    return new WebhookAuthentication(false, undefined);
  }

  /** Whether each request gets its own capability URL. */
  public readonly capabilityUrls: boolean;
  /** The vendor signature checked, if any. */
  public readonly signature?: WebhookSignature;
  /** The name pattern of each key's signing secret (`capabilityUrlPerKey`), if any. */
  public readonly signingSecretNamePattern?: string;

  private constructor(capabilityUrls: boolean, signature?: WebhookSignature, signingSecretNamePattern?: string) {
    this.capabilityUrls = capabilityUrls;
    this.signature = signature;
    this.signingSecretNamePattern = signingSecretNamePattern;
  }
}

function toleranceSeconds(tolerance: Duration | undefined): number {
  validateDuration('tolerance', tolerance, Duration.seconds(1), Duration.hours(1));
  return (tolerance ?? DEFAULT_TOLERANCE).toSeconds();
}
