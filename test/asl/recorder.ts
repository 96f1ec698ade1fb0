/**
 * Where the executed edges go: each jest worker appends JSON lines to its own file
 * (`coverage/asl-records/<pid>.jsonl`), and the ASL coverage reporter (test/asl/coverage-reporter.js)
 * merges them into coverage/asl-coverage.json once the run is over. One file per process, so
 * workers never write to the same file.
 */
import { appendFileSync, mkdirSync } from 'fs';
import * as path from 'path';
import { Edge } from './edges';

/** The records directory; the reporter reads (and at the start of a run, empties) the same one. */
export const RECORDS_DIR = process.env.ASL_COVERAGE_RECORDS_DIR ?? path.join(__dirname, '..', '..', 'coverage', 'asl-records');

/** A configuration of a state machine, synthesized by test/asl/configurations.test.ts: its edges total. */
export interface ConfigurationRecord {
  readonly kind: 'configuration';
  readonly name: string;
  readonly configuration: string;
  readonly hash: string;
  readonly edges: Edge[];
}

/** A definition some test executed (once per process and definition): its edges, for definitions no configuration names. */
export interface DefinitionRecord {
  readonly kind: 'definition';
  readonly name: string;
  readonly hash: string;
  readonly edges: Edge[];
  /** The test file that executed it first, to find where a definition no configuration names comes from. */
  readonly testPath?: string;
}

/** The edges one execution took. */
export interface CoveredRecord {
  readonly kind: 'covered';
  readonly hash: string;
  readonly edges: Edge[];
}

export type AslCoverageRecord = ConfigurationRecord | DefinitionRecord | CoveredRecord;

const announced = new Set<string>();
let dirReady = false;

export function writeRecord(record: AslCoverageRecord): void {
  if (!dirReady) {
    mkdirSync(RECORDS_DIR, { recursive: true });
    dirReady = true;
  }
  appendFileSync(path.join(RECORDS_DIR, `${process.pid}.jsonl`), JSON.stringify(record) + '\n');
}

/** Records the edges of one execution of a definition (and the definition, the first time this process sees it). */
export function recordExecution(name: string, hash: string, allEdges: Edge[], covered: Edge[]): void {
  if (!announced.has(hash)) {
    announced.add(hash);
    writeRecord({ kind: 'definition', name, hash, edges: allEdges, testPath: currentTestPath() });
  }
  writeRecord({ kind: 'covered', hash, edges: covered });
}

function currentTestPath(): string | undefined {
  const state = (globalThis as any).expect?.getState?.();
  return state?.testPath ? path.relative(path.join(__dirname, '..', '..'), state.testPath) : undefined;
}
