/**
 * The ASL coverage reporter (test/asl/coverage-reporter.js): merges the per-process records into
 * coverage/asl-coverage.json and, on a full run, holds the ratchet (test/asl/known-uncovered.json).
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';

// A plain CommonJS jest reporter (jest loads reporters untransformed).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const AslCoverageReporter = require('./coverage-reporter');

interface Fixture {
  readonly root: string;
  readonly records: string;
  readonly known: string;
}

const EDGES = ['A: Next -> B', 'B: Choice 0 -> C', 'B: Default -> D', 'C: Retry 0'];

function fixture(): Fixture {
  const root = mkdtempSync(path.join(tmpdir(), 'asl-coverage-'));
  return { root, records: path.join(root, 'coverage', 'asl-records'), known: path.join(root, 'known.json') };
}

/** Runs the reporter over records written by two "workers", as jest would: start, tests, complete. */
function runReporter(f: Fixture, covered: string[][], known: Record<string, string[]> | undefined, globalConfig: Record<string, unknown> = {},
  env: Record<string, string> = {}, configurations: boolean = true) {
  if (known) {
    writeFileSync(f.known, JSON.stringify({ description: 'test', uncovered: known }));
  }
  // The reporter reads these; the run that runs this test may have set them for itself.
  const saved = { ...process.env };
  delete process.env.ASL_COVERAGE_GATE;
  delete process.env.ASL_COVERAGE_PRUNE;
  Object.assign(process.env, env, { ASL_COVERAGE_RECORDS_DIR: f.records });
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    const reporter = new AslCoverageReporter({ rootDir: f.root, testPathPatterns: { patterns: [] }, ...globalConfig }, { knownUncovered: 'known.json' });
    reporter.onRunStart();
    const lines = configurations ? [JSON.stringify({ kind: 'configuration', name: 'M', configuration: 'base', hash: 'h1', edges: EDGES })] : [];
    writeFileSync(path.join(f.records, '1.jsonl'), lines.join('\n') + '\n');
    writeFileSync(path.join(f.records, '2.jsonl'), covered.map((edges) => JSON.stringify({ kind: 'covered', hash: 'h1', edges })).join('\n') + '\n');
    reporter.onRunComplete();
    return { error: reporter.getLastError() as Error | undefined, report: JSON.parse(readFileSync(path.join(f.root, 'coverage', 'asl-coverage.json'), 'utf8')) };
  } finally {
    stderr.mockRestore();
    for (const name of ['ASL_COVERAGE_GATE', 'ASL_COVERAGE_PRUNE', 'ASL_COVERAGE_RECORDS_DIR']) {
      if (saved[name] === undefined) {
        delete process.env[name];
      } else {
        process.env[name] = saved[name];
      }
    }
  }
}

describe('ASL coverage reporter', () => {
  test('merges the edges of all workers per configuration, in the issue\'s shape', () => {
    const f = fixture();
    const { report, error } = runReporter(f, [['A: Next -> B'], ['B: Choice 0 -> C', 'A: Next -> B']], { 'M | base': ['B: Default -> D', 'C: Retry 0'] });
    expect(report).toEqual({ stateMachines: [{ name: 'M', configuration: 'base', edgesTotal: 4, edgesCovered: 2, uncovered: ['B: Default -> D', 'C: Retry 0'] }] });
    expect(error).toBeUndefined();
  });

  test('records of an earlier run do not count', () => {
    const f = fixture();
    mkdirSync(f.records, { recursive: true });
    writeFileSync(path.join(f.records, '99.jsonl'), JSON.stringify({ kind: 'covered', hash: 'h1', edges: EDGES }) + '\n');
    const { report } = runReporter(f, [[]], undefined, { testPathPatterns: { patterns: ['x'] } });
    expect(report.stateMachines[0].edgesCovered).toBe(0);
  });

  test('fails a full run on an uncovered edge the list does not name', () => {
    const f = fixture();
    const { error } = runReporter(f, [['A: Next -> B', 'B: Choice 0 -> C']], { 'M | base': ['C: Retry 0'] });
    expect(error?.message).toMatch(/1 edges no test executes[\s\S]*M \| base \| B: Default -> D/);
  });

  test('fails a full run on a listed edge that is covered now, or that no longer exists', () => {
    const f = fixture();
    const { error } = runReporter(f, [EDGES.slice(0, 3)], { 'M | base': ['C: Retry 0', 'A: Next -> B', 'Gone: Next -> B'], 'M | removed': ['X: Next -> Y'] });
    expect(error?.message).toMatch(/1 edges listed in known.json are covered now[\s\S]*M \| base \| A: Next -> B/);
    expect(error?.message).toMatch(/2 edges listed in known.json no longer exist[\s\S]*Gone: Next -> B[\s\S]*M \| removed \| X: Next -> Y/);
  });

  test('ASL_COVERAGE_PRUNE=1 removes covered and stale entries from the list, never adds one', () => {
    const f = fixture();
    const { error } = runReporter(f, [['A: Next -> B']], { 'M | base': ['C: Retry 0', 'A: Next -> B'], 'M | removed': ['X: Next -> Y'] }, {},
      { ASL_COVERAGE_PRUNE: '1' });
    // B's two edges are uncovered and unlisted: still an error, and still not listed.
    expect(error?.message).toMatch(/2 edges no test executes/);
    expect(JSON.parse(readFileSync(f.known, 'utf8')).uncovered).toEqual({ 'M | base': ['C: Retry 0'] });
  });

  test('a run filtered by test path or name writes the report but applies no gate', () => {
    expect(runReporter(fixture(), [[]], {}, { testPathPatterns: { patterns: ['dispatch'] } }).error).toBeUndefined();
    expect(runReporter(fixture(), [[]], {}, { testNamePattern: 'submits' }).error).toBeUndefined();
    expect(runReporter(fixture(), [[]], {}, { testNamePattern: 'submits' }, { ASL_COVERAGE_GATE: '1' }).error).toBeDefined();
  });

  test('a full run in which no configuration was recorded fails', () => {
    const { error } = runReporter(fixture(), [['A: Next -> B']], {}, {}, {}, false);
    expect(error?.message).toMatch(/no configuration was recorded/);
  });
});
