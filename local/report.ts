/**
 * Numbers and the chart the demo reports. Pure functions: no I/O except writeChart.
 *
 * Definitions follow ../shared/DESIGN.md "How rate accuracy is measured": a_i is the time request
 * i reached the vendor; W_max is the largest number of arrivals in any sliding 1-second window; a
 * violation is a window holding more than the contract. Windows are closed, [a_i - 1 s, a_i], the
 * stricter of the two ways a vendor may count (issue 13, item 4: two arrivals exactly 1000 ms apart
 * are in one window); pass `closed = false` for the half-open (a_i - 1 s, a_i] of DESIGN.md.
 */
import * as fs from 'fs';

/** The p-th percentile (0..100) of `values`, nearest-rank; undefined when there are none. */
export function percentile(values: number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Largest number of arrivals in any window [a_i - windowMs, a_i] ((a_i - windowMs, a_i] when not `closed`). */
export function maxInAnyWindow(arrivals: number[], windowMs = 1000, closed = true): number {
  const sorted = [...arrivals].sort((a, b) => a - b);
  let max = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while (outside(sorted[start], sorted[end] - windowMs, closed)) start++;
    max = Math.max(max, end - start + 1);
  }
  return max;
}

/** Windows [a_i - 1 s, a_i] ((a_i - 1 s, a_i] when not `closed`) that hold more than `limit` arrivals. */
export function violations(arrivals: number[], limit: number, windowMs = 1000, closed = true): number {
  const sorted = [...arrivals].sort((a, b) => a - b);
  let count = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while (outside(sorted[start], sorted[end] - windowMs, closed)) start++;
    if (end - start + 1 > limit) count++;
  }
  return count;
}

/** Whether an arrival at `t` is before the window that starts at `windowStart`. */
function outside(t: number, windowStart: number, closed: boolean): boolean {
  return closed ? t < windowStart : t <= windowStart;
}

/** Arrivals per whole second since `startMs` (index = second). */
export function perSecond(arrivals: number[], startMs: number, endMs: number): number[] {
  const seconds = Math.max(1, Math.ceil((endMs - startMs) / 1000));
  const counts = new Array<number>(seconds).fill(0);
  for (const a of arrivals) {
    const i = Math.floor((a - startMs) / 1000);
    if (i >= 0 && i < seconds) counts[i]++;
  }
  return counts;
}

/**
 * Delivered rate while a backlog existed: arrivals between the first and the last arrival,
 * divided by that span (the warm-up before the first arrival is skipped).
 */
export function deliveredRps(arrivals: number[]): number {
  if (arrivals.length < 2) return arrivals.length;
  const sorted = [...arrivals].sort((a, b) => a - b);
  const spanSeconds = (sorted[sorted.length - 1] - sorted[0]) / 1000;
  // n arrivals spaced evenly over the span are n - 1 intervals.
  return spanSeconds > 0 ? (sorted.length - 1) / spanSeconds : sorted.length;
}

/** An SVG bar chart of vendor requests per second with the contract as a line. */
export function chartSvg(counts: number[], contractRps: number, title: string): string {
  const width = 720;
  const height = 300;
  const left = 50;
  const bottom = 40;
  const top = 40;
  const plotWidth = width - left - 20;
  const plotHeight = height - top - bottom;
  const yMax = Math.max(contractRps * 1.25, ...counts, 1);
  const barWidth = plotWidth / Math.max(1, counts.length);
  const y = (v: number) => top + plotHeight - (v / yMax) * plotHeight;
  const bars = counts.map((c, i) => {
    const over = c > contractRps;
    return `<rect x="${(left + i * barWidth + 1).toFixed(1)}" y="${y(c).toFixed(1)}" width="${Math.max(1, barWidth - 2).toFixed(1)}" height="${(top + plotHeight - y(c)).toFixed(1)}" fill="${over ? '#d62728' : '#1f77b4'}"/>`;
  }).join('\n  ');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const v = Math.round(yMax * f * 10) / 10;
    return `<text x="${left - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end">${v}</text><line x1="${left}" x2="${left + plotWidth}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`;
  }).join('\n  ');
  const xLabelEvery = Math.max(1, Math.ceil(counts.length / 12));
  const xLabels = counts.map((_, i) => (i % xLabelEvery === 0
    ? `<text x="${left + i * barWidth + barWidth / 2}" y="${top + plotHeight + 16}" font-size="11" text-anchor="middle">${i}</text>` : '')).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
  <rect width="100%" height="100%" fill="white"/>
  <text x="${width / 2}" y="22" font-size="14" text-anchor="middle">${escapeXml(title)}</text>
  ${ticks}
  ${bars}
  <line x1="${left}" x2="${left + plotWidth}" y1="${y(contractRps)}" y2="${y(contractRps)}" stroke="#ff7f0e" stroke-width="2" stroke-dasharray="6 4"/>
  <text x="${left + plotWidth}" y="${y(contractRps) - 6}" font-size="11" text-anchor="end" fill="#ff7f0e">contract ${contractRps} rps</text>
  ${xLabels}
  <text x="${left + plotWidth / 2}" y="${height - 6}" font-size="11" text-anchor="middle">seconds since the first request reached the vendor</text>
  <text x="14" y="${top + plotHeight / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 14 ${top + plotHeight / 2})">vendor requests per second</text>
</svg>
`;
}

export function writeChart(path: string, counts: number[], contractRps: number, title: string): void {
  fs.writeFileSync(path, chartSvg(counts, contractRps, title));
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' }[c] as string));
}

// ---------------------------------------------------------------------------------------------
// Where each request ended (the demo's accounting)
// ---------------------------------------------------------------------------------------------

/**
 * Where one request of the demo ended. Every request is exactly one of these, so
 * `succeeded + failed + timedOut + stillRunning + lost = requests`.
 * - `stillRunning`: still open when the demo stopped waiting, and something that can end it is
 *   left: a message or dead letter for it, a dispatch or vendor-call execution for it, or its
 *   correlation item waiting for a callback. Slow, not lost.
 * - `lost`: still open with nothing left that can end it (its main workflow's own timeout aside):
 *   the library dropped it.
 */
export type RequestOutcome = 'succeeded' | 'failed' | 'timedOut' | 'stillRunning' | 'lost';

/**
 * Why a request timed out.
 * - `planned`: the fault mix planned it (the vendor never calls back, or calls back with a body
 *   that is not JSON, or only after the timeout).
 * - `waitingForSlot`: the call reached the vendor too late to be answered before the timeout, or
 *   never: it was still queued or waiting for a pacing slot (the backlog outlasted the timeout).
 * - `callbackRejected`: the vendor's callback was refused by the webhook or parked in the callback
 *   dead-letter queue.
 * - `callbackLate`: the webhook accepted the callback in time, but the callback queue and processor
 *   resumed nothing before the timeout: the processor found the workflow ended (the correlation item
 *   says LATE) or the callback was still queued when the demo stopped (a slow machine, not a loss).
 * - `unexplained`: none of these. A defect (e.g. a state that fails in a way no Catch handles and
 *   leaves the waiting workflow to time out) looks like this: CI fails on any.
 */
export type TimeoutCause = 'planned' | 'waitingForSlot' | 'callbackRejected' | 'callbackLate' | 'unexplained';

/** What ends an open request: see RequestOutcome. */
export type EndingEvidence = 'message' | 'deadLetter' | 'execution' | 'correlation';

/** What the demo knows about one request when it stops waiting. */
export interface RequestFacts {
  /** Its main workflow execution's status. */
  readonly status: 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';
  /** The execution's error, when it failed. */
  readonly error?: string;
  /**
   * A wait of the main workflow that ended in `States.Timeout` (seen in its history), even when a
   * Catch renamed the error (the example's `ResultFetchFailed` catches the fetch's timeout).
   */
  readonly timedOutWait?: 'submission' | 'fetch';
  /** When the execution ended (ms since the epoch). */
  readonly endedAtMs?: number;
  /** For a running request: what is left that can end it. */
  readonly evidence?: EndingEvidence[];
  /** For a timed-out request: the fault mix planned that it gets no usable answer in time. */
  readonly plannedTimeout?: boolean;
  /** For a timed-out request: a callback for its job was refused or parked. */
  readonly callbackRejected?: boolean;
  /** For a timed-out request: its callback was processed after the timeout (LATE), or is still queued. */
  readonly callbackLate?: boolean;
  /**
   * For a timed-out request: when the call that timed out first reached the vendor, ms since the
   * epoch; undefined if it never did.
   */
  readonly reachedVendorAtMs?: number;
  /** For a timed-out request: how long the vendor takes to answer that call (for a submission: latency + callback delay). */
  readonly answerTakesMs?: number;
  /** What the demo saw of it, for the log line of an unexplained timeout. */
  readonly note?: string;
}

export interface RequestClassification {
  readonly outcome: RequestOutcome;
  readonly timeoutCause?: TimeoutCause;
}

/** States.Timeout, or the example's catch of it on the submission. */
const TIMEOUT_ERRORS = new Set(['States.Timeout', 'VendorTimedOut']);

export function classifyRequest(f: RequestFacts): RequestClassification {
  if (f.status === 'SUCCEEDED') return { outcome: 'succeeded' };
  if (f.status === 'RUNNING') {
    return { outcome: (f.evidence ?? []).length > 0 ? 'stillRunning' : 'lost' };
  }
  const timedOut = f.status === 'TIMED_OUT' || f.timedOutWait !== undefined || (f.status === 'FAILED' && TIMEOUT_ERRORS.has(f.error ?? ''));
  if (!timedOut) return { outcome: 'failed' };
  return { outcome: 'timedOut', timeoutCause: timeoutCause(f) };
}

function timeoutCause(f: RequestFacts): TimeoutCause {
  if (f.plannedTimeout) return 'planned';
  if (f.callbackRejected) return 'callbackRejected';
  if (f.status !== 'TIMED_OUT' && f.endedAtMs !== undefined
    && (f.reachedVendorAtMs === undefined || f.reachedVendorAtMs + (f.answerTakesMs ?? 0) >= f.endedAtMs)) {
    return 'waitingForSlot';
  }
  if (f.callbackLate) return 'callbackLate';
  return 'unexplained';
}
