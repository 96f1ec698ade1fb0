/**
 * The edges of a state machine definition, and the identity of a definition.
 *
 * An edge is one way out of a state: its `Next`, Choice rule i, a Choice's `Default`, Catch i
 * or Retry i. `End` and terminal states (Succeed, Fail) leave the machine, so they have none.
 * Edges are named `<state>: <kind> -> <target>` (`<state>: Retry i` for a retrier, which goes
 * back into the state itself), a readable string that stays the same while the definition does.
 */
import { createHash } from 'crypto';
import { AslDefinition, AslState } from '../util';

/** One edge, e.g. `ClassifyVendorError: Choice 1 -> ParkInDeadLetterQueue`. */
export type Edge = string;

export function nextEdge(stateName: string, state: AslState): Edge {
  return `${stateName}: Next -> ${state.Next}`;
}

export function choiceEdge(stateName: string, state: AslState, rule: number): Edge {
  return `${stateName}: Choice ${rule} -> ${state.Choices[rule].Next}`;
}

export function defaultEdge(stateName: string, state: AslState): Edge {
  return `${stateName}: Default -> ${state.Default}`;
}

export function catchEdge(stateName: string, state: AslState, catcher: number): Edge {
  return `${stateName}: Catch ${catcher} -> ${state.Catch[catcher].Next}`;
}

export function retryEdge(stateName: string, retrier: number): Edge {
  return `${stateName}: Retry ${retrier}`;
}

/**
 * Every state of the definition, nested ones included (Parallel branches, Map iterators): state
 * names are unique across a whole state machine, so a name identifies a state.
 */
export function allStates(definition: { States: Record<string, AslState> }): Array<[string, AslState]> {
  const states: Array<[string, AslState]> = [];
  for (const [name, state] of Object.entries(definition.States)) {
    states.push([name, state]);
    for (const branch of state.Branches ?? []) {
      states.push(...allStates(branch));
    }
    const processor = state.ItemProcessor ?? state.Iterator;
    if (processor) {
      states.push(...allStates(processor));
    }
  }
  return states;
}

/** All edges of the definition, in state order. */
export function edgesOf(definition: AslDefinition): Edge[] {
  const edges: Edge[] = [];
  for (const [name, state] of allStates(definition)) {
    if (state.Type === 'Choice') {
      (state.Choices as unknown[]).forEach((_, i) => edges.push(choiceEdge(name, state, i)));
      if (state.Default) {
        edges.push(defaultEdge(name, state));
      }
    } else if (state.Next) {
      edges.push(nextEdge(name, state));
    }
    (state.Retry ?? []).forEach((_: unknown, i: number) => edges.push(retryEdge(name, i)));
    (state.Catch ?? []).forEach((_: unknown, i: number) => edges.push(catchEdge(name, state, i)));
  }
  return edges;
}

/**
 * The definition with what does not change its behaviour masked: CloudFormation tokens (which
 * test/util.ts resolves to `PLACEHOLDER-<logical id>`, different in every test stack) and comments.
 * Two tests that build the same configuration in differently named stacks get the same text.
 */
export function normalizedDefinition(definition: AslDefinition): string {
  return JSON.stringify(normalize(definition));
}

function normalize(value: unknown): unknown {
  if (typeof value === 'string') {
    return value.includes('PLACEHOLDER') ? '<token>' : value;
  }
  if (Array.isArray(value)) {
    return value.map(normalize);
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value as object)
      .filter((k) => k !== 'Comment')
      .sort()
      .map((k) => [k, normalize((value as Record<string, unknown>)[k])]));
  }
  return value;
}

/** A short identity of the definition (SHA-256 of the normalized text, 16 hex digits). */
export function definitionHash(definition: AslDefinition): string {
  return createHash('sha256').update(normalizedDefinition(definition)).digest('hex').slice(0, 16);
}

/**
 * Which of the library's state machines a definition is, from its top-level comment (the
 * workflows' constructs set it); 'unknown' for any other.
 */
export function stateMachineNameOf(definition: AslDefinition): string {
  const comment = String(definition.Comment ?? '');
  if (comment.startsWith('Submits one request to the vendor')) {
    return 'DispatchWorkflow';
  }
  if (comment.startsWith('Makes one paced synchronous vendor call')) {
    return 'VendorCallWorkflow';
  }
  return 'unknown';
}
