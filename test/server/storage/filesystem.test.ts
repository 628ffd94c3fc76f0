import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { it } from "node:test";
import { FilesystemDriver } from "../../../server/src/storage/filesystem.js";
import { tempDir } from "../../helpers/registry.js";
import { runDriverSuite } from "./driver-suite.js";

runDriverSuite("filesystem", async () => {
  const driver = new FilesystemDriver(tempDir());
  await driver.init();
  return driver;
});

// Without the native addon (no compiler, or NEAM_REGISTRY_NATIVE=0) small files go through Node's fs.
runDriverSuite("filesystem without the native addon", async () => {
  const driver = new FilesystemDriver(tempDir(), { nativeWrites: false });
  await driver.init();
  return driver;
});

it("filesystem: the native addon writes small files wherever it is built (CI builds it)", () => {
  const driver = new FilesystemDriver(tempDir());
  if (process.env.CI) assert.equal(driver.nativeWrites, true);
  assert.equal(new FilesystemDriver(tempDir(), { nativeWrites: false }).nativeWrites, false);
});

for (const nativeWrites of [true, false]) {
  it(`filesystem${nativeWrites ? "" : " without the addon"}: failed and contended writes leave no temporary behind`, async () => {
    const root = tempDir();
    const driver = new FilesystemDriver(root, { nativeWrites });
    await driver.init();
    await Promise.all(Array.from({ length: 16 }, (_, i) => driver.putContent(`/t/same/${i}`, String(i))));
    await driver.putContent("/t/file", "x");
    await assert.rejects(driver.putContent("/t/file/child", "y"));
    await assert.rejects(driver.putContent("/t/file/new/child", "y"));
    await driver.putContent("/t/dir/a", "a");
    await assert.rejects(driver.putContent("/t/dir", "y"));
    for (const bucket of readdirSync(join(root, ".neam-tmp"))) {
      assert.deepEqual(readdirSync(join(root, ".neam-tmp", bucket)), [], bucket);
    }
  });
}

it("filesystem: files land under the root at their logical path; temporaries are cleared at start", async () => {
  const root = tempDir();
  const driver = new FilesystemDriver(root);
  await driver.init();
  await driver.putContent("/docker/registry/v2/x/link", "sha256:abc");
  assert.deepEqual(readdirSync(join(root, "docker/registry/v2/x")), ["link"]);
  const buckets = readdirSync(join(root, ".neam-tmp"));
  assert.ok(buckets.length > 0);
  for (const bucket of buckets) assert.deepEqual(readdirSync(join(root, ".neam-tmp", bucket)), []);
});
