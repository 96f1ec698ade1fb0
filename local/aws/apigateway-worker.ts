/**
 * The code of the API Gateway worker thread (see apigateway-host.ts): one LocalApiGateway, driven
 * by messages from the host.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LocalApiGateway, LocalApiGatewayOptions } from './apigateway';
import { rewriteHost } from '../types';

export type ToApiGatewayWorker =
  | { readonly type: 'hostMap'; readonly hostMap: Record<string, string> }
  | { readonly type: 'stats'; readonly id: number; readonly apiId: string }
  | { readonly type: 'stop' };

export type FromApiGatewayWorker =
  | { readonly type: 'started'; readonly ports: Record<string, number> }
  | { readonly type: 'failed'; readonly message: string }
  | { readonly type: 'stats'; readonly id: number; readonly stats?: unknown; readonly error?: string }
  | { readonly type: 'stopped' };

export interface ApiGatewayWorkerData {
  readonly resources: LocalApiGatewayOptions['resources'];
  readonly sqsEndpoint: string;
  readonly hostMap: Record<string, string>;
}

async function main(): Promise<void> {
  const port = parentPort!;
  const data = workerData as ApiGatewayWorkerData;
  let hostMap = data.hostMap;
  let gateway: LocalApiGateway;
  try {
    let apiRewrite = (url: string) => url;
    gateway = new LocalApiGateway({
      resources: data.resources,
      sqsEndpoint: data.sqsEndpoint,
      // An integration URI is one of these APIs or an outside host served locally (the vendor).
      rewriteUrl: (url) => {
        const viaApi = apiRewrite(url);
        return viaApi !== url ? viaApi : rewriteHost(hostMap, url);
      },
    });
    await gateway.start();
    apiRewrite = gateway.rewriter();
    port.postMessage({ type: 'started', ports: gateway.ports() } satisfies FromApiGatewayWorker);
  } catch (error) {
    port.postMessage({ type: 'failed', message: (error as Error).message } satisfies FromApiGatewayWorker);
    return;
  }
  port.on('message', (m: ToApiGatewayWorker) => {
    if (m.type === 'hostMap') {
      hostMap = m.hostMap;
    } else if (m.type === 'stats') {
      try {
        port.postMessage({ type: 'stats', id: m.id, stats: gateway.stats(m.apiId) } satisfies FromApiGatewayWorker);
      } catch (error) {
        port.postMessage({ type: 'stats', id: m.id, error: (error as Error).message } satisfies FromApiGatewayWorker);
      }
    } else if (m.type === 'stop') {
      void gateway.stop().finally(() => port.postMessage({ type: 'stopped' } satisfies FromApiGatewayWorker));
    }
  });
}

void main();
