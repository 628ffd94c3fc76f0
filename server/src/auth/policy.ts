/** What a caller may do to a repository. */
export type Action = "pull" | "push" | "delete";
export const ACTIONS: readonly Action[] = ["pull", "push", "delete"];

/**
 * How a user proved their name: a password checked against htpasswd, a token signed with our own
 * key (`auth.token.signingkey`, so its subject is one of our users), or a token of a foreign issuer
 * trusted through `rootcertbundle` or `jwks` (its subject is that issuer's name, not ours).
 */
export type Proof = "password" | "own-token" | "foreign-token";

/**
 * Who is asking: a user from htpasswd (or a token), or nobody. `proof` is optional only so that
 * older code building callers still compiles; a caller without it is never an admin.
 */
export type Caller = { kind: "user"; name: string; proof?: Proof } | { kind: "anonymous" };

/** Only a password or a token we signed ourselves may name an admin: a foreign issuer's `sub: admin` is not ours. */
function mayNameAdmin(caller: Caller): boolean {
  return caller.kind === "user" && (caller.proof === "password" || caller.proof === "own-token");
}

export interface AccessRule {
  /** `user:NAME`, `group:NAME`, or `*` for any authenticated user. */
  readonly subjects: readonly string[];
  /** Repository name patterns: `*` matches within one path component, `**` across components. */
  readonly repositories: readonly string[];
  readonly actions: readonly (Action | "*")[];
}

export interface AnonymousRule {
  readonly repositories: readonly string[];
  readonly actions: readonly (Action | "*")[];
}

/** The `auth.access` section. Without it, every authenticated user may do everything (as the reference). */
export interface AccessConfig {
  readonly groups?: Readonly<Record<string, readonly string[]>>;
  readonly rules?: readonly AccessRule[];
  /** Actions on any repository for authenticated users no rule matches. */
  readonly default?: readonly (Action | "*")[];
  readonly anonymous?: readonly AnonymousRule[];
  /** Users (`NAME` or `user:NAME`) and `group:NAME`s with every right, including the admin APIs. */
  readonly admins?: readonly string[];
}

interface CompiledRule {
  readonly subjects: ReadonlySet<string>;
  readonly patterns: readonly RegExp[];
  readonly actions: ReadonlySet<Action>;
}

/** Compiles a repository pattern: `*` stays within a path component, `**` crosses them. */
export function compilePattern(pattern: string): RegExp {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*" && pattern[i + 1] === "*") {
      // `a/**` also matches `a` itself.
      if (source.endsWith("/") && i + 2 === pattern.length) {
        source = `${source.slice(0, -1)}(?:/.*)?`;
      } else {
        source += ".*";
      }
      i++;
    } else if (c === "*") {
      source += "[^/]*";
    } else {
      source += c.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
    }
  }
  return new RegExp(`^${source}$`);
}

function expand(actions: readonly (Action | "*")[]): Set<Action> {
  return new Set(actions.includes("*") ? ACTIONS : (actions as Action[]));
}

/**
 * Decides who may pull, push and delete where. Pure and synchronous: the HTTP layer asks it once
 * per request, with the caller it authenticated.
 */
export class AccessPolicy {
  private readonly rules: CompiledRule[];
  private readonly anonymous: CompiledRule[];
  private readonly defaults: ReadonlySet<Action>;
  private readonly admins: ReadonlySet<string>;
  private readonly groupsOf = new Map<string, string[]>();
  /** True when no `auth.access` section was given: authenticated means allowed everything. */
  private readonly open: boolean;

  constructor(config: AccessConfig | undefined) {
    this.open = config === undefined;
    for (const [group, members] of Object.entries(config?.groups ?? {})) {
      for (const member of members) this.groupsOf.set(member, [...(this.groupsOf.get(member) ?? []), group]);
    }
    this.rules = (config?.rules ?? []).map((r) => ({
      subjects: new Set(r.subjects),
      patterns: r.repositories.map(compilePattern),
      actions: expand(r.actions),
    }));
    this.anonymous = (config?.anonymous ?? []).map((r) => ({
      subjects: new Set(["*"]),
      patterns: r.repositories.map(compilePattern),
      actions: expand(r.actions),
    }));
    this.defaults = expand(config?.default ?? []);
    this.admins = new Set((config?.admins ?? []).map((a) => (a.includes(":") ? a : `user:${a}`)));
  }

  /** Whether some anonymous access is configured (then unauthenticated requests are not refused outright). */
  get allowsAnonymous(): boolean {
    return this.anonymous.length > 0;
  }

  isAdmin(caller: Caller): boolean {
    if (caller.kind === "anonymous" || !mayNameAdmin(caller)) return false;
    if (this.open) return true;
    return this.subjectsOf(caller.name).some((s) => this.admins.has(s));
  }

  /** The actions `caller` may perform on `repository`. */
  allowed(caller: Caller, repository: string): ReadonlySet<Action> {
    if (caller.kind === "anonymous") return union(this.anonymous, ["*"], repository) ?? new Set();
    if (this.open || this.isAdmin(caller)) return new Set(ACTIONS);
    return union(this.rules, this.subjectsOf(caller.name), repository) ?? this.defaults;
  }

  can(caller: Caller, action: Action, repository: string): boolean {
    return this.allowed(caller, repository).has(action);
  }

  /**
   * Whether `caller` may pull every repository (then a blob found anywhere may be mounted without
   * naming where it comes from).
   */
  canPullEverywhere(caller: Caller): boolean {
    if (caller.kind === "anonymous")
      return this.anonymous.some((r) => r.actions.has("pull") && r.patterns.some((p) => p.source === "^.*$"));
    if (this.open || this.isAdmin(caller)) return true;
    const subjects = this.subjectsOf(caller.name);
    const viaRule = this.rules.some(
      (r) =>
        r.actions.has("pull") &&
        subjects.some((s) => r.subjects.has(s)) &&
        r.patterns.some((p) => p.source === "^.*$"),
    );
    return viaRule || (this.defaults.has("pull") && this.rules.length === 0);
  }

  private subjectsOf(user: string): string[] {
    return ["*", `user:${user}`, ...(this.groupsOf.get(user) ?? []).map((g) => `group:${g}`)];
  }
}

/** Actions granted by the rules that match; undefined when none matches. */
function union(
  rules: readonly CompiledRule[],
  subjects: readonly string[],
  repository: string,
): Set<Action> | undefined {
  let result: Set<Action> | undefined;
  for (const rule of rules) {
    if (!subjects.some((s) => rule.subjects.has(s))) continue;
    if (!rule.patterns.some((p) => p.test(repository))) continue;
    result ??= new Set();
    for (const action of rule.actions) result.add(action);
  }
  return result;
}
