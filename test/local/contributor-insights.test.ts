/**
 * The local Contributor Insights evaluator (CloudWatch is not emulated): rule semantics as the
 * rule syntax page states them, and refusal of what it does not implement.
 */
import { evaluateInsightRule, LogEvent } from '../../local/aws/contributor-insights';

const rule = (contribution: Record<string, unknown>, aggregateOn = 'Count') => ({
  Schema: { Name: 'CloudWatchLogRule', Version: 1 },
  LogGroupNames: ['g'],
  LogFormat: 'JSON',
  Contribution: contribution,
  AggregateOn: aggregateOn,
});
const ev = (timestamp: number, log: Record<string, unknown>): LogEvent => ({ timestamp, message: JSON.stringify(log) });

test('GIVEN events in two minutes WHEN a Count rule keys on two fields THEN each period has its contributors, top value and samples', () => {
  const events = [
    ev(1_000, { ip: 'a', method: 'PUT' }), ev(2_000, { ip: 'a', method: 'PUT' }), ev(3_000, { ip: 'b', method: 'PUT' }),
    ev(61_000, { ip: 'b', method: 'GET' }),
  ];
  expect(evaluateInsightRule(rule({ Keys: ['$.ip', '$.method'] }), events)).toEqual([
    { startMs: 0, uniqueContributors: 2, maxContributorValue: 2, maxContributor: ['a', 'PUT'], sampleCount: 3, sum: 3 },
    { startMs: 60_000, uniqueContributors: 1, maxContributorValue: 1, maxContributor: ['b', 'GET'], sampleCount: 1, sum: 1 },
  ]);
});

test('GIVEN filters WHEN they are ANDed THEN In, NotIn, StartsWith, numeric comparisons and IsPresent select the events', () => {
  const events = [
    ev(0, { k: 'x', s: 'ec2-a', n: 5, extra: 1 }),
    ev(0, { k: 'y', s: 'ecs-b', n: 20 }),
    ev(0, { k: 'z', s: 'lambda', n: 20 }),
  ];
  const top = (filters: unknown[]) => evaluateInsightRule(rule({ Keys: ['$.k'], Filters: filters }), events)[0]?.sampleCount ?? 0;
  expect(top([{ Match: '$.k', In: ['x', 'y'] }])).toBe(2);
  expect(top([{ Match: '$.k', NotIn: ['x'] }, { Match: '$.s', StartsWith: ['ec'] }])).toBe(1);
  expect(top([{ Match: '$.n', GreaterThan: 10 }])).toBe(2);
  expect(top([{ Match: '$.n', LessThan: 10 }])).toBe(1);
  expect(top([{ Match: '$.n', EqualTo: 20 }, { Match: '$.n', NotEqualTo: 5 }])).toBe(2);
  expect(top([{ Match: '$.extra', IsPresent: true }])).toBe(1);
  expect(top([{ Match: '$.extra', IsPresent: false }])).toBe(2);
});

test('GIVEN a Sum rule WHEN contributors add values THEN the top contributor is the largest sum', () => {
  const events = [ev(0, { ip: 'a', bytes: 10 }), ev(0, { ip: 'b', bytes: 25 }), ev(0, { ip: 'a', bytes: 10 })];
  expect(evaluateInsightRule(rule({ Keys: ['$.ip'], ValueOf: '$.bytes' }, 'Sum'), events)[0])
    .toMatchObject({ maxContributorValue: 25, maxContributor: ['b'], sum: 45 });
});

test('GIVEN a rule it does not implement or that AWS refuses THEN it throws with the reason', () => {
  expect(() => evaluateInsightRule({ ...rule({ Keys: ['$.k'] }), LogFormat: 'CLF' }, [])).toThrow('only LogFormat JSON');
  expect(() => evaluateInsightRule(rule({ Keys: [] }), [])).toThrow('Contribution.Keys must hold 1 to 4 fields');
  expect(() => evaluateInsightRule(rule({ Keys: ['$.k'], Filters: [{ Match: '$.k', In: Array(11).fill('v') }] }), [])).toThrow('In takes up to 10 strings');
  expect(() => evaluateInsightRule(rule({ Keys: ['$.k'], Filters: [{ Match: '$.k', Like: 'v' }] }), [])).toThrow('a filter needs Match and one of');
  expect(() => evaluateInsightRule(rule({ Keys: ['$.k'] }, 'Sum'), [])).toThrow('ValueOf is given with AggregateOn Sum, and only then');
});
