/**
 * The demo's tenants (issue 15, `npm run demo -- --tenants N --hot-tenant-share F --tenant-rps R`):
 * flag parsing, the keys' share of the requests, their secrets and vendor accounts, and the
 * summary's arithmetic (local/demo-tenants.ts). The run itself is the demo's (no runtime here).
 */
import { DEFAULT_DEMO_OPTIONS, demoWaitMs, formatSummary, parseDemoArgs } from '../../local/demo';
import { assignTenants, demoTenantsOf, tenantAccounts, tenantKey, tenantSecrets, tenantsSummary } from '../../local/demo-tenants';

describe('demo --tenants: flags', () => {
  test('GIVEN the tenant flags WHEN parsed THEN the demo has N keys, the hot share and each key\'s limit; --rps stays the contract', () => {
    const options = parseDemoArgs(['--tenants', '10', '--hot-tenant-share', '0.9', '--tenant-rps=2', '--rps', '10']);
    expect(options).toMatchObject({ tenants: 10, hotTenantShare: 0.9, tenantRps: 2, rps: 10 });
    expect(demoTenantsOf(options)).toEqual({ count: 10, hotShare: 0.9, requestsPerSecond: 2 });
    // Without a hot share or a key limit: an even share, no limit at the vendor
    expect(demoTenantsOf(parseDemoArgs(['--tenants', '3']))).toEqual({ count: 3 });
    // Without --tenants: no keys at all
    expect(demoTenantsOf(parseDemoArgs([]))).toBeUndefined();
    expect(DEFAULT_DEMO_OPTIONS).toMatchObject({ tenants: 0, tenantRps: 0 });
  });

  test('GIVEN tenant flags that do not fit together WHEN parsed THEN each is refused with what was given and the fix', () => {
    expect(() => parseDemoArgs(['--hot-tenant-share', '0.5'])).toThrow('--hot-tenant-share and --tenant-rps need --tenants N (how many keys)');
    expect(() => parseDemoArgs(['--tenant-rps', '2'])).toThrow(/need --tenants N/);
    expect(() => parseDemoArgs(['--tenants', '2.5'])).toThrow('--tenants is a whole number of keys (given 2.5)');
    expect(() => parseDemoArgs(['--tenants', '4', '--hot-tenant-share', '1.5'])).toThrow('--hot-tenant-share is a fraction of requests between 0 and 1 (given 1.5)');
    expect(() => parseDemoArgs(['--tenants', '1', '--hot-tenant-share', '0.5'])).toThrow(/--tenants 1 has none: give --tenants 2 or more/);
    expect(() => parseDemoArgs(['--tenants', '4', '--tenant-rps', '12', '--rps', '10']))
      .toThrow('--tenant-rps 12 is above the contract of 10 (--rps): one key cannot be allowed more than all keys together');
    expect(() => parseDemoArgs(['--tenants', 'many'])).toThrow("--tenants needs a number of 0 or more (given 'many')");
  });
});

describe('demo --tenants: keys, secrets, accounts', () => {
  test('GIVEN 10 tenants and a hot share of 0.9 WHEN 100 requests are assigned THEN 90 go to tenant-001, spread through the run, and 10 round-robin over the other nine', () => {
    const keys = assignTenants(100, { count: 10, hotShare: 0.9 });
    const counts = keys.reduce<Record<string, number>>((acc, k) => ({ ...acc, [k]: (acc[k] ?? 0) + 1 }), {});
    expect(counts['tenant-001']).toBe(90);
    expect(Object.keys(counts).sort()).toEqual(Array.from({ length: 10 }, (_, i) => tenantKey(i + 1, 10)));
    expect(counts['tenant-002']).toBe(2);
    expect(counts['tenant-010']).toBe(1);
    // Spread: every block of 10 requests has 9 hot ones, not 90 hot first
    for (let block = 0; block < 10; block++) {
      expect(keys.slice(block * 10, block * 10 + 10).filter((k) => k === 'tenant-001')).toHaveLength(9);
    }
  });

  test('GIVEN no hot share WHEN assigned THEN every key gets the same share; a share of 0 leaves the hot key out, 1 puts everything on it', () => {
    expect(assignTenants(6, { count: 3 })).toEqual(['tenant-001', 'tenant-002', 'tenant-003', 'tenant-001', 'tenant-002', 'tenant-003']);
    expect(assignTenants(4, { count: 3, hotShare: 0 })).toEqual(['tenant-002', 'tenant-003', 'tenant-002', 'tenant-003']);
    expect(assignTenants(3, { count: 1, hotShare: 1 })).toEqual(['tenant-001', 'tenant-001', 'tenant-001']);
    expect(tenantKey(7, 1500)).toBe('tenant-0007');
  });

  test('GIVEN tenants WHEN their secrets and the vendor\'s accounts are made THEN each key\'s secret vendor/<key> holds the credential the vendor knows as that key, limited to --tenant-rps', () => {
    expect(tenantSecrets({ count: 2 })).toEqual({ 'vendor/tenant-001': 'api-key-tenant-001', 'vendor/tenant-002': 'api-key-tenant-002' });
    expect(tenantAccounts({ count: 2, requestsPerSecond: 2 })).toEqual({
      credentialHeader: 'x-api-key',
      credentials: { 'api-key-tenant-001': 'tenant-001', 'api-key-tenant-002': 'tenant-002' },
      requestsPerSecond: 2,
    });
    expect(tenantAccounts({ count: 1 })).not.toHaveProperty('requestsPerSecond');
  });

  test('GIVEN a hot key limited below its share WHEN sizing the wait THEN its calls are given slots of its own rate', () => {
    const options = { ...DEFAULT_DEMO_OPTIONS, requests: 100, rps: 10, tenants: 10 };
    expect(demoWaitMs({ ...options, hotTenantShare: 0.9, tenantRps: 2 })).toBeGreaterThan(demoWaitMs({ ...options, tenantRps: 2 }));
    expect(demoWaitMs({ ...options, tenantRps: 2 })).toBeGreaterThanOrEqual(demoWaitMs(options));
  });
});

describe('demo --tenants: summary', () => {
  const T0 = 1_700_000_000_000;
  const keysStats = {
    byKey: {
      'tenant-001': { limit: 2, arrivals: 30, violations: 12, maxInAnyWindow: 9 },
      'tenant-002': { limit: 2, arrivals: 2, violations: 1, maxInAnyWindow: 3 },
    },
    unknownCredential: 0,
    violations: 13,
  };

  test('GIVEN requests of a hot key and quiet keys WHEN summarized THEN violations come from the vendor\'s accounts and the p99 added latency (start -> accepted) is taken over each group', () => {
    // GIVEN 100 quiet requests with added latencies 1..100 ms, 10 hot ones with 1000..10000 ms, one hot never accepted
    const quiet = Array.from({ length: 100 }, (_, i) => ({ key: `tenant-00${2 + (i % 2)}`, startedAtMs: T0, acceptedAtMs: T0 + i + 1 }));
    const hot = Array.from({ length: 10 }, (_, i) => ({ key: 'tenant-001', startedAtMs: T0 + i, acceptedAtMs: T0 + i + (i + 1) * 1000 }));

    // WHEN
    const summary = tenantsSummary({ count: 3, hotShare: 0.1 }, [...quiet, ...hot, { key: 'tenant-001', startedAtMs: T0 }], keysStats);

    // THEN nearest-rank p99: the 99th of 100 quiet values, the 10th of 10 hot ones
    expect(summary).toEqual({
      count: 3, hotKey: 'tenant-001', violations: 13, hotViolations: 12, quietP99AddedLatencyMs: 99, hotP99AddedLatencyMs: 10_000,
    });
  });

  test('GIVEN no hot key WHEN summarized THEN every request is a quiet one and the hot figures are null or 0; none accepted gives null', () => {
    const requests = [{ key: 'tenant-001', startedAtMs: T0, acceptedAtMs: T0 + 40 }, { key: 'tenant-002', startedAtMs: T0, acceptedAtMs: T0 + 60 }];
    expect(tenantsSummary({ count: 2 }, requests, keysStats)).toEqual({
      count: 2, hotKey: null, violations: 13, hotViolations: 0, quietP99AddedLatencyMs: 60, hotP99AddedLatencyMs: null,
    });
    expect(tenantsSummary({ count: 2, hotShare: 1 }, [{ key: 'tenant-001', startedAtMs: T0 }], { byKey: {}, unknownCredential: 0, violations: 0 }))
      .toMatchObject({ hotViolations: 0, quietP99AddedLatencyMs: null, hotP99AddedLatencyMs: null });
  });

  test('GIVEN a demo result with tenants WHEN printed THEN one row gives keys, violations (the hot key\'s) and both p99s', () => {
    const result = {
      requests: 1,
      succeeded: 1,
      failed: 0,
      timedOut: 0,
      timeoutsByCause: { planned: 0, waitingForSlot: 0, callbackRejected: 0, callbackLate: 0, unexplained: 0 },
      unexplainedTimeouts: 0,
      stillRunning: 0,
      stillRunningBy: { message: 0, deadLetter: 0, execution: 0, correlation: 0 },
      lost: 0,
      waitedMs: 0,
      duplicateVendorCalls: 0,
      forgedAccepted: 0,
      contractRps: 10,
      deliveredRps: 1,
      vendorRequests: 2,
      resultFetches: 1,
      vendorMaxRequestsInAnySecond: 1,
      vendorViolations: 0,
      quotaMaxInAnyPeriod: null,
      violationsByLimit: { rate: 0, quota: 0, inFlight: 0 },
      limitMaxInAnyWindow: {},
      tenants: { count: 10, hotKey: 'tenant-001', violations: 13, hotViolations: 12, quietP99AddedLatencyMs: 99, hotP99AddedLatencyMs: 10_000 },
      auditBusiestWindow: 1,
      auditViolations: 0,
      auditHopSpreadMs: null,
      maxJobsInFlightObserved: 1,
      meanJobsInFlightWhileBacklog: 0,
      handOvers: { count: 0, meanIdleMs: 0, maxIdleMs: 0 },
      vendor429s: 0,
      proxy429s: 0,
      p50LatencyMs: 1,
      p99LatencyMs: 1,
      failuresByError: {},
      requestDeadLetters: 0,
      callbackDeadLetters: 0,
      notModeled: [],
      chart: 'c.svg',
      elapsedMs: 1,
    };
    expect(formatSummary(result)).toMatch(/tenants: keys \/ calls over a key's own limit \(hot key's\) \/ p99 added latency quiet, hot\s+10 \/ 13 \(12\) \/ 99 ms, 10000 ms/);
  });
});
