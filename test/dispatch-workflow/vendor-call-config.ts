import type { VendorCallConfig } from '../../src/dispatch-workflow/vendor-call';

/**
 * The vendor caller's configuration in unit tests: contract 10 RPS, L 30 ms, a 1 s fire tolerance
 * (these tests check what the caller does, not how late a timer wakes), a 2 s slot wait, and a proxy
 * address nothing listens on. Overrides win.
 */
export function testVendorCallConfig(overrides: Partial<VendorCallConfig> = {}): VendorCallConfig {
  return {
    proxyUrl: 'http://127.0.0.1:9/vendor/',
    region: 'us-east-1',
    requestsPerSecond: 10,
    pacerTableName: 'pacer',
    latenessToleranceMs: 30,
    fireToleranceMs: 1000,
    maxSlotWaitMs: 2000,
    callTimeoutMs: 500,
    defaultPauseMs: 1000,
    maxPauseMs: 900_000,
    ...overrides,
  };
}
