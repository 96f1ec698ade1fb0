/**
 * Adaptive pacing on the pacer item (issue 14, item 5): the state (`adaptiveRps`, `adaptiveSinceMs`)
 * beside `nextSlotAtMs`, read with every reservation (pacer.ts `reserveSlots`), and the decrease the
 * vendor caller writes after a 429. The arithmetic is in contract/adaptive-spec.ts.
 *
 * Why the schedule's guarantee is untouched: the pacer paces at `min(rate in force, a(t))`, which is
 * at most the rate in force, so to the schedule the adaptive rate is a lower rate in force that
 * changes without a poll interval (it is read from the item each reservation reads anyway). By
 * "The rate at run time" (pacer.ts) slots stay at least `min(I, I_old)` apart and never closer
 * than the rate in force's interval: no window holds more than the rate in force, whatever the
 * adaptive rate does. An increase needs no hold: it never exceeds the rate in force, which is the
 * bound the guarantee is stated for.
 *
 * A decrease binds at once: every reservation computed after its write reads it (consistent read),
 * and the slots already reserved at the old spacing (up to the reservation horizon ahead: the
 * dispatcher's `maxPacingWait`, the caller's `maxSlotWait`) fall inside the vendor pause, which the
 * decrease extends to the end of the schedule (`nextSlotAtMs`): their callers re-read the pause
 * before firing and give them up (reserving fresh slots after it, at the new rate). Without that,
 * the old slots after a 1-second pause still fired at the rate the vendor had just refused, and
 * cost a second 429 per decrease (the modeled benchmark row `adaptive-10rps-real-limit-5` showed
 * two 429s in some probe intervals).
 */
// Bundled into the dispatcher and vendor caller Lambdas only; the construct library never imports
// it, so the SDK stays a devDependency.
import { type DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { isConditionalCheckFailed, NEXT_SLOT_ATTRIBUTE, PACER_ITEM_KEY, PACER_PARTITION_KEY, pauseUntil } from './pacer';
import {
  ADAPTIVE_ATTRIBUTES, ADAPTIVE_PROBE_ATTRIBUTE, ADAPTIVE_PROBE_FROM_ATTRIBUTE, ADAPTIVE_PROBE_REFUSED_ATTRIBUTE, ADAPTIVE_PROBE_SLOTS_ATTRIBUTE,
  ADAPTIVE_PROBE_TO_ATTRIBUTE, ADAPTIVE_RATE_ATTRIBUTE, ADAPTIVE_SINCE_ATTRIBUTE, AdaptiveSpec, decreasedState, parseAdaptiveState,
} from '../contract/adaptive-spec';

export { ADAPTIVE_RATE_ATTRIBUTE, ADAPTIVE_SINCE_ATTRIBUTE };

/** The outcome of {@link decreaseAdaptiveRate}. */
export interface AdaptiveDecrease {
  /** Whether this call wrote the decrease (false: within a cooldown, or another 429 decreased first, or the 429 answered a probe). */
  readonly decreased: boolean;
  /** The adaptive rate this call wrote (when it decreased). */
  readonly rps?: number;
  /** With a decrease: until when dispatch is paused (the end of the slots reserved at the old rate), epoch ms. */
  readonly pausedUntilMs?: number;
  /** Whether the 429 answered the pending probe, whose refusal this call recorded (no decrease: adaptive-probe.ts). */
  readonly probeRefused?: boolean;
}

/**
 * Decreases the adaptive rate after a 429 at `nowMs`, once per cooldown: reads the state
 * (consistent), computes the decrease, and writes it on the condition that the stored
 * `adaptiveSinceMs` is still the one read. Concurrent 429s of one burst thus decrease once: the
 * first write wins, the others fail their condition (or find the cooldown running) and write
 * nothing. Only the adaptive attributes are written: the slot schedule (`nextSlotAtMs`) and the
 * pause are separate attributes, so reservations never conflict with it. A decrease then extends
 * the pause to the end of the slots already reserved (see the module comment); the pause only
 * moves forward (pauseUntil). A decrease clears a pending probe: it was given out at the refused rate.
 *
 * When `slotAtMs` is one of the placed probe's slots (or can reorder with them), the 429 is the probe's answer (adaptive-probe.ts):
 * its refusal is recorded (conditional on the probe still pending) and nothing is decreased.
 *
 * @param ceiling the rate in force (at most the contract), requests per second
 * @param slotAtMs the slot the refused request was fired at, when known
 */
export async function decreaseAdaptiveRate(
  dynamodb: DynamoDBClient, tableName: string, nowMs: number, ceiling: number, spec: AdaptiveSpec, slotAtMs?: number,
): Promise<AdaptiveDecrease> {
  const key = { [PACER_PARTITION_KEY]: { S: PACER_ITEM_KEY } };
  const read = await dynamodb.send(new GetItemCommand({
    TableName: tableName,
    Key: key,
    ConsistentRead: true,
    ProjectionExpression: `${ADAPTIVE_ATTRIBUTES.join(', ')}, ${NEXT_SLOT_ATTRIBUTE}`,
  }));
  const rawSince = read.Item?.[ADAPTIVE_SINCE_ATTRIBUTE]?.N;
  const state = parseAdaptiveState(read.Item);
  const probe = state?.probe;
  if (slotAtMs !== undefined && probe?.toMs !== undefined && slotAtMs >= probe.fromMs && slotAtMs <= probe.toMs) {
    return { decreased: false, probeRefused: await recordProbeRefusal(dynamodb, tableName, read.Item![ADAPTIVE_PROBE_ATTRIBUTE]!.N!) };
  }
  const next = decreasedState(nowMs, ceiling, state, spec);
  if (next === undefined) {
    return { decreased: false };
  }
  try {
    await dynamodb.send(new UpdateItemCommand({
      TableName: tableName,
      Key: key,
      UpdateExpression: 'SET #rps = :rps, #since = :since REMOVE #probe, #probeSlots, #probeFrom, #probeTo',
      ConditionExpression: rawSince === undefined ? 'attribute_not_exists(#since)' : '#since = :old',
      ExpressionAttributeNames: {
        '#rps': ADAPTIVE_RATE_ATTRIBUTE,
        '#since': ADAPTIVE_SINCE_ATTRIBUTE,
        '#probe': ADAPTIVE_PROBE_ATTRIBUTE,
        '#probeSlots': ADAPTIVE_PROBE_SLOTS_ATTRIBUTE,
        '#probeFrom': ADAPTIVE_PROBE_FROM_ATTRIBUTE,
        '#probeTo': ADAPTIVE_PROBE_TO_ATTRIBUTE,
      },
      ExpressionAttributeValues: {
        ':rps': { N: String(next.rps) },
        ':since': { N: String(next.sinceMs) },
        ...(rawSince === undefined ? {} : { ':old': { N: rawSince } }),
      },
    }));
  } catch (error) {
    if (isConditionalCheckFailed(error)) {
      // Another 429 of the same burst decreased first.
      return { decreased: false };
    }
    throw error;
  }
  // The slots reserved at the old rate: paused, so that none fires at the rate just refused.
  const scheduledUntilMs = Number(read.Item?.[NEXT_SLOT_ATTRIBUTE]?.N);
  if (Number.isFinite(scheduledUntilMs) && scheduledUntilMs > nowMs) {
    const pausedUntilMs = await pauseUntil(dynamodb, tableName, scheduledUntilMs);
    return { decreased: true, rps: next.rps, pausedUntilMs };
  }
  return { decreased: true, rps: next.rps };
}

/**
 * Records that the vendor refused the pending probe (stored text `probeAtMs`): the reservation that
 * judges it then keeps the rate. Conditional on the probe still pending (a decrease or a judgement
 * since then cleared it: nothing to record). Resolves whether it was recorded.
 */
async function recordProbeRefusal(dynamodb: DynamoDBClient, tableName: string, probeAtMs: string): Promise<boolean> {
  try {
    await dynamodb.send(new UpdateItemCommand({
      TableName: tableName,
      Key: { [PACER_PARTITION_KEY]: { S: PACER_ITEM_KEY } },
      UpdateExpression: 'SET #refused = :probe',
      ConditionExpression: '#probe = :probe',
      ExpressionAttributeNames: { '#refused': ADAPTIVE_PROBE_REFUSED_ATTRIBUTE, '#probe': ADAPTIVE_PROBE_ATTRIBUTE },
      ExpressionAttributeValues: { ':probe': { N: probeAtMs } },
    }));
    return true;
  } catch (error) {
    if (isConditionalCheckFailed(error)) {
      return false;
    }
    throw error;
  }
}
