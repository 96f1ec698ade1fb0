import { Duration, Names, Stack } from 'aws-cdk-lib';
import * as appconfig from 'aws-cdk-lib/aws-appconfig';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import {
  DEFAULT_POLL_INTERVAL_SECONDS,
  dynamicDelayJsonSchema,
  DynamicDelayEnv,
  INITIAL_DYNAMIC_DELAY_CONTENT,
  MAX_EXTRA_DELAY_MS,
  MIN_POLL_INTERVAL_SECONDS,
  MIN_RATE_IN_FORCE,
} from './dynamic-delay-env';
import { validateDuration, validateRequestsPerSecond, validateWholeNumber } from '../shared/validation';

/**
 * Options of the dynamic delay (AWS AppConfig) that operators use to slow dispatch at run time.
 */
export interface DynamicDelayOptions {
  /**
   * Shortest time between two reads of the configuration by one dispatcher execution environment
   * (AppConfig's `RequiredMinimumPollIntervalInSeconds`), whole seconds from 15 seconds to 1 hour.
   *
   * A change takes effect within this interval, plus the time the slots already reserved take
   * (see docs/operations.md, "Slowing dispatch at run time"). Shorter means faster effect and more
   * (cheap) GetLatestConfiguration calls.
   *
   * @default Duration.seconds(30)
   */
  readonly pollInterval?: Duration;
}

/**
 * Properties of a DynamicDelay.
 */
export interface DynamicDelayProps extends DynamicDelayOptions {
  /**
   * The ceiling of the rate in force operators may set (`"requestsPerSecond": R` in the
   * configuration): the contract deployed, which sizes the proxy's throttle and everything derived
   * from it. The configuration's JSON schema refuses a rate above it (and below 0.01).
   *
   * @default - the configuration takes no rate (only the delay)
   */
  readonly maxRequestsPerSecond?: number;
}

/**
 * A dynamic delay the functions that pace can read: one created by this stack (`DynamicDelay`) or
 * one imported from another (`DynamicDelay.fromDynamicDelayAttributes`), e.g. the one of a shared
 * `VendorContractState`.
 */
export interface IDynamicDelay {
  /** The AppConfig application id. */
  readonly applicationId: string;
  /** The AppConfig environment id. */
  readonly environmentId: string;
  /** The AppConfig configuration profile id. */
  readonly configurationProfileId: string;
  /** Shortest time between two reads of the configuration by one execution environment. */
  readonly pollInterval: Duration;
  /** ARN of the configuration (application/environment/profile), the resource of the read permissions. */
  readonly configurationArn: string;
  /**
   * The ceiling of the rate in force operators may set.
   *
   * @default - the configuration takes no rate (only the delay)
   */
  readonly maxRequestsPerSecond?: number;
  /** Environment variables a function needs to read the configuration (`DynamicDelayReader`). */
  readonly environmentVariables: Record<string, string>;
  /** Lets `grantee` read the configuration (StartConfigurationSession, GetLatestConfiguration). */
  grantRead(grantee: iam.IGrantable): iam.Grant;
}

/**
 * The ids of a dynamic delay created elsewhere (another stack or app), for
 * `DynamicDelay.fromDynamicDelayAttributes`.
 */
export interface DynamicDelayAttributes {
  /** The AppConfig application id (`DynamicDelay.applicationId`). */
  readonly applicationId: string;
  /** The AppConfig environment id (`DynamicDelay.environmentId`). */
  readonly environmentId: string;
  /** The AppConfig configuration profile id (`DynamicDelay.configurationProfileId`). */
  readonly configurationProfileId: string;
  /**
   * The poll interval the functions reading it use.
   *
   * @default Duration.seconds(30)
   */
  readonly pollInterval?: Duration;
  /**
   * The ceiling of the rate in force its schema accepts (the contract it was created for).
   *
   * @default - the configuration takes no rate (only the delay)
   */
  readonly maxRequestsPerSecond?: number;
}

/** Environment variables of a reader of the configuration `ids` (DynamicDelayReader). */
function readerEnvironment(ids: IDynamicDelay): Record<string, string> {
  return {
    [DynamicDelayEnv.APPLICATION_ID]: ids.applicationId,
    [DynamicDelayEnv.ENVIRONMENT_ID]: ids.environmentId,
    [DynamicDelayEnv.CONFIGURATION_PROFILE_ID]: ids.configurationProfileId,
    [DynamicDelayEnv.POLL_INTERVAL_SECONDS]: String(ids.pollInterval.toSeconds()),
  };
}

function grantReader(ids: IDynamicDelay, grantee: iam.IGrantable): iam.Grant {
  return iam.Grant.addToPrincipal({
    grantee,
    actions: ['appconfig:StartConfigurationSession', 'appconfig:GetLatestConfiguration'],
    resourceArns: [ids.configurationArn],
  });
}

function configurationArn(scope: Construct, applicationId: string, environmentId: string, profileId: string): string {
  return Stack.of(scope).formatArn({
    service: 'appconfig',
    resource: 'application',
    resourceName: `${applicationId}/environment/${environmentId}/configuration/${profileId}`,
  });
}

/** A dynamic delay created elsewhere: read only (its operator commands are its creator's). */
class ImportedDynamicDelay extends Construct implements IDynamicDelay {
  public readonly applicationId: string;
  public readonly environmentId: string;
  public readonly configurationProfileId: string;
  public readonly pollInterval: Duration;
  public readonly configurationArn: string;
  public readonly maxRequestsPerSecond?: number;

  constructor(scope: Construct, id: string, attrs: DynamicDelayAttributes) {
    super(scope, id);
    validateDuration('dynamicDelay.pollInterval', attrs.pollInterval, Duration.seconds(MIN_POLL_INTERVAL_SECONDS), Duration.hours(1),
      'AppConfig polls at most every 15 seconds');
    this.applicationId = attrs.applicationId;
    this.environmentId = attrs.environmentId;
    this.configurationProfileId = attrs.configurationProfileId;
    this.pollInterval = attrs.pollInterval ?? Duration.seconds(DEFAULT_POLL_INTERVAL_SECONDS);
    this.pollInterval.toSeconds();
    this.maxRequestsPerSecond = attrs.maxRequestsPerSecond;
    this.configurationArn = configurationArn(this, attrs.applicationId, attrs.environmentId, attrs.configurationProfileId);
  }

  public get environmentVariables(): Record<string, string> {
    return readerEnvironment(this);
  }

  public grantRead(grantee: iam.IGrantable): iam.Grant {
    return grantReader(this, grantee);
  }
}

/**
 * An AWS AppConfig hosted configuration `{"extraDelayMs": N}` that the dispatcher reads at run
 * time: `N` extra milliseconds (integer, 0 to 60000) are added to the interval between two
 * pacing slots, so operators can slow dispatch down without a deploy. It can only slow: the
 * contract's interval is always kept, a missing, unreadable or invalid value counts as 0.
 *
 * Created with the content `{"extraDelayMs":0}`, deployed by the stack. An AppConfig JSON schema
 * validator refuses anything else than an object with an integer `extraDelayMs` from 0 to 60000
 * (and no other key) when a version is created, so a typo never reaches the dispatcher.
 *
 * To change it (the exact commands with ids filled in: `operatorCommands()`):
 *
 * ```sh
 * VERSION=$(aws appconfig create-hosted-configuration-version \
 *   --application-id APP --configuration-profile-id PROFILE \
 *   --content-type application/json --content '{"extraDelayMs":500}' \
 *   --cli-binary-format raw-in-base64-out --query VersionNumber --output text /dev/null)
 * aws appconfig start-deployment --application-id APP --environment-id ENV \
 *   --configuration-profile-id PROFILE --deployment-strategy-id STRATEGY \
 *   --configuration-version "$VERSION"
 * ```
 *
 * The deployment strategy deploys at once with no bake time, so a change can be followed by
 * another at once.
 */
export class DynamicDelay extends Construct implements IDynamicDelay {
  /**
   * A dynamic delay created by another stack or app (e.g. the old stack of a blue/green deploy), by
   * its ids: the functions given it read it; nothing is created.
   */
  public static fromDynamicDelayAttributes(scope: Construct, id: string, attrs: DynamicDelayAttributes): IDynamicDelay {
    return new ImportedDynamicDelay(scope, id, attrs);
  }

  /** The AppConfig application. */
  public readonly application: appconfig.CfnApplication;
  /** The AppConfig environment the dispatcher reads from. */
  public readonly environment: appconfig.CfnEnvironment;
  /** The hosted, validated configuration profile. */
  public readonly configurationProfile: appconfig.CfnConfigurationProfile;
  /** The initial version, `{"extraDelayMs":0}`. */
  public readonly initialVersion: appconfig.CfnHostedConfigurationVersion;
  /** All at once, no bake time. */
  public readonly deploymentStrategy: appconfig.CfnDeploymentStrategy;
  /** The deployment of the initial version. */
  public readonly initialDeployment: appconfig.CfnDeployment;
  /** The AppConfig application id. */
  public readonly applicationId: string;
  /** The AppConfig environment id. */
  public readonly environmentId: string;
  /** The AppConfig configuration profile id. */
  public readonly configurationProfileId: string;
  /** The deployment strategy id (for `aws appconfig start-deployment`). */
  public readonly deploymentStrategyId: string;
  /** Shortest time between two reads of the configuration by one execution environment. */
  public readonly pollInterval: Duration;
  /** ARN of the configuration (application/environment/profile), the resource of the read permissions. */
  public readonly configurationArn: string;
  /** The ceiling of the rate in force operators may set; undefined: the configuration takes no rate. */
  public readonly maxRequestsPerSecond?: number;

  constructor(scope: Construct, id: string, props: DynamicDelayProps = {}) {
    super(scope, id);

    validateDuration('dynamicDelay.pollInterval', props.pollInterval, Duration.seconds(MIN_POLL_INTERVAL_SECONDS), Duration.hours(1),
      'AppConfig polls at most every 15 seconds');
    this.pollInterval = props.pollInterval ?? Duration.seconds(DEFAULT_POLL_INTERVAL_SECONDS);
    // Whole seconds: AppConfig takes the interval in seconds (toSeconds() refuses fractions).
    this.pollInterval.toSeconds();
    if (props.maxRequestsPerSecond !== undefined) {
      validateRequestsPerSecond(props.maxRequestsPerSecond);
    }
    this.maxRequestsPerSecond = props.maxRequestsPerSecond;

    const name = (suffix: string) => Names.uniqueResourceName(this, { maxLength: 64 - suffix.length }) + suffix;
    this.application = new appconfig.CfnApplication(this, 'Application', {
      name: name(''),
      description: 'Dynamic delay of a cdk-async-external-api dispatcher: extra milliseconds between vendor requests',
    });
    this.environment = new appconfig.CfnEnvironment(this, 'Environment', {
      applicationId: this.application.ref,
      name: 'live',
      description: 'The environment the dispatcher reads',
    });
    this.configurationProfile = new appconfig.CfnConfigurationProfile(this, 'ConfigurationProfile', {
      applicationId: this.application.ref,
      name: 'dynamic-delay',
      locationUri: 'hosted',
      type: 'AWS.Freeform',
      description: '{"extraDelayMs": integer 0..60000}: added to the interval between two vendor requests (can only slow)',
      // With a ceiling, also `requestsPerSecond` up to it: an in-place update of the validator for
      // stacks deployed before, whose current content (the delay alone) stays valid.
      validators: [{ type: 'JSON_SCHEMA', content: JSON.stringify(dynamicDelayJsonSchema(props.maxRequestsPerSecond)) }],
    });
    this.initialVersion = new appconfig.CfnHostedConfigurationVersion(this, 'InitialVersion', {
      applicationId: this.application.ref,
      configurationProfileId: this.configurationProfile.ref,
      contentType: 'application/json',
      content: INITIAL_DYNAMIC_DELAY_CONTENT,
      description: 'No extra delay (created with the stack)',
    });
    // The predefined AppConfig.AllAtOnce bakes for 10 minutes, during which no other deployment
    // may start: an operator raising the delay twice in a row would have to wait.
    this.deploymentStrategy = new appconfig.CfnDeploymentStrategy(this, 'DeploymentStrategy', {
      name: name('-now'),
      description: 'All at once, no bake time: the dispatcher applies a new delay within its poll interval',
      deploymentDurationInMinutes: 0,
      growthFactor: 100,
      growthType: 'LINEAR',
      finalBakeTimeInMinutes: 0,
      replicateTo: 'NONE',
    });
    // Deployed once, when the stack is created: later stack updates leave the operator's current
    // value in place (this resource does not change).
    this.initialDeployment = new appconfig.CfnDeployment(this, 'InitialDeployment', {
      applicationId: this.application.ref,
      environmentId: this.environment.ref,
      configurationProfileId: this.configurationProfile.ref,
      configurationVersion: this.initialVersion.ref,
      deploymentStrategyId: this.deploymentStrategy.ref,
      description: 'Initial dynamic delay (0)',
    });

    this.applicationId = this.application.ref;
    this.environmentId = this.environment.ref;
    this.configurationProfileId = this.configurationProfile.ref;
    this.deploymentStrategyId = this.deploymentStrategy.ref;
    this.configurationArn = configurationArn(this, this.applicationId, this.environmentId, this.configurationProfileId);
  }

  /**
   * Environment variables a function needs to read the dynamic delay with the handler-side
   * reader (`DynamicDelayReader`): application, environment and profile ids, poll interval.
   */
  public get environmentVariables(): Record<string, string> {
    return readerEnvironment(this);
  }

  /**
   * Lets `grantee` read the configuration (appconfig:StartConfigurationSession and
   * appconfig:GetLatestConfiguration on this configuration only).
   */
  public grantRead(grantee: iam.IGrantable): iam.Grant {
    return grantReader(this, grantee);
  }

  /**
   * The AWS CLI commands that set the extra delay to `extraDelayMs` milliseconds, and the rate in
   * force to `requestsPerSecond` when given (omitted: the contract), ids filled in (tokens when the
   * ids are only known at deploy time: use them in a CfnOutput). Each deployment replaces the whole
   * configuration: give the rate again when changing only the delay.
   */
  public operatorCommands(extraDelayMs: number, requestsPerSecond?: number): string {
    validateWholeNumber('extraDelayMs', extraDelayMs, 0, MAX_EXTRA_DELAY_MS, 'the range the configuration schema accepts');
    if (requestsPerSecond !== undefined) {
      if (this.maxRequestsPerSecond === undefined) {
        throw new Error(`requestsPerSecond (given ${requestsPerSecond}) needs a DynamicDelay with maxRequestsPerSecond (the contract): this configuration takes only the delay`);
      }
      if (!Number.isFinite(requestsPerSecond) || requestsPerSecond < MIN_RATE_IN_FORCE || requestsPerSecond > this.maxRequestsPerSecond) {
        throw new Error(`requestsPerSecond must be between ${MIN_RATE_IN_FORCE} and the contract of ${this.maxRequestsPerSecond} (given ${requestsPerSecond}): the contract deployed is the ceiling; raise it with a deploy`);
      }
    }
    const content = JSON.stringify({ extraDelayMs, ...(requestsPerSecond !== undefined ? { requestsPerSecond } : {}) });
    return [
      `VERSION=$(aws appconfig create-hosted-configuration-version --application-id ${this.applicationId}`
        + ` --configuration-profile-id ${this.configurationProfileId} --content-type application/json`
        + ` --content '${content}' --cli-binary-format raw-in-base64-out`
        + ' --query VersionNumber --output text /dev/null)',
      `aws appconfig start-deployment --application-id ${this.applicationId} --environment-id ${this.environmentId}`
        + ` --configuration-profile-id ${this.configurationProfileId} --deployment-strategy-id ${this.deploymentStrategyId}`
        + ' --configuration-version "$VERSION"',
    ].join('\n');
  }
}
