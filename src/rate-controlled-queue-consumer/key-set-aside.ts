/**
 * Setting a full key aside (issue 15; design: docs/design/per-key-limits.md, sections 3.1-3.2).
 *
 * A request whose key has no slot within the dispatcher's reservation horizon (`H_c` past the lead),
 * or whose key an operator paused, does not wait in the dispatcher (that would hold the batch, and
 * every quiet key's request behind it) and is not hidden (a hidden message is in flight and counts a
 * receive): it is sent back as a delayed copy (dispatch.ts `sendDelayedCopy`, the original deleted as
 * done), exactly like a request the contract's schedule has no room for. So it spends no receive
 * count, no attempt, no slot, and is not in flight (a delayed message is not received,
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-queues.html).
 * No key blocks another: the dispatcher handles every other message of its batch.
 *
 * ## When it returns
 *
 * An advisory cursor per key and priority, `asideUntilMs#<priority>` on the key's `key-pacer`
 * item, spreads a key's set-aside requests over its future slots: `base = max(asideUntilMs of this
 * and every higher priority, e_k + kept * I_k, now + lead)` (`e_k` the key's next free slot, `kept`
 * how many of its requests this batch still reserves for), the j-th request set aside is meant for
 * the slot `base + j * I_k` and returns `lead + SET_ASIDE_RETURN_MARGIN_MS` before it, with
 * `DelaySeconds` rounded DOWN to whole seconds, at most 900
 * (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html):
 * early, never late. A request back too early is set aside again (one more send). Then
 * `asideUntilMs := base + n * I_k`, written once per key and batch, conditioned on the values read;
 * if that write loses (another dispatcher set the same key aside meanwhile) the delays come from the
 * key's slot cursor alone (more returns, never a wrong fire: the cursor is advisory, the limits are
 * in key-schedule.ts). Beyond 900 s a request returns every 15 minutes.
 *
 * ## A request back at its turn keeps it
 *
 * Each copy carries the slot it was meant for ({@link KEY_TURN_FIELD}). A request back with it is
 * in the key's line already: it is kept up to {@link RETURN_EXTRA_HORIZON_MS} past the horizon, and
 * if set aside again (another dispatcher holds the key's next slots, or the key is ahead) it goes
 * right after the key's slots held now, ahead of the line, or at its own turn if that is later
 * (a line beyond 900 s): never to the line's end. Why: the line gives each of its slots exactly one
 * request, so a request sent to the end leaves its key without a request for a slot near now. In
 * the benchmark's `keys-100-hot90` (FIFO queue, three dispatchers, 1 s batching window) 1.6-4 of
 * the hot key's 9.7 returns per second went to the end that way and the hot key used 0.65 of its
 * limit.
 *
 * A key an operator paused (`paused: true`) returns every {@link PAUSED_KEY_RECHECK_MS}: the
 * settings' cache period, so a resumed key is served within about twice that.
 *
 * Plain functions, clients and clock passed in (a model drives them in virtual time).
 */
// Bundled into the dispatcher only; the SDK stays a devDependency.
import { type DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import {
  KEY_PLANNED_BY_ATTRIBUTE, KEY_PLANNED_UNTIL_ATTRIBUTE, KeyCursor, keyAsideUntilAttribute, KeyedCall, keyIntervalMs, keyNextFreeMs, limitedKeyOf,
} from './key-schedule';
import { isConditionalCheckFailed, PACER_PARTITION_KEY } from './pacer';
import { keyPacerItemKey, REQUEST_PRIORITIES, RequestPriority } from '../shared/key-limits';
import { DEFAULT_REQUEST_PRIORITY, isRequestPriority } from '../shared/request-priority';

/**
 * How far past the lead a dispatcher reserves a key's slots (`H_c`): a request whose key has no slot
 * by `now + lead + H_c` is set aside. 0.75 s keeps a high-priority request's added latency within
 * 2 s plus its own key's pacing (design section 4: poll + lead + H_c + ~50 ms of dispatcher work
 * with a 1 s lead), and bounds what a hot key adds to a quiet key's wait (section 3.2).
 */
export const DEFAULT_KEY_RESERVATION_HORIZON_MS = 750;
/**
 * A set-aside request returns this long before `lead` ahead of its estimated slot: the queue's
 * delivery, the event source mapping's batching window (1 s above 10 messages a batch) and the
 * dispatcher's poll take some time, and a request back late leaves its key's slot unused, one back
 * early is kept ({@link RETURN_EXTRA_HORIZON_MS}) or costs another send. 600 ms, not 100: with a 1 s
 * extra horizon the hot key of `keys-100-hot90` used 0.939 of its limit with 100 ms, 0.953 with 600 ms.
 */
export const SET_ASIDE_RETURN_MARGIN_MS = 600;
/**
 * How much further than the horizon a request back from a set-aside is kept: `DelaySeconds` is whole
 * seconds (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html),
 * so a key's requests come back in bursts, all those meant for one second of its slots at once,
 * {@link SET_ASIDE_RETURN_MARGIN_MS} to a second and that margin early. A dispatcher keeping only the
 * horizon's 0.75 s of a burst sets the rest aside again. Measured in `keys-100-hot90` before the
 * plan-end reservation of dispatch-keys.ts (hot key's utilization of its limit, quiet keys' p99
 * over the idle baseline, SQS requests per call): 0 ms:
 * 0.816, -20 ms, 15.8; 500 ms: 0.958, +61 ms, 5.2; 1000 ms: 0.953, +201 ms, 4.6. A dispatcher
 * holding returns holds its batch up to this much longer (the quiet keys' bound, design 3.2).
 */
export const RETURN_EXTRA_HORIZON_MS = 500;
/**
 * The message field of a set-aside copy: the key slot it was meant for (epoch ms). It travels with
 * the request (also into the execution input's `message`, so a retried request is back at its turn
 * too: it goes ahead of its key's line).
 */
export const KEY_TURN_FIELD = 'keyTurnAtMs';
/** How often a paused key's requests come back to look (the key settings' cache period). */
export const PAUSED_KEY_RECHECK_MS = 30_000;
/** SQS' longest message delay, in seconds (15 minutes). */
const MAX_DELAY_SECONDS = 900;

/** The priority a request is set aside under: its `priority` field when valid, else normal. */
export function setAsidePriorityOf(call: { readonly message: object }): RequestPriority {
  const priority = (call.message as { priority?: unknown }).priority;
  return isRequestPriority(priority) ? priority : DEFAULT_REQUEST_PRIORITY;
}

/** The slot a request back from a set-aside was meant for ({@link KEY_TURN_FIELD}); undefined for a new request. */
export function keyTurnOf(call: { readonly message: object }): number | undefined {
  const turn = (call.message as Record<string, unknown>)[KEY_TURN_FIELD];
  return typeof turn === 'number' && Number.isFinite(turn) ? turn : undefined;
}

/** Timing of a horizon check or a set-aside. */
export interface KeyTiming {
  /** Now, epoch ms. */
  readonly nowMs: number;
  /** The dispatcher's lead (an execution starts this long before its slot). */
  readonly leadMs: number;
  /** `L`, for the keys' intervals. */
  readonly latenessToleranceMs: number;
  /** This dispatcher invocation's plan owner (a random number): its own plans do not hold it back. Absent: every plan does. */
  readonly planOwner?: number;
}

/**
 * The key's first slot a dispatcher may plan for: its next free slot, not before the lead, and
 * after every slot another dispatcher planned for the calls it kept (`plannedUntilMs`), unless
 * `ignorePlans` (calls this dispatcher already holds: a plan written since is after them).
 */
export function keyPlanFloorMs(cursor: KeyCursor | undefined, intervalMs: number, timing: KeyTiming, ignorePlans = false): number {
  const ownPlan = ignorePlans || (timing.planOwner !== undefined && cursor?.plannedBy === timing.planOwner);
  const othersPlan = cursor?.plannedUntil && !ownPlan ? cursor.plannedUntil.value : -Infinity;
  return Math.max(keyNextFreeMs(cursor, intervalMs), timing.nowMs + timing.leadMs, othersPlan);
}

/** A dispatcher's advisory plan for one key: the plan read (text; absent: none) and the new one. */
export interface KeyPlanWrite {
  readonly key: string;
  readonly oldRaw?: string;
  readonly newValue: number;
  /** The plan's owner (`KeyTiming.planOwner`). */
  readonly owner?: number;
}

/**
 * Splits the waiting calls (in the order they will be reserved) into those whose key has a slot
 * within the horizon and those to set aside: per key, the j-th call kept is estimated at
 * `keyPlanFloorMs + j * I_k` (its key's own spacing; the contract may place it later), and
 * every call of the key from the first one past `now + lead + horizon` on is set aside (a call
 * back from a set-aside: {@link RETURN_EXTRA_HORIZON_MS} later), as are all calls of a paused key. Calls without a key limit are always kept. `plans`: per key with calls
 * kept, the advisory plan to write (`plannedUntilMs`, the key's slot after them).
 *
 * Why a plan: without it every dispatcher whose batch holds a hot key's calls keeps them for the
 * same next slots of the key, all reserve contract slots for them, and all but one lose their key
 * write, wasting a contract slot each (measured: 12-18 % of the slots reserved with 2-4 dispatchers
 * and a key in 90 % of the messages). With the plan, the first dispatcher to write it keeps the
 * key's next slots; the others set those calls aside (one conditional write per key and batch).
 *
 * `held`: the calls this dispatcher kept in an earlier round of its batch. Another dispatcher's plan
 * written since lies after them (it planned from this one's plan), and a line formed since comes
 * after them too: neither sets them aside, and they write no plan (it would move the other's back).
 * Without this, a dispatcher holding a second of a hot key's calls set them all aside as soon as
 * another one kept a single call after them, and the key's slots went unused
 * (`keys-100-hot90`, issue 15).
 *
 * `ownPlanEnd`: the end of the plan this dispatcher last wrote for the key. Held calls whose estimate
 * reaches it have overrun their plan (their rounds lost contract races, so their slots came later
 * than estimated) and reach into the slots another dispatcher planned after it: two dispatchers'
 * held calls then wake for the same slot of the key and one key write loses (dispatch-keys.ts
 * `HeldKeyCalls`). Those calls are planned again like new ones (after the plan in force, with a
 * plan of their own, or set aside past the horizon) but do not join the key's line: they were
 * kept before it. `planned`: the calls kept under the plans returned (a lost plan sets them aside).
 */
export function splitByKeyHorizon<T extends KeyedCall>(
  calls: readonly T[], cursors: ReadonlyMap<string, KeyCursor>, timing: KeyTiming, horizonMs: number,
  held: (call: T) => boolean = () => false, ownPlanEnd: (key: string) => number | undefined = () => undefined,
): { readonly keep: T[]; readonly aside: T[]; readonly keptPerKey: Map<string, number>; readonly plans: KeyPlanWrite[]; readonly planned: T[] } {
  const keep: T[] = [];
  const aside: T[] = [];
  const keptPerKey = new Map<string, number>();
  const planned = new Map<string, KeyPlanWrite>();
  const plannedCalls: T[] = [];
  const latest = timing.nowMs + timing.leadMs + horizonMs;
  const full = new Set<string>();
  for (const call of calls) {
    const key = limitedKeyOf(call);
    if (key === undefined) {
      keep.push(call);
      continue;
    }
    const intervalMs = keyIntervalMs(call.keyLimits!, timing.latenessToleranceMs);
    const kept = keptPerKey.get(key) ?? 0;
    const cursor = cursors.get(key);
    const isHeld = held(call);
    // Past the end of the plan this dispatcher wrote for them, held calls are planned again like new
    // ones (after another dispatcher's plan, with a plan of their own): see `ownPlanEnd` above.
    const ownEnd = isHeld ? ownPlanEnd(key) : undefined;
    const withinOwnPlan = isHeld && (ownEnd === undefined || keyPlanFloorMs(cursor, intervalMs, timing, true) + kept * intervalMs < ownEnd);
    const estimate = keyPlanFloorMs(cursor, intervalMs, timing, withinOwnPlan) + kept * intervalMs;
    const returned = keyTurnOf(call) !== undefined;
    if (call.keyLimits!.paused || full.has(key) || estimate > (returned ? latest + RETURN_EXTRA_HORIZON_MS : latest)) {
      full.add(key);
      aside.push(call);
    } else if (!returned && !isHeld && lineEndOf(cursor, setAsidePriorityOf(call)) > estimate) {
      // A new request does not take a slot its key's line is coming back for: it joins the line.
      aside.push(call);
    } else {
      keptPerKey.set(key, kept + 1);
      keep.push(call);
      if (withinOwnPlan) {
        continue;
      }
      plannedCalls.push(call);
      planned.set(key, {
        key,
        ...(cursor?.plannedUntil ? { oldRaw: cursor.plannedUntil.raw } : {}),
        newValue: estimate + intervalMs,
        ...(timing.planOwner !== undefined ? { owner: timing.planOwner } : {}),
      });
    }
  }
  return { keep, aside, keptPerKey, plans: [...planned.values()], planned: plannedCalls };
}

/** The end of a key's line for a request of `priority`: its own and every higher priority's set-aside cursor (-Infinity: none). */
function lineEndOf(cursor: KeyCursor | undefined, priority: RequestPriority): number {
  let end = -Infinity;
  for (const p of REQUEST_PRIORITIES.slice(0, REQUEST_PRIORITIES.indexOf(priority) + 1)) {
    end = Math.max(end, cursor?.asideUntil[p]?.value ?? -Infinity);
  }
  return end;
}

/**
 * Writes a dispatcher's plan for a key, conditioned on the plan read. Resolves false when another
 * dispatcher wrote its plan first; throws on other errors.
 */
export async function writeKeyPlan(dynamodb: DynamoDBClient, tableName: string, plan: KeyPlanWrite): Promise<boolean> {
  try {
    await dynamodb.send(new UpdateItemCommand({
      TableName: tableName,
      Key: { [PACER_PARTITION_KEY]: { S: keyPacerItemKey(plan.key) } },
      UpdateExpression: plan.owner === undefined ? 'SET #p = :new REMOVE #by' : 'SET #p = :new, #by = :by',
      ConditionExpression: plan.oldRaw === undefined ? 'attribute_not_exists(#p)' : '#p = :old',
      ExpressionAttributeNames: { '#p': KEY_PLANNED_UNTIL_ATTRIBUTE, '#by': KEY_PLANNED_BY_ATTRIBUTE },
      ExpressionAttributeValues: {
        ':new': { N: String(plan.newValue) },
        ...(plan.owner === undefined ? {} : { ':by': { N: String(plan.owner) } }),
        ...(plan.oldRaw === undefined ? {} : { ':old': { N: plan.oldRaw } }),
      },
    }));
    return true;
  } catch (error) {
    if (isConditionalCheckFailed(error)) {
      return false;
    }
    throw error;
  }
}

/** One request set aside: its delay, and the key slot it is meant for (its copy's {@link KEY_TURN_FIELD}). */
export interface SetAsidePlan<T> {
  readonly item: T;
  readonly delaySeconds: number;
  readonly turnAtMs?: number;
}

/** The new advisory cursors of one key: per priority, the value read (text; absent: none) and the value to write. */
export interface AsideCursorWrite {
  readonly key: string;
  readonly cursors: Partial<Record<RequestPriority, { readonly oldRaw?: string; readonly newValue: number }>>;
}

/**
 * The pure step: the delay of each request set aside and the advisory cursors to write (module
 * comment, "When it returns"). `useAsideCursors: false` plans from the keys' slot cursors alone (the
 * fallback when the cursor write lost). `keptPerKey`: how many of each key's calls this batch still
 * reserves for (their slots come first). Calls back from a set-aside (module comment, "A request back
 * at its turn keeps it") go before the line of their priority, each not before its own turn.
 */
export function planSetAside<T extends KeyedCall & { readonly message: object }>(
  aside: readonly T[],
  cursors: ReadonlyMap<string, KeyCursor>,
  timing: KeyTiming,
  keptPerKey: ReadonlyMap<string, number>,
  useAsideCursors: boolean = true,
): { readonly plans: SetAsidePlan<T>[]; readonly writes: AsideCursorWrite[] } {
  const plans: SetAsidePlan<T>[] = [];
  const writes = new Map<string, AsideCursorWrite & { cursors: Partial<Record<RequestPriority, { oldRaw?: string; newValue: number }>> }>();
  // Per key: the next estimated slot after what is planned so far, per priority (higher ones first).
  const byKey = new Map<string, T[]>();
  for (const call of aside) {
    const key = limitedKeyOf(call)!;
    (byKey.get(key) ?? byKey.set(key, []).get(key)!).push(call);
  }
  for (const [key, calls] of byKey) {
    const limits = calls[0].keyLimits!;
    if (limits.paused) {
      for (const item of calls) {
        plans.push({ item, delaySeconds: Math.min(MAX_DELAY_SECONDS, Math.floor(PAUSED_KEY_RECHECK_MS / 1000)) });
      }
      continue;
    }
    const intervalMs = keyIntervalMs(limits, timing.latenessToleranceMs);
    const cursor = cursors.get(key);
    // The key's first slot after the calls this batch still reserves for (and another's plan).
    let floor = keyPlanFloorMs(cursor, intervalMs, timing) + (keptPerKey.get(key) ?? 0) * intervalMs;
    for (const priority of REQUEST_PRIORITIES) {
      const ofPriority = calls.filter((call) => setAsidePriorityOf(call) === priority);
      const read = cursor?.asideUntil[priority];
      // A lower priority starts at or after every higher one's cursor: `floor` carries them down.
      // Back at their turn: right after the slots held now (and the higher priorities' lines).
      let front = floor;
      for (const item of ofPriority.filter((call) => keyTurnOf(call) !== undefined)) {
        const turnAtMs = Math.max(front, keyTurnOf(item)!);
        plans.push({ item, delaySeconds: delayFor(turnAtMs, timing), turnAtMs });
        front = turnAtMs + intervalMs;
      }
      const fresh = ofPriority.filter((call) => keyTurnOf(call) === undefined);
      if (useAsideCursors && read) {
        floor = Math.max(floor, read.value);
      }
      // New ones at the end of the line, after the front ones when the line is shorter.
      floor = Math.max(floor, front);
      if (ofPriority.length === 0) {
        continue;
      }
      fresh.forEach((item, j) => {
        const turnAtMs = floor + j * intervalMs;
        // Without the line's cursor (its write lost) a new request is not in the line: back, it joins it.
        plans.push({ item, delaySeconds: delayFor(turnAtMs, timing), ...(useAsideCursors ? { turnAtMs } : {}) });
      });
      floor += fresh.length * intervalMs;
      if (useAsideCursors) {
        const write = writes.get(key) ?? writes.set(key, { key, cursors: {} }).get(key)!;
        write.cursors[priority] = { ...(read ? { oldRaw: read.raw } : {}), newValue: floor };
      }
    }
  }
  return { plans, writes: [...writes.values()] };
}

/** `DelaySeconds` for a request meant for the slot `turnAtMs`: rounded down, back early (set aside once more), never late. */
function delayFor(turnAtMs: number, timing: KeyTiming): number {
  const returnAtMs = turnAtMs - timing.leadMs - SET_ASIDE_RETURN_MARGIN_MS;
  return Math.min(MAX_DELAY_SECONDS, Math.max(0, Math.floor((returnAtMs - timing.nowMs) / 1000)));
}

/**
 * Writes one key's advisory set-aside cursors, conditioned on the values read. Resolves false when
 * the condition failed (another dispatcher set the key aside meanwhile); throws on other errors.
 */
export async function writeAsideCursors(dynamodb: DynamoDBClient, tableName: string, write: AsideCursorWrite): Promise<boolean> {
  const entries = Object.entries(write.cursors) as [RequestPriority, { oldRaw?: string; newValue: number }][];
  const names: Record<string, string> = {};
  const values: Record<string, { N: string }> = {};
  const set: string[] = [];
  const condition: string[] = [];
  entries.forEach(([priority, cursor], i) => {
    names[`#a${i}`] = keyAsideUntilAttribute(priority);
    values[`:a${i}`] = { N: String(cursor.newValue) };
    set.push(`#a${i} = :a${i}`);
    if (cursor.oldRaw === undefined) {
      condition.push(`attribute_not_exists(#a${i})`);
    } else {
      values[`:o${i}`] = { N: cursor.oldRaw };
      condition.push(`#a${i} = :o${i}`);
    }
  });
  try {
    await dynamodb.send(new UpdateItemCommand({
      TableName: tableName,
      Key: { [PACER_PARTITION_KEY]: { S: keyPacerItemKey(write.key) } },
      UpdateExpression: `SET ${set.join(', ')}`,
      ConditionExpression: condition.join(' AND '),
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    }));
    return true;
  } catch (error) {
    if (isConditionalCheckFailed(error)) {
      return false;
    }
    throw error;
  }
}

/** Arguments of {@link setAsideByKey}. */
export interface SetAsideOptions<T> {
  readonly dynamodb: DynamoDBClient;
  readonly tableName: string;
  readonly timing: KeyTiming;
  readonly cursors: ReadonlyMap<string, KeyCursor>;
  readonly keptPerKey: ReadonlyMap<string, number>;
  /**
   * Sends the delayed copy (dispatch.ts `sendDelayedCopy`, hiding the message if that fails).
   * Resolves to the message id when the message stays on the queue (a batch item failure).
   */
  readonly send: (item: T, delaySeconds: number, turnAtMs: number | undefined) => Promise<string | undefined>;
  /** Told about a cursor write that failed on an error (the delays then come from the slot cursors). */
  readonly onCursorError?: (key: string, error: unknown) => void;
}

/**
 * Sets the requests aside: writes the keys' advisory cursors (in parallel, one write per key), plans
 * each key whose write did not succeed again from its slot cursor alone, then sends the delayed
 * copies. Resolves to the message ids that stay on the queue.
 */
export async function setAsideByKey<T extends KeyedCall & { readonly message: object }>(
  aside: readonly T[], options: SetAsideOptions<T>,
): Promise<string[]> {
  if (aside.length === 0) {
    return [];
  }
  const planned = planSetAside(aside, options.cursors, options.timing, options.keptPerKey);
  const lostKeys = new Set<string>();
  await Promise.all(planned.writes.map(async (write) => {
    try {
      if (!await writeAsideCursors(options.dynamodb, options.tableName, write)) {
        lostKeys.add(write.key);
      }
    } catch (error) {
      options.onCursorError?.(write.key, error);
      lostKeys.add(write.key);
    }
  }));
  const fallback = lostKeys.size === 0 ? undefined
    : planSetAside(aside.filter((call) => lostKeys.has(limitedKeyOf(call)!)), options.cursors, options.timing, options.keptPerKey, false).plans;
  const plans = [...planned.plans.filter((plan) => !lostKeys.has(limitedKeyOf(plan.item)!)), ...fallback ?? []];
  const stay: string[] = [];
  // A few at a time: each is one SendMessage.
  for (let i = 0; i < plans.length; i += 10) {
    const sent = await Promise.all(plans.slice(i, i + 10).map((plan) => options.send(plan.item, plan.delaySeconds, plan.turnAtMs)));
    stay.push(...sent.filter((id): id is string => id !== undefined));
  }
  return stay;
}
