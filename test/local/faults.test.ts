/**
 * Fault injection on the local runtime: the example app, synthesized, executed with the real
 * handlers, one runtime for every scenario (local/fault-suite.ts defines them; `npm run faults`
 * prints the same figures as a table). Each scenario asserts the safety figures (every request
 * accounted for, lost = 0, duplicate vendor calls = 0, forged callbacks accepted = 0) and the
 * expected outcome of each request.
 *
 * The scenario of a vendor slower than the callback timeout spends 30 s waiting for it: it starts
 * in the background right after the runtime (startFaultScenarioInBackground) and the scenarios of
 * vendor misbehaviour alone run during its wait; it is counted before the first scenario that
 * injects AWS faults or changes a visibility timeout (those would reach its requests too).
 *
 * The last block fuzzes the real webhook over HTTP (mapping template -> queue -> processor) with
 * hostile bodies and headers; the processor-side fuzzing with 1200 cases is
 * test/callback-webhook/fuzz.test.ts.
 */
import * as http from 'http';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import {
  callbackProcessorFunction,
  FaultScenarioResult,
  FaultSuiteContext,
  faultScenarios,
  formatFaultTable,
  runFaultScenario,
  startFaultScenarioInBackground,
  startFaultSuite,
} from '../../local/fault-suite';
import { BURST_KEYS, burstKey, LIMIT_CHANGE, MISSING_CREDENTIAL_KEYS } from '../../local/fault-suite-keys';
import { mulberry32 } from '../../local/faults';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/types';

jest.setTimeout(120_000);

let ctx: FaultSuiteContext;
const results: FaultScenarioResult[] = [];
/** The scenario waiting for the callback timeout, running in the background. */
const SLOW = 'silent-slow-malformed';
let slow: { finish(): Promise<FaultScenarioResult> } | undefined;

const scenarioOf = (id: string) => {
  const scenario = faultScenarios(ctx).find((s) => s.id === id);
  if (!scenario) throw new Error(`no scenario ${id}`);
  return scenario;
};

beforeAll(async () => {
  // Credentials per key (local/fault-suite-keys.ts): every request has a key, each key its own
  // secret and its own account at the vendor. No warm-up requests: the background scenario comes
  // first and takes the cold starts of the submission path (its requests time out whatever their
  // latency); the first scenario after it takes those of the callback path within its 30 s callback timeout.
  ctx = await startFaultSuite({ logFile: process.env.FAULTS_LOG, credentialsPerKey: true, warmUp: false });
  slow = await startFaultScenarioInBackground(ctx, scenarioOf(SLOW));
}, 120_000);

afterAll(async () => {
  // Its vendor still sends late callbacks until it is finished (e.g. when -t left its test out).
  await slow?.finish().catch(() => undefined);
  if (results.length > 0) {
    // Shown in the CI log: the figures docs/security.md reports.
    console.log(formatFaultTable(results));
  }
  await ctx?.runtime.stop();
}, 120_000);

async function run(id: string): Promise<FaultScenarioResult> {
  const scenario = scenarioOf(id);
  // AWS faults and visibility timeouts would reach the background scenario's requests: count it first.
  if (id !== SLOW && (scenario.faults || scenario.visibilityTimeoutSeconds !== undefined)) await slow?.finish();
  const result = id === SLOW ? await slow!.finish() : await runFaultScenario(ctx, scenario);
  results.push(result);
  // The safety figures, for every scenario.
  expect({
    id,
    accounted: result.succeeded + result.failed + result.timedOut + result.lost,
    lost: result.lost,
    duplicateVendorCalls: result.duplicateVendorCalls,
    forgedAccepted: result.forgedAccepted,
    // Every call carried a credential the vendor knows, and none went over its key's own limit.
    unknownCredentials: result.vendorKeys.unknownCredential,
    keyViolations: result.vendorKeys.violations,
  }).toEqual({ id, accounted: result.requests, lost: 0, duplicateVendorCalls: 0, forgedAccepted: 0, unknownCredentials: 0, keyViolations: 0 });
  return result;
}

const outcomes = (r: FaultScenarioResult) => Object.values(r.perRequest).map((p) => p.outcome);
const withFault = (r: FaultScenarioResult, fault: string) => Object.values(r.perRequest).filter((p) => p.vendorFaults.includes(fault));

/** Each succeeded request resumes its workflow twice: the job's callback, then the paced result fetch. */
const RESUMES_PER_SUCCESS = 2;

test('vendor 5xx bursts: retried through the paced queue; permanent 400s fail VendorRequestFailed and are parked', async () => {
  const r = await run('vendor-5xx');
  for (const p of Object.values(r.perRequest)) {
    expect(p.outcome).toBe(p.vendorFaults.includes('reject') ? 'FAILED:VendorRequestFailed' : 'SUCCEEDED');
  }
  expect(withFault(r, 'error').filter((p) => !p.vendorFaults.includes('reject')).length).toBeGreaterThan(0);
  expect(r.requestDeadLetters).toBe(withFault(r, 'reject').length);
});

test('429 storm: every first submission throttled, every request succeeds on its paced retry', async () => {
  const r = await run('vendor-429');
  expect(outcomes(r)).toEqual(Array(r.requests).fill('SUCCEEDED'));
  // The storm happened: each first submission got the vendor's injected 429, then one paced retry.
  expect(r.vendorFaultAnswers.throttle).toBe(r.requests);
  expect(r.vendorSubmissions).toBe(2 * r.requests);
  expect(r.requestDeadLetters).toBe(0);
});

test('duplicate callbacks: resumed once each, duplicates acknowledged', async () => {
  const r = await run('duplicate-cb');
  expect(outcomes(r)).toEqual(Array(r.requests).fill('SUCCEEDED'));
  expect(r.resumes).toBe(RESUMES_PER_SUCCESS * r.requests);
  expect(r.callbackDeadLetters).toBe(0);
  expect(r.correlationStatuses).toEqual({ COMPLETED: r.requests });
});

test('early callbacks: retried until the job id is stored, then resumed', async () => {
  const r = await run('early-cb');
  expect(outcomes(r)).toEqual(Array(r.requests).fill('SUCCEEDED'));
  expect(r.resumes).toBe(RESUMES_PER_SUCCESS * r.requests);
  expect(r.callbackDeadLetters).toBe(0);
});

test('replayed callbacks: acknowledged, nothing resumed twice', async () => {
  const r = await run('replayed-cb');
  expect(outcomes(r)).toEqual(Array(r.requests).fill('SUCCEEDED'));
  expect(r.resumes).toBe(RESUMES_PER_SUCCESS * r.requests);
  expect(r.callbackDeadLetters).toBe(0);
  expect(r.correlationStatuses).toEqual({ COMPLETED: r.requests });
});

// Forged callbacks name a real job id but post to a URL without the request's capability token.
test('forged callbacks: resume nothing; the genuine callback resumes the workflow', async () => {
  const r = await run('forged-cb');
  expect(r.forgedSent).toBe(r.requests);
  expect(outcomes(r)).toEqual(Array(r.requests).fill('SUCCEEDED'));
  expect(r.resumes).toBe(RESUMES_PER_SUCCESS * r.requests);
});

// Started in beforeAll; the scenarios above ran during its wait.
test('vendor slower than the timeout, silent or malformed: timed out; late callbacks recorded LATE, malformed parked', async () => {
  const r = await run('silent-slow-malformed');
  expect(outcomes(r)).toEqual(Array(r.requests).fill('FAILED:VendorTimedOut'));
  const calledBack = Object.values(r.perRequest).filter((p) => !p.vendorFaults.includes('noCallback'));
  const malformed = calledBack.filter((p) => p.vendorFaults.includes('malformedCallback')).length;
  expect(malformed).toBeGreaterThan(0);
  expect(calledBack.length - malformed).toBeGreaterThan(0);
  expect(r.callbackDeadLetters).toBe(malformed);
  expect(r.callbackParkReasons).toEqual({ MALFORMED_BODY: malformed });
  expect(r.correlationStatuses.LATE).toBe(calledBack.length - malformed);
  expect(r.resumes).toBe(0);
});

test('dispatcher crash mid-batch: the batch is redelivered, started requests are not sent twice', async () => {
  const r = await run('dispatcher-crash');
  expect(r.injected.crashes).toEqual({ [Object.keys(r.injected.crashes)[0]]: 1 });
  expect(r.injected.environmentsKilled).toBeGreaterThanOrEqual(1);
  expect(outcomes(r)).toEqual(Array(r.requests).fill('SUCCEEDED'));
  expect(r.resumes).toBe(RESUMES_PER_SUCCESS * r.requests);
  expect(r.vendorSubmissions).toBe(r.requests);
});

test('callback processor crash after SendTaskSuccess, before the delete: redelivered, resumed once', async () => {
  const r = await run('processor-crash');
  expect(r.injected.crashes[callbackProcessorFunction(ctx)]).toBeGreaterThanOrEqual(1);
  expect(outcomes(r)).toEqual(Array(r.requests).fill('SUCCEEDED'));
  expect(r.resumes).toBe(RESUMES_PER_SUCCESS * r.requests);
  expect(r.callbackDeadLetters).toBe(0);
});

test('DynamoDB throttling: absorbed by the SDK and state machine retries', async () => {
  const r = await run('ddb-throttle');
  // Throttled where it matters, not only somewhere: the conditional writes (pacer reservation,
  // claim, job id, completion) and the reads (pause check, look-ups by request and job id).
  const ddb = (action: string) => r.injected.throttled[`dynamodb:${action}`] ?? 0;
  expect(ddb('UpdateItem')).toBeGreaterThan(0);
  expect(ddb('GetItem') + ddb('Query')).toBeGreaterThan(0);
  expect(outcomes(r)).toEqual(Array(r.requests).fill('SUCCEEDED'));
  expect(r.requestDeadLetters + r.callbackDeadLetters).toBe(0);
});

test('Step Functions throttling: failed starts come back from the queue, SendTask* retried', async () => {
  const r = await run('sfn-throttle');
  // Both halves of the claim were exercised: starts were refused, and task answers were refused.
  const sfnThrottled = (action: string) => r.injected.throttled[`sfn:${action}`] ?? 0;
  expect(sfnThrottled('StartExecution')).toBeGreaterThan(0);
  expect(sfnThrottled('SendTaskSuccess') + sfnThrottled('SendTaskFailure') + sfnThrottled('SendTaskHeartbeat')).toBeGreaterThan(0);
  expect(outcomes(r)).toEqual(Array(r.requests).fill('SUCCEEDED'));
  expect(r.resumes).toBe(RESUMES_PER_SUCCESS * r.requests);
});

test('a key without a credential: its requests parked at once (VendorCredentialNotFound), tasks fail VendorRequestFailed; the other keys succeed, the vendor never sees it', async () => {
  const r = await run('key-credential-missing');
  const { withSecret, withoutSecret } = MISSING_CREDENTIAL_KEYS;
  // Requests go round-robin over acme, globex, initech (no secret).
  expect(outcomes(r)).toEqual(['SUCCEEDED', 'SUCCEEDED', 'FAILED:VendorRequestFailed', 'SUCCEEDED', 'SUCCEEDED', 'FAILED:VendorRequestFailed']);
  expect(r.requestParkReasons).toEqual({ VendorCredentialNotFound: 2 });
  expect(r.resumes).toBe(RESUMES_PER_SUCCESS * 4 + 2);
  expect(Object.keys(r.vendorKeys.byKey)).toEqual([...withSecret]);
  expect(r.vendorKeys.byKey[withoutSecret]).toBeUndefined();
  // Each key with a secret: its two submissions and two result fetches, with its own credential.
  expect(Object.values(r.vendorKeys.byKey).map((k) => k.arrivals)).toEqual([4, 4]);
});

test('a burst of new keys: each key\'s first request within about a second, each with its own secret: all succeed, none over its key\'s limit or the contract', async () => {
  const r = await run('key-burst');
  expect(outcomes(r)).toEqual(Array(BURST_KEYS).fill('SUCCEEDED'));
  // The vendor saw every key, each with its own credential: a submission and a result fetch.
  expect(Object.keys(r.vendorKeys.byKey)).toEqual(Array.from({ length: BURST_KEYS }, (_, i) => burstKey(i)));
  expect(Object.values(r.vendorKeys.byKey).every((k) => k.arrivals === 2 && k.violations === 0)).toBe(true);
  expect(r.vendorContractViolations).toBe(0);
  expect(r.requestDeadLetters + r.callbackDeadLetters).toBe(0);
});

test('a key\'s limit lowered mid-run: all succeed, no call over the key\'s limit in force before or after the change binds, nor the contract', async () => {
  const r = await run('key-limit-change');
  expect(outcomes(r)).toEqual(Array(LIMIT_CHANGE.requests).fill('SUCCEEDED'));
  // A submission and a result fetch per request, the old limit used before the change (more calls
  // in some second than the new limit allows, never more than the old one: 2 or 3, as the loaded
  // machine's timing lets the key reach its old limit; a full npm test once saw 2), the new one
  // enforced at the end, and not one call over the limit in force.
  const byKey = r.vendorKeys.byKey[LIMIT_CHANGE.key];
  expect(byKey).toMatchObject({ limit: LIMIT_CHANGE.toRps, arrivals: 2 * LIMIT_CHANGE.requests, violations: 0 });
  expect(byKey.maxInAnyWindow).toBeGreaterThan(LIMIT_CHANGE.toRps);
  expect(byKey.maxInAnyWindow).toBeLessThanOrEqual(LIMIT_CHANGE.fromRps);
  expect(r.vendorContractViolations).toBe(0);
  expect(r.requestDeadLetters + r.callbackDeadLetters).toBe(0);
});

// ---------------------------------------------------------------------------------------------
// Webhook fuzzing over HTTP: 100 hostile requests through the real mapping template and queue
// ---------------------------------------------------------------------------------------------

describe('webhook fuzzing through the local runtime', () => {

  /**
   * Where an accepted callback must end. The webhook reads the body as UTF-8 text (invalid bytes
   * become U+FFFD, as API Gateway does for text media types), then the processor's rules apply.
   */
  function expectedPlace(body: Buffer, completedJobs: string[]): 'parked' | 'retrying' | 'acknowledged' {
    let parsed: any;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      return 'parked';
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !Object.prototype.hasOwnProperty.call(parsed, 'jobId')) return 'parked';
    const id = parsed.jobId;
    const jobId = typeof id === 'string' && id.trim() !== '' ? id : typeof id === 'number' && Number.isFinite(id) ? String(id) : undefined;
    if (jobId === undefined) return 'parked';
    // Posted on a capability URL whose token belongs to no request: a callback naming a real job is
    // rejected (CallbackRejected, parked) before any duplicate check; an unknown job id cannot be
    // checked yet and is retried as an early callback.
    return completedJobs.includes(jobId) ? 'parked' : 'retrying';
  }

  function post(url: string, body: Buffer, headers: Record<string, string | string[]>): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = http.request(url, { method: 'POST', headers: { ...headers, 'Content-Length': String(body.length) } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  test('every hostile callback is rejected at the API, parked, acknowledged or retried: none resumes a workflow or vanishes', async () => {
    // Jobs that really exist (already completed): a hostile body naming one is a duplicate. Run
    // afresh here: the jobs of the duplicate-callbacks test minutes earlier did not always stay
    // where the oracle expects them (one callback counted retrying instead of acknowledged).
    const baseline = await run('duplicate-cb');
    const completedJobs = Object.values(baseline.perRequest).map((p) => p.jobId!).filter(Boolean);
    expect(completedJobs.length).toBeGreaterThan(0);

    const random = mulberry32(4242);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
    const bodies: Array<() => Buffer> = [
      () => Buffer.from(JSON.stringify({ jobId: pick(completedJobs), status: 'SUCCEEDED', result: { evil: '\u0000\ud800' } })),
      () => Buffer.from(`{"jobId":"${pick(completedJobs)}","jobId":"job-nope-${Math.floor(random() * 1e6)}"}`),
      () => Buffer.from(`{"__proto__":{"jobId":"${pick(completedJobs)}"}}`),
      () => Buffer.from(`{"jobId":${pick(['null', 'true', '[]', '{}', '""', '9007199254740993', '1e999'])}}`),
      () => Buffer.from(`{"jobId":"${pick(completedJobs)}"`),
      () => Buffer.concat([Buffer.from(`{"jobId":"${pick(completedJobs)}","x":"`), bytes(20), Buffer.from('"}')]),
      () => bytes(1 + Math.floor(random() * 200)),
      () => Buffer.from(`#set($x = 1)$input.body $util.base64Decode("x") ${'$'}{q} "'\\`),
      () => Buffer.from(`${'['.repeat(300)}${']'.repeat(300)}`),
      () => Buffer.from(''),
      () => Buffer.from(JSON.stringify({ jobId: `job-unknown-${Math.floor(random() * 1e6)}` })),
    ];
    const headerSets: Array<() => Record<string, string | string[]>> = [
      () => ({ 'Content-Type': 'application/json' }),
      () => ({ 'Content-Type': 'application/json; charset=latin1', 'X-Dup': ['a', 'b'] }),
      () => ({ 'Content-Type': pick(['text/html', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '*/*']) }),
      () => ({ 'Content-Type': 'application/json', 'X-Long': 'h'.repeat(6000) }),
      () => ({ 'Content-Type': 'application/json', 'X-Quote': '"},"v":2,"x":"', 'X-Vtl': '$context.requestId #end' }),
      () => ({ 'Content-Type': 'application/json', 'X-Latin1': Buffer.from([0xe9, 0xff, 0xa0]).toString('latin1') }),
      () => ({}),
    ];

    const bareUrl = ctx.runtime.rewriteUrl(String(ctx.runtime.template.output('WebhookUrl')));
    // A well-formed capability URL whose token no request holds (43 base64url characters).
    const url = `${bareUrl.replace(/\/$/, '')}/${'Fz9_'.repeat(10)}Fz9`;
    const tokensBefore = ctx.runtime.sfn.counters().taskTokens;
    const statuses: Record<string, number> = {};
    let accepted = 0;
    const expected = { parked: 0, retrying: 0, acknowledged: 0 };
    for (let i = 0; i < 100; i++) {
      const body = pick(bodies)();
      const status = await post(url, body, pick(headerSets)());
      statuses[status] = (statuses[status] ?? 0) + 1;
      expect(status).toBeLessThan(500);
      if (status >= 200 && status < 300) {
        accepted++;
        expected[expectedPlace(body, completedJobs)]++;
      }
    }

    // Let the processor take everything it can, then count where the accepted ones are.
    const sqs = new SQSClient({ endpoint: ctx.runtime.endpoints.sqs, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
    const queue = ctx.runtime.template.ofType('AWS::SQS::Queue').find((q) => /CallbackQueue/.test(q.logicalId))!;
    const counts = async () => {
      const { Attributes: a } = await sqs.send(new GetQueueAttributesCommand({
        QueueUrl: ctx.runtime.template.queueUrlOf(queue.logicalId),
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
      }));
      return {
        visible: Number(a?.ApproximateNumberOfMessages ?? 0),
        hidden: Number(a?.ApproximateNumberOfMessagesNotVisible ?? 0) + Number(a?.ApproximateNumberOfMessagesDelayed ?? 0),
      };
    };
    const mapping = () => Object.values(ctx.runtime.poller.stats()).find((m) => /CallbackQueue/.test(m.queueArn))!;
    // Settled: nothing visible and no invocation in flight, twice in a row. What is left hidden is
    // waiting for its early-callback retry (the processor delayed it with ChangeMessageVisibility).
    const deadline = Date.now() + 30_000;
    let calm = 0;
    await new Promise((r) => setTimeout(r, 1000));
    while (Date.now() < deadline && calm < 2) {
      calm = mapping().inFlight === 0 && (await counts()).visible === 0 ? calm + 1 : 0;
      await new Promise((r) => setTimeout(r, 500));
    }
    const parked = await ctx.runtime.deadLetterCount('callback');
    const retrying = (await counts()).hidden;
    sqs.destroy();
    const tokensAfter = ctx.runtime.sfn.counters().taskTokens;
    console.log(`webhook fuzz: HTTP statuses ${JSON.stringify(statuses)}; accepted ${accepted} -> parked ${parked}, `
      + `retrying (early callbacks) ${retrying}, acknowledged ${accepted - parked - retrying}`);

    // Nothing resumed or failed a workflow (every real job named was already completed).
    expect(tokensAfter.succeeded - tokensBefore.succeeded).toBe(0);
    expect(tokensAfter.failed - tokensBefore.failed).toBe(0);
    // Every accepted callback is where the oracle says: parked with a reason, waiting for its
    // early-callback retry (a job id nobody stored), or acknowledged as a duplicate.
    expect({ parked, retrying, acknowledged: accepted - parked - retrying }).toEqual(expected);
    expect(expected.parked * expected.retrying).toBeGreaterThan(0);
    // Without a capability token the webhook answers 403 and keeps nothing.
    expect(await post(bareUrl, Buffer.from(JSON.stringify({ jobId: completedJobs[0] })), { 'Content-Type': 'application/json' })).toBe(403);
    expect(Object.keys(statuses).some((s) => s.startsWith('4'))).toBe(true);
  });
});
