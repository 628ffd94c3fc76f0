/**
 * The registry served from S3 (a real Ceph RGW, see test/helpers/ceph.ts), as `serve` runs it:
 * skopeo multi-arch push and pull, chunked uploads whose PATCH sizes straddle S3's 5 MiB part
 * minimum (one registry restarted between PATCHes), delete and garbage collection, redirects to
 * the store, health, credentials from the AWS environment, and start-up errors.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { get as httpGet } from "node:http";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { testBucket, type TestBucket } from "../../helpers/ceph.js";
import { Client, assertServed, blob, imageManifest } from "../../helpers/oci.js";
import { writeOciLayout } from "../../helpers/oci-layout.js";
import { startRegistry, tempDir, waitUntil, type RegistryProcess } from "../../helpers/registry.js";
import { servedDigest, skopeo } from "../../helpers/tools.js";

const MAIN = new URL("../../../server/src/main.js", import.meta.url).pathname;
const MiB = 1024 * 1024;
const sha256 = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

const buckets: TestBucket[] = [];
const registries: RegistryProcess[] = [];
after(async () => {
  for (const r of registries) await r.stop().catch(() => {});
  await Promise.all(buckets.map((b) => b.remove()));
});

async function bucket(label: string): Promise<TestBucket> {
  const b = await testBucket(label);
  buckets.push(b);
  return b;
}

/** Our registry on `b`, parts of 5 MiB (S3's smallest) so that boundaries come often. */
async function registryOn(
  b: TestBucket,
  s3: Record<string, unknown> = {},
  storage: Record<string, unknown> = {},
): Promise<RegistryProcess> {
  const registry = await startRegistry({
    config: { storage: { s3: b.config({ chunksize: 5 * MiB, ...s3 }), ...storage } },
  });
  registries.push(registry);
  return registry;
}

/** TCP connections of process `pid` to 127.0.0.1:`port`, with the bytes unread in each. */
function connectionsTo(pid: number, port: number): { state: string; rxQueue: number }[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
      if (inode !== undefined) inodes.add(inode);
    } catch {
      /* closed meanwhile */
    }
  }
  const remote = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return readFileSync(`/proc/${pid}/net/tcp`, "utf8")
    .split("\n")
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[2] === remote && inodes.has(f[9]!))
    .map((f) => ({ state: f[3]!, rxQueue: parseInt(f[4]!.split(":")[1]!, 16) }));
}

/** Keys under the layout (what a registry left in the bucket). */
async function layoutKeys(b: TestBucket): Promise<string[]> {
  return (await b.keys()).filter((k) => k.startsWith("docker/"));
}

describe("registry on S3", () => {
  let b: TestBucket;
  let registry: RegistryProcess;
  let layout: string;
  let digests: ReturnType<typeof writeOciLayout>;
  const ref = (path: string) => `docker://${registry.host}/${path}`;

  before(async () => {
    b = await bucket("reg");
    registry = await registryOn(b);
    layout = join(tempDir(), "layout");
    digests = writeOciLayout(layout, "v1");
  });

  it("skopeo pushes a multi-arch index with --all and pulls it back, digests kept", () => {
    skopeo("copy", "--all", "--dest-tls-verify=false", `oci:${layout}:v1`, ref("apps/multi:v1"));
    assert.equal(servedDigest(ref("apps/multi:v1")), digests.index);
    for (const digest of Object.values(digests.manifests)) {
      assert.equal(servedDigest(ref(`apps/multi@${digest}`)), digest);
    }
    const out = join(tempDir(), "pulled");
    skopeo("copy", "--all", "--src-tls-verify=false", ref("apps/multi:v1"), `oci:${out}:v1`);
    const pulled = JSON.parse(skopeo("inspect", "--raw", `oci:${out}:v1`).stdout) as {
      manifests: { digest: string }[];
    };
    assert.deepEqual(pulled.manifests.map((m) => m.digest).sort(), Object.values(digests.manifests).sort());
    const tags = JSON.parse(skopeo("list-tags", "--tls-verify=false", ref("apps/multi")).stdout);
    assert.deepEqual(tags.Tags, ["v1"]);
  });

  for (const [name, sizes] of [
    ["1 B", [1]],
    ["5 MiB - 1, then 1", [5 * MiB - 1, 1]],
    ["5 MiB, then 5 MiB + 1", [5 * MiB, 5 * MiB + 1]],
    ["many small PATCHes across a part boundary", Array.from({ length: 40 }, () => 150_001)],
  ] as [string, number[]][]) {
    it(`a chunked upload of PATCHes of ${name} commits with the right digest`, async () => {
      const data = randomBytes(sizes.reduce((a, n) => a + n, 0));
      const client = new Client(registry.url);
      let location = await client.startUpload("apps/chunked");
      let offset = 0;
      for (const size of sizes) {
        const response = await client.request("PATCH", location, {
          body: data.subarray(offset, offset + size),
          headers: {
            "Content-Type": "application/octet-stream",
            "Content-Range": `${offset}-${offset + size - 1}`,
          },
        });
        assert.equal(response.status, 202, await response.text());
        offset += size;
        assert.equal(response.headers.get("Range"), `0-${offset - 1}`);
        location = response.headers.get("Location")!;
      }
      const digest = sha256(data);
      const put = await client.request(
        "PUT",
        `${location}${location.includes("?") ? "&" : "?"}digest=${digest}`,
      );
      assert.equal(put.status, 201, await put.text());
      const got = await client.request("GET", `/v2/apps/chunked/blobs/${digest}`);
      assert.equal(got.status, 200);
      assert.equal(sha256(new Uint8Array(await got.arrayBuffer())), digest);
      assert.deepEqual(await b.uploads(), [], "no multipart upload left open");
      assert.deepEqual(
        (await layoutKeys(b)).filter((k) => k.includes("/_uploads/")),
        [],
        "no upload session left",
      );
    });
  }

  it("a chunked upload goes on after the registry restarts between PATCHes", async () => {
    const data = randomBytes(7 * MiB + 17);
    const first = await registryOn(b);
    let client = new Client(first.url);
    const location = await client.startUpload("apps/restart");
    const path = new URL(location, first.url).pathname + new URL(location, first.url).search;
    const cut = 6 * MiB;
    const patch = await client.request("PATCH", path, {
      body: data.subarray(0, cut),
      headers: { "Content-Type": "application/octet-stream", "Content-Range": `0-${cut - 1}` },
    });
    assert.equal(patch.status, 202);
    await first.stop();
    const second = await registryOn(b);
    client = new Client(second.url);
    const status = await client.request("GET", path);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get("Range"), `0-${cut - 1}`);
    const rest = await client.request("PATCH", path, {
      body: data.subarray(cut),
      headers: { "Content-Type": "application/octet-stream", "Content-Range": `${cut}-${data.length - 1}` },
    });
    assert.equal(rest.status, 202);
    const digest = sha256(data);
    const next = rest.headers.get("Location")!;
    const put = await client.request("PUT", `${next}${next.includes("?") ? "&" : "?"}digest=${digest}`);
    assert.equal(put.status, 201, await put.text());
    const got = await client.request("GET", `/v2/apps/restart/blobs/${digest}`);
    assert.equal(sha256(new Uint8Array(await got.arrayBuffer())), digest);
    await second.stop();
  });

  it("a wrong digest is refused and nothing becomes visible", async () => {
    const client = new Client(registry.url);
    const location = await client.startUpload("apps/wrong");
    const data = randomBytes(6 * MiB);
    const claimed = sha256(randomBytes(10));
    const put = await client.request(
      "PUT",
      `${location}${location.includes("?") ? "&" : "?"}digest=${claimed}`,
      {
        body: data,
        headers: { "Content-Type": "application/octet-stream" },
      },
    );
    assert.equal(put.status, 400);
    const hex = claimed.slice("sha256:".length);
    assert.deepEqual(
      (await layoutKeys(b)).filter((k) => k.includes(hex)),
      [],
    );
    assert.equal((await client.request("HEAD", `/v2/apps/wrong/blobs/${sha256(data)}`)).status, 404);
    assert.deepEqual(await b.uploads(), []);
  });

  it("delete and garbage collection free the blobs in the bucket; what is kept still pulls", async () => {
    const client = new Client(registry.url);
    const kept = imageManifest();
    const dropped = imageManifest({ layers: 2 });
    assert.equal((await client.pushManifest("gc/kept", "v1", kept)).status, 201);
    assert.equal((await client.pushManifest("gc/dropped", "v1", dropped)).status, 201);
    assert.equal((await client.request("DELETE", `/v2/gc/dropped/manifests/${dropped.digest}`)).status, 202);
    const response = await client.request("POST", "/v2/_oci/artifacts/delete?grace=0s");
    assert.equal(response.status, 200, await response.clone().text());
    const keys = await layoutKeys(b);
    for (const gone of [dropped.digest, ...dropped.blobs.map((x) => x.digest)]) {
      const hex = gone.slice("sha256:".length);
      assert.deepEqual(
        keys.filter((k) => k.startsWith("docker/registry/v2/blobs/") && k.includes(hex)),
        [],
        gone,
      );
    }
    await assertServed(client, "gc/kept", "v1", kept);
    // The multi-arch image of the first test is tagged: it stays whole.
    assert.equal(servedDigest(ref("apps/multi:v1")), digests.index);
  });

  it("a large blob pulls whole; client Range requests across its part boundaries get those bytes", async () => {
    const client = new Client(registry.url);
    // Pushed in one piece, so the driver writes it as a multipart object of 5 MiB parts.
    const data = randomBytes(23 * MiB + 12345);
    const digest = sha256(data);
    const put = await client.request("POST", `/v2/apps/large/blobs/uploads/?digest=${digest}`, {
      body: data,
      headers: { "Content-Type": "application/octet-stream" },
    });
    assert.equal(put.status, 201, await put.clone().text());
    const whole = await client.request("GET", `/v2/apps/large/blobs/${digest}`);
    assert.equal(whole.status, 200);
    assert.equal(sha256(Buffer.from(await whole.arrayBuffer())), digest);
    for (const [start, end] of [
      [5 * MiB - 7, 5 * MiB + 7],
      [5 * MiB - 1, 15 * MiB],
      [MiB, 22 * MiB],
      [20 * MiB + 1, data.length - 1],
    ] as const) {
      const response = await client.request("GET", `/v2/apps/large/blobs/${digest}`, {
        headers: { Range: `bytes=${start}-${end}` },
      });
      assert.equal(response.status, 206);
      assert.equal(response.headers.get("Content-Range"), `bytes ${start}-${end}/${data.length}`);
      assert.equal(sha256(Buffer.from(await response.arrayBuffer())), sha256(data.subarray(start, end + 1)));
    }
  });

  it("a client that goes away mid-pull ends the registry's read from S3 (no connection left stalled)", async () => {
    const data = randomBytes(40 * MiB);
    const digest = sha256(data);
    const client = new Client(registry.url);
    const put = await client.request("POST", `/v2/apps/abandoned/blobs/uploads/?digest=${digest}`, {
      body: data,
      headers: { "Content-Type": "application/octet-stream" },
    });
    assert.equal(put.status, 201);
    const s3Port = Number(new URL(b.target.endpoint).port);
    // Several clients read the first MiB of the blob, then drop their connection.
    await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<void>((resolve, reject) => {
            const request = httpGet(
              `${registry.url}/v2/apps/abandoned/blobs/${digest}`,
              { agent: false },
              (r) => {
                let received = 0;
                r.on("data", (chunk: Buffer) => {
                  received += chunk.length;
                  if (received >= MiB) {
                    request.destroy();
                    resolve();
                  }
                });
              },
            );
            request.on("error", (error) => (request.destroyed ? resolve() : reject(error)));
          }),
      ),
    );
    // A read the registry kept open would sit with RGW's data unread in its socket for good; an
    // aborted one is closed, and sockets kept for reuse hold nothing.
    await waitUntil(
      async () => connectionsTo(registry.process.pid!, s3Port).every((c) => c.rxQueue === 0),
      20_000,
    ).catch(() => {
      throw new Error(
        `connections to S3 with unread data: ${JSON.stringify(connectionsTo(registry.process.pid!, s3Port))}`,
      );
    });
    // And the registry still serves the blob whole.
    const again = await client.request("GET", `/v2/apps/abandoned/blobs/${digest}`);
    assert.equal(sha256(Buffer.from(await again.arrayBuffer())), digest);
  });

  it("/debug/health checks the bucket", async () => {
    assert.equal((await fetch(`${registry.debugUrl}/debug/health`)).status, 200);
  });
});

describe("registry on S3: redirects, credentials, start-up", () => {
  it("with storage.redirect.disable: false, blob GETs redirect to a presigned URL; off by default", async () => {
    const b = await bucket("redirect");
    const redirecting = await registryOn(b, {}, { redirect: { disable: false } });
    const data = blob(randomBytes(100 * 1024));
    await new Client(redirecting.url).pushBlob("r/x", data);
    const response = await fetch(`${redirecting.url}/v2/r/x/blobs/${data.digest}`, { redirect: "manual" });
    assert.equal(response.status, 307);
    const location = response.headers.get("Location")!;
    assert.ok(location.startsWith(b.target.endpoint), location);
    assert.match(location, /X-Amz-Signature=/);
    const fetched = await fetch(location, { headers: { Range: "bytes=10-19" } });
    assert.equal(fetched.status, 206);
    assert.deepEqual(Buffer.from(await fetched.arrayBuffer()), data.data.subarray(10, 20));
    await redirecting.stop();
    const plain = await registryOn(b);
    const direct = await fetch(`${plain.url}/v2/r/x/blobs/${data.digest}`, { redirect: "manual" });
    assert.equal(direct.status, 200);
    assert.equal(sha256(new Uint8Array(await direct.arrayBuffer())), data.digest);
    await plain.stop();
  });

  it("several workers (http.workers: 2) serve one bucket: a multi-arch push and pull", async () => {
    const b = await bucket("workers");
    const registry = await startRegistry({ workers: 2, config: { storage: { s3: b.config() } } });
    registries.push(registry);
    const layout = join(tempDir(), "layout");
    const digests = writeOciLayout(layout, "v1");
    const ref = `docker://${registry.host}/w/multi`;
    skopeo("copy", "--all", "--dest-tls-verify=false", `oci:${layout}:v1`, `${ref}:v1`);
    assert.equal(servedDigest(`${ref}:v1`), digests.index);
    for (const digest of Object.values(digests.manifests))
      assert.equal(servedDigest(`${ref}@${digest}`), digest);
    await registry.stop();
  });

  it("without accesskey/secretkey, the AWS environment variables are the credentials", async () => {
    const b = await bucket("envkeys");
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = b.target.accessKey;
    process.env.AWS_SECRET_ACCESS_KEY = b.target.secretKey;
    let registry: RegistryProcess;
    try {
      registry = await registryOn(b, { accesskey: undefined, secretkey: undefined });
    } finally {
      for (const [name, value] of [
        ["AWS_ACCESS_KEY_ID", saved.id],
        ["AWS_SECRET_ACCESS_KEY", saved.secret],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
    const m = imageManifest();
    assert.equal((await new Client(registry.url).pushManifest("env/keys", "v1", m)).status, 201);
    assert.ok((await layoutKeys(b)).some((k) => k.endsWith("env/keys/_manifests/tags/v1/current/link")));
    await registry.stop();
  });

  it("serve refuses a bucket it cannot use in one line naming the key", async () => {
    const b = await bucket("startup");
    const run = (s3: Record<string, unknown>) => {
      const path = join(tempDir(), "config.yml");
      writeFileSync(
        path,
        stringify({
          version: "0.1",
          storage: { s3: b.config(s3) },
          http: { addr: "127.0.0.1:0", debug: { addr: "127.0.0.1:0" } },
        }),
      );
      const result = spawnSync(process.execPath, [MAIN, "serve", path], {
        encoding: "utf8",
        timeout: 60_000,
      });
      assert.equal(result.status, 1, result.stderr);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      return lines[0]!;
    };
    assert.match(
      run({ bucket: `${b.name}-nope` }),
      /^neam-registry: storage\.s3\.bucket: bucket ".*-nope" .* does not exist$/,
    );
    assert.match(
      run({ secretkey: "wrong" }),
      /^neam-registry: storage\.s3\.accesskey: access to bucket .* denied/,
    );
    assert.match(
      run({ regionendpoint: "http://127.0.0.1:9" }),
      /^neam-registry: storage\.s3\.regionendpoint: bucket .* cannot be reached/,
    );
  });
});
