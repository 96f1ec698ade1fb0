/**
 * The code of the vendor worker thread (see vendor-host.ts): one VendorSimulator, driven by the
 * host's calls (local/aws/worker-protocol.ts).
 */
import { workerData } from 'node:worker_threads';
import { apiRewriter } from './aws/apigateway';
import { serveWorker } from './aws/worker-protocol';
import { RateChange } from './rate-schedule';
import { VendorSimulator } from './vendor-simulator';

void serveWorker(async () => {
  let rewrite = (url: string) => url;
  // The callback URLs are the webhook's execute-api URLs: mapped once the runtime has started.
  const vendor = new VendorSimulator({ ...workerData.options, rewriteUrl: (url: string) => rewrite(url) });
  const base = await vendor.start();
  return {
    info: { base },
    handlers: {
      apiPorts: (ports: Record<string, number>) => {
        rewrite = apiRewriter(ports);
      },
      arrivals: () => vendor.arrivals(),
      rateSchedule: (schedule: RateChange[]) => vendor.setRateSchedule(schedule),
      stats: () => vendor.stats(),
      callbacks: () => vendor.callbacks(),
      stop: () => vendor.stop(),
    },
  };
});
