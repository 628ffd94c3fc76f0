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
