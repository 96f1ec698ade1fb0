/**
 * One temporary directory per jest run (globalSetup / globalTeardown in .projenrc.ts).
 *
 * Every synthesized app writes a `cdk.out*` directory with copies of the bundled handlers into
 * `os.tmpdir()`, and the local-runtime tests their own directories; nothing removed them, and a few
 * hundred runs filled the disk (a CI run failed with ENOSPC). The setup points TMPDIR at a fresh
 * directory, which the workers inherit (they start after it) and `os.tmpdir()` reads on every call;
 * the teardown removes it. Jest's own transform cache was placed before the setup ran, so it stays
 * where it was and is reused across runs. A run killed before its teardown leaves its directory
 * (`cdk-async-external-api-jest-*` in the system temporary directory).
 */
const fs = require('fs');
const os = require('os');
const path = require('path');

const VARIABLE = 'CDK_ASYNC_EXTERNAL_API_JEST_TMPDIR';

async function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-async-external-api-jest-'));
  process.env[VARIABLE] = dir;
  process.env.TMPDIR = dir;
}

async function teardown() {
  const dir = process.env[VARIABLE];
  if (dir) {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

module.exports = { setup, teardown };
