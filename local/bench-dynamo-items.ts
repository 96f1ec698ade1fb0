/**
 * Items of the pacer table other than the contract's `pacer` item, for the modeled benchmark
 * (local/bench-sim.ts `InMemoryPacerTable`): per-key items (`key-pacer#<key>`, `key-places#<key>`,
 * ...), slot claims and whatever else the handlers write. Expressions are evaluated by dynalite's
 * own code (its expression parsers, `checkConditional` and its GetItem / PutItem / UpdateItem /
 * DeleteItem actions), the emulator the project's local runtime already trusts
 * (../shared/BUILD-NOTES.md), run synchronously on an in-memory map: the model's virtual clock
 * must not see any real I/O, and a condition, an `ADD`, `if_not_exists` or a map path behaves as
 * dynalite evaluates it for the real handlers over HTTP. A condition that does not hold throws the
 * SDK's own `ConditionalCheckFailedException` (with `Item` on
 * `ReturnValuesOnConditionCheckFailure: ALL_OLD`), so handler code handles it as on AWS.
 *
 * Not modeled: TTL (items never expire, as in dynalite), capacity errors, transactions.
 */
import {
  AttributeValue, BatchGetItemCommand, ConditionalCheckFailedException, DeleteItemCommand, GetItemCommand, PutItemCommand, UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { PACER_PARTITION_KEY } from '../src/rate-controlled-queue-consumer/pacer';

type Item = Record<string, AttributeValue>;
type DynaliteError = Error & { body?: { __type?: string; message?: string; Message?: string } };
type Callback = (error: DynaliteError | null, result?: Record<string, unknown>) => void;
type Action = (store: unknown, data: Record<string, unknown>, cb: Callback) => void;

/* eslint-disable @typescript-eslint/no-require-imports */
const dynalite = {
  validations: require('dynalite/validations') as { validateExpressions(data: Record<string, unknown>): string | undefined },
  db: require('dynalite/db') as { createKey(key: Item, table: unknown): string },
  getItem: require('dynalite/actions/getItem') as Action,
  putItem: require('dynalite/actions/putItem') as Action,
  updateItem: require('dynalite/actions/updateItem') as Action,
  deleteItem: require('dynalite/actions/deleteItem') as Action,
};
/* eslint-enable @typescript-eslint/no-require-imports */

/** The pacer table's definition as dynalite needs it: `pk` (string) only, no index. */
const TABLE = {
  TableName: 'bench-pacer',
  KeySchema: [{ AttributeName: PACER_PARTITION_KEY, KeyType: 'HASH' }],
  AttributeDefinitions: [{ AttributeName: PACER_PARTITION_KEY, AttributeType: 'S' }],
};

export class DynamoItems {
  private readonly items = new Map<string, Item>();
  /** Conditional writes refused, per partition key prefix (`key-pacer`, `slot`, ...). */
  public readonly conditionalFailures = new Map<string, number>();
  /** Write requests (applied or refused), per partition key prefix. */
  public readonly writes = new Map<string, number>();
  /** Items read, per partition key prefix (a BatchGetItem counts each key). */
  public readonly reads = new Map<string, number>();

  /** dynalite's store interface, answered synchronously from the map. */
  private readonly store = {
    options: { maxItemSize: 400 * 1024 },
    getTable: (_name: string, cb: (error: Error | null, table: unknown) => void) => cb(null, TABLE),
    getItemDb: () => ({
      lock: (_key: string, fn: (release: (cb: Callback) => Callback) => void) => fn((cb) => cb),
      get: (key: string, cb: (error: Error | null, item?: Item) => void) => {
        const item = this.items.get(key);
        return item ? cb(null, item) : cb(Object.assign(new Error('not found'), { name: 'NotFoundError' }));
      },
      put: (key: string, item: Item, cb: (error: Error | null) => void) => {
        this.items.set(key, item);
        cb(null);
      },
      del: (key: string, cb: (error: Error | null) => void) => {
        this.items.delete(key);
        cb(null);
      },
    }),
  };

  /** The stored item with this partition key (a copy), or undefined. */
  public item(pk: string): Item | undefined {
    const item = this.items.get(this.keyOf({ [PACER_PARTITION_KEY]: { S: pk } }));
    return item === undefined ? undefined : structuredClone(item);
  }

  /** Every stored partition key starting with `prefix`. */
  public keysStartingWith(prefix: string): string[] {
    return [...this.items.values()].map((item) => item[PACER_PARTITION_KEY]?.S ?? '').filter((pk) => pk.startsWith(prefix));
  }

  /** How many items are stored, per partition key prefix (`key-pacer`, `slot`, ...). */
  public storedByPrefix(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const item of this.items.values()) {
      const prefix = (item[PACER_PARTITION_KEY]?.S ?? '').split('#')[0];
      counts[prefix] = (counts[prefix] ?? 0) + 1;
    }
    return counts;
  }

  /** Answers one command as DynamoDB would (synchronously). Throws what the SDK would throw. */
  public send(command: unknown): Record<string, unknown> {
    if (command instanceof BatchGetItemCommand) {
      // At most 100 keys in one call, over all its tables, as on AWS
      // (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html).
      const requested = Object.values(command.input.RequestItems ?? {}).reduce((n, request) => n + (request.Keys ?? []).length, 0);
      if (requested > 100) {
        throw Object.assign(new Error('Too many items requested for the BatchGetItem call'), { name: 'ValidationException' });
      }
      const responses: Record<string, Item[]> = {};
      for (const [table, request] of Object.entries(command.input.RequestItems ?? {})) {
        const projection = request.ProjectionExpression === undefined ? {} : {
          ProjectionExpression: request.ProjectionExpression,
          ...(request.ExpressionAttributeNames ? { ExpressionAttributeNames: request.ExpressionAttributeNames } : {}),
        };
        responses[table] = (request.Keys ?? []).map((key) => this.run('getItem', { TableName: table, Key: key, ...projection }).Item as Item | undefined)
          .filter((item): item is Item => item !== undefined);
      }
      return { Responses: responses, UnprocessedKeys: {} };
    }
    if (command instanceof GetItemCommand) return this.run('getItem', { ...command.input });
    if (command instanceof PutItemCommand) return this.run('putItem', { ...command.input });
    if (command instanceof UpdateItemCommand) return this.run('updateItem', { ...command.input });
    if (command instanceof DeleteItemCommand) return this.run('deleteItem', { ...command.input });
    throw new Error(`modeled DynamoDB: unexpected command ${(command as object).constructor.name}`);
  }

  private run(action: 'getItem' | 'putItem' | 'updateItem' | 'deleteItem', data: Record<string, unknown>): Record<string, unknown> {
    const key = (data.Key ?? data.Item) as Item;
    const prefix = (key[PACER_PARTITION_KEY]?.S ?? '').split('#')[0];
    const count = (map: Map<string, number>) => map.set(prefix, (map.get(prefix) ?? 0) + 1);
    count(action === 'getItem' ? this.reads : this.writes);
    // dynalite's actions mutate their input (parsed expressions): a copy keeps the command intact.
    const request = structuredClone(data);
    const invalid = dynalite.validations.validateExpressions(request);
    if (invalid) {
      throw Object.assign(new Error(invalid), { name: 'ValidationException' });
    }
    const before = this.items.get(this.keyOf(key));
    let outcome: { error: Parameters<Callback>[0]; result?: Record<string, unknown> } | undefined;
    dynalite[action](this.store, request, (error, result) => {
      outcome = { error, result };
    });
    if (outcome === undefined) {
      throw new Error(`modeled DynamoDB: dynalite's ${action} did not answer synchronously`);
    }
    if (outcome.error) {
      const type = outcome.error.body?.__type?.split('#')[1] ?? outcome.error.name;
      if (type === 'ConditionalCheckFailedException') {
        count(this.conditionalFailures);
        throw new ConditionalCheckFailedException({
          message: 'The conditional request failed',
          $metadata: {},
          ...(data.ReturnValuesOnConditionCheckFailure === 'ALL_OLD' && before ? { Item: structuredClone(before) } : {}),
        });
      }
      throw Object.assign(new Error(outcome.error.body?.message ?? outcome.error.body?.Message ?? outcome.error.message), { name: type });
    }
    const result = { ...outcome.result };
    delete result.ConsumedCapacity;
    return structuredClone(result);
  }

  private keyOf(key: Item): string {
    return dynalite.db.createKey({ [PACER_PARTITION_KEY]: key[PACER_PARTITION_KEY] }, TABLE);
  }
}
