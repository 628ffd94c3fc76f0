import type { Context } from "koa";
import type { AccessPolicy, Action, Caller } from "../auth/policy.js";
import type { HtpasswdUsers } from "../auth/htpasswd.js";
import { RegistryError } from "../registry/errors.js";
import type { LoginLimiter } from "../auth/login-limiter.js";

/**
 * Who may do what, per request. Handlers state what they need (`require(ctx, "push", name)`);
 * the caller was identified before dispatch (`identify`). `OPEN` is the registry without auth.
 */
export interface RequestAuthorizer {
  /** Reads the request's credentials into `ctx.state.caller`; UNAUTHORIZED when they are wrong. */
  identify(ctx: Context): Promise<void>;
  /** UNAUTHORIZED (nobody or bad credentials) or DENIED (somebody, not allowed) unless allowed. */
  require(ctx: Context, action: Action, repository: string): void;
  /** UNAUTHORIZED unless a user is authenticated (the `/v2/` check clients log in with). */
  requireAuthenticated(ctx: Context): void;
  /** UNAUTHORIZED for an anonymous caller when nothing at all is open to anonymous callers. */
  requireSomeAccess(ctx: Context): void;
  may(ctx: Context, action: Action, repository: string): boolean;
  /** Whether the caller may read every repository (mount without `from`). */
  mayPullEverywhere(ctx: Context): boolean;
  /** The `WWW-Authenticate` challenge sent with 401s. */
  readonly challenge: string | undefined;
}

export const OPEN: RequestAuthorizer = {
  identify: async () => {},
  require: () => {},
  requireAuthenticated: () => {},
  requireSomeAccess: () => {},
  may: () => true,
  mayPullEverywhere: () => true,
  challenge: undefined,
};

/** How long a verified Authorization header is trusted without checking again. */
const RECENT_MS = 30_000;

const unauthorized = () => new RegistryError("UNAUTHORIZED", "authentication required");

function callerOf(ctx: Context): Caller {
  return (ctx.state.caller as Caller | undefined) ?? { kind: "anonymous" };
}

/** HTTP Basic against an htpasswd file, decided by an access policy. */
export class BasicAuthorizer implements RequestAuthorizer {
  readonly challenge: string;

  constructor(
    private readonly users: HtpasswdUsers,
    private readonly policy: AccessPolicy,
    realm: string,
    private readonly limiter?: LoginLimiter,
  ) {
    this.challenge = `Basic realm="${realm.replace(/["\\]/g, "")}"`;
  }

  /**
   * Authorization headers recently verified, so the requests of a pull skip decoding and hashing
   * too. Dropped when the users reload; bounded in size and age.
   */
  private readonly recent = new Map<string, { name: string; until: number; generation: number }>();

  async identify(ctx: Context): Promise<void> {
    const header = ctx.get("Authorization");
    if (header === "") return;
    const known = this.recent.get(header);
    if (known !== undefined && known.until > Date.now() && known.generation === this.users.generation) {
      ctx.state.caller = { kind: "user", name: known.name } satisfies Caller;
      return;
    }
    const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!match) throw unauthorized();
    const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
    // containers/image (skopeo, podman) sends empty Basic credentials when it has none: anonymous.
    if (decoded === ":") return;
    const colon = decoded.indexOf(":");
    if (colon <= 0) throw unauthorized();
    const name = decoded.slice(0, colon);
    const client = ctx.ip;
    const wait = this.limiter?.retryAfter(client, name) ?? 0;
    if (wait > 0) {
      throw new RegistryError("TOOMANYREQUESTS", "too many failed logins; try again later", {
        retryAfter: wait,
      });
    }
    const generation = this.users.generation;
    if (!(await this.users.verify(name, decoded.slice(colon + 1)))) {
      this.limiter?.failed(client, name);
      throw unauthorized();
    }
    this.limiter?.succeeded(name);
    if (this.recent.size >= 10_000) this.recent.clear();
    this.recent.set(header, { name, until: Date.now() + RECENT_MS, generation });
    ctx.state.caller = { kind: "user", name } satisfies Caller;
  }

  require(ctx: Context, action: Action, repository: string): void {
    const caller = callerOf(ctx);
    if (this.policy.can(caller, action, repository)) return;
    if (caller.kind === "anonymous") throw unauthorized();
    throw new RegistryError("DENIED", `requested access to the resource is denied`, { action, repository });
  }

  requireAuthenticated(ctx: Context): void {
    if (callerOf(ctx).kind === "anonymous") throw unauthorized();
  }

  requireSomeAccess(ctx: Context): void {
    if (callerOf(ctx).kind === "anonymous" && !this.policy.allowsAnonymous) throw unauthorized();
  }

  may(ctx: Context, action: Action, repository: string): boolean {
    return this.policy.can(callerOf(ctx), action, repository);
  }

  mayPullEverywhere(ctx: Context): boolean {
    return this.policy.canPullEverywhere(callerOf(ctx));
  }
}
