#!/usr/bin/env bash
# The test task after `npx projen bundle`: jest and eslint side by side (issue 12, README "Test
# speed"). Arguments go to one jest run as they are (`npm test -- test/local/e2e.test.ts`,
# `npm test -- -t name`); without arguments, the whole suite runs in two lanes at once:
#
#   runtime lane: the files that start the whole local runtime (LocalRuntime.start /
#     startFaultSuite / runDemo: the example app with every emulator, paced in real time), at most two at a
#     time and at normal CPU priority. They mostly wait on real clocks, but their cold starts and
#     pacing need the CPU when they ask for it; three at once under load missed callback timeouts.
#   unit lane: everything else (constructs, handlers, single emulators), two workers, niced (10): CPU
#     bound, not timing sensitive. At nice 5 the runtime lane got about 3/4 of a core against the
#     two unit workers, and 3 of 4 full runs of session 20 (clean clones and main) lost a timing race
#     in the runtime lane (a request past its callback timeout, a waiter given up); nice 10 gives it
#     about 9/10 (CFS weights 1024 : 110) while the unit lane still fills its waits.
#   eslint (type-aware, about 30 s of CPU), niced further (15).
#
# Each lane writes its own junit report (test-reports/junit.xml, test-reports/junit-runtime.xml);
# the ASL edge coverage gate runs once on both lanes' records. Jest's code coverage is off here
# (--coverage=false): its instrumentation tripled the unit lane's CPU time (330 s against 91 s,
# 2 cores); `npx jest --coverage` writes the code coverage report when you want it. The jest flags are those projen would
# pass: --passWithNoTests --ci (snapshots are never written). The exit status fails when any fails.
set -uo pipefail
cd "$(dirname "$0")/.."

# Every temporary file of the run (each test's cdk.out with its asset copies, the local runtime's
# directories, the logs below) goes into one directory, removed when the run ends however it ends.
# A full run writes several GB there (one cdk.out per synthesized app); left behind, repeated runs
# filled a 252 GB disk and a later run failed with ENOSPC. Jest's transform cache stays where it
# was (outside), so runs keep reusing it.
jest_cache="${TMPDIR:-/tmp}/jest_$(id -u)"
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/cdk-async-external-api-test.XXXXXX")
export TMPDIR="$run_tmp"
trap 'rm -rf "$run_tmp"' EXIT
trap 'exit 130' INT TERM
logs="$run_tmp/logs"
mkdir "$logs"
nice -n 15 npx projen eslint >"$logs/eslint" 2>&1 &
lint_pid=$!

# A runtime-lane report of an earlier run must not count as this run's.
rm -f test-reports/junit-runtime.xml
if [ $# -gt 0 ]; then
  npx jest --passWithNoTests --ci --cacheDirectory "$jest_cache" "$@"
  jest_status=$?
else
  mapfile -t runtime_files < <(grep -rlE 'LocalRuntime\.start|startFaultSuite|runDemo\(' test --include='*.test.ts' | sort)
  ignore=('/node_modules/' '/lib/' '/dist/')
  for f in "${runtime_files[@]}"; do ignore+=("<rootDir>/$f"); done

  # ASL edge coverage (test/asl/coverage-reporter.js): each lane records into its own directory
  # without the gate (each is a part of the run); the gate runs once below, on both lanes' records.
  JEST_JUNIT_OUTPUT_NAME=junit-runtime.xml ASL_COVERAGE_GATE=0 ASL_COVERAGE_RECORDS_DIR=coverage/asl-records-runtime \
    npx jest --passWithNoTests --ci --cacheDirectory "$jest_cache" --maxWorkers=2 --coverage=false \
    "${runtime_files[@]}" >"$logs/runtime" 2>&1 &
  runtime_pid=$!

  ASL_COVERAGE_GATE=0 nice -n 10 npx jest --passWithNoTests --ci --cacheDirectory "$jest_cache" --maxWorkers=2 --coverage=false --testPathIgnorePatterns "${ignore[@]}"
  unit_status=$?

  wait "$runtime_pid"
  runtime_status=$?
  echo "👾 jest, runtime lane (${#runtime_files[@]} files, ran beside the one above):"
  cat "$logs/runtime"
  jest_status=$(( unit_status != 0 ? unit_status : runtime_status ))

  echo "👾 ASL edge coverage of both lanes (the gate of a full run):"
  mkdir -p coverage/asl-records
  cp coverage/asl-records-runtime/*.jsonl coverage/asl-records/ 2>/dev/null
  ASL_COVERAGE_GATE=1 node -e '
    const Reporter = require("./test/asl/coverage-reporter.js");
    const reporter = new Reporter({ rootDir: process.cwd() });
    reporter.onRunComplete();
    if (reporter.getLastError()) process.exit(1);
  '
  asl_status=$?
  if [ "$jest_status" -eq 0 ]; then jest_status=$asl_status; fi
fi

wait "$lint_pid"
lint_status=$?
echo "👾 eslint (ran beside jest):"
cat "$logs/eslint"
if [ "$lint_status" -ne 0 ]; then echo "eslint failed (exit $lint_status)"; fi
if [ "$jest_status" -ne 0 ]; then exit "$jest_status"; fi
exit "$lint_status"
