/**
 * Synthesized test fixtures shared by the files of one jest run: the configurations of the ASL
 * tests (configurations.ts: configurations.test.ts and the route files of both workflows, 64
 * syntheses of the whole orchestrator per run before; user-tasks.ts: configurations.test.ts and
 * user-task-routes.test.ts, 16) are each synthesized by one file and read by the others.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** How long a file waits for a fixture another jest worker is synthesizing before it synthesizes it itself. */
const SYNTHESIS_WAIT_MS = 60_000;

/**
 * The result of each labelled synthesis (JSON values only), computed once per jest run.
 * Each result is a JSON file in the run's temporary directory (test/run-tmpdir.js), named by
 * `kind`, the label and a fingerprint of everything a synthesis reads (src/, the `modules` that
 * define the fixtures, test/util.ts, aws-cdk-lib's version), so a file outside such a run, or
 * after an edit, never reads a stale one. Files running at once share the work: each synthesizes
 * the labels no one has claimed (an exclusive lock file), then reads or waits for the others'.
 */
export function synthesizedOncePerRun<T>(kind: string, modules: string[], syntheses: Array<[string, () => T]>): Map<string, T> {
  const fingerprint = sourceFingerprint(modules);
  const fileOf = (label: string) => path.join(os.tmpdir(),
    `cdk-async-external-api-${kind}-${createHash('sha256').update(`${fingerprint} ${label}`).digest('hex').slice(0, 32)}`);
  const read = (label: string): T | undefined => {
    try {
      return JSON.parse(fs.readFileSync(`${fileOf(label)}.json`, 'utf8'));
    } catch {
      return undefined;
    }
  };
  const result = new Map<string, T>();
  const claimedByOthers: Array<[string, () => T]> = [];
  for (const [label, synthesize] of syntheses) {
    const done = read(label);
    if (done !== undefined) {
      result.set(label, done);
    } else if (claim(`${fileOf(label)}.lock`)) {
      const value = synthesize();
      const partial = `${fileOf(label)}.${process.pid}`;
      fs.writeFileSync(partial, JSON.stringify(value));
      fs.renameSync(partial, `${fileOf(label)}.json`);
      // What this file uses is what the others read: the same JSON round trip.
      result.set(label, JSON.parse(JSON.stringify(value)));
    } else {
      claimedByOthers.push([label, synthesize]);
    }
  }
  for (const [label, synthesize] of claimedByOthers) {
    const deadline = Date.now() + SYNTHESIS_WAIT_MS;
    let value = read(label);
    while (value === undefined && Date.now() < deadline) {
      // A synchronous wait: the callers build their tests from the result at collection time.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      value = read(label);
    }
    // Its synthesizer gone (a crashed worker): synthesized here.
    result.set(label, value ?? synthesize());
  }
  return result;
}

/** Whether this process created `lockFile` (false: another one did). */
function claim(lockFile: string): boolean {
  try {
    fs.closeSync(fs.openSync(lockFile, 'wx'));
    return true;
  } catch {
    return false;
  }
}

/** A hash of what the syntheses depend on: src/ (every file), `modules`, this module, test/util.ts, aws-cdk-lib's version. */
function sourceFingerprint(modules: string[]): string {
  const hash = createHash('sha256');
  const add = (file: string) => hash.update(file).update(fs.readFileSync(file));
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file); else add(file);
    }
  };
  walk(path.join(__dirname, '..', '..', 'src'));
  [...modules, __filename, path.join(__dirname, '..', 'util.ts')].forEach(add);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  hash.update(require('aws-cdk-lib/package.json').version);
  return hash.digest('hex');
}
