/**
 * Docker token authentication: the registry's own /token endpoint, Bearer challenges, and the
 * tokens it must refuse. skopeo drives the real client flow.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createPrivateKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SignJWT } from "jose";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { Client, basicAuth, errorCode, imageManifest } from "../helpers/oci.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { makeCertificates } from "../helpers/certs.js";
import { startRegistry, tempDir, type RegistryProcess } from "../helpers/registry.js";
import { tokenRealm, type TokenRealm } from "../helpers/token-realm.js";
import { run } from "../helpers/tools.js";

const SERVICE = "neam-registry";
const ISSUER = "neam-test-issuer";
let registry: RegistryProcess;
let realm: TokenRealm;
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
    .setSubject((claims.sub as string) ?? "alice")
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
    ["admin", "admin-pw"],
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
  realm = await tokenRealm();
  registry = await startRegistry({
    config: {
      auth: {
        htpasswd: { realm: "basic", path: htpasswd },
        token: {
          realm: realm.url,
          service: SERVICE,
          issuer: ISSUER,
          signingkey: keyPath,
          rootcertbundle: bundle,
        },
        access: {
          rules: [
            { subjects: ["user:alice"], repositories: ["apps/**", "public/**", "alice/**"], actions: ["*"] },
          ],
          default: ["pull"],
          anonymous: [{ repositories: ["public/**"], actions: ["pull"] }],
          admins: ["admin"],
        },
      },
    },
  });
  realm.forwardTo(registry.url);
  layout = join(tempDir(), "layout");
  writeOciLayout(layout, "v1", "token");
});
after(async () => {
  await registry?.stop();
  await realm?.close();
});

describe("token authentication", () => {
  it("challenges with Bearer realm and service, and the scope a request needs", async () => {
    const client = new Client(registry.url);
    const base = await client.request("GET", "/v2/");
    assert.equal(base.status, 401);
    assert.equal(base.headers.get("WWW-Authenticate"), `Bearer realm="${realm.url}",service="${SERVICE}"`);
    const pull = await client.request("GET", "/v2/apps/x/manifests/v1");
    assert.equal(
      pull.headers.get("WWW-Authenticate"),
      `Bearer realm="${realm.url}",service="${SERVICE}",scope="repository:apps/x:pull"`,
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
    const good = await tokenFor(basic("alice", "alice-pw"), "repository:apps/refused:pull");
    const [h, p, sig] = good.split(".") as [string, string, string];
    const escalated = Buffer.from(
      JSON.stringify({
        ...claims(good),
        access: [{ type: "repository", name: "apps/refused", actions: ["*"] }],
      }),
    ).toString("base64url");
    const access = [{ type: "repository", name: "apps/refused", actions: ["pull"] }];
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
    // Signed by our own key and otherwise valid, but good forever: refused as the reference does.
    const noExpiry = await new SignJWT({ access })
      .setProtectedHeader({ alg: "ES256" })
      .setIssuer(ISSUER)
      .setAudience(SERVICE)
      .setSubject("alice")
      .setIssuedAt(now)
      .sign(signingKey);
    const cases: Record<string, string> = {
      tampered: `${h}.${escalated}.${sig}`,
      expired: await forge(signingKey, { access }, "ES256", -120),
      "without exp": noExpiry,
      "not yet valid": notYet,
      "wrong audience": await forge(signingKey, { access, aud: "another-service" }),
      "wrong issuer": await forge(signingKey, { access, iss: "someone-else" }),
      "alg none": unsigned,
      "unknown key": await forge(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey, { access }),
      garbage: "not.a.token",
    };
    for (const [what, token] of Object.entries(cases)) {
      const response = await client.request("GET", "/v2/apps/refused/tags/list", { headers: bearer(token) });
      assert.equal(response.status, 401, what);
      assert.equal(await errorCode(response), "UNAUTHORIZED", what);
      assert.match(response.headers.get("WWW-Authenticate") ?? "", /error="invalid_token"/, what);
    }
    // The good token gets past authentication: the repository does not exist, nothing else is wrong.
    const accepted = await client.request("GET", "/v2/apps/refused/tags/list", { headers: bearer(good) });
    assert.equal(accepted.status, 404);
    assert.equal(await errorCode(accepted), "NAME_UNKNOWN");
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
    // No token endpoint here (no signingkey): clients are sent elsewhere, and none is asked in this test.
    const server = await startRegistry({
      config: {
        auth: { token: { realm: "http://127.0.0.1/token", service: SERVICE, issuer: ISSUER, jwks } },
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
      const admin = await new SignJWT({ access: [] })
        .setProtectedHeader({ alg: "ES256", kid: "k1" })
        .setIssuer(ISSUER)
        .setAudience(SERVICE)
        .setSubject("admin")
        .setIssuedAt(now)
        .setExpirationTime(now + 60)
        .sign(trusted.privateKey);
      const status = await client.request("GET", "/v2/_neam/status", { headers: bearer(admin) });
      assert.equal(status.status, 403, "the issuer's subject is not one of our users, whatever its name");
      assert.equal(await errorCode(status), "DENIED");
    } finally {
      await server.stop();
    }
  });
});

/** Pushes a one-layer image to `repository:tag` with `headers` (Basic or Bearer); returns its blobs. */
async function pushImage(repository: string, tag: string, headers: Record<string, string>) {
  const manifest = imageManifest();
  const client = new Client(registry.url);
  for (const b of manifest.blobs) {
    const response = await client.request("POST", `/v2/${repository}/blobs/uploads/?digest=${b.digest}`, {
      body: b.data,
      headers,
    });
    assert.equal(response.status, 201, `${repository}: ${await response.text()}`);
  }
  const put = await client.request("PUT", `/v2/${repository}/manifests/${tag}`, {
    body: manifest.bytes,
    headers: { "Content-Type": manifest.mediaType, ...headers },
  });
  assert.equal(put.status, 201, await put.text());
  return manifest;
}

describe("admin endpoints with token authentication", () => {
  const adminCalls = [
    ["GET", "/v2/_neam/status"],
    ["GET", "/v2/_neam/backup"],
    ["POST", "/v2/_oci/artifacts/delete?dryrun=true"],
  ] as const;

  it("a foreign issuer's subject is never an admin, even named like one of ours (403)", async () => {
    const client = new Client(registry.url);
    const foreignAdmin = await forge(externalKey, { sub: "admin", access: [] });
    for (const [method, path] of adminCalls) {
      const response = await client.request(method, path, { headers: bearer(foreignAdmin) });
      assert.equal(response.status, 403, `${method} ${path}`);
      assert.equal(await errorCode(response), "DENIED", `${method} ${path}`);
    }
  });

  it("our own token and Basic credentials name an admin; other users get 403, nobody 401", async () => {
    const client = new Client(registry.url);
    const ownAdmin = await tokenFor(basic("admin", "admin-pw"));
    assert.equal(claims(ownAdmin).sub, "admin");
    const status = await client.request("GET", "/v2/_neam/status", { headers: bearer(ownAdmin) });
    assert.equal(status.status, 200);
    assert.deepEqual(Object.keys((await status.json()) as object).sort(), ["backup", "gc", "sync"]);
    const gc = await client.request("POST", "/v2/_oci/artifacts/delete?dryrun=true", {
      headers: basic("admin", "admin-pw"),
    });
    assert.equal(gc.status, 200, await gc.clone().text());
    const alice = await client.request("GET", "/v2/_neam/status", { headers: basic("alice", "alice-pw") });
    assert.equal(alice.status, 403);
    const aliceToken = await tokenFor(basic("alice", "alice-pw"));
    assert.equal(
      (await client.request("GET", "/v2/_neam/status", { headers: bearer(aliceToken) })).status,
      403,
    );
    const nobody = await client.request("GET", "/v2/_neam/status");
    assert.equal(nobody.status, 401);
  });
});

describe("token scopes decide alone (catalog, mounts, chart indexes)", () => {
  const admin = basic("admin", "admin-pw");

  it("the catalog needs registry:catalog:* and lists only what the token may pull", async () => {
    await pushImage("bob/listed", "v1", admin);
    await pushImage("alice/fresh", "v1", admin);
    const client = new Client(registry.url);
    const scoped = await tokenFor(
      basic("alice", "alice-pw"),
      "registry:catalog:*",
      "repository:alice/fresh:pull",
    );
    const listed = await client.request("GET", "/v2/_catalog?n=1000", { headers: bearer(scoped) });
    assert.equal(listed.status, 200);
    assert.deepEqual(((await listed.json()) as { repositories: string[] }).repositories, ["alice/fresh"]);
    const noCatalog = await tokenFor(basic("alice", "alice-pw"), "repository:alice/fresh:pull");
    const refused = await client.request("GET", "/v2/_catalog", { headers: bearer(noCatalog) });
    assert.equal(refused.status, 401);
    assert.match(refused.headers.get("WWW-Authenticate") ?? "", /scope="registry:catalog:\*"/);
  });

  it("Basic credentials on a token registry are decided by the policy (the catalog too)", async () => {
    await pushImage("bob/basic", "v1", admin);
    const client = new Client(registry.url);
    const catalog = await client.request("GET", "/v2/_catalog?n=1000", {
      headers: basic("alice", "alice-pw"),
    });
    assert.equal(catalog.status, 200);
    assert.ok(
      ((await catalog.json()) as { repositories: string[] }).repositories.includes("bob/basic"),
      "alice may pull everything by default",
    );
    const tags = await client.request("GET", "/v2/bob/basic/tags/list", { headers: basic("bob", "bob-pw") });
    assert.deepEqual(await tags.json(), { name: "bob/basic", tags: ["v1"] });
    const push = await client.request("POST", "/v2/bob/basic/blobs/uploads/", {
      headers: basic("bob", "bob-pw"),
    });
    assert.equal(push.status, 403);
    assert.equal(await errorCode(push), "DENIED");
    const wrong = await client.request("GET", "/v2/bob/basic/tags/list", { headers: basic("bob", "wrong") });
    assert.equal(wrong.status, 401);
    assert.match(wrong.headers.get("WWW-Authenticate") ?? "", /^Bearer realm=/);
  });

  it("a mount with `from` needs pull on `from` in the token, else it is a plain upload (202)", async () => {
    const bobs = await pushImage("bob/y", "v1", admin);
    const layer = bobs.blobs[1]!;
    const client = new Client(registry.url);
    const scoped = await tokenFor(basic("alice", "alice-pw"), "repository:alice/mount:pull,push");
    const mount = await client.request(
      "POST",
      `/v2/alice/mount/blobs/uploads/?mount=${layer.digest}&from=bob/y`,
      { headers: bearer(scoped) },
    );
    assert.equal(mount.status, 202, "no pull on bob/y in the token: an upload starts instead");
    assert.match(mount.headers.get("Location") ?? "", /\/v2\/alice\/mount\/blobs\/uploads\//);
    const read = await client.request("GET", `/v2/alice/mount/blobs/${layer.digest}`, {
      headers: bearer(scoped),
    });
    assert.equal(read.status, 404, "bob's blob is not reachable through alice/mount");
    const granted = await tokenFor(
      basic("alice", "alice-pw"),
      "repository:alice/mount:pull,push",
      "repository:bob/y:pull",
    );
    const mounted = await client.request(
      "POST",
      `/v2/alice/mount/blobs/uploads/?mount=${layer.digest}&from=bob/y`,
      { headers: bearer(granted) },
    );
    assert.equal(mounted.status, 201, "with pull on bob/y the blob is mounted");
    const blob = await client.request("GET", `/v2/alice/mount/blobs/${layer.digest}`, {
      headers: bearer(granted),
    });
    assert.deepEqual(Buffer.from(await blob.arrayBuffer()), layer.data);
  });

  it("/chartrepo with a token: the index lists only charts the token may pull", async () => {
    const client = new Client(registry.url);
    for (const name of ["web", "db"]) {
      const chart = chartArchive(name, "1.0.0");
      const upload = await client.request("POST", "/chartrepo/alice/api/charts", {
        body: chart,
        headers: bearer(await tokenFor(basic("alice", "alice-pw"), `repository:alice/${name}:pull,push`)),
      });
      assert.equal(upload.status, 201, await upload.text());
    }
    const scoped = await tokenFor(
      basic("alice", "alice-pw"),
      "registry:catalog:*",
      "repository:alice/web:pull",
    );
    const index = await client.request("GET", "/chartrepo/alice/index.yaml", { headers: bearer(scoped) });
    assert.equal(index.status, 200);
    const entries = (parseYaml(await index.text()) as { entries: Record<string, unknown> }).entries;
    assert.deepEqual(Object.keys(entries), ["web"], "db is alice's too, but not in the token");
    const noCatalog = await tokenFor(basic("alice", "alice-pw"), "repository:alice/web:pull");
    assert.equal(
      (await client.request("GET", "/chartrepo/alice/index.yaml", { headers: bearer(noCatalog) })).status,
      401,
    );
    const download = await client.request("GET", "/chartrepo/alice/charts/db-1.0.0.tgz", {
      headers: bearer(scoped),
    });
    assert.equal(download.status, 401, "db is not in the token");
    const web = await client.request("GET", "/chartrepo/alice/charts/web-1.0.0.tgz", {
      headers: bearer(scoped),
    });
    assert.equal(web.status, 200);
  });
});

/** A packaged chart (`<name>/Chart.yaml` in a .tgz), as `helm package` makes it. */
function chartArchive(name: string, version: string): Buffer {
  const dir = tempDir();
  mkdirSync(join(dir, name), { recursive: true });
  writeFileSync(join(dir, name, "Chart.yaml"), stringifyYaml({ apiVersion: "v2", name, version }));
  const file = join(dir, `${name}-${version}.tgz`);
  const result = spawnSync("tar", ["-czf", file, "-C", dir, name], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  return readFileSync(file);
}
