/**
 * Helpers shared by the construct tests: a stack with a fixed environment, resolution of state
 * machine definitions (so they can be parsed and validated) and look-ups of the IAM statements
 * attached to a role.
 */
import { App, AppProps, Stack, cx_api } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { aslValidatorDir, withCompiledSchemas } from '../local/aws/asl-schema-cache';

/** The account and region every test stack is deployed to. */
export const TEST_ENV = { account: '123456789012', region: 'us-east-1' };

/**
 * An app for tests, as `new App(props)` but without what synthesis writes beside the templates and
 * no test of it reads: the construct tree (tree.json, about a quarter of a synthesis's CPU time),
 * the copies of the Lambda handlers' assets in the cloud assembly (their hashes, hence the
 * templates' S3 keys, are computed all the same), and the creation stack traces and logical id
 * entries in the assembly's metadata (each trace is captured through jest's source-map support).
 * Templates are unchanged. Tests that read a synthesized assembly's files build their own App.
 */
export function testApp(props: AppProps = {}): App {
  return new App({
    treeMetadata: false,
    stackTraces: false,
    ...props,
    context: {
      [cx_api.DISABLE_ASSET_STAGING_CONTEXT]: true,
      [cx_api.DISABLE_CREATION_STACK_TRACES]: true,
      [cx_api.DISABLE_LOGICAL_ID_METADATA]: true,
      ...props.context,
    },
  });
}

/** A stack with a concrete account and region, in a new app (testApp) unless one is given. */
export function testStack(app: App = testApp(), id = 'TestStack'): Stack {
  return new Stack(app, id, { env: TEST_ENV });
}

/** One IAM policy statement as it appears in a synthesized template. */
export interface PolicyStatementJson {
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource?: unknown;
  readonly Condition?: Record<string, unknown>;
  readonly Principal?: unknown;
}

/** The actions of a statement, always as an array. */
export function actionsOf(statement: PolicyStatementJson): string[] {
  return Array.isArray(statement.Action) ? statement.Action : [statement.Action];
}

/** The resources of a statement, always as an array. */
export function resourcesOf(statement: PolicyStatementJson): unknown[] {
  if (statement.Resource === undefined) {
    return [];
  }
  return Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource];
}

/**
 * Every statement of every policy attached to `role` (its AWS::IAM::Policy resources and its
 * inline policies).
 */
export function statementsOfRole(template: Template, stack: Stack, role: iam.IRole): PolicyStatementJson[] {
  const logicalId = stack.getLogicalId(role.node.defaultChild as iam.CfnRole);
  const statements: PolicyStatementJson[] = [];
  for (const policy of Object.values(template.findResources('AWS::IAM::Policy'))) {
    const roles: unknown[] = policy.Properties.Roles ?? [];
    if (roles.some((r) => isDeepStrictEqual(r, { Ref: logicalId }))) {
      statements.push(...policy.Properties.PolicyDocument.Statement);
    }
  }
  const roleResource = template.toJSON().Resources[logicalId];
  for (const inline of roleResource?.Properties?.Policies ?? []) {
    statements.push(...inline.PolicyDocument.Statement);
  }
  return statements;
}

/**
 * The resources that Allow statements grant `action` on (IAM actions are case-insensitive).
 */
export function resourcesGranted(statements: PolicyStatementJson[], action: string): unknown[] {
  const wanted = action.toLowerCase();
  return statements
    .filter((s) => s.Effect === 'Allow' && actionsOf(s).some((a) => a.toLowerCase() === wanted))
    .flatMap(resourcesOf);
}

/** Whether `resources` contains a value deep-equal to `resource`. */
export function includesResource(resources: unknown[], resource: unknown): boolean {
  return resources.some((r) => isDeepStrictEqual(r, resource));
}

/** Deep equality of JSON values. */
export function isDeepStrictEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) {
    return value.map(sortKeys);
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value as object).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]));
  }
  return value;
}

/** Values substituted for pseudo parameters when a definition is resolved. */
const PSEUDO_PARAMETERS: Record<string, string> = {
  'AWS::Partition': 'aws',
  'AWS::URLSuffix': 'amazonaws.com',
  'AWS::Region': TEST_ENV.region,
  'AWS::AccountId': TEST_ENV.account,
};

/**
 * A CloudFormation string value (a plain string or an `Fn::Join` of strings and tokens) as a
 * plain string: pseudo parameters become their test values, every other token (Ref, GetAtt ...)
 * a placeholder string naming the resource it points to.
 */
export function flattenCfnString(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  const obj = value as Record<string, unknown>;
  if (obj && 'Fn::Join' in obj) {
    const [separator, parts] = obj['Fn::Join'] as [string, unknown[]];
    return parts.map(flattenCfnString).join(separator);
  }
  if (obj && typeof obj.Ref === 'string') {
    return PSEUDO_PARAMETERS[obj.Ref] ?? `PLACEHOLDER-${obj.Ref}`;
  }
  if (obj && Array.isArray(obj['Fn::GetAtt'])) {
    return `PLACEHOLDER-${(obj['Fn::GetAtt'] as string[]).join('-')}`;
  }
  return 'PLACEHOLDER';
}

/** A state machine definition (Amazon States Language), loosely typed for assertions. */
export interface AslDefinition {
  readonly StartAt: string;
  readonly States: Record<string, AslState>;
  readonly [key: string]: unknown;
}

/** One state of a definition. */
export interface AslState {
  readonly Type: string;
  readonly [key: string]: any;
}

/** The definitions of all state machines in the template, by logical id, resolved and parsed. */
export function stateMachineDefinitions(template: Template): Record<string, AslDefinition> {
  const result: Record<string, AslDefinition> = {};
  for (const [id, resource] of Object.entries(template.findResources('AWS::StepFunctions::StateMachine'))) {
    result[id] = JSON.parse(flattenCfnString(resource.Properties.DefinitionString));
  }
  return result;
}

/** The resolved, parsed definition of the state machine whose L1 resource has `logicalId`. */
export function definitionOf(template: Template, logicalId: string): AslDefinition {
  const definition = stateMachineDefinitions(template)[logicalId];
  if (!definition) {
    throw new Error(`No state machine with logical id ${logicalId} in the template`);
  }
  return definition;
}

/** The logical id of a construct's default (L1) child. */
export function logicalIdOf(stack: Stack, construct: { node: { defaultChild?: unknown } }): string {
  return stack.getLogicalId(construct.node.defaultChild as any);
}

/**
 * Validates a definition with asl-validator (JSON schema, transitions, terminal states, paths,
 * ARNs). Returns the error messages: empty when the definition is valid.
 */
export function aslErrors(definition: AslDefinition): string[] {
  // The tests' asl-validator (not the interpreter's), its schemas compiled once per test file.
  const validate = withCompiledSchemas(aslValidatorDir());
  // The validator annotates the states it reads: give it a copy.
  const result = validate(JSON.parse(JSON.stringify(definition)), { checkPaths: true, checkArn: true });
  return result.isValid ? [] : [result.errorsText('\n')];
}

/**
 * Reads a simple JSONPath (`$.a.b`, `$.a[0]`, `$['a-b']`) from `input`; `undefined` when absent.
 */
export function readJsonPath(input: unknown, path: string): unknown {
  if (!path.startsWith('$')) {
    throw new Error(`Not a JSONPath: ${path}`);
  }
  const segments = [...path.slice(1).matchAll(/\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['([^']+)'\]/g)]
    .map((m) => m[1] ?? m[2] ?? m[3]);
  let current: any = input;
  for (const segment of segments) {
    if (current === null || typeof current !== 'object' || !(segment in current)) {
      return undefined;
    }
    current = current[segment];
  }
  return current;
}

/** Whether one Choice rule matches `input` (the comparison operators the constructs use). */
export function choiceRuleMatches(rule: Record<string, any>, input: unknown): boolean {
  if (rule.Or) {
    return rule.Or.some((r: Record<string, any>) => choiceRuleMatches(r, input));
  }
  if (rule.And) {
    return rule.And.every((r: Record<string, any>) => choiceRuleMatches(r, input));
  }
  if (rule.Not) {
    return !choiceRuleMatches(rule.Not, input);
  }
  const value = readJsonPath(input, rule.Variable);
  if ('IsPresent' in rule) {
    return (value !== undefined) === rule.IsPresent;
  }
  if (value === undefined) {
    // Step Functions fails the execution (States.Runtime) on a missing variable.
    throw new Error(`Choice rule reads ${rule.Variable}, absent from the input`);
  }
  if ('IsNull' in rule) {
    return (value === null) === rule.IsNull;
  }
  if ('IsString' in rule) {
    return (typeof value === 'string') === rule.IsString;
  }
  if ('IsNumeric' in rule) {
    return (typeof value === 'number') === rule.IsNumeric;
  }
  if ('IsBoolean' in rule) {
    return (typeof value === 'boolean') === rule.IsBoolean;
  }
  if ('StringEquals' in rule) {
    return value === rule.StringEquals;
  }
  if ('StringMatches' in rule) {
    const pattern = new RegExp(`^${String(rule.StringMatches).split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    return typeof value === 'string' && pattern.test(value);
  }
  if ('NumericLessThan' in rule) {
    return typeof value === 'number' && value < rule.NumericLessThan;
  }
  if ('NumericLessThanEquals' in rule) {
    return typeof value === 'number' && value <= rule.NumericLessThanEquals;
  }
  if ('NumericGreaterThanEquals' in rule) {
    return typeof value === 'number' && value >= rule.NumericGreaterThanEquals;
  }
  if ('NumericGreaterThan' in rule) {
    return typeof value === 'number' && value > rule.NumericGreaterThan;
  }
  if ('NumericEquals' in rule) {
    return typeof value === 'number' && value === rule.NumericEquals;
  }
  throw new Error(`Unsupported choice rule ${JSON.stringify(rule)}`);
}

/** The state a Choice state goes to for `input`. */
export function nextOfChoice(state: AslState, input: unknown): string {
  if (state.Type !== 'Choice') {
    throw new Error(`Not a Choice state: ${JSON.stringify(state)}`);
  }
  const rule = (state.Choices as Array<Record<string, any>>).find((r) => choiceRuleMatches(r, input));
  if (rule) {
    return rule.Next;
  }
  if (!state.Default) {
    throw new Error('No choice matched and the state has no Default (States.NoChoiceMatched)');
  }
  return state.Default;
}

/**
 * The states visited from `from` following `Next` until a state without one (a Choice, a
 * terminal state) or `until`: both ends included.
 */
export function followNext(definition: AslDefinition, from: string, until?: string): string[] {
  const path = [from];
  let current = definition.States[from];
  while (current && current.Next && path[path.length - 1] !== until) {
    if (path.includes(current.Next)) {
      throw new Error(`Loop through ${current.Next}`);
    }
    path.push(current.Next);
    current = definition.States[current.Next];
  }
  return path;
}

/**
 * The first state that is not a Choice, starting at `from` and taking the choices `input` leads to.
 */
export function routeThroughChoices(definition: AslDefinition, from: string, input: unknown): string {
  let state = from;
  const seen = new Set<string>();
  while (definition.States[state]?.Type === 'Choice') {
    if (seen.has(state)) {
      throw new Error(`Loop through ${state}`);
    }
    seen.add(state);
    state = nextOfChoice(definition.States[state], input);
  }
  return state;
}
