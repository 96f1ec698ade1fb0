/**
 * The code of the vendor worker thread (see vendor-host.ts): one VendorSimulator, driven by
 * messages from the host.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { apiRewriter } from './aws/apigateway';
import { VendorSimulator } from './vendor-simulator';

export type ToVendorWorker =
  | { readonly type: 'apiPorts'; readonly ports: Record<string, number> }
  | { readonly type: 'call'; readonly id: number; readonly method: VendorQuery };

export type FromVendorWorker =
  | { readonly type: 'started'; readonly base: string }
  | { readonly type: 'failed'; readonly message: string }
  | { readonly type: 'result'; readonly id: number; readonly value?: unknown; readonly error?: string };

/** What the host may ask (all answers are plain data). */
export type VendorQuery = 'arrivals' | 'stats' | 'callbacks' | 'stop';

async function main(): Promise<void> {
  const port = parentPort!;
  let rewrite = (url: string) => url;
  let vendor: VendorSimulator;
  try {
    // The callback URLs are the webhook's execute-api URLs: mapped once the runtime has started.
    vendor = new VendorSimulator({ ...workerData.options, rewriteUrl: (url: string) => rewrite(url) });
    port.postMessage({ type: 'started', base: await vendor.start() } satisfies FromVendorWorker);
  } catch (error) {
    port.postMessage({ type: 'failed', message: (error as Error).message } satisfies FromVendorWorker);
    return;
  }
  port.on('message', async (m: ToVendorWorker) => {
    if (m.type === 'apiPorts') {
      rewrite = apiRewriter(m.ports);
      return;
    }
    try {
      const value = m.method === 'stop' ? await vendor.stop() : vendor[m.method]();
      port.postMessage({ type: 'result', id: m.id, value } satisfies FromVendorWorker);
    } catch (error) {
      port.postMessage({ type: 'result', id: m.id, error: (error as Error).message } satisfies FromVendorWorker);
    }
  });
}

void main();
