// Runs every compiled test file under node's built-in test runner (Node 20 has no --test globs).
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("../dist/test/", import.meta.url).pathname;
const only = process.argv.slice(2);
const files = [];
(function walk(dir) {
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) walk(path);
    else if (entry.endsWith(".test.js") && (only.length === 0 || only.some((o) => path.includes(o))))
      files.push(path);
  }
})(root);
// A bound on each test file, so that a hanging server or client cannot block CI. Node 20 applies
// --test-timeout to each file as a whole when it runs them (--test), not to each test in it: the
// harness inside a file never reads the flag (20.20's parseCommandLine has no timeout; `node
// --test-timeout=… file` ignores it, NODE_OPTIONS refuses it, run({ timeout }) is per file too), so
// a per-test bound exists only as each test's own `{ timeout }`. The slowest file takes about 3
// minutes alone here (synth-cli; garbage collection, backup and sync about 1-2), more when two run
// at once on a loaded machine, hence 10 minutes. NEAM_TEST_TIMEOUT_MS overrides it.
const timeout = Number(process.env.NEAM_TEST_TIMEOUT_MS ?? 600_000);
// Test files that use S3 (they import test/helpers/ceph) share one Ceph RGW, started here for the
// whole run and handed to them by environment, unless NEAM_TEST_S3_ENDPOINT already names a store.
let ceph;
if (
  !process.env.NEAM_TEST_S3_ENDPOINT &&
  files.some((f) => readFileSync(f, "utf8").includes("helpers/ceph.js"))
) {
  const { startCeph } = await import("../dist/test/helpers/ceph.js");
  ceph = await startCeph();
  Object.assign(process.env, ceph.env);
}
const result = spawnSync(
  process.execPath,
  ["--test", "--test-concurrency=2", `--test-timeout=${timeout}`, ...files],
  {
    stdio: "inherit",
  },
);
await ceph?.stop();
process.exit(result.status ?? 1);
