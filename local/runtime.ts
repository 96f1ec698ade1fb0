/**
 * The local runtime: executes a synthesized stack that contains the orchestrator on loopback.
 *
 * It reads the template and runs what it says: queues and tables are created from their
 * resources, state machines run their own definitions, the REST APIs route, throttle, authorize
 * and render mapping templates from their own methods and stages, and the Lambda functions are
 * the bundled handlers from the cloud assembly, polled by event source mappings built from the
 * template's. Nothing here re-describes the system: change the library and the local behaviour
 * changes with it. Anything in the template it cannot execute stops the start with an error.
 */
import * as fs from 'fs';
import { ReceiveMessageCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { Stack } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { ApiGatewayHost } from './aws/apigateway-host';
import { LocalAppConfig } from './aws/appconfig';
import { startDynamoDb, createTables } from './aws/dynamodb';
import { SqsEventSourcePoller } from './aws/event-source-mapping';
import { LocalLambda } from './aws/lambda';
import { LocalLogSubscriptions } from './aws/logs-subscriptions';
import { LocalScheduler } from './aws/scheduler';
import { startSecretsManager } from './aws/secrets-manager';
import { createQueues, startSqs } from './aws/sqs';
import { LocalStepFunctions } from './aws/stepfunctions';
import { FaultInjector } from './faults';
import { LocalTemplate } from './template';
import { LOCAL_CREDENTIALS, LOCAL_REGION, LocalEndpoints, rewriteHost, UrlRewriter } from './types';

export interface LocalRuntimeOptions {
  /** The cloud assembly directory (cdk.out) holding the synthesized stack and its assets. */
  readonly assemblyDir: string;
  /** The stack to run. */
  readonly stackName: string;
  /**
   * Hosts outside AWS and where they are served locally, e.g. the vendor:
   * `{ 'vendor.example.com': 'http://127.0.0.1:40123' }`.
   */
  readonly hostMap?: Record<string, string>;
  /** Secret values by logical id, name or ARN. */
  readonly secrets?: Record<string, string>;
  /** Where the handlers' logs go (default: discarded). */
  readonly logFile?: string;
  /** Extra environment for every function, e.g. POWERTOOLS_LOG_LEVEL. */
  readonly functionEnv?: Record<string, string>;
  // --- scheduler (low-rate mode): begin ---
  /**
   * Divides the period of every `AWS::Scheduler::Schedule` (default 1: real time), e.g. 60 makes
   * `rate(1 minute)` tick every second. Functions still run in real time. For no timers at all,
   * call `runtime.scheduler.tickAll()` (see local/aws/scheduler.ts).
   */
  readonly scheduleSpeedup?: number;
  /** Whether schedules tick on timers (default true); false leaves ticking to `scheduler.tickAll()`. */
  readonly scheduleTimers?: boolean;
  // --- scheduler (low-rate mode): end ---
  /** Fault injection (local/faults.ts): throttling answers and crashes. Default: none. */
  readonly faults?: FaultInjector;
  /**
   * The account's Lambda concurrency quota: the runtime refuses to start a template whose
   * reserved concurrency Lambda would refuse at deploy time. Pass 10 to check that a stack deploys
   * in a new account. Default 1000 (the usual quota).
   */
  readonly accountConcurrency?: number;
  /**
   * Whether `stop()` also deletes `assemblyDir` (the demo, the benchmark and the fault suite
   * synthesize into a temporary directory of their own: a few MB of asset copies per run, which
   * repeated runs used to leave behind). Default false: the caller's directory is its own.
   */
  readonly removeAssemblyDirOnStop?: boolean;
}

type Stoppable = { stop(): Promise<void> | void };

export class LocalRuntime {
  public static async start(options: LocalRuntimeOptions): Promise<LocalRuntime> {
    const runtime = new LocalRuntime(options);
    try {
      await runtime.boot();
    } catch (error) {
      await runtime.stop();
      throw error;
    }
    return runtime;
  }

  public template!: LocalTemplate;
  public sfn!: LocalStepFunctions;
  /** The REST APIs, served from their own worker thread (see local/aws/apigateway-host.ts). */
  public apiGateway!: ApiGatewayHost;
  public lambda!: LocalLambda;
  public poller!: SqsEventSourcePoller;
  /** Fires the stack's EventBridge Scheduler schedules (low-rate mode). */
  public scheduler!: LocalScheduler;
  public endpoints!: LocalEndpoints;
  /** Local AppConfig (dynamic delay): the template's hosted configurations and deployments. */
  public appConfig!: LocalAppConfig;
  /** CloudWatch Logs subscription filters on the access logs (the proxy's arrival audit); `flush()` delivers at once. */
  public logSubscriptions!: LocalLogSubscriptions;

  private readonly stoppables: Stoppable[] = [];
  private readonly hostMap: Record<string, string>;
  private secrets!: Awaited<ReturnType<typeof startSecretsManager>>;

  private constructor(private readonly options: LocalRuntimeOptions) {
    this.hostMap = { ...options.hostMap };
  }

  private apiRewriter: UrlRewriter = (url) => url;

  /** Serves `host` (e.g. the vendor's) from `base` from now on. */
  public mapHost(host: string, base: string): void {
    this.hostMap[host] = base;
    this.apiGateway?.setHostMap({ ...this.hostMap });
  }

  /** Maps an AWS or external URL to the loopback URL that serves it. */
  public rewriteUrl(url: string): string {
    const viaApi = this.apiRewriter(url);
    return viaApi !== url ? viaApi : rewriteHost(this.hostMap, url);
  }

  /** The local ARN of a state machine of the stack, from its construct. */
  public stateMachineArn(stateMachine: Construct): string {
    const child = stateMachine.node.defaultChild as any;
    return this.template.arnOf(Stack.of(stateMachine).getLogicalId(child));
  }

  /**
   * Starts `count` warm environments of a function of the stack (from its construct), as a steady
   * load or provisioned concurrency has on AWS: on 2 cores, dozens of simultaneous worker-thread
   * cold starts take seconds each and would make every paced caller miss its slot.
   */
  public async prewarm(fn: Construct, count: number): Promise<void> {
    const child = (fn.node.defaultChild ?? fn) as any;
    await this.lambda.prewarm(Stack.of(fn).getLogicalId(child), count);
  }

  /** 429s the vendor proxy (the REST API whose methods proxy over HTTP) answered from its stage throttling. */
  public async proxy429s(): Promise<number> {
    const proxyApiIds = new Set(this.template.ofType('AWS::ApiGateway::Method')
      .filter((m) => m.properties.Integration?.Type === 'HTTP_PROXY')
      .map((m) => m.properties.RestApiId as string));
    let total = 0;
    for (const apiId of proxyApiIds) {
      total += (await this.apiGateway.stats(apiId)).throttled429;
    }
    return total;
  }

  /**
   * Enables or disables the SQS event source mappings of a function of the stack (from its
   * construct), as UpdateEventSourceMapping `Enabled` does: the benchmark builds its backlog behind
   * a disabled mapping.
   */
  public async setEventSourceEnabled(fn: Construct, enabled: boolean): Promise<void> {
    await this.poller.setEnabled(Stack.of(fn).getLogicalId((fn.node.defaultChild ?? fn) as any), enabled);
  }

  /** Messages in a queue of the stack (from its construct), visible or in flight. */
  public async queueDepth(queue: Construct): Promise<number> {
    const attrs = await this.sqsClient().send(new GetQueueAttributesCommand({
      QueueUrl: this.template.queueUrlOf(Stack.of(queue).getLogicalId((queue.node.defaultChild ?? queue) as any)),
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }));
    return Number(attrs.Attributes?.ApproximateNumberOfMessages ?? 0) + Number(attrs.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
  }

  /** Messages in the dead-letter queues of the request side or the callback side. */
  public async deadLetterCount(side: 'request' | 'callback'): Promise<number> {
    const client = this.sqsClient();
    let total = 0;
    for (const queue of this.template.ofType('AWS::SQS::Queue')) {
      const id = queue.logicalId;
      if (!/DeadLetterQueue/.test(id) || !new RegExp(side === 'request' ? 'Request' : 'Callback').test(id)) continue;
      const attrs = await client.send(new GetQueueAttributesCommand({
        QueueUrl: this.template.queueUrlOf(id),
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }));
      total += Number(attrs.Attributes?.ApproximateNumberOfMessages ?? 0) + Number(attrs.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
    }
    return total;
  }

  /** Reads (without deleting for long) the messages of a queue, for tests and reports. */
  public async peek(queueLogicalId: string, max = 10): Promise<Array<{ body: string; attributes: Record<string, string | undefined> }>> {
    const result = await this.sqsClient().send(new ReceiveMessageCommand({
      QueueUrl: this.template.queueUrlOf(queueLogicalId),
      MaxNumberOfMessages: Math.min(10, max),
      VisibilityTimeout: 0,
      MessageAttributeNames: ['All'],
      WaitTimeSeconds: 0,
    }));
    return (result.Messages ?? []).map((m) => ({
      body: m.Body ?? '',
      attributes: Object.fromEntries(Object.entries(m.MessageAttributes ?? {}).map(([k, v]) => [k, v.StringValue])),
    }));
  }

  /**
   * Sets the dynamic delay as an operator would (create a hosted configuration version, deploy it
   * at once), e.g. `{ extraDelayMs: 500 }`. The dispatcher applies it at its next poll. Content
   * the profile's JSON schema refuses throws BadRequestException, as AppConfig refuses it.
   */
  public setDynamicDelay(content: object | string): number {
    const profiles = this.appConfig.deployedProfiles().filter((p) => p.name === 'dynamic-delay');
    if (profiles.length === 0) {
      throw new Error('The stack has no dynamic delay: enable it with the consumer option dynamicDelay');
    }
    const text = typeof content === 'string' ? content : JSON.stringify(content);
    return profiles.map((p) => this.appConfig.deploy(p.applicationId, p.profileId, text).versionNumber)[0];
  }

  /**
   * Sets a secret's value, as `secrets` at the start does (by logical id, name or ARN), e.g. as an
   * operator's PutSecretValue. Readers that cache it (the proxy's credential function) see it when
   * their cache expires; a workflow's GetSecretValue reads it at once.
   */
  public setSecret(idOrName: string, value: string): void {
    const known = this.template.ofType('AWS::SecretsManager::Secret').find((s) => s.logicalId === idOrName);
    this.secrets.set(known ? this.template.arnOf(idOrName) : idOrName, value);
  }

  /** One line naming what runs where. */
  public describe(): string {
    return [
      `SQS ${this.endpoints.sqs}`,
      `DynamoDB ${this.endpoints.dynamodb}`,
      `Step Functions ${this.endpoints.sfn}`,
      `${this.template.ofType('AWS::Lambda::Function').length} functions`,
      `${this.template.ofType('AWS::StepFunctions::StateMachine').length} state machines`,
      `${this.template.ofType('AWS::ApiGateway::RestApi').length} REST APIs`,
    ].join(', ');
  }

  public async stop(): Promise<void> {
    // Stop in reverse start order: pollers before functions before services.
    for (const s of this.stoppables.reverse()) {
      try {
        await s.stop();
      } catch {
        // Best effort: a failing stop must not hide the others.
      }
    }
    this.stoppables.length = 0;
    if (this.options.removeAssemblyDirOnStop) {
      fs.rmSync(this.options.assemblyDir, { recursive: true, force: true });
    }
  }

  private async boot(): Promise<void> {
    const sqs = await startSqs();
    this.stoppables.push(sqs);
    const dynamodb = await startDynamoDb(this.options.faults);
    this.stoppables.push(dynamodb);
    const secrets = await startSecretsManager({});
    this.stoppables.push(secrets);

    this.sfn = new LocalStepFunctions({
      endpoints: { sqs: sqs.endpoint, dynamodb: dynamodb.endpoint, secretsManager: secrets.endpoint },
      invokeLambda: (name, event) => this.lambda.invoke(name, event),
      rewriteUrl: (url) => this.rewriteUrl(url),
      faults: this.options.faults,
    });
    const sfnEndpoint = await this.sfn.listen();
    this.stoppables.push(this.sfn);
    this.endpoints = { sqs: sqs.endpoint, dynamodb: dynamodb.endpoint, sfn: sfnEndpoint, secretsManager: secrets.endpoint };

    this.template = LocalTemplate.load(this.options.assemblyDir, this.options.stackName, this.endpoints);
    // --- AppConfig (dynamic delay) ---
    this.appConfig = await LocalAppConfig.start(
      this.template.resources.filter((r) => r.type.startsWith('AWS::AppConfig::')), (id) => this.template.ref(id));
    this.stoppables.push(this.appConfig);
    this.endpoints = { ...this.endpoints, appConfigData: this.appConfig.endpoint };
    // --- end AppConfig ---
    this.secrets = secrets;
    for (const [id, value] of Object.entries(this.options.secrets ?? {})) {
      this.setSecret(id, value);
    }

    await createQueues(this.template, sqs.endpoint);
    await createTables(this.template, dynamodb.endpoint);

    this.apiGateway = await ApiGatewayHost.start({
      resources: [
        'AWS::ApiGateway::RestApi', 'AWS::ApiGateway::Resource', 'AWS::ApiGateway::Method',
        'AWS::ApiGateway::Stage', 'AWS::ApiGateway::Deployment',
      ].flatMap((type) => this.template.ofType(type)),
      sqsEndpoint: sqs.endpoint,
      hostMap: { ...this.hostMap },
    });
    this.stoppables.push(this.apiGateway);
    this.apiRewriter = this.apiGateway.rewriter();

    this.lambda = new LocalLambda({
      functions: this.template.ofType('AWS::Lambda::Function').map((resource) => ({
        resource,
        codeDir: this.template.assetDir(resource.logicalId),
      })),
      endpoints: this.endpoints,
      extraEnv: this.options.functionEnv,
      rewriteUrl: (url) => this.rewriteUrl(url),
      logFile: this.options.logFile,
      accountConcurrency: this.options.accountConcurrency,
    });
    this.stoppables.push(this.lambda);
    this.options.faults?.attach((name, reason) => this.lambda.crashBusy(name, reason));

    // --- log subscriptions (arrival audit): begin ---
    this.logSubscriptions = new LocalLogSubscriptions({
      filters: this.template.ofType('AWS::Logs::SubscriptionFilter'),
      stages: this.template.ofType('AWS::ApiGateway::Stage'),
      functionArns: this.template.ofType('AWS::Lambda::Function').map((fn) => this.template.arnOf(fn.logicalId)),
      readAccessLog: (apiId) => this.apiGateway.accessLog(apiId),
      invoke: (arn, event) => this.lambda.invoke(arn, event),
    });
    this.logSubscriptions.start();
    this.stoppables.push(this.logSubscriptions);
    // --- log subscriptions (arrival audit): end ---

    for (const sm of this.template.ofType('AWS::StepFunctions::StateMachine')) {
      this.sfn.addStateMachine({
        arn: this.template.arnOf(sm.logicalId),
        name: this.template.nameOf(sm.logicalId),
        type: sm.properties.StateMachineType === 'EXPRESS' ? 'EXPRESS' : 'STANDARD',
        definition: this.template.definitionOf(sm.logicalId),
        templateDefinition: this.template.templateDefinitionOf(sm.logicalId),
        roleArn: sm.properties.RoleArn,
      });
    }

    this.poller = new SqsEventSourcePoller({
      mappings: this.template.ofType('AWS::Lambda::EventSourceMapping').map((resource) => {
        const queue = this.template.findByArn(resource.properties.EventSourceArn);
        if (!queue || queue.type !== 'AWS::SQS::Queue') {
          throw new Error(`cannot execute event source mapping ${resource.logicalId}: its source ${resource.properties.EventSourceArn} is not a queue of this stack`);
        }
        return { resource, queueUrl: this.template.queueUrlOf(queue.logicalId), queueArn: resource.properties.EventSourceArn };
      }),
      sqsEndpoint: sqs.endpoint,
      invoke: (name, event) => this.lambda.invoke(name, event),
    });
    this.poller.start();
    this.stoppables.push(this.poller);

    // --- scheduler (low-rate mode): begin ---
    this.scheduler = new LocalScheduler({
      schedules: this.template.ofType('AWS::Scheduler::Schedule'),
      invoke: (name, event) => this.lambda.invoke(name, event),
      speedup: this.options.scheduleSpeedup,
      reservedConcurrency: (target) => this.lambda.reservedConcurrency(target),
    });
    if (this.options.scheduleTimers !== false) {
      this.scheduler.start();
    }
    this.stoppables.push(this.scheduler);
    // --- scheduler (low-rate mode): end ---
  }

  private sqsClient(): SQSClient {
    return new SQSClient({ endpoint: this.endpoints.sqs, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  }
}
