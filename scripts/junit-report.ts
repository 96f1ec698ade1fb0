/**
 * Reads jest-junit reports (test-reports/junit.xml) for the test-speed work (issue 12):
 *
 *   names [<junit.xml>...] [--log <jest output>]   every test as "file > full name", sorted
 *   compare <names.txt> [<junit.xml>...]           exit 1 if a test of names.txt is missing from the reports
 *   table [<junit.xml>...] [--write]               per-file wall time, slowest first, as markdown;
 *                                                  --write puts it in README.md (between the
 *                                                  test-timings markers) and test/timings.json
 *
 * The reports default to every test-reports/junit*.xml: `npm test` runs two jest lanes at once
 * (scripts/test.sh), each with its report. Run with `npx projen test:compare` / `npx projen
 * test:table` after `npm test`.
 *
 * The report names each test's file (jest-junit `addFileAttribute`). Reports written before that
 * option (the baseline of test/baseline-test-names.txt) do not: `names --log` takes the files from
 * the jest output instead, whose PASS/FAIL lines come in the order of the report's suites.
 */
import * as fs from 'fs';
import * as path from 'path';

/** Baseline tests renamed on purpose: { renamed: [{ was, now, why }] }. */
const RENAMED_FILE = path.join('test', 'renamed-tests.json');

interface Suite {
  readonly name: string;
  /** Seconds, from the file's start to its end (jest's perfStats). */
  readonly time: number;
  readonly file?: string;
  readonly tests: Array<{ name: string; file?: string; time: number }>;
}

interface Report {
  /** Wall time of the whole jest run, seconds. */
  readonly time: number;
  readonly suites: Suite[];
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function unescapeXml(text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos|#x[0-9a-fA-F]+|#[0-9]+);/g, (_, e: string) =>
    e.startsWith('#x') ? String.fromCodePoint(parseInt(e.slice(2), 16))
      : e.startsWith('#') ? String.fromCodePoint(parseInt(e.slice(1), 10))
        : ENTITIES[e]);
}

function attributes(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(/([\w:-]+)="([^"]*)"/g)) out[m[1]] = unescapeXml(m[2]);
  return out;
}

/** jest-junit's output is regular (one element per tag, attributes in double quotes): no XML library needed. */
export function parseJunit(xml: string): Report {
  const root = /<testsuites\b[^>]*>/.exec(xml);
  if (!root) throw new Error('not a junit report: no <testsuites> element');
  const suites: Suite[] = [];
  let current: { name: string; time: number; tests: Suite['tests'] } | undefined;
  for (const m of xml.matchAll(/<(testsuite|testcase)\b[^>]*>/g)) {
    const a = attributes(m[0]);
    if (m[1] === 'testsuite') {
      current = { name: a.name, time: Number(a.time), tests: [] };
      suites.push(current);
    } else {
      if (!current) throw new Error('a <testcase> outside any <testsuite>');
      current.tests.push({ name: a.name, file: a.file, time: Number(a.time) });
    }
  }
  return {
    time: Number(attributes(root[0]).time),
    suites: suites.map((s) => ({ ...s, file: s.tests.find((t) => t.file)?.file })),
  };
}

/** Files of the suites, from the report or (older reports) from the PASS/FAIL lines of the jest output. */
function suiteFiles(report: Report, logFile?: string): string[] {
  if (report.suites.every((s) => s.file !== undefined || s.tests.length === 0) && !logFile) {
    return report.suites.map((s) => s.file ?? `(${s.name})`);
  }
  if (!logFile) throw new Error('the report does not name the test files: pass the jest output with --log');
  const files = fs.readFileSync(logFile, 'utf8').split('\n')
    .map((line) => /^(?:PASS|FAIL) (\S+)/.exec(line)?.[1]).filter((f): f is string => f !== undefined);
  if (files.length !== report.suites.length) {
    throw new Error(`${logFile} names ${files.length} test files, the report has ${report.suites.length} suites`);
  }
  return files;
}

export function testNames(report: Report, logFile?: string): string[] {
  const files = suiteFiles(report, logFile);
  // One line per test: a name printed from an object (test.each with %p) may span lines.
  return report.suites.flatMap((s, i) => s.tests.map((t) => `${t.file ?? files[i]} > ${t.name.replace(/\n/g, '\\n')}`)).sort();
}

export function perFile(report: Report, logFile?: string): Array<{ file: string; tests: number; seconds: number }> {
  const files = suiteFiles(report, logFile);
  return report.suites.map((s, i) => ({ file: files[i], tests: s.tests.length, seconds: s.time }))
    .sort((a, b) => b.seconds - a.seconds || a.file.localeCompare(b.file));
}

export function markdownTable(report: Report, logFile?: string): string {
  const rows = perFile(report, logFile);
  const sum = rows.reduce((n, r) => n + r.seconds, 0);
  return [
    `${rows.length} files, ${rows.reduce((n, r) => n + r.tests, 0)} tests; jest wall time ${report.time.toFixed(1)} s (the longest lane), `
      + `sum of the files' times ${sum.toFixed(1)} s (files run side by side in jest's workers).`,
    '',
    '| File | Tests | Time (s) |',
    '|---|---:|---:|',
    ...rows.map((r) => `| \`${r.file}\` | ${r.tests} | ${r.seconds.toFixed(1)} |`),
  ].join('\n');
}

const BEGIN = '<!-- test-timings:begin (npx projen test:table -- --write) -->';
const END = '<!-- test-timings:end -->';

/** The reports side by side (lanes run at once): the suites of all, the longest wall time. */
function readReports(files: string[]): Report {
  if (files.length === 0) {
    const dir = 'test-reports';
    files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^junit.*\.xml$/.test(f)).map((f) => path.join(dir, f)) : [];
    if (files.length === 0) throw new Error(`no ${dir}/junit*.xml: run npm test first`);
  }
  const reports = files.map((file) => parseJunit(fs.readFileSync(file, 'utf8')));
  return { time: Math.max(...reports.map((r) => r.time)), suites: reports.flatMap((r) => r.suites) };
}

function main(argv: string[]): number {
  const [command, ...rest] = argv;
  const option = (name: string) => {
    const i = rest.indexOf(name);
    return i >= 0 ? rest[i + 1] : undefined;
  };
  const positional = rest.filter((a, i) => !a.startsWith('--') && !(i > 0 && rest[i - 1] === '--log'));
  const read = readReports;

  switch (command) {
    case 'names': {
      console.log(testNames(read(positional), option('--log')).join('\n'));
      return 0;
    }
    case 'compare': {
      const [namesFile, ...junitFiles] = positional;
      const before = fs.readFileSync(namesFile, 'utf8').split('\n').filter((l) => l.trim() !== '');
      const now = new Set(testNames(read(junitFiles)));
      // Renamed on purpose (a later issue changed what the name states): the new name must have run.
      const renamed = new Map<string, string>(fs.existsSync(RENAMED_FILE)
        ? (JSON.parse(fs.readFileSync(RENAMED_FILE, 'utf8')).renamed as Array<{ was: string; now: string }>).map((r) => [r.was, r.now])
        : []);
      const missing = before.filter((n) => !now.has(n) && !now.has(renamed.get(n) ?? ''));
      console.log(`${before.length} tests in ${namesFile} (${renamed.size} renamed on purpose, ${RENAMED_FILE}); ${now.size} in the junit report(s); missing: ${missing.length}`);
      for (const n of missing) console.log(`  missing: ${n}${renamed.has(n) ? ` (renamed to: ${renamed.get(n)})` : ''}`);
      if (missing.length > 0) {
        console.log(`Every test of ${namesFile} must still run. If one was renamed on purpose, `
          + `add it to ${RENAMED_FILE} (was, now, why) in the same commit; never edit ${namesFile}.`);
      }
      return missing.length > 0 ? 1 : 0;
    }
    case 'table': {
      const report = read(positional);
      const table = markdownTable(report, option('--log'));
      console.log(table);
      if (rest.includes('--write')) {
        const readme = fs.readFileSync('README.md', 'utf8');
        const start = readme.indexOf(BEGIN);
        const end = readme.indexOf(END);
        if (start < 0 || end < start) throw new Error(`README.md has no ${BEGIN} ... ${END} block`);
        fs.writeFileSync('README.md', `${readme.slice(0, start + BEGIN.length)}\n${table}\n${readme.slice(end)}`);
        const files = Object.fromEntries(perFile(report, option('--log')).map((r) => [r.file, Math.round(r.seconds * 10) / 10]));
        fs.writeFileSync(path.join('test', 'timings.json'), `${JSON.stringify({
          comment: 'Seconds per test file from a junit report (npx projen test:table -- --write); test/sequencer.js runs the slowest first.',
          files,
        }, null, 2)}\n`);
        console.log('\nwrote README.md (test timings) and test/timings.json');
      }
      return 0;
    }
    default:
      console.error('usage: junit-report names [<junit.xml>...] [--log <jest output>] | compare <names.txt> [<junit.xml>...] | table [<junit.xml>...] [--log <jest output>] [--write]');
      return 2;
  }
}

if (require.main === module) {
  process.exit(main(process.argv.slice(2)));
}
