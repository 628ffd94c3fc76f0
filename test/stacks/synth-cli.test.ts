/**
 * `npx cdk8s synth --output DIR` and `npm run synth` from a clean clone: no dist/ to start from,
 * the CLI's output directory honoured, the stacks/app.ts entry point run for real.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { it } from "node:test";
import { parseAllDocuments } from "yaml";
import { cleanCopy } from "./clean-copy.js";

const FILES = ["local-registry-dev.k8s.yaml", "local-registry-production.k8s.yaml"];

function run(cwd: string, command: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(command, args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, CDK8S_OUTDIR: undefined, ...env },
    timeout: 300_000,
  });
  assert.equal(result.status, 0, `${command} ${args.join(" ")}: ${result.stdout}\n${result.stderr}`);
  return result;
}

function objectsIn(file: string): { kind: string; metadata: { name: string; namespace?: string } }[] {
  return parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJSON() as never);
}

it("cdk8s synth --output DIR and npm run synth work from a clean clone", { timeout: 600_000 }, () => {
  const dir = cleanCopy();
  assert.ok(!existsSync(join(dir, "dist")));

  // The CLI from the project's own devDependencies, offline (no upgrade check).
  run(dir, "npx", ["--no-install", "cdk8s", "synth", "--check-upgrade=false", "--output", "out/manifests"]);
  assert.deepEqual(readdirSync(join(dir, "out/manifests")).sort(), FILES);
  assert.ok(!existsSync(join(dir, "dist/manifests")), "--output ignored: the app wrote its own directory");
  const production = objectsIn(join(dir, "out/manifests/local-registry-production.k8s.yaml"));
  const deployment = production.find((o) => o.kind === "Deployment");
  assert.equal(deployment?.metadata.namespace, "registry");
  assert.ok(
    objectsIn(join(dir, "out/manifests/local-registry-dev.k8s.yaml")).some((o) => o.kind === "Deployment"),
  );

  // `npm run synth`: the README's command, into dist/manifests, the same objects.
  run(dir, "npm", ["run", "--silent", "synth"]);
  assert.deepEqual(readdirSync(join(dir, "dist/manifests")).sort(), FILES);
  for (const file of FILES) {
    assert.equal(
      readFileSync(join(dir, "dist/manifests", file), "utf8"),
      readFileSync(join(dir, "out/manifests", file), "utf8"),
    );
  }
});
