/**
 * Named limits (issue 14, item 3): rate limits of the vendor contract below the overall contract
 * that bind only some calls, e.g. result fetches at 2 RPS inside a 10 RPS contract.
 *
 * Shared by the construct library (synth-time validation, vendor-limit.ts) and the handlers that
 * reserve pacing slots (the dispatcher and the vendor caller): plain TypeScript, no aws-cdk-lib or
 * SDK imports.
 *
 * ## Which calls a limit binds
 *
 * A limit binds a call by what reaches the vendor, not by which task sent it, so a call can never
 * forget a limit it is subject to: its method is one of the limit's `methods` and its path lies
 * under the limit's `pathPrefix` (segment by segment: `/results` covers `/results` and
 * `/results/42`, not `/results-archive`). A job submission is the call `POST /` (the vendor URL
 * itself, as `callVendorTask`'s path `/`). A call subject to several limits consumes each of them.
 */

import { parseJsonEnv } from '../shared/env';

/** The JSON form of a named limit, as the handlers receive it (environment variable). */
export interface NamedLimitSpec {
  /** Unique among the contract's limits; part of the pacer item's attribute holding its cursor. */
  readonly name: string;
  /** The limit's requests per second (at most the contract's). */
  readonly requestsPerSecond: number;
  /** The calls it binds: paths under this prefix. Default `/` (every path). */
  readonly pathPrefix?: string;
  /** The calls it binds: these methods (upper case). Default every method. */
  readonly methods?: string[];
}

/** Names of limits: letters, digits, `-` and `_`, at most 64 (safe in a DynamoDB attribute name). */
export const NAMED_LIMIT_NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether `path` lies under `prefix`, segment by segment (`/` covers every path). */
export function pathUnderPrefix(path: string, prefix: string): boolean {
  const base = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  return base === '' || path === base || path.startsWith(`${base}/`);
}

/**
 * The limits a call is subject to, in the contract's order. `path` undefined is the vendor URL
 * itself (`/`), `method` undefined is `POST` (a job submission); a path without its leading `/`
 * counts as one with it.
 */
export function limitsForCall(limits: readonly NamedLimitSpec[], method: string | undefined, path: string | undefined): NamedLimitSpec[] {
  const m = (method ?? 'POST').toUpperCase();
  // The vendor caller's event may give the path without its leading '/' (proxyRequestUrl strips it).
  const p = `/${(path ?? '').replace(/^\/+/, '')}`;
  return limits.filter((limit) => (limit.methods === undefined || limit.methods.includes(m))
    && pathUnderPrefix(p, limit.pathPrefix ?? '/'));
}

/** Reads the named limits' JSON (environment variable); throws naming what is wrong. */
export function parseNamedLimitSpecs(raw: string | undefined, variableName: string): NamedLimitSpec[] {
  const parsed = parseJsonEnv(raw, variableName, 'a JSON array of named limits');
  if (parsed === undefined) {
    return [];
  }
  const valid = Array.isArray(parsed) && parsed.every((l) => typeof l === 'object' && l !== null
    && typeof l.name === 'string' && NAMED_LIMIT_NAME_PATTERN.test(l.name)
    && typeof l.requestsPerSecond === 'number' && Number.isFinite(l.requestsPerSecond) && l.requestsPerSecond > 0
    && (l.pathPrefix === undefined || (typeof l.pathPrefix === 'string' && l.pathPrefix.startsWith('/')))
    && (l.methods === undefined || (Array.isArray(l.methods) && l.methods.every((m: unknown) => typeof m === 'string'))));
  if (!valid) {
    throw new Error(`Environment variable ${variableName} must be a JSON array of { name, requestsPerSecond, pathPrefix?, methods? }, got ${raw}`);
  }
  return parsed as NamedLimitSpec[];
}

/**
 * Reads one named limit given as `NAME:RPS[:METHODS[:PATH_PREFIX]]`, e.g. `results:2:GET` or
 * `status:5:GET,HEAD:/status` (the demo's `--limit` and the audit CLI's `--limit`). `flag` names the
 * option in the error.
 */
export function parseNamedLimitFlag(raw: string | undefined, flag: string = '--limit'): NamedLimitSpec {
  const match = /^([A-Za-z0-9_-]+):([0-9.]+)(?::([A-Za-z,]*))?(?::(\/.*))?$/.exec(raw ?? '');
  if (!match || !(Number(match[2]) > 0) || !NAMED_LIMIT_NAME_PATTERN.test(match[1])) {
    throw new Error(`${flag} needs NAME:RPS[:METHODS[:PATH_PREFIX]], e.g. results:2:GET (given '${raw}')`);
  }
  return {
    name: match[1],
    requestsPerSecond: Number(match[2]),
    ...(match[3] ? { methods: match[3].split(',').map((m) => m.toUpperCase()) } : {}),
    ...(match[4] ? { pathPrefix: match[4] } : {}),
  };
}
