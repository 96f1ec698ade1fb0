/**
 * local/aws/asl-schema-cache.ts: asl-validator with its JSON schemas compiled once per options
 * gives the same answers as the package alone, for both packages the tests load (the
 * interpreter's 3.x and the tests' 4.x), and builds one Ajv per options instead of one per call.
 */
import { AslValidator, aslValidatorDir, interpreterAslValidatorDir, withCompiledSchemas } from '../../local/aws/asl-schema-cache';

const PACKAGES: Array<[string, string]> = [
  ['the interpreter\'s asl-validator', interpreterAslValidatorDir()],
  ['the tests\' asl-validator', aslValidatorDir()],
];

const STRICT = { checkPaths: true, checkArn: true };
const LENIENT = { checkPaths: false, checkArn: false };
const PATHS_ONLY = { checkPaths: true, checkArn: false };

/** Valid and invalid definitions, each failing a different schema rule (paths, ARNs, oneOf, types, JSONata). */
const DEFINITIONS: Record<string, object> = {
  'valid': {
    StartAt: 'Claim',
    States: {
      Claim: {
        Type: 'Task',
        Resource: 'arn:aws:states:::dynamodb:putItem',
        Parameters: { 'TableName': 't', 'Item.$': '$.item' },
        ResultPath: '$.claim',
        Retry: [{ ErrorEquals: ['DynamoDB.ThrottlingException'], IntervalSeconds: 1, MaxAttempts: 3, BackoffRate: 2 }],
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Failed' }],
        Next: 'Which',
      },
      Which: { Type: 'Choice', Choices: [{ Variable: '$.claim.ok', BooleanEquals: true, Next: 'Each' }], Default: 'Failed' },
      Each: {
        Type: 'Map', ItemsPath: '$.items', ItemProcessor: { StartAt: 'One', States: { One: { Type: 'Pass', End: true } } }, Next: 'Done',
      },
      Done: { Type: 'Succeed' },
      Failed: { Type: 'Fail', Error: 'Failed', Cause: 'no claim' },
    },
  },
  'valid JSONata': {
    QueryLanguage: 'JSONata',
    StartAt: 'Sum',
    States: { Sum: { Type: 'Pass', Output: '{% $sum($states.input.values) %}', End: true } },
  },
  'a bad JSONPath': { StartAt: 'A', States: { A: { Type: 'Pass', InputPath: '$..[bad', End: true } } },
  'a bad ARN': { StartAt: 'A', States: { A: { Type: 'Task', Resource: 'not-an-arn', End: true } } },
  'a state of no known type': { StartAt: 'A', States: { A: { Type: 'Wander', End: true } } },
  'a wrong field type': { StartAt: 'A', States: { A: { Type: 'Wait', Seconds: 'ten', End: true } } },
  'a broken JSONata expression': {
    QueryLanguage: 'JSONata', StartAt: 'A', States: { A: { Type: 'Pass', Output: '{% $sum( %}', End: true } },
  },
  'a missing Next target': { StartAt: 'A', States: { A: { Type: 'Pass', Next: 'Nowhere' } } },
};

/** The package's validator as it ships (a module registry of its own: nothing cached there). */
function original(packageDir: string): AslValidator {
  let validator!: AslValidator;
  jest.isolateModules(() => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    validator = require(packageDir);
  });
  return validator;
}

const copy = (value: object) => JSON.parse(JSON.stringify(value));

/**
 * Which definitions each package is compared on, with which options. Each comparison compiles the
 * shipped package's schemas once (about 300 ms), so the matrix is what tells the code paths apart:
 * every definition with the strict options the tests use (aslErrors), the options that turn path
 * and ARN checks off with the definitions they would reject, and for the interpreter's package the
 * options the local runtime (strict) and the ASL executor (lenient) pass.
 */
const CASES: Record<string, Array<[string, object]>> = {
  'the tests\' asl-validator': [
    ...Object.keys(DEFINITIONS).map((name) => [name, STRICT] as [string, object]),
    ['valid', LENIENT], ['a bad JSONPath', LENIENT], ['a bad ARN', PATHS_ONLY], ['a bad JSONPath', PATHS_ONLY],
  ],
  'the interpreter\'s asl-validator': [['valid', STRICT], ['valid', LENIENT], ['a bad ARN', STRICT], ['a missing Next target', LENIENT]],
};

describe.each(PACKAGES)('%s with compiled schemas', (label, packageDir) => {
  const cached = withCompiledSchemas(packageDir);
  const shipped = original(packageDir);

  test.each(CASES[label])('gives the package\'s own answer for %s, options %j', (name, options) => {
    const expected = shipped(copy(DEFINITIONS[name]), options);
    const actual = cached(copy(DEFINITIONS[name]), options);
    expect({ isValid: actual.isValid, errors: actual.errorsText() }).toEqual({ isValid: expected.isValid, errors: expected.errorsText() });
    expect(actual.isValid).toBe(name.startsWith('valid') || (options === LENIENT && /JSONPath|ARN/.test(name)) || (options === PATHS_ONLY && /ARN/.test(name)));
  });

  test('builds one Ajv per options, not one per call', () => {
    let constructed = 0;
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const ajvModule = require(require.resolve('ajv', { paths: [packageDir] }));
      const Ajv = ajvModule.default;
      ajvModule.default = class extends Ajv {
        constructor(...args: any[]) {
          super(...args);
          constructed++;
        }
      };
      const validate = withCompiledSchemas(packageDir);
      for (const name of Object.keys(DEFINITIONS)) {
        validate(copy(DEFINITIONS[name]), STRICT);
        validate(copy(DEFINITIONS[name]), LENIENT);
      }
    });
    expect(constructed).toBe(2);
  });
});
