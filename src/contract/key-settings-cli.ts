#!/usr/bin/env node
/**
 * `cdk-async-external-api-keys`: reads and writes one key's item in the key settings table (issue
 * 15; design docs/design/per-key-limits.md 2.2; runbook docs/operations.md, "Per-key limits").
 *
 *   npx cdk-async-external-api-keys --function <dispatcher> set acme --rps 20 --note "vendor ticket 123"
 *   npx cdk-async-external-api-keys --function <dispatcher> pause acme --note "account suspended"
 *
 * The table cannot check what is written, and the dispatcher falls back to a field's default when it
 * cannot be a limit (shared/key-settings.ts). So the CLI checks a write with the dispatcher's own
 * code before it makes it: `resolveKeyLimits` over the item as it will be, against the contract and
 * defaults read from the dispatcher's environment (`--function`: its KEY_LIMITS, the contract's
 * rate, jobs in flight and quotas, and the table's name, parsed by the dispatcher's `loadConfig` and
 * `parseKeyLimitsSpec`), and refuses a field the dispatcher would ignore or cap. `--table` alone
 * serves the commands that need no contract (get, pause, resume, reset, list).
 *
 * Exit status: 0 done; 1 refused (a value the dispatcher would not use, no such item, the item
 * changed meanwhile); 2 usage error or an AWS error.
 *
 * Bundled with its AWS SDK clients (esbuild, .projenrc.ts): the package's dependencies do not include
 * the SDK (it is a devDependency).
 */
import { type AttributeValue, ConditionalCheckFailedException, DeleteItemCommand, DynamoDBClient, GetItemCommand, PutItemCommand, ScanCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { GetFunctionConfigurationCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { loadConfig } from '../rate-controlled-queue-consumer/dispatch';
import { KEY_SETTINGS_TABLE_ENV, type KeyLimitsSpec } from '../shared/key-limits';
import { type KeySettingsContract, keySettingsContractOf, parseKeyLimitsSpec, resolveKeyLimits } from '../shared/key-settings';
import { requestKeyProblem } from '../shared/request-key';

const USAGE = `usage: cdk-async-external-api-keys (--function DISPATCHER | --table TABLE) [--json] COMMAND KEY [OPTIONS]
       cdk-async-external-api-keys (--function DISPATCHER | --table TABLE) [--json] list

  --function DISPATCHER  the orchestrator's dispatcher (orchestrator.consumer.function: name or ARN); the
                         table, the per-key defaults and the contract come from its environment
                         (lambda:GetFunctionConfiguration). Needed by set, and by get for the limits in force.
  --table TABLE          the key settings table (keySettingsTable), for get, pause, resume, reset, list.
Commands (one key each; the dispatchers use a change within 30 s, their cache):
  get KEY                the key's item, and with --function the limits the dispatcher derives from it
  set KEY [--rps N] [--max-jobs N] [--quota NAME=N ...] [--note TEXT]
                         writes those fields (the others stay); refused when the dispatcher would
                         ignore a value (not a positive number, a quota the contract does not have)
                         or cap it (above the contract). Raise a key only after the vendor did.
  pause KEY [--note TEXT]   sets paused: the key's requests are set aside until resume
  resume KEY             removes paused
  reset KEY              deletes the key's item: the key gets the deploy-time defaults
  list                   every key with an item (Scan: needs dynamodb:Scan)
AWS credentials and region as for the AWS CLI (AWS_PROFILE, AWS_REGION).
Exit status 0: done; 1: refused or not found; 2: usage or AWS error.`;

/** The SDK clients and surroundings the CLI uses (injected by tests). */
export interface KeysCliIo {
  readonly dynamodb: Pick<DynamoDBClient, 'send'>;
  readonly lambda: Pick<LambdaClient, 'send'>;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Epoch ms, for `updatedAt`. */
  readonly now: () => number;
}

/** What the dispatcher's environment says about keys. */
interface DispatcherKeySettings {
  readonly tableName: string;
  readonly defaults: KeyLimitsSpec;
  readonly contract: KeySettingsContract;
}

/** A refusal: exit status 1, the message said as is. */
class Refused extends Error {}

interface CliOptions {
  readonly functionName?: string;
  readonly tableName?: string;
  readonly json: boolean;
  readonly command: string;
  readonly key?: string;
  readonly rps?: number;
  readonly maxJobs?: number;
  readonly quotas: Record<string, number>;
  readonly note?: string;
  readonly help: boolean;
}

/** Runs the CLI on `argv` (without `node` and the script); resolves to the exit status. */
export async function runKeysCli(argv: readonly string[], io: KeysCliIo): Promise<number> {
  let options: CliOptions;
  try {
    options = parseArgs(argv);
  } catch (e) {
    io.err(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options.help) {
    io.out(USAGE);
    return 0;
  }
  try {
    const dispatcher = options.functionName ? await readDispatcher(options.functionName, io) : undefined;
    const tableName = options.tableName ?? dispatcher!.tableName;
    if (dispatcher && options.tableName && options.tableName !== dispatcher.tableName) {
      throw new Error(`--table ${options.tableName} is not the table the dispatcher reads (${dispatcher.tableName}): give one of --function and --table`);
    }
    await COMMANDS[options.command]({ options, dispatcher, tableName, io });
    return 0;
  } catch (e) {
    if (e instanceof Refused) {
      io.err(`cdk-async-external-api-keys: ${e.message}`);
      return 1;
    }
    io.err(`cdk-async-external-api-keys: ${(e as Error).message}`);
    return 2;
  }
}

interface CommandContext {
  readonly options: CliOptions;
  readonly dispatcher?: DispatcherKeySettings;
  readonly tableName: string;
  readonly io: KeysCliIo;
}

const COMMANDS: Record<string, (c: CommandContext) => Promise<void>> = {
  get: async ({ options, dispatcher, tableName, io }) => {
    const item = await getItem(io, tableName, options.key!);
    if (!item && !dispatcher) {
      throw new Refused(`no item for key '${options.key}' in ${tableName}: the key has the deploy-time defaults`);
    }
    const resolved = dispatcher ? resolveKeyLimits(item, dispatcher.defaults, dispatcher.contract) : undefined;
    const report = {
      key: options.key,
      item: item ? plain(item) : null,
      ...(resolved ? { limitsInForce: limitsOf(resolved.limits), invalid: resolved.invalid, capped: resolved.capped } : {}),
    };
    io.out(options.json ? JSON.stringify(report) : [
      `key ${options.key}: ${item ? JSON.stringify(report.item) : 'no item (the deploy-time defaults)'}`,
      ...(resolved ? [`limits in force: ${JSON.stringify(report.limitsInForce)}`] : []),
      ...(resolved && resolved.invalid.length > 0 ? [`invalid (the dispatcher uses their defaults): ${resolved.invalid.join(', ')}`] : []),
      ...(resolved && resolved.capped.length > 0 ? [`above the contract (capped): ${resolved.capped.join(', ')}`] : []),
    ].join('\n'));
  },

  set: async ({ options, dispatcher, tableName, io }) => {
    if (!dispatcher) {
      throw new Error('set needs --function (the dispatcher): the contract and the defaults in its environment are what the values are checked against');
    }
    const key = options.key!;
    const old = await getItem(io, tableName, key);
    const item: Record<string, AttributeValue> = { ...old, pk: { S: key } };
    if (options.rps !== undefined) {
      item.requestsPerSecond = { N: String(options.rps) };
    }
    if (options.maxJobs !== undefined) {
      item.maxJobsInFlight = { N: String(options.maxJobs) };
    }
    if (Object.keys(options.quotas).length > 0) {
      // A quota named here replaces only that quota's override; the others stay.
      const quotas = old?.quotas?.M ?? {};
      item.quotas = { M: { ...quotas, ...Object.fromEntries(Object.entries(options.quotas).map(([name, n]) => [name, { N: String(n) }])) } };
    }
    item.updatedAt = { S: new Date(io.now()).toISOString() };
    if (options.note !== undefined) {
      item.note = { S: options.note };
    }
    // The dispatcher's own check, over the item as it will be (fields already there included).
    const resolved = resolveKeyLimits(item, dispatcher.defaults, dispatcher.contract);
    const problems = [
      ...resolved.invalid.map((field) => `${field} ${shown(fieldValue(item, field))} cannot be a limit${hint(field, dispatcher.contract)}: the dispatcher would use the default`),
      ...resolved.capped.map((field) => `${field} ${shown(fieldValue(item, field))} is above the contract's ${ceilingOf(field, dispatcher.contract)} for all keys together: the dispatcher would cap it`),
    ];
    if (problems.length > 0) {
      throw new Refused(`not written, key '${key}': ${problems.join('; ')}`);
    }
    await putIfUnchanged(io, tableName, item, old);
    io.out(options.json ? JSON.stringify({ key, item: plain(item), limitsInForce: limitsOf(resolved.limits) })
      : `key ${key}: written; limits in force within 30 s: ${JSON.stringify(limitsOf(resolved.limits))}`);
  },

  pause: async ({ options, tableName, io }) => {
    await io.dynamodb.send(new UpdateItemCommand({
      TableName: tableName,
      Key: { pk: { S: options.key! } },
      UpdateExpression: `SET paused = :p, updatedAt = :u${options.note !== undefined ? ', note = :n' : ''}`,
      ExpressionAttributeValues: {
        ':p': { BOOL: true },
        ':u': { S: new Date(io.now()).toISOString() },
        ...(options.note !== undefined ? { ':n': { S: options.note } } : {}),
      },
    }));
    io.out(options.json ? JSON.stringify({ key: options.key, paused: true })
      : `key ${options.key}: paused; within 30 s its requests are set aside (no attempt spent) until resume. Its workflows' callbackTimeout keeps running.`);
  },

  resume: async ({ options, tableName, io }) => {
    try {
      await io.dynamodb.send(new UpdateItemCommand({
        TableName: tableName,
        Key: { pk: { S: options.key! } },
        UpdateExpression: 'REMOVE paused SET updatedAt = :u',
        // No item: the key was not paused; do not create one.
        ConditionExpression: 'attribute_exists(pk)',
        ExpressionAttributeValues: { ':u': { S: new Date(io.now()).toISOString() } },
      }));
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException) {
        throw new Refused(`no item for key '${options.key}' in ${tableName}: the key is not paused`);
      }
      throw e;
    }
    io.out(options.json ? JSON.stringify({ key: options.key, paused: false })
      : `key ${options.key}: resumed; its set-aside requests return on their own (at most 15 minutes).`);
  },

  reset: async ({ options, tableName, io }) => {
    const output = await io.dynamodb.send(new DeleteItemCommand({ TableName: tableName, Key: { pk: { S: options.key! } }, ReturnValues: 'ALL_OLD' }));
    if (!output.Attributes) {
      throw new Refused(`no item for key '${options.key}' in ${tableName}: the key already has the deploy-time defaults`);
    }
    io.out(options.json ? JSON.stringify({ key: options.key, deleted: plain(output.Attributes) })
      : `key ${options.key}: item deleted (was ${JSON.stringify(plain(output.Attributes))}); the deploy-time defaults within 30 s`);
  },

  list: async ({ options, tableName, io }) => {
    const items: Record<string, unknown>[] = [];
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await io.dynamodb.send(new ScanCommand({ TableName: tableName, ...(start ? { ExclusiveStartKey: start } : {}) }));
      items.push(...(page.Items ?? []).map(plain));
      start = page.LastEvaluatedKey;
    } while (start);
    items.sort((a, b) => String(a.pk).localeCompare(String(b.pk)));
    io.out(options.json ? JSON.stringify(items) : items.length === 0 ? `no key has an item in ${tableName}: every key has the deploy-time defaults`
      : items.map((item) => { const { pk, ...fields } = item; return `${pk} ${JSON.stringify(fields)}`; }).join('\n'));
  },
};

/** The key settings the dispatcher's environment holds, parsed by the dispatcher's own code. */
async function readDispatcher(functionName: string, io: KeysCliIo): Promise<DispatcherKeySettings> {
  const output = await io.lambda.send(new GetFunctionConfigurationCommand({ FunctionName: functionName }));
  const env = output.Environment?.Variables ?? {};
  const defaults = parseKeyLimitsSpec(env);
  const tableName = env[KEY_SETTINGS_TABLE_ENV];
  if (!defaults || !tableName) {
    throw new Error(`${functionName} has no per-key limits in its environment (KEY_LIMITS, ${KEY_SETTINGS_TABLE_ENV}): give the orchestrator's dispatcher `
      + '(orchestrator.consumer.function) of a contract with perKey');
  }
  return { tableName, defaults, contract: keySettingsContractOf(loadConfig(env)) };
}

async function getItem(io: KeysCliIo, tableName: string, key: string): Promise<Record<string, AttributeValue> | undefined> {
  const output = await io.dynamodb.send(new GetItemCommand({ TableName: tableName, Key: { pk: { S: key } }, ConsistentRead: true }));
  return output.Item;
}

/** Writes `item` unless another write changed the key's item since it was read (then: run again). */
async function putIfUnchanged(
  io: KeysCliIo, tableName: string, item: Record<string, AttributeValue>, old: Record<string, AttributeValue> | undefined,
): Promise<void> {
  const condition = !old ? { ConditionExpression: 'attribute_not_exists(pk)' }
    : old.updatedAt ? { ConditionExpression: 'updatedAt = :old', ExpressionAttributeValues: { ':old': old.updatedAt } }
      : { ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(updatedAt)' };
  try {
    await io.dynamodb.send(new PutItemCommand({ TableName: tableName, Item: item, ...condition }));
  } catch (e) {
    if (e instanceof ConditionalCheckFailedException) {
      throw new Refused(`not written, key '${item.pk.S}': its item changed since it was read; run the command again`);
    }
    throw e;
  }
}

/** An item as plain JSON (the few attribute types the table holds). */
function plain(item: Record<string, AttributeValue>): Record<string, unknown> {
  const value = (v: AttributeValue): unknown => (v.S !== undefined ? v.S : v.N !== undefined ? Number(v.N) : v.BOOL !== undefined ? v.BOOL
    : v.M !== undefined ? plain(v.M) : v.NULL ? null : v);
  return Object.fromEntries(Object.entries(item).map(([name, v]) => [name, value(v)]));
}

/** The limits as an operator reads them (without the priority aging, which no item changes). */
function limitsOf(limits: KeyLimitsSpec): Record<string, unknown> {
  return {
    requestsPerSecond: limits.requestsPerSecond,
    ...(limits.maxJobsInFlight !== undefined ? { maxJobsInFlight: limits.maxJobsInFlight } : {}),
    quotas: limits.quotas,
    paused: limits.paused,
  };
}

function fieldValue(item: Record<string, AttributeValue>, field: string): AttributeValue | undefined {
  return field.startsWith('quotas.') ? item.quotas?.M?.[field.slice('quotas.'.length)] : item[field];
}

function shown(value: AttributeValue | undefined): string {
  return value === undefined ? '' : JSON.stringify(plain({ v: value }).v);
}

function ceilingOf(field: string, contract: KeySettingsContract): number | undefined {
  return field === 'requestsPerSecond' ? contract.requestsPerSecond
    : field === 'maxJobsInFlight' ? contract.maxJobsInFlight
      : contract.quotas[field.slice('quotas.'.length)];
}

/** Why a field cannot be a limit, beyond "not a positive number". */
function hint(field: string, contract: KeySettingsContract): string {
  if (field === 'maxJobsInFlight' && contract.maxJobsInFlight === undefined) {
    return ' (the contract has no maxJobsInFlight)';
  }
  if (field.startsWith('quotas.') && contract.quotas[field.slice('quotas.'.length)] === undefined) {
    const names = Object.keys(contract.quotas);
    return ` (the contract has ${names.length > 0 ? `the quotas ${names.join(', ')}` : 'no quota'})`;
  }
  return field === 'requestsPerSecond' ? ' (a number above 0)' : ' (a whole number above 0)';
}

function parseArgs(argv: readonly string[]): CliOptions {
  let functionName: string | undefined;
  let tableName: string | undefined;
  let json = false;
  let help = false;
  let rps: number | undefined;
  let maxJobs: number | undefined;
  let note: string | undefined;
  const quotas: Record<string, number> = {};
  const positional: string[] = [];
  const value = (flag: string, v: string | undefined): string => {
    if (v === undefined || v.trim() === '') {
      throw new Error(`${flag} needs a value`);
    }
    return v;
  };
  // A number as the item will hold it; whether it can be a limit is the dispatcher's check (set).
  const number = (flag: string, v: string | undefined): number => {
    const n = Number(value(flag, v));
    if (!Number.isFinite(n)) {
      throw new Error(`${flag} needs a number (given '${v}')`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    switch (arg) {
      case '--function': functionName = value(arg, argv[++i]); break;
      case '--table': tableName = value(arg, argv[++i]); break;
      case '--json': json = true; break;
      case '--rps': rps = number(arg, argv[++i]); break;
      case '--max-jobs': maxJobs = number(arg, argv[++i]); break;
      case '--note': note = value(arg, argv[++i]); break;
      case '--quota': {
        const spec = value(arg, argv[++i]);
        const match = /^([^=]+)=(.+)$/.exec(spec);
        if (!match) {
          throw new Error(`--quota needs NAME=N, the contract's quota name and the key's limit per period (given '${spec}')`);
        }
        quotas[match[1]] = number(`--quota ${match[1]}`, match[2]);
        break;
      }
      case '-h':
      case '--help': help = true; break;
      default:
        if (arg.startsWith('--')) {
          throw new Error(`unknown option ${arg}`);
        }
        positional.push(arg);
    }
  }
  const [command, key, ...rest] = positional;
  if (help) {
    return { json, command: command ?? '', quotas, help };
  }
  if (!command || !Object.prototype.hasOwnProperty.call(COMMANDS, command)) {
    throw new Error(command ? `unknown command ${command}` : 'give a command');
  }
  if (functionName === undefined && tableName === undefined) {
    throw new Error('give --function (the dispatcher) or --table (the key settings table)');
  }
  if (command === 'list' ? key !== undefined : rest.length > 0) {
    throw new Error(`${command} takes ${command === 'list' ? 'no key' : 'one key'} (given ${positional.slice(1).join(' ')})`);
  }
  if (command !== 'list') {
    const problem = key === undefined ? 'give the key' : requestKeyProblem(key);
    if (problem) {
      throw new Error(`${command}: ${problem}`);
    }
  }
  const limits = rps !== undefined || maxJobs !== undefined || Object.keys(quotas).length > 0;
  if (command === 'set' && !limits) {
    throw new Error('set needs --rps, --max-jobs or --quota NAME=N (pause, resume and reset change the rest)');
  }
  if (command !== 'set' && limits) {
    throw new Error(`--rps, --max-jobs and --quota go with set, not ${command}`);
  }
  if (note !== undefined && command !== 'set' && command !== 'pause') {
    throw new Error(`--note goes with set or pause, not ${command}`);
  }
  return { functionName, tableName, json, command, key, rps, maxJobs, quotas, note, help };
}

if (require.main === module) {
  void runKeysCli(process.argv.slice(2), {
    dynamodb: new DynamoDBClient({}),
    lambda: new LambdaClient({}),
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    now: () => Date.now(),
  }).then((status) => { process.exitCode = status; });
}
