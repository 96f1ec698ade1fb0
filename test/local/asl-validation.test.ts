/**
 * local/aws/asl-validation.ts: a state machine definition is validated once (asl-validator compiles
 * its schemas on every call, about a second) and later builds of the same definition, also with
 * other loopback ports, skip the validator; a definition that fails is never recorded.
 */
import * as fs from 'fs';
import { buildStateMachine, validationRecordOf } from '../../local/aws/asl-validation';

const OPTIONS = { checkArn: true, checkPaths: true };
/** Unique to this run (a Comment in every definition): no record of an earlier run applies. */
const nonce = `asl-validation.test ${process.pid} ${Date.now()} ${Math.random()}`;
const written: string[] = [];

afterAll(() => {
  for (const record of written) fs.rmSync(record, { force: true });
});

/** Whether the definition is recorded as validated with the options (and remembered for cleanup). */
function recorded(def: object, options = OPTIONS): boolean {
  const record = validationRecordOf(def, options);
  written.push(record);
  return fs.existsSync(record);
}

/** A Pass state that echoes a queue URL on a loopback port, and a nested Parallel branch. */
function definition(port: number, variant = ''): Record<string, any> {
  return {
    Comment: `${nonce} ${variant}`,
    StartAt: 'Echo',
    States: {
      Echo: { Type: 'Pass', Parameters: { 'queueUrl': `http://127.0.0.1:${port}/000000000000/Queue`, 'input.$': '$' }, Next: 'Both' },
      Both: {
        Type: 'Parallel',
        Branches: [{ StartAt: 'Inner', States: { Inner: { Type: 'Pass', End: true } } }],
        ResultPath: '$.branches',
        End: true,
      },
    },
  };
}

const invalid = (variant: string) => ({ Comment: `${nonce} ${variant}`, StartAt: 'Missing', States: { Echo: { Type: 'Pass', End: true } } });

test('a definition that passed is recorded once; the same definition on other loopback ports reuses the record and runs', async () => {
  expect(recorded(definition(34025))).toBe(false);
  buildStateMachine(definition(34025), OPTIONS);
  expect(recorded(definition(34025))).toBe(true);
  expect(validationRecordOf(definition(46745), OPTIONS)).toBe(validationRecordOf(definition(34025), OPTIONS));
  const again = buildStateMachine(definition(46745), OPTIONS);
  const { result } = again.run({ orderId: 'o-1' });
  expect(await result).toEqual({
    queueUrl: 'http://127.0.0.1:46745/000000000000/Queue', input: { orderId: 'o-1' }, branches: [{ queueUrl: 'http://127.0.0.1:46745/000000000000/Queue', input: { orderId: 'o-1' } }],
  });
  // Other validation options are another record.
  const lenient = { checkArn: false, checkPaths: false };
  expect(recorded(definition(34025), lenient)).toBe(false);
  buildStateMachine(definition(34025), lenient);
  expect(recorded(definition(34025), lenient)).toBe(true);
});

test('a definition that fails validation throws the validator\'s error every time and is never recorded', () => {
  expect(() => buildStateMachine(invalid('fails'), OPTIONS)).toThrow(/State machine definition is invalid/);
  expect(recorded(invalid('fails'))).toBe(false);
  expect(() => buildStateMachine(invalid('fails'), OPTIONS)).toThrow(/State machine definition is invalid/);
  expect(recorded(invalid('fails'))).toBe(false);
});

test('a recorded definition is built without the validator (a record planted for an invalid one lets it through)', () => {
  expect(recorded(invalid('planted'))).toBe(false);
  fs.writeFileSync(validationRecordOf(invalid('planted'), OPTIONS), '');
  expect(() => buildStateMachine(invalid('planted'), OPTIONS)).not.toThrow();
});

test('without the validator, the definition is annotated as the validator annotates it (QueryLanguage on every state, nested too)', () => {
  const validated = definition(1, 'annotated');
  expect(recorded(validated)).toBe(false);
  buildStateMachine(validated, OPTIONS);
  const skipped = definition(1, 'annotated');
  expect(recorded(skipped)).toBe(true);
  buildStateMachine(skipped, OPTIONS);
  expect(skipped).toEqual(validated);
  expect(validated.States.Both.Branches[0].States.Inner.QueryLanguage).toBe('JSONPath');
});
