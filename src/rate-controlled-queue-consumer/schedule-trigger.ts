/**
 * The schedule trigger of the queue consumer (low-rate mode): synth-time plan and resources.
 * Internal to the construct (not exported from the package); the public API is `ConsumerTrigger`.
 */
import { Annotations, Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { addRolePolicyNagSuppressions } from '../shared/nag';
import { SCHEDULED_TICK_KIND, ScheduleEnv } from '../shared/scheduled-tick';
import { validateDuration } from '../shared/validation';

/** The function timeout stays this far below the tick period, so that ticks normally do not overlap. */
export const TICK_TIMEOUT_MARGIN_SECONDS = 5;
/** Lambda's longest invocation. */
const MAX_FUNCTION_TIMEOUT_SECONDS = 900;
/** Scheduler retries a failed Invoke API call (not a failed tick) this many times within the period. */
const SCHEDULER_RETRY_ATTEMPTS = 2;

/** What the construct derives from the schedule trigger. */
export interface ScheduleTriggerPlan {
  readonly every: Duration;
  /** Dispatcher timeout: the period minus a margin, at most 15 minutes. */
  readonly timeoutSeconds: number;
  /** `floor(requestsPerSecond x period)`: the most messages one tick takes. */
  readonly maxMessagesPerTick: number;
}

/** The consumer props the schedule trigger checks (a subset of RateControlledQueueConsumerProps). */
export interface ScheduleTriggerInputs {
  readonly requestsPerSecond: number;
  readonly batchSize?: number;
  readonly maxConcurrency?: number;
  readonly maxBatchingWindow?: Duration;
  readonly reservedConcurrentExecutions?: number;
  readonly provisionedConcurrentExecutions?: number;
}

/** Validates the schedule trigger against the contract and derives the tick's figures. */
export function planScheduleTrigger(scope: Construct, props: ScheduleTriggerInputs, every: Duration): ScheduleTriggerPlan {
  if (every.isUnresolved()) {
    throw new Error('the schedule trigger period (every) must be known at synth time (given a token)');
  }
  validateDuration('schedule trigger period (every)', every, Duration.minutes(1), Duration.days(1),
    'EventBridge Scheduler runs rate schedules at most once a minute');
  const periodSeconds = every.toSeconds();
  if (periodSeconds % 60 !== 0) {
    throw new Error(`the schedule trigger period (every) must be whole minutes (given ${every.toHumanString()}): EventBridge Scheduler rate expressions count minutes, hours or days`);
  }
  const eventSourceOnly: Array<[string, unknown]> = [
    ['batchSize', props.batchSize],
    ['maxConcurrency', props.maxConcurrency],
    ['maxBatchingWindow', props.maxBatchingWindow],
    ['provisionedConcurrentExecutions', props.provisionedConcurrentExecutions],
  ];
  const given = eventSourceOnly.filter(([, value]) => value !== undefined).map(([name]) => name);
  if (given.length > 0) {
    throw new Error(`${given.join(', ')} configure the event source mapping and do not apply to the schedule trigger (given with ConsumerTrigger.schedule()): remove them, or use ConsumerTrigger.eventSource()`);
  }
  if (props.reservedConcurrentExecutions !== undefined && props.reservedConcurrentExecutions !== 1) {
    throw new Error(`reservedConcurrentExecutions must be 1 or left out with the schedule trigger (given ${props.reservedConcurrentExecutions}): ticks run one at a time (a drain lease in the pacer table keeps them so without any reservation)`);
  }

  const R = props.requestsPerSecond;
  const maxMessagesPerTick = Math.floor(R * periodSeconds);
  if (maxMessagesPerTick < 1) {
    const needed = Math.ceil(1 / R / 60);
    throw new Error(`a tick of ${every.toHumanString()} at ${R} requests per second may drain floor(${R} x ${periodSeconds} s) = 0 messages: make the period (every) at least ${needed} minute(s)`);
  }
  const timeoutSeconds = Math.min(MAX_FUNCTION_TIMEOUT_SECONDS, periodSeconds - TICK_TIMEOUT_MARGIN_SECONDS);

  if (R >= 1) {
    Annotations.of(scope).addWarningV2('cdk-async-external-api:scheduleTriggerAboveOneRps',
      `the schedule trigger is meant for contracts below about 1 request per second (given ${R}): a request waits up to one period (${every.toHumanString()}) for its tick, which the event source mapping avoids at no extra cost for SQS polling. Keep it only if that latency is acceptable`);
  }
  if (periodSeconds - TICK_TIMEOUT_MARGIN_SECONDS > MAX_FUNCTION_TIMEOUT_SECONDS) {
    Annotations.of(scope).addWarningV2('cdk-async-external-api:scheduleTriggerLongPeriod',
      `a tick drains for at most ${MAX_FUNCTION_TIMEOUT_SECONDS} s (Lambda's limit) of each ${every.toHumanString()} period: under a backlog at most about ${Math.round((MAX_FUNCTION_TIMEOUT_SECONDS / periodSeconds) * 100)}% of the contract is used. A period of 15 minutes or less avoids that`);
  }
  return { every, timeoutSeconds, maxMessagesPerTick };
}

/** Resources of the schedule trigger. */
export interface ScheduleTriggerResources {
  readonly schedule: scheduler.Schedule;
  readonly role: iam.Role;
}

/**
 * Creates the schedule invoking `target` every period, with its role, and gives the dispatcher
 * what draining needs: the queue's consume permissions and environment.
 */
export function addScheduleTrigger(
  scope: Construct, fn: lambda.Function, target: lambda.IFunction, queue: sqs.IQueue, plan: ScheduleTriggerPlan,
): ScheduleTriggerResources {
  const role = new iam.Role(scope, 'ScheduleRole', {
    description: 'Lets EventBridge Scheduler invoke the dispatcher on every tick',
    assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
      // Confused-deputy guard: only schedules of this account may use the role.
      conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(scope).account } },
    }),
  });
  // Scheduler does not retry past the period: the next tick does the same work.
  const maxEventAge = Duration.seconds(Math.min(plan.every.toSeconds(), 86_400));
  const schedule = new scheduler.Schedule(scope, 'Schedule', {
    description: `Drains the request queue every ${plan.every.toHumanString()} (at most ${plan.maxMessagesPerTick} messages per tick)`,
    schedule: scheduler.ScheduleExpression.rate(plan.every),
    // Ticks at the stated times, not spread over a window: the budget assumes one tick per period.
    timeWindow: scheduler.TimeWindow.off(),
    target: new targets.LambdaInvoke(target, {
      role,
      input: scheduler.ScheduleTargetInput.fromObject({
        kind: SCHEDULED_TICK_KIND,
        scheduledTime: scheduler.ContextAttribute.scheduledTime,
        executionId: scheduler.ContextAttribute.executionId,
      }),
      // Retries of the Invoke call only (Scheduler invokes asynchronously). No dead-letter queue:
      // a tick carries no data, so a dropped one loses nothing; the next tick drains the same queue.
      retryAttempts: SCHEDULER_RETRY_ATTEMPTS,
      maxEventAge,
    }),
  });
  addRolePolicyNagSuppressions(role, [{
    id: 'AwsSolutions-IAM5',
    reason: 'lambda:InvokeFunction on the dispatcher and its versions/aliases (<Arn>:*, as Lambda grantInvoke writes it): one function, and the role is assumable only by EventBridge Scheduler of this account',
    appliesTo: [{ regex: '/^Resource::<.*\\.Arn>:\\*$/' }],
  }]);
  // Asynchronous invocations: a failed tick is not retried by Lambda (the next tick is the retry).
  // A tick that finds the previous one still draining ends at once (the drain lease); with the
  // optional reserved concurrency 1 it is throttled instead and waits in Lambda's queue at most
  // one period, so ticks never pile up.
  target.configureAsyncInvoke({
    retryAttempts: 0,
    maxEventAge: Duration.seconds(Math.min(Math.max(60, plan.every.toSeconds()), 21_600)),
  });

  // ReceiveMessage, DeleteMessage, ChangeMessageVisibility (dispatch postpones), GetQueueAttributes,
  // and kms:Decrypt with a customer-managed key.
  queue.grantConsumeMessages(fn);
  fn.addEnvironment(ScheduleEnv.REQUEST_QUEUE_URL, queue.queueUrl);
  fn.addEnvironment(ScheduleEnv.REQUEST_QUEUE_ARN, queue.queueArn);
  fn.addEnvironment(ScheduleEnv.MAX_MESSAGES_PER_TICK, String(plan.maxMessagesPerTick));
  return { schedule, role };
}
