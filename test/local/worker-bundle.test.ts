/**
 * The local runtime's worker bundles (local/aws/worker-bundle.ts) are built once and reused by
 * later processes (every jest test file is a fresh module registry) while their inputs are
 * unchanged; a changed input is bundled again.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** A fresh copy of the module, as another test file (process) would load it, and its esbuild calls. */
function freshWorkerBundle(): { workerScript: (entry: string) => string; builds: () => number } {
  let builds = 0;
  let workerScript!: (entry: string) => string;
  jest.isolateModules(() => {
    jest.doMock('esbuild', () => {
      const esbuild = jest.requireActual('esbuild');
      return {
        ...esbuild,
        buildSync: (...args: unknown[]) => {
          builds++;
          return esbuild.buildSync(...args);
        },
      };
    });
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a fresh module instance needs require inside isolateModules
    workerScript = require('../../local/aws/worker-bundle').workerScript;
  });
  return { workerScript, builds: () => builds };
}

afterEach(() => {
  jest.dontMock('esbuild');
});

test('a worker bundle is reused by a later process while its inputs are unchanged, rebuilt when one changes', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-bundle-'));
  const entry = path.join(dir, 'entry.ts');
  const helper = path.join(dir, 'helper.ts');
  fs.writeFileSync(helper, 'export const answer: number = 41;\n');
  fs.writeFileSync(entry, "import { answer } from './helper';\nconsole.log(answer);\n");

  const first = freshWorkerBundle();
  const script = first.workerScript(entry);
  expect(first.builds()).toBe(1);
  expect(fs.readFileSync(script, 'utf8')).toContain('41');
  // Same process: the in-memory map.
  expect(first.workerScript(entry)).toBe(script);
  expect(first.builds()).toBe(1);

  // Another process, same inputs: no esbuild run.
  const second = freshWorkerBundle();
  expect(second.workerScript(entry)).toBe(script);
  expect(second.builds()).toBe(0);

  // An imported file changes: bundled again, and the new bundle has the change.
  fs.writeFileSync(helper, 'export const answer: number = 42;\n');
  const third = freshWorkerBundle();
  const rebuilt = third.workerScript(entry);
  expect(third.builds()).toBe(1);
  expect(rebuilt).not.toBe(script);
  expect(fs.readFileSync(rebuilt, 'utf8')).toContain('42');
});
