/**
 * Jest setup file (setupFiles): lets the local runtime's Step Functions report the events of its
 * executions to the ASL coverage records (test/asl/local-runtime.ts, docs/asl-coverage.md).
 * It only sets a global function: the tooling loads on the first event, so tests that run no
 * local execution pay nothing.
 */
const EXECUTION_EVENT_OBSERVER = Symbol.for('cdk-async-external-api.local-stepfunctions.execution-event-observer');

(globalThis as Record<symbol, unknown>)[EXECUTION_EVENT_OBSERVER] = (stateMachine: unknown, executionArn: string, event: unknown) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require('./local-runtime') as typeof import('./local-runtime')).observe(stateMachine as any, executionArn, event);
};
