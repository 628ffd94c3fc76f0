// The test command of a mutation run: the compiled unit tests of one group (modules.mjs), imported
// into one node:test process (a process per file, as `node --test` does, costs more than the
// tests). node:test sets a non-zero exit code when a test fails, which is what kills a mutant.
// MUTATION_TESTS (comma-separated paths of compiled files) replaces the list, e.g. to measure
// what other tests kill.
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { currentGroup } from "./modules.mjs";

const files = process.env.MUTATION_TESTS
  ? process.env.MUTATION_TESTS.split(",")
  : currentGroup().tests.map((t) => `dist/test/${t}`);
for (const file of files) await import(pathToFileURL(resolve(file)).href);
