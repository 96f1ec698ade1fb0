/**
 * A request's start (request-start.ts): stamped once from the first delivery's SentTimestamp and
 * kept by every copy, so that a quota wait counts the request's deadline from when it started.
 */
import { requestRecord } from './sqs-record';
import { buildDispatchInput } from '../../src/rate-controlled-queue-consumer/dispatch';
import { withRequestStart } from '../../src/rate-controlled-queue-consumer/request-start';
import type { RequestMessage } from '../../src/shared/messages';
import { buildVendorCallInput } from '../../src/shared/vendor-call';

const SENT = 1_800_000_000_000;
const NOW = SENT + 5000;

describe('withRequestStart', () => {
  test('GIVEN a message without a start WHEN stamped THEN it gets the record\'s SentTimestamp, in the message and in the record\'s body', () => {
    const record = requestRecord({ taskToken: 't', requestId: 'a', payload: { x: 1 } }, 'm-a', SENT);
    const plain: RequestMessage = { taskToken: 't', requestId: 'a', payload: { x: 1 } };
    const { message, record: stamped } = withRequestStart(plain, record, NOW);
    expect(message.requestStartedAtMs).toBe(SENT);
    expect(JSON.parse(stamped.body)).toEqual({ taskToken: 't', requestId: 'a', payload: { x: 1 }, requestStartedAtMs: SENT });
    expect(stamped.messageId).toBe('m-a');
  });

  test('GIVEN a message that carries its start WHEN delivered again THEN the start and the record are kept as they are', () => {
    const body = { taskToken: 't', requestId: 'b', payload: {}, requestStartedAtMs: SENT - 60_000 };
    const record = requestRecord(body, 'm-b', SENT);
    const out = withRequestStart(body, record, NOW);
    expect(out.message.requestStartedAtMs).toBe(SENT - 60_000);
    expect(out.record).toBe(record);
  });

  test('GIVEN an unusable start or no SentTimestamp WHEN stamped THEN the record\'s SentTimestamp, else now, is used', () => {
    const bad = { taskToken: 't', requestId: 'c', payload: {}, requestStartedAtMs: 'yesterday' as unknown as number };
    expect(withRequestStart(bad, requestRecord(bad, 'm-c', SENT), NOW).message.requestStartedAtMs).toBe(SENT);
    const noAttributes = { ...requestRecord({ taskToken: 't', requestId: 'd', payload: {} }, 'm-d', SENT), attributes: {} as any };
    const plain: RequestMessage = { taskToken: 't', requestId: 'd', payload: {} };
    expect(withRequestStart(plain, noAttributes, NOW).message.requestStartedAtMs).toBe(NOW);
  });

  test('GIVEN a vendor call WHEN stamped and built THEN its execution input carries the start too', () => {
    const call = { kind: 'call' as const, taskToken: 't', requestId: 'e', call: { method: 'GET', path: '/x' } };
    const { message } = withRequestStart(call, requestRecord(call, 'm-e', SENT), NOW);
    expect(buildVendorCallInput(message, NOW, 3600).requestStartedAtMs).toBe(SENT);
  });

  test('GIVEN a job submission WHEN its dispatch input is built THEN it carries the start (now for a message never stamped)', () => {
    expect(buildDispatchInput({ taskToken: 't', requestId: 'f', payload: {}, requestStartedAtMs: SENT }, NOW, 3600).requestStartedAtMs).toBe(SENT);
    expect(buildDispatchInput({ taskToken: 't', requestId: 'g', payload: {} }, NOW, 3600).requestStartedAtMs).toBe(NOW);
  });
});
