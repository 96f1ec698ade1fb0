import { Annotations, Names, Duration, RemovalPolicy, Size, Stack, Token } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { CallbackProcessorFunction } from './callback-processor-function';
import { parseSimplePath } from './json-path';
import { CALLBACK_ERROR_RESPONSE, CALLBACK_QUEUE_MAX_MESSAGE_BYTES, CALLBACK_QUEUED_RESPONSE_TEMPLATE, callbackRequestTemplate } from './mapping-template';
import { WebhookAuthentication } from './webhook-authentication';
import { customMetric, POWERTOOLS_METRICS_NAMESPACE_ENV, validateMetricsScope } from '../shared/custom-metrics';
import { CallbackEnv } from '../shared/env';
import { METRICS_NAMESPACE, METRICS_SCOPE_ENV, MetricNames } from '../shared/metrics';
import { addFunctionNagSuppressions, addNagSuppressions, addRolePolicyNagSuppressions, NagReasons, TABLE_INDEX_FINDING, wildcardSuppressions } from '../shared/nag';
import { createWorkQueue } from '../shared/queues';
import { validateWholeNumber } from '../shared/validation';
import { ITokenCorrelationTable } from '../token-correlation-table/token-correlation-table';

/**
 * Options for the CallbackWebhook that the orchestrator passes through.
 */
export interface CallbackWebhookOptions {
  /**
   * Where the job id is in the vendor's callback body: `$.jobId`, `$.data.job.id`, `$.items[0].id`.
   *
   * @default '$.jobId'
   */
  readonly jobIdPath?: string;

  /**
   * Where the job's status is in the callback body. When set, a callback whose status is one of
   * `failureStatusValues` fails the waiting workflow (error `VendorJobFailed`) instead of
   * resuming it.
   *
   * @default - every callback is a success
   */
  readonly statusPath?: string;

  /**
   * Status values that mean the vendor's job failed (compared as strings).
   *
   * @default ['FAILED', 'ERROR']
   */
  readonly failureStatusValues?: string[];

  /**
   * Receives before a callback that cannot be matched to a request (its job id is not stored
   * yet) is parked in the dead-letter queue. Each retry waits longer (2, 4, 8 ... up to 300
   * seconds, with jitter), so 10 receives give the dispatch side about 15 minutes.
   *
   * @default 10
   */
  readonly maxReceiveCount?: number;

  /**
   * Steady-state rate limit of the webhook stage, requests per second.
   *
   * @default - four times the contract, at least 50
   */
  readonly throttlingRateLimit?: number;

  /**
   * Burst limit of the webhook stage.
   *
   * @default - the same as the rate limit, rounded up
   */
  readonly throttlingBurstLimit?: number;

  /**
   * Name of the webhook's stage.
   *
   * @default 'webhook'
   */
  readonly stageName?: string;

  /**
   * Customer-managed KMS key for the callback queue and its dead-letter queue.
   *
   * @default - SQS-managed encryption (SSE-SQS)
   */
  readonly encryptionKey?: kms.IKey;

  /**
   * How long access logs and the processor's logs are kept.
   *
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * X-Ray tracing of the webhook's stage and active tracing of the callback processor.
   *
   * @default false
   */
  readonly tracingEnabled?: boolean;

  /**
   * How callbacks are authenticated. The default gives each request its own capability URL
   * (`<url>/<token>`, 256 random bits stored with the request); add a vendor signature with
   * `WebhookAuthentication.capabilityUrl(WebhookSignature.stripe(secret))` and the like.
   * A callback that fails authentication resumes nothing: it is parked in the dead-letter queue
   * with reason `CallbackRejected` and counted in `metricCallbacksRejected()`.
   *
   * @default WebhookAuthentication.capabilityUrl()
   */
  readonly authentication?: WebhookAuthentication;

  /**
   * Largest callback body. A larger authenticated callback is parked in the dead-letter queue
   * (reason `PAYLOAD_TOO_LARGE`) and its waiting workflow fails with `CallbackTooLarge`.
   * At most 180 KiB: the result (`{ jobId, result }`) must fit Step Functions' 256 KiB task output.
   * Bodies up to about 729 KiB reach the processor whole (the callback queue allows 1 MiB messages
   * and the body travels base64-encoded); larger ones (API Gateway accepts up to 10 MB) are dropped
   * at the webhook, which answers 413: with capability URLs the waiting workflow still fails at once
   * with `CallbackTooLarge`, with a signature only the callback is parked unverified (see
   * docs/security.md).
   *
   * @default Size.kibibytes(180)
   */
  readonly maxPayloadSize?: Size;

  /**
   * ARN of an AWS WAF web ACL (scope `REGIONAL`) to associate with the webhook's stage, e.g. one
   * with a rate-based rule per source IP (see docs/security.md). Pass `webAcl.attrArn` of a
   * `wafv2.CfnWebACL`, or the ARN of one managed elsewhere.
   *
   * @default - no web ACL: the stage's throttling and the processor's authentication protect the webhook
   */
  readonly webAclArn?: string;
}

/**
 * Properties for a CallbackWebhook.
 */
export interface CallbackWebhookProps extends CallbackWebhookOptions {
  /** Where the dispatch side stored job ids and task tokens. */
  readonly table: ITokenCorrelationTable;

  /**
   * The contract, used to size the webhook's throttling.
   *
   * @default - throttling defaults for 10 requests per second
   */
  readonly requestsPerSecond?: number;

  /**
   * Value of the `Scope` dimension of the callback processor's custom metrics (namespace
   * `CdkAsyncExternalApi`). An orchestrator passes its own, so all its metrics share one scope.
   * Letters, digits and `. _ : / -`, at most 255 characters.
   *
   * @default - this construct's unique id (`Names.uniqueId`)
   */
  readonly metricsScope?: string;
}

/** The path the vendor calls back on. */
const CALLBACK_PATH = 'callback';
/** Largest `maxPayloadSize`, bytes (see the prop). */
const MAX_PAYLOAD_BYTES = 180 * 1024;
const PROCESSOR_TIMEOUT = Duration.seconds(30);

/**
 * The vendor's callback endpoint (blog steps 8-10).
 *
 * `POST <url>` with a JSON body goes straight from API Gateway to the callback queue through a
 * mapping template, and the vendor gets `202 Accepted` at once: no Lambda on the webhook's hot
 * path. The callback processor then finds the waiting workflow by job id and resumes it
 * (SendTaskSuccess with `{ jobId, result }`) or fails it (SendTaskFailure `VendorJobFailed`).
 * Callbacks whose job id is not stored yet are retried with backoff; callbacks that can never
 * succeed are parked in the dead-letter queue, which has an alarm.
 */
export class CallbackWebhook extends Construct {
  /** The webhook's REST API. */
  public readonly restApi: apigw.RestApi;
  /**
   * The URL the vendor calls back on. With capability URLs (the default) each request's vendor
   * call carries `<url>/<token>`, and `<url>` alone answers 403.
   */
  public readonly url: string;
  /** Whether callbacks must come on their request's capability URL (`<url>/<token>`). */
  public readonly capabilityUrls: boolean;
  /** Largest callback body accepted, in bytes. */
  public readonly maxPayloadBytes: number;
  /** The callback queue. */
  public readonly queue: sqs.Queue;
  /** Where callbacks that cannot be processed are parked. */
  public readonly deadLetterQueue: sqs.Queue;
  /** Fires when a callback is parked in the dead-letter queue. */
  public readonly deadLetterAlarm: cloudwatch.Alarm;
  /** The callback processor. */
  public readonly processor: lambda.Function;
  /** Access log group of the webhook. */
  public readonly accessLogGroup: logs.LogGroup;
  /** Value of the `Scope` dimension of the callback processor's custom metrics. */
  public readonly metricsScope: string;

  constructor(scope: Construct, id: string, props: CallbackWebhookProps) {
    super(scope, id);

    const jobIdPath = props.jobIdPath ?? '$.jobId';
    checkPath('jobIdPath', jobIdPath);
    if (props.statusPath !== undefined) {
      checkPath('statusPath', props.statusPath);
    }
    const failureStatusValues = props.failureStatusValues ?? ['FAILED', 'ERROR'];
    if (props.failureStatusValues !== undefined && props.statusPath === undefined) {
      throw new Error(`failureStatusValues (given ${JSON.stringify(props.failureStatusValues)}) needs statusPath: say where the status is in the callback body`);
    }
    validateWholeNumber('maxReceiveCount', props.maxReceiveCount, 1, 1000);
    const rps = props.requestsPerSecond ?? 10;
    const rateLimit = props.throttlingRateLimit ?? Math.max(50, 4 * rps);
    const burstLimit = props.throttlingBurstLimit ?? Math.ceil(rateLimit);
    if (!(rateLimit > 0)) {
      throw new Error(`throttlingRateLimit must be above 0 (given ${rateLimit})`);
    }
    validateWholeNumber('throttlingBurstLimit', burstLimit, 1, 5000);
    validateMetricsScope(props.metricsScope);
    this.metricsScope = props.metricsScope ?? Names.uniqueId(this);
    const authentication = props.authentication ?? WebhookAuthentication.capabilityUrl();
    this.capabilityUrls = authentication.capabilityUrls;
    const signature = authentication.signature;
    if (!authentication.capabilityUrls && !signature) {
      Annotations.of(this).addWarningV2('cdk-async-external-api:webhookUnauthenticated',
        'The callback webhook does not authenticate callbacks (WebhookAuthentication.none()): anyone who learns or guesses a job id can resume '
        + 'or fail the waiting workflow with a body of their choice. Use the default capability URLs or a vendor signature.');
    }
    this.maxPayloadBytes = props.maxPayloadSize?.toBytes() ?? MAX_PAYLOAD_BYTES;
    const payloadBytes = this.maxPayloadBytes;
    if (!Token.isUnresolved(payloadBytes) && (!Number.isInteger(payloadBytes) || payloadBytes < 1 || payloadBytes > MAX_PAYLOAD_BYTES)) {
      throw new Error(`maxPayloadSize must be between 1 byte and 180 KiB (given ${this.maxPayloadBytes} bytes): the callback becomes a task output, which Step Functions limits to 256 KiB`);
    }

    const work = createWorkQueue(this, 'Callback', {
      // AWS recommends six times the consumer's timeout.
      visibilityTimeout: Duration.seconds(PROCESSOR_TIMEOUT.toSeconds() * 6),
      maxReceiveCount: props.maxReceiveCount ?? 10,
      encryptionKey: props.encryptionKey,
      // SQS's largest message (1 MiB; the default is 256 KiB): the envelope holds the body base64-encoded
      // (4/3 of its size), so bodies up to about 729 KiB reach the processor, which verifies them and
      // fails an authentic callback over maxPayloadSize with CallbackTooLarge. Larger bodies are dropped
      // by the mapping template. Changing the attribute updates the queues in place (no replacement).
      // Lambda still gets at most 6 MB per batch: https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html
      // (BatchSize). Quotas: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html
      maxMessageSizeBytes: CALLBACK_QUEUE_MAX_MESSAGE_BYTES,
    });
    this.queue = work.queue;
    this.deadLetterQueue = work.deadLetterQueue;
    this.deadLetterAlarm = work.deadLetterAlarm;

    this.processor = new CallbackProcessorFunction(this, 'Processor', {
      description: 'Resumes the workflow waiting for a vendor callback',
      timeout: PROCESSOR_TIMEOUT,
      memorySize: 256,
      tracing: props.tracingEnabled ? lambda.Tracing.ACTIVE : undefined,
      logGroup: new logs.LogGroup(this, 'ProcessorLogs', {
        retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
        removalPolicy: RemovalPolicy.RETAIN,
      }),
      environment: {
        [CallbackEnv.TABLE_NAME]: props.table.tableName,
        [CallbackEnv.JOB_ID_INDEX_NAME]: props.table.jobIdIndexName,
        [CallbackEnv.JOB_ID_PATH]: jobIdPath,
        [CallbackEnv.STATUS_PATH]: props.statusPath ?? '',
        [CallbackEnv.FAILURE_STATUS_VALUES]: JSON.stringify(failureStatusValues),
        [CallbackEnv.DEAD_LETTER_QUEUE_URL]: this.deadLetterQueue.queueUrl,
        [CallbackEnv.REQUIRE_CALLBACK_TOKEN]: String(authentication.capabilityUrls),
        [CallbackEnv.MAX_PAYLOAD_BYTES]: String(this.maxPayloadBytes),
        ...(signature ? {
          [CallbackEnv.WEBHOOK_SIGNATURE]: JSON.stringify(signature._spec),
          [CallbackEnv.WEBHOOK_SIGNATURE_SECRET_ARN]: signature.secret.secretArn,
        } : {}),
        POWERTOOLS_SERVICE_NAME: 'callback-processor',
      },
    });
    // Custom metrics (Powertools Metrics, EMF): one scope per orchestrator or standalone webhook.
    this.processor.addEnvironment(METRICS_SCOPE_ENV, this.metricsScope);
    this.processor.addEnvironment(POWERTOOLS_METRICS_NAMESPACE_ENV, METRICS_NAMESPACE);
    props.table.grantResolveCallbacks(this.processor);
    signature?.secret.grantRead(this.processor);
    this.deadLetterQueue.grantSendMessages(this.processor);
    this.processor.addEventSource(new SqsEventSource(this.queue, {
      batchSize: 10,
      reportBatchItemFailures: true,
    }));

    this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const stageName = props.stageName ?? 'webhook';
    this.restApi = new apigw.RestApi(this, 'Resource', {
      description: 'Vendor callback webhook (cdk-async-external-api)',
      // Unique per construct path, so the ApiName metric dimension never mixes two APIs.
      restApiName: Names.uniqueResourceName(this, { maxLength: 128 }),
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      cloudWatchRole: false,
      deployOptions: {
        stageName,
        throttlingRateLimit: rateLimit,
        throttlingBurstLimit: burstLimit,
        metricsEnabled: true,
        tracingEnabled: props.tracingEnabled ? true : undefined,
        accessLogDestination: new apigw.LogGroupLogDestination(this.accessLogGroup),
        accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields(),
      },
    });

    const integrationRole = new iam.Role(this, 'IntegrationRole', {
      assumedBy: new iam.ServicePrincipal('apigateway.amazonaws.com'),
      description: 'Lets the callback webhook put callbacks on the callback queue',
    });
    this.queue.grantSendMessages(integrationRole);

    const stack = Stack.of(this);
    const integration = new apigw.AwsIntegration({
      service: 'sqs',
      path: `${stack.account}/${this.queue.queueName}`,
      integrationHttpMethod: 'POST',
      options: {
        credentialsRole: integrationRole,
        // Only JSON callbacks have a template; anything else is refused with 415, not queued.
        passthroughBehavior: apigw.PassthroughBehavior.NEVER,
        requestParameters: {
          'integration.request.header.Content-Type': "'application/x-www-form-urlencoded'",
        },
        requestTemplates: {
          'application/json': callbackRequestTemplate({ tokenFromPath: authentication.capabilityUrls, jobIdPath: parseSimplePath(jobIdPath) }),
        },
        integrationResponses: [
          {
            // 202, or 413 when the body was too large to queue and was dropped (the template says).
            statusCode: '202',
            selectionPattern: '2\\d{2}',
            responseTemplates: { 'application/json': CALLBACK_QUEUED_RESPONSE_TEMPLATE },
          },
          {
            statusCode: '500',
            selectionPattern: '(4|5)\\d{2}',
            responseTemplates: { 'application/json': CALLBACK_ERROR_RESPONSE },
          },
        ],
      },
    });
    // Capability URLs: only POST /callback/{token} exists; the bare /callback answers API Gateway's 403
    // and never reaches the queue. Otherwise the bare POST /callback is the one route.
    const callbackResource = this.restApi.root.addResource(CALLBACK_PATH);
    const callbackRoute = authentication.capabilityUrls ? callbackResource.addResource('{token}') : callbackResource;
    const callbackMethod = callbackRoute.addMethod('POST', integration, {
      methodResponses: [{ statusCode: '202' }, { statusCode: '413' }, { statusCode: '500' }],
    });
    this.url = this.restApi.urlForPath(`/${CALLBACK_PATH}`);

    if (props.webAclArn !== undefined) {
      if (!Token.isUnresolved(props.webAclArn) && !/^arn:aws[a-z-]*:wafv2:[a-z0-9-]+:\d{12}:regional\/webacl\/.+/.test(props.webAclArn)) {
        throw new Error(`webAclArn must be the ARN of a REGIONAL AWS WAF web ACL, arn:aws:wafv2:<region>:<account>:regional/webacl/<name>/<id> (given '${props.webAclArn}')`);
      }
      new wafv2.CfnWebACLAssociation(this, 'WebAclAssociation', {
        resourceArn: this.restApi.deploymentStage.stageArn,
        webAclArn: props.webAclArn,
      });
    }

    // cdk-nag AwsSolutions: what is not fixed, and why (shipped as resource metadata).
    const usesKmsKey = props.encryptionKey !== undefined || props.table.table.encryptionKey !== undefined;
    addFunctionNagSuppressions(this.processor, { tracing: props.tracingEnabled, kms: usesKmsKey });
    addRolePolicyNagSuppressions(this.processor.role, [{ id: 'AwsSolutions-IAM5', reason: NagReasons.TABLE_INDEX, appliesTo: [TABLE_INDEX_FINDING] }]);
    addRolePolicyNagSuppressions(integrationRole, wildcardSuppressions({ kms: props.encryptionKey !== undefined }));
    addNagSuppressions(this.restApi, [{
      id: 'AwsSolutions-APIG2',
      reason: 'The callback body is the vendor\'s format: only application/json is accepted (anything else gets 415), and the callback processor validates the body and parks a malformed callback in the dead-letter queue with its reason, where a request validator would answer 400 and lose it.',
    }]);
    addNagSuppressions(this.restApi.deploymentStage, [
      {
        id: 'AwsSolutions-APIG3',
        reason: props.webAclArn === undefined
          ? NagReasons.APIGW_WAF
          : 'The web ACL given as webAclArn is associated with this stage (WebAclAssociation); its ARN may not be one cdk-nag can follow.',
      },
      { id: 'AwsSolutions-APIG6', reason: NagReasons.APIGW_EXECUTION_LOGS },
    ]);
    const noAuthorizer = authentication.capabilityUrls
      ? 'The vendor calls without AWS credentials or a Cognito identity. Callbacks are authenticated by the callback processor instead: each request has its own capability URL (/callback/<256-bit random token>), compared in constant time with the token stored for the job'
        + (signature ? ', plus the vendor\'s HMAC-SHA256 signature over the raw body' : '') + '; a rejected callback resumes nothing and is parked and counted. An authorizer Lambda would add a hop and cost without adding a check.'
      : signature
        ? 'The vendor calls without AWS credentials or a Cognito identity. Callbacks are authenticated by the callback processor: the vendor\'s HMAC-SHA256 signature over the raw body (secret in Secrets Manager) is verified; a rejected callback resumes nothing and is parked and counted.'
        : 'Authentication was turned off on purpose (WebhookAuthentication.none(), which warns at synth time): the vendor calls without AWS credentials, signature or capability URL.';
    addNagSuppressions(callbackMethod, [
      { id: 'AwsSolutions-APIG4', reason: noAuthorizer },
      { id: 'AwsSolutions-COG4', reason: noAuthorizer },
    ]);
  }

  /**
   * Lets the callback processor resume (SendTaskSuccess / SendTaskFailure) tasks of
   * `stateMachine`. Least privilege: only the workflows granted here can be resumed.
   */
  public grantResume(stateMachine: sfn.IStateMachine): iam.Grant {
    return stateMachine.grantTaskResponse(this.processor);
  }

  /**
   * Frees a job's place in flight when its callback arrives (VendorContract.maxJobsInFlight): the
   * processor removes the request's place from `pacerTable` (the queue consumer's, see
   * `RateControlledQueueConsumer.limitJobsInFlight`) for every authenticated callback of a known
   * job, success or failure, late or not. Called once.
   *
   * @param pacerTable the table holding the places
   * @param owner with a pacer table shared by several orchestrators (`VendorContractState`): the
   * key of this orchestrator's places, the same its consumer uses (its request queue's ARN); none
   * when the table is this orchestrator's own
   */
  public freeJobPlacesIn(pacerTable: dynamodb.ITable, owner?: string): void {
    this.processor.addEnvironment(CallbackEnv.JOB_PLACES_TABLE_NAME, pacerTable.tableName);
    if (owner) {
      this.processor.addEnvironment(CallbackEnv.SHARED_STATE_OWNER, owner);
    }
    pacerTable.grant(this.processor, 'dynamodb:UpdateItem');
  }

  /** Callbacks waiting in the callback queue. */
  public metricCallbacksWaiting(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.queue.metricApproximateNumberOfMessagesVisible(props);
  }

  /** Callbacks parked in the dead-letter queue. */
  public metricDeadLetterMessages(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.deadLetterQueue.metricApproximateNumberOfMessagesVisible(props);
  }

  /** Webhook requests answered with 5xx. */
  public metricServerErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.restApi.metricServerError(props);
  }

  /**
   * Callbacks that resumed or failed a waiting workflow, custom metric `CallbacksResolved`.
   *
   * @default - sum over 5 minutes
   */
  public metricCallbacksResolved(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.CALLBACKS_RESOLVED, 'Sum', props);
  }

  /**
   * Callbacks refused and parked in the dead-letter queue (malformed, no job id, too large),
   * custom metric `CallbacksRejected`.
   *
   * @default - sum over 5 minutes
   */
  public metricCallbacksRejected(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.CALLBACKS_REJECTED, 'Sum', props);
  }

  /**
   * Callbacks for a workflow that had already ended (timed out, failed), custom metric
   * `LateCallbacks`.
   *
   * @default - sum over 5 minutes
   */
  public metricLateCallbacks(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.LATE_CALLBACKS, 'Sum', props);
  }

  /**
   * Repeated callbacks for a request already resumed, custom metric `DuplicateCallbacks`.
   *
   * @default - sum over 5 minutes
   */
  public metricDuplicateCallbacks(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.DUPLICATE_CALLBACKS, 'Sum', props);
  }

  /**
   * Callbacks that arrived before their job id was stored (retried with backoff), custom metric
   * `EarlyCallbacks`.
   *
   * @default - sum over 5 minutes
   */
  public metricEarlyCallbacks(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.EARLY_CALLBACKS, 'Sum', props);
  }

  /**
   * Time from the callback's arrival at the webhook to the waiting workflow resumed, in
   * milliseconds, custom metric `CallbackLatency`.
   *
   * @default - average over 5 minutes
   */
  public metricCallbackLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return customMetric(this.metricsScope, MetricNames.CALLBACK_LATENCY, 'Average', props);
  }
}

function checkPath(name: string, path: string): void {
  try {
    parseSimplePath(path);
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`);
  }
}
