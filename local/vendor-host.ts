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
import { WorkerHost } from './aws/worker-bundle';
import { RateChange } from './rate-schedule';
import { VendorCallbackRecord, VendorSimulatorOptions, VendorStats } from './vendor-simulator';

export type VendorHostOptions = Omit<VendorSimulatorOptions, 'rewriteUrl' | 'clock'>;

export class VendorSimulatorHost {
  public static async start(options: VendorHostOptions): Promise<VendorSimulatorHost> {
    const { host, info } = await WorkerHost.start(path.join(__dirname, 'vendor-worker.ts'), { options }, 'vendor');
    return new VendorSimulatorHost(host, info.base as string);
  }

  /** @param base the vendor's loopback base URL */
  private constructor(private readonly host: WorkerHost, public readonly base: string) {}

  /** The REST APIs' loopback ports (LocalRuntime.apiGateway.ports), to deliver callbacks to the webhook. */
  public mapApis(ports: Record<string, number>): void {
    // Messages to a worker arrive in order: every later call sees the new ports.
    void this.host.call('apiPorts', ports).catch(() => undefined);
  }

  /** See VendorSimulator.setRateSchedule; resolves once the vendor applies it. */
  public setRateSchedule(schedule: RateChange[]): Promise<void> {
    return this.host.call<void>('rateSchedule', schedule);
  }

  /** See VendorSimulator.arrivals. */
  public arrivals(): Promise<number[]> {
    return this.host.call<number[]>('arrivals');
  }

  /** See VendorSimulator.stats. */
  public stats(): Promise<VendorStats> {
    return this.host.call<VendorStats>('stats');
  }

  /** See VendorSimulator.callbacks. */
  public callbacks(): Promise<VendorCallbackRecord[]> {
    return this.host.call<VendorCallbackRecord[]>('callbacks');
  }

  public stop(): Promise<void> {
    return this.host.stop();
  }
}
