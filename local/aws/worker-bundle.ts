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
