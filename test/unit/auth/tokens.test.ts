import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { generateKeyPairSync, randomUUID, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  SignJWT,
  calculateJwkThumbprint,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  type JWTPayload,
} from "jose";
import {
  TokenIssuer,
  TokenVerifier,
  grantedActions,
  parseScopes,
  type VerifiedToken,
} from "../../../server/src/auth/tokens.js";

const dir = mkdtempSync(join(tmpdir(), "neam-tokens-unit-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function write(content: string): string {
  const path = join(dir, `f${files++}`);
  writeFileSync(path, content);
  return path;
}
function keyPair(type: "ec" | "rsa" | "ed25519" | "x25519", curve?: string) {
  const { privateKey, publicKey } =
    type === "ec"
      ? generateKeyPairSync("ec", { namedCurve: curve ?? "P-256" })
      : type === "rsa"
        ? generateKeyPairSync("rsa", { modulusLength: 2048 })
        : type === "ed25519"
          ? generateKeyPairSync("ed25519")
          : generateKeyPairSync("x25519");
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }) as string;
  return { privateKey, publicKey, path: write(pem) };
}
function certificate(keyPath: string): string {
  return execFileSync("openssl", ["req", "-x509", "-key", keyPath, "-subj", "/CN=issuer", "-days", "2"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

const ec = keyPair("ec");
const rsa = keyPair("rsa");
const ed = keyPair("ed25519");
const other = keyPair("ec");

const ISSUER = "neam-issuer";
const SERVICE = "neam-registry";
const now = () => Math.floor(Date.now() / 1000);

/** A token signed by `key` with arbitrary claims; defaults make it valid for ISSUER/SERVICE. */
function sign(
  key: KeyObject,
  alg: string,
  claims: JWTPayload = {},
  times: { iat?: number; nbf?: number; exp?: number } = {},
  kid?: string,
) {
  const t = now();
  return new SignJWT({ iss: ISSUER, aud: SERVICE, sub: "alice", access: [], ...claims })
    .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
    .setIssuedAt(times.iat ?? t)
    .setNotBefore(times.nbf ?? t - 1)
    .setExpirationTime(times.exp ?? t + 60)
    .sign(key);
}

describe("parseScopes", () => {
  it("parses type, name and actions; several values, several space-separated scopes", () => {
    assert.deepEqual(parseScopes(["repository:team/app:pull,push", "registry:catalog:* repository:b:pull"]), [
      { type: "repository", name: "team/app", actions: ["pull", "push"] },
      { type: "registry", name: "catalog", actions: ["*"] },
      { type: "repository", name: "b", actions: ["pull"] },
    ]);
    assert.deepEqual(parseScopes(["repository:a:pull,,push,"]), [
      { type: "repository", name: "a", actions: ["pull", "push"] },
    ]);
    assert.deepEqual(parseScopes(["repository:host:5000/a:pull"]), [
      { type: "repository", name: "host:5000/a", actions: ["pull"] },
    ]);
    assert.deepEqual(parseScopes([]), []);
  });

  it("drops malformed scopes", () => {
    for (const bad of [
      "",
      " ",
      "repository",
      "repository:a",
      ":a:pull",
      "repository::pull",
      "repository:a:",
      "repository:a:,",
    ])
      assert.deepEqual(parseScopes([bad]), [], JSON.stringify(bad));
    assert.deepEqual(parseScopes(["repository:a: repository:b:pull"]), [
      { type: "repository", name: "b", actions: ["pull"] },
    ]);
  });
});

describe("grantedActions", () => {
  const token = (access: VerifiedToken["access"]): VerifiedToken => ({
    subject: "u",
    access,
    verifiedBy: "signingkey",
  });

  it("the actions of the entries for exactly this repository", () => {
    const t = token([
      { type: "repository", name: "a", actions: ["pull"] },
      { type: "repository", name: "a", actions: ["push"] },
      { type: "repository", name: "ab", actions: ["delete"] },
      { type: "registry", name: "a", actions: ["delete"] },
    ]);
    assert.deepEqual([...grantedActions(t, "a")].sort(), ["pull", "push"]);
    assert.deepEqual([...grantedActions(t, "b")], []);
  });

  it("* grants pull, push and delete", () => {
    const granted = grantedActions(token([{ type: "repository", name: "a", actions: ["*"] }]), "a");
    assert.deepEqual([...granted].sort(), ["*", "delete", "pull", "push"]);
    assert.deepEqual(
      [...grantedActions(token([{ type: "repository", name: "b", actions: ["*"] }]), "a")],
      [],
    );
  });
});

describe("TokenIssuer", () => {
  for (const [kind, pair, alg] of [
    ["EC P-256", ec, "ES256"],
    ["RSA", rsa, "RS256"],
    ["Ed25519", ed, "EdDSA"],
  ] as const) {
    it(`signs with ${alg} for an ${kind} key; the token carries what the spec asks`, async () => {
      const issuer = new TokenIssuer(pair.path, ISSUER, SERVICE, 300);
      const access = [{ type: "repository", name: "a", actions: ["pull"] }];
      const before = now();
      const first = await issuer.issue("alice", access);
      const second = await issuer.issue(undefined, []);
      assert.equal(first.expiresIn, 300);
      const header = decodeProtectedHeader(first.token);
      assert.deepEqual(header, {
        alg,
        typ: "JWT",
        kid: await calculateJwkThumbprint(await exportJWK(pair.publicKey)),
      });
      assert.deepEqual(decodeProtectedHeader(second.token), header, "the same kid every time");
      const claims = decodeJwt(first.token);
      assert.equal(claims.iss, ISSUER);
      assert.equal(claims.aud, SERVICE);
      assert.equal(claims.sub, "alice");
      assert.deepEqual(claims.access, access);
      assert.ok(claims.iat! >= before && claims.iat! <= now(), "iat is now, in seconds");
      assert.equal(claims.nbf, claims.iat! - 1);
      assert.equal(claims.exp, claims.iat! + 300);
      assert.equal(first.issuedAt, new Date(claims.iat! * 1000).toISOString());
      assert.match(claims.jti!, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.notEqual(decodeJwt(second.token).jti, claims.jti);
      assert.equal(decodeJwt(second.token).sub, "");
      assert.equal(issuer.publicKey.asymmetricKeyType, pair.publicKey.asymmetricKeyType);
      assert.equal(issuer.issuer, ISSUER);
      assert.equal(issuer.service, SERVICE);
    });
  }

  it("refuses a key type it cannot sign with, naming the key", () => {
    const x = keyPair("x25519");
    assert.throws(
      () => new TokenIssuer(x.path, ISSUER, SERVICE, 60),
      (e: unknown) =>
        e instanceof Error && e.message === "auth.token.signingkey: unsupported key type x25519",
    );
  });
});

describe("TokenVerifier", () => {
  const issuer = new TokenIssuer(ec.path, ISSUER, SERVICE, 300);
  const verifier = new TokenVerifier(ISSUER, SERVICE, { issuer });

  it("accepts our issuer's tokens, with subject and access", async () => {
    const access = [{ type: "repository", name: "a", actions: ["pull", "push"] }];
    const { token } = await issuer.issue("alice", access);
    assert.deepEqual(await verifier.verify(token), { subject: "alice", access, verifiedBy: "signingkey" });
    const anonymous = await issuer.issue(undefined, []);
    assert.deepEqual(await verifier.verify(anonymous.token), {
      subject: undefined,
      access: [],
      verifiedBy: "signingkey",
    });
  });

  it("refuses another key, issuer, audience, expired or not-yet-valid tokens, beyond 30 s of leeway", async () => {
    const t = now();
    // The error is the real reason (it is logged), not an artefact of trying every key.
    await assert.rejects(verifier.verify(await sign(other.privateKey, "ES256")), {
      code: "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
    });
    await assert.rejects(verifier.verify(await sign(ec.privateKey, "ES256", { iss: "someone-else" })));
    await assert.rejects(verifier.verify(await sign(ec.privateKey, "ES256", { aud: "other-service" })));
    await assert.rejects(
      verifier.verify(await sign(ec.privateKey, "ES256", {}, { iat: t - 200, exp: t - 60 })),
    );
    await assert.rejects(verifier.verify(await sign(ec.privateKey, "ES256", {}, { nbf: t + 60 })));
    await assert.rejects(verifier.verify("not-a-token"));
    // Within the leeway, clocks that disagree a little are tolerated.
    await verifier.verify(await sign(ec.privateKey, "ES256", {}, { iat: t - 200, exp: t - 15 }));
    await verifier.verify(await sign(ec.privateKey, "ES256", {}, { nbf: t + 15 }));
  });

  it("never accepts alg none or a symmetric algorithm", async () => {
    const t = now();
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const claims = { iss: ISSUER, aud: SERVICE, sub: "alice", iat: t, exp: t + 60, access: [] };
    await assert.rejects(verifier.verify(`${b64({ alg: "none" })}.${b64(claims)}.`));
    const jwks = write(
      JSON.stringify({ keys: [{ kty: "oct", k: Buffer.from("secret").toString("base64url") }] }),
    );
    const symmetric = new TokenVerifier(ISSUER, SERVICE, { jwksFile: jwks });
    const hs = await new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(Buffer.from("secret"));
    await assert.rejects(symmetric.verify(hs));
  });

  it("keeps only well-formed access entries; an empty or non-string sub is no subject", async () => {
    const good = { type: "repository", name: "a", actions: ["pull"] };
    const token = await sign(ec.privateKey, "ES256", {
      sub: "",
      access: [
        good,
        null,
        "x",
        { type: 1, name: "a", actions: [] },
        { type: "repository", name: 2, actions: [] },
        { type: "repository", name: "a", actions: "pull" },
        { name: "a", actions: [] },
      ],
    });
    assert.deepEqual(await verifier.verify(token), {
      subject: undefined,
      access: [good],
      verifiedBy: "signingkey",
    });
    assert.deepEqual(
      await verifier.verify(await sign(ec.privateKey, "ES256", { sub: 5 as unknown as string })),
      {
        subject: undefined,
        access: [],
        verifiedBy: "signingkey",
      },
    );
    assert.deepEqual(await verifier.verify(await sign(ec.privateKey, "ES256", { access: { a: 1 } })), {
      subject: "alice",
      access: [],
      verifiedBy: "signingkey",
    });
  });

  it("trusts every certificate of a rootcertbundle, and only those", async () => {
    const bundle = write(`junk\n${certificate(other.path)}\n${certificate(rsa.path)}`);
    const v = new TokenVerifier(ISSUER, SERVICE, { rootCertBundle: bundle });
    assert.equal((await v.verify(await sign(rsa.privateKey, "RS256"))).subject, "alice");
    assert.equal((await v.verify(await sign(other.privateKey, "ES256"))).subject, "alice");
    await assert.rejects(v.verify(await sign(ec.privateKey, "ES256")));
    // Our own issuer's key and a bundle together: each is tried.
    const both = new TokenVerifier(ISSUER, SERVICE, { issuer, rootCertBundle: bundle });
    assert.equal((await both.verify(await sign(rsa.privateKey, "RS256"))).subject, "alice");
    assert.equal((await both.verify(await sign(ec.privateKey, "ES256"))).subject, "alice");
    assert.throws(
      () => new TokenVerifier(ISSUER, SERVICE, { rootCertBundle: write("no certificates here") }),
      /^Error: auth\.token\.rootcertbundle: no certificate in the bundle$/,
    );
  });

  it("trusts the keys of a JWKS file, with the asymmetric algorithms the spec's issuers use", async () => {
    const p384 = keyPair("ec", "P-384");
    const p521 = keyPair("ec", "P-521");
    const entries: [KeyObject, KeyObject, string[]][] = [
      [rsa.publicKey, rsa.privateKey, ["RS256", "RS384", "RS512", "PS256"]],
      [ec.publicKey, ec.privateKey, ["ES256"]],
      [p384.publicKey, p384.privateKey, ["ES384"]],
      [p521.publicKey, p521.privateKey, ["ES512"]],
      [ed.publicKey, ed.privateKey, ["EdDSA"]],
    ];
    const keys = [];
    for (const [i, [publicKey]] of entries.entries())
      keys.push({ ...(await exportJWK(publicKey)), kid: `k${i}` });
    const v = new TokenVerifier(ISSUER, SERVICE, { jwksFile: write(JSON.stringify({ keys })) });
    for (const [i, [, privateKey, algs]] of entries.entries())
      for (const alg of algs)
        assert.equal((await v.verify(await sign(privateKey, alg, {}, {}, `k${i}`))).subject, "alice", alg);
    await assert.rejects(
      v.verify(await sign(rsa.privateKey, "PS384", {}, {}, "k0")),
      "PS384 is not accepted",
    );
    await assert.rejects(v.verify(await sign(other.privateKey, "ES256", {}, {}, "k1")), {
      code: "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
    });
    // The issuer's key is tried first, then the JWKS.
    const both = new TokenVerifier(ISSUER, SERVICE, { issuer, jwksFile: write(JSON.stringify({ keys })) });
    assert.equal((await both.verify(await sign(rsa.privateKey, "RS256", {}, {}, "k0"))).subject, "alice");
    assert.equal((await both.verify(await sign(ec.privateKey, "ES256"))).subject, "alice");
    await assert.rejects(both.verify(await sign(other.privateKey, "ES256", { sub: randomUUID() })));
  });

  it("refuses to start without a key", () => {
    assert.throws(
      () => new TokenVerifier(ISSUER, SERVICE, {}),
      /^Error: auth\.token: no key to verify tokens with \(signingkey, rootcertbundle or jwks\)$/,
    );
  });
});
