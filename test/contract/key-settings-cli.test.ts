/**
 * `cdk-async-external-api-keys` (issue 15, design 2.2): one key's item in the key settings table,
 * checked with the dispatcher's own code against the contract and defaults in the dispatcher's
 * environment, here the environment the construct really synthesizes. One test per branch, with
 * aws-sdk-client-mock.
 */
import {
  ConditionalCheckFailedException, DeleteItemCommand, DynamoDBClient, GetItemCommand, PutItemCommand, ScanCommand, UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { GetFunctionConfigurationCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { mockClient } from 'aws-sdk-client-mock';
import { AsyncExternalApiOrchestrator, KeyLimits, VendorContract, VendorQuota } from '../../src';
import { runKeysCli } from '../../src/contract/key-settings-cli';
import { logicalIdOf, testStack } from '../util';

const TABLE = 'KeySettingsTable-1';
const NOW = Date.UTC(2026, 11, 7, 16, 0, 0);

/** The dispatcher's environment as the construct writes it (references replaced by names), with the table's name. */
function dispatcherEnvironment(): Record<string, string> {
  const stack = testStack();
  const o = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    callbackTimeout: Duration.minutes(30),
    contract: VendorContract.of({
      requestsPerSecond: 100,
      maxJobsInFlight: 500,
      quotas: [VendorQuota.perDay(1_000_000)],
      perKey: KeyLimits.of({ requestsPerSecond: 5, maxJobsInFlight: 20, quotas: [VendorQuota.perDay(50_000)] }),
    }),
  });
  const env = Template.fromStack(stack).toJSON().Resources[logicalIdOf(stack, o.consumer.function)].Properties.Environment.Variables;
  return Object.fromEntries(Object.entries(env as Record<string, unknown>).map(([name, value]) =>
    [name, name === 'KEY_SETTINGS_TABLE_NAME' ? TABLE : typeof value === 'string' ? value : `resolved-${name}`]));
}
const ENV = dispatcherEnvironment();
const QUOTA = JSON.parse(ENV.QUOTAS)[0].name as string;

const ddb = mockClient(DynamoDBClient);
const lambda = mockClient(LambdaClient);

async function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const status = await runKeysCli(argv, {
    dynamodb: new DynamoDBClient({}),
    lambda: new LambdaClient({}),
    out: (text) => out.push(text),
    err: (text) => err.push(text),
    now: () => NOW,
  });
  return { status, out: out.join('\n'), err: err.join('\n') };
}
const written = () => ddb.commandCalls(PutItemCommand).map((c) => c.args[0].input);

beforeEach(() => {
  ddb.reset();
  lambda.reset();
  lambda.on(GetFunctionConfigurationCommand, { FunctionName: 'dispatcher' }).resolves({ Environment: { Variables: ENV } });
  ddb.on(GetItemCommand).resolves({});
});

describe('set', () => {
  test('GIVEN a key without an item WHEN its rate and a quota are set THEN the item is created (only if still absent) and the limits in force are shown', async () => {
    const { status, out } = await run('--function', 'dispatcher', 'set', 'acme', '--rps', '20', '--quota', `${QUOTA}=200000`, '--note', 'vendor ticket 123');
    expect(status).toBe(0);
    expect(ddb.commandCalls(GetItemCommand)[0].args[0].input).toEqual({ TableName: TABLE, Key: { pk: { S: 'acme' } }, ConsistentRead: true });
    expect(written()).toEqual([{
      TableName: TABLE,
      Item: {
        pk: { S: 'acme' },
        requestsPerSecond: { N: '20' },
        quotas: { M: { [QUOTA]: { N: '200000' } } },
        updatedAt: { S: '2026-12-07T16:00:00.000Z' },
        note: { S: 'vendor ticket 123' },
      },
      ConditionExpression: 'attribute_not_exists(pk)',
    }]);
    expect(out).toContain(`"requestsPerSecond":20,"maxJobsInFlight":20,"quotas":{"${QUOTA}":200000},"paused":false`);
  });

  test('GIVEN an item WHEN one field is set THEN the others stay, quotas merge, and the write is conditioned on the item read (updatedAt)', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'acme' }, paused: { BOOL: true }, quotas: { M: { [QUOTA]: { N: '100' } } }, updatedAt: { S: 'T1' } } });
    const { status } = await run('--function', 'dispatcher', 'set', 'acme', '--max-jobs', '50');
    expect(status).toBe(0);
    expect(written()[0]).toMatchObject({
      Item: { pk: { S: 'acme' }, paused: { BOOL: true }, quotas: { M: { [QUOTA]: { N: '100' } } }, maxJobsInFlight: { N: '50' } },
      ConditionExpression: 'updatedAt = :old',
      ExpressionAttributeValues: { ':old': { S: 'T1' } },
    });
  });

  test('GIVEN an item written by hand without updatedAt THEN the write is conditioned on it still having none', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'acme' }, requestsPerSecond: { N: '3' } } });
    expect((await run('--function', 'dispatcher', 'set', 'acme', '--rps', '4')).status).toBe(0);
    expect(written()[0].ConditionExpression).toBe('attribute_exists(pk) AND attribute_not_exists(updatedAt)');
  });

  test.each([
    [['--rps', '150'], /requestsPerSecond 150 is above the contract's 100 for all keys together: the dispatcher would cap it/],
    [['--rps', '0'], /requestsPerSecond 0 cannot be a limit \(a number above 0\): the dispatcher would use the default/],
    [['--max-jobs', '2.5'], /maxJobsInFlight 2.5 cannot be a limit \(a whole number above 0\)/],
    [['--max-jobs', '501'], /maxJobsInFlight 501 is above the contract's 500/],
    [['--quota', 'monthly=10'], new RegExp(`quotas.monthly 10 cannot be a limit \\(the contract has the quotas ${QUOTA}\\)`)],
  ])('GIVEN %j THEN nothing is written: the dispatcher would not use it as written (exit 1, saying why)', async (args, message) => {
    const { status, err } = await run('--function', 'dispatcher', 'set', 'acme', ...args);
    expect(status).toBe(1);
    expect(err).toMatch(/not written, key 'acme'/);
    expect(err).toMatch(message);
    expect(written()).toEqual([]);
  });

  test('GIVEN an item with an invalid field already WHEN another field is set THEN refused, naming it (set it too to fix it)', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'acme' }, requestsPerSecond: { S: 'fast' } } });
    const refused = await run('--function', 'dispatcher', 'set', 'acme', '--max-jobs', '10');
    expect(refused.status).toBe(1);
    expect(refused.err).toMatch(/requestsPerSecond "fast" cannot be a limit/);
    expect((await run('--function', 'dispatcher', 'set', 'acme', '--max-jobs', '10', '--rps', '2')).status).toBe(0);
  });

  test('GIVEN a contract without maxJobsInFlight THEN a key\'s --max-jobs is refused, saying so', async () => {
    const env = { ...ENV };
    delete env.MAX_JOBS_IN_FLIGHT;
    lambda.on(GetFunctionConfigurationCommand).resolves({ Environment: { Variables: env } });
    const { status, err } = await run('--function', 'dispatcher', 'set', 'acme', '--max-jobs', '10');
    expect(status).toBe(1);
    expect(err).toMatch(/maxJobsInFlight 10 cannot be a limit \(the contract has no maxJobsInFlight\)/);
  });

  test('GIVEN another write since the read THEN not written, run again (exit 1)', async () => {
    ddb.on(PutItemCommand).rejects(new ConditionalCheckFailedException({ message: 'failed', $metadata: {} }));
    const { status, err } = await run('--function', 'dispatcher', 'set', 'acme', '--rps', '20');
    expect(status).toBe(1);
    expect(err).toMatch(/its item changed since it was read; run the command again/);
  });

  test('GIVEN only --table THEN set is refused: the contract is needed to check the values', async () => {
    const { status, err } = await run('--table', TABLE, 'set', 'acme', '--rps', '20');
    expect(status).toBe(2);
    expect(err).toMatch(/set needs --function/);
  });
});

describe('get, pause, resume, reset, list', () => {
  test('get with --function: the item, the limits the dispatcher derives from it, and its invalid fields', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'acme' }, requestsPerSecond: { N: '10' }, paused: { S: 'yes' } } });
    const { status, out } = await run('--function', 'dispatcher', '--json', 'get', 'acme');
    expect(status).toBe(0);
    expect(JSON.parse(out)).toEqual({
      key: 'acme',
      item: { pk: 'acme', requestsPerSecond: 10, paused: 'yes' },
      limitsInForce: { requestsPerSecond: 10, maxJobsInFlight: 20, quotas: { [QUOTA]: 50_000 }, paused: false },
      invalid: ['paused'],
      capped: [],
    });
  });

  test('get with --table: the raw item; no item is exit 1 (the defaults)', async () => {
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'acme' }, paused: { BOOL: true } } });
    expect((await run('--table', TABLE, 'get', 'acme')).out).toBe('key acme: {"pk":"acme","paused":true}');
    ddb.on(GetItemCommand).resolves({});
    const none = await run('--table', TABLE, 'get', 'acme');
    expect(none.status).toBe(1);
    expect(none.err).toMatch(/no item for key 'acme' in KeySettingsTable-1: the key has the deploy-time defaults/);
  });

  test('pause sets paused (with a note); resume removes it, only from an existing item', async () => {
    expect((await run('--table', TABLE, 'pause', 'acme', '--note', 'account suspended')).status).toBe(0);
    expect((await run('--table', TABLE, 'resume', 'acme')).status).toBe(0);
    const [pause, resume] = ddb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input);
    expect(pause).toEqual({
      TableName: TABLE,
      Key: { pk: { S: 'acme' } },
      UpdateExpression: 'SET paused = :p, updatedAt = :u, note = :n',
      ExpressionAttributeValues: { ':p': { BOOL: true }, ':u': { S: '2026-12-07T16:00:00.000Z' }, ':n': { S: 'account suspended' } },
    });
    expect(resume).toMatchObject({ UpdateExpression: 'REMOVE paused SET updatedAt = :u', ConditionExpression: 'attribute_exists(pk)' });
    ddb.on(UpdateItemCommand).rejects(new ConditionalCheckFailedException({ message: 'failed', $metadata: {} }));
    const none = await run('--table', TABLE, 'resume', 'acme');
    expect(none.status).toBe(1);
    expect(none.err).toMatch(/no item for key 'acme'.*the key is not paused/);
  });

  test('reset deletes the item (back to the defaults); no item is exit 1', async () => {
    ddb.on(DeleteItemCommand).resolves({ Attributes: { pk: { S: 'acme' }, requestsPerSecond: { N: '20' } } });
    const done = await run('--function', 'dispatcher', 'reset', 'acme');
    expect(done.status).toBe(0);
    expect(ddb.commandCalls(DeleteItemCommand)[0].args[0].input).toEqual({ TableName: TABLE, Key: { pk: { S: 'acme' } }, ReturnValues: 'ALL_OLD' });
    expect(done.out).toMatch(/item deleted \(was \{"pk":"acme","requestsPerSecond":20\}\)/);
    ddb.on(DeleteItemCommand).resolves({});
    expect((await run('--table', TABLE, 'reset', 'acme')).status).toBe(1);
  });

  test('list reads every page and sorts by key', async () => {
    ddb.on(ScanCommand)
      .resolvesOnce({ Items: [{ pk: { S: 'globex' }, paused: { BOOL: true } }], LastEvaluatedKey: { pk: { S: 'globex' } } })
      .resolvesOnce({ Items: [{ pk: { S: 'acme' }, requestsPerSecond: { N: '20' } }] });
    const { status, out } = await run('--table', TABLE, 'list');
    expect(status).toBe(0);
    expect(out).toBe('acme {"requestsPerSecond":20}\nglobex {"paused":true}');
    expect(ddb.commandCalls(ScanCommand)[1].args[0].input.ExclusiveStartKey).toEqual({ pk: { S: 'globex' } });
    ddb.on(ScanCommand).resolves({ Items: [] });
    expect((await run('--table', TABLE, 'list')).out).toMatch(/no key has an item/);
  });
});

describe('usage and surroundings', () => {
  test.each([
    [[], /give a command/],
    [['--table', TABLE, 'raise', 'acme'], /unknown command raise/],
    [['--table', TABLE, 'constructor', 'acme'], /unknown command constructor/],
    [['get', 'acme'], /give --function \(the dispatcher\) or --table/],
    [['--table', TABLE, 'get', 'ac me'], /get: the key must be 1 to 128 characters/],
    [['--table', TABLE, 'get'], /get: give the key/],
    [['--table', TABLE, 'list', 'acme'], /list takes no key/],
    [['--function', 'dispatcher', 'set', 'acme'], /set needs --rps, --max-jobs or --quota/],
    [['--table', TABLE, 'pause', 'acme', '--rps', '2'], /--rps, --max-jobs and --quota go with set, not pause/],
    [['--table', TABLE, 'reset', 'acme', '--note', 'x'], /--note goes with set or pause, not reset/],
    [['--function', 'dispatcher', 'set', 'acme', '--quota', 'daily'], /--quota needs NAME=N/],
    [['--function', 'dispatcher', 'set', 'acme', '--rps', 'fast'], /--rps needs a number/],
    [['--frobnicate'], /unknown option --frobnicate/],
  ])('%j is a usage error (exit 2, with the usage)', async (argv, message) => {
    const { status, err } = await run(...argv);
    expect(status).toBe(2);
    expect(err).toMatch(message);
    expect(err).toContain('usage: cdk-async-external-api-keys');
    expect(ddb.calls()).toHaveLength(0);
  });

  test('--help prints the usage (exit 0)', async () => {
    const { status, out } = await run('--help');
    expect(status).toBe(0);
    expect(out).toContain('set KEY [--rps N]');
  });

  test('GIVEN a function without per-key limits THEN exit 2, saying which function to give', async () => {
    // What the construct writes without perKey: neither variable.
    const withoutPerKey = { ...ENV };
    delete withoutPerKey.KEY_LIMITS;
    delete withoutPerKey.KEY_SETTINGS_TABLE_NAME;
    lambda.on(GetFunctionConfigurationCommand).resolves({ Environment: { Variables: withoutPerKey } });
    const { status, err } = await run('--function', 'other', 'get', 'acme');
    expect(status).toBe(2);
    expect(err).toMatch(/other has no per-key limits in its environment.*orchestrator.consumer.function/);
  });

  test('GIVEN --table other than the dispatcher\'s THEN exit 2; an AWS error is exit 2 with its message', async () => {
    expect((await run('--function', 'dispatcher', '--table', 'Other', 'get', 'acme')).err).toMatch(/--table Other is not the table the dispatcher reads \(KeySettingsTable-1\)/);
    ddb.on(GetItemCommand).rejects(new Error('AccessDeniedException: not authorized'));
    const denied = await run('--table', TABLE, 'get', 'acme');
    expect(denied.status).toBe(2);
    expect(denied.err).toMatch(/AccessDeniedException: not authorized/);
  });
});
