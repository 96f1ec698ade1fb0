import { Duration, Token } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { validateHeaderName, validateSecretNamePattern } from '../shared/validation';

/**
 * Options for credentials sent to the vendor in a request header.
 */
export interface HeaderCredentialsOptions {
  /**
   * The secret holding the credential, as text (`SecretString`; a binary secret is refused at run
   * time). Read at run time before each vendor call, by the workflows or, with `jsonField`, by the
   * proxy's credential function; the value never appears in the template.
   */
  readonly secret: secretsmanager.ISecret;

  /**
   * The header the vendor expects the credential in, e.g. `x-api-key` or `Authorization`.
   *
   * @default 'x-api-key'
   */
  readonly headerName?: string;

  /**
   * When the secret is a JSON object, the field holding the credential (a non-empty string).
   *
   * The proxy then gets a small credential function that reads the secret and checks its shape:
   * parsing JSON in the workflow could fail with `States.Runtime`, which no Catch handles. A
   * secret that is not such an object parks the request at once (`VendorCredentialUnusable`).
   *
   * @default - the whole secret string is the credential
   */
  readonly jsonField?: string;

  /**
   * Text put before the credential in the header, e.g. `Bearer `.
   *
   * @default - nothing
   */
  readonly prefix?: string;
}

/**
 * Options for a credential per request key (issue 15): each key's credential in its own secret.
 */
export interface PerKeyHeaderCredentialsOptions {
  /**
   * The name of each key's secret, with `{key}` where the request's key goes, e.g.
   * `'vendor/{key}'` or `'prod/vendor/{key}/api'`. The secret is read by name at run time, so keys
   * (and their secrets) come and go without a deploy. Only names Secrets Manager allows can exist
   * (letters, digits and `/_+=.@-`): a key with other characters has no secret, and its requests
   * fail as a key without a credential.
   */
  readonly secretNamePattern: string;

  /**
   * The header the vendor expects the credential in, e.g. `x-api-key` or `Authorization`.
   *
   * @default 'x-api-key'
   */
  readonly headerName?: string;

  /**
   * When each secret is a JSON object, the field holding the credential (a non-empty string).
   *
   * @default - the whole secret string is the credential
   */
  readonly jsonField?: string;

  /**
   * Text put before the credential in the header, e.g. `Bearer `.
   *
   * @default - nothing
   */
  readonly prefix?: string;

  /**
   * How long the credential function keeps a key's credential in memory before it reads the
   * secret again: a rotated or replaced secret applies after at most this long. Each execution
   * environment caches the keys it served (up to 1,000, the least recently read dropped first).
   *
   * @default Duration.minutes(5)
   */
  readonly cacheTtl?: Duration;

  /**
   * The customer-managed KMS key the secrets are encrypted with, if any (the function is granted
   * `kms:Decrypt` on it). Secrets under the AWS-managed key `aws/secretsmanager` need no grant.
   *
   * @default - the secrets use the AWS-managed key
   */
  readonly encryptionKey?: kms.IKey;
}

/**
 * How an OAuth 2.0 client authenticates to the token endpoint.
 */
export enum OAuthClientAuthentication {
  /**
   * HTTP Basic authentication: `Authorization: Basic base64(client_id:client_secret)`, both
   * form-urlencoded first (RFC 6749 section 2.3.1). Every authorization server must support it.
   */
  BASIC = 'BASIC',

  /**
   * `client_id` and `client_secret` as parameters of the form body (RFC 6749 section 2.3.1), for
   * authorization servers that do not accept HTTP Basic.
   */
  BODY = 'BODY',
}

/**
 * Options for OAuth 2.0 client credentials (RFC 6749 section 4.4).
 */
export interface OAuthClientCredentialsOptions {
  /**
   * The secret holding the client's credentials, as the JSON object
   * `{"clientId": "...", "clientSecret": "..."}`. Read at run time by the token function; the
   * values never appear in the template.
   */
  readonly secret: secretsmanager.ISecret;

  /**
   * The authorization server's token endpoint (https), e.g. `https://auth.example.com/oauth/token`.
   */
  readonly tokenUrl: string;

  /**
   * The `scope` parameter of the token request: space-separated scopes.
   *
   * @default - no scope parameter (the authorization server's default scope)
   */
  readonly scope?: string;

  /**
   * The `audience` parameter of the token request, for authorization servers that want one
   * (e.g. Auth0).
   *
   * @default - no audience parameter
   */
  readonly audience?: string;

  /**
   * The header the vendor expects the access token in, as `<token_type> <access_token>`.
   *
   * @default 'Authorization'
   */
  readonly headerName?: string;

  /**
   * How the client authenticates to the token endpoint.
   *
   * @default OAuthClientAuthentication.BASIC
   */
  readonly clientAuthentication?: OAuthClientAuthentication;
}

/** Everything a VendorCredentials may hold. */
interface VendorCredentialsFields {
  readonly secret?: secretsmanager.ISecret;
  readonly headerName?: string;
  readonly jsonField?: string;
  readonly prefix?: string;
  readonly oauthTokenUrl?: string;
  readonly oauthScope?: string;
  readonly oauthAudience?: string;
  readonly oauthClientAuthentication?: OAuthClientAuthentication;
  readonly secretNamePattern?: string;
  readonly cacheTtl?: Duration;
  readonly encryptionKey?: kms.IKey;
}

/**
 * How the dispatch workflow authenticates to the vendor.
 *
 * Credentials live in AWS Secrets Manager and are read at run time, so they never appear in
 * the CloudFormation template. The dispatch workflow sends them to the proxy in the
 * `X-Vendor-Credential` header, and the proxy moves them into the header the vendor expects
 * (which may be `Authorization`, already taken by the SigV4 signature on the proxy hop).
 */
export class VendorCredentials {
  /** The vendor needs no credentials. */
  public static none(): VendorCredentials {
    return new VendorCredentials({});
  }

  /**
   * A credential (API key, static bearer token) sent in a header, read from Secrets Manager.
   */
  public static fromSecretHeader(options: HeaderCredentialsOptions): VendorCredentials {
    const headerName = options.headerName ?? 'x-api-key';
    validateHeaderName(headerName);
    if (options.jsonField !== undefined && !/^[A-Za-z0-9_]+$/.test(options.jsonField)) {
      throw new Error(`jsonField must be a top-level field name of letters, digits and underscores, given '${options.jsonField}'`);
    }
    return new VendorCredentials({ secret: options.secret, headerName, jsonField: options.jsonField, prefix: options.prefix });
  }

  /**
   * A credential per request key (issue 15): the request's key (`submitJobTask` /
   * `callVendorTask` `key`) names its secret (`secretNamePattern`, e.g. `'vendor/{key}'`), so one
   * orchestrator serves many vendor accounts. The proxy gets a credential function that reads the
   * key's secret and caches it in memory for `cacheTtl` (a secret read per call would cost per
   * call), and is allowed `secretsmanager:GetSecretValue` on the names the pattern matches (`{key}`
   * as `*`). Every task of the orchestrator must then give a key.
   *
   * A key without a secret parks its request at once (reason `VendorCredentialNotFound`, not
   * retried: create the secret and redrive the dead-letter queue); its waiting task fails with
   * `VendorRequestFailed`, the cause naming the missing secret. Limits per key are not enforced
   * yet: keys share the orchestrator's contract.
   */
  public static fromSecretHeaderPerKey(options: PerKeyHeaderCredentialsOptions): VendorCredentials {
    const headerName = options.headerName ?? 'x-api-key';
    validateHeaderName(headerName);
    if (options.jsonField !== undefined && !/^[A-Za-z0-9_]+$/.test(options.jsonField)) {
      throw new Error(`jsonField must be a top-level field name of letters, digits and underscores, given '${options.jsonField}'`);
    }
    validateSecretNamePattern(options.secretNamePattern);
    const cacheTtl = options.cacheTtl ?? Duration.minutes(5);
    if (cacheTtl.toSeconds() < 0 || cacheTtl.toSeconds() > 3600) {
      throw new Error(`cacheTtl must be between 0 seconds (no cache) and 1 hour: a longer cache keeps a rotated or revoked credential in use (given ${cacheTtl.toSeconds()} seconds)`);
    }
    return new VendorCredentials({
      headerName,
      jsonField: options.jsonField,
      prefix: options.prefix,
      secretNamePattern: options.secretNamePattern,
      cacheTtl,
      encryptionKey: options.encryptionKey,
    });
  }

  /**
   * OAuth 2.0 client credentials (RFC 6749 section 4.4): the proxy gets a small token function
   * that exchanges the client id and secret (read from Secrets Manager) for an access token at
   * `tokenUrl`, caching it until shortly before it expires. The dispatch workflow invokes it
   * before each vendor call and sends `<token_type> <access_token>` (e.g. `Bearer eyJ...`) in
   * `headerName`.
   */
  public static oauthClientCredentials(options: OAuthClientCredentialsOptions): VendorCredentials {
    validateTokenUrl(options.tokenUrl);
    const headerName = options.headerName ?? 'Authorization';
    validateHeaderName(headerName);
    if (options.scope !== undefined && !Token.isUnresolved(options.scope) && !/^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$/.test(options.scope)) {
      throw new Error(`scope must be scopes separated by single spaces, each of printable ASCII without '"' or '\\' (RFC 6749 section 3.3), given '${options.scope}'`);
    }
    if (options.audience !== undefined && !Token.isUnresolved(options.audience) && options.audience.trim() === '') {
      throw new Error(`audience must not be empty when given (leave it out for no audience parameter), given '${options.audience}'`);
    }
    const clientAuthentication = options.clientAuthentication ?? OAuthClientAuthentication.BASIC;
    if (!Object.values(OAuthClientAuthentication).includes(clientAuthentication)) {
      throw new Error(`clientAuthentication must be OAuthClientAuthentication.BASIC or OAuthClientAuthentication.BODY, given '${clientAuthentication}'`);
    }
    return new VendorCredentials({
      secret: options.secret,
      headerName,
      oauthTokenUrl: options.tokenUrl,
      oauthScope: options.scope,
      oauthAudience: options.audience,
      oauthClientAuthentication: clientAuthentication,
    });
  }

  /**
   * The secret to read, if any: the credential itself (`fromSecretHeader`) or the OAuth client's
   * id and secret (`oauthClientCredentials`).
   */
  public readonly secret?: secretsmanager.ISecret;
  /** The header the vendor expects the credential in, if any. */
  public readonly headerName?: string;
  /** The field of a JSON secret that holds the credential, if any. */
  public readonly jsonField?: string;
  /** Text put before the credential, if any. */
  public readonly prefix?: string;
  /** The OAuth 2.0 token endpoint, for OAuth client credentials. */
  public readonly oauthTokenUrl?: string;
  /** The `scope` parameter of the token request, if any. */
  public readonly oauthScope?: string;
  /** The `audience` parameter of the token request, if any. */
  public readonly oauthAudience?: string;
  /** How the OAuth client authenticates to the token endpoint, for OAuth client credentials. */
  public readonly oauthClientAuthentication?: OAuthClientAuthentication;
  /** The name of each key's secret, `{key}` where the key goes (`fromSecretHeaderPerKey`). */
  public readonly secretNamePattern?: string;
  /** How long a key's credential stays cached (`fromSecretHeaderPerKey`). */
  public readonly cacheTtl?: Duration;
  /** The customer-managed KMS key of the per-key secrets, if any. */
  public readonly encryptionKey?: kms.IKey;

  private constructor(fields: VendorCredentialsFields) {
    this.secret = fields.secret;
    this.headerName = fields.headerName;
    this.jsonField = fields.jsonField;
    this.prefix = fields.prefix;
    this.oauthTokenUrl = fields.oauthTokenUrl;
    this.oauthScope = fields.oauthScope;
    this.oauthAudience = fields.oauthAudience;
    this.oauthClientAuthentication = fields.oauthClientAuthentication;
    this.secretNamePattern = fields.secretNamePattern;
    this.cacheTtl = fields.cacheTtl;
    this.encryptionKey = fields.encryptionKey;
  }

  /** Whether each request key has its own secret (`fromSecretHeaderPerKey`): every request needs a key. */
  public get isPerKey(): boolean {
    return this.secretNamePattern !== undefined;
  }

  /** Whether these are OAuth 2.0 client credentials (a token function fetches the access token). */
  public get isOAuth(): boolean {
    return this.oauthTokenUrl !== undefined;
  }
}

/** The header that carries the vendor credential from the dispatch workflow to the proxy. */
export const VENDOR_CREDENTIAL_HEADER = 'X-Vendor-Credential';

function validateTokenUrl(tokenUrl: string): void {
  if (Token.isUnresolved(tokenUrl)) {
    return;
  }
  let url: URL;
  try {
    url = new URL(tokenUrl);
  } catch {
    throw new Error(`tokenUrl must be an absolute https URL such as https://auth.example.com/oauth/token (given '${tokenUrl}')`);
  }
  if (url.protocol !== 'https:') {
    throw new Error(`tokenUrl must use https: the client secret and the access token travel over it (given '${tokenUrl}')`);
  }
  if (url.username || url.password) {
    url.password = url.password ? '***' : '';
    throw new Error(`tokenUrl must not carry credentials (user:password@): put them in the secret (given '${url.toString()}')`);
  }
  if (url.hash) {
    throw new Error(`tokenUrl must not carry a fragment (given '${tokenUrl}')`);
  }
}
