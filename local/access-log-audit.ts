/**
 * The access log audit (README, "Audit") on the local runtime: the same pure audit an operator runs
 * on exported CloudWatch Logs lines (`cdk-async-external-api-audit`), here on the lines the local
 * API Gateway wrote for the proxy, so a demo can set the audit's figure beside the vendor
 * simulator's own count.
 */
import { LocalRuntime } from './runtime';
import { AccessLogAuditReport, auditAccessLog, contractWindow, parseAccessLogExport } from '../src/throttled-proxy/access-log-audit-report';

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
