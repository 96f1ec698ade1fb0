// Orders the test files longest first, so that the slow local-runtime files start at once and
// the short ones fill the other workers around them (longest-processing-time-first scheduling).
// Jest's own sequencer knows durations only from its cache of an earlier run on this machine and
// otherwise sorts by file size, which puts the 155 s fault suite behind dozens of short files on a
// fresh clone. Here a file without a cached duration takes the one in test/timings.json (seconds,
// written by `npx projen test:table` from a junit report), and a file in neither (a new one) takes
// DEFAULT_SECONDS. Plain JavaScript: jest loads a sequencer without a transform.
const path = require('node:path');
const Sequencer = require('@jest/test-sequencer').default;
const timings = require('./timings.json');

/** About the median of test/timings.json: a new file is assumed typical. */
const DEFAULT_SECONDS = 5;

class LongestFirstSequencer extends Sequencer {
  time(test) {
    const cached = super.time(test);
    if (cached != null) return cached;
    const file = path.relative(test.context.config.rootDir, test.path).split(path.sep).join('/');
    return 1000 * (timings.files[file] ?? DEFAULT_SECONDS);
  }
}

module.exports = LongestFirstSequencer;
