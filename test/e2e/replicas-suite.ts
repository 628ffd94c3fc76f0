import { join } from "node:path";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { get as httpGet, request as httpRequest, type IncomingMessage } from "node:http";
import { after, before, describe, it } from "node:test";
import { readLayoutIndex, writeOciLayout } from "../helpers/oci-layout.js";
import {
  assertServed,
  blob,
  Client,
  errorCode,
  imageManifest,
  sha256,
  type Manifest,
} from "../helpers/oci.js";
import { startRedis, type RedisServer } from "../helpers/redis.js";
import { metricValue, startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { startHttpServer } from "../helpers/http-server.js";
import { startReference } from "../helpers/reference.js";
import { walkFigures } from "../helpers/storage-walk.js";
import { run, servedDigest, skopeo } from "../helpers/tools.js";

const MAIN = new URL("../../server/src/main.js", import.meta.url).pathname;

/**
 * What the replicas share besides Redis: given a fresh directory, the `storage` section (and the
 * root the registry helper passes as `filesystem.rootdirectory`). The filesystem variant shares
 * one root between processes; an S3 variant returns `storage.s3` for one bucket.
 */
export interface SharedStorage {
  readonly label: string;
  prepare(): Promise<{ root?: string; storage?: Record<string, unknown> }>;
}

export const sharedFilesystem: SharedStorage = {
  label: "filesystem root shared by the processes",
  prepare: async () => ({ root: tempDir("neam-shared-") }),
};

interface Report {
  startedAt: string;
  durationSeconds: number;
  blobsDeleted: string[];
  manifestsDeleted: string[];
}

/** Several `serve` processes over one storage and one real redis-server. */
export function describeReplicas(storage: SharedStorage): void {
  describe(`replicas sharing Redis and storage (${storage.label})`, () => {
    let redis: RedisServer;
    let replicas: RegistryProcess[];
    let clients: Client[];
    let sharedStorage: Awaited<ReturnType<SharedStorage["prepare"]>>;
    const start = async (shared: Awaited<ReturnType<SharedStorage["prepare"]>>, workers = 1) =>
      startRegistry({
        ...(shared.root !== undefined ? { root: shared.root } : {}),
        workers,
        config: {
          redis: { addr: redis.addr, dialtimeout: "2s", readtimeout: "2s" },
          ...(shared.storage !== undefined ? { storage: shared.storage } : {}),
        },
      });

    before(async () => {
      redis = await startRedis();
      sharedStorage = await storage.prepare();
      const shared = sharedStorage;
      replicas = await Promise.all([start(shared), start(shared), start(shared)]);
      clients = replicas.map((r) => new Client(r.url));
    });
    after(async () => {
      await Promise.all(replicas.map((r) => r.stop().catch(() => r.kill())));
      await redis.stop();
    });

    it("serves through B a multi-arch image skopeo pushed through A, and C sees it too", () => {
      const layout = tempDir();
      const written = writeOciLayout(layout, "v1", "replicas");
      const [a, b, c] = replicas as [RegistryProcess, RegistryProcess, RegistryProcess];
      skopeo(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        `oci:${layout}:v1`,
        `docker://${a.host}/apps/multi:v1`,
      );
      const out = tempDir();
      skopeo("copy", "--all", "--src-tls-verify=false", `docker://${b.host}/apps/multi:v1`, `oci:${out}:v1`);
      assert.equal(readLayoutIndex(out).manifests[0]?.digest, written.index);
      assert.equal(servedDigest(`docker://${b.host}/apps/multi:v1`), written.index);
      const arm = tempDir();
      skopeo(
        "copy",
        "--src-tls-verify=false",
        "--override-arch",
        "arm64",
        `docker://${c.host}/apps/multi:v1`,
        `oci:${arm}:v1`,
      );
      assert.equal(readLayoutIndex(arm).manifests[0]?.digest, written.manifests.arm64);
    });

    it("never serves a moved tag stale: B answers the new digest as soon as A acknowledged the PUT", async () => {
      const [a, b, c] = clients as [Client, Client, Client];
      const images = [imageManifest(), imageManifest()];
      for (const m of images) for (const x of m.blobs) await a.pushBlob("moving/app", x);
      const digestVia = async (client: Client) => {
        const response = await client.request("HEAD", "/v2/moving/app/manifests/latest", {
          headers: { Accept: images[0]!.mediaType },
        });
        return response.headers.get("Docker-Content-Digest");
      };
      for (let i = 0; i < 30; i++) {
        const m = images[i % 2]!;
        // Both readers have just read (and cached) the previous digest.
        await digestVia(b);
        await digestVia(c);
        const response = await (i % 3 === 0 ? c : a).pushManifest("moving/app", "latest", m, false);
        assert.equal(response.status, 201, await response.text());
        assert.equal(await digestVia(b), m.digest, `round ${i}: B`);
        assert.equal(await digestVia(c), m.digest, `round ${i}: C`);
        assert.equal(await digestVia(a), m.digest, `round ${i}: A`);
      }
      // A deleted tag is gone everywhere at once too.
      assert.equal((await a.request("DELETE", "/v2/moving/app/manifests/latest")).status, 202);
      assert.equal((await b.request("HEAD", "/v2/moving/app/manifests/latest")).status, 404);
    });

    it("commits a chunked upload whose PATCHes alternate between replicas, with the right digest", async () => {
      const data = Buffer.concat(Array.from({ length: 9 }, (_, i) => Buffer.alloc(50_000 + i, i + 1)));
      const digest = sha256(data);
      let location = await clients[0]!.startUpload("chunked/app");
      let offset = 0;
      for (let i = 0; offset < data.length; i++) {
        const chunk = data.subarray(offset, offset + 50_000 + i);
        const via = clients[(i + 1) % 3]!;
        const response = await via.request("PATCH", relative(location), {
          body: chunk,
          headers: {
            "Content-Type": "application/octet-stream",
            "Content-Range": `${offset}-${offset + chunk.length - 1}`,
          },
        });
        assert.equal(response.status, 202, await response.text());
        offset += chunk.length;
        assert.equal(response.headers.get("Range"), `0-${offset - 1}`);
        location = response.headers.get("Location")!;
      }
      // The status from yet another replica agrees.
      const path = new URL(location, "http://placeholder");
      const status = await clients[2]!.request("GET", relative(location));
      assert.equal(status.status, 204);
      assert.equal(status.headers.get("Range"), `0-${data.length - 1}`);
      const separator = path.search === "" ? "?" : "&";
      const done = await clients[1]!.request(
        "PUT",
        `${path.pathname}${path.search}${separator}digest=${digest}`,
      );
      assert.equal(done.status, 201, await done.text());
      const got = await clients[2]!.request("GET", `/v2/chunked/app/blobs/${digest}`);
      assert.equal(got.status, 200);
      assert.equal(sha256(Buffer.from(await got.arrayBuffer())), digest);
    });

    it("refuses a PATCH on one replica while another replica is writing the same upload", async () => {
      // A slow body keeps a PATCH through A in progress (on a connection of its own: fetch could
      // pick a pooled keep-alive connection the server is closing, and a PATCH is not retried).
      // B's PATCHes must then be refused. If one of B's gets the lock first, A's is the one
      // refused (also right, but not what this test is after): start over with a new upload.
      for (let round = 0; ; round++) {
        const location = await clients[0]!.startUpload("chunked/busy");
        const path = new URL(location, "http://placeholder");
        const target = new URL(path.pathname + path.search, replicas[0]!.url);
        const slow = httpRequest({
          host: target.hostname,
          port: target.port,
          method: "PATCH",
          path: target.pathname + target.search,
          agent: false,
          headers: { "Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked" },
        });
        let slowStatus: number | undefined;
        const first = new Promise<number>((resolve, reject) => {
          slow.on("response", (response) => {
            response.resume();
            slowStatus = response.statusCode ?? 0;
            resolve(slowStatus);
          });
          slow.on("error", reject);
        });
        slow.write(Buffer.alloc(1000, 1));
        // B's pooled connection is faster than A's new one: let A's PATCH reach its replica first.
        await new Promise((resolve) => setTimeout(resolve, 300 * (round + 1)));
        let second: Response | undefined;
        await waitUntil(async () => {
          if (slowStatus !== undefined) return true;
          second = await clients[1]!.request("PATCH", path.pathname + path.search, {
            body: Buffer.alloc(10, 2),
            headers: { "Content-Type": "application/octet-stream" },
          });
          return second.status !== 202;
        }, 10_000);
        if (slowStatus !== undefined && round < 5) {
          slow.destroy();
          continue;
        }
        assert.equal(second!.status, 400);
        assert.equal(await errorCode(second!), "BLOB_UPLOAD_INVALID");
        slow.end();
        assert.equal(await first, 202);
        return;
      }
    });

    it("runs a collection triggered on every replica at once one at a time, each to the end", async () => {
      for (let i = 0; i < 5; i++)
        await clients[i % 3]!.pushManifest("gc/once", `t${i}`, imageManifest({ layers: 3 }));
      const orphans = Array.from({ length: 10 }, () => blob());
      for (const o of orphans) await clients[1]!.pushBlob("gc/once", o);
      const reports = await Promise.all(
        clients.map(async (client) => {
          const response = await client.request("POST", "/v2/_oci/artifacts/delete?grace=0s");
          assert.equal(response.status, 200, await response.clone().text());
          return (await response.json()) as Report;
        }),
      );
      const windows = reports
        .map((r) => [Date.parse(r.startedAt), Date.parse(r.startedAt) + r.durationSeconds * 1000] as const)
        .sort((x, y) => x[0] - y[0]);
      for (let i = 1; i < windows.length; i++)
        assert.ok(
          windows[i]![0] >= windows[i - 1]![1] - 1,
          `collections overlapped: ${JSON.stringify(windows)}`,
        );
      // The orphans went in exactly one of the runs.
      const deleted = reports.flatMap((r) => r.blobsDeleted);
      for (const o of orphans) assert.equal(deleted.filter((d) => d === o.digest).length, 1, o.digest);
    });

    it("loses nothing pushed through B and C while A collects (the GC race across replicas)", async (t) => {
      const [a] = clients as [Client, Client, Client];
      const reused = Array.from({ length: 12 }, () => blob());
      for (const b of reused) await a.pushBlob("race/base", b);
      let collecting = true;
      const runs: Report[] = [];
      const collections = (async () => {
        while (collecting || runs.length < 3) {
          const response = await a.request("POST", "/v2/_oci/artifacts/delete?grace=0s&untagged=true");
          assert.equal(response.status, 200, await response.clone().text());
          runs.push((await response.json()) as Report);
        }
      })();
      const pushed: { repo: string; tag: string; manifest: Manifest }[] = [];
      const failures: string[] = [];
      let refused = 0;
      const pusher = async (worker: number) => {
        const client = clients[1 + (worker % 2)]!;
        for (let i = 0; i < 10; i++) {
          const repo = worker % 2 === 0 ? "race/base" : `race/w${worker}`;
          const m = imageManifest({ layers: 2 });
          const old = reused[(worker * 3 + i) % reused.length]!;
          const body = JSON.parse(m.bytes.toString()) as { layers: { digest: string; size: number }[] };
          body.layers[0] = { ...body.layers[0]!, digest: old.digest, size: old.size };
          const bytes = Buffer.from(JSON.stringify(body));
          const layers = [old, ...m.blobs.slice(2)];
          const manifest: Manifest = {
            bytes,
            digest: sha256(bytes),
            mediaType: m.mediaType,
            blobs: [m.blobs[0]!, ...layers],
          };
          // With grace 0s a blob uploaded before a collection began is fair game until a
          // manifest references it: the push is refused (MANIFEST_BLOB_UNKNOWN) and sent again.
          // What must never happen is an acknowledged manifest missing a blob. Collections run
          // back to back here, so on a loaded machine one push can lose that race several times
          // in a row (CI saw 6): the bound only stops a push that never gets through.
          for (let attempt = 0; ; attempt++) {
            for (const b of manifest.blobs) {
              const head = await client.request("HEAD", `/v2/${repo}/blobs/${b.digest}`);
              if (head.status === 200) continue;
              const mount = await client.request("POST", `/v2/${repo}/blobs/uploads/?mount=${b.digest}`);
              if (mount.status === 201) continue;
              await client.request("DELETE", mount.headers.get("Location")!).catch(() => undefined);
              await client.pushBlob(repo, b);
            }
            const tag = `w${worker}-t${i}`;
            const response = await client.pushManifest(repo, tag, manifest, false);
            if (response.status === 201) {
              pushed.push({ repo, tag, manifest });
              break;
            }
            const text = await response.text();
            if (response.status === 400 && text.includes("MANIFEST_BLOB_UNKNOWN") && attempt < 20) {
              refused++;
              continue;
            }
            failures.push(`${repo}:${tag} ${response.status} ${text}`);
            break;
          }
        }
      };
      await Promise.all([0, 1, 2, 3].map(pusher));
      collecting = false;
      await collections;
      assert.deepEqual(failures, []);
      assert.equal(pushed.length, 40);
      // Every acknowledged push is whole, through every replica.
      for (const client of clients)
        for (const { repo, tag, manifest } of pushed) await assertServed(client, repo, tag, manifest);
      assert.deepEqual(
        runs.flatMap((r) => r.manifestsDeleted).filter((m) => m.startsWith("race/")),
        [],
      );
      t.diagnostic(`${runs.length} collections; ${refused} manifest pushes refused and sent again`);
      assert.ok(runs.length >= 3);
      assert.ok(
        runs.some((r) => r.blobsDeleted.length > 0),
        "the collections deleted content (they raced the pushes)",
      );
    });

    it("takes one backup at a time across replicas: another asked for meanwhile is refused at once", async (t) => {
      if (sharedStorage.root === undefined) return t.skip("backups need filesystem storage");
      // Big and incompressible, so an archive its reader does not read cannot fit in the socket
      // buffers: the backup through A stays under way while B is asked.
      await clients[0]!.pushBlob("backup/app", blob(randomBytes(24 * 1024 * 1024)));
      const held = await pausedBackup(replicas[0]!);
      const dir = tempDir();
      const backupVia = (replica: RegistryProcess) =>
        run(process.execPath, [MAIN, "backup", "--output-dir", dir, "--url", replica.url], {
          allowFailure: true,
          timeout: 60_000,
        });
      // As the CronJob runs it, against B: refused with a clear line, not queued behind A's.
      const refused = backupVia(replicas[1]!);
      assert.notEqual(refused.status, 0, refused.stdout);
      assert.match(refused.stderr, /503 UNAVAILABLE: a backup is already running/);
      assert.deepEqual(readdirSync(dir), [], "no second archive was written");
      held.resume();
      assert.equal(await ended(held), true, "A's backup is whole");
      // Once A's is done, B takes one.
      const taken = backupVia(replicas[1]!);
      assert.equal(taken.status, 0, taken.stderr);
      assert.equal(readdirSync(dir).length, 1);
    });

    it("fails a backup whose replica lost its turn in the storage lane, rather than end an archive a collection elsewhere may have cut", async (t) => {
      if (sharedStorage.root === undefined) return t.skip("backups need filesystem storage");
      await clients[0]!.pushBlob("backup/lost", blob(randomBytes(24 * 1024 * 1024)));
      const held = await pausedBackup(replicas[0]!);
      // A's turn is taken from it (as when it paused or lost Redis past the lock's ttl).
      const lane = `neam-registry:lock:maintenance:storage`;
      const del = spawnSync("redis-cli", ["-p", String(redis.port), "DEL", lane], { encoding: "utf8" });
      assert.equal(del.stdout.trim(), "1", `${lane} was held: ${del.stdout}${del.stderr}`);
      // A collection through B may run now.
      const gc = await clients[1]!.request("POST", "/v2/_oci/artifacts/delete?grace=0s");
      assert.equal(gc.status, 200, await gc.text());
      // A notices the lost turn when it renews it; or, first, its archive meets a file that B's
      // collection removed (the 24 MiB blob above is unreferenced). Either way the archive must
      // end as failed, never as whole.
      const noticed = () => {
        const log = replicas[0]!.log();
        return log.includes("lost a shared lock") || /"task":"backup".*"maintenance task failed"/.test(log);
      };
      await waitUntil(async () => noticed(), 60_000).catch((error: unknown) => {
        const told = replicas[0]!
          .log()
          .split("\n")
          .filter((l) => /lock|backup|maintenance/.test(l));
        throw new Error(`${(error as Error).message}; A logged: ${told.slice(-10).join("\n")}`);
      });
      held.resume();
      assert.equal(await ended(held), false, "the archive ended as if whole after its turn was lost");
      // The next backup works (once A has let go of its claim on backups).
      let next: IncomingMessage | undefined;
      await waitUntil(
        async () => (next = await pausedBackup(replicas[1]!).catch(() => undefined)) !== undefined,
        30_000,
      );
      next!.resume();
      assert.equal(await ended(next!), true);
    });

    it("reports the same storage figures on every replica, those of a fresh walk, after pushes through A and deletes through B", async (t) => {
      if (sharedStorage.root === undefined)
        return t.skip("the storage figures follow writes on filesystem storage; S3 is walked every 6 h");
      const [a, b] = clients as [Client, Client, Client];
      const images = Array.from({ length: 3 }, () => imageManifest({ layers: 2 }));
      for (const [i, m] of images.entries())
        assert.equal((await a.pushManifest("stats/app", `t${i}`, m)).status, 201);
      await a.pushBlob("stats/other", blob());
      // Walked and settled first: what follows is counted from the replicas' changes.
      await settled(replicas, sharedStorage.root!);
      assert.equal((await b.request("DELETE", `/v2/stats/app/manifests/${images[0]!.digest}`)).status, 202);
      const gc = await b.request("POST", "/v2/_oci/artifacts/delete?grace=0s");
      assert.equal(gc.status, 200, await gc.clone().text());
      assert.ok(((await gc.json()) as Report).blobsDeleted.length >= 3, "B's collection deleted blobs");
      await a.pushManifest("stats/app", "later", imageManifest({ layers: 1 }));
      await settled(replicas, sharedStorage.root!);
    });

    it("keeps every acknowledged push when a replica is SIGKILLed during pushes (clients retry elsewhere)", async () => {
      const victim = await start(sharedStorage);
      const pool = [new Client(victim.url), ...clients];
      const acknowledged: { repo: string; tag: string; manifest: Manifest }[] = [];
      let killed = false;
      // A client sends to the next replica when one does not answer (as behind a Service).
      const withRetry = async <T>(worker: number, attempt: (client: Client) => Promise<T>): Promise<T> => {
        for (let n = 0; ; n++) {
          const client = pool[(worker + n) % pool.length]!;
          if (killed && client === pool[0]) continue;
          try {
            return await attempt(client);
          } catch (error) {
            if (n > 20) throw error;
          }
        }
      };
      const pusher = async (worker: number) => {
        for (let i = 0; i < 12; i++) {
          const manifest = imageManifest({ layers: 2 });
          const repo = `killed/w${worker}`;
          const tag = `t${i}`;
          await withRetry(worker + i, async (client) => {
            for (const b of manifest.blobs) await client.pushBlob(repo, b);
            const response = await client.pushManifest(repo, tag, manifest, false);
            if (response.status !== 201) throw new Error(`${response.status} ${await response.text()}`);
          });
          acknowledged.push({ repo, tag, manifest });
        }
      };
      const pushing = Promise.all([0, 1, 2, 3].map(pusher));
      await waitUntil(async () => acknowledged.length >= 8, 60_000);
      await victim.kill();
      killed = true;
      await pushing;
      assert.equal(acknowledged.length, 48);
      for (const client of clients)
        for (const { repo, tag, manifest } of acknowledged) await assertServed(client, repo, tag, manifest);
    });

    it("goes on serving pulls while Redis is down, answers writes 503 UNAVAILABLE, and recovers", async () => {
      const [a, b] = clients as [Client, Client, Client];
      const m = imageManifest({ layers: 2 });
      assert.equal((await a.pushManifest("outage/app", "v1", m)).status, 201);
      await assertServed(b, "outage/app", "v1", m);
      await redis.stop();
      try {
        for (const client of clients) await assertServed(client, "outage/app", "v1", m);
        const upload = await b.request("POST", "/v2/outage/app/blobs/uploads/");
        assert.equal(upload.status, 503);
        assert.equal(upload.headers.get("Retry-After"), "1");
        const body = (await upload.json()) as { errors: { code: string; message: string }[] };
        assert.equal(body.errors[0]!.code, "UNAVAILABLE");
        assert.match(body.errors[0]!.message, /redis/);
        const tag = await a.pushManifest("outage/app", "v2", m, false);
        assert.equal(tag.status, 503);
        // Nothing was half-written: the refused tag does not exist.
        assert.equal((await b.request("HEAD", "/v2/outage/app/manifests/v2")).status, 404);
        const health = await fetch(`${replicas[0]!.debugUrl}/debug/health`);
        assert.equal(health.status, 200, "pulls still work: the replica stays in service");
        assert.match(await health.text(), /redis/);
        assert.equal((await fetch(`${replicas[0]!.debugUrl}/debug/health?redis=required`)).status, 503);
        for (const client of clients) await assertServed(client, "outage/app", "v1", m);
      } finally {
        await redis.start();
      }
      await waitUntil(
        async () => (await a.pushManifest("outage/app", "v2", m, false)).status === 201,
        30_000,
      );
      await waitUntil(
        async () => (await b.pushManifest("outage/app", "v3", m, false)).status === 201,
        30_000,
      );
      await assertServed(clients[2]!, "outage/app", "v2", m);
      assert.equal((await fetch(`${replicas[0]!.debugUrl}/debug/health?redis=required`)).status, 200);
    });
  });

  describe(`notifications queued in Redis (${storage.label})`, () => {
    it("delivers an event a replica queued and could not send before it was SIGKILLed, through another", async () => {
      const redis = await startRedis();
      let accepting = false;
      const delivered: { action: string; target: { tag?: string; repository: string } }[] = [];
      const endpoint = await startHttpServer(async (request, response) => {
        let body = "";
        for await (const chunk of request) body += String(chunk);
        if (!accepting) {
          response.statusCode = 503;
          return void response.end();
        }
        delivered.push(...(JSON.parse(body) as { events: typeof delivered }).events);
        response.end();
      });
      const shared = await storage.prepare();
      const start = () =>
        startRegistry({
          ...(shared.root !== undefined ? { root: shared.root } : {}),
          config: {
            redis: { addr: redis.addr },
            notifications: {
              endpoints: [{ name: "hook", url: `${endpoint.url}/events`, timeout: "2s", backoff: "200ms" }],
            },
            ...(shared.storage !== undefined ? { storage: shared.storage } : {}),
          },
        });
      const a = await start();
      try {
        const m = imageManifest();
        assert.equal((await new Client(a.url).pushManifest("notified/app", "v1", m)).status, 201);
        // A tried, the endpoint refused: the event is still queued when A dies.
        await waitUntil(async () => endpoint.requests.length > 0, 30_000);
        await a.kill();
        accepting = true;
        const b = await start();
        try {
          await waitUntil(
            async () =>
              delivered.some(
                (e) => e.action === "push" && e.target.repository === "notified/app" && e.target.tag === "v1",
              ),
            30_000,
          );
        } finally {
          await b.stop();
        }
      } finally {
        await a.kill().catch(() => undefined);
        await endpoint.stop();
        await redis.stop();
      }
    });
  });

  describe(`upload purging across replicas (${storage.label})`, () => {
    it("purges an abandoned upload on one replica per interval, and never one a replica is writing to", async () => {
      const redis = await startRedis();
      const shared = await storage.prepare();
      const start = () =>
        startRegistry({
          ...(shared.root !== undefined ? { root: shared.root } : {}),
          config: {
            redis: { addr: redis.addr },
            storage: {
              ...shared.storage,
              maintenance: { uploadpurging: { enabled: true, age: "1s", interval: "2s", dryrun: false } },
            },
          },
        });
      const [a, b] = await Promise.all([start(), start()]);
      try {
        const [ca, cb] = [new Client(a.url), new Client(b.url)];
        const abandoned = relative(await ca.startUpload("purge/app"));
        // A live upload, older than `age` while it goes on: a PATCH through A streams for
        // several purge intervals, then, idle between requests, it is committed through B.
        const live = relative(await cb.startUpload("purge/app"));
        const target = new URL(live, a.url);
        const chunks = Array.from({ length: 16 }, (_, i) => Buffer.alloc(10_000, i + 1));
        const patch = httpRequest({
          host: target.hostname,
          port: target.port,
          method: "PATCH",
          path: target.pathname + target.search,
          agent: false,
          headers: { "Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked" },
        });
        const patched = new Promise<{ status: number; location: string }>((resolve, reject) => {
          patch.on("response", (response) => {
            response.resume();
            resolve({ status: response.statusCode ?? 0, location: String(response.headers.location) });
          });
          patch.on("error", reject);
        });
        for (const chunk of chunks) {
          patch.write(chunk);
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
        patch.end();
        const { status, location } = await patched;
        assert.equal(status, 202);
        await waitUntil(async () => (await ca.request("GET", abandoned)).status === 404, 60_000);
        // Two more intervals with the upload idle: it was written to a moment ago, so it stays.
        await new Promise((resolve) => setTimeout(resolve, 5_000));
        const data = Buffer.concat(chunks);
        const path = new URL(location, "http://placeholder");
        const separator = path.search === "" ? "?" : "&";
        const done = await cb.request(
          "PUT",
          `${path.pathname}${path.search}${separator}digest=${sha256(data)}`,
        );
        assert.equal(done.status, 201, await done.text());
        const got = await ca.request("GET", `/v2/purge/app/blobs/${sha256(data)}`);
        assert.equal(sha256(Buffer.from(await got.arrayBuffer())), sha256(data));

        const runs = [a, b].flatMap((r) =>
          r
            .log()
            .split("\n")
            .filter((line) => line.includes('"upload purge ran"'))
            .map((line) => JSON.parse(line) as { time: string; startedAt: string; sessions?: string[] }),
        );
        const id = abandoned.split("?")[0]!.split("/").pop()!;
        assert.equal(
          runs.filter((r) => r.sessions?.includes(`purge/app/${id}`)).length,
          1,
          "the abandoned upload was purged once, by one replica",
        );
        // No two purges began within 9/10 of the interval of each other, whichever replica ran them.
        const starts = runs.map((r) => Date.parse(r.startedAt)).sort((x, y) => x - y);
        assert.ok(starts.length >= 3, `${starts.length} purges ran`);
        for (let i = 1; i < starts.length; i++)
          assert.ok(
            starts[i]! - starts[i - 1]! >= 1_800 - 50,
            `purges began too close: ${JSON.stringify(starts)}`,
          );
      } finally {
        await Promise.all([a.stop(), b.stop()]);
        await redis.stop();
      }
    });
  });

  describe(`one replica with http.workers: 2 and Redis (${storage.label})`, () => {
    let redis: RedisServer;
    let registry: RegistryProcess;
    before(async () => {
      redis = await startRedis();
      const shared = await storage.prepare();
      registry = await startRegistry({
        ...(shared.root !== undefined ? { root: shared.root } : {}),
        workers: 2,
        config: {
          redis: { addr: redis.addr },
          ...(shared.storage !== undefined ? { storage: shared.storage } : {}),
        },
      });
    });
    after(async () => {
      await registry.stop();
      await redis.stop();
    });

    it("serves pushes and pulls, and collects garbage online (refused without Redis)", async () => {
      const client = new Client(registry.url);
      const manifests = Array.from({ length: 6 }, () => imageManifest());
      for (const [i, m] of manifests.entries())
        assert.equal((await client.pushManifest("workers/app", `t${i}`, m)).status, 201);
      const orphan = blob();
      await client.pushBlob("workers/app", orphan);
      const response = await client.request("POST", "/v2/_oci/artifacts/delete?grace=0s");
      assert.equal(response.status, 200, await response.clone().text());
      const report = (await response.json()) as Report;
      assert.deepEqual(report.blobsDeleted, [orphan.digest]);
      for (const [i, m] of manifests.entries()) await assertServed(client, "workers/app", `t${i}`, m);
    });

    it("expires a pull-through cache's images (proxy.ttl) with two workers, as with one", async () => {
      const upstream = await startReference(join(tempDir(), "upstream"));
      const image = imageManifest({ layers: 2 });
      await new Client(upstream.url).pushManifest("team/app", "v1", image);
      const shared = await storage.prepare();
      const cache = await startRegistry({
        ...(shared.root !== undefined ? { root: shared.root } : {}),
        workers: 2,
        config: {
          redis: { addr: redis.addr },
          proxy: { remoteurl: upstream.url, ttl: "3s" },
          ...(shared.storage !== undefined ? { storage: shared.storage } : {}),
        },
      });
      try {
        const client = new Client(cache.url);
        const pulled = await client.request("GET", "/v2/team/app/manifests/v1", {
          headers: { Accept: image.mediaType },
        });
        assert.equal(pulled.status, 200);
        for (const b of image.blobs)
          assert.equal((await client.request("GET", `/v2/team/app/blobs/${b.digest}`)).status, 200);
        await upstream.stop();
        await waitUntil(
          async () => (await client.request("GET", "/v2/team/app/manifests/v1")).status === 404,
          30_000,
        );
        assert.doesNotMatch(cache.log(), /proxy.ttl expiry needs/);
      } finally {
        await cache.stop();
      }
    });
  });
}

/** True when every replica exports complete storage figures equal to a walk; else what differs. */
async function sameFigures(replicas: RegistryProcess[], root: string): Promise<true | unknown[]> {
  const want = walkFigures(root);
  const got = await Promise.all(
    replicas.map(async (r) => {
      const text = await (await fetch(`${r.debugUrl}/metrics`)).text();
      if (!/^storage_stats_complete 1$/m.test(text)) return "incomplete";
      return {
        repositories: metricValue(text, "repository_count"),
        manifests: metricValue(text, "manifest_count"),
        blobs: metricValue(text, "blob_count"),
        bytes: metricValue(text, "storage_bytes"),
      };
    }),
  );
  return got.every((g) => JSON.stringify(g) === JSON.stringify(want)) ? true : [want, ...got];
}

/** Waits until `sameFigures`; throws with what differs. */
async function settled(replicas: RegistryProcess[], root: string): Promise<void> {
  let last: unknown;
  await waitUntil(async () => (last = await sameFigures(replicas, root)) === true, 60_000).catch(
    (error: unknown) => {
      throw new Error(`${(error as Error).message}: ${JSON.stringify(last)}`);
    },
  );
}

/** A backup from `replica`, its answer paused: the backup stays under way until it is resumed. */
function pausedBackup(replica: RegistryProcess): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    httpGet(`${replica.url}/v2/_neam/backup`, (response) => {
      response.pause();
      if (response.statusCode === 200) return resolve(response);
      response.resume();
      reject(new Error(`backup through ${replica.url}: ${response.statusCode}`));
    }).on("error", reject);
  });
}

/** Reads an answer to its end: whether it was whole (not cut off). */
function ended(response: IncomingMessage): Promise<boolean> {
  return new Promise((resolve) => {
    // A paused answer the server already cut off may have closed before anyone listened.
    if (response.closed || response.destroyed) return resolve(response.complete);
    response.on("data", () => {});
    response.on("error", () => {});
    response.on("close", () => resolve(response.complete));
  });
}

/** The path and query of a Location, to send to any replica. */
function relative(location: string): string {
  const url = new URL(location, "http://placeholder");
  return url.pathname + url.search;
}
