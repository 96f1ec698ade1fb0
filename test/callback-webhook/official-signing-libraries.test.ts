/**
 * The signature presets against the schemes' official libraries (devDependencies): what they sign,
 * ours verifies; what ours signs, they verify; and ours refuses every variant of a header that
 * theirs refuses (case, padding, non-canonical base64), so a preset is never laxer than its scheme.
 * Where ours is stricter than theirs it says so (docs/security.md, "Stricter than the libraries").
 */
import { randomBytes } from 'crypto';
import { sign as octokitSign, verify as octokitVerify } from '@octokit/webhooks-methods';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import Stripe from 'stripe';
import { WebhookSignature } from '../../src';
import { SignatureSpec } from '../../src/callback-webhook/signature-spec';
import { signCallback, signingKey, UnusableSecretError, verifySignature } from '../../src/callback-webhook/signature-verification';
import { testStack } from '../util';

const secret = () => secretsmanager.Secret.fromSecretNameV2(testStack(), 'S', 'signing');
const STANDARD = WebhookSignature.standardWebhooks(secret())._spec;
const STRIPE = WebhookSignature.stripe(secret())._spec;
const GITHUB = WebhookSignature.github(secret())._spec;
const headersOf = (h: Record<string, string>) => new Map(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
const nowSeconds = () => Math.floor(Date.now() / 1000);
const BODY = '{"jobId":"job-1","status":"DONE","note":"café ☕"}';

/**
 * HTTP delivers a header's value without leading or trailing whitespace (RFC 9110, section 5.5), so
 * that is what the official libraries would be given; ours gets the raw value.
 */
const delivered = (value: string) => value.trim();

/** Variants of one signature text a sloppy parser might accept. */
function variants(signature: string, encoding: 'hex' | 'base64'): string[] {
  const out = [signature.toUpperCase(), signature.toLowerCase(), ` ${signature}`, `${signature} `, `${signature}\t`];
  if (encoding === 'base64') {
    const bare = signature.replace(/=+$/, '');
    out.push(bare, `${bare}=`, `${signature}=`, `${signature}==`);
    // The same bytes with other trailing bits (non-canonical base64).
    const last = bare[bare.length - 1];
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const index = alphabet.indexOf(last);
    out.push(`${bare.slice(0, -1)}${alphabet[index % 2 === 0 ? index + 1 : index - 1]}${signature.slice(bare.length)}`);
    out.push(signature.replace(/\+/g, '-').replace(/\//g, '_')); // base64url
  } else {
    out.push(signature.slice(0, -1), `${signature}0`, `0x${signature}`);
  }
  return [...new Set(out)].filter((v) => v !== signature);
}

describe('Standard Webhooks (standardwebhooks)', () => {
  const key = randomBytes(32);
  const whsec = `whsec_${key.toString('base64')}`;
  const official = new StandardWebhook(whsec);

  test('what the official library signs, ours verifies; what ours signs, it verifies', () => {
    const at = nowSeconds();
    const theirs = official.sign('msg_1', new Date(at * 1000), BODY);
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(at), 'webhook-signature': theirs };
    expect(verifySignature(STANDARD, whsec, Buffer.from(BODY), headersOf(headers), at)).toBeUndefined();

    const ours = signCallback(STANDARD, whsec, BODY, at, 'msg_2');
    expect(ours['webhook-signature']).toBe(official.sign('msg_2', new Date(at * 1000), BODY));
    expect(official.verify(BODY, ours, { jsonParse: false } as any)).toBeUndefined();
  });

  test('every variant of a signature the official library refuses, ours refuses', () => {
    const at = nowSeconds();
    const signature = official.sign('msg_1', new Date(at * 1000), BODY).slice(3);
    const headerVariants = [
      ...variants(signature, 'base64').map((v) => `v1,${v}`),
      `v1, ${signature}`, `V1,${signature}`, `v1;${signature}`, `v1,${signature.replace(/=+$/, '')} v0,x`,
      `v2,x\tv1,${signature}`, `v1=${signature}`, signature,
    ];
    for (const variant of headerVariants) {
      const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(at), 'webhook-signature': variant };
      const theirs = (() => {
        try {
          official.verify(BODY, { ...headers, 'webhook-signature': delivered(variant) });
          return true;
        } catch {
          return false;
        }
      })();
      const ours = verifySignature(STANDARD, whsec, Buffer.from(BODY), headersOf(headers), at) === undefined;
      if (ours) {
        expect({ variant, theirs }).toEqual({ variant, theirs: true });
      }
    }
  });

  test.each([
    ['whsec_ alone (an empty key)', 'whsec_'],
    ['whitespace', '  \n'],
    ['invalid base64', 'whsec_not base64!'],
    ['unpadded base64', `whsec_${Buffer.from('0123456789abcdefX').toString('base64').replace(/=+$/, '')}`],
    ['non-canonical base64 (other trailing bits)', 'whsec_YR=='],
  ])('a secret that is %s gives no key, and nothing verifies with it', (_name, bad) => {
    expect(signingKey(STANDARD, bad)).toEqual({ problem: expect.any(String) });
    const at = nowSeconds();
    // A callback "signed" with the key a lax decoder would derive (empty, or the bytes Node skips to).
    const laxKey = Buffer.from(bad.trim().replace(/^whsec_/, ''), 'base64');
    const forged = signCallback({ ...STANDARD, secretEncoding: 'base64' }, laxKey.length > 0 ? laxKey.toString('base64') : 'AA==', BODY, at, 'msg_1');
    expect(() => verifySignature(STANDARD, bad, Buffer.from(BODY), headersOf(forged), at)).toThrow(UnusableSecretError);
  });

  test('the official library also refuses a secret that decodes to an empty key', () => {
    expect(() => new StandardWebhook('whsec_')).toThrow(/empty/);
  });
});

describe('Stripe (stripe)', () => {
  const whsec = `whsec_${randomBytes(24).toString('hex')}`;

  test('what the official library signs, ours verifies; what ours signs, it verifies', () => {
    const at = nowSeconds();
    const theirs = Stripe.webhooks.generateTestHeaderString({ payload: BODY, secret: whsec, timestamp: at });
    expect(verifySignature(STRIPE, whsec, Buffer.from(BODY), headersOf({ 'Stripe-Signature': theirs }), at)).toBeUndefined();

    const ours = signCallback(STRIPE, whsec, BODY, at)['Stripe-Signature'];
    expect(ours).toBe(theirs);
    expect(Stripe.webhooks.signature!.verifyHeader(BODY, ours, whsec, 300)).toBe(true);
  });

  test('every variant of a signature the official library refuses, ours refuses', () => {
    const at = nowSeconds();
    const signature = /v1=([0-9a-f]+)/.exec(Stripe.webhooks.generateTestHeaderString({ payload: BODY, secret: whsec, timestamp: at }))![1];
    expect(variants(signature, 'hex')).toContain(signature.toUpperCase());
    const headerVariants = [
      ...variants(signature, 'hex').map((v) => `t=${at},v1=${v}`),
      `t=${at}, v1=${signature}`, `t=${at} ,v1=${signature}`, `t=${at},t=${at + 1},v1=${signature}`,
      `T=${at},v1=${signature}`, `t=${at},V1=${signature}`, `t=${at};v1=${signature}`, `v1=${signature}`,
    ];
    for (const header of headerVariants) {
      const theirs = (() => {
        try {
          return Stripe.webhooks.signature!.verifyHeader(BODY, delivered(header), whsec, 300);
        } catch {
          return false;
        }
      })();
      const ours = verifySignature(STRIPE, whsec, Buffer.from(BODY), headersOf({ 'Stripe-Signature': header }), at) === undefined;
      if (ours) {
        expect({ header, theirs }).toEqual({ header, theirs: true });
      }
    }
  });

  test.each([
    ['empty', ''],
    ['whitespace', ' \t\n'],
    ['only the whsec_ prefix', 'whsec_'],
  ])('a secret that is %s gives no key', (_name, bad) => {
    expect(signingKey(STRIPE, bad)).toEqual({ problem: expect.any(String) });
  });

  test('the official library refuses a blank secret too', () => {
    const header = Stripe.webhooks.generateTestHeaderString({ payload: BODY, secret: ' ', timestamp: nowSeconds() });
    expect(() => Stripe.webhooks.signature!.verifyHeader(BODY, header, ' ', 300)).toThrow(/No webhook secret/);
  });
});

describe('GitHub (@octokit/webhooks-methods)', () => {
  const key = randomBytes(20).toString('hex');

  test('what the official library signs, ours verifies; what ours signs, it verifies', async () => {
    const theirs = await octokitSign(key, BODY);
    expect(verifySignature(GITHUB, key, Buffer.from(BODY), headersOf({ 'X-Hub-Signature-256': theirs }), 0)).toBeUndefined();
    const ours = signCallback(GITHUB, key, BODY, 0)['X-Hub-Signature-256'];
    expect(ours).toBe(theirs);
    expect(await octokitVerify(key, BODY, ours)).toBe(true);
  });

  test('every variant of a signature the official library refuses, ours refuses', async () => {
    const signature = (await octokitSign(key, BODY)).slice('sha256='.length);
    for (const variant of variants(signature, 'hex')) {
      const header = `sha256=${variant}`;
      const theirs = await octokitVerify(key, BODY, delivered(header));
      const ours = verifySignature(GITHUB, key, Buffer.from(BODY), headersOf({ 'X-Hub-Signature-256': header }), 0) === undefined;
      if (ours) {
        expect({ variant, theirs }).toEqual({ variant, theirs: true });
      }
    }
    // The prefix is case-sensitive in theirs and ours.
    expect(await octokitVerify(key, BODY, `SHA256=${signature}`)).toBe(false);
    expect(verifySignature(GITHUB, key, Buffer.from(BODY), headersOf({ 'X-Hub-Signature-256': `SHA256=${signature}` }), 0)).toMatch(/does not start with/);
  });
});

describe('signingKey', () => {
  const custom = (secretEncoding: SignatureSpec['secretEncoding']): SignatureSpec => ({ ...GITHUB, secretEncoding });

  test('a key under 16 bytes is usable but flagged short; 16 bytes and more is not', () => {
    expect(signingKey(custom('utf8'), 'short')).toEqual({ key: Buffer.from('short'), short: true });
    expect(signingKey(custom('utf8'), '0123456789abcdef')).toEqual({ key: Buffer.from('0123456789abcdef'), short: false });
    expect(signingKey(custom('base64'), Buffer.from('tiny').toString('base64'))).toMatchObject({ short: true });
  });

  test('a base64 or whsec_ secret is trimmed (a trailing newline from a file), a UTF-8 one is used as is', () => {
    const key = randomBytes(32);
    expect(signingKey(custom('base64'), `${key.toString('base64')}\n`)).toEqual({ key, short: false });
    expect(signingKey(STANDARD, ` whsec_${key.toString('base64')}\n`)).toEqual({ key, short: false });
    expect(signingKey(custom('utf8'), 'a secret of more than 16 bytes\n')).toEqual({ key: Buffer.from('a secret of more than 16 bytes\n'), short: false });
  });

  test('the problem never contains the secret', () => {
    const bad = 'whsec_c2VjcmV0!';
    const key = signingKey(STANDARD, bad);
    expect('problem' in key && key.problem).not.toContain('c2VjcmV0');
  });
});
