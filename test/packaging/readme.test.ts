/**
 * README.md's code blocks, taken from the README itself: every TypeScript block is type-checked
 * against the built package (`neam-registry/constructs` resolves to this clone's dist) and run
 * against cdk8s; every shell command of the "Deploying" section is run by a test or needs
 * what this machine has not (a cluster, the Pulumi CLI, Docker); `npm run`/`npx` commands anywhere
 * name a script or a binary the project has. test/stacks/synth-cli.test.ts runs the Deploying
 * section's `npm run synth` and `npx cdk8s synth` lines as written, in a clean clone.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import ts from "typescript";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { ConfigSchema, parseSyncManifest, validateConfig } from "../../server/src/contract/index.js";
import { tempDir } from "../helpers/registry.js";
import { ROOT } from "../stacks/clean-copy.js";
import { readmeBlocks, shellCommands } from "./readme-blocks.js";

const README = join(ROOT, "README.md");
const blocks = readmeBlocks(README);

/** Shell commands that need what no test here has: their lines are documentation only. */
const NEEDS_A_CLUSTER_OR_CLI = /^(kubectl|pulumi|ctr|crictl|docker|skopeo) /;
/** Deploying-section commands test/stacks/synth-cli.test.ts runs as written. */
export const RUN_BY_SYNTH_TEST = /^(npm run synth|npx cdk8s synth)\b/;
/** Deploying-section commands test/image/image.test.ts runs (its builder, with --ref and --push). */
const RUN_BY_IMAGE_TEST = /^npm run image\b/;

describe("README TypeScript blocks compile and synthesize", () => {
  const tsBlocks = blocks.filter((b) => b.lang === "ts" || b.lang === "typescript");
  it("there is at least one", () => assert.ok(tsBlocks.length > 0));

  for (const block of tsBlocks) {
    it(`README.md:${block.line} (${block.section})`, { timeout: 120_000 }, () => {
      // Inside the package, so `neam-registry/constructs` resolves through its own exports.
      const dir = join(ROOT, "dist", `readme-block-${process.pid}-${block.line}`);
      mkdirSync(dir, { recursive: true });
      try {
        const source = join(dir, "main.ts");
        writeFileSync(source, block.code);
        const options: ts.CompilerOptions = {
          target: ts.ScriptTarget.ES2022,
          module: ts.ModuleKind.NodeNext,
          moduleResolution: ts.ModuleResolutionKind.NodeNext,
          strict: true,
          skipLibCheck: true,
          types: ["node"],
          rootDir: dir,
          outDir: dir,
        };
        const program = ts.createProgram([source], options);
        const emitted = program.emit();
        const diagnostics = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics].map((d) =>
          ts.flattenDiagnosticMessageText(d.messageText, "\n"),
        );
        assert.deepEqual(diagnostics, [], `README.md:${block.line} does not compile`);

        const out = tempDir("neam-readme-");
        const run = spawnSync(process.execPath, [join(dir, "main.js")], {
          cwd: dir,
          encoding: "utf8",
          env: { ...process.env, CDK8S_OUTDIR: out },
        });
        assert.equal(run.status, 0, `README.md:${block.line} throws: ${run.stderr}`);
        const files = readdirSync(out).filter((f) => f.endsWith(".k8s.yaml"));
        assert.ok(files.length > 0, "nothing synthesized");
        const kinds = files.flatMap((f) =>
          parseAllDocuments(readFileSync(join(out, f), "utf8")).map(
            (d) => (d.toJSON() as { kind: string }).kind,
          ),
        );
        assert.ok(kinds.includes("Deployment"), `no Deployment in ${kinds.join(", ")}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe("README shell commands against the package", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    scripts: Record<string, string>;
  };
  const shell = blocks.filter((b) => b.lang === "sh" || b.lang === "bash");

  it("every npm run / npx names a script or an installed binary", () => {
    let seen = 0;
    for (const block of shell) {
      for (const command of shellCommands(block.code)) {
        for (const [, tool, name] of command.matchAll(/(?:^|&&\s*)(npm run|npx)\s+(?:--\S+\s+)*([\w:-]+)/g)) {
          seen++;
          if (tool === "npm run")
            assert.ok(name! in pkg.scripts, `README.md:${block.line}: no script ${name}`);
          else
            assert.ok(
              existsSync(join(ROOT, "node_modules/.bin", name!)),
              `README.md:${block.line}: npx ${name} not installed`,
            );
        }
      }
    }
    assert.ok(seen >= 3);
  });

  it("every command of the Deploying section is run by a test or needs a cluster / Pulumi / Docker", () => {
    const deploying = shell.filter((b) => b.section === "Deploying");
    assert.ok(deploying.length >= 4, "the Deploying section lost its commands");
    const synthLines = deploying
      .flatMap((b) => shellCommands(b.code))
      .filter((c) => RUN_BY_SYNTH_TEST.test(c));
    assert.equal(synthLines.length, 2, "npm run synth and npx cdk8s synth");
    for (const block of deploying) {
      for (const command of shellCommands(block.code)) {
        const steps = command.split(/\s*&&\s*/);
        for (const step of steps) {
          assert.ok(
            RUN_BY_SYNTH_TEST.test(step) ||
              RUN_BY_IMAGE_TEST.test(step) ||
              NEEDS_A_CLUSTER_OR_CLI.test(step) ||
              /^npm (ci|run build)$/.test(step),
            `README.md:${block.line}: no test runs ${JSON.stringify(step)}`,
          );
        }
      }
    }
  });
});

describe("README registry config blocks", () => {
  const topLevel = new Set(Object.keys(ConfigSchema.shape));
  it("every yaml block made of config keys is accepted by the registry's own validator", () => {
    let checked = 0;
    for (const block of blocks.filter((b) => b.lang === "yaml")) {
      const document = parseYaml(block.code) as unknown;
      if (document === null || typeof document !== "object" || Array.isArray(document)) continue;
      const keys = Object.keys(document);
      // Sync manifests, hosts files and Kubernetes objects have other top-level keys.
      if (keys.length === 0 || !keys.every((key) => topLevel.has(key))) continue;
      if ((document as { sync?: { images?: unknown } }).sync?.images !== undefined) {
        // The guide's sync manifest (its own schema, also under `sync:`).
        assert.doesNotThrow(() => parseSyncManifest(block.code), `README.md:${block.line}`);
        continue;
      }
      // Fragments of a config.yml: the file around them carries `version`.
      const config = { version: "0.1", ...document };
      assert.doesNotThrow(() => validateConfig(config), `README.md:${block.line}`);
      checked++;
    }
    assert.ok(checked >= 7, `only ${checked} config blocks found`);
  });
});
