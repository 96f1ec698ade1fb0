/**
 * A local API Gateway (REST APIs) that executes what the synthesized template says: resources and
 * methods, stage throttling, IAM authorization against the REST API's resource policy, HTTP_PROXY
 * integrations and AWS integrations to SQS (`sqs:path/<account>/<queue>`) with VTL mapping
 * templates. One HTTP server per REST API on 127.0.0.1.
 *
 * Everything the template uses that this emulator does not implement throws when the gateway is
 * built, naming the property: a silently ignored setting would make the local run lie.
 *
 * SigV4 signatures of AWS_IAM calls are verified (sigv4.ts) against the local secret; the access
 * key the local Lambda hands out names the caller's role. The local Step Functions does not sign:
 * it names its role in PRINCIPAL_HEADER.
 *
 * Not modelled: IAM identity policies (an AWS_IAM caller is allowed when the resource policy has
 * no explicit Deny and, if there is a policy, an Allow for it), account-level throttling, usage
 * plans, gateway responses, binary media types. docs/local-runtime.md lists what is and is not.
 */
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import { AddressInfo } from 'node:net';
import { MessageAttributeValue, SendMessageCommand, SendMessageCommandInput, SQSClient } from '@aws-sdk/client-sqs';
import { render } from 'velocityjs';
import { verifySigV4 } from './sigv4';
import { LOCAL_ACCOUNT, LOCAL_CREDENTIALS, LOCAL_REGION, PRINCIPAL_HEADER, ResolvedResource, UrlRewriter } from '../types';

/** Options of the local API Gateway. */
export interface LocalApiGatewayOptions {
  /** Every RestApi, Resource, Method, Stage and Deployment of the template, resolved. */
  readonly resources: ResolvedResource[];
  /** Base URL of the local SQS (no trailing slash). */
  readonly sqsEndpoint: string;
  /** Maps HTTP_PROXY integration URIs (e.g. the vendor's) to loopback. */
  readonly rewriteUrl: UrlRewriter;
  /** Milliseconds since the epoch; drives throttling and `$context.requestTimeEpoch`. */
  readonly clock?: () => number;
}

/** What one REST API answered so far. */
export interface LocalApiStats {
  readonly requests: number;
  readonly status2xx: number;
  readonly status4xx: number;
  readonly status5xx: number;
  /** Requests refused by the stage's token bucket. */
  readonly throttled429: number;
  /** AWS_IAM requests refused: no principal, or the resource policy denied it. */
  readonly unauthorized: number;
  /** Integration calls that failed (upstream unreachable or timed out, SQS errors, template errors). */
  readonly integrationErrors: number;
  /** The last integration failure, for diagnostics. */
  readonly lastIntegrationError?: string;
}

/** API Gateway's payload limit. */
const MAX_BODY_BYTES = 10 * 1024 * 1024;
/**
 * Integration timeouts: 29 s when TimeoutInMillis is absent, 50 ms at least, 300 s at most (with a
 * raised quota). https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html
 */
const DEFAULT_INTEGRATION_TIMEOUT_MS = 29_000;
const MIN_INTEGRATION_TIMEOUT_MS = 50;
const MAX_INTEGRATION_TIMEOUT_MS = 300_000;
/** API Gateway's account-level defaults, used when a stage sets only one of rate and burst. */
const ACCOUNT_RATE_LIMIT = 10_000;
const ACCOUNT_BURST_LIMIT = 5_000;

const HOP_BY_HOP_HEADERS = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'trailers',
  'transfer-encoding', 'upgrade', 'host', 'content-length', 'expect',
]);

/** API Gateway resource types this emulator ignores because they do not change request handling. */
const IGNORED_APIGATEWAY_TYPES = new Set(['AWS::ApiGateway::Account']);

const EXECUTE_API_HOST = /^https:\/\/([a-z0-9]+)\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\/.*)?$/i;

// ---------------------------------------------------------------------------------------------
// Compiled model
// ---------------------------------------------------------------------------------------------

type ParamLocation = 'path' | 'querystring' | 'header';

type ParamSource =
  | { readonly kind: 'literal'; readonly value: string }
  | { readonly kind: ParamLocation; readonly name: string };

interface ParamMapping {
  readonly location: ParamLocation;
  readonly name: string;
  readonly source: ParamSource;
}

interface HttpProxyIntegration {
  readonly type: 'HTTP_PROXY';
  readonly uri: string;
  /** undefined: the method request's method (ANY). */
  readonly httpMethod?: string;
  readonly mappings: ParamMapping[];
  readonly timeoutMs: number;
}

interface IntegrationResponse {
  readonly statusCode: number;
  /** undefined: the default response. */
  readonly pattern?: RegExp;
  readonly templates: Record<string, string>;
  readonly headers: Record<string, string>;
}

interface SqsIntegration {
  readonly type: 'AWS_SQS';
  readonly queueName: string;
  readonly templates: Record<string, string>;
  readonly passthrough: 'WHEN_NO_MATCH' | 'WHEN_NO_TEMPLATES' | 'NEVER';
  readonly mappings: ParamMapping[];
  readonly responses: IntegrationResponse[];
}

interface CompiledMethod {
  readonly logicalId: string;
  readonly httpMethod: string;
  readonly authorization: 'NONE' | 'AWS_IAM';
  readonly integration: HttpProxyIntegration | SqsIntegration;
}

interface RouteNode {
  readonly id: string;
  readonly pathPart: string;
  /** The resource path, e.g. `/{proxy+}` ($context.resourcePath). */
  readonly path: string;
  readonly children: RouteNode[];
  readonly methods: Map<string, CompiledMethod>;
}

type ConditionOperator = 'ArnEquals' | 'ArnNotEquals' | 'ArnLike' | 'ArnNotLike' | 'StringEquals' | 'StringNotEquals';

interface PolicyCondition {
  readonly operator: ConditionOperator;
  readonly values: string[];
}

interface PolicyStatement {
  readonly effect: 'Allow' | 'Deny';
  /** undefined: any principal. */
  readonly principals?: string[];
  readonly actions: string[];
  readonly resources: string[];
  readonly conditions: PolicyCondition[];
}

interface StageRuntime {
  readonly name: string;
  readonly bucket?: TokenBucket;
  /** The stage's AccessLogSetting.Format: one line per request through the stage, `$context` variables filled in. */
  readonly accessLogFormat?: string;
}

/** What an access log line of a request that reached a stage reads. */
interface AccessLogContext {
  readonly stage: StageRuntime;
  readonly timeEpochMs: number;
  readonly httpMethod: string;
  readonly sourceIp: string;
  readonly userAgent: string;
  /** `$context.path`: the requested path, stage included (`/{stage}/results/42`). */
  readonly path: string;
  resourcePath?: string;
  principalArn?: string;
  /** The integration's status, when it answered. */
  integrationStatus?: number;
  /** `$context.error.responseType` of a refusal (e.g. THROTTLED). */
  errorResponseType?: string;
}

interface MutableStats {
  requests: number;
  status2xx: number;
  status4xx: number;
  status5xx: number;
  throttled429: number;
  unauthorized: number;
  integrationErrors: number;
  lastIntegrationError?: string;
}

interface CompiledApi {
  readonly logicalId: string;
  /** The REST API id as URLs know it (the resolved Ref). */
  readonly apiId: string;
  readonly root: RouteNode;
  readonly stages: Map<string, StageRuntime>;
  /** undefined: no resource policy. */
  readonly policy?: PolicyStatement[];
  readonly stats: MutableStats;
  /** Access log lines of every stage with an AccessLogSetting, in order. */
  readonly accessLog: string[];
  server?: http.Server;
  port?: number;
}

/** Everything about one incoming request that integrations and templates read. */
interface MethodRequest {
  readonly requestId: string;
  readonly timeEpochMs: number;
  readonly httpMethod: string;
  readonly stage: string;
  /** The request path below the stage, e.g. `/v1/x` (as received, still encoded). */
  readonly rawPath: string;
  readonly rawQuery: string;
  readonly resource: RouteNode;
  /** Decoded path parameters. */
  readonly pathParams: Map<string, string>;
  /** Path parameters as received (still encoded), for integration URIs. */
  readonly rawPathParams: Map<string, string>;
  readonly query: Array<[string, string]>;
  /** Headers in the case the client sent them, PRINCIPAL_HEADER excluded. */
  readonly headers: Array<[string, string]>;
  readonly body: Buffer;
  readonly sourceIp: string;
  readonly principalArn?: string;
  /** The method's authorization type. */
  readonly authorization: 'NONE' | 'AWS_IAM';
}

/** SQS's answer as API Gateway's integration sees it: status, body, and what went wrong. */
interface SqsResult {
  readonly status: number;
  readonly body: string;
  readonly error?: string;
}

interface Reply {
  readonly status: number;
  readonly body: string | Buffer;
  readonly headers?: Record<string, string | string[]>;
}

/**
 * Maps `https://<apiId>.execute-api.<region>.amazonaws.com/<stage>/<path>` to the loopback server of
 * that API (`ports` by API id); other URLs are returned unchanged.
 */
export function apiRewriter(ports: Record<string, number>): UrlRewriter {
  return (url: string) => {
    const match = EXECUTE_API_HOST.exec(url);
    const port = match ? ports[match[1].toLowerCase()] : undefined;
    return port === undefined ? url : `http://127.0.0.1:${port}${match![3] ?? '/'}`;
  };
}

// ---------------------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------------------

/**
 * The REST APIs of a template, served on loopback. Build it (the constructor validates everything
 * and throws on what it does not support), `start()`, then call the URLs `rewriter()` maps to.
 */
export class LocalApiGateway {
  private readonly apis: Map<string, CompiledApi>;
  private readonly sqsEndpoint: string;
  private readonly rewriteUrl: UrlRewriter;
  private readonly clock: () => number;
  // Connections to integrations are reused, as API Gateway does; idle ones close before Node's
  // servers drop them (keepAliveTimeout 5 s), so a reused socket is never one the server closed.
  private readonly agent = new http.Agent({ keepAlive: true, timeout: 4000 });
  private readonly secureAgent = new https.Agent({ keepAlive: false });
  private sqs?: SQSClient;

  constructor(options: LocalApiGatewayOptions) {
    this.sqsEndpoint = options.sqsEndpoint.replace(/\/+$/, '');
    this.rewriteUrl = options.rewriteUrl;
    this.clock = options.clock ?? Date.now;
    this.apis = compileApis(options.resources, this.clock);
  }

  /** Starts one HTTP server per REST API on 127.0.0.1 (a free port each). */
  public async start(): Promise<void> {
    this.sqs = new SQSClient({ endpoint: this.sqsEndpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
    for (const api of this.apis.values()) {
      const server = http.createServer((req, res) => {
        this.handle(api, req, res).catch((e) => {
          // A bug in the emulator, not in the template: answer like API Gateway's own failures.
          recordIntegrationError(api, `emulator error: ${(e as Error).stack ?? e}`);
          if (!res.headersSent) {
            this.send(api, res, randomUUID(), { status: 500, body: message('Internal server error') });
          } else {
            res.destroy();
          }
        });
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      api.server = server;
      api.port = (server.address() as AddressInfo).port;
    }
  }

  /** Stops every server, dropping open connections. */
  public async stop(): Promise<void> {
    await Promise.all([...this.apis.values()].map((api) => closeServer(api)));
    this.agent.destroy();
    this.secureAgent.destroy();
    this.sqs?.destroy();
    this.sqs = undefined;
  }

  /** The REST API ids (as `https://<id>.execute-api...` URLs know them). */
  public apiIds(): string[] {
    return [...this.apis.keys()];
  }

  /** The loopback base URL of a REST API (`http://127.0.0.1:<port>`), after `start()`. */
  public baseUrl(apiId: string): string {
    const api = this.api(apiId);
    if (api.port === undefined) {
      throw new Error(`LocalApiGateway: start() before asking for the URL of ${apiId}`);
    }
    return `http://127.0.0.1:${api.port}`;
  }

  /**
   * Maps `https://<apiId>.execute-api.<region>.amazonaws.com/<stage>/<path>` to the loopback
   * server of that API; other URLs are returned unchanged. Only valid after `start()`.
   */
  public rewriter(): UrlRewriter {
    return apiRewriter(this.ports());
  }

  /** The loopback port of each REST API (by id), after `start()`. */
  public ports(): Record<string, number> {
    const ports: Record<string, number> = {};
    for (const api of this.apis.values()) {
      if (api.port === undefined) {
        throw new Error('LocalApiGateway: start() before asking for the ports');
      }
      ports[api.apiId] = api.port;
    }
    return ports;
  }

  /**
   * The access log lines of the REST API `apiId` so far (stages with an AccessLogSetting), as
   * API Gateway writes them to CloudWatch Logs: the format with its `$context` variables filled in.
   */
  public accessLog(apiId: string): string[] {
    return [...this.api(apiId).accessLog];
  }

  /** What the REST API `apiId` answered so far. */
  public stats(apiId: string): LocalApiStats {
    return { ...this.api(apiId).stats };
  }

  private api(apiId: string): CompiledApi {
    const api = this.apis.get(apiId.toLowerCase());
    if (!api) {
      throw new Error(`LocalApiGateway: no REST API ${apiId} (known: ${[...this.apis.keys()].join(', ')})`);
    }
    return api;
  }

  /** The request pipeline, in API Gateway's order: payload size, route, auth, throttle, integration. */
  private async handle(api: CompiledApi, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const requestId = randomUUID();
    const timeEpochMs = this.clock();
    api.stats.requests++;

    const body = await readBody(req, MAX_BODY_BYTES);
    if (body === undefined) {
      res.setHeader('Connection', 'close');
      this.send(api, res, requestId, { status: 413, body: message('Request Too Long') });
      return;
    }

    const url = new URL(req.url ?? '/', 'http://local');
    const segments = url.pathname.split('/').slice(1);
    const stage = api.stages.get(safeDecode(segments[0] ?? ''));
    if (!stage) {
      this.send(api, res, requestId, errorReply(403, 'Forbidden', 'ForbiddenException'));
      return;
    }
    const rawSegments = segments.slice(1).filter((s, i, all) => s !== '' || i < all.length - 1);
    const httpMethod = (req.method ?? 'GET').toUpperCase();
    const access: AccessLogContext = {
      stage,
      timeEpochMs,
      httpMethod,
      sourceIp: (req.socket.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, ''),
      userAgent: headerValue(req, 'user-agent') ?? '',
      // The path as requested, stage included, as AWS logs it (`/{stage}/root/child`).
      path: url.pathname,
    };
    const route = matchRoute(api.root, rawSegments, 0, httpMethod, new Map());
    if (!route) {
      access.errorResponseType = 'MISSING_AUTHENTICATION_TOKEN';
      this.send(api, res, requestId, errorReply(403, 'Missing Authentication Token', 'MissingAuthenticationTokenException'), access);
      return;
    }
    access.resourcePath = route.node.path;

    // The local Step Functions names its role in PRINCIPAL_HEADER (it does not sign); everyone else
    // signs with SigV4, and the signature must verify.
    let principalArn = headerValue(req, PRINCIPAL_HEADER);
    if (route.method.authorization === 'AWS_IAM') {
      if (principalArn === undefined && headerValue(req, 'authorization') !== undefined) {
        const check = await verifySigV4({ method: httpMethod, url: req.url ?? '/', headers: req.headers, body });
        if (!check.ok) {
          api.stats.unauthorized++;
          this.send(api, res, requestId, errorReply(check.status, check.message, check.errorType));
          return;
        }
        principalArn = check.principalArn;
      }
      const refusal = authorize(api, principalArn, stage.name, httpMethod, rawSegments.join('/'));
      if (refusal) {
        api.stats.unauthorized++;
        access.errorResponseType = refusal.status === 403 && principalArn === undefined ? 'MISSING_AUTHENTICATION_TOKEN' : 'ACCESS_DENIED';
        this.send(api, res, requestId, refusal, access);
        return;
      }
      access.principalArn = principalArn;
    }

    if (stage.bucket && !stage.bucket.take()) {
      api.stats.throttled429++;
      access.errorResponseType = 'THROTTLED';
      this.send(api, res, requestId, errorReply(429, 'Too Many Requests', 'TooManyRequestsException'), access);
      return;
    }

    const request: MethodRequest = {
      requestId,
      timeEpochMs,
      httpMethod,
      stage: stage.name,
      rawPath: `/${rawSegments.join('/')}`,
      rawQuery: url.search,
      resource: route.node,
      pathParams: new Map([...route.params].map(([k, v]) => [k, safeDecode(v)])),
      rawPathParams: route.params,
      query: [...url.searchParams.entries()],
      headers: requestHeaders(req, api.apiId),
      body,
      sourceIp: (req.socket.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, ''),
      principalArn: route.method.authorization === 'AWS_IAM' ? principalArn : undefined,
      authorization: route.method.authorization,
    };
    const integration = route.method.integration;
    const integrationErrorsBefore = api.stats.integrationErrors;
    const reply = integration.type === 'HTTP_PROXY'
      ? await this.invokeHttpProxy(api, integration, request)
      : await this.invokeSqs(api, integration, request, headerValue(req, 'accept'));
    if (api.stats.integrationErrors === integrationErrorsBefore) {
      access.integrationStatus = reply.status;
    }
    this.send(api, res, requestId, reply, access);
  }

  private async invokeHttpProxy(api: CompiledApi, integration: HttpProxyIntegration, request: MethodRequest): Promise<Reply> {
    const mapped = applyMappings(integration.mappings, request);
    let uri = integration.uri.replace(/\{([^}]+)\}/g, (_m, name: string) => mapped.path.get(name) ?? '');
    uri = this.rewriteUrl(uri);
    const target = new URL(uri);
    if (!isLoopback(target.hostname)) {
      // Never leave the machine: a URL the rewriter does not know is a wiring error.
      recordIntegrationError(api, `HTTP_PROXY target ${uri} is not on loopback: give rewriteUrl a mapping for it`);
      return errorReply(502, 'Internal server error', 'InternalServerErrorException');
    }
    const query = new URLSearchParams(request.rawQuery);
    for (const [name, value] of mapped.querystring) {
      query.set(name, value);
    }
    const queryText = query.toString();
    if (queryText) {
      target.search = target.search ? `${target.search}&${queryText}` : `?${queryText}`;
    }

    // API Gateway consumes the SigV4 Authorization of an AWS_IAM method: it never reaches the
    // integration unless a request parameter maps a value into it (see docs/local-runtime.md).
    const headers = forwardableHeaders(request.headers.filter(([name]) => request.authorization !== 'AWS_IAM' || name.toLowerCase() !== 'authorization'));
    for (const [name, value] of mapped.header) {
      setHeaderIgnoringCase(headers, name, value);
    }
    try {
      const upstream = await sendHttp(target, integration.httpMethod ?? request.httpMethod, headers, request.body,
        integration.timeoutMs, target.protocol === 'https:' ? this.secureAgent : this.agent);
      return { status: upstream.status, body: upstream.body, headers: upstream.headers };
    } catch (e) {
      const timedOut = e instanceof UpstreamTimeout;
      recordIntegrationError(api, `${request.httpMethod} ${target.href}: ${(e as Error).message}`);
      return timedOut
        ? errorReply(504, 'Endpoint request timed out', 'IntegrationTimeoutException')
        : errorReply(502, 'Internal server error', 'InternalServerErrorException');
    }
  }

  private async invokeSqs(api: CompiledApi, integration: SqsIntegration, request: MethodRequest, accept?: string): Promise<Reply> {
    // Non-proxy integrations pick the request template by Content-Type, application/json by default.
    const contentType = mediaType(lookupHeader(request.headers, 'content-type')) ?? 'application/json';
    const template = integration.templates[contentType];
    const hasTemplates = Object.keys(integration.templates).length > 0;
    if (template === undefined && (integration.passthrough === 'NEVER' || (integration.passthrough === 'WHEN_NO_TEMPLATES' && hasTemplates))) {
      return errorReply(415, 'Unsupported Media Type', 'UnsupportedMediaTypeException');
    }

    let form: string;
    try {
      form = template === undefined ? request.body.toString('utf8') : renderTemplate(template, request, request.body.toString('utf8'));
    } catch (e) {
      recordIntegrationError(api, `request template: ${(e as Error).message}`);
      return errorReply(500, 'Internal server error', 'InternalServerErrorException');
    }
    const mapped = applyMappings(integration.mappings, request);
    const sqsResult = await this.sendToSqs(integration.queueName, form, mapped.querystring);
    if (sqsResult.status >= 400) {
      recordIntegrationError(api, `SQS SendMessage to ${integration.queueName}: ${sqsResult.error}`);
    }

    const response = selectIntegrationResponse(integration.responses, String(sqsResult.status));
    if (!response) {
      // API Gateway: "No match for output mapping and no default output mapping configured".
      recordIntegrationError(api, `no integration response for SQS status ${sqsResult.status}`);
      return errorReply(500, 'Internal server error', 'InternalServerErrorException');
    }
    return renderIntegrationResponse(api, response, request, sqsResult.body, accept);
  }

  /** SendMessage from the Query API form the template rendered, with the real SDK. */
  private async sendToSqs(queueName: string, form: string, extraParams: Map<string, string>): Promise<SqsResult> {
    const fields = new URLSearchParams(form.trim());
    for (const [name, value] of extraParams) {
      fields.set(name, value);
    }
    const requestId = randomUUID();
    const parsed = parseSendMessage(fields);
    if (typeof parsed === 'string') {
      return { status: 400, body: sqsErrorBody('InvalidParameterValue', parsed, requestId), error: parsed };
    }
    try {
      const input: SendMessageCommandInput = { ...parsed, QueueUrl: `${this.sqsEndpoint}/${LOCAL_ACCOUNT}/${queueName}` };
      const out = await this.sqs!.send(new SendMessageCommand(input));
      return {
        status: 200,
        body: JSON.stringify({
          SendMessageResponse: {
            ResponseMetadata: { RequestId: out.$metadata.requestId ?? requestId },
            SendMessageResult: {
              MD5OfMessageAttributes: out.MD5OfMessageAttributes ?? null,
              MD5OfMessageBody: out.MD5OfMessageBody ?? null,
              MessageId: out.MessageId ?? null,
              SequenceNumber: out.SequenceNumber ?? null,
            },
          },
        }),
      };
    } catch (e) {
      const err = e as Error & { $metadata?: { httpStatusCode?: number }; name: string };
      const status = err.$metadata?.httpStatusCode ?? 500;
      return { status: status >= 400 ? status : 500, body: sqsErrorBody(err.name, err.message, requestId), error: `${err.name}: ${err.message}` };
    }
  }

  private send(api: CompiledApi, res: http.ServerResponse, requestId: string, reply: Reply, access?: AccessLogContext): void {
    const body = typeof reply.body === 'string' ? Buffer.from(reply.body, 'utf8') : reply.body;
    const headers: Record<string, string | string[]> = { ...(reply.headers ?? {}) };
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
      headers['Content-Type'] = 'application/json';
    }
    headers['x-amzn-RequestId'] = requestId;
    headers['Content-Length'] = String(body.length);
    countStatus(api.stats, reply.status);
    res.writeHead(reply.status, headers);
    res.end(body);
    if (access?.stage.accessLogFormat !== undefined) {
      api.accessLog.push(renderAccessLog(access.stage.accessLogFormat, {
        'requestId': requestId,
        'extendedRequestId': requestId,
        'requestTime': formatRequestTime(access.timeEpochMs),
        'requestTimeEpoch': String(access.timeEpochMs),
        'httpMethod': access.httpMethod,
        'resourcePath': access.resourcePath,
        'path': access.path,
        'stage': access.stage.name,
        'status': String(reply.status),
        'integration.status': access.integrationStatus === undefined ? undefined : String(access.integrationStatus),
        'integrationStatus': access.integrationStatus === undefined ? undefined : String(access.integrationStatus),
        'error.responseType': access.errorResponseType,
        'responseLatency': String(Math.max(0, this.clock() - access.timeEpochMs)),
        'responseLength': String(body.length),
        'protocol': 'HTTP/1.1',
        'identity.sourceIp': access.sourceIp,
        'identity.userAgent': access.userAgent,
        'identity.userArn': access.principalArn,
        'identity.caller': access.principalArn,
        'identity.user': access.principalArn,
        // Not measured locally: API Gateway writes '-' when it has no value.
        'integration.latency': undefined,
      }));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Compilation: template resources -> model (throws on anything unsupported)
// ---------------------------------------------------------------------------------------------

function compileApis(resources: ResolvedResource[], clock: () => number): Map<string, CompiledApi> {
  for (const r of resources) {
    if (r.type.startsWith('AWS::ApiGateway::') && !IGNORED_APIGATEWAY_TYPES.has(r.type) && !isHandledType(r.type)) {
      throw new Error(`LocalApiGateway: ${r.logicalId} is an ${r.type}, which the local API Gateway does not implement`);
    }
  }
  const apis = new Map<string, CompiledApi>();
  for (const r of resources.filter((x) => x.type === 'AWS::ApiGateway::RestApi')) {
    const apiId = r.logicalId.toLowerCase();
    checkRestApi(r);
    apis.set(apiId, {
      logicalId: r.logicalId,
      apiId,
      root: { id: `${apiId}-root`, pathPart: '', path: '/', children: [], methods: new Map() },
      stages: new Map(),
      policy: r.properties.Policy === undefined ? undefined : compilePolicy(r.logicalId, r.properties.Policy),
      stats: { requests: 0, status2xx: 0, status4xx: 0, status5xx: 0, throttled429: 0, unauthorized: 0, integrationErrors: 0 },
      accessLog: [],
    });
  }
  const apiOf = (r: ResolvedResource): CompiledApi => {
    const id = String(r.properties.RestApiId ?? '').toLowerCase();
    const api = apis.get(id);
    if (!api) {
      throw new Error(`LocalApiGateway: ${r.logicalId} (${r.type}) belongs to REST API '${r.properties.RestApiId}', which is not among the resources`);
    }
    return api;
  };

  buildResourceTrees(resources, apiOf);
  for (const r of resources.filter((x) => x.type === 'AWS::ApiGateway::Stage')) {
    addStage(apiOf(r), r.logicalId, r.properties.StageName, r.properties.MethodSettings, clock, r.properties.AccessLogSetting);
  }
  for (const r of resources.filter((x) => x.type === 'AWS::ApiGateway::Deployment')) {
    if (r.properties.StageName !== undefined) {
      // A Deployment with StageName creates that stage itself (StageDescription holds its settings).
      const description = r.properties.StageDescription ?? {};
      const settings = [...(description.MethodSettings ?? [])];
      if (description.ThrottlingRateLimit !== undefined || description.ThrottlingBurstLimit !== undefined) {
        settings.push({ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: description.ThrottlingRateLimit, ThrottlingBurstLimit: description.ThrottlingBurstLimit });
      }
      addStage(apiOf(r), r.logicalId, r.properties.StageName, settings, clock, description.AccessLogSetting);
    }
  }
  return apis;
}

function isHandledType(type: string): boolean {
  return ['RestApi', 'Resource', 'Method', 'Stage', 'Deployment'].some((t) => type === `AWS::ApiGateway::${t}`);
}

function checkRestApi(r: ResolvedResource): void {
  const unsupported = ['Body', 'BodyS3Location', 'BinaryMediaTypes', 'MinimumCompressionSize', 'CloneFrom'];
  for (const name of unsupported) {
    if (r.properties[name] !== undefined) {
      throw new Error(`LocalApiGateway: ${r.logicalId}.${name} is not supported by the local API Gateway`);
    }
  }
}

/** Builds each API's resource tree and hangs the methods on it. */
function buildResourceTrees(resources: ResolvedResource[], apiOf: (r: ResolvedResource) => CompiledApi): void {
  const resourceDefs = resources.filter((x) => x.type === 'AWS::ApiGateway::Resource');
  const known = new Set(resourceDefs.map((r) => r.logicalId));
  const nodes = new Map<string, RouteNode>();
  const rootIds = new Map<CompiledApi, string>();

  // The root has no Resource of its own: whatever id a Resource or Method points to that is not a
  // Resource is the API's root (RootResourceId). Each API must have exactly one.
  const noteRoot = (api: CompiledApi, id: string, by: string) => {
    const previous = rootIds.get(api);
    if (previous !== undefined && previous !== id) {
      throw new Error(`LocalApiGateway: ${by} points to '${id}', but the root of ${api.logicalId} is '${previous}' and no Resource has either id`);
    }
    rootIds.set(api, id);
    nodes.set(id, api.root);
  };
  for (const r of resourceDefs) {
    if (!known.has(String(r.properties.ParentId))) {
      noteRoot(apiOf(r), String(r.properties.ParentId), r.logicalId);
    }
  }
  const methodDefs = resources.filter((x) => x.type === 'AWS::ApiGateway::Method');
  for (const m of methodDefs) {
    if (!known.has(String(m.properties.ResourceId))) {
      noteRoot(apiOf(m), String(m.properties.ResourceId), m.logicalId);
    }
  }

  const build = (r: ResolvedResource): RouteNode => {
    const existing = nodes.get(r.logicalId);
    if (existing) {
      return existing;
    }
    const parentDef = resourceDefs.find((p) => p.logicalId === r.properties.ParentId);
    const parent = parentDef ? build(parentDef) : nodes.get(String(r.properties.ParentId))!;
    const pathPart = String(r.properties.PathPart);
    checkPathPart(r.logicalId, pathPart);
    const node: RouteNode = { id: r.logicalId, pathPart, path: `${parent.path === '/' ? '' : parent.path}/${pathPart}`, children: [], methods: new Map() };
    parent.children.push(node);
    nodes.set(r.logicalId, node);
    return node;
  };
  resourceDefs.forEach((r) => build(r));

  for (const m of methodDefs) {
    apiOf(m);
    const node = nodes.get(String(m.properties.ResourceId))!;
    const method = compileMethod(m);
    if (node.methods.has(method.httpMethod)) {
      throw new Error(`LocalApiGateway: two methods ${method.httpMethod} on ${node.path} (${m.logicalId})`);
    }
    node.methods.set(method.httpMethod, method);
  }
}

function checkPathPart(logicalId: string, pathPart: string): void {
  if (pathPart === '' || pathPart.includes('/') || (/[{}]/.test(pathPart) && !/^\{[A-Za-z0-9._-]+\+?\}$/.test(pathPart))) {
    throw new Error(`LocalApiGateway: ${logicalId}.PathPart '${pathPart}' is not a path segment, {name} or {name+}`);
  }
}

function compileMethod(r: ResolvedResource): CompiledMethod {
  const p = r.properties;
  const where = `${r.logicalId}`;
  const authorization = p.AuthorizationType ?? 'NONE';
  if (authorization !== 'NONE' && authorization !== 'AWS_IAM') {
    throw new Error(`LocalApiGateway: ${where}.AuthorizationType ${authorization} is not supported (NONE, AWS_IAM)`);
  }
  for (const name of ['ApiKeyRequired', 'AuthorizerId', 'RequestValidatorId', 'RequestModels']) {
    if (p[name] !== undefined && p[name] !== false) {
      throw new Error(`LocalApiGateway: ${where}.${name} is not supported by the local API Gateway`);
    }
  }
  const integration = p.Integration;
  if (!integration) {
    throw new Error(`LocalApiGateway: ${where} has no Integration`);
  }
  return {
    logicalId: r.logicalId,
    httpMethod: String(p.HttpMethod).toUpperCase(),
    authorization,
    integration: compileIntegration(where, integration),
  };
}

function compileIntegration(where: string, integration: Record<string, any>): HttpProxyIntegration | SqsIntegration {
  for (const name of ['ConnectionType', 'ContentHandling', 'CacheKeyParameters']) {
    const value = integration[name];
    if (value !== undefined && !(name === 'ConnectionType' && value === 'INTERNET') && !(Array.isArray(value) && value.length === 0)) {
      throw new Error(`LocalApiGateway: ${where}.Integration.${name} (${JSON.stringify(value)}) is not supported by the local API Gateway`);
    }
  }
  if (integration.Type !== 'HTTP_PROXY' && integration.Type !== 'AWS') {
    throw new Error(`LocalApiGateway: ${where}.Integration.Type ${integration.Type} is not supported (HTTP_PROXY, AWS to SQS)`);
  }
  const mappings = compileMappings(where, integration.RequestParameters);
  if (typeof integration.Uri !== 'string') {
    throw new Error(`LocalApiGateway: ${where}.Integration.Uri is not a resolved string: ${JSON.stringify(integration.Uri)}`);
  }
  const uri: string = integration.Uri;
  return integration.Type === 'HTTP_PROXY'
    ? compileHttpProxy(where, integration, uri, mappings)
    : compileSqs(where, integration, uri, mappings);
}

function compileHttpProxy(where: string, integration: Record<string, any>, uri: string, mappings: ParamMapping[]): HttpProxyIntegration {
  if (!/^https?:\/\//.test(uri)) {
    throw new Error(`LocalApiGateway: ${where}.Integration.Uri '${uri}' is not an http(s) URL`);
  }
  for (const [, name] of uri.matchAll(/\{([^}]+)\}/g)) {
    if (!mappings.some((m) => m.location === 'path' && m.name === name)) {
      throw new Error(`LocalApiGateway: ${where}.Integration.Uri uses {${name}} but RequestParameters has no integration.request.path.${name}`);
    }
  }
  const method = String(integration.IntegrationHttpMethod ?? 'ANY').toUpperCase();
  const timeoutMs = integration.TimeoutInMillis === undefined ? DEFAULT_INTEGRATION_TIMEOUT_MS : Number(integration.TimeoutInMillis);
  if (!(timeoutMs >= MIN_INTEGRATION_TIMEOUT_MS && timeoutMs <= MAX_INTEGRATION_TIMEOUT_MS)) {
    // API Gateway refuses these at deployment (above 29,000 ms unless the account's quota was raised).
    throw new Error(`LocalApiGateway: ${where}.Integration.TimeoutInMillis must be between ${MIN_INTEGRATION_TIMEOUT_MS} and ${MAX_INTEGRATION_TIMEOUT_MS} (given ${integration.TimeoutInMillis})`);
  }
  return { type: 'HTTP_PROXY', uri, httpMethod: method === 'ANY' ? undefined : method, mappings, timeoutMs };
}

function compileSqs(where: string, integration: Record<string, any>, uri: string, mappings: ParamMapping[]): SqsIntegration {
  const match = /^arn:aws[a-z-]*:apigateway:[a-z0-9-]+:sqs:path\/([^/]+)\/([^/?]+)$/.exec(uri);
  if (!match) {
    throw new Error(`LocalApiGateway: ${where}.Integration.Uri '${uri}' is not supported: only AWS integrations to arn:aws:apigateway:<region>:sqs:path/<account>/<queue>`);
  }
  const passthrough = integration.PassthroughBehavior ?? 'WHEN_NO_MATCH';
  if (!['WHEN_NO_MATCH', 'WHEN_NO_TEMPLATES', 'NEVER'].includes(passthrough)) {
    throw new Error(`LocalApiGateway: ${where}.Integration.PassthroughBehavior ${passthrough} is not valid`);
  }
  for (const m of mappings) {
    if (m.location === 'path') {
      throw new Error(`LocalApiGateway: ${where}: integration.request.path.${m.name} has no meaning for an SQS integration`);
    }
  }
  const responses: IntegrationResponse[] = (integration.IntegrationResponses ?? []).map((r: Record<string, any>, i: number) =>
    compileIntegrationResponse(`${where}.Integration.IntegrationResponses[${i}]`, r));
  return {
    type: 'AWS_SQS',
    queueName: match[2],
    templates: { ...(integration.RequestTemplates ?? {}) },
    passthrough,
    mappings,
    responses,
  };
}

function compileIntegrationResponse(where: string, r: Record<string, any>): IntegrationResponse {
  if (r.ContentHandling !== undefined) {
    throw new Error(`LocalApiGateway: ${where}.ContentHandling is not supported`);
  }
  let pattern: RegExp | undefined;
  if (r.SelectionPattern !== undefined && r.SelectionPattern !== '') {
    try {
      // Java's Pattern.matches: the whole status string must match.
      pattern = new RegExp(`^(?:${r.SelectionPattern})$`, 's');
    } catch (e) {
      throw new Error(`LocalApiGateway: ${where}.SelectionPattern '${r.SelectionPattern}' is not a valid regular expression: ${(e as Error).message}`);
    }
  }
  const headers: Record<string, string> = {};
  for (const [target, source] of Object.entries((r.ResponseParameters ?? {}) as Record<string, string>)) {
    const header = /^method\.response\.header\.(.+)$/.exec(target);
    const literal = /^'(.*)'$/s.exec(String(source));
    if (!header || !literal) {
      throw new Error(`LocalApiGateway: ${where}.ResponseParameters '${target}': '${source}' is not supported (only method.response.header.X = 'literal')`);
    }
    headers[header[1]] = literal[1];
  }
  return { statusCode: Number(r.StatusCode), pattern, templates: { ...(r.ResponseTemplates ?? {}) }, headers };
}

function compileMappings(where: string, params: Record<string, string> | undefined): ParamMapping[] {
  return Object.entries(params ?? {}).map(([target, source]) => {
    const t = /^integration\.request\.(path|querystring|header)\.(.+)$/.exec(target);
    if (!t) {
      throw new Error(`LocalApiGateway: ${where}.Integration.RequestParameters target '${target}' is not supported (integration.request.path|querystring|header.X)`);
    }
    const literal = /^'(.*)'$/s.exec(String(source));
    const s = /^method\.request\.(path|querystring|header)\.(.+)$/.exec(String(source));
    if (!literal && !s) {
      throw new Error(`LocalApiGateway: ${where}.Integration.RequestParameters source '${source}' for '${target}' is not supported (method.request.path|querystring|header.X or 'literal')`);
    }
    const parsedSource: ParamSource = literal
      ? { kind: 'literal', value: literal[1] }
      : { kind: s![1] as ParamLocation, name: s![2] };
    return { location: t[1] as ParamLocation, name: t[2], source: parsedSource };
  });
}

function addStage(
  api: CompiledApi, logicalId: string, stageName: unknown, methodSettings: unknown, clock: () => number, accessLogSetting?: unknown,
): void {
  if (typeof stageName !== 'string' || stageName === '') {
    throw new Error(`LocalApiGateway: ${logicalId}.StageName is missing or not resolved`);
  }
  const accessLogFormat = (accessLogSetting as { Format?: unknown } | undefined)?.Format;
  if (accessLogFormat !== undefined && typeof accessLogFormat !== 'string') {
    throw new Error(`LocalApiGateway: ${logicalId}.AccessLogSetting.Format is not a resolved string: ${JSON.stringify(accessLogFormat)}`);
  }
  if (accessLogFormat !== undefined) {
    checkAccessLogFormat(logicalId, accessLogFormat);
  }
  let bucket: TokenBucket | undefined;
  for (const [i, s] of ((methodSettings ?? []) as Array<Record<string, any>>).entries()) {
    const throttles = s.ThrottlingRateLimit !== undefined || s.ThrottlingBurstLimit !== undefined;
    if (!throttles) {
      continue; // metrics, logging, data trace: nothing to emulate
    }
    if (s.HttpMethod !== '*' || s.ResourcePath !== '/*') {
      throw new Error(`LocalApiGateway: ${logicalId}.MethodSettings[${i}] throttles ${s.HttpMethod} ${s.ResourcePath}: only stage-wide throttling (HttpMethod '*', ResourcePath '/*') is supported`);
    }
    const rate = Number(s.ThrottlingRateLimit ?? ACCOUNT_RATE_LIMIT);
    const burst = Number(s.ThrottlingBurstLimit ?? ACCOUNT_BURST_LIMIT);
    if (!(rate >= 0) || !(burst >= 0)) {
      throw new Error(`LocalApiGateway: ${logicalId}.MethodSettings[${i}] has invalid throttling (rate ${s.ThrottlingRateLimit}, burst ${s.ThrottlingBurstLimit})`);
    }
    bucket = new TokenBucket(burst, rate, clock);
  }
  if (api.stages.has(stageName)) {
    throw new Error(`LocalApiGateway: stage '${stageName}' of ${api.logicalId} is defined twice (${logicalId})`);
  }
  api.stages.set(stageName, { name: stageName, bucket, ...(accessLogFormat === undefined ? {} : { accessLogFormat }) });
}

// ---------------------------------------------------------------------------------------------
// Throttling
// ---------------------------------------------------------------------------------------------

/** API Gateway's throttle: a bucket of `capacity` tokens refilled at `ratePerSecond`, full at first. */
class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(private readonly capacity: number, private readonly ratePerSecond: number, private readonly clock: () => number) {
    this.tokens = capacity;
    this.last = clock();
  }

  /** Takes a token if there is one. */
  public take(): boolean {
    const now = this.clock();
    const elapsed = Math.max(0, now - this.last);
    this.last = now;
    this.tokens = Math.min(this.capacity, this.tokens + (elapsed * this.ratePerSecond) / 1000);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Authorization: the resource policy
// ---------------------------------------------------------------------------------------------

const CONDITION_OPERATORS: ConditionOperator[] = ['ArnEquals', 'ArnNotEquals', 'ArnLike', 'ArnNotLike', 'StringEquals', 'StringNotEquals'];

function compilePolicy(logicalId: string, policy: unknown): PolicyStatement[] {
  const document = typeof policy === 'string' ? JSON.parse(policy) : policy as Record<string, any>;
  const statements = Array.isArray(document.Statement) ? document.Statement : [document.Statement];
  return statements.map((s: Record<string, any>, i: number) => compileStatement(`${logicalId}.Policy.Statement[${i}]`, s));
}

function compileStatement(where: string, s: Record<string, any>): PolicyStatement {
  for (const name of Object.keys(s)) {
    if (!['Sid', 'Effect', 'Principal', 'Action', 'Resource', 'Condition'].includes(name)) {
      throw new Error(`LocalApiGateway: ${where}.${name} is not supported by the local resource-policy evaluator`);
    }
  }
  if (s.Effect !== 'Allow' && s.Effect !== 'Deny') {
    throw new Error(`LocalApiGateway: ${where}.Effect '${s.Effect}' is not Allow or Deny`);
  }
  if (s.Resource === undefined || s.Action === undefined || s.Principal === undefined) {
    throw new Error(`LocalApiGateway: ${where} needs Principal, Action and Resource`);
  }
  return {
    effect: s.Effect,
    principals: compilePrincipal(where, s.Principal),
    actions: toStrings(s.Action),
    resources: toStrings(s.Resource),
    conditions: compileConditions(where, s.Condition),
  };
}

function compilePrincipal(where: string, principal: unknown): string[] | undefined {
  if (principal === '*') {
    return undefined;
  }
  const p = principal as Record<string, unknown>;
  const keys = Object.keys(p ?? {});
  if (keys.length !== 1 || keys[0] !== 'AWS') {
    throw new Error(`LocalApiGateway: ${where}.Principal ${JSON.stringify(principal)} is not supported ('*' or {AWS: ...})`);
  }
  const arns = toStrings(p.AWS);
  return arns.includes('*') ? undefined : arns;
}

function compileConditions(where: string, condition: unknown): PolicyCondition[] {
  const result: PolicyCondition[] = [];
  for (const [operator, block] of Object.entries((condition ?? {}) as Record<string, Record<string, unknown>>)) {
    if (!CONDITION_OPERATORS.includes(operator as ConditionOperator)) {
      throw new Error(`LocalApiGateway: ${where}.Condition operator ${operator} is not supported (${CONDITION_OPERATORS.join(', ')})`);
    }
    for (const [key, values] of Object.entries(block)) {
      if (key.toLowerCase() !== 'aws:principalarn') {
        throw new Error(`LocalApiGateway: ${where}.Condition ${operator} on key ${key} is not supported (only aws:PrincipalArn)`);
      }
      result.push({ operator: operator as ConditionOperator, values: toStrings(values) });
    }
  }
  return result;
}

/** undefined when allowed, else the 403 API Gateway would answer. */
function authorize(api: CompiledApi, principalArn: string | undefined, stage: string, httpMethod: string, path: string): Reply | undefined {
  if (!principalArn) {
    // An unsigned call to an AWS_IAM method.
    return errorReply(403, 'Missing Authentication Token', 'MissingAuthenticationTokenException');
  }
  if (!api.policy) {
    return undefined; // identity policies are not modelled: the caller is trusted
  }
  const resource = `arn:aws:execute-api:${LOCAL_REGION}:${LOCAL_ACCOUNT}:${api.apiId}/${stage}/${httpMethod}/${path}`;
  const applicable = api.policy.filter((s) => statementApplies(s, api.apiId, principalArn, resource));
  if (applicable.some((s) => s.effect === 'Deny')) {
    return errorReply(403, `User: ${principalArn} is not authorized to access this resource with an explicit deny`, 'AccessDeniedException');
  }
  if (!applicable.some((s) => s.effect === 'Allow')) {
    return errorReply(403, `User: ${principalArn} is not authorized to access this resource`, 'AccessDeniedException');
  }
  return undefined;
}

function statementApplies(s: PolicyStatement, apiId: string, principalArn: string, resource: string): boolean {
  const actionMatches = s.actions.some((a) => globMatch(a.toLowerCase(), 'execute-api:invoke'));
  const resourceMatches = s.resources.some((r) => globMatch(expandExecuteApiResource(r, apiId), resource));
  const principalMatches = s.principals === undefined || s.principals.some((p) => principalMatchesArn(p, principalArn));
  return actionMatches && resourceMatches && principalMatches && s.conditions.every((c) => conditionHolds(c, principalArn));
}

/** `execute-api:/stage/METHOD/path` is shorthand for this API's ARN. */
function expandExecuteApiResource(resource: string, apiId: string): string {
  return resource.startsWith('execute-api:/')
    ? `arn:aws:execute-api:${LOCAL_REGION}:${LOCAL_ACCOUNT}:${apiId}/${resource.slice('execute-api:/'.length)}`
    : resource;
}

/** A principal entry: an ARN, an account's root (`arn:...:root`) or a bare account id. */
function principalMatchesArn(principal: string, arn: string): boolean {
  const account = arn.split(':')[4];
  if (/^\d{12}$/.test(principal)) {
    return principal === account;
  }
  const root = /^arn:aws[a-z-]*:iam::(\d{12}):root$/.exec(principal);
  return root ? root[1] === account : principal === arn;
}

function conditionHolds(c: PolicyCondition, principalArn: string): boolean {
  switch (c.operator) {
    case 'ArnEquals':
    case 'ArnLike':
      return c.values.some((v) => arnLike(v, principalArn));
    case 'ArnNotEquals':
    case 'ArnNotLike':
      return !c.values.some((v) => arnLike(v, principalArn));
    case 'StringEquals':
      return c.values.includes(principalArn);
    case 'StringNotEquals':
      return !c.values.includes(principalArn);
  }
}

/** IAM's ARN comparison: each of the six components compared with `*` and `?` wildcards. */
function arnLike(pattern: string, arn: string): boolean {
  const p = splitArn(pattern);
  const a = splitArn(arn);
  return p !== undefined && a !== undefined && p.every((part, i) => globMatch(part, a[i]));
}

function splitArn(arn: string): string[] | undefined {
  const parts = arn.split(':');
  return parts.length < 6 || parts[0] !== 'arn' ? undefined : [...parts.slice(0, 5), parts.slice(5).join(':')];
}

function globMatch(pattern: string, value: string): boolean {
  const source = pattern.split('').map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join('');
  return new RegExp(`^${source}$`, 's').test(value);
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

interface RouteMatch {
  readonly node: RouteNode;
  readonly method: CompiledMethod;
  /** Path parameters as received (still encoded). */
  readonly params: Map<string, string>;
}

/**
 * The most specific resource with a method for the request: literal segments before `{name}`
 * before `{name+}` (greedy, at least one segment), backtracking when a branch has no method.
 */
function matchRoute(node: RouteNode, segments: string[], i: number, httpMethod: string, params: Map<string, string>): RouteMatch | undefined {
  if (i === segments.length) {
    const method = node.methods.get(httpMethod) ?? node.methods.get('ANY');
    return method ? { node, method, params } : undefined;
  }
  const segment = segments[i];
  const decoded = safeDecode(segment);
  for (const child of node.children.filter((c) => !c.pathPart.startsWith('{') && c.pathPart === decoded)) {
    const found = matchRoute(child, segments, i + 1, httpMethod, params);
    if (found) {
      return found;
    }
  }
  for (const child of node.children.filter((c) => /^\{[^+]+\}$/.test(c.pathPart))) {
    const found = matchRoute(child, segments, i + 1, httpMethod, new Map(params).set(child.pathPart.slice(1, -1), segment));
    if (found) {
      return found;
    }
  }
  for (const child of node.children.filter((c) => c.pathPart.endsWith('+}'))) {
    const greedy = new Map(params).set(child.pathPart.slice(1, -2), segments.slice(i).join('/'));
    const found = matchRoute(child, segments, segments.length, httpMethod, greedy);
    if (found) {
      return found;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Parameter mapping, templates and integration responses
// ---------------------------------------------------------------------------------------------

interface MappedParams {
  readonly path: Map<string, string>;
  readonly querystring: Map<string, string>;
  readonly header: Map<string, string>;
}

/** Evaluates `integration.request.* = method.request.* | 'literal'`; missing sources map to nothing. */
function applyMappings(mappings: ParamMapping[], request: MethodRequest): MappedParams {
  const out: MappedParams = { path: new Map(), querystring: new Map(), header: new Map() };
  for (const m of mappings) {
    const value = readSource(m.source, request, m.location === 'path');
    if (value !== undefined) {
      out[m.location].set(m.name, value);
    }
  }
  return out;
}

function readSource(source: ParamSource, request: MethodRequest, forUri: boolean): string | undefined {
  switch (source.kind) {
    case 'literal':
      return source.value;
    case 'path':
      // Into a URI the value goes as received, so an encoded segment is not decoded and re-split.
      return (forUri ? request.rawPathParams : request.pathParams).get(source.name);
    case 'querystring':
      return lastValue(request.query, source.name, false);
    case 'header':
      return lookupHeader(request.headers, source.name);
  }
}

function selectIntegrationResponse(responses: IntegrationResponse[], status: string): IntegrationResponse | undefined {
  return responses.find((r) => r.pattern?.test(status)) ?? responses.find((r) => r.pattern === undefined);
}

function renderIntegrationResponse(api: CompiledApi, response: IntegrationResponse, request: MethodRequest,
  integrationBody: string, accept?: string): Reply {
  const types = Object.keys(response.templates);
  const wanted = mediaType(accept);
  const type = (wanted && types.includes(wanted)) ? wanted : types.includes('application/json') ? 'application/json' : types[0];
  let body = integrationBody;
  // `#set($context.responseOverride.status = 413)` in a response template replaces the method
  // response's status (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-override-request-response-parameters.html).
  const override: { status?: unknown } = {};
  if (type !== undefined) {
    try {
      body = renderTemplate(response.templates[type], request, integrationBody, override);
    } catch (e) {
      recordIntegrationError(api, `response template: ${(e as Error).message}`);
      return errorReply(500, 'Internal server error', 'InternalServerErrorException');
    }
  }
  const status = override.status === undefined ? response.statusCode : Number(override.status);
  return { status, body, headers: { ...response.headers, 'Content-Type': type ?? 'application/json' } };
}

/**
 * Renders a VTL mapping template with API Gateway's `$input`, `$util` and `$context`; a response
 * template's `$context.responseOverride` is written to `responseOverride`.
 */
function renderTemplate(template: string, request: MethodRequest, body: string, responseOverride?: Record<string, unknown>): string {
  return render(template, {
    input: makeInput(request, body),
    util: UTIL,
    context: { ...makeContext(request), ...(responseOverride ? { responseOverride } : {}) },
  }, undefined, { customMethodHandlers: [JAVA_STRING_LENGTH] });
}

/**
 * `$text.length()`: API Gateway's VTL values are Java strings, whose `length()` counts UTF-16 units,
 * as a JavaScript string's `length` does (velocityjs has no such method on strings).
 */
const JAVA_STRING_LENGTH = {
  uid: 'java-string-length',
  match: ({ property, context, params }: { property: string; context: unknown; params: unknown[] }) =>
    property === 'length' && typeof context === 'string' && params.length === 0,
  resolve: ({ context }: { context: unknown }) => (context as string).length,
};

/** A Java Map as VTL sees it (`keySet()`, `get()`, ...), in insertion order. */
class JavaMap {
  private readonly entries: Map<string, string>;

  constructor(entries: Iterable<[string, string]>, private readonly ignoreCase = false) {
    this.entries = new Map(entries);
  }

  public keySet(): string[] {
    return [...this.entries.keys()];
  }

  public get(name: string): string | undefined {
    if (this.entries.has(name) || !this.ignoreCase) {
      return this.entries.get(name);
    }
    const lower = String(name).toLowerCase();
    return [...this.entries].find(([k]) => k.toLowerCase() === lower)?.[1];
  }

  public containsKey(name: string): boolean {
    return this.get(name) !== undefined;
  }

  public size(): number {
    return this.entries.size;
  }

  public isEmpty(): boolean {
    return this.entries.size === 0;
  }

  public entrySet(): Array<{ key: string; value: string }> {
    return [...this.entries].map(([key, value]) => ({ key, value }));
  }

  public toString(): string {
    return `{${[...this.entries].map(([k, v]) => `${k}=${v}`).join(', ')}}`;
  }
}

function makeInput(request: MethodRequest, body: string): Record<string, unknown> {
  const path = new JavaMap(request.pathParams);
  // Duplicate query parameters and headers: the last value wins, as in API Gateway's maps.
  const querystring = new JavaMap(request.query);
  const header = new JavaMap(request.headers, true);
  const parsed = (): unknown => {
    try {
      return JSON.parse(body);
    } catch {
      return undefined;
    }
  };
  return {
    body,
    params: (name?: string) => {
      if (name === undefined) {
        return { path, querystring, header };
      }
      // Searched in API Gateway's order: path, query string, header.
      return path.get(name) ?? querystring.get(name) ?? header.get(name) ?? '';
    },
    json: (jsonPath: string) => JSON.stringify(readJsonPath(parsed(), jsonPath)) ?? '',
    path: (jsonPath: string) => readJsonPath(parsed(), jsonPath) ?? '',
  };
}

/**
 * An access log line: the stage's format with each `$context` variable it names replaced by its
 * value, `-` for one this gateway does not know or that has no value (as API Gateway writes it).
 * https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-variables-for-access-logging.html
 */
/** The `$context` variables send() renders in access log lines (a stage's format may use only these). */
const ACCESS_LOG_VARIABLES: readonly string[] = [
  'requestId', 'extendedRequestId', 'requestTime', 'requestTimeEpoch', 'httpMethod', 'resourcePath', 'path', 'stage',
  'status', 'integration.status', 'integrationStatus', 'error.responseType', 'responseLatency', 'integration.latency',
  'responseLength', 'protocol', 'identity.sourceIp', 'identity.userAgent', 'identity.userArn', 'identity.caller',
  'identity.user',
];

const CONTEXT_VARIABLE = /\$context\.([A-Za-z0-9_.]*[A-Za-z0-9_])/g;

/**
 * Strict: a stage whose access log format uses a `$context` variable the local runtime does not
 * render is refused when the template loads, rather than logging '-' where AWS logs a value.
 */
function checkAccessLogFormat(logicalId: string, format: string): void {
  for (const [, name] of format.matchAll(CONTEXT_VARIABLE)) {
    if (!ACCESS_LOG_VARIABLES.includes(name)) {
      throw new Error(`LocalApiGateway: ${logicalId}.AccessLogSetting.Format uses $context.${name}, which the local runtime does not render `
        + `(it renders ${ACCESS_LOG_VARIABLES.map((v) => `$context.${v}`).join(', ')}): add it to send() and ACCESS_LOG_VARIABLES in local/aws/apigateway.ts`);
    }
  }
}

/** Fills the access log format's `$context` variables; a variable without a value is '-', as API Gateway writes it. */
function renderAccessLog(format: string, values: Record<string, string | undefined>): string {
  return format.replace(CONTEXT_VARIABLE, (_m, name: string) => values[name] ?? '-');
}

function makeContext(request: MethodRequest): Record<string, unknown> {
  const account = request.principalArn?.split(':')[4] ?? '';
  return {
    requestId: request.requestId,
    extendedRequestId: request.requestId,
    requestTimeEpoch: request.timeEpochMs,
    requestTime: formatRequestTime(request.timeEpochMs),
    httpMethod: request.httpMethod,
    resourcePath: request.resource.path,
    resourceId: request.resource.id,
    path: `/${request.stage}${request.rawPath}`,
    stage: request.stage,
    accountId: LOCAL_ACCOUNT,
    protocol: 'HTTP/1.1',
    identity: {
      sourceIp: request.sourceIp,
      userAgent: lookupHeader(request.headers, 'user-agent') ?? '',
      userArn: request.principalArn ?? '',
      caller: request.principalArn ?? '',
      user: request.principalArn ?? '',
      accountId: account,
    },
  };
}

/** `$util`, with Java semantics where API Gateway has them. */
const UTIL = {
  base64Encode: (text: unknown) => Buffer.from(String(text ?? ''), 'utf8').toString('base64'),
  base64Decode: (text: unknown) => Buffer.from(String(text ?? ''), 'base64').toString('utf8'),
  urlEncode: (text: unknown) => javaUrlEncode(String(text ?? '')),
  urlDecode: (text: unknown) => decodeURIComponent(String(text ?? '').replace(/\+/g, ' ')),
  escapeJavaScript: (text: unknown) => escapeJavaScript(String(text ?? '')),
  parseJson: (text: unknown) => JSON.parse(String(text)),
};

/** java.net.URLEncoder (UTF-8): space is '+', only A-Za-z0-9 . - * _ kept. */
function javaUrlEncode(text: string): string {
  return encodeURIComponent(text)
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

/** Commons Lang's StringEscapeUtils.escapeJavaScript, which API Gateway uses (it escapes `'` too). */
function escapeJavaScript(text: string): string {
  const named: Record<string, string> = { '\b': '\\b', '\n': '\\n', '\t': '\\t', '\f': '\\f', '\r': '\\r', '\'': '\\\'', '"': '\\"', '\\': '\\\\', '/': '\\/' };
  let out = '';
  for (const c of text) {
    const code = c.charCodeAt(0);
    if (named[c] !== undefined) {
      out += named[c];
    } else if (c.length > 1) {
      // A surrogate pair: Java escapes each UTF-16 unit.
      out += [...Array(c.length).keys()].map((k) => `\\u${c.charCodeAt(k).toString(16).toUpperCase().padStart(4, '0')}`).join('');
    } else if (code < 32 || code > 0x7f) {
      out += `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;
    } else {
      out += c;
    }
  }
  return out;
}

/** `$`, `$.a.b`, `$.a[0]`, `$['a-b']`: what mapping templates use. */
function readJsonPath(value: unknown, path: string): unknown {
  const rest = String(path).trim();
  if (!rest.startsWith('$')) {
    throw new Error(`JSONPath must start with $ (given ${path})`);
  }
  const token = /\.([A-Za-z_$][\w$-]*)|\[(\d+)\]|\['([^']*)'\]|\["([^"]*)"\]/y;
  let current: any = value;
  token.lastIndex = 1;
  while (token.lastIndex < rest.length) {
    const m = token.exec(rest);
    if (!m) {
      throw new Error(`JSONPath ${path} is not supported by the local API Gateway`);
    }
    const key = m[1] ?? m[2] ?? m[3] ?? m[4];
    current = current !== null && typeof current === 'object' ? current[key] : undefined;
  }
  return current;
}

function formatRequestTime(epochMs: number): string {
  const d = new Date(epochMs);
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(d.getUTCDate())}/${months[d.getUTCMonth()]}/${d.getUTCFullYear()}:${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
}

// ---------------------------------------------------------------------------------------------
// SQS Query API form -> SendMessage
// ---------------------------------------------------------------------------------------------

/** The SendMessage input of a Query API form, or what is wrong with it. */
function parseSendMessage(fields: URLSearchParams): Omit<SendMessageCommandInput, 'QueueUrl'> | string {
  const action = fields.get('Action');
  if (action !== 'SendMessage') {
    return `Action '${action}' is not supported by the local SQS integration (SendMessage)`;
  }
  const body = fields.get('MessageBody');
  if (body === null || body === '') {
    return 'MessageBody is required';
  }
  const input: { -readonly [K in keyof Omit<SendMessageCommandInput, 'QueueUrl'>]: Omit<SendMessageCommandInput, 'QueueUrl'>[K] } = { MessageBody: body };
  const attributes: Record<string, Record<string, string>> = {};
  for (const [name, value] of fields) {
    const attribute = /^MessageAttribute\.(\d+)\.(Name|Value\.DataType|Value\.StringValue|Value\.BinaryValue)$/.exec(name);
    if (attribute) {
      (attributes[attribute[1]] ??= {})[attribute[2]] = value;
    } else if (name === 'DelaySeconds') {
      input.DelaySeconds = Number(value);
    } else if (name === 'MessageGroupId') {
      input.MessageGroupId = value;
    } else if (name === 'MessageDeduplicationId') {
      input.MessageDeduplicationId = value;
    } else if (!['Action', 'MessageBody', 'Version'].includes(name)) {
      return `parameter ${name} is not supported by the local SQS integration`;
    }
  }
  const messageAttributes: Record<string, MessageAttributeValue> = {};
  for (const a of Object.values(attributes)) {
    if (!a.Name || !a['Value.DataType']) {
      return 'MessageAttribute needs Name and Value.DataType';
    }
    messageAttributes[a.Name] = {
      DataType: a['Value.DataType'],
      StringValue: a['Value.StringValue'],
      BinaryValue: a['Value.BinaryValue'] === undefined ? undefined : Buffer.from(a['Value.BinaryValue'], 'base64'),
    };
  }
  if (Object.keys(messageAttributes).length > 0) {
    input.MessageAttributes = messageAttributes;
  }
  return input;
}

function sqsErrorBody(code: string, text: string, requestId: string): string {
  return JSON.stringify({ Error: { Code: code, Message: text, Type: 'Sender' }, RequestId: requestId });
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------------------------

class UpstreamTimeout extends Error {}

interface UpstreamResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[]>;
  readonly body: Buffer;
}

function sendHttp(url: URL, method: string, headers: Record<string, string | string[]>, body: Buffer,
  timeoutMs: number, agent: http.Agent): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http;
    const req = client.request(url, { method, headers: { ...headers, 'Content-Length': String(body.length) }, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 502, headers: responseHeaders(res), body: Buffer.concat(chunks) });
      });
    });
    const timer = setTimeout(() => req.destroy(new UpstreamTimeout(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end(body);
  });
}

/** Upstream response headers for the client, hop-by-hop headers dropped. */
function responseHeaders(res: http.IncomingMessage): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of pairs(res.rawHeaders)) {
    if (HOP_BY_HOP_HEADERS.has(name.toLowerCase())) {
      continue;
    }
    const existing = out[name];
    out[name] = existing === undefined ? value : [...toStrings(existing), value];
  }
  return out;
}

/** The client's headers for the upstream: hop-by-hop headers and PRINCIPAL_HEADER dropped. */
function forwardableHeaders(headers: Array<[string, string]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of headers) {
    if (HOP_BY_HOP_HEADERS.has(name.toLowerCase())) {
      continue;
    }
    const existing = out[name];
    out[name] = existing === undefined ? value : [...toStrings(existing), value];
  }
  return out;
}

function setHeaderIgnoringCase(headers: Record<string, string | string[]>, name: string, value: string): void {
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() === name.toLowerCase()) {
      delete headers[key];
    }
  }
  headers[name] = value;
}

/** The request's headers as sent (case kept), PRINCIPAL_HEADER dropped, Host as API Gateway sees it. */
function requestHeaders(req: http.IncomingMessage, apiId: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of pairs(req.rawHeaders)) {
    const lower = name.toLowerCase();
    if (lower === PRINCIPAL_HEADER) {
      continue;
    }
    out.push([name, lower === 'host' ? `${apiId}.execute-api.${LOCAL_REGION}.amazonaws.com` : value]);
  }
  return out;
}

function pairs(raw: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    out.push([raw[i], raw[i + 1]]);
  }
  return out;
}

function lookupHeader(headers: Array<[string, string]>, name: string): string | undefined {
  return lastValue(headers, name, true);
}

function lastValue(entries: Array<[string, string]>, name: string, ignoreCase: boolean): string | undefined {
  const wanted = ignoreCase ? name.toLowerCase() : name;
  let found: string | undefined;
  for (const [k, v] of entries) {
    if ((ignoreCase ? k.toLowerCase() : k) === wanted) {
      found = v;
    }
  }
  return found;
}

function headerValue(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[value.length - 1] : value;
}

/** The media type of a Content-Type or Accept value, lowercased, parameters dropped. */
function mediaType(value: string | undefined): string | undefined {
  const type = value?.split(/[;,]/)[0].trim().toLowerCase();
  return type ? type : undefined;
}

/** The request body, or undefined when it is over `limit` bytes. */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume(); // discard it: answering 413 does not need the bytes
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
      } else if (!over) {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(over ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function isLoopback(hostname: string): boolean {
  return ['127.0.0.1', 'localhost', '[::1]', '::1'].includes(hostname.toLowerCase());
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function toStrings(value: unknown): string[] {
  return (Array.isArray(value) ? value : [value]).map((v) => String(v));
}

function message(text: string): string {
  return JSON.stringify({ message: text });
}

function errorReply(status: number, text: string, errorType: string): Reply {
  return { status, body: message(text), headers: { 'x-amzn-ErrorType': errorType } };
}

function countStatus(stats: MutableStats, status: number): void {
  if (status >= 200 && status < 300) {
    stats.status2xx++;
  } else if (status >= 400 && status < 500) {
    stats.status4xx++;
  } else if (status >= 500) {
    stats.status5xx++;
  }
}

function recordIntegrationError(api: CompiledApi, text: string): void {
  api.stats.integrationErrors++;
  api.stats.lastIntegrationError = text;
}

function closeServer(api: CompiledApi): Promise<void> {
  const server = api.server;
  api.server = undefined;
  api.port = undefined;
  if (!server) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

