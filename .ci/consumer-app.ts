// A CDK app outside this repository that installs the packed library and synthesizes it.
import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator } from 'cdk-async-external-api';

const app = new App();
const stack = new Stack(app, 'ConsumerStack');
const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
  vendorUrl: 'https://vendor.example.com/v1/jobs',
  requestsPerSecond: 10,
  batchSize: 20,
  maxConcurrency: 2,
  callbackTimeout: Duration.minutes(30),
});
const main = new sfn.StateMachine(stack, 'Main', {
  definitionBody: sfn.DefinitionBody.fromChainable(
    orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromJsonPathAt('$.order') }),
  ),
});
orchestrator.registerWorkflow(main);
const assembly = app.synth();
const template = assembly.getStackByName('ConsumerStack').template;
const types = Object.values(template.Resources as Record<string, { Type: string }>).map((r) => r.Type);
assert.strictEqual(types.filter((t) => t === 'AWS::StepFunctions::StateMachine').length, 2);
// The queue consumer (dispatcher), the vendor caller (PacingPoint.VENDOR_CALL), the callback processor
// and the proxy's arrival audit (subscribed to its access log, PacingPoint.VENDOR_CALL).
assert.strictEqual(types.filter((t) => t === 'AWS::Lambda::Function').length, 4);
// The handler bundles travel inside the package and become file assets of the app.
const bundles = fs.readdirSync(assembly.directory)
  .filter((name) => name.startsWith('asset.') && fs.existsSync(path.join(assembly.directory, name, 'index.js')));
assert.ok(bundles.length >= 4, `expected the four handler bundles as assets, found ${bundles.length}`);
console.log(`consumer app synthesized ${types.length} resources with ${bundles.length} handler bundles`);
