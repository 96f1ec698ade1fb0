/**
 * Runs a module of the local runtime (TypeScript) in a worker thread.
 *
 * The host process runs TypeScript through ts-node or ts-jest, and a Worker inherits neither, so
 * the module is bundled to plain JavaScript with esbuild (a few hundred milliseconds) and the
 * Worker loads that file. The bundle is reused across processes while its inputs are unchanged.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { buildSync, version as esbuildVersion } from 'esbuild';
import type { FromWorker, ToWorker } from './worker-protocol';

const bundled = new Map<string, string>();

/** Where a bundle and the inputs it was built from are recorded, per entry (shared by processes). */
interface BundleManifest {
  readonly file: string;
  /** Absolute path -> sha256 of the content, of every file esbuild read. */
  readonly inputs: Record<string, string>;
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

function manifestPath(entry: string): string {
  return path.join(os.tmpdir(), `cdk-async-external-api-worker-${sha256(`${esbuildVersion} ${path.resolve(entry)}`).slice(0, 16)}.json`);
}

/**
 * The bundle an earlier process built from exactly the files that are there now, if any. Every
 * test file that starts a local runtime runs in its own jest module registry and used to bundle
 * the same three workers again (about 2 s of CPU per file); hashing the inputs costs a few ms.
 */
function reusableBundle(entry: string): string | undefined {
  try {
    const manifest: BundleManifest = JSON.parse(fs.readFileSync(manifestPath(entry), 'utf8'));
    if (!fs.existsSync(manifest.file)) return undefined;
    for (const [file, hash] of Object.entries(manifest.inputs)) {
      if (sha256(fs.readFileSync(file)) !== hash) return undefined;
    }
    return manifest.file;
  } catch {
    return undefined; // no manifest yet, a half-written one, or an input gone: bundle again
  }
}

/** Written under a unique name and renamed: parallel test files may write the same file. */
function writeAtomically(file: string, data: string): void {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

/** The path of a JavaScript bundle of `entry` (a .ts file), for `new Worker(path)`. */
export function workerScript(entry: string): string {
  const cached = bundled.get(entry) ?? reusableBundle(entry);
  if (cached) {
    bundled.set(entry, cached);
    return cached;
  }
  const out = buildSync({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    write: false,
    logLevel: 'silent',
    metafile: true,
  });
  const code = out.outputFiles[0].text;
  const file = path.join(os.tmpdir(), `cdk-async-external-api-worker-${sha256(code).slice(0, 16)}.js`);
  if (!fs.existsSync(file)) writeAtomically(file, code);
  // esbuild names its inputs relative to the working directory.
  const inputs = Object.fromEntries(Object.keys(out.metafile!.inputs).map((input) => {
    const absolute = path.resolve(input);
    return [absolute, sha256(fs.readFileSync(absolute))];
  }));
  writeAtomically(manifestPath(entry), JSON.stringify({ file, inputs } satisfies BundleManifest));
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
