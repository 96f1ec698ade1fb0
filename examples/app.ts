/**
 * Example app: a Standard "main" workflow submits a job to an asynchronous vendor API through
 * the orchestrator, waits for the vendor's callback, fetches the job's result from the vendor
 * (a paced call, counted against the contract), then processes it. With `cancelOnTimeout`, a job
 * whose callback never comes is cancelled at the vendor (README, "A stopped or timed-out workflow's
 * job"), freeing its place in flight at once.
 *
 *   npx cdk synth --app 'npx ts-node --project examples/tsconfig.json examples/app.ts'
 */
import { App, CfnOutput, Duration, Stack, StackProps } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { AsyncExternalApiOrchestrator, DynamicDelayOptions, VendorContract, VendorCredentials } from '../src';

/**
 * With `credentialsPerKey`: each key's vendor credential is the secret of this name (`{key}`: the
 * order's `customerId`), sent in `EXAMPLE_CREDENTIAL_HEADER`.
 */
export const EXAMPLE_KEY_SECRET_PATTERN = 'vendor/{key}';
export const EXAMPLE_CREDENTIAL_HEADER = 'x-api-key';

export interface ExampleStackProps extends StackProps {
  /** The vendor contract, requests per second. */
  readonly requestsPerSecond?: number;
  /**
   * The whole vendor contract (quotas, ...); when given, `requestsPerSecond` is not. With limits
   * per key (issue 15), e.g. `VendorContract.of({ requestsPerSecond: 10, perKey: KeyLimits.of({
   * requestsPerSecond: 2 }) })`, every request carries its customer (`$.customerId` of the main
   * workflow's input) as its key, and each customer gets its own limits inside the contract
   * (overrides per customer: the `KeySettingsTableName` output).
   */
  readonly contract?: VendorContract;
  /** How long the main workflow waits for a callback. */
  readonly callbackTimeout?: Duration;
  /** The vendor's job-submission URL. */
  readonly vendorUrl?: string;
  /** Let operators slow dispatch at run time (AppConfig). Default: off. */
  readonly dynamicDelay?: DynamicDelayOptions;
  /**
   * How long before its pacing slot a dispatch execution starts, so that its vendor caller is
   * ready at the slot. Default: the library's (1 second, sized for AWS); the local runtime needs
   * more (its emulated Express workflow and Lambda start are slower).
   */
  readonly lead?: Duration;
  /** How late a vendor caller may fire against its slot. Default: the library's. */
  readonly fireTolerance?: Duration;
  /** The pacing tolerance L (fire lateness + spread to the vendor). Default: the library's. */
  readonly latenessTolerance?: Duration;
  /**
   * Fetch each job's result with a paced vendor call after the callback (step 2 below). Default
   * true; the benchmark turns it off to measure submissions alone.
   */
  readonly fetchResult?: boolean;
  /**
   * On the submission's `States.Timeout` (no callback in `callbackTimeout`), cancel the job at the
   * vendor before failing with `VendorTimedOut`: `POST <vendorUrl>/by-key/<orderId>/cancel`, a
   * `callVendorTask` marked `endsJobOf`, so the vendor's 2xx frees the job's place in flight at
   * once (the README's cancel example). Needs a contract with `maxJobsInFlight`. Default false
   * (the timeout fails at once; the place stays until the job's callback or `maxJobDuration`).
   */
  readonly cancelOnTimeout?: boolean;
  /**
   * Many keys (issue 15): each order's `customerId` is its request's key, on every vendor call
   * (submission, result fetch, cancel), and each key has its own vendor account: its credential is
   * the secret `vendor/<customerId>` (`VendorCredentials.fromSecretHeaderPerKey`), sent in
   * `x-api-key`. Every order then needs a `customerId`. Default false (one account, no key).
   */
  readonly credentialsPerKey?: boolean;
}

export class ExampleStack extends Stack {
  public readonly orchestrator: AsyncExternalApiOrchestrator;
  public readonly mainWorkflow: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: ExampleStackProps = {}) {
    super(scope, id, props);

    this.orchestrator = new AsyncExternalApiOrchestrator(this, 'Vendor', {
      vendorUrl: props.vendorUrl ?? 'https://vendor.example.com/v1/jobs',
      ...(props.contract ? { contract: props.contract } : { requestsPerSecond: props.requestsPerSecond ?? 10 }),
      batchSize: 20,
      maxConcurrency: 2,
      callbackTimeout: props.callbackTimeout ?? Duration.minutes(30),
      ...(props.credentialsPerKey ? {
        proxy: {
          credentials: VendorCredentials.fromSecretHeaderPerKey({
            secretNamePattern: EXAMPLE_KEY_SECRET_PATTERN,
            headerName: EXAMPLE_CREDENTIAL_HEADER,
          }),
        },
      } : {}),
      webhook: { statusPath: '$.status', failureStatusValues: ['FAILED'] },
      consumer: {
        dynamicDelay: props.dynamicDelay,
        lead: props.lead,
        fireTolerance: props.fireTolerance,
        latenessTolerance: props.latenessTolerance,
      },
    });

    // The customer's key on every vendor call, when each customer has its own vendor account, or
    // limits of its own (issue 15: held to them inside the contract); every task then needs the key.
    const key = props.credentialsPerKey || props.contract?.perKey ? { key: sfn.JsonPath.stringAt('$.customerId') } : {};

    // 1. Submit the order to the vendor and wait for its callback.
    const submit = this.orchestrator.submitJobTask(this, 'SubmitJob', {
      payload: sfn.TaskInput.fromJsonPathAt('$.order'),
      requestId: sfn.JsonPath.stringAt('$.orderId'),
      ...key,
      resultPath: '$.vendor',
    });

    // 2. Fetch the job's result (blog step 11): GET <vendorUrl>/<jobId>/result, through the same
    //    queue, pacing and proxy as the submission, so it counts against the contract too.
    const fetchResult = this.orchestrator.callVendorTask(this, 'FetchResult', {
      path: sfn.JsonPath.format('/{}/result', sfn.JsonPath.stringAt('$.vendor.jobId')),
      requestId: sfn.JsonPath.format('{}-result', sfn.JsonPath.stringAt('$.orderId')),
      ...key,
      resultPath: '$.fetched', // { statusCode, body, headers }
    });

    // 3. Process the vendor's result (here: keep what the next step needs).
    const fetching = props.fetchResult ?? true;
    const processResult = new sfn.Pass(this, 'ProcessResult', {
      parameters: {
        orderId: sfn.JsonPath.stringAt('$.orderId'),
        jobId: sfn.JsonPath.stringAt('$.vendor.jobId'),
        // The fetched result, or (without the fetch) what the callback carried.
        result: sfn.JsonPath.objectAt(fetching ? '$.fetched.body' : '$.vendor.result'),
      },
    });

    // Every way the wait can end badly has a name of its own.
    const timedOut = new sfn.Fail(this, 'VendorTimedOut', { error: 'VendorTimedOut', cause: 'No callback before callbackTimeout' });
    if (props.cancelOnTimeout) {
      // The README's cancel example: the vendor may still run the job, which holds its place in
      // flight until its callback or maxJobDuration; its cancel endpoint's 2xx frees it at once.
      // Keyed by the submission's Idempotency-Key (its request id): after a timeout the state has
      // no job id.
      const cancel = this.orchestrator.callVendorTask(this, 'CancelJob', {
        method: 'POST',
        path: sfn.JsonPath.format('/by-key/{}/cancel', sfn.JsonPath.stringAt('$.orderId')),
        requestId: sfn.JsonPath.format('{}-cancel', sfn.JsonPath.stringAt('$.orderId')),
        endsJobOf: sfn.JsonPath.stringAt('$.orderId'),
        ...key,
        resultPath: sfn.JsonPath.DISCARD,
      });
      // A Catch's ResultPath defaults to `$` (the error replaces the state, $.orderId with it):
      // keep the state, the cancel names the order
      // (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultpath.html).
      submit.addCatch(cancel.next(timedOut), { errors: [sfn.Errors.TIMEOUT], resultPath: '$.error' });
    } else {
      submit.addCatch(timedOut, { errors: [sfn.Errors.TIMEOUT] });
    }
    submit.addCatch(new sfn.Fail(this, 'VendorJobFailed', { error: AsyncExternalApiOrchestrator.ERROR_VENDOR_JOB_FAILED }), {
      errors: [AsyncExternalApiOrchestrator.ERROR_VENDOR_JOB_FAILED],
    });
    submit.addCatch(new sfn.Fail(this, 'VendorRequestFailed', { error: AsyncExternalApiOrchestrator.ERROR_VENDOR_REQUEST_FAILED }), {
      errors: [AsyncExternalApiOrchestrator.ERROR_VENDOR_REQUEST_FAILED],
    });
    fetchResult.addCatch(new sfn.Fail(this, 'ResultFetchFailed', { error: 'ResultFetchFailed', cause: 'The vendor refused the result fetch, or every attempt failed' }), {
      errors: [AsyncExternalApiOrchestrator.ERROR_VENDOR_REQUEST_FAILED, sfn.Errors.TIMEOUT],
    });

    this.mainWorkflow = new sfn.StateMachine(this, 'MainWorkflow', {
      definitionBody: sfn.DefinitionBody.fromChainable(fetching ? submit.next(fetchResult).next(processResult) : submit.next(processResult)),
      timeout: Duration.hours(2),
    });
    this.orchestrator.registerWorkflow(this.mainWorkflow);

    new CfnOutput(this, 'MainWorkflowArn', { value: this.mainWorkflow.stateMachineArn });
    new CfnOutput(this, 'WebhookUrl', { value: this.orchestrator.webhook.url });
    if (this.orchestrator.keySettingsTable) {
      // Where operators raise or pause one customer (docs/operations.md, "Per-key limits").
      new CfnOutput(this, 'KeySettingsTableName', { value: this.orchestrator.keySettingsTable.tableName });
    }
  }
}

/** Builds the example app; the demo and the tests call this. */
export function buildExampleApp(props: ExampleStackProps = {}, outdir?: string): { app: App; stack: ExampleStack } {
  const app = new App({ outdir });
  const stack = new ExampleStack(app, 'AsyncExternalApiExample', props);
  return { app, stack };
}

if (require.main === module) {
  buildExampleApp().app.synth();
}
