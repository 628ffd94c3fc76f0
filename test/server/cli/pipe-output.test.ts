/**
 * The CLI's output through a pipe arrives whole. Node writes to a pipe asynchronously, so what does
 * not fit the pipe's 64 KiB buffer waits in the process; a command that exited as soon as it had
 * written lost it (`gc --json | jq` read a cut JSON document). The reader here is a real process
 * (`cat`) on a real pipe.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { startRegistry, tempDir, type RegistryProcess } from "../../helpers/registry.js";

const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;

/** Unreferenced blobs written into the reference layout: each one a line of gc's report. */
function writeOrphanBlobs(root: string, count: number): string[] {
  const digests: string[] = [];
  for (let i = 0; i < count; i++) {
    const content = Buffer.from(`orphan blob ${i}\n`);
    const hex = createHash("sha256").update(content).digest("hex");
    const dir = join(root, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "data"), content);
    digests.push(`sha256:${hex}`);
  }
  return digests;
}

/**
 * Runs the CLI as `neam-registry ARGS | READER` in bash: its stdout is a pipe(2) (64 KiB of
 * buffer, as under `| jq` or a container's log pipe), not the socket pair Node gives a child.
 * The exit status is the command's (pipefail).
 */
function runThroughPipe(
  args: string[],
  reader = "cat",
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "bash",
      ["-c", `set -o pipefail; "$@" | ${reader}`, "bash", process.execPath, MAIN, ...args],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const chunks: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout: Buffer.concat(chunks).toString("utf8"), stderr }));
  });
}

describe("CLI output through a pipe", () => {
  const root = join(tempDir(), "data");
  let digests: string[];
  let registry: RegistryProcess | undefined;
  before(() => {
    // About 230 KB of JSON: well past a pipe's 64 KiB.
    digests = writeOrphanBlobs(root, 3000);
  });
  after(() => registry?.stop());

  it("gc --offline --dry-run --json prints the whole report", async () => {
    const config = join(tempDir(), "config.yml");
    writeFileSync(config, stringify({ version: "0.1", storage: { filesystem: { rootdirectory: root } } }));
    const { code, stdout, stderr } = await runThroughPipe([
      "gc",
      "--offline",
      "--config",
      config,
      "--dry-run",
      "--json",
    ]);
    assert.equal(code, 0, stderr);
    assert.ok(stdout.length > 64 * 1024, `${stdout.length} bytes`);
    const report = JSON.parse(stdout) as { blobsDeleted: string[] };
    assert.deepEqual([...report.blobsDeleted].sort(), [...digests].sort());
  });

  it("gc --json against the running registry prints the whole report", async () => {
    registry = await startRegistry({ root });
    const { code, stdout, stderr } = await runThroughPipe([
      "gc",
      "--url",
      registry.url,
      "--dry-run",
      "--grace",
      "0s",
      "--json",
    ]);
    assert.equal(code, 0, stderr);
    const report = JSON.parse(stdout) as { blobsDeleted: string[]; dryRun: boolean };
    assert.equal(report.dryRun, true);
    assert.deepEqual([...report.blobsDeleted].sort(), [...digests].sort());
  });

  it("a reader that goes away early ends the command without a stack trace", async () => {
    const config = join(tempDir(), "config.yml");
    writeFileSync(config, stringify({ version: "0.1", storage: { filesystem: { rootdirectory: root } } }));
    // `| head -c 100`: the reader closes the pipe with most of the report unread (EPIPE).
    const { code, stdout, stderr } = await runThroughPipe(
      ["gc", "--offline", "--config", config, "--dry-run", "--json"],
      "head -c 100",
    );
    assert.equal(stdout.length, 100);
    assert.ok(code !== null, "the command exited by itself");
    assert.doesNotMatch(stderr, /EPIPE|at .*\.js:\d+/);
  });
});
