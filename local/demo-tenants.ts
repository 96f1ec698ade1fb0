/**
 * The demo's tenants (`--tenants N --hot-tenant-share F --tenant-rps R`, issue 15): N keys
 * (`tenant-001` ...), each with its own vendor account, i.e. its own secret `vendor/<key>` on the
 * local Secrets Manager holding its own API key, which the vendor simulator knows as that key's
 * account (local/vendor-accounts.ts) and limits to R calls per sliding second. A share F of the
 * requests goes to one hot key (`tenant-001`), the rest round-robin over the others. `--rps` stays
 * the overall contract (all keys together).
 *
 * Pure functions: the demo wires them (local/demo.ts); test/local/demo-tenants.test.ts checks them.
 */
import { addedLatency } from './bench-metrics';
import type { VendorAccountsOptions, VendorAccountsStats } from './vendor-accounts';
import { EXAMPLE_CREDENTIAL_HEADER, EXAMPLE_KEY_SECRET_PATTERN } from '../examples/app';

/** The demo's tenants, as parsed from the flags. */
export interface DemoTenants {
  /** How many keys. */
  readonly count: number;
  /** The hot key's share of the requests (0..1); undefined: every key gets the same share. */
  readonly hotShare?: number;
  /** Each key's limit at the vendor, calls per sliding second; undefined: none. */
  readonly requestsPerSecond?: number;
}

/** What the demo's JSON summary says about the tenants. */
export interface DemoTenantsSummary {
  readonly count: number;
  /** The hot key (`--hot-tenant-share`), or null when every key gets the same share. */
  readonly hotKey: string | null;
  /** Calls the vendor refused because their key's sliding second was full (all keys). */
  readonly violations: number;
  /** Of those, the hot key's. */
  readonly hotViolations: number;
  /**
   * p99 of the added latency of the other keys' requests (all keys' without a hot key), ms: main
   * workflow start -> the vendor accepting the request's submission (local/bench-metrics.ts,
   * addedLatency). Null when none of them reached the vendor.
   */
  readonly quietP99AddedLatencyMs: number | null;
  /** The same over the hot key's requests; null without a hot key or when none reached the vendor. */
  readonly hotP99AddedLatencyMs: number | null;
}

/** The tenants of the demo's flags; undefined without `--tenants`. */
export function demoTenantsOf(
  o: { readonly tenants: number; readonly hotTenantShare?: number; readonly tenantRps: number },
): DemoTenants | undefined {
  if (!(o.tenants > 0)) return undefined;
  return {
    count: o.tenants,
    ...(o.hotTenantShare === undefined ? {} : { hotShare: o.hotTenantShare }),
    ...(o.tenantRps > 0 ? { requestsPerSecond: o.tenantRps } : {}),
  };
}

/** The key of tenant `n` (1-based): `tenant-001`, zero-padded to the width of the largest. */
export function tenantKey(n: number, count: number): string {
  return `tenant-${String(n).padStart(Math.max(3, String(count).length), '0')}`;
}

/** The credential of a key's account, as its secret holds it. */
export function tenantCredential(key: string): string {
  return `api-key-${key}`;
}

/**
 * The key of each request, in submission order: with a hot share F, round(F * requests) requests
 * on `tenant-001`, spread evenly through the sequence (not all first), the others round-robin over
 * `tenant-002` ... `tenant-N`; without one, all N keys round-robin.
 */
export function assignTenants(requests: number, tenants: DemoTenants): string[] {
  const key = (n: number) => tenantKey(n, tenants.count);
  if (tenants.hotShare === undefined) {
    return Array.from({ length: requests }, (_, i) => key(1 + (i % tenants.count)));
  }
  const hot = Math.round(tenants.hotShare * requests);
  let quiet = 0;
  return Array.from({ length: requests }, (_, i) => {
    // Request i is hot when the running count of hot requests steps up at it (even spacing).
    if (Math.floor(((i + 1) * hot) / requests) > Math.floor((i * hot) / requests)) {
      return key(1);
    }
    return key(2 + (quiet++ % (tenants.count - 1)));
  });
}

/** Each key's secret, by name, for the local Secrets Manager (LocalRuntimeOptions.secrets). */
export function tenantSecrets(tenants: DemoTenants): Record<string, string> {
  return Object.fromEntries(Array.from({ length: tenants.count }, (_, i) => {
    const key = tenantKey(i + 1, tenants.count);
    return [EXAMPLE_KEY_SECRET_PATTERN.replace('{key}', key), tenantCredential(key)];
  }));
}

/** The vendor simulator's accounts: one per key, each limited to the tenants' rate. */
export function tenantAccounts(tenants: DemoTenants): VendorAccountsOptions {
  return {
    credentialHeader: EXAMPLE_CREDENTIAL_HEADER,
    credentials: Object.fromEntries(Array.from({ length: tenants.count }, (_, i) => {
      const key = tenantKey(i + 1, tenants.count);
      return [tenantCredential(key), key];
    })),
    ...(tenants.requestsPerSecond === undefined ? {} : { requestsPerSecond: tenants.requestsPerSecond }),
  };
}

/**
 * The summary's tenant figures.
 * @param requests each request's key, main workflow start and when the vendor accepted its
 *   submission (undefined: never)
 */
export function tenantsSummary(
  tenants: DemoTenants,
  requests: ReadonlyArray<{ readonly key: string; readonly startedAtMs: number; readonly acceptedAtMs?: number }>,
  keys: VendorAccountsStats,
): DemoTenantsSummary {
  const hotKey = tenants.hotShare === undefined ? null : tenantKey(1, tenants.count);
  const p99 = (hot: boolean) => addedLatency(requests
    .filter((r) => r.acceptedAtMs !== undefined && (r.key === hotKey) === hot)
    .map((r) => ({ enqueuedAt: r.startedAtMs, arrivedAt: r.acceptedAtMs! }))).p99;
  return {
    count: tenants.count,
    hotKey,
    violations: keys.violations,
    hotViolations: hotKey === null ? 0 : keys.byKey[hotKey]?.violations ?? 0,
    quietP99AddedLatencyMs: p99(false),
    hotP99AddedLatencyMs: hotKey === null ? null : p99(true),
  };
}

/**
 * Checks the tenant flags together (after parsing): `--hot-tenant-share` and `--tenant-rps` need
 * `--tenants`, a hot share below 1 needs a second key, and a key may not be allowed more than the
 * contract (the same rule as `VendorContract`'s per-key limits).
 */
export function validateTenantFlags(tenants: number, hotShare: number | undefined, tenantRps: number, rps: number): void {
  if (tenants === 0 && (hotShare !== undefined || tenantRps > 0)) {
    throw new Error('--hot-tenant-share and --tenant-rps need --tenants N (how many keys)');
  }
  if (tenants > 0 && !Number.isInteger(tenants)) {
    throw new Error(`--tenants is a whole number of keys (given ${tenants})`);
  }
  if (hotShare !== undefined && hotShare > 1) {
    throw new Error(`--hot-tenant-share is a fraction of requests between 0 and 1 (given ${hotShare})`);
  }
  if (hotShare !== undefined && tenants === 1 && hotShare < 1) {
    throw new Error(`--hot-tenant-share ${hotShare} leaves requests for other keys, but --tenants 1 has none: give --tenants 2 or more`);
  }
  if (tenantRps > rps) {
    throw new Error(`--tenant-rps ${tenantRps} is above the contract of ${rps} (--rps): one key cannot be allowed more than all keys together`);
  }
}
