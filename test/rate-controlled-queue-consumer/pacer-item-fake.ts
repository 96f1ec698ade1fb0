/**
 * The pacer item in memory behind a mocked DynamoDBClient, with DynamoDB's conditional semantics for
 * the expressions the pacer writes (`SET #a = :b, ... [REMOVE #c, ...]`, `SET #a = #a + :b`; conditions `#a = :b`,
 * `#a <= :b`, `#a >= :b`, `#a < :b`, `#a > :b` (or `#b`), `attribute_not_exists(#a)`, `(x OR y)` joined by AND, or `x OR y` alone; ReturnValues UPDATED_OLD). Every attribute is a number.
 */
import { ConditionalCheckFailedException, GetItemCommand, GetItemCommandInput, UpdateItemCommand, UpdateItemCommandInput } from '@aws-sdk/client-dynamodb';
import type { AwsStub } from 'aws-sdk-client-mock';

export type PacerItem = Record<string, string>;

/** Whether `expression` holds on `item` (the clauses the module comment lists). */
export function conditionHolds(item: PacerItem, expression: string, names: Record<string, string>, values: Record<string, { N?: string }>): boolean {
  return expression.split(' AND ').every((clause) => clauseHolds(item, clause, names, values));
}

function clauseHolds(item: PacerItem, clause: string, names: Record<string, string>, values: Record<string, { N?: string }>): boolean {
  const either = /^\((.+) OR (.+)\)$/.exec(clause) ?? /^(.+?) OR (.+)$/.exec(clause);
  if (either) {
    return clauseHolds(item, either[1], names, values) || clauseHolds(item, either[2], names, values);
  }
  const absent = /^attribute_not_exists\((#\w+)\)$/.exec(clause);
  if (absent) {
    return item[names[absent[1]]] === undefined;
  }
  const compared = /^(#\w+) (=|<=|>=|<|>) ([:#]\w+)$/.exec(clause);
  if (!compared) {
    throw new Error(`the fake does not evaluate the clause '${clause}'`);
  }
  const left = item[names[compared[1]]];
  const right = compared[3].startsWith('#') ? item[names[compared[3]]] : values[compared[3]].N;
  if (left === undefined || right === undefined) {
    return false;
  }
  const [l, r] = [Number(left), Number(right)];
  switch (compared[2]) {
    case '=': return l === r;
    case '<=': return l <= r;
    case '>=': return l >= r;
    case '<': return l < r;
    default: return l > r;
  }
}

/** Applies an UpdateItem's `SET ... [REMOVE ...]` to `item` (its condition already checked); returns the values it replaced. */
export function applyUpdate(item: PacerItem, input: UpdateItemCommandInput): PacerItem {
  const names = input.ExpressionAttributeNames!;
  const values = input.ExpressionAttributeValues!;
  const [setPart, removePart] = input.UpdateExpression!.split(' REMOVE ');
  const old: PacerItem = {};
  for (const clause of setPart.replace(/^SET /, '').split(', ')) {
    const [name, value] = clause.split(' = ');
    old[names[name]] = item[names[name]];
    // `#a = #a + :b` (pacer.ts, a reservation moved behind the winners of its race) or `#a = :b`.
    const sum = /^(#\w+) \+ (:\w+)$/.exec(value);
    item[names[name]] = sum ? String(Number(item[names[sum[1]]]) + Number(values[sum[2]].N)) : values[value].N!;
  }
  for (const name of removePart?.split(', ') ?? []) {
    delete item[names[name]];
  }
  return old;
}

/**
 * Installs the fake on `ddb`. `crashAfterWrite` makes the next successful UpdateItem throw after
 * it was applied (the invocation dies with its write done). `onCall` runs at every call (e.g. to
 * advance a fake clock by a round trip).
 */
export function inMemoryPacerItem(
  ddb: AwsStub<any, any, any>, onCall: () => void = () => undefined,
): { item: PacerItem; crashAfterWrite: boolean; writes: number } {
  const state = { item: {} as PacerItem, crashAfterWrite: false, writes: 0 };
  ddb.on(GetItemCommand).callsFake(async (input: GetItemCommandInput) => {
    if (input.ConsistentRead !== true) {
      throw new Error('the pacer reads its item with ConsistentRead');
    }
    onCall();
    await new Promise((resolve) => setImmediate(resolve)); // let other callers interleave
    const entries = Object.entries(state.item).map(([name, n]) => [name, { N: n }]);
    return entries.length === 0 ? {} : { Item: { pk: { S: 'pacer' }, ...Object.fromEntries(entries) } };
  });
  ddb.on(UpdateItemCommand).callsFake(async (input: UpdateItemCommandInput) => {
    onCall();
    await new Promise((resolve) => setImmediate(resolve));
    const names = input.ExpressionAttributeNames!;
    const values = input.ExpressionAttributeValues!;
    if (!conditionHolds(state.item, input.ConditionExpression!, names, values)) {
      throw new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} });
    }
    const old = applyUpdate(state.item, input);
    state.writes++;
    if (state.crashAfterWrite) {
      state.crashAfterWrite = false;
      throw new Error('Runtime.ExitError: the invocation died after its write');
    }
    if (input.ReturnValues === 'UPDATED_OLD') {
      return { Attributes: Object.fromEntries(Object.entries(old).filter(([, n]) => n !== undefined).map(([name, n]) => [name, { N: n }])) };
    }
    return {};
  });
  return state;
}

