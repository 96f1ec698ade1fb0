/**
 * The cost model reads its counts from synthesized stacks: these tests synthesize orchestrators
 * with different settings and check that the counts follow the template.
 */
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { comparisons } from '../../cost/comparisons';
import { DEFAULT_DERIVE_OPTIONS, DeriveOptions, deriveStack, stackFromTemplate } from '../../cost/derive';
import { AslDefinition } from '../../cost/happy-path';
import { jobPlacesItemBytes } from '../../cost/jobs-in-flight';
import { priceDesign } from '../../cost/model';
import { pricesFor } from '../../cost/prices';
import { AsyncExternalApiOrchestrator, AsyncExternalApiOrchestratorProps, PacingPoint, VendorContract, VendorCredentials, VendorQuota } from '../../src';
import { slotIntervalMs } from '../../src/rate-controlled-queue-consumer/pacer';
import { executeDefinition, TaskHandler } from '../asl/execute';
import { testStack } from '../util';

/** The example app's shape (submit, then ProcessResult), with orchestrator settings to vary. */
function synthesize(
  props: (scope: Construct) => Partial<AsyncExternalApiOrchestratorProps> = () => ({}), withFetch: boolean = false, keyPath?: string,
) {
  const key = keyPath ? { key: sfn.JsonPath.stringAt(keyPath) } : {};
  const stack = testStack();
  const vendor = new AsyncExternalApiOrchestrator(stack, 'Vendor', {
    vendorUrl: 'https://vendor.example.com/v1/jobs',
    requestsPerSecond: 10,
    batchSize: 20,
    maxConcurrency: 2,
    callbackTimeout: Duration.minutes(30),
    ...props(stack),
  });
  const submit = vendor.submitJobTask(stack, 'SubmitJob', {
    payload: sfn.TaskInput.fromJsonPathAt('$.order'),
    requestId: sfn.JsonPath.stringAt('$.orderId'),
    resultPath: '$.vendor',
    ...key,
  });
  // The example app also fetches the job's result (callVendorTask) before ProcessResult.
  const fetch = withFetch ? vendor.callVendorTask(stack, 'FetchResult', {
    path: sfn.JsonPath.format('/{}/result', sfn.JsonPath.stringAt('$.vendor.jobId')),
    resultPath: '$.fetched',
    ...key,
  }) : undefined;
  const main = new sfn.StateMachine(stack, 'Main', {
    definitionBody: sfn.DefinitionBody.fromChainable(fetch
      ? submit.next(fetch).next(new sfn.Pass(stack, 'ProcessResult'))
      : submit.next(new sfn.Pass(stack, 'ProcessResult'))),
  });
  vendor.registerWorkflow(main);
  return stackFromTemplate(Template.fromStack(stack).toJSON(), stack.stackName);
}

const options = (trafficRps: number, more: Partial<DeriveOptions> = {}): DeriveOptions => ({ ...DEFAULT_DERIVE_OPTIONS, trafficRps, ...more });
const line = (d: ReturnType<typeof deriveStack>, what: string) => {
  const found = d.usage.lines.find((l) => l.what === what);
  if (!found) throw new Error(`no usage line '${what}' in ${d.usage.lines.map((l) => l.what).join(', ')}`);
  return found;
};

describe('cost derivation from a synthesized stack', () => {
  const example = synthesize();

  test('the arrival audit (PacingPoint.VENDOR_CALL): one invocation per delivered batch of log lines (~1 s of traffic), its EMF bytes, one custom metric a month; none with DISPATCH', () => {
    const d = deriveStack(example, options(10));
    expect(line(d, 'arrival audit invocations').perRequest).toBeCloseTo(1 / 10);
    expect(line(d, 'arrival audit duration').perRequest).toBeCloseTo((2 / 1000) * (128 / 1024));
    expect(line(d, 'arrival audit logs').perRequest).toBeGreaterThan(0);
    expect(d.usage.monthly.map((m) => m.what)).toContain('arrival audit custom metric (EMF)');
    // At 1 rps a delivery carries about one line: one invocation per request.
    expect(line(deriveStack(example, options(1)), 'arrival audit invocations').perRequest).toBeCloseTo(1);
    const dispatch = deriveStack(synthesize(() => ({ pacingPoint: PacingPoint.DISPATCH })), options(10));
    expect(dispatch.usage.lines.filter((l) => /arrival audit/.test(l.what))).toEqual([]);
    expect(dispatch.usage.monthly.map((m) => m.what)).not.toContain('arrival audit custom metric (EMF)');
  });

  test('handler custom metrics a month: the metrics the handlers publish on the happy path of the template (vendor caller, quotas, run-time rate)', () => {
    const metricsLine = (d: ReturnType<typeof deriveStack>) => d.usage.monthly.find((m) => m.what === 'handler custom metrics (EMF)')!;
    // The example: dispatcher 2, vendor caller 2 (VendorCalls, VendorCallLateness), processor 2.
    expect(metricsLine(deriveStack(example, options(10))).quantity).toBe(6);
    expect(metricsLine(deriveStack(example, options(10))).derivation).toMatch(/VendorCallLateness \(vendor caller\)/);
    // DISPATCH: no vendor caller, its two metrics go.
    expect(metricsLine(deriveStack(synthesize(() => ({ pacingPoint: PacingPoint.DISPATCH })), options(10))).quantity).toBe(4);
    // Quotas: the caller's QuotaUnitsSpent too.
    const withQuotas = synthesize(() => ({
      requestsPerSecond: undefined,
      contract: VendorContract.of({ requestsPerSecond: 10, quotas: [VendorQuota.perDay(100_000)] }),
    }));
    expect(metricsLine(deriveStack(withQuotas, options(10))).derivation).toMatch(/QuotaUnitsSpent/);
    expect(metricsLine(deriveStack(withQuotas, options(10))).quantity).toBe(7);
  });

  test('the key rules (issue 15): their own monthly line and at most one matched event per request per rule, apart from the proxy audit\'s; none without keys', () => {
    const keyed = deriveStack(synthesize(() => ({}), false, '$.customerId'), options(4));
    const rules = keyed.usage.monthly.find((m) => m.what === 'Contributor Insights rules (keys)');
    expect(rules?.quantity).toBe(3); // dispatched, pacing wait, callbacks (no 429 rule: the credential is not per key)
    expect(line(keyed, 'Contributor Insights matched log events (key rules, at most)').perRequest).toBe(3);
    const plain = deriveStack(synthesize(), options(4));
    expect(plain.usage.monthly.map((m) => m.what)).not.toContain('Contributor Insights rules (keys)');
    expect(plain.usage.lines.map((l) => l.what)).not.toContain('Contributor Insights matched log events (key rules, at most)');
    // The proxy audit's lines are the same with or without keys.
    const audit = (d: ReturnType<typeof deriveStack>) => d.usage.monthly.find((m) => m.what === 'Contributor Insights rules')?.quantity;
    expect(audit(keyed)).toBe(audit(plain));
  });

  test('per-batch counts follow the batch size in the template', () => {
    // GIVEN the same stack with batches of 20 and of 10, both under a backlog (full batches)
    const big = deriveStack(example, options(10));
    const small = deriveStack(synthesize(() => ({ batchSize: 10 })), options(10));

    // THEN
    expect(big.model.requestFeed.batchSize).toBe(20);
    expect(small.model.requestFeed.batchSize).toBe(10);
    expect(line(big, 'dispatcher invocations').perRequest).toBeCloseTo(1 / 20, 10);
    expect(line(small, 'dispatcher invocations').perRequest).toBeCloseTo(1 / 10, 10);
    expect(big.usage.lines.find((l) => l.what.endsWith('reservation write'))!.perRequest).toBeCloseTo(1 / 20, 10);
    expect(small.usage.lines.find((l) => l.what.endsWith('reservation write'))!.perRequest).toBeCloseTo(1 / 10, 10);
    expect(line(big, 'request queue ReceiveMessage').perRequest).toBeCloseTo(2 / 20, 10);
    expect(line(small, 'request queue ReceiveMessage').perRequest).toBeCloseTo(1 / 10, 10);
    // Per-request work does not depend on the batch.
    expect(line(big, 'request queue SendMessage').perRequest).toBe(1);
    expect(line(small, 'request queue SendMessage').perRequest).toBe(1);
  });

  test('below the pacing capacity the batching window sets the fill; at the contract the queue backs up', () => {
    const atContract = deriveStack(example, options(10));
    const light = deriveStack(example, options(4));

    // Slots (1000 + L + 1) / r apart (1 ms margin at the window's edge): the default L is 30 ms.
    const interval = slotIntervalMs(10, 30);
    expect(atContract.model.slotIntervalMs).toBe(interval);
    expect(atContract.model.backlogged).toBe(true);
    expect(atContract.warnings.join(' ')).toMatch(/9\.7 starts\/s/);
    expect(light.model.backlogged).toBe(false);
    expect(light.model.requestFeed.batchingWindowSeconds).toBe(1);
    expect(light.model.requestFeed.fill).toBe(4);
    expect(light.warnings).toEqual([]);
    // Lambda bills the wait for the batch's last slot: (4 - 1) x I + the calls, over 4 requests.
    expect(light.model.dispatcher.msPerRequest).toBeCloseTo((3 * interval + 90) / 4, 6);
  });

  test('memory sizes, state counts and DynamoDB writes come from the template', () => {
    const d = deriveStack(example, options(4));
    expect(d.model.dispatcher.memoryMb).toBe(256);
    expect(d.model.processor.memoryMb).toBe(256);
    expect(d.model.main.path).toEqual(['SubmitJob', 'ProcessResult']);
    expect(line(d, `${d.model.main.logicalId} state transitions`).perRequest).toBe(2);
    expect(d.model.dispatch.type).toBe('EXPRESS');
    expect(d.model.dispatch.memoryMb).toBe(64);
    expect(d.model.dispatch.billedMs % 100).toBe(0);
    expect(d.model.writes.map((w) => [w.by, w.writeUnits, w.indexWriteUnits])).toEqual([
      ['ClaimRequest', 1, 0], // no job id yet: not in the job id index
      ['StoreJobId', 1, 1], // the job id puts the item into the index
      ['callback processor (mark COMPLETED)', 1, 1], // status is projected into the index
    ]);
    expect(d.model.lookupReadUnits).toBe(0.5);
    // A longer task token pushes the item past 1 KB: every write then costs 2 units.
    const bigToken = deriveStack(example, options(4, { taskTokenBytes: 1000 }));
    expect(bigToken.model.writes.map((w) => w.writeUnits)).toEqual([2, 2, 2]);
  });

  test('the happy path is the states an execution passes on success (run with aws-local-stepfunctions)', async () => {
    // GIVEN the dispatch workflow as synthesized, and every AWS call succeeding
    const d = deriveStack(example, options(10));
    const definition = d.model.dispatch.definition as AslDefinition;
    const handlers: Record<string, TaskHandler> = {};
    for (const [name, state] of Object.entries(definition.States)) {
      if (state.Type !== 'Task') continue;
      // The vendor caller (lambda:invoke) answers { Payload: { statusCode, body, requeue: null } }.
      handlers[name] = async () => {
        if (name === 'CallVendor') return { Payload: { statusCode: 200, body: { jobId: 'job-1' }, headers: {}, requeue: null } };
        if (name === 'ClaimRequest') return { Attributes: { callbackToken: { S: 'cb-1' } } };
        return {};
      };
    }

    // WHEN it runs (test/asl/execute.ts)
    const message = { taskToken: 'token-1', requestId: 'req-1', payload: { sku: 'a' }, attempt: 1, callbackToken: 'cb-1' };
    const execution = await executeDefinition(definition, {
      ...message, expiresAt: 1_900_000_000, deferrals: 0, claimSeq: 1000, slotAtMs: 1_900_000_000_000, requestStartedAtMs: 1_899_999_990_000, message,
    }, handlers, { context: { Execution: { StartTime: '2026-11-27T12:00:00.000Z' } } });
    expect(execution.error).toBeUndefined();
    const entered = execution.states;

    // THEN the model counted exactly those states
    expect(entered).toEqual(d.model.dispatch.path);
    expect(d.model.dispatch.path).toHaveLength(entered.length);
  });

  test('a vendor credential read per request costs a Secrets Manager call and a secret', () => {
    const plain = deriveStack(example, options(10));
    const withSecret = deriveStack(synthesize((scope) => ({
      proxy: { credentials: VendorCredentials.fromSecretHeader({ secret: new secretsmanager.Secret(scope, 'VendorKey'), headerName: 'x-api-key' }) },
    })), options(10));

    expect(line(plain, 'GetSecretValue calls').perRequest).toBe(0);
    expect(line(withSecret, 'GetSecretValue calls').perRequest).toBe(1);
    expect(withSecret.model.dispatch.path.length).toBeGreaterThan(plain.model.dispatch.path.length);
    expect(withSecret.usage.monthly.find((m) => m.what === 'Secrets Manager secrets')?.quantity).toBe(1);
    const prices = pricesFor('us-east-1');
    expect(priceDesign(withSecret.usage, prices, 10).byService.secretsManager).toBeCloseTo(5, 6); // $0.05 per 10,000 calls
  });

  test('a JSON secret read by the proxy\'s credential function costs a Lambda invocation and a Secrets Manager call per request', () => {
    const withJsonSecret = deriveStack(synthesize((scope) => ({
      proxy: { credentials: VendorCredentials.fromSecretHeader({ secret: new secretsmanager.Secret(scope, 'VendorKey'), jsonField: 'apiKey' }) },
    })), options(10));

    expect(line(withJsonSecret, 'GetSecretValue calls').perRequest).toBe(1);
    expect(withJsonSecret.usage.lines.some((l) => l.service === 'lambda' && /ReadVendorCredential/.test(l.what))).toBe(true);
  });

  test('comparisons reuse the main workflow: the published pattern keeps its transitions, the HTTP Task design adds one', () => {
    const d = deriveStack(example, options(10));
    const [published, httpTask] = comparisons(d.model, options(10));
    const transitions = (c: typeof published) => c.usage.lines.find((l) => l.service === 'stepFunctionsStandard')!.perRequest;

    expect(transitions(published)).toBe(2);
    expect(transitions(httpTask)).toBe(3);
    expect(published.usage.lines.some((l) => l.what.includes('pacer'))).toBe(false);
    expect(httpTask.usage.lines.some((l) => l.service === 'stepFunctionsExpress')).toBe(false);
    expect(httpTask.usage.lines.filter((l) => l.service === 'apiGateway').map((l) => l.perRequest)).toEqual([1]);
  });

  test('PacingPoint.VENDOR_CALL (default): the vendor caller is invoked once per request, waits lead - 300 ms, reads the pacer item', () => {
    const d = deriveStack(example, options(4));
    const o = DEFAULT_DERIVE_OPTIONS;
    expect(d.model.dispatch.path).toEqual(expect.arrayContaining(['CallVendor', 'WasVendorCalled', 'IsJobIdPresent', 'StoreJobId']));
    expect(d.model.dispatch.path).not.toContain('DeferToQueue');
    expect(d.model.vendorCaller?.memoryMb).toBe(256);
    expect(d.model.vendorCaller?.leadMs).toBe(1000);
    const callerMs = 1000 - 300 + 50 + o.vendorLatencyMs;
    expect(d.model.vendorCaller?.msPerCall).toBe(callerMs);
    expect(line(d, 'vendor caller invocations (dispatch)').perRequest).toBe(1);
    expect(line(d, 'vendor caller duration (dispatch)').perRequest).toBeCloseTo((callerMs / 1000) * (256 / 1024), 10);
    expect(d.usage.lines.find((l) => l.what.endsWith('GetItem (pause check)'))!.perRequest).toBe(1);
    // Single-use slots (issue 13, item 1): one conditional PutItem per request, 1 WRU.
    const claim = d.usage.lines.find((l) => l.what.endsWith('PutItem (slot claim)'))!;
    expect(claim).toMatchObject({ perRequest: 1, price: 'dynamodbWriteRequestUnit' });
    // The proxy is still the REST API the request goes through; the Express workflow waits for the caller.
    expect(line(d, `${d.model.proxy.logicalId} (proxy) calls`).perRequest).toBe(1);
    expect(d.model.dispatch.durationMs).toBeGreaterThan(callerMs);
    // Capability URLs: the processor reads the callback token, strongly consistent (1 RRU).
    expect(line(d, 'callback processor GetItem (capability token check)').perRequest).toBe(1);
    expect(d.fetch).toBeUndefined();
  });

  test('quotas (issue 14): one conditional UpdateItem per quota per vendor call, submissions and result fetches alike; none without quotas', () => {
    const withQuotas = synthesize(() => ({
      requestsPerSecond: undefined,
      contract: VendorContract.of({ requestsPerSecond: 10, quotas: [VendorQuota.perDay(100_000), VendorQuota.perMonth(2_000_000)] }),
    }), true);
    const d = deriveStack(withQuotas, options(4));
    const quotaLines = d.usage.lines.filter((l) => l.what.endsWith('UpdateItem (quota units)'));
    expect(quotaLines.map((l) => l.perRequest)).toEqual([2]);
    expect(quotaLines[0].price).toBe('dynamodbWriteRequestUnit');
    expect(d.fetch?.usage.lines.filter((l) => l.what.endsWith('UpdateItem (quota units)')).map((l) => l.perRequest)).toEqual([2]);
    // The dispatcher reads each counter once per batch before reserving slots.
    const reads = d.usage.lines.find((l) => l.what.endsWith('GetItem (quota counters)'))!;
    expect(reads).toMatchObject({ price: 'dynamodbReadRequestUnit' });
    expect(reads.perRequest).toBeCloseTo(2 / d.model.requestFeed.fill, 10);
    expect(deriveStack(example, options(4)).usage.lines.some((l) => /quota/.test(l.what))).toBe(false);
  });

  test('jobs in flight (issue 14): per job a take and a free of a place, sized on the whole places item, a consistent read and a heartbeat; none for fetches or without the limit', () => {
    const withLimit = (maxJobsInFlight: number) => deriveStack(synthesize(() => ({
      requestsPerSecond: undefined,
      contract: VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight }),
    }), true), options(4));
    const d = withLimit(100);
    // 100 places of 31 bytes (22-character key, 13-digit expiry, 1 byte of map overhead) + the rest: 3,134 B, 4 WRU per write.
    expect(jobPlacesItemBytes(100)).toBe(3134);
    const take = line(d, `dispatcher ${d.model.pacerTable} UpdateItem (take a job place)`);
    const free = line(d, `callback processor ${d.model.pacerTable} UpdateItem (free the job place)`);
    expect([take.perRequest, free.perRequest]).toEqual([4, 4]);
    expect(take.price).toBe('dynamodbWriteRequestUnit');
    expect(line(d, `dispatcher ${d.model.correlationTable} GetItem (job already submitted?)`)).toMatchObject({ perRequest: 1, price: 'dynamodbReadRequestUnit' });
    // UpdateItem + GetItem + SendTaskHeartbeat (75 ms) at the dispatcher, the UpdateItem (25 ms) at the processor, 256 MB.
    expect(line(d, 'dispatcher duration (job place)').perRequest).toBeCloseTo((75 / 1000) * (256 / 1024), 10);
    expect(line(d, 'callback processor duration (job place)').perRequest).toBeCloseTo((25 / 1000) * (256 / 1024), 10);
    expect(line(d, 'callback processor logs (job place)').perRequest).toBeGreaterThan(0);
    expect(d.usage.monthly.map((m) => m.what)).toContain('jobs in flight custom metric (EMF)');
    // A small limit fits in 1 KB; the largest (5000) costs 152 WRU per write.
    expect(line(withLimit(5), `dispatcher ${d.model.pacerTable} UpdateItem (take a job place)`).perRequest).toBe(1);
    expect(Math.ceil(jobPlacesItemBytes(5000) / 1024)).toBe(152);
    // Result fetches hold no place; the example (no limit) has none of it.
    expect(d.fetch?.usage.lines.some((l) => /job place|already submitted/.test(l.what))).toBe(false);
    const none = deriveStack(example, options(4));
    expect(none.usage.lines.some((l) => /job place|already submitted/.test(l.what))).toBe(false);
    expect(none.usage.monthly.map((m) => m.what)).not.toContain('jobs in flight custom metric (EMF)');
  });

  test('the jobs-in-flight waiting room: per job two empty wake receives, per wait the moves there and back, the minute sweep a month; none without the limit', () => {
    const d = deriveStack(synthesize(() => ({
      requestsPerSecond: undefined,
      contract: VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 100 }),
    }), true), options(4));
    const room = d.model.waitingRoom!;
    expect(room.queue).toMatch(/JobWaitingQueue/);
    expect(room.sweep?.periodSeconds).toBe(60);
    // Per job (nobody waits): the freer's short poll and its repeat, 50 ms of the processor.
    expect(line(d, `callback processor ${room.queue} ReceiveMessage (wake, nobody waits)`)).toMatchObject({ perRequest: 2, price: 'sqsRequest' });
    expect(line(d, 'callback processor duration (wake)').perRequest).toBeCloseTo((50 / 1000) * (256 / 1024), 10);
    expect(d.fetch?.usage.lines.some((l) => /wake/.test(l.what))).toBe(false);
    // Per wait: send there, the wake's receive, send back and delete, and a second pass through the request queue.
    const fill = d.model.requestFeed.fill;
    const waits = d.waits!;
    const sqs = waits.lines.filter((l) => l.service === 'sqs');
    expect(sqs.reduce((sum, l) => sum + l.perRequest, 0)).toBeCloseTo(4 + (2 * Math.ceil(fill / 10)) / fill, 10);
    // The batch's failed take (4 WRU at 100 places) and two consistent reads of the places item (1 RRU each).
    expect(waits.lines.find((l) => /failed take/.test(l.what))!.perRequest).toBeCloseTo(4 / fill, 10);
    expect(waits.lines.find((l) => /GetItem \(places/.test(l.what))!.perRequest).toBeCloseTo(2 / fill, 10);
    const perMillionWaits = priceDesign(waits, pricesFor('us-east-1'), 4).perMillionRequestsUsd;
    // About $2.5 per million waits in full batches (10 rps), more in the small batches of 4 rps.
    expect(perMillionWaits).toBeGreaterThan(2);
    expect(perMillionWaits).toBeLessThan(4);
    // The sweep: 43,200 runs in 30 days, each a Scheduler and a dispatcher invocation (about 1.06 s at 256 MB), a read, two SQS requests.
    const sweep = d.usage.monthly.filter((m) => m.what.startsWith('jobs-in-flight sweep'));
    expect(sweep.find((m) => m.price === 'schedulerInvocation')?.quantity).toBe(43_200);
    expect(sweep.find((m) => m.price === 'lambdaRequest')?.quantity).toBe(43_200);
    expect(sweep.find((m) => m.price === 'lambdaGbSecondX86')?.quantity).toBeCloseTo(43_200 * 1.06 * 0.25, 6);
    expect(sweep.find((m) => m.price === 'sqsRequest')?.quantity).toBe(86_400);
    expect(sweep.find((m) => m.price === 'dynamodbReadRequestUnit')?.quantity).toBe(43_200);
    // No limit, no waiting room: none of it.
    const none = deriveStack(example, options(4));
    expect(none.waits).toBeUndefined();
    expect(none.model.waitingRoom).toBeUndefined();
    expect(none.usage.lines.some((l) => /wake/.test(l.what))).toBe(false);
    expect(none.usage.monthly.some((m) => /sweep/.test(m.what))).toBe(false);
  });

  test('per-key credentials (issue 15): one credential function invocation per vendor call, one GetSecretValue per key per TTL per environment, one secret per key a month; none without', () => {
    const perKey = synthesize(() => ({
      proxy: { credentials: VendorCredentials.fromSecretHeaderPerKey({ secretNamePattern: 'vendor/{key}', jsonField: 'apiKey' }) },
    }), true, '$.customerId');
    const d = deriveStack(perKey, options(4, { keys: 50 }));
    const fn = d.model.perKeyCredential!;
    expect(fn).toMatchObject({ secretNamePattern: 'vendor/{key}', cacheTtlSeconds: 300, memoryMb: 128 });
    // The ReadVendorCredential task: one invocation per call (submission and fetch), no per-call secret read (cached per key).
    expect(line(d, 'ReadVendorCredential (dispatch task) invocations').perRequest).toBe(1);
    expect(line(d, 'GetSecretValue calls').perRequest).toBe(0);
    expect(d.fetch?.usage.lines.find((l) => l.what === 'ReadVendorCredential (vendor-call task) invocations')?.perRequest).toBe(1);
    // 50 keys x 1 environment (4 calls/s x 30 ms) / 300 s = 1/6 read a second, over 4 calls a second.
    const reads = line(d, `${fn.logicalId} GetSecretValue (per key, cached)`);
    expect(reads.price).toBe('secretsManagerApiCall');
    expect(reads.perRequest).toBeCloseTo(50 / 300 / 4, 10);
    expect(d.fetch?.usage.lines.find((l) => l.what === reads.what)?.perRequest).toBeCloseTo(reads.perRequest, 10);
    expect(line(d, `${fn.logicalId} duration (secret reads)`).perRequest).toBeCloseTo(reads.perRequest * 0.03 * (128 / 1024), 12);
    expect(d.usage.monthly.find((m) => m.what === 'Secrets Manager secrets, one per key')).toMatchObject({ quantity: 50, price: 'secretsManagerSecretMonth' });
    // Default 10 keys; more keys than calls in a TTL: at most one read per call.
    expect(deriveStack(perKey, options(4)).usage.monthly.find((m) => m.what === 'Secrets Manager secrets, one per key')?.quantity).toBe(10);
    expect(line(deriveStack(perKey, options(0.01, { keys: 500 })), reads.what).perRequest).toBe(1);
    expect(() => deriveStack(perKey, options(4, { keys: 0 }))).toThrow('keys must be a whole number >= 1');
    // Without per-key credentials: none of it.
    const none = deriveStack(example, options(4));
    expect(none.model.perKeyCredential).toBeUndefined();
    expect(none.usage.lines.some((l) => /per key/.test(l.what))).toBe(false);
    expect(none.usage.monthly.some((m) => /per key/.test(m.what))).toBe(false);
  });

  test('PacingPoint.DISPATCH: the dispatch workflow calls the proxy with apigateway:invoke, no vendor caller', () => {
    const d = deriveStack(synthesize(() => ({ pacingPoint: PacingPoint.DISPATCH })), options(4));
    expect(d.model.vendorCaller).toBeUndefined();
    expect(d.model.dispatch.path).not.toContain('WasVendorCalled');
    expect(d.model.dispatch.definition.States.CallVendor.Resource).toMatch(/apigateway:invoke$/);
    expect(line(d, `${d.model.proxy.logicalId} (proxy) calls`).perRequest).toBe(1);
    expect(d.usage.lines.some((l) => l.what.startsWith('vendor caller'))).toBe(false);
    expect(d.derivation.join('\n')).toContain('PacingPoint.DISPATCH');
  });

  test('a result fetch (callVendorTask) is costed per fetch, not per request: its transition, the vendor-call workflow, the caller, the proxy', () => {
    const withFetch = synthesize(() => ({}), true);
    const d = deriveStack(withFetch, options(4));
    expect(d.model.main.path).toEqual(['SubmitJob', 'FetchResult', 'ProcessResult']);
    expect(d.model.main.callStates).toEqual(['FetchResult']);
    expect(line(d, `${d.model.main.logicalId} state transitions`).perRequest).toBe(2);
    expect(d.fetch?.perRequest).toBe(1);
    expect(d.fetch?.path).toEqual(expect.arrayContaining(['CheckWaitingWorkflow', 'WasVendorCalled', 'ReturnResponse', 'Returned']));
    expect(d.fetch?.path).not.toContain('DeferToQueue');
    const fetchLine = (what: string) => d.fetch!.usage.lines.find((l) => l.what === what)!;
    expect(fetchLine(`${d.model.main.logicalId} FetchResult transition`).perRequest).toBe(1);
    expect(fetchLine(`${d.fetch!.workflow} executions`).perRequest).toBe(1);
    expect(fetchLine('vendor caller invocations (vendor-call)').perRequest).toBe(1);
    expect(fetchLine(`${d.model.proxy.logicalId} (proxy) calls`).perRequest).toBe(1);
    expect(fetchLine('request queue (fetch message) SendMessage').perRequest).toBe(1);
    // The call's claim (ClaimCall, a small item) and the caller's slot claim: one write each.
    expect(d.fetch?.path.slice(0, 4)).toEqual(['WrapInput', 'SetInputDefaults', 'ApplyInputDefaults', 'ClaimCall']);
    expect(fetchLine('ClaimCall write')).toMatchObject({ perRequest: 1, price: 'dynamodbWriteRequestUnit' });
    expect(d.fetch!.usage.lines.find((l) => l.what.endsWith('PutItem (slot claim)'))!.perRequest).toBe(1);
    // Without the fetch the per-request lines are the same.
    const plain = deriveStack(example, options(4));
    expect(d.usage.lines.map((l) => [l.what, l.perRequest])).toEqual(plain.usage.lines.map((l) => [l.what, l.perRequest]));
  });
});
