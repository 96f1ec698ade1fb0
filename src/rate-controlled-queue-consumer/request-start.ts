/**
 * When a request started waiting: the time its first message reached the request queue. A quota
 * wait is bounded by the request's own deadline (its `callbackTimeout` counted from this start,
 * vendor-call.ts), not by a deadline counted from whenever the quota was found spent: a request
 * that already waited long in the queue must not be kept for a period it cannot live to see.
 *
 * The dispatcher stamps `requestStartedAtMs` into a message that has none (the user's workflow sent
 * it), from the delivery's `SentTimestamp` attribute: the epoch milliseconds at which SQS received
 * the message (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html,
 * "SentTimestamp"). The stamped body replaces the record's, so every copy the dispatcher sends back
 * (a postponement) carries it, and so does every execution's input, retry and deferral: a re-enqueued
 * copy's own SentTimestamp would restart the clock.
 */
import type { SQSRecord } from 'aws-lambda';
import type { AnyRequestMessage } from '../shared/messages';

/** A message and its record, the record's body holding the stamped message. */
export interface StampedRequest<M extends AnyRequestMessage> {
  readonly record: SQSRecord;
  readonly message: M;
}

/** Whether `value` is a usable start: a whole, positive epoch-milliseconds number. */
export function isRequestStart(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0;
}

/**
 * The message with its `requestStartedAtMs` (kept when it has a usable one, else the record's
 * SentTimestamp, else `nowMs`), and the record with the stamped body (unchanged when already stamped).
 */
export function withRequestStart<M extends AnyRequestMessage>(message: M, record: SQSRecord, nowMs: number): StampedRequest<M> {
  if (isRequestStart(message.requestStartedAtMs)) {
    return { record, message };
  }
  const sent = Number(record.attributes?.SentTimestamp);
  const stamped = { ...message, requestStartedAtMs: isRequestStart(sent) ? sent : Math.floor(nowMs) };
  return { record: { ...record, body: JSON.stringify(stamped) }, message: stamped };
}

/**
 * Splits the requests of a batch that found a quota spent until `spentUntilMs`: those that may wait
 * for the period (QuotaExhaustedAction.WAIT, and the period ends by their deadline, `quotaMaxWaitMs`
 * after their start) and those that may not, which go on so that the vendor caller fails them at once
 * with VendorQuotaExhausted instead of keeping them in vain (its own check decides, vendor-call.ts;
 * the pacing slot they take is unused, and no call can be made while the quota is spent anyway).
 */
export function splitByQuotaWait<T extends { readonly message: AnyRequestMessage }>(
  items: readonly T[], spentUntilMs: number, config: { readonly whenQuotaExhausted?: 'WAIT' | 'FAIL'; readonly quotaMaxWaitMs?: number },
): { readonly wait: T[]; readonly goOn: T[] } {
  if (config.whenQuotaExhausted === 'FAIL') {
    return { wait: [], goOn: [...items] };
  }
  const maxWaitMs = config.quotaMaxWaitMs;
  if (maxWaitMs === undefined) {
    return { wait: [...items], goOn: [] };
  }
  const wait: T[] = [];
  const goOn: T[] = [];
  for (const item of items) {
    const start = item.message.requestStartedAtMs;
    // Unstamped (cannot happen after withRequestStart): it may wait, as before.
    (isRequestStart(start) && spentUntilMs > start + maxWaitMs ? goOn : wait).push(item);
  }
  return { wait, goOn };
}
