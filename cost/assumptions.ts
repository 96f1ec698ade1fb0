/**
 * The estimates the cost model cannot read from a template: latencies, sizes and log volumes.
 * Each is a round figure, stated with its reason; the report prints them.
 */

/** How long things take, in milliseconds. */
export const LATENCY_MS = {
  /** Step Functions' own time per state entered (Pass, Choice, Succeed and the entry of a Task). */
  stateTransition: 5,
  /** A DynamoDB call from a Task state (optimized integration), or from a Lambda function. */
  dynamodbCall: 25,
  /** API Gateway (IAM-authorized REST API, HTTP proxy integration) in front of the vendor, on top of the vendor's own latency. */
  apiGatewayOverhead: 50,
  /** A Secrets Manager GetSecretValue from a Task state. */
  secretsManagerCall: 30,
  /** A synchronous Lambda invoke from a Task state (warm function; the vendor token function answers from its cache). */
  lambdaInvoke: 30,
  /** An SQS SendMessage from a Task state. */
  sqsCall: 25,
  /** A StartExecution call from the dispatcher (Express workflow). */
  startExecution: 30,
  /** A SendTaskSuccess call from the callback processor. */
  sendTaskSuccess: 25,
  /** A Lambda invocation's own overhead (handler entry, batch bookkeeping, response), warm. */
  invocationOverhead: 10,
  /**
   * PacingPoint.VENDOR_CALL: from the dispatcher's StartExecution to the vendor caller's start
   * (Express start, the states before CallVendor, the Lambda invoke). The dispatcher starts the
   * execution `lead` before its slot, so the caller waits about lead minus this for its slot
   * (billed while it waits), then calls the vendor.
   */
  expressStartToCaller: 300,
} as const;

/** How big things are, in bytes. */
export const SIZE_BYTES = {
  /** A request id (the example's order ids, or the UUID `submitJobTask` generates). */
  requestId: 36,
  /** A vendor job id. */
  jobId: 36,
  /** A capability token of the callback URL (32 random bytes, base64url). */
  callbackToken: 43,
  /** An epoch-seconds number (expiresAt) as DynamoDB stores it: about one byte per two digits, plus one. */
  epochSecondsNumber: 6,
  /** An ISO 8601 timestamp (updatedAt). */
  isoTimestamp: 24,
  /** An attribute of unknown content. */
  unknownAttribute: 32,
  /** DynamoDB's overhead per global secondary index entry. */
  indexEntryOverhead: 100,
  /** JSON keys and punctuation around a request message ({ taskToken, requestId, payload, attempt }). */
  requestMessageOverhead: 80,
  /** A vendor-call message without the token and the id ({ kind, call: { method, path, query }, attempt } and punctuation). */
  callMessageOverhead: 150,
  /** The vendor's answer to a result fetch (callVendorTask), carried back to the waiting workflow. */
  callResponseBody: 1024,
  /** The callback envelope around the base64 body: the vendor's request headers (base64) and the other fields. */
  callbackEnvelopeOverhead: 900,
  /** CloudWatch Logs' billing overhead per log event. */
  logEventOverhead: 26,
  /** START, END and REPORT lines of one Lambda invocation, text format (3 events). */
  lambdaPlatformLogsText: 310,
  /** The same as JSON (platform.start, platform.report...). */
  lambdaPlatformLogsJson: 750,
  /** One Powertools INFO line (JSON with the Lambda context keys) per started execution or resumed workflow. */
  powertoolsInfoLine: 650,
  /** One EMF document (the handlers' custom metrics) per invocation that counted something. */
  emfDocument: 550,
  /** One Step Functions log event without execution data (log level ALL). */
  stepFunctionsLogEvent: 350,
  /** An API Gateway execution log at INFO level, per request (several lines). */
  apiGatewayExecutionLogInfo: 1500,
  /** A `$context` variable in an access log format whose size is not listed in ACCESS_LOG_VARIABLE_BYTES. */
  accessLogVariableDefault: 16,
} as const;

/** Typical sizes of the `$context` variables of API Gateway access logs, in bytes. */
export const ACCESS_LOG_VARIABLE_BYTES: Readonly<Record<string, number>> = {
  'requestId': 36,
  'extendedRequestId': 16,
  'identity.sourceIp': 15,
  'identity.user': 21,
  'identity.caller': 21,
  'identity.userArn': 60,
  'requestTime': 26,
  'requestTimeEpoch': 13,
  'httpMethod': 4,
  'resourcePath': 12,
  'path': 20,
  'status': 3,
  'protocol': 8,
  'responseLength': 3,
  'responseLatency': 3,
  'integrationLatency': 3,
  'integration.latency': 3,
  'integration.status': 3,
  'error.responseType': 1,
  'error.message': 1,
};

/**
 * Without a batching window, a poll of the event source mapping returns what has arrived since the
 * previous poll; assumed to be what arrives in this many seconds.
 */
export const POLL_GATHER_SECONDS = 0.1;

/** ReceiveMessage and DeleteMessageBatch handle at most this many messages per call. */
export const SQS_MESSAGES_PER_CALL = 10;

/** SQS bills every 64 KB chunk of a request as one request. */
export const SQS_CHUNK_BYTES = 64 * 1024;

/** Express memory: this much plus the definition and the execution data (pricing example 3). */
export const EXPRESS_BASE_MEMORY_MB = 50;

/** Express memory is billed in chunks of this many MB. */
export const EXPRESS_MEMORY_CHUNK_MB = 64;

/** Express duration is rounded up to a multiple of this many milliseconds. */
export const EXPRESS_DURATION_STEP_MS = 100;

/** Seconds in 30 days: the "month" of the monthly totals. */
export const SECONDS_PER_MONTH = 30 * 24 * 3600;

/** Bytes in a GB, as AWS bills data (2^30). */
export const BYTES_PER_GB = 1024 ** 3;
