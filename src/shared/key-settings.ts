/**
 * The dispatcher's source of each key's limits in force (issue 15; design
 * docs/design/per-key-limits.md, 2.2-2.3): the deploy-time defaults (`KEY_LIMITS`), with the key's
 * overrides from the key settings table applied, each checked and capped at the contract.
 *
 * Only the dispatchers read the table (a few environments), per key present in a batch, and cache
 * what they read for 30 s per environment (an LRU of 10,000 keys); the vendor callers get the
 * limits in the execution input. So a change written at C is in use by every dispatcher by C + 30 s
 * (plus the reservation horizon for slots already reserved; README, "Per-key limits: settings").
 *
 * The table cannot validate what operators write, so every field is checked when read: a value
 * that cannot be a limit (not a positive number, a quota the contract does not have) falls back to
 * that field's default and is counted (`KeySettingsInvalid`, the key as an EMF property, never a
 * dimension); a value above the contract is capped at the contract (a key cannot be allowed more
 * than all keys together), as the pacer caps the rate operators set in AppConfig. A failed read never
 * fails the batch: the last limits read for the key (even older than 30 s), else the defaults, and
 * `KeySettingsReadFailed`; the contract's own limits hold whatever a key's are.
 *
 * The construct library never imports this module (handler code: the SDK is bundled).
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import { BatchGetItemCommand, type AttributeValue, type BatchGetItemCommandOutput, type DynamoDBClient, type KeysAndAttributes } from '@aws-sdk/client-dynamodb';
import { KEY_LIMITS_ENV, KEY_SETTINGS_CACHE_TTL_ENV, KEY_SETTINGS_TABLE_ENV, type KeyLimitsSource, type KeyLimitsSpec } from './key-limits';
import { MetricNames } from './metrics';
import { UNPROCESSED_RETRY_DELAYS_MS } from './unprocessed-backoff';

/** How long a key's limits read from the table are used before they are read again. */
export const KEY_SETTINGS_CACHE_TTL_MS = 30_000;
/** How many keys one execution environment keeps (a few hundred bytes each); the least recently used go first. */
export const KEY_SETTINGS_CACHE_MAX_KEYS = 10_000;
/**
 * Keys per BatchGetItem call, at most 100
 * (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html).
 */
const BATCH_GET_MAX_KEYS = 100;
/**
 * Waits before reading unprocessed keys again (BatchGetItem returns them when the table throttles;
 * AWS advises retrying them with exponential backoff, API_BatchGetItem.html above). Keys still
 * unprocessed after the last are handled as a failed read.
 */

/** What the contract allows all keys together: a key's override is capped at it. */
export interface KeySettingsContract {
  readonly requestsPerSecond: number;
  /** Absent: the contract has no jobs-in-flight limit, so a key can have none either. */
  readonly maxJobsInFlight?: number;
  /** Per quota name of the contract, its limit per period. */
  readonly quotas: Readonly<Record<string, number>>;
}

export interface KeySettingsDeps {
  readonly dynamodb: Pick<DynamoDBClient, 'send'>;
  readonly tableName: string;
  /** The deploy-time defaults every key gets (`KeyLimits`, KEY_LIMITS). */
  readonly defaults: KeyLimitsSpec;
  readonly contract: KeySettingsContract;
  /** Epoch ms. */
  readonly now: () => number;
  readonly logger: Pick<Logger, 'warn'>;
  /** `key`: an EMF property of the value (shared/handler-metrics.ts), never a dimension. */
  readonly metrics: { addMetric(name: string, unit: 'Count', value: number, key?: string): void };
  /** Default: setTimeout. */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Default KEY_SETTINGS_CACHE_TTL_MS. */
  readonly ttlMs?: number;
  /** Default KEY_SETTINGS_CACHE_MAX_KEYS. */
  readonly maxKeys?: number;
}

interface CachedLimits {
  readonly limits: KeyLimitsSpec;
  readonly readAtMs: number;
}

/**
 * Each key's limits in force, cached. One instance per execution environment (module scope in the
 * handler): Lambda runs one invocation at a time per environment, so no two reads of one key race.
 */
export class KeySettings implements KeyLimitsSource {
  /** Insertion order is recency: the first entry is the least recently used. */
  private readonly cache = new Map<string, CachedLimits>();
  private readonly ttlMs: number;
  private readonly maxKeys: number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly deps: KeySettingsDeps) {
    this.ttlMs = deps.ttlMs ?? KEY_SETTINGS_CACHE_TTL_MS;
    this.maxKeys = deps.maxKeys ?? KEY_SETTINGS_CACHE_MAX_KEYS;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** How many keys are cached (for tests and logs). */
  public get size(): number {
    return this.cache.size;
  }

  /** The limits in force of `keys` (distinct); never throws. */
  public async limitsFor(keys: readonly string[]): Promise<Map<string, KeyLimitsSpec>> {
    const now = this.deps.now();
    const result = new Map<string, KeyLimitsSpec>();
    const toRead: string[] = [];
    for (const key of new Set(keys)) {
      const hit = this.cache.get(key);
      if (hit && now - hit.readAtMs < this.ttlMs) {
        this.touch(key, hit);
        result.set(key, hit.limits);
      } else {
        toRead.push(key);
      }
    }
    if (toRead.length === 0) {
      return result;
    }
    const { items, unread, error } = await this.read(toRead);
    for (const key of toRead) {
      if (unread.has(key)) {
        // Not read: the last limits read for the key, however old, else the defaults; not cached, so
        // the next batch tries again.
        result.set(key, this.cache.get(key)?.limits ?? this.deps.defaults);
        continue;
      }
      const limits = this.limitsOf(key, items.get(key));
      this.touch(key, { limits, readAtMs: now });
      result.set(key, limits);
    }
    if (unread.size > 0) {
      this.deps.logger.warn('could not read the key settings table: the keys keep their last limits read, or the defaults (the contract\'s limits still hold)', {
        tableName: this.deps.tableName, keys: [...unread].slice(0, 10), unreadKeys: unread.size, error,
      });
      this.deps.metrics.addMetric(MetricNames.KEY_SETTINGS_READ_FAILED, 'Count', 1);
    }
    return result;
  }

  /** Marks `key` most recently used (last in the map), dropping the least recently used when full. */
  private touch(key: string, entry: CachedLimits): void {
    this.cache.delete(key);
    if (this.cache.size >= this.maxKeys) {
      this.cache.delete(this.cache.keys().next().value as string);
    }
    this.cache.set(key, entry);
  }

  /**
   * The override items of `keys` (absent: no override), and the keys that could not be read.
   * Eventually consistent (BatchGetItem's default, half the read units of a strongly consistent
   * read): a read just after a write may miss it, a read a short time later returns it
   * (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadConsistency.html),
   * a lag next to the cache's 30 s.
   */
  private async read(keys: string[]): Promise<{ items: Map<string, Record<string, AttributeValue>>; unread: Set<string>; error?: unknown }> {
    const items = new Map<string, Record<string, AttributeValue>>();
    const unread = new Set<string>();
    let lastError: unknown;
    for (let i = 0; i < keys.length; i += BATCH_GET_MAX_KEYS) {
      const chunk = keys.slice(i, i + BATCH_GET_MAX_KEYS);
      let request: KeysAndAttributes | undefined = { Keys: chunk.map((key) => ({ pk: { S: key } })) };
      for (let attempt = 0; request !== undefined; attempt++) {
        if (attempt > 0) {
          if (attempt > UNPROCESSED_RETRY_DELAYS_MS.length) {
            break;
          }
          await this.sleep(UNPROCESSED_RETRY_DELAYS_MS[attempt - 1]);
        }
        try {
          const command = new BatchGetItemCommand({ RequestItems: { [this.deps.tableName]: request } });
          const output: BatchGetItemCommandOutput = await this.deps.dynamodb.send(command);
          for (const item of output.Responses?.[this.deps.tableName] ?? []) {
            if (item.pk?.S !== undefined) {
              items.set(item.pk.S, item);
            }
          }
          const unprocessed: KeysAndAttributes | undefined = output.UnprocessedKeys?.[this.deps.tableName];
          request = unprocessed?.Keys && unprocessed.Keys.length > 0 ? unprocessed : undefined;
        } catch (error) {
          lastError = error;
          break;
        }
      }
      for (const key of request?.Keys ?? []) {
        if (key.pk?.S !== undefined) {
          unread.add(key.pk.S);
        }
      }
    }
    return { items, unread, ...(lastError !== undefined ? { error: lastError } : {}) };
  }

  /** The defaults with the item's valid fields applied, capped at the contract; invalid fields counted. */
  private limitsOf(key: string, item: Record<string, AttributeValue> | undefined): KeyLimitsSpec {
    const { limits, invalid, capped } = resolveKeyLimits(item, this.deps.defaults, this.deps.contract);
    if (invalid.length > 0) {
      this.deps.logger.warn('invalid fields in a key\'s settings: their defaults are used; fix the item', { key, fields: invalid, tableName: this.deps.tableName });
      this.deps.metrics.addMetric(MetricNames.KEY_SETTINGS_INVALID, 'Count', invalid.length, key);
    }
    if (capped.length > 0) {
      this.deps.logger.warn('a key\'s settings allow more than the contract for all keys together: capped at the contract', { key, fields: capped });
    }
    return limits;
  }
}

/** A key's limits in force from its settings item, and the item's fields that could not be used as written. */
export interface ResolvedKeyLimits {
  readonly limits: KeyLimitsSpec;
  /** Fields that cannot be a limit: each keeps its default (`quotas.<name>` for a quota). */
  readonly invalid: string[];
  /** Fields above the contract: each is capped at the contract's. */
  readonly capped: string[];
}

/**
 * The defaults with the item's valid fields applied, capped at the contract: what the dispatcher
 * uses for a key whose settings item is `item` (absent: no override). Also the check of the key
 * settings CLI (key-settings-cli.ts), so it refuses what the dispatcher would ignore or cap.
 */
export function resolveKeyLimits(
  item: Record<string, AttributeValue> | undefined, defaults: KeyLimitsSpec, contract: KeySettingsContract,
): ResolvedKeyLimits {
  const invalid: string[] = [];
  const capped: string[] = [];
  if (item === undefined) {
    return { limits: defaults, invalid, capped };
  }
  const limit = (field: string, value: AttributeValue | undefined, ceiling: number | undefined, whole: boolean): number | undefined => {
    if (value === undefined) {
      return undefined;
    }
    const n = value.N !== undefined ? Number(value.N) : NaN;
    if (ceiling === undefined || !Number.isFinite(n) || n <= 0 || (whole && !Number.isInteger(n))) {
      invalid.push(field);
      return undefined;
    }
    if (n > ceiling) {
      capped.push(field);
      return ceiling;
    }
    return n;
  };
  const requestsPerSecond = limit('requestsPerSecond', item.requestsPerSecond, contract.requestsPerSecond, false);
  const maxJobsInFlight = limit('maxJobsInFlight', item.maxJobsInFlight, contract.maxJobsInFlight, true);
  const quotas: Record<string, number> = { ...defaults.quotas };
  if (item.quotas !== undefined) {
    if (item.quotas.M === undefined) {
      invalid.push('quotas');
    } else {
      for (const [name, value] of Object.entries(item.quotas.M)) {
        const ceiling = Object.prototype.hasOwnProperty.call(contract.quotas, name) ? contract.quotas[name] : undefined;
        const quota = limit(`quotas.${name}`, value, ceiling, true);
        if (quota !== undefined) {
          quotas[name] = quota;
        }
      }
    }
  }
  let paused = defaults.paused;
  if (item.paused !== undefined) {
    if (item.paused.BOOL === undefined) {
      invalid.push('paused');
    } else {
      paused = item.paused.BOOL;
    }
  }
  return {
    limits: {
      ...defaults,
      ...(requestsPerSecond !== undefined ? { requestsPerSecond } : {}),
      ...(maxJobsInFlight !== undefined ? { maxJobsInFlight } : {}),
      quotas,
      paused,
    },
    invalid,
    capped,
  };
}

/**
 * What a key's settings are capped at, from the dispatcher's configuration (dispatch.ts
 * `loadConfig`): the contract's rate, jobs in flight and quotas.
 */
export function keySettingsContractOf(config: {
  readonly requestsPerSecond: number;
  readonly jobsInFlight?: { readonly maxJobsInFlight: number };
  readonly quotas?: readonly { readonly name: string; readonly limit: number }[];
}): KeySettingsContract {
  return {
    requestsPerSecond: config.requestsPerSecond,
    maxJobsInFlight: config.jobsInFlight?.maxJobsInFlight,
    quotas: Object.fromEntries((config.quotas ?? []).map((quota) => [quota.name, quota.limit])),
  };
}

/**
 * The defaults every key gets (`KEY_LIMITS`, JSON of a `KeyLimitsSpec`, written by the construct),
 * or undefined when the contract has no per-key limits. Throws naming the variable when it is not
 * what the construct writes: a misconfigured function fails at cold start.
 */
export function parseKeyLimitsSpec(env: Record<string, string | undefined>): KeyLimitsSpec | undefined {
  const text = env[KEY_LIMITS_ENV]?.trim();
  if (!text) {
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`Environment variable ${KEY_LIMITS_ENV} is not JSON: ${text.slice(0, 200)}`);
  }
  const spec = value as Partial<KeyLimitsSpec> | null;
  const positive = (n: unknown) => typeof n === 'number' && Number.isFinite(n) && n > 0;
  if (spec === null || typeof spec !== 'object' || !positive(spec.requestsPerSecond) || !positive(spec.priorityAgingMs)
    || (spec.maxJobsInFlight !== undefined && !positive(spec.maxJobsInFlight))
    || typeof spec.quotas !== 'object' || spec.quotas === null || !Object.values(spec.quotas).every(positive)) {
    throw new Error(`Environment variable ${KEY_LIMITS_ENV} must be the per-key limits the construct writes ({"requestsPerSecond":..,"quotas":{..},"priorityAgingMs":..}), got ${text.slice(0, 200)}`);
  }
  return { ...spec, paused: false } as KeyLimitsSpec;
}

/**
 * The dispatcher's key settings, when the contract has per-key limits (KEY_LIMITS and the table's
 * name set by the construct), else undefined.
 */
export function keySettingsFromEnv(
  env: Record<string, string | undefined>, contract: KeySettingsContract, deps: Omit<KeySettingsDeps, 'tableName' | 'defaults' | 'contract'>,
): KeySettings | undefined {
  const defaults = parseKeyLimitsSpec(env);
  if (defaults === undefined) {
    return undefined;
  }
  const tableName = env[KEY_SETTINGS_TABLE_ENV]?.trim();
  if (!tableName) {
    throw new Error(`Environment variable ${KEY_SETTINGS_TABLE_ENV} is required with ${KEY_LIMITS_ENV} but not set`);
  }
  return new KeySettings({ ...deps, tableName, defaults, contract, ...cacheTtlFromEnv(env) });
}

/** KEY_SETTINGS_CACHE_TTL_MS when set (tests only), else nothing: the 30 s default. Throws naming it when invalid. */
function cacheTtlFromEnv(env: Record<string, string | undefined>): { ttlMs?: number } {
  const text = env[KEY_SETTINGS_CACHE_TTL_ENV]?.trim();
  if (!text) {
    return {};
  }
  const ttlMs = Number(text);
  if (!Number.isFinite(ttlMs) || ttlMs < 0) {
    throw new Error(`Environment variable ${KEY_SETTINGS_CACHE_TTL_ENV} must be a number of milliseconds >= 0 (default ${KEY_SETTINGS_CACHE_TTL_MS}), got ${text.slice(0, 50)}`);
  }
  return { ttlMs };
}
