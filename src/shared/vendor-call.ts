/**
 * Validation of vendor calls (`callVendorTask`), shared by the construct (synth-time checks of
 * literal values) and the queue consumer (run-time checks of the message). Plain code only: no
 * AWS SDK or aws-cdk-lib imports.
 */
import type { KeyLimitsSpec } from './key-limits';
import { claimSequence, VENDOR_CALL_METHODS, VendorCallInput, VendorCallMessage, VendorCallRequest } from './messages';
import { isRequestPriority } from './request-priority';

/** Longest path accepted (API Gateway's URL limit is 8 KiB; vendors rarely take more than 2 KiB). */
export const MAX_VENDOR_CALL_PATH_LENGTH = 2048;

/** Why a method is not accepted, or undefined when it is. */
export function methodProblem(method: unknown): string | undefined {
  if (typeof method !== 'string' || !(VENDOR_CALL_METHODS as readonly string[]).includes(method.toUpperCase())) {
    return `method must be one of ${VENDOR_CALL_METHODS.join(', ')} (given ${JSON.stringify(method)})`;
  }
  return undefined;
}

/**
 * Why a path is not accepted, or undefined when it is. A path starts with `/` and is appended to
 * the vendor URL by the proxy (`/` alone is the vendor URL itself). Its characters must already be
 * URL-safe (RFC 3986 path characters and `%XX` escapes); `.` and `..` segments, empty segments,
 * `?` and `#` are refused (use `query` for query parameters).
 */
export function pathProblem(path: unknown): string | undefined {
  if (typeof path !== 'string') {
    return `path must be a string starting with '/' (given ${JSON.stringify(path)})`;
  }
  const shown = JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}...` : path);
  if (!path.startsWith('/')) {
    return `path must start with '/', relative to the vendor URL, e.g. '/job-1/result' (given ${shown})`;
  }
  if (path.length > MAX_VENDOR_CALL_PATH_LENGTH) {
    return `path must be at most ${MAX_VENDOR_CALL_PATH_LENGTH} characters (given ${path.length})`;
  }
  if (/[?#]/.test(path)) {
    return `path must not hold '?' or '#': give query parameters in query (given ${shown})`;
  }
  if (!/^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/.test(path) || /%(?![0-9A-Fa-f]{2})/.test(path)) {
    return `path may hold only URL path characters (letters, digits, - . _ ~ ! $ & ' ( ) * + , ; = : @ /) and %XX escapes (given ${shown})`;
  }
  if (path !== '/') {
    const segments = path.slice(1).split('/');
    if (segments.some((s, i) => s === '' && i < segments.length - 1) || segments.some((s) => s === '.' || s === '..')) {
      return `path must not hold empty, '.' or '..' segments (given ${shown})`;
    }
  }
  return undefined;
}

/** Validates a `call` object and returns it normalized, or the list of problems. */
export function normalizeVendorCall(call: unknown):
{ readonly ok: true; readonly call: VendorCallRequest } | { readonly ok: false; readonly problems: string[] } {
  if (typeof call !== 'object' || call === null || Array.isArray(call)) {
    return { ok: false, problems: ['call must be an object { method, path, query?, body? }'] };
  }
  const fields = call as Record<string, unknown>;
  const problems: string[] = [];
  const method = methodProblem(fields.method);
  if (method) {
    problems.push(`call.${method}`);
  }
  const path = pathProblem(fields.path);
  if (path) {
    problems.push(`call.${path}`);
  }
  const query: Record<string, string[]> = {};
  if (fields.query !== undefined && fields.query !== null) {
    if (typeof fields.query !== 'object' || Array.isArray(fields.query)) {
      problems.push('call.query must be an object of name -> string or array of strings');
    } else {
      for (const [name, value] of Object.entries(fields.query as Record<string, unknown>)) {
        const values = Array.isArray(value) ? value : [value];
        if (name === '' || values.some((v) => typeof v !== 'string')) {
          problems.push(`call.query.${name || '(empty name)'} must be a string or an array of strings`);
        } else {
          query[name] = values as string[];
        }
      }
    }
  }
  const hasBody = fields.body !== undefined && fields.body !== null;
  if (hasBody && typeof fields.method === 'string' && fields.method.toUpperCase() === 'GET') {
    problems.push('call.body must not be given with GET');
  }
  if (problems.length > 0) {
    return { ok: false, problems };
  }
  return {
    ok: true,
    call: {
      method: (fields.method as string).toUpperCase(),
      path: fields.path as string,
      query,
      ...(hasBody ? { body: fields.body } : {}),
    },
  };
}

/**
 * Validates the fields of a request message whose `kind` is `call`. On failure, `detail` lists
 * every problem and `taskToken` is the token if one could be read (to fail the waiting task).
 */
export function parseVendorCallMessage(fields: Record<string, unknown>):
{ readonly ok: true; readonly message: VendorCallMessage } | { readonly ok: false; readonly detail: string; readonly taskToken?: string } {
  const problems: string[] = [];
  const token = typeof fields.taskToken === 'string' && fields.taskToken.length > 0 ? fields.taskToken : undefined;
  if (token === undefined) {
    problems.push('taskToken must be a non-empty string');
  }
  if (!(typeof fields.requestId === 'string' && fields.requestId.length > 0)) {
    problems.push('requestId must be a non-empty string');
  }
  if (fields.attempt !== undefined && !(Number.isSafeInteger(fields.attempt) && (fields.attempt as number) >= 1)) {
    problems.push('attempt must be a positive integer when present');
  }
  if (fields.endsJobOf !== undefined && fields.endsJobOf !== null && !(typeof fields.endsJobOf === 'string' && fields.endsJobOf.length > 0)) {
    problems.push(`endsJobOf must be a non-empty string (the request id of the submission whose job the call ends) or null when present (given ${JSON.stringify(fields.endsJobOf)})`);
  }
  const call = normalizeVendorCall(fields.call);
  if (!call.ok) {
    problems.push(...call.problems);
  }
  if (problems.length > 0) {
    return { ok: false, detail: problems.join('; '), ...(token ? { taskToken: token } : {}) };
  }
  return { ok: true, message: fields as unknown as VendorCallMessage };
}

/**
 * The vendor-call workflow's input for a (valid) message.
 *
 * @param nowMs current time, epoch ms
 * @param claimTtlSeconds how long the call's claim item is kept (the correlation TTL)
 * @param slotAtMs the call's pacing slot, epoch ms
 */
export function buildVendorCallInput(
  message: VendorCallMessage, nowMs: number, claimTtlSeconds: number, slotAtMs?: number, keyLimits: KeyLimitsSpec | null = null,
): VendorCallInput {
  const normalized = normalizeVendorCall(message.call);
  if (!normalized.ok) {
    throw new Error(`invalid vendor call: ${normalized.problems.join('; ')}`);
  }
  const attempt = message.attempt ?? 1;
  return {
    requestId: message.requestId,
    taskToken: message.taskToken,
    attempt,
    ...claimSequence(attempt, message.deferrals),
    expiresAt: Math.floor(nowMs / 1000) + claimTtlSeconds,
    call: normalized.call,
    message,
    ...(message.key !== undefined ? { key: message.key } : {}),
    // Issue 15: a retry or deferral rebuilds the message from the input, so the priority travels in it.
    ...(isRequestPriority(message.priority) ? { priority: message.priority } : {}),
    ...(slotAtMs !== undefined ? { slotAtMs } : {}),
    endsJobOf: typeof message.endsJobOf === 'string' && message.endsJobOf.length > 0 ? message.endsJobOf : null,
    // The call's start, stamped by the dispatcher (request-start.ts); now for a message never stamped.
    requestStartedAtMs: Number.isSafeInteger(message.requestStartedAtMs) && message.requestStartedAtMs! > 0
      ? message.requestStartedAtMs!
      : Math.floor(nowMs),
    keyLimits,
  };
}

/** Whether a parsed request message is a vendor call. */
export function isVendorCallMessage(message: { readonly kind?: string }): message is VendorCallMessage {
  return message.kind === 'call';
}
