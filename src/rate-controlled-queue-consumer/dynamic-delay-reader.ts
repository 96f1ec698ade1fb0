/**
 * Handler side of the dynamic delay (see `dynamic-delay.ts`): reads `{"extraDelayMs": N}` (and the
 * rate in force, `"requestsPerSecond": R`, when operators set one) from AWS AppConfig through the
 * AppConfigData API, cached, and hands the pacer an extra slot interval and the rate in force.
 *
 * Guarantees to the pacer: `extraIntervalMs()` never throws and never returns less than 0 or more
 * than MAX_EXTRA_DELAY_MS. It calls AppConfig at most once per poll interval (the larger of ours
 * and AppConfig's NextPollIntervalInSeconds); between calls, and when a call fails, it returns the
 * last good value (0 before the first one). So dispatch can only slow down, and an AppConfig outage
 * leaves the contract rate (or the last operator value) in force.

The rate in force (pacing-settings.ts) comes with the time this environment first read the current
settings (`settingsSinceMs`, infinite before the first good read): the pacer uses a higher rate only
one window after that, and never speeds the stored schedule up on settings it has not read (an
AppConfig outage at a cold start keeps the rate the schedule was last reserved at).
 *
 * This module is bundled into the dispatcher Lambda only; the construct library never imports it.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'crypto';
import type { Logger } from '@aws-lambda-powertools/logger';
// The AppConfigData client (@aws-sdk/client-appconfigdata) is not among the project's
// dependencies; its two REST calls are small, so they are signed with the SDK's own SigV4 signer
// and default credential chain (both installed with every SDK v3 client). `AppConfigDataApi`
// has the client's input/output shapes, so replacing this transport with the client is an adapter.
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { DEFAULT_POLL_INTERVAL_SECONDS, DynamicDelayEnv, MAX_EXTRA_DELAY_MS, MIN_POLL_INTERVAL_SECONDS } from './dynamic-delay-env';
import { PacingSettings } from './pacing-settings';

/** The two AppConfigData operations, with the official client's input and output shapes. */
export interface AppConfigDataApi {
  startConfigurationSession(input: {
    ApplicationIdentifier: string;
    EnvironmentIdentifier: string;
    ConfigurationProfileIdentifier: string;
    RequiredMinimumPollIntervalInSeconds?: number;
  }): Promise<{ InitialConfigurationToken?: string }>;
  getLatestConfiguration(input: { ConfigurationToken: string }): Promise<{
    NextPollConfigurationToken?: string;
    NextPollIntervalInSeconds?: number;
    ContentType?: string;
    /** Empty when the configuration did not change since the token's previous read. */
    Configuration?: Uint8Array;
    VersionLabel?: string;
  }>;
}

/** What the pacer needs (DispatchDeps.dynamicDelay). */
export interface ExtraIntervalSource {
  /** Extra milliseconds added to the slot interval; never throws, never < 0. */
  extraIntervalMs(): Promise<number>;
}

/** The logger methods used; Powertools' Logger fits. */
export type DynamicDelayLogger = Pick<Logger, 'info' | 'warn'>;

export interface DynamicDelayReaderOptions {
  readonly api: AppConfigDataApi;
  readonly applicationId: string;
  readonly environmentId: string;
  readonly configurationProfileId: string;
  /** Shortest time between two GetLatestConfiguration calls, seconds. Default 30. */
  readonly pollIntervalSeconds?: number;
  readonly logger?: DynamicDelayLogger;
  /** Time source (epoch ms), injectable for tests. Default Date.now. */
  readonly now?: () => number;
}

/** Reads and caches the dynamic delay; see the module comment for what it guarantees. */
export class DynamicDelayReader implements ExtraIntervalSource {
  private readonly api: AppConfigDataApi;
  private readonly pollIntervalSeconds: number;
  private readonly now: () => number;
  private token?: string;
  private nextPollAtMs = Number.NEGATIVE_INFINITY;
  private value = 0;
  private rate?: number;
  /** When the current settings were first read; infinite before the first good read. */
  private sinceMs = Number.POSITIVE_INFINITY;
  private refreshing?: Promise<number>;

  constructor(private readonly options: DynamicDelayReaderOptions) {
    this.api = options.api;
    this.pollIntervalSeconds = Math.max(MIN_POLL_INTERVAL_SECONDS, options.pollIntervalSeconds ?? DEFAULT_POLL_INTERVAL_SECONDS);
    this.now = options.now ?? Date.now;
  }

  /** The extra slot interval in milliseconds: cached, refreshed at most once per poll interval. */
  public async extraIntervalMs(): Promise<number> {
    if (this.now() < this.nextPollAtMs) {
      return this.value;
    }
    // Concurrent callers share one refresh.
    this.refreshing ??= this.refresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** The delay, the rate in force and since when: cached, refreshed like `extraIntervalMs`. */
  public async pacingSettings(): Promise<PacingSettings> {
    const extraIntervalMs = await this.extraIntervalMs();
    return {
      extraIntervalMs,
      ...(this.rate !== undefined ? { rateInForce: this.rate } : {}),
      settingsSinceMs: this.sinceMs,
    };
  }

  private async refresh(): Promise<number> {
    try {
      if (this.token === undefined) {
        const session = await this.api.startConfigurationSession({
          ApplicationIdentifier: this.options.applicationId,
          EnvironmentIdentifier: this.options.environmentId,
          ConfigurationProfileIdentifier: this.options.configurationProfileId,
          RequiredMinimumPollIntervalInSeconds: this.pollIntervalSeconds,
        });
        if (!session.InitialConfigurationToken) {
          throw new Error('StartConfigurationSession returned no InitialConfigurationToken');
        }
        this.token = session.InitialConfigurationToken;
      }
      const latest = await this.api.getLatestConfiguration({ ConfigurationToken: this.token });
      // Each token is good for one call; without a next one, the next refresh opens a new session.
      this.token = latest.NextPollConfigurationToken || undefined;
      const interval = Math.max(this.pollIntervalSeconds, latest.NextPollIntervalInSeconds ?? 0);
      this.nextPollAtMs = this.now() + interval * 1000;
      if (latest.Configuration !== undefined && latest.Configuration.length > 0) {
        this.apply(Buffer.from(latest.Configuration).toString('utf8'), latest.VersionLabel);
      }
      // The first good read: from now on the settings are known (an empty body means unchanged).
      if (this.sinceMs === Number.POSITIVE_INFINITY) {
        this.sinceMs = this.now();
      }
    } catch (error) {
      // Never into the pacer: keep the last good value, try again after a poll interval (a new
      // session, in case the token expired), so a failing AppConfig costs one call per interval.
      this.token = undefined;
      this.nextPollAtMs = this.now() + this.pollIntervalSeconds * 1000;
      this.options.logger?.warn('could not read the dynamic delay from AppConfig; keeping the last value', {
        extraDelayMs: this.value, error,
      });
    }
    return this.value;
  }

  /** Applies new content; invalid content is clamped (it can only slow) or ignored, with a warning. */
  private apply(text: string, versionLabel: string | undefined): void {
    const parsed = parseExtraDelay(text);
    if (parsed.warning) {
      this.options.logger?.warn(`dynamic delay configuration: ${parsed.warning}`, { content: text.slice(0, 200), versionLabel });
    }
    if (parsed.value !== undefined && parsed.value !== this.value) {
      this.options.logger?.info('dynamic delay changed', { from: this.value, to: parsed.value, versionLabel });
      this.value = parsed.value;
      this.sinceMs = this.now();
    }
    const rate = parseRateInForce(text);
    if (rate.warning) {
      this.options.logger?.warn(`rate in force: ${rate.warning}`, { content: text.slice(0, 200), versionLabel });
    }
    if (!rate.ignored && rate.value !== this.rate) {
      this.options.logger?.info('rate in force changed', { from: this.rate ?? 'contract', to: rate.value ?? 'contract', versionLabel });
      this.rate = rate.value;
      this.sinceMs = this.now();
    }
  }
}

/**
 * Reads `extraDelayMs` from configuration content. Not JSON, not an object, or not a number:
 * ignored (value undefined). Negative: 0. Above MAX_EXTRA_DELAY_MS: the maximum. Fractions are
 * rounded up. Each of these comes with a warning. (AppConfig's schema validator normally refuses
 * such content before it is deployed; this is the second line.)
 */
export function parseExtraDelay(text: string): { value?: number; warning?: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { warning: 'content is not JSON; ignored (the last value stays)' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { warning: 'content is not a JSON object; ignored (the last value stays)' };
  }
  const raw = (parsed as Record<string, unknown>).extraDelayMs;
  if (typeof raw !== 'number' || !Number.isFinite(raw)) {
    return { warning: `extraDelayMs must be a number, got ${JSON.stringify(raw) ?? 'nothing'}; ignored (the last value stays)` };
  }
  if (raw < 0) {
    return { value: 0, warning: `extraDelayMs ${raw} is negative; 0 used (the delay can only slow dispatch)` };
  }
  if (raw > MAX_EXTRA_DELAY_MS) {
    return { value: MAX_EXTRA_DELAY_MS, warning: `extraDelayMs ${raw} is above ${MAX_EXTRA_DELAY_MS}; ${MAX_EXTRA_DELAY_MS} used` };
  }
  if (!Number.isInteger(raw)) {
    return { value: Math.ceil(raw), warning: `extraDelayMs ${raw} is not a whole number; ${Math.ceil(raw)} used` };
  }
  return { value: raw };
}

/**
 * Reads the rate in force, `requestsPerSecond`, from configuration content. Absent: the contract
 * (value undefined). Not a number, or not above 0: ignored (the last value stays), with a warning.
 * Above the contract the pacer uses the contract (the ceiling); AppConfig's schema validator
 * normally refuses such content before it is deployed.
 */
export function parseRateInForce(text: string): { value?: number; ignored?: boolean; warning?: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ignored: true };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { ignored: true };
  }
  if (!('requestsPerSecond' in parsed)) {
    return {};
  }
  const raw = (parsed as Record<string, unknown>).requestsPerSecond;
  if (typeof raw !== 'number' || !Number.isFinite(raw) || raw <= 0) {
    return { ignored: true, warning: `requestsPerSecond must be a number above 0, got ${JSON.stringify(raw)}; ignored (the last value stays)` };
  }
  return { value: raw };
}

/** The reader configured by the DynamicDelay construct's variables, or undefined when they are not set. */
export function dynamicDelayFromEnv(
  env: Record<string, string | undefined>,
  logger?: DynamicDelayLogger,
  api?: AppConfigDataApi,
): DynamicDelayReader | undefined {
  const applicationId = env[DynamicDelayEnv.APPLICATION_ID];
  const environmentId = env[DynamicDelayEnv.ENVIRONMENT_ID];
  const configurationProfileId = env[DynamicDelayEnv.CONFIGURATION_PROFILE_ID];
  if (!applicationId && !environmentId && !configurationProfileId) {
    return undefined;
  }
  if (!applicationId || !environmentId || !configurationProfileId) {
    throw new Error(`Environment variables ${DynamicDelayEnv.APPLICATION_ID}, ${DynamicDelayEnv.ENVIRONMENT_ID} and `
      + `${DynamicDelayEnv.CONFIGURATION_PROFILE_ID} must be set together (the DynamicDelay construct sets all three)`);
  }
  const rawInterval = env[DynamicDelayEnv.POLL_INTERVAL_SECONDS];
  const pollIntervalSeconds = rawInterval === undefined || rawInterval === '' ? DEFAULT_POLL_INTERVAL_SECONDS : Number(rawInterval);
  if (!Number.isSafeInteger(pollIntervalSeconds) || pollIntervalSeconds < MIN_POLL_INTERVAL_SECONDS) {
    throw new Error(`Environment variable ${DynamicDelayEnv.POLL_INTERVAL_SECONDS} must be a whole number of seconds >= ${MIN_POLL_INTERVAL_SECONDS}, got ${JSON.stringify(rawInterval)}`);
  }
  return new DynamicDelayReader({
    api: api ?? new SignedFetchAppConfigData({ region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1', endpoint: appConfigDataEndpoint(env) }),
    applicationId,
    environmentId,
    configurationProfileId,
    pollIntervalSeconds,
    logger,
  });
}

/** The SDK's endpoint override variables for AppConfigData (service id `AppConfigData`), else undefined. */
export function appConfigDataEndpoint(env: Record<string, string | undefined>): string | undefined {
  const value = env.AWS_ENDPOINT_URL_APPCONFIGDATA?.trim() || env.AWS_ENDPOINT_URL?.trim();
  return value || undefined;
}

// -----------------------------------------------------------------------------------------------
// Transport: the AppConfigData REST API over fetch, SigV4-signed (signing name `appconfig`).

interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export interface SignedFetchAppConfigDataOptions {
  readonly region: string;
  /** Default `https://appconfigdata.<region>.amazonaws.com`. */
  readonly endpoint?: string;
  /** Default: the SDK's default credential chain (in Lambda: the function role's credentials). */
  readonly credentials?: () => Promise<Credentials>;
  /** Per-call timeout, milliseconds: the pacer waits on the first read. Default 2000. */
  readonly timeoutMs?: number;
}

/** An AppConfigData API error, named as AWS names it (e.g. `BadRequestException`). */
export class AppConfigDataError extends Error {
  constructor(name: string, message: string, public readonly statusCode: number) {
    super(message);
    this.name = name;
  }
}

/** AppConfigData's two calls over `fetch`, signed with the SDK's SigV4 signer. */
export class SignedFetchAppConfigData implements AppConfigDataApi {
  private readonly endpoint: URL;
  private readonly signer: SignatureV4;
  private readonly timeoutMs: number;

  constructor(options: SignedFetchAppConfigDataOptions) {
    this.endpoint = new URL(options.endpoint ?? `https://appconfigdata.${options.region}.amazonaws.com`);
    this.signer = new SignatureV4({
      service: 'appconfig',
      region: options.region,
      credentials: options.credentials ?? defaultProvider(),
      sha256: NodeSha256,
    });
    this.timeoutMs = options.timeoutMs ?? 2000;
  }

  public async startConfigurationSession(input: Parameters<AppConfigDataApi['startConfigurationSession']>[0]) {
    const response = await this.send('POST', '/configurationsessions', {}, JSON.stringify(input));
    const body = JSON.parse(Buffer.from(response.body).toString('utf8') || '{}') as { InitialConfigurationToken?: string };
    return { InitialConfigurationToken: body.InitialConfigurationToken };
  }

  public async getLatestConfiguration(input: { ConfigurationToken: string }) {
    const response = await this.send('GET', '/configuration', { configuration_token: input.ConfigurationToken });
    const interval = response.headers.get('next-poll-interval-in-seconds');
    return {
      NextPollConfigurationToken: response.headers.get('next-poll-configuration-token') ?? undefined,
      NextPollIntervalInSeconds: interval === null ? undefined : Number(interval),
      ContentType: response.headers.get('content-type') ?? undefined,
      VersionLabel: response.headers.get('version-label') ?? undefined,
      Configuration: response.body,
    };
  }

  private async send(method: string, path: string, query: Record<string, string>, body?: string): Promise<{ headers: Headers; body: Uint8Array }> {
    const basePath = this.endpoint.pathname.replace(/\/+$/, '');
    const signed = await this.signer.sign({
      method,
      protocol: this.endpoint.protocol,
      hostname: this.endpoint.hostname,
      port: this.endpoint.port ? Number(this.endpoint.port) : undefined,
      path: `${basePath}${path}`,
      query,
      headers: {
        host: this.endpoint.host,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body,
    });
    const url = new URL(`${basePath}${path}`, this.endpoint);
    for (const [key, value] of Object.entries(query)) {
      url.searchParams.set(key, value);
    }
    // fetch sets Host itself (the same value that was signed).
    const headers = Object.fromEntries(Object.entries(signed.headers).filter(([name]) => name.toLowerCase() !== 'host'));
    const response = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (!response.ok) {
      throw errorFrom(response, bytes);
    }
    return { headers: response.headers, body: bytes };
  }
}

function errorFrom(response: Response, bytes: Uint8Array): AppConfigDataError {
  let message = `HTTP ${response.status}`;
  let type = response.headers.get('x-amzn-errortype') ?? undefined;
  try {
    const body = JSON.parse(Buffer.from(bytes).toString('utf8')) as { Message?: string; message?: string; __type?: string };
    message = body.Message ?? body.message ?? message;
    type ??= body.__type;
  } catch {
    // Not JSON: the status says enough.
  }
  // `x-amzn-errortype` may carry a suffix (`BadRequestException:http://...`), `__type` a namespace.
  const name = (type ?? `HTTP${response.status}`).split(':')[0].split('#').pop()!;
  return new AppConfigDataError(name, message, response.status);
}

type SourceData = string | ArrayBuffer | ArrayBufferView;

function toBuffer(data: SourceData): Buffer {
  if (typeof data === 'string') {
    return Buffer.from(data, 'utf8');
  }
  return ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
}

/** SHA-256 (and HMAC-SHA-256 with a secret) from node:crypto, in the shape the signer expects. */
class NodeSha256 {
  private hash: Hash | Hmac;

  constructor(private readonly secret?: SourceData) {
    this.hash = this.create();
  }

  public update(data: SourceData): void {
    this.hash.update(toBuffer(data));
  }

  public async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }

  public reset(): void {
    this.hash = this.create();
  }

  private create(): Hash | Hmac {
    return this.secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(this.secret));
  }
}
