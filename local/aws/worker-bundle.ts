/**
 * Runs a module of the local runtime (TypeScript) in a worker thread.
 *
 * The host process runs TypeScript through ts-node or ts-jest, and a Worker inherits neither, so
 * the module is bundled to plain JavaScript with esbuild (a few hundred milliseconds, once per
 * process and module) and the Worker loads that file.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { buildSync } from 'esbuild';

const bundled = new Map<string, string>();

/** The path of a JavaScript bundle of `entry` (a .ts file), for `new Worker(path)`. */
export function workerScript(entry: string): string {
  const cached = bundled.get(entry);
  if (cached) return cached;
  const out = buildSync({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    write: false,
    logLevel: 'silent',
  });
  const code = out.outputFiles[0].text;
  const file = path.join(os.tmpdir(), `cdk-async-external-api-worker-${createHash('sha256').update(code).digest('hex').slice(0, 16)}.js`);
  if (!fs.existsSync(file)) {
    // Written under a unique name and renamed: parallel test files may bundle the same module.
    const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
    fs.writeFileSync(tmp, code);
    fs.renameSync(tmp, file);
  }
  bundled.set(entry, file);
  return file;
}

/**
 * Starts `entry` (see workerScript) in a worker thread with `workerData` and waits for its first
 * message: `{ type: 'started', ... }` resolves with it, `{ type: 'failed', message }` (or the
 * thread failing or exiting first) rejects, and the thread is ended.
 */
export async function startWorker<T extends { readonly type: 'started' }>(
  entry: string, workerData: unknown, what: string,
): Promise<{ worker: Worker; started: T }> {
  const worker = new Worker(workerScript(entry), { workerData, execArgv: [] });
  try {
    const started = await new Promise<T>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the ${what} worker exited with code ${code} before it started`)));
      worker.once('message', (m: T | { type: string; message?: string }) => {
        if (m.type === 'started') resolve(m as T);
        else reject(new Error(m.type === 'failed' ? String((m as { message?: string }).message) : `unexpected message from the ${what} worker: ${m.type}`));
      });
    });
    worker.removeAllListeners('exit');
    worker.removeAllListeners('error');
    return { worker, started };
  } catch (error) {
    await worker.terminate();
    throw error;
  }
}
