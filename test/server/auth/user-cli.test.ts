/** `neam-registry user …` against Apache's htpasswd, both ways. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { HtpasswdUsers } from "../../../server/src/auth/htpasswd.js";
import { tempDir } from "../../helpers/registry.js";

const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;
const cli = (args: string[], input?: string) =>
  spawnSync(process.execPath, [MAIN, "user", ...args], { encoding: "utf8", input });
const apacheVerifies = (file: string, user: string, password: string) =>
  spawnSync("htpasswd", ["-vb", file, user, password]).status === 0;

describe("user CLI", () => {
  it("adds users Apache's htpasswd verifies; reads users Apache added", async () => {
    const file = join(tempDir(), "htpasswd");
    assert.equal(cli(["add", "--file", file, "--cost", "5", "alice", "alice-pw"]).status, 0);
    assert.equal(
      cli(["add", "--file", file, "--cost", "5", "bob"], "bob-pw\n").status,
      0,
      "password from stdin",
    );
    assert.ok(apacheVerifies(file, "alice", "alice-pw"));
    assert.ok(apacheVerifies(file, "bob", "bob-pw"));
    assert.ok(!apacheVerifies(file, "alice", "wrong"));
    assert.match(readFileSync(file, "utf8"), /^alice:\$2y\$05\$/m);
    assert.equal(statSync(file).mode & 0o777, 0o600, "a new file is private");
    spawnSync("htpasswd", ["-bB", "-C", "5", file, "carol", "carol-pw"]);
    assert.deepEqual(cli(["list", "--file", file]).stdout.trim().split("\n"), ["alice", "bob", "carol"]);
    assert.equal(await new HtpasswdUsers(file).verify("carol", "carol-pw"), true);
  });

  it("updates and removes; Apache sees the change", () => {
    const file = join(tempDir(), "htpasswd");
    cli(["add", "--file", file, "--cost", "4", "dave", "old"]);
    assert.equal(cli(["update", "--file", file, "--cost", "4", "dave", "new"]).status, 0);
    assert.ok(apacheVerifies(file, "dave", "new"));
    assert.ok(!apacheVerifies(file, "dave", "old"));
    assert.equal(cli(["remove", "--file", file, "dave"]).status, 0);
    assert.equal(cli(["list", "--file", file]).stdout, "");
  });

  it("bad requests exit non-zero with one line and leave the file as it was", () => {
    const file = join(tempDir(), "htpasswd");
    cli(["add", "--file", file, "--cost", "4", "erin", "pw"]);
    const before = readFileSync(file, "utf8");
    const cases: [string[], RegExp][] = [
      [["add", "--file", file, "erin", "x"], /already exists/],
      [["update", "--file", file, "nobody", "x"], /is not in/],
      [["remove", "--file", file, "nobody"], /is not in/],
      [["add", "--file", file, "bad:name", "x"], /invalid user name/],
      [["add", "--file", file, "--cost", "99", "frank", "x"], /cost must be 4 to 17/],
      [["add", "--file", file, "frank", ""], /password is empty/],
      [["add", "frank", "x"], /need --file/],
      [["frobnicate", "--file", file], /unknown user command/],
    ];
    for (const [args, message] of cases) {
      const result = cli(args);
      assert.notEqual(result.status, 0, args.join(" "));
      assert.equal(result.stderr.trim().split("\n").length, 1, args.join(" "));
      assert.match(result.stderr, message, args.join(" "));
    }
    assert.equal(readFileSync(file, "utf8"), before);
  });

  it("refuses to edit a file with non-bcrypt entries", () => {
    const file = join(tempDir(), "htpasswd");
    writeFileSync(file, "old:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
    const result = cli(["add", "--file", file, "x", "y"]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /does not have a bcrypt hash/);
  });
});
