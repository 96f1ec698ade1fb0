/**
 * OAuth 2.0 client credentials grant (RFC 6749 section 4.4) for the vendor token function: reads
 * the client id and secret from Secrets Manager, exchanges them for an access token at the token
 * endpoint and caches both in memory, so most invocations answer without any network call.
 *
 * Everything this module needs from the outside (Secrets Manager client, fetch, clock) is passed
 * in, so tests drive it with mocks and fake time. `vendor-token.lambda.ts` is the thin adapter.
 *
 * Neither the client secret nor an access token ever appears in an error message or a log line:
 * errors end up in Step Functions error causes and in the request dead-letter queue.
 */
// This module is bundled into the token Lambda only; the construct library never imports it, so
// the SDK stays a devDependency (bundled by esbuild).
import { GetSecretValueCommand, type GetSecretValueCommandOutput, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { secretJsonObject, secretStringOf, VendorCredentialUnusableError } from './vendor-secret';

/** Environment variables of the token function (the construct sets them). */
export const VendorTokenEnv = {
  SECRET_ARN: 'SECRET_ARN',
  TOKEN_URL: 'TOKEN_URL',
  SCOPE: 'SCOPE',
  AUDIENCE: 'AUDIENCE',
  CLIENT_AUTHENTICATION: 'CLIENT_AUTHENTICATION',
} as const;

/** How the client authenticates to the token endpoint (the values of `OAuthClientAuthentication`). */
export type ClientAuthentication = 'BASIC' | 'BODY';

export interface VendorTokenConfig {
  /** The secret holding `{"clientId": "...", "clientSecret": "..."}`. */
  readonly secretArn: string;
  readonly tokenUrl: string;
  readonly scope?: string;
  readonly audience?: string;
  readonly clientAuthentication: ClientAuthentication;
}

/** What the function returns to the dispatch workflow. */
export interface VendorTokenResult {
  /** `<token_type> <access_token>`, e.g. `Bearer eyJ...`: the header value the vendor expects. */
  readonly authorization: string;
}

/** The subset of `fetch` used. */
export type FetchFunction = (url: string, init: RequestInit) => Promise<Response>;

export interface VendorTokenDeps {
  readonly secretsManager: SecretsManagerClient;
  readonly fetch: FetchFunction;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** Gives up on one token request after this long. @default 4000 */
  readonly requestTimeoutMs?: number;
  /** Called with a message and attributes that never include a secret or a token. */
  readonly log?: (message: string, attributes: Record<string, unknown>) => void;
}

/** What the OAuth client secret must hold. */
const CLIENT_SECRET_SHAPE = '{"clientId": "...", "clientSecret": "..."}';

/** Lifetime assumed when the token response has no (valid) `expires_in`, in seconds. */
export const DEFAULT_EXPIRES_IN_SECONDS = 3600;
/** A cached token is replaced this long before it expires, in seconds (at most half its lifetime). */
export const REFRESH_MARGIN_SECONDS = 60;
/** How much of an error body goes into an error message. */
export const MAX_ERROR_BODY_CHARS = 300;

/** A failure to get an access token. Step Functions sees it as the error `VendorTokenError`. */
export class VendorTokenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VendorTokenError';
  }
}

/** Reads the function's configuration; a missing or invalid variable fails at cold start, named. */
export function loadConfig(env: Record<string, string | undefined>): VendorTokenConfig {
  const required = (name: string): string => {
    const value = env[name];
    if (!value) {
      throw new Error(`Environment variable ${name} is not set`);
    }
    return value;
  };
  const tokenUrl = required(VendorTokenEnv.TOKEN_URL);
  let url: URL;
  try {
    url = new URL(tokenUrl);
  } catch {
    throw new Error(`Environment variable ${VendorTokenEnv.TOKEN_URL} must be an absolute https URL (given '${tokenUrl}')`);
  }
  if (url.protocol !== 'https:') {
    throw new Error(`Environment variable ${VendorTokenEnv.TOKEN_URL} must be an https URL (given '${tokenUrl}')`);
  }
  const clientAuthentication = env[VendorTokenEnv.CLIENT_AUTHENTICATION] || 'BASIC';
  if (clientAuthentication !== 'BASIC' && clientAuthentication !== 'BODY') {
    throw new Error(`Environment variable ${VendorTokenEnv.CLIENT_AUTHENTICATION} must be BASIC or BODY (given '${clientAuthentication}')`);
  }
  return {
    secretArn: required(VendorTokenEnv.SECRET_ARN),
    tokenUrl,
    scope: env[VendorTokenEnv.SCOPE] || undefined,
    audience: env[VendorTokenEnv.AUDIENCE] || undefined,
    clientAuthentication,
  };
}

export interface ClientCredentials {
  readonly clientId: string;
  readonly clientSecret: string;
}

interface CachedToken {
  readonly authorization: string;
  /** When to stop using it (milliseconds since the epoch). */
  readonly refreshAt: number;
}

interface TokenResponse {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

/**
 * Hands out `<token_type> <access_token>` for one client, fetching a new token only when the
 * cached one is about to expire. Concurrent callers share one request (single flight). Create one
 * per execution environment (module scope), so the cache outlives invocations.
 */
export class VendorTokenProvider {
  private token?: CachedToken;
  private inflight?: Promise<CachedToken>;
  private credentials?: ClientCredentials;

  constructor(private readonly config: VendorTokenConfig, private readonly deps: VendorTokenDeps) {}

  /** The header value for the vendor, from the cache when it is still fresh. */
  public async getAuthorization(): Promise<string> {
    if (this.token && this.deps.now() < this.token.refreshAt) {
      return this.token.authorization;
    }
    if (!this.inflight) {
      this.inflight = this.fetchToken().finally(() => {
        this.inflight = undefined;
      });
    }
    return (await this.inflight).authorization;
  }

  /** Fetches a token; a rejection of the client credentials is retried once with the secret re-read (rotation). */
  private async fetchToken(): Promise<CachedToken> {
    const startedAt = this.deps.now();
    let credentials = await this.clientCredentials(false);
    let response = await this.requestToken(credentials);
    let reread = false;
    if (isClientRejection(response)) {
      this.deps.log?.('Token endpoint rejected the client credentials; re-reading the secret and retrying once', { status: response.status });
      credentials = await this.clientCredentials(true);
      response = await this.requestToken(credentials);
      reread = true;
    }
    if (response.status < 200 || response.status >= 300) {
      throw new VendorTokenError(`Token endpoint ${this.config.tokenUrl} answered HTTP ${response.status}`
        + `${reread ? ' (also after re-reading the client secret)' : ''}: ${describeBody(response.body, credentials)}`);
    }
    const token = this.parseToken(response, startedAt);
    this.token = token;
    return token;
  }

  private parseToken(response: TokenResponse, startedAt: number): CachedToken {
    let parsed: unknown;
    try {
      parsed = JSON.parse(response.body);
    } catch {
      throw new VendorTokenError(`Token endpoint ${this.config.tokenUrl} answered HTTP ${response.status} with a body that is not JSON`
        + ` (content type '${response.contentType}')`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new VendorTokenError(`Token endpoint ${this.config.tokenUrl} answered HTTP ${response.status} with JSON that is not an object`);
    }
    const fields = parsed as Record<string, unknown>;
    const accessToken = fields.access_token;
    if (typeof accessToken !== 'string' || accessToken === '' || /[\r\n]/.test(accessToken)) {
      throw new VendorTokenError(`Token endpoint ${this.config.tokenUrl} answered HTTP ${response.status} without a usable access_token`
        + ` (fields: ${Object.keys(fields).join(', ') || 'none'})`);
    }
    const tokenType = normalizeTokenType(fields.token_type);
    const expiresIn = parseExpiresIn(fields.expires_in);
    const margin = Math.min(REFRESH_MARGIN_SECONDS, expiresIn / 2);
    this.deps.log?.('Fetched a vendor access token', { tokenType, expiresInSeconds: expiresIn });
    return { authorization: `${tokenType} ${accessToken}`, refreshAt: startedAt + (expiresIn - margin) * 1000 };
  }

  /** The client's id and secret, from the cache unless `reread`. */
  private async clientCredentials(reread: boolean): Promise<ClientCredentials> {
    if (this.credentials && !reread) {
      return this.credentials;
    }
    const arn = this.config.secretArn;
    let output: GetSecretValueCommandOutput;
    try {
      output = await this.deps.secretsManager.send(new GetSecretValueCommand({ SecretId: arn }));
    } catch (e) {
      const error = e as Error;
      throw new VendorTokenError(`Could not read the OAuth client secret ${arn}: ${error.name}: ${error.message}`);
    }
    // A badly shaped secret is VendorCredentialUnusable: the workflow parks the request at once,
    // where a token endpoint failure (VendorTokenError) is retried through the queue.
    const fields = secretJsonObject(secretStringOf(output, arn, CLIENT_SECRET_SHAPE), arn, CLIENT_SECRET_SHAPE);
    const missing = ['clientId', 'clientSecret'].filter((name) => typeof fields[name] !== 'string' || fields[name] === '');
    if (missing.length > 0) {
      throw new VendorCredentialUnusableError(`The OAuth client secret ${arn} must be a JSON object with the non-empty string fields clientId and clientSecret;`
        + ` missing or not a string: ${missing.join(', ')}`);
    }
    this.credentials = { clientId: fields.clientId as string, clientSecret: fields.clientSecret as string };
    return this.credentials;
  }

  private async requestToken(credentials: ClientCredentials): Promise<TokenResponse> {
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (this.config.scope) {
      form.set('scope', this.config.scope);
    }
    if (this.config.audience) {
      form.set('audience', this.config.audience);
    }
    const headers: Record<string, string> = {
      'Content-Type': 'application/x-www-form-urlencoded',
      'Accept': 'application/json',
    };
    if (this.config.clientAuthentication === 'BODY') {
      form.set('client_id', credentials.clientId);
      form.set('client_secret', credentials.clientSecret);
    } else {
      headers.Authorization = basicAuthorization(credentials);
    }
    let response: Response;
    let body: string;
    try {
      response = await this.deps.fetch(this.config.tokenUrl, {
        method: 'POST',
        headers,
        body: form.toString(),
        // A redirect would take the client credentials elsewhere: report it instead.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.deps.requestTimeoutMs ?? 4000),
      });
      body = await response.text();
    } catch (e) {
      const error = e as Error & { cause?: { code?: string; message?: string } };
      const cause = error.cause?.code ?? error.cause?.message;
      throw new VendorTokenError(`Token request to ${this.config.tokenUrl} failed: ${error.name}: ${error.message}${cause ? ` (${cause})` : ''}`);
    }
    return { status: response.status, contentType: response.headers.get('content-type') ?? '', body };
  }
}

/**
 * `Authorization: Basic` for the client (RFC 6749 section 2.3.1): id and secret are
 * form-urlencoded, joined with ':' and base64-encoded.
 */
export function basicAuthorization(credentials: ClientCredentials): string {
  const encoded = `${formUrlEncode(credentials.clientId)}:${formUrlEncode(credentials.clientSecret)}`;
  return `Basic ${Buffer.from(encoded, 'utf8').toString('base64')}`;
}

/** application/x-www-form-urlencoded encoding of one value (RFC 6749 appendix B). */
function formUrlEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

/**
 * Whether the token endpoint refused the client's credentials: 401 (RFC 6749 section 5.2, when
 * the client used HTTP Basic) or 400 `invalid_client` (client credentials in the body).
 */
function isClientRejection(response: TokenResponse): boolean {
  if (response.status === 401) {
    return true;
  }
  if (response.status !== 400) {
    return false;
  }
  try {
    return (JSON.parse(response.body) as { error?: unknown })?.error === 'invalid_client';
  } catch {
    return false;
  }
}

/** `bearer` -> `Bearer`; other types capitalised; absent -> `Bearer`. */
function normalizeTokenType(tokenType: unknown): string {
  if (typeof tokenType !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(tokenType)) {
    return 'Bearer';
  }
  if (tokenType.toLowerCase() === 'bearer') {
    return 'Bearer';
  }
  return tokenType.charAt(0).toUpperCase() + tokenType.slice(1);
}

/** `expires_in` in seconds (a number or a numeric string); the default when absent or invalid. */
function parseExpiresIn(expiresIn: unknown): number {
  const seconds = typeof expiresIn === 'string' && expiresIn.trim() !== '' ? Number(expiresIn) : expiresIn;
  return typeof seconds === 'number' && Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_EXPIRES_IN_SECONDS;
}

/** An error body for a message: the client secret redacted, whitespace collapsed, truncated. */
function describeBody(body: string, credentials: ClientCredentials): string {
  let text = body;
  for (const sensitive of [credentials.clientSecret, formUrlEncode(credentials.clientSecret), basicAuthorization(credentials).slice('Basic '.length)]) {
    text = text.split(sensitive).join('[redacted]');
  }
  text = text.replace(/\s+/g, ' ').trim();
  if (text === '') {
    return '(empty body)';
  }
  return text.length > MAX_ERROR_BODY_CHARS ? `${text.slice(0, MAX_ERROR_BODY_CHARS)}... (${text.length} characters)` : text;
}
