import type { Action } from "./policy.js";

/** One entry of a token's `access` claim (Docker token spec). */
export interface AccessEntry {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
}

/**
 * Which trusted key verified a token: our own signing key (`auth.token.signingkey`, tokens from
 * `/token`, whose subjects are our users) or a foreign issuer's (`rootcertbundle`, `jwks`).
 */
export type TokenKey = "signingkey" | "rootcertbundle" | "jwks";

export interface VerifiedToken {
  readonly subject: string | undefined;
  readonly access: readonly AccessEntry[];
  readonly verifiedBy: TokenKey;
}

/** A requested scope, `repository:NAME:pull,push` or `registry:catalog:*`. */
export interface Scope {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
}

/** Parses `scope` values; several may come space-separated. Malformed ones are dropped. */
export function parseScopes(values: readonly string[]): Scope[] {
  const scopes: Scope[] = [];
  for (const value of values.flatMap((v) => v.split(" "))) {
    // The name may hold a port-less host and slashes but not colons; actions are the last part.
    const first = value.indexOf(":");
    const last = value.lastIndexOf(":");
    if (first <= 0 || last === first) continue;
    const type = value.slice(0, first);
    const name = value.slice(first + 1, last);
    const actions = value
      .slice(last + 1)
      .split(",")
      .filter(Boolean);
    if (name !== "" && actions.length > 0) scopes.push({ type, name, actions });
  }
  return scopes;
}

/** The actions a verified token grants on `repository`. */
export function grantedActions(token: VerifiedToken, repository: string): Set<string> {
  const granted = new Set<string>();
  for (const entry of token.access) {
    if (entry.type === "repository" && entry.name === repository)
      for (const a of entry.actions) granted.add(a);
  }
  if (granted.has("*")) for (const a of ["pull", "push", "delete"] satisfies Action[]) granted.add(a);
  return granted;
}
