/**
 * The configurations of the library's state machines: each distinct synthesized definition of
 * the dispatch workflow and the vendor-call workflow, built with the orchestrator the way a user
 * builds it. ASL coverage is measured per configuration (docs/asl-coverage.md).
 *
 * What changes a definition's routes (its states, the paths and intrinsics they read) is an axis:
 * the pacing point, how the webhook URL reaches the vendor (and whether it is a per-request
 * capability URL), and the vendor credential. Each pacing point is a base; every other value of
 * an axis is one configuration on each base (one axis at a time: the axes change different
 * states, see `definitionChanges` in configurations.test.ts). Props that only change constants
 * (maxAttempts, delays, timeouts, jobIdPath, header and field names) are not axes.
 */
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { synthesizedOncePerRun } from './once-per-run';
import {
  AsyncExternalApiOrchestrator, AsyncExternalApiOrchestratorProps, CallbackUrlDelivery, KeyLimits, PacingPoint, VendorContract, VendorCredentials,
  VendorQuota, WebhookAuthentication, WebhookSignature,
} from '../../src';
import { AslDefinition, definitionOf, logicalIdOf, testStack } from '../util';

/** The props every configuration shares (those of the execution tests). */
export const BASE_PROPS = {
  vendorUrl: 'https://vendor.example.com/v1/jobs',
  requestsPerSecond: 10,
  callbackTimeout: Duration.minutes(30),
};

/** Adds one axis value to the orchestrator props (secrets are created in the stack). */
type Variant = (stack: import('aws-cdk-lib').Stack) => Partial<AsyncExternalApiOrchestratorProps>;

const secret = (stack: import('aws-cdk-lib').Stack) => new secretsmanager.Secret(stack, 'VendorSecret');

/** The values of each axis other than the default; the key is the configuration label. */
export const AXIS_VARIANTS: Record<string, Variant> = {
  'callback URL in a header': () => ({ dispatch: { callbackUrlDelivery: CallbackUrlDelivery.header('X-Callback-Url') } }),
  'callback URL in the body, no capability URL': (stack) => ({
    webhook: { authentication: WebhookAuthentication.signatureOnly(WebhookSignature.github(secret(stack))) },
  }),
  'callback URL in a header, no capability URL': (stack) => ({
    dispatch: { callbackUrlDelivery: CallbackUrlDelivery.header('X-Callback-Url') },
    webhook: { authentication: WebhookAuthentication.signatureOnly(WebhookSignature.github(secret(stack))) },
  }),
  'no callback URL (configured out of band)': (stack) => ({
    dispatch: { callbackUrlDelivery: CallbackUrlDelivery.none() },
    webhook: { authentication: WebhookAuthentication.signatureOnly(WebhookSignature.github(secret(stack))) },
  }),
  'secret header': (stack) => ({ proxy: { credentials: VendorCredentials.fromSecretHeader({ secret: secret(stack) }) } }),
  'secret header, jsonField': (stack) => ({ proxy: { credentials: VendorCredentials.fromSecretHeader({ secret: secret(stack), jsonField: 'apiKey' }) } }),
  'secret header, prefix': (stack) => ({ proxy: { credentials: VendorCredentials.fromSecretHeader({ secret: secret(stack), headerName: 'Authorization', prefix: 'Bearer ' }) } }),
  'secret header, jsonField and prefix': (stack) => ({
    proxy: { credentials: VendorCredentials.fromSecretHeader({ secret: secret(stack), headerName: 'Authorization', jsonField: 'token', prefix: 'Bearer ' }) },
  }),
  'OAuth client credentials': (stack) => ({
    proxy: { credentials: VendorCredentials.oauthClientCredentials({ secret: secret(stack), tokenUrl: 'https://auth.vendor.example.com/token' }) },
  }),
  // Issue 15: the key's own secret (credential function, `$.key`, the key in ClaimRequest).
  'per-key credential': () => ({ proxy: { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}' }) } }),
};

/**
 * Axis values that exist only with PacingPoint.VENDOR_CALL (the vendor caller enforces them):
 * quotas add ClassifyVendorError's VendorQuotaExhausted rule to both workflows.
 */
export const VENDOR_CALL_ONLY_VARIANTS: Record<string, Variant> = {
  'quotas': () => ({
    requestsPerSecond: undefined,
    contract: VendorContract.of({ requestsPerSecond: BASE_PROPS.requestsPerSecond, quotas: [VendorQuota.perHour(1000)] }),
  }),
  // Issue 15: `keyLimits` to the vendor caller (null from an earlier dispatcher), the key on every
  // request (ClaimRequest records it, retries keep it and its group), without a credential per key.
  'limits per key': () => ({
    requestsPerSecond: undefined,
    contract: VendorContract.of({ requestsPerSecond: BASE_PROPS.requestsPerSecond, perKey: KeyLimits.of({ requestsPerSecond: 2 }) }),
  }),
};

/** Whether every request of a configuration carries its key (a credential or limits per key, issue 15). */
export function requestsKeyed(configuration: string): boolean {
  return /per-key|limits per key/.test(configuration);
}

/** Whether a configuration label has a vendor credential (finding 12's states: secret or OAuth). */
export function hasCredential(configuration: string): boolean {
  return /secret header|OAuth|per-key/.test(configuration);
}

export const PACING_POINTS: Record<string, PacingPoint> = {
  'pacing VENDOR_CALL': PacingPoint.VENDOR_CALL,
  'pacing DISPATCH': PacingPoint.DISPATCH,
};

/** Both workflows' definitions for one set of orchestrator props. */
export interface SynthesizedWorkflows {
  readonly dispatch: AslDefinition;
  readonly vendorCall: AslDefinition;
}

/**
 * Synthesizes the orchestrator with a main workflow that submits a job (`submitJobTask`) and
 * makes a call (`callVendorTask`, which creates the vendor-call workflow), as the execution tests do.
 */
export function synthesizeWorkflows(props: (stack: import('aws-cdk-lib').Stack) => Partial<AsyncExternalApiOrchestratorProps> = () => ({})): SynthesizedWorkflows {
  const stack = testStack();
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', { ...BASE_PROPS, ...props(stack) });
  const main = new sfn.StateMachine(stack, 'Main', {
    definitionBody: sfn.DefinitionBody.fromChainable(
      // With a key (issue 15): the per-key credential configuration needs one on every task.
      orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromJsonPathAt('$.order'), key: sfn.JsonPath.stringAt('$.customerId') })
        .next(orchestrator.callVendorTask(stack, 'Fetch', { path: '/x', key: sfn.JsonPath.stringAt('$.customerId') }))),
  });
  orchestrator.registerWorkflow(main);
  const template = Template.fromStack(stack);
  return {
    dispatch: definitionOf(template, logicalIdOf(stack, orchestrator.dispatch.stateMachine)),
    vendorCall: definitionOf(template, logicalIdOf(stack, orchestrator.vendorCall!.stateMachine)),
  };
}

/** One configuration of one state machine. */
export interface Configuration {
  readonly name: 'DispatchWorkflow' | 'VendorCallWorkflow';
  /** e.g. `pacing DISPATCH, secret header`. */
  readonly configuration: string;
  readonly definition: AslDefinition;
}

/**
 * Every configuration (or those `only` accepts by label), each synthesized once per jest run
 * (synthesizedOncePerRun, shared by the files that read them): per pacing point the base and each axis value.
 * Configurations of one state machine that synthesize the same definition (e.g. the vendor-call
 * workflow does not depend on the callback URL) are one: the first label names it.
 */
export function allConfigurations(only: (configuration: string) => boolean = () => true): Array<Configuration & { readonly props: Variant }> {
  const variants: Array<[string, Variant]> = [];
  for (const [pacingLabel, pacingPoint] of Object.entries(PACING_POINTS)) {
    variants.push([pacingLabel, () => ({ pacingPoint })]);
    for (const [label, variant] of Object.entries(AXIS_VARIANTS)) {
      variants.push([`${pacingLabel}, ${label}`, (stack) => ({ pacingPoint, ...variant(stack) })]);
    }
    if (pacingPoint === PacingPoint.VENDOR_CALL) {
      for (const [label, variant] of Object.entries(VENDOR_CALL_ONLY_VARIANTS)) {
        variants.push([`${pacingLabel}, ${label}`, (stack) => ({ pacingPoint, ...variant(stack) })]);
      }
    }
  }
  const wanted = variants.filter(([label]) => only(label));
  const synthesized = synthesizedOncePerRun('configuration', [__filename], wanted.map(([label, props]) => [label, () => synthesizeWorkflows(props)]));
  return wanted.flatMap(([label, props]) => [
    { name: 'DispatchWorkflow' as const, configuration: label, definition: synthesized.get(label)!.dispatch, props },
    { name: 'VendorCallWorkflow' as const, configuration: label, definition: synthesized.get(label)!.vendorCall, props },
  ]);
}

