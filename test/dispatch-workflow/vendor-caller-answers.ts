/**
 * The vendor caller's real answers (the `callVendor` logic the Lambda runs), shaped as the
 * `lambda:invoke` integration returns them, for the tests that execute the synthesized workflows:
 * a route is tested with the input it really receives, not a hand-written copy of it.
 */
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { callVendor, VendorCallEvent } from '../../src/dispatch-workflow/vendor-call';
import { Clock } from '../../src/rate-controlled-queue-consumer/pacer';

const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined } as any;

/**
 * What the caller answers when the vendor paused dispatch for a minute, longer than its wait
 * budget: `{ statusCode: null, body: null, headers: null, requeue: { delaySeconds, reason } }`.
 * The pacer table is mocked (DynamoDB GetItem, the SDK's output shape); the vendor is never called.
 */
export async function callerAnswerDuringVendorPause(invokeInput: { Payload: VendorCallEvent }): Promise<unknown> {
  const ddb = mockClient(DynamoDBClient);
  // A virtual clock: sleeps pass at once, so the answer never depends on how loaded the machine is
  // (a real clock made the caller late for its slot under load: 'NoSlotInTime' instead of 'VendorPaused').
  let nowMs = Date.now();
  // Each sleep first lets pending I/O answer (a macrotask), as real time would: the caller races its
  // pause check (mocked reads, answered in microtasks) against sleeping until the slot.
  const clock: Clock = {
    now: () => nowMs,
    sleep: async (ms) => {
      // The time to wake at is fixed when the sleep starts: a sleep that lost a race and is still
      // pending never moves the clock past where the caller has got to meanwhile.
      const wakeAtMs = nowMs + Math.max(0, ms);
      await new Promise((resolve) => setImmediate(resolve));
      nowMs = Math.max(nowMs, wakeAtMs);
    },
  };
  try {
    ddb.on(GetItemCommand).resolves({ Item: { pk: { S: 'pacer' }, pausedUntilMs: { N: String(nowMs + 60_000) } } });
    // The slot the dispatcher reserved is a lead ahead of the call.
    const answer = await callVendor({ ...invokeInput.Payload, slotAtMs: nowMs + 150 }, {
      clock,
      dynamodb: new DynamoDBClient({ region: 'us-east-1' }),
      config: {
        proxyUrl: 'http://127.0.0.1:9/vendor/',
        region: 'us-east-1',
        requestsPerSecond: 10,
        pacerTableName: 'pacer',
        latenessToleranceMs: 30,
        fireToleranceMs: 10,
        maxSlotWaitMs: 1000,
        callTimeoutMs: 500,
        defaultPauseMs: 1000,
        maxPauseMs: 900_000,
      },
      sign: async ({ headers }) => headers,
      fetch: () => {
        throw new Error('the vendor must not be called during a pause');
      },
      logger: silent,
    });
    // lambda:invoke's output (the SDK's InvokeCommandOutput, Payload parsed as JSON).
    return { ExecutedVersion: '$LATEST', Payload: answer, StatusCode: 200 };
  } finally {
    ddb.restore();
  }
}
