import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';

/**
 * Options for credentials sent to the vendor in a request header.
 */
export interface HeaderCredentialsOptions {
  /**
   * The secret holding the credential. Read at run time by the dispatch workflow; the value
   * never appears in the template.
   */
  readonly secret: secretsmanager.ISecret;

  /**
   * The header the vendor expects the credential in, e.g. `x-api-key` or `Authorization`.
   *
   * @default 'x-api-key'
   */
  readonly headerName?: string;

  /**
   * When the secret is a JSON object, the field holding the credential.
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
    return new VendorCredentials(undefined, undefined, undefined, undefined);
  }

  /**
   * A credential (API key, static bearer token) sent in a header, read from Secrets Manager.
   */
  public static fromSecretHeader(options: HeaderCredentialsOptions): VendorCredentials {
    const headerName = options.headerName ?? 'x-api-key';
    if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(headerName)) {
      throw new Error(`headerName must be an HTTP header name (letters, digits and !#$%&'*+.^_\`|~-), given '${headerName}'`);
    }
    if (options.jsonField !== undefined && !/^[A-Za-z0-9_]+$/.test(options.jsonField)) {
      throw new Error(`jsonField must be a top-level field name of letters, digits and underscores, given '${options.jsonField}'`);
    }
    return new VendorCredentials(options.secret, headerName, options.jsonField, options.prefix);
  }

  /** The secret to read, if any. */
  public readonly secret?: secretsmanager.ISecret;
  /** The header the vendor expects the credential in, if any. */
  public readonly headerName?: string;
  /** The field of a JSON secret that holds the credential, if any. */
  public readonly jsonField?: string;
  /** Text put before the credential, if any. */
  public readonly prefix?: string;

  private constructor(secret?: secretsmanager.ISecret, headerName?: string, jsonField?: string, prefix?: string) {
    this.secret = secret;
    this.headerName = headerName;
    this.jsonField = jsonField;
    this.prefix = prefix;
  }
}

/** The header that carries the vendor credential from the dispatch workflow to the proxy. */
export const VENDOR_CREDENTIAL_HEADER = 'X-Vendor-Credential';
