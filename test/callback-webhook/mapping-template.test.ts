import { render } from 'velocityjs';
import { CALLBACK_ACCEPTED_RESPONSE, CALLBACK_ERROR_RESPONSE, CALLBACK_REQUEST_TEMPLATE } from '../../src/callback-webhook/mapping-template';
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

/** Renders the request template as API Gateway would for a callback with `body` and `headers`. */
function renderCallback(body: string, headers: Record<string, string> = { 'Content-Type': 'application/json' }): Rendered {
  const output = render(CALLBACK_REQUEST_TEMPLATE, {
    input: {
      body,
      params: () => ({ header: new HeaderMap(headers), path: {}, querystring: {} }),
    },
    util: { base64Encode, urlEncode: javaUrlEncode },
    context: {
      requestTimeEpoch: REQUEST_TIME_EPOCH,
      requestId: 'c0ffee00-1111-2222-3333-444455556666',
      identity: { sourceIp: '203.0.113.7' },
    },
  });
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

describe('webhook responses', () => {
  test('are JSON', () => {
    // GIVEN / WHEN
    const accepted = JSON.parse(CALLBACK_ACCEPTED_RESPONSE);
    const error = JSON.parse(CALLBACK_ERROR_RESPONSE);

    // THEN
    expect(accepted).toEqual({ status: 'accepted' });
    expect(error).toMatchObject({ status: 'error' });
  });
});
