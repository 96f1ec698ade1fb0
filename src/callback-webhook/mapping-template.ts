/**
 * The webhook's request mapping template (blog step 9): turns the vendor's callback into one
 * SQS SendMessage (Query API, form-encoded) whose body is a `CallbackEnvelope`.
 *
 * The raw body and every header name and value are base64-encoded, so the bytes the vendor sent
 * reach the processor untouched (for signature checks) and nothing the vendor sends can break
 * the envelope's JSON. VTL double-quoted strings cannot hold a literal `"`, so `$q` carries it.
 * Only Velocity features that both API Gateway and the local runtime support are used: #set, #if,
 * #foreach, string interpolation, `$util.base64Encode`, `$util.urlEncode`, `$input.params()`,
 * `$input.json()` and Java's `String.length()` (API Gateway's values are Java strings).
 *
 * A body whose base64 would not fit the callback queue's message (`MAX_BODY_BASE64_CHARS`, about
 * 729 KiB of body) is dropped: the envelope then says `bodyDropped`, carries the base64 length and
 * the job id read at the webhook (`$input.json(jobIdPath)`, at most `MAX_JOB_ID_JSON_CHARS`), and
 * the message carries the attribute `bodyDropped`, which makes the response template answer 413.
 * API Gateway accepts bodies up to 10 MB, so without this SQS would refuse such a message, the
 * webhook would answer 500 and the vendor would retry a callback that can never be queued.
 */
/** The callback queue's (and its dead-letter queue's) MaximumMessageSize: SQS's largest, 1 MiB. */
export const CALLBACK_QUEUE_MAX_MESSAGE_BYTES = 1_048_576;

/**
 * Largest base64 body the envelope carries, characters (972 KiB, a body of up to 746,496 bytes).
 * The rest of the 1 MiB message holds the headers (API Gateway's REST limit is 10,240 bytes of
 * request line and header values, under 48 KiB once base64-encoded with the JSON around them;
 * https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-execution-service-limits-table.html)
 * and the other envelope fields, and the parked copy's `reason` and `detail` attributes (at most 4 KiB).
 */
export const MAX_BODY_BASE64_CHARS = 972 * 1024;

/** Longest job id (as JSON) a dropped-body envelope carries; a longer one is left out. */
export const MAX_JOB_ID_JSON_CHARS = 2048;

/** Name of the message attribute that marks a callback whose body was dropped. */
export const BODY_DROPPED_ATTRIBUTE = 'bodyDropped';

/** Options of `callbackRequestTemplate`. */
export interface CallbackRequestTemplateOptions {
  /**
   * The route has a `{token}` path parameter (the capability URL `/callback/{token}`): its value
   * goes into the envelope, base64-encoded like everything else the caller controls.
   */
  readonly tokenFromPath: boolean;
  /**
   * Where the job id is in the body (segments from `parseSimplePath`), read at the webhook only when
   * the body is dropped. Default `['jobId']`.
   */
  readonly jobIdPath?: string[];
}

/** The request mapping template of a callback route. */
export function callbackRequestTemplate(options: CallbackRequestTemplateOptions): string {
  // `$input.params().path.get('token')`, not `$input.params('token')`: the latter falls back to a
  // query string parameter or header of that name.
  const token = options.tokenFromPath
    ? ',${q}callbackTokenBase64${q}:$q$util.base64Encode($token)$q'
    : '';
  const common = `\${q}headers\${q}:{$h},\${q}receivedAtEpochMs\${q}:$context.requestTimeEpoch,\${q}apiRequestId\${q}:$q$context.requestId$q,\${q}sourceIp\${q}:$q$context.identity.sourceIp$q${token}`;
  const jobIdJsonPath = velocityJsonPath(options.jobIdPath ?? ['jobId']);
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
    '#set($bodyBase64 = $util.base64Encode($input.body))',
    '#set($attributes = \'\')',
    `#if($bodyBase64.length() <= ${MAX_BODY_BASE64_CHARS})`,
    `#set($envelope = "{\${q}v\${q}:1,\${q}bodyBase64\${q}:$q$bodyBase64$q,${common}}")`,
    '#else',
    // Only here is the body parsed as JSON: the job id lets a capability URL's callback fail its
    // workflow with CallbackTooLarge at once.
    ...(jobIdJsonPath === undefined
      ? ["#set($jobIdJson = '')"]
      // Set to '' first: Velocity leaves a variable unchanged when #set's value is null.
      : ["#set($jobIdJson = '')", `#set($jobIdJson = $input.json('${jobIdJsonPath}'))`, `#if($jobIdJson.length() > ${MAX_JOB_ID_JSON_CHARS})#set($jobIdJson = '')#end`]),
    `#set($envelope = "{\${q}v\${q}:1,\${q}bodyBase64\${q}:$q$q,\${q}bodyDropped\${q}:true,\${q}bodyBase64Length\${q}:$bodyBase64.length(),\${q}jobIdJsonBase64\${q}:$q$util.base64Encode($jobIdJson)$q,${common}}")`,
    `#set($attributes = '&MessageAttribute.1.Name=${BODY_DROPPED_ATTRIBUTE}&MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value.StringValue=true')`,
    '#end',
    'Action=SendMessage&MessageBody=$util.urlEncode($envelope)$attributes',
  ].join('\n');
}

/** The request mapping template of the bare `/callback` route, job id at `$.jobId` (see above). */
export const CALLBACK_REQUEST_TEMPLATE = callbackRequestTemplate({ tokenFromPath: false });

/**
 * The JSONPath of `segments` for `$input.json('...')` inside a single-quoted VTL string, or undefined
 * when a segment holds a quote or a backslash (then the dropped-body envelope carries no job id).
 */
function velocityJsonPath(segments: string[]): string | undefined {
  if (segments.some((s) => /['"\\]/.test(s))) {
    return undefined;
  }
  return '$' + segments.map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? `[${s}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? `.${s}` : `["${s}"]`)).join('');
}

/** What the webhook answers once the callback is queued. */
export const CALLBACK_ACCEPTED_RESPONSE = '{"status":"accepted"}';

/** What the webhook answers (413) when the callback's body was too large to queue, and was dropped. */
export const CALLBACK_TOO_LARGE_RESPONSE = '{"status":"rejected","message":"callback body too large: it was not queued, do not retry"}';

/**
 * The response template of a queued callback: `CALLBACK_ACCEPTED_RESPONSE` (202), or
 * `CALLBACK_TOO_LARGE_RESPONSE` with status 413 when the body was dropped. A response template
 * cannot see the request, but SQS's answer can tell: only a dropped-body message carries a message
 * attribute, so only its SendMessage result has an MD5OfMessageAttributes. `$context.responseOverride`
 * sets the status: https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-override-request-response-parameters.html
 */
export const CALLBACK_QUEUED_RESPONSE_TEMPLATE = "#set($attributesMd5 = $input.path('$.SendMessageResponse.SendMessageResult.MD5OfMessageAttributes'))"
  + `#if($attributesMd5 && "$attributesMd5" != "")#set($context.responseOverride.status = 413)${CALLBACK_TOO_LARGE_RESPONSE}#{else}${CALLBACK_ACCEPTED_RESPONSE}#end`;

/** What the webhook answers when the callback could not be queued (the vendor should retry). */
export const CALLBACK_ERROR_RESPONSE = '{"status":"error","message":"callback not queued, retry later"}';
