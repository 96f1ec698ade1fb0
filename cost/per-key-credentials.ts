/**
 * Per-key vendor credentials (`VendorCredentials.fromSecretHeaderPerKey`, issue 15;
 * src/throttled-proxy/vendor-secret-per-key.ts): the proxy's credential function is invoked once
 * per vendor call (the `ReadVendorCredential` lambda:invoke task of the dispatch and vendor-call
 * workflows, priced with the other task functions), reads the secret the request's key names and
 * caches it in memory per key for `CACHE_TTL_SECONDS`. So Secrets Manager sees one GetSecretValue
 * per key per TTL per execution environment, not one per call, and bills one secret per key a
 * month ($0.40 each: https://aws.amazon.com/secrets-manager/pricing/). The secrets are created
 * outside the stack (new keys need no deploy), so the template cannot count them: the number of
 * keys is an option (`--keys`).
 *
 * Assumptions, stated in every derivation: every key is called in every execution environment at
 * least once per TTL (an upper bound on the reads: a quiet key is read less often), and the
 * function runs in as many environments as its concurrency needs, `ceil(rate x invocation time)`
 * (Little's law; at least one): Lambda reuses a free warm environment before it creates one
 * (https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html), so more environments
 * (bursts, scaling, recycling) mean more reads.
 */
import { LATENCY_MS } from './assumptions';
import { fmt, FunctionModel } from './derive';
import { MonthlyLine, UsageLine } from './model';
import { LocalTemplate } from '../local/template';
import { MAX_CACHED_KEYS, VendorKeySecretEnv } from '../src/throttled-proxy/vendor-secret-per-key';

/** Keys assumed when `--keys` is not given. */
export const DEFAULT_KEYS = 10;

/** The per-key credential function as read from the template. */
export interface PerKeyCredentialModel {
  readonly logicalId: string;
  readonly secretNamePattern: string;
  /** 0: no cache, every call reads. */
  readonly cacheTtlSeconds: number;
  readonly memoryMb: number;
  readonly arm: boolean;
}

/** The stack's per-key credential function (SECRET_NAME_PATTERN in its environment), if any. */
export function perKeyCredentialOf(t: LocalTemplate, functionModel: (logicalId: string) => FunctionModel): PerKeyCredentialModel | undefined {
  const found = t.ofType('AWS::Lambda::Function').filter((fn) => (fn.properties.Environment?.Variables ?? {})[VendorKeySecretEnv.SECRET_NAME_PATTERN] !== undefined);
  if (found.length === 0) {
    return undefined;
  }
  if (found.length > 1) {
    throw new Error(`Stack ${t.stackName} has ${found.length} per-key credential functions (${found.map((f) => f.logicalId).join(', ')}): the cost model prices one orchestrator per stack`);
  }
  const env = found[0].properties.Environment.Variables as Record<string, string>;
  const ttl = Number(env[VendorKeySecretEnv.CACHE_TTL_SECONDS] ?? '300');
  if (!Number.isFinite(ttl) || ttl < 0) {
    throw new Error(`${found[0].logicalId}: ${VendorKeySecretEnv.CACHE_TTL_SECONDS} is ${JSON.stringify(env[VendorKeySecretEnv.CACHE_TTL_SECONDS])}, expected seconds >= 0`);
  }
  const fn = functionModel(found[0].logicalId);
  return {
    logicalId: found[0].logicalId,
    secretNamePattern: env[VendorKeySecretEnv.SECRET_NAME_PATTERN],
    cacheTtlSeconds: ttl,
    memoryMb: fn.memoryMb,
    arm: fn.arm,
  };
}

/** Execution environments the credential function runs in at `callRps` vendor calls per second. */
export function credentialEnvironments(callRps: number): number {
  return Math.max(1, Math.ceil((callRps * LATENCY_MS.lambdaInvoke) / 1000));
}

/** GetSecretValue calls per vendor call, and how that was obtained. */
export function secretReadsPerCall(c: PerKeyCredentialModel, keys: number, callRps: number): { perCall: number; rule: string } {
  const environments = credentialEnvironments(callRps);
  if (c.cacheTtlSeconds === 0) {
    return { perCall: 1, rule: `no cache (${VendorKeySecretEnv.CACHE_TTL_SECONDS} 0): one GetSecretValue per call` };
  }
  if (keys > MAX_CACHED_KEYS) {
    return { perCall: 1, rule: `${keys} keys is more than the ${MAX_CACHED_KEYS} one environment caches (least recently read dropped first): counted as one GetSecretValue per call, an upper bound` };
  }
  const readsPerSecond = (keys * environments) / c.cacheTtlSeconds;
  const perCall = Math.min(1, readsPerSecond / callRps);
  return {
    perCall,
    rule: `${keys} key(s) (--keys) x ${environments} execution environment(s) (${fmt(callRps)} calls/s x ${LATENCY_MS.lambdaInvoke} ms, at least 1) `
      + `/ ${c.cacheTtlSeconds} s cache TTL = ${fmt(readsPerSecond, 4)} reads/s over ${fmt(callRps)} calls/s`
      + `${perCall === 1 ? ' (capped at one per call)' : ''}; assumes every key is called in every environment within each TTL (an upper bound)`,
  };
}

/**
 * Per vendor call: the credential function's secret reads (its invocation and warm duration are the
 * ReadVendorCredential task's lines). None without per-key credentials.
 */
export function perKeyCredentialLines(c: PerKeyCredentialModel | undefined, keys: number, callRps: number): UsageLine[] {
  if (!c) {
    return [];
  }
  const { perCall, rule } = secretReadsPerCall(c, keys, callRps);
  return [
    {
      service: 'secretsManager',
      what: `${c.logicalId} GetSecretValue (per key, cached)`,
      perRequest: perCall,
      price: 'secretsManagerApiCall',
      derivation: rule,
    },
    {
      service: 'lambda',
      what: `${c.logicalId} duration (secret reads)`,
      perRequest: perCall * (LATENCY_MS.secretsManagerCall / 1000) * (c.memoryMb / 1024),
      price: c.arm ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86',
      derivation: `${LATENCY_MS.secretsManagerCall} ms per GetSecretValue x ${c.memoryMb} MB, on the calls that read`,
    },
  ];
}

/** The key secrets a month: one secret per key. None without per-key credentials. */
export function perKeySecretsMonthly(c: PerKeyCredentialModel | undefined, keys: number): MonthlyLine[] {
  return c === undefined ? [] : [{
    what: 'Secrets Manager secrets, one per key',
    quantity: keys,
    price: 'secretsManagerSecretMonth',
    derivation: `${keys} key(s) (--keys, default ${DEFAULT_KEYS}) x one secret '${c.secretNamePattern}' each, per key; created outside the stack, not in the template`,
  }];
}
