/**
 * A small executor for the JSONata states of a definition, for what aws-local-stepfunctions
 * ignores (it does not evaluate JSONata: test/asl/execute.ts refuses such definitions). It runs
 * the states the library's JSONata tasks produce and the user states around them: Task
 * (Arguments, Output, Assign, Retry, Catch with Output / Assign), Pass (Output, Assign), Choice
 * (Condition, Default, Output / Assign of a rule), Succeed and Fail (Error / Cause). Expressions
 * are evaluated with the `jsonata` package (Step Functions implements JSONata 2.0.6), with
 * `$states.input`, `$states.result`, `$states.errorOutput`, `$states.context` and the workflow
 * variables, as Step Functions defines them:
 * https://docs.aws.amazon.com/step-functions/latest/dg/transforming-data.html
 * https://docs.aws.amazon.com/step-functions/latest/dg/workflow-variables.html
 *
 * What it models, from those pages:
 * - `{% expr %}` strings are evaluated wherever they are a value (Arguments, Output, Assign, at
 *   any depth); other strings are literals.
 * - An expression that fails (a JSONata error, e.g. `$number("x")` or a type error) or evaluates
 *   to nothing (undefined) raises `States.QueryEvaluationError`.
 * - Assign and Output see the variables as they were when the state started (an Assign is not
 *   visible to the Output of its own state); Assign runs after Output is evaluated, both from
 *   `$states.result` (Task) or `$states.input` (Pass, Choice).
 * - A Catch without Output passes `$states.errorOutput` (`{ Error, Cause }`) on; its Output and
 *   Assign see `$states.errorOutput`.
 * - Retry and Catch match an error name exactly or by `States.ALL` (which does not match
 *   `States.Runtime`); retries do not wait here.
 * - Not checked against AWS: an expression error in a Task's Output or Assign (after the call
 *   answered) is handled like one in its Arguments, by the state's own Retry and Catch (a retry
 *   calls the task again). The library's JSONata tasks and their tests do not depend on it.
 * Anything else (JSONPath states, Map, Parallel, Wait, `States.TaskFailed` matching, `$parse`...)
 * is refused with an error naming it, so a route is never counted as executed when it was not
 * executed faithfully.
 *
 * The edges go to the same ASL coverage records as test/asl/execute.ts.
 */
import { createHash, randomUUID } from 'crypto';
import { catchEdge, choiceEdge, defaultEdge, definitionHash, Edge, edgesOf, nextEdge, retryEdge } from './edges';
import { stepError, TaskHandler } from './execute';
import { recordExecution } from './recorder';
import { AslDefinition, AslState } from '../util';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const jsonata = require('jsonata') as (expression: string) => { evaluate(input: unknown, bindings?: Record<string, unknown>): Promise<unknown>; registerFunction(name: string, fn: (...args: any[]) => unknown, signature?: string): void };

export interface JsonataExecuteOptions {
  /** The context object (`$states.context`) as far as the test needs it, e.g. `{ Task: { Token } }`. */
  readonly context?: Record<string, unknown>;
  /** The coverage entry's name (the definition record's name). */
  readonly name: string;
  /**
   * Whether the edges go to the coverage records (false: the executor's own tests).
   *
   * @default true
   */
  readonly record?: boolean;
  /** Most states run before the execution is stopped (a loop). @default 100 */
  readonly maxStates?: number;
}

export interface JsonataExecution {
  /** The input of each Task call (its evaluated Arguments), by state name, in call order. */
  readonly calls: Record<string, any[]>;
  readonly output?: unknown;
  /** The execution's error (`name` is the error name) when it failed. */
  readonly error?: Error;
  readonly edges: Edge[];
  readonly states: string[];
  /** The workflow variables at the end. */
  readonly variables: Record<string, unknown>;
}

const EXPRESSION = /^\{%([\s\S]*)%\}$/;
const QUERY_EVALUATION_ERROR = 'States.QueryEvaluationError';

/** Evaluates every `{% %}` string of `template` (at any depth); `where` names the field for errors. */
export async function evaluateTemplate(template: unknown, bindings: Record<string, unknown>, where: string): Promise<unknown> {
  if (typeof template === 'string') {
    const match = EXPRESSION.exec(template.trim());
    if (!match) {
      return template;
    }
    let value: unknown;
    try {
      const expression = jsonata(match[1]);
      // Step Functions' own function (transforming-data.html, "JSONata functions provided by Step Functions").
      expression.registerFunction('uuid', () => randomUUID(), '<:s>');
      // $hash(value, algorithm): hex digest, algorithm MD5, SHA-1, SHA-256, SHA-384 or SHA-512.
      expression.registerFunction('hash', (text: string, algorithm: string) => createHash(algorithm.replace('-', '').toLowerCase()).update(text, 'utf8').digest('hex'), '<ss:s>');
      value = await expression.evaluate(null, bindings);
    } catch (e) {
      throw stepError(QUERY_EVALUATION_ERROR, `${where}: ${(e as Error).message ?? String(e)}`);
    }
    if (value === undefined) {
      throw stepError(QUERY_EVALUATION_ERROR, `${where}: the JSONata expression '${match[1].trim()}' returned nothing (undefined)`);
    }
    // jsonata marks sequences with extra properties: keep the JSON value only. A function is no JSON value.
    const isFunction = typeof value === 'function' || (typeof value === 'object' && value !== null
      && ((value as Record<string, unknown>)._jsonata_function === true || (value as Record<string, unknown>)._jsonata_lambda === true));
    const text = isFunction ? undefined : JSON.stringify(value);
    if (text === undefined) {
      throw stepError(QUERY_EVALUATION_ERROR, `${where}: the JSONata expression '${match[1].trim()}' returned no JSON value`);
    }
    return JSON.parse(text);
  }
  if (Array.isArray(template)) {
    const out = [];
    for (let i = 0; i < template.length; i++) {
      out.push(await evaluateTemplate(template[i], bindings, `${where}[${i}]`));
    }
    return out;
  }
  if (template !== null && typeof template === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(template)) {
      out[key] = await evaluateTemplate(value, bindings, `${where}.${key}`);
    }
    return out;
  }
  return template;
}

const SUPPORTED_FIELDS: Record<string, string[]> = {
  Task: ['Type', 'Comment', 'QueryLanguage', 'Resource', 'Arguments', 'Output', 'Assign', 'Retry', 'Catch', 'Next', 'End', 'TimeoutSeconds', 'HeartbeatSeconds'],
  Pass: ['Type', 'Comment', 'QueryLanguage', 'Output', 'Assign', 'Next', 'End'],
  Choice: ['Type', 'Comment', 'QueryLanguage', 'Choices', 'Default', 'Output', 'Assign'],
  Succeed: ['Type', 'Comment', 'QueryLanguage', 'Output'],
  Fail: ['Type', 'Comment', 'QueryLanguage', 'Error', 'Cause'],
};

/** Refuses what this executor does not model, naming it (so nothing runs unfaithfully). */
function checkSupported(definition: AslDefinition): void {
  for (const [name, state] of Object.entries(definition.States)) {
    const language = state.QueryLanguage ?? definition.QueryLanguage ?? 'JSONPath';
    if (language !== 'JSONata') {
      throw new Error(`${name} is a JSONPath state: run it with test/asl/execute.ts (this executor runs JSONata states only)`);
    }
    const fields = SUPPORTED_FIELDS[state.Type];
    if (!fields) {
      throw new Error(`${name}: a ${state.Type} state is not modelled by test/asl/jsonata-execute.ts`);
    }
    const unsupported = Object.keys(state).filter((field) => !fields.includes(field));
    if (unsupported.length) {
      throw new Error(`${name}: ${unsupported.join(', ')} not modelled by test/asl/jsonata-execute.ts`);
    }
    for (const entry of [...(state.Retry ?? []), ...(state.Catch ?? [])] as Array<{ ErrorEquals: string[] }>) {
      const odd = entry.ErrorEquals.find((e) => e === 'States.TaskFailed' || e === 'States.Permissions');
      if (odd) {
        throw new Error(`${name}: matching ${odd} is not modelled by test/asl/jsonata-execute.ts`);
      }
    }
  }
}

/** Whether a Retry / Catch entry's ErrorEquals matches `error` (exact, or States.ALL except States.Runtime). */
function matches(errorEquals: string[], error: string): boolean {
  return errorEquals.includes(error) || (errorEquals.includes('States.ALL') && error !== 'States.Runtime');
}

/**
 * Executes `definition` (JSONata states only) once with `input`. Every Task state is answered by
 * `handlers[state]` with its evaluated Arguments; a Task without a handler fails with
 * `unexpected call of <state>`. Records the edges taken for the ASL coverage report.
 */
export async function executeJsonataDefinition(
  definition: AslDefinition, input: unknown, handlers: Record<string, TaskHandler>, options: JsonataExecuteOptions,
): Promise<JsonataExecution> {
  checkSupported(definition);
  const calls: Record<string, any[]> = {};
  const edges: Edge[] = [];
  const states: string[] = [];
  let variables: Record<string, unknown> = {};
  let output: unknown;
  let error: Error | undefined;
  const context = { ...options.context, Execution: { Input: input, ...(options.context?.Execution as object | undefined) } };

  let name: string | undefined = definition.StartAt;
  let stateInput: unknown = input;
  const maxStates = options.maxStates ?? 100;
  try {
    while (name !== undefined) {
      if (states.length >= maxStates) {
        throw new Error(`more than ${maxStates} states: a loop?`);
      }
      const state: AslState = definition.States[name];
      states.push(name);
      const bindings = (extra: Record<string, unknown> = {}) => ({
        ...variables,
        states: { input: stateInput, context: { ...context, State: { Name: name } }, ...extra },
      });
      const next = await runState(name, state);
      name = next;

      async function runState(stateName: string, s: AslState): Promise<string | undefined> {
        switch (s.Type) {
          case 'Pass': {
            const out = s.Output === undefined ? stateInput : await evaluateTemplate(s.Output, bindings(), `${stateName}.Output`);
            const assigned = s.Assign === undefined ? {} : await evaluateTemplate(s.Assign, bindings(), `${stateName}.Assign`) as Record<string, unknown>;
            variables = { ...variables, ...assigned };
            return leave(stateName, s, out);
          }
          case 'Choice': {
            const rules = s.Choices as Array<Record<string, any>>;
            for (let i = 0; i < rules.length; i++) {
              if (rules[i].Condition === undefined) {
                throw new Error(`${stateName}, rule ${i}: a JSONata Choice rule needs a Condition`);
              }
              const condition = await evaluateTemplate(rules[i].Condition, bindings(), `${stateName}.Choices[${i}].Condition`);
              if (typeof condition !== 'boolean') {
                throw stepError(QUERY_EVALUATION_ERROR, `${stateName}.Choices[${i}].Condition: evaluated to ${JSON.stringify(condition)}, not a boolean`);
              }
              if (condition) {
                await outputAndAssign(stateName, rules[i], bindings());
                edges.push(choiceEdge(stateName, s, i));
                return rules[i].Next;
              }
            }
            if (!s.Default) {
              throw stepError('States.NoChoiceMatched', `${stateName}: no rule matched and there is no Default`);
            }
            await outputAndAssign(stateName, s, bindings());
            edges.push(defaultEdge(stateName, s));
            return s.Default;
          }
          case 'Succeed': {
            output = s.Output === undefined ? stateInput : await evaluateTemplate(s.Output, bindings(), `${stateName}.Output`);
            return undefined;
          }
          case 'Fail':
            throw stepError(
              s.Error === undefined ? 'States.Fail' : String(await evaluateTemplate(s.Error, bindings(), `${stateName}.Error`)),
              s.Cause === undefined ? '' : String(await evaluateTemplate(s.Cause, bindings(), `${stateName}.Cause`)),
            );
          case 'Task':
            return runTask(stateName, s);
          default:
            throw new Error(`${stateName}: ${s.Type} not modelled`);
        }
      }

      /** A Choice rule's (or Default's) Output and Assign: the state's output is its input unless Output says otherwise. */
      async function outputAndAssign(stateName: string, holder: Record<string, any>, b: Record<string, unknown>): Promise<void> {
        const out = holder.Output === undefined ? stateInput : await evaluateTemplate(holder.Output, b, `${stateName}.Output`);
        const assigned = holder.Assign === undefined ? {} : await evaluateTemplate(holder.Assign, b, `${stateName}.Assign`) as Record<string, unknown>;
        variables = { ...variables, ...assigned };
        stateInput = out;
      }

      function leave(stateName: string, s: AslState, out: unknown): string | undefined {
        stateInput = out;
        if (s.End) {
          output = out;
          return undefined;
        }
        edges.push(nextEdge(stateName, s));
        return s.Next;
      }

      async function runTask(stateName: string, s: AslState): Promise<string | undefined> {
        const attempts = new Map<number, number>();
        for (;;) {
          try {
            const args = s.Arguments === undefined ? undefined : await evaluateTemplate(s.Arguments, bindings(), `${stateName}.Arguments`);
            (calls[stateName] ??= []).push(args);
            const handler = handlers[stateName];
            if (!handler) {
              throw new Error(`unexpected call of ${stateName}`);
            }
            const result = JSON.parse(JSON.stringify(await handler(args) ?? null));
            const b = bindings({ result });
            const out = s.Output === undefined ? result : await evaluateTemplate(s.Output, b, `${stateName}.Output`);
            const assigned = s.Assign === undefined ? {} : await evaluateTemplate(s.Assign, b, `${stateName}.Assign`) as Record<string, unknown>;
            variables = { ...variables, ...assigned };
            return leave(stateName, s, out);
          } catch (e) {
            const err = e as Error;
            const retriers = (s.Retry ?? []) as Array<{ ErrorEquals: string[]; MaxAttempts?: number }>;
            const r = retriers.findIndex((retrier) => matches(retrier.ErrorEquals, err.name));
            if (r >= 0 && (attempts.get(r) ?? 0) < (retriers[r].MaxAttempts ?? 3)) {
              attempts.set(r, (attempts.get(r) ?? 0) + 1);
              edges.push(retryEdge(stateName, r));
              continue;
            }
            const catchers = (s.Catch ?? []) as Array<{ ErrorEquals: string[]; Next: string; Output?: unknown; Assign?: Record<string, unknown> }>;
            const c = catchers.findIndex((catcher) => matches(catcher.ErrorEquals, err.name));
            if (c < 0) {
              throw err;
            }
            const errorOutput = { Error: err.name, Cause: err.message };
            const b = bindings({ errorOutput });
            const out = catchers[c].Output === undefined ? errorOutput : await evaluateTemplate(catchers[c].Output, b, `${stateName}.Catch[${c}].Output`);
            const assigned = catchers[c].Assign === undefined ? {} : await evaluateTemplate(catchers[c].Assign, b, `${stateName}.Catch[${c}].Assign`) as Record<string, unknown>;
            variables = { ...variables, ...assigned };
            stateInput = out;
            edges.push(catchEdge(stateName, s, c));
            return catchers[c].Next;
          }
        }
      }
    }
  } catch (e) {
    error = e as Error;
  }
  if (options.record ?? true) {
    recordExecution(options.name, definitionHash(definition), edgesOf(definition), edges);
  }
  return { calls, output, error, edges, states, variables };
}
