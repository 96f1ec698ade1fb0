/**
 * A key per request (issue 15, item 1) on the four tasks: the rendered message (`key`) and
 * `MessageGroupId` (the key's SHA-256, the same from JSONPath, JSONata and a literal), executed
 * (JSONPath with aws-local-stepfunctions, JSONata with the jsonata package), and the synth-time
 * checks of literal keys.
 */
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator } from '../../src';
import { literalKeyGroupId } from '../../src/orchestrator/request-key-fields';
import { executeDefinition } from '../asl/execute';
import { evaluateTemplate } from '../asl/jsonata-execute';
import { AslDefinition, aslErrors, definitionOf, logicalIdOf, testApp, testStack } from '../util';

function fixture() {
  const stack = testStack(testApp());
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
  });
  return { stack, orchestrator };
}

/** One main workflow with the four keyed tasks (two JSONPath, two JSONata), synthesized. */
function keyedWorkflow(): AslDefinition {
  const { stack, orchestrator } = fixture();
  const chain = orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromJsonPathAt('$.order'), key: sfn.JsonPath.stringAt('$.customerId'), resultPath: '$.vendor' })
    .next(orchestrator.callVendorTask(stack, 'Fetch', { path: '/x', key: sfn.JsonPath.stringAt('$.customerId'), resultPath: '$.fetched' }))
    .next(orchestrator.submitJobTaskJsonata(stack, 'SubmitJsonata', { payload: '{% $states.input.order %}', key: '{% $states.input.customerId %}', outputs: '{% $states.input %}' }))
    .next(orchestrator.callVendorTaskJsonata(stack, 'FetchJsonata', { path: '/x', key: 'acme', outputs: '{% $states.input %}' }));
  const main = new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(chain) });
  orchestrator.registerWorkflow(main);
  return definitionOf(Template.fromStack(stack), logicalIdOf(stack, main));
}

describe('tasks with a key', () => {
  const definition = keyedWorkflow();

  test('the four states render the key in the message and a MessageGroupId; asl-validator finds nothing', () => {
    expect(aslErrors(definition)).toEqual([]);
    expect(definition.States.Submit.Parameters.MessageBody['key.$']).toBe('$.customerId');
    expect(definition.States.Submit.Parameters['MessageGroupId.$']).toBe("States.Hash(States.Format('{}', $.customerId), 'SHA-256')");
    expect(definition.States.Fetch.Parameters.MessageBody['key.$']).toBe('$.customerId');
    expect(definition.States.SubmitJsonata.Arguments.MessageBody.key).toBe('{% ($k := ($states.input.customerId); $exists($k) ? $k : null) %}');
    expect(definition.States.FetchJsonata.Arguments.MessageBody.key).toBe('acme');
    expect(definition.States.FetchJsonata.Arguments.MessageGroupId).toBe(literalKeyGroupId('acme'));
    expect(literalKeyGroupId('acme')).toMatch(/^[0-9a-f]{64}$/);
  });

  test('executed (JSONPath): the message carries the key, the group id is its SHA-256, the same as a literal key\'s', async () => {
    const sent: any[] = [];
    const answer = (input: any) => {
      sent.push(input);
      return {};
    };
    const jsonPathOnly: AslDefinition = {
      StartAt: 'Submit',
      States: {
        Submit: { ...definition.States.Submit, Next: 'Fetch' },
        Fetch: { ...definition.States.Fetch, Next: undefined, End: true },
      },
    } as any;
    delete (jsonPathOnly.States.Fetch as any).Next;
    const result = await executeDefinition(jsonPathOnly, { order: { sku: 'x' }, customerId: 'acme' }, { Submit: answer, Fetch: answer }, { record: false, name: 'request-keys', context: { Task: { Token: 'token-1' } } });
    expect(result.error).toBeUndefined();
    expect(sent.map((s) => [s.MessageBody.key, s.MessageGroupId])).toEqual([['acme', literalKeyGroupId('acme')], ['acme', literalKeyGroupId('acme')]]);
  });

  test('executed (JSONata): the same group id for the same key; a key the input lacks becomes null (the dispatcher refuses it)', async () => {
    const args = definition.States.SubmitJsonata.Arguments;
    const present = await evaluateTemplate({ key: args.MessageBody.key, group: args.MessageGroupId }, { states: { input: { customerId: 'acme' } } }, 'Arguments') as any;
    expect(present).toEqual({ key: 'acme', group: literalKeyGroupId('acme') });
    const absent = await evaluateTemplate({ key: args.MessageBody.key, group: args.MessageGroupId }, { states: { input: {} } }, 'Arguments') as any;
    expect(absent.key).toBeNull();
    expect(absent.group).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('synth-time checks of a key', () => {
  test.each([
    ['a literal with a space', 'two words', /submitJobTask 'Submit': the key must be 1 to 128 characters/],
    ['an empty literal', '', /1 to 128 characters/],
    ['a plain string that looks like JSONPath', '$.customerId', /looks like JSONPath: write sfn.JsonPath.stringAt\('\$.customerId'\)/],
  ])('submitJobTask refuses %s', (_, key, message) => {
    const { stack, orchestrator } = fixture();
    expect(() => orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromObject({}), key })).toThrow(message);
  });

  test('submitJobTaskJsonata refuses JSONPath and an invalid literal', () => {
    const { stack, orchestrator } = fixture();
    expect(() => orchestrator.submitJobTaskJsonata(stack, 'A', { payload: '{% $states.input %}', key: '$.customerId' })).toThrow(/in JSONata write/);
    expect(() => orchestrator.callVendorTaskJsonata(stack, 'B', { path: '/x', key: 'x'.repeat(129) })).toThrow(/callVendorTaskJsonata 'B'.*129 characters/);
  });

  test('no key: the message and the state are as before issue 15 (no key field, no MessageGroupId)', () => {
    const { stack, orchestrator } = fixture();
    const main = new sfn.StateMachine(stack, 'Main', {
      definitionBody: sfn.DefinitionBody.fromChainable(orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromJsonPathAt('$.order') })),
    });
    orchestrator.registerWorkflow(main);
    const state = definitionOf(Template.fromStack(stack), logicalIdOf(stack, main)).States.Submit;
    expect(Object.keys(state.Parameters.MessageBody)).not.toContain('key.$');
    expect(state.Parameters).not.toHaveProperty('MessageGroupId');
    expect(state.Parameters).not.toHaveProperty('MessageGroupId.$');
  });
});
