import { Duration } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { LAMBDA_INVOKE_RETRY } from './aws-service-errors';
import { RouteStep } from './express-budget';
import { VENDOR_CREDENTIAL_NOT_FOUND, VENDOR_CREDENTIAL_UNUSABLE } from '../shared/messages';
import { ThrottledProxy } from '../throttled-proxy/throttled-proxy';
import { VENDOR_CREDENTIAL_HEADER } from '../throttled-proxy/vendor-credentials';

/** Where the credential states go when they fail. */
export interface VendorCredentialTargets {
  /** Failures that may pass (throttling, a token endpoint down): `ClassifyVendorError`. */
  readonly classify: sfn.IChainable;
  /** A secret of the wrong shape, which retrying cannot fix: park the request now. */
  readonly giveUp: sfn.IChainable;
}

/** The states that read the vendor credential, and the header that carries it to the proxy. */
export interface VendorCredentialSteps {
  /** Headers for the proxy call (`{ <credential header>: [value] }`), JSONPath; empty without credentials. */
  readonly headers: Record<string, unknown>;
  /** The credential Task with its Retry, for the workflow's worst-case duration (express-budget.ts); empty without credentials. */
  readonly route: RouteStep[];
  /**
   * Puts the credential states before `next`, their failures wired to `targets` (error at
   * `$.error`). Returns the first state: `next` itself without credentials.
   */
  before(next: sfn.IChainable, targets: VendorCredentialTargets): sfn.IChainable;
}

/**
 * The states that read the vendor credential, shared by the two workflows that call the vendor
 * through the proxy (DispatchWorkflow and VendorCallWorkflow), so both read it the same way with
 * the same state ids:
 * - OAuth client credentials: invoke the proxy's token function (`GetVendorToken`), which returns
 *   `<token_type> <access_token>`, cached in its memory;
 * - a JSON secret (`jsonField`): invoke the proxy's credential function (`ReadVendorCredential`),
 *   which reads the secret and returns the field, then the optional prefix;
 * - a plain-text secret: `secretsmanager:getSecretValue` (`ReadVendorCredential`), then the
 *   optional prefix. The caller grants the read (`credentials.secret.grantRead`) when the proxy
 *   has no credential function.
 *
 * No path is read before it is known to exist: a missing JSONPath or a failed
 * `States.StringToJson` fails the execution with `States.Runtime`, which no Catch handles
 * (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html#states-runtime-error),
 * and the waiting workflow would wait for its timeout with nothing parked. So a JSON secret is
 * parsed in code (the function's `VendorCredentialUnusable` is caught), and a plain-text secret's
 * `SecretString`, absent when the secret is binary
 * (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html), is
 * tested with IsPresent before it is read. Either unusable secret parks the request at once
 * (`VendorCredentialUnusable`): retrying cannot fix it, and the parked request can be redriven
 * once the secret is fixed.
 *
 * `retryAwsThrottling` is applied to the Secrets Manager read (each workflow passes its own: the
 * two retry different error lists). The credential is never stored in the template, and the
 * workflows that use it log no execution data.
 */
export function vendorCredentialSteps(
  scope: Construct, proxy: ThrottledProxy, retryAwsThrottling: (task: sfn.TaskStateBase) => sfn.RetryProps,
): VendorCredentialSteps {
  const credentials = proxy.credentials;
  const credentialFunction = proxy.credentialFunction;
  if (credentialFunction) {
    const oauth = credentials.isOAuth;
    const perKey = credentials.isPerKey;
    const readCredential = new tasks.LambdaInvoke(scope, oauth ? 'GetVendorToken' : 'ReadVendorCredential', {
      comment: oauth ? 'Get an OAuth access token for the vendor (cached by the function)'
        : perKey ? 'Read the vendor credential of the request\'s key from the key\'s secret (cached per key by the function)'
          : 'Read the vendor credential from its JSON secret (the function checks the secret\'s shape)',
      lambdaFunction: credentialFunction,
      // Per key (issue 15): `$.key` is always there, the queue consumer starts no execution without
      // one when the credential is per key (REQUIRE_REQUEST_KEY).
      payload: sfn.TaskInput.fromObject(perKey ? { key: sfn.JsonPath.stringAt('$.key') } : {}),
      retryOnServiceExceptions: false,
      // The function answers this field or fails: the path always exists.
      resultSelector: { secret: sfn.JsonPath.stringAt(oauth ? '$.Payload.authorization' : '$.Payload.credential') },
      resultPath: '$.credential',
    });
    // A token endpoint failure is not retried here: it goes back through the paced queue.
    readCredential.addRetry(LAMBDA_INVOKE_RETRY);
    return {
      headers: credentialHeader(oauth ? undefined : credentials.prefix, '$.credential.secret'),
      // No TimeoutSeconds on the invoke: the function's own timeout bounds its run.
      route: [{
        name: readCredential.id,
        run: credentialFunction instanceof lambda.Function && credentialFunction.timeout ? credentialFunction.timeout : Duration.minutes(15),
        retry: LAMBDA_INVOKE_RETRY,
      }],
      before: (next, targets) => {
        // A key without a secret (per key) cannot pass either: parked at once, like an unusable secret.
        readCredential.addCatch(targets.giveUp, {
          errors: perKey ? [VENDOR_CREDENTIAL_UNUSABLE, VENDOR_CREDENTIAL_NOT_FOUND] : [VENDOR_CREDENTIAL_UNUSABLE],
          resultPath: '$.error',
        });
        readCredential.addCatch(targets.classify, { resultPath: '$.error' });
        return readCredential.next(next);
      },
    };
  }
  if (!credentials.secret) {
    return { headers: {}, before: (next) => next, route: [] };
  }
  const secretArn = credentials.secret.secretArn;
  // The whole GetSecretValue output: selecting `$.SecretString` here would fail on a binary secret.
  const readCredential = new tasks.CallAwsService(scope, 'ReadVendorCredential', {
    service: 'secretsmanager',
    action: 'getSecretValue',
    parameters: { SecretId: secretArn },
    iamResources: [secretArn],
    resultPath: '$.credential',
  });
  const readRetry = retryAwsThrottling(readCredential);
  const unusable = new sfn.Pass(scope, 'VendorCredentialUnusable', {
    comment: 'A binary secret has no SecretString: retrying cannot fix it',
    parameters: {
      Error: VENDOR_CREDENTIAL_UNUSABLE,
      Cause: `The vendor secret ${secretArn} has no SecretString (it is a binary secret, which is not supported): store the credential as text`,
    },
    resultPath: '$.error',
  });
  return {
    headers: credentials.headerName ? credentialHeader(credentials.prefix, '$.credential.SecretString') : {},
    route: [{ name: readCredential.id, retry: readRetry }],
    before: (next, targets) => {
      readCredential.addCatch(targets.classify, { resultPath: '$.error' });
      unusable.next(targets.giveUp);
      // GetSecretValue answers SecretString (a string) or SecretBinary: presence is the whole test.
      return readCredential.next(new sfn.Choice(scope, 'IsVendorCredentialText')
        .when(sfn.Condition.isPresent('$.credential.SecretString'), next)
        .otherwise(unusable));
    },
  };
}

/** `{ X-Vendor-Credential: [<prefix><credential at path>] }`. */
function credentialHeader(prefix: string | undefined, path: string): Record<string, unknown> {
  return {
    [VENDOR_CREDENTIAL_HEADER]: sfn.JsonPath.array(prefix
      ? sfn.JsonPath.format(`${escapeIntrinsicText(prefix)}{}`, sfn.JsonPath.stringAt(path))
      : sfn.JsonPath.stringAt(path)),
  };
}

/** Escapes text for use inside an intrinsic function's string argument. */
function escapeIntrinsicText(text: string): string {
  return text.replace(/[\\'{}]/g, (c) => `\\${c}`);
}
