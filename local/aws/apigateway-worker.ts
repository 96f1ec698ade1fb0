/**
 * The code of the API Gateway worker thread (see apigateway-host.ts): one LocalApiGateway, driven
 * by the host's calls (worker-protocol.ts).
 */
import { workerData } from 'node:worker_threads';
import { LocalApiGateway, LocalApiGatewayOptions } from './apigateway';
import { serveWorker } from './worker-protocol';
import { rewriteHost } from '../types';

export interface ApiGatewayWorkerData {
  readonly resources: LocalApiGatewayOptions['resources'];
  readonly sqsEndpoint: string;
  readonly hostMap: Record<string, string>;
}

void serveWorker(async () => {
  const data = workerData as ApiGatewayWorkerData;
  let hostMap = data.hostMap;
  let apiRewrite = (url: string) => url;
  const gateway = new LocalApiGateway({
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
  return {
    info: { ports: gateway.ports() },
    handlers: {
      hostMap: (map: Record<string, string>) => {
        hostMap = map;
      },
      stats: (apiId: string) => gateway.stats(apiId),
      accessLog: (apiId: string) => gateway.accessLog(apiId),
      stop: () => gateway.stop(),
    },
  };
});
