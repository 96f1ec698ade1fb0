/**
 * Integration test: the orchestrator against a stub vendor deployed next to it, driven by two
 * Standard main workflows (one JSONPath with submitJobTask, one JSONata with submitJobTaskJsonata).
 *
 * The stub vendor is a Lambda function behind a Function URL (auth NONE, only the proxy calls it):
 * it answers `{ "jobId": "job-<Idempotency-Key>" }` at once and hands the callback to a second
 * function (asynchronous invocation), which waits two seconds and POSTs
 * `{ jobId, status: "DONE", order }` to the webhook URL it received in the body field `callbackUrl`.
 * The assertions start one execution of each main workflow and wait until it SUCCEEDS with the
 * vendor's job id and callback body in its output.
 *
 * Offline (no AWS account; this is what CI runs):
 *   npx projen bundle                         # the handler assets the orchestrator deploys
 *   npx projen integ:verify                   # synthesizes and compares with the committed snapshot
 *   npx projen integ:snapshot                 # rewrites the snapshot after an intended change (commit it)
 * (the same without projen: `scripts/integ-snapshot.sh verify` and `scripts/integ-snapshot.sh write`.)
 *
 * Real deployment, with an AWS account (a few minutes; pennies of usage):
 *   1. npm ci && npx projen bundle
 *   2. Credentials and a region for the account, e.g. `export AWS_PROFILE=sandbox AWS_REGION=eu-west-1`.
 *   3. Once per account and region: `npx cdk bootstrap aws://<account>/<region>`.
 *   4. `npx integ-runner --directory test/integ --parallel-regions "$AWS_REGION" --force --verbose`
 *      deploys the stacks, runs the assertions, writes the snapshot and destroys the stacks.
 *      (`--update-on-failed` instead of `--force` deploys only when the snapshot changed; an
 *      unchanged snapshot is not deployed at all. `--no-clean` keeps the stacks for a look.)
 *   5. What to look at: the run prints `SUCCESS` for integ.orchestrator.ts and the assertion
 *      results of both workflows (`status: SUCCEEDED`, output with `jobId: job-...`). On a failure
 *      (with --no-clean): the main workflows' execution history in the Step Functions console, the
 *      dispatch workflow (Express: its log group), the logs of the stub vendor's two functions and
 *      of the callback processor, and the request and callback dead-letter queues.
 *   6. Then commit the snapshot if it changed: `git add test/integ/integ.orchestrator.ts.snapshot`.
 *   7. Clean up: integ-runner destroys both stacks unless --no-clean (or an interrupted run). Else
 *      `npx cdk destroy --app test/integ/integ.orchestrator.ts.snapshot --all --force`, or delete the
 *      stacks `AsyncExternalApiOrchestratorIntegDefaultTestDeployAssert047D42F1` and
 *      `AsyncExternalApiInteg` in CloudFormation.
 *      Every resource of the test stack is DESTROY (the library's RETAIN defaults are overridden
 *      here), log groups included. Only the assertion functions of the DeployAssert stack write
 *      to log groups Lambda creates itself (`/aws/lambda/AsyncExternalApiOrchestratorInteg*`):
 *      delete them by hand if you care.
 */
import { ExpectedResult, IntegTest, Match } from '@aws-cdk/integ-tests-alpha';
import { App, CfnResource, Duration, RemovalPolicies, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator } from '../../src';

const app = new App({
  // No stack traces in the snapshot's metadata: they hold absolute paths, different on each machine.
  stackTraces: false,
  postCliContext: {
    'aws:cdk:disable-creation-stack-traces': true,
  },
});
// Exported for test/upgrade/stateful-resources.test.ts, which compares it with the committed snapshot.
export const stack = new Stack(app, 'AsyncExternalApiInteg', {
  description: 'cdk-async-external-api integration test: orchestrator, stub vendor and two main workflows',
});

// ---- The stub vendor. ----
// Receives the callback job from the front function, waits, and calls the webhook.
const stubCallback = new lambda.Function(stack, 'StubVendorCallback', {
  runtime: lambda.Runtime.NODEJS_22_X,
  handler: 'index.handler',
  timeout: Duration.seconds(30),
  code: lambda.Code.fromInline(`
exports.handler = async ({ callbackUrl, jobId, order }) => {
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const response = await fetch(callbackUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jobId, status: 'DONE', order }),
  });
  console.log(JSON.stringify({ jobId, callbackStatus: response.status }));
  // A failed asynchronous invocation is retried twice by Lambda.
  if (!response.ok) throw new Error('The webhook answered ' + response.status);
};
`),
});

// Answers the job submission: 400 without a JSON body and an https callbackUrl, else the job id.
const stubVendor = new lambda.Function(stack, 'StubVendor', {
  runtime: lambda.Runtime.NODEJS_22_X,
  handler: 'index.handler',
  timeout: Duration.seconds(10),
  environment: { CALLBACK_FUNCTION_NAME: stubCallback.functionName },
  code: lambda.Code.fromInline(`
const { randomUUID } = require('node:crypto');
const { LambdaClient, InvokeCommand } = require('@aws-sdk/client-lambda');
const client = new LambdaClient({});
const answer = (statusCode, body) => ({ statusCode, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
exports.handler = async (event) => {
  const raw = event.isBase64Encoded ? Buffer.from(event.body || '', 'base64').toString('utf8') : (event.body || '');
  let body;
  try { body = JSON.parse(raw); } catch { return answer(400, { message: 'the body is not JSON' }); }
  if (!body || typeof body.callbackUrl !== 'string' || !body.callbackUrl.startsWith('https://')) {
    return answer(400, { message: 'no https callbackUrl in the body' });
  }
  const { callbackUrl, ...order } = body;
  const jobId = 'job-' + ((event.headers || {})['idempotency-key'] || randomUUID());
  await client.send(new InvokeCommand({
    FunctionName: process.env.CALLBACK_FUNCTION_NAME,
    InvocationType: 'Event',
    Payload: JSON.stringify({ callbackUrl, jobId, order }),
  }));
  console.log(JSON.stringify({ jobId, callbackUrl }));
  return answer(200, { jobId });
};
`),
});
stubCallback.grantInvoke(stubVendor);
const stubVendorUrl = stubVendor.addFunctionUrl({ authType: lambda.FunctionUrlAuthType.NONE });

// ---- The orchestrator, pointed at the stub (the Function URL ends with '/': append a path). ----
const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
  vendorUrl: `${stubVendorUrl.url}jobs`,
  requestsPerSecond: 2,
  callbackTimeout: Duration.minutes(5),
  webhook: { statusPath: '$.status', failureStatusValues: ['FAILED'] },
  // In the snapshot so that test/upgrade/stateful-resources.test.ts also guards the AppConfig
  // resources an upgrade must not replace (a replaced initial version or deployment resets the
  // operator's delay to 0); deployed, the dispatcher reads it at every poll.
  consumer: { dynamicDelay: {} },
});

// ---- Main workflow 1: JSONPath, submitJobTask. ----
// The request id is the execution name: unique per run, so reruns never collide in the table.
const submit = orchestrator.submitJobTask(stack, 'SubmitJob', {
  payload: sfn.TaskInput.fromJsonPathAt('$.order'),
  requestId: sfn.JsonPath.executionName,
  resultPath: '$.vendor',
});
const processResult = new sfn.Pass(stack, 'ProcessResult', {
  parameters: {
    orderId: sfn.JsonPath.stringAt('$.orderId'),
    jobId: sfn.JsonPath.stringAt('$.vendor.jobId'),
    result: sfn.JsonPath.objectAt('$.vendor.result'),
  },
});
const mainJsonPath = new sfn.StateMachine(stack, 'MainJsonPath', {
  definitionBody: sfn.DefinitionBody.fromChainable(submit.next(processResult)),
  timeout: Duration.minutes(10),
});
orchestrator.registerWorkflow(mainJsonPath);

// ---- Main workflow 2: JSONata, submitJobTaskJsonata. ----
const submitJsonata = orchestrator.submitJobTaskJsonata(stack, 'SubmitJobJsonata', {
  payload: '{% $states.input.order %}',
  requestId: '{% $states.context.Execution.Name %}',
  assign: { jobId: '{% $states.result.jobId %}' },
  outputs: '{% $merge([$states.input, { "vendor": $states.result }]) %}',
});
const processResultJsonata = sfn.Pass.jsonata(stack, 'ProcessResultJsonata', {
  outputs: {
    orderId: '{% $states.input.orderId %}',
    jobId: '{% $jobId %}',
    result: '{% $states.input.vendor.result %}',
  },
});
const mainJsonata = new sfn.StateMachine(stack, 'MainJsonata', {
  queryLanguage: sfn.QueryLanguage.JSONATA,
  definitionBody: sfn.DefinitionBody.fromChainable(submitJsonata.next(processResultJsonata)),
  timeout: Duration.minutes(10),
});
orchestrator.registerWorkflow(mainJsonata);

// A test stack leaves nothing behind (the library retains tables, queues and logs by default).
RemovalPolicies.of(stack).destroy();

// ---- The test case and its assertions. ----
const integ = new IntegTest(app, 'AsyncExternalApiOrchestratorInteg', {
  testCases: [stack],
  // Asset hashes (the bundled handlers) are not compared: they change with every handler edit.
  diffAssets: false,
  stackUpdateWorkflow: false,
});

for (const [name, machine] of [['JsonPath', mainJsonPath], ['Jsonata', mainJsonata]] as const) {
  const orderId = `integ-order-${name.toLowerCase()}`;
  const start = integ.assertions.awsApiCall('StepFunctions', 'startExecution', {
    stateMachineArn: machine.stateMachineArn,
    input: JSON.stringify({ orderId, order: { sku: 'STUB-1', quantity: 2 } }),
  });
  const describeExecution = integ.assertions.awsApiCall('StepFunctions', 'describeExecution', {
    executionArn: start.getAttString('executionArn'),
  });
  describeExecution.expect(ExpectedResult.objectLike({
    status: 'SUCCEEDED',
    output: Match.serializedJson({
      orderId,
      jobId: Match.stringLikeRegexp('^job-'),
      result: Match.objectLike({
        jobId: Match.stringLikeRegexp('^job-'),
        status: 'DONE',
        order: { sku: 'STUB-1', quantity: 2 },
      }),
    }),
  })).waitForAssertions({ totalTimeout: Duration.minutes(8), interval: Duration.seconds(10) });
  start.next(describeExecution);
}

// integ-tests-alpha salts each assertion with Date.now() so that it re-runs on a stack *update*;
// that makes every snapshot write differ. integ-runner creates the stacks afresh on every run
// (stackUpdateWorkflow is off), so the assertions run anyway: a fixed salt keeps the snapshot stable.
for (const construct of app.node.findAll()) {
  if (CfnResource.isCfnResource(construct) && construct.cfnResourceType.startsWith('Custom::DeployAssert')) {
    construct.addPropertyOverride('salt', 'integ-snapshot');
  }
}
