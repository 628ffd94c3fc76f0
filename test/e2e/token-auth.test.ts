/**
 * Docker token authentication: the registry's own /token endpoint, Bearer challenges, and the
 * tokens it must refuse. skopeo drives the real client flow.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createPrivateKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SignJWT } from "jose";
import { Client, basicAuth, errorCode, imageManifest } from "../helpers/oci.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { makeCertificates } from "../helpers/certs.js";
import { freePort, startRegistry, tempDir, type RegistryProcess } from "../helpers/registry.js";
import { run } from "../helpers/tools.js";

const SERVICE = "neam-registry";
const ISSUER = "neam-test-issuer";
let registry: RegistryProcess;
let signingKey: KeyObject;
let externalKey: KeyObject;
let layout: string;

const basic = basicAuth;
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

async function tokenFor(credentials: Record<string, string>, ...scopes: string[]): Promise<string> {
  const query = new URLSearchParams({ service: SERVICE });
  for (const scope of scopes) query.append("scope", scope);
  const response = await new Client(registry.url).request("GET", `/token?${query}`, { headers: credentials });
  assert.equal(response.status, 200, await response.clone().text());
  const body = (await response.json()) as { token: string; access_token: string; expires_in: number };
  assert.equal(body.token, body.access_token);
  assert.ok(body.expires_in > 0);
  return body.token;
}

function claims(token: string): {
  sub: string;
  aud: string;
  iss: string;
  access: { type: string; name: string; actions: string[] }[];
} {
  return JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString());
}

/** A token signed by `key` with the given claims, for the refusal tests. */
function forge(
  key: KeyObject,
  claims: Record<string, unknown>,
  alg = "ES256",
  expiresIn = 300,
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg })
    .setIssuer((claims.iss as string) ?? ISSUER)
    .setAudience((claims.aud as string) ?? SERVICE)
    .setSubject("alice")
    .setIssuedAt(now)
    .setExpirationTime(now + expiresIn)
    .sign(key);
}

before(async () => {
  const dir = tempDir();
  const htpasswd = join(dir, "htpasswd");
  writeFileSync(htpasswd, "");
  for (const [user, password] of [
    ["alice", "alice-pw"],
    ["bob", "bob-pw"],
  ]) {
    spawnSync("htpasswd", ["-bB", "-C", "5", htpasswd, user!, password!]);
  }
  const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
  signingKey = pair.privateKey;
  const keyPath = join(dir, "token.key");
  writeFileSync(keyPath, pair.privateKey.export({ type: "pkcs8", format: "pem" }));
  // An external issuer trusted through its certificate (rootcertbundle): a self-signed CA will do.
  const external = makeCertificates("external issuer");
  const bundle = external.caCert;
  externalKey = createPrivateKey(readFileSync(external.caKey));
  const port = await freePort();
  registry = await startRegistry({
    port,
    config: {
      auth: {
        htpasswd: { realm: "basic", path: htpasswd },
        token: {
          realm: `http://127.0.0.1:${port}/token`,
          service: SERVICE,
          issuer: ISSUER,
          signingkey: keyPath,
          rootcertbundle: bundle,
        },
        access: {
          rules: [{ subjects: ["user:alice"], repositories: ["apps/**", "public/**"], actions: ["*"] }],
          default: ["pull"],
          anonymous: [{ repositories: ["public/**"], actions: ["pull"] }],
        },
      },
    },
  });
  layout = join(tempDir(), "layout");
  writeOciLayout(layout, "v1", "token");
});
after(() => registry?.stop());

describe("token authentication", () => {
  it("challenges with Bearer realm and service, and the scope a request needs", async () => {
    const client = new Client(registry.url);
    const base = await client.request("GET", "/v2/");
    assert.equal(base.status, 401);
    assert.equal(
      base.headers.get("WWW-Authenticate"),
      `Bearer realm="${registry.url}/token",service="${SERVICE}"`,
    );
    const pull = await client.request("GET", "/v2/apps/x/manifests/v1");
    assert.equal(
      pull.headers.get("WWW-Authenticate"),
      `Bearer realm="${registry.url}/token",service="${SERVICE}",scope="repository:apps/x:pull"`,
    );
  });

  it("issues tokens granting what was asked and the policy allows, no more", async () => {
    const alice = claims(
      await tokenFor(basic("alice", "alice-pw"), "repository:apps/x:pull,push", "repository:other/y:push"),
    );
    assert.equal(alice.sub, "alice");
    assert.equal(alice.aud, SERVICE);
    assert.equal(alice.iss, ISSUER);
    assert.deepEqual(alice.access, [{ type: "repository", name: "apps/x", actions: ["pull", "push"] }]);
    const bob = claims(await tokenFor(basic("bob", "bob-pw"), "repository:apps/x:pull,push,delete"));
    assert.deepEqual(
      bob.access,
      [{ type: "repository", name: "apps/x", actions: ["pull"] }],
      "no escalation by asking",
    );
    const anonymous = claims(
      await tokenFor({}, "repository:public/base:pull,push", "repository:apps/x:pull"),
    );
    assert.deepEqual(anonymous.access, [{ type: "repository", name: "public/base", actions: ["pull"] }]);
  });

  it("the token endpoint refuses wrong credentials with 401", async () => {
    const response = await new Client(registry.url).request("GET", `/token?service=${SERVICE}`, {
      headers: basic("alice", "wrong"),
    });
    assert.equal(response.status, 401);
  });

  it("a token works for its repository and action only; a user without the right gets 403", async () => {
    const client = new Client(registry.url);
    const token = await tokenFor(basic("alice", "alice-pw"), "repository:apps/a:pull,push");
    assert.equal(
      (await client.request("POST", "/v2/apps/a/blobs/uploads/", { headers: bearer(token) })).status,
      202,
    );
    const elsewhere = await client.request("POST", "/v2/apps/b/blobs/uploads/", { headers: bearer(token) });
    assert.equal(elsewhere.status, 401, "a token for repo A is not good for repo B");
    assert.match(
      elsewhere.headers.get("WWW-Authenticate") ?? "",
      /scope="repository:apps\/b:pull,push",error="insufficient_scope"/,
    );
    const bobToken = await tokenFor(basic("bob", "bob-pw"), "repository:apps/a:pull,push");
    const denied = await client.request("POST", "/v2/apps/a/blobs/uploads/", { headers: bearer(bobToken) });
    assert.equal(denied.status, 403);
    assert.equal(await errorCode(denied), "DENIED");
  });

  it("refuses tampered, expired, not-yet-valid, wrong-audience, wrong-issuer, unsigned and foreign tokens", async () => {
    const client = new Client(registry.url);
    const good = await tokenFor(basic("alice", "alice-pw"), "repository:apps/a:pull");
    const [h, p, sig] = good.split(".") as [string, string, string];
    const escalated = Buffer.from(
      JSON.stringify({ ...claims(good), access: [{ type: "repository", name: "apps/a", actions: ["*"] }] }),
    ).toString("base64url");
    const access = [{ type: "repository", name: "apps/a", actions: ["pull"] }];
    const unsigned = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${p}.`;
    const now = Math.floor(Date.now() / 1000);
    const notYet = await new SignJWT({ access })
      .setProtectedHeader({ alg: "ES256" })
      .setIssuer(ISSUER)
      .setAudience(SERVICE)
      .setSubject("alice")
      .setNotBefore(now + 3600)
      .setExpirationTime(now + 7200)
      .sign(signingKey);
    const cases: Record<string, string> = {
      tampered: `${h}.${escalated}.${sig}`,
      expired: await forge(signingKey, { access }, "ES256", -120),
      "not yet valid": notYet,
      "wrong audience": await forge(signingKey, { access, aud: "another-service" }),
      "wrong issuer": await forge(signingKey, { access, iss: "someone-else" }),
      "alg none": unsigned,
      "unknown key": await forge(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey, { access }),
      garbage: "not.a.token",
    };
    for (const [what, token] of Object.entries(cases)) {
      const response = await client.request("GET", "/v2/apps/a/tags/list", { headers: bearer(token) });
      assert.equal(response.status, 401, what);
      assert.equal(await errorCode(response), "UNAUTHORIZED", what);
    }
    assert.notEqual(
      (await client.request("GET", "/v2/apps/a/tags/list", { headers: bearer(good) })).status,
      401,
    );
  });

  it("trusts tokens of an external issuer whose certificate is in rootcertbundle", async () => {
    const manifest = imageManifest();
    const client = new Client(registry.url);
    const push = await tokenFor(basic("alice", "alice-pw"), "repository:apps/ext:pull,push");
    for (const b of manifest.blobs)
      await client.request("POST", `/v2/apps/ext/blobs/uploads/?digest=${b.digest}`, {
        body: b.data,
        headers: bearer(push),
      });
    await client.request("PUT", "/v2/apps/ext/manifests/v1", {
      body: manifest.bytes,
      headers: { "Content-Type": manifest.mediaType, ...bearer(push) },
    });
    const external = await forge(externalKey, {
      access: [{ type: "repository", name: "apps/ext", actions: ["pull"] }],
    });
    assert.equal(
      (await client.request("GET", "/v2/apps/ext/manifests/v1", { headers: bearer(external) })).status,
      200,
    );
  });

  it("skopeo logs in through the token flow: push with rights, denied without, anonymous pull of public", () => {
    const skopeo = (...args: string[]) =>
      run("skopeo", ["--insecure-policy", ...args], { allowFailure: true });
    const push = (creds: string, target: string) =>
      skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        `oci:${layout}:v1-amd64`,
        `docker://${registry.host}/${target}`,
      );
    assert.equal(push("alice:alice-pw", "apps/web:v1").status, 0);
    assert.equal(push("alice:alice-pw", "public/web:v1").status, 0);
    const pulled = skopeo(
      "inspect",
      "--tls-verify=false",
      "--creds",
      "bob:bob-pw",
      `docker://${registry.host}/apps/web:v1`,
    );
    assert.equal(JSON.parse(pulled.stdout).Architecture, "amd64");
    const denied = push("bob:bob-pw", "apps/bob:v1");
    assert.notEqual(denied.status, 0);
    assert.match(denied.stderr, /denied|unauthorized/i);
    const open = skopeo("inspect", "--tls-verify=false", "--raw", `docker://${registry.host}/public/web:v1`);
    assert.equal(open.status, 0, "public/ is open to anonymous callers");
    const closed = skopeo("inspect", "--tls-verify=false", "--raw", `docker://${registry.host}/apps/web:v1`);
    assert.notEqual(closed.status, 0, "apps/ is not");
  });
});

describe("tokens from an issuer published as a JWKS file", () => {
  it("are accepted when signed by a key of the set, refused otherwise", async () => {
    const { exportJWK } = await import("jose");
    const dir = tempDir();
    const trusted = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = { ...(await exportJWK(trusted.publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    const jwks = join(dir, "jwks.json");
    writeFileSync(jwks, JSON.stringify({ keys: [jwk] }));
    const port = await freePort();
    const server = await startRegistry({
      port,
      config: {
        auth: { token: { realm: `http://127.0.0.1:${port}/token`, service: SERVICE, issuer: ISSUER, jwks } },
      },
    });
    try {
      const client = new Client(server.url);
      const access = [{ type: "repository", name: "any/repo", actions: ["pull"] }];
      const now = Math.floor(Date.now() / 1000);
      const sign = (key: KeyObject) =>
        new SignJWT({ access })
          .setProtectedHeader({ alg: "ES256", kid: "k1" })
          .setIssuer(ISSUER)
          .setAudience(SERVICE)
          .setSubject("ci")
          .setIssuedAt(now)
          .setExpirationTime(now + 60)
          .sign(key);
      assert.equal(
        (
          await client.request("GET", "/v2/any/repo/tags/list", {
            headers: bearer(await sign(trusted.privateKey)),
          })
        ).status,
        404,
      );
      const foreign = await sign(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey);
      assert.equal(
        (await client.request("GET", "/v2/any/repo/tags/list", { headers: bearer(foreign) })).status,
        401,
      );
      assert.equal(
        (await client.request("GET", "/token")).status,
        404,
        "no issuer configured: no token endpoint",
      );
    } finally {
      await server.stop();
    }
  });
});
