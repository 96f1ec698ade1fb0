/**
 * The proxy's arrival audit (issue 13, item 2): a function subscribed to the proxy's access log
 * that publishes `VendorArrivalAfterSlot` per paced request. Per request it costs a share of one
 * invocation per delivered batch of log lines, and a few bytes of EMF in its own log group.
 */
import { functionModel, lambdaLines, lambdaLogBytesPerRequest, logLine } from './derive';
import { MonthlyLine, UsageLine } from './model';
import { LocalTemplate } from '../local/template';

/**
 * How often CloudWatch Logs delivers a batch to a subscribed function while lines keep coming.
 * AWS does not publish it; assumed one batch per second (a batch per log stream and delivery).
 */
export const SUBSCRIPTION_DELIVERY_SECONDS = 1;
/** The audit's time per invocation, warm: gunzip, parse a few lines, write EMF. */
export const ARRIVAL_AUDIT_MS_PER_INVOCATION = 20;
/** One value in the EMF document's `VendorArrivalAfterSlot` array (digits, sign, comma). */
export const EMF_BYTES_PER_VALUE = 8;

/** Usage lines of the arrival audit, if the template has one (PacingPoint.VENDOR_CALL). */
export function arrivalAuditLines(t: LocalTemplate, trafficRps: number): UsageLine[] {
  const resource = t.ofType('AWS::Lambda::Function').find((fn) => fn.properties.Environment?.Variables?.POWERTOOLS_SERVICE_NAME === 'arrival-audit');
  if (!resource) {
    return [];
  }
  const fn = functionModel(resource);
  const fill = Math.max(1, trafficRps * SUBSCRIPTION_DELIVERY_SECONDS);
  return [
    ...lambdaLines('arrival audit', resource.logicalId, fn, fill, ARRIVAL_AUDIT_MS_PER_INVOCATION / fill).map((line) => ({
      ...line,
      derivation: `${line.derivation} (a batch of access log lines delivered about every ${SUBSCRIPTION_DELIVERY_SECONDS} s: assumed, not published)`,
    })),
    logLine('arrival audit logs', lambdaLogBytesPerRequest(fn, fill, 0, true) + EMF_BYTES_PER_VALUE,
      `platform lines and an EMF document per invocation over ${fill} lines, plus ${EMF_BYTES_PER_VALUE} bytes per VendorArrivalAfterSlot value`),
  ];
}

/** The audit's custom metric, billed monthly whatever the request count (if the template has the audit). */
export function arrivalAuditMonthly(t: LocalTemplate): MonthlyLine[] {
  const audited = t.ofType('AWS::Logs::SubscriptionFilter').length > 0;
  return audited
    ? [{
      what: 'arrival audit custom metric (EMF)',
      quantity: 1,
      price: 'cloudwatchMetricMonth',
      derivation: 'VendorArrivalAfterSlot, one Scope dimension (VendorArrivalLinesSkipped only in a month with unreadable lines); the spread alarm is in the alarm count',
    }]
    : [];
}
