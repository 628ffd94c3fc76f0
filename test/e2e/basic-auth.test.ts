/**
 * htpasswd Basic auth and the access policy, against a real server, with fetch and skopeo:
 * 401 with a challenge for nobody or bad credentials, 403 for somebody not allowed.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client, basicAuth, errorCode, imageManifest } from "../helpers/oci.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { run } from "../helpers/tools.js";

let registry: RegistryProcess;
let htpasswd: string;
let layout: string;
let auditFile: string;

const basic = basicAuth;

function addUser(user: string, password: string) {
  const result = spawnSync("htpasswd", ["-bB", "-C", "5", htpasswd, user, password], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(result.stderr);
}

before(async () => {
  const dir = tempDir();
  htpasswd = join(dir, "htpasswd");
  auditFile = join(dir, "audit", "audit.log");
  writeFileSync(htpasswd, "");
  addUser("admin", "admin-pw");
  addUser("alice", "alice-pw");
  addUser("bob", "bob-pw");
  registry = await startRegistry({
    config: {
      audit: { file: auditFile },
      auth: {
        htpasswd: { realm: "neam-registry", path: htpasswd },
        // The reload test polls with a not-yet-known user; brute-force limits have their own test.
        limits: { userfailures: 1000, clientfailures: 1000 },
        access: {
          groups: { dev: ["alice"] },
          rules: [{ subjects: ["group:dev"], repositories: ["apps/**"], actions: ["pull", "push"] }],
          default: ["pull"],
          anonymous: [{ repositories: ["public/**"], actions: ["pull"] }],
          admins: ["admin"],
        },
      },
    },
  });
  layout = join(tempDir(), "layout");
  writeOciLayout(layout, "v1", "auth");
  // Seed: the admin pushes an image to apps/ and to public/.
  const admin = new Client(registry.url);
  for (const repo of ["apps/seed", "public/base"]) {
    const manifest = imageManifest();
    for (const b of manifest.blobs) {
      const r = await admin.request("POST", `/v2/${repo}/blobs/uploads/?digest=${b.digest}`, {
        body: b.data,
        headers: basic("admin", "admin-pw"),
      });
      assert.equal(r.status, 201);
    }
    const r = await admin.request("PUT", `/v2/${repo}/manifests/v1`, {
      body: manifest.bytes,
      headers: { "Content-Type": manifest.mediaType, ...basic("admin", "admin-pw") },
    });
    assert.equal(r.status, 201);
  }
});
after(() => registry?.stop());

describe("Basic authentication", () => {
  it("GET /v2/ without credentials is 401 UNAUTHORIZED with a Basic challenge", async () => {
    const response = await new Client(registry.url).request("GET", "/v2/");
    assert.equal(response.status, 401);
    assert.equal(response.headers.get("WWW-Authenticate"), 'Basic realm="neam-registry"');
    assert.equal(await errorCode(response), "UNAUTHORIZED");
  });

  it("a wrong password, an unknown user or a malformed header is 401", async () => {
    const client = new Client(registry.url);
    for (const headers of [
      basic("alice", "nope"),
      basic("mallory", "alice-pw"),
      { Authorization: "Basic !!!" },
      { Authorization: "Bearer x" },
    ]) {
      const response = await client.request("GET", "/v2/", { headers });
      assert.equal(response.status, 401, JSON.stringify(headers));
    }
  });

  it("valid credentials open /v2/", async () => {
    const response = await new Client(registry.url).request("GET", "/v2/", {
      headers: basic("bob", "bob-pw"),
    });
    assert.equal(response.status, 200);
  });
});

describe("access policy over HTTP", () => {
  it("a user without push gets 403 DENIED on push and can still pull", async () => {
    const client = new Client(registry.url);
    const push = await client.request("POST", "/v2/apps/seed/blobs/uploads/", {
      headers: basic("bob", "bob-pw"),
    });
    assert.equal(push.status, 403);
    assert.equal(await errorCode(push), "DENIED");
    const pull = await client.request("GET", "/v2/apps/seed/manifests/v1", {
      headers: basic("bob", "bob-pw"),
    });
    assert.equal(pull.status, 200);
  });

  it("anonymous callers may pull public/** and nothing else (401 there, so clients log in)", async () => {
    const client = new Client(registry.url);
    assert.equal((await client.request("GET", "/v2/public/base/manifests/v1")).status, 200);
    const denied = await client.request("GET", "/v2/apps/seed/manifests/v1");
    assert.equal(denied.status, 401);
    assert.ok(denied.headers.get("WWW-Authenticate"));
    assert.equal((await client.request("POST", "/v2/public/base/blobs/uploads/")).status, 401);
  });

  it("the catalog lists only repositories the caller may pull", async () => {
    const client = new Client(registry.url);
    const anonymous = (await (await client.request("GET", "/v2/_catalog")).json()) as {
      repositories: string[];
    };
    assert.deepEqual(anonymous.repositories, ["public/base"]);
    const bob = (await (
      await client.request("GET", "/v2/_catalog", { headers: basic("bob", "bob-pw") })
    ).json()) as { repositories: string[] };
    assert.deepEqual(bob.repositories, ["apps/seed", "public/base"]);
  });

  it("delete needs the delete action (admins have it)", async () => {
    const client = new Client(registry.url);
    const manifest = imageManifest();
    for (const b of manifest.blobs) {
      await client.request("POST", `/v2/apps/del/blobs/uploads/?digest=${b.digest}`, {
        body: b.data,
        headers: basic("alice", "alice-pw"),
      });
    }
    await client.request("PUT", "/v2/apps/del/manifests/x", {
      body: manifest.bytes,
      headers: { "Content-Type": manifest.mediaType, ...basic("alice", "alice-pw") },
    });
    assert.equal(
      (await client.request("DELETE", "/v2/apps/del/manifests/x", { headers: basic("alice", "alice-pw") }))
        .status,
      403,
    );
    assert.equal(
      (await client.request("DELETE", "/v2/apps/del/manifests/x", { headers: basic("admin", "admin-pw") }))
        .status,
      202,
    );
  });

  it("a mount without from needs pull on every repository; otherwise it falls back to an upload", async () => {
    const client = new Client(registry.url);
    const b = imageManifest().blobs[0]!;
    await client.request("POST", `/v2/secret/x/blobs/uploads/?digest=${b.digest}`, {
      body: b.data,
      headers: basic("admin", "admin-pw"),
    });
    const alice = await client.request("POST", `/v2/apps/m/blobs/uploads/?mount=${b.digest}`, {
      headers: basic("alice", "alice-pw"),
    });
    assert.equal(alice.status, 202, "alice's rules do not cover every repository");
    const admin = await client.request("POST", `/v2/apps/m/blobs/uploads/?mount=${b.digest}`, {
      headers: basic("admin", "admin-pw"),
    });
    assert.equal(admin.status, 201);
  });
});

describe("clients with credentials", () => {
  it("skopeo pushes with --dest-creds and pulls with --creds; without push it is denied", () => {
    run("skopeo", [
      "--insecure-policy",
      "copy",
      "--dest-tls-verify=false",
      "--dest-creds",
      "alice:alice-pw",
      `oci:${layout}:v1-amd64`,
      `docker://${registry.host}/apps/web:v1`,
    ]);
    const out = run("skopeo", [
      "inspect",
      "--tls-verify=false",
      "--creds",
      "bob:bob-pw",
      `docker://${registry.host}/apps/web:v1`,
    ]);
    assert.equal(JSON.parse(out.stdout).Architecture, "amd64");
    const denied = run(
      "skopeo",
      [
        "--insecure-policy",
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob:bob-pw",
        `oci:${layout}:v1-amd64`,
        `docker://${registry.host}/apps/bob:v1`,
      ],
      { allowFailure: true },
    );
    assert.notEqual(denied.status, 0);
    assert.match(denied.stderr, /denied|403/i);
  });

  it("skopeo pulls public/** anonymously", () => {
    const out = run("skopeo", [
      "inspect",
      "--tls-verify=false",
      "--raw",
      `docker://${registry.host}/public/base:v1`,
    ]);
    assert.match(out.stdout, /schemaVersion/);
  });

  it("a user added with htpasswd while the server runs can log in within seconds; removed, cannot", async () => {
    const client = new Client(registry.url);
    addUser("carol", "carol-pw");
    await waitUntil(
      async () =>
        (await client.request("GET", "/v2/", { headers: basic("carol", "carol-pw") })).status === 200,
      10_000,
    );
    spawnSync("htpasswd", ["-D", htpasswd, "carol"]);
    await waitUntil(
      async () =>
        (await client.request("GET", "/v2/", { headers: basic("carol", "carol-pw") })).status === 401,
      10_000,
    );
  });
});

describe("brute-force protection", () => {
  it("after too many failed logins for a user, even the right password gets 429 with Retry-After", async () => {
    const dir = tempDir();
    const file = join(dir, "htpasswd");
    writeFileSync(
      file,
      spawnSync("htpasswd", ["-nbB", "-C", "4", "victim", "right"], { encoding: "utf8" }).stdout,
    );
    spawnSync("htpasswd", ["-bB", "-C", "4", file, "other", "other-pw"]);
    const server = await startRegistry({
      config: {
        auth: {
          htpasswd: { realm: "r", path: file },
          limits: { userfailures: 3, clientfailures: 50, window: "1m" },
        },
      },
    });
    try {
      const client = new Client(server.url);
      for (let i = 0; i < 3; i++) {
        assert.equal(
          (await client.request("GET", "/v2/", { headers: basic("victim", `guess${i}`) })).status,
          401,
        );
      }
      const blocked = await client.request("GET", "/v2/", { headers: basic("victim", "right") });
      assert.equal(blocked.status, 429);
      assert.equal(await errorCode(blocked), "TOOMANYREQUESTS");
      assert.ok(Number(blocked.headers.get("Retry-After")) > 0);
      assert.equal(
        (await client.request("GET", "/v2/", { headers: basic("other", "other-pw") })).status,
        200,
      );
    } finally {
      await server.stop();
    }
  });

  it("100 parallel wrong passwords: counted before hashing, those past the limit get 429 at once", async () => {
    // Cost 10: the ten checks the limit lets through finish well within the wait bound, even on a
    // loaded machine, so none is given back as busy and exactly ten are counted.
    const { statuses, slowest, server } = await attack({ clientfailures: 10 }, 10);
    try {
      const count = (status: number) => statuses.filter((s) => s === status).length;
      assert.equal(count(401) + count(429), 100, `only 401 and 429: ${statuses.join(",")}`);
      assert.equal(count(401), 10, "the limit (10 per client) counts attempts as they start");
      assert.ok(slowest < 1000, `/debug/health took ${slowest} ms during the attack`);
      const blocked = await fetch(`${server.url}/v2/`, { headers: basic("victim", "right") });
      assert.equal(blocked.status, 429, "the client is blocked, even with the right password");
    } finally {
      await server.stop();
    }
  });

  it("100 parallel checks allowed by the limits: hashing is capped, the rest get 429, the server stays responsive", async () => {
    const { statuses, slowest, server } = await attack({ clientfailures: 1000, userfailures: 1000 }, 12);
    try {
      const count = (status: number) => statuses.filter((s) => s === status).length;
      assert.equal(count(401) + count(429), 100, `only 401 and 429: ${statuses.join(",")}`);
      // A few run at once and a few wait; the rest are refused rather than queued without bound.
      assert.ok(count(401) >= 2 && count(429) >= 1, `${count(401)} checked, ${count(429)} refused`);
      assert.ok(slowest < 1000, `/debug/health took ${slowest} ms during the attack`);
      const right = await fetch(`${server.url}/v2/`, { headers: basic("victim", "right") });
      assert.equal(right.status, 200, "the right password works again once the burst is over");
    } finally {
      await server.stop();
    }
  });
});

/**
 * Starts a registry with an htpasswd of bcrypt `cost` (12 as production files have it: one check
 * costs a few hundred ms of CPU) and sends 100 logins with wrong passwords at once from one
 * address, for the known user and unknown ones (which cost a hash of the same cost), while
 * /debug/health is probed.
 */
async function attack(limits: Record<string, number>, cost: number) {
  const file = join(tempDir(), "htpasswd");
  writeFileSync(
    file,
    spawnSync("htpasswd", ["-nbB", "-C", String(cost), "victim", "right"], { encoding: "utf8" }).stdout,
  );
  const server = await startRegistry({ config: { auth: { htpasswd: { realm: "r", path: file }, limits } } });
  let probing = true;
  let slowest = 0;
  const probe = (async () => {
    while (probing) {
      const started = Date.now();
      const health = await fetch(`${server.debugUrl}/debug/health`, { signal: AbortSignal.timeout(10_000) });
      await health.arrayBuffer();
      assert.equal(health.status, 200);
      slowest = Math.max(slowest, Date.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  try {
    const statuses = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const user = i % 2 === 0 ? "victim" : `nobody-${i}`;
        const response = await fetch(`${server.url}/v2/`, { headers: basic(user, `guess-${i}`) });
        await response.arrayBuffer();
        return response.status;
      }),
    );
    return { statuses, slowest, server };
  } catch (error) {
    await server.stop();
    throw error;
  } finally {
    probing = false;
    await probe.catch(() => {});
  }
}

describe("audit trail", () => {
  it("records pushes, pulls, deletes, failed logins and denials, with user and client, and never a password", async () => {
    // What the trail must show, done here (the seed push is before()'s), so the test runs alone.
    const client = new Client(registry.url);
    const accept = { Accept: "application/vnd.oci.image.manifest.v1+json" };
    assert.equal(
      (
        await client.request("GET", "/v2/apps/seed/manifests/v1", {
          headers: { ...accept, ...basic("bob", "bob-pw") },
        })
      ).status,
      200,
    );
    assert.equal(
      (await client.request("GET", "/v2/public/base/manifests/v1", { headers: accept })).status,
      200,
    );
    assert.equal(
      (await client.request("POST", "/v2/apps/seed/blobs/uploads/", { headers: basic("bob", "bob-pw") }))
        .status,
      403,
    );
    assert.equal((await client.request("GET", "/v2/", { headers: basic("bob", "nope") })).status, 401);
    const doomed = imageManifest();
    for (const b of doomed.blobs)
      await client.request("POST", `/v2/apps/del/blobs/uploads/?digest=${b.digest}`, {
        body: b.data,
        headers: basic("admin", "admin-pw"),
      });
    const put = await client.request("PUT", "/v2/apps/del/manifests/v1", {
      body: doomed.bytes,
      headers: { "Content-Type": doomed.mediaType, ...basic("admin", "admin-pw") },
    });
    assert.equal(put.status, 201);
    const removed = await client.request("DELETE", `/v2/apps/del/manifests/${doomed.digest}`, {
      headers: basic("admin", "admin-pw"),
    });
    assert.equal(removed.status, 202);
    await waitUntil(
      async () => existsSync(auditFile) && readFileSync(auditFile, "utf8").includes('"delete"'),
      5000,
    );
    const events = readFileSync(auditFile, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const find = (action: string, user: string | null, repository?: string) =>
      events.find(
        (e) =>
          e.action === action && e.user === user && (repository === undefined || e.repository === repository),
      );
    const push = find("push", "admin", "apps/seed");
    assert.ok(push, "admin's push is recorded");
    assert.equal(push.reference, "v1");
    assert.match(String(push.digest), /^sha256:[0-9a-f]{64}$/);
    assert.equal(push.client, "127.0.0.1");
    assert.ok(find("upload", "admin", "apps/seed"));
    assert.ok(find("pull", "bob", "apps/seed"));
    assert.ok(find("pull", null, "public/base"), "anonymous pulls are recorded with a null user");
    assert.ok(find("denied", "bob", "apps/seed"));
    assert.ok(find("delete", "admin", "apps/del"));
    assert.ok(events.some((e) => e.action === "login-failure" && e.status === 401));
    for (const secret of [
      "admin-pw",
      "alice-pw",
      "bob-pw",
      "nope",
      Buffer.from("bob:bob-pw").toString("base64"),
    ]) {
      assert.ok(!readFileSync(auditFile, "utf8").includes(secret), `audit file holds ${secret}`);
      assert.ok(!registry.log().includes(secret), `registry log holds ${secret}`);
    }
  });
});
