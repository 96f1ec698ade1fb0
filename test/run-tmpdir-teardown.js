// globalTeardown: see run-tmpdir.js.
module.exports = require('./run-tmpdir').teardown;
