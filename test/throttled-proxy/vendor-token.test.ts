import { GetSecretValueCommand, ResourceNotFoundException, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { VendorCredentialUnusableError } from '../../src/throttled-proxy/vendor-secret';
import {
  DEFAULT_EXPIRES_IN_SECONDS,
  FetchFunction,
  loadConfig,
  VendorTokenConfig,
  VendorTokenError,
  VendorTokenProvider,
} from '../../src/throttled-proxy/vendor-token';

const SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:vendor-oauth-AbCdEf';
const TOKEN_URL = 'https://auth.example.com/oauth/token';
const CLIENT_ID = 'client-123';
const CLIENT_SECRET = 's3cr3t:with&special=chars é';
const ROTATED_SECRET = 'rotated-secret-456';
const ACCESS_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.payload.signature';

const secretsManager = mockClient(SecretsManagerClient);

interface FetchCall {
  readonly url: string;
  readonly init: RequestInit;
}

interface Harness {
  readonly provider: VendorTokenProvider;
  readonly calls: FetchCall[];
  /** Moves the fake clock forward. */
  advance(seconds: number): void;
}

function tokenResponse(body: unknown, status = 200): Response {
  return new Response(typeof body === 'string' ? body : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

function secretJson(clientSecret = CLIENT_SECRET, clientId = CLIENT_ID): string {
  return JSON.stringify({ clientId, clientSecret });
}

/** A provider whose fetch answers with `responses` in turn (the last one repeats). */
function harness(responses: Array<() => Response | Promise<Response>>, config: Partial<VendorTokenConfig> = {}): Harness {
  let now = Date.UTC(2025, 0, 1);
  const calls: FetchCall[] = [];
  const fetch: FetchFunction = async (url, init) => {
    calls.push({ url, init });
    return responses[Math.min(calls.length - 1, responses.length - 1)]();
  };
  const provider = new VendorTokenProvider(
    { secretArn: SECRET_ARN, tokenUrl: TOKEN_URL, clientAuthentication: 'BASIC', ...config },
    { secretsManager: new SecretsManagerClient({}), fetch, now: () => now },
  );
  return { provider, calls, advance: (seconds) => { now += seconds * 1000; } };
}

const ok = (expiresIn?: unknown, tokenType: unknown = 'bearer', accessToken = ACCESS_TOKEN) => () =>
  tokenResponse({ access_token: accessToken, token_type: tokenType, ...(expiresIn === undefined ? {} : { expires_in: expiresIn }) });

function formOf(call: FetchCall): URLSearchParams {
  return new URLSearchParams(call.init.body as string);
}

function headersOf(call: FetchCall): Record<string, string> {
  return call.init.headers as Record<string, string>;
}

/** The error `promise` rejects with. */
async function errorOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

beforeEach(() => {
  secretsManager.reset();
  secretsManager.on(GetSecretValueCommand).resolves({ SecretString: secretJson() });
});

describe('VendorTokenProvider', () => {
  describe('token request', () => {
    test('authenticates with HTTP Basic by default: form-urlencoded id and secret, base64 (RFC 6749 2.3.1)', async () => {
      // GIVEN
      const h = harness([ok(3600)], { scope: 'jobs:write jobs:read', audience: 'https://api.vendor.example.com' });

      // WHEN
      await h.provider.getAuthorization();

      // THEN
      expect(h.calls).toHaveLength(1);
      const [call] = h.calls;
      expect(call.url).toBe(TOKEN_URL);
      expect(call.init.method).toBe('POST');
      expect(headersOf(call)['Content-Type']).toBe('application/x-www-form-urlencoded');
      const encoded = 'client-123:s3cr3t%3Awith%26special%3Dchars+%C3%A9';
      expect(headersOf(call).Authorization).toBe(`Basic ${Buffer.from(encoded).toString('base64')}`);
      const form = formOf(call);
      expect(Object.fromEntries(form)).toEqual({
        grant_type: 'client_credentials',
        scope: 'jobs:write jobs:read',
        audience: 'https://api.vendor.example.com',
      });
      expect(call.init.body as string).not.toContain('s3cr3t');
    });

    test('puts client_id and client_secret in the form body with BODY client authentication', async () => {
      // GIVEN
      const h = harness([ok(3600)], { clientAuthentication: 'BODY' });

      // WHEN
      await h.provider.getAuthorization();

      // THEN
      const [call] = h.calls;
      expect(headersOf(call).Authorization).toBeUndefined();
      expect(call.init.body).toBe(`grant_type=client_credentials&client_id=client-123&client_secret=${encodeURIComponent(CLIENT_SECRET).replace(/%20/g, '+')}`);
      expect(Object.fromEntries(formOf(call))).toEqual({ grant_type: 'client_credentials', client_id: CLIENT_ID, client_secret: CLIENT_SECRET });
    });

    test('sends neither scope nor audience when not configured, and does not follow redirects', async () => {
      // GIVEN
      const h = harness([ok(3600)]);

      // WHEN
      await h.provider.getAuthorization();

      // THEN
      expect(Object.fromEntries(formOf(h.calls[0]))).toEqual({ grant_type: 'client_credentials' });
      expect(h.calls[0].init.redirect).toBe('manual');
      expect(h.calls[0].init.signal).toBeDefined();
    });

    test.each([
      ['bearer', 'Bearer'],
      ['BEARER', 'Bearer'],
      [undefined, 'Bearer'],
      ['mac', 'Mac'],
      ['DPoP', 'DPoP'],
    ])('turns token_type %p into the header prefix %p', async (tokenType, prefix) => {
      // GIVEN
      const h = harness([ok(3600, tokenType)]);

      // WHEN / THEN
      await expect(h.provider.getAuthorization()).resolves.toBe(`${prefix} ${ACCESS_TOKEN}`);
    });
  });

  describe('caching', () => {
    test('reuses the token and the secret until 60 seconds before the token expires', async () => {
      // GIVEN
      const h = harness([ok(3600, 'bearer', 'token-1'), ok(3600, 'bearer', 'token-2')]);

      // WHEN
      const first = await h.provider.getAuthorization();
      h.advance(3600 - 61);
      const cached = await h.provider.getAuthorization();
      h.advance(1);
      const refreshed = await h.provider.getAuthorization();

      // THEN
      expect(first).toBe('Bearer token-1');
      expect(cached).toBe('Bearer token-1');
      expect(refreshed).toBe('Bearer token-2');
      expect(h.calls).toHaveLength(2);
      expect(secretsManager).toHaveReceivedCommandTimes(GetSecretValueCommand, 1);
      expect(secretsManager).toHaveReceivedCommandWith(GetSecretValueCommand, { SecretId: SECRET_ARN });
    });

    test(`assumes ${DEFAULT_EXPIRES_IN_SECONDS} seconds when expires_in is absent`, async () => {
      // GIVEN
      const h = harness([ok(undefined, 'bearer', 'token-1'), ok(undefined, 'bearer', 'token-2')]);

      // WHEN
      await h.provider.getAuthorization();
      h.advance(DEFAULT_EXPIRES_IN_SECONDS - 61);
      const cached = await h.provider.getAuthorization();
      h.advance(2);
      const refreshed = await h.provider.getAuthorization();

      // THEN
      expect(cached).toBe('Bearer token-1');
      expect(refreshed).toBe('Bearer token-2');
    });

    test('reads expires_in given as a string', async () => {
      // GIVEN
      const h = harness([ok('600', 'bearer', 'token-1'), ok(600, 'bearer', 'token-2')]);

      // WHEN
      await h.provider.getAuthorization();
      h.advance(600 - 60);

      // THEN
      await expect(h.provider.getAuthorization()).resolves.toBe('Bearer token-2');
    });

    test('keeps a short-lived token for half its lifetime rather than not at all', async () => {
      // GIVEN
      const h = harness([ok(60, 'bearer', 'token-1'), ok(60, 'bearer', 'token-2')]);

      // WHEN
      await h.provider.getAuthorization();
      h.advance(29);
      const cached = await h.provider.getAuthorization();
      h.advance(1);
      const refreshed = await h.provider.getAuthorization();

      // THEN
      expect(cached).toBe('Bearer token-1');
      expect(refreshed).toBe('Bearer token-2');
    });

    test('shares one token request between concurrent callers (single flight)', async () => {
      // GIVEN
      let release!: () => void;
      const gate = new Promise<void>((resolve) => { release = resolve; });
      const h = harness([async () => {
        await gate;
        return ok(3600)();
      }]);

      // WHEN
      const pending = [h.provider.getAuthorization(), h.provider.getAuthorization(), h.provider.getAuthorization()];
      await new Promise((resolve) => setImmediate(resolve));
      release();
      const results = await Promise.all(pending);

      // THEN
      expect(results).toEqual([`Bearer ${ACCESS_TOKEN}`, `Bearer ${ACCESS_TOKEN}`, `Bearer ${ACCESS_TOKEN}`]);
      expect(h.calls).toHaveLength(1);
      expect(secretsManager).toHaveReceivedCommandTimes(GetSecretValueCommand, 1);
    });

    test('shares a failure too, and tries again on the next call', async () => {
      // GIVEN
      const h = harness([() => tokenResponse({ error: 'temporarily_unavailable' }, 503), ok(3600)]);

      // WHEN
      const results = await Promise.allSettled([h.provider.getAuthorization(), h.provider.getAuthorization()]);
      const retried = await h.provider.getAuthorization();

      // THEN
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      expect(retried).toBe(`Bearer ${ACCESS_TOKEN}`);
      expect(h.calls).toHaveLength(2);
    });
  });

  describe('secret rotation', () => {
    test('re-reads the secret and retries once when the token endpoint answers 401', async () => {
      // GIVEN: a cached token and secret, then the secret is rotated.
      const h = harness([
        ok(3600, 'bearer', 'token-1'),
        () => tokenResponse({ error: 'invalid_client' }, 401),
        ok(3600, 'bearer', 'token-2'),
      ]);
      await h.provider.getAuthorization();
      secretsManager.on(GetSecretValueCommand).resolves({ SecretString: secretJson(ROTATED_SECRET) });
      h.advance(3600);

      // WHEN
      const authorization = await h.provider.getAuthorization();

      // THEN
      expect(authorization).toBe('Bearer token-2');
      expect(h.calls).toHaveLength(3);
      expect(secretsManager).toHaveReceivedCommandTimes(GetSecretValueCommand, 2);
      expect(headersOf(h.calls[1]).Authorization).toBe(`Basic ${Buffer.from(`${CLIENT_ID}:s3cr3t%3Awith%26special%3Dchars+%C3%A9`).toString('base64')}`);
      expect(headersOf(h.calls[2]).Authorization).toBe(`Basic ${Buffer.from(`${CLIENT_ID}:${ROTATED_SECRET}`).toString('base64')}`);
    });

    test('treats 400 invalid_client (credentials in the body) as a rejection too', async () => {
      // GIVEN
      const h = harness([() => tokenResponse({ error: 'invalid_client' }, 400), ok(3600)], { clientAuthentication: 'BODY' });
      secretsManager.on(GetSecretValueCommand)
        .resolvesOnce({ SecretString: secretJson() })
        .resolves({ SecretString: secretJson(ROTATED_SECRET) });

      // WHEN
      await h.provider.getAuthorization();

      // THEN
      expect(h.calls).toHaveLength(2);
      expect(formOf(h.calls[1]).get('client_secret')).toBe(ROTATED_SECRET);
    });

    test('retries only once: a second 401 fails with the status and without the secret', async () => {
      // GIVEN: the endpoint echoes the credentials it was given (as some do).
      const h = harness([(): Response => tokenResponse(`{"error":"invalid_client","client_secret":"${CLIENT_SECRET}"}`, 401)],
        { clientAuthentication: 'BODY' });

      // WHEN
      const error = await errorOf(h.provider.getAuthorization());

      // THEN
      expect(h.calls).toHaveLength(2);
      expect(secretsManager).toHaveReceivedCommandTimes(GetSecretValueCommand, 2);
      expect(error).toBeInstanceOf(VendorTokenError);
      expect(error.name).toBe('VendorTokenError');
      expect(error.message).toContain('HTTP 401');
      expect(error.message).toContain('after re-reading the client secret');
      expect(error.message).toContain('invalid_client');
      expect(error.message).toContain('[redacted]');
      expect(error.message).not.toContain('s3cr3t');
    });

    test('does not retry other errors', async () => {
      // GIVEN
      const h = harness([() => tokenResponse({ error: 'invalid_scope' }, 400)]);

      // WHEN
      const error = await errorOf(h.provider.getAuthorization());

      // THEN
      expect(h.calls).toHaveLength(1);
      expect(error.message).toBe(`Token endpoint ${TOKEN_URL} answered HTTP 400: {"error":"invalid_scope"}`);
    });
  });

  describe('errors', () => {
    test('names the status and truncates a long body', async () => {
      // GIVEN
      const h = harness([() => new Response(`<html>${'x'.repeat(5000)}</html>`, { status: 502, headers: { 'Content-Type': 'text/html' } })]);

      // WHEN
      const error = await errorOf(h.provider.getAuthorization());

      // THEN
      expect(error.message).toMatch(/^Token endpoint https:\/\/auth\.example\.com\/oauth\/token answered HTTP 502: <html>x+\.\.\. \(5013 characters\)$/);
      expect(error.message.length).toBeLessThan(450);
    });

    test('reports a network failure without the credentials', async () => {
      // GIVEN
      const h = harness([() => {
        throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
      }]);

      // WHEN
      const error = await errorOf(h.provider.getAuthorization());

      // THEN
      expect(error.message).toBe(`Token request to ${TOKEN_URL} failed: TypeError: fetch failed (ECONNREFUSED)`);
    });

    test('reports a redirect instead of following it', async () => {
      // GIVEN
      const h = harness([() => new Response(null, { status: 302, headers: { Location: 'https://elsewhere.example.com/' } })]);

      // WHEN / THEN
      await expect(h.provider.getAuthorization()).rejects.toThrow(`Token endpoint ${TOKEN_URL} answered HTTP 302: (empty body)`);
    });

    test.each([
      ['a body that is not JSON', () => new Response('access_token=abc', { status: 200, headers: { 'Content-Type': 'text/plain' } }), /with a body that is not JSON \(content type 'text\/plain'\)/],
      ['no access_token', () => tokenResponse({ token_type: 'bearer', expires_in: 3600 }), /without a usable access_token \(fields: token_type, expires_in\)/],
      ['JSON that is not an object', () => tokenResponse('"abc"'), /JSON that is not an object/],
    ])('fails on a 200 answer with %s, quoting no body', async (_name, response, message) => {
      // GIVEN
      const h = harness([response]);

      // WHEN
      const error = await errorOf(h.provider.getAuthorization());

      // THEN
      expect(error.message).toMatch(message);
      expect(error.message).not.toContain('abc');
    });

    test.each([
      ['clientSecret is missing', JSON.stringify({ clientId: CLIENT_ID }), 'missing or not a string: clientSecret'],
      ['both fields are missing', JSON.stringify({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET }), 'missing or not a string: clientId, clientSecret'],
      ['clientId is not a string', JSON.stringify({ clientId: 42, clientSecret: CLIENT_SECRET }), 'missing or not a string: clientId'],
      ['it is not JSON', `clientSecret=${CLIENT_SECRET}`, 'is not JSON: store {"clientId": "...", "clientSecret": "..."}'],
      ['it is a JSON string', JSON.stringify(CLIENT_SECRET), 'is JSON but not an object (a string)'],
    ])('fails clearly when the secret is malformed (%s), without quoting it, as VendorCredentialUnusable', async (_name, secretString, message) => {
      // GIVEN
      secretsManager.on(GetSecretValueCommand).resolves({ SecretString: secretString });
      const h = harness([ok(3600)]);

      // WHEN
      const error = await errorOf(h.provider.getAuthorization());

      // THEN the workflow parks the request at once (a token endpoint failure is VendorTokenError, retried)
      expect(error).toBeInstanceOf(VendorCredentialUnusableError);
      expect(error.name).toBe('VendorCredentialUnusable');
      expect(error.message).toContain(`secret ${SECRET_ARN}`);
      expect(error.message).toContain(message);
      expect(error.message).not.toContain('s3cr3t');
      expect(h.calls).toHaveLength(0);
    });

    test('fails clearly on a binary secret', async () => {
      // GIVEN
      secretsManager.on(GetSecretValueCommand).resolves({ SecretBinary: new Uint8Array([1, 2, 3]) });
      const h = harness([ok(3600)]);

      // WHEN
      const error = await errorOf(h.provider.getAuthorization());

      // THEN
      expect(error.name).toBe('VendorCredentialUnusable');
      expect(error.message).toMatch(/has no SecretString \(it is a binary secret, which is not supported\)/);
    });

    test('names the secret when it cannot be read', async () => {
      // GIVEN
      secretsManager.on(GetSecretValueCommand).rejects(new ResourceNotFoundException({ message: 'Secrets Manager can\'t find the specified secret.', $metadata: {} }));
      const h = harness([ok(3600)]);

      // WHEN / THEN
      await expect(h.provider.getAuthorization()).rejects
        .toThrow(`Could not read the OAuth client secret ${SECRET_ARN}: ResourceNotFoundException: Secrets Manager can't find the specified secret.`);
    });
  });
});

describe('loadConfig', () => {
  const env = { SECRET_ARN, TOKEN_URL, CLIENT_AUTHENTICATION: 'BODY', SCOPE: 'jobs', AUDIENCE: 'api' };

  test('reads the variables the construct sets', () => {
    expect(loadConfig(env)).toEqual({ secretArn: SECRET_ARN, tokenUrl: TOKEN_URL, clientAuthentication: 'BODY', scope: 'jobs', audience: 'api' });
  });

  test('defaults to Basic client authentication, no scope and no audience', () => {
    expect(loadConfig({ SECRET_ARN, TOKEN_URL })).toEqual({ secretArn: SECRET_ARN, tokenUrl: TOKEN_URL, clientAuthentication: 'BASIC' });
  });

  test.each([
    [{ ...env, SECRET_ARN: undefined }, 'Environment variable SECRET_ARN is not set'],
    [{ ...env, TOKEN_URL: undefined }, 'Environment variable TOKEN_URL is not set'],
    [{ ...env, TOKEN_URL: 'http://auth.example.com/token' }, "Environment variable TOKEN_URL must be an https URL (given 'http://auth.example.com/token')"],
    [{ ...env, CLIENT_AUTHENTICATION: 'POST' }, "Environment variable CLIENT_AUTHENTICATION must be BASIC or BODY (given 'POST')"],
  ])('fails at cold start on a bad configuration (%#)', (badEnv, message) => {
    expect(() => loadConfig(badEnv)).toThrow(message);
  });
});
