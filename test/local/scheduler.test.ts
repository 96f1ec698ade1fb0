import { LocalScheduler, parseRateExpression, renderInput } from '../../local/aws/scheduler';
import { ResolvedResource } from '../../local/types';

const FN_ARN = 'arn:aws:lambda:us-east-1:000000000000:function:Dispatcher';

function schedule(properties: Record<string, any>, logicalId = 'Tick'): ResolvedResource {
  return {
    logicalId,
    type: 'AWS::Scheduler::Schedule',
    properties: {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: { Arn: FN_ARN, RoleArn: 'arn:aws:iam::000000000000:role/R', Input: '{"kind":"ScheduledDrainTick","scheduledTime":"<aws.scheduler.scheduled-time>","executionId":"<aws.scheduler.execution-id>"}' },
      ...properties,
    },
    metadata: {},
  };
}

describe('parseRateExpression', () => {
  test.each([
    ['rate(1 minute)', 60_000],
    ['rate(5 minutes)', 300_000],
    ['rate(1 hour)', 3_600_000],
    ['rate(2 days)', 172_800_000],
  ])('%s is %p ms', (expression, ms) => {
    expect(parseRateExpression(expression)).toBe(ms);
  });

  test('refuses cron and at expressions loudly', () => {
    expect(() => parseRateExpression('cron(0 12 * * ? *)')).toThrow(/only rate\(N minute\(s\)\|hour\(s\)\|day\(s\)\) schedule expressions run locally \(given 'cron\(0 12 \* \* \? \*\)'\)/);
    expect(() => parseRateExpression('at(2030-01-01T00:00:00)')).toThrow(/only rate/);
    expect(() => parseRateExpression('rate(1 minutes)')).toThrow(/invalid rate expression/);
  });
});

test('renderInput fills in the context attributes and parses JSON', () => {
  const input = renderInput('{"t":"<aws.scheduler.scheduled-time>","id":"<aws.scheduler.execution-id>","arn":"<aws.scheduler.schedule-arn>","n":"<aws.scheduler.attempt-number>"}', {
    scheduleArn: 'arn:s', scheduledTime: '2024-01-01T00:00:00Z', executionId: 'x', attemptNumber: 1,
  });
  expect(input).toEqual({ t: '2024-01-01T00:00:00Z', id: 'x', arn: 'arn:s', n: '1' });
});

describe('LocalScheduler', () => {
  test('refuses a cron schedule and a non-Lambda target at start, naming the schedule', () => {
    expect(() => new LocalScheduler({ schedules: [schedule({ ScheduleExpression: 'cron(0 12 * * ? *)' })], invoke: jest.fn() }))
      .toThrow(/Cannot run schedule Tick locally: only rate/);
    expect(() => new LocalScheduler({ schedules: [schedule({ Target: { Arn: 'arn:aws:sqs:us-east-1:000000000000:q' } })], invoke: jest.fn() }))
      .toThrow(/only Lambda function targets are fired/);
  });

  test('tickAll invokes the target with the rendered input and waits for it', async () => {
    const events: any[] = [];
    const invoke = jest.fn(async (_name: string, event: unknown) => {
      events.push(event);
      await new Promise((r) => setTimeout(r, 20));
      return { received: 0 };
    });
    const scheduler = new LocalScheduler({ schedules: [schedule({})], invoke });
    await scheduler.tickAll();
    expect(invoke).toHaveBeenCalledWith(FN_ARN, expect.objectContaining({ kind: 'ScheduledDrainTick' }));
    expect(events[0].scheduledTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(events[0].executionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(scheduler.stats().Tick).toMatchObject({ ticks: 1, invocations: 1, errors: 0, lastResult: { received: 0 } });
    await scheduler.stop();
  });

  test('disabled schedules never fire', async () => {
    const invoke = jest.fn(async () => null);
    const scheduler = new LocalScheduler({ schedules: [schedule({ State: 'DISABLED' })], invoke });
    await scheduler.tickAll();
    expect(invoke).not.toHaveBeenCalled();
  });

  test('speedup ticks rate(1 minute) every 60/speedup seconds; with reserved concurrency 1 a tick overlapping the previous is held, later ones coalesce', async () => {
    let running = 0;
    let maxRunning = 0;
    const invoke = jest.fn(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, 130));
      running--;
      return null;
    });
    // rate(1 minute) / 1200 = a tick every 50 ms; each invocation takes 130 ms.
    const reservedConcurrency = jest.fn(() => 1);
    const scheduler = new LocalScheduler({ schedules: [schedule({})], invoke, speedup: 1200, reservedConcurrency });
    scheduler.start();
    await new Promise((r) => setTimeout(r, 600));
    await scheduler.stop();
    const stats = scheduler.stats().Tick;
    expect(reservedConcurrency).toHaveBeenCalledWith(FN_ARN);
    expect(maxRunning).toBe(1); // never two ticks of one schedule at once
    expect(stats.maxConcurrent).toBe(1);
    expect(stats.ticks).toBeGreaterThanOrEqual(8);
    expect(stats.held).toBeGreaterThanOrEqual(1);
    expect(stats.coalesced).toBeGreaterThanOrEqual(1);
    expect(stats.invocations).toBeLessThan(stats.ticks);
  });

  test('without reserved concurrency overlapping ticks run at once, as Lambda runs asynchronous invocations', async () => {
    // Regression (issue 11, finding 2): the local scheduler held every overlapping tick, as if the
    // function had reserved concurrency 1, so it could not show what overlapping ticks do on AWS.
    let running = 0;
    let maxRunning = 0;
    const invoke = jest.fn(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, 130));
      running--;
      return null;
    });
    const scheduler = new LocalScheduler({ schedules: [schedule({})], invoke, speedup: 1200 });
    scheduler.start();
    await new Promise((r) => setTimeout(r, 400));
    await scheduler.stop();
    const stats = scheduler.stats().Tick;
    expect(maxRunning).toBeGreaterThanOrEqual(2);
    expect(stats.maxConcurrent).toBe(maxRunning);
    expect(stats.held).toBe(0);
    expect(stats.invocations).toBe(stats.ticks);
  });

  test('a failing tick is counted, not retried', async () => {
    const invoke = jest.fn(async () => {
      throw Object.assign(new Error('boom'), { name: 'Error' });
    });
    const scheduler = new LocalScheduler({ schedules: [schedule({})], invoke });
    await scheduler.tickAll();
    expect(invoke).toHaveBeenCalledTimes(1);
    expect(scheduler.stats().Tick).toMatchObject({ errors: 1, lastError: 'Error: boom' });
  });

  test('refuses a speedup that is not positive', () => {
    expect(() => new LocalScheduler({ schedules: [], invoke: jest.fn(), speedup: 0 })).toThrow(/scheduleSpeedup must be a positive number \(given 0\)/);
  });
});
