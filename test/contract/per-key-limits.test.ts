/**
 * Per-key limits, the settings (issue 15, design docs/design/per-key-limits.md 2.1): `KeyLimits`
 * checked at synth time against the contract, its run-time form for the dispatcher, and what
 * `perKey` requires of the orchestrator (PacingPoint.VENDOR_CALL, a key on every task).
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import {
  AsyncExternalApiOrchestrator, AsyncExternalApiOrchestratorProps, KeyLimits, PacingPoint, VendorContract, VendorContractState, VendorQuota,
} from '../../src';
import { KEY_LIMITS_ENV, KEY_SETTINGS_TABLE_ENV } from '../../src/shared/key-limits';
import { actionsOf, logicalIdOf, resourcesGranted, resourcesOf, statementsOfRole, testStack } from '../util';

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

describe('the key settings table (issue 15, design 2.2)', () => {
  const contract = () => VendorContract.of({ requestsPerSecond: 10, perKey: KeyLimits.of({ requestsPerSecond: 2 }) });
  const keySettingsTables = (template: Template) => Object.entries(template.toJSON().Resources as Record<string, any>)
    .filter(([id, r]) => r.Type === 'AWS::DynamoDB::Table' && /KeySettingsTable/.test(id)).map(([id]) => id);

  test('GIVEN perKey THEN the orchestrator has a retained, on-demand, encrypted table with PITR under a fixed logical id, the dispatcher may read it, a managing role may only manage its items', () => {
    const stack = testStack();
    const o = new AsyncExternalApiOrchestrator(stack, 'Vendor', { ...PROPS, contract: contract() });
    const manager = new iam.Role(stack, 'KeyManager', { assumedBy: new iam.AccountRootPrincipal() });
    o.grantManageKeySettings(manager);
    const template = Template.fromStack(stack);
    const tableId = logicalIdOf(stack, o.keySettingsTable!);
    // Fixed from the first release: a change would replace the table (and lose every override).
    expect(tableId).toBe('VendorKeySettingsTable91039CBF');
    expect(keySettingsTables(template)).toEqual([tableId]);
    template.hasResource('AWS::DynamoDB::Table', {
      Properties: {
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        SSESpecification: { SSEEnabled: true },
      },
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
    expect(o.contractState.keySettingsTable).toBe(o.keySettingsTable);
    const env = envOf(stack, o.consumer.function);
    expect(env[KEY_SETTINGS_TABLE_ENV]).toEqual({ Ref: tableId });
    const tableArn = { 'Fn::GetAtt': [tableId, 'Arn'] };
    const dispatcher = statementsOfRole(template, stack, o.consumer.function.role!);
    // The settings table, and the pacer table (the keys' pacing items, key-schedule.ts).
    expect(resourcesGranted(dispatcher, 'dynamodb:BatchGetItem')).toContainEqual(tableArn);
    expect(resourcesGranted(dispatcher, 'dynamodb:GetItem')).toContainEqual(tableArn);
    expect(resourcesGranted(dispatcher, 'dynamodb:PutItem')).not.toContainEqual(tableArn);
    const managed = statementsOfRole(template, stack, manager);
    expect(managed.map((st) => [actionsOf(st).sort(), resourcesOf(st)])).toEqual([
      [['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'], [tableArn]],
    ]);
  });

  test('GIVEN no perKey THEN no key settings table, and grantManageKeySettings says why', () => {
    const stack = testStack();
    const o = new AsyncExternalApiOrchestrator(stack, 'Vendor', { ...PROPS, requestsPerSecond: 10 });
    expect(o.keySettingsTable).toBeUndefined();
    expect(keySettingsTables(Template.fromStack(stack))).toEqual([]);
    expect(() => o.grantManageKeySettings(new iam.Role(stack, 'R', { assumedBy: new iam.AccountRootPrincipal() })))
      .toThrow(/grantManageKeySettings: the contract has no perKey, so there is no key settings table/);
    const state = new VendorContractState(stack, 'State', { contract: VendorContract.of({ requestsPerSecond: 10 }) });
    expect(state.keySettingsTable).toBeUndefined();
    expect(() => state.grantManageKeySettings(new iam.Role(stack, 'R2', { assumedBy: new iam.AccountRootPrincipal() })))
      .toThrow(/grantManageKeySettings needs a key settings table, which exists only when the contract has perKey/);
  });

  test('GIVEN a shared state with perKey THEN its one table serves both orchestrators (no table of their own)', () => {
    const stack = testStack();
    const state = new VendorContractState(stack, 'VendorState', { contract: contract() });
    const orders = new AsyncExternalApiOrchestrator(stack, 'Orders', { ...PROPS, contract: contract(), contractState: state });
    const invoices = new AsyncExternalApiOrchestrator(stack, 'Invoices', { ...PROPS, contract: contract(), contractState: state });
    const template = Template.fromStack(stack);
    const tableId = logicalIdOf(stack, state.keySettingsTable!);
    expect(tableId).toMatch(/^VendorStateKeySettingsTable/);
    expect(keySettingsTables(template)).toEqual([tableId]);
    for (const o of [orders, invoices]) {
      expect(o.keySettingsTable).toBe(state.keySettingsTable);
      expect(envOf(stack, o.consumer.function)[KEY_SETTINGS_TABLE_ENV]).toEqual({ Ref: tableId });
    }
  });

  test('GIVEN an imported state of a perKey contract THEN it takes the table\'s name (required), and the dispatcher reads that table', () => {
    const stack = testStack();
    expect(() => VendorContractState.fromVendorContractStateAttributes(stack, 'NoTable', { contract: contract(), pacerTableName: 'blue-pacer' }))
      .toThrow(/the contract has perKey, so give the key settings table's name or its ARN .* \(given neither\)/);
    expect(() => VendorContractState.fromVendorContractStateAttributes(stack, 'Extra', {
      contract: VendorContract.of({ requestsPerSecond: 10 }), pacerTableName: 'blue-pacer', keySettingsTableName: 'blue-keys',
    })).toThrow(/a key settings table is given but the contract has no perKey/);
    const imported = VendorContractState.fromVendorContractStateAttributes(stack, 'Imported', {
      contract: contract(), pacerTableName: 'blue-pacer', keySettingsTableName: 'blue-keys',
    });
    const o = new AsyncExternalApiOrchestrator(stack, 'Green', { ...PROPS, contract: contract(), contractState: imported });
    expect(envOf(stack, o.consumer.function)[KEY_SETTINGS_TABLE_ENV]).toBe('blue-keys');
    expect(keySettingsTables(Template.fromStack(stack))).toEqual([]);
  });

  test('GIVEN a contract state of a perKey contract without a key settings table THEN the orchestrator refuses it', () => {
    const stack = testStack();
    const own = new AsyncExternalApiOrchestrator(stack, 'Own', { ...PROPS, contract: contract() });
    const { keySettingsTable: _table, ...withoutTable } = own.contractState;
    expect(() => new AsyncExternalApiOrchestrator(stack, 'Other', { ...PROPS, contract: contract(), contractState: withoutTable }))
      .toThrow(/the contract has perKey but contractState has no keySettingsTable/);
  });
});
