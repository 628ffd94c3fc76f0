/**
 * The server's lifecycle, each path through a real server process: worker respawn, the
 * upload-purge job, the drain on SIGTERM, a configured manifest limit, a failed maintenance task
 * in status and metrics, and the audit trail (stdout, and flushed at shutdown).
 */
import assert from "node:assert/strict";
import { request as httpRequest, type ClientRequest } from "node:http";
import { spawnSync } from "node:child_process";
import { chmodSync, closeSync, constants, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { freePort, startRegistry, tempDir, waitUntil, type RegistryProcess } from "../helpers/registry.js";
import { Client, blob, imageManifest, type Blob } from "../helpers/oci.js";

/** Starts a blob upload whose body is sent in two halves: the second when the test says. */
async function heldUpload(
  registry: RegistryProcess,
  repo: string,
  content: Blob = blob(),
): Promise<{ finish: () => Promise<number>; request: ClientRequest }> {
  const location = await new Client(registry.url).startUpload(repo);
  const url = new URL(location, registry.url);
  url.searchParams.set("digest", content.digest);
  let answered: (status: number) => void;
  let failed: (error: Error) => void;
  const response = new Promise<number>((resolve, reject) => {
    answered = resolve;
    failed = reject;
  });
  const request = httpRequest(
    url,
    {
      method: "PUT",
      headers: { "Content-Type": "application/octet-stream", "Content-Length": String(content.size) },
    },
    (res) => {
      res.resume();
      res.on("end", () => answered(res.statusCode ?? 0));
    },
  );
  request.on("error", (error) => failed(error));
  response.catch(() => {}); // a test that lets the server cut it never asks
  const half = Math.floor(content.size / 2);
  await new Promise<void>((resolve) => request.write(content.data.subarray(0, half), () => resolve()));
  return {
    request,
    finish: () => {
      request.end(content.data.subarray(half));
      return response;
    },
  };
}

function exitOf(registry: RegistryProcess): Promise<{ code: number | null; at: number }> {
  const child = registry.process;
  if (child.exitCode !== null) return Promise.resolve({ code: child.exitCode, at: Date.now() });
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, at: Date.now() })));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the server is serving `count` requests: a request still in the kernel's buffer when
 * SIGTERM comes is on an idle connection, which any server drops at close.
 */
async function serving(registry: RegistryProcess, count: number): Promise<void> {
  await waitUntil(async () => {
    const metrics = await (await fetch(`${registry.debugUrl}/metrics`)).text();
    return Number(/^\S*http_requests_in_flight (\d+)$/m.exec(metrics)?.[1] ?? 0) >= count;
  }, 10_000);
}

describe("http.workers > 1", () => {
  it("a killed worker is replaced, and the new workers serve", async () => {
    // A fixed port: with port 0, workers that replace all the original ones bind a new port of
    // their own (the primary closes a listener no worker holds), so the test's URL would go dead.
    const registry = await startRegistry({ workers: 2, port: await freePort() });
    try {
      const client = new Client(registry.url);
      const image = imageManifest();
      assert.equal((await client.pushManifest("workers/app", "v1", image)).status, 201);
      const [primary, ...workers] = registry.pids();
      assert.equal(workers.length, 2);
      // Both original workers die: whatever answers afterwards is a respawned one.
      for (const pid of workers) process.kill(pid, "SIGKILL");
      await waitUntil(async () => {
        const now = registry.pids().slice(1);
        return now.length === 2 && now.every((pid) => !workers.includes(pid));
      }, 15_000);
      assert.equal(registry.pids()[0], primary, "the primary stays");
      await waitUntil(
        async () => (await fetch(`${registry.url}/v2/`).catch(() => undefined))?.status === 200,
        10_000,
      );
      for (let i = 0; i < 10; i++) {
        const response = await client.request("GET", `/v2/workers/app/manifests/v1`, {
          headers: { Accept: image.mediaType, Connection: "close" },
        });
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("Docker-Content-Digest"), image.digest);
      }
      assert.match(registry.log(), /worker exited; starting another/);
    } finally {
      await registry.stop();
    }
  });
});

describe("storage.maintenance.uploadpurging", () => {
  it("purges an upload older than `age` on its `interval`, and not a young one", async () => {
    const registry = await startRegistry({
      config: {
        log: { level: "info" },
        storage: { maintenance: { uploadpurging: { enabled: true, age: "3s", interval: "1s" } } },
      },
    });
    try {
      const client = new Client(registry.url);
      const location = await client.startUpload("purge/app");
      const uploadsDir = join(registry.root, "docker/registry/v2/repositories/purge/app/_uploads");
      assert.equal(readdirSync(uploadsDir).length, 1);
      await sleep(1200); // a purge has run (interval 1 s); the upload is younger than the age
      assert.equal((await client.request("GET", location)).status, 204, "young uploads stay");
      await waitUntil(async () => (await client.request("GET", location)).status === 404, 10_000);
      assert.deepEqual(readdirSync(uploadsDir), []);
      // The log is written asynchronously.
      await waitUntil(async () => /"purged":1,.*upload purge ran/.test(registry.log()), 5000);
    } finally {
      await registry.stop();
    }
  });
});

describe("http.draintimeout", () => {
  it("on SIGTERM an in-flight upload completes within the drain, then the process exits 0", async () => {
    const registry = await startRegistry({ config: { http: { draintimeout: "20s" } } });
    const upload = await heldUpload(registry, "drain/app");
    await serving(registry, 1);
    const exited = exitOf(registry);
    registry.process.kill("SIGTERM");
    await sleep(500);
    assert.equal(registry.process.exitCode, null, "still draining");
    // New connections are refused while draining.
    assert.equal(
      await fetch(`${registry.url}/v2/`).then(
        () => "answered",
        () => "refused",
      ),
      "refused",
    );
    const status = await upload.finish();
    const answeredAt = Date.now();
    assert.equal(status, 201);
    const { code, at } = await exited;
    assert.equal(code, 0);
    assert.ok(at >= answeredAt, "exits after the answer");
    assert.ok(
      at - answeredAt < 5000,
      `exits ${at - answeredAt} ms after the last request, not at the timeout`,
    );
  });

  it("a request longer than the drain timeout does not hold the exit", async () => {
    const registry = await startRegistry({ config: { http: { draintimeout: "1s" } } });
    const upload = await heldUpload(registry, "drain/stuck");
    upload.request.on("error", () => {}); // the server goes away under it
    await serving(registry, 1);
    const exited = exitOf(registry);
    const signalledAt = Date.now();
    registry.process.kill("SIGTERM");
    const { at } = await exited;
    const elapsed = at - signalledAt;
    assert.ok(elapsed >= 900, `exited after ${elapsed} ms, before the drain timeout`);
    assert.ok(elapsed < 8000, `exited after ${elapsed} ms`);
    upload.request.destroy();
  });
});

describe("http.maxmanifestbytes", () => {
  /** A valid image manifest of exactly `size` bytes (JSON padded with trailing spaces). */
  function manifestOfSize(size: number) {
    const base = imageManifest();
    const bytes = Buffer.alloc(size, " ");
    base.bytes.copy(bytes);
    return { ...base, bytes };
  }

  it("a configured limit accepts a manifest of exactly that size and answers 413 one byte above", async () => {
    const limit = 5 * 1024 * 1024 + 123;
    const registry = await startRegistry({ config: { http: { maxmanifestbytes: limit } } });
    try {
      const client = new Client(registry.url);
      const at = manifestOfSize(limit);
      const atLimit = await client.pushManifest("limits/app", "at", at);
      assert.equal(atLimit.status, 201, await atLimit.text());
      const above = manifestOfSize(limit + 1);
      const tooBig = await client.pushManifest("limits/app", "above", above);
      assert.equal(tooBig.status, 413);
      assert.equal((await client.request("GET", "/v2/limits/app/manifests/above")).status, 404);
      const served = await client.request("GET", "/v2/limits/app/manifests/at");
      assert.equal(Buffer.from(await served.arrayBuffer()).length, limit);
    } finally {
      await registry.stop();
    }
  });
});

describe("a failed maintenance task", () => {
  async function lastRunSuccess(registry: RegistryProcess, task: string): Promise<string | undefined> {
    const metrics = await (await fetch(`${registry.debugUrl}/metrics`)).text();
    return new RegExp(`^registry_task_last_run_success\\{task="${task}"\\} (\\S+)$`, "m").exec(metrics)?.[1];
  }

  it("a sync whose upstream fails is recorded as failed in status and metrics", async () => {
    const registry = await startRegistry();
    try {
      const client = new Client(registry.url);
      assert.equal(await lastRunSuccess(registry, "sync"), undefined, "absent until it ran");
      const sync = await client.request("POST", "/v2/_neam/sync", {
        body: "sync:\n  images:\n    - source: 127.0.0.1:9/nothing/here:1\n      target: local/here:1\n",
      });
      assert.equal(sync.status, 200);
      const status = (await (await client.request("GET", "/v2/_neam/status")).json()) as {
        sync: { success: boolean; error: string } | null;
      };
      assert.equal(status.sync?.success, false);
      assert.match(status.sync.error, /127\.0\.0\.1:9\/nothing\/here:1/);
      // Scrapes share one read of the statuses for 100 ms (the "absent" one above, maybe).
      await waitUntil(async () => (await lastRunSuccess(registry, "sync")) === "0", 5000);
    } finally {
      await registry.stop();
    }
  });

  it("a collection that cannot read the storage is recorded as failed, then as succeeded", async () => {
    // As uid 65534, so chmod 000 on a repository really denies the collector.
    const registry = await startRegistry({ user: 65534 });
    const repository = join(registry.root, "docker/registry/v2/repositories/gc/app");
    try {
      const client = new Client(registry.url);
      assert.equal((await client.pushManifest("gc/app", "v1", imageManifest())).status, 201);
      chmodSync(repository, 0o000);
      const failed = await client.request("POST", "/v2/_oci/artifacts/delete?grace=0s");
      assert.equal(failed.status, 500);
      const status = (await (await client.request("GET", "/v2/_neam/status")).json()) as {
        gc: { success: boolean; error: string } | null;
      };
      assert.equal(status.gc?.success, false);
      assert.match(status.gc.error, /EACCES|permission denied/);
      await waitUntil(async () => (await lastRunSuccess(registry, "gc")) === "0", 5000);
      chmodSync(repository, 0o755);
      assert.equal((await client.request("POST", "/v2/_oci/artifacts/delete?grace=0s")).status, 200);
      // Scrapes share one read of the statuses for 100 ms.
      await waitUntil(async () => (await lastRunSuccess(registry, "gc")) === "1", 5000);
    } finally {
      chmodSync(repository, 0o755);
      await registry.stop();
    }
  });
});

interface AuditLine {
  audit: true;
  action: string;
  repository?: string;
  reference?: string;
  status: number;
}

const auditLines = (text: string): AuditLine[] =>
  text
    .split("\n")
    .filter((line) => line.startsWith('{"audit":true'))
    .map((line) => JSON.parse(line) as AuditLine);

describe("audit", () => {
  it("audit.stdout writes the trail to stdout, one JSON line per event", async () => {
    const registry = await startRegistry({ config: { audit: { stdout: true } } });
    try {
      const client = new Client(registry.url);
      const image = imageManifest();
      assert.equal((await client.pushManifest("audit/app", "v1", image)).status, 201);
      assert.equal((await client.request("GET", "/v2/audit/app/manifests/v1")).status, 200);
      await waitUntil(async () => auditLines(registry.log()).some((l) => l.action === "pull"), 5000);
      const lines = auditLines(registry.log());
      assert.deepEqual(
        lines.map((l) => [l.action, l.repository, l.status]),
        [
          ...image.blobs.map(() => ["upload", "audit/app", 201]),
          ["push", "audit/app", 201],
          ["pull", "audit/app", 200],
        ],
      );
    } finally {
      await registry.stop();
    }
  });

  it("the trail is flushed at shutdown: lines still buffered when SIGTERM comes reach the file", async () => {
    // A FIFO stands for a slow disk: its reader holds the writes back until after SIGTERM, so
    // the process still holds most of the trail when it is asked to stop.
    const fifo = join(tempDir(), "trail.fifo");
    assert.equal(spawnSync("mkfifo", [fifo]).status, 0);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const registry = await startRegistry({ config: { audit: { file: fifo } } });
      const client = new Client(registry.url);
      const image = imageManifest();
      assert.equal((await client.pushManifest("audit/fifo", "v1", image)).status, 201);
      const pulls = 600; // ~150 KiB of trail: more than twice the pipe's 64 KiB
      for (let i = 0; i < pulls; i += 20) {
        const statuses = await Promise.all(
          Array.from({ length: 20 }, async () => {
            const response = await client.request("GET", "/v2/audit/fifo/manifests/v1");
            await response.arrayBuffer();
            return response.status;
          }),
        );
        assert.deepEqual(new Set(statuses), new Set([200]));
      }
      const exited = exitOf(registry);
      registry.process.kill("SIGTERM");
      await sleep(300);
      let text = "";
      const chunk = Buffer.alloc(65536);
      for (;;) {
        let n: number;
        try {
          n = readSync(reader, chunk);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
          if (registry.process.exitCode !== null) break;
          await sleep(20);
          continue;
        }
        if (n === 0) break; // the writer closed its end
        text += chunk.subarray(0, n).toString("utf8");
      }
      assert.equal((await exited).code, 0);
      const lines = auditLines(text);
      assert.equal(lines.filter((l) => l.action === "pull").length, pulls, "every pull is in the trail");
      assert.equal(lines.filter((l) => l.action === "push").length, 1);
    } finally {
      closeSync(reader);
    }
  });

  it("the trail is flushed at shutdown: uploads finished during the drain are all in the file", async () => {
    const file = join(tempDir(), "trail.log");
    const started = await startRegistry({ config: { audit: { file } } });
    const count = 40;
    const uploads = await Promise.all(
      Array.from({ length: count }, (_, i) => heldUpload(started, `audit/flush${i}`)),
    );
    await serving(started, count);
    const exited = exitOf(started);
    started.process.kill("SIGTERM");
    await sleep(200);
    const statuses = await Promise.all(uploads.map((u) => u.finish()));
    assert.deepEqual(new Set(statuses), new Set([201]));
    assert.equal((await exited).code, 0);
    const lines = auditLines(readFileSync(file, "utf8")).filter((l) => l.action === "upload");
    assert.equal(lines.length, count, "every finished upload is in the trail");
  });
});
