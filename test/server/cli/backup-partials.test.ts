/**
 * `backup --output-dir` (the registry-backup CronJob) clears what killed runs left: a run cut off by
 * the CronJob's deadline or a lost node leaves its `.partial` download on the backups volume, which
 * nothing else removes and which takes up to a whole archive's space.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readdirSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { startRegistry, tempDir, type RegistryProcess } from "../../helpers/registry.js";

const run = promisify(execFile);
const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;

describe("backup --output-dir and interrupted runs", () => {
  let registry: RegistryProcess;
  before(async () => {
    registry = await startRegistry();
  });
  after(() => registry?.stop());

  it("removes partial archives no run has written to for an hour, and nothing else", async () => {
    const dir = tempDir();
    const abandoned = "registry-backup-20261201T010000.000Z.tar.gz.partial";
    const live = "registry-backup-20261202T010000.000Z.tar.gz.partial";
    const notOurs = "site-export.tar.gz.partial";
    for (const name of [abandoned, live, notOurs]) writeFileSync(join(dir, name), "x".repeat(1024));
    const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
    utimesSync(join(dir, abandoned), twoHoursAgo, twoHoursAgo);
    utimesSync(join(dir, notOurs), twoHoursAgo, twoHoursAgo);

    const { stdout } = await run(process.execPath, [
      MAIN,
      "backup",
      "--output-dir",
      dir,
      "--keep",
      "7",
      "--url",
      registry.url,
    ]);
    assert.match(
      stdout,
      new RegExp(`backup: removed ${abandoned.replaceAll(".", "\\.")} \\(an interrupted backup\\)`),
    );
    assert.match(stdout, /backup: \d+ bytes written to /);
    assert.ok(!existsSync(join(dir, abandoned)), "the abandoned download is gone");
    assert.ok(existsSync(join(dir, live)), "a download still being written is left alone");
    assert.ok(existsSync(join(dir, notOurs)), "files that are not ours are left alone");
    assert.equal(readdirSync(dir).filter((f) => f.endsWith(".tar.gz")).length, 1);
  });
});
