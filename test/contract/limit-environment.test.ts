/**
 * The orchestrator gives the contract's named limits to both functions that reserve pacing slots
 * (the dispatcher and the vendor caller), and nothing when there is none (templates unchanged).
 */
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { VendorContract } from '../../src/contract/vendor-contract';
import { VendorLimit } from '../../src/contract/vendor-limit';
import { AsyncExternalApiOrchestrator } from '../../src/orchestrator/async-external-api-orchestrator';
import { testStack } from '../util';

function functionsWithLimits(contract: VendorContract): string[] {
  const stack = testStack();
  new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/jobs', contract, batchSize: 20, maxConcurrency: 2, callbackTimeout: Duration.minutes(30),
  });
  const functions = Template.fromStack(stack).findResources('AWS::Lambda::Function');
  return Object.values(functions)
    .map((fn: any) => fn.Properties.Environment?.Variables?.VENDOR_LIMITS)
    .filter((value): value is string => value !== undefined);
}

test('GIVEN a contract with a named limit WHEN synthesized THEN the dispatcher and the vendor caller both read it (VENDOR_LIMITS)', () => {
  const values = functionsWithLimits(VendorContract.of({
    requestsPerSecond: 10, limits: [VendorLimit.of({ name: 'results', requestsPerSecond: 2, pathPrefix: '/results', methods: ['GET'] })],
  }));
  expect(values).toEqual([
    '[{"name":"results","requestsPerSecond":2,"pathPrefix":"/results","methods":["GET"]}]',
    '[{"name":"results","requestsPerSecond":2,"pathPrefix":"/results","methods":["GET"]}]',
  ]);
});

test('GIVEN a contract without named limits WHEN synthesized THEN no function gets VENDOR_LIMITS', () => {
  expect(functionsWithLimits(VendorContract.of({ requestsPerSecond: 10 }))).toEqual([]);
});
