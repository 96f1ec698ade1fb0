/**
 * HTTP requests built before their pacing slot and only written at it.
 *
 * `fetch` does its work when it is called: it validates and copies the request, takes a connection
 * from its pool and serializes the headers, all after the slot has come. A request built with
 * `node:http` beforehand (connection taken from a keep-alive pool, headers set) leaves one socket
 * write for the slot itself: less code runs between the timer and the wire, so requests leave
 * closer to their slots (the fire lateness that `L` has to cover).
 *
 * Nothing is sent before `send()`: Node writes a request's head with its first body chunk or at
 * `end()`, and `send()` is what calls `end()`.
 */
import * as http from 'node:http';
import * as https from 'node:https';

/** A request ready to go. */
export interface PreparedRequest {
  /**
   * Whether the request holds a connected socket now: a kept-alive one from the pool, or a new one
   * whose TCP (and TLS) handshake has completed. Only then does `send()` put the request on the
   * wire at once; on a socket still connecting, the bytes wait for the handshake (30-100 ms on a
   * new HTTPS connection), so the request would leave late for its slot.
   */
  readonly connected: boolean;
  /**
   * Whether the request can no longer be sent on its socket (it closed or failed before `send()`):
   * prepare another one.
   */
  readonly broken: boolean;
  /**
   * Writes the request; resolves with the response (its body read). Aborted by `signal`.
   * `onWritten` is called when the whole request has been handed to the operating system (the
   * request's 'finish' event): the moment it leaves, as near as Node.js can tell.
   * `maxBodyBytes`: keep at most this many bytes of the body plus one (the rest is read and
   * dropped), so that a body over it is seen to be over it without being held in memory whole.
   */
  send(signal?: AbortSignal, onWritten?: () => void, maxBodyBytes?: number): Promise<Response>;
  /**
   * Sets (or replaces) a header before `send()`: Node writes the head only then, so a header that
   * depends on the moment of sending (the slot fired) can still change on a prepared request.
   */
  setHeader(name: string, value: string): void;
  /** Drops the request unsent (the slot was given up). */
  cancel(): void;
}

/** Builds a request for later. */
export type PrepareRequest = (url: string, init: { method: string; headers: Record<string, string>; body?: string }) => PreparedRequest;

/** Statuses whose responses have no body (the Response constructor refuses one). */
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/**
 * A `PrepareRequest` on `node:http` / `node:https` with keep-alive pools (one per protocol), for one
 * Lambda execution environment.
 *
 * @param freeSocketTimeoutMs idle pooled connections are closed after this long (below the
 *   server's own keep-alive timeout, so a reused connection is not one the server has closed).
 * @param tls TLS options of the HTTPS connections (e.g. `ca` for a private certificate authority).
 *   Default: Node's, which verify the server against the public roots.
 */
export function createRequestPreparer(freeSocketTimeoutMs: number = 4000, tls: Pick<https.AgentOptions, 'ca'> = {}): PrepareRequest {
  const agents = {
    'http:': new http.Agent({ keepAlive: true, timeout: freeSocketTimeoutMs }),
    'https:': new https.Agent({ ...tls, keepAlive: true, timeout: freeSocketTimeoutMs }),
  };
  return (url, init) => {
    const target = new URL(url);
    const protocol = target.protocol === 'https:' ? 'https:' : 'http:';
    const headers: Record<string, string> = { ...init.headers };
    if (init.body !== undefined) {
      headers['content-length'] = String(Buffer.byteLength(init.body));
    }
    const request = (protocol === 'https:' ? https : http).request(target, { method: init.method, headers, agent: agents[protocol] });
    // A failure before send() (e.g. the connection was refused) is kept and reported by send().
    let failure: Error | undefined;
    request.on('error', (error) => {
      failure ??= error;
    });
    // The socket's state, from the 'socket' event on (the agent assigns one on the next tick).
    let socketState: 'none' | 'connecting' | 'connected' | 'closed' = 'none';
    request.on('socket', (socket) => {
      socket.once('close', () => {
        socketState = 'closed';
      });
      // A socket from the keep-alive pool is connected (a closed one leaves the pool). A new one
      // is not before its handshake: 'connect' (TCP), or 'secureConnect' (TLS) for HTTPS.
      if (request.reusedSocket || (protocol === 'http:' && !socket.connecting)) {
        socketState = 'connected';
        return;
      }
      socketState = 'connecting';
      socket.once(protocol === 'https:' ? 'secureConnect' : 'connect', () => {
        if (socketState === 'connecting') {
          socketState = 'connected';
        }
      });
    });
    let sent = false;
    return {
      get connected() {
        return socketState === 'connected' && failure === undefined;
      },
      get broken() {
        return socketState === 'closed' || failure !== undefined;
      },
      send: (signal, onWritten, maxBodyBytes) => {
        if (sent) {
          return Promise.reject(new Error('a prepared request is sent once'));
        }
        sent = true;
        return new Promise<Response>((resolve, reject) => {
          if (failure) {
            reject(failure);
            return;
          }
          const onAbort = () => request.destroy(abortError(signal));
          signal?.addEventListener('abort', onAbort, { once: true });
          request.removeAllListeners('error');
          request.on('error', (error) => {
            signal?.removeEventListener('abort', onAbort);
            reject(error);
          });
          request.on('response', (response) => {
            const chunks: Buffer[] = [];
            const keep = maxBodyBytes === undefined ? Number.POSITIVE_INFINITY : maxBodyBytes + 1;
            let kept = 0;
            response.on('data', (chunk: Buffer) => {
              if (kept < keep) {
                const part = kept + chunk.length <= keep ? chunk : chunk.subarray(0, keep - kept);
                chunks.push(part);
                kept += part.length;
              }
            });
            response.on('error', reject);
            response.on('end', () => {
              signal?.removeEventListener('abort', onAbort);
              const status = response.statusCode ?? 502;
              const responseHeaders = new Headers();
              for (const [key, value] of Object.entries(response.headers)) {
                if (value === undefined) continue;
                for (const v of Array.isArray(value) ? value : [value]) responseHeaders.append(key, v);
              }
              const body = NULL_BODY_STATUSES.has(status) ? null : Buffer.concat(chunks);
              resolve(new Response(body, { status, statusText: response.statusMessage, headers: responseHeaders }));
            });
          });
          if (signal?.aborted) {
            onAbort();
            return;
          }
          if (onWritten) {
            request.once('finish', onWritten);
          }
          request.end(init.body);
        });
      },
      setHeader: (name, value) => {
        if (!request.headersSent) {
          request.setHeader(name, value);
        }
      },
      cancel: () => {
        sent = true;
        request.destroy();
      },
    };
  };
}

/** What `fetch` rejects with on an aborted signal: the signal's reason (a TimeoutError for AbortSignal.timeout). */
function abortError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  // A DOMException (TimeoutError, AbortError); duck-typed, as it may come from another realm.
  const named = typeof reason === 'object' && reason !== null && typeof (reason as Error).name === 'string';
  return named ? reason as Error : Object.assign(new Error('The operation was aborted'), { name: 'AbortError' });
}
