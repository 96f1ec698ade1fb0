import { Names, Duration, Lazy, RemovalPolicy } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { AccessLogAudit } from './access-log-audit';
import { arrivalAfterSlotMetric, arrivalSpreadExpression } from './arrival-audit-metrics';
import { DEFAULT_INTEGRATION_TIMEOUT_QUOTA, validateIntegrationTimeout } from './integration-timeout';
import { VendorArrivalAudit, VendorArrivalAuditOptions } from './vendor-arrival-audit';
import { VENDOR_CREDENTIAL_HEADER, VendorCredentials } from './vendor-credentials';
import { VendorTokenFunction } from './vendor-token-function';
import { customMetric, validateMetricsScope } from '../shared/custom-metrics';
import { METRICS_NAMESPACE, METRICS_SCOPE_DIMENSION } from '../shared/metrics';
import { addFunctionNagSuppressions, addNagSuppressions, addRolePolicyNagSuppressions, NagReasons } from '../shared/nag';
import { perKeySecretArnPattern, perKeySecretNagSuppression } from '../shared/secret-pattern';
import { validateRequestsPerSecond, validateVendorUrl } from '../shared/validation';

/**
 * Metrics the proxy's access log metric filters publish (namespace `METRICS_NAMESPACE`,
 * dimension `Scope` read from the log line's `scope` field, a literal in the log format).
 */
const PROXY_THROTTLES_METRIC = 'ProxyThrottles';
const VENDOR_THROTTLES_METRIC = 'VendorThrottles';

/**
 * Headers of a SigV4 signature on the proxy hop besides `Authorization` (which API Gateway
 * consumes): the signing time, the caller role's session token and the payload hash. The proxy
 * overwrites each one with REDACTED_HEADER_VALUE before the request goes to the vendor.
 */
export const PROXY_HOP_SIGNING_HEADERS: readonly string[] = ['X-Amz-Date', 'X-Amz-Security-Token', 'X-Amz-Content-Sha256'];
/** What the vendor receives in each PROXY_HOP_SIGNING_HEADERS header (not empty: AWS does not document an empty static value). */
export const REDACTED_HEADER_VALUE = '-';

/**
 * Options for the ThrottledProxy that the orchestrator passes through.
 */
export interface ThrottledProxyOptions {
  /**
   * Steady-state rate limit of the proxy stage, requests per second.
   *
   * Must not exceed the contract; lower it to keep a margin below the contract.
   *
   * @default - the contract (`requestsPerSecond`)
   */
  readonly throttlingRateLimit?: number;

  /**
   * Burst limit of the proxy stage (the size of API Gateway's token bucket).
   *
   * The most requests the proxy lets through in any one second is about rate + burst, so a small
   * burst keeps the safety net tight; but paced requests reach the proxy with the jitter of the
   * hops before it (Express start, the workflow's own states), and a burst of 1 turns two paced
   * requests that arrive close together into a 429 and a retry.
   *
   * In an `AsyncExternalApiOrchestrator` the default follows its pacing point (`deriveRateSettings`):
   * with `PacingPoint.VENDOR_CALL` (its default) requests reach the proxy at their slots, so the bucket
   * holds what paced requests can need plus 100 ms of jitter, `max(2, 1 + ceil(R x (L + 100 ms)))`
   * with `L` the lateness tolerance (3 at 10 RPS, 14 at 100 RPS with the default 30 ms); with
   * `PacingPoint.DISPATCH`, and for a ThrottledProxy used alone, a quarter of the contract absorbs
   * 250 ms of the workflow's jitter, `max(2, ceil(R / 4))`.
   *
   * @default - `max(2, 1 + ceil(R x (L + 100 ms)))` in an orchestrator with `PacingPoint.VENDOR_CALL`; otherwise a quarter of the contract, at least 2
   */
  readonly throttlingBurstLimit?: number;

  /**
   * How the proxy authenticates to the vendor.
   *
   * @default VendorCredentials.none()
   */
  readonly credentials?: VendorCredentials;

  /**
   * Name of the proxy's stage.
   *
   * @default 'vendor'
   */
  readonly stageName?: string;

  /**
   * How long the access logs are kept.
   *
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly accessLogRetention?: logs.RetentionDays;

  /**
   * X-Ray tracing of the proxy's stage (and active tracing of the OAuth token function, if any).
   *
   * @default false
   */
  readonly tracingEnabled?: boolean;

  /**
   * The account's API Gateway quota "Maximum integration timeout in milliseconds" in the proxy's
   * Region. API Gateway refuses integration timeouts above it; set it after raising the quota in
   * Service Quotas (Regional REST APIs: up to 300 seconds, possibly at the price of a lower
   * account-level throttle quota) to allow vendor calls longer than 29 seconds
   * (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
   *
   * @default Duration.seconds(29) - API Gateway's default quota
   */
  readonly integrationTimeoutQuota?: Duration;

  /**
   * Whether to audit the rate at the proxy from its access log, independent of the pacer
   * (README, "Audit"): a CloudWatch Contributor Insights rule counting forwarded requests per
   * calendar second, `metricBusiestSecond()`, an alarm when a second holds more than the contract
   * (`busiestSecondAlarm`), and saved Logs Insights queries. The rule costs USD 0.50 a month plus
   * USD 0.02 per million requests (us-east-1) and takes one of the account's 100 rules per Region.
   *
   * @default true
   */
  readonly accessLogAudit?: boolean;

  /**
   * Audit the paced requests' arrivals on API Gateway's clock: a small Lambda subscribed to the
   * access log publishes how long after its slot each vendor caller request arrived
   * (`VendorArrivalAfterSlot`, see `metricVendorArrivalAfterSlot`) and an alarm fires when their
   * spread exceeds what the lateness tolerance `L` leaves for it (README, "Check it once
   * deployed"). Only requests of the vendor caller (`PacingPoint.VENDOR_CALL`) carry a slot.
   *
   * An `AsyncExternalApiOrchestrator` with `PacingPoint.VENDOR_CALL` always has the audit and
   * fills in `latenessTolerance`; these options tune it there.
   *
   * @default - no audit for a ThrottledProxy used alone; always on in an orchestrator with PacingPoint.VENDOR_CALL
   */
  readonly arrivalAudit?: VendorArrivalAuditOptions;
}

/**
 * Properties for a ThrottledProxy.
 */
export interface ThrottledProxyProps extends ThrottledProxyOptions {
  /**
   * The vendor's job-submission URL (https). Requests to the proxy's root go here; requests to
   * `/{path}` go to `<vendorUrl>/{path}` (e.g. result fetches).
   */
  readonly vendorUrl: string;

  /** The contract: the most requests per second the vendor allows. */
  readonly requestsPerSecond: number;

  /**
   * Value of the `Scope` dimension of the 429 metrics (`ProxyThrottles`, `VendorThrottles` in
   * namespace `CdkAsyncExternalApi`) that metric filters derive from the access logs. An
   * orchestrator passes its own, so all its metrics share one scope. Letters, digits and
   * `. _ : / -`, at most 255 characters.
   *
   * @default - this construct's unique id (`Names.uniqueId`)
   */
  readonly metricsScope?: string;

  /**
   * How long the proxy waits for the vendor before it answers 504 (the integration timeout),
   * 50 milliseconds to `integrationTimeoutQuota`. Callers must not wait longer than this: a call
   * that outlives it ends in the proxy's 504 while the vendor may still be creating the job. An
   * orchestrator sets it to its `vendorCallTimeout`.
   *
   * @default Duration.seconds(29)
   */
  readonly integrationTimeout?: Duration;
}

/**
 * API Gateway REST API in front of the vendor, throttled to the contract (blog step 5).
 *
 * A safety net, not the primary limiter (API Gateway calls its throttling best-effort): the
 * queue consumer paces requests before they get here. Every method uses IAM authorization and a
 * resource policy denies every principal that was not granted with `grantInvoke`, so the proxy
 * is not an open relay. Access logs go to CloudWatch Logs.
 *
 * REST rather than HTTP API: both can be called by Step Functions with IAM (SigV4), but only
 * REST APIs have resource policies (the deny-everyone-else rule), AWS WAF, per-method
 * throttling and request parameter mapping into `Authorization`; the price difference
 * (USD 3.50 vs 1.00 per million in us-east-1) is small next to the vendor's.
 */
export class ThrottledProxy extends Construct {
  /** The REST API. */
  public readonly restApi: apigw.RestApi;
  /** The stage the dispatch workflow calls. */
  public readonly stageName: string;
  /** The stage's steady-state rate limit. */
  public readonly throttlingRateLimit: number;
  /** The stage's burst limit. */
  public readonly throttlingBurstLimit: number;
  /** How the proxy authenticates to the vendor. */
  public readonly credentials: VendorCredentials;
  /**
   * Access log group. One JSON object per request: requestId, requestTime, requestTimeEpoch (when
   * API Gateway received it, epoch ms), httpMethod, resourcePath, path (the requested path, stage
   * included), stage, status, integrationStatus (the
   * vendor's status, `-` when the vendor was not called), errorResponseType, responseLatency,
   * integrationLatency, responseLength, protocol, ip, caller (the caller's IAM ARN), userAgent (the
   * vendor caller's carries its container and slot) and scope (the metrics scope).
   */
  public readonly accessLogGroup: logs.LogGroup;
  /** Value of the `Scope` dimension of the proxy's 429 metrics. */
  public readonly metricsScope: string;
  /** How long the proxy waits for the vendor before it answers 504 (the integration timeout). */
  public readonly integrationTimeout: Duration;
  /**
   * With OAuth client credentials, the function that returns `<token_type> <access_token>` for
   * the vendor (cached until shortly before it expires); the dispatch workflow invokes it before
   * each vendor call.
   *
   * @default - none: the credentials are not OAuth client credentials
   */
  public readonly tokenFunction?: lambda.IFunction;
  /**
   * The function the workflows invoke for the vendor credential before each vendor call: the
   * OAuth token function, or, for a JSON secret (`fromSecretHeader` with `jsonField`), a function
   * (the same code) that reads the secret and returns the field's value. A JSON secret is read in
   * code because a workflow cannot parse it safely: `States.StringToJson` on text that is not
   * JSON, or a missing field, fails the execution with `States.Runtime`, which no Catch handles; the
   * function's `VendorCredentialUnusable` error is caught and the request parked at once.
   *
   * @default - none: no credentials, or a plain-text secret (the workflows read it themselves)
   */
  public readonly credentialFunction?: lambda.IFunction;
  /**
   * Fires when a calendar second at the proxy held more requests forwarded to the vendor than the
   * contract allows (floor(R), or 1 when R < 1), counted from the access log by a Contributor
   * Insights rule (`metricBusiestSecond()`).
   *
   * @default - none when `accessLogAudit` is false
   */
  public readonly busiestSecondAlarm?: cloudwatch.Alarm;
  /**
   * The Contributor Insights rule of the audit: requests forwarded to the vendor per calendar second.
   *
   * @default - none when `accessLogAudit` is false
   */
  public readonly auditRule?: cloudwatch.CfnInsightRule;
  /** Saved Logs Insights queries of the audit (requests per second, busiest seconds, 429s by source); empty when `accessLogAudit` is false. */
  public readonly auditQueries: logs.QueryDefinition[];
  /**
   * The arrival audit (see `arrivalAudit`): its function, subscription filter and spread alarm.
   *
   * @default - none: `arrivalAudit` was not given
   */
  public readonly arrivalAudit?: VendorArrivalAudit;

  private readonly invokerArns: string[] = [];
  private readonly audit?: AccessLogAudit;

  constructor(scope: Construct, id: string, props: ThrottledProxyProps) {
    super(scope, id);

    validateVendorUrl(props.vendorUrl);
    validateRequestsPerSecond(props.requestsPerSecond);
    this.throttlingRateLimit = props.throttlingRateLimit ?? props.requestsPerSecond;
    this.throttlingBurstLimit = props.throttlingBurstLimit ?? Math.max(2, Math.ceil(props.requestsPerSecond / 4));
    if (!(this.throttlingRateLimit > 0) || this.throttlingRateLimit > props.requestsPerSecond) {
      throw new Error(`throttlingRateLimit must be above 0 and at most the contract of ${props.requestsPerSecond} requests per second (given ${this.throttlingRateLimit}): the proxy must never let more through than the vendor allows`);
    }
    if (!Number.isInteger(this.throttlingBurstLimit) || this.throttlingBurstLimit < 1 || this.throttlingBurstLimit > 5000) {
      throw new Error(`throttlingBurstLimit must be a whole number between 1 and 5000 (given ${this.throttlingBurstLimit})`);
    }
    this.credentials = props.credentials ?? VendorCredentials.none();
    this.stageName = props.stageName ?? 'vendor';
    validateMetricsScope(props.metricsScope);
    this.metricsScope = props.metricsScope ?? Names.uniqueId(this);
    this.integrationTimeout = props.integrationTimeout ?? DEFAULT_INTEGRATION_TIMEOUT_QUOTA;
    validateIntegrationTimeout(this.integrationTimeout, props.integrationTimeoutQuota ?? DEFAULT_INTEGRATION_TIMEOUT_QUOTA);

    if (this.credentials.isOAuth && this.credentials.secret) {
      this.tokenFunction = this.createTokenFunction(this.credentials, this.credentials.secret, props.tracingEnabled ?? false);
      this.credentialFunction = this.tokenFunction;
    } else if (this.credentials.secret && this.credentials.jsonField) {
      this.credentialFunction = this.createSecretFieldFunction(this.credentials.secret, this.credentials.jsonField, props.tracingEnabled ?? false);
    } else if (this.credentials.isPerKey) {
      this.credentialFunction = this.createPerKeyCredentialFunction(this.credentials, props.tracingEnabled ?? false);
    }

    this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.accessLogRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.restApi = new apigw.RestApi(this, 'Resource', {
      description: 'Throttled proxy to the vendor API (cdk-async-external-api)',
      // Unique per construct path, so the ApiName metric dimension never mixes two APIs.
      restApiName: Names.uniqueResourceName(this, { maxLength: 128 }),
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      // Execution logging needs an account-wide API Gateway role; access logs do not.
      cloudWatchRole: false,
      deployOptions: {
        stageName: this.stageName,
        throttlingRateLimit: this.throttlingRateLimit,
        throttlingBurstLimit: this.throttlingBurstLimit,
        metricsEnabled: true,
        tracingEnabled: props.tracingEnabled ? true : undefined,
        accessLogDestination: new apigw.LogGroupLogDestination(this.accessLogGroup),
        accessLogFormat: accessLogFormat(this.metricsScope),
      },
      policy: new iam.PolicyDocument({
        statements: [
          new iam.PolicyStatement({
            // Without this Allow, IAM identity policies alone grant same-account callers.
            effect: iam.Effect.ALLOW,
            principals: [new iam.AccountRootPrincipal()],
            actions: ['execute-api:Invoke'],
            resources: ['execute-api:/*'],
          }),
          new iam.PolicyStatement({
            // Not an open relay: everyone not granted with grantInvoke is denied, even with IAM rights.
            effect: iam.Effect.DENY,
            principals: [new iam.AnyPrincipal()],
            actions: ['execute-api:Invoke'],
            resources: ['execute-api:/*'],
            conditions: {
              ArnNotEquals: {
                'aws:PrincipalArn': Lazy.list({ produce: () => (this.invokerArns.length > 0 ? this.invokerArns : ['arn:aws:iam::000000000000:role/no-invoker-granted']) }),
              },
            },
          }),
        ],
      }),
    });

    // HTTP_PROXY passes the caller's headers on to the vendor, and AWS does not document which of
    // the proxy hop's SigV4 headers it strips (it consumes `Authorization` on AWS_IAM methods): the
    // signature's others are overwritten, so the vendor never receives the caller role's session
    // token. Integration request parameters apply to proxy integrations too and a mapped header
    // replaces the one passed through:
    // https://docs.aws.amazon.com/apigateway/latest/developerguide/rest-api-parameter-mapping.html
    const headerMapping: Record<string, string> = {};
    for (const header of PROXY_HOP_SIGNING_HEADERS) {
      headerMapping[`integration.request.header.${header}`] = `'${REDACTED_HEADER_VALUE}'`;
    }
    if (this.credentials.headerName) {
      headerMapping[`integration.request.header.${this.credentials.headerName}`] = `method.request.header.${VENDOR_CREDENTIAL_HEADER}`;
    }
    const methodOptions = (extra: Record<string, boolean>): apigw.MethodOptions => ({
      authorizationType: apigw.AuthorizationType.IAM,
      requestParameters: {
        ...extra,
        ...(this.credentials.headerName ? { [`method.request.header.${VENDOR_CREDENTIAL_HEADER}`]: true } : {}),
      },
    });

    // Root: the job-submission URL itself.
    const rootMethod = this.restApi.root.addMethod('ANY', new apigw.HttpIntegration(props.vendorUrl, {
      proxy: true,
      httpMethod: 'ANY',
      options: { requestParameters: headerMapping, timeout: this.integrationTimeout },
    }), methodOptions({}));

    // Anything below: <vendorUrl>/<path>, for result fetches and other calls to the same vendor.
    const pathMethod = this.restApi.root.addResource('{proxy+}').addMethod('ANY', new apigw.HttpIntegration(`${props.vendorUrl}/{proxy}`, {
      proxy: true,
      httpMethod: 'ANY',
      options: {
        requestParameters: {
          'integration.request.path.proxy': 'method.request.path.proxy',
          ...headerMapping,
        },
        timeout: this.integrationTimeout,
      },
    }), methodOptions({ 'method.request.path.proxy': true }));

    // API Gateway has no 429-only metric: count 429s from the access logs. A 429 that is not the
    // vendor's (integrationStatus is '-' when API Gateway refused before calling the vendor) is
    // the stage's throttling; testing "not 429" rather than "-" also holds if the absent value
    // is ever written differently.
    this.accessLogGroup.addMetricFilter('ProxyThrottlesFilter', {
      filterPattern: logs.FilterPattern.all(
        logs.FilterPattern.stringValue('$.status', '=', '429'),
        logs.FilterPattern.stringValue('$.integrationStatus', '!=', '429'),
      ),
      metricNamespace: METRICS_NAMESPACE,
      metricName: PROXY_THROTTLES_METRIC,
      metricValue: '1',
      // Metric filters take dimension values from log fields only: `scope` is a literal in the format.
      dimensions: { [METRICS_SCOPE_DIMENSION]: '$.scope' },
      unit: cloudwatch.Unit.COUNT,
    });
    this.accessLogGroup.addMetricFilter('VendorThrottlesFilter', {
      filterPattern: logs.FilterPattern.stringValue('$.integrationStatus', '=', '429'),
      metricNamespace: METRICS_NAMESPACE,
      metricName: VENDOR_THROTTLES_METRIC,
      metricValue: '1',
      dimensions: { [METRICS_SCOPE_DIMENSION]: '$.scope' },
      unit: cloudwatch.Unit.COUNT,
    });

    if (props.accessLogAudit ?? true) {
      this.audit = new AccessLogAudit(this, 'Audit', { logGroup: this.accessLogGroup, requestsPerSecond: props.requestsPerSecond });
      this.busiestSecondAlarm = this.audit.alarm;
      this.auditRule = this.audit.rule;
    }
    this.auditQueries = this.audit?.queries ?? [];

    if (props.arrivalAudit) {
      this.arrivalAudit = new VendorArrivalAudit(this, 'ArrivalAudit', {
        ...props.arrivalAudit,
        accessLogGroup: this.accessLogGroup,
        metricsScope: this.metricsScope,
        tracingEnabled: props.tracingEnabled,
      });
    }

    // cdk-nag AwsSolutions: what is not fixed, and why (shipped as resource metadata).
    addNagSuppressions(this.restApi, [{
      id: 'AwsSolutions-APIG2',
      reason: 'The proxy forwards requests that the dispatch workflow builds to the vendor, whose API validates them; only the dispatch workflow may call it (IAM authorization and a resource policy that denies every other principal).',
    }]);
    addNagSuppressions(this.restApi.deploymentStage, [
      { id: 'AwsSolutions-APIG3', reason: NagReasons.APIGW_WAF },
      { id: 'AwsSolutions-APIG6', reason: NagReasons.APIGW_EXECUTION_LOGS },
    ]);
    for (const method of [rootMethod, pathMethod]) {
      addNagSuppressions(method, [{
        id: 'AwsSolutions-COG4',
        reason: 'The proxy is called by an AWS principal (the dispatch workflow role), so it uses IAM authorization (SigV4) and a resource policy; Cognito user pools authenticate end users, not AWS roles.',
      }]);
    }
  }

  /**
   * Lets `grantee` call the proxy: an IAM permission plus a place on the resource policy's
   * allow list. `grantee` must be an IAM role (e.g. a state machine's role).
   */
  public grantInvoke(grantee: iam.IGrantable): iam.Grant {
    const principal = grantee.grantPrincipal;
    if (!(principal instanceof iam.Role) && !iam.Role.isRole(principal)) {
      throw new Error(`grantInvoke needs an IAM role (the proxy's resource policy lists allowed roles), given ${principal.constructor.name}`);
    }
    const roleArn = (principal as iam.IRole).roleArn;
    if (!this.invokerArns.includes(roleArn)) {
      this.invokerArns.push(roleArn);
    }
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [this.restApi.arnForExecuteApi('*', '/*', this.stageName)],
    });
  }

  /** Requests the proxy answered with 4xx, throttling (429) included. */
  public metricClientErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.restApi.metricClientError(props);
  }

  /** Requests the proxy answered with 5xx (vendor errors and integration failures). */
  public metricServerErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.restApi.metricServerError(props);
  }

  /** Requests through the proxy. */
  public metricCount(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.restApi.metricCount(props);
  }

  /**
   * Requests the proxy refused with 429 before calling the vendor (its stage throttling),
   * counted from the access logs by a metric filter: metric `ProxyThrottles`.
   *
   * @default - sum over 5 minutes
   */
  public metricProxyThrottles(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, PROXY_THROTTLES_METRIC, 'Sum', props);
  }

  /**
   * Requests the vendor answered with 429, counted from the access logs by a metric filter:
   * metric `VendorThrottles`.
   *
   * @default - sum over 5 minutes
   */
  public metricVendorThrottles(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, VENDOR_THROTTLES_METRIC, 'Sum', props);
  }

  /**
   * The busiest calendar second of each period at the proxy: requests forwarded to the vendor, from
   * the access log (Contributor Insights `MaxContributorValue`; API Gateway's clock, independent
   * of the pacer). A lower bound of the busiest sliding 1-second window (README, "Audit"). A math
   * expression (`INSIGHT_RULE_METRIC`): of `props`, `period` and `label` apply.
   *
   * @default - one minute
   */
  public metricBusiestSecond(props?: cloudwatch.MetricOptions): cloudwatch.IMetric {
    if (!this.audit) {
      throw new Error(`metricBusiestSecond needs the access log audit, which is off for ${this.node.path} (accessLogAudit: false): turn it on or drop the metric`);
    }
    return this.audit.metricBusiestSecond({ period: props?.period, label: props?.label });
  }

  /**
   * How long after its pacing slot each vendor caller request reached the proxy, on API Gateway's
   * clock (`requestTimeEpoch - slot`), in milliseconds: fire lateness + caller -> proxy latency +
   * the caller's clock offset. Custom metric `VendorArrivalAfterSlot`, published by the arrival
   * audit (`arrivalAudit`); negative values mean a caller's clock runs ahead.
   *
   * @default - maximum over 5 minutes
   */
  public metricVendorArrivalAfterSlot(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return arrivalAfterSlotMetric(this.metricsScope, props);
  }

  /**
   * The spread of `VendorArrivalAfterSlot` (maximum - minimum per period), in milliseconds: what
   * the lateness tolerance `L` must cover up to the proxy. The arrival audit's alarm fires when it
   * exceeds `L - spreadAfterProxy`.
   *
   * @default - over 1 minute
   */
  public metricVendorArrivalSpread(props?: cloudwatch.MathExpressionOptions): cloudwatch.MathExpression {
    return arrivalSpreadExpression(this.metricsScope, props);
  }

  private createTokenFunction(credentials: VendorCredentials, secret: secretsmanager.ISecret, tracingEnabled: boolean): lambda.IFunction {
    // Names as in vendor-token.ts (not imported: it bundles the AWS SDK, a devDependency).
    const environment: Record<string, string> = {
      SECRET_ARN: secret.secretArn,
      TOKEN_URL: credentials.oauthTokenUrl!,
      CLIENT_AUTHENTICATION: credentials.oauthClientAuthentication ?? 'BASIC',
      POWERTOOLS_SERVICE_NAME: 'vendor-token',
    };
    if (credentials.oauthScope !== undefined) {
      environment.SCOPE = credentials.oauthScope;
    }
    if (credentials.oauthAudience !== undefined) {
      environment.AUDIENCE = credentials.oauthAudience;
    }
    return this.createCredentialCodeFunction('TokenFunction', 'Gets OAuth 2.0 access tokens for the vendor (client credentials grant)',
      secret, environment, tracingEnabled);
  }

  /** The token function's code in its JSON secret mode (see `credentialFunction`). */
  private createSecretFieldFunction(secret: secretsmanager.ISecret, jsonField: string, tracingEnabled: boolean): lambda.IFunction {
    // Names as in vendor-secret.ts (not imported: it bundles the AWS SDK, a devDependency).
    return this.createCredentialCodeFunction('CredentialFunction', 'Reads the vendor credential from a field of a JSON secret, checking the secret\'s shape',
      secret, { SECRET_ARN: secret.secretArn, SECRET_FIELD: jsonField, POWERTOOLS_SERVICE_NAME: 'vendor-credential' }, tracingEnabled);
  }

  /**
   * The token function's code in its per-key mode (`fromSecretHeaderPerKey`, issue 15): it reads
   * the secret the request's key names, so it is allowed GetSecretValue on every name the pattern
   * matches: `{key}` becomes `*`, and `-??????` matches the six random characters Secrets Manager
   * appends to a secret's ARN
   * (https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_examples.html,
   * "wildcard" and the ARN suffix).
   */
  private createPerKeyCredentialFunction(credentials: VendorCredentials, tracingEnabled: boolean): lambda.IFunction {
    // Names as in vendor-secret-per-key.ts (not imported: it is handler code).
    const environment: Record<string, string> = {
      SECRET_NAME_PATTERN: credentials.secretNamePattern!,
      CACHE_TTL_SECONDS: String(credentials.cacheTtl!.toSeconds()),
      POWERTOOLS_SERVICE_NAME: 'vendor-credential',
    };
    if (credentials.jsonField) {
      environment.SECRET_FIELD = credentials.jsonField;
    }
    const fn = this.createCredentialCodeFunction('CredentialFunction', 'Reads the vendor credential of a request key from the key\'s secret (cached per key)',
      undefined, environment, tracingEnabled);
    const resource = perKeySecretArnPattern(this, credentials.secretNamePattern!);
    fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [resource] }));
    credentials.encryptionKey?.grantDecrypt(fn);
    addRolePolicyNagSuppressions(fn.role, [perKeySecretNagSuppression(credentials.secretNamePattern!,
      'Per-key vendor credentials: the function reads the secret named by each request\'s key, and keys (customers) are added at run time without a deploy, so the grant covers the secret name pattern (the key as *) and nothing else.')]);
    return fn;
  }

  /** One function of the token bundle (`id` also names its log group `<id>Logs`), allowed to read `secret`. */
  private createCredentialCodeFunction(
    id: string, description: string, secret: secretsmanager.ISecret | undefined, environment: Record<string, string>, tracingEnabled: boolean,
  ): lambda.Function {
    const fn = new VendorTokenFunction(this, id, {
      description,
      timeout: Duration.seconds(10),
      memorySize: 128,
      tracing: tracingEnabled ? lambda.Tracing.ACTIVE : undefined,
      logGroup: new logs.LogGroup(this, `${id}Logs`, {
        retention: logs.RetentionDays.THREE_MONTHS,
        removalPolicy: RemovalPolicy.RETAIN,
      }),
      environment,
    });
    secret?.grantRead(fn);
    addFunctionNagSuppressions(fn, { tracing: tracingEnabled });
    return fn;
  }

}

/**
 * The access log format: JSON with what an operator needs to tell the proxy's 429s from the
 * vendor's, plus the metrics scope as a literal (metric filters read dimensions from log fields).
 * Every value is quoted: API Gateway writes `-` for a value it does not have.
 */
function accessLogFormat(metricsScope: string): apigw.AccessLogFormat {
  return apigw.AccessLogFormat.custom(JSON.stringify({
    requestId: '$context.requestId',
    requestTime: '$context.requestTime',
    // When API Gateway received the request, epoch ms, by its own clock: with the vendor caller's
    // slot in userAgent, one clock for every caller's lateness (README, "check it once deployed").
    // https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-variables-for-access-logging.html
    requestTimeEpoch: '$context.requestTimeEpoch',
    httpMethod: '$context.httpMethod',
    resourcePath: '$context.resourcePath',
    // The path the caller requested (resourcePath is `/{proxy+}`), stage included on the
    // execute-api URL (`/{stage}/results/42`): the audit per named limit matches on it, with stage.
    // https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-variables-for-access-logging.html
    path: '$context.path',
    stage: '$context.stage',
    status: '$context.status',
    integrationStatus: '$context.integration.status',
    errorResponseType: '$context.error.responseType',
    responseLatency: '$context.responseLatency',
    integrationLatency: '$context.integration.latency',
    responseLength: '$context.responseLength',
    protocol: '$context.protocol',
    ip: '$context.identity.sourceIp',
    caller: '$context.identity.userArn',
    userAgent: '$context.identity.userAgent',
    scope: metricsScope,
  }));
}
