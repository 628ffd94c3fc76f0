import assert from "node:assert/strict";
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

it("the native addon's release runs (where the addon is built; CI builds it)", () => {
  if (process.env.CI) assert.ok(native !== undefined);
  native?.trimMemory();
});
