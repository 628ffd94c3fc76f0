/**
 * What a collection leaves in the manifest caches of the process that runs it (issue 12): the
 * manifests it deletes are read once by the pass and must not be loaded into the manifest cache,
 * nor leave metadata entries behind. Observed in-process, on a generated registry:2 store.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "../../../server/src/registry/registry.js";
import { FilesystemDriver } from "../../../server/src/storage/filesystem.js";
import { generateStore } from "../../../bench/scale/generate.js";
import { tempDir } from "../../helpers/registry.js";

describe("the collector's deletions and the manifest caches", () => {
  it("deleting untagged manifests caches none of them and leaves no metadata entry", async () => {
    const root = tempDir();
    const store = await generateStore(root, 0.01);
    const driver = new FilesystemDriver(root);
    await driver.init();
    const registry = new Registry(driver, { deleteEnabled: true, maxManifestBytes: 4 * 1024 * 1024 });
    const empty = { manifests: 0, manifestBytes: 0, metadataEntries: 0 };
    assert.deepEqual(registry.manifests.cacheSize(), empty);

    const report = await registry.collectGarbage({ deleteUntagged: true, dryRun: false, gracePeriodMs: 0 });
    assert.equal(report.manifestsDeleted.length, store.untaggedManifests);
    assert.ok(store.untaggedManifests >= 100);
    assert.deepEqual(registry.manifests.cacheSize(), empty);
  });
});
