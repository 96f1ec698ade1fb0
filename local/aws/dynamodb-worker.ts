/**
 * The code of the DynamoDB worker thread (see startDynamoDb in dynamodb.ts): dynalite in memory on
 * 127.0.0.1, a free port.
 */
import { AddressInfo } from 'node:net';
import { workerData } from 'node:worker_threads';
import { serveWorker } from './worker-protocol';

// dynalite is loaded from where the host resolved it, not bundled: it has native dependencies.
// It ships no types.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const dynalite = require(workerData.dynalitePath) as (options: Record<string, number>) => import('node:http').Server;

void serveWorker(async () => {
  // The default 500 ms in CREATING state only slows start-up; nothing local depends on it.
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    info: { port: (server.address() as AddressInfo).port },
    handlers: {
      // Keep-alive sockets of SDK clients would hold close() open until they time out.
      stop: () => new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    },
  };
});
