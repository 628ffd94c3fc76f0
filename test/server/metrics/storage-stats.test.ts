/**
 * The storage gauges on :5001/metrics count the whole store without walking it at scrape time:
 * walked once in the background at start, then kept current by the registry's own writes and
 * deletes (a worker's reach the primary, which serves the metrics). Checked against a walk of the
 * files made here, after pushes, re-pushes, deletes, garbage collection and a restart.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Client, blob, imageManifest, indexManifest, sha256 } from "../../helpers/oci.js";
import {
  metricValue,
  startRegistry,
  tempDir,
  waitUntil,
  type RegistryProcess,
} from "../../helpers/registry.js";
import { generateStore } from "../../../bench/scale/generate.js";
import { walkFigures as walk, type Figures } from "../../helpers/storage-walk.js";

const REPOSITORIES = 50;
const MANIFESTS_PER_REPOSITORY = 20;

/** Writes `repositories × manifests` distinct manifests (each its own blob) under `root`. */
function writeStore(root: string): void {
  const v2 = join(root, "docker/registry/v2");
  for (let r = 0; r < REPOSITORIES; r++) {
    for (let m = 0; m < MANIFESTS_PER_REPOSITORY; m++) {
      const bytes = JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [],
        annotations: { repository: String(r), n: String(m) },
      });
      const digest = sha256(bytes);
      const hex = digest.slice("sha256:".length);
      const blobDir = join(v2, "blobs/sha256", hex.slice(0, 2), hex);
      mkdirSync(blobDir, { recursive: true });
      writeFileSync(join(blobDir, "data"), bytes);
      const revision = join(v2, "repositories", `team${r}/app`, "_manifests/revisions/sha256", hex);
      mkdirSync(revision, { recursive: true });
      writeFileSync(join(revision, "link"), digest);
    }
  }
}

/** The figures the registry exports, once they are complete. */
async function exported(registry: RegistryProcess): Promise<Figures> {
  let text = "";
  await waitUntil(async () => {
    text = await (await fetch(`${registry.debugUrl}/metrics`)).text();
    return /^storage_stats_complete 1$/m.test(text);
  }, 60_000);
  return {
    repositories: metricValue(text, "repository_count"),
    manifests: metricValue(text, "manifest_count"),
    blobs: metricValue(text, "blob_count"),
    bytes: metricValue(text, "storage_bytes"),
  };
}

/** Pushes, re-pushes, deletes and collects, checking the gauges against a walk after each. */
async function exercise(registry: RegistryProcess, root: string): Promise<void> {
  const client = new Client(registry.url);
  assert.deepEqual(await exported(registry), walk(root), "after start");

  const images = Array.from({ length: 6 }, () => imageManifest({ layers: 2 }));
  await Promise.all(images.map((m, i) => client.pushManifest(`fresh/app${i % 2}`, `v${i}`, m)));
  const index = indexManifest([images[0]!, images[2]!]);
  assert.equal((await client.pushManifest("fresh/app0", "multi", index, false)).status, 201);
  // The same blobs and manifest again, at once and later: nothing new to count.
  await Promise.all([0, 1, 2].map(() => client.pushManifest("fresh/app0", "v0", images[0]!)));
  await client.pushManifest("fresh/app0", "v0-again", images[0]!);
  // One chunked upload, one monolithic upload of content already stored.
  const chunked = blob(Buffer.alloc(7000, 3));
  const location = await client.startUpload("fresh/chunked");
  const patch = await client.request("PATCH", location, { body: chunked.data });
  assert.equal(
    (await client.request("PUT", `${patch.headers.get("Location")}?digest=${chunked.digest}`)).status,
    201,
  );
  await client.pushBlob("fresh/other", images[1]!.blobs[0]!);
  // The same image in a second repository: one more revision, no new blob.
  await client.pushManifest("fresh/copy", "v0", images[0]!);
  assert.deepEqual(await exported(registry), walk(root), "after pushes");

  assert.equal((await client.request("DELETE", `/v2/fresh/app1/manifests/${images[1]!.digest}`)).status, 202);
  assert.equal((await client.request("DELETE", `/v2/fresh/app1/manifests/${images[1]!.digest}`)).status, 404);
  assert.deepEqual(await exported(registry), walk(root), "after deletes");

  const gc = await client.request("POST", "/v2/_oci/artifacts/delete?untagged=true&grace=0s");
  assert.equal(gc.status, 200, await gc.clone().text());
  const report = (await gc.json()) as { blobsDeleted: string[]; manifestsDeleted: string[] };
  assert.ok(report.blobsDeleted.length > 0, "the collection deleted blobs");
  assert.deepEqual(await exported(registry), walk(root), "after garbage collection");
}

describe("storage gauges", () => {
  it("count every manifest of every repository (50 repositories × 20 manifests)", async () => {
    const root = join(tempDir(), "data");
    writeStore(root);
    const registry = await startRegistry({ root });
    try {
      const figures = await exported(registry);
      assert.equal(figures.repositories, REPOSITORIES);
      assert.equal(figures.blobs, REPOSITORIES * MANIFESTS_PER_REPOSITORY);
      assert.equal(figures.manifests, REPOSITORIES * MANIFESTS_PER_REPOSITORY);
      assert.deepEqual(figures, walk(root));
    } finally {
      await registry.stop();
    }
  });

  it("equal a fresh walk after pushes, deletes, garbage collection and a restart on the store", async () => {
    const root = join(tempDir(), "data");
    await generateStore(root, 0.01);
    let registry = await startRegistry({ root });
    try {
      await exercise(registry, root);
    } finally {
      await registry.stop();
    }
    registry = await startRegistry({ root });
    try {
      assert.deepEqual(await exported(registry), walk(root), "after a restart");
      await exercise(registry, root);
    } finally {
      await registry.stop();
    }
  });

  it("with two workers, count what the workers write (the primary serves the metrics)", async () => {
    const root = join(tempDir(), "data");
    await generateStore(root, 0.01);
    const registry = await startRegistry({ root, workers: 2 });
    try {
      const client = new Client(registry.url);
      assert.deepEqual(await exported(registry), walk(root));
      const images = Array.from({ length: 8 }, () => imageManifest({ layers: 2 }));
      // Many connections, so both workers take some.
      await Promise.all(images.map((m, i) => client.pushManifest(`workers/app${i}`, "v1", m)));
      await client.request("DELETE", `/v2/workers/app0/manifests/${images[0]!.digest}`);
      // The changes travel to the primary: wait for them, then compare.
      const expected = walk(root);
      await waitUntil(
        async () => JSON.stringify(await exported(registry)) === JSON.stringify(expected),
        30_000,
      ).catch(() => undefined);
      assert.deepEqual(await exported(registry), expected);
    } finally {
      await registry.stop();
    }
  });

  it("a scrape never walks the store: content written behind the registry's back is not counted", async () => {
    const root = join(tempDir(), "data");
    writeStore(root);
    const registry = await startRegistry({ root });
    try {
      // The walk at start is over (it says so in the log) before anything is scraped.
      await waitUntil(async () => registry.log().includes('"msg":"storage walked"'), 60_000);
      const expected = walk(root);
      // A blob and a repository made on disk, not through the registry: only a walk finds them.
      const data = Buffer.from("written behind the registry's back");
      const hex = sha256(data).slice("sha256:".length);
      const dir = join(root, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "data"), data);
      mkdirSync(join(root, "docker/registry/v2/repositories/behind/_manifests/revisions/sha256", hex), {
        recursive: true,
      });
      for (let i = 0; i < 5; i++) assert.deepEqual(await exported(registry), expected, `scrape ${i}`);
      assert.deepEqual(walk(root), {
        blobs: expected.blobs + 1,
        bytes: expected.bytes + data.length,
        repositories: expected.repositories + 1,
        manifests: expected.manifests + 1,
      });
    } finally {
      await registry.stop();
    }
  });
});
