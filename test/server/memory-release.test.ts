import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { it, mock } from "node:test";
import { MemoryReleaser } from "../../server/src/memory-release.js";
import { native } from "../../server/src/native.js";

const MiB = 1024 * 1024;

it("memory is released once, a second after a burst of large transfers, never after small ones", () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    let releases = 0;
    const releaser = new MemoryReleaser(() => releases++);
    for (let i = 0; i < 50; i++) releaser.transferred(1 * MiB);
    mock.timers.tick(5000);
    assert.equal(releases, 0, "50 MiB of small uploads");
    releaser.transferred(20 * MiB);
    mock.timers.tick(500);
    releaser.transferred(2048 * MiB);
    mock.timers.tick(999);
    assert.equal(releases, 0, "still busy");
    mock.timers.tick(1);
    assert.equal(releases, 1);
    releaser.transferred(10 * MiB);
    mock.timers.tick(5000);
    assert.equal(releases, 1, "the count starts again after a release");
  } finally {
    mock.timers.reset();
  }
});

it("the native addon loads wherever it was built, and its release runs", () => {
  // `npm run build` builds it where a compiler exists (here, and in CI and the image): when the
  // file is there, it must load (a broken path or build is a failure, CI or not).
  const built = existsSync(new URL("../../../server/native/build/Release/neam_native.node", import.meta.url));
  if (process.env.CI) assert.ok(built, "CI builds the native addon");
  assert.equal(native !== undefined, built && process.env.NEAM_REGISTRY_NATIVE !== "0");
  native?.trimMemory();
});
