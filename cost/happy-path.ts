/**
 * The happy path of a state machine definition: the states an execution passes when every task
 * succeeds and every choice goes the way a successful request goes.
 */

/** The parts of an Amazon States Language state the cost model reads. */
export interface AslState {
  readonly Type: string;
  readonly Next?: string;
  readonly End?: boolean;
  readonly Default?: string;
  readonly Choices?: ReadonlyArray<{ readonly Next?: string }>;
  readonly Resource?: string;
  /** JSONPath states. */
  readonly Parameters?: Record<string, any>;
  /** JSONata states. */
  readonly Arguments?: Record<string, any>;
  readonly [key: string]: unknown;
}

/** The parts of an Amazon States Language definition the cost model reads. */
export interface AslDefinition {
  readonly StartAt: string;
  readonly States: Readonly<Record<string, AslState>>;
  readonly [key: string]: unknown;
}

/** The rule {@link happyPath} applies, printed with every result. */
export const HAPPY_PATH_RULE = 'from StartAt, follow Next; at a Choice, take the branch from which a success end '
  + '(a Succeed state, or a state with End: true) is reached through the fewest states without a Catch '
  + '(ties: Choices in order, then Default). Catch routes, Retry attempts and Fail states are the error path and are not counted; '
  + 'nor is a state that sends the request back to the request queue (a requeue: the vendor was not called, e.g. '
  + 'WasVendorCalled -> DeferToQueue -> RequeueWithDelay when the vendor caller found no slot in time).';

/**
 * The states of the happy path, in order, from `StartAt` to the first success end (see
 * {@link HAPPY_PATH_RULE}). Throws when no success end is reachable, or when the path would need a
 * Parallel or Map state (their iterations depend on the data; the model does not count them).
 *
 * @param name what to call the definition in errors
 * @param avoid states the happy path never enters (e.g. a requeue of the request)
 */
export function happyPath(definition: AslDefinition, name: string = 'the definition',
  avoid: (name: string, state: AslState) => boolean = () => false): string[] {
  const states = definition.States;
  if (!states[definition.StartAt]) {
    throw new Error(`${name}: StartAt '${definition.StartAt}' is not a state`);
  }
  // Breadth first, so the first success end found is the one with the fewest states before it.
  const parent = new Map<string, string | undefined>([[definition.StartAt, undefined]]);
  const queue = [definition.StartAt];
  while (queue.length > 0) {
    const current = queue.shift()!;
    const state = states[current];
    if (state.Type === 'Parallel' || state.Type === 'Map') {
      throw new Error(`${name}: state '${current}' is a ${state.Type}; the cost model does not count the states of its `
        + 'branches or iterations (they depend on the data). Count them by hand.');
    }
    if (isSuccessEnd(state)) {
      const path: string[] = [];
      for (let at: string | undefined = current; at !== undefined; at = parent.get(at)) {
        path.unshift(at);
      }
      return path;
    }
    for (const next of successors(state)) {
      if (!states[next]) {
        throw new Error(`${name}: state '${current}' goes to '${next}', which is not a state`);
      }
      if (!parent.has(next) && !avoid(next, states[next])) {
        parent.set(next, current);
        queue.push(next);
      }
    }
  }
  throw new Error(`${name}: no success end (Succeed, or End: true) is reachable from '${definition.StartAt}' without a Catch`);
}

function isSuccessEnd(state: AslState): boolean {
  return state.Type === 'Succeed' || (state.Type !== 'Fail' && state.End === true);
}

function successors(state: AslState): string[] {
  switch (state.Type) {
    case 'Fail':
      return [];
    case 'Choice': {
      const targets = (state.Choices ?? []).map((c) => c.Next).filter((n): n is string => typeof n === 'string');
      return state.Default ? [...targets, state.Default] : targets;
    }
    default:
      return state.Next ? [state.Next] : [];
  }
}
