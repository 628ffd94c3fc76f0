import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import {
  assertServed,
  basicAuth,
  blob,
  Client,
  errorCode,
  imageManifest,
  indexManifest,
  sha256,
  type Blob,
  type Manifest,
} from "../../helpers/oci.js";
import { startRegistry, tempDir, type RegistryProcess } from "../../helpers/registry.js";
import { generateStore } from "../../../bench/scale/generate.js";

const run = promisify(execFile);
const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;

interface Report {
  manifestsDeleted: string[];
  blobsDeleted: string[];
  bytesFreed: number;
  blobsSpared: number;
  blobsKept: number;
  dryRun: boolean;
}

function blobPath(root: string, digest: string): string {
  const hex = digest.slice("sha256:".length);
  return join(root, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
}

/** Makes stored content look `hours` old, as if pushed before the grace period. */
function age(root: string, repo: string, digests: string[], hours = 2): void {
  const when = new Date(Date.now() - hours * 3600_000);
  for (const digest of digests) {
    const hex = digest.slice("sha256:".length);
    for (const path of [
      blobPath(root, digest),
      join(root, "docker/registry/v2/repositories", repo, "_layers/sha256", hex, "link"),
      join(root, "docker/registry/v2/repositories", repo, "_manifests/revisions/sha256", hex, "link"),
    ]) {
      if (existsSync(path)) utimesSync(path, when, when);
    }
  }
}

async function collect(client: Client, query = "grace=0s", headers: Record<string, string> = {}) {
  const response = await client.request("POST", `/v2/_oci/artifacts/delete?${query}`, { headers });
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()) as Report;
}

describe("garbage collection (POST /v2/_oci/artifacts/delete, the operations guide's trigger)", () => {
  let registry: RegistryProcess;
  let client: Client;
  before(async () => {
    registry = await startRegistry();
    client = new Client(registry.url);
  });
  after(() => registry.stop());

  it("deletes blobs no manifest references, keeps every blob of every manifest, and frees their bytes", async () => {
    const kept = imageManifest({ layers: 2 });
    assert.equal((await client.pushManifest("gc/kept", "v1", kept)).status, 201);
    const dropped = imageManifest({ layers: 2 });
    assert.equal((await client.pushManifest("gc/dropped", "v1", dropped)).status, 201);
    assert.equal((await client.request("DELETE", `/v2/gc/dropped/manifests/${dropped.digest}`)).status, 202);
    const orphan = blob();
    await client.pushBlob("gc/kept", orphan);

    const report = await collect(client);
    const expected = [dropped.digest, ...dropped.blobs.map((b) => b.digest), orphan.digest].sort();
    assert.deepEqual([...report.blobsDeleted].sort(), expected);
    assert.equal(
      report.bytesFreed,
      dropped.bytes.length + dropped.blobs.reduce((n, b) => n + b.size, 0) + orphan.size,
    );
    for (const digest of expected) assert.equal(existsSync(blobPath(registry.root, digest)), false);
    const gone = await client.request("GET", `/v2/gc/kept/blobs/${orphan.digest}`);
    assert.equal(gone.status, 404);
    assert.equal(await errorCode(gone), "BLOB_UNKNOWN");
    await assertServed(client, "gc/kept", "v1", kept);

    // A second run finds nothing more to do.
    const again = await collect(client);
    assert.deepEqual(again.blobsDeleted, []);
  });

  it("keeps a blob uploaded to one repository and used by a manifest of another", async () => {
    const m = imageManifest();
    for (const b of m.blobs) await client.pushBlob("gc/uploader", b);
    for (const b of m.blobs) {
      const mount = await client.request(
        "POST",
        `/v2/gc/user/blobs/uploads/?mount=${b.digest}&from=gc/uploader`,
      );
      assert.equal(mount.status, 201);
    }
    assert.equal((await client.pushManifest("gc/user", "v1", m, false)).status, 201);
    const report = await collect(client);
    for (const b of m.blobs) assert.ok(!report.blobsDeleted.includes(b.digest));
    await assertServed(client, "gc/user", "v1", m);
  });

  it("keeps untagged manifests by default; with untagged=true deletes them unless a tag reaches them", async () => {
    const repo = "gc/untagged";
    const old = imageManifest();
    const current = imageManifest();
    const platforms = [imageManifest(), imageManifest()];
    const index = indexManifest(platforms);
    const signature = imageManifest({
      artifactType: "application/vnd.example.signature",
      subject: { digest: current.digest, size: current.bytes.length, mediaType: current.mediaType },
    });
    const oldSignature = imageManifest({
      artifactType: "application/vnd.example.signature",
      subject: { digest: old.digest, size: old.bytes.length, mediaType: old.mediaType },
    });
    assert.equal((await client.pushManifest(repo, "latest", old)).status, 201);
    assert.equal((await client.pushManifest(repo, oldSignature.digest, oldSignature)).status, 201);
    assert.equal((await client.pushManifest(repo, "latest", current)).status, 201);
    assert.equal((await client.pushManifest(repo, signature.digest, signature)).status, 201);
    for (const p of platforms) assert.equal((await client.pushManifest(repo, p.digest, p)).status, 201);
    assert.equal((await client.pushManifest(repo, "multi", index)).status, 201);

    const keepAll = await collect(client);
    assert.deepEqual(keepAll.manifestsDeleted, []);
    await assertServed(client, repo, old.digest, old);

    const report = await collect(client, "grace=0s&untagged=true");
    assert.deepEqual(
      [...report.manifestsDeleted].sort(),
      [`${repo}@${old.digest}`, `${repo}@${oldSignature.digest}`].sort(),
    );
    for (const b of [...old.blobs, ...oldSignature.blobs]) assert.ok(report.blobsDeleted.includes(b.digest));
    assert.equal((await client.request("GET", `/v2/${repo}/manifests/${old.digest}`)).status, 404);
    await assertServed(client, repo, "latest", current);
    await assertServed(client, repo, signature.digest, signature);
    await assertServed(client, repo, "multi", index);
    for (const p of platforms) await assertServed(client, repo, p.digest, p);
    const referrers = (await (
      await client.request("GET", `/v2/${repo}/referrers/${current.digest}`)
    ).json()) as {
      manifests: { digest: string }[];
    };
    assert.deepEqual(
      referrers.manifests.map((m) => m.digest),
      [signature.digest],
    );
    const tags = (await (await client.request("GET", `/v2/${repo}/tags/list`)).json()) as { tags: string[] };
    assert.deepEqual(tags.tags, ["latest", "multi"]);
  });

  it("a manifest it deletes is gone at once, though just served and its content kept elsewhere; a re-push serves it again", async () => {
    // The manifest is also tagged in another repository, so its content stays: only the caches
    // of `repo` (this revision exists, its parsed copy) could still serve it.
    const repo = "gc/cached";
    const m = imageManifest();
    const signature = imageManifest({
      artifactType: "application/vnd.example.signature",
      subject: { digest: m.digest, size: m.bytes.length, mediaType: m.mediaType },
    });
    const kept = imageManifest();
    assert.equal((await client.pushManifest("gc/cached-twin", "v1", m)).status, 201);
    assert.equal((await client.pushManifest(repo, m.digest, m)).status, 201);
    assert.equal((await client.pushManifest(repo, signature.digest, signature)).status, 201);
    assert.equal((await client.pushManifest(repo, "keep", kept)).status, 201);
    // Served (and so cached) just before the collection.
    await assertServed(client, repo, m.digest, m);
    await assertServed(client, repo, signature.digest, signature);
    const listed = async () =>
      ((await (await client.request("GET", `/v2/${repo}/tags/list`)).json()) as { tags: string[] }).tags;
    assert.deepEqual(await listed(), ["keep"]);

    const report = await collect(client, "grace=0s&untagged=true");
    assert.deepEqual(
      report.manifestsDeleted.filter((d) => d.startsWith(`${repo}@`)).sort(),
      [`${repo}@${m.digest}`, `${repo}@${signature.digest}`].sort(),
    );
    assert.ok(!report.blobsDeleted.includes(m.digest));
    for (const digest of [m.digest, signature.digest]) {
      const response = await client.request("GET", `/v2/${repo}/manifests/${digest}`);
      assert.equal(response.status, 404, digest);
      assert.equal(await errorCode(response), "MANIFEST_UNKNOWN");
      assert.equal((await client.request("HEAD", `/v2/${repo}/manifests/${digest}`)).status, 404, digest);
    }
    const hex = (d: string) => d.slice("sha256:".length);
    const referrer = join(
      registry.root,
      "docker/registry/v2/repositories",
      repo,
      "_referrers/sha256",
      hex(m.digest),
      "sha256",
      hex(signature.digest),
    );
    assert.ok(!existsSync(referrer), "the referrers entry of a deleted manifest is removed");
    assert.deepEqual(await listed(), ["keep"]);
    await assertServed(client, repo, "keep", kept);
    await assertServed(client, "gc/cached-twin", "v1", m);

    assert.equal((await client.pushManifest(repo, m.digest, m)).status, 201);
    await assertServed(client, repo, m.digest, m);
  });

  it("keeps what a tag names even when its revision link is gone (left so by another tool)", async () => {
    const m = imageManifest({ layers: 2 });
    assert.equal((await client.pushManifest("gc/torn", "v1", m)).status, 201);
    const hex = m.digest.slice("sha256:".length);
    rmSync(join(registry.root, "docker/registry/v2/repositories/gc/torn/_manifests/revisions/sha256", hex), {
      recursive: true,
    });
    const report = await collect(client, "grace=0s&untagged=true");
    for (const digest of [m.digest, ...m.blobs.map((b) => b.digest)])
      assert.ok(!report.blobsDeleted.includes(digest), digest);
    await assertServed(client, "gc/torn", "v1", m);
  });

  it("spares unreferenced content younger than the grace period (a push in progress), and collects it once old", async () => {
    const pending = imageManifest();
    for (const b of pending.blobs) await client.pushBlob("gc/pending", b);
    const report = await collect(client, "grace=1h");
    for (const b of pending.blobs) assert.ok(!report.blobsDeleted.includes(b.digest));
    assert.ok(report.blobsSpared >= pending.blobs.length);
    // The push completes after the collection: nothing it relied on is gone.
    assert.equal((await client.pushManifest("gc/pending", "v1", pending, false)).status, 201);
    await assertServed(client, "gc/pending", "v1", pending);

    const abandoned = blob();
    await client.pushBlob("gc/pending", abandoned);
    age(registry.root, "gc/pending", [abandoned.digest]);
    const later = await collect(client, "grace=1h");
    assert.deepEqual(later.blobsDeleted, [abandoned.digest]);
  });

  it("a dry run reports what it would delete and deletes nothing", async () => {
    const orphan = blob();
    await client.pushBlob("gc/dry", orphan);
    const report = await collect(client, "grace=0s&dryrun=true");
    assert.equal(report.dryRun, true);
    assert.deepEqual(report.blobsDeleted, [orphan.digest]);
    assert.equal((await client.request("HEAD", `/v2/gc/dry/blobs/${orphan.digest}`)).status, 200);
    await collect(client);
  });

  it("bad parameters are 400 with a message naming the parameter", async () => {
    for (const query of ["grace=soon", "untagged=maybe", "dryrun=2"]) {
      const response = await client.request("POST", `/v2/_oci/artifacts/delete?${query}`);
      assert.equal(response.status, 400, query);
      const body = (await response.json()) as { errors: { code: string; message: string }[] };
      assert.equal(body.errors[0]!.code, "UNSUPPORTED");
      assert.match(body.errors[0]!.message, new RegExp(query.split("=")[0]!));
    }
    assert.equal((await client.request("GET", "/v2/_oci/artifacts/delete")).status, 405);
  });

  it("records the last run in the metrics on :5001 and in /v2/_neam/status", async () => {
    await collect(client);
    const metrics = await (await fetch(`${registry.debugUrl}/metrics`)).text();
    assert.match(metrics, /registry_task_last_run_success\{task="gc"\} 1/);
    assert.match(metrics, /registry_task_last_success_timestamp_seconds\{task="gc"\} \d/);
    assert.match(metrics, /registry_task_last_run_items\{task="gc",kind="blobs_deleted"\} \d/);
    const status = (await (await client.request("GET", "/v2/_neam/status")).json()) as {
      gc: { success: boolean; counts: Record<string, number> };
    };
    assert.equal(status.gc.success, true);
    assert.equal(typeof status.gc.counts.bytes_freed, "number");
  });
});

describe("garbage collection while pushes go on", () => {
  let registry: RegistryProcess;
  let client: Client;
  before(async () => {
    // Other content (500 repositories, 70,000 blobs, all younger than the grace period, so kept)
    // makes each collection last longer than a push: pushes run wholly within collections.
    const root = join(tempDir(), "data");
    await generateStore(root, 0.5);
    registry = await startRegistry({ root });
    client = new Client(registry.url);
  });
  after(() => registry.stop());

  it("loses nothing pushed during collections, including pushes that reuse old unreferenced blobs", async (t) => {
    // Old orphans: some are reused by the pushes below (a client finds them with HEAD and does
    // not upload them again), the others must be collected.
    const reused: Blob[] = Array.from({ length: 20 }, () => blob());
    const abandoned: Blob[] = Array.from({ length: 20 }, () => blob());
    for (const b of [...reused, ...abandoned]) await client.pushBlob("race/base", b);
    age(
      registry.root,
      "race/base",
      [...reused, ...abandoned].map((b) => b.digest),
    );

    const pushed: { repo: string; tag: string; manifest: Manifest }[] = [];
    const failures: string[] = [];
    // Each collection's window and report, and each push's window and the old orphans it
    // reused (found by HEAD or mount) rather than uploaded again.
    const runs: { start: number; end: number; report: Report }[] = [];
    const pushes: { start: number; end: number }[] = [];
    const claimed: { digest: string; at: number }[] = [];
    const resent = new Set<string>();
    let collecting = true;
    const collections = (async () => {
      while (collecting || runs.length < 3) {
        const start = Date.now();
        const report = await collect(client, "grace=1h&untagged=true");
        runs.push({ start, end: Date.now(), report });
      }
    })();
    let firstPush = Infinity;
    // Collections finished after the pushes began: the pushes go on until two have (a loaded
    // machine makes a collection of the generated store outlast 15 pushes per worker; CI saw it).
    const collectedMeanwhile = () => runs.filter((run) => run.start > firstPush).length;
    const pusher = async (worker: number) => {
      for (let i = 0; i < 15 || (collectedMeanwhile() < 2 && i < 300); i++) {
        const start = Date.now();
        firstPush = Math.min(firstPush, start);
        // Half the pushes go where the old orphans are linked (HEAD finds them), half elsewhere (mount finds them).
        const repo = worker % 2 === 0 ? "race/base" : `race/w${worker}`;
        const m = imageManifest({ layers: 2 });
        // Layer 0 is an old orphan when one is left: HEAD first, upload only if missing.
        const old = reused[worker * 5 + (i % 5)];
        const layers = old === undefined ? m.blobs : [m.blobs[0]!, old, ...m.blobs.slice(2)];
        const body = JSON.parse(m.bytes.toString()) as { layers: { digest: string; size: number }[] };
        if (old !== undefined) body.layers[0] = { ...body.layers[0]!, digest: old.digest, size: old.size };
        const bytes = Buffer.from(JSON.stringify(body));
        const manifest: Manifest = { bytes, digest: sha256(bytes), mediaType: m.mediaType, blobs: layers };
        for (const b of layers) {
          const head = await client.request("HEAD", `/v2/${repo}/blobs/${b.digest}`);
          const found = head.status === 200;
          let mounted = false;
          if (!found) {
            const mount = await client.request("POST", `/v2/${repo}/blobs/uploads/?mount=${b.digest}`);
            mounted = mount.status === 201;
            if (!mounted) {
              await client.request("DELETE", mount.headers.get("Location")!).catch(() => undefined);
              await client.pushBlob(repo, b);
            }
          }
          if (b === old && (found || mounted)) claimed.push({ digest: b.digest, at: Date.now() });
          else if (b === old) resent.add(b.digest);
        }
        const tag = `w${worker}-t${i}`;
        const response = await client.pushManifest(repo, tag, manifest, false);
        if (response.status === 201) pushed.push({ repo, tag, manifest });
        else failures.push(`${repo}:${tag} ${response.status} ${await response.text()}`);
        pushes.push({ start, end: Date.now() });
      }
    };
    await Promise.all([0, 1, 2, 3].map(pusher));
    collecting = false;
    await collections;
    assert.deepEqual(failures, []);
    assert.equal(pushed.length, pushes.length);
    assert.ok(pushed.length >= 60);
    for (const { repo, tag, manifest } of pushed) await assertServed(client, repo, tag, manifest);

    // The collections did run while pushes were in flight: some began after a push had begun
    // and ended before the last push was acknowledged, and pushes ran wholly within them.
    const pushing = {
      start: Math.min(...pushes.map((p) => p.start)),
      end: Math.max(...pushes.map((p) => p.end)),
    };
    const overlapping = runs.filter((run) => run.start > pushing.start && run.end < pushing.end);
    const within = pushes.filter((push) =>
      overlapping.some((run) => push.start > run.start && push.end < run.end),
    );
    t.diagnostic(
      `${runs.length} collections, ${overlapping.length} during pushes, ${within.length} pushes within one`,
    );
    assert.ok(overlapping.length >= 2, `${overlapping.length} collections ran during the pushes`);
    assert.ok(within.length > 0, "no push ran wholly within a collection");

    // What they deleted: never a manifest, never a blob an acknowledged push references unless
    // that push found it gone and sent it again; an old orphan a push reused (HEAD or mount
    // found it) was protected from every collection. The abandoned orphans are all collected.
    const deleted = runs.flatMap((run) => run.report.blobsDeleted);
    assert.deepEqual(
      runs.flatMap((run) => run.report.manifestsDeleted),
      [],
    );
    const referenced = new Set(pushed.flatMap(({ manifest }) => manifest.blobs.map((b) => b.digest)));
    for (const digest of deleted) {
      if (referenced.has(digest)) assert.ok(resent.has(digest), `${digest} deleted after a push reused it`);
    }
    // A collection that began after a push found an old orphan must not delete it (one that
    // deleted it before that HEAD would have made it a 404, and the push would re-send it).
    for (const claim of claimed) {
      for (const run of runs.filter((r) => r.start > claim.at))
        assert.ok(!run.report.blobsDeleted.includes(claim.digest), `${claim.digest} reused, then collected`);
    }
    assert.ok(claimed.length > 0, "pushes reused old orphans");
    assert.deepEqual(
      deleted.filter((digest) => abandoned.some((b) => b.digest === digest)).sort(),
      abandoned.map((b) => b.digest).sort(),
    );
    const final = await collect(client, "grace=1h&untagged=true");
    assert.deepEqual(final.manifestsDeleted, []);
    assert.deepEqual(final.blobsDeleted, []);
    for (const b of abandoned) assert.equal(existsSync(blobPath(registry.root, b.digest)), false, b.digest);
  });
});

describe("garbage collection access and the CLI", () => {
  it("needs an admin when auth is on: 401 without credentials, 403 DENIED for others", async () => {
    const dir = tempDir();
    const htpasswd = join(dir, "htpasswd");
    writeFileSync(htpasswd, "");
    await run(process.execPath, [MAIN, "user", "add", "--file", htpasswd, "--cost", "4", "admin", "adminpw"]);
    await run(process.execPath, [MAIN, "user", "add", "--file", htpasswd, "--cost", "4", "dev", "devpw"]);
    const registry = await startRegistry({
      config: {
        auth: {
          htpasswd: { realm: "test", path: htpasswd },
          access: {
            admins: ["admin"],
            rules: [{ subjects: ["user:dev"], repositories: ["**"], actions: ["pull", "push", "delete"] }],
          },
        },
      },
    });
    try {
      const client = new Client(registry.url);
      const anonymous = await client.request("POST", "/v2/_oci/artifacts/delete");
      assert.equal(anonymous.status, 401);
      const dev = await client.request("POST", "/v2/_oci/artifacts/delete", {
        headers: basicAuth("dev", "devpw"),
      });
      assert.equal(dev.status, 403);
      assert.equal(await errorCode(dev), "DENIED");
      await collect(client, "grace=0s", basicAuth("admin", "adminpw"));

      // The CronJob's command: credentials from the environment, never the command line.
      const env = { ...process.env, NEAM_REGISTRY_USERNAME: "admin", NEAM_REGISTRY_PASSWORD: "adminpw" };
      const { stdout } = await run(process.execPath, [MAIN, "gc", "--url", registry.url, "--untagged"], {
        env,
      });
      assert.match(stdout, /^gc: \d+ repositories, 0 manifests and 0 blobs deleted/m);
      const refused = await run(process.execPath, [MAIN, "gc", "--url", registry.url], {
        env: { ...process.env, NEAM_REGISTRY_USERNAME: "dev", NEAM_REGISTRY_PASSWORD: "devpw" },
      }).catch((error: { code: number; stderr: string }) => error);
      assert.equal((refused as { code: number }).code, 1);
      assert.match(
        (refused as { stderr: string }).stderr,
        /^neam-registry: POST \/v2\/_oci\/artifacts\/delete: 403 DENIED/,
      );
    } finally {
      await registry.stop();
    }
  });

  it("offline, as the reference registry's `garbage-collect --delete-untagged config.yml`", async () => {
    const registry = await startRegistry();
    const client = new Client(registry.url);
    const old = imageManifest();
    const current = imageManifest();
    await client.pushManifest("offline", "latest", old);
    await client.pushManifest("offline", "latest", current);
    await registry.stop();
    const config = join(registry.dir, "config.yml");
    const dry = await run(process.execPath, [
      MAIN,
      "garbage-collect",
      "--dry-run",
      "--delete-untagged",
      config,
    ]);
    assert.match(dry.stdout, new RegExp(`manifest eligible for deletion: offline@${old.digest}`));
    assert.ok(existsSync(blobPath(registry.root, old.blobs[0]!.digest)));
    const real = await run(process.execPath, [MAIN, "garbage-collect", "-m", config]);
    assert.match(real.stdout, /1 manifests and 3 blobs deleted/);
    assert.equal(existsSync(blobPath(registry.root, old.blobs[0]!.digest)), false);
    const restarted = await startRegistry({ root: registry.root });
    try {
      await assertServed(new Client(restarted.url), "offline", "latest", current);
    } finally {
      await restarted.stop();
    }
    const bad = await run(process.execPath, [MAIN, "gc", "--bogus"]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal((bad as { code: number }).code, 1);
    assert.match((bad as { stderr: string }).stderr, /^neam-registry: Unknown option '--bogus'/);
  });

  it("is refused with several workers, naming the offline way", async () => {
    const registry = await startRegistry({ workers: 2 });
    try {
      const response = await new Client(registry.url).request("POST", "/v2/_oci/artifacts/delete");
      assert.equal(response.status, 405);
      const body = (await response.json()) as { errors: { message: string }[] };
      assert.match(body.errors[0]!.message, /http\.workers: 1/);
    } finally {
      await registry.stop();
    }
  });
});
