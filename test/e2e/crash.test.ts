/**
 * Crash safety: SIGKILL the server at random instants during concurrent pushes, restart it on the
 * same root, and check that nothing acknowledged is lost and nothing half-written is visible.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes, randomInt } from "node:crypto";
import { createReadStream, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Client, blob, imageManifest, sha256, type Blob } from "../helpers/oci.js";
import { startRegistry, tempDir, type RegistryProcess } from "../helpers/registry.js";

const ROUNDS = 4;
const PUSHERS = 8;

/**
 * The seed of the PRNG that picks kill instants and layer sizes: random, logged, and taken from
 * NEAM_CRASH_SEED to replay a failing run (the instants then repeat; the interleaving of the
 * pushers with the kill depends on the machine's scheduling, so a replay is likely, not certain).
 */
const SEED =
  process.env.NEAM_CRASH_SEED === undefined ? randomInt(2 ** 31) : Number(process.env.NEAM_CRASH_SEED);

/** mulberry32: a small, well-known seeded PRNG; returns an integer in [min, max). */
function seededInt(seed: number): (min: number, max: number) => number {
  let state = seed >>> 0;
  return (min, max) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const unit = ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    return min + Math.floor(unit * (max - min));
  };
}

/** Error codes of a request cut by the SIGKILL: reset or closed mid-request, refused once it is gone. */
const KILL_ERRORS = new Set(["ECONNRESET", "ECONNREFUSED", "EPIPE", "UND_ERR_SOCKET", "UND_ERR_CLOSED"]);

function cutByKill(error: unknown): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (KILL_ERRORS.has((e as { code?: string }).code ?? "")) return true;
  }
  return false;
}

/** What pushers share within a round: whether the kill has started, and the PRNG. */
interface Round {
  killing: boolean;
  readonly random: (min: number, max: number) => number;
  /** Called at each acknowledged push. */
  readonly acknowledged: () => void;
}

async function pushChunked(client: Client, repo: string, b: Blob): Promise<void> {
  let location = await client.startUpload(repo);
  const chunk = Math.max(1, Math.ceil(b.size / 3));
  for (let offset = 0; offset < b.size; offset += chunk) {
    const part = b.data.subarray(offset, offset + chunk);
    const response = await client.request("PATCH", location, {
      body: part,
      headers: { "Content-Range": `${offset}-${offset + part.length - 1}` },
    });
    if (response.status !== 202) throw new Error(`patch ${response.status}`);
    location = response.headers.get("Location")!;
  }
  const put = await client.request("PUT", `${location}?digest=${b.digest}`);
  if (put.status !== 201) throw new Error(`put ${put.status}`);
}

/**
 * Pushes images until the server dies; records the tags it acknowledged (201) with their digests.
 * Any answer other than the expected status fails the test, and so does any error other than a
 * connection cut by the kill (only once the kill has started).
 */
async function pusher(
  client: Client,
  id: number,
  acknowledged: Map<string, string>,
  round: Round,
): Promise<void> {
  for (let n = 0; ; n++) {
    const repo = `crash/r${id % 3}`;
    const manifest = imageManifest({ layers: 2 });
    const layers = manifest.blobs.map((b, i) =>
      i === 0 ? b : blob(randomBytes(round.random(1, 2 * 1024 * 1024))),
    );
    const body = JSON.parse(manifest.bytes.toString());
    body.layers = layers.slice(1).map((l) => ({
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      digest: l.digest,
      size: l.size,
    }));
    const bytes = Buffer.from(JSON.stringify(body));
    try {
      for (const [i, l] of layers.entries()) {
        if (i % 2 === 0) await client.pushBlob(repo, l);
        else await pushChunked(client, repo, l);
      }
      const tag = `p${id}-${n}-${randomBytes(3).toString("hex")}`;
      const response = await client.request("PUT", `/v2/${repo}/manifests/${tag}`, {
        body: bytes,
        headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
      });
      if (response.status !== 201)
        throw new Error(`manifest put ${response.status}: ${await response.text()}`);
      acknowledged.set(`${repo}:${tag}`, sha256(bytes));
      round.acknowledged();
    } catch (error) {
      if (round.killing && cutByKill(error)) return; // the server was killed under us
      throw new Error(`pusher ${id} (seed ${SEED}): ${String(error)}`, { cause: error });
    }
  }
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest("hex")}`;
}

describe("crash safety", () => {
  it(`survives ${ROUNDS} SIGKILLs during ${PUSHERS} concurrent pushers`, async (t) => {
    t.diagnostic(`seed ${SEED} (replay with NEAM_CRASH_SEED=${SEED})`);
    const random = seededInt(SEED);
    const root = join(tempDir(), "data");
    const acknowledged = new Map<string, string>();
    let registry: RegistryProcess = await startRegistry({ root, workers: 2 });
    for (let round = 0; round < ROUNDS; round++) {
      const client = new Client(registry.url);
      // The kill comes 300-1200 ms after the round's first acknowledged push, so that every
      // round has pushes to check even when a loaded machine makes the first one slow.
      let firstAcknowledged: () => void = () => {};
      const first = new Promise<void>((resolve) => (firstAcknowledged = resolve));
      const state: Round = { killing: false, random, acknowledged: () => firstAcknowledged() };
      const pushers = Array.from({ length: PUSHERS }, (_, i) =>
        pusher(client, i + round * PUSHERS, acknowledged, state),
      );
      // A pusher failing before the kill fails the round at once (allSettled below reports it).
      const early = Promise.race(pushers.map((p) => p.then(() => new Promise<never>(() => {}))));
      try {
        await Promise.race([first, early]);
        await Promise.race([new Promise((r) => setTimeout(r, random(300, 1200))), early]);
      } catch (error) {
        state.killing = true;
        await registry.kill();
        throw error;
      }
      state.killing = true;
      await registry.kill();
      const results = await Promise.allSettled(pushers);
      for (const result of results) if (result.status === "rejected") throw result.reason;
      registry = await startRegistry({ root, workers: 2 });
    }
    const client = new Client(registry.url);
    try {
      assert.ok(acknowledged.size > 0, "some pushes were acknowledged before the kills");

      // Every acknowledged tag resolves to the manifest acknowledged for it.
      for (const [key, digest] of acknowledged) {
        const [repo, tag] = key.split(":") as [string, string];
        const response = await client.request("GET", `/v2/${repo}/manifests/${tag}`);
        assert.equal(response.status, 200, `${key} (root ${root}, seed ${SEED})`);
        assert.equal(sha256(Buffer.from(await response.arrayBuffer())), digest, key);
      }

      // Every listed tag of every repository resolves, and every blob it references is whole.
      const { repositories } = (await (await client.request("GET", "/v2/_catalog")).json()) as {
        repositories: string[];
      };
      for (const repo of repositories) {
        const { tags } = (await (await client.request("GET", `/v2/${repo}/tags/list`)).json()) as {
          tags: string[];
        };
        for (const tag of tags) {
          const response = await client.request("GET", `/v2/${repo}/manifests/${tag}`);
          assert.equal(response.status, 200, `${repo}:${tag}`);
          const manifest = (await response.json()) as {
            config: { digest: string };
            layers: { digest: string }[];
          };
          for (const { digest } of [manifest.config, ...manifest.layers]) {
            const blobResponse = await client.request("GET", `/v2/${repo}/blobs/${digest}`);
            assert.equal(blobResponse.status, 200, digest);
            assert.equal(sha256(Buffer.from(await blobResponse.arrayBuffer())), digest);
          }
        }
      }

      // No partial blob is visible: every stored blob's bytes hash to its name.
      const blobs = join(root, "docker/registry/v2/blobs/sha256");
      let checked = 0;
      for (const prefix of readdirSync(blobs)) {
        for (const hex of readdirSync(join(blobs, prefix))) {
          assert.equal(await hashFile(join(blobs, prefix, hex, "data")), `sha256:${hex}`);
          checked++;
        }
      }
      assert.ok(checked > 0);
    } finally {
      await registry.stop();
    }
  });

  it("a chunked upload resumes after the server restarts", async () => {
    const root = join(tempDir(), "data");
    let registry = await startRegistry({ root });
    const content = blob(randomBytes(3 * 1024 * 1024));
    const half = content.size / 2;
    let client = new Client(registry.url);
    // The path only: the restarted server listens on another port.
    const location = new URL(await client.startUpload("resume/app"), registry.url).pathname;
    const first = await client.request("PATCH", location, {
      body: content.data.subarray(0, half),
      headers: { "Content-Range": `0-${half - 1}` },
    });
    assert.equal(first.status, 202);
    await registry.kill();

    registry = await startRegistry({ root });
    client = new Client(registry.url);
    try {
      const status = await client.request("GET", location);
      assert.equal(status.status, 204);
      assert.equal(status.headers.get("Range"), `0-${half - 1}`);
      const put = await client.request("PUT", `${location}?digest=${content.digest}`, {
        body: content.data.subarray(half),
        headers: { "Content-Range": `${half}-${content.size - 1}` },
      });
      assert.equal(put.status, 201);
      const get = await client.request("GET", `/v2/resume/app/blobs/${content.digest}`);
      assert.equal(sha256(Buffer.from(await get.arrayBuffer())), content.digest);
    } finally {
      await registry.stop();
    }
  });
});
