/**
 * Records the edges the local runtime's executions take (local/aws/stepfunctions.ts calls
 * `observe` for every event of every execution, see test/asl/setup.ts), so that the end-to-end
 * tests, which run the real handlers against the synthesized stack, count for ASL coverage too.
 * A definition is identified by the template's unresolved definition, resolved the way the
 * execution tests resolve theirs (test/util.ts), so the example app's workflows count for the
 * configuration they have. State machines that are not the library's (a user's main workflow)
 * are not recorded.
 */
import { allStates, definitionHash, Edge, edgesOf, stateMachineNameOf } from './edges';
import { EdgeTracker } from './execute';
import { recordExecution } from './recorder';
import type { LocalStateMachine } from '../../local/aws/stepfunctions';
import { AslDefinition, AslState, flattenCfnString } from '../util';

interface Identified {
  readonly name: string;
  readonly hash: string;
  readonly edges: Edge[];
  readonly states: Map<string, AslState>;
}

const identified = new WeakMap<LocalStateMachine, Identified | null>();
const running = new Map<string, { readonly machine: Identified; readonly tracker: EdgeTracker }>();

function identify(stateMachine: LocalStateMachine): Identified | null {
  const source = stateMachine.templateDefinition;
  if (source === undefined) {
    return null;
  }
  const definition = JSON.parse(typeof source === 'string' ? source : flattenCfnString(source)) as AslDefinition;
  const name = stateMachineNameOf(definition);
  if (name === 'unknown') {
    return null;
  }
  // Edges are named from the executed states; the executed copy has the same states, Retry and Catch.
  return { name, hash: definitionHash(definition), edges: edgesOf(definition), states: new Map(allStates(definition)) };
}

/** One event of one local execution. */
export function observe(stateMachine: LocalStateMachine, executionArn: string, event: any): void {
  let machine = identified.get(stateMachine);
  if (machine === undefined) {
    machine = identify(stateMachine);
    identified.set(stateMachine, machine);
  }
  if (!machine) {
    return;
  }
  if (event.type === 'ExecutionStarted') {
    running.set(executionArn, { machine, tracker: new EdgeTracker(machine.states) });
    return;
  }
  const execution = running.get(executionArn);
  if (!execution) {
    return;
  }
  if (['ExecutionSucceeded', 'ExecutionFailed', 'ExecutionAborted', 'ExecutionTimeout'].includes(event.type)) {
    running.delete(executionArn);
    recordExecution(machine.name, machine.hash, machine.edges, execution.tracker.edges);
    return;
  }
  execution.tracker.push(event);
}
