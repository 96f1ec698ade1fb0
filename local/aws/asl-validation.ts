/**
 * Builds aws-local-stepfunctions state machines, validating each distinct definition once per
 * machine rather than once per build.
 *
 * Building a `StateMachine` validates its definition with asl-validator, which compiles its whole
 * set of JSON schemas (a new Ajv instance) on every call: 0.7-1.3 s per state machine on 2 busy
 * cores, even for a 2 KB definition. The example app has three state machines, so every test file
 * that starts the local runtime spent about 3 s of its start validating, and most of them
 * validate definitions another file of the same run has already validated (same app, same
 * settings). The result depends only on the definition, the options and the validator's version,
 * so a definition that passed once is recorded (an empty marker file named by the hash of all
 * three, loopback ports left out, in the OS temporary directory: `npm test` gives each run its
 * own) and later builds of the same definition skip the validator. A definition not seen before,
 * or one that fails, is validated as before and fails the same way. Since asl-schema-cache.ts,
 * a process compiles the schemas once per validation options, so a validation after the first
 * costs milliseconds; the records still spare each process that first compilation.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { interpreterAslValidatorDir, withCompiledSchemas } from './asl-schema-cache';
import '../polyfills';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { StateMachine } = require('aws-local-stepfunctions') as typeof import('aws-local-stepfunctions', { with: { 'resolution-mode': 'import' } });
type StateMachine = InstanceType<typeof StateMachine>;

/** asl-validator's options, as aws-local-stepfunctions passes them. */
export interface AslValidationOptions {
  readonly checkArn: boolean;
  readonly checkPaths: boolean;
}

const INTERPRETER_DIR = path.dirname(path.dirname(require.resolve('aws-local-stepfunctions')));
const VALIDATOR_DIR = interpreterAslValidatorDir();

/** The versions of the interpreter and of the validator it loads: a new version validates again. */
const VALIDATOR_VERSIONS = (() => {
  const version = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version as string;
  return `aws-local-stepfunctions ${version(INTERPRETER_DIR)}, asl-validator ${version(VALIDATOR_DIR)}`;
})();

/**
 * The local runtime resolves queue URLs and endpoints to loopback addresses whose ports differ on
 * every start, so one definition would never be seen twice. A port's digits decide nothing the
 * validator checks (schema types, JSONPaths, ARNs): they are left out of the hash.
 */
const LOOPBACK_PORT = /\b(127\.0\.0\.1|localhost):\d{1,5}\b/g;

/** The file recording that `definition` passed validation with `options` (exported for its test). */
export function validationRecordOf(definition: object, options: AslValidationOptions): string {
  const hash = createHash('sha256')
    .update(JSON.stringify({ versions: VALIDATOR_VERSIONS, options: { checkArn: options.checkArn, checkPaths: options.checkPaths }, definition })
      .replace(LOOPBACK_PORT, '$1:port'))
    .digest('hex');
  return path.join(os.tmpdir(), `cdk-async-external-api-asl-valid-${hash.slice(0, 32)}`);
}

/**
 * What asl-validator writes into the definition it validates (validator.js): every state of every
 * `States` object, at any depth, without a `QueryLanguage` gets the definition's (default
 * JSONPath). Done here when the validator is skipped, so that the built machine holds the same
 * object either way.
 */
function annotateQueryLanguage(definition: Record<string, any>): void {
  const queryLanguage = definition.QueryLanguage ?? 'JSONPath';
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) {
      value.forEach(visit);
    } else if (value !== null && typeof value === 'object') {
      for (const [key, child] of Object.entries(value)) {
        if (key === 'States' && child !== null && typeof child === 'object') {
          for (const state of Object.values(child)) {
            if (state !== null && typeof state === 'object' && !(state as any).QueryLanguage) {
              (state as any).QueryLanguage = queryLanguage;
            }
          }
        }
        visit(child);
      }
    }
  };
  visit(definition);
}

/**
 * `new StateMachine(definition, { validationOptions })`, with the validation skipped when this
 * exact definition (before the validator annotates it) has passed it before.
 */
export function buildStateMachine(definition: Record<string, any>, validationOptions: AslValidationOptions): StateMachine {
  const marker = validationRecordOf(definition, validationOptions);
  if (fs.existsSync(marker)) {
    annotateQueryLanguage(definition);
    return new StateMachine(definition as any, { validationOptions: { ...validationOptions, noValidate: true } });
  }
  // The validator the interpreter calls, with its schemas compiled once per process (asl-schema-cache.ts).
  withCompiledSchemas(VALIDATOR_DIR);
  const machine = new StateMachine(definition as any, { validationOptions: { ...validationOptions } });
  try {
    // Empty: its name is the record. Parallel writers write the same nothing.
    fs.writeFileSync(marker, '');
  } catch {
    // No record (e.g. a read-only temporary directory): the next build validates again.
  }
  return machine;
}
