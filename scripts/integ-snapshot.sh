#!/usr/bin/env bash
# Writes or verifies the integration test snapshots (test/integ/*.snapshot) OFFLINE: no AWS
# account, no credentials, nothing deployed.
#
#   scripts/integ-snapshot.sh verify   # CI: synthesize every test/integ/integ.*.ts and compare its
#                                      # templates with the committed snapshot; exit 1 on any change
#   scripts/integ-snapshot.sh write    # after an intended change: rewrite the changed snapshots
#                                      # (an unchanged snapshot is left alone), then commit them
#
# Both need the bundled handler assets first (`npx projen bundle`; the projen tasks do it).
# Asset hashes are not compared (the tests set diffAssets: false), so handler edits alone never
# fail the check; every other template change does. `write` also fails (after writing) when the
# change would replace or delete a stateful resource: read integ-runner's "destructive changes".
# To deploy for real and run the assertions, see the header of test/integ/integ.orchestrator.ts.
set -euo pipefail

mode="${1:-}"
cd "$(dirname "$0")/.."

for asset in assets/callback-webhook/callback-processor.lambda/index.js assets/rate-controlled-queue-consumer/dispatcher.lambda/index.js; do
  if [[ ! -f "$asset" ]]; then
    echo "integ-snapshot: $asset is missing: run 'npx projen bundle' first" >&2
    exit 1
  fi
done

# Type-check the integ apps once; integ-runner then runs them without type checking (3x faster).
npx tsc --noEmit -p test/integ/tsconfig.json

# One region only: the stacks are environment-agnostic, the region never reaches the snapshot.
runner=(npx integ-runner --directory test/integ --language typescript
  --app "node -r ts-node/register/transpile-only {filePath}" --parallel-regions us-east-1)

case "$mode" in
  verify)
    # Snapshot tests only: without --update-on-failed / --force integ-runner never deploys.
    "${runner[@]}"
    ;;
  write)
    # --update-on-failed re-runs the tests whose snapshot changed; --dry-run skips the deployment
    # and only writes their snapshot.
    "${runner[@]}" --update-on-failed --dry-run
    ;;
  *)
    echo "usage: $0 verify|write" >&2
    exit 2
    ;;
esac
