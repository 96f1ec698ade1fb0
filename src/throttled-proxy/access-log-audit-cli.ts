#!/usr/bin/env node
/**
 * `cdk-async-external-api-audit`: proves afterwards, from the proxy's access log (AWS's own
 * record), that no closed sliding window held more requests than the contract. README, "Audit".
 *
 *   aws logs filter-log-events --log-group-name <proxy access log group> \
 *     --start-time <ms> --end-time <ms> --output json > export.json
 *   npx cdk-async-external-api-audit --rps 10 export.json
 *
 * Exit status: 0 when no window is over the limit, 1 when one is, 2 on a usage or input error.
 */
import { readFileSync } from 'node:fs';
import { AccessLogAuditReport, auditAccessLog, contractWindow, parseAccessLogExport } from './access-log-audit-report';
import { NamedLimitSpec, parseNamedLimitFlag } from '../contract/named-limit';

const USAGE = `usage: cdk-async-external-api-audit --rps R [--spread-ms D] [--limit NAME:RPS[:METHODS[:PATH_PREFIX]] ...] [--json] [FILE ...]
       cdk-async-external-api-audit --window-ms W [--limit N] [--json] [FILE ...]

Reads the throttled proxy's access log lines (exported with aws logs filter-log-events or
get-query-results, or one JSON line each; standard input when no FILE) and reports the busiest
closed sliding window [a - W, a] of requests the proxy forwarded to the vendor, on API Gateway's
clock (requestTimeEpoch).
  --rps R        the contract: W = 1000 ms holding floor(R) when R >= 1, W = 1000/R ms holding 1 when R < 1
  --spread-ms D  widen W by the spread of the proxy -> vendor hop, to bound the vendor's own windows (default 0)
  --limit NAME:RPS[:METHODS[:PATH_PREFIX]]
                 also audit this named limit (VendorLimit; repeatable), e.g. results:2:GET or
                 status:5:GET,HEAD:/status: the calls it binds by method and path, in its own window
  --window-ms W  audit this window instead (with --limit N, a whole number, to count violations)
  --json         print the report as JSON
Exit status 0: no window over the limit; 1: some window over it; 2: usage or input error.`;

/** What the CLI needs from its surroundings (injected by tests). */
export interface AuditCliIo {
  readonly readFile: (path: string) => string;
  readonly readStdin: () => string;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/** Runs the CLI on `argv` (without `node` and the script); returns the exit status. */
export function runAuditCli(argv: readonly string[], io: AuditCliIo): number {
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
  let report: AccessLogAuditReport;
  try {
    const texts = options.files.length > 0 ? options.files.map((f) => io.readFile(f)) : [io.readStdin()];
    const records = texts.flatMap((t) => parseAccessLogExport(t));
    report = auditAccessLog(records, options.windowMs, options.limit, { namedLimits: options.namedLimits, spreadMs: options.spreadMs });
  } catch (e) {
    io.err(`cdk-async-external-api-audit: ${(e as Error).message}`);
    return 2;
  }
  io.out(options.json ? JSON.stringify(report) : formatReport(report));
  const limitViolations = Object.values(report.byLimit).reduce((sum, l) => sum + l.violations, 0);
  return report.violations + limitViolations > 0 ? 1 : 0;
}

interface CliOptions {
  readonly windowMs: number;
  readonly limit?: number;
  readonly namedLimits: NamedLimitSpec[];
  readonly spreadMs: number;
  readonly json: boolean;
  readonly files: string[];
  readonly help: boolean;
}

function parseArgs(argv: readonly string[]): CliOptions {
  let rps: number | undefined;
  let spreadMs = 0;
  let windowMs: number | undefined;
  let limit: number | undefined;
  const namedLimits: NamedLimitSpec[] = [];
  let json = false;
  let help = false;
  const files: string[] = [];
  const number = (flag: string, value: string | undefined): number => {
    const n = Number(value);
    if (value === undefined || value.trim() === '' || !Number.isFinite(n)) {
      throw new Error(`${flag} needs a number (given ${value === undefined ? 'nothing' : `'${value}'`})`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    switch (arg) {
      case '--rps': rps = number(arg, argv[++i]); break;
      case '--spread-ms': spreadMs = number(arg, argv[++i]); break;
      case '--window-ms': windowMs = number(arg, argv[++i]); break;
      case '--limit': {
        // NAME:RPS[...] is a named limit; a bare number is the --window-ms mode's limit.
        const value = argv[++i];
        if (value !== undefined && value.includes(':')) {
          const spec = parseNamedLimitFlag(value, '--limit');
          if (namedLimits.some((l) => l.name === spec.name)) {
            throw new Error(`--limit ${spec.name} is given twice: named limits need unique names`);
          }
          namedLimits.push(spec);
        } else {
          limit = number(arg, value);
        }
        break;
      }
      case '--json': json = true; break;
      case '-h':
      case '--help': help = true; break;
      default:
        if (arg.startsWith('--')) {
          throw new Error(`unknown option ${arg}`);
        }
        files.push(arg);
    }
  }
  if (help) {
    return { windowMs: 1000, namedLimits, spreadMs, json, files, help };
  }
  if (rps !== undefined && (windowMs !== undefined || limit !== undefined)) {
    throw new Error('give --rps (the contract) or --window-ms/--limit N, not both');
  }
  if (rps !== undefined) {
    const window = contractWindow(rps, spreadMs);
    return { windowMs: window.windowMs, limit: window.limit, namedLimits, spreadMs, json, files, help };
  }
  if (windowMs === undefined) {
    throw new Error('give --rps R (the contract) or --window-ms W');
  }
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
    throw new Error(`--limit must be a whole number of requests, 1 or more (given ${limit})`);
  }
  return { windowMs: windowMs + spreadMs, ...(limit === undefined ? {} : { limit }), namedLimits, spreadMs, json, files, help };
}

function formatReport(r: AccessLogAuditReport): string {
  const iso = (ms: number) => (Number.isFinite(ms) ? new Date(ms).toISOString() : '-');
  const refused = Object.entries(r.refusedBeforeVendor).map(([type, n]) => `${type} ${n}`).join(', ') || 'none';
  const lines = [
    `access log lines: ${r.lines}; forwarded to the vendor: ${r.forwarded} (${iso(r.fromMs)} .. ${iso(r.toMs)}); refused by API Gateway before the vendor: ${refused}; vendor 429s: ${r.vendorThrottles}`,
    `busiest closed ${r.windowMs} ms window: ${r.busiest.count} request(s)${r.busiest.count > 0 ? `, ${iso(r.busiest.firstMs)} .. ${iso(r.busiest.endMs)}` : ''}`
      + (r.limit === undefined ? '' : ` (limit ${r.limit})`),
    `busiest calendar second: ${r.busiestCalendarSecond.count}${r.busiestCalendarSecond.count > 0 ? ` at ${iso(r.busiestCalendarSecond.secondMs)}` : ''} (what the Contributor Insights rule sees; a lower bound of the line above)`,
  ];
  for (const [route, v] of Object.entries(r.byRoute)) {
    lines.push(`  ${route}: ${v.forwarded} forwarded, busiest window ${v.busiest}`);
  }
  for (const [name, l] of Object.entries(r.byLimit)) {
    lines.push(`limit ${name} (${l.spec.requestsPerSecond} rps, ${l.spec.methods?.join(',') ?? 'any method'} ${l.spec.pathPrefix ?? '/'}): `
      + `${l.forwarded} forwarded, busiest closed ${l.windowMs} ms window ${l.busiest.count}`
      + `${l.busiest.count > 0 ? ` (${iso(l.busiest.firstMs)} .. ${iso(l.busiest.endMs)})` : ''} (limit ${l.limit}), `
      + (l.violations === 0 ? 'within it' : `${l.violations} request(s) found their window over it: over the limit`));
  }
  if (r.limit !== undefined) {
    lines.push(r.violations === 0
      ? `no window over ${r.limit}: within the contract on API Gateway's clock`
      : `${r.violations} request(s) found their window over ${r.limit}: over the contract`);
  }
  return lines.join('\n');
}

if (require.main === module) {
  process.exitCode = runAuditCli(process.argv.slice(2), {
    readFile: (path) => readFileSync(path, 'utf8'),
    readStdin: () => readFileSync(0, 'utf8'),
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
  });
}
