// Tests run on the compiled output (npm test compiles first): one tsc pass is much
// faster than transforming every file per worker.
module.exports = {
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  testPathIgnorePatterns: ['/dist/test/kernel/'],
  testEnvironment: 'node',
  testTimeout: 120000,
};
