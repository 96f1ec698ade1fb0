/**
 * The order a batch's requests get pacing slots in (issue 15, item 4; priority-order.ts): effective
 * priority (with aging), then the request's start, then as received. On fake time: every start and
 * the clock are explicit.
 */
import { orderByPriority, PrioritizedItem } from '../../src/rate-controlled-queue-consumer/priority-order';
import type { KeyLimitsSpec, RequestPriority } from '../../src/shared/key-limits';
import { DEFAULT_PRIORITY_AGING_MS } from '../../src/shared/request-priority';

const NOW = 1_800_000_000_000;

interface Item extends PrioritizedItem {
  readonly id: string;
}

function item(
  id: string, priority: RequestPriority | null | undefined, startedAgoMs: number, keyLimits?: Partial<KeyLimitsSpec>, key?: string,
): Item {
  const message = { taskToken: `t-${id}`, requestId: id, payload: {}, requestStartedAtMs: NOW - startedAgoMs };
  const spec: KeyLimitsSpec = { requestsPerSecond: 5, quotas: {}, priorityAgingMs: DEFAULT_PRIORITY_AGING_MS, paused: false, ...keyLimits };
  return {
    id,
    message: { ...message, ...(priority !== undefined ? { priority } : {}), ...(key !== undefined ? { key } : {}) },
    ...(keyLimits ? { keyLimits: spec } : {}),
  };
}

const ids = (items: Item[]) => items.map((i) => i.id);

describe('orderByPriority', () => {
  test('high, then normal (also absent or null), then low; the input array is left as it was', () => {
    const batch = [item('low', 'low', 0), item('normal', 'normal', 0), item('absent', undefined, 0), item('null', null, 0), item('high', 'high', 0)];
    expect(ids(orderByPriority(batch, NOW))).toEqual(['high', 'normal', 'absent', 'null', 'low']);
    expect(ids(batch)).toEqual(['low', 'normal', 'absent', 'null', 'high']);
  });

  test('ties by start (the oldest first), then as received (stable)', () => {
    const batch = [item('n-new', 'normal', 100), item('n-old', 'normal', 5_000), item('n-same-1', 'normal', 200), item('n-same-2', 'normal', 200)];
    expect(ids(orderByPriority(batch, NOW))).toEqual(['n-old', 'n-same-1', 'n-same-2', 'n-new']);
  });

  test('aging: a low request rises one level per aging period it has waited, and ranks by its older start among its new peers', () => {
    const aging = DEFAULT_PRIORITY_AGING_MS;
    // Just under one period: still low, after a fresh normal.
    expect(ids(orderByPriority([item('low', 'low', aging - 1), item('normal', 'normal', 0)], NOW))).toEqual(['normal', 'low']);
    // One period: normal, and older than the fresh normal.
    expect(ids(orderByPriority([item('normal', 'normal', 0), item('low', 'low', aging)], NOW))).toEqual(['low', 'normal']);
    // But not above a fresh high.
    expect(ids(orderByPriority([item('high', 'high', 0), item('low', 'low', aging)], NOW))).toEqual(['high', 'low']);
    // Two periods: high, older than the fresh high: served first.
    expect(ids(orderByPriority([item('high', 'high', 0), item('low', 'low', 2 * aging)], NOW))).toEqual(['low', 'high']);
  });

  test('a keyed request ages by its key\'s priorityAgingMs; an unkeyed one (or a key without limits) by the default, in one batch', () => {
    const batch = [
      item('unkeyed-normal', 'normal', 0),
      // Waited 10 s: with its key's aging of 5 s it is high; without it still low.
      item('keyed-low-fast-aging', 'low', 10_000, { priorityAgingMs: 5_000 }, 'acme'),
      item('unkeyed-low', 'low', 10_000),
      item('keyed-low-default-aging', 'low', 10_000, undefined, 'globex'),
      item('keyed-high', 'high', 0, { priorityAgingMs: 5_000 }, 'acme'),
    ];
    expect(ids(orderByPriority(batch, NOW))).toEqual(['keyed-low-fast-aging', 'keyed-high', 'unkeyed-normal', 'unkeyed-low', 'keyed-low-default-aging']);
  });

  test('a message without a start counts as starting now (after every stamped peer of its rank)', () => {
    const unstamped: Item = { id: 'unstamped', message: { taskToken: 't', requestId: 'unstamped', payload: {} } };
    expect(ids(orderByPriority([unstamped, item('stamped', 'normal', 1)], NOW))).toEqual(['stamped', 'unstamped']);
  });
});
