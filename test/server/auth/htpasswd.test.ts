import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { HtpasswdUsers, parseHtpasswd } from "../../../server/src/auth/htpasswd.js";
import { tempDir, waitUntil } from "../../helpers/registry.js";

/** An entry written by Apache's own htpasswd. */
function apacheEntry(user: string, password: string, cost = 5): string {
  const result = spawnSync("htpasswd", ["-nbB", "-C", String(cost), user, password], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(result.stderr);
  return result.stdout.trim();
}

describe("htpasswd", () => {
  it("accepts bcrypt entries written by Apache's htpasswd -B", async () => {
    const path = join(tempDir(), "htpasswd");
    writeFileSync(
      path,
      `${apacheEntry("admin", "s3cret")}\n# comment\n\n${apacheEntry("ci", "token-like")}\n`,
    );
    const users = new HtpasswdUsers(path);
    assert.equal(users.size, 2);
    assert.equal(await users.verify("admin", "s3cret"), true);
    assert.equal(await users.verify("admin", "wrong"), false);
    assert.equal(await users.verify("nobody", "s3cret"), false);
    assert.equal(await users.verify("ci", "token-like"), true);
  });

  it("refuses MD5, SHA1 and crypt entries with the line and the user", () => {
    for (const flag of ["-m", "-s", "-d"]) {
      const entry = spawnSync("htpasswd", ["-nb", flag, "old", "pw"], { encoding: "utf8" }).stdout.trim();
      assert.throws(
        () => parseHtpasswd(`${apacheEntry("ok", "x")}\n${entry}\n`, "f"),
        /f: line 2: user "old" does not have a bcrypt hash/,
        flag,
      );
    }
    assert.throws(() => parseHtpasswd("no-colon-here\n", "f"), /f: line 1: expected user:hash/);
  });

  it("picks up added and removed users when the file changes, and keeps the old users if it breaks", async () => {
    const path = join(tempDir(), "htpasswd");
    writeFileSync(path, `${apacheEntry("admin", "a")}\n`);
    const events: unknown[] = [];
    const users = new HtpasswdUsers(path, (e) => events.push(e));
    const stop = users.watch();
    try {
      spawnSync("htpasswd", ["-bB", "-C", "5", path, "carol", "c"]);
      await waitUntil(async () => users.verify("carol", "c"), 10_000);
      spawnSync("htpasswd", ["-D", path, "carol"]);
      await waitUntil(async () => !(await users.verify("carol", "c")), 10_000);
      writeFileSync(path, "admin:{SHA}broken\n");
      await waitUntil(
        async () => events.some((e) => typeof e === "object" && e !== null && "error" in e),
        10_000,
      );
      assert.equal(await users.verify("admin", "a"), true, "a broken file keeps the previous users");
    } finally {
      stop();
    }
  });
});
