/**
 * Every edge of the states `submitJobTask`, `callVendorTask`, `submitJobTaskJsonata` and
 * `callVendorTaskJsonata` add to a user's workflow (test/asl/user-tasks.ts), executed from the
 * workflow's StartAt: the task's message goes through the dispatcher's own code and the dispatch
 * or vendor-call workflow, and the task ends the way the orchestrator really ends it (the callback
 * processor's SendTaskSuccess / SendTaskFailure, the workflows' SendTaskFailure, or Step Functions'
 * own States.Timeout / States.HeartbeatTimeout): test/asl/user-task-producers.ts.
 * JSONPath workflows run in aws-local-stepfunctions (test/asl/execute.ts), JSONata workflows in
 * the JSONata executor (test/asl/jsonata-execute.ts). The last test of each configuration checks
 * that every edge of the library's state ran (docs/asl-coverage.md).
 */
import { executeDefinition } from '../asl/execute';
import { executeJsonataDefinition } from '../asl/jsonata-execute';
import { Outcome, TaskRun, userTaskAnswer } from '../asl/user-task-producers';
import { UserTaskConfiguration, userTaskConfigurations } from '../asl/user-tasks';

const TOKEN = 'main-task-token-7';
/** The user's workflow input: what each canonical workflow reads. */
const INPUT = {
  order: { sku: 'A-1', quantity: 2 },
  orderId: 'order-7',
  sku: 'A-1',
  jobId: 'job-1',
  tags: ['rush', 'gift'],
  update: { priority: 'high' },
  page: 2,
  // Issue 15: the priority of the tasks that read it at run time.
  priority: 'low',
};

/** The outcome that makes the orchestrator end a task with `error`. */
function outcomeFor(error: string, call: boolean): Outcome {
  switch (error) {
    case 'VendorRequestFailed': return { kind: 'vendor refuses', status: call ? 404 : 400 };
    case 'VendorJobFailed': return { kind: 'callback', callback: { jobId: 'job-1', status: 'FAILED', error: 'out of stock' } };
    // The task output `{ jobId, result }` would exceed Step Functions' 256 KiB.
    case 'CallbackTooLarge': return { kind: 'callback', callback: { jobId: 'job-1', status: 'COMPLETED', result: 'x'.repeat(300_000) } };
    case 'States.Timeout':
    case 'States.HeartbeatTimeout': return { kind: 'no callback', error };
    case 'InvalidRequestPriority': return { kind: 'dispatcher refuses the priority' };
    default: throw new Error(`no producer sends ${error}`);
  }
}

interface Run {
  readonly output?: any;
  readonly error?: Error;
  readonly edges: string[];
  readonly runs: TaskRun[];
  readonly variables?: Record<string, unknown>;
}

describe.each(userTaskConfigurations().map((c) => [c.name, c.configuration, c] as const))('%s (%s), every edge', (_name, _configuration, c: UserTaskConfiguration) => {
  const jsonata = c.definition.QueryLanguage === 'JSONata';
  const call = /CallVendor/.test(c.name);
  const state = c.definition.States[c.state];
  const taken = new Set<string>();

  async function run(outcomes: Outcome[], input: Record<string, unknown> = INPUT): Promise<Run> {
    const runs: TaskRun[] = [];
    const handlers = { [c.state]: userTaskAnswer(c, outcomes, runs) };
    const context = { Task: { Token: TOKEN } };
    const result = jsonata
      ? await executeJsonataDefinition(c.definition, input, handlers, { name: c.name, context })
      : await executeDefinition(c.definition, input, handlers, { name: c.name, context });
    result.edges.forEach((e) => taken.add(e));
    return { ...result, runs };
  }

  test('the orchestrator answers, and the workflow goes on with the result', async () => {
    const result = await run([{ kind: 'vendor answers' }]);
    expect(result.error).toBeUndefined();
    expect(result.edges).toContain(`${c.state}: Next -> ProcessResult`);
    const [first] = result.runs;
    // The message the state sent: the task token of the run, and what the user's props say.
    expect(first.message).toMatchObject({ taskToken: TOKEN, attempt: 1 });
    expect(typeof first.message.requestId).toBe('string');
    if (call) {
      const expectedPath = /POST/.test(c.configuration) ? '/job-1/priority' : '/job-1/result';
      expect(first.message.call).toMatchObject({ method: /POST/.test(c.configuration) ? 'POST' : 'GET', path: expectedPath });
      if (/POST/.test(c.configuration)) {
        expect(first.message.call.body).toEqual({ priority: 'high' });
        expect(first.message.requestId).toBe('job-1-priority');
      }
      // Issue 15: a literal priority (high in JSONPath, low in JSONata), none without one.
      expect(first.message.priority).toBe(/literal priority/.test(c.configuration) ? (jsonata ? 'low' : 'high') : undefined);
      expect(result.output).toMatchObject({ status: 200, result: { result: 42 } });
    } else {
      // `$.order` / `$states.input.order`, or the TaskInput `{ sku: <input sku>, quantity: 2 }`: the same object here.
      expect(first.message.payload).toEqual({ sku: 'A-1', quantity: 2 });
      // Issue 15: a keyed task's message carries the key (the input's sku).
      expect(first.message.key).toBe(/key/.test(c.configuration) ? 'A-1' : undefined);
      // ... and a priority read from the input (low), none without one.
      expect(first.message.priority).toBe(/priority from/.test(c.configuration) ? 'low' : undefined);
      if (/request id(, key and priority)? from/.test(c.configuration)) {
        expect(first.message.requestId).toBe('order-7');
      } else {
        expect(first.message.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      }
      // The callback processor's output, `{ jobId, result }`, as the user's next state reads it.
      expect(result.output).toMatchObject({ jobId: 'job-1', result: { jobId: 'job-1', status: 'COMPLETED', result: { score: 0.93 } } });
    }
  });

  // Issue 15: a high request goes to the high-priority queue (request-queue-routing.ts): a literal
  // HIGH always, a priority read at run time when it is "high"; everything else to the request queue.
  test('the message goes to the high-priority queue for a high request, to the request queue otherwise', async () => {
    const literal = /literal priority/.test(c.configuration);
    const runtime = /priority from/.test(c.configuration);
    const highQueue = /^PLACEHOLDER-\S*HighPriorityRequestQueue\S*$/;
    const requestQueue = /^PLACEHOLDER-\S*(?<!HighPriority)RequestQueue\S*$/;
    const sentTo = async (priority: unknown) => (await run([{ kind: 'vendor answers' }], { ...INPUT, priority })).runs[0].queueUrl;
    expect(await sentTo('low')).toMatch(literal && !jsonata ? highQueue : requestQueue);
    expect(await sentTo('high')).toMatch(runtime || (literal && !jsonata) ? highQueue : requestQueue);
    if (runtime) {
      expect(await sentTo(null)).toMatch(requestQueue);
      expect(await sentTo('normal')).toMatch(requestQueue);
    }
  });

  const catchers = ((state.Catch ?? []) as Array<{ ErrorEquals: string[]; Next: string }>)
    .map((catcher, i) => [catcher.ErrorEquals[0], i, catcher.Next] as const);
  test.each(catchers)('%s from the orchestrator reaches the user\'s catcher %i', async (error, i, next) => {
    // A retried error is caught once the retries are spent.
    const retries = ((state.Retry ?? []) as Array<{ ErrorEquals: string[]; MaxAttempts?: number }>)
      .filter((retrier) => retrier.ErrorEquals.includes(error)).reduce((n, retrier) => n + (retrier.MaxAttempts ?? 3), 0);
    // Issue 15: only an input with an invalid priority makes the dispatcher refuse it.
    const result = await run([outcomeFor(error, call)], error === 'InvalidRequestPriority' ? { ...INPUT, priority: 'urgent' } : INPUT);
    expect(result.edges).toContain(`${c.state}: Catch ${i} -> ${next}`);
    expect(result.runs).toHaveLength(retries + 1);
    expect(result.error?.name).toBe(`Main.${error}`);
    const resolution = result.runs[0].resolution!;
    expect(resolution.error).toBe(error);
    if (error === 'VendorRequestFailed') {
      // The cause tells the user where the request went (the workflows' SendTaskFailure).
      expect(resolution.cause).toMatch(/.+/);
    }
  });

  const retriers = ((state.Retry ?? []) as Array<{ ErrorEquals: string[] }>).map((retrier, i) => [retrier.ErrorEquals[0], i] as const);
  if (retriers.length) {
    test.each(retriers)('%s is retried (Retry %i) with the same request id, and the second submission goes on', async (error, i) => {
      const result = await run([outcomeFor(error, call), { kind: 'vendor answers' }]);
      expect(result.error).toBeUndefined();
      expect(result.edges).toEqual(expect.arrayContaining([`${c.state}: Retry ${i}`, `${c.state}: Next -> ProcessResult`]));
      expect(result.runs).toHaveLength(2);
      // A stable request id: the dispatcher claims the same request again instead of a new one.
      expect(result.runs[1].message.requestId).toBe(result.runs[0].message.requestId);
      expect(result.output).toMatchObject({ jobId: 'job-1' });
    });
  }

  if (jsonata) {
    test('Output and Assign keep the result as the user asked', async () => {
      const result = await run([{ kind: 'vendor answers' }]);
      expect(result.error).toBeUndefined();
      if (state.Assign) {
        for (const name of Object.keys(state.Assign)) {
          expect(result.variables?.[name]).toBeDefined();
        }
      }
    });
  }

  test('every edge of the state ran', () => {
    expect(c.edges.filter((edge) => !taken.has(edge))).toEqual([]);
  });
});
