/**
 * The README's `npx cdk8s synth --output DIR` and `npm run synth` lines, as written there, from a
 * clean clone: no dist/ to start from, the CLI's output directory honoured, the stacks/app.ts
 * entry point run for real.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { it } from "node:test";
import { parseAllDocuments } from "yaml";
import { readmeBlocks, shellCommands } from "../packaging/readme-blocks.js";
import { cleanCopy, ROOT } from "./clean-copy.js";

const FILES = [
  "local-registry-dev.k8s.yaml",
  "local-registry-production.k8s.yaml",
  "local-registry-scaleout.k8s.yaml",
];

/** The Deploying section's command starting with `start`. */
function readmeCommand(start: string): string {
  const commands = readmeBlocks(join(ROOT, "README.md"))
    .filter((b) => b.section === "Deploying" && b.lang === "sh")
    .flatMap((b) => shellCommands(b.code))
    .filter((c) => c.startsWith(start));
  assert.equal(commands.length, 1, `README's Deploying section: one "${start}" command`);
  return commands[0]!;
}

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

  // The CLI from the project's own devDependencies, offline (no upgrade check), as the README says.
  const cdk8s = readmeCommand("npx cdk8s synth");
  const output = /--output[= ](\S+)/.exec(cdk8s)?.[1];
  assert.ok(output !== undefined && output !== "dist/manifests", cdk8s);
  run(dir, "bash", ["-c", cdk8s]);
  assert.deepEqual(readdirSync(join(dir, output)).sort(), FILES);
  assert.ok(!existsSync(join(dir, "dist/manifests")), "--output ignored: the app wrote its own directory");
  const production = objectsIn(join(dir, output, "local-registry-production.k8s.yaml"));
  const deployment = production.find((o) => o.kind === "Deployment");
  assert.equal(deployment?.metadata.namespace, "registry");
  assert.ok(objectsIn(join(dir, output, "local-registry-dev.k8s.yaml")).some((o) => o.kind === "Deployment"));

  // `npm run synth`: the README's command, into dist/manifests, the same objects.
  run(dir, "bash", ["-c", readmeCommand("npm run synth")]);
  assert.deepEqual(readdirSync(join(dir, "dist/manifests")).sort(), FILES);
  for (const file of FILES) {
    assert.equal(
      readFileSync(join(dir, "dist/manifests", file), "utf8"),
      readFileSync(join(dir, output, file), "utf8"),
    );
  }
});
