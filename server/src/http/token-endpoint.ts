import type { Context } from "koa";
import type { AccessPolicy, Action, Caller } from "../auth/policy.js";
import type { TokenIssuer } from "../auth/tokens.js";
import { parseScopes, type AccessEntry } from "../auth/scopes.js";
import { RegistryError } from "../registry/errors.js";
import { validateName } from "../registry/names.js";
import type { BasicCredentials } from "./auth.js";

/**
 * `GET /token` (Docker token spec): Basic credentials (or none, for anonymous access) and the
 * scopes asked for; the token grants what was asked and the policy allows, nothing more.
 */
export function tokenEndpoint(
  issuer: TokenIssuer,
  policy: AccessPolicy,
  credentials: BasicCredentials | undefined,
) {
  return async (ctx: Context): Promise<void> => {
    if (ctx.method !== "GET") throw new RegistryError("UNSUPPORTED", "the token endpoint answers GET");
    const service = ctx.query.service;
    if (service !== undefined && service !== issuer.service) {
      throw new RegistryError("DENIED", `this endpoint issues tokens for service ${issuer.service}`);
    }
    let caller: Caller = { kind: "anonymous" };
    const header = ctx.get("Authorization");
    if (header !== "") {
      if (credentials === undefined) throw new RegistryError("UNAUTHORIZED", "authentication required");
      const name = await credentials.check(header, ctx.ip);
      if (name !== undefined) caller = { kind: "user", name, proof: "password" };
    }
    if (caller.kind === "user") ctx.state.caller = caller;
    const requested = ctx.query.scope;
    const scopes = parseScopes(
      requested === undefined ? [] : Array.isArray(requested) ? requested : [requested],
    );
    const access: AccessEntry[] = [];
    for (const scope of scopes) {
      if (scope.type === "repository") {
        let name: string;
        try {
          name = validateName(scope.name);
        } catch {
          continue;
        }
        const allowed = policy.allowed(caller, name);
        const wanted = scope.actions.includes("*") ? ["pull", "push", "delete"] : scope.actions;
        const actions = wanted.filter((a): a is Action => allowed.has(a as Action));
        if (actions.length > 0) access.push({ type: "repository", name, actions });
      } else if (
        scope.type === "registry" &&
        scope.name === "catalog" &&
        (caller.kind === "user" || policy.allowsAnonymous)
      ) {
        access.push({ type: "registry", name: "catalog", actions: ["*"] });
      }
    }
    const issued = await issuer.issue(caller.kind === "user" ? caller.name : undefined, access);
    ctx.set("Cache-Control", "no-store");
    ctx.body = {
      token: issued.token,
      access_token: issued.token,
      expires_in: issued.expiresIn,
      issued_at: issued.issuedAt,
    };
  };
}
