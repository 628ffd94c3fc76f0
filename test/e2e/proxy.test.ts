/**
 * The pull-through cache (`proxy.remoteurl`, the operations guide's mirror config): skopeo pulls
 * through our registry from an upstream (the reference registry), and keeps pulling what it
 * pulled once the upstream is gone.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client, errorCode, imageManifest } from "../helpers/oci.js";
import { writeOciLayout } from "../helpers/oci-layout.js";
import { startReference } from "../helpers/reference.js";
import { startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { servedDigest, skopeo } from "../helpers/tools.js";

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
    const read = async () => {
      const text = await (await fetch(`${cache.debugUrl}/metrics`)).text();
      const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? 0);
      return {
        blobMisses: value(/^registry_proxy_lookups_total\{kind="blob",outcome="miss"\} (\d+)/m),
        blobHits: value(/^registry_proxy_lookups_total\{kind="blob",outcome="hit"\} (\d+)/m),
        fetched: value(/^registry_proxy_fetched_bytes_total (\d+)/m),
      };
    };
    const before = await read();
    assert.ok(before.blobMisses > 0 && before.fetched > 0, JSON.stringify(before));
    skopeo(
      "copy",
      "--all",
      "--src-tls-verify=false",
      cacheRef("library/app:v1"),
      `oci:${join(tempDir(), "again")}:v1`,
    );
    const after = await read();
    assert.equal(after.blobMisses, before.blobMisses);
    assert.equal(after.fetched, before.fetched);
    assert.ok(after.blobHits > before.blobHits);
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

  it("keeps serving what it pulled when the upstream is gone (an air-gapped site)", async () => {
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
