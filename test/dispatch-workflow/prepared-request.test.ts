import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequestPreparer } from '../../src/dispatch-workflow/prepared-request';

let server: http.Server;
let base: string;
let answer: { status: number; headers?: Record<string, string>; body?: string; delayMs?: number };
const received: Array<{ at: number; method?: string; url?: string; headers: http.IncomingHttpHeaders; body: string }> = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ at: Date.now(), method: req.method, url: req.url, headers: req.headers, body });
      setTimeout(() => {
        res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
        res.end(answer.body);
      }, answer.delayMs ?? 0);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise((r) => {
  server.closeAllConnections();
  server.close(r);
}));
beforeEach(() => {
  received.length = 0;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('createRequestPreparer', () => {
  test('GIVEN a prepared request WHEN it is not sent yet THEN nothing reaches the server; WHEN sent THEN the request and the response are whole', async () => {
    // GIVEN
    answer = { status: 201, headers: { 'retry-after': '3', 'x-multi': 'a' }, body: '{"jobId":"j-1"}' };
    const prepare = createRequestPreparer();
    const prepared = prepare(`${base}/vendor/jobs?x=1`, { method: 'POST', headers: { 'idempotency-key': 'r-1', 'content-type': 'application/json' }, body: '{"a":"é"}' });

    // WHEN waiting
    await sleep(100);

    // THEN nothing was written
    expect(received).toHaveLength(0);

    // WHEN sent
    const response = await prepared.send();

    // THEN
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ method: 'POST', url: '/vendor/jobs?x=1', body: '{"a":"é"}' });
    expect(received[0].headers['idempotency-key']).toBe('r-1');
    expect(received[0].headers['content-length']).toBe(String(Buffer.byteLength('{"a":"é"}')));
    expect(response.status).toBe(201);
    expect(response.headers.get('retry-after')).toBe('3');
    expect(await response.text()).toBe('{"jobId":"j-1"}');
    await expect(prepared.send()).rejects.toThrow(/sent once/);
  });

  test('GIVEN a 204 answer WHEN sent THEN the response has no body (as fetch gives it)', async () => {
    answer = { status: 204 };
    const response = await createRequestPreparer()(`${base}/x`, { method: 'DELETE', headers: {} }).send();
    expect(response.status).toBe(204);
    expect(await response.text()).toBe('');
  });

  test('GIVEN a cancelled request (slot given up) THEN it never reaches the server', async () => {
    answer = { status: 200, body: '{}' };
    const prepared = createRequestPreparer()(`${base}/x`, { method: 'POST', headers: {}, body: '{}' });
    prepared.cancel();
    await sleep(100);
    expect(received).toHaveLength(0);
    await expect(prepared.send()).rejects.toThrow(/sent once/);
  });

  test('GIVEN a server slower than the timeout WHEN sent THEN it rejects with a TimeoutError, as fetch does', async () => {
    answer = { status: 200, body: '{}', delayMs: 500 };
    const prepared = createRequestPreparer()(`${base}/slow`, { method: 'GET', headers: {} });
    await expect(prepared.send(AbortSignal.timeout(50))).rejects.toMatchObject({ name: 'TimeoutError' });
  });

  test('GIVEN nothing listening WHEN sent THEN it rejects with the connection error', async () => {
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const prepared = createRequestPreparer()(`http://127.0.0.1:${port}/x`, { method: 'POST', headers: {}, body: '{}' });
    await sleep(50);
    await expect(prepared.send()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  test('GIVEN two requests in turn WHEN sent THEN the second reuses the kept-alive connection', async () => {
    answer = { status: 200, body: '{}' };
    const prepare = createRequestPreparer();
    const ports: number[] = [];
    const onConnection = (socket: import('node:net').Socket) => ports.push(socket.remotePort ?? 0);
    server.on('connection', onConnection);
    try {
      await (await prepare(`${base}/a`, { method: 'GET', headers: {} }).send()).text();
      await (await prepare(`${base}/b`, { method: 'GET', headers: {} }).send()).text();
    } finally {
      server.off('connection', onConnection);
    }
    expect(received).toHaveLength(2);
    expect(new Set(ports).size).toBeLessThanOrEqual(1);
  });

  // ---- issue 13, item 5: a connected socket before the slot, lateness when the bytes leave ----

  test('GIVEN a new connection WHEN prepared THEN it is not connected until its handshake is done, then it is; a kept-alive one is connected at once', async () => {
    answer = { status: 200, body: '{}' };
    const prepare = createRequestPreparer();

    // GIVEN an empty pool: the request opens a new connection
    const first = prepare(`${base}/a`, { method: 'GET', headers: {} });
    expect(first.connected).toBe(false);
    await until(() => first.connected);
    expect(first.broken).toBe(false);
    await (await first.send()).text();

    // WHEN the next request takes the kept-alive connection
    const second = prepare(`${base}/b`, { method: 'GET', headers: {} });
    await until(() => second.connected);
    await (await second.send()).text();
    expect(received).toHaveLength(2);
  });

  test('GIVEN an HTTPS connection whose TLS handshake does not finish WHEN the TCP connection is up THEN the request is still not connected', async () => {
    // GIVEN a server that accepts TCP and never answers the TLS ClientHello
    const sockets: net.Socket[] = [];
    const silentServer = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((r) => silentServer.listen(0, '127.0.0.1', r));
    try {
      const prepared = createRequestPreparer()(`https://127.0.0.1:${(silentServer.address() as AddressInfo).port}/x`, { method: 'POST', headers: {}, body: '{}' });

      // WHEN the TCP connection is accepted
      await until(() => sockets.length > 0);
      await sleep(20);

      // THEN (before: a request on it was written as if it could leave at once)
      expect(prepared.connected).toBe(false);
      expect(prepared.broken).toBe(false);
      prepared.cancel();
    } finally {
      sockets.forEach((socket) => socket.destroy());
      await new Promise((r) => silentServer.close(r));
    }
  });

  test('GIVEN an HTTPS server WHEN the TLS handshake completes THEN the request is connected, and a kept-alive connection is reused', async () => {
    // GIVEN a throwaway self-signed certificate for 127.0.0.1 (made here: no key is committed)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prepared-tls-'));
    const keyFile = path.join(dir, 'key.pem');
    const certFile = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const tlsServer = https.createServer({ key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) }, (req, res) => {
      req.resume();
      req.on('end', () => res.end('{}'));
    });
    await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
    try {
      // The client trusts the throwaway certificate (and verifies it: IP 127.0.0.1).
      const prepare = createRequestPreparer(4000, { ca: fs.readFileSync(certFile) });
      const url = `https://127.0.0.1:${(tlsServer.address() as AddressInfo).port}/x`;

      // WHEN a new connection completes its handshake
      const first = prepare(url, { method: 'GET', headers: {} });
      expect(first.connected).toBe(false);
      await until(() => first.connected);

      // THEN it is connected and sends; the next request takes the kept-alive connection
      expect(first.broken).toBe(false);
      expect((await first.send()).status).toBe(200);
      const second = prepare(url, { method: 'GET', headers: {} });
      await until(() => second.connected);
      expect((await second.send()).status).toBe(200);
    } finally {
      tlsServer.closeAllConnections();
      await new Promise((r) => tlsServer.close(r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('GIVEN a connection refused WHEN prepared THEN it is broken, never connected', async () => {
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const prepared = createRequestPreparer()(`http://127.0.0.1:${port}/x`, { method: 'POST', headers: {}, body: '{}' });
    await until(() => prepared.broken);
    expect(prepared.connected).toBe(false);
    prepared.cancel();
  });

  test('GIVEN a prepared request WHEN sent THEN onWritten is called once its bytes are handed to the operating system, before the answer', async () => {
    answer = { status: 200, body: '{}', delayMs: 30 };
    const prepared = createRequestPreparer()(`${base}/w`, { method: 'POST', headers: {}, body: '{"a":1}' });
    await until(() => prepared.connected);
    const events: string[] = [];
    const response = prepared.send(undefined, () => events.push('written'));
    await response.then(() => events.push('answered'));
    expect(events).toEqual(['written', 'answered']);
  });
});

/** Polls `condition` on the event loop (socket events are real here), for at most 2 s. */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) {
    await sleep(10);
  }
  expect(condition()).toBe(true);
}

