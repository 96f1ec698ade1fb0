/**
 * The worker side of the local runtime's worker threads (see worker-bundle.ts for the host side).
 *
 * Protocol: the worker reports `{ type: 'started', ...info }` or `{ type: 'failed', message }`,
 * then answers `{ type: 'call', id, method, args }` with `{ type: 'result', id, value }` or
 * `{ type: 'result', id, error }`. Values cross as structured clones: plain data only.
 * This module is bundled into the workers: it must not import host-only code (esbuild).
 */
import { parentPort } from 'node:worker_threads';

/** The worker's answers to the host's calls, by method name; `stop` is called on `WorkerHost.stop()`. */
export type WorkerHandlers = Record<string, (...args: any[]) => unknown>;

export type ToWorker = { readonly type: 'call'; readonly id: number; readonly method: string; readonly args: unknown[] };
export type FromWorker =
  | { readonly type: 'started'; readonly [key: string]: unknown }
  | { readonly type: 'failed'; readonly message: string }
  | { readonly type: 'result'; readonly id: number; readonly value?: unknown; readonly error?: string };

/** Runs `start` in this worker, reports how it went, then serves the host's calls with its handlers. */
export async function serveWorker(start: () => Promise<{ info: Record<string, unknown>; handlers: WorkerHandlers }>): Promise<void> {
  const port = parentPort!;
  let handlers: WorkerHandlers;
  try {
    const started = await start();
    handlers = started.handlers;
    port.on('message', async (m: ToWorker) => {
      try {
        const handler = handlers[m.method];
        if (!handler) throw new Error(`the worker has no method ${m.method}`);
        port.postMessage({ type: 'result', id: m.id, value: await handler(...m.args) } satisfies FromWorker);
      } catch (error) {
        port.postMessage({ type: 'result', id: m.id, error: (error as Error).message } satisfies FromWorker);
      }
    });
    port.postMessage({ type: 'started', ...started.info } satisfies FromWorker);
  } catch (error) {
    port.postMessage({ type: 'failed', message: (error as Error).message } satisfies FromWorker);
  }
}
