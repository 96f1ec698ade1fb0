/**
 * The vendor simulator in its own worker thread, for the runs that measure rate accuracy (the
 * benchmark and the demo).
 *
 * The vendor notes when each request arrives and refuses calls above its contract: on the host's
 * event loop, busy with the emulated Step Functions and SQS, a request could wait there tens to
 * hundreds of milliseconds before being noted, so the measured spread said more about the
 * emulator than about the pacing. A real vendor is its own machine; its own thread is the closest
 * local equivalent. Options are the simulator's, less the functions (callback URLs are mapped with
 * the runtime's REST API ports, see `mapApis`).
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { startWorker } from './aws/worker-bundle';
import { VendorCallbackRecord, VendorSimulatorOptions, VendorStats } from './vendor-simulator';
import type { FromVendorWorker, ToVendorWorker, VendorQuery } from './vendor-worker';

export type VendorHostOptions = Omit<VendorSimulatorOptions, 'rewriteUrl' | 'clock'>;

export class VendorSimulatorHost {
  public static async start(options: VendorHostOptions): Promise<VendorSimulatorHost> {
    const { worker, started } = await startWorker<FromVendorWorker & { type: 'started' }>(
      path.join(__dirname, 'vendor-worker.ts'), { options }, 'vendor');
    return new VendorSimulatorHost(worker, started.base);
  }

  private nextId = 0;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();

  /** @param base the vendor's loopback base URL */
  private constructor(private readonly worker: Worker, public readonly base: string) {
    worker.on('message', (m: FromVendorWorker) => {
      if (m.type !== 'result') return;
      const waiting = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) waiting?.reject(new Error(m.error));
      else waiting?.resolve(m.value);
    });
    worker.on('error', (error) => {
      for (const waiting of this.pending.values()) waiting.reject(error);
      this.pending.clear();
    });
  }

  /** The REST APIs' loopback ports (LocalRuntime.apiGateway.ports), to deliver callbacks to the webhook. */
  public mapApis(ports: Record<string, number>): void {
    this.worker.postMessage({ type: 'apiPorts', ports } satisfies ToVendorWorker);
  }

  /** See VendorSimulator.arrivals. */
  public arrivals(): Promise<number[]> {
    return this.call('arrivals') as Promise<number[]>;
  }

  /** See VendorSimulator.stats. */
  public stats(): Promise<VendorStats> {
    return this.call('stats') as Promise<VendorStats>;
  }

  /** See VendorSimulator.callbacks. */
  public callbacks(): Promise<VendorCallbackRecord[]> {
    return this.call('callbacks') as Promise<VendorCallbackRecord[]>;
  }

  public async stop(): Promise<void> {
    await Promise.race([this.call('stop'), new Promise<void>((resolve) => setTimeout(resolve, 2000).unref())]).catch(() => undefined);
    await this.worker.terminate();
  }

  private call(method: VendorQuery): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'call', id, method } satisfies ToVendorWorker);
    });
  }
}
