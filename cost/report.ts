/**
 * The cost report: text for a terminal, Markdown for docs/cost.md, and the JSON summary line.
 */
import { LATENCY_MS, POLL_GATHER_SECONDS, SIZE_BYTES } from './assumptions';
import { Comparison, PUBLISHED_PATTERN_URL } from './comparisons';
import { DeriveOptions, fmt, StackDerivation } from './derive';
import { HAPPY_PATH_RULE } from './happy-path';
import { DesignCost, PricedLine, round, SERVICE_KEYS, ServiceKey, SERVICES } from './model';
import { DEFAULT_KEYS } from './per-key-credentials';
import { PerKeyFigures } from './per-key-limits';
import { PRICE_DATE, PRICE_STATEMENT, RegionPrices } from './prices';

/** Everything a report shows. */
export interface CostResult {
  readonly stackName: string;
  readonly prices: RegionPrices;
  /** The contract the stack was synthesized with (read back from the template). */
  readonly rps: number;
  readonly options: DeriveOptions;
  readonly derived: StackDerivation;
  readonly ours: DesignCost;
  readonly comparisons: Array<{ readonly comparison: Comparison; readonly cost: DesignCost }>;
  /** The main workflow's result fetches (callVendorTask), priced per fetch. */
  readonly fetch?: DesignCost;
  /** A wait for a job place (jobs-in-flight waiting queue), priced per wait. */
  readonly waits?: DesignCost;
  /** Per-key limits: per call, per set-aside, per active and idle key. */
  readonly perKey?: PerKeyFigures;
}

/** One comparison in the JSON summary. */
export interface ComparisonSummary {
  readonly name: string;
  readonly perMillionRequestsUsd: number;
  readonly monthlyUsd: number;
  readonly byService: Record<ServiceKey, number>;
}

/** The JSON summary (the last line of `--json`). */
export interface CostSummary {
  readonly perMillionRequestsUsd: number;
  /** The same without the main workflow's states other than the submit task (the example's own work). */
  readonly orchestratorPerMillionRequestsUsd: number;
  readonly byService: Record<ServiceKey, number>;
  readonly region: string;
  readonly priceDate: string;
  readonly rps: number;
  readonly trafficRps: number;
  readonly requestsPerMonth: number;
  readonly monthlyUsd: number;
  readonly fixedMonthlyUsd: number;
  readonly comparisons: Record<string, ComparisonSummary>;
  /**
   * The main workflow's paced result fetches (callVendorTask), not in the per-request figures:
   * per fetch, and per order of the example (one submission + its fetches).
   */
  readonly resultFetch?: {
    readonly fetchesPerRequest: number;
    readonly perMillionFetchesUsd: number;
    readonly byService: Record<ServiceKey, number>;
    readonly perMillionOrdersUsd: number;
  };
  /** A wait for a job place (maxJobsInFlight with its waiting queue), off the happy path: per wait. */
  readonly jobWait?: {
    readonly perMillionWaitsUsd: number;
    readonly byService: Record<ServiceKey, number>;
  };
  /** Per-key limits (KEY_LIMITS in the template): what they add per call (in the figures above), per set-aside, per key a month. */
  readonly perKey?: {
    readonly keyCallRps: number;
    readonly activeKeys: number;
    readonly distinctKeysPerBatch: number;
    readonly perMillionCallsUsd: number;
    readonly byService: Record<ServiceKey, number>;
    readonly perMillionSetAsidesUsd: number;
    readonly activeKeyMonthUsd: number;
    /** An idle key a month is a tiny figure: per million idle keys (with an override item, and a secret each with credentials per key). */
    readonly perMillionIdleKeysMonthUsd: number;
  };
  readonly warnings: string[];
}

export function summary(result: CostResult): CostSummary {
  const byService = (cost: DesignCost) => Object.fromEntries(SERVICE_KEYS.map((k) => [k, round(cost.byService[k])])) as Record<ServiceKey, number>;
  return {
    perMillionRequestsUsd: round(result.ours.perMillionRequestsUsd),
    orchestratorPerMillionRequestsUsd: round(result.ours.perMillionRequestsUsd - ownStatesUsd(result)),
    byService: byService(result.ours),
    region: result.prices.region,
    priceDate: PRICE_DATE,
    rps: result.rps,
    trafficRps: result.options.trafficRps,
    requestsPerMonth: result.ours.requestsPerMonth,
    monthlyUsd: round(result.ours.usagePerMonthUsd, 2),
    fixedMonthlyUsd: round(result.ours.monthlyFixedUsd, 2),
    comparisons: Object.fromEntries(result.comparisons.map(({ comparison, cost }) => [comparison.key, {
      name: cost.name,
      perMillionRequestsUsd: round(cost.perMillionRequestsUsd),
      monthlyUsd: round(cost.usagePerMonthUsd, 2),
      byService: byService(cost),
    }])),
    ...(result.fetch && result.derived.fetch ? {
      resultFetch: {
        fetchesPerRequest: result.derived.fetch.perRequest,
        perMillionFetchesUsd: round(result.fetch.perMillionRequestsUsd),
        byService: byService(result.fetch),
        perMillionOrdersUsd: round(perOrderUsd(result)),
      },
    } : {}),
    ...(result.waits ? { jobWait: { perMillionWaitsUsd: round(result.waits.perMillionRequestsUsd), byService: byService(result.waits) } } : {}),
    ...(result.perKey ? {
      perKey: {
        keyCallRps: result.perKey.keyCallRps,
        activeKeys: round(result.perKey.activeKeys, 2),
        distinctKeysPerBatch: round(result.perKey.distinctKeysPerBatch, 2),
        perMillionCallsUsd: round(result.perKey.perCall.perMillionRequestsUsd),
        byService: byService(result.perKey.perCall),
        perMillionSetAsidesUsd: round(result.perKey.setAside.perMillionRequestsUsd),
        activeKeyMonthUsd: round(result.perKey.activeKeyMonthUsd),
        perMillionIdleKeysMonthUsd: round(result.perKey.idleKeyMonthUsd * 1_000_000, 2),
      },
    } : {}),
    warnings: result.derived.warnings,
  };
}

/** USD per 1M orders of the example: one submission and its result fetches. */
export function perOrderUsd(result: CostResult): number {
  const fetches = result.fetch && result.derived.fetch ? result.derived.fetch.perRequest * result.fetch.perMillionRequestsUsd : 0;
  return result.ours.perMillionRequestsUsd + fetches;
}

/** The result fetch section of the text report (empty without fetches). */
function fetchText(result: CostResult): string[] {
  const { fetch } = result;
  const f = result.derived.fetch;
  if (!fetch || !f) return [];
  return [
    '',
    `RESULT FETCH (${f.callStates.join(', ')}: callVendorTask), PER FETCH, NOT IN THE TABLE ABOVE`,
    `  ${fetch.description}`,
    ...table(['service', 'USD per 1M fetches'], [
      ...servicesUsed([fetch]).map((k) => [SERVICES[k], usd(fetch.byService[k])]),
      ['total', usd(fetch.perMillionRequestsUsd)],
    ], [false, true]),
    ...table(['service', 'usage', 'per fetch', 'USD per 1M', 'how'], fetch.lines.filter((l) => l.perRequest > 0).map(usageRow), [false, false, true, true, false]),
    fetchSentence(result),
  ];
}

/** The per-key section of the text report (empty without per-key limits). */
function perKeyText(result: CostResult): string[] {
  const k = result.perKey;
  if (!k) return [];
  return [
    '',
    'PER-KEY LIMITS: WHAT THEY ADD PER CALL (ALREADY IN THE TABLES ABOVE), PER SET-ASIDE, PER KEY A MONTH',
    ...perKeySentences(k).map((sentence) => `  ${sentence}`),
    ...table(['service', 'usage', 'per call', 'USD per 1M', 'how'], k.perCall.lines.filter((l) => l.perRequest > 0).map(usageRow), [false, false, true, true, false]),
    `  A set-aside, off the happy path (per set-aside, whatever its delay): $${usd(k.setAside.perMillionRequestsUsd)} per 1M`,
    ...table(['service', 'usage', 'per set-aside', 'USD per 1M', 'how'], k.setAside.lines.filter((l) => l.perRequest > 0).map(usageRow), [false, false, true, true, false]),
  ];
}

/** The per-key figures in words (text and Markdown). */
function perKeySentences(k: PerKeyFigures): string[] {
  return [
    `${fmt(k.activeKeys)} active keys at ${fmt(k.keyCallRps, 3)} calls/s each (--key-call-rps), ${fmt(k.distinctKeysPerBatch, 2)} distinct keys in a batch: `
      + `per-key limits add $${usd(k.perCall.perMillionRequestsUsd)} per 1M calls.`,
    `An active key costs $${usd(k.activeKeyMonthUsd)} a month: ${k.activeKeyRule}.`,
    `An idle key costs $${k.idleKeyMonthUsd.toPrecision(2)} a month: ${k.idleKeyRule}.`,
    ...(k.keyRules.count > 0 ? [`Requests with keys also bring ${k.keyRules.count} Contributor Insights rules ranking the keys ($${usd(k.keyRules.monthUsd, 2)} a month, whatever the number of keys) `
      + `and at most $${usd(k.keyRules.perMillionUsd)} per 1M requests of matched log events: in the tables above, not in the per-key figures.`] : []),
  ];
}

/** The wait section of the text report (empty without a waiting queue). */
function waitsText(result: CostResult): string[] {
  const { waits } = result;
  if (!waits) return [];
  return [
    '',
    'A WAIT FOR A JOB PLACE (maxJobsInFlight), PER WAITING REQUEST, WHATEVER ITS LENGTH, NOT IN THE TABLE ABOVE',
    `  ${waits.description}`,
    ...table(['service', 'USD per 1M waits'], [
      ...servicesUsed([waits]).map((k) => [SERVICES[k], usd(waits.byService[k])]),
      ['total', usd(waits.perMillionRequestsUsd)],
    ], [false, true]),
    ...table(['service', 'usage', 'per wait', 'USD per 1M', 'how'], waits.lines.filter((l) => l.perRequest > 0).map(usageRow), [false, false, true, true, false]),
  ];
}

function fetchSentence(result: CostResult): string {
  const f = result.derived.fetch!;
  return `Per order of the example (1 submission + ${f.perRequest} result fetch${f.perRequest === 1 ? '' : 'es'}): $${usd(perOrderUsd(result), 2)} per 1M orders. `
    + '"Per request" above is per vendor submission; a fetch is another paced vendor request (it counts against the contract and shares the queue\'s batches), '
    + `so at ${fmt(result.options.trafficRps)} vendor requests per second the example handles ${fmt(result.options.trafficRps / (1 + f.perRequest), 2)} orders per second.`;
}

/** The report for a terminal. */
export function textReport(result: CostResult): string {
  const { ours, derived } = result;
  const out: string[] = [];
  out.push(`Cost per million requests: stack ${result.stackName}, ${result.prices.region} (${result.prices.location})`);
  out.push(`Prices: ${PRICE_STATEMENT}.`);
  out.push(`Rate: contract ${fmt(result.rps)} rps (the stack as synthesized); ${fmt(result.options.trafficRps)} rps sustained around the clock `
    + `= ${int(ours.requestsPerMonth)} requests per 30 days.`);
  for (const warning of derived.warnings) {
    out.push(`! ${warning}`);
  }
  out.push('');
  out.push('THIS STACK, BY SERVICE');
  out.push(...table(['service', 'USD per 1M requests', 'share'], [
    ...servicesUsed([ours]).map((k) => [SERVICES[k], usd(ours.byService[k]), pct(ours.byService[k] / ours.perMillionRequestsUsd)]),
    ['total', usd(ours.perMillionRequestsUsd), '100%'],
  ], [false, true, true]));
  out.push(ownStatesSentence(result));
  out.push(`At ${fmt(result.options.trafficRps)} rps for 30 days: $${money(ours.usagePerMonthUsd)} for ${int(ours.requestsPerMonth)} requests, `
    + `plus $${money(ours.monthlyFixedUsd)} a month that does not depend on the request count (below).`);
  out.push(...fetchText(result));
  out.push(...waitsText(result));
  out.push(...perKeyText(result));
  out.push('');
  out.push('WHERE THE MONEY GOES (per request)');
  out.push(...table(['service', 'usage', 'per request', 'USD per 1M', 'how'], ours.lines
    .filter((l) => l.perRequest > 0 || l.service === 'secretsManager' || l.service === 'kms' || l.service === 'xray')
    .map(usageRow), [false, false, true, true, false]));
  out.push('');
  out.push('MONTHLY, WHATEVER THE REQUEST COUNT (storage: at this rate)');
  out.push(...table(['item', 'quantity', 'USD per month', 'how'], ours.monthly
    .map((l) => [l.what, fmt(l.quantity, 3), usd(l.usdPerMonth), l.derivation]), [false, true, true, false]));
  out.push('');
  out.push('DERIVED FROM THE TEMPLATE');
  out.push(...derived.derivation.map((d) => `  ${d}`));
  out.push('');
  out.push('COMPARISON (same prices, same traffic, same main workflow)');
  const designs = [ours, ...result.comparisons.map((c) => c.cost)];
  out.push(...table(['service', 'this stack', '(a) published pattern', '(b) Standard + HTTP Task'], [
    ...servicesUsed(designs).map((k) => [SERVICES[k], ...designs.map((d) => usd(d.byService[k]))]),
    ['total per 1M requests', ...designs.map((d) => usd(d.perMillionRequestsUsd))],
    ['vs this stack', '', ...result.comparisons.map((c) => signed(c.cost.perMillionRequestsUsd - ours.perMillionRequestsUsd))],
    [`30 days at ${fmt(result.options.trafficRps)} rps`, ...designs.map((d) => usd(d.usagePerMonthUsd, 2))],
  ], [false, true, true, true]));
  for (const { comparison, cost } of result.comparisons) {
    out.push('');
    out.push(`${cost.name}: ${cost.description}`);
    out.push(...comparison.differences.map((d) => `  - ${d}`));
    out.push(...table(['service', 'usage', 'per request', 'USD per 1M', 'how'], cost.lines
      .filter((l) => l.perRequest > 0)
      .map(usageRow), [false, false, true, true, false])
      .map((line) => `  ${line}`));
  }
  out.push('');
  out.push('ASSUMPTIONS');
  out.push(...assumptions(result).map((a) => `  - ${a}`));
  return out.join('\n');
}

/** The tables of docs/cost.md. */
export function markdownReport(result: CostResult): string {
  const { ours } = result;
  const designs = [ours, ...result.comparisons.map((c) => c.cost)];
  const out: string[] = [];
  out.push(`Stack ${result.stackName}, ${result.prices.region}, contract ${fmt(result.rps)} rps, ${fmt(result.options.trafficRps)} rps sustained `
    + `(${int(ours.requestsPerMonth)} requests per 30 days); ${PRICE_STATEMENT}.`);
  for (const warning of result.derived.warnings) {
    out.push('', `> ${warning}`);
  }
  out.push('', '| service | USD per 1M requests | share |', '| --- | ---: | ---: |');
  for (const k of servicesUsed([ours])) {
    out.push(`| ${SERVICES[k]} | ${usd(ours.byService[k])} | ${pct(ours.byService[k] / ours.perMillionRequestsUsd)} |`);
  }
  out.push(`| **total** | **${usd(ours.perMillionRequestsUsd)}** | 100% |`);
  out.push('', `${ownStatesSentence(result)} 30 days at ${fmt(result.options.trafficRps)} rps: **$${money(ours.usagePerMonthUsd)}**, `
    + `plus $${money(ours.monthlyFixedUsd)} a month whatever the request count.`);
  out.push('', '| service | usage | per request | USD per 1M | how |', '| --- | --- | ---: | ---: | --- |');
  for (const l of ours.lines.filter((x) => x.perRequest > 0)) {
    out.push(`| ${SERVICES[l.service]} | ${l.what} | ${quantity(l.perRequest, l.price)} | ${usd(l.usdPerMillion)} | ${escape(l.derivation)} |`);
  }
  if (result.fetch && result.derived.fetch) {
    const fetch = result.fetch;
    out.push('', `Result fetch (${result.derived.fetch.callStates.join(', ')}), per fetch:`);
    out.push('', '| service | USD per 1M fetches |', '| --- | ---: |');
    for (const k of servicesUsed([fetch])) {
      out.push(`| ${SERVICES[k]} | ${usd(fetch.byService[k])} |`);
    }
    out.push(`| **total** | **${usd(fetch.perMillionRequestsUsd)}** |`);
    out.push('', '| service | usage | per fetch | USD per 1M | how |', '| --- | --- | ---: | ---: | --- |');
    for (const l of fetch.lines.filter((x) => x.perRequest > 0)) {
      out.push(`| ${SERVICES[l.service]} | ${l.what} | ${quantity(l.perRequest, l.price)} | ${usd(l.usdPerMillion)} | ${escape(l.derivation)} |`);
    }
    out.push('', fetchSentence(result));
  }
  if (result.waits) {
    const waits = result.waits;
    out.push('', 'A wait for a job place (maxJobsInFlight), per waiting request, whatever its length:');
    out.push('', '| service | USD per 1M waits |', '| --- | ---: |');
    for (const k of servicesUsed([waits])) {
      out.push(`| ${SERVICES[k]} | ${usd(waits.byService[k])} |`);
    }
    out.push(`| **total** | **${usd(waits.perMillionRequestsUsd)}** |`);
    out.push('', '| service | usage | per wait | USD per 1M | how |', '| --- | --- | ---: | ---: | --- |');
    for (const l of waits.lines.filter((x) => x.perRequest > 0)) {
      out.push(`| ${SERVICES[l.service]} | ${l.what} | ${quantity(l.perRequest, l.price)} | ${usd(l.usdPerMillion)} | ${escape(l.derivation)} |`);
    }
  }
  if (result.perKey) {
    const k = result.perKey;
    out.push('', 'Per-key limits (already in the tables above), per call of a key:', '', ...perKeySentences(k).map((sentence) => `- ${escape(sentence)}`));
    out.push('', '| service | usage | per call | USD per 1M | how |', '| --- | --- | ---: | ---: | --- |');
    for (const l of k.perCall.lines.filter((x) => x.perRequest > 0)) {
      out.push(`| ${SERVICES[l.service]} | ${l.what} | ${quantity(l.perRequest, l.price)} | ${usd(l.usdPerMillion)} | ${escape(l.derivation)} |`);
    }
    out.push(`| **total** | | | **${usd(k.perCall.perMillionRequestsUsd)}** | |`);
    out.push('', 'A set-aside (off the happy path), per set-aside:', '', '| service | usage | per set-aside | USD per 1M | how |', '| --- | --- | ---: | ---: | --- |');
    for (const l of k.setAside.lines.filter((x) => x.perRequest > 0)) {
      out.push(`| ${SERVICES[l.service]} | ${l.what} | ${quantity(l.perRequest, l.price)} | ${usd(l.usdPerMillion)} | ${escape(l.derivation)} |`);
    }
    out.push(`| **total** | | | **${usd(k.setAside.perMillionRequestsUsd)}** | |`);
  }
  out.push('', '| monthly item | quantity | USD per month | how |', '| --- | ---: | ---: | --- |');
  for (const l of ours.monthly) {
    out.push(`| ${l.what} | ${fmt(l.quantity, 3)} | ${usd(l.usdPerMonth)} | ${escape(l.derivation)} |`);
  }
  out.push('', '| service | this stack | (a) published pattern | (b) Standard + HTTP Task |', '| --- | ---: | ---: | ---: |');
  for (const k of servicesUsed(designs)) {
    out.push(`| ${SERVICES[k]} | ${designs.map((d) => usd(d.byService[k])).join(' | ')} |`);
  }
  out.push(`| **total per 1M requests** | ${designs.map((d) => `**${usd(d.perMillionRequestsUsd)}**`).join(' | ')} |`);
  out.push(`| vs this stack | | ${result.comparisons.map((c) => signed(c.cost.perMillionRequestsUsd - ours.perMillionRequestsUsd)).join(' | ')} |`);
  out.push(`| 30 days at ${fmt(result.options.trafficRps)} rps | ${designs.map((d) => usd(d.usagePerMonthUsd, 2)).join(' | ')} |`);
  return out.join('\n');
}

/** What the numbers rest on. */
export function assumptions(result: CostResult): string[] {
  const o = result.options;
  return [
    `Happy path only: ${HAPPY_PATH_RULE}`,
    'Standard workflows: one state transition per state entered (AWS counts each step executed, retries included). '
      + `${result.derived.model.main.logicalId} has ${result.derived.model.main.path.length} on its happy path; the orchestrator's submit task `
      + `${result.derived.model.main.submitState} is 1 of them${result.derived.model.main.callStates.length > 0
        ? `, the callVendorTask state${result.derived.model.main.callStates.length === 1 ? '' : 's'} ${result.derived.model.main.callStates.join(', ')} `
          + 'are costed per result fetch' : ''}, the others are the workflow's own.`,
    '"Per request" is per vendor submission (submitJobTask) and its callback. A result fetch (callVendorTask) is another paced vendor request: '
      + 'it is costed on its own, per fetch (its Standard transition, its message through the request queue and the dispatcher, the vendor-call Express workflow '
      + 'walked like the dispatch workflow, the vendor caller and the proxy call; SendTaskSuccess is free), and added to give the cost per order of the example. '
      + '--traffic-rps is the rate of all paced vendor requests (what the contract bounds): the batch fill is computed from it.',
    `Express: duration = ${LATENCY_MS.stateTransition} ms per state + ${LATENCY_MS.dynamodbCall} ms per DynamoDB task + ${LATENCY_MS.apiGatewayOverhead} ms API Gateway `
      + `+ the vendor's ${o.vendorLatencyMs} ms (--vendor-latency-ms)${result.derived.model.vendorCaller ? ` + the vendor caller's wait for its slot (with ${LATENCY_MS.lambdaInvoke} ms per invoke)` : ''}, `
      + 'rounded up to 100 ms; memory 50 MB + definition + execution data in 64 MB chunks.',
    ...(result.derived.model.vendorCaller ? [`Vendor caller (PacingPoint.VENDOR_CALL): one invocation per vendor request, ${result.derived.model.vendorCaller.memoryMb} MB from the template; `
      + `billed duration = lead (${result.derived.model.vendorCaller.leadMs} ms) - ${LATENCY_MS.expressStartToCaller} ms assumed from StartExecution to the caller `
      + `(Express start, the states before CallVendor, the invoke) + ${LATENCY_MS.apiGatewayOverhead} ms API Gateway + the vendor's ${o.vendorLatencyMs} ms = `
      + `${result.derived.model.vendorCaller.msPerCall} ms; one strongly consistent GetItem of the pacer item (the pause check) = 1 RRU per call. `
      + 'A caller that misses its slot reserves a fresh one (1 more read and write); not on the happy path.'] : []),
    'Lambda: warm invocations; dispatcher time = the wait for the batch\'s pacing slots (billed while it sleeps) + reservation and StartExecution calls; '
      + `processor ${(result.derived.model.tokenCheckReadUnits > 0 ? 3 : 2) * LATENCY_MS.dynamodbCall + LATENCY_MS.sendTaskSuccess} ms per callback `
      + `(query${result.derived.model.tokenCheckReadUnits > 0 ? ', capability token GetItem (1 RRU, strongly consistent)' : ''}, SendTaskSuccess, update). Cold starts (INIT is billed for managed runtimes) are rare at a sustained rate and not counted.`,
    'SQS: a receive returns up to 10 messages, so receives are amortised over the batch (a lower bound: Lambda\'s pollers can return fewer messages per call; '
      + `at worst one receive per message, +$${usd(receiveUpperBound(result), 2)} per 1M requests); DeleteMessageBatch per 10; `
      + `without a batching window a batch holds what arrives in ~${POLL_GATHER_SECONDS} s.`,
    `Sizes: payload ${o.payloadBytes} B (--payload-bytes), callback ${o.callbackBytes} B (--callback-bytes), task token ${o.taskTokenBytes} B (--task-token-bytes), `
      + `request and job ids ${SIZE_BYTES.requestId} B. DynamoDB writes are billed per started KB of the larger of the item before and after; `
      + 'index entries add 100 B; the job id index is written when the job id is stored and when the status (projected) changes.',
    `Logs: API Gateway access log lines sized from the stage's format, Lambda START/END/REPORT (${SIZE_BYTES.lambdaPlatformLogsText} B), one Powertools INFO line `
      + `(${SIZE_BYTES.powertoolsInfoLine} B) per request per function at INFO, one EMF document (${SIZE_BYTES.emfDocument} B) per invocation, `
      + `${SIZE_BYTES.logEventOverhead} B per event; the Express workflow logs at ERROR, so nothing on the happy path.`,
    ...(result.derived.model.waitingRoom ? ['Jobs in flight: the waiting queue\'s moves are priced per wait (a request that found every place taken), '
      + 'whatever its length; per job only the freer\'s wake attempt while nobody waits (2 short-poll receives); the sweep a month assumes nobody waits '
      + 'and a place is free (its long poll waits its whole second).'] : []),
    ...(result.derived.model.perKeyCredential ? [`Per-key credentials: ${o.keys ?? DEFAULT_KEYS} key(s) (--keys), each with its own secret, each called in every `
      + 'execution environment of the credential function within each cache TTL (an upper bound on the reads); environments = ceil(call rate x '
      + `${LATENCY_MS.lambdaInvoke} ms), at least 1.`] : []),
    ...(result.perKey ? [`Per-key limits: every active key calls at ${fmt(result.perKey.keyCallRps, 3)} calls/s (--key-call-rps), each key's calls arriving `
      + `independently, so a batch of F holds K (1 - e^(-F/K)) of the K = ${fmt(result.perKey.activeKeys)} keys; one reservation round per batch, no lost key write `
      + '(each adds 1 RRU + 1 WRU) and no set-aside on the happy path (keys below their limits; a set-aside is priced on its own); key items under 1 KB.'] : []),
    'The rate changes only the amortisation (batch fill, hence per-batch reads, writes, receives and invocations) and the monthly total (rps x 2,592,000 requests per 30 days).',
    'Free tiers are excluded; first-tier prices throughout (API Gateway drops to $2.80 per million past 333 million calls a month, '
      + 'Express duration and Lambda duration have cheaper tiers too), so very high volumes cost somewhat less per request.',
    'Not counted: data transfer (the vendor calls and callbacks leave and enter AWS alike in every design), '
      + 'CloudWatch Logs storage (90-day retention, compressed), point-in-time recovery, error paths (retries, DLQs, alarms firing).',
    `Comparison (a) follows the published pattern (${PUBLISHED_PATTERN_URL}) as written, with this stack's batch, window and memory sizes where the post does not fix them.`,
  ];
}

/** USD per 1M requests of the main workflow's own states (all but the submit task). */
function ownStatesUsd(result: CostResult): number {
  const own = result.derived.model.main.transitions - 1;
  return own * result.prices.prices.sfnStandardTransition.usd * 1_000_000;
}

function ownStatesSentence(result: CostResult): string {
  const main = result.derived.model.main;
  const own = main.path.filter((s) => s !== main.submitState && !main.callStates.includes(s));
  return `Of this, $${usd(ownStatesUsd(result), 2)} is the main workflow's own ${own.join(', ') || 'nothing'} `
    + `(${own.length} transition${own.length === 1 ? '' : 's'}); the orchestrator itself costs $${usd(result.ours.perMillionRequestsUsd - ownStatesUsd(result), 2)} per 1M requests.`;
}

/** What SQS would add per 1M requests if every ReceiveMessage returned a single message. */
function receiveUpperBound(result: CostResult): number {
  return result.ours.lines
    .filter((l) => l.what.endsWith('ReceiveMessage'))
    .reduce((sum, l) => sum + Math.max(0, 1 - l.perRequest) * result.prices.prices.sqsRequest.usd * 1_000_000, 0);
}

// -----------------------------------------------------------------------------------------------
// Formatting

function usageRow(l: PricedLine): string[] {
  return [SERVICES[l.service], l.what, quantity(l.perRequest, l.price), usd(l.usdPerMillion), l.derivation];
}

function servicesUsed(designs: DesignCost[]): ServiceKey[] {
  return SERVICE_KEYS.filter((k) => designs.some((d) => d.byService[k] > 0));
}

function table(header: string[], rows: string[][], right: boolean[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const render = (cells: string[]) => cells
    .map((c, i) => (i === cells.length - 1 && !right[i] ? c : right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
    .join('  ');
  return [render(header), render(widths.map((w) => '-'.repeat(w))), ...rows.map(render)].map((l) => `  ${l}`.trimEnd());
}

function usd(value: number, digits: number = 4): string {
  return value.toFixed(digits);
}

function money(value: number): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function signed(value: number): string {
  return `${value >= 0 ? '+' : '-'}${Math.abs(value).toFixed(4)}`;
}

function pct(value: number): string {
  return `${(value * 100).toFixed(1)}%`;
}

function int(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function quantity(value: number, price: string): string {
  if (price === 'logsIngestedGb') return `${fmt(value * 1024 ** 3, 0)} B`;
  if (price.includes('GbSecond')) return `${value.toPrecision(3)} GB-s`;
  return fmt(value, 4);
}

function escape(text: string): string {
  return text.replace(/\|/g, '\\|');
}
