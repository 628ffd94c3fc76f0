import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { purgeUploads } from "../../../server/src/registry/upload-purge.js";
import { layout } from "../../../server/src/storage/layout.js";
import { FilesystemDriver } from "../../../server/src/storage/filesystem.js";
import { tempDir } from "../../helpers/registry.js";

describe("upload purging (storage.maintenance.uploadpurging)", () => {
  async function fixture() {
    const driver = new FilesystemDriver(tempDir());
    await driver.init();
    const session = async (name: string, id: string, startedAt: string | undefined) => {
      if (startedAt !== undefined) await driver.putContent(layout.uploadStartedAt(name, id), startedAt);
      await driver.putContent(layout.uploadData(name, id), "partial");
    };
    await session("a/app", "00000000-0000-4000-8000-000000000001", "2020-01-01T00:00:00Z");
    await session("a/app", "00000000-0000-4000-8000-000000000002", new Date().toISOString());
    await session("b", "00000000-0000-4000-8000-000000000003", undefined);
    return driver;
  }

  it("removes sessions started before the cut-off and those without a start time; keeps recent ones", async () => {
    const driver = await fixture();
    const { purged } = await purgeUploads(driver, new Date(Date.now() - 3600_000));
    assert.deepEqual(purged.sort(), [
      "a/app/00000000-0000-4000-8000-000000000001",
      "b/00000000-0000-4000-8000-000000000003",
    ]);
    assert.deepEqual(await driver.list("/docker/registry/v2/repositories/a/app/_uploads"), [
      "00000000-0000-4000-8000-000000000002",
    ]);
  });

  it("a dry run reports without removing", async () => {
    const driver = await fixture();
    const { purged } = await purgeUploads(driver, new Date(Date.now() - 3600_000), true);
    assert.equal(purged.length, 2);
    assert.equal((await driver.list("/docker/registry/v2/repositories/a/app/_uploads")).length, 2);
  });
});
