import assert from "node:assert/strict";
import { it } from "node:test";
import { HealthCheck } from "../../../server/src/http/health.js";
import type { StorageDriver } from "../../../server/src/storage/driver.js";
import { FilesystemDriver } from "../../../server/src/storage/filesystem.js";
import { tempDir } from "../../helpers/registry.js";

/** A real driver whose stat can be made to fail, standing in for a storage outage. */
function flakyDriver() {
  const real = new FilesystemDriver(tempDir());
  const state = { failing: false };
  const driver: StorageDriver = Object.assign(Object.create(real) as StorageDriver, {
    stat: (path: string) => (state.failing ? Promise.reject(new Error("EIO: i/o error")) : real.stat(path)),
  });
  return { driver, state };
}

it("health turns unhealthy only after `threshold` consecutive failed probes, and recovers", async () => {
  const { driver, state } = flakyDriver();
  const health = new HealthCheck(driver, { enabled: true, intervalMs: 0, threshold: 2 });
  assert.equal(await health.check(), undefined);
  state.failing = true;
  assert.equal(await health.check(), undefined, "one failure is not enough");
  assert.match((await health.check()) ?? "", /EIO/);
  state.failing = false;
  assert.equal(await health.check(), undefined);
});

it("health with the storage check disabled always passes", async () => {
  const { driver, state } = flakyDriver();
  state.failing = true;
  const health = new HealthCheck(driver, { enabled: false, intervalMs: 0, threshold: 1 });
  assert.equal(await health.check(), undefined);
});
