/**
 * Workers cache tag and link lookups; a change acknowledged by one worker must be seen by every
 * other at once. Each read here opens a fresh connection, so reads spread over both workers.
 */
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import { Client, blob, imageManifest } from "../../helpers/oci.js";
import { startRegistry, type RegistryProcess } from "../../helpers/registry.js";

let registry: RegistryProcess;
let client: Client;

before(async () => {
  registry = await startRegistry({ workers: 2 });
  client = new Client(registry.url);
});
after(() => registry?.stop());

/** GET or HEAD on a new connection; returns status and Docker-Content-Digest. */
function fresh(method: string, path: string): Promise<{ status: number; digest: string | undefined }> {
  const url = new URL(registry.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method, agent: false }, (res) => {
      res.resume();
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          digest: res.headers["docker-content-digest"] as string | undefined,
        }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

async function readMany(method: string, path: string, times = 16) {
  return Promise.all(Array.from({ length: times }, () => fresh(method, path)));
}

describe("cache coherence across workers", () => {
  it("a retag is seen by every worker as soon as it is acknowledged", async () => {
    const first = imageManifest();
    const second = imageManifest();
    await client.pushManifest("coherence/app", "v", first);
    for (const r of await readMany("GET", "/v2/coherence/app/manifests/v"))
      assert.equal(r.digest, first.digest);
    assert.equal((await client.pushManifest("coherence/app", "v", second)).status, 201);
    for (const r of await readMany("GET", "/v2/coherence/app/manifests/v"))
      assert.equal(r.digest, second.digest);
  });

  it("a deleted manifest, tag or blob is gone from every worker", async () => {
    const manifest = imageManifest();
    await client.pushManifest("coherence/del", "t", manifest);
    const layer = manifest.blobs[1]!;
    await readMany("GET", `/v2/coherence/del/manifests/${manifest.digest}`);
    await readMany("HEAD", `/v2/coherence/del/blobs/${layer.digest}`);
    assert.equal(
      (await client.request("DELETE", `/v2/coherence/del/manifests/${manifest.digest}`)).status,
      202,
    );
    for (const r of await readMany("GET", `/v2/coherence/del/manifests/${manifest.digest}`))
      assert.equal(r.status, 404);
    for (const r of await readMany("GET", "/v2/coherence/del/manifests/t")) assert.equal(r.status, 404);
    assert.equal((await client.request("DELETE", `/v2/coherence/del/blobs/${layer.digest}`)).status, 202);
    for (const r of await readMany("HEAD", `/v2/coherence/del/blobs/${layer.digest}`))
      assert.equal(r.status, 404);
  });

  it("a deleted tag is gone from every worker", async () => {
    const other = blob();
    await client.pushBlob("coherence/tag", other);
    await client.pushManifest("coherence/tag", "gone", imageManifest());
    await readMany("GET", "/v2/coherence/tag/manifests/gone");
    assert.equal((await client.request("DELETE", "/v2/coherence/tag/manifests/gone")).status, 202);
    for (const r of await readMany("GET", "/v2/coherence/tag/manifests/gone")) assert.equal(r.status, 404);
  });

  it("a new or deleted tag shows in every worker's tag list at once", async () => {
    const manifest = imageManifest();
    await client.pushManifest("coherence/list", "a", manifest);
    for (const r of await readManyJson("/v2/coherence/list/tags/list")) assert.deepEqual(r.tags, ["a"]);
    await client.pushManifest("coherence/list", "b", manifest, false);
    for (const r of await readManyJson("/v2/coherence/list/tags/list")) assert.deepEqual(r.tags, ["a", "b"]);
    assert.equal((await client.request("DELETE", "/v2/coherence/list/manifests/a")).status, 202);
    for (const r of await readManyJson("/v2/coherence/list/tags/list")) assert.deepEqual(r.tags, ["b"]);
  });
});

/** GET on new connections, bodies parsed as JSON. */
function readManyJson(path: string, times = 16): Promise<{ tags: string[] }[]> {
  const url = new URL(registry.url);
  return Promise.all(
    Array.from(
      { length: times },
      () =>
        new Promise<{ tags: string[] }>((resolve, reject) => {
          const req = request({ host: url.hostname, port: url.port, path, agent: false }, (res) => {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (c: string) => (body += c));
            res.on("end", () => resolve(JSON.parse(body) as { tags: string[] }));
          });
          req.on("error", reject);
          req.end();
        }),
    ),
  );
}
