/**
 * `npm run cost -- --rps N`: the cost per million requests of the example stack by AWS service, at
 * public list prices, derived from the synthesized template, next to the published pattern and a
 * Standard workflow with an HTTP Task. See docs/cost.md.
 *
 *   ts-node --transpile-only --project local/tsconfig.json cost/cost.ts --rps 10 [--json]
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { comparisons } from './comparisons';
import { contractRpsOf, DEFAULT_DERIVE_OPTIONS, DeriveOptions, deriveStack, loadStack } from './derive';
import { priceDesign } from './model';
import { DEFAULT_KEYS } from './per-key-credentials';
import { perKeyFigures } from './per-key-limits';
import { knownRegions, pricesFor, UnknownRegionError } from './prices';
import { CostResult, markdownReport, summary, textReport } from './report';

/** Where the report goes; tests capture it. */
export interface CostIo {
  out(text: string): void;
  err(text: string): void;
}

const PROCESS_IO: CostIo = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
};

/** Parsed command line. */
export interface CostArgs {
  readonly rps?: number;
  readonly trafficRps?: number;
  readonly region: string;
  readonly vendorLatencyMs: number;
  readonly payloadBytes: number;
  readonly callbackBytes: number;
  readonly taskTokenBytes: number;
  /** Request keys with a secret each (per-key credentials). */
  readonly keys?: number;
  /** Synthesize the example with this jobs-in-flight limit (and its waiting queue). */
  readonly maxJobsInFlight?: number;
  /** Synthesize the example with per-key limits of this many requests per second per key. */
  readonly perKeyRps?: number;
  /** ... and this per-key jobs-in-flight limit (needs maxJobsInFlight). */
  readonly perKeyMaxJobsInFlight?: number;
  /** Calls per second of each active key (per-key limits; default the per-key limit). */
  readonly keyCallRps?: number;
  readonly json: boolean;
  readonly markdown: boolean;
  readonly assembly?: string;
  readonly stack?: string;
  readonly help: boolean;
}

export const DEFAULT_RPS = 10;

export const USAGE = `Usage: npm run cost -- [--rps N] [options]

Prints the cost per million requests, by AWS service, of the example stack synthesized with a
contract of N requests per second, at public list prices, next to the published pattern and a
Standard workflow with an HTTP Task.

  --rps N                 contract the example app is synthesized with (default ${DEFAULT_RPS}); also the traffic
  --traffic-rps M         requests per second sustained around the clock (default: the contract)
  --region R              price table (default us-east-1; known: ${knownRegions().join(', ')})
  --vendor-latency-ms MS  the vendor's answer time to a job submission (default ${DEFAULT_DERIVE_OPTIONS.vendorLatencyMs})
  --payload-bytes B       request payload size (default ${DEFAULT_DERIVE_OPTIONS.payloadBytes})
  --callback-bytes B      vendor callback body size (default ${DEFAULT_DERIVE_OPTIONS.callbackBytes})
  --task-token-bytes B    Step Functions task token length (default ${DEFAULT_DERIVE_OPTIONS.taskTokenBytes})
  --keys N                request keys with a secret each, for per-key credentials (fromSecretHeaderPerKey;
                          default ${DEFAULT_KEYS}): N secrets a month, GetSecretValue per key per cache TTL per environment
  --max-jobs-in-flight N  synthesize the example with maxJobsInFlight N in its contract: prices the job places,
                          the waiting queue's moves per wait and the sweep (not with --assembly)
  --per-key-rps R         synthesize the example with per-key limits, R requests per second per key (KeyLimits;
                          every request then carries its customer as its key): prices what they add per call,
                          per set-aside, per active and per idle key (not with --assembly: read from the template)
  --per-key-max-jobs-in-flight N
                          ... and N jobs in flight per key (with --per-key-rps and --max-jobs-in-flight)
  --key-call-rps X        with per-key limits: calls per second of each active key, so traffic / X active keys
                          (default: the per-key limit); decides how many distinct keys a batch holds
  --assembly DIR          cost an already synthesized cloud assembly instead of the example (with --stack;
                          the contract is read from the template, give the traffic with --traffic-rps)
  --stack NAME            the stack in --assembly
  --json                  also print the summary as JSON on the last line
  --markdown              print the Markdown tables of docs/cost.md instead of the text report
  --help                  this text`;

/** Thrown for a command line that cannot run; the message says why. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function parseArgs(argv: string[]): CostArgs {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const valued = ['--rps', '--traffic-rps', '--region', '--vendor-latency-ms', '--payload-bytes', '--callback-bytes', '--task-token-bytes', '--keys', '--max-jobs-in-flight',
    '--per-key-rps', '--per-key-max-jobs-in-flight', '--key-call-rps', '--assembly', '--stack'];
  const switches = ['--json', '--markdown', '--help', '-h'];
  for (let i = 0; i < argv.length; i++) {
    const [name, inline] = argv[i].includes('=') ? [argv[i].slice(0, argv[i].indexOf('=')), argv[i].slice(argv[i].indexOf('=') + 1)] : [argv[i], undefined];
    if (switches.includes(name)) {
      flags.add(name === '-h' ? '--help' : name);
    } else if (valued.includes(name)) {
      const value = inline ?? argv[++i];
      if (value === undefined || value.startsWith('--')) {
        throw new UsageError(`${name} needs a value`);
      }
      values.set(name, value);
    } else {
      throw new UsageError(`unknown option ${argv[i]}`);
    }
  }
  const num = (name: string, min: number, fallback?: number): number | undefined => {
    const raw = values.get(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min || (min === 0 && name.endsWith('rps') && value === 0)) {
      throw new UsageError(`${name} must be a number ${name.endsWith('rps') ? 'greater than 0' : `>= ${min}`}, got '${raw}'`);
    }
    return value;
  };
  const whole = (name: string): number | undefined => {
    const raw = values.get(name);
    if (raw === undefined) return undefined;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 1) {
      throw new UsageError(`${name} must be a whole number >= 1, got '${raw}'`);
    }
    return value;
  };
  const args: CostArgs = {
    rps: num('--rps', 0),
    trafficRps: num('--traffic-rps', 0),
    region: values.get('--region') ?? 'us-east-1',
    vendorLatencyMs: num('--vendor-latency-ms', 0, DEFAULT_DERIVE_OPTIONS.vendorLatencyMs)!,
    payloadBytes: num('--payload-bytes', 0, DEFAULT_DERIVE_OPTIONS.payloadBytes)!,
    callbackBytes: num('--callback-bytes', 0, DEFAULT_DERIVE_OPTIONS.callbackBytes)!,
    taskTokenBytes: num('--task-token-bytes', 0, DEFAULT_DERIVE_OPTIONS.taskTokenBytes)!,
    keys: whole('--keys'),
    maxJobsInFlight: whole('--max-jobs-in-flight'),
    perKeyRps: num('--per-key-rps', 0),
    perKeyMaxJobsInFlight: whole('--per-key-max-jobs-in-flight'),
    keyCallRps: num('--key-call-rps', 0),
    json: flags.has('--json'),
    markdown: flags.has('--markdown'),
    assembly: values.get('--assembly'),
    stack: values.get('--stack'),
    help: flags.has('--help'),
  };
  if (args.assembly !== undefined && args.stack === undefined) {
    throw new UsageError('--assembly needs --stack NAME');
  }
  if (args.assembly !== undefined && args.maxJobsInFlight !== undefined) {
    throw new UsageError('--max-jobs-in-flight synthesizes the example app; with --assembly the limit is read from the template');
  }
  if (args.assembly !== undefined && args.perKeyRps !== undefined) {
    throw new UsageError('--per-key-rps synthesizes the example app; with --assembly the per-key limits are read from the template');
  }
  if (args.perKeyMaxJobsInFlight !== undefined && (args.perKeyRps === undefined || args.maxJobsInFlight === undefined)) {
    throw new UsageError(`--per-key-max-jobs-in-flight ${args.perKeyMaxJobsInFlight} needs --per-key-rps R and --max-jobs-in-flight N (a key's limit is within the contract's)`);
  }
  if (args.assembly !== undefined && args.rps !== undefined) {
    throw new UsageError('--rps synthesizes the example app; with --assembly the contract is read from the template (give the traffic with --traffic-rps)');
  }
  return args;
}

/** Computes the whole result from an assembly on disk. */
export function costOf(assemblyDir: string, stackName: string, regionCode: string, options: Omit<DeriveOptions, 'trafficRps'> & { trafficRps?: number }): CostResult {
  const prices = pricesFor(regionCode);
  const template = loadStack(assemblyDir, stackName);
  // The contract is in the template; the traffic defaults to it.
  const trafficRps = options.trafficRps ?? contractRpsOf(template);
  const full: DeriveOptions = { ...options, trafficRps };
  const derived = deriveStack(template, full);
  const ours = priceDesign(derived.usage, prices, trafficRps);
  const fetch = derived.fetch ? priceDesign(derived.fetch.usage, prices, trafficRps) : undefined;
  const waits = derived.waits ? priceDesign(derived.waits, prices, trafficRps) : undefined;
  const perKey = perKeyFigures(derived, prices, trafficRps);
  return {
    stackName,
    prices,
    rps: derived.model.contractRps,
    options: full,
    derived,
    ours,
    comparisons: comparisons(derived.model, full).map((comparison) => ({ comparison, cost: priceDesign(comparison.usage, prices, trafficRps) })),
    ...(fetch ? { fetch } : {}),
    ...(waits ? { waits } : {}),
    ...(perKey ? { perKey } : {}),
  };
}

/** Per-key limits to synthesize the example with (`KeyLimits.of`). */
export interface ExamplePerKey {
  readonly requestsPerSecond: number;
  readonly maxJobsInFlight?: number;
}

/** Synthesizes the example app with a contract into a temporary directory; returns it and the stack name. */
export function synthesizeExample(rps: number, maxJobsInFlight?: number, perKey?: ExamplePerKey): { dir: string; stackName: string } {
  // Required here, not imported: --assembly runs without loading the construct library.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { buildExampleApp } = require('../examples/app') as typeof import('../examples/app');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-async-external-api-cost-'));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const lib = () => require('../src') as typeof import('../src');
  // With per-key limits the example puts each order's customerId on every task as its key.
  const props = maxJobsInFlight === undefined && perKey === undefined ? { requestsPerSecond: rps } : {
    contract: lib().VendorContract.of({
      requestsPerSecond: rps,
      ...(maxJobsInFlight !== undefined ? { maxJobsInFlight } : {}),
      ...(perKey ? { perKey: lib().KeyLimits.of(perKey) } : {}),
    }),
  };
  const { app, stack } = buildExampleApp(props, dir);
  app.synth();
  return { dir, stackName: stack.stackName };
}

/** Runs the command; resolves to the exit code. */
export async function main(argv: string[], io: CostIo = PROCESS_IO): Promise<number> {
  let args: CostArgs;
  try {
    args = parseArgs(argv);
    if (args.help) {
      io.out(USAGE);
      return 0;
    }
    pricesFor(args.region); // before synthesizing: an unknown region fails at once
  } catch (error) {
    if (error instanceof UsageError || error instanceof UnknownRegionError) {
      io.err(`cost: ${error.message}`);
      if (error instanceof UsageError) io.err(USAGE);
      return 2;
    }
    throw error;
  }

  let dir = args.assembly;
  let stackName = args.stack;
  let temporary = false;
  try {
    if (dir === undefined) {
      const rps = args.rps ?? DEFAULT_RPS;
      const perKey = args.perKeyRps !== undefined ? {
        requestsPerSecond: args.perKeyRps,
        ...(args.perKeyMaxJobsInFlight !== undefined ? { maxJobsInFlight: args.perKeyMaxJobsInFlight } : {}),
      } : undefined;
      io.err(`synthesizing the example app with requestsPerSecond ${rps}${args.maxJobsInFlight ? ` and maxJobsInFlight ${args.maxJobsInFlight}` : ''}`
        + `${perKey ? `, per key ${perKey.requestsPerSecond} rps${perKey.maxJobsInFlight ? ` and ${perKey.maxJobsInFlight} jobs in flight` : ''}` : ''}...`);
      ({ dir, stackName } = synthesizeExample(rps, args.maxJobsInFlight, perKey));
      temporary = true;
    }
    const result = costOf(dir, stackName!, args.region, {
      trafficRps: args.trafficRps ?? (args.assembly === undefined ? args.rps ?? DEFAULT_RPS : undefined),
      vendorLatencyMs: args.vendorLatencyMs,
      payloadBytes: args.payloadBytes,
      callbackBytes: args.callbackBytes,
      taskTokenBytes: args.taskTokenBytes,
      ...(args.keys !== undefined ? { keys: args.keys } : {}),
      ...(args.keyCallRps !== undefined ? { keyCallRps: args.keyCallRps } : {}),
    });
    io.out(args.markdown ? markdownReport(result) : textReport(result));
    if (args.json) {
      io.out(JSON.stringify(summary(result)));
    }
    return 0;
  } catch (error) {
    io.err(`cost: ${(error as Error).message}`);
    return 1;
  } finally {
    if (temporary && dir) {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  }, (error) => {
    process.stderr.write(`${(error as Error).stack ?? error}\n`);
    process.exitCode = 1;
  });
}
