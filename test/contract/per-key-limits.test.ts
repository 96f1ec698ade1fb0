/**
 * Per-key limits, the settings (issue 15, design docs/design/per-key-limits.md 2.1): `KeyLimits`
 * checked at synth time against the contract, its run-time form for the dispatcher, and what
 * `perKey` requires of the orchestrator (PacingPoint.VENDOR_CALL, a key on every task).
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import {
  AsyncExternalApiOrchestrator, AsyncExternalApiOrchestratorProps, KeyLimits, PacingPoint, VendorContract, VendorContractState, VendorQuota,
} from '../../src';
import { KEY_LIMITS_ENV } from '../../src/shared/key-limits';
import { logicalIdOf, testStack } from '../util';

const PROPS = { vendorUrl: 'https://vendor.example.com/v1/jobs', callbackTimeout: Duration.minutes(30) };

const contractWith = (perKey: KeyLimits) => VendorContract.of({
  requestsPerSecond: 100,
  maxJobsInFlight: 500,
  quotas: [VendorQuota.perDay(1_000_000), VendorQuota.perHour(50_000, { timeZone: 'Europe/Berlin' })],
  perKey,
});

function envOf(stack: Stack, fn: { node: { defaultChild?: unknown } }): Record<string, unknown> {
  return Template.fromStack(stack).toJSON().Resources[logicalIdOf(stack, fn)].Properties.Environment.Variables;
}

describe('KeyLimits (issue 15, per-key settings)', () => {
  test('GIVEN per-key limits inside the contract THEN the contract keeps them and the handlers get them as the run-time spec', () => {
    const contract = contractWith(KeyLimits.of({
      requestsPerSecond: 5, maxJobsInFlight: 20, quotas: [VendorQuota.perDay(50_000)], priorityAging: Duration.seconds(45),
    }));
    expect(contract.perKey?._spec()).toEqual({
      requestsPerSecond: 5, maxJobsInFlight: 20, quotas: { daily: 50_000 }, priorityAgingMs: 45_000, paused: false,
    });
    // Defaults: no per-key places or quotas, aging 30 s.
    expect(KeyLimits.of({ requestsPerSecond: 0.5 })._spec()).toEqual({ requestsPerSecond: 0.5, quotas: {}, priorityAgingMs: 30_000, paused: false });
  });

  test.each([
    ['requestsPerSecond 0', () => KeyLimits.of({ requestsPerSecond: 0 }), /KeyLimits: requestsPerSecond must be above 0 \(given 0\)/],
    ['maxJobsInFlight 1.5', () => KeyLimits.of({ requestsPerSecond: 1, maxJobsInFlight: 1.5 }), /maxJobsInFlight must be a whole number between 1 and 5000 \(given 1.5\)/],
    ['priorityAging 500 ms', () => KeyLimits.of({ requestsPerSecond: 1, priorityAging: Duration.millis(500) }),
      /priorityAging must be between 1 second and 1 hour \(given 500 millis\)/],
    ['priorityAging 2 h', () => KeyLimits.of({ requestsPerSecond: 1, priorityAging: Duration.hours(2) }), /priorityAging must be between 1 second and 1 hour \(given 2 hours\)/],
    ['two quotas named alike', () => KeyLimits.of({ requestsPerSecond: 1, quotas: [VendorQuota.perDay(1), VendorQuota.perDay(2)] }),
      /two per-key quotas are named 'daily'/],
  ])('GIVEN %s THEN KeyLimits.of fails saying what was given', (_label, make, error) => {
    expect(make).toThrow(error);
  });

  test.each([
    ['a rate above the contract\'s', KeyLimits.of({ requestsPerSecond: 101 }),
      /perKey allows 101 requests per second per key, above the contract's 100 for all keys together: lower perKey.requestsPerSecond/],
    ['jobs in flight above the contract\'s', KeyLimits.of({ requestsPerSecond: 1, maxJobsInFlight: 501 }),
      /perKey.maxJobsInFlight \(501\) is above the contract's maxJobsInFlight \(500\)/],
    ['a quota the contract does not have', KeyLimits.of({ requestsPerSecond: 1, quotas: [VendorQuota.perMonth(10)] }),
      /perKey quota 'monthly' \(10 per month \(UTC\)\) names no quota of the contract \('daily' \(per day \(UTC\)\), 'hourly' \(per hour \(Europe\/Berlin\)\)\)/],
    ['a quota of another period', KeyLimits.of({ requestsPerSecond: 1, quotas: [VendorQuota.perHour(10)] }),
      /perKey quota 'hourly' is per hour \(UTC\), but the contract's quota 'hourly' is per hour \(Europe\/Berlin\): give the per-key quota the same period/],
    ['a quota above the contract\'s', KeyLimits.of({ requestsPerSecond: 1, quotas: [VendorQuota.perDay(1_000_001)] }),
      /perKey quota 'daily' allows 1000001 per day \(UTC\) per key, above the contract's 1000000/],
  ])('GIVEN %s THEN the contract fails at synth time saying how to fix it', (_label, perKey, error) => {
    expect(() => contractWith(perKey)).toThrow(error);
  });

  test('GIVEN per-key jobs in flight under a contract without maxJobsInFlight THEN it is refused', () => {
    expect(() => VendorContract.of({ requestsPerSecond: 10, perKey: KeyLimits.of({ requestsPerSecond: 1, maxJobsInFlight: 2 }) }))
      .toThrow(/perKey.maxJobsInFlight \(2\) is given but the contract has no maxJobsInFlight: .* give the contract maxJobsInFlight too, or remove perKey.maxJobsInFlight/);
  });

  test('GIVEN a quota per key under a contract without quotas THEN the error says it has none', () => {
    expect(() => VendorContract.of({ requestsPerSecond: 10, perKey: KeyLimits.of({ requestsPerSecond: 1, quotas: [VendorQuota.perDay(5)] }) }))
      .toThrow(/names no quota of the contract \(it has none\)/);
  });
});

describe('perKey on the orchestrator', () => {
  const contract = () => VendorContract.of({ requestsPerSecond: 10, perKey: KeyLimits.of({ requestsPerSecond: 2 }) });
  const orchestrator = (stack: Stack, props: Partial<AsyncExternalApiOrchestratorProps> = {}) =>
    new AsyncExternalApiOrchestrator(stack, 'O', { ...PROPS, contract: contract(), ...props });

  test('GIVEN perKey with PacingPoint.DISPATCH THEN synthesis fails (the vendor caller keeps each key\'s limits)', () => {
    expect(() => orchestrator(testStack(), { pacingPoint: PacingPoint.DISPATCH }))
      .toThrow(/the contract has perKey limits, .* they need pacingPoint PacingPoint.VENDOR_CALL \(given DISPATCH\); remove perKey or the pacingPoint/);
  });

  test.each([
    ['submitJobTask', (o: AsyncExternalApiOrchestrator, stack: Stack) => o.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromObject({}) })],
    ['callVendorTask', (o: AsyncExternalApiOrchestrator, stack: Stack) => o.callVendorTask(stack, 'Fetch', { path: '/x' })],
    ['submitJobTaskJsonata', (o: AsyncExternalApiOrchestrator, stack: Stack) => o.submitJobTaskJsonata(stack, 'Submit', { payload: '{% $states.input %}' })],
  ])('GIVEN perKey THEN %s without a key fails synthesis, naming the fix', (method, make) => {
    const stack = testStack();
    const o = orchestrator(stack);
    expect(() => make(o, stack)).toThrow(new RegExp(`${method} '(Submit|Fetch)': the contract has limits per key \\(VendorContract.of\\(\\{ perKey \\}\\)\\), so the task needs a key`));
  });

  test('GIVEN perKey THEN the dispatcher requires a key on every message and gets the per-key defaults', () => {
    const stack = testStack();
    const o = orchestrator(stack);
    o.registerWorkflow(new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(o.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromObject({}), key: sfn.JsonPath.stringAt('$.customerId') })),
    }));
    const env = envOf(stack, o.consumer.function);
    expect(env.REQUIRE_REQUEST_KEY).toBe('true');
    expect(JSON.parse(env[KEY_LIMITS_ENV] as string)).toEqual({ requestsPerSecond: 2, quotas: {}, priorityAgingMs: 30_000, paused: false });
  });

  test('GIVEN no perKey THEN nothing of it reaches the dispatcher', () => {
    const stack = testStack();
    const o = new AsyncExternalApiOrchestrator(stack, 'O', { ...PROPS, requestsPerSecond: 10 });
    const env = envOf(stack, o.consumer.function);
    expect(env.REQUIRE_REQUEST_KEY).toBeUndefined();
    expect(env[KEY_LIMITS_ENV]).toBeUndefined();
  });

  test('GIVEN a shared state made without perKey (or with other per-key limits) THEN an orchestrator with perKey is refused', () => {
    const stack = testStack();
    const plain = new VendorContractState(stack, 'Plain', { contract: VendorContract.of({ requestsPerSecond: 10 }) });
    expect(() => orchestrator(stack, { contractState: plain }))
      .toThrow(/contractState was made for another contract than this orchestrator's \(perKey: \{"requestsPerSecond":2,.*\} here, none in the state\)/);
    const other = new VendorContractState(stack, 'Other', {
      contract: VendorContract.of({ requestsPerSecond: 10, perKey: KeyLimits.of({ requestsPerSecond: 3 }) }),
    });
    expect(() => new AsyncExternalApiOrchestrator(stack, 'O2', { ...PROPS, contract: contract(), contractState: other }))
      .toThrow(/perKey: \{"requestsPerSecond":2,.*\} here, \{"requestsPerSecond":3,.*\} in the state/);
  });
});
