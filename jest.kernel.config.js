// Tests on a real Debian kernel image (downloaded into .cache/ by the test setup).
module.exports = {
  roots: ['<rootDir>/dist/test/kernel'],
  testMatch: ['**/*.test.js'],
  testEnvironment: 'node',
  testTimeout: 1800000,
};
