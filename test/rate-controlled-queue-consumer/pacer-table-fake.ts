/**
 * The whole pacer table in memory (one item per `pk`: the contract's `pacer`, the keys'
 * `key-pacer#<key>`, ...) behind a mocked DynamoDBClient: GetItem, BatchGetItem and UpdateItem with
 * the condition and update semantics of pacer-item-fake.ts. Every read must be consistent.
 */
import {
  BatchGetItemCommand, BatchGetItemCommandInput, ConditionalCheckFailedException, GetItemCommand, GetItemCommandInput,
  UpdateItemCommand, UpdateItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import type { AwsStub } from 'aws-sdk-client-mock';
import { applyUpdate, conditionHolds, PacerItem } from './pacer-item-fake';

export interface PacerTableFake {
  readonly items: Map<string, PacerItem>;
  /** Successful UpdateItems, in order: the item key, the input, and the item before the write. */
  readonly writes: { pk: string; input: UpdateItemCommandInput; before: PacerItem }[];
  /** Called before every UpdateItem is evaluated: throw from it to fail the call (e.g. the invocation dies). */
  beforeWrite?: (pk: string, input: UpdateItemCommandInput) => void;
  /** Keys BatchGetItem leaves unprocessed once each (then serves them). */
  unprocessedOnce: Set<string>;
}

function withPk(pk: string, item: PacerItem | undefined) {
  return item === undefined ? undefined : { pk: { S: pk }, ...Object.fromEntries(Object.entries(item).map(([name, n]) => [name, { N: n }])) };
}

/**
 * Installs the fake on `ddb`; `onCall` runs at every call (e.g. to advance a fake clock by a round
 * trip); `latency`, when given, is awaited instead of one turn of the event loop (e.g. a virtual
 * clock's sleep, so that concurrent callers interleave in virtual time).
 */
export function inMemoryPacerTable(
  ddb: AwsStub<any, any, any>, onCall: () => void = () => undefined, latency?: () => Promise<void>,
): PacerTableFake {
  const state: PacerTableFake = { items: new Map(), writes: [], unprocessedOnce: new Set() };
  const yieldTurn = latency ?? (() => new Promise((resolve) => setImmediate(resolve)));
  ddb.on(GetItemCommand).callsFake(async (input: GetItemCommandInput) => {
    if (input.ConsistentRead !== true) {
      throw new Error('pacer table items are read with ConsistentRead');
    }
    onCall();
    await yieldTurn();
    const pk = input.Key!.pk.S!;
    const item = withPk(pk, state.items.get(pk));
    return item ? { Item: item } : {};
  });
  ddb.on(BatchGetItemCommand).callsFake(async (input: BatchGetItemCommandInput) => {
    onCall();
    await yieldTurn();
    const [table, request] = Object.entries(input.RequestItems!)[0];
    if (request.ConsistentRead !== true) {
      throw new Error('pacer table items are read with ConsistentRead');
    }
    const responses = [];
    const unprocessed = [];
    for (const key of request.Keys!) {
      const pk = key.pk.S!;
      if (state.unprocessedOnce.delete(pk)) {
        unprocessed.push(key);
        continue;
      }
      const item = withPk(pk, state.items.get(pk));
      if (item) {
        responses.push(item);
      }
    }
    const left = unprocessed.length > 0 ? { UnprocessedKeys: { [table]: { Keys: unprocessed } } } : {};
    return { Responses: { [table]: responses }, ...left };
  });
  ddb.on(UpdateItemCommand).callsFake(async (input: UpdateItemCommandInput) => {
    onCall();
    await yieldTurn();
    const pk = input.Key!.pk.S!;
    state.beforeWrite?.(pk, input);
    const item = state.items.get(pk) ?? {};
    const condition = input.ConditionExpression;
    if (condition && !conditionHolds(item, condition, input.ExpressionAttributeNames!, input.ExpressionAttributeValues!)) {
      throw new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} });
    }
    const before = { ...item };
    const old = applyUpdate(item, input);
    state.items.set(pk, item);
    state.writes.push({ pk, input, before });
    if (input.ReturnValues === 'UPDATED_OLD') {
      return { Attributes: Object.fromEntries(Object.entries(old).filter(([, n]) => n !== undefined).map(([name, n]) => [name, { N: n }])) };
    }
    return {};
  });
  return state;
}
