/**
 * The webhook's request mapping template (blog step 9): turns the vendor's callback into one
 * SQS SendMessage (Query API, form-encoded) whose body is a `CallbackEnvelope`.
 *
 * The raw body and every header name and value are base64-encoded, so the bytes the vendor sent
 * reach the processor untouched (for signature checks) and nothing the vendor sends can break
 * the envelope's JSON. VTL double-quoted strings cannot hold a literal `"`, so `$q` carries it.
 * Only Velocity features that both API Gateway and velocityjs support are used: #set, #foreach,
 * string interpolation, `$util.base64Encode`, `$util.urlEncode`, `$input.params()`.
 */
export const CALLBACK_REQUEST_TEMPLATE = callbackRequestTemplate({ tokenFromPath: false });

/** Options of `callbackRequestTemplate`. */
export interface CallbackRequestTemplateOptions {
  /**
   * The route has a `{token}` path parameter (the capability URL `/callback/{token}`): its value
   * goes into the envelope, base64-encoded like everything else the caller controls.
   */
  readonly tokenFromPath: boolean;
}

/** The request mapping template of a callback route. */
export function callbackRequestTemplate(options: CallbackRequestTemplateOptions): string {
  // `$input.params().path.get('token')`, not `$input.params('token')`: the latter falls back to a
  // query string parameter or header of that name.
  const token = options.tokenFromPath
    ? ',${q}callbackTokenBase64${q}:$q$util.base64Encode($token)$q'
    : '';
  return [
    "#set($q = '\"')",
    '#set($headers = $input.params().header)',
    '#set($h = \'\')',
    '#set($sep = \'\')',
    '#foreach($name in $headers.keySet())',
    '#set($h = "$h$sep$q$util.base64Encode($name)$q:$q$util.base64Encode($headers.get($name))$q")',
    "#set($sep = ',')",
    '#end',
    ...(options.tokenFromPath ? ["#set($token = $input.params().path.get('token'))"] : []),
    `#set($envelope = "{\${q}v\${q}:1,\${q}bodyBase64\${q}:$q$util.base64Encode($input.body)$q,\${q}headers\${q}:{$h},\${q}receivedAtEpochMs\${q}:$context.requestTimeEpoch,\${q}apiRequestId\${q}:$q$context.requestId$q,\${q}sourceIp\${q}:$q$context.identity.sourceIp$q${token}}")`,
    'Action=SendMessage&MessageBody=$util.urlEncode($envelope)',
  ].join('\n');
}

/** What the webhook answers once the callback is queued. */
export const CALLBACK_ACCEPTED_RESPONSE = '{"status":"accepted"}';

/** What the webhook answers when the callback could not be queued (the vendor should retry). */
export const CALLBACK_ERROR_RESPONSE = '{"status":"error","message":"callback not queued, retry later"}';
