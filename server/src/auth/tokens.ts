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

// The token-free parts live in scopes.js, which the HTTP layer imports without jose (the JWT
// library is loaded only when `auth.token` is configured).
export {
  grantedActions,
  parseScopes,
  type AccessEntry,
  type Scope,
  type TokenKey,
  type VerifiedToken,
} from "./scopes.js";
import type { AccessEntry, TokenKey, VerifiedToken } from "./scopes.js";

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
