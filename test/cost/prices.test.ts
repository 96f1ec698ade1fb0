import { SECONDS_PER_MONTH } from '../../cost/assumptions';
import { DesignUsage, priceDesign, requestsPerMonth, SERVICE_KEYS } from '../../cost/model';
import { knownRegions, PRICES, pricesFor, UnknownRegionError } from '../../cost/prices';

describe('price table', () => {
  test('us-east-1 and eu-west-1 are known, with a pricing page on every line', () => {
    expect(knownRegions()).toEqual(expect.arrayContaining(['us-east-1', 'eu-west-1']));
    const keys = Object.keys(PRICES['us-east-1'].prices).sort();
    for (const region of knownRegions()) {
      const table = pricesFor(region);
      expect(Object.keys(table.prices).sort()).toEqual(keys);
      for (const price of Object.values(table.prices)) {
        expect(price.source).toMatch(/^https:\/\/aws\.amazon\.com\/[a-z-]+\/pricing\//);
        expect(price.usd).toBeGreaterThan(0);
      }
    }
  });

  test('the list prices the model is built on', () => {
    const p = pricesFor('us-east-1').prices;
    expect(p.sfnStandardTransition.usd * 1000).toBeCloseTo(0.025, 10);
    expect(p.sfnExpressRequest.usd * 1e6).toBeCloseTo(1.0, 10);
    expect(p.sfnExpressGbSecond.usd).toBeCloseTo(0.00001667, 8);
    expect(p.lambdaRequest.usd * 1e6).toBeCloseTo(0.2, 10);
    expect(p.lambdaGbSecondX86.usd).toBeCloseTo(0.0000166667, 10);
    expect(p.sqsRequest.usd * 1e6).toBeCloseTo(0.4, 10);
    expect(p.apiGatewayRestRequest.usd * 1e6).toBeCloseTo(3.5, 10);
    expect(p.dynamodbWriteRequestUnit.usd * 1e6).toBeCloseTo(0.625, 10);
    expect(p.dynamodbReadRequestUnit.usd * 1e6).toBeCloseTo(0.125, 10);
    expect(p.logsIngestedGb.usd).toBeCloseTo(0.5, 10);
  });

  test('an unknown region is an error that lists the known ones', () => {
    expect(() => pricesFor('mars-north-1')).toThrow(UnknownRegionError);
    expect(() => pricesFor('mars-north-1')).toThrow(`No prices for region 'mars-north-1'. Known regions: ${knownRegions().join(', ')}`);
  });
});

describe('priceDesign', () => {
  const usage: DesignUsage = {
    name: 'test',
    description: 'two transitions, one Express execution of 500 ms at 64 MB, two REST calls, half a read unit',
    lines: [
      { service: 'stepFunctionsStandard', what: 't', perRequest: 2, price: 'sfnStandardTransition', derivation: '' },
      { service: 'stepFunctionsExpress', what: 'r', perRequest: 1, price: 'sfnExpressRequest', derivation: '' },
      { service: 'stepFunctionsExpress', what: 'd', perRequest: 0.5 * (64 / 1024), price: 'sfnExpressGbSecond', derivation: '' },
      { service: 'apiGateway', what: 'a', perRequest: 2, price: 'apiGatewayRestRequest', derivation: '' },
      { service: 'dynamodb', what: 'q', perRequest: 0.5, price: 'dynamodbReadRequestUnit', derivation: '' },
    ],
    monthly: [{ what: 'alarms', quantity: 3, price: 'cloudwatchAlarmMonth', derivation: '' }],
  };

  test('per million requests, by service and in total', () => {
    const cost = priceDesign(usage, pricesFor('us-east-1'), 10);
    expect(cost.byService.stepFunctionsStandard).toBeCloseTo(50, 6);
    expect(cost.byService.stepFunctionsExpress).toBeCloseTo(1 + 0.03125 * 16.6667, 3);
    expect(cost.byService.apiGateway).toBeCloseTo(7, 6);
    expect(cost.byService.dynamodb).toBeCloseTo(0.0625, 6);
    expect(Object.keys(cost.byService)).toEqual(SERVICE_KEYS);
    expect(cost.byService.kms).toBe(0);
    expect(cost.perMillionRequestsUsd).toBeCloseTo(50 + 1.5208 + 7 + 0.0625, 3);
    expect(cost.monthlyFixedUsd).toBeCloseTo(0.3, 6);
  });

  test('the rate only changes the monthly total: rps x 2,592,000 requests', () => {
    expect(requestsPerMonth(10)).toBe(25_920_000);
    expect(SECONDS_PER_MONTH).toBe(2_592_000);
    const at10 = priceDesign(usage, pricesFor('us-east-1'), 10);
    const at1 = priceDesign(usage, pricesFor('us-east-1'), 1);
    expect(at1.perMillionRequestsUsd).toBeCloseTo(at10.perMillionRequestsUsd, 10);
    expect(at10.usagePerMonthUsd).toBeCloseTo(at10.perMillionRequestsUsd * 25.92, 6);
    expect(at10.usagePerMonthUsd).toBeCloseTo(10 * at1.usagePerMonthUsd, 6);
  });

  test('eu-west-1 prices differ where the lists differ', () => {
    const us = priceDesign(usage, pricesFor('us-east-1'), 10);
    const eu = priceDesign(usage, pricesFor('eu-west-1'), 10);
    expect(eu.byService.stepFunctionsStandard).toBeCloseTo(us.byService.stepFunctionsStandard, 10);
    expect(eu.byService.dynamodb).toBeGreaterThan(us.byService.dynamodb);
  });
});
