// `npm run coverage [-- FILTER…]`: runs the tests (test/run.mjs, same filters) under c8 and prints
// lines and branches per source directory. Server processes the tests start inherit
// NODE_V8_COVERAGE, so what they run counts too (except those killed with SIGKILL, which write
// nothing). Source maps take the numbers back to the .ts files.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const reportDir = `${root}coverage`;
const c8 = `${root}node_modules/.bin/c8`;
// Some tests run the server as an unprivileged user (setpriv): it must be able to write its
// coverage too, or node says so on stderr and the test that reads stderr fails.
rmSync(reportDir, { recursive: true, force: true });
mkdirSync(`${reportDir}/tmp`, { recursive: true });
chmodSync(`${reportDir}/tmp`, 0o1777);
const run = spawnSync(
  c8,
  [
    "--all",
    "--clean=false",
    "--reporter=json-summary",
    "--reporter=text-summary",
    `--report-dir=${reportDir}`,
    `--temp-directory=${reportDir}/tmp`,
    "--include=dist/server/**",
    "--include=dist/constructs/**",
    "--include=dist/stacks/**",
    process.execPath,
    "test/run.mjs",
    ...process.argv.slice(2),
  ],
  { cwd: root, stdio: "inherit" },
);

const summary = JSON.parse(readFileSync(`${reportDir}/coverage-summary.json`, "utf8"));
const dirs = new Map();
for (const [file, numbers] of Object.entries(summary)) {
  if (file === "total") continue;
  const dir = dirname(relative(root, file));
  const sum = dirs.get(dir) ?? { files: 0, lines: [0, 0], branches: [0, 0] };
  sum.files++;
  sum.lines[0] += numbers.lines.covered;
  sum.lines[1] += numbers.lines.total;
  sum.branches[0] += numbers.branches.covered;
  sum.branches[1] += numbers.branches.total;
  dirs.set(dir, sum);
}
const pct = ([covered, total]) => (total === 0 ? "-" : `${((100 * covered) / total).toFixed(1)}%`);
const rows = [...dirs.entries()].sort(([a], [b]) => a.localeCompare(b));
const width = Math.max(...rows.map(([dir]) => dir.length), 9);
console.log(`\n${"directory".padEnd(width)}  files    lines  branches`);
for (const [dir, s] of rows)
  console.log(
    `${dir.padEnd(width)}  ${String(s.files).padStart(5)}  ${pct(s.lines).padStart(7)}  ${pct(s.branches).padStart(8)}`,
  );
const t = summary.total;
console.log(
  `${"all".padEnd(width)}  ${String(rows.reduce((n, [, s]) => n + s.files, 0)).padStart(5)}  ${pct([t.lines.covered, t.lines.total]).padStart(7)}  ${pct([t.branches.covered, t.branches.total]).padStart(8)}`,
);
console.log(`\nper file: ${relative(root, reportDir)}/coverage-summary.json`);
process.exit(run.status ?? 1);
