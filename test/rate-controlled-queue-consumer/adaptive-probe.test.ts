import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { inMemoryPacerItem } from './pacer-item-fake';
import { AdaptiveSpec, ProbeState } from '../../src/contract/adaptive-spec';
import { placeProbe, planProbe, ProbeGrid, spoiledProbe } from '../../src/rate-controlled-queue-consumer/adaptive-probe';
import { decreaseAdaptiveRate } from '../../src/rate-controlled-queue-consumer/adaptive-rate';
import { Clock, reserveSlots, slotIntervalMs, WINDOW_EDGE_MARGIN_MS } from '../../src/rate-controlled-queue-consumer/pacer';

const T0 = 1_700_000_000_000;
const L = 30;
const SPREAD = L + WINDOW_EDGE_MARGIN_MS;
const SPEC: AdaptiveSpec = { decreaseFactor: 0.7, probeIntervalMs: 10_000, increaseStep: 1, minimumRequestsPerSecond: 10, cooldownMs: 2000 };

/** A reservation continuing a schedule at `rate` (last slot at `last`), under a ceiling of `ceiling`. */
function grid(rate: number, ceiling: number, last: number, n: number): ProbeGrid {
  const I = slotIntervalMs(rate, L);
  return {
    nowMs: last - 2000,
    slots: Array.from({ length: n }, (_, k) => last + (k + 1) * I),
    storedNextSlotAtMs: last + I,
    previousIntervalMs: I,
    intervalMs: I,
    ceilingIntervalMs: slotIntervalMs(ceiling, L),
    slotsPerWindow: rate >= 1 ? Math.floor(rate) : rate, // as pacer.ts effectiveRate
    ceilingSlotsPerWindow: Math.floor(ceiling),
    latenessToleranceMs: L,
    latestSlotMs: last + 60_000,
    probeNotBeforeMs: 0,
  };
}

/**
 * The most requests any arrival of `slots` can find in its closed 1-second window, and the fewest
 * the last probe arrival can, when every request arrives within SPREAD of its slot (the adversary
 * picks each arrival's delay): the probe's claim, checked by brute force over the extremes.
 */
function windowCounts(slots: number[], probe: number[]) {
  const others = slots.filter((s) => !probe.includes(s));
  const most = (arrival: number, earlierProbes: number) =>
    others.filter((s) => s + SPREAD >= arrival - 1000 && s <= arrival).length + earlierProbes + 1;
  // The i-th probe arrival (in time order) at its latest or earliest: with the others as early/late as helps it.
  const mostPerProbeArrival = probe.map((g, i) => Math.max(most(g, i), most(g + SPREAD, i)));
  const last = probe[probe.length - 1];
  const fewestAtLast = others.filter((s) => s >= last + SPREAD - 1000 && s + SPREAD <= last).length + probe.length;
  return { mostPerProbeArrival, fewestAtLast };
}

describe('the adaptive probe: one window holding exactly r + 1 requests, whatever the spread', () => {
  test.each([
    ['100 RPS contract, adaptive 50', 50.7, 100],
    ['1000 RPS contract, adaptive 500', 500.7, 1000],
    ['10 RPS contract, adaptive 5', 5.9, 10],
    ['100 RPS contract, adaptive 90', 90.2, 100],
  ])('GIVEN %s WHEN a reservation plans and places the probe THEN only its last arrival can find r + 1 in its window, every slot stays the ceiling\'s interval apart', (_name, rate, ceiling) => {
    const last = T0;
    const g = grid(rate, ceiling, last, 3000);
    const outcome = planProbe(g)!;
    expect(outcome).toBeDefined();
    const k = outcome.attributes.adaptiveProbeSlots!;
    const atMs = outcome.attributes.adaptiveProbeAtMs!;
    const probe = Array.from({ length: k }, (_, j) => atMs + j * g.ceilingIntervalMs);
    expect(outcome.slots.slice(outcome.slots.indexOf(atMs), outcome.slots.indexOf(atMs) + k)).toEqual(probe);
    // The schedule with the reservation's past: regular slots up to `last`, 2 s of them.
    const past = Array.from({ length: Math.ceil(2000 / g.intervalMs) }, (_, m) => last - m * g.intervalMs).reverse();
    const all = [...past, ...outcome.slots];
    const { mostPerProbeArrival, fewestAtLast } = windowCounts(all, probe);
    const r = Math.floor(rate);
    expect(fewestAtLast).toBe(r + 1);
    expect(mostPerProbeArrival[k - 1]).toBe(r + 1);
    expect(Math.max(...mostPerProbeArrival.slice(0, k - 1), 0)).toBeLessThanOrEqual(r);
    // Never closer than the ceiling's interval (pacer.ts "The rate at run time"); the grid goes on.
    all.slice(1).forEach((s, i) => expect(s - all[i]).toBeGreaterThanOrEqual(g.ceilingIntervalMs));
    expect(outcome.newNextSlotAtMs).toBe(outcome.slots[outcome.slots.length - 1] + g.intervalMs);
    expect(outcome.attributes.adaptiveProbeToMs).toBe(probe[k - 1] + SPREAD);
    expect(outcome.attributes.adaptiveProbeFromMs).toBe(outcome.slots[0]);
  });

  test('GIVEN a schedule with a gap, a changed interval, no room below the ceiling, or under 1 request per second THEN no probe is planned', () => {
    const g = grid(50.7, 100, T0, 100);
    expect(planProbe({ ...g, slots: g.slots.map((s) => s + 5) })).toBeUndefined();
    expect(planProbe({ ...g, previousIntervalMs: g.intervalMs + 1 })).toBeUndefined();
    expect(planProbe(grid(99.5, 100, T0, 200))).toBeUndefined();
    expect(planProbe({ ...g, probeNotBeforeMs: T0 + 60_000 })).toBeUndefined();
    // Below 1 request per second (a contract under 10 RPS can fall that low): no probe, the lazy climb.
    expect(planProbe(grid(0.5, 5, T0, 10))).toBeUndefined();
  });

  test('GIVEN a planning reservation too short to hold the probe THEN it stops before the probe, and the next reservation places it', () => {
    const g = grid(50.7, 100, T0, 46);
    const planned = planProbe(g)!;
    const atMs = planned.attributes.adaptiveProbeAtMs!;
    expect(planned.slots[planned.slots.length - 1]).toBeLessThan(atMs);
    expect(planned.newNextSlotAtMs).toBe(atMs);
    expect(planned.attributes.adaptiveProbeToMs).toBeUndefined();
    const probe: ProbeState = {
      atMs, slots: planned.attributes.adaptiveProbeSlots!, fromMs: planned.attributes.adaptiveProbeFromMs!, refused: false,
    };
    const next = grid(50.7, 100, atMs - g.intervalMs, 50);
    const placed = placeProbe(next, probe)!;
    expect(placed.slots[1] - placed.slots[0]).toBe(g.ceilingIntervalMs);
    expect(placed.attributes.adaptiveProbeToMs).toBe(atMs + (probe.slots - 1) * g.ceilingIntervalMs + SPREAD);
  });

  test('GIVEN the schedule left the planned grid (the probe\'s slot went to a regular request, or lies off this grid) THEN the probe is abandoned', () => {
    const probe: ProbeState = { atMs: T0 + 1000.5, slots: 7, fromMs: T0, refused: false };
    const placed = placeProbe(grid(50.7, 100, T0, 100), probe)!;
    expect(placed.attributes).toEqual(expect.objectContaining({ adaptiveProbeAtMs: undefined, adaptiveProbeToMs: undefined }));
    expect(placeProbe(grid(50.7, 100, T0 - 60_000, 10), probe)).toBeUndefined(); // not reached yet
  });

  test('GIVEN a slot given up inside the probe\'s window THEN the probe is spoiled (judged as refused); outside it, nothing', () => {
    const probe: ProbeState = { atMs: T0 + 1000, slots: 7, fromMs: T0 + 100, toMs: T0 + 1100, refused: false };
    expect(spoiledProbe(probe, T0 + 500)).toEqual({ adaptiveProbeRefusedAtMs: T0 + 1000 });
    expect(spoiledProbe(probe, T0 + 50)).toEqual({});
    expect(spoiledProbe(probe, T0 + 1200)).toEqual({});
    expect(spoiledProbe(probe, undefined)).toEqual({});
  });
});

describe('the probe through reserveSlots and the 429 handler (DynamoDB fake)', () => {
  const ddb = mockClient(DynamoDBClient);
  beforeEach(() => ddb.reset());

  test('GIVEN adaptive 50.7 under a 100 RPS contract, half an interval since the last change WHEN reservations run THEN one plans the probe (a hole), the next places it, a 429 to it is recorded as its refusal (no decrease), and the judgement keeps the rate', async () => {
    const fake = inMemoryPacerItem(ddb);
    const I = slotIntervalMs(50, L);
    let now = T0;
    const clock: Clock = { now: () => now, sleep: async () => undefined };
    Object.assign(fake.item, {
      nextSlotAtMs: String(T0 + 100), intervalMs: String(I), adaptiveRps: '50.7', adaptiveSinceMs: String(T0 - 9_000),
    });
    const dynamodb = new DynamoDBClient({});
    const reserve = () => reserveSlots({
      dynamodb, tableName: 'pacer', requested: 25, requestsPerSecond: 100, latenessToleranceMs: L, maxWaitMs: 5000, clock, adaptivePacing: SPEC,
    });
    const first = await reserve();
    expect(first.slots[0]).toBeGreaterThan(T0 + 100); // the hole
    const atMs = Number(fake.item.adaptiveProbeAtMs);
    expect(atMs).toBeGreaterThanOrEqual(T0 - 9_000 + 10_000);
    expect(fake.item.adaptiveProbeToMs).toBeUndefined();
    let placed: number[] = [];
    for (let i = 0; i < 4 && fake.item.adaptiveProbeToMs === undefined; i++) {
      placed = (await reserve()).slots;
    }
    expect(fake.item.adaptiveProbeToMs).toBeDefined();
    expect(placed).toContain(atMs);
    expect(placed[placed.indexOf(atMs) + 1] - atMs).toBe(slotIntervalMs(100, L));

    // The vendor refuses the probe's last slot.
    const lastProbeSlot = atMs + (Number(fake.item.adaptiveProbeSlots) - 1) * slotIntervalMs(100, L);
    now = lastProbeSlot + 20;
    const outcome = await decreaseAdaptiveRate(dynamodb, 'pacer', now, 100, SPEC, lastProbeSlot);
    expect(outcome).toEqual({ decreased: false, probeRefused: true });
    expect(fake.item.adaptiveRps).toBe('50.7');

    // A cooldown after the probe: judged refused, the rate stays, the next probe a probe interval after this one.
    now = Number(fake.item.adaptiveProbeToMs) + SPEC.cooldownMs;
    const judged = await reserve();
    expect(judged.effectiveRequestsPerSecond).toBe(50.7);
    expect(fake.item.adaptiveProbeAtMs).toBeUndefined();
    expect(fake.item.adaptiveSinceMs).toBe(String(lastProbeSlot + SPREAD));
  });

  test('GIVEN a placed probe the vendor took WHEN judged THEN the rate steps up once', async () => {
    const fake = inMemoryPacerItem(ddb);
    Object.assign(fake.item, {
      nextSlotAtMs: String(T0 + 100),
      intervalMs: String(slotIntervalMs(50, L)),
      adaptiveRps: '49.7',
      adaptiveSinceMs: String(T0 - 20_000),
      adaptiveProbeAtMs: String(T0 - 5000),
      adaptiveProbeSlots: '7',
      adaptiveProbeFromMs: String(T0 - 6000),
      adaptiveProbeToMs: String(T0 - 4900),
    });
    const r = await reserveSlots({
      dynamodb: new DynamoDBClient({}),
      tableName: 'pacer',
      requested: 5,
      requestsPerSecond: 100,
      latenessToleranceMs: L,
      maxWaitMs: 5000,
      clock: { now: () => T0, sleep: async () => undefined },
      adaptivePacing: SPEC,
    });
    expect(r.effectiveRequestsPerSecond).toBe(50.7);
    expect(fake.item.adaptiveRps).toBe('50.7');
    expect(fake.item.adaptiveProbeAtMs).toBeUndefined();
  });

  test('GIVEN a placed probe WHEN a 429 answers a slot outside it THEN the rate decreases and the probe is cleared', async () => {
    const fake = inMemoryPacerItem(ddb);
    Object.assign(fake.item, {
      adaptiveRps: '50.7',
      adaptiveSinceMs: String(T0 - 20_000),
      adaptiveProbeAtMs: String(T0 + 5000),
      adaptiveProbeSlots: '7',
      adaptiveProbeFromMs: String(T0 + 4000),
      adaptiveProbeToMs: String(T0 + 5100),
    });
    const outcome = await decreaseAdaptiveRate(new DynamoDBClient({}), 'pacer', T0, 100, SPEC, T0 - 10);
    expect(outcome.decreased).toBe(true);
    expect(Number(fake.item.adaptiveRps)).toBeCloseTo(50.7 * 0.7);
    expect(fake.item.adaptiveProbeAtMs).toBeUndefined();
  });
});
