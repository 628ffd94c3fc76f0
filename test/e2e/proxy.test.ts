/**
 * The pull-through cache (`proxy.remoteurl`, the operations guide's mirror config): skopeo pulls
 * through our registry from an upstream (the reference registry), and keeps pulling what it
 * pulled once the upstream is gone.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startHttpServer } from "../helpers/http-server.js";
import { assertServed, basicAuth, Client, errorCode, imageManifest, sha256 } from "../helpers/oci.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { startReference } from "../helpers/reference.js";
import { startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { servedDigest, skopeo } from "../helpers/tools.js";

/** The cache's proxy counters on :5001/metrics. */
async function proxyCounters(cache: RegistryProcess) {
  const text = await (await fetch(`${cache.debugUrl}/metrics`)).text();
  const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? 0);
  return {
    blobMisses: value(/^registry_proxy_lookups_total\{kind="blob",outcome="miss"\} (\d+)/m),
    blobHits: value(/^registry_proxy_lookups_total\{kind="blob",outcome="hit"\} (\d+)/m),
    fetched: value(/^registry_proxy_fetched_bytes_total (\d+)/m),
    upstreamErrors: value(/^registry_proxy_upstream_errors_total (\d+)/m),
  };
}

/** The digest an upstream's tag names, as it says in Docker-Content-Digest. */
async function upstreamDigest(url: string, repo: string, tag: string): Promise<string | null> {
  const response = await new Client(url).request("HEAD", `/v2/${repo}/manifests/${tag}`, {
    headers: {
      Accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
    },
  });
  return response.headers.get("Docker-Content-Digest");
}

describe("pull-through cache (proxy.remoteurl)", () => {
  let upstream: Awaited<ReturnType<typeof startReference>>;
  let cache: RegistryProcess;
  let digests: ReturnType<typeof writeOciLayout>;
  const upstreamRef = (path: string) => `docker://${upstream.host}/${path}`;
  const cacheRef = (path: string) => `docker://${cache.host}/${path}`;

  before(async () => {
    upstream = await startReference(join(tempDir(), "upstream"));
    const layout = join(tempDir(), "layout");
    digests = writeOciLayout(layout, "v1", "proxy");
    skopeo("copy", "--all", "--dest-tls-verify=false", `oci:${layout}:v1`, upstreamRef("library/app:v1"));
    cache = await startRegistry({ config: { proxy: { remoteurl: upstream.url, revalidate: "0s" } } });
  });
  after(async () => {
    await cache?.stop();
    await upstream?.stop();
  });

  it("serves what the upstream has, digests unchanged, fetched on first pull", () => {
    assert.equal(servedDigest(cacheRef("library/app:v1")), digests.index);
    const out = join(tempDir(), "pulled");
    skopeo("copy", "--all", "--src-tls-verify=false", cacheRef("library/app:v1"), `oci:${out}:v1`);
    const index = JSON.parse(skopeo("inspect", "--raw", `oci:${out}:v1`).stdout);
    assert.deepEqual(
      index.manifests.map((m: { digest: string }) => m.digest).sort(),
      Object.values(digests.manifests).sort(),
    );
    const tags = JSON.parse(skopeo("list-tags", "--tls-verify=false", cacheRef("library/app")).stdout);
    assert.deepEqual(tags.Tags, ["v1"]);
  });

  it("counts hits and misses: a second pull fetches nothing", async () => {
    const image = imageManifest({ layers: 2 });
    assert.equal((await new Client(upstream.url).pushManifest("library/counted", "v1", image)).status, 201);
    const pull = (dir: string) =>
      skopeo(
        "copy",
        "--src-tls-verify=false",
        cacheRef("library/counted:v1"),
        `oci:${join(tempDir(), dir)}:v1`,
      );
    const before = await proxyCounters(cache);
    pull("first");
    const first = await proxyCounters(cache);
    assert.equal(first.blobMisses - before.blobMisses, image.blobs.length, JSON.stringify({ before, first }));
    assert.ok(first.fetched - before.fetched >= image.blobs.reduce((n, b) => n + b.size, 0));
    pull("again");
    const again = await proxyCounters(cache);
    assert.equal(again.blobMisses, first.blobMisses);
    assert.equal(again.fetched, first.fetched);
    assert.ok(again.blobHits > first.blobHits);
  });

  it("follows a tag that moves upstream", async () => {
    const moved = imageManifest();
    const upstreamClient = new Client(upstream.url);
    assert.equal((await upstreamClient.pushManifest("library/app", "v2", moved)).status, 201);
    assert.equal(servedDigest(cacheRef("library/app:v2")), moved.digest);
    const next = imageManifest();
    assert.equal((await upstreamClient.pushManifest("library/app", "v2", next)).status, 201);
    assert.equal(servedDigest(cacheRef("library/app:v2")), next.digest);
  });

  it("answers unknown images as the spec says, and refuses pushes", async () => {
    const client = new Client(cache.url);
    const missing = await client.request("GET", "/v2/library/nothing/manifests/v1");
    assert.equal(missing.status, 404);
    assert.equal(await errorCode(missing), "MANIFEST_UNKNOWN");
    const push = await client.request("POST", "/v2/library/app/blobs/uploads/");
    assert.equal(push.status, 405);
    const body = (await push.json()) as { errors: { code: string; message: string }[] };
    assert.equal(body.errors[0]!.code, "UNSUPPORTED");
    assert.match(body.errors[0]!.message, /pull-through cache/);
  });

  it("serves a blob only through a repository the upstream says holds it, never another's", async () => {
    const upstreamClient = new Client(upstream.url);
    const image = imageManifest({ layers: 1 });
    assert.equal((await upstreamClient.pushManifest("bob/y", "v1", image)).status, 201);
    const client = new Client(cache.url);
    const layer = image.blobs[1]!;
    // bob pulls bob/y through the cache: its layer is now stored here.
    assert.equal(
      (await client.request("GET", "/v2/bob/y/manifests/v1", { headers: { Accept: image.mediaType } }))
        .status,
      200,
    );
    assert.equal((await client.request("GET", `/v2/bob/y/blobs/${layer.digest}`)).status, 200);

    // Through a repository the upstream does not have it in, it is unknown, and stays unlinked.
    for (const method of ["GET", "HEAD"]) {
      const response = await client.request(method, `/v2/alice/anything/blobs/${layer.digest}`);
      assert.equal(response.status, 404, method);
      if (method === "GET") assert.equal(await errorCode(response), "BLOB_UNKNOWN");
    }
    const link = join(cache.root, "docker/registry/v2/repositories/alice/anything/_layers/sha256");
    assert.equal(existsSync(join(link, layer.digest.slice(7))), false);

    // Where the upstream holds it too, it is linked from storage, not downloaded again.
    await upstreamClient.pushBlob("alice/shared", layer);
    const before = await proxyCounters(cache);
    const shared = await client.request("GET", `/v2/alice/shared/blobs/${layer.digest}`);
    assert.equal(shared.status, 200);
    assert.equal(sha256(Buffer.from(await shared.arrayBuffer())), layer.digest);
    assert.equal((await proxyCounters(cache)).fetched, before.fetched);
  });
});

describe("pull-through cache without its upstream", () => {
  it("keeps serving what it pulled when the upstream is gone (an air-gapped site), counting upstream errors", async () => {
    const upstream = await startReference(join(tempDir(), "upstream"));
    const layout = join(tempDir(), "layout");
    const digests = writeOciLayout(layout, "v1", "offline");
    skopeo(
      "copy",
      "--all",
      "--dest-tls-verify=false",
      `oci:${layout}:v1`,
      `docker://${upstream.host}/library/app:v1`,
    );
    await new Client(upstream.url).pushManifest("library/app", "v2", imageManifest());
    const cache = await startRegistry({ config: { proxy: { remoteurl: upstream.url, revalidate: "0s" } } });
    const cacheRef = (path: string) => `docker://${cache.host}/${path}`;
    try {
      skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        cacheRef("library/app:v1"),
        `oci:${join(tempDir(), "a")}:v1`,
      );
      assert.equal(
        servedDigest(cacheRef("library/app:v2")),
        (await upstreamDigest(upstream.url, "library/app", "v2"))!,
      );
      assert.equal((await proxyCounters(cache)).upstreamErrors, 0);

      await upstream.stop();
      const out = join(tempDir(), "offline");
      skopeo("copy", "--all", "--src-tls-verify=false", cacheRef("library/app:v1"), `oci:${out}:v1`);
      assert.equal(servedDigest(cacheRef("library/app:v1")), digests.index);
      const tags = JSON.parse(skopeo("list-tags", "--tls-verify=false", cacheRef("library/app")).stdout);
      assert.deepEqual(tags.Tags, ["v1", "v2"]);
      // Never pulled: nothing to serve.
      const missing = await new Client(cache.url).request("GET", "/v2/library/other/manifests/v1");
      assert.equal(missing.status, 404);
      assert.match(cache.log(), /upstream unavailable; serving the cache/);
      assert.ok((await proxyCounters(cache)).upstreamErrors >= 3);
    } finally {
      await cache.stop();
      await upstream.stop();
    }
  });
});

describe("pull-through cache expiry (proxy.ttl)", () => {
  it("drops images not pulled within the ttl, and their blobs", async () => {
    const upstream = await startReference(join(tempDir(), "upstream"));
    const image = imageManifest({ layers: 2 });
    await new Client(upstream.url).pushManifest("team/app", "v1", image);
    const cache = await startRegistry({ config: { proxy: { remoteurl: upstream.url, ttl: "3s" } } });
    try {
      const client = new Client(cache.url);
      const pulled = await client.request("GET", "/v2/team/app/manifests/v1", {
        headers: { Accept: image.mediaType },
      });
      assert.equal(pulled.status, 200);
      for (const b of image.blobs)
        assert.equal((await client.request("GET", `/v2/team/app/blobs/${b.digest}`)).status, 200);
      await upstream.stop();
      await waitUntil(
        async () => (await client.request("GET", "/v2/team/app/manifests/v1")).status === 404,
        20_000,
      );
      // Watched on disk: polling with GET would be a pull, which keeps the blob (it is in use).
      const hex = image.blobs[1]!.digest.slice(7);
      const data = join(cache.root, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
      await waitUntil(async () => !existsSync(data), 20_000);
      assert.equal((await client.request("GET", `/v2/team/app/blobs/${image.blobs[1]!.digest}`)).status, 404);
    } finally {
      await cache.stop();
    }
  });
});

describe("pull-through cache revalidation (proxy.revalidate)", () => {
  it("serves a tag from the cache within revalidate, and follows the upstream after", async () => {
    const upstream = await startReference(join(tempDir(), "upstream"));
    const cache = await startRegistry({ config: { proxy: { remoteurl: upstream.url, revalidate: "4s" } } });
    try {
      const upstreamClient = new Client(upstream.url);
      const client = new Client(cache.url);
      const pulled = async () => {
        const response = await client.request("GET", "/v2/team/app/manifests/v1", {
          headers: { Accept: "application/vnd.oci.image.manifest.v1+json" },
        });
        assert.equal(response.status, 200);
        return sha256(Buffer.from(await response.arrayBuffer()));
      };
      const first = imageManifest();
      await upstreamClient.pushManifest("team/app", "v1", first);
      // The cache checks the tag while the first pull runs: after `asked`, before `answered`.
      const asked = Date.now();
      assert.equal(await pulled(), first.digest);
      const answered = Date.now();
      const moved = imageManifest();
      await upstreamClient.pushManifest("team/app", "v1", moved);
      // Within revalidate: the cached tag, without asking the upstream.
      assert.equal(await pulled(), first.digest);
      assert.ok(Date.now() - asked < 4000, "the second pull came within revalidate");
      await new Promise((resolve) => setTimeout(resolve, 4000 - (Date.now() - answered) + 100));
      assert.equal(await pulled(), moved.digest);
    } finally {
      await cache.stop();
      await upstream.stop();
    }
  });
});

describe("pull-through cache of an upstream that asks for credentials", () => {
  it("pulls with proxy.username and passwordfile; without them the upstream's refusal is counted", async () => {
    const dir = tempDir();
    const htpasswd = join(dir, "htpasswd");
    const hashed = spawnSync("htpasswd", ["-Bbn", "mirror", "mirror-pw"], { encoding: "utf8" });
    assert.equal(hashed.status, 0, hashed.stderr);
    writeFileSync(htpasswd, hashed.stdout);
    const password = join(dir, "password");
    writeFileSync(password, "mirror-pw\n");
    const upstream = await startReference(join(tempDir(), "upstream"), { htpasswd });
    const image = imageManifest({ layers: 2 });
    const authed = basicAuth("mirror", "mirror-pw");
    for (const b of image.blobs) {
      const start = await fetch(`${upstream.url}/v2/team/private/blobs/uploads/`, {
        method: "POST",
        headers: authed,
      });
      assert.equal(start.status, 202);
      const location = new URL(start.headers.get("Location")!, upstream.url);
      location.searchParams.set("digest", b.digest);
      const put = await fetch(location, { method: "PUT", body: b.data, headers: authed });
      assert.equal(put.status, 201);
    }
    const put = await fetch(`${upstream.url}/v2/team/private/manifests/v1`, {
      method: "PUT",
      body: image.bytes,
      headers: { ...authed, "Content-Type": image.mediaType },
    });
    assert.equal(put.status, 201);

    const cache = await startRegistry({
      config: { proxy: { remoteurl: upstream.url, username: "mirror", passwordfile: password } },
    });
    const anonymous = await startRegistry({ config: { proxy: { remoteurl: upstream.url } } });
    try {
      await assertServed(new Client(cache.url), "team/private", "v1", image);
      const refused = await new Client(anonymous.url).request("GET", "/v2/team/private/manifests/v1", {
        headers: { Accept: image.mediaType },
      });
      assert.equal(refused.status, 404);
      assert.equal((await proxyCounters(anonymous)).upstreamErrors, 1);
      assert.equal((await proxyCounters(cache)).upstreamErrors, 0);
    } finally {
      await cache.stop();
      await anonymous.stop();
      await upstream.stop();
    }
  });
});

describe("pull-through cache of an upstream that misbehaves (served by the test)", () => {
  it("refuses a manifest that does not match its digest and caches nothing of it", async () => {
    const genuine = imageManifest();
    const tampered = imageManifest();
    const upstream = await startHttpServer((request, response) => {
      const path = new URL(request.url!, "http://x").pathname;
      if (path === "/v2/") return void response.writeHead(200).end();
      if (path === "/v2/team/app/manifests/v1" || path === `/v2/team/app/manifests/${genuine.digest}`) {
        // Says it is the genuine manifest, serves another.
        response.writeHead(200, {
          "Content-Type": genuine.mediaType,
          "Docker-Content-Digest": genuine.digest,
        });
        return void response.end(request.method === "HEAD" ? undefined : tampered.bytes);
      }
      response.writeHead(404).end();
    });
    const cache = await startRegistry({ config: { proxy: { remoteurl: upstream.url, revalidate: "0s" } } });
    try {
      const client = new Client(cache.url);
      for (const reference of ["v1", genuine.digest]) {
        const response = await client.request("GET", `/v2/team/app/manifests/${reference}`, {
          headers: { Accept: genuine.mediaType },
        });
        assert.equal(response.status, 400, reference);
        assert.equal(await errorCode(response), "MANIFEST_INVALID");
      }
      assert.ok(
        upstream.requests.some((r) => r.method === "GET"),
        "the manifest was fetched",
      );
      const v2 = join(cache.root, "docker/registry/v2");
      for (const m of [genuine, tampered]) {
        const hex = m.digest.slice(7);
        assert.equal(existsSync(join(v2, "blobs/sha256", hex.slice(0, 2), hex)), false, m.digest);
        assert.equal(existsSync(join(v2, "repositories/team/app/_manifests/revisions/sha256", hex)), false);
      }
      assert.equal(existsSync(join(v2, "repositories/team/app/_manifests/tags/v1")), false);
    } finally {
      await cache.stop();
      await upstream.stop();
    }
  });

  it("does not send its credentials to a token realm on another server", async () => {
    const tokens = await startHttpServer((request, response) => {
      response.writeHead(200, { "Content-Type": "application/json" });
      response.end(JSON.stringify({ token: "granted" }));
    });
    const upstream = await startHttpServer((request, response) => {
      response.writeHead(401, { "WWW-Authenticate": `Bearer realm="${tokens.url}/token",service="x"` });
      response.end();
    });
    const password = join(tempDir(), "password");
    writeFileSync(password, "mirror-pw\n");
    const cache = await startRegistry({
      config: { proxy: { remoteurl: upstream.url, username: "mirror", passwordfile: password } },
    });
    try {
      const response = await new Client(cache.url).request("GET", "/v2/team/app/manifests/v1");
      assert.equal(response.status, 404);
      assert.ok(upstream.requests.length > 0);
      assert.deepEqual(tokens.requests, []);
      assert.match(
        cache.log(),
        /token realm http:\/\/127\.0\.0\.1:\d+\/token is not the upstream's own server/,
      );
    } finally {
      await cache.stop();
      await upstream.stop();
      await tokens.stop();
    }
  });
});
