/**
 * `keys-500-burst`: the design's burst of new keys (docs/design/per-key-limits.md, section 6 item
 * 6: "500 keys first seen within 1 s: default settings, items created, no violation, settings reads
 * <= keys * dispatcher environments"), on the real dispatcher in virtual time
 * (local/bench-dispatch-model.ts). The fault suite's `key-burst` runs 12 keys on the local runtime,
 * whose timing does not carry more on 2 cores; this row carries the 500.
 *
 * What is real: `dispatchBatch` (per-key pacing, set-asides) and the key settings source
 * (src/shared/key-settings.ts `KeySettings`: BatchGetItem per batch for the keys it has not cached,
 * 100 keys per call, UnprocessedKeys retried, LRU cache with the 30 s TTL). Each dispatcher
 * environment (a lane of the model: the event source mapping's maximum concurrency, none recycled
 * during the run) gets its own `KeySettings`, as the handler keeps one per execution environment at
 * module scope (dispatcher.lambda.ts). The settings table is a modeled table (dynalite's item code,
 * bench-dynamo-items.ts) that counts every BatchGetItem and every key it was asked for, per
 * environment.
 *
 * The load: 500 keys never seen before, each offered `requestsPerKey` requests, all within the first
 * second (each key's first request at a random time in it, its others between that and the end of
 * the second). Most keys have no settings item (the deploy-time defaults apply); every tenth has an
 * override item (alternately slower and faster than the default).
 */
import { AttributeValue, BatchGetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import {
  DispatchModelRun, keyFigures, ModeledRequest, ModelEnvironmentContext, rateOnlyKeyLimits, runDispatchModel,
} from './bench-dispatch-model';
import { DynamoItems } from './bench-dynamo-items';
import { LATENCY_MODEL, LatencyModel, pacingKnobs, PacingKnobs, round, seededRandom } from './bench-model';
import { keyIntervalMs } from '../src/rate-controlled-queue-consumer/key-schedule';
import { ConsumerEnv } from '../src/shared/env';
import { KEY_LIMITS_ENV, keyPacerItemKey, KeyLimitsSource, KeyLimitsSpec } from '../src/shared/key-limits';
import { KEY_SETTINGS_CACHE_TTL_MS, KeySettings } from '../src/shared/key-settings';

export interface KeyBurstLoad {
  readonly contractRps: number;
  /** Keys first seen in the burst. */
  readonly keys: number;
  readonly requestsPerKey: number;
  /** Every request is offered within this span from the start. */
  readonly burstMs: number;
  /** The deploy-time per-key rate (`KeyLimits.of({ requestsPerSecond })`): keys without an item get it. */
  readonly defaultKeyRps: number;
  /** Every `overrideEvery`-th key (the first included) has an override item. */
  readonly overrideEvery: number;
  /** The override items' rates, in turn. */
  readonly overrideRps: readonly number[];
  readonly seed: number;
}

/**
 * 500 keys x 3 requests in 1 s under a 100 RPS contract: 15 x the contract for a second, so the
 * contract binds (ideal drain 15 s); a key's 3 requests in one second are over its own limit too (2
 * RPS by default, 1 RPS for half the overrides), so every key is paced by the dispatcher.
 */
export const KEYS_500_BURST: KeyBurstLoad = {
  contractRps: 100, keys: 500, requestsPerKey: 3, burstMs: 1000, defaultKeyRps: 2, overrideEvery: 10, overrideRps: [1, 5], seed: 500,
};

/** The settings table's name in the model (the dispatcher reads it with KEY_SETTINGS_TABLE). */
export const MODEL_KEY_SETTINGS_TABLE = 'bench-key-settings';

/** The burst's keys, `tenant-0000`, ... */
export function burstKeys(load: Pick<KeyBurstLoad, 'keys'>): string[] {
  return Array.from({ length: load.keys }, (_, k) => `tenant-${String(k).padStart(4, '0')}`);
}

/** The keys with an override item and the rate it sets. */
export function burstOverrides(load: KeyBurstLoad): Map<string, number> {
  return new Map(burstKeys(load).flatMap((key, k): Array<[string, number]> => (k % load.overrideEvery === 0
    ? [[key, load.overrideRps[(k / load.overrideEvery) % load.overrideRps.length]]] : [])));
}

/** Each key's limits in force: its override's rate, else the defaults. */
export function burstLimitsInForce(load: KeyBurstLoad): Map<string, KeyLimitsSpec> {
  const overrides = burstOverrides(load);
  return new Map(burstKeys(load).map((key) => [key, rateOnlyKeyLimits(overrides.get(key) ?? load.defaultKeyRps)]));
}

/** The offered requests, in time order: each key's first at a random time in the burst, its others after it, within it. */
export function keyBurstRequests(load: KeyBurstLoad): ModeledRequest[] {
  const random = seededRandom(load.seed);
  const requests: ModeledRequest[] = [];
  for (const key of burstKeys(load)) {
    const first = random() * load.burstMs;
    requests.push({ atMs: first, key });
    for (let n = 1; n < load.requestsPerKey; n++) {
      requests.push({ atMs: first + random() * (load.burstMs - first), key });
    }
  }
  return requests.sort((a, b) => a.atMs - b.atMs);
}

/** What one environment asked the settings table for. */
export interface EnvironmentReads {
  /** BatchGetItem calls. */
  requests: number;
  /** Keys asked for, over all calls (a key asked for twice counts twice). */
  keysRead: number;
  /** The distinct keys asked for. */
  readonly distinctKeys: Set<string>;
}

/**
 * The key settings table of the model: items written with PutItem, read by the dispatchers'
 * `KeySettings` with BatchGetItem (dynalite's item code, so at most 100 keys per call as on AWS),
 * each call a DynamoDB round trip, counted per environment.
 */
export class ModeledKeySettingsTable {
  private readonly items = new DynamoItems();
  public readonly reads = new Map<number, EnvironmentReads>();
  /** The most keys one BatchGetItem asked for. */
  public maxKeysPerRequest = 0;

  constructor(public readonly tableName = MODEL_KEY_SETTINGS_TABLE) {}

  /** Writes a key's override item (what an operator writes, docs/operations.md). */
  public put(key: string, fields: Record<string, AttributeValue>): void {
    this.items.send(new PutItemCommand({ TableName: this.tableName, Item: { pk: { S: key }, ...fields } }));
  }

  /** One environment's DynamoDB client on the table. */
  public client(environment: number, context: Pick<ModelEnvironmentContext, 'clock' | 'dynamodbRoundTripMs'>): { send(command: unknown): Promise<unknown> } {
    const reads: EnvironmentReads = { requests: 0, keysRead: 0, distinctKeys: new Set() };
    this.reads.set(environment, reads);
    return {
      send: async (command: unknown) => {
        if (!(command instanceof BatchGetItemCommand)) {
          throw new Error(`modeled key settings table: unexpected command ${(command as object).constructor.name}`);
        }
        const keys = (command.input.RequestItems?.[this.tableName]?.Keys ?? []).map((key) => key.pk?.S ?? '');
        reads.requests++;
        reads.keysRead += keys.length;
        for (const key of keys) reads.distinctKeys.add(key);
        this.maxKeysPerRequest = Math.max(this.maxKeysPerRequest, keys.length);
        const rtt = context.dynamodbRoundTripMs();
        await context.clock.sleep(rtt / 2);
        let answer: unknown;
        let refused: unknown;
        try {
          answer = this.items.send(command);
        } catch (error) {
          refused = error;
        }
        await context.clock.sleep(rtt / 2);
        if (refused !== undefined) throw refused;
        return answer;
      },
    };
  }

  /** Every environment's reads added up. */
  public totals(): {
    environments: number; requests: number; keysRead: number; distinctKeysPerEnvironmentSum: number; maxKeysReadByOneEnvironment: number;
  } {
    const all = [...this.reads.values()];
    return {
      environments: all.length,
      requests: all.reduce((n, r) => n + r.requests, 0),
      keysRead: all.reduce((n, r) => n + r.keysRead, 0),
      distinctKeysPerEnvironmentSum: all.reduce((n, r) => n + r.distinctKeys.size, 0),
      maxKeysReadByOneEnvironment: Math.max(0, ...all.map((r) => r.keysRead)),
    };
  }
}

/**
 * One `KeySettings` per dispatcher environment on `table`, as the handler builds it
 * (keySettingsFromEnv: the deploy-time defaults, the contract's limits as the caps).
 */
export function keySettingsPerEnvironment(
  table: ModeledKeySettingsTable, defaults: KeyLimitsSpec, contractRps: number, warnings: { count: number },
): (environment: number, context: ModelEnvironmentContext) => KeyLimitsSource {
  return (environment, context) => new KeySettings({
    dynamodb: table.client(environment, context) as never,
    tableName: table.tableName,
    defaults,
    contract: { requestsPerSecond: contractRps, quotas: {} },
    now: () => context.clock.now(),
    sleep: (ms) => context.clock.sleep(ms),
    logger: { warn: () => { warnings.count++; } },
    metrics: context.metrics,
  });
}

/** A burst run with the figures the row reports. */
export interface KeyBurstRun {
  readonly run: DispatchModelRun;
  readonly table: ModeledKeySettingsTable;
  /** The row's own figures (bench-keys.ts adds the run's common ones). */
  readonly figures: Record<string, number | string>;
  /** The design's checks, each met or not. */
  readonly targets: Record<string, boolean>;
}

/** Runs the burst on the real dispatcher: one key settings cache per dispatcher environment. */
export async function runKeyBurst(model: LatencyModel, knobs: PacingKnobs, load: KeyBurstLoad = KEYS_500_BURST): Promise<KeyBurstRun> {
  const table = new ModeledKeySettingsTable();
  for (const [key, rps] of burstOverrides(load)) table.put(key, { requestsPerSecond: { N: String(rps) } });
  const defaults = rateOnlyKeyLimits(load.defaultKeyRps);
  const warnings = { count: 0 };
  const requests = keyBurstRequests(load);
  const run = await runDispatchModel({
    rps: load.contractRps,
    requests,
    keyLimitsPerEnvironment: keySettingsPerEnvironment(table, defaults, load.contractRps, warnings),
    // As the construct sets the dispatcher for `perKey`: the defaults, a key required, the table's name.
    dispatcherEnv: {
      [KEY_LIMITS_ENV]: JSON.stringify(defaults), [ConsumerEnv.REQUIRE_REQUEST_KEY]: 'true',
    },
    model,
    knobs,
    seed: load.seed,
  });
  return { run, table, ...keyBurstFigures(run, table, load, requests, knobs.latenessToleranceMs, warnings.count) };
}

/** The row's figures and checks. */
export function keyBurstFigures(
  run: DispatchModelRun, table: ModeledKeySettingsTable, load: KeyBurstLoad, requests: readonly ModeledRequest[],
  latenessToleranceMs: number, settingsWarnings: number,
): Pick<KeyBurstRun, 'figures' | 'targets'> {
  const limits = burstLimitsInForce(load);
  const figures = keyFigures(run, load.contractRps, limits);
  const keyViolations = [...figures.perKey.values()].reduce((sum, f) => sum + f.violations, 0);
  const lost = run.requests - run.delivered;
  const servedPerKey = new Map<string, number>();
  for (const call of run.calls) servedPerKey.set(call.key!, (servedPerKey.get(call.key!) ?? 0) + 1);
  const keysServedInFull = [...limits.keys()].filter((key) => servedPerKey.get(key) === load.requestsPerKey).length;

  // Settings reads: each environment reads a key at most once per cache TTL (30 s), so over a
  // burst drained within the TTL, keys read <= keys x environments, whatever the requests per key.
  const reads = table.totals();
  const readBound = load.keys * run.lanes;

  // Items created: one key-pacer item per key, with the interval of the key's limit in force; no
  // other per-key item (no per-key places or quotas are configured).
  const stored = run.items.storedByPrefix();
  const keyItems = Object.entries(stored).filter(([prefix]) => prefix.startsWith('key-'));
  const keyPacerItems = stored['key-pacer'] ?? 0;
  const wrongInterval = [...limits].filter(([key, spec]) => {
    const interval = run.items.item(keyPacerItemKey(key))?.intervalMs?.N;
    return interval === undefined || Number(interval) !== keyIntervalMs(spec, latenessToleranceMs);
  }).length;

  const firstOfferedMs = run.runStartMs + Math.min(...requests.map((r) => r.atMs));
  const lastArrival = Math.max(...run.calls.map((c) => c.arrivedAt));
  const drainMs = Math.round(lastArrival - firstOfferedMs);
  const idealDrainMs = Math.round((1000 * requests.length) / load.contractRps);
  return {
    figures: {
      'keys': load.keys,
      'requestsPerKey': load.requestsPerKey,
      'burstMs': load.burstMs,
      'defaultKeyRps': load.defaultKeyRps,
      'keysWithOverrideItem': burstOverrides(load).size,
      'environments': run.lanes,
      lost,
      keysServedInFull,
      'contractViolations': figures.contract.violations,
      'contractMaxInAnySecond': figures.contract.maxInAnySecond,
      keyViolations,
      'keysOverLimit': [...figures.perKey.values()].filter((f) => f.violations > 0).length,
      'settings.batchGetItemRequests': reads.requests,
      'settings.keysRead': reads.keysRead,
      'settings.boundKeysTimesEnvironments': readBound,
      // A drain longer than the cache's TTL reads a key again in an environment once per TTL at most.
      'settings.boundKeysTimesEnvironmentsPerTtl': readBound * (Math.floor((run.runEndMs - run.runStartMs) / KEY_SETTINGS_CACHE_TTL_MS) + 1),
      'settings.keysReadPerRequestOffered': round(reads.keysRead / run.requests, 3),
      'settings.maxKeysPerBatchGetItem': table.maxKeysPerRequest,
      'settings.maxKeysReadByOneEnvironment': reads.maxKeysReadByOneEnvironment,
      // A key read again by the same environment (after its TTL, or a failed read): 0 within the TTL.
      'settings.rereadsInOneEnvironment': reads.keysRead - reads.distinctKeysPerEnvironmentSum,
      'settings.warnings': settingsWarnings,
      ...Object.fromEntries(keyItems.map(([prefix, n]) => [`items.${prefix}`, n])),
      'keyPacerItemsWithWrongInterval': wrongInterval,
      drainMs,
      idealDrainMs,
      'drainOverIdeal': round(drainMs / idealDrainMs, 3),
    },
    targets: {
      keyV0: keyViolations === 0,
      contractV0: figures.contract.violations === 0,
      lost0: lost === 0 && keysServedInFull === load.keys,
      settingsReadsWithinKeysTimesEnvironments: reads.keysRead <= readBound && reads.requests <= readBound,
      keyItemsAsExpected: keyPacerItems === load.keys && keyItems.length === 1 && wrongInterval === 0,
    },
  };
}

/** The row's figures as one line of the bench's table (bench.ts). */
export function keyBurstLine(d: Record<string, number | string>): string {
  return `V per key ${d.keyViolations}, contract V ${d.contractViolations}; lost ${d.lost}; settings keys read ${d['settings.keysRead']} `
    + `in ${d['settings.batchGetItemRequests']} BatchGetItem (bound keys x environments ${d['settings.boundKeysTimesEnvironments']}); `
    + `key-pacer items ${d['items.key-pacer']}; drain ${d.drainMs} ms vs ideal ${d.idealDrainMs} ms`;
}

/**
 * Variants of the burst, for the figures docs/benchmark.md quotes beside the row:
 *   npx ts-node --transpile-only --project local/tsconfig.json local/bench-key-burst.ts '{"contractRps":20}'
 * (any `KeyBurstLoad` field). Prints the figures, the targets and the vendor's arrivals per second.
 */
if (require.main === module) {
  const load: KeyBurstLoad = { ...KEYS_500_BURST, ...JSON.parse(process.argv[2] ?? '{}') as Partial<KeyBurstLoad> };
  const model = LATENCY_MODEL;
  runKeyBurst(model, pacingKnobs(model), load).then(({ run, figures, targets }) => {
    const perSecond: number[] = [];
    for (const arrival of run.vendorArrivals) {
      const second = Math.floor((arrival.at - run.runStartMs) / 1000);
      perSecond[second] = (perSecond[second] ?? 0) + 1;
    }
    process.stdout.write(`${JSON.stringify({ load, figures, targets, arrivalsPerSecond: Array.from(perSecond, (n) => n ?? 0), metrics: run.metrics })}\n`);
  }, (error) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
