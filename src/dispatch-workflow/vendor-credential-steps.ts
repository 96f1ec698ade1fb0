import { Duration } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { ThrottledProxy } from '../throttled-proxy/throttled-proxy';
import { VENDOR_CREDENTIAL_HEADER } from '../throttled-proxy/vendor-credentials';

/** The states that read the vendor credential, and the header that carries it to the proxy. */
export interface VendorCredentialSteps {
  /** The task that puts the credential at `$.credential.secret`; undefined without credentials. */
  readonly readCredential?: sfn.TaskStateBase;
  /** Headers for the proxy call (`{ <credential header>: [value] }`), JSONPath; empty without credentials. */
  readonly headers: Record<string, unknown>;
}

/**
 * The states that read the vendor credential, shared by the two workflows that call the vendor
 * through the proxy (DispatchWorkflow and VendorCallWorkflow), so both read it the same way with
 * the same state ids:
 * - OAuth client credentials: invoke the proxy's token function (`GetVendorToken`), which returns
 *   `<token_type> <access_token>`, cached in its memory;
 * - a secret: `secretsmanager:getSecretValue` (`ReadVendorCredential`), optionally one JSON field
 *   and a prefix. The caller grants the read (`credentials.secret.grantRead`) when there is no
 *   token function.
 *
 * `retryAwsThrottling` is applied to the Secrets Manager read (each workflow passes its own: the
 * two retry different error lists). The credential is never stored in the template, and the
 * workflows that use it log no execution data.
 */
export function vendorCredentialSteps(
  scope: Construct, proxy: ThrottledProxy, retryAwsThrottling: (task: sfn.TaskStateBase) => void,
): VendorCredentialSteps {
  const credentials = proxy.credentials;
  const tokenFunction = proxy.tokenFunction;
  if (tokenFunction) {
    const readCredential = new tasks.LambdaInvoke(scope, 'GetVendorToken', {
      comment: 'Get an OAuth access token for the vendor (cached by the function)',
      lambdaFunction: tokenFunction,
      payload: sfn.TaskInput.fromObject({}),
      retryOnServiceExceptions: false,
      resultSelector: { secret: sfn.JsonPath.stringAt('$.Payload.authorization') },
      resultPath: '$.credential',
    });
    // A token endpoint failure is not retried here: it goes back through the paced queue.
    readCredential.addRetry({
      errors: ['Lambda.TooManyRequestsException', 'Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException'],
      interval: Duration.seconds(1),
      backoffRate: 2,
      maxAttempts: 2,
      jitterStrategy: sfn.JitterType.FULL,
    });
    return { readCredential, headers: { [VENDOR_CREDENTIAL_HEADER]: sfn.JsonPath.array(sfn.JsonPath.stringAt('$.credential.secret')) } };
  }
  if (!credentials.secret) {
    return { headers: {} };
  }
  const readCredential = new tasks.CallAwsService(scope, 'ReadVendorCredential', {
    service: 'secretsmanager',
    action: 'getSecretValue',
    parameters: { SecretId: credentials.secret.secretArn },
    iamResources: [credentials.secret.secretArn],
    resultSelector: {
      secret: credentials.jsonField
        ? sfn.JsonPath.stringToJson(sfn.JsonPath.stringAt('$.SecretString'))
        : sfn.JsonPath.stringAt('$.SecretString'),
    },
    resultPath: '$.credential',
  });
  retryAwsThrottling(readCredential);
  if (!credentials.headerName) {
    return { readCredential, headers: {} };
  }
  const secretPath = credentials.jsonField ? `$.credential.secret.${credentials.jsonField}` : '$.credential.secret';
  return {
    readCredential,
    headers: {
      [VENDOR_CREDENTIAL_HEADER]: sfn.JsonPath.array(credentials.prefix
        ? sfn.JsonPath.format(`${escapeIntrinsicText(credentials.prefix)}{}`, sfn.JsonPath.stringAt(secretPath))
        : sfn.JsonPath.stringAt(secretPath)),
    },
  };
}

/** Escapes text for use inside an intrinsic function's string argument. */
function escapeIntrinsicText(text: string): string {
  return text.replace(/[\\'{}]/g, (c) => `\\${c}`);
}
