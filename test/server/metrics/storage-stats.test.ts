/**
 * The storage gauges on :5001/metrics count the whole store: a store of many repositories, laid
 * out on disk directly as the reference registry would leave it, is counted in full.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { sha256 } from "../../helpers/oci.js";
import { startRegistry, tempDir } from "../../helpers/registry.js";

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

describe("storage gauges", () => {
  it("count every manifest of every repository (50 repositories × 20 manifests)", async () => {
    const root = join(tempDir(), "data");
    writeStore(root);
    const registry = await startRegistry({ root });
    try {
      const text = await (await fetch(`${registry.debugUrl}/metrics`)).text();
      const value = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1]);
      assert.equal(value("repository_count"), REPOSITORIES);
      assert.equal(value("blob_count"), REPOSITORIES * MANIFESTS_PER_REPOSITORY);
      assert.equal(value("manifest_count"), REPOSITORIES * MANIFESTS_PER_REPOSITORY);
    } finally {
      await registry.stop();
    }
  });
});
