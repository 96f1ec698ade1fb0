/**
 * Local AWS AppConfig: the AppConfigData API (StartConfigurationSession, GetLatestConfiguration,
 * REST JSON as AWS serves it) over the hosted configurations and deployments of the template, plus
 * the two control-plane steps an operator runs to change a value (create a hosted configuration
 * version, start a deployment) as methods. Handlers read it with their normal code through
 * AWS_ENDPOINT_URL_APPCONFIGDATA and do not branch on "local". No emulator was checked for
 * AppConfig (BUILD-NOTES).
 *
 * Faithful where the dynamic delay depends on it: one-use configuration tokens chained through
 * Next-Poll-Configuration-Token, an empty body when nothing changed since the token's previous
 * read, RequiredMinimumPollIntervalInSeconds between 15 and 86400 echoed as
 * Next-Poll-Interval-In-Seconds, JSON_SCHEMA validators applied when a version is created (a
 * subset of JSON schema: type, properties, required, additionalProperties, minimum, maximum), and
 * deployments that take effect at once (what a strategy with no duration and no bake time does).
 * Not modeled: gradual rollouts, bake times and rollbacks, Lambda validators, extensions, signing.
 */
import { randomUUID } from 'crypto';
import * as http from 'http';
import { AddressInfo } from 'net';
import { ResolvedResource } from '../types';

/** A hosted configuration version. */
export interface HostedVersion {
  readonly versionNumber: number;
  readonly content: string;
  readonly contentType: string;
}

interface Profile {
  readonly applicationId: string;
  readonly id: string;
  readonly name: string;
  /** JSON schemas from JSON_SCHEMA validators. */
  readonly schemas: unknown[];
  readonly versions: HostedVersion[];
}

interface Session {
  readonly key: string;
  readonly pollIntervalSeconds: number;
  /** Version last returned on this session's chain (0: none yet). */
  lastVersion: number;
}

/** Counters, for tests. */
export interface LocalAppConfigStats {
  readonly sessionsStarted: number;
  readonly configurationReads: number;
}

/** An error as the AppConfig APIs name them. */
export class LocalAppConfigError extends Error {
  constructor(name: string, message: string, public readonly statusCode: number) {
    super(message);
    this.name = name;
  }
}

/** A running local AppConfig. */
export class LocalAppConfig {
  /**
   * Starts the AppConfigData endpoint on 127.0.0.1 with a free port, holding what the template's
   * AppConfig `resources` declare; `refOf` gives a resource's `Ref` (its local id or version number).
   */
  public static async start(resources: ResolvedResource[] = [], refOf: (logicalId: string) => string = (id) => id): Promise<LocalAppConfig> {
    const appConfig = new LocalAppConfig();
    appConfig.load(resources, refOf);
    await appConfig.listen();
    return appConfig;
  }

  /** Base URL, e.g. `http://127.0.0.1:40123` (no trailing slash). */
  public endpoint = '';

  private readonly applications = new Map<string, string>(); // id -> name
  private readonly environments = new Map<string, { applicationId: string; name: string }>(); // id -> ...
  private readonly profiles = new Map<string, Profile>(); // `${applicationId}/${profileId}`
  /** Deployed version by `${applicationId}/${environmentId}/${profileId}`. */
  private readonly deployed = new Map<string, number>();
  private readonly tokens = new Map<string, Session>();
  private readonly counters = { sessionsStarted: 0, configurationReads: 0 };
  private server?: http.Server;

  private constructor() {}

  /**
   * Creates a hosted configuration version (`aws appconfig create-hosted-configuration-version`).
   * Refused with BadRequestException when it does not match the profile's JSON schema validators.
   */
  public createHostedConfigurationVersion(applicationId: string, profileId: string, content: string, contentType = 'application/json'): HostedVersion {
    const profile = this.profile(applicationId, profileId);
    for (const schema of profile.schemas) {
      let value: unknown;
      try {
        value = JSON.parse(content);
      } catch {
        throw new LocalAppConfigError('BadRequestException', 'The content is not valid JSON', 400);
      }
      const problems = validateJsonSchema(schema, value, '$');
      if (problems.length > 0) {
        throw new LocalAppConfigError('BadRequestException', `The content failed the JSON_SCHEMA validator: ${problems.join('; ')}`, 400);
      }
    }
    const version = { versionNumber: profile.versions.length + 1, content, contentType };
    profile.versions.push(version);
    return version;
  }

  /** Deploys a version to an environment, effective at once (`aws appconfig start-deployment`). */
  public startDeployment(applicationId: string, environmentId: string, profileId: string, versionNumber: number): void {
    const profile = this.profile(applicationId, profileId);
    if (this.environments.get(environmentId)?.applicationId !== applicationId) {
      throw new LocalAppConfigError('ResourceNotFoundException', `Environment ${environmentId} not found in application ${applicationId}`, 404);
    }
    if (!profile.versions.some((v) => v.versionNumber === versionNumber)) {
      throw new LocalAppConfigError('ResourceNotFoundException', `Version ${versionNumber} of profile ${profileId} not found`, 404);
    }
    this.deployed.set(`${applicationId}/${environmentId}/${profileId}`, versionNumber);
  }

  /**
   * Creates a version with `content` and deploys it to every environment where the profile is
   * deployed (an operator's two commands). Returns the version.
   */
  public deploy(applicationId: string, profileId: string, content: string): HostedVersion {
    const version = this.createHostedConfigurationVersion(applicationId, profileId, content);
    for (const key of this.deployed.keys()) {
      const [app, env, profile] = key.split('/');
      if (app === applicationId && profile === profileId) {
        this.startDeployment(app, env, profile, version.versionNumber);
      }
    }
    return version;
  }

  /** The profiles that are deployed somewhere: `{ applicationId, profileId, name }`. */
  public deployedProfiles(): Array<{ applicationId: string; profileId: string; name: string }> {
    const seen = new Set<string>();
    const out: Array<{ applicationId: string; profileId: string; name: string }> = [];
    for (const key of this.deployed.keys()) {
      const [applicationId, , profileId] = key.split('/');
      if (!seen.has(`${applicationId}/${profileId}`)) {
        seen.add(`${applicationId}/${profileId}`);
        out.push({ applicationId, profileId, name: this.profile(applicationId, profileId).name });
      }
    }
    return out;
  }

  public stats(): LocalAppConfigStats {
    return { ...this.counters };
  }

  public stop(): Promise<void> {
    const server = this.server;
    if (!server) {
      return Promise.resolve();
    }
    this.server = undefined;
    return new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      // Keep-alive sockets of the handlers' fetch would hold close() open until they time out.
      server.closeAllConnections();
    });
  }

  // ---------------------------------------------------------------------------------------------

  /** Applications, environments, profiles, hosted versions and deployments of the template, in order. */
  private load(resources: ResolvedResource[], refOf: (logicalId: string) => string): void {
    const ofType = (type: string) => resources.filter((r) => r.type === `AWS::AppConfig::${type}`);
    for (const r of ofType('Application')) {
      this.applications.set(refOf(r.logicalId), String(r.properties.Name));
    }
    for (const r of ofType('Environment')) {
      this.environments.set(refOf(r.logicalId), { applicationId: r.properties.ApplicationId, name: String(r.properties.Name) });
    }
    for (const r of ofType('ConfigurationProfile')) {
      if (r.properties.LocationUri !== 'hosted') {
        throw new Error(`Cannot run ${r.logicalId} (AWS::AppConfig::ConfigurationProfile) locally: only hosted configurations are served (LocationUri ${r.properties.LocationUri})`);
      }
      const validators = (r.properties.Validators ?? []) as Array<{ Type: string; Content: string }>;
      if (validators.some((v) => v.Type !== 'JSON_SCHEMA')) {
        throw new Error(`Cannot run ${r.logicalId} (AWS::AppConfig::ConfigurationProfile) locally: only JSON_SCHEMA validators are applied`);
      }
      const id = refOf(r.logicalId);
      this.profiles.set(`${r.properties.ApplicationId}/${id}`, {
        applicationId: r.properties.ApplicationId,
        id,
        name: String(r.properties.Name),
        schemas: validators.map((v) => JSON.parse(v.Content)),
        versions: [],
      });
    }
    for (const r of ofType('HostedConfigurationVersion')) {
      const version = this.createHostedConfigurationVersion(r.properties.ApplicationId, r.properties.ConfigurationProfileId,
        r.properties.Content, r.properties.ContentType);
      if (String(version.versionNumber) !== refOf(r.logicalId)) {
        throw new Error(`local AppConfig: ${r.logicalId} became version ${version.versionNumber}, the template resolved it to ${refOf(r.logicalId)}`);
      }
    }
    for (const r of ofType('Deployment')) {
      const p = r.properties;
      this.startDeployment(p.ApplicationId, p.EnvironmentId, p.ConfigurationProfileId, Number(p.ConfigurationVersion));
    }
  }

  private profile(applicationId: string, profileId: string): Profile {
    const profile = this.profiles.get(`${applicationId}/${profileId}`);
    if (!profile) {
      throw new LocalAppConfigError('ResourceNotFoundException', `Configuration profile ${profileId} not found in application ${applicationId}`, 404);
    }
    return profile;
  }

  private async listen(): Promise<void> {
    const server = http.createServer((req, res) => {
      readBody(req).then((body) => respond(res, this.handle(req, body)), () => res.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  private handle(req: http.IncomingMessage, body: string): Reply {
    const url = new URL(req.url ?? '/', 'http://local');
    try {
      if (req.method === 'POST' && url.pathname === '/configurationsessions') {
        return this.startConfigurationSession(body);
      }
      if (req.method === 'GET' && url.pathname === '/configuration') {
        return this.getLatestConfiguration(url.searchParams.get('configuration_token'));
      }
      return errorReply(new LocalAppConfigError('UnknownOperationException',
        `The local AppConfigData serves POST /configurationsessions and GET /configuration (got ${req.method} ${url.pathname})`, 404));
    } catch (error) {
      if (error instanceof LocalAppConfigError) {
        return errorReply(error);
      }
      return errorReply(new LocalAppConfigError('InternalServerException', String(error), 500));
    }
  }

  private startConfigurationSession(body: string): Reply {
    let input: Record<string, unknown>;
    try {
      input = JSON.parse(body || '{}');
    } catch {
      throw new LocalAppConfigError('BadRequestException', 'The request body is not JSON', 400);
    }
    const applicationId = this.findId(this.applications, input.ApplicationIdentifier, 'Application', (name) => name);
    const environmentId = this.findId(this.environments, input.EnvironmentIdentifier, 'Environment',
      (env) => (env.applicationId === applicationId ? env.name : undefined));
    const profileId = this.findProfileId(applicationId, input.ConfigurationProfileIdentifier);
    const interval = input.RequiredMinimumPollIntervalInSeconds ?? 60;
    if (typeof interval !== 'number' || !Number.isInteger(interval) || interval < 15 || interval > 86400) {
      throw new LocalAppConfigError('BadRequestException', `RequiredMinimumPollIntervalInSeconds must be an integer from 15 to 86400, got ${JSON.stringify(interval)}`, 400);
    }
    this.counters.sessionsStarted++;
    const token = this.mint({ key: `${applicationId}/${environmentId}/${profileId}`, pollIntervalSeconds: interval, lastVersion: 0 });
    return { status: 201, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ InitialConfigurationToken: token }) };
  }

  private getLatestConfiguration(token: string | null): Reply {
    const session = token === null ? undefined : this.tokens.get(token);
    if (!session) {
      throw new LocalAppConfigError('BadRequestException', 'The configuration token is not valid, was already used, or expired', 400);
    }
    this.tokens.delete(token!);
    this.counters.configurationReads++;
    const [applicationId, , profileId] = session.key.split('/');
    const deployedVersion = this.deployed.get(session.key) ?? 0;
    const changed = deployedVersion !== session.lastVersion;
    const version = this.profile(applicationId, profileId).versions.find((v) => v.versionNumber === deployedVersion);
    const next = this.mint({ ...session, lastVersion: deployedVersion });
    return {
      status: 200,
      headers: {
        'next-poll-configuration-token': next,
        'next-poll-interval-in-seconds': String(session.pollIntervalSeconds),
        'content-type': version?.contentType ?? 'application/octet-stream',
        ...(version ? { 'version-label': String(version.versionNumber) } : {}),
      },
      body: changed && version ? version.content : '',
    };
  }

  private mint(session: Session): string {
    const token = Buffer.from(randomUUID()).toString('base64');
    this.tokens.set(token, session);
    return token;
  }

  /** An id from an identifier that is an id or a name (AppConfigData accepts both). */
  private findId<T>(map: Map<string, T>, identifier: unknown, what: string, nameOf: (value: T) => string | undefined): string {
    if (typeof identifier !== 'string' || identifier === '') {
      throw new LocalAppConfigError('BadRequestException', `${what}Identifier is required`, 400);
    }
    if (map.has(identifier) && nameOf(map.get(identifier)!) !== undefined) {
      return identifier;
    }
    for (const [id, value] of map) {
      if (nameOf(value) === identifier) {
        return id;
      }
    }
    throw new LocalAppConfigError('ResourceNotFoundException', `${what} ${identifier} not found`, 404);
  }

  private findProfileId(applicationId: string, identifier: unknown): string {
    for (const profile of this.profiles.values()) {
      if (profile.applicationId === applicationId && (profile.id === identifier || profile.name === identifier)) {
        return profile.id;
      }
    }
    throw new LocalAppConfigError('ResourceNotFoundException', `Configuration profile ${String(identifier)} not found`, 404);
  }
}

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

function errorReply(error: LocalAppConfigError): Reply {
  return {
    status: error.statusCode,
    headers: { 'content-type': 'application/json', 'x-amzn-errortype': error.name },
    body: JSON.stringify({ Message: error.message }),
  };
}

function respond(res: http.ServerResponse, reply: Reply): void {
  res.writeHead(reply.status, {
    ...reply.headers,
    'content-length': Buffer.byteLength(reply.body),
    'x-amzn-requestid': randomUUID(),
  });
  res.end(reply.body);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * The subset of JSON schema the library's validators use: type, properties, required,
 * additionalProperties (false), minimum, maximum. Returns the problems found (none: valid).
 */
export function validateJsonSchema(schema: any, value: unknown, at: string): string[] {
  const problems: string[] = [];
  const type = schema?.type;
  if (type !== undefined && !matchesType(type, value)) {
    return [`${at} must be of type ${type}, got ${JSON.stringify(value)}`];
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) {
      problems.push(`${at} must be >= ${schema.minimum}, got ${value}`);
    }
    if (typeof schema.maximum === 'number' && value > schema.maximum) {
      problems.push(`${at} must be <= ${schema.maximum}, got ${value}`);
    }
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const fields = value as Record<string, unknown>;
    for (const name of (schema.required ?? []) as string[]) {
      if (!(name in fields)) {
        problems.push(`${at}.${name} is required`);
      }
    }
    const properties = (schema.properties ?? {}) as Record<string, unknown>;
    for (const [name, field] of Object.entries(fields)) {
      if (name in properties) {
        problems.push(...validateJsonSchema(properties[name], field, `${at}.${name}`));
      } else if (schema.additionalProperties === false) {
        problems.push(`${at}.${name} is not allowed`);
      }
    }
  }
  return problems;
}

function matchesType(type: string, value: unknown): boolean {
  switch (type) {
    case 'object': return typeof value === 'object' && value !== null && !Array.isArray(value);
    case 'array': return Array.isArray(value);
    case 'integer': return typeof value === 'number' && Number.isInteger(value);
    case 'number': return typeof value === 'number' && Number.isFinite(value);
    case 'string': return typeof value === 'string';
    case 'boolean': return typeof value === 'boolean';
    case 'null': return value === null;
    default: return true;
  }
}
