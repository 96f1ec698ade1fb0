/**
 * The access log audit (README, "Audit") on the local runtime: the same pure audit an operator runs
 * on exported CloudWatch Logs lines (`cdk-async-external-api-audit`), here on the lines the local
 * API Gateway wrote for the proxy, so a demo can set the audit's figure beside the vendor
 * simulator's own count.
 */
import { LocalRuntime } from './runtime';
import {
  AccessLogAuditReport, auditAccessLog, contractWindow, parseAccessLogExport, reachedVendor,
} from '../src/throttled-proxy/access-log-audit-report';

/** The access log lines of the proxy (every REST API with an HTTP_PROXY integration), in order written. */
export async function proxyAccessLog(runtime: LocalRuntime): Promise<string[]> {
  const proxyApiIds = new Set(runtime.template.ofType('AWS::ApiGateway::Method')
    .filter((m) => m.properties.Integration?.Type === 'HTTP_PROXY')
    .map((m) => m.properties.RestApiId as string));
  const lines: string[] = [];
  for (const apiId of proxyApiIds) {
    lines.push(...await runtime.apiGateway.accessLog(apiId));
  }
  return lines;
}

/** Audits the proxy's access log against a contract of `requestsPerSecond` (closed windows, API Gateway's clock). */
export async function auditProxyAccessLog(runtime: LocalRuntime, requestsPerSecond: number): Promise<AccessLogAuditReport> {
  const { windowMs, limit } = contractWindow(requestsPerSecond);
  return auditAccessLog(parseAccessLogExport((await proxyAccessLog(runtime)).join('\n')), windowMs, limit);
}

/**
 * How much the proxy -> vendor hop spread, read from the two records without matching requests:
 * pair the i-th forwarded request by `requestTimeEpoch` with the i-th arrival at the vendor (both
 * sorted) and take max - min of (vendor - proxy). For any window at the vendor holding requests
 * i..j, the same ranks at the proxy span at most the window plus this spread (and at least the
 * window minus it), so the audit with `--spread-ms` of this value bounds the vendor's busiest window
 * from above, and with the window shortened by it from below, whatever the real pairing. Undefined
 * when the two records do not hold the same number of requests.
 */
export function sortedPairSpreadMs(proxyMs: readonly number[], vendorMs: readonly number[]): number | undefined {
  if (proxyMs.length !== vendorMs.length || proxyMs.length === 0) {
    return undefined;
  }
  const p = [...proxyMs].sort((a, b) => a - b);
  const v = [...vendorMs].sort((a, b) => a - b);
  const d = p.map((x, i) => v[i] - x);
  return Math.max(...d) - Math.min(...d);
}

/** The proxy's forwarded requests, `requestTimeEpoch` (ms), from its access log lines. */
export function forwardedArrivals(lines: readonly string[]): number[] {
  return parseAccessLogExport(lines.join('\n')).filter(reachedVendor).map((r) => r.requestTimeEpoch);
}
