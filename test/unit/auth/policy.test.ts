import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ACTIONS, AccessPolicy, compilePattern, type Caller } from "../../../server/src/auth/policy.js";

// Admins are named only by a password (or our own token): tests speak for a Basic-authenticated user.
const user = (name: string): Caller => ({ kind: "user", name, proof: "password" });
const anonymous: Caller = { kind: "anonymous" };
const allowed = (policy: AccessPolicy, caller: Caller, repo: string) =>
  [...policy.allowed(caller, repo)].sort();
const ALL = ["delete", "pull", "push"];

describe("compilePattern", () => {
  const matches = (pattern: string, yes: string[], no: string[]) => {
    const re = compilePattern(pattern);
    for (const name of yes) assert.ok(re.test(name), `${pattern} should match ${name}`);
    for (const name of no) assert.ok(!re.test(name), `${pattern} should not match ${name}`);
  };

  it("literal names match only themselves, whole", () => {
    matches(
      "library/db2",
      ["library/db2"],
      ["library/db", "library/db22", "xlibrary/db2", "library/db2/x", ""],
    );
    matches("a.b", ["a.b"], ["axb", "ab"]);
    matches("swd", ["swd"], ["s d", "sw1"]);
  });

  it("regex metacharacters are literal", () => {
    matches("a+b", ["a+b"], ["aab", "ab"]);
    matches("a?b", ["a?b"], ["ab", "b"]);
    matches("a(b)|c", ["a(b)|c"], ["ab", "c"]);
    matches("a^b$c", ["a^b$c"], []);
    matches("a{1}[x]\\", ["a{1}[x]\\"], ["a", "ax"]);
  });

  it("* stays within one path component", () => {
    matches("team/*", ["team/app", "team/"], ["team/app/sub", "team", "other/app", "xteam/app"]);
    matches("*/app", ["team/app", "/app"], ["a/b/app", "team/apps"]);
    matches("a*b", ["ab", "axxb"], ["a/b", "axb/c"]);
  });

  it("** crosses components; a trailing /** also matches the prefix itself", () => {
    matches("**", ["a", "a/b/c", ""], []);
    matches("team/**", ["team", "team/a", "team/a/b"], ["teamx", "teamx/a", "xteam/a"]);
    matches("a/**/b", ["a/x/b", "a/x/y/b", "a//b"], ["a/b", "a/x/c"]);
    matches("a**", ["a", "ab", "ab/c"], ["b/a"]);
    matches("**/x", ["a/x", "a/b/x", "/x"], ["x", "a/y"]);
    matches("a/**x", ["a/x", "a/b/cx"], ["a", "a/b/c"]);
  });
});

describe("AccessPolicy", () => {
  const policy = new AccessPolicy({
    groups: { dev: ["alice", "carol"], qa: ["carol", "dave"] },
    rules: [
      { subjects: ["group:dev"], repositories: ["apps/**"], actions: ["pull", "push"] },
      { subjects: ["group:qa"], repositories: ["test/*"], actions: ["*"] },
      { subjects: ["user:erin", "user:frank"], repositories: ["erin/*", "shared/erin"], actions: ["push"] },
      { subjects: ["*"], repositories: ["shared/*"], actions: ["pull"] },
    ],
    default: ["pull"],
    anonymous: [
      { repositories: ["public/**"], actions: ["pull"] },
      { repositories: ["drop/*"], actions: ["push"] },
    ],
    admins: ["root", "user:boss", "group:ops"],
  });

  it("the action list is pull, push, delete", () => {
    assert.deepEqual([...ACTIONS], ["pull", "push", "delete"]);
  });

  it("a user in several groups gets the rules of each", () => {
    assert.deepEqual(allowed(policy, user("carol"), "apps/x"), ["pull", "push"]);
    assert.deepEqual(allowed(policy, user("carol"), "test/x"), ALL);
    assert.deepEqual(allowed(policy, user("dave"), "test/x"), ALL);
    assert.deepEqual(allowed(policy, user("dave"), "apps/x"), ["pull"], "dave is not in dev: default");
    assert.deepEqual(allowed(policy, user("alice"), "test/x"), ["pull"], "alice is not in qa: default");
  });

  it("a rule applies only when both a subject and a repository pattern match", () => {
    assert.deepEqual(allowed(policy, user("erin"), "erin/app"), ["push"]);
    assert.deepEqual(
      allowed(policy, user("frank"), "shared/erin"),
      ["pull", "push"],
      "union with the * rule",
    );
    assert.deepEqual(allowed(policy, user("erin"), "erin/app/x"), ["pull"], "no pattern matches: default");
    assert.deepEqual(allowed(policy, user("gina"), "erin/app"), ["pull"], "not a subject: default");
    assert.deepEqual(allowed(policy, user("gina"), "shared/x"), ["pull"]);
    assert.ok(policy.can(user("erin"), "push", "erin/app"));
    assert.ok(!policy.can(user("erin"), "pull", "erin/app"), "a matching rule replaces the default");
    assert.ok(!policy.can(user("erin"), "delete", "erin/app"));
    assert.ok(policy.can(user("gina"), "pull", "anything"));
    assert.ok(!policy.can(user("gina"), "push", "anything"));
  });

  it("a group name is not a user name, and group membership is by user name", () => {
    assert.deepEqual(allowed(policy, user("dev"), "apps/x"), ["pull"]);
    assert.deepEqual(allowed(policy, user("group:dev"), "apps/x"), ["pull"]);
  });

  it("admins: plain names, user: names and group: names get everything", () => {
    for (const name of ["root", "boss"]) {
      assert.ok(policy.isAdmin(user(name)), name);
      assert.deepEqual(allowed(policy, user(name), "any/repo"), ALL);
      assert.ok(policy.canPullEverywhere(user(name)));
    }
    const withOps = new AccessPolicy({ groups: { ops: ["olga"] }, admins: ["group:ops"] });
    assert.ok(withOps.isAdmin(user("olga")));
    assert.deepEqual(allowed(withOps, user("olga"), "x"), ALL);
    assert.ok(!withOps.isAdmin(user("ops")));
    assert.ok(!policy.isAdmin(user("alice")));
    assert.ok(!policy.isAdmin(user("user:root")));
    assert.ok(!policy.isAdmin(anonymous));
  });

  it("anonymous callers get only the anonymous rules, never the * subject's", () => {
    assert.deepEqual(allowed(policy, anonymous, "public/a/b"), ["pull"]);
    assert.deepEqual(allowed(policy, anonymous, "public"), ["pull"]);
    assert.deepEqual(allowed(policy, anonymous, "drop/x"), ["push"]);
    assert.deepEqual(allowed(policy, anonymous, "shared/x"), []);
    assert.deepEqual(allowed(policy, anonymous, "apps/x"), []);
    assert.ok(policy.allowsAnonymous);
    assert.ok(!policy.can(anonymous, "push", "public/a"));
  });

  it("an empty access section allows nothing; no section allows authenticated users everything", () => {
    const closed = new AccessPolicy({});
    assert.deepEqual(allowed(closed, user("x"), "a"), []);
    assert.ok(!closed.isAdmin(user("x")));
    assert.ok(!closed.allowsAnonymous);
    assert.ok(!closed.canPullEverywhere(user("x")));
    assert.ok(!closed.canPullEverywhere(anonymous));
    const open = new AccessPolicy(undefined);
    assert.deepEqual(allowed(open, user("x"), "a/b"), ALL);
    assert.ok(open.isAdmin(user("x")));
    assert.ok(!open.isAdmin(anonymous));
    assert.deepEqual(allowed(open, anonymous, "a"), []);
    assert.ok(!open.allowsAnonymous);
    assert.ok(open.canPullEverywhere(user("x")));
    assert.ok(!open.canPullEverywhere(anonymous));
  });

  it("the default applies to users no rule matches; * in an action list means all three", () => {
    const p = new AccessPolicy({
      rules: [{ subjects: ["user:a"], repositories: ["x"], actions: ["delete"] }],
      default: ["*"],
    });
    assert.deepEqual(allowed(p, user("b"), "x"), ALL);
    assert.deepEqual(allowed(p, user("a"), "x"), ["delete"]);
    assert.deepEqual(allowed(p, user("a"), "y"), ALL);
  });
});

describe("canPullEverywhere (mounting without naming the source)", () => {
  it("anonymous: only an anonymous pull rule on **", () => {
    const yes = new AccessPolicy({ anonymous: [{ repositories: ["x", "**"], actions: ["pull"] }] });
    assert.ok(yes.canPullEverywhere(anonymous));
    assert.ok(!yes.canPullEverywhere(user("u")), "anonymous rules are not users' rules");
    for (const rule of [
      { repositories: ["**"], actions: ["push" as const] },
      { repositories: ["public/**"], actions: ["pull" as const] },
      { repositories: ["*"], actions: ["pull" as const] },
    ])
      assert.ok(!new AccessPolicy({ anonymous: [rule] }).canPullEverywhere(anonymous), JSON.stringify(rule));
    assert.ok(
      new AccessPolicy({ anonymous: [{ repositories: ["**"], actions: ["*"] }] }).canPullEverywhere(
        anonymous,
      ),
    );
  });

  it("users: a pull rule on ** for one of their subjects", () => {
    const p = new AccessPolicy({
      groups: { dev: ["alice"] },
      rules: [
        { subjects: ["group:dev"], repositories: ["a", "**"], actions: ["pull"] },
        { subjects: ["user:bob"], repositories: ["**"], actions: ["push"] },
        { subjects: ["user:carol"], repositories: ["team/**"], actions: ["pull"] },
      ],
      default: ["pull"],
    });
    assert.ok(p.canPullEverywhere(user("alice")));
    assert.ok(!p.canPullEverywhere(user("bob")), "push only");
    assert.ok(!p.canPullEverywhere(user("carol")), "not every repository");
    assert.ok(!p.canPullEverywhere(user("dan")), "a default does not count when there are rules");
    assert.ok(!p.canPullEverywhere(anonymous));
    const star = new AccessPolicy({ rules: [{ subjects: ["*"], repositories: ["**"], actions: ["*"] }] });
    assert.ok(star.canPullEverywhere(user("anyone")));
  });

  it("users: a default that pulls, when there are no rules", () => {
    assert.ok(new AccessPolicy({ default: ["pull"] }).canPullEverywhere(user("u")));
    assert.ok(new AccessPolicy({ default: ["*"] }).canPullEverywhere(user("u")));
    assert.ok(!new AccessPolicy({ default: ["push", "delete"] }).canPullEverywhere(user("u")));
    assert.ok(!new AccessPolicy({ default: ["pull"] }).canPullEverywhere(anonymous));
  });
});
