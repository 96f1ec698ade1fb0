/**
 * Fault scenarios of keys (issue 15): the fault suite's example app runs with credentials per key
 * (`credentialsPerKey`: each order's `customerId` is its key, its credential the secret
 * `vendor/<key>`), and the vendor simulator knows each key as an account of its own, told apart by
 * the credential each call carries (local/vendor-accounts.ts), so every scenario also checks that
 * no call carried a credential the vendor does not know. The other scenarios' requests all use
 * `SUITE_KEY`.
 *
 * - `key-credential-missing`: one key has no secret: its requests are parked at once
 *   (`VendorCredentialNotFound`) and their tasks fail `VendorRequestFailed`; the other keys' succeed.
 * - `key-burst`: many keys first seen within about a second, one request each, each with its own
 *   secret: the credential function reads every key's secret once, every request succeeds with its
 *   own key's credential, no call over a key's limit or the contract.
 */
import type { FaultScenario } from './fault-suite';
import type { VendorAccountsOptions } from './vendor-accounts';
import { EXAMPLE_CREDENTIAL_HEADER, EXAMPLE_KEY_SECRET_PATTERN } from '../examples/app';

/** The key of every request of the scenarios without keys of their own. */
export const SUITE_KEY = 'suite';
/** The keys of `key-credential-missing`: two with a secret, one without. */
export const MISSING_CREDENTIAL_KEYS = { withSecret: ['acme', 'globex'], withoutSecret: 'initech' } as const;
/**
 * Keys of the burst, one request each. 12 keys make 24 paced calls (submission and result fetch)
 * at the suite's 10 per second, 2.4 s of back-to-back slots. With 20 keys (4 s of them) one run of
 * the full `npm test` on 2 cores saw the vendor refuse one call as over the contract (a local
 * timing spread above L under load, not a key's limit: each key makes two calls): fewer keys keep
 * the local runtime within its lateness tolerance for the scenario's dense stretch.
 */
export const BURST_KEYS = 12;
/** The vendor's limit per key in the burst: each key makes two calls (submission, fetch). */
export const BURST_KEY_RPS = 2;

export function burstKey(i: number): string {
  return `burst-${String(i + 1).padStart(3, '0')}`;
}

/** Every key that has a secret in the keyed suite. */
function keysWithSecrets(): string[] {
  return [SUITE_KEY, ...MISSING_CREDENTIAL_KEYS.withSecret, ...Array.from({ length: BURST_KEYS }, (_, i) => burstKey(i))];
}

const credentialOf = (key: string) => `api-key-${key}`;

/** The keys' secrets, by name, for the local Secrets Manager (as an operator creates them: no deploy per key). */
export function keySuiteSecrets(): Record<string, string> {
  return Object.fromEntries(keysWithSecrets().map((key) => [EXAMPLE_KEY_SECRET_PATTERN.replace('{key}', key), credentialOf(key)]));
}

/** The vendor's accounts: one per key with a secret, no limit of its own unless a scenario sets one. */
export function keySuiteAccounts(): VendorAccountsOptions {
  return {
    credentialHeader: EXAMPLE_CREDENTIAL_HEADER,
    credentials: Object.fromEntries(keysWithSecrets().map((key) => [credentialOf(key), key])),
  };
}

export function keyScenarios(): FaultScenario[] {
  const { withSecret, withoutSecret } = MISSING_CREDENTIAL_KEYS;
  const missingKeys = [...withSecret, withoutSecret];
  return [
    {
      id: 'key-credential-missing',
      title: `A key without a credential: of 6 requests over 3 keys, the 2 of '${withoutSecret}' have no secret vendor/${withoutSecret}`,
      expected: `'${withoutSecret}''s requests parked at once (VendorCredentialNotFound), their tasks fail VendorRequestFailed; the other keys' succeed; the vendor never sees '${withoutSecret}'`,
      requests: 6,
      keyOf: (i) => missingKeys[i % missingKeys.length],
    },
    {
      id: 'key-burst',
      title: `A burst of new keys: ${BURST_KEYS} keys first seen within about a second, one request each, each with its own secret; the vendor limits each key to ${BURST_KEY_RPS} calls per second`,
      expected: 'all succeed, each call with its own key\'s credential; no call over a key\'s limit or the contract',
      requests: BURST_KEYS,
      keyOf: burstKey,
      vendor: { accounts: { ...keySuiteAccounts(), requestsPerSecond: BURST_KEY_RPS } },
    },
  ];
}
