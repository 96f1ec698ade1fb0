/**
 * Spending quota units: one conditional counter per quota and period in the pacer table.
 *
 * Bundled into the vendor caller only (the construct library never imports it): the SDK stays a
 * devDependency.
 *
 * ## The guarantee
 *
 * No call reaches the vendor beyond a quota: a call fires only after it spent one unit of every
 * quota, and a unit is spent by one conditional write on the counter of the quota's current period
 * (item `pk = 'quota#<name>#<periodStartMs>'`): `ADD used :1` on the condition
 * `attribute_not_exists(used) OR used < :limit`. DynamoDB applies conditional writes to one item
 * one at a time (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html,
 * "conditional writes ... atomic"), so at most `limit` writes per period succeed, whatever the
 * number of concurrent invocations or cold starts: the state is the item, not the function.
 *
 * The unit is spent for the period of the slot the call fires at (not of the moment the caller
 * starts: it may wait seconds for its slot, across a boundary), once the slot is known and before
 * the caller claims or fires it; not after the call: a crash between the two spends a unit without
 * a call (the count then overstates the calls, never understates them), and a call whose slot is
 * later given up (late, a pause) keeps its unit too; its next slot spends again only in a period it
 * has not spent in. Spending after the call could let a crash fire a call that no counter saw.
 * A slot within QUOTA_BOUNDARY_GUARD_MS of a boundary spends in both periods (the vendor may count
 * the call in either). Units are never refunded: the vendor
 * counts the call whatever it answered (a 429, a 504), and a refund after a timeout could free a
 * unit for a call the vendor did receive.
 *
 * With several quotas the writes are made one after the other (dynalite, the local runtime's
 * DynamoDB, has no TransactWriteItems; one write per quota also costs less than a transaction):
 * when one fails after others succeeded, those stay spent. Conservative: a period may end with
 * fewer calls than its limit, never with more.
 *
 * The counter keeps its key across deploys (the key holds only the quota's name and the period's
 * start), so a deploy or an upgrade keeps the units spent, and two orchestrators that share one
 * pacer table share the quota. Counters expire through the table's TTL a day after their period.
 */
import {
  BatchGetItemCommand, type BatchGetItemCommandOutput, type DynamoDBClient, GetItemCommand, type KeysAndAttributes, UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { QuotaPeriod, quotaPeriodAt, QuotaSpec, QuotaUnit } from './quota-period';
import { isConditionalCheckFailed, PACER_PARTITION_KEY, PACER_TTL_ATTRIBUTE } from '../rate-controlled-queue-consumer/pacer';
import { parseJsonEnv } from '../shared/env';
import { keyQuotaItemKey } from '../shared/key-limits';
import { realSleep, Sleep, UNPROCESSED_RETRY_DELAYS_MS } from '../shared/unprocessed-backoff';

/** The counter attribute of a quota item. */
export const QUOTA_USED_ATTRIBUTE = 'used';
/** How long a period's counter is kept after the period ends (TTL), in seconds. */
export const QUOTA_COUNTER_RETENTION_SECONDS = 86_400;

/** The pacer table key of the counter of a quota's period. */
export function quotaCounterKey(name: string, period: QuotaPeriod): string {
  return `quota#${name}#${period.startMs}`;
}

/**
 * Where a quota's counter of a period lives: the contract's (`quotaCounterKey`) or a key's
 * (`key-quota#<name>#<periodStartMs>#<key>`, key-quota-ledger.ts). Same writes, same condition.
 */
export type QuotaCounterKey = (name: string, period: QuotaPeriod) => string;

/**
 * How far from a period's boundary a call may be counted by the vendor in the neighbouring period:
 * the call fires up to its fire tolerance after its slot, travels to the vendor (caller -> proxy ->
 * vendor, tens of milliseconds on AWS) and the vendor's clock may differ from the caller's (both
 * synchronised to UTC, milliseconds apart). A call whose slot lies within this margin of a boundary
 * spends a unit in both periods, so whichever period the vendor counts it in, it was counted there.
 * The assumption (fire lateness + one-way path to the vendor + clock offset <= 250 ms) is stated
 * in the README.
 */
export const QUOTA_BOUNDARY_GUARD_MS = 250;

/** One quota's unit spent: what the metrics report. */
export interface QuotaUnitSpent {
  readonly name: string;
  readonly limit: number;
  /** Units spent in this period, this one included. */
  readonly used: number;
  readonly period: QuotaPeriod;
}

/** The outcome of spending one unit of every quota. */
export type QuotaSpendOutcome =
  | { readonly spent: true; readonly units: QuotaUnitSpent[] }
  | {
    readonly spent: false;
    /** The first quota found spent. */
    readonly exhausted: string;
    /** The earliest a call may find a unit again: the end of the spent period (plus the boundary margin). */
    readonly availableAtMs: number;
    /** The units spent before the exhausted quota was reached (they stay spent). */
    readonly units: QuotaUnitSpent[];
  };

/**
 * The periods of `quota` a call fired at `slotAtMs` may be counted in: the slot's own, and its
 * neighbour when the slot lies within `guardMs` of their boundary.
 */
export function periodsOfCall(quota: QuotaSpec, slotAtMs: number, guardMs: number = QUOTA_BOUNDARY_GUARD_MS): QuotaPeriod[] {
  const periods = [quotaPeriodAt(quota, slotAtMs - guardMs)];
  const last = quotaPeriodAt(quota, slotAtMs + guardMs);
  if (last.startMs !== periods[0].startMs) {
    periods.push(last);
  }
  return periods;
}

/**
 * Spends one unit of each quota for a call fired at `slotAtMs` (in every period it may be counted
 * in, see periodsOfCall), in the order given, skipping counters in `alreadySpent` (this call spent
 * them for an earlier slot) and adding those it spends. Stops at the first counter that is spent
 * for its period. Throws on any DynamoDB error but a failed condition (then the call must not fire).
 */
export async function spendQuotaUnits(
  dynamodb: DynamoDBClient, tableName: string, quotas: readonly QuotaSpec[], slotAtMs: number,
  alreadySpent: Set<string> = new Set(), guardMs: number = QUOTA_BOUNDARY_GUARD_MS, counterKey: QuotaCounterKey = quotaCounterKey,
): Promise<QuotaSpendOutcome> {
  const units: QuotaUnitSpent[] = [];
  for (const quota of quotas) {
    for (const period of periodsOfCall(quota, slotAtMs, guardMs)) {
      const key = counterKey(quota.name, period);
      if (alreadySpent.has(key)) {
        continue;
      }
      try {
        const result = await dynamodb.send(new UpdateItemCommand({
          TableName: tableName,
          Key: { [PACER_PARTITION_KEY]: { S: key } },
          UpdateExpression: 'ADD #used :one SET #ttl = :ttl',
          ConditionExpression: 'attribute_not_exists(#used) OR #used < :limit',
          ExpressionAttributeNames: { '#used': QUOTA_USED_ATTRIBUTE, '#ttl': PACER_TTL_ATTRIBUTE },
          ExpressionAttributeValues: {
            ':one': { N: '1' },
            ':limit': { N: String(quota.limit) },
            ':ttl': { N: String(Math.ceil(period.endMs / 1000) + QUOTA_COUNTER_RETENTION_SECONDS) },
          },
          ReturnValues: 'UPDATED_NEW',
        }));
        alreadySpent.add(key);
        const used = Number(result.Attributes?.[QUOTA_USED_ATTRIBUTE]?.N ?? NaN);
        units.push({ name: quota.name, limit: quota.limit, used, period });
      } catch (error) {
        if (isConditionalCheckFailed(error)) {
          return { spent: false, exhausted: quota.name, availableAtMs: period.endMs + guardMs, units };
        }
        throw error;
      }
    }
  }
  return { spent: true, units };
}

/**
 * Until when a quota is spent at `nowMs`: the end of the latest current period (plus the boundary
 * margin) among the quotas whose counter has reached its limit; undefined when every quota has a
 * unit left (or none is declared). One strongly consistent GetItem per quota. The dispatcher asks
 * it before reserving slots, so requests that cannot be called before a period ends take no slot
 * and go back to the queue until then; the vendor caller's conditional write stays the guarantee.
 */
export async function quotaSpentUntilMs(
  dynamodb: DynamoDBClient, tableName: string, quotas: readonly QuotaSpec[], nowMs: number,
): Promise<number | undefined> {
  let until: number | undefined;
  for (const quota of quotas) {
    const period = quotaPeriodAt(quota, nowMs);
    const result = await dynamodb.send(new GetItemCommand({
      TableName: tableName,
      Key: { [PACER_PARTITION_KEY]: { S: quotaCounterKey(quota.name, period) } },
      ConsistentRead: true,
      ProjectionExpression: '#used',
      ExpressionAttributeNames: { '#used': QUOTA_USED_ATTRIBUTE },
    }));
    const used = Number(result.Item?.[QUOTA_USED_ATTRIBUTE]?.N ?? 0);
    until = laterSpentUntil(until, quota, period, used);
  }
  return until;
}

/** `until`, or the end of `period` (plus the boundary margin) when `used` reached the quota's limit, whichever is later. */
export function laterSpentUntil(until: number | undefined, quota: QuotaSpec, period: QuotaPeriod, used: number): number | undefined {
  return used >= quota.limit ? Math.max(until ?? 0, period.endMs + QUOTA_BOUNDARY_GUARD_MS) : until;
}

/** BatchGetItem reads at most 100 items per call (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html). */
const MAX_BATCH_GET = 100;
/**
 * Rounds for keys DynamoDB left unprocessed (throttling), with the backoff of unprocessed-backoff.ts
 * between them (25 and 100 ms); what is still unread then counts as not spent.
 */
const MAX_UNPROCESSED_ROUNDS = 3;

/**
 * Until when each key is out of one of its quotas at `nowMs` (the end of the latest current period
 * among its spent quotas, plus the boundary margin): keys with a unit left in every quota are absent.
 * One eventually consistent BatchGetItem per 100 counters (0.5 read unit each): a counter read a
 * moment stale lets a request through to the vendor caller, whose conditional write refuses it.
 * Throws on DynamoDB errors (the dispatcher then dispatches: the caller keeps the quota).
 */
export async function keyQuotasSpentUntil(
  dynamodb: DynamoDBClient, tableName: string, quotasByKey: ReadonlyMap<string, readonly QuotaSpec[]>, nowMs: number,
  sleep: Sleep = realSleep,
): Promise<Map<string, number>> {
  const counters = new Map<string, { key: string; quota: QuotaSpec; period: QuotaPeriod }>();
  for (const [key, quotas] of quotasByKey) {
    for (const quota of quotas) {
      const period = quotaPeriodAt(quota, nowMs);
      counters.set(keyQuotaItemKey(quota.name, period.startMs, key), { key, quota, period });
    }
  }
  const used = new Map<string, number>();
  const itemKeys = [...counters.keys()];
  for (let i = 0; i < itemKeys.length; i += MAX_BATCH_GET) {
    let request: Record<string, KeysAndAttributes> | undefined = {
      [tableName]: {
        Keys: itemKeys.slice(i, i + MAX_BATCH_GET).map((pk) => ({ [PACER_PARTITION_KEY]: { S: pk } })),
        ProjectionExpression: '#pk, #used',
        ExpressionAttributeNames: { '#pk': PACER_PARTITION_KEY, '#used': QUOTA_USED_ATTRIBUTE },
      },
    };
    for (let round = 0; round < MAX_UNPROCESSED_ROUNDS && request !== undefined; round++) {
      if (round > 0) {
        await sleep(UNPROCESSED_RETRY_DELAYS_MS[round - 1]);
      }
      const out: BatchGetItemCommandOutput = await dynamodb.send(new BatchGetItemCommand({ RequestItems: request }));
      for (const item of out.Responses?.[tableName] ?? []) {
        used.set(item[PACER_PARTITION_KEY]?.S ?? '', Number(item[QUOTA_USED_ATTRIBUTE]?.N ?? 0));
      }
      request = out.UnprocessedKeys && Object.keys(out.UnprocessedKeys).length > 0 ? out.UnprocessedKeys : undefined;
    }
  }
  const spentUntil = new Map<string, number>();
  for (const [pk, { key, quota, period }] of counters) {
    const until = laterSpentUntil(spentUntil.get(key), quota, period, used.get(pk) ?? 0);
    if (until !== undefined) {
      spentUntil.set(key, until);
    }
  }
  return spentUntil;
}

/** Reads the quotas' JSON (environment variable); throws naming what is wrong. */
export function parseQuotaSpecs(raw: string | undefined, variableName: string): QuotaSpec[] {
  const parsed = parseJsonEnv(raw, variableName, 'a JSON array of quotas');
  if (parsed === undefined) {
    return [];
  }
  const units: QuotaUnit[] = ['hour', 'day', 'month', 'fixed'];
  if (!Array.isArray(parsed) || !parsed.every((q) => typeof q === 'object' && q !== null
    && typeof q.name === 'string' && Number.isInteger(q.limit) && q.limit > 0 && units.includes(q.unit)
    && (q.unit !== 'fixed' || (typeof q.periodMs === 'number' && q.periodMs > 0)))) {
    throw new Error(`Environment variable ${variableName} must be a JSON array of { name, limit, unit, periodMs?, timeZone? }, got ${raw}`);
  }
  return parsed as QuotaSpec[];
}
