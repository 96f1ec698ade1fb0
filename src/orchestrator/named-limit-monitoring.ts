import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { VendorContract } from '../contract/vendor-contract';
import { VendorLimit } from '../contract/vendor-limit';
import { customMetric } from '../shared/custom-metrics';
import { namedLimitWaitsMetricName } from '../shared/metrics';

/** The contract's named limit of that name; throws naming the limits there are. */
export function namedLimitNamed(contract: VendorContract, limitName: string): VendorLimit {
  const limit = contract.limits.find((l) => l.name === limitName);
  if (!limit) {
    const names = contract.limits.map((l) => `'${l.name}'`).join(', ');
    throw new Error(`the contract has no named limit '${limitName}' (${names ? `its limits: ${names}` : 'it has no named limit'})`);
  }
  return limit;
}

/** Calls held back for the named limit (custom metric `NamedLimitWaits.<name>`), sum over 5 minutes. */
export function namedLimitWaitsMetric(
  metricsScope: string, contract: VendorContract, limitName: string, props?: cloudwatch.MetricOptions,
): cloudwatch.Metric {
  const limit = namedLimitNamed(contract, limitName);
  return customMetric(metricsScope, namedLimitWaitsMetricName(limit.name), 'Sum', props);
}

/**
 * The dashboard's named-limit graph: per limit, the calls it held back each minute; undefined
 * without named limits. No alarm line: waiting for a limit is the limit working (README).
 */
export function namedLimitWidget(contract: VendorContract, metricsScope: string, width: number, height: number): cloudwatch.GraphWidget | undefined {
  if (contract.limits.length === 0) {
    return undefined;
  }
  const period = Duration.minutes(1);
  return new cloudwatch.GraphWidget({
    title: 'Named limits: calls held back for each limit',
    left: contract.limits.map((limit) => namedLimitWaitsMetric(metricsScope, contract, limit.name, {
      period, label: `${limit.name} (${limit.requestsPerSecond} rps)`,
    })),
    leftYAxis: { min: 0, label: 'calls held back', showUnits: false },
    width,
    height,
  });
}
