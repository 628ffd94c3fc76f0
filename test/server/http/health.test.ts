/**
 * `/debug/health` and `health.storagedriver` on a real server whose storage really fails. The
 * server runs as an unprivileged user (uid 65534, via setpriv) so that `chmod 000` on its storage
 * root denies it for real: the tests run as root, for whom permission bits deny nothing.
 */
import assert from "node:assert/strict";
import { chmodSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { describe, it } from "node:test";
import { startRegistry, type RegistryProcess } from "../../helpers/registry.js";
import { Client, imageManifest } from "../../helpers/oci.js";

const NOBODY = 65534;

interface Sample {
  readonly at: number;
  readonly status: number;
  readonly body: string;
}

async function health(registry: RegistryProcess): Promise<Sample> {
  const response = await fetch(`${registry.debugUrl}/debug/health`);
  return { at: Date.now(), status: response.status, body: await response.text() };
}

/** Polls health every 100 ms until `done` holds for a sample (or the timeout), returning that sample. */
async function pollUntil(
  registry: RegistryProcess,
  done: (s: Sample) => boolean,
  timeoutMs = 20_000,
): Promise<{ match: Sample; seen: Sample[] }> {
  const seen: Sample[] = [];
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const sample = await health(registry);
    seen.push(sample);
    if (done(sample)) return { match: sample, seen };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`health never matched: ${JSON.stringify(seen.slice(-3))}`);
}

async function withRegistry(
  storagedriver: Record<string, unknown>,
  body: (registry: RegistryProcess) => Promise<void>,
) {
  const registry = await startRegistry({ user: NOBODY, config: { health: { storagedriver } } });
  try {
    // Something stored, so the layout below the root exists and is probed.
    const pushed = await new Client(registry.url).pushManifest("health/app", "v1", imageManifest());
    assert.equal(pushed.status, 201);
    await body(registry);
  } finally {
    try {
      chmodSync(registry.root, 0o755);
    } catch {
      /* the test moved it away */
    }
    await registry.stop();
  }
}

describe("health.storagedriver on a real server", () => {
  it("an unreadable root turns health 503 only after `threshold` probes spaced by `interval`, and it recovers", async () => {
    const intervalMs = 1000;
    const threshold = 3;
    await withRegistry({ interval: "1s", threshold }, async (registry) => {
      const before = await health(registry);
      assert.deepEqual([before.status, before.body], [200, "{}"]);
      chmodSync(registry.root, 0o000);
      const brokenAt = Date.now();
      const { match, seen } = await pollUntil(registry, (s) => s.status !== 200);
      assert.equal(match.status, 503, match.body);
      assert.match(JSON.parse(match.body).storagedriver_filesystem, /EACCES|permission denied/);
      // Probes at least `interval` apart, `threshold` failures in a row: never sooner than this.
      const elapsed = match.at - brokenAt;
      assert.ok(elapsed >= (threshold - 1) * intervalMs - 50, `503 after ${elapsed} ms`);
      assert.ok(seen.filter((s) => s.status === 200).length >= 5, "answers in between stay 200");
      chmodSync(registry.root, 0o755);
      const recovered = await pollUntil(registry, (s) => s.status === 200);
      assert.equal(recovered.match.body, "{}");
      // One good probe recovers, at most one interval (plus scheduling) after the repair.
      assert.ok(recovered.seen.every((s) => s.status === 503 || s.status === 200));
    });
  });

  it("threshold 1 with a long interval: the failure shows at the next probe, not before", async () => {
    await withRegistry({ interval: "3s", threshold: 1 }, async (registry) => {
      // Past the interval since start-up's probes, so this request probes; the next is 3 s later.
      await new Promise((r) => setTimeout(r, 3100));
      const start = await health(registry);
      assert.equal(start.status, 200);
      chmodSync(registry.root, 0o000);
      const { match } = await pollUntil(registry, (s) => s.status === 503);
      assert.ok(match.at - start.at >= 2900, `503 after ${match.at - start.at} ms`);
    });
  });

  it("with the storage check disabled, an unreadable root stays 200", async () => {
    await withRegistry({ enabled: false, interval: "1s", threshold: 1 }, async (registry) => {
      chmodSync(registry.root, 0o000);
      await new Promise((r) => setTimeout(r, 2500));
      const sample = await health(registry);
      assert.equal(sample.status, 200);
      assert.equal(sample.body, "{}");
    });
  });

  it("a storage root that vanished or became a file is unhealthy, not an empty registry", async () => {
    await withRegistry({ interval: "1s", threshold: 1 }, async (registry) => {
      const moved = `${registry.root}.moved`;
      renameSync(registry.root, moved);
      const missing = await pollUntil(registry, (s) => s.status !== 200, 10_000);
      assert.equal(missing.match.status, 503);
      assert.match(missing.match.body, /storage root is missing or not a directory/);
      renameSync(moved, registry.root);
      assert.equal((await pollUntil(registry, (s) => s.status === 200, 10_000)).match.body, "{}");
      renameSync(registry.root, moved);
      writeFileSync(registry.root, "not a directory");
      const file = await pollUntil(registry, (s) => s.status !== 200, 10_000);
      assert.equal(file.match.status, 503);
      assert.match(file.match.body, /storage root is missing or not a directory/);
      rmSync(registry.root);
      renameSync(moved, registry.root);
      assert.equal((await pollUntil(registry, (s) => s.status === 200, 10_000)).match.body, "{}");
    });
  });
});
