/**
 * Local DynamoDB: dynalite (in memory) on loopback, and the template's tables created in it with
 * their key schemas and indexes.
 *
 * Known gaps (BUILD-NOTES): dynalite has no UpdateTimeToLive, so TTL never expires items (readers
 * must filter expired items themselves), and no TransactWriteItems. Conditional writes work.
 */
import { IncomingMessage, ServerResponse } from 'http';
import { AddressInfo } from 'net';
import * as path from 'node:path';
import {
  CreateTableCommand,
  CreateTableCommandInput,
  DescribeTableCommand,
  DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { WorkerHost } from './worker-bundle';
import type { ServiceFaultHook } from '../faults';
import { LocalTemplate } from '../template';
import { LOCAL_CREDENTIALS, LOCAL_REGION, ResolvedResource } from '../types';

// dynalite ships no types: the part used here.
interface DynaliteServer {
  listeners(event: 'request'): Function[];
  removeAllListeners(event: 'request'): void;
  on(event: 'request', listener: (req: IncomingMessage, res: ServerResponse) => void): void;
  listen(port: number, host: string, callback: (err?: Error) => void): void;
  address(): AddressInfo | string | null;
  close(callback: (err?: Error) => void): void;
  closeAllConnections(): void;
  once(event: 'error', listener: (err: Error) => void): void;
}
interface DynaliteOptions {
  readonly createTableMs?: number;
  readonly deleteTableMs?: number;
  readonly updateTableMs?: number;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const dynalite = require('dynalite') as (options: DynaliteOptions) => DynaliteServer;

/** A running local DynamoDB. */
export interface LocalDynamoDb {
  /** Base URL, e.g. `http://127.0.0.1:40123` (no trailing slash). */
  readonly endpoint: string;
  stop(): Promise<void>;
}

/** Throughput dynalite is given for PROVISIONED tables and indexes that leave it out; it never throttles. */
const DEFAULT_THROUGHPUT = { ReadCapacityUnits: 5, WriteCapacityUnits: 5 };
const ACTIVE_TIMEOUT_MS = 5_000;

/**
 * Starts dynalite in memory on 127.0.0.1 with a free port; tables become ACTIVE at once.
 *
 * Without faults it runs in its own worker thread: it answers every GetItem and conditional write
 * of the pacer, and on the host's event loop it used to be a third of that loop's work, delaying
 * the emulated Step Functions and API Gateway (and so the paced requests) behind it. With
 * `faults` (local/faults.ts), which may answer a call with an injected error (throttling), it runs
 * in this thread, where the hook lives.
 */
export async function startDynamoDb(faults?: ServiceFaultHook): Promise<LocalDynamoDb> {
  return faults?.beforeCall ? startInProcess(faults) : startInWorker();
}

async function startInWorker(): Promise<LocalDynamoDb> {
  const { host, info } = await WorkerHost.start(path.join(__dirname, 'dynamodb-worker.ts'), { dynalitePath: require.resolve('dynalite') }, 'DynamoDB');
  return { endpoint: `http://127.0.0.1:${info.port as number}`, stop: () => host.stop() };
}

async function startInProcess(faults: ServiceFaultHook): Promise<LocalDynamoDb> {
  // The default 500 ms in CREATING state only slows start-up; nothing local depends on it.
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  // ---- fault hook (local/faults.ts) begin ----
  const serve = server.listeners('request');
  server.removeAllListeners('request');
  server.on('request', (req, res) => {
    const target = String(req.headers['x-amz-target'] ?? '');
    const action = target.slice(target.indexOf('.') + 1);
    const injected = faults.beforeCall!('dynamodb', action);
    if (!injected) {
      if (faults.afterCall) {
        // The call is carried out; a crash planned after it (e.g. after a quota unit was spent)
        // happens before its answer leaves, as a handler that dies after its side effect.
        const end = res.end.bind(res) as (...args: unknown[]) => void;
        res.end = ((...args: unknown[]) => {
          if (res.statusCode !== 200) {
            end(...args);
          } else {
            void Promise.resolve(faults.afterCall!('dynamodb', action)).catch(() => undefined).finally(() => end(...args));
          }
          return res;
        }) as typeof res.end;
      }
      for (const listener of serve) listener.call(server, req, res);
      return;
    }
    // Read the request to its end, then answer as DynamoDB does (JSON 1.0 error, `__type`).
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${injected.code}`, message: injected.message });
      res.writeHead(injected.status, { 'Content-Type': 'application/x-amz-json-1.0', 'Content-Length': String(Buffer.byteLength(body)) });
      res.end(body);
    });
  });
  // ---- fault hook end ----
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', (err) => (err ? reject(err) : resolve()));
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: () => new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      // Keep-alive sockets of SDK clients would hold close() open until they time out.
      server.closeAllConnections();
    }),
  };
}

/** Creates every AWS::DynamoDB::Table of the template and waits until each is ACTIVE. */
export async function createTables(template: LocalTemplate, endpoint: string): Promise<void> {
  const client = new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  try {
    for (const table of template.ofType('AWS::DynamoDB::Table')) {
      const input = createTableInput(table, template.nameOf(table.logicalId));
      await client.send(new CreateTableCommand(input));
      await waitUntilActive(client, input.TableName!);
    }
  } finally {
    client.destroy();
  }
}

/** Properties turned into CreateTable parameters. */
const APPLIED_PROPERTIES = [
  'TableName', 'KeySchema', 'AttributeDefinitions', 'GlobalSecondaryIndexes', 'LocalSecondaryIndexes',
  'BillingMode', 'ProvisionedThroughput',
];

/**
 * Properties knowingly left out: TimeToLiveSpecification (dynalite cannot set TTL: items never
 * expire), streams (nothing local consumes them), encryption, backups, deletion protection, table
 * class, contributor insights, resource policies and tags (no effect on reads and writes).
 */
const IGNORED_PROPERTIES = [
  'TimeToLiveSpecification', 'StreamSpecification', 'SSESpecification', 'PointInTimeRecoverySpecification',
  'DeletionProtectionEnabled', 'TableClass', 'ContributorInsightsSpecification', 'ResourcePolicy', 'Tags',
];

/** The CreateTable input of one table; fails on a property that would change behaviour and is not applied. */
export function createTableInput(table: ResolvedResource, tableName: string): CreateTableCommandInput {
  const props = table.properties;
  for (const key of Object.keys(props)) {
    if (!APPLIED_PROPERTIES.includes(key) && !IGNORED_PROPERTIES.includes(key)) {
      throw new Error(`Cannot run table ${table.logicalId} locally: property ${key} is not supported by the local DynamoDB`);
    }
  }
  const provisioned = props.BillingMode !== 'PAY_PER_REQUEST';
  const throughput = (given: unknown): CreateTableCommandInput['ProvisionedThroughput'] =>
    provisioned ? (given as CreateTableCommandInput['ProvisionedThroughput']) ?? DEFAULT_THROUGHPUT : undefined;
  return {
    TableName: tableName,
    KeySchema: props.KeySchema,
    AttributeDefinitions: props.AttributeDefinitions,
    BillingMode: provisioned ? 'PROVISIONED' : 'PAY_PER_REQUEST',
    ProvisionedThroughput: throughput(props.ProvisionedThroughput),
    GlobalSecondaryIndexes: (props.GlobalSecondaryIndexes as any[] | undefined)?.map((index) => ({
      IndexName: index.IndexName,
      KeySchema: index.KeySchema,
      Projection: index.Projection,
      ProvisionedThroughput: throughput(index.ProvisionedThroughput),
    })),
    LocalSecondaryIndexes: (props.LocalSecondaryIndexes as any[] | undefined)?.map((index) => ({
      IndexName: index.IndexName,
      KeySchema: index.KeySchema,
      Projection: index.Projection,
    })),
  };
}

async function waitUntilActive(client: DynamoDBClient, tableName: string): Promise<void> {
  const deadline = Date.now() + ACTIVE_TIMEOUT_MS;
  for (;;) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    const indexesActive = (Table?.GlobalSecondaryIndexes ?? []).every((i) => i.IndexStatus === 'ACTIVE');
    if (Table?.TableStatus === 'ACTIVE' && indexesActive) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`Local table ${tableName} is not ACTIVE after ${ACTIVE_TIMEOUT_MS} ms (${Table?.TableStatus})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
