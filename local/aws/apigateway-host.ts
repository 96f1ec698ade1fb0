/**
 * The local API Gateway (apigateway.ts) in its own worker thread.
 *
 * The paced requests cross the ThrottledProxy on their way to the vendor: on the host's event loop,
 * shared with the Step Functions interpreter and the SQS emulator, they waited behind whatever
 * else was running (tens to hundreds of milliseconds on 2 cores), which spread their arrivals at
 * the vendor well beyond what API Gateway adds on AWS. In a thread of its own the gateway answers
 * as soon as a request arrives. The template is compiled inside the worker: anything it does not
 * support fails `start()` with the same message as in-process.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { apiRewriter, LocalApiGatewayOptions, LocalApiStats } from './apigateway';
import type { ApiGatewayWorkerData, FromApiGatewayWorker, ToApiGatewayWorker } from './apigateway-worker';
import { startWorker } from './worker-bundle';
import { UrlRewriter } from '../types';

export interface ApiGatewayHostOptions {
  readonly resources: LocalApiGatewayOptions['resources'];
  readonly sqsEndpoint: string;
  /** Outside hosts served locally (e.g. the vendor), for HTTP_PROXY integrations. */
  readonly hostMap: Record<string, string>;
}

export class ApiGatewayHost {
  public static async start(options: ApiGatewayHostOptions): Promise<ApiGatewayHost> {
    const workerData: ApiGatewayWorkerData = { resources: options.resources, sqsEndpoint: options.sqsEndpoint, hostMap: options.hostMap };
    const { worker, started } = await startWorker<FromApiGatewayWorker & { type: 'started' }>(
      path.join(__dirname, 'apigateway-worker.ts'), workerData, 'API Gateway');
    return new ApiGatewayHost(worker, started.ports);
  }

  private nextId = 0;
  private readonly pending = new Map<number, { resolve(stats: LocalApiStats): void; reject(error: Error): void }>();

  /** @param ports the loopback port of each REST API, by id */
  private constructor(private readonly worker: Worker, public readonly ports: Record<string, number>) {
    worker.on('message', (m: FromApiGatewayWorker) => {
      if (m.type !== 'stats') return;
      const waiting = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) waiting?.reject(new Error(m.error));
      else waiting?.resolve(m.stats as LocalApiStats);
    });
    // A crash of the worker fails what waits on it instead of hanging.
    worker.on('error', (error) => {
      for (const waiting of this.pending.values()) waiting.reject(error);
      this.pending.clear();
    });
  }

  /** Maps the URLs of these REST APIs to their loopback servers (see LocalApiGateway.rewriter). */
  public rewriter(): UrlRewriter {
    return apiRewriter(this.ports);
  }

  /** Outside hosts served locally changed (LocalRuntime.mapHost). */
  public setHostMap(hostMap: Record<string, string>): void {
    this.worker.postMessage({ type: 'hostMap', hostMap } satisfies ToApiGatewayWorker);
  }

  /** What the REST API `apiId` answered so far. */
  public stats(apiId: string): Promise<LocalApiStats> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'stats', id, apiId } satisfies ToApiGatewayWorker);
    });
  }

  public async stop(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.worker.on('message', (m: FromApiGatewayWorker) => m.type === 'stopped' && resolve()));
    this.worker.postMessage({ type: 'stop' } satisfies ToApiGatewayWorker);
    await Promise.race([stopped, new Promise<void>((resolve) => setTimeout(resolve, 2000).unref())]);
    await this.worker.terminate();
  }
}
