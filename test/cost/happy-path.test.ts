import { AslDefinition, happyPath } from '../../cost/happy-path';

describe('happyPath', () => {
  test('follows Next to the end', () => {
    const definition: AslDefinition = {
      StartAt: 'A',
      States: { A: { Type: 'Pass', Next: 'B' }, B: { Type: 'Task', Resource: 'x', End: true } },
    };
    expect(happyPath(definition)).toEqual(['A', 'B']);
  });

  test('takes the Choice branch that reaches a success end, whichever of Choices or Default it is', () => {
    const definition: AslDefinition = {
      StartAt: 'Check',
      States: {
        Check: { Type: 'Choice', Choices: [{ Next: 'Bad' }], Default: 'Good' },
        Bad: { Type: 'Pass', Next: 'Failed' },
        Failed: { Type: 'Fail' },
        Good: { Type: 'Task', Resource: 'x', Next: 'Done' },
        Done: { Type: 'Succeed' },
      },
    };
    expect(happyPath(definition)).toEqual(['Check', 'Good', 'Done']);
  });

  test('never follows a Catch, even to a shorter Succeed', () => {
    const definition: AslDefinition = {
      StartAt: 'Call',
      States: {
        Call: { Type: 'Task', Resource: 'x', Next: 'Store', Catch: [{ ErrorEquals: ['States.ALL'], Next: 'Handled' }] },
        Handled: { Type: 'Succeed' },
        Store: { Type: 'Task', Resource: 'y', Next: 'Done' },
        Done: { Type: 'Succeed' },
      },
    };
    expect(happyPath(definition)).toEqual(['Call', 'Store', 'Done']);
  });

  test('refuses Map and Parallel states on the way, and definitions without a success end', () => {
    expect(() => happyPath({ StartAt: 'M', States: { M: { Type: 'Map', End: true } } }, 'wf')).toThrow(/wf: state 'M' is a Map/);
    expect(() => happyPath({ StartAt: 'F', States: { F: { Type: 'Fail' } } }, 'wf')).toThrow(/no success end/);
    expect(() => happyPath({ StartAt: 'A', States: { A: { Type: 'Pass', Next: 'Nope' } } }, 'wf')).toThrow(/'Nope', which is not a state/);
  });

  test('never enters an avoided state (a requeue): a Choice then takes the branch on which the vendor was called', () => {
    const definition: AslDefinition = {
      StartAt: 'CallVendor',
      States: {
        CallVendor: { Type: 'Task', Resource: 'lambda', Next: 'WasVendorCalled' },
        WasVendorCalled: { Type: 'Choice', Choices: [{ Next: 'DeferToQueue' }], Default: 'StoreJobId' },
        DeferToQueue: { Type: 'Pass', Next: 'RequeueWithDelay' },
        RequeueWithDelay: { Type: 'Task', Resource: 'sqs', Next: 'RetryScheduled' },
        RetryScheduled: { Type: 'Succeed' },
        StoreJobId: { Type: 'Task', Resource: 'dynamodb', Next: 'Check' },
        Check: { Type: 'Pass', Next: 'Submitted' },
        Submitted: { Type: 'Succeed' },
      },
    };
    expect(happyPath(definition)).toEqual(['CallVendor', 'WasVendorCalled', 'DeferToQueue', 'RequeueWithDelay', 'RetryScheduled']);
    expect(happyPath(definition, 'wf', (_, state) => state.Resource === 'sqs')).toEqual(['CallVendor', 'WasVendorCalled', 'StoreJobId', 'Check', 'Submitted']);
  });
});
