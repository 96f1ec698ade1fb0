/**
 * Per-key limits (`VendorContract.of({ perKey: KeyLimits.of({...}) })`, issue 15; design
 * docs/design/per-key-limits.md): what they add to each call, to each set-aside, to each active
 * key and to each idle key. Present only when the dispatcher's environment has `KEY_LIMITS` (the
 * deploy-time defaults the construct writes) and `KEY_SETTINGS_TABLE_NAME`; the per-key jobs in
 * flight and quotas are read from the same `KEY_LIMITS` (a key's limits are some of the contract's).
 *
 * The requests the code makes, per call of a key (a submission or a result fetch: both are paced):
 *
 * - dispatcher, per distinct key in a batch (rate-controlled-queue-consumer/dispatch-keys.ts,
 *   key-schedule.ts, key-set-aside.ts): one consistent read of the key's `key-pacer#<key>` item
 *   (in a BatchGetItem, billed per item: 1 RRU under 4 KB), the plan write (`plannedUntilMs`, one
 *   conditional UpdateItem) and the key's slot write (`lastSlotAtMs`, one conditional UpdateItem);
 *   the key's settings (shared/key-settings.ts: an eventually consistent BatchGetItem, 0.5 RRU per
 *   key, on a cache miss: once per key per 30 s per execution environment); one more EMF document
 *   (the key's figures, shared/handler-metrics.ts);
 * - vendor caller, per call: the pause check's second consistent GetItem, of the key's item
 *   (vendor-call.ts `readPauseBeforeSlot`, in parallel with the contract's: no added time), and one
 *   more EMF document (its VendorCalls count goes into the key's document);
 * - with per-key quotas: the dispatcher's eventually consistent read of the batch's keys' counters
 *   (0.5 RRU per key and quota per batch, key-quota-check.ts) and the caller's conditional ADD on the
 *   key's counter per quota per call (contract/key-quota-ledger.ts);
 * - with per-key jobs in flight, per submission (result fetches hold no place): the key's
 *   provisional take and its renewal (two conditional UpdateItems of the key's places item,
 *   shared/key-places.ts), and at the callback the processor's consistent GetItem of the request's
 *   key from the correlation item and the release (one more UpdateItem).
 *
 * How many distinct keys a batch holds is the one figure the template cannot say: it depends on
 * how the traffic spreads over keys. The model takes every active key calling at the same rate,
 * `--key-call-rps` (so `trafficRps / keyCallRps` active keys), each key's calls arriving
 * independently (Poisson), so a batch of F messages holds `K (1 - e^(-F/K))` distinct keys on
 * average: about F with many quiet keys (every call pays the per-key reads and writes), about 1 with
 * one hot key (its batch shares them). Stated in every derivation.
 *
 * Off the happy path and priced on their own: a set-aside (a key with no slot within the horizon,
 * or paused: one delayed copy, its pass through the queue and a batch again, the key's set-aside
 * cursor write); a lost key write (another dispatcher reserved the key first: a re-read and a
 * write again, `KeySlotsWasted` when the slot cannot be kept) is not priced.
 */
import { LATENCY_MS, SECONDS_PER_MONTH, SIZE_BYTES, SQS_CHUNK_BYTES, SQS_MESSAGES_PER_CALL } from './assumptions';
import type { StackDerivation } from './derive';
import { fmt, fmtBytes, FunctionModel, logLine, QueueFeed } from './derive';
import { jobPlacesItemBytes } from './jobs-in-flight';
import { DesignCost, DesignUsage, MonthlyLine, priceDesign, UsageLine } from './model';
import { credentialEnvironments } from './per-key-credentials';
import { RegionPrices } from './prices';
import { LocalTemplate } from '../local/template';
import { DynamicDelayEnv } from '../src/rate-controlled-queue-consumer/dynamic-delay-env';
import { ConsumerEnv } from '../src/shared/env';
import { JOB_PLACES_ITEM_KEY } from '../src/shared/job-places';
import { KEY_LIMITS_ENV, KEY_SETTINGS_CACHE_TTL_ENV, KEY_SETTINGS_TABLE_ENV, keyPacerItemKey, keyPlacesItemKey, KeyLimitsSpec } from '../src/shared/key-limits';
import { KEY_SETTINGS_CACHE_MAX_KEYS, KEY_SETTINGS_CACHE_TTL_MS, parseKeyLimitsSpec } from '../src/shared/key-settings';

/** A key as stored (a customer or tenant id): the size the correlation item already assumes for an attribute of unknown content. */
export const KEY_BYTES = SIZE_BYTES.unknownAttribute;

/**
 * A key's `key-pacer#<key>` item: the key, its last slot, interval, TTL, a plan and its owner, one
 * set-aside cursor (numbers of about 8 bytes and their names). Well under 1 KB: every write 1 WRU,
 * every consistent read 1 RRU.
 */
export const KEY_PACER_ITEM_BYTES = 2 + 'key-pacer#'.length + KEY_BYTES
  + ['lastSlotAtMs', 'intervalMs', 'expiresAt', 'plannedUntilMs', 'plannedBy', 'asideUntilMs#normal'].reduce((sum, name) => sum + name.length + 9, 0);

/** DynamoDB's storage overhead per item (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html). */
export const ITEM_STORAGE_OVERHEAD_BYTES = 100;

/** Per-key limits as read from the template, with the traffic's spread over keys. */
export interface PerKeyLimitsModel {
  /** The deploy-time defaults every key gets (`KEY_LIMITS`). */
  readonly defaults: KeyLimitsSpec;
  /** The key settings table's logical id (or its name, when it is in another stack). */
  readonly settingsTable: string;
  readonly pacerTable: string;
  /** Calls per second of each active key (`--key-call-rps`; default the per-key limit). */
  readonly keyCallRps: number;
  /** trafficRps / keyCallRps. */
  readonly activeKeys: number;
  /** Messages per dispatcher batch (the request feed's fill). */
  readonly fill: number;
  /** Distinct keys in a batch, on average. */
  readonly distinctKeysPerBatch: number;
  /** The dispatcher's execution environments (the event source mapping's maximum concurrency, else 5 pollers). */
  readonly dispatcherEnvironments: number;
  /** Settings reads (one key each) per call, and how that was obtained. */
  readonly settingsReadsPerCall: number;
  readonly settingsRule: string;
  /** The contract's quotas the keys have a limit of (quota count). */
  readonly keyQuotas: number;
  /** The per-key jobs-in-flight limit, when both the key and the contract have one. */
  readonly keyMaxJobsInFlight?: number;
  /** Bytes of a key's override item in the settings table (every field of the defaults overridden: an upper bound). */
  readonly settingsItemBytes: number;
  /**
   * The dispatcher publishes metrics without a key on the happy path (run-time rate, adaptive
   * pacing, jobs in flight): its keyless EMF document stays beside the keys' documents.
   */
  readonly dispatcherKeylessMetrics: boolean;
}

/** What {@link perKeyLimitsOf} needs from the rest of the derivation. */
export interface PerKeyContext {
  readonly trafficRps: number;
  /** `--key-call-rps`; default the per-key limit in `KEY_LIMITS`. */
  readonly keyCallRps?: number;
  readonly requestFeed: QueueFeed;
  readonly pacerTable: string;
  /** The contract's quota count (dispatcher QUOTAS). */
  readonly contractQuotas: number;
  /** The contract's jobs-in-flight limit (dispatcher MAX_JOBS_IN_FLIGHT). */
  readonly maxJobsInFlight?: number;
}

/** Average distinct keys in a batch of `fill` messages spread over `keys` equally active keys whose calls arrive independently. */
export function distinctKeysPerBatch(fill: number, keys: number): number {
  if (keys <= 1) {
    return 1;
  }
  return Math.min(fill, keys * (1 - Math.exp(-fill / keys)));
}

/** The stack's per-key limits (dispatcher KEY_LIMITS), or undefined without them. */
export function perKeyLimitsOf(t: LocalTemplate, consumerEnv: Record<string, string>, c: PerKeyContext): PerKeyLimitsModel | undefined {
  const defaults = parseKeyLimitsSpec(consumerEnv);
  if (defaults === undefined) {
    return undefined;
  }
  const tableName = consumerEnv[KEY_SETTINGS_TABLE_ENV];
  if (tableName === undefined || tableName.trim() === '') {
    throw new Error(`The dispatcher has ${KEY_LIMITS_ENV} but no ${KEY_SETTINGS_TABLE_ENV}: not what the orchestrator synthesizes`);
  }
  const keyCallRps = c.keyCallRps ?? defaults.requestsPerSecond;
  if (!Number.isFinite(keyCallRps) || keyCallRps <= 0) {
    throw new Error(`keyCallRps must be a number greater than 0, got ${keyCallRps}`);
  }
  const activeKeys = Math.max(1, c.trafficRps / keyCallRps);
  const fill = c.requestFeed.fill;
  const distinct = distinctKeysPerBatch(fill, activeKeys);
  const environments = c.requestFeed.maxConcurrency ?? 5;
  // The cache period: the library's 30 s (KEY_SETTINGS_CACHE_TTL_MS is set only by the local fault suite).
  const ttlOverride = Number(consumerEnv[KEY_SETTINGS_CACHE_TTL_ENV]);
  const ttlSeconds = (consumerEnv[KEY_SETTINGS_CACHE_TTL_ENV] !== undefined && Number.isFinite(ttlOverride) && ttlOverride > 0
    ? ttlOverride : KEY_SETTINGS_CACHE_TTL_MS) / 1000;
  // Each batch asks for its distinct keys; a key is read again once its cached limits are 30 s old
  // in that environment, or when the environment holds more keys than it caches.
  const askedPerSecond = (c.trafficRps / fill) * distinct;
  const cacheBound = (activeKeys * environments) / ttlSeconds;
  const overflow = activeKeys > KEY_SETTINGS_CACHE_MAX_KEYS;
  const readsPerSecond = overflow ? askedPerSecond : Math.min(askedPerSecond, cacheBound);
  const settingsRule = overflow
    ? `${fmt(activeKeys)} active keys is more than the ${KEY_SETTINGS_CACHE_MAX_KEYS} an environment caches: every key a batch holds is read (an upper bound)`
    : `min(keys asked for, ${fmt(askedPerSecond, 3)}/s = ${fmt(c.trafficRps / fill, 3)} batches/s x ${fmt(distinct, 2)} keys; `
      + `cache misses, ${fmt(cacheBound, 3)}/s = ${fmt(activeKeys)} active keys x ${environments} dispatcher environment(s) / ${ttlSeconds} s cache) `
      + `= ${fmt(readsPerSecond, 3)} key reads/s over ${fmt(c.trafficRps)} calls/s (assumes every key is asked for in every environment within each ${ttlSeconds} s: an upper bound)`;
  const keyQuotas = c.contractQuotas > 0 ? Object.keys(defaults.quotas).length : 0;
  const settingsTable = t.findByName(tableName, 'AWS::DynamoDB::Table')?.logicalId ?? `${tableName} (another stack's)`;
  const numberField = (name: string) => name.length + 9;
  const settingsItemBytes = 2 + KEY_BYTES + numberField('requestsPerSecond')
    + (defaults.maxJobsInFlight !== undefined ? numberField('maxJobsInFlight') : 0)
    + (keyQuotas > 0 ? 'quotas'.length + 3 + Object.keys(defaults.quotas).reduce((sum, name) => sum + numberField(name) + 1, 0) : 0)
    + 'paused'.length + 1;
  return {
    defaults,
    settingsTable,
    pacerTable: c.pacerTable,
    keyCallRps,
    activeKeys,
    fill,
    distinctKeysPerBatch: distinct,
    dispatcherEnvironments: environments,
    settingsReadsPerCall: readsPerSecond / c.trafficRps,
    settingsRule,
    keyQuotas,
    ...(defaults.maxJobsInFlight !== undefined && c.maxJobsInFlight !== undefined ? { keyMaxJobsInFlight: defaults.maxJobsInFlight } : {}),
    settingsItemBytes,
    dispatcherKeylessMetrics: [DynamicDelayEnv.APPLICATION_ID, ConsumerEnv.ADAPTIVE_PACING, ConsumerEnv.MAX_JOBS_IN_FLIGHT]
      .some((name) => (consumerEnv[name] ?? '').trim() !== ''),
  };
}

/** The roles per-key limits add work to. */
export interface PerKeyFunctions {
  readonly dispatcher: FunctionModel;
  readonly processor: FunctionModel;
  /** Absent with PacingPoint.DISPATCH (per-key limits need the vendor caller: synth-time check). */
  readonly vendorCaller?: FunctionModel;
  /** Size of the correlation item (the processor reads the request's key from it). */
  readonly correlationItemBytes: number;
  readonly correlationTable: string;
}

const gbSeconds = (ms: number, fn: FunctionModel) => (ms / 1000) * (fn.memoryMb / 1024);
const gbPrice = (fn: FunctionModel) => (fn.arm ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86') as 'lambdaGbSecondArm' | 'lambdaGbSecondX86';
const emfBytes = SIZE_BYTES.emfDocument + SIZE_BYTES.logEventOverhead;

/**
 * Usage lines per call of a key (`submission`: a submitJobTask request, which also takes the key's
 * job place; false: a result fetch). Their sum is what per-key limits add to a call.
 */
export function perKeyLines(m: PerKeyLimitsModel, f: PerKeyFunctions, submission: boolean): UsageLine[] {
  const perBatch = m.distinctKeysPerBatch / m.fill;
  const spread = `${fmt(m.distinctKeysPerBatch, 2)} distinct key(s) in a batch of ${fmt(m.fill)} (${fmt(m.activeKeys)} active keys at ${fmt(m.keyCallRps, 3)} calls/s each, calls independent)`;
  // Sequential round trips per batch: the settings read (on a miss), the keys' items, the plans (in
  // parallel), the keys' slot writes (in parallel); plus the quota counters.
  // A batch reads settings when any of its keys misses: at most once, at most as often as keys are read.
  const settingsMissPerBatch = Math.min(1, m.settingsReadsPerCall * m.fill);
  const dispatcherTrips = 3 + settingsMissPerBatch + (m.keyQuotas > 0 ? 1 : 0);
  const extraDocuments = Math.max(0, m.distinctKeysPerBatch - (m.dispatcherKeylessMetrics ? 0 : 1));
  const lines: UsageLine[] = [
    {
      service: 'dynamodb',
      what: `dispatcher ${m.pacerTable} BatchGetItem (key pacer items)`,
      perRequest: perBatch,
      price: 'dynamodbReadRequestUnit',
      derivation: `1 RRU per distinct key per batch (consistent, each item billed alone, ${keyPacerItemKey('<key>')} ~${fmtBytes(KEY_PACER_ITEM_BYTES)} < 4 KB): ${spread}`,
    },
    {
      service: 'dynamodb',
      what: `dispatcher ${m.settingsTable} BatchGetItem (key settings, cached)`,
      perRequest: 0.5 * m.settingsReadsPerCall,
      price: 'dynamodbReadRequestUnit',
      derivation: `0.5 RRU per key read (eventually consistent; a key without an override item counted as a read too): ${m.settingsRule}`,
    },
    {
      service: 'dynamodb',
      what: `dispatcher ${m.pacerTable} UpdateItem (key plan)`,
      perRequest: perBatch,
      price: 'dynamodbWriteRequestUnit',
      derivation: `1 conditional write (plannedUntilMs, < 1 KB: 1 WRU) per distinct key with calls kept per batch: ${spread}`,
    },
    {
      service: 'dynamodb',
      what: `dispatcher ${m.pacerTable} UpdateItem (key slots)`,
      perRequest: perBatch,
      price: 'dynamodbWriteRequestUnit',
      derivation: '1 conditional write (lastSlotAtMs, 1 WRU) per distinct key that got slots per batch; no lost key write assumed (each adds 1 RRU + 1 WRU)',
    },
    {
      service: 'lambda',
      what: 'dispatcher duration (per-key limits)',
      perRequest: gbSeconds((dispatcherTrips * LATENCY_MS.dynamodbCall) / m.fill, f.dispatcher),
      price: gbPrice(f.dispatcher),
      derivation: `${fmt(dispatcherTrips, 2)} more DynamoDB round trips per batch (settings on a miss, key items, plans, key slot writes${m.keyQuotas > 0 ? ', key quota counters' : ''}) `
        + `x ${LATENCY_MS.dynamodbCall} ms / ${fmt(m.fill)} x ${f.dispatcher.memoryMb} MB`,
    },
    logLine('dispatcher logs (per-key limits)', (emfBytes * extraDocuments) / m.fill,
      `an EMF document (${SIZE_BYTES.emfDocument} B) per distinct key per batch (the key's figures: requestKey, keyTotals) `
      + `${m.dispatcherKeylessMetrics ? 'beside the keyless one (run-time rate, adaptive pacing or jobs in flight)' : 'instead of the keyless one (no keyless metric on the happy path)'}: `
      + `${fmt(extraDocuments, 2)} more per batch of ${fmt(m.fill)}`),
  ];
  if (f.vendorCaller) {
    lines.push({
      service: 'dynamodb',
      what: `vendor caller ${m.pacerTable} GetItem (key pause check)`,
      perRequest: 1,
      price: 'dynamodbReadRequestUnit',
      derivation: 'the pause check\'s second strongly consistent read, the key\'s item (< 4 KB): 1 RRU per call, in parallel with the contract\'s (no added time)',
    });
    lines.push(logLine('vendor caller logs (per-key limits)', emfBytes,
      'one more EMF document per call: VendorCalls goes into the key\'s document, the lateness into the keyless one'));
  }
  if (m.keyQuotas > 0) {
    lines.push({
      service: 'dynamodb',
      what: `dispatcher ${m.pacerTable} BatchGetItem (key quota counters)`,
      perRequest: 0.5 * m.keyQuotas * perBatch,
      price: 'dynamodbReadRequestUnit',
      derivation: `0.5 RRU per distinct key per quota (${m.keyQuotas}) per batch (eventually consistent): ${spread}`,
    });
    lines.push({
      service: 'dynamodb',
      what: `vendor caller ${m.pacerTable} UpdateItem (key quota units)`,
      perRequest: m.keyQuotas,
      price: 'dynamodbWriteRequestUnit',
      derivation: `one conditional ADD per quota per call on key-quota#<name>#<periodStart>#<key> (${m.keyQuotas} quota(s), < 1 KB: 1 WRU each), before the contract's`,
    });
  }
  if (submission && m.keyMaxJobsInFlight !== undefined) {
    const placesBytes = jobPlacesItemBytes(m.keyMaxJobsInFlight) - JOB_PLACES_ITEM_KEY.length + keyPlacesItemKey('').length + KEY_BYTES;
    const placeUnits = Math.ceil(placesBytes / 1024);
    const sized = `${placeUnits} WRU: the key's places item with ${m.keyMaxJobsInFlight} places (per-key maxJobsInFlight) is ${fmtBytes(placesBytes)}, billed on its whole size`;
    const readUnits = Math.ceil(Math.max(f.correlationItemBytes, 1) / 4096);
    lines.push(
      {
        service: 'dynamodb',
        what: `dispatcher ${m.pacerTable} UpdateItem (key job place: take and renew)`,
        perRequest: 2 * placeUnits,
        price: 'dynamodbWriteRequestUnit',
        derivation: `the key's provisional take before the contract's place and its renewal after it: 2 conditional writes per job, ${sized}`,
      },
      {
        service: 'lambda',
        what: 'dispatcher duration (key job place)',
        perRequest: gbSeconds(2 * LATENCY_MS.dynamodbCall, f.dispatcher),
        price: gbPrice(f.dispatcher),
        derivation: `2 x ${LATENCY_MS.dynamodbCall} ms per job x ${f.dispatcher.memoryMb} MB (take before, renew after the contract's take)`,
      },
      {
        service: 'dynamodb',
        what: `callback processor ${f.correlationTable} GetItem (request key)`,
        perRequest: readUnits,
        price: 'dynamodbReadRequestUnit',
        derivation: `strongly consistent read of the correlation item (${fmtBytes(f.correlationItemBytes)}, billed on the whole item): ${readUnits} RRU per callback`,
      },
      {
        service: 'dynamodb',
        what: `callback processor ${m.pacerTable} UpdateItem (free the key job place)`,
        perRequest: placeUnits,
        price: 'dynamodbWriteRequestUnit',
        derivation: `one conditional write (REMOVE) per callback, ${sized}`,
      },
      {
        service: 'lambda',
        what: 'callback processor duration (key job place)',
        perRequest: gbSeconds(2 * LATENCY_MS.dynamodbCall, f.processor),
        price: gbPrice(f.processor),
        derivation: `2 x ${LATENCY_MS.dynamodbCall} ms per callback x ${f.processor.memoryMb} MB (the key's read, the release)`,
      },
    );
  }
  return lines;
}

/**
 * One set-aside (a key with no slot within the dispatcher's horizon, or paused): the delayed copy
 * (one SendMessage; the original is deleted with its batch), its return through the request queue
 * (a share of a batch's receive, delete and invocation) and the batch's per-key work again, and the
 * key's set-aside cursor write (one per key per batch: counted per set-aside, an upper bound).
 */
export function setAsideUsage(m: PerKeyLimitsModel, feed: QueueFeed, f: PerKeyFunctions): DesignUsage {
  const chunks = Math.ceil(feed.messageBytes / SQS_CHUNK_BYTES);
  const receives = Math.max(Math.ceil(feed.fill / SQS_MESSAGES_PER_CALL), Math.ceil((feed.fill * feed.messageBytes) / SQS_CHUNK_BYTES)) / feed.fill;
  const deletes = Math.ceil(feed.fill / SQS_MESSAGES_PER_CALL) / feed.fill;
  const again = perKeyLines(m, f, false).filter((l) => l.what.startsWith('dispatcher'));
  const lines: UsageLine[] = [
    { service: 'sqs', what: 'dispatcher request queue SendMessage (delayed copy)', perRequest: chunks, price: 'sqsRequest', derivation: `the request with its turn (keyTurnAtMs), ${fmtBytes(feed.messageBytes)}: ${chunks} x 64 KB chunk` },
    { service: 'sqs', what: 'request queue ReceiveMessage (the copy back)', perRequest: receives, price: 'sqsRequest', derivation: `a share of a batch of ${fmt(feed.fill)}` },
    { service: 'sqs', what: 'request queue DeleteMessageBatch (the copy back)', perRequest: deletes, price: 'sqsRequest', derivation: `a share of a batch of ${fmt(feed.fill)}` },
    { service: 'lambda', what: 'dispatcher invocations (the copy back)', perRequest: 1 / feed.fill, price: 'lambdaRequest', derivation: `a share of a batch of ${fmt(feed.fill)}` },
    {
      service: 'lambda',
      what: 'dispatcher duration (the set-aside)',
      perRequest: gbSeconds(LATENCY_MS.sqsCall + LATENCY_MS.dynamodbCall, f.dispatcher),
      price: gbPrice(f.dispatcher),
      derivation: `${LATENCY_MS.dynamodbCall} ms cursor write + ${LATENCY_MS.sqsCall} ms SendMessage x ${f.dispatcher.memoryMb} MB (an upper bound: both run in parallel across a batch's keys)`,
    },
    {
      service: 'dynamodb',
      what: `dispatcher ${m.pacerTable} UpdateItem (key set-aside cursor)`,
      perRequest: 1,
      price: 'dynamodbWriteRequestUnit',
      derivation: 'one conditional write (asideUntilMs#<priority>, 1 WRU) per key per batch with requests set aside: counted per set-aside (an upper bound)',
    },
    // Back, the copy is a call of its key in a batch again: the per-call dispatcher lines once more.
    ...again.map((l) => ({ ...l, what: `${l.what} (the copy back)`, derivation: 'as for a call of its key (per-call table): the copy is in a batch again' })),
  ];
  return {
    name: 'a set-aside',
    description: 'a request whose key has no slot within the horizon (or is paused) goes back to the request queue as a delayed copy: no receive count, no attempt, no slot',
    lines,
    monthly: [],
  };
}

/** The stored keys' settings items a month (`keys` keys, each with an override: an upper bound), and the active keys' pacer items. */
export function perKeyMonthly(m: PerKeyLimitsModel, keys: number): MonthlyLine[] {
  const gb = 1024 ** 3;
  return [
    {
      what: 'DynamoDB storage (key settings items)',
      quantity: (keys * (m.settingsItemBytes + ITEM_STORAGE_OVERHEAD_BYTES)) / gb,
      price: 'dynamodbStorageGbMonth',
      derivation: `${keys} key(s) (--keys) each with an override item (an upper bound: a key without one stores nothing) of ~${fmtBytes(m.settingsItemBytes)} + ${ITEM_STORAGE_OVERHEAD_BYTES} B; `
        + 'point-in-time recovery (on for this table) adds about as much again',
    },
    {
      what: 'DynamoDB storage (active keys\' pacer items)',
      quantity: (Math.ceil(m.activeKeys) * (KEY_PACER_ITEM_BYTES + ITEM_STORAGE_OVERHEAD_BYTES)) / gb,
      price: 'dynamodbStorageGbMonth',
      derivation: `${fmt(m.activeKeys)} active key(s) x ~${fmtBytes(KEY_PACER_ITEM_BYTES + ITEM_STORAGE_OVERHEAD_BYTES)}; an idle key's item expires (TTL) a day after its last slot`,
    },
  ];
}

/** The monthly line of the key rules, and their per-request line (derive.ts `monthlyLines`, `auditLines`). */
export const KEY_RULES_MONTHLY = 'Contributor Insights rules (keys)';
export const KEY_RULES_EVENTS = 'Contributor Insights matched log events (key rules, at most)';

/** What per-key limits cost: per call, per set-aside, per active key and per idle key a month. */
export interface PerKeyFigures {
  readonly keyCallRps: number;
  readonly activeKeys: number;
  readonly distinctKeysPerBatch: number;
  /** The per-key lines of a submission, priced per million calls. */
  readonly perCall: DesignCost;
  /** A set-aside, priced per million set-asides. */
  readonly setAside: DesignCost;
  /** USD a month of one key calling `keyCallRps` around the clock: its calls' per-key lines, its secret reads (with credentials per key), its idle cost. */
  readonly activeKeyMonthUsd: number;
  readonly activeKeyRule: string;
  /** USD a month of a key that does not call: its override item, its secret (with credentials per key). */
  readonly idleKeyMonthUsd: number;
  readonly idleKeyRule: string;
  /**
   * The key rules (Contributor Insights ranking the keys, orchestrator/key-insights.ts): they come
   * with keys, whatever the number of keys; already in the per-request and monthly tables.
   */
  readonly keyRules: { readonly count: number; readonly monthUsd: number; readonly perMillionUsd: number };
}

/** Prices what per-key limits add (undefined without them). */
export function perKeyFigures(derived: StackDerivation, prices: RegionPrices, trafficRps: number): PerKeyFigures | undefined {
  const m = derived.model.perKeyLimits;
  if (!m || !derived.perKey) {
    return undefined;
  }
  const perCall = priceDesign(derived.perKey.perCall, prices, trafficRps);
  const setAside = priceDesign(derived.perKey.setAside, prices, trafficRps);
  const credential = derived.model.perKeyCredential;
  const p = prices.prices;
  const storageUsd = ((m.settingsItemBytes + ITEM_STORAGE_OVERHEAD_BYTES) / 1024 ** 3) * p.dynamodbStorageGbMonth.usd;
  const secretUsd = credential ? p.secretsManagerSecretMonth.usd : 0;
  const idleKeyMonthUsd = storageUsd + secretUsd;
  const idleKeyRule = `its override item (~${fmtBytes(m.settingsItemBytes + ITEM_STORAGE_OVERHEAD_BYTES)} stored: $${(storageUsd * 1_000_000).toFixed(2)} a month per million keys with an override, `
    + 'none without)'
    + (credential ? ` + its secret ($${secretUsd.toFixed(2)})` : '; no secret (no per-key credentials in the template)')
    + '; its pacer, places and quota items expire (TTL)';
  const callsPerMonth = m.keyCallRps * SECONDS_PER_MONTH;
  const callsUsd = (perCall.perMillionRequestsUsd / 1_000_000) * callsPerMonth;
  // Its secret is read once per cache TTL per credential environment (an upper bound, per-key-credentials.ts).
  const secretReads = credential && credential.cacheTtlSeconds > 0
    ? Math.min(callsPerMonth, (credentialEnvironments(trafficRps) / credential.cacheTtlSeconds) * SECONDS_PER_MONTH)
    : credential ? callsPerMonth : 0;
  const secretReadsUsd = secretReads * p.secretsManagerApiCall.usd;
  const activeKeyMonthUsd = callsUsd + secretReadsUsd + idleKeyMonthUsd;
  const activeKeyRule = `${fmt(m.keyCallRps, 3)} calls/s x 30 days = ${Math.round(callsPerMonth).toLocaleString('en-US')} calls x $${perCall.perMillionRequestsUsd.toFixed(4)} per 1M `
    + `= $${callsUsd.toFixed(4)}${credential ? ` + ${Math.round(secretReads).toLocaleString('en-US')} GetSecretValue ($${secretReadsUsd.toFixed(4)})` : ''} + idle $${idleKeyMonthUsd.toFixed(4)}`;
  const p1m = (what: string) => derived.usage.lines.filter((l) => l.what === what)
    .reduce((sum, l) => sum + l.perRequest * p[l.price].usd * 1_000_000, 0);
  const ruleCount = derived.usage.monthly.filter((l) => l.what === KEY_RULES_MONTHLY).reduce((sum, l) => sum + l.quantity, 0);
  const keyRules = { count: ruleCount, monthUsd: ruleCount * p.contributorInsightsRuleMonth.usd, perMillionUsd: p1m(KEY_RULES_EVENTS) };
  return {
    keyRules,
    keyCallRps: m.keyCallRps,
    activeKeys: m.activeKeys,
    distinctKeysPerBatch: m.distinctKeysPerBatch,
    perCall,
    setAside,
    activeKeyMonthUsd,
    activeKeyRule,
    idleKeyMonthUsd,
    idleKeyRule,
  };
}
