/**
 * The high-priority request queue (issue 15, rate-controlled-queue-consumer/high-priority-request-
 * queue.ts, orchestrator/request-queue-routing.ts): created with the first task that can send a
 * high request, mapped to the same dispatcher, its own dead-letter queue; nothing changes for an
 * orchestrator without one. The routing itself is executed by test/orchestrator/user-task-routes.test.ts.
 */
import { Duration } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AsyncExternalApiOrchestrator, ConsumerTrigger, Priority } from '../../src';
import { ConsumerEnv } from '../../src/shared/env';
import { testApp, testStack } from '../util';

function fixture(extra: Record<string, unknown> = {}) {
  const stack = testStack(testApp());
  const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    callbackTimeout: Duration.minutes(30),
    ...extra,
  });
  return { stack, orchestrator };
}

/** A workflow with one submitJobTask of `priority`, registered. */
function workflowWith(priority: Priority | undefined, extra: Record<string, unknown> = {}) {
  const { stack, orchestrator } = fixture(extra);
  const task = orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromObject({}), ...(priority ? { priority } : {}) });
  const main = new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(task) });
  orchestrator.registerWorkflow(main);
  return { stack, orchestrator, main, template: Template.fromStack(stack) };
}

const queueIds = (template: Template) => Object.keys(template.findResources('AWS::SQS::Queue')).sort();
const mappings = (template: Template) => Object.keys(template.findResources('AWS::Lambda::EventSourceMapping')).length;
/** The orchestrator's mappings without a high queue (the request queue's and the callback queue's). */
const MAPPINGS_WITHOUT = mappings(workflowWith(undefined).template);

describe('the high-priority request queue', () => {
  test('GIVEN no priority, NORMAL or LOW WHEN synthesized THEN no high queue, no second event source mapping, no HIGH_PRIORITY_QUEUE_ARN: the same queues as before', () => {
    const none = workflowWith(undefined);
    for (const priority of [Priority.NORMAL, Priority.LOW]) {
      const { template, orchestrator } = workflowWith(priority);
      expect(queueIds(template)).toEqual(queueIds(none.template));
      expect(orchestrator.consumer.highPriorityQueue).toBeUndefined();
    }
    expect(queueIds(none.template).some((id) => /HighPriority/.test(id))).toBe(false);
    for (const priority of [Priority.NORMAL, Priority.LOW]) expect(mappings(workflowWith(priority).template)).toBe(MAPPINGS_WITHOUT);
    const env = Object.values(none.template.findResources('AWS::Lambda::Function'))
      .map((f) => f.Properties.Environment?.Variables ?? {}).filter((v) => ConsumerEnv.HIGH_PRIORITY_QUEUE_ARN in v);
    expect(env).toEqual([]);
  });

  test.each([['HIGH', Priority.HIGH], ['fromJsonPath', Priority.fromJsonPath('$.priority')]])('GIVEN a %s task WHEN synthesized THEN the high queue and its own DLQ, a second mapping (batch 10, no window, max concurrency 2) on the dispatcher, which knows the queue; the request queue keeps its logical id', (_name, priority) => {
    const none = workflowWith(undefined);
    const { template, stack, orchestrator } = workflowWith(priority);
    const ids = queueIds(template);
    // The request queue and its DLQ keep their ids (deployed stacks must not replace them).
    expect(ids).toEqual(expect.arrayContaining(queueIds(none.template)));
    const added = ids.filter((id) => !queueIds(none.template).includes(id));
    expect(added).toHaveLength(2);
    expect(added.every((id) => /HighPriorityRequest(DeadLetter)?Queue/.test(id))).toBe(true);
    const high = orchestrator.consumer.highPriorityQueue!;
    const highId = stack.getLogicalId(high.node.defaultChild as any);
    const dlqId = added.find((id) => id !== highId)!;
    template.hasResourceProperties('AWS::SQS::Queue', {
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] }, maxReceiveCount: 10 },
      KmsMasterKeyId: Match.absent(),
      SqsManagedSseEnabled: true,
    });
    expect(mappings(template)).toBe(MAPPINGS_WITHOUT + 1);
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [highId, 'Arn'] },
      BatchSize: 10,
      MaximumBatchingWindowInSeconds: Match.absent(),
      ScalingConfig: { MaximumConcurrency: 2 },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ [ConsumerEnv.HIGH_PRIORITY_QUEUE_ARN]: { 'Fn::GetAtt': [highId, 'Arn'] } }) },
    });
    // Its own dead-letter alarm, like the request queue's, among the orchestrator's alarms (alarm actions reach it).
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [dlqId, 'QueueName'] } }] });
    expect(orchestrator.alarms).toContain(orchestrator.consumer.highPriorityDeadLetterAlarm);
  });

  test('GIVEN a priority read at run time WHEN synthesized THEN the user workflow may send to both queues; with a literal HIGH to the high queue only', () => {
    const sends = (template: Template) => Object.values(template.findResources('AWS::IAM::Policy'))
      .filter((p) => /MainRole/.test(JSON.stringify(p.Properties.Roles)))
      .flatMap((p) => p.Properties.PolicyDocument.Statement)
      .filter((s: any) => [s.Action].flat().includes('sqs:SendMessage'))
      .map((s: any) => s.Resource['Fn::GetAtt'][0]).sort();
    const runtime = workflowWith(Priority.fromJsonPath('$.priority'));
    const highId = (o: AsyncExternalApiOrchestrator, stack: any) => stack.getLogicalId(o.consumer.highPriorityQueue!.node.defaultChild);
    const requestId = (o: AsyncExternalApiOrchestrator, stack: any) => stack.getLogicalId(o.consumer.queue.node.defaultChild);
    expect(sends(runtime.template)).toEqual([highId(runtime.orchestrator, runtime.stack), requestId(runtime.orchestrator, runtime.stack)].sort());
    const literal = workflowWith(Priority.HIGH);
    expect(sends(literal.template)).toEqual([highId(literal.orchestrator, literal.stack)]);
  });

  test('GIVEN several high tasks WHEN synthesized THEN one high queue', () => {
    const { stack, orchestrator } = fixture();
    const a = orchestrator.submitJobTask(stack, 'A', { payload: sfn.TaskInput.fromObject({}), priority: Priority.HIGH });
    const b = orchestrator.callVendorTask(stack, 'B', { path: '/x', priority: Priority.fromJsonPath('$.p') });
    const c = orchestrator.submitJobTaskJsonata(stack, 'C', { payload: '{% $states.input %}', priority: Priority.fromJsonata('{% $states.input.p %}') });
    orchestrator.registerWorkflow(new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(a.next(b).next(c)) }));
    const template = Template.fromStack(stack);
    expect(queueIds(template).filter((id) => /HighPriorityRequestQueue/.test(id))).toHaveLength(1);
    expect(mappings(template)).toBe(MAPPINGS_WITHOUT + 1);
  });

  test('GIVEN a KMS key WHEN a high task is synthesized THEN the high queue and its DLQ use it too', () => {
    const { template } = (() => {
      const stack = testStack(testApp());
      const key = new kms.Key(stack, 'Key');
      const orchestrator = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
        vendorUrl: 'https://vendor.example.com/v1/jobs', requestsPerSecond: 10, callbackTimeout: Duration.minutes(30), consumer: { encryptionKey: key },
      });
      const task = orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromObject({}), priority: Priority.HIGH });
      orchestrator.registerWorkflow(new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(task) }));
      return { template: Template.fromStack(stack) };
    })();
    const encrypted = Object.entries(template.findResources('AWS::SQS::Queue')).filter(([id]) => /HighPriority/.test(id))
      .map(([, q]) => q.Properties.KmsMasterKeyId);
    expect(encrypted).toHaveLength(2);
    expect(encrypted.every((k) => k !== undefined)).toBe(true);
  });

  test('GIVEN a reserved concurrency below both mappings\' WHEN a HIGH task is synthesized THEN a warning names the figures; none when it covers both', () => {
    const warnings = (reserved: number) => {
      const { stack } = workflowWith(Priority.HIGH, { consumer: { reservedConcurrentExecutions: reserved } });
      return Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('two mappings'));
    };
    expect(warnings(2).map((w) => String(w.entry.data))).toEqual([expect.stringMatching(/reservedConcurrentExecutions \(2\) is below the two mappings' maximum concurrency \(2 \+ 2 for the high-priority queue\).*Raise it to 4/)]);
    expect(warnings(4)).toEqual([]);
  });

  test('GIVEN an alarm action added before the high task WHEN synthesized THEN the high DLQ alarm has it too', () => {
    const { stack, orchestrator } = fixture();
    orchestrator.addAlarmAction({ bind: () => ({ alarmActionArn: 'arn:aws:sns:us-east-1:123456789012:oncall' }) });
    const task = orchestrator.submitJobTask(stack, 'Submit', { payload: sfn.TaskInput.fromObject({}), priority: Priority.HIGH });
    orchestrator.registerWorkflow(new sfn.StateMachine(stack, 'Main', { definitionBody: sfn.DefinitionBody.fromChainable(task) }));
    const alarm = orchestrator.consumer.highPriorityDeadLetterAlarm!;
    Template.fromStack(stack).hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: Match.absent(),
      AlarmDescription: Match.stringLikeRegexp('HighPriorityRequest dead-letter queue'),
      AlarmActions: ['arn:aws:sns:us-east-1:123456789012:oncall'],
    });
    expect(orchestrator.alarms).toContain(alarm);
  });

  test('GIVEN a HIGH task WHEN synthesized THEN the dashboard graphs the high DLQ beside the other two; without one it does not', () => {
    const body = (template: Template) => JSON.stringify(Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody);
    const withHigh = body(workflowWith(Priority.HIGH).template);
    expect(withHigh).toContain('high-priority DLQ');
    expect(withHigh).toContain('request DLQ');
    expect(body(workflowWith(undefined).template)).not.toContain('high-priority DLQ');
  });

  test('GIVEN the schedule trigger WHEN a HIGH task is synthesized THEN no high queue: every request goes to the request queue', () => {
    const { template, orchestrator } = workflowWith(Priority.HIGH, { consumer: { trigger: ConsumerTrigger.schedule() } });
    expect(orchestrator.consumer.highPriorityQueue).toBeUndefined();
    expect(queueIds(template).some((id) => /HighPriority/.test(id))).toBe(false);
  });
});
