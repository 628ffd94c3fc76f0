import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AccessPolicy, compilePattern, type Caller } from "../../../server/src/auth/policy.js";

const user = (name: string): Caller => ({ kind: "user", name, proof: "password" });
const anonymous: Caller = { kind: "anonymous" };
const actions = (policy: AccessPolicy, caller: Caller, repo: string) =>
  [...policy.allowed(caller, repo)].sort();

describe("repository patterns", () => {
  it("* stays within one path component, ** crosses them, a/** also matches a", () => {
    assert.ok(compilePattern("team/*").test("team/app"));
    assert.ok(!compilePattern("team/*").test("team/app/sub"));
    assert.ok(compilePattern("team/**").test("team/app/sub"));
    assert.ok(compilePattern("team/**").test("team"));
    assert.ok(!compilePattern("team/**").test("teamx/app"));
    assert.ok(compilePattern("**").test("anything/at/all"));
    assert.ok(!compilePattern("a.b").test("axb"), "dots are literal");
  });
});

describe("access policy", () => {
  const policy = new AccessPolicy({
    groups: { dev: ["alice", "carol"] },
    rules: [
      { subjects: ["group:dev"], repositories: ["apps/**"], actions: ["pull", "push"] },
      { subjects: ["user:carol"], repositories: ["apps/carol/*"], actions: ["delete"] },
      { subjects: ["*"], repositories: ["shared/*"], actions: ["pull"] },
    ],
    default: ["pull"],
    anonymous: [{ repositories: ["public/**"], actions: ["pull"] }],
    admins: ["root", "group:ops"],
  });

  it("grants the union of the rules that match the user and their groups", () => {
    assert.deepEqual(actions(policy, user("alice"), "apps/web"), ["pull", "push"]);
    assert.deepEqual(actions(policy, user("carol"), "apps/carol/x"), ["delete", "pull", "push"]);
    assert.deepEqual(actions(policy, user("alice"), "shared/base"), ["pull"]);
  });

  it("falls back to the default for users no rule matches", () => {
    assert.deepEqual(actions(policy, user("bob"), "apps/web"), ["pull"]);
    assert.deepEqual(actions(policy, user("bob"), "other"), ["pull"]);
  });

  it("gives admins everything, and only admins the admin role", () => {
    assert.deepEqual(actions(policy, user("root"), "anything"), ["delete", "pull", "push"]);
    assert.ok(policy.isAdmin(user("root")));
    assert.ok(!policy.isAdmin(user("alice")));
    assert.ok(!policy.isAdmin(anonymous));
  });

  it("names an admin only by a password or our own token, never by a foreign issuer's subject", () => {
    assert.ok(policy.isAdmin({ kind: "user", name: "root", proof: "own-token" }));
    assert.ok(!policy.isAdmin({ kind: "user", name: "root", proof: "foreign-token" }));
    assert.ok(!policy.isAdmin({ kind: "user", name: "root" }), "a caller without proof is not trusted");
    assert.ok(!new AccessPolicy(undefined).isAdmin({ kind: "user", name: "x", proof: "foreign-token" }));
  });

  it("gives anonymous callers only the anonymous rules", () => {
    assert.deepEqual(actions(policy, anonymous, "public/images/x"), ["pull"]);
    assert.deepEqual(actions(policy, anonymous, "apps/web"), []);
    assert.ok(policy.allowsAnonymous);
  });

  it("without an access section, any authenticated user may do anything and anonymous nothing", () => {
    const open = new AccessPolicy(undefined);
    assert.deepEqual(actions(open, user("x"), "a/b"), ["delete", "pull", "push"]);
    assert.deepEqual(actions(open, anonymous, "a/b"), []);
    assert.ok(open.canPullEverywhere(user("x")));
  });

  it("pull everywhere (mount without from) only for ** rules, admins, or an open policy", () => {
    assert.ok(!policy.canPullEverywhere(user("alice")));
    assert.ok(policy.canPullEverywhere(user("root")));
    assert.ok(
      new AccessPolicy({
        rules: [{ subjects: ["*"], repositories: ["**"], actions: ["pull"] }],
      }).canPullEverywhere(user("z")),
    );
  });
});
