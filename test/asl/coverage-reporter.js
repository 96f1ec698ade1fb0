/**
 * Jest reporter: ASL edge coverage of the library's state machines (docs/asl-coverage.md).
 *
 * Tests execute synthesized definitions through test/asl/execute.ts, which appends the edges
 * each execution took to coverage/asl-records/<pid>.jsonl (one file per jest process);
 * test/asl/configurations.test.ts records every configuration's edges. After the run this
 * reporter merges them into coverage/asl-coverage.json:
 *
 *   {"stateMachines":[{"name","configuration","edgesTotal","edgesCovered","uncovered":[...]}]}
 *
 * and, on a full run (no test path or name filter), fails the run when an edge is uncovered that
 * test/asl/known-uncovered.json does not list, or when a listed edge is covered (or no longer
 * exists): the list only shrinks. `ASL_COVERAGE_PRUNE=1` rewrites the list without the covered
 * and stale entries. `ASL_COVERAGE_GATE=1` applies the gate to a filtered run too, `=0` never.
 *
 * Plain CommonJS: jest loads reporters without transforming them.
 */
'use strict';
const fs = require('fs');
const path = require('path');

class AslCoverageReporter {
  constructor(globalConfig, options = {}) {
    this.globalConfig = globalConfig;
    const root = globalConfig.rootDir;
    this.recordsDir = process.env.ASL_COVERAGE_RECORDS_DIR || path.join(root, 'coverage', 'asl-records');
    this.outputFile = path.join(root, options.outputFile || 'coverage/asl-coverage.json');
    this.knownFile = path.join(root, options.knownUncovered || 'test/asl/known-uncovered.json');
    this.error = undefined;
  }

  onRunStart() {
    // Records of an earlier run must not count for this one.
    fs.rmSync(this.recordsDir, { recursive: true, force: true });
    fs.mkdirSync(this.recordsDir, { recursive: true });
  }

  onRunComplete() {
    const records = readRecords(this.recordsDir);
    const report = mergeRecords(records);
    fs.mkdirSync(path.dirname(this.outputFile), { recursive: true });
    fs.writeFileSync(this.outputFile, JSON.stringify({ stateMachines: report.stateMachines.map(({ allEdges, ...entry }) => entry) }, null, 2) + '\n');

    const total = report.stateMachines.reduce((n, s) => n + s.edgesTotal, 0);
    const covered = report.stateMachines.reduce((n, s) => n + s.edgesCovered, 0);
    const lines = [`ASL edge coverage: ${covered}/${total} edges in ${report.stateMachines.length} configurations (${path.relative(this.globalConfig.rootDir, this.outputFile)})`];
    for (const other of report.otherDefinitions) {
      lines.push(`  also executed: ${other.name} ${other.hash} (no enumerated configuration; first run by ${other.testPath || '?'}): ${other.edgesCovered}/${other.edgesTotal} edges`);
    }

    if (!this.gateApplies()) {
      lines.push('  (gate not applied: a filtered run; ASL_COVERAGE_GATE=1 applies it)');
      process.stderr.write(lines.join('\n') + '\n');
      return;
    }
    if (report.stateMachines.length === 0) {
      // A full run without the configurations would pass any gate: say so instead.
      this.error = new Error('ASL edge coverage: no configuration was recorded (test/asl/configurations.test.ts did not run or failed)');
      process.stderr.write(lines.join('\n') + '\n' + this.error.message + '\n');
      return;
    }
    const known = readKnown(this.knownFile);
    const problems = compareWithKnown(report.stateMachines, known);
    if (process.env.ASL_COVERAGE_PRUNE === '1' && (problems.nowCovered.length || problems.stale.length)) {
      writeKnown(this.knownFile, known, report.stateMachines);
      lines.push(`  pruned ${problems.nowCovered.length + problems.stale.length} entries from ${path.relative(this.globalConfig.rootDir, this.knownFile)}`);
      problems.nowCovered = [];
      problems.stale = [];
    }
    const listed = Object.values(known.uncovered).reduce((n, edges) => n + edges.length, 0);
    lines.push(`  known uncovered (ratchet list): ${listed} edges`);
    const messages = [];
    if (problems.newUncovered.length) {
      messages.push(`${problems.newUncovered.length} edges no test executes (execute them with test/asl/execute.ts, with the input their producer really emits):\n`
        + problems.newUncovered.map((e) => `    ${e}`).join('\n'));
    }
    if (problems.nowCovered.length) {
      messages.push(`${problems.nowCovered.length} edges listed in ${path.relative(this.globalConfig.rootDir, this.knownFile)} are covered now: delete them (ASL_COVERAGE_PRUNE=1 does):\n`
        + problems.nowCovered.map((e) => `    ${e}`).join('\n'));
    }
    if (problems.stale.length) {
      messages.push(`${problems.stale.length} edges listed in ${path.relative(this.globalConfig.rootDir, this.knownFile)} no longer exist: delete them (ASL_COVERAGE_PRUNE=1 does):\n`
        + problems.stale.map((e) => `    ${e}`).join('\n'));
    }
    process.stderr.write(lines.join('\n') + '\n');
    if (messages.length) {
      this.error = new Error(`ASL edge coverage:\n  ${messages.join('\n  ')}`);
      process.stderr.write(this.error.message + '\n');
    }
  }

  /** The gate needs every test: a run filtered by path or name measures only part of them. */
  gateApplies() {
    if (process.env.ASL_COVERAGE_GATE === '1') return true;
    if (process.env.ASL_COVERAGE_GATE === '0') return false;
    const g = this.globalConfig;
    const patterns = g.testPathPatterns;
    const filtered = (patterns && (Array.isArray(patterns) ? patterns.length > 0 : (patterns.patterns || []).length > 0))
      || Boolean(g.testNamePattern) || g.onlyChanged || g.findRelatedTests || g.onlyFailures || (g.nonFlagArgs || []).length > 0;
    return !filtered;
  }

  getLastError() {
    return this.error;
  }
}

function readRecords(dir) {
  const records = [];
  if (!fs.existsSync(dir)) return records;
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort()) {
    for (const line of fs.readFileSync(path.join(dir, file), 'utf8').split('\n')) {
      if (line.trim()) records.push(JSON.parse(line));
    }
  }
  return records;
}

/** Configurations with their covered edges, and definitions executed that no configuration names. */
function mergeRecords(records) {
  const configurations = new Map();
  const definitions = new Map();
  const covered = new Map();
  for (const r of records) {
    if (r.kind === 'configuration') {
      configurations.set(`${r.name} | ${r.configuration}`, r);
    } else if (r.kind === 'definition') {
      if (!definitions.has(r.hash)) definitions.set(r.hash, r);
    } else if (r.kind === 'covered') {
      const set = covered.get(r.hash) || new Set();
      r.edges.forEach((e) => set.add(e));
      covered.set(r.hash, set);
    }
  }
  const hashes = new Set();
  const stateMachines = [...configurations.values()]
        .map((c) => {
      hashes.add(c.hash);
      const done = covered.get(c.hash) || new Set();
      const uncovered = c.edges.filter((e) => !done.has(e));
      return { name: c.name, configuration: c.configuration, edgesTotal: c.edges.length, edgesCovered: c.edges.length - uncovered.length, uncovered, allEdges: c.edges };
    });
  const otherDefinitions = [...definitions.values()].filter((d) => !hashes.has(d.hash)).map((d) => {
    const done = covered.get(d.hash) || new Set();
    return { name: d.name, hash: d.hash, testPath: d.testPath, edgesTotal: d.edges.length, edgesCovered: d.edges.filter((e) => done.has(e)).length };
  });
  return { stateMachines, otherDefinitions };
}

function readKnown(file) {
  if (!fs.existsSync(file)) return { uncovered: {} };
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

function compareWithKnown(stateMachines, known) {
  const newUncovered = [];
  const nowCovered = [];
  const stale = [];
  const byKey = new Map(stateMachines.map((s) => [`${s.name} | ${s.configuration}`, s]));
  for (const s of stateMachines) {
    const listed = new Set(known.uncovered[`${s.name} | ${s.configuration}`] || []);
    for (const edge of s.uncovered) {
      if (!listed.has(edge)) newUncovered.push(`${s.name} | ${s.configuration} | ${edge}`);
    }
  }
  for (const [key, edges] of Object.entries(known.uncovered)) {
    const s = byKey.get(key);
    for (const edge of edges) {
      if (!s) {
        stale.push(`${key} | ${edge}`);
      } else if (!s.uncovered.includes(edge)) {
        // Listed, not uncovered: covered now, or no such edge any more.
        (s.allEdges.includes(edge) ? nowCovered : stale).push(`${key} | ${edge}`);
      }
    }
  }
  return { newUncovered, nowCovered, stale };
}

/** Rewrites the list keeping only the entries that are still uncovered (never adds one). */
function writeKnown(file, known, stateMachines) {
  const byKey = new Map(stateMachines.map((s) => [`${s.name} | ${s.configuration}`, new Set(s.uncovered)]));
  const uncovered = {};
  for (const [key, edges] of Object.entries(known.uncovered)) {
    const still = edges.filter((e) => byKey.get(key) && byKey.get(key).has(e));
    if (still.length) uncovered[key] = still;
  }
  fs.writeFileSync(file, JSON.stringify({ ...known, uncovered }, null, 2) + '\n');
}

module.exports = AslCoverageReporter;
module.exports.mergeRecords = mergeRecords;
module.exports.compareWithKnown = compareWithKnown;
