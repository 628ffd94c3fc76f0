// What `npm run mutation` mutates, in groups that each run only their own unit tests (the command
// runner cannot tell which tests cover a mutant, so every mutant runs its whole group's tests;
// small groups keep a run short). Paths of tests are relative to dist/test.
export const GROUPS = {
  config: {
    modules: {
      config: ["server/src/config/duration.ts", "server/src/config/load.ts", "server/src/config/schema.ts"],
    },
    tests: [
      "unit/config/duration.test.js",
      "unit/config/load.test.js",
      "unit/config/schema.test.js",
      "server/config/duration.test.js",
    ],
  },
  tokens: {
    modules: { "auth/tokens": ["server/src/auth/tokens.ts"] },
    tests: ["unit/auth/tokens.test.js"],
  },
  pure: {
    modules: {
      "auth/policy": ["server/src/auth/policy.ts"],
      "registry/manifest": ["server/src/registry/manifest.ts"],
      "registry/json-scan": ["server/src/registry/json-scan.ts"],
      "registry/digest": ["server/src/registry/digest.ts"],
      "registry/names": ["server/src/registry/names.ts"],
      "http/range": ["server/src/http/range.ts"],
      "constructs/quantities": ["constructs/quantities.ts"],
    },
    tests: [
      "unit/auth/policy.test.js",
      "server/auth/policy.test.js",
      "unit/registry/manifest.test.js",
      "unit/registry/json-scan.test.js",
      "unit/registry/digest.test.js",
      "unit/registry/names.test.js",
      "unit/http/range.test.js",
      "unit/constructs/quantities.test.js",
    ],
  },
};

/** The group a run is for: MUTATION_GROUP, set by run.mjs for Stryker and the test command it runs. */
export function currentGroup() {
  const name = process.env.MUTATION_GROUP ?? "";
  const group = GROUPS[name];
  if (group === undefined) throw new Error(`MUTATION_GROUP must be one of ${Object.keys(GROUPS).join(", ")}`);
  return { name, ...group };
}
