import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AsyncExternalApiOrchestrator } from '../../src';
import { limitsForCall, parseNamedLimitFlag, parseNamedLimitSpecs, pathUnderPrefix } from '../../src/contract/named-limit';
import { VendorContract } from '../../src/contract/vendor-contract';
import { VendorLimit } from '../../src/contract/vendor-limit';
import { testStack } from '../util';

describe('VendorLimit', () => {
  test('GIVEN a name, a rate, a path prefix and methods WHEN built THEN its spec carries them (methods upper case)', () => {
    const limit = VendorLimit.of({ name: 'results', requestsPerSecond: 2, pathPrefix: '/results', methods: ['get'] });
    expect(limit._spec()).toEqual({ name: 'results', requestsPerSecond: 2, pathPrefix: '/results', methods: ['GET'] });
    expect(VendorLimit.of({ name: 'all', requestsPerSecond: 3 })._spec()).toEqual({ name: 'all', requestsPerSecond: 3 });
  });

  test.each([
    [{ name: 'bad name', requestsPerSecond: 2 }, /name must be 1 to 64 letters/],
    [{ name: 'r', requestsPerSecond: 0 }, /'r': requestsPerSecond must be above 0 and at most 10000 \(given 0\)/],
    [{ name: 'r', requestsPerSecond: 2, pathPrefix: 'results' }, /'r': pathPrefix: path must start with '\/'/],
    [{ name: 'r', requestsPerSecond: 2, pathPrefix: '/a?b' }, /pathPrefix: path must not hold '\?'/],
    [{ name: 'r', requestsPerSecond: 2, methods: ['FETCH'] }, /methods must be a non-empty list of GET, POST, PUT, PATCH, DELETE \(given \["FETCH"\]\)/],
    [{ name: 'r', requestsPerSecond: 2, methods: [] }, /methods must be a non-empty list/],
  ])('GIVEN %j WHEN built THEN it is refused with what was given and how to fix it', (props, message) => {
    expect(() => VendorLimit.of(props)).toThrow(message);
  });

  test('GIVEN a trailing slash WHEN matching THEN the prefix binds by whole segments', () => {
    const limit = VendorLimit.of({ name: 'results', requestsPerSecond: 2, pathPrefix: '/results/' });
    expect(limit.binds('GET', '/results')).toBe(true);
    expect(limit.binds('get', '/results/42')).toBe(true);
    expect(limit.binds('GET', '/results-archive')).toBe(false);
  });
});

describe('VendorContract limits', () => {
  test('GIVEN a limit above the contract WHEN the contract is built THEN it is refused', () => {
    expect(() => VendorContract.of({ requestsPerSecond: 10, limits: [VendorLimit.of({ name: 'results', requestsPerSecond: 12 })] }))
      .toThrow("limit 'results' allows 12 requests per second, above the contract's 10: a named limit lies inside the contract; lower it or raise requestsPerSecond");
  });

  test('GIVEN two limits of one name WHEN the contract is built THEN it is refused', () => {
    const limit = VendorLimit.of({ name: 'results', requestsPerSecond: 2 });
    expect(() => VendorContract.of({ requestsPerSecond: 10, limits: [limit, limit] })).toThrow("two limits are named 'results'");
  });

  test('GIVEN a limit that schedules as many calls per second as the contract WHEN built THEN it is a warning, not an error', () => {
    const contract = VendorContract.of({ requestsPerSecond: 10, limits: [VendorLimit.of({ name: 'same', requestsPerSecond: 10 })] });
    expect(contract.limits.map((l) => l.name)).toEqual(['same']);
    expect(contract.warnings).toEqual([expect.stringContaining("limit 'same' (10 requests per second) schedules as many calls per second as the contract (10): it never binds")]);
  });

  test('GIVEN limits inside the contract WHEN built THEN the contract keeps them in order, without warnings', () => {
    const contract = VendorContract.of({
      requestsPerSecond: 10,
      limits: [VendorLimit.of({ name: 'results', requestsPerSecond: 2 }), VendorLimit.of({ name: 'status', requestsPerSecond: 5 })],
    });
    expect(contract.limits.map((l) => l.name)).toEqual(['results', 'status']);
    expect(contract.warnings).toEqual([]);
  });
});

describe('named-limit (the handlers\' side)', () => {
  const limits = [
    VendorLimit.of({ name: 'results', requestsPerSecond: 2, pathPrefix: '/results', methods: ['GET'] })._spec(),
    VendorLimit.of({ name: 'submissions', requestsPerSecond: 5, pathPrefix: '/', methods: ['POST'] })._spec(),
    VendorLimit.of({ name: 'reads', requestsPerSecond: 4, methods: ['GET'] })._spec(),
  ];

  test('GIVEN calls WHEN matched THEN each gets every limit that binds it; a submission is POST /', () => {
    expect(limitsForCall(limits, 'GET', '/results/7').map((l) => l.name)).toEqual(['results', 'reads']);
    expect(limitsForCall(limits, undefined, undefined).map((l) => l.name)).toEqual(['submissions']);
    expect(limitsForCall(limits, 'post', '/jobs').map((l) => l.name)).toEqual(['submissions']);
    expect(limitsForCall(limits, 'DELETE', '/jobs/1')).toEqual([]);
    expect(pathUnderPrefix('/anything', '/')).toBe(true);
  });

  test('GIVEN the environment variable WHEN parsed THEN a valid list is read and anything else is refused with the variable name', () => {
    expect(parseNamedLimitSpecs(JSON.stringify(limits), 'VENDOR_LIMITS')).toEqual(limits);
    expect(parseNamedLimitSpecs(undefined, 'VENDOR_LIMITS')).toEqual([]);
    expect(() => parseNamedLimitSpecs('{', 'VENDOR_LIMITS')).toThrow('Environment variable VENDOR_LIMITS must be a JSON array of named limits');
    expect(() => parseNamedLimitSpecs('[{"name":"x","requestsPerSecond":-1}]', 'VENDOR_LIMITS'))
      .toThrow('Environment variable VENDOR_LIMITS must be a JSON array of { name, requestsPerSecond, pathPrefix?, methods? }');
  });
});

describe('NamedLimitWaits: the per-limit metric (issue 14)', () => {
  test('GIVEN named limits THEN metricNamedLimitWaits(name) reads NamedLimitWaits.<name> (Sum, Scope only), the dashboard graphs each limit, and no alarm watches them', () => {
    const stack = testStack();
    const contract = VendorContract.of({
      requestsPerSecond: 10,
      limits: [VendorLimit.of({ name: 'results', requestsPerSecond: 2, methods: ['GET'] }), VendorLimit.of({ name: 'status', requestsPerSecond: 5, pathPrefix: '/status' })],
    });
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'O', { vendorUrl: 'https://vendor.example.com/v1/jobs', callbackTimeout: Duration.minutes(30), contract });

    const metric = orchestrator.metricNamedLimitWaits('results');
    expect(metric).toMatchObject({ namespace: 'CdkAsyncExternalApi', metricName: 'NamedLimitWaits.results', statistic: 'Sum' });
    expect(Object.keys(metric.dimensions ?? {})).toEqual(['Scope']);
    expect(() => orchestrator.metricNamedLimitWaits('reads')).toThrow(/the contract has no named limit 'reads' \(its limits: 'results', 'status'\)/);
    const template = Template.fromStack(stack);
    const body = JSON.stringify(template.findResources('AWS::CloudWatch::Dashboard'));
    expect(body).toMatch(/Named limits: calls held back for each limit/);
    expect(body).toMatch(/NamedLimitWaits.results/);
    expect(body).toMatch(/NamedLimitWaits.status/);
    expect(JSON.stringify(template.findResources('AWS::CloudWatch::Alarm'))).not.toMatch(/NamedLimitWaits/);
  });

  test('GIVEN no named limit THEN the dashboard has no named-limit graph and the metric throws naming that', () => {
    const stack = testStack();
    const orchestrator = new AsyncExternalApiOrchestrator(stack, 'O', {
      vendorUrl: 'https://vendor.example.com/v1/jobs', callbackTimeout: Duration.minutes(30), requestsPerSecond: 10,
    });
    expect(() => orchestrator.metricNamedLimitWaits('results')).toThrow(/no named limit 'results' \(it has no named limit\)/);
    expect(JSON.stringify(Template.fromStack(stack).findResources('AWS::CloudWatch::Dashboard'))).not.toMatch(/Named limits: calls held back/);
  });
});

test('GIVEN NAME:RPS[:METHODS[:PATH_PREFIX]] WHEN parsed (the demo\'s and the audit CLI\'s --limit) THEN the spec, or an error naming the flag and the syntax', () => {
  expect(parseNamedLimitFlag('results:2:get')).toEqual({ name: 'results', requestsPerSecond: 2, methods: ['GET'] });
  expect(parseNamedLimitFlag('status:0.5::/status')).toEqual({ name: 'status', requestsPerSecond: 0.5, pathPrefix: '/status' });
  expect(() => parseNamedLimitFlag('results:0', '--limit')).toThrow("--limit needs NAME:RPS[:METHODS[:PATH_PREFIX]], e.g. results:2:GET (given 'results:0')");
  expect(() => parseNamedLimitFlag(`${'n'.repeat(65)}:2`)).toThrow(/--limit needs NAME:RPS/);
});
