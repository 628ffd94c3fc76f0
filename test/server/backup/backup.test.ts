/**
 * Backup and restore: a backup taken while pushes go on restores into a registry where every tag
 * resolves to intact content; a bad archive changes nothing; the guide's own tar restores too.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import http from "node:http";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { blob, Client, imageManifest, sha256, type Manifest } from "../../helpers/oci.js";
import { writeOciLayout } from "../../helpers/oci-layout.js";
import { startRegistry, tempDir, type RegistryProcess } from "../../helpers/registry.js";
import { skopeo } from "../../helpers/tools.js";

const run = promisify(execFile);
const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;
const ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

/** Every tag of every repository resolves, and everything it references is there and intact. */
async function assertEveryTagIntact(client: Client): Promise<number> {
  let checked = 0;
  const { repositories } = (await (await client.request("GET", "/v2/_catalog")).json()) as {
    repositories: string[];
  };
  for (const repo of repositories) {
    const { tags } = (await (await client.request("GET", `/v2/${repo}/tags/list`)).json()) as {
      tags: string[];
    };
    for (const tag of tags ?? []) {
      const pending = [tag];
      while (pending.length > 0) {
        const reference = pending.pop()!;
        const response = await client.request("GET", `/v2/${repo}/manifests/${reference}`, {
          headers: { Accept: ACCEPT },
        });
        assert.equal(response.status, 200, `${repo}:${reference}`);
        const body = JSON.parse(Buffer.from(await response.arrayBuffer()).toString()) as {
          manifests?: { digest: string }[];
          config?: { digest: string };
          layers?: { digest: string }[];
        };
        pending.push(...(body.manifests ?? []).map((m) => m.digest));
        for (const digest of [body.config?.digest, ...(body.layers ?? []).map((l) => l.digest)]) {
          if (digest === undefined) continue;
          const blob = await client.request("GET", `/v2/${repo}/blobs/${digest}`);
          assert.equal(blob.status, 200, `${repo} blob ${digest}`);
          assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), digest);
        }
      }
      checked++;
    }
  }
  return checked;
}

function configFor(root: string): string {
  const path = join(tempDir(), "config.yml");
  writeFileSync(path, stringify({ version: "0.1", storage: { filesystem: { rootdirectory: root } } }));
  return path;
}

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [MAIN, ...args]).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
}

describe("backup and restore", () => {
  it("a backup taken during pushes restores into a registry where every tag is intact", async (t) => {
    const source = await startRegistry();
    let restored: RegistryProcess | undefined;
    try {
      const client = new Client(source.url);
      const layout = join(tempDir(), "layout");
      writeOciLayout(layout, "v1", "backup");
      skopeo(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        `oci:${layout}:v1`,
        `docker://${source.host}/apps/multi:v1`,
      );
      const before: Manifest[] = [];
      for (let i = 0; i < 10; i++) {
        const m = imageManifest({ layers: 2 });
        assert.equal((await client.pushManifest(`apps/app${i % 3}`, `v${i}`, m)).status, 201);
        before.push(m);
      }
      // A large incompressible blob makes the archive take a while to stream, so that pushes
      // overlap it; the test checks below that they did.
      const bigBlob = blob(randomBytes(24 * 1024 * 1024));
      assert.equal((await client.pushBlob("apps/big", bigBlob)).status, 201);
      // Pushes go on while the backup is read: each records when it was sent and acknowledged.
      const live: { tag: string; digest: string; sent: number; acknowledged: number }[] = [];
      let stopAfter = Infinity; // stop once a push was sent after this instant (the backup's end)
      const pusher = (async () => {
        for (let i = 0; ; i++) {
          const sent = Date.now();
          if (sent > stopAfter && live.some((push) => push.sent > stopAfter)) return;
          const m = imageManifest({ layers: 3 });
          assert.equal((await client.pushManifest("apps/live", `t${i}`, m)).status, 201);
          live.push({ tag: `t${i}`, digest: m.digest, sent, acknowledged: Date.now() });
        }
      })();
      const pusherFailed = pusher.then(() => undefined);
      while (live.length === 0) await Promise.race([new Promise((r) => setTimeout(r, 10)), pusherFailed]);
      const archive = join(tempDir(), "backup.tar.gz");
      const backup = await cli("backup", "--url", source.url, "--output", archive);
      assert.equal(backup.code, 0, backup.stderr);
      assert.match(backup.stdout, /^backup: \d+ bytes written to /);
      // The server's own record of when the backup started (before it listed anything) and ended.
      const status = (await (await client.request("GET", "/v2/_neam/status")).json()) as {
        backup: { startedAt: string; finishedAt: string; success: boolean };
      };
      assert.equal(status.backup.success, true);
      const startedAt = Date.parse(status.backup.startedAt);
      const finishedAt = Date.parse(status.backup.finishedAt);
      stopAfter = finishedAt;
      await pusher;
      const during = live.filter((push) => push.sent > startedAt && push.acknowledged < finishedAt);
      assert.ok(during.length > 0, `no push ran wholly within the backup (${startedAt}..${finishedAt})`);
      t.diagnostic(`${live.length} live pushes, ${during.length} wholly within the backup`);
      assert.ok(
        live.some((push) => push.acknowledged < startedAt),
        "pushes before the backup",
      );
      assert.ok(
        live.some((push) => push.sent > finishedAt),
        "pushes after the backup",
      );

      const root = join(tempDir(), "restored");
      const restore = await cli("restore", "--input", archive, "--config", configFor(root));
      assert.equal(restore.code, 0, restore.stderr);
      assert.match(
        restore.stdout,
        /^restore: \d+ files, \d+ blobs \(\d+ bytes\) verified and restored into /,
      );

      restored = await startRegistry({ root });
      const restoredClient = new Client(restored.url);
      // What the backup captured: every live tag acknowledged before it started, with the very
      // manifest pushed; none sent after it ended; and the ones in between only whole.
      const listed = await restoredClient.request("GET", "/v2/apps/live/tags/list");
      assert.equal(listed.status, 200, "apps/live restored");
      const restoredLive = ((await listed.json()) as { tags: string[] }).tags;
      for (const push of live) {
        const captured = restoredLive.includes(push.tag);
        if (push.acknowledged < startedAt) assert.ok(captured, `${push.tag}, acknowledged before the backup`);
        if (push.sent > finishedAt) assert.ok(!captured, `${push.tag}, sent after the backup`);
        if (!captured) continue;
        const got = await restoredClient.request("GET", `/v2/apps/live/manifests/${push.tag}`, {
          headers: { Accept: ACCEPT },
        });
        assert.equal(sha256(Buffer.from(await got.arrayBuffer())), push.digest, push.tag);
      }
      // apps/multi:v1, the ten tags pushed before, and the live tags captured: nothing else.
      assert.equal(await assertEveryTagIntact(restoredClient), 1 + before.length + restoredLive.length);
      const big = await restoredClient.request("HEAD", `/v2/apps/big/blobs/${bigBlob.digest}`);
      assert.equal(big.status, 200);
      for (const [i, m] of before.entries()) {
        const got = await restoredClient.request("GET", `/v2/apps/app${i % 3}/manifests/v${i}`, {
          headers: { Accept: m.mediaType },
        });
        assert.equal(sha256(Buffer.from(await got.arrayBuffer())), m.digest);
      }
      // Nothing dangles: a collection of everything untagged keeps every tag intact.
      const gc = await restoredClient.request("POST", "/v2/_oci/artifacts/delete?untagged=true&grace=0s");
      assert.equal(gc.status, 200);
      await assertEveryTagIntact(restoredClient);

      const metrics = await (await fetch(`${source.debugUrl}/metrics`)).text();
      assert.match(metrics, /registry_task_last_run_success\{task="backup"\} 1/);
    } finally {
      await restored?.stop();
      await source.stop();
    }
  });

  it("refuses to overwrite a registry without --force, and a corrupted archive changes nothing", async () => {
    const source = await startRegistry();
    const client = new Client(source.url);
    const image = imageManifest();
    await client.pushManifest("keep/me", "v1", image);
    const archive = join(tempDir(), "backup.tar.gz");
    assert.equal((await cli("backup", "--url", source.url, "--output", archive)).code, 0);
    await source.stop();

    const refused = await cli("restore", "--input", archive, "--config", configFor(source.root));
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /^neam-registry: .* already holds a registry; stop it and pass --force to replace it\n$/,
    );

    // A blob whose bytes do not match its digest: unpack, damage, repack.
    const work = tempDir();
    spawnSync("tar", ["-xzf", archive, "-C", work]);
    const hex = image.blobs[1]!.digest.slice(7);
    writeFileSync(join(work, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data"), "tampered");
    const damaged = join(tempDir(), "damaged.tar.gz");
    spawnSync("tar", ["-czf", damaged, "-C", work, "docker"]);
    const rejected = await cli("restore", "--input", damaged, "--config", configFor(source.root), "--force");
    assert.equal(rejected.code, 1);
    assert.match(rejected.stderr, new RegExp(`blob sha256:${hex} in the archive does not match its digest`));
    // An entry that would land outside the root stops the restore (GNU tar -P keeps the "..").
    const outside = join(tempDir(), "outside.tar.gz");
    writeFileSync(join(work, "f"), "escape");
    spawnSync("tar", ["-czPf", outside, "--transform", "s,^,docker/registry/v2/../../,", "-C", work, "f"]);
    const escaped = await cli("restore", "--input", outside, "--config", configFor(source.root), "--force");
    assert.equal(escaped.code, 1);
    assert.match(escaped.stderr, /cannot be restored: .*path contains '\.\.'/);
    const notAnArchive = join(tempDir(), "x.tar.gz");
    writeFileSync(notAnArchive, "not a tar");
    assert.equal(
      (await cli("restore", "--input", notAnArchive, "--config", configFor(join(tempDir(), "r")))).code,
      1,
    );

    const after = await startRegistry({ root: source.root });
    try {
      const got = await new Client(after.url).request("GET", `/v2/keep/me/blobs/${image.blobs[1]!.digest}`);
      assert.equal(
        sha256(Buffer.from(await got.arrayBuffer())),
        image.blobs[1]!.digest,
        "the old data is untouched",
      );
    } finally {
      await after.stop();
    }
    assert.equal(
      (await cli("restore", "--input", archive, "--config", configFor(source.root), "--force")).code,
      0,
    );
  });

  it(
    "a sync runs while a backup is being read; a collection waits for the backup to end",
    { timeout: 60_000 },
    async () => {
      const registry = await startRegistry();
      try {
        const client = new Client(registry.url);
        // Big and incompressible, so an unread archive cannot fit in the socket buffers.
        const big = imageManifest({ layers: 1 });
        const layer = blob(randomBytes(24 * 1024 * 1024));
        const body = JSON.parse(big.bytes.toString()) as { layers: { digest: string; size: number }[] };
        body.layers[0] = { ...body.layers[0]!, digest: layer.digest, size: layer.size };
        await client.pushBlob("hold/app", big.blobs[0]!);
        await client.pushBlob("hold/app", layer);
        const put = await client.request("PUT", "/v2/hold/app/manifests/v1", {
          body: JSON.stringify(body),
          headers: { "Content-Type": big.mediaType },
        });
        assert.equal(put.status, 201);

        // A reader that stops reading holds the backup task.
        const held = await new Promise<http.IncomingMessage>((resolve) =>
          http.get(`${registry.url}/v2/_neam/backup`, (response) => {
            response.pause();
            resolve(response);
          }),
        );
        let collected = false;
        const gc = client.request("POST", "/v2/_oci/artifacts/delete?grace=0s").then((r) => {
          collected = true;
          return r.status;
        });
        const sync = await client.request("POST", "/v2/_neam/sync", {
          body: "sync:\n  images:\n    - source: 127.0.0.1:9/nothing/here:1\n      target: local/here:1\n",
        });
        assert.equal(sync.status, 200, "a sync is not queued behind the backup");
        assert.equal(((await sync.json()) as { failed: number }).failed, 1);
        assert.equal(collected, false, "the collection waits for the backup");
        held.resume();
        await new Promise((resolve) => held.on("end", resolve));
        assert.equal(await gc, 200);
      } finally {
        await registry.stop();
      }
    },
  );

  it("restores the operations guide's backup (tar -czf … /var/lib/registry)", async () => {
    const source = await startRegistry();
    const image = imageManifest({ layers: 2 });
    await new Client(source.url).pushManifest("guide/app", "v1", image);
    await source.stop();
    const archive = join(tempDir(), "registry-data.tar.gz");
    const tarred = spawnSync("tar", ["-czf", archive, source.root], { encoding: "utf8" });
    assert.equal(tarred.status, 0, tarred.stderr);
    const root = join(tempDir(), "restored");
    mkdirSync(root);
    const restore = await cli("restore", "--input", archive, "--config", configFor(root));
    assert.equal(restore.code, 0, restore.stderr);
    const restored = await startRegistry({ root });
    try {
      assert.equal(await assertEveryTagIntact(new Client(restored.url)), 1);
    } finally {
      await restored.stop();
    }
  });
});
