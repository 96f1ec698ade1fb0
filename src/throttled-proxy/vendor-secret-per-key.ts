/**
 * The credential function's per-key mode (`VendorCredentials.fromSecretHeaderPerKey`, issue 15):
 * the request's key names its secret (`vendor/{key}`), read with GetSecretValue and cached in
 * memory per key for a TTL, so a busy key costs one secret read per TTL and execution environment
 * instead of one per call.
 *
 * Neither a secret nor any part of it ever appears in an error message or a log line (errors end
 * up in Step Functions causes and in the request dead-letter queue); the secret's name does.
 */
// Types only: vendor-token.lambda.ts wires the SDK (this module is bundled, not imported by the construct).
import type { SecretValue } from './vendor-secret';
import { credentialFromJsonSecret, secretStringOf, VendorCredentialReadError, VendorCredentialUnusableError } from './vendor-secret';
import { VENDOR_CREDENTIAL_NOT_FOUND } from '../shared/messages';
import { requestKeyProblem } from '../shared/request-key';

/** Environment variables of the per-key mode (the construct sets them). */
export const VendorKeySecretEnv = {
  /** The secret name pattern, `{key}` where the key goes. Its presence selects the per-key mode. */
  SECRET_NAME_PATTERN: 'SECRET_NAME_PATTERN',
  /** The JSON field that holds the credential; absent: the whole secret string. */
  SECRET_FIELD: 'SECRET_FIELD',
  /** How long a key's credential stays cached, in seconds (0: no cache). */
  CACHE_TTL_SECONDS: 'CACHE_TTL_SECONDS',
} as const;

/** Most keys one execution environment keeps cached; the least recently read goes first. */
export const MAX_CACHED_KEYS = 1000;

/** The key has no secret (GetSecretValue: ResourceNotFoundException), or cannot name one. */
export class VendorCredentialNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = VENDOR_CREDENTIAL_NOT_FOUND;
  }
}

export interface PerKeySecretConfig {
  readonly secretNamePattern: string;
  readonly field?: string;
  readonly cacheTtlMs: number;
}

/** Reads the per-key configuration, or undefined when the function is not in the per-key mode. */
export function loadPerKeySecretConfig(env: Record<string, string | undefined>): PerKeySecretConfig | undefined {
  const pattern = env[VendorKeySecretEnv.SECRET_NAME_PATTERN];
  if (!pattern) {
    return undefined;
  }
  if (pattern.split('{key}').length !== 2) {
    throw new Error(`Environment variable ${VendorKeySecretEnv.SECRET_NAME_PATTERN} must hold {key} once, got ${JSON.stringify(pattern)}`);
  }
  const ttl = Number(env[VendorKeySecretEnv.CACHE_TTL_SECONDS] ?? '300');
  if (!Number.isFinite(ttl) || ttl < 0) {
    throw new Error(`Environment variable ${VendorKeySecretEnv.CACHE_TTL_SECONDS} must be a number of seconds >= 0, got ${JSON.stringify(env[VendorKeySecretEnv.CACHE_TTL_SECONDS])}`);
  }
  const field = env[VendorKeySecretEnv.SECRET_FIELD];
  return { secretNamePattern: pattern, cacheTtlMs: ttl * 1000, ...(field ? { field } : {}) };
}

/** The secret name of `key`, or undefined when the key holds characters no secret name may hold. */
export function secretNameOf(pattern: string, key: string): string | undefined {
  // CreateSecret's Name: letters, digits and /_+=.@-
  // https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html
  return /^[A-Za-z0-9/_+=.@-]+$/.test(key) ? pattern.replace('{key}', key) : undefined;
}

/**
 * Credentials per key, cached. One instance per execution environment (module scope in the
 * handler): Lambda runs one invocation at a time per environment, so no two reads of one key race.
 */
export class PerKeyCredentials {
  private readonly cache = new Map<string, { readonly credential: string; readonly expiresAtMs: number }>();

  constructor(
    private readonly config: PerKeySecretConfig,
    private readonly getSecretValue: (secretId: string) => Promise<SecretValue>,
    private readonly now: () => number,
  ) {}

  /** How many keys are cached (for tests and logs). */
  public get size(): number {
    return this.cache.size;
  }

  /** The credential of `key`: from the cache while fresh, else read from the key's secret. */
  public async credentialFor(key: unknown): Promise<{ readonly credential: string; readonly cached: boolean }> {
    const problem = requestKeyProblem(key);
    if (problem !== undefined) {
      // The dispatcher refuses such requests first (InvalidRequestKey); a message put on the queue
      // by other means still gets no credential, and is parked rather than retried.
      throw new VendorCredentialNotFoundError(`No vendor credential: ${problem}`);
    }
    const k = key as string;
    const hit = this.cache.get(k);
    if (hit && this.now() < hit.expiresAtMs) {
      // Most recently read last: the oldest entry is the first dropped when the cache is full.
      this.cache.delete(k);
      this.cache.set(k, hit);
      return { credential: hit.credential, cached: true };
    }
    this.cache.delete(k);
    const name = secretNameOf(this.config.secretNamePattern, k);
    if (name === undefined) {
      throw new VendorCredentialNotFoundError(`No vendor credential for key ${JSON.stringify(k)}: it holds characters a secret name cannot (only letters, digits and /_+=.@-), so no secret '${this.config.secretNamePattern}' exists for it`);
    }
    let output: SecretValue;
    try {
      output = await this.getSecretValue(name);
    } catch (e) {
      const error = e as Error;
      if (error.name === 'ResourceNotFoundException') {
        throw new VendorCredentialNotFoundError(`No vendor credential for key ${JSON.stringify(k)}: the secret '${name}' does not exist. Create it (the credential as its text${this.config.field ? `, or a JSON object with the field "${this.config.field}"` : ''}), then redrive the request dead-letter queue`);
      }
      throw new VendorCredentialReadError(`Could not read the vendor secret '${name}' of key ${JSON.stringify(k)}: ${error.name}: ${error.message}`);
    }
    const credential = this.config.field
      ? credentialFromJsonSecret(secretStringOf(output, name, `a JSON object with the field "${this.config.field}"`), this.config.field, name)
      : plainCredential(secretStringOf(output, name, 'the credential as text'), name);
    if (this.config.cacheTtlMs > 0) {
      if (this.cache.size >= MAX_CACHED_KEYS) {
        this.cache.delete(this.cache.keys().next().value as string);
      }
      this.cache.set(k, { credential, expiresAtMs: this.now() + this.config.cacheTtlMs });
    }
    return { credential, cached: false };
  }
}

/** A plain-text secret as a header value: not empty, no line break. */
function plainCredential(text: string, name: string): string {
  if (text === '' || /[\r\n]/.test(text)) {
    throw new VendorCredentialUnusableError(`The vendor secret ${name} is ${text === '' ? 'empty' : 'text with a line break, which a header value cannot hold'}: store the credential as one line of text`);
  }
  return text;
}
