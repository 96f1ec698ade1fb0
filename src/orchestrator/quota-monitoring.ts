import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct } from 'constructs';
import { VendorContract } from '../contract/vendor-contract';
import { VendorQuota } from '../contract/vendor-quota';
import { customMetric } from '../shared/custom-metrics';
import { quotaUsedMetricName, quotaUsedPercentMetricName } from '../shared/metrics';

/**
 * The alarm's period: requests waiting for a spent quota check it again at least every 15 minutes
 * (SQS' longest delay) and publish 100 % each time, so the alarm stays on while the quota is spent.
 */
const QUOTA_ALARM_PERIOD = Duration.minutes(15);

/** The contract's quota of that name; throws naming the quotas there are. */
export function quotaNamed(contract: VendorContract, quotaName: string): VendorQuota {
  const quota = contract.quotas.find((q) => q.name === quotaName);
  if (!quota) {
    const names = contract.quotas.map((q) => `'${q.name}'`).join(', ');
    throw new Error(`the contract has no quota named '${quotaName}' (${names ? `its quotas: ${names}` : 'it has no quota'})`);
  }
  return quota;
}

/** Units spent in the quota's current period (custom metric `QuotaUsed.<name>`), maximum over 5 minutes. */
export function quotaUsedMetric(
  metricsScope: string, contract: VendorContract, quotaName: string, props?: cloudwatch.MetricOptions,
): cloudwatch.Metric {
  const quota = quotaNamed(contract, quotaName);
  return customMetric(metricsScope, quotaUsedMetricName(quota.name), 'Maximum', props);
}

/** The same as a percentage of the limit (`QuotaUsedPercent.<name>`), maximum over 5 minutes. */
export function quotaUsedPercentMetric(
  metricsScope: string, contract: VendorContract, quotaName: string, props?: cloudwatch.MetricOptions,
): cloudwatch.Metric {
  const quota = quotaNamed(contract, quotaName);
  return customMetric(metricsScope, quotaUsedPercentMetricName(quota.name), 'Maximum', props);
}

/** One alarm per quota: `alarmAt` of its limit spent in the current period. */
export function createQuotaAlarms(scope: Construct, contract: VendorContract, metricsScope: string, runbook: string): cloudwatch.Alarm[] {
  return contract.quotas.map((quota) => new cloudwatch.Alarm(scope, `QuotaAlarm-${quota.name}`, {
    alarmDescription: `${Math.round(quota.alarmAt * 100)} % or more of the vendor quota '${quota.name}' (${quota.limit} calls per ${quota.period}) is spent. `
      + 'When it is all spent, requests wait for the next period (QuotaExhaustedAction.WAIT) or fail with VendorQuotaExhausted (FAIL). '
      + `Slow the callers, or raise the quota with the vendor and in the contract. ${runbook}`,
    metric: quotaUsedPercentMetric(metricsScope, contract, quota.name, { period: QUOTA_ALARM_PERIOD }),
    threshold: quota.alarmAt * 100,
    evaluationPeriods: 1,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
  }));
}

/** The dashboard's quota graph: each quota's share of its limit spent; undefined without quotas. */
export function quotaWidget(contract: VendorContract, metricsScope: string, width: number, height: number): cloudwatch.GraphWidget | undefined {
  if (contract.quotas.length === 0) {
    return undefined;
  }
  const period = Duration.minutes(1);
  return new cloudwatch.GraphWidget({
    title: 'Vendor quotas: share of each period\'s limit spent',
    left: contract.quotas.map((quota) => quotaUsedPercentMetric(metricsScope, contract, quota.name, {
      period, label: `${quota.name}: % of ${quota.limit} per ${quota.period}`,
    })),
    leftAnnotations: contract.quotas.map((quota) => ({ value: quota.alarmAt * 100, label: `alarm: ${quota.name} at ${Math.round(quota.alarmAt * 100)} %` })),
    leftYAxis: { min: 0, max: 100, label: '% of the limit', showUnits: false },
    width,
    height,
  });
}
