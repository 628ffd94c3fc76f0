// Mutation testing of the pure modules (issue 15): `npm run mutation`.
// Stryker instruments every mutant into the sources at once (mutant schemata); the build below
// compiles them once per sandbox, then each mutant is one run of the unit tests with
// __STRYKER_ACTIVE_MUTANT__ naming it. The command runner is used because Stryker has no
// node:test runner; it reads only the exit code (non-zero: the mutant is killed).
/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "command",
  commandRunner: { command: "node test/mutation/run-tests.mjs" },
  buildCommand: "tsc -p test/mutation/tsconfig.json",
  coverageAnalysis: "off",
  mutate: [
    "server/src/config/*.ts",
    "server/src/auth/policy.ts",
    "server/src/auth/tokens.ts",
    "server/src/registry/manifest.ts",
    "server/src/registry/digest.ts",
    "server/src/registry/names.ts",
    "server/src/http/range.ts",
    "constructs/quantities.ts",
  ],
  // Sandboxes need the sources and tests, not the build output or local data.
  ignorePatterns: ["dist", "data", ".bench", "server/native/build", "bench", "stacks"],
  tempDirName: "dist/stryker-tmp",
  concurrency: 2,
  timeoutMS: 10000,
  thresholds: { high: 90, low: 80, break: 80 },
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: "dist/mutation/mutation.html" },
  jsonReporter: { fileName: "dist/mutation/mutation.json" },
};
