// Mutation testing of the pure modules (issue 15). Run it with `npm run mutation` (run.mjs), which
// sets MUTATION_GROUP to pick the modules to mutate and the unit tests that must kill them.
// Stryker instruments every mutant into the sources at once (mutant schemata); the build below
// compiles them once per sandbox, then each mutant is one run of the group's unit tests with
// __STRYKER_ACTIVE_MUTANT__ naming it. The command runner is used because Stryker has no
// node:test runner; it reads only the exit code (non-zero: the mutant is killed).
import { currentGroup } from "./modules.mjs";

const group = currentGroup();
/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "command",
  commandRunner: { command: "node test/mutation/run-tests.mjs" },
  buildCommand: "tsc -p test/mutation/tsconfig.json",
  coverageAnalysis: "off",
  mutate: Object.values(group.modules).flat(),
  // Sandboxes need the sources and tests, not the build output or local data.
  ignorePatterns: ["dist", "data", ".bench", "server/native/build", "bench", "stacks"],
  tempDirName: `dist/stryker-tmp/${group.name}`,
  cleanTempDir: "always",
  concurrency: 2,
  timeoutMS: 10000,
  reporters: ["clear-text", "progress-append-only", "html", "json"],
  htmlReporter: { fileName: `dist/mutation/${group.name}.html` },
  jsonReporter: { fileName: `dist/mutation/${group.name}.json` },
};
