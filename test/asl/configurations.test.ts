/**
 * Enumerates the configurations of the library's state machines (test/asl/configurations.ts) and
 * records each one's edges for the ASL coverage report (docs/asl-coverage.md): the edges total
 * comes from the synthesized definitions themselves, not from a hand-kept list.
 */
import { Duration } from 'aws-cdk-lib';
import { Configuration, allConfigurations, synthesizeWorkflows } from './configurations';
import { definitionHash, edgesOf } from './edges';
import { writeRecord } from './recorder';
import { userTaskConfigurations } from './user-tasks';
import { aslErrors } from '../util';

describe('state machine configurations', () => {
  const all = allConfigurations();
  /** One per distinct definition of each state machine (the first label names it). */
  const distinct = new Map<string, Configuration>();
  for (const c of all) {
    const key = `${c.name} ${definitionHash(c.definition)}`;
    if (!distinct.has(key)) {
      distinct.set(key, c);
    }
  }

  test('every configuration is recorded with the edges of its synthesized definition', () => {
    for (const c of distinct.values()) {
      writeRecord({ kind: 'configuration', name: c.name, configuration: c.configuration, hash: definitionHash(c.definition), edges: edgesOf(c.definition) });
    }
    const count = (name: string) => [...distinct.values()].filter((c) => c.name === name).length;
    // Every axis value changes the dispatch workflow; the vendor-call workflow has no callback URL.
    expect(count('DispatchWorkflow')).toBe(all.filter((c) => c.name === 'DispatchWorkflow').length);
    // ... and quotas and limits per key (PacingPoint.VENDOR_CALL only) change both; so does the per-key credential (issue 15).
    expect(count('VendorCallWorkflow')).toBe(2 * 7 + 2);
  });

  test.each([...distinct.values()].map((c) => [`${c.name}, ${c.configuration}`, c] as const))('%s is a valid definition', (_, c) => {
    expect(aslErrors(c.definition)).toEqual([]);
  });

  test('the states submitJobTask / callVendorTask (and their JSONata forms) add to a user workflow are recorded with their own edges only', () => {
    // Each entry is a canonical user workflow (test/asl/user-tasks.ts); only the library's state counts.
    const users = userTaskConfigurations();
    for (const c of users) {
      writeRecord({ kind: 'configuration', name: c.name, configuration: c.configuration, hash: definitionHash(c.definition), edges: c.edges });
      expect(c.edges.length).toBeGreaterThan(0);
      expect(c.edges.every((edge) => edge.startsWith(`${c.state}: `))).toBe(true);
      expect(aslErrors(c.definition)).toEqual([]);
    }
    expect(new Set(users.map((c) => c.name))).toEqual(new Set(['SubmitJobTask', 'CallVendorTask', 'SubmitJobTaskJsonata', 'CallVendorTaskJsonata']));
    // Distinct definitions: no two entries would share (and split) one definition's executions.
    expect(new Set(users.map((c) => definitionHash(c.definition))).size).toBe(users.length);
  });

  test('props that only change constants keep the routes of the base configuration', () => {
    // GIVEN the base configuration, and one with every constant-only prop changed
    const base = synthesizeWorkflows();
    const changed = synthesizeWorkflows(() => ({
      requestsPerSecond: 3,
      dispatch: { maxAttempts: 3, retryBaseDelay: Duration.seconds(5), maxRetryDelay: Duration.minutes(1), vendorCallTimeout: Duration.seconds(10), jobIdPath: '$.data.id' },
      vendorCall: { maxAttempts: 7, vendorCallTimeout: Duration.seconds(20) },
    }));

    // THEN the definitions differ, but not in their edges: no configuration is missing
    expect(definitionHash(changed.dispatch)).not.toBe(definitionHash(base.dispatch));
    expect(edgesOf(changed.dispatch)).toEqual(edgesOf(base.dispatch));
    expect(edgesOf(changed.vendorCall)).toEqual(edgesOf(base.vendorCall));
  });
});
