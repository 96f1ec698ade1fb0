import { render } from 'velocityjs';
import {
  CALLBACK_ACCEPTED_RESPONSE, CALLBACK_ERROR_RESPONSE, CALLBACK_QUEUED_RESPONSE_TEMPLATE, CALLBACK_QUEUE_MAX_MESSAGE_BYTES, CALLBACK_REQUEST_TEMPLATE,
  CALLBACK_TOO_LARGE_RESPONSE, callbackRequestTemplate, MAX_BODY_BASE64_CHARS, MAX_JOB_ID_JSON_CHARS,
} from '../../src/callback-webhook/mapping-template';
import { CallbackEnvelope } from '../../src/shared/messages';

/**
 * A stand-in for API Gateway's header map (a Java Map): velocityjs calls `keySet()` and `get()`
 * on it as API Gateway would.
 */
class HeaderMap {
  private readonly entries: Map<string, string>;

  constructor(headers: Record<string, string>) {
    this.entries = new Map(Object.entries(headers));
  }

  public keySet(): string[] {
    return [...this.entries.keys()];
  }

  public get(name: string): string | undefined {
    return this.entries.get(name);
  }
}

/** `$util.urlEncode`: java.net.URLEncoder (UTF-8, form semantics: space is '+', only A-Za-z0-9 . - * _ kept). */
function javaUrlEncode(text: string): string {
  return encodeURIComponent(text)
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

/** `$util.base64Encode`: standard base64 of the UTF-8 bytes. */
function base64Encode(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

const REQUEST_TIME_EPOCH = 1_700_000_000_123;

interface Rendered {
  /** The raw output of the template. */
  readonly output: string;
  /** The form fields of the output, in order. */
  readonly fields: Array<[string, string]>;
  /** The MessageBody field, parsed. */
  readonly envelope: CallbackEnvelope;
}

/** Java's `String.length()`, which API Gateway's VTL values have and velocityjs strings do not. */
const JAVA_STRING_LENGTH = {
  uid: 'java-string-length',
  match: ({ property, context }: { property: string; context: unknown }) => property === 'length' && typeof context === 'string',
  resolve: ({ context }: { context: unknown }) => (context as string).length,
};

/** `$input.json(path)` for the simple paths the template uses (`$.a.b`, `$["a b"]`, `$.a[0]`). */
function inputJson(body: string, path: string): string {
  let value: any = JSON.parse(body);
  for (const m of path.slice(1).matchAll(/\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\["([^"]*)"\]/g)) {
    value = value?.[m[1] ?? m[2] ?? m[3]];
  }
  return JSON.stringify(value) ?? '';
}

/** Renders the request template as API Gateway would for a callback with `body` and `headers`. */
function renderCallback(body: string, headers: Record<string, string> = { 'Content-Type': 'application/json' }, template = CALLBACK_REQUEST_TEMPLATE): Rendered {
  const output = render(template, {
    input: {
      body,
      params: () => ({ header: new HeaderMap(headers), path: { get: () => 'T0k3n' }, querystring: {} }),
      json: (path: string) => inputJson(body, path),
    },
    util: { base64Encode, urlEncode: javaUrlEncode },
    context: {
      requestTimeEpoch: REQUEST_TIME_EPOCH,
      requestId: 'c0ffee00-1111-2222-3333-444455556666',
      identity: { sourceIp: '203.0.113.7' },
    },
  }, undefined, { customMethodHandlers: [JAVA_STRING_LENGTH] });
  const fields = [...new URLSearchParams(output.trim()).entries()];
  const messageBody = fields.find(([name]) => name === 'MessageBody')?.[1];
  if (messageBody === undefined) {
    throw new Error(`No MessageBody in the rendered template: ${output}`);
  }
  return { output, fields, envelope: JSON.parse(messageBody) };
}

/** The headers of an envelope, decoded. */
function decodeHeaders(envelope: CallbackEnvelope): Record<string, string> {
  return Object.fromEntries(Object.entries(envelope.headers).map(([name, value]) => [
    Buffer.from(name, 'base64').toString('utf8'),
    Buffer.from(value, 'base64').toString('utf8'),
  ]));
}

const HOSTILE_BODIES: Array<[string, string]> = [
  ['a JSON callback', '{"jobId":"job-1","status":"DONE","result":{"url":"https://x.example/r?a=1&b=2"}}'],
  ['an empty body', ''],
  ['double quotes', 'He said "hello" and "goodbye"'],
  ['backslashes', 'C:\\temp\\new \\" \\\\ \\u0041'],
  ['a string and object terminator', '"}'],
  ['an envelope injection', '"},"v":2,"headers":{},"bodyBase64":"eA==","x":{"'],
  ['unicode', 'ünïcødé ✓ 日本語 😀 \u00a0 \u2028 \u2029'],
  ['newlines and tabs', 'line1\nline2\r\nline3\tend\n'],
  ['a control character', 'nul\u0000bell\u0007'],
  ['Velocity directives', '#set($v = 2)#foreach($x in [1,2])$x#end #if(true)yes#end ## comment #* block *#'],
  ['Velocity references', '$foo ${bar} $!baz $input.body $util.base64Encode("x") $context.requestId $q $h'],
  ['form syntax', '&Action=DeleteQueue&MessageBody=x%26y+z=%'],
  ['a long body', `{"data":"${'x'.repeat(20_000)}"}`],
];

describe('CALLBACK_REQUEST_TEMPLATE', () => {
  test('renders one SQS SendMessage form: Action then MessageBody, nothing else', () => {
    // GIVEN
    const body = '{"jobId":"job-1"}';

    // WHEN
    const { output, fields } = renderCallback(body);

    // THEN
    expect(output.trim()).toMatch(/^Action=SendMessage&MessageBody=[A-Za-z0-9.*_+%-]+$/);
    expect(fields.map(([name]) => name)).toEqual(['Action', 'MessageBody']);
    expect(fields[0][1]).toBe('SendMessage');
  });

  test('writes an envelope of version 1 with the request time, id and source IP', () => {
    // GIVEN
    const body = '{"jobId":"job-1"}';

    // WHEN
    const { envelope } = renderCallback(body);

    // THEN
    expect(envelope.v).toBe(1);
    expect(typeof envelope.receivedAtEpochMs).toBe('number');
    expect(envelope.receivedAtEpochMs).toBe(REQUEST_TIME_EPOCH);
    expect(envelope.apiRequestId).toBe('c0ffee00-1111-2222-3333-444455556666');
    expect(envelope.sourceIp).toBe('203.0.113.7');
    expect(Object.keys(envelope).sort()).toEqual(['apiRequestId', 'bodyBase64', 'headers', 'receivedAtEpochMs', 'sourceIp', 'v']);
  });

  test.each(HOSTILE_BODIES)('keeps the raw body byte for byte: %s', (_name, body) => {
    // GIVEN a body the vendor sent

    // WHEN
    const { envelope, fields } = renderCallback(body);

    // THEN
    expect(fields.map(([name]) => name)).toEqual(['Action', 'MessageBody']);
    expect(envelope.v).toBe(1);
    expect(envelope.bodyBase64).toMatch(/^[A-Za-z0-9+/]*={0,2}$/);
    expect(Buffer.from(envelope.bodyBase64, 'base64').equals(Buffer.from(body, 'utf8'))).toBe(true);
  });

  test('keeps header names and values', () => {
    // GIVEN
    const headers = {
      'Content-Type': 'application/json; charset=utf-8',
      'X-Vendor-Signature': 't=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd',
      'User-Agent': 'Vendor-Webhooks/2.0 (+https://vendor.example.com)',
    };

    // WHEN
    const { envelope } = renderCallback('{}', headers);

    // THEN
    expect(decodeHeaders(envelope)).toEqual(headers);
  });

  test('keeps hostile header values', () => {
    // GIVEN
    const headers = {
      'X-Quote': 'a"b"}',
      'X-Backslash': 'x\\y\\"z',
      'X-Velocity': '#set($h = "")$q$sep #end $input.body',
      'X-Form': 'a&MessageBody=b=c%20d+e',
      'X-Json': '"},"v":2,"x":{"',
      'X-Empty': '',
      'X-Unicode': 'ü ✓',
    };

    // WHEN
    const { envelope, fields } = renderCallback('{"jobId":"1"}', headers);

    // THEN
    expect(fields.map(([name]) => name)).toEqual(['Action', 'MessageBody']);
    expect(decodeHeaders(envelope)).toEqual(headers);
    expect(Buffer.from(envelope.bodyBase64, 'base64').toString('utf8')).toBe('{"jobId":"1"}');
  });

  test('writes an empty header object when the request has no headers', () => {
    // GIVEN
    const headers = {};

    // WHEN
    const { envelope } = renderCallback('{"jobId":"1"}', headers);

    // THEN
    expect(envelope.headers).toEqual({});
  });

  test('encodes header names and values in base64', () => {
    // GIVEN
    const headers = { 'X-A': 'b' };

    // WHEN
    const { envelope } = renderCallback('{}', headers);

    // THEN
    expect(envelope.headers).toEqual({ [base64Encode('X-A')]: base64Encode('b') });
  });
});

describe('callbacks too large for the callback queue', () => {
  // The largest body whose base64 the envelope carries, and one byte more.
  const largestKept = (MAX_BODY_BASE64_CHARS / 4) * 3;
  const bodyOf = (bytes: number, jobId: unknown = 'job-1') => {
    const head = `{"jobId":${JSON.stringify(jobId)},"blob":"`;
    return `${head}${'x'.repeat(bytes - head.length - 2)}"}`;
  };

  test('keep their body up to MAX_BODY_BASE64_CHARS of base64, and the message fits the 1 MiB queue with 10 KiB of headers', () => {
    const headers = Object.fromEntries([...Array(100).keys()].map((i) => [`X-H${i}`, 'v'.repeat(95)])); // about 10 KiB
    const { envelope, fields } = renderCallback(bodyOf(largestKept), headers);
    expect(envelope.bodyBase64).toHaveLength(MAX_BODY_BASE64_CHARS);
    expect(fields.map(([name]) => name)).toEqual(['Action', 'MessageBody']);
    const messageBytes = Buffer.byteLength(fields[1][1], 'utf8');
    // Room is left for the parked copy's reason and detail attributes (at most 4 KiB).
    expect(messageBytes + 4096).toBeLessThanOrEqual(CALLBACK_QUEUE_MAX_MESSAGE_BYTES);
  });

  test.each([
    ['one byte over', largestKept + 1],
    ['API Gateway\'s largest body, 10 MB', 10 * 1024 * 1024],
  ])('%s: the body is dropped, the job id read at the webhook, the message marked with an attribute', (_name, bytes) => {
    const { envelope, fields } = renderCallback(bodyOf(bytes), {}, callbackRequestTemplate({ tokenFromPath: true }));
    expect(envelope).toMatchObject({ v: 1, bodyBase64: '', bodyDropped: true, bodyBase64Length: Math.ceil(bytes / 3) * 4 });
    expect(Buffer.from(envelope.jobIdJsonBase64!, 'base64').toString('utf8')).toBe('"job-1"');
    expect(Buffer.from(envelope.callbackTokenBase64!, 'base64').toString('utf8')).toBe('T0k3n');
    expect(envelope.receivedAtEpochMs).toBe(REQUEST_TIME_EPOCH);
    expect(Object.fromEntries(fields)).toMatchObject({
      'Action': 'SendMessage',
      'MessageAttribute.1.Name': 'bodyDropped',
      'MessageAttribute.1.Value.DataType': 'String',
      'MessageAttribute.1.Value.StringValue': 'true',
    });
    expect(Buffer.byteLength(fields[1][1], 'utf8')).toBeLessThan(2048);
  });

  test('the job id is read at the configured path; a missing one or one over MAX_JOB_ID_JSON_CHARS is left out', () => {
    const template = callbackRequestTemplate({ tokenFromPath: false, jobIdPath: ['data', 'job id', '0'] });
    const big = (value: unknown) => JSON.stringify({ data: { 'job id': [value] }, blob: 'x'.repeat(largestKept) });
    const jobIdOf = (body: string) => Buffer.from(renderCallback(body, {}, template).envelope.jobIdJsonBase64!, 'base64').toString('utf8');
    expect(jobIdOf(big(42))).toBe('42');
    expect(jobIdOf(big('j'.repeat(MAX_JOB_ID_JSON_CHARS - 2)))).toBe(`"${'j'.repeat(MAX_JOB_ID_JSON_CHARS - 2)}"`);
    expect(jobIdOf(big('j'.repeat(MAX_JOB_ID_JSON_CHARS)))).toBe('');
    expect(jobIdOf(JSON.stringify({ other: 1, blob: 'x'.repeat(largestKept) }))).toBe('');
  });

  test('a job id path with a quote cannot be read in VTL: the dropped-body envelope has no job id', () => {
    const template = callbackRequestTemplate({ tokenFromPath: false, jobIdPath: ['it\'s'] });
    expect(template).not.toContain('$input.json');
    const { envelope } = renderCallback(JSON.stringify({ 'it\'s': 'job-1', 'blob': 'x'.repeat(largestKept) }), {}, template);
    expect(envelope).toMatchObject({ bodyDropped: true, jobIdJsonBase64: '' });
  });
});

describe('CALLBACK_QUEUED_RESPONSE_TEMPLATE', () => {
  const sqsAnswer = (md5OfMessageAttributes: string | null) => JSON.stringify({
    SendMessageResponse: {
      ResponseMetadata: { RequestId: 'r-1' },
      SendMessageResult: { MD5OfMessageAttributes: md5OfMessageAttributes, MD5OfMessageBody: 'abc', MessageId: 'm-1', SequenceNumber: null },
    },
  });
  function renderResponse(integrationBody: string) {
    const context: Record<string, any> = { responseOverride: {} };
    const body = render(CALLBACK_QUEUED_RESPONSE_TEMPLATE, {
      input: { path: (p: string) => (p === '$.SendMessageResponse.SendMessageResult.MD5OfMessageAttributes' ? JSON.parse(integrationBody).SendMessageResponse.SendMessageResult.MD5OfMessageAttributes : undefined) },
      context,
    });
    return { body, status: context.responseOverride.status };
  }

  test('answers accepted for a queued callback (no message attributes)', () => {
    expect(renderResponse(sqsAnswer(null))).toEqual({ body: CALLBACK_ACCEPTED_RESPONSE, status: undefined });
  });

  test('answers 413 for a callback whose body was dropped (the only message with an attribute)', () => {
    expect(renderResponse(sqsAnswer('0123456789abcdef0123456789abcdef'))).toEqual({ body: CALLBACK_TOO_LARGE_RESPONSE, status: 413 });
  });
});

describe('webhook responses', () => {
  test('are JSON', () => {
    // GIVEN / WHEN
    const accepted = JSON.parse(CALLBACK_ACCEPTED_RESPONSE);
    const error = JSON.parse(CALLBACK_ERROR_RESPONSE);
    expect(JSON.parse(CALLBACK_TOO_LARGE_RESPONSE)).toMatchObject({ status: 'rejected' });

    // THEN
    expect(accepted).toEqual({ status: 'accepted' });
    expect(error).toMatchObject({ status: 'error' });
  });
});
