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
import type { FromWorker, ToWorker } from './worker-protocol';

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
 * A worker thread running `entry` (see workerScript), which serves calls with `serveWorker`
 * (worker-protocol.ts).
 */
export class WorkerHost {
  /**
   * Starts the worker with `workerData` and waits until it has started: resolves with what it
   * reported (`info`); rejects, and ends the thread, when it failed or exited first.
   */
  public static async start(entry: string, workerData: unknown, what: string): Promise<{ host: WorkerHost; info: Record<string, unknown> }> {
    const worker = new Worker(workerScript(entry), { workerData, execArgv: [] });
    try {
      const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`the ${what} worker exited with code ${code} before it started`)));
        worker.once('message', (m: FromWorker) => {
          if (m.type === 'started') resolve(m);
          else reject(new Error(m.type === 'failed' ? m.message : `unexpected message from the ${what} worker: ${m.type}`));
        });
      });
      worker.removeAllListeners('exit');
      worker.removeAllListeners('error');
      return { host: new WorkerHost(worker), info };
    } catch (error) {
      await worker.terminate();
      throw error;
    }
  }

  private nextId = 0;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: FromWorker) => {
      if (m.type !== 'result') return;
      const waiting = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error !== undefined) waiting?.reject(new Error(m.error));
      else waiting?.resolve(m.value);
    });
    // A crash of the worker fails what waits on it instead of hanging.
    worker.on('error', (error) => {
      for (const waiting of this.pending.values()) waiting.reject(error);
      this.pending.clear();
    });
  }

  /** Calls the worker's handler `method` with `args` (plain data both ways). */
  public call<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.worker.postMessage({ type: 'call', id, method, args } satisfies ToWorker);
    });
  }

  /** Calls the worker's `stop` (waiting up to 2 s), then ends the thread. */
  public async stop(): Promise<void> {
    await Promise.race([this.call('stop'), new Promise<void>((resolve) => setTimeout(resolve, 2000).unref())]).catch(() => undefined);
    await this.worker.terminate();
  }
}
