/**
 * The synthesized CloudFormation template of one stack, with every intrinsic resolved to the local
 * identities of its resources (queue URLs on the local SQS, ARNs in LOCAL_ACCOUNT / LOCAL_REGION).
 *
 * The local runtime executes what was synthesized rather than a hand-written description of the
 * system, so this is the one place where Ref / Fn::GetAtt get their local meaning. Whatever it
 * cannot give a faithful local meaning (Fn::If, Fn::ImportValue, conditions, unknown resource
 * types, attributes it does not model) fails loudly, naming the resource, the property path and
 * the construct, instead of running something else than what would be deployed.
 */
import * as fs from 'fs';
import * as path from 'path';
import { LOCAL_ACCOUNT, LOCAL_REGION, LocalEndpoints, ResolvedResource } from './types';

/** Resource types the local runtime executes: their properties are resolved when the template loads. */
const EXECUTED_TYPES: ReadonlySet<string> = new Set([
  'AWS::SQS::Queue',
  'AWS::DynamoDB::Table',
  'AWS::StepFunctions::StateMachine',
  'AWS::Lambda::Function',
  'AWS::Lambda::EventSourceMapping',
  'AWS::Lambda::Alias',
  'AWS::ApiGateway::RestApi',
  'AWS::ApiGateway::Resource',
  'AWS::ApiGateway::Method',
  'AWS::ApiGateway::Stage',
  'AWS::ApiGateway::Deployment',
  'AWS::SecretsManager::Secret',
  'AWS::IAM::Role',
  // --- scheduler (low-rate mode): begin ---
  'AWS::Scheduler::Schedule',
  // --- scheduler (low-rate mode): end ---
  // AppConfig (dynamic delay): served by local/aws/appconfig.ts.
  'AWS::AppConfig::Application',
  'AWS::AppConfig::Environment',
  'AWS::AppConfig::ConfigurationProfile',
  'AWS::AppConfig::HostedConfigurationVersion',
  'AWS::AppConfig::DeploymentStrategy',
  'AWS::AppConfig::Deployment',
  // Lambda destinations on access log groups: local/aws/logs-subscriptions.ts (the arrival audit).
  'AWS::Logs::SubscriptionFilter',
]);

/**
 * Resource types kept in the template but not modeled (permissions, observability, encryption):
 * their properties stay unresolved and `notModeled()` lists them so a demo can say so.
 */
const NOT_MODELED_TYPES: ReadonlySet<string> = new Set([
  'AWS::IAM::Policy',
  'AWS::SQS::QueuePolicy',
  'AWS::Logs::LogGroup',
  'AWS::CloudWatch::Alarm',
  'AWS::CloudWatch::Dashboard',
  'AWS::Logs::MetricFilter',
  // The access log audit (README, "Audit"): CloudWatch is not emulated; the rule's logic is
  // evaluated against the local access log by local/aws/contributor-insights.ts.
  'AWS::CloudWatch::InsightRule',
  'AWS::Logs::QueryDefinition',
  'AWS::SNS::Topic',
  'AWS::SNS::Subscription',
  'AWS::Lambda::Permission',
  'AWS::CDK::Metadata',
  'AWS::KMS::Key',
  'AWS::ApiGateway::Account',
  'AWS::Lambda::Version',
  // --- scheduler (low-rate mode): begin ---
  // Asynchronous invocation settings: local/aws/scheduler.ts states how it treats async ticks.
  'AWS::Lambda::EventInvokeConfig',
  // --- scheduler (low-rate mode): end ---
]);

const SUPPORTED_INTRINSICS = ['Ref', 'Fn::GetAtt', 'Fn::Join', 'Fn::Sub', 'Fn::Select', 'Fn::Split'];

/** Marks a value resolved from `Ref: AWS::NoValue`: the enclosing key or list element is dropped. */
const NO_VALUE = Symbol('AWS::NoValue');

interface RawResource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
  readonly Metadata?: Record<string, unknown>;
  readonly Condition?: string;
}

interface RawParameter {
  readonly Type: string;
  readonly Default?: unknown;
}

interface RawOutput {
  readonly Value: unknown;
  readonly Condition?: string;
}

/** The parts of a CloudFormation template this class reads. */
export interface CloudFormationTemplate {
  readonly Resources?: Record<string, RawResource>;
  readonly Parameters?: Record<string, RawParameter>;
  readonly Outputs?: Record<string, RawOutput>;
  readonly [key: string]: unknown;
}

/** What `fromTemplate` needs besides the template itself. */
export interface LocalTemplateOptions {
  /** The stack name (`AWS::StackName`). */
  readonly stackName: string;
  /** The cloud assembly directory: relative asset paths are resolved against it. */
  readonly assemblyDir?: string;
  /** Construct path by logical id, for error messages (read from the manifest by `load`). */
  readonly constructPaths?: Record<string, string>;
  /** Absolute asset directory by S3 object key (read from the asset manifests by `load`). */
  readonly assetDirsByObjectKey?: Record<string, string>;
}

/** How Ref and Fn::GetAtt resolve for one resource. */
interface Identity {
  /** What `Ref` returns; absent when the runtime gives `Ref` no local meaning for the type. */
  readonly ref?: string;
  /** What `Fn::GetAtt` returns, by attribute name. */
  readonly attributes: Record<string, string>;
  /** The physical name, for types that have one. */
  readonly name?: string;
  /** The ARN, for types that have one. */
  readonly arn?: string;
}

/** Where a value sits in the template, for error messages. */
interface Location {
  readonly logicalId: string;
  readonly path: string;
}

export class LocalTemplate {
  /**
   * Loads `<stackName>.template.json` from a cloud assembly directory (or the template file the
   * manifest names for that stack), with construct paths and asset directories from the manifest.
   */
  public static load(assemblyDir: string, stackName: string, endpoints: LocalEndpoints): LocalTemplate {
    const dir = path.resolve(assemblyDir);
    const manifest = readJsonIfExists(path.join(dir, 'manifest.json')) as AssemblyManifest | undefined;
    const artifact = manifest ? findStackArtifact(manifest, stackName) : undefined;
    const templateFile = path.join(dir, artifact?.properties?.templateFile ?? `${stackName}.template.json`);
    if (!fs.existsSync(templateFile)) {
      throw new Error(`No template for stack ${stackName} in ${dir} (looked for ${templateFile}): synthesize the app into that directory first`);
    }
    const template = JSON.parse(fs.readFileSync(templateFile, 'utf8')) as CloudFormationTemplate;
    return new LocalTemplate(template, endpoints, {
      stackName,
      assemblyDir: dir,
      constructPaths: artifact ? constructPathsOf(dir, artifact) : {},
      assetDirsByObjectKey: manifest ? assetDirsOf(dir, manifest) : {},
    });
  }

  /** Builds a local template from an in-memory template (tests, or templates not on disk). */
  public static fromTemplate(template: CloudFormationTemplate, endpoints: LocalEndpoints, options: LocalTemplateOptions): LocalTemplate {
    return new LocalTemplate(template, endpoints, options);
  }

  /** Every resource of the template: executed types resolved, types not modeled as synthesized. */
  public readonly resources: ResolvedResource[];
  public readonly stackName: string;
  public readonly endpoints: LocalEndpoints;

  private readonly raw: Record<string, RawResource>;
  private readonly byId = new Map<string, ResolvedResource>();
  private readonly identities = new Map<string, Identity>();
  /** Logical ids whose identity is being computed, to report reference cycles instead of overflowing. */
  private readonly computing = new Set<string>();
  private readonly definitions = new Map<string, string>();
  private readonly byArn = new Map<string, ResolvedResource>();
  private readonly byName = new Map<string, ResolvedResource[]>();
  private readonly sqsEndpoint: string;

  private constructor(
    private readonly template: CloudFormationTemplate,
    endpoints: LocalEndpoints,
    private readonly options: LocalTemplateOptions,
  ) {
    this.stackName = options.stackName;
    this.endpoints = endpoints;
    this.sqsEndpoint = endpoints.sqs.replace(/\/+$/, '');
    this.raw = template.Resources ?? {};
    this.checkTypes();
    this.resources = Object.entries(this.raw).map(([logicalId, resource]) => this.resolveResource(logicalId, resource));
    for (const resource of this.resources) {
      this.byId.set(resource.logicalId, resource);
    }
    for (const sm of this.ofType('AWS::StepFunctions::StateMachine')) {
      this.definitions.set(sm.logicalId, this.definitionStringOf(sm));
    }
    this.indexIdentities();
  }

  /** The resource with this logical id. */
  public get(logicalId: string): ResolvedResource {
    const resource = this.byId.get(logicalId);
    if (!resource) {
      throw new Error(`Stack ${this.stackName} has no resource ${logicalId}`);
    }
    return resource;
  }

  /** The resources of one type, in template order. */
  public ofType(type: string): ResolvedResource[] {
    return this.resources.filter((r) => r.type === type);
  }

  /** `type logicalId (construct path)` of every resource kept but not executed locally. */
  public notModeled(): string[] {
    return this.resources
      .filter((r) => NOT_MODELED_TYPES.has(r.type))
      .map((r) => `${r.type} ${r.logicalId}${this.constructSuffix(r.logicalId)}`);
  }

  /** What `Ref: logicalId` resolves to locally. */
  public ref(logicalId: string): string {
    return this.refOf(logicalId, { logicalId, path: 'Ref' });
  }

  /** What `Fn::GetAtt: [logicalId, attribute]` resolves to locally. */
  public getAtt(logicalId: string, attribute: string): string {
    return this.getAttOf(logicalId, attribute, { logicalId, path: `Fn::GetAtt ${attribute}` });
  }

  /** The local URL of a queue: `${endpoints.sqs}/${LOCAL_ACCOUNT}/${name}`. */
  public queueUrlOf(logicalId: string): string {
    this.expectType(logicalId, 'AWS::SQS::Queue');
    return this.identityOf(logicalId).ref!;
  }

  /** The local ARN of a resource that has one (queue, table, state machine, function, role, ...). */
  public arnOf(logicalId: string): string {
    this.get(logicalId);
    const arn = this.identityOf(logicalId).arn;
    if (arn === undefined) {
      throw new Error(`${logicalId} (${this.raw[logicalId].Type}) has no local ARN`);
    }
    return arn;
  }

  /** The physical name of a resource that has one (queue, table, state machine, function, ...). */
  public nameOf(logicalId: string): string {
    this.get(logicalId);
    const name = this.identityOf(logicalId).name;
    if (name === undefined) {
      throw new Error(`${logicalId} (${this.raw[logicalId].Type}) has no local name`);
    }
    return name;
  }

  /** The executed resource with this local ARN (as handlers and state machines receive it), if any. */
  public findByArn(arn: string): ResolvedResource | undefined {
    return this.byArn.get(arn);
  }

  /**
   * The executed resource with this physical name, if any. Names are unique per type only: pass
   * the type when two types may share a name.
   */
  public findByName(name: string, type?: string): ResolvedResource | undefined {
    const matches = (this.byName.get(name) ?? []).filter((r) => type === undefined || r.type === type);
    if (matches.length > 1) {
      throw new Error(`Name ${name} is ambiguous in stack ${this.stackName} (${matches.map((r) => `${r.type} ${r.logicalId}`).join(', ')}): pass the type`);
    }
    return matches[0];
  }

  /** Absolute directory of a Lambda function's code (its asset), from `aws:asset:path` or the asset manifest. */
  public assetDir(logicalId: string): string {
    const resource = this.expectType(logicalId, 'AWS::Lambda::Function');
    const fromMetadata = resource.metadata['aws:asset:path'];
    // Asset metadata is only written when the CLI asks for it (aws:cdk:enable-asset-metadata);
    // an app synthesized in-process has none, so the asset manifest (object key -> source) is the fallback.
    const dir = typeof fromMetadata === 'string'
      ? path.resolve(this.options.assemblyDir ?? '.', fromMetadata)
      : this.options.assetDirsByObjectKey?.[resource.properties.Code?.S3Key];
    if (dir === undefined) {
      const how = resource.properties.Code?.ZipFile !== undefined ? 'its code is inline (Code.ZipFile)' : 'neither Metadata aws:asset:path nor an asset manifest entry for Code.S3Key';
      throw new Error(`Cannot run ${this.describe(logicalId)} locally: no asset directory (${how})`);
    }
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
      throw new Error(`Cannot run ${this.describe(logicalId)} locally: its asset ${dir} is not a directory`);
    }
    return dir;
  }

  /** A state machine's definition, resolved and parsed (a fresh copy on every call). */
  public definitionOf(logicalId: string): Record<string, any> {
    this.expectType(logicalId, 'AWS::StepFunctions::StateMachine');
    return JSON.parse(this.definitions.get(logicalId)!);
  }

  /**
   * A state machine's definition as the template writes it (DefinitionString or Definition, tokens
   * unresolved): what the tests' ASL edge coverage identifies a definition by (test/asl/).
   */
  public templateDefinitionOf(logicalId: string): unknown {
    this.expectType(logicalId, 'AWS::StepFunctions::StateMachine');
    const properties = this.raw[logicalId].Properties ?? {};
    return properties.DefinitionString ?? properties.Definition;
  }

  /** A stack output, resolved (e.g. the webhook URL). */
  public output(name: string): unknown {
    const output = this.template.Outputs?.[name];
    if (!output) {
      throw new Error(`Stack ${this.stackName} has no output ${name}`);
    }
    const at = { logicalId: `Outputs.${name}`, path: 'Value' };
    if (output.Condition !== undefined) {
      throw this.unsupported(at, `the output has Condition ${output.Condition}; conditions are not evaluated locally`);
    }
    return this.resolveValue(output.Value, at);
  }

  // ---------------------------------------------------------------------------------------------
  // Loading

  /** Fails at load time on any type the runtime neither executes nor knowingly leaves aside. */
  private checkTypes(): void {
    const unknown = Object.entries(this.raw)
      .filter(([, r]) => !EXECUTED_TYPES.has(r.Type) && !NOT_MODELED_TYPES.has(r.Type))
      .map(([id, r]) => `${r.Type} ${id}${this.constructSuffix(id)}`);
    if (unknown.length > 0) {
      throw new Error(
        `Stack ${this.stackName} has resources the local runtime cannot execute: ${unknown.join('; ')}. `
        + `Executed: ${[...EXECUTED_TYPES].join(', ')}. Kept but not modeled: ${[...NOT_MODELED_TYPES].join(', ')}.`,
      );
    }
  }

  private resolveResource(logicalId: string, resource: RawResource): ResolvedResource {
    const metadata = resource.Metadata ?? {};
    if (!EXECUTED_TYPES.has(resource.Type)) {
      // Not modeled: kept as synthesized, so an unsupported intrinsic in a policy or alarm does not
      // stop the runtime from executing the rest.
      return { logicalId, type: resource.Type, properties: resource.Properties ?? {}, metadata };
    }
    if (resource.Condition !== undefined) {
      throw this.unsupported({ logicalId, path: 'Condition' }, `the resource has Condition ${resource.Condition}; conditions are not evaluated locally`);
    }
    const properties = this.resolveValue(resource.Properties ?? {}, { logicalId, path: 'Properties' }) as Record<string, any>;
    return { logicalId, type: resource.Type, properties, metadata };
  }

  /** The resolved definition (DefinitionString, or Definition), with DefinitionSubstitutions applied. */
  private definitionStringOf(sm: ResolvedResource): string {
    const at = (p: string): Location => ({ logicalId: sm.logicalId, path: `Properties.${p}` });
    const props = sm.properties;
    let definition: string;
    if (typeof props.DefinitionString === 'string') {
      definition = props.DefinitionString;
    } else if (props.Definition !== undefined && typeof props.Definition === 'object') {
      definition = JSON.stringify(props.Definition);
    } else if (props.DefinitionS3Location !== undefined) {
      throw this.unsupported(at('DefinitionS3Location'), 'definitions in S3 are not read locally');
    } else {
      throw this.unsupported(at('DefinitionString'), 'no definition (DefinitionString or Definition)');
    }
    for (const [key, value] of Object.entries((props.DefinitionSubstitutions ?? {}) as Record<string, unknown>)) {
      if (typeof value === 'object') {
        throw this.unsupported(at(`DefinitionSubstitutions.${key}`), 'substitution values must be strings, numbers or booleans');
      }
      definition = definition.split(`\${${key}}`).join(String(value));
    }
    try {
      JSON.parse(definition);
    } catch (e) {
      throw this.unsupported(at('DefinitionString'), `the resolved definition is not JSON (${(e as Error).message})`);
    }
    return definition;
  }

  /** Indexes executed resources by the ARNs and names other components receive at run time. */
  private indexIdentities(): void {
    for (const resource of this.resources) {
      if (!EXECUTED_TYPES.has(resource.type)) {
        continue;
      }
      const identity = this.identityOf(resource.logicalId);
      if (identity.arn !== undefined) {
        this.byArn.set(identity.arn, resource);
      }
      if (identity.name !== undefined) {
        this.byName.set(identity.name, [...(this.byName.get(identity.name) ?? []), resource]);
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Intrinsics

  private resolveValue(value: unknown, at: Location): unknown {
    if (Array.isArray(value)) {
      return value.map((v, i) => this.resolveValue(v, child(at, `[${i}]`))).filter((v) => v !== NO_VALUE);
    }
    if (value === null || typeof value !== 'object') {
      return value;
    }
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 1 && isIntrinsic(entries[0][0])) {
      const [name, arg] = entries[0];
      return this.resolveIntrinsic(name, arg, child(at, name));
    }
    const out: Record<string, unknown> = {};
    for (const [key, v] of entries) {
      const resolved = this.resolveValue(v, child(at, key));
      if (resolved !== NO_VALUE) {
        out[key] = resolved;
      }
    }
    return out;
  }

  private resolveIntrinsic(name: string, arg: unknown, at: Location): unknown {
    switch (name) {
      case 'Ref':
        if (typeof arg !== 'string') {
          throw this.unsupported(at, 'Ref takes a logical id or pseudo parameter name');
        }
        return this.refOrNoValue(arg, at);
      case 'Fn::GetAtt':
        return this.resolveGetAtt(arg, at);
      case 'Fn::Join':
        return this.resolveJoin(arg, at);
      case 'Fn::Sub':
        return this.resolveSub(arg, at);
      case 'Fn::Select':
        return this.resolveSelect(arg, at);
      case 'Fn::Split':
        return this.resolveSplit(arg, at);
      default:
        throw this.unsupported(at, `${name} is not supported by the local runtime (supported: ${SUPPORTED_INTRINSICS.join(', ')})`);
    }
  }

  private refOrNoValue(target: string, at: Location): string | typeof NO_VALUE {
    return target === 'AWS::NoValue' ? NO_VALUE : this.refOf(target, at);
  }

  private refOf(target: string, at: Location): string {
    const pseudo = this.pseudoParameter(target);
    if (pseudo !== undefined) {
      return pseudo;
    }
    const parameter = this.template.Parameters?.[target];
    if (parameter) {
      // A parameter's Default is what a deploy without overrides uses; an SSM parameter's Default
      // is a parameter name, not a value, so it has no local value.
      if (parameter.Default === undefined || parameter.Type.startsWith('AWS::SSM::')) {
        throw this.unsupported(at, `Ref ${target}: parameter of type ${parameter.Type} has no local value`);
      }
      return String(parameter.Default);
    }
    if (!this.raw[target]) {
      throw this.unsupported(at, `Ref ${target}: no resource, parameter or pseudo parameter of that name`);
    }
    const ref = this.identityOf(target, at).ref;
    if (ref === undefined) {
      throw this.unsupported(at, `Ref ${target}: Ref to a ${this.raw[target].Type} has no local value`);
    }
    return ref;
  }

  private getAttOf(target: string, attribute: string, at: Location): string {
    if (!this.raw[target]) {
      throw this.unsupported(at, `Fn::GetAtt ${target}.${attribute}: no resource ${target}`);
    }
    const attributes = this.identityOf(target, at).attributes;
    const value = attributes[attribute];
    if (value === undefined) {
      const known = Object.keys(attributes);
      throw this.unsupported(at, `Fn::GetAtt ${target}.${attribute}: attribute ${attribute} of a ${this.raw[target].Type} has no local value`
        + ` (local attributes: ${known.length > 0 ? known.join(', ') : 'none'})`);
    }
    return value;
  }

  private pseudoParameter(name: string): string | undefined {
    switch (name) {
      case 'AWS::Region': return LOCAL_REGION;
      case 'AWS::AccountId': return LOCAL_ACCOUNT;
      case 'AWS::Partition': return 'aws';
      case 'AWS::URLSuffix': return 'amazonaws.com';
      case 'AWS::StackName': return this.stackName;
      case 'AWS::StackId':
        return `arn:aws:cloudformation:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stack/${this.stackName}/00000000-0000-0000-0000-000000000000`;
      default: return undefined;
    }
  }

  private resolveGetAtt(arg: unknown, at: Location): string {
    // Both forms: ["Id", "Attr"] and the short "Id.Attr" (the attribute may itself contain dots).
    const parts = typeof arg === 'string' ? splitOnce(arg, '.') : arg;
    if (!Array.isArray(parts) || parts.length !== 2 || typeof parts[0] !== 'string') {
      throw this.unsupported(at, 'Fn::GetAtt takes [logicalId, attribute]');
    }
    const attribute = this.resolveValue(parts[1], child(at, '[1]'));
    if (typeof attribute !== 'string') {
      throw this.unsupported(at, 'Fn::GetAtt attribute must resolve to a string');
    }
    return this.getAttOf(parts[0], attribute, at);
  }

  private resolveJoin(arg: unknown, at: Location): string {
    if (!Array.isArray(arg) || arg.length !== 2 || typeof arg[0] !== 'string') {
      throw this.unsupported(at, 'Fn::Join takes [delimiter, list]');
    }
    const list = this.resolveValue(arg[1], child(at, '[1]'));
    if (!Array.isArray(list)) {
      throw this.unsupported(at, 'Fn::Join list must resolve to a list');
    }
    return list.map((item, i) => scalarToString(item, () => this.unsupported(child(at, `[1][${i}]`), 'Fn::Join elements must resolve to strings'))).join(arg[0]);
  }

  private resolveSub(arg: unknown, at: Location): string {
    const [text, rawVars] = typeof arg === 'string' ? [arg, {}] : Array.isArray(arg) && arg.length === 2 ? [arg[0], arg[1]] : [undefined, undefined];
    if (typeof text !== 'string' || rawVars === null || typeof rawVars !== 'object' || Array.isArray(rawVars)) {
      throw this.unsupported(at, 'Fn::Sub takes a string or [string, { variables }]');
    }
    const vars = this.resolveValue(rawVars, child(at, '[1]')) as Record<string, unknown>;
    return text.replace(/\$\{([^}]*)\}/g, (_match, expr: string) => {
      if (expr.startsWith('!')) {
        return `\${${expr.slice(1)}}`; // ${!Literal} writes ${Literal}
      }
      const name = expr.trim();
      if (name in vars) {
        return scalarToString(vars[name], () => this.unsupported(at, `Fn::Sub variable ${name} must resolve to a string`));
      }
      const dot = name.indexOf('.');
      return dot < 0 ? this.refOf(name, at) : this.getAttOf(name.slice(0, dot), name.slice(dot + 1), at);
    });
  }

  private resolveSelect(arg: unknown, at: Location): unknown {
    if (!Array.isArray(arg) || arg.length !== 2) {
      throw this.unsupported(at, 'Fn::Select takes [index, list]');
    }
    const index = Number(this.resolveValue(arg[0], child(at, '[0]')));
    const list = this.resolveValue(arg[1], child(at, '[1]'));
    if (!Array.isArray(list) || !Number.isInteger(index) || index < 0 || index >= list.length) {
      throw this.unsupported(at, `Fn::Select index ${index} is not within the list`);
    }
    return list[index];
  }

  private resolveSplit(arg: unknown, at: Location): string[] {
    if (!Array.isArray(arg) || arg.length !== 2 || typeof arg[0] !== 'string') {
      throw this.unsupported(at, 'Fn::Split takes [delimiter, string]');
    }
    const source = this.resolveValue(arg[1], child(at, '[1]'));
    if (typeof source !== 'string') {
      throw this.unsupported(at, 'Fn::Split source must resolve to a string');
    }
    return source.split(arg[0]);
  }

  // ---------------------------------------------------------------------------------------------
  // Local identities

  /** How Ref and Fn::GetAtt resolve for a resource; `at` is the reference being resolved, for errors. */
  private identityOf(logicalId: string, at?: Location): Identity {
    const known = this.identities.get(logicalId);
    if (known) {
      return known;
    }
    if (this.computing.has(logicalId)) {
      throw this.unsupported(at ?? { logicalId, path: 'Properties' }, `reference cycle through ${[...this.computing, logicalId].join(' -> ')}`);
    }
    this.computing.add(logicalId);
    try {
      const identity = this.computeIdentity(logicalId, this.raw[logicalId]);
      this.identities.set(logicalId, identity);
      return identity;
    } finally {
      this.computing.delete(logicalId);
    }
  }

  private computeIdentity(id: string, resource: RawResource): Identity {
    const arnPrefix = (service: string): string => `arn:aws:${service}:${LOCAL_REGION}:${LOCAL_ACCOUNT}`;
    switch (resource.Type) {
      case 'AWS::SQS::Queue': {
        const name = this.queueName(id, resource);
        const url = `${this.sqsEndpoint}/${LOCAL_ACCOUNT}/${name}`;
        const arn = `${arnPrefix('sqs')}:${name}`;
        return { ref: url, name, arn, attributes: { Arn: arn, QueueName: name, QueueUrl: url } };
      }
      case 'AWS::DynamoDB::Table': {
        const name = this.nameProperty(id, 'TableName');
        const arn = `${arnPrefix('dynamodb')}:table/${name}`;
        return { ref: name, name, arn, attributes: { Arn: arn } };
      }
      case 'AWS::StepFunctions::StateMachine': {
        const name = this.nameProperty(id, 'StateMachineName');
        const arn = `${arnPrefix('states')}:stateMachine:${name}`;
        return { ref: arn, name, arn, attributes: { Arn: arn, Name: name } };
      }
      case 'AWS::Lambda::Function': {
        const name = this.nameProperty(id, 'FunctionName');
        const arn = `${arnPrefix('lambda')}:function:${name}`;
        return { ref: name, name, arn, attributes: { Arn: arn } };
      }
      case 'AWS::Lambda::Alias': {
        const fn = this.stringProperty(id, 'FunctionName');
        const aliasName = this.stringProperty(id, 'Name');
        const arn = `${fn.startsWith('arn:') ? fn : `${arnPrefix('lambda')}:function:${fn}`}:${aliasName}`;
        return { ref: arn, arn, attributes: {} };
      }
      case 'AWS::IAM::Role': {
        // Roles are named by logical id (RoleName when the template sets one): the IAM emulation
        // compares ARNs from the same template, so this only has to be consistent.
        const name = this.nameProperty(id, 'RoleName');
        const arn = `arn:aws:iam::${LOCAL_ACCOUNT}:role/${name}`;
        return { ref: name, name, arn, attributes: { Arn: arn } };
      }
      case 'AWS::ApiGateway::RestApi': {
        const apiId = id.toLowerCase();
        return { ref: apiId, attributes: { RootResourceId: `${apiId}-root` } };
      }
      case 'AWS::ApiGateway::Resource':
      case 'AWS::ApiGateway::Deployment':
        return { ref: id, attributes: {} };
      case 'AWS::ApiGateway::Stage':
        return { ref: this.stringProperty(id, 'StageName'), attributes: {} };
      case 'AWS::Logs::LogGroup': {
        const name = this.nameProperty(id, 'LogGroupName');
        const arn = `${arnPrefix('logs')}:log-group:${name}:*`; // GetAtt Arn of a log group ends with :*
        return { ref: name, name, arn, attributes: { Arn: arn } };
      }
      case 'AWS::SecretsManager::Secret': {
        // No random suffix: the local Secrets Manager serves the secret under this exact ARN.
        const name = this.nameProperty(id, 'Name');
        const arn = `${arnPrefix('secretsmanager')}:secret:${name}`;
        return { ref: arn, name, arn, attributes: {} };
      }
      // --- scheduler (low-rate mode): begin ---
      case 'AWS::Scheduler::Schedule': {
        const name = this.nameProperty(id, 'Name');
        const group = resource.Properties?.GroupName === undefined ? 'default' : this.stringProperty(id, 'GroupName');
        const arn = `${arnPrefix('scheduler')}:schedule/${group}/${name}`;
        return { ref: name, name, arn, attributes: { Arn: arn } };
      }
      // --- scheduler (low-rate mode): end ---
      // AppConfig: Ref is the id (the version number for a hosted version), as CloudFormation gives it.
      case 'AWS::AppConfig::Application':
        return { ref: id.toLowerCase(), attributes: { ApplicationId: id.toLowerCase() } };
      case 'AWS::AppConfig::Environment':
        return { ref: id.toLowerCase(), attributes: { EnvironmentId: id.toLowerCase() } };
      case 'AWS::AppConfig::ConfigurationProfile':
        return { ref: id.toLowerCase(), attributes: { ConfigurationProfileId: id.toLowerCase() } };
      case 'AWS::AppConfig::DeploymentStrategy':
        return { ref: id.toLowerCase(), attributes: { Id: id.toLowerCase() } };
      case 'AWS::AppConfig::HostedConfigurationVersion': {
        // Versions are numbered per profile, in creation (template) order.
        const profile = this.stringProperty(id, 'ConfigurationProfileId');
        const earlier = Object.keys(this.raw).slice(0, Object.keys(this.raw).indexOf(id))
          .filter((other) => this.raw[other].Type === resource.Type && this.stringProperty(other, 'ConfigurationProfileId') === profile);
        const versionNumber = String(earlier.length + 1);
        return { ref: versionNumber, attributes: { VersionNumber: versionNumber } };
      }
      case 'AWS::AppConfig::Deployment':
        return { ref: '1', attributes: { DeploymentNumber: '1' } };
      case 'AWS::KMS::Key': {
        const arn = `${arnPrefix('kms')}:key/${id}`;
        return { ref: id, arn, attributes: { Arn: arn, KeyId: id } };
      }
      default:
        return { attributes: {} };
    }
  }

  /** A queue's name: QueueName, else the logical id (with `.fifo` added for FIFO queues, as CloudFormation does). */
  private queueName(id: string, resource: RawResource): string {
    const name = this.nameProperty(id, 'QueueName');
    const fifo = String(this.resolveValue(resource.Properties?.FifoQueue, { logicalId: id, path: 'Properties.FifoQueue' })) === 'true';
    return fifo && resource.Properties?.QueueName === undefined ? `${name}.fifo` : name;
  }

  /** A name property resolved to a string, or the logical id when the template leaves it out. */
  private nameProperty(id: string, property: string): string {
    return this.raw[id].Properties?.[property] === undefined ? id : this.stringProperty(id, property);
  }

  private stringProperty(id: string, property: string): string {
    const at = { logicalId: id, path: `Properties.${property}` };
    const value = this.resolveValue(this.raw[id].Properties?.[property], at);
    if (typeof value !== 'string') {
      throw this.unsupported(at, 'must resolve to a string');
    }
    return value;
  }

  // ---------------------------------------------------------------------------------------------
  // Errors

  private expectType(logicalId: string, type: string): ResolvedResource {
    const resource = this.get(logicalId);
    if (resource.type !== type) {
      throw new Error(`${logicalId} is a ${resource.type}, not a ${type}`);
    }
    return resource;
  }

  /** An error naming the resource, its construct and the property path it cannot execute. */
  private unsupported(at: Location, reason: string): Error {
    return new Error(`Cannot run ${this.describe(at.logicalId)} locally: ${at.path}: ${reason}`);
  }

  private describe(logicalId: string): string {
    const type = this.raw[logicalId]?.Type;
    return `${logicalId}${type ? ` (${type})` : ''}${this.constructSuffix(logicalId)}`;
  }

  private constructSuffix(logicalId: string): string {
    const fromMetadata = this.raw[logicalId]?.Metadata?.['aws:cdk:path'];
    const constructPath = typeof fromMetadata === 'string' ? fromMetadata : this.options.constructPaths?.[logicalId];
    return constructPath ? ` [construct ${constructPath}]` : '';
  }
}

// -----------------------------------------------------------------------------------------------
// Cloud assembly manifest

interface ManifestArtifact {
  readonly type: string;
  readonly displayName?: string;
  readonly properties?: { readonly templateFile?: string; readonly stackName?: string; readonly file?: string };
  readonly metadata?: Record<string, Array<{ type: string; data?: unknown }>>;
  readonly additionalMetadataFile?: string;
}

interface AssemblyManifest {
  readonly artifacts?: Record<string, ManifestArtifact>;
}

interface AssetManifestFile {
  readonly files?: Record<string, {
    readonly source: { readonly path?: string; readonly packaging?: string };
    readonly destinations: Record<string, { readonly objectKey: string }>;
  }>;
}

function findStackArtifact(manifest: AssemblyManifest, stackName: string): ManifestArtifact | undefined {
  return Object.entries(manifest.artifacts ?? {})
    .filter(([, a]) => a.type === 'aws:cloudformation:stack')
    .find(([id, a]) => id === stackName || a.properties?.stackName === stackName || a.displayName === stackName)?.[1];
}

/** Construct path by logical id, from the stack's metadata (inline or in its additional metadata file). */
function constructPathsOf(dir: string, artifact: ManifestArtifact): Record<string, string> {
  const metadata = {
    ...(artifact.metadata ?? {}),
    ...(artifact.additionalMetadataFile ? readJsonIfExists(path.join(dir, artifact.additionalMetadataFile)) as object : {}),
  } as Record<string, Array<{ type: string; data?: unknown }>>;
  const paths: Record<string, string> = {};
  for (const [constructPath, entries] of Object.entries(metadata)) {
    for (const entry of entries) {
      if (entry.type === 'aws:cdk:logicalId' && typeof entry.data === 'string') {
        paths[entry.data] = constructPath;
      }
    }
  }
  return paths;
}

/** Absolute directory of every directory asset, by the S3 object key the template's Code.S3Key uses. */
function assetDirsOf(dir: string, manifest: AssemblyManifest): Record<string, string> {
  const dirs: Record<string, string> = {};
  for (const artifact of Object.values(manifest.artifacts ?? {})) {
    if (artifact.type !== 'cdk:asset-manifest' || !artifact.properties?.file) {
      continue;
    }
    const assets = readJsonIfExists(path.join(dir, artifact.properties.file)) as AssetManifestFile | undefined;
    for (const asset of Object.values(assets?.files ?? {})) {
      if (asset.source.path === undefined || asset.source.packaging === 'file') {
        continue;
      }
      for (const destination of Object.values(asset.destinations)) {
        dirs[destination.objectKey] = path.resolve(dir, asset.source.path);
      }
    }
  }
  return dirs;
}

// -----------------------------------------------------------------------------------------------
// Helpers

function readJsonIfExists(file: string): unknown {
  return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : undefined;
}

function isIntrinsic(key: string): boolean {
  return key === 'Ref' || key.startsWith('Fn::');
}

function child(at: Location, segment: string): Location {
  return { logicalId: at.logicalId, path: segment.startsWith('[') ? `${at.path}${segment}` : `${at.path}.${segment}` };
}

function splitOnce(text: string, separator: string): string[] {
  const i = text.indexOf(separator);
  return i < 0 ? [text] : [text.slice(0, i), text.slice(i + 1)];
}

function scalarToString(value: unknown, fail: () => Error): string {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
    return String(value);
  }
  throw fail();
}
