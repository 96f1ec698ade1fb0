/**
 * A min-heap of entries ordered by time, then by insertion (`seq`): what fires first in the
 * virtual-time models (local/bench-sim.ts's clock, local/bench-dispatch-model.ts's queue).
 */
export interface TimedEntry {
  readonly at: number;
  readonly seq: number;
}

export class TimeHeap<T extends TimedEntry> {
  private readonly items: T[] = [];

  public get length(): number {
    return this.items.length;
  }

  /** The earliest entry, without removing it. */
  public peek(): T | undefined {
    return this.items[0];
  }

  public push(entry: T): void {
    const h = this.items;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const p = Math.floor((i - 1) / 2);
      if (earlier(h[p], h[i])) break;
      [h[p], h[i]] = [h[i], h[p]];
      i = p;
    }
  }

  /** Removes and returns the earliest entry. */
  public pop(): T | undefined {
    const h = this.items;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && earlier(h[l], h[m])) m = l;
        if (r < h.length && earlier(h[r], h[m])) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i], h[m]];
        i = m;
      }
    }
    return top;
  }
}

function earlier(a: TimedEntry, b: TimedEntry): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
