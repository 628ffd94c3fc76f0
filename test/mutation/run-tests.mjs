// The test command of a mutation run: the compiled unit tests of the pure modules, imported into
// one node:test process (a process per file, as `node --test` does, costs more than the tests).
// node:test sets a non-zero exit code when any test fails, which is what kills a mutant.
// MUTATION_TESTS (comma-separated paths of compiled files) replaces the list, e.g. to measure
// what the older tests alone kill.
import { readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const dist = resolve("dist/test");
function walk(dir) {
  return readdirSync(dir)
    .sort()
    .flatMap((entry) => {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) return walk(path);
      return entry.endsWith(".test.js") ? [path] : [];
    });
}
const files = process.env.MUTATION_TESTS
  ? process.env.MUTATION_TESTS.split(",").map((f) => resolve(f))
  : [
      ...walk(join(dist, "unit")),
      // Older in-process tests of the same modules.
      join(dist, "server/config/duration.test.js"),
      join(dist, "server/auth/policy.test.js"),
    ];
for (const file of files) await import(pathToFileURL(file).href);
