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
 * - `key-limit-change`: a key's limit lowered mid-run (its settings item rewritten): its calls keep
 *   the old limit until the change binds, the new one after, no call over the limit in force.
 */
import { DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import type { FaultScenario, FaultSuiteContext } from './fault-suite';
import { rateChangeTimingOf } from './rate-schedule';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from './types';
import type { VendorAccountsOptions } from './vendor-accounts';
import { EXAMPLE_CREDENTIAL_HEADER, EXAMPLE_KEY_SECRET_PATTERN } from '../examples/app';
import { DEFAULT_KEY_RESERVATION_HORIZON_MS, RETURN_EXTRA_HORIZON_MS } from '../src/rate-controlled-queue-consumer/key-set-aside';
import { DEFAULT_LEAD_MS } from '../src/rate-controlled-queue-consumer/rate-settings';

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

/**
 * How long the keyed suite's dispatchers cache a key's settings (KEY_SETTINGS_CACHE_TTL_MS; 30 s
 * deployed): a changed limit is read within a second.
 */
export const SUITE_KEY_SETTINGS_CACHE_TTL_MS = 1000;

/**
 * `key-limit-change`: its key, its requests (a submission and a result fetch each), its limit
 * before and after the change, and when the change is written (ms after the requests start).
 */
export const LIMIT_CHANGE = { key: 'shifting', requests: 10, fromRps: 3, toRps: 1, writtenAfterMs: 2500 } as const;

/**
 * How far a key's slots are reserved ahead, H in docs/design/per-key-limits.md 2.3 ("A change
 * written at C binds"): the dispatcher's lead plus its reservation horizon, plus the extra horizon
 * of a set-aside message coming back.
 */
const KEY_HORIZON_MS = DEFAULT_LEAD_MS + DEFAULT_KEY_RESERVATION_HORIZON_MS + RETURN_EXTRA_HORIZON_MS;

/** When `key-limit-change`'s decrease binds at the vendor: C + P (the settings cache) + H + L. */
export function limitChangeBindsAtMs(ctx: FaultSuiteContext, startedAtMs: number): number {
  const { latenessToleranceMs } = rateChangeTimingOf({
    Resources: Object.fromEntries(ctx.runtime.template.resources.map((r) => [r.logicalId, { Type: r.type, Properties: r.properties }])),
  });
  return startedAtMs + LIMIT_CHANGE.writtenAfterMs + SUITE_KEY_SETTINGS_CACHE_TTL_MS + KEY_HORIZON_MS + latenessToleranceMs;
}

/** Writes the key's settings item (as an operator does, docs: README "Per-key limits: settings"). */
async function writeKeyRate(ctx: FaultSuiteContext, key: string, requestsPerSecond: number): Promise<void> {
  const table = ctx.runtime.template.ofType('AWS::DynamoDB::Table').find((t) => /KeySettings/.test(t.logicalId));
  if (!table) throw new Error('the keyed suite has no key settings table: its contract needs perKey');
  const ddb = new DynamoDBClient({ endpoint: ctx.runtime.endpoints.dynamodb, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  try {
    await ddb.send(new PutItemCommand({
      TableName: ctx.runtime.template.nameOf(table.logicalId),
      Item: { pk: { S: key }, requestsPerSecond: { N: String(requestsPerSecond) } },
    }));
  } finally {
    ddb.destroy();
  }
}

export function burstKey(i: number): string {
  return `burst-${String(i + 1).padStart(3, '0')}`;
}

/** Every key that has a secret in the keyed suite. */
function keysWithSecrets(): string[] {
  return [SUITE_KEY, LIMIT_CHANGE.key, ...MISSING_CREDENTIAL_KEYS.withSecret, ...Array.from({ length: BURST_KEYS }, (_, i) => burstKey(i))];
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
    {
      id: 'key-limit-change',
      title: `A key's limit lowered mid-run: ${LIMIT_CHANGE.requests} requests of '${LIMIT_CHANGE.key}' at ${LIMIT_CHANGE.fromRps} per second, `
        + `its settings item rewritten to ${LIMIT_CHANGE.toRps} per second ${LIMIT_CHANGE.writtenAfterMs / 1000} s in; the vendor holds the key to `
        + `${LIMIT_CHANGE.toRps} from C + cache (${SUITE_KEY_SETTINGS_CACHE_TTL_MS / 1000} s) + H (${KEY_HORIZON_MS / 1000} s) + L`,
      expected: `all succeed; no call over the key's limit in force (the old one before the change binds, ${LIMIT_CHANGE.toRps} per second after) or the contract`,
      requests: LIMIT_CHANGE.requests,
      keyOf: () => LIMIT_CHANGE.key,
      beforeStart: (ctx) => writeKeyRate(ctx, LIMIT_CHANGE.key, LIMIT_CHANGE.fromRps),
      duringRun: async (ctx, startedAtMs) => {
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, startedAtMs + LIMIT_CHANGE.writtenAfterMs - Date.now())));
        await writeKeyRate(ctx, LIMIT_CHANGE.key, LIMIT_CHANGE.toRps);
      },
      vendorAt: (ctx, startedAtMs) => ({
        accounts: {
          ...keySuiteAccounts(),
          requestsPerSecondByKey: { [LIMIT_CHANGE.key]: LIMIT_CHANGE.fromRps },
          requestsPerSecondScheduleByKey: {
            [LIMIT_CHANGE.key]: [{ atMs: limitChangeBindsAtMs(ctx, startedAtMs), requestsPerSecond: LIMIT_CHANGE.toRps }],
          },
        },
      }),
    },
  ];
}
