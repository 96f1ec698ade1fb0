/**
 * asl-validator with its JSON schemas compiled once per process (under jest: per test file, each
 * has its own module registry) instead of once per call.
 *
 * asl-validator's JSON-schema check (`dist/src/checks/json-schema-errors.js`, identical in the
 * 3.16 that aws-local-stepfunctions loads and the 4.0 the tests load) builds a new Ajv instance
 * with the whole set of state machine schemas and compiles them on every call: 150-400 ms per
 * definition on these 2 cores, whatever its size. The compiled validator depends only on the
 * validation options (which formats check paths and ARNs), so the same check with one Ajv per
 * options gives the same answers: profiles of the construct and ASL execution tests showed a third
 * to a half of their CPU time in Ajv's compiler (test/asl/configurations.test.ts 9.2 of 21 s).
 *
 * `withCompiledSchemas(packageDir)` replaces that module's `jsonSchemaErrors` export (the validator
 * looks it up on every call: `(0, json_schema_errors_1.jsonSchemaErrors)(definition, options)`)
 * with the function below, which is the package's own, Apache-2.0, with the Ajv set-up memoized.
 * Every other check of the validator runs as before. test/asl/asl-schema-cache.test.ts checks
 * that both give the same errors for valid and invalid definitions with each option.
 */
import * as path from 'node:path';

/** asl-validator's options (both default to true). */
interface ValidatorOptions {
  readonly checkPaths?: boolean;
  readonly checkArn?: boolean;
}

/** The validator function of an asl-validator package (its main export). */
export type AslValidator = (definition: unknown, options?: ValidatorOptions) => {
  isValid: boolean;
  errors: unknown[];
  errorsText: (separator?: string) => string;
};

/** Marks a module whose `jsonSchemaErrors` is already the cached one. */
const CACHED = Symbol.for('cdk-async-external-api.asl-schema-cache');

const SCHEMAS = [
  'common', 'paths', 'jsonata', 'choice', 'fail', 'parallel', 'pass', 'base-state-machine', 'state-machine', 'state', 'succeed', 'task',
  'wait', 'map', 'errors',
];

/** The directory of the asl-validator package that `require('asl-validator')` loads from `fromDir`. */
export function aslValidatorDir(fromDir?: string): string {
  // dist/src/validator.js, its main file, three levels below.
  return path.dirname(path.dirname(path.dirname(require.resolve('asl-validator', fromDir ? { paths: [fromDir] } : undefined))));
}

/** The directory of the asl-validator package aws-local-stepfunctions loads (its own version, not the tests' one). */
export function interpreterAslValidatorDir(): string {
  return aslValidatorDir(path.dirname(path.dirname(require.resolve('aws-local-stepfunctions'))));
}

/**
 * The asl-validator package in `packageDir` (the directory holding its package.json, see
 * aslValidatorDir), with its schemas compiled once per options. Returns its validator.
 */
export function withCompiledSchemas(packageDir: string): AslValidator {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const schemaChecks = require(path.join(packageDir, 'dist/src/checks/json-schema-errors.js'));
  if (!schemaChecks[CACHED]) {
    schemaChecks.jsonSchemaErrors = cachedJsonSchemaErrors(packageDir);
    schemaChecks[CACHED] = true;
  }
  return require(packageDir);
  /* eslint-enable @typescript-eslint/no-require-imports */
}

/** The package's `jsonSchemaErrors` (dist/src/checks/json-schema-errors.js), one Ajv per options. */
function cachedJsonSchemaErrors(packageDir: string) {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const load = (request: string) => require(require.resolve(request, { paths: [packageDir] }));
  const interop = (module: any) => (module && module.__esModule ? module.default : module);
  const Ajv = interop(load('ajv'));
  const addFormats = interop(load('ajv-formats'));
  const jsonata = interop(load('jsonata'));
  const { registerAll } = load('asl-path-validator');
  const { isArnFormatValid } = require(path.join(packageDir, 'dist/src/checks/formats.js'));
  const types = require(path.join(packageDir, 'dist/src/types.js'));
  const schemas = SCHEMAS.map((name) => require(path.join(packageDir, `dist/src/schemas/${name}.json`)));
  /* eslint-enable @typescript-eslint/no-require-imports */

  const validators = new Map<string, (definition: unknown) => boolean>();
  const validatorFor = (options: ValidatorOptions) => {
    const key = `${options.checkPaths ? 'paths' : ''}/${options.checkArn ? 'arn' : ''}`;
    let validate = validators.get(key);
    if (!validate) {
      const ajv = new Ajv({ schemas, allowUnionTypes: true });
      addFormats(ajv);
      const validateJsonataString = (value: string) => {
        const trimmed = value.trim();
        try {
          let expr = trimmed.startsWith('{%') ? trimmed.slice(2) : trimmed;
          expr = expr.endsWith('%}') ? expr.slice(0, -2) : expr;
          jsonata(expr);
          return true;
        } catch {
          return false;
        }
      };
      ajv.addFormat('jsonata_string', validateJsonataString);
      ajv.addFormat('maybe_jsonata_string', (value: string) => {
        const trimmed = value.trim();
        return trimmed.startsWith('{%') || trimmed.endsWith('%}') ? validateJsonataString(trimmed) : true;
      });
      if (options.checkPaths) {
        registerAll(ajv);
      } else {
        for (const format of ['asl_path', 'asl_ref_path', 'asl_payload_template', 'asl_result_path']) {
          ajv.addFormat(format, () => true);
        }
      }
      ajv.addFormat('asl_arn', options.checkArn ? isArnFormatValid : () => true);
      validate = ajv.getSchema('http://asl-validator.cloud/state-machine.json#') as (definition: unknown) => boolean;
      validators.set(key, validate);
    }
    return validate;
  };

  return (definition: unknown, options: ValidatorOptions) => {
    const validate = validatorFor(options) as ((definition: unknown) => boolean) & { errors?: any[] | null };
    validate(definition);
    const errors = validate.errors;
    if (!errors) {
      return [];
    }
    // From here on the package's own selection of the errors to report, unchanged: the deepest
    // instance paths, oneOf errors over the others at the same path, no duplicates.
    let selectedErrors: any[] = [];
    let deepest = 0;
    errors.forEach((error) => {
      const depth = error.instancePath.split('/').length;
      if (depth === deepest) {
        selectedErrors.push(error);
      } else if (depth > deepest) {
        selectedErrors = [error];
      }
      deepest = Math.max(deepest, depth);
    });
    const instancePathsWithOneOfKeyword = new Set<string>();
    selectedErrors.filter((error) => error.keyword === 'oneOf').forEach((error) => instancePathsWithOneOfKeyword.add(error.instancePath));
    return selectedErrors
      .filter((error) => error.keyword === 'oneOf' || !instancePathsWithOneOfKeyword.has(error.instancePath))
      .map((error) => ({
        'Error code': types.StateMachineErrorCode.SchemaValidationFailed,
        'Message': `${error.instancePath} is invalid. ${error.message ?? ''}`,
        'schemaError': { instancePath: error.instancePath, schemaPath: decodeURIComponent(error.schemaPath) },
      }))
      .filter((v, i, a) => a.findIndex((v2) => v2.schemaError.schemaPath === v.schemaError?.schemaPath
        && v2.schemaError.instancePath === v.schemaError?.instancePath) === i);
  };
}
