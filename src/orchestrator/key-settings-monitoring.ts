import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct } from 'constructs';
import { customMetric } from '../shared/custom-metrics';
import { MetricNames } from '../shared/metrics';

/**
 * The key settings source's own failures (issue 15; shared/key-settings.ts): the dispatcher counts
 * `KeySettingsReadFailed` when it could not read the key settings table (the keys keep the limits
 * last read, or the defaults) and `KeySettingsInvalid` per field of a key's item that cannot be a
 * limit (the field keeps its default). Neither breaks a limit in force: the contract's limits hold
 * whatever a key's are. But while reads fail, an operator's pause or lower limit does not take
 * effect, and an invalid field silently leaves a key at its default: both need a person.
 */

/** The alarms' period: a dispatcher reads each active key at most every 30 s (its cache). */
const PERIOD = Duration.minutes(5);

/** Reads of the key settings table that failed (custom metric `KeySettingsReadFailed`), sum over 5 minutes. */
export function keySettingsReadFailedMetric(metricsScope: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
  return customMetric(metricsScope, MetricNames.KEY_SETTINGS_READ_FAILED, 'Sum', props);
}

/** Fields of keys' settings items that could not be a limit (custom metric `KeySettingsInvalid`), sum over 5 minutes. */
export function keySettingsInvalidMetric(metricsScope: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
  return customMetric(metricsScope, MetricNames.KEY_SETTINGS_INVALID, 'Sum', props);
}

/** The two alarms of the key settings source. */
export interface KeySettingsAlarms {
  readonly readFailed: cloudwatch.Alarm;
  readonly invalid: cloudwatch.Alarm;
}

/**
 * The alarms of the key settings source, in `scope` (the orchestrator, so their logical ids are
 * `KeySettingsReadFailedAlarm` and `KeySettingsInvalidAlarm` under it).
 */
export function createKeySettingsAlarms(scope: Construct, metricsScope: string, runbook: string): KeySettingsAlarms {
  return {
    // Two periods in a row: one throttled read is retried by the next batch; a role without
    // dynamodb:BatchGetItem, a deleted table or a disabled KMS key fails every read.
    readFailed: new cloudwatch.Alarm(scope, 'KeySettingsReadFailedAlarm', {
      alarmDescription: 'The dispatchers could not read the key settings table for 10 minutes: each key keeps the limits last read, or the defaults, '
        + 'so a pause or a lower limit written since does not take effect (the contract\'s limits still hold). Read the dispatcher\'s '
        + `"could not read the key settings table" warnings (the error: throttling, permissions, the table or its key). ${runbook}`,
      metric: keySettingsReadFailedMetric(metricsScope, { period: PERIOD }),
      threshold: 0,
      evaluationPeriods: 2,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
    // At once: an invalid item is counted at every read of its key (every 30 s per dispatcher while
    // the key is active), so the alarm stays on until the item is fixed.
    invalid: new cloudwatch.Alarm(scope, 'KeySettingsInvalidAlarm', {
      alarmDescription: 'A key\'s item in the key settings table has a field that cannot be a limit (not a positive number, a quota the contract does not have, '
        + 'paused not a boolean): the key uses that field\'s default. Find the key (dispatcher logs: filter ispresent(keyTotals.KeySettingsInvalid), '
        + `field requestKey) and fix its item, e.g. with npx cdk-async-external-api-keys get/set. ${runbook}`,
      metric: keySettingsInvalidMetric(metricsScope, { period: PERIOD }),
      threshold: 0,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
  };
}

/**
 * The dashboard's graph of the key settings source, for the Keys section: failed reads and invalid
 * fields per minute (either alarm fires on any; the read alarm after 10 minutes).
 */
export function keySettingsWidget(metricsScope: string, width: number, height: number): cloudwatch.GraphWidget {
  const period = Duration.minutes(1);
  return new cloudwatch.GraphWidget({
    title: 'Key settings: failed reads and invalid fields',
    left: [
      keySettingsReadFailedMetric(metricsScope, { period, label: 'failed reads of the key settings table (KeySettingsReadFailed)' }),
      keySettingsInvalidMetric(metricsScope, { period, label: 'invalid fields in keys\' items (KeySettingsInvalid)' }),
    ],
    leftYAxis: { min: 0, label: 'count', showUnits: false },
    width,
    height,
  });
}
