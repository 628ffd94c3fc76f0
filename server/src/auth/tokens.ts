import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  SignJWT,
  calculateJwkThumbprint,
  createLocalJWKSet,
  exportJWK,
  jwtVerify,
  type JWTPayload,
} from "jose";
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

const ALGORITHM_BY_KEY: Record<string, string> = { ec: "ES256", rsa: "RS256", ed25519: "EdDSA" };
const ALLOWED_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA"];
/** Clock skew tolerated between the issuer and the registry. */
const LEEWAY_SECONDS = 30;

/** The registry's own token issuer (`/token`), signing with a private key kept in a file. */
export class TokenIssuer {
  readonly publicKey: KeyObject;
  private readonly privateKey: KeyObject;
  private readonly algorithm: string;
  private kid: string | undefined;

  constructor(
    keyPath: string,
    readonly issuer: string,
    readonly service: string,
    private readonly expirationSeconds: number,
  ) {
    this.privateKey = createPrivateKey(readFileSync(keyPath));
    this.publicKey = createPublicKey(this.privateKey);
    const algorithm = ALGORITHM_BY_KEY[this.privateKey.asymmetricKeyType ?? ""];
    if (algorithm === undefined)
      throw new Error(`auth.token.signingkey: unsupported key type ${this.privateKey.asymmetricKeyType}`);
    this.algorithm = algorithm;
  }

  async issue(subject: string | undefined, access: readonly AccessEntry[]) {
    this.kid ??= await calculateJwkThumbprint(await exportJWK(this.publicKey));
    const issuedAt = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ access: access as unknown as JWTPayload[] })
      .setProtectedHeader({ alg: this.algorithm, typ: "JWT", kid: this.kid })
      .setIssuer(this.issuer)
      .setAudience(this.service)
      .setSubject(subject ?? "")
      .setIssuedAt(issuedAt)
      .setNotBefore(issuedAt - 1)
      .setExpirationTime(issuedAt + this.expirationSeconds)
      .setJti(crypto.randomUUID())
      .sign(this.privateKey);
    return { token, expiresIn: this.expirationSeconds, issuedAt: new Date(issuedAt * 1000).toISOString() };
  }
}

/**
 * Verifies bearer tokens: signature by one of the trusted keys (our issuer's, the certificates of
 * `rootcertbundle`, the keys of a JWKS file), issuer, audience, validity window. `alg: none` and
 * symmetric algorithms are never accepted.
 */
export class TokenVerifier {
  private readonly keys: { key: KeyObject; source: TokenKey }[];
  private readonly jwks: ReturnType<typeof createLocalJWKSet> | undefined;

  constructor(
    private readonly issuer: string,
    private readonly service: string,
    trusted: { issuer?: TokenIssuer; rootCertBundle?: string; jwksFile?: string },
  ) {
    this.keys = [];
    if (trusted.issuer !== undefined) this.keys.push({ key: trusted.issuer.publicKey, source: "signingkey" });
    if (trusted.rootCertBundle !== undefined)
      this.keys.push(
        ...certificateKeys(readFileSync(trusted.rootCertBundle, "utf8")).map((key) => ({
          key,
          source: "rootcertbundle" as const,
        })),
      );
    this.jwks =
      trusted.jwksFile === undefined
        ? undefined
        : createLocalJWKSet(JSON.parse(readFileSync(trusted.jwksFile, "utf8")));
    if (this.keys.length === 0 && this.jwks === undefined) {
      throw new Error("auth.token: no key to verify tokens with (signingkey, rootcertbundle or jwks)");
    }
  }

  /** The token's subject, access and the key that verified it; throws when it is not valid here. */
  async verify(token: string): Promise<VerifiedToken> {
    const options = {
      issuer: this.issuer,
      audience: this.service,
      algorithms: ALLOWED_ALGORITHMS,
      clockTolerance: LEEWAY_SECONDS,
      // A token without `exp` would be good forever: refused, as the reference registry does.
      requiredClaims: ["exp"],
    };
    let lastError: unknown = new Error("no trusted key");
    for (const { key, source } of this.keys) {
      try {
        return toVerified((await jwtVerify(token, key, options)).payload, source);
      } catch (error) {
        lastError = error;
      }
    }
    if (this.jwks !== undefined) {
      try {
        return toVerified((await jwtVerify(token, this.jwks, options)).payload, "jwks");
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  }
}

function toVerified(payload: JWTPayload, verifiedBy: TokenKey): VerifiedToken {
  const raw = Array.isArray(payload.access) ? payload.access : [];
  const access = raw.filter(
    (a): a is AccessEntry =>
      typeof a === "object" &&
      a !== null &&
      typeof a.type === "string" &&
      typeof a.name === "string" &&
      Array.isArray(a.actions),
  );
  return {
    subject: typeof payload.sub === "string" && payload.sub !== "" ? payload.sub : undefined,
    access,
    verifiedBy,
  };
}

function certificateKeys(bundle: string): KeyObject[] {
  const pems = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) throw new Error("auth.token.rootcertbundle: no certificate in the bundle");
  return pems.map((pem) => new X509Certificate(pem).publicKey);
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
