/**
 * The registry's own deletions obey the rules a client's do: sync retention, pull-through cache
 * expiry and online garbage collection go through the domain's operations, so
 * `storage.maintenance.readonly` stops them all and `storage.delete.enabled: false` stops
 * retention (refused, and said so in the sync report).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { Client, imageManifest } from "../../helpers/oci.js";
import { startReference } from "../../helpers/reference.js";
import { startRegistry, tempDir, waitUntil, type RegistryProcess } from "../../helpers/registry.js";

const run = promisify(execFile);
const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;
const READ_ONLY = { maintenance: { readonly: { enabled: true } } };

interface Report {
  images: { outcome: string; error?: string }[];
  tagsDeleted: string[];
  manifestsDeleted: string[];
  retentionErrors: string[];
}

/** Syncs `docker.io/library/nginx:1` into `local/app:stable` keeping one other tag, untagged cleaned. */
async function syncWithRetention(registry: RegistryProcess): Promise<{ code: number; report: Report }> {
  const path = join(tempDir(), "sync.yaml");
  writeFileSync(
    path,
    stringify({
      sync: {
        images: [{ source: "docker.io/library/nginx:1", target: "local/app:stable" }],
        policies: { keep_last_versions: 1, cleanup_unused: true },
      },
    }),
  );
  return run(process.execPath, [MAIN, "sync", "--manifest", path, "--url", registry.url, "--json"]).then(
    ({ stdout }) => ({ code: 0, report: JSON.parse(stdout) as Report }),
    (error: { code: number; stdout: string }) => ({
      code: error.code,
      report: JSON.parse(error.stdout) as Report,
    }),
  );
}

async function tags(registry: RegistryProcess, repo: string): Promise<string[]> {
  const response = await new Client(registry.url).request("GET", `/v2/${repo}/tags/list`);
  return ((await response.json()) as { tags: string[] }).tags;
}

describe("sync retention obeys the registry's rules", () => {
  it("is refused with storage.delete.enabled: false, and the sync report says why", async () => {
    const upstream = await startReference(join(tempDir(), "upstream"));
    const registry = await startRegistry({
      deleteEnabled: false,
      config: { sync: { upstreams: [{ registry: "docker.io", url: upstream.url }] } },
    });
    try {
      await new Client(upstream.url).pushManifest("library/nginx", "1", imageManifest());
      const client = new Client(registry.url);
      for (const tag of ["v0", "v1", "v2"])
        assert.equal((await client.pushManifest("app", tag, imageManifest())).status, 201);
      const { code, report } = await syncWithRetention(registry);
      assert.equal(code, 1, JSON.stringify(report));
      assert.equal(report.images[0]!.outcome, "synced");
      assert.deepEqual(report.tagsDeleted, []);
      assert.equal(report.retentionErrors.length, 1, JSON.stringify(report));
      assert.match(report.retentionErrors[0]!, /^app: .*deletion is disabled \(storage\.delete\.enabled\)/);
      assert.deepEqual(await tags(registry, "app"), ["stable", "v0", "v1", "v2"]);
    } finally {
      await registry.stop();
      await upstream.stop();
    }
  });

  it("is stopped by storage.maintenance.readonly, as pushes are", async () => {
    const upstream = await startReference(join(tempDir(), "upstream"));
    const root = join(tempDir(), "data");
    const writable = await startRegistry({ root });
    const client = new Client(writable.url);
    for (const tag of ["v0", "v1", "v2"])
      assert.equal((await client.pushManifest("app", tag, imageManifest())).status, 201);
    await writable.stop();
    await new Client(upstream.url).pushManifest("library/nginx", "1", imageManifest());
    const registry = await startRegistry({
      root,
      config: { storage: READ_ONLY, sync: { upstreams: [{ registry: "docker.io", url: upstream.url }] } },
    });
    try {
      const { code, report } = await syncWithRetention(registry);
      assert.equal(code, 1);
      assert.equal(report.images[0]!.outcome, "failed");
      assert.deepEqual([report.tagsDeleted, report.manifestsDeleted], [[], []]);
      assert.match(report.retentionErrors[0]!, /^app: .*read-only mode \(storage\.maintenance\.readonly\)/);
      assert.deepEqual(await tags(registry, "app"), ["v0", "v1", "v2"]);
    } finally {
      await registry.stop();
      await upstream.stop();
    }
  });
});

describe("cache expiry and garbage collection obey read-only mode", () => {
  it("a read-only pull-through cache expires nothing (proxy.ttl) and fetches nothing", async () => {
    const upstream = await startReference(join(tempDir(), "upstream"));
    const image = imageManifest();
    await new Client(upstream.url).pushManifest("team/app", "v1", image);
    await new Client(upstream.url).pushManifest("team/other", "v1", imageManifest());
    const root = join(tempDir(), "data");
    const proxy = { remoteurl: upstream.url, revalidate: "0s" };
    const caching = await startRegistry({ root, config: { proxy } });
    const pulled = await new Client(caching.url).request("GET", "/v2/team/app/manifests/v1", {
      headers: { Accept: image.mediaType },
    });
    assert.equal(pulled.status, 200);
    await caching.stop();

    const cache = await startRegistry({
      root,
      config: { storage: READ_ONLY, proxy: { ...proxy, ttl: "1s" } },
    });
    try {
      // Expiry runs every second; the tag is older than the ttl, but read-only mode keeps it.
      await waitUntil(async () => /cache expiry failed/.test(cache.log()), 15_000);
      assert.match(cache.log(), /read-only mode/);
      const tag = join(root, "docker/registry/v2/repositories/team/app/_manifests/tags/v1/current/link");
      assert.ok(existsSync(tag), "the cached tag is kept");
      const client = new Client(cache.url);
      const served = await client.request("GET", "/v2/team/app/manifests/v1", {
        headers: { Accept: image.mediaType },
      });
      assert.equal(served.status, 200);
      // Not cached: fetching it would write.
      assert.equal((await client.request("GET", "/v2/team/other/manifests/v1")).status, 404);
      assert.equal(existsSync(join(root, "docker/registry/v2/repositories/team/other")), false);
    } finally {
      await cache.stop();
      await upstream.stop();
    }
  });

  it("online garbage collection is refused in read-only mode (a dry run is not)", async () => {
    const root = join(tempDir(), "data");
    const writable = await startRegistry({ root });
    const client = new Client(writable.url);
    const orphan = imageManifest();
    await client.pushBlob("app", orphan.blobs[0]!);
    await writable.stop();
    const registry = await startRegistry({ root, config: { storage: READ_ONLY } });
    try {
      const gc = (dryrun: boolean) =>
        new Client(registry.url).request("POST", `/v2/_oci/artifacts/delete?dryrun=${dryrun}&grace=0s`);
      const refused = await gc(false);
      assert.equal(refused.status, 405);
      const body = (await refused.json()) as { errors: { code: string; message: string }[] };
      assert.equal(body.errors[0]!.code, "UNSUPPORTED");
      assert.match(body.errors[0]!.message, /read-only/);
      const hex = orphan.blobs[0]!.digest.slice(7);
      assert.ok(existsSync(join(root, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data")));
      const dry = await gc(true);
      assert.equal(dry.status, 200);
      assert.deepEqual(((await dry.json()) as { blobsDeleted: string[] }).blobsDeleted, [
        orphan.blobs[0]!.digest,
      ]);
    } finally {
      await registry.stop();
    }
  });
});
