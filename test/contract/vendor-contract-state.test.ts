/**
 * One contract's state shared by several orchestrators (issue 14, item 8): one pacer table and one
 * AppConfig configuration, each orchestrator's functions pointed at them and granted what they use,
 * each orchestrator's own items keyed apart (SHARED_STATE_OWNER), other contracts refused.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import {
  AsyncExternalApiOrchestrator, AsyncExternalApiOrchestratorProps, IVendorContractState, RateControlledQueueConsumer, VendorContract,
  VendorContractState, VendorLimit, VendorQuota,
} from '../../src';
import { logicalIdOf, resourcesGranted, statementsOfRole, testApp, testStack } from '../util';

const VENDOR_URL = 'https://vendor.example.com/v1/jobs';
const contract = () => VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 20, quotas: [VendorQuota.perDay(50_000)] });

function orchestrator(stack: Stack, id: string, props: Partial<AsyncExternalApiOrchestratorProps> = {}): AsyncExternalApiOrchestrator {
  return new AsyncExternalApiOrchestrator(stack, id, { vendorUrl: VENDOR_URL, contract: contract(), callbackTimeout: Duration.hours(2), ...props });
}

type Fn = { node: { defaultChild?: unknown } };
function envOf(template: Template, stack: Stack, fn: Fn): Record<string, any> {
  return template.toJSON().Resources[logicalIdOf(stack, fn)].Properties.Environment.Variables;
}

/** The pacer tables of a template (key `pk`; the correlation tables are keyed by request id). */
function pacerTables(template: Template): string[] {
  return Object.entries(template.toJSON().Resources as Record<string, any>)
    .filter(([, r]) => r.Type === 'AWS::DynamoDB::Table' && r.Properties.KeySchema[0].AttributeName === 'pk')
    .map(([id]) => id);
}

/** Every function of an orchestrator that uses the pacer table, with the variable naming it. */
function pacingFunctions(o: AsyncExternalApiOrchestrator): Array<[string, Fn, string]> {
  return [
    ['dispatcher', o.consumer.function, 'PACER_TABLE_NAME'],
    ['vendor caller', o.dispatch.vendorCaller as unknown as Fn, 'PACER_TABLE_NAME'],
    ['callback processor', o.webhook.processor, 'JOB_PLACES_TABLE_NAME'],
  ];
}

describe('VendorContractState shared by two orchestrators in one stack', () => {
  const stack = testStack();
  const state = new VendorContractState(stack, 'VendorState', { contract: contract(), dynamicDelay: {} });
  const orders = orchestrator(stack, 'Orders', { contractState: state });
  const invoices = orchestrator(stack, 'Invoices', { contractState: state });
  const template = Template.fromStack(stack);
  const table = { Ref: logicalIdOf(stack, state.pacerTable) };

  test('one pacer table, retained, under the state', () => {
    expect(pacerTables(template)).toEqual([logicalIdOf(stack, state.pacerTable)]);
    expect(logicalIdOf(stack, state.pacerTable)).toMatch(/^VendorStatePacerTable/);
    template.hasResource('AWS::DynamoDB::Table', { Properties: { KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }] }, DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    expect(orders.contractState).toBe(state);
    expect(orders.consumer.pacerTable).toBe(state.pacerTable);
  });

  test.each(['dispatcher', 'vendor caller', 'callback processor'])('both orchestrators\' %s point at the one table, each with its own key', (name) => {
    const owners = [orders, invoices].map((o) => {
      const [, fn, variable] = pacingFunctions(o).find(([n]) => n === name)!;
      const env = envOf(template, stack, fn);
      expect(env[variable]).toEqual(table);
      return env.SHARED_STATE_OWNER;
    });
    // Each orchestrator's own items (drain lease, job places) are keyed by its request queue's ARN.
    expect(owners).toEqual([
      { 'Fn::GetAtt': [logicalIdOf(stack, orders.consumer.queue), 'Arn'] },
      { 'Fn::GetAtt': [logicalIdOf(stack, invoices.consumer.queue), 'Arn'] },
    ]);
  });

  test('both read the one AppConfig rate in force; no orchestrator creates its own', () => {
    expect(Object.keys(template.findResources('AWS::AppConfig::Application'))).toEqual([stack.resolve(state.dynamicDelay!.applicationId).Ref]);
    for (const o of [orders, invoices]) {
      for (const fn of [o.consumer.function, o.dispatch.vendorCaller as unknown as Fn]) {
        expect(envOf(template, stack, fn).DYNAMIC_DELAY_APPLICATION_ID).toEqual(stack.resolve(state.dynamicDelay!.applicationId));
      }
    }
  });

  test('each function is granted exactly what it does on the shared table', () => {
    const tableArn = stack.resolve(state.pacerTable.tableArn);
    for (const o of [orders, invoices]) {
      const dispatcher = statementsOfRole(template, stack, o.consumer.function.role!);
      for (const action of ['dynamodb:PutItem', 'dynamodb:UpdateItem']) {
        expect(resourcesGranted(dispatcher, action)).toEqual([tableArn]);
      }
      // GetItem also on its own correlation table (jobs in flight: already submitted?), never the other's.
      expect(resourcesGranted(dispatcher, 'dynamodb:GetItem')).toEqual([tableArn, stack.resolve(o.table.table.tableArn)]);
      expect(resourcesGranted(dispatcher, 'dynamodb:DeleteItem')).toEqual([]);
      expect(resourcesGranted(dispatcher, 'appconfig:GetLatestConfiguration')).toEqual([stack.resolve(state.dynamicDelay!.configurationArn)]);
      const processor = statementsOfRole(template, stack, o.webhook.processor.role!);
      expect(resourcesGranted(processor, 'dynamodb:UpdateItem')).toEqual(expect.arrayContaining([tableArn]));
      expect(resourcesGranted(processor, 'dynamodb:PutItem')).not.toContainEqual(tableArn);
    }
  });
});

describe('VendorContractState shared across stacks and apps', () => {
  test('GIVEN the state in one stack WHEN an orchestrator of another stack of the app takes it THEN its functions import the table', () => {
    const app = testApp();
    const shared = new Stack(app, 'Shared', { env: { account: '123456789012', region: 'us-east-1' } });
    const state = new VendorContractState(shared, 'VendorState', { contract: contract() });
    const green = new Stack(app, 'Green', { env: { account: '123456789012', region: 'us-east-1' } });
    const o = orchestrator(green, 'Orders', { contractState: state });
    const template = Template.fromStack(green);
    expect(pacerTables(template)).toEqual([]);
    expect(JSON.stringify(envOf(template, green, o.consumer.function).PACER_TABLE_NAME)).toMatch(/Fn::ImportValue/);
  });

  test('GIVEN a state imported by its attributes (blue/green, another app) THEN the functions use its name, ARN and AppConfig ids', () => {
    const stack = testStack();
    const state = VendorContractState.fromVendorContractStateAttributes(stack, 'BlueState', {
      contract: contract(),
      pacerTableName: 'blue-pacer',
      dynamicDelay: { applicationId: 'app1', environmentId: 'env1', configurationProfileId: 'prof1' },
    });
    const o = orchestrator(stack, 'Orders', { contractState: state });
    const template = Template.fromStack(stack);
    expect(pacerTables(template)).toEqual([]);
    expect(Object.keys(template.findResources('AWS::AppConfig::Application'))).toEqual([]);
    expect(envOf(template, stack, o.consumer.function)).toMatchObject({
      PACER_TABLE_NAME: 'blue-pacer',
      DYNAMIC_DELAY_APPLICATION_ID: 'app1',
      DYNAMIC_DELAY_ENVIRONMENT_ID: 'env1',
      DYNAMIC_DELAY_CONFIGURATION_PROFILE_ID: 'prof1',
    });
    expect(state.dynamicDelay!.maxRequestsPerSecond).toBe(10);
    const dispatcher = statementsOfRole(template, stack, o.consumer.function.role!);
    expect(JSON.stringify(resourcesGranted(dispatcher, 'dynamodb:UpdateItem'))).toContain(':table/blue-pacer');
    expect(JSON.stringify(resourcesGranted(dispatcher, 'appconfig:GetLatestConfiguration'))).toContain('application/app1/environment/env1/configuration/prof1');
  });

  test.each([
    [{}, 'neither'],
    [{ pacerTableName: 'a', pacerTableArn: 'arn:aws:dynamodb:us-east-1:123456789012:table/a' }, 'both'],
  ])('GIVEN attributes with %j WHEN imported THEN refused: exactly one of name and ARN', (attrs, given) => {
    expect(() => VendorContractState.fromVendorContractStateAttributes(testStack(), 'S', { contract: contract(), ...attrs }))
      .toThrow(`give the pacer table's name or its ARN, exactly one (given ${given})`);
  });

  test('GIVEN one orchestrator with its own state WHEN a second takes its contractState THEN both use its table, only the second is keyed', () => {
    const stack = testStack();
    const blue = orchestrator(stack, 'Blue');
    const green = orchestrator(stack, 'Green', { contractState: blue.contractState });
    const template = Template.fromStack(stack);
    expect(pacerTables(template)).toEqual([logicalIdOf(stack, blue.consumer.pacerTable)]);
    expect(envOf(template, stack, green.consumer.function).PACER_TABLE_NAME).toEqual({ Ref: logicalIdOf(stack, blue.consumer.pacerTable) });
    // The first keeps the keys it had before (deployed stacks): no owner.
    expect(envOf(template, stack, blue.consumer.function).SHARED_STATE_OWNER).toBeUndefined();
    expect(envOf(template, stack, blue.webhook.processor).SHARED_STATE_OWNER).toBeUndefined();
    expect(envOf(template, stack, green.consumer.function).SHARED_STATE_OWNER).toBeDefined();
  });
});

describe('a state of another contract is refused', () => {
  test.each<[string, VendorContract, RegExp]>([
    ['rate', VendorContract.of({ requestsPerSecond: 5, maxJobsInFlight: 20, quotas: [VendorQuota.perDay(50_000)] }),
      /requestsPerSecond: 10 here, 5 in the state/],
    ['jobs in flight', VendorContract.of({ requestsPerSecond: 10, quotas: [VendorQuota.perDay(50_000)] }), /maxJobsInFlight: 20 here, none in the state/],
    ['quotas', VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 20, quotas: [VendorQuota.perDay(40_000)] }), /quotas: .*"limit":50000.* here, .*"limit":40000.* in the state/],
    ['limits', VendorContract.of({
      requestsPerSecond: 10,
      maxJobsInFlight: 20,
      quotas: [VendorQuota.perDay(50_000)],
      limits: [VendorLimit.of({ name: 'results', requestsPerSecond: 2, pathPrefix: '/results' })],
    }), /limits: \[\] here, .*"results".* in the state/],
  ])('GIVEN a state made for another %s WHEN an orchestrator takes it THEN synthesis fails naming both and the fix', (_, other, detail) => {
    const stack = testStack();
    const state = new VendorContractState(stack, 'State', { contract: other });
    expect(() => orchestrator(stack, 'Orders', { contractState: state })).toThrow(detail);
    expect(() => orchestrator(testStack(), 'Orders', { contractState: state }))
      .toThrow(/contractState was made for another contract than this orchestrator's .*give both the same VendorContract.of\(\{...\}\), or omit contractState/);
  });

  test('GIVEN an orchestrator\'s own state WHEN a second orchestrator spacing slots differently takes it THEN refused', () => {
    const stack = testStack();
    const blue = orchestrator(stack, 'Blue');
    expect(() => orchestrator(stack, 'Green', { contractState: blue.contractState, consumer: { latenessTolerance: Duration.millis(60) } }))
      .toThrow(/TestStack\/Green\/Consumer reserves slots with pacingPoint VENDOR_CALL, slots 106.1 ms apart, but TestStack\/Blue\/Consumer, which shares its contract state, with pacingPoint VENDOR_CALL, slots 103.1 ms apart/);
  });

  test('GIVEN an orchestrator\'s own state (its full contract) WHEN another contract takes it THEN refused', () => {
    const stack = testStack();
    const blue = orchestrator(stack, 'Blue');
    expect(() => orchestrator(stack, 'Green', { contract: VendorContract.of({ requestsPerSecond: 10 }), contractState: blue.contractState }))
      .toThrow(/maxJobsInFlight: none here, 20 in the state/);
  });
});

describe('RateControlledQueueConsumer with a shared state', () => {
  const workflow = (stack: Stack) => sfn.StateMachine.fromStateMachineArn(stack, `W${stack.node.children.length}`, 'arn:aws:states:us-east-1:123456789012:stateMachine:w');
  const consumer = (stack: Stack, id: string, state: IVendorContractState, props: object = {}) =>
    new RateControlledQueueConsumer(stack, id, { requestsPerSecond: 10, stateMachine: workflow(stack), contractState: state, ...props });

  test('GIVEN another rate THEN refused', () => {
    const stack = testStack();
    const state = new VendorContractState(stack, 'S', { contract: VendorContract.of({ requestsPerSecond: 20 }) });
    expect(() => consumer(stack, 'C', state)).toThrow(/C: requestsPerSecond 10 differs from the shared contract state's 20/);
  });

  test('GIVEN dynamicDelay on the consumer THEN refused: it belongs to the state', () => {
    const stack = testStack();
    const state = new VendorContractState(stack, 'S', { contract: VendorContract.of({ requestsPerSecond: 10 }) });
    expect(() => consumer(stack, 'C', state, { dynamicDelay: {} })).toThrow(/give dynamicDelay to the VendorContractState instead/);
  });

  test('GIVEN two consumers spacing slots differently THEN the second is refused', () => {
    const stack = testStack();
    const state = new VendorContractState(stack, 'S', { contract: VendorContract.of({ requestsPerSecond: 10 }) });
    consumer(stack, 'A', state);
    expect(() => consumer(stack, 'B', state, { latenessTolerance: Duration.millis(10) }))
      .toThrow(/B reserves slots with pacingPoint DISPATCH, slots 101.1 ms apart, but TestStack\/A, which shares its contract state, with pacingPoint DISPATCH, slots 105.1 ms apart/);
    // Spaced alike: accepted.
    consumer(stack, 'C', state);
  });

  test('GIVEN a jobs-in-flight limit other than the state\'s THEN refused', () => {
    const stack = testStack();
    const state = new VendorContractState(stack, 'S', { contract: VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 5 }) });
    const c = consumer(stack, 'C', state);
    const correlationTable = new dynamodb.Table(stack, 'T', { partitionKey: { name: 'requestId', type: dynamodb.AttributeType.STRING } });
    expect(() => c.limitJobsInFlight({ maxJobsInFlight: 6, maxJobDuration: Duration.hours(1), correlationTable }))
      .toThrow(/maxJobsInFlight 6 differs from the shared contract state's \(5\)/);
  });
});

describe('the default path keeps its template', () => {
  test('GIVEN no contractState THEN the pacer table and AppConfig keep their logical ids, nothing is keyed, the table is retained', () => {
    const stack = testStack();
    const o = orchestrator(stack, 'Vendor', { consumer: { dynamicDelay: {} } });
    const template = Template.fromStack(stack);
    expect(pacerTables(template)).toEqual([expect.stringMatching(/^VendorConsumerPacerTable[0-9A-F]{8}$/)]);
    expect(stack.getLogicalId(o.consumer.dynamicDelay!.application)).toMatch(/^VendorConsumerDynamicDelayApplication/);
    expect(o.contractState.pacerTable).toBe(o.consumer.pacerTable);
    expect(o.contractState.contract).toBe(o.contract);
    for (const [, fn] of pacingFunctions(o)) {
      expect(envOf(template, stack, fn).SHARED_STATE_OWNER).toBeUndefined();
    }
    template.hasResource('AWS::DynamoDB::Table', { Properties: { KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }] }, DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
  });
});
