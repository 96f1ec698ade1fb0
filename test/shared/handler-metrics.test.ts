import { Logger } from '@aws-lambda-powertools/logger';
import { createHandlerMetrics, KEY_TOTALS_PROPERTY, REQUEST_KEY_PROPERTY } from '../../src/shared/handler-metrics';
import { captureEmf } from '../emf';

function metricsUnderTest() {
  process.env.POWERTOOLS_METRICS_NAMESPACE = 'KeysTest';
  return createHandlerMetrics(new Logger({ logLevel: 'SILENT' }));
}

describe('handler metrics: the request key as an EMF property (issue 15)', () => {
  afterEach(() => {
    delete process.env.POWERTOOLS_METRICS_NAMESPACE;
  });

  test('GIVEN requests of two keys and one without WHEN published THEN one document per key, the key a property with its totals, never a dimension', async () => {
    const metrics = metricsUnderTest();
    const emf = await captureEmf(async () => {
      metrics.addMetric('DispatchedRequests', 'Count', 1, 'acme');
      metrics.addMetric('PacingWait', 'Milliseconds', 200, 'acme');
      metrics.addMetric('DispatchedRequests', 'Count', 1, 'globex');
      metrics.addMetric('PacingWait', 'Milliseconds', 50, 'globex');
      metrics.addMetric('DispatchedRequests', 'Count', 1, 'acme');
      metrics.addMetric('PacingWait', 'Milliseconds', 300, 'acme');
      metrics.addMetric('DispatchedRequests', 'Count', 1);
      metrics.publish();
    });

    expect(emf).toHaveLength(3);
    const [plain, acme, globex] = emf;
    expect(plain[REQUEST_KEY_PROPERTY]).toBeUndefined();
    expect(plain[KEY_TOTALS_PROPERTY]).toBeUndefined();
    expect(plain.DispatchedRequests).toBe(1);
    expect(acme[REQUEST_KEY_PROPERTY]).toBe('acme');
    // The values stay per request (statistics unchanged); the totals are what the rules sum.
    expect(acme.DispatchedRequests).toEqual([1, 1]);
    expect(acme.PacingWait).toEqual([200, 300]);
    expect(acme[KEY_TOTALS_PROPERTY]).toEqual({ DispatchedRequests: 2, PacingWait: 500 });
    expect(globex[REQUEST_KEY_PROPERTY]).toBe('globex');
    expect(globex[KEY_TOTALS_PROPERTY]).toEqual({ DispatchedRequests: 1, PacingWait: 50 });
    for (const doc of emf) {
      // The same metric as without keys: namespace KeysTest, dimensions exactly [Scope].
      expect(doc._aws.CloudWatchMetrics[0].Namespace).toBe('KeysTest');
      expect(doc._aws.CloudWatchMetrics[0].Dimensions).toEqual([['Scope']]);
    }
  });

  test('GIVEN keyed values WHEN published twice THEN the second publish writes nothing (the key buffer is cleared)', async () => {
    const metrics = metricsUnderTest();
    const first = await captureEmf(async () => {
      metrics.addMetric('VendorPauses', 'Count', 1, 'acme');
      metrics.publish();
    });
    expect(first).toHaveLength(1);
    expect(first[0][KEY_TOTALS_PROPERTY]).toEqual({ VendorPauses: 1 });
    const second = await captureEmf(async () => metrics.publish());
    expect(second).toEqual([]);
  });

  test('GIVEN a key document WHEN the next one has no key THEN it carries no requestKey (metadata is per document)', async () => {
    const metrics = metricsUnderTest();
    const emf = await captureEmf(async () => {
      metrics.addMetric('CallbacksResolved', 'Count', 1, 'acme');
      metrics.publish();
      metrics.addMetric('CallbacksResolved', 'Count', 1);
      metrics.publish();
    });
    expect(emf.map((d) => d[REQUEST_KEY_PROPERTY])).toEqual(['acme', undefined]);
  });
});
