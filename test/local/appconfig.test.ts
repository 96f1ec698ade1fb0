/**
 * The local AppConfig on its own: the AppConfigData REST API as the dispatcher's reader calls it
 * (real transport, SigV4-signed fetch), and the operator's create-version + deploy steps.
 */
import { LocalAppConfig } from '../../local/aws/appconfig';
import { ResolvedResource } from '../../local/types';
import { DYNAMIC_DELAY_JSON_SCHEMA } from '../../src/rate-controlled-queue-consumer/dynamic-delay-env';
import { DynamicDelayReader, SignedFetchAppConfigData } from '../../src/rate-controlled-queue-consumer/dynamic-delay-reader';

const resources: ResolvedResource[] = [
  { logicalId: 'App', type: 'AWS::AppConfig::Application', properties: { Name: 'my-app' }, metadata: {} },
  { logicalId: 'Env', type: 'AWS::AppConfig::Environment', properties: { ApplicationId: 'app', Name: 'live' }, metadata: {} },
  {
    logicalId: 'Profile',
    type: 'AWS::AppConfig::ConfigurationProfile',
    properties: {
      ApplicationId: 'app',
      Name: 'dynamic-delay',
      LocationUri: 'hosted',
      Type: 'AWS.Freeform',
      Validators: [{ Type: 'JSON_SCHEMA', Content: JSON.stringify(DYNAMIC_DELAY_JSON_SCHEMA) }],
    },
    metadata: {},
  },
  {
    logicalId: 'Version',
    type: 'AWS::AppConfig::HostedConfigurationVersion',
    properties: { ApplicationId: 'app', ConfigurationProfileId: 'profile', Content: '{"extraDelayMs":0}', ContentType: 'application/json' },
    metadata: {},
  },
  {
    logicalId: 'Deployment',
    type: 'AWS::AppConfig::Deployment',
    properties: { ApplicationId: 'app', EnvironmentId: 'env', ConfigurationProfileId: 'profile', ConfigurationVersion: '1', DeploymentStrategyId: 'now' },
    metadata: {},
  },
];
const refs: Record<string, string> = { App: 'app', Env: 'env', Profile: 'profile', Version: '1', Deployment: '1' };

let appConfig: LocalAppConfig;

beforeEach(async () => {
  appConfig = await LocalAppConfig.start(resources, (id) => refs[id]);
});

afterEach(async () => {
  await appConfig.stop();
});

const transport = () => new SignedFetchAppConfigData({
  region: 'us-east-1', endpoint: appConfig.endpoint, credentials: async () => ({ accessKeyId: 'local', secretAccessKey: 'local' }),
});

test('session, token chain, content only when it changed, deployed values', async () => {
  const api = transport();
  const { InitialConfigurationToken } = await api.startConfigurationSession({
    ApplicationIdentifier: 'app', EnvironmentIdentifier: 'live', ConfigurationProfileIdentifier: 'dynamic-delay', RequiredMinimumPollIntervalInSeconds: 15,
  });
  const first = await api.getLatestConfiguration({ ConfigurationToken: InitialConfigurationToken! });
  expect(Buffer.from(first.Configuration!).toString()).toBe('{"extraDelayMs":0}');
  expect(first.NextPollIntervalInSeconds).toBe(15);
  expect(first.ContentType).toBe('application/json');

  const unchanged = await api.getLatestConfiguration({ ConfigurationToken: first.NextPollConfigurationToken! });
  expect(unchanged.Configuration).toHaveLength(0);
  // A token is good for one call.
  await expect(api.getLatestConfiguration({ ConfigurationToken: first.NextPollConfigurationToken! })).rejects.toMatchObject({ name: 'BadRequestException' });

  expect(appConfig.deploy('app', 'profile', '{"extraDelayMs":250}').versionNumber).toBe(2);
  const changed = await api.getLatestConfiguration({ ConfigurationToken: unchanged.NextPollConfigurationToken! });
  expect(Buffer.from(changed.Configuration!).toString()).toBe('{"extraDelayMs":250}');
  expect(appConfig.stats()).toEqual({ sessionsStarted: 1, configurationReads: 3 });
});

test('AppConfig rules: poll interval of at least 15 s, unknown identifiers, schema validation at version creation', async () => {
  const api = transport();
  await expect(api.startConfigurationSession({
    ApplicationIdentifier: 'app', EnvironmentIdentifier: 'env', ConfigurationProfileIdentifier: 'profile', RequiredMinimumPollIntervalInSeconds: 5,
  })).rejects.toMatchObject({ name: 'BadRequestException', message: expect.stringMatching(/from 15 to 86400/) });
  await expect(api.startConfigurationSession({
    ApplicationIdentifier: 'app', EnvironmentIdentifier: 'nope', ConfigurationProfileIdentifier: 'profile',
  })).rejects.toMatchObject({ name: 'ResourceNotFoundException' });

  for (const bad of ['{"extraDelayMs":-1}', '{"extraDelayMs":60001}', '{"extraDelayMs":1.5}', '{"extraDelayMs":"5"}', '{}', '{"extraDelayMs":1,"paused":true}', 'nope']) {
    expect(() => appConfig.deploy('app', 'profile', bad)).toThrow(expect.objectContaining({ name: 'BadRequestException' }));
  }
  expect(appConfig.deploy('app', 'profile', '{"extraDelayMs":60000}').versionNumber).toBe(2);
});

test('the dispatcher reader against the local endpoint: reads once per interval and picks up a deployment', async () => {
  let now = Date.now();
  const reader = new DynamicDelayReader({
    api: transport(), applicationId: 'app', environmentId: 'env', configurationProfileId: 'profile', pollIntervalSeconds: 15, now: () => now,
  });
  expect(await reader.extraIntervalMs()).toBe(0);
  appConfig.deploy('app', 'profile', '{"extraDelayMs":400}');
  expect(await reader.extraIntervalMs()).toBe(0);
  now += 15_000;
  expect(await reader.extraIntervalMs()).toBe(400);
  expect(appConfig.stats()).toEqual({ sessionsStarted: 1, configurationReads: 2 });
});
