/**
 * The one executor of synthesized state machine definitions in tests: runs a definition with
 * aws-local-stepfunctions (StateMachine.run), every Task state answered by a local handler, and
 * records which edges the execution took, read from the execution's own event log:
 * - `StateRetried` -> `Retry i` (i: the retrier's index in the state's Retry);
 * - `StateCaught` -> `Catch i`;
 * - `StateExited` of a state that was not caught -> its `Next`, or for a Choice the rule the
 *   state's input matches (evaluated with the operators the definitions use, and checked against
 *   the state the interpreter entered next), else `Default`.
 * The edges go to the ASL coverage records (test/asl/recorder.ts), merged by the coverage
 * reporter into coverage/asl-coverage.json (see docs/asl-coverage.md).
 */
import { Edge, allStates, catchEdge, choiceEdge, defaultEdge, definitionHash, edgesOf, nextEdge, retryEdge, stateMachineNameOf } from './edges';
import { recordExecution } from './recorder';
// Interpreter failures (a failing intrinsic) are States.Runtime, never retried or caught, as on AWS.
import { buildStateMachine } from '../../local/aws/asl-validation';
import { executionFailure, taskFailure } from '../../local/aws/stepfunctions-errors';
import { AslDefinition, AslState, choiceRuleMatches, readJsonPath } from '../util';

// aws-local-stepfunctions needs Promise.withResolvers (Node 22); these tests run on Node 20 too.
import '../../local/polyfills';

// The package's types are ESM-only; jest loads its CommonJS build (as local/aws/stepfunctions.ts does).
type StateMachine = ReturnType<typeof buildStateMachine>;

/** Answers one Task state: returns its result (the service's answer) or throws its error. */
export type TaskHandler = (input: any) => unknown;

export interface ExecuteOptions {
  /**
   * Handlers for Task states no handler was given for in this execution (e.g. a check that
   * succeeds unless a test says otherwise).
   *
   * @default - none: an unexpected Task call fails the state with an error naming it
   */
  readonly defaultHandlers?: Record<string, TaskHandler>;
  /** The context object (`$$`) as far as the test needs it. */
  readonly context?: Record<string, unknown>;
  /**
   * Which state machine this is, in coverage/asl-coverage.json.
   *
   * @default - from the definition's comment (DispatchWorkflow, VendorCallWorkflow)
   */
  readonly name?: string;
  /**
   * Whether the edges go to the coverage records (false: the executor's own tests).
   *
   * @default true
   */
  readonly record?: boolean;
}

export interface Execution {
  /** The input of each Task call, by state name, in call order. */
  readonly calls: Record<string, any[]>;
  /** The execution's output when it succeeded. */
  readonly output?: any;
  /** The execution's error when it failed (`name` is the error a Catch would match). */
  readonly error?: Error;
  /** The edges taken, in order (see test/asl/edges.ts for their names). */
  readonly edges: Edge[];
  /** The states entered, in order. */
  readonly states: string[];
  /**
   * Task states called without a handler. Their `unexpected call of <state>` error is a task
   * failure like any other, so a `States.ALL` catcher may route it on: check this list too.
   */
  readonly unexpected: string[];
}

/** An error as Step Functions reports it: `name` is the error name a Catch or Retry matches. */
export function stepError(name: string, cause = ''): Error {
  const error = new Error(cause);
  error.name = name;
  return error;
}

interface Compiled {
  readonly machine: StateMachine;
  /** The copy of the definition the machine runs (the retriers and catchers of its events are its objects). */
  readonly states: Map<string, AslState>;
  readonly name: string;
  readonly hash: string;
  readonly edges: Edge[];
}

/** Building a StateMachine validates the definition (100-400 ms, see buildStateMachine): once per definition object. */
const compiled = new WeakMap<object, Compiled>();

function compile(definition: AslDefinition, name?: string): Compiled {
  let result = compiled.get(definition);
  if (!result) {
    // aws-local-stepfunctions ignores JSONata silently: such a state would "run" without its
    // expressions. Refuse, so its edges stay uncovered (counted) until executed some other way.
    const jsonata = definition.QueryLanguage === 'JSONata' ? 'the definition' : allStates(definition).find(([, state]) => state.QueryLanguage === 'JSONata')?.[0];
    if (jsonata) {
      throw new Error(`${jsonata} uses JSONata, which aws-local-stepfunctions ignores: execute it another way (e.g. the jsonata package)`);
    }
    // The validator and the interpreter get their own copy: the validator annotates what it reads.
    const copy = JSON.parse(JSON.stringify(definition));
    const machine = buildStateMachine(copy, { checkArn: false, checkPaths: false });
    result = {
      machine,
      states: new Map(allStates(copy)),
      name: name ?? stateMachineNameOf(definition),
      hash: definitionHash(definition),
      edges: edgesOf(definition),
    };
    compiled.set(definition, result);
  }
  return result;
}

/**
 * Executes `definition` once with `input`. Every Task state is answered by `handlers[state]`
 * (or `options.defaultHandlers[state]`); a Task without a handler fails with `unexpected call of
 * <state>`. Retries wait 0 ms. Records the edges taken for the ASL coverage report.
 */
export async function executeDefinition(
  definition: AslDefinition, input: unknown, handlers: Record<string, TaskHandler>, options: ExecuteOptions = {},
): Promise<Execution> {
  const machine = compile(definition, options.name);
  const calls: Record<string, any[]> = {};
  const unexpected: string[] = [];
  const taskResourceLocalHandlers: Record<string, (taskInput: any) => Promise<any>> = {};
  for (const [stateName, state] of machine.states) {
    if (state.Type !== 'Task') continue;
    taskResourceLocalHandlers[stateName] = async (taskInput: any) => {
      (calls[stateName] ??= []).push(taskInput);
      const handler = handlers[stateName] ?? options.defaultHandlers?.[stateName];
      try {
        if (!handler) {
          unexpected.push(stateName);
          throw new Error(`unexpected call of ${stateName}`);
        }
        return await handler(taskInput) as any;
      } catch (e) {
        // The task's own failure: its Retry and Catch handle it (what is not marked so is not).
        throw taskFailure(e);
      }
    };
  }
  const run = machine.machine.run(input as any, {
    overrides: {
      taskResourceLocalHandlers,
      retryIntervalOverrides: Object.fromEntries(Object.keys(taskResourceLocalHandlers).map((n) => [n, 0])),
    },
    context: options.context as any,
  });
  let output: unknown;
  let error: Error | undefined;
  try {
    output = await run.result;
  } catch (e) {
    // aws-local-stepfunctions wraps the execution's error; the wrapped one carries the name.
    error = executionFailure((e as Error).cause ?? e);
  }
  const { edges, states } = await edgesTaken(machine, run.eventLogs);
  if (options.record ?? true) {
    recordExecution(machine.name, machine.hash, machine.edges, edges);
  }
  return { calls, output, error, edges, states, unexpected };
}

/** The edges an execution took, from its event log (read once the execution has ended). */
async function edgesTaken(machine: Compiled, events: AsyncGenerator<any>): Promise<{ edges: Edge[]; states: string[] }> {
  const tracker = new EdgeTracker(machine.states);
  for await (const event of events) {
    tracker.push(event);
  }
  return { edges: tracker.edges, states: tracker.states };
}

/**
 * Follows one execution's events (aws-local-stepfunctions' event log, in order) and collects the
 * edges it took. Also used for the local runtime's executions (test/asl/local-runtime.ts).
 */
export class EdgeTracker {
  public readonly edges: Edge[] = [];
  public readonly states: string[] = [];
  /** States whose current run ended in a Catch: their StateExited is not their Next. */
  private readonly caught = new Set<string>();
  /** The Choice decided last at the top level: the next state entered must be its target. */
  private expectEntered: { choice: string; target: string } | undefined;

  /** `states`: the definition's states by name, nested ones included (see allStates). */
  constructor(private readonly definitionStates: Map<string, AslState>) {}

  public push(event: any): void {
    const name: string | undefined = event.state?.name;
    const state = name === undefined ? undefined : this.definitionStates.get(name);
    if (!name || !state) {
      return;
    }
    switch (event.type) {
      case 'StateEntered':
        this.states.push(name);
        if (this.expectEntered && event.index === undefined) {
          if (this.expectEntered.target !== name) {
            throw new Error(`Choice ${this.expectEntered.choice}: the rules evaluated here lead to ${this.expectEntered.target}, `
              + `the interpreter went to ${name}: test/asl/execute.ts evaluates the rule differently`);
          }
          this.expectEntered = undefined;
        }
        this.caught.delete(name);
        break;
      case 'StateRetried':
        this.edges.push(retryEdge(name, indexIn(state.Retry, event.retry.retrier, name, 'Retry')));
        break;
      case 'StateCaught':
        this.edges.push(catchEdge(name, state, indexIn(state.Catch, event.catch.catcher, name, 'Catch')));
        this.caught.add(name);
        break;
      case 'StateExited':
        if (this.caught.has(name)) {
          this.caught.delete(name);
        } else if (state.Type === 'Choice') {
          const edge = choiceTaken(name, state, event.state.input);
          this.edges.push(edge.edge);
          if (event.index === undefined) {
            this.expectEntered = { choice: name, target: edge.target };
          }
        } else if (state.Next) {
          this.edges.push(nextEdge(name, state));
        }
        break;
      default:
        break;
    }
  }
}

/** The index of a retrier or catcher of the events in the state's list (the same object, else an equal one). */
function indexIn(list: unknown[] | undefined, item: unknown, stateName: string, field: string): number {
  const items = list ?? [];
  let index = items.indexOf(item);
  if (index < 0) {
    const text = JSON.stringify(item);
    index = items.findIndex((candidate) => JSON.stringify(candidate) === text);
  }
  if (index < 0) {
    throw new Error(`${stateName}: the event's ${field} entry ${JSON.stringify(item)} is not in the definition`);
  }
  return index;
}

/**
 * The rule (or Default) a Choice state takes for its input, as Step Functions evaluates it: the
 * first matching rule in order, on the input after InputPath. A rule reading a variable the
 * input lacks throws (Step Functions fails the execution with States.Runtime).
 */
function choiceTaken(name: string, state: AslState, rawInput: unknown): { edge: Edge; target: string } {
  const input = state.InputPath === undefined ? rawInput : state.InputPath === null ? {} : readJsonPath(rawInput, state.InputPath);
  const rules = state.Choices as Array<Record<string, any>>;
  for (let i = 0; i < rules.length; i++) {
    let matches: boolean;
    try {
      matches = choiceRuleMatches(rules[i], input);
    } catch (e) {
      throw new Error(`Choice ${name}, rule ${i}: ${(e as Error).message}`);
    }
    if (matches) {
      return { edge: choiceEdge(name, state, i), target: rules[i].Next };
    }
  }
  if (!state.Default) {
    throw new Error(`Choice ${name}: no rule matches and there is no Default (States.NoChoiceMatched)`);
  }
  return { edge: defaultEdge(name, state), target: state.Default };
}
