#!/usr/bin/env bash
# The test task's jest + eslint (`npm test` runs `npx projen bundle` first): eslint (type-aware,
# about 30 s of CPU) runs beside jest instead of after it, at a lower CPU priority so that the
# timing-sensitive local-runtime tests keep theirs. Its output is printed after jest's; the exit
# status fails when either fails. Arguments go to jest (`npm test -- -t name`).
set -uo pipefail
cd "$(dirname "$0")/.."

lint_log=$(mktemp)
trap 'rm -f "$lint_log"' EXIT
nice -n 10 npx projen eslint >"$lint_log" 2>&1 &
lint_pid=$!

npx jest --passWithNoTests --ci "$@"
jest_status=$?

wait "$lint_pid"
lint_status=$?
echo "👾 eslint (ran beside jest):"
cat "$lint_log"
if [ "$lint_status" -ne 0 ]; then echo "eslint failed (exit $lint_status)"; fi
if [ "$jest_status" -ne 0 ]; then exit "$jest_status"; fi
exit "$lint_status"
