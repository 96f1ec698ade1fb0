/**
 * The local audit helpers: the proxy -> vendor hop spread read from the two records (no request
 * matching), and the bracket it gives around the vendor's busiest window.
 */
import { forwardedArrivals, sortedPairSpreadMs } from '../../local/access-log-audit';
import { maxInAnyWindow } from '../../local/vendor-simulator';
import { auditAccessLog, parseAccessLogExport } from '../../src/throttled-proxy/access-log-audit-report';

const line = (ms: number, errorResponseType = '-') => JSON.stringify({ requestTimeEpoch: String(ms), errorResponseType });

test('GIVEN two records of one set of requests WHEN the hop delays them unequally THEN the sorted-pair spread still brackets the vendor\'s busiest window', () => {
  // The proxy saw four requests 340 ms apart (at most 3 in any second); the hop delayed the first
  // by 120 ms and the last by 0, so at the vendor all four fall within 1000 ms.
  const proxy = [0, 340, 680, 1020];
  const vendor = [120 + 0, 60 + 340, 5 + 680, 0 + 1020];
  const lines = [...proxy.map((ms) => line(ms)), line(500, 'THROTTLED')];
  const spread = sortedPairSpreadMs(forwardedArrivals(lines), vendor)!;
  expect(spread).toBe(120);
  const records = parseAccessLogExport(lines.join('\n'));
  expect(auditAccessLog(records, 1000).busiest.count).toBe(3);
  expect(maxInAnyWindow(vendor)).toBe(4);
  expect(auditAccessLog(records, 1000 - spread).busiest.count).toBeLessThanOrEqual(4);
  expect(auditAccessLog(records, 1000 + spread).busiest.count).toBeGreaterThanOrEqual(4);
});

test('GIVEN records of different sizes WHEN the spread is asked THEN there is none', () => {
  expect(sortedPairSpreadMs([1, 2], [1])).toBeUndefined();
  expect(sortedPairSpreadMs([], [])).toBeUndefined();
});
