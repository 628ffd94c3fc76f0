// `npm run mutation [group…]`: runs Stryker once per group of modules.mjs (all by default), then
// prints the score of each module from the JSON reports and fails when one is below 80% killed.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { GROUPS } from "./modules.mjs";

const THRESHOLD = 80;
const names = process.argv.slice(2);
for (const name of names)
  if (!(name in GROUPS)) throw new Error(`unknown group ${name}; groups: ${Object.keys(GROUPS).join(", ")}`);
const run = names.length > 0 ? names : Object.keys(GROUPS);
const stryker = new URL("../../node_modules/.bin/stryker", import.meta.url).pathname;

for (const name of run) {
  const started = Date.now();
  const result = spawnSync(stryker, ["run", "test/mutation/stryker.config.mjs"], {
    stdio: "inherit",
    env: { ...process.env, MUTATION_GROUP: name },
  });
  console.log(`mutation: group ${name} took ${Math.round((Date.now() - started) / 1000)} s`);
  if (result.status !== 0) process.exit(result.status ?? 1);
}

// Killed and timed out are detected; survived and no coverage are not; compile and runtime errors
// are not mutants that ran (Stryker's own definition of the score).
let failed = false;
console.log("\nmodule                  killed  timeout  survived  total  score");
for (const name of Object.keys(GROUPS)) {
  const report = `dist/mutation/${name}.json`;
  if (!existsSync(report)) continue;
  const files = JSON.parse(readFileSync(report, "utf8")).files;
  for (const [module, paths] of Object.entries(GROUPS[name].modules)) {
    const count = { Killed: 0, Timeout: 0, Survived: 0, NoCoverage: 0 };
    for (const path of paths)
      for (const mutant of files[path]?.mutants ?? []) if (mutant.status in count) count[mutant.status]++;
    const detected = count.Killed + count.Timeout;
    const total = detected + count.Survived + count.NoCoverage;
    const score = total === 0 ? 100 : (100 * detected) / total;
    if (score < THRESHOLD) failed = true;
    console.log(
      `${module.padEnd(22)} ${String(count.Killed).padStart(7)} ${String(count.Timeout).padStart(8)} ${String(count.Survived + count.NoCoverage).padStart(9)} ${String(total).padStart(6)}  ${score.toFixed(1)}%`,
    );
  }
}
if (failed) {
  console.log(`\nmutation: a module is below ${THRESHOLD}% killed (see dist/mutation/<group>.html)`);
  process.exit(1);
}
