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
import { apiRewriter, LocalApiGatewayOptions, LocalApiStats } from './apigateway';
import type { ApiGatewayWorkerData } from './apigateway-worker';
import { WorkerHost } from './worker-bundle';
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
    const { host, info } = await WorkerHost.start(path.join(__dirname, 'apigateway-worker.ts'), workerData, 'API Gateway');
    return new ApiGatewayHost(host, info.ports as Record<string, number>);
  }

  /** @param ports the loopback port of each REST API, by id */
  private constructor(private readonly host: WorkerHost, public readonly ports: Record<string, number>) {}

  /** Maps the URLs of these REST APIs to their loopback servers (see LocalApiGateway.rewriter). */
  public rewriter(): UrlRewriter {
    return apiRewriter(this.ports);
  }

  /** Outside hosts served locally changed (LocalRuntime.mapHost); in effect for the next request. */
  public setHostMap(hostMap: Record<string, string>): void {
    // Messages to a worker arrive in order: no request sent after this call sees the old map.
    void this.host.call('hostMap', hostMap).catch(() => undefined);
  }

  /** What the REST API `apiId` answered so far. */
  public stats(apiId: string): Promise<LocalApiStats> {
    return this.host.call<LocalApiStats>('stats', apiId);
  }

  /** The access log lines of the REST API `apiId` so far (see LocalApiGateway.accessLog). */
  public accessLog(apiId: string): Promise<string[]> {
    return this.host.call<string[]>('accessLog', apiId);
  }

  public stop(): Promise<void> {
    return this.host.stop();
  }
}
