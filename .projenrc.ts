import { awscdk, javascript } from 'projen';
import { UpdateSnapshot } from 'projen/lib/javascript';

// The lowest aws-cdk-lib whose cloud-assembly schema @aws-cdk/integ-runner 2.197.x still reads,
// so integ snapshots can be written and verified offline (see BUILD-NOTES).
const CDK_VERSION = '2.257.0';

const project = new awscdk.AwsCdkConstructLibrary({
  name: 'cdk-async-external-api',
  packageName: 'cdk-async-external-api',
  description:
    'AWS CDK constructs that call asynchronous third-party APIs (submit a job, wait for its webhook) from Step Functions without exceeding the vendor contract or losing a request.',
  author: 'cdk-async-external-api maintainers',
  authorAddress: 'maintainers@cdkasyncexternalapi.github.io',
  repositoryUrl: 'https://github.com/cdk-async-external-api/cdk-async-external-api.git',
  license: 'Apache-2.0',
  keywords: ['cdk', 'aws-cdk', 'step-functions', 'sqs', 'api-gateway', 'webhook', 'rate-limit', 'callback'],
  defaultReleaseBranch: 'main',
  cdkVersion: CDK_VERSION,
  constructsVersion: '10.5.1',
  jsiiVersion: '~6.0.0',
  packageManager: javascript.NodePackageManager.NPM,
  projenrcTs: true,
  minNodeVersion: '20.0.0',

  publishToPypi: {
    distName: 'cdk-async-external-api',
    module: 'cdk_async_external_api',
  },
  publishToMaven: {
    javaPackage: 'io.github.cdkasyncexternalapi',
    mavenGroupId: 'io.github.cdkasyncexternalapi',
    mavenArtifactId: 'cdk-async-external-api',
  },

  // Handlers bundle the AWS SDK v3 clients they use (pinned by the lockfile) instead of relying on
  // the copy in the Lambda runtime, so what we test is what runs, locally and on AWS.
  lambdaOptions: {
    runtime: awscdk.LambdaRuntime.NODEJS_22_X,
    bundlingOptions: {
      externals: [],
      sourcemap: false,
    },
  },

  devDeps: [
    '@aws-sdk/client-dynamodb',
    '@aws-sdk/client-sfn',
    '@aws-sdk/client-sqs',
    '@aws-sdk/client-secrets-manager',
    // The key settings CLI reads the dispatcher's environment (cdk-async-external-api-keys).
    '@aws-sdk/client-lambda',
    // SigV4 signing of the vendor caller's proxy call and the AppConfigData reads (no client for those).
    '@smithy/signature-v4@^5',
    '@aws-sdk/credential-provider-node',
    '@aws-lambda-powertools/batch',
    '@aws-lambda-powertools/logger',
    '@aws-lambda-powertools/metrics',
    '@aws-cdk/integ-tests-alpha@2.245.0-alpha.0',
    '@aws-cdk/integ-runner@2.197.10',
    // The AWS resource spec (which resources are stateful, which properties force replacement) for
    // the upgrade-safety test; the version integ-runner 2.197.10 itself resolves.
    '@aws-cdk/aws-service-spec@0.1.167',
    '@types/aws-lambda',
    'aws-sdk-client-mock',
    // The webhook schemes' official libraries: the presets are tested against their signatures (issue 11).
    // webhooks-methods 5+ is ESM-only; 4.x is the last CommonJS release jest loads as is.
    'standardwebhooks',
    'stripe',
    '@octokit/webhooks-methods@^4',
    'aws-sdk-client-mock-jest',
    'asl-validator@^4',
    'velocityjs@^2',
    'cdk-nag@2.38.2',
    'aws-local-stepfunctions@^3',
    'fauxqs@~1.9.2',
    'dynalite@^4',
    // Executes the JSONata states of the user-task routes (test/asl/jsonata-execute.ts): the local
    // interpreter ignores JSONata.
    'jsonata@^2',
    'jest-junit@^17',
  ],

  jestOptions: {
    // Snapshots are change detectors: the test command must never rewrite them.
    updateSnapshot: UpdateSnapshot.NEVER,
    // The junit reporter is configured below (it must name each test's file).
    junitReporting: false,
    jestConfig: {
      testPathIgnorePatterns: ['/node_modules/', '/lib/', '/dist/'],
      // ASL edge coverage (docs/asl-coverage.md): the local runtime reports its executions' events.
      setupFiles: ['<rootDir>/test/asl/setup.ts'],
      // One temporary directory per run, removed at its end (test/run-tmpdir.js: cdk.out copies filled the disk).
      globalSetup: '<rootDir>/test/run-tmpdir-setup.js',
      globalTeardown: '<rootDir>/test/run-tmpdir-teardown.js',
      // Test speed (issue 12): jest's default on 2 cores is one worker. `npm test` runs two lanes of
      // two workers each (scripts/test.sh); this is for other jest runs.
      maxWorkers: '100%',
      // Longest file first (test/timings.json on a fresh clone), so the slow files start at once.
      testSequencer: '<rootDir>/test/sequencer.js',
      reporters: [
        // (jest's default reporter is kept: preserveDefaultReporters)
        // `file` on each testcase: scripts/junit-report.ts builds the per-file table and compares
        // test names against test/baseline-test-names.txt from it.
        new javascript.JestReporter('jest-junit', { outputDirectory: 'test-reports', addFileAttribute: 'true' }),
      ],
    },
  },

  // local/ (the local runtime) and examples/ are not published: linted like tests, devDependencies allowed.
  eslintOptions: { dirs: ['src'], devdirs: ['test', 'build-tools', 'local', 'examples', 'cost', 'scripts'] },

  gitignore: ['/cdk.out', '/examples/cdk.out', '/.demo', '/.bench', '/test/integ/cdk-integ.out.*'],
  npmIgnoreOptions: { ignorePatterns: ['/examples', '/.ci', '/cdk.out', '/local', '/cost', '/docs', '/.demo', '/.bench', '/scripts'] },
});

// ASL edge coverage (docs/asl-coverage.md): merges the jest workers' records into coverage/asl-coverage.json
// and fails a full run on an uncovered edge not in test/asl/known-uncovered.json (a shrink-only list).
project.jest?.addReporter(new javascript.JestReporter('<rootDir>/test/asl/coverage-reporter.js'));
// What projen's own junit reporting would ignore (junitReporting is off, see jestOptions).
project.gitignore.exclude('# jest-junit artifacts', '/test-reports/', 'junit.xml');
project.npmignore?.exclude('# jest-junit artifacts', '/test-reports/', 'junit.xml');

// Handler logic lives beside its `.lambda.ts` adapter and bundles the same devDependencies (the
// AWS SDK, Powertools); construct code must not import them.
const handlerLogic = [
  'src/callback-webhook/callback-processing.ts',
  'src/rate-controlled-queue-consumer/dispatch.ts',
  'src/rate-controlled-queue-consumer/dynamic-delay-reader.ts',
  'src/rate-controlled-queue-consumer/pacer.ts',
  'src/rate-controlled-queue-consumer/scheduled-drain.ts',
  'src/dispatch-workflow/vendor-call.ts',
  'src/throttled-proxy/vendor-token.ts',
  'src/shared/handler-metrics.ts',
  'src/rate-controlled-queue-consumer/job-admission.ts',
  'src/shared/job-places.ts',
  'src/shared/job-waiting.ts',
  'src/dispatch-workflow/refused-submission.ts',
  'src/contract/quota-ledger.ts',
  'src/rate-controlled-queue-consumer/adaptive-rate.ts',
  'src/shared/key-settings.ts',
  'src/rate-controlled-queue-consumer/key-schedule.ts',
  'src/rate-controlled-queue-consumer/key-set-aside.ts',
  'src/shared/key-places.ts',
  // A CLI bundled with its SDK clients (below), like a handler.
  'src/contract/key-settings-cli.ts',
];
for (const file of handlerLogic) {
  project.eslint?.allowDevDeps(file);
}

// `npm test` must work on a fresh clone: the generated XFunction constructs load handler bundles
// from assets/, which only the build's pre-compile step creates. Then jest, in two lanes, and
// eslint side by side (scripts/test.sh; the jest flags projen would pass: --passWithNoTests --ci,
// snapshots never updated).
project.testTask.reset();
project.testTask.spawn(project.bundler.bundleTask);
project.testTask.exec('scripts/test.sh', { receiveArgs: true });
// Test speed (issue 12): the per-file table of the last run, and the check that every test of the
// baseline still runs (scripts/junit-report.ts; both read test-reports/junit.xml).
project.addTask('test:table', {
  description: 'Per-file wall time of the last jest run, from test-reports/junit*.xml (--write: README and test/timings.json)',
  exec: 'ts-node --transpile-only --project scripts/tsconfig.json scripts/junit-report.ts table',
  receiveArgs: true,
});
project.addTask('test:compare', {
  description: 'Check that every test of test/baseline-test-names.txt ran in the last jest run (test-reports/junit*.xml)',
  exec: 'ts-node --transpile-only --project scripts/tsconfig.json scripts/junit-report.ts compare test/baseline-test-names.txt',
});

// The README's main job: synthesize the example app and run it on the local runtime against
// the vendor simulator (flags: see local/demo.ts).
project.addTask('demo', {
  description: 'Run the example app on the local runtime against a simulated vendor',
  steps: [{ spawn: project.bundler.bundleTask.name }, { exec: 'ts-node --transpile-only --project local/tsconfig.json local/demo.ts', receiveArgs: true }],
});
// Rate accuracy against the contract (issue 4, docs/benchmark.md): emulated and modeled scenarios,
// a table, `--json` (last line), `--quick` (CI smoke), one SVG chart per scenario in .bench/.
project.addTask('bench', {
  description: 'Rate benchmark: violations, utilization, 429s and added latency per contract (docs/benchmark.md)',
  steps: [{ spawn: project.bundler.bundleTask.name }, { exec: 'ts-node --transpile-only --project local/tsconfig.json local/bench.ts', receiveArgs: true }],
});
// ---- faults helper (issue 5 item 7) begin ----
// The fault-injection scenarios on the local runtime, as a table (--json, --only <id,id>); the
// same scenarios run with assertions in test/local/faults.test.ts (docs/security.md).
project.addTask('faults', {
  description: 'Run the fault-injection scenarios on the local runtime and print the results table',
  steps: [{ spawn: project.bundler.bundleTask.name }, { exec: 'ts-node --transpile-only --project local/tsconfig.json local/fault-suite.ts', receiveArgs: true }],
});
// ---- faults helper end ----
project.addTask('cost', {
  description: 'Cost per million requests of the example stack at public list prices (docs/cost.md)',
  steps: [{ spawn: project.bundler.bundleTask.name }, { exec: 'ts-node --transpile-only --project local/tsconfig.json cost/cost.ts', receiveArgs: true }],
});
// Integ test snapshots (test/integ): written and verified offline, deployed only by a user with
// an AWS account (see the header of test/integ/integ.orchestrator.ts).
project.addTask('integ:snapshot', {
  description: 'Rewrite the integ test snapshots offline (no AWS account, nothing deployed); commit the result',
  steps: [{ spawn: project.bundler.bundleTask.name }, { exec: 'scripts/integ-snapshot.sh write' }],
});
project.addTask('integ:verify', {
  description: 'Check offline that the integ apps still synthesize to the committed snapshots',
  steps: [{ spawn: project.bundler.bundleTask.name }, { exec: 'scripts/integ-snapshot.sh verify' }],
});
project.addTask('demo:synth', {
  description: 'Synthesize the example app and print what it deploys',
  steps: [{ spawn: project.bundler.bundleTask.name }, { exec: 'ts-node --project examples/tsconfig.json examples/demo.ts' }],
});

// The exact audit of the proxy's access log (README, "Audit"): `npx cdk-async-external-api-audit`.
project.addBins({ 'cdk-async-external-api-audit': 'lib/throttled-proxy/access-log-audit-cli.js' });
// The key settings CLI (docs/operations.md, "Per-key limits"): `npx cdk-async-external-api-keys`. Bundled
// with the AWS SDK clients it uses (devDependencies, not the package's dependencies) into assets/,
// which ships in the package, as the handlers are.
const keysCli = project.bundler.addBundle('src/contract/key-settings-cli.ts', { platform: 'node', target: 'node20', externals: [], sourcemap: false, executable: true });
project.addBins({ 'cdk-async-external-api-keys': keysCli.outfile });

project.synth();
