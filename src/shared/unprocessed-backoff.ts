/**
 * Waits between BatchGetItem rounds of `UnprocessedKeys`. Keys come back unprocessed when the table
 * throttled the read (or the response passed 16 MB); an immediate retry is throttled again. AWS:
 * "If DynamoDB returns any unprocessed items, you should retry the batch operation on those items.
 * However, we strongly recommend that you use an exponential backoff algorithm"
 * (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html).
 */

/** The waits before the 2nd, 3rd, ... round (ms): one round more than waits in all. */
export const UNPROCESSED_RETRY_DELAYS_MS: readonly number[] = [25, 100, 400];

/** Waits `ms` (injected in tests and in the benchmark's virtual time). */
export type Sleep = (ms: number) => Promise<void>;

export const realSleep: Sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
