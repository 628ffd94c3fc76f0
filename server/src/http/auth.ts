import type { Context } from "koa";
import { PasswordChecksBusy, type HtpasswdUsers } from "../auth/htpasswd.js";
import type { LoginLimiting } from "../auth/login-limiter.js";
import type { AccessPolicy, Action, Caller } from "../auth/policy.js";
import type { TokenVerifier } from "../auth/tokens.js";
import { grantedActions, type VerifiedToken } from "../auth/scopes.js";
import { RegistryError } from "../registry/errors.js";

/**
 * Who may do what, per request. Handlers state what they need (`require(ctx, "push", name)`);
 * the caller was identified before dispatch (`identify`). `OPEN` is the registry without auth.
 */
export interface RequestAuthorizer {
  /** Reads the request's credentials into `ctx.state.caller`; UNAUTHORIZED when they are wrong. */
  identify(ctx: Context): Promise<void>;
  /** UNAUTHORIZED (nobody, bad credentials, a token without the scope) or DENIED (not allowed). */
  require(ctx: Context, action: Action, repository: string): void;
  /** UNAUTHORIZED unless the caller presented valid credentials (the `/v2/` check clients log in with). */
  requireAuthenticated(ctx: Context): void;
  /** UNAUTHORIZED for a caller the catalog is closed to. */
  requireSomeAccess(ctx: Context): void;
  /** UNAUTHORIZED without credentials, DENIED unless the caller is an admin (maintenance APIs). */
  requireAdmin(ctx: Context): void;
  may(ctx: Context, action: Action, repository: string): boolean;
  /** Whether the caller may read every repository (mount without `from`). */
  mayPullEverywhere(ctx: Context): boolean;
  /** The `WWW-Authenticate` challenge sent with a 401. */
  challengeFor(error: RegistryError): string | undefined;
}

export const OPEN: RequestAuthorizer = {
  identify: async () => {},
  require: () => {},
  requireAuthenticated: () => {},
  requireSomeAccess: () => {},
  requireAdmin: () => {},
  may: () => true,
  mayPullEverywhere: () => true,
  challengeFor: () => undefined,
};

/** How long a verified Authorization header is trusted without checking again. */
const RECENT_MS = 30_000;

const unauthorized = (detail?: { scope?: string; error?: string }) =>
  new RegistryError("UNAUTHORIZED", "authentication required", detail);
const tooManyLogins = (retryAfter: number) =>
  new RegistryError("TOOMANYREQUESTS", "too many failed logins; try again later", { retryAfter });
const notAdmin = () => new RegistryError("DENIED", "this operation is for registry admins");

function callerOf(ctx: Context): Caller {
  return (ctx.state.caller as Caller | undefined) ?? { kind: "anonymous" };
}

function tokenOf(ctx: Context): VerifiedToken | undefined {
  return ctx.state.token as VerifiedToken | undefined;
}

/** The token scope a client must ask for to do `action` on `repository` (push implies pull). */
function scopeFor(action: Action, repository: string): string {
  return `repository:${repository}:${action === "push" ? "pull,push" : action}`;
}

/**
 * HTTP Basic credentials checked against htpasswd, with brute-force limits before bcrypt runs and
 * a short memory of verified headers so the requests of a pull cost nothing.
 */
export class BasicCredentials {
  private readonly recent = new Map<string, { name: string; until: number; generation: number }>();

  constructor(
    private readonly users: HtpasswdUsers,
    private readonly limiter?: LoginLimiting,
  ) {}

  /** The user a `Basic …` header proves, or undefined for empty credentials (anonymous clients send them). */
  async check(header: string, client: string): Promise<string | undefined> {
    const known = this.recent.get(header);
    if (known !== undefined && known.until > Date.now() && known.generation === this.users.generation)
      return known.name;
    const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!match) throw unauthorized();
    const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
    // containers/image (skopeo, podman) sends empty Basic credentials when it has none: anonymous.
    if (decoded === ":") return undefined;
    const colon = decoded.indexOf(":");
    if (colon <= 0) throw unauthorized();
    const name = decoded.slice(0, colon);
    // The attempt is counted before bcrypt runs, so parallel guesses cannot all get past the limit
    // while the first ones are still being hashed; a success gives the slot back.
    const wait = (await this.limiter?.reserve(client, name)) ?? 0;
    if (wait > 0) throw tooManyLogins(wait);
    const generation = this.users.generation;
    let ok: boolean;
    try {
      ok = await this.users.verify(name, decoded.slice(colon + 1));
    } catch (error) {
      if (error instanceof PasswordChecksBusy) {
        await this.limiter?.release(client, name);
        throw tooManyLogins(1);
      }
      throw error;
    }
    if (!ok) throw unauthorized();
    await this.limiter?.succeeded(client, name);
    if (this.recent.size >= 10_000) this.recent.clear();
    this.recent.set(header, { name, until: Date.now() + RECENT_MS, generation });
    return name;
  }
}

/** HTTP Basic against an htpasswd file, decided by an access policy. */
export class BasicAuthorizer implements RequestAuthorizer {
  private readonly challenge: string;

  constructor(
    private readonly credentials: BasicCredentials,
    private readonly policy: AccessPolicy,
    realm: string,
  ) {
    this.challenge = `Basic realm="${realm.replace(/["\\]/g, "")}"`;
  }

  async identify(ctx: Context): Promise<void> {
    const header = ctx.get("Authorization");
    if (header === "") return;
    const name = await this.credentials.check(header, ctx.ip);
    if (name !== undefined) ctx.state.caller = { kind: "user", name, proof: "password" } satisfies Caller;
  }

  require(ctx: Context, action: Action, repository: string): void {
    const caller = callerOf(ctx);
    if (this.policy.can(caller, action, repository)) return;
    if (caller.kind === "anonymous") throw unauthorized();
    throw new RegistryError("DENIED", "requested access to the resource is denied", { action, repository });
  }

  requireAuthenticated(ctx: Context): void {
    if (callerOf(ctx).kind === "anonymous") throw unauthorized();
  }

  requireSomeAccess(ctx: Context): void {
    if (callerOf(ctx).kind === "anonymous" && !this.policy.allowsAnonymous) throw unauthorized();
  }

  requireAdmin(ctx: Context): void {
    const caller = callerOf(ctx);
    if (caller.kind === "anonymous") throw unauthorized();
    if (!this.policy.isAdmin(caller)) throw notAdmin();
  }

  may(ctx: Context, action: Action, repository: string): boolean {
    return this.policy.can(callerOf(ctx), action, repository);
  }

  mayPullEverywhere(ctx: Context): boolean {
    return this.policy.canPullEverywhere(callerOf(ctx));
  }

  challengeFor(): string {
    return this.challenge;
  }
}

/**
 * Bearer tokens (Docker token auth): a request is allowed when its token grants the action on the
 * repository, and on nothing else: the catalog, mounts and chart indexes are decided by the
 * token's grants too, never by what the policy would allow its subject. A token without the scope
 * gets 401 with the scope to ask for; when the token is ours (so its subject is one of our users)
 * and the policy would refuse anyway, 403 DENIED. Basic credentials are accepted too (curl -u),
 * decided by the policy.
 */
export class BearerAuthorizer implements RequestAuthorizer {
  private readonly base: string;

  constructor(
    private readonly verifier: TokenVerifier,
    private readonly policy: AccessPolicy,
    private readonly credentials: BasicCredentials | undefined,
    realm: string,
    service: string,
  ) {
    this.base = `Bearer realm="${realm.replace(/["\\]/g, "")}",service="${service.replace(/["\\]/g, "")}"`;
  }

  async identify(ctx: Context): Promise<void> {
    const header = ctx.get("Authorization");
    if (header === "") return;
    if (/^Bearer\s/i.test(header)) {
      let token: VerifiedToken;
      try {
        token = await this.verifier.verify(header.replace(/^Bearer\s+/i, "").trim());
      } catch {
        throw unauthorized({ error: "invalid_token" });
      }
      ctx.state.token = token;
      if (token.subject !== undefined) {
        // Which key verified the token decides whether its subject is one of our users.
        const proof = token.verifiedBy === "signingkey" ? "own-token" : "foreign-token";
        ctx.state.caller = { kind: "user", name: token.subject, proof } satisfies Caller;
      }
      return;
    }
    if (this.credentials === undefined) throw unauthorized();
    const name = await this.credentials.check(header, ctx.ip);
    if (name !== undefined) ctx.state.caller = { kind: "user", name, proof: "password" } satisfies Caller;
  }

  require(ctx: Context, action: Action, repository: string): void {
    const caller = callerOf(ctx);
    const token = tokenOf(ctx);
    if (token !== undefined) {
      if (grantedActions(token, repository).has(action)) return;
      if (
        caller.kind === "user" &&
        caller.proof === "own-token" &&
        !this.policy.can(caller, action, repository)
      ) {
        throw new RegistryError("DENIED", "requested access to the resource is denied", {
          action,
          repository,
        });
      }
      throw unauthorized({ scope: scopeFor(action, repository), error: "insufficient_scope" });
    }
    if (caller.kind === "user" && this.policy.can(caller, action, repository)) return;
    if (caller.kind === "user")
      throw new RegistryError("DENIED", "requested access to the resource is denied", { action, repository });
    throw unauthorized({ scope: scopeFor(action, repository) });
  }

  requireAuthenticated(ctx: Context): void {
    if (tokenOf(ctx) === undefined && callerOf(ctx).kind === "anonymous") throw unauthorized();
  }

  requireSomeAccess(ctx: Context): void {
    const token = tokenOf(ctx);
    if (token?.access.some((a) => a.type === "registry" && a.name === "catalog")) return;
    if (token === undefined && callerOf(ctx).kind === "user") return;
    throw unauthorized({ scope: "registry:catalog:*" });
  }

  requireAdmin(ctx: Context): void {
    const caller = callerOf(ctx);
    if (caller.kind === "anonymous") throw unauthorized();
    // The policy refuses a foreign issuer's subjects: only Basic or our own tokens name an admin.
    if (!this.policy.isAdmin(caller)) throw notAdmin();
  }

  may(ctx: Context, action: Action, repository: string): boolean {
    const token = tokenOf(ctx);
    if (token !== undefined) return grantedActions(token, repository).has(action);
    return this.policy.can(callerOf(ctx), action, repository);
  }

  mayPullEverywhere(ctx: Context): boolean {
    // A token names the repositories it grants; none grants them all.
    if (tokenOf(ctx) !== undefined) return false;
    return this.policy.canPullEverywhere(callerOf(ctx));
  }

  challengeFor(error: RegistryError): string {
    const detail = error.detail as { scope?: string; error?: string } | undefined;
    return `${this.base}${detail?.scope ? `,scope="${detail.scope}"` : ""}${detail?.error ? `,error="${detail.error}"` : ""}`;
  }
}
