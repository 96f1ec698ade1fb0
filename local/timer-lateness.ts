/**
 * How late a vendor caller's timer fires against its wall-clock slot on this machine, for the fire
 * tolerance study (docs/benchmark.md, "Fire tolerance"):
 *
 *   npx ts-node --transpile-only local/timer-lateness.ts [wake-ups, default 3000]
 *
 * Each wake-up sleeps until a slot 5-20 ms ahead on the 1/1024 ms grid the way the caller does
 * (setTimeout for slot - Date.now(), again until Date.now() has reached the slot: never early) and
 * records the real lateness on a sub-millisecond wall clock (performance.timeOrigin + now()).
 * Prints quantiles and the fraction later than 2..10 ms, with the load average: the tail is the
 * machine's contention, so say how loaded it was.
 */
import * as os from 'node:os';
import { performance } from 'node:perf_hooks';

const wall = () => performance.timeOrigin + performance.now();

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 3000);
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const slot = Math.ceil(wall()) + 5 + Math.floor(Math.random() * 15) + Math.floor(Math.random() * 1024) / 1024;
    while (Date.now() < slot) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, slot - Date.now())));
    }
    samples.push(wall() - slot);
  }
  samples.sort((a, b) => a - b);
  const q = (p: number) => Number(samples[Math.min(samples.length - 1, Math.floor(p * samples.length))].toFixed(3));
  const over = (t: number) => Number((samples.filter((x) => x > t).length / samples.length).toFixed(5));
  console.log(JSON.stringify({
    n,
    quantiles: [[0, q(0)], [0.1, q(0.1)], [0.5, q(0.5)], [0.9, q(0.9)], [0.99, q(0.99)], [0.999, q(0.999)], [1, q(1)]],
    laterThan: { 2: over(2), 3: over(3), 4: over(4), 5: over(5), 6: over(6), 10: over(10) },
    loadAverage: os.loadavg().map((v) => Number(v.toFixed(2))),
  }));
}

void main();
